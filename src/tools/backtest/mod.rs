//! `traderd backtest`: a config's strategy, sizing, protection and risk limits over the
//! stored minute bars ([`crate::history`]), through the same cores as `traderd run` (see
//! [`replay`]), with the simulator's matching engine as the fill model. Writes
//! `summary.json`, `equity.csv`, `trades.csv`, `orders.csv` and `report.html` to the output
//! directory.

mod replay;
mod report;
pub mod sweep;

use crate::alpaca::model::{Bar, Order, OrderSide, TimeFrame};
use crate::analytics::{RoundTrip, Summary, summarize};
use crate::config::Config;
use crate::domain::calendar;
use crate::history::{HistoryStore, SpanBars};
use crate::risk::Purpose;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct BacktestOptions {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub out: PathBuf,
    pub cash: Decimal,
    /// Half the spread each side of a bar's price: buys pay it, sells give it up.
    pub slippage_bps: Decimal,
    /// Fees on the notional of each fill (Alpaca's stocks are commission-free: 0).
    pub fee_bps: Decimal,
    /// Bars of the strategy's interval before `start` that prime its indicators, never acted
    /// on: the daemon's warm-up (its feed fetches this many at start).
    pub warmup_bars: usize,
}

/// One fill.
#[derive(Debug, Clone)]
pub struct Fill {
    pub at: DateTime<Utc>,
    pub client_order_id: String,
    pub symbol: String,
    pub side: OrderSide,
    pub qty: Decimal,
    pub price: Decimal,
    pub fee: Decimal,
}

/// What a replay recorded.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    /// (bar close, equity, cash, gross exposure) after every minute.
    pub equity: Vec<(DateTime<Utc>, Decimal, Decimal, Decimal)>,
    /// Equity at each day's last bar.
    pub days: Vec<(NaiveDate, Decimal)>,
    pub trades: Vec<RoundTrip>,
    pub fills: Vec<Fill>,
    pub orders: Vec<Order>,
    pub purposes: HashMap<String, Purpose>,
    /// What each order of ours answered: the bar (`SYMBOL-<bar start, epoch seconds>`) or the
    /// order a protective stop guards, as the daemon's correlation ids.
    pub correlations: HashMap<String, String>,
    pub refusals: BTreeMap<String, u64>,
    pub signals: u64,
    pub orders_sent: u64,
    /// Minutes replayed (the exposure is the fraction with a position).
    pub bars: u64,
    pub bars_exposed: u64,
    /// Minute bars replayed, every symbol's counted.
    pub symbol_bars: u64,
    pub fees: Decimal,
    pub traded: Decimal,
}

/// What `traderd backtest` prints and writes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BacktestReport {
    pub summary: Summary,
    pub symbols: Vec<String>,
    /// Minute bars replayed, every symbol's counted.
    pub minute_bars: u64,
    pub signals: u64,
    pub orders: u64,
    pub refusals: BTreeMap<String, u64>,
    pub strategy: String,
    /// `backtest`, or the journal a run's report was drawn from.
    pub source: String,
}

/// One row of orders.csv.
#[derive(Debug, Clone)]
pub struct OrderRow {
    pub created_at: DateTime<Utc>,
    pub client_order_id: String,
    pub symbol: String,
    pub side: String,
    pub order_type: String,
    pub qty: Decimal,
    pub status: String,
    pub filled_qty: Decimal,
    pub filled_avg_price: Option<Decimal>,
    /// entry, exit, protect, flatten, leg (a bracket's take-profit or stop-loss).
    pub purpose: String,
    /// The correlation id: for entries and exits the bar that made the signal,
    /// `SYMBOL-<bar start, epoch seconds>`, the same in a backtest and in the daemon's journal.
    pub signal: String,
}

/// The minute bars of every symbol, by bar start: what a replay reads.
pub type Minutes = BTreeMap<DateTime<Utc>, Vec<(String, Bar)>>;

/// Loads the config's symbols' minute bars in the range (and the warm-up before it), and each
/// symbol's first open. `Err` names the symbols without bars and what is stored instead.
/// Sweeps hold it all in memory to share it; a single run streams ([`run`]).
pub fn load(
    config: &Config,
    store: &HistoryStore,
    opts: &BacktestOptions,
) -> Result<(Minutes, BTreeMap<String, Decimal>), String> {
    let first_prices = first_prices(config, store, opts)?;
    let mut minutes = warm_up(config, store, opts)?;
    minutes.append(&mut load_range(config, store, opts.start, opts.end)?);
    Ok((minutes, first_prices))
}

