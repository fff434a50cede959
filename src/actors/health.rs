//! `ConnectionHealthMonitor`: hears how every part of the daemon is doing and decides when a
//! threshold in `[health]` is crossed; the Supervisor then sends the system into capital
//! preservation.
//!
//! What it watches (each check off when its threshold is 0):
//! - every REST attempt (through [`AlpacaClient::set_observer`]): broker errors (no answer,
//!   5xx, 429) in a sliding window of `window_s`;
//! - both streams (their [`StreamEvent`]s and status): a stream not streaming, or the
//!   market-data stream silent, for longer than `stream_down_limit_s` while the broker's clock
//!   says the market is open;
//! - orders the broker rejects in a row (an acceptance resets the count);
//! - actor restarts: more than `restart_budget` within `restart_window_s` exhausts the budget;
//! - the day's loss reaching `risk.daily_loss_limit_usd` (from the AccountManager's reads);
//! - a reconciliation finding a position the journal does not explain.
//!
//! It pings the broker (`GET /v2/clock`) every `ping_interval_ms`: the latency is recorded and
//! the answer says whether the market is open.
//!
//! A crossing is reported once ([`ThresholdCrossed`]) and latched until the Supervisor
//! re-arms the monitor ([`Rearm`], when the system goes back to trading), so one storm is one
//! crossing. Handles: [`HealthReport`], [`StreamEvent`], [`AccountUpdated`], [`Rearm`],
//! [`GetHealth`], [`WatchStream`].

use crate::broker::BrokerRef;
use crate::config::HealthSection;
use crate::domain::ConnectionState;
pub use crate::messages::health::{
    AddHealthListener, Cause, GetHealth, HealthChanged, HealthEvent, HealthReport, HealthStatus,
    PingStats, Rearm, Reporter, SourceCounts, StreamHealth, ThresholdCrossed, WatchStream,
};
use crate::messages::{
    AccountUpdated, GetStreamStatus, StreamCovered, StreamEvent, StreamEventKind, StreamKind,
};
use actix::prelude::*;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// The monitor's thresholds (see `[health]` in docs/configuration.md).
#[derive(Debug, Clone)]
pub struct HealthSettings {
    pub window: Duration,
    pub rest_errors_in_window: u32,
    pub stream_down_limit: Duration,
    pub order_rejects_in_a_row: u32,
    pub restart_budget: u32,
    pub restart_window: Duration,
    /// The day's loss at which to trip (positive; `None` turns the check off).
    pub daily_loss_limit: Option<Decimal>,
    pub mismatch_trips: bool,
    pub ping_interval: Duration,
}

impl HealthSettings {
    pub fn new(h: &HealthSection, daily_loss_limit_usd: Decimal) -> Self {
        HealthSettings {
            window: Duration::from_secs(h.window_s),
            rest_errors_in_window: h.rest_errors_in_window,
            stream_down_limit: Duration::from_secs(h.stream_down_limit_s),
            order_rejects_in_a_row: h.order_rejects_in_a_row,
            restart_budget: h.restart_budget,
            restart_window: Duration::from_secs(h.restart_window_s),
            daily_loss_limit: (h.daily_loss_trips && daily_loss_limit_usd > Decimal::ZERO)
                .then_some(daily_loss_limit_usd),
            mismatch_trips: h.mismatch_trips,
            ping_interval: Duration::from_millis(h.ping_interval_ms),
        }
    }
}

#[derive(Default)]
struct StreamWatch {
    state: Option<ConnectionState>,
    status: Option<Recipient<GetStreamStatus>>,
    /// Since when it has been down or silent.
    unhealthy_since: Option<Instant>,
    stale_events: u64,
    /// When its data last came another way (REST bars while it is down).
    covered_at: Option<Instant>,
}

pub struct ConnectionHealthMonitor {
    settings: HealthSettings,
    rest: Option<BrokerRef>,
    supervisor: Option<Recipient<ThresholdCrossed>>,
    sources: BTreeMap<&'static str, SourceCounts>,
    rest_errors: VecDeque<Instant>,
    rejects_in_a_row: u32,
    restarts: VecDeque<(Instant, &'static str)>,
    streams: BTreeMap<StreamKind, StreamWatch>,
    market_open: Option<bool>,
    /// When the market was last seen opening (silence before it does not count).
    open_since: Option<Instant>,
    pings: VecDeque<u64>,
    ping: PingStats,
    pinging: bool,
    tripped: Option<Cause>,
    crossings: u64,
    listeners: Vec<Recipient<HealthChanged>>,
    notes: VecDeque<String>,
}

impl ConnectionHealthMonitor {
    fn publish(&mut self, change: HealthChanged) {
        self.listeners.retain(|l| l.connected());
        for l in &self.listeners {
            l.do_send(change.clone());
        }
    }

