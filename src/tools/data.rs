//! `traderd data sync | import | ls`: the history store from the command line.

use crate::alpaca::model::TimeFrame;
use crate::alpaca::{AlpacaClient, Credentials, Secret};
use crate::broker::BrokerRef;
use crate::cli::{BacktestArgs, DataCommand, DataDirArg};
use crate::config::Config;
use crate::domain::calendar;
use crate::history::sync::{Progress, SyncRequest, sync};
use crate::history::{HistoryStore, SeriesInfo, expected_bars, import};
use anyhow::{Context, anyhow, bail};
use chrono::{DateTime, NaiveDate, Utc};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// The store's directory: `--data-dir`, `$TRADERD_DATA_DIR` (through clap), else
/// `$XDG_DATA_HOME/traderd`, else `~/.local/share/traderd`.
pub fn data_dir(arg: &DataDirArg, env: &impl Fn(&str) -> Option<String>) -> PathBuf {
    if let Some(d) = &arg.data_dir {
        return d.clone();
    }
    if let Some(x) = env("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("traderd");
    }
    match env("HOME").filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/traderd"),
        None => PathBuf::from("traderd-data"),
    }
}

pub fn run(cmd: DataCommand, env: &impl Fn(&str) -> Option<String>) -> anyhow::Result<ExitCode> {
    match cmd {
        DataCommand::Sync(args) => {
            let timeframe: TimeFrame = args
                .timeframe
                .parse()
                .map_err(|e| anyhow!("--timeframe {:?}: {e}", args.timeframe))?;
            let start = day_start(&args.start).context("--start")?;
            // Without `--end`, up to the broker's last closed bar (its clock, not this
            // machine's: a simulator's market runs ahead of it).
            let end = match &args.end {
                Some(e) => Some(day_end(e).context("--end")?),
                None => None,
            };
            let symbols: Vec<String> = args
                .symbols
                .iter()
                .map(|s| s.trim().to_ascii_uppercase())
                .filter(|s| !s.is_empty())
                .collect();
            let req = SyncRequest {
                symbols,
                timeframe,
                start,
                end,
                adjustment: args.adjustment.clone(),
                feed: args.feed.clone(),
            };
            let dir = data_dir(&args.dir, env);
            let mut store = HistoryStore::open(&dir)?;
            let broker = data_client(env)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let bar = progress_bar();
            let (mut done, mut total, mut bars) = (0usize, 0usize, 0usize);
            let report = runtime.block_on(sync(&broker, &mut store, &req, |p| match p {
                Progress::Planned { ranges, symbols } => {
                    total = ranges;
                    match &bar {
                        Some(b) => b.set_length(ranges as u64),
                        None => eprintln!("data sync: {symbols} symbols, {ranges} ranges to fetch"),
                    }
                }
                Progress::Page { bars: n, .. } => {
                    bars += n;
                    if let Some(b) = &bar {
                        b.set_message(format!("{bars} bars"));
                    }
                }
                Progress::RangeDone => {
                    done += 1;
                    match &bar {
                        Some(b) => b.set_position(done as u64),
                        None => eprintln!("data sync: {done}/{total} ranges, {bars} bars"),
                    }
                }
            }));
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            let report = report?;
            let end = report.end;
            let tf = timeframe.to_string();
            let mut empty = Vec::new();
            for symbol in &req.symbols {
                let written = report.written.get(symbol).copied().unwrap_or(0);
                let stored = store.bars(symbol, &tf, start, end)?.len();
                println!(
                    "{symbol} {tf}: {written} bars fetched, {stored} stored in the range{}",
                    if report.ranges.contains_key(symbol) {
                        ""
                    } else {
                        " (all of it was stored already)"
                    }
                );
                if stored == 0 {
                    empty.push(symbol.clone());
                }
            }
            println!(
                "{} requests; store {}",
                report.requests,
                store.path().display()
            );
            if !empty.is_empty() {
                eprintln!(
                    "the broker has no {tf} bars of {} from {} to {}; stored: {}",
                    empty.join(", "),
                    start.date_naive(),
                    end.date_naive(),
                    stored_summary(&store.series()?)
                );
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        DataCommand::Import(args) => {
            let timeframe: TimeFrame = args
                .timeframe
                .parse()
                .map_err(|e| anyhow!("--timeframe {:?}: {e}", args.timeframe))?;
            let file = std::fs::File::open(&args.csv)
                .with_context(|| format!("cannot open {}", args.csv.display()))?;
            let bars = import::read_csv(std::io::BufReader::new(file))
                .map_err(|e| anyhow!("{}: {e}; nothing was imported", args.csv.display()))?;
            let symbol = args.symbol.trim().to_ascii_uppercase();
            let tf = timeframe.to_string();
            let mut store = HistoryStore::open(&data_dir(&args.dir, env))?;
            store.claim(&symbol, &tf, "csv")?;
            let n = store.write(&symbol, &tf, &bars, None)?;
            let (first, last) = (bars[0].t, bars[bars.len() - 1].t);
            println!(
                "{symbol} {tf}: {n} bars imported, {} to {}; store {}",
                first.to_rfc3339(),
                last.to_rfc3339(),
                store.path().display()
            );
            Ok(ExitCode::SUCCESS)
        }
        DataCommand::Ls(args) => {
            let store = HistoryStore::open(&data_dir(&args.dir, env))?;
            let series = store.series()?;
            let gaps = |s: &SeriesInfo| -> Option<u64> {
                let tf: TimeFrame = s.timeframe.parse().ok()?;
                Some(expected_bars(tf, s.first?, s.last?)?.saturating_sub(s.count))
            };
            if args.json {
                let rows: Vec<serde_json::Value> = series
                    .iter()
                    .map(|s| {
                        let mut v = serde_json::to_value(s).unwrap_or_default();
                        v["gaps"] = serde_json::json!(gaps(s));
                        v
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
                return Ok(ExitCode::SUCCESS);
            }
            if series.is_empty() {
                println!(
                    "nothing stored in {}: fill it with `traderd data sync` or `traderd data import`",
                    store.path().display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<8} {:<7} {:<10} {:<25} {:<25} {:>9} {:>7}",
                "SYMBOL", "TF", "ADJUST", "FIRST", "LAST", "COUNT", "GAPS"
            );
            let time = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or("-".into());
            for s in &series {
                println!(
                    "{:<8} {:<7} {:<10} {:<25} {:<25} {:>9} {:>7}",
                    s.symbol,
                    s.timeframe,
                    s.adjustment,
                    time(s.first),
                    time(s.last),
                    s.count,
                    gaps(s).map(|g| g.to_string()).unwrap_or("-".into())
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `SYMBOL TF (count)` of every stored series, or "nothing".
pub fn stored_summary(series: &[SeriesInfo]) -> String {
    if series.is_empty() {
        return "nothing".into();
    }
    let held: Vec<String> = series
        .iter()
        .filter(|s| s.count > 0)
        .map(|s| format!("{} {} ({} bars)", s.symbol, s.timeframe, s.count))
        .collect();
    if held.is_empty() {
        return "nothing".into();
    }
    held.join(", ")
}

/// An RFC 3339 time as it is, or a day `YYYY-MM-DD`: the time itself, or else the day.
fn time_or_day(text: &str) -> anyhow::Result<Result<DateTime<Utc>, NaiveDate>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(Ok(t.with_timezone(&Utc)));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(Err)
        .map_err(|_| anyhow!("{text:?} is neither YYYY-MM-DD nor an RFC 3339 time"))
}

/// A day (from its New York midnight) or an RFC 3339 time.
fn day_start(text: &str) -> anyhow::Result<DateTime<Utc>> {
    Ok(time_or_day(text)?.unwrap_or_else(calendar::et_midnight))
}

/// A day (to the end of it, New York time) or an RFC 3339 time.
fn day_end(text: &str) -> anyhow::Result<DateTime<Utc>> {
    match time_or_day(text)? {
        Ok(t) => Ok(t),
        Err(d) => {
            let next = d
                .succ_opt()
                .ok_or_else(|| anyhow!("{text:?} is out of range"))?;
            Ok(calendar::et_midnight(next) - chrono::Duration::seconds(1))
        }
    }
}

/// The data API client: Alpaca with the keys of the environment (or systemd credentials), or
/// the simulator at `APCA_API_DATA_URL` on this machine, which needs none.
fn data_client(env: &impl Fn(&str) -> Option<String>) -> anyhow::Result<BrokerRef> {
    let config = Config::default();
    let mut settings = config.client_settings(None, env);
    let loopback = ["://127.0.0.1", "://localhost", "://[::1]"]
        .iter()
        .any(|h| settings.data_url.contains(h));
    // The simulator serves both APIs on one port: its clock (the end of what is closed) too.
    if loopback && env("APCA_API_BASE_URL").filter(|v| !v.is_empty()).is_none() {
        settings.trading_url = settings.data_url.clone();
    }
    let credentials = match crate::config::load_credentials(env).map_err(|e| anyhow!(e))? {
        Some(c) => c,
        None if loopback => Credentials {
            key_id: "traderd-data".into(),
            secret: Secret::new("traderd-data".to_string()),
        },
        None => bail!(
            "data sync needs API keys: set APCA_API_KEY_ID and APCA_API_SECRET_KEY, or point APCA_API_DATA_URL at `traderd sim` (http://127.0.0.1:5454)"
        ),
    };
    crate::alpaca::rest::install_crypto_provider();
    let client = AlpacaClient::new(settings, &credentials)?;
    Ok(client.into())
}

/// A progress bar on a terminal; plain lines otherwise.
fn progress_bar() -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} ranges {msg}",
    ) {
        bar.set_style(style);
    }
    Some(bar)
}

/// `traderd backtest`.
pub fn backtest(
    args: BacktestArgs,
    env: &impl Fn(&str) -> Option<String>,
) -> anyhow::Result<ExitCode> {
    let ctx = crate::config::CheckContext {
        live_opt_in: false,
        have_keys: true,
    };
    let config = match &args.config {
        Some(path) => Config::load(path, &ctx).map_err(|e| anyhow!("{e}"))?,
        None => Config::default(),
    };
    // The config as a TOML table, for a sweep to set keys in.
    let base: toml::Table = match &args.config {
        Some(path) => std::fs::read_to_string(path)?.parse()?,
        None => toml::to_string(&config)?.parse()?,
    };
    let dec = |name: &str, text: &str| {
        text.parse::<rust_decimal::Decimal>()
            .map_err(|_| anyhow!("--{name} {text:?} is not a number"))
    };
    let opts = crate::tools::backtest::BacktestOptions {
        start: day_start(&args.start).context("--start")?,
        end: day_end(&args.end).context("--end")?,
        out: args.out.clone(),
        cash: dec("cash", &args.cash)?,
        slippage_bps: dec("slippage-bps", &args.slippage_bps)?,
        fee_bps: dec("fee-bps", &args.fee_bps)?,
        warmup_bars: args.warmup_bars,
    };
    let store = HistoryStore::open(&data_dir(&args.dir, env))?;
    let started = std::time::Instant::now();
    if !args.sweep.is_empty() {
        use crate::tools::backtest::{load, sweep};
        let axes: Vec<sweep::Axis> = args
            .sweep
            .iter()
            .map(|a| sweep::parse_axis(a))
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow!(e))?;
        let (minutes, first) = load(&config, &store, &opts).map_err(|e| anyhow!(e))?;
        if let Some(wf) = &args.walk_forward {
            let wf = sweep::parse_walk_forward(wf).map_err(|e| anyhow!(e))?;
            let windows = sweep::walk_forward(&base, &axes, &minutes, &opts, &args.rank, wf)
                .map_err(|e| anyhow!(e))?;
            std::fs::create_dir_all(&args.out)?;
            let path = args.out.join("walk_forward.csv");
            sweep::write_walk_forward_csv(&path, &axes, &windows)?;
            let mean = |f: &dyn Fn(&sweep::Window) -> f64| {
                windows.iter().map(f).sum::<f64>() / windows.len().max(1) as f64
            };
            println!(
                "{} windows; mean total return in sample {:.3} %, out of sample {:.3} %; mean Sharpe in sample {:.2}, out of sample {:.2}",
                windows.len(),
                mean(&|w| w.best.summary.total_return) * 100.0,
                mean(&|w| w.out_of_sample.total_return) * 100.0,
                mean(&|w| w.best.summary.sharpe),
                mean(&|w| w.out_of_sample.sharpe)
            );
            println!("wrote {}", path.display());
            return Ok(ExitCode::SUCCESS);
        }
        let shard = match &args.shard {
            Some(s) => sweep::parse_shard(s).map_err(|e| anyhow!(e))?,
            None => (0, 1),
        };
        let rows = sweep::run(&base, &axes, &minutes, &first, &opts, &args.rank, shard)
            .map_err(|e| anyhow!(e))?;
        std::fs::create_dir_all(&args.out)?;
        let path = args.out.join("sweep.csv");
        sweep::write_csv(&path, &axes, &rows)?;
        println!(
            "{} combinations on {} cores in {:.1} s; best by {}:",
            rows.len(),
            rayon::current_num_threads(),
            started.elapsed().as_secs_f64(),
            args.rank
        );
        for r in rows.iter().take(5) {
            let combo: Vec<String> = r.combo.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!(
                "  {}: sharpe {:.2}, total return {:.2} %, max drawdown {:.2} %, {} trades",
                combo.join(" "),
                r.summary.sharpe,
                r.summary.total_return * 100.0,
                r.summary.max_drawdown * 100.0,
                r.summary.trades
            );
        }
        println!("wrote {}", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    let report = crate::tools::backtest::run(&config, &store, &opts).map_err(|e| anyhow!(e))?;
    let s = &report.summary;
    println!(
        "{} on {} from {} to {}: {} minute bars, {} signals, {} orders, {} trades in {:.1} s",
        report.strategy,
        report.symbols.join(","),
        s.start,
        s.end,
        report.minute_bars,
        report.signals,
        report.orders,
        s.trades,
        started.elapsed().as_secs_f64()
    );
    print_figures(s, &args.out);
    Ok(ExitCode::SUCCESS)
}

/// `traderd report`: a run's report from its journal.
pub fn report(args: crate::cli::ReportArgs) -> anyhow::Result<ExitCode> {
    let start = args
        .start
        .as_deref()
        .map(day_start)
        .transpose()
        .context("--start")?;
    let end = args
        .end
        .as_deref()
        .map(day_end)
        .transpose()
        .context("--end")?;
    let report = crate::tools::report::run(&args.state_dir, start, end, &args.out)
        .map_err(|e| anyhow!(e))?;
    let s = &report.summary;
    println!(
        "the run in {} from {} to {}: {} orders, {} trades on {}",
        report.source,
        s.start,
        s.end,
        report.orders,
        s.trades,
        report.symbols.join(",")
    );
    print_figures(s, &args.out);
    Ok(ExitCode::SUCCESS)
}

/// The figures a backtest and a run's report print, and where the files went.
fn print_figures(s: &crate::analytics::Summary, out: &std::path::Path) {
    println!(
        "total return {:.2} %, CAGR {:.2} %, Sharpe {:.2}, Sortino {:.2}, max drawdown {:.2} % ({} days), win rate {:.1} %",
        s.total_return * 100.0,
        s.cagr * 100.0,
        s.sharpe,
        s.sortino,
        s.max_drawdown * 100.0,
        s.max_drawdown_days,
        s.win_rate * 100.0
    );
    println!(
        "wrote summary.json, equity.csv, trades.csv, orders.csv, report.html to {}",
        out.display()
    );
}
