//! Position changes explained by a split, without I/O.
//!
//! A split changes the broker's quantity with no fill: 10 shares become 40 in a 4-for-1. To
//! reconciliation that is a difference like any other, and a confirmed difference sends the
//! daemon into capital preservation. So before a difference is confirmed, the splits of the
//! symbol are looked up (Alpaca's corporate-actions API, and the account's SPLIT activities)
//! and, when they account for it exactly, the position is adjusted and the adjustment
//! journaled instead ([`explain`]).

use crate::alpaca::model::{NonTradeActivity, Split};
use rust_decimal::Decimal;

/// A position change a split accounts for.
#[derive(Debug, Clone, PartialEq)]
pub struct Adjustment {
    pub symbol: String,
    /// The journal's quantity before, and the broker's after.
    pub from: Decimal,
    pub to: Decimal,
    /// Journal key: the same split is never applied twice (see [`Split::key`]).
    pub key: String,
    /// Shares after per share before, when known (from the corporate actions).
    pub ratio: Option<Decimal>,
    pub detail: String,
}

/// Whether `held` is what the broker shows after `expected`: exactly, or with the fraction
/// of a share paid out as cash in lieu.
fn matches(expected: Decimal, held: Decimal) -> bool {
    if expected == held {
        return true;
    }
    let same_side = expected.is_sign_negative() == held.is_sign_negative();
    same_side && held.abs() == expected.abs().trunc() && !held.is_zero()
}

