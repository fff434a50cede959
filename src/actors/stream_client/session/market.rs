//! The market-data stream's session: authenticate, subscribe, stream under the overload
//! policy (the [`Forwarder`]), the staleness check against the broker's clock.

use super::forwarder::latest_time;
use super::*;
use futures_util::FutureExt;

impl Session {
    pub(super) async fn market_session(&mut self, attempt: &mut u32) -> End {
        let mut ws = match self.connect().await {
            Ok(ws) => ws,
            Err(e) => return e,
        };
        let mut forwarder = Forwarder::new(
            self.sinks.market.clone(),
            self.sinks.ticks.clone(),
            self.settings.max_pending,
        );
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
        forwarder.deliver_ticks(true).await;
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
        let mut pace = Pace::default();
        loop {
            let due = forwarder.due_at();
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
                mut frame = ws.next() => {
                    let mut taken = 0;
                    loop {
                        // The arrival time travels with the data (tick-to-order is measured
                        // from it).
                        let arrived = Instant::now();
                        last_alive = arrived;
                        let calm = pace.arrived(arrived);
                        let saw_data = match self.read_frame(frame, arrived, calm, forwarder).await {
                            Ok(saw_data) => saw_data,
                            Err(end) => return end,
                        };
                        if saw_data {
                            last_data = Instant::now();
                            self.metrics.last_message_unix_ns.store(unix_ns_now(), Ordering::Relaxed);
                        }
                        forwarder.flush(&self.metrics).await;
                        // In a flood, frames the socket already holds are read on, a few,
                        // without a turn of this select (its timers and branches) each.
                        taken += 1;
                        if calm || taken == FRAMES_PER_TURN {
                            break;
                        }
                        match ws.next().now_or_never() {
                            Some(next) => frame = next,
                            None => break,
                        }
                    }
                    // Under a flood the socket is always ready: give the actors that share
                    // this thread (the daemon's strategies and orders) their turn after a
                    // few frames (a frame with trades they want gave it already).
                    tokio::task::yield_now().await;
                }
                // Gathered frames (or a busy consumer's backlog) are due.
                _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now).into()), if due.is_some() => {
                    forwarder.flush(&self.metrics).await;
                }
                // A strategy's mailbox was full: its ticks are offered again soon, not only
                // with the next frame.
                _ = tokio::time::sleep(Duration::from_millis(1)), if forwarder.ticks_held() => {
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

    /// One frame read from the socket, decoded (nothing for a frame that is not data or
    /// does not decode: that is counted and logged here), its trades handed to the strategies
    /// that trade on ticks first, then held for the feed. While frames come at a `calm` pace,
    /// a frame's trades are decoded before the rest of it when anyone wants them
    /// ([`stream::trades_first`]: they are handed on sooner for about half again the
    /// decoding); in a flood, frames are read in one pass, for throughput, and while the feed
    /// keeps up straight into what is gathered for it ([`Forwarder::decode_gathered`]).
    /// Answers whether the frame held data; `Err`: the session ends.
    async fn read_frame(
        &mut self,
        frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
        arrived: Instant,
        calm: bool,
        forwarder: &mut Forwarder,
    ) -> Result<bool, End> {
        let Some(bytes) = payload(frame)? else {
            return Ok(false);
        };
        self.metrics.frames.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let codec = self.settings.codec;
        let first = calm
            .then(|| forwarder.ticks_wanted())
            .flatten()
            .and_then(|wanted| stream::trades_first(codec, &bytes, wanted));
        let decoded = match first {
            Some(first) => {
                if forwarder.send_ticks(first.trades(), arrived) {
                    let_ticks_act().await;
                }
                stream::decode_rest(first, codec, &bytes)
            }
            None => {
                if let Some(frame) =
                    forwarder.decode_gathered(codec, &bytes, arrived, &self.metrics)
                {
                    let frame = match frame {
                        Ok(frame) => frame,
                        Err(e) => {
                            self.reject(&e);
                            return Ok(false);
                        }
                    };
                    if frame.took_ticks {
                        let_ticks_act().await;
                    }
                    self.note_latest(frame.latest);
                    frame.control.into_iter().for_each(|m| self.control(m));
                    return Ok(frame.data > 0);
                }
                let decoded = stream::decode_data_frame(codec, &bytes);
                let trades = decoded.iter().flatten().filter_map(DataMessage::as_trade);
                if forwarder.send_ticks(trades, arrived) {
                    let_ticks_act().await;
                }
                decoded
            }
        };
        match decoded {
            Ok(messages) => Ok(self.hold(messages, arrived, forwarder)),
            Err(e) => {
                self.reject(&e);
                Ok(false)
            }
        }
    }

    /// A frame's data messages to `forwarder` (not yet sent on), the others handled here;
    /// `arrived`: when the frame did. Answers whether it held data.
    fn hold(
        &mut self,
        messages: Vec<DataMessage>,
        arrived: Instant,
        forwarder: &mut Forwarder,
    ) -> bool {
        let (latest, data) = latest_time(&messages);
        self.note_latest(latest);
        let messages = if data < messages.len() {
            // Control messages (rare in a data frame) are handled here, not sent on.
            let (kept, control): (Vec<_>, Vec<_>) =
                messages.into_iter().partition(|m| m.time().is_some());
            control.into_iter().for_each(|m| self.control(m));
            kept
        } else {
            messages
        };
        forwarder.push_frame(messages, arrived, &self.metrics);
        data > 0
    }

    /// The latest event time seen (the gap a reconnect reports starts there).
    fn note_latest(&mut self, latest: Option<DateTime<Utc>>) {
        if let Some(t) = latest {
            self.last_event_at = Some(self.last_event_at.map_or(t, |l| l.max(t)));
        }
    }

    /// A control message that came in a data frame.
    fn control(&mut self, m: DataMessage) {
        match m {
            DataMessage::Subscription(set) => {
                if !self.desired.confirmed_by(&set) {
                    tracing::warn!(stream = ?self.settings.kind, "the server's subscription set lacks symbols we asked for");
                }
            }
            DataMessage::Error { code, msg } => {
                tracing::warn!(stream = ?self.settings.kind, code, msg = %msg, "stream error from the server");
                self.event(StreamEventKind::ServerError { code, message: msg });
            }
            DataMessage::Other { kind } => {
                self.metrics
                    .messages_unknown
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(kind = %kind, "skipped a message type we do not model");
            }
            DataMessage::Success { .. }
            | DataMessage::Trade(_)
            | DataMessage::Quote(_)
            | DataMessage::Bar(_)
            | DataMessage::Status(_)
            | DataMessage::Luld(_) => {}
        }
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
}

/// Most frames read in one turn of the session's loop while frames flood in (about 200 µs of
/// decoding at 1,000 symbols).
const FRAMES_PER_TURN: u32 = 8;

/// The least average time between frames for the stream to be calm: fewer than 4,000 frames
/// a second (the load bench's 100 k msgs/s is 1,000 frames; flat out, 7,000 to 25,000).
const CALM_GAP: Duration = Duration::from_micros(250);

/// The average time between frames (the last few weigh most: each new gap counts for an
/// eighth), to tell a calm stream from a flood. Frames often come two or three together
/// even at a calm pace, so one gap alone does not tell.
struct Pace {
    last: Option<Instant>,
    average_ns: u64,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            last: None,
            // Calm until frames show otherwise (a flood from the start shows in ~15 frames).
            average_ns: 4 * CALM_GAP.as_nanos() as u64,
        }
    }
}

