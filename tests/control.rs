#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The control socket, for real: a running daemon, its Unix socket, and `traderd ctl`.

mod common;

use common::wait_for;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use traderd::config::{CheckContext, Config};
use traderd::control::{call, follow};

const WAIT: Duration = Duration::from_secs(60);

fn config() -> Config {
    Config::parse(
        "[sim]\nspeed = 120.0\n[account]\nrefresh_interval_ms = 300\n[preservation]\nretry_min_ms = 100\nverify_timeout_ms = 3000\n",
        "test",
        &CheckContext::default(),
    )
    .unwrap()
}

/// Sends raw bytes, answers the first line back.
async fn raw(path: &std::path::Path, bytes: &[u8]) -> serde_json::Value {
    let stream = UnixStream::connect(path).await.unwrap();
    let (read, mut write) = stream.into_split();
    write.write_all(bytes).await.unwrap();
    let mut lines = BufReader::new(read).lines();
    let line = lines.next_line().await.unwrap().unwrap();
    serde_json::from_str(&line).unwrap()
}

#[actix_rt::test]
async fn the_socket_answers_status_and_steers_the_mode_and_bad_requests_get_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = traderd::daemon::start(&config(), dir.path(), |_| None)
        .await
        .unwrap();
    let path = d.socket.clone();
    assert_eq!(path, dir.path().join("traderd.sock"));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "only the daemon's user may connect");

    // status has what scripts read.
    let status = wait_for("a status with the account read", WAIT, || async {
        let r = call(&path, "status", &[]).await.unwrap();
        assert!(r.ok, "{r:?}");
        let s = r.result.unwrap();
        (!s["equity"].is_null() && s["stream"]["state"] == "streaming").then_some(s)
    })
    .await;
    for key in ["mode", "positions", "open_orders", "equity"] {
        assert!(status.get(key).is_some(), "status has {key}: {status}");
    }
    assert_eq!(status["mode"], "active");
    assert!(status["stream"]["reconnects"].is_u64());

    // Follow events while the mode is steered.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = seen.clone();
    let follow_path = path.clone();
    actix_rt::spawn(async move {
        let _ = follow(&follow_path, |e| {
            let what = match e["kind"].as_str() {
                Some("following") => "following",
                Some("mode_changed") => e["to"].as_str().unwrap_or(""),
                _ => return, // orders, fills, health: not what this test steers
            };
            sink.lock().unwrap().push(what.to_string())
        })
        .await;
    });
    wait_for("the follower to be subscribed", WAIT, || async {
        (!seen.lock().unwrap().is_empty()).then_some(())
    })
    .await;

    let r = call(&path, "pause", &[]).await.unwrap();
    assert_eq!(r.result.unwrap()["mode"], "reduce_only");
    let r = call(&path, "flatten", &[]).await.unwrap();
    assert_eq!(r.result.unwrap()["mode"], "preserving");
    let r = call(&path, "resume", &[]).await.unwrap();
    assert!(!r.ok, "resume is refused while the flatten runs");
    assert_eq!(r.error.unwrap().code, "refused");
    wait_for("preserved", WAIT, || async {
        let r = call(&path, "status", &[]).await.unwrap();
        (r.result.unwrap()["mode"] == "preserved").then_some(())
    })
    .await;
    let r = call(&path, "resume", &[]).await.unwrap();
    assert_eq!(r.result.unwrap()["mode"], "active");
    let events = wait_for("the mode events", WAIT, || async {
        let e = seen.lock().unwrap().clone();
        (e.len() >= 5).then_some(e)
    })
    .await;
    assert_eq!(
        events,
        [
            "following",
            "reduce_only",
            "preserving",
            "preserved",
            "active"
        ]
    );

    // Bad input: an error for that connection, and everyone else is served on.
    let r = raw(&path, b"this is not json\n").await;
    assert_eq!(r["ok"], false);
    assert_eq!(r["error"]["code"], "bad_request");
    let big = format!("{{\"v\":1,\"id\":1,\"cmd\":\"{}\"}}\n", "x".repeat(40_000));
    let r = raw(&path, big.as_bytes()).await;
    assert_eq!(r["error"]["code"], "too_large");
    let r = raw(&path, b"{\"v\":1,\"id\":9,\"cmd\":\"launch\"}\n").await;
    assert_eq!(r["error"]["code"], "unknown_command");
    assert_eq!(r["id"], 9);
    let r = raw(&path, b"{\"v\":2,\"id\":\"x\",\"cmd\":\"status\"}\n").await;
    assert_eq!(r["error"]["code"], "unsupported_version");
    assert_eq!(r["id"], "x");
    assert!(call(&path, "health", &[]).await.unwrap().ok);

    // The binary: a table by default, JSON with --json, exit 3 and a clear message with no daemon.
    let bin = env!("CARGO_BIN_EXE_traderd");
    let sock = path.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking({
        let sock = sock.clone();
        move || {
            std::process::Command::new(bin)
                .args(["ctl", "--socket", &sock, "status"])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("mode") && text.contains("active"), "{text}");
    eprintln!("traderd ctl status:\n{text}");
    let out = tokio::task::spawn_blocking({
        let sock = sock.clone();
        move || {
            std::process::Command::new(bin)
                .args(["ctl", "--socket", &sock, "--json", "status"])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["mode"], "active");
    let missing = dir.path().join("nobody.sock");
    let out = std::process::Command::new(bin)
        .args(["ctl", "--socket", missing.to_str().unwrap(), "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the daemon"));

    // A second daemon on the same socket is refused at start.
    let other = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.control.socket = sock.clone();
    let second = traderd::daemon::start(&cfg, other.path(), |_| None).await;
    assert!(
        matches!(&second, Err(e) if e.to_string().contains("already serving")),
        "{:?}",
        second.as_ref().err()
    );

    // shutdown over the socket sets the stop request the binary waits on.
    let mut stop = d.stop_requested.clone();
    assert!(call(&path, "shutdown", &[]).await.unwrap().ok);
    tokio::time::timeout(WAIT, stop.wait_for(|s| *s))
        .await
        .unwrap()
        .unwrap();
    d.stop().await;
    assert!(!path.exists(), "the socket is removed at shutdown");
}

#[actix_rt::test]
async fn subscribe_unsubscribe_and_reload_change_what_is_traded_without_a_restart() {
    use traderd::actors::market_data::GetLatest;
    use traderd::messages::GetStreamStatus;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("traderd.toml");
    let base = "[sim]\nspeed = 120.0\n[trading]\nsymbols = [\"AAPL\", \"MSFT\", \"SPY\"]\n";
    std::fs::write(&file, base).unwrap();
    let ctx = CheckContext::default();
    let cfg = Config::load(&file, &ctx).unwrap();
    let d = traderd::daemon::start(&cfg, dir.path(), |_| None)
        .await
        .unwrap();
    d.control.do_send(traderd::control::ConfigSource {
        path: file.clone(),
        check: ctx,
    });
    let path = d.socket.clone();
    let trades = || async {
        d.market_stream
            .send(GetStreamStatus)
            .await
            .unwrap()
            .subscriptions
            .trades
    };
    wait_for("three subscriptions", WAIT, || async {
        (trades().await == 3).then_some(())
    })
    .await;

    // subscribe: warmed up from REST, then streamed.
    let r = call(&path, "subscribe", &["NVDA".into()]).await.unwrap();
    assert!(r.ok, "{r:?}");
    let report = r.result.unwrap();
    assert_eq!(report["added"], serde_json::json!(["NVDA"]));
    assert!(report["warm_bars"].as_u64().unwrap() > 0, "{report}");
    wait_for("NVDA trades", WAIT, || async {
        let latest = d.feed.send(GetLatest("NVDA".into())).await.unwrap();
        latest.trade.map(|_| ())
    })
    .await;
    assert_eq!(trades().await, 4);
    let r = call(&path, "subscribe", &["not a symbol!".into()])
        .await
        .unwrap();
    assert_eq!(r.error.unwrap().code, "bad_request");
    let r = call(&path, "subscribe", &[]).await.unwrap();
    assert_eq!(r.error.unwrap().code, "bad_request");

    // unsubscribe.
    let r = call(&path, "unsubscribe", &["NVDA".into()]).await.unwrap();
    assert_eq!(r.result.unwrap()["removed"], serde_json::json!(["NVDA"]));
    wait_for("three again", WAIT, || async {
        (trades().await == 3).then_some(())
    })
    .await;

    // reload: a broken file changes nothing; a good one applies risk limits and symbols and
    // says what needs a restart.
    std::fs::write(&file, "[risk]\nmax_open_orders = \"ten\"\n").unwrap();
    let r = call(&path, "reload", &[]).await.unwrap();
    let e = r.error.unwrap();
    assert_eq!(e.code, "refused");
    assert!(e.message.contains("max_open_orders"), "{}", e.message);
    assert_eq!(trades().await, 3);
    std::fs::write(
        &file,
        "[sim]\nspeed = 120.0\n[trading]\nsymbols = [\"AAPL\", \"MSFT\"]\n[risk]\nmax_open_orders = 3\n[strategy]\nname = \"mean_reversion\"\n",
    )
    .unwrap();
    let r = call(&path, "reload", &[]).await.unwrap();
    assert!(r.ok, "{r:?}");
    let report = r.result.unwrap();
    assert_eq!(report["risk_limits"], "applied");
    assert_eq!(report["removed"], serde_json::json!(["SPY"]));
    assert_eq!(report["needs_restart"], serde_json::json!(["strategy"]));
    wait_for("two subscriptions", WAIT, || async {
        (trades().await == 2).then_some(())
    })
    .await;
    d.stop().await;
}
