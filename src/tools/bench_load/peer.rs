//! The load bench's peer: alpaca-py's `StockDataStream` (tests/sdk/peer_stream.py, run
//! from the conformance virtualenv) reading the same flood from the same simulator.

use super::{KEY, Proc, Run, RunOptions, SECRET, flood_spec};
use crate::sim::flood::FloodSpec;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The peer's script (tests/sdk/peer_stream.py).
const PEER_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/peer_stream.py");

/// alpaca-py's StockDataStream against the same simulator's flood, flat out: its JSON line.
pub(super) async fn peer(
    run: &Run,
    python: &Path,
    url: &str,
    o: &RunOptions,
) -> Result<Value, String> {
    let ws = url.replace("http://", "ws://");
    let mut child = Command::new(python)
        .arg(PEER_SCRIPT)
        .arg(format!("{ws}/v2/iex"))
        .args([KEY, SECRET])
        .arg(o.symbols.to_string())
        .arg(o.ingest_seconds.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start the peer with {} (make sdk-test makes that virtualenv): {e}",
                python.display()
            )
        })?;
    let stdout = child.stdout.take().ok_or("the peer has no stdout")?;
    let _child = Proc(child);
    // Its lines, read on a thread of their own.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(180), rx.recv())
            .await
            .map_err(|_| "the peer said nothing for 3 minutes".to_string())?
            .ok_or_else(|| "the peer ended without a result".to_string())
    };
    let ready = next().await?;
    if ready.trim() != "ready" {
        return Err(format!("the peer said {ready:?}, not ready"));
    }
    run.flood(&FloodSpec {
        max: true,
        ..flood_spec(o)
    })
    .await?;
    let result = next().await;
    run.flood(&FloodSpec::default()).await?;
    let line = result?;
    serde_json::from_str(&line).map_err(|e| format!("the peer's line {line:?}: {e}"))
}
