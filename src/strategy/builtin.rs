//! The [`Strategy`] trait and the two built-ins, with sizing and broker-side protection.
//!
//! A strategy sees closed bars (warm-up bars too, flagged `historical`, to prime indicators)
//! and answers with a [`Signal`]. It never sends anything: the Strategy actor turns an
//! entry into an order plan ([`plan_entry`]) with the configured sizing and protection, and
//! that plan still has to pass the risk checks.

use super::indicators::{Bollinger, Macd, Rsi};
use crate::alpaca::model::OrderSide;
use crate::domain::{Interval, OhlcBar};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// What a strategy sees when a bar closes.
#[derive(Debug, Clone)]
pub struct BarInput<'a> {
    pub symbol: &'a str,
    pub interval: Interval,
    pub bar: &'a OhlcBar,
    /// From warm-up or backfill: update state, but the answer is not acted on.
    pub historical: bool,
    /// The signed position held now.
    pub position: Decimal,
    /// Whether the signal's reason will be shown (the daemon logs it and puts it on the
    /// signal's span; a backtest, a few million signals a year, does not): a strategy may leave
    /// it empty when not (see [`reason`]).
    pub explain: bool,
}

/// A signal's reason, made only when it will be shown ([`BarInput::explain`]).
pub fn reason(input: &BarInput<'_>, text: impl FnOnce() -> String) -> String {
    if input.explain { text() } else { String::new() }
}

/// A statistic in a signal's reason with `dp` decimals, as `{:.dp$}` shows it but without
/// its exact-decimal float formatting (a backtest makes a few million reasons a year): the
/// value times 10^dp rounded to an integer, printed as one. Beyond 10^15 or not finite, the
/// usual formatting.
pub struct Fixed(pub f64, pub usize);

impl std::fmt::Display for Fixed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Fixed(x, dp) = *self;
        let scale = 10f64.powi(dp.min(9) as i32);
        let scaled = (x * scale).round();
        if !scaled.is_finite() || scaled.abs() >= 1e15 || dp > 9 {
            return write!(f, "{x:.dp$}");
        }
        let m = scaled.abs() as u64;
        let unit = scale as u64;
        let sign = if x.is_sign_negative() { "-" } else { "" };
        if dp == 0 {
            return write!(f, "{sign}{m}");
        }
        write!(f, "{sign}{}.{:0dp$}", m / unit, m % unit)
    }
}

/// What a strategy wants.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    Hold,
    /// Open a position on this side.
    Enter {
        side: OrderSide,
        reason: String,
    },
    /// Close the position.
    Exit {
        reason: String,
    },
    /// Hold this signed quantity (whole shares): the difference is bought or sold, without
    /// protection (a rebalance). Reducing a position is a partial exit; crossing zero closes
    /// it first, and the rest waits for the next answer.
    Target {
        qty: Decimal,
        reason: String,
    },
    /// Hold this fraction of equity in the symbol (negative: short), in whole shares at the
    /// price acted on; otherwise as [`Signal::Target`].
    TargetWeight {
        weight: Decimal,
        reason: String,
    },
}

/// A trading strategy. Implement this to bring your own.
pub trait Strategy: Send {
    fn name(&self) -> &str;
    /// The bar interval it trades on.
    fn interval(&self) -> Interval;
    fn on_bar(&mut self, input: &BarInput<'_>) -> Signal;
    /// Which live trades it wants as they come (most strategies: none; they trade on bars).
    fn trade_interest(&self) -> TradeInterest {
        TradeInterest::None
    }
    /// One live trade it asked for with [`Strategy::trade_interest`].
    fn on_trade(&mut self, _input: &TradeInput<'_>) -> Signal {
        Signal::Hold
    }
    /// Starts `symbol` over: what was learned of it is in old prices (a split). Its history
    /// comes again next, flagged historical.
    fn reset(&mut self, _symbol: &str) {}
    /// The market at once, for strategies of several symbols (pairs, baskets): called after
    /// [`Strategy::on_bar`] at every close with the latest closed bar and the position of
    /// each symbol; each `(symbol, signal)` returned is acted on as `on_bar`'s answer is
    /// (priced at that symbol's latest close). Default: nothing.
    fn on_market(&mut self, _view: &MarketView<'_>) -> Vec<(String, Signal)> {
        Vec::new()
    }
}

/// What a strategy sees of the market at a close: every symbol's latest closed bar of its
/// interval and the signed position held.
#[derive(Debug, Clone)]
pub struct MarketView<'a> {
    /// The symbol whose bar just closed.
    pub closed: &'a str,
    pub bars: &'a MarketBars,
    pub positions: &'a std::collections::BTreeMap<String, Decimal>,
    /// From warm-up or backfill: update state, the answer is not acted on.
    pub historical: bool,
    /// The account's equity, when known: what weights are fractions of.
    pub equity: Option<Decimal>,
    /// The bar's close time (the market's clock at this close).
    pub now: chrono::DateTime<chrono::Utc>,
}

