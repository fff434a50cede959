//! The market-data stream's messages (§3 of the protocol notes), in JSON and msgpack.
//!
//! Decoding is hand-written: it reads `"T"` (always the first key at Alpaca) and then the fields
//! of that message type, without buffering the map, skipping fields it does not know. A message
//! type it does not model decodes as [`DataMessage::Other`] rather than failing the frame.
//! Encoding (used by the simulator) writes `"T"` first, as Alpaca does.

mod codes;
mod decode;
mod encode;
pub mod fast;
pub mod first;
#[cfg(test)]
mod tests;

pub use codes::{Code, Conditions};

use super::time;
use crate::alpaca::model::{Bar, Quote, Trade};
use crate::alpaca::num::{WireDecimal, WireDecimalOpt, serialize_number};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A ticker as the stream sends it: held inline up to 24 bytes (every US equity and OCC
/// option symbol), so a message's symbol costs no allocation.
pub type Symbol = compact_str::CompactString;

#[derive(Debug, Clone, PartialEq)]
pub struct StreamTrade {
    pub symbol: Symbol,
    pub id: u64,
    pub exchange: Code,
    pub price: Decimal,
    pub size: Decimal,
    pub timestamp: DateTime<Utc>,
    pub conditions: Conditions,
    pub tape: Code,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StreamQuote {
    pub symbol: Symbol,
    pub bid_exchange: Code,
    pub bid_price: Decimal,
    pub bid_size: Decimal,
    pub ask_exchange: Code,
    pub ask_price: Decimal,
    pub ask_size: Decimal,
    pub timestamp: DateTime<Utc>,
    pub conditions: Conditions,
    pub tape: Code,
}

/// Which bar channel a bar came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    /// `b`: a minute bar.
    Minute,
    /// `u`: a late correction of a minute bar.
    Updated,
    /// `d`: a daily bar.
    Daily,
}

impl BarKind {
    fn tag(self) -> &'static str {
        match self {
            BarKind::Minute => "b",
            BarKind::Updated => "u",
            BarKind::Daily => "d",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StreamBar {
    pub symbol: String,
    pub kind: BarKind,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
    pub volume: Decimal,
    /// The bar's start.
    pub timestamp: DateTime<Utc>,
    pub trade_count: Option<u64>,
    pub vwap: Option<Decimal>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TradingStatus {
    pub symbol: String,
    pub status_code: String,
    pub status_message: String,
    pub reason_code: String,
    pub reason_message: String,
    pub timestamp: DateTime<Utc>,
}

/// A limit-up/limit-down band (`l`): trades outside `[down, up]` are not allowed now.
#[derive(Debug, Clone, PartialEq)]
pub struct Luld {
    pub symbol: String,
    pub limit_up: Decimal,
    pub limit_down: Decimal,
    /// `B` (both bands in force), `C` (closing), …
    pub indicator: String,
    pub timestamp: DateTime<Utc>,
}

/// The subscription set the server confirms (the whole set, after every change).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionSet {
    pub trades: Vec<String>,
    pub quotes: Vec<String>,
    pub bars: Vec<String>,
    pub updated_bars: Vec<String>,
    pub daily_bars: Vec<String>,
    pub statuses: Vec<String>,
    pub lulds: Vec<String>,
    pub corrections: Vec<String>,
    pub cancel_errors: Vec<String>,
}

/// One message of a market-data frame. The rare kinds are boxed, so that a message is no
/// larger than a quote (every message is moved a few times on its way to the feed).
#[derive(Debug, Clone, PartialEq)]
pub enum DataMessage {
    Trade(StreamTrade),
    Quote(StreamQuote),
    Bar(Box<StreamBar>),
    Status(Box<TradingStatus>),
    Luld(Luld),
    Success {
        msg: String,
    },
    Subscription(Box<SubscriptionSet>),
    Error {
        code: u16,
        msg: String,
    },
    /// A message type we do not model (corrections, LULDs, imbalances, or something new).
    Other {
        kind: String,
    },
}

impl DataMessage {
    /// When the event this message tells of happened (`None`: a control message, not data).
    pub fn time(&self) -> Option<DateTime<Utc>> {
        match self {
            DataMessage::Trade(t) => Some(t.timestamp),
            DataMessage::Quote(q) => Some(q.timestamp),
            DataMessage::Bar(b) => Some(b.timestamp),
            DataMessage::Status(s) => Some(s.timestamp),
            DataMessage::Luld(l) => Some(l.timestamp),
            DataMessage::Success { .. }
            | DataMessage::Subscription(_)
            | DataMessage::Error { .. }
            | DataMessage::Other { .. } => None,
        }
    }

    /// The trade this message is, if it is one.
    pub fn as_trade(&self) -> Option<&StreamTrade> {
        match self {
            DataMessage::Trade(t) => Some(t),
            _ => None,
        }
    }

    pub fn trade(symbol: &str, t: &Trade) -> DataMessage {
        DataMessage::Trade(StreamTrade {
            symbol: symbol.into(),
            id: t.i,
            exchange: Code::new(&t.x),
            price: t.p,
            size: t.s,
            timestamp: t.t,
            conditions: t.c.iter().collect(),
            tape: Code::new(&t.z),
        })
    }

    pub fn quote(symbol: &str, q: &Quote) -> DataMessage {
        DataMessage::Quote(StreamQuote {
            symbol: symbol.into(),
            bid_exchange: Code::new(&q.bx),
            bid_price: q.bp,
            bid_size: q.bs,
            ask_exchange: Code::new(&q.ax),
            ask_price: q.ap,
            ask_size: q.as_,
            timestamp: q.t,
            conditions: q.c.iter().collect(),
            tape: Code::new(&q.z),
        })
    }

    pub fn bar(symbol: &str, kind: BarKind, b: &Bar) -> DataMessage {
        DataMessage::Bar(Box::new(StreamBar {
            symbol: symbol.to_string(),
            kind,
            open: b.o,
            high: b.h,
            low: b.l,
            close: b.c,
            volume: b.v,
            timestamp: b.t,
            trade_count: b.n,
            vwap: b.vw,
        }))
    }
}

/// What a market-data client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ClientAction {
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(flatten)]
    pub channels: ChannelLists,
}

/// Symbols per channel in a subscribe or unsubscribe request.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ChannelLists {
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub trades: Vec<String>,
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub quotes: Vec<String>,
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub bars: Vec<String>,
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub updated_bars: Vec<String>,
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub daily_bars: Vec<String>,
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub statuses: Vec<String>,
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub lulds: Vec<String>,
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

impl ChannelLists {
    pub fn is_empty(&self) -> bool {
        self.lists().iter().all(|l| l.is_empty())
    }

    /// The lists in a fixed order: trades, quotes, bars, updatedBars, dailyBars, statuses, lulds.
    pub fn lists(&self) -> [&Vec<String>; 7] {
        [
            &self.trades,
            &self.quotes,
            &self.bars,
            &self.updated_bars,
            &self.daily_bars,
            &self.statuses,
            &self.lulds,
        ]
    }

    pub fn lists_mut(&mut self) -> [&mut Vec<String>; 7] {
        [
            &mut self.trades,
            &mut self.quotes,
            &mut self.bars,
            &mut self.updated_bars,
            &mut self.daily_bars,
            &mut self.statuses,
            &mut self.lulds,
        ]
    }
}

impl ClientAction {
    pub fn auth(key: &str, secret: &str) -> Self {
        ClientAction {
            action: "auth".into(),
            key: Some(key.into()),
            secret: Some(secret.into()),
            ..Default::default()
        }
    }
    pub fn subscribe(channels: ChannelLists) -> Self {
        ClientAction {
            action: "subscribe".into(),
            channels,
            ..Default::default()
        }
    }
    pub fn unsubscribe(channels: ChannelLists) -> Self {
        ClientAction {
            action: "unsubscribe".into(),
            channels,
            ..Default::default()
        }
    }
}
