//! The trade_updates stream's session: authenticate, listen, and after a gap repair what
//! was missed from the open orders over REST.

use super::*;

impl Session {
    pub(super) async fn trading_session(&mut self, attempt: &mut u32) -> End {
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
