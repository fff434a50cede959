//! `traderd backtest --sweep KEY=V1,V2 …`: the grid is the product of the axes; every
//! combination is a backtest of the config with those keys set, all on the same loaded bars,
//! run in parallel on every core (rayon). One row per combination in `sweep.csv`, ranked by a
//! chosen figure.

use super::{BacktestOptions, Minutes, replay_all};
use crate::analytics::Summary;
use crate::config::{CheckContext, Config};
use chrono::{DateTime, Utc};
use rayon::prelude::*;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::io::Write;

/// One axis: a dotted config key and the values it takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    pub key: String,
    pub values: Vec<String>,
}

/// The figures a sweep can rank by (higher is better for each, max_drawdown included: it is
/// negative).
pub const RANKABLE: [&str; 7] = [
    "sharpe",
    "sortino",
    "total_return",
    "cagr",
    "calmar",
    "max_drawdown",
    "profit_factor",
];

/// `strategy.momentum.rsi_period=10,14,20`.
pub fn parse_axis(text: &str) -> Result<Axis, String> {
    let (key, values) = text.split_once('=').ok_or_else(|| {
        format!("--sweep {text:?}: write KEY=V1,V2,… (e.g. strategy.momentum.rsi_period=10,14,20)")
    })?;
    let key = key.trim().to_string();
    if key.starts_with("trading.symbols") {
        return Err("--sweep over trading.symbols: run one backtest per symbol set instead".into());
    }
    let values: Vec<String> = values
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    if key.is_empty() || values.is_empty() {
        return Err(format!("--sweep {text:?}: a key and at least one value"));
    }
    Ok(Axis { key, values })
}

/// Every combination of the axes' values, the first axis slowest.
pub fn grid(axes: &[Axis]) -> Vec<Vec<(String, String)>> {
    let mut out: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for axis in axes {
        out = out
            .into_iter()
            .flat_map(|combo| {
                axis.values.iter().map(move |v| {
                    let mut c = combo.clone();
                    c.push((axis.key.clone(), v.clone()));
                    c
                })
            })
            .collect();
    }
    out
}

/// The config with the combination's keys set (each value read as a TOML literal: a number,
/// a boolean, else a string), checked as `check-config` would.
pub fn apply(base: &toml::Table, combo: &[(String, String)]) -> Result<Config, String> {
    let mut table = base.clone();
    for (key, value) in combo {
        let literal: toml::Value = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|t| t.get("v").cloned())
            .unwrap_or_else(|| toml::Value::String(value.clone()));
        let mut node = &mut table;
        let parts: Vec<&str> = key.split('.').collect();
        for part in &parts[..parts.len() - 1] {
            node = node
                .entry(part.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .ok_or_else(|| format!("--sweep {key}: {part} is not a section"))?;
        }
        node.insert(parts[parts.len() - 1].to_string(), literal);
    }
    let text = toml::to_string(&table).map_err(|e| e.to_string())?;
    let ctx = CheckContext {
        live_opt_in: false,
        have_keys: true,
    };
    Config::parse(&text, "the swept config", &ctx).map_err(|e| {
        let combo: Vec<String> = combo.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{}: {e}", combo.join(" "))
    })
}

/// Keys set to values: one combination of the grid.
pub type Combo = Vec<(String, String)>;

/// One row of `sweep.csv`.
#[derive(Debug, Clone)]
pub struct Row {
    /// The combination's place in the grid (first axis slowest), the same in every shard.
    pub index: usize,
    pub combo: Vec<(String, String)>,
    pub summary: Summary,
}

