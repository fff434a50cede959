//! The simulated market: deterministic under a seed, bars true to their trades.

use super::*;

use crate::alpaca::model::TimeFrame;
use crate::sim::calendar::Session;

fn market(seed: u64) -> Market {
    let tl = Timeline::new(Session::on(NaiveDate::from_ymd_opt(2026, 11, 20).unwrap()));
    Market::new(seed, &["AAPL".into(), "MSFT".into()], tl, 2)
}

#[test]
fn an_early_close_ends_the_market_at_one() {
    let half = Session::on(NaiveDate::from_ymd_opt(2026, 11, 27).unwrap());
    let mut m = Market::new(7, &["AAPL".into()], Timeline::new(half), 1);
    let events = m.advance_to(SESSION_SECONDS as f64 + 120.0);
    let on_the_day = |t: DateTime<Utc>| t.date_naive() == half.date;
    for e in &events {
        let at = match e {
            MarketEvent::Trade { trade, .. } => trade.t,
            MarketEvent::Quote { quote, .. } => quote.t,
            MarketEvent::BarClosed { bar, .. } => bar.t,
            _ => continue,
        };
        assert!(
            !on_the_day(at) || at < half.close,
            "an event at {at} after the 13:00 close"
        );
    }
    let closed = events.iter().find_map(|e| match e {
        MarketEvent::SessionClosed { date, at } => Some((*date, *at)),
        _ => None,
    });
    assert_eq!(closed, Some((half.date, half.close)));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, MarketEvent::Trade { trade, .. } if trade.t > half.close)),
        "the next session trades"
    );
}

#[test]
fn same_seed_same_market_regardless_of_step_size() {
    let mut a = market(7);
    let mut b = market(7);
    let ea = a.advance_to(600.0);
    let mut eb = Vec::new();
    for k in 1..=60 {
        eb.extend(b.advance_to(k as f64 * 10.0));
    }
    let trades = |ev: &[MarketEvent]| {
        ev.iter()
            .filter_map(|e| match e {
                MarketEvent::Trade { trade, .. } => Some(trade.clone()),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert!(!trades(&ea).is_empty());
    assert_eq!(trades(&ea), trades(&eb));
    assert_ne!(trades(&ea), trades(&market(8).advance_to(600.0)));
}

#[test]
fn minute_bars_match_the_trades_they_came_from() {
    let mut m = market(3);
    let events = m.advance_to(180.0);
    let first_minute: Vec<&Trade> = events
        .iter()
        .filter_map(|e| match e {
            MarketEvent::Trade { symbol, trade } if symbol == "AAPL" => Some(trade),
            _ => None,
        })
        .filter(|t| t.t < m.timeline().to_utc(60.0))
        .collect();
    let bar = events
        .iter()
        .find_map(|e| match e {
            MarketEvent::BarClosed { symbol, bar } if symbol == "AAPL" => Some(bar.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(bar.o, first_minute[0].p);
    assert_eq!(bar.c, first_minute.last().unwrap().p);
    assert_eq!(bar.v, first_minute.iter().map(|t| t.s).sum::<Decimal>());
    assert_eq!(bar.n, Some(first_minute.len() as u64));
}

#[test]
fn history_is_there_and_quotes_are_sane() {
    let mut m = market(1);
    m.advance_to(30.0);
    let tl = *m.timeline();
    let day_bars = m.bars(
        "AAPL",
        TimeFrame::DAY,
        tl.to_utc(-400.0 * 23_400.0),
        tl.to_utc(30.0),
    );
    assert!(day_bars.len() >= 250, "{}", day_bars.len());
    let minute_bars = m.bars(
        "AAPL",
        TimeFrame::MINUTE,
        tl.to_utc(-2.0 * 23_400.0),
        tl.to_utc(0.0),
    );
    assert_eq!(minute_bars.len(), 780);
    let q = m.latest_quote("AAPL").unwrap();
    assert!(q.ap > q.bp && q.bp > Decimal::ZERO);
    let five = m.bars(
        "AAPL",
        "5Min".parse().unwrap(),
        tl.to_utc(-23_400.0),
        tl.to_utc(0.0),
    );
    assert_eq!(five.len(), 78);
}

#[test]
fn a_session_close_rolls_a_daily_bar() {
    let mut m = market(5);
    let before = m.prev_daily_bar("AAPL").unwrap().t;
    let events = m.advance_to(23_400.0 + 10.0);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, MarketEvent::SessionClosed { .. }))
    );
    assert!(m.prev_daily_bar("AAPL").unwrap().t > before);
}

/// One-minute bars straight from the minutes are the bucketing's answer, over windows that
/// start and end anywhere (on a minute or not, before, inside or after the history); a bar
/// off the minute or out of order leaves it to the bucketing.
#[test]
fn one_minute_bars_are_the_bucketings_answer() {
    use proptest::prelude::*;
    let m = market(11);
    let minutes = &m.symbols["AAPL"].minutes;
    let (first, last) = (minutes[0].t, minutes[minutes.len() - 1].t);
    let span = (last - first).num_seconds();
    proptest!(ProptestConfig::with_cases(300), |(a in -3_600i64..span + 3_600, len in 0i64..span + 7_200)| {
        let start = first + Duration::seconds(a);
        let end = start + Duration::seconds(len);
        let quick = one_minute_bars(minutes, start, end);
        let general = grouped(minute_buckets(minutes, 1, start, end), start, end);
        prop_assert_eq!(quick, Some(general));
    });
    let whole = m.bars("AAPL", TimeFrame::MINUTE, first, last);
    assert_eq!(whole.len(), minutes.len());
    let mut off: Vec<Bar> = minutes.iter().take(3).cloned().collect();
    off[1].t += Duration::seconds(30);
    assert_eq!(one_minute_bars(&off, first, last), None);
    let mut swapped: Vec<Bar> = minutes.iter().take(3).cloned().collect();
    swapped.swap(0, 1);
    assert_eq!(one_minute_bars(&swapped, first, last), None);
    assert_eq!(
        grouped(minute_buckets(&swapped, 1, first, last), first, last).len(),
        3,
        "the bucketing still answers"
    );
}
