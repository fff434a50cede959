//! The msgpack frames a flood is made of, trades, quotes and bars, decoded straight from the bytes:
//! keys compared as bytes, a timestamp read in place (serde's path copies each into a `Vec`),
//! no visitor between a marker and its value. It answers `None` for anything else or anything
//! unusual (another message type, a string where a number was expected, a missing field), and
//! the caller then decodes the frame through serde, which also gives the error for a bad one.
//! When it answers, it answers what serde would: tests hold it to that, on frames we encode and
//! on those frames damaged at random.

use super::codes::{Code, Conditions};
use super::{BarKind, DataMessage, StreamBar, StreamQuote, StreamTrade, Symbol};
use crate::alpaca::num::{decimal_from_wire_f64, within_wire_bound};
use crate::alpaca::stream::FrameFold;
use crate::alpaca::stream::time::from_msgpack_ext;
use chrono::{DateTime, Utc};
use rmp::Marker;
use rust_decimal::Decimal;

/// A market-data frame of trades, quotes and bars only; `None`: let serde decode it.
pub fn frame(bytes: &[u8]) -> Option<Vec<DataMessage>> {
    let mut out = Vec::new();
    frame_into(bytes, &mut out, &mut ()).then_some(out)
}

/// [`frame`], its messages added to `out`; `false` (and `out` as it was): let serde decode it.
pub fn frame_into(bytes: &[u8], out: &mut Vec<DataMessage>, fold: &mut impl FrameFold) -> bool {
    let from = out.len();
    let mut c = Cursor(bytes);
    let mut read = || {
        let n = c.array_len()?;
        // A length from the wire sizes nothing beyond what the bytes could hold.
        out.reserve(n.min(bytes.len() / 16));
        for _ in 0..n {
            c.message_into(out, fold)?;
        }
        Some(())
    };
    if read().is_some() {
        return true;
    }
    out.truncate(from);
    false
}

pub(super) struct Cursor<'a>(pub(super) &'a [u8]);

impl<'a> Cursor<'a> {
    pub(super) fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn be<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    pub(super) fn marker(&mut self) -> Option<Marker> {
        self.byte().map(Marker::from_u8)
    }

    pub(super) fn len16(&mut self) -> Option<usize> {
        Some(usize::from(u16::from_be_bytes(self.be()?)))
    }

    pub(super) fn len32(&mut self) -> Option<usize> {
        usize::try_from(u32::from_be_bytes(self.be()?)).ok()
    }

    pub(super) fn array_len_of(&mut self, m: Marker) -> Option<usize> {
        match m {
            Marker::FixArray(n) => Some(usize::from(n)),
            Marker::Array16 => self.len16(),
            Marker::Array32 => self.len32(),
            _ => None,
        }
    }

    pub(super) fn array_len(&mut self) -> Option<usize> {
        let m = self.marker()?;
        self.array_len_of(m)
    }

    pub(super) fn map_len_of(&mut self, m: Marker) -> Option<usize> {
        match m {
            Marker::FixMap(n) => Some(usize::from(n)),
            Marker::Map16 => self.len16(),
            Marker::Map32 => self.len32(),
            _ => None,
        }
    }

