//! The feed's history over REST: warm-up before going live, backfill after a gap, the
//! split-adjusted refetch after a split, and the closed minutes polled while the stream is
//! down or silent.

use super::*;

impl MarketDataFeed {
    fn go_live(&mut self, ctx: &mut Context<Self>) {
        self.warmed_up = true;
        let let_go = self.held.take_let_go();
        if let_go > 0 {
            // Live data was let go while held: the minutes it would have built come from REST,
            // from the last minute closed up to the first data held after it, as after a
            // reconnect; what is held after it waits for that.
            self.stats.held_let_go += let_go;
            tracing::warn!(
                let_go,
                limit = self.settings.hold_limit,
                "live market data held past the bound while not live was let go; its minutes come from REST"
            );
            self.phase = Phase::AwaitingData { gap_from: None };
            self.stats.live = true;
            for batch in self.held.take_all() {
                self.process(batch, ctx);
            }
            return;
        }
        self.phase = Phase::Live;
        self.stats.live = true;
        while self.phase == Phase::Live {
            let Some(batch) = self.held.pop_front() else {
                break;
            };
            self.process(batch, ctx);
        }
    }

    /// Seeds the book with fetched history and hands it to the subscribers, a symbol's bars
    /// of an interval in one [`HistoryBars`] (shared between them, not copied), then today's
    /// minutes; returns the number of history bars. `then_live`: the start's warm-up, said
    /// and followed by going live when done.
    pub(super) fn apply_warmup(
        &mut self,
        warm: Warmup,
        then_live: Option<WarmedUp>,
        ctx: &mut Context<Self>,
    ) -> usize {
        let n = warm.history.iter().map(|(_, _, b)| b.len()).sum();
        self.deliver_history(
            warm.history.into(),
            warm.today,
            then_live.map(|w| (w, n)),
            ctx,
        );
        n
    }

    /// [`HISTORY_AT_ONCE`] symbols' history at a time: the feed waits until the subscribers
    /// took the last of them before the next (each symbol's bars held twice meanwhile, the
    /// book's and the message's), and handles no other message until all are taken, so live
    /// data stays behind the history.
    fn deliver_history(
        &mut self,
        mut rest: std::collections::VecDeque<(String, Interval, Vec<OhlcBar>)>,
        today: Vec<(String, Vec<OhlcBar>)>,
        then_live: Option<(WarmedUp, usize)>,
        ctx: &mut Context<Self>,
    ) {
        if rest.is_empty() {
            for (symbol, minutes) in today {
                for b in minutes {
                    let closed = self.book.on_minute_bar(&symbol, b);
                    self.emit(closed, None);
                }
            }
            if let Some((w, bars)) = then_live {
                tracing::info!(
                    bars,
                    symbols = self.settings.symbols.len(),
                    live_messages_held = w.held,
                    live_from = %w.live_from.to_rfc3339(),
                    fetch_ms = w.fetched.as_millis() as u64,
                    hand_over_ms = w.asked.elapsed().saturating_sub(w.fetched).as_millis() as u64,
                    "market data warmed up from REST"
                );
                self.go_live(ctx);
            }
            return;
        }
        let mut lot = Vec::new();
        while lot.len() < HISTORY_AT_ONCE {
            let Some((symbol, interval, bars)) = rest.pop_front() else {
                break;
            };
            self.stats.bars_closed += bars.len() as u64;
            self.book.seed_history(&symbol, interval, &bars);
            if interval == Interval::M1
                && let Some(bar) = bars.last()
            {
                for l in &self.mark_listeners {
                    l.do_send(history_mark(&symbol, bar.clone()));
                }
            }
            lot.push(HistoryBars {
                symbol,
                interval,
                bars: bars.into(),
            });
        }
        let to: Vec<Recipient<HistoryBars>> =
            self.subscribers.iter().map(|s| s.history.clone()).collect();
        ctx.wait(
            actix::fut::wrap_future(hand_out(lot, &to)).map(move |_, act: &mut Self, ctx| {
                act.deliver_history(rest, today, then_live, ctx)
            }),
        );
    }

