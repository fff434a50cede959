//! `OrderManager` actor: turns approved intents into orders at the broker and keeps their
//! lifecycle, durably.
//!
//! - **Ids.** `td-<run>-<seq>-<SYMBOL>` ([`ClientOrderIds`]), `run` a journal counter bumped at
//!   every start: deterministic, at most 48 characters, never reused across restarts.
//! - **Write-ahead.** The intent is journaled (and on disk) before its request leaves. A crash
//!   between the two leaves an intent that reconciliation looks up by client order id.
//! - **Lifecycle.** `trade_updates` first; REST polling of open orders while that stream is
//!   down; an order with no answer after `ack_timeout` is looked up by its client order id,
//!   never resent on a guess. Every source is folded by cumulative quantity
//!   ([`OrderBook`]), so no fill is booked twice or lost. Bracket legs are learned from their
//!   parent and journaled as intents of their own (`request.leg_of`).
//! - **Reconciliation** with the broker at start, before any order is accepted, after every
//!   `trade_updates` gap, and every `reconcile_interval` ([`orders::reconcile`]).
//! - **Exits** first cancel our open orders on the symbol (bracket legs, trailing stops) and
//!   wait until the broker shows them final, then sell no more than the broker's position.
//! - **Commands:** [`CancelAll`], [`Flatten`].
//!
//! Handles: [`SubmitApproved`], [`TradeUpdatesReceived`], [`OrderStreamReady`], [`StreamEvent`],
//! [`CancelAll`], [`Flatten`], [`GetOrderStats`], [`AddOrdersListener`], [`Connect`]. Emits
//! [`OrdersChanged`] after every change and [`RefreshAccount`] after fills.

use crate::alpaca::BrokerError;
use crate::alpaca::model::{
    Activity, AssetClass, Order, OrderClass, OrderRequest, OrderSide, OrderStatus, OrderType,
    StopLoss, TakeProfit, TimeInForce,
};
use crate::alpaca::rest::{CloseAmount, ListActivities, ListOrders};
use crate::broker::BrokerRef;
use crate::domain::ConnectionState;
use crate::journal::{
    self, FillRecord, Journal, JournalError, LastFillAt, LoadFillsSince, LoadIntentsSince,
    LoadPositions, NextCounter, OrderIntent, OrderState, RecordEvent, RecordFill, RecordIntent,
    RecordOrderState, StoredIntent,
};
use crate::messages::health::{HealthEvent, Reporter};
pub use crate::messages::orders::{
    AddOrderEventListener, AddOrdersListener, CancelAll, Connect, Flatten, FlattenReport,
    GetOrderStats, OrderEvent, OrderStats,
};
use crate::messages::orders::{OrderError, Propose, ProposeError, SubmitApproved, Submitted};
use crate::messages::{
    OrderStreamReady, OrdersChanged, RefreshAccount, SplitApplied, StreamEvent, StreamEventKind,
    StreamKind, TradeUpdatesReceived,
};
use crate::orders::ClientOrderIds;
use crate::orders::book::{Effect, OrderBook};
use crate::orders::lifecycle::Lifecycle;
use crate::orders::positions::{PositionCheck, ReadToken, Verdict};
use crate::orders::reconcile::{BrokerView, Finding, Listed, reconcile};
use crate::orders::splits::explain;
use crate::risk::{Approved, Intent, Purpose};
use actix::prelude::*;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;
use uuid::Uuid;

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
    splits: Option<Recipient<SplitApplied>>,
    /// A lookup of splits is under way (a difference waits for it before it is confirmed).
    explaining: bool,
    tick_to_order: crate::latency::LatencyHistogram,
    tick_to_intent: crate::latency::LatencyHistogram,
    rest: BrokerRef,
    journal: Addr<Journal>,
    ids: Option<ClientOrderIds>,
    book: OrderBook,
    /// What each order of ours is for (legs have none: they belong to their parent).
    purposes: HashMap<String, Purpose>,
    /// Correlation ids, for legs and protective stops to carry their entry's.
    correlation: HashMap<String, String>,
    /// Orders whose request has not been answered yet: never looked up as "never sent".
    in_flight: HashSet<String>,
    /// Legs already journaled.
    legs: HashSet<String>,
    /// Entries whose trailing stop has been asked for.
    protected: HashSet<String>,
    /// Execution ids booked (from the journal at start, then as booked).
    /// Per broker order: the execution ids booked.
    executions: HashMap<String, HashSet<String>>,
    /// Orders final and gone from the book (client order id, broker order id), with the
    /// reconciliation count when they went: once a reconciliation that began later has read
    /// the journal (behind their writes), what is kept per order for them is forgotten, so
    /// memory does not grow with the number of orders.
    retired: Vec<(u64, Option<String>, Option<String>)>,
    /// Reconciliations begun.
    epoch: u64,
    /// Quantity booked per broker order, in this process (the journal's view may lag by the
    /// writes still queued): what a missing fill from reconciliation is measured against.
    booked: HashMap<String, Decimal>,
    /// Our positions from the fills booked, and their comparison with the broker's.
    positions: PositionCheck,
    lifecycle: Lifecycle,
    reconciling: bool,
    stream_up: bool,
    polling: bool,
    risk: Option<Recipient<Propose>>,
    account: Option<Recipient<RefreshAccount>>,
    listeners: Vec<Recipient<OrdersChanged>>,
    stats: OrderStats,
    health: Reporter,
    event_listeners: Vec<Recipient<OrderEvent>>,
    /// Each open order's `order.submit` span context (its fills are its children).
    traces: HashMap<String, crate::telemetry::TraceContext>,
    /// Submit spans until their request is sent (then they time the request).
    submit_spans: HashMap<String, tracing::Span>,
    /// Journal writes failed in a row; past [`JOURNAL_FAILURES_TO_STOP`] the actor stops.
    journal_failures: u32,
    /// The books were loaded from the journal (the first reconciliation of the process).
    loaded: bool,
    /// Set while a position differs from the broker's: the start of the fill window then.
    fills_floor: Option<DateTime<Utc>>,
    /// Open orders of others already reported (broker ids).
    foreign_seen: HashSet<String>,
}

/// Journal writes failing this many times in a row mean the order side cannot keep its
/// write-ahead promise: it stops (and is restarted) rather than trade on.
const JOURNAL_FAILURES_TO_STOP: u32 = 3;

/// A position that differs from the broker's is read again this soon, to confirm it.
const CONFIRM_AFTER: Duration = Duration::from_secs(1);

/// How far back splits are looked up to explain a position difference: a daemon stopped over
/// a long weekend still finds the split that happened meanwhile.
const SPLIT_LOOKBACK_DAYS: i64 = 30;

impl OrderManager {
    /// Reports accepted and rejected orders, mismatches and failures to the health monitor.
    pub fn with_health(mut self, health: Reporter) -> Self {
        self.health = health;
        self
    }

    /// A journal write failed (or, with `false`, succeeded).
    fn journal_outcome(&mut self, failed: bool, ctx: &mut Context<Self>) {
        if !failed {
            self.journal_failures = 0;
            return;
        }
        self.stats.journal_errors += 1;
        self.journal_failures += 1;
        if self.journal_failures >= JOURNAL_FAILURES_TO_STOP {
            let reason = format!(
                "{} journal writes failed in a row: cannot keep the write-ahead journal",
                self.journal_failures
            );
            self.health
                .report("orders", HealthEvent::ActorFailed { reason });
            self.journal_failures = 0;
            ctx.stop();
        }
    }

