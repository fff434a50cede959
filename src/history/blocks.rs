//! The store's block cache: one series' bars over a span (a backtest asks a day at a time)
//! packed into one binary value, so a replay reads a few thousand blobs instead of parsing
//! ten million rows of decimal text.
//!
//! The rows in `bars` stay the truth: a block is made from them the first time a span is
//! read, and every write to a series drops the blocks its bars fall in (in the write's own
//! transaction). A block that does not decode is read from the rows again and replaced.
//!
//! Format (version 1): a version byte, the number of bars, then per bar `t` as seconds after
//! the previous bar (the first after the span's start), open, high, low, close, volume, the
//! trade count (0 none, else n + 1) and the VWAP (0 none, else the value + 1), each a LEB128
//! varint. A decimal is `|mantissa| << 6 | negative << 5 | scale`, exact to the last digit
//! and scale (`180.70` stays `180.70`, `180.7` stays `180.7`).

use crate::alpaca::model::Bar;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

const VERSION: u8 = 1;

fn put(out: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// `None` for a value the format cannot hold exactly (a negative zero).
fn decimal(d: Decimal) -> Option<u128> {
    if d.is_zero() && d.is_sign_negative() {
        return None;
    }
    let m = d.mantissa().unsigned_abs();
    Some((m << 6) | (u128::from(d.is_sign_negative()) << 5) | u128::from(d.scale()))
}

/// The block of `bars` (sorted by time, none before `from`); `None` when a value cannot be
/// packed exactly (the rows are then read every time).
pub fn encode(from: DateTime<Utc>, bars: &[Bar]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(2 + bars.len() * 24);
    out.push(VERSION);
    put(&mut out, bars.len() as u128);
    let mut prev = from.timestamp();
    for b in bars {
        let t = b.t.timestamp();
        put(&mut out, u128::try_from(t.checked_sub(prev)?).ok()?);
        prev = t;
        for d in [b.o, b.h, b.l, b.c, b.v] {
            put(&mut out, decimal(d)?);
        }
        put(&mut out, b.n.map_or(0, |n| u128::from(n) + 1));
        put(&mut out, b.vw.map_or(Some(0), |v| decimal(v).map(|v| v + 1))?);
    }
    Some(out)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn varint(&mut self) -> Option<u128> {
        let mut v: u128 = 0;
        for shift in (0..128).step_by(7) {
            let byte = *self.bytes.get(self.at)?;
            self.at += 1;
            v |= u128::from(byte & 0x7f).checked_shl(shift)?;
            if byte < 0x80 {
                return Some(v);
            }
        }
        None
    }

    fn decimal(&mut self) -> Option<Decimal> {
        unpack(self.varint()?)
    }
}

fn unpack(v: u128) -> Option<Decimal> {
    let scale = (v & 31) as u32;
    let m = v >> 6;
    if scale > Decimal::MAX_SCALE || m >> 96 != 0 {
        return None;
    }
    Some(Decimal::from_parts(
        m as u32,
        (m >> 32) as u32,
        (m >> 64) as u32,
        (v >> 5) & 1 == 1,
        scale,
    ))
}

/// The bars of a block into `out` (cleared first); `None` when the block is not one.
pub fn decode(from: DateTime<Utc>, block: &[u8], out: &mut Vec<Bar>) -> Option<()> {
    out.clear();
    let mut r = Reader {
        bytes: block,
        at: 0,
    };
    if *r.bytes.first()? != VERSION {
        return None;
    }
    r.at = 1;
    let n = usize::try_from(r.varint()?).ok()?;
    // Every bar takes at least eight bytes: a count beyond that is not a block.
    if n > block.len() / 8 {
        return None;
    }
    out.reserve(n);
    let mut t = from.timestamp();
    for _ in 0..n {
        t = t.checked_add(i64::try_from(r.varint()?).ok()?)?;
        let (o, h, l, c, v) = (
            r.decimal()?,
            r.decimal()?,
            r.decimal()?,
            r.decimal()?,
            r.decimal()?,
        );
        let trades = match r.varint()? {
            0 => None,
            n => Some(u64::try_from(n - 1).ok()?),
        };
        let vw = match r.varint()? {
            0 => None,
            v => Some(unpack(v - 1)?),
        };
        out.push(Bar {
            t: DateTime::from_timestamp(t, 0)?,
            o,
            h,
            l,
            c,
            v,
            n: trades,
            vw,
        });
    }
    (r.at == block.len()).then_some(())
}
