//! The built-in strategies' decisions, bar by bar.

use super::*;
use chrono::{Duration, TimeZone, Utc};
use rust_decimal::prelude::FromPrimitive;
use rust_decimal_macros::dec;

fn bar(i: i64, close: f64) -> OhlcBar {
    let c = Decimal::from_f64(close).unwrap().round_dp(2);
    OhlcBar {
        start: Utc.with_ymd_and_hms(2026, 11, 20, 14, 30, 0).unwrap() + Duration::minutes(i),
        open: c,
        high: c,
        low: c,
        close: c,
        volume: dec!(100),
        trades: 1,
        notional: c * dec!(100),
    }
}

fn run(s: &mut dyn Strategy, closes: &[f64], mut position: Decimal) -> Vec<(usize, Signal)> {
    let mut out = Vec::new();
    for (i, c) in closes.iter().enumerate() {
        let b = bar(i as i64, *c);
        let sig = s.on_bar(&BarInput {
            symbol: "AAPL",
            interval: Interval::M1,
            bar: &b,
            historical: false,
            position,
            explain: true,
        });
        match &sig {
            Signal::Enter { .. } => position = dec!(10),
            Signal::Exit { .. } => position = dec!(0),
            Signal::Target { qty, .. } => position = *qty,
            Signal::TargetWeight { .. } => {}
            Signal::Hold => {}
        }
        if sig != Signal::Hold {
            out.push((i, sig));
        }
    }
    out
}

#[test]
fn momentum_enters_on_a_turn_up_and_exits_on_a_turn_down() {
    // Down, then a steady rise, then a fall.
    let closes: Vec<f64> = (0..60)
        .map(|i| 100.0 - 0.3 * i as f64)
        .chain((0..40).map(|i| 82.0 + 0.25 * i as f64))
        .chain((0..40).map(|i| 92.0 - 0.4 * i as f64))
        .collect();
    let mut m = Momentum::new(
        MomentumParams {
            rsi_entry_min: 40.0,
            rsi_entry_max: 90.0,
            rsi_exit: 101.0,
            ..Default::default()
        },
        Interval::M1,
    );
    let signals = run(&mut m, &closes, dec!(0));
    let enter = signals
        .iter()
        .position(|(_, s)| {
            matches!(
                s,
                Signal::Enter {
                    side: OrderSide::Buy,
                    ..
                }
            )
        })
        .expect("an entry");
    let exit = signals
        .iter()
        .position(|(_, s)| matches!(s, Signal::Exit { .. }))
        .expect("an exit");
    assert!(enter < exit, "{signals:?}");
    assert!(
        (60..100).contains(&signals[enter].0),
        "entry during the rise: {signals:?}"
    );
    assert!(signals[exit].0 >= 100, "exit during the fall: {signals:?}");
}

#[test]
fn mean_reversion_buys_the_dip_and_sells_the_return() {
    // A noisy range (σ = 1 around 100), a sharp dip, and the way back.
    let mut closes: Vec<f64> = (0..30)
        .map(|i| if i % 2 == 0 { 99.0 } else { 101.0 })
        .collect();
    closes.extend([96.0, 97.0, 99.0, 100.5, 101.0]);
    let mut m = MeanReversion::new(MeanReversionParams::default(), Interval::M1);
    let signals = run(&mut m, &closes, dec!(0));
    assert!(
        matches!(
            signals[0],
            (
                30,
                Signal::Enter {
                    side: OrderSide::Buy,
                    ..
                }
            )
        ),
        "{signals:?}"
    );
    assert!(
        matches!(signals[1].1, Signal::Exit { .. }) && signals[1].0 > 30,
        "{signals:?}"
    );
    assert_eq!(signals.len(), 2, "{signals:?}");
}

#[test]
fn sizing_and_protection_table() {
    use OrderSide::{Buy, Sell};
    let bracket = Protection::Bracket {
        take_profit_pct: dec!(4),
        stop_loss_pct: dec!(2),
    };
    let rows = [
        (
            Buy,
            Sizing::FixedNotional { usd: dec!(1000) },
            bracket,
            Some((dec!(10), Some(dec!(104)), Some(dec!(98)))),
        ),
        (
            Sell,
            Sizing::FixedNotional { usd: dec!(999) },
            bracket,
            Some((dec!(9), Some(dec!(96)), Some(dec!(102)))),
        ),
        (
            Buy,
            Sizing::PercentOfEquity { pct: dec!(5) },
            Protection::None,
            Some((dec!(50), None, None)),
        ),
        // Risk 1% of 100k = 1,000 over a 2% stop: 50,000 notional, 500 shares.
        (
            Buy,
            Sizing::RiskPerTrade { pct: dec!(1) },
            bracket,
            Some((dec!(500), Some(dec!(104)), Some(dec!(98)))),
        ),
        (
            Buy,
            Sizing::RiskPerTrade { pct: dec!(1) },
            Protection::None,
            None,
        ),
        (
            Buy,
            Sizing::FixedNotional { usd: dec!(50) },
            Protection::None,
            None,
        ),
    ];
    for (side, sizing, protection, want) in rows {
        let got = plan_entry(side, dec!(100), dec!(100000), sizing, protection)
            .map(|p| (p.qty, p.take_profit, p.stop_loss));
        assert_eq!(got, want, "{side:?} {sizing:?} {protection:?}");
    }
    let trail = plan_entry(
        Buy,
        dec!(100),
        dec!(100000),
        Sizing::FixedNotional { usd: dec!(1000) },
        Protection::TrailingStop { trail_pct: dec!(3) },
    )
    .unwrap();
    assert_eq!(trail.trail_pct, Some(dec!(3)));
}

#[test]
fn fixed_shows_a_statistic_as_the_float_format_does() {
    for x in [
        0.0,
        -0.0,
        1.0,
        -1.5,
        0.12345,
        -0.00004,
        70.25,
        99.95,
        123456.789,
        1e20,
        f64::NAN,
    ] {
        for dp in [0, 1, 2, 4] {
            let fast = super::Fixed(x, dp).to_string();
            let slow = format!("{x:.dp$}");
            // Ties may round the other way (0.5 ulp apart); nothing else differs.
            let close = fast == slow
                || fast
                    .parse::<f64>()
                    .ok()
                    .zip(slow.parse::<f64>().ok())
                    .is_some_and(|(a, b)| (a - b).abs() <= 1.01 * 10f64.powi(-(dp as i32)));
            assert!(close, "{x} at {dp}: {fast} vs {slow}");
        }
    }
}