/// `--shard i/n`: this process runs the combinations whose grid index is `i` modulo `n`
/// (`i` from 0, as Kubernetes' `JOB_COMPLETION_INDEX`).
pub fn parse_shard(text: &str) -> Result<(usize, usize), String> {
    let bad = || format!("--shard {text:?}: write i/n with 0 <= i < n (e.g. 0/4)");
    let (i, n) = text.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

fn figure(s: &Summary, name: &str) -> f64 {
    match name {
        "sortino" => s.sortino,
        "total_return" => s.total_return,
        "cagr" => s.cagr,
        "calmar" => s.calmar,
        "max_drawdown" => s.max_drawdown,
        "profit_factor" => s.profit_factor,
        _ => s.sharpe,
    }
}

/// Runs every combination in parallel; rows ranked by `rank`, best first (ties in grid
/// order), so the same grid gives the same file.
pub fn run(
    base: &toml::Table,
    axes: &[Axis],
    minutes: &Minutes,
    first_prices: &BTreeMap<String, Decimal>,
    opts: &BacktestOptions,
    rank: &str,
    shard: (usize, usize),
) -> Result<Vec<Row>, String> {
    check_rank(rank)?;
    let combos = grid(axes);
    let configs: Vec<(usize, Combo, Config)> = combos
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % shard.1 == shard.0)
        .map(|(i, c)| apply(base, &c).map(|cfg| (i, c, cfg)))
        .collect::<Result<_, _>>()?;
    let mut rows: Vec<(usize, Row)> = configs
        .into_par_iter()
        .map(|(i, combo, config)| {
            replay_all(&config, opts, minutes, first_prices).map(|(report, _)| {
                (
                    i,
                    Row {
                        index: i,
                        combo,
                        summary: report.summary,
                    },
                )
            })
        })
        .collect::<Result<_, _>>()?;
    rows.sort_by(|(ia, a), (ib, b)| {
        figure(&b.summary, rank)
            .total_cmp(&figure(&a.summary, rank))
            .then(ia.cmp(ib))
    });
    Ok(rows.into_iter().map(|(_, r)| r).collect())
}

fn check_rank(rank: &str) -> Result<(), String> {
    if RANKABLE.contains(&rank) {
        Ok(())
    } else {
        Err(format!("--rank {rank:?}: one of {}", RANKABLE.join(", ")))
    }
}

pub fn write_csv(path: &std::path::Path, axes: &[Axis], rows: &[Row]) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    let keys: Vec<&str> = axes.iter().map(|a| a.key.as_str()).collect();
    writeln!(
        w,
        "rank,combination,{},total_return,cagr,annual_volatility,sharpe,sortino,max_drawdown,calmar,trades,win_rate,profit_factor,expectancy",
        keys.join(",")
    )?;
    for (i, r) in rows.iter().enumerate() {
        let values: Vec<&str> = r.combo.iter().map(|(_, v)| v.as_str()).collect();
        let s = &r.summary;
        writeln!(
            w,
            "{},{},{},{:.6},{:.6},{:.6},{:.4},{:.4},{:.6},{:.4},{},{:.4},{:.4},{}",
            i + 1,
            r.index,
            values.join(","),
            s.total_return,
            s.cagr,
            s.annual_volatility,
            s.sharpe,
            s.sortino,
            s.max_drawdown,
            s.calmar,
            s.trades,
            s.win_rate,
            s.profit_factor,
            s.expectancy
        )?;
    }
    w.flush()
}

/// `--walk-forward train=120d,test=30d`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WalkForward {
    pub train: chrono::Duration,
    pub test: chrono::Duration,
}

pub fn parse_walk_forward(text: &str) -> Result<WalkForward, String> {
    let bad = || {
        format!(
            "--walk-forward {text:?}: write train=<days>d,test=<days>d (e.g. train=120d,test=30d)"
        )
    };
    let mut train = None;
    let mut test = None;
    for part in text.split(',') {
        let (k, v) = part.split_once('=').ok_or_else(bad)?;
        let days: i64 = v
            .trim()
            .strip_suffix('d')
            .ok_or_else(bad)?
            .parse()
            .map_err(|_| bad())?;
        if days <= 0 {
            return Err(bad());
        }
        match k.trim() {
            "train" => train = Some(chrono::Duration::days(days)),
            "test" => test = Some(chrono::Duration::days(days)),
            _ => return Err(bad()),
        }
    }
    Ok(WalkForward {
        train: train.ok_or_else(bad)?,
        test: test.ok_or_else(bad)?,
    })
}

