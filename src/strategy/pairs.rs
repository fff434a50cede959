//! Pairs: two symbols whose log prices move together. The hedge ratio β is the rolling
//! least-squares slope of ln A on ln B over `lookback` bars; the spread is ln A − β ln B, and
//! its z-score against the same window decides. Flat and z above `entry_z`: A is dear — short
//! A, long B; below −`entry_z`: long A, short B. Both legs held and |z| back under `exit_z`:
//! out of both. One leg held without the other for two closes in a row (a leg refused,
//! rejected or stopped out): the held one is unwound. Statistics are `f64` (ratios of prices);
//! the orders are sized by the config's sizing, the same for each leg (dollar-neutral), and
//! pass the risk checks as any other.

use super::builtin::{BarInput, MarketView, Signal, Strategy};
use crate::alpaca::model::OrderSide;
use crate::domain::Interval;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PairsParams {
    /// The first leg (shorted when the spread is high).
    pub a: String,
    /// The second leg (bought when the spread is high).
    pub b: String,
    /// Bars of the rolling window (hedge ratio and z-score).
    pub lookback: usize,
    pub entry_z: f64,
    pub exit_z: f64,
}

impl Default for PairsParams {
    fn default() -> Self {
        PairsParams {
            a: "MSFT".into(),
            b: "SPY".into(),
            lookback: 60,
            entry_z: 2.0,
            exit_z: 0.5,
        }
    }
}

impl PairsParams {
    /// What is wrong with them, if anything, given the symbols traded.
    pub fn problems(&self, symbols: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        if self.a == self.b {
            out.push(format!("the two legs are the same symbol {:?}", self.a));
        }
        for leg in [&self.a, &self.b] {
            if !symbols.contains(leg) {
                out.push(format!("{leg:?} is not in trading.symbols"));
            }
        }
        if self.lookback < 10 {
            out.push(format!("lookback {} is under 10 bars", self.lookback));
        }
        if !(self.exit_z >= 0.0 && self.entry_z > self.exit_z) {
            out.push(format!(
                "entry_z ({}) must be above exit_z ({}), which must not be negative",
                self.entry_z, self.exit_z
            ));
        }
        out
    }
}

pub struct Pairs {
    params: PairsParams,
    interval: Interval,
    /// (ln A, ln B) of each aligned close, oldest first.
    window: VecDeque<(f64, f64)>,
    last: Option<DateTime<Utc>>,
    /// Closes in a row with one leg held and not the other.
    broken: u32,
}

impl Pairs {
    pub fn new(params: PairsParams, interval: Interval) -> Self {
        Pairs {
            params,
            interval,
            window: VecDeque::new(),
            last: None,
            broken: 0,
        }
    }

    /// The hedge ratio and the z-score of the latest spread, once the window is full.
    fn z(&self) -> Option<(f64, f64)> {
        let n = self.window.len() as f64;
        if self.window.len() < self.params.lookback {
            return None;
        }
        let (sy, sx) = self
            .window
            .iter()
            .fold((0.0, 0.0), |(sy, sx), (y, x)| (sy + y, sx + x));
        let (my, mx) = (sy / n, sx / n);
        let (mut cov, mut var) = (0.0, 0.0);
        for (y, x) in &self.window {
            cov += (y - my) * (x - mx);
            var += (x - mx) * (x - mx);
        }
        if var <= f64::EPSILON {
            return None;
        }
        let beta = cov / var;
        let spreads: Vec<f64> = self.window.iter().map(|(y, x)| y - beta * x).collect();
        let mean = spreads.iter().sum::<f64>() / n;
        let sd = (spreads.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        let last = *spreads.last()?;
        (sd > f64::EPSILON).then(|| (beta, (last - mean) / sd))
    }
}

fn ln(d: Decimal) -> Option<f64> {
    let v = super::indicators::to_f64(d);
    (v > 0.0).then(|| v.ln())
}

impl Strategy for Pairs {
    fn name(&self) -> &str {
        "pairs"
    }

    fn interval(&self) -> Interval {
        self.interval
    }

    /// Pairs decides on the market view, once both legs' bars of a time are in.
    fn on_bar(&mut self, _: &BarInput<'_>) -> Signal {
        Signal::Hold
    }

    fn reset(&mut self, symbol: &str) {
        if symbol == self.params.a || symbol == self.params.b {
            self.window.clear();
        }
    }

