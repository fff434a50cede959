//! A frame's trades before the rest of it, for the strategies that act on each trade: the
//! first pass decodes the frame's trades (or only those the strategies want: [`Wanted`]) and
//! only measures its other messages (quotes and bars are stepped over, not read);
//! [`TradesFirst::rest`] then decodes those where they start. Msgpack here, JSON in
//! [`json`]. Each message is decoded once and the frame keeps its order. Whatever
//! [`fast::frame`] leaves to serde is left to the caller here too (`None`), who then decodes
//! the whole frame.
//!
//! [`fast::frame`]: super::fast::frame

pub mod json;

use super::codes::{Code, Conditions};
use super::fast::Cursor;
use super::{DataMessage, StreamTrade};

/// Values nested deeper than this are not stepped over (no market-data message nests at all).
const MAX_DEPTH: u8 = 8;

/// A frame's trades, decoded, and where each of its other messages starts.
#[derive(Debug)]
pub struct TradesFirst {
    trades: Vec<StreamTrade>,
    /// The frame's messages in order: `None` for the next of `trades`, else where a message
    /// to decode later starts.
    order: Vec<Option<usize>>,
    /// The frame is JSON (else msgpack).
    json: bool,
}

/// The trades a first pass decodes.
#[derive(Debug, Clone, Copy)]
pub enum Wanted<'a> {
    /// Every trade.
    Every,
    /// Only the trades that carry one of these conditions (the others are decoded with the
    /// rest): a probe, or a strategy that acts on some trades only.
    WithCondition(&'a [String]),
}

impl Wanted<'_> {
    /// Whether a trade with these conditions is wanted.
    pub fn wants(&self, conditions: &Conditions) -> bool {
        match self {
            Wanted::Every => true,
            Wanted::WithCondition(codes) => codes.iter().any(|c| conditions.contains(c)),
        }
    }
}

/// The first pass over a msgpack frame: its `wanted` trades decoded, the rest measured.
/// `None`, and the frame is decoded whole: no trade in it can carry a wanted code (its bytes
/// hold none: most frames, for a probe), a wanted trade [`fast`](super::fast) does not decode,
/// or bytes that are not msgpack.
pub fn trades_first(bytes: &[u8], wanted: Wanted<'_>) -> Option<TradesFirst> {
    if let Wanted::WithCondition(codes) = wanted {
        code_hits(bytes, codes)?;
    }
    let mut c = Cursor(bytes);
    let n = c.array_len()?;
    let cap = n.min(bytes.len() / 16);
    let (mut trades, mut order) = (Vec::with_capacity(cap), Vec::with_capacity(cap));
    for _ in 0..n {
        let at = bytes.len() - c.0.len();
        match c.trade_or_step(wanted)? {
            Some(trade) => {
                trades.push(trade);
                order.push(None);
            }
            None => order.push(Some(at)),
        }
    }
    Some(TradesFirst {
        trades,
        order,
        json: false,
    })
}

/// Where `codes`' bytes are in `bytes`, in order (`None`: nowhere, and no trade in it can
/// carry one). A decoded condition is the wire's first four bytes, so a trade that carries a
/// code has that code's (first four) bytes in the frame (in JSON, unless written with an
/// escape: [`json`] decodes a trade with a backslash to see).
fn code_hits(bytes: &[u8], codes: &[String]) -> Option<Vec<usize>> {
    let mut hits = Vec::new();
    for c in codes {
        hits.extend(memchr::memmem::find_iter(
            bytes,
            Code::new(c).as_str().as_bytes(),
        ));
    }
    hits.sort_unstable();
    (!hits.is_empty()).then_some(hits)
}

impl TradesFirst {
    /// The frame's trades, in order.
    pub fn trades(&self) -> impl Iterator<Item = &StreamTrade> {
        self.trades.iter()
    }

    /// The whole frame, in order, its other messages decoded from `bytes` (the frame this
    /// first pass read). `None`: one of them is left to serde.
    pub fn rest(self, bytes: &[u8]) -> Option<Vec<DataMessage>> {
        let mut out = Vec::with_capacity(self.order.len());
        let mut trades = self.trades.into_iter();
        for slot in self.order {
            match slot {
                None => out.push(DataMessage::Trade(trades.next()?)),
                Some(at) if self.json => out.push(json::message(bytes.get(at..)?)?),
                Some(at) => Cursor(bytes.get(at..)?).message_into(&mut out, &mut ())?,
            }
        }
        Some(out)
    }
}

