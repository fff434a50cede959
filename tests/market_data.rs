//! The MarketDataFeed against `traderd sim`: warm-up from REST, live bars built from streamed
//! trades that equal the broker's own bars for the same minutes, and a gap backfilled from REST
//! after the stream went silent.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

mod common;

use actix::Actor;
use common::actors::*;
use common::*;
use std::time::Duration;
use traderd::actors::market_data::{
    AddBarSubscriber, AddMarkListener, FeedSettings, GetBars, GetFeedStats, Interval,
    MarketDataFeed,
};
use traderd::actors::stream_client::{Sinks, StreamClient};
use traderd::alpaca::AlpacaClient;
use traderd::alpaca::rest::BarsQuery;
use traderd::messages::*;
use traderd::sim::SimHandle;

const WAIT: Duration = Duration::from_secs(30);

fn feed_settings() -> FeedSettings {
    FeedSettings {
        symbols: vec!["AAPL".into(), "MSFT".into()],
        intervals: Interval::ALL.to_vec(),
        warmup_bars: 30,
        ..FeedSettings::default()
    }
}

#[actix_rt::test]
async fn warms_up_then_builds_bars_equal_to_the_brokers() {
    let sim = start_sim(|s| s.history_sessions = 2).await;
    let rest = client(&sim);
    let (marks, marked) = collector();
    let (collector, seen) = collector();
    let feed = MarketDataFeed::new(feed_settings(), Some(rest.clone().into())).start();
    feed.send(AddBarSubscriber::of(&collector)).await.unwrap();
    feed.send(AddMarkListener(marks.clone().recipient()))
        .await
        .unwrap();
    let sinks = Sinks {
        market: Some(feed.clone().recipient()),
        ..Default::default()
    };
    let settings = quick_settings(StreamKind::MarketData, format!("ws://{}/v2/iex", sim.addr));
    let _stream = StreamClient::new(settings, trades_of(&["AAPL", "MSFT"]), sinks, None).start();

    // Warm-up: recent bars of every interval, flagged historical.
    wait_for("warm-up bars of every interval", WAIT, || async {
        let s = seen.lock().unwrap();
        Interval::ALL
            .iter()
            .all(|i| {
                s.bars
                    .iter()
                    .filter(|b| b.historical && b.interval == *i && b.symbol == "AAPL")
                    .count()
                    >= 1
            })
            .then_some(())
    })
    .await;
    let daily = feed
        .send(GetBars {
            symbol: "AAPL".into(),
            interval: Interval::D1,
            n: 100,
        })
        .await
        .unwrap();
    assert_eq!(daily.len(), 30, "warm-up keeps warmup_bars daily bars");

    // Live minute bars: the third one covers a minute streamed from its start.
    let live = wait_for("three live AAPL minute bars", WAIT, || async {
        let s = seen.lock().unwrap();
        let live: Vec<BarClosed> = s
            .bars
            .iter()
            .filter(|b| !b.historical && b.interval == Interval::M1 && b.symbol == "AAPL")
            .cloned()
            .collect();
        (live.len() >= 3).then_some(live)
    })
    .await;
    let ours = &live[2].bar;
    let theirs = brokers_bar(&rest, "AAPL", Interval::M1, ours.start).await;
    assert_eq!(
        (ours.open, ours.high, ours.low, ours.close, ours.volume),
        (theirs.o, theirs.h, theirs.l, theirs.c, theirs.v)
    );
    assert_eq!(Some(ours.trades), theirs.n);
    // Bars close in order.
    assert!(live.windows(2).all(|w| w[0].bar.start < w[1].bar.start));
    // A mark listener (the risk checks) had minutes only: of the warm-up, each symbol's last
    // warm-up minute once; then the same live minutes as the subscriber.
    {
        let m = marked.lock().unwrap();
        assert!(m.bars.iter().all(|b| b.interval == Interval::M1));
        for symbol in ["AAPL", "MSFT"] {
            let warm: Vec<_> = m
                .bars
                .iter()
                .filter(|b| b.historical && b.symbol == symbol)
                .collect();
            assert_eq!(warm.len(), 1, "{symbol}: {warm:?}");
        }
        let live_marks: Vec<_> = m
            .bars
            .iter()
            .filter(|b| !b.historical && b.symbol == "AAPL")
            .map(|b| b.bar.start)
            .collect();
        assert!(
            live.iter()
                .take(2)
                .all(|b| live_marks.contains(&b.bar.start)),
            "{live_marks:?}"
        );
    }

    // A five-minute bar built live from minutes equals the broker's, once one closes whole.
    let five = wait_for("a live 5m bar after the first", WAIT, || async {
        let s = seen.lock().unwrap();
        let five: Vec<BarClosed> = s
            .bars
            .iter()
            .filter(|b| !b.historical && b.interval == Interval::M5 && b.symbol == "MSFT")
            .cloned()
            .collect();
        (five.len() >= 2).then(|| five[1].bar.clone())
    })
    .await;
    let theirs = brokers_bar(&rest, "MSFT", Interval::M5, five.start).await;
    assert_eq!(
        (five.open, five.high, five.low, five.close, five.volume),
        (theirs.o, theirs.h, theirs.l, theirs.c, theirs.v)
    );
    sim.stop().await;
}