    fn on_market(&mut self, view: &MarketView<'_>) -> Vec<(String, Signal)> {
        let p = &self.params;
        let (Some(a), Some(b)) = (view.bars.get(&p.a), view.bars.get(&p.b)) else {
            return Vec::new();
        };
        if a.start != b.start || self.last == Some(a.start) {
            return Vec::new();
        }
        self.last = Some(a.start);
        let (Some(ya), Some(xb)) = (ln(a.close), ln(b.close)) else {
            return Vec::new();
        };
        self.window.push_back((ya, xb));
        while self.window.len() > p.lookback {
            self.window.pop_front();
        }
        if view.historical {
            return Vec::new();
        }
        let Some((beta, z)) = self.z() else {
            return Vec::new();
        };
        let (pa, pb) = (view.position(&p.a), view.position(&p.b));
        let (a, b) = (p.a.clone(), p.b.clone());
        let enter = |side: OrderSide| Signal::Enter {
            side,
            reason: format!("spread z {z:.2} (beta {beta:.3})"),
        };
        let exit = |why: String| Signal::Exit { reason: why };
        match (pa.is_zero(), pb.is_zero()) {
            (true, true) => {
                self.broken = 0;
                if z > p.entry_z {
                    vec![(a, enter(OrderSide::Sell)), (b, enter(OrderSide::Buy))]
                } else if z < -p.entry_z {
                    vec![(a, enter(OrderSide::Buy)), (b, enter(OrderSide::Sell))]
                } else {
                    Vec::new()
                }
            }
            (false, false) => {
                self.broken = 0;
                if z.abs() < p.exit_z {
                    let why = format!("spread z {z:.2} back under {}", p.exit_z);
                    vec![(a, exit(why.clone())), (b, exit(why))]
                } else {
                    Vec::new()
                }
            }
            (a_flat, _) => {
                self.broken += 1;
                if self.broken < 2 {
                    return Vec::new();
                }
                let (held, missing) = if a_flat { (b, a) } else { (a, b) };
                vec![(
                    held,
                    exit(format!("the other leg ({missing}) is not held: unwinding")),
                )]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;
    use std::collections::BTreeMap;

    use crate::strategy::MarketBars;
    use crate::strategy::flat_bar as bar;

    struct Feed {
        pairs: Pairs,
        n: i64,
        positions: BTreeMap<String, Decimal>,
    }

    impl Feed {
        fn new(lookback: usize) -> Self {
            Feed {
                pairs: Pairs::new(
                    PairsParams {
                        a: "A".into(),
                        b: "B".into(),
                        lookback,
                        entry_z: 2.0,
                        exit_z: 0.5,
                    },
                    Interval::M1,
                ),
                n: 0,
                positions: BTreeMap::new(),
            }
        }

        /// What the strategy says of `bars` as `closed` closes at `t`.
        fn look(
            &mut self,
            closed: &str,
            bars: &MarketBars,
            t: DateTime<Utc>,
        ) -> Vec<(String, Signal)> {
            self.pairs.on_market(&MarketView {
                closed,
                bars,
                positions: &self.positions,
                historical: false,
                equity: None,
                now: t,
            })
        }

        /// One minute: A's bar, then B's; what the strategy said after each.
        fn close(&mut self, a: Decimal, b: Decimal) -> Vec<(String, Signal)> {
            let t = DateTime::UNIX_EPOCH + chrono::Duration::minutes(self.n);
            self.n += 1;
            let mut bars = MarketBars::default();
            bars.insert("A".to_string(), bar(t, a));
            let out = self.look("A", &bars, t);
            assert!(out.is_empty(), "nothing before both legs closed: {out:?}");
            bars.insert("B".to_string(), bar(t, b));
            let out = self.look("B", &bars, t);
            // The same close again changes nothing.
            assert!(self.look("B", &bars, t).is_empty());
            out
        }
    }

    /// B wanders; A is twice B with a little noise, around a fixed spread.
    fn wander(i: i64) -> (Decimal, Decimal) {
        let b = dec!(100) + Decimal::from(i % 7) - dec!(3);
        let noise = if i % 2 == 0 { dec!(0.1) } else { dec!(-0.1) };
        (b * dec!(2) + noise, b)
    }

    fn sides(out: &[(String, Signal)]) -> Vec<(String, Option<OrderSide>)> {
        out.iter()
            .map(|(s, sig)| {
                (
                    s.clone(),
                    match sig {
                        Signal::Enter { side, .. } => Some(*side),
                        _ => None,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_dear_leg_is_shorted_against_the_other_and_both_leave_together() {
        let mut f = Feed::new(20);
        for i in 0..20 {
            let (a, b) = wander(i);
            assert!(
                f.close(a, b).is_empty(),
                "nothing before the window is full"
            );
        }
        // A jumps against B: the spread is high. Short A, buy B.
        let out = f.close(dec!(214), dec!(100));
        assert_eq!(
            sides(&out),
            vec![
                ("A".into(), Some(OrderSide::Sell)),
                ("B".into(), Some(OrderSide::Buy))
            ]
        );
        f.positions.insert("A".into(), dec!(-10));
        f.positions.insert("B".into(), dec!(20));
        // Still wide: hold. Then back to the usual spread: out of both.
        assert!(f.close(dec!(212), dec!(100)).is_empty());
        let mut out = Vec::new();
        for i in 0..30 {
            let (a, b) = wander(i);
            out = f.close(a, b);
            if !out.is_empty() {
                break;
            }
        }
        assert_eq!(sides(&out), vec![("A".into(), None), ("B".into(), None)]);
    }

    #[test]
    fn a_cheap_leg_is_bought_against_the_other() {
        let mut f = Feed::new(20);
        for i in 0..20 {
            let (a, b) = wander(i);
            f.close(a, b);
        }
        let out = f.close(dec!(190), dec!(100));
        assert_eq!(
            sides(&out),
            vec![
                ("A".into(), Some(OrderSide::Buy)),
                ("B".into(), Some(OrderSide::Sell))
            ]
        );
    }

    #[test]
    fn one_leg_without_the_other_is_unwound_after_two_closes() {
        let mut f = Feed::new(20);
        for i in 0..20 {
            let (a, b) = wander(i);
            f.close(a, b);
        }
        // B's order was refused: only A is held. One close may be a fill on its way...
        f.positions.insert("A".into(), dec!(-10));
        let (a, b) = wander(20);
        assert!(f.close(a, b).is_empty());
        // ...two are not: A is unwound.
        let (a, b) = wander(21);
        let out = f.close(a, b);
        assert_eq!(sides(&out), vec![("A".into(), None)]);
        assert!(matches!(&out[0].1, Signal::Exit { reason } if reason.contains("(B) is not held")));
    }

    #[test]
    fn warm_up_fills_the_window_without_acting_and_the_hedge_ratio_is_found() {
        let mut f = Feed::new(20);
        let mut bars = MarketBars::default();
        for i in 0..20 {
            let t = DateTime::UNIX_EPOCH + chrono::Duration::minutes(i);
            let b = Decimal::from(50 + i);
            // ln A = 2 ln B, and a little noise
            let noise = if i % 2 == 0 { dec!(1.001) } else { dec!(0.999) };
            bars.insert("A".to_string(), bar(t, b * b * noise));
            bars.insert("B".to_string(), bar(t, b));
            let out = f.pairs.on_market(&MarketView {
                closed: "B",
                bars: &bars,
                positions: &f.positions,
                historical: true,
                equity: None,
                now: t,
            });
            assert!(out.is_empty());
        }
        let (beta, z) = f.pairs.z().unwrap();
        assert!((beta - 2.0).abs() < 0.05, "{beta}");
        assert!(z.is_finite());
    }

    #[test]
    fn bad_parameters_are_named() {
        let symbols = vec!["A".to_string(), "B".to_string()];
        assert!(
            PairsParams {
                a: "A".into(),
                b: "B".into(),
                ..PairsParams::default()
            }
            .problems(&symbols)
            .is_empty()
        );
        let p = PairsParams {
            a: "A".into(),
            b: "A".into(),
            lookback: 3,
            entry_z: 0.5,
            exit_z: 1.0,
        };
        let problems = p.problems(&symbols).join("; ");
        assert!(
            problems.contains("same symbol")
                && problems.contains("under 10")
                && problems.contains("entry_z"),
            "{problems}"
        );
        let q = PairsParams::default();
        assert!(q.problems(&symbols)[0].contains("not in trading.symbols"));
    }
}
