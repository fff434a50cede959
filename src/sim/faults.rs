//! Fault injection for the REST half, set through `POST /_sim/faults` (see
//! `docs/simulator.md`). Counted faults apply to the next N non-admin requests and then clear.

use serde::{Deserialize, Serialize};

/// One fault, as posted to `/_sim/faults`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultSpec {
    /// The next `count` non-admin requests get `status` with an Alpaca-style body.
    HttpError { status: u16, count: u32 },
    /// Every non-admin request waits `ms` first; 0 clears it.
    Latency { ms: u64 },
    /// The next `count` order POSTs are accepted, then the connection is dropped unanswered.
    DropAfterAccept { count: u32 },
    /// The next `count` order POSTs are accepted, then the answer is held back `ms` (a slow
    /// broker: the order exists while the client still waits).
    DelayAfterAccept { ms: u64, count: u32 },
    /// The next `count` order POSTs wait `ms` before the broker takes them (a slow order
    /// gateway: the order does not exist yet while the client waits, and reads made meanwhile
    /// show neither it nor its fill).
    DelayBeforeAccept { ms: u64, count: u32 },
    /// The next `count` non-admin requests get 429 with the rate-limit headers.
    RateLimit { count: u32 },
    /// Closes every stream connection now.
    DropStreams,
    /// The next `count` market-data frames are garbage: invalid, truncated, wrong types, unknown `T`.
    Garbage { count: u32 },
    /// Streams stay connected and answer pings but send nothing for `seconds`.
    Freeze { seconds: f64 },
    /// `trade_updates` events are not sent for `seconds` (lost, as by a broker that drops
    /// events); the connection stays up. Clients must find out by asking.
    MuteTradeUpdates { seconds: f64 },
    /// Stream authentication fails (402 / unauthorized) while enabled.
    RejectAuth { enabled: bool },
    /// The SIP feed (`/v2/sip`) refuses every key with `409 insufficient subscription`, as for
    /// an account whose market-data plan is the free one, while enabled.
    RefuseSip { enabled: bool },
    /// Market data from pre-generated frames on every market-data connection, at a target
    /// rate or as fast as the client reads (see [`crate::sim::flood`]); rate 0 stops it.
    Flood(crate::sim::flood::FloodSpec),
    /// Clears every fault.
    Clear,
}

/// The faults in force and what they have done so far.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Faults {
    pub http_error: Option<(u16, u32)>,
    pub latency_ms: u64,
    pub drop_after_accept: u32,
    /// (ms, count) of `delay_after_accept`.
    pub delay_after_accept: Option<(u64, u32)>,
    /// (ms, count) of `delay_before_accept`.
    pub delay_before_accept: Option<(u64, u32)>,
    pub rate_limit: u32,
    pub injected_http_errors: u64,
    pub injected_drops: u64,
    pub injected_rate_limits: u64,
    pub garbage_frames: u32,
    #[serde(skip)]
    pub frozen_until: Option<std::time::Instant>,
    #[serde(skip)]
    pub trade_updates_muted_until: Option<std::time::Instant>,
    pub reject_auth: bool,
    pub refuse_sip: bool,
    /// The flood in force, and how many times one was set (connections regenerate on a change).
    pub flood: Option<crate::sim::flood::FloodSpec>,
    pub flood_generation: u64,
    pub injected_garbage: u64,
    pub stream_drops: u64,
}