#[actix_rt::test]
async fn a_silent_gap_is_backfilled_from_rest() {
    let sim = start_sim(|s| s.history_sessions = 1).await;
    let rest = client(&sim);
    let settings = FeedSettings {
        intervals: vec![Interval::M1, Interval::M5],
        ..feed_settings()
    };
    let (feed, seen, _stream) = feed_on_the_stream(&sim, &rest, settings, true).await;
    wait_for("a live minute", WAIT, || async {
        seen.lock()
            .unwrap()
            .bars
            .iter()
            .any(|b| !b.historical && b.interval == Interval::M1)
            .then_some(())
    })
    .await;

    // Three seconds of silence at 60x: three market minutes the stream never carries.
    let frozen_at = rest
        .get_clock()
        .await
        .unwrap()
        .timestamp
        .with_timezone(&chrono::Utc);
    set_fault(&sim, serde_json::json!({"kind": "freeze", "seconds": 3.0})).await;
    let stats = wait_for("a backfill", WAIT, || async {
        let st = feed.send(GetFeedStats).await.unwrap();
        (st.backfills >= 1 && st.backfilled_minutes >= 1 && st.live).then_some(st)
    })
    .await;
    live_minutes_after_the_backfill(&seen).await;
    // Today's session only (the night before is no gap), spanning the frozen minutes.
    let why = format!("backfilling {} minutes", stats.backfilled_minutes);
    let (minutes, _) = todays_minutes_without_a_gap(&feed, &rest, &why).await;
    let span = minutes.last().unwrap().start - minutes[0].start;
    assert!(
        span >= chrono::Duration::minutes(4),
        "today's minutes span {span} (the freeze alone was three)"
    );
    assert!(
        minutes[0].start < frozen_at
            && minutes.last().unwrap().start > frozen_at + chrono::Duration::minutes(3)
    );
    println!(
        "backfill: {} minutes backfilled from REST, {} minute bars in history, no gaps",
        stats.backfilled_minutes,
        minutes.len()
    );
    sim.stop().await;
}

/// A warm-up slower than the stream it holds back (a broker answering late): past the feed's
/// bound the held trades are let go rather than held without end, and their minutes come
/// from REST before the feed goes live, so today's minutes have no gap.
#[actix_rt::test]
async fn live_data_past_the_bound_during_a_slow_warm_up_is_let_go_and_backfilled() {
    let sim = start_sim(|s| s.history_sessions = 1).await;
    let rest = client(&sim);
    // Every REST answer 1.5 s late: the warm-up takes seconds (market minutes at 60x).
    set_fault(&sim, serde_json::json!({"kind": "latency", "ms": 1500})).await;
    let settings = FeedSettings {
        intervals: vec![Interval::M1],
        hold_limit: 10,
        ..feed_settings()
    };
    let (feed, seen, _stream) = feed_on_the_stream(&sim, &rest, settings, false).await;

    let stats = wait_for("the warm-up done, held data let go", WAIT, || async {
        let st = feed.send(GetFeedStats).await.unwrap();
        (st.live && st.held_let_go > 10).then_some(st)
    })
    .await;
    set_fault(&sim, serde_json::json!({"kind": "latency", "ms": 0})).await;
    let stats = wait_for("the let-go minutes backfilled", WAIT, || async {
        let st = feed.send(GetFeedStats).await.unwrap();
        (st.backfills > stats.backfills && st.backfilled_minutes >= 1).then_some(st)
    })
    .await;
    live_minutes_after_the_backfill(&seen).await;

    let why = format!(
        "letting {} messages go and backfilling {} minutes",
        stats.held_let_go, stats.backfilled_minutes
    );
    let (today, now) = todays_minutes_without_a_gap(&feed, &rest, &why).await;
    // The backfilled minutes are the broker's own.
    let last = seen
        .lock()
        .unwrap()
        .bars
        .iter()
        .filter(|b| b.historical && b.symbol == "AAPL")
        .map(|b| b.bar.clone())
        .rfind(|b| Interval::D1.start_of(b.start) == Interval::D1.start_of(now))
        .expect("historical minutes today");
    let theirs = brokers_bar(&rest, "AAPL", Interval::M1, last.start).await;
    assert_eq!(
        (last.open, last.high, last.low, last.close, last.volume),
        (theirs.o, theirs.h, theirs.l, theirs.c, theirs.v)
    );
    println!(
        "held past the bound: {} messages let go, {} minutes backfilled, {} minutes today, no gaps",
        stats.held_let_go,
        stats.backfilled_minutes,
        today.len()
    );
    sim.stop().await;
}

