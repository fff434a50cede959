//! The Alpaca-compatible simulator: the embedded default broker and the test bench.
//!
//! One port serves the trading API (`/v2/account`, `/v2/orders`, …), the market-data API
//! (`/v2/stocks/…`) and the admin API (`/_sim/…`). A seeded market model ([`market`]) drives a
//! simulated broker ([`engine`]); a simulated clock ([`clock`]) keeps the market open whenever
//! the simulator runs. See `docs/simulator.md` for the contract.
//!
//! Concurrency: all state sits in one [`SimState`] behind a mutex. Every request first brings
//! the market up to the current market time, then works on a consistent state; a ticker task
//! does the same every 50 ms so resting orders fill without requests. No lock is held across
//! an `.await`.

/// The exchange calendar is domain knowledge; the simulator uses it too.
pub use crate::domain::calendar;
pub mod clock;
pub mod engine;
pub mod faults;
pub mod flood;
pub mod foreign;
mod http;
pub mod market;
pub mod meta;
pub mod server;
pub mod stream;

use crate::alpaca::model::TradeUpdate;
use clock::{ClockMode, SimClock};
use engine::{AccountSettings, AssetInfo, Engine};
use faults::{Faults, RateWindow};
use market::{Market, MarketEvent};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// Everything `traderd sim` and the embedded simulator can be told.
#[derive(Debug, Clone)]
pub struct SimSettings {
    pub seed: u64,
    pub symbols: Vec<String>,
    /// Market seconds per wall second in `sim` clock mode.
    pub speed: f64,
    pub clock: ClockMode,
    /// Accept only this key pair; `None` accepts any non-empty pair.
    pub credentials: Option<(String, String)>,
    /// Requests per window per key; 0 disables the limit.
    pub rate_limit: u32,
    pub rate_window_s: u64,
    pub account: AccountSettings,
    /// Sessions of minute-bar history behind the start.
    pub history_sessions: i64,
    /// Time a stream connection has to authenticate.
    pub stream_auth_timeout: Duration,
    /// Trades plus quotes symbols one data connection may stream; 0 = unlimited.
    pub stream_symbol_limit: usize,
    /// In `sim` clock mode, the market starts at the open of the latest session at or before
    /// this time (`None`: now). A time ahead puts the market's clock ahead of this machine's,
    /// as a simulator at speed soon is: the daemon must take the market's time from the
    /// broker (`/v2/clock`, message timestamps), never from its own clock.
    pub anchored_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Default for SimSettings {
    fn default() -> Self {
        SimSettings {
            seed: 1,
            symbols: market::DEFAULT_SYMBOLS
                .iter()
                .map(|(s, ..)| s.to_string())
                .collect(),
            speed: 1.0,
            clock: ClockMode::Sim,
            credentials: None,
            rate_limit: 200,
            rate_window_s: 60,
            account: AccountSettings::default(),
            history_sessions: 5,
            stream_auth_timeout: Duration::from_secs(10),
            stream_symbol_limit: 0,
            anchored_at: None,
        }
    }
}

/// Counters for `GET /_sim/stats`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SimStats {
    pub requests: u64,
    pub order_posts: u64,
    /// Order POSTs carrying a client order id the simulator already had (a client that sends
    /// an order twice); refused with 422 like Alpaca.
    pub client_order_id_reuses: u64,
    pub rate_limited: u64,
    pub unauthorized: u64,
}

/// The whole simulated world at one instant.
pub struct SimState {
    pub settings: SimSettings,
    pub clock: SimClock,
    pub market: Market,
    pub engine: Engine,
    pub faults: Faults,
    pub rate: RateWindow,
    pub stats: SimStats,
    /// Entries placed by someone else in shapes the simulator does not model.
    pub foreign: foreign::ForeignEntries,
    /// Splits applied (`POST /_sim/corporate_actions`), for `GET /v1/corporate-actions`.
    pub splits: Vec<crate::alpaca::model::Split>,
}

impl SimState {
    pub fn new(settings: SimSettings) -> SimState {
        let clock = SimClock::new(
            settings.clock,
            settings.speed,
            match (settings.clock, settings.anchored_at) {
                (ClockMode::Sim, Some(at)) => at,
                _ => chrono::Utc::now(),
            },
        );
        let market = Market::new(
            settings.seed,
            &settings.symbols,
            clock.timeline(),
            settings.history_sessions,
        );
        let engine = new_engine(&settings, &market, &clock);
        let rate = RateWindow::new(settings.rate_limit, settings.rate_window_s);
        SimState {
            settings,
            clock,
            market,
            engine,
            faults: Faults::default(),
            rate,
            stats: SimStats::default(),
            foreign: foreign::ForeignEntries::default(),
            splits: Vec::new(),
        }
    }

    /// Brings market and broker up to the current market time; returns the market events.
    pub fn advance(&mut self) -> Vec<MarketEvent> {
        let target = self.clock.now_open_seconds();
        let events = self.market.advance_to(target);
        let open = self.clock.clock_view().is_open;
        self.engine.on_market(&events);
        self.engine.set_time(self.clock.now(), open);
        events
    }

    /// `POST /_sim/reset`: a fresh account (cash, no orders or positions) and no faults. The
    /// market keeps running, so prices stay continuous.
    pub fn reset(&mut self) {
        self.engine = new_engine(&self.settings, &self.market, &self.clock);
        self.faults = Faults::default();
        self.rate = RateWindow::new(self.settings.rate_limit, self.settings.rate_window_s);
        self.stats = SimStats::default();
        self.foreign = foreign::ForeignEntries::default();
    }