/// Each symbol's first open in the range; `Err` names those with no bars and what is stored.
fn first_prices(
    config: &Config,
    store: &HistoryStore,
    opts: &BacktestOptions,
) -> Result<BTreeMap<String, Decimal>, String> {
    if opts.start >= opts.end {
        return Err("the range is empty: --start must be before --end".into());
    }
    if !config.strategies.is_empty() {
        return Err(
            "the backtest runs one strategy, from [strategy]: this config has [[strategies]]; backtest each with its own [strategy] section"
                .into(),
        );
    }
    let tf = TimeFrame::MINUTE.to_string();
    let mut first_prices = BTreeMap::new();
    let mut missing = Vec::new();
    for symbol in &config.trading.symbols {
        match store
            .first_bar(symbol, &tf, opts.start, opts.end)
            .map_err(|e| e.to_string())?
        {
            Some(b) => {
                first_prices.insert(symbol.clone(), b.o);
            }
            None => missing.push(symbol.clone()),
        }
    }
    if !missing.is_empty() {
        let stored = store.series().map_err(|e| e.to_string())?;
        return Err(format!(
            "no stored 1Min bars of {} from {} to {}; stored: {} (fill the store with `traderd data sync`)",
            missing.join(", "),
            opts.start.date_naive(),
            opts.end.date_naive(),
            super::data::stored_summary(&stored)
        ));
    }
    Ok(first_prices)
}

/// The minute bars of every symbol from `start` to `end` (both included), by bar start.
fn load_range(
    config: &Config,
    store: &HistoryStore,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Minutes, String> {
    let tf = TimeFrame::MINUTE.to_string();
    let mut minutes: Minutes = BTreeMap::new();
    for symbol in &config.trading.symbols {
        for b in store
            .bars(symbol, &tf, start, end)
            .map_err(|e| e.to_string())?
        {
            minutes.entry(b.t).or_default().push((symbol.clone(), b));
        }
    }
    Ok(minutes)
}

/// The warm-up: the last minutes before the start that make `warmup_bars` bars of the
/// strategy's interval (sessions are about 6.5 hours, five days a week).
fn warm_up(
    config: &Config,
    store: &HistoryStore,
    opts: &BacktestOptions,
) -> Result<Minutes, String> {
    let per_bar = config
        .strategy
        .build()
        .ok()
        .and_then(|s| s.interval().minutes())
        .unwrap_or(390);
    let warm_minutes = opts.warmup_bars * per_bar as usize;
    if warm_minutes == 0 {
        return Ok(Minutes::new());
    }
    let lookback =
        chrono::Duration::minutes(warm_minutes as i64 * 4 * 7 / 5) + chrono::Duration::days(3);
    let before = opts.start - chrono::Duration::seconds(1);
    let mut all = load_range(config, store, opts.start - lookback, before)?;
    // Keep each symbol's last `warm_minutes`.
    let mut left: HashMap<String, usize> = config
        .trading
        .symbols
        .iter()
        .map(|s| (s.clone(), warm_minutes))
        .collect();
    let mut keep: Minutes = BTreeMap::new();
    while let Some((t, mut bars)) = all.pop_last() {
        bars.retain(|(symbol, _)| match left.get_mut(symbol) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        });
        if !bars.is_empty() {
            keep.insert(t, bars);
        }
    }
    Ok(keep)
}

/// One replay over loaded bars: the report and everything recorded. No file is written.
pub fn replay_all(
    config: &Config,
    opts: &BacktestOptions,
    minutes: &Minutes,
    first_prices: &BTreeMap<String, Decimal>,
) -> Result<(BacktestReport, Recorded), String> {
    let mut replay = replay::Replay::new(opts, config, first_prices, opts.start)?;
    for (t, bars) in minutes {
        let bars: Vec<(u32, &Bar)> = bars
            .iter()
            .map(|(symbol, bar)| (replay.index(symbol), bar))
            .collect();
        if *t < opts.start {
            replay.warm(&bars);
        } else {
            replay.minute(*t, &bars);
        }
    }
    replay.finish();
    finish(config, replay.out)
}