/// The warm-up first reads only the open market that holds `warmup_bars` minutes (the
/// calendar's sessions back from now), and asks again over a wide window for a symbol that
/// came back short: the history handed on is the broker's last complete minutes, without a
/// gap, and all of them when it has fewer than asked.
#[actix_rt::test]
async fn the_warm_up_reads_the_open_markets_span_and_asks_again_when_short() {
    let sim = start_sim(|s| s.history_sessions = 1).await;
    let rest = client(&sim);
    for warmup_bars in [30usize, 600] {
        let (collector, seen) = collector();
        let requests = sim.sim.with_state(|s| s.stats.requests);
        let feed = MarketDataFeed::new(
            FeedSettings {
                intervals: vec![Interval::M1],
                warmup_bars,
                ..feed_settings()
            },
            Some(rest.clone().into()),
        )
        .start();
        feed.send(AddBarSubscriber::of(&collector)).await.unwrap();
        wait_for("the warm-up", WAIT, || async {
            feed.send(GetFeedStats).await.unwrap().live.then_some(())
        })
        .await;
        // The clock, the span's bars, [the wide window's again,] today's minutes.
        let requests = sim.sim.with_state(|s| s.stats.requests) - requests;
        let ours: Vec<_> = seen
            .lock()
            .unwrap()
            .bars
            .iter()
            .filter(|b| b.historical && b.symbol == "AAPL")
            .map(|b| b.bar.clone())
            .collect();
        let (first, last) = (ours[0].start, ours[ours.len() - 1].start);
        let mut q = BarsQuery::new(
            &["AAPL"],
            traderd::alpaca::model::TimeFrame::from(Interval::M1),
        );
        q.start = Some(last - chrono::Duration::days(10));
        q.end = Some(last);
        let theirs = rest
            .get_bars(&q)
            .await
            .unwrap()
            .bars
            .remove("AAPL")
            .unwrap();
        let everything = theirs.len();
        let theirs: Vec<_> = theirs.iter().filter(|b| b.t >= first).collect();
        assert_eq!(ours.len(), theirs.len(), "warmup_bars {warmup_bars}: a gap");
        for (o, t) in ours.iter().zip(&theirs) {
            assert_eq!(
                (o.start, o.open, o.high, o.low, o.close, o.volume),
                (t.t, t.o, t.h, t.l, t.c, t.v)
            );
        }
        if warmup_bars == 30 {
            assert_eq!(ours.len(), 30);
            assert_eq!(
                requests, 3,
                "the open market's span held every bar: asked once"
            );
        } else {
            assert_eq!(requests, 4, "asked again over the wide window");
            // The broker has fewer than asked (one session of history): all of them.
            assert_eq!(everything, ours.len());
            assert!(
                ours.len() < warmup_bars && ours.len() >= 390,
                "{}",
                ours.len()
            );
        }
        println!(
            "warmup_bars {warmup_bars}: {} historical minutes, the broker's own",
            ours.len()
        );
    }
    sim.stop().await;
}