pub use super::market::MarketBars;

impl MarketView<'_> {
    pub fn position(&self, symbol: &str) -> Decimal {
        self.positions.get(symbol).copied().unwrap_or_default()
    }
}

/// Which live trades a strategy wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TradeInterest {
    None,
    All,
    /// Only trades carrying this condition code.
    WithCondition(String),
}

/// What a strategy sees of a live trade.
#[derive(Debug, Clone)]
pub struct TradeInput<'a> {
    pub trade: &'a crate::alpaca::stream::StreamTrade,
    /// The signed position held now.
    pub position: Decimal,
}

/// The latency probe, for `make bench-load` (not a trading strategy): on a live trade that
/// carries the condition `mark` it enters long, or exits if it holds the symbol already. The
/// simulator's flood sends such trades (`mark_every_ms`); the order side measures the time
/// from the trade's frame arriving to the order request leaving.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ProbeParams {
    /// The trade condition that marks a probe.
    pub mark: String,
}

impl Default for ProbeParams {
    fn default() -> Self {
        ProbeParams {
            mark: crate::domain::MARK.into(),
        }
    }
}

pub struct Probe {
    params: ProbeParams,
    interval: Interval,
}

impl Probe {
    pub fn new(params: ProbeParams, interval: Interval) -> Self {
        Probe { params, interval }
    }
}

impl Strategy for Probe {
    fn name(&self) -> &str {
        "probe"
    }
    fn interval(&self) -> Interval {
        self.interval
    }
    fn on_bar(&mut self, _: &BarInput<'_>) -> Signal {
        Signal::Hold
    }
    fn trade_interest(&self) -> TradeInterest {
        TradeInterest::WithCondition(self.params.mark.clone())
    }
    fn on_trade(&mut self, input: &TradeInput<'_>) -> Signal {
        if !input.trade.conditions.contains(&self.params.mark) {
            return Signal::Hold;
        }
        if input.position.is_zero() {
            Signal::Enter {
                side: OrderSide::Buy,
                reason: "probe".into(),
            }
        } else {
            Signal::Exit {
                reason: "probe".into(),
            }
        }
    }
}

/// Momentum: enter long while the MACD histogram is positive and RSI is in the entry range;
/// exit when the histogram turns negative or RSI passes the exit level.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MomentumParams {
    pub rsi_period: usize,
    pub macd_fast: usize,
    pub macd_slow: usize,
    pub macd_signal: usize,
    /// Enter long only while RSI is in [rsi_entry_min, rsi_entry_max].
    pub rsi_entry_min: f64,
    pub rsi_entry_max: f64,
    /// Exit when RSI rises above this.
    pub rsi_exit: f64,
}

impl Default for MomentumParams {
    fn default() -> Self {
        MomentumParams {
            rsi_period: 14,
            macd_fast: 12,
            macd_slow: 26,
            macd_signal: 9,
            rsi_entry_min: 50.0,
            rsi_entry_max: 70.0,
            rsi_exit: 75.0,
        }
    }
}

struct MomentumState {
    rsi: Rsi,
    macd: Macd,
    last_hist: Option<f64>,
}

pub struct Momentum {
    params: MomentumParams,
    interval: Interval,
    symbols: super::PerSymbol<MomentumState>,
}

impl Momentum {
    pub fn new(params: MomentumParams, interval: Interval) -> Self {
        Momentum {
            params,
            interval,
            symbols: super::PerSymbol::default(),
        }
    }
}

