//! `traderd bench-backtest`: the backtest's speed and memory over a year of minute bars of many
//! symbols, one JSON line (docs/performance.md).
//!
//! 1. The store (`--data-dir`, default `target/bench-backtest`) is filled, if it is not yet,
//!    by the simulator's own model (`sim::market::minute_history`, the bars `traderd sim`
//!    serves) for `--symbols` symbols over `--sessions` sessions before a fixed day, in a
//!    child process so that its memory does not count.
//! 2. One backtest of the default momentum config (risk and bracket protection on) over every
//!    symbol, on one thread, streamed from the store a day at a time: `bars`, `seconds`,
//!    `bars_per_s`, `peak_rss_mb` (VmHWM of this process, which did nothing before).
//! 3. A sweep of `--combinations` values of `strategy.momentum.rsi_period`, each its own
//!    stream, on one thread (`sweep_seconds_one_core`) and on every core (`sweep_seconds`),
//!    each the best of two runs taken in turn: `sweep_speedup` is the ratio.

use super::backtest::{BacktestOptions, replay_stored};
use crate::alpaca::model::TimeFrame;
use crate::config::Config;
use crate::domain::calendar::{self, Session, Timeline};
use crate::history::HistoryStore;
use chrono::NaiveDate;
use rayon::prelude::*;
use rust_decimal::Decimal;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone, clap::Args)]
pub struct BenchBacktestArgs {
    /// Symbols in the generated store (SYM000, SYM001, …).
    #[arg(long, default_value_t = 100)]
    pub symbols: usize,
    /// Sessions of minute bars (252: a year).
    #[arg(long, default_value_t = 252)]
    pub sessions: i64,
    /// Parameter combinations of the sweep (rsi_period 10, 11, …).
    #[arg(long, default_value_t = 2)]
    pub combinations: usize,
    /// Where the generated store lives (kept between runs).
    #[arg(long, default_value = "target/bench-backtest")]
    pub data_dir: PathBuf,
    /// Only fill the store, print nothing else (the bench runs this in a child process).
    #[arg(long, hide = true)]
    pub generate_only: bool,
}

/// The seed and the day the generated year ends before.
const SEED: u64 = 1;
fn anchor() -> Session {
    Session::on(NaiveDate::from_ymd_opt(2026, 11, 30).unwrap_or_default())
}

fn symbols(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("SYM{i:03}")).collect()
}

/// Fills the store with what is missing; returns the number of bars written.
fn generate(args: &BenchBacktestArgs) -> Result<u64, String> {
    let mut store = HistoryStore::open(&args.data_dir).map_err(|e| e.to_string())?;
    let tf = TimeFrame::MINUTE.to_string();
    let timeline = Timeline::new(anchor());
    let mut written = 0;
    for (i, symbol) in symbols(args.symbols).iter().enumerate() {
        // A series is claimed once its bars are written: claimed, stored.
        if store
            .adjustment(symbol, &tf)
            .map_err(|e| e.to_string())?
            .is_some()
        {
            continue;
        }
        let bars = crate::sim::market::minute_history(SEED, symbol, &timeline, args.sessions);
        written += store
            .write(symbol, &tf, &bars, None)
            .map_err(|e| e.to_string())? as u64;
        store.claim(symbol, &tf, "raw").map_err(|e| e.to_string())?;
        eprintln!(
            "bench-backtest: generated {symbol} ({} of {}): {} minute bars",
            i + 1,
            args.symbols,
            bars.len()
        );
    }
    Ok(written)
}

fn config(symbols: &[String], rsi_period: Option<usize>) -> Config {
    let mut c = Config::default();
    c.trading.symbols = symbols.to_vec();
    if let Some(p) = rsi_period {
        c.strategy.momentum.rsi_period = p;
    }
    c
}

fn options(args: &BenchBacktestArgs, out: &Path) -> BacktestOptions {
    let timeline = Timeline::new(anchor());
    let first = timeline.session(-args.sessions);
    let last = timeline.session(-1);
    BacktestOptions {
        start: calendar::et_midnight(first.date),
        end: last.close,
        out: out.to_path_buf(),
        cash: Decimal::from(100_000),
        slippage_bps: Decimal::ZERO,
        fee_bps: Decimal::ZERO,
        warmup_bars: 0,
    }
}

pub fn run(args: BenchBacktestArgs) -> Result<serde_json::Value, String> {
    if args.generate_only {
        let n = generate(&args)?;
        return Ok(serde_json::json!({ "generated_bars": n }));
    }
    // Fill the store in a child, so this process's peak memory is the backtest's alone.
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let status = std::process::Command::new(exe)
        .args(["bench-backtest", "--generate-only", "--symbols"])
        .arg(args.symbols.to_string())
        .arg("--sessions")
        .arg(args.sessions.to_string())
        .arg("--data-dir")
        .arg(&args.data_dir)
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("cannot fill the store: {e}"))?;
    if !status.success() {
        return Err(format!("filling the store failed ({status})"));
    }
    let symbols = symbols(args.symbols);
    let store = HistoryStore::open(&args.data_dir).map_err(|e| e.to_string())?;
    let out = args.data_dir.join("out");
    let opts = options(&args, &out);
    let started = Instant::now();
    let (report, _) = replay_stored(&config(&symbols, None), &store, &opts)?;
    let seconds = started.elapsed().as_secs_f64();
    let peak_rss_mb = super::bench_load::proc_status_mb("self", "VmHWM").unwrap_or(0.0);
    let bars = report.minute_bars;
    let combos: Vec<usize> = (0..args.combinations).map(|i| 10 + i).collect();
    let sweep = |threads: usize| -> Result<f64, String> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        let results: Vec<Result<f64, String>> = pool.install(|| {
            combos
                .par_iter()
                .map(|p| {
                    let store = HistoryStore::open(&args.data_dir).map_err(|e| e.to_string())?;
                    let (r, _) = replay_stored(&config(&symbols, Some(*p)), &store, &opts)?;
                    Ok(r.summary.sharpe)
                })
                .collect()
        });
        for r in results {
            r?;
        }
        Ok(started.elapsed().as_secs_f64())
    };
    // The same grid on one thread, then on every core: the speed-up of the sweep itself.
    // Each the best of two, in turn: on a shared machine one timing of either alone moves
    // by a sixth from run to run, and their ratio by twice that.
    let threads = rayon::current_num_threads();
    let (mut one_core, mut sweep_seconds) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..2 {
        one_core = one_core.min(sweep(1)?);
        sweep_seconds = sweep_seconds.min(sweep(threads)?);
    }
    Ok(serde_json::json!({
        "bench": "backtest",
        "symbols": args.symbols,
        "sessions": args.sessions,
        "bars": bars,
        "seconds": round(seconds, 3),
        "bars_per_s": (bars as f64 / seconds).round(),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "trades": report.summary.trades,
        "orders": report.orders,
        "sweep_combinations": combos.len(),
        "sweep_threads": threads,
        "sweep_seconds_one_core": round(one_core, 3),
        "sweep_seconds": round(sweep_seconds, 3),
        "sweep_speedup": round(one_core / sweep_seconds, 2),
        "sweep_peak_rss_mb": round(super::bench_load::proc_status_mb("self", "VmHWM").unwrap_or(0.0), 1),
    }))
}

fn round(v: f64, dp: i32) -> f64 {
    let k = 10f64.powi(dp);
    (v * k).round() / k
}
