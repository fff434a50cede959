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
    /// Starts from the positions held (their cost unknown: the first price seen stands for it).
    pub fn book(&mut self, symbol: &str, side: OrderSide, qty: Decimal, price: Decimal) {
        let s = self.symbols.entry(symbol.to_string()).or_default();
        s.fills += 1;
        let signed = side.sign() * qty;
        let before = s.qty;
        let after = before + signed;
        if before.is_zero() || before.is_sign_negative() == signed.is_sign_negative() {
            // Opening or adding: a new average.
            let total = before.abs() + qty;
            if !total.is_zero() {
                s.avg_price = ((before.abs() * s.avg_price + qty * price) / total).round_dp(8);
            }
        } else {
            // Reducing: the closed part realises against the average; past zero, the rest
            // opens the other way at this price.
            let closing = qty.min(before.abs());
            let direction = if before.is_sign_negative() {
                -Decimal::ONE
            } else {
                Decimal::ONE
            };
            s.realized_pnl += closing * (price - s.avg_price) * direction;
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
    }
}
