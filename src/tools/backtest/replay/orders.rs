//! The replay's order path, as the StrategyRunner, the RiskManager and the OrderManager take
//! it: a signal into an intent, the risk checks (the account alone first for entries from
//! flat, see [`risk::pace`]), the order to the engine.

use super::Replay;
use crate::domain::TradingMode;
use crate::orders::desk::OrderDesk;
use crate::risk::{self, Intent, Purpose, RefusalCode};
use crate::strategy::{Signal, buys_a_share, entry_notional, intent_for};
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;

impl Replay<'_> {
    /// A signal into an intent for the risk checks, as the StrategyRunner does.
    /// `at`: the symbol's index, when the caller has it (the bar's own symbol).
    pub(super) fn act(
        &mut self,
        at: Option<u32>,
        symbol: &str,
        signal: Signal,
        close: Decimal,
        start: DateTime<Utc>,
        now: DateTime<Utc>,
    ) {
        if signal == Signal::Hold {
            return;
        }
        let followed = match at {
            Some(i) => self.symbols.active(i),
            None => self.symbols.followed(symbol),
        };
        if followed && self.busy(symbol) {
            return;
        }
        let position = if followed {
            self.engine.qty(symbol)
        } else {
            Decimal::ZERO
        };
        if let Signal::Enter { .. } = signal
            && position.is_zero()
            && self.refused_at_pace(close, now)
        {
            return;
        }
        let Some(intent) = intent_for(
            &signal,
            symbol,
            close,
            position,
            Some(self.equity()),
            self.config.strategy.sizing_rule(),
            self.config.strategy.protection_rule(),
        ) else {
            return;
        };
        self.out.signals += 1;
        self.propose(intent, close, now, Some(start));
    }

    /// An entry from flat at a price inside the band: before the risk checks look at its size
    /// they look at the order rate and the open orders ([`risk::pace`]). When those refuse, the
    /// refusal is counted as [`Self::propose`] would count it, and nothing is sized beyond its
    /// share count (a year has millions of these at `max_open_orders`). `false`: go on.
    fn refused_at_pace(&mut self, close: Decimal, now: DateTime<Utc>) -> bool {
        let band = self.limits.price_band_pct;
        if band < Decimal::ZERO || close.checked_mul(band).is_none() {
            return false;
        }
        // The two counts the pace checks read, without bringing the whole risk state up to
        // date: `risk::pace` on the state `propose` would build.
        if self.prune_recent(now) {
            self.risk_stale = true;
        }
        let open = match self.open_count {
            Some(n) => n,
            None => *self.open_count.insert(self.engine.open_count()),
        };
        let recent = risk::orders_within_a_minute(&self.recent, now);
        let Err(code) = risk::pace_of(recent, open, &self.limits) else {
            return false;
        };
        // Whether the entry sizes to a share at all (`entry_qty`'s answer, without dividing).
        // (The daemon's RiskManager would keep `close` as the symbol's last trade. Here no
        // check reads it: a symbol not held has its price set before its own check, and the
        // symbols held take their marks when the state is brought up to date after a fill.)
        if self
            .entry_notional()
            .is_some_and(|n| buys_a_share(n, close))
        {
            self.out.signals += 1;
            self.count_refusal(code);
        }
        true
    }

    /// The notional an entry is sized to at the current equity (computed again when the
    /// equity changed).
    fn entry_notional(&mut self) -> Option<Decimal> {
        let equity = self.equity();
        match self.notional {
            Some((e, n)) if e == equity => n,
            _ => {
                let n = entry_notional(
                    equity,
                    self.config.strategy.sizing_rule(),
                    self.config.strategy.protection_rule(),
                );
                self.notional = Some((equity, n));
                n
            }
        }
    }

    fn count_refusal(&mut self, code: RefusalCode) {
        if let Some(i) = RefusalCode::ALL.iter().position(|c| *c == code) {
            self.refused[i] += 1;
        }
    }

    /// The risk checks' view of the account, brought up to date for a check at `now`.
    fn fresh_risk_state(&mut self, now: DateTime<Utc>) {
        if self.prune_recent(now) || self.risk_stale {
            self.refresh_risk_state();
        }
    }

    /// Drops the submissions more than a minute before `now`; `true` when there were any.
    fn prune_recent(&mut self, now: DateTime<Utc>) -> bool {
        let mut pruned = false;
        while self
            .recent
            .front()
            .is_some_and(|t| *t < now - Duration::minutes(1))
        {
            self.recent.pop_front();
            pruned = true;
        }
        pruned
    }

    /// Risk, then the order: as the RiskManager and the OrderManager do. An intent answering
    /// the bar that started at `bar` is correlated with it once approved.
    pub(super) fn propose(
        &mut self,
        intent: Intent,
        price: Decimal,
        now: DateTime<Utc>,
        bar: Option<DateTime<Utc>>,
    ) {
        self.fresh_risk_state(now);
        // The price acted on is the symbol's last trade for this check; a symbol held gets
        // its mark back after.
        let state = &mut self.risk_state;
        let held = state
            .positions
            .contains_key(&intent.symbol)
            .then(|| intent.symbol.clone());
        let before = match state.last_trade.get_mut(&intent.symbol) {
            Some(p) => Some(std::mem::replace(p, price)),
            None => state.last_trade.insert(intent.symbol.clone(), price),
        };
        let checked = risk::check_code(intent, state, &self.limits, TradingMode::Active, now);
        if let (Some(symbol), Some(mark)) = (held, before) {
            state.last_trade.insert(symbol, mark);
        }
        let mut intent = match checked {
            Ok(approved) => approved.into_intent(),
            Err(code) => {
                self.count_refusal(code);
                return;
            }
        };
        if let Some(start) = bar {
            intent.correlation_id = format!("{}-{}", intent.symbol, start.timestamp()).into();
        }
        if matches!(intent.purpose, Purpose::Exit) {
            // Exits first clear our other orders on the symbol (bracket legs, stops), then
            // close no more than is held.
            let ours: Vec<uuid::Uuid> = self
                .engine
                .open_orders(Some(&intent.symbol))
                .iter()
                .map(|o| o.id)
                .collect();
            for id in ours {
                let _ = self.engine.cancel(id);
            }
            self.changed();
            self.book_fills();
            let held = self.position(&intent.symbol).abs();
            if held.is_zero() {
                return;
            }
            intent.qty = intent.qty.min(held);
        }
        self.seq += 1;
        let coid = format!("bt-{:x}-{}", self.seq, intent.symbol);
        let request = OrderDesk::request_for(&intent, &coid);
        self.recent.push_back(now);
        if !self.engine.is_active(&intent.symbol) {
            // Where the last print of a symbol not followed would have left its mark.
            if let Some(close) = self.symbols.latest_close(&intent.symbol) {
                self.engine.set_mark(&intent.symbol, close);
            }
        }
        self.symbols.follow(&intent.symbol);
        self.changed();
        match self.engine.submit(request) {
            Ok(_) => {
                self.out
                    .correlations
                    .insert(coid.clone(), intent.correlation_id.to_string());
                self.purposes.insert(coid, intent.purpose);
                self.out.orders_sent += 1;
            }
            Err(e) => {
                *self
                    .out
                    .refusals
                    .entry(format!("broker {}", e.code))
                    .or_default() += 1;
            }
        }
    }

    /// Brings the account as the risk checks see it up to date, in place (the maps keep
    /// their keys and memory).
    fn refresh_risk_state(&mut self) {
        let equity = self.equity();
        let state = &mut self.risk_state;
        if state.last_trade.is_empty() {
            for name in &self.symbols.names {
                state.last_trade.insert(name.to_string(), Decimal::ZERO);
            }
        }
        state.positions.clear();
        for (s, q) in self.engine.held() {
            state.positions.insert(s.to_string(), q);
            // The last price of every symbol held, as the RiskManager keeps them from the
            // trades it sees: the gross exposure check values the other positions with them.
            let mark = self.engine.mark(s);
            match state.last_trade.get_mut(s) {
                Some(p) => *p = mark,
                None => {
                    state.last_trade.insert(s.to_string(), mark);
                }
            }
        }
        state.pending_qty.clear();
        let open = self.engine.open_orders(None);
        for o in &open {
            let left = o.qty.unwrap_or_default() - o.filled_qty;
            *state.pending_qty.entry(o.symbol.clone()).or_default() += o.side.sign() * left;
        }
        state.open_orders = open.len();
        state.buying_power = self.engine.buying_power();
        state.equity = equity;
        state.start_of_day_equity = self.day_start_equity;
        state.market_open = true;
        state.recent_orders.clone_from(&self.recent);
        self.risk_stale = false;
    }
}
