//! The connection loop of one stream: connect, authenticate, subscribe (or listen), stream,
//! and on any failure reconnect with backoff, resubscribing the whole desired set. It runs as a
//! task beside the `StreamClient` actor, takes commands over a channel, reports every state
//! change to the actor, and updates the metrics directly.
//!
//! - A frame that does not decode is counted, logged with a truncated sample, and skipped.
//! - Heartbeat: a ping every `ping_interval`; no pong (or any frame) within `pong_timeout`
//!   means the connection is dead.
//! - Staleness: no data for `stale_after` while subscribed and while the broker's clock says the
//!   market is open means a connected-but-silent socket: reconnect and report.
//! - 402 (auth failed) and 409 (insufficient subscription) are fatal: the session stops in
//!   `Failed` rather than retrying on its own; the actor then stops and its supervisor restarts
//!   it after a growing delay, each restart counted against the restart budget. After 406 (connection limit) it waits at least
//!   `connection_limit_wait` before trying again.
//! - Overload: trades, bars and trade updates are never dropped (the session waits for the
//!   consumer when too many are pending); quotes are conflated per symbol while the
//!   consumer's mailbox is full.

use crate::alpaca::model::{Order, OrderStatus};
use crate::alpaca::rest::ListOrders;
use crate::alpaca::stream::{
    self, ChannelLists, ClientAction, Codec, DataMessage, StreamQuote, TradingAction,
    TradingMessage,
};
use crate::alpaca::{Credentials, error::error_chain};
use crate::broker::BrokerRef;
use crate::connection::{Backoff, ConnectionState, StreamMetrics, Subscriptions, unix_ns_now};
use crate::messages::{
    MarketBatch, OrderStreamReady, StreamEventKind, StreamKind, TradeUpdatesReceived,
};
use actix::prelude::*;
use chrono::{DateTime, Utc};
use futures_util::{SinkExt, StreamExt};
use rand::SeedableRng;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How a stream client connects and watches its connection.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub kind: StreamKind,
    /// The full WebSocket URL (`wss://stream.data.alpaca.markets/v2/iex`, `…/stream`).
    pub url: String,
    pub credentials: Credentials,
    pub codec: Codec,
    pub ping_interval: Duration,
    pub pong_timeout: Duration,
    pub stale_after: Duration,
    pub auth_timeout: Duration,
    pub connect_timeout: Duration,
    pub backoff: Backoff,
    pub connection_limit_wait: Duration,
    /// Trades and bars held back for a busy consumer before the session waits for it.
    pub max_pending: usize,
    /// Where to go when the account's plan does not cover the feed of `url` (409 insufficient
    /// subscription): the IEX feed, for a daemon configured with SIP.
    pub fallback_url: Option<String>,
}

impl StreamSettings {
    pub fn new(kind: StreamKind, url: impl Into<String>, credentials: Credentials) -> Self {
        StreamSettings {
            kind,
            url: url.into(),
            credentials,
            codec: Codec::Json,
            ping_interval: Duration::from_secs(10),
            pong_timeout: Duration::from_secs(30),
            stale_after: Duration::from_secs(60),
            auth_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            backoff: Backoff {
                base: Duration::from_millis(500),
                cap: Duration::from_secs(30),
                floor: Duration::from_millis(50),
            },
            connection_limit_wait: Duration::from_secs(10),
            max_pending: 10_000,
            fallback_url: None,
        }
    }
}

/// What the actor tells its session.
#[derive(Debug)]
pub enum Command {
    /// Symbols to add and to remove (boxed: the lists are large next to the other commands).
    Change(Box<(ChannelLists, ChannelLists)>),
    /// Leave `Failed` (or drop the connection) and connect again.
    Restart,
    Stop,
}

/// What the session tells its actor.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub enum Report {
    State { to: ConnectionState, reason: String },
    Event(StreamEventKind),
}

/// Where the data goes.
#[derive(Clone, Default)]
pub struct Sinks {
    pub market: Option<Recipient<MarketBatch>>,
    pub trade_updates: Option<Recipient<TradeUpdatesReceived>>,
    pub order_stream_ready: Option<Recipient<OrderStreamReady>>,
}

enum End {
    Stop,
    Fatal(String),
    /// The plan does not cover this feed (409): fall back if there is somewhere to go.
    Unsubscribed(String),
    Retry {
        reason: String,
        at_least: Duration,
    },
}