/// One window of a walk-forward: the combination that ranked best on the training span, and
/// how it did there (in sample) and on the test span after it (out of sample).
#[derive(Debug, Clone)]
pub struct Window {
    pub train: (DateTime<Utc>, DateTime<Utc>),
    pub test: (DateTime<Utc>, DateTime<Utc>),
    pub best: Row,
    pub out_of_sample: Summary,
}

fn slice(
    minutes: &Minutes,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> (Minutes, BTreeMap<String, Decimal>) {
    let part: Minutes = minutes
        .range(from..to)
        .map(|(t, bars)| (*t, bars.clone()))
        .collect();
    let mut first = BTreeMap::new();
    for bars in part.values() {
        for (symbol, bar) in bars {
            first.entry(symbol.clone()).or_insert(bar.o);
        }
    }
    (part, first)
}

/// Rolls a training span and the test span after it through the bars, a test span at a time:
/// the grid is swept on each training span, and its best combination (by `rank`) is run on the
/// test span. Windows without bars on either span are skipped.
pub fn walk_forward(
    base: &toml::Table,
    axes: &[Axis],
    minutes: &Minutes,
    opts: &BacktestOptions,
    rank: &str,
    wf: WalkForward,
) -> Result<Vec<Window>, String> {
    check_rank(rank)?;
    let (Some(first), Some(last)) = (minutes.keys().next(), minutes.keys().next_back()) else {
        return Ok(Vec::new());
    };
    let symbols = minutes
        .values()
        .flatten()
        .map(|(s, _)| s.clone())
        .collect::<std::collections::BTreeSet<_>>();
    let mut out = Vec::new();
    let mut start = *first;
    while start + wf.train <= *last {
        let (train_end, test_end) = (start + wf.train, start + wf.train + wf.test);
        let (train, train_first) = slice(minutes, start, train_end);
        let (test, test_first) = slice(minutes, train_end, test_end);
        if train_first.len() == symbols.len() && test_first.len() == symbols.len() {
            let rows = run(base, axes, &train, &train_first, opts, rank, (0, 1))?;
            if let Some(best) = rows.into_iter().next() {
                let config = apply(base, &best.combo)?;
                let (report, _) = replay_all(&config, opts, &test, &test_first)?;
                out.push(Window {
                    train: (start, train_end),
                    test: (train_end, test_end),
                    best,
                    out_of_sample: report.summary,
                });
            }
        }
        start += wf.test;
    }
    Ok(out)
}

pub fn write_walk_forward_csv(
    path: &std::path::Path,
    axes: &[Axis],
    windows: &[Window],
) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    let keys: Vec<&str> = axes.iter().map(|a| a.key.as_str()).collect();
    writeln!(
        w,
        "window,train_start,train_end,test_start,test_end,{},in_sample_total_return,in_sample_sharpe,in_sample_trades,out_of_sample_total_return,out_of_sample_sharpe,out_of_sample_max_drawdown,out_of_sample_trades",
        keys.join(",")
    )?;
    for (i, win) in windows.iter().enumerate() {
        let values: Vec<&str> = win.best.combo.iter().map(|(_, v)| v.as_str()).collect();
        let (is, oos) = (&win.best.summary, &win.out_of_sample);
        writeln!(
            w,
            "{},{},{},{},{},{},{:.6},{:.4},{},{:.6},{:.4},{:.6},{}",
            i + 1,
            win.train.0.to_rfc3339(),
            win.train.1.to_rfc3339(),
            win.test.0.to_rfc3339(),
            win.test.1.to_rfc3339(),
            values.join(","),
            is.total_return,
            is.sharpe,
            is.trades,
            oos.total_return,
            oos.sharpe,
            oos.max_drawdown,
            oos.trades
        )?;
    }
    w.flush()
}

