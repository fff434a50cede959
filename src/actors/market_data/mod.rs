//! `MarketDataFeed` actor: the latest trade and quote per symbol, and bars at the configured
//! intervals built on event time ([`bars`]), emitted in order as they close.
//!
//! Handles: [`MarketBatch`] (from the market-data `StreamClient`; the first batch after a
//! reconnect carries the gap, in band, and starts a backfill), [`AddBarSubscriber`],
//! [`AddStatusListener`], [`AddMarkListener`], [`GetBars`], [`GetLatest`], [`GetFeedStats`].
//! Emits: [`BarClosed`] to subscribers (historical ones, from a backfill or a warm-up's
//! today, are flagged; a warm-up's history goes as [`HistoryBars`], a symbol's bars of an
//! interval at a time),
//! [`SymbolStatus`] (halts and resumptions) to status listeners, minute closes to mark
//! listeners.
//!
//! Phases: at start it warms up from REST (each interval's recent bars, then today's minutes so
//! the bars in progress are complete). After a reconnect it waits for the first data after the
//! gap marker, then backfills every complete minute before that data from REST. Live data that
//! arrives meanwhile is held (bounded, [`held`]) and applied afterwards, so bars are built in
//! order. Time comes only from the broker (its clock at warm-up, message timestamps after).
//! The warm-up starts with the feed, not when someone listens: a bar subscriber or mark
//! listener that registers after it was handed out catches up from the book first.
//!
//! Shutdown policy: bars still open are not emitted (they are incomplete); they are logged.
//! Restart behaviour: state is rebuilt by a new warm-up.

mod held;
mod history;

use history::fetch_warmup;

pub use crate::aggregation::{BarBook, Closed};
use crate::alpaca::model::BarsPage;
pub use crate::domain::{Interval, OhlcBar};

use crate::alpaca::model::{Bar, TimeFrame};
use crate::alpaca::rest::BarsQuery;
use crate::alpaca::stream::DataMessage;
use crate::broker::BrokerRef;
use crate::domain::ConnectionState;
pub use crate::messages::market::{
    AddBarSubscriber, AddMarkListener, AddSplitListener, AddStatusListener, AddSymbols, FeedStats,
    GetBars, GetFeedStats, GetLatest, Latest, RemoveSymbols, SetCoverListener, SymbolStatus,
};
use crate::messages::{
    BarClosed, HistoryBars, MarketBatch, SplitApplied, StreamCovered, StreamEvent, StreamEventKind,
    StreamKind,
};
use actix::prelude::*;
use chrono::{DateTime, Duration, Utc};
use std::collections::BTreeMap;

/// How the feed aggregates.
#[derive(Debug, Clone)]
pub struct FeedSettings {
    pub symbols: Vec<String>,
    pub intervals: Vec<Interval>,
    /// Closed bars kept (and fetched at warm-up) per symbol and interval.
    pub warmup_bars: usize,
    /// Bound of the feed's mailbox; the stream client conflates quotes when it is full.
    pub mailbox: usize,
    /// The `adjustment` of warm-up bars (`split` by default).
    pub adjustment: String,
    /// While the market-data stream is down, closed minute bars are polled over REST this
    /// often (zero: never), so strategies keep getting bars, marked degraded.
    pub rest_poll: std::time::Duration,
    /// Live messages held at most while warming up or backfilling; past it the trades,
    /// quotes and bars held are let go and their minutes come from REST.
    pub hold_limit: usize,
}

impl Default for FeedSettings {
    fn default() -> Self {
        FeedSettings {
            symbols: Vec::new(),
            intervals: Interval::ALL.to_vec(),
            warmup_bars: 200,
            mailbox: 8,
            adjustment: "split".into(),
            rest_poll: std::time::Duration::from_secs(60),
            hold_limit: HOLD_LIMIT,
        }
    }
}

