//! Pre-trade risk checks: a pure function from an order intent and the state it meets to
//! [`Approved`] or a [`Refusal`] with a reason code. Only this module can build an
//! [`Approved`], and the order side accepts nothing else, so no order reaches the broker
//! unchecked.
//!
//! The checks, in order (the first that fails is the reason):
//! trading mode → quantity sanity → market hours → price known and inside the band around the
//! last trade (fat finger) → order rate → open orders → for orders that add exposure: daily
//! loss limit, per-symbol quantity and notional, number of positions, gross exposure, buying
//! power. Orders that only reduce a position pass the exposure checks: cutting risk is always
//! allowed while the mode allows any order at all.

use crate::alpaca::model::OrderSide;
pub use crate::domain::TradingMode;
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

mod gate;
mod tally;
pub use gate::{AccountRead, GateCounts, ProposeError, RiskGate, SharedGate};
pub use tally::Tally;

/// The risk state's maps by symbol (hashbrown's default hasher: a backtest reads them at every
/// signal).
pub type SymbolMap<V> = hashbrown::HashMap<String, V>;

/// An order the strategy wants, before risk.
#[derive(Debug, Clone, PartialEq)]
pub struct Intent {
    pub symbol: String,
    pub side: OrderSide,
    pub qty: Decimal,
    /// `None` for a market order.
    pub limit_price: Option<Decimal>,
    pub correlation_id: crate::domain::CorrelationId,
    pub purpose: Purpose,
    /// The span of the stage that made or last checked it (see [`crate::trace::TraceContext`]).
    pub trace: crate::trace::TraceContext,
    /// The strategy that proposed it, when several run (`[[strategies]]`): it goes into the
    /// client order id.
    pub strategy: Option<String>,
}

/// What an order is for. Strategies make entries and exits; the order side makes protective
/// stops (after an entry fills) and the flatten procedure's closing orders.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Purpose {
    /// Opens or adds to a position, with broker-side protection attached as a bracket.
    Entry {
        take_profit: Option<Decimal>,
        stop_loss: Option<Decimal>,
        /// A trailing stop placed once the entry has filled.
        trail_pct: Option<Decimal>,
    },
    /// Closes a position (a strategy's exit signal).
    #[default]
    Exit,
    /// A trailing stop guarding a filled entry.
    Protect { trail_pct: Decimal },
    /// Closes a position for cancel-all/flatten or capital preservation.
    Flatten,
}

impl Intent {
    /// A market order for a strategy's exit or an entry without protection.
    pub fn market(symbol: &str, side: OrderSide, qty: Decimal, purpose: Purpose) -> Intent {
        Intent {
            symbol: symbol.to_string(),
            side,
            qty,
            limit_price: None,
            correlation_id: Default::default(),
            purpose,
            trace: Default::default(),
            strategy: None,
        }
    }
}

/// Limits from `[risk]` in the config.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskLimits {
    pub max_qty_per_symbol: Decimal,
    pub max_notional_per_symbol_usd: Decimal,
    pub max_gross_exposure_usd: Decimal,
    pub max_positions: usize,
    pub max_open_orders: usize,
    pub max_orders_per_minute: usize,
    /// How far a limit price (or, for a market order, nothing) may be from the last trade, in percent.
    pub price_band_pct: Decimal,
    pub daily_loss_limit_usd: Decimal,
    pub require_market_open: bool,
}

impl Default for RiskLimits {
    fn default() -> Self {
        RiskLimits {
            max_qty_per_symbol: Decimal::from(1_000),
            max_notional_per_symbol_usd: Decimal::from(20_000),
            max_gross_exposure_usd: Decimal::from(50_000),
            max_positions: 5,
            max_open_orders: 10,
            max_orders_per_minute: 30,
            price_band_pct: Decimal::from(5),
            daily_loss_limit_usd: Decimal::from(2_000),
            require_market_open: true,
        }
    }
}

