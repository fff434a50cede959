//! `OrderManager` actor: the shell around the order side's core ([`OrderDesk`]). It turns the
//! desk's effects into I/O (journal writes in order, requests to the broker, messages to the
//! other actors, spans) and feeds what comes back to the desk. Every decision is the desk's:
//! write-ahead, ids, folding every source by cumulative quantity, bracket legs, polls and
//! lookups, reconciliation, splits, exits clearing the symbol first (see `orders::desk`).
//!
//! A proposal ([`Propose`]: a strategy's, a filled entry's stop, a closing order of the
//! flatten procedure) is checked by the [`RiskGate`](crate::risk::RiskGate) it shares with the
//! RiskManager and, approved, taken by the desk and its intent written ahead, all in one call
//! of the order side's entry ([`OrderEntry`], which holds the desk): the gate learns the book
//! (the new order's quantity pending) before the next proposal is looked at. The strategies on
//! this actor's thread make that call in their own turn ([`Proposer::Direct`]), so a strategy's
//! signal reaches the request without a mailbox hop; they tell this actor the broker's answer
//! ([`Sent`]) and hand it the exits that must clear the symbol first ([`Dispatch`]).
//!
//! Handles: [`Propose`], [`Sent`], [`Dispatch`], [`TradeUpdatesReceived`],
//! [`OrderStreamReady`], [`StreamEvent`], [`CancelAll`], [`Flatten`], [`GetOrderStats`],
//! [`AddOrdersListener`], [`Connect`]. Emits [`OrdersChanged`](crate::messages::OrdersChanged)
//! after every change and [`RefreshAccount`] after fills.

mod entry;
mod io;

pub use entry::{Dispatch, Entered, OrderEntry, Proposer, Sent};

use crate::alpaca::model::OrderRequest;
use crate::broker::BrokerRef;
use crate::journal::{
    self, IntentWriter, Journal, JournalError, OrderIntent, RecordEvent, RecordFill, RecordIntent,
    RecordOrderState,
};
use crate::messages::health::{HealthEvent, Reporter};
pub use crate::messages::orders::{
    AddOrderEventListener, AddOrdersListener, CancelAll, Connect, Flatten, FlattenReport,
    GetOrderStats, OrderEvent, OrderStats,
};
use crate::messages::orders::{Propose, ProposeError};
use crate::messages::{
    OrderStreamReady, RefreshAccount, SplitApplied, StreamEvent, StreamEventKind, StreamKind,
    TradeUpdatesReceived,
};
use crate::orders::desk::{Alert, Effect, OrderDesk, PollPlan, Record};
use actix::prelude::*;
use chrono::Utc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct OrderSettings {
    pub ack_timeout: Duration,
    pub poll_interval: Duration,
    pub reconcile_interval: Duration,
}

impl Default for OrderSettings {
    fn default() -> Self {
        OrderSettings {
            ack_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_secs(1),
            reconcile_interval: Duration::from_secs(60),
        }
    }
}

pub struct OrderManager {
    settings: OrderSettings,
    /// The desk, the risk checks and the intents' write-ahead, shared with the strategies
    /// on this actor's thread (they propose in their own turn).
    entry: OrderEntry,
    rest: BrokerRef,
    journal: Addr<Journal>,
    account: Option<Recipient<RefreshAccount>>,
    splits: Option<Recipient<SplitApplied>>,
    event_listeners: Vec<Recipient<OrderEvent>>,
    health: Reporter,
    tick_to_order: crate::latency::LatencyHistogram,
    /// Tick to order less each order's own write-ahead.
    beyond_write: crate::latency::LatencyHistogram,
}

impl OrderManager {
    /// `journal`: every record but a new order's intent, in order on the journal's thread;
    /// `intents`: those intents, written on the order path's thread before the request leaves.
    pub fn new(
        settings: OrderSettings,
        rest: BrokerRef,
        journal: Addr<Journal>,
        intents: IntentWriter,
    ) -> Self {
        let desk = OrderDesk::new(settings.ack_timeout);
        OrderManager {
            entry: OrderEntry::new(desk, intents, rest.clone()),
            settings,
            rest,
            journal,
            account: None,
            splits: None,
            event_listeners: Vec::new(),
            health: Reporter::default(),
            tick_to_order: crate::latency::LatencyHistogram::new(),
            beyond_write: crate::latency::LatencyHistogram::new(),
        }
    }