fn retry(reason: impl Into<String>) -> End {
    End::Retry {
        reason: reason.into(),
        at_least: Duration::ZERO,
    }
}

pub struct Session {
    pub settings: Arc<StreamSettings>,
    pub metrics: Arc<StreamMetrics>,
    pub desired: Subscriptions,
    pub commands: mpsc::UnboundedReceiver<Command>,
    pub report: Recipient<Report>,
    pub sinks: Sinks,
    pub rest: Option<BrokerRef>,
    state: ConnectionState,
    last_event_at: Option<DateTime<Utc>>,
    /// The broker's clock when the trading stream last connected.
    connected_at: Option<DateTime<Utc>>,
    had_session: bool,
    clock_cache: Option<(Instant, bool)>,
    /// The URL connected to: the configured one, or the fallback after a 409.
    url: String,
    fallback_url: Option<String>,
}

impl Session {
    pub fn new(
        settings: Arc<StreamSettings>,
        metrics: Arc<StreamMetrics>,
        desired: Subscriptions,
        commands: mpsc::UnboundedReceiver<Command>,
        report: Recipient<Report>,
        sinks: Sinks,
        rest: Option<BrokerRef>,
    ) -> Self {
        let url = settings.url.clone();
        let fallback_url = settings.fallback_url.clone();
        Session {
            settings,
            metrics,
            desired,
            commands,
            report,
            sinks,
            rest,
            state: ConnectionState::Disconnected,
            last_event_at: None,
            connected_at: None,
            had_session: false,
            clock_cache: None,
            url,
            fallback_url,
        }
    }

    fn set_state(&mut self, to: ConnectionState, reason: &str) {
        if self.state == to {
            return;
        }
        if !self.state.can_go_to(to) {
            tracing::warn!(stream = ?self.settings.kind, from = ?self.state, to = ?to, "unexpected stream state change");
        }
        if to != ConnectionState::Streaming {
            self.metrics
                .connected_since_unix_ns
                .store(0, Ordering::Relaxed);
        }
        self.state = to;
        self.report.do_send(Report::State {
            to,
            reason: reason.to_string(),
        });
    }

    fn event(&self, kind: StreamEventKind) {
        self.report.do_send(Report::Event(kind));
    }

