#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! systemd integration, for real: the notify protocol of the running binary against a datagram
//! socket (READY after reconciliation, STATUS with the mode, WATCHDOG, STOPPING), the units
//! through `systemd-analyze verify` and `security --offline=yes`, and `make install`.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_traderd");

/// The units as `make install` writes them, pointing at the test binary.
fn render_units(dir: &Path) {
    for unit in ["traderd.service", "traderd@.service"] {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("systemd")
                .join(unit),
        )
        .unwrap()
        .replace("/usr/local/bin/traderd", BIN);
        std::fs::write(dir.join(unit), &text).unwrap();
        if unit == "traderd@.service" {
            std::fs::write(dir.join("traderd@paper.service"), text).unwrap();
        }
    }
}

#[test]
fn the_units_verify_and_their_exposure_is_low() {
    let dir = tempfile::tempdir().unwrap();
    render_units(dir.path());
    for unit in ["traderd.service", "traderd@paper.service"] {
        let out = Command::new("systemd-analyze")
            .args(["verify", dir.path().join(unit).to_str().unwrap()])
            .output()
            .expect("systemd-analyze (apt-get install systemd; .ci/run does)");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "{unit}: {stderr}"
        );
        let out = Command::new("systemd-analyze")
            .args([
                "security",
                "--offline=yes",
                dir.path().join(unit).to_str().unwrap(),
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.contains("Overall exposure level"))
            .unwrap_or_else(|| panic!("no score for {unit}: {text}"));
        let score: f64 = line
            .split(':')
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("cannot read {line:?}"));
        eprintln!("{unit}: {}", line.trim());
        assert!(
            score <= 2.0,
            "{unit} exposure {score} (docs/operations.md records 1.4)"
        );
    }
}

