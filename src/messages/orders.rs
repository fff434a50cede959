//! The order path between the actors: a strategy (or the flatten procedure) proposes to the
//! risk checks; what they approve goes to the order side. And the order side's other
//! messages: cancel-all and flatten, wiring, its listeners, its counters.

use crate::messages::{OrdersChanged, RefreshAccount, SplitApplied};
use crate::risk::{Approved, Intent, Refusal};
use actix::prelude::*;
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

/// An order intent for the risk checks, with the price it was decided at (the trade or the
/// bar close the strategy saw; `None`: the latest price the risk checks know, for the order
/// side's stops and closing orders). The price comes with the message so the check never
/// waits on the feed. Answers the client order id of the order that was sent on, or why not.
#[derive(Message, Debug)]
#[rtype(result = "Result<String, ProposeError>")]
pub struct Propose {
    pub intent: Intent,
    pub price: Option<rust_decimal::Decimal>,
}

impl Propose {
    /// Checked against the latest price the risk checks know.
    pub fn new(intent: Intent) -> Self {
        Propose {
            intent,
            price: None,
        }
    }

    /// Decided at `price`: the check's last trade for the symbol from now on.
    pub fn at(intent: Intent, price: rust_decimal::Decimal) -> Self {
        Propose {
            intent,
            price: Some(price),
        }
    }
}

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

pub use crate::orders::desk::{OrderEvent, OrderStats};

impl Message for OrderEvent {
    type Result = ();
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct AddOrderEventListener(pub Recipient<OrderEvent>);

#[derive(Message)]
#[rtype(result = "OrderStats")]
pub struct GetOrderStats;
