//! `report.html`: one self-contained page (no network when it is viewed) with the equity
//! curve, the drawdown, the P&L distribution of the trades as inline SVG drawn by plotters,
//! and the monthly returns and the summary as tables.

use super::{BacktestReport, Recorded};
use chrono::{DateTime, Datelike, Utc};
use plotters::prelude::*;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use std::collections::BTreeMap;

const WIDTH: u32 = 900;
const HEIGHT: u32 = 300;
/// Points of a curve at most: a year of minutes is thinned to this.
const MAX_POINTS: usize = 2_000;

fn f(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(0.0)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Every `n`-th point, the last always kept.
fn thin<T: Copy>(points: &[T]) -> Vec<T> {
    let step = points.len().div_ceil(MAX_POINTS).max(1);
    let mut out: Vec<T> = points.iter().step_by(step).copied().collect();
    if let Some(last) = points.last() {
        if points.len() % step != 1 || step == 1 {
            out.push(*last);
        }
    }
    out
}

fn line_chart(
    title: &str,
    points: &[(DateTime<Utc>, f64)],
    area: bool,
    color: RGBColor,
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (Some(first), Some(last)) = (points.first(), points.last()) else {
            return Ok(String::new());
        };
        let (lo, hi) = points
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), (_, v)| {
                (lo.min(*v), hi.max(*v))
            });
        let pad = ((hi - lo) * 0.05).max(hi.abs() * 1e-6).max(1e-9);
        let x_end = if last.0 > first.0 {
            last.0
        } else {
            first.0 + chrono::Duration::minutes(1)
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(first.0..x_end, (lo - pad)..(hi + pad))
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_labels(6)
            .y_labels(6)
            .x_label_formatter(&|t| t.format("%Y-%m-%d").to_string())
            .draw()
            .map_err(|e| e.to_string())?;
        if area {
            chart
                .draw_series(AreaSeries::new(points.iter().copied(), 0.0, color.mix(0.3)))
                .map_err(|e| e.to_string())?;
        } else {
            chart
                .draw_series(LineSeries::new(points.iter().copied(), &color))
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

fn histogram(title: &str, values: &[f64]) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        if values.is_empty() {
            return Ok(String::new());
        }
        let (lo, hi) = values
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        let buckets = 20usize;
        let width = ((hi - lo) / buckets as f64).max(1e-9);
        let mut counts = vec![0u32; buckets];
        for v in values {
            let i = (((v - lo) / width) as usize).min(buckets - 1);
            counts[i] += 1;
        }
        let top = counts.iter().copied().max().unwrap_or(1);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(lo..(lo + width * buckets as f64), 0u32..(top + 1))
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("P&L per trade (USD)")
            .y_desc("trades")
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(counts.iter().enumerate().map(|(i, c)| {
                let x0 = lo + width * i as f64;
                let color = if x0 + width / 2.0 >= 0.0 { GREEN } else { RED };
                Rectangle::new([(x0, 0), (x0 + width, *c)], color.mix(0.6).filled())
            }))
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// Returns per calendar month: (year, month) → return over the month, from the daily equity.
fn monthly_returns(days: &[(chrono::NaiveDate, Decimal)]) -> BTreeMap<(i32, u32), f64> {
    let mut out = BTreeMap::new();
    let mut prev: Option<Decimal> = None;
    let mut month_start: BTreeMap<(i32, u32), Decimal> = BTreeMap::new();
    let mut month_end: BTreeMap<(i32, u32), Decimal> = BTreeMap::new();
    for (d, e) in days {
        let key = (d.year(), d.month());
        month_start.entry(key).or_insert(prev.unwrap_or(*e));
        month_end.insert(key, *e);
        prev = Some(*e);
    }
    for (key, end) in month_end {
        if let Some(start) = month_start.get(&key).filter(|s| !s.is_zero()) {
            out.insert(key, f(end / *start) - 1.0);
        }
    }
    out
}

pub fn html(report: &BacktestReport, rec: &Recorded) -> Result<String, String> {
    let equity: Vec<(DateTime<Utc>, f64)> = thin(
        &rec.equity
            .iter()
            .map(|(t, e, ..)| (*t, f(*e)))
            .collect::<Vec<_>>(),
    );
    let mut peak = f64::MIN;
    let drawdown: Vec<(DateTime<Utc>, f64)> = equity
        .iter()
        .map(|(t, e)| {
            peak = peak.max(*e);
            (
                *t,
                if peak > 0.0 {
                    (e / peak - 1.0) * 100.0
                } else {
                    0.0
                },
            )
        })
        .collect();
    let pnl: Vec<f64> = rec.trades.iter().map(|t| f(t.pnl)).collect();
    let charts = [
        ("equity", line_chart("Equity (USD)", &equity, false, BLUE)?),
        (
            "drawdown",
            line_chart("Drawdown (%)", &drawdown, true, RED)?,
        ),
        ("pnl", histogram("P&L distribution of the trades", &pnl)?),
    ];
    let s = &report.summary;
    let rows: Vec<(&str, String)> = vec![
        ("Strategy", report.strategy.clone()),
        ("Symbols", report.symbols.join(", ")),
        (
            "Period",
            format!("{} to {} ({} days)", s.start, s.end, s.days),
        ),
        (
            "Initial equity",
            format!("{}", s.initial_equity.round_dp(2)),
        ),
        ("Final equity", format!("{}", s.final_equity.round_dp(2))),
        ("Total return", format!("{:.2} %", s.total_return * 100.0)),
        ("CAGR", format!("{:.2} %", s.cagr * 100.0)),
        (
            "Annual volatility",
            format!("{:.2} %", s.annual_volatility * 100.0),
        ),
        ("Sharpe", format!("{:.2}", s.sharpe)),
        ("Sortino", format!("{:.2}", s.sortino)),
        (
            "Max drawdown",
            format!(
                "{:.2} % ({} days)",
                s.max_drawdown * 100.0,
                s.max_drawdown_days
            ),
        ),
        ("Calmar", format!("{:.2}", s.calmar)),
        ("Trades", s.trades.to_string()),
        ("Win rate", format!("{:.1} %", s.win_rate * 100.0)),
        ("Profit factor", format!("{:.2}", s.profit_factor)),
        (
            "Average win / loss",
            format!("{} / {}", s.average_win, s.average_loss),
        ),
        ("Expectancy", format!("{}", s.expectancy)),
        ("Exposure", format!("{:.1} %", s.exposure * 100.0)),
        ("Turnover", format!("{:.2}", s.turnover)),
        ("Fees", format!("{}", s.fees)),
    ];
    let mut page = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>traderd report</title><style>\
         body{font-family:sans-serif;margin:2em;max-width:960px}\
         table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}\
         td:first-child,th:first-child{text-align:left}.neg{color:#b00}.pos{color:#070}\
         </style></head><body>\n",
    );
    let heading = if report.source == "backtest" {
        format!("Backtest: {} on", report.strategy)
    } else {
        format!("Run from the journal {}:", report.source)
    };
    page += &format!(
        "<h1>{} {}</h1>\n<h2>Summary</h2>\n<table id=\"summary\">\n",
        escape(&heading),
        escape(&report.symbols.join(", "))
    );
    for (k, v) in rows {
        page += &format!("<tr><td>{}</td><td>{}</td></tr>\n", escape(k), escape(&v));
    }
    page += "</table>\n";
    for (id, svg) in &charts {
        page += &format!("<div class=\"chart\" id=\"{id}\">\n{svg}\n</div>\n");
    }
    page +=
        "<h2>Monthly returns</h2>\n<table id=\"monthly\"><tr><th>Month</th><th>Return</th></tr>\n";
    for ((y, m), r) in monthly_returns(&rec.days) {
        let class = if r < 0.0 { "neg" } else { "pos" };
        page += &format!(
            "<tr><td>{y}-{m:02}</td><td class=\"{class}\">{:.2} %</td></tr>\n",
            r * 100.0
        );
    }
    page += "</table>\n</body></html>\n";
    Ok(page)
}
