//! The exchange calendar (NYSE regular sessions, 09:30–16:00 America/New_York, weekdays less
//! the listed holidays) and the simulator's *market timeline*: a count of seconds during which
//! the market was open, starting at an anchor session's open. The market model lives on that
//! timeline, so it produces the same events whether the clock runs at 1×, at 60×, or skips
//! nights and weekends.
//!
//! Early closes (13:00 on the half days around Independence Day, Thanksgiving and Christmas)
//! end their session at 13:00. The timeline keeps one slot of [`SESSION_SECONDS`] per session
//! whatever its length; the part of a short session's slot after its close is never lived
//! (no market event falls in it, and the `sim` clock skips it).

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::America::New_York;
use chrono_tz::Tz;

/// Seconds in one regular session (6.5 hours).
pub const SESSION_SECONDS: i64 = 23_400;

/// NYSE full-day holidays, 2024–2027.
const HOLIDAYS: &[(i32, u32, u32)] = &[
    (2024, 1, 1),
    (2024, 1, 15),
    (2024, 2, 19),
    (2024, 3, 29),
    (2024, 5, 27),
    (2024, 6, 19),
    (2024, 7, 4),
    (2024, 9, 2),
    (2024, 11, 28),
    (2024, 12, 25),
    (2025, 1, 1),
    (2025, 1, 9),
    (2025, 1, 20),
    (2025, 2, 17),
    (2025, 4, 18),
    (2025, 5, 26),
    (2025, 6, 19),
    (2025, 7, 4),
    (2025, 9, 1),
    (2025, 11, 27),
    (2025, 12, 25),
    (2026, 1, 1),
    (2026, 1, 19),
    (2026, 2, 16),
    (2026, 4, 3),
    (2026, 5, 25),
    (2026, 6, 19),
    (2026, 7, 3),
    (2026, 9, 7),
    (2026, 11, 26),
    (2026, 12, 25),
    (2027, 1, 1),
    (2027, 1, 18),
    (2027, 2, 15),
    (2027, 3, 26),
    (2027, 5, 31),
    (2027, 6, 18),
    (2027, 7, 5),
    (2027, 9, 6),
    (2027, 11, 25),
    (2027, 12, 24),
];

/// NYSE early closes (13:00 ET), 2024–2027.
const EARLY_CLOSES: &[(i32, u32, u32)] = &[
    (2024, 7, 3),
    (2024, 11, 29),
    (2024, 12, 24),
    (2025, 7, 3),
    (2025, 11, 28),
    (2025, 12, 24),
    (2026, 11, 27),
    (2026, 12, 24),
    (2027, 11, 26),
];

/// Whether `date`'s session closes early, at 13:00 ET.
pub fn is_early_close(date: NaiveDate) -> bool {
    EARLY_CLOSES.contains(&(date.year(), date.month(), date.day()))
}

pub fn is_trading_day(date: NaiveDate) -> bool {
    !matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
        && !HOLIDAYS.contains(&(date.year(), date.month(), date.day()))
}

fn open_time() -> NaiveTime {
    NaiveTime::from_hms_opt(9, 30, 0).unwrap_or(NaiveTime::MIN)
}

fn close_time(date: NaiveDate) -> NaiveTime {
    let hour = if is_early_close(date) { 13 } else { 16 };
    NaiveTime::from_hms_opt(hour, 0, 0).unwrap_or(NaiveTime::MIN)
}

/// `date` at `time` in New York, as UTC.
pub fn et_to_utc(date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
    match New_York
        .from_local_datetime(&date.and_time(time))
        .earliest()
    {
        Some(t) => t.with_timezone(&Utc),
        // 09:30 and 16:00 never fall in a DST gap; keep a total function anyway.
        None => Utc.from_utc_datetime(&date.and_time(time)) + Duration::hours(5),
    }
}

/// Midnight in New York of `date`, as UTC: the stamp of Alpaca's daily bars.
pub fn et_midnight(date: NaiveDate) -> DateTime<Utc> {
    et_to_utc(date, NaiveTime::MIN)
}

pub fn to_et(t: DateTime<Utc>) -> DateTime<Tz> {
    t.with_timezone(&New_York)
}

/// One regular session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    pub date: NaiveDate,
    pub open: DateTime<Utc>,
    pub close: DateTime<Utc>,
}