impl Pace {
    /// A frame arrived at `at`: answers whether frames come at a calm pace.
    fn arrived(&mut self, at: Instant) -> bool {
        if let Some(last) = self.last.replace(at) {
            let gap = u64::try_from(at.duration_since(last).as_nanos()).unwrap_or(u64::MAX);
            self.average_ns = self.average_ns - self.average_ns / 8 + gap / 8;
        }
        self.average_ns >= CALM_GAP.as_nanos() as u64
    }
}

/// The strategies given trades have their turn before the session goes on with the frame:
/// in it they propose, and an approved order's intent is written and its request sent (see
/// `actors::order_manager::Proposer::Direct`), so one yield is enough.
async fn let_ticks_act() {
    tokio::task::yield_now().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_told_from_calm_frames_that_come_in_pairs() {
        let t0 = Instant::now();
        let at = |us: u64| t0 + Duration::from_micros(us);
        let mut pace = Pace::default();
        // 1,000 frames a second, two at a time (a gap of 0, then 2 ms): calm throughout.
        assert!((0..200).all(|i| pace.arrived(at(i / 2 * 2_000))));
        // Then flat out, a frame every 50 µs: a flood within twenty frames, and it stays one.
        let start = 200_000;
        let calm: Vec<bool> = (0..200).map(|i| pace.arrived(at(start + i * 50))).collect();
        assert!(calm[20..].iter().all(|c| !c), "{calm:?}");
        // Calm again a few frames after the flood ends.
        let end = start + 200 * 50;
        let after: Vec<bool> = (1..20).map(|i| pace.arrived(at(end + i * 1_000))).collect();
        assert!(after[5..].iter().all(|c| *c), "{after:?}");
    }
}
