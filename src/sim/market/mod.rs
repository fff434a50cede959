//! The seeded market model: one random walk per symbol on the market timeline, producing
//! quotes and trades, minute bars built from its own trades, daily bars at each close, and a
//! history behind the start (minute bars for the last few sessions, daily bars for a year).
//!
//! Everything is a function of the seed and the symbol: the same seed gives the same prices at
//! the same market time, at any clock speed. The latent mid price is an `f64` (it is a model
//! state, not money); every price that leaves this module is a `Decimal` rounded to the cent.

mod symbol;
#[cfg(test)]
mod tests;

use symbol::SymbolState;

use crate::alpaca::model::{Bar, Quote, Trade};
use crate::sim::calendar::{self, SESSION_SECONDS, Timeline};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, VecDeque};

pub use crate::domain::listings::DEFAULT_SYMBOLS;

/// Mean market-time seconds between two events of one symbol.
const MEAN_EVENT_GAP_S: f64 = 0.25;
/// Annualised volatility of the walk.
const ANNUAL_VOL: f64 = 0.30;
/// Sessions of minute bars kept; older sessions live on as daily bars.
const MINUTE_WINDOW_SESSIONS: i64 = 20;

/// 64-bit FNV-1a: a stable hash for seeding (std's hasher may change between releases).
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A price in cents as a `Decimal` with two places.
fn cents(x: f64) -> Decimal {
    Decimal::new(((x * 100.0).round() as i64).max(1), 2)
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    // Box–Muller.
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// What the market did, in market-time order.
#[derive(Debug, Clone, PartialEq)]
pub enum MarketEvent {
    Quote {
        symbol: String,
        quote: Quote,
    },
    Trade {
        symbol: String,
        trade: Trade,
    },
    BarClosed {
        symbol: String,
        bar: Bar,
    },
    DailyBarClosed {
        symbol: String,
        bar: Bar,
    },
    /// A minute bar corrected after it closed (a late trade): Alpaca's `updatedBars`.
    BarUpdated {
        symbol: String,
        bar: Bar,
    },
    /// A trading status change (`statuses`): `H` halt, `T` resumption.
    Status {
        symbol: String,
        code: String,
        message: String,
        reason: String,
        at: DateTime<Utc>,
    },
    /// The limit-up/limit-down band (`lulds`), restated at each minute.
    Luld {
        symbol: String,
        up: Decimal,
        down: Decimal,
        at: DateTime<Utc>,
    },
    SessionClosed {
        date: NaiveDate,
        at: DateTime<Utc>,
    },
}

/// Static facts about a listed symbol.
#[derive(Debug, Clone)]
pub struct Listing {
    pub symbol: String,
    pub name: String,
    pub exchange: String,
    pub base_price: Decimal,
}

impl Listing {
    pub fn for_symbol(symbol: &str) -> Listing {
        match DEFAULT_SYMBOLS.iter().find(|(s, ..)| *s == symbol) {
            Some((s, name, exchange, price)) => Listing {
                symbol: s.to_string(),
                name: name.to_string(),
                exchange: exchange.to_string(),
                base_price: Decimal::from(*price),
            },
            None => Listing {
                symbol: symbol.to_string(),
                name: format!("{symbol} (simulated)"),
                exchange: "NYSE".into(),
                base_price: Decimal::from(20 + (stable_hash(&[symbol.as_bytes()]) % 480) as i64),
            },
        }
    }
}

/// The market: every listed symbol's state, advanced to a point on the timeline.
pub struct Market {
    timeline: Timeline,
    symbols: BTreeMap<String, SymbolState>,
    /// Timeline position the market has been advanced to.
    position: f64,
    /// Events made outside the walk (a halt), handed out with the next advance.
    pending: Vec<MarketEvent>,
}

impl Market {
    pub fn new(seed: u64, symbols: &[String], timeline: Timeline, history_sessions: i64) -> Market {
        let kept = tick_history(symbols.len());
        let symbols = symbols
            .iter()
            .map(|s| {
                let listing = Listing::for_symbol(s);
                let mut state = SymbolState::new(seed, listing, &timeline, history_sessions);
                state.ticks_kept = kept;
                (s.clone(), state)
            })
            .collect();
        Market {
            timeline,
            symbols,
            position: 0.0,
            pending: Vec::new(),
        }
    }

    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    pub fn listings(&self) -> impl Iterator<Item = &Listing> {
        self.symbols.values().map(|s| &s.listing)
    }

    pub fn listing(&self, symbol: &str) -> Option<&Listing> {
        self.symbols.get(symbol).map(|s| &s.listing)
    }

    pub fn position(&self) -> f64 {
        self.position
    }

    /// Runs the market forward to `target` (timeline seconds) and returns what happened.
    pub fn advance_to(&mut self, target: f64) -> Vec<MarketEvent> {
        let mut out = std::mem::take(&mut self.pending);
        while self.position < target {
            let next_close =
                ((self.position / SESSION_SECONDS as f64).floor() + 1.0) * SESSION_SECONDS as f64;
            let step_end = target.min(next_close);
            let mut batch: Vec<(f64, usize, MarketEvent)> = Vec::new();
            for (rank, state) in self.symbols.values_mut().enumerate() {
                state.run_until(step_end, &self.timeline, rank, &mut batch);
            }
            batch.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            out.extend(batch.into_iter().map(|(_, _, e)| e));
            self.position = step_end;
            if step_end >= next_close {
                let index = (next_close / SESSION_SECONDS as f64).round() as i64 - 1;
                let session = self.timeline.session(index);
                for state in self.symbols.values_mut() {
                    state.close_session(session.date, index, &self.timeline, &mut out);
                }
                out.push(MarketEvent::SessionClosed {
                    date: session.date,
                    at: session.close,
                });
            }
        }
        out
    }

    pub fn latest_trade(&self, symbol: &str) -> Option<&Trade> {
        self.symbols.get(symbol)?.last_trade.as_ref()
    }

    pub fn latest_quote(&self, symbol: &str) -> Option<&Quote> {
        self.symbols.get(symbol)?.last_quote.as_ref()
    }

    /// The last trade price, else the last completed bar's close.
    pub fn last_price(&self, symbol: &str) -> Option<Decimal> {
        let s = self.symbols.get(symbol)?;
        s.last_trade
            .as_ref()
            .map(|t| t.p)
            .or_else(|| s.minutes.back().map(|b| b.c))
    }

    /// The latest completed minute bar.
    pub fn latest_minute_bar(&self, symbol: &str) -> Option<&Bar> {
        self.symbols.get(symbol)?.minutes.back()
    }

    /// Today's daily bar so far (sessions in progress), or the last completed one.
    pub fn daily_bar(&self, symbol: &str) -> Option<Bar> {
        let s = self.symbols.get(symbol)?;
        self.today_bar(s).or_else(|| s.daily.last().cloned())
    }

    /// The previous completed session's daily bar.
    pub fn prev_daily_bar(&self, symbol: &str) -> Option<&Bar> {
        self.symbols.get(symbol)?.daily.last()
    }

    fn today_bar(&self, s: &SymbolState) -> Option<Bar> {
        let session_index = (self.position / SESSION_SECONDS as f64).floor() as i64;
        let session = self.timeline.session(session_index);
        let mut bars: Vec<Bar> = s
            .minutes
            .iter()
            .filter(|b| b.t >= session.open && b.t < session.close)
            .cloned()
            .collect();
        if let Some(acc) = &s.minute {
            bars.push(acc.bar(&self.timeline));
        }
        aggregate(&bars, calendar::et_midnight(session.date))
    }

    /// A split of `symbol` at `at`: prices from now on are divided by `ratio` (shares after
    /// per share before). Answers whether the symbol is listed.
    pub fn apply_split(&mut self, symbol: &str, ratio: Decimal, at: DateTime<Utc>) -> bool {
        let Some(s) = self.symbols.get_mut(symbol) else {
            return false;
        };
        if ratio <= Decimal::ZERO {
            return false;
        }
        let scale = |p: Decimal| (p / ratio).round_dp(2);
        let r: f64 = ratio.try_into().unwrap_or(1.0);
        s.mid /= r;
        if let Some(t) = &mut s.last_trade {
            t.p = scale(t.p);
        }
        if let Some(q) = &mut s.last_quote {
            q.bp = scale(q.bp);
            q.ap = scale(q.ap);
        }
        if let Some(m) = &mut s.minute {
            (m.o, m.h, m.l, m.c) = (scale(m.o), scale(m.h), scale(m.l), scale(m.c));
            m.pv /= ratio;
        }
        s.splits.push((at, ratio));
        true
    }

    /// The trades of `symbol` the simulator still holds (the latest [`tick_history`]), oldest
    /// first.
    pub fn recent_trades(&self, symbol: &str) -> impl Iterator<Item = &Trade> {
        self.symbols
            .get(symbol)
            .into_iter()
            .flat_map(|s| s.recent_trades.iter())
    }

    pub fn recent_quotes(&self, symbol: &str) -> impl Iterator<Item = &Quote> {
        self.symbols
            .get(symbol)
            .into_iter()
            .flat_map(|s| s.recent_quotes.iter())
    }

    /// Halts trading in `symbol` (no quote, no trade, so no fill) or resumes it, with the
    /// status message Alpaca's `statuses` channel carries. Answers whether anything changed.
    pub fn set_halt(&mut self, symbol: &str, halted: bool, at: DateTime<Utc>) -> bool {
        let Some(s) = self.symbols.get_mut(symbol) else {
            return false;
        };
        if s.halted == halted {
            return false;
        }
        s.halted = halted;
        let (code, message, reason) = if halted {
            ("H", "Trading Halt", "T12")
        } else {
            ("T", "Trading Resumption", "")
        };
        self.pending.push(MarketEvent::Status {
            symbol: symbol.to_string(),
            code: code.into(),
            message: message.into(),
            reason: reason.into(),
            at,
        });
        true
    }

    /// `bars` as Alpaca's `adjustment=split` gives them: a bar before a split has its prices
    /// divided, and its volume multiplied, by the ratio of every split after it.
    pub fn adjusted(&self, symbol: &str, bars: Vec<Bar>) -> Vec<Bar> {
        let Some(s) = self.symbols.get(symbol) else {
            return bars;
        };
        if s.splits.is_empty() {
            return bars;
        }
        bars.into_iter()
            .map(|mut b| {
                // Checked: many extreme splits could take the product out of range; such a
                // bar stays as it was rather than the simulator panicking.
                let ratio = s
                    .splits
                    .iter()
                    .filter(|(at, _)| b.t < *at)
                    .try_fold(Decimal::ONE, |acc, (_, r)| acc.checked_mul(*r));
                let Some(ratio) = ratio.filter(|r| *r != Decimal::ONE) else {
                    return b;
                };
                let px = |p: Decimal| p.checked_div(ratio).map(|q| q.round_dp(4));
                if let (Some(o), Some(h), Some(l), Some(c), Some(v)) =
                    (px(b.o), px(b.h), px(b.l), px(b.c), b.v.checked_mul(ratio))
                {
                    (b.o, b.h, b.l, b.c, b.v) = (o, h, l, c, v);
                    b.vw = b.vw.and_then(px);
                }
                b
            })
            .collect()
    }

    /// Bars of `symbol` for a timeframe, with start times in `[start, end]`, oldest first.
    /// Intraday frames come from minute bars (completed minutes only); days from daily bars
    /// plus the session in progress; weeks and months from days.
    pub fn bars(
        &self,
        symbol: &str,
        timeframe: crate::alpaca::model::TimeFrame,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Vec<Bar> {
        use crate::alpaca::model::TimeFrameUnit as U;
        let Some(s) = self.symbols.get(symbol) else {
            return Vec::new();
        };
        let intraday = matches!(timeframe.unit, U::Minute | U::Hour);
        let mut days: Vec<Bar> = Vec::new();
        if !intraday {
            days.extend(s.daily.iter().cloned());
            if let Some(today) = self.today_bar(s) {
                if days.last().is_none_or(|d| d.t < today.t) {
                    days.push(today);
                }
            }
            if timeframe.unit == U::Day {
                return days
                    .into_iter()
                    .filter(|b| b.t >= start && b.t <= end)
                    .collect();
            }
        }
        if timeframe.unit == U::Minute
            && timeframe.amount == 1
            && let Some(bars) = one_minute_bars(&s.minutes, start, end)
        {
            return bars;
        }
        let bucketed: Vec<(DateTime<Utc>, &Bar)> = if intraday {
            minute_buckets(
                &s.minutes,
                timeframe.intraday_minutes().unwrap_or(1),
                start,
                end,
            )
        } else {
            days.iter()
                .map(|b| {
                    let date = calendar::to_et(b.t).date_naive();
                    let key = match timeframe.unit {
                        U::Week => {
                            date - Duration::days(i64::from(date.weekday().num_days_from_monday()))
                        }
                        _ => month_bucket(date, timeframe.amount),
                    };
                    (calendar::et_midnight(key), b)
                })
                .collect()
        };
        grouped(bucketed, start, end)
    }
}

/// Minute bars that may fall in `[start, end]` in bars of `minutes`, each with the start of
/// its bar (on clock boundaries).
fn minute_buckets<'a>(
    bars: impl IntoIterator<Item = &'a Bar>,
    minutes: i64,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, &'a Bar)> {
    let width = Duration::minutes(minutes);
    // Pre-filter generously, then bucket on clock boundaries.
    bars.into_iter()
        .filter(|b| b.t + width > start && b.t < end + width)
        .map(|b| {
            let epoch_min = b.t.timestamp().div_euclid(60);
            let bucket = epoch_min - epoch_min.rem_euclid(minutes);
            (
                DateTime::<Utc>::from_timestamp(bucket * 60, 0).unwrap_or(b.t),
                b,
            )
        })
        .collect()
}

/// One bar per bucket starting in `[start, end]`, oldest first.
fn grouped(
    bucketed: Vec<(DateTime<Utc>, &Bar)>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Vec<Bar> {
    let mut grouped: BTreeMap<DateTime<Utc>, Vec<Bar>> = BTreeMap::new();
    for (bucket, bar) in bucketed {
        grouped.entry(bucket).or_default().push(bar.clone());
    }
    grouped
        .into_iter()
        .filter(|(t, _)| *t >= start && *t <= end)
        .filter_map(|(t, bars)| aggregate(&bars, t))
        .collect()
}

/// One-minute bars without building buckets: each minute bar is its own bucket when it
/// starts on a minute and the bars are in order, so the answer is each bar in `[start, end]`
/// through [`aggregate`] alone, as the bucketing would give it (a warm-up asks for 200,000 of
/// them; the buckets were a third of the simulator's time serving a page). `None` when a bar
/// is off the minute or out of order: the bucketing decides.
fn one_minute_bars<'a>(
    minutes: impl IntoIterator<Item = &'a Bar>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Option<Vec<Bar>> {
    let mut out = Vec::new();
    let mut last: Option<DateTime<Utc>> = None;
    for b in minutes {
        let on_minute = b.t.timestamp_subsec_nanos() == 0 && b.t.timestamp().rem_euclid(60) == 0;
        if !on_minute || last.is_some_and(|l| b.t <= l) {
            return None;
        }
        last = Some(b.t);
        if b.t >= start && b.t <= end {
            out.extend(aggregate(std::slice::from_ref(b), b.t));
        }
    }
    Some(out)
}

/// Trades (and as many quotes) kept per symbol for the historical endpoints: 2,000 (about a
/// quarter of an hour of market) with up to 25 symbols, fewer with more, about 100,000 ticks
/// (some 20 MB) in all at most: the simulator is embedded in the daemon a newcomer runs, and
/// memory spent on history nobody asked for is the daemon's.
pub fn tick_history(symbols: usize) -> usize {
    (50_000 / symbols.max(1)).clamp(50, 2_000)
}

fn month_bucket(date: NaiveDate, months: u32) -> NaiveDate {
    let m0 = date.month0() - date.month0() % months.max(1);
    NaiveDate::from_ymd_opt(date.year(), m0 + 1, 1).unwrap_or(date)
}

/// One bar from consecutive bars, stamped `t`.
pub fn aggregate(bars: &[Bar], t: DateTime<Utc>) -> Option<Bar> {
    let first = bars.first()?;
    let last = bars.last()?;
    let v: Decimal = bars.iter().map(|b| b.v).sum();
    let pv: Decimal = bars.iter().map(|b| b.vw.unwrap_or(b.c) * b.v).sum();
    Some(Bar {
        t,
        o: first.o,
        h: bars.iter().map(|b| b.h).max().unwrap_or(first.h),
        l: bars.iter().map(|b| b.l).min().unwrap_or(first.l),
        c: last.c,
        v,
        n: Some(bars.iter().map(|b| b.n.unwrap_or(0)).sum()),
        vw: (!v.is_zero()).then(|| (pv / v).round_dp(4)),
    })
}

/// A symbol's minute bars over the `sessions` sessions before the timeline's anchor, as the
/// simulator serves them with `--history-sessions` (same seed, same bars): for a store filled
/// without a server (`traderd bench-backtest`).
pub fn minute_history(seed: u64, symbol: &str, timeline: &Timeline, sessions: i64) -> Vec<Bar> {
    SymbolState::new(seed, Listing::for_symbol(symbol), timeline, sessions)
        .minutes
        .into()
}
