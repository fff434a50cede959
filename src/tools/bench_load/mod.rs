//! `traderd bench-load` (`make bench-load`): the whole daemon, as its own process, against the
//! simulator's flood, also its own process, over loopback. One JSON line per run on stdout;
//! progress on stderr. See docs/performance.md.
//!
//! A run (one symbol count and codec):
//! 1. starts `traderd sim` listing the symbols, and `traderd run` in paper mode against it,
//!    subscribed to trades, quotes and bars of every symbol, with the `probe` strategy;
//! 2. **ingest**: the flood flat out (`max`) for `--ingest-seconds`; the rate is what the
//!    daemon took in (decoded by the StreamClient and applied by the MarketDataFeed, or
//!    conflated: a newer quote of the same symbol replaced it), with the daemon's CPU time;
//! 3. **latency**: the flood at `--latency-rate` messages a second with a marked trade every
//!    `--mark-every-ms`, for `--latency-seconds`; the probe orders on each, and the daemon
//!    measures from the arrival of the frame to the order request going to the HTTP client;
//!    then, the flood going on without marks, this process times the machine's floor
//!    ([`floor`]: ~30 µs of fixed work woken every 2 ms, none of the daemon's code in it);
//! 4. drops: what the simulator sent of each kind minus what the feed applied;
//! 5. the decode baseline: the same frames decoded in a tight loop in this process, half of
//!    `--decode-seconds` just before the ingest and half just after (their mean);
//! 6. peak resident memory (VmHWM) of the daemon, then a clean shutdown.

mod floor;
mod peer;

use crate::alpaca::stream::{Codec, decode_data_frame};
use crate::sim::AdminClient;
use crate::sim::flood::{Channels, Flood, FloodSpec};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "BENCHKEY";
/// Seed of the simulator's market and of the flood's prices.
const SEED: u64 = 7;
const SECRET: &str = "BENCHSECRET";
/// The machine's floor ([`floor`]): work about as long as tick → intent's median on the
/// machine of docs/performance.md (31–44 µs at `warn`), every 2 ms for 5 s (~2,400 samples).
const FLOOR_WORK_US: f64 = 30.0;
const FLOOR_EVERY_MS: u64 = 2;
const FLOOR_SECONDS: u64 = 5;

/// One run's settings.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub symbols: usize,
    pub codec: Codec,
    pub batch: u32,
    pub ingest_seconds: f64,
    pub latency_seconds: f64,
    pub latency_rate: u32,
    pub mark_every_ms: u32,
    /// The journal's `state.sync`: `full` (the default) or `normal`.
    pub journal_sync: String,
    pub decode_seconds: f64,
    pub work_dir: PathBuf,
    /// The daemon on the first core with a busy loop, the simulator on the second.
    pub starve: bool,
    /// alpaca-py's StockDataStream read the same flood after the daemon (msgpack runs):
    /// this Python, with alpaca-py installed.
    pub peer_python: Option<PathBuf>,
}

/// A command, pinned to `cpu` with `taskset` when `pin` (the bench's `--starve`), run
/// through `wrap` when given (words split on spaces: a profiler, e.g. `perf record -g -o
/// daemon.perf` or `heaptrack -o daemon`).
fn pinned(exe: &Path, cpu: u32, pin: bool, wrap: Option<&str>) -> Command {
    let mut words: Vec<String> = Vec::new();
    if pin {
        words.extend(["taskset".into(), "-c".into(), cpu.to_string()]);
    }
    if let Some(wrap) = wrap {
        words.extend(wrap.split_whitespace().map(str::to_string));
    }
    match words.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(exe);
            c
        }
        None => Command::new(exe),
    }
}

/// The busy loop a starved daemon shares its core with.
fn hog() -> Result<Proc, String> {
    Command::new("taskset")
        .args(["-c", "0", "sh", "-c", "while :; do :; done"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Proc)
        .map_err(|e| format!("cannot start the busy loop (is taskset installed?): {e}"))
}

fn codec_name(c: Codec) -> &'static str {
    match c {
        Codec::Json => "json",
        Codec::Msgpack => "msgpack",
    }
}

/// A child process killed when dropped (a failed run leaves nothing behind).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn symbols(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("S{i:04}")).collect()
}

