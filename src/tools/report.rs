//! `traderd report`: the backtest's report for a paper or live run, drawn from its journal —
//! the equity samples the AccountManager journals (once a minute of the broker's clock and
//! after each fill), the fills paired into round trips ([`RoundTrips`]), the journaled intents
//! as orders. Same files as a backtest: summary.json, equity.csv, trades.csv, orders.csv,
//! report.html.

use super::backtest::{BacktestReport, Fill, OrderRow, Recorded, write_outputs};
use crate::analytics::{RoundTrips, summarize};
use crate::domain::calendar;
use crate::journal::store::FILE_NAME;
use crate::journal::{FillRecord, Store, StoredIntent};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// The journal to read: `dir` itself when it holds one, else the newest `sim-*` journal in it
/// (where a run on the embedded simulator keeps its own).
pub fn journal_dir(dir: &Path) -> Result<PathBuf, String> {
    if dir.join(FILE_NAME).is_file() {
        return Ok(dir.to_path_buf());
    }
    let newest = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("sim-"))
                && p.join(FILE_NAME).is_file()
        })
        .max();
    newest.ok_or_else(|| {
        format!(
            "no journal ({FILE_NAME}) in {}: give the daemon's state directory ([state] dir, or TRADERD_STATE_DIR)",
            dir.display()
        )
    })
}

/// What closed a trade, from the closing order's request as journaled.
fn reason(intent: Option<&StoredIntent>) -> &'static str {
    let kind = intent
        .and_then(|i| i.intent.request.get("type"))
        .and_then(|t| t.as_str())
        .unwrap_or("");
    match kind {
        "limit" => "take profit",
        "stop" | "stop_limit" => "stop loss",
        "trailing_stop" => "trailing stop",
        _ => "exit",
    }
}

