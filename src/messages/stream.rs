//! Commands to a stream client.

use actix::prelude::*;

/// Leaves `Failed` (after an operator fixed the keys, say) or forces a reconnect.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RestartStream;

/// Closes the connection for good (shutdown): the actor stays, idle, and is not restarted.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopStream;