    /// A split of `symbol` now, as Alpaca applies one: the account (position, open orders, a
    /// SPLIT activity), the market (prices from now on, split-adjusted history) and the
    /// corporate-actions listing. Answers (quantity held before, after).
    pub fn apply_split(
        &mut self,
        symbol: &str,
        old_rate: rust_decimal::Decimal,
        new_rate: rust_decimal::Decimal,
    ) -> Result<(rust_decimal::Decimal, rust_decimal::Decimal), engine::SimError> {
        let held = self.engine.apply_split(symbol, old_rate, new_rate)?;
        let now = self.clock.now();
        let ratio = new_rate / old_rate;
        self.market.apply_split(symbol, ratio, now);
        let ex_date = calendar::to_et(now).date_naive();
        let n = self.splits.len();
        self.splits.push(crate::alpaca::model::Split {
            id: Some(
                uuid::Uuid::new_v5(
                    &uuid::Uuid::NAMESPACE_OID,
                    format!("traderd-sim/split/{symbol}/{ex_date}/{n}").as_bytes(),
                )
                .to_string(),
            ),
            symbol: symbol.to_string(),
            new_rate,
            old_rate,
            ex_date,
            process_date: Some(ex_date),
            record_date: Some(ex_date),
            payable_date: Some(ex_date),
            cusip: None,
        });
        Ok(held)
    }
}

fn new_engine(settings: &SimSettings, market: &Market, clock: &SimClock) -> Engine {
    let assets = market
        .listings()
        .map(|l| AssetInfo {
            id: asset_id(&l.symbol),
            symbol: l.symbol.clone(),
            exchange: l.exchange.clone(),
            prev_close: market
                .prev_daily_bar(&l.symbol)
                .map(|b| b.c)
                .unwrap_or(l.base_price),
        })
        .collect();
    let mut engine = Engine::new(settings.seed, settings.account.clone(), assets, clock.now());
    for l in market.listings() {
        if let Some(p) = market.last_price(&l.symbol) {
            engine.set_mark(&l.symbol, p);
        }
    }
    engine
}

/// The stable asset id of a symbol (a UUIDv5, the same in every run).
pub fn asset_id(symbol: &str) -> uuid::Uuid {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("traderd-sim/asset/{symbol}").as_bytes(),
    )
}

/// The simulator shared by the server's tasks.
pub struct Sim {
    state: Mutex<SimState>,
    /// Order lifecycle events, for the `trade_updates` stream.
    pub trade_updates: broadcast::Sender<TradeUpdate>,
    /// Market events, for the market-data streams.
    pub market_events: broadcast::Sender<Arc<Vec<MarketEvent>>>,
    /// The stream endpoints' shared state.
    pub streams: Arc<stream::StreamHub>,
}

impl Sim {
    pub fn new(settings: SimSettings) -> Arc<Sim> {
        let streams = Arc::new(stream::StreamHub::new(
            settings.stream_auth_timeout,
            settings.stream_symbol_limit,
        ));
        Arc::new(Sim {
            streams,
            state: Mutex::new(SimState::new(settings)),
            trade_updates: broadcast::channel(4096).0,
            market_events: broadcast::channel(1024).0,
        })
    }

    /// Locks the state. A poisoned lock (a panic elsewhere, which our code never does) is
    /// recovered rather than spreading.
    pub fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the state brought up to now, then publishes what happened.
    pub fn with_state<T>(&self, f: impl FnOnce(&mut SimState) -> T) -> T {
        let (out, events, updates) = {
            let mut state = self.lock();
            let events = state.advance();
            let out = f(&mut state);
            let updates = state.engine.drain_updates();
            (out, events, updates)
        };
        if !events.is_empty() {
            let _ = self.market_events.send(Arc::new(events));
        }
        for u in updates {
            let _ = self.trade_updates.send(u);
        }
        out
    }
}

/// A running simulator: its address and the way to stop it.
pub struct SimHandle {
    pub addr: SocketAddr,
    pub sim: Arc<Sim>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl SimHandle {
    /// `http://ADDR`, the base URL for both APIs.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, ends the ticker, and waits for both.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Binds `addr` and serves the simulator until [`SimHandle::stop`].
pub async fn start(settings: SimSettings, addr: SocketAddr) -> std::io::Result<SimHandle> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let sim = Sim::new(settings);
    let (shutdown, rx) = watch::channel(false);
    let ticker = tokio::spawn(tick(sim.clone(), rx.clone()));
    let server = tokio::spawn(server::serve(listener, sim.clone(), rx));
    Ok(SimHandle {
        addr,
        sim,
        shutdown,
        tasks: vec![ticker, server],
    })
}

async fn tick(sim: Arc<Sim>, mut shutdown: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(Duration::from_millis(50));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = every.tick() => sim.with_state(|_| ()),
            _ = shutdown.changed() => return,
        }
    }
}

/// A client of a simulator's admin API (`/_sim/…`), for the soak and the load bench.
pub struct AdminClient {
    http: reqwest::Client,
    base: String,
}

impl AdminClient {
    pub fn new(base: impl Into<String>) -> Self {
        crate::alpaca::rest::install_crypto_provider();
        AdminClient {
            http: reqwest::Client::new(),
            base: base.into(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `POST /_sim/faults`.
    pub async fn post_fault(&self, fault: &serde_json::Value) -> Result<(), String> {
        let resp = self
            .http
            .post(format!("{}/_sim/faults", self.base))
            .json(fault)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if resp.status().is_success() {
            Ok(())
        } else {
            let status = resp.status();
            Err(format!(
                "{status} for {fault}: {}",
                resp.text().await.unwrap_or_default()
            ))
        }
    }

    /// A GET of the admin API (`/_sim/state`, `/_sim/stats`), as JSON.
    pub async fn get(&self, path: &str) -> Result<serde_json::Value, String> {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())
    }
}
