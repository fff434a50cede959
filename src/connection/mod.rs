//! The stream client's decisions, without I/O: the connection state machine, reconnect
//! delays (exponential with full jitter, capped), the desired subscription set, and the
//! metrics other actors read.

mod backlog;
pub use backlog::{Backlog, Full};

use crate::alpaca::stream::{ChannelLists, SubscriptionSet};
pub use crate::domain::ConnectionState;
use rand::Rng;
use serde::Serialize;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Reconnect delays: `random(0, min(cap, base × 2^attempt))` ("full jitter"), never below
/// a small floor so a flapping server is not hammered.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    pub floor: Duration,
}

impl Backoff {
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
            .min(self.cap);
        let jittered = ceiling.mul_f64(rng.random::<f64>());
        jittered.max(self.floor)
    }
}

/// The subscription set the client wants, kept across reconnects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Subscriptions {
    pub trades: BTreeSet<String>,
    pub quotes: BTreeSet<String>,
    pub bars: BTreeSet<String>,
    pub updated_bars: BTreeSet<String>,
    pub daily_bars: BTreeSet<String>,
    pub statuses: BTreeSet<String>,
    pub lulds: BTreeSet<String>,
}

impl Subscriptions {
    fn sets_mut(&mut self) -> [&mut BTreeSet<String>; 7] {
        [
            &mut self.trades,
            &mut self.quotes,
            &mut self.bars,
            &mut self.updated_bars,
            &mut self.daily_bars,
            &mut self.statuses,
            &mut self.lulds,
        ]
    }

    fn sets(&self) -> [&BTreeSet<String>; 7] {
        [
            &self.trades,
            &self.quotes,
            &self.bars,
            &self.updated_bars,
            &self.daily_bars,
            &self.statuses,
            &self.lulds,
        ]
    }

    /// Applies a change; returns what must actually be sent (additions not yet present,
    /// removals that were present).
    pub fn change(
        &mut self,
        add: &ChannelLists,
        remove: &ChannelLists,
    ) -> (ChannelLists, ChannelLists) {
        let (mut to_add, mut to_remove) = (ChannelLists::default(), ChannelLists::default());
        let add_lists = add.lists();
        let remove_lists = remove.lists();
        for (((set, a), r), (out_a, out_r)) in self
            .sets_mut()
            .into_iter()
            .zip(add_lists)
            .zip(remove_lists)
            .zip(to_add.lists_mut().into_iter().zip(to_remove.lists_mut()))
        {
            for s in a {
                if set.insert(s.clone()) {
                    out_a.push(s.clone());
                }
            }
            for s in r {
                if set.remove(s) {
                    out_r.push(s.clone());
                }
            }
        }
        (to_add, to_remove)
    }

