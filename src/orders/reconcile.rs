//! Reconciliation: what the journal says against what the broker says, at start (before any
//! new order) and periodically. A pure function: the OrderManager gathers both views, calls
//! [`reconcile`], and acts on the findings.
//!
//! Rules:
//! - A journaled intent not known to be final is looked up by its client order id. If the
//!   broker has it, its state is adopted. If the broker does not, the request never arrived
//!   (the process died before or while sending): the intent is closed as not sent. It is never
//!   resent automatically; the strategy decides again, with a new id.
//! - Fills are matched per broker order by cumulative quantity (trade updates and account
//!   activities carry different ids for the same execution): broker fills beyond what the
//!   journal holds for that order are missing and get journaled.
//! - An open order at the broker that the journal never sent is foreign: reported, left alone.
//!
//! Positions are compared apart, with the timing of the read taken into account
//! ([`super::positions`]): the journal's fills here are only those of the fill window.

use crate::alpaca::model::{Foreign, Order, Position, TradeActivity};
use crate::journal::store::{FillRecord, StoredIntent};
use rust_decimal::Decimal;
use std::collections::{HashMap, HashSet};

/// What the broker says.
#[derive(Debug, Clone, Default)]
pub struct BrokerView {
    /// For each journaled intent not known to be final: the broker's order, or `None` when the
    /// broker answered 404.
    pub by_client_id: HashMap<String, Option<Order>>,
    pub open_orders: Vec<Order>,
    pub positions: Vec<Position>,
    /// Fill activities since the journal's last fill (or all of today's).
    pub fills: Vec<TradeActivity>,
    /// Broker order id → client order id of the orders the caller knows beyond the journal's
    /// read (a POST answered since): their fills are theirs, not foreign.
    pub known_ids: HashMap<String, String>,
    /// Entries of those lists the daemon cannot model (a multi-leg options order, a position
    /// or activity of a shape it does not know): reported, never fatal.
    pub foreign: Vec<(Listed, Foreign)>,
}

/// Which broker list an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Listed {
    Order,
    Position,
    Activity,
}

