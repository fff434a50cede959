//! The lifecycle of our orders, folded from every source without I/O: the POST answer,
//! `trade_updates` events, and REST polls (the fallback when the stream is down).
//!
//! Rules that keep the books right whatever order the sources arrive in:
//! - Fills are counted by **cumulative quantity**: a report whose order shows more filled than
//!   we have records the difference as one fill, at the price that makes the average right;
//!   a report showing no more than we have adds nothing. So a fill seen by the stream and again
//!   by a poll is counted once, and a fill missed by the stream is found by the next poll.
//! - A final state (filled, canceled, expired, rejected, replaced) is never left again; the
//!   filled quantity never goes down.
//! - Orders we did not send (other client order ids) are ignored here; reconciliation reports them.

use crate::alpaca::model::{Order, OrderSide, OrderStatus, TradeUpdate};
use crate::journal::store::{FillRecord, OrderIntent, OrderState};
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq)]
pub struct TrackedOrder {
    pub client_order_id: String,
    pub broker_order_id: Option<String>,
    pub symbol: String,
    pub side: OrderSide,
    pub qty: Decimal,
    pub filled_qty: Decimal,
    pub filled_avg_price: Option<Decimal>,
    /// `None` until the broker has said anything about the order.
    pub status: Option<OrderStatus>,
    pub sent_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TrackedOrder {
    pub fn is_open(&self) -> bool {
        self.status.is_none_or(|s| s.is_open())
    }
}

/// An order of ours the broker has not acknowledged: it may still land.
#[derive(Debug, Clone, PartialEq)]
pub struct InFlight {
    pub client_order_id: String,
    pub symbol: String,
    pub side: OrderSide,
    /// What of it is not filled.
    pub qty: Decimal,
}

/// What changed with an update, for the caller to book and journal.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    State(OrderState),
    Fill(FillRecord),
}

#[derive(Debug, Default)]
pub struct OrderBook {
    orders: HashMap<String, TrackedOrder>,
}

impl OrderBook {
    /// Starts tracking an intent just before its request is sent.
    pub fn track(&mut self, intent: &OrderIntent, now: DateTime<Utc>) {
        self.orders
            .entry(intent.client_order_id.clone())
            .or_insert_with(|| TrackedOrder {
                client_order_id: intent.client_order_id.clone(),
                broker_order_id: None,
                symbol: intent.symbol.clone(),
                side: intent.side,
                qty: intent.qty,
                filled_qty: Decimal::ZERO,
                filled_avg_price: None,
                status: None,
                sent_at: now,
                updated_at: now,
            });
    }

    /// Tracks an intent found again after a restart, with what the journal's fills say is
    /// already filled, so the broker's cumulative quantity books only what is new.
    pub fn resume(
        &mut self,
        intent: &OrderIntent,
        filled_qty: Decimal,
        filled_avg_price: Option<Decimal>,
        now: DateTime<Utc>,
    ) {
        self.track(intent, now);
        if let Some(t) = self.orders.get_mut(&intent.client_order_id) {
            if filled_qty > t.filled_qty {
                t.filled_qty = filled_qty;
                t.filled_avg_price = filled_avg_price;
            }
        }
    }

    /// Changes the quantity of an order not yet sent (an exit cut down to the position left).
    pub fn set_qty(&mut self, client_order_id: &str, qty: Decimal) {
        if let Some(t) = self.orders.get_mut(client_order_id) {
            if t.status.is_none() {
                t.qty = qty;
            }
        }
    }

    /// Orders not known to be final.
    pub fn open(&self) -> impl Iterator<Item = &TrackedOrder> {
        self.orders.values().filter(|t| t.is_open())
    }

    /// Broker order id → client order id of every tracked order the broker has answered for.
    pub fn broker_ids(&self) -> HashMap<String, String> {
        self.orders
            .values()
            .filter_map(|t| Some((t.broker_order_id.clone()?, t.client_order_id.clone())))
            .collect()
    }

    pub fn get(&self, client_order_id: &str) -> Option<&TrackedOrder> {
        self.orders.get(client_order_id)
    }

    /// The broker's view of an order (a POST answer or a poll).
    pub fn on_order(&mut self, order: &Order) -> Vec<Change> {
        let execution = format!("cum:{}:{}", order.id, order.filled_qty);
        self.apply(order, order.updated_at, Some(execution), None)
    }

    /// A `trade_updates` event.
    pub fn on_update(&mut self, u: &TradeUpdate) -> Vec<Change> {
        let execution = u.execution_id.map(|e| e.to_string());
        let price = match (u.price, u.event.as_str()) {
            (Some(p), "fill" | "partial_fill") => Some(p),
            _ => None,
        };
        self.apply(&u.order, u.at(), execution, price)
    }

