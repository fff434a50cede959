//! The wire protocol: requests, answers, ids, the command list.

use super::*;

/// A request's id, echoed in the answer exactly as it was sent: a large integer is not
/// rounded through a float on the way back.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(Box<serde_json::value::RawValue>);

impl RequestId {
    pub fn null() -> Self {
        RequestId(serde_json::value::RawValue::NULL.to_owned())
    }

    pub fn number(n: u64) -> Self {
        serde_json::value::to_raw_value(&n)
            .map(RequestId)
            .unwrap_or_else(|_| Self::null())
    }

    /// The id as JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::null()
    }
}

impl PartialEq for RequestId {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub v: u32,
    #[serde(default)]
    pub id: RequestId,
    pub cmd: String,
    #[serde(default)]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    pub v: u32,
    pub id: RequestId,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl Response {
    pub(super) fn ok(id: RequestId, result: serde_json::Value) -> Self {
        Response {
            v: PROTOCOL_VERSION,
            id,
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    pub(super) fn err(id: RequestId, code: &str, message: impl Into<String>) -> Self {
        Response {
            v: PROTOCOL_VERSION,
            id,
            ok: false,
            result: None,
            error: Some(ErrorBody {
                code: code.into(),
                message: message.into(),
            }),
        }
    }
}

/// The commands the server knows, with one line of help each (`traderd ctl --help` lists them).
pub const COMMANDS: &[(&str, &str)] = &[
    ("status", "mode, streams, positions, open orders, equity"),
    (
        "health",
        "the health monitor's view: sources, windows, streams, pings",
    ),
    ("positions", "positions as the order side books them"),
    ("orders", "order counters and what is open"),
    (
        "stats",
        "market-data counters (stream, feed) and tick-to-order latency",
    ),
    (
        "pause",
        "active → reduce_only: only orders that shrink a position (--strategy NAME: that strategy alone stops signalling)",
    ),
    (
        "resume",
        "reduce_only, preserved or halted → active (--strategy NAME: that strategy signals again)",
    ),
    (
        "flatten",
        "capital preservation now: cancel everything, close everything",
    ),
    ("halt", "the kill switch: nothing is sent at all"),
    (
        "events",
        "follow mode changes, orders, fills and health changes live",
    ),
    (
        "subscribe",
        "trade these symbols too (bars warmed up from REST first)",
    ),
    (
        "unsubscribe",
        "stop trading these symbols (refused while one holds a position)",
    ),
    (
        "reload",
        "re-read the config file: risk limits and symbols (SIGHUP does the same)",
    ),
    (
        "shutdown",
        "stop the daemon (the configured shutdown sequence)",
    ),
    (
        "debug-wedge",
        "SECONDS: wedge the supervisor on purpose to prove the systemd watchdog (only with TRADERD_DEBUG_COMMANDS=1)",
    ),
];
