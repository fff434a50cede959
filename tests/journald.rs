#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! journald logging, for real: the binary runs with its stderr named by `JOURNAL_STREAM` (as
//! systemd sets it), and its entries arrive at the journal's socket as the native protocol,
//! read here from a datagram socket bound where journald's would be. On a host where a real
//! journald owns that socket the entries cannot be intercepted: the test says so and stops.

mod common;

use common::SECRET;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const JOURNAL: &str = "/run/systemd/journal/socket";

/// One entry of the native journal protocol: `KEY=value` lines, or `KEY`, a little-endian
/// 64-bit length and the bytes, for values with newlines.
fn parse_entry(mut data: &[u8]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    while !data.is_empty() {
        let end = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
        let line = &data[..end];
        if let Some(eq) = line.iter().position(|b| *b == b'=') {
            out.insert(
                String::from_utf8_lossy(&line[..eq]).to_string(),
                String::from_utf8_lossy(&line[eq + 1..]).to_string(),
            );
            data = &data[(end + 1).min(data.len())..];
        } else {
            let key = String::from_utf8_lossy(line).to_string();
            let rest = &data[end + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            out.insert(key, String::from_utf8_lossy(&rest[8..8 + len]).to_string());
            data = &rest[(8 + len + 1).min(rest.len())..];
        }
    }
    out
}

/// The journal's socket, bound here (a socket left by an earlier run is taken over). `None`:
/// a real journald owns it, or this is not root.
fn take_journal_socket() -> Option<UnixDatagram> {
    if Path::new(JOURNAL).exists() {
        // A socket nobody reads (left by an earlier run) refuses a datagram: take it over.
        let probe = UnixDatagram::unbound().unwrap();
        match probe.send_to(b"", JOURNAL) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(JOURNAL).unwrap();
            }
            _ => {
                eprintln!(
                    "a journald owns {JOURNAL} on this host: its entries cannot be intercepted here"
                );
                return None;
            }
        }
    }
    if std::fs::create_dir_all("/run/systemd/journal").is_err() {
        eprintln!("cannot create /run/systemd/journal (not root): skipped");
        return None;
    }
    Some(UnixDatagram::bind(JOURNAL).unwrap())
}

/// A config that trades often, its control socket in `dir`.
fn busy_paper_config(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("paper.toml");
    std::fs::write(
        &config,
        format!(
            "[connection]\nmode = \"paper\"\n[control]\nsocket = \"{}\"\n[strategy]\nsizing_usd = \"2000\"\n[strategy.momentum]\nrsi_entry_min = 0.0\nrsi_entry_max = 100.0\nrsi_exit = 100.0\n",
            dir.join("ctl.sock").display()
        ),
    )
    .unwrap();
    config
}

/// SIGTERM, then the exit status (within 40 s).
async fn terminate(child: &mut common::Killed) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not exit on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One test, two runs of the daemon, one after the other: the journal's socket has one path.
#[actix_rt::test]
async fn journald_entries_are_structured_and_a_stalled_journald_stalls_nothing() {
    entries_go_to_journald_with_structured_fields().await;
    a_stalled_journald_stalls_no_trading_and_no_stop().await;
}

