//! `traderd run`: builds the actor system from a checked [`Config`] and starts it.
//!
//! Start order (each actor only receives messages from actors started before it, or after it
//! is wired in):
//! 1. the embedded simulator (`sim` mode only), on a loopback port;
//! 2. the journal (its own thread), which gives the run counter and the last trading mode;
//! 3. MarketDataFeed (warm-up from REST; on a thread of its own, so aggregating a flood does
//!    not delay the order path), OrderManager (reconciles with the broker before
//!    accepting any order), the `trade_updates` StreamClient feeding it;
//! 4. AccountManager, RiskManager (with the journaled mode), StrategyRunner;
//! 5. the wiring (listeners), then the market-data StreamClient, so no data is delivered
//!    before someone listens;
//! 6. the Supervisor, last, with the journaled mode (it resumes the flatten procedure if the
//!    daemon stopped while preserving).
//!
//! The ConnectionHealthMonitor starts right after the journal, so it hears every REST attempt
//! from the first. Every actor above runs under actix supervision (`actix::Supervisor`): one
//! that stops is restarted with the same address; the restarts count against the budget in
//! `[health]`. See docs/supervision.md.
//!
//! URLs: the trading API is the simulator, `alpaca.paper_trading_url` or
//! `alpaca.live_trading_url`; `APCA_API_BASE_URL` overrides it and the trade stream is at
//! its `/stream`. Market data is `alpaca.data_url` and `alpaca.data_stream_url`;
//! `APCA_API_DATA_URL` overrides both (the stream at its `/v2/<feed>`), as in Alpaca's SDKs.

mod metrics;
mod run;
pub use run::{Exit, RunOptions, run};

use crate::actors::account::{AccountManager, AddAccountListener};
use crate::actors::health::{
    ConnectionHealthMonitor, HealthSettings, Reporter, WatchStream, observe_rest,
};
use crate::actors::market_data::{
    AddBarSubscriber, AddSplitListener, AddTradeSubscriber, FeedSettings, Interval, MarketDataFeed,
    SetCoverListener,
};
use crate::actors::order_manager::{
    AddOrdersListener, Connect, GetOrderStats, OrderManager, OrderSettings,
};
use crate::actors::order_manager::{CancelAll, Flatten};
use crate::actors::risk_manager::{RiskManager, SetMode};
use crate::actors::strategy_runner::StrategyRunner;
use crate::actors::stream_client::{Backoff, Sinks, StreamClient, StreamSettings, Subscriptions};
use crate::actors::supervisor::{Supervisor, SupervisorSettings};
use crate::alpaca::stream::Codec;
use crate::alpaca::{AlpacaClient, Credentials, Secret};
use crate::config::ShutdownSection;
use crate::config::{Config, ConnectionMode};
use crate::journal::{self, CurrentMode, JournalHandle};
use crate::messages::StreamKind;
use crate::risk::TradingMode;
use crate::sim::{self, SimHandle, SimSettings, clock::ClockMode, engine::AccountSettings};
use crate::strategy::TradeInterest;
use actix::prelude::*;
use std::path::Path;
use std::time::Duration;

/// The running daemon: the addresses operators and tests talk to.
pub struct Daemon {
    pub sim: Option<SimHandle>,
    pub journal: JournalHandle,
    pub rest: AlpacaClient,
    pub feed: Addr<MarketDataFeed>,
    /// The feed's own thread: bar aggregation under a flood does not delay the order path.
    pub feed_arbiter: actix::Arbiter,
    pub orders: Addr<OrderManager>,
    pub account: Addr<AccountManager>,
    pub risk: Addr<RiskManager>,
    pub strategy: Addr<StrategyRunner>,
    pub market_stream: Addr<StreamClient>,
    pub trade_stream: Addr<StreamClient>,
    pub health: Addr<ConnectionHealthMonitor>,
    pub supervisor: Addr<Supervisor>,
    pub control: Addr<crate::control::ControlServer>,
    /// The control socket's path.
    pub socket: std::path::PathBuf,
    /// Set by `traderd ctl shutdown`.
    pub stop_requested: tokio::sync::watch::Receiver<bool>,
    /// Set when capital preservation cannot run: the process must exit non-zero.
    pub fatal: tokio::sync::watch::Receiver<Option<String>>,
    /// The mode journaled at start.
    pub mode: TradingMode,
    /// Where the journal is: the state directory, or in `sim` mode a `sim-<time>` directory in it.
    pub state_dir: std::path::PathBuf,
}

