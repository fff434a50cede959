//! The order path between the actors: a strategy (or the flatten procedure) proposes to the
//! risk checks; what they approve goes to the order side.

use crate::messages::OrdersChanged;
use crate::risk::{Approved, Intent, Refusal};
use actix::prelude::*;

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