    /// The order side's way in, for the strategies on this actor's thread
    /// ([`Proposer::Direct`]).
    pub fn entry(&self) -> OrderEntry {
        self.entry.clone()
    }

    /// Told when a position was adjusted for a split (the feed restarts the symbol's bars
    /// and tells the risk checks and the strategies). Given before the start, not with
    /// [`Connect`]: the first reconciliation runs as the actor starts and may find a split
    /// made while the daemon was stopped before the rest of the daemon is wired.
    pub fn with_splits(mut self, splits: Recipient<SplitApplied>) -> Self {
        self.splits = Some(splits);
        self
    }

    /// Reports accepted and rejected orders, mismatches and failures to the health monitor.
    pub fn with_health(mut self, health: Reporter) -> Self {
        self.health = health;
        self
    }

    fn publish(&mut self) {
        self.entry.publish();
    }

    /// Runs one call of the desk.
    fn desk<T>(&self, f: impl FnOnce(&mut OrderDesk) -> T) -> T {
        self.entry.with(|core| f(&mut core.desk))
    }

    fn emit(&mut self, event: OrderEvent) {
        self.event_listeners.retain(|l| l.connected());
        for l in &self.event_listeners {
            l.do_send(event.clone());
        }
    }

    /// Performs the desk's effects, in order.
    fn perform(&mut self, effects: Vec<Effect>, ctx: &mut Context<Self>) {
        for e in effects {
            match e {
                Effect::Journal(record) => self.write(record, ctx),
                Effect::StateBooked(s) => {
                    if s.status.is_terminal() {
                        self.entry.with(|c| c.traces.remove(&s.client_order_id));
                    }
                    self.emit(OrderEvent::Order(s));
                }
                Effect::FillBooked {
                    fill,
                    correlation_id,
                } => {
                    self.emit(OrderEvent::Fill(fill.clone()));
                    let span = tracing::info_span!(
                        parent: None,
                        "order.fill",
                        client_order_id = %fill.client_order_id,
                        correlation_id = %correlation_id,
                        symbol = %fill.symbol,
                        side = ?fill.side,
                        qty = %fill.qty,
                        price = %fill.price,
                    );
                    self.entry.with(|c| {
                        if let Some(t) = c.traces.get(&fill.client_order_id) {
                            t.adopt(&span);
                        }
                    });
                    // Not entered: log lines stay as they are; the span is exported when dropped.
                    drop(span);
                    if let Some(a) = &self.account {
                        a.do_send(RefreshAccount);
                    }
                }
                Effect::Protect { entry, intent } => self.protect(entry, intent, ctx),
                Effect::Alert(alert) => self.health.report("orders", health_event(alert)),
                Effect::Stop => ctx.stop(),
                Effect::Reconcile { after } if after.is_zero() => self.reconcile(ctx),
                Effect::Reconcile { after } => {
                    ctx.run_later(after, |act, ctx| act.reconcile(ctx));
                }
                Effect::ExplainSplits {
                    candidates,
                    confirm,
                } => {
                    let rest = self.rest.lane(crate::alpaca::rest::Lane::Reconcile);
                    let journal = self.journal.clone();
                    let work = async move { io::apply_splits(&rest, &journal, &candidates).await };
                    ctx.spawn(work.into_actor(self).map(move |applied, act, ctx| {
                        let effects = act.desk(|d| d.on_splits_applied(applied, confirm));
                        act.perform(effects, ctx);
                        act.publish();
                    }));
                }
                Effect::SplitApplied { symbol, ratio } => {
                    if let Some(s) = &self.splits {
                        s.do_send(SplitApplied { symbol, ratio });
                    }
                }
                Effect::Forget(coid) => {
                    self.entry.with(|c| c.traces.remove(&coid));
                }
            }
        }
    }

    /// Journals one record without waiting, in the order written (the record is queued before
    /// this returns: [`journal::Ordered`]). Failures are logged and counted (the journal is on
    /// disk: a failure there is an operator's problem, reported loudly).
    fn write(&mut self, record: Record, ctx: &mut Context<Self>) {
        match record {
            Record::Intent(i) => self.journal(RecordIntent(i), ctx),
            Record::State(s) => self.journal(RecordOrderState(s), ctx),
            Record::Fill(f) => self.journal(RecordFill(f), ctx),
            Record::Event(kind, body) => {
                self.journal(RecordEvent(Utc::now(), kind.to_string(), body), ctx)
            }
        }
    }

