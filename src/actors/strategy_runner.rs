//! `StrategyRunner` actor: feeds closed bars to the configured [`Strategy`] and turns its
//! signals into order intents, proposed to the order side (which asks the risk checks first)
//! in the runner's own turn ([`Proposer::Direct`]: the request leaves before the turn ends).
//!
//! Warm-up bars (flagged `historical`) prime the indicators but are never acted on, and nothing
//! is proposed until the order side is ready (reconciled, trade stream up). An entry is sized
//! ([`plan_entry`]) from the bar's close and the account's equity, with the configured
//! broker-side protection; an exit closes the whole position. While an order of ours for a
//! symbol is open or a proposal is pending, no other is made for it.
//!
//! A strategy of several symbols (pairs) also sees the market view at every close (each
//! symbol's latest closed bar and position) and may answer for several symbols at once.
//!
//! A strategy that asks for live trades (the latency probe) gets them as [`TradeTicks`]
//! straight from the market-data session (not through the feed) and is acted on the same way,
//! priced at the trade.
//!
//! With several strategies (`[[strategies]]`) one runner runs each: it sees only its own
//! symbols, names itself in its orders' client ids, and proposes no entry that would take
//! what it holds past its allocation. An operator may pause one ([`PauseStrategy`]).
//!
//! Handles: [`BarClosed`], [`HistoryBars`], [`TradeTicks`], [`OrdersChanged`], [`AccountUpdated`],
//! [`PauseStrategy`], [`GetStrategyStats`].

use crate::actors::order_manager::Proposer;
use crate::domain::{CorrelationId, Interval, OhlcBar};
use crate::messages::orders::{Propose, ProposeError};
pub use crate::messages::strategy::{GetStrategyStats, PauseStrategy, StrategyStats};
use crate::messages::{
    AccountUpdated, BarClosed, HistoryBars, OrdersChanged, SplitApplied, TradeTicks,
};
use crate::strategy::{BarInput, Protection, Signal, Sizing, Strategy, TradeInput};
use crate::telemetry::TraceContext;
use actix::prelude::*;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub struct StrategyRunner {
    strategy: Box<dyn Strategy>,
    sizing: Sizing,
    protection: Protection,
    /// Where intents are proposed: the order side (the risk checks, then the order), in
    /// this actor's own turn when it shares the OrderManager's thread.
    propose: Proposer,
    positions: BTreeMap<String, Decimal>,
    busy: BTreeSet<String>,
    ready: bool,
    /// A signal was ignored (at info) since the order side last went not ready: the rest
    /// until it is ready again go at debug (a tick strategy may signal on every trade).
    unready_told: bool,
    /// The same for entries while the account's equity is not known, and for entries that
    /// size to no whole share.
    unknown_equity_told: bool,
    unsized_told: bool,
    equity: Option<Decimal>,
    /// Symbols with a proposal of ours that the order side's view does not show yet: until
    /// the answer (through a mailbox), or until the view numbered from the proposal on
    /// arrives (a direct proposal: its answer comes at once, its view a message later). The
    /// positions and the symbols in progress are thus always one view's, plus these.
    pending: HashMap<String, Option<u64>>,
    /// Each symbol's latest closed bar of the strategy's interval: its market view.
    latest: crate::strategy::MarketBars,
    /// With several strategies: its name (in its orders' client ids), its symbols (bars of
    /// others are not its), the most it may hold (0: no cap of its own).
    label: Option<String>,
    symbols: Option<BTreeSet<String>>,
    allocation: Decimal,
    /// The most it may hold as a percent of equity (0: none of its own).
    allocation_pct: Decimal,
    stats: StrategyStats,
}

/// A signal not acted on: counted, and logged at info the first time `$told` is not yet
/// set (it is then), at debug after that (a tick strategy may signal on every trade).
macro_rules! ignored {
    ($runner:ident, $told:ident, $($line:tt)+) => {
        $runner.stats.ignored += 1;
        if std::mem::replace(&mut $runner.$told, true) {
            tracing::debug!($($line)+);
        } else {
            tracing::info!(the_rest = "at debug", $($line)+);
        }
    };
}

