//! Entries placed in the account by someone else, in shapes the simulator does not model: a
//! multi-leg options order placed by hand, an options or crypto position, an activity of a new
//! kind. A test hands them over as raw JSON (`POST /_sim/foreign`, recorded payloads welcome);
//! the simulator lists them beside its own, cancels such orders on cancel-all, and closes such
//! positions when asked, as Alpaca would. It never matches or fills them.

use crate::alpaca::model::{
    AssetClass, CancelOrderStatus, Order, OrderClass, OrderSide, OrderStatus, OrderType,
    TimeInForce,
};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;

/// The raw entries, as given.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForeignEntries {
    #[serde(default)]
    pub orders: Vec<Value>,
    #[serde(default)]
    pub positions: Vec<Value>,
    #[serde(default)]
    pub activities: Vec<Value>,
    /// Positions closed so far (numbers the closing orders).
    #[serde(skip)]
    closed: u64,
}

fn status_of(entry: &Value) -> Option<OrderStatus> {
    entry
        .get("status")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
}

fn text<'a>(entry: &'a Value, key: &str) -> Option<&'a str> {
    entry.get(key).and_then(Value::as_str)
}

impl ForeignEntries {
    pub fn add(&mut self, more: ForeignEntries) {
        self.orders.extend(more.orders);
        self.positions.extend(more.positions);
        self.activities.extend(more.activities);
    }

    /// The orders a `status` filter of `GET /v2/orders` selects (`open` when absent).
    pub fn orders_with(&self, status: Option<&str>) -> Vec<Value> {
        let wants = |o: &Value| {
            let open = status_of(o).is_none_or(OrderStatus::is_open);
            match status.unwrap_or("open") {
                "all" => true,
                "closed" => !open,
                _ => open,
            }
        };
        self.orders.iter().filter(|o| wants(o)).cloned().collect()
    }

    /// Cancel-all: every open one becomes canceled; one 200 entry each.
    pub fn cancel_open_orders(&mut self) -> Vec<CancelOrderStatus> {
        let mut out = Vec::new();
        for o in &mut self.orders {
            if !status_of(o).is_none_or(OrderStatus::is_open) {
                continue;
            }
            if let Some(map) = o.as_object_mut() {
                map.insert("status".into(), Value::String("canceled".into()));
            }
            if let Some(id) = text(o, "id").and_then(|i| uuid::Uuid::parse_str(i).ok()) {
                out.push(CancelOrderStatus {
                    id,
                    status: 200,
                    body: None,
                });
            }
        }
        out
    }

    /// Closes the position in `symbol`, answering the closing order `make` builds from
    /// (symbol, quantity held); `None` when there is no such position.
    pub fn close_position(&mut self, symbol: &str, now: DateTime<Utc>) -> Option<Order> {
        let at = self
            .positions
            .iter()
            .position(|p| text(p, "symbol") == Some(symbol))?;
        let held = self.positions.remove(at);
        self.closed += 1;
        let qty = held
            .get("qty")
            .and_then(|q| match q {
                Value::String(s) => crate::alpaca::num::parse_decimal(s).ok(),
                _ => None,
            })
            .filter(|q: &Decimal| q.abs() <= crate::alpaca::num::MAX_WIRE)
            .unwrap_or_default();
        Some(closing_order(symbol, qty, now, self.closed))
    }

    pub fn position_symbols(&self) -> Vec<String> {
        self.positions
            .iter()
            .filter_map(|p| text(p, "symbol").map(str::to_string))
            .collect()
    }

    /// The activities an `activity_types` filter selects (all when absent).
    pub fn activities_with(&self, types: Option<&str>) -> Vec<Value> {
        self.activities
            .iter()
            .filter(|a| {
                types.is_none_or(|t| {
                    let kind = text(a, "activity_type").unwrap_or("");
                    t.split(',').any(|x| x.trim().eq_ignore_ascii_case(kind))
                })
            })
            .cloned()
            .collect()
    }
}

/// A list of the simulator's own entries with the foreign ones after them, as one JSON list.
pub fn merged<T: serde::Serialize>(own: &[T], foreign: Vec<Value>) -> Value {
    let mut list: Vec<Value> = own
        .iter()
        .filter_map(|o| serde_json::to_value(o).ok())
        .collect();
    list.extend(foreign);
    Value::Array(list)
}

/// The market order that closed a foreign position: filled at once (the simulator has no
/// market for the symbol; the position's own price is not needed by anyone who reads it).
fn closing_order(symbol: &str, held: Decimal, now: DateTime<Utc>, n: u64) -> Order {
    let id = uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("traderd-sim/foreign-close/{symbol}/{n}").as_bytes(),
    );
    Order {
        id,
        client_order_id: id.to_string(),
        created_at: now,
        updated_at: now,
        submitted_at: now,
        filled_at: Some(now),
        expired_at: None,
        expires_at: None,
        canceled_at: None,
        failed_at: None,
        replaced_at: None,
        replaced_by: None,
        replaces: None,
        asset_id: crate::sim::asset_id(symbol),
        symbol: symbol.to_string(),
        asset_class: AssetClass::Unknown,
        notional: None,
        qty: Some(held.abs()),
        filled_qty: held.abs(),
        filled_avg_price: None,
        order_class: OrderClass::Simple,
        order_type: OrderType::Market,
        kind: OrderType::Market,
        side: if held.is_sign_negative() {
            OrderSide::Buy
        } else {
            OrderSide::Sell
        },
        position_intent: None,
        time_in_force: TimeInForce::Day,
        limit_price: None,
        stop_price: None,
        trail_price: None,
        trail_percent: None,
        hwm: None,
        status: OrderStatus::Filled,
        extended_hours: false,
        legs: None,
        ratio_qty: None,
        subtag: None,
        source: None,
    }
}