    fn journal<M, T>(&mut self, msg: M, ctx: &mut Context<Self>)
    where
        M: Message<Result = Result<T, JournalError>> + Send + 'static,
        T: Send + 'static,
        Journal: Handler<journal::Ordered<M>>,
    {
        let answer = journal::ordered(&self.journal, msg);
        ctx.spawn(answer.into_actor(self).map(|r, act, ctx| {
            let err = match r {
                Some(Ok(_)) => {
                    let effects = act.desk(|d| d.journal_outcome(false));
                    return act.perform(effects, ctx);
                }
                // Only learned bracket legs are journaled through here without a check
                // first; one learned again after a restart is already there.
                Some(Err(JournalError::DuplicateIntent(_))) => return,
                Some(Err(e)) => e.to_string(),
                None => "the journal is not running".to_string(),
            };
            tracing::error!(error = %err, "cannot write the journal");
            let effects = act.desk(|d| d.journal_outcome(true));
            act.perform(effects, ctx);
        }));
    }

    /// Asks the risk checks for a filled entry's trailing stop (after the effects at hand).
    fn protect(&mut self, entry: String, intent: crate::risk::Intent, ctx: &mut Context<Self>) {
        let me = ctx.address();
        ctx.spawn(async move { (entry, me.send(Propose::new(intent)).await) }.into_actor(self).map(
            |(entry, r), _, _| match r {
                Ok(Ok(stop)) => tracing::info!(entry = %entry, client_order_id = %stop, "trailing stop placed"),
                Ok(Err(e)) => tracing::warn!(entry = %entry, error = %e, "no trailing stop for this entry"),
                Err(e) => tracing::warn!(entry = %entry, error = %e, "no trailing stop: the order manager is stopping"),
            },
        ));
    }

    // ----- submission ---------------------------------------------------------------------

    /// A proposal: the risk checks, then the desk takes the approved order and its intent is
    /// journaled before the request leaves (see [`OrderEntry::enter`]). Answers the client
    /// order id.
    fn propose(&mut self, msg: Propose, ctx: &mut Context<Self>) -> Result<String, ProposeError> {
        let entered = self.entry.enter(msg)?;
        let coid = entered.submission.client_order_id.clone();
        self.dispatch(entered, ctx);
        // The gate learns the new order's pending quantity before the next proposal.
        self.publish();
        Ok(coid)
    }

    /// Sends an order the desk has taken; exits and closes first clear our other orders on
    /// the symbol (legs, stops).
    fn dispatch(&mut self, entered: Entered, ctx: &mut Context<Self>) {
        let Entered {
            submission: s,
            span,
        } = entered;
        // When the market data behind it arrived (a live signal's order), for tick to order.
        let arrived = s.intent.trace.arrived();
        if s.clear.is_empty() {
            return self.send_order(s.record, s.request, arrived, span, ctx);
        }
        let rest = self.rest.clone();
        let wait = self.settings.ack_timeout;
        let (symbol, side, clear) = (s.intent.symbol.clone(), s.intent.side, s.clear);
        let (record, request) = (s.record, s.request);
        ctx.spawn(
            async move { io::clear_symbol(&rest, &clear, &symbol, side, wait).await }
                .into_actor(self)
                .map(move |left, act, ctx| {
                    match act.desk(|d| d.after_clear(record, request, left, Utc::now())) {
                        Ok((record, request)) => {
                            act.send_order(record, request, arrived, span, ctx)
                        }
                        Err(effects) => {
                            act.perform(effects, ctx);
                            act.publish();
                        }
                    }
                }),
        );
    }

    /// Journals the intent, then sends the request (see [`OrderEntry::send`]). `arrived`:
    /// when the market data that led to it arrived (live signals), for tick to order.
    fn send_order(
        &mut self,
        record: OrderIntent,
        request: OrderRequest,
        arrived: Option<std::time::Instant>,
        span: tracing::Span,
        ctx: &mut Context<Self>,
    ) {
        let sending = self.entry.send(record, request, arrived, span);
        ctx.spawn(
            sending
                .into_actor(self)
                .map(|sent, act, ctx| act.on_sent(sent, ctx)),
        );
    }

