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

mod http;
pub mod memory;
mod metrics;
mod run;
mod start;
pub mod systemd;
pub use run::{Exit, RunOptions, run};
pub use start::{StartError, start, stream_urls};

use crate::actors::account::{AccountManager, AddAccountListener};
use crate::actors::health::{
    ConnectionHealthMonitor, HealthSettings, Reporter, WatchStream, observe_rest,
};
use crate::actors::market_data::{
    AddBarSubscriber, AddMarkListener, AddSplitListener, AddStatusListener, FeedSettings, Interval,
    MarketDataFeed, SetCoverListener,
};
use crate::actors::order_manager::{
    AddOrdersListener, Connect, GetOrderStats, OrderManager, OrderSettings, Proposer,
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
use crate::messages::market::TradeSubscriber;
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
    /// The order path's thread: the market-data session, the strategies, the risk checks and
    /// the orders (a tick reaches an intent without a thread hand-off).
    pub trading_arbiter: actix::Arbiter,
    pub orders: Addr<OrderManager>,
    pub account: Addr<AccountManager>,
    pub risk: Addr<RiskManager>,
    /// The first strategy's runner (the only one without `[[strategies]]`).
    pub strategy: Addr<StrategyRunner>,
    /// Every strategy's runner, in the config's order.
    pub strategies: Vec<Addr<StrategyRunner>>,
    /// The webhooks' notifier, when `[notify]` has any.
    pub notifier: Option<Addr<crate::actors::notifier::Notifier>>,
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
        self.trading_arbiter.stop();
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