impl Daemon {
    /// Stops without cancelling or closing anything (tests; `shutdown` with the defaults).
    pub async fn stop(self) {
        let _ = self
            .shutdown(&ShutdownSection {
                timeout_s: 10,
                ..ShutdownSection::default()
            })
            .await;
    }

    /// The shutdown sequence (SIGTERM, SIGINT, `traderd ctl shutdown`), in order:
    /// 1. stop entries: the RiskManager goes to reduce-only (in memory: the journaled mode,
    ///    which the next start comes back in, is unchanged); from halted it stays halted, and
    ///    steps 2 and 3 are skipped (halted sends nothing);
    /// 2. with `cancel_open_orders`, cancel every open order;
    /// 3. with `flatten`, close every position and wait until the broker shows flat;
    /// 4. stop every order (halted, in memory), then wait for orders in flight to settle, so
    ///    their outcome and fills are journaled;
    /// 5. close the streams; 6. close the journal (waits for queued writes); 7. the simulator.
    ///
    /// Steps 2–4 share `timeout_s`; what is left then is reconciled at the next start. Answers
    /// false if the sequence ran out of time.
    pub async fn shutdown(self, s: &ShutdownSection) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(s.timeout_s);
        let mut in_time = true;
        let halted = matches!(self.mode_now().await, Some(TradingMode::Halted));
        if !halted {
            self.risk.do_send(SetMode(TradingMode::ReduceOnly));
        }
        tracing::warn!(
            cancel_open_orders = s.cancel_open_orders,
            flatten = s.flatten,
            timeout_s = s.timeout_s,
            halted,
            "shutting down: no new entries"
        );
        if halted && (s.cancel_open_orders || s.flatten) {
            tracing::warn!(
                "halted: nothing is sent, not even at shutdown; open orders and positions stay as they are"
            );
        }
        if s.cancel_open_orders && !s.flatten && !halted {
            match tokio::time::timeout_at(deadline, self.orders.send(CancelAll)).await {
                Ok(Ok(Ok(n))) => tracing::warn!(canceled = n, "shutdown: open orders canceled"),
                Ok(Ok(Err(e))) => tracing::error!(error = %e, "shutdown: cancel-all failed"),
                _ => tracing::error!("shutdown: cancel-all did not finish"),
            }
        }
        if s.flatten && !halted {
            in_time &= self.flatten_until_flat(deadline).await;
        }
        // From here nothing new is sent at all (still in memory only): what is in flight
        // settles, and no exit slips in after the wait. Awaited: a proposal the risk manager
        // was checking has reached the order manager (and counts as in flight) once it answers.
        let _ = self.risk.send(SetMode(TradingMode::Halted)).await;
        loop {
            match self.orders.send(GetOrderStats).await {
                Ok(st) if st.unsettled > 0 && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(st) if st.unsettled > 0 => {
                    tracing::warn!(
                        unsettled = st.unsettled,
                        "stopping with orders unsettled; the next start reconciles them"
                    );
                    in_time = false;
                    break;
                }
                _ => break,
            }
        }
        for a in [&self.market_stream, &self.trade_stream] {
            a.do_send(crate::actors::stream_client::StopStream);
        }
        // Let the streams close their sockets.
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.feed_arbiter.stop();
        let _ = std::fs::remove_file(&self.socket);
        self.journal.close().await;
        if let Some(sim) = self.sim {
            sim.stop().await;
        }
        tracing::info!(in_time, "stopped");
        in_time
    }

    async fn mode_now(&self) -> Option<TradingMode> {
        self.supervisor
            .send(crate::actors::supervisor::GetSupervisorStatus)
            .await
            .ok()
            .map(|s| s.mode)
    }

    /// Flatten, then re-read the broker until it shows flat; again every 2 s until `deadline`.
    async fn flatten_until_flat(&self, deadline: tokio::time::Instant) -> bool {
        loop {
            match tokio::time::timeout_at(deadline, self.orders.send(Flatten)).await {
                Ok(Ok(Ok(report))) => {
                    tracing::warn!(canceled = report.canceled, closing = ?report.closing, "shutdown: flattening")
                }
                Ok(Ok(Err(e))) => tracing::error!(error = %e, "shutdown: flatten failed"),
                Ok(Err(_)) => return false,
                Err(_) => break,
            }
            let retry_at = (tokio::time::Instant::now() + Duration::from_secs(2)).min(deadline);
            while tokio::time::Instant::now() < retry_at {
                if let Ok((0, 0)) = crate::actors::supervisor::broker_exposure(
                    &crate::broker::BrokerRef::from(self.rest.clone()),
                )
                .await
                {
                    tracing::warn!("shutdown: the broker shows no position and no open order");
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
        }
        tracing::error!("shutdown: not flat within the timeout; the next start reconciles");
        false
    }
}

/// `http(s)://host[/path]` → `ws(s)://host[/path]`.
fn ws_base(url: &str) -> String {
    let url = url.trim_end_matches('/');
    if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        url.to_string()
    }
}

