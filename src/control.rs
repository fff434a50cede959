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

use crate::actors::account::{AccountManager, GetAccount};
use crate::actors::health::{AddHealthListener, ConnectionHealthMonitor, GetHealth, HealthChanged};
use crate::actors::market_data::{AddSymbols, GetFeedStats, RemoveSymbols};
use crate::actors::order_manager::{
    AddOrderEventListener, GetOrderStats, OrderEvent, OrderManager,
};
use crate::actors::risk_manager::SetLimits;
use crate::actors::supervisor::{
    AddModeListener, GetSupervisorStatus, ModeChanged, Operator, OperatorCommand, Supervisor,
    mode_name,
};
use crate::alpaca::stream::ChannelLists;
use crate::messages::{ChangeSubscriptions, GetStreamStatus};
use crate::stream_client::StreamClient;
use actix::prelude::*;
use serde::{Deserialize, Serialize};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

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
    fn ok(id: RequestId, result: serde_json::Value) -> Self {
        Response {
            v: PROTOCOL_VERSION,
            id,
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    fn err(id: RequestId, code: &str, message: impl Into<String>) -> Self {
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
        "active → reduce_only: only orders that shrink a position",
    ),
    ("resume", "reduce_only, preserved or halted → active"),
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
];

/// What the server talks to.
#[derive(Clone)]
pub struct Handles {
    pub supervisor: Addr<Supervisor>,
    pub orders: Addr<OrderManager>,
    pub account: Addr<AccountManager>,
    pub health: Addr<ConnectionHealthMonitor>,
    pub market_stream: Addr<StreamClient>,
    pub trade_stream: Addr<StreamClient>,
    pub risk: Addr<crate::actors::risk_manager::RiskManager>,
    pub feed: Addr<crate::actors::market_data::MarketDataFeed>,
    /// Asks the process to run its shutdown sequence.
    pub shutdown: tokio::sync::watch::Sender<bool>,
    /// The config the daemon runs (symbols and risk limits change with subscribe, reload).
    pub config: crate::config::Config,
    /// The file it came from, for `reload`; `None` when started on the built-in defaults.
    pub config_path: Option<PathBuf>,
    pub check: crate::config::CheckContext,
}

#[derive(Debug, Clone, Default)]
pub struct ControlSettings {
    pub path: PathBuf,
    /// Group allowed to connect (socket mode 0660); `None`: mode 0600.
    pub group: Option<u32>,
    /// Users allowed besides the daemon's own and root.
    pub allowed_uids: Vec<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("another traderd is already serving {0}")]
    InUse(String),
    #[error("cannot create the control socket {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

pub struct ControlServer {
    handles: Handles,
    settings: ControlSettings,
    listener: Option<UnixListener>,
    own_uid: u32,
    subscribers: Vec<mpsc::Sender<String>>,
    /// The config in force. Its one owner: a change holds the lock from reading it to writing
    /// what it applied, so concurrent changes run one after the other and none is lost.
    running: Arc<tokio::sync::Mutex<crate::config::Config>>,
}

impl ControlServer {
    /// Binds the socket (removing a stale one nobody answers on) with its mode and group.
    pub fn bind(settings: ControlSettings, handles: Handles) -> Result<Self, ControlError> {
        let path = &settings.path;
        let io = |source| ControlError::Io {
            path: path.display().to_string(),
            source,
        };
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ControlError::InUse(path.display().to_string()));
            }
            std::fs::remove_file(path).map_err(io)?;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let listener = UnixListener::bind(path).map_err(io)?;
        let mode = if settings.group.is_some() {
            0o660
        } else {
            0o600
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io)?;
        if let Some(gid) = settings.group {
            std::os::unix::fs::chown(path, None, Some(gid)).map_err(io)?;
        }
        let own_uid = std::fs::metadata(path).map(|m| m.uid()).map_err(io)?;
        tracing::info!(socket = %path.display(), mode = format!("{mode:o}"), "control socket ready");
        Ok(ControlServer {
            settings,
            listener: Some(listener),
            own_uid,
            subscribers: Vec::new(),
            running: Arc::new(tokio::sync::Mutex::new(handles.config.clone())),
            handles,
        })
    }

    fn allowed(&self, uid: u32) -> bool {
        uid == 0 || uid == self.own_uid || self.settings.allowed_uids.contains(&uid)
    }
}

