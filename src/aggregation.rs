//! Bar aggregation on event time, without I/O.
//!
//! Minute bars are built from trades; every larger interval (5m, 15m, 1h, 1d) is built from
//! minute bars, so warm-up and gap backfill (which bring minute bars from REST) and live trades
//! go through one path. Bars are aligned to exchange time: minutes and hours on clock
//! boundaries (New York's offset is whole hours), days at midnight New York time.
//!
//! A bar closes when the *watermark* — the latest event time seen on any symbol — passes its
//! end, so a quiet symbol's bar still closes on time; bars close in order per symbol and
//! interval. Nothing reads the wall clock, so aggregation is the same at any simulator speed.
//! Per interval the book remembers the last bar it closed and ignores anything at or before
//! it: a trade for a minute already closed is late (counted), a REST bar already known is
//! skipped.
//!
//! The per-bar path allocates nothing once a symbol is known (a backtest runs ten million
//! minute bars through it): each symbol's state is a fixed array per interval, its name is
//! shared with the bars it closes, and callers may collect closed bars into a buffer of their
//! own ([`BarBook::on_minute_bar_into`]).

use crate::domain::{Interval, OhlcBar};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::VecDeque;
use std::sync::Arc;

/// A bar that closed.
#[derive(Debug, Clone, PartialEq)]
pub struct Closed {
    pub symbol: Arc<str>,
    pub interval: Interval,
    pub bar: OhlcBar,
}

const SLOTS: usize = Interval::ALL.len();

#[derive(Debug)]
struct SymbolBars {
    name: Arc<str>,
    /// Bars in progress per interval (the minute one fed by trades, the rest by minutes).
    open: [Option<OhlcBar>; SLOTS],
    /// Start of the last bar closed (or known from REST) per interval.
    last_closed: [Option<DateTime<Utc>>; SLOTS],
    /// The last closed bars per interval, oldest first.
    history: [VecDeque<OhlcBar>; SLOTS],
}

impl SymbolBars {
    fn new(name: &str) -> Self {
        SymbolBars {
            name: name.into(),
            open: Default::default(),
            last_closed: [None; SLOTS],
            history: Default::default(),
        }
    }

    /// Adds a closed bar to the history, which keeps the last `len` in a ring allocated once
    /// at that size (a deque that grew on a push would double its memory: tens of MB with
    /// 1,000 symbols).
    fn keep(&mut self, interval: Interval, bar: OhlcBar, len: usize) {
        if len == 0 {
            return;
        }
        let h = &mut self.history[interval.slot()];
        if h.capacity() == 0 {
            h.reserve_exact(len);
        }
        if h.len() >= len {
            h.pop_front();
        }
        h.push_back(bar);
    }

    fn close(&mut self, interval: Interval, bar: OhlcBar, out: &mut Vec<Closed>) {
        self.last_closed[interval.slot()] = Some(bar.start);
        out.push(Closed {
            symbol: self.name.clone(),
            interval,
            bar,
        });
    }

    /// Closes the bars of `intervals` that end at or before `until`, into `out`, in time
    /// order, keeping the last `len` of each.
    fn close_until(
        &mut self,
        intervals: &[Interval],
        until: DateTime<Utc>,
        len: usize,
        out: &mut Vec<Closed>,
    ) {
        let first = out.len();
        let m1 = Interval::M1.slot();
        // The minute first; a closing minute feeds the larger bars before they are checked.
        if self.open[m1]
            .as_ref()
            .is_some_and(|b| Interval::M1.end_of(b.start) <= until)
        {
            if let Some(minute) = self.open[m1].take() {
                self.last_closed[m1] = Some(minute.start);
                for interval in intervals.iter().copied().filter(|i| *i != Interval::M1) {
                    let slot = interval.slot();
                    let bucket = interval.start_of(minute.start);
                    if self.last_closed[slot].is_some_and(|last| bucket <= last) {
                        continue;
                    }
                    if self.open[slot].as_ref().is_some_and(|b| b.start != bucket) {
                        if let Some(done) = self.open[slot].take() {
                            self.close(interval, done, out);
                        }
                    }
                    match &mut self.open[slot] {
                        Some(bar) => bar.merge(&minute),
                        None => self.open[slot] = Some(OhlcBar::restart(bucket, &minute)),
                    }
                }
                if intervals.contains(&Interval::M1) {
                    self.close(Interval::M1, minute, out);
                }
            }
        }
        for interval in intervals.iter().copied().filter(|i| *i != Interval::M1) {
            let slot = interval.slot();
            if self.open[slot]
                .as_ref()
                .is_some_and(|b| interval.end_of(b.start) <= until)
            {
                if let Some(done) = self.open[slot].take() {
                    self.close(interval, done, out);
                }
            }
        }
        let closed = &mut out[first..];
        if closed.len() > 1 {
            closed.sort_by_key(|c| (c.interval.end_of(c.bar.start), c.interval));
        }
        if len > 0 {
            for c in closed.iter() {
                self.keep(c.interval, c.bar.clone(), len);
            }
        }
    }

