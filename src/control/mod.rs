//! The control socket: the `ControlServer` actor on a Unix socket, its protocol, and the
//! client side of `traderd ctl`.
//!
//! Protocol (version 1): newline-delimited JSON. A request is one line,
//! `{"v":1,"id":7,"cmd":"status","args":[]}`; the answer is one line with the same id,
//! `{"v":1,"id":7,"ok":true,"result":{…}}` or
//! `{"v":1,"id":7,"ok":false,"error":{"code":"refused","message":"…"}}`. After a successful
//! `events`, the server sends one line per event (`{"v":1,"event":{…}}`) until the client
//! closes. A request longer than [`MAX_REQUEST`] bytes, or one that does not parse, gets an
//! error and the connection is closed; every other connection is served on.
//!
//! The socket is created with mode 0600 (0660 with `control.group`), and every connection's
//! peer credentials are checked: only the daemon's own user, root, and `control.allowed_uids`.

use crate::alpaca::stream::ChannelLists;
use crate::messages::account::GetAccount;
use crate::messages::health::{AddHealthListener, GetHealth, HealthChanged};
use crate::messages::market::{AddSymbols, GetFeedStats, RemoveSymbols};
use crate::messages::mode::{
    AddModeListener, GetSupervisorStatus, ModeChanged, Operator, OperatorCommand,
};
use crate::messages::orders::{AddOrderEventListener, GetOrderStats, OrderEvent};
use crate::messages::risk::SetLimits;
use crate::messages::{ChangeSubscriptions, GetStreamStatus};
use actix::prelude::*;
use serde::{Deserialize, Serialize};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

mod client;
mod commands;
mod protocol;
mod render;
mod server;
pub mod top;

pub use client::{call, call_within, follow};
use commands::*;
pub use protocol::{COMMANDS, ErrorBody, Request, RequestId, Response};
pub use render::{render, render_event};
use server::*;
pub use server::{
    ConfigSource, ControlError, ControlServer, ControlSettings, ControlSocket, Handles, Reload,
    StrategyHandle,
};

pub const PROTOCOL_VERSION: u32 = 1;
/// The longest request line accepted.
pub const MAX_REQUEST: usize = 16 * 1024;

/// Control connections served at once; past it a connection gets a `busy` error line and is
/// closed, so held connections cannot use up the daemon's file descriptors.
pub const MAX_CONNECTIONS: usize = 64;

/// Event lines buffered for one `events` follower; a follower that falls this far behind is
/// dropped (its connection closed) rather than let memory grow.
pub const EVENTS_BUFFER: usize = 1024;

/// The longest answer `ctl` reads (a status with thousands of positions fits many times).
pub const MAX_REPLY: usize = 4 * 1024 * 1024;

/// How long `ctl` waits to connect, and then for the answer.
pub const CLIENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Where the socket is when nothing says otherwise: `$RUNTIME_DIRECTORY/traderd.sock` (systemd),
/// `$XDG_RUNTIME_DIR/traderd.sock`, else `traderd.sock` in the state directory.
pub fn default_socket(env: impl Fn(&str) -> Option<String>, state_dir: &Path) -> PathBuf {
    if let Some(dir) = env("RUNTIME_DIRECTORY").filter(|d| !d.is_empty()) {
        // systemd may list several, separated by colons: the first is ours.
        let first = dir.split(':').next().unwrap_or(&dir).to_string();
        return Path::new(&first).join("traderd.sock");
    }
    if let Some(dir) = env("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return Path::new(&dir).join("traderd.sock");
    }
    state_dir.join("traderd.sock")
}

/// A group given by name (looked up in /etc/group) or number.
pub fn resolve_group(group: &str) -> Result<u32, String> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let groups = std::fs::read_to_string("/etc/group")
        .map_err(|e| format!("cannot read /etc/group to find {group:?}: {e}"))?;
    groups
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let gid = f.nth(1)?.parse::<u32>().ok()?;
            (name == group).then_some(gid)
        })
        .next()
        .ok_or_else(|| format!("no group {group:?} in /etc/group"))
}

#[cfg(test)]
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_kind_renders_as_one_line() {
        let fill = serde_json::json!({"kind": "fill", "at": "T", "symbol": "AAPL", "side": "buy", "qty": "10", "price": "190.1", "client_order_id": "td-1-1-AAPL"});
        assert_eq!(
            render_event(&fill),
            "T  fill   AAPL buy 10 @ 190.1  td-1-1-AAPL"
        );
        let mode = serde_json::json!({"kind": "mode_changed", "at": "T", "from": "active", "to": "preserving", "cause": "20 broker errors"});
        assert_eq!(
            render_event(&mode),
            "T  mode   active -> preserving  (20 broker errors)"
        );
        let crossed = serde_json::json!({"kind": "health", "change": "crossed", "cause": "x"});
        assert_eq!(render_event(&crossed), "health crossed: x");
        let stream = serde_json::json!({"kind": "health", "change": "stream", "stream": "market_data", "state": "reconnecting"});
        assert_eq!(
            render_event(&stream),
            "health market_data stream reconnecting"
        );
        let order = serde_json::json!({"kind": "order", "at": "T", "client_order_id": "c", "status": "filled", "filled_qty": "3"});
        assert!(render_event(&order).contains("c filled filled 3"));
        for e in [&fill, &mode, &crossed, &stream, &order] {
            assert!(!render_event(e).contains('\n'));
        }
    }

    #[test]
    fn a_group_resolves_by_number_or_name() {
        assert_eq!(resolve_group("1234"), Ok(1234));
        assert_eq!(resolve_group("root"), Ok(0));
        assert!(resolve_group("no-such-group-here").is_err());
    }
}