/// The report of a finished replay.
fn finish(config: &Config, rec: Recorded) -> Result<(BacktestReport, Recorded), String> {
    let exposure = if rec.bars == 0 {
        0.0
    } else {
        rec.bars_exposed as f64 / rec.bars as f64
    };
    let summary = summarize(&rec.days, &rec.trades, exposure, rec.traded, rec.fees)
        .ok_or_else(|| "no bars in the range".to_string())?;
    let report = BacktestReport {
        summary,
        symbols: config.trading.symbols.clone(),
        minute_bars: rec.symbol_bars,
        signals: rec.signals,
        orders: rec.orders_sent,
        refusals: rec.refusals.clone(),
        strategy: config.strategy.name.clone(),
        source: "backtest".into(),
    };
    Ok((report, rec))
}

/// One replay streamed from the store a day at a time, so memory holds one day's bars
/// whatever the range (a year of 100 symbols is ~10 M bars). No file is written.
pub fn replay_stored(
    config: &Config,
    store: &HistoryStore,
    opts: &BacktestOptions,
) -> Result<(BacktestReport, Recorded), String> {
    let first_prices = first_prices(config, store, opts)?;
    let mut replay = replay::Replay::new(opts, config, &first_prices, opts.start)?;
    for bars in warm_up(config, store, opts)?.values() {
        let bars: Vec<(u32, &Bar)> = bars
            .iter()
            .map(|(symbol, bar)| (replay.index(symbol), bar))
            .collect();
        replay.warm(&bars);
    }
    let symbols: Vec<u32> = config
        .trading
        .symbols
        .iter()
        .map(|s| replay.index(s))
        .collect();
    let tf = TimeFrame::MINUTE.to_string();
    // Every symbol's bars of a day, a bar at a time (each decoded as its minute comes).
    let mut spans: Vec<SpanBars> = symbols.iter().map(|_| SpanBars::default()).collect();
    let mut day = calendar::to_et(opts.start).date_naive();
    let last = calendar::to_et(opts.end).date_naive();
    while day <= last {
        let next = day.succ_opt().ok_or("the range runs past the calendar")?;
        let from = calendar::et_midnight(day).max(opts.start);
        let to = (calendar::et_midnight(next) - chrono::Duration::seconds(1)).min(opts.end);
        if calendar::is_trading_day(day) {
            for (symbol, span) in config.trading.symbols.iter().zip(spans.iter_mut()) {
                store
                    .span(symbol, &tf, (from, to), span)
                    .map_err(|e| e.to_string())?;
            }
            merge_minutes(store, &symbols, &mut spans, |t, bars| {
                replay.minute(t, bars)
            })
            .map_err(|e| e.to_string())?;
        }
        day = next;
    }
    replay.finish();
    finish(config, replay.out)
}

/// Walks several symbols' bars (each in time order) a minute at a time: `each` gets every
/// symbol's bar that starts at that minute, with the symbol's index. Only the bar each
/// symbol is at is held.
fn merge_minutes(
    store: &HistoryStore,
    symbols: &[u32],
    spans: &mut [SpanBars],
    mut each: impl FnMut(DateTime<Utc>, &[(u32, &Bar)]),
) -> Result<(), crate::history::HistoryError> {
    let mut heads: Vec<Option<Bar>> = vec![None; spans.len()];
    for (span, head) in spans.iter_mut().zip(heads.iter_mut()) {
        span.next_into(store, head)?;
    }
    let mut due: Vec<usize> = Vec::with_capacity(spans.len());
    while let Some(t) = heads.iter().flatten().map(|b| b.t).min() {
        due.clear();
        let minute: Vec<(u32, &Bar)> = heads
            .iter()
            .zip(symbols)
            .enumerate()
            .filter_map(|(k, (head, i))| {
                let bar = head.as_ref().filter(|b| b.t == t)?;
                due.push(k);
                Some((*i, bar))
            })
            .collect();
        each(t, &minute);
        drop(minute);
        for &k in &due {
            if let (Some(head), Some(span)) = (heads.get_mut(k), spans.get_mut(k)) {
                span.next_into(store, head)?;
            }
        }
    }
    Ok(())
}

