//! Messages of the mode topic.

use crate::domain::TradingMode;
use actix::prelude::*;
use chrono::{DateTime, Utc};

/// A mode transition, as published.
#[derive(Message, Debug, Clone, PartialEq, serde::Serialize)]
#[rtype(result = "()")]
pub struct ModeChanged {
    pub from: TradingMode,
    pub to: TradingMode,
    pub cause: String,
    pub at: DateTime<Utc>,
}

/// An operator's command (from the control socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorCommand {
    /// active → reduce_only.
    Pause,
    /// reduce_only, preserved or halted → active.
    Resume,
    /// → preserving: close everything now.
    Flatten,
    /// → halted: send nothing at all.
    Halt,
}

/// Answers the mode after the command, or why it was not carried out.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<TradingMode, String>")]
pub struct Operator(pub OperatorCommand);

#[derive(Message)]
#[rtype(result = "SupervisorStatus")]
pub struct GetSupervisorStatus;

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SupervisorStatus {
    pub mode: TradingMode,
    pub since: DateTime<Utc>,
    pub cause: String,
    pub transitions: u64,
    pub crossings: u64,
    pub flatten_attempts: u64,
    /// Milliseconds from entering `preserving` to the broker showing flat, per preservation.
    pub times_to_flat_ms: Vec<u64>,
    /// The latest transitions of this process, oldest first (at most 50).
    pub history: Vec<ModeChanged>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct AddModeListener(pub Recipient<ModeChanged>);

/// Holds the Supervisor's mailbox for this long (it answers nothing meanwhile) while the thread
/// runs on: a wedged actor, on purpose, to prove the systemd watchdog (`traderd ctl
/// debug-wedge`, only with `TRADERD_DEBUG_COMMANDS=1`).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Wedge(pub std::time::Duration);