    /// Runs until told to stop.
    pub async fn run(mut self) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(unix_ns_now() as u64);
        let mut attempt: u32 = 0;
        loop {
            self.set_state(ConnectionState::Connecting, "connecting");
            let end = match self.settings.kind {
                StreamKind::MarketData => self.market_session(&mut attempt).await,
                StreamKind::TradeUpdates => self.trading_session(&mut attempt).await,
            };
            if let End::Unsubscribed(reason) = &end
                && let Some(to) = self.fallback_url.take()
            {
                let from = std::mem::replace(&mut self.url, to.clone());
                tracing::warn!(stream = ?self.settings.kind, from = %from, to = %to, reason = %reason, "the market-data plan does not cover this feed: falling back to IEX");
                self.metrics.fell_back.store(true, Ordering::Relaxed);
                self.event(StreamEventKind::FeedFallback {
                    from: feed_of(&from),
                    to: feed_of(&to),
                    reason: reason.clone(),
                });
                self.set_state(
                    ConnectionState::Reconnecting,
                    "falling back to the IEX feed",
                );
                attempt = 0;
                continue;
            }
            match end {
                End::Stop => break,
                End::Fatal(reason) | End::Unsubscribed(reason) => {
                    tracing::error!(stream = ?self.settings.kind, reason = %reason, "stream refused: the client stops and its supervisor restarts it; check the API keys and the data subscription");
                    self.set_state(ConnectionState::Failed, &reason);
                    self.event(StreamEventKind::Fatal { reason });
                    if !self.wait(None).await {
                        break;
                    }
                    attempt = 0;
                }
                End::Retry { reason, at_least } => {
                    self.metrics.reconnects.fetch_add(1, Ordering::Relaxed);
                    let delay = self.settings.backoff.delay(attempt, &mut rng).max(at_least);
                    attempt = attempt.saturating_add(1);
                    tracing::warn!(stream = ?self.settings.kind, reason = %reason, delay_ms = delay.as_millis() as u64, attempt, "stream reconnecting");
                    self.set_state(ConnectionState::Reconnecting, &reason);
                    if !self.wait(Some(delay)).await {
                        break;
                    }
                }
            }
        }
        self.set_state(ConnectionState::Disconnected, "stopped");
    }

    /// Waits `delay` (or, with `None`, for a restart) while taking commands. False means stop.
    async fn wait(&mut self, delay: Option<Duration>) -> bool {
        let sleep = tokio::time::sleep(delay.unwrap_or(Duration::MAX / 4));
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep, if delay.is_some() => return true,
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Change(change)) => {
                        self.desired.change(&change.0, &change.1);
                    }
                    Some(Command::Restart) => return true,
                    Some(Command::Stop) | None => return false,
                },
            }
        }
    }

    async fn connect(&self) -> Result<Ws, End> {
        let mut request = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| End::Fatal(format!("invalid stream URL {}: {e}", self.url)))?;
        if self.settings.codec == Codec::Msgpack {
            request
                .headers_mut()
                .insert("Content-Type", http_value(Codec::Msgpack.content_type()));
        }
        let connector = if self.url.starts_with("wss:") {
            Some(tokio_tungstenite::Connector::Rustls(
                tls_config().map_err(End::Fatal)?,
            ))
        } else {
            None
        };
        let config = WebSocketConfig::default()
            .max_message_size(Some(64 << 20))
            .max_frame_size(Some(16 << 20));
        let connecting = tokio_tungstenite::connect_async_tls_with_config(
            request,
            Some(config),
            true,
            connector,
        );
        match tokio::time::timeout(self.settings.connect_timeout, connecting).await {
            Ok(Ok((ws, _))) => Ok(ws),
            Ok(Err(e)) => Err(retry(format!(
                "cannot connect to {}: {}",
                self.url,
                error_chain(&e)
            ))),
            Err(_) => Err(retry(format!("connecting to {} timed out", self.url))),
        }
    }

    async fn send<T: serde::Serialize>(&self, ws: &mut Ws, value: &T) -> Result<(), End> {
        let bytes = self.settings.codec.encode(value);
        let msg = match self.settings.codec {
            Codec::Json => Message::Text(String::from_utf8_lossy(&bytes).into_owned().into()),
            Codec::Msgpack => Message::Binary(bytes.into()),
        };
        ws.send(msg)
            .await
            .map_err(|e| retry(format!("send failed: {e}")))
    }

    /// The next text or binary payload within `within`.
    async fn read_payload(&self, ws: &mut Ws, within: Duration) -> Result<Vec<u8>, End> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let next = tokio::time::timeout_at(deadline, ws.next())
                .await
                .map_err(|_| retry("the server did not answer in time"))?;
            if let Some(bytes) = payload(next)? {
                return Ok(bytes);
            }
        }
    }

    /// Reads control messages until one matches; data that arrives meanwhile is forwarded.
    async fn expect_control(
        &mut self,
        ws: &mut Ws,
        forwarder: &mut Forwarder,
        what: &str,
    ) -> Result<DataMessage, End> {
        loop {
            let bytes = self
                .read_payload(ws, self.settings.auth_timeout)
                .await
                .map_err(|e| match e {
                    End::Retry { reason, at_least } => End::Retry {
                        reason: format!("waiting for {what}: {reason}"),
                        at_least,
                    },
                    other => other,
                })?;
            let messages = match stream::decode_data_frame(self.settings.codec, &bytes) {
                Ok(m) => m,
                Err(e) => {
                    self.reject(&e);
                    continue;
                }
            };
            let mut control = None;
            for m in messages {
                match m {
                    DataMessage::Success { .. }
                    | DataMessage::Error { .. }
                    | DataMessage::Subscription(_)
                        if control.is_none() =>
                    {
                        control = Some(m)
                    }
                    DataMessage::Trade(_)
                    | DataMessage::Quote(_)
                    | DataMessage::Bar(_)
                    | DataMessage::Status(_)
                    | DataMessage::Luld(_) => forwarder.push(m, Instant::now(), &self.metrics),
                    _ => {}
                }
            }
            if let Some(c) = control {
                return Ok(c);
            }
        }
    }

    fn reject(&self, e: &stream::FrameError) {
        self.metrics.frames_failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(stream = ?self.settings.kind, reason = %e.reason, sample = %e.sample, "skipped a frame that does not decode");
        self.event(StreamEventKind::FrameRejected {
            reason: e.reason.chars().take(200).collect(),
            sample: e.sample.clone(),
        });
    }

    fn auth_refusal(code: u16, msg: &str, connection_limit_wait: Duration) -> End {
        match code {
            402 => End::Fatal(format!(
                "authentication refused (402 {msg}): check the API keys"
            )),
            409 => End::Unsubscribed(format!(
                "the account's market-data plan does not cover this feed (409 {msg}): use feed = \"iex\" or upgrade the plan"
            )),
            406 => End::Retry {
                reason: format!(
                    "connection limit exceeded (406 {msg}): another connection uses these keys"
                ),
                at_least: connection_limit_wait,
            },
            _ => retry(format!("server error {code} {msg}")),
        }
    }

    async fn market_session(&mut self, attempt: &mut u32) -> End {
        let mut ws = match self.connect().await {
            Ok(ws) => ws,
            Err(e) => return e,
        };
        let mut forwarder = Forwarder::new(self.sinks.market.clone(), self.settings.max_pending);
        match self.handshake(&mut ws, &mut forwarder).await {
            Ok(()) => {}
            Err(e) => return e,
        }
        *attempt = 0;
        self.metrics
            .connected_since_unix_ns
            .store(unix_ns_now(), Ordering::Relaxed);
        self.set_state(ConnectionState::Streaming, "subscribed");
        if self.had_session {
            // In band, ahead of anything received since the reconnect (the forwarder holds that).
            if let Some(sink) = &self.sinks.market {
                let marker = MarketBatch {
                    data: Vec::new(),
                    received_at: Instant::now(),
                    gap: Some(self.last_event_at),
                };
                if sink.send(marker).await.is_err() {
                    tracing::warn!("the market-data consumer is gone");
                }
            }
            self.event(StreamEventKind::Resumed {
                gap_from: self.last_event_at,
            });
        }
        self.had_session = true;
        let end = self.stream_market(&mut ws, &mut forwarder).await;
        forwarder.flush_all(&self.metrics).await;
        let _ = ws.close(None).await;
        end
    }

    /// Reads control messages until `{"T":"success","msg":expected}`; an error message is a
    /// refusal (see [`Self::auth_refusal`]).
    async fn expect_success(
        &mut self,
        ws: &mut Ws,
        forwarder: &mut Forwarder,
        what: &str,
        expected: &str,
    ) -> Result<(), End> {
        match self.expect_control(ws, forwarder, what).await? {
            DataMessage::Success { msg } if msg == expected => Ok(()),
            DataMessage::Error { code, msg } => Err(Self::auth_refusal(
                code,
                &msg,
                self.settings.connection_limit_wait,
            )),
            other => Err(retry(format!("unexpected {what}: {other:?}"))),
        }
    }

    async fn handshake(&mut self, ws: &mut Ws, forwarder: &mut Forwarder) -> Result<(), End> {
        self.expect_success(ws, forwarder, "the greeting", "connected")
            .await?;
        self.set_state(ConnectionState::Authenticating, "connected");
        let creds = &self.settings.credentials;
        self.send(
            ws,
            &ClientAction::auth(&creds.key_id, creds.secret.expose()),
        )
        .await?;
        self.expect_success(ws, forwarder, "the auth reply", "authenticated")
            .await?;
        self.set_state(ConnectionState::Subscribing, "authenticated");
        if self.desired.is_empty() {
            return Ok(());
        }
        self.send(ws, &ClientAction::subscribe(self.desired.as_lists()))
            .await?;
        match self
            .expect_control(ws, forwarder, "the subscription")
            .await?
        {
            DataMessage::Subscription(set) => {
                if !self.desired.confirmed_by(&set) {
                    tracing::warn!(stream = ?self.settings.kind, ?set, "the server confirmed less than was asked");
                }
                Ok(())
            }
            DataMessage::Error { code, msg } => {
                self.event(StreamEventKind::ServerError {
                    code,
                    message: msg.clone(),
                });
                if code == 405 {
                    // The set is unchanged at the server; stream what it allows and say so.
                    tracing::error!(stream = ?self.settings.kind, "symbol limit exceeded (405): the plan allows fewer symbols than configured");
                    return Ok(());
                }
                Err(Self::auth_refusal(
                    code,
                    &msg,
                    self.settings.connection_limit_wait,
                ))
            }
            other => Err(retry(format!("unexpected subscription reply {other:?}"))),
        }
    }

    async fn stream_market(&mut self, ws: &mut Ws, forwarder: &mut Forwarder) -> End {
        let mut ping = tokio::time::interval(self.settings.ping_interval);
        ping.tick().await;
        let check_every = (self.settings.stale_after / 4)
            .clamp(Duration::from_millis(20), Duration::from_secs(1));
        let mut check = tokio::time::interval(check_every);
        let (mut last_alive, mut last_data) = (Instant::now(), Instant::now());
        loop {
            tokio::select! {
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Change(change)) => {
                        let (add, remove) = self.desired.change(&change.0, &change.1);
                        if !add.is_empty() {
                            if let Err(e) = self.send(ws, &ClientAction::subscribe(add)).await { return e; }
                        }
                        if !remove.is_empty() {
                            if let Err(e) = self.send(ws, &ClientAction::unsubscribe(remove)).await { return e; }
                        }
                        last_data = Instant::now();
                    }
                    Some(Command::Restart) => return retry("restart requested"),
                    Some(Command::Stop) | None => return End::Stop,
                },
                frame = ws.next() => {
                    // The arrival time travels with the data (tick-to-order is measured from it).
                    let arrived = Instant::now();
                    last_alive = arrived;
                    let bytes = match payload(frame) {
                        Ok(Some(bytes)) => bytes,
                        Ok(None) => continue,
                        Err(end) => return end,
                    };
                    self.metrics.frames.fetch_add(1, Ordering::Relaxed);
                    self.metrics.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    let messages = match stream::decode_data_frame(self.settings.codec, &bytes) {
                        Ok(m) => m,
                        Err(e) => {
                            self.reject(&e);
                            continue;
                        }
                    };
                    let mut saw_data = false;
                    for m in messages {
                        match m {
                            DataMessage::Trade(_) | DataMessage::Quote(_) | DataMessage::Bar(_) | DataMessage::Status(_) | DataMessage::Luld(_) => {
                                if let Some(t) = data_time(&m) {
                                    self.last_event_at = Some(self.last_event_at.map_or(t, |l| l.max(t)));
                                }
                                forwarder.push(m, arrived, &self.metrics);
                                saw_data = true;
                            }
                            DataMessage::Subscription(set) => {
                                if !self.desired.confirmed_by(&set) {
                                    tracing::warn!(stream = ?self.settings.kind, "the server's subscription set lacks symbols we asked for");
                                }
                            }
                            DataMessage::Error { code, msg } => {
                                tracing::warn!(stream = ?self.settings.kind, code, msg = %msg, "stream error from the server");
                                self.event(StreamEventKind::ServerError { code, message: msg });
                            }
                            DataMessage::Success { .. } => {}
                            DataMessage::Other { kind } => {
                                self.metrics.messages_unknown.fetch_add(1, Ordering::Relaxed);
                                tracing::debug!(kind = %kind, "skipped a message type we do not model");
                            }
                        }
                    }
                    if saw_data {
                        last_data = Instant::now();
                        self.metrics.last_message_unix_ns.store(unix_ns_now(), Ordering::Relaxed);
                    }
                    forwarder.flush(&self.metrics).await;
                }
                _ = ping.tick() => {
                    if let Err(end) = self.heartbeat(ws, last_alive).await {
                        return end;
                    }
                }
                _ = check.tick() => {
                    forwarder.flush(&self.metrics).await;
                    let silent = last_data.elapsed();
                    if silent > self.settings.stale_after && !self.desired.is_empty() && self.market_open().await {
                        let silent_ms = silent.as_millis() as u64;
                        tracing::warn!(stream = ?self.settings.kind, silent_ms, "stream is connected but silent while the market is open");
                        self.event(StreamEventKind::Stale { silent_ms });
                        return retry(format!("stale: no data for {silent_ms} ms while the market is open"));
                    }
                }
            }
        }
    }

    /// One heartbeat: the connection is dead if nothing came for `pong_timeout`; else ping.
    async fn heartbeat(&self, ws: &mut Ws, last_alive: Instant) -> Result<(), End> {
        if last_alive.elapsed() > self.settings.pong_timeout {
            return Err(retry(format!(
                "heartbeat lost: nothing from the server for {} ms",
                last_alive.elapsed().as_millis()
            )));
        }
        ws.send(Message::Ping(Vec::new().into()))
            .await
            .map_err(|_| retry("ping failed"))
    }

    /// The broker's clock, cached for 30 s; without a REST client, assume open.
    async fn market_open(&mut self) -> bool {
        if let Some((at, open)) = self.clock_cache {
            if at.elapsed() < Duration::from_secs(30) {
                return open;
            }
        }
        let Some(rest) = &self.rest else { return true };
        let open = match rest.get_clock().await {
            Ok(c) => c.is_open,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the broker clock; treating the market as open");
                true
            }
        };
        self.clock_cache = Some((Instant::now(), open));
        open
    }

    async fn trading_session(&mut self, attempt: &mut u32) -> End {
        let mut ws = match self.connect().await {
            Ok(ws) => ws,
            Err(e) => return e,
        };
        self.set_state(ConnectionState::Authenticating, "connected");
        let creds = self.settings.credentials.clone();
        if let Err(e) = self
            .send(
                &mut ws,
                &TradingAction::authenticate(&creds.key_id, creds.secret.expose()),
            )
            .await
        {
            return e;
        }
        match self.read_trading(&mut ws).await {
            Ok(TradingMessage::Authorization { status, .. }) if status == "authorized" => {}
            Ok(TradingMessage::Authorization { status, .. }) => {
                return End::Fatal(format!(
                    "trading stream authentication refused ({status}): check the API keys"
                ));
            }
            Ok(other) => return retry(format!("unexpected reply to authenticate: {other:?}")),
            Err(e) => return e,
        }
        self.set_state(ConnectionState::Subscribing, "authenticated");
        if let Err(e) = self
            .send(&mut ws, &TradingAction::listen(&["trade_updates"]))
            .await
        {
            return e;
        }
        loop {
            match self.read_trading(&mut ws).await {
                Ok(TradingMessage::Listening { streams })
                    if streams.iter().any(|s| s == "trade_updates") =>
                {
                    break;
                }
                Ok(TradingMessage::Listening { .. }) => {
                    return retry("the server did not confirm trade_updates");
                }
                Ok(TradingMessage::Authorization { status, .. }) => {
                    return End::Fatal(format!("trading stream refused listen ({status})"));
                }
                Ok(_) => continue,
                Err(e) => return e,
            }
        }
        *attempt = 0;
        self.metrics
            .connected_since_unix_ns
            .store(unix_ns_now(), Ordering::Relaxed);
        self.set_state(ConnectionState::Streaming, "listening");
        // The order side may submit only once it knows what happened while we were away.
        // Broker time only: the last event seen, else when the previous session connected.
        let gap_from = if self.had_session {
            self.last_event_at.or(self.connected_at)
        } else {
            None
        };
        let (orders, fills) = match (gap_from, &self.rest) {
            (Some(since), Some(rest)) => match repair(rest, since).await {
                Ok(r) => r,
                Err(e) => return retry(format!("cannot repair the gap from REST: {e}")),
            },
            _ => (Vec::new(), Vec::new()),
        };
        if gap_from.is_some() {
            tracing::info!(
                orders = orders.len(),
                fills = fills.len(),
                "trade_updates gap repaired from REST"
            );
            self.event(StreamEventKind::Resumed { gap_from });
        }
        if let Some(sink) = &self.sinks.order_stream_ready {
            if sink
                .send(OrderStreamReady {
                    gap_from,
                    orders,
                    fills,
                })
                .await
                .is_err()
            {
                tracing::warn!("the order side is gone; trade updates have nowhere to go");
            }
        }
        if let Some(rest) = &self.rest {
            self.connected_at = rest
                .get_clock()
                .await
                .ok()
                .map(|c| c.timestamp.with_timezone(&Utc));
        }
        self.had_session = true;
        let end = self.stream_trading(&mut ws).await;
        let _ = ws.close(None).await;
        end
    }

    async fn read_trading(&mut self, ws: &mut Ws) -> Result<TradingMessage, End> {
        loop {
            let bytes = self.read_payload(ws, self.settings.auth_timeout).await?;
            match stream::decode_trading_frame(self.settings.codec, &bytes) {
                Ok(m) => return Ok(m),
                Err(e) => self.reject(&e),
            }
        }
    }

    async fn stream_trading(&mut self, ws: &mut Ws) -> End {
        let mut ping = tokio::time::interval(self.settings.ping_interval);
        ping.tick().await;
        let mut last_alive = Instant::now();
        loop {
            tokio::select! {
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Change(_)) => {}
                    Some(Command::Restart) => return retry("restart requested"),
                    Some(Command::Stop) | None => return End::Stop,
                },
                frame = ws.next() => {
                    last_alive = Instant::now();
                    let bytes = match payload(frame) {
                        Ok(Some(bytes)) => bytes,
                        Ok(None) => continue,
                        Err(end) => return end,
                    };
                    self.metrics.frames.fetch_add(1, Ordering::Relaxed);
                    self.metrics.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    match stream::decode_trading_frame(self.settings.codec, &bytes) {
                        Ok(TradingMessage::TradeUpdate(update)) => {
                            self.metrics.messages_received.fetch_add(1, Ordering::Relaxed);
                            self.metrics.last_message_unix_ns.store(unix_ns_now(), Ordering::Relaxed);
                            self.last_event_at = Some(self.last_event_at.map_or(update.at(), |l| l.max(update.at())));
                            if let Some(sink) = &self.sinks.trade_updates {
                                // Never dropped: wait for the order side rather than lose an event.
                                if sink.send(TradeUpdatesReceived { updates: vec![*update] }).await.is_err() {
                                    tracing::warn!("the order side is gone; a trade update was not delivered");
                                }
                            }
                            self.metrics.messages_processed.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {}
                        Err(e) => self.reject(&e),
                    }
                }
                _ = ping.tick() => {
                    if let Err(end) = self.heartbeat(ws, last_alive).await {
                        return end;
                    }
                }
            }
        }
    }
}