    pub(super) fn warm_up(&mut self, ctx: &mut Context<Self>) {
        self.warmed_up = false;
        let Some(rest) = self.rest.clone() else {
            tracing::info!("market data feed has no REST client: no warm-up");
            self.go_live(ctx);
            return;
        };
        let settings = self.settings.clone();
        let asked = std::time::Instant::now();
        let work = async move { fetch_warmup(&rest, &settings).await };
        ctx.spawn(work.into_actor(self).map(move |result, act, ctx| match result {
            Ok(warm) => {
                let done = WarmedUp {
                    asked,
                    fetched: asked.elapsed(),
                    held: act.held.len(),
                    live_from: warm.live_from,
                };
                act.apply_warmup(warm, Some(done), ctx);
            }
            Err(e) => {
                tracing::warn!(error = %e, "warm-up from REST failed; bars start from live trades");
                act.go_live(ctx);
            }
        }));
    }

    /// A bar subscriber registered after the warm-up was handed out: the bars the book keeps
    /// of every symbol and interval, a [`HistoryBars`] each as the warm-up's were,
    /// [`HISTORY_AT_ONCE`] at a time with the feed waiting for each lot to be taken (it
    /// handles nothing else meanwhile), so no live bar reaches the subscriber before its
    /// history.
    pub(super) fn catch_up(&mut self, to: Recipient<HistoryBars>, ctx: &mut Context<Self>) {
        let pending = self
            .settings
            .symbols
            .iter()
            .flat_map(|s| self.settings.intervals.iter().map(move |i| (s.clone(), *i)))
            .collect();
        self.catch_up_from(to, pending, ctx);
    }

    fn catch_up_from(
        &mut self,
        to: Recipient<HistoryBars>,
        mut pending: std::collections::VecDeque<(String, Interval)>,
        ctx: &mut Context<Self>,
    ) {
        let mut lot = Vec::new();
        while lot.len() < HISTORY_AT_ONCE {
            let Some((symbol, interval)) = pending.pop_front() else {
                break;
            };
            let bars = self
                .book
                .history(&symbol, interval, self.settings.warmup_bars);
            if !bars.is_empty() {
                lot.push(HistoryBars {
                    symbol,
                    interval,
                    bars: bars.into(),
                });
            }
        }
        if lot.is_empty() {
            return;
        }
        let taken = hand_out(lot, std::slice::from_ref(&to));
        ctx.wait(
            actix::fut::wrap_future(taken).map(move |_, act: &mut Self, ctx| {
                if !pending.is_empty() {
                    act.catch_up_from(to, pending, ctx);
                }
            }),
        );
    }