    fn str_of(&mut self, m: Marker) -> Option<&'a [u8]> {
        let n = match m {
            Marker::FixStr(n) => usize::from(n),
            Marker::Str8 => usize::from(self.byte()?),
            Marker::Str16 => self.len16()?,
            Marker::Str32 => self.len32()?,
            _ => return None,
        };
        self.take(n)
    }

    /// A string's bytes, not checked for UTF-8 (keys are compared with ASCII names).
    pub(super) fn str_bytes(&mut self) -> Option<&'a [u8]> {
        let m = self.marker()?;
        self.str_of(m)
    }

    /// A string after its marker `m`, checked for UTF-8 (serde refuses a frame with one that
    /// is not).
    fn text_of(&mut self, m: Marker) -> Option<&'a str> {
        std::str::from_utf8(self.str_of(m)?).ok()
    }

    fn str(&mut self) -> Option<&'a str> {
        let m = self.marker()?;
        self.text_of(m)
    }

    /// A price or size: a float or an integer within the wire's bound (text goes to serde).
    fn decimal(&mut self) -> Option<Decimal> {
        let d = match self.marker()? {
            Marker::F64 => decimal_from_wire_f64(f64::from_be_bytes(self.be()?))?,
            Marker::F32 => decimal_from_wire_f64(f64::from(f32::from_be_bytes(self.be()?)))?,
            Marker::FixPos(n) => Decimal::from(n),
            Marker::FixNeg(n) => Decimal::from(n),
            m => {
                let (unsigned, signed) = self.int_of(m)?;
                unsigned.map_or(Decimal::from(signed), Decimal::from)
            }
        };
        within_wire_bound(d)
    }

    /// The value of an 8 to 64 bit integer marker: as unsigned when it was, else signed.
    fn int_of(&mut self, m: Marker) -> Option<(Option<u64>, i64)> {
        Some(match m {
            Marker::U8 => (Some(u64::from(self.byte()?)), 0),
            Marker::U16 => (Some(u64::from(u16::from_be_bytes(self.be()?))), 0),
            Marker::U32 => (Some(u64::from(u32::from_be_bytes(self.be()?))), 0),
            Marker::U64 => (Some(u64::from_be_bytes(self.be()?)), 0),
            Marker::I8 => (None, i64::from(i8::from_be_bytes(self.be()?))),
            Marker::I16 => (None, i64::from(i16::from_be_bytes(self.be()?))),
            Marker::I32 => (None, i64::from(i32::from_be_bytes(self.be()?))),
            Marker::I64 => (None, i64::from_be_bytes(self.be()?)),
            _ => return None,
        })
    }

    /// A trade id: a non-negative integer.
    fn id(&mut self) -> Option<u64> {
        match self.marker()? {
            Marker::FixPos(n) => Some(u64::from(n)),
            m => match self.int_of(m)? {
                (Some(u), _) => Some(u),
                (None, i) => u64::try_from(i).ok(),
            },
        }
    }

    /// An exchange or tape code (`nil`: none).
    fn code(&mut self) -> Option<Code> {
        match self.marker()? {
            Marker::Null => Some(Code::default()),
            m => self.code_of(m),
        }
    }

    /// A code after its string marker `m`: the usual one to four ASCII bytes taken as they
    /// are, anything else checked as UTF-8 and cut as [`Code::new`] cuts it.
    fn code_of(&mut self, m: Marker) -> Option<Code> {
        if let Marker::FixStr(n @ 0..=4) = m {
            let bytes = self.take(usize::from(n))?;
            return Code::from_ascii(bytes)
                .or_else(|| std::str::from_utf8(bytes).ok().map(Code::new));
        }
        self.text_of(m).map(Code::new)
    }

    pub(super) fn conditions(&mut self) -> Option<Conditions> {
        let mut c = Conditions::default();
        let m = self.marker()?;
        if m == Marker::Null {
            return Some(c);
        }
        for _ in 0..self.array_len_of(m)? {
            let m = self.marker()?;
            c.push_code(self.code_of(m)?);
        }
        Some(c)
    }

    /// A msgpack Timestamp extension (type −1).
    fn timestamp(&mut self) -> Option<DateTime<Utc>> {
        let len = match self.marker()? {
            Marker::FixExt4 => 4,
            Marker::FixExt8 => 8,
            Marker::Ext8 => usize::from(self.byte()?),
            _ => return None,
        };
        if self.byte()? as i8 != -1 {
            return None;
        }
        from_msgpack_ext(self.take(len)?)
    }

    /// A key we do not read, and its value.
    fn unknown(&mut self, key: &[u8]) -> Option<()> {
        std::str::from_utf8(key).ok()?;
        self.skip()
    }

    /// Passes over a value of a key we do not read: scalars only (a nested value goes to serde).
    fn skip(&mut self) -> Option<()> {
        let n = match self.marker()? {
            Marker::Null | Marker::True | Marker::False | Marker::FixPos(_) | Marker::FixNeg(_) => {
                0
            }
            Marker::U8 | Marker::I8 => 1,
            Marker::U16 | Marker::I16 => 2,
            Marker::U32 | Marker::I32 | Marker::F32 => 4,
            Marker::U64 | Marker::I64 | Marker::F64 => 8,
            m @ (Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32) => {
                return self.text_of(m).map(drop);
            }
            _ => return None,
        };
        self.take(n).map(drop)
    }

    /// The next message, added to `out` (built where it goes, not returned and moved there);
    /// `fold` is told of it first, while it is still where it was built (read back from the
    /// vector straight after the copy into it, the read waited on the copy's stores, it
    /// seems: much of the routing's time).
    pub(super) fn message_into(
        &mut self,
        out: &mut Vec<DataMessage>,
        fold: &mut impl FrameFold,
    ) -> Option<()> {
        let m = self.marker()?;
        let entries = self.map_len_of(m)?.checked_sub(1)?;
        if self.str_bytes()? != b"T" {
            return None;
        }
        let message = match self.str_bytes()? {
            b"t" => DataMessage::Trade(self.trade(entries)?),
            b"q" => DataMessage::Quote(self.quote(entries)?),
            b"b" => self.bar(entries, BarKind::Minute)?,
            b"u" => self.bar(entries, BarKind::Updated)?,
            b"d" => self.bar(entries, BarKind::Daily)?,
            _ => return None,
        };
        fold.message(&message);
        out.push(message);
        Some(())
    }

    fn symbol(&mut self) -> Option<Symbol> {
        self.str().map(Symbol::from)
    }

    pub(super) fn trade(&mut self, entries: usize) -> Option<StreamTrade> {
        let (mut symbol, mut price, mut timestamp) = (None, None, None);
        let (mut id, mut size) = (0, Decimal::ZERO);
        let (mut exchange, mut tape, mut conditions) =
            (Code::default(), Code::default(), Conditions::default());
        for _ in 0..entries {
            match self.str_bytes()? {
                b"S" => symbol = Some(self.symbol()?),
                b"i" => id = self.id()?,
                b"x" => exchange = self.code()?,
                b"p" => price = Some(self.decimal()?),
                b"s" => size = self.decimal()?,
                b"t" => timestamp = Some(self.timestamp()?),
                b"c" => conditions = self.conditions()?,
                b"z" => tape = self.code()?,
                other => self.unknown(other)?,
            }
        }
        Some(StreamTrade {
            symbol: symbol?,
            id,
            exchange,
            price: price?,
            size,
            timestamp: timestamp?,
            conditions,
            tape,
        })
    }

    fn bar(&mut self, entries: usize, kind: BarKind) -> Option<DataMessage> {
        let (mut symbol, mut timestamp) = (None, None);
        let [mut open, mut high, mut low, mut close] = [None; 4];
        let (mut volume, mut trade_count, mut vwap) = (Decimal::ZERO, None, None);
        for _ in 0..entries {
            match self.str_bytes()? {
                b"S" => symbol = Some(self.str()?.to_string()),
                b"o" => open = Some(self.decimal()?),
                b"h" => high = Some(self.decimal()?),
                b"l" => low = Some(self.decimal()?),
                b"c" => close = Some(self.decimal()?),
                b"v" => volume = self.decimal()?,
                b"t" => timestamp = Some(self.timestamp()?),
                b"n" => trade_count = self.or_nil(Self::id)?,
                b"vw" => vwap = self.or_nil(Self::decimal)?,
                other => self.unknown(other)?,
            }
        }
        Some(DataMessage::Bar(Box::new(StreamBar {
            symbol: symbol?,
            kind,
            open: open?,
            high: high?,
            low: low?,
            close: close?,
            volume,
            timestamp: timestamp?,
            trade_count,
            vwap,
        })))
    }

    /// `nil` as `Some(None)`, else what `read` makes of the value.
    fn or_nil<T>(&mut self, read: fn(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.0.first() == Some(&0xc0) {
            self.byte();
            return Some(None);
        }
        read(self).map(Some)
    }

    fn quote(&mut self, entries: usize) -> Option<StreamQuote> {
        let (mut symbol, mut bid_price, mut ask_price, mut timestamp) = (None, None, None, None);
        let (mut bid_size, mut ask_size) = (Decimal::ZERO, Decimal::ZERO);
        let (mut bid_exchange, mut ask_exchange, mut tape, mut conditions) = (
            Code::default(),
            Code::default(),
            Code::default(),
            Conditions::default(),
        );
        for _ in 0..entries {
            match self.str_bytes()? {
                b"S" => symbol = Some(self.symbol()?),
                b"bx" => bid_exchange = self.code()?,
                b"bp" => bid_price = Some(self.decimal()?),
                b"bs" => bid_size = self.decimal()?,
                b"ax" => ask_exchange = self.code()?,
                b"ap" => ask_price = Some(self.decimal()?),
                b"as" => ask_size = self.decimal()?,
                b"t" => timestamp = Some(self.timestamp()?),
                b"c" => conditions = self.conditions()?,
                b"z" => tape = self.code()?,
                other => self.unknown(other)?,
            }
        }
        Some(StreamQuote {
            symbol: symbol?,
            bid_exchange,
            bid_price: bid_price?,
            bid_size,
            ask_exchange,
            ask_price: ask_price?,
            ask_size,
            timestamp: timestamp?,
            conditions,
            tape,
        })
    }
}