    /// The earliest end of a bar in progress.
    fn next_end(&self) -> Option<DateTime<Utc>> {
        Interval::ALL
            .iter()
            .zip(&self.open)
            .filter_map(|(i, b)| b.as_ref().map(|b| i.end_of(b.start)))
            .min()
    }
}

/// Every symbol's bars.
#[derive(Debug)]
pub struct BarBook {
    intervals: Vec<Interval>,
    symbols: hashbrown::HashMap<String, SymbolBars>,
    watermark: Option<DateTime<Utc>>,
    history_len: usize,
    /// No open bar ends before this (it may be earlier than the earliest end: then a move of
    /// the watermark past it looks, finds nothing, and recomputes it).
    next_due: Option<DateTime<Utc>>,
    pub late_trades: u64,
}

impl BarBook {
    /// A book emitting the given intervals (minutes are always built internally), keeping
    /// the last `history_len` closed bars of each (0: none, for a caller that keeps its own).
    pub fn new(intervals: &[Interval], history_len: usize) -> Self {
        let mut intervals = intervals.to_vec();
        intervals.sort();
        intervals.dedup();
        BarBook {
            intervals,
            symbols: hashbrown::HashMap::default(),
            watermark: None,
            history_len,
            next_due: None,
            late_trades: 0,
        }
    }

    pub fn watermark(&self) -> Option<DateTime<Utc>> {
        self.watermark
    }

    /// The symbol's state, made on first sight (the name is copied only then).
    fn symbol_mut(&mut self, symbol: &str) -> &mut SymbolBars {
        self.symbols
            .entry_ref(symbol)
            .or_insert_with(|| SymbolBars::new(symbol))
    }

    /// A trade: into its minute, after closing whatever its time closes.
    pub fn on_trade(
        &mut self,
        symbol: &str,
        price: Decimal,
        size: Decimal,
        t: DateTime<Utc>,
    ) -> Vec<Closed> {
        let mut out = self.advance_to(t);
        let start = Interval::M1.start_of(t);
        let m1 = Interval::M1.slot();
        let s = self.symbol_mut(symbol);
        if s.last_closed[m1].is_some_and(|last| start <= last) {
            self.late_trades += 1;
            return out;
        }
        match &mut s.open[m1] {
            Some(bar) if bar.start == start => bar.add_trade(price, size),
            Some(bar) if bar.start > start => self.late_trades += 1,
            Some(_) => {
                // An earlier minute still open (time went backwards elsewhere): close it first.
                self.close_symbol(symbol, Some(start), &mut out);
                self.symbol_mut(symbol).open[m1] = Some(OhlcBar::from_trade(start, price, size));
                self.note_open(Interval::M1.end_of(start));
            }
            None => {
                s.open[m1] = Some(OhlcBar::from_trade(start, price, size));
                self.note_open(Interval::M1.end_of(start));
            }
        }
        out
    }

    fn note_open(&mut self, end: DateTime<Utc>) {
        self.next_due = Some(self.next_due.map_or(end, |d| d.min(end)));
    }

    /// Recomputes the earliest end of any open bar.
    fn refresh_due(&mut self) {
        self.next_due = self.symbols.values().filter_map(SymbolBars::next_end).min();
    }

