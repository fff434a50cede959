//! The indicators against reference values computed by the `ta` Python library
//! (tests/fixtures/indicators.json, made by tests/fixtures/make_indicator_reference.py).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use traderd::strategy::indicators::{Bollinger, Ema, Macd, Rsi};

#[derive(serde::Deserialize)]
struct Reference {
    source: String,
    closes: Vec<f64>,
    ema10: Vec<Option<f64>>,
    rsi14: Vec<Option<f64>>,
    macd: Vec<Option<f64>>,
    macd_signal: Vec<Option<f64>>,
    macd_hist: Vec<Option<f64>>,
    bb_mid: Vec<Option<f64>>,
    bb_high: Vec<Option<f64>>,
    bb_low: Vec<Option<f64>>,
    bb_z: Vec<Option<f64>>,
}

fn reference() -> Reference {
    serde_json::from_str(include_str!("fixtures/indicators.json")).unwrap()
}

/// Same readiness, and values equal to 1e-9 (relative).
fn check(name: &str, ours: &[Option<f64>], theirs: &[Option<f64>]) {
    assert_eq!(ours.len(), theirs.len());
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        match (a, b) {
            (None, None) => {}
            (Some(a), Some(b)) => assert!(
                (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                "{name}[{i}]: ours {a}, reference {b}"
            ),
            _ => panic!("{name}[{i}]: ours {a:?}, reference {b:?} (readiness differs)"),
        }
    }
    assert!(
        theirs.iter().filter(|v| v.is_some()).count() > 200,
        "{name}: the reference has values to compare"
    );
}

#[test]
fn ema_matches_the_reference() {
    let r = reference();
    let mut e = Ema::new(10);
    let ours: Vec<Option<f64>> = r.closes.iter().map(|c| e.update(*c)).collect();
    check("ema10", &ours, &r.ema10);
    assert!(r.source.starts_with("ta "), "{}", r.source);
}

#[test]
fn rsi_matches_the_reference() {
    let r = reference();
    let mut rsi = Rsi::new(14);
    let ours: Vec<Option<f64>> = r.closes.iter().map(|c| rsi.update(*c)).collect();
    check("rsi14", &ours, &r.rsi14);
}

#[test]
fn macd_matches_the_reference() {
    let r = reference();
    let mut m = Macd::new(12, 26, 9);
    let readings: Vec<_> = r.closes.iter().map(|c| m.update(*c)).collect();
    check(
        "macd",
        &readings.iter().map(|(line, _)| *line).collect::<Vec<_>>(),
        &r.macd,
    );
    check(
        "macd_signal",
        &readings
            .iter()
            .map(|(_, v)| v.map(|v| v.signal))
            .collect::<Vec<_>>(),
        &r.macd_signal,
    );
    check(
        "macd_hist",
        &readings
            .iter()
            .map(|(_, v)| v.map(|v| v.histogram))
            .collect::<Vec<_>>(),
        &r.macd_hist,
    );
}

#[test]
fn bollinger_matches_the_reference() {
    let r = reference();
    let mut b = Bollinger::new(20, 2.0);
    let readings: Vec<_> = r.closes.iter().map(|c| b.update(*c)).collect();
    check(
        "bb_mid",
        &readings
            .iter()
            .map(|v| v.map(|v| v.middle))
            .collect::<Vec<_>>(),
        &r.bb_mid,
    );
    check(
        "bb_high",
        &readings
            .iter()
            .map(|v| v.map(|v| v.upper))
            .collect::<Vec<_>>(),
        &r.bb_high,
    );
    check(
        "bb_low",
        &readings
            .iter()
            .map(|v| v.map(|v| v.lower))
            .collect::<Vec<_>>(),
        &r.bb_low,
    );
    // pandas gives inf/NaN where σ is 0 (the flat stretch); we give 0 there.
    let ours: Vec<Option<f64>> = readings.iter().map(|v| v.map(|v| v.z_score)).collect();
    let theirs: Vec<Option<f64>> = r
        .bb_z
        .iter()
        .zip(&ours)
        .map(|(t, o)| {
            if o == &Some(0.0) && t.is_none_or(|x| !x.is_finite()) {
                Some(0.0)
            } else {
                *t
            }
        })
        .collect();
    check("bb_z", &ours, &theirs);
}

mod to_f64 {
    use proptest::prelude::*;
    use rust_decimal::Decimal;
    use rust_decimal::prelude::ToPrimitive;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 20_000, ..ProptestConfig::default() })]

        /// The indicators' conversion is rust_decimal's own, bit for bit, over prices and
        /// beyond: every scale, both signs, mantissas past 64 bits.
        #[test]
        fn is_rust_decimals_bit_for_bit(lo in any::<u32>(), mid in any::<u32>(), hi in prop_oneof![Just(0u32), any::<u32>()], negative in any::<bool>(), scale in 0u32..=28) {
            let d = Decimal::from_parts(lo, mid, hi, negative, scale);
            let ours = traderd::strategy::indicators::to_f64(d);
            let theirs = d.to_f64().unwrap();
            prop_assert_eq!(ours.to_bits(), theirs.to_bits(), "{}", d);
        }

        /// Mantissas around 2^50, where the conversion's shortcut ends, at every scale.
        #[test]
        fn is_rust_decimals_for_mantissas_near_its_shortcut(m in prop_oneof![0u64..1 << 20, (1u64 << 50) - 1_000_000..(1 << 50) + 1_000_000, 0u64..1 << 53], negative in any::<bool>(), scale in 0u32..=28) {
            let d = Decimal::from_parts(m as u32, (m >> 32) as u32, 0, negative, scale);
            prop_assert_eq!(traderd::strategy::indicators::to_f64(d).to_bits(), d.to_f64().unwrap().to_bits(), "{}", d);
        }

        #[test]
        fn is_rust_decimals_for_prices(cents in 1i64..1_000_000_000, scale in 2u32..=6) {
            let d = Decimal::new(cents, scale);
            prop_assert_eq!(traderd::strategy::indicators::to_f64(d).to_bits(), d.to_f64().unwrap().to_bits());
        }
    }
}
