//! The order path between the actors: a strategy (or the flatten procedure) proposes to the
//! risk checks; what they approve goes to the order side. And the order side's other
//! messages: cancel-all and flatten, wiring, its listeners, its counters.

use crate::journal::store::{FillRecord, OrderState};
use crate::messages::{OrdersChanged, RefreshAccount, SplitApplied};
use crate::risk::{Approved, Intent, Refusal};
use actix::prelude::*;
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// Why a proposal did not become an order.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProposeError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// Approved, but the order side could not take it (not reconciled yet, journal failure).
    #[error("not sent: {0}")]
    NotSent(String),
}

/// An order intent for the risk checks. Answers the client order id of the order that was
/// sent on, or why not.
#[derive(Message, Debug)]
#[rtype(result = "Result<String, ProposeError>")]
pub struct Propose(pub Intent);

/// An approved order to send. Only the risk module can make an [`Approved`].
#[derive(Message, Debug)]
#[rtype(result = "Result<Submitted, OrderError>")]
pub struct SubmitApproved(pub Approved);

/// The order was taken: its client order id and the book as it is now (with the new order's
/// quantity pending). The request itself is sent after the intent is journaled.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub client_order_id: String,
    pub view: OrdersChanged,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OrderError {
    #[error("not ready: {0}")]
    NotReady(String),
}

/// Cancels every open order at the broker. Answers how many the broker reported.
#[derive(Message, Debug)]
#[rtype(result = "Result<usize, String>")]
pub struct CancelAll;

/// Cancels every open order, then closes every position the broker shows with a market order
/// of ours (each passing the risk checks as a closing order).
#[derive(Message, Debug)]
#[rtype(result = "Result<FlattenReport, String>")]
pub struct Flatten;

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct FlattenReport {
    pub canceled: usize,
    /// Per symbol: the closing order's client order id, or why there is none.
    pub closing: BTreeMap<String, Result<String, String>>,
}

/// Tells the order manager where the risk checks and the account are (they are started after it).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Connect {
    pub risk: Recipient<Propose>,
    pub account: Option<Recipient<RefreshAccount>>,
    /// Told when a position was adjusted for a split (the feed restarts the symbol's bars).
    pub splits: Option<Recipient<SplitApplied>>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct AddOrdersListener(pub Recipient<OrdersChanged>);

/// One order's new state, or one fill, as it is booked (for `traderd ctl events`).
#[derive(Message, Debug, Clone, serde::Serialize)]
#[rtype(result = "()")]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OrderEvent {
    Order(OrderState),
    Fill(FillRecord),
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct AddOrderEventListener(pub Recipient<OrderEvent>);

#[derive(Message)]
#[rtype(result = "OrderStats")]
pub struct GetOrderStats;

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
    pub open_orders: usize,
    /// Orders in flight, unacknowledged, or open entries and exits (protective orders aside):
    /// what a clean shutdown waits for.
    pub unsettled: usize,
    pub positions: BTreeMap<String, Decimal>,
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
    /// The part of it before the journal: until the order manager approved the intent.
    pub tick_to_intent: crate::latency::LatencySummary,
}
