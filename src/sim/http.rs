//! What the simulator's REST server and its WebSocket endpoints share: Alpaca's JSON answers
//! and errors, and whether a key pair is acceptable.

use super::Sim;
use super::engine::SimError;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Alpaca's JSON content type.
const JSON: &str = "application/json; charset=UTF-8";

fn json_bytes(status: StatusCode, bytes: Vec<u8>) -> Response {
    let content_type = [(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static(JSON),
    )];
    (status, content_type, bytes).into_response()
}

pub(crate) fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => json_bytes(status, bytes),
        Err(e) => error_response(&SimError::new(
            500,
            50010000,
            format!("cannot encode response: {e}"),
        )),
    }
}

pub(crate) fn ok_json(body: &impl serde::Serialize) -> Response {
    json_response(StatusCode::OK, body)
}

pub(crate) fn error_response(e: &SimError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match serde_json::to_vec(&e.body()) {
        Ok(bytes) => json_bytes(status, bytes),
        Err(_) => status.into_response(),
    }
}

pub(crate) fn result_response<T: serde::Serialize>(r: Result<T, SimError>) -> Response {
    match r {
        Ok(v) => ok_json(&v),
        Err(e) => error_response(&e),
    }
}

/// The key pair is acceptable to this simulator.
pub(crate) fn authorized(sim: &Sim, key: &str, secret: &str) -> bool {
    if key.is_empty() || secret.is_empty() {
        return false;
    }
    match &sim.lock().settings.credentials {
        Some((k, s)) => k == key && s == secret,
        None => true,
    }
}