/// The default [`FeedSettings::hold_limit`]: a few seconds of an ordinary market at 1,000
/// symbols, about 5 MB (a stream message and what it owns is ~250 bytes).
pub const HOLD_LIMIT: usize = 20_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    WarmingUp,
    Live,
    /// The stream came back after a gap; waiting for its first data, which says where the
    /// gap ends. The stream may reconnect into silence (a frozen feed), so the reconnect
    /// itself is not the end of the gap.
    AwaitingData {
        gap_from: Option<DateTime<Utc>>,
    },
    Backfilling,
}

pub struct MarketDataFeed {
    settings: FeedSettings,
    book: BarBook,
    latest: foldhash::HashMap<String, Latest>,
    subscribers: Vec<AddBarSubscriber>,
    split_listeners: Vec<Recipient<SplitApplied>>,
    /// Told of every trading status (halt or resumption) as it comes: the risk checks.
    status_listeners: Vec<Recipient<SymbolStatus>>,
    /// Told of minute closes as marks ([`AddMarkListener`]): the risk checks.
    mark_listeners: Vec<Recipient<BarClosed>>,
    rest: Option<BrokerRef>,
    phase: Phase,
    held: held::Held,
    stats: FeedStats,
    /// Told when REST polls cover the stream's silence.
    health: Option<Recipient<StreamCovered>>,
    polling: bool,
    stream_down: bool,
    /// When market data last came from the stream.
    last_data: std::time::Instant,
    /// The start's warm-up has been handed to the subscribers there were (or had nothing to
    /// give): one that registers from now on catches up from the book ([`AddBarSubscriber`],
    /// [`AddMarkListener`]), whatever the order the daemon's threads ran in.
    warmed_up: bool,
}

impl MarketDataFeed {
    pub fn new(settings: FeedSettings, rest: Option<BrokerRef>) -> Self {
        let hold_limit = settings.hold_limit;
        MarketDataFeed {
            book: BarBook::new(&settings.intervals, settings.warmup_bars.max(1)),
            settings,
            latest: foldhash::HashMap::default(),
            subscribers: Vec::new(),
            split_listeners: Vec::new(),
            status_listeners: Vec::new(),
            mark_listeners: Vec::new(),
            rest,
            phase: Phase::WarmingUp,
            held: held::Held::new(hold_limit),
            stats: FeedStats::default(),
            health: None,
            polling: false,
            stream_down: false,
            last_data: std::time::Instant::now(),
            warmed_up: false,
        }
    }

    /// Sends closed bars to the subscribers: live ones (`arrived`: when the market data that
    /// closed them arrived) as spans, historical ones (`None`: warm-up, backfill) flagged.
    fn emit(&mut self, closed: Vec<Closed>, arrived: Option<std::time::Instant>) {
        self.emit_as(closed, arrived, false);
    }

    fn emit_as(
        &mut self,
        closed: Vec<Closed>,
        arrived: Option<std::time::Instant>,
        degraded: bool,
    ) {
        let historical = arrived.is_none();
        for c in closed {
            self.stats.bars_closed += 1;
            tracing::debug!(symbol = %c.symbol, interval = c.interval.name(), start = %c.bar.start, close = %c.bar.close, historical, "bar closed");
            // A live bar is a span (child of the stream message that closed it): the first
            // stage of the trace that may end in a fill.
            let trace = if historical {
                crate::telemetry::TraceContext::default()
            } else {
                let span = tracing::info_span!(
                    "market.bar",
                    symbol = %c.symbol,
                    interval = c.interval.name(),
                    start = %c.bar.start,
                    close = %c.bar.close,
                    correlation_id = %format!("{}-{}", c.symbol, c.bar.start.timestamp()),
                );
                crate::telemetry::TraceContext::of(&span).arrived_at(arrived)
            };
            let msg = BarClosed {
                symbol: c.symbol.to_string(),
                interval: c.interval,
                bar: c.bar,
                historical,
                degraded,
                trace,
            };
            if !historical && msg.interval == Interval::M1 {
                for l in &self.mark_listeners {
                    l.do_send(msg.clone());
                }
            }
            for s in &self.subscribers {
                s.closed.do_send(msg.clone());
            }
        }
    }

