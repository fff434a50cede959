//! The market-data stream's overload policy, without I/O: what is held back for a busy
//! consumer, and when to try it again.
//!
//! - Trades, bars and statuses are **never dropped**: kept in arrival order; past
//!   `max_pending` of them the session waits for the consumer (back-pressure to the socket).
//! - Quotes are **conflated**: the latest per symbol while the consumer is busy.
//! - A consumer found busy is not tried again on every frame (each try takes out and puts
//!   back all that is pending: retried per frame, an overload made the session's work grow
//!   with its backlog), but after [`RETRY_FULL_AFTER`] or once the backlog has doubled.
//! - A consumer that keeps up gets frames whole, in their order, gathered for up to
//!   [`GATHER_FOR`] or [`GATHER_UP_TO`] messages: each hand-over wakes its thread.

use super::StreamMetrics;
use crate::alpaca::stream::{DataMessage, StreamQuote};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long frames are gathered for a consumer that keeps up, and how many messages at most:
/// each hand-over wakes the consumer's thread (a few microseconds of the session's and as
/// many of its own), and one per frame was a tenth of the session's time under a flood.
pub const GATHER_FOR: Duration = Duration::from_micros(1_000);
pub const GATHER_UP_TO: usize = 2_000;
/// Room past [`GATHER_UP_TO`] in the vector frames are gathered in: a frame of up to this
/// many messages is decoded into it without growing it.
const GATHER_ROOM: usize = 256;

/// How long a busy consumer is left alone before the next try (unless the backlog doubled).
pub const RETRY_FULL_AFTER: Duration = Duration::from_millis(1);

/// What to do about a consumer found busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// Too many trades and bars held back: wait until it takes everything.
    Wait,
    /// Keep reading the socket; try again later.
    BackOff,
}

#[derive(Debug)]
pub struct Backlog {
    /// Trades, bars and statuses, in arrival order: never dropped.
    ordered: Vec<DataMessage>,
    /// The latest quote per symbol while the consumer is busy.
    quotes: foldhash::HashMap<crate::alpaca::stream::Symbol, StreamQuote>,
    /// When the oldest message held arrived.
    first_at: Option<Instant>,
    max_pending: usize,
    retry_at_len: usize,
    retry_at: Option<Instant>,
}

impl Backlog {
    pub fn new(max_pending: usize) -> Self {
        Backlog {
            ordered: Vec::new(),
            quotes: foldhash::HashMap::default(),
            first_at: None,
            max_pending,
            retry_at_len: 0,
            retry_at: None,
        }
    }

    pub fn pending(&self) -> usize {
        self.ordered.len() + self.quotes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ordered.is_empty() && self.quotes.is_empty()
    }

    /// Holds one message; `arrived`: when its frame arrived. Counts it received, and a quote
    /// that replaces an older one of its symbol conflated.
    pub fn push(&mut self, m: DataMessage, arrived: Instant, metrics: &StreamMetrics) {
        metrics.messages_received.fetch_add(1, Ordering::Relaxed);
        self.first_at.get_or_insert(arrived);
        match m {
            DataMessage::Quote(q) => match self.quotes.get_mut(&q.symbol) {
                Some(older) => {
                    *older = q;
                    metrics.quotes_conflated.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    self.quotes.insert(q.symbol.clone(), q);
                }
            },
            other => self.ordered.push(other),
        }
    }

    /// Holds one frame's data messages; `arrived`: when it arrived. For a consumer that keeps
    /// up the frame joins those gathered whole, in its own order (no per-message conflation:
    /// its quotes are conflated only if the consumer turns out busy, see [`Self::busy`]);
    /// after a busy answer, until a delivery, its messages join the backlog one by one.
    pub fn push_frame(
        &mut self,
        frame: Vec<DataMessage>,
        arrived: Instant,
        metrics: &StreamMetrics,
    ) {
        if !self.quotes.is_empty() || self.retry_at.is_some() {
            frame
                .into_iter()
                .for_each(|m| self.push(m, arrived, metrics));
            return;
        }
        metrics
            .messages_received
            .fetch_add(frame.len() as u64, Ordering::Relaxed);
        if frame.is_empty() {
            return;
        }
        self.first_at.get_or_insert(arrived);
        if self.ordered.is_empty() {
            // One allocation of one size per hand-over (a vector grown by doubling to a
            // varying size left the allocator holding pages under a flood).
            self.ordered = Vec::with_capacity(GATHER_UP_TO.max(frame.len()) + frame.len());
        }
        self.ordered.extend(frame);
    }

