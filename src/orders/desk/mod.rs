//! The order side's decisions as one synchronous core, [`OrderDesk`]: it takes what happened
//! (an approved intent, the broker's answer, a `trade_updates` batch, a poll, what a
//! reconciliation read) and answers what to do ([`Effect`]: journal this, tell the listeners
//! that, ask for a protective stop, reconcile again). It does no I/O and needs no runtime:
//! the OrderManager actor performs the effects, and the tests drive the desk directly
//! (`desk/tests.rs`).
//!
//! (The issue that asked for it called it `OrderState`; that name is the journal's record of
//! one order's state, so the core is the desk.)
//!
//! - **Write-ahead.** [`OrderDesk::submit`] answers the intent to journal and the request to
//!   send; the actor sends it only once the journal has it.
//! - **Every source folded by cumulative quantity** ([`OrderBook`]): the POST answer, the
//!   stream, polls, reconciliation. A fill is booked once per execution id.
//! - **Never resent on a guess**: an order with no answer after the ack timeout is looked up
//!   by its client order id ([`OrderDesk::poll_plan`]).

mod effects;
mod feed;
mod flatten;
mod reconciling;
#[cfg(test)]
mod tests;

pub use effects::{
    Alert, Effect, OrderEvent, OrderStats, OrdersChanged, PollPlan, Record, Submission,
};
pub use flatten::{FlattenPlan, flatten_plan};
pub use reconciling::{Gathered, ReconcileStart, SplitCandidate, split_adjustments};

use super::ClientOrderIds;
use super::book::{Change, OrderBook};
use super::lifecycle::Lifecycle;
use super::positions::PositionCheck;
use crate::alpaca::BrokerError;
use crate::alpaca::model::{
    Order, OrderClass, OrderRequest, OrderSide, OrderStatus, OrderType, StopLoss, TakeProfit,
    TimeInForce,
};
use crate::journal::store::{FillRecord, OrderIntent, OrderState};
use crate::risk::{Approved, Intent, Purpose};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;
use uuid::Uuid;

/// Journal writes failing this many times in a row mean the order side cannot keep its
/// write-ahead promise: it stops (and is restarted) rather than trade on.
pub const JOURNAL_FAILURES_TO_STOP: u32 = 3;

/// A position that differs from the broker's is read again this soon, to confirm it.
pub const CONFIRM_AFTER: Duration = Duration::from_secs(1);

/// The first reconciliation, failed, is tried again this soon.
pub const RETRY_FIRST_RECONCILIATION: Duration = Duration::from_secs(2);

/// How many orders the map kept per order (on the order path: an entry before each intent)
/// is made to hold before it grows (what is kept for an order is forgotten a reconciliation
/// after it is final, every 60 s by default: Alpaca's 200 requests a minute allow at most 400
/// orders in that time). A growing table rehashes every key into new memory, and memory never
/// touched before costs a page fault per page: on the load bench's 2,000 probe orders in 20 s
/// the growths at 449, 897 and 1,793 orders held the order that made them 160 to 890 µs
/// (docs/performance.md, seventeenth session). 4,096 slots hold about 3,500 orders (about
/// 0.5 MB, resident from the start).
pub const ORDERS_KEPT: usize = 4096;

/// A map made for `n` entries, its memory touched now: a table's slots are filled in hash
/// order, so without this each of the first few hundred orders would touch a page of it
/// for the first time (a page fault each, about 10 µs on this VM).
fn resident_map<V: Default>(n: usize) -> HashMap<String, V> {
    let mut map = HashMap::with_capacity(n);
    for i in 0..map.capacity() {
        map.insert(i.to_string(), V::default());
    }
    map.clear();
    map
}

/// What the desk keeps for an order of ours until it is forgotten.
#[derive(Debug, Clone, Default)]
struct Kept {
    purpose: Purpose,
    correlation: crate::domain::CorrelationId,
}

