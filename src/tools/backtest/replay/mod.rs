//! The replay: stored minute bars, in event time, through the daemon's own cores — the bar
//! aggregation (`aggregation::BarBook`), the strategy, the signal-to-intent decision
//! (`strategy::intent_for`), the risk checks (`risk::check`), the order requests
//! (`OrderDesk::request_for`) — and the simulator's matching engine in-process as the fill
//! model. One thread, no actors, no sockets: the same inputs give the same outputs.
//!
//! No look-ahead: a bar is known only once closed, and an order placed on it is matched from
//! the next bar on. Each minute bar becomes four points (open, then the nearer of high and
//! low, the other, close), each a quote (buys at the ask, sells at the bid, `slippage_bps`
//! apart) and a trade (which triggers stops); the book is withdrawn at the bar's end, so
//! nothing fills on the bar whose close made the signal.

mod fills;
mod orders;
mod symbols;

use super::{BacktestOptions, Recorded};
use crate::aggregation::{BarBook, Closed};
use crate::alpaca::model::{Bar, Quote, Trade};
use crate::analytics::RoundTrips;
use crate::config::Config;
use crate::domain::{Interval, OhlcBar, calendar};
use crate::risk::{Purpose, RefusalCode, RiskLimits, RiskState};
use crate::sim::engine::{AccountSettings, AssetInfo, Engine};
use crate::sim::market::MarketEvent;
use crate::strategy::{BarInput, MarketBars, MarketView, Strategy};
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use symbols::Symbols;

const BOOK_SIZE: i64 = 1_000_000_000;

pub(super) struct Replay<'a> {
    opts: &'a BacktestOptions,
    config: &'a Config,
    engine: Engine,
    strategy: Box<dyn Strategy>,
    book: BarBook,
    /// The bars the book closed, a buffer kept between bars.
    closed: Vec<Closed>,
    /// The last minute's events for the engine and the symbols they were for: the next
    /// minute over the same symbols updates their prices and times in place.
    events: Vec<MarketEvent>,
    events_for: Vec<u32>,
    symbols: Symbols,
    purposes: HashMap<String, Purpose>,
    seq: u64,
    recent: VecDeque<DateTime<Utc>>,
    trips: RoundTrips,
    /// Each symbol's latest closed bar of the strategy's interval, and the positions: the
    /// market view a strategy of several symbols sees.
    latest: MarketBars,
    /// Each symbol's slot in `latest`, by index.
    market_slots: Vec<usize>,
    held: BTreeMap<String, Decimal>,
    /// The equity while nothing has changed it (a strategy's view asks at every close).
    equity: Cell<Option<Decimal>>,
    /// The risk checks' view of the account, brought up to date when something changed it
    /// (most signals are refused, a few million a year: it is not built for each). Its last
    /// trades hold every symbol, so that setting the price acted on allocates nothing; only
    /// those of the symbols held are ever read besides the intent's own.
    risk_state: RiskState,
    risk_stale: bool,
    /// The engine's open orders while nothing has changed them (the pace checks ask).
    open_count: Option<usize>,
    limits: RiskLimits,
    /// The entries' notional and the equity it was sized from.
    notional: Option<(Decimal, Option<Decimal>)>,
    /// Refusals by code, named in `out.refusals` at the end.
    refused: [u64; RefusalCode::ALL.len()],
    day_start_equity: Decimal,
    day: Option<chrono::NaiveDate>,
    pub(super) out: Recorded,
}

fn at(t: DateTime<Utc>, seconds: i64) -> DateTime<Utc> {
    t + Duration::seconds(seconds)
}