    fn apply(
        &mut self,
        order: &Order,
        at: DateTime<Utc>,
        execution: Option<String>,
        fill_price: Option<Decimal>,
    ) -> Vec<Change> {
        let Some(t) = self.orders.get_mut(&order.client_order_id) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        t.broker_order_id
            .get_or_insert_with(|| order.id.to_string());
        let qty = order.filled_qty - t.filled_qty;
        // The price that takes our average to the broker's, else the event's own price. With
        // neither, nothing is booked yet: the next poll carries an average (a fill is never
        // booked at a made-up price, and never lost).
        let price = match (order.filled_avg_price, fill_price) {
            (Some(avg), _) if qty > Decimal::ZERO => Some(
                ((avg * order.filled_qty - t.filled_avg_price.unwrap_or_default() * t.filled_qty)
                    / qty)
                    .round_dp(9),
            ),
            (None, Some(p)) => Some(p),
            _ => None,
        };
        if let (true, Some(price)) = (qty > Decimal::ZERO, price) {
            out.push(Change::Fill(FillRecord {
                execution_id: execution
                    .unwrap_or_else(|| format!("cum:{}:{}", order.id, order.filled_qty)),
                client_order_id: t.client_order_id.clone(),
                broker_order_id: order.id.to_string(),
                symbol: t.symbol.clone(),
                side: t.side,
                qty,
                price,
                at,
            }));
            t.filled_qty = order.filled_qty;
            t.filled_avg_price = order.filled_avg_price.or(Some(price));
        }
        // A final status is kept; a fill booked late on a final order still updates the journal.
        let was_final = t.status.is_some_and(|s| s.is_terminal());
        let status = if was_final {
            t.status.unwrap_or(order.status)
        } else {
            order.status
        };
        if t.status != Some(status) || !out.is_empty() {
            t.status = Some(status);
            t.updated_at = t.updated_at.max(at);
            out.push(Change::State(OrderState {
                client_order_id: t.client_order_id.clone(),
                broker_order_id: t.broker_order_id.clone(),
                status,
                filled_qty: t.filled_qty,
                filled_avg_price: t.filled_avg_price,
                at,
            }));
        }
        out
    }

    /// Closes an intent the broker never received (reconciliation, or a refusal before sending).
    pub fn close_unsent(&mut self, client_order_id: &str, status: OrderStatus) {
        if let Some(t) = self.orders.get_mut(client_order_id) {
            if t.status.is_none_or(|s| s.is_open()) {
                t.status = Some(status);
            }
        }
    }

    /// Orders tracked, final ones not yet pruned included.
    pub fn len(&self) -> usize {
        self.orders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
    }

    /// Open orders.
    pub fn open_count(&self) -> usize {
        self.orders.values().filter(|t| t.is_open()).count()
    }

    /// Per symbol, the signed quantity open orders may still add (for the risk checks).
    pub fn pending_qty(&self) -> crate::risk::SymbolMap<Decimal> {
        let mut out = crate::risk::SymbolMap::<Decimal>::default();
        for t in self.orders.values().filter(|t| t.is_open()) {
            *out.entry(t.symbol.clone()).or_default() +=
                t.side.sign() * (t.qty - t.filled_qty).max(Decimal::ZERO);
        }
        out
    }

    /// Orders the broker has said nothing of yet (sent and unanswered, or about to be sent):
    /// what may still reach it after a cancel-all and a read of its positions. Wider than the
    /// desk's requests not yet answered: a request that timed out is answered (outcome
    /// unknown) and may still land, until its lookup by client order id says.
    pub fn unacknowledged(&self) -> Vec<InFlight> {
        let mut v: Vec<InFlight> = self
            .orders
            .values()
            .filter(|t| t.status.is_none() && t.qty > t.filled_qty)
            .map(|t| InFlight {
                client_order_id: t.client_order_id.clone(),
                symbol: t.symbol.clone(),
                side: t.side,
                qty: t.qty - t.filled_qty,
            })
            .collect();
        v.sort_by(|a, b| a.client_order_id.cmp(&b.client_order_id));
        v
    }

    /// Orders sent longer than `timeout` ago that the broker has not acknowledged: ask it (by
    /// client order id), never guess.
    pub fn overdue(&self, now: DateTime<Utc>, timeout: Duration) -> Vec<String> {
        let mut v: Vec<String> = self
            .orders
            .values()
            .filter(|t| t.status.is_none() && now - t.sent_at > timeout)
            .map(|t| t.client_order_id.clone())
            .collect();
        v.sort();
        v
    }