/// `purpose`: what the order's first fill did to the position (`entry`, `exit`), `leg` for a
/// bracket's take-profit or stop-loss (the broker named it), else empty (no fill).
fn order_row(i: &StoredIntent, fills: &[&FillRecord], purpose: &str) -> OrderRow {
    let field = |k: &str| {
        i.intent
            .request
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let qty: Decimal = fills.iter().map(|f| f.qty).sum();
    let avg = (!qty.is_zero())
        .then(|| (fills.iter().map(|f| f.qty * f.price).sum::<Decimal>() / qty).round_dp(4));
    OrderRow {
        created_at: i.intent.created_at,
        client_order_id: i.intent.client_order_id.clone(),
        symbol: i.intent.symbol.clone(),
        side: i.intent.side.as_str().to_string(),
        order_type: field("type"),
        qty: i.intent.qty,
        status: i
            .status
            .map(|s| format!("{s:?}"))
            .unwrap_or_else(|| "unknown".into()),
        filled_qty: i.filled_qty,
        filled_avg_price: avg,
        purpose: purpose.to_string(),
        signal: i.intent.correlation_id.to_string(),
    }
}

/// Reads the journal in `dir` (see [`journal_dir`]) from `start` to `end` and writes the
/// report's files to `out`. `Err` says what is missing.
pub fn run(
    dir: &Path,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    out: &Path,
) -> Result<BacktestReport, String> {
    let dir = journal_dir(dir)?;
    let store = Store::open(&dir).map_err(|e| e.to_string())?;
    let from = start.unwrap_or(DateTime::<Utc>::MIN_UTC);
    let until = end.unwrap_or(DateTime::<Utc>::MAX_UTC);
    let samples: Vec<_> = store
        .equity_samples(&from)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|s| s.at <= until)
        .collect();
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return Err(format!(
            "the journal in {} has no equity samples{}: the daemon journals one a minute while it runs",
            dir.display(),
            if start.is_some() || end.is_some() {
                " in that range"
            } else {
                ""
            }
        ));
    };
    let in_range = |at: &DateTime<Utc>| *at >= first.at && *at <= last.at;
    let mut fills = store.fills().map_err(|e| e.to_string())?;
    fills.retain(|f| in_range(&f.at));
    fills.sort_by(|a, b| (a.at, &a.execution_id).cmp(&(b.at, &b.execution_id)));
    let intents = store.intents(false).map_err(|e| e.to_string())?;
    let by_id: HashMap<&str, &StoredIntent> = intents
        .iter()
        .map(|i| (i.intent.client_order_id.as_str(), i))
        .collect();

    let mut rec = Recorded::default();
    let mut trips = RoundTrips::default();
    let mut held: HashMap<&str, Decimal> = HashMap::new();
    let mut purposes: HashMap<&str, &'static str> = HashMap::new();
    for f in &fills {
        let position = held.entry(f.symbol.as_str()).or_default();
        let signed = if f.side == crate::alpaca::model::OrderSide::Buy {
            f.qty
        } else {
            -f.qty
        };
        let grows = position.is_zero() || (*position > Decimal::ZERO) == (signed > Decimal::ZERO);
        *position += signed;
        purposes
            .entry(f.client_order_id.as_str())
            .or_insert(if grows { "entry" } else { "exit" });
        let why = reason(by_id.get(f.client_order_id.as_str()).copied());
        if let Some(trip) = trips.book(&f.symbol, f.side, f.qty, f.price, Decimal::ZERO, f.at, why)
        {
            rec.trades.push(trip);
        }
        rec.traded += f.qty * f.price;
        rec.fills.push(Fill {
            at: f.at,
            client_order_id: f.client_order_id.clone(),
            symbol: f.symbol.clone(),
            side: f.side,
            qty: f.qty,
            price: f.price,
            fee: Decimal::ZERO,
        });
    }
    // Equity at each day's last sample, after the starting point (the first sample, dated the
    // session before), as the backtest keeps it.
    let first_day = calendar::to_et(first.at).date_naive();
    rec.days
        .push((calendar::Session::on(first_day).prev().date, first.equity));
    let mut days: BTreeMap<chrono::NaiveDate, Decimal> = BTreeMap::new();
    for s in &samples {
        days.insert(calendar::to_et(s.at).date_naive(), s.equity);
        rec.equity.push((s.at, s.equity, s.cash, s.gross_exposure));
    }
    rec.days.extend(days);
    rec.bars = samples.len() as u64;
    rec.bars_exposed = samples
        .iter()
        .filter(|s| !s.gross_exposure.is_zero())
        .count() as u64;
    let exposure = rec.bars_exposed as f64 / rec.bars.max(1) as f64;
    let summary = summarize(&rec.days, &rec.trades, exposure, rec.traded, Decimal::ZERO)
        .ok_or_else(|| "no equity samples".to_string())?;

    let mut fills_of: HashMap<&str, Vec<&FillRecord>> = HashMap::new();
    for f in &fills {
        fills_of
            .entry(f.client_order_id.as_str())
            .or_default()
            .push(f);
    }
    let orders: Vec<OrderRow> = intents
        .iter()
        // An order is in the range when one of its fills is, or it was made in it (the
        // journal dates intents by this machine's clock, fills and samples by the broker's).
        .filter(|i| {
            (start.is_none() && end.is_none())
                || fills_of.contains_key(i.intent.client_order_id.as_str())
                || in_range(&i.intent.created_at)
        })
        .map(|i| {
            let id = i.intent.client_order_id.as_str();
            let purpose = if crate::orders::ClientOrderIds::run_of(id).is_none() {
                "leg"
            } else {
                purposes.get(id).copied().unwrap_or("")
            };
            order_row(
                i,
                fills_of.get(id).map(Vec::as_slice).unwrap_or(&[]),
                purpose,
            )
        })
        .collect();
    let symbols: BTreeSet<String> = fills
        .iter()
        .map(|f| f.symbol.clone())
        .chain(orders.iter().map(|o| o.symbol.clone()))
        .collect();
    let report = BacktestReport {
        summary,
        symbols: symbols.into_iter().collect(),
        minute_bars: 0,
        signals: 0,
        orders: orders.len() as u64,
        refusals: BTreeMap::new(),
        strategy: String::new(),
        source: dir.display().to_string(),
    };
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    write_outputs(out, &report, &rec, &orders).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(report)
}