/// Explains the difference between `ours` and the broker's `held` on a symbol.
///
/// - By `splits` of it (any order; applied by ex-date, the earliest first; the first run of
///   them that accounts for the difference wins). Fills may have been made after the split
///   and before this look (the strategy traded on, in the old shares' count): `fills` are the
///   symbol's signed fills since the earliest ex-date began, in the order booked, and the
///   split is taken to fall before any suffix of them. With `post` the sum of such a suffix,
///   the broker holds `(ours - post) × ratio + post` (the first term truncated when the
///   fraction of a share was paid out as cash in lieu).
/// - Else by the net quantity of its SPLIT `activities` (the shares the split added or took):
///   the broker holds `ours + net`.
///
/// `None` when neither accounts for it exactly: then the difference stands and is judged as
/// any other. The adjustment is always `held - ours`; what is checked is only that a split
/// explains it.
pub fn explain(
    symbol: &str,
    ours: Decimal,
    held: Decimal,
    splits: &[Split],
    activities: &[NonTradeActivity],
    fills: &[Decimal],
) -> Option<Adjustment> {
    if ours == held {
        return None;
    }
    // Suffix sums of the fills, the empty one (no fill after the split) first.
    let mut posts = vec![Decimal::ZERO];
    let mut sum = Decimal::ZERO;
    for f in fills.iter().rev() {
        sum = sum.checked_add(*f)?;
        posts.push(sum);
    }
    let mut mine: Vec<&Split> = splits.iter().filter(|s| s.symbol == symbol).collect();
    mine.sort_by_key(|s| s.ex_date);
    let mut ratio = Decimal::ONE;
    let mut keys = Vec::new();
    for split in mine {
        let Some(r) = split.ratio() else { continue };
        ratio = ratio.checked_mul(r)?;
        keys.push(split.key());
        let explained = posts.iter().any(|post| {
            ours.checked_sub(*post)
                .and_then(|pre| pre.checked_mul(ratio))
                .and_then(|pre| Some((pre, pre.checked_add(*post)?, held.checked_sub(*post)?)))
                .is_some_and(|(pre, expected, held_pre)| {
                    expected == held || (!pre.is_zero() && matches(pre, held_pre))
                })
        });
        if explained {
            return Some(Adjustment {
                symbol: symbol.to_string(),
                from: ours,
                to: held,
                key: keys.join("+"),
                ratio: Some(ratio),
                detail: format!(
                    "{} split(s) ending {} ({}-for-{})",
                    keys.len(),
                    split.ex_date,
                    split.new_rate,
                    split.old_rate
                ),
            });
        }
    }
    let mine: Vec<&NonTradeActivity> = activities
        .iter()
        .filter(|a| a.activity_type == "SPLIT" && a.symbol.as_deref() == Some(symbol))
        .collect();
    let net: Decimal = mine.iter().filter_map(|a| a.qty).sum();
    (!mine.is_empty() && ours.checked_add(net) == Some(held)).then(|| Adjustment {
        symbol: symbol.to_string(),
        from: ours,
        to: held,
        key: format!(
            "split-activity:{}",
            mine.iter()
                .map(|a| a.id.as_str())
                .collect::<Vec<_>>()
                .join("+")
        ),
        ratio: None,
        detail: format!("{} SPLIT activit(ies) adding {net}", mine.len()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use rust_decimal_macros::dec;

    fn split(symbol: &str, old: Decimal, new: Decimal, day: u32) -> Split {
        Split {
            id: None,
            symbol: symbol.into(),
            new_rate: new,
            old_rate: old,
            ex_date: NaiveDate::from_ymd_opt(2026, 11, day).unwrap(),
            process_date: None,
            record_date: None,
            payable_date: None,
            cusip: None,
        }
    }

    fn activity(symbol: &str, qty: Decimal) -> NonTradeActivity {
        NonTradeActivity {
            id: format!("a-{symbol}-{qty}"),
            activity_type: "SPLIT".into(),
            date: None,
            net_amount: None,
            symbol: Some(symbol.into()),
            qty: Some(qty),
            per_share_amount: None,
            description: None,
            status: None,
        }
    }

    #[test]
    fn fills_made_after_the_split_in_the_old_count_are_accounted_for() {
        // The run: held 10, split 4-for-1 (40 at the broker), the strategy sold its
        // 10 before the daemon knew: 0 journaled, 30 at the broker.
        let four = [split("AAPL", dec!(1), dec!(4), 20)];
        let fills = [dec!(10), dec!(-10)];
        let a = explain("AAPL", dec!(0), dec!(30), &four, &[], &fills).unwrap();
        assert_eq!((a.from, a.to), (dec!(0), dec!(30)));
        // Sold 10 and bought 5 after it: (5 - (-5)) x 4 + (-5) = 35.
        let fills = [dec!(10), dec!(-10), dec!(5)];
        assert!(explain("AAPL", dec!(5), dec!(35), &four, &[], &fills).is_some());
        // No suffix of the fills accounts for it.
        assert!(explain("AAPL", dec!(0), dec!(31), &four, &[], &fills).is_none());
        // The SPLIT activity's shares account for it whatever was traded since.
        let a = explain(
            "AAPL",
            dec!(0),
            dec!(30),
            &[],
            &[activity("AAPL", dec!(30))],
            &[],
        );
        assert!(a.is_some());
    }

    #[test]
    fn table() {
        let four = [split("AAPL", dec!(1), dec!(4), 20)];
        let reverse = [split("XYZ", dec!(10), dec!(1), 20)];
        let two_then_three = [
            split("T", dec!(1), dec!(3), 25),
            split("T", dec!(1), dec!(2), 10),
        ];
        let three_for_two = [split("K", dec!(2), dec!(3), 20)];
        // (symbol, ours, broker, splits, activities, explained?, ratio)
        type Row<'a> = (
            &'a str,
            Decimal,
            Decimal,
            &'a [Split],
            Vec<NonTradeActivity>,
            bool,
            Option<Decimal>,
        );
        let rows: Vec<Row> = vec![
            (
                "AAPL",
                dec!(10),
                dec!(40),
                &four,
                vec![],
                true,
                Some(dec!(4)),
            ),
            (
                "AAPL",
                dec!(-10),
                dec!(-40),
                &four,
                vec![],
                true,
                Some(dec!(4)),
            ),
            ("AAPL", dec!(10), dec!(41), &four, vec![], false, None),
            ("AAPL", dec!(10), dec!(0), &four, vec![], false, None),
            ("MSFT", dec!(10), dec!(40), &four, vec![], false, None),
            (
                "XYZ",
                dec!(25),
                dec!(2.5),
                &reverse,
                vec![],
                true,
                Some(dec!(0.1)),
            ),
            // A fraction paid out as cash in lieu.
            (
                "XYZ",
                dec!(25),
                dec!(2),
                &reverse,
                vec![],
                true,
                Some(dec!(0.1)),
            ),
            (
                "K",
                dec!(5),
                dec!(7),
                &three_for_two,
                vec![],
                true,
                Some(dec!(1.5)),
            ),
            // Two splits, applied by ex-date.
            (
                "T",
                dec!(1),
                dec!(6),
                &two_then_three,
                vec![],
                true,
                Some(dec!(6)),
            ),
            (
                "T",
                dec!(1),
                dec!(2),
                &two_then_three,
                vec![],
                true,
                Some(dec!(2)),
            ),
            // No corporate action known, but the account's SPLIT activity accounts for it.
            (
                "AAPL",
                dec!(10),
                dec!(40),
                &[],
                vec![activity("AAPL", dec!(30))],
                true,
                None,
            ),
            (
                "AAPL",
                dec!(10),
                dec!(40),
                &[],
                vec![activity("AAPL", dec!(20))],
                false,
                None,
            ),
            ("AAPL", dec!(10), dec!(10), &four, vec![], false, None),
        ];
        for (symbol, ours, held, splits, activities, explained, ratio) in rows {
            let a = explain(symbol, ours, held, splits, &activities, &[]);
            assert_eq!(a.is_some(), explained, "{symbol} {ours} -> {held}: {a:?}");
            if let Some(a) = a {
                assert_eq!((a.from, a.to, a.ratio), (ours, held, ratio), "{symbol}");
            }
        }
    }
}
