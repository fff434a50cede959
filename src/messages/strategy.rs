//! Messages of the strategy topic.

use actix::prelude::*;

#[derive(Message)]
#[rtype(result = "StrategyStats")]
pub struct GetStrategyStats;

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct StrategyStats {
    pub bars: u64,
    /// Live trades it asked for and saw.
    pub trades: u64,
    pub signals: u64,
    pub proposed: u64,
    pub sent: u64,
    pub refused: u64,
}
