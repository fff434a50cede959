//! The simulator's flood: market data at a target rate (or as fast as the client reads), for
//! load benchmarks and overload tests (`POST /_sim/faults {"kind":"flood", …}`).
//!
//! The frames are generated ahead of time, when the flood starts on a connection: a ring of
//! `frames` frames of `batch` messages (trades, quotes and bars of the connection's subscribed
//! symbols, prices walking per symbol), encoded once in the connection's codec. Sending a frame
//! copies it and patches two things in place, so the generator is not what is measured: the
//! timestamp of every message (the simulator's clock, one value per frame) and the trade ids
//! (consecutive per connection from [`FLOOD_ID_BASE`], so a client can prove none was lost).
//! Both are written at a fixed width, found at generation through placeholder values.
//!
//! With `mark_every_ms`, every so often the next frame comes from a second ring whose last
//! message is a trade carrying the condition [`MARK`]: a probe strategy orders on it, and the
//! daemon measures the time from that frame's arrival to the order request leaving.

use crate::alpaca::stream::{
    BarKind, Code, Codec, DataMessage, StreamBar, StreamQuote, StreamTrade,
};
use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Flood trade ids are `FLOOD_ID_BASE + n`, n counting from 1 per connection.
pub const FLOOD_ID_BASE: u64 = 1_000_000_000_000;
/// The trade condition of a marked trade.
pub use crate::domain::MARK;
/// Written in place of every id at generation (13 digits, like every patched id).
const ID_PLACEHOLDER: u64 = 9_999_999_999_999;
/// Written in place of every timestamp at generation: 2001-02-03T04:05:06.123456789Z.
const STAMP_PLACEHOLDER_NS: i64 = 981_173_106_123_456_789;
/// Most frames sent in one turn of the connection's loop (it must still hear its client).
const MAX_FRAMES_PER_TURN: usize = 16;

fn default_batch() -> u32 {
    100
}
fn default_frames() -> u32 {
    256
}
fn default_quotes_pct() -> u8 {
    60
}
fn default_bars_pct() -> u8 {
    1
}
fn default_mark_symbols() -> u32 {
    10
}

/// What a flood sends; `msgs_per_s: 0` (and not `max`) stops it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FloodSpec {
    /// Target messages a second per connection.
    #[serde(default)]
    pub msgs_per_s: u32,
    /// Send as fast as the client reads (TCP back-pressure sets the rate); `msgs_per_s` is ignored.
    #[serde(default)]
    pub max: bool,
    /// Messages per frame.
    #[serde(default = "default_batch")]
    pub batch: u32,
    /// Frames in the pre-generated ring.
    #[serde(default = "default_frames")]
    pub frames: u32,
    /// Share of quotes, in percent (of the channels the connection subscribed).
    #[serde(default = "default_quotes_pct")]
    pub quotes_pct: u8,
    /// Share of minute bars, in percent; the rest are trades.
    #[serde(default = "default_bars_pct")]
    pub bars_pct: u8,
    /// A marked trade every this many milliseconds; 0: none.
    #[serde(default)]
    pub mark_every_ms: u32,
    /// Marked trades go round the first this many trade symbols (a strategy trades a few
    /// symbols while it watches all of them).
    #[serde(default = "default_mark_symbols")]
    pub mark_symbols: u32,
    /// Seed of the generated prices.
    #[serde(default)]
    pub seed: u64,
}

/// What `{}` means on the wire: every field at its default (and so no flood: rate 0).
impl Default for FloodSpec {
    fn default() -> Self {
        FloodSpec {
            msgs_per_s: 0,
            max: false,
            batch: default_batch(),
            frames: default_frames(),
            quotes_pct: default_quotes_pct(),
            bars_pct: default_bars_pct(),
            mark_every_ms: 0,
            mark_symbols: default_mark_symbols(),
            seed: 0,
        }
    }
}

