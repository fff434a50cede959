//! The first pass over a JSON frame: its wanted trades decoded, its other messages only
//! measured. JSON says nothing of a value's length, so each message is stepped over by its
//! brackets (a string's quotes and escapes honoured: a `{` or `"` inside one is text); a
//! message is known for a trade by how Alpaca writes it, `{"T":"t"` first. A frame written
//! otherwise (a space after the brace, another key first, a type with an escape in it) is
//! left to serde whole (`None`), as is one whose brackets do not close or that has anything
//! but `,` between its messages. A trade with a backslash in it is decoded to see whether it
//! carries a wanted code written with an escape.
//! The steps only find where messages start: serde decodes each one and checks it.

use super::{MAX_DEPTH, TradesFirst, Wanted, code_hits};
use crate::alpaca::stream::data::{DataMessage, StreamTrade};
use serde::Deserialize;

/// How Alpaca begins a trade, and any message.
const TRADE: &[u8] = br#"{"T":"t""#;
const MESSAGE: &[u8] = br#"{"T":""#;

/// The first pass over a JSON frame (see [`super::trades_first`] for msgpack's): `None`, and
/// the frame is decoded whole by serde.
pub fn trades_first(bytes: &[u8], wanted: Wanted<'_>) -> Option<TradesFirst> {
    // Where the wanted codes' bytes are, in order (none: serde reads the whole frame).
    let mut hits = match wanted {
        Wanted::Every => None,
        Wanted::WithCondition(codes) => Some(code_hits(bytes, codes)?.into_iter().peekable()),
    };
    let mut at = skip_space(bytes, 0);
    if bytes.get(at) != Some(&b'[') {
        return None;
    }
    at = skip_space(bytes, at + 1);
    // Without a backslash in the frame no quote is escaped: a message's end can be found
    // by searching rather than stepping (`flat_end`), and no code is escaped in a trade.
    let plain = memchr::memchr(b'\\', bytes).is_none();
    let cap = bytes.len() / 64;
    let (mut trades, mut order) = (Vec::with_capacity(cap), Vec::with_capacity(cap));
    if bytes.get(at) == Some(&b']') {
        return end(bytes, at, trades, order);
    }
    loop {
        let message = bytes.get(at..)?;
        // A type written with an escape (`"\u0074"` is `"t"`) could be a trade not known
        // for one here: serde reads the frame.
        if !message.starts_with(MESSAGE) || message.get(MESSAGE.len()) == Some(&b'\\') {
            return None;
        }
        let next = match plain.then(|| flat_end(bytes, at)).flatten() {
            Some(end) => end,
            None => value_end(bytes, at)?,
        };
        // A trade holding a backslash may carry a wanted code escaped: decoded to be sure.
        let first = message.starts_with(TRADE)
            && hits.as_mut().is_none_or(|hits| {
                while hits.next_if(|&hit| hit < at).is_some() {}
                hits.peek().is_some_and(|&hit| hit < next)
                    || (!plain && memchr::memchr(b'\\', &bytes[at..next]).is_some())
            });
        // A trade to read first that does not decode is serde's to report.
        let decoded = if first {
            Some(self::message(message)?)
        } else {
            None
        };
        match decoded {
            Some(DataMessage::Trade(trade)) if wanted.wants(&trade.conditions) => {
                trades.push(trade);
                order.push(None);
            }
            // Not a trade, or a code's bytes elsewhere in one (its symbol): with the rest.
            _ => order.push(Some(at)),
        }
        at = skip_space(bytes, next);
        match bytes.get(at) {
            Some(b',') => at = skip_space(bytes, at + 1),
            Some(b']') => return end(bytes, at, trades, order),
            _ => return None,
        }
    }
}

/// The pass's answer at the frame's `]`: nothing but white space may follow it.
fn end(
    bytes: &[u8],
    close: usize,
    trades: Vec<StreamTrade>,
    order: Vec<Option<usize>>,
) -> Option<TradesFirst> {
    (skip_space(bytes, close + 1) == bytes.len()).then_some(TradesFirst {
        trades,
        order,
        json: true,
    })
}

/// The message that starts `bytes` (whatever follows it is not read).
pub(super) fn message(bytes: &[u8]) -> Option<DataMessage> {
    DataMessage::deserialize(&mut serde_json::Deserializer::from_slice(bytes)).ok()
}

fn skip_space(bytes: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = bytes.get(at) {
        at += 1;
    }
    at
}

/// Where the object that opens at `start` ends (just past its `}`) when nothing in it is
/// an object and no quote in the frame is escaped, the way Alpaca writes a message: its
/// first `}` closes it if an even number of quotes comes before it (an odd number: the `}`
/// is inside a string). `None`: it is stepped over instead ([`value_end`]). Two searches
/// and a count, rather than a step per byte and a search per string.
fn flat_end(bytes: &[u8], start: usize) -> Option<usize> {
    let inner = start + 1;
    let close = inner + memchr::memchr2(b'{', b'}', bytes.get(inner..)?)?;
    let quotes = bytes[start..close].iter().filter(|&&b| b == b'"').count();
    (bytes[close] == b'}' && quotes % 2 == 0).then_some(close + 1)
}