impl Faults {
    pub fn apply(&mut self, spec: FaultSpec) -> Result<(), String> {
        match spec {
            FaultSpec::HttpError { status, count } => {
                if !(400..=599).contains(&status) {
                    return Err(format!(
                        "status must be an HTTP error status (400-599), got {status}"
                    ));
                }
                self.http_error = (count > 0).then_some((status, count));
            }
            FaultSpec::Latency { ms } => {
                if ms > 120_000 {
                    return Err("latency ms must be at most 120000".into());
                }
                self.latency_ms = ms;
            }
            FaultSpec::DropAfterAccept { count } => self.drop_after_accept = count,
            FaultSpec::DelayAfterAccept { ms, count } => {
                if ms > 120_000 {
                    return Err("delay ms must be at most 120000".into());
                }
                self.delay_after_accept = (count > 0 && ms > 0).then_some((ms, count));
            }
            FaultSpec::DelayBeforeAccept { ms, count } => {
                if ms > 120_000 {
                    return Err("delay ms must be at most 120000".into());
                }
                self.delay_before_accept = (count > 0 && ms > 0).then_some((ms, count));
            }
            FaultSpec::RateLimit { count } => self.rate_limit = count,
            FaultSpec::DropStreams => self.stream_drops += 1,
            FaultSpec::Garbage { count } => self.garbage_frames = count,
            FaultSpec::Freeze { seconds } => {
                if !(seconds.is_finite() && (0.0..=3600.0).contains(&seconds)) {
                    return Err("freeze seconds must be between 0 and 3600".into());
                }
                self.frozen_until = (seconds > 0.0).then(|| {
                    std::time::Instant::now() + std::time::Duration::from_secs_f64(seconds)
                });
            }
            FaultSpec::MuteTradeUpdates { seconds } => {
                if !(seconds.is_finite() && (0.0..=3600.0).contains(&seconds)) {
                    return Err("mute seconds must be between 0 and 3600".into());
                }
                self.trade_updates_muted_until = (seconds > 0.0).then(|| {
                    std::time::Instant::now() + std::time::Duration::from_secs_f64(seconds)
                });
            }
            FaultSpec::RejectAuth { enabled } => self.reject_auth = enabled,
            FaultSpec::RefuseSip { enabled } => self.refuse_sip = enabled,
            FaultSpec::Flood(spec) => {
                spec.validate()?;
                self.flood = spec.active().then_some(spec);
                self.flood_generation += 1;
            }
            FaultSpec::Clear => {
                self.http_error = None;
                self.latency_ms = 0;
                self.drop_after_accept = 0;
                self.delay_after_accept = None;
                self.delay_before_accept = None;
                self.rate_limit = 0;
                self.garbage_frames = 0;
                self.frozen_until = None;
                self.trade_updates_muted_until = None;
                self.reject_auth = false;
                self.refuse_sip = false;
                self.flood = None;
                self.flood_generation += 1;
            }
        }
        Ok(())
    }

    /// Takes one injected HTTP error, if one is pending.
    pub fn take_http_error(&mut self) -> Option<u16> {
        let (status, count) = self.http_error?;
        self.http_error = (count > 1).then_some((status, count - 1));
        self.injected_http_errors += 1;
        Some(status)
    }

    pub fn take_rate_limit(&mut self) -> bool {
        if self.rate_limit == 0 {
            return false;
        }
        self.rate_limit -= 1;
        self.injected_rate_limits += 1;
        true
    }

    /// Takes one garbage frame, if any are pending; returns which kind (0..4).
    pub fn take_garbage(&mut self) -> Option<u64> {
        if self.garbage_frames == 0 {
            return None;
        }
        self.garbage_frames -= 1;
        self.injected_garbage += 1;
        Some((self.injected_garbage - 1) % 4)
    }

    pub fn frozen(&self) -> bool {
        self.frozen_until
            .is_some_and(|t| std::time::Instant::now() < t)
    }

    pub fn trade_updates_muted(&self) -> bool {
        self.trade_updates_muted_until
            .is_some_and(|t| std::time::Instant::now() < t)
    }

    /// How long to hold back the answer to an accepted order POST, if at all.
    pub fn take_delay(&mut self) -> Option<std::time::Duration> {
        let (ms, count) = self.delay_after_accept?;
        self.delay_after_accept = (count > 1).then_some((ms, count - 1));
        Some(std::time::Duration::from_millis(ms))
    }

