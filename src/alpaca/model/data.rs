//! Market Data API v2 objects (§2 of the protocol notes): bars, trades, quotes, snapshots,
//! and the [`TimeFrame`] of a bar. Prices travel as JSON numbers here and land in `Decimal`.

use crate::alpaca::num::{number, number_opt};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// A bar. `t` is the bar's start; `n` and `vw` must be present (possibly `null`) for alpaca-py.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bar {
    #[serde(with = "super::utc")]
    pub t: DateTime<Utc>,
    #[serde(with = "number")]
    pub o: Decimal,
    #[serde(with = "number")]
    pub h: Decimal,
    #[serde(with = "number")]
    pub l: Decimal,
    #[serde(with = "number")]
    pub c: Decimal,
    #[serde(with = "number")]
    pub v: Decimal,
    #[serde(default)]
    pub n: Option<u64>,
    #[serde(default, with = "number_opt")]
    pub vw: Option<Decimal>,
}

/// A trade print.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trade {
    #[serde(with = "super::utc")]
    pub t: DateTime<Utc>,
    #[serde(default)]
    pub x: String,
    #[serde(with = "number")]
    pub p: Decimal,
    #[serde(with = "number")]
    pub s: Decimal,
    #[serde(default)]
    pub c: Vec<String>,
    #[serde(default)]
    pub i: u64,
    #[serde(default)]
    pub z: String,
}

/// A top-of-book quote. Sizes are in shares here (Alpaca's current feeds use round lots on the
/// stream; the simulator reports shares everywhere and says so in docs/simulator.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quote {
    #[serde(with = "super::utc")]
    pub t: DateTime<Utc>,
    #[serde(default)]
    pub bx: String,
    #[serde(with = "number")]
    pub bp: Decimal,
    #[serde(with = "number")]
    pub bs: Decimal,
    #[serde(default)]
    pub ax: String,
    #[serde(with = "number")]
    pub ap: Decimal,
    #[serde(rename = "as", with = "number")]
    pub as_: Decimal,
    #[serde(default)]
    pub c: Vec<String>,
    #[serde(default)]
    pub z: String,
}

/// `GET /v2/stocks/bars`: bars per symbol, one page.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BarsPage {
    #[serde(default)]
    pub bars: BTreeMap<String, Vec<Bar>>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// `GET /v2/stocks/trades`: historical trades per symbol, one page.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TradesPage {
    #[serde(default, deserialize_with = "null_as_empty_map")]
    pub trades: BTreeMap<String, Vec<Trade>>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// `GET /v2/stocks/quotes`: historical quotes per symbol, one page.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct QuotesPage {
    #[serde(default, deserialize_with = "null_as_empty_map")]
    pub quotes: BTreeMap<String, Vec<Quote>>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

fn null_as_empty_map<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<BTreeMap<String, T>, D::Error> {
    Ok(Option::<BTreeMap<String, T>>::deserialize(d)?.unwrap_or_default())
}

/// `GET /v2/stocks/trades/latest`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LatestTrades {
    #[serde(default)]
    pub trades: BTreeMap<String, Trade>,
}

/// `GET /v2/stocks/quotes/latest`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LatestQuotes {
    #[serde(default)]
    pub quotes: BTreeMap<String, Quote>,
}

/// `GET /v2/stocks/bars/latest`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LatestBars {
    #[serde(default)]
    pub bars: BTreeMap<String, Bar>,
}

/// One symbol of `GET /v2/stocks/snapshots` (the response is keyed by symbol, no wrapper).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    #[serde(default)]
    pub latest_trade: Option<Trade>,
    #[serde(default)]
    pub latest_quote: Option<Quote>,
    #[serde(default)]
    pub minute_bar: Option<Bar>,
    #[serde(default)]
    pub daily_bar: Option<Bar>,
    #[serde(default)]
    pub prev_daily_bar: Option<Bar>,
}

/// Snapshots keyed by symbol; a symbol may map to `null`.
pub type Snapshots = BTreeMap<String, Option<Snapshot>>;

/// The unit of a [`TimeFrame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimeFrameUnit {
    Minute,
    Hour,
    Day,
    Week,
    Month,
}

/// A bar length such as `1Min`, `15Min`, `1Hour`, `1Day`, `1Week`, `3Month`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimeFrame {
    pub amount: u32,
    pub unit: TimeFrameUnit,
}

impl TimeFrame {
    pub const MINUTE: TimeFrame = TimeFrame {
        amount: 1,
        unit: TimeFrameUnit::Minute,
    };
    pub const HOUR: TimeFrame = TimeFrame {
        amount: 1,
        unit: TimeFrameUnit::Hour,
    };
    pub const DAY: TimeFrame = TimeFrame {
        amount: 1,
        unit: TimeFrameUnit::Day,
    };

