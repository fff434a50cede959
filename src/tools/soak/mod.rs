//! `traderd soak`: the whole daemon on the embedded simulator for a given time, in one of two
//! profiles (see docs/supervision.md):
//!
//! - `faults` (the default): random faults injected through the simulator's admin API, and the
//!   figures that say whether capital preservation held: faults injected, threshold crossings,
//!   time from crossing to flat (median and max), duplicate client order ids, fills lost, panics.
//! - `busy`: no fault at all, a busy strategy on every listed symbol under Alpaca's 200/min rate
//!   limit, and invariants checked continuously: no mode change (nothing really happened), the
//!   broker's positions and the daemon's agree whenever both are settled, no ERROR line, no
//!   duplicate client order id, no mismatch reported, memory flat after warm-up.
//!
//! The faults are drawn from a seeded generator: the same seed gives the same schedule (the
//! market and the daemon's timing still vary with the machine). After each preservation the
//! soak checks the simulator is flat and, a few seconds later, resumes like an operator would.

mod busy;
mod faults;

use busy::run_busy;
use faults::run_faults;

use crate::actors::health::GetHealth;
use crate::actors::order_manager::GetOrderStats;
use crate::actors::risk_manager::SetMode;
use crate::actors::supervisor::{GetSupervisorStatus, Operator, OperatorCommand};
use crate::config::{CheckContext, Config};
use crate::risk::TradingMode;
use crate::sim::AdminClient;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

static PANICS: AtomicU64 = AtomicU64::new(0);

/// The busy strategy: momentum entering on any RSI, 2,000 USD an entry. Shared by both soak
/// profiles and the tests that need a daemon trading often.
pub const BUSY_STRATEGY: &str = r#"
[strategy]
sizing_usd = "2000"
[strategy.momentum]
rsi_entry_min = 0.0
rsi_entry_max = 100.0
rsi_exit = 100.0
"#;

/// The fault soak's own settings (with [`BUSY_STRATEGY`]): tight thresholds, quick retries.
pub fn soak_config() -> String {
    format!("{SOAK_SETTINGS}{BUSY_STRATEGY}")
}

const SOAK_SETTINGS: &str = r#"
[sim]
listen = "127.0.0.1:0"
[alpaca]
max_retries = 2
retry_min_delay_ms = 50
retry_max_delay_ms = 500
[orders]
reconcile_interval_s = 5
[account]
refresh_interval_ms = 2000
[risk]
max_orders_per_minute = 1000
[stream]
stale_after_ms = 3000
[health]
window_s = 20
rest_errors_in_window = 12
stream_down_limit_s = 6
restart_budget = 4
ping_interval_ms = 2000
[preservation]
retry_min_ms = 250
retry_max_ms = 4000
verify_timeout_ms = 5000
"#;

/// A busy strategy on every symbol the simulator lists, under its Alpaca rate limit (200 a
/// minute), with nothing injected: ordinary trading.
pub fn busy_config() -> String {
    format!("{BUSY_SETTINGS}{BUSY_STRATEGY}")
}

const BUSY_SETTINGS: &str = r#"
[sim]
listen = "127.0.0.1:0"
rate_limit_per_minute = 200
[trading]
symbols = ["AAPL", "MSFT", "AMZN", "GOOGL", "NVDA", "META", "TSLA", "AMD", "SPY", "QQQ"]
[orders]
reconcile_interval_s = 5
[account]
refresh_interval_ms = 1000
[risk]
max_orders_per_minute = 1000
max_positions = 10
max_open_orders = 40
daily_loss_limit_usd = "50000"
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// Random faults; capital preservation must hold.
    #[default]
    Faults,
    /// No faults, a busy strategy under the rate limit; nothing may go wrong.
    Busy,
}