impl Strategy for Momentum {
    fn name(&self) -> &str {
        "momentum"
    }
    fn reset(&mut self, symbol: &str) {
        self.symbols.remove(symbol);
    }
    fn interval(&self) -> Interval {
        self.interval
    }
    fn on_bar(&mut self, input: &BarInput<'_>) -> Signal {
        let p = &self.params;
        let s = self
            .symbols
            .get_or_insert_with(input.symbol, || MomentumState {
                rsi: Rsi::new(p.rsi_period),
                macd: Macd::new(p.macd_fast, p.macd_slow, p.macd_signal),
                last_hist: None,
            });
        let close = super::indicators::to_f64(input.bar.close);
        let rsi = s.rsi.update(close);
        let (_, macd) = s.macd.update(close);
        let (Some(rsi), Some(macd)) = (rsi, macd) else {
            return Signal::Hold;
        };
        let prev = s.last_hist.replace(macd.histogram);
        let crossed_down = prev.is_some_and(|h| h >= 0.0) && macd.histogram < 0.0;
        if input.position > Decimal::ZERO {
            if crossed_down {
                return Signal::Exit {
                    reason: reason(input, || {
                        format!(
                            "MACD histogram turned negative ({})",
                            Fixed(macd.histogram, 4)
                        )
                    }),
                };
            }
            if rsi > p.rsi_exit {
                return Signal::Exit {
                    reason: reason(input, || {
                        format!("RSI {} above {}", Fixed(rsi, 1), p.rsi_exit)
                    }),
                };
            }
            return Signal::Hold;
        }
        if input.position.is_zero()
            && macd.histogram > 0.0
            && (p.rsi_entry_min..=p.rsi_entry_max).contains(&rsi)
        {
            return Signal::Enter {
                side: OrderSide::Buy,
                reason: reason(input, || {
                    format!(
                        "MACD histogram {} positive, RSI {}",
                        Fixed(macd.histogram, 4),
                        Fixed(rsi, 1)
                    )
                }),
            };
        }
        Signal::Hold
    }
}

/// Mean reversion: buy a close far below its Bollinger mean, sell when it comes back.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MeanReversionParams {
    pub period: usize,
    pub band_std: f64,
    /// Enter long when the z-score falls below −entry_z.
    pub entry_z: f64,
    /// Exit when the z-score rises above −exit_z (0: back at the mean).
    pub exit_z: f64,
}

impl Default for MeanReversionParams {
    fn default() -> Self {
        MeanReversionParams {
            period: 20,
            band_std: 2.0,
            entry_z: 2.0,
            exit_z: 0.0,
        }
    }
}

pub struct MeanReversion {
    params: MeanReversionParams,
    interval: Interval,
    symbols: super::PerSymbol<Bollinger>,
}

impl MeanReversion {
    pub fn new(params: MeanReversionParams, interval: Interval) -> Self {
        MeanReversion {
            params,
            interval,
            symbols: super::PerSymbol::default(),
        }
    }
}

impl Strategy for MeanReversion {
    fn name(&self) -> &str {
        "mean_reversion"
    }
    fn reset(&mut self, symbol: &str) {
        self.symbols.remove(symbol);
    }
    fn interval(&self) -> Interval {
        self.interval
    }
    fn on_bar(&mut self, input: &BarInput<'_>) -> Signal {
        let p = &self.params;
        let b = self
            .symbols
            .get_or_insert_with(input.symbol, || Bollinger::new(p.period, p.band_std));
        let Some(v) = b.update(super::indicators::to_f64(input.bar.close)) else {
            return Signal::Hold;
        };
        if input.position > Decimal::ZERO && v.z_score > -p.exit_z {
            return Signal::Exit {
                reason: reason(input, || {
                    format!(
                        "z-score {} back above {}",
                        Fixed(v.z_score, 2),
                        Fixed(-p.exit_z, 2)
                    )
                }),
            };
        }
        if input.position.is_zero() && v.z_score < -p.entry_z {
            return Signal::Enter {
                side: OrderSide::Buy,
                reason: reason(input, || {
                    format!(
                        "z-score {} below {}",
                        Fixed(v.z_score, 2),
                        Fixed(-p.entry_z, 2)
                    )
                }),
            };
        }
        Signal::Hold
    }
}

/// How big an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum Sizing {
    /// This many dollars per entry.
    FixedNotional { usd: Decimal },
    /// This percentage of equity per entry.
    PercentOfEquity { pct: Decimal },
    /// Lose at most this percentage of equity if the stop is hit.
    RiskPerTrade { pct: Decimal },
}

/// Broker-side protection attached to an entry.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Protection {
    /// A bracket: take-profit and stop-loss legs, in percent from the entry price.
    Bracket {
        take_profit_pct: Decimal,
        stop_loss_pct: Decimal,
    },
    /// A separate trailing stop after the entry fills.
    TrailingStop {
        trail_pct: Decimal,
    },
    None,
}