impl Cursor<'_> {
    /// The next message if it is a `wanted` trade; any other is stepped over (`Some(None)`).
    fn trade_or_step(&mut self, wanted: Wanted<'_>) -> Option<Option<StreamTrade>> {
        let m = self.marker()?;
        let entries = self.map_len_of(m)?.checked_sub(1)?;
        if self.str_bytes()? != b"T" {
            return None;
        }
        if self.str_bytes()? == b"t" {
            if let Wanted::Every = wanted {
                return self.trade(entries).map(Some);
            }
            // Read ahead on a copy: a trade that carries a wanted code is decoded from here,
            // one that does not is already stepped over.
            let mut ahead = Cursor(self.0);
            if ahead.carries_any(entries, wanted)? {
                return self.trade(entries).map(Some);
            }
            self.0 = ahead.0;
            return Some(None);
        }
        self.step_each(entries.checked_mul(2)?, 0)?;
        Some(None)
    }

    /// Whether the trade whose `entries` fields come next is `wanted`: its conditions read as
    /// the decoder reads them (the last `c` if two), nothing else decoded.
    fn carries_any(&mut self, entries: usize, wanted: Wanted<'_>) -> Option<bool> {
        let mut carries = false;
        for _ in 0..entries {
            if self.str_bytes()? == b"c" {
                carries = wanted.wants(&self.conditions()?);
            } else {
                self.step(0)?;
            }
        }
        Some(carries)
    }

    /// Steps over one value of any type, its bytes not read (msgpack's markers by their
    /// bytes: the common short forms first).
    fn step(&mut self, depth: u8) -> Option<()> {
        let b = self.byte()?;
        let n = match b {
            0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => 0,
            0xa0..=0xbf => usize::from(b & 0x1f),
            0xcb | 0xcf | 0xd3 => 8,
            0xca | 0xce | 0xd2 => 4,
            0xcd | 0xd1 => 2,
            0xcc | 0xd0 => 1,
            // An extension's type byte and its data.
            0xd4 => 2,
            0xd5 => 3,
            0xd6 => 5,
            0xd7 => 9,
            0xd8 => 17,
            0xc7 => usize::from(self.byte()?) + 1,
            0xc8 => self.len16()? + 1,
            0xc9 => self.len32()?.checked_add(1)?,
            0xc4 | 0xd9 => usize::from(self.byte()?),
            0xc5 | 0xda => self.len16()?,
            0xc6 | 0xdb => self.len32()?,
            0x90..=0x9f => return self.step_each(usize::from(b & 0x0f), depth + 1),
            0x80..=0x8f => return self.step_each(usize::from(b & 0x0f) * 2, depth + 1),
            0xdc => {
                let n = self.len16()?;
                return self.step_each(n, depth + 1);
            }
            0xdd => {
                let n = self.len32()?;
                return self.step_each(n, depth + 1);
            }
            0xde => {
                let n = self.len16()? * 2;
                return self.step_each(n, depth + 1);
            }
            0xdf => {
                let n = self.len32()?.checked_mul(2)?;
                return self.step_each(n, depth + 1);
            }
            0xc1 => return None,
        };
        self.take(n).map(drop)
    }

    /// Steps over `values` values at nesting `depth`.
    fn step_each(&mut self, values: usize, depth: u8) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        for _ in 0..values {
            self.step(depth)?;
        }
        Some(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::fast::{
        self,
        tests::{damaged, message},
    };
    use super::*;
    use crate::alpaca::stream::Codec;
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    /// The trades among `messages` that `wanted` wants, in order.
    pub(in crate::alpaca::stream::data) fn trades_of(
        messages: &[DataMessage],
        wanted: Wanted<'_>,
    ) -> Vec<StreamTrade> {
        messages
            .iter()
            .filter_map(DataMessage::as_trade)
            .filter(|t| wanted.wants(&t.conditions))
            .cloned()
            .collect()
    }

    /// The codes a test wants: `other` (drawn at random) and, when the frame `one` has
    /// trades with conditions, one of theirs.
    pub(in crate::alpaca::stream::data) fn codes_wanted(
        one: &[DataMessage],
        pick: prop::sample::Index,
        other: String,
    ) -> Vec<String> {
        let carried: Vec<String> = trades_of(one, Wanted::Every)
            .iter()
            .flat_map(|t| t.conditions.iter().map(String::from).collect::<Vec<_>>())
            .collect();
        let mut codes = vec![other];
        if !carried.is_empty() {
            codes.push(carried[pick.index(carried.len())].clone());
        }
        codes
    }

    /// A first pass over `bytes`, whose one pass is `one`: exactly the `wanted` trades come
    /// first and the frame is still whole; `None` only when no trade is wanted.
    pub(in crate::alpaca::stream::data) fn holds_the_wanted_first(
        first: Option<TradesFirst>,
        bytes: &[u8],
        one: Vec<DataMessage>,
        wanted: Wanted<'_>,
    ) -> Result<(), TestCaseError> {
        match first {
            None => prop_assert!(trades_of(&one, wanted).is_empty()),
            Some(first) => {
                let trades: Vec<StreamTrade> = first.trades().cloned().collect();
                prop_assert_eq!(trades, trades_of(&one, wanted));
                prop_assert_eq!(first.rest(bytes), Some(one));
            }
        }
        Ok(())
    }

    /// A first pass over a damaged frame: when its rest decodes, the trades that came first
    /// are the wanted trades of the whole, and the whole is the one pass's answer (`one`).
    pub(in crate::alpaca::stream::data) fn agrees_when_damaged(
        first: Option<TradesFirst>,
        bytes: &[u8],
        one: Option<Vec<DataMessage>>,
        wanted: Wanted<'_>,
    ) -> Result<(), TestCaseError> {
        if let Some(first) = first {
            let trades: Vec<StreamTrade> = first.trades().cloned().collect();
            if let Some(all) = first.rest(bytes) {
                prop_assert_eq!(&trades, &trades_of(&all, wanted));
                prop_assert_eq!(Some(all), one);
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1_000))]

        /// Trades first, then the rest: the frame the one pass decodes, and its trades first.
        /// (Compared with the one pass, not with `messages`: a generated code longer than a
        /// code holds is cut on the way.)
        #[test]
        fn the_two_passes_decode_what_one_does(messages in prop::collection::vec(message(), 0..20)) {
            let bytes = Codec::Msgpack.encode(&messages);
            let one = fast::frame(&bytes);
            prop_assert!(one.is_some());
            holds_the_wanted_first(trades_first(&bytes, Wanted::Every), &bytes, one.unwrap(), Wanted::Every)?;
        }

        /// With conditions wanted (one the frame's trades carry, if any, and one drawn at
        /// random), exactly the trades that carry one come first; the frame is still whole.
        /// A frame with none of them is left to the one pass.
        #[test]
        fn only_the_trades_with_a_wanted_condition_come_first(
            messages in prop::collection::vec(message(), 0..20),
            pick in any::<prop::sample::Index>(),
            other in "[A-Z@ ]{1,5}",
        ) {
            let bytes = Codec::Msgpack.encode(&messages);
            let one = fast::frame(&bytes).unwrap();
            let codes = codes_wanted(&one, pick, other);
            let wanted = Wanted::WithCondition(&codes);
            holds_the_wanted_first(trades_first(&bytes, wanted), &bytes, one, wanted)?;
        }

        /// Damaged frames: what the two passes answer is what the one pass answers, or the
        /// frame goes to the one pass (serde).
        #[test]
        fn a_damaged_frame_gets_the_one_pass_answer_or_none(
            messages in prop::collection::vec(message(), 1..4),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
        ) {
            let bytes = damaged(Codec::Msgpack, &messages, &edits);
            let codes = ["@".to_string(), "I".to_string()];
            for wanted in [Wanted::Every, Wanted::WithCondition(&codes)] {
                agrees_when_damaged(trades_first(&bytes, wanted), &bytes, fast::frame(&bytes), wanted)?;
            }
        }
    }

    #[test]
    fn values_of_any_type_are_stepped_over_and_deep_nesting_is_not() {
        use rmp::encode::*;
        // A status message (not decoded here) with nested and extension values, then a trade.
        let mut b = Vec::new();
        write_array_len(&mut b, 2).unwrap();
        write_map_len(&mut b, 4).unwrap();
        for (k, v) in [("T", "s"), ("S", "AAPL")] {
            write_str(&mut b, k).unwrap();
            write_str(&mut b, v).unwrap();
        }
        write_str(&mut b, "x").unwrap();
        write_map_len(&mut b, 1).unwrap();
        write_bin(&mut b, &[1, 2, 3]).unwrap();
        write_array_len(&mut b, 2).unwrap();
        write_ext_meta(&mut b, 16, 5).unwrap();
        b.extend_from_slice(&[7; 16]);
        write_nil(&mut b).unwrap();
        write_str(&mut b, "y").unwrap();
        write_f32(&mut b, 1.5).unwrap();
        let trade = DataMessage::Trade(StreamTrade {
            symbol: "MSFT".into(),
            id: 9,
            exchange: Default::default(),
            price: rust_decimal::Decimal::new(4105, 1),
            size: 3.into(),
            timestamp: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            conditions: Default::default(),
            tape: Default::default(),
        });
        b.extend_from_slice(&Codec::Msgpack.encode(std::slice::from_ref(&trade))[1..]);
        let first = trades_first(&b, Wanted::Every).unwrap();
        assert_eq!(first.trades().count(), 1);
        // The status is left to serde, as the one pass leaves it.
        assert_eq!(first.rest(&b), None);
        assert_eq!(fast::frame(&b), None);

        let mut deep = vec![0x91, 0x82, 0xa1, b'T', 0xa1, b'q', 0xa1, b'x'];
        deep.extend([0x91; 9]);
        deep.push(0xc0);
        assert!(trades_first(&deep, Wanted::Every).is_none());
    }
}
