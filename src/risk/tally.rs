//! What the exposure and rate checks need of everything held and sent, counted once and kept
//! current as the state changes, so a check is not a walk over every position and every
//! order of the last minute (a daemon holding hundreds of symbols checks each proposal on
//! the order path).

use super::{RiskState, SymbolMap};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

/// Counts over a [`RiskState`]: see [`super::check_tallied`].
#[derive(Debug, Clone, PartialEq)]
pub struct Tally {
    /// Orders sent in the minute before the check.
    pub recent_orders: usize,
    /// Positions that are not zero.
    pub positions_held: usize,
    /// Σ |quantity| × last trade over every position (`None`: past what a decimal holds).
    pub gross_held: Option<Decimal>,
}

/// Nothing held, nothing sent.
impl Default for Tally {
    fn default() -> Self {
        Tally {
            recent_orders: 0,
            positions_held: 0,
            gross_held: Some(Decimal::ZERO),
        }
    }
}

/// Σ |quantity| × last trade over `positions` (a symbol without a price counts 0); `None`
/// past what a decimal holds.
pub(super) fn gross_of<'a>(
    mut positions: impl Iterator<Item = (&'a String, &'a Decimal)>,
    state: &RiskState,
) -> Option<Decimal> {
    positions.try_fold(Decimal::ZERO, |gross, (s, q)| {
        q.abs()
            .checked_mul(price(&state.last_trade, s))
            .and_then(|v| gross.checked_add(v))
    })
}

/// Positions in `state` that are not zero.
pub(super) fn positions_held(state: &RiskState) -> usize {
    state.positions.values().filter(|q| !q.is_zero()).count()
}

fn price(last_trade: &SymbolMap<Decimal>, symbol: &str) -> Decimal {
    last_trade.get(symbol).copied().unwrap_or_default()
}

impl Tally {
    /// Counted from scratch, at `now`.
    pub fn of(state: &RiskState, now: DateTime<Utc>) -> Tally {
        let mut tally = Tally {
            recent_orders: super::recent_orders(state, now),
            ..Tally::default()
        };
        tally.recount_positions(state);
        tally
    }

    /// The gross value held in every symbol but `symbol`.
    pub(super) fn gross_without(&self, state: &RiskState, symbol: &str) -> Option<Decimal> {
        let own = state
            .positions
            .get(symbol)
            .map_or(Some(Decimal::ZERO), |q| {
                q.abs().checked_mul(price(&state.last_trade, symbol))
            })?;
        self.gross_held?.checked_sub(own)
    }

    /// `symbol`'s last trade was `from` and is now what `state` holds (0 if none): the gross
    /// value held moves with it. Anything past what a decimal holds is counted again.
    pub fn repriced(&mut self, state: &RiskState, symbol: &str, from: Decimal) {
        let Some(q) = state.positions.get(symbol).filter(|q| !q.is_zero()) else {
            return;
        };
        let moved = price(&state.last_trade, symbol)
            .checked_sub(from)
            .and_then(|d| d.checked_mul(q.abs()))
            .and_then(|d| self.gross_held?.checked_add(d));
        self.gross_held = moved.or_else(|| gross_of(state.positions.iter(), state));
    }

    /// The positions changed (all of them, as the order side tells them).
    pub fn recount_positions(&mut self, state: &RiskState) {
        self.positions_held = positions_held(state);
        self.gross_held = gross_of(state.positions.iter(), state);
    }
}
