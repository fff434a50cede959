//! Serde helpers that move money and quantities between Alpaca's wire formats and
//! `rust_decimal::Decimal` without ever holding them as `f64` in our own code.
//!
//! Alpaca's trading API sends decimals as JSON strings; its market-data API sends JSON
//! numbers. Clients send either (alpaca-py sends floats, the Go SDK strings). So every
//! decoder here accepts a string, an integer or a float; floats are converted through their
//! shortest round-trip text (`187.23_f64` becomes `187.23`, never `187.2299999…`).
//!
//! - [`flex`] / [`flex_opt`]: decode string-or-number, encode as a string (trading API).
//! - [`number`] / [`number_opt`]: decode string-or-number, encode as a JSON number (data API).

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;
use std::fmt;
use std::str::FromStr;

/// Parses a decimal from text, accepting scientific notation as a fallback.
pub fn parse_decimal(text: &str) -> Result<Decimal, rust_decimal::Error> {
    let text = text.trim();
    Decimal::from_str(text).or_else(|_| Decimal::from_scientific(text))
}

/// Converts an `f64` seen on the wire into the `Decimal` of its shortest round-trip text
/// (`187.23_f64` is `187.23`, never `187.2299999…`).
///
/// Prices and sizes take the arithmetic path ([`short_decimal`]); anything it cannot do
/// exactly goes through the text.
pub fn decimal_from_wire_f64(value: f64) -> Option<Decimal> {
    if !value.is_finite() {
        return None;
    }
    short_decimal(value).or_else(|| parse_decimal(&format!("{value}")).ok())
}

/// The decimal with the fewest fractional digits (at most 9) that reads back as `value`,
/// found without text. At scale s the candidates are n / 10^s; while ulp(value) × 10^s ≤ ¼
/// at most one of them reads back as `value`, and round(value × 10^s) finds it despite the
/// product's rounding (both errors together stay under ½). `n / 10^s == value` in f64 is then
/// exact arithmetic's verdict (n < 2^50 and 10^s are exact doubles, and IEEE division rounds
/// correctly), so the first scale that passes gives the shortest text's digits. Past that
/// bound (large magnitudes, many digits) it answers `None` and the caller uses the text.
///
/// Prices come with two decimals and sizes whole, so scale 2 is tried first: a value that reads
/// back at a smaller scale s reads back at 2 as the same number (its n times 10^(2-s), the
/// one candidate there), so the shortest is that n without its trailing zeros; one that does
/// not read back at 2 reads back at no smaller scale. One division, not up to three.
fn short_decimal(value: f64) -> Option<Decimal> {
    const POW10: [f64; 10] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
    if value == 0.0 {
        return Some(Decimal::ZERO);
    }
    let magnitude = value.abs();
    let ulp = f64::from_bits(magnitude.to_bits() + 1) - magnitude;
    let from = if ulp * 1e2 <= 0.25 {
        let n = round_small(value * 1e2);
        if n as f64 / 1e2 == value {
            let (mut n, mut scale) = (n, 2);
            while scale > 0 && n % 10 == 0 {
                n /= 10;
                scale -= 1;
            }
            return Some(Decimal::new(n, scale));
        }
        3
    } else {
        0
    };
    for (scale, p) in POW10.iter().enumerate().skip(from) {
        if ulp * p > 0.25 {
            return None;
        }
        let n = round_small(value * p);
        if n as f64 / p == value {
            return Some(Decimal::new(n, scale as u32));
        }
    }
    None
}

/// `x` rounded half away from zero, as `f64::round` does, for |x| < 2^51 (the callers'
/// bound): by a cast and the exact fraction it leaves, not a call into libm (`round` is not
/// an instruction on baseline x86-64, and it was a few percent of the stream's decode).
fn round_small(x: f64) -> i64 {
    let whole = x as i64;
    let fraction = x - whole as f64;
    whole + i64::from(fraction >= 0.5) - i64::from(fraction <= -0.5)
}

