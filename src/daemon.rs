//! `traderd run`: builds the actor system from a checked [`Config`] and starts it.
//!
//! Start order (each actor only receives messages from actors started before it, or after it
//! is wired in):
//! 1. the embedded simulator (`sim` mode only), on a loopback port;
//! 2. the journal (its own thread), which gives the run counter and the last trading mode;
//! 3. MarketDataFeed (warm-up from REST), OrderManager (reconciles with the broker before
//!    accepting any order), the `trade_updates` StreamClient feeding it;
//! 4. AccountManager, RiskManager (with the journaled mode), StrategyRunner;
//! 5. the wiring (listeners), then the market-data StreamClient, so no data is delivered
//!    before someone listens.
//!
//! URLs: the trading API is the simulator, `alpaca.paper_trading_url` or
//! `alpaca.live_trading_url`; `APCA_API_BASE_URL` overrides it and the trade stream is at
//! its `/stream`. Market data is `alpaca.data_url` and `alpaca.data_stream_url`;
//! `APCA_API_DATA_URL` overrides both (the stream at its `/v2/<feed>`), as in Alpaca's SDKs.

use crate::actors::account::{AccountManager, AddAccountListener};
use crate::actors::market_data::{AddBarSubscriber, FeedSettings, Interval, MarketDataFeed};
use crate::actors::order_manager::{
    AddOrdersListener, Connect, GetOrderStats, OrderManager, OrderSettings,
};
use crate::actors::risk_manager::{RiskManager, SetMode};
use crate::actors::strategy_runner::StrategyRunner;
use crate::alpaca::stream::Codec;
use crate::alpaca::{AlpacaClient, Credentials, Secret};
use crate::config::{Config, ConnectionMode};
use crate::journal::{self, CurrentMode, JournalHandle};
use crate::messages::StreamKind;
use crate::risk::TradingMode;
use crate::sim::{self, SimHandle, SimSettings, clock::ClockMode, engine::AccountSettings};
use crate::stream_client::{Backoff, Sinks, StreamClient, StreamSettings, Subscriptions};
use actix::prelude::*;
use std::path::Path;
use std::time::Duration;

/// The running daemon: the addresses operators and tests talk to.
pub struct Daemon {
    pub sim: Option<SimHandle>,
    pub journal: JournalHandle,
    pub rest: AlpacaClient,
    pub feed: Addr<MarketDataFeed>,
    pub orders: Addr<OrderManager>,
    pub account: Addr<AccountManager>,
    pub risk: Addr<RiskManager>,
    pub strategy: Addr<StrategyRunner>,
    pub market_stream: Addr<StreamClient>,
    pub trade_stream: Addr<StreamClient>,
    pub mode: TradingMode,
    /// Where the journal is: the state directory, or in `sim` mode a `sim-<time>` directory in it.
    pub state_dir: std::path::PathBuf,
}