    /// The whole set as a subscribe request.
    pub fn as_lists(&self) -> ChannelLists {
        let mut out = ChannelLists::default();
        for (set, list) in self.sets().into_iter().zip(out.lists_mut()) {
            list.extend(set.iter().cloned());
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.sets().iter().all(|s| s.is_empty())
    }

    /// True when the server's confirmed set covers everything wanted.
    pub fn confirmed_by(&self, server: &SubscriptionSet) -> bool {
        let confirmed = [
            &server.trades,
            &server.quotes,
            &server.bars,
            &server.updated_bars,
            &server.daily_bars,
            &server.statuses,
            &server.lulds,
        ];
        self.sets().iter().zip(confirmed).all(|(want, have)| {
            have.iter().any(|s| s == "*") || want.iter().all(|s| have.contains(s))
        })
    }

    /// Symbols per channel, for status reports.
    pub fn counts(&self) -> SubscriptionCounts {
        SubscriptionCounts {
            trades: self.trades.len(),
            quotes: self.quotes.len(),
            bars: self.bars.len(),
            daily_bars: self.daily_bars.len(),
            statuses: self.statuses.len(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SubscriptionCounts {
    pub trades: usize,
    pub quotes: usize,
    pub bars: usize,
    pub daily_bars: usize,
    pub statuses: usize,
}

/// Counters the session updates without messaging; read through [`StreamMetrics::snapshot`].
#[derive(Debug, Default)]
pub struct StreamMetrics {
    pub frames: AtomicU64,
    pub bytes: AtomicU64,
    pub messages_received: AtomicU64,
    pub messages_processed: AtomicU64,
    /// Frames that could not be decoded (each skipped whole).
    pub frames_failed: AtomicU64,
    /// Messages of a type we do not model (skipped).
    pub messages_unknown: AtomicU64,
    pub quotes_conflated: AtomicU64,
    pub reconnects: AtomicU64,
    /// Unix time in ns of the last data message received (0: none yet).
    pub last_message_unix_ns: AtomicI64,
    /// Unix time in ns the current connection started streaming (0: not streaming).
    pub connected_since_unix_ns: AtomicI64,
    /// The feed was refused (409) and the stream fell back to IEX.
    pub fell_back: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MetricsSnapshot {
    pub frames: u64,
    pub bytes: u64,
    pub messages_received: u64,
    pub messages_processed: u64,
    pub frames_failed: u64,
    pub messages_unknown: u64,
    pub quotes_conflated: u64,
    pub reconnects: u64,
    pub last_message_at: Option<chrono::DateTime<chrono::Utc>>,
    pub connected_since: Option<chrono::DateTime<chrono::Utc>>,
}

pub fn unix_ns_now() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

impl StreamMetrics {
    pub fn snapshot(&self) -> MetricsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let t = |a: &AtomicI64| match a.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(chrono::DateTime::from_timestamp_nanos(ns)),
        };
        MetricsSnapshot {
            frames: g(&self.frames),
            bytes: g(&self.bytes),
            messages_received: g(&self.messages_received),
            messages_processed: g(&self.messages_processed),
            frames_failed: g(&self.frames_failed),
            messages_unknown: g(&self.messages_unknown),
            quotes_conflated: g(&self.quotes_conflated),
            reconnects: g(&self.reconnects),
            last_message_at: t(&self.last_message_unix_ns),
            connected_since: t(&self.connected_since_unix_ns),
        }
    }
}

/// Everything a stream client reports about itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamStatus {
    pub stream: crate::domain::StreamKind,
    pub state: ConnectionState,
    /// The market-data feed in use (`iex`, `sip`, …): the configured one, or `iex` after the
    /// plan refused it. `None` for the trading stream.
    pub feed: Option<String>,
    pub metrics: MetricsSnapshot,
    pub subscriptions: SubscriptionCounts,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn transitions_table() {
        use ConnectionState::*;
        let ok = [
            (Disconnected, Connecting),
            (Connecting, Authenticating),
            (Authenticating, Subscribing),
            (Subscribing, Streaming),
            (Streaming, Reconnecting),
            (Reconnecting, Connecting),
            (Authenticating, Failed),
            (Failed, Connecting),
            (Streaming, Disconnected),
        ];
        let bad = [
            (Disconnected, Streaming),
            (Connecting, Streaming),
            (Failed, Streaming),
            (Reconnecting, Streaming),
            (Streaming, Authenticating),
        ];
        for (a, b) in ok {
            assert!(a.can_go_to(b), "{a:?} -> {b:?}");
        }
        for (a, b) in bad {
            assert!(!a.can_go_to(b), "{a:?} -> {b:?}");
        }
    }

    #[test]
    fn full_jitter_stays_under_the_capped_ceiling() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(5),
            floor: Duration::from_millis(10),
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for attempt in 0..40 {
            let ceiling = Duration::from_millis(100)
                .saturating_mul(1 << attempt.min(20))
                .min(Duration::from_secs(5));
            for _ in 0..50 {
                let d = b.delay(attempt, &mut rng);
                assert!(
                    d <= ceiling.max(b.floor) && d >= b.floor,
                    "attempt {attempt}: {d:?}"
                );
            }
        }
        let spread: Vec<Duration> = (0..20).map(|_| b.delay(10, &mut rng)).collect();
        assert!(
            spread.iter().any(|d| *d < Duration::from_secs(2))
                && spread.iter().any(|d| *d > Duration::from_secs(3)),
            "jitter spreads: {spread:?}"
        );
    }

    #[test]
    fn subscription_changes_send_only_what_changes() {
        let mut s = Subscriptions::default();
        let lists = |t: &[&str]| ChannelLists {
            trades: t.iter().map(|x| x.to_string()).collect(),
            ..Default::default()
        };
        let (a, r) = s.change(&lists(&["AAPL", "MSFT"]), &ChannelLists::default());
        assert_eq!((a.trades.len(), r.trades.len()), (2, 0));
        let (a, r) = s.change(&lists(&["AAPL", "SPY"]), &lists(&["MSFT", "QQQ"]));
        assert_eq!(
            (a.trades, r.trades),
            (vec!["SPY".to_string()], vec!["MSFT".to_string()])
        );
        assert_eq!(s.as_lists().trades, vec!["AAPL", "SPY"]);
        let confirmed = SubscriptionSet {
            trades: vec!["AAPL".into(), "SPY".into()],
            ..Default::default()
        };
        assert!(s.confirmed_by(&confirmed));
        let partial = SubscriptionSet {
            trades: vec!["AAPL".into()],
            ..Default::default()
        };
        assert!(!s.confirmed_by(&partial));
    }
}
