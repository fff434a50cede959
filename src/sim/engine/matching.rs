//! Matching: market and marketable orders fill at the quote (buys at the ask, sells at the bid)
//! up to the displayed size, so an order larger than the quote fills in parts as new quotes
//! arrive. Limit orders fill when the quote crosses their price, at the quote (price
//! improvement). Stops and trailing stops trigger on trade prints, then behave as market (or
//! limit) orders. `ioc` cancels what does not fill at once; `fok` fills all at once or nothing.
//! Day orders expire at the session close. Bracket and OTO legs wake when the entry fills;
//! when one exit of a group fills, the others are canceled.

use super::{Engine, TopOfBook};
use crate::alpaca::model::*;
use crate::sim::market::MarketEvent;
use chrono::SecondsFormat;
use rust_decimal::Decimal;
use uuid::Uuid;

impl Engine {
    /// Feeds market events (in market-time order) to the engine.
    pub fn on_market(&mut self, events: &[MarketEvent]) {
        for event in events {
            match event {
                MarketEvent::Quote { symbol, quote } => {
                    self.set_time(quote.t, self.market_open);
                    let top = TopOfBook {
                        bid: quote.bp,
                        ask: quote.ap,
                        bid_left: quote.bs,
                        ask_left: quote.as_,
                        live: true,
                    };
                    // The name is copied only for a symbol's first quote (or after a halt).
                    match self.books.get_mut(symbol.as_str()) {
                        Some(book) => *book = top,
                        None => {
                            self.books.insert(symbol.clone(), top);
                        }
                    }
                    self.match_symbol(symbol);
                }
                MarketEvent::Trade { symbol, trade } => {
                    self.set_time(trade.t, self.market_open);
                    match self.marks.get_mut(symbol.as_str()) {
                        Some(mark) => *mark = trade.p,
                        None => {
                            self.marks.insert(symbol.clone(), trade.p);
                        }
                    }
                    self.trigger_stops(symbol, trade.p);
                    self.match_symbol(symbol);
                }
                MarketEvent::Status { symbol, code, .. } => {
                    // A halt: no book to fill against until quotes come again.
                    if code == "H" {
                        self.withdraw_book(symbol);
                    }
                }
                MarketEvent::BarClosed { .. }
                | MarketEvent::DailyBarClosed { .. }
                | MarketEvent::BarUpdated { .. }
                | MarketEvent::Luld { .. } => {}
                MarketEvent::SessionClosed { at, .. } => {
                    self.set_time(*at, false);
                    self.close_session();
                    self.market_open = true;
                }
            }
        }
    }

    /// The symbol's active orders, oldest first. A final order never opens again, so the
    /// list of unfinished ones is pruned here as they end.
    /// No quote to fill against until the next one comes (a halt; the end of a backtest's bar).
    pub fn withdraw_book(&mut self, symbol: &str) {
        if let Some(book) = self.books.get_mut(symbol) {
            book.live = false;
        }
    }

    /// Where in `orders` the symbol's active orders are, oldest first, into `out` (a buffer
    /// the caller keeps: matching runs at every quote and trade).
    fn open_at(&mut self, symbol: &str, out: &mut Vec<usize>) {
        out.clear();
        let orders = &self.orders;
        let Some(list) = self.unfinished.get_mut(symbol) else {
            return;
        };
        list.retain(|&i| orders.get(i).is_some_and(|o| o.order.status.is_open()));
        out.extend(
            list.iter()
                .copied()
                .filter(|&i| orders.get(i).is_some_and(super::SimOrder::is_active)),
        );
    }

    /// Runs `each` over the symbol's active orders (by their place in `orders`), oldest first.
    fn each_open(&mut self, symbol: &str, mut each: impl FnMut(&mut Self, usize)) {
        let mut at = std::mem::take(&mut self.scratch);
        self.open_at(symbol, &mut at);
        for &i in &at {
            each(self, i);
        }
        // A nested call (a fill waking a leg) took an empty buffer; this one is kept.
        self.scratch = at;
    }

    fn match_symbol(&mut self, symbol: &str) {
        self.each_open(symbol, |engine, i| engine.match_at(i));
    }

    /// Stops and trailing stops look at trade prints.
    fn trigger_stops(&mut self, symbol: &str, price: Decimal) {
        let now = self.now;
        self.each_open(symbol, |engine, i| engine.trigger_at(i, price, now));
    }

