//! Identifiers every layer passes along.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What ties a signal to its intent, its order, the order's legs and stops, and their fills,
/// through logs, traces and the journal: `AAPL-1795185000` (the bar), `AAPL-t4711` (the trade),
/// `flatten-…`. Empty when nothing made it (an order found at the broker).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CorrelationId(String);

impl CorrelationId {
    pub fn new(id: impl Into<String>) -> Self {
        CorrelationId(id.into())
    }
    /// A trade's: `AAPL-t4711` (made for a tick strategy's signal, on the order path:
    /// written without the formatting machinery).
    pub fn of_trade(symbol: &str, trade_id: u64) -> Self {
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(trade_id);
        let mut id = String::with_capacity(symbol.len() + 2 + digits.len());
        id.push_str(symbol);
        id.push_str("-t");
        id.push_str(digits);
        CorrelationId(id)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for CorrelationId {
    fn from(s: String) -> Self {
        CorrelationId(s)
    }
}

impl From<&str> for CorrelationId {
    fn from(s: &str) -> Self {
        CorrelationId(s.to_string())
    }
}

impl PartialEq<str> for CorrelationId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for CorrelationId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_trade_s_id_reads_as_its_symbol_and_number(symbol in "[A-Z.]{0,8}", id in any::<u64>()) {
            let made = CorrelationId::of_trade(&symbol, id);
            prop_assert_eq!(made.as_str(), format!("{symbol}-t{id}"));
        }
    }
}