impl Session {
    pub fn on(date: NaiveDate) -> Session {
        Session {
            date,
            open: et_to_utc(date, open_time()),
            close: et_to_utc(date, close_time(date)),
        }
    }
    /// Open seconds in the session: 23,400, or 12,600 on an early close.
    pub fn seconds(&self) -> f64 {
        (self.close - self.open).num_milliseconds() as f64 / 1e3
    }
    pub fn next(self) -> Session {
        let mut d = self.date;
        loop {
            d = d.succ_opt().unwrap_or(d);
            if is_trading_day(d) {
                return Session::on(d);
            }
        }
    }
    pub fn prev(self) -> Session {
        let mut d = self.date;
        loop {
            d = d.pred_opt().unwrap_or(d);
            if is_trading_day(d) {
                return Session::on(d);
            }
        }
    }
}

/// The session open at `t`, or else the latest session that opened before `t`.
pub fn latest_session_at_or_before(t: DateTime<Utc>) -> Session {
    let mut date = to_et(t).date_naive();
    loop {
        if is_trading_day(date) {
            let s = Session::on(date);
            if s.open <= t {
                return s;
            }
        }
        date = match date.pred_opt() {
            Some(d) => d,
            None => return Session::on(date),
        };
    }
}

/// The first session whose close is after `t` (the current one if open, else the next).
pub fn current_or_next_session(t: DateTime<Utc>) -> Session {
    let s = latest_session_at_or_before(t);
    if t < s.close { s } else { s.next() }
}

/// When the last `span` of regular-session time before `t` began: the start of the shortest
/// window ending at `t` that holds `span` of open market (nights, weekends and holidays
/// skipped). `None` past 60 sessions back.
pub fn open_span_before(t: DateTime<Utc>, span: Duration) -> Option<DateTime<Utc>> {
    let mut remaining = span;
    let mut session = latest_session_at_or_before(t);
    for _ in 0..60 {
        let end = session.close.min(t);
        if end > session.open {
            let open = end - session.open;
            if open >= remaining {
                return Some(end - remaining);
            }
            remaining -= open;
        }
        session = session.prev();
    }
    None
}

/// Maps the market timeline (open seconds since the anchor session's open) to and from UTC.
#[derive(Debug, Clone, Copy)]
pub struct Timeline {
    pub anchor: Session,
}

impl Timeline {
    pub fn new(anchor: Session) -> Self {
        Timeline { anchor }
    }

    /// The session index (0 = anchor) and offset within it of a timeline instant.
    fn split(open_seconds: f64) -> (i64, f64) {
        let day = (open_seconds / SESSION_SECONDS as f64).floor() as i64;
        (day, open_seconds - (day * SESSION_SECONDS) as f64)
    }

    /// The session `index` sessions after (or before, if negative) the anchor.
    pub fn session(&self, index: i64) -> Session {
        let mut s = self.anchor;
        if index >= 0 {
            for _ in 0..index {
                s = s.next();
            }
        } else {
            for _ in 0..(-index) {
                s = s.prev();
            }
        }
        s
    }

    /// UTC instant of a timeline instant. The end of a session maps to its close, and so does
    /// the unlived rest of a short session's slot.
    pub fn to_utc(&self, open_seconds: f64) -> DateTime<Utc> {
        let (day, within) = Self::split(open_seconds);
        let s = self.session(day);
        s.open + Duration::nanoseconds((within.min(s.seconds()) * 1e9) as i64)
    }

    /// UTC instant of a timeline instant while its session is open; `None` in the unlived
    /// rest of a short session's slot.
    pub fn to_utc_open(&self, open_seconds: f64) -> Option<DateTime<Utc>> {
        let (day, within) = Self::split(open_seconds);
        let s = self.session(day);
        (within < s.seconds()).then(|| s.open + Duration::nanoseconds((within * 1e9) as i64))
    }

    /// The timeline instant `open` seconds of open market after the anchor's open, skipping
    /// the unlived rest of short sessions (the `sim` clock: it runs through open hours only).
    pub fn after_open_seconds(&self, open: f64) -> f64 {
        if open <= 0.0 {
            return open;
        }
        let mut s = self.anchor;
        let mut index = 0i64;
        let mut left = open;
        loop {
            let len = s.seconds();
            if left < len || len <= 0.0 {
                return (index * SESSION_SECONDS) as f64 + left;
            }
            left -= len;
            index += 1;
            s = s.next();
        }
    }