#[cfg(test)]
pub(in crate::alpaca::stream::data) mod tests {
    use super::*;
    use crate::alpaca::stream::{Codec, decode_data_frame_folding};
    use proptest::prelude::*;

    /// The messages a fold was told of since its last restart.
    #[derive(Default)]
    struct Told(Vec<DataMessage>);

    impl FrameFold for Told {
        fn message(&mut self, m: &DataMessage) {
            self.0.push(m.clone());
        }
        fn restart(&mut self) {
            self.0.clear();
        }
    }

    fn through_serde(bytes: &[u8]) -> Result<Vec<DataMessage>, String> {
        Codec::Msgpack.decode(bytes)
    }

    fn time() -> impl Strategy<Value = DateTime<Utc>> {
        (-100_000_000_000i64..100_000_000_000, 0u32..1_000_000_000)
            .prop_filter_map("in chrono's range", |(s, n)| DateTime::from_timestamp(s, n))
    }

    fn decimal() -> impl Strategy<Value = Decimal> {
        prop_oneof![
            (0i64..100_000_000_000, 0u32..7).prop_map(|(m, s)| Decimal::new(m, s)),
            (-1_000_000i64..1_000_000).prop_map(Decimal::from),
        ]
    }

    fn code() -> impl Strategy<Value = Code> {
        "[A-Z@é]{0,6}".prop_map(|s| Code::new(&s))
    }

