//! Orders after they exist: replace, cancel (one, all), splits, closing positions.

use super::commands::*;
use super::validate::{check_increment, has_fraction};
use super::{Engine, SimError, SimOrder};
use crate::alpaca::model::*;
use rust_decimal::Decimal;
use uuid::Uuid;

impl Engine {
    /// `PATCH /v2/orders/{id}`: a new order replaces the old one, which becomes `replaced`.
    pub fn replace(&mut self, id: Uuid, req: ReplaceOrderRequest) -> Result<Order, SimError> {
        let old = self
            .get(id)
            .ok_or_else(|| SimError::not_found("order not found"))?
            .clone();
        let o = &old.order;
        if !o.status.is_open() {
            return Err(SimError::new(
                422,
                42210000,
                format!("order is already in \"{}\" state", status_name(o.status)),
            ));
        }
        if o.status == OrderStatus::PartiallyFilled {
            return Err(SimError::new(
                422,
                42210000,
                "order is partially filled and cannot be replaced",
            ));
        }
        if let Some(coid) = &req.client_order_id {
            if coid.len() > 48 || self.by_client_id.contains_key(coid) {
                return Err(SimError::validation(
                    "client_order_id must be unique and no more than 48 characters",
                ));
            }
        }
        if let Some(q) = req.qty {
            if q <= Decimal::ZERO || (has_fraction(q) && o.time_in_force != TimeInForce::Day) {
                return Err(SimError::validation(
                    "qty must be > 0 (fractional only for day orders)",
                ));
            }
        }
        let mut new = o.clone();
        new.id = self.new_id();
        new.client_order_id = req
            .client_order_id
            .clone()
            .unwrap_or_else(|| self.new_id().to_string());
        new.replaces = Some(id);
        new.created_at = self.now;
        new.updated_at = self.now;
        new.submitted_at = self.now;
        new.legs = None;
        if let Some(q) = req.qty {
            new.qty = Some(q)
        }
        if let Some(t) = req.time_in_force {
            new.time_in_force = t
        }
        if let Some(p) = req.limit_price {
            if new.limit_price.is_none() {
                return Err(SimError::validation(
                    "limit_price can only be changed on limit and stop_limit orders",
                ));
            }
            check_increment("limit_price", p)?;
            new.limit_price = Some(p);
        }
        if let Some(p) = req.stop_price {
            if !matches!(new.kind, OrderType::Stop | OrderType::StopLimit) {
                return Err(SimError::validation(
                    "stop_price can only be changed on stop and stop_limit orders",
                ));
            }
            check_increment("stop_price", p)?;
            new.stop_price = Some(p);
        }
        if let Some(trail) = req.trail {
            if new.kind != OrderType::TrailingStop || trail <= Decimal::ZERO {
                return Err(SimError::validation(
                    "trail can only be changed on trailing_stop orders, and must be > 0",
                ));
            }
            if new.trail_percent.is_some() {
                new.trail_percent = Some(trail)
            } else {
                new.trail_price = Some(trail)
            }
            let hwm = new.hwm.unwrap_or_else(|| self.mark(&new.symbol));
            new.stop_price = Some(trail_stop(
                new.side,
                hwm,
                new.trail_price,
                new.trail_percent,
            ));
        }
        let new_id = new.id;
        let target = new.qty.or(old.target);
        self.insert(new, old.parent, target);
        if let Some(n) = self.get_mut(new_id) {
            n.legs = old.legs.clone();
        }
        for leg in &old.legs {
            if let Some(l) = self.get_mut(*leg) {
                l.parent = Some(new_id)
            }
        }
        if let Some(parent) = old.parent.and_then(|p| self.get_mut(p)) {
            for leg in parent.legs.iter_mut() {
                if *leg == id {
                    *leg = new_id
                }
            }
        }
        let now = self.now;
        if let Some(o) = self.get_mut(id) {
            o.order.status = OrderStatus::Replaced;
            o.order.replaced_at = Some(now);
            o.order.replaced_by = Some(new_id);
            o.order.updated_at = now;
            o.legs.clear();
        }
        self.record(id, "replaced", None);
        let accepted = self.order(new_id, true)?;
        if self.get(new_id).is_some_and(SimOrder::is_active) {
            self.record(new_id, "new", None);
        }
        self.match_order_now(new_id);
        Ok(accepted)
    }