    /// Forgets final orders (after they are journaled) to keep the book small; answers them.
    pub fn prune_final(&mut self) -> Vec<TrackedOrder> {
        let done: Vec<String> = self
            .orders
            .iter()
            .filter(|(_, t)| !t.is_open())
            .map(|(c, _)| c.clone())
            .collect();
        done.iter().filter_map(|c| self.orders.remove(c)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alpaca::model::*;
    use chrono::TimeZone;
    use rust_decimal_macros::dec;
    use uuid::Uuid;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 20, 14, 30, 0).unwrap()
    }

    fn intent() -> OrderIntent {
        OrderIntent {
            client_order_id: "td-1-1-AAPL".into(),
            symbol: "AAPL".into(),
            side: OrderSide::Buy,
            qty: dec!(10),
            request: serde_json::json!({}),
            correlation_id: "c".into(),
            created_at: t0(),
        }
    }

    fn order(status: OrderStatus, filled: Decimal, avg: Option<Decimal>, sec: i64) -> Order {
        let json = serde_json::json!({
            "id": Uuid::from_u128(1), "client_order_id": "td-1-1-AAPL",
            "created_at": t0(), "updated_at": t0() + Duration::seconds(sec), "submitted_at": t0(),
            "asset_id": Uuid::nil(), "symbol": "AAPL", "qty": "10", "filled_qty": filled.to_string(),
            "filled_avg_price": avg.map(|a| a.to_string()), "order_type": "market", "type": "market",
            "side": "buy", "time_in_force": "day", "status": status
        });
        serde_json::from_value(json).unwrap()
    }

    fn update(
        event: &str,
        o: Order,
        price: Option<Decimal>,
        qty: Option<Decimal>,
        exec: u128,
    ) -> TradeUpdate {
        TradeUpdate {
            event: event.into(),
            execution_id: Some(Uuid::from_u128(exec)),
            timestamp: Some(o.updated_at),
            order: o,
            price,
            qty,
            position_qty: None,
        }
    }

