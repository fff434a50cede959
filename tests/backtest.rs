//! `traderd backtest` over a store filled from `traderd sim`: the same inputs give byte-identical
//! outputs; no order fills on the bar whose close made its signal; the summary agrees with an
//! independent computation from equity.csv; the trades account for the equity; and with no
//! bars stored the error says what is stored instead.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn csv(path: &Path) -> Vec<BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let head = r.headers().unwrap().clone();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            head.iter()
                .zip(rec.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn a_backtest_is_deterministic_without_look_ahead_and_its_figures_add_up() {
    let sim = start_sim(|s| s.history_sessions = 3).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = sim.base_url();
    let today = chrono::Utc::now().date_naive();
    let start = (today - chrono::Duration::days(14)).to_string();
    let end = today.to_string();
    let (d, s, e) = (data.clone(), start.clone(), end.clone());
    let synced = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_traderd"))
            .args([
                "data",
                "sync",
                "--symbols",
                "AAPL,MSFT,SPY",
                "--start",
                &s,
                "--end",
                &e,
            ])
            .arg("--data-dir")
            .arg(&d)
            .env("APCA_API_DATA_URL", &url)
            .env_remove("APCA_API_KEY_ID")
            .env_remove("APCA_API_SECRET_KEY")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        synced.status.success(),
        "{}",
        String::from_utf8_lossy(&synced.stderr)
    );
    sim.stop().await;

    // `traderd backtest --start … --end … --out OUT` and more arguments.
    let backtest = |out: &Path, more: &[&str]| {
        let mut args = vec![
            "backtest",
            "--start",
            &start,
            "--end",
            &end,
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(more);
        traderd_data(&args, &data)
    };
    let run = |out: &Path| {
        let o = backtest(out, &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    run(&a);
    run(&b);
    for f in ["summary.json", "equity.csv", "trades.csv", "orders.csv"] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f} differs between two runs"
        );
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("summary.json")).unwrap()).unwrap();
    let trades = csv(&a.join("trades.csv"));
    let orders = csv(&a.join("orders.csv"));
    let equity = csv(&a.join("equity.csv"));
    assert!(summary["signals"].as_u64().unwrap() > 0, "{summary}");
    assert!(!trades.is_empty(), "no trades: {summary}");

    // No look-ahead: an order is placed at a bar's close and its fill comes from a later bar:
    // a market entry fills at the open of the bar that starts when it was placed.
    let conn = rusqlite::Connection::open(data.join("history.sqlite")).unwrap();
    let open_at = |symbol: &str, t: &str| -> String {
        let t = chrono::DateTime::parse_from_rfc3339(t).unwrap().timestamp();
        conn.query_row(
            "SELECT open FROM bars WHERE symbol = ?1 AND timeframe = '1Min' AND t = ?2",
            rusqlite::params![symbol, t],
            |r| r.get(0),
        )
        .unwrap()
    };
    let mut checked = 0;
    for o in orders
        .iter()
        .filter(|o| o["purpose"] == "entry" && o["status"] == "Filled")
    {
        assert_eq!(
            o["filled_avg_price"],
            open_at(&o["symbol"], &o["created_at"]),
            "{o:?}"
        );
        checked += 1;
    }
    assert!(checked > 0);
    for t in &trades {
        assert!(t["exit_time"] > t["entry_time"], "{t:?}");
    }

    // The summary from equity.csv by an independent computation: each day's last equity.
    let mut days: BTreeMap<chrono::NaiveDate, f64> = BTreeMap::new();
    for row in &equity {
        let t = chrono::DateTime::parse_from_rfc3339(&row["time"]).unwrap();
        let day = t.with_timezone(&chrono_tz::America::New_York).date_naive();
        days.insert(day, row["equity"].parse().unwrap());
    }
    let mut values: Vec<f64> = vec![100_000.0];
    values.extend(days.values());
    let r: Vec<f64> = values.windows(2).map(|w| w[1] / w[0] - 1.0).collect();
    let n = r.len() as f64;
    let m = r.iter().sum::<f64>() / n;
    let sd = (r.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0)).sqrt();
    let sharpe = m / sd * 252f64.sqrt();
    let got = summary["summary"]["sharpe"].as_f64().unwrap();
    assert!(
        (got - sharpe).abs() < 1e-3 * sharpe.abs().max(1.0),
        "sharpe {got} vs {sharpe}"
    );
    let total = values.last().unwrap() / values[0] - 1.0;
    let got = summary["summary"]["total_return"].as_f64().unwrap();
    assert!((got - total).abs() < 1e-6, "total return {got} vs {total}");

    // The trades account for the equity when nothing is held at the end.
    let last = equity.last().unwrap();
    if last["gross_exposure"].parse::<f64>().unwrap() == 0.0 {
        let pnl: f64 = trades
            .iter()
            .map(|t| t["pnl"].parse::<f64>().unwrap())
            .sum();
        let change = last["equity"].parse::<f64>().unwrap() - 100_000.0;
        assert!(
            (pnl - change).abs() < 0.05,
            "trades {pnl} vs equity {change}"
        );
    }

    // The report opens in a real browser: headless Chromium (installed by .ci/run) draws it
    // (a screenshot well above a blank page's size) and its DOM holds the three charts.
    report_renders_in_chromium(&a.join("report.html"), dir.path());

    // A sweep: the product of the axes, each combination a backtest, ranked by Sharpe.
    let sweep_dir = dir.path().join("sweep");
    let out = backtest(
        &sweep_dir,
        &[
            "--sweep",
            "strategy.momentum.rsi_period=10,20",
            "--sweep",
            "strategy.sizing_usd=5000,10000",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = csv(&sweep_dir.join("sweep.csv"));
    assert_eq!(rows.len(), 4, "2 × 2 combinations");
    let sharpe: Vec<f64> = rows.iter().map(|r| r["sharpe"].parse().unwrap()).collect();
    assert!(
        sharpe.windows(2).all(|w| w[0] >= w[1]),
        "ranked best first: {sharpe:?}"
    );
    let mut seen: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["strategy.momentum.rsi_period"].clone(),
                r["strategy.sizing_usd"].clone(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(seen.len(), 4);
    seen.dedup();
    assert_eq!(seen.len(), 4, "every combination once");
    // The same sweep in two slices (two machines), merged: the same file as in one piece.
    for shard in ["0/2", "1/2"] {
        let out = backtest(
            &dir.path().join(format!("shard{}", &shard[..1])),
            &[
                "--sweep",
                "strategy.momentum.rsi_period=10,20",
                "--sweep",
                "strategy.sizing_usd=5000,10000",
                "--shard",
                shard,
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let merged = dir.path().join("merged.csv");
    let out = Command::new(env!("CARGO_BIN_EXE_traderd"))
        .args(["sweep", "merge", "--out", merged.to_str().unwrap()])
        .arg(dir.path().join("shard0/sweep.csv"))
        .arg(dir.path().join("shard1/sweep.csv"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&merged).unwrap(),
        std::fs::read_to_string(sweep_dir.join("sweep.csv")).unwrap(),
        "merged slices differ from the whole sweep"
    );
    // Walk-forward: the best of the grid on the first day, then run on the week after (the
    // sessions the simulator has, holidays or not, are in it).
    let wf_dir = dir.path().join("wf");
    let out = backtest(
        &wf_dir,
        &[
            "--sweep",
            "strategy.momentum.rsi_period=10,20",
            "--walk-forward",
            "train=1d,test=7d",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("out of sample"));
    let windows = csv(&wf_dir.join("walk_forward.csv"));
    assert!(
        !windows.is_empty(),
        "no window: {}; stored: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&traderd_data(&["data", "ls"], &data).stdout)
    );
    for w in &windows {
        assert_eq!(
            w["train_end"], w["test_start"],
            "the test follows the training span: {w:?}"
        );
        assert!(["10", "20"].contains(&w["strategy.momentum.rsi_period"].as_str()));
    }
    // The default config's own row (rsi 14 is not in the grid) would differ; a combination
    // equal to a plain run gives the plain run's figures.
    let plain = backtest(
        &dir.path().join("plain"),
        &["--sweep", "strategy.momentum.rsi_period=14"],
    );
    assert!(plain.status.success());
    let one = csv(&dir.path().join("plain").join("sweep.csv"));
    let sharpe = summary["summary"]["sharpe"].as_f64().unwrap();
    assert!(
        (one[0]["sharpe"].parse::<f64>().unwrap() - sharpe).abs() < 1e-3,
        "{one:?}"
    );

    // Nothing stored for the range: it says what is.
    let out = traderd_data(
        &[
            "backtest",
            "--start",
            "2020-01-02",
            "--end",
            "2020-01-31",
            "--out",
            dir.path().join("c").to_str().unwrap(),
        ],
        &data,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no stored 1Min bars of AAPL, MSFT, SPY") && err.contains("stored: AAPL 1Min"),
        "{err}"
    );
}

fn chromium(args: &[&str]) -> std::process::Output {
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("headless Chromium is needed (apt-get install chromium; .ci/run does it): {e}")
        })
}

fn report_renders_in_chromium(report: &Path, dir: &Path) {
    let url = format!("file://{}", report.display());
    let dom = chromium(&["--dump-dom", &url]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    for id in ["equity", "drawdown", "pnl"] {
        assert!(
            dom.contains(&format!("id=\"{id}\"")),
            "no {id} chart in the DOM"
        );
    }
    assert_eq!(dom.matches("<svg").count(), 3, "three charts");
    assert!(dom.contains("<polyline") && dom.contains("Sharpe") && dom.contains("Monthly returns"));
    let shot = |url: &str, name: &str| -> u64 {
        let path = dir.join(name);
        let arg = format!("--screenshot={}", path.display());
        let out = chromium(&[&arg, "--window-size=1000,1400", url]);
        assert!(
            path.exists(),
            "no screenshot: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::metadata(&path).unwrap().len()
    };
    let blank = shot("about:blank", "blank.png");
    let page = shot(&url, "report.png");
    assert!(
        page > 4 * blank,
        "the report's screenshot looks blank: {page} bytes, a blank page {blank}"
    );
}

/// The research loop closed on a run: the daemon trades on the simulator for a stretch of
/// market time; `traderd report` draws the run from its journal (equity sampled once a minute
/// and at fills, round trips from the fills); then the same config is backtested over the
/// simulator's own bars for the same stretch, warmed up as the daemon was, and makes the same
/// signals at the same bar times. Fills differ by the fill model (the daemon's fill at the
/// simulator's live quote after the bar, the backtest's at the next bar's first point): the
/// test states by how much.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_reports_from_its_journal_and_its_backtest_makes_the_same_signals() {
    let sim = paper_sim().await;
    let url = sim.base_url();
    let dir = tempfile::tempdir().unwrap();
    let (state, cfg, log) = (
        dir.path().join("state"),
        dir.path().join("traderd.toml"),
        dir.path().join("daemon.log"),
    );
    // Market orders only (no brackets), so a position's life is the signals' alone.
    std::fs::write(
        &cfg,
        "[connection]\nmode = \"paper\"\n[trading]\nsymbols = [\"AAPL\", \"MSFT\", \"SPY\"]\n\
         [strategy]\nsizing_usd = \"2000\"\nprotection = \"none\"\n\
         [strategy.momentum]\nrsi_entry_min = 0.0\nrsi_entry_max = 100.0\nrsi_exit = 100.0\n\
         [account]\nrefresh_interval_ms = 200\n[orders]\nreconcile_interval_s = 2\n\
         [risk]\nmax_orders_per_minute = 1000\n\
         [alpaca]\nrequests_per_minute = 6000\n",
    )
    .unwrap();
    let rest = client(&sim);
    // The run starts inside the session, a few minutes after the open: the daemon learns
    // that the market opened from its next clock read, which at 120x may come after the
    // session's first bar has closed (a read every 200 ms is 24 market seconds), while the
    // backtest treats every bar of a session as open. Their first bar's signals differed
    // under load for that reason alone.
    wait_for(
        "the session to be open for three minutes",
        Duration::from_secs(60),
        || {
            let rest = rest.clone();
            async move {
                let c = rest.get_clock().await.ok()?;
                let open = traderd::domain::calendar::Session::on(
                    traderd::domain::calendar::to_et(c.timestamp.with_timezone(&chrono::Utc))
                        .date_naive(),
                )
                .open;
                (c.is_open
                    && c.timestamp.with_timezone(&chrono::Utc)
                        >= open + chrono::Duration::minutes(3))
                .then_some(())
            }
        },
    )
    .await;
    let started = rest.get_clock().await.unwrap().timestamp;
    let mut daemon = Killed(
        paper_daemon(&url, &cfg, &state)
            // Ignored signals are logged at debug, with their ids.
            .env("RUST_LOG", "info,traderd::actors::strategy_runner=debug")
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    // 40 market minutes (20 s at 120x; Alpaca's 200 requests a minute of wall time would
    // leave the account a read every few market minutes, hence the higher limit).
    let until = started + chrono::Duration::minutes(40);
    wait_for("40 market minutes", Duration::from_secs(60), || {
        let rest = rest.clone();
        async move { (rest.get_clock().await.ok()?.timestamp >= until).then_some(()) }
    })
    .await;
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.0.id().to_string()])
        .status();
    let child = std::sync::Mutex::new(&mut daemon.0);
    let status = wait_for("the daemon to stop", Duration::from_secs(20), || {
        let r = child.lock().unwrap().try_wait().unwrap();
        async move { r }
    })
    .await;
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let live_from = text
        .lines()
        .find(|l| l.contains("market data warmed up from REST"))
        .and_then(|l| l.split("live_from=").nth(1))
        .map(|v| v.split_whitespace().next().unwrap().to_string())
        .unwrap_or_else(|| panic!("no warm-up line in the log:\n{text}"));
    let ended = rest.get_clock().await.unwrap().timestamp;

    // The run's report from its journal.
    let report_dir = dir.path().join("report");
    let out = Command::new(env!("CARGO_BIN_EXE_traderd"))
        .args(["report", "--state-dir"])
        .arg(&state)
        .arg("--out")
        .arg(&report_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let equity = csv(&report_dir.join("equity.csv"));
    assert!(
        equity.len() >= 30,
        "about one sample a market minute and one per fill: {}",
        equity.len()
    );
    let times: Vec<String> = equity.iter().map(|r| r["time"].clone()).collect();
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "samples in time order"
    );
    let trades = csv(&report_dir.join("trades.csv"));
    let orders = csv(&report_dir.join("orders.csv"));
    assert!(!trades.is_empty(), "the busy strategy closed no trade");
    for t in &trades {
        let d = |k: &str| t[k].parse::<rust_decimal::Decimal>().unwrap();
        assert_eq!(t["side"], "long");
        assert_eq!(
            d("pnl"),
            ((d("exit_price") - d("entry_price")) * d("qty")).round_dp(4),
            "{t:?}"
        );
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report_dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["summary"]["trades"], trades.len());
    assert_eq!(
        summary["summary"]["final_equity"].as_str().unwrap(),
        equity.last().unwrap()["equity"]
    );
    report_renders_in_chromium(&report_dir.join("report.html"), dir.path());

    // The same config over the simulator's bars for the same stretch.
    let data = dir.path().join("data");
    let day = |t: chrono::DateTime<chrono::FixedOffset>| t.date_naive().to_string();
    let sync = Command::new(env!("CARGO_BIN_EXE_traderd"))
        .args([
            "data",
            "sync",
            "--symbols",
            "AAPL,MSFT,SPY",
            "--timeframe",
            "1Min",
        ])
        .args(["--start", &day(started - chrono::Duration::days(5))])
        .args(["--end", &day(ended)])
        .arg("--data-dir")
        .arg(&data)
        .envs(paper_env(&url))
        .output()
        .unwrap();
    assert!(
        sync.status.success(),
        "{}",
        String::from_utf8_lossy(&sync.stderr)
    );
    let bt = dir.path().join("bt");
    // The last bar the daemon surely saw closed and acted on: two minutes before it stopped.
    let last = ended - chrono::Duration::minutes(2);
    let run = Command::new(env!("CARGO_BIN_EXE_traderd"))
        .args(["backtest", "--config"])
        .arg(&cfg)
        .args(["--start", &live_from, "--end", &last.to_rfc3339()])
        .arg("--out")
        .arg(&bt)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // A signal id is "<symbol>-<bar start>".
    let bar_of = |id: &str| -> Option<(String, i64)> {
        let (symbol, t) = id.rsplit_once('-')?;
        Some((symbol.to_string(), t.parse().ok()?))
    };
    // Where the daemon ignored a signal (under the suite's load an order can still be in
    // progress when the next bar closes; the backtest's fills are instant), its path and
    // the backtest's part: each symbol is compared up to the first bar it ignored.
    let ignored: BTreeMap<String, i64> = text
        .lines()
        .filter(|l| l.contains("signal ignored"))
        .filter_map(|l| {
            bar_of(
                l.split("correlation_id=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?,
            )
        })
        .fold(BTreeMap::new(), |mut m, (symbol, t)| {
            let first = m.entry(symbol).or_insert(t);
            *first = (*first).min(t);
            m
        });
    let signals = |rows: &[BTreeMap<String, String>], to_ignored: bool| -> Vec<(String, String)> {
        let cut = last.timestamp() - 60;
        let mut v: Vec<(String, String)> = rows
            .iter()
            .filter(|r| r["purpose"] == "entry" || r["purpose"] == "exit")
            .filter(|r| {
                bar_of(&r["signal"]).is_some_and(|(symbol, t)| {
                    t <= cut && !(to_ignored && ignored.get(&symbol).is_some_and(|&i| t >= i))
                })
            })
            .map(|r| (r["signal"].clone(), r["side"].clone()))
            .collect();
        v.sort();
        v
    };
    let made = signals(&orders, false).len();
    assert!(
        made >= 5,
        "the daemon made {made} signals: {:?}; its log:\n{text}",
        &orders[..orders.len().min(4)]
    );
    if !ignored.is_empty() {
        eprintln!("the daemon ignored a signal, so compared up to: {ignored:?}");
    }
    let mut ours = signals(&orders, true);
    let tested = signals(&csv(&bt.join("orders.csv")), true);
    // The minute in progress when the daemon started is built from the trades it saw after
    // connecting only (docs/architecture.md: the minute data resumed in may miss earlier
    // trades), the backtest's from the whole REST bar: a symbol's first signal may come a bar
    // later or earlier there (seen twice under CI load, the daemon started late in its first
    // minute). Only that, its first signal and the same side, is taken as alike.
    let first_live = chrono::DateTime::parse_from_rfc3339(&live_from)
        .unwrap()
        .timestamp();
    let first_two = [first_live, first_live + 60];
    let first_of = |v: &[(String, String)], symbol: &str| {
        v.iter()
            .filter_map(|(id, side)| {
                let (s, t) = bar_of(id)?;
                (s == symbol).then(|| (t, id.clone(), side.clone()))
            })
            .min()
    };
    let symbols: std::collections::BTreeSet<String> = ours
        .iter()
        .filter_map(|(id, _)| Some(bar_of(id)?.0))
        .collect();
    for symbol in symbols {
        if let (Some((a, ours_id, a_side)), Some((b, bt_id, b_side))) =
            (first_of(&ours, &symbol), first_of(&tested, &symbol))
        {
            if a != b && a_side == b_side && first_two.contains(&a) && first_two.contains(&b) {
                eprintln!(
                    "{symbol}'s first signal a bar apart in the first live minute: {ours_id} / {bt_id}"
                );
                for s in ours.iter_mut().filter(|(id, _)| *id == ours_id) {
                    s.0 = bt_id.clone();
                }
            }
        }
    }
    ours.sort();
    let missing: Vec<_> = ours.iter().filter(|s| !tested.contains(s)).collect();
    let extra: Vec<_> = tested.iter().filter(|s| !ours.contains(s)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "the daemon's signals {} and the backtest's {}: only the daemon's {missing:?}, only the backtest's {extra:?}; the daemon's log:\n{text}",
        ours.len(),
        tested.len()
    );
    // Fills: the same orders, at prices within the bar's range of each other.
    let fills = |rows: &[BTreeMap<String, String>]| -> BTreeMap<(String, String), f64> {
        rows.iter()
            .filter(|r| !r["filled_avg_price"].is_empty())
            .map(|r| {
                (
                    (r["signal"].clone(), r["side"].clone()),
                    r["filled_avg_price"].parse::<f64>().unwrap(),
                )
            })
            .collect()
    };
    let (a, b) = (fills(&orders), fills(&csv(&bt.join("orders.csv"))));
    let diffs: Vec<f64> = ours
        .iter()
        .filter_map(|k| Some(((a.get(k)? - b.get(k)?) / b.get(k)?).abs() * 10_000.0))
        .collect();
    let worst = diffs.iter().cloned().fold(0.0, f64::max);
    let mean = diffs.iter().sum::<f64>() / diffs.len().max(1) as f64;
    eprintln!(
        "parity: {} signals alike; fill prices differ by {mean:.1} bp on average, {worst:.1} bp at most",
        ours.len()
    );
    assert!(worst < 50.0, "fill prices {worst:.1} bp apart");
}