impl Actor for ControlServer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.handles
            .supervisor
            .do_send(AddModeListener(ctx.address().recipient()));
        self.handles
            .orders
            .do_send(AddOrderEventListener(ctx.address().recipient()));
        self.handles
            .health
            .do_send(AddHealthListener(ctx.address().recipient()));
        let Some(listener) = self.listener.take() else {
            return;
        };
        let me = ctx.address();
        actix::spawn(async move {
            let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
            // Accept failures (out of file descriptors) are logged once a minute, not per try.
            let mut failures = 0u64;
            let mut warned_at: Option<std::time::Instant> = None;
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => match slots.clone().try_acquire_owned() {
                        Ok(slot) => {
                            let me = me.clone();
                            actix::spawn(async move {
                                serve(stream, me).await;
                                drop(slot);
                            });
                        }
                        Err(_) => {
                            actix::spawn(refuse_busy(stream));
                        }
                    },
                    Err(e) => {
                        failures += 1;
                        if warned_at.is_none_or(|t| t.elapsed().as_secs() >= 60) {
                            tracing::warn!(error = %e, failures, "control socket: accept failed; retrying (raise LimitNOFILE if this is EMFILE)");
                            warned_at = Some(std::time::Instant::now());
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
                if !me.connected() {
                    break;
                }
            }
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        let _ = std::fs::remove_file(&self.settings.path);
    }
}

/// A request from a connection whose peer is `uid`.
#[derive(Message)]
#[rtype(result = "Response")]
struct Incoming {
    uid: Option<u32>,
    request: Request,
    /// For `events`: where the event lines go.
    events: mpsc::Sender<String>,
}

/// Past [`MAX_CONNECTIONS`]: one error line, then the connection is closed.
async fn refuse_busy(mut stream: UnixStream) {
    let mut line = serde_json::to_string(&Response::err(
        RequestId::null(),
        "busy",
        format!("{MAX_CONNECTIONS} control connections are open already; try again"),
    ))
    .unwrap_or_default();
    line.push('\n');
    let write = stream.write_all(line.as_bytes());
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), write).await;
}

