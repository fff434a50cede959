//! The flatten procedure's decision: which positions the daemon closes with orders of its own
//! (through the risk checks, as closing orders) and which it leaves to the broker's own
//! liquidation of the symbol (an option, a crypto pair, a position it cannot read).

use crate::alpaca::model::{AssetClass, Listing, OrderSide, Position};
use crate::orders::book::InFlight;
use crate::risk::{Intent, Purpose};
use rust_decimal::Decimal;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlattenPlan {
    /// Closing orders of ours, one per equity position not already being closed: each for
    /// what our orders still in flight on the symbol do not close.
    pub close: Vec<Intent>,
    /// Positions our orders still in flight close whole (a closing order of an earlier
    /// attempt whose request is still on its way, say): the symbol and those orders' client
    /// order ids. Nothing more is sent for them: it would sell (or buy) twice once they land.
    pub covered: Vec<(String, Vec<String>)>,
    /// Symbols the broker liquidates itself.
    pub liquidate: Vec<String>,
    /// Held positions without a readable symbol: closed by hand (what the broker said of each).
    pub unreadable: Vec<String>,
}

/// What closes each position the broker shows. `in_flight`: our orders the broker had not
/// acknowledged when the flatten began (read before its positions: one that lands between the
/// two reads is then counted in both, and the close comes out short, never long; the
/// procedure's check of the broker finds what is left and closes it next attempt). Those on
/// the closing side count against the position; those that would add to it do not (they may
/// never land). `correlation`: the correlation id the closing orders share.
pub fn flatten_plan(
    positions: Listing<Position>,
    in_flight: &[InFlight],
    correlation: &str,
) -> FlattenPlan {
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
        let closing: Vec<&InFlight> = in_flight
            .iter()
            .filter(|o| o.symbol == p.symbol && o.side == side)
            .collect();
        let covered: Decimal = closing.iter().map(|o| o.qty).sum();
        let left = p.qty.abs() - covered;
        if left <= Decimal::ZERO {
            plan.covered.push((
                p.symbol,
                closing.iter().map(|o| o.client_order_id.clone()).collect(),
            ));
            continue;
        }
        let mut intent = Intent::market(&p.symbol, side, left, Purpose::Flatten);
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