    /// `rest` is pinged; the Supervisor is told of crossings.
    pub fn new(
        settings: HealthSettings,
        rest: Option<BrokerRef>,
        supervisor: Option<Recipient<ThresholdCrossed>>,
    ) -> Self {
        ConnectionHealthMonitor {
            settings,
            rest,
            supervisor,
            sources: BTreeMap::new(),
            rest_errors: VecDeque::new(),
            rejects_in_a_row: 0,
            restarts: VecDeque::new(),
            streams: BTreeMap::new(),
            market_open: None,
            open_since: None,
            pings: VecDeque::new(),
            ping: PingStats::default(),
            pinging: false,
            tripped: None,
            crossings: 0,
            listeners: Vec::new(),
            notes: VecDeque::new(),
        }
    }

    fn trip(&mut self, cause: Cause) {
        if self.tripped.is_some() {
            return;
        }
        tracing::error!(cause = %cause, "health threshold crossed");
        self.crossings += 1;
        if let Some(s) = &self.supervisor {
            s.do_send(ThresholdCrossed(cause.clone()));
        }
        self.publish(HealthChanged::Crossed {
            cause: cause.to_string(),
        });
        self.tripped = Some(cause);
    }

    fn prune(&mut self, now: Instant) {
        let window = self.settings.window;
        while self
            .rest_errors
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            self.rest_errors.pop_front();
        }
        let window = self.settings.restart_window;
        while self
            .restarts
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > window)
        {
            self.restarts.pop_front();
        }
    }

    fn on_report(&mut self, r: HealthReport) {
        let now = Instant::now();
        self.prune(now);
        let counts = self.sources.entry(r.source).or_default();
        match r.event {
            HealthEvent::Rest(outcome) => {
                if outcome.broker_error {
                    counts.errors += 1;
                    self.rest_errors.push_back(now);
                    let limit = self.settings.rest_errors_in_window;
                    let n = self.rest_errors.len() as u32;
                    if limit > 0 && n >= limit {
                        self.trip(Cause::RestErrors {
                            errors: n,
                            window_s: self.settings.window.as_secs(),
                        });
                    }
                } else {
                    counts.ok += 1;
                }
            }
            HealthEvent::OrderAccepted => {
                counts.ok += 1;
                self.rejects_in_a_row = 0;
            }
            HealthEvent::OrderRejected { detail } => {
                counts.errors += 1;
                self.rejects_in_a_row += 1;
                let limit = self.settings.order_rejects_in_a_row;
                tracing::debug!(in_a_row = self.rejects_in_a_row, detail = %detail, "order rejected");
                if limit > 0 && self.rejects_in_a_row >= limit {
                    self.trip(Cause::OrderRejects {
                        in_a_row: self.rejects_in_a_row,
                    });
                }
            }
            HealthEvent::ActorRestarted { reason } => {
                counts.errors += 1;
                self.restarts.push_back((now, r.source));
                let n = self.restarts.len() as u32;
                tracing::warn!(actor = r.source, reason = %reason, restarts_in_window = n, budget = self.settings.restart_budget, "actor restarted");
                let budget = self.settings.restart_budget;
                if budget > 0 && n > budget {
                    self.trip(Cause::RestartBudget {
                        restarts: n,
                        window_s: self.settings.restart_window.as_secs(),
                        last: r.source.to_string(),
                    });
                }
            }
            HealthEvent::ActorFailed { reason } => {
                counts.errors += 1;
                tracing::error!(actor = r.source, reason = %reason, "actor could not go on and stopped; its supervisor restarts it");
            }
            HealthEvent::Mismatch { detail } => {
                counts.errors += 1;
                if self.settings.mismatch_trips {
                    self.trip(Cause::Mismatch { detail });
                }
            }
        }
    }

    fn on_stream_state(&mut self, kind: StreamKind, to: ConnectionState) {
        let w = self.streams.entry(kind).or_default();
        w.state = Some(to);
        if to == ConnectionState::Streaming {
            w.covered_at = None;
            // Data silence (market data) is measured from the metrics on the next tick.
            if kind != StreamKind::MarketData {
                w.unhealthy_since = None;
            }
        } else if w.unhealthy_since.is_none() {
            w.unhealthy_since = Some(Instant::now());
        }
    }

    /// Market-data silence from a status read: the last message, the market opening, or the
    /// monitor's start, whichever is latest, counts as "heard from".
    fn on_stream_status(&mut self, kind: StreamKind, status: crate::connection::StreamStatus) {
        let open_since = self.open_since;
        let w = self.streams.entry(kind).or_default();
        w.state = Some(status.state);
        if status.state != ConnectionState::Streaming {
            if w.unhealthy_since.is_none() {
                w.unhealthy_since = Some(Instant::now());
            }
            return;
        }
        if kind != StreamKind::MarketData {
            w.unhealthy_since = None;
            return;
        }
        let limit = self.settings.stream_down_limit;
        let heard = status
            .metrics
            .last_message_at
            .and_then(|t| (chrono::Utc::now() - t).to_std().ok())
            .map(|ago| Instant::now().checked_sub(ago).unwrap_or_else(Instant::now));
        let heard = [heard, open_since].into_iter().flatten().max();
        match heard {
            Some(h) if h.elapsed() <= limit / 2 => w.unhealthy_since = None,
            Some(h) if w.unhealthy_since.is_none() => w.unhealthy_since = Some(h),
            _ => {}
        }
    }

    fn check_streams(&mut self) {
        let limit = self.settings.stream_down_limit;
        if limit.is_zero() || self.market_open != Some(true) {
            return;
        }
        let now = Instant::now();
        let open_since = self.open_since.unwrap_or(now);
        let mut down = None;
        for (kind, w) in &self.streams {
            if self.is_covered(w) {
                continue;
            }
            if let Some(since) = w.unhealthy_since {
                let since = since.max(open_since);
                let for_ = now.duration_since(since);
                if for_ > limit {
                    down = Some((*kind, for_));
                    break;
                }
            }
        }
        if let Some((kind, for_)) = down {
            self.trip(Cause::StreamDown {
                stream: stream_name(kind).to_string(),
                for_s: for_.as_secs(),
            });
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        for (kind, w) in &self.streams {
            let Some(status) = w.status.clone() else {
                continue;
            };
            let kind = *kind;
            ctx.spawn(
                async move { status.send(GetStreamStatus).await.ok() }
                    .into_actor(self)
                    .map(move |status, act, _| {
                        if let Some(s) = status {
                            act.on_stream_status(kind, s);
                        }
                        act.check_streams();
                    }),
            );
        }
        self.check_streams();
    }

    fn ping(&mut self, ctx: &mut Context<Self>) {
        let Some(rest) = self.rest.clone() else {
            return;
        };
        if self.pinging {
            return;
        }
        self.pinging = true;
        self.ping.sent += 1;
        let started = Instant::now();
        ctx.spawn(
            async move { rest.get_clock().await }
                .into_actor(self)
                .map(move |r, act, _| {
                    act.pinging = false;
                    let ms = started.elapsed().as_millis() as u64;
                    match r {
                        Ok(clock) => {
                            act.ping.last_ms = Some(ms);
                            act.pings.push_back(ms);
                            if act.pings.len() > 100 {
                                act.pings.pop_front();
                            }
                            let mut sorted: Vec<u64> = act.pings.iter().copied().collect();
                            sorted.sort_unstable();
                            act.ping.p50_ms = sorted.get(sorted.len() / 2).copied();
                            act.ping.max_ms = sorted.last().copied();
                            act.set_market_open(clock.is_open);
                        }
                        Err(e) => {
                            act.ping.failed += 1;
                            tracing::warn!(error = %e, latency_ms = ms, "health ping failed");
                        }
                    }
                }),
        );
    }

    fn set_market_open(&mut self, open: bool) {
        if open && self.market_open != Some(true) {
            self.open_since = Some(Instant::now());
        }
        self.market_open = Some(open);
    }

    fn rearm(&mut self) {
        if let Some(c) = self.tripped.take() {
            tracing::info!(was = %c, "health monitor re-armed");
            self.publish(HealthChanged::Rearmed);
        }
        self.rest_errors.clear();
        self.rejects_in_a_row = 0;
        self.restarts.clear();
        let now = Instant::now();
        for w in self.streams.values_mut() {
            if w.unhealthy_since.is_some() {
                w.unhealthy_since = Some(now);
            }
        }
    }

    fn status(&self) -> HealthStatus {
        let now = Instant::now();
        HealthStatus {
            market_open: self.market_open,
            sources: self.sources.clone(),
            rest_errors_in_window: self
                .rest_errors
                .iter()
                .filter(|t| now.duration_since(**t) <= self.settings.window)
                .count() as u32,
            order_rejects_in_a_row: self.rejects_in_a_row,
            thresholds: [
                ("rest_errors_in_window", self.settings.rest_errors_in_window),
                (
                    "order_rejects_in_a_row",
                    self.settings.order_rejects_in_a_row,
                ),
                ("restarts_in_window", self.settings.restart_budget),
            ]
            .into(),
            restarts_in_window: self
                .restarts
                .iter()
                .filter(|(t, _)| now.duration_since(*t) <= self.settings.restart_window)
                .count() as u32,
            streams: self
                .streams
                .iter()
                .map(|(k, w)| {
                    (
                        stream_name(*k).to_string(),
                        StreamHealth {
                            state: w.state,
                            unhealthy_for_ms: w
                                .unhealthy_since
                                .map(|s| now.duration_since(s).as_millis() as u64)
                                .unwrap_or(0),
                            stale_events: w.stale_events,
                            covered: self.is_covered(w),
                        },
                    )
                })
                .collect(),
            ping: self.ping.clone(),
            tripped: self.tripped.as_ref().map(|c| c.to_string()),
            crossings: self.crossings,
            notes: self.notes.iter().cloned().collect(),
        }
    }

    /// A stream whose data came another way within the limit is not down: only both failing
    /// past the limit trips the threshold.
    fn is_covered(&self, w: &StreamWatch) -> bool {
        w.covered_at
            .is_some_and(|t| t.elapsed() <= self.settings.stream_down_limit)
    }

    fn note(&mut self, text: String) {
        if self.notes.len() == 16 {
            self.notes.pop_front();
        }
        self.notes.push_back(text);
    }
}

