#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `traderd bench-load`, small and short: the simulator's flood through a paper-mode daemon,
//! both codecs. Speed is not asserted (CI machines are noisy); what is: the JSON line scripts
//! read has every field, no trade and no bar was lost on the way, and marked trades became
//! orders whose tick-to-order latency was measured.

use std::process::Command;

#[test]
fn bench_load_prints_its_figures_and_loses_no_trade() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_traderd"))
        .args(["bench-load", "--symbols", "20", "--codec", "json,msgpack"])
        .args([
            "--ingest-seconds",
            "1",
            "--latency-seconds",
            "2",
            "--mark-every-ms",
            "20",
        ])
        .args(["--decode-seconds", "0.3", "--work-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench-load failed:\n{stderr}");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "one line per run:\n{stderr}");
    for (line, codec) in lines.iter().zip(["json", "msgpack"]) {
        println!("{line}");
        assert_eq!(
            (line["symbols"].as_u64(), line["codec"].as_str()),
            (Some(20), Some(codec))
        );
        for field in [
            "ingest_msgs_per_s",
            "peak_rss_mb",
            "cpu_s_per_million",
            "decode_baseline_msgs_per_s",
        ] {
            assert!(line[field].as_f64().unwrap() > 0.0, "{field} in {line}");
        }
        assert_eq!(line["dropped"]["trades"], 0, "{line}");
        assert_eq!(line["dropped"]["bars"], 0, "{line}");
        assert!(line["dropped"]["quotes"].as_u64().is_some(), "{line}");
        let t = &line["tick_to_order_us"];
        assert!(
            t["samples"].as_u64().unwrap() > 0,
            "no probe order was measured: {line}"
        );
        let (p50, p99, p999) = (
            t["p50"].as_u64().unwrap(),
            t["p99"].as_u64().unwrap(),
            t["p999"].as_u64().unwrap(),
        );
        assert!(0 < p50 && p50 <= p99 && p99 <= p999, "{line}");
        // The part before the journal is part of the whole.
        assert!(
            line["tick_to_intent_us"]["p50"].as_u64().unwrap() <= p50,
            "{line}"
        );
        // Each order's time beyond its own write-ahead is part of its tick → order.
        let beyond = &line["tick_to_order_beyond_write_us"];
        assert!(
            beyond["p50"].as_u64().unwrap() <= p50 && beyond["p99"].as_u64().unwrap() <= p99,
            "{line}"
        );
        // The machine's floor was timed: 5 s of work every 2 ms.
        let floor = &line["machine_floor_us"];
        assert!(floor["samples"].as_u64().unwrap() >= 100, "{line}");
        let (f50, f99) = (
            floor["p50"].as_u64().unwrap(),
            floor["p99"].as_u64().unwrap(),
        );
        assert!(0 < f50 && f50 <= f99, "{line}");
    }
    // Each run's daemon log is kept next to its journal.
    assert!(dir.path().join("20-json").join("daemon.log").exists());
}