/// The two stream URLs for a config (see the module docs).
pub fn stream_urls(
    config: &Config,
    trading_url: &str,
    data_url: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> (String, String) {
    let trading = format!("{}/stream", ws_base(trading_url));
    let data_override = env("APCA_API_DATA_URL").filter(|v| !v.is_empty());
    let data_base = if config.connection.mode == ConnectionMode::Sim || data_override.is_some() {
        ws_base(data_url)
    } else {
        config
            .alpaca
            .data_stream_url
            .trim_end_matches('/')
            .to_string()
    };
    (
        trading,
        format!("{data_base}/v2/{}", config.alpaca.feed.as_str()),
    )
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(String),
    #[error("cannot start the embedded simulator on {addr}: {source}")]
    Sim {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot open the journal: {0}")]
    Journal(#[from] journal::JournalError),
    #[error("cannot build the broker client: {0}")]
    Client(#[from] crate::alpaca::BrokerError),
}

/// Starts everything. Must run inside an actix `System` on a tokio runtime.
pub async fn start(
    config: &Config,
    state_dir: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Daemon, StartError> {
    let (sim, credentials) = match config.connection.mode {
        ConnectionMode::Sim => {
            let addr: std::net::SocketAddr = config.sim.listen.parse().map_err(|_| {
                StartError::Config(format!(
                    "sim.listen {:?} is not an address",
                    config.sim.listen
                ))
            })?;
            // A key pair for this run only: the embedded simulator accepts nothing else.
            let key = format!("SIM{}", uuid::Uuid::new_v4().simple()).to_uppercase();
            let secret = uuid::Uuid::new_v4().simple().to_string();
            let settings = SimSettings {
                seed: config.sim.seed,
                symbols: config.sim.symbols.clone(),
                speed: config.sim.speed,
                clock: if config.sim.clock == crate::config::ClockChoice::Wall {
                    ClockMode::Wall
                } else {
                    ClockMode::Sim
                },
                credentials: Some((key.clone(), secret.clone())),
                rate_limit: config.sim.rate_limit_per_minute,
                account: AccountSettings {
                    initial_cash: config.sim.initial_cash_usd,
                    ..AccountSettings::default()
                },
                ..SimSettings::default()
            };
            let handle = sim::start(settings, addr)
                .await
                .map_err(|source| StartError::Sim {
                    addr: config.sim.listen.clone(),
                    source,
                })?;
            tracing::info!(url = %handle.base_url(), seed = config.sim.seed, speed = config.sim.speed, "embedded simulator started (no keys, no money)");
            (
                Some(handle),
                Credentials {
                    key_id: key,
                    secret: Secret::new(secret),
                },
            )
        }
        ConnectionMode::Paper | ConnectionMode::Live => {
            let creds = crate::config::load_credentials(&env)
                .map_err(StartError::Config)?
                .ok_or_else(|| {
                    StartError::Config(
                        "paper and live need API keys: set APCA_API_KEY_ID and APCA_API_SECRET_KEY or systemd credentials".into(),
                    )
                })?;
            (None, creds)
        }
    };
    let sim_url = sim.as_ref().map(|s| s.base_url());
    let client_settings = config.client_settings(sim_url.as_deref(), &env);
    let (trading_stream_url, data_stream_url) = stream_urls(
        config,
        &client_settings.trading_url,
        &client_settings.data_url,
        &env,
    );
    tracing::info!(mode = config.mode_name(), trading = %client_settings.trading_url, data = %client_settings.data_url, "broker");
    let rest = AlpacaClient::new(client_settings, &credentials)?;

    let base_dir = state_dir.to_path_buf();
    // The embedded simulator starts afresh every run, so its journal does too: a journal of an
    // earlier simulated account would only disagree with this one.
    let state_dir = if sim.is_some() {
        let dir = state_dir.join(format!(
            "sim-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| StartError::Config(format!("cannot create {}: {e}", dir.display())))?;
        dir
    } else {
        state_dir.to_path_buf()
    };
    let journal = journal::start(&state_dir, config.state.sync)?;
    // The Supervisor's address first: the monitor reports crossings to it.
    let supervisor_ctx = Context::<Supervisor>::new();
    let health = ConnectionHealthMonitor::new(
        HealthSettings::new(&config.health, config.risk.daily_loss_limit_usd),
        Some(rest.clone().into()),
        Some(supervisor_ctx.address().recipient()),
    )
    .start();
    observe_rest(&rest, health.clone().recipient());
    let reporter = Reporter::new(health.clone().recipient());
    let mut mode_cause = "the mode the journal recorded last";
    let mode = match journal.addr.send(CurrentMode).await {
        Ok(Ok(Some(m))) => serde_json::from_value(serde_json::Value::String(m.clone()))
            .unwrap_or_else(|_| {
                tracing::error!(mode = %m, "unknown trading mode in the journal; starting halted");
                mode_cause = "an unknown mode in the journal: halted to be safe";
                TradingMode::Halted
            }),
        Ok(Ok(None)) => {
            mode_cause = match journal.addr.send(crate::journal::IsNew).await {
                Ok(Ok(false)) => "the journal recorded no mode change: active",
                _ => "a new journal",
            };
            TradingMode::Active
        }
        Ok(Err(e)) => return Err(e.into()),
        Err(e) => {
            return Err(StartError::Config(format!(
                "the journal did not answer: {e}"
            )));
        }
    };
    tracing::info!(dir = %state_dir.display(), mode = ?mode, why = mode_cause, "journal open");

    let symbols = config.trading.symbols.clone();
    let strategy = config.strategy.build().ok_or_else(|| {
        StartError::Config(format!("unknown strategy {:?}", config.strategy.name))
    })?;
    let sizing = config.strategy.sizing_rule();
    let protection = config.strategy.protection_rule();
    let mut intervals = vec![Interval::M1];
    if strategy.interval() != Interval::M1 {
        intervals.push(strategy.interval());
    }
    let feed_settings = FeedSettings {
        symbols: symbols.clone(),
        intervals,
        adjustment: config.alpaca.adjustment.as_str().to_string(),
        rest_poll: Duration::from_millis(config.stream.rest_bars_poll_ms),
        ..FeedSettings::default()
    };
    let feed_rest = rest.clone();
    let feed_arbiter = actix::Arbiter::new();
    let feed = actix::Supervisor::start_in_arbiter(&feed_arbiter.handle(), move |_| {
        MarketDataFeed::new(feed_settings, Some(feed_rest.into()))
    });

    let order_settings = OrderSettings {
        ack_timeout: Duration::from_millis(config.orders.ack_timeout_ms),
        poll_interval: Duration::from_millis(config.orders.poll_interval_ms),
        reconcile_interval: Duration::from_secs(config.orders.reconcile_interval_s),
    };
    let (om_rest, om_journal, om_health) = (rest.clone(), journal.addr.clone(), reporter.clone());
    let orders = actix::Supervisor::start(move |_| {
        OrderManager::new(order_settings, om_rest.into(), om_journal).with_health(om_health)
    });
    let stream_settings = |kind: StreamKind, url: String| {
        let s = &config.stream;
        StreamSettings {
            codec: if s.codec == crate::config::CodecChoice::Msgpack
                && kind == StreamKind::MarketData
            {
                Codec::Msgpack
            } else {
                Codec::Json
            },
            ping_interval: Duration::from_millis(s.ping_interval_ms),
            pong_timeout: Duration::from_millis(s.pong_timeout_ms),
            stale_after: Duration::from_millis(s.stale_after_ms),
            backoff: Backoff {
                base: Duration::from_millis(s.reconnect_min_ms),
                cap: Duration::from_millis(s.reconnect_max_ms),
                floor: Duration::from_millis(s.reconnect_min_ms.min(50)),
            },
            ..StreamSettings::new(kind, url, credentials.clone())
        }
    };
    let trade_client = StreamClient::new(
        stream_settings(StreamKind::TradeUpdates, trading_stream_url),
        Subscriptions::default(),
        Sinks {
            trade_updates: Some(orders.clone().recipient()),
            order_stream_ready: Some(orders.clone().recipient()),
            ..Default::default()
        },
        Some(rest.clone().into()),
    )
    .with_listener(orders.clone().recipient())
    .with_listener(health.clone().recipient())
    .with_health(reporter.clone());
    let trade_stream = actix::Supervisor::start(move |_| trade_client);

    let (account_rest, refresh) = (
        rest.lane(crate::alpaca::rest::Lane::Account),
        Duration::from_millis(config.account.refresh_interval_ms),
    );
    let account =
        actix::Supervisor::start(move |_| AccountManager::new(account_rest.into(), refresh));
    let risk_manager = RiskManager::new(
        config.risk.limits(),
        mode,
        Some(feed.clone().recipient()),
        orders.clone().recipient(),
    );
    let risk = actix::Supervisor::start(move |_| risk_manager);
    let interest = strategy.trade_interest();
    let runner = StrategyRunner::new(strategy, sizing, protection, risk.clone().recipient());
    let strategy = actix::Supervisor::start(move |_| runner);

    orders.do_send(Connect {
        risk: risk.clone().recipient(),
        account: Some(account.clone().recipient()),
        splits: Some(feed.clone().recipient()),
    });
    orders.do_send(AddOrdersListener(risk.clone().recipient()));
    orders.do_send(AddOrdersListener(strategy.clone().recipient()));
    account.do_send(AddAccountListener(risk.clone().recipient()));
    account.do_send(AddAccountListener(strategy.clone().recipient()));
    account.do_send(AddAccountListener(health.clone().recipient()));
    feed.do_send(AddBarSubscriber(strategy.clone().recipient()));
    feed.do_send(AddSplitListener(strategy.clone().recipient()));
    let condition = match interest {
        TradeInterest::None => None,
        TradeInterest::All => Some(None),
        TradeInterest::WithCondition(c) => Some(Some(c)),
    };
    if let Some(condition) = condition {
        feed.do_send(AddTradeSubscriber {
            recipient: strategy.clone().recipient(),
            condition,
        });
    }

    // A plan that does not cover SIP (409) falls back to IEX instead of failing.
    let fallback_url = match config.alpaca.feed {
        crate::config::Feed::Sip | crate::config::Feed::DelayedSip => data_stream_url
            .rsplit_once('/')
            .map(|(base, _)| format!("{base}/iex")),
        _ => None,
    };
    let market_client = StreamClient::new(
        StreamSettings {
            fallback_url,
            ..stream_settings(StreamKind::MarketData, data_stream_url)
        },
        Subscriptions {
            trades: symbols.iter().cloned().collect(),
            quotes: symbols.iter().cloned().collect(),
            // Trading halts and resumptions: no new entries on a halted symbol.
            statuses: symbols.iter().cloned().collect(),
            bars: if config.stream.subscribe_bars {
                symbols.iter().cloned().collect()
            } else {
                Default::default()
            },
            ..Default::default()
        },
        Sinks {
            market: Some(feed.clone().recipient()),
            ..Default::default()
        },
        Some(rest.clone().into()),
    )
    .with_listener(health.clone().recipient())
    .with_listener(feed.clone().recipient())
    .with_health(reporter.clone());
    let market_stream = actix::Supervisor::start(move |_| market_client);
    feed.do_send(SetCoverListener(health.clone().recipient()));
    health.do_send(WatchStream(
        StreamKind::MarketData,
        market_stream.clone().recipient(),
    ));
    health.do_send(WatchStream(
        StreamKind::TradeUpdates,
        trade_stream.clone().recipient(),
    ));

    let (fatal_tx, fatal) = tokio::sync::watch::channel(None);
    let supervisor = supervisor_ctx.run(Supervisor::new(
        SupervisorSettings::new(&config.preservation),
        mode,
        mode_cause,
        journal.addr.clone(),
        risk.clone().recipient(),
        orders.clone().recipient(),
        rest.clone().into(),
        Some(health.clone().recipient()),
        Some(fatal_tx),
    ));

    let socket = if config.control.socket.is_empty() {
        crate::control::default_socket(&env, &base_dir)
    } else {
        std::path::PathBuf::from(&config.control.socket)
    };
    let group = if config.control.group.is_empty() {
        None
    } else {
        Some(crate::control::resolve_group(&config.control.group).map_err(StartError::Config)?)
    };
    let (stop_tx, stop_requested) = tokio::sync::watch::channel(false);
    let control = crate::control::ControlServer::bind(
        crate::control::ControlSettings {
            path: socket.clone(),
            group,
            allowed_uids: config.control.allowed_uids.clone(),
        },
        crate::control::Handles {
            operator: supervisor.clone().recipient(),
            supervisor_status: supervisor.clone().recipient(),
            mode_listeners: supervisor.clone().recipient(),
            order_stats: orders.clone().recipient(),
            order_events: orders.clone().recipient(),
            account: account.clone().recipient(),
            health: health.clone().recipient(),
            health_listeners: health.clone().recipient(),
            subscriptions: market_stream.clone().recipient(),
            market_stream: market_stream.clone().recipient(),
            trade_stream: trade_stream.clone().recipient(),
            risk_limits: risk.clone().recipient(),
            add_symbols: feed.clone().recipient(),
            remove_symbols: feed.clone().recipient(),
            feed_stats: feed.clone().recipient(),
            shutdown: stop_tx,
            config: config.clone(),
            config_path: None,
            check: crate::config::CheckContext::default(),
        },
    )
    .map_err(|e| StartError::Config(e.to_string()))?
    .start();

    Ok(Daemon {
        sim,
        journal,
        rest,
        feed,
        feed_arbiter,
        orders,
        account,
        risk,
        strategy,
        market_stream,
        trade_stream,
        health,
        supervisor,
        control,
        socket,
        stop_requested,
        fatal,
        mode,
        state_dir,
    })
}