#[derive(Debug, Clone)]
pub struct SoakOptions {
    pub profile: Profile,
    pub duration: Duration,
    pub seed: u64,
    pub speed: f64,
    pub state_dir: PathBuf,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Percentiles {
    pub median: Option<u64>,
    pub max: Option<u64>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SoakReport {
    pub profile: Profile,
    pub seconds: u64,
    pub seed: u64,
    pub faults_injected: u64,
    pub faults: BTreeMap<&'static str, u64>,
    pub threshold_crossings: u64,
    pub preservations: usize,
    pub time_to_flat_ms: Percentiles,
    pub flatten_attempts: u64,
    /// Preserved while the simulator still showed a position or an open order (must be 0).
    pub preserved_but_not_flat: u64,
    pub orders_sent: u64,
    pub fills: usize,
    pub duplicate_client_order_ids: u64,
    /// Broker orders whose filled quantity the journal does not fully hold (must be 0).
    pub fills_lost: u64,
    /// Broker orders the journal holds more fills for than the broker made (must be 0).
    pub fills_booked_twice: u64,
    pub panics: u64,
    /// Live bars a strategy took of a symbol it had been given no history of (must be 0: the
    /// warm-up reaches every strategy, however the daemon's threads ran at its start).
    pub cold_bars: u64,
    /// Fills of the flatten procedure's closing orders that took a position away from flat
    /// or past it (must be 0: a close sent twice sells short what it meant to sell).
    pub flatten_overshoots: u64,
    /// The busy profile's invariants (absent from a fault soak's report).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub busy: Option<BusyFigures>,
}

/// What the busy profile checks continuously.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BusyFigures {
    pub reconciliations: u64,
    /// Mismatches the daemon reported (confirmed; must be 0).
    pub mismatches: u64,
    /// Mode changes, each with its cause (must be none: nothing happened).
    pub mode_changes: Vec<String>,
    /// Samples where broker and daemon were both settled and still disagreed, three in a row
    /// (must be 0).
    pub positions_disagreed: u64,
    /// Position comparisons made while both sides were settled.
    pub positions_compared: u64,
    pub error_lines: u64,
    pub first_errors: Vec<String>,
    /// The broker answered 429 (the client's budget should keep it from happening).
    pub rate_limited: u64,
    pub rss_after_warmup_mb: f64,
    pub rss_end_mb: f64,
    pub rss_peak_mb: f64,
    /// Anonymous memory (heap) after warm-up and at the end.
    pub anon_after_warmup_mb: f64,
    pub anon_end_mb: f64,
    /// The simulator's, in its own process (it keeps every order, as Alpaca does).
    pub sim_rss_mb: f64,
}

/// RSS may grow this much after warm-up.
pub const RSS_GROWTH_LIMIT_MB: f64 = 5.0;

impl SoakReport {
    /// True when every must-be-zero figure is zero.
    pub fn passed(&self) -> bool {
        let busy_ok = self.busy.as_ref().is_none_or(|b| {
            b.mismatches == 0
                && b.mode_changes.is_empty()
                && b.positions_disagreed == 0
                && b.error_lines == 0
                && b.rss_end_mb - b.rss_after_warmup_mb <= RSS_GROWTH_LIMIT_MB
        });
        busy_ok
            && self.preserved_but_not_flat == 0
            && self.duplicate_client_order_ids == 0
            && self.fills_lost == 0
            && self.fills_booked_twice == 0
            && self.panics == 0
            && self.cold_bars == 0
            && self.flatten_overshoots == 0
    }
}

/// This process's resident set, in MB (0 where /proc is not there).
pub fn rss_mb() -> f64 {
    crate::tools::bench_load::proc_status_mb("self", "VmRSS").unwrap_or(0.0)
}

/// This process's anonymous resident memory (heap and other private memory, not the pages
/// of the program's own file), in MB: what grows when memory leaks.
pub fn rss_anon_mb() -> f64 {
    crate::tools::bench_load::proc_status_mb("self", "RssAnon").unwrap_or(0.0)
}

/// The simulator's positions, signed, without zeros.
fn positions_of(state: &serde_json::Value) -> BTreeMap<String, Decimal> {
    state["positions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["symbol"].as_str()?.to_string(), dec(&p["qty"]))))
        .filter(|(_, q)| !q.is_zero())
        .collect()
}

/// One fault: its name, what to post, and what to post later to undo it (after how long).
type Draw = (
    &'static str,
    serde_json::Value,
    Option<(Duration, serde_json::Value)>,
);

fn draw(rng: &mut impl Rng) -> Draw {
    use serde_json::json;
    match rng.random_range(0..10u32) {
        0 => {
            let status = [500u16, 502, 503][rng.random_range(0..3usize)];
            let count = rng.random_range(5..40u32);
            (
                "http_error",
                json!({"kind": "http_error", "status": status, "count": count}),
                None,
            )
        }
        1 => (
            "rate_limit",
            json!({"kind": "rate_limit", "count": rng.random_range(3..20u32)}),
            None,
        ),
        2 => (
            "latency",
            json!({"kind": "latency", "ms": rng.random_range(100..800u64)}),
            Some((
                Duration::from_secs(rng.random_range(3..10u64)),
                json!({"kind": "latency", "ms": 0}),
            )),
        ),
        3 => ("drop_streams", json!({"kind": "drop_streams"}), None),
        4 => (
            "garbage",
            json!({"kind": "garbage", "count": rng.random_range(1..20u32)}),
            None,
        ),
        5 => (
            "freeze",
            json!({"kind": "freeze", "seconds": rng.random_range(2.0..15.0f64)}),
            None,
        ),
        6 => (
            "mute_trade_updates",
            json!({"kind": "mute_trade_updates", "seconds": rng.random_range(2.0..10.0f64)}),
            None,
        ),
        7 => (
            "drop_after_accept",
            json!({"kind": "drop_after_accept", "count": 1}),
            None,
        ),
        8 => (
            "delay_after_accept",
            json!({"kind": "delay_after_accept", "ms": rng.random_range(500..3000u64), "count": 1}),
            None,
        ),
        _ => (
            "reject_auth",
            json!({"kind": "reject_auth", "enabled": true}),
            Some((
                Duration::from_secs(rng.random_range(1..5u64)),
                json!({"kind": "reject_auth", "enabled": false}),
            )),
        ),
    }
}

fn dec(v: &serde_json::Value) -> Decimal {
    match v {
        serde_json::Value::String(s) => Decimal::from_str(s).unwrap_or_default(),
        other => Decimal::from_str(&other.to_string()).unwrap_or_default(),
    }
}

/// (positions not zero, orders not final) at the simulator.
async fn exposure(admin: &AdminClient) -> Result<(usize, usize), String> {
    Ok(exposure_of(&admin.get("/_sim/state").await?))
}

/// (positions not zero, orders not final) in a simulator's `GET /_sim/state`.
pub fn exposure_of(state: &serde_json::Value) -> (usize, usize) {
    let positions = state["positions"]
        .as_array()
        .map(|a| a.iter().filter(|p| !dec(&p["qty"]).is_zero()).count())
        .unwrap_or(0);
    let final_states: Vec<String> = crate::alpaca::model::OrderStatus::TERMINAL
        .iter()
        .map(|s| s.name())
        .collect();
    let open = state["orders"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|o| {
                    let status = o["status"].as_str().unwrap_or("");
                    !final_states.iter().any(|s| s == status)
                })
                .count()
        })
        .unwrap_or(0);
    (positions, open)
}

