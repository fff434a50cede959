//! The trading API's commands and queries against the engine, with Alpaca's refusals:
//! validation (422, code 40010001), buying power and quantity (403, 40310000), unknown order or
//! position (404, 40410000), not cancelable (422, 42210000).

pub(super) use super::amend::{trail_stop, type_name};
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

    pub(super) fn insert(
        &mut self,
        order: Order,
        parent: Option<Uuid>,
        target: Option<Decimal>,
    ) -> Uuid {
        let id = order.id;
        self.by_client_id.insert(order.client_order_id.clone(), id);
        self.index.insert(id, self.orders.len());
        self.unfinished
            .entry(order.symbol.clone())
            .or_default()
            .push(self.orders.len());
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
        // Open orders are among the unfinished ones: only those are looked at (in the order
        // they were placed, as the whole list would give them).
        let open_only = f.status.as_deref().unwrap_or("open") == "open";
        let mut candidates: Vec<usize> = if open_only {
            self.unfinished.values().flatten().copied().collect()
        } else {
            (0..self.orders.len()).collect()
        };
        if open_only {
            candidates.sort_unstable();
        }
        for o in candidates.into_iter().filter_map(|i| self.orders.get(i)) {
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
}
