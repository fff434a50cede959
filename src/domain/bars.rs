//! Bars and the intervals they are built on: what the feed aggregates, the strategy reads and
//! the journal and reports will store.

use super::calendar::{et_midnight, to_et};
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// A bar length the feed aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Interval {
    #[serde(rename = "1m")]
    M1,
    #[serde(rename = "5m")]
    M5,
    #[serde(rename = "15m")]
    M15,
    #[serde(rename = "1h")]
    H1,
    #[serde(rename = "1d")]
    D1,
}

impl Interval {
    pub const ALL: [Interval; 5] = [
        Interval::M1,
        Interval::M5,
        Interval::M15,
        Interval::H1,
        Interval::D1,
    ];

    /// Its place in [`Interval::ALL`]: an index for per-interval arrays.
    pub const fn slot(self) -> usize {
        self as usize
    }

    /// Its length in minutes; `None` for a day (its length is the session's).
    pub fn minutes(self) -> Option<i64> {
        match self {
            Interval::M1 => Some(1),
            Interval::M5 => Some(5),
            Interval::M15 => Some(15),
            Interval::H1 => Some(60),
            Interval::D1 => None,
        }
    }

    /// The start of the bar containing `t`.
    pub fn start_of(self, t: DateTime<Utc>) -> DateTime<Utc> {
        match self.minutes() {
            Some(m) => {
                let secs = m * 60;
                let start = t.timestamp().div_euclid(secs) * secs;
                DateTime::from_timestamp(start, 0).unwrap_or(t)
            }
            None => et_midnight(to_et(t).date_naive()),
        }
    }

    /// The end (exclusive) of the bar starting at `start`.
    pub fn end_of(self, start: DateTime<Utc>) -> DateTime<Utc> {
        match self.minutes() {
            Some(m) => start + Duration::minutes(m),
            None => {
                let date = to_et(start).date_naive();
                et_midnight(date.succ_opt().unwrap_or(date))
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Interval::M1 => "1m",
            Interval::M5 => "5m",
            Interval::M15 => "15m",
            Interval::H1 => "1h",
            Interval::D1 => "1d",
        }
    }
}

impl std::str::FromStr for Interval {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Interval::ALL
            .into_iter()
            .find(|i| i.name() == s)
            .ok_or_else(|| format!("unknown interval {s:?}: use 1m, 5m, 15m, 1h or 1d"))
    }
}

/// An OHLCV bar in `Decimal`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OhlcBar {
    pub start: DateTime<Utc>,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
    pub volume: Decimal,
    pub trades: u64,
    /// Sum of price × size, for the VWAP.
    #[serde(skip)]
    pub notional: Decimal,
}

impl OhlcBar {
    pub fn from_trade(start: DateTime<Utc>, price: Decimal, size: Decimal) -> Self {
        OhlcBar {
            start,
            open: price,
            high: price,
            low: price,
            close: price,
            volume: size,
            trades: 1,
            notional: product(price, size),
        }
    }

    pub(crate) fn add_trade(&mut self, price: Decimal, size: Decimal) {
        self.high = self.high.max(price);
        self.low = self.low.min(price);
        self.close = price;
        self.volume += size;
        self.trades += 1;
        self.notional += product(price, size);
    }

    /// Folds a later bar into this one.
    pub(crate) fn merge(&mut self, later: &OhlcBar) {
        self.high = self.high.max(later.high);
        self.low = self.low.min(later.low);
        self.close = later.close;
        self.volume += later.volume;
        self.trades += later.trades;
        self.notional += later.notional;
    }

    pub(crate) fn restart(start: DateTime<Utc>, from: &OhlcBar) -> Self {
        OhlcBar {
            start,
            ..from.clone()
        }
    }

    pub fn vwap(&self) -> Option<Decimal> {
        (!self.volume.is_zero()).then(|| (self.notional / self.volume).round_dp(4))
    }
}

/// `a × b`: the very `Decimal` rust_decimal's `*` gives, worked out in place where both
/// mantissas fit 32 bits (a price in cents by a share count: every trade and minute bar
/// makes one), else by `checked_mul`. A product past `Decimal`'s range is `Decimal::MAX`
/// (only a notional is made here, for a VWAP), never a panic.
#[inline]
pub fn product(a: Decimal, b: Decimal) -> Decimal {
    let (x, y) = (a.unpack(), b.unpack());
    let scale = x.scale + y.scale;
    if x.hi | x.mid | y.hi | y.mid == 0 && x.lo != 0 && y.lo != 0 && scale <= Decimal::MAX_SCALE {
        let m = u64::from(x.lo) * u64::from(y.lo);
        return Decimal::from_parts(
            m as u32,
            (m >> 32) as u32,
            0,
            x.negative != y.negative,
            scale,
        );
    }
    a.checked_mul(b).unwrap_or(Decimal::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        /// The same value and scale as rust_decimal's product, prices and beyond.
        #[test]
        fn product_is_rust_decimals(a in any::<i64>(), sa in 0u32..=28, b in any::<i64>(), sb in 0u32..=28, small in any::<bool>()) {
            let (a, b) = if small { (a >> 32, b >> 33) } else { (a, b) };
            let (a, b) = (Decimal::new(a, sa), Decimal::new(b, sb));
            let ours = product(a, b);
            match a.checked_mul(b) {
                Some(theirs) => {
                    prop_assert_eq!(ours, theirs);
                    prop_assert_eq!(ours.to_string(), theirs.to_string());
                    prop_assert_eq!(ours.scale(), theirs.scale());
                }
                None => prop_assert_eq!(ours, Decimal::MAX),
            }
        }
    }
}
