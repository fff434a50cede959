//! Latency histograms in microseconds (HDR, 3 significant digits, 1 µs to 60 s), and the
//! summary the control socket and the load bench read.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A histogram of durations. (`None` only if the constant bounds were ever rejected by the
/// library, in which case nothing is recorded rather than panicking.)
#[derive(Debug, Clone)]
pub struct LatencyHistogram(Option<hdrhistogram::Histogram<u64>>);

const MAX_US: u64 = 60_000_000;

/// Percentiles of a [`LatencyHistogram`], in microseconds (0 when empty).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    pub fn new() -> Self {
        LatencyHistogram(hdrhistogram::Histogram::new_with_bounds(1, MAX_US, 3).ok())
    }

    /// Records one duration (clamped into the histogram's range).
    pub fn record(&mut self, d: Duration) {
        if let Some(h) = &mut self.0 {
            h.saturating_record((d.as_micros() as u64).clamp(1, MAX_US));
        }
    }

    pub fn clear(&mut self) {
        if let Some(h) = &mut self.0 {
            h.reset();
        }
    }

    pub fn summary(&self) -> LatencySummary {
        let Some(h) = self.0.as_ref().filter(|h| !h.is_empty()) else {
            return LatencySummary::default();
        };
        LatencySummary {
            count: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_samples() {
        let mut h = LatencyHistogram::new();
        assert_eq!(h.summary(), LatencySummary::default());
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        assert!((499..=501).contains(&s.p50_us), "{s:?}");
        assert!((989..=991).contains(&s.p99_us), "{s:?}");
        assert!((998..=1000).contains(&s.p999_us), "{s:?}");
        assert_eq!(s.max_us, 1000);
        h.record(Duration::from_secs(3600));
        // HDR reports the highest value equivalent to the largest at 3 significant digits.
        assert!((60_000_000..60_100_000).contains(&h.summary().max_us));
    }
}