    pub fn new(settings: OrderSettings, rest: BrokerRef, journal: Addr<Journal>) -> Self {
        OrderManager {
            settings,
            rest,
            journal,
            ids: None,
            book: OrderBook::default(),
            purposes: HashMap::new(),
            correlation: HashMap::new(),
            in_flight: HashSet::new(),
            legs: HashSet::new(),
            protected: HashSet::new(),
            executions: HashMap::new(),
            retired: Vec::new(),
            epoch: 0,
            booked: HashMap::new(),
            positions: PositionCheck::default(),
            lifecycle: Lifecycle::Starting,
            reconciling: false,
            stream_up: false,
            polling: false,
            risk: None,
            account: None,
            listeners: Vec::new(),
            stats: OrderStats::default(),
            tick_to_order: crate::latency::LatencyHistogram::new(),
            tick_to_intent: crate::latency::LatencyHistogram::new(),
            health: Reporter::default(),
            event_listeners: Vec::new(),
            traces: HashMap::new(),
            submit_spans: HashMap::new(),
            journal_failures: 0,
            loaded: false,
            fills_floor: None,
            foreign_seen: HashSet::new(),
            splits: None,
            explaining: false,
        }
    }

    fn ready(&self) -> bool {
        self.lifecycle == Lifecycle::Ready && self.ids.is_some()
    }

    fn view(&self) -> OrdersChanged {
        let mut busy: std::collections::BTreeSet<String> = self
            .book
            .open()
            .filter(|t| {
                matches!(
                    self.purposes.get(&t.client_order_id),
                    Some(Purpose::Entry { .. } | Purpose::Exit | Purpose::Flatten)
                )
            })
            .map(|t| t.symbol.clone())
            .collect();
        for coid in &self.in_flight {
            if let Some(t) = self.book.get(coid) {
                busy.insert(t.symbol.clone());
            }
        }
        OrdersChanged {
            positions: self.positions.non_zero(),
            open_orders: self.book.open_count(),
            pending_qty: self.book.pending_qty(),
            busy_symbols: busy,
            ready: self.ready(),
        }
    }

    fn publish(&mut self) {
        let view = self.view();
        self.listeners.retain(|l| l.connected());
        for l in &self.listeners {
            l.do_send(view.clone());
        }
    }

    /// Journals one record without waiting, in the order written (the record is queued before
    /// this returns: [`journal::Ordered`]). Failures are logged and counted (the journal is on
    /// disk: a failure there is an operator's problem, reported loudly).
    fn journal<M, T>(&mut self, msg: M, ctx: &mut Context<Self>)
    where
        M: Message<Result = Result<T, JournalError>> + Send + 'static,
        T: Send + 'static,
        Journal: Handler<journal::Ordered<M>>,
    {
        let answer = journal::ordered(&self.journal, msg);
        ctx.spawn(answer.into_actor(self).map(|r, act, ctx| {
            let err = match r {
                Some(Ok(_)) => return act.journal_outcome(false, ctx),
                // Only learned bracket legs are journaled through here without a check
                // first; one learned again after a restart is already there.
                Some(Err(JournalError::DuplicateIntent(_))) => return,
                Some(Err(e)) => e.to_string(),
                None => "the journal is not running".to_string(),
            };
            tracing::error!(error = %err, "cannot write the journal");
            act.journal_outcome(true, ctx);
        }));
    }

    fn journal_state(&mut self, state: OrderState, ctx: &mut Context<Self>) {
        self.journal(RecordOrderState(state), ctx);
    }

    fn journal_event(&mut self, kind: &str, body: serde_json::Value, ctx: &mut Context<Self>) {
        self.journal(RecordEvent(Utc::now(), kind.to_string(), body), ctx);
    }

    /// Books a fill once: journal, position, listeners.
    fn emit(&mut self, event: OrderEvent) {
        self.event_listeners.retain(|l| l.connected());
        for l in &self.event_listeners {
            l.do_send(event.clone());
        }
    }

    fn book_fill(&mut self, fill: FillRecord, ctx: &mut Context<Self>) {
        if !self
            .executions
            .entry(fill.broker_order_id.clone())
            .or_default()
            .insert(fill.execution_id.clone())
        {
            return;
        }
        self.emit(OrderEvent::Fill(fill.clone()));
        let span = tracing::info_span!(
            parent: None,
            "order.fill",
            client_order_id = %fill.client_order_id,
            correlation_id = %self.correlation.get(&fill.client_order_id).map(String::as_str).unwrap_or(""),
            symbol = %fill.symbol,
            side = ?fill.side,
            qty = %fill.qty,
            price = %fill.price,
        );
        if let Some(t) = self.traces.get(&fill.client_order_id) {
            t.adopt(&span);
        }
        // Not entered: log lines stay as they are; the span is exported when dropped.
        drop(span);
        let position = self
            .positions
            .book(&fill.symbol, fill.side.sign() * fill.qty);
        let booked = self.booked.entry(fill.broker_order_id.clone()).or_default();
        *booked = booked.saturating_add(fill.qty);
        self.stats.fills += 1;
        tracing::info!(symbol = %fill.symbol, side = ?fill.side, qty = %fill.qty, price = %fill.price, client_order_id = %fill.client_order_id, position = %position, "fill");
        self.journal(RecordFill(fill), ctx);
        if let Some(a) = &self.account {
            a.do_send(RefreshAccount);
        }
    }

    /// Journals what the book says changed. The caller publishes the new view once, when it
    /// is done with the whole message (a batch of updates, a poll, a reconciliation).
    fn apply_effects(&mut self, effects: Vec<Effect>, ctx: &mut Context<Self>) {
        for e in effects {
            match e {
                Effect::Fill(f) => self.book_fill(f, ctx),
                Effect::State(s) => {
                    if s.status.is_terminal() {
                        tracing::info!(client_order_id = %s.client_order_id, status = ?s.status, filled_qty = %s.filled_qty, "order final");
                    }
                    let filled_entry = s.status == OrderStatus::Filled;
                    let coid = s.client_order_id.clone();
                    if s.status.is_terminal() {
                        self.traces.remove(&coid);
                    }
                    self.emit(OrderEvent::Order(s.clone()));
                    self.journal_state(s, ctx);
                    if filled_entry {
                        self.protect(&coid, ctx);
                    }
                }
            }
        }
    }

    /// Once an entry with a trailing stop has filled, asks for the stop (through the risk checks).
    fn protect(&mut self, coid: &str, ctx: &mut Context<Self>) {
        let Some(Purpose::Entry {
            trail_pct: Some(trail_pct),
            ..
        }) = self.purposes.get(coid).cloned()
        else {
            return;
        };
        let (Some(t), Some(risk)) = (self.book.get(coid), self.risk.clone()) else {
            return;
        };
        if !self.protected.insert(coid.to_string()) || t.filled_qty <= Decimal::ZERO {
            return;
        }
        let mut intent = Intent::market(
            &t.symbol,
            t.side.opposite(),
            t.filled_qty,
            Purpose::Protect { trail_pct },
        );
        intent.correlation_id = self.correlation.get(coid).cloned().unwrap_or_default();
        let entry = coid.to_string();
        ctx.spawn(async move { (entry, risk.send(Propose(intent)).await) }.into_actor(self).map(
            |(entry, r), _, _| match r {
                Ok(Ok(stop)) => tracing::info!(entry = %entry, client_order_id = %stop, "trailing stop placed"),
                Ok(Err(e)) => tracing::warn!(entry = %entry, error = %e, "no trailing stop for this entry"),
                Err(e) => tracing::warn!(entry = %entry, error = %e, "no trailing stop: risk manager unreachable"),
            },
        ));
    }