impl StrategyRunner {
    pub fn new(
        strategy: Box<dyn Strategy>,
        sizing: Sizing,
        protection: Protection,
        propose: impl Into<Proposer>,
    ) -> Self {
        StrategyRunner {
            strategy,
            sizing,
            protection,
            propose: propose.into(),
            positions: BTreeMap::new(),
            busy: BTreeSet::new(),
            ready: false,
            unready_told: false,
            unknown_equity_told: false,
            unsized_told: false,
            equity: None,
            pending: HashMap::new(),
            latest: Default::default(),
            label: None,
            symbols: None,
            allocation: Decimal::ZERO,
            allocation_pct: Decimal::ZERO,
            stats: StrategyStats::default(),
        }
    }

    /// One of several strategies: `name` goes into its orders' client ids; it sees only the
    /// bars and trades of `symbols`; its entries stop at `allocation` US dollars held, gross
    /// (0: no cap of its own).
    pub fn one_of_several(mut self, name: &str, symbols: &[String], allocation: Decimal) -> Self {
        self.label = Some(name.to_string());
        self.symbols = Some(symbols.iter().cloned().collect());
        self.allocation = allocation;
        self
    }

    /// Its entries also stop at `pct` percent of the account's equity held, gross (0: none).
    pub fn with_allocation_pct(mut self, pct: Decimal) -> Self {
        self.allocation_pct = pct;
        self
    }

