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
