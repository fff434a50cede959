//! The market-data consumer's side of the overload policy: a thin shell over
//! [`Backlog`](crate::connection::Backlog) that hands batches to the feed's mailbox; and the
//! trades of strategies that trade on ticks, handed to them frame by frame.

use super::*;
use crate::alpaca::stream::Wanted;

/// Delivers market data to the consumer under the overload policy of [`Backlog`] (trades
/// and bars never dropped, quotes conflated, back-pressure to the socket past `max_pending`).
/// Ticks follow the same policy: a strategy whose mailbox is full has its trades held, in
/// order, and past `max_pending` held the session waits for it.
pub(super) struct Forwarder {
    sink: Option<Recipient<MarketBatch>>,
    backlog: Backlog,
    ticks: Vec<TickRoute>,
    /// The conditions the tick subscribers want (`None`: one of them wants every trade).
    tick_conditions: Option<Vec<String>>,
    max_pending: usize,
}

/// One tick subscriber and its trades not yet in its mailbox.
struct TickRoute {
    subscriber: TradeSubscriber,
    /// The subscriber's condition as a code, made once (from its text for each trade, the
    /// test was most of the routing's time under a flood).
    condition: Option<stream::Code>,
    held: Vec<stream::StreamTrade>,
    /// When the frame of the oldest held trade arrived.
    since: Option<Instant>,
    /// How many were held as the frame being routed began.
    mark: usize,
}

impl TickRoute {
    /// Where a frame's routing starts: [`Self::rewind`] goes back to it.
    fn mark(&mut self) {
        self.mark = self.held.len();
    }

    /// Takes back what was held since [`Self::mark`] (`since` is set exactly while trades
    /// are held).
    fn rewind(&mut self) {
        self.held.truncate(self.mark);
        if self.held.is_empty() {
            self.since = None;
        }
    }

    /// Hands what is held to the subscriber if its mailbox has room.
    fn offer(&mut self) {
        let (Some(arrived), false) = (self.since, self.held.is_empty()) else {
            return;
        };
        let trades = std::mem::take(&mut self.held);
        match self
            .subscriber
            .recipient
            .try_send(TradeTicks { trades, arrived })
        {
            Ok(()) => self.since = None,
            Err(SendError::Full(back)) => self.held = back.trades,
            Err(SendError::Closed(_)) => {
                self.since = None;
                tracing::warn!("a tick subscriber is gone; dropping its trades");
            }
        }
    }
}

impl Forwarder {
    pub(super) fn new(
        sink: Option<Recipient<MarketBatch>>,
        ticks: Vec<TradeSubscriber>,
        max_pending: usize,
    ) -> Self {
        let tick_conditions = ticks.iter().map(|t| t.condition.clone()).collect();
        Forwarder {
            sink,
            backlog: Backlog::new(max_pending),
            tick_conditions,
            ticks: ticks
                .into_iter()
                .map(|subscriber| TickRoute {
                    condition: subscriber.condition.as_deref().map(stream::Code::new),
                    subscriber,
                    held: Vec::new(),
                    since: None,
                    mark: 0,
                })
                .collect(),
            max_pending,
        }
    }

    /// Holds one message; `arrived`: when its frame arrived.
    pub(super) fn push(&mut self, m: DataMessage, arrived: Instant, metrics: &StreamMetrics) {
        self.backlog.push(m, arrived, metrics);
    }

    /// Holds one frame's data messages; `arrived`: when it arrived.
    pub(super) fn push_frame(
        &mut self,
        frame: Vec<DataMessage>,
        arrived: Instant,
        metrics: &StreamMetrics,
    ) {
        self.backlog.push_frame(frame, arrived, metrics);
    }

