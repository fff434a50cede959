//! The admin API under `/_sim/` for tests and demos (no auth; the simulator listens on
//! loopback): `GET state`, `GET positions`, `GET stats`, `POST faults`, `POST reset`,
//! `POST foreign`, `POST corporate_actions`, `POST halt`. Documented in
//! `docs/simulator.md`; tests outside the crate rely on this contract.

use super::{error_response, ok_json};
use crate::sim::engine::SimError;
use crate::sim::faults::FaultSpec;
use crate::sim::foreign::merged;
use crate::sim::{Sim, SimStats};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Serialize;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/state", get(state))
        .route("/positions", get(positions))
        .route("/stats", get(stats))
        .route("/faults", post(faults))
        .route("/reset", post(reset))
        .route("/foreign", post(foreign))
        .route("/corporate_actions", post(corporate_action))
        .route("/halt", post(halt))
}

#[derive(Serialize)]
struct StateView {
    #[serde(with = "crate::alpaca::num::flex")]
    cash: rust_decimal::Decimal,
    #[serde(with = "crate::alpaca::num::flex")]
    equity: rust_decimal::Decimal,
    /// The simulator's positions and orders, then the foreign entries (`POST /_sim/foreign`).
    positions: serde_json::Value,
    orders: serde_json::Value,
    market_time: chrono::DateTime<chrono::Utc>,
    market_open: bool,
}

async fn state(State(sim): State<Arc<Sim>>) -> Response {
    ok_json(&sim.with_state(|s| StateView {
        cash: s.engine.cash(),
        equity: s.engine.equity(),
        positions: merged(&s.engine.positions(), s.foreign.positions.clone()),
        orders: merged(&s.engine.all_orders(), s.foreign.orders.clone()),
        market_time: s.clock.now(),
        market_open: s.clock.clock_view().is_open,
    }))
}

/// The positions alone: what a watcher polling often needs, without every order ever made.
async fn positions(State(sim): State<Arc<Sim>>) -> Response {
    ok_json(&sim.with_state(|s| merged(&s.engine.positions(), s.foreign.positions.clone())))
}

#[derive(Serialize)]
struct StatsView {
    #[serde(flatten)]
    stats: SimStats,
    faults: crate::sim::faults::Faults,
    streams: serde_json::Value,
}

async fn stats(State(sim): State<Arc<Sim>>) -> Response {
    let streams = sim.streams.stats.snapshot();
    let s = sim.lock();
    ok_json(&StatsView {
        stats: s.stats.clone(),
        faults: s.faults.clone(),
        streams,
    })
}

async fn faults(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let spec: FaultSpec = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => {
            return error_response(&SimError::new(
                400,
                40010000,
                format!(
                    "invalid fault: {e}; expected one of {{\"kind\":\"http_error\",\"status\":503,\"count\":N}}, {{\"kind\":\"latency\",\"ms\":M}}, {{\"kind\":\"drop_after_accept\",\"count\":N}}, {{\"kind\":\"delay_after_accept\",\"ms\":M,\"count\":N}}, {{\"kind\":\"delay_before_accept\",\"ms\":M,\"count\":N}}, {{\"kind\":\"rate_limit\",\"count\":N}}, {{\"kind\":\"drop_streams\"}}, {{\"kind\":\"garbage\",\"count\":N}}, {{\"kind\":\"freeze\",\"seconds\":S}}, {{\"kind\":\"mute_trade_updates\",\"seconds\":S}}, {{\"kind\":\"reject_auth\",\"enabled\":true}}, {{\"kind\":\"refuse_sip\",\"enabled\":true}}, {{\"kind\":\"flood\",\"msgs_per_s\":N}} (or \"max\":true; batch, frames, quotes_pct, bars_pct, mark_every_ms, seed), {{\"kind\":\"clear\"}}"
                ),
            ));
        }
    };
    tracing::info!(fault = ?spec, "simulator fault set");
    let drop_streams = spec == FaultSpec::DropStreams;
    let result = {
        let mut s = sim.lock();
        s.faults.apply(spec).map(|()| s.faults.clone())
    };
    if drop_streams && result.is_ok() {
        sim.streams.drop_all();
    }
    match result {
        Ok(faults) => ok_json(&faults),
        Err(e) => error_response(&SimError::new(400, 40010000, e)),
    }
}

