//! The store's block cache: one series' bars over a span (a backtest asks a day at a time)
//! packed into one binary value, so a replay reads a few thousand blobs instead of parsing
//! ten million rows of decimal text.
//!
//! The rows in `bars` stay the truth: a block is made from them the first time a span is
//! read, and every write to a series drops the blocks its bars fall in (triggers on `bars`).
//! A block that does not decode (another version, damage) is read from the rows again and
//! replaced.
//!
//! Format (version 2): a version byte, the number of bars, then per bar, each a LEB128 varint:
//! `t` as seconds after the previous bar (the first: after the span's start), then open, high,
//! low, close, volume, VWAP and the trade count. A decimal is stored exactly (`180.70` stays
//! `180.70`, `180.7` stays `180.7`) as its mantissa's difference from a reference — the open
//! from the previous close, high, low and close from the open, volume and VWAP from the
//! previous bar's — zigzagged and shifted left by one; the low bit set means the scale
//! changed from the reference's, and the new scale follows. A minute bar takes 10–16 bytes.
//! VWAP and trade count are absent as 0, else the value + 1 (VWAP: its flag bit is in the
//! count byte, 1 present).

use crate::alpaca::model::Bar;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

const VERSION: u8 = 2;

fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A decimal as (mantissa, scale) when the format holds it exactly: a mantissa within ±2^61
/// (a delta must fit in 63 bits) and no negative zero.
fn parts(d: Decimal) -> Option<(i64, u32)> {
    if d.is_zero() && d.is_sign_negative() {
        return None;
    }
    let m = i64::try_from(d.mantissa()).ok()?;
    (m.unsigned_abs() < 1 << 61).then_some((m, d.scale()))
}

/// The packer's and the reader's state: the reference each value is taken from.
#[derive(Clone, Copy, Default)]
struct Refs {
    close: (i64, u32),
    volume: (i64, u32),
    vwap: (i64, u32),
}

fn put_decimal(out: &mut Vec<u8>, d: Decimal, reference: (i64, u32)) -> Option<(i64, u32)> {
    let (m, scale) = parts(d)?;
    let delta = m.checked_sub(reference.0)?;
    let changed = scale != reference.1;
    put(out, (zigzag(delta) << 1) | u64::from(changed));
    if changed {
        out.push(scale as u8);
    }
    Some((m, scale))
}

/// The block of `bars` (sorted by time, none before `from`); `None` when a value cannot be
/// packed exactly (the rows are then read every time).
pub fn encode(from: DateTime<Utc>, bars: &[Bar]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(2 + bars.len() * 16);
    out.push(VERSION);
    put(&mut out, bars.len() as u64);
    let mut prev = from.timestamp();
    let mut refs = Refs::default();
    for b in bars {
        let t = b.t.timestamp();
        put(&mut out, u64::try_from(t.checked_sub(prev)?).ok()?);
        prev = t;
        let open = put_decimal(&mut out, b.o, refs.close)?;
        put_decimal(&mut out, b.h, open)?;
        put_decimal(&mut out, b.l, open)?;
        refs.close = put_decimal(&mut out, b.c, open)?;
        refs.volume = put_decimal(&mut out, b.v, refs.volume)?;
        match b.vw {
            Some(vw) => {
                out.push(1);
                refs.vwap = put_decimal(&mut out, vw, refs.vwap)?;
            }
            None => out.push(0),
        }
        put(&mut out, b.n.map_or(Some(0), |n| n.checked_add(1))?);
    }
    Some(out)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    #[inline(always)]
    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    #[inline(always)]
    fn varint(&mut self) -> Option<u64> {
        let mut v: u64 = 0;
        let mut shift = 0;
        loop {
            let byte = self.byte()?;
            v |= u64::from(byte & 0x7f).checked_shl(shift)?;
            if byte < 0x80 {
                return Some(v);
            }
            shift += 7;
            if shift > 63 {
                return None;
            }
        }
    }

    #[inline(always)]
    fn decimal(&mut self, reference: (i64, u32)) -> Option<(Decimal, (i64, u32))> {
        let v = self.varint()?;
        let scale = if v & 1 == 1 {
            u32::from(self.byte()?)
        } else {
            reference.1
        };
        let m = reference.0.checked_add(unzigzag(v >> 1))?;
        if scale > Decimal::MAX_SCALE {
            return None;
        }
        let abs = m.unsigned_abs();
        let d = Decimal::from_parts(abs as u32, (abs >> 32) as u32, 0, m < 0, scale);
        Some((d, (m, scale)))
    }
}