    /// The most it may hold now: the tighter of its caps (`None`: no cap of its own).
    fn cap(&self) -> Option<Decimal> {
        let by_equity = (!self.allocation_pct.is_zero())
            .then(|| {
                self.equity
                    .map(|e| e.saturating_mul(self.allocation_pct) / Decimal::ONE_HUNDRED)
            })
            .flatten();
        let by_usd = (!self.allocation.is_zero()).then_some(self.allocation);
        match (by_usd, by_equity) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Its name and symbols, for the status.
    pub fn describe(mut self, name: &str, symbols: &[String]) -> Self {
        self.stats.name = name.to_string();
        self.stats.kind = self.strategy.name().to_string();
        self.stats.symbols = symbols.to_vec();
        self
    }

    fn mine(&self, symbol: &str) -> bool {
        self.symbols.as_ref().is_none_or(|s| s.contains(symbol))
    }

    /// What it holds, gross, at the latest closes (or `price` for `symbol`).
    fn held_value(&self, symbol: &str, price: Decimal) -> Decimal {
        self.positions
            .iter()
            .filter(|(s, _)| self.mine(s))
            .map(|(s, q)| {
                let p = if s == symbol {
                    price
                } else {
                    self.latest.get(s).map(|b| b.close).unwrap_or(price)
                };
                q.saturating_mul(p).abs()
            })
            .fold(Decimal::ZERO, Decimal::saturating_add)
    }

    /// Turns a live signal into an intent and proposes it (unless the order side is
    /// not ready or an order for the symbol is in progress). `parent`: the stage before.
    fn act(
        &mut self,
        signal: Signal,
        symbol: &str,
        price: Decimal,
        correlation_id: CorrelationId,
        parent: &crate::telemetry::TraceContext,
        ctx: &mut Context<Self>,
    ) {
        self.stats.signals += 1;
        let reason = match &signal {
            Signal::Enter { reason, .. }
            | Signal::Exit { reason }
            | Signal::Target { reason, .. }
            | Signal::TargetWeight { reason, .. } => reason.clone(),
            Signal::Hold => return,
        };
        if !self.ready {
            ignored!(self, unready_told, symbol = %symbol, ?signal, correlation_id = %correlation_id, "signal ignored: the order side is not ready");
            return;
        }
        if self.busy.contains(symbol) || self.pending.contains_key(symbol) {
            tracing::debug!(symbol = %symbol, ?signal, correlation_id = %correlation_id, "signal ignored: an order for this symbol is in progress");
            self.stats.ignored += 1;
            return;
        }
        if self.stats.paused {
            tracing::debug!(symbol = %symbol, ?signal, correlation_id = %correlation_id, strategy = %self.stats.name, "signal ignored: the strategy is paused");
            self.stats.ignored += 1;
            return;
        }
        let position = self.positions.get(symbol).copied().unwrap_or_default();
        let sized = matches!(signal, Signal::Enter { .. } | Signal::TargetWeight { .. });
        if sized && self.equity.is_none() {
            // Sized from equity, which the account's first read has not given yet.
            ignored!(self, unknown_equity_told, symbol = %symbol, ?signal, correlation_id = %correlation_id, "signal ignored: the account's equity is not known yet");
            return;
        }
        let Some(mut intent) = crate::strategy::intent_for(
            &signal,
            symbol,
            price,
            position,
            self.equity,
            self.sizing,
            self.protection,
        ) else {
            // An exit with nothing held or a target already held asks for nothing; an entry
            // that sizes to no whole share is ignored, out loud.
            if matches!(signal, Signal::Enter { .. }) {
                let sizing = self.sizing;
                ignored!(self, unsized_told, symbol = %symbol, price = %price, ?sizing, correlation_id = %correlation_id, "signal ignored: the sizing buys no whole share");
            }
            return;
        };
        intent.correlation_id = correlation_id;
        intent.strategy = self.label.clone();
        let adds = matches!(intent.purpose, crate::risk::Purpose::Entry { .. });
        if let (true, Some(cap)) = (adds, self.cap()) {
            let after = self
                .held_value(symbol, price)
                .saturating_add(intent.qty.saturating_mul(price));
            if after > cap {
                self.stats.over_allocation += 1;
                tracing::info!(symbol = %symbol, strategy = %self.stats.name, held_after = %after.round_dp(2), allocation = %cap.round_dp(2), "entry not proposed: past the strategy's allocation");
                return;
            }
        }
        let span = tracing::info_span!(
            parent: None,
            "strategy.signal",
            strategy = %self.stats.name,
            kind = self.strategy.name(),
            symbol = %symbol,
            side = ?intent.side,
            qty = %intent.qty,
            reason = %reason,
            correlation_id = %intent.correlation_id,
        );
        intent.trace = parent.child(&span);
        tracing::info!(symbol = %symbol, price = %price, side = ?intent.side, qty = %intent.qty, reason = %reason, correlation_id = %intent.correlation_id, "signal");
        self.stats.proposed += 1;
        let symbol = symbol.to_string();
        // Taken by the order side now (directly, or queued on it); only the answer waits.
        let answer = self.propose.propose(Propose::at(intent, price), ctx);
        self.pending
            .insert(symbol.clone(), self.propose.shown_from());
        ctx.spawn(answer.into_actor(self).map(move |r, act, _| {
            // An order taken directly stays pending until a view shows it.
            if !matches!((&r, act.pending.get(&symbol)), (Ok(Ok(_)), Some(Some(_)))) {
                act.pending.remove(&symbol);
            }
            match r {
                Ok(Ok(_)) => act.stats.sent += 1,
                Ok(Err(ProposeError::Refused(_))) => act.stats.refused += 1,
                Ok(Err(e)) => {
                    tracing::warn!(symbol = %symbol, error = %e, "signal not acted on")
                }
                Err(e) => {
                    tracing::warn!(symbol = %symbol, error = %e, "order manager unreachable")
                }
            }
        }));
    }
}

/// Under the daemon's supervision: it keeps its state across a restart (it holds no
/// connection of its own).
impl actix::Supervised for StrategyRunner {
    fn restarting(&mut self, _: &mut Context<Self>) {
        tracing::warn!(actor = "StrategyRunner", "actor restarting");
    }
}

impl Actor for StrategyRunner {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        tracing::info!(strategy = self.strategy.name(), interval = self.strategy.interval().name(), sizing = ?self.sizing, protection = ?self.protection, "strategy running");
    }
}

impl Handler<BarClosed> for StrategyRunner {
    type Result = ();

    fn handle(&mut self, msg: BarClosed, ctx: &mut Context<Self>) {
        if msg.interval != self.strategy.interval() || !self.mine(&msg.symbol) {
            return;
        }
        self.on_closed(
            &msg.symbol,
            msg.interval,
            &msg.bar,
            msg.historical,
            &msg.trace,
            ctx,
        );
    }
}

/// A warm-up's bars of a symbol: each as a historical [`BarClosed`] would be.
impl Handler<HistoryBars> for StrategyRunner {
    type Result = ();

    fn handle(&mut self, msg: HistoryBars, ctx: &mut Context<Self>) {
        if msg.interval != self.strategy.interval() || !self.mine(&msg.symbol) {
            return;
        }
        let trace = TraceContext::default();
        for bar in msg.bars.iter() {
            self.on_closed(&msg.symbol, msg.interval, bar, true, &trace, ctx);
        }
    }
}