impl FloodSpec {
    pub fn validate(&self) -> Result<(), String> {
        if self.msgs_per_s > 10_000_000 {
            return Err("flood msgs_per_s must be at most 10000000".into());
        }
        if !(1..=5000).contains(&self.batch) {
            return Err("flood batch must be between 1 and 5000 messages".into());
        }
        if !(1..=4096).contains(&self.frames) {
            return Err("flood frames must be between 1 and 4096".into());
        }
        if !(1..=4096).contains(&self.mark_symbols) {
            return Err("flood mark_symbols must be between 1 and 4096".into());
        }
        if u16::from(self.quotes_pct) + u16::from(self.bars_pct) > 100 {
            return Err("flood quotes_pct + bars_pct must be at most 100".into());
        }
        Ok(())
    }

    pub fn active(&self) -> bool {
        self.max || self.msgs_per_s > 0
    }
}

/// How many messages of each kind a frame holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub trades: u64,
    pub quotes: u64,
    pub bars: u64,
    pub marks: u64,
}

impl Counts {
    pub fn messages(&self) -> u64 {
        self.trades + self.quotes + self.bars
    }
}

/// One pre-encoded frame and where its placeholders are.
struct Template {
    bytes: Vec<u8>,
    stamps: Vec<usize>,
    ids: Vec<usize>,
    counts: Counts,
}

/// The symbols a connection subscribed, per channel.
#[derive(Debug, Clone, Default)]
pub struct Channels {
    pub trades: Vec<String>,
    pub quotes: Vec<String>,
    pub bars: Vec<String>,
}

/// A flood running on one connection.
pub struct Flood {
    codec: Codec,
    spec: FloodSpec,
    ring: Vec<Template>,
    marked: Vec<Template>,
    next: usize,
    next_marked: usize,
    ids_sent: u64,
    started: Instant,
    messages_sent: u64,
    next_mark_at: Option<Instant>,
}

/// One frame ready to send.
pub struct Frame {
    pub bytes: Vec<u8>,
    pub counts: Counts,
}

struct Walk {
    price: Vec<i64>,
}