/// The date of the last day a time fell on: a block's bars share a day or two, and making a
/// date from a day number is most of what `DateTime::from_timestamp` costs.
#[derive(Default)]
struct Day(Option<(i64, chrono::NaiveDate)>);

impl Day {
    /// The same `DateTime` as `DateTime::from_timestamp(t, 0)`.
    #[inline(always)]
    fn at(&mut self, t: i64) -> Option<DateTime<Utc>> {
        let (number, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
        let date = match self.0 {
            Some((n, date)) if n == number => date,
            _ => {
                let date = DateTime::from_timestamp(number.checked_mul(86_400)?, 0)?.date_naive();
                self.0 = Some((number, date));
                date
            }
        };
        let time =
            chrono::NaiveTime::from_num_seconds_from_midnight_opt(u32::try_from(secs).ok()?, 0)?;
        Some(chrono::NaiveDateTime::new(date, time).and_utc())
    }
}

/// A block read a bar at a time: where its next bar starts and what that bar's values are
/// taken from. It holds no borrow of the block: each step is given the same bytes.
#[derive(Default)]
pub struct Cursor {
    at: usize,
    left: usize,
    t: i64,
    day: Day,
    refs: Refs,
}

/// A block that does not decode (another version, damage, bytes past its last bar).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Damaged;

impl Cursor {
    /// At the first bar of `block`, a span's block starting at `from`; `Damaged` when it is
    /// not one.
    pub fn start(from: DateTime<Utc>, block: &[u8]) -> Result<Cursor, Damaged> {
        let mut r = Reader {
            bytes: block,
            at: 0,
        };
        if r.byte().ok_or(Damaged)? != VERSION {
            return Err(Damaged);
        }
        let n = r
            .varint()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or(Damaged)?;
        // Every bar takes at least eight bytes: a count beyond that is not a block.
        if n > block.len() / 8 {
            return Err(Damaged);
        }
        Ok(Cursor {
            at: r.at,
            left: n,
            t: from.timestamp(),
            day: Day::default(),
            refs: Refs::default(),
        })
    }

    /// The bars still to come.
    pub fn left(&self) -> usize {
        self.left
    }

    /// The next bar of `block` (the bytes `start` was given) into `slot`, written in place
    /// where it holds a bar (a replay keeps one per symbol): `None` after the last. Damaged,
    /// `slot` may hold part of a bar.
    #[inline]
    pub fn next_into(&mut self, block: &[u8], slot: &mut Option<Bar>) -> Result<(), Damaged> {
        if self.left == 0 {
            *slot = None;
            return if self.at == block.len() {
                Ok(())
            } else {
                Err(Damaged)
            };
        }
        let mut r = Reader {
            bytes: block,
            at: self.at,
        };
        let bar = slot.get_or_insert_with(|| Bar {
            t: DateTime::UNIX_EPOCH,
            o: Decimal::ZERO,
            h: Decimal::ZERO,
            l: Decimal::ZERO,
            c: Decimal::ZERO,
            v: Decimal::ZERO,
            n: None,
            vw: None,
        });
        self.read(&mut r, bar).ok_or(Damaged)?;
        self.at = r.at;
        self.left -= 1;
        Ok(())
    }