    fn fills(effects: &[Change]) -> Vec<(Decimal, Decimal)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Change::Fill(f) => Some((f.qty, f.price)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_fill_reported_by_stream_and_poll_is_counted_once() {
        let mut b = OrderBook::default();
        b.track(&intent(), t0());
        assert_eq!(b.pending_qty()["AAPL"], dec!(10));
        let accepted = b.on_order(&order(OrderStatus::New, dec!(0), None, 0));
        assert!(matches!(&accepted[..], [Change::State(s)] if s.status == OrderStatus::New));
        let e = b.on_update(&update(
            "partial_fill",
            order(OrderStatus::PartiallyFilled, dec!(4), Some(dec!(100)), 1),
            Some(dec!(100)),
            Some(dec!(4)),
            7,
        ));
        assert_eq!(fills(&e), vec![(dec!(4), dec!(100))]);
        // A poll that shows the same four shares adds nothing.
        assert!(
            fills(&b.on_order(&order(
                OrderStatus::PartiallyFilled,
                dec!(4),
                Some(dec!(100)),
                1
            )))
            .is_empty()
        );
        // The stream missed the rest; the poll finds it, priced so the average is the broker's.
        let e = b.on_order(&order(OrderStatus::Filled, dec!(10), Some(dec!(101.2)), 3));
        assert_eq!(fills(&e), vec![(dec!(6), dec!(102))]);
        // The late stream event for those six shares adds nothing and cannot reopen the order.
        let late = b.on_update(&update(
            "partial_fill",
            order(OrderStatus::PartiallyFilled, dec!(10), Some(dec!(101.2)), 2),
            Some(dec!(102)),
            Some(dec!(6)),
            8,
        ));
        assert!(late.is_empty(), "{late:?}");
        let t = b.get("td-1-1-AAPL").unwrap();
        assert_eq!(
            (t.status, t.filled_qty),
            (Some(OrderStatus::Filled), dec!(10))
        );
        assert_eq!(b.open_count(), 0);
        assert!(b.pending_qty().is_empty());
    }

    #[test]
    fn a_fill_without_any_price_waits_for_the_next_report() {
        let mut b = OrderBook::default();
        b.track(&intent(), t0());
        let mut no_price = update(
            "fill",
            order(OrderStatus::Filled, dec!(10), None, 1),
            None,
            Some(dec!(10)),
            9,
        );
        no_price.event = "fill".into();
        assert!(
            fills(&b.on_update(&no_price)).is_empty(),
            "not booked at a made-up price"
        );
        assert_eq!(b.get("td-1-1-AAPL").unwrap().filled_qty, dec!(0));
        // The state is still taken, and the next report with an average books the fill.
        let later = b.on_order(&order(OrderStatus::Filled, dec!(10), Some(dec!(99.5)), 2));
        assert_eq!(fills(&later), vec![(dec!(10), dec!(99.5))]);
        assert!(later.iter().any(|e| matches!(e, Change::State(s) if s.filled_qty == dec!(10) && s.status == OrderStatus::Filled)));
    }

    #[test]
    fn unacknowledged_orders_are_overdue_and_foreign_ones_ignored() {
        let mut b = OrderBook::default();
        b.track(&intent(), t0());
        assert!(
            b.overdue(t0() + Duration::seconds(5), Duration::seconds(10))
                .is_empty()
        );
        assert_eq!(
            b.overdue(t0() + Duration::seconds(11), Duration::seconds(10)),
            vec!["td-1-1-AAPL".to_string()]
        );
        let mut foreign = order(OrderStatus::Filled, dec!(10), Some(dec!(1)), 0);
        foreign.client_order_id = "someone-else".into();
        assert!(b.on_order(&foreign).is_empty());
        b.close_unsent("td-1-1-AAPL", OrderStatus::Rejected);
        assert_eq!(b.open_count(), 0);
        b.prune_final();
        assert!(b.get("td-1-1-AAPL").is_none());
    }

    proptest::proptest! {
        /// Whatever reaches the book (stream events dropped or not, polls early, late or
        /// stale, in any order, and a restart resumed from the journal's fills at any point),
        /// the fills it books add up to the broker's filled quantity at the broker's average
        /// price: position = sum of fills, none lost, none twice.
        #[test]
        fn position_is_the_sum_of_fills_whatever_the_order_of_reports(
            parts in proptest::collection::vec((1u32..4, 10_000u32..11_000), 1..5),
            keep_stream in proptest::collection::vec(proptest::bool::ANY, 5),
            polls in proptest::collection::vec(proptest::bool::ANY, 5),
            order_seed in proptest::collection::vec(0usize..100, 10),
            restart_at in 0usize..12,
        ) {
            // The broker's fills, cumulative, capped at the order's 10 shares.
            let mut cum = Decimal::ZERO;
            let mut notional = Decimal::ZERO;
            let mut reports: Vec<(bool, Order, Option<Decimal>, u128)> = Vec::new();
            for (i, (q, cents)) in parts.iter().enumerate() {
                let q = Decimal::from(*q).min(dec!(10) - cum);
                if q <= Decimal::ZERO { break; }
                let price = Decimal::new(i64::from(*cents), 2);
                cum += q;
                notional += q * price;
                let avg = (notional / cum).round_dp(9);
                let status = if cum == dec!(10) { OrderStatus::Filled } else { OrderStatus::PartiallyFilled };
                let o = order(status, cum, Some(avg), i as i64 + 1);
                if keep_stream[i] { reports.push((true, o.clone(), Some(price), i as u128 + 1)); }
                if polls[i] { reports.push((false, o, None, 0)); }
            }
            // Shuffle deterministically from the seed.
            for (i, s) in order_seed.iter().enumerate() {
                let n = reports.len(); if n > 1 { reports.swap(i % n, s % n); }
            }
            let final_avg = (notional / cum).round_dp(9);
            let final_status = if cum == dec!(10) { OrderStatus::Filled } else { OrderStatus::PartiallyFilled };
            // Reconciliation always ends with the broker's current view.
            reports.push((false, order(final_status, cum, Some(final_avg), 99), None, 0));

            let mut book = OrderBook::default();
            book.track(&intent(), t0());
            let mut booked: Vec<(Decimal, Decimal)> = Vec::new();
            for (n, (stream, o, price, exec)) in reports.iter().enumerate() {
                if n == restart_at {
                    // A restart: a new book resumed from what the journal holds.
                    let q: Decimal = booked.iter().map(|(q, _)| *q).sum();
                    let v: Decimal = booked.iter().map(|(q, p)| q * p).sum();
                    book = OrderBook::default();
                    book.resume(&intent(), q, (q > Decimal::ZERO).then(|| (v / q).round_dp(9)), t0());
                }
                let effects = if *stream {
                    book.on_update(&update("partial_fill", o.clone(), *price, None, *exec))
                } else {
                    book.on_order(o)
                };
                for (q, p) in fills(&effects) {
                    proptest::prop_assert!(q > Decimal::ZERO);
                    booked.push((q, p));
                }
            }
            let position: Decimal = booked.iter().map(|(q, _)| *q).sum();
            proptest::prop_assert_eq!(position, cum, "position = sum of fills");
            let value: Decimal = booked.iter().map(|(q, p)| q * p).sum();
            proptest::prop_assert!((value - final_avg * cum).abs() < dec!(0.00001), "{} vs {}", value, final_avg * cum);
        }
    }
}
