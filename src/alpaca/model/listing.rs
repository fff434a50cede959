//! Lists decoded element by element.
//!
//! One entry the daemon cannot model (a multi-leg options order with `asset_id: ""` and
//! `side: ""`, a crypto position of a shape we do not know, an activity of a new kind) must
//! not make the whole list unreadable: reconciliation, flatten and the gap repair all read
//! these lists. Each element is decoded on its own; one that does not fit the daemon's type
//! becomes a [`Foreign`] entry holding what can be read (id, symbol, status, quantities) and
//! why it was not understood. The caller reports it and carries on; flatten still counts an
//! open foreign order as open and a foreign position as held.

use crate::alpaca::model::OrderStatus;
use crate::alpaca::num::{MAX_WIRE, decimal_from_wire_f64, parse_decimal};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// A list from the broker: the entries the daemon understood, and those it did not.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing<T> {
    pub items: Vec<T>,
    pub foreign: Vec<Foreign>,
    /// The `id` of the list's last entry, understood or not: the page token of a paged list.
    pub last_id: Option<String>,
}

impl<T> Default for Listing<T> {
    fn default() -> Self {
        Listing {
            items: Vec::new(),
            foreign: Vec::new(),
            last_id: None,
        }
    }
}

impl<T: DeserializeOwned> Listing<T> {
    /// Decodes a JSON list; `null` reads as empty. Fails only when the body is not a list.
    pub fn decode(body: &[u8]) -> Result<Self, serde_json::Error> {
        let raw: Option<Vec<&RawValue>> = serde_json::from_slice(body)?;
        #[derive(Deserialize)]
        struct Id {
            id: Option<Value>,
        }
        let raw = raw.unwrap_or_default();
        let mut out = Listing {
            last_id: raw.last().and_then(|e| {
                match serde_json::from_str::<Id>(e.get()).ok()?.id? {
                    Value::String(s) => Some(s),
                    other => Some(other.to_string()),
                }
            }),
            ..Listing::default()
        };
        for element in raw {
            match serde_json::from_str::<T>(element.get()) {
                Ok(item) => out.items.push(item),
                Err(e) => out.foreign.push(Foreign::read(element, e.to_string())),
            }
        }
        Ok(out)
    }
}

impl Listing<crate::alpaca::model::Order> {
    /// Orders open at the broker, those the daemon cannot model included (in a listing of
    /// open orders every understood one counts).
    pub fn open_count(&self) -> usize {
        self.items.len() + self.foreign.iter().filter(|f| f.is_open_order()).count()
    }
}

impl Listing<crate::alpaca::model::Position> {
    /// Positions not zero, those the daemon cannot model included.
    pub fn held_count(&self) -> usize {
        self.items.iter().filter(|p| !p.qty.is_zero()).count()
            + self.foreign.iter().filter(|f| f.is_held()).count()
    }
}

impl<T> Listing<T> {
    pub fn len(&self) -> usize {
        self.items.len() + self.foreign.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Keeps the understood entries that `f` maps to something, and every foreign one.
    pub fn filter_map<U>(self, f: impl FnMut(T) -> Option<U>) -> Listing<U> {
        Listing {
            items: self.items.into_iter().filter_map(f).collect(),
            foreign: self.foreign,
            last_id: self.last_id,
        }
    }
}

/// An entry of a broker list the daemon cannot model: what could be read of it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Foreign {
    pub id: Option<String>,
    pub client_order_id: Option<String>,
    pub symbol: Option<String>,
    pub status: Option<String>,
    pub side: Option<String>,
    pub asset_class: Option<String>,
    pub order_class: Option<String>,
    pub activity_type: Option<String>,
    pub qty: Option<Decimal>,
    pub filled_qty: Option<Decimal>,
    /// Why the daemon's type did not fit (serde's message, with the field).
    pub why: String,
}

impl Foreign {
    fn read(element: &RawValue, why: String) -> Foreign {
        let value: Value = serde_json::from_str(element.get()).unwrap_or(Value::Null);
        let text = |k: &str| {
            value
                .get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(|s| s.chars().take(64).collect::<String>())
        };
        let number = |k: &str| -> Option<Decimal> {
            let d = match value.get(k)? {
                Value::String(s) => parse_decimal(s).ok()?,
                Value::Number(n) => n.as_f64().and_then(decimal_from_wire_f64)?,
                _ => return None,
            };
            (d.abs() <= MAX_WIRE).then_some(d)
        };
        Foreign {
            id: text("id"),
            client_order_id: text("client_order_id"),
            symbol: text("symbol"),
            status: text("status"),
            side: text("side"),
            asset_class: text("asset_class").or_else(|| text("class")),
            order_class: text("order_class"),
            activity_type: text("activity_type"),
            qty: number("qty"),
            filled_qty: number("filled_qty"),
            why,
        }
    }

    /// As an order: open unless its status says it is final (no status or one we do not know
    /// counts as open: flatten must not call the account clear while it may not be).
    pub fn is_open_order(&self) -> bool {
        let status = self
            .status
            .as_deref()
            .and_then(|s| serde_json::from_value::<OrderStatus>(Value::String(s.into())).ok());
        status.is_none_or(OrderStatus::is_open)
    }

    /// As a position: held unless its quantity reads as zero (an unreadable quantity counts
    /// as held, for the same reason).
    pub fn is_held(&self) -> bool {
        self.qty.is_none_or(|q| !q.is_zero())
    }

    /// One line for a log: what it is and why it is foreign.
    pub fn describe(&self) -> String {
        format!(
            "id={} symbol={} status={} class={} qty={} ({})",
            self.id.as_deref().unwrap_or("?"),
            self.symbol.as_deref().unwrap_or("?"),
            self.status.as_deref().unwrap_or("?"),
            self.asset_class
                .as_deref()
                .or(self.order_class.as_deref())
                .unwrap_or("?"),
            self.qty.map_or("?".to_string(), |q| q.to_string()),
            self.why
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alpaca::model::{Order, Position};
    use rust_decimal_macros::dec;

    #[test]
    fn one_entry_that_does_not_fit_is_foreign_and_the_rest_decode() {
        let body =
            br#"[{"id":1},{"id":"x","symbol":"SPY","status":"new","qty":"3","side":""}, null, 7]"#;
        let l: Listing<Order> = Listing::decode(body).unwrap();
        assert!(l.items.is_empty());
        assert_eq!(l.foreign.len(), 4);
        assert_eq!(l.foreign[1].symbol.as_deref(), Some("SPY"));
        assert_eq!(l.foreign[1].qty, Some(dec!(3)));
        assert_eq!(l.foreign[1].side, None, "an empty side reads as absent");
        assert!(l.foreign[1].is_open_order());
        assert!(
            l.foreign[2].is_open_order(),
            "an unreadable entry counts as open"
        );
        assert!(l.foreign[0].why.contains("id"), "{}", l.foreign[0].why);
    }

    #[test]
    fn null_reads_as_empty_and_a_non_list_is_an_error() {
        assert!(Listing::<Position>::decode(b"null").unwrap().is_empty());
        assert!(Listing::<Position>::decode(b"{}").is_err());
    }

    #[test]
    fn absurd_quantities_are_not_read() {
        let body = br#"[{"symbol":"X","qty":"1e40","status":"filled"}]"#;
        let l: Listing<Position> = Listing::decode(body).unwrap();
        assert_eq!(l.foreign[0].qty, None);
        assert!(l.foreign[0].is_held());
        assert!(!l.foreign[0].is_open_order());
    }
}