fn stream_name(kind: StreamKind) -> &'static str {
    match kind {
        StreamKind::MarketData => "market_data",
        StreamKind::TradeUpdates => "trade_updates",
    }
}

/// Reports every REST attempt of `rest` (and its clones) to `monitor`.
pub fn observe_rest(rest: &crate::alpaca::AlpacaClient, monitor: Recipient<HealthReport>) {
    rest.set_observer(Box::new(move |outcome| {
        monitor.do_send(HealthReport {
            source: "rest",
            event: HealthEvent::Rest(outcome),
        })
    }));
}

impl Actor for ConnectionHealthMonitor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1024);
        ctx.run_interval(Duration::from_secs(1), |act, ctx| act.tick(ctx));
        self.ping(ctx);
        ctx.run_interval(self.settings.ping_interval, |act, ctx| act.ping(ctx));
    }
}

impl Handler<HealthReport> for ConnectionHealthMonitor {
    type Result = ();
    fn handle(&mut self, msg: HealthReport, _: &mut Context<Self>) {
        self.on_report(msg);
    }
}

impl Handler<StreamEvent> for ConnectionHealthMonitor {
    type Result = ();
    fn handle(&mut self, msg: StreamEvent, _: &mut Context<Self>) {
        match msg.kind {
            StreamEventKind::StateChanged { to, .. } => {
                self.on_stream_state(msg.stream, to);
                self.publish(HealthChanged::Stream {
                    stream: stream_name(msg.stream).into(),
                    state: to,
                });
            }
            StreamEventKind::Stale { .. } => {
                let w = self.streams.entry(msg.stream).or_default();
                w.stale_events += 1;
                if w.unhealthy_since.is_none() {
                    w.unhealthy_since = Some(Instant::now());
                }
            }
            StreamEventKind::FeedFallback { from, to, reason } => {
                self.note(format!(
                    "{}: the {from} feed was refused ({reason}); streaming {to} instead",
                    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
                ));
            }
            _ => {}
        }
        self.check_streams();
    }
}