    fn conditions() -> impl Strategy<Value = Conditions> {
        prop::collection::vec("[A-Z@ é]{1,2}", 0..6).prop_map(|codes| {
            let mut c = Conditions::default();
            for code in &codes {
                let _ = c.push(code);
            }
            c
        })
    }

    pub(in crate::alpaca::stream::data) fn message() -> impl Strategy<Value = DataMessage> {
        let symbol = "[A-Z./é]{1,30}";
        prop_oneof![
            (
                symbol,
                any::<u64>(),
                code(),
                decimal(),
                decimal(),
                time(),
                conditions(),
                code()
            )
                .prop_map(
                    |(symbol, id, exchange, price, size, timestamp, conditions, tape)| {
                        DataMessage::Trade(StreamTrade {
                            symbol: symbol.into(),
                            id,
                            exchange,
                            price,
                            size,
                            timestamp,
                            conditions,
                            tape,
                        })
                    }
                ),
            (
                symbol,
                (code(), decimal(), decimal()),
                (code(), decimal(), decimal()),
                time(),
                conditions(),
                code()
            )
                .prop_map(|(symbol, bid, ask, timestamp, conditions, tape)| {
                    DataMessage::Quote(StreamQuote {
                        symbol: symbol.into(),
                        bid_exchange: bid.0,
                        bid_price: bid.1,
                        bid_size: bid.2,
                        ask_exchange: ask.0,
                        ask_price: ask.1,
                        ask_size: ask.2,
                        timestamp,
                        conditions,
                        tape,
                    })
                }),
            (
                "[A-Z./é]{1,30}",
                prop_oneof![
                    Just(BarKind::Minute),
                    Just(BarKind::Updated),
                    Just(BarKind::Daily)
                ],
                [decimal(), decimal(), decimal(), decimal(), decimal()],
                time(),
                prop::option::of(any::<u64>()),
                prop::option::of(decimal()),
            )
                .prop_map(
                    |(
                        symbol,
                        kind,
                        [open, high, low, close, volume],
                        timestamp,
                        trade_count,
                        vwap,
                    )| {
                        DataMessage::Bar(Box::new(StreamBar {
                            symbol,
                            kind,
                            open,
                            high,
                            low,
                            close,
                            volume,
                            timestamp,
                            trade_count,
                            vwap,
                        }))
                    }
                ),
        ]
    }