impl Protection {
    /// The distance to the stop, in percent, for risk-per-trade sizing.
    fn stop_pct(&self) -> Option<Decimal> {
        match self {
            Protection::Bracket { stop_loss_pct, .. } => Some(*stop_loss_pct),
            Protection::TrailingStop { trail_pct } => Some(*trail_pct),
            Protection::None => None,
        }
    }
}

/// An entry as the order side will submit it (still subject to risk).
#[derive(Debug, Clone, PartialEq)]
pub struct EntryPlan {
    pub side: OrderSide,
    pub qty: Decimal,
    pub take_profit: Option<Decimal>,
    pub stop_loss: Option<Decimal>,
    pub trail_pct: Option<Decimal>,
}

/// The notional an entry is sized to ([`entry_qty`] divides it by the price): `None` when
/// risk-per-trade has no stop to size from.
pub fn entry_notional(equity: Decimal, sizing: Sizing, protection: Protection) -> Option<Decimal> {
    Some(match sizing {
        Sizing::FixedNotional { usd } => usd,
        Sizing::PercentOfEquity { pct } => equity.checked_mul(pct)? / Decimal::ONE_HUNDRED,
        Sizing::RiskPerTrade { pct } => {
            let stop = protection.stop_pct().filter(|s| *s > Decimal::ZERO)?;
            // Risking pct of equity over a stop stop% away: position = risk / stop fraction.
            equity.checked_mul(pct)?.checked_div(stop)?
        }
    })
}

/// The whole shares of an entry at `price` ([`plan_entry`]'s size, without its protection):
/// `None` when it rounds to nothing or risk-per-trade has no stop to size from.
pub fn entry_qty(
    price: Decimal,
    equity: Decimal,
    sizing: Sizing,
    protection: Protection,
) -> Option<Decimal> {
    if price <= Decimal::ZERO {
        return None;
    }
    let notional = entry_notional(equity, sizing, protection)?;
    let qty = notional.checked_div(price)?.floor();
    (qty > Decimal::ZERO).then_some(qty)
}

/// Whether `notional` buys at least one whole share at `price`: `entry_qty(..).is_some()`
/// for that notional, the same answer, without the division unless the two are within
/// 10⁻²⁰ of each other (the quotient's 28 digits could then round up to one share).
pub fn buys_a_share(notional: Decimal, price: Decimal) -> bool {
    if price <= Decimal::ZERO || notional <= Decimal::ZERO {
        // No share, or a quotient of zero or below.
        return false;
    }
    if notional >= price {
        // A quotient of at least one, which rounding cannot bring below one.
        return true;
    }
    let gap = price - notional;
    match gap.checked_mul(Decimal::from_i128_with_scale(10_i128.pow(20), 0)) {
        // At most 1 − 10⁻²⁰: 28 digits round it to less than one.
        Some(scaled) if scaled >= price => false,
        _ => (notional / price).floor() > Decimal::ZERO,
    }
}

/// Sizes an entry at `price` and prices its protection. Whole shares (brackets need them);
/// `None` when the size rounds to nothing or risk-per-trade has no stop to size from.
pub fn plan_entry(
    side: OrderSide,
    price: Decimal,
    equity: Decimal,
    sizing: Sizing,
    protection: Protection,
) -> Option<EntryPlan> {
    let qty = entry_qty(price, equity, sizing, protection)?;
    let away = |pct: Decimal, up: bool| {
        let f = if up {
            Decimal::ONE + pct / Decimal::ONE_HUNDRED
        } else {
            Decimal::ONE - pct / Decimal::ONE_HUNDRED
        };
        (price * f).round_dp(2)
    };
    let long = side == OrderSide::Buy;
    let (take_profit, stop_loss, trail_pct) = match protection {
        Protection::Bracket {
            take_profit_pct,
            stop_loss_pct,
        } => (
            Some(away(take_profit_pct, long)),
            Some(away(stop_loss_pct, !long)),
            None,
        ),
        Protection::TrailingStop { trail_pct } => (None, None, Some(trail_pct)),
        Protection::None => (None, None, None),
    };
    Some(EntryPlan {
        side,
        qty,
        take_profit,
        stop_loss,
        trail_pct,
    })
}

#[cfg(test)]
mod tests;
