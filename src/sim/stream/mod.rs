//! The simulator's two WebSockets, on the same port as the REST APIs:
//!
//! - market data at `/v2/iex`, `/v2/sip`, `/v2/delayed_sip` and `/v2/test`: the `connected`
//!   greeting, auth within a timeout, additive subscriptions, batched `t`/`q`/`b`/`d` messages
//!   from the market model, and Alpaca's errors (400–409);
//! - the trading stream at `/stream`: both auth forms, `listen`, and a `trade_updates` event
//!   for every order lifecycle change, as JSON in binary frames like Alpaca's paper server.
//!
//! JSON text frames by default; msgpack binary frames when the handshake says
//! `Content-Type: application/msgpack`. Stream faults (drop, garbage, freeze, reject auth,
//! flood) come from `POST /_sim/faults`.

pub mod session;

use crate::alpaca::stream::trading::Outgoing;
use crate::alpaca::stream::{Codec, DataMessage, TradingAction};
use crate::sim::Sim;
use crate::sim::flood::{Counts, Flood};
use crate::sim::http::authorized;
use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use session::{AuthVerdict, DataSession};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// Most messages in one data frame (keeps frames well under alpaca-py's 1 MiB limit).
const MAX_MESSAGES_PER_FRAME: usize = 400;

/// Shared state of the stream endpoints.
pub struct StreamHub {
    drops: watch::Sender<u64>,
    /// Authenticated connections per (endpoint, key), for Alpaca's one-connection limit.
    connections: Mutex<HashMap<(String, String), usize>>,
    pub auth_timeout: Duration,
    /// Trades plus quotes symbols a data connection may stream; 0 = unlimited.
    pub symbol_limit: usize,
    pub stats: StreamStats,
}

#[derive(Default, Debug)]
pub struct StreamStats {
    pub data_connections: AtomicU64,
    pub trading_connections: AtomicU64,
    pub data_frames: AtomicU64,
    pub data_messages: AtomicU64,
    pub data_trades: AtomicU64,
    pub data_quotes: AtomicU64,
    pub data_bars: AtomicU64,
    /// Flood frames sent, and marked trades among them.
    pub flood_frames: AtomicU64,
    pub flood_marks: AtomicU64,
    pub trade_updates: AtomicU64,
}

impl StreamStats {
    pub fn snapshot(&self) -> serde_json::Value {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "data_connections": g(&self.data_connections),
            "trading_connections": g(&self.trading_connections),
            "data_frames": g(&self.data_frames),
            "data_messages": g(&self.data_messages),
            "data_trades": g(&self.data_trades),
            "data_quotes": g(&self.data_quotes),
            "data_bars": g(&self.data_bars),
            "flood_frames": g(&self.flood_frames),
            "flood_marks": g(&self.flood_marks),
            "trade_updates": g(&self.trade_updates),
        })
    }
}

impl StreamHub {
    pub fn new(auth_timeout: Duration, symbol_limit: usize) -> Self {
        StreamHub {
            drops: watch::channel(0).0,
            connections: Mutex::new(HashMap::new()),
            auth_timeout,
            symbol_limit,
            stats: StreamStats::default(),
        }
    }

    /// Closes every stream connection.
    pub fn drop_all(&self) {
        self.drops.send_modify(|g| *g += 1);
    }

    /// Claims the one connection a key may have to an endpoint.
    fn claim(self: &Arc<Self>, endpoint: &str, key: &str) -> Option<Slot> {
        let mut map = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        let k = (endpoint.to_string(), key.to_string());
        let n = map.entry(k.clone()).or_insert(0);
        if *n > 0 {
            return None;
        }
        *n += 1;
        Some(Slot {
            hub: self.clone(),
            key: k,
        })
    }
}

/// A claimed connection slot, released when the connection ends.
struct Slot {
    hub: Arc<StreamHub>,
    key: (String, String),
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self
            .hub
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n = n.saturating_sub(1);
        }
    }
}

pub fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/v2/{feed}", get(data_upgrade))
        .route("/stream", get(trading_upgrade))
}

async fn data_upgrade(
    State(sim): State<Arc<Sim>>,
    Path(feed): Path<String>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let known = ["iex", "sip", "delayed_sip", "test"].contains(&feed.as_str());
    let Some(ws) = ws.ok().filter(|_| known) else {
        return crate::sim::http::error_response(&crate::sim::engine::SimError::not_found(
            "endpoint not found",
        ));
    };
    let codec = codec_of(&headers);
    ws.on_upgrade(move |socket| data_connection(socket, sim, feed, codec))
}

