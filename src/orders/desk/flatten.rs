//! The flatten procedure's decision: which positions the daemon closes with orders of its own
//! (through the risk checks, as closing orders) and which it leaves to the broker's own
//! liquidation of the symbol (an option, a crypto pair, a position it cannot read).

use crate::alpaca::model::{AssetClass, Listing, OrderSide, Position};
use crate::risk::{Intent, Purpose};
use rust_decimal::Decimal;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlattenPlan {
    /// Closing orders of ours, one per equity position.
    pub close: Vec<Intent>,
    /// Symbols the broker liquidates itself.
    pub liquidate: Vec<String>,
    /// Held positions without a readable symbol: closed by hand (what the broker said of each).
    pub unreadable: Vec<String>,
}

/// What closes each position the broker shows. `correlation`: the correlation id the closing
/// orders share.
pub fn flatten_plan(positions: Listing<Position>, correlation: &str) -> FlattenPlan {
    let mut plan = FlattenPlan::default();
    for p in positions.items.into_iter().filter(|p| !p.qty.is_zero()) {
        if p.asset_class != AssetClass::UsEquity {
            plan.liquidate.push(p.symbol);
            continue;
        }
        let side = if p.qty > Decimal::ZERO {
            OrderSide::Sell
        } else {
            OrderSide::Buy
        };
        let mut intent = Intent::market(&p.symbol, side, p.qty.abs(), Purpose::Flatten);
        intent.correlation_id = correlation.into();
        plan.close.push(intent);
    }
    for f in positions.foreign.iter().filter(|f| f.is_held()) {
        match &f.symbol {
            Some(symbol) => plan.liquidate.push(symbol.clone()),
            None => plan.unreadable.push(f.describe()),
        }
    }
    plan
}