    /// Where a frame is decoded straight into while the consumer keeps up: the messages
    /// gathered for it, so that a frame's messages are not moved again (follow with
    /// [`Self::gathered`]). `None` after a busy answer, until a delivery: then a frame joins
    /// the backlog one message at a time ([`Self::push_frame`]).
    pub fn gather(&mut self) -> Option<&mut Vec<DataMessage>> {
        if !self.quotes.is_empty() || self.retry_at.is_some() {
            return None;
        }
        if self.ordered.capacity() == 0 {
            // One allocation of one size per hand-over, as in `push_frame`.
            self.ordered = Vec::with_capacity(GATHER_UP_TO + GATHER_ROOM);
        }
        Some(&mut self.ordered)
    }

    /// Takes out of the messages gathered from `from` on those that are not data (a control
    /// message in a data frame, rare: the session answers it).
    pub fn take_control(&mut self, from: usize) -> Vec<DataMessage> {
        let from = from.min(self.ordered.len());
        let frame: Vec<DataMessage> = self.ordered.drain(from..).collect();
        let (data, control): (Vec<_>, Vec<_>) = frame.into_iter().partition(|m| m.time().is_some());
        self.ordered.extend(data);
        control
    }

    /// The messages gathered from `from` on are a frame's, which arrived at `arrived`: they
    /// are held, and counted received. Answers how many.
    pub fn gathered(&mut self, from: usize, arrived: Instant, metrics: &StreamMetrics) -> usize {
        let n = self.ordered.len().saturating_sub(from);
        metrics
            .messages_received
            .fetch_add(n as u64, Ordering::Relaxed);
        if n > 0 {
            self.first_at.get_or_insert(arrived);
        }
        n
    }

    /// Whether to try the consumer now: not while backing off from a busy one, unless the
    /// backlog doubled since or too many trades and bars are held back; nor, for one that
    /// keeps up, before [`GATHER_FOR`] or [`GATHER_UP_TO`] messages.
    pub fn due(&self, now: Instant) -> bool {
        self.due_at().is_some_and(|at| now >= at)
            || (!self.is_empty() && self.ordered.len() >= self.max_pending)
    }

    /// When what is held is due (`None`: nothing is held).
    pub fn due_at(&self) -> Option<Instant> {
        let first = self.first_at?;
        match self.retry_at {
            Some(at) if self.pending() < self.retry_at_len => Some(at),
            Some(_) => Some(first),
            None if self.pending() >= GATHER_UP_TO => Some(first),
            None => Some(first + GATHER_FOR),
        }
    }

    /// Everything held, ordered messages first, and when the oldest arrived.
    pub fn take(&mut self) -> (Vec<DataMessage>, Instant) {
        let mut data = std::mem::take(&mut self.ordered);
        data.extend(self.quotes.drain().map(|(_, q)| DataMessage::Quote(q)));
        (data, self.first_at.take().unwrap_or_else(Instant::now))
    }

    /// The consumer took what was taken.
    pub fn delivered(&mut self) {
        self.retry_at = None;
    }

    /// The consumer was busy: what was taken goes back, before what arrived since (a newer
    /// quote of a symbol wins), and the answer says whether to wait for it or back off.
    pub fn busy(
        &mut self,
        data: Vec<DataMessage>,
        received_at: Instant,
        now: Instant,
        metrics: &StreamMetrics,
    ) -> Full {
        let mut newer = std::mem::take(&mut self.ordered);
        let newer_quotes = std::mem::take(&mut self.quotes);
        let mut conflated = 0;
        for m in data {
            match m {
                DataMessage::Quote(q) => {
                    conflated += u64::from(self.quotes.insert(q.symbol.clone(), q).is_some());
                }
                other => self.ordered.push(other),
            }
        }
        self.ordered.append(&mut newer);
        for (symbol, q) in newer_quotes {
            conflated += u64::from(self.quotes.insert(symbol, q).is_some());
        }
        metrics
            .quotes_conflated
            .fetch_add(conflated, Ordering::Relaxed);
        self.first_at = Some(received_at);
        if self.ordered.len() >= self.max_pending {
            return Full::Wait;
        }
        self.retry_at_len = self.pending() * 2;
        self.retry_at = Some(now + RETRY_FULL_AFTER);
        Full::BackOff
    }