    /// [`Self::trigger_stops`] for the order at `i`.
    fn trigger_at(&mut self, i: usize, price: Decimal, now: chrono::DateTime<chrono::Utc>) {
        let Some(o) = self.orders.get_mut(i) else {
            return;
        };
        let side = o.order.side;
        match o.order.kind {
            OrderType::TrailingStop if !o.triggered => {
                let hwm = o.order.hwm.unwrap_or(price);
                let better = match side {
                    OrderSide::Sell => price > hwm,
                    OrderSide::Buy => price < hwm,
                };
                if better {
                    o.order.hwm = Some(price);
                    o.order.stop_price = Some(super::commands::trail_stop(
                        side,
                        price,
                        o.order.trail_price,
                        o.order.trail_percent,
                    ));
                    o.order.updated_at = now;
                }
            }
            _ => {}
        }
        if o.triggered
            || !matches!(
                o.order.kind,
                OrderType::Stop | OrderType::StopLimit | OrderType::TrailingStop
            )
        {
            return;
        }
        let Some(stop) = o.order.stop_price else {
            return;
        };
        let hit = match side {
            OrderSide::Buy => price >= stop,
            OrderSide::Sell => price <= stop,
        };
        if hit {
            o.triggered = true;
        }
    }

    /// Matching at submission, with `ioc`/`fok` handling.
    pub(super) fn match_order_now(&mut self, id: Uuid) {
        let Some(o) = self.get(id) else { return };
        if !o.is_active() {
            return;
        }
        let tif = o.order.time_in_force;
        if tif == TimeInForce::Fok {
            let (price, available) = self.executable(id);
            let needed = self
                .get(id)
                .map(super::SimOrder::remaining)
                .unwrap_or_default();
            let whole = price.is_some()
                && (available >= needed || self.get(id).is_some_and(|o| o.target.is_none()));
            if !whole {
                self.finish(id, OrderStatus::Canceled, "canceled");
                return;
            }
        }
        self.match_one(id);
        if tif == TimeInForce::Ioc && self.get(id).is_some_and(|o| o.order.status.is_open()) {
            self.finish(id, OrderStatus::Canceled, "canceled");
        }
    }

    /// The price an active order can trade at now and the displayed size there.
    fn executable(&self, id: Uuid) -> (Option<Decimal>, Decimal) {
        match self.index.get(&id) {
            Some(&i) => self.executable_at(i),
            None => (None, Decimal::ZERO),
        }
    }

    /// [`Self::executable`] for the order at `i` in `orders`.
    fn executable_at(&self, i: usize) -> (Option<Decimal>, Decimal) {
        let Some(o) = self.orders.get(i) else {
            return (None, Decimal::ZERO);
        };
        // A stop not yet triggered first: it needs no book.
        let limit = match o.order.kind {
            OrderType::Market => None,
            OrderType::Limit => o.order.limit_price,
            OrderType::Stop | OrderType::TrailingStop if o.triggered => None,
            OrderType::StopLimit if o.triggered => o.order.limit_price,
            _ => return (None, Decimal::ZERO),
        };
        if !self.market_open {
            return (None, Decimal::ZERO);
        }
        let Some(book) = self.book(&o.order.symbol) else {
            return (None, Decimal::ZERO);
        };
        let (price, left) = match o.order.side {
            OrderSide::Buy => (book.ask, book.ask_left),
            OrderSide::Sell => (book.bid, book.bid_left),
        };
        let ok = match (limit, o.order.side) {
            (None, _) => true,
            (Some(l), OrderSide::Buy) => price <= l,
            (Some(l), OrderSide::Sell) => price >= l,
        };
        if ok && left > Decimal::ZERO {
            (Some(price), left)
        } else {
            (None, Decimal::ZERO)
        }
    }

    fn match_one(&mut self, id: Uuid) {
        if let Some(&i) = self.index.get(&id) {
            self.match_at(i);
        }
    }

    /// [`Self::match_one`] for the order at `i` in `orders`.
    fn match_at(&mut self, i: usize) {
        let (Some(price), left) = self.executable_at(i) else {
            return;
        };
        let Some(o) = self.orders.get_mut(i) else {
            return;
        };
        let id = o.order.id;
        if o.target.is_none() {
            // A notional order: its share count is fixed at the first fill.
            let notional = o.order.notional.unwrap_or_default();
            o.target = Some(
                (notional / price)
                    .round_dp_with_strategy(9, rust_decimal::RoundingStrategy::ToZero),
            );
        }
        let remaining = o.remaining();
        // Fractional remainders fill whole with the last round lot.
        let qty = if remaining <= left {
            remaining
        } else {
            left.floor()
        };
        if qty <= Decimal::ZERO {
            return;
        }
        let symbol = o.order.symbol.clone();
        let side = o.order.side;
        if let Some(book) = self.book_mut(&symbol) {
            match side {
                OrderSide::Buy => book.ask_left -= qty,
                OrderSide::Sell => book.bid_left -= qty,
            }
        }
        self.fill(id, qty, price);
    }

