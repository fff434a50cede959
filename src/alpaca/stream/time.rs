//! Stream timestamps: RFC 3339 text in JSON, the msgpack Timestamp extension (type −1) in
//! msgpack, as Alpaca sends them. The format decides: serde_json is human-readable, rmp-serde
//! is not.

use chrono::{DateTime, Utc};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::Serializer;
use std::fmt;

/// rmp-serde's name for an extension value: a newtype struct holding `(tag, bytes)`.
const EXT: &str = "_ExtStruct";
const TIMESTAMP_EXT: i8 = -1;

/// Decodes the payload of a msgpack Timestamp extension (32, 64 or 96 bit forms).
pub fn from_msgpack_ext(bytes: &[u8]) -> Option<DateTime<Utc>> {
    let (secs, nanos) = match bytes.len() {
        4 => (i64::from(u32::from_be_bytes(bytes.try_into().ok()?)), 0),
        8 => {
            let v = u64::from_be_bytes(bytes.try_into().ok()?);
            ((v & 0x0000_0003_ffff_ffff) as i64, (v >> 34) as u32)
        }
        12 => {
            let nanos = u32::from_be_bytes(bytes[..4].try_into().ok()?);
            let secs = i64::from_be_bytes(bytes[4..].try_into().ok()?);
            (secs, nanos)
        }
        _ => return None,
    };
    if nanos >= 1_000_000_000 {
        return None;
    }
    DateTime::from_timestamp(secs, nanos)
}

/// The smallest msgpack Timestamp payload for `t` (64-bit form when it fits, else 96-bit).
pub fn to_msgpack_ext(t: &DateTime<Utc>) -> Vec<u8> {
    let secs = t.timestamp();
    let nanos = t.timestamp_subsec_nanos();
    if (0..(1i64 << 34)).contains(&secs) {
        let v = (u64::from(nanos) << 34) | secs as u64;
        v.to_be_bytes().to_vec()
    } else {
        let mut out = nanos.to_be_bytes().to_vec();
        out.extend_from_slice(&secs.to_be_bytes());
        out
    }
}

struct Bytes<'a>(&'a [u8]);

impl serde::Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// Serializes a timestamp for the stream: RFC 3339 with nanoseconds, or the msgpack extension.
pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        s.collect_str(&t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    } else {
        let payload = to_msgpack_ext(t);
        s.serialize_newtype_struct(EXT, &(TIMESTAMP_EXT, Bytes(&payload)))
    }
}

/// Deserializes a stream timestamp from RFC 3339 text or a msgpack Timestamp extension.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    if d.is_human_readable() {
        d.deserialize_str(TimeVisitor)
    } else {
        d.deserialize_newtype_struct(EXT, TimeVisitor)
    }
}

struct TimeVisitor;

impl<'de> Visitor<'de> for TimeVisitor {
    type Value = DateTime<Utc>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an RFC 3339 timestamp or a msgpack Timestamp extension")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        DateTime::parse_from_rfc3339(v)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| E::custom("invalid RFC 3339 timestamp"))
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let tag: i8 = seq
            .next_element()?
            .ok_or_else(|| de::Error::custom("extension without a tag"))?;
        if tag != TIMESTAMP_EXT {
            return Err(de::Error::custom(format!(
                "extension type {tag} is not a timestamp"
            )));
        }
        let payload: ExtPayload = seq
            .next_element()?
            .ok_or_else(|| de::Error::custom("extension without data"))?;
        from_msgpack_ext(&payload.0).ok_or_else(|| de::Error::custom("invalid msgpack timestamp"))
    }
}

struct ExtPayload(Vec<u8>);

impl<'de> serde::Deserialize<'de> for ExtPayload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ExtPayload;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("extension bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<ExtPayload, E> {
                Ok(ExtPayload(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<ExtPayload, E> {
                Ok(ExtPayload(v))
            }
        }
        d.deserialize_bytes(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn all_three_msgpack_forms_decode() {
        let t = Utc.timestamp_opt(1_700_000_000, 123_456_789).unwrap();
        assert_eq!(from_msgpack_ext(&to_msgpack_ext(&t)), Some(t));
        assert_eq!(
            from_msgpack_ext(&1_700_000_000u32.to_be_bytes()),
            Some(Utc.timestamp_opt(1_700_000_000, 0).unwrap())
        );
        let mut b96 = 5u32.to_be_bytes().to_vec();
        b96.extend_from_slice(&(-10i64).to_be_bytes());
        assert_eq!(
            from_msgpack_ext(&b96),
            Some(Utc.timestamp_opt(-10, 5).unwrap())
        );
        assert_eq!(from_msgpack_ext(&[1, 2, 3]), None);
        assert_eq!(
            from_msgpack_ext(&[0xff; 8]),
            None,
            "nanoseconds out of range"
        );
    }

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct W {
        #[serde(with = "super")]
        t: DateTime<Utc>,
    }

    #[test]
    fn round_trips_in_json_and_msgpack() {
        let w = W {
            t: Utc.timestamp_opt(1_613_994_704, 208_000_000).unwrap(),
        };
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(json, r#"{"t":"2021-02-22T11:51:44.208Z"}"#);
        assert_eq!(serde_json::from_str::<W>(&json).unwrap(), w);
        let mp = rmp_serde::to_vec_named(&w).unwrap();
        assert!(
            mp.windows(2).any(|p| p == [0xd7, 0xff]),
            "fixext8 with type -1: {mp:x?}"
        );
        assert_eq!(rmp_serde::from_slice::<W>(&mp).unwrap(), w);
    }
}