/// The largest magnitude accepted from the wire: 10^14 (a hundred trillion). Any price,
/// quantity or amount Alpaca sends is far below it, and the product of two such values
/// (10^28) stays inside `Decimal`'s range (7.9 x 10^28), so the arithmetic that follows
/// cannot overflow on one absurd value from a broker, a client or a file.
pub const MAX_WIRE: Decimal = Decimal::from_parts(0x107a_4000, 0x5af3, 0, false, 0);

/// `v` if it is within [`MAX_WIRE`] in magnitude.
pub fn within_wire_bound(v: Decimal) -> Option<Decimal> {
    // A mantissa within the bound is a value within it at any scale: no decimal comparison
    // (which rescales) for every price and size of the stream.
    (v.mantissa().unsigned_abs() <= 100_000_000_000_000 || v.abs() <= MAX_WIRE).then_some(v)
}

fn bounded<E: de::Error>(v: Decimal) -> Result<Option<Decimal>, E> {
    if within_wire_bound(v).is_none() {
        return Err(E::custom(format!(
            "{} is out of range (at most 1e14 in magnitude)",
            truncate(&v.to_string())
        )));
    }
    Ok(Some(v))
}

struct DecimalVisitor;

impl<'de> Visitor<'de> for DecimalVisitor {
    type Value = Option<Decimal>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a decimal number as a string or a JSON number")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if v.trim().is_empty() {
            return Ok(None);
        }
        let d = parse_decimal(v)
            .map_err(|_| E::custom(format!("invalid decimal {:?}", truncate(v))))?;
        bounded(d)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        bounded(Decimal::from(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        bounded(Decimal::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        let d =
            decimal_from_wire_f64(v).ok_or_else(|| E::custom("number is not a finite decimal"))?;
        bounded(d)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(DecimalVisitor)
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(32) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn encode_number<S: Serializer>(v: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    // A price or a size: its mantissa and its power of ten are exact in an f64, so the
    // integer, or the quotient (rounded once, to the nearest: what rust_decimal's general
    // conversion gives here too), without that conversion's u128 arithmetic (a third of the
    // simulator's time serving a page of bars).
    const EXACT: i128 = 1 << 53;
    let (mantissa, scale) = (v.mantissa(), v.scale());
    if mantissa.abs() < EXACT && scale <= 15 {
        let (m, p) = (mantissa as i64, 10i64.pow(scale));
        if m % p == 0 {
            return s.serialize_i64(m / p);
        }
        return s.serialize_f64(m as f64 / p as f64);
    }
    if v.fract().is_zero() {
        if let Some(i) = v.to_i64() {
            return s.serialize_i64(i);
        }
    }
    // The market-data wire format is float64; this is the boundary where we produce it.
    match v.to_f64() {
        Some(f) => s.serialize_f64(f),
        None => s.serialize_str(&v.to_string()),
    }
}

/// Required decimal: string or number in, string out.
pub mod flex {
    use super::*;
    pub fn serialize<S: Serializer>(v: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.normalize().to_string())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        d.deserialize_any(DecimalVisitor)?
            .ok_or_else(|| de::Error::custom("a decimal is required here"))
    }
}

/// Optional decimal: string, number, `null`, `""` or missing in; string or `null` out.
/// Use with `#[serde(default)]`.
pub mod flex_opt {
    use super::*;
    pub fn serialize<S: Serializer>(v: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&v.normalize().to_string()),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
        d.deserialize_option(DecimalVisitor)
    }
}

/// Optional decimal the daemon does not need (an order's `hwm`, an account's informational
/// figures): like [`flex_opt`], but a value that is not a decimal reads as `None` instead of
/// failing the whole object (Alpaca's own OpenAPI examples carry `"hwm": "string"`).
pub mod lenient_opt {
    use super::*;
    pub fn serialize<S: Serializer>(v: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
        flex_opt::serialize(v, s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        Ok(flex_opt::deserialize(value).ok().flatten())
    }
}

/// Required decimal: string or number in, JSON number out (market-data API).
pub mod number {
    use super::*;
    pub fn serialize<S: Serializer>(v: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        encode_number(v, s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        super::flex::deserialize(d)
    }
}

/// Optional decimal: string, number or `null` in; JSON number or `null` out.
pub mod number_opt {
    use super::*;
    pub fn serialize<S: Serializer>(v: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => encode_number(v, s),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
        super::flex_opt::deserialize(d)
    }
}

/// A decimal read from a string or a number, for hand-written decoders (`next_value::<WireDecimal>()`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WireDecimal(pub Decimal);

impl<'de> serde::Deserialize<'de> for WireDecimal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        flex::deserialize(d).map(WireDecimal)
    }
}

/// An optional decimal: string, number or `null`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WireDecimalOpt(pub Option<Decimal>);

impl<'de> serde::Deserialize<'de> for WireDecimalOpt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        flex_opt::deserialize(d).map(WireDecimalOpt)
    }
}