    /// Learns an order's bracket legs: tracked and journaled as intents of their own.
    ///
    /// Only from a parent the book tracks: a parent final and forgotten had its legs learned
    /// while it was tracked, and learning them again from a late report (a gap repair that
    /// nests them) would book their fills a second time.
    fn learn_legs(&mut self, order: &Order, ctx: &mut Context<Self>) {
        let Some(legs) = &order.legs else { return };
        if self.book.get(&order.client_order_id).is_none() {
            return;
        }
        for leg in legs {
            if self.book.get(&leg.client_order_id).is_some()
                || !self.legs.insert(leg.client_order_id.clone())
            {
                continue;
            }
            let intent = OrderIntent {
                client_order_id: leg.client_order_id.clone(),
                symbol: leg.symbol.clone(),
                side: leg.side,
                qty: leg.qty.or(order.qty).unwrap_or_default(),
                request: serde_json::json!({
                    "leg_of": order.client_order_id,
                    "type": leg.order_type,
                    "limit_price": leg.limit_price,
                    "stop_price": leg.stop_price,
                }),
                correlation_id: self
                    .correlation
                    .get(&order.client_order_id)
                    .cloned()
                    .unwrap_or_default(),
                created_at: leg.created_at,
            };
            self.book.track(&intent, Utc::now());
            self.journal(RecordIntent(intent), ctx);
            let effects = self.book.on_order(leg);
            self.apply_effects(effects, ctx);
        }
    }

    fn on_broker_order(&mut self, order: &Order, ctx: &mut Context<Self>) {
        let effects = self.book.on_order(order);
        self.apply_effects(effects, ctx);
        self.learn_legs(order, ctx);
    }

    // ----- submission ---------------------------------------------------------------------

    fn request_for(intent: &Intent, coid: &str) -> OrderRequest {
        let mut r = match intent.limit_price {
            Some(p) => OrderRequest::limit(&intent.symbol, intent.side, intent.qty, p),
            None => OrderRequest::market(&intent.symbol, intent.side, intent.qty),
        }
        .with_client_order_id(coid);
        match &intent.purpose {
            Purpose::Entry {
                take_profit,
                stop_loss,
                ..
            } if take_profit.is_some() || stop_loss.is_some() => {
                r.order_class = Some(if take_profit.is_some() && stop_loss.is_some() {
                    OrderClass::Bracket
                } else {
                    OrderClass::Oto
                });
                r.take_profit = take_profit.map(|p| TakeProfit { limit_price: p });
                r.stop_loss = stop_loss.map(|p| StopLoss {
                    stop_price: p,
                    limit_price: None,
                });
                // Protection must outlive the session.
                r.time_in_force = TimeInForce::Gtc;
            }
            Purpose::Protect { trail_pct } => {
                r.kind = OrderType::TrailingStop;
                r.limit_price = None;
                r.trail_percent = Some(*trail_pct);
                r.time_in_force = TimeInForce::Gtc;
            }
            _ => {}
        }
        r
    }

    fn submit(
        &mut self,
        approved: Approved,
        ctx: &mut Context<Self>,
    ) -> Result<Submitted, OrderError> {
        // The flatten procedure's closes need no trade_updates stream (open orders are polled
        // over REST while it is down): capital preservation must not wait for the stream.
        let closing = matches!(approved.intent().purpose, Purpose::Flatten);
        if let Err(why) = self.lifecycle.admits(closing) {
            return Err(OrderError::NotReady(why.into()));
        }
        let Some(ids) = self.ids.as_mut() else {
            return Err(OrderError::NotReady("no run id yet".into()));
        };
        let intent = approved.into_intent();
        let coid = ids.next(&intent.symbol);
        let now = Utc::now();
        let request = Self::request_for(&intent, &coid);
        let record = OrderIntent {
            client_order_id: coid.clone(),
            symbol: intent.symbol.clone(),
            side: intent.side,
            qty: intent.qty,
            request: serde_json::Value::Null,
            correlation_id: intent.correlation_id.clone(),
            created_at: now,
        };
        self.book.track(&record, now);
        self.in_flight.insert(coid.clone());
        self.purposes.insert(coid.clone(), intent.purpose.clone());
        self.correlation
            .insert(coid.clone(), intent.correlation_id.clone());
        self.stats.submitted += 1;
        // The submit span (child of the risk check) lasts until the broker answers; its
        // context is kept for the fills.
        let span = tracing::info_span!(
            parent: None,
            "order.submit",
            client_order_id = %coid,
            correlation_id = %intent.correlation_id,
            symbol = %intent.symbol,
            side = ?intent.side,
            qty = %intent.qty,
            purpose = ?intent.purpose,
        );
        intent.trace.adopt(&span);
        let arrived = intent.trace.arrived();
        if let Some(at) = arrived {
            self.tick_to_intent.record(at.elapsed());
        }
        self.traces
            .insert(coid.clone(), crate::telemetry::TraceContext::of(&span));
        self.submit_spans.insert(coid.clone(), span);
        tracing::info!(client_order_id = %coid, symbol = %intent.symbol, side = ?intent.side, qty = %intent.qty, purpose = ?intent.purpose, correlation_id = %intent.correlation_id, "order approved");
        // Exits and closes first clear our other orders on the symbol (bracket legs, stops).
        let clear: Vec<Uuid> = if matches!(intent.purpose, Purpose::Exit | Purpose::Flatten) {
            self.book
                .open()
                .filter(|t| t.symbol == intent.symbol && t.client_order_id != coid)
                .filter_map(|t| {
                    t.broker_order_id
                        .as_deref()
                        .and_then(|b| Uuid::parse_str(b).ok())
                })
                .collect()
        } else {
            Vec::new()
        };
        if clear.is_empty() {
            self.send_order(record, request, arrived, ctx);
        } else {
            let rest = self.rest.clone();
            let deadline = self.settings.ack_timeout;
            let symbol = intent.symbol.clone();
            let side = intent.side;
            ctx.spawn(
                async move { clear_symbol(&rest, &clear, &symbol, side, deadline).await }
                    .into_actor(self)
                    .map(move |left, act, ctx| match left {
                        Ok(left) if left <= Decimal::ZERO => {
                            tracing::info!(client_order_id = %record.client_order_id, symbol = %record.symbol, "nothing left to close after canceling the protective orders");
                            act.drop_unjournaled(&record.client_order_id, "nothing left to close", ctx);
                        }
                        Ok(left) => {
                            let mut record = record;
                            let mut request = request;
                            if left < record.qty {
                                record.qty = left;
                                request.qty = Some(left);
                                act.book.set_qty(&record.client_order_id, left);
                            }
                            act.send_order(record, request, arrived, ctx);
                        }
                        Err(e) => {
                            tracing::warn!(client_order_id = %record.client_order_id, error = %e, "exit not sent");
                            act.drop_unjournaled(&record.client_order_id, &e, ctx);
                        }
                    }),
            );
        }
        Ok(Submitted {
            client_order_id: coid,
            view: self.view(),
        })
    }

