//! Trading API routes: account, clock, calendar, assets, orders, positions, activities and
//! account configurations, answered from the engine with Alpaca's status codes and bodies.

use super::{
    ConnectionKill, Params, error_response, json_response, ok_json, param, result_response,
};
use crate::alpaca::model::*;
use crate::alpaca::num::{parse_bool, parse_decimal};
use crate::sim::calendar::{self, Session};
use crate::sim::engine::{CloseQty, ListOrdersFilter, SimError};
use crate::sim::{Sim, asset_id, foreign};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use std::sync::Arc;
use uuid::Uuid;

type S = State<Arc<Sim>>;

pub fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/v2/account", get(account))
        .route("/v2/clock", get(clock))
        .route("/v2/calendar", get(calendar_days))
        .route("/v2/assets", get(assets))
        .route("/v2/assets/{symbol}", get(asset))
        .route(
            "/v2/orders",
            get(list_orders).post(submit_order).delete(cancel_all),
        )
        .route("/v2/orders:by_client_order_id", get(order_by_client_id))
        .route(
            "/v2/orders/{id}",
            get(get_order).patch(replace_order).delete(cancel_order),
        )
        .route("/v2/positions", get(positions).delete(close_all))
        .route(
            "/v2/positions/{symbol}",
            get(position).delete(close_position),
        )
        .route("/v2/account/activities", get(activities))
        .route(
            "/v2/account/activities/{activity_type}",
            get(activities_of_type),
        )
        .route(
            "/v2/account/configurations",
            get(configurations).patch(patch_configurations),
        )
}

/// Parses a JSON body, answering Alpaca-style on failure.
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, SimError> {
    if body.is_empty() {
        return Err(SimError::new(400, 40010000, "request body is empty"));
    }
    serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            SimError::validation(format!("invalid request body: {e}"))
        } else {
            SimError::new(
                400,
                40010000,
                format!("request body format is invalid: {e}"),
            )
        }
    })
}

/// RFC3339 timestamps or plain dates (taken as midnight New York time).
pub(crate) fn parse_time(name: &str, text: &str) -> Result<DateTime<Utc>, SimError> {
    let text = text.trim().replace(' ', "+");
    if let Ok(t) = DateTime::parse_from_rfc3339(&text) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(&text, "%Y-%m-%d") {
        return Ok(calendar::et_midnight(d));
    }
    Err(SimError::validation(format!(
        "invalid {name}: {text:?} is not an RFC3339 time or a date"
    )))
}

fn parse_uuid(text: &str) -> Result<Uuid, SimError> {
    Uuid::parse_str(text.trim())
        .map_err(|_| SimError::validation(format!("invalid order id {text:?}")))
}

async fn account(State(sim): S) -> Response {
    ok_json(&sim.with_state(|s| s.engine.account()))
}

async fn clock(State(sim): S) -> Response {
    ok_json(&sim.with_state(|s| s.clock.clock_view()))
}