impl Listed {
    pub fn as_str(self) -> &'static str {
        match self {
            Listed::Order => "order",
            Listed::Position => "position",
            Listed::Activity => "activity",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    IntentAtBroker {
        client_order_id: String,
        order: Box<Order>,
    },
    IntentNeverSent {
        client_order_id: String,
    },
    ForeignOrder {
        order: Box<Order>,
    },
    MissingFill {
        client_order_id: Option<String>,
        activity: Box<TradeActivity>,
    },
    /// An entry the daemon cannot model: reported, left alone.
    Unmodelled {
        list: Listed,
        entry: Box<Foreign>,
    },
}

/// Compares the journal with the broker. Findings come in a stable order: intents, foreign
/// orders, missing fills (oldest first), then entries the daemon cannot model.
pub fn reconcile(
    intents: &[StoredIntent],
    journal_fills: &[FillRecord],
    broker: &BrokerView,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for stored in intents
        .iter()
        .filter(|i| i.status.is_none_or(|s| s.is_open()))
    {
        let coid = &stored.intent.client_order_id;
        match broker.by_client_id.get(coid) {
            Some(Some(order)) => out.push(Finding::IntentAtBroker {
                client_order_id: coid.clone(),
                order: Box::new(order.clone()),
            }),
            Some(None) => out.push(Finding::IntentNeverSent {
                client_order_id: coid.clone(),
            }),
            None => {} // not looked up: nothing to say
        }
    }
    let ours: HashSet<&str> = intents
        .iter()
        .map(|i| i.intent.client_order_id.as_str())
        .collect();
    for order in &broker.open_orders {
        if !ours.contains(order.client_order_id.as_str()) {
            out.push(Finding::ForeignOrder {
                order: Box::new(order.clone()),
            });
        }
    }
    // Fills per broker order: what the journal holds, and the client order id behind it.
    let mut journaled_cum: HashMap<String, Decimal> = HashMap::new();
    for f in journal_fills {
        let c = journaled_cum.entry(f.broker_order_id.clone()).or_default();
        *c = c.saturating_add(f.qty);
    }
    let coid_of: HashMap<String, String> = intents
        .iter()
        .filter_map(|i| {
            i.broker_order_id
                .clone()
                .map(|b| (b, i.intent.client_order_id.clone()))
        })
        .chain(
            broker
                .by_client_id
                .values()
                .flatten()
                .map(|o| (o.id.to_string(), o.client_order_id.clone())),
        )
        .chain(broker.known_ids.clone())
        .collect();
    let mut missing: Vec<&TradeActivity> = broker
        .fills
        .iter()
        .filter(|a| {
            a.cum_qty
                > journaled_cum
                    .get(&a.order_id.to_string())
                    .copied()
                    .unwrap_or_default()
        })
        .collect();
    missing.sort_by_key(|a| (a.transaction_time, a.cum_qty));
    for a in missing {
        out.push(Finding::MissingFill {
            client_order_id: coid_of.get(&a.order_id.to_string()).cloned(),
            activity: Box::new(a.clone()),
        });
    }
    for (list, entry) in &broker.foreign {
        out.push(Finding::Unmodelled {
            list: *list,
            entry: Box::new(entry.clone()),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alpaca::model::*;
    use crate::journal::store::OrderIntent;
    use chrono::{TimeZone, Utc};
    use rust_decimal_macros::dec;
    use uuid::Uuid;

    fn order(coid: &str, id: u128, status: OrderStatus, filled: Decimal) -> Order {
        let t = Utc.with_ymd_and_hms(2026, 11, 20, 14, 30, 0).unwrap();
        Order {
            id: Uuid::from_u128(id),
            client_order_id: coid.into(),
            created_at: t,
            updated_at: t,
            submitted_at: t,
            filled_at: None,
            expired_at: None,
            expires_at: None,
            canceled_at: None,
            failed_at: None,
            replaced_at: None,
            replaced_by: None,
            replaces: None,
            asset_id: Uuid::nil(),
            symbol: "AAPL".into(),
            asset_class: AssetClass::UsEquity,
            notional: None,
            qty: Some(dec!(10)),
            filled_qty: filled,
            filled_avg_price: None,
            order_class: OrderClass::Simple,
            order_type: OrderType::Market,
            kind: OrderType::Market,
            side: OrderSide::Buy,
            position_intent: None,
            time_in_force: TimeInForce::Day,
            limit_price: None,
            stop_price: None,
            trail_price: None,
            trail_percent: None,
            hwm: None,
            status,
            extended_hours: false,
            legs: None,
            ratio_qty: None,
            subtag: None,
            source: None,
        }
    }

    fn intent(coid: &str, broker: Option<u128>, status: Option<OrderStatus>) -> StoredIntent {
        StoredIntent {
            intent: OrderIntent {
                client_order_id: coid.into(),
                symbol: "AAPL".into(),
                side: OrderSide::Buy,
                qty: dec!(10),
                request: serde_json::json!({}),
                correlation_id: "c".into(),
                created_at: Utc.with_ymd_and_hms(2026, 11, 20, 14, 29, 0).unwrap(),
            },
            broker_order_id: broker.map(|b| Uuid::from_u128(b).to_string()),
            status,
            filled_qty: Decimal::ZERO,
        }
    }

    fn activity(order: u128, qty: Decimal, cum: Decimal, sec: u32) -> TradeActivity {
        TradeActivity {
            id: format!("a{order}-{cum}"),
            activity_type: "FILL".into(),
            transaction_time: Utc.with_ymd_and_hms(2026, 11, 20, 14, 30, sec).unwrap(),
            fill_type: "partial_fill".into(),
            price: dec!(100),
            qty,
            side: "buy".into(),
            symbol: "AAPL".into(),
            leaves_qty: dec!(10) - cum,
            cum_qty: cum,
            order_id: Uuid::from_u128(order),
            order_status: None,
        }
    }

    fn fill(order: u128, qty: Decimal) -> FillRecord {
        FillRecord {
            execution_id: format!("e{order}-{qty}"),
            client_order_id: "x".into(),
            broker_order_id: Uuid::from_u128(order).to_string(),
            symbol: "AAPL".into(),
            side: OrderSide::Buy,
            qty,
            price: dec!(100),
            at: Utc.with_ymd_and_hms(2026, 11, 20, 14, 30, 1).unwrap(),
        }
    }

    fn position(qty: Decimal) -> Position {
        serde_json::from_value(serde_json::json!({
            "asset_id": Uuid::nil(), "symbol": "AAPL", "exchange": "NASDAQ", "avg_entry_price": "100",
            "qty": qty.to_string(), "side": "long", "cost_basis": "0"
        }))
        .unwrap()
    }

    #[test]
    fn killed_mid_submit_the_order_is_found_not_resent() {
        // The intent was journaled; the process died before recording the broker's answer.
        let intents = [intent("td-1-1-AAPL", None, None)];
        let at_broker = order("td-1-1-AAPL", 1, OrderStatus::Filled, dec!(10));
        let broker = BrokerView {
            by_client_id: HashMap::from([("td-1-1-AAPL".to_string(), Some(at_broker.clone()))]),
            positions: vec![position(dec!(10))],
            fills: vec![
                activity(1, dec!(4), dec!(4), 1),
                activity(1, dec!(6), dec!(10), 2),
            ],
            ..Default::default()
        };
        let findings = reconcile(&intents, &[], &broker);
        assert_eq!(
            findings[0],
            Finding::IntentAtBroker {
                client_order_id: "td-1-1-AAPL".into(),
                order: Box::new(at_broker)
            }
        );
        let missing: Vec<Decimal> = findings
            .iter()
            .filter_map(|f| match f {
                Finding::MissingFill {
                    client_order_id,
                    activity,
                } => {
                    assert_eq!(client_order_id.as_deref(), Some("td-1-1-AAPL"));
                    Some(activity.qty)
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            missing,
            vec![dec!(4), dec!(6)],
            "no fill is lost, oldest first"
        );
        assert_eq!(
            findings.len(),
            3,
            "the position agrees once the missing fills are in: {findings:?}"
        );
    }

    #[test]
    fn killed_before_the_request_left_the_intent_is_closed_as_not_sent() {
        let intents = [intent("td-1-2-AAPL", None, None)];
        let broker = BrokerView {
            by_client_id: HashMap::from([("td-1-2-AAPL".to_string(), None)]),
            ..Default::default()
        };
        assert_eq!(
            reconcile(&intents, &[], &broker),
            vec![Finding::IntentNeverSent {
                client_order_id: "td-1-2-AAPL".into()
            }]
        );
    }

    #[test]
    fn already_journaled_fills_are_not_missing_and_foreign_orders_are_reported() {
        let intents = [intent("td-1-3-AAPL", Some(3), Some(OrderStatus::Filled))];
        let journal = [fill(3, dec!(4)), fill(3, dec!(6))];
        let foreign = order("by-hand", 9, OrderStatus::New, dec!(0));
        let broker = BrokerView {
            open_orders: vec![foreign.clone()],
            positions: vec![position(dec!(10))],
            fills: vec![
                activity(3, dec!(4), dec!(4), 1),
                activity(3, dec!(6), dec!(10), 2),
            ],
            ..Default::default()
        };
        assert_eq!(
            reconcile(&intents, &journal, &broker),
            vec![Finding::ForeignOrder {
                order: Box::new(foreign)
            }]
        );
    }
}
