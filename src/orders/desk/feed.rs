//! What the broker says of our orders after the answer: the `trade_updates` stream, its
//! state, and the REST polls and lookups (the fallback while it is down, and the lookup of an
//! order unanswered past the ack timeout).

use super::{Effect, OrderDesk, PollPlan};
use crate::alpaca::model::{Order, OrderStatus, TradeUpdate};
use crate::domain::ConnectionState;
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use std::time::Duration;

impl OrderDesk {
    /// A `trade_updates` batch.
    pub fn on_updates(&mut self, updates: &[TradeUpdate], now: DateTime<Utc>) -> Vec<Effect> {
        let mut out = Vec::new();
        for u in updates {
            let changes = self.book.on_update(u);
            self.apply(changes, &mut out);
            self.learn_legs(&u.order, now, &mut out);
        }
        out
    }

    /// The stream is ready, with the open orders it read (a gap repair); `gap`: it was down.
    pub fn on_stream_ready(
        &mut self,
        orders: &[Order],
        gap: bool,
        now: DateTime<Utc>,
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        for o in orders {
            self.on_broker_order(o, now, &mut out);
        }
        if !self.lifecycle.stream_ready() {
            tracing::info!("trade_updates stream ready");
        }
        self.lifecycle = self.lifecycle.stream_ready_now();
        self.stream_up = true;
        // After a gap, fills of orders we do not track are found by reconciliation.
        if gap && self.lifecycle.reconciled() {
            out.push(Effect::Reconcile {
                after: Duration::ZERO,
            });
        }
        out
    }

    /// The stream's connection changed. State changes come through the stream client's
    /// actor, the ready signal straight from the session: a "subscribing" may arrive after
    /// the stream is ready, so only a state that means the stream went away takes it down.
    pub fn on_stream_state(&mut self, to: ConnectionState) {
        match to {
            ConnectionState::Streaming => self.stream_up = true,
            ConnectionState::Reconnecting | ConnectionState::Failed => {
                if self.stream_up {
                    tracing::warn!(state = ?to, "trade_updates stream down: polling open orders over REST");
                }
                self.stream_up = false;
            }
            ConnectionState::Disconnected => {
                if self.stream_up {
                    tracing::info!("trade_updates stream stopped");
                }
                self.stream_up = false;
            }
            ConnectionState::Connecting
            | ConnectionState::Authenticating
            | ConnectionState::Subscribing => {}
        }
    }

    /// What the poll looks up now, if anything: orders unanswered past the ack timeout, and
    /// every open order while the stream is down. Final orders leave the book here.
    pub fn poll_plan(&mut self, now: DateTime<Utc>) -> Option<PollPlan> {
        if self.polling || !self.lifecycle.reconciled() {
            return None;
        }
        let epoch = self.epoch;
        for t in self.book.prune_final() {
            self.retired
                .push((epoch, Some(t.client_order_id), t.broker_order_id));
        }
        let timeout =
            chrono::Duration::from_std(self.ack_timeout).unwrap_or(chrono::Duration::seconds(5));
        let mut lookups: Vec<String> = self
            .book
            .overdue(now, timeout)
            .into_iter()
            .filter(|c| !self.in_flight.contains(c))
            .collect();
        let overdue: HashSet<String> = lookups.iter().cloned().collect();
        if !self.stream_up {
            lookups.extend(
                self.book
                    .open()
                    .filter(|t| t.status.is_some())
                    .map(|t| t.client_order_id.clone()),
            );
            self.stats.polls += 1;
        }
        if lookups.is_empty() {
            return None;
        }
        self.polling = true;
        Some(PollPlan { lookups, overdue })
    }

    /// The poll's answers: the broker's order by client order id (`None`: a 404), or why not.
    pub fn on_polled(
        &mut self,
        plan: &PollPlan,
        results: Vec<(String, Result<Option<Order>, String>)>,
        now: DateTime<Utc>,
    ) -> Vec<Effect> {
        self.polling = false;
        let mut out = Vec::new();
        for (coid, r) in results {
            let overdue = plan.overdue.contains(&coid);
            match r {
                Ok(Some(order)) => {
                    if overdue {
                        self.stats.lookups += 1;
                        tracing::info!(client_order_id = %coid, status = ?order.status, "overdue order found at the broker");
                    }
                    self.on_broker_order(&order, now, &mut out);
                }
                Ok(None) if overdue && !self.in_flight.contains(&coid) => {
                    self.stats.lookups += 1;
                    self.stats.intents_never_sent += 1;
                    tracing::warn!(client_order_id = %coid, "the broker never received this order; closed, not resent");
                    let closed = self.close_unsent(
                        &coid,
                        OrderStatus::Rejected,
                        "the broker never received it",
                        true,
                        now,
                    );
                    out.extend(closed);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(client_order_id = %coid, error = %e, "cannot look up the order; will try again")
                }
            }
        }
        out
    }
}
