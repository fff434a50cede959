//! The seeded market model: one random walk per symbol on the market timeline, producing
//! quotes and trades, minute bars built from its own trades, daily bars at each close, and a
//! history behind the start (minute bars for the last few sessions, daily bars for a year).
//!
//! Everything is a function of the seed and the symbol: the same seed gives the same prices at
//! the same market time, at any clock speed. The latent mid price is an `f64` (it is a model
//! state, not money); every price that leaves this module is a `Decimal` rounded to the cent.

use crate::alpaca::model::{Bar, Quote, Trade};
use crate::sim::calendar::{self, SESSION_SECONDS, Timeline};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, VecDeque};

/// Symbols the simulator knows when none are given, with a plausible starting price.
pub const DEFAULT_SYMBOLS: &[(&str, &str, &str, i64)] = &[
    ("AAPL", "Apple Inc. Common Stock", "NASDAQ", 190),
    ("MSFT", "Microsoft Corporation Common Stock", "NASDAQ", 420),
    ("AMZN", "Amazon.com, Inc. Common Stock", "NASDAQ", 180),
    ("GOOGL", "Alphabet Inc. Class A Common Stock", "NASDAQ", 170),
    ("NVDA", "NVIDIA Corporation Common Stock", "NASDAQ", 120),
    (
        "META",
        "Meta Platforms, Inc. Class A Common Stock",
        "NASDAQ",
        500,
    ),
    ("TSLA", "Tesla, Inc. Common Stock", "NASDAQ", 250),
    (
        "AMD",
        "Advanced Micro Devices, Inc. Common Stock",
        "NASDAQ",
        150,
    ),
    ("SPY", "SPDR S&P 500 ETF Trust", "ARCA", 550),
    ("QQQ", "Invesco QQQ Trust, Series 1", "NASDAQ", 470),
];

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

#[derive(Debug, Clone)]
struct MinuteAcc {
    index: i64,
    o: Decimal,
    h: Decimal,
    l: Decimal,
    c: Decimal,
    v: Decimal,
    n: u64,
    pv: Decimal,
}

impl MinuteAcc {
    fn add(&mut self, p: Decimal, s: Decimal) {
        self.h = self.h.max(p);
        self.l = self.l.min(p);
        self.c = p;
        self.v += s;
        self.n += 1;
        self.pv += p * s;
    }
    fn bar(&self, timeline: &Timeline) -> Bar {
        Bar {
            t: timeline.to_utc((self.index * 60) as f64),
            o: self.o,
            h: self.h,
            l: self.l,
            c: self.c,
            v: self.v,
            n: Some(self.n),
            vw: (!self.v.is_zero()).then(|| (self.pv / self.v).round_dp(4)),
        }
    }
}

