//! Position accounting: average entry price, realized P&L, and the intraday basis, all in
//! `Decimal`. One function, [`PositionBook::apply`], is the only way a position changes.

use rust_decimal::Decimal;
use rust_decimal::prelude::Signed;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PositionBook {
    /// Signed: negative for a short.
    pub qty: Decimal,
    pub avg_entry_price: Decimal,
    /// Realized P&L of this symbol since the account was opened.
    pub realized_pl: Decimal,
    /// Reference price for today's P&L: entry price if opened today, else the previous close.
    pub intraday_basis: Decimal,
}

impl PositionBook {
    /// Applies a fill of signed `delta` shares at `price`; returns the P&L it realized.
    pub fn apply(&mut self, delta: Decimal, price: Decimal) -> Decimal {
        if delta.is_zero() {
            return Decimal::ZERO;
        }
        let same_direction =
            self.qty.is_zero() || (self.qty.is_sign_positive() == delta.is_sign_positive());
        if same_direction {
            let new_qty = self.qty + delta;
            let avg = (self.qty.abs() * self.avg_entry_price + delta.abs() * price) / new_qty.abs();
            let basis =
                (self.qty.abs() * self.intraday_basis + delta.abs() * price) / new_qty.abs();
            self.qty = new_qty;
            self.avg_entry_price = avg;
            self.intraday_basis = basis;
            return Decimal::ZERO;
        }
        let closed = delta.abs().min(self.qty.abs());
        let realized = closed * (price - self.avg_entry_price) * self.qty.signum();
        self.realized_pl += realized;
        let new_qty = self.qty + delta;
        if new_qty.is_zero() {
            self.qty = Decimal::ZERO;
            self.avg_entry_price = Decimal::ZERO;
            self.intraday_basis = Decimal::ZERO;
        } else if new_qty.is_sign_positive() != self.qty.is_sign_positive() {
            // Flipped through zero: the rest opens at this price.
            self.qty = new_qty;
            self.avg_entry_price = price;
            self.intraday_basis = price;
        } else {
            self.qty = new_qty;
        }
        realized
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    /// (fills as (signed qty, price), then expected qty, average entry, realized P&L)
    type Row<'a> = (&'a [(Decimal, Decimal)], Decimal, Decimal, Decimal);

    #[test]
    fn table() {
        let rows: &[Row] = &[
            (&[(dec!(10), dec!(100))], dec!(10), dec!(100), dec!(0)),
            (
                &[(dec!(10), dec!(100)), (dec!(10), dec!(110))],
                dec!(20),
                dec!(105),
                dec!(0),
            ),
            (
                &[(dec!(10), dec!(100)), (dec!(-4), dec!(110))],
                dec!(6),
                dec!(100),
                dec!(40),
            ),
            (
                &[(dec!(10), dec!(100)), (dec!(-10), dec!(90))],
                dec!(0),
                dec!(0),
                dec!(-100),
            ),
            (
                &[(dec!(-5), dec!(50)), (dec!(2), dec!(40))],
                dec!(-3),
                dec!(50),
                dec!(20),
            ),
            (
                &[(dec!(5), dec!(10)), (dec!(-8), dec!(12))],
                dec!(-3),
                dec!(12),
                dec!(10),
            ),
        ];
        for (fills, qty, avg, realized) in rows {
            let mut p = PositionBook::default();
            let mut r = Decimal::ZERO;
            for (d, px) in *fills {
                r += p.apply(*d, *px);
            }
            assert_eq!(
                (p.qty, p.avg_entry_price, r),
                (*qty, *avg, *realized),
                "{fills:?}"
            );
        }
    }
}