impl Daemon {
    /// Stops taking new orders, waits (up to 5 s) for orders in flight to settle so their fills
    /// are journaled, then stops the streams, the journal and the simulator.
    pub async fn stop(self) {
        self.risk.do_send(SetMode(TradingMode::Halted));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match self.orders.send(GetOrderStats).await {
                Ok(s) if s.unsettled > 0 && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(s) if s.unsettled > 0 => {
                    tracing::warn!(
                        unsettled = s.unsettled,
                        "stopping with orders unsettled; the next start reconciles them"
                    );
                    break;
                }
                _ => break,
            }
        }
        for a in [&self.market_stream, &self.trade_stream] {
            a.do_send(crate::stream_client::StopStream);
        }
        // Let the streams close their sockets.
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.journal.stop();
        if let Some(sim) = self.sim {
            sim.stop().await;
        }
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
    (trading, format!("{data_base}/v2/{}", config.alpaca.feed))
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
                clock: if config.sim.clock == "wall" {
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
    let journal = journal::start(&state_dir)?;
    let mode = match journal.addr.send(CurrentMode).await {
        Ok(Ok(Some(m))) => serde_json::from_value(serde_json::Value::String(m.clone()))
            .unwrap_or_else(|_| {
                tracing::error!(mode = %m, "unknown trading mode in the journal; starting halted");
                TradingMode::Halted
            }),
        Ok(Ok(None)) => TradingMode::Active,
        Ok(Err(e)) => return Err(e.into()),
        Err(e) => {
            return Err(StartError::Config(format!(
                "the journal did not answer: {e}"
            )));
        }
    };
    tracing::info!(dir = %state_dir.display(), mode = ?mode, "journal open");

    let symbols = config.trading.symbols.clone();
    let strategy = config.strategy.build().ok_or_else(|| {
        StartError::Config(format!("unknown strategy {:?}", config.strategy.name))
    })?;
    let sizing = config.strategy.sizing_rule().ok_or_else(|| {
        StartError::Config(format!("unknown sizing {:?}", config.strategy.sizing))
    })?;
    let protection = config.strategy.protection_rule().ok_or_else(|| {
        StartError::Config(format!(
            "unknown protection {:?}",
            config.strategy.protection
        ))
    })?;
    let mut intervals = vec![Interval::M1];
    if strategy.interval() != Interval::M1 {
        intervals.push(strategy.interval());
    }
    let feed = MarketDataFeed::new(
        FeedSettings {
            symbols: symbols.clone(),
            intervals,
            ..FeedSettings::default()
        },
        Some(rest.clone()),
    )
    .start();

    let orders = OrderManager::new(
        OrderSettings {
            ack_timeout: Duration::from_millis(config.orders.ack_timeout_ms),
            poll_interval: Duration::from_millis(config.orders.poll_interval_ms),
            reconcile_interval: Duration::from_secs(config.orders.reconcile_interval_s),
        },
        rest.clone(),
        journal.addr.clone(),
    )
    .start();
    let stream_settings = |kind: StreamKind, url: String| {
        let s = &config.stream;
        StreamSettings {
            codec: if s.codec == "msgpack" && kind == StreamKind::MarketData {
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
    let trade_stream = StreamClient::new(
        stream_settings(StreamKind::TradeUpdates, trading_stream_url),
        Subscriptions::default(),
        Sinks {
            trade_updates: Some(orders.clone().recipient()),
            order_stream_ready: Some(orders.clone().recipient()),
            ..Default::default()
        },
        Some(rest.clone()),
    )
    .with_listener(orders.clone().recipient())
    .start();

    let account = AccountManager::new(
        rest.clone(),
        Duration::from_millis(config.account.refresh_interval_ms),
    )
    .start();
    let risk = RiskManager::new(
        config.risk.limits(),
        mode,
        Some(feed.clone().recipient()),
        orders.clone().recipient(),
    )
    .start();
    let strategy =
        StrategyRunner::new(strategy, sizing, protection, risk.clone().recipient()).start();

    orders.do_send(Connect {
        risk: risk.clone().recipient(),
        account: Some(account.clone().recipient()),
    });
    orders.do_send(AddOrdersListener(risk.clone().recipient()));
    orders.do_send(AddOrdersListener(strategy.clone().recipient()));
    account.do_send(AddAccountListener(risk.clone().recipient()));
    account.do_send(AddAccountListener(strategy.clone().recipient()));
    feed.do_send(AddBarSubscriber(strategy.clone().recipient()));

    let market_stream = StreamClient::new(
        stream_settings(StreamKind::MarketData, data_stream_url),
        Subscriptions {
            trades: symbols.iter().cloned().collect(),
            quotes: symbols.iter().cloned().collect(),
            ..Default::default()
        },
        Sinks {
            market: Some(feed.clone().recipient()),
            ..Default::default()
        },
        Some(rest.clone()),
    )
    .start();

    Ok(Daemon {
        sim,
        journal,
        rest,
        feed,
        orders,
        account,
        risk,
        strategy,
        market_stream,
        trade_stream,
        mode,
        state_dir,
    })
}