    /// Fetches the complete minutes from the last one closed (or `gap_from`) up to the minute
    /// of `until`, the first data after the gap, and folds them in before the held data.
    pub(super) fn backfill(
        &mut self,
        gap_from: Option<DateTime<Utc>>,
        until: DateTime<Utc>,
        ctx: &mut Context<Self>,
    ) {
        let Some(rest) = self.rest.clone() else {
            self.go_live(ctx);
            return;
        };
        let from = self
            .earliest_last_minute()
            .or(gap_from)
            .or(self.book.watermark());
        let Some(from) = from else {
            self.go_live(ctx);
            return;
        };
        let until = Interval::M1.start_of(until);
        self.phase = Phase::Backfilling;
        self.stats.backfills += 1;
        let work = minutes_since(rest, self.settings.symbols.clone(), from, Some(until));
        ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
            match result {
                Ok(page) => {
                    let n = act.book_minutes(page, |b| b.t < until, None);
                    act.stats.backfilled_minutes += n as u64;
                    tracing::info!(from = %from, until = %until, minutes = n, "market data gap backfilled from REST");
                }
                Err(e) => tracing::warn!(error = %e, "gap backfill from REST failed; the gap stays"),
            }
            act.go_live(ctx);
        }));
    }

    /// Every `rest_poll`: when the market-data stream is down, or has sent nothing for a
    /// whole poll interval, closed minute bars since the last one known come from REST, into
    /// the book and on to the strategy as live bars marked degraded. (When the market is
    /// closed the answer holds nothing new and nothing happens.)
    pub(super) fn rest_tick(&mut self, ctx: &mut Context<Self>) {
        let quiet = self.last_data.elapsed() >= self.settings.rest_poll;
        let phase_ok = matches!(self.phase, Phase::Live | Phase::AwaitingData { .. });
        if !self.stats.live || !phase_ok || self.polling || !(self.stream_down || quiet) {
            return;
        }
        let Some(rest) = self.rest.clone() else {
            return;
        };
        let from = self.earliest_last_minute().or(self.book.watermark());
        let Some(from) = from else {
            return;
        };
        self.polling = true;
        let symbols = self.settings.symbols.clone();
        let work = async move {
            // The market's time, not this machine's: which minutes are complete is the
            // broker's to say (this machine's clock may be off; the simulator's market runs
            // ahead of it at speed, and with this machine's time no minute of it was ever
            // complete, so a stream that was down stayed without bars).
            let now = rest.get_clock().await?.timestamp.with_timezone(&Utc);
            Ok::<_, crate::alpaca::BrokerError>((
                minutes_since(rest, symbols, from, None).await?,
                now,
            ))
        };
        ctx.spawn(work.into_actor(self).map(|result, act, _| {
            act.polling = false;
            match result {
                Ok((page, now)) => {
                    // Only complete minutes (Alpaca may list the one in progress).
                    let n = act.book_minutes(
                        page,
                        |b| Interval::M1.end_of(b.t) <= now,
                        Some(std::time::Instant::now()),
                    );
                    if n == 0 {
                        tracing::debug!("market data quiet and REST has no newer bar");
                        return;
                    }
                    if !act.stats.degraded {
                        tracing::warn!(every_ms = act.settings.rest_poll.as_millis() as u64, "market data stream down or silent: bars come from REST meanwhile (degraded)");
                    }
                    act.stats.degraded = true;
                    act.stats.rest_minutes += n as u64;
                    tracing::info!(minutes = n, "bars taken from REST (degraded)");
                    if let Some(h) = &act.health {
                        h.do_send(StreamCovered {
                            stream: StreamKind::MarketData,
                            bars: n,
                        });
                    }
                }
                Err(e) => {
                    act.stats.rest_poll_failures += 1;
                    tracing::warn!(error = %e, "market data stream down or silent, and REST bars failed too");
                }
            }
        }));
    }

    /// The oldest of the symbols' last closed minutes: where a REST read of minutes starts.
    fn earliest_last_minute(&self) -> Option<DateTime<Utc>> {
        self.settings
            .symbols
            .iter()
            .filter_map(|s| self.book.last_closed_minute(s))
            .min()
    }

    /// Books REST minute bars that pass `keep` and hands on what they close: historical for
    /// a backfill (`arrived: None`), live but degraded for the polls that stand in for a
    /// stream that is down. Answers the minutes booked.
    fn book_minutes(
        &mut self,
        page: BarsPage,
        keep: impl Fn(&Bar) -> bool,
        arrived: Option<std::time::Instant>,
    ) -> usize {
        let mut n = 0;
        for (symbol, bars) in page.bars {
            for b in bars.iter().filter(|b| keep(b)) {
                let closed = self.book.on_minute_bar(&symbol, OhlcBar::from(b));
                n += closed.iter().filter(|c| c.interval == Interval::M1).count();
                self.emit_as(closed, arrived, arrived.is_some());
            }
        }
        n
    }
}

/// Every minute bar of `symbols` from `from` (to before `until`), all pages.
async fn minutes_since(
    rest: BrokerRef,
    symbols: Vec<String>,
    from: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
) -> Result<BarsPage, crate::alpaca::BrokerError> {
    let mut q = BarsQuery::new(
        &symbols.iter().map(String::as_str).collect::<Vec<_>>(),
        TimeFrame::MINUTE,
    );
    q.start = Some(from);
    q.end = until.map(|u| u - Duration::seconds(1));
    q.limit = Some(MAX_BARS_PER_PAGE);
    rest.get_bars(&q).await
}

/// Hands a lot of history to each of `to`, message by message, and resolves once each has
/// taken the last (the feed waits for that before the next lot: a warm-up's and a late
/// subscriber's catch-up alike).
fn hand_out(
    lot: Vec<HistoryBars>,
    to: &[Recipient<HistoryBars>],
) -> impl std::future::Future<Output = ()> + 'static {
    let last = lot.len().saturating_sub(1);
    let mut taken = Vec::new();
    for (i, msg) in lot.into_iter().enumerate() {
        for r in to {
            if i == last {
                taken.push(r.send(msg.clone()));
            } else {
                r.do_send(msg.clone());
            }
        }
    }
    async move {
        futures_util::future::join_all(taken).await;
    }
}