    /// `DELETE /v2/orders/{id}`. Cancelling one order of a group cancels the group's other
    /// open orders (a parent's held legs, an OCO sibling).
    pub fn cancel(&mut self, id: Uuid) -> Result<(), SimError> {
        let o = self
            .get(id)
            .ok_or_else(|| SimError::not_found("order not found"))?;
        if !o.order.status.is_open() {
            return Err(SimError::new(
                422,
                42210000,
                format!(
                    "order is already in \"{}\" state",
                    status_name(o.order.status)
                ),
            ));
        }
        let group: Vec<Uuid> = match o.parent {
            Some(p) => std::iter::once(p)
                .chain(self.get(p).map(|p| p.legs.clone()).unwrap_or_default())
                .collect(),
            None => std::iter::once(id).chain(o.legs.iter().copied()).collect(),
        };
        for member in group {
            // A filled parent stays filled; only its open legs go.
            if self.get(member).is_some_and(|m| m.order.status.is_open()) {
                self.finish(member, OrderStatus::Canceled, "canceled");
            }
        }
        Ok(())
    }

    /// A split of `symbol` taking effect now, as Alpaca applies one: `old_rate` shares become
    /// `new_rate`; the position's quantity is multiplied by the ratio and its average entry
    /// divided by it (the cost basis is unchanged), open orders on the symbol are canceled,
    /// and a SPLIT activity records the change. Answers (quantity before, after).
    pub fn apply_split(
        &mut self,
        symbol: &str,
        old_rate: Decimal,
        new_rate: Decimal,
    ) -> Result<(Decimal, Decimal), SimError> {
        if !self.assets.contains_key(symbol) {
            return Err(SimError::not_found(format!("asset {symbol} not found")));
        }
        let ratio = (old_rate > Decimal::ZERO && new_rate > Decimal::ZERO)
            .then(|| new_rate.checked_div(old_rate))
            .flatten()
            .filter(|r| (Decimal::new(1, 4)..=Decimal::from(10_000)).contains(r))
            .ok_or_else(|| {
                SimError::validation(
                    "old_rate and new_rate must be positive, at most 10,000 to 1 either way",
                )
            })?;
        let open: Vec<Uuid> = self
            .orders
            .iter()
            .filter(|o| o.order.symbol == symbol && o.order.status.is_open())
            .map(|o| o.order.id)
            .collect();
        for id in open {
            if self.get(id).is_some_and(|o| o.order.status.is_open()) {
                self.finish(id, OrderStatus::Canceled, "canceled");
            }
        }
        let scale = |p: Decimal| (p / ratio).round_dp(4);
        if let Some(m) = self.marks.get_mut(symbol) {
            *m = scale(*m);
        }
        if let Some(b) = self.book_mut(symbol) {
            b.bid = scale(b.bid);
            b.ask = scale(b.ask);
            b.bid_left *= ratio;
            b.ask_left *= ratio;
        }
        if let Some(a) = self.assets.get_mut(symbol) {
            a.prev_close = scale(a.prev_close);
        }
        let Some(book) = self.positions.get_mut(symbol) else {
            return Ok((Decimal::ZERO, Decimal::ZERO));
        };
        let before = book.qty;
        book.qty =
            (before * ratio).round_dp_with_strategy(9, rust_decimal::RoundingStrategy::ToZero);
        book.avg_entry_price = (book.avg_entry_price / ratio).round_dp(9);
        book.intraday_basis = (book.intraday_basis / ratio).round_dp(9);
        let after = book.qty;
        let now = self.now;
        let id = format!("{}::{}", now.format("%Y%m%d%H%M%S%3f"), self.new_id());
        self.other_activities.push(NonTradeActivity {
            id,
            activity_type: "SPLIT".into(),
            date: Some(crate::sim::calendar::to_et(now).date_naive()),
            net_amount: Some(Decimal::ZERO),
            symbol: Some(symbol.to_string()),
            qty: Some(after - before),
            per_share_amount: None,
            description: Some(format!("{new_rate}-for-{old_rate} split of {symbol}")),
            status: Some("executed".into()),
        });
        Ok((before, after))
    }

    /// `DELETE /v2/orders`: cancel every open order; one entry per order.
    pub fn cancel_all(&mut self) -> Vec<CancelOrderStatus> {
        let open: Vec<Uuid> = self
            .orders
            .iter()
            .filter(|o| o.order.status.is_open())
            .map(|o| o.order.id)
            .collect();
        let mut out = Vec::new();
        for id in open {
            if self.get(id).is_some_and(|o| o.order.status.is_open()) {
                let result = self.cancel(id);
                out.push(CancelOrderStatus {
                    id,
                    status: if result.is_ok() { 200 } else { 500 },
                    body: result
                        .err()
                        .and_then(|e| serde_json::to_value(e.body()).ok()),
                });
            }
        }
        out
    }