    fn apply(&mut self, batch: MarketBatch) {
        let arrived = Some(batch.received_at);
        for m in batch.data {
            match m {
                DataMessage::Trade(t) => {
                    self.stats.trades += 1;
                    let closed = self.book.on_trade(&t.symbol, t.price, t.size, t.timestamp);
                    if !closed.is_empty() {
                        // The trade that closed bars: the root of their traces (a quote may be, below).
                        let root = tracing::info_span!(
                            parent: None,
                            "stream.message",
                            kind = "trade",
                            symbol = %t.symbol,
                            price = %t.price,
                            size = %t.size,
                            event_time = %t.timestamp,
                        );
                        let _in = root.enter();
                        self.emit(closed, arrived);
                    }
                    match self.latest.get_mut(t.symbol.as_str()) {
                        Some(l) => l.trade = Some(t),
                        None => {
                            self.latest.insert(
                                t.symbol.to_string(),
                                Latest {
                                    trade: Some(t),
                                    ..Latest::default()
                                },
                            );
                        }
                    }
                }
                DataMessage::Quote(q) => {
                    self.stats.quotes += 1;
                    let closed = self.book.advance_to(q.timestamp);
                    if !closed.is_empty() {
                        let root = tracing::info_span!(
                            parent: None,
                            "stream.message",
                            kind = "quote",
                            symbol = %q.symbol,
                            event_time = %q.timestamp,
                        );
                        let _in = root.enter();
                        self.emit(closed, arrived);
                    }
                    match self.latest.get_mut(q.symbol.as_str()) {
                        Some(l) => l.quote = Some(q),
                        None => {
                            self.latest.insert(
                                q.symbol.to_string(),
                                Latest {
                                    quote: Some(q),
                                    ..Latest::default()
                                },
                            );
                        }
                    }
                }
                // Minute bars from the server are not needed: ours come from the same trades.
                DataMessage::Bar(_) => self.stats.bars += 1,
                DataMessage::Status(st) => {
                    let halted = is_halt(&st.status_code);
                    if halted {
                        tracing::warn!(symbol = %st.symbol, code = %st.status_code, message = %st.status_message, reason = %st.reason_code, "trading halt: no new entries on the symbol until it resumes");
                    } else {
                        tracing::info!(symbol = %st.symbol, code = %st.status_code, message = %st.status_message, "trading status");
                    }
                    self.stats.statuses += 1;
                    for l in &self.status_listeners {
                        l.do_send(SymbolStatus {
                            symbol: st.symbol.clone(),
                            halted,
                        });
                    }
                    let l = self.latest.entry(st.symbol.clone()).or_default();
                    l.halted = halted.then_some(*st);
                }
                DataMessage::Luld(band) => {
                    self.stats.lulds += 1;
                    let symbol = band.symbol.clone();
                    self.latest.entry(symbol).or_default().luld = Some(band);
                }
                _ => {}
            }
        }
        self.stats.late_trades = self.book.late_trades;
    }

