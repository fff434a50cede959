//! The local history store: one SQLite file, `history.sqlite` in the data directory, that
//! other tools read as it is (pandas `read_sql`, polars, DuckDB's `sqlite` extension).
//!
//! - `bars`: one row per (symbol, timeframe, bar start), written with upsert semantics (a bar
//!   fetched again replaces the one stored). Prices and volumes are decimal **text**, exactly
//!   as the broker sent them (`CAST(close AS REAL)` in SQL for analysis); `t` is the bar's start
//!   in Unix seconds, UTC.
//! - `covered`: the time ranges already fetched per (symbol, timeframe), so a second sync of
//!   the same range fetches only what is missing (a weekend has no bars, yet was asked for).
//! - `series`: per (symbol, timeframe), the price adjustment the bars were fetched with; a
//!   sync with another one is refused rather than mixing adjusted and raw prices.
//! - `blocks`: a cache of the bars of a series over a span, packed ([`super::blocks`]), made
//!   when a backtest first reads the span. Triggers on `bars` drop the blocks a changed bar
//!   falls in, whoever writes (traderd or another tool); deleting every block is always safe.

use crate::alpaca::model::Bar;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use rust_decimal::Decimal;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub const FILE_NAME: &str = "history.sqlite";

/// A time range, both ends included.
pub type Span = (DateTime<Utc>, DateTime<Utc>);

/// The statement that drops the blocks the bar `row` (`NEW` or `OLD`) falls in.
fn drop_blocks(row: &str) -> String {
    format!(
        "DELETE FROM blocks WHERE timeframe = {row}.timeframe
           AND start BETWEEN {row}.t - {MAX_BLOCK_SPAN} AND {row}.t
           AND end >= {row}.t AND symbol = {row}.symbol;"
    )
}

/// Triggers on `bars` that drop the blocks a changed bar falls in, whoever writes.
fn block_triggers() -> String {
    let (new, old) = (drop_blocks("NEW"), drop_blocks("OLD"));
    format!(
        "CREATE TRIGGER IF NOT EXISTS bars_inserted AFTER INSERT ON bars BEGIN {new} END;
         CREATE TRIGGER IF NOT EXISTS bars_updated AFTER UPDATE ON bars BEGIN {old} {new} END;
         CREATE TRIGGER IF NOT EXISTS bars_deleted AFTER DELETE ON bars BEGIN {old} END;"
    )
}

/// The longest span kept as a block, in seconds (the triggers on `bars` use it too).
const MAX_BLOCK_SPAN: i64 = 172_800;

/// 2: the block cache; 3: blocks keyed span first (a day's blocks of every symbol lie
/// together).
const SCHEMA_VERSION: i64 = 3;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("the history store {path} cannot be used: {detail}")]
    Store { path: String, detail: String },
    #[error("{0}")]
    Refused(String),
}

/// One stored series: what `traderd data ls` shows.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SeriesInfo {
    pub symbol: String,
    pub timeframe: String,
    pub adjustment: String,
    pub first: Option<DateTime<Utc>>,
    pub last: Option<DateTime<Utc>>,
    pub count: u64,
}

pub struct HistoryStore {
    conn: Connection,
    path: PathBuf,
}

fn secs(t: DateTime<Utc>) -> i64 {
    t.timestamp()
}

fn time(s: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(s, 0)
}