#[test]
fn make_install_honours_destdir_and_prefix() {
    let dest = tempfile::tempdir().unwrap();
    let out = Command::new("make")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "-s",
            "install",
            &format!("DESTDIR={}", dest.path().display()),
            "PREFIX=/usr",
            &format!("INSTALL_BIN={BIN}"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = dest.path();
    for f in [
        "usr/bin/traderd",
        "usr/lib/systemd/system/traderd.service",
        "usr/lib/systemd/system/traderd@.service",
        "usr/share/doc/traderd/operations.md",
        "etc/traderd/traderd.toml",
    ] {
        assert!(d.join(f).is_file(), "{f} installed");
    }
    let unit = std::fs::read_to_string(d.join("usr/lib/systemd/system/traderd.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/traderd run"), "{unit}");
    assert!(
        !unit.contains("/usr/local/"),
        "PREFIX is honoured everywhere"
    );
    // The installed config is valid as it stands.
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(d.join("etc/traderd/traderd.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `traderd run` as systemd starts a `Type=notify` unit with `WatchdogSec`: notifications to
/// `sock`, a ping due every `watchdog_usec`, its log in `dir/daemon.log`.
fn notified_daemon(
    dir: &std::path::Path,
    state: &std::path::Path,
    sock: &std::path::Path,
    watchdog_usec: u64,
) -> Command {
    let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
    let mut c = Command::new(BIN);
    c.args(["run", "--state-dir"])
        .arg(state)
        .env("NOTIFY_SOCKET", sock)
        .env("WATCHDOG_USEC", watchdog_usec.to_string())
        .env_remove("WATCHDOG_PID")
        .env_remove("RUNTIME_DIRECTORY")
        .env_remove("XDG_RUNTIME_DIR")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log);
    c
}

#[test]
fn the_daemon_speaks_the_notify_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let child = notified_daemon(dir.path(), &dir.path().join("state"), &sock_path, 600_000)
        .spawn()
        .unwrap();
    let mut child = common::Killed(child);
    let mut messages: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = [0u8; 4096];
    // READY, then at least two watchdog pings.
    while Instant::now() < deadline
        && messages.iter().filter(|m| m.contains("WATCHDOG=1")).count() < 2
    {
        if let Ok(n) = sock.recv(&mut buf) {
            messages.push(String::from_utf8_lossy(&buf[..n]).to_string());
        }
    }
    let ready = messages
        .iter()
        .position(|m| m.contains("READY=1"))
        .unwrap_or_else(|| panic!("no READY=1 in {messages:?}"));
    assert!(
        messages[ready].contains("STATUS=mode active"),
        "{messages:?}"
    );
    let dog = messages
        .iter()
        .position(|m| m.contains("WATCHDOG=1"))
        .unwrap();
    assert!(dog > ready, "watchdog pings follow READY: {messages:?}");
    // READY came only after reconciliation.
    let log_text = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    let reconciled = log_text
        .find("reconciled with the broker")
        .expect("reconciled");
    let ready_log = log_text.find("INFO ready status=").expect("ready logged");
    assert!(reconciled < ready_log, "{log_text}");

    // SIGTERM: STOPPING, then a clean exit.
    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stopping = false;
    while Instant::now() < deadline && !stopping {
        if let Ok(n) = sock.recv(&mut buf) {
            stopping = String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1");
        }
    }
    assert!(stopping, "STOPPING=1 on SIGTERM");
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(30),
            "did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    // The last line reaches the log (written by a thread of its own, flushed at the exit).
    let log_text = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    let last = log_text.lines().last().unwrap_or_default();
    assert!(last.contains("INFO stopped in_time=true"), "{log_text}");
    eprintln!("notify messages: {:?}", &messages[..messages.len().min(4)]);
}

/// The watchdog proven: a wedged actor (the supervisor's mailbox held on purpose with `ctl
/// debug-wedge`, the thread running on) withholds `WATCHDOG=1` while it is wedged, so systemd
/// would restart the daemon; the pings come back once it answers again.
#[test]
fn a_wedged_actor_withholds_the_watchdog_ping() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let sock_path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let child = notified_daemon(dir.path(), &state, &sock_path, 1_000_000)
        .env("TRADERD_DEBUG_COMMANDS", "1")
        .spawn()
        .unwrap();
    let _child = common::Killed(child);
    let started = Instant::now();
    let mut pings: Vec<Instant> = Vec::new();
    let mut buf = [0u8; 4096];
    let mut receive = |pings: &mut Vec<Instant>, until: Instant| {
        while Instant::now() < until {
            if let Ok(n) = sock.recv(&mut buf)
                && String::from_utf8_lossy(&buf[..n]).contains("WATCHDOG=1")
            {
                pings.push(Instant::now());
            }
        }
    };
    // Pinging (every half second with WatchdogSec=1)...
    while pings.len() < 3 && started.elapsed() < Duration::from_secs(60) {
        receive(&mut pings, Instant::now() + Duration::from_millis(200));
    }
    assert!(pings.len() >= 3, "no watchdog pings");
    // ...then the supervisor is wedged for 3 s.
    let out = Command::new(BIN)
        .args(["ctl", "--state-dir"])
        .arg(&state)
        .args(["debug-wedge", "3"])
        .env_remove("RUNTIME_DIRECTORY")
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wedged = Instant::now();
    let before = pings.len();
    receive(&mut pings, wedged + Duration::from_secs(6));
    let after: Vec<Duration> = pings[before..].iter().map(|p| *p - wedged).collect();
    // A ping already on its way may land just after; none while the wedge holds.
    assert!(
        after
            .iter()
            .all(|d| *d < Duration::from_millis(700) || *d > Duration::from_millis(2_900)),
        "pings while wedged, at {after:?} after the wedge"
    );
    assert!(
        after.iter().any(|d| *d > Duration::from_millis(2_900)),
        "the pings came back: {after:?}"
    );
    let log_text = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    assert!(
        log_text.contains("withholding the watchdog ping") && log_text.contains("supervisor"),
        "{log_text}"
    );
}
