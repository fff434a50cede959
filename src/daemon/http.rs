//! The opt-in HTTP endpoints (`[metrics] listen`): `/metrics` in the Prometheus text format
//! (through `prometheus-client`), `/healthz` (200 while active with fresh market data, 503 with
//! a JSON reason otherwise) and `/readyz` (200 once the order side has reconciled with the
//! broker). Each scrape asks the actors afresh; nothing here can place or see an order's id,
//! and no secret is in reach.

use crate::actors::account::AccountManager;
use crate::actors::order_manager::OrderManager;
use crate::actors::risk_manager::RiskManager;
use crate::actors::strategy_runner::StrategyRunner;
use crate::actors::stream_client::StreamClient;
use crate::actors::supervisor::Supervisor;
use crate::domain::TradingMode;
use crate::messages::GetStreamStatus;
use actix::Addr;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rust_decimal::prelude::ToPrimitive;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// What the endpoints read.
#[derive(Clone)]
pub struct Probes {
    pub supervisor: Addr<Supervisor>,
    pub orders: Addr<OrderManager>,
    pub account: Addr<AccountManager>,
    pub risk: Addr<RiskManager>,
    pub market_stream: Addr<StreamClient>,
    pub trade_stream: Addr<StreamClient>,
    pub strategies: Vec<Addr<StrategyRunner>>,
    pub journal: Addr<crate::journal::Journal>,
    /// The order path's write-ahead (its latency).
    pub intents: crate::journal::IntentWriter,
    /// Market data older than this, in market hours, is stale.
    pub stale_after: Duration,
}

impl Probes {
    pub fn of(d: &super::Daemon, stale_after: Duration) -> Probes {
        Probes {
            supervisor: d.supervisor.clone(),
            orders: d.orders.clone(),
            account: d.account.clone(),
            risk: d.risk.clone(),
            market_stream: d.market_stream.clone(),
            trade_stream: d.trade_stream.clone(),
            strategies: d.strategies.clone(),
            journal: d.journal.addr.clone(),
            intents: d.journal.intents.clone(),
            stale_after,
        }
    }
}

/// Serves the endpoints on `listener` until the future is dropped.
pub async fn serve(listener: tokio::net::TcpListener, probes: Probes) {
    let app = axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(probes);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "the metrics endpoint stopped");
    }
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

async fn healthz(State(p): State<Probes>) -> Response {
    let Ok(sup) = p
        .supervisor
        .send(crate::messages::mode::GetSupervisorStatus)
        .await
    else {
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "unhealthy", "reason": "the supervisor did not answer"}),
        );
    };
    let mode = sup.mode.name();
    if sup.mode != TradingMode::Active {
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "unhealthy", "mode": mode, "reason": format!("mode {mode}: {}", sup.cause)}),
        );
    }
    let market_open = matches!(
        p.account.send(crate::messages::account::GetAccount).await,
        Ok(Some(a)) if a.market_open
    );
    if market_open && let Ok(s) = p.market_stream.send(GetStreamStatus).await {
        let age = s
            .metrics
            .last_message_at
            .map(|at| (chrono::Utc::now() - at).to_std().unwrap_or_default());
        if age.is_none_or(|a| a > p.stale_after) {
            return json(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({
                    "status": "unhealthy",
                    "mode": mode,
                    "reason": match age {
                        Some(a) => format!("market data stale: the last message came {} s ago", a.as_secs()),
                        None => "market data stale: no message yet".to_string(),
                    },
                }),
            );
        }
    }
    json(
        StatusCode::OK,
        serde_json::json!({"status": "ok", "mode": mode}),
    )
}

async fn readyz(State(p): State<Probes>) -> Response {
    match p
        .orders
        .send(crate::actors::order_manager::GetOrderStats)
        .await
    {
        Ok(s) if s.reconciled => json(StatusCode::OK, serde_json::json!({"ready": true})),
        Ok(_) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"ready": false, "reason": "reconciling with the broker"}),
        ),
        Err(_) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"ready": false, "reason": "the order side did not answer"}),
        ),
    }
}

type Labels = Vec<(String, String)>;

fn gauge(r: &mut Registry, name: &str, help: &str, v: f64) {
    let g: Gauge<f64, AtomicU64> = Gauge::default();
    g.set(v);
    r.register(name, help, g);
}

fn counter(r: &mut Registry, name: &str, help: &str, v: u64) {
    let c: Counter = Counter::default();
    c.inc_by(v);
    r.register(name, help, c);
}

fn money(d: rust_decimal::Decimal) -> f64 {
    d.to_f64().unwrap_or(0.0)
}