    /// Drops everything held (there is no consumer).
    pub fn clear(&mut self) {
        self.ordered.clear();
        self.quotes.clear();
        self.first_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alpaca::stream::{Code, StreamTrade};
    use chrono::DateTime;
    use rust_decimal::Decimal;

    fn trade(symbol: &str, n: u64) -> DataMessage {
        DataMessage::Trade(StreamTrade {
            symbol: symbol.into(),
            id: n,
            exchange: Code::new("V"),
            price: Decimal::ONE_HUNDRED,
            size: Decimal::ONE,
            timestamp: DateTime::UNIX_EPOCH,
            conditions: Default::default(),
            tape: Code::new("C"),
        })
    }

    fn quote(symbol: &str, bid: u32) -> DataMessage {
        DataMessage::Quote(StreamQuote {
            symbol: symbol.into(),
            bid_exchange: Code::new("V"),
            bid_price: Decimal::from(bid),
            bid_size: Decimal::ONE,
            ask_exchange: Code::new("V"),
            ask_price: Decimal::from(bid + 1),
            ask_size: Decimal::ONE,
            timestamp: DateTime::UNIX_EPOCH,
            conditions: Default::default(),
            tape: Code::new("C"),
        })
    }

    fn describe(data: &[DataMessage]) -> Vec<String> {
        let mut out: Vec<String> = data
            .iter()
            .map(|m| match m {
                DataMessage::Trade(StreamTrade { symbol, id, .. }) => format!("t:{symbol}:{id}"),
                DataMessage::Quote(q) => format!("q:{}:{}", q.symbol, q.bid_price),
                _ => "other".into(),
            })
            .collect();
        // Quotes come after the ordered messages, in no particular order among themselves.
        let quotes = out
            .iter()
            .position(|s| s.starts_with("q:"))
            .unwrap_or(out.len());
        out[quotes..].sort();
        out
    }

    #[test]
    fn trades_keep_their_order_and_quotes_keep_only_the_latest_per_symbol() {
        let metrics = StreamMetrics::default();
        let mut b = Backlog::new(100);
        let now = Instant::now();
        for m in [
            trade("A", 1),
            quote("A", 10),
            quote("B", 20),
            trade("B", 2),
            quote("A", 11),
        ] {
            b.push(m, now, &metrics);
        }
        assert_eq!(b.pending(), 4);
        let (data, at) = b.take();
        assert_eq!(at, now);
        assert_eq!(describe(&data), ["t:A:1", "t:B:2", "q:A:11", "q:B:20"]);
        assert_eq!(metrics.quotes_conflated.load(Ordering::Relaxed), 1);
        assert_eq!(metrics.messages_received.load(Ordering::Relaxed), 5);
        assert!(b.is_empty());
    }

    #[test]
    fn a_busy_consumer_gets_back_its_batch_before_what_came_since_and_newer_quotes_win() {
        let metrics = StreamMetrics::default();
        let mut b = Backlog::new(100);
        let t0 = Instant::now();
        b.push(trade("A", 1), t0, &metrics);
        b.push(quote("A", 10), t0, &metrics);
        let (taken, at) = b.take();
        b.push(trade("A", 2), t0, &metrics);
        b.push(quote("A", 12), t0, &metrics);
        assert_eq!(b.busy(taken, at, t0, &metrics), Full::BackOff);
        let (data, first) = b.take();
        assert_eq!(first, at);
        assert_eq!(describe(&data), ["t:A:1", "t:A:2", "q:A:12"]);
    }

    #[test]
    fn after_a_busy_consumer_the_next_try_waits_for_time_or_a_doubled_backlog() {
        let metrics = StreamMetrics::default();
        let mut b = Backlog::new(10);
        let t0 = Instant::now();
        // (pushes before, since the busy answer, is it due?)
        b.push(trade("A", 1), t0, &metrics);
        b.push(trade("A", 2), t0, &metrics);
        assert!(!b.due(t0), "gathered first");
        assert!(b.due(t0 + GATHER_FOR));
        let (taken, at) = b.take();
        assert_eq!(b.busy(taken, at, t0, &metrics), Full::BackOff);
        let rows = [
            (Duration::ZERO, 0, false),
            (Duration::ZERO, 1, false),
            (Duration::ZERO, 1, true), // 4 pending: doubled
        ];
        for (after, push, due) in rows {
            for _ in 0..push {
                b.push(trade("A", 9), t0, &metrics);
            }
            assert_eq!(b.due(t0 + after), due, "{} pending", b.pending());
        }
        let (taken, at) = b.take();
        b.busy(taken, at, t0, &metrics);
        assert!(!b.due(t0));
        assert!(b.due(t0 + RETRY_FULL_AFTER), "time passed");
        b.delivered();
        assert_eq!(b.due_at(), Some(t0 + GATHER_FOR), "delivered: no back-off");
    }

    #[test]
    fn a_frame_goes_whole_to_a_consumer_that_keeps_up_and_is_conflated_once_it_is_busy() {
        let metrics = StreamMetrics::default();
        let mut b = Backlog::new(100);
        let t0 = Instant::now();
        let frame = || vec![quote("A", 10), trade("A", 1), quote("A", 11), trade("B", 2)];
        b.push_frame(frame(), t0, &metrics);
        let (taken, at) = b.take();
        assert_eq!(at, t0);
        assert_eq!(taken.len(), 4, "in its own order, nothing conflated");
        assert!(matches!(&taken[0], DataMessage::Quote(q) if q.bid_price == Decimal::from(10)));
        // Busy: the frame goes back conflated, and the next frame joins it one by one.
        assert_eq!(b.busy(taken, at, t0, &metrics), Full::BackOff);
        b.push_frame(vec![trade("A", 3), quote("A", 12)], t0, &metrics);
        assert_eq!(describe(&b.take().0), ["t:A:1", "t:B:2", "t:A:3", "q:A:12"]);
        assert_eq!(metrics.messages_received.load(Ordering::Relaxed), 6);
        assert_eq!(
            metrics.quotes_conflated.load(Ordering::Relaxed),
            2,
            "A:10 by A:11, A:11 by A:12"
        );
        b.push_frame(Vec::new(), t0, &metrics);
        assert!(b.is_empty() && !b.due(t0));
    }

    #[test]
    fn a_frame_decoded_into_the_gathered_messages_is_held_as_a_pushed_one_and_control_taken_out() {
        let metrics = StreamMetrics::default();
        let mut b = Backlog::new(100);
        let t0 = Instant::now();
        b.push_frame(vec![trade("A", 1)], t0, &metrics);
        let into = b.gather().expect("a consumer that keeps up");
        let from = into.len();
        into.extend([
            quote("A", 10),
            DataMessage::Success { msg: "x".into() },
            trade("A", 2),
        ]);
        let control = b.take_control(from);
        assert!(matches!(&control[..], [DataMessage::Success { .. }]));
        assert_eq!(b.gathered(from, t0 + GATHER_FOR, &metrics), 2);
        assert_eq!(metrics.messages_received.load(Ordering::Relaxed), 3);
        let (taken, at) = b.take();
        assert_eq!(at, t0, "from the first frame");
        assert_eq!(describe(&taken), ["t:A:1", "q:A:10", "t:A:2"]);
        // Nothing gathered: nothing held, and no time started.
        b.delivered();
        let from = b.gather().map_or(0, |v| v.len());
        assert_eq!(b.gathered(from, t0, &metrics), 0);
        assert_eq!(b.due_at(), None);
        // A frame gathered alone starts the time it is held for.
        let into = b.gather().expect("a consumer that keeps up");
        let from = into.len();
        into.push(trade("A", 4));
        assert_eq!(b.gathered(from, t0, &metrics), 1);
        assert_eq!(
            b.due_at(),
            Some(t0 + GATHER_FOR),
            "due as a pushed frame is"
        );
        assert_eq!(describe(&b.take().0), ["t:A:4"]);
        b.delivered();
        // Busy: frames join one message at a time (conflated), not gathered whole.
        b.push_frame(vec![trade("A", 3)], t0, &metrics);
        let (taken, at) = b.take();
        b.busy(taken, at, t0, &metrics);
        assert!(b.gather().is_none());
    }

    #[test]
    fn frames_are_gathered_for_a_consumer_that_keeps_up_by_time_or_count() {
        let metrics = StreamMetrics::default();
        let mut b = Backlog::new(10_000);
        let t0 = Instant::now();
        assert_eq!(b.due_at(), None);
        let frame = |n: usize| (0..n).map(|i| trade("A", i as u64)).collect::<Vec<_>>();
        b.push_frame(frame(100), t0, &metrics);
        b.push_frame(frame(100), t0 + Duration::from_micros(500), &metrics);
        assert_eq!(b.due_at(), Some(t0 + GATHER_FOR), "from the first frame");
        assert!(!b.due(t0 + Duration::from_micros(999)));
        assert!(b.due(t0 + GATHER_FOR));
        let (taken, at) = b.take();
        assert_eq!((taken.len(), at), (200, t0));
        b.delivered();
        b.push_frame(frame(GATHER_UP_TO), t0, &metrics);
        assert!(b.due(t0), "enough for a hand-over at once");
    }

    #[test]
    fn too_many_trades_held_back_wait_for_the_consumer_and_nothing_is_dropped() {
        let metrics = StreamMetrics::default();
        let mut b = Backlog::new(3);
        let t0 = Instant::now();
        for n in 0..3 {
            b.push(trade("A", n), t0, &metrics);
        }
        let (taken, at) = b.take();
        assert_eq!(b.busy(taken, at, t0, &metrics), Full::Wait);
        assert!(b.due(t0), "past max_pending it is always due");
        assert_eq!(b.take().0.len(), 3);
        b.push(quote("A", 1), t0, &metrics);
        b.clear();
        assert!(b.is_empty() && !b.due(t0));
    }
}