impl HistoryStore {
    /// Opens (or creates) the store in `dir`. A file that is not a store of ours, or a store
    /// of a newer version, is an error that says so, never a panic.
    pub fn open(dir: &Path) -> Result<HistoryStore, HistoryError> {
        std::fs::create_dir_all(dir).map_err(|e| HistoryError::Store {
            path: dir.display().to_string(),
            detail: e.to_string(),
        })?;
        let path = dir.join(FILE_NAME);
        let conn = Connection::open(&path).map_err(|e| HistoryError::Store {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        let mut store = HistoryStore { conn, path };
        store.migrate()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: impl std::fmt::Display) -> HistoryError {
        HistoryError::Store {
            path: self.path.display().to_string(),
            detail: e.to_string(),
        }
    }

    fn migrate(&mut self) -> Result<(), HistoryError> {
        self.conn
            .execute_batch(
                "PRAGMA page_size = 65536;
                 PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = NORMAL;
                 CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS bars (
                     symbol TEXT NOT NULL, timeframe TEXT NOT NULL, t INTEGER NOT NULL,
                     open TEXT NOT NULL, high TEXT NOT NULL, low TEXT NOT NULL,
                     close TEXT NOT NULL, volume TEXT NOT NULL,
                     trade_count INTEGER, vwap TEXT,
                     PRIMARY KEY (symbol, timeframe, t)) WITHOUT ROWID;
                 CREATE TABLE IF NOT EXISTS covered (
                     symbol TEXT NOT NULL, timeframe TEXT NOT NULL,
                     start INTEGER NOT NULL, end INTEGER NOT NULL,
                     PRIMARY KEY (symbol, timeframe, start));
                 CREATE TABLE IF NOT EXISTS series (
                     symbol TEXT NOT NULL, timeframe TEXT NOT NULL, adjustment TEXT NOT NULL,
                     PRIMARY KEY (symbol, timeframe));
                 CREATE TABLE IF NOT EXISTS blocks (
                     symbol TEXT NOT NULL, timeframe TEXT NOT NULL,
                     start INTEGER NOT NULL, end INTEGER NOT NULL, data BLOB NOT NULL,
                     PRIMARY KEY (timeframe, start, end, symbol)) WITHOUT ROWID;",
            )
            .map_err(|e| self.err(format!("{e} (is it a traderd history store?)")))?;
        self.conn
            .execute_batch(&block_triggers())
            .map_err(|e| self.err(e))?;
        let version: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))?;
        match version.map(|v| v.parse::<i64>()) {
            None => {
                self.conn
                    .execute(
                        "INSERT INTO meta (key, value) VALUES ('schema', ?1)",
                        [SCHEMA_VERSION.to_string()],
                    )
                    .map_err(|e| self.err(e))?;
            }
            Some(Ok(SCHEMA_VERSION)) => {}
            // Version 1 had no block cache, 2 one keyed symbol first: it is a cache, made
            // again as it is read.
            Some(Ok(1 | 2)) => {
                self.conn
                    .execute_batch(&format!(
                        "DROP TRIGGER IF EXISTS bars_inserted;
                         DROP TRIGGER IF EXISTS bars_updated;
                         DROP TRIGGER IF EXISTS bars_deleted;
                         DROP TABLE blocks;
                         CREATE TABLE blocks (
                             symbol TEXT NOT NULL, timeframe TEXT NOT NULL,
                             start INTEGER NOT NULL, end INTEGER NOT NULL, data BLOB NOT NULL,
                             PRIMARY KEY (timeframe, start, end, symbol)) WITHOUT ROWID;
                         UPDATE meta SET value = '{SCHEMA_VERSION}' WHERE key = 'schema';
                         {}",
                        block_triggers()
                    ))
                    .map_err(|e| self.err(e))?;
            }
            Some(v) => {
                return Err(self.err(format!(
                    "schema version {v:?}; this traderd reads version {SCHEMA_VERSION}"
                )));
            }
        }
        Ok(())
    }