/// The order side's state: the book, what each order is for, what is booked, where the
/// lifecycle stands. See the module documentation.
#[derive(Debug, Default)]
pub struct OrderDesk {
    ack_timeout: Duration,
    ids: Option<ClientOrderIds>,
    book: OrderBook,
    /// What each order of ours is for, and its correlation id (for legs and protective stops
    /// to carry their entry's). Legs have none: they belong to their parent. Sized at start
    /// for [`ORDERS_KEPT`] orders.
    kept: HashMap<String, Kept>,
    /// Orders whose request has not been answered yet: never looked up as "never sent".
    in_flight: HashSet<String>,
    /// Legs already journaled.
    legs: HashSet<String>,
    /// Entries whose trailing stop has been asked for.
    protected: HashSet<String>,
    /// Per broker order: the execution ids booked (from the journal at start, then as booked).
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
    /// Fills and realised P&L by symbol since start (what `ctl status` gives each strategy).
    pnl: crate::orders::pnl::PnlBook,
    /// The last fills, for `ctl status` and `ctl top`.
    recent_fills: std::collections::VecDeque<FillRecord>,
    lifecycle: Lifecycle,
    reconciling: bool,
    stream_up: bool,
    polling: bool,
    /// A lookup of splits is under way (a difference waits for it before it is confirmed).
    explaining: bool,
    /// The risk checks are connected (a protective stop can be asked for).
    risk_connected: bool,
    stats: OrderStats,
    /// Journal writes failed in a row; past [`JOURNAL_FAILURES_TO_STOP`] the order side stops.
    journal_failures: u32,
    /// The books were loaded from the journal (the first reconciliation of the process).
    loaded: bool,
    /// Set while a position differs from the broker's: the start of the fill window then.
    fills_floor: Option<DateTime<Utc>>,
    /// Open orders of others already reported (broker ids).
    foreign_seen: HashSet<String>,
}

impl OrderDesk {
    /// `ack_timeout`: how long an order may go unanswered before it is looked up.
    pub fn new(ack_timeout: Duration) -> Self {
        OrderDesk {
            ack_timeout,
            kept: resident_map(ORDERS_KEPT),
            ..Default::default()
        }
    }

    /// An order's correlation id (empty for an order not of ours or forgotten).
    fn correlation(&self, coid: &str) -> crate::domain::CorrelationId {
        self.kept
            .get(coid)
            .map(|k| k.correlation.clone())
            .unwrap_or_default()
    }

    pub fn connect_risk(&mut self) {
        self.risk_connected = true;
    }

    pub fn ready(&self) -> bool {
        self.lifecycle == Lifecycle::Ready && self.ids.is_some()
    }

    pub fn lifecycle(&self) -> Lifecycle {
        self.lifecycle
    }

    pub fn book(&self) -> &OrderBook {
        &self.book
    }

    /// The symbols with an order in progress: in flight, or an open entry, exit or close
    /// (an open stop or bracket leg alone does not make its symbol busy).
    fn busy_orders(&self) -> impl Iterator<Item = &str> {
        let open = self.book.open().filter(|t| {
            matches!(
                self.kept.get(&t.client_order_id).map(|k| &k.purpose),
                Some(Purpose::Entry { .. } | Purpose::Exit | Purpose::Flatten)
            )
        });
        let in_flight = self.in_flight.iter().filter_map(|coid| self.book.get(coid));
        open.chain(in_flight).map(|t| t.symbol.as_str())
    }

    /// Our orders the broker has not acknowledged yet (the flatten procedure counts the
    /// closing ones against what it closes: [`flatten_plan`]).
    pub fn unacknowledged(&self) -> Vec<crate::orders::book::InFlight> {
        self.book.unacknowledged()
    }

    pub fn view(&self) -> OrdersChanged {
        let busy: BTreeSet<String> = self.busy_orders().map(str::to_string).collect();
        OrdersChanged {
            positions: self.positions.non_zero(),
            open_orders: self.book.open_count(),
            pending_qty: self.book.pending_qty(),
            busy_symbols: busy,
            ready: self.ready(),
            seq: 0,
        }
    }

