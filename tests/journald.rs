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

#[actix_rt::test]
async fn under_systemd_entries_go_to_journald_with_structured_fields() {
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
                return;
            }
        }
    }
    if std::fs::create_dir_all("/run/systemd/journal").is_err() {
        eprintln!("cannot create /run/systemd/journal (not root): skipped");
        return;
    }
    let socket = UnixDatagram::bind(JOURNAL).unwrap();
    socket.set_nonblocking(true).unwrap();
    let socket = tokio::net::UnixDatagram::from_std(socket).unwrap();
    let sim = common::paper_sim().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("paper.toml");
    std::fs::write(
        &config,
        "[connection]\nmode = \"paper\"\n[strategy]\nsizing_usd = \"2000\"\n[strategy.momentum]\nrsi_entry_min = 0.0\nrsi_entry_max = 100.0\nrsi_exit = 100.0\n",
    )
    .unwrap();
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
    let _ = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(40);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not exit on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
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
