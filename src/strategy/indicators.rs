//! Streaming indicators: feed one close at a time, read the value when ready.
//!
//! Definitions follow the widely used `ta` Python library (pandas), so results can be checked
//! against it (see `tests/fixtures/indicators.json`):
//! - EMA(n): `α = 2/(n+1)`, seeded with the first value, ready after n values.
//! - RSI(n): Wilder smoothing (`α = 1/n`) of up and down moves, the first close counting as a
//!   zero move; ready after n closes; 100 when there were no down moves.
//! - MACD(fast, slow, signal): EMA(fast) − EMA(slow); the signal line is an EMA of the MACD
//!   seeded at its first ready value; histogram = MACD − signal.
//! - Bollinger(n, k): SMA(n) ± k × population standard deviation (ddof 0); z-score =
//!   (close − SMA) / σ.
//!
//! Indicators work in `f64` (they are statistics, not money); the orders they lead to are
//! `Decimal`.

use rust_decimal::Decimal;
use std::collections::VecDeque;

/// A price as the indicators take it: the very `f64` that rust_decimal's `to_f64` gives
/// (its steps, in 64-bit integers when the mantissa fits), without its 128-bit divisions. A
/// backtest converts every close it sees.
pub fn to_f64(d: Decimal) -> f64 {
    let u = d.unpack();
    // A mantissa below 2^50 (every price): rust_decimal's steps round back to the mantissa
    // itself (their error is below ⅜), so the answer is the mantissa over the power of ten,
    // one correctly rounded division of two exact doubles, with no integer division.
    if u.hi == 0 && u.mid < 1 << 18 && u.scale != 0 && u.scale <= 19 {
        let mantissa = ((u64::from(u.mid) << 32) | u64::from(u.lo)) as f64;
        let value = mantissa / POW10[u.scale as usize];
        return if u.negative { -value } else { value };
    }
    // Up to 10^19 a power of ten fits a u64, and as an f64 it is exact (5^19 < 2^53), as
    // rust_decimal's `10f64.powi(scale)` is.
    if u.scale == 0 || u.hi != 0 || u.scale > 19 {
        return rust_decimal::prelude::ToPrimitive::to_f64(&d).unwrap_or(0.0);
    }
    let mantissa = (u64::from(u.mid) << 32) | u64::from(u.lo);
    let precision = 10u64.pow(u.scale);
    let integral = (mantissa / precision) as f64;
    let frac = (mantissa % precision) as f64 / precision as f64;
    let value = if frac == 0.0 {
        integral
    } else {
        let round_to = precision as f64;
        round_half_away(((integral + frac) * round_to).abs()) / round_to
    };
    if u.negative { -value } else { value }
}

/// 10^0 to 10^19, each exact as an `f64` (5^19 < 2^53).
const POW10: [f64; 20] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19,
];

/// `x.round()` for `x ≥ 0`, without the call to libm's `round` (x86-64's baseline has no
/// rounding instruction): below 2^52 the fraction `x − trunc(x)` is exact, and a half
/// rounds up, away from zero.
fn round_half_away(x: f64) -> f64 {
    if x.is_nan() || x >= 4_503_599_627_370_496.0 {
        // 2^52 and up (or NaN): an integer already, or whatever `round` makes of it.
        return x.round();
    }
    let whole = (x as u64) as f64;
    if x - whole >= 0.5 { whole + 1.0 } else { whole }
}

/// Exponential moving average.
#[derive(Debug, Clone)]
pub struct Ema {
    alpha: f64,
    period: usize,
    value: Option<f64>,
    seen: usize,
}

impl Ema {
    pub fn new(period: usize) -> Self {
        Self::with_alpha(2.0 / (period.max(1) as f64 + 1.0), period)
    }

    fn with_alpha(alpha: f64, period: usize) -> Self {
        Ema {
            alpha,
            period: period.max(1),
            value: None,
            seen: 0,
        }
    }

    pub fn update(&mut self, x: f64) -> Option<f64> {
        self.seen += 1;
        let v = match self.value {
            None => x,
            Some(prev) => self.alpha * x + (1.0 - self.alpha) * prev,
        };
        self.value = Some(v);
        self.value()
    }

    pub fn value(&self) -> Option<f64> {
        self.value.filter(|_| self.seen >= self.period)
    }
}

/// Relative strength index (Wilder).
#[derive(Debug, Clone)]
pub struct Rsi {
    up: Ema,
    down: Ema,
    prev: Option<f64>,
}

impl Rsi {
    pub fn new(period: usize) -> Self {
        let alpha = 1.0 / period.max(1) as f64;
        Rsi {
            up: Ema::with_alpha(alpha, period),
            down: Ema::with_alpha(alpha, period),
            prev: None,
        }
    }

