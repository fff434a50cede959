//! The history store against `traderd sim` over loopback: sync pages bars into a real SQLite
//! file and a second sync fetches only what is missing; CSV import is all or nothing with the
//! bad line named; a corrupt store is an error, not a panic; the command line says what is
//! stored when the broker has nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

mod common;

use common::*;
use std::process::Command;
use traderd::alpaca::model::TimeFrame;
use traderd::alpaca::rest::BarsQuery;
use traderd::broker::BrokerRef;
use traderd::history::sync::{SyncRequest, sync};
use traderd::history::{HistoryStore, expected_bars};

#[tokio::test]
async fn a_sync_stores_what_the_broker_serves_and_a_second_fetches_nothing() {
    let sim = start_sim(|s| s.history_sessions = 3).await;
    let c = client(&sim);
    let now = c
        .get_clock()
        .await
        .unwrap()
        .timestamp
        .with_timezone(&chrono::Utc);
    // On a whole minute: a start inside a minute leaves whether that minute's bar is in the
    // range to how each side rounds it (a flake seen once in CI).
    let start = chrono::DurationRound::duration_trunc(
        now - chrono::Duration::days(6),
        chrono::Duration::minutes(1),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut store = HistoryStore::open(dir.path()).unwrap();
    let broker: BrokerRef = c.clone().into();
    let req = SyncRequest {
        symbols: vec!["AAPL".into(), "MSFT".into()],
        timeframe: TimeFrame::MINUTE,
        start,
        end: Some(now),
        adjustment: "split".into(),
        feed: None,
    };
    let mut pages = 0;
    let report = sync(&broker, &mut store, &req, |p| {
        if let traderd::history::sync::Progress::Page { .. } = p {
            pages += 1
        }
    })
    .await
    .unwrap();
    assert!(pages >= 1);
    // What the broker serves for the same range, asked for directly.
    let mut q = BarsQuery::new(&["AAPL", "MSFT"], TimeFrame::MINUTE);
    q.start = Some(start);
    q.end = Some(now - chrono::Duration::minutes(1));
    let served = c.get_bars(&q).await.unwrap();
    for symbol in ["AAPL", "MSFT"] {
        let stored = store
            .bars(symbol, "1Min", start, now - chrono::Duration::minutes(1))
            .unwrap();
        assert!(stored.len() > 300, "{symbol}: {} bars", stored.len());
        assert_eq!(
            stored, served.bars[symbol],
            "{symbol}: stored as served, exactly"
        );
    }
    // The calendar's count over the stored span: the sim's minute bars are complete.
    let info = store.series().unwrap();
    assert_eq!(info.len(), 2);
    for s in &info {
        let expected = expected_bars(TimeFrame::MINUTE, s.first.unwrap(), s.last.unwrap());
        assert_eq!(expected, Some(s.count), "{s:?}");
        // The report counts what was stored: every bar, the last closed minute's included
        // (compared over the range above it flaked when that minute closed during the sync).
        assert_eq!(report.written[&s.symbol], s.count, "{s:?}");
    }
    // Again: everything up to the last closed minute is stored, so nothing is asked for but
    // the minutes that closed since.
    let again = sync(&broker, &mut store, &req, |_| {}).await.unwrap();
    let before: u64 = report.written.values().sum();
    let after: u64 = again.written.values().sum();
    assert!(
        after <= 20,
        "a second sync fetched {after} bars (the first {before})"
    );
    // A series keeps one adjustment.
    let raw = SyncRequest {
        adjustment: "raw".into(),
        ..req.clone()
    };
    let e = sync(&broker, &mut store, &raw, |_| {}).await.unwrap_err();
    assert!(
        e.to_string().contains("stored with adjustment \"split\""),
        "{e}"
    );
    // An empty range is refused with what is wrong.
    let backwards = SyncRequest {
        start: now,
        end: Some(start),
        ..req
    };
    let e = sync(&broker, &mut store, &backwards, |_| {})
        .await
        .unwrap_err();
    assert!(e.to_string().contains("the range is empty"), "{e}");
    sim.stop().await;
}

#[test]
fn a_corrupt_store_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("history.sqlite"),
        b"this is not a database at all, not at all",
    )
    .unwrap();
    let e = HistoryStore::open(dir.path())
        .err()
        .expect("a corrupt file must not open");
    let e = e.to_string();
    assert!(
        e.contains("history.sqlite") && e.contains("cannot be used"),
        "{e}"
    );
}

