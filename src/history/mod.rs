//! The research loop's history: a local store of bars ([`store::HistoryStore`], SQLite), filled
//! from the broker's data API ([`sync`]) or from CSV files ([`import`]). See
//! docs/backtesting.md.

mod blocks;
pub mod import;
pub mod store;
pub mod sync;

pub use store::{HistoryError, HistoryStore, SeriesInfo, SpanBars};

use crate::alpaca::model::{TimeFrame, TimeFrameUnit};
use crate::domain::calendar::{self, Session};
use chrono::{DateTime, Duration, Utc};

/// How many bars of `timeframe` the regular sessions between `first` and `last` (bar start
/// times, both included) hold: what a complete series has. `None` for weeks and months.
/// (Real minute bars skip minutes without a trade, so an illiquid symbol shows gaps that are
/// not missing data.)
pub fn expected_bars(
    timeframe: TimeFrame,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
) -> Option<u64> {
    if last < first {
        return Some(0);
    }
    let mut n = 0u64;
    match timeframe.unit {
        TimeFrameUnit::Day => {
            let (mut d, last_day) = (
                calendar::to_et(first).date_naive(),
                calendar::to_et(last).date_naive(),
            );
            while d <= last_day {
                n += u64::from(calendar::is_trading_day(d));
                d = d.succ_opt()?;
            }
        }
        TimeFrameUnit::Minute | TimeFrameUnit::Hour => {
            let width = timeframe.intraday_minutes()?;
            let mut session = calendar::latest_session_at_or_before(first);
            if session.close <= first {
                session = session.next();
            }
            while session.open <= last {
                n += buckets_in(&session, width, first, last);
                session = session.next();
            }
        }
        _ => return None,
    }
    Some(n)
}

/// Bar starts (on `width`-minute clock boundaries) of the session's minutes within
/// `[first, last]`.
fn buckets_in(session: &Session, width: i64, first: DateTime<Utc>, last: DateTime<Utc>) -> u64 {
    let bucket = |t: DateTime<Utc>| {
        let m = t.timestamp().div_euclid(60);
        m - m.rem_euclid(width)
    };
    let (lo, hi) = (
        bucket(session.open),
        bucket(session.close - Duration::minutes(1)),
    );
    let (f, l) = (
        first.timestamp().div_euclid(60),
        last.timestamp().div_euclid(60),
    );
    let from = lo.max(f + (width - f.rem_euclid(width)) % width);
    let to = hi.min(l - l.rem_euclid(width));
    if to < from {
        return 0;
    }
    ((to - from) / width + 1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_full_session_holds_390_minutes_78_five_minute_bars_and_7_hours() {
        let day = |h, m| Utc.with_ymd_and_hms(2025, 1, 2, h, m, 0).unwrap();
        // 2025-01-02: 9:30–16:00 ET is 14:30–21:00 UTC.
        let (first, last) = (day(14, 30), day(20, 59));
        // (timeframe, expected)
        // (timeframe, first bar start, expected): the 9:00 ET hour bar holds 9:30–10:00.
        let rows = [
            ("1Min", first, 390),
            ("5Min", first, 78),
            ("1Hour", day(14, 0), 7),
            ("1Hour", first, 6),
            ("1Day", day(5, 0), 1),
        ];
        for (tf, from, n) in rows {
            let tf: TimeFrame = tf.parse().unwrap();
            assert_eq!(expected_bars(tf, from, last), Some(n), "{tf} from {from}");
        }
        // Two sessions (Friday 3 January): twice as many minutes; a weekend adds none.
        let friday_close = Utc.with_ymd_and_hms(2025, 1, 3, 20, 59, 0).unwrap();
        let one_min: TimeFrame = "1Min".parse().unwrap();
        assert_eq!(expected_bars(one_min, first, friday_close), Some(780));
        let monday_open = Utc.with_ymd_and_hms(2025, 1, 6, 14, 30, 0).unwrap();
        assert_eq!(expected_bars(one_min, first, monday_open), Some(781));
        // Half a session.
        assert_eq!(expected_bars(one_min, day(17, 45), day(20, 59)), Some(195));
        assert_eq!(expected_bars("1Week".parse().unwrap(), first, last), None);
    }
}
