//! The trading mode the whole system is in.

use serde::{Deserialize, Serialize};

/// What the daemon may do. See docs/architecture.md for the transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TradingMode {
    /// Strategies may open and close positions.
    Active,
    /// Only orders that shrink a position.
    ReduceOnly,
    /// Capital preservation in progress: only the flatten procedure's own orders.
    Preserving,
    /// Flat and blocked until an operator resumes.
    Preserved,
    /// The kill switch: nothing is sent at all.
    Halted,
}

impl TradingMode {
    /// The mode's name as journaled and shown (`reduce_only`, …): its serde name.
    pub fn name(self) -> &'static str {
        match self {
            TradingMode::Active => "active",
            TradingMode::ReduceOnly => "reduce_only",
            TradingMode::Preserving => "preserving",
            TradingMode::Preserved => "preserved",
            TradingMode::Halted => "halted",
        }
    }

    /// The mode as a metric's number: 0 active, 1 reduce_only, 2 preserving, 3 preserved,
    /// 4 halted (the higher, the further from trading).
    pub fn code(self) -> i64 {
        match self {
            TradingMode::Active => 0,
            TradingMode::ReduceOnly => 1,
            TradingMode::Preserving => 2,
            TradingMode::Preserved => 3,
            TradingMode::Halted => 4,
        }
    }
}