/// What the checks see of the world.
#[derive(Debug, Clone, Default)]
pub struct RiskState {
    /// Signed position quantity per symbol.
    pub positions: SymbolMap<Decimal>,
    /// Last trade price per symbol.
    pub last_trade: SymbolMap<Decimal>,
    /// Open orders, and per symbol the signed quantity they would still add.
    pub open_orders: usize,
    pub pending_qty: SymbolMap<Decimal>,
    pub buying_power: Decimal,
    pub equity: Decimal,
    pub start_of_day_equity: Decimal,
    pub market_open: bool,
    /// Event times of recent submissions (for the rate limit).
    pub recent_orders: VecDeque<DateTime<Utc>>,
    /// Symbols under a trading halt (the market-data `statuses` channel): no new entries.
    pub halted: std::collections::HashSet<String>,
}

/// Why an intent was refused. Codes are stable: they are counted and exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalCode {
    ModeHalted,
    ModePreserving,
    ModeReduceOnly,
    InvalidQty,
    MarketClosed,
    NoPrice,
    PriceBand,
    OrderRate,
    MaxOpenOrders,
    DailyLoss,
    SymbolQty,
    SymbolNotional,
    MaxPositions,
    GrossExposure,
    BuyingPower,
    /// A quantity, price or sum too large to compute with: refused, never overflowed.
    OutOfRange,
    /// The symbol is under a trading halt: orders that do not only reduce wait for the
    /// resumption.
    SymbolHalted,
}

