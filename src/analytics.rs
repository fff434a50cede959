//! Performance figures of an equity curve and its round-trip trades, as empyrical and
//! quantstats define them (docs/backtesting.md, "Definitions"). Equity and P&L stay
//! `Decimal`; ratios of them (returns, volatility, Sharpe) are `f64`, as statistics are.

use crate::alpaca::model::OrderSide;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use std::collections::BTreeMap;

/// Trading days a year: returns are annualised with it.
pub const PERIODS_PER_YEAR: f64 = 252.0;

/// One closed trade: in and out of a position.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RoundTrip {
    pub symbol: String,
    /// `long` or `short`.
    pub side: &'static str,
    pub qty: Decimal,
    pub entry_time: DateTime<Utc>,
    pub entry_price: Decimal,
    pub exit_time: DateTime<Utc>,
    pub exit_price: Decimal,
    /// After fees.
    pub pnl: Decimal,
    pub fees: Decimal,
    /// What closed it: `exit signal`, `take profit`, `stop loss`, `trailing stop`.
    pub reason: String,
}

/// Fills paired into round trips, per symbol: a position opened (by one fill or several) is a
/// trip once it is back to flat; a fill past flat opens the next one the other way. Used by the
/// backtest and by `traderd report` over the journal's fills.
#[derive(Debug, Default)]
pub struct RoundTrips {
    open: BTreeMap<String, Lot>,
}

#[derive(Debug)]
struct Lot {
    side: OrderSide,
    qty: Decimal,
    entry_time: DateTime<Utc>,
    entry_cost: Decimal,
    exit_qty: Decimal,
    exit_value: Decimal,
    fees: Decimal,
}