    /// The adjustment a series was stored with, if it is stored.
    pub fn adjustment(
        &self,
        symbol: &str,
        timeframe: &str,
    ) -> Result<Option<String>, HistoryError> {
        self.conn
            .query_row(
                "SELECT adjustment FROM series WHERE symbol = ?1 AND timeframe = ?2",
                params![symbol, timeframe],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Refuses to mix adjustments in one series.
    pub fn claim(
        &self,
        symbol: &str,
        timeframe: &str,
        adjustment: &str,
    ) -> Result<(), HistoryError> {
        match self.adjustment(symbol, timeframe)? {
            Some(a) if a != adjustment => Err(HistoryError::Refused(format!(
                "{symbol} {timeframe} is stored with adjustment {a:?}, not {adjustment:?}: sync it with --adjustment {a}, or into another --data-dir"
            ))),
            Some(_) => Ok(()),
            None => self
                .conn
                .execute(
                    "INSERT INTO series (symbol, timeframe, adjustment) VALUES (?1, ?2, ?3)",
                    params![symbol, timeframe, adjustment],
                )
                .map(|_| ())
                .map_err(|e| self.err(e)),
        }
    }

    /// Writes bars (upsert) and marks `[start, end]` fetched, in one transaction: all or
    /// nothing.
    pub fn write(
        &mut self,
        symbol: &str,
        timeframe: &str,
        bars: &[Bar],
        covered: Option<Span>,
    ) -> Result<usize, HistoryError> {
        let path = self.path.display().to_string();
        let err = |e: rusqlite::Error| HistoryError::Store {
            path: path.clone(),
            detail: e.to_string(),
        };
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO bars (symbol, timeframe, t, open, high, low, close, volume, trade_count, vwap)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                     ON CONFLICT (symbol, timeframe, t) DO UPDATE SET
                       open = excluded.open, high = excluded.high, low = excluded.low,
                       close = excluded.close, volume = excluded.volume,
                       trade_count = excluded.trade_count, vwap = excluded.vwap",
                )
                .map_err(err)?;
            for b in bars {
                stmt.execute(params![
                    symbol,
                    timeframe,
                    secs(b.t),
                    b.o.to_string(),
                    b.h.to_string(),
                    b.l.to_string(),
                    b.c.to_string(),
                    b.v.to_string(),
                    b.n.and_then(|n| i64::try_from(n).ok()),
                    b.vw.map(|v| v.to_string()),
                ])
                .map_err(err)?;
            }
            if let Some((start, end)) = covered {
                mark_covered(&tx, symbol, timeframe, secs(start), secs(end)).map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        Ok(bars.len())
    }

    /// The parts of `[start, end]` not fetched yet for a series, oldest first.
    pub fn missing(
        &self,
        symbol: &str,
        timeframe: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<Span>, HistoryError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT start, end FROM covered WHERE symbol = ?1 AND timeframe = ?2
                 AND end >= ?3 AND start <= ?4 ORDER BY start",
            )
            .map_err(|e| self.err(e))?;
        let ranges: Vec<(i64, i64)> = stmt
            .query_map(params![symbol, timeframe, secs(start), secs(end)], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))?;
        let gaps = uncovered(secs(start), secs(end), &ranges);
        Ok(gaps
            .into_iter()
            .filter_map(|(a, b)| Some((time(a)?, time(b)?)))
            .collect())
    }

