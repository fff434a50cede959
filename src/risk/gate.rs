//! The risk checks with the state they keep: [`RiskGate`], a synchronous core. The
//! RiskManager actor feeds it what the rest of the daemon pushes (minute closes, halts,
//! splits, the account, the mode, the limits) and answers its counters; the order side's
//! entry (held by the OrderManager and the strategies on its thread) asks it about each
//! proposal and tells it the order side's book, all in the one call that then takes the
//! approved order, so a proposal never waits on another actor and two
//! proposals can never both use the same room under a limit. Both hold one [`SharedGate`].

use super::{Approved, Intent, Refusal, RiskLimits, RiskState, SymbolMap, Tally, TradingMode};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Why a proposal did not become an order.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProposeError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// Approved, but the order side could not take it (not reconciled yet, journal failure),
    /// or not checked yet (no account read).
    #[error("not sent: {0}")]
    NotSent(String),
}

/// What the checks take from a read of the account.
#[derive(Debug, Clone, Default)]
pub struct AccountRead {
    pub buying_power: Decimal,
    pub equity: Decimal,
    pub start_of_day_equity: Decimal,
    pub market_open: bool,
    /// The clock's next open and close.
    pub next_open: Option<DateTime<Utc>>,
    pub next_close: Option<DateTime<Utc>>,
    /// When the clock was read.
    pub read_at: Option<DateTime<Utc>>,
}

/// The risk checks' counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GateCounts {
    pub approved: u64,
    pub refused: BTreeMap<&'static str, u64>,
}

/// The checks, their limits, the mode they apply and the state they meet.
#[derive(Debug, Clone)]
pub struct RiskGate {
    limits: RiskLimits,
    mode: TradingMode,
    state: RiskState,
    /// What is held and sent, counted as `state` changes (a check walks neither).
    tally: Tally,
    have_account: bool,
    /// The clock's next open and close as last read, and the start of the live minute bar
    /// that showed the market open before a read did (see [`RiskGate::on_minute`]).
    session: (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
    opened_by_bar: Option<DateTime<Utc>>,
    counts: GateCounts,
}

impl RiskGate {
    pub fn new(limits: RiskLimits, mode: TradingMode) -> Self {
        RiskGate {
            limits,
            mode,
            state: RiskState::default(),
            tally: Tally::default(),
            have_account: false,
            session: (None, None),
            opened_by_bar: None,
            counts: GateCounts::default(),
        }
    }

    pub fn mode(&self) -> TradingMode {
        self.mode
    }

    pub fn counts(&self) -> &GateCounts {
        &self.counts
    }

    pub fn set_mode(&mut self, mode: TradingMode) {
        self.mode = mode;
    }

    pub fn set_limits(&mut self, limits: RiskLimits) {
        self.limits = limits;
    }

    /// Checks `intent`, decided at `price` (the trade or close the strategy saw: the
    /// symbol's last trade from now on; `None`: the last one known). An approval counts
    /// against the order rate from `now`.
    pub fn propose(
        &mut self,
        intent: Intent,
        price: Option<Decimal>,
        now: DateTime<Utc>,
    ) -> Result<Approved, ProposeError> {
        if let Some(price) = price {
            self.set_price(intent.symbol.clone(), Some(price));
        }
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
        let mut intent = intent;
        intent.trace = intent.trace.child(&span);
        if !self.have_account && !matches!(intent.purpose, super::Purpose::Flatten) {
            span.record("outcome", "not_ready");
            return Err(ProposeError::NotSent(
                "the account has not been read yet".into(),
            ));
        }
        // Only the last minute's orders are kept: they are the rate check's count.
        let window = now - chrono::Duration::minutes(1);
        while self
            .state
            .recent_orders
            .front()
            .is_some_and(|t| *t <= window)
        {
            self.state.recent_orders.pop_front();
        }
        self.tally.recent_orders = self.state.recent_orders.len();
        let checked = super::check_tallied(
            intent,
            &self.state,
            &self.tally,
            &self.limits,
            self.mode,
            now,
        );
        match checked {
            Ok(approved) => {
                span.record("outcome", "approved");
                self.counts.approved += 1;
                self.state.recent_orders.push_back(now);
                Ok(approved)
            }
            Err(refusal) => {
                span.record("outcome", refusal.code.as_str());
                *self
                    .counts
                    .refused
                    .entry(refusal.code.as_str())
                    .or_default() += 1;
                tracing::info!(code = refusal.code.as_str(), symbol = %refusal.symbol, side = ?refusal.side, qty = %refusal.qty, detail = %refusal.detail, "risk refused an order");
                Err(refusal.into())
            }
        }
    }

    /// The order side's book: positions, open orders, and the quantity they would still add.
    pub fn on_orders<'a>(
        &mut self,
        positions: impl IntoIterator<Item = (&'a String, &'a Decimal)>,
        open_orders: usize,
        pending_qty: &SymbolMap<Decimal>,
    ) {
        self.state.positions = positions
            .into_iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        self.state.open_orders = open_orders;
        self.state.pending_qty = pending_qty.clone();
        self.tally.recount_positions(&self.state);
    }

    /// `symbol`'s last trade is now `to` (`None`: forgotten).
    fn set_price(&mut self, symbol: String, to: Option<Decimal>) {
        let from = match to {
            Some(p) => self.state.last_trade.insert(symbol.clone(), p),
            None => self.state.last_trade.remove(&symbol),
        };
        self.tally
            .repriced(&self.state, &symbol, from.unwrap_or_default());
    }

    /// What the checks see (for tests and the operator's view).
    pub fn state(&self) -> &RiskState {
        &self.state
    }

    /// What is held and sent as counted so far.
    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// A halt (`true`) or a resumption of `symbol`, as the feed heard it.
    pub fn on_status(&mut self, symbol: String, halted: bool) {
        if halted {
            self.state.halted.insert(symbol);
        } else {
            self.state.halted.remove(&symbol);
        }
    }

    /// A minute bar's close marks its symbol (the price of what is held, for gross
    /// exposure). A warm-up or backfill bar (`historical`) only marks a symbol that has no
    /// price yet: it may be older than the one a proposal brought. A live bar starting at
    /// `start` also follows the clock (see [`Self::follow_the_clock`]).
    pub fn on_minute(
        &mut self,
        symbol: String,
        close: Decimal,
        start: DateTime<Utc>,
        historical: bool,
    ) {
        if close <= Decimal::ZERO {
            return;
        }
        if !historical {
            self.follow_the_clock(start);
            self.set_price(symbol, Some(close));
        } else if !self.state.last_trade.contains_key(&symbol) {
            self.set_price(symbol, Some(close));
        }
    }

    /// A split: the symbol's price so far is in the old shares; the next bar or proposal
    /// prices it.
    pub fn on_split(&mut self, symbol: &str) {
        self.set_price(symbol.to_string(), None);
    }

    pub fn on_account(&mut self, a: &AccountRead) {
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
}

/// One [`RiskGate`] shared by the RiskManager and the order side's entry (they run on the order
/// path's thread; the lock is never held across an await or a call out of the gate).
#[derive(Debug, Clone)]
pub struct SharedGate(Arc<Mutex<RiskGate>>);

impl SharedGate {
    pub fn new(gate: RiskGate) -> Self {
        SharedGate(Arc::new(Mutex::new(gate)))
    }

    /// The gate. (Nothing in it panics; were a holder to, the gate's state is still whole
    /// between two of its calls, so a poisoned lock is taken as it is.)
    pub fn lock(&self) -> MutexGuard<'_, RiskGate> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