/// A feed of AAPL and MSFT with `settings` and a subscriber collecting what it hands on, fed
/// by the simulator's market-data stream (with a REST client of its own when `stream_rest`).
async fn feed_on_the_stream(
    sim: &SimHandle,
    rest: &AlpacaClient,
    settings: FeedSettings,
    stream_rest: bool,
) -> (
    actix::Addr<MarketDataFeed>,
    std::sync::Arc<std::sync::Mutex<Seen>>,
    actix::Addr<StreamClient>,
) {
    let (collector, seen) = collector();
    let feed = MarketDataFeed::new(settings, Some(rest.clone().into())).start();
    feed.send(AddBarSubscriber::of(&collector)).await.unwrap();
    let sinks = Sinks {
        market: Some(feed.clone().recipient()),
        ..Default::default()
    };
    let settings = quick_settings(StreamKind::MarketData, format!("ws://{}/v2/iex", sim.addr));
    let stream_rest = stream_rest.then(|| rest.clone().into());
    let stream =
        StreamClient::new(settings, trades_of(&["AAPL", "MSFT"]), sinks, stream_rest).start();
    (feed, seen, stream)
}

/// Waits for two live AAPL minutes after what was handed on so far.
async fn live_minutes_after_the_backfill(seen: &std::sync::Arc<std::sync::Mutex<Seen>>) {
    let mark = seen.lock().unwrap().bars.len();
    wait_for("live minutes after the backfill", WAIT, || async {
        let s = seen.lock().unwrap();
        (s.bars[mark..]
            .iter()
            .filter(|b| !b.historical && b.interval == Interval::M1 && b.symbol == "AAPL")
            .count()
            >= 2)
            .then_some(())
    })
    .await;
}

