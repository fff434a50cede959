//! The start sequence (the order is in the module docs of [`super`]), one step per function:
//! the broker ([`broker`]: the embedded simulator or the keys), the journal and the mode it
//! recorded ([`journaled_mode`]), the actors in their order, their wiring, the control socket.

use super::*;

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

/// The broker: in `sim` mode the embedded simulator, started on a loopback port with a key
/// pair for this run only; in `paper` and `live` the keys from the environment or systemd
/// credentials.
async fn broker(
    config: &Config,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(Option<SimHandle>, Credentials), StartError> {
    if config.connection.mode != ConnectionMode::Sim {
        let creds = crate::config::load_credentials(env)
            .map_err(StartError::Config)?
            .ok_or_else(|| {
                StartError::Config(
                    "paper and live need API keys: set APCA_API_KEY_ID and APCA_API_SECRET_KEY or systemd credentials".into(),
                )
            })?;
        return Ok((None, creds));
    }
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
    let credentials = Credentials {
        key_id: key,
        secret: Secret::new(secret),
    };
    Ok((Some(handle), credentials))
}

/// Where the journal goes. The embedded simulator starts afresh every run, so its journal
/// does too (a `sim-<time>` directory): a journal of an earlier simulated account would only
/// disagree with this one.
fn journal_dir(state_dir: &Path, sim: bool) -> Result<std::path::PathBuf, StartError> {
    if !sim {
        return Ok(state_dir.to_path_buf());
    }
    let dir = state_dir.join(format!(
        "sim-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    ));
    std::fs::create_dir_all(&dir)
        .map_err(|e| StartError::Config(format!("cannot create {}: {e}", dir.display())))?;
    Ok(dir)
}

/// The mode the journal recorded last, and why it is the one the daemon starts in (an
/// unknown one starts halted, to be safe).
async fn journaled_mode(
    journal: &JournalHandle,
) -> Result<(TradingMode, &'static str), StartError> {
    match journal.addr.send(CurrentMode).await {
        Ok(Ok(Some(m))) => Ok(
            match serde_json::from_value(serde_json::Value::String(m.clone())) {
                Ok(mode) => (mode, "the mode the journal recorded last"),
                Err(_) => {
                    tracing::error!(mode = %m, "unknown trading mode in the journal; starting halted");
                    (
                        TradingMode::Halted,
                        "an unknown mode in the journal: halted to be safe",
                    )
                }
            },
        ),
        Ok(Ok(None)) => {
            let cause = match journal.addr.send(crate::journal::IsNew).await {
                Ok(Ok(false)) => "the journal recorded no mode change: active",
                _ => "a new journal",
            };
            Ok((TradingMode::Active, cause))
        }
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(StartError::Config(format!(
            "the journal did not answer: {e}"
        ))),
    }
}

/// A stream's connection settings from `[stream]` (msgpack only for market data).
fn stream_settings(
    config: &Config,
    kind: StreamKind,
    url: String,
    credentials: &Credentials,
) -> StreamSettings {
    let s = &config.stream;
    StreamSettings {
        codec: if s.codec == crate::config::CodecChoice::Msgpack && kind == StreamKind::MarketData {
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
}

/// What the market-data stream subscribes: trades, quotes and trading statuses (a halted
/// symbol takes no entries) of every symbol, bars when `stream.subscribe_bars`.
fn market_subscriptions(config: &Config) -> Subscriptions {
    let all = || config.trading.symbols.iter().cloned().collect();
    Subscriptions {
        trades: all(),
        quotes: all(),
        statuses: all(),
        bars: if config.stream.subscribe_bars {
            all()
        } else {
            Default::default()
        },
        ..Default::default()
    }
}

/// A plan that does not cover SIP (409) falls back to IEX instead of failing.
fn sip_fallback(config: &Config, data_stream_url: &str) -> Option<String> {
    match config.alpaca.feed {
        crate::config::Feed::Sip | crate::config::Feed::DelayedSip => data_stream_url
            .rsplit_once('/')
            .map(|(base, _)| format!("{base}/iex")),
        _ => None,
    }
}

/// Starts everything. Must run inside an actix `System` on a tokio runtime.
pub async fn start(
    config: &Config,
    state_dir: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Daemon, StartError> {
    // 1. The broker.
    let (sim, credentials) = broker(config, &env).await?;
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

    // 2. The journal, and the health monitor (it hears every REST attempt from the first).
    let base_dir = state_dir.to_path_buf();
    let state_dir = journal_dir(state_dir, sim.is_some())?;
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
    let (mode, mode_cause) = journaled_mode(&journal).await?;
    tracing::info!(dir = %state_dir.display(), mode = ?mode, why = mode_cause, "journal open");

    // 3. The feed (its own thread), the order side, the trade_updates stream feeding it.
    let several = !config.strategies.is_empty();
    let mut built = Vec::new();
    for section in config.strategy_list() {
        let strategy = section.build().map_err(StartError::Config)?;
        built.push((section, strategy));
    }
    if built.is_empty() {
        return Err(StartError::Config("no strategy to run".into()));
    }
    // What may still fail is done before the trading actors start: an actor started and never
    // run would start only as the runtime is dropped, outside it.
    let notifier = if config.notify.webhooks.is_empty() {
        None
    } else {
        let instance = if config.notify.instance.is_empty() {
            crate::telemetry::instance_id(&env)
        } else {
            config.notify.instance.clone()
        };
        Some(
            crate::actors::notifier::Notifier::new(&config.notify, instance)
                .map_err(StartError::Config)?,
        )
    };
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
    let control_socket = crate::control::ControlSocket::bind(crate::control::ControlSettings {
        path: socket.clone(),
        group,
        allowed_uids: config.control.allowed_uids.clone(),
    })
    .map_err(|e| StartError::Config(e.to_string()))?;

    let mut intervals = vec![Interval::M1];
    for (_, strategy) in &built {
        if !intervals.contains(&strategy.interval()) {
            intervals.push(strategy.interval());
        }
    }
    let feed_settings = FeedSettings {
        symbols: config.trading.symbols.clone(),
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
    // The order path's own thread: the market-data session, the strategies, the risk checks
    // and the orders, so a tick reaches an intent without a thread hand-off.
    let trading_arbiter = actix::Arbiter::new();
    let trading = trading_arbiter.handle();
    let order_manager = OrderManager::new(
        order_settings,
        rest.clone().into(),
        journal.addr.clone(),
        journal.intents.clone(),
    )
    .with_splits(feed.clone().recipient())
    .with_health(reporter.clone());
    // The strategies on this thread propose through the order side's entry, in their turn.
    let entry = order_manager.entry();
    let orders = actix::Supervisor::start_in_arbiter(&trading, move |_| order_manager);
    let trade_client = StreamClient::new(
        stream_settings(
            config,
            StreamKind::TradeUpdates,
            trading_stream_url,
            &credentials,
        ),
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

    // 4. The account, the risk checks (in the journaled mode), the strategy.
    let (account_rest, refresh) = (
        rest.lane(crate::alpaca::rest::Lane::Account),
        Duration::from_millis(config.account.refresh_interval_ms),
    );
    let account_journal = journal.addr.clone().recipient();
    let account = actix::Supervisor::start(move |_| {
        AccountManager::new(account_rest.into(), refresh).with_journal(account_journal)
    });
    let risk_manager = RiskManager::new(config.risk.limits(), mode);
    let gate = risk_manager.gate();
    let risk = actix::Supervisor::start_in_arbiter(&trading, move |_| risk_manager);
    let mut strategies = Vec::new();
    for (section, strategy) in built {
        let interest = strategy.trade_interest();
        let mut runner = StrategyRunner::new(
            strategy,
            section.sizing_rule(),
            section.protection_rule(),
            Proposer::Direct {
                entry: entry.clone(),
                manager: orders.clone(),
            },
        )
        .describe(&section.name, &section.symbols);
        if several {
            runner = runner
                .one_of_several(&section.name, &section.symbols, section.allocation_usd)
                .with_allocation_pct(section.allocation_pct);
        }
        let addr = actix::Supervisor::start_in_arbiter(&trading, move |_| runner);
        strategies.push((addr, interest));
    }
    let Some(strategy) = strategies.first().map(|(a, _)| a.clone()) else {
        return Err(StartError::Config("no strategy to run".into()));
    };

    // 5. The wiring, then the market-data stream (no data before someone listens).
    orders.do_send(Connect {
        risk: gate,
        account: Some(account.clone().recipient()),
    });
    // Splits first: one the first reconciliation finds (made while the daemon was stopped)
    // may reach the feed at any point of this wiring; a listener told of it before it takes
    // any bars has nothing to start over, and what the feed gives it after is adjusted.
    feed.do_send(AddSplitListener(risk.clone().recipient()));
    feed.do_send(AddStatusListener(risk.clone().recipient()));
    feed.do_send(AddMarkListener(risk.clone().recipient()));
    account.do_send(AddAccountListener(risk.clone().recipient()));
    account.do_send(AddAccountListener(health.clone().recipient()));
    let mut tick_subscribers = Vec::new();
    for (runner, interest) in &strategies {
        orders.do_send(AddOrdersListener(runner.clone().recipient()));
        account.do_send(AddAccountListener(runner.clone().recipient()));
        feed.do_send(AddSplitListener(runner.clone().recipient()));
        feed.do_send(AddBarSubscriber::of(runner));
        let condition = match interest {
            TradeInterest::None => None,
            TradeInterest::All => Some(None),
            TradeInterest::WithCondition(c) => Some(Some(c.clone())),
        };
        if let Some(condition) = condition {
            tick_subscribers.push(TradeSubscriber {
                recipient: runner.clone().recipient(),
                condition,
            });
        }
    }
    let strategies: Vec<Addr<StrategyRunner>> = strategies.into_iter().map(|(a, _)| a).collect();
    let market_client = StreamClient::new(
        StreamSettings {
            fallback_url: sip_fallback(config, &data_stream_url),
            ..stream_settings(
                config,
                StreamKind::MarketData,
                data_stream_url,
                &credentials,
            )
        },
        market_subscriptions(config),
        Sinks {
            market: Some(feed.clone().recipient()),
            ticks: tick_subscribers,
            ..Default::default()
        },
        Some(rest.clone().into()),
    )
    .with_listener(health.clone().recipient())
    .with_listener(feed.clone().recipient())
    .with_health(reporter.clone())
    .with_session_on(trading);
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

    // 6. The supervisor, last, in the journaled mode (it resumes a flatten left unfinished).
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

    // Webhooks (`[notify]`), off the trading path.
    let notifier = notifier.map(|n| {
        let n = n.start();
        supervisor.do_send(crate::messages::mode::AddModeListener(
            n.clone().recipient(),
        ));
        orders.do_send(crate::messages::orders::AddOrderEventListener(
            n.clone().recipient(),
        ));
        health.do_send(crate::messages::health::AddHealthListener(
            n.clone().recipient(),
        ));
        n
    });

    // The control socket (bound above), on what everything else exposes.
    let (stop_tx, stop_requested) = tokio::sync::watch::channel(false);
    let control = crate::control::ControlServer::new(
        control_socket,
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
            journal_stats: journal.addr.clone().recipient(),
            wedge: supervisor.clone().recipient(),
            debug_commands: env("TRADERD_DEBUG_COMMANDS").is_some_and(|v| v == "1"),
            strategies: config
                .strategy_list()
                .into_iter()
                .zip(&strategies)
                .map(|(section, r)| crate::control::StrategyHandle {
                    name: section.name,
                    stats: r.clone().recipient(),
                    pause: r.clone().recipient(),
                })
                .collect(),
            shutdown: stop_tx,
            config: config.clone(),
            config_path: None,
            check: crate::config::CheckContext::default(),
        },
    )
    .start();

    Ok(Daemon {
        sim,
        journal,
        rest,
        feed,
        feed_arbiter,
        trading_arbiter,
        orders,
        account,
        risk,
        strategy,
        strategies,
        notifier,
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
