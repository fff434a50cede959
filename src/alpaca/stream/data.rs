//! The market-data stream's messages (§3 of the protocol notes), in JSON and msgpack.
//!
//! Decoding is hand-written: it reads `"T"` (always the first key at Alpaca) and then the fields
//! of that message type, without buffering the map, skipping fields it does not know. A message
//! type it does not model decodes as [`DataMessage::Other`] rather than failing the frame.
//! Encoding (used by the simulator) writes `"T"` first, as Alpaca does.

use super::time;
use crate::alpaca::model::{Bar, Quote, Trade};
use crate::alpaca::num::{WireDecimal, WireDecimalOpt, serialize_number};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use std::fmt;

/// An exchange or tape code of up to four ASCII bytes, stored without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Code([u8; 4]);

impl Code {
    pub fn new(text: &str) -> Code {
        let mut b = [0u8; 4];
        for (slot, byte) in b.iter_mut().zip(text.bytes()) {
            *slot = byte;
        }
        Code(b)
    }
    pub fn as_str(&self) -> &str {
        let len = self.0.iter().position(|b| *b == 0).unwrap_or(4);
        std::str::from_utf8(&self.0[..len]).unwrap_or("")
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Code {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Code;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a short code")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Code, E> {
                Ok(Code::new(v))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Code, E> {
                Ok(Code::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// The condition codes of a trade or quote, held inline: the tapes allow at most four codes of
/// one character (Alpaca sends them as strings), so decoding one never allocates. A code is
/// kept to its first four bytes, like exchange codes; codes past the fourth are ignored.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Conditions {
    codes: [Code; 4],
    len: u8,
}

impl Conditions {
    pub const MAX: usize = 4;

    /// Adds a code; `false` (and nothing changes) when four are held already.
    pub fn push(&mut self, code: &str) -> bool {
        match self.codes.get_mut(self.len as usize) {
            Some(slot) => {
                *slot = Code::new(code);
                self.len += 1;
                true
            }
            None => false,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.codes[..self.len as usize].iter().map(Code::as_str)
    }

    /// Whether `code` (compared on its first four bytes) is among them.
    pub fn contains(&self, code: &str) -> bool {
        let code = Code::new(code);
        self.codes[..self.len as usize].contains(&code)
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<S: AsRef<str>> FromIterator<S> for Conditions {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut c = Conditions::default();
        for s in iter {
            if !c.push(s.as_ref()) {
                break;
            }
        }
        c
    }
}

impl fmt::Debug for Conditions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for Conditions {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Conditions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Conditions;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of condition codes")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Conditions, A::Error> {
                let mut c = Conditions::default();
                while let Some(code) = seq.next_element::<Key>()? {
                    c.push(code.as_str());
                }
                Ok(c)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Conditions, E> {
                Ok(Conditions::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<Conditions, E> {
                Ok(Conditions::default())
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Conditions, D::Error> {
                d.deserialize_seq(V)
            }
        }
        d.deserialize_option(V)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StreamTrade {
    pub symbol: String,
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
    pub symbol: String,
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

/// One message of a market-data frame.
#[derive(Debug, Clone, PartialEq)]
pub enum DataMessage {
    Trade(StreamTrade),
    Quote(StreamQuote),
    Bar(StreamBar),
    Status(TradingStatus),
    Luld(Luld),
    Success {
        msg: String,
    },
    Subscription(SubscriptionSet),
    Error {
        code: u16,
        msg: String,
    },
    /// A message type we do not model (corrections, LULDs, imbalances, or something new).
    Other {
        kind: String,
    },
}

/// A map key, borrowed from the input when it can be.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_string()))
            }
            fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Key<'de>, E> {
                std::str::from_utf8(v)
                    .map(Key::Borrowed)
                    .map_err(|_| E::custom("key is not UTF-8"))
            }
        }
        d.deserialize_str(V)
    }
}

/// A timestamp in whichever form the format uses.
struct Ts(DateTime<Utc>);

impl<'de> Deserialize<'de> for Ts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        time::deserialize(d).map(Ts)
    }
}

fn missing<E: de::Error>(kind: &str, field: &str) -> E {
    E::custom(format!("{kind} message without {field}"))
}

impl<'de> Deserialize<'de> for DataMessage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(MessageVisitor)
    }
}

struct MessageVisitor;

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = DataMessage;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a market-data message (a map whose first key is \"T\")")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DataMessage, A::Error> {
        let first: Option<Key> = map.next_key()?;
        if first.as_ref().map(Key::as_str) != Some("T") {
            return Err(de::Error::custom(
                "\"T\" must be the first key of a message",
            ));
        }
        let kind: Key = map.next_value()?;
        match kind.as_str() {
            "t" => trade(map).map(DataMessage::Trade),
            "q" => quote(map).map(DataMessage::Quote),
            "b" => bar(map, BarKind::Minute).map(DataMessage::Bar),
            "u" => bar(map, BarKind::Updated).map(DataMessage::Bar),
            "d" => bar(map, BarKind::Daily).map(DataMessage::Bar),
            "s" => status(map).map(DataMessage::Status),
            "l" => luld(map).map(DataMessage::Luld),
            "success" | "error" => control(map, kind.as_str() == "error"),
            "subscription" => subscription(map).map(DataMessage::Subscription),
            other => {
                let kind = other.to_string();
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(DataMessage::Other { kind })
            }
        }
    }
}