    fn on_sent(&mut self, sent: Sent, ctx: &mut Context<Self>) {
        if let (Ok(_), Some(whole), Some(beyond)) =
            (&sent.result, sent.tick_to_order, sent.beyond_write)
        {
            self.tick_to_order.record(whole);
            self.beyond_write.record(beyond);
        }
        let coid = sent.client_order_id;
        let effects = self.desk(|d| d.on_sent(&coid, sent.result, Utc::now()));
        self.perform(effects, ctx);
        self.publish();
    }

    // ----- polls and reconciliation -------------------------------------------------------

    fn poll(&mut self, ctx: &mut Context<Self>) {
        let Some(plan) = self.desk(|d| d.poll_plan(Utc::now())) else {
            return;
        };
        let rest = self.rest.clone();
        let lookups = plan.lookups.clone();
        let work = async move {
            let mut out = Vec::new();
            for coid in lookups {
                let r = rest
                    .get_order_by_client_id(&coid)
                    .await
                    .map_err(|e| e.to_string());
                out.push((coid, r));
            }
            out
        };
        ctx.spawn(work.into_actor(self).map(move |results, act, ctx| {
            let plan: PollPlan = plan;
            let effects = act.desk(|d| d.on_polled(&plan, results, Utc::now()));
            act.perform(effects, ctx);
            act.publish();
        }));
    }

    fn reconcile(&mut self, ctx: &mut Context<Self>) {
        let Some(start) = self.desk(|d| d.begin_reconcile()) else {
            return;
        };
        // Reconciliation waits its turn behind orders and cancels.
        let rest = self.rest.lane(crate::alpaca::rest::Lane::Reconcile);
        let journal = self.journal.clone();
        let reads = start.clone();
        let work = async move { io::gather(&rest, &journal, &reads).await };
        ctx.spawn(work.into_actor(self).map(move |read, act, ctx| {
            let effects = act.desk(|d| d.on_reconciled(start, read, Utc::now()));
            act.perform(effects, ctx);
            act.publish();
        }));
    }

    /// How many entries the per-order maps hold (for the memory test: it must not grow with
    /// the number of orders once they are final and reconciled).
    pub fn tracked_entries(&self) -> usize {
        self.entry
            .with(|c| c.desk.tracked_entries() + c.traces.len())
    }
}

fn health_event(alert: Alert) -> HealthEvent {
    match alert {
        Alert::OrderAccepted => HealthEvent::OrderAccepted,
        Alert::OrderRejected { detail } => HealthEvent::OrderRejected { detail },
        Alert::Mismatch { detail } => HealthEvent::Mismatch { detail },
        Alert::Failed { reason } => HealthEvent::ActorFailed { reason },
        Alert::Restarted { reason } => HealthEvent::ActorRestarted { reason },
    }
}

impl Actor for OrderManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.reconcile(ctx);
        ctx.run_interval(self.settings.poll_interval, |act, ctx| act.poll(ctx));
        ctx.run_interval(self.settings.reconcile_interval, |act, ctx| {
            if act.desk(|d| d.lifecycle().reconciled()) {
                act.reconcile(ctx);
            }
        });
    }
}

impl actix::Supervised for OrderManager {
    /// The futures of the old context are gone: the desk forgets what was in flight and
    /// reconciles again before the next order.
    fn restarting(&mut self, ctx: &mut Context<Self>) {
        let effects = self.desk(|d| d.restarted());
        self.perform(effects, ctx);
    }
}

impl Handler<Propose> for OrderManager {
    type Result = Result<String, ProposeError>;
    fn handle(&mut self, msg: Propose, ctx: &mut Context<Self>) -> Self::Result {
        self.propose(msg, ctx)
    }
}

/// The broker's answer to an order a strategy sent in its own turn.
impl Handler<Sent> for OrderManager {
    type Result = ();
    fn handle(&mut self, msg: Sent, ctx: &mut Context<Self>) {
        self.on_sent(msg, ctx);
    }
}

/// An exit or a close a strategy's turn took: cleared, then sent, here.
impl Handler<Dispatch> for OrderManager {
    type Result = ();
    fn handle(&mut self, msg: Dispatch, ctx: &mut Context<Self>) {
        self.dispatch(msg.0, ctx);
    }
}

impl Handler<TradeUpdatesReceived> for OrderManager {
    type Result = ();
    fn handle(&mut self, msg: TradeUpdatesReceived, ctx: &mut Context<Self>) {
        let effects = self.desk(|d| d.on_updates(&msg.updates, Utc::now()));
        self.perform(effects, ctx);
        self.publish();
    }
}

