//! `RiskManager` actor: every order intent passes [`risk::check`] here, and only an approved
//! intent goes on to the OrderManager (which accepts nothing else: [`Approved`] can only be
//! made by the risk module).
//!
//! Everything a check needs is already here when a proposal comes, so it never waits on
//! another actor before deciding: the price the intent was decided at comes with it
//! ([`Propose::price`]); halts and resumptions are pushed by the feed ([`SymbolStatus`]); the
//! other symbols' prices (for gross exposure) are minute closes ([`BarClosed`], as a mark
//! listener of the feed: every live minute, and each symbol's last warm-up minute);
//! positions, open orders and pending quantity come from the order side; equity, buying
//! power and the market clock from the account.
//!
//! Proposals are handled one at a time ([`AtomicResponse`]): an approved order is handed to
//! the OrderManager before the next proposal is looked at, so two proposals can never both
//! use the same room under a limit.
//!
//! Handles: [`Propose`], [`OrdersChanged`], [`AccountUpdated`], [`SymbolStatus`],
//! [`BarClosed`], [`SplitApplied`], [`SetMode`], [`SetLimits`], [`GetRiskStats`]. Every
//! refusal is logged with its reason code and counted per code.

use crate::domain::Interval;
use crate::messages::market::SymbolStatus;
use crate::messages::orders::{Propose, ProposeError, SubmitApproved};
pub use crate::messages::risk::{GetRiskStats, RiskStats, SetLimits, SetMode};
use crate::messages::{AccountUpdated, BarClosed, OrdersChanged, SplitApplied};
use crate::risk::{self, Approved, Intent, RiskLimits, RiskState, TradingMode};
use actix::prelude::*;
use chrono::{DateTime, Utc};

pub struct RiskManager {
    limits: RiskLimits,
    mode: TradingMode,
    state: RiskState,
    have_account: bool,
    /// The clock's next open and close as last read, and the start of the live minute bar
    /// that showed the market open before a read did (see [`BarClosed`]).
    session: (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
    opened_by_bar: Option<DateTime<Utc>>,
    orders: Recipient<SubmitApproved>,
    stats: RiskStats,
}

impl RiskManager {
    pub fn new(limits: RiskLimits, mode: TradingMode, orders: Recipient<SubmitApproved>) -> Self {
        RiskManager {
            limits,
            mode,
            state: RiskState::default(),
            have_account: false,
            session: (None, None),
            opened_by_bar: None,
            orders,
            stats: RiskStats::default(),
        }
    }

    /// A live minute bar starting at `start` (broker time) inside the session the clock
    /// announced: the market is open, though the next read of the clock may be seconds away
    /// (minutes of market time on a fast simulator). One at or past the close: closed.
    fn follow_the_clock(&mut self, start: DateTime<Utc>) {
        let (Some(open), Some(close)) = self.session else {
            return;
        };
        if !self.state.market_open && open <= start && start < close {
            tracing::info!(bar_start = %start, "the market opened (a live bar inside the session; the clock is read again later)");
            self.state.market_open = true;
            self.opened_by_bar = Some(start);
        } else if self.state.market_open && start >= close {
            self.state.market_open = false;
            self.opened_by_bar = None;
        }
    }

    fn apply_orders(&mut self, o: &OrdersChanged) {
        self.state.positions = o.positions.iter().map(|(k, v)| (k.clone(), *v)).collect();
        self.state.open_orders = o.open_orders;
        self.state.pending_qty = o.pending_qty.clone();
    }

    fn decide(&mut self, mut intent: Intent) -> Result<Approved, ProposeError> {
        let span = tracing::info_span!(
            parent: None,
            "risk.check",
            symbol = %intent.symbol,
            side = ?intent.side,
            qty = %intent.qty,
            purpose = ?intent.purpose,
            correlation_id = %intent.correlation_id,
            mode = ?self.mode,
            outcome = tracing::field::Empty,
        );
        intent.trace = intent.trace.child(&span);
        if !self.have_account && !matches!(intent.purpose, risk::Purpose::Flatten) {
            span.record("outcome", "not_ready");
            return Err(ProposeError::NotSent(
                "the account has not been read yet".into(),
            ));
        }
        let now = Utc::now();
        match risk::check(intent, &self.state, &self.limits, self.mode, now) {
            Ok(approved) => {
                span.record("outcome", "approved");
                self.stats.approved += 1;
                self.state.recent_orders.push_back(now);
                let window = now - chrono::Duration::minutes(1);
                while self
                    .state
                    .recent_orders
                    .front()
                    .is_some_and(|t| *t <= window)
                {
                    self.state.recent_orders.pop_front();
                }
                Ok(approved)
            }
            Err(refusal) => {
                span.record("outcome", refusal.code.as_str());
                *self.stats.refused.entry(refusal.code.as_str()).or_default() += 1;
                tracing::info!(code = refusal.code.as_str(), symbol = %refusal.symbol, side = ?refusal.side, qty = %refusal.qty, detail = %refusal.detail, "risk refused an order");
                Err(refusal.into())
            }
        }
    }
}

/// Under the daemon's supervision: it keeps its state across a restart (it holds no
/// connection of its own).
impl actix::Supervised for RiskManager {
    fn restarting(&mut self, _: &mut Context<Self>) {
        tracing::warn!(actor = "RiskManager", "actor restarting");
    }
}

impl Actor for RiskManager {
    type Context = Context<Self>;
}

impl Handler<Propose> for RiskManager {
    type Result = AtomicResponse<Self, Result<String, ProposeError>>;