impl Flood {
    /// Generates the rings; `None` when the connection subscribed nothing the flood can send.
    pub fn new(spec: FloodSpec, codec: Codec, channels: &Channels) -> Option<Flood> {
        if channels.trades.is_empty() && channels.quotes.is_empty() && channels.bars.is_empty() {
            return None;
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(spec.seed);
        let mut universe: Vec<&String> = channels
            .trades
            .iter()
            .chain(&channels.quotes)
            .chain(&channels.bars)
            .collect();
        universe.sort();
        universe.dedup();
        let index = |s: &String| universe.binary_search(&s).unwrap_or(0);
        // Prices in cents, from $20 to $500, one walk per symbol.
        let mut walk = Walk {
            price: (0..universe.len())
                .map(|_| rng.random_range(2_000..50_000))
                .collect(),
        };
        let mut cursors = [0usize; 3];
        let mut gen_frame = |rng: &mut rand_chacha::ChaCha8Rng, marked: Option<usize>| {
            let mut messages = Vec::with_capacity(spec.batch as usize);
            let mut counts = Counts::default();
            for _ in 0..spec.batch {
                let roll = rng.random_range(0..100u8);
                let kind = if roll < spec.quotes_pct && !channels.quotes.is_empty() {
                    1
                } else if roll < spec.quotes_pct + spec.bars_pct && !channels.bars.is_empty() {
                    2
                } else if !channels.trades.is_empty() {
                    0
                } else if !channels.quotes.is_empty() {
                    1
                } else {
                    2
                };
                let list = [&channels.trades, &channels.quotes, &channels.bars][kind];
                let symbol = &list[cursors[kind] % list.len()];
                cursors[kind] += 1;
                let p = &mut walk.price[index(symbol)];
                *p = (*p + rng.random_range(-3..=3)).max(100);
                let price = Decimal::new(*p, 2);
                messages.push(match kind {
                    0 => {
                        counts.trades += 1;
                        DataMessage::Trade(trade(symbol, price, rng.random_range(1..500), false))
                    }
                    1 => {
                        counts.quotes += 1;
                        let half = Decimal::new(rng.random_range(1..4), 2);
                        DataMessage::Quote(StreamQuote {
                            symbol: symbol.as_str().into(),
                            bid_exchange: Code::new("V"),
                            bid_price: price - half,
                            bid_size: Decimal::from(rng.random_range(1..40) * 100),
                            ask_exchange: Code::new("V"),
                            ask_price: price + half,
                            ask_size: Decimal::from(rng.random_range(1..40) * 100),
                            timestamp: placeholder_time(),
                            conditions: ["R"].into_iter().collect(),
                            tape: Code::new("C"),
                        })
                    }
                    _ => {
                        counts.bars += 1;
                        let cents = Decimal::new(rng.random_range(1..50), 2);
                        DataMessage::Bar(Box::new(StreamBar {
                            symbol: symbol.clone(),
                            kind: BarKind::Minute,
                            open: price,
                            high: price + cents,
                            low: price - cents,
                            close: price,
                            volume: Decimal::from(rng.random_range(100..100_000)),
                            timestamp: placeholder_time(),
                            trade_count: Some(rng.random_range(1..500)),
                            vwap: Some(price),
                        }))
                    }
                });
            }
            if let Some(m) = marked {
                let symbol = &channels.trades[m % channels.trades.len()];
                let price = Decimal::new(walk.price[index(symbol)], 2);
                let last = messages.len() - 1;
                match &messages[last] {
                    DataMessage::Trade(_) => counts.trades -= 1,
                    DataMessage::Quote(_) => counts.quotes -= 1,
                    _ => counts.bars -= 1,
                }
                messages[last] = DataMessage::Trade(trade(symbol, price, 100, true));
                counts.trades += 1;
                counts.marks = 1;
            }
            template(codec, &messages, counts)
        };
        let ring: Vec<Template> = (0..spec.frames)
            .map(|_| gen_frame(&mut rng, None))
            .collect();
        let marked: Vec<Template> = if spec.mark_every_ms > 0 && !channels.trades.is_empty() {
            (0..channels.trades.len().min(spec.mark_symbols as usize))
                .map(|m| gen_frame(&mut rng, Some(m)))
                .collect()
        } else {
            Vec::new()
        };
        let now = Instant::now();
        Some(Flood {
            codec,
            next_mark_at: (!marked.is_empty()).then_some(now),
            spec,
            ring,
            marked,
            next: 0,
            next_marked: 0,
            ids_sent: 0,
            started: now,
            messages_sent: 0,
        })
    }

    pub fn spec(&self) -> &FloodSpec {
        &self.spec
    }

    /// The frames due now (at most a few, so the caller keeps serving its client), and when to
    /// ask again.
    pub fn due(&mut self, now: Instant, market_now: DateTime<Utc>) -> (Vec<Frame>, Instant) {
        let batch = u64::from(self.spec.batch);
        let frames = if self.spec.max {
            MAX_FRAMES_PER_TURN
        } else {
            let target = (now - self.started).as_secs_f64() * f64::from(self.spec.msgs_per_s);
            let behind = (target as u64).saturating_sub(self.messages_sent);
            (behind.div_ceil(batch) as usize).min(MAX_FRAMES_PER_TURN)
        };
        let stamp = stamp_bytes(self.codec, &market_now);
        let mut out = Vec::with_capacity(frames);
        for _ in 0..frames {
            let mark_due = self.next_mark_at.is_some_and(|at| at <= now);
            let template = if mark_due {
                let every = Duration::from_millis(u64::from(self.spec.mark_every_ms));
                self.next_mark_at = self.next_mark_at.map(|at| (at + every).max(now));
                self.next_marked = (self.next_marked + 1) % self.marked.len().max(1);
                &self.marked[self.next_marked]
            } else {
                self.next = (self.next + 1) % self.ring.len();
                &self.ring[self.next]
            };
            let mut bytes = template.bytes.clone();
            if let Some(stamp) = &stamp {
                for &at in &template.stamps {
                    if let Some(slot) = bytes.get_mut(at..at + stamp.len()) {
                        slot.copy_from_slice(stamp);
                    }
                }
            }
            for &at in &template.ids {
                self.ids_sent += 1;
                write_id(self.codec, &mut bytes, at, FLOOD_ID_BASE + self.ids_sent);
            }
            self.messages_sent += template.counts.messages();
            out.push(Frame {
                bytes,
                counts: template.counts,
            });
        }
        // A mark goes out with a frame the rate makes due, never on its own: waking for a
        // mark that is due before a frame is would find nothing to send (and woke the task at
        // once, again and again: a spin until the next frame was due).
        let again = if self.spec.max || out.len() == MAX_FRAMES_PER_TURN {
            now
        } else {
            now + Duration::from_millis(1)
        };
        (out, again)
    }
}

fn trade(symbol: &str, price: Decimal, size: i64, marked: bool) -> StreamTrade {
    StreamTrade {
        symbol: symbol.into(),
        id: ID_PLACEHOLDER,
        exchange: Code::new("V"),
        price,
        size: Decimal::from(size),
        timestamp: placeholder_time(),
        conditions: if marked {
            ["@", MARK].into_iter().collect()
        } else {
            ["@"].into_iter().collect()
        },
        tape: Code::new("C"),
    }
}

fn placeholder_time() -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(STAMP_PLACEHOLDER_NS)
}

