//! Rebalance: hold target weights of equity in a set of symbols, checked on a schedule (every
//! session, or the first session of each week, at the first close at or after a time of day,
//! New York time). Weights are fixed, equal, or inverse to each symbol's volatility (a simple
//! risk parity). A symbol is traded only when its weight has drifted from the target by more
//! than the band; the answer is a [`Signal::Target`] quantity, reductions first, and every
//! order passes the risk checks (buying power included) like any other.

use super::builtin::{BarInput, MarketView, Signal, Strategy};
use crate::domain::{Interval, calendar};
use chrono::{Datelike, NaiveDate, NaiveTime};
use rust_decimal::Decimal;
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Weighting {
    /// `weights` as given.
    Fixed,
    /// The same weight for every symbol traded.
    Equal,
    /// Weights inverse to each symbol's volatility of returns over `vol_lookback` bars.
    InverseVolatility,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    Daily,
    /// The first session of each week.
    Weekly,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RebalanceParams {
    pub method: Weighting,
    /// For `fixed`: symbol = fraction of the invested equity (they sum to at most 1).
    pub weights: BTreeMap<String, f64>,
    pub schedule: Schedule,
    /// The time of day (New York, HH:MM) from which the rebalance is due.
    pub at: String,
    /// Trade a symbol only when its weight is this far from the target (0.02: 2 points).
    pub drift_band: f64,
    /// The fraction of equity invested in all (the rest stays cash for the buying power).
    pub invest: f64,
    /// Bars of returns behind the volatility of `inverse_volatility`.
    pub vol_lookback: usize,
}

impl Default for RebalanceParams {
    fn default() -> Self {
        RebalanceParams {
            method: Weighting::Equal,
            weights: BTreeMap::new(),
            schedule: Schedule::Daily,
            at: "15:45".into(),
            drift_band: 0.02,
            invest: 0.9,
            vol_lookback: 20,
        }
    }
}

impl RebalanceParams {
    /// What is wrong with them, given the symbols traded.
    pub fn problems(&self, symbols: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        if NaiveTime::parse_from_str(&self.at, "%H:%M").is_err() {
            out.push(format!("at {:?} is not a time of day (HH:MM)", self.at));
        }
        if !(self.drift_band >= 0.0 && self.drift_band < 1.0) {
            out.push(format!("drift_band {} is not in [0, 1)", self.drift_band));
        }
        if !(self.invest > 0.0 && self.invest <= 1.0) {
            out.push(format!("invest {} is not in (0, 1]", self.invest));
        }
        if self.method == Weighting::InverseVolatility && self.vol_lookback < 2 {
            out.push("vol_lookback must be at least 2".into());
        }
        if self.method == Weighting::Fixed {
            if self.weights.is_empty() {
                out.push(
                    "method = \"fixed\" needs weights (e.g. weights = { SPY = 0.6, QQQ = 0.4 })"
                        .into(),
                );
            }
            let sum: f64 = self.weights.values().sum();
            if self.weights.values().any(|w| w.is_nan() || *w < 0.0) || sum > 1.0 + 1e-9 {
                out.push(format!(
                    "weights must be at least 0 and sum to at most 1 (they sum to {sum})"
                ));
            }
            for s in self.weights.keys().filter(|s| !symbols.contains(s)) {
                out.push(format!("{s:?} is not in trading.symbols"));
            }
        }
        out
    }
}

pub struct Rebalance {
    params: RebalanceParams,
    interval: Interval,
    at: NaiveTime,
    /// The symbols held at their weights: the fixed weights' or every one seen.
    closes: BTreeMap<String, VecDeque<f64>>,
    /// The session last rebalanced.
    done: Option<NaiveDate>,
}

impl Rebalance {
    pub fn new(params: RebalanceParams, interval: Interval) -> Self {
        let at = NaiveTime::parse_from_str(&params.at, "%H:%M").unwrap_or(NaiveTime::MIN);
        Rebalance {
            params,
            interval,
            at,
            closes: BTreeMap::new(),
            done: None,
        }
    }

    fn due(&self, day: NaiveDate) -> bool {
        match (self.params.schedule, self.done) {
            (_, None) => true,
            (Schedule::Daily, Some(d)) => d != day,
            (Schedule::Weekly, Some(d)) => d.iso_week() != day.iso_week(),
        }
    }

    /// The target weight of each symbol (summing to `invest`), or `None` while a volatility
    /// is not known yet.
    fn weights(&self, symbols: &[&String]) -> Option<BTreeMap<String, f64>> {
        let raw: BTreeMap<String, f64> = match self.params.method {
            Weighting::Fixed => self.params.weights.clone(),
            Weighting::Equal => symbols.iter().map(|s| ((*s).clone(), 1.0)).collect(),
            Weighting::InverseVolatility => {
                let mut out = BTreeMap::new();
                for s in symbols {
                    let closes = self.closes.get(*s)?;
                    if closes.len() <= self.params.vol_lookback {
                        return None;
                    }
                    let r: Vec<f64> = closes
                        .iter()
                        .zip(closes.iter().skip(1))
                        .map(|(a, b)| (b / a).ln())
                        .collect();
                    let mean = r.iter().sum::<f64>() / r.len() as f64;
                    let var =
                        r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (r.len() as f64 - 1.0);
                    if var <= 0.0 {
                        return None;
                    }
                    out.insert((*s).clone(), 1.0 / var.sqrt());
                }
                out
            }
        };
        let scale = match self.params.method {
            // Fixed weights are fractions of the invested equity already.
            Weighting::Fixed => self.params.invest,
            _ => self.params.invest / raw.values().sum::<f64>(),
        };
        Some(raw.into_iter().map(|(s, w)| (s, w * scale)).collect())
    }
}

impl Strategy for Rebalance {
    fn name(&self) -> &str {
        "rebalance"
    }

    fn interval(&self) -> Interval {
        self.interval
    }

    fn on_bar(&mut self, input: &BarInput<'_>) -> Signal {
        let close = super::indicators::to_f64(input.bar.close);
        if close > 0.0 {
            let keep = self.params.vol_lookback + 1;
            let c = self.closes.entry(input.symbol.to_string()).or_default();
            c.push_back(close);
            while c.len() > keep {
                c.pop_front();
            }
        }
        Signal::Hold
    }

    fn reset(&mut self, symbol: &str) {
        self.closes.remove(symbol);
    }

    fn on_market(&mut self, view: &MarketView<'_>) -> Vec<(String, Signal)> {
        let local = calendar::to_et(view.now);
        let day = local.date_naive();
        if view.historical || local.time() < self.at || !self.due(day) {
            return Vec::new();
        }
        // Every symbol's bar of this close must be in before the weights are taken.
        let symbols: Vec<&String> = match self.params.method {
            Weighting::Fixed => self.params.weights.keys().collect(),
            _ => view.bars.keys().collect(),
        };
        let this = view.bars.get(view.closed).map(|b| b.start);
        if symbols
            .iter()
            .any(|s| view.bars.get(s).map(|b| b.start) != this)
        {
            return Vec::new();
        }
        let (Some(equity), Some(weights)) = (view.equity, self.weights(&symbols)) else {
            return Vec::new();
        };
        self.done = Some(day);
        let band = self.params.drift_band;
        let mut sells = Vec::new();
        let mut buys = Vec::new();
        for (symbol, w) in weights {
            let Some(bar) = view.bars.get(&symbol) else {
                continue;
            };
            let price = bar.close;
            if price <= Decimal::ZERO || equity <= Decimal::ZERO {
                continue;
            }
            let held = view.position(&symbol);
            // Saturating: the position and price come from the broker.
            let now_w = held
                .saturating_mul(price)
                .checked_div(equity)
                .and_then(|w| w.to_f64())
                .unwrap_or(0.0);
            if (now_w - w).abs() <= band {
                continue;
            }
            let Some(target) = Decimal::from_f64(w)
                .and_then(|w| equity.saturating_mul(w).checked_div(price))
                .map(|q| q.floor())
            else {
                continue;
            };
            let signal = Signal::Target {
                qty: target,
                reason: format!("weight {now_w:.3} → {w:.3}"),
            };
            if target < held {
                sells.push((symbol, signal));
            } else if target > held {
                buys.push((symbol, signal));
            }
        }
        sells.extend(buys);
        sells
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeZone, Utc};
    use rust_decimal_macros::dec;

    use crate::strategy::MarketBars;
    use crate::strategy::flat_bar as bar;

    /// 2026-11-30 (a Monday) at h:m New York time (EST, UTC−5).
    fn ny(day: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, h + 5, m, 0).unwrap()
    }

    fn run(
        r: &mut Rebalance,
        now: DateTime<Utc>,
        prices: &[(&str, Decimal)],
        positions: &BTreeMap<String, Decimal>,
        equity: Option<Decimal>,
    ) -> Vec<(String, Signal)> {
        let mut bars = MarketBars::default();
        let start = now - chrono::Duration::minutes(1);
        for (s, p) in prices {
            bars.insert(s.to_string(), bar(start, *p));
            r.on_bar(&BarInput {
                symbol: s,
                interval: Interval::M1,
                bar: &bar(start, *p),
                historical: false,
                position: Decimal::ZERO,
                explain: true,
            });
        }
        r.on_market(&MarketView {
            closed: prices[prices.len() - 1].0,
            bars: &bars,
            positions,
            historical: false,
            equity,
            now,
        })
    }

    fn targets(out: &[(String, Signal)]) -> Vec<(String, Decimal)> {
        out.iter()
            .map(|(s, sig)| match sig {
                Signal::Target { qty, .. } => (s.clone(), *qty),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    fn equal() -> Rebalance {
        Rebalance::new(
            RebalanceParams {
                at: "15:45".into(),
                invest: 0.9,
                ..RebalanceParams::default()
            },
            Interval::M1,
        )
    }

    #[test]
    fn equal_weights_at_the_time_once_a_day_within_the_band() {
        let mut r = equal();
        let flat = BTreeMap::new();
        let prices = [("A", dec!(100)), ("B", dec!(50))];
        // Before the time: nothing.
        assert!(run(&mut r, ny(30, 15, 0), &prices, &flat, Some(dec!(10000))).is_empty());
        // Without equity: nothing, and still due.
        assert!(run(&mut r, ny(30, 15, 45), &prices, &flat, None).is_empty());
        // At the time: 45 % each of 10,000.
        let out = run(&mut r, ny(30, 15, 46), &prices, &flat, Some(dec!(10000)));
        assert_eq!(
            targets(&out),
            vec![("A".into(), dec!(45)), ("B".into(), dec!(90))]
        );
        // Done for the day.
        assert!(run(&mut r, ny(30, 15, 50), &prices, &flat, Some(dec!(10000))).is_empty());
        // The next day: A drifted to 60 % (sold first), B within the band (held).
        let mut held = BTreeMap::new();
        held.insert("A".to_string(), dec!(60));
        held.insert("B".to_string(), dec!(88));
        let prices = [("A", dec!(100)), ("B", dec!(50))];
        let tuesday = Utc.with_ymd_and_hms(2026, 12, 1, 20, 45, 0).unwrap();
        let out = run(&mut r, tuesday, &prices, &held, Some(dec!(10000)));
        assert_eq!(targets(&out), vec![("A".into(), dec!(45))]);
    }

    #[test]
    fn reductions_come_before_purchases() {
        let mut r = equal();
        let mut held = BTreeMap::new();
        held.insert("A".to_string(), dec!(5));
        held.insert("B".to_string(), dec!(200));
        let out = run(
            &mut r,
            ny(30, 16, 0),
            &[("A", dec!(100)), ("B", dec!(50))],
            &held,
            Some(dec!(10000)),
        );
        assert_eq!(
            targets(&out),
            vec![("B".into(), dec!(90)), ("A".into(), dec!(45))]
        );
    }

    #[test]
    fn weekly_rebalances_once_a_week() {
        let mut r = Rebalance::new(
            RebalanceParams {
                schedule: Schedule::Weekly,
                at: "10:00".into(),
                ..RebalanceParams::default()
            },
            Interval::M1,
        );
        let flat = BTreeMap::new();
        let p = [("A", dec!(10))];
        assert!(!run(&mut r, ny(30, 10, 0), &p, &flat, Some(dec!(1000))).is_empty());
        // Tuesday to Friday of the same week: nothing.
        for d in 1..=4 {
            let t = Utc.with_ymd_and_hms(2026, 12, d, 15, 0, 0).unwrap();
            assert!(run(&mut r, t, &p, &flat, Some(dec!(1000))).is_empty());
        }
        let monday = Utc.with_ymd_and_hms(2026, 12, 7, 15, 0, 0).unwrap();
        assert!(!run(&mut r, monday, &p, &flat, Some(dec!(1000))).is_empty());
    }

    #[test]
    fn inverse_volatility_weighs_the_calmer_symbol_more() {
        let mut r = Rebalance::new(
            RebalanceParams {
                method: Weighting::InverseVolatility,
                vol_lookback: 10,
                invest: 1.0,
                drift_band: 0.0,
                ..RebalanceParams::default()
            },
            Interval::M1,
        );
        let flat = BTreeMap::new();
        // A moves 1 % a bar, B 3 %; both at 100 at the end.
        for i in 0..12 {
            let up = i % 2 == 0;
            let a = if up { dec!(101) } else { dec!(100) };
            let b = if up { dec!(103) } else { dec!(100) };
            let out = run(
                &mut r,
                ny(30, 9, 40 + i),
                &[("A", a), ("B", b)],
                &flat,
                Some(dec!(10000)),
            );
            assert!(out.is_empty(), "before the time");
        }
        let out = run(
            &mut r,
            ny(30, 15, 50),
            &[("A", dec!(100)), ("B", dec!(100))],
            &flat,
            Some(dec!(10000)),
        );
        let t = targets(&out);
        assert_eq!(t.len(), 2);
        assert!(
            t[0].1 > t[1].1 * dec!(2),
            "A (calmer) gets about three times B: {t:?}"
        );
    }

    #[test]
    fn bad_parameters_are_named() {
        let symbols = vec!["SPY".to_string()];
        let p = RebalanceParams {
            method: Weighting::Fixed,
            weights: [("SPY".to_string(), 0.7), ("QQQ".to_string(), 0.5)].into(),
            at: "25:00".into(),
            invest: 1.5,
            ..RebalanceParams::default()
        };
        let all = p.problems(&symbols).join("; ");
        for needle in [
            "HH:MM",
            "sum to at most 1",
            "\"QQQ\" is not in",
            "invest 1.5",
        ] {
            assert!(all.contains(needle), "{needle}: {all}");
        }
        assert!(RebalanceParams::default().problems(&symbols).is_empty());
    }
}