async fn trading_upgrade(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let codec = codec_of(&headers);
    ws.on_upgrade(move |socket| trading_connection(socket, sim, codec))
}

fn codec_of(headers: &HeaderMap) -> Codec {
    Codec::from_content_type(headers.get("content-type").and_then(|v| v.to_str().ok()))
}

enum Incoming {
    Payload(Vec<u8>),
    Control,
    Closed,
}

/// What a client frame brings: a message, a ping or pong (answered by tungstenite), or the end.
fn payload(incoming: Option<Result<Message, axum::Error>>) -> Incoming {
    match incoming {
        Some(Ok(Message::Text(t))) => Incoming::Payload(t.as_bytes().to_vec()),
        Some(Ok(Message::Binary(b))) => Incoming::Payload(b.to_vec()),
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Incoming::Control,
        _ => Incoming::Closed,
    }
}

fn frame(codec: Codec, bytes: Vec<u8>) -> Message {
    match codec {
        Codec::Json => Message::Text(
            String::from_utf8(bytes)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
                .into(),
        ),
        Codec::Msgpack => Message::Binary(bytes.into()),
    }
}

fn encode_messages(codec: Codec, messages: &[DataMessage]) -> Message {
    frame(codec, codec.encode(messages))
}

/// The four kinds of bad frame the `garbage` fault sends, in turn: not JSON (or msgpack) at
/// all, a truncated frame, a trade with fields of the wrong types, and an unknown `T`.
fn garbage(codec: Codec, kind: u64) -> Message {
    #[derive(serde::Serialize)]
    struct WrongTypes {
        #[serde(rename = "T")]
        kind: &'static str,
        #[serde(rename = "S")]
        symbol: &'static str,
        p: &'static str,
        s: [u8; 0],
        t: u32,
    }
    #[derive(serde::Serialize)]
    struct UnknownKind {
        #[serde(rename = "T")]
        kind: &'static str,
        #[serde(rename = "S")]
        symbol: &'static str,
        what: u32,
    }
    let bytes: Vec<u8> = match (codec, kind) {
        (Codec::Json, 0) => b"{{{ this is not json".to_vec(),
        (Codec::Msgpack, 0) => vec![0xc1, 0xc1, 0xc1],
        (_, 1) => {
            let now = chrono::Utc::now();
            let real = codec.encode(&[DataMessage::Status(Box::new(
                crate::alpaca::stream::data::TradingStatus {
                    symbol: "AAPL".into(),
                    status_code: "T".into(),
                    status_message: "Trading Resumption".into(),
                    reason_code: String::new(),
                    reason_message: String::new(),
                    timestamp: now,
                },
            ))]);
            real[..real.len() / 2].to_vec()
        }
        (_, 2) => codec.encode(&[WrongTypes {
            kind: "t",
            symbol: "AAPL",
            p: "a lot",
            s: [],
            t: 12,
        }]),
        _ => codec.encode(&[UnknownKind {
            kind: "zz",
            symbol: "AAPL",
            what: 1,
        }]),
    };
    frame(codec, bytes)
}