/// The bytes that stand for `t` where a placeholder timestamp was (the same width).
fn stamp_bytes(codec: Codec, t: &DateTime<Utc>) -> Option<Vec<u8>> {
    let bytes = match codec {
        Codec::Json => t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string().into_bytes(),
        Codec::Msgpack => crate::alpaca::stream::time::to_msgpack_ext(t),
    };
    (bytes.len() == stamp_bytes_len(codec)).then_some(bytes)
}

fn stamp_bytes_len(codec: Codec) -> usize {
    match codec {
        Codec::Json => 30,
        Codec::Msgpack => 8,
    }
}

fn write_id(codec: Codec, bytes: &mut [u8], at: usize, id: u64) {
    match codec {
        Codec::Json => {
            let Some(slot) = bytes.get_mut(at..at + 13) else {
                return;
            };
            let mut v = id;
            for b in slot.iter_mut().rev() {
                *b = b'0' + (v % 10) as u8;
                v /= 10;
            }
        }
        Codec::Msgpack => {
            if let Some(slot) = bytes.get_mut(at..at + 8) {
                slot.copy_from_slice(&id.to_be_bytes());
            }
        }
    }
}

/// Encodes a frame and finds its placeholders.
fn template(codec: Codec, messages: &[DataMessage], counts: Counts) -> Template {
    let bytes = codec.encode(messages);
    let (stamp_key, id_key): (Vec<u8>, Vec<u8>) = match codec {
        Codec::Json => {
            let t = placeholder_time()
                .format("%Y-%m-%dT%H:%M:%S%.9fZ")
                .to_string();
            (
                format!("\"t\":\"{t}").into_bytes(),
                format!("\"i\":{ID_PLACEHOLDER}").into_bytes(),
            )
        }
        Codec::Msgpack => {
            let mut stamp = vec![0xa1, b't', 0xd7, 0xff];
            stamp.extend(crate::alpaca::stream::time::to_msgpack_ext(
                &placeholder_time(),
            ));
            let mut id = vec![0xa1, b'i', 0xcf];
            id.extend(ID_PLACEHOLDER.to_be_bytes());
            (stamp, id)
        }
    };
    let value_at = |key: &[u8]| match codec {
        Codec::Json => key.len() - if key.starts_with(b"\"t\"") { 30 } else { 13 },
        Codec::Msgpack => key.len() - 8,
    };
    Template {
        stamps: find_all(&bytes, &stamp_key)
            .map(|p| p + value_at(&stamp_key))
            .collect(),
        ids: find_all(&bytes, &id_key)
            .map(|p| p + value_at(&id_key))
            .collect(),
        bytes,
        counts,
    }
}

