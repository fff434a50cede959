//! Market-data REST through our client against `traderd sim`: multi-symbol bars across pages,
//! latest trades, quotes and bars, snapshots, and the determinism of the seeded market.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

mod common;

use common::*;
use rust_decimal::Decimal;
use std::time::Duration;
use traderd::alpaca::model::*;
use traderd::alpaca::rest::BarsQuery;

#[tokio::test]
async fn bars_page_across_symbols_and_merge_to_the_single_page_answer() {
    let sim = start_sim(|_| {}).await;
    let c = client(&sim);
    let now = c
        .get_clock()
        .await
        .unwrap()
        .timestamp
        .with_timezone(&chrono::Utc);
    let mut q = BarsQuery::new(&["MSFT", "AAPL", "SPY"], TimeFrame::MINUTE);
    q.start = Some(now - chrono::Duration::days(7));
    // Closed minutes only: the minute in progress grows while the pages are read (the sim's
    // clock moves on), and a busy machine can read the two answers a minute apart.
    use chrono::{DurationRound, TimeDelta};
    let closed = now.duration_trunc(TimeDelta::minutes(1)).unwrap() - chrono::Duration::minutes(1);
    q.end = Some(closed);

    q.limit = Some(10_000);
    let whole = c.get_bars_page(&q).await.unwrap();
    assert!(whole.next_page_token.is_none());
    assert_eq!(
        whole.bars.keys().cloned().collect::<Vec<_>>(),
        vec!["AAPL", "MSFT", "SPY"]
    );
    let per_symbol = whole.bars["AAPL"].len();
    assert!(
        per_symbol >= 390 * 3,
        "several sessions of minute history, got {per_symbol}"
    );

    // The limit counts across symbols; a page can end inside a symbol.
    q.limit = Some(1000);
    let first = c.get_bars_page(&q).await.unwrap();
    assert_eq!(first.bars.values().map(Vec::len).sum::<usize>(), 1000);
    assert!(first.next_page_token.is_some());
    let merged = c.get_bars(&q).await.unwrap();
    assert_eq!(merged.bars, whole.bars, "paging loses or repeats nothing");

    for bars in merged.bars.values() {
        assert!(bars.windows(2).all(|w| w[0].t < w[1].t), "sorted by time");
        assert!(
            bars.iter()
                .all(|b| b.l <= b.o.min(b.c) && b.h >= b.o.max(b.c) && b.v > Decimal::ZERO)
        );
    }
    sim.stop().await;
}

#[tokio::test]
async fn day_and_hour_bars_and_refusals() {
    let sim = start_sim(|_| {}).await;
    let c = client(&sim);
    let now = c
        .get_clock()
        .await
        .unwrap()
        .timestamp
        .with_timezone(&chrono::Utc);
    let mut q = BarsQuery::new(&["QQQ"], TimeFrame::DAY);
    q.start = Some(now - chrono::Duration::days(365));
    let days = c.get_bars(&q).await.unwrap().bars.remove("QQQ").unwrap();
    assert!(days.len() >= 240, "{}", days.len());
    // Daily bars are stamped at midnight New York time.
    assert!(
        days.iter()
            .all(|b| matches!(b.t.format("%H:%M").to_string().as_str(), "04:00" | "05:00"))
    );

    let mut q = BarsQuery::new(&["QQQ"], TimeFrame::HOUR);
    q.start = Some(now - chrono::Duration::days(3));
    let hours = c.get_bars(&q).await.unwrap().bars.remove("QQQ").unwrap();
    assert!(
        hours
            .iter()
            .all(|b| b.t.format("%M:%S").to_string() == "00:00")
    );
    assert!(hours.iter().all(|b| b.n.is_some() && b.vw.is_some()));

    let mut bad = BarsQuery::new(&["QQQ"], TimeFrame::DAY);
    bad.timeframe = "7Day".into();
    let err = c.get_bars_page(&bad).await.unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    sim.stop().await;
}

