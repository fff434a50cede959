//! The trading API's commands and queries against the engine, with Alpaca's refusals:
//! validation (422, code 40010001), buying power and quantity (403, 40310000), unknown order or
//! position (404, 40410000), not cancelable (422, 42210000).

use super::{Engine, SimError, SimOrder};
use crate::alpaca::model::*;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

/// Filters of `GET /v2/orders`.
#[derive(Debug, Clone, Default)]
pub struct ListOrdersFilter {
    /// `open` (default), `closed` or `all`.
    pub status: Option<String>,
    pub limit: Option<usize>,
    pub after: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub ascending: bool,
    pub nested: bool,
    pub symbols: Option<Vec<String>>,
    pub side: Option<OrderSide>,
}

/// How much of a position to close.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CloseQty {
    All,
    Qty(Decimal),
    Percentage(Decimal),
}

fn has_fraction(d: Decimal) -> bool {
    !d.fract().is_zero()
}

/// Alpaca's price increments: cents from $1, hundredths of a cent below.
fn check_increment(name: &str, price: Decimal) -> Result<(), SimError> {
    if price <= Decimal::ZERO {
        return Err(SimError::validation(format!("{name} must be > 0")));
    }
    let places = if price >= Decimal::ONE { 2 } else { 4 };
    if price.round_dp(places) != price {
        return Err(SimError::new(
            422,
            42210000,
            format!(
                "invalid {name} {price}. sub-penny increment does not fulfill minimum pricing criteria"
            ),
        ));
    }
    Ok(())
}

impl Engine {
    /// `POST /v2/orders`. Returns the order as accepted (before any fill), legs nested.
    pub fn submit(&mut self, req: OrderRequest) -> Result<Order, SimError> {
        let class = req.order_class.unwrap_or_default();
        self.validate(&req, class)?;
        let id = self.create_order(&req, class)?;
        let accepted = self
            .view(id, true)
            .ok_or_else(|| SimError::new(500, 50010000, "order vanished"))?;
        self.after_create(id);
        Ok(accepted)
    }