/// Under systemd, each event is one journal entry with its fields.
async fn entries_go_to_journald_with_structured_fields() {
    let Some(socket) = take_journal_socket() else {
        return;
    };
    socket.set_nonblocking(true).unwrap();
    let socket = tokio::net::UnixDatagram::from_std(socket).unwrap();
    let sim = common::paper_sim().await;
    let dir = tempfile::tempdir().unwrap();
    let config = busy_paper_config(dir.path());
    let stderr_path = dir.path().join("stderr.log");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let meta = stderr.metadata().unwrap();
    let url = sim.base_url();
    let child = common::paper_daemon(&url, &config, &dir.path().join("state"))
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stderr(stderr)
        .spawn()
        .unwrap();

    // Read every entry in the background (journald is always read: a full socket would block
    // the daemon's logging), until a fill shows up.
    let mut child = common::Killed(child);
    type Seen = (Vec<HashMap<String, String>>, Vec<u8>);
    let seen: std::sync::Arc<std::sync::Mutex<Seen>> = Default::default();
    let sink = seen.clone();
    let drain = actix_rt::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = socket.recv(&mut buf).await {
            let mut s = sink.lock().unwrap();
            s.1.extend_from_slice(&buf[..n]);
            s.0.push(parse_entry(&buf[..n]));
        }
    });
    let found = common::wait_for(
        "a fill entry in the journal",
        Duration::from_secs(60),
        || {
            let fill = seen
                .lock()
                .unwrap()
                .0
                .iter()
                .find(|e| e.get("MESSAGE").map(String::as_str) == Some("fill"))
                .cloned();
            async move { fill }
        },
    )
    .await;
    let fill = found;
    let status = terminate(&mut child).await;
    drain.abort();
    let _ = std::fs::remove_file(JOURNAL);
    sim.stop().await;
    let (entries, raw_all) = std::mem::take(&mut *seen.lock().unwrap());

    eprintln!("a journal entry: {fill:?}");
    // systemd-journal-logger maps info to 5 (notice), warn to 4, error to 3.
    assert_eq!(fill["PRIORITY"], "5", "info");
    assert_eq!(fill["SYSLOG_IDENTIFIER"], "traderd");
    assert_eq!(fill["TRADERD_ACTOR"], "order_manager");
    assert!(
        fill.contains_key("SYMBOL") && fill.contains_key("CLIENT_ORDER_ID"),
        "{fill:?}"
    );
    assert!(
        entries.iter().any(|e| e.get("MODE").is_some()),
        "the mode is a field where it is logged"
    );
    assert!(
        !String::from_utf8_lossy(&raw_all).contains(SECRET),
        "the secret never reaches the journal"
    );
    let stderr_text = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(
        !stderr_text.contains(" INFO "),
        "nothing goes to stderr when the journal is there: {stderr_text}"
    );
    assert!(status.success(), "{status:?}");
}

/// journald stalled (its socket bound and never read: the kernel queues a few entries, then a
/// writer would wait): the daemon logs through a thread of its own, so it trades all the same
/// and stops cleanly, its last lines given up after a bounded wait.
async fn a_stalled_journald_stalls_no_trading_and_no_stop() {
    let Some(socket) = take_journal_socket() else {
        return;
    };
    let sim = common::paper_sim().await;
    let dir = tempfile::tempdir().unwrap();
    let config = busy_paper_config(dir.path());
    let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
    let meta = stderr.metadata().unwrap();
    let child = common::paper_daemon(&sim.base_url(), &config, &dir.path().join("state"))
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut child = common::Killed(child);
    let sock = dir.path().join("ctl.sock");
    let stats = || {
        let out = Command::new(env!("CARGO_BIN_EXE_traderd"))
            .args(["ctl", "--socket"])
            .arg(&sock)
            .args(["--json", "stats"])
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).ok()
    };
    let stats = common::wait_for("three fills", Duration::from_secs(90), || {
        let s = stats().filter(|s| s["orders"]["fills"].as_u64().unwrap_or(0) >= 3);
        async move { s }
    })
    .await;
    eprintln!("with journald stalled: {}", stats["log"]);
    let written = stats["log"]["lines_written"].as_u64().unwrap();
    // The kernel's queue for the socket (net.unix.max_dgram_qlen, 10 here, 512 under systemd)
    // took what it could; the rest waits in the daemon's own queue, none dropped yet.
    assert!(written <= 600, "the journal was read? {}", stats["log"]);
    assert_eq!(stats["log"]["lines_dropped"], 0, "{}", stats["log"]);
    let status = terminate(&mut child).await;
    assert!(status.success(), "{status:?}");
    // What the socket holds is the daemon's first entries, as written.
    socket.set_nonblocking(true).unwrap();
    let mut buf = vec![0u8; 65536];
    let first = std::iter::from_fn(|| socket.recv(&mut buf).ok().map(|n| parse_entry(&buf[..n])))
        .find(|e| !e.is_empty())
        .unwrap();
    assert_eq!(
        first.get("MESSAGE").map(String::as_str),
        Some("traderd starting"),
        "{first:?}"
    );
    let _ = std::fs::remove_file(JOURNAL);
    sim.stop().await;
}