    /// Moves the watermark to `t` and closes every bar that ends by then.
    pub fn advance_to(&mut self, t: DateTime<Utc>) -> Vec<Closed> {
        if self.watermark.is_some_and(|w| t <= w) {
            return Vec::new();
        }
        self.watermark = Some(t);
        if self.next_due.is_none_or(|due| t < due) {
            return Vec::new();
        }
        let symbols: Vec<String> = self.symbols.keys().cloned().collect();
        let mut out = Vec::new();
        for s in &symbols {
            self.close_symbol(s, None, &mut out);
        }
        // In time order across symbols: by end, then interval, then symbol.
        out.sort_by(|a, b| {
            (a.interval.end_of(a.bar.start), a.interval, &a.symbol).cmp(&(
                b.interval.end_of(b.bar.start),
                b.interval,
                &b.symbol,
            ))
        });
        self.refresh_due();
        out
    }

    /// A complete minute bar from REST (warm-up or backfill): replaces the minute in progress
    /// if it is the same minute, and is skipped if already known.
    pub fn on_minute_bar(&mut self, symbol: &str, bar: OhlcBar) -> Vec<Closed> {
        let mut out = Vec::new();
        self.on_minute_bar_into(symbol, bar, &mut out);
        out
    }

    /// [`BarBook::on_minute_bar`], adding the bars it closes to `out`.
    pub fn on_minute_bar_into(&mut self, symbol: &str, bar: OhlcBar, out: &mut Vec<Closed>) {
        let m1 = Interval::M1.slot();
        let (intervals, len) = (&self.intervals, self.history_len);
        let s = self
            .symbols
            .entry_ref(symbol)
            .or_insert_with(|| SymbolBars::new(symbol));
        if s.last_closed[m1].is_some_and(|last| bar.start <= last) {
            return;
        }
        match &s.open[m1] {
            Some(b) if b.start > bar.start => {
                // Older than the minute in progress: folding it in now would put the larger
                // bars' open and close out of order. Counted as late, like a late trade.
                self.late_trades += 1;
                return;
            }
            Some(b) if b.start < bar.start => s.close_until(intervals, bar.start, len, out),
            _ => {}
        }
        let end = Interval::M1.end_of(bar.start);
        s.open[m1] = Some(bar);
        s.close_until(intervals, end, len, out);
        // The larger bars this minute opened are due at their ends.
        let due = s.next_end();
        if self.watermark.is_none_or(|w| w < end) {
            self.watermark = Some(end);
        }
        if let Some(due) = due {
            self.note_open(due);
        }
    }

    /// Forgets everything about `symbol` (its open bars and its history): after a split, what
    /// was built is in the old shares.
    pub fn forget(&mut self, symbol: &str) {
        self.symbols.remove(symbol);
    }

    /// Records bars already known (e.g. REST daily bars) so they are not built again.
    pub fn seed_history(&mut self, symbol: &str, interval: Interval, bars: &[OhlcBar]) {
        let Some(last) = bars.last().map(|b| b.start) else {
            return;
        };
        let len = self.history_len;
        let s = self.symbol_mut(symbol);
        s.last_closed[interval.slot()] = Some(last);
        if interval == Interval::D1 || interval == Interval::M1 {
            s.open[interval.slot()] = None;
        }
        for b in bars {
            s.keep(interval, b.clone(), len);
        }
    }

    /// Closes the symbol's bars that end at or before `until` (default: the watermark), into
    /// `out`.
    fn close_symbol(&mut self, symbol: &str, until: Option<DateTime<Utc>>, out: &mut Vec<Closed>) {
        let Some(until) = until.or(self.watermark) else {
            return;
        };
        let (intervals, len) = (&self.intervals, self.history_len);
        let Some(s) = self.symbols.get_mut(symbol) else {
            return;
        };
        s.close_until(intervals, until, len, out);
    }

    /// The last `n` closed bars of a symbol and interval, oldest first.
    pub fn history(&self, symbol: &str, interval: Interval, n: usize) -> Vec<OhlcBar> {
        self.symbols
            .get(symbol)
            .map(|s| {
                let h = &s.history[interval.slot()];
                h.iter().skip(h.len().saturating_sub(n)).cloned().collect()
            })
            .unwrap_or_default()
    }