    /// Routes one batch through the phases: a gap marker moves Live to AwaitingData; the first
    /// data after it starts the backfill; anything that arrives while not Live is held.
    fn process(&mut self, mut batch: MarketBatch, ctx: &mut Context<Self>) {
        // A marker is consumed here, once: the batch may be held and replayed.
        if let Some(gap_from) = batch.gap.take() {
            match &mut self.phase {
                Phase::Live => self.phase = Phase::AwaitingData { gap_from },
                Phase::AwaitingData { gap_from: earlier } => {
                    // Reconnected again before any data: the gap began at the earlier time.
                    *earlier = match (*earlier, gap_from) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                _ => {}
            }
        }
        match self.phase {
            Phase::Live => self.apply(batch),
            Phase::AwaitingData { gap_from } => {
                let first_data = batch.data.iter().filter_map(data_time).min();
                self.hold(batch);
                if let Some(until) = first_data {
                    self.backfill(gap_from, until, ctx);
                }
            }
            Phase::WarmingUp | Phase::Backfilling => self.hold(batch),
        }
    }

    /// Holds live data until the feed is live; past the bound what was held is let go (see
    /// [`held`]) and the statuses among it applied now.
    fn hold(&mut self, batch: MarketBatch) {
        if let Some(now) = self.held.push(batch) {
            self.apply(now);
        }
    }
}

/// The market-data stream's state: down, the feed polls REST bars at its next tick.
impl Handler<StreamEvent> for MarketDataFeed {
    type Result = ();
    fn handle(&mut self, msg: StreamEvent, _: &mut Context<Self>) {
        if msg.stream != StreamKind::MarketData {
            return;
        }
        if let StreamEventKind::StateChanged { to, .. } = msg.kind {
            self.stream_down =
                matches!(to, ConnectionState::Reconnecting | ConnectionState::Failed);
        }
    }
}

impl Handler<SetCoverListener> for MarketDataFeed {
    type Result = ();
    fn handle(&mut self, msg: SetCoverListener, _: &mut Context<Self>) {
        self.health = Some(msg.0);
    }
}

/// Whether a `statuses` code stops trading: `H` (trading halt), `Q` (quotation only, before a
/// resumption), `P` (volatility trading pause), `M` (volatility pause, quotation only).
/// `T` (trading resumption) and anything else do not.
pub fn is_halt(code: &str) -> bool {
    matches!(code, "H" | "Q" | "P" | "M")
}

fn data_time(m: &DataMessage) -> Option<DateTime<Utc>> {
    match m {
        DataMessage::Trade(t) => Some(t.timestamp),
        DataMessage::Quote(q) => Some(q.timestamp),
        DataMessage::Bar(b) => Some(b.timestamp),
        _ => None,
    }
}

/// Under the daemon's supervision: it keeps its state across a restart (it holds no
/// connection of its own).
impl actix::Supervised for MarketDataFeed {
    fn restarting(&mut self, _: &mut Context<Self>) {
        tracing::warn!(actor = "MarketDataFeed", "actor restarting");
    }
}

impl Actor for MarketDataFeed {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.settings.mailbox);
        self.warm_up(ctx);
        if !self.settings.rest_poll.is_zero() {
            ctx.run_interval(self.settings.rest_poll, |act, ctx| act.rest_tick(ctx));
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        let unfinished = self.book.unfinished();
        if !unfinished.is_empty() {
            tracing::info!(
                bars = unfinished.len(),
                "shutdown: bars still open are incomplete and are not emitted"
            );
            for (symbol, interval, bar) in unfinished {
                tracing::debug!(%symbol, interval = interval.name(), start = %bar.start, close = %bar.close, "unfinished bar discarded");
            }
        }
    }
}

impl Handler<MarketBatch> for MarketDataFeed {
    type Result = ();

    fn handle(&mut self, batch: MarketBatch, ctx: &mut Context<Self>) {
        if !batch.data.is_empty() {
            self.last_data = std::time::Instant::now();
            if self.stats.degraded {
                tracing::info!(
                    rest_minutes = self.stats.rest_minutes,
                    "market data streaming again: no longer degraded"
                );
                self.stats.degraded = false;
            }
        }
        self.process(batch, ctx);
    }
}

impl Handler<AddSymbols> for MarketDataFeed {
    type Result = ResponseActFuture<Self, Result<usize, String>>;

    fn handle(&mut self, msg: AddSymbols, _: &mut Context<Self>) -> Self::Result {
        let new: Vec<String> = msg
            .0
            .into_iter()
            .filter(|s| !self.settings.symbols.contains(s))
            .collect();
        let rest = self.rest.clone();
        let mut settings = self.settings.clone();
        settings.symbols = new.clone();
        let nothing_new = new.is_empty();
        Box::pin(
            async move {
                match (rest, nothing_new) {
                    (Some(rest), false) => fetch_warmup(&rest, &settings)
                        .await
                        .map(Some)
                        .map_err(|e| e.to_string()),
                    _ => Ok(None),
                }
            }
            .into_actor(self)
            .map(move |result, act, ctx| {
                let mut n = 0;
                if let Some(warm) = result? {
                    n = act.apply_warmup(warm, None, ctx);
                }
                tracing::info!(symbols = ?new, bars = n, "symbols added to the feed");
                act.settings.symbols.extend(new);
                Ok(n)
            }),
        )
    }
}