/// Where the object or array that opens at `start` ends (just past its closing bracket), its
/// strings stepped over whole.
fn value_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0u8;
    let mut at = start;
    while let Some(&b) = bytes.get(at) {
        match b {
            b'"' => {
                at = string_end(bytes, at + 1)?;
                continue;
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return None;
                }
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(at + 1);
                }
            }
            _ => {}
        }
        at += 1;
    }
    None
}

/// Just past the quote that closes the string whose text starts at `at`.
fn string_end(bytes: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let found = at + memchr::memchr2(b'"', b'\\', bytes.get(at..)?)?;
        if bytes[found] == b'"' {
            return Some(found + 1);
        }
        // An escape: the character after the backslash is text, a quote included.
        at = found + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::fast::tests::{damaged, message as any_message};
    use super::super::tests::{agrees_when_damaged, codes_wanted, holds_the_wanted_first};
    use super::*;
    use crate::alpaca::stream::Codec;
    use proptest::prelude::*;

    /// The messages msgpack's tests draw that JSON's text carries (not a year before 1).
    fn message() -> impl Strategy<Value = DataMessage> {
        any_message().prop_filter("JSON carries it", |m| {
            Codec::Json
                .decode::<DataMessage>(&Codec::Json.encode(m))
                .is_ok()
        })
    }

    fn one_pass(bytes: &[u8]) -> Option<Vec<DataMessage>> {
        Codec::Json.decode(bytes).ok()
    }

    /// A flat JSON object as serde_json writes it, its strings full of brackets, commas and
    /// colons (no quote or backslash: none escaped), an array of them among its values.
    fn flat_object() -> impl Strategy<Value = Vec<u8>> {
        let text = "[{}\\[\\],: aT]{0,8}";
        let value = prop_oneof![
            text.prop_map(serde_json::Value::from),
            any::<i32>().prop_map(serde_json::Value::from),
            prop::collection::vec(text, 0..3).prop_map(serde_json::Value::from),
        ];
        prop::collection::btree_map("[a-zT]{1,2}", value, 0..6).prop_map(|fields| {
            serde_json::to_vec(&fields.into_iter().collect::<serde_json::Map<_, _>>())
                .unwrap_or_default()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1_000))]

        /// A message's end searched for is where it ends, as stepping to it finds: a `}` in
        /// a string is never taken for the end.
        #[test]
        fn the_end_searched_for_is_the_end(object in flat_object()) {
            prop_assert_eq!(value_end(&object, 0), Some(object.len()));
            if let Some(end) = flat_end(&object, 0) {
                prop_assert_eq!(end, object.len(), "{}", String::from_utf8_lossy(&object));
            }
        }

        /// Trades first, then the rest: the frame serde decodes, and its trades first.
        #[test]
        fn the_two_passes_decode_what_serde_does(messages in prop::collection::vec(message(), 0..20)) {
            let bytes = Codec::Json.encode(&messages);
            let one = one_pass(&bytes);
            prop_assert!(one.is_some());
            holds_the_wanted_first(trades_first(&bytes, Wanted::Every), &bytes, one.unwrap(), Wanted::Every)?;
        }

        /// With conditions wanted (one the frame's trades carry, if any, and one drawn at
        /// random), exactly the trades that carry one come first; the frame is still whole.
        #[test]
        fn only_the_trades_with_a_wanted_condition_come_first(
            messages in prop::collection::vec(message(), 0..20),
            pick in any::<prop::sample::Index>(),
            other in "[A-Z@ ]{1,5}",
        ) {
            let bytes = Codec::Json.encode(&messages);
            let one = one_pass(&bytes).unwrap();
            let codes = codes_wanted(&one, pick, other);
            let wanted = Wanted::WithCondition(&codes);
            holds_the_wanted_first(trades_first(&bytes, wanted), &bytes, one, wanted)?;
        }

        /// Damaged frames (a byte changed, added or removed, among them brackets, quotes and
        /// backslashes): the trades read first are trades serde reads from the frame, and
        /// the rest is what serde answers, or the frame goes to serde.
        #[test]
        fn a_damaged_frame_gets_serdes_answer_or_none(
            messages in prop::collection::vec(message(), 1..4),
            edits in prop::collection::vec(
                (any::<prop::sample::Index>(), prop::sample::select(b"{}[]\",:\\ tT0".to_vec()), 0u8..3),
                1..4,
            ),
        ) {
            let bytes = damaged(Codec::Json, &messages, &edits);
            let codes = ["@".to_string(), "I".to_string()];
            for wanted in [Wanted::Every, Wanted::WithCondition(&codes)] {
                agrees_when_damaged(trades_first(&bytes, wanted), &bytes, one_pass(&bytes), wanted)?;
            }
        }
    }

    #[test]
    fn text_that_looks_like_json_inside_a_string_is_text() {
        // A status whose reason holds brackets, quotes and a trade's opening, then a trade.
        let bytes = br#"[{"T":"s","S":"AAPL","sc":"H","sm":"x","rc":"T1","rm":"{\"T\":\"t\"]}[","t":"2024-01-02T15:00:00Z","z":"C"},{"T":"t","S":"MSFT","i":9,"x":"V","p":410.5,"s":3,"t":"2024-01-02T15:00:00Z","c":["@"],"z":"C"}]"#;
        let first = trades_first(bytes, Wanted::Every).unwrap();
        let trades: Vec<_> = first.trades().map(|t| t.symbol.to_string()).collect();
        assert_eq!(trades, ["MSFT"]);
        assert_eq!(first.rest(bytes), one_pass(bytes));
        assert_eq!(one_pass(bytes).map(|m| m.len()), Some(2));
        // Without a backslash in the frame (each message's end searched for, not stepped
        // to): brackets in a reason, and a trade whose condition is a bracket.
        for reason in ["]}[", "},{", "{", "}", "a}b}c"] {
            let frame = format!(
                r#"[{{"T":"s","S":"AAPL","sc":"H","sm":"x","rc":"T1","rm":"{reason}","t":"2024-01-02T15:00:00Z","z":"C"}},{{"T":"t","S":"MSFT","i":9,"x":"V","p":410.5,"s":3,"t":"2024-01-02T15:00:00Z","c":["}}"],"z":"C"}},{{"T":"t","S":"SPY","i":9,"x":"V","p":410.5,"s":3,"t":"2024-01-02T15:00:00Z","c":["@"],"z":"C"}}]"#
            );
            let bytes = frame.as_bytes();
            let first = trades_first(bytes, Wanted::Every).unwrap();
            let trades: Vec<_> = first.trades().map(|t| t.symbol.to_string()).collect();
            assert_eq!(trades, ["MSFT", "SPY"], "{frame}");
            assert_eq!(first.rest(bytes), one_pass(bytes));
            assert_eq!(one_pass(bytes).map(|m| m.len()), Some(3));
        }
    }

    #[test]
    fn no_wanted_trade_is_missed_for_an_escape() {
        let trade = |symbol: &str, code: &str| {
            format!(
                r#"{{"T":"t","S":"{symbol}","i":9,"x":"V","p":410.5,"s":3,"t":"2024-01-02T15:00:00Z","c":["{code}"],"z":"C"}}"#
            )
        };
        let codes = ["MARK".to_string()];
        let wanted = Wanted::WithCondition(&codes);
        // One trade carries the code as written, the other with an escape: both come first.
        let frame = format!("[{},{}]", trade("A", "MARK"), trade("B", r"\u004dARK"));
        let first = trades_first(frame.as_bytes(), wanted).unwrap();
        let symbols: Vec<_> = first.trades().map(|t| t.symbol.to_string()).collect();
        assert_eq!(symbols, ["A", "B"]);
        // A trade whose type is written with an escape: serde reads the frame.
        let escaped = format!(
            r#"[{}]"#,
            trade("A", "MARK").replacen(r#""t""#, r#""\u0074""#, 1)
        );
        assert!(one_pass(escaped.as_bytes()).is_some_and(|m| m[0].as_trade().is_some()));
        assert!(trades_first(escaped.as_bytes(), Wanted::Every).is_none());
    }

    #[test]
    fn a_frame_not_written_as_alpaca_writes_it_goes_to_serde() {
        let trade = r#"{"T":"t","S":"MSFT","i":9,"x":"V","p":410.5,"s":3,"t":"2024-01-02T15:00:00Z","c":["@"],"z":"C"}"#;
        let spaced = format!("[ {trade} , {trade} ]\n");
        assert_eq!(
            trades_first(spaced.as_bytes(), Wanted::Every).map(|f| f.trades().count()),
            Some(2)
        );
        for other in [
            format!("[{{ \"T\":\"t\"{}]", &trade[8..]),
            format!("[{{\"S\":\"MSFT\",{}]", &trade[1..]),
            format!("[{trade} {trade}]"),
            format!("[{trade}] x"),
            format!("{{{trade}}}"),
            format!("[{}]", &trade[..trade.len() - 1]),
        ] {
            assert!(
                trades_first(other.as_bytes(), Wanted::Every).is_none(),
                "{other}"
            );
        }
        // Arrays deep in a message that is not a trade: measured, and serde's answer for it
        // (an error) is the frame's.
        let deep = format!(r#"[{{"T":"q","x":{}1{}}}]"#, "[".repeat(8), "]".repeat(8));
        assert!(
            Codec::Json
                .decode::<Vec<DataMessage>>(deep.as_bytes())
                .is_err()
        );
        assert_eq!(
            trades_first(deep.as_bytes(), Wanted::Every).map(|f| f.rest(deep.as_bytes())),
            Some(None)
        );
        assert_eq!(
            trades_first(b" [ ] ", Wanted::Every).map(|f| f.rest(b" [ ] ")),
            Some(Some(Vec::new()))
        );
    }
}