    /// The bars still open, for the shutdown log, by symbol.
    pub fn unfinished(&self) -> Vec<(String, Interval, OhlcBar)> {
        let mut out: Vec<(String, Interval, OhlcBar)> = self
            .symbols
            .iter()
            .flat_map(|(sym, s)| {
                Interval::ALL
                    .iter()
                    .zip(&s.open)
                    .filter_map(move |(i, b)| b.as_ref().map(|b| (sym.clone(), *i, b.clone())))
            })
            .collect();
        out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        out
    }

    /// The start of the last minute closed for a symbol.
    pub fn last_closed_minute(&self, symbol: &str) -> Option<DateTime<Utc>> {
        self.symbols.get(symbol)?.last_closed[Interval::M1.slot()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rust_decimal_macros::dec;

    fn t(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 20, h, m, s).unwrap()
    }

    #[test]
    fn alignment_is_exchange_time() {
        assert_eq!(Interval::M5.start_of(t(14, 37, 59)), t(14, 35, 0));
        assert_eq!(Interval::H1.start_of(t(14, 37, 59)), t(14, 0, 0));
        // 2026-11-20 is in EST (UTC-5): the day starts at 05:00 UTC.
        assert_eq!(Interval::D1.start_of(t(14, 37, 59)), t(5, 0, 0));
        assert_eq!(
            Interval::D1.end_of(t(5, 0, 0)),
            Utc.with_ymd_and_hms(2026, 11, 21, 5, 0, 0).unwrap()
        );
    }

    #[test]
    fn minutes_close_on_the_watermark_and_feed_larger_bars() {
        let mut book = BarBook::new(&[Interval::M1, Interval::M5], 100);
        assert!(
            book.on_trade("A", dec!(10), dec!(1), t(14, 30, 5))
                .is_empty()
        );
        book.on_trade("A", dec!(12), dec!(2), t(14, 30, 40));
        // Another symbol's trade moves time past A's minute: A's minute closes on time.
        let closed = book.on_trade("B", dec!(50), dec!(1), t(14, 31, 1));
        assert_eq!(closed.len(), 1);
        assert_eq!(
            (&*closed[0].symbol, closed[0].interval),
            ("A", Interval::M1)
        );
        let b = &closed[0].bar;
        assert_eq!(
            (b.open, b.high, b.low, b.close, b.volume, b.trades),
            (dec!(10), dec!(12), dec!(10), dec!(12), dec!(3), 2)
        );
        let closed = book.advance_to(t(14, 35, 0));
        let five: Vec<&Closed> = closed
            .iter()
            .filter(|c| c.interval == Interval::M5)
            .collect();
        assert_eq!(five.len(), 2, "{closed:?}");
        assert!(
            closed
                .windows(2)
                .all(|w| w[0].interval.end_of(w[0].bar.start)
                    <= w[1].interval.end_of(w[1].bar.start))
        );
        // A late trade for a closed minute is counted and ignored.
        book.on_trade("A", dec!(99), dec!(1), t(14, 30, 59));
        assert_eq!(book.late_trades, 1);
        assert_eq!(book.history("A", Interval::M5, 10)[0].high, dec!(12));
    }

    #[test]
    fn rest_minutes_replace_the_partial_minute_and_are_not_counted_twice() {
        let mut book = BarBook::new(&[Interval::M1, Interval::M5], 100);
        book.on_trade("A", dec!(10), dec!(1), t(14, 30, 5));
        let full = OhlcBar {
            start: t(14, 30, 0),
            open: dec!(9),
            high: dec!(13),
            low: dec!(8),
            close: dec!(11),
            volume: dec!(40),
            trades: 7,
            notional: dec!(400),
        };
        let closed = book.on_minute_bar("A", full.clone());
        assert_eq!(
            closed
                .iter()
                .find(|c| c.interval == Interval::M1)
                .map(|c| &c.bar),
            Some(&full)
        );
        assert!(
            book.on_minute_bar("A", full).is_empty(),
            "a known minute is skipped"
        );
    }
}