impl Handler<OrderStreamReady> for OrderManager {
    type Result = ();
    fn handle(&mut self, msg: OrderStreamReady, ctx: &mut Context<Self>) {
        let gap = msg.gap_from.is_some();
        let effects = self.desk(|d| d.on_stream_ready(&msg.orders, gap, Utc::now()));
        self.perform(effects, ctx);
        self.publish();
    }
}

impl Handler<StreamEvent> for OrderManager {
    type Result = ();
    fn handle(&mut self, msg: StreamEvent, _: &mut Context<Self>) {
        if msg.stream != StreamKind::TradeUpdates {
            return;
        }
        if let StreamEventKind::StateChanged { to, .. } = msg.kind {
            self.desk(|d| d.on_stream_state(to));
        }
    }
}

impl Handler<CancelAll> for OrderManager {
    type Result = ResponseActFuture<Self, Result<usize, String>>;
    fn handle(&mut self, _: CancelAll, _: &mut Context<Self>) -> Self::Result {
        let rest = self.rest.clone();
        Box::pin(
            async move {
                rest.cancel_all_orders()
                    .await
                    .map(|v| v.len())
                    .map_err(|e| e.to_string())
            }
            .into_actor(self)
            .map(|r, act, ctx| {
                if let Ok(n) = &r {
                    tracing::warn!(canceled = n, "cancel-all sent");
                    act.write(
                        Record::Event("cancel_all", serde_json::json!({ "canceled": n })),
                        ctx,
                    );
                }
                r
            }),
        )
    }
}

impl Handler<Flatten> for OrderManager {
    type Result = ResponseActFuture<Self, Result<FlattenReport, String>>;
    fn handle(&mut self, _: Flatten, ctx: &mut Context<Self>) -> Self::Result {
        // The closing orders are proposals to this actor (it handles them while this waits).
        // What is in flight is read now, before the broker's positions are.
        let work = io::flatten(
            self.rest.clone(),
            self.entry
                .with(|c| c.risk.is_some())
                .then(|| ctx.address().recipient()),
            self.desk(|d| d.unacknowledged()),
            self.settings.ack_timeout,
        );
        Box::pin(work.into_actor(self).map(|r, act, ctx| {
            match &r {
                Ok(report) => {
                    tracing::warn!(canceled = report.canceled, closing = ?report.closing, "flatten: orders canceled, positions closing");
                    let body = serde_json::to_value(report).unwrap_or_default();
                    act.write(Record::Event("flatten", body), ctx);
                }
                Err(e) => tracing::error!(error = %e, "flatten failed"),
            }
            r
        }))
    }
}

impl Handler<Connect> for OrderManager {
    type Result = ();
    fn handle(&mut self, msg: Connect, _: &mut Context<Self>) {
        self.entry.with(|c| {
            c.risk = Some(msg.risk);
            c.desk.connect_risk();
        });
        self.account = msg.account;
        // The gate sees the book from now on (and after every change, in `publish`).
        self.publish();
    }
}

impl Handler<AddOrderEventListener> for OrderManager {
    type Result = ();
    fn handle(&mut self, msg: AddOrderEventListener, _: &mut Context<Self>) {
        self.event_listeners.push(msg.0);
    }
}

impl Handler<AddOrdersListener> for OrderManager {
    type Result = ();
    fn handle(&mut self, msg: AddOrdersListener, _: &mut Context<Self>) {
        self.entry.with(|c| {
            msg.0.do_send(c.view());
            c.listeners.push(msg.0);
        });
    }
}

impl Handler<GetOrderStats> for OrderManager {
    type Result = MessageResult<GetOrderStats>;
    fn handle(&mut self, _: GetOrderStats, _: &mut Context<Self>) -> Self::Result {
        let (mut s, traces, tick_to_intent) = self
            .entry
            .with(|c| (c.desk.stats(), c.traces.len(), c.tick_to_intent.summary()));
        s.tracked_entries += traces;
        s.tick_to_order = self.tick_to_order.summary();
        s.tick_to_order_beyond_write = self.beyond_write.summary();
        s.tick_to_intent = tick_to_intent;
        s.intent_write = self.entry.intents().write_latency();
        MessageResult(s)
    }
}
