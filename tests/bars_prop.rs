//! Property: bars aggregated by the feed's book from any trade sequence equal bars computed
//! independently (group trades by symbol and aligned bucket, then take open/high/low/close/volume).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use traderd::actors::market_data::{BarBook, Interval};

#[derive(Debug, Clone)]
struct T {
    symbol: usize,
    at: DateTime<Utc>,
    price: Decimal,
    size: Decimal,
}

fn trades() -> impl Strategy<Value = Vec<T>> {
    // Increasing times over about three days, so days and hours roll over too.
    prop::collection::vec((0usize..3, 1i64..=5400, 1i64..=100_000, 1i64..=500), 1..300).prop_map(
        |steps| {
            let mut at = Utc.with_ymd_and_hms(2026, 11, 18, 14, 30, 0).unwrap();
            steps
                .into_iter()
                .map(|(symbol, gap_s, cents, size)| {
                    at += Duration::seconds(gap_s);
                    T {
                        symbol,
                        at,
                        price: Decimal::new(cents, 2),
                        size: Decimal::from(size),
                    }
                })
                .collect()
        },
    )
}

type Key = (String, Interval, DateTime<Utc>);

fn independent(trades: &[T]) -> BTreeMap<Key, (Decimal, Decimal, Decimal, Decimal, Decimal, u64)> {
    let mut out: BTreeMap<Key, (Decimal, Decimal, Decimal, Decimal, Decimal, u64)> =
        BTreeMap::new();
    for t in trades {
        for i in Interval::ALL {
            let key = (format!("S{}", t.symbol), i, i.start_of(t.at));
            out.entry(key)
                .and_modify(|b| {
                    b.1 = b.1.max(t.price);
                    b.2 = b.2.min(t.price);
                    b.3 = t.price;
                    b.4 += t.size;
                    b.5 += 1;
                })
                .or_insert((t.price, t.price, t.price, t.price, t.size, 1));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn aggregated_bars_equal_independent_bars(trades in trades()) {
        let mut book = BarBook::new(&Interval::ALL, 100_000);
        let mut closed = Vec::new();
        for t in &trades {
            closed.extend(book.on_trade(&format!("S{}", t.symbol), t.price, t.size, t.at));
        }
        // Far enough ahead that every bar has closed.
        closed.extend(book.advance_to(trades.last().unwrap().at + Duration::days(3)));
        let ours: BTreeMap<Key, _> = closed
            .iter()
            .map(|c| ((c.symbol.to_string(), c.interval, c.bar.start), (c.bar.open, c.bar.high, c.bar.low, c.bar.close, c.bar.volume, c.bar.trades)))
            .collect();
        prop_assert_eq!(ours.len(), closed.len(), "no bar closed twice");
        prop_assert_eq!(ours, independent(&trades));
        // Per symbol and interval, bars close in time order.
        let mut last: BTreeMap<(String, Interval), DateTime<Utc>> = BTreeMap::new();
        for c in &closed {
            if let Some(prev) = last.insert((c.symbol.to_string(), c.interval), c.bar.start) {
                prop_assert!(prev < c.bar.start);
            }
        }
    }
}