    pub fn new(amount: u32, unit: TimeFrameUnit) -> Result<Self, String> {
        let ok = match unit {
            TimeFrameUnit::Minute => (1..=59).contains(&amount),
            TimeFrameUnit::Hour => (1..=23).contains(&amount),
            TimeFrameUnit::Day | TimeFrameUnit::Week => amount == 1,
            TimeFrameUnit::Month => [1, 2, 3, 6, 12].contains(&amount),
        };
        if ok {
            Ok(TimeFrame { amount, unit })
        } else {
            Err(format!(
                "invalid timeframe {amount}{}: use 1-59Min, 1-23Hour, 1Day, 1Week or 1/2/3/6/12Month",
                unit_name(unit)
            ))
        }
    }

    /// The length in minutes, for the intraday units.
    pub fn intraday_minutes(self) -> Option<i64> {
        match self.unit {
            TimeFrameUnit::Minute => Some(i64::from(self.amount)),
            TimeFrameUnit::Hour => Some(60 * i64::from(self.amount)),
            _ => None,
        }
    }
}

fn unit_name(unit: TimeFrameUnit) -> &'static str {
    match unit {
        TimeFrameUnit::Minute => "Min",
        TimeFrameUnit::Hour => "Hour",
        TimeFrameUnit::Day => "Day",
        TimeFrameUnit::Week => "Week",
        TimeFrameUnit::Month => "Month",
    }
}

impl fmt::Display for TimeFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.amount, unit_name(self.unit))
    }
}

impl FromStr for TimeFrame {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let amount: u32 = if digits.is_empty() {
            1
        } else {
            digits
                .parse()
                .map_err(|_| format!("invalid timeframe {s:?}"))?
        };
        let unit = match unit {
            "Min" | "T" | "min" => TimeFrameUnit::Minute,
            "Hour" | "H" | "hour" => TimeFrameUnit::Hour,
            "Day" | "D" | "day" => TimeFrameUnit::Day,
            "Week" | "W" | "week" => TimeFrameUnit::Week,
            "Month" | "M" | "month" => TimeFrameUnit::Month,
            _ => {
                return Err(format!(
                    "invalid timeframe {s:?}: expected e.g. 1Min, 15Min, 1Hour, 1Day, 1Week, 1Month"
                ));
            }
        };
        TimeFrame::new(amount, unit)
    }
}

/// A REST bar as the daemon's bar (its VWAP stands in for the notional).
impl From<&Bar> for crate::domain::OhlcBar {
    fn from(b: &Bar) -> Self {
        crate::domain::OhlcBar {
            start: b.t,
            open: b.o,
            high: b.h,
            low: b.l,
            close: b.c,
            volume: b.v,
            trades: b.n.unwrap_or(0),
            notional: crate::domain::bars::product(b.vw.unwrap_or(b.c), b.v),
        }
    }
}

/// The REST timeframe of an interval's length.
impl From<crate::domain::Interval> for TimeFrame {
    fn from(i: crate::domain::Interval) -> Self {
        use crate::domain::Interval;
        match i {
            Interval::M1 => TimeFrame::MINUTE,
            Interval::M5 => TimeFrame {
                amount: 5,
                unit: TimeFrameUnit::Minute,
            },
            Interval::M15 => TimeFrame {
                amount: 15,
                unit: TimeFrameUnit::Minute,
            },
            Interval::H1 => TimeFrame::HOUR,
            Interval::D1 => TimeFrame::DAY,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn timeframes_round_trip_and_refuse_nonsense() {
        for s in ["1Min", "15Min", "1Hour", "4Hour", "1Day", "1Week", "3Month"] {
            assert_eq!(s.parse::<TimeFrame>().unwrap().to_string(), s);
        }
        assert_eq!("5T".parse::<TimeFrame>().unwrap().to_string(), "5Min");
        for bad in ["0Min", "60Min", "2Day", "4Month", "1Year", "", "xMin"] {
            assert!(bad.parse::<TimeFrame>().is_err(), "{bad}");
        }
    }

    #[test]
    fn bars_page_decodes_numbers_into_decimals() {
        let body = r#"{"bars":{"AAPL":[{"t":"2022-02-01T05:00:00Z","o":174,"h":174.84,"l":172.31,"c":174.61,"v":85998033,"n":732412,"vw":173.703516}]},"next_page_token":null}"#;
        let page: BarsPage = serde_json::from_str(body).unwrap();
        let bar = &page.bars["AAPL"][0];
        assert_eq!(bar.h, dec!(174.84));
        assert_eq!(bar.vw, Some(dec!(173.703516)));
        let again = serde_json::to_string(&page).unwrap();
        assert!(again.contains(r#""o":174,"h":174.84"#), "{again}");
    }

    #[test]
    fn snapshot_symbol_may_be_null() {
        let s: Snapshots = serde_json::from_str(r#"{"AAPL":null}"#).unwrap();
        assert!(s["AAPL"].is_none());
    }
}
