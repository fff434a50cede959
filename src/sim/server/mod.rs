//! The simulator's HTTP server: an accept loop on hyper (so a fault can drop a connection
//! without answering), the routes of the three APIs, and the middleware every non-admin
//! request passes in this order: injected latency, injected HTTP errors, authentication,
//! rate limit (with `X-Ratelimit-*` headers on every answer).

mod admin;
mod data;
mod trading;

use super::Sim;
use super::engine::SimError;
pub(crate) use super::http::{authorized, error_response, json_response, ok_json, result_response};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tower::ServiceExt;

/// Per-connection switch a handler pulls to drop its connection without answering.
#[derive(Clone)]
pub struct ConnectionKill(Arc<Notify>);

impl ConnectionKill {
    /// Drops the connection; the caller should then never answer.
    pub async fn drop_connection(&self) -> Response {
        self.0.notify_one();
        std::future::pending::<()>().await;
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    }
}

pub fn router(sim: Arc<Sim>) -> Router {
    let api = trading::routes()
        .merge(data::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(sim.clone(), guard));
    Router::new()
        .nest("/_sim", admin::routes())
        .merge(super::stream::routes())
        .merge(api)
        .with_state(sim)
}

/// Accepts connections until `shutdown` turns true.
pub async fn serve(listener: TcpListener, sim: Arc<Sim>, mut shutdown: watch::Receiver<bool>) {
    let app = router(sim);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (stream, _peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "simulator accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let kill = ConnectionKill(Arc::new(Notify::new()));
        let app = app.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let conn_kill = kill.clone();
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(conn_kill.clone());
                    app.clone().oneshot(req.map(Body::new))
                },
            );
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::select! {
                result = conn => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "simulator connection ended with an error");
                    }
                }
                _ = kill.0.notified() => tracing::debug!("simulator dropped a connection on purpose"),
                _ = shutdown.changed() => {}
            }
        });
    }
}

async fn not_found() -> Response {
    error_response(&SimError::not_found("endpoint not found"))
}

/// Query parameters as a map (the last value wins); `+` that a client left unencoded in a
/// timestamp arrives as a space and is put back.
pub(crate) type Params = HashMap<String, String>;

pub(crate) fn param<'a>(p: &'a Params, name: &str) -> Option<&'a str> {
    p.get(name).map(|s| s.trim()).filter(|s| !s.is_empty())
}

/// Extracts the API key from the APCA headers or an `Authorization` header.
fn credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    if let (Some(k), Some(s)) = (get("apca-api-key-id"), get("apca-api-secret-key")) {
        return Some((k, s));
    }
    let auth = get("authorization")?;
    if let Some(b64) = auth.strip_prefix("Basic ") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (k, s) = text.split_once(':')?;
        return Some((k.to_string(), s.to_string()));
    }
    auth.strip_prefix("Bearer ")
        .map(|t| ("oauth".to_string(), t.trim().to_string()))
}

fn epoch_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn add_rate_headers(resp: &mut Response, limit: u32, remaining: u32, reset: u64) {
    let h = resp.headers_mut();
    for (name, value) in [
        ("x-ratelimit-limit", limit as u64),
        ("x-ratelimit-remaining", remaining as u64),
        ("x-ratelimit-reset", reset),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
            h.insert(name, v);
        }
    }
}

/// Latency, injected errors, auth and rate limit, in that order.
async fn guard(State(sim): State<Arc<Sim>>, req: Request, next: Next) -> Response {
    let latency = {
        let mut s = sim.lock();
        s.stats.requests += 1;
        s.faults.latency_ms
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let injected = sim.lock().faults.take_http_error();
    if let Some(status) = injected {
        let message = match status {
            500 => "internal server error",
            502 => "bad gateway",
            503 => "service unavailable",
            504 => "gateway timeout",
            _ => "injected error",
        };
        return error_response(&SimError::new(status, u64::from(status) * 100_000, message));
    }
    let Some((key, secret)) = credentials(req.headers()) else {
        sim.lock().stats.unauthorized += 1;
        return error_response(&SimError::new(401, 40110000, "request is not authorized"));
    };
    if !authorized(&sim, &key, &secret) {
        sim.lock().stats.unauthorized += 1;
        return error_response(&SimError::new(401, 40110000, "request is not authorized"));
    }
    let (verdict, forced) = {
        let mut s = sim.lock();
        let forced = s.faults.take_rate_limit();
        (s.rate.check(&key, epoch_s()), forced)
    };
    let (limit, remaining, reset) = if verdict.limit == 0 {
        (200, 199, verdict.reset_epoch_s)
    } else {
        (verdict.limit, verdict.remaining, verdict.reset_epoch_s)
    };
    if !verdict.allowed || forced {
        sim.lock().stats.rate_limited += 1;
        let mut resp = error_response(&SimError::new(429, 42910000, "rate limit exceeded"));
        if forced {
            // An injected 429 resets a second from now, so clients' waits stay short.
            add_rate_headers(&mut resp, limit, 0, epoch_s() + 1);
        } else {
            add_rate_headers(&mut resp, limit, remaining, reset);
        }
        return resp;
    }
    let mut resp = next.run(req).await;
    add_rate_headers(&mut resp, limit, remaining, reset);
    resp
}