impl Handler<AddMarkListener> for MarketDataFeed {
    type Result = ();
    /// Registered after the warm-up was handed out, it is first given each symbol's last
    /// minute, as the warm-up's listeners were.
    fn handle(&mut self, msg: AddMarkListener, _: &mut Context<Self>) {
        if self.warmed_up {
            for symbol in &self.settings.symbols {
                if let Some(bar) = self.book.history(symbol, Interval::M1, 1).pop() {
                    msg.0.do_send(history::history_mark(symbol, bar));
                }
            }
        }
        self.mark_listeners.push(msg.0);
    }
}

impl Handler<AddStatusListener> for MarketDataFeed {
    type Result = ();
    fn handle(&mut self, msg: AddStatusListener, _: &mut Context<Self>) {
        self.status_listeners.push(msg.0);
    }
}

impl Handler<AddSplitListener> for MarketDataFeed {
    type Result = ();
    fn handle(&mut self, msg: AddSplitListener, _: &mut Context<Self>) {
        self.split_listeners.push(msg.0);
    }
}

/// A split of a symbol: its bars so far are in the old shares. The feed forgets them, tells
/// its listeners (the strategy starts the symbol's indicators over), and fetches the
/// symbol's history again, adjusted, before it handles anything else.
impl Handler<SplitApplied> for MarketDataFeed {
    type Result = ();
    fn handle(&mut self, msg: SplitApplied, ctx: &mut Context<Self>) {
        if !self.settings.symbols.contains(&msg.symbol) {
            return;
        }
        self.book.forget(&msg.symbol);
        for l in &self.split_listeners {
            l.do_send(msg.clone());
        }
        let Some(rest) = self.rest.clone() else {
            return;
        };
        let mut settings = self.settings.clone();
        settings.symbols = vec![msg.symbol.clone()];
        let symbol = msg.symbol;
        ctx.wait(
            async move { fetch_warmup(&rest, &settings).await }
                .into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok(warm) => {
                        let n = act.apply_warmup(warm, None, ctx);
                        tracing::info!(symbol = %symbol, bars = n, "history fetched again after a split");
                    }
                    Err(e) => {
                        tracing::warn!(symbol = %symbol, error = %e, "cannot fetch history after a split; bars start again from live trades")
                    }
                }),
        );
    }
}

impl Handler<RemoveSymbols> for MarketDataFeed {
    type Result = ();
    fn handle(&mut self, msg: RemoveSymbols, _: &mut Context<Self>) {
        self.settings.symbols.retain(|s| !msg.0.contains(s));
        tracing::info!(symbols = ?msg.0, "symbols removed from the feed");
    }
}

impl Handler<AddBarSubscriber> for MarketDataFeed {
    type Result = ();

    /// Registered after the warm-up was handed out, it catches up first: the bars the book
    /// keeps, before any live one.
    fn handle(&mut self, msg: AddBarSubscriber, ctx: &mut Context<Self>) {
        if self.warmed_up {
            self.catch_up(msg.history.clone(), ctx);
        }
        self.subscribers.push(msg);
    }
}

impl Handler<GetBars> for MarketDataFeed {
    type Result = MessageResult<GetBars>;

    fn handle(&mut self, msg: GetBars, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.book.history(&msg.symbol, msg.interval, msg.n))
    }
}

impl Handler<GetLatest> for MarketDataFeed {
    type Result = MessageResult<GetLatest>;

    fn handle(&mut self, msg: GetLatest, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.latest.get(&msg.0).cloned().unwrap_or_default())
    }
}

impl Handler<GetFeedStats> for MarketDataFeed {
    type Result = MessageResult<GetFeedStats>;

    fn handle(&mut self, _: GetFeedStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.stats.clone())
    }
}
