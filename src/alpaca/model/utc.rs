//! A market-data timestamp as REST text (`#[serde(with = "utc")]`): what chrono writes and
//! reads for a `DateTime<Utc>`, with a quick path for the form Alpaca's bars, trades and
//! quotes carry, whole seconds in UTC (`2026-12-01T14:30:00Z`). A warm-up reads 200,000
//! of them; chrono's general parser and formatter were a seventh of the feed's decoding and
//! a tenth of the simulator's time serving a page of bars.

use chrono::{DateTime, NaiveDate, Timelike, Utc};
use serde::de::{self, Visitor};
use serde::{Deserializer, Serialize, Serializer};
use std::fmt;

pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    match whole_seconds(t) {
        Some(text) => match std::str::from_utf8(&text) {
            Ok(text) => s.serialize_str(text),
            Err(_) => t.serialize(s),
        },
        None => t.serialize(s),
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    d.deserialize_str(UtcVisitor)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a time on a whole second in years 0–9999; `None` otherwise.
fn whole_seconds(t: &DateTime<Utc>) -> Option<[u8; 20]> {
    use chrono::Datelike;
    let (year, nanos) = (t.year(), t.nanosecond());
    if !(0..=9999).contains(&year) || nanos != 0 {
        return None;
    }
    let mut out = *b"0000-00-00T00:00:00Z";
    let mut put = |at: usize, width: usize, mut v: u32| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year as u32);
    put(5, 2, t.month());
    put(8, 2, t.day());
    put(11, 2, t.hour());
    put(14, 2, t.minute());
    put(17, 2, t.second());
    Some(out)
}

/// The quick form's time, if `text` is exactly in it; `None` sends it to chrono.
fn parse_whole_seconds(text: &str) -> Option<DateTime<Utc>> {
    let b = text.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u32> {
        b[from..to].iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let date = NaiveDate::from_ymd_opt(num(0, 4)? as i32, num(5, 7)?, num(8, 10)?)?;
    let time = date.and_hms_opt(num(11, 13)?, num(14, 16)?, num(17, 19)?)?;
    Some(time.and_utc())
}

struct UtcVisitor;

impl Visitor<'_> for UtcVisitor {
    type Value = DateTime<Utc>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an RFC 3339 timestamp")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        match parse_whole_seconds(v) {
            Some(t) => Ok(t),
            None => v.parse::<DateTime<Utc>>().map_err(E::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Ours(#[serde(with = "super")] DateTime<Utc>);
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Chrono(DateTime<Utc>);

    fn time() -> impl Strategy<Value = DateTime<Utc>> {
        (
            prop_oneof![
                -62_167_219_200i64..253_402_300_799,
                1_700_000_000i64..1_900_000_000,
            ],
            prop_oneof![Just(0u32), 0u32..1_000_000_000, Just(1_000_000_000)],
        )
            .prop_filter_map("in range", |(secs, nanos)| {
                DateTime::from_timestamp(secs, nanos)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        /// The text is chrono's, whatever the time (a fraction, a leap second, a year past
        /// 9999 go to chrono).
        #[test]
        fn a_time_is_written_as_chrono_writes_it(t in time()) {
            prop_assert_eq!(
                serde_json::to_string(&Ours(t)).unwrap(),
                serde_json::to_string(&Chrono(t)).unwrap()
            );
        }

        /// A text reads as chrono reads it, or is refused as chrono refuses it: RFC 3339 in
        /// any offset or precision, the quick form with a bad field, and damage.
        #[test]
        fn a_text_is_read_as_chrono_reads_it(
            t in time(),
            form in 0usize..4,
            damage in proptest::option::of((0usize..20, any::<u8>())),
        ) {
            let mut text = match form {
                0 => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                1 => t.to_rfc3339(),
                2 => t.format("%Y-%m-%dT%H:%M:%S%.3f-05:00").to_string(),
                _ => t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string(),
            };
            if let Some((at, byte)) = damage {
                let mut bytes = text.into_bytes();
                let at = at % bytes.len();
                bytes[at] = byte;
                text = String::from_utf8_lossy(&bytes).into_owned();
            }
            let json = serde_json::to_string(&text).unwrap();
            let ours = serde_json::from_str::<Ours>(&json).map(|o| o.0).ok();
            let chrono = serde_json::from_str::<Chrono>(&json).map(|c| c.0).ok();
            prop_assert_eq!(ours, chrono, "{}", text);
        }
    }

    #[test]
    fn the_quick_form_and_what_falls_to_chrono() {
        let t = parse_whole_seconds("2026-12-01T14:30:00Z").unwrap();
        assert_eq!(t.timestamp(), 1_796_135_400);
        assert_eq!(
            whole_seconds(&t).as_ref().map(|b| &b[..]),
            Some(&b"2026-12-01T14:30:00Z"[..])
        );
        // Not the quick form: chrono decides.
        for text in [
            "2026-12-01T14:30:00.5Z",
            "2026-02-30T14:30:00Z",
            "2026-12-01T24:00:00Z",
            "2026-12-01T14:30:60Z",
            "2026-12-01 14:30:00Z",
            "+026-12-01T14:30:00Z",
        ] {
            assert!(
                parse_whole_seconds(text).is_none(),
                "{text} is not read by the quick path"
            );
        }
        assert!(serde_json::from_str::<Ours>("\"yesterday\"").is_err());
    }
}