async fn reset(State(sim): State<Arc<Sim>>) -> Response {
    sim.with_state(|s| s.reset());
    tracing::info!("simulator reset");
    ok_json(&serde_json::json!({"reset": true}))
}

/// Puts entries the simulator does not model into the account, as raw JSON:
/// `{"orders":[…],"positions":[…],"activities":[…]}` (each list optional).
async fn foreign(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let entries: crate::sim::foreign::ForeignEntries = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => {
            return error_response(&SimError::new(
                400,
                40010000,
                format!(
                    "invalid foreign entries: {e}; expected {{\"orders\":[…],\"positions\":[…],\"activities\":[…]}}"
                ),
            ));
        }
    };
    let counts = (
        entries.orders.len(),
        entries.positions.len(),
        entries.activities.len(),
    );
    sim.with_state(|s| s.foreign.add(entries));
    tracing::info!(
        orders = counts.0,
        positions = counts.1,
        activities = counts.2,
        "simulator: foreign entries added"
    );
    ok_json(&serde_json::json!({"orders": counts.0, "positions": counts.1, "activities": counts.2}))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CorporateAction {
    #[serde(rename = "type")]
    kind: String,
    symbol: String,
    #[serde(with = "crate::alpaca::num::flex")]
    old_rate: rust_decimal::Decimal,
    #[serde(with = "crate::alpaca::num::flex")]
    new_rate: rust_decimal::Decimal,
}

/// A corporate action taking effect now: `{"type":"split","symbol":"AAPL","old_rate":1,"new_rate":4}`.
async fn corporate_action(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let action: CorporateAction = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => {
            return error_response(&SimError::new(
                400,
                40010000,
                format!(
                    "invalid corporate action: {e}; expected {{\"type\":\"split\",\"symbol\":\"AAPL\",\"old_rate\":1,\"new_rate\":4}}"
                ),
            ));
        }
    };
    if action.kind != "split" {
        return error_response(&SimError::new(
            400,
            40010000,
            format!(
                "unsupported corporate action {:?}: only \"split\"",
                action.kind
            ),
        ));
    }
    let result =
        sim.with_state(|s| s.apply_split(&action.symbol, action.old_rate, action.new_rate));
    match result {
        Ok((before, after)) => {
            tracing::info!(symbol = %action.symbol, old_rate = %action.old_rate, new_rate = %action.new_rate, %before, %after, "simulator: split applied");
            ok_json(&serde_json::json!({
                "symbol": action.symbol,
                "qty_before": before.to_string(),
                "qty_after": after.to_string(),
            }))
        }
        Err(e) => error_response(&e),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Halt {
    symbol: String,
    halted: bool,
}

/// A trading halt (`{"symbol":"AAPL","halted":true}`) or its resumption (`"halted":false`):
/// no quote, no trade and no fill on the symbol meanwhile; a `statuses` message either way.
async fn halt(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let h: Halt = match serde_json::from_slice(&body) {
        Ok(h) => h,
        Err(e) => {
            return error_response(&SimError::new(
                400,
                40010000,
                format!("invalid halt: {e}; expected {{\"symbol\":\"AAPL\",\"halted\":true}}"),
            ));
        }
    };
    let changed = sim.with_state(|s| {
        let now = s.clock.now();
        s.market
            .listing(&h.symbol)
            .is_some()
            .then(|| s.market.set_halt(&h.symbol, h.halted, now))
    });
    match changed {
        None => error_response(&SimError::not_found(format!(
            "asset {} not found",
            h.symbol
        ))),
        Some(changed) => {
            tracing::info!(symbol = %h.symbol, halted = h.halted, changed, "simulator: trading status");
            ok_json(
                &serde_json::json!({"symbol": h.symbol, "halted": h.halted, "changed": changed}),
            )
        }
    }
}