    /// `messages` encoded, then damaged by `edits`: where, a byte, and how (0 changed, 1
    /// added, 2 removed).
    pub(in crate::alpaca::stream::data) fn damaged(
        codec: Codec,
        m: &[DataMessage],
        edits: &[Edit],
    ) -> Vec<u8> {
        let mut bytes = codec.encode(m);
        for (at, byte, how) in edits {
            let i = at.index(bytes.len());
            match how {
                0 => bytes[i] = *byte,
                1 => bytes.insert(i, *byte),
                _ => drop(bytes.remove(i)),
            }
            if bytes.is_empty() {
                break;
            }
        }
        bytes
    }

    pub(in crate::alpaca::stream::data) type Edit = (prop::sample::Index, u8, u8);

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Frames of trades, quotes and bars as we (and Alpaca) write them: decoded here, as
        /// serde does.
        #[test]
        fn it_decodes_trades_quotes_and_bars_as_serde_does(messages in prop::collection::vec(message(), 0..20)) {
            let bytes = Codec::Msgpack.encode(&messages);
            let fast = frame(&bytes);
            prop_assert!(fast.is_some());
            prop_assert_eq!(fast, through_serde(&bytes).ok());
        }

        /// The same frames damaged (a byte changed, added or removed): it answers what serde
        /// answers, or leaves the frame to serde.
        #[test]
        fn a_damaged_frame_gets_serdes_answer_or_none(
            messages in prop::collection::vec(message(), 1..4),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
        ) {
            let bytes = damaged(Codec::Msgpack, &messages, &edits);
            if let Some(fast) = frame(&bytes) {
                prop_assert_eq!(Ok(fast), through_serde(&bytes));
            }
        }