    fn validate(&self, req: &OrderRequest, class: OrderClass) -> Result<(), SimError> {
        if self.configurations.suspend_trade {
            return Err(SimError::forbidden(
                "new orders are rejected by user request (account configuration suspend_trade)",
            ));
        }
        if !self.assets.contains_key(&req.symbol) {
            return Err(SimError::validation(format!(
                "asset \"{}\" not found",
                req.symbol
            )));
        }
        if let Some(coid) = &req.client_order_id {
            if coid.len() > 48 {
                return Err(SimError::validation(
                    "client_order_id must be no more than 48 characters",
                ));
            }
            if self.by_client_id.contains_key(coid) {
                return Err(SimError::validation("client_order_id must be unique"));
            }
        }
        match (req.qty, req.notional) {
            (None, None) => return Err(SimError::validation("qty or notional is required")),
            (Some(_), Some(_)) => {
                return Err(SimError::validation(
                    "only one of qty or notional may be given",
                ));
            }
            (Some(q), None) if q <= Decimal::ZERO => {
                return Err(SimError::validation("qty must be > 0"));
            }
            (Some(q), None) if q.normalize().scale() > 9 => {
                return Err(SimError::validation(
                    "qty must have at most 9 decimal places",
                ));
            }
            (None, Some(n)) if n <= Decimal::ZERO => {
                return Err(SimError::validation("notional must be > 0"));
            }
            _ => {}
        }
        if req.notional.is_some()
            && (req.kind != OrderType::Market || req.time_in_force != TimeInForce::Day)
        {
            return Err(SimError::validation(
                "notional orders must be market orders with time_in_force day",
            ));
        }
        let fractional = req.qty.is_some_and(has_fraction) || req.notional.is_some();
        if fractional {
            if req.time_in_force != TimeInForce::Day {
                return Err(SimError::validation("fractional orders must be day orders"));
            }
            if req.kind == OrderType::TrailingStop || class != OrderClass::Simple {
                return Err(SimError::validation(
                    "fractional orders must be simple market, limit, stop or stop_limit orders",
                ));
            }
            if !self.configurations.fractional_trading {
                return Err(SimError::forbidden(
                    "fractional trading is disabled for this account",
                ));
            }
        }
        match req.kind {
            OrderType::Limit | OrderType::StopLimit => match req.limit_price {
                Some(p) => check_increment("limit_price", p)?,
                None => {
                    return Err(SimError::validation(format!(
                        "limit_price is required for {} orders",
                        type_name(req.kind)
                    )));
                }
            },
            _ if req.limit_price.is_some() && class != OrderClass::Oco => {
                return Err(SimError::validation(
                    "limit_price is only allowed for limit and stop_limit orders",
                ));
            }
            _ => {}
        }
        match req.kind {
            OrderType::Stop | OrderType::StopLimit => match req.stop_price {
                Some(p) => check_increment("stop_price", p)?,
                None => {
                    return Err(SimError::validation(format!(
                        "stop_price is required for {} orders",
                        type_name(req.kind)
                    )));
                }
            },
            _ if req.stop_price.is_some() => {
                return Err(SimError::validation(
                    "stop_price is only allowed for stop and stop_limit orders",
                ));
            }
            _ => {}
        }
        if req.kind == OrderType::TrailingStop {
            match (req.trail_price, req.trail_percent) {
                (Some(p), None) if p > Decimal::ZERO => {}
                (None, Some(p)) if p > Decimal::ZERO && p < Decimal::ONE_HUNDRED => {}
                _ => {
                    return Err(SimError::validation(
                        "trailing_stop orders need exactly one of trail_price (> 0) or trail_percent (0 to 100)",
                    ));
                }
            }
            if !matches!(req.time_in_force, TimeInForce::Day | TimeInForce::Gtc) {
                return Err(SimError::validation(
                    "trailing_stop orders must be day or gtc",
                ));
            }
        } else if req.trail_price.is_some() || req.trail_percent.is_some() {
            return Err(SimError::validation(
                "trail_price and trail_percent are only allowed for trailing_stop orders",
            ));
        }
        if req.extended_hours == Some(true)
            && (req.kind != OrderType::Limit || req.time_in_force != TimeInForce::Day)
        {
            return Err(SimError::validation(
                "extended hours orders must be limit orders with time_in_force day",
            ));
        }
        self.validate_class(req, class)?;
        self.check_funds(req, class)
    }