/// Runs the backtest and writes its files. `Err` says what is wrong (no bars: what is
/// stored instead).
pub fn run(
    config: &Config,
    store: &HistoryStore,
    opts: &BacktestOptions,
) -> Result<BacktestReport, String> {
    let (report, rec) = replay_stored(config, store, opts)?;
    std::fs::create_dir_all(&opts.out)
        .map_err(|e| format!("cannot create {}: {e}", opts.out.display()))?;
    write_outputs(&opts.out, &report, &rec, &order_rows(&rec))
        .map_err(|e| format!("{}: {e}", opts.out.display()))?;
    Ok(report)
}

/// Writes summary.json, equity.csv, trades.csv, orders.csv and report.html to `dir`: a
/// backtest's, or a run's drawn from its journal (`traderd report`).
pub fn write_outputs(
    dir: &Path,
    report: &BacktestReport,
    rec: &Recorded,
    orders: &[OrderRow],
) -> std::io::Result<()> {
    let json = serde_json::to_string_pretty(report).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("summary.json"), json + "\n")?;
    let mut w = std::io::BufWriter::new(std::fs::File::create(dir.join("equity.csv"))?);
    writeln!(w, "time,equity,cash,gross_exposure")?;
    for (t, e, c, g) in &rec.equity {
        writeln!(
            w,
            "{},{},{},{}",
            t.to_rfc3339(),
            e.round_dp(2),
            c.round_dp(2),
            g.round_dp(2)
        )?;
    }
    w.flush()?;
    let mut w = std::io::BufWriter::new(std::fs::File::create(dir.join("trades.csv"))?);
    writeln!(
        w,
        "symbol,side,qty,entry_time,entry_price,exit_time,exit_price,pnl,fees,reason"
    )?;
    for t in &rec.trades {
        writeln!(
            w,
            "{},{},{},{},{},{},{},{},{},{}",
            t.symbol,
            t.side,
            t.qty,
            t.entry_time.to_rfc3339(),
            t.entry_price,
            t.exit_time.to_rfc3339(),
            t.exit_price,
            t.pnl,
            t.fees,
            t.reason
        )?;
    }
    w.flush()?;
    let mut w = std::io::BufWriter::new(std::fs::File::create(dir.join("orders.csv"))?);
    writeln!(
        w,
        "created_at,client_order_id,symbol,side,type,qty,status,filled_qty,filled_avg_price,purpose,signal"
    )?;
    for o in orders {
        writeln!(
            w,
            "{},{},{},{},{},{},{},{},{},{},{}",
            o.created_at.to_rfc3339(),
            o.client_order_id,
            o.symbol,
            o.side,
            o.order_type,
            o.qty,
            o.status,
            o.filled_qty,
            o.filled_avg_price
                .map(|p| p.to_string())
                .unwrap_or_default(),
            o.purpose,
            o.signal
        )?;
    }
    w.flush()?;
    let page = report::html(report, rec).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("report.html"), page)
}

/// A backtest's orders as rows of orders.csv, oldest first.
fn order_rows(rec: &Recorded) -> Vec<OrderRow> {
    let mut orders: Vec<&Order> = rec.orders.iter().collect();
    orders.sort_by(|a, b| {
        (a.created_at, &a.client_order_id).cmp(&(b.created_at, &b.client_order_id))
    });
    orders
        .into_iter()
        .map(|o| OrderRow {
            created_at: o.created_at,
            client_order_id: o.client_order_id.clone(),
            symbol: o.symbol.clone(),
            side: o.side.as_str().to_string(),
            order_type: format!("{:?}", o.order_type),
            qty: o.qty.unwrap_or_default(),
            status: format!("{:?}", o.status),
            filled_qty: o.filled_qty,
            filled_avg_price: o.filled_avg_price,
            purpose: match rec.purposes.get(&o.client_order_id) {
                Some(Purpose::Entry { .. }) => "entry",
                Some(Purpose::Exit) => "exit",
                Some(Purpose::Protect { .. }) => "protect",
                Some(Purpose::Flatten) => "flatten",
                None => "leg",
            }
            .to_string(),
            signal: rec
                .correlations
                .get(&o.client_order_id)
                .cloned()
                .unwrap_or_default(),
        })
        .collect()
}
