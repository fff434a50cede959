//! What each command does.

use super::*;

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
            let supervisor = h.operator.clone();
            let id = id.clone();
            Box::pin(async move {
                match supervisor.send(Operator(c)).await {
                    Ok(Ok(mode)) => Response::ok(id, serde_json::json!({ "mode": mode.name() })),
                    Ok(Err(why)) => Response::err(id, "refused", why),
                    Err(e) => Response::err(id, "unavailable", e.to_string()),
                }
            }) as Self::Result
        };
        // `pause --strategy NAME` / `resume --strategy NAME`: one strategy, not the mode.
        let one = match msg.request.args.as_slice() {
            [flag, name] if flag == "--strategy" && matches!(cmd, "pause" | "resume") => {
                Some(name.clone())
            }
            _ => None,
        };
        if let Some(name) = one {
            let pause = cmd == "pause";
            return Box::pin(async move { pause_strategy(&h, id, &name, pause).await });
        }
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
            "debug-wedge" => {
                if !h.debug_commands {
                    return reply(Response::err(
                        id,
                        "disabled",
                        "debug commands are off: start the daemon with TRADERD_DEBUG_COMMANDS=1",
                    ));
                }
                let seconds = msg
                    .request
                    .args
                    .first()
                    .and_then(|a| a.parse::<u64>().ok())
                    .filter(|s| (1..=300).contains(s));
                let Some(seconds) = seconds else {
                    return reply(Response::err(
                        id,
                        "bad_args",
                        "debug-wedge SECONDS, from 1 to 300",
                    ));
                };
                h.wedge.do_send(crate::messages::mode::Wedge(
                    std::time::Duration::from_secs(seconds),
                ));
                reply(Response::ok(id, serde_json::json!({ "wedged_s": seconds })))
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
                    match h.order_stats.send(GetOrderStats).await {
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
pub(super) enum Change {
    Subscribe(Vec<String>),
    Unsubscribe(Vec<String>),
    Reload,
}

pub(super) type ChangeResult = Result<serde_json::Value, (&'static str, String)>;

impl ControlServer {
    /// Subscribes, unsubscribes or reloads; the running config is updated with what was applied.
    pub(super) fn change(&mut self, change: Change) -> ResponseActFuture<Self, ChangeResult> {
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
                    .order_stats
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
                    h.risk_limits.do_send(SetLimits(new.risk.limits()));
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
                    .add_symbols
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
                h.subscriptions.do_send(ChangeSubscriptions {
                    add: lists(&added),
                    remove: lists(&removed),
                });
            }
            if !removed.is_empty() {
                h.remove_symbols.do_send(RemoveSymbols(removed.clone()));
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

/// The market-data path's counters, the tick-to-order latency and the journal's own write
/// latency (an order's tick-to-order includes one write), for `ctl stats` and the load bench.
pub(super) async fn stats(h: &Handles, id: RequestId) -> Response {
    let (market, feed, orders, journal) = tokio::join!(
        h.market_stream.send(GetStreamStatus),
        h.feed_stats.send(GetFeedStats),
        h.order_stats.send(GetOrderStats),
        h.journal_stats.send(crate::journal::GetJournalStats),
    );
    let (Ok(market), Ok(feed), Ok(orders), Ok(journal)) = (market, feed, orders, journal) else {
        return Response::err(id, "unavailable", "an actor did not answer");
    };
    Response::ok(
        id,
        serde_json::json!({
            "stream": market.metrics,
            "feed": feed,
            "orders": { "submitted": orders.submitted, "accepted": orders.accepted, "fills": orders.fills },
            "tick_to_order": orders.tick_to_order,
            "tick_to_order_beyond_write": orders.tick_to_order_beyond_write,
            "tick_to_intent": orders.tick_to_intent,
            "journal_write": journal,
            "intent_write": orders.intent_write,
            "log": crate::telemetry::log_counts().map(|c| c.to_json()),
        }),
    )
}

/// Every strategy's figures, in the config's order.
async fn strategy_stats(h: &Handles) -> Vec<crate::messages::strategy::StrategyStats> {
    let mut out = Vec::new();
    for s in &h.strategies {
        if let Ok(stats) = s
            .stats
            .send(crate::messages::strategy::GetStrategyStats)
            .await
        {
            out.push(stats);
        }
    }
    out
}

async fn pause_strategy(h: &Handles, id: RequestId, name: &str, pause: bool) -> Response {
    let Some(one) = h.strategies.iter().find(|s| s.name == name) else {
        let known: Vec<&str> = h.strategies.iter().map(|s| s.name.as_str()).collect();
        return Response::err(
            id,
            "unknown_strategy",
            format!("no strategy {name:?}; running: {}", known.join(", ")),
        );
    };
    match one
        .pause
        .send(crate::messages::strategy::PauseStrategy(pause))
        .await
    {
        Ok(()) => Response::ok(id, serde_json::json!({ "strategy": name, "paused": pause })),
        Err(e) => Response::err(id, "unavailable", e.to_string()),
    }
}

pub(super) async fn status(h: &Handles, id: RequestId) -> Response {
    let (sup, orders, account, market, trade, feed, health) = tokio::join!(
        h.supervisor_status.send(GetSupervisorStatus),
        h.order_stats.send(GetOrderStats),
        h.account.send(GetAccount),
        h.market_stream.send(GetStreamStatus),
        h.trade_stream.send(GetStreamStatus),
        h.feed_stats.send(GetFeedStats),
        h.health.send(GetHealth),
    );
    let (Ok(sup), Ok(orders), Ok(account), Ok(market), Ok(trade), Ok(feed), Ok(health)) =
        (sup, orders, account, market, trade, feed, health)
    else {
        return Response::err(id, "unavailable", "an actor did not answer");
    };
    let account = account.unwrap_or_default();
    // Each strategy's positions are those of its symbols (a symbol belongs to one strategy).
    let strategies: Vec<serde_json::Value> = strategy_stats(h)
        .await
        .into_iter()
        .map(|s| {
            let positions: std::collections::BTreeMap<&String, &rust_decimal::Decimal> = orders
                .positions
                .iter()
                .filter(|(sym, q)| s.symbols.contains(sym) && !q.is_zero())
                .collect();
            let mine = |sym: &String| s.symbols.contains(sym);
            let realized: rust_decimal::Decimal = orders
                .by_symbol
                .iter()
                .filter(|(sym, _)| mine(sym))
                .map(|(_, b)| b.realized_pnl)
                .sum();
            let fills: u64 = orders
                .by_symbol
                .iter()
                .filter(|(sym, _)| mine(sym))
                .map(|(_, b)| b.fills)
                .sum();
            let unrealized: rust_decimal::Decimal = account
                .unrealized
                .iter()
                .filter(|(sym, _)| mine(sym))
                .map(|(_, u)| *u)
                .sum();
            serde_json::json!({
                "name": s.name,
                "kind": s.kind,
                "symbols": s.symbols,
                "paused": s.paused,
                "positions": positions,
                "fills": fills,
                "realized_pnl": realized.round_dp(2),
                "unrealized_pnl": unrealized.round_dp(2),
                "signals": s.signals,
                "orders": s.sent,
                "refused": s.refused,
                "over_allocation": s.over_allocation,
                "ignored": s.ignored,
                "cold_bars": s.cold_bars,
            })
        })
        .collect();
    Response::ok(
        id,
        serde_json::json!({
            "strategies": strategies,
            "mode": sup.mode.name(),
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
            "unrealized": account.unrealized,
            "recent_fills": orders.recent_fills,
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