/// Runs the soak; prints progress to stderr. Must run inside an actix `System`.
pub async fn run(opts: SoakOptions) -> Result<SoakReport, String> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));
    match opts.profile {
        Profile::Faults => run_faults(opts).await,
        Profile::Busy => run_busy(opts).await,
    }
}

/// Each line on a line of its own, indented under its figure.
fn indented(lines: &[String]) -> String {
    lines.iter().map(|l| format!("\n    {l}")).collect()
}

/// The human-readable summary.
pub fn summary(r: &SoakReport) -> String {
    if let Some(b) = &r.busy {
        return format!(
            "soak summary (busy, {} s, seed {}):\n  orders sent / fills      {} / {}\n  reconciliations          {}\n  mismatches               {}\n  mode changes             {}{}\n  positions compared       {} (disagreed {})\n  ERROR lines              {}{}\n  broker 429s              {}\n  RSS after warm-up / end  {:.1} / {:.1} MB (peak {:.1}; limit +{RSS_GROWTH_LIMIT_MB} MB; heap and other anonymous {:.1} / {:.1} MB; the simulator, apart: {:.1} MB)\n  duplicate client ids     {}\n  fills lost / twice       {} / {}\n  live bars before history {}\n  panics                   {}\n  verdict                  {}",
            r.seconds,
            r.seed,
            r.orders_sent,
            r.fills,
            b.reconciliations,
            b.mismatches,
            b.mode_changes.len(),
            indented(&b.mode_changes),
            b.positions_compared,
            b.positions_disagreed,
            b.error_lines,
            indented(&b.first_errors),
            b.rate_limited,
            b.rss_after_warmup_mb,
            b.rss_end_mb,
            b.rss_peak_mb,
            b.anon_after_warmup_mb,
            b.anon_end_mb,
            b.sim_rss_mb,
            r.duplicate_client_order_ids,
            r.fills_lost,
            r.fills_booked_twice,
            r.cold_bars,
            r.panics,
            if r.passed() { "PASS" } else { "FAIL" }
        );
    }
    let ms = |v: Option<u64>| v.map(|v| format!("{v} ms")).unwrap_or_else(|| "-".into());
    let faults: Vec<String> = r.faults.iter().map(|(k, v)| format!("{k} {v}")).collect();
    format!(
        "soak summary ({} s, seed {}):\n  faults injected          {} ({})\n  threshold crossings      {}\n  preservations            {}\n  crossing to flat         median {}, max {}\n  flatten attempts         {}\n  preserved but not flat   {}\n  orders sent / fills      {} / {}\n  duplicate client ids     {}\n  fills lost               {}\n  fills booked twice       {}\n  flatten overshoots       {}\n  live bars before history {}\n  panics                   {}\n  verdict                  {}",
        r.seconds,
        r.seed,
        r.faults_injected,
        faults.join(", "),
        r.threshold_crossings,
        r.preservations,
        ms(r.time_to_flat_ms.median),
        ms(r.time_to_flat_ms.max),
        r.flatten_attempts,
        r.preserved_but_not_flat,
        r.orders_sent,
        r.fills,
        r.duplicate_client_order_ids,
        r.fills_lost,
        r.fills_booked_twice,
        r.flatten_overshoots,
        r.cold_bars,
        r.panics,
        if r.passed() { "PASS" } else { "FAIL" }
    )
}