fn config(o: &RunOptions, socket: &Path) -> String {
    let list: Vec<String> = symbols(o.symbols)
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect();
    format!(
        r#"[connection]
mode = "paper"
[alpaca]
requests_per_minute = 10000
[trading]
symbols = [{list}]
[strategy]
name = "probe"
sizing = "fixed_notional"
sizing_usd = "500"
protection = "none"
[risk]
max_qty_per_symbol = "1000000"
max_notional_per_symbol_usd = "10000000"
max_gross_exposure_usd = "1000000000"
max_positions = 100000
max_open_orders = 10000
max_orders_per_minute = 100000
daily_loss_limit_usd = "10000000"
[stream]
codec = "{codec}"
subscribe_bars = true
[control]
socket = "{socket}"
[log]
level = "warn"
[state]
sync = "{sync}"
"#,
        sync = o.journal_sync,
        list = list.join(", "),
        codec = codec_name(o.codec),
        socket = socket.display(),
    )
}

fn progress(msg: &str) {
    eprintln!("bench-load: {msg}");
}

/// CPU seconds (user + system, all threads) of a process, from /proc (USER_HZ is 100 on Linux).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// A memory figure of a process (`"self"` or a pid) from `/proc/<proc>/status`, in MiB:
/// `VmHWM` (peak resident set), `VmRSS`, `RssAnon` (heap and other private memory).
pub fn proc_status_mb(proc: &str, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{proc}/status")).ok()?;
    let line = status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// A write latency's median, p99 and count, in µs (from the daemon's stats).
fn write_quantiles(s: &serde_json::Value) -> serde_json::Value {
    json!({ "p50": s["p50_us"], "p99": s["p99_us"], "count": s["count"] })
}

/// Peak resident set (VmHWM) of a process, in MiB.
fn peak_rss_mb(pid: u32) -> Option<f64> {
    proc_status_mb(&pid.to_string(), "VmHWM")
}

struct Run {
    opts: RunOptions,
    sim: AdminClient,
    socket: PathBuf,
    daemon_pid: u32,
}

impl Run {
    async fn ctl(&self, cmd: &str) -> Result<Value, String> {
        let r = crate::control::call(&self.socket, cmd, &[]).await?;
        match (r.ok, r.result) {
            (true, Some(v)) => Ok(v),
            _ => Err(format!("ctl {cmd} failed: {:?}", r.error)),
        }
    }

    async fn flood(&self, spec: &FloodSpec) -> Result<(), String> {
        let mut body = serde_json::to_value(spec).map_err(|e| e.to_string())?;
        body["kind"] = json!("flood");
        self.sim.post_fault(&body).await
    }

    /// Waits until `f` returns `Some`, polling every 100 ms, for at most `within`.
    async fn until<T, F, Fut>(&self, what: &str, within: Duration, mut f: F) -> Result<T, String>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = f().await {
                return Ok(v);
            }
            if Instant::now() > deadline {
                return Err(format!("timed out after {within:?} waiting for {what}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Messages the daemon has taken in: applied by the feed, or conflated in the stream client.
    async fn ingested(&self) -> Result<u64, String> {
        let s = self.ctl("stats").await?;
        let n = |v: &Value| v.as_u64().unwrap_or(0);
        Ok(n(&s["feed"]["trades"])
            + n(&s["feed"]["quotes"])
            + n(&s["feed"]["bars"])
            + n(&s["stream"]["quotes_conflated"]))
    }

    /// Waits until the daemon has taken in everything the simulator sent (the flood stopped).
    async fn drained(&self) -> Result<(), String> {
        let last = std::cell::Cell::new(0);
        self.until(
            "the daemon to drain the flood",
            Duration::from_secs(60),
            || async {
                let s = self.sim.get("/_sim/stats").await.ok()?;
                let n = |k: &str| s["streams"][k].as_u64().unwrap_or(0);
                let sent = n("data_trades") + n("data_quotes") + n("data_bars");
                let got = self.ingested().await.ok()?;
                // Everything arrived, or nothing more comes (what is missing was dropped).
                let done = got >= sent || (got == last.get() && got > 0);
                last.set(got);
                done.then_some(())
            },
        )
        .await
    }

    async fn ingest(&self) -> Result<(f64, f64), String> {
        self.flood(&FloodSpec {
            max: true,
            ..flood_spec(&self.opts)
        })
        .await?;
        // Let the connection generate its frames and the pipeline fill before measuring.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (m0, c0, t0) = (
            self.ingested().await?,
            cpu_seconds(self.daemon_pid).unwrap_or(0.0),
            Instant::now(),
        );
        tokio::time::sleep(Duration::from_secs_f64(self.opts.ingest_seconds)).await;
        let (m1, c1, t1) = (
            self.ingested().await?,
            cpu_seconds(self.daemon_pid).unwrap_or(0.0),
            Instant::now(),
        );
        self.flood(&FloodSpec::default()).await?;
        let messages = (m1 - m0) as f64;
        let rate = messages / (t1 - t0).as_secs_f64();
        let cpu_per_million = if messages > 0.0 {
            (c1 - c0) / messages * 1e6
        } else {
            0.0
        };
        self.drained().await?;
        Ok((rate, cpu_per_million))
    }

    /// The daemon's stats after the paced flood with marks; then the machine's floor, timed
    /// under the same flood without marks (timed beside them, its work would share the
    /// cores with the marks' and lengthen what it is the floor of).
    async fn latency(&self) -> Result<(Value, Value), String> {
        let paced = FloodSpec {
            msgs_per_s: self.opts.latency_rate,
            ..flood_spec(&self.opts)
        };
        self.flood(&FloodSpec {
            mark_every_ms: self.opts.mark_every_ms,
            ..paced.clone()
        })
        .await?;
        tokio::time::sleep(Duration::from_secs_f64(self.opts.latency_seconds)).await;
        self.flood(&paced).await?;
        let floor = floor::Floor::start(FLOOR_WORK_US, Duration::from_millis(FLOOR_EVERY_MS));
        tokio::time::sleep(Duration::from_secs(FLOOR_SECONDS)).await;
        let floor = floor.map_or(Value::Null, |f| {
            let f = f.finish();
            json!({ "work": FLOOR_WORK_US, "p50": f.p50_us, "p99": f.p99_us, "p999": f.p999_us, "samples": f.count })
        });
        self.flood(&FloodSpec::default()).await?;
        self.drained().await?;
        // Orders still on their way are measured when they leave.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let s = self.ctl("stats").await?;
        Ok((s, floor))
    }

    /// What the simulator sent and the feed never took in. The simulator's ordinary market
    /// goes on after the flood, so its streams are frozen while the counts are compared:
    /// read while it streams, the messages in flight for a millisecond counted as dropped,
    /// and those sent after the count hid earlier ones.
    async fn dropped(&self) -> Result<Value, String> {
        self.sim
            .post_fault(&json!({"kind": "freeze", "seconds": 3.0}))
            .await?;
        let n = |v: &Value| v.as_u64().unwrap_or(0) as i64;
        let last = std::cell::Cell::new(None);
        let s = self
            .until("the feed to settle", Duration::from_secs(10), || async {
                let s = self.ctl("stats").await.ok()?;
                let now = ["trades", "quotes", "bars"].map(|k| n(&s["feed"][k]));
                let settled = last.get() == Some(now);
                last.set(Some(now));
                settled.then_some(s)
            })
            .await?;
        let sent = self.sim.get("/_sim/stats").await?;
        let d = |sent_key: &str, got_key: &str| {
            (n(&sent["streams"][sent_key]) - n(&s["feed"][got_key])).max(0)
        };
        Ok(json!({
            "quotes": d("data_quotes", "quotes"),
            "trades": d("data_trades", "trades"),
            "bars": d("data_bars", "bars"),
        }))
    }
}

/// The flood of a run (the simulator's defaults, the run's batch), before its rate is set.
fn flood_spec(o: &RunOptions) -> FloodSpec {
    FloodSpec {
        batch: o.batch,
        seed: SEED,
        ..FloodSpec::default()
    }
}

/// Decodes the flood's own frames in a tight loop for about `seconds`: messages a second.
pub fn decode_baseline(o: &RunOptions, seconds: f64) -> f64 {
    let list = symbols(o.symbols);
    let spec = FloodSpec {
        max: true,
        ..flood_spec(o)
    };
    let ring_len = spec.frames as usize;
    let channels = Channels {
        trades: list.clone(),
        quotes: list.clone(),
        bars: list,
    };
    let Some(mut flood) = Flood::new(spec, o.codec, &channels) else {
        return 0.0;
    };
    let (frames, _) = flood.due(Instant::now(), chrono::Utc::now());
    let mut ring: Vec<Vec<u8>> = frames.into_iter().map(|f| f.bytes).collect();
    while ring.len() < ring_len {
        let (more, _) = flood.due(Instant::now(), chrono::Utc::now());
        ring.extend(more.into_iter().map(|f| f.bytes));
    }
    let (start, mut messages) = (Instant::now(), 0u64);
    while start.elapsed().as_secs_f64() < seconds {
        for f in &ring {
            if let Ok(m) = decode_data_frame(o.codec, f) {
                messages += m.len() as u64;
            }
        }
    }
    messages as f64 / start.elapsed().as_secs_f64()
}

fn start_sim(exe: &Path, o: &RunOptions) -> Result<(Proc, String), String> {
    let mut child = pinned(exe, 1, o.starve, None)
        .args(["sim", "--listen", "127.0.0.1:0", "--speed", "1"])
        .args(["--seed", &SEED.to_string()])
        .args([
            "--clock",
            "sim",
            "--rate-limit",
            "0",
            "--history-sessions",
            "1",
        ])
        .args(["--cash-usd", "100000000"])
        .arg("--symbols")
        .arg(symbols(o.symbols).join(","))
        .env("TRADERD_SIM_KEY", KEY)
        .env("TRADERD_SIM_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the simulator: {e}"))?;
    let stdout = child.stdout.take().ok_or("the simulator has no stdout")?;
    let sim = Proc(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| format!("reading the simulator's address: {e}"))?;
    let url = line
        .split_once("listening on ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .ok_or_else(|| format!("the simulator said {line:?}, not its address"))?
        .to_string();
    Ok((sim, url))
}

/// One run; its JSON line.
pub async fn run(o: RunOptions) -> Result<Value, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = o
        .work_dir
        .join(format!("{}-{}", o.symbols, codec_name(o.codec)));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let socket = dir.join("traderd.sock");
    let config_path = dir.join("traderd.toml");
    std::fs::write(&config_path, config(&o, &socket)).map_err(|e| e.to_string())?;

    progress(&format!(
        "{} symbols, {}: starting the simulator and the daemon",
        o.symbols,
        codec_name(o.codec)
    ));
    let (_sim, sim_url) = start_sim(&exe, &o)?;
    let log = std::fs::File::create(dir.join("daemon.log")).map_err(|e| e.to_string())?;
    let _hog = if o.starve { Some(hog()?) } else { None };
    // A profiler around the daemon (docs/performance.md): its pid is then the profiler's.
    let wrap = std::env::var("TRADERD_BENCH_DAEMON_WRAP")
        .ok()
        .filter(|w| !w.trim().is_empty());
    let daemon = Proc(
        pinned(&exe, 0, o.starve, wrap.as_deref())
            .args(["run", "--config"])
            .arg(&config_path)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .env("APCA_API_KEY_ID", KEY)
            .env("APCA_API_SECRET_KEY", SECRET)
            .env("APCA_API_BASE_URL", &sim_url)
            .env("APCA_API_DATA_URL", &sim_url)
            .env_remove("STATE_DIRECTORY")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start the daemon: {e}"))?,
    );
    let run = Run {
        daemon_pid: daemon.0.id(),
        opts: o.clone(),
        sim: AdminClient::new(&sim_url),
        socket,
    };
    let started = Instant::now();
    run.until(
        "the daemon to be ready",
        Duration::from_secs(120),
        || async {
            let status = run.ctl("status").await.ok()?;
            let stats = run.ctl("stats").await.ok()?;
            (status["stream"]["state"] == "streaming"
                && status["trade_stream"]["state"] == "streaming"
                && stats["feed"]["live"] == true)
                .then_some(())
        },
    )
    .await
    .map_err(|e| format!("{e} (see {})", dir.join("daemon.log").display()))?;
    // Start → ready: the process spawned to both streams up and the feed live (reconciled,
    // every symbol warmed up from REST).
    let ready_s = started.elapsed().as_secs_f64();
    progress(&format!(
        "daemon ready in {:.1} s (warm-up of {} symbols); ingest, flat out, {} s",
        ready_s, o.symbols, o.ingest_seconds
    ));
    // The decode baseline brackets the ingest, half just before it and half just after: the
    // pace of this machine drifts by a quarter between minutes, and measured once, twenty
    // seconds later, the baseline set the ratio as much as the ingest did.
    progress("decode baseline, before the ingest");
    let baseline_before = decode_baseline(&o, o.decode_seconds / 2.0);
    let (ingest, cpu_per_million) = run.ingest().await?;
    progress("decode baseline, after the ingest");
    let baseline_after = decode_baseline(&o, o.decode_seconds / 2.0);
    let baseline = (baseline_before + baseline_after) / 2.0;
    progress(&format!(
        "ingest {ingest:.0} msgs/s; latency at {} msgs/s, a mark every {} ms, {} s",
        o.latency_rate, o.mark_every_ms, o.latency_seconds
    ));
    let (stats, floor) = run.latency().await?;
    let latency = &stats["tick_to_order"];
    let before_journal = &stats["tick_to_intent"];
    let beyond_write = &stats["tick_to_order_beyond_write"];
    let journal_write = &stats["journal_write"];
    let intent_write = &stats["intent_write"];
    let dropped = run.dropped().await?;
    let rss = peak_rss_mb(run.daemon_pid).unwrap_or(0.0);
    let _ = run.ctl("shutdown").await;
    let mut daemon = daemon;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = daemon.0.try_wait() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The peer reads the same flood from the same simulator, the daemon gone.
    let peer_line = match (&o.peer_python, o.codec) {
        (Some(python), Codec::Msgpack) => {
            progress("the peer: alpaca-py's StockDataStream, the same flood flat out");
            Some(peer::peer(&run, python, &sim_url, &o).await?)
        }
        _ => None,
    };
    let round = |x: f64| (x * 100.0).round() / 100.0;
    Ok(json!({
        "symbols": o.symbols,
        "codec": codec_name(o.codec),
        "ingest_msgs_per_s": ingest.round(),
        "dropped": dropped,
        "tick_to_order_us": {
            "p50": latency["p50_us"],
            "p99": latency["p99_us"],
            "p999": latency["p999_us"],
            "max": latency["max_us"],
            "samples": latency["count"],
        },
        // Each order's tick → order less its own write-ahead: what the daemon adds to the
        // journal's flush, order by order (the p99 of a difference, not a difference of p99s).
        "tick_to_order_beyond_write_us": {
            "p50": beyond_write["p50_us"],
            "p99": beyond_write["p99_us"],
            "p999": beyond_write["p999_us"],
            "max": beyond_write["max_us"],
        },
        "tick_to_intent_us": {
            "p50": before_journal["p50_us"],
            "p99": before_journal["p99_us"],
            "p999": before_journal["p999_us"],
        },
        "machine_floor_us": floor,
        "journal_write_us": write_quantiles(journal_write),
        "intent_write_us": write_quantiles(intent_write),
        "peak_rss_mb": round(rss),
        "start_to_ready_s": round(ready_s),
        "cpu_s_per_million": round(cpu_per_million),
        "decode_baseline_msgs_per_s": baseline.round(),
        "decode_baseline_before_after": [baseline_before.round(), baseline_after.round()],
        "ingest_vs_decode": round(if baseline > 0.0 { ingest / baseline } else { 0.0 }),
        "batch": o.batch,
        "latency_feed_msgs_per_s": o.latency_rate,
        "journal_sync": o.journal_sync,
        "starved": o.starve,
        "peer": peer_line.as_ref().map(|p| json!({
            "name": "alpaca-py StockDataStream",
            "msgs_per_s": p["msgs_per_s"],
            "cpu_s_per_million": p["cpu_s_per_million"],
            "ours_vs_peer": p["msgs_per_s"].as_f64().filter(|r| *r > 0.0).map(|r| round(ingest / r)),
        })),
    }))
}