        /// Decoded into messages already held (the session decodes into what it gathers for
        /// the feed): a frame adds its messages after them, and a frame left to serde adds
        /// none, however far it got.
        #[test]
        fn a_frame_decoded_into_held_messages_adds_all_or_nothing(
            held in prop::collection::vec(message(), 0..4),
            messages in prop::collection::vec(message(), 1..4),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..3),
        ) {
            let bytes = damaged(Codec::Msgpack, &messages, &edits);
            let mut into = held.clone();
            let mut told = Told::default();
            let decoded = frame_into(&bytes, &mut into, &mut told);
            let mut expected = held.clone();
            if let Some(fast) = frame(&bytes) {
                prop_assert!(decoded);
                expected.extend(fast);
            } else {
                prop_assert!(!decoded);
            }
            prop_assert_eq!(&into, &expected);
            // Told of each message added, in order, as it was added: on a frame left to
            // serde, of those it got to (the caller restarts the fold).
            if decoded {
                prop_assert_eq!(&told.0[..], &into[held.len()..]);
            }
            // Through serde too: after a decode, told of exactly the frame's messages; after
            // an error, of none.
            let mut into = held.clone();
            let mut told = Told::default();
            match decode_data_frame_folding(Codec::Msgpack, &bytes, &mut into, &mut told) {
                Ok(()) => prop_assert_eq!(&told.0[..], &into[held.len()..]),
                Err(_) => {
                    prop_assert!(told.0.is_empty());
                    prop_assert_eq!(into, held);
                }
            }
        }
    }

    /// A one-trade frame: `T`, `S`, `p` 1.5 and `t`, then `extra` entries written by `write`.
    fn trade_with(extra: u32, write: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
        use rmp::encode::*;
        let mut b = Vec::new();
        write_array_len(&mut b, 1).unwrap();
        write_map_len(&mut b, 4 + extra).unwrap();
        for (k, v) in [("T", "t"), ("S", "AAPL")] {
            write_str(&mut b, k).unwrap();
            write_str(&mut b, v).unwrap();
        }
        write_str(&mut b, "p").unwrap();
        write_f64(&mut b, 1.5).unwrap();
        write_str(&mut b, "t").unwrap();
        write_ext_meta(&mut b, 4, -1).unwrap();
        b.extend_from_slice(&1_700_000_000u32.to_be_bytes());
        write(&mut b);
        b
    }

    #[test]
    fn other_kinds_and_unusual_values_are_left_to_serde() {
        use rmp::encode::*;
        let key = |b: &mut Vec<u8>, k: &str| write_str(b, k).unwrap();
        let plain = trade_with(0, |_| {});
        let scalar = trade_with(1, |b| {
            key(b, "e");
            write_uint(b, 7).unwrap();
        });
        for bytes in [&plain, &scalar] {
            assert!(frame(bytes).is_some());
            assert_eq!(frame(bytes).ok_or(String::new()), through_serde(bytes));
        }
        let left_to_serde = [
            // A price as text (serde reads it), a nested value under an unknown key (serde
            // skips it), a price past the bound and a key that is not UTF-8 (serde refuses).
            trade_with(1, |b| {
                key(b, "p");
                write_str(b, "1.25").unwrap();
            }),
            trade_with(1, |b| {
                key(b, "extra");
                write_array_len(b, 2).unwrap();
                write_uint(b, 1).unwrap();
                write_uint(b, 2).unwrap();
            }),
            trade_with(1, |b| {
                key(b, "p");
                write_f64(b, 1e20).unwrap();
            }),
            trade_with(1, |b| {
                b.extend_from_slice(&[0xa1, 0xff]);
                write_uint(b, 1).unwrap();
            }),
            rmp_serde::to_vec_named(&vec![serde_json::json!({"T": "s", "S": "AAPL", "sc": "H"})])
                .unwrap(),
            rmp_serde::to_vec_named(&vec![serde_json::json!({"S": "AAPL", "T": "t"})]).unwrap(),
            vec![0x91, 0xc0],
            vec![0xdd, 0xff, 0xff, 0xff, 0xff],
        ];
        let answers: Vec<bool> = left_to_serde
            .iter()
            .map(|bytes| {
                assert_eq!(frame(bytes), None, "{bytes:?}");
                let whole = crate::alpaca::stream::decode_data_frame(Codec::Msgpack, bytes);
                assert_eq!(whole.clone().map_err(|e| e.reason), through_serde(bytes));
                whole.is_ok()
            })
            .collect();
        assert_eq!(
            answers,
            [true, true, false, false, false, false, false, false]
        );
        assert_eq!(frame(&[0x90]), Some(Vec::new()));
    }

    #[test]
    fn pythons_msgpack_frame_decodes_alike() {
        let bytes = include_bytes!("../../../../tests/fuzz/seeds/data_frame_msgpack/batch.msgpack");
        let by_hand = frame(bytes);
        assert!(
            by_hand.as_ref().is_some_and(|v| v.len() >= 3),
            "{by_hand:?}"
        );
        assert_eq!(by_hand, through_serde(bytes).ok());
    }
}
