//! `RiskManager` actor: the shell that keeps the risk checks' state current. It feeds the
//! [`RiskGate`] it shares with the OrderManager what the rest of the daemon pushes, and
//! answers the checks' counters; the order side's entry asks the gate about each proposal
//! ([`Propose`](crate::messages::orders::Propose)) in the same call that takes the approved
//! order (`actors::order_manager::OrderEntry`), so no order reaches the broker unchecked and a
//! proposal never waits on another actor.
//!
//! Everything a check needs is in the gate when a proposal comes: the price the intent was
//! decided at comes with it; halts and resumptions are pushed by the feed ([`SymbolStatus`]);
//! the other symbols' prices (for gross exposure) are minute closes ([`BarClosed`], as a mark
//! listener of the feed: every live minute, and each symbol's last warm-up minute);
//! positions, open orders and pending quantity come from the order side itself; equity,
//! buying power and the market clock from the account.
//!
//! Handles: [`AccountUpdated`], [`SymbolStatus`], [`BarClosed`], [`SplitApplied`],
//! [`SetMode`], [`SetLimits`], [`GetRiskStats`]. Every refusal is logged with its reason code
//! and counted per code.

use crate::domain::Interval;
use crate::messages::market::SymbolStatus;
pub use crate::messages::risk::{GetRiskStats, RiskStats, SetLimits, SetMode};
use crate::messages::{AccountUpdated, BarClosed, SplitApplied};
use crate::risk::{AccountRead, RiskGate, RiskLimits, SharedGate, TradingMode};
use actix::prelude::*;

pub struct RiskManager {
    gate: SharedGate,
}

impl RiskManager {
    pub fn new(limits: RiskLimits, mode: TradingMode) -> Self {
        RiskManager {
            gate: SharedGate::new(RiskGate::new(limits, mode)),
        }
    }

    /// The gate the OrderManager asks (see [`crate::messages::orders::Connect`]).
    pub fn gate(&self) -> SharedGate {
        self.gate.clone()
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

/// A halt or a resumption, as the feed heard it.
impl Handler<SymbolStatus> for RiskManager {
    type Result = ();
    fn handle(&mut self, msg: SymbolStatus, _: &mut Context<Self>) {
        self.gate.lock().on_status(msg.symbol, msg.halted);
    }
}

/// A minute bar's close marks its symbol (see [`RiskGate::on_minute`]).
impl Handler<BarClosed> for RiskManager {
    type Result = ();
    fn handle(&mut self, msg: BarClosed, _: &mut Context<Self>) {
        if msg.interval == Interval::M1 {
            self.gate
                .lock()
                .on_minute(msg.symbol, msg.bar.close, msg.bar.start, msg.historical);
        }
    }
}

impl Handler<SplitApplied> for RiskManager {
    type Result = ();
    fn handle(&mut self, msg: SplitApplied, _: &mut Context<Self>) {
        self.gate.lock().on_split(&msg.symbol);
    }
}

impl Handler<AccountUpdated> for RiskManager {
    type Result = ();
    fn handle(&mut self, msg: AccountUpdated, _: &mut Context<Self>) {
        let a = msg.0;
        self.gate.lock().on_account(&AccountRead {
            buying_power: a.buying_power,
            equity: a.equity,
            start_of_day_equity: a.start_of_day_equity,
            market_open: a.market_open,
            next_open: a.next_open,
            next_close: a.next_close,
            read_at: a.read_at,
        });
    }
}

impl Handler<SetMode> for RiskManager {
    type Result = ();
    fn handle(&mut self, msg: SetMode, _: &mut Context<Self>) {
        self.gate.lock().set_mode(msg.0);
    }
}

impl Handler<SetLimits> for RiskManager {
    type Result = ();
    fn handle(&mut self, msg: SetLimits, _: &mut Context<Self>) {
        self.gate.lock().set_limits(msg.0);
    }
}

impl Handler<GetRiskStats> for RiskManager {
    type Result = MessageResult<GetRiskStats>;
    fn handle(&mut self, _: GetRiskStats, _: &mut Context<Self>) -> Self::Result {
        let gate = self.gate.lock();
        let counts = gate.counts();
        MessageResult(RiskStats {
            mode: Some(gate.mode()),
            approved: counts.approved,
            refused: counts.refused.clone(),
        })
    }
}

#[cfg(test)]
mod tests;