fn find_all<'a>(haystack: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(move |(_, w)| *w == needle)
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> FloodSpec {
        serde_json::from_value(
            serde_json::json!({"max": true, "batch": 50, "frames": 8, "mark_every_ms": 1}),
        )
        .unwrap()
    }

    fn channels() -> Channels {
        let s: Vec<String> = (0..20).map(|i| format!("S{i:03}")).collect();
        Channels {
            trades: s.clone(),
            quotes: s.clone(),
            bars: s,
        }
    }

    #[test]
    fn frames_decode_with_patched_times_and_consecutive_ids() {
        for codec in [Codec::Json, Codec::Msgpack] {
            let mut flood = Flood::new(spec(), codec, &channels()).unwrap();
            let t0: DateTime<Utc> = "2026-11-20T15:30:00.5Z".parse().unwrap();
            let mut ids = Vec::new();
            let mut kinds = Counts::default();
            let mut marks_seen = 0;
            let start = Instant::now();
            for turn in 0..4 {
                let now = start + Duration::from_millis(turn * 2);
                let (frames, again) = flood.due(now, t0 + chrono::Duration::seconds(turn as i64));
                assert_eq!((frames.len(), again), (MAX_FRAMES_PER_TURN, now));
                for f in frames {
                    let messages: Vec<DataMessage> = codec.decode(&f.bytes).unwrap();
                    assert_eq!(messages.len() as u64, f.counts.messages());
                    kinds.marks += f.counts.marks;
                    for m in messages {
                        let ts = match &m {
                            DataMessage::Trade(t) => {
                                ids.push(t.id);
                                kinds.trades += 1;
                                if t.conditions.contains(MARK) {
                                    marks_seen += 1;
                                }
                                t.timestamp
                            }
                            DataMessage::Quote(q) => {
                                kinds.quotes += 1;
                                q.timestamp
                            }
                            DataMessage::Bar(b) => {
                                kinds.bars += 1;
                                b.timestamp
                            }
                            other => panic!("{other:?}"),
                        };
                        assert_eq!(ts, t0 + chrono::Duration::seconds(turn as i64), "{codec:?}");
                    }
                }
            }
            assert!(
                ids.iter().zip(1..).all(|(id, n)| *id == FLOOD_ID_BASE + n),
                "{codec:?}"
            );
            assert!(kinds.trades > 0 && kinds.quotes > kinds.trades, "{kinds:?}");
            assert!(
                kinds.marks >= 2 && marks_seen == kinds.marks,
                "{kinds:?} {marks_seen}"
            );
        }
    }

    /// A flood at `msgs_per_s`, a mark every `mark_every_ms` (0: none).
    fn paced(codec: Codec, msgs_per_s: u32, mark_every_ms: u32) -> Flood {
        let mut s = spec();
        s.max = false;
        s.msgs_per_s = msgs_per_s;
        s.mark_every_ms = mark_every_ms;
        Flood::new(s, codec, &channels()).unwrap()
    }

    #[test]
    fn a_paced_flood_sends_what_the_rate_asks() {
        let mut flood = paced(Codec::Json, 100_000, 0);
        let start = flood.started;
        let t = Utc::now();
        let (frames, _) = flood.due(start, t);
        assert!(frames.is_empty());
        // 1 ms at 100,000/s: 100 messages, two frames of 50.
        let (frames, again) = flood.due(start + Duration::from_millis(1), t);
        assert_eq!(frames.len(), 2);
        assert_eq!(again, start + Duration::from_millis(2));
    }

    #[test]
    fn a_mark_due_between_frames_waits_for_the_next_frame() {
        let mut flood = paced(Codec::Msgpack, 1_000, 1);
        let start = flood.started;
        let t = Utc::now();
        let (frames, _) = flood.due(start + Duration::from_millis(1), t);
        assert_eq!((frames.len(), frames[0].counts.marks), (1, 1));
        // That frame's 50 messages are ahead of the rate for 50 ms while a mark is due each
        // millisecond: nothing to send, and the next look a millisecond on, not at once.
        for ms in [5, 20, 49] {
            let now = start + Duration::from_millis(ms);
            let (frames, again) = flood.due(now, t);
            assert!(frames.is_empty());
            assert_eq!(again, now + Duration::from_millis(1));
        }
        let (frames, _) = flood.due(start + Duration::from_millis(51), t);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].counts.marks, 1, "the mark goes with the frame");
    }

    #[test]
    fn specs_are_checked() {
        let mut s = spec();
        s.batch = 0;
        assert!(s.validate().is_err());
        s.batch = 10;
        s.quotes_pct = 90;
        s.bars_pct = 20;
        assert!(s.validate().is_err());
        assert!(
            serde_json::from_value::<FloodSpec>(serde_json::json!({"msgs_per_s": 1, "nope": 1}))
                .is_err()
        );
    }
}