/// A symbol's last minute of history as a mark (the risk checks' price of what is held).
pub(super) fn history_mark(symbol: &str, bar: OhlcBar) -> BarClosed {
    BarClosed {
        symbol: symbol.to_string(),
        interval: Interval::M1,
        bar,
        historical: true,
        degraded: false,
        trace: Default::default(),
    }
}

/// Symbols whose warm-up history is handed to the subscribers before the feed waits for
/// them to take it: a round trip between threads per 50 symbols, not per symbol (1,000 of
/// them were a quarter of start → ready), and no more than 50 symbols' bars held twice.
const HISTORY_AT_ONCE: usize = 50;

/// Alpaca's largest bars page: a tenth of the requests of the default 1,000 (the request
/// budget is 200 a minute).
const MAX_BARS_PER_PAGE: u32 = 10_000;

/// The start's warm-up, fetched: what the feed says once it is handed on.
pub(super) struct WarmedUp {
    asked: std::time::Instant,
    fetched: std::time::Duration,
    /// Live messages held while it was fetched.
    held: usize,
    live_from: DateTime<Utc>,
}

pub(super) struct Warmup {
    history: Vec<(String, Interval, Vec<OhlcBar>)>,
    today: Vec<(String, Vec<OhlcBar>)>,
    /// The first minute not in the warm-up: live bars start there.
    live_from: DateTime<Utc>,
}

/// Reads every page of a bars query, handing each page's bars to `each` as they come, so no
/// more than a page of the broker's answer is held at once (1,000 symbols × 200 bars would be
/// tens of MB).
async fn for_each_bars_page(
    rest: &BrokerRef,
    query: &BarsQuery,
    mut each: impl FnMut(String, Vec<Bar>),
) -> Result<(), crate::alpaca::BrokerError> {
    let mut query = query.clone();
    loop {
        let page = rest.get_bars_page(&query).await?;
        for (symbol, bars) in page.bars {
            each(symbol, bars);
        }
        match page.next_page_token {
            Some(token) if !token.is_empty() => query.page_token = Some(token),
            _ => return Ok(()),
        }
    }
}

/// Symbols per chain of pages in the warm-up: 1,000 symbols are read as four chains side by
/// side, so the broker prepares one page while the feed decodes another (one chain waited
/// for each page in turn: most of start → ready with 1,000 symbols, docs/performance.md).
const WARMUP_CHUNK: usize = 250;

/// Every page of `query` for `symbols`, a chain of pages per [`WARMUP_CHUNK`] symbols, the
/// chains concurrently: each folds its pages into its own `S`, given back in chunk order.
async fn for_each_chunk<S: Default>(
    rest: &BrokerRef,
    query: &BarsQuery,
    symbols: &[&str],
    fold: impl Fn(&mut S, String, Vec<Bar>) + Copy,
) -> Result<Vec<S>, crate::alpaca::BrokerError> {
    let chains = symbols.chunks(WARMUP_CHUNK).map(|chunk| {
        let mut q = query.clone();
        q.symbols = chunk.join(",");
        async move {
            let mut state = S::default();
            for_each_bars_page(rest, &q, |symbol, bars| fold(&mut state, symbol, bars)).await?;
            Ok::<S, crate::alpaca::BrokerError>(state)
        }
    });
    futures_util::future::join_all(chains)
        .await
        .into_iter()
        .collect()
}

type Kept = BTreeMap<String, std::collections::VecDeque<OhlcBar>>;