    /// How long an order POST waits before the broker takes it, if at all.
    pub fn take_delay_before(&mut self) -> Option<std::time::Duration> {
        let (ms, count) = self.delay_before_accept?;
        self.delay_before_accept = (count > 1).then_some((ms, count - 1));
        Some(std::time::Duration::from_millis(ms))
    }

    pub fn take_drop(&mut self) -> bool {
        if self.drop_after_accept == 0 {
            return false;
        }
        self.drop_after_accept -= 1;
        self.injected_drops += 1;
        true
    }
}

/// A fixed-window request budget per API key, like Alpaca's 200 requests a minute.
#[derive(Debug, Clone)]
pub struct RateWindow {
    pub limit: u32,
    pub window_s: u64,
    window_start_s: u64,
    used: std::collections::HashMap<String, u32>,
}

/// What the rate limiter says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateVerdict {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    pub reset_epoch_s: u64,
}

impl RateWindow {
    pub fn new(limit: u32, window_s: u64) -> Self {
        RateWindow {
            limit,
            window_s: window_s.max(1),
            window_start_s: 0,
            used: Default::default(),
        }
    }

    /// Counts a request by `key` at `now_epoch_s`. A limit of 0 means unlimited.
    pub fn check(&mut self, key: &str, now_epoch_s: u64) -> RateVerdict {
        if now_epoch_s >= self.window_start_s + self.window_s {
            self.window_start_s = now_epoch_s - now_epoch_s % self.window_s;
            self.used.clear();
        }
        let reset = self.window_start_s + self.window_s;
        if self.limit == 0 {
            return RateVerdict {
                allowed: true,
                limit: 0,
                remaining: 0,
                reset_epoch_s: reset,
            };
        }
        let used = self.used.entry(key.to_string()).or_insert(0);
        let allowed = *used < self.limit;
        if allowed {
            *used += 1;
        }
        RateVerdict {
            allowed,
            limit: self.limit,
            remaining: self.limit - *used,
            reset_epoch_s: reset,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_faults_run_out() {
        let mut f = Faults::default();
        f.apply(FaultSpec::HttpError {
            status: 503,
            count: 2,
        })
        .unwrap();
        assert_eq!(f.take_http_error(), Some(503));
        assert_eq!(f.take_http_error(), Some(503));
        assert_eq!(f.take_http_error(), None);
        assert!(
            f.apply(FaultSpec::HttpError {
                status: 200,
                count: 1
            })
            .is_err()
        );
        let before: FaultSpec =
            serde_json::from_str(r#"{"kind":"delay_before_accept","ms":40,"count":2}"#).unwrap();
        f.apply(before).unwrap();
        let held = Some(std::time::Duration::from_millis(40));
        assert_eq!((f.take_delay_before(), f.take_delay_before()), (held, held));
        assert_eq!(f.take_delay_before(), None);
        assert!(
            f.apply(FaultSpec::DelayBeforeAccept {
                ms: 120_001,
                count: 1
            })
            .is_err()
        );
    }

    #[test]
    fn fault_json_is_strict() {
        let ok: FaultSpec = serde_json::from_str(r#"{"kind":"latency","ms":5}"#).unwrap();
        assert_eq!(ok, FaultSpec::Latency { ms: 5 });
        assert!(serde_json::from_str::<FaultSpec>(r#"{"kind":"latency","ms":5,"x":1}"#).is_err());
        assert!(serde_json::from_str::<FaultSpec>(r#"{"kind":"explode"}"#).is_err());
    }

    #[test]
    fn rate_window_resets() {
        let mut r = RateWindow::new(2, 60);
        assert!(r.check("k", 120).allowed);
        let v = r.check("k", 121);
        assert!(v.allowed && v.remaining == 0 && v.reset_epoch_s == 180);
        assert!(!r.check("k", 122).allowed);
        assert!(r.check("other", 122).allowed);
        assert!(r.check("k", 180).allowed);
    }
}
