//! One series' bars over a span, a bar at a time, through the block cache.

use super::{HistoryError, HistoryStore, MAX_BLOCK_SPAN, Span, secs};
use crate::alpaca::model::Bar;
use crate::history::blocks::{self, Cursor};
use chrono::{DateTime, Utc};
use rusqlite::params;

/// One series' bars over a span ([`HistoryStore::span`]), handed out a bar at a time: from
/// the span's block, each bar decoded as it is asked for, or from the rows. A replay holds
/// one of these per symbol and the bar each is at, not a day of bars per symbol (a day of a
/// hundred symbols' bars is megabytes, read back long after it was written). The buffers
/// are kept from span to span.
///
/// Where the span has no block, the rows are read and packed into one for the next read. A
/// store that cannot be written (read-only, busy) is read from its rows, and so is a span
/// over two days (the triggers that keep blocks true look two days back). A block found
/// damaged part way through is replaced the same way, and the rows take over after the last
/// bar already handed out.
#[derive(Default)]
pub struct SpanBars {
    symbol: String,
    timeframe: String,
    span: Option<Span>,
    block: Vec<u8>,
    /// Where in `block` the next bar is, while the block is read.
    cursor: Option<Cursor>,
    rows: Vec<Bar>,
    row: usize,
    /// The time of the last bar handed out.
    last: Option<DateTime<Utc>>,
}

impl SpanBars {
    /// The bars still to come.
    pub fn left(&self) -> usize {
        match &self.cursor {
            Some(c) => c.left(),
            None => self.rows.len().saturating_sub(self.row),
        }
    }

    /// The next bar, `None` after the last. `store` is the one the span was opened on.
    pub fn next(&mut self, store: &HistoryStore) -> Result<Option<Bar>, HistoryError> {
        let mut bar = None;
        self.next_into(store, &mut bar)?;
        Ok(bar)
    }

    /// [`SpanBars::next`] into `slot`, written in place where it holds a bar.
    pub fn next_into(
        &mut self,
        store: &HistoryStore,
        slot: &mut Option<Bar>,
    ) -> Result<(), HistoryError> {
        if let Some(cursor) = &mut self.cursor {
            match cursor.next_into(&self.block, slot) {
                Ok(()) => {
                    self.last = slot.as_ref().map(|b| b.t);
                    return Ok(());
                }
                Err(blocks::Damaged) => {
                    store.read_rows(self)?;
                    // The bars already handed out are not handed out again.
                    let last = self.last;
                    self.row = self
                        .rows
                        .iter()
                        .take_while(|b| last.is_some_and(|l| b.t <= l))
                        .count();
                }
            }
        }
        *slot = self.rows.get(self.row).cloned();
        if let Some(bar) = slot {
            self.row += 1;
            self.last = Some(bar.t);
        }
        Ok(())
    }
}

impl HistoryStore {
    /// Opens `into` on the bars of a series with start times in `span` (both ends included),
    /// oldest first: [`SpanBars::next`] hands them out.
    pub fn span(
        &self,
        symbol: &str,
        timeframe: &str,
        span: Span,
        into: &mut SpanBars,
    ) -> Result<(), HistoryError> {
        into.symbol.clear();
        into.symbol.push_str(symbol);
        into.timeframe.clear();
        into.timeframe.push_str(timeframe);
        into.span = Some(span);
        into.cursor = None;
        into.rows.clear();
        into.row = 0;
        into.last = None;
        let (start, end) = span;
        if secs(end) - secs(start) > MAX_BLOCK_SPAN {
            return self.read_rows(into);
        }
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT data FROM blocks WHERE symbol = ?1 AND timeframe = ?2 AND start = ?3 AND end = ?4",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = stmt
            .query(params![symbol, timeframe, secs(start), secs(end)])
            .map_err(|e| self.err(e))?;
        if let Some(row) = rows.next().map_err(|e| self.err(e))? {
            if let Ok(block) = row.get_ref(0).and_then(|v| Ok(v.as_blob()?)) {
                into.block.clear();
                into.block.extend_from_slice(block);
                if let Ok(cursor) = Cursor::start(start, &into.block) {
                    into.cursor = Some(cursor);
                    return Ok(());
                }
            }
        }
        drop(rows);
        self.read_rows(into)
    }

    /// Reads the span of `into` from the rows, and packs them into its block for the next
    /// read where the span is short enough to keep one.
    fn read_rows(&self, into: &mut SpanBars) -> Result<(), HistoryError> {
        let Some((start, end)) = into.span else {
            return Ok(());
        };
        into.cursor = None;
        into.rows = self.bars(&into.symbol, &into.timeframe, start, end)?;
        into.row = 0;
        if secs(end) - secs(start) > MAX_BLOCK_SPAN {
            return Ok(());
        }
        if let Some(block) = blocks::encode(start, &into.rows) {
            // A cache: a failure to keep it costs the next read its speed, nothing else.
            let _ = self
                .conn
                .prepare_cached(
                    "INSERT OR REPLACE INTO blocks (symbol, timeframe, start, end, data)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        into.symbol,
                        into.timeframe,
                        secs(start),
                        secs(end),
                        block
                    ])
                });
        }
        Ok(())
    }
}
