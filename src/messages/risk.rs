//! Messages of the risk topic.

use crate::domain::TradingMode;
use crate::risk::RiskLimits;
use actix::prelude::*;
use std::collections::BTreeMap;

/// Sets the trading mode the checks apply.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct SetMode(pub TradingMode);

/// Replaces the limits (reload).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct SetLimits(pub RiskLimits);

#[derive(Message)]
#[rtype(result = "RiskStats")]
pub struct GetRiskStats;

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RiskStats {
    pub mode: Option<TradingMode>,
    pub approved: u64,
    pub refused: BTreeMap<&'static str, u64>,
}