/// Orders that changed since `since` and the fills since then, from REST.
async fn repair(
    rest: &BrokerRef,
    since: DateTime<Utc>,
) -> Result<(Vec<Order>, Vec<crate::alpaca::model::TradeActivity>), crate::alpaca::BrokerError> {
    let since = since - chrono::Duration::seconds(1);
    let mut orders: HashMap<uuid::Uuid, Order> = HashMap::new();
    let open = rest
        .list_orders(&ListOrders {
            status: Some("open"),
            limit: Some(500),
            ..Default::default()
        })
        .await?;
    let closed = rest
        .list_orders(&ListOrders {
            status: Some("closed"),
            limit: Some(500),
            direction: Some("desc"),
            ..Default::default()
        })
        .await?;
    // Entries the daemon cannot model are not its own orders: reconciliation reports them.
    for o in open.items.into_iter().chain(closed.items) {
        if o.updated_at >= since || o.status == OrderStatus::PartiallyFilled {
            orders.insert(o.id, o);
        }
    }
    let mut orders: Vec<Order> = orders.into_values().collect();
    orders.sort_by_key(|o| o.updated_at);
    let fills = rest.fills_since(Some(since)).await?.items;
    Ok((orders, fills))
}

fn data_time(m: &DataMessage) -> Option<DateTime<Utc>> {
    match m {
        DataMessage::Trade(t) => Some(t.timestamp),
        DataMessage::Quote(q) => Some(q.timestamp),
        DataMessage::Bar(b) => Some(b.timestamp),
        DataMessage::Status(s) => Some(s.timestamp),
        DataMessage::Luld(l) => Some(l.timestamp),
        _ => None,
    }
}

