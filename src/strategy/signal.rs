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
                strategy: None,
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
        Signal::TargetWeight { weight, reason } => {
            if price <= Decimal::ZERO {
                return None;
            }
            let qty = equity?.saturating_mul(*weight).checked_div(price)?.trunc();
            intent_for(
                &Signal::Target {
                    qty,
                    reason: reason.clone(),
                },
                symbol,
                price,
                position,
                None,
                sizing,
                protection,
            )
        }
        Signal::Target { qty, .. } => {
            let (target, held) = (qty.trunc(), position);
            let delta = target.saturating_sub(held);
            if delta.is_zero() {
                return None;
            }
            let side = if delta > Decimal::ZERO {
                OrderSide::Buy
            } else {
                OrderSide::Sell
            };
            let toward_zero = !held.is_zero()
                && (target.is_zero() || target.is_sign_negative() == held.is_sign_negative())
                && target.abs() < held.abs();
            let crossing = !held.is_zero()
                && !target.is_zero()
                && target.is_sign_negative() != held.is_sign_negative();
            if toward_zero || crossing {
                // Less of the same side (or all of it, when the target is the other side).
                let qty = if crossing { held.abs() } else { delta.abs() };
                Some(Intent::market(symbol, side, qty, Purpose::Exit))
            } else {
                Some(Intent::market(
                    symbol,
                    side,
                    delta.abs(),
                    Purpose::Entry {
                        take_profit: None,
                        stop_loss: None,
                        trail_pct: None,
                    },
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn target(qty: Decimal, held: Decimal) -> Option<(OrderSide, Decimal, bool)> {
        let i = intent_for(
            &Signal::Target {
                qty,
                reason: String::new(),
            },
            "A",
            dec!(10),
            held,
            None,
            Sizing::FixedNotional { usd: dec!(1) },
            Protection::None,
        )?;
        Some((i.side, i.qty, matches!(i.purpose, Purpose::Exit)))
    }

    #[test]
    fn a_target_buys_or_sells_the_difference() {
        // From flat, more, less, none, the other side, already there, fractions.
        assert_eq!(
            target(dec!(10), dec!(0)),
            Some((OrderSide::Buy, dec!(10), false))
        );
        assert_eq!(
            target(dec!(15), dec!(10)),
            Some((OrderSide::Buy, dec!(5), false))
        );
        assert_eq!(
            target(dec!(4), dec!(10)),
            Some((OrderSide::Sell, dec!(6), true))
        );
        assert_eq!(
            target(dec!(0), dec!(10)),
            Some((OrderSide::Sell, dec!(10), true))
        );
        assert_eq!(
            target(dec!(-5), dec!(10)),
            Some((OrderSide::Sell, dec!(10), true))
        );
        assert_eq!(
            target(dec!(-5), dec!(-2)),
            Some((OrderSide::Sell, dec!(3), false))
        );
        assert_eq!(
            target(dec!(-1), dec!(-2)),
            Some((OrderSide::Buy, dec!(1), true))
        );
        assert_eq!(target(dec!(10), dec!(10)), None);
        assert_eq!(target(dec!(10.9), dec!(10)), None, "whole shares");
    }

    #[test]
    fn a_weight_is_a_target_of_equity_in_whole_shares() {
        let weight = |w: Decimal, held: Decimal, equity: Option<Decimal>| {
            let i = intent_for(
                &Signal::TargetWeight {
                    weight: w,
                    reason: String::new(),
                },
                "A",
                dec!(30),
                held,
                equity,
                Sizing::FixedNotional { usd: dec!(1) },
                Protection::None,
            )?;
            Some((i.side, i.qty))
        };
        // 25 % of 10,000 at 30: 83 shares.
        assert_eq!(
            weight(dec!(0.25), dec!(0), Some(dec!(10000))),
            Some((OrderSide::Buy, dec!(83)))
        );
        assert_eq!(
            weight(dec!(0.25), dec!(100), Some(dec!(10000))),
            Some((OrderSide::Sell, dec!(17)))
        );
        assert_eq!(
            weight(dec!(-0.1), dec!(0), Some(dec!(10000))),
            Some((OrderSide::Sell, dec!(33)))
        );
        assert_eq!(
            weight(dec!(0.25), dec!(0), None),
            None,
            "no equity known yet"
        );
    }
}