#[test]
fn import_is_all_or_nothing_and_ls_shows_what_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "timestamp,open,high,low,close,volume\n\
         2025-01-02T14:30:00Z,10,11,9,10,5\n\
         2025-01-02T14:31:00Z,10,11,9,oops,5\n",
    )
    .unwrap();
    let out = traderd_data(
        &[
            "data",
            "import",
            "--csv",
            bad.to_str().unwrap(),
            "--symbol",
            "ABC",
            "--timeframe",
            "1Min",
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 3: close \"oops\" is not a number")
            && err.contains("nothing was imported"),
        "{err}"
    );
    let ls = traderd_data(&["data", "ls"], dir.path());
    assert!(
        String::from_utf8_lossy(&ls.stdout).contains("nothing stored"),
        "{ls:?}"
    );

    let good = dir.path().join("good.csv");
    std::fs::write(
        &good,
        "timestamp,open,high,low,close,volume\n\
         1735828200,10,11,9,10,5\n\
         2025-01-02T14:31:00Z,10,11,9,10.25,7\n\
         2025-01-02T14:33:00Z,10,11,9,10.5,9\n",
    )
    .unwrap();
    let out = traderd_data(
        &[
            "data",
            "import",
            "--csv",
            good.to_str().unwrap(),
            "--symbol",
            "abc",
            "--timeframe",
            "1Min",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("ABC 1Min: 3 bars imported"));
    let ls = traderd_data(&["data", "ls", "--json"], dir.path());
    let v: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    assert_eq!(v[0]["symbol"], "ABC");
    assert_eq!(v[0]["count"], 3);
    assert_eq!(v[0]["adjustment"], "csv");
    assert_eq!(v[0]["gaps"], 1, "14:32 is missing");
    // The store is a file other tools read: plain SQL, prices as exact text.
    let conn = rusqlite::Connection::open(dir.path().join("history.sqlite")).unwrap();
    let close: String = conn
        .query_row(
            "SELECT close FROM bars WHERE symbol = 'ABC' AND t = 1735828260",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(close, "10.25");
}

#[tokio::test]
async fn the_command_line_syncs_from_the_simulator_and_names_what_is_stored_when_there_is_nothing()
{
    // The simulator's market a week ahead of this machine's clock (as one at speed soon is):
    // without `--end` the sync goes to the broker's last closed bar, not this machine's now.
    let sim = start_sim(|s| {
        s.history_sessions = 2;
        s.anchored_at = Some(chrono::Utc::now() + chrono::Duration::days(7));
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let url = sim.base_url();
    let today = chrono::Utc::now().date_naive();
    let start = (today - chrono::Duration::days(10)).to_string();
    let data_dir = dir.path().to_path_buf();
    let run = move |symbols: &str| {
        Command::new(env!("CARGO_BIN_EXE_traderd"))
            .args([
                "data",
                "sync",
                "--symbols",
                symbols,
                "--timeframe",
                "5Min",
                "--start",
                &start,
            ])
            .arg("--data-dir")
            .arg(&data_dir)
            .env("APCA_API_DATA_URL", &url)
            .env_remove("APCA_API_KEY_ID")
            .env_remove("APCA_API_SECRET_KEY")
            .output()
            .unwrap()
    };
    let out = tokio::task::spawn_blocking({
        let run = run.clone();
        move || run("SPY")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("SPY 5Min:"),
        "{out:?}"
    );
    let out = tokio::task::spawn_blocking(move || run("NOSUCH"))
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no 5Min bars of NOSUCH") && err.contains("stored: SPY 5Min"),
        "{err}"
    );
    sim.stop().await;
}