    /// Bars of a series with start times in `[start, end]`, oldest first.
    pub fn bars(
        &self,
        symbol: &str,
        timeframe: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<Bar>, HistoryError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT t, open, high, low, close, volume, trade_count, vwap FROM bars
                 WHERE symbol = ?1 AND timeframe = ?2 AND t >= ?3 AND t <= ?4 ORDER BY t",
            )
            .map_err(|e| self.err(e))?;
        // Parsed straight from SQLite's text, without a String per field.
        let mut bad: Option<String> = None;
        let mut out = Vec::new();
        let mut rows = stmt
            .query(params![symbol, timeframe, secs(start), secs(end)])
            .map_err(|e| self.err(e))?;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let t: i64 = r.get(0).map_err(|e| self.err(e))?;
            let mut dec = |i: usize| -> Option<Decimal> {
                let text = r.get_ref(i).ok()?.as_str().ok()?;
                match Decimal::from_str(text) {
                    Ok(d) => Some(d),
                    Err(e) => {
                        bad.get_or_insert_with(|| {
                            format!("{symbol} {timeframe} at {t}: {text:?} is not a decimal: {e}")
                        });
                        None
                    }
                }
            };
            let (Some(o), Some(h), Some(l), Some(c), Some(v)) =
                (dec(1), dec(2), dec(3), dec(4), dec(5))
            else {
                return Err(self.err(bad.unwrap_or_else(|| {
                    format!("{symbol} {timeframe} at {t}: a price or volume is not text")
                })));
            };
            let vw = match r.get_ref(7).map_err(|e| self.err(e))? {
                rusqlite::types::ValueRef::Null => None,
                _ => Some(dec(7).ok_or_else(|| {
                    self.err(
                        bad.clone()
                            .unwrap_or_else(|| format!("{symbol} at {t}: bad vwap")),
                    )
                })?),
            };
            let n: Option<i64> = r.get(6).map_err(|e| self.err(e))?;
            out.push(Bar {
                t: time(t).ok_or_else(|| self.err(format!("{symbol}: bad time {t}")))?,
                o,
                h,
                l,
                c,
                v,
                n: n.and_then(|n| u64::try_from(n).ok()),
                vw,
            });
        }
        Ok(out)
    }

    /// [`HistoryStore::bars`] into `out`, through the block cache (see [`SpanBars`]).
    pub fn bars_cached(
        &self,
        symbol: &str,
        timeframe: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        out: &mut Vec<Bar>,
    ) -> Result<(), HistoryError> {
        let mut span = SpanBars::default();
        self.span(symbol, timeframe, (start, end), &mut span)?;
        out.clear();
        out.reserve(span.left());
        while let Some(bar) = span.next(self)? {
            out.push(bar);
        }
        Ok(())
    }

    /// The first bar from `start` to `end` (both included), if any.
    pub fn first_bar(
        &self,
        symbol: &str,
        timeframe: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Option<Bar>, HistoryError> {
        let first: Option<i64> = self
            .conn
            .query_row(
                "SELECT MIN(t) FROM bars WHERE symbol = ?1 AND timeframe = ?2 AND t >= ?3 AND t <= ?4",
                params![symbol, timeframe, secs(start), secs(end)],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        let Some(t) = first.and_then(time) else {
            return Ok(None);
        };
        Ok(self.bars(symbol, timeframe, t, t)?.into_iter().next())
    }

    /// Every stored series, by symbol and timeframe.
    pub fn series(&self) -> Result<Vec<SeriesInfo>, HistoryError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT s.symbol, s.timeframe, s.adjustment, MIN(b.t), MAX(b.t), COUNT(b.t)
                 FROM series s LEFT JOIN bars b ON b.symbol = s.symbol AND b.timeframe = s.timeframe
                 GROUP BY s.symbol, s.timeframe ORDER BY s.symbol, s.timeframe",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(SeriesInfo {
                    symbol: r.get(0)?,
                    timeframe: r.get(1)?,
                    adjustment: r.get(2)?,
                    first: r.get::<_, Option<i64>>(3)?.and_then(time),
                    last: r.get::<_, Option<i64>>(4)?.and_then(time),
                    count: r.get::<_, i64>(5).map(|c| u64::try_from(c).unwrap_or(0))?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }
}

/// Records `[start, end]` fetched, merged with the ranges it overlaps or touches.
fn mark_covered(
    tx: &rusqlite::Transaction<'_>,
    symbol: &str,
    timeframe: &str,
    start: i64,
    end: i64,
) -> rusqlite::Result<()> {
    let (lo, hi): (Option<i64>, Option<i64>) = tx.query_row(
        "SELECT MIN(start), MAX(end) FROM covered WHERE symbol = ?1 AND timeframe = ?2
         AND end >= ?3 - 1 AND start <= ?4 + 1",
        params![symbol, timeframe, start, end],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let (start, end) = (
        lo.map_or(start, |l| l.min(start)),
        hi.map_or(end, |h| h.max(end)),
    );
    tx.execute(
        "DELETE FROM covered WHERE symbol = ?1 AND timeframe = ?2 AND end >= ?3 AND start <= ?4",
        params![symbol, timeframe, start, end],
    )?;
    tx.execute(
        "INSERT INTO covered (symbol, timeframe, start, end) VALUES (?1, ?2, ?3, ?4)",
        params![symbol, timeframe, start, end],
    )?;
    Ok(())
}

/// The parts of `[start, end]` that `ranges` (sorted by start) do not cover.
fn uncovered(start: i64, end: i64, ranges: &[(i64, i64)]) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut from = start;
    for &(a, b) in ranges {
        if a > from {
            out.push((from, (a - 1).min(end)));
        }
        from = from.max(b.saturating_add(1));
        if from > end {
            return out;
        }
    }
    if from <= end {
        out.push((from, end));
    }
    out
}

mod span;
pub use span::SpanBars;

#[cfg(test)]
mod tests;
