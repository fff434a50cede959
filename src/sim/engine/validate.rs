//! What Alpaca refuses before an order exists: the checks of a request, its class, and the
//! account's buying power and shares, with Alpaca's codes and messages.

use super::commands::*;
use super::{Engine, SimError};
use crate::alpaca::model::*;
use rust_decimal::Decimal;

pub(super) fn has_fraction(d: Decimal) -> bool {
    !d.fract().is_zero()
}

/// Alpaca's price increments: cents from $1, hundredths of a cent below.
pub(super) fn check_increment(name: &str, price: Decimal) -> Result<(), SimError> {
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
    pub(super) fn validate(&self, req: &OrderRequest, class: OrderClass) -> Result<(), SimError> {
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
}