    fn handle(&mut self, msg: Propose, _: &mut Context<Self>) -> Self::Result {
        if let Some(price) = msg.price {
            self.state
                .last_trade
                .insert(msg.intent.symbol.clone(), price);
        }
        let decision = self.decide(msg.intent);
        let orders = self.orders.clone();
        let submit = async move {
            let approved = decision?;
            match orders.send(SubmitApproved(approved)).await {
                Ok(Ok(done)) => Ok(done),
                Ok(Err(e)) => Err(ProposeError::NotSent(e.to_string())),
                Err(e) => Err(ProposeError::NotSent(format!(
                    "the order manager is not running: {e}"
                ))),
            }
        };
        AtomicResponse::new(Box::pin(submit.into_actor(self).map(|result, act, _| {
            let done = result?;
            act.apply_orders(&done.view);
            Ok(done.client_order_id)
        })))
    }
}

/// A halt or a resumption, as the feed heard it.
impl Handler<SymbolStatus> for RiskManager {
    type Result = ();
    fn handle(&mut self, msg: SymbolStatus, _: &mut Context<Self>) {
        if msg.halted {
            self.state.halted.insert(msg.symbol);
        } else {
            self.state.halted.remove(&msg.symbol);
        }
    }
}

/// A minute bar's close marks its symbol (the price of what is held, for gross exposure). A
/// warm-up or backfill bar only marks a symbol that has no price yet: it may be older than
/// the one a proposal brought.
impl Handler<BarClosed> for RiskManager {
    type Result = ();
    fn handle(&mut self, msg: BarClosed, _: &mut Context<Self>) {
        if msg.interval != Interval::M1 || msg.bar.close <= rust_decimal::Decimal::ZERO {
            return;
        }
        if !msg.historical {
            self.follow_the_clock(msg.bar.start);
            self.state.last_trade.insert(msg.symbol, msg.bar.close);
        } else {
            self.state
                .last_trade
                .entry(msg.symbol)
                .or_insert(msg.bar.close);
        }
    }
}

/// A split: the symbol's price so far is in the old shares; the next bar or proposal prices it.
impl Handler<SplitApplied> for RiskManager {
    type Result = ();
    fn handle(&mut self, msg: SplitApplied, _: &mut Context<Self>) {
        self.state.last_trade.remove(&msg.symbol);
    }
}

impl Handler<OrdersChanged> for RiskManager {
    type Result = ();
    fn handle(&mut self, msg: OrdersChanged, _: &mut Context<Self>) {
        self.apply_orders(&msg);
    }
}

impl Handler<AccountUpdated> for RiskManager {
    type Result = ();
    fn handle(&mut self, msg: AccountUpdated, _: &mut Context<Self>) {
        let a = msg.0;
        self.have_account = true;
        self.state.buying_power = a.buying_power;
        self.state.equity = a.equity;
        self.state.start_of_day_equity = a.start_of_day_equity;
        self.session = (a.next_open, a.next_close);
        // A read made before the bar that showed the open does not close the market again.
        let older =
            matches!((a.read_at, self.opened_by_bar), (Some(read), Some(bar)) if read < bar);
        if a.market_open || !older {
            self.state.market_open = a.market_open;
            self.opened_by_bar = None;
        }
    }
}

impl Handler<SetMode> for RiskManager {
    type Result = ();
    fn handle(&mut self, msg: SetMode, _: &mut Context<Self>) {
        self.mode = msg.0;
    }
}

impl Handler<SetLimits> for RiskManager {
    type Result = ();
    fn handle(&mut self, msg: SetLimits, _: &mut Context<Self>) {
        self.limits = msg.0;
    }
}

impl Handler<GetRiskStats> for RiskManager {
    type Result = MessageResult<GetRiskStats>;
    fn handle(&mut self, _: GetRiskStats, _: &mut Context<Self>) -> Self::Result {
        let mut s = self.stats.clone();
        s.mode = Some(self.mode);
        MessageResult(s)
    }
}

#[cfg(test)]
mod tests;