    /// Journals the intent, then sends the request. `arrived`: when the market data that led
    /// to it arrived (live signals), for the tick-to-order histogram.
    fn send_order(
        &mut self,
        mut record: OrderIntent,
        request: OrderRequest,
        arrived: Option<std::time::Instant>,
        ctx: &mut Context<Self>,
    ) {
        record.request = serde_json::to_value(&request).unwrap_or(serde_json::Value::Null);
        let coid = record.client_order_id.clone();
        let span = self
            .submit_spans
            .remove(&coid)
            .unwrap_or_else(tracing::Span::none);
        let journal = self.journal.clone();
        let rest = self.rest.clone();
        let work = async move {
            journal_call(&journal, RecordIntent(record)).await?;
            // Tick to order ends here: the intent is journaled and the request goes to the
            // HTTP client.
            let tick_to_order = arrived.map(|at| at.elapsed());
            Ok::<_, String>((tick_to_order, rest.submit_order(request).await))
        };
        let work = tracing::Instrument::instrument(work, span);
        ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
            act.in_flight.remove(&coid);
            let result = result.map(|(tick_to_order, answer)| {
                if let Some(d) = tick_to_order {
                    act.tick_to_order.record(d);
                }
                answer
            });
            match result {
                Err(journal_error) => {
                    tracing::error!(client_order_id = %coid, error = %journal_error, "intent not journaled: the order was not sent");
                    act.book.close_unsent(&coid, OrderStatus::Rejected);
                    act.publish();
                    act.journal_outcome(true, ctx);
                }
                Ok(Ok(order)) => {
                    act.journal_outcome(false, ctx);
                    act.stats.accepted += 1;
                    act.health.report("orders", HealthEvent::OrderAccepted);
                    tracing::info!(client_order_id = %coid, order_id = %order.id, status = ?order.status, "order accepted by the broker");
                    act.on_broker_order(&order, ctx);
                    act.publish();
                }
                Ok(Err(e)) if e.is_ambiguous_outcome() => {
                    act.journal_outcome(false, ctx);
                    tracing::warn!(client_order_id = %coid, error = %e, "order outcome unknown; it will be looked up by client order id");
                    act.publish();
                }
                Ok(Err(e)) => {
                    act.journal_outcome(false, ctx);
                    act.stats.refused_by_broker += 1;
                    if !e.is_retryable() {
                        act.health.report(
                            "orders",
                            HealthEvent::OrderRejected {
                                detail: e.to_string(),
                            },
                        );
                    }
                    tracing::warn!(client_order_id = %coid, error = %e, "the broker refused the order");
                    act.finish_unsent(&coid, OrderStatus::Rejected, &e.to_string(), ctx);
                }
            }
        }));
    }

    /// Closes an intent the broker does not have, in the book and the journal.
    fn finish_unsent(
        &mut self,
        coid: &str,
        status: OrderStatus,
        why: &str,
        ctx: &mut Context<Self>,
    ) {
        self.close_unsent(coid, status, why, true, ctx);
    }

    /// Closes an intent dropped before it was journaled (an exit with nothing left to close):
    /// the journal gets the event, not a state for an intent it never had.
    fn drop_unjournaled(&mut self, coid: &str, why: &str, ctx: &mut Context<Self>) {
        self.close_unsent(coid, OrderStatus::Canceled, why, false, ctx);
    }

    fn close_unsent(
        &mut self,
        coid: &str,
        status: OrderStatus,
        why: &str,
        journaled: bool,
        ctx: &mut Context<Self>,
    ) {
        self.in_flight.remove(coid);
        self.submit_spans.remove(coid);
        self.traces.remove(coid);
        self.book.close_unsent(coid, status);
        if journaled {
            self.journal_state(
                OrderState {
                    client_order_id: coid.to_string(),
                    broker_order_id: None,
                    status,
                    filled_qty: Decimal::ZERO,
                    filled_avg_price: None,
                    at: Utc::now(),
                },
                ctx,
            );
        }
        self.journal_event(
            "order_not_sent",
            serde_json::json!({ "client_order_id": coid, "reason": why }),
            ctx,
        );
        self.publish();
    }

    // ----- polling and lookups ------------------------------------------------------------

    fn poll(&mut self, ctx: &mut Context<Self>) {
        if self.polling || !self.lifecycle.reconciled() {
            return;
        }
        let epoch = self.epoch;
        for t in self.book.prune_final() {
            self.retired
                .push((epoch, Some(t.client_order_id), t.broker_order_id));
        }
        let now = Utc::now();
        let timeout = chrono::Duration::from_std(self.settings.ack_timeout)
            .unwrap_or(chrono::Duration::seconds(5));
        let mut lookups: Vec<String> = self
            .book
            .overdue(now, timeout)
            .into_iter()
            .filter(|c| !self.in_flight.contains(c))
            .collect();
        let overdue: HashSet<String> = lookups.iter().cloned().collect();
        if !self.stream_up {
            lookups.extend(
                self.book
                    .open()
                    .filter(|t| t.status.is_some())
                    .map(|t| t.client_order_id.clone()),
            );
            self.stats.polls += 1;
        }
        if lookups.is_empty() {
            return;
        }
        self.polling = true;
        let rest = self.rest.clone();
        let work = async move {
            let mut out = Vec::new();
            for coid in lookups {
                let r = rest.get_order_by_client_id(&coid).await;
                out.push((coid, r));
            }
            out
        };
        ctx.spawn(work.into_actor(self).map(move |results, act, ctx| {
            act.polling = false;
            for (coid, r) in results {
                match r {
                    Ok(Some(order)) => {
                        if overdue.contains(&coid) {
                            act.stats.lookups += 1;
                            tracing::info!(client_order_id = %coid, status = ?order.status, "overdue order found at the broker");
                        }
                        act.on_broker_order(&order, ctx);
                    }
                    Ok(None) if overdue.contains(&coid) && !act.in_flight.contains(&coid) => {
                        act.stats.lookups += 1;
                        act.stats.intents_never_sent += 1;
                        tracing::warn!(client_order_id = %coid, "the broker never received this order; closed, not resent");
                        act.finish_unsent(&coid, OrderStatus::Rejected, "the broker never received it", ctx);
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(client_order_id = %coid, error = %e, "cannot look up the order; will try again"),
                }
            }
            act.publish();
        }));
    }

    // ----- reconciliation -----------------------------------------------------------------

    fn reconcile(&mut self, ctx: &mut Context<Self>) {
        if self.reconciling {
            return;
        }
        self.reconciling = true;
        self.epoch += 1;
        let epoch = self.epoch;
        let first = !self.lifecycle.reconciled();
        // Reconciliation waits its turn behind orders and cancels.
        let rest = self.rest.lane(crate::alpaca::rest::Lane::Reconcile);
        let journal = self.journal.clone();
        let in_flight = self.in_flight.clone();
        let need_run = self.ids.is_none();
        let floor = self.fills_floor;
        let load_positions = first && !self.loaded;
        // Before anything is read: fills booked after this make a comparison inconclusive.
        let token = self.positions.begin_read();
        let work = async move {
            let run = if need_run {
                Some(
                    journal
                        .send(NextCounter("run".into()))
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| e.to_string())?,
                )
            } else {
                None
            };
            let gathered = gather(&rest, &journal, &in_flight, floor, load_positions).await?;
            Ok::<_, String>((run, gathered))
        };
        ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
            act.reconciling = false;
            match result {
                Ok((run, gathered)) => {
                    if let Some(run) = run {
                        act.ids = Some(ClientOrderIds::new(run));
                        act.stats.run = run;
                    }
                    act.apply_reconciliation(gathered, token, first, ctx);
                    act.forget_retired(epoch);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reconciliation with the broker failed; retrying");
                    if first {
                        ctx.run_later(Duration::from_secs(2), |act, ctx| act.reconcile(ctx));
                    }
                }
            }
        }));
    }

    fn apply_reconciliation(
        &mut self,
        mut g: Gathered,
        token: ReadToken,
        first: bool,
        ctx: &mut Context<Self>,
    ) {
        let now = Utc::now();
        // The journal read may predate answers this process has had since: the book knows
        // those orders by broker id, and their fills are not foreign.
        g.view.known_ids = self.book.broker_ids();
        let by_coid: HashMap<&str, &StoredIntent> = g
            .intents
            .iter()
            .map(|i| (i.intent.client_order_id.as_str(), i))
            .collect();
        // The books are loaded from the journal once per process: after a restart of this
        // actor, what it booked itself is newer than a journal read may be.
        // (The positions are asked for only then: `load_positions` in `reconcile`.)
        if let Some(positions) = g.positions.take() {
            self.loaded = true;
            self.executions.clear();
            self.booked.clear();
            for f in &g.fills {
                self.executions
                    .entry(f.broker_order_id.clone())
                    .or_default()
                    .insert(f.execution_id.clone());
                let b = self.booked.entry(f.broker_order_id.clone()).or_default();
                *b = b.saturating_add(f.qty);
            }
            self.positions.load(positions);
            for i in &g.intents {
                if i.intent.request.get("leg_of").is_some() {
                    self.legs.insert(i.intent.client_order_id.clone());
                }
            }
        }
        // Journal fills per order: what is already booked, so resuming books only the rest.
        let mut filled: HashMap<&str, (Decimal, Decimal)> = HashMap::new();
        for f in &g.fills {
            let e = filled.entry(f.client_order_id.as_str()).or_default();
            e.0 += f.qty;
            e.1 += f.qty * f.price;
        }
        // `booked`: what this process booked for the broker order. The journal read may predate
        // fills booked since (this order filled, was pruned from the book as final, and is
        // found again by a reconciliation that read the journal before): they are not booked
        // twice.
        let resume = |book: &mut OrderBook, stored: &StoredIntent, booked: Option<Decimal>| {
            let (q, n) = filled
                .get(stored.intent.client_order_id.as_str())
                .copied()
                .unwrap_or_default();
            let avg = (q > Decimal::ZERO).then(|| (n / q).round_dp(9));
            match booked {
                Some(b) if b > q => book.resume(&stored.intent, b, None, now),
                _ => book.resume(&stored.intent, q, avg, now),
            }
        };
        let findings = reconcile(&g.intents, &g.fills, &g.view);
        let mut open_foreign: HashSet<String> = HashSet::new();
        let since = g.since;
        let mut differs = false;
        let mut summary: BTreeMap<&str, u64> = BTreeMap::new();
        for f in findings {
            match f {
                Finding::IntentAtBroker {
                    client_order_id,
                    order,
                } => {
                    if self.book.get(&client_order_id).is_none() {
                        // Only an order the book did not know is news (after a restart).
                        *summary.entry("found_at_broker").or_default() += 1;
                        if let Some(stored) = by_coid.get(client_order_id.as_str()) {
                            let booked = self.booked.get(&order.id.to_string()).copied();
                            resume(&mut self.book, stored, booked);
                            self.stats.intents_found_at_broker += 1;
                            tracing::info!(client_order_id = %client_order_id, status = ?order.status, filled_qty = %order.filled_qty, "reconciliation: journaled order found at the broker");
                        }
                    }
                    self.on_broker_order(&order, ctx);
                }
                Finding::IntentNeverSent { client_order_id } => {
                    let overdue = self.book.get(&client_order_id).is_none_or(|t| {
                        t.status.is_none()
                            && (now - t.sent_at).to_std().unwrap_or_default()
                                > self.settings.ack_timeout
                    });
                    if self.in_flight.contains(&client_order_id) || !overdue {
                        continue;
                    }
                    *summary.entry("never_sent").or_default() += 1;
                    self.stats.intents_never_sent += 1;
                    tracing::warn!(client_order_id = %client_order_id, "reconciliation: journaled intent never reached the broker; closed, not resent");
                    if self.book.get(&client_order_id).is_none() {
                        if let Some(stored) = by_coid.get(client_order_id.as_str()) {
                            resume(&mut self.book, stored, None);
                        }
                    }
                    self.finish_unsent(
                        &client_order_id,
                        OrderStatus::Rejected,
                        "the broker never received it (reconciliation)",
                        ctx,
                    );
                }
                Finding::ForeignOrder { order } => {
                    // Our journaled orders (a final intent, a leg) open at the broker: track them.
                    if let Some(stored) = by_coid.get(order.client_order_id.as_str()) {
                        if self.book.get(&order.client_order_id).is_none() {
                            let booked = self.booked.get(&order.id.to_string()).copied();
                            resume(&mut self.book, stored, booked);
                        }
                        self.on_broker_order(&order, ctx);
                        continue;
                    }
                    // Ours since the journal was read: a leg learned from its parent's answer.
                    if self.book.get(&order.client_order_id).is_some()
                        || self.legs.contains(&order.client_order_id)
                    {
                        self.on_broker_order(&order, ctx);
                        continue;
                    }
                    // A leg of a parent of ours whose answer has not come yet: its legs are
                    // learned from that answer, so it is not called foreign now.
                    // (Orders in flight are open in the book, with no broker id yet.)
                    let parent_unanswered = self
                        .book
                        .open()
                        .any(|t| t.symbol == order.symbol && t.broker_order_id.is_none());
                    if parent_unanswered {
                        continue;
                    }
                    open_foreign.insert(order.id.to_string());
                    if self.foreign_seen.contains(&order.id.to_string()) {
                        continue; // reported when first seen
                    }
                    *summary.entry("foreign_orders").or_default() += 1;
                    self.stats.foreign_orders += 1;
                    tracing::warn!(order_id = %order.id, client_order_id = %order.client_order_id, symbol = %order.symbol, "reconciliation: an open order this daemon did not send; left alone");
                }
                Finding::MissingFill {
                    client_order_id,
                    activity,
                } => {
                    if client_order_id
                        .as_deref()
                        .is_some_and(|c| self.book.get(c).is_some())
                    {
                        continue; // the book books it from the order's cumulative quantity
                    }
                    // A fill of an order not known by its broker id may be ours: one whose
                    // answer has not come yet. Booked as foreign now, the book would book it
                    // again when the answer or the stream says it filled; so it waits for the
                    // next reconciliation, when that order's broker id is known.
                    let maybe_ours = client_order_id.is_none()
                        && self
                            .book
                            .open()
                            .any(|t| t.symbol == activity.symbol && t.broker_order_id.is_none());
                    if maybe_ours {
                        tracing::info!(symbol = %activity.symbol, order_id = %activity.order_id, "reconciliation: a fill of an unknown order while one of ours is unanswered; checked again next time");
                        continue;
                    }
                    let Some(side) = parse_side(&activity.side) else {
                        continue;
                    };
                    // Against what this process has booked, journal writes still queued included.
                    let order_id = activity.order_id.to_string();
                    let already = self.booked.get(&order_id).copied().unwrap_or_default();
                    let qty = activity.qty.min(activity.cum_qty - already);
                    if qty <= Decimal::ZERO {
                        continue;
                    }
                    *summary.entry("missing_fills").or_default() += 1;
                    self.stats.missing_fills += 1;
                    tracing::warn!(symbol = %activity.symbol, qty = %activity.qty, price = %activity.price, order_id = %activity.order_id, "reconciliation: a fill the journal did not have; booked");
                    self.book_fill(
                        FillRecord {
                            execution_id: format!("activity:{}", activity.id),
                            client_order_id: client_order_id
                                .unwrap_or_else(|| format!("foreign:{}", activity.order_id)),
                            broker_order_id: activity.order_id.to_string(),
                            symbol: activity.symbol.clone(),
                            side,
                            qty,
                            price: activity.price,
                            at: activity.transaction_time,
                        },
                        ctx,
                    );
                    // Not an order of the book: nothing retires it but this.
                    self.retired.push((self.epoch, None, Some(order_id)));
                }
                Finding::Unmodelled { list, entry } => {
                    let key = format!(
                        "{}:{}",
                        list.as_str(),
                        entry.id.as_deref().unwrap_or(&entry.why)
                    );
                    let shown = self.foreign_seen.contains(&key);
                    open_foreign.insert(key);
                    if shown {
                        continue; // reported when first seen
                    }
                    *summary.entry("unmodelled").or_default() += 1;
                    self.stats.unmodelled += 1;
                    if list == Listed::Activity {
                        // A fill the daemon cannot read: its position will differ, and the
                        // comparison of positions says so if it does.
                        tracing::error!(list = list.as_str(), entry = %entry.describe(), "reconciliation: a fill the daemon cannot read; left alone");
                    } else {
                        tracing::warn!(list = list.as_str(), entry = %entry.describe(), "reconciliation: an entry the daemon cannot model (placed by hand or by another app?); left alone");
                    }
                    self.journal_event(
                        "unmodelled",
                        serde_json::json!({ "list": list, "entry": entry }),
                        ctx,
                    );
                }
            }
        }
        let mut broker: BTreeMap<String, Decimal> = BTreeMap::new();
        for p in &g.view.positions {
            let q = broker.entry(p.symbol.clone()).or_default();
            *q = q.saturating_add(p.qty);
        }
        let book = &self.book;
        // An order of ours on the symbol whose outcome is not known yet (open in the book, in
        // flight included: it is tracked before its request leaves) explains a difference.
        let unsettled = |symbol: &str| book.open().any(|t| t.symbol == symbol);
        let mut confirm = false;
        // Differences a split may account for: looked up before they can be confirmed.
        let mut candidates: Vec<(String, Decimal, Decimal)> = Vec::new();
        for (symbol, verdict) in self.positions.judge(token, &broker, unsettled, first) {
            differs |= verdict.differs();
            match verdict {
                Verdict::Agrees => {}
                Verdict::Inconclusive | Verdict::Unsettled => {
                    tracing::debug!(symbol = %symbol, why = ?verdict, "position compared again at the next reconciliation");
                }
                Verdict::Suspected { ours, broker } => {
                    confirm = true;
                    candidates.push((symbol.clone(), ours, broker));
                    tracing::info!(symbol = %symbol, journaled = %ours, broker = %broker, "position differs from the broker's; confirming with a fresh read");
                }
                Verdict::Known { ours, broker } => {
                    if first {
                        candidates.push((symbol.clone(), ours, broker));
                        // Positions held before the journal began: reported once, not to health.
                        *summary.entry("position_mismatches").or_default() += 1;
                        self.stats.position_mismatches += 1;
                        tracing::error!(symbol = %symbol, journaled = %ours, broker = %broker, "reconciliation: the broker's position differs from the journal's fills (held before this journal began?)");
                        self.journal_event(
                            "position_mismatch",
                            serde_json::json!({ "symbol": symbol, "journaled": ours, "broker": broker, "known": true }),
                            ctx,
                        );
                    }
                }
                Verdict::Confirmed { ours, broker } => {
                    *summary.entry("position_mismatches").or_default() += 1;
                    self.stats.position_mismatches += 1;
                    self.health.report(
                        "orders",
                        HealthEvent::Mismatch {
                            detail: format!(
                                "{symbol}: the broker holds {broker}, the journal's fills {ours}"
                            ),
                        },
                    );
                    tracing::error!(symbol = %symbol, journaled = %ours, broker = %broker, "reconciliation: the broker's position differs from the journal's fills (confirmed by a second read)");
                    self.journal_event(
                        "position_mismatch",
                        serde_json::json!({ "symbol": symbol, "journaled": ours, "broker": broker }),
                        ctx,
                    );
                }
            }
        }
        if !candidates.is_empty() && !self.explaining {
            // The confirming read waits for the lookup: a split must not be confirmed as a
            // mismatch while its explanation is on the way.
            self.explain_by_splits(candidates, confirm, ctx);
        } else if confirm {
            ctx.run_later(CONFIRM_AFTER, |act, ctx| act.reconcile(ctx));
        }
        // Foreign orders are reported once each, while they stay open.
        self.foreign_seen = open_foreign;
        self.fills_floor = differs.then(|| self.fills_floor.unwrap_or(since));
        self.stats.reconciliations += 1;
        self.lifecycle = self.lifecycle.reconciled_now();
        let summary_json = serde_json::to_value(&summary).unwrap_or_default();
        if first {
            tracing::info!(run = self.stats.run, open_orders = self.book.open_count(), positions = ?self.view().positions, findings = %summary_json, "reconciled with the broker");
            self.journal_event(
                "reconciled",
                serde_json::json!({ "run": self.stats.run, "findings": summary_json }),
                ctx,
            );
        } else if !summary.is_empty() {
            tracing::info!(findings = %summary_json, "periodic reconciliation");
        }
        self.publish();
    }

    /// Forgets what is kept per order for orders retired before reconciliation `epoch`
    /// began: its journal read came after their writes, so nothing of them is needed here.
    fn forget_retired(&mut self, epoch: u64) {
        let (old, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retired)
            .into_iter()
            .partition(|(e, _, _)| *e < epoch);
        self.retired = keep;
        for (_, coid, broker) in old {
            if let Some(c) = coid {
                if self.book.get(&c).is_some() {
                    continue; // tracked again (found open by a reconciliation)
                }
                self.purposes.remove(&c);
                self.correlation.remove(&c);
                self.legs.remove(&c);
                self.protected.remove(&c);
                self.traces.remove(&c);
                self.submit_spans.remove(&c);
            }
            if let Some(b) = broker {
                self.booked.remove(&b);
                self.executions.remove(&b);
            }
        }
    }

    /// How many entries the per-order maps hold (for the memory test: it must not grow with
    /// the number of orders once they are final and reconciled).
    pub fn tracked_entries(&self) -> usize {
        self.purposes.len()
            + self.correlation.len()
            + self.legs.len()
            + self.protected.len()
            + self.traces.len()
            + self.submit_spans.len()
            + self.booked.len()
            + self.executions.len()
            + self.retired.len()
    }

    /// Looks up the splits of symbols whose position differs from the broker's; one that
    /// accounts for a difference exactly is journaled as an adjustment and booked, so the
    /// confirming read agrees (docs/supervision.md, "Corporate actions").
    fn explain_by_splits(
        &mut self,
        candidates: Vec<(String, Decimal, Decimal)>,
        confirm: bool,
        ctx: &mut Context<Self>,
    ) {
        self.explaining = true;
        let rest = self.rest.lane(crate::alpaca::rest::Lane::Reconcile);
        let journal = self.journal.clone();
        let work = async move {
            let today = Utc::now().date_naive();
            let from = today - chrono::Duration::days(SPLIT_LOOKBACK_DAYS);
            let symbols: Vec<&str> = candidates.iter().map(|(s, ..)| s.as_str()).collect();
            // Either source may fail (a data subscription without corporate actions): the
            // other may still explain it.
            let splits = rest.splits(&symbols, from, today).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot read corporate actions; differences are judged without them");
                Vec::new()
            });
            let activities = rest
                .list_activities(&ListActivities {
                    activity_types: Some("SPLIT".into()),
                    after: Some(from.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()),
                    page_size: Some(100),
                    ..Default::default()
                })
                .await
                .map(|l| {
                    l.items
                        .into_iter()
                        .filter_map(|a| match a {
                            Activity::NonTrade(n) => Some(n),
                            Activity::Trade(_) => None,
                        })
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            // Fills since the earliest ex-date began (those after a split are in the new count).
            let earliest = splits.iter().map(|s| s.ex_date).min().unwrap_or(today);
            let fills = journal_call(
                &journal,
                LoadFillsSince(
                    earliest.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
                        - chrono::Duration::hours(12),
                ),
            )
            .await
            .unwrap_or_default();
            let mut applied = Vec::new();
            for (symbol, ours, held) in &candidates {
                let signed: Vec<Decimal> = fills
                    .iter()
                    .filter(|f| {
                        &f.symbol == symbol && f.client_order_id != journal::CORPORATE_ACTION
                    })
                    .map(|f| f.side.sign() * f.qty)
                    .collect();
                let Some(adj) = explain(symbol, *ours, *held, &splits, &activities, &signed) else {
                    continue;
                };
                let delta = adj.to - adj.from;
                let at = splits
                    .iter()
                    .filter(|s| &s.symbol == symbol)
                    .map(|s| s.ex_date)
                    .max()
                    .unwrap_or(today)
                    .and_hms_opt(0, 0, 0)
                    .unwrap_or_default()
                    .and_utc();
                let record = FillRecord {
                    execution_id: adj.key.clone(),
                    client_order_id: journal::CORPORATE_ACTION.to_string(),
                    broker_order_id: adj.key.clone(),
                    symbol: symbol.clone(),
                    side: if delta > Decimal::ZERO {
                        OrderSide::Buy
                    } else {
                        OrderSide::Sell
                    },
                    qty: delta.abs(),
                    price: Decimal::ZERO,
                    at,
                };
                // Journaled first, booked only if new: the same split is never applied twice
                // (a restart finds it journaled, and the journal's positions include it).
                match journal_call(&journal, RecordFill(record)).await {
                    Ok(true) => applied.push(adj),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(error = %e, symbol = %symbol, "cannot journal a split adjustment")
                    }
                }
            }
            applied
        };
        ctx.spawn(work.into_actor(self).map(move |applied, act, ctx| {
            act.explaining = false;
            for adj in applied {
                let position = act.positions.adjust(&adj.symbol, adj.to - adj.from);
                act.stats.split_adjustments += 1;
                tracing::warn!(symbol = %adj.symbol, from = %adj.from, to = %adj.to, ratio = ?adj.ratio, detail = %adj.detail, position = %position, "position adjusted for a split");
                act.journal_event(
                    "split_applied",
                    serde_json::json!({ "symbol": adj.symbol, "from": adj.from, "to": adj.to, "ratio": adj.ratio, "key": adj.key, "detail": adj.detail }),
                    ctx,
                );
                if let Some(s) = &act.splits {
                    s.do_send(SplitApplied { symbol: adj.symbol.clone(), ratio: adj.ratio });
                }
            }
            act.publish();
            if confirm {
                ctx.run_later(CONFIRM_AFTER, |act, ctx| act.reconcile(ctx));
            }
        }));
    }

    fn flatten(&mut self) -> ResponseActFuture<Self, Result<FlattenReport, String>> {
        let rest = self.rest.clone();
        let risk = self.risk.clone();
        let wait = self.settings.ack_timeout;
        Box::pin(
            async move {
                let Some(risk) = risk else {
                    return Err("the risk manager is not connected".to_string());
                };
                let canceled = rest.cancel_all_orders().await.map_err(|e| e.to_string())?.len();
                let deadline = tokio::time::Instant::now() + wait;
                loop {
                    let listed = rest
                        .list_orders(&ListOrders { status: Some("open"), limit: Some(500), ..Default::default() })
                        .await
                        .map_err(|e| e.to_string())?;
                    // An order the daemon cannot model is open all the same (cancel-all cancels it).
                    let open = listed.open_count();
                    if open == 0 {
                        break;
                    }
                    if tokio::time::Instant::now() > deadline {
                        return Err(format!("{open} orders still open after cancel-all"));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let positions = rest.list_positions().await.map_err(|e| e.to_string())?;
                let mut report = FlattenReport { canceled, ..Default::default() };
                // A position the daemon does not trade (an option, a crypto pair) or cannot
                // even read is closed by the broker's own liquidation of the symbol.
                let (equities, others): (Vec<_>, Vec<_>) = positions
                    .items
                    .into_iter()
                    .filter(|p| !p.qty.is_zero())
                    .partition(|p| p.asset_class == AssetClass::UsEquity);
                let foreign = positions.foreign.iter().filter(|f| f.is_held());
                let liquidate: Vec<(Option<String>, String)> = others
                    .iter()
                    .map(|p| (Some(p.symbol.clone()), p.symbol.clone()))
                    .chain(foreign.map(|f| (f.symbol.clone(), f.describe())))
                    .collect();
                for (symbol, what) in liquidate {
                    let Some(symbol) = symbol else {
                        tracing::error!(entry = %what, "flatten: a position without a readable symbol; close it by hand");
                        report.closing.insert(
                            format!("unreadable:{what}"),
                            Err("a position the daemon cannot read: close it by hand".into()),
                        );
                        continue;
                    };
                    let r = rest
                        .close_position(&symbol, CloseAmount::All)
                        .await
                        .map(|o| o.client_order_id)
                        .map_err(|e| e.to_string());
                    report.closing.insert(symbol, r);
                }
                for p in equities {
                    let side = if p.qty > Decimal::ZERO { OrderSide::Sell } else { OrderSide::Buy };
                    let mut intent = Intent::market(&p.symbol, side, p.qty.abs(), Purpose::Flatten);
                    intent.correlation_id = format!("flatten-{}", Utc::now().timestamp_millis());
                    let r = match risk.send(Propose(intent)).await {
                        Ok(Ok(coid)) => Ok(coid),
                        Ok(Err(ProposeError::Refused(r))) => Err(r.to_string()),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    report.closing.insert(p.symbol, r);
                }
                Ok(report)
            }
            .into_actor(self)
            .map(|r, act, ctx| {
                match &r {
                    Ok(report) => {
                        tracing::warn!(canceled = report.canceled, closing = ?report.closing, "flatten: orders canceled, positions closing");
                        act.journal_event("flatten", serde_json::to_value(report).unwrap_or_default(), ctx);
                    }
                    Err(e) => tracing::error!(error = %e, "flatten failed"),
                }
                r
            }),
        )
    }
}

/// Asks the journal in order behind what is queued; the answer, or why there is none.
async fn journal_call<M, T>(journal: &Addr<Journal>, msg: M) -> Result<T, String>
where
    M: Message<Result = Result<T, JournalError>> + Send + 'static,
    T: Send + 'static,
    Journal: Handler<journal::Ordered<M>>,
{
    match journal::ordered(journal, msg).await {
        Some(r) => r.map_err(|e| e.to_string()),
        None => Err("the journal is not running".to_string()),
    }
}

/// What reconciliation reads.
struct Gathered {
    /// Open intents, and those of the fill window.
    intents: Vec<StoredIntent>,
    /// Every fill of the orders filled in the window.
    fills: Vec<FillRecord>,
    /// The journal's positions from every fill, when asked for (the first reconciliation).
    positions: Option<BTreeMap<String, Decimal>>,
    view: BrokerView,
    /// Where the broker's fills were read from.
    since: DateTime<Utc>,
}

async fn gather(
    rest: &BrokerRef,
    journal: &Addr<Journal>,
    in_flight: &HashSet<String>,
    floor: Option<DateTime<Utc>>,
    load_positions: bool,
) -> Result<Gathered, String> {
    // Journal reads go in order behind the writes already queued (`journal_call`).
    // Fills since a little before the journal's last one (or the broker's last day: its clock,
    // not ours, which a simulator or a skewed host may not share); those already journaled are
    // matched by cumulative quantity and not booked again.
    // While a mismatch stands, the window keeps the start it had when the mismatch was first
    // seen (`floor`): a fill missed before later ones were journaled is still found.
    let since: DateTime<Utc> = match journal_call(journal, LastFillAt).await? {
        Some(at) => at - chrono::Duration::minutes(5),
        None => {
            let clock = rest.get_clock().await.map_err(|e| e.to_string())?;
            clock.timestamp.with_timezone(&Utc) - chrono::Duration::days(1)
        }
    };
    let since = floor.map_or(since, |f| f.min(since));
    // Only what the window needs: open intents and those of the window, the fills of orders
    // filled in it. The journal can grow for years; a reconciliation does not.
    let intents = journal_call(journal, LoadIntentsSince(since)).await?;
    // (A margin before the window: the journal's time of a fill and the broker's activity
    // time of it may differ a little.)
    let fills = journal_call(
        journal,
        LoadFillsSince(since - chrono::Duration::minutes(10)),
    )
    .await?;
    let positions = if load_positions {
        Some(journal_call(journal, LoadPositions).await?)
    } else {
        None
    };
    let mut view = BrokerView::default();
    let open = rest
        .list_orders(&ListOrders {
            status: Some("open"),
            limit: Some(500),
            nested: Some(false),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    view.open_orders = open.items;
    view.foreign
        .extend(open.foreign.into_iter().map(|f| (Listed::Order, f)));
    // Open intents the open list already shows need no request of their own; only the others
    // (final since, or never received) are looked up one by one, and so are bracket parents:
    // the lookup nests their legs, which a parent that died before learning them needs.
    let mut by_client_id = HashMap::new();
    for i in intents
        .iter()
        .filter(|i| i.status.is_none_or(|s| s.is_open()))
        .filter(|i| !in_flight.contains(&i.intent.client_order_id))
    {
        let coid = &i.intent.client_order_id;
        let parent = i.intent.request.get("order_class").is_some();
        let listed = view
            .open_orders
            .iter()
            .find(|o| !parent && &o.client_order_id == coid);
        let found = match listed {
            Some(o) => Some(o.clone()),
            None => rest
                .get_order_by_client_id(coid)
                .await
                .map_err(|e| e.to_string())?,
        };
        by_client_id.insert(coid.clone(), found);
    }
    view.by_client_id = by_client_id;
    let held = rest.list_positions().await.map_err(|e| e.to_string())?;
    view.positions = held.items;
    view.foreign
        .extend(held.foreign.into_iter().map(|f| (Listed::Position, f)));
    let activities = rest
        .fills_since(Some(since))
        .await
        .map_err(|e| e.to_string())?;
    view.fills = activities.items;
    view.foreign.extend(
        activities
            .foreign
            .into_iter()
            .map(|f| (Listed::Activity, f)),
    );
    Ok(Gathered {
        intents,
        fills,
        positions,
        view,
        since,
    })
}

/// Cancels our open orders on a symbol, waits until the broker shows them final, and answers
/// how much of the position is left to close on `side`.
async fn clear_symbol(
    rest: &BrokerRef,
    ids: &[Uuid],
    symbol: &str,
    side: OrderSide,
    wait: Duration,
) -> Result<Decimal, String> {
    for id in ids {
        // A 422 means it is already final (filled or canceled): the wait below sees it.
        if let Err(e) = rest.cancel_order(*id).await {
            if !matches!(
                e,
                BrokerError::Api {
                    status: 422 | 404,
                    ..
                }
            ) {
                return Err(format!("cannot cancel order {id}: {e}"));
            }
        }
    }
    let deadline = tokio::time::Instant::now() + wait;
    for id in ids {
        loop {
            let o = rest.get_order(*id).await.map_err(|e| e.to_string())?;
            if o.status.is_terminal() {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "order {id} is still {:?} after the cancel",
                    o.status
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let held = rest
        .get_position(symbol)
        .await
        .map_err(|e| e.to_string())?
        .map(|p| p.qty)
        .unwrap_or_default();
    // Only what closes: selling a long, buying back a short.
    Ok(match side {
        OrderSide::Sell => held.max(Decimal::ZERO),
        OrderSide::Buy => (-held).max(Decimal::ZERO),
    })
}

fn parse_side(s: &str) -> Option<OrderSide> {
    match s {
        "buy" => Some(OrderSide::Buy),
        "sell" | "sell_short" => Some(OrderSide::Sell),
        _ => None,
    }
}

impl Actor for OrderManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.reconcile(ctx);
        ctx.run_interval(self.settings.poll_interval, |act, ctx| act.poll(ctx));
        ctx.run_interval(self.settings.reconcile_interval, |act, ctx| {
            if act.lifecycle.reconciled() {
                act.reconcile(ctx);
            }
        });
    }
}

impl actix::Supervised for OrderManager {
    /// The futures of the old context are gone: nothing is in flight or being read any more,
    /// and the book is reconciled with the broker again before the next order (the run id
    /// and the sequence go on, so no client order id is used twice).
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.lifecycle = self.lifecycle.restarted();
        self.reconciling = false;
        self.polling = false;
        self.in_flight.clear();
        self.health.report(
            "orders",
            HealthEvent::ActorRestarted {
                reason: "the order manager stopped".into(),
            },
        );
        tracing::warn!("order manager restarting: reconciling with the broker before any order");
    }
}

impl Handler<SubmitApproved> for OrderManager {
    type Result = Result<Submitted, OrderError>;
    fn handle(&mut self, msg: SubmitApproved, ctx: &mut Context<Self>) -> Self::Result {
        let r = self.submit(msg.0, ctx);
        if r.is_ok() {
            self.publish();
        }
        r
    }
}

impl Handler<TradeUpdatesReceived> for OrderManager {
    type Result = ();
    fn handle(&mut self, msg: TradeUpdatesReceived, ctx: &mut Context<Self>) {
        for u in &msg.updates {
            let effects = self.book.on_update(u);
            self.apply_effects(effects, ctx);
            self.learn_legs(&u.order, ctx);
        }
        self.publish();
    }
}

impl Handler<OrderStreamReady> for OrderManager {
    type Result = ();
    fn handle(&mut self, msg: OrderStreamReady, ctx: &mut Context<Self>) {
        for o in &msg.orders {
            self.on_broker_order(o, ctx);
        }
        let first = !self.lifecycle.stream_ready();
        self.lifecycle = self.lifecycle.stream_ready_now();
        self.stream_up = true;
        if first {
            tracing::info!("trade_updates stream ready");
        }
        // After a gap, fills of orders we do not track are found by reconciliation.
        if msg.gap_from.is_some() && self.lifecycle.reconciled() {
            self.reconcile(ctx);
        }
        self.publish();
    }
}

impl Handler<StreamEvent> for OrderManager {
    type Result = ();
    fn handle(&mut self, msg: StreamEvent, _: &mut Context<Self>) {
        if msg.stream != StreamKind::TradeUpdates {
            return;
        }
        // State changes come through the stream client's actor, OrderStreamReady straight from
        // the session: a "subscribing" may arrive after the stream is ready. Only a state that
        // means the stream went away takes it down.
        let StreamEventKind::StateChanged { to, .. } = msg.kind else {
            return;
        };
        match to {
            ConnectionState::Streaming => self.stream_up = true,
            ConnectionState::Reconnecting | ConnectionState::Failed => {
                if self.stream_up {
                    tracing::warn!(state = ?to, "trade_updates stream down: polling open orders over REST");
                }
                self.stream_up = false;
            }
            ConnectionState::Disconnected => {
                if self.stream_up {
                    tracing::info!("trade_updates stream stopped");
                }
                self.stream_up = false;
            }
            ConnectionState::Connecting
            | ConnectionState::Authenticating
            | ConnectionState::Subscribing => {}
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
                    act.journal_event("cancel_all", serde_json::json!({ "canceled": n }), ctx);
                }
                r
            }),
        )
    }
}

impl Handler<Flatten> for OrderManager {
    type Result = ResponseActFuture<Self, Result<FlattenReport, String>>;
    fn handle(&mut self, _: Flatten, _: &mut Context<Self>) -> Self::Result {
        self.flatten()
    }
}

impl Handler<Connect> for OrderManager {
    type Result = ();
    fn handle(&mut self, msg: Connect, _: &mut Context<Self>) {
        self.risk = Some(msg.risk);
        self.account = msg.account;
        self.splits = msg.splits;
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
        msg.0.do_send(self.view());
        self.listeners.push(msg.0);
    }
}

impl Handler<GetOrderStats> for OrderManager {
    type Result = MessageResult<GetOrderStats>;
    fn handle(&mut self, _: GetOrderStats, _: &mut Context<Self>) -> Self::Result {
        let mut s = self.stats.clone();
        s.ready = self.ready();
        s.reconciled = self.lifecycle.reconciled();
        s.stream_up = self.stream_up;
        s.open_orders = self.book.open_count();
        s.tracked_entries = self.tracked_entries() + self.book.len();
        s.tick_to_order = self.tick_to_order.summary();
        s.tick_to_intent = self.tick_to_intent.summary();
        let view = self.view();
        s.unsettled = self.in_flight.len()
            + self.book.open().filter(|t| t.status.is_none()).count()
            + view.busy_symbols.len();
        s.positions = view.positions;
        MessageResult(s)
    }
}