    /// The counters, and the state behind `ctl status` (the latency summaries and the
    /// entries the actor keeps itself are the actor's to add).
    pub fn stats(&self) -> OrderStats {
        let mut s = self.stats.clone();
        s.ready = self.ready();
        s.reconciled = self.lifecycle.reconciled();
        s.stream_up = self.stream_up;
        s.open_orders = self.book.open_count();
        s.tracked_entries = self.tracked_entries() + self.book.len();
        let view = self.view();
        s.unsettled = self.in_flight.len()
            + self.book.open().filter(|t| t.status.is_none()).count()
            + view.busy_symbols.len();
        s.positions = view.positions;
        s.by_symbol = self.pnl.all().clone();
        s.recent_fills = self.recent_fills.iter().cloned().collect();
        s
    }

    /// How many entries the per-order maps hold (for the memory test: it must not grow with
    /// the number of orders once they are final and reconciled).
    pub fn tracked_entries(&self) -> usize {
        self.kept.len()
            + self.legs.len()
            + self.protected.len()
            + self.booked.len()
            + self.executions.len()
            + self.retired.len()
    }

    /// A journal write failed (or, with `false`, succeeded).
    pub fn journal_outcome(&mut self, failed: bool) -> Vec<Effect> {
        if !failed {
            self.journal_failures = 0;
            return Vec::new();
        }
        self.stats.journal_errors += 1;
        self.journal_failures += 1;
        if self.journal_failures < JOURNAL_FAILURES_TO_STOP {
            return Vec::new();
        }
        let reason = format!(
            "{} journal writes failed in a row: cannot keep the write-ahead journal",
            self.journal_failures
        );
        self.journal_failures = 0;
        vec![Effect::Alert(Alert::Failed { reason }), Effect::Stop]
    }

    /// After a restart of the actor: nothing is in flight or being read any more, and the
    /// book is reconciled with the broker again before the next order (the run id and the
    /// sequence go on, so no client order id is used twice).
    pub fn restarted(&mut self) -> Vec<Effect> {
        self.lifecycle = self.lifecycle.restarted();
        self.reconciling = false;
        self.polling = false;
        self.explaining = false;
        self.in_flight.clear();
        tracing::warn!("order manager restarting: reconciling with the broker before any order");
        vec![Effect::Alert(Alert::Restarted {
            reason: "the order manager stopped".into(),
        })]
    }

    // ----- booking ------------------------------------------------------------------------

    /// Books a fill once per execution: position, counters, journal, listeners.
    fn book_fill(&mut self, fill: FillRecord, out: &mut Vec<Effect>) {
        if !self
            .executions
            .entry(fill.broker_order_id.clone())
            .or_default()
            .insert(fill.execution_id.clone())
        {
            return;
        }
        let position = self
            .positions
            .book(&fill.symbol, fill.side.sign() * fill.qty);
        let booked = self.booked.entry(fill.broker_order_id.clone()).or_default();
        *booked = booked.saturating_add(fill.qty);
        self.stats.fills += 1;
        self.pnl.book(&fill.symbol, fill.side, fill.qty, fill.price);
        if self.recent_fills.len() == 10 {
            self.recent_fills.pop_front();
        }
        self.recent_fills.push_back(fill.clone());
        tracing::info!(symbol = %fill.symbol, side = ?fill.side, qty = %fill.qty, price = %fill.price, client_order_id = %fill.client_order_id, position = %position, "fill");
        let correlation_id = self.correlation(&fill.client_order_id);
        out.push(Effect::FillBooked {
            fill: fill.clone(),
            correlation_id,
        });
        out.push(Effect::Journal(Record::Fill(fill)));
    }

    /// What the book says changed: booked, journaled, and a filled entry protected.
    fn apply(&mut self, changes: Vec<Change>, out: &mut Vec<Effect>) {
        for c in changes {
            match c {
                Change::Fill(f) => self.book_fill(f, out),
                Change::State(s) => {
                    if s.status.is_terminal() {
                        tracing::info!(client_order_id = %s.client_order_id, status = ?s.status, filled_qty = %s.filled_qty, "order final");
                        *self.stats.orders_final.entry(s.status.name()).or_default() += 1;
                    }
                    let filled = s.status == OrderStatus::Filled;
                    let coid = s.client_order_id.clone();
                    out.push(Effect::StateBooked(s.clone()));
                    out.push(Effect::Journal(Record::State(s)));
                    if filled {
                        self.protect(&coid, out);
                    }
                }
            }
        }
    }