async fn calendar_days(State(sim): S, Query(p): Query<Params>) -> Response {
    let today = sim.with_state(|s| calendar::to_et(s.clock.now()).date_naive());
    let date = |name: &str, default: NaiveDate| -> Result<NaiveDate, SimError> {
        match param(&p, name) {
            None => Ok(default),
            Some(t) => NaiveDate::parse_from_str(t.get(..10).unwrap_or(t), "%Y-%m-%d")
                .map_err(|_| SimError::validation(format!("invalid {name}: expected YYYY-MM-DD"))),
        }
    };
    let range = date("start", today - Duration::days(30))
        .and_then(|s| Ok((s, date("end", today + Duration::days(30))?)));
    let (start, end) = match range {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    if end < start || (end - start).num_days() > 3660 {
        return error_response(&SimError::validation(
            "end must be after start, and the range at most ten years",
        ));
    }
    let mut days = Vec::new();
    let mut d = start;
    while d <= end {
        if calendar::is_trading_day(d) {
            let s = Session::on(d);
            days.push(CalendarDay {
                date: d,
                open: calendar::to_et(s.open).time(),
                close: calendar::to_et(s.close).time(),
                session_open: Some("0400".into()),
                session_close: Some("2000".into()),
                settlement_date: Some(s.next().date),
            });
        }
        d = match d.succ_opt() {
            Some(n) => n,
            None => break,
        };
    }
    ok_json(&days)
}

fn asset_view(sim: &crate::sim::SimState, symbol: &str) -> Option<Asset> {
    let l = sim.market.listing(symbol)?;
    Some(Asset {
        id: asset_id(&l.symbol),
        asset_class: AssetClass::UsEquity,
        exchange: l.exchange.clone(),
        symbol: l.symbol.clone(),
        name: l.name.clone(),
        status: "active".into(),
        tradable: true,
        marginable: true,
        shortable: true,
        easy_to_borrow: true,
        fractionable: true,
        min_order_size: None,
        min_trade_increment: None,
        price_increment: None,
        attributes: vec![],
        margin_requirement_long: Some(rust_decimal::Decimal::from(30)),
        margin_requirement_short: Some(rust_decimal::Decimal::from(100)),
        maintenance_margin_requirement: Some(rust_decimal::Decimal::from(30)),
    })
}

async fn assets(State(sim): S, Query(p): Query<Params>) -> Response {
    let status = param(&p, "status").unwrap_or("active").to_string();
    let list: Vec<Asset> = sim.with_state(|s| {
        let symbols: Vec<String> = s.market.listings().map(|l| l.symbol.clone()).collect();
        symbols
            .iter()
            .filter_map(|sym| asset_view(s, sym))
            .filter(|a| status == "active" || a.status == status)
            .collect()
    });
    ok_json(&list)
}

async fn asset(State(sim): S, Path(symbol): Path<String>) -> Response {
    let found = sim.with_state(|s| {
        let symbol = match Uuid::parse_str(&symbol) {
            Ok(id) => s
                .market
                .listings()
                .find(|l| asset_id(&l.symbol) == id)
                .map(|l| l.symbol.clone()),
            Err(_) => Some(symbol.clone()),
        };
        symbol.and_then(|sym| asset_view(s, &sym))
    });
    match found {
        Some(a) => ok_json(&a),
        None => error_response(&SimError::not_found("asset not found")),
    }
}

async fn submit_order(
    State(sim): S,
    Extension(kill): Extension<ConnectionKill>,
    body: Bytes,
) -> Response {
    let req: OrderRequest = match parse_body(&body) {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    if let Some(d) = sim.with_state(|s| s.faults.take_delay_before()) {
        tokio::time::sleep(d).await;
    }
    let (result, drop, delay) = sim.with_state(|s| {
        s.stats.order_posts += 1;
        if let Some(coid) = &req.client_order_id {
            if s.engine.order_by_client_id(coid).is_ok() {
                s.stats.client_order_id_reuses += 1;
            }
        }
        let result = s.engine.submit(req);
        let drop = result.is_ok() && s.faults.take_drop();
        let delay = if result.is_ok() {
            s.faults.take_delay()
        } else {
            None
        };
        (result, drop, delay)
    });
    if drop {
        return kill.drop_connection().await;
    }
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    result_response(result)
}

async fn list_orders(State(sim): S, Query(p): Query<Params>) -> Response {
    let filter = (|| -> Result<ListOrdersFilter, SimError> {
        let time = |name: &str| param(&p, name).map(|t| parse_time(name, t)).transpose();
        Ok(ListOrdersFilter {
            status: param(&p, "status").map(str::to_string),
            limit: param(&p, "limit")
                .map(|l| {
                    l.parse()
                        .map_err(|_| SimError::validation("limit must be a number"))
                })
                .transpose()?,
            after: time("after")?,
            until: time("until")?,
            ascending: match param(&p, "direction") {
                None | Some("desc") => false,
                Some("asc") => true,
                Some(_) => return Err(SimError::validation("direction must be asc or desc")),
            },
            nested: param(&p, "nested").and_then(parse_bool).unwrap_or(false),
            symbols: param(&p, "symbols")
                .map(|s| s.split(',').map(|x| x.trim().to_string()).collect()),
            side: match param(&p, "side") {
                None => None,
                Some("buy") => Some(OrderSide::Buy),
                Some("sell") => Some(OrderSide::Sell),
                Some(_) => return Err(SimError::validation("side must be buy or sell")),
            },
        })
    })();
    match filter {
        Ok(f) => result_response(sim.with_state(|s| {
            let own = s.engine.list_orders(&f)?;
            Ok(foreign::merged(
                &own,
                s.foreign.orders_with(f.status.as_deref()),
            ))
        })),
        Err(e) => error_response(&e),
    }
}

async fn order_by_client_id(State(sim): S, Query(p): Query<Params>) -> Response {
    match param(&p, "client_order_id") {
        Some(id) => {
            let id = id.to_string();
            result_response(sim.with_state(|s| s.engine.order_by_client_id(&id)))
        }
        None => error_response(&SimError::validation("client_order_id is missing")),
    }
}

async fn get_order(State(sim): S, Path(id): Path<String>, Query(p): Query<Params>) -> Response {
    let nested = param(&p, "nested").and_then(parse_bool).unwrap_or(true);
    match parse_uuid(&id) {
        Ok(id) => result_response(sim.with_state(|s| s.engine.order(id, nested))),
        Err(e) => error_response(&e),
    }
}

async fn replace_order(State(sim): S, Path(id): Path<String>, body: Bytes) -> Response {
    let parsed = parse_uuid(&id).and_then(|id| Ok((id, parse_body::<ReplaceOrderRequest>(&body)?)));
    match parsed {
        Ok((id, req)) => result_response(sim.with_state(|s| s.engine.replace(id, req))),
        Err(e) => error_response(&e),
    }
}

async fn cancel_order(State(sim): S, Path(id): Path<String>) -> Response {
    match parse_uuid(&id).and_then(|id| sim.with_state(|s| s.engine.cancel(id))) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error_response(&e),
    }
}

async fn cancel_all(State(sim): S) -> Response {
    json_response(
        StatusCode::MULTI_STATUS,
        &sim.with_state(|s| {
            let mut out = s.engine.cancel_all();
            out.extend(s.foreign.cancel_open_orders());
            out
        }),
    )
}

async fn positions(State(sim): S) -> Response {
    ok_json(
        &sim.with_state(|s| foreign::merged(&s.engine.positions(), s.foreign.positions.clone())),
    )
}

/// A position is addressed by symbol or by asset id.
fn position_symbol(s: &crate::sim::SimState, key: &str) -> String {
    match Uuid::parse_str(key) {
        Ok(id) => s
            .market
            .listings()
            .find(|l| asset_id(&l.symbol) == id)
            .map(|l| l.symbol.clone())
            .unwrap_or_default(),
        Err(_) => key.to_string(),
    }
}

async fn position(State(sim): S, Path(key): Path<String>) -> Response {
    let found = sim.with_state(|s| {
        let symbol = position_symbol(s, &key);
        s.engine.position(&symbol)
    });
    match found {
        Some(p) => ok_json(&p),
        None => error_response(&SimError::not_found("position does not exist")),
    }
}

async fn close_position(
    State(sim): S,
    Path(key): Path<String>,
    Query(p): Query<Params>,
) -> Response {
    let amount = match (param(&p, "qty"), param(&p, "percentage")) {
        (Some(_), Some(_)) => Err(SimError::validation(
            "only one of qty or percentage may be given",
        )),
        (Some(q), None) => parse_decimal(q)
            .map(CloseQty::Qty)
            .map_err(|_| SimError::validation("qty must be a number")),
        (None, Some(pct)) => parse_decimal(pct)
            .map(CloseQty::Percentage)
            .map_err(|_| SimError::validation("percentage must be a number")),
        (None, None) => Ok(CloseQty::All),
    };
    match amount {
        Ok(amount) => result_response(sim.with_state(|s| {
            let symbol = position_symbol(s, &key);
            let now = s.clock.now();
            match s.foreign.close_position(&symbol, now) {
                Some(order) => Ok(order),
                None => s.engine.close_position(&symbol, amount),
            }
        })),
        Err(e) => error_response(&e),
    }
}

async fn close_all(State(sim): S, Query(p): Query<Params>) -> Response {
    let cancel = param(&p, "cancel_orders")
        .and_then(parse_bool)
        .unwrap_or(false);
    json_response(
        StatusCode::MULTI_STATUS,
        &sim.with_state(|s| {
            if cancel {
                s.foreign.cancel_open_orders();
            }
            let mut out = s.engine.close_all(cancel);
            let now = s.clock.now();
            for symbol in s.foreign.position_symbols() {
                if let Some(order) = s.foreign.close_position(&symbol, now) {
                    out.push(ClosePositionStatus {
                        symbol,
                        status: 200,
                        order_id: Some(order.id),
                        body: ClosePositionBody::Order(Box::new(order)),
                    });
                }
            }
            out
        }),
    )
}

async fn activities(state: S, Query(p): Query<Params>) -> Response {
    let types = param(&p, "activity_types").map(str::to_string);
    list_activities(state, p, types)
}

async fn activities_of_type(
    state: S,
    Path(kind): Path<String>,
    Query(p): Query<Params>,
) -> Response {
    list_activities(state, p, Some(kind))
}

fn list_activities(State(sim): S, p: Params, types: Option<String>) -> Response {
    let parsed = (|| -> Result<_, SimError> {
        let time = |name: &str| param(&p, name).map(|t| parse_time(name, t)).transpose();
        let date = param(&p, "date")
            .map(|d| {
                NaiveDate::parse_from_str(d, "%Y-%m-%d")
                    .map_err(|_| SimError::validation("date must be YYYY-MM-DD"))
            })
            .transpose()?;
        let page_size: usize = match param(&p, "page_size") {
            Some(n) => n
                .parse()
                .map_err(|_| SimError::validation("page_size must be a number"))?,
            None => 100,
        };
        if page_size == 0 || page_size > 100 {
            return Err(SimError::validation("page_size must be between 1 and 100"));
        }
        let ascending = match param(&p, "direction") {
            None | Some("desc") => false,
            Some("asc") => true,
            Some(_) => return Err(SimError::validation("direction must be asc or desc")),
        };
        Ok((
            time("after")?,
            time("until")?,
            date,
            page_size,
            ascending,
            param(&p, "page_token").map(str::to_string),
        ))
    })();
    let (after, until, date, page_size, ascending, token) = match parsed {
        Ok(v) => v,
        Err(e) => return error_response(&e),
    };
    let wants_fills = types
        .as_deref()
        .is_none_or(|t| t.split(',').any(|x| x.trim().eq_ignore_ascii_case("FILL")));
    let first_page = token.is_none();
    let list = sim.with_state(|s| {
        let mut v: Vec<TradeActivity> = s
            .engine
            .activities()
            .iter()
            .filter(|_| wants_fills)
            .filter(|a| after.is_none_or(|t| a.transaction_time > t))
            .filter(|a| until.is_none_or(|t| a.transaction_time < t))
            .filter(|a| date.is_none_or(|d| calendar::to_et(a.transaction_time).date_naive() == d))
            .cloned()
            .collect();
        if !ascending {
            v.reverse();
        }
        if let Some(token) = &token {
            if let Some(pos) = v.iter().position(|a| &a.id == token) {
                v.drain(..=pos);
            }
        }
        v.truncate(page_size);
        // Non-trade activities (SPLIT) and foreign ones come on the first page only.
        let mut others = Vec::new();
        if first_page {
            let wants = |kind: &str| {
                types
                    .as_deref()
                    .is_none_or(|t| t.split(',').any(|x| x.trim().eq_ignore_ascii_case(kind)))
            };
            others.extend(
                s.engine
                    .other_activities()
                    .iter()
                    .filter(|a| wants(&a.activity_type))
                    .filter(|a| {
                        date.is_none_or(|d| a.date == Some(d))
                            && after.is_none_or(|t| {
                                a.date.is_none_or(|d| d >= calendar::to_et(t).date_naive())
                            })
                    })
                    .filter_map(|a| serde_json::to_value(a).ok()),
            );
            others.extend(s.foreign.activities_with(types.as_deref()));
        }
        foreign::merged(&v, others)
    });
    ok_json(&list)
}

async fn configurations(State(sim): S) -> Response {
    ok_json(&sim.with_state(|s| s.engine.configurations().clone()))
}

async fn patch_configurations(State(sim): S, body: Bytes) -> Response {
    match parse_body::<AccountConfigurationsPatch>(&body) {
        Ok(patch) => result_response(sim.with_state(|s| s.engine.patch_configurations(patch))),
        Err(e) => error_response(&e),
    }
}
