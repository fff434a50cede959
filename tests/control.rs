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
    // With only RUNTIME_DIRECTORY set (as systemd sets it, no HOME, no state directory), ctl
    // finds the socket there.
    let runtime_dir = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin)
            .env_clear()
            .env("RUNTIME_DIRECTORY", &runtime_dir)
            .args(["ctl", "--json", "status"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    // No entry passes risk here (a dollar per symbol), so no position holds a symbol back.
    let base = "[sim]\nspeed = 120.0\n[trading]\nsymbols = [\"AAPL\", \"MSFT\", \"SPY\"]\n[risk]\nmax_notional_per_symbol_usd = \"1\"\n";
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

    // Five subscribes at once: each one is applied on what the one before applied, none lost.
    let five = ["NVDA", "AMD", "TSLA", "META", "AMZN"];
    let args: Vec<Vec<String>> = five.iter().map(|s| vec![s.to_string()]).collect();
    let answers =
        futures_util::future::join_all(args.iter().map(|a| call(&path, "subscribe", a))).await;
    let mut last_symbols = 0;
    for (s, r) in five.iter().zip(answers) {
        let r = r.unwrap();
        assert!(r.ok, "{s}: {r:?}");
        let report = r.result.unwrap();
        assert_eq!(report["added"], serde_json::json!([s]), "{report}");
        let symbols = report["symbols"].as_array().unwrap();
        assert!(
            symbols.iter().any(|x| x == s),
            "the answer shows what is in force: {report}"
        );
        last_symbols = last_symbols.max(symbols.len());
    }
    assert_eq!(last_symbols, 8, "the last answer holds all eight");
    wait_for("eight subscriptions", WAIT, || async {
        (trades().await == 8).then_some(())
    })
    .await;
    let all: Vec<String> = five.iter().map(|s| s.to_string()).collect();
    let r = call(&path, "unsubscribe", &all).await.unwrap();
    let report = r.result.unwrap();
    let mut removed: Vec<String> = serde_json::from_value(report["removed"].clone()).unwrap();
    removed.sort();
    let mut want = all.clone();
    want.sort();
    assert_eq!(
        removed, want,
        "every symbol subscribed is in force, so it can be removed"
    );
    wait_for("three once more", WAIT, || async {
        (trades().await == 3).then_some(())
    })
    .await;
    // Not symbols in Alpaca's syntax.
    for bad in [".", "...", "A..B", "brk.b"] {
        let r = call(&path, "subscribe", &[bad.to_string()]).await.unwrap();
        assert_eq!(r.error.unwrap().code, "bad_request", "{bad}");
    }

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
        "[sim]\nspeed = 120.0\n[trading]\nsymbols = [\"AAPL\", \"MSFT\"]\n[risk]\nmax_notional_per_symbol_usd = \"1\"\nmax_open_orders = 3\n[strategy]\nname = \"mean_reversion\"\n",
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

/// Runs `traderd ctl --socket S status` as nobody:nogroup; `None` when this host cannot
/// (not root, no setpriv).
fn ctl_as_nobody(socket: &std::path::Path) -> Option<std::process::Output> {
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_traderd"))
        .args(["ctl", "--socket"])
        .arg(socket)
        .arg("status")
        .output()
        .ok()?;
    let err = String::from_utf8_lossy(&out.stderr);
    (!err.contains("setpriv:")).then_some(out)
}

#[actix_rt::test]
async fn peer_credentials_decide_who_may_steer_the_daemon() {
    for allowed in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        // The group may reach the socket; the uid check decides.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut cfg = config();
        cfg.control.group = "nogroup".into();
        if allowed {
            cfg.control.allowed_uids = vec![65534];
        }
        let d = traderd::daemon::start(&cfg, dir.path(), |_| None)
            .await
            .unwrap();
        let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        let socket = d.socket.clone();
        let Some(out) = tokio::task::spawn_blocking(move || ctl_as_nobody(&socket))
            .await
            .unwrap()
        else {
            eprintln!("cannot run as nobody here (needs root and setpriv): skipped");
            d.stop().await;
            return;
        };
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        if allowed {
            assert!(out.status.success(), "allowed uid: {stderr}");
        } else {
            assert_eq!(out.status.code(), Some(1), "{stderr}");
            assert!(stderr.contains("forbidden"), "{stderr}");
        }
        // The daemon's own user is always served.
        assert!(call(&d.socket, "status", &[]).await.unwrap().ok);
        d.stop().await;
    }
}

#[actix_rt::test]
async fn unsubscribing_a_symbol_that_holds_a_position_is_refused() {
    use traderd::actors::order_manager::GetOrderStats;
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::parse(
        "[sim]\nspeed = 120.0\n[strategy]\nsizing_usd = \"2000\"\n[strategy.momentum]\nrsi_entry_min = 0.0\nrsi_entry_max = 100.0\nrsi_exit = 100.0\n[account]\nrefresh_interval_ms = 300\n",
        "test",
        &CheckContext::default(),
    )
    .unwrap();
    let d = traderd::daemon::start(&cfg, dir.path(), |_| None)
        .await
        .unwrap();
    // Halt while holding something, and let what is in flight settle: the position stays.
    let held = wait_for("a position held while halted", WAIT, || async {
        if d.orders
            .send(GetOrderStats)
            .await
            .unwrap()
            .positions
            .is_empty()
        {
            return None;
        }
        assert!(call(&d.socket, "halt", &[]).await.unwrap().ok);
        let settled = wait_for("settled", WAIT, || async {
            let s = d.orders.send(GetOrderStats).await.unwrap();
            (s.unsettled == 0).then_some(s)
        })
        .await;
        let held = settled.positions.keys().next().cloned();
        if held.is_none() {
            assert!(call(&d.socket, "resume", &[]).await.unwrap().ok);
        }
        held
    })
    .await;
    let r = call(&d.socket, "unsubscribe", std::slice::from_ref(&held))
        .await
        .unwrap();
    let e = r.error.unwrap();
    assert_eq!(e.code, "refused");
    assert!(
        e.message.contains(&format!("{held} holds")),
        "{}",
        e.message
    );
    d.stop().await;
}

/// Held connections, a follower that never reads, a large request id: the socket stays
/// bounded and answers.
#[actix_rt::test]
async fn the_socket_is_bounded_connections_followers_and_ids() {
    use traderd::control::{EVENTS_BUFFER, MAX_CONNECTIONS};
    let dir = tempfile::tempdir().unwrap();
    let d = traderd::daemon::start(&config(), dir.path(), |_| None)
        .await
        .unwrap();
    let path = d.socket.clone();

    // A large id comes back as it was sent, not rounded through a float.
    let r = raw(
        &path,
        b"{\"v\":1,\"id\":123456789012345678901234567890,\"cmd\":\"health\"}\n",
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    let stream = UnixStream::connect(&path).await.unwrap();
    let (read, mut write) = stream.into_split();
    write
        .write_all(b"{\"v\":1,\"id\":123456789012345678901234567890,\"cmd\":\"health\"}\n")
        .await
        .unwrap();
    let line = BufReader::new(read)
        .lines()
        .next_line()
        .await
        .unwrap()
        .unwrap();
    assert!(
        line.contains("\"id\":123456789012345678901234567890,"),
        "{}",
        &line[..80.min(line.len())]
    );

    // Connections held open past the cap: the next one is told so and closed.
    let mut held = Vec::new();
    for _ in 0..MAX_CONNECTIONS {
        held.push(UnixStream::connect(&path).await.unwrap());
    }
    let busy = wait_for("the cap to be reached", WAIT, || async {
        let r = call(&path, "status", &[]).await.unwrap();
        r.error.filter(|e| e.code == "busy")
    })
    .await;
    assert!(busy.message.contains("try again"), "{}", busy.message);
    drop(held);
    wait_for(
        "status once the held connections are gone",
        WAIT,
        || async { call(&path, "status", &[]).await.unwrap().ok.then_some(()) },
    )
    .await;

    // A follower that never reads: once its buffer is full it is dropped, and its connection
    // closes; the daemon's memory does not hold its backlog.
    let stream = UnixStream::connect(&path).await.unwrap();
    let (read, mut write) = stream.into_split();
    write
        .write_all(b"{\"v\":1,\"id\":1,\"cmd\":\"events\"}\n")
        .await
        .unwrap();
    let mut events = 0usize;
    for _ in 0..20 * EVENTS_BUFFER {
        call(&path, "pause", &[]).await.unwrap();
        call(&path, "resume", &[]).await.unwrap();
        events += 2;
        if events > 10 * EVENTS_BUFFER {
            break;
        }
    }
    let mut lines = BufReader::new(read).lines();
    let mut read_back = 0usize;
    let closed = tokio::time::timeout(WAIT, async {
        while lines.next_line().await.unwrap().is_some() {
            read_back += 1;
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the slow follower's connection was not closed"
    );
    assert!(
        read_back < events,
        "{read_back} of {events} lines: it was dropped"
    );
    assert!(call(&path, "status", &[]).await.unwrap().ok);
    d.stop().await;
}

/// `ctl` gives up on a socket that does not answer, and on an answer too long to be ours.
#[tokio::test]
async fn ctl_times_out_and_caps_the_answer() {
    use traderd::control::{MAX_REPLY, call_within};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mute.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let server = tokio::spawn(async move {
        let mut kept = Vec::new();
        // The first connection never gets an answer; the second gets a line too long.
        let (mute, _) = listener.accept().await.unwrap();
        kept.push(mute);
        let (mut loud, _) = listener.accept().await.unwrap();
        let big = vec![b'x'; MAX_REPLY + 10];
        let _ = loud.write_all(&big).await;
        kept.push(loud);
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(kept);
    });
    let started = std::time::Instant::now();
    let e = call_within(&path, "status", &[], Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(e.contains("did not answer"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let e = call_within(&path, "status", &[], Duration::from_secs(20))
        .await
        .unwrap_err();
    assert!(e.contains("longer than"), "{e}");
    server.abort();
}

/// The daemon as a process with 256 file descriptors, and 300 control connections held open
/// against it: past the cap each is told `busy` and closed, so the daemon never runs out of
/// descriptors, `status` still answers at once, and the log does not fill with accept errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_connections_cannot_exhaust_a_daemon_with_few_file_descriptors() {
    let sim = common::paper_sim().await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ctl.sock");
    let cfg = dir.path().join("traderd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[connection]\nmode = \"paper\"\n[control]\nsocket = \"{}\"\n",
            socket.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let daemon = common::paper_daemon(&sim.base_url(), &cfg, &dir.path().join("state"));
    // The same command under `ulimit -n 256`.
    let mut limited = std::process::Command::new("sh");
    limited
        .arg("-c")
        .arg("ulimit -n 256 && exec \"$0\" \"$@\"")
        .arg(daemon.get_program())
        .args(daemon.get_args())
        .envs(
            daemon
                .get_envs()
                .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))),
        )
        .env_remove("STATE_DIRECTORY")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let _child = common::Killed(limited.spawn().unwrap());
    wait_for("the daemon's status", WAIT, || async {
        call(&socket, "status", &[]).await.ok()?.ok.then_some(())
    })
    .await;

    let mut held = Vec::new();
    for _ in 0..300 {
        if let Ok(s) = UnixStream::connect(&socket).await {
            held.push(s);
        }
    }
    let started = std::time::Instant::now();
    let r = call(&socket, "status", &[]).await.unwrap();
    assert_eq!(r.error.map(|e| e.code).as_deref(), Some("busy"));
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(held);
    wait_for("status again", WAIT, || async {
        call(&socket, "status", &[]).await.ok()?.ok.then_some(())
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap();
    let accept_errors = text.lines().filter(|l| l.contains("accept failed")).count();
    assert!(accept_errors <= 1, "{accept_errors} accept errors:\n{text}");
    assert!(!text.contains(" ERROR "), "{text}");
}