    /// The trades the strategies that trade on ticks want (`None`: there are none).
    pub(super) fn ticks_wanted(&self) -> Option<Wanted<'_>> {
        if self.ticks.is_empty() {
            return None;
        }
        Some(match &self.tick_conditions {
            Some(codes) => Wanted::WithCondition(codes),
            None => Wanted::Every,
        })
    }

    /// Hands a frame's trades to the tick subscribers that want them, before the frame goes
    /// on to the feed and whatever the feed's backlog. Answers whether it took any.
    pub(super) fn send_ticks<'t>(
        &mut self,
        trades: impl Iterator<Item = &'t stream::StreamTrade>,
        arrived: Instant,
    ) -> bool {
        route_ticks(&mut self.ticks, trades, arrived)
    }

    /// A frame decoded straight into what is gathered for the consumer while it keeps up
    /// ([`Backlog::gather`]; `None`: it does not, and the frame is decoded on its own), in
    /// one pass: as each message is added, a trade goes to the tick subscribers that want it
    /// ([`Self::send_ticks`]) and the frame's latest time and data count are kept. Answers
    /// the frame's messages that are not data (the session answers them), how many data
    /// messages it held, the latest time among them, and whether a subscriber took trades;
    /// `Err` for a frame that does not decode (nothing of it is gathered or routed).
    pub(super) fn decode_gathered(
        &mut self,
        codec: Codec,
        bytes: &[u8],
        arrived: Instant,
        metrics: &StreamMetrics,
    ) -> Option<Result<GatheredFrame, stream::FrameError>> {
        let into = self.backlog.gather()?;
        let from = into.len();
        self.ticks.iter_mut().for_each(TickRoute::mark);
        let mut fold = GatherFold {
            times: FrameTimes::default(),
            ticks: &mut self.ticks,
            arrived,
            took_ticks: false,
        };
        if let Err(e) = stream::decode_data_frame_folding(codec, bytes, into, &mut fold) {
            return Some(Err(e));
        }
        let frame_len = into.len().saturating_sub(from);
        let GatherFold {
            times: FrameTimes { latest, data },
            took_ticks,
            ..
        } = fold;
        self.ticks.iter_mut().for_each(TickRoute::offer);
        let control = if data < frame_len {
            self.backlog.take_control(from)
        } else {
            Vec::new()
        };
        let data = self.backlog.gathered(from, arrived, metrics);
        Some(Ok(GatheredFrame {
            control,
            data,
            latest,
            took_ticks,
        }))
    }

    /// When what is held for the consumer is due (`None`: nothing is held).
    pub(super) fn due_at(&self) -> Option<Instant> {
        self.sink.as_ref().and(self.backlog.due_at())
    }

    /// Whether some strategy's trades wait for room in its mailbox.
    pub(super) fn ticks_held(&self) -> bool {
        self.ticks.iter().any(|r| !r.held.is_empty())
    }

    /// Offers held ticks again; waits while a strategy has `max_pending` of them held (or,
    /// with `all`, at the session's end, while it has any).
    pub(super) async fn deliver_ticks(&mut self, all: bool) {
        let bound = if all { 1 } else { self.max_pending.max(1) };
        loop {
            self.ticks.iter_mut().for_each(TickRoute::offer);
            if self.ticks.iter().all(|r| r.held.len() < bound) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Hands what is pending to the consumer if its mailbox has room; waits for it only when
    /// too many trades and bars are held back.
    pub(super) async fn flush(&mut self, metrics: &StreamMetrics) {
        if self.ticks_held() {
            self.deliver_ticks(false).await;
        }
        // Through the one sender the forwarder holds, never a clone: an actix sender is
        // refused once *it* has filled the mailbox, and a fresh clone never has, so trying
        // with a clone each time queued without bound (the mailbox's bound held only while
        // the feed kept up).
        let Some(sink) = &self.sink else {
            self.backlog.clear();
            return;
        };
        if !self.backlog.due(Instant::now()) {
            return;
        }
        let batch = take_batch(&mut self.backlog);
        let n = batch.data.len() as u64;
        match sink.try_send(batch) {
            Ok(()) => {
                metrics.messages_processed.fetch_add(n, Ordering::Relaxed);
                self.backlog.delivered();
            }
            Err(SendError::Full(batch)) => {
                let full =
                    self.backlog
                        .busy(batch.data, batch.received_at, Instant::now(), metrics);
                if full == Full::Wait {
                    self.flush_all(metrics).await;
                }
            }
            Err(SendError::Closed(_)) => {
                tracing::warn!("the market-data consumer is gone; dropping its data");
            }
        }
    }

    /// Waits for the consumer to take everything pending.
    pub(super) async fn flush_all(&mut self, metrics: &StreamMetrics) {
        // A clone may go past the mailbox's bound by this one batch; `send` then waits until
        // the consumer has handled it.
        let Some(sink) = self.sink.clone() else {
            return;
        };
        if self.backlog.is_empty() {
            return;
        }
        let batch = take_batch(&mut self.backlog);
        let n = batch.data.len() as u64;
        if sink.send(batch).await.is_ok() {
            metrics.messages_processed.fetch_add(n, Ordering::Relaxed);
            self.backlog.delivered();
        }
    }
}

/// What [`Forwarder::gathered`] found in a frame.
pub(super) struct GatheredFrame {
    pub control: Vec<DataMessage>,
    pub data: usize,
    pub latest: Option<DateTime<Utc>>,
    pub took_ticks: bool,
}

/// What [`Forwarder::decode_gathered`] does with each message as the decoder adds it.
struct GatherFold<'a> {
    times: FrameTimes,
    ticks: &'a mut [TickRoute],
    arrived: Instant,
    took_ticks: bool,
}

