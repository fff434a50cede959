//! The broker error: one type for every way a call to Alpaca can fail, classified so callers
//! can decide what to do without string matching.
//!
//! - [`BrokerError::Connectivity`]: we could not talk to the broker (connect, timeout, reset).
//! - [`BrokerError::Api`]: the broker answered and refused; Alpaca's `code` and `message` kept.
//! - [`BrokerError::RateLimited`]: 429; safe to retry after the given delay.
//! - [`BrokerError::Decode`]: the broker answered something we cannot read.
//! - [`BrokerError::Ambiguous`]: an order POST whose outcome could not be established.
//! - [`BrokerError::InvalidRequest`]: refused locally before anything was sent.
//!
//! Messages name the endpoint (method and path) and never carry keys or secrets.

use crate::alpaca::model::ApiErrorBody;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectivityKind {
    Connect,
    Timeout,
    /// The connection broke after the request may have been sent.
    Io,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot reach the broker ({endpoint}): {detail}")]
    Connectivity {
        endpoint: String,
        kind: ConnectivityKind,
        detail: String,
    },
    #[error("the broker refused {endpoint}: HTTP {status}{}: {message}", code.map(|c| format!(" code {c}")).unwrap_or_default())]
    Api {
        endpoint: String,
        status: u16,
        code: Option<u64>,
        message: String,
        /// The whole body, boxed to keep the error small.
        body: Option<Box<ApiErrorBody>>,
    },
    #[error("rate limited by the broker on {endpoint}{}", retry_after.map(|d| format!(" (retry in {} ms)", d.as_millis())).unwrap_or_default())]
    RateLimited {
        endpoint: String,
        retry_after: Option<Duration>,
    },
    #[error("unexpected response from the broker ({endpoint}): {detail}")]
    Decode { endpoint: String, detail: String },
    #[error(
        "the outcome of order {client_order_id} is unknown after {attempts} attempts: {detail}; reconcile with the broker before sending it again"
    )]
    Ambiguous {
        client_order_id: String,
        attempts: u32,
        detail: String,
    },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl BrokerError {
    /// True when the broker could not be reached (as opposed to a refusal).
    pub fn is_connectivity(&self) -> bool {
        matches!(self, BrokerError::Connectivity { .. })
    }

    /// True when repeating a request that is safe to repeat may succeed: connectivity trouble,
    /// rate limiting and server-side (5xx) errors.
    pub fn is_retryable(&self) -> bool {
        match self {
            BrokerError::Connectivity { .. } | BrokerError::RateLimited { .. } => true,
            BrokerError::Api { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// True when a request that changes state may or may not have taken effect.
    pub fn is_ambiguous_outcome(&self) -> bool {
        match self {
            BrokerError::Connectivity { kind, .. } => *kind != ConnectivityKind::Connect,
            BrokerError::Api { status, .. } => *status >= 500,
            BrokerError::Decode { .. } | BrokerError::Ambiguous { .. } => true,
            _ => false,
        }
    }

    /// The HTTP status of a broker answer, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            BrokerError::Api { status, .. } => Some(*status),
            BrokerError::RateLimited { .. } => Some(429),
            _ => None,
        }
    }

    /// Alpaca's error code (e.g. 40310000), if the broker sent one.
    pub fn code(&self) -> Option<u64> {
        match self {
            BrokerError::Api { code, .. } => *code,
            _ => None,
        }
    }

    pub(crate) fn from_reqwest(endpoint: &str, err: reqwest::Error) -> Self {
        let kind = if err.is_timeout() {
            ConnectivityKind::Timeout
        } else if err.is_connect() {
            ConnectivityKind::Connect
        } else {
            ConnectivityKind::Io
        };
        BrokerError::Connectivity {
            endpoint: endpoint.to_string(),
            kind,
            detail: error_chain(&err.without_url()),
        }
    }
}

/// `err: source: source…` on one line.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_table() {
        let api = |status| BrokerError::Api {
            endpoint: "GET /v2/account".into(),
            status,
            code: Some(u64::from(status) * 100_000),
            message: "x".into(),
            body: None,
        };
        let conn = |kind| BrokerError::Connectivity {
            endpoint: "e".into(),
            kind,
            detail: "d".into(),
        };
        let rows: [(BrokerError, bool, bool, bool); 6] = [
            (api(403), false, false, false),
            (api(422), false, false, false),
            (api(503), false, true, true),
            (conn(ConnectivityKind::Connect), true, true, false),
            (conn(ConnectivityKind::Timeout), true, true, true),
            (
                BrokerError::RateLimited {
                    endpoint: "e".into(),
                    retry_after: None,
                },
                false,
                true,
                false,
            ),
        ];
        for (err, connectivity, retryable, ambiguous) in rows {
            assert_eq!(err.is_connectivity(), connectivity, "{err}");
            assert_eq!(err.is_retryable(), retryable, "{err}");
            assert_eq!(err.is_ambiguous_outcome(), ambiguous, "{err}");
        }
        assert_eq!(api(403).code(), Some(40300000));
        assert!(api(403).to_string().contains("HTTP 403 code 40300000"));
    }
}