impl<'a> Replay<'a> {
    pub(super) fn new(
        opts: &'a BacktestOptions,
        config: &'a Config,
        first_prices: &BTreeMap<String, Decimal>,
        start: DateTime<Utc>,
    ) -> Result<Self, String> {
        let strategy = config.strategy.build()?;
        // Only the strategy's bars are needed (the book builds minutes itself); a minute
        // strategy needs no book at all (see `closes`).
        let book = BarBook::new(&[strategy.interval()], 0);
        let assets = first_prices
            .iter()
            .map(|(symbol, price)| AssetInfo {
                id: uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, symbol.as_bytes()),
                symbol: symbol.clone(),
                exchange: "NASDAQ".into(),
                prev_close: *price,
            })
            .collect();
        let engine = Engine::new(
            1,
            AccountSettings {
                initial_cash: opts.cash,
                ..AccountSettings::default()
            },
            assets,
            start,
        );
        let mut replay = Replay {
            opts,
            config,
            engine,
            strategy,
            book,
            closed: Vec::new(),
            events: Vec::new(),
            events_for: Vec::new(),
            symbols: Symbols::default(),
            market_slots: Vec::new(),
            purposes: HashMap::new(),
            seq: 0,
            recent: VecDeque::new(),
            trips: RoundTrips::default(),
            latest: MarketBars::default(),
            held: BTreeMap::new(),
            equity: Cell::new(None),
            risk_state: RiskState::default(),
            risk_stale: true,
            open_count: None,
            limits: config.risk.limits(),
            notional: None,
            refused: [0; RefusalCode::ALL.len()],
            day_start_equity: opts.cash,
            day: None,
            out: Recorded::default(),
        };
        for symbol in &config.trading.symbols {
            replay.index(symbol);
        }
        Ok(replay)
    }

    /// The index of a bar's symbol, taken the first time.
    pub(super) fn index(&mut self, symbol: &str) -> u32 {
        let i = self.symbols.index(symbol);
        // A symbol new to the table (indexes are taken in turn) takes its market slot too.
        if i as usize == self.market_slots.len() {
            self.market_slots.push(self.latest.slot(symbol));
        }
        i
    }

    fn equity(&self) -> Decimal {
        if let Some(e) = self.equity.get() {
            return e;
        }
        let e = self.engine.equity() - self.out.fees;
        self.equity.set(Some(e));
        e
    }

    /// Whatever changed the engine or the fees: the equity and the risk state are computed
    /// again when asked.
    fn changed(&mut self) {
        self.equity.set(None);
        self.risk_stale = true;
        self.open_count = None;
    }

    /// Which symbols the engine follows, from the engine.
    fn refresh_active(&mut self) {
        self.symbols.follow_only(self.engine.active_symbols());
    }

    /// One minute: every symbol's bar that started at `t`, by symbol index.
    pub(super) fn minute(&mut self, t: DateTime<Utc>, bars: &[(u32, &Bar)]) {
        let day = calendar::to_et(t).date_naive();
        if self.day != Some(day) {
            if let Some(prev) = self.day {
                // Day orders expire at the close of the session they were placed in.
                let close = calendar::Session::on(prev).close;
                self.engine.on_market(&[MarketEvent::SessionClosed {
                    at: close.max(self.engine.now()),
                    date: prev,
                }]);
                self.changed();
                self.record_day(prev);
            }
            if self.day.is_none() {
                // The starting point: the cash before the first session.
                let before = calendar::Session::on(day).prev().date;
                self.out.days.push((before, self.equity()));
            }
            self.day = Some(day);
            self.day_start_equity = self.equity();
            self.risk_stale = true;
        }
        // The fills of orders placed on earlier bars, through this bar's four points, every
        // symbol's first point before any symbol's second (the engine's clock only moves on).
        // Only the symbols held or with an order are fed to the engine; the others' marks are
        // set to their latest close when an order makes the engine follow them.
        self.refresh_active();
        let active: Vec<(u32, &Bar)> = bars
            .iter()
            .filter(|(i, _)| self.symbols.active(*i))
            .copied()
            .collect();
        if !active.is_empty() {
            let mut points: Vec<[Decimal; 4]> = Vec::with_capacity(active.len());
            for (_, bar) in &active {
                let (first, second) = if bar.c >= bar.o {
                    (bar.l, bar.h)
                } else {
                    (bar.h, bar.l)
                };
                points.push([bar.o, first, second, bar.c]);
            }
            // The events of the minute before serve again when they were for the same
            // symbols: only their times and prices change.
            let mut events = std::mem::take(&mut self.events);
            let same = self.events_for.len() == active.len()
                && self
                    .events_for
                    .iter()
                    .zip(&active)
                    .all(|(a, (b, _))| a == b);
            if !same {
                events.clear();
                self.events_for.clear();
                self.events_for.extend(active.iter().map(|(i, _)| *i));
                for _ in 0..4 {
                    for (i, _) in &active {
                        events.extend(events_of(self.symbols.name(*i)));
                    }
                }
            }
            let mut pairs = events.chunks_exact_mut(2);
            for k in 0..4 {
                let when = at(t, 15 * k as i64);
                for ((_, bar), prices) in active.iter().zip(&points) {
                    let Some([quote, trade]) = pairs.next() else {
                        continue;
                    };
                    let (bid, ask) = self.book_prices(prices[k]);
                    if let MarketEvent::Quote { quote, .. } = quote {
                        (quote.t, quote.bp, quote.ap) = (when, bid, ask);
                    }
                    if let MarketEvent::Trade { trade, .. } = trade {
                        (trade.t, trade.p, trade.s) = (when, prices[k], bar.v.max(Decimal::ONE));
                    }
                }
            }
            self.engine.on_market(&events);
            self.events = events;
            // The bar is over: nothing more fills at its prices.
            for (i, _) in &active {
                self.engine.withdraw_book(self.symbols.name(*i));
            }
            self.changed();
            self.refresh_active();
        }
        for (i, bar) in bars {
            self.symbols.note_close(*i, bar.c);
        }
        self.book_fills();
        // The closed bars go to the strategy, as the feed hands them on, at the bar's close.
        let close_time = t + Duration::minutes(1);
        self.engine.set_time(close_time, true);
        self.closes(bars, |replay, i, bar| {
            replay.on_bar_closed(i, bar, close_time)
        });
        self.book_fills();
        let gross = self.engine.gross_exposure();
        self.out.bars += 1;
        self.out.symbol_bars += bars.len() as u64;
        if !gross.is_zero() {
            self.out.bars_exposed += 1;
        }
        self.out
            .equity
            .push((close_time, self.equity(), self.engine.cash(), gross));
    }

    /// A minute before the start: its bars prime the strategy's indicators (flagged
    /// historical, as the daemon's warm-up is) and nothing else happens.
    pub(super) fn warm(&mut self, bars: &[(u32, &Bar)]) {
        self.closes(bars, |replay, i, bar| {
            let symbol = replay.symbols.shared(i);
            let interval = replay.strategy.interval();
            replay.strategy.on_bar(&BarInput {
                symbol: &symbol,
                interval,
                bar,
                historical: true,
                position: Decimal::ZERO,
                explain: false,
            });
            replay.keep_latest(i, &symbol, bar);
            replay.strategy.on_market(&MarketView {
                closed: &symbol,
                bars: &replay.latest,
                positions: &replay.held,
                historical: true,
                equity: None,
                now: interval.end_of(bar.start),
            });
        });
    }

    /// The strategy's bars that a minute's bars close, in the order the feed hands them on,
    /// each with its symbol's index. A minute strategy's bar is the minute bar as it is (the
    /// book would hand on the same bar): the book is for larger intervals only.
    fn closes(&mut self, bars: &[(u32, &Bar)], mut each: impl FnMut(&mut Self, u32, &OhlcBar)) {
        if self.strategy.interval() == Interval::M1 {
            for (i, bar) in bars {
                each(self, *i, &OhlcBar::from(*bar));
            }
            return;
        }
        let mut closed = std::mem::take(&mut self.closed);
        for (i, bar) in bars {
            closed.clear();
            self.book
                .on_minute_bar_into(self.symbols.name(*i), OhlcBar::from(*bar), &mut closed);
            for c in &closed {
                each(self, *i, &c.bar);
            }
        }
        self.closed = closed;
    }

    pub(super) fn finish(&mut self) {
        for (code, n) in RefusalCode::ALL.iter().zip(self.refused) {
            if n > 0 {
                *self.out.refusals.entry(format!("{code:?}")).or_default() += n;
            }
        }
        if let Some(day) = self.day {
            self.record_day(day);
        }
        self.out.orders = self.engine.all_orders();
        self.out.purposes = self.purposes.clone();
    }

    fn record_day(&mut self, day: chrono::NaiveDate) {
        let e = self.equity();
        self.out.days.push((day, e));
    }

    /// The bid and the ask around a bar's price: the slippage either side.
    fn book_prices(&self, price: Decimal) -> (Decimal, Decimal) {
        let slip = price * self.opts.slippage_bps / Decimal::from(10_000);
        ((price - slip).round_dp(4), (price + slip).round_dp(4))
    }

    /// Keeps `bar` as the latest of the symbol `i`, named `symbol`.
    fn keep_latest(&mut self, i: u32, symbol: &str, bar: &OhlcBar) {
        match self.market_slots.get(i as usize) {
            Some(slot) => self.latest.keep_at(*slot, symbol, bar),
            None => self.latest.keep(symbol, bar),
        }
    }

    /// The signed position in the replayed symbol `i`: none where the engine follows nothing.
    fn position_at(&self, i: u32) -> Decimal {
        if self.symbols.active(i) {
            self.engine.qty(self.symbols.name(i))
        } else {
            Decimal::ZERO
        }
    }

    /// The signed position held: none where the engine follows nothing.
    fn position(&self, symbol: &str) -> Decimal {
        if self.symbols.followed(symbol) {
            self.engine.qty(symbol)
        } else {
            Decimal::ZERO
        }
    }

    /// Open orders of ours on `symbol`, one the engine follows, that are entries or exits
    /// (not protective legs).
    fn busy(&self, symbol: &str) -> bool {
        self.engine.open_orders(Some(symbol)).iter().any(|o| {
            o.symbol == symbol
                && matches!(
                    self.purposes.get(&o.client_order_id),
                    Some(Purpose::Entry { .. } | Purpose::Exit | Purpose::Flatten)
                )
        })
    }

    fn on_bar_closed(&mut self, i: u32, bar: &OhlcBar, now: DateTime<Utc>) {
        let symbol = self.symbols.shared(i);
        let position = self.position_at(i);
        let signal = self.strategy.on_bar(&BarInput {
            symbol: &symbol,
            interval: self.strategy.interval(),
            bar,
            historical: false,
            position,
            explain: false,
        });
        self.keep_latest(i, &symbol, bar);
        let several = self.strategy.on_market(&MarketView {
            closed: &symbol,
            bars: &self.latest,
            positions: &self.held,
            historical: false,
            equity: Some(self.equity()),
            now,
        });
        self.act(Some(i), &symbol, signal, bar.close, bar.start, now);
        // Several symbols at once (a pair's legs), each at its own latest close, as the
        // StrategyRunner does.
        for (other, signal) in several {
            if let Some(b) = self.latest.get(&other) {
                let (close, start) = (b.close, b.start);
                self.act(None, &other, signal, close, start, now);
            }
        }
    }
}

/// A symbol's quote (`BOOK_SIZE` shares either side) and trade for the engine, their times
/// and prices set each minute.
fn events_of(symbol: &str) -> [MarketEvent; 2] {
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    [
        MarketEvent::Quote {
            symbol: symbol.to_string(),
            quote: Quote {
                t: epoch,
                bx: "V".into(),
                bp: Decimal::ZERO,
                bs: Decimal::from(BOOK_SIZE),
                ax: "V".into(),
                ap: Decimal::ZERO,
                as_: Decimal::from(BOOK_SIZE),
                c: Vec::new(),
                z: "C".into(),
            },
        },
        MarketEvent::Trade {
            symbol: symbol.to_string(),
            trade: Trade {
                t: epoch,
                x: "V".into(),
                p: Decimal::ZERO,
                s: Decimal::ZERO,
                c: Vec::new(),
                i: 0,
                z: "C".into(),
            },
        },
    ]
}