impl stream::FrameFold for GatherFold<'_> {
    fn message(&mut self, m: &DataMessage) {
        self.times.note(m);
        if let DataMessage::Trade(t) = m {
            self.took_ticks |= route_trade(self.ticks, t, self.arrived);
        }
    }

    fn restart(&mut self) {
        self.times = FrameTimes::default();
        self.took_ticks = false;
        self.ticks.iter_mut().for_each(TickRoute::rewind);
    }
}

/// The latest time among `messages`, and how many of them are data (have a time).
pub(super) fn latest_time(messages: &[DataMessage]) -> (Option<DateTime<Utc>>, usize) {
    let mut times = FrameTimes::default();
    messages.iter().for_each(|m| times.note(m));
    (times.latest, times.data)
}

/// The latest time among a frame's messages so far, and how many of them are data.
#[derive(Default)]
struct FrameTimes {
    latest: Option<DateTime<Utc>>,
    data: usize,
}

impl FrameTimes {
    /// One more message: data if it has a time.
    fn note(&mut self, m: &DataMessage) {
        if let Some(t) = m.time() {
            self.latest = Some(self.latest.map_or(t, |l| l.max(t)));
            self.data += 1;
        }
    }
}

/// `trades` to the tick subscribers that want them; answers whether any took one.
fn route_ticks<'t>(
    ticks: &mut [TickRoute],
    trades: impl Iterator<Item = &'t stream::StreamTrade>,
    arrived: Instant,
) -> bool {
    if ticks.is_empty() {
        return false;
    }
    let mut took = false;
    for t in trades {
        took |= route_trade(ticks, t, arrived);
    }
    ticks.iter_mut().for_each(TickRoute::offer);
    took
}

/// Holds `trade` for each tick subscriber that wants it (offer them after); answers whether
/// any did.
fn route_trade(ticks: &mut [TickRoute], trade: &stream::StreamTrade, arrived: Instant) -> bool {
    let mut took = false;
    for route in ticks.iter_mut() {
        if route.condition.is_none_or(|c| trade.conditions.has(c)) {
            route.held.push(trade.clone());
            route.since.get_or_insert(arrived);
            took = true;
        }
    }
    took
}