/// The last `warmup_bars` complete bars of `interval` since `start` (for days, only those
/// before today: today is built live), per symbol.
async fn warmup_bars_of(
    rest: &BrokerRef,
    settings: &FeedSettings,
    interval: Interval,
    symbols: &[&str],
    start: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Kept, crate::alpaca::BrokerError> {
    let mut q = BarsQuery::new(symbols, TimeFrame::from(interval));
    q.start = Some(start);
    q.end = Some(now);
    q.limit = Some(MAX_BARS_PER_PAGE);
    q.adjustment = Some(settings.adjustment.clone());
    let cutoff = if interval == Interval::D1 {
        Interval::D1.start_of(now)
    } else {
        Interval::M1.start_of(now)
    };
    let warmup_bars = settings.warmup_bars;
    let chunks = for_each_chunk(rest, &q, symbols, |kept: &mut Kept, symbol, bars| {
        // At its final size from the start: a deque grown by doubling holds 256 bars for
        // 200, a quarter more of the warm-up's peak with 1,000 symbols.
        let h = kept
            .entry(symbol)
            .or_insert_with(|| std::collections::VecDeque::with_capacity(warmup_bars));
        for b in bars.iter().filter(|b| interval.end_of(b.t) <= cutoff) {
            if h.len() == warmup_bars {
                h.pop_front();
            }
            h.push_back(OhlcBar::from(b));
        }
    })
    .await?;
    // The chunks hold disjoint symbols.
    Ok(chunks.into_iter().flatten().collect())
}

/// Each interval's last bars (complete ones only), then today's minutes.
pub(super) async fn fetch_warmup(
    rest: &BrokerRef,
    settings: &FeedSettings,
) -> Result<Warmup, crate::alpaca::BrokerError> {
    let now = rest.get_clock().await?.timestamp.with_timezone(&Utc);
    let symbols: Vec<&str> = settings.symbols.iter().map(String::as_str).collect();
    let mut history: Vec<(String, Interval, Vec<OhlcBar>)> = Vec::new();
    let today_start = Interval::D1.start_of(now);
    for interval in settings.intervals.iter().copied() {
        // Back from the start of the bar in progress: only complete bars count.
        let current = interval.start_of(now);
        let bar = interval.end_of(current) - current;
        let lookback = match interval {
            Interval::D1 => Duration::days(settings.warmup_bars as i64 * 7 / 5 + 10),
            // Intraday bars exist only in sessions: about 6.5 hours a day, five days a week.
            _ => bar * (settings.warmup_bars as i32) * 4 * 7 / 5 + Duration::days(3),
        };
        let wide = now - lookback;
        // Intraday: first only the open market that holds `warmup_bars` bars of a symbol
        // that trades every minute (the exchange calendar's sessions back from the bar in
        // progress, to the start of the bar the span begins in); the symbols that came back
        // short are asked again over the wide window. A symbol that trades every minute is
        // read once, not four sessions' worth.
        let narrow = match interval {
            Interval::D1 => None,
            _ => crate::domain::calendar::open_span_before(
                current,
                bar * settings.warmup_bars as i32,
            )
            .map(|start| interval.start_of(start))
            .filter(|start| *start > wide),
        };
        let mut kept = warmup_bars_of(
            rest,
            settings,
            interval,
            &symbols,
            narrow.unwrap_or(wide),
            now,
        )
        .await?;
        if narrow.is_some() {
            let short: Vec<&str> = symbols
                .iter()
                .copied()
                .filter(|s| kept.get(*s).map_or(0, |h| h.len()) < settings.warmup_bars)
                .collect();
            if !short.is_empty() {
                tracing::debug!(interval = ?interval, symbols = short.len(), "warm-up: fewer bars than asked in the open market's span; asking those again over a wider window");
                kept.extend(warmup_bars_of(rest, settings, interval, &short, wide, now).await?);
            }
        }
        history.extend(
            kept.into_iter()
                .map(|(symbol, bars)| (symbol, interval, Vec::from(bars))),
        );
    }
    let mut q = BarsQuery::new(&symbols, TimeFrame::MINUTE);
    q.start = Some(today_start);
    q.end = Some(now);
    q.limit = Some(MAX_BARS_PER_PAGE);
    q.adjustment = Some(settings.adjustment.clone());
    let today = for_each_chunk(
        rest,
        &q,
        &symbols,
        |today: &mut BTreeMap<String, Vec<OhlcBar>>, symbol, bars| {
            today
                .entry(symbol)
                .or_default()
                .extend(bars.iter().map(OhlcBar::from));
        },
    )
    .await?;
    Ok(Warmup {
        history,
        today: today.into_iter().flatten().collect(),
        live_from: Interval::M1.start_of(now),
    })
}