    #[inline(always)]
    fn read(&mut self, r: &mut Reader, bar: &mut Bar) -> Option<()> {
        let refs = &mut self.refs;
        self.t = self.t.checked_add(i64::try_from(r.varint()?).ok()?)?;
        let open;
        (bar.o, open) = r.decimal(refs.close)?;
        bar.h = r.decimal(open)?.0;
        bar.l = r.decimal(open)?.0;
        (bar.c, refs.close) = r.decimal(open)?;
        (bar.v, refs.volume) = r.decimal(refs.volume)?;
        bar.vw = match r.byte()? {
            0 => None,
            1 => {
                let (vw, vwap) = r.decimal(refs.vwap)?;
                refs.vwap = vwap;
                Some(vw)
            }
            _ => return None,
        };
        bar.n = match r.varint()? {
            0 => None,
            n => Some(n - 1),
        };
        bar.t = self.day.at(self.t)?;
        Some(())
    }
}

/// The bars of a block into `out` (cleared first); `None` when the block is not one.
#[cfg(test)]
pub fn decode(from: DateTime<Utc>, block: &[u8], out: &mut Vec<Bar>) -> Option<()> {
    out.clear();
    let mut cursor = Cursor::start(from, block).ok()?;
    out.reserve(cursor.left());
    let mut slot = None;
    loop {
        cursor.next_into(block, &mut slot).ok()?;
        match slot.take() {
            Some(bar) => out.push(bar),
            None => break,
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A day's date kept between bars gives the very time `from_timestamp` does.
        #[test]
        fn a_kept_day_gives_the_same_time(start in -10_000_000_000i64..10_000_000_000, steps in prop::collection::vec(0i64..200_000, 1..50)) {
            let mut day = Day::default();
            let mut t = start;
            for step in steps {
                t += step;
                prop_assert_eq!(day.at(t), DateTime::from_timestamp(t, 0));
            }
        }
    }

    fn decimal() -> impl Strategy<Value = Decimal> {
        (any::<i64>(), 0u32..=28).prop_map(|(m, s)| Decimal::new(m >> 3, s))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// What is packed comes back the same to the last digit and scale, or is not packed.
        #[test]
        fn a_block_gives_back_its_bars_exactly(
            rows in proptest::collection::vec(
                (0i64..100_000, decimal(), decimal(), decimal(), decimal(), decimal(),
                 proptest::option::of(decimal()), proptest::option::of(any::<u64>())),
                0..40,
            )
        ) {
            let from = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
            let mut t = from.timestamp();
            let bars: Vec<Bar> = rows
                .into_iter()
                .map(|(dt, o, h, l, c, v, vw, n)| {
                    t += dt;
                    Bar { t: DateTime::from_timestamp(t, 0).unwrap(), o, h, l, c, v, n, vw }
                })
                .collect();
            if let Some(block) = encode(from, &bars) {
                let mut back = Vec::new();
                prop_assert!(decode(from, &block, &mut back).is_some());
                prop_assert_eq!(back.len(), bars.len());
                for (a, b) in back.iter().zip(&bars) {
                    prop_assert_eq!(a, b);
                    for (x, y) in [(a.o, b.o), (a.h, b.h), (a.l, b.l), (a.c, b.c), (a.v, b.v)] {
                        prop_assert_eq!(x.to_string(), y.to_string());
                    }
                    prop_assert_eq!(a.vw.map(|v| v.to_string()), b.vw.map(|v| v.to_string()));
                }
                // Any byte cut off or changed is refused or decodes to bars, never a panic.
                for cut in (0..block.len()).step_by(7) {
                    let _ = decode(from, &block[..cut], &mut back);
                    let mut bent = block.clone();
                    bent[cut] ^= 0x5a;
                    let _ = decode(from, &bent, &mut back);
                }
            }
        }
    }

    #[test]
    fn minute_bars_take_a_few_bytes_and_odd_values_stay_rows() {
        let from = DateTime::from_timestamp(1_764_167_400, 0).unwrap();
        let bar = |t: i64, o: &str, c: &str, vw: &str| Bar {
            t: DateTime::from_timestamp(1_764_167_400 + t, 0).unwrap(),
            o: o.parse().unwrap(),
            h: c.parse().unwrap(),
            l: o.parse().unwrap(),
            c: c.parse().unwrap(),
            v: "5665".parse().unwrap(),
            n: Some(70),
            vw: Some(vw.parse().unwrap()),
        };
        let bars: Vec<Bar> = (0..390)
            .map(|i| bar(60 * i, "385.64", "385.78", "385.7367"))
            .collect();
        let block = encode(from, &bars).unwrap();
        assert!(block.len() < 390 * 16, "{} bytes", block.len());
        let mut back = Vec::new();
        decode(from, &block, &mut back).unwrap();
        assert_eq!(back, bars);
        let mut odd = bars[..1].to_vec();
        let mut negative_zero = Decimal::ZERO;
        negative_zero.set_sign_negative(true);
        odd[0].v = negative_zero;
        assert!(
            encode(from, &odd).is_none(),
            "a negative zero stays in rows"
        );
        odd[0].v = Decimal::MAX;
        assert!(
            encode(from, &odd).is_none(),
            "a mantissa beyond 2^61 stays in rows"
        );
    }
}