    pub fn update(&mut self, close: f64) -> Option<f64> {
        let change = self.prev.map_or(0.0, |p| close - p);
        self.prev = Some(close);
        let up = self.up.update(change.max(0.0));
        let down = self.down.update((-change).max(0.0));
        match (up, down) {
            (Some(_), Some(0.0)) => Some(100.0),
            (Some(u), Some(d)) => Some(100.0 - 100.0 / (1.0 + u / d)),
            _ => None,
        }
    }
}

/// One MACD reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MacdValue {
    pub macd: f64,
    pub signal: f64,
    pub histogram: f64,
}

/// Moving average convergence/divergence.
#[derive(Debug, Clone)]
pub struct Macd {
    fast: Ema,
    slow: Ema,
    signal: Ema,
}

impl Macd {
    pub fn new(fast: usize, slow: usize, signal: usize) -> Self {
        Macd {
            fast: Ema::new(fast),
            slow: Ema::new(slow),
            signal: Ema::new(signal),
        }
    }

    /// The MACD line when both averages are ready, and the full reading once the signal is.
    pub fn update(&mut self, close: f64) -> (Option<f64>, Option<MacdValue>) {
        let fast = self.fast.update(close);
        let slow = self.slow.update(close);
        let (Some(f), Some(s)) = (fast, slow) else {
            return (None, None);
        };
        let macd = f - s;
        let value = self.signal.update(macd).map(|signal| MacdValue {
            macd,
            signal,
            histogram: macd - signal,
        });
        (Some(macd), value)
    }
}

/// One Bollinger reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BollingerValue {
    pub middle: f64,
    pub upper: f64,
    pub lower: f64,
    pub std_dev: f64,
    /// (close − middle) / σ; 0 when σ is 0.
    pub z_score: f64,
}

/// Bollinger bands over a rolling window.
#[derive(Debug, Clone)]
pub struct Bollinger {
    period: usize,
    k: f64,
    window: VecDeque<f64>,
}

impl Bollinger {
    pub fn new(period: usize, k: f64) -> Self {
        Bollinger {
            period: period.max(1),
            k,
            window: VecDeque::with_capacity(period.max(1) + 1),
        }
    }

    pub fn update(&mut self, close: f64) -> Option<BollingerValue> {
        self.window.push_back(close);
        if self.window.len() > self.period {
            self.window.pop_front();
        }
        if self.window.len() < self.period {
            return None;
        }
        let n = self.period as f64;
        let mean = self.window.iter().sum::<f64>() / n;
        let var = self.window.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        let sd = var.sqrt();
        Some(BollingerValue {
            middle: mean,
            upper: mean + self.k * sd,
            lower: mean - self.k * sd,
            std_dev: sd,
            z_score: if sd > 0.0 { (close - mean) / sd } else { 0.0 },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_the_periods() {
        let mut e = Ema::new(3);
        assert_eq!((e.update(1.0), e.update(2.0)), (None, None));
        assert!(e.update(3.0).is_some());
        let mut r = Rsi::new(14);
        assert!((0..13).all(|i| r.update(100.0 + i as f64).is_none()));
        assert_eq!(r.update(120.0), Some(100.0), "no down moves: 100");
        let mut m = Macd::new(12, 26, 9);
        let ready: Vec<bool> = (0..40)
            .map(|i| m.update(100.0 + (i as f64).sin()).1.is_some())
            .collect();
        assert_eq!(ready.iter().position(|r| *r), Some(25 + 8));
        let mut b = Bollinger::new(3, 2.0);
        b.update(1.0);
        b.update(1.0);
        let flat = b.update(1.0).unwrap();
        assert_eq!((flat.std_dev, flat.z_score), (0.0, 0.0));
    }

    #[test]
    fn rounding_without_libm_is_rounds_own() {
        let halves = [
            0.0,
            0.5,
            1.5,
            2.5,
            0.49999999999999994,
            1e15 + 0.5,
            4_503_599_627_370_495.5,
        ];
        let edges = [
            4_503_599_627_370_496.0,
            9.007_199_254_740_993e15,
            1e300,
            f64::MAX,
        ];
        for x in halves.into_iter().chain(edges) {
            for y in [
                x,
                f64::from_bits(x.to_bits() + 1),
                f64::from_bits(x.to_bits().saturating_sub(1)),
            ] {
                assert_eq!(round_half_away(y).to_bits(), y.round().to_bits(), "{y}");
            }
        }
        assert!(round_half_away(f64::INFINITY).is_infinite());
    }
}