/// The payload of a text or binary frame; `None` for control frames (pings are answered by
/// tungstenite); an `End` when the connection is over.
fn payload(
    frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
) -> Result<Option<Vec<u8>>, End> {
    match frame {
        Some(Ok(Message::Text(t))) => Ok(Some(t.as_bytes().to_vec())),
        Some(Ok(Message::Binary(b))) => Ok(Some(b.to_vec())),
        Some(Ok(Message::Close(f))) => Err(retry(format!(
            "server closed the connection: {}",
            close_reason(f)
        ))),
        Some(Ok(_)) => Ok(None),
        Some(Err(e)) => Err(retry(format!("read failed: {e}"))),
        None => Err(retry("connection closed")),
    }
}

fn close_reason(frame: Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>) -> String {
    match frame {
        Some(f) if !f.reason.is_empty() => format!("{} {}", u16::from(f.code), f.reason),
        Some(f) => u16::from(f.code).to_string(),
        None => "no reason given".into(),
    }
}

fn http_value(v: &'static str) -> tokio_tungstenite::tungstenite::http::HeaderValue {
    tokio_tungstenite::tungstenite::http::HeaderValue::from_static(v)
}

/// TLS for `wss://`: rustls with ring and the platform's certificate verifier.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_platform_verifier()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Delivers market data to the consumer under the overload policy.
struct Forwarder {
    sink: Option<Recipient<MarketBatch>>,
    /// Trades, bars and statuses, in arrival order: never dropped.
    ordered: Vec<DataMessage>,
    /// The latest quote per symbol while the consumer is busy.
    quotes: foldhash::HashMap<String, StreamQuote>,
    first_at: Option<Instant>,
    max_pending: usize,
    /// After the consumer's mailbox was found full: try again once this much is pending or
    /// at this time, not on every frame (each try takes out and puts back all that is
    /// pending: retried per frame, an overload made the session's work grow with its backlog).
    retry_at_len: usize,
    retry_at: Option<Instant>,
}

