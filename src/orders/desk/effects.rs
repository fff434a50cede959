//! What the desk answers: the effects the actor performs, the records it journals, what
//! health is told, and the views and counters the other actors read.

use super::SplitCandidate;
use crate::alpaca::model::OrderRequest;
use crate::journal::store::{FillRecord, OrderIntent, OrderState};
use crate::risk::Intent;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;
use uuid::Uuid;

/// A record for the journal, written in the order the effects come.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Intent(OrderIntent),
    State(OrderState),
    Fill(FillRecord),
    /// An event of the order side's own (`order_not_sent`, `reconciled`, `position_mismatch`,
    /// `unmodelled`, `split_applied`, `flatten`, `cancel_all`).
    Event(&'static str, serde_json::Value),
}

/// What the health monitor is told.
#[derive(Debug, Clone, PartialEq)]
pub enum Alert {
    OrderAccepted,
    OrderRejected {
        detail: String,
    },
    Mismatch {
        detail: String,
    },
    /// The order side stopped itself (the journal keeps failing).
    Failed {
        reason: String,
    },
    Restarted {
        reason: String,
    },
}

/// What the actor must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Journal(Record),
    /// One order's new state was booked (journaled by the effect before): the listeners.
    StateBooked(OrderState),
    /// A fill was booked (journaled by the effect after): the listeners, its span (with its
    /// order's correlation id), the account.
    FillBooked {
        fill: FillRecord,
        correlation_id: crate::domain::CorrelationId,
    },
    /// Ask the risk checks for the trailing stop of a filled entry.
    Protect {
        entry: String,
        intent: Intent,
    },
    Alert(Alert),
    /// The order side cannot go on (it stops; its supervisor restarts it).
    Stop,
    /// Reconcile with the broker again, after this long (zero: now).
    Reconcile {
        after: Duration,
    },
    /// Look up splits that may account for these differences before they are confirmed.
    ExplainSplits {
        candidates: Vec<SplitCandidate>,
        confirm: bool,
    },
    /// A position was adjusted for a split: the feed restarts the symbol.
    SplitApplied {
        symbol: String,
        ratio: Option<Decimal>,
    },
    /// Nothing more is kept of this order: its trace and submit span go.
    Forget(String),
}

/// The book as the other actors see it (the risk checks' pending quantities, the status).
/// Sent after every change as a message (`messages::OrdersChanged`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct OrdersChanged {
    pub positions: BTreeMap<String, Decimal>,
    pub open_orders: usize,
    pub pending_qty: crate::risk::SymbolMap<Decimal>,
    /// Symbols with an order of ours in flight or open.
    pub busy_symbols: BTreeSet<String>,
    /// Reconciled with the broker and the trade_updates stream is ready: orders are accepted.
    pub ready: bool,
    /// The how-manieth view published (`actors::order_manager::OrderEntry::published`): a
    /// proposer knows from it that a view has its order in.
    pub seq: u64,
}

/// One order's new state, or one fill, as it is booked (for `traderd ctl events`).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OrderEvent {
    Order(OrderState),
    Fill(FillRecord),
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct OrderStats {
    pub run: u64,
    pub ready: bool,
    pub reconciled: bool,
    pub stream_up: bool,
    pub submitted: u64,
    pub accepted: u64,
    pub refused_by_broker: u64,
    pub fills: u64,
    /// Orders of ours that reached a final status, by status (`filled`, `canceled`, …).
    pub orders_final: BTreeMap<String, u64>,
    pub open_orders: usize,
    /// Orders in flight, unacknowledged, or open entries and exits (protective orders aside):
    /// what a clean shutdown waits for.
    pub unsettled: usize,
    pub positions: BTreeMap<String, Decimal>,
    /// The last fills booked, newest last (at most 10).
    pub recent_fills: Vec<FillRecord>,
    /// Fills and realised P&L (average cost) by symbol since the daemon started.
    pub by_symbol: BTreeMap<String, crate::orders::pnl::SymbolPnl>,
    pub reconciliations: u64,
    pub intents_found_at_broker: u64,
    pub intents_never_sent: u64,
    pub missing_fills: u64,
    pub foreign_orders: u64,
    /// Broker entries the daemon cannot model (a multi-leg options order, a position or
    /// activity of an unknown shape), each counted once.
    pub unmodelled: u64,
    /// Positions adjusted for a split (the broker's quantity changed with no fill).
    pub split_adjustments: u64,
    pub position_mismatches: u64,
    pub polls: u64,
    pub lookups: u64,
    pub journal_errors: u64,
    /// Entries the order side keeps per order (ids, purposes, fills booked): bounded by the
    /// orders not yet final and reconciled, not by the orders ever sent.
    pub tracked_entries: usize,
    /// From the arrival of the market data behind a live signal to its order request going
    /// to the HTTP client (after the intent is journaled).
    pub tick_to_order: crate::latency::LatencySummary,
    /// Each order's tick to order less its own write-ahead (sync included): what the daemon
    /// adds to the journal's flush, order by order.
    pub tick_to_order_beyond_write: crate::latency::LatencySummary,
    /// The part of it before the journal: until the order manager approved the intent.
    pub tick_to_intent: crate::latency::LatencySummary,
    /// How long each intent took to be written ahead (the intent log's sync included).
    pub intent_write: crate::latency::LatencySummary,
}

/// An approved intent taken by the desk: what to journal, what to send, and the broker ids of
/// our orders on the symbol to cancel first (an exit or a close clears bracket legs and stops).
#[derive(Debug, Clone)]
pub struct Submission {
    pub client_order_id: String,
    pub record: OrderIntent,
    pub request: OrderRequest,
    pub intent: Intent,
    pub clear: Vec<Uuid>,
}

/// The lookups a poll makes: overdue orders (no answer after the ack timeout) and, while the
/// stream is down, every open order.
#[derive(Debug, Clone, PartialEq)]
pub struct PollPlan {
    pub lookups: Vec<String>,
    pub overdue: HashSet<String>,
}
