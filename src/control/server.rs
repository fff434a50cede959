//! The `ControlServer` actor: the socket, its connections and peer checks, the listeners it
//! forwards events from, and `reload` from inside the process.

use super::*;

/// What the server talks to: one recipient per message it sends, never an actor's type, so
/// the control socket depends on the messages (`messages/`) and not on the actors.
#[derive(Clone)]
pub struct Handles {
    /// The supervisor: operator commands, its status, mode changes.
    pub operator: Recipient<Operator>,
    pub supervisor_status: Recipient<GetSupervisorStatus>,
    pub mode_listeners: Recipient<AddModeListener>,
    /// The order side: its counters and positions, its events.
    pub order_stats: Recipient<GetOrderStats>,
    pub order_events: Recipient<AddOrderEventListener>,
    pub account: Recipient<GetAccount>,
    /// The health monitor: its windows, its crossings.
    pub health: Recipient<GetHealth>,
    pub health_listeners: Recipient<AddHealthListener>,
    /// The market-data stream: its subscriptions and status; the trade_updates stream's status.
    pub subscriptions: Recipient<ChangeSubscriptions>,
    pub market_stream: Recipient<GetStreamStatus>,
    pub trade_stream: Recipient<GetStreamStatus>,
    pub risk_limits: Recipient<SetLimits>,
    /// The feed: symbols added (warmed up) and removed, its counters.
    pub add_symbols: Recipient<AddSymbols>,
    pub remove_symbols: Recipient<RemoveSymbols>,
    pub feed_stats: Recipient<GetFeedStats>,
    /// The journal's write latency (`ctl stats`: next to tick-to-order, which includes a write).
    pub journal_stats: Recipient<crate::journal::GetJournalStats>,
    /// Wedges the supervisor on purpose (`debug-wedge`), when `debug_commands` allows it.
    pub wedge: Recipient<crate::messages::mode::Wedge>,
    pub debug_commands: bool,
    /// Each strategy: its figures, and pausing it alone.
    pub strategies: Vec<StrategyHandle>,
    /// Asks the process to run its shutdown sequence.
    pub shutdown: tokio::sync::watch::Sender<bool>,
    /// The config the daemon runs (symbols and risk limits change with subscribe, reload).
    pub config: crate::config::Config,
    /// The file it came from, for `reload`; `None` when started on the built-in defaults.
    pub config_path: Option<PathBuf>,
    pub check: crate::config::CheckContext,
}

/// One strategy, as the control socket reaches it.
#[derive(Clone)]
pub struct StrategyHandle {
    /// Its name (as `ctl pause --strategy` gives it).
    pub name: String,
    pub stats: Recipient<crate::messages::strategy::GetStrategyStats>,
    pub pause: Recipient<crate::messages::strategy::PauseStrategy>,
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
    pub(super) handles: Handles,
    pub(super) settings: ControlSettings,
    pub(super) listener: Option<UnixListener>,
    pub(super) own_uid: u32,
    pub(super) subscribers: Vec<mpsc::Sender<String>>,
    /// The config in force. Its one owner: a change holds the lock from reading it to writing
    /// what it applied, so concurrent changes run one after the other and none is lost.
    pub(super) running: Arc<tokio::sync::Mutex<crate::config::Config>>,
}

/// The control socket, bound (with its mode and group) before anything else starts, so a
/// daemon that cannot serve its operators fails before it trades; [`ControlServer::new`]
/// serves it.
pub struct ControlSocket {
    settings: ControlSettings,
    listener: UnixListener,
    own_uid: u32,
}

impl ControlSocket {
    /// Binds the socket (removing a stale one nobody answers on) with its mode and group.
    pub fn bind(settings: ControlSettings) -> Result<Self, ControlError> {
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
        Ok(ControlSocket {
            settings,
            listener,
            own_uid,
        })
    }
}

impl ControlServer {
    /// Serves `socket` on what everything else exposes.
    pub fn new(socket: ControlSocket, handles: Handles) -> Self {
        ControlServer {
            settings: socket.settings,
            listener: Some(socket.listener),
            own_uid: socket.own_uid,
            subscribers: Vec::new(),
            running: Arc::new(tokio::sync::Mutex::new(handles.config.clone())),
            handles,
        }
    }

    pub(super) fn allowed(&self, uid: u32) -> bool {
        uid == 0 || uid == self.own_uid || self.settings.allowed_uids.contains(&uid)
    }
}

impl Actor for ControlServer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.handles
            .mode_listeners
            .do_send(AddModeListener(ctx.address().recipient()));
        self.handles
            .order_events
            .do_send(AddOrderEventListener(ctx.address().recipient()));
        self.handles
            .health_listeners
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
pub(super) struct Incoming {
    pub(super) uid: Option<u32>,
    pub(super) request: Request,
    /// For `events`: where the event lines go.
    pub(super) events: mpsc::Sender<String>,
}

/// Past [`MAX_CONNECTIONS`]: one error line, then the connection is closed.
pub(super) async fn refuse_busy(mut stream: UnixStream) {
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

pub(super) async fn serve(stream: UnixStream, server: Addr<ControlServer>) {
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

pub(super) fn to_value(v: impl Serialize) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
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
            "from": msg.from.name(),
            "to": msg.to.name(),
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