fn luld<'de, A: MapAccess<'de>>(mut map: A) -> Result<Luld, A::Error> {
    let (mut symbol, mut up, mut down, mut indicator, mut ts) =
        (None, None, None, String::new(), None);
    while let Some(key) = map.next_key::<Key>()? {
        match key.as_str() {
            "S" => symbol = Some(map.next_value::<String>()?),
            "u" => up = Some(map.next_value::<WireDecimal>()?.0),
            "d" => down = Some(map.next_value::<WireDecimal>()?.0),
            "i" => indicator = map.next_value()?,
            "t" => ts = Some(map.next_value::<Ts>()?.0),
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(Luld {
        symbol: symbol.ok_or_else(|| missing("luld", "S"))?,
        limit_up: up.ok_or_else(|| missing("luld", "u"))?,
        limit_down: down.ok_or_else(|| missing("luld", "d"))?,
        indicator,
        timestamp: ts.ok_or_else(|| missing("luld", "t"))?,
    })
}

fn trade<'de, A: MapAccess<'de>>(mut map: A) -> Result<StreamTrade, A::Error> {
    let (mut symbol, mut id, mut exchange, mut price, mut size, mut ts, mut conditions, mut tape) = (
        None,
        0u64,
        Code::default(),
        None,
        None,
        None,
        Conditions::default(),
        Code::default(),
    );
    while let Some(key) = map.next_key::<Key>()? {
        match key.as_str() {
            "S" => symbol = Some(map.next_value::<String>()?),
            "i" => id = map.next_value()?,
            "x" => exchange = map.next_value()?,
            "p" => price = Some(map.next_value::<WireDecimal>()?.0),
            "s" => size = Some(map.next_value::<WireDecimal>()?.0),
            "t" => ts = Some(map.next_value::<Ts>()?.0),
            "c" => conditions = map.next_value()?,
            "z" => tape = map.next_value()?,
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(StreamTrade {
        symbol: symbol.ok_or_else(|| missing("trade", "S"))?,
        id,
        exchange,
        price: price.ok_or_else(|| missing("trade", "p"))?,
        size: size.unwrap_or_default(),
        timestamp: ts.ok_or_else(|| missing("trade", "t"))?,
        conditions,
        tape,
    })
}

fn quote<'de, A: MapAccess<'de>>(mut map: A) -> Result<StreamQuote, A::Error> {
    let mut q = (
        None,
        Code::default(),
        None,
        Decimal::ZERO,
        Code::default(),
        None,
        Decimal::ZERO,
        None,
        Conditions::default(),
        Code::default(),
    );
    while let Some(key) = map.next_key::<Key>()? {
        match key.as_str() {
            "S" => q.0 = Some(map.next_value::<String>()?),
            "bx" => q.1 = map.next_value()?,
            "bp" => q.2 = Some(map.next_value::<WireDecimal>()?.0),
            "bs" => q.3 = map.next_value::<WireDecimal>()?.0,
            "ax" => q.4 = map.next_value()?,
            "ap" => q.5 = Some(map.next_value::<WireDecimal>()?.0),
            "as" => q.6 = map.next_value::<WireDecimal>()?.0,
            "t" => q.7 = Some(map.next_value::<Ts>()?.0),
            "c" => q.8 = map.next_value()?,
            "z" => q.9 = map.next_value()?,
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(StreamQuote {
        symbol: q.0.ok_or_else(|| missing("quote", "S"))?,
        bid_exchange: q.1,
        bid_price: q.2.ok_or_else(|| missing("quote", "bp"))?,
        bid_size: q.3,
        ask_exchange: q.4,
        ask_price: q.5.ok_or_else(|| missing("quote", "ap"))?,
        ask_size: q.6,
        timestamp: q.7.ok_or_else(|| missing("quote", "t"))?,
        conditions: q.8,
        tape: q.9,
    })
}

fn bar<'de, A: MapAccess<'de>>(mut map: A, kind: BarKind) -> Result<StreamBar, A::Error> {
    let (mut symbol, mut o, mut h, mut l, mut c, mut v, mut ts, mut n, mut vw) = (
        None,
        None,
        None,
        None,
        None,
        Decimal::ZERO,
        None,
        None,
        None,
    );
    while let Some(key) = map.next_key::<Key>()? {
        match key.as_str() {
            "S" => symbol = Some(map.next_value::<String>()?),
            "o" => o = Some(map.next_value::<WireDecimal>()?.0),
            "h" => h = Some(map.next_value::<WireDecimal>()?.0),
            "l" => l = Some(map.next_value::<WireDecimal>()?.0),
            "c" => c = Some(map.next_value::<WireDecimal>()?.0),
            "v" => v = map.next_value::<WireDecimal>()?.0,
            "t" => ts = Some(map.next_value::<Ts>()?.0),
            "n" => n = map.next_value::<Option<u64>>()?,
            "vw" => vw = map.next_value::<WireDecimalOpt>()?.0,
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(StreamBar {
        symbol: symbol.ok_or_else(|| missing("bar", "S"))?,
        kind,
        open: o.ok_or_else(|| missing("bar", "o"))?,
        high: h.ok_or_else(|| missing("bar", "h"))?,
        low: l.ok_or_else(|| missing("bar", "l"))?,
        close: c.ok_or_else(|| missing("bar", "c"))?,
        volume: v,
        timestamp: ts.ok_or_else(|| missing("bar", "t"))?,
        trade_count: n,
        vwap: vw,
    })
}

fn status<'de, A: MapAccess<'de>>(mut map: A) -> Result<TradingStatus, A::Error> {
    let mut s = (
        None,
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        None,
    );
    while let Some(key) = map.next_key::<Key>()? {
        match key.as_str() {
            "S" => s.0 = Some(map.next_value::<String>()?),
            "sc" => s.1 = map.next_value()?,
            "sm" => s.2 = map.next_value()?,
            "rc" => s.3 = map.next_value()?,
            "rm" => s.4 = map.next_value()?,
            "t" => s.5 = Some(map.next_value::<Ts>()?.0),
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(TradingStatus {
        symbol: s.0.ok_or_else(|| missing("status", "S"))?,
        status_code: s.1,
        status_message: s.2,
        reason_code: s.3,
        reason_message: s.4,
        timestamp: s.5.ok_or_else(|| missing("status", "t"))?,
    })
}

fn control<'de, A: MapAccess<'de>>(mut map: A, is_error: bool) -> Result<DataMessage, A::Error> {
    let (mut code, mut msg) = (0u16, String::new());
    while let Some(key) = map.next_key::<Key>()? {
        match key.as_str() {
            "code" => code = map.next_value()?,
            "msg" => msg = map.next_value()?,
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(if is_error {
        DataMessage::Error { code, msg }
    } else {
        DataMessage::Success { msg }
    })
}

fn subscription<'de, A: MapAccess<'de>>(mut map: A) -> Result<SubscriptionSet, A::Error> {
    let mut s = SubscriptionSet::default();
    while let Some(key) = map.next_key::<Key>()? {
        let list = match key.as_str() {
            "trades" => &mut s.trades,
            "quotes" => &mut s.quotes,
            "bars" => &mut s.bars,
            "updatedBars" => &mut s.updated_bars,
            "dailyBars" => &mut s.daily_bars,
            "statuses" => &mut s.statuses,
            "lulds" => &mut s.lulds,
            "corrections" => &mut s.corrections,
            "cancelErrors" => &mut s.cancel_errors,
            _ => {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
        };
        *list = map.next_value::<Option<Vec<String>>>()?.unwrap_or_default();
    }
    Ok(s)
}

/// A decimal written as a number.
struct Num<'a>(&'a Decimal);

impl Serialize for Num<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_number(self.0, s)
    }
}

struct Time<'a>(&'a DateTime<Utc>);

impl Serialize for Time<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        time::serialize(self.0, s)
    }
}

impl Serialize for DataMessage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            DataMessage::Trade(t) => {
                let mut m = s.serialize_map(Some(9))?;
                m.serialize_entry("T", "t")?;
                m.serialize_entry("S", &t.symbol)?;
                m.serialize_entry("i", &t.id)?;
                m.serialize_entry("x", &t.exchange)?;
                m.serialize_entry("p", &Num(&t.price))?;
                m.serialize_entry("s", &Num(&t.size))?;
                m.serialize_entry("c", &t.conditions)?;
                m.serialize_entry("t", &Time(&t.timestamp))?;
                m.serialize_entry("z", &t.tape)?;
                m.end()
            }
            DataMessage::Quote(q) => {
                let mut m = s.serialize_map(Some(11))?;
                m.serialize_entry("T", "q")?;
                m.serialize_entry("S", &q.symbol)?;
                m.serialize_entry("bx", &q.bid_exchange)?;
                m.serialize_entry("bp", &Num(&q.bid_price))?;
                m.serialize_entry("bs", &Num(&q.bid_size))?;
                m.serialize_entry("ax", &q.ask_exchange)?;
                m.serialize_entry("ap", &Num(&q.ask_price))?;
                m.serialize_entry("as", &Num(&q.ask_size))?;
                m.serialize_entry("c", &q.conditions)?;
                m.serialize_entry("t", &Time(&q.timestamp))?;
                m.serialize_entry("z", &q.tape)?;
                m.end()
            }
            DataMessage::Bar(b) => {
                let mut m = s.serialize_map(Some(10))?;
                m.serialize_entry("T", b.kind.tag())?;
                m.serialize_entry("S", &b.symbol)?;
                m.serialize_entry("o", &Num(&b.open))?;
                m.serialize_entry("h", &Num(&b.high))?;
                m.serialize_entry("l", &Num(&b.low))?;
                m.serialize_entry("c", &Num(&b.close))?;
                m.serialize_entry("v", &Num(&b.volume))?;
                m.serialize_entry("t", &Time(&b.timestamp))?;
                m.serialize_entry("n", &b.trade_count)?;
                m.serialize_entry("vw", &b.vwap.as_ref().map(Num))?;
                m.end()
            }
            DataMessage::Status(st) => {
                let mut m = s.serialize_map(Some(8))?;
                m.serialize_entry("T", "s")?;
                m.serialize_entry("S", &st.symbol)?;
                m.serialize_entry("sc", &st.status_code)?;
                m.serialize_entry("sm", &st.status_message)?;
                m.serialize_entry("rc", &st.reason_code)?;
                m.serialize_entry("rm", &st.reason_message)?;
                m.serialize_entry("t", &Time(&st.timestamp))?;
                m.serialize_entry("z", "C")?;
                m.end()
            }
            DataMessage::Luld(l) => {
                let mut m = s.serialize_map(Some(7))?;
                m.serialize_entry("T", "l")?;
                m.serialize_entry("S", &l.symbol)?;
                m.serialize_entry("u", &Num(&l.limit_up))?;
                m.serialize_entry("d", &Num(&l.limit_down))?;
                m.serialize_entry("i", &l.indicator)?;
                m.serialize_entry("t", &Time(&l.timestamp))?;
                m.serialize_entry("z", "C")?;
                m.end()
            }
            DataMessage::Success { msg } => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("T", "success")?;
                m.serialize_entry("msg", msg)?;
                m.end()
            }
            DataMessage::Error { code, msg } => {
                let mut m = s.serialize_map(Some(3))?;
                m.serialize_entry("T", "error")?;
                m.serialize_entry("code", code)?;
                m.serialize_entry("msg", msg)?;
                m.end()
            }
            DataMessage::Subscription(set) => {
                let mut m = s.serialize_map(Some(10))?;
                m.serialize_entry("T", "subscription")?;
                m.serialize_entry("trades", &set.trades)?;
                m.serialize_entry("quotes", &set.quotes)?;
                m.serialize_entry("bars", &set.bars)?;
                m.serialize_entry("updatedBars", &set.updated_bars)?;
                m.serialize_entry("dailyBars", &set.daily_bars)?;
                m.serialize_entry("statuses", &set.statuses)?;
                m.serialize_entry("lulds", &set.lulds)?;
                m.serialize_entry("corrections", &set.corrections)?;
                m.serialize_entry("cancelErrors", &set.cancel_errors)?;
                m.end()
            }
            DataMessage::Other { kind } => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("T", kind)?;
                m.end()
            }
        }
    }
}

impl DataMessage {
    pub fn trade(symbol: &str, t: &Trade) -> DataMessage {
        DataMessage::Trade(StreamTrade {
            symbol: symbol.to_string(),
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
            symbol: symbol.to_string(),
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
        DataMessage::Bar(StreamBar {
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
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    const DOC_FRAME: &str = r#"[{"T":"t","S":"AAPL","i":96921,"x":"D","p":126.55,"s":1,"t":"2021-02-22T15:51:44.208Z","c":["@","I"],"z":"C"},
        {"T":"q","S":"AMD","bx":"U","bp":87.66,"bs":1,"ax":"Q","ap":87.68,"as":4,"t":"2021-02-22T15:51:45.335689322Z","c":["R"],"z":"C"},
        {"T":"b","S":"SPY","o":388.985,"h":389.13,"l":388.975,"c":389.12,"v":49378,"t":"2021-02-22T19:15:00Z","n":66,"vw":388.99},
        {"T":"c","S":"AAPL","x":"V","oi":1,"op":1.0},
        {"T":"subscription","trades":["AAPL"],"quotes":["AMD","CLDR"],"bars":["*"],"updatedBars":[],"dailyBars":["VOO"],"statuses":["*"],"lulds":[],"corrections":["AAPL"],"cancelErrors":["AAPL"]},
        {"T":"error","code":406,"msg":"connection limit exceeded"}]"#;

    #[test]
    fn decodes_the_documented_messages() {
        let v: Vec<DataMessage> = serde_json::from_str(DOC_FRAME).unwrap();
        let DataMessage::Trade(t) = &v[0] else {
            panic!("{:?}", v[0])
        };
        assert_eq!(
            (
                t.symbol.as_str(),
                t.price,
                t.size,
                t.id,
                t.exchange.as_str()
            ),
            ("AAPL", dec!(126.55), dec!(1), 96921, "D")
        );
        assert_eq!(t.conditions.iter().collect::<Vec<_>>(), vec!["@", "I"]);
        let DataMessage::Quote(q) = &v[1] else {
            panic!()
        };
        assert_eq!(
            (q.bid_price, q.ask_price, q.ask_size),
            (dec!(87.66), dec!(87.68), dec!(4))
        );
        assert_eq!(q.timestamp.timestamp_subsec_nanos(), 335_689_322);
        let DataMessage::Bar(b) = &v[2] else { panic!() };
        assert_eq!(
            (b.open, b.vwap, b.trade_count, b.kind),
            (dec!(388.985), Some(dec!(388.99)), Some(66), BarKind::Minute)
        );
        assert_eq!(v[3], DataMessage::Other { kind: "c".into() });
        let DataMessage::Subscription(s) = &v[4] else {
            panic!()
        };
        assert_eq!(s.cancel_errors, vec!["AAPL"]);
        assert_eq!(
            v[5],
            DataMessage::Error {
                code: 406,
                msg: "connection limit exceeded".into()
            }
        );
    }

    #[test]
    fn json_and_msgpack_round_trip() {
        let v: Vec<DataMessage> = serde_json::from_str(DOC_FRAME).unwrap();
        let keep: Vec<DataMessage> = v
            .into_iter()
            .filter(|m| !matches!(m, DataMessage::Other { .. }))
            .collect();
        let json = serde_json::to_vec(&keep).unwrap();
        assert_eq!(
            serde_json::from_slice::<Vec<DataMessage>>(&json).unwrap(),
            keep
        );
        let mp = rmp_serde::to_vec_named(&keep).unwrap();
        assert_eq!(
            rmp_serde::from_slice::<Vec<DataMessage>>(&mp).unwrap(),
            keep
        );
        assert!(String::from_utf8_lossy(&json).starts_with(r#"[{"T":"t","#));
    }

    #[test]
    fn decodes_msgpack_written_by_pythons_msgpack() {
        // Made by Python's msgpack with msgpack.Timestamp, as alpaca-py's server side would.
        let bytes = include_bytes!("../../../tests/fuzz/seeds/data_frame_msgpack/batch.msgpack");
        let v: Vec<DataMessage> = rmp_serde::from_slice(bytes).unwrap();
        let DataMessage::Trade(t) = &v[0] else {
            panic!("{:?}", v[0])
        };
        assert_eq!(
            (t.price, t.timestamp.to_rfc3339()),
            (dec!(126.55), "2021-02-22T11:51:44.208+00:00".to_string())
        );
        let DataMessage::Bar(b) = &v[2] else { panic!() };
        assert_eq!(b.vwap, Some(dec!(388.99)));
    }

    #[test]
    fn conditions_are_held_inline_up_to_four() {
        let frame = r#"[{"T":"t","S":"A","p":1,"t":"2021-02-22T15:51:44Z","c":["@","F","T","I","Z"]},
            {"T":"t","S":"B","p":1,"t":"2021-02-22T15:51:44Z","c":null},
            {"T":"t","S":"C","p":1,"t":"2021-02-22T15:51:44Z","c":["LONGER"]}]"#;
        let v: Vec<DataMessage> = serde_json::from_str(frame).unwrap();
        let codes = |m: &DataMessage| match m {
            DataMessage::Trade(t) => t.conditions,
            other => panic!("{other:?}"),
        };
        // The tapes allow four; a fifth is ignored, not an error.
        assert_eq!(
            codes(&v[0]).iter().collect::<Vec<_>>(),
            ["@", "F", "T", "I"]
        );
        assert!(codes(&v[1]).is_empty());
        // Kept to four bytes, like exchange codes, and compared the same way.
        assert!(codes(&v[2]).contains("LONG") && codes(&v[2]).contains("LONGER"));
        let again: Vec<DataMessage> =
            rmp_serde::from_slice(&rmp_serde::to_vec_named(&v).unwrap()).unwrap();
        assert_eq!(again, v);
        assert_eq!(format!("{:?}", codes(&v[0])), r#"["@", "F", "T", "I"]"#);
    }

    #[test]
    fn bad_messages_fail_cleanly() {
        for bad in [
            r#"[{"S":"AAPL","T":"t"}]"#,
            r#"[{"T":"t","S":"AAPL","p":"abc","t":"2021-02-22T15:51:44Z"}]"#,
            r#"[{"T":"t","S":"AAPL","p":1}]"#,
            r#"[{"T":"q","S":"AAPL","bp":1,"ap":2,"t":12}]"#,
            r#"[{"T":"t","S":"AAP"#,
            r#"{"T":"t"}"#,
            r#"[1,2]"#,
        ] {
            assert!(
                serde_json::from_str::<Vec<DataMessage>>(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn actions_encode_like_the_sdks() {
        let sub = ClientAction::subscribe(ChannelLists {
            trades: vec!["AAPL".into()],
            bars: vec!["*".into()],
            ..Default::default()
        });
        assert_eq!(
            serde_json::to_string(&sub).unwrap(),
            r#"{"action":"subscribe","trades":["AAPL"],"bars":["*"]}"#
        );
        let go: ClientAction = serde_json::from_str(
            r#"{"action":"subscribe","trades":["AAPL"],"quotes":null,"news":null}"#,
        )
        .unwrap();
        assert_eq!(go.channels.trades, vec!["AAPL"]);
        assert!(go.channels.quotes.is_empty());
    }
}