struct SymbolState {
    listing: Listing,
    rng: ChaCha8Rng,
    mid: f64,
    next_event: f64,
    trade_seq: u64,
    last_trade: Option<Trade>,
    last_quote: Option<Quote>,
    minute: Option<MinuteAcc>,
    minutes: VecDeque<Bar>,
    /// Completed sessions, oldest first.
    daily: Vec<Bar>,
    /// Splits applied, oldest first: (when, shares after per share before). History stays
    /// raw; [`Market::adjusted`] divides what came before each.
    splits: Vec<(DateTime<Utc>, Decimal)>,
    /// Under a trading halt: no quote, no trade until it resumes.
    halted: bool,
    /// The latest trades and quotes, for `GET /v2/stocks/trades` and `/quotes`: a ring of
    /// [`Market::tick_history`] each.
    recent_trades: VecDeque<Trade>,
    recent_quotes: VecDeque<Quote>,
    ticks_kept: usize,
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
        let bucketed: Vec<(DateTime<Utc>, &Bar)> = if intraday {
            let minutes = timeframe.intraday_minutes().unwrap_or(1);
            let width = Duration::minutes(minutes);
            // Pre-filter generously, then bucket on clock boundaries.
            s.minutes
                .iter()
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

impl SymbolState {
    fn new(seed: u64, listing: Listing, timeline: &Timeline, history_sessions: i64) -> Self {
        let sym = listing.symbol.as_bytes();
        let live_seed = stable_hash(&[&seed.to_le_bytes(), sym, b"live"]);
        let mut hist_rng =
            ChaCha8Rng::seed_from_u64(stable_hash(&[&seed.to_le_bytes(), sym, b"history"]));
        let base: f64 = listing.base_price.try_into().unwrap_or(100.0);
        let (minutes, daily) = history(&mut hist_rng, base, timeline, history_sessions);
        let mut rng = ChaCha8Rng::seed_from_u64(live_seed);
        let first_gap = rng.random::<f64>() * MEAN_EVENT_GAP_S;
        SymbolState {
            listing,
            rng,
            mid: base,
            next_event: first_gap,
            trade_seq: 0,
            last_trade: None,
            last_quote: None,
            minute: None,
            minutes,
            daily,
            splits: Vec::new(),
            halted: false,
            recent_trades: VecDeque::new(),
            recent_quotes: VecDeque::new(),
            ticks_kept: 0,
        }
    }

    fn run_until(
        &mut self,
        end: f64,
        timeline: &Timeline,
        rank: usize,
        out: &mut Vec<(f64, usize, MarketEvent)>,
    ) {
        let sigma_per_sqrt_s = ANNUAL_VOL / (252.0 * SESSION_SECONDS as f64).sqrt();
        while self.next_event < end {
            let at = self.next_event;
            let gap = -MEAN_EVENT_GAP_S * self.rng.random::<f64>().max(1e-12).ln();
            self.next_event += gap.max(0.001);
            // The unlived rest of a short session (an early close), or a halt: no market.
            let Some(t) = timeline.to_utc_open(at).filter(|_| !self.halted) else {
                continue;
            };
            self.roll_minute(at, timeline, rank, out);
            let step = sigma_per_sqrt_s * gap.sqrt() * normal(&mut self.rng);
            self.mid = (self.mid * step.exp()).max(1.0);
            let quote = self.make_quote(t);
            let is_trade = self.rng.random::<f64>() < 0.45;
            let quote_changed = self
                .last_quote
                .as_ref()
                .is_none_or(|q| q.bp != quote.bp || q.ap != quote.ap);
            if quote_changed || !is_trade {
                self.last_quote = Some(quote.clone());
                if self.recent_quotes.len() == self.ticks_kept {
                    self.recent_quotes.pop_front();
                }
                if self.ticks_kept > 0 {
                    self.recent_quotes.push_back(quote.clone());
                }
                out.push((
                    at,
                    rank,
                    MarketEvent::Quote {
                        symbol: self.listing.symbol.clone(),
                        quote,
                    },
                ));
            }
            if is_trade {
                let trade = self.make_trade(t);
                let acc = self.minute.get_or_insert_with(|| MinuteAcc {
                    index: (at / 60.0).floor() as i64,
                    o: trade.p,
                    h: trade.p,
                    l: trade.p,
                    c: trade.p,
                    v: Decimal::ZERO,
                    n: 0,
                    pv: Decimal::ZERO,
                });
                acc.add(trade.p, trade.s);
                self.last_trade = Some(trade.clone());
                if self.recent_trades.len() == self.ticks_kept {
                    self.recent_trades.pop_front();
                }
                if self.ticks_kept > 0 {
                    self.recent_trades.push_back(trade.clone());
                }
                out.push((
                    at,
                    rank,
                    MarketEvent::Trade {
                        symbol: self.listing.symbol.clone(),
                        trade,
                    },
                ));
            }
        }
        self.roll_minute(end, timeline, rank, out);
    }

    /// Closes the minute bar in progress if `at` is past its minute.
    fn roll_minute(
        &mut self,
        at: f64,
        timeline: &Timeline,
        rank: usize,
        out: &mut Vec<(f64, usize, MarketEvent)>,
    ) {
        let index = (at / 60.0).floor() as i64;
        if self.minute.as_ref().is_some_and(|m| m.index < index) {
            if let Some(acc) = self.minute.take() {
                let bar = acc.bar(timeline);
                self.minutes.push_back(bar.clone());
                let end = (acc.index + 1) as f64 * 60.0;
                let symbol = &self.listing.symbol;
                // The band: 5 % either side of the close.
                let band = (bar.c * Decimal::new(5, 2)).round_dp(2);
                out.push((
                    end,
                    rank,
                    MarketEvent::Luld {
                        symbol: symbol.clone(),
                        up: bar.c + band,
                        down: (bar.c - band).max(Decimal::new(1, 2)),
                        at: bar.t + Duration::minutes(1),
                    },
                ));
                // One bar in twenty gets a late trade: restated on `updatedBars` (decided by
                // a hash, not the walk's generator, so prices stay what the seed gives).
                let late = stable_hash(&[symbol.as_bytes(), &acc.index.to_le_bytes()]);
                let updated = (late % 20 == 0).then(|| Bar {
                    v: bar.v + Decimal::from(late % 100 + 1),
                    n: bar.n.map(|n| n + 1),
                    ..bar.clone()
                });
                out.push((
                    end,
                    rank,
                    MarketEvent::BarClosed {
                        symbol: symbol.clone(),
                        bar,
                    },
                ));
                if let Some(bar) = updated {
                    out.push((
                        end,
                        rank,
                        MarketEvent::BarUpdated {
                            symbol: symbol.clone(),
                            bar,
                        },
                    ));
                }
            }
        }
    }

    fn make_quote(&mut self, t: DateTime<Utc>) -> Quote {
        let spread_ticks = ((self.mid * 0.0002 / 0.01).round() as i64).max(1);
        let bid_cents = ((self.mid * 100.0) - spread_ticks as f64 / 2.0).floor() as i64;
        let bid_cents = bid_cents.max(1);
        let lots = |rng: &mut ChaCha8Rng| Decimal::from(rng.random_range(1..=10_i64) * 100);
        Quote {
            t,
            bx: "V".into(),
            bp: Decimal::new(bid_cents, 2),
            bs: lots(&mut self.rng),
            ax: "V".into(),
            ap: Decimal::new(bid_cents + spread_ticks, 2),
            as_: lots(&mut self.rng),
            c: vec!["R".into()],
            z: tape(&self.listing.exchange).into(),
        }
    }

    fn make_trade(&mut self, t: DateTime<Utc>) -> Trade {
        const SIZES: [i64; 11] = [1, 5, 10, 25, 50, 100, 100, 100, 200, 300, 500];
        const VENUES: [&str; 6] = ["V", "Q", "P", "K", "Z", "N"];
        let (bid, ask) = match &self.last_quote {
            Some(q) => (q.bp, q.ap),
            None => (cents(self.mid), cents(self.mid)),
        };
        let p = match self.rng.random_range(0..3) {
            0 => bid,
            1 => ask,
            _ => ((bid + ask) / Decimal::TWO).round_dp(2),
        };
        self.trade_seq += 1;
        Trade {
            t,
            x: VENUES[self.rng.random_range(0..VENUES.len())].into(),
            p,
            s: Decimal::from(SIZES[self.rng.random_range(0..SIZES.len())]),
            c: vec!["@".into()],
            i: self.trade_seq,
            z: tape(&self.listing.exchange).into(),
        }
    }

    fn close_session(
        &mut self,
        date: NaiveDate,
        index: i64,
        timeline: &Timeline,
        out: &mut Vec<MarketEvent>,
    ) {
        if let Some(acc) = self.minute.take() {
            let bar = acc.bar(timeline);
            self.minutes.push_back(bar.clone());
            out.push(MarketEvent::BarClosed {
                symbol: self.listing.symbol.clone(),
                bar,
            });
        }
        let session = timeline.session(index);
        let day: Vec<Bar> = self
            .minutes
            .iter()
            .filter(|b| b.t >= session.open && b.t < session.close)
            .cloned()
            .collect();
        if let Some(bar) = aggregate(&day, calendar::et_midnight(date)) {
            out.push(MarketEvent::DailyBarClosed {
                symbol: self.listing.symbol.clone(),
                bar: bar.clone(),
            });
            self.daily.push(bar);
        }
        let keep_from = timeline.session(index - MINUTE_WINDOW_SESSIONS + 1).open;
        while self.minutes.front().is_some_and(|b| b.t < keep_from) {
            self.minutes.pop_front();
        }
    }
}

fn tape(exchange: &str) -> &'static str {
    match exchange {
        "NASDAQ" => "C",
        "NYSE" => "A",
        _ => "B",
    }
}

/// Minute bars for the `sessions` sessions before the anchor and daily bars for the year
/// before those, as a walk that ends at `base` at the anchor's open.
fn history(
    rng: &mut ChaCha8Rng,
    base: f64,
    timeline: &Timeline,
    sessions: i64,
) -> (VecDeque<Bar>, Vec<Bar>) {
    const DAILY_SESSIONS: i64 = 250;
    let minute_sigma = ANNUAL_VOL / (252.0f64 * 390.0).sqrt();
    let day_sigma = ANNUAL_VOL / 252.0f64.sqrt();
    // Walk in relative units, then scale so the last close equals `base`.
    struct Raw {
        t: DateTime<Utc>,
        o: f64,
        h: f64,
        l: f64,
        c: f64,
        v: i64,
    }
    let mut level = 1.0f64;
    let mut raw_days: Vec<Raw> = Vec::new();
    for back in (1..=DAILY_SESSIONS).rev() {
        let s = timeline.session(-sessions - back);
        let o = level;
        let c = o * (day_sigma * normal(rng)).exp();
        let h = o.max(c) * (1.0 + rng.random::<f64>() * day_sigma * 0.5);
        let l = o.min(c) * (1.0 - rng.random::<f64>() * day_sigma * 0.5);
        raw_days.push(Raw {
            t: calendar::et_midnight(s.date),
            o,
            h,
            l,
            c,
            v: rng.random_range(5_000_000..50_000_000),
        });
        level = c;
    }
    let mut raw_minutes: Vec<Raw> = Vec::new();
    for back in (1..=sessions).rev() {
        let s = timeline.session(-back);
        for m in 0..(s.close - s.open).num_minutes() {
            let o = level;
            let mut path = [o; 4];
            for k in 1..4 {
                path[k] = path[k - 1] * (minute_sigma / 2.0 * normal(rng)).exp();
            }
            let c = path[3];
            raw_minutes.push(Raw {
                t: s.open + Duration::minutes(m),
                o,
                h: path.iter().cloned().fold(f64::MIN, f64::max),
                l: path.iter().cloned().fold(f64::MAX, f64::min),
                c,
                v: rng.random_range(2_000..40_000),
            });
            level = c;
        }
    }
    let scale = base / level;
    let to_bar = |r: &Raw| {
        let (o, h, l, c) = (
            cents(r.o * scale),
            cents(r.h * scale),
            cents(r.l * scale),
            cents(r.c * scale),
        );
        let (h, l) = (h.max(o).max(c), l.min(o).min(c));
        Bar {
            t: r.t,
            o,
            h,
            l,
            c,
            v: Decimal::from(r.v),
            n: Some((r.v / 80).max(1) as u64),
            vw: Some(((h + l + c) / Decimal::from(3)).round_dp(4)),
        }
    };
    let minutes: VecDeque<Bar> = raw_minutes.iter().map(to_bar).collect();
    let mut daily: Vec<Bar> = raw_days.iter().map(to_bar).collect();
    for back in (1..=sessions).rev() {
        let s = timeline.session(-back);
        let day: Vec<Bar> = minutes
            .iter()
            .filter(|b| b.t >= s.open && b.t < s.close)
            .cloned()
            .collect();
        if let Some(bar) = aggregate(&day, calendar::et_midnight(s.date)) {
            daily.push(bar);
        }
    }
    (minutes, daily)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alpaca::model::TimeFrame;
    use crate::sim::calendar::Session;

    fn market(seed: u64) -> Market {
        let tl = Timeline::new(Session::on(NaiveDate::from_ymd_opt(2026, 11, 20).unwrap()));
        Market::new(seed, &["AAPL".into(), "MSFT".into()], tl, 2)
    }

    #[test]
    fn an_early_close_ends_the_market_at_one() {
        let half = Session::on(NaiveDate::from_ymd_opt(2026, 11, 27).unwrap());
        let mut m = Market::new(7, &["AAPL".into()], Timeline::new(half), 1);
        let events = m.advance_to(SESSION_SECONDS as f64 + 120.0);
        let on_the_day = |t: DateTime<Utc>| t.date_naive() == half.date;
        for e in &events {
            let at = match e {
                MarketEvent::Trade { trade, .. } => trade.t,
                MarketEvent::Quote { quote, .. } => quote.t,
                MarketEvent::BarClosed { bar, .. } => bar.t,
                _ => continue,
            };
            assert!(
                !on_the_day(at) || at < half.close,
                "an event at {at} after the 13:00 close"
            );
        }
        let closed = events.iter().find_map(|e| match e {
            MarketEvent::SessionClosed { date, at } => Some((*date, *at)),
            _ => None,
        });
        assert_eq!(closed, Some((half.date, half.close)));
        assert!(
            events
                .iter()
                .any(|e| matches!(e, MarketEvent::Trade { trade, .. } if trade.t > half.close)),
            "the next session trades"
        );
    }

    #[test]
    fn same_seed_same_market_regardless_of_step_size() {
        let mut a = market(7);
        let mut b = market(7);
        let ea = a.advance_to(600.0);
        let mut eb = Vec::new();
        for k in 1..=60 {
            eb.extend(b.advance_to(k as f64 * 10.0));
        }
        let trades = |ev: &[MarketEvent]| {
            ev.iter()
                .filter_map(|e| match e {
                    MarketEvent::Trade { trade, .. } => Some(trade.clone()),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        assert!(!trades(&ea).is_empty());
        assert_eq!(trades(&ea), trades(&eb));
        assert_ne!(trades(&ea), trades(&market(8).advance_to(600.0)));
    }

    #[test]
    fn minute_bars_match_the_trades_they_came_from() {
        let mut m = market(3);
        let events = m.advance_to(180.0);
        let first_minute: Vec<&Trade> = events
            .iter()
            .filter_map(|e| match e {
                MarketEvent::Trade { symbol, trade } if symbol == "AAPL" => Some(trade),
                _ => None,
            })
            .filter(|t| t.t < m.timeline().to_utc(60.0))
            .collect();
        let bar = events
            .iter()
            .find_map(|e| match e {
                MarketEvent::BarClosed { symbol, bar } if symbol == "AAPL" => Some(bar.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(bar.o, first_minute[0].p);
        assert_eq!(bar.c, first_minute.last().unwrap().p);
        assert_eq!(bar.v, first_minute.iter().map(|t| t.s).sum::<Decimal>());
        assert_eq!(bar.n, Some(first_minute.len() as u64));
    }

    #[test]
    fn history_is_there_and_quotes_are_sane() {
        let mut m = market(1);
        m.advance_to(30.0);
        let tl = *m.timeline();
        let day_bars = m.bars(
            "AAPL",
            TimeFrame::DAY,
            tl.to_utc(-400.0 * 23_400.0),
            tl.to_utc(30.0),
        );
        assert!(day_bars.len() >= 250, "{}", day_bars.len());
        let minute_bars = m.bars(
            "AAPL",
            TimeFrame::MINUTE,
            tl.to_utc(-2.0 * 23_400.0),
            tl.to_utc(0.0),
        );
        assert_eq!(minute_bars.len(), 780);
        let q = m.latest_quote("AAPL").unwrap();
        assert!(q.ap > q.bp && q.bp > Decimal::ZERO);
        let five = m.bars(
            "AAPL",
            "5Min".parse().unwrap(),
            tl.to_utc(-23_400.0),
            tl.to_utc(0.0),
        );
        assert_eq!(five.len(), 78);
    }

    #[test]
    fn a_session_close_rolls_a_daily_bar() {
        let mut m = market(5);
        let before = m.prev_daily_bar("AAPL").unwrap().t;
        let events = m.advance_to(23_400.0 + 10.0);
        assert!(
            events
                .iter()
                .any(|e| matches!(e, MarketEvent::SessionClosed { .. }))
        );
        assert!(m.prev_daily_bar("AAPL").unwrap().t > before);
    }
}
