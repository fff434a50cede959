//! Live data the feed holds while it is not live (warming up, backfilling a gap), so bars are
//! built in order. Bounded: a warm-up or a backfill slower than the stream (a slow broker, a
//! starved CPU, a 429 backing off) would otherwise hold the stream without end. Past the
//! bound the trades, quotes and bars held are let go and the feed backfills their minutes
//! from REST before it goes live again (the same path as a reconnect's gap); trading
//! statuses and bands are never let go.

use crate::alpaca::stream::DataMessage;
use crate::messages::MarketBatch;
use std::collections::VecDeque;

pub(super) struct Held {
    batches: VecDeque<MarketBatch>,
    /// Messages held.
    len: usize,
    limit: usize,
    /// Trades, quotes and bars let go since the feed last went live.
    let_go: u64,
}

impl Held {
    pub(super) fn new(limit: usize) -> Self {
        Held {
            batches: VecDeque::new(),
            len: 0,
            limit: limit.max(1),
            let_go: 0,
        }
    }

    /// Holds `batch`. Past the bound, lets go of the trades, quotes and bars held and answers
    /// the statuses and bands among them (to apply now: they build no bar, and a halt must
    /// not wait for the history).
    pub(super) fn push(&mut self, mut batch: MarketBatch) -> Option<MarketBatch> {
        // A hand-over is allocated for a flood; held, it keeps only what it holds.
        batch.data.shrink_to_fit();
        self.len += batch.data.len();
        let received_at = batch.received_at;
        self.batches.push_back(batch);
        if self.len <= self.limit {
            return None;
        }
        let mut kept = Vec::new();
        for batch in self.batches.drain(..) {
            for m in batch.data {
                match m {
                    DataMessage::Trade(_) | DataMessage::Quote(_) | DataMessage::Bar(_) => {
                        self.let_go += 1;
                    }
                    other => kept.push(other),
                }
            }
        }
        self.len = 0;
        Some(MarketBatch {
            data: kept,
            received_at,
            gap: None,
        })
    }

    pub(super) fn pop_front(&mut self) -> Option<MarketBatch> {
        let batch = self.batches.pop_front()?;
        self.len -= batch.data.len();
        Some(batch)
    }

    /// Everything held, oldest first.
    pub(super) fn take_all(&mut self) -> VecDeque<MarketBatch> {
        self.len = 0;
        std::mem::take(&mut self.batches)
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// How many trades, quotes and bars were let go since this was last asked (zero: the
    /// held data is whole).
    pub(super) fn take_let_go(&mut self) -> u64 {
        std::mem::take(&mut self.let_go)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alpaca::stream::data::{Code, StreamTrade};

    fn trade() -> DataMessage {
        DataMessage::Trade(StreamTrade {
            symbol: "AAPL".into(),
            id: 1,
            exchange: Code::new("V"),
            price: rust_decimal::Decimal::ONE_HUNDRED,
            size: rust_decimal::Decimal::ONE,
            timestamp: chrono::Utc::now(),
            conditions: ["@"].into_iter().collect(),
            tape: Code::new("C"),
        })
    }

    fn batch(n: usize) -> MarketBatch {
        MarketBatch {
            data: (0..n).map(|_| trade()).collect(),
            received_at: std::time::Instant::now(),
            gap: None,
        }
    }

    #[test]
    fn past_the_bound_the_data_is_let_go_and_the_statuses_kept() {
        let mut held = Held::new(10);
        assert!(held.push(batch(6)).is_none());
        assert_eq!(held.len(), 6);
        let mut with_status = batch(6);
        with_status
            .data
            .insert(3, DataMessage::Other { kind: "s".into() });
        let now = held.push(with_status).expect("past the bound");
        assert_eq!(now.data.len(), 1, "the status is answered to apply now");
        assert_eq!(held.len(), 0);
        assert!(held.pop_front().is_none());
        assert_eq!(held.take_let_go(), 12);
        assert_eq!(held.take_let_go(), 0);
        assert!(held.push(batch(4)).is_none());
        assert_eq!(held.pop_front().map(|b| b.data.len()), Some(4));
        assert_eq!(held.len(), 0);
    }
}
