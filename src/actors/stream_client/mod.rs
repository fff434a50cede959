//! `StreamClient` actor: one of Alpaca's two WebSockets (market data, or `trade_updates`).
//!
//! The actor is a thin shell: the connection runs in a [`session::Session`] task beside it,
//! which it starts in `started()` and stops in `stopping()`. Decisions live in [`core`].
//!
//! Handles: [`ChangeSubscriptions`] (at run time; the whole set is restored after every
//! reconnect before the stream counts as streaming again), [`GetStreamStatus`],
//! [`AddStreamListener`], and the session's [`session::Report`]s.
//! Emits: [`MarketBatch`](crate::messages::MarketBatch) or
//! [`TradeUpdatesReceived`](crate::messages::TradeUpdatesReceived) and
//! [`OrderStreamReady`](crate::messages::OrderStreamReady) to the sinks it was given;
//! [`StreamEvent`] to listeners for every state change, rejected frame, server error, staleness
//! and fatal refusal.
//! Failure and restart: a fatal refusal (authentication, subscription) means this actor cannot
//! go on: it reports to the health monitor and stops its context; its supervisor restarts it.
//! `restarting()` drops the old session and reports the restart (counted against the restart
//! budget); `started()` opens a new one from `Disconnected` after a delay that doubles with
//! each restart (0.5 s up to 30 s), keeping the desired subscriptions. [`StopStream`] retires
//! it for good (shutdown), without a restart.

pub mod session;

pub use crate::connection::{
    Backoff, ConnectionState, MetricsSnapshot, StreamMetrics, StreamStatus, Subscriptions,
};
pub use session::{Sinks, StreamSettings};

use crate::broker::BrokerRef;
use crate::messages::health::{HealthEvent, Reporter};
pub use crate::messages::stream::{RestartStream, StopStream};
use crate::messages::{
    AddStreamListener, ChangeSubscriptions, GetStreamStatus, StreamEvent, StreamEventKind,
};
use actix::prelude::*;
use session::{Command, Report, Session};
use std::sync::Arc;
use tokio::sync::mpsc;

pub struct StreamClient {
    settings: Arc<StreamSettings>,
    metrics: Arc<StreamMetrics>,
    desired: Subscriptions,
    state: ConnectionState,
    sinks: Sinks,
    rest: Option<BrokerRef>,
    listeners: Vec<Recipient<StreamEvent>>,
    commands: Option<mpsc::UnboundedSender<Command>>,
    health: Reporter,
    restarts: u32,
    retired: bool,
    /// Where the session runs: an arbiter's thread (the market data's, beside the actors its
    /// ticks go to), or the runtime's workers.
    session_on: Option<actix::ArbiterHandle>,
}

impl StreamClient {
    pub fn new(
        settings: StreamSettings,
        initial: Subscriptions,
        sinks: Sinks,
        rest: Option<BrokerRef>,
    ) -> Self {
        StreamClient {
            settings: Arc::new(settings),
            metrics: Arc::new(StreamMetrics::default()),
            desired: initial,
            state: ConnectionState::Disconnected,
            sinks,
            rest,
            listeners: Vec::new(),
            commands: None,
            health: Reporter::default(),
            restarts: 0,
            retired: false,
            session_on: None,
        }
    }

    /// Runs the session on `arbiter`'s thread rather than the runtime's workers: the daemon's
    /// market data shares the thread of the strategies, risk checks and orders, so a tick
    /// reaches an intent without a thread hand-off (docs/architecture.md).
    pub fn with_session_on(mut self, arbiter: actix::ArbiterHandle) -> Self {
        self.session_on = Some(arbiter);
        self
    }

    /// Reports failures and restarts to the health monitor.
    pub fn with_health(mut self, health: Reporter) -> Self {
        self.health = health;
        self
    }

    fn source(&self) -> &'static str {
        match self.settings.kind {
            crate::messages::StreamKind::MarketData => "stream:market_data",
            crate::messages::StreamKind::TradeUpdates => "stream:trade_updates",
        }
    }

    /// Adds a listener before the actor starts, so it sees the very first state change.
    pub fn with_listener(mut self, listener: Recipient<StreamEvent>) -> Self {
        self.listeners.push(listener);
        self
    }

    fn publish(&mut self, kind: StreamEventKind) {
        let event = StreamEvent {
            stream: self.settings.kind,
            kind,
        };
        self.listeners.retain(|l| l.connected());
        for l in &self.listeners {
            l.do_send(event.clone());
        }
    }

    fn start_session(&mut self, ctx: &mut Context<Self>) {
        if let Some(arbiter) = self.session_on.clone() {
            if arbiter.spawn(self.new_session(ctx).run()) {
                return;
            }
            tracing::warn!(stream = ?self.settings.kind, "the session's thread has stopped; the session runs on the runtime's workers");
        }
        tokio::spawn(self.new_session(ctx).run());
    }

    fn new_session(&mut self, ctx: &mut Context<Self>) -> Session {
        let (tx, rx) = mpsc::unbounded_channel();
        self.commands = Some(tx);
        Session::new(
            self.settings.clone(),
            self.metrics.clone(),
            self.desired.clone(),
            rx,
            ctx.address().recipient(),
            self.sinks.clone(),
            self.rest.clone(),
        )
    }
}