async fn data_connection(socket: WebSocket, sim: Arc<Sim>, feed: String, codec: Codec) {
    let hub = sim.streams.clone();
    hub.stats.data_connections.fetch_add(1, Ordering::Relaxed);
    let endpoint = format!("/v2/{feed}");
    let (mut tx, mut rx) = socket.split();
    let mut market = sim.market_events.subscribe();
    let mut drops = hub.drops.subscribe();
    drops.mark_unchanged();
    let mut session = DataSession::new(hub.symbol_limit);
    let mut slot: Option<Slot> = None;
    let auth_deadline = tokio::time::sleep(hub.auth_timeout);
    tokio::pin!(auth_deadline);
    // The flood in force on this connection, the (flood generation, subscription change) it
    // was made for, and when to look at it next.
    let mut flood: Option<Flood> = None;
    let mut flood_seen: (u64, u64) = (0, 0);
    let mut flood_at = tokio::time::Instant::now();
    let listed: Vec<String> = sim.lock().settings.symbols.clone();

    if tx
        .send(encode_messages(codec, &[DataSession::greeting()]))
        .await
        .is_err()
    {
        hub.stats.data_connections.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    loop {
        tokio::select! {
            _ = drops.changed() => break,
            incoming = rx.next() => {
                let bytes = match payload(incoming) {
                    Incoming::Payload(bytes) => bytes,
                    Incoming::Control => continue,
                    Incoming::Closed => break,
                };
                let action = codec.decode(&bytes).or_else(|e| if codec == Codec::Msgpack { Codec::Json.decode(&bytes) } else { Err(e) });
                let reply = session.on_action(action, |key, secret| {
                    if sim.lock().faults.reject_auth || !authorized(&sim, key, secret) {
                        return AuthVerdict::Failed;
                    }
                    if feed == "sip" && sim.lock().faults.refuse_sip {
                        return AuthVerdict::InsufficientSubscription;
                    }
                    match hub.claim(&endpoint, key) {
                        Some(s) => { slot = Some(s); AuthVerdict::Ok }
                        None => AuthVerdict::ConnectionLimit,
                    }
                });
                if !reply.messages.is_empty() && tx.send(encode_messages(codec, &reply.messages)).await.is_err() {
                    break;
                }
                if reply.close {
                    break;
                }
            }
            batch = market.recv(), if session.is_authenticated() => {
                let events = match batch {
                    Ok(events) => events,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let _ = tx.send(encode_messages(codec, &[DataMessage::Error { code: 407, msg: "slow client".into() }])).await;
                        break;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                let messages = session.messages_for(&events);
                if messages.is_empty() {
                    continue;
                }
                if !send_data(&sim, &mut tx, codec, &messages).await {
                    break;
                }
            }
            _ = &mut auth_deadline, if !session.is_authenticated() => {
                let _ = tx.send(encode_messages(codec, &[DataMessage::Error { code: 404, msg: "auth timeout".into() }])).await;
                break;
            }
            // Not through the timer when a turn is due now (a flat-out flood): tokio's timer
            // rounds up to the next millisecond, which capped a flat-out flood at one turn of
            // 16 frames a millisecond.
            _ = async { if flood_at > tokio::time::Instant::now() { tokio::time::sleep_until(flood_at).await } }, if session.is_authenticated() => {
                let (spec, generation, frozen, market_now) = {
                    let s = sim.lock();
                    (s.faults.flood.clone(), s.faults.flood_generation, s.faults.frozen(), s.clock.now())
                };
                let poll = tokio::time::Instant::now() + Duration::from_millis(50);
                let Some(spec) = spec else {
                    flood = None;
                    flood_at = poll;
                    continue;
                };
                // A new flood, or a changed subscription: generate the frames now, before any is sent.
                let seen = (generation, session.changes());
                if flood.is_none() || flood_seen != seen {
                    flood_seen = seen;
                    flood = Flood::new(spec, codec, &session.flood_channels(&listed));
                }
                let Some(running) = flood.as_mut() else {
                    flood_at = poll;
                    continue;
                };
                if frozen {
                    flood_at = tokio::time::Instant::now() + Duration::from_millis(10);
                    continue;
                }
                let (frames, again) = running.due(std::time::Instant::now(), market_now);
                flood_at = tokio::time::Instant::from_std(again);
                let mut gone = false;
                for f in frames {
                    if tx.send(frame(codec, f.bytes)).await.is_err() {
                        gone = true;
                        break;
                    }
                    hub.stats.flood_frames.fetch_add(1, Ordering::Relaxed);
                    hub.stats.flood_marks.fetch_add(f.counts.marks, Ordering::Relaxed);
                    count_sent(&hub.stats, f.counts);
                }
                if gone {
                    break;
                }
            }
        }
    }
    let _ = tx.send(Message::Close(None)).await;
    drop(slot);
    hub.stats.data_connections.fetch_sub(1, Ordering::Relaxed);
}

/// Sends data messages in frames, honouring the freeze and garbage faults.
async fn send_data<S>(sim: &Sim, tx: &mut S, codec: Codec, messages: &[DataMessage]) -> bool
where
    S: futures_util::Sink<Message> + Unpin,
{
    for chunk in messages.chunks(MAX_MESSAGES_PER_FRAME) {
        let (frozen, garbage_kind) = {
            let mut s = sim.lock();
            let frozen = s.faults.frozen();
            (
                frozen,
                if frozen {
                    None
                } else {
                    s.faults.take_garbage()
                },
            )
        };
        if frozen {
            return true;
        }
        let message = match garbage_kind {
            Some(kind) => garbage(codec, kind),
            None => encode_messages(codec, chunk),
        };
        if tx.send(message).await.is_err() {
            return false;
        }
        let mut counts = Counts::default();
        for m in chunk {
            match m {
                DataMessage::Trade(_) => counts.trades += 1,
                DataMessage::Quote(_) => counts.quotes += 1,
                DataMessage::Bar(_) => counts.bars += 1,
                _ => {}
            }
        }
        count_sent(&sim.streams.stats, counts);
        // Statuses and the rest count as messages too.
        sim.streams
            .stats
            .data_messages
            .fetch_add(chunk.len() as u64 - counts.messages(), Ordering::Relaxed);
    }
    true
}

/// Counts one data frame sent and its messages by kind.
fn count_sent(stats: &StreamStats, counts: Counts) {
    stats.data_frames.fetch_add(1, Ordering::Relaxed);
    stats
        .data_messages
        .fetch_add(counts.messages(), Ordering::Relaxed);
    stats
        .data_trades
        .fetch_add(counts.trades, Ordering::Relaxed);
    stats
        .data_quotes
        .fetch_add(counts.quotes, Ordering::Relaxed);
    stats.data_bars.fetch_add(counts.bars, Ordering::Relaxed);
}

async fn trading_connection(socket: WebSocket, sim: Arc<Sim>, codec: Codec) {
    let hub = sim.streams.clone();
    hub.stats
        .trading_connections
        .fetch_add(1, Ordering::Relaxed);
    let (mut tx, mut rx) = socket.split();
    let mut updates = sim.trade_updates.subscribe();
    let mut drops = hub.drops.subscribe();
    drops.mark_unchanged();
    let (mut authorized_now, mut listening) = (false, false);
    let auth_deadline = tokio::time::sleep(hub.auth_timeout);
    tokio::pin!(auth_deadline);
    // Alpaca's paper server sends JSON in binary frames; msgpack if the client asked for it.
    let out = |value: &dyn erased::Encode| Message::Binary(value.encode(codec).into());
    loop {
        tokio::select! {
            _ = drops.changed() => break,
            incoming = rx.next() => {
                let bytes = match payload(incoming) {
                    Incoming::Payload(bytes) => bytes,
                    Incoming::Control => continue,
                    Incoming::Closed => break,
                };
                let action: Option<TradingAction> = codec.decode(&bytes).ok().or_else(|| Codec::Json.decode(&bytes).ok());
                let Some(action) = action else {
                    let msg = Outgoing { stream: "error", data: serde_json::json!({"error": "invalid syntax"}) };
                    if tx.send(out(&msg)).await.is_err() { break }
                    continue;
                };
                match action.action.as_str() {
                    "auth" | "authenticate" => {
                        let ok = action.credentials().is_some_and(|(k, s)| !sim.lock().faults.reject_auth && authorized(&sim, k, s));
                        authorized_now = ok;
                        let status = if ok { "authorized" } else { "unauthorized" };
                        let msg = Outgoing { stream: "authorization", data: serde_json::json!({"action": "authenticate", "status": status}) };
                        if tx.send(out(&msg)).await.is_err() || !ok {
                            break;
                        }
                    }
                    "listen" => {
                        if !authorized_now {
                            let msg = Outgoing { stream: "authorization", data: serde_json::json!({"action": "listen", "status": "unauthorized"}) };
                            if tx.send(out(&msg)).await.is_err() { break }
                            continue;
                        }
                        let streams: Vec<String> = action.data.and_then(|d| d.streams).unwrap_or_default();
                        listening = streams.iter().any(|s| s == "trade_updates");
                        let msg = Outgoing { stream: "listening", data: serde_json::json!({"streams": streams}) };
                        if tx.send(out(&msg)).await.is_err() { break }
                    }
                    _ => {
                        let msg = Outgoing { stream: "error", data: serde_json::json!({"error": "unknown action"}) };
                        if tx.send(out(&msg)).await.is_err() { break }
                    }
                }
            }
            update = updates.recv() => {
                let update = match update {
                    Ok(u) => u,
                    // Lifecycle events are never dropped silently: close, and let the client
                    // reconnect and repair from REST.
                    Err(_) => break,
                };
                let muted = {
                    let s = sim.lock();
                    s.faults.frozen() || s.faults.trade_updates_muted()
                };
                if !listening || muted {
                    continue;
                }
                let msg = Outgoing { stream: "trade_updates", data: &update };
                if tx.send(out(&msg)).await.is_err() {
                    break;
                }
                hub.stats.trade_updates.fetch_add(1, Ordering::Relaxed);
            }
            _ = &mut auth_deadline, if !authorized_now => break,
        }
    }
    let _ = tx.send(Message::Close(None)).await;
    hub.stats
        .trading_connections
        .fetch_sub(1, Ordering::Relaxed);
}

/// Encoding through a trait object, so one closure serves every message type.
mod erased {
    use crate::alpaca::stream::Codec;
    pub trait Encode {
        fn encode(&self, codec: Codec) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Encode for T {
        fn encode(&self, codec: Codec) -> Vec<u8> {
            codec.encode(self)
        }
    }
}