/// Today's AAPL minutes in the feed (the night before is no gap), and the broker's time now;
/// fails when one is missing, saying `after` what.
async fn todays_minutes_without_a_gap(
    feed: &actix::Addr<MarketDataFeed>,
    rest: &AlpacaClient,
    after: &str,
) -> (
    Vec<traderd::actors::market_data::OhlcBar>,
    chrono::DateTime<chrono::Utc>,
) {
    let now = rest.get_clock().await.unwrap().timestamp.to_utc();
    let today: Vec<_> = feed
        .send(GetBars {
            symbol: "AAPL".into(),
            interval: Interval::M1,
            n: 1000,
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|b| Interval::D1.start_of(b.start) == Interval::D1.start_of(now))
        .collect();
    let gaps: Vec<_> = today
        .windows(2)
        .filter(|w| w[1].start - w[0].start != chrono::Duration::minutes(1))
        .map(|w| (w[0].start, w[1].start))
        .collect();
    assert!(
        gaps.is_empty(),
        "minute history has gaps {gaps:?} after {after}"
    );
    (today, now)
}

/// The broker's own bar of `symbol` at `start`.
async fn brokers_bar(
    rest: &AlpacaClient,
    symbol: &str,
    interval: Interval,
    start: chrono::DateTime<chrono::Utc>,
) -> traderd::alpaca::model::Bar {
    let mut q = BarsQuery::new(&[symbol], traderd::alpaca::model::TimeFrame::from(interval));
    q.start = Some(start);
    q.end = Some(start);
    let mut theirs = rest
        .get_bars(&q)
        .await
        .unwrap()
        .bars
        .remove(symbol)
        .unwrap();
    theirs.remove(0)
}

/// A simulator of 60 symbols (more than the feed hands on at once: 50) with a session of
/// history, and the symbols.
async fn more_symbols_than_handed_on_at_once() -> (Vec<String>, SimHandle) {
    let symbols: Vec<String> = (0..60).map(|i| format!("S{i:03}")).collect();
    let sim = start_sim(|s| {
        s.history_sessions = 1;
        s.symbols = symbols.clone();
    })
    .await;
    (symbols, sim)
}

/// A warm-up of more symbols than are handed on at once (50) reaches the subscribers whole:
/// every symbol's bars, in order, each symbol once (today's minutes after them), the last
/// minute of each to the marks, before the feed goes live.
#[actix_rt::test]
async fn a_warm_up_of_many_symbols_is_handed_on_whole_before_the_feed_goes_live() {
    let (symbols, sim) = more_symbols_than_handed_on_at_once().await;
    let rest = client(&sim);
    let (marks, marked) = collector();
    let (collector, seen) = collector();
    let feed = MarketDataFeed::new(
        FeedSettings {
            symbols: symbols.clone(),
            intervals: vec![Interval::M1, Interval::M5],
            warmup_bars: 7,
            ..FeedSettings::default()
        },
        Some(rest.clone().into()),
    )
    .start();
    feed.send(AddBarSubscriber::of(&collector)).await.unwrap();
    feed.send(AddMarkListener(marks.recipient())).await.unwrap();
    wait_for("the warm-up", WAIT, || async {
        feed.send(GetFeedStats).await.unwrap().live.then_some(())
    })
    .await;
    {
        let seen = seen.lock().unwrap();
        for interval in [Interval::M1, Interval::M5] {
            for s in &symbols {
                let starts: Vec<_> = seen
                    .bars
                    .iter()
                    .filter(|b| b.historical && b.interval == interval && &b.symbol == s)
                    .map(|b| b.bar.start)
                    .collect();
                assert!(starts.len() >= 7, "{s} {interval:?}: {starts:?}");
                assert!(starts.windows(2).all(|w| w[0] < w[1]), "{s} once, in order");
            }
        }
        let marked = marked.lock().unwrap();
        assert_eq!(marked.bars.len(), symbols.len());
        assert!(
            marked
                .bars
                .iter()
                .all(|b| b.historical && b.interval == Interval::M1)
        );
    }
    sim.stop().await;
}

/// A bar subscriber and a mark listener that register after the warm-up was handed out (the
/// daemon's threads ran in that order under load: the strategy got no history and traded
/// nothing until its indicators had filled from live bars, 100 s of a soak) catch up from the
/// book: every symbol's bars of every interval, as the feed keeps them, in more lots than one
/// (50 at a time), before any live bar; each symbol's last minute to the marks.
#[actix_rt::test]
async fn a_subscriber_registered_after_the_warm_up_catches_up_before_live_bars() {
    let (symbols, sim) = more_symbols_than_handed_on_at_once().await;
    let rest = client(&sim);
    let intervals = [Interval::M1, Interval::M5];
    let feed = MarketDataFeed::new(
        FeedSettings {
            symbols: symbols.clone(),
            intervals: intervals.to_vec(),
            warmup_bars: 7,
            ..FeedSettings::default()
        },
        Some(rest.clone().into()),
    )
    .start();
    wait_for("the warm-up, with no one to hand it to", WAIT, || async {
        feed.send(GetFeedStats).await.unwrap().live.then_some(())
    })
    .await;
    let (marks, marked) = collector();
    let (late, seen) = collector();
    feed.send(AddBarSubscriber::of(&late)).await.unwrap();
    feed.send(AddMarkListener(marks.recipient())).await.unwrap();
    // What the feed keeps, before any live data.
    let mut book = std::collections::HashMap::new();
    for interval in intervals {
        for s in &symbols {
            let bars = feed
                .send(GetBars {
                    symbol: s.clone(),
                    interval,
                    n: 100,
                })
                .await
                .unwrap();
            book.insert((s.clone(), interval), bars);
        }
    }
    let sinks = Sinks {
        market: Some(feed.clone().recipient()),
        ..Default::default()
    };
    let settings = quick_settings(StreamKind::MarketData, format!("ws://{}/v2/iex", sim.addr));
    let _stream = StreamClient::new(settings, trades_of(&["S000"]), sinks, None).start();
    wait_for("a live S000 minute after the catch-up", WAIT, || async {
        let seen = seen.lock().unwrap();
        seen.bars
            .iter()
            .any(|b| !b.historical && b.symbol == "S000" && b.interval == Interval::M1)
            .then_some(())
    })
    .await;

    let seen = seen.lock().unwrap().bars.clone();
    let first_live = seen.iter().position(|b| !b.historical).unwrap();
    assert!(
        seen[first_live..].iter().all(|b| !b.historical),
        "the history came before any live bar"
    );
    for interval in intervals {
        for s in &symbols {
            let caught: Vec<_> = seen[..first_live]
                .iter()
                .filter(|b| b.interval == interval && &b.symbol == s)
                .map(|b| b.bar.clone())
                .collect();
            assert_eq!(caught.len(), 7, "{s} {interval:?}: the bars the feed keeps");
            assert_eq!(
                caught,
                book[&(s.clone(), interval)],
                "{s} {interval:?}: the book's bars, in order"
            );
        }
    }
    let marked = marked.lock().unwrap().bars.clone();
    let mut marked_symbols: Vec<_> = marked
        .iter()
        .filter(|b| b.historical)
        .map(|b| {
            assert_eq!(b.interval, Interval::M1);
            b.symbol.clone()
        })
        .collect();
    marked_symbols.sort();
    assert_eq!(marked_symbols, symbols, "each symbol's last minute, once");
    sim.stop().await;
}