    /// Once an entry with a trailing stop has filled, asks for the stop (through the risk checks).
    fn protect(&mut self, coid: &str, out: &mut Vec<Effect>) {
        let Some(Purpose::Entry {
            trail_pct: Some(trail_pct),
            ..
        }) = self.kept.get(coid).map(|k| k.purpose.clone())
        else {
            return;
        };
        let Some(t) = self.book.get(coid) else { return };
        if !self.risk_connected
            || !self.protected.insert(coid.to_string())
            || t.filled_qty <= Decimal::ZERO
        {
            return;
        }
        let mut intent = Intent::market(
            &t.symbol,
            t.side.opposite(),
            t.filled_qty,
            Purpose::Protect { trail_pct },
        );
        intent.correlation_id = self.correlation(coid);
        out.push(Effect::Protect {
            entry: coid.to_string(),
            intent,
        });
    }

    /// Learns an order's bracket legs: tracked and journaled as intents of their own.
    ///
    /// Only from a parent the book tracks: a parent final and forgotten had its legs learned
    /// while it was tracked, and learning them again from a late report (a gap repair that
    /// nests them) would book their fills a second time.
    fn learn_legs(&mut self, order: &Order, now: DateTime<Utc>, out: &mut Vec<Effect>) {
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
                correlation_id: self.correlation(&order.client_order_id),
                created_at: leg.created_at,
            };
            self.book.track(&intent, now);
            out.push(Effect::Journal(Record::Intent(intent)));
            let changes = self.book.on_order(leg);
            self.apply(changes, out);
        }
    }

    /// The broker's view of an order (an answer, a poll, a lookup, a reconciliation).
    fn on_broker_order(&mut self, order: &Order, now: DateTime<Utc>, out: &mut Vec<Effect>) {
        let changes = self.book.on_order(order);
        self.apply(changes, out);
        self.learn_legs(order, now, out);
    }

    // ----- submission ---------------------------------------------------------------------

    /// The request for an intent: a bracket or OTO for an entry with protection (good till
    /// canceled: protection outlives the session), a trailing stop for a protective order.
    pub fn request_for(intent: &Intent, coid: &str) -> OrderRequest {
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

    /// Takes an approved intent: its client order id, tracked (pending) from now. `Err` while
    /// the order side is not ready for it (the flatten procedure's closes need only
    /// reconciliation: capital preservation must not wait for the trade_updates stream).
    pub fn submit(&mut self, approved: Approved, now: DateTime<Utc>) -> Result<Submission, String> {
        let closing = matches!(approved.intent().purpose, Purpose::Flatten);
        self.lifecycle.admits(closing).map_err(str::to_string)?;
        let Some(ids) = self.ids.as_mut() else {
            return Err("no run id yet".into());
        };
        let intent = approved.into_intent();
        let coid = ids.next_for(intent.strategy.as_deref(), &intent.symbol);
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
        self.kept.insert(
            coid.clone(),
            Kept {
                purpose: intent.purpose.clone(),
                correlation: intent.correlation_id.clone(),
            },
        );
        self.stats.submitted += 1;
        tracing::info!(client_order_id = %coid, symbol = %intent.symbol, side = ?intent.side, qty = %intent.qty, purpose = ?intent.purpose, correlation_id = %intent.correlation_id, "order approved");
        let clear = if matches!(intent.purpose, Purpose::Exit | Purpose::Flatten) {
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
        Ok(Submission {
            client_order_id: coid,
            record,
            request,
            intent,
            clear,
        })
    }

    /// Our other orders on the symbol are final: `left` is what is left to close (or why the
    /// clearing failed). Answers the intent and request to send (cut down to what is left),
    /// or the effects of dropping it.
    pub fn after_clear(
        &mut self,
        mut record: OrderIntent,
        mut request: OrderRequest,
        left: Result<Decimal, String>,
        now: DateTime<Utc>,
    ) -> Result<(OrderIntent, OrderRequest), Vec<Effect>> {
        let coid = record.client_order_id.clone();
        match left {
            Ok(left) if left <= Decimal::ZERO => {
                tracing::info!(client_order_id = %coid, symbol = %record.symbol, "nothing left to close after canceling the protective orders");
                Err(self.close_unsent(
                    &coid,
                    OrderStatus::Canceled,
                    "nothing left to close",
                    false,
                    now,
                ))
            }
            Ok(left) => {
                if left < record.qty {
                    record.qty = left;
                    request.qty = Some(left);
                    self.book.set_qty(&coid, left);
                }
                Ok((record, request))
            }
            Err(e) => {
                tracing::warn!(client_order_id = %coid, error = %e, "exit not sent");
                Err(self.close_unsent(&coid, OrderStatus::Canceled, &e, false, now))
            }
        }
    }

    /// The outcome of sending: `Err` when the intent could not be journaled (nothing was
    /// sent), else the broker's answer.
    pub fn on_sent(
        &mut self,
        coid: &str,
        result: Result<Result<Order, BrokerError>, String>,
        now: DateTime<Utc>,
    ) -> Vec<Effect> {
        self.in_flight.remove(coid);
        let mut out = Vec::new();
        match result {
            Err(journal_error) => {
                tracing::error!(client_order_id = %coid, error = %journal_error, "intent not journaled: the order was not sent");
                self.book.close_unsent(coid, OrderStatus::Rejected);
                out.push(Effect::Forget(coid.to_string()));
                out.extend(self.journal_outcome(true));
            }
            Ok(Ok(order)) => {
                out.extend(self.journal_outcome(false));
                self.stats.accepted += 1;
                out.push(Effect::Alert(Alert::OrderAccepted));
                tracing::info!(client_order_id = %coid, order_id = %order.id, status = ?order.status, "order accepted by the broker");
                self.on_broker_order(&order, now, &mut out);
            }
            Ok(Err(e)) if e.is_ambiguous_outcome() => {
                out.extend(self.journal_outcome(false));
                tracing::warn!(client_order_id = %coid, error = %e, "order outcome unknown; it will be looked up by client order id");
            }
            Ok(Err(e)) => {
                out.extend(self.journal_outcome(false));
                self.stats.refused_by_broker += 1;
                if !e.is_retryable() {
                    out.push(Effect::Alert(Alert::OrderRejected {
                        detail: e.to_string(),
                    }));
                }
                tracing::warn!(client_order_id = %coid, error = %e, "the broker refused the order");
                out.extend(self.close_unsent(
                    coid,
                    OrderStatus::Rejected,
                    &e.to_string(),
                    true,
                    now,
                ));
            }
        }
        out
    }

    /// Closes an intent the broker does not have, in the book and (when it was journaled) the
    /// journal; an intent dropped before it was journaled gets the event only.
    fn close_unsent(
        &mut self,
        coid: &str,
        status: OrderStatus,
        why: &str,
        journaled: bool,
        now: DateTime<Utc>,
    ) -> Vec<Effect> {
        self.in_flight.remove(coid);
        self.book.close_unsent(coid, status);
        let mut out = vec![Effect::Forget(coid.to_string())];
        if journaled {
            out.push(Effect::Journal(Record::State(OrderState {
                client_order_id: coid.to_string(),
                broker_order_id: None,
                status,
                filled_qty: Decimal::ZERO,
                filled_avg_price: None,
                at: now,
            })));
        }
        out.push(Effect::Journal(Record::Event(
            "order_not_sent",
            serde_json::json!({ "client_order_id": coid, "reason": why }),
        )));
        out
    }
}

/// The side of an activity (`sell_short` sells).
fn parse_side(s: &str) -> Option<OrderSide> {
    match s {
        "buy" => Some(OrderSide::Buy),
        "sell" | "sell_short" => Some(OrderSide::Sell),
        _ => None,
    }
}