async fn metrics(State(p): State<Probes>) -> Response {
    let mut r = Registry::with_prefix("traderd");
    if let Some(log) = crate::telemetry::log_counts() {
        counter(
            &mut r,
            "log_lines_dropped",
            "Log lines dropped because the log's reader fell behind",
            log.dropped().lines,
        );
    }
    if let Ok(s) = p
        .supervisor
        .send(crate::messages::mode::GetSupervisorStatus)
        .await
    {
        gauge(
            &mut r,
            "mode",
            "Trading mode: 0 active, 1 reduce_only, 2 preserving, 3 preserved, 4 halted",
            s.mode.code() as f64,
        );
    }
    if let Ok(Some(a)) = p.account.send(crate::messages::account::GetAccount).await {
        gauge(
            &mut r,
            "account_equity_usd",
            "Account equity as last read",
            money(a.equity),
        );
        gauge(
            &mut r,
            "account_cash_usd",
            "Cash as last read",
            money(a.cash),
        );
        gauge(
            &mut r,
            "account_day_pnl_usd",
            "Equity minus the previous close's",
            money(a.day_pnl),
        );
        gauge(
            &mut r,
            "exposure_net_usd",
            "Long plus (negative) short market value",
            money(a.net_exposure),
        );
        gauge(
            &mut r,
            "exposure_gross_usd",
            "Long plus absolute short market value",
            money(a.gross_exposure),
        );
        gauge(
            &mut r,
            "market_open",
            "1 while the market is open",
            f64::from(u8::from(a.market_open)),
        );
    }
    if let Ok(o) = p
        .orders
        .send(crate::actors::order_manager::GetOrderStats)
        .await
    {
        counter(
            &mut r,
            "orders_submitted",
            "Orders sent to the broker",
            o.submitted,
        );
        counter(&mut r, "orders_fills", "Fills booked", o.fills);
        gauge(
            &mut r,
            "orders_open",
            "Orders open at the broker",
            o.open_orders as f64,
        );
        gauge(
            &mut r,
            "positions",
            "Symbols with a position",
            o.positions.len() as f64,
        );
        gauge(
            &mut r,
            "ready",
            "1 once reconciled with the broker",
            f64::from(u8::from(o.reconciled)),
        );
        let finals = Family::<Labels, Counter>::default();
        for status in crate::alpaca::model::OrderStatus::TERMINAL {
            let status = status.name();
            let _ = finals.get_or_create(&vec![("status".to_string(), status)]);
        }
        for (status, n) in &o.orders_final {
            finals
                .get_or_create(&vec![("status".to_string(), status.clone())])
                .inc_by(*n);
        }
        r.register(
            "orders_final",
            "Orders of ours that reached a final status, by status",
            finals,
        );
    }
    let messages = Family::<Labels, Counter>::default();
    let processed = Family::<Labels, Counter>::default();
    let failed = Family::<Labels, Counter>::default();
    let bytes = Family::<Labels, Counter>::default();
    let conflated = Family::<Labels, Counter>::default();
    let reconnects = Family::<Labels, Counter>::default();
    let age = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    for (name, addr) in [
        ("market_data", &p.market_stream),
        ("trade_updates", &p.trade_stream),
    ] {
        if let Ok(s) = addr.send(GetStreamStatus).await {
            let l = vec![("stream".to_string(), name.to_string())];
            messages
                .get_or_create(&l)
                .inc_by(s.metrics.messages_received);
            processed
                .get_or_create(&l)
                .inc_by(s.metrics.messages_processed);
            failed.get_or_create(&l).inc_by(s.metrics.frames_failed);
            bytes.get_or_create(&l).inc_by(s.metrics.bytes);
            conflated
                .get_or_create(&l)
                .inc_by(s.metrics.quotes_conflated);
            reconnects.get_or_create(&l).inc_by(s.metrics.reconnects);
            if let Some(at) = s.metrics.last_message_at {
                let secs = (chrono::Utc::now() - at).num_milliseconds().max(0) as f64 / 1e3;
                age.get_or_create(&l).set(secs);
            }
        }
    }
    r.register("stream_messages", "Messages received", messages);
    r.register("stream_processed", "Messages handed on", processed);
    r.register(
        "stream_frames_failed",
        "Frames that could not be decoded (each skipped)",
        failed,
    );
    r.register("stream_bytes", "Bytes received", bytes);
    r.register(
        "stream_quotes_conflated",
        "Quotes replaced by newer ones under load",
        conflated,
    );
    r.register("stream_reconnects", "Reconnects", reconnects);
    let intents = p.intents.write_latency();
    let journal = p.journal.send(crate::journal::GetJournalStats).await;
    for (name, what, j) in [
        ("journal", "Journal writes (each committed)", journal.ok()),
        (
            "journal_intent",
            "Order intents written ahead (each synced before its request)",
            Some(intents),
        ),
    ] {
        let Some(j) = j else { continue };
        counter(&mut r, &format!("{name}_writes"), what, j.count);
        let q = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        for (quantile, us) in [("0.5", j.p50_us), ("0.99", j.p99_us), ("1", j.max_us)] {
            q.get_or_create(&vec![("quantile".to_string(), quantile.to_string())])
                .set(us as f64 / 1e6);
        }
        r.register(
            format!("{name}_write_seconds"),
            format!("{what}: latency since start, by quantile"),
            q,
        );
    }
    r.register(
        "stream_last_message_age_seconds",
        "How long ago the last message came",
        age,
    );
    let refusals = Family::<Labels, Counter>::default();
    for code in crate::risk::RefusalCode::ALL {
        let _ = refusals.get_or_create(&vec![("code".to_string(), code.as_str().to_string())]);
    }
    if let Ok(s) = p.risk.send(crate::actors::risk_manager::GetRiskStats).await {
        for (code, n) in s.refused {
            refusals
                .get_or_create(&vec![("code".to_string(), code.to_string())])
                .inc_by(n);
        }
    }
    r.register(
        "risk_refusals",
        "Orders refused by the risk checks, by code",
        refusals,
    );
    let signals = Family::<Labels, Counter>::default();
    let sent = Family::<Labels, Counter>::default();
    for s in &p.strategies {
        if let Ok(st) = s.send(crate::messages::strategy::GetStrategyStats).await {
            let l = vec![("strategy".to_string(), st.name.clone())];
            signals.get_or_create(&l).inc_by(st.signals);
            sent.get_or_create(&l).inc_by(st.sent);
        }
    }
    r.register("strategy_signals", "Signals made, by strategy", signals);
    r.register(
        "strategy_orders",
        "Signals that became orders, by strategy",
        sent,
    );
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &r) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({"error": e.to_string()}),
        ),
    }
}