    /// Moves an open order to a final state and records the event.
    pub(super) fn finish(&mut self, id: Uuid, status: OrderStatus, event: &str) {
        let now = self.now;
        let Some(o) = self.get_mut(id) else { return };
        o.order.status = status;
        o.order.updated_at = now;
        match status {
            OrderStatus::Canceled => o.order.canceled_at = Some(now),
            OrderStatus::Expired => o.order.expired_at = Some(now),
            OrderStatus::Rejected => o.order.failed_at = Some(now),
            _ => {}
        }
        self.record(id, event, None);
    }

    /// `DELETE /v2/positions/{symbol}`: a market order for the opposite side.
    pub fn close_position(&mut self, symbol: &str, amount: CloseQty) -> Result<Order, SimError> {
        let position = self
            .positions
            .get(symbol)
            .map(|p| p.qty)
            .filter(|q| !q.is_zero());
        let Some(position) = position else {
            return Err(SimError::not_found("position does not exist"));
        };
        let qty = match amount {
            CloseQty::All => position.abs(),
            CloseQty::Qty(q) if q > Decimal::ZERO && q <= position.abs() => q,
            CloseQty::Qty(_) => {
                return Err(SimError::validation(format!(
                    "qty must be > 0 and at most the position's {}",
                    position.abs()
                )));
            }
            CloseQty::Percentage(p) if p > Decimal::ZERO && p <= Decimal::ONE_HUNDRED => {
                let q = (position.abs() * p / Decimal::ONE_HUNDRED)
                    .round_dp_with_strategy(9, rust_decimal::RoundingStrategy::ToZero);
                if q.is_zero() {
                    return Err(SimError::validation(
                        "percentage closes less than the smallest fraction of a share",
                    ));
                }
                q
            }
            CloseQty::Percentage(_) => {
                return Err(SimError::validation("percentage must be between 0 and 100"));
            }
        };
        let side = if position.is_sign_positive() {
            OrderSide::Sell
        } else {
            OrderSide::Buy
        };
        let req = OrderRequest::market(symbol, side, qty);
        self.submit(req)
    }

    /// `DELETE /v2/positions`: close every position, optionally cancelling orders first.
    pub fn close_all(&mut self, cancel_orders: bool) -> Vec<ClosePositionStatus> {
        if cancel_orders {
            self.cancel_all();
        }
        let symbols: Vec<String> = self
            .positions
            .iter()
            .filter(|(_, p)| !p.qty.is_zero())
            .map(|(s, _)| s.clone())
            .collect();
        symbols
            .into_iter()
            .map(|symbol| match self.close_position(&symbol, CloseQty::All) {
                Ok(order) => ClosePositionStatus {
                    symbol,
                    status: 200,
                    order_id: Some(order.id),
                    body: ClosePositionBody::Order(Box::new(order)),
                },
                Err(e) => ClosePositionStatus {
                    symbol,
                    status: e.status,
                    order_id: None,
                    body: ClosePositionBody::Error(e.body()),
                },
            })
            .collect()
    }
}

/// The stop of a trailing stop from its high- (sell) or low- (buy) water mark.
pub(super) fn trail_stop(
    side: OrderSide,
    hwm: Decimal,
    trail_price: Option<Decimal>,
    trail_percent: Option<Decimal>,
) -> Decimal {
    let distance = match (trail_price, trail_percent) {
        (Some(p), _) => p,
        (None, Some(pct)) => hwm * pct / Decimal::ONE_HUNDRED,
        (None, None) => Decimal::ZERO,
    };
    let stop = match side {
        OrderSide::Sell => hwm - distance,
        OrderSide::Buy => hwm + distance,
    };
    stop.round_dp(2)
}

pub(super) fn type_name(kind: OrderType) -> &'static str {
    match kind {
        OrderType::Market => "market",
        OrderType::Limit => "limit",
        OrderType::Stop => "stop",
        OrderType::StopLimit => "stop_limit",
        OrderType::TrailingStop => "trailing_stop",
    }
}

pub(super) fn status_name(status: OrderStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}
