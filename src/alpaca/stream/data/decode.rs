//! Decoding by hand: `"T"` first, then the fields of that message type, without buffering
//! the map; unknown fields skipped, unknown types [`DataMessage::Other`].

use super::*;

/// A map key, borrowed from the input when it can be.
pub(super) enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    pub(super) fn as_str(&self) -> &str {
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
            "b" => bar(map, BarKind::Minute).map(|b| DataMessage::Bar(Box::new(b))),
            "u" => bar(map, BarKind::Updated).map(|b| DataMessage::Bar(Box::new(b))),
            "d" => bar(map, BarKind::Daily).map(|b| DataMessage::Bar(Box::new(b))),
            "s" => status(map).map(|s| DataMessage::Status(Box::new(s))),
            "l" => luld(map).map(DataMessage::Luld),
            "success" | "error" => control(map, kind.as_str() == "error"),
            "subscription" => subscription(map).map(|s| DataMessage::Subscription(Box::new(s))),
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
            "S" => symbol = Some(map.next_value::<super::Symbol>()?),
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
            "S" => q.0 = Some(map.next_value::<super::Symbol>()?),
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
