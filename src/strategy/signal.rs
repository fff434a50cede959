//! From a strategy's signal to the order it asks for: the same decision for the daemon (the
//! StrategyRunner) and the backtest, so what is backtested is what trades.

use super::{Protection, Signal, Sizing, plan_entry};
use crate::alpaca::model::OrderSide;
use crate::risk::{Intent, Purpose};
use rust_decimal::Decimal;

/// The order a signal asks for, priced at `price` (the bar's close or the trade's price):
/// an entry sized from `equity` with its protection, or an exit of the whole `position`.
/// `None` for a hold, an exit with nothing held, an entry too small to be a share, or no
/// equity known yet.
pub fn intent_for(
    signal: &Signal,
    symbol: &str,
    price: Decimal,
    position: Decimal,
    equity: Option<Decimal>,
    sizing: Sizing,
    protection: Protection,
) -> Option<Intent> {
    match signal {
        Signal::Hold => None,
        Signal::Enter { side, .. } => {
            let plan = plan_entry(*side, price, equity?, sizing, protection)?;
            Some(Intent {
                symbol: symbol.to_string(),
                side: plan.side,
                qty: plan.qty,
                limit_price: None,
                correlation_id: Default::default(),
                purpose: Purpose::Entry {
                    take_profit: plan.take_profit,
                    stop_loss: plan.stop_loss,
                    trail_pct: plan.trail_pct,
                },
                trace: Default::default(),
            })
        }
        Signal::Exit { .. } if !position.is_zero() => {
            let side = if position > Decimal::ZERO {
                OrderSide::Sell
            } else {
                OrderSide::Buy
            };
            Some(Intent::market(symbol, side, position.abs(), Purpose::Exit))
        }
        Signal::Exit { .. } => None,
    }
}