impl StrategyRunner {
    /// A closed bar of the strategy's interval, of one of its symbols: the strategy sees it,
    /// and acts on it unless it is `historical`.
    fn on_closed(
        &mut self,
        symbol: &str,
        interval: Interval,
        bar: &OhlcBar,
        historical: bool,
        trace: &TraceContext,
        ctx: &mut Context<Self>,
    ) {
        self.stats.bars += 1;
        if !historical && self.latest.get(symbol).is_none() {
            self.stats.cold_bars += 1;
        }
        let position = self.positions.get(symbol).copied().unwrap_or_default();
        let signal = self.strategy.on_bar(&BarInput {
            symbol,
            interval,
            bar,
            historical,
            position,
            explain: true,
        });
        self.latest.keep(symbol, bar);
        let view = crate::strategy::MarketView {
            closed: symbol,
            bars: &self.latest,
            positions: &self.positions,
            historical,
            equity: self.equity,
            now: interval.end_of(bar.start),
        };
        let several = self.strategy.on_market(&view);
        if historical {
            return;
        }
        if signal != Signal::Hold {
            let correlation_id = format!("{symbol}-{}", bar.start.timestamp()).into();
            self.act(signal, symbol, bar.close, correlation_id, trace, ctx);
        }
        // Several symbols at once (a pair's legs): each priced at its own latest close and
        // tied to its own bar.
        for (symbol, signal) in several {
            let Some(bar) = self.latest.get(&symbol) else {
                continue;
            };
            let (price, start) = (bar.close, bar.start.timestamp());
            self.act(
                signal,
                &symbol,
                price,
                format!("{symbol}-{start}").into(),
                trace,
                ctx,
            );
        }
    }
}

impl Handler<SplitApplied> for StrategyRunner {
    type Result = ();
    fn handle(&mut self, msg: SplitApplied, _: &mut Context<Self>) {
        tracing::info!(symbol = %msg.symbol, ratio = ?msg.ratio, "strategy: symbol started over after a split");
        self.strategy.reset(&msg.symbol);
        self.latest.remove(&msg.symbol);
    }
}

impl Handler<TradeTicks> for StrategyRunner {
    type Result = ();

    fn handle(&mut self, msg: TradeTicks, ctx: &mut Context<Self>) {
        for trade in &msg.trades {
            if !self.mine(&trade.symbol) {
                continue;
            }
            self.stats.trades += 1;
            let position = self
                .positions
                .get(trade.symbol.as_str())
                .copied()
                .unwrap_or_default();
            let signal = self.strategy.on_trade(&TradeInput { trade, position });
            if signal == Signal::Hold {
                continue;
            }
            let correlation_id = CorrelationId::of_trade(&trade.symbol, trade.id);
            let parent = crate::telemetry::TraceContext::default().arrived_at(Some(msg.arrived));
            self.act(
                signal,
                &trade.symbol,
                trade.price,
                correlation_id,
                &parent,
                ctx,
            );
        }
    }
}

impl Handler<OrdersChanged> for StrategyRunner {
    type Result = ();
    fn handle(&mut self, msg: OrdersChanged, _: &mut Context<Self>) {
        self.positions = msg.positions;
        self.busy = msg.busy_symbols;
        self.pending
            .retain(|_, shown| !shown.is_some_and(|from| msg.seq >= from));
        if msg.ready {
            self.unready_told = false;
        }
        self.ready = msg.ready;
    }
}

impl Handler<AccountUpdated> for StrategyRunner {
    type Result = ();
    fn handle(&mut self, msg: AccountUpdated, _: &mut Context<Self>) {
        self.equity = Some(msg.0.equity);
    }
}

impl Handler<PauseStrategy> for StrategyRunner {
    type Result = ();
    fn handle(&mut self, msg: PauseStrategy, _: &mut Context<Self>) {
        self.stats.paused = msg.0;
        tracing::info!(strategy = %self.stats.name, paused = msg.0, "strategy paused or resumed by the operator");
    }
}

impl Handler<GetStrategyStats> for StrategyRunner {
    type Result = MessageResult<GetStrategyStats>;
    fn handle(&mut self, _: GetStrategyStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.stats.clone())
    }
}