/// How long a full mailbox is left alone before the next try (unless the backlog doubled).
const RETRY_FULL_AFTER: Duration = Duration::from_millis(1);

impl Forwarder {
    fn new(sink: Option<Recipient<MarketBatch>>, max_pending: usize) -> Self {
        Forwarder {
            sink,
            ordered: Vec::new(),
            quotes: foldhash::HashMap::default(),
            first_at: None,
            max_pending,
            retry_at_len: 0,
            retry_at: None,
        }
    }

    fn pending(&self) -> usize {
        self.ordered.len() + self.quotes.len()
    }

    /// Holds one message; `arrived`: when its frame arrived.
    fn push(&mut self, m: DataMessage, arrived: Instant, metrics: &StreamMetrics) {
        metrics.messages_received.fetch_add(1, Ordering::Relaxed);
        self.first_at.get_or_insert(arrived);
        match m {
            DataMessage::Quote(q) => match self.quotes.get_mut(&q.symbol) {
                Some(older) => {
                    *older = q;
                    metrics.quotes_conflated.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    self.quotes.insert(q.symbol.clone(), q);
                }
            },
            other => self.ordered.push(other),
        }
    }

    fn take(&mut self) -> MarketBatch {
        let mut data = std::mem::take(&mut self.ordered);
        data.extend(self.quotes.drain().map(|(_, q)| DataMessage::Quote(q)));
        MarketBatch {
            data,
            received_at: self.first_at.take().unwrap_or_else(Instant::now),
            gap: None,
        }
    }