    fn validate_class(&self, req: &OrderRequest, class: OrderClass) -> Result<(), SimError> {
        let tp = req.take_profit.as_ref().map(|t| t.limit_price);
        let sl = req.stop_loss.as_ref().map(|s| s.stop_price);
        for (name, price) in [
            ("take_profit.limit_price", tp),
            ("stop_loss.stop_price", sl),
            (
                "stop_loss.limit_price",
                req.stop_loss.as_ref().and_then(|s| s.limit_price),
            ),
        ] {
            if let Some(p) = price {
                check_increment(name, p)?;
            }
        }
        let base = self.estimate_price(&req.symbol, req.side, req.limit_price);
        let cent = Decimal::new(1, 2);
        let check_legs = |tp: Option<Decimal>, sl: Option<Decimal>| -> Result<(), SimError> {
            // Legs exit the entry: for a buy entry the take-profit is above, the stop below.
            let (up, down) = match req.side {
                OrderSide::Buy => (1, -1),
                OrderSide::Sell => (-1, 1),
            };
            if let Some(tp) = tp {
                if (tp - base) * Decimal::from(up) < cent {
                    return Err(SimError::validation(format!(
                        "take_profit.limit_price must be {} base_price {} by at least 0.01",
                        if up > 0 { "above" } else { "below" },
                        base
                    )));
                }
            }
            if let Some(sl) = sl {
                if (sl - base) * Decimal::from(down) < cent {
                    return Err(SimError::validation(format!(
                        "stop_loss.stop_price must be {} base_price {} by at least 0.01",
                        if down < 0 { "below" } else { "above" },
                        base
                    )));
                }
            }
            Ok(())
        };
        match class {
            OrderClass::Simple => {
                if req.take_profit.is_some() || req.stop_loss.is_some() {
                    return Err(SimError::validation(
                        "take_profit and stop_loss need order_class bracket, oco or oto",
                    ));
                }
            }
            OrderClass::Bracket => {
                if !matches!(
                    req.kind,
                    OrderType::Market | OrderType::Limit | OrderType::Stop | OrderType::StopLimit
                ) {
                    return Err(SimError::validation(
                        "bracket entry orders must be market, limit, stop or stop_limit",
                    ));
                }
                if !matches!(req.time_in_force, TimeInForce::Day | TimeInForce::Gtc) {
                    return Err(SimError::validation("bracket orders must be day or gtc"));
                }
                if req.extended_hours == Some(true) {
                    return Err(SimError::validation(
                        "bracket orders cannot be extended hours",
                    ));
                }
                let (Some(tp), Some(sl)) = (tp, sl) else {
                    return Err(SimError::validation(
                        "bracket orders require take_profit and stop_loss",
                    ));
                };
                check_legs(Some(tp), Some(sl))?;
            }
            OrderClass::Oto => {
                if tp.is_some() == sl.is_some() {
                    return Err(SimError::validation(
                        "oto orders require exactly one of take_profit or stop_loss",
                    ));
                }
                check_legs(tp, sl)?;
            }
            OrderClass::Oco => {
                if req.kind != OrderType::Limit {
                    return Err(SimError::validation("oco orders must be limit orders"));
                }
                let (Some(_), Some(sl)) = (tp, sl) else {
                    return Err(SimError::validation(
                        "oco orders require take_profit and stop_loss",
                    ));
                };
                let limit = req.limit_price.or(tp).unwrap_or_default();
                let wrong = match req.side {
                    OrderSide::Sell => sl >= limit,
                    OrderSide::Buy => sl <= limit,
                };
                if wrong {
                    return Err(SimError::validation(
                        "oco stop_loss.stop_price must be on the other side of the take-profit limit_price",
                    ));
                }
            }
            OrderClass::Mleg => {
                return Err(SimError::validation(
                    "mleg (options) orders are not supported by the simulator",
                ));
            }
        }
        Ok(())
    }

    /// Buying power for orders that add exposure, shares available for orders that reduce it.
    fn check_funds(&self, req: &OrderRequest, class: OrderClass) -> Result<(), SimError> {
        let position = self
            .positions
            .get(&req.symbol)
            .map(|p| p.qty)
            .unwrap_or_default();
        let qty = req.qty.unwrap_or_default();
        let reduces = match req.side {
            OrderSide::Sell => position.is_sign_positive() && !position.is_zero(),
            OrderSide::Buy => position.is_sign_negative(),
        };
        if class == OrderClass::Oco && !reduces {
            return Err(SimError::forbidden(
                "oco orders are exit orders: there is no position to exit",
            ));
        }
        if reduces {
            let available = position.abs() - self.held_for_orders(&req.symbol);
            if qty > available {
                return Err(SimError::forbidden(format!("insufficient qty available for order (requested: {qty}, available: {available})"))
                    .with("available", available.to_string())
                    .with("existing_qty", position.abs().to_string())
                    .with("held_for_orders", self.held_for_orders(&req.symbol).to_string())
                    .with("symbol", req.symbol.clone()));
            }
            return Ok(());
        }
        if req.side == OrderSide::Sell {
            if !self.shorting_enabled() {
                return Err(SimError::forbidden("account is not allowed to short"));
            }
            if has_fraction(qty) || req.notional.is_some() {
                return Err(SimError::forbidden(
                    "fractional orders cannot be sold short",
                ));
            }
        }
        let cost = match req.notional {
            Some(n) => n,
            None => {
                qty * self.estimate_price(&req.symbol, req.side, req.limit_price.or(req.stop_price))
            }
        };
        let bp = self.buying_power();
        if cost > bp {
            return Err(SimError::forbidden("insufficient buying power")
                .with("buying_power", bp.round_dp(2).to_string())
                .with("cost_basis", cost.round_dp(2).to_string()));
        }
        Ok(())
    }