/// `traderd sweep merge`: the shards' `sweep.csv` files as one, ranked again by `rank`.
/// Every file must have the same columns; a combination in two files is an error.
pub fn merge(
    files: &[std::path::PathBuf],
    rank: &str,
    out: &std::path::Path,
) -> Result<usize, String> {
    check_rank(rank)?;
    let mut header: Option<csv::StringRecord> = None;
    let mut rows: Vec<csv::StringRecord> = Vec::new();
    for f in files {
        let mut r = csv::Reader::from_path(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let h = r
            .headers()
            .map_err(|e| format!("{}: {e}", f.display()))?
            .clone();
        match &header {
            Some(first) if *first != h => {
                return Err(format!(
                    "{}: its columns differ from {}'s: not the same sweep",
                    f.display(),
                    files[0].display()
                ));
            }
            Some(_) => {}
            None => header = Some(h),
        }
        for rec in r.records() {
            rows.push(rec.map_err(|e| format!("{}: {e}", f.display()))?);
        }
    }
    let header = header.ok_or("no files to merge")?;
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| format!("the files have no {name} column"))
    };
    let (rank_col, index_col) = (col(rank)?, col("combination")?);
    let num = |r: &csv::StringRecord, c: usize| {
        r.get(c)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::MIN)
    };
    let index = |r: &csv::StringRecord| {
        r.get(index_col)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(usize::MAX)
    };
    rows.sort_by(|a, b| {
        num(b, rank_col)
            .total_cmp(&num(a, rank_col))
            .then(index(a).cmp(&index(b)))
    });
    for pair in rows.windows(2) {
        if index(&pair[0]) == index(&pair[1]) {
            return Err(format!("combination {} is in two files", index(&pair[0])));
        }
    }
    let mut w = csv::Writer::from_path(out).map_err(|e| format!("{}: {e}", out.display()))?;
    w.write_record(&header).map_err(|e| e.to_string())?;
    for (i, r) in rows.iter().enumerate() {
        let mut fields: Vec<String> = r.iter().map(str::to_string).collect();
        if let Some(first) = fields.first_mut() {
            *first = (i + 1).to_string();
        }
        w.write_record(&fields).map_err(|e| e.to_string())?;
    }
    w.flush().map_err(|e| e.to_string())?;
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_is_the_product_and_values_are_toml_literals() {
        let axes = [
            parse_axis("strategy.momentum.rsi_period=10,14").unwrap(),
            parse_axis("strategy.stop_loss_pct = 1, 2.5").unwrap(),
        ];
        let g = grid(&axes);
        assert_eq!(g.len(), 4);
        assert_eq!(
            g[1],
            vec![
                ("strategy.momentum.rsi_period".to_string(), "10".to_string()),
                ("strategy.stop_loss_pct".to_string(), "2.5".to_string()),
            ]
        );
        let base: toml::Table = toml::to_string(&Config::default())
            .unwrap()
            .parse()
            .unwrap();
        let c = apply(&base, &g[3]).unwrap();
        assert_eq!(c.strategy.momentum.rsi_period, 14);
        assert_eq!(c.strategy.stop_loss_pct, Decimal::new(25, 1));
        let e = apply(
            &base,
            &[("strategy.momentum.rsi_period".into(), "\"x\"".into())],
        )
        .unwrap_err();
        assert!(e.contains("strategy.momentum.rsi_period=\"x\""), "{e}");
        assert!(parse_axis("rsi").is_err());
        assert_eq!(parse_shard("1/4"), Ok((1, 4)));
        assert_eq!(
            parse_walk_forward("train=120d,test=30d"),
            Ok(WalkForward {
                train: chrono::Duration::days(120),
                test: chrono::Duration::days(30)
            })
        );
        for bad in ["train=120", "train=5d", "test=1d,train=0d", "x=1d,test=1d"] {
            assert!(parse_walk_forward(bad).is_err(), "{bad}");
        }
        for bad in ["4/4", "1", "a/2", "0/0"] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
        assert!(parse_axis("trading.symbols=AAPL").is_err());
    }
}