/// Writes a decimal as a JSON/msgpack number (the market-data wire format).
pub fn serialize_number<S: Serializer>(v: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    encode_number(v, s)
}

/// Booleans as query parameters: alpaca-py sends `True`/`False`, others `true`/`false`.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;
    use serde::{Deserialize, Serialize};

    fn through_text(v: f64) -> Option<Decimal> {
        parse_decimal(&format!("{v}")).ok()
    }

    /// The general conversion [`encode_number`] had alone before its quick path.
    fn encode_general(v: &Decimal) -> String {
        if v.fract().is_zero()
            && let Some(i) = v.to_i64()
        {
            return i.to_string();
        }
        serde_json::to_string(&v.to_f64().unwrap()).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        /// The quick path writes what the general conversion does: the same number, the
        /// same text, for prices, sizes and anything else a decimal holds.
        #[test]
        fn a_number_is_written_as_the_general_conversion_writes_it(
            m in prop_oneof![
                -10_000_000_000i128..10_000_000_000,
                -(1i128 << 53) - 5..-(1i128 << 53) + 5,
                (1i128 << 53) - 5..(1i128 << 53) + 5,
                -(1i128 << 95)..(1i128 << 95),
            ],
            scale in prop_oneof![0u32..6, 0u32..29],
        ) {
            let v = Decimal::from_i128_with_scale(m, scale);
            let ours = serde_json::to_string(&Wire(v)).unwrap();
            prop_assert_eq!(&ours, &encode_general(&v), "{}", v);
            // And it reads back as the decimal it was (fifteen digits survive an f64; the
            // reader refuses magnitudes past 1e14).
            if m.abs() < 100_000_000_000_000 && scale <= 15 {
                prop_assert_eq!(serde_json::from_str::<Wire>(&ours).unwrap().0, v.normalize());
            }
        }
    }

    #[derive(Serialize, Deserialize)]
    struct Wire(#[serde(with = "number")] Decimal);

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        /// The arithmetic path gives exactly the shortest text's decimal, digits and scale.
        #[test]
        fn short_decimal_is_the_shortest_text(v in prop_oneof![
            any::<f64>(),
            (0i64..100_000_000_000, 0u32..10).prop_map(|(m, s)| m as f64 / 10f64.powi(s as i32)),
            (-1e7..1e7f64),
            (1e12..1e16f64),
        ]) {
            if let Some(d) = short_decimal(v) {
                let text = through_text(v).unwrap();
                prop_assert_eq!(d, text);
                prop_assert_eq!(d.scale(), text.scale(), "{} vs {}", d, text);
            }
            prop_assert_eq!(decimal_from_wire_f64(v), if v.is_finite() { through_text(v) } else { None });
        }

        /// The cast-and-fraction rounding is `f64::round`'s, halves included.
        #[test]
        fn round_small_is_round(x in prop_oneof![
            -2251799813685247.0..2251799813685247.0f64,
            (-1_000_000i64..1_000_000).prop_map(|n| n as f64 + 0.5),
            -10.0..10.0f64,
        ]) {
            prop_assert_eq!(round_small(x), x.round() as i64);
        }

        /// The mantissa shortcut accepts exactly what the comparison accepts.
        #[test]
        fn bounded_agrees_with_the_comparison(
            lo in any::<u32>(),
            mid in prop_oneof![Just(0u32), 0u32..0x6000, any::<u32>()],
            hi in prop_oneof![Just(0u32), any::<u32>()],
            negative in any::<bool>(),
            scale in 0u32..29,
        ) {
            let v = Decimal::from_parts(lo, mid, hi, negative, scale);
            prop_assert_eq!(bounded::<serde_json::Error>(v).is_ok(), v.abs() <= MAX_WIRE);
        }
    }

    #[test]
    fn absurd_magnitudes_are_refused_with_a_clear_error() {
        #[derive(Deserialize, Debug)]
        struct Q {
            #[serde(with = "flex")]
            qty: Decimal,
        }
        assert_eq!(MAX_WIRE, dec!(100000000000000));
        for bad in [
            r#"{"qty":"79228162514264337593543950335"}"#,
            r#"{"qty":"-100000000000001"}"#,
            r#"{"qty":1e20}"#,
            r#"{"qty":18446744073709551615}"#,
        ] {
            let e = serde_json::from_str::<Q>(bad).unwrap_err().to_string();
            assert!(e.contains("out of range"), "{bad}: {e}");
        }
        let q: Q = serde_json::from_str(r#"{"qty":"100000000000000"}"#).unwrap();
        assert_eq!(q.qty, MAX_WIRE);
        // The product of two values at the bound still fits.
        assert!(MAX_WIRE.checked_mul(MAX_WIRE).is_some());
    }

    #[test]
    fn short_decimals_of_prices() {
        for (v, d) in [
            (187.23, dec!(187.23)),
            (0.1, dec!(0.1)),
            (126.55, dec!(126.55)),
            (1.0, dec!(1)),
            (-3.5, dec!(-3.5)),
            (1e-12, dec!(0.000000000001)),
        ] {
            assert_eq!(decimal_from_wire_f64(v), Some(d), "{v}");
        }
        assert_eq!(short_decimal(1e-12), None);
        // Found by proptest: .2 and .3 both read back as this double; the text (and now the
        // arithmetic, which gives up at this magnitude) says .3.
        let v = 566638637520297.3;
        assert_eq!(decimal_from_wire_f64(v), through_text(v));
        assert_eq!(short_decimal(v), None);
        assert_eq!(short_decimal(1e300), None);
    }

    #[derive(Deserialize, Serialize)]
    struct T {
        #[serde(with = "flex")]
        a: Decimal,
        #[serde(default, with = "flex_opt")]
        b: Option<Decimal>,
        #[serde(with = "number")]
        c: Decimal,
    }

    #[test]
    fn accepts_strings_numbers_and_nulls() {
        let cases = [
            (r#"{"a":"1.5","b":null,"c":2}"#, dec!(1.5), None, dec!(2)),
            (r#"{"a":187.23,"c":"0.1"}"#, dec!(187.23), None, dec!(0.1)),
            (r#"{"a":3,"b":"","c":1e2}"#, dec!(3), None, dec!(100)),
            (
                r#"{"a":"0.000000001","b":"42","c":0.3}"#,
                dec!(0.000000001),
                Some(dec!(42)),
                dec!(0.3),
            ),
        ];
        for (json, a, b, c) in cases {
            let t: T = serde_json::from_str(json).unwrap();
            assert_eq!((t.a, t.b, t.c), (a, b, c), "{json}");
        }
    }

    #[test]
    fn rejects_garbage_with_a_clear_message() {
        let err = serde_json::from_str::<T>(r#"{"a":"12abc","c":1}"#)
            .err()
            .unwrap();
        assert!(err.to_string().contains("invalid decimal"), "{err}");
        assert!(serde_json::from_str::<T>(r#"{"a":null,"c":1}"#).is_err());
        assert!(serde_json::from_str::<T>(r#"{"a":true,"c":1}"#).is_err());
    }

    #[test]
    fn encodes_strings_for_trading_and_numbers_for_data() {
        let t = T {
            a: dec!(1.50),
            b: Some(dec!(2)),
            c: dec!(100),
        };
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"a":"1.5","b":"2","c":100}"#
        );
        let t = T {
            a: dec!(0),
            b: None,
            c: dec!(187.23),
        };
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"a":"0","b":null,"c":187.23}"#
        );
    }

    #[test]
    fn booleans_in_any_case() {
        assert_eq!(parse_bool("True"), Some(true));
        assert_eq!(parse_bool("false"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
    }
}