impl RoundTrips {
    /// Books one fill; the round trip it closed, if it closed one. `reason` says what closed
    /// it (`exit signal`, `take profit`, …).
    #[allow(clippy::too_many_arguments)]
    pub fn book(
        &mut self,
        symbol: &str,
        side: OrderSide,
        qty: Decimal,
        price: Decimal,
        fee: Decimal,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Option<RoundTrip> {
        if qty <= Decimal::ZERO {
            return None;
        }
        let lot = self.open.entry(symbol.to_string()).or_insert_with(|| Lot {
            side,
            qty: Decimal::ZERO,
            entry_time: at,
            entry_cost: Decimal::ZERO,
            exit_qty: Decimal::ZERO,
            exit_value: Decimal::ZERO,
            fees: Decimal::ZERO,
        });
        lot.fees += fee;
        if side == lot.side {
            lot.qty += qty;
            lot.entry_cost += qty * price;
            return None;
        }
        let closing = qty.min(lot.qty - lot.exit_qty);
        lot.exit_qty += closing;
        lot.exit_value += closing * price;
        if lot.exit_qty < lot.qty {
            return None;
        }
        let lot = self.open.remove(symbol)?;
        let (entry, exit) = (lot.entry_cost / lot.qty, lot.exit_value / lot.qty);
        let gross = match lot.side {
            OrderSide::Buy => lot.exit_value - lot.entry_cost,
            _ => lot.entry_cost - lot.exit_value,
        };
        // What went past flat opens the other way.
        let rest = qty - closing;
        if rest > Decimal::ZERO {
            self.book(symbol, side, rest, price, Decimal::ZERO, at, reason);
        }
        Some(RoundTrip {
            symbol: symbol.to_string(),
            side: if lot.side == OrderSide::Buy {
                "long"
            } else {
                "short"
            },
            qty: lot.qty,
            entry_time: lot.entry_time,
            entry_price: entry.round_dp(4),
            exit_time: at,
            exit_price: exit.round_dp(4),
            pnl: (gross - lot.fees).round_dp(4),
            fees: lot.fees,
            reason: reason.to_string(),
        })
    }

    /// Whether a position is open in any symbol.
    pub fn any_open(&self) -> bool {
        !self.open.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Summary {
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub days: usize,
    pub initial_equity: Decimal,
    pub final_equity: Decimal,
    pub total_return: f64,
    pub cagr: f64,
    pub annual_volatility: f64,
    pub sharpe: f64,
    pub sortino: f64,
    /// The deepest fall from a peak, a negative fraction (−0.12 is 12 %).
    pub max_drawdown: f64,
    /// Days from that peak to the recovery (or to the end, if it never recovered).
    pub max_drawdown_days: i64,
    pub calmar: f64,
    pub trades: usize,
    pub win_rate: f64,
    pub profit_factor: f64,
    pub average_win: Decimal,
    pub average_loss: Decimal,
    pub expectancy: Decimal,
    /// The fraction of bars with a position held.
    pub exposure: f64,
    /// Traded notional over average equity.
    pub turnover: f64,
    pub fees: Decimal,
}

fn f(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(0.0)
}

/// Simple daily returns of an equity series (one value per day, oldest first).
pub fn daily_returns(equity: &[Decimal]) -> Vec<f64> {
    equity
        .windows(2)
        .map(|w| {
            if w[0].is_zero() {
                0.0
            } else {
                f(w[1] / w[0]) - 1.0
            }
        })
        .collect()
}

fn mean(x: &[f64]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    x.iter().sum::<f64>() / x.len() as f64
}

/// Sample standard deviation (n − 1), as empyrical (`ddof=1`).
fn std(x: &[f64]) -> f64 {
    if x.len() < 2 {
        return 0.0;
    }
    let m = mean(x);
    (x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (x.len() - 1) as f64).sqrt()
}

/// Annualised volatility: `std(r) · √252`.
pub fn annual_volatility(r: &[f64]) -> f64 {
    std(r) * PERIODS_PER_YEAR.sqrt()
}

/// Sharpe ratio with a risk-free rate of 0: `mean(r) / std(r) · √252`.
pub fn sharpe(r: &[f64]) -> f64 {
    let s = std(r);
    if s == 0.0 {
        return 0.0;
    }
    mean(r) / s * PERIODS_PER_YEAR.sqrt()
}

/// Sortino ratio (required return 0): `mean(r) · 252 / (√mean(min(r, 0)²) · √252)`.
pub fn sortino(r: &[f64]) -> f64 {
    if r.is_empty() {
        return 0.0;
    }
    let downside = (r.iter().map(|v| v.min(0.0).powi(2)).sum::<f64>() / r.len() as f64).sqrt()
        * PERIODS_PER_YEAR.sqrt();
    if downside == 0.0 {
        return 0.0;
    }
    mean(r) * PERIODS_PER_YEAR / downside
}

/// CAGR over `periods` daily returns: `(end / start)^(252 / periods) − 1`.
pub fn cagr(total_return: f64, periods: usize) -> f64 {
    if periods == 0 {
        return 0.0;
    }
    (1.0 + total_return).powf(PERIODS_PER_YEAR / periods as f64) - 1.0
}

/// The deepest drawdown (negative fraction) and its length in days, peak to recovery.
pub fn max_drawdown(days: &[(NaiveDate, Decimal)]) -> (f64, i64) {
    let mut peak: Option<(NaiveDate, Decimal)> = None;
    let mut worst = 0.0;
    let mut worst_peak: Option<NaiveDate> = None;
    let mut length = 0;
    for &(d, e) in days {
        match peak {
            Some((_, p)) if e < p => {
                let dd = f(e / p) - 1.0;
                if dd < worst {
                    worst = dd;
                    worst_peak = peak.map(|(pd, _)| pd);
                }
            }
            _ => {
                if let (Some(wp), Some((pd, _))) = (worst_peak, peak) {
                    if pd == wp {
                        length = length.max((d - wp).num_days());
                    }
                }
                peak = Some((d, e));
            }
        }
    }
    if let (Some(wp), Some((pd, _)), Some(&(last, _))) = (worst_peak, peak, days.last()) {
        if pd == wp {
            // Never recovered: to the end.
            length = length.max((last - wp).num_days());
        }
    }
    (worst, length)
}

/// Everything at once. `days`: equity at each day's close; `exposure`: the fraction of bars
/// with a position; `traded`: the notional of every fill.
pub fn summarize(
    days: &[(NaiveDate, Decimal)],
    trades: &[RoundTrip],
    exposure: f64,
    traded: Decimal,
    fees: Decimal,
) -> Option<Summary> {
    let (&(start, initial), &(end, last)) = (days.first()?, days.last()?);
    let equity: Vec<Decimal> = days.iter().map(|(_, e)| *e).collect();
    let r = daily_returns(&equity);
    let total_return = if initial.is_zero() {
        0.0
    } else {
        f(last / initial) - 1.0
    };
    let cagr = cagr(total_return, r.len());
    let (max_dd, max_dd_days) = max_drawdown(days);
    let wins: Vec<Decimal> = trades
        .iter()
        .map(|t| t.pnl)
        .filter(|p| *p > Decimal::ZERO)
        .collect();
    let losses: Vec<Decimal> = trades
        .iter()
        .map(|t| t.pnl)
        .filter(|p| *p < Decimal::ZERO)
        .collect();
    let sum = |v: &[Decimal]| v.iter().copied().sum::<Decimal>();
    let avg = |v: &[Decimal]| {
        if v.is_empty() {
            Decimal::ZERO
        } else {
            (sum(v) / Decimal::from(v.len())).round_dp(2)
        }
    };
    let average_equity = sum(&equity) / Decimal::from(equity.len().max(1));
    Some(Summary {
        start,
        end,
        days: days.len(),
        initial_equity: initial,
        final_equity: last,
        total_return,
        cagr,
        annual_volatility: annual_volatility(&r),
        sharpe: sharpe(&r),
        sortino: sortino(&r),
        max_drawdown: max_dd,
        max_drawdown_days: max_dd_days,
        calmar: if max_dd < 0.0 { cagr / -max_dd } else { 0.0 },
        trades: trades.len(),
        win_rate: if trades.is_empty() {
            0.0
        } else {
            wins.len() as f64 / trades.len() as f64
        },
        profit_factor: if losses.is_empty() {
            0.0
        } else {
            f(sum(&wins)) / -f(sum(&losses))
        },
        average_win: avg(&wins),
        average_loss: avg(&losses),
        expectancy: avg(&trades.iter().map(|t| t.pnl).collect::<Vec<_>>()),
        exposure,
        turnover: if average_equity.is_zero() {
            0.0
        } else {
            f(traded / average_equity)
        },
        fees,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * a.abs().max(1.0)
    }

    #[test]
    fn the_ratios_match_an_independent_computation() {
        let equity = [
            dec!(100),
            dec!(102),
            dec!(101),
            dec!(104),
            dec!(103),
            dec!(105),
        ];
        let r = daily_returns(&equity);
        // By hand: the returns, their mean and sample variance through sums of squares.
        let by_hand = [0.02, -1.0 / 102.0, 3.0 / 101.0, -1.0 / 104.0, 2.0 / 103.0];
        for (a, b) in r.iter().zip(by_hand) {
            assert!(close(*a, b), "{a} {b}");
        }
        let n = by_hand.len() as f64;
        let s1: f64 = by_hand.iter().sum();
        let s2: f64 = by_hand.iter().map(|x| x * x).sum();
        let var = (s2 - s1 * s1 / n) / (n - 1.0);
        assert!(close(annual_volatility(&r), (var * 252.0).sqrt()));
        assert!(close(sharpe(&r), (s1 / n) / var.sqrt() * 252f64.sqrt()));
        let down = by_hand
            .iter()
            .filter(|x| **x < 0.0)
            .map(|x| x * x)
            .sum::<f64>()
            / n;
        assert!(close(
            sortino(&r),
            (s1 / n) * 252.0 / (down.sqrt() * 252f64.sqrt())
        ));
        assert!(close(cagr(0.05, 5), 1.05f64.powf(252.0 / 5.0) - 1.0));
    }

    #[test]
    fn the_drawdown_is_the_deepest_fall_and_lasts_until_the_recovery() {
        let d = |n: u32| NaiveDate::from_ymd_opt(2025, 1, n).unwrap();
        // Peak 110 on the 2nd, trough 88 on the 4th (−20 %), recovered on the 7th.
        let days = [
            (d(1), dec!(100)),
            (d(2), dec!(110)),
            (d(3), dec!(99)),
            (d(4), dec!(88)),
            (d(6), dec!(100)),
            (d(7), dec!(111)),
            (d(8), dec!(105)),
        ];
        let (dd, len) = max_drawdown(&days);
        assert!(close(dd, -0.2), "{dd}");
        assert_eq!(len, 5);
        // Never recovered: to the end.
        let (dd, len) = max_drawdown(&days[..5]);
        assert!(close(dd, -0.2));
        assert_eq!(len, 4);
    }

    #[test]
    fn trade_figures() {
        let t = |pnl: Decimal| RoundTrip {
            symbol: "A".into(),
            side: "long",
            qty: dec!(1),
            entry_time: DateTime::UNIX_EPOCH,
            entry_price: dec!(1),
            exit_time: DateTime::UNIX_EPOCH,
            exit_price: dec!(1),
            pnl,
            fees: Decimal::ZERO,
            reason: String::new(),
        };
        let trades = [t(dec!(30)), t(dec!(-10)), t(dec!(10)), t(dec!(-20))];
        let d = |n: u32| NaiveDate::from_ymd_opt(2025, 1, n).unwrap();
        let s = summarize(
            &[(d(1), dec!(1000)), (d(2), dec!(1010))],
            &trades,
            0.5,
            dec!(2020),
            dec!(1),
        )
        .unwrap();
        assert_eq!(s.trades, 4);
        assert!(close(s.win_rate, 0.5));
        assert!(close(s.profit_factor, 40.0 / 30.0));
        assert_eq!(
            (s.average_win, s.average_loss, s.expectancy),
            (dec!(20), dec!(-15), dec!(2.5))
        );
        assert!(close(s.total_return, 0.01));
        assert!(close(s.turnover, 2020.0 / 1005.0));
    }

    #[test]
    fn fills_pair_into_round_trips_across_partial_exits_and_a_flip() {
        let mut trips = RoundTrips::default();
        let t = |m: i64| DateTime::UNIX_EPOCH + chrono::Duration::minutes(m);
        let buy = OrderSide::Buy;
        let sell = OrderSide::Sell;
        // Two buys, then out in two sells: one long trip at the average prices.
        assert!(
            trips
                .book("A", buy, dec!(10), dec!(100), dec!(0.5), t(0), "entry")
                .is_none()
        );
        assert!(
            trips
                .book("A", buy, dec!(10), dec!(110), dec!(0.5), t(1), "entry")
                .is_none()
        );
        assert!(
            trips
                .book("A", sell, dec!(5), dec!(120), dec!(0), t(2), "exit signal")
                .is_none()
        );
        let long = trips
            .book("A", sell, dec!(15), dec!(108), dec!(1), t(3), "stop loss")
            .unwrap();
        assert_eq!((long.side, long.qty), ("long", dec!(20)));
        assert_eq!((long.entry_price, long.exit_price), (dec!(105), dec!(111)));
        // (5×120 + 15×108) − (10×100 + 10×110) = 120, less 2 in fees.
        assert_eq!(
            (long.pnl, long.fees, long.entry_time, long.exit_time),
            (dec!(118), dec!(2), t(0), t(3))
        );
        assert!(!trips.any_open());
        // A sell past flat opens a short with the rest.
        trips.book("B", buy, dec!(3), dec!(10), dec!(0), t(4), "entry");
        let flip = trips
            .book("B", sell, dec!(5), dec!(12), dec!(0), t(5), "exit signal")
            .unwrap();
        assert_eq!((flip.qty, flip.pnl), (dec!(3), dec!(6)));
        assert!(trips.any_open());
        let short = trips
            .book("B", buy, dec!(2), dec!(11), dec!(0), t(6), "take profit")
            .unwrap();
        assert_eq!(
            (short.side, short.qty, short.pnl, short.reason.as_str()),
            ("short", dec!(2), dec!(2), "take profit")
        );
        // Nothing for a zero quantity.
        assert!(
            trips
                .book("C", buy, dec!(0), dec!(1), dec!(0), t(7), "entry")
                .is_none()
        );
        assert!(!trips.any_open());
    }
}