    fn blank_order(
        &mut self,
        req: &OrderRequest,
        kind: OrderType,
        side: OrderSide,
        class: OrderClass,
    ) -> Order {
        let id = self.new_id();
        let client_order_id = req
            .client_order_id
            .clone()
            .unwrap_or_else(|| self.new_id().to_string());
        let asset_id = self
            .assets
            .get(&req.symbol)
            .map(|a| a.id)
            .unwrap_or_default();
        Order {
            id,
            client_order_id,
            created_at: self.now,
            updated_at: self.now,
            submitted_at: self.now,
            filled_at: None,
            expired_at: None,
            // Day orders expire at the session's close.
            expires_at: (req.time_in_force == TimeInForce::Day).then_some(self.session_close),
            canceled_at: None,
            failed_at: None,
            replaced_at: None,
            replaced_by: None,
            replaces: None,
            asset_id,
            symbol: req.symbol.clone(),
            asset_class: AssetClass::UsEquity,
            notional: None,
            qty: req.qty,
            filled_qty: Decimal::ZERO,
            filled_avg_price: None,
            order_class: class,
            order_type: kind,
            kind,
            side,
            // Alpaca fills it in when the request has none.
            position_intent: Some(req.position_intent.unwrap_or_else(|| {
                let held = self
                    .positions
                    .get(&req.symbol)
                    .map(|p| p.qty)
                    .unwrap_or_default();
                match side {
                    OrderSide::Buy if held < Decimal::ZERO => PositionIntent::BuyToClose,
                    OrderSide::Buy => PositionIntent::BuyToOpen,
                    OrderSide::Sell if held > Decimal::ZERO => PositionIntent::SellToClose,
                    OrderSide::Sell => PositionIntent::SellToOpen,
                }
            })),
            time_in_force: req.time_in_force,
            limit_price: None,
            stop_price: None,
            trail_price: None,
            trail_percent: None,
            hwm: None,
            status: if self.market_open {
                OrderStatus::New
            } else {
                OrderStatus::Accepted
            },
            extended_hours: req.extended_hours.unwrap_or(false),
            legs: None,
            ratio_qty: None,
            subtag: None,
            source: None,
        }
    }

    fn insert(&mut self, order: Order, parent: Option<Uuid>, target: Option<Decimal>) -> Uuid {
        let id = order.id;
        self.by_client_id.insert(order.client_order_id.clone(), id);
        self.index.insert(id, self.orders.len());
        self.orders.push(SimOrder {
            order,
            parent,
            legs: Vec::new(),
            target,
            triggered: false,
            filled_cost: Decimal::ZERO,
        });
        id
    }

