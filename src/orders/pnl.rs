//! Realised P&L and fills by symbol, at average cost: what `ctl status` attributes to each
//! strategy (a symbol belongs to one). Since the daemon started: the journal keeps every fill
//! for the whole history (`traderd report`).

use crate::alpaca::model::OrderSide;
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// One symbol's book.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SymbolPnl {
    pub fills: u64,
    /// Signed quantity booked since start.
    pub qty: Decimal,
    /// Average cost of `qty`.
    pub avg_price: Decimal,
    pub realized_pnl: Decimal,
}

#[derive(Debug, Clone, Default)]
pub struct PnlBook {
    symbols: BTreeMap<String, SymbolPnl>,
}

impl PnlBook {
    /// Books one fill. Saturates rather than overflow, as the positions do (the quantities and
    /// prices come from the broker).
    pub fn book(&mut self, symbol: &str, side: OrderSide, qty: Decimal, price: Decimal) {
        let s = self.symbols.entry(symbol.to_string()).or_default();
        s.fills += 1;
        let signed = side.sign().saturating_mul(qty);
        let before = s.qty;
        let after = before.saturating_add(signed);
        if before.is_zero() || before.is_sign_negative() == signed.is_sign_negative() {
            // Opening or adding: a new average.
            let total = before.abs().saturating_add(qty);
            let cost = before
                .abs()
                .saturating_mul(s.avg_price)
                .saturating_add(qty.saturating_mul(price));
            if let Some(avg) = cost.checked_div(total) {
                s.avg_price = avg.round_dp(8);
            }
        } else {
            // Reducing: the closed part realises against the average; past zero, the rest
            // opens the other way at this price.
            let closing = qty.min(before.abs());
            let gain = closing.saturating_mul(price.saturating_sub(s.avg_price));
            s.realized_pnl = if before.is_sign_negative() {
                s.realized_pnl.saturating_sub(gain)
            } else {
                s.realized_pnl.saturating_add(gain)
            };
            if after.is_zero() {
                s.avg_price = Decimal::ZERO;
            } else if after.is_sign_negative() != before.is_sign_negative() {
                s.avg_price = price;
            }
        }
        s.qty = after;
    }

    pub fn get(&self, symbol: &str) -> Option<&SymbolPnl> {
        self.symbols.get(symbol)
    }

    pub fn all(&self) -> &BTreeMap<String, SymbolPnl> {
        &self.symbols
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn average_cost_realises_on_reductions_and_flips() {
        let mut b = PnlBook::default();
        b.book("A", OrderSide::Buy, dec!(10), dec!(100));
        b.book("A", OrderSide::Buy, dec!(10), dec!(110));
        assert_eq!(b.get("A").unwrap().avg_price, dec!(105));
        b.book("A", OrderSide::Sell, dec!(15), dec!(120));
        let a = b.get("A").unwrap();
        assert_eq!(
            (a.qty, a.realized_pnl, a.avg_price),
            (dec!(5), dec!(225), dec!(105))
        );
        // Past flat: 5 close at a loss of 5 each, 5 open short at 100.
        b.book("A", OrderSide::Sell, dec!(10), dec!(100));
        let a = b.get("A").unwrap();
        assert_eq!(
            (a.qty, a.realized_pnl, a.avg_price),
            (dec!(-5), dec!(200), dec!(100))
        );
        // The short covered lower: a gain.
        b.book("A", OrderSide::Buy, dec!(5), dec!(90));
        let a = b.get("A").unwrap();
        assert_eq!(
            (a.qty, a.realized_pnl, a.avg_price, a.fills),
            (dec!(0), dec!(250), dec!(0), 5)
        );
        assert!(b.get("B").is_none());
        // Absurd values saturate; nothing panics.
        b.book("C", OrderSide::Buy, Decimal::MAX, Decimal::MAX);
        b.book("C", OrderSide::Sell, Decimal::MAX, dec!(0.01));
        assert_eq!(b.get("C").unwrap().fills, 2);
    }
}
