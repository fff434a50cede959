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
    self, ChannelLists, ClientAction, Codec, DataMessage, TradingAction, TradingMessage,
};
use crate::alpaca::{Credentials, error::error_chain};
use crate::broker::BrokerRef;
use crate::connection::{
    Backlog, Backoff, ConnectionState, Full, StreamMetrics, Subscriptions, unix_ns_now,
};
use crate::messages::market::TradeSubscriber;
use crate::messages::{
    MarketBatch, OrderStreamReady, StreamEventKind, StreamKind, TradeTicks, TradeUpdatesReceived,
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
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Message};

mod forwarder;
mod market;
mod trading;

use forwarder::Forwarder;

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
            max_pending: 4_000,
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
    /// Strategies that trade on ticks: their trades go to them straight from the session.
    pub ticks: Vec<TradeSubscriber>,
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
    async fn read_payload(&self, ws: &mut Ws, within: Duration) -> Result<Bytes, End> {
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
            let arrived = Instant::now();
            forwarder.send_ticks(messages.iter().filter_map(DataMessage::as_trade), arrived);
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
                    | DataMessage::Luld(_) => forwarder.push(m, arrived, &self.metrics),
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
}

/// The payload of a text or binary frame, as the frame holds it (no copy); `None` for
/// control frames (pings are answered by tungstenite); an `End` when the connection is over.
fn payload(
    frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
) -> Result<Option<Bytes>, End> {
    match frame {
        Some(Ok(Message::Text(t))) => Ok(Some(Bytes::from(t))),
        Some(Ok(Message::Binary(b))) => Ok(Some(b)),
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

/// The feed of a market-data URL (`…/v2/sip` → `sip`).
pub fn feed_of(url: &str) -> String {
    url.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string()
}