impl Actor for StreamClient {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.retired {
            return;
        }
        if self.restarts == 0 {
            tracing::info!(stream = ?self.settings.kind, url = %self.settings.url, "stream client starting");
            self.start_session(ctx);
            return;
        }
        let delay = std::time::Duration::from_millis(500)
            .saturating_mul(1 << (self.restarts - 1).min(6))
            .min(std::time::Duration::from_secs(30));
        tracing::warn!(stream = ?self.settings.kind, restarts = self.restarts, delay_ms = delay.as_millis() as u64, "stream client restarted; reconnecting");
        ctx.run_later(delay, |act, ctx| {
            if !act.retired {
                act.start_session(ctx)
            }
        });
    }

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        if let Some(tx) = self.commands.take() {
            let _ = tx.send(Command::Stop);
        }
        Running::Stop
    }
}

impl actix::Supervised for StreamClient {
    fn restarting(&mut self, _: &mut Context<Self>) {
        if let Some(tx) = self.commands.take() {
            let _ = tx.send(Command::Stop);
        }
        self.state = ConnectionState::Disconnected;
        if !self.retired {
            self.restarts = self.restarts.saturating_add(1);
            self.health.report(
                self.source(),
                HealthEvent::ActorRestarted {
                    reason: "the stream client stopped".into(),
                },
            );
        }
    }
}

impl Handler<Report> for StreamClient {
    type Result = ();

    fn handle(&mut self, report: Report, ctx: &mut Context<Self>) {
        match report {
            Report::State { to, reason } => {
                let from = std::mem::replace(&mut self.state, to);
                tracing::info!(stream = ?self.settings.kind, ?from, ?to, reason = %reason, "stream state changed");
                if to == ConnectionState::Streaming {
                    self.restarts = 0;
                }
                self.publish(StreamEventKind::StateChanged { from, to, reason });
            }
            Report::Event(StreamEventKind::Fatal { reason }) => {
                self.publish(StreamEventKind::Fatal {
                    reason: reason.clone(),
                });
                if !self.retired {
                    self.health
                        .report(self.source(), HealthEvent::ActorFailed { reason });
                    ctx.stop();
                }
            }
            Report::Event(kind) => self.publish(kind),
        }
    }
}

impl Handler<ChangeSubscriptions> for StreamClient {
    type Result = ();

    fn handle(&mut self, msg: ChangeSubscriptions, _: &mut Context<Self>) {
        self.desired.change(&msg.add, &msg.remove);
        if let Some(tx) = &self.commands {
            let _ = tx.send(Command::Change(Box::new((msg.add, msg.remove))));
        }
    }
}

impl Handler<RestartStream> for StreamClient {
    type Result = ();

    fn handle(&mut self, _: RestartStream, _: &mut Context<Self>) {
        if let Some(tx) = &self.commands {
            let _ = tx.send(Command::Restart);
        }
    }
}

impl Handler<StopStream> for StreamClient {
    type Result = ();

    fn handle(&mut self, _: StopStream, _: &mut Context<Self>) {
        self.retired = true;
        if let Some(tx) = self.commands.take() {
            let _ = tx.send(Command::Stop);
        }
    }
}

impl Handler<GetStreamStatus> for StreamClient {
    type Result = MessageResult<GetStreamStatus>;

    fn handle(&mut self, _: GetStreamStatus, _: &mut Context<Self>) -> Self::Result {
        let feed = (self.settings.kind == crate::messages::StreamKind::MarketData).then(|| {
            let fell_back = self
                .metrics
                .fell_back
                .load(std::sync::atomic::Ordering::Relaxed);
            match (&self.settings.fallback_url, fell_back) {
                (Some(to), true) => session::feed_of(to),
                _ => session::feed_of(&self.settings.url),
            }
        });
        MessageResult(StreamStatus {
            stream: self.settings.kind,
            state: self.state,
            feed,
            metrics: self.metrics.snapshot(),
            subscriptions: self.desired.counts(),
        })
    }
}

impl Handler<AddStreamListener> for StreamClient {
    type Result = ();

    fn handle(&mut self, msg: AddStreamListener, _: &mut Context<Self>) {
        self.listeners.push(msg.0);
    }
}