    fn restore(&mut self, batch: MarketBatch) {
        let mut newer = std::mem::take(&mut self.ordered);
        let newer_quotes = std::mem::take(&mut self.quotes);
        for m in batch.data {
            match m {
                DataMessage::Quote(q) => {
                    self.quotes.insert(q.symbol.clone(), q);
                }
                other => self.ordered.push(other),
            }
        }
        self.ordered.append(&mut newer);
        self.quotes.extend(newer_quotes);
        self.first_at = Some(batch.received_at);
    }

    /// Hands what is pending to the consumer if its mailbox has room; waits for it only when
    /// too many trades and bars are held back.
    async fn flush(&mut self, metrics: &StreamMetrics) {
        let Some(sink) = self.sink.clone() else {
            self.ordered.clear();
            self.quotes.clear();
            return;
        };
        if self.ordered.is_empty() && self.quotes.is_empty() {
            return;
        }
        let backing_off = self.retry_at.is_some_and(|at| Instant::now() < at)
            && self.pending() < self.retry_at_len;
        if backing_off && self.ordered.len() < self.max_pending {
            return;
        }
        let batch = self.take();
        let n = batch.data.len() as u64;
        match sink.try_send(batch) {
            Ok(()) => {
                metrics.messages_processed.fetch_add(n, Ordering::Relaxed);
                self.retry_at = None;
            }
            Err(SendError::Full(batch)) => {
                self.restore(batch);
                if self.ordered.len() >= self.max_pending {
                    self.flush_all(metrics).await;
                } else {
                    self.retry_at_len = self.pending() * 2;
                    self.retry_at = Some(Instant::now() + RETRY_FULL_AFTER);
                }
            }
            Err(SendError::Closed(_)) => {
                tracing::warn!("the market-data consumer is gone; dropping its data");
            }
        }
    }

    /// Waits for the consumer to take everything pending.
    async fn flush_all(&mut self, metrics: &StreamMetrics) {
        let Some(sink) = self.sink.clone() else {
            return;
        };
        if self.ordered.is_empty() && self.quotes.is_empty() {
            return;
        }
        let batch = self.take();
        let n = batch.data.len() as u64;
        if sink.send(batch).await.is_ok() {
            metrics.messages_processed.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// The feed of a market-data URL (`…/v2/sip` → `sip`).
pub fn feed_of(url: &str) -> String {
    url.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string()
}