    fn fill(&mut self, id: Uuid, qty: Decimal, price: Decimal) {
        let now = self.now;
        let Some(o) = self.get_mut(id) else { return };
        let filled = o.order.filled_qty + qty;
        o.filled_cost += qty * price;
        let avg = o.filled_cost / filled;
        o.order.filled_qty = filled;
        o.order.filled_avg_price = Some(avg.round_dp(9));
        o.order.updated_at = now;
        let done = o.remaining().is_zero();
        o.order.status = if done {
            OrderStatus::Filled
        } else {
            OrderStatus::PartiallyFilled
        };
        if done {
            o.order.filled_at = Some(now);
        }
        let (symbol, side, order_id) = (o.order.symbol.clone(), o.order.side, o.order.id);
        let leaves = o.remaining();
        let status = o.order.status;
        let delta = side.sign() * qty;
        self.cash -= delta * price;
        let book = self.positions.entry(symbol.clone()).or_default();
        book.apply(delta, price);
        if book.qty.is_zero() {
            self.positions.remove(&symbol);
        }
        let activity_id = format!("{}::{}", now.format("%Y%m%d%H%M%S%3f"), self.new_id());
        self.activities.push(TradeActivity {
            id: activity_id,
            activity_type: "FILL".into(),
            transaction_time: now,
            fill_type: if done {
                "fill".into()
            } else {
                "partial_fill".into()
            },
            price,
            qty,
            side: side.as_str().into(),
            symbol,
            leaves_qty: leaves,
            cum_qty: filled,
            order_id,
            order_status: Some(status),
        });
        self.record(
            id,
            if done { "fill" } else { "partial_fill" },
            Some((price, qty)),
        );
        self.after_fill(id, done);
    }

    /// Group rules after a fill: wake held legs, cancel siblings, keep exits matched in size.
    fn after_fill(&mut self, id: Uuid, done: bool) {
        let Some(o) = self.get(id) else { return };
        let legs = o.legs.clone();
        let parent = o.parent;
        let class = o.order.order_class;
        let filled = o.order.filled_qty;
        if !legs.is_empty() && class != OrderClass::Oco {
            if done {
                for leg in legs {
                    if self
                        .get(leg)
                        .is_some_and(|l| l.order.status == OrderStatus::Held)
                    {
                        let now = self.now;
                        if let Some(l) = self.get_mut(leg) {
                            l.order.status = OrderStatus::New;
                            l.order.updated_at = now;
                            l.target = Some(filled);
                            l.order.qty = Some(filled);
                        }
                        self.record(leg, "new", None);
                        self.match_one(leg);
                    }
                }
            }
            return;
        }
        // An exit of a group (bracket/OTO leg, or either side of an OCO) filled.
        let group: Vec<Uuid> = match (parent, class) {
            (Some(p), _) => std::iter::once(p)
                .chain(self.get(p).map(|p| p.legs.clone()).unwrap_or_default())
                .collect(),
            (None, OrderClass::Oco) => std::iter::once(id).chain(legs).collect(),
            _ => return,
        };
        let parent_is_entry = parent.is_some() && class != OrderClass::Oco;
        for sibling in group {
            if sibling == id || (parent_is_entry && Some(sibling) == parent) {
                continue;
            }
            if !self.get(sibling).is_some_and(|s| s.order.status.is_open()) {
                continue;
            }
            if done {
                self.finish(sibling, OrderStatus::Canceled, "canceled");
            } else if let Some(remaining) = self.get(id).map(super::SimOrder::remaining) {
                // Keep the other exit no larger than what is still open.
                let sibling_filled = self
                    .get(sibling)
                    .map(|s| s.order.filled_qty)
                    .unwrap_or_default();
                if let Some(s) = self.get_mut(sibling) {
                    s.target = Some(sibling_filled + remaining);
                }
            }
        }
    }

    /// At the close: day orders expire (with their held legs), `last_equity` and the
    /// intraday basis roll to the closing marks.
    fn close_session(&mut self) {
        let expiring: Vec<Uuid> = self
            .orders
            .iter()
            .filter(|o| {
                o.order.status.is_open() && !matches!(o.order.time_in_force, TimeInForce::Gtc)
            })
            .filter(|o| o.order.status != OrderStatus::Held)
            .map(|o| o.order.id)
            .collect();
        for id in expiring {
            if !self.get(id).is_some_and(|o| o.order.status.is_open()) {
                continue;
            }
            let legs = self.get(id).map(|o| o.legs.clone()).unwrap_or_default();
            self.finish(id, OrderStatus::Expired, "expired");
            for leg in legs {
                if self
                    .get(leg)
                    .is_some_and(|l| l.order.status == OrderStatus::Held)
                {
                    self.finish(leg, OrderStatus::Canceled, "canceled");
                }
            }
        }
        for (symbol, asset) in self.assets.iter_mut() {
            if let Some(m) = self.marks.get(symbol) {
                asset.prev_close = *m;
            }
        }
        for (symbol, p) in self.positions.iter_mut() {
            if let Some(m) = self.marks.get(symbol) {
                p.intraday_basis = *m;
            }
        }
        self.last_equity = self.equity();
        tracing::debug!(at = %self.now.to_rfc3339_opts(SecondsFormat::Secs, true), equity = %self.last_equity, "session closed");
    }
}
