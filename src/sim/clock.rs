//! The simulator's clock. Two modes:
//!
//! - `sim` (default): market time starts at the open of the most recent session and advances
//!   `speed` times faster than the wall clock, through open hours only: at 16:00 it continues at
//!   the next session's 09:30. So the market is open whenever a test or a newcomer starts the
//!   simulator, weekend or not, and `next_open`/`next_close` are still those of the calendar.
//! - `wall`: market time is real time, and the market is open only in real sessions.
//!
//! Either way the simulator reports time through Alpaca's own channels (`/v2/clock`, message
//! timestamps), which is all the daemon may use.

use crate::alpaca::model::Clock;
use crate::sim::calendar::{self, Timeline};
use chrono::{DateTime, Utc};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockMode {
    Sim,
    Wall,
}

#[derive(Debug, Clone)]
pub struct SimClock {
    mode: ClockMode,
    speed: f64,
    started: Instant,
    timeline: Timeline,
    /// Timeline position when the clock started (0 in `sim` mode).
    start_offset: f64,
}

impl SimClock {
    /// A clock anchored at `wall_now` (normally `Utc::now()`).
    pub fn new(mode: ClockMode, speed: f64, wall_now: DateTime<Utc>) -> Self {
        let anchor = calendar::latest_session_at_or_before(wall_now);
        let timeline = Timeline::new(anchor);
        let start_offset = match mode {
            ClockMode::Sim => 0.0,
            ClockMode::Wall => timeline.from_utc(wall_now),
        };
        SimClock {
            mode,
            speed: if speed.is_finite() && speed > 0.0 {
                speed
            } else {
                1.0
            },
            started: Instant::now(),
            timeline,
            start_offset,
        }
    }

    pub fn mode(&self) -> ClockMode {
        self.mode
    }

    pub fn speed(&self) -> f64 {
        self.speed
    }

    pub fn timeline(&self) -> Timeline {
        self.timeline
    }

    /// Where the market timeline stands now.
    pub fn now_open_seconds(&self) -> f64 {
        match self.mode {
            ClockMode::Sim => self.timeline.after_open_seconds(
                self.start_offset + self.started.elapsed().as_secs_f64() * self.speed,
            ),
            ClockMode::Wall => self.timeline.from_utc(Utc::now()),
        }
    }

    /// The current market time as a UTC instant.
    pub fn now(&self) -> DateTime<Utc> {
        match self.mode {
            ClockMode::Sim => self.timeline.to_utc(self.now_open_seconds()),
            ClockMode::Wall => Utc::now(),
        }
    }

    /// The `/v2/clock` answer for the current market time.
    pub fn clock_view(&self) -> Clock {
        let now = self.now();
        let session = match self.mode {
            // The sim clock is always inside a session (it skips closed time).
            ClockMode::Sim => calendar::latest_session_at_or_before(now),
            ClockMode::Wall => calendar::current_or_next_session(now),
        };
        let is_open = session.open <= now && now < session.close;
        let next_open = if now < session.open {
            session.open
        } else {
            session.next().open
        };
        let next_close = if now < session.close {
            session.close
        } else {
            session.next().close
        };
        let et = |t: DateTime<Utc>| calendar::to_et(t).fixed_offset();
        Clock {
            timestamp: et(now),
            is_open,
            next_open: et(next_open),
            next_close: et(next_close),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn sim_clock_opens_on_a_saturday() {
        let saturday = Utc.with_ymd_and_hms(2026, 11, 21, 13, 0, 0).unwrap();
        let clock = SimClock::new(ClockMode::Sim, 60.0, saturday);
        let view = clock.clock_view();
        assert!(view.is_open, "{view:?}");
        assert_eq!(view.timestamp.date_naive().to_string(), "2026-11-20");
        assert_eq!(view.next_close.to_rfc3339(), "2026-11-20T16:00:00-05:00");
        assert_eq!(view.next_open.to_rfc3339(), "2026-11-23T09:30:00-05:00");
    }

    #[test]
    fn on_a_half_day_the_clock_closes_at_one() {
        // The /v2/clock the daemon reads its market hours from.
        let friday = Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap();
        let clock = SimClock::new(ClockMode::Sim, 60.0, friday);
        let view = clock.clock_view();
        assert!(view.is_open, "{view:?}");
        assert_eq!(view.next_close.to_rfc3339(), "2026-11-27T13:00:00-05:00");
        assert_eq!(view.next_open.to_rfc3339(), "2026-11-30T09:30:00-05:00");
    }

    #[test]
    fn wall_clock_is_closed_on_a_saturday() {
        let clock = SimClock::new(ClockMode::Wall, 1.0, Utc::now());
        let view = clock.clock_view();
        assert!(view.next_open > view.timestamp);
        assert!(view.next_close > view.timestamp);
    }
}