    fn create_order(&mut self, req: &OrderRequest, class: OrderClass) -> Result<Uuid, SimError> {
        let mut main = self.blank_order(req, req.kind, req.side, class);
        main.notional = req.notional;
        main.limit_price = req.limit_price.or(if class == OrderClass::Oco {
            req.take_profit.as_ref().map(|t| t.limit_price)
        } else {
            None
        });
        main.stop_price = req.stop_price;
        main.trail_price = req.trail_price;
        main.trail_percent = req.trail_percent;
        if req.position_intent.is_some() {
            main.position_intent = req.position_intent;
        }
        if req.kind == OrderType::TrailingStop {
            let mark = self.mark(&req.symbol);
            main.hwm = Some(mark);
            main.stop_price = Some(trail_stop(
                req.side,
                mark,
                req.trail_price,
                req.trail_percent,
            ));
        }
        let parent_id = self.insert(main, None, req.qty);
        let mut legs = Vec::new();
        let exit = req.side.opposite();
        let leg_status = if class == OrderClass::Oco {
            None
        } else {
            Some(OrderStatus::Held)
        };
        let tp_leg = if class == OrderClass::Oco {
            None
        } else {
            req.take_profit.as_ref()
        };
        if let Some(tp) = tp_leg {
            let mut leg = self.blank_order(
                &OrderRequest {
                    client_order_id: None,
                    ..req.clone()
                },
                OrderType::Limit,
                exit,
                class,
            );
            leg.limit_price = Some(tp.limit_price);
            if let Some(s) = leg_status {
                leg.status = s
            }
            legs.push(self.insert(leg, Some(parent_id), req.qty));
        }
        if let Some(sl) = &req.stop_loss {
            let kind = if sl.limit_price.is_some() {
                OrderType::StopLimit
            } else {
                OrderType::Stop
            };
            let side = if class == OrderClass::Oco {
                req.side
            } else {
                exit
            };
            let mut leg = self.blank_order(
                &OrderRequest {
                    client_order_id: None,
                    ..req.clone()
                },
                kind,
                side,
                class,
            );
            leg.stop_price = Some(sl.stop_price);
            leg.limit_price = sl.limit_price;
            if let Some(s) = leg_status {
                leg.status = s
            }
            legs.push(self.insert(leg, Some(parent_id), req.qty));
        }
        if let Some(p) = self.get_mut(parent_id) {
            p.legs = legs;
        }
        Ok(parent_id)
    }

    /// After an order is accepted: announce it, then match what can match now.
    fn after_create(&mut self, id: Uuid) {
        let mut ids = vec![id];
        ids.extend(self.get(id).map(|o| o.legs.clone()).unwrap_or_default());
        for i in ids {
            if self.get(i).is_some_and(SimOrder::is_active) {
                self.record(i, "new", None);
            }
        }
        self.match_order_now(id);
    }

    /// `GET /v2/orders/{id}`.
    pub fn order(&self, id: Uuid, nested: bool) -> Result<Order, SimError> {
        self.view(id, nested)
            .ok_or_else(|| SimError::not_found("order not found"))
    }

    /// `GET /v2/orders:by_client_order_id`.
    pub fn order_by_client_id(&self, client_order_id: &str) -> Result<Order, SimError> {
        match self.by_client_id.get(client_order_id) {
            Some(id) => self.order(*id, true),
            None => Err(SimError::not_found("order not found")),
        }
    }

    /// `GET /v2/orders`.
    pub fn list_orders(&self, f: &ListOrdersFilter) -> Result<Vec<Order>, SimError> {
        let wanted = |s: OrderStatus| match f.status.as_deref().unwrap_or("open") {
            "open" => Ok(s.is_open()),
            "closed" => Ok(!s.is_open()),
            "all" => Ok(true),
            other => Err(SimError::validation(format!(
                "invalid status {other:?}: use open, closed or all"
            ))),
        };
        let limit = f.limit.unwrap_or(50);
        if limit == 0 || limit > 500 {
            return Err(SimError::validation("limit must be between 1 and 500"));
        }
        let mut out = Vec::new();
        for o in &self.orders {
            let ord = &o.order;
            if (f.nested && o.parent.is_some())
                || !wanted(ord.status)?
                || f.after.is_some_and(|a| ord.submitted_at <= a)
                || f.until.is_some_and(|u| ord.submitted_at >= u)
                || f.side.is_some_and(|s| s != ord.side)
                || f.symbols
                    .as_ref()
                    .is_some_and(|syms| !syms.contains(&ord.symbol))
            {
                continue;
            }
            if let Some(v) = self.view(ord.id, f.nested) {
                out.push(v);
            }
        }
        if !f.ascending {
            out.reverse();
        }
        out.truncate(limit);
        Ok(out)
    }

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
        if let Some(b) = self.books.get_mut(symbol) {
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

fn type_name(kind: OrderType) -> &'static str {
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