/// Everything the backlog holds, as one batch for the consumer.
fn take_batch(backlog: &mut Backlog) -> MarketBatch {
    let (data, received_at) = backlog.take();
    MarketBatch {
        data,
        received_at,
        gap: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alpaca::stream::{Code, Conditions, StreamQuote, StreamTrade};
    use rust_decimal::Decimal;
    use std::sync::Mutex;

    /// Keeps the ids of the trades handed to it.
    struct Ticks(Arc<Mutex<Vec<u64>>>);

    impl Actor for Ticks {
        type Context = Context<Self>;
    }

    impl Handler<TradeTicks> for Ticks {
        type Result = ();
        fn handle(&mut self, msg: TradeTicks, _: &mut Self::Context) {
            if let Ok(mut ids) = self.0.lock() {
                ids.extend(msg.trades.iter().map(|t| t.id));
            }
        }
    }

    fn at(second: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + second, 0).unwrap_or_default()
    }

    fn trade(id: u64, second: i64, condition: Option<&str>) -> DataMessage {
        let mut conditions = Conditions::default();
        if let Some(c) = condition {
            conditions.push(c);
        }
        DataMessage::Trade(StreamTrade {
            symbol: "AAPL".into(),
            id,
            exchange: Code::new("V"),
            price: Decimal::ONE_HUNDRED,
            size: Decimal::ONE,
            timestamp: at(second),
            conditions,
            tape: Code::new("C"),
        })
    }

    fn quote(second: i64) -> DataMessage {
        DataMessage::Quote(StreamQuote {
            symbol: "MSFT".into(),
            bid_exchange: Code::new("V"),
            bid_price: Decimal::ONE,
            bid_size: Decimal::ONE,
            ask_exchange: Code::new("V"),
            ask_price: Decimal::TWO,
            ask_size: Decimal::ONE,
            timestamp: at(second),
            conditions: Conditions::default(),
            tape: Code::new("C"),
        })
    }

    /// Frames decoded straight into what is gathered for the feed (the flood's path): in the
    /// decoder's one pass their trades go to each tick subscriber that wants them, in order,
    /// and a frame's latest time, data count and control messages are found; what was
    /// gathered before it is neither routed again nor counted. A control message makes the
    /// quick msgpack pass give up part-way, after it routed the frame's first trade: that is
    /// taken back, not sent twice. A frame that does not decode gathers and routes nothing.
    #[actix_rt::test]
    async fn a_gathered_frame_routes_its_trades_and_finds_its_latest_time() {
        for codec in [Codec::Msgpack, Codec::Json] {
            let every = Arc::new(Mutex::new(Vec::new()));
            let intermarket = Arc::new(Mutex::new(Vec::new()));
            let subscriber =
                |ids: &Arc<Mutex<Vec<u64>>>, condition: Option<&str>| TradeSubscriber {
                    recipient: Ticks(ids.clone()).start().recipient(),
                    condition: condition.map(str::to_string),
                };
            let mut forwarder = Forwarder::new(
                None,
                vec![
                    subscriber(&every, None),
                    subscriber(&intermarket, Some("F")),
                ],
                100,
            );
            let metrics = StreamMetrics::default();
            let mut gathered = |frame: &[DataMessage]| {
                let bytes = codec.encode(frame);
                match forwarder.decode_gathered(codec, &bytes, Instant::now(), &metrics) {
                    Some(Ok(frame)) => frame,
                    _ => panic!("{codec:?}: a consumer that keeps up has frames gathered for it"),
                }
            };
            let first = gathered(&[trade(1, 50, None)]);
            assert_eq!((first.data, first.latest), (1, Some(at(50))), "{codec:?}");
            let frame = gathered(&[
                trade(2, 10, Some("F")),
                quote(30),
                DataMessage::Success {
                    msg: "authenticated".into(),
                },
                trade(3, 20, None),
                trade(4, 5, Some("F")),
            ]);
            assert_eq!(frame.data, 4, "{codec:?}: four data messages in the frame");
            assert_eq!(
                frame.latest,
                Some(at(30)),
                "{codec:?}: the frame's own latest time"
            );
            assert!(frame.took_ticks, "{codec:?}");
            assert!(
                matches!(frame.control.as_slice(), [DataMessage::Success { .. }]),
                "{codec:?}: {:?}",
                frame.control
            );
            assert_eq!(
                metrics.messages_received.load(Ordering::Relaxed),
                5,
                "{codec:?}"
            );
            // Its first trade whole (the quick pass routes it), its second cut short.
            let cut = codec.encode(&[trade(5, 60, Some("F")), trade(6, 61, None)]);
            let cut = &cut[..cut.len() - 3];
            assert!(
                matches!(
                    forwarder.decode_gathered(codec, cut, Instant::now(), &metrics),
                    Some(Err(_))
                ),
                "{codec:?}: a frame cut short is refused"
            );
            assert_eq!(
                metrics.messages_received.load(Ordering::Relaxed),
                5,
                "{codec:?}"
            );
            let ids =
                |ids: &Arc<Mutex<Vec<u64>>>| ids.lock().map(|v| v.clone()).unwrap_or_default();
            let deadline = Instant::now() + Duration::from_secs(10);
            while (ids(&every).len() < 4 || ids(&intermarket).len() < 2)
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert_eq!(
                ids(&every),
                [1, 2, 3, 4],
                "{codec:?}: every trade, in order, once"
            );
            assert_eq!(
                ids(&intermarket),
                [2, 4],
                "{codec:?}: those with its condition"
            );
            assert!(
                forwarder
                    .ticks
                    .iter()
                    .all(|r| r.held.is_empty() && r.since.is_none()),
                "{codec:?}: nothing of the refused frame is held for anyone"
            );
        }
    }
}
