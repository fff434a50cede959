//! Strategies: the [`Strategy`](builtin::Strategy) trait, the built-ins (momentum on RSI and
//! MACD, mean reversion on Bollinger bands), sizing and protection ([`builtin`]), and the
//! streaming [`indicators`] they are built from.

pub mod builtin;
pub mod indicators;
pub mod market;
pub mod pairs;
pub mod per_symbol;
pub mod rebalance;
pub mod registry;
pub mod signal;

pub use builtin::{
    BarInput, EntryPlan, MarketBars, MarketView, MeanReversion, MeanReversionParams, Momentum,
    MomentumParams, Probe, ProbeParams, Protection, Signal, Sizing, Strategy, TradeInput,
    TradeInterest, buys_a_share, entry_notional, entry_qty, plan_entry, reason,
};
pub use pairs::{Pairs, PairsParams};
pub use per_symbol::PerSymbol;
pub use rebalance::{Rebalance, RebalanceParams};
pub use registry::{Factory, params, register};
pub use signal::intent_for;

/// A bar at one price, for the strategies' tests.
#[cfg(test)]
pub(crate) fn flat_bar(
    start: chrono::DateTime<chrono::Utc>,
    price: rust_decimal::Decimal,
) -> crate::domain::OhlcBar {
    crate::domain::OhlcBar {
        start,
        open: price,
        high: price,
        low: price,
        close: price,
        volume: rust_decimal::Decimal::ONE,
        trades: 1,
        notional: price,
    }
}