    /// Timeline instant of a UTC instant; closed time maps to the end of the preceding
    /// session's slot.
    pub fn from_utc(&self, t: DateTime<Utc>) -> f64 {
        let s = latest_session_at_or_before(t);
        let within = if t >= s.close {
            SESSION_SECONDS as f64
        } else {
            (t - s.open).num_nanoseconds().unwrap_or(0) as f64 / 1e9
        };
        let mut index = 0i64;
        let mut cursor = self.anchor;
        if s.date >= cursor.date {
            while cursor.date < s.date {
                cursor = cursor.next();
                index += 1;
            }
        } else {
            while cursor.date > s.date {
                cursor = cursor.prev();
                index -= 1;
            }
        }
        (index * SESSION_SECONDS) as f64 + within
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn an_open_span_reaches_back_over_nights_weekends_and_holidays() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        // At Monday 2026-11-30's open, 200 minutes reach back into Friday's half day
        // (09:30–13:00 ET, 210 minutes): from 09:40 ET.
        let monday_open = at("2026-11-30T14:30:00Z");
        assert_eq!(
            open_span_before(monday_open, Duration::minutes(200)),
            Some(at("2026-11-27T14:40:00Z"))
        );
        // 300 minutes: Friday's 210, then 90 of Wednesday's close (Thursday a holiday).
        assert_eq!(
            open_span_before(monday_open, Duration::minutes(300)),
            Some(at("2026-11-25T19:30:00Z"))
        );
        // Within a session: straight back.
        assert_eq!(
            open_span_before(at("2026-12-01T17:00:00Z"), Duration::minutes(60)),
            Some(at("2026-12-01T16:00:00Z"))
        );
        // In the evening, back from the close.
        assert_eq!(
            open_span_before(at("2026-12-01T23:00:00Z"), Duration::minutes(30)),
            Some(at("2026-12-01T20:30:00Z"))
        );
        assert_eq!(open_span_before(monday_open, Duration::days(60)), None);
    }

    #[test]
    fn sessions_skip_weekends_and_holidays() {
        // Wednesday 2026-11-25, Thanksgiving Thursday 2026-11-26.
        let wed = Session::on(d(2026, 11, 25));
        assert_eq!(wed.next().date, d(2026, 11, 27));
        assert_eq!(Session::on(d(2026, 11, 27)).next().date, d(2026, 11, 30));
        assert_eq!(wed.open.to_rfc3339(), "2026-11-25T14:30:00+00:00");
        // Summer time: 09:30 EDT is 13:30 UTC.
        assert_eq!(
            Session::on(d(2026, 7, 1)).open.to_rfc3339(),
            "2026-07-01T13:30:00+00:00"
        );
    }

    #[test]
    fn early_closes_end_at_one_and_the_sim_clock_skips_the_rest() {
        // The day after Thanksgiving 2026 and Christmas Eve close at 13:00 ET (18:00 UTC).
        let half = Session::on(d(2026, 11, 27));
        assert_eq!(half.close.to_rfc3339(), "2026-11-27T18:00:00+00:00");
        assert_eq!(half.seconds(), 12_600.0);
        assert!(is_early_close(d(2026, 12, 24)) && !is_early_close(d(2026, 12, 23)));
        assert_eq!(
            Session::on(d(2026, 11, 25)).seconds(),
            SESSION_SECONDS as f64
        );
        let tl = Timeline::new(half);
        // 12,600 s of open market after the open is the next session's open.
        let slot = tl.after_open_seconds(12_605.0);
        assert_eq!(slot, SESSION_SECONDS as f64 + 5.0);
        assert_eq!(tl.to_utc(slot).to_rfc3339(), "2026-11-30T14:30:05+00:00");
        // The unlived rest of the slot has no open time, and maps to the close.
        assert_eq!(tl.to_utc_open(13_000.0), None);
        assert_eq!(tl.to_utc(13_000.0), half.close);
        // Closed time after an early close is the end of the session's slot.
        let after = Utc.with_ymd_and_hms(2026, 11, 27, 19, 0, 0).unwrap();
        assert_eq!(tl.from_utc(after), SESSION_SECONDS as f64);
    }

    #[test]
    fn latest_session_on_a_saturday_is_fridays() {
        let sat = Utc.with_ymd_and_hms(2026, 11, 21, 13, 0, 0).unwrap();
        assert_eq!(latest_session_at_or_before(sat).date, d(2026, 11, 20));
        let before_open = Utc.with_ymd_and_hms(2026, 11, 20, 13, 0, 0).unwrap();
        assert_eq!(
            latest_session_at_or_before(before_open).date,
            d(2026, 11, 19)
        );
    }

    #[test]
    fn timeline_round_trips_across_nights() {
        let tl = Timeline::new(Session::on(d(2026, 11, 20)));
        for secs in [
            0.0,
            100.5,
            23_399.0,
            23_400.0 + 60.0,
            -60.0,
            5.0 * 23_400.0 + 7.0,
        ] {
            let t = tl.to_utc(secs);
            assert!((tl.from_utc(t) - secs).abs() < 1e-3, "{secs} -> {t}");
        }
        // One session later is the next Monday's open.
        assert_eq!(
            tl.to_utc(23_400.0).to_rfc3339(),
            "2026-11-23T14:30:00+00:00"
        );
    }
}