impl Handler<StreamCovered> for ConnectionHealthMonitor {
    type Result = ();
    fn handle(&mut self, msg: StreamCovered, _: &mut Context<Self>) {
        let w = self.streams.entry(msg.stream).or_default();
        if w.covered_at.is_none() {
            tracing::warn!(
                stream = stream_name(msg.stream),
                "stream down, its data coming by REST: degraded, not counted as down while that lasts"
            );
        }
        w.covered_at = Some(Instant::now());
    }
}

impl Handler<AccountUpdated> for ConnectionHealthMonitor {
    type Result = ();
    fn handle(&mut self, msg: AccountUpdated, _: &mut Context<Self>) {
        let a = msg.0;
        if self.market_open.is_none() {
            self.set_market_open(a.market_open);
        }
        if let Some(limit) = self.settings.daily_loss_limit
            && a.day_pnl <= -limit
        {
            self.trip(Cause::DailyLoss {
                day_pnl: a.day_pnl,
                limit,
            });
        }
    }
}

impl Handler<Rearm> for ConnectionHealthMonitor {
    type Result = ();
    fn handle(&mut self, _: Rearm, _: &mut Context<Self>) {
        self.rearm();
    }
}

impl Handler<AddHealthListener> for ConnectionHealthMonitor {
    type Result = ();
    fn handle(&mut self, msg: AddHealthListener, _: &mut Context<Self>) {
        self.listeners.push(msg.0);
    }
}

impl Handler<WatchStream> for ConnectionHealthMonitor {
    type Result = ();
    fn handle(&mut self, msg: WatchStream, _: &mut Context<Self>) {
        self.streams.entry(msg.0).or_default().status = Some(msg.1);
    }
}

impl Handler<GetHealth> for ConnectionHealthMonitor {
    type Result = MessageResult<GetHealth>;
    fn handle(&mut self, _: GetHealth, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.status())
    }
}

#[cfg(test)]
mod tests;
