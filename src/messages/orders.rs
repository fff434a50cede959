//! The order path between the actors: a strategy (or the flatten procedure, or a filled
//! entry's stop) proposes to the order side, which asks the risk checks ([`RiskGate`]) and
//! takes what they approve in the same handler. And the order side's other messages:
//! cancel-all and flatten, wiring, its listeners, its counters.
//!
//! [`RiskGate`]: crate::risk::RiskGate

use crate::messages::{OrdersChanged, RefreshAccount};
use crate::risk::Intent;
use actix::prelude::*;
use std::collections::BTreeMap;

pub use crate::risk::ProposeError;

/// An order intent for the risk checks and, approved, the order side, with the price it was
/// decided at (the trade or the bar close the strategy saw; `None`: the latest price the risk
/// checks know, for the order side's stops and closing orders). The price comes with the
/// message so the check never waits on the feed. Answers the client order id of the order
/// that was sent on, or why not.
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

/// Tells the order manager the risk checks it asks (the gate it shares with the
/// RiskManager) and where the account is (they are started after it).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Connect {
    pub risk: crate::risk::SharedGate,
    pub account: Option<Recipient<RefreshAccount>>,
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