async fn serve(stream: UnixStream, server: Addr<ControlServer>) {
    let uid = stream.peer_cred().ok().map(|c| c.uid());
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    // Once the connection follows events: where they come from. The server holds the only
    // sender; when it drops a follower that fell behind, the channel closes and so does the
    // connection.
    let mut following: Option<mpsc::Receiver<String>> = None;
    let mut line = Vec::new();
    loop {
        // read_until keeps what it read when the event branch wins: the line goes on.
        let budget = (MAX_REQUEST + 1).saturating_sub(line.len()) as u64;
        let mut limited = (&mut reader).take(budget);
        let read = tokio::select! {
            r = limited.read_until(b'\n', &mut line) => r,
            event = async { following.as_mut()?.recv().await }, if following.is_some() => {
                let Some(event) = event else { return };
                if write.write_all(event.as_bytes()).await.is_err() {
                    return;
                }
                continue;
            }
        };
        match read {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let (response, close) = if line.len() > MAX_REQUEST {
            (
                Response::err(
                    RequestId::null(),
                    "too_large",
                    format!("a request is one line of at most {MAX_REQUEST} bytes"),
                ),
                true,
            )
        } else {
            match serde_json::from_slice::<Request>(&line) {
                Err(e) => (
                    Response::err(
                        RequestId::null(),
                        "bad_request",
                        format!(
                            "not a request ({e}); send {{\"v\":1,\"id\":1,\"cmd\":\"status\"}}"
                        ),
                    ),
                    true,
                ),
                Ok(request) => {
                    let (events, rx) = mpsc::channel::<String>(EVENTS_BUFFER);
                    let follows = request.cmd == "events";
                    match server
                        .send(Incoming {
                            uid,
                            request,
                            events,
                        })
                        .await
                    {
                        Ok(r) => {
                            if follows && r.ok {
                                following = Some(rx);
                            }
                            (r, false)
                        }
                        Err(_) => return,
                    }
                }
            }
        };
        line.clear();
        let mut out = serde_json::to_string(&response).unwrap_or_default();
        out.push('\n');
        if write.write_all(out.as_bytes()).await.is_err() || close {
            return;
        }
    }
}

fn to_value(v: impl Serialize) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

impl Handler<Incoming> for ControlServer {
    type Result = ResponseFuture<Response>;

    fn handle(&mut self, msg: Incoming, ctx: &mut Context<Self>) -> Self::Result {
        let id = msg.request.id.clone();
        let reply = |r: Response| -> Self::Result { Box::pin(async move { r }) };
        if msg.request.v != PROTOCOL_VERSION {
            return reply(Response::err(
                id,
                "unsupported_version",
                format!(
                    "protocol version {} is not spoken here; this daemon speaks {PROTOCOL_VERSION}",
                    msg.request.v
                ),
            ));
        }
        match msg.uid {
            Some(uid) if self.allowed(uid) => {}
            other => {
                tracing::warn!(uid = ?other, cmd = %msg.request.cmd, "control socket: refused a peer");
                return reply(Response::err(
                    id,
                    "forbidden",
                    "this user may not control the daemon",
                ));
            }
        }
        let cmd = msg.request.cmd.as_str();
        if !COMMANDS.iter().any(|(c, _)| *c == cmd) {
            let known: Vec<&str> = COMMANDS.iter().map(|(c, _)| *c).collect();
            return reply(Response::err(
                id,
                "unknown_command",
                format!("unknown command {cmd:?}; known: {}", known.join(", ")),
            ));
        }
        tracing::info!(cmd, uid = ?msg.uid, "control command");
        let h = self.handles.clone();
        let operator = |c: OperatorCommand| {
            let supervisor = h.supervisor.clone();
            let id = id.clone();
            Box::pin(async move {
                match supervisor.send(Operator(c)).await {
                    Ok(Ok(mode)) => {
                        Response::ok(id, serde_json::json!({ "mode": mode_name(mode) }))
                    }
                    Ok(Err(why)) => Response::err(id, "refused", why),
                    Err(e) => Response::err(id, "unavailable", e.to_string()),
                }
            }) as Self::Result
        };
        match cmd {
            "pause" => operator(OperatorCommand::Pause),
            "resume" => operator(OperatorCommand::Resume),
            "flatten" => operator(OperatorCommand::Flatten),
            "halt" => operator(OperatorCommand::Halt),
            "events" => {
                self.subscribers.push(msg.events);
                reply(Response::ok(
                    id,
                    serde_json::json!({ "following": ["mode", "order", "fill", "health"] }),
                ))
            }
            "shutdown" => {
                let _ = h.shutdown.send(true);
                reply(Response::ok(id, serde_json::json!({ "stopping": true })))
            }
            "health" => Box::pin(async move {
                match h.health.send(GetHealth).await {
                    Ok(s) => Response::ok(id, to_value(s)),
                    Err(e) => Response::err(id, "unavailable", e.to_string()),
                }
            }),
            "stats" => Box::pin(async move { stats(&h, id).await }),
            "positions" | "orders" => {
                let positions = cmd == "positions";
                Box::pin(async move {
                    match h.orders.send(GetOrderStats).await {
                        Ok(s) if positions => Response::ok(id, to_value(&s.positions)),
                        Ok(s) => Response::ok(id, to_value(s)),
                        Err(e) => Response::err(id, "unavailable", e.to_string()),
                    }
                })
            }
            "subscribe" | "unsubscribe" | "reload" => {
                let change = match cmd {
                    "reload" => Change::Reload,
                    "subscribe" => Change::Subscribe(msg.request.args.clone()),
                    _ => Change::Unsubscribe(msg.request.args.clone()),
                };
                let (tx, rx) = tokio::sync::oneshot::channel();
                let answer_id = id.clone();
                ctx.spawn(self.change(change).map(move |r, _, _| {
                    let _ = tx.send(match r {
                        Ok(v) => Response::ok(answer_id, v),
                        Err((code, why)) => Response::err(answer_id, code, why),
                    });
                }));
                Box::pin(async move {
                    rx.await
                        .unwrap_or_else(|_| Response::err(id, "unavailable", "no answer"))
                })
            }
            _ => Box::pin(async move { status(&h, id).await }),
        }
    }
}

/// A change of what the daemon trades.
enum Change {
    Subscribe(Vec<String>),
    Unsubscribe(Vec<String>),
    Reload,
}

type ChangeResult = Result<serde_json::Value, (&'static str, String)>;

impl ControlServer {
    /// Subscribes, unsubscribes or reloads; the running config is updated with what was applied.
    fn change(&mut self, change: Change) -> ResponseActFuture<Self, ChangeResult> {
        let h = self.handles.clone();
        let running = self.running.clone();
        let work = async move {
            // Held until what was applied is written back: the next change reads it.
            let mut in_force = running.lock().await;
            let current = in_force.clone();
            let (target_symbols, new_config) = match change {
                Change::Subscribe(add) | Change::Unsubscribe(add) if add.is_empty() => {
                    return Err(("bad_request", "name at least one symbol".to_string()));
                }
                Change::Subscribe(add) => {
                    let mut s = current.trading.symbols.clone();
                    s.extend(
                        add.into_iter()
                            .filter(|x| !current.trading.symbols.contains(x)),
                    );
                    (s, None)
                }
                Change::Unsubscribe(remove) => {
                    let s = current
                        .trading
                        .symbols
                        .iter()
                        .filter(|x| !remove.contains(x))
                        .cloned()
                        .collect();
                    (s, None)
                }
                Change::Reload => {
                    let Some(path) = &h.config_path else {
                        return Err((
                            "refused",
                            "started on the built-in defaults: there is no file to reload".into(),
                        ));
                    };
                    let new = crate::config::Config::load(path, &h.check)
                        .map_err(|e| ("refused", format!("the config was not reloaded: {e}")))?;
                    (new.trading.symbols.clone(), Some(new))
                }
            };
            let mut problems = Vec::new();
            crate::config::check_symbols("symbols", &target_symbols, &mut |_, why| {
                problems.push(why)
            });
            if !problems.is_empty() {
                return Err(("bad_request", problems.join("; ")));
            }
            let added: Vec<String> = target_symbols
                .iter()
                .filter(|s| !current.trading.symbols.contains(s))
                .cloned()
                .collect();
            let removed: Vec<String> = current
                .trading
                .symbols
                .iter()
                .filter(|s| !target_symbols.contains(s))
                .cloned()
                .collect();
            // A symbol with a position stays: its exits need its bars.
            if !removed.is_empty() {
                let stats = h
                    .orders
                    .send(GetOrderStats)
                    .await
                    .map_err(|e| ("unavailable", e.to_string()))?;
                let held: Vec<String> = removed
                    .iter()
                    .filter_map(|s| stats.positions.get(s).map(|q| format!("{s} holds {q}")))
                    .collect();
                if !held.is_empty() {
                    return Err((
                        "refused",
                        format!(
                            "{}: close those positions first (or flatten); nothing was changed",
                            held.join(", ")
                        ),
                    ));
                }
            }
            let mut report = serde_json::Map::new();
            if let Some(new) = &new_config {
                if new.risk != current.risk {
                    h.risk.do_send(SetLimits(new.risk.limits()));
                    report.insert("risk_limits".into(), "applied".into());
                } else {
                    report.insert("risk_limits".into(), "unchanged".into());
                }
                // Every section but the two applied here, compared as the config serializes.
                let sections = |c: &crate::config::Config| match serde_json::to_value(c) {
                    Ok(serde_json::Value::Object(m)) => m,
                    _ => serde_json::Map::new(),
                };
                let before = sections(&current);
                let restart: Vec<String> = sections(new)
                    .into_iter()
                    .filter(|(name, v)| {
                        !["risk", "trading"].contains(&name.as_str()) && before.get(name) != Some(v)
                    })
                    .map(|(name, _)| name)
                    .collect();
                report.insert("needs_restart".into(), to_value(restart));
            }
            let mut warm_bars = 0;
            if !added.is_empty() {
                warm_bars = h
                    .feed
                    .send(AddSymbols(added.clone()))
                    .await
                    .map_err(|e| ("unavailable", e.to_string()))?
                    .map_err(|e| {
                        (
                            "unavailable",
                            format!("warm-up failed, not subscribed: {e}"),
                        )
                    })?;
            }
            if !added.is_empty() || !removed.is_empty() {
                let lists = |s: &Vec<String>| ChannelLists {
                    trades: s.clone(),
                    quotes: s.clone(),
                    statuses: s.clone(),
                    ..Default::default()
                };
                h.market_stream.do_send(ChangeSubscriptions {
                    add: lists(&added),
                    remove: lists(&removed),
                });
            }
            if !removed.is_empty() {
                h.feed.do_send(RemoveSymbols(removed.clone()));
            }
            report.insert("added".into(), to_value(&added));
            report.insert("removed".into(), to_value(&removed));
            report.insert("warm_bars".into(), warm_bars.into());
            report.insert("symbols".into(), to_value(&target_symbols));
            // Only what was applied: risk limits and symbols; the rest waits for a restart.
            let mut running = current;
            running.trading.symbols = target_symbols;
            if let Some(new) = new_config {
                running.risk = new.risk;
            }
            *in_force = running;
            Ok(serde_json::Value::Object(report))
        };
        Box::pin(work.into_actor(self).map(|r, _, _| {
            let report = r?;
            tracing::warn!(report = %report, "trading changed by an operator");
            Ok(report)
        }))
    }
}

/// The market-data path's counters and the tick-to-order latency, for `ctl stats` and the load
/// bench.
async fn stats(h: &Handles, id: RequestId) -> Response {
    let (market, feed, orders) = tokio::join!(
        h.market_stream.send(GetStreamStatus),
        h.feed.send(GetFeedStats),
        h.orders.send(GetOrderStats),
    );
    let (Ok(market), Ok(feed), Ok(orders)) = (market, feed, orders) else {
        return Response::err(id, "unavailable", "an actor did not answer");
    };
    Response::ok(
        id,
        serde_json::json!({
            "stream": market.metrics,
            "feed": feed,
            "orders": { "submitted": orders.submitted, "accepted": orders.accepted, "fills": orders.fills },
            "tick_to_order": orders.tick_to_order,
            "tick_to_intent": orders.tick_to_intent,
        }),
    )
}

async fn status(h: &Handles, id: RequestId) -> Response {
    let (sup, orders, account, market, trade, feed, health) = tokio::join!(
        h.supervisor.send(GetSupervisorStatus),
        h.orders.send(GetOrderStats),
        h.account.send(GetAccount),
        h.market_stream.send(GetStreamStatus),
        h.trade_stream.send(GetStreamStatus),
        h.feed.send(GetFeedStats),
        h.health.send(GetHealth),
    );
    let (Ok(sup), Ok(orders), Ok(account), Ok(market), Ok(trade), Ok(feed), Ok(health)) =
        (sup, orders, account, market, trade, feed, health)
    else {
        return Response::err(id, "unavailable", "an actor did not answer");
    };
    let account = account.unwrap_or_default();
    Response::ok(
        id,
        serde_json::json!({
            "mode": mode_name(sup.mode),
            "mode_since": sup.since,
            "mode_cause": sup.cause,
            "stream": {
                "state": market.state,
                "feed": market.feed,
                "degraded": feed.degraded,
                "rest_minutes": feed.rest_minutes,
                "reconnects": market.metrics.reconnects,
                "messages": market.metrics.messages_received,
                "last_message_at": market.metrics.last_message_at,
            },
            "trade_stream": { "state": trade.state, "reconnects": trade.metrics.reconnects },
            "positions": orders.positions,
            "open_orders": orders.open_orders,
            "orders_sent": orders.submitted,
            "fills": orders.fills,
            "equity": account.equity,
            "cash": account.cash,
            "day_pnl": account.day_pnl,
            "market_open": account.market_open,
            "crossings": sup.crossings,
            "notes": health.notes,
        }),
    )
}

impl ControlServer {
    fn broadcast(&mut self, event: serde_json::Value) {
        if self.subscribers.is_empty() {
            return;
        }
        let mut line = serde_json::json!({ "v": PROTOCOL_VERSION, "event": event }).to_string();
        line.push('\n');
        // A follower whose buffer is full is dropped (its connection closes): a slow reader
        // costs it its events, never the daemon its memory.
        self.subscribers.retain(|s| match s.try_send(line.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(
                    buffered = EVENTS_BUFFER,
                    "control socket: an events follower fell behind; dropped"
                );
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }
}

impl Handler<ModeChanged> for ControlServer {
    type Result = ();
    fn handle(&mut self, msg: ModeChanged, _: &mut Context<Self>) {
        self.broadcast(serde_json::json!({
            "kind": "mode_changed",
            "from": mode_name(msg.from),
            "to": mode_name(msg.to),
            "cause": msg.cause,
            "at": msg.at,
        }));
    }
}

impl Handler<OrderEvent> for ControlServer {
    type Result = ();
    fn handle(&mut self, msg: OrderEvent, _: &mut Context<Self>) {
        self.broadcast(to_value(msg));
    }
}

impl Handler<HealthChanged> for ControlServer {
    type Result = ();
    fn handle(&mut self, msg: HealthChanged, _: &mut Context<Self>) {
        let mut v = to_value(msg);
        if let Some(o) = v.as_object_mut() {
            o.insert("kind".into(), "health".into());
        }
        self.broadcast(v);
    }
}

/// The client side: one request, one answer.
pub async fn call(path: &Path, cmd: &str, args: &[String]) -> Result<Response, String> {
    call_within(path, cmd, args, CLIENT_TIMEOUT).await
}

/// [`call`], waiting at most `timeout` for the connection and then for the answer.
pub async fn call_within(
    path: &Path,
    cmd: &str,
    args: &[String],
    timeout: std::time::Duration,
) -> Result<Response, String> {
    let stream = connect(path, timeout).await?;
    let (read, mut write) = stream.into_split();
    let request = Request {
        v: PROTOCOL_VERSION,
        id: RequestId::number(1),
        cmd: cmd.into(),
        args: args.to_vec(),
    };
    let mut out = serde_json::to_string(&request).map_err(|e| e.to_string())?;
    out.push('\n');
    let exchange = async {
        // A daemon at its connection cap answers `busy` and closes without reading: the
        // write may fail while that answer waits to be read.
        let written = write.write_all(out.as_bytes()).await;
        match (read_reply(&mut BufReader::new(read)).await, written) {
            (Ok(Some(line)), _) => Ok(Some(line)),
            (_, Err(e)) => Err(e.to_string()),
            (other, Ok(())) => other,
        }
    };
    let line = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| {
            format!(
                "the daemon at {} did not answer within {:.1} s: it may be overloaded or stuck (see its log)",
                path.display(),
                timeout.as_secs_f64()
            )
        })??
        .ok_or("the daemon closed the connection without answering")?;
    serde_json::from_slice(&line).map_err(|_| {
        format!(
            "{} answered something that is not traderd's protocol: is it traderd's socket?",
            path.display()
        )
    })
}

/// Connects within `timeout`.
async fn connect(path: &Path, timeout: std::time::Duration) -> Result<UnixStream, String> {
    match tokio::time::timeout(timeout, UnixStream::connect(path)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(format!(
            "cannot reach the daemon at {} ({e}): is `traderd run` running, and is this its socket? (--socket PATH)",
            path.display()
        )),
        Err(_) => Err(format!(
            "the daemon at {} did not take the connection within {:.1} s",
            path.display(),
            timeout.as_secs_f64()
        )),
    }
}

/// One answer line of at most [`MAX_REPLY`] bytes; `None` at the end of the stream.
async fn read_reply<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
) -> Result<Option<Vec<u8>>, String> {
    let mut line = Vec::new();
    let n = reader
        .take(MAX_REPLY as u64 + 1)
        .read_until(b'\n', &mut line)
        .await
        .map_err(|e| e.to_string())?;
    if n == 0 {
        return Ok(None);
    }
    if line.len() > MAX_REPLY {
        return Err(format!(
            "the daemon's answer is longer than {MAX_REPLY} bytes: not read"
        ));
    }
    Ok(Some(line))
}

/// Follows events: calls `each` with `{"kind":"following"}` once subscribed, then with every
/// event until the daemon closes.
pub async fn follow(path: &Path, mut each: impl FnMut(serde_json::Value)) -> Result<(), String> {
    let stream = connect(path, CLIENT_TIMEOUT).await?;
    let (read, mut write) = stream.into_split();
    write
        .write_all(b"{\"v\":1,\"id\":1,\"cmd\":\"events\"}\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(read);
    while let Some(line) = read_reply(&mut reader).await? {
        let v: serde_json::Value = serde_json::from_slice(&line).map_err(|e| e.to_string())?;
        if v.get("ok") == Some(&serde_json::Value::Bool(false)) {
            return Err(v["error"]["message"].as_str().unwrap_or("refused").into());
        }
        if let Some(event) = v.get("event") {
            each(event.clone());
        } else if v.get("ok") == Some(&serde_json::Value::Bool(true)) {
            each(serde_json::json!({ "kind": "following" }));
        }
    }
    Ok(())
}

/// The human-readable form of a command's answer.
pub fn render(cmd: &str, result: &serde_json::Value) -> String {
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    };
    match cmd {
        "status" => {
            let mut out = format!(
                "mode          {}  (since {}: {})\nmarket data   {}{}  (feed {}, {} reconnects, last message {})\ntrade updates {}  ({} reconnects)\nequity        {}  (day P&L {}, cash {})\nopen orders   {}\norders sent   {}  fills {}\n",
                s(&result["mode"]),
                s(&result["mode_since"]),
                s(&result["mode_cause"]),
                s(&result["stream"]["state"]),
                if result["stream"]["degraded"] == true {
                    ", degraded: bars by REST"
                } else {
                    ""
                },
                s(&result["stream"]["feed"]),
                s(&result["stream"]["reconnects"]),
                s(&result["stream"]["last_message_at"]),
                s(&result["trade_stream"]["state"]),
                s(&result["trade_stream"]["reconnects"]),
                s(&result["equity"]),
                s(&result["day_pnl"]),
                s(&result["cash"]),
                s(&result["open_orders"]),
                s(&result["orders_sent"]),
                s(&result["fills"]),
            );
            out.push_str(&render_positions(&result["positions"]));
            for note in result["notes"].as_array().into_iter().flatten() {
                out.push_str(&format!("note          {}\n", s(note)));
            }
            out
        }
        "positions" => render_positions(result),
        _ => match result {
            serde_json::Value::Object(map) => map
                .iter()
                .map(|(k, v)| format!("{k:<24}{}\n", s(v)))
                .collect(),
            other => format!("{}\n", s(other)),
        },
    }
}

fn render_positions(p: &serde_json::Value) -> String {
    match p.as_object() {
        Some(map) if !map.is_empty() => {
            let mut out = String::from("positions\n");
            for (sym, qty) in map {
                out.push_str(&format!(
                    "  {sym:<8}{:>12}\n",
                    qty.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| qty.to_string())
                ));
            }
            out
        }
        _ => "positions     none\n".into(),
    }
}

/// One event as a line for people.
pub fn render_event(e: &serde_json::Value) -> String {
    let s = |k: &str| match &e[k] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    match e["kind"].as_str() {
        Some("mode_changed") => format!(
            "{}  mode   {} -> {}  ({})",
            s("at"),
            s("from"),
            s("to"),
            s("cause")
        ),
        Some("fill") => format!(
            "{}  fill   {} {} {} @ {}  {}",
            s("at"),
            s("symbol"),
            s("side"),
            s("qty"),
            s("price"),
            s("client_order_id")
        ),
        Some("order") => format!(
            "{}  order  {} {} filled {}",
            s("at"),
            s("client_order_id"),
            s("status"),
            s("filled_qty")
        ),
        Some("health") => match e["change"].as_str() {
            Some("crossed") => format!("health crossed: {}", s("cause")),
            Some("rearmed") => "health re-armed".to_string(),
            _ => format!("health {} stream {}", s("stream"), s("state")),
        },
        _ => e.to_string(),
    }
}

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

/// Where `reload` reads the config from, and how it is checked (`traderd run` sets it).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ConfigSource {
    pub path: PathBuf,
    pub check: crate::config::CheckContext,
}

impl Handler<ConfigSource> for ControlServer {
    type Result = ();
    fn handle(&mut self, msg: ConfigSource, _: &mut Context<Self>) {
        self.handles.config_path = Some(msg.path);
        self.handles.check = msg.check;
    }
}

/// `reload` from inside the process (SIGHUP): answers the report or why not.
#[derive(Message)]
#[rtype(result = "Result<serde_json::Value, String>")]
pub struct Reload;

impl Handler<Reload> for ControlServer {
    type Result = ResponseActFuture<Self, Result<serde_json::Value, String>>;
    fn handle(&mut self, _: Reload, _: &mut Context<Self>) -> Self::Result {
        Box::pin(
            self.change(Change::Reload)
                .map(|r, _, _| r.map_err(|(_, why)| why)),
        )
    }
}