#[tokio::test]
async fn latest_trades_quotes_bars_and_snapshots() {
    let sim = start_sim(|_| {}).await;
    let c = client(&sim);
    // At 60x a minute bar closes every second of wall time.
    let bars = wait_for("a live minute bar", Duration::from_secs(10), || async {
        let b = c.latest_bars(&["AAPL", "MSFT"]).await.unwrap();
        (b.bars.len() == 2).then_some(b)
    })
    .await;
    let trades = c.latest_trades(&["AAPL", "MSFT", "NOPE"]).await.unwrap();
    assert_eq!(trades.trades.len(), 2, "unknown symbols are left out");
    let quotes = c.latest_quotes(&["AAPL"]).await.unwrap();
    let q = &quotes.quotes["AAPL"];
    assert!(q.bp < q.ap && q.bs > Decimal::ZERO && q.as_ > Decimal::ZERO);
    assert!(bars.bars["AAPL"].t <= trades.trades["AAPL"].t);

    let snaps = c.snapshots(&["AAPL", "SPY"]).await.unwrap();
    let aapl = snaps["AAPL"].as_ref().unwrap();
    assert!(
        aapl.latest_trade.is_some() && aapl.latest_quote.is_some() && aapl.minute_bar.is_some()
    );
    let (daily, prev) = (
        aapl.daily_bar.as_ref().unwrap(),
        aapl.prev_daily_bar.as_ref().unwrap(),
    );
    assert!(daily.t > prev.t);
    sim.stop().await;
}

#[tokio::test]
async fn the_same_seed_gives_the_same_history() {
    let a = start_sim(|s| s.seed = 7).await;
    let b = start_sim(|s| s.seed = 7).await;
    let other = start_sim(|s| s.seed = 8).await;
    let get = |sim: &traderd::sim::SimHandle| {
        let c = client(sim);
        async move {
            let now = c
                .get_clock()
                .await
                .unwrap()
                .timestamp
                .with_timezone(&chrono::Utc);
            let mut q = BarsQuery::new(&["TSLA"], TimeFrame::DAY);
            q.start = Some(now - chrono::Duration::days(60));
            q.end = Some(now - chrono::Duration::days(1));
            c.get_bars(&q).await.unwrap().bars.remove("TSLA").unwrap()
        }
    };
    let (x, y, z) = (get(&a).await, get(&b).await, get(&other).await);
    assert_eq!(x, y);
    assert_ne!(x, z);
    for s in [a, b, other] {
        s.stop().await;
    }
}

#[tokio::test]
async fn historical_trades_and_quotes_page_and_the_reference_data_is_there() {
    // 120x: a second and a half gives three market minutes, hundreds of ticks (well inside
    // the 2,000 of each the simulator keeps per symbol, so none drops out while pages are read).
    let sim = start_sim(|s| s.speed = 120.0).await;
    let c = client(&sim);
    let start = c
        .get_clock()
        .await
        .unwrap()
        .timestamp
        .with_timezone(&chrono::Utc);
    let end = wait_for("ticks to accumulate", Duration::from_secs(30), || async {
        let now = c
            .get_clock()
            .await
            .unwrap()
            .timestamp
            .with_timezone(&chrono::Utc);
        (now - start > chrono::Duration::minutes(3)).then_some(now)
    })
    .await;
    let trades = c.get_trades(&["AAPL", "MSFT"], start, end).await.unwrap();
    let aapl = &trades.trades["AAPL"];
    assert!(aapl.len() > 50, "{} AAPL trades", aapl.len());
    assert!(aapl.windows(2).all(|w| w[0].t < w[1].t), "in time order");
    assert!(
        aapl.iter()
            .all(|t| t.t >= start && t.t <= end && t.p > Decimal::ZERO)
    );
    // The same listing read a page of 20 at a time through the raw endpoint is the same ticks.
    let mut paged: Vec<Trade> = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut q = vec![
            ("symbols", "AAPL".to_string()),
            ("start", start.to_rfc3339()),
            ("end", end.to_rfc3339()),
            ("limit", "20".to_string()),
        ];
        if let Some(t) = &token {
            q.push(("page_token", t.clone()));
        }
        let page: TradesPage = admin()
            .get(format!("{}/v2/stocks/trades", sim.base_url()))
            .header("APCA-API-KEY-ID", KEY)
            .header("APCA-API-SECRET-KEY", SECRET)
            .query(&q)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        paged.extend(page.trades.get("AAPL").cloned().unwrap_or_default());
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(&paged, aapl);
    let quotes = c.get_quotes(&["SPY"], start, end).await.unwrap();
    assert!(quotes.quotes["SPY"].iter().all(|q| q.bp <= q.ap));
    let exchanges = c.exchanges().await.unwrap();
    assert_eq!(exchanges.get("V").map(String::as_str), Some("IEX"));
    let conditions = c.conditions("trade", "A").await.unwrap();
    assert_eq!(
        conditions.get("@").map(String::as_str),
        Some("Regular Sale")
    );
    let refused = c.conditions("option", "A").await.unwrap_err();
    assert_eq!(refused.status(), Some(400), "{refused}");
    sim.stop().await;
}
