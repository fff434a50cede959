//! Messages of the health monitor: what the sources report, the crossing it sends the
//! supervisor, its listeners and its status.

use crate::alpaca::rest::RestOutcome;
use crate::domain::{ConnectionState, StreamKind};
use crate::messages::GetStreamStatus;
use actix::prelude::*;
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// Something an actor tells the monitor.
#[derive(Debug, Clone)]
pub enum HealthEvent {
    Rest(RestOutcome),
    OrderAccepted,
    OrderRejected {
        detail: String,
    },
    /// The actor was restarted by its supervisor.
    ActorRestarted {
        reason: String,
    },
    /// A handler could not go on: the actor reported this and stopped its context.
    ActorFailed {
        reason: String,
    },
    Mismatch {
        detail: String,
    },
}

#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct HealthReport {
    /// Who reports: `rest`, `orders`, `stream:market_data`, an actor's name.
    pub source: &'static str,
    pub event: HealthEvent,
}

/// How an actor reaches the monitor; a no-op when there is none (tests of one actor).
#[derive(Clone, Default)]
pub struct Reporter(Option<Recipient<HealthReport>>);

impl Reporter {
    pub fn new(to: Recipient<HealthReport>) -> Self {
        Reporter(Some(to))
    }

    pub fn report(&self, source: &'static str, event: HealthEvent) {
        if let Some(to) = &self.0 {
            to.do_send(HealthReport { source, event });
        }
    }
}

/// Why the system went into capital preservation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
pub enum Cause {
    RestErrors {
        errors: u32,
        window_s: u64,
    },
    StreamDown {
        stream: String,
        for_s: u64,
    },
    OrderRejects {
        in_a_row: u32,
    },
    RestartBudget {
        restarts: u32,
        window_s: u64,
        last: String,
    },
    DailyLoss {
        day_pnl: Decimal,
        limit: Decimal,
    },
    Mismatch {
        detail: String,
    },
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cause::RestErrors { errors, window_s } => {
                write!(f, "{errors} broker errors within {window_s} s")
            }
            Cause::StreamDown { stream, for_s } => write!(
                f,
                "the {stream} stream down or silent for {for_s} s while the market is open"
            ),
            Cause::OrderRejects { in_a_row } => {
                write!(f, "{in_a_row} orders rejected by the broker in a row")
            }
            Cause::RestartBudget {
                restarts,
                window_s,
                last,
            } => write!(
                f,
                "restart budget exhausted: {restarts} actor restarts within {window_s} s (last: {last})"
            ),
            Cause::DailyLoss { day_pnl, limit } => {
                write!(
                    f,
                    "daily loss limit hit: day P&L {day_pnl} against a limit of {limit}"
                )
            }
            Cause::Mismatch { detail } => write!(f, "reconciliation mismatch: {detail}"),
        }
    }
}

/// Sent to the Supervisor once per crossing.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct ThresholdCrossed(pub Cause);

/// A change the operator may want to see: a crossing, a re-arm, a stream going up or down.
#[derive(Message, Debug, Clone, serde::Serialize)]
#[rtype(result = "()")]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum HealthChanged {
    Crossed {
        cause: String,
    },
    Rearmed,
    Stream {
        stream: String,
        state: ConnectionState,
    },
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct AddHealthListener(pub Recipient<HealthChanged>);

/// Clears the latch and the windows (the system is trading again).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Rearm;

/// Also poll this stream's status (data silence is read from its metrics).
#[derive(Message)]
#[rtype(result = "()")]
pub struct WatchStream(pub StreamKind, pub Recipient<GetStreamStatus>);

#[derive(Message)]
#[rtype(result = "HealthStatus")]
pub struct GetHealth;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SourceCounts {
    pub ok: u64,
    pub errors: u64,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StreamHealth {
    pub state: Option<ConnectionState>,
    /// How long it has been down or silent (0 when healthy).
    pub unhealthy_for_ms: u64,
    pub stale_events: u64,
    /// Down, but its data comes another way (REST bars for market data): not counted as down.
    pub covered: bool,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PingStats {
    pub sent: u64,
    pub failed: u64,
    pub last_ms: Option<u64>,
    pub p50_ms: Option<u64>,
    pub max_ms: Option<u64>,
}

/// The monitor's view, for `traderd ctl health`, the soak and the tests.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct HealthStatus {
    pub market_open: Option<bool>,
    pub sources: BTreeMap<&'static str, SourceCounts>,
    pub rest_errors_in_window: u32,
    pub order_rejects_in_a_row: u32,
    pub restarts_in_window: u32,
    /// The thresholds those counts cross: `rest_errors_in_window`, `order_rejects_in_a_row`,
    /// `restarts_in_window`.
    pub thresholds: BTreeMap<&'static str, u32>,
    pub streams: BTreeMap<String, StreamHealth>,
    pub ping: PingStats,
    /// The crossing in force (latched), if any.
    pub tripped: Option<String>,
    pub crossings: u64,
    /// Things an operator should know that are not errors (a feed fallback), newest last.
    pub notes: Vec<String>,
}