impl RefusalCode {
    /// Every code, for counters that start at 0 (a metric a rule or dashboard uses exists
    /// before the first refusal).
    pub const ALL: [RefusalCode; 17] = [
        RefusalCode::ModeHalted,
        RefusalCode::ModePreserving,
        RefusalCode::ModeReduceOnly,
        RefusalCode::InvalidQty,
        RefusalCode::MarketClosed,
        RefusalCode::NoPrice,
        RefusalCode::PriceBand,
        RefusalCode::OrderRate,
        RefusalCode::MaxOpenOrders,
        RefusalCode::DailyLoss,
        RefusalCode::SymbolQty,
        RefusalCode::SymbolNotional,
        RefusalCode::MaxPositions,
        RefusalCode::GrossExposure,
        RefusalCode::BuyingPower,
        RefusalCode::OutOfRange,
        RefusalCode::SymbolHalted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::ModeHalted => "mode_halted",
            RefusalCode::SymbolHalted => "symbol_halted",
            RefusalCode::ModePreserving => "mode_preserving",
            RefusalCode::ModeReduceOnly => "mode_reduce_only",
            RefusalCode::InvalidQty => "invalid_qty",
            RefusalCode::MarketClosed => "market_closed",
            RefusalCode::NoPrice => "no_price",
            RefusalCode::PriceBand => "price_band",
            RefusalCode::OrderRate => "order_rate",
            RefusalCode::MaxOpenOrders => "max_open_orders",
            RefusalCode::DailyLoss => "daily_loss",
            RefusalCode::SymbolQty => "symbol_qty",
            RefusalCode::SymbolNotional => "symbol_notional",
            RefusalCode::MaxPositions => "max_positions",
            RefusalCode::GrossExposure => "gross_exposure",
            RefusalCode::BuyingPower => "buying_power",
            RefusalCode::OutOfRange => "out_of_range",
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("risk refused {symbol} {side:?} {qty}: {} ({detail})", code.as_str())]
pub struct Refusal {
    pub code: RefusalCode,
    pub symbol: String,
    pub side: OrderSide,
    pub qty: Decimal,
    pub detail: String,
}

/// An intent that passed every check. Only [`check`] can make one.
#[derive(Debug, Clone, PartialEq)]
pub struct Approved {
    intent: Intent,
    /// The price the checks used (limit, else last trade).
    pub reference_price: Decimal,
    pub reduces_only: bool,
}

impl Approved {
    pub fn intent(&self) -> &Intent {
        &self.intent
    }
    pub fn into_intent(self) -> Intent {
        self.intent
    }
}

#[cfg(test)]
impl Approved {
    /// For the order side's own tests: an intent taken as approved.
    pub(crate) fn assumed(intent: Intent) -> Approved {
        Approved {
            intent,
            reference_price: Decimal::ONE,
            reduces_only: false,
        }
    }
}

/// Whether an order only shrinks the existing position (never through zero).
pub fn reduces_only(position: Decimal, side: OrderSide, qty: Decimal) -> bool {
    match side {
        OrderSide::Sell => position > Decimal::ZERO && qty <= position,
        OrderSide::Buy => position < Decimal::ZERO && qty <= -position,
    }
}

/// Checks an intent at event time `now`.
pub fn check(
    intent: Intent,
    state: &RiskState,
    limits: &RiskLimits,
    mode: TradingMode,
    now: DateTime<Utc>,
) -> Result<Approved, Refusal> {
    check_with(intent, state, None, limits, mode, now, refusal)
}

/// [`check`] with what is held and sent already counted ([`Tally`], kept current by its
/// holder as the state changes): no walk over every position or recent order.
pub fn check_tallied(
    intent: Intent,
    state: &RiskState,
    tally: &Tally,
    limits: &RiskLimits,
    mode: TradingMode,
    now: DateTime<Utc>,
) -> Result<Approved, Refusal> {
    check_with(intent, state, Some(tally), limits, mode, now, refusal)
}

fn refusal(intent: &Intent, code: RefusalCode, detail: &dyn Fn() -> String) -> Refusal {
    Refusal {
        code,
        symbol: intent.symbol.clone(),
        side: intent.side,
        qty: intent.qty,
        detail: detail(),
    }
}

/// Orders sent in the minute before `now`.
fn recent_orders(state: &RiskState, now: DateTime<Utc>) -> usize {
    orders_within_a_minute(&state.recent_orders, now)
}

/// Of the submissions at `times`, those in the minute before `now` (the order rate check's
/// count).
pub fn orders_within_a_minute(times: &VecDeque<DateTime<Utc>>, now: DateTime<Utc>) -> usize {
    let window_start = now - Duration::minutes(1);
    times.iter().filter(|t| **t > window_start).count()
}

/// The checks of [`check`] that look at the account alone, never at the order: the order
/// rate, then the open orders. For an order that is not reducing, with a price inside the
/// band, in a mode that trades, they are what decides next, so a caller that knows as much
/// (the backtest, with millions of entries refused a year at `max_open_orders`) may ask them
/// first and size nothing.
pub fn pace(state: &RiskState, limits: &RiskLimits, now: DateTime<Utc>) -> Result<(), RefusalCode> {
    pace_of(recent_orders(state, now), state.open_orders, limits)
}

/// [`pace`] from its two counts: the orders sent in the last minute
/// ([`orders_within_a_minute`]) and the open orders.
pub fn pace_of(recent: usize, open_orders: usize, limits: &RiskLimits) -> Result<(), RefusalCode> {
    if recent >= limits.max_orders_per_minute {
        return Err(RefusalCode::OrderRate);
    }
    if open_orders >= limits.max_open_orders {
        return Err(RefusalCode::MaxOpenOrders);
    }
    Ok(())
}

/// [`check`], answering a refusal with its code alone: nothing is formatted (a backtest has
/// a few million intents refused a year).
pub fn check_code(
    intent: Intent,
    state: &RiskState,
    limits: &RiskLimits,
    mode: TradingMode,
    now: DateTime<Utc>,
) -> Result<Approved, RefusalCode> {
    check_with(intent, state, None, limits, mode, now, |_, code, _| code)
}

/// The checks, in order; a refusal is what `refusal` makes of the intent, the code and the
/// detail (a closure: called only by those who show it). `tally`: what is held and sent,
/// counted already (`None`: counted here from `state`).
fn check_with<R>(
    intent: Intent,
    state: &RiskState,
    tally: Option<&Tally>,
    limits: &RiskLimits,
    mode: TradingMode,
    now: DateTime<Utc>,
    refusal: impl Fn(&Intent, RefusalCode, &dyn Fn() -> String) -> R,
) -> Result<Approved, R> {
    let refuse = |code: RefusalCode, detail: &dyn Fn() -> String| refusal(&intent, code, detail);
    let position = state
        .positions
        .get(&intent.symbol)
        .copied()
        .unwrap_or_default();
    let reduces = reduces_only(position, intent.side, intent.qty);
    if mode == TradingMode::Halted {
        return Err(refuse(RefusalCode::ModeHalted, &|| {
            "halted: nothing is sent".into()
        }));
    }
    // Protective stops would only sit in the flatten procedure's way: while preserving or
    // preserved, positions are closed, not guarded.
    if matches!(intent.purpose, Purpose::Protect { .. })
        && matches!(mode, TradingMode::Preserving | TradingMode::Preserved)
    {
        return Err(refuse(RefusalCode::ModePreserving, &|| {
            format!("{mode:?}: positions are being closed, not protected")
        }));
    }
    // Closing orders of the flatten procedure and protective stops only ever cut risk: in any
    // other mode but halted they pass on the quantity checks alone, so no price band, rate or
    // market-hours rule can keep a position open.
    if matches!(intent.purpose, Purpose::Flatten | Purpose::Protect { .. }) {
        if intent.qty <= Decimal::ZERO || !reduces {
            return Err(refuse(RefusalCode::InvalidQty, &|| {
                format!("a closing order must only reduce the position ({position})")
            }));
        }
        return Ok(Approved {
            reference_price: state
                .last_trade
                .get(&intent.symbol)
                .copied()
                .unwrap_or_default(),
            reduces_only: true,
            intent,
        });
    }
    match mode {
        TradingMode::Halted => {}
        TradingMode::Preserving | TradingMode::Preserved => {
            return Err(refuse(RefusalCode::ModePreserving, &|| {
                format!("{mode:?}: only the flatten procedure may trade")
            }));
        }
        TradingMode::ReduceOnly if !reduces => {
            return Err(refuse(RefusalCode::ModeReduceOnly, &|| {
                format!("reduce-only: position {position}, this order would not only reduce it")
            }));
        }
        _ => {}
    }
    if intent.qty <= Decimal::ZERO {
        return Err(refuse(RefusalCode::InvalidQty, &|| {
            "quantity must be above 0".into()
        }));
    }
    if state.halted.contains(&intent.symbol) && !reduces {
        return Err(refuse(RefusalCode::SymbolHalted, &|| {
            "the symbol is under a trading halt: no new entries until it resumes".into()
        }));
    }
    if limits.require_market_open && !state.market_open {
        return Err(refuse(RefusalCode::MarketClosed, &|| {
            "the broker's clock says the market is closed".into()
        }));
    }
    let Some(last) = state
        .last_trade
        .get(&intent.symbol)
        .copied()
        .filter(|p| *p > Decimal::ZERO)
    else {
        return Err(refuse(RefusalCode::NoPrice, &|| {
            "no last trade to check the price against".into()
        }));
    };
    let price = intent.limit_price.unwrap_or(last);
    // Every product and sum below is checked: absurd values are refused, never overflowed.
    let out_of_range = || {
        refuse(RefusalCode::OutOfRange, &|| {
            format!(
                "quantity {} or price {price} is too large to check",
                intent.qty
            )
        })
    };
    let band = last
        .checked_mul(limits.price_band_pct)
        .map(|b| b / Decimal::ONE_HUNDRED)
        .ok_or_else(out_of_range)?;
    if price.checked_sub(last).ok_or_else(out_of_range)?.abs() > band {
        return Err(refuse(RefusalCode::PriceBand, &|| {
            format!(
                "price {price} is more than {}% from the last trade {last}",
                limits.price_band_pct
            )
        }));
    }
    let recent = tally.map_or_else(|| recent_orders(state, now), |t| t.recent_orders);
    if let Err(code) = pace_of(recent, state.open_orders, limits) {
        return Err(refuse(code, &|| match code {
            RefusalCode::OrderRate => format!(
                "{recent} orders in the last minute (limit {})",
                limits.max_orders_per_minute
            ),
            _ => format!(
                "{} open orders (limit {})",
                state.open_orders, limits.max_open_orders
            ),
        }));
    }
    if !reduces {
        let day_pnl = state
            .equity
            .checked_sub(state.start_of_day_equity)
            .ok_or_else(out_of_range)?;
        if day_pnl <= -limits.daily_loss_limit_usd {
            return Err(refuse(RefusalCode::DailyLoss, &|| {
                format!(
                    "today's P&L {day_pnl} is at or past the limit of -{}",
                    limits.daily_loss_limit_usd
                )
            }));
        }
        let pending = state
            .pending_qty
            .get(&intent.symbol)
            .copied()
            .unwrap_or_default();
        let signed_qty = intent.side.sign() * intent.qty;
        let after = position
            .checked_add(pending)
            .and_then(|p| p.checked_add(signed_qty))
            .ok_or_else(out_of_range)?;
        // The resulting position is valued at the higher of the order's price and the last
        // trade, so neither the new shares nor the old ones are counted cheap.
        let value_price = price.max(last);
        if after.abs() > limits.max_qty_per_symbol {
            return Err(refuse(RefusalCode::SymbolQty, &|| {
                format!(
                    "{} would hold {after} (limit {})",
                    intent.symbol, limits.max_qty_per_symbol
                )
            }));
        }
        let notional = after
            .abs()
            .checked_mul(value_price)
            .ok_or_else(out_of_range)?;
        if notional > limits.max_notional_per_symbol_usd {
            return Err(refuse(RefusalCode::SymbolNotional, &|| {
                format!(
                    "{} would be {} USD (limit {})",
                    intent.symbol,
                    notional.round_dp(2),
                    limits.max_notional_per_symbol_usd
                )
            }));
        }
        let held = tally.map_or_else(|| tally::positions_held(state), |t| t.positions_held);
        if position.is_zero() && held >= limits.max_positions {
            return Err(refuse(RefusalCode::MaxPositions, &|| {
                format!("{held} positions held (limit {})", limits.max_positions)
            }));
        }
        let mut gross = position
            .checked_add(signed_qty)
            .and_then(|q| q.abs().checked_mul(value_price))
            .ok_or_else(out_of_range)?;
        let others = match tally {
            Some(t) => t.gross_without(state, &intent.symbol),
            None => tally::gross_of(
                state.positions.iter().filter(|(s, _)| **s != intent.symbol),
                state,
            ),
        };
        gross = others
            .and_then(|o| gross.checked_add(o))
            .ok_or_else(out_of_range)?;
        if gross > limits.max_gross_exposure_usd {
            return Err(refuse(RefusalCode::GrossExposure, &|| {
                format!(
                    "gross exposure would be {} USD (limit {})",
                    gross.round_dp(2),
                    limits.max_gross_exposure_usd
                )
            }));
        }
        let added = intent.qty.checked_mul(price).ok_or_else(out_of_range)?;
        if added > state.buying_power {
            return Err(refuse(RefusalCode::BuyingPower, &|| {
                format!(
                    "needs {} USD, buying power is {}",
                    added.round_dp(2),
                    state.buying_power
                )
            }));
        }
    }
    Ok(Approved {
        reference_price: price,
        reduces_only: reduces,
        intent,
    })
}

#[cfg(test)]
mod tests;
