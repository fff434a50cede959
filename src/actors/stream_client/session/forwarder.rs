//! The market-data consumer's side of the overload policy: a thin shell over
//! [`Backlog`](crate::connection::Backlog) that hands batches to the feed's mailbox; and the
//! trades of strategies that trade on ticks, handed to them frame by frame.

use super::*;

/// Delivers market data to the consumer under the overload policy of [`Backlog`] (trades
/// and bars never dropped, quotes conflated, back-pressure to the socket past `max_pending`).
pub(super) struct Forwarder {
    sink: Option<Recipient<MarketBatch>>,
    backlog: Backlog,
    ticks: Vec<TradeSubscriber>,
    /// Each tick subscriber's trades of the frame being read.
    tick_out: Vec<Vec<stream::StreamTrade>>,
}

impl Forwarder {
    pub(super) fn new(
        sink: Option<Recipient<MarketBatch>>,
        ticks: Vec<TradeSubscriber>,
        max_pending: usize,
    ) -> Self {
        Forwarder {
            sink,
            backlog: Backlog::new(max_pending),
            tick_out: vec![Vec::new(); ticks.len()],
            ticks,
        }
    }

    /// Holds one message; `arrived`: when its frame arrived.
    pub(super) fn push(&mut self, m: DataMessage, arrived: Instant, metrics: &StreamMetrics) {
        self.backlog.push(m, arrived, metrics);
    }

    /// Hands a frame's trades to the tick subscribers that want them, before the frame goes
    /// on to the feed and whatever the feed's backlog (a strategy's mailbox takes a frame's
    /// few trades at once).
    pub(super) fn send_ticks(&mut self, frame: &[DataMessage], arrived: Instant) {
        if self.ticks.is_empty() {
            return;
        }
        for m in frame {
            let DataMessage::Trade(t) = m else { continue };
            for (subscriber, out) in self.ticks.iter().zip(&mut self.tick_out) {
                if subscriber
                    .condition
                    .as_ref()
                    .is_none_or(|c| t.conditions.contains(c))
                {
                    out.push(t.clone());
                }
            }
        }
        for (subscriber, out) in self.ticks.iter().zip(&mut self.tick_out) {
            if !out.is_empty() {
                subscriber.recipient.do_send(TradeTicks {
                    trades: std::mem::take(out),
                    arrived,
                });
            }
        }
    }

    fn batch(&mut self) -> MarketBatch {
        let (data, received_at) = self.backlog.take();
        MarketBatch {
            data,
            received_at,
            gap: None,
        }
    }

    /// Hands what is pending to the consumer if its mailbox has room; waits for it only when
    /// too many trades and bars are held back.
    pub(super) async fn flush(&mut self, metrics: &StreamMetrics) {
        let Some(sink) = self.sink.clone() else {
            self.backlog.clear();
            return;
        };
        if !self.backlog.due(Instant::now()) {
            return;
        }
        let batch = self.batch();
        let n = batch.data.len() as u64;
        match sink.try_send(batch) {
            Ok(()) => {
                metrics.messages_processed.fetch_add(n, Ordering::Relaxed);
                self.backlog.delivered();
            }
            Err(SendError::Full(batch)) => {
                let full = self
                    .backlog
                    .busy(batch.data, batch.received_at, Instant::now());
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
        let Some(sink) = self.sink.clone() else {
            return;
        };
        if self.backlog.is_empty() {
            return;
        }
        let batch = self.batch();
        let n = batch.data.len() as u64;
        if sink.send(batch).await.is_ok() {
            metrics.messages_processed.fetch_add(n, Ordering::Relaxed);
            self.backlog.delivered();
        }
    }
}
