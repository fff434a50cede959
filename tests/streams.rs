//! The StreamClient actor against `traderd sim`'s WebSockets on loopback: streaming, run-time
//! subscriptions, and every stream fault, each with an assertion on what the client did and
//! the recovery time printed (`cargo test --test streams -- --nocapture` shows them).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

mod common;

use actix::Actor;
use common::actors::*;
use common::*;
use rust_decimal_macros::dec;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use traderd::actors::stream_client::{ConnectionState, Sinks, StreamClient, Subscriptions};
use traderd::alpaca::model::{OrderRequest, OrderSide};
use traderd::alpaca::stream::{ChannelLists, Codec, DataMessage};
use traderd::messages::market::TradeSubscriber;
use traderd::messages::*;

const WAIT: Duration = Duration::from_secs(15);

fn ws_url(sim: &traderd::sim::SimHandle, path: &str) -> String {
    format!("ws://{}{}", sim.addr, path)
}

#[actix_rt::test]
async fn streams_trades_and_changes_subscriptions_at_run_time() {
    let sim = start_sim(|_| {}).await;
    let (collector, seen) = collector();
    let client = market_client(
        quick_settings(StreamKind::MarketData, ws_url(&sim, "/v2/iex")),
        trades_of(&["AAPL"]),
        &collector,
        None,
    );
    wait_for("AAPL trades", WAIT, || async {
        (seen.lock().unwrap().trades("AAPL") >= 5).then_some(())
    })
    .await;
    assert_eq!(seen.lock().unwrap().quotes("MSFT"), 0);

    let add = ChannelLists {
        quotes: vec!["MSFT".into()],
        ..Default::default()
    };
    client
        .send(ChangeSubscriptions {
            add,
            remove: ChannelLists::default(),
        })
        .await
        .unwrap();
    wait_for("MSFT quotes", WAIT, || async {
        (seen.lock().unwrap().quotes("MSFT") >= 5).then_some(())
    })
    .await;

    let remove = ChannelLists {
        trades: vec!["AAPL".into()],
        ..Default::default()
    };
    client
        .send(ChangeSubscriptions {
            add: ChannelLists::default(),
            remove,
        })
        .await
        .unwrap();
    // Let the unsubscribe take effect (a few MSFT quotes), then AAPL trades must stop.
    let mark = seen.lock().unwrap().quotes("MSFT");
    wait_for("quotes after the unsubscribe", WAIT, || async {
        (seen.lock().unwrap().quotes("MSFT") >= mark + 10).then_some(())
    })
    .await;
    let aapl = seen.lock().unwrap().trades("AAPL");
    let mark = seen.lock().unwrap().quotes("MSFT");
    wait_for("more quotes", WAIT, || async {
        (seen.lock().unwrap().quotes("MSFT") >= mark + 30).then_some(())
    })
    .await;
    assert_eq!(
        seen.lock().unwrap().trades("AAPL"),
        aapl,
        "no AAPL trades after unsubscribing"
    );

    let status = client.send(GetStreamStatus).await.unwrap();
    assert_eq!(status.state, ConnectionState::Streaming);
    assert_eq!(
        (status.subscriptions.trades, status.subscriptions.quotes),
        (0, 1)
    );
    assert!(
        status.metrics.messages_received > 0
            && status.metrics.frames > 0
            && status.metrics.bytes > 0
    );
    assert!(status.metrics.last_message_at.is_some() && status.metrics.connected_since.is_some());
    sim.stop().await;
}

/// A strategy that trades on ticks gets its trades from the session itself, as their frame is
/// decoded: here there is no feed at all, and each subscriber gets only what it asked for.
#[actix_rt::test]
async fn ticks_go_to_their_subscribers_straight_from_the_session() {
    let sim = start_sim(|_| {}).await;
    let (all, all_seen) = collector();
    let (regular, regular_seen) = collector();
    let (none, none_seen) = collector();
    let subscriber = |c: &actix::Addr<Collector>, condition: Option<&str>| TradeSubscriber {
        recipient: c.clone().recipient(),
        condition: condition.map(str::to_string),
    };
    let sinks = Sinks {
        market: None,
        ticks: vec![
            subscriber(&all, None),
            subscriber(&regular, Some("@")),
            subscriber(&none, Some("Z")),
        ],
        ..Default::default()
    };
    let _client = StreamClient::new(
        quick_settings(StreamKind::MarketData, ws_url(&sim, "/v2/iex")),
        Subscriptions {
            quotes: ["MSFT".to_string()].into(),
            ..trades_of(&["AAPL"])
        },
        sinks,
        None,
    )
    .start();
    wait_for("AAPL ticks", WAIT, || async {
        (regular_seen.lock().unwrap().ticks.len() >= 5).then_some(())
    })
    .await;
    let all_ticks = std::mem::take(&mut all_seen.lock().unwrap().ticks);
    assert!(all_ticks.len() >= 5);
    for (arrived, t) in &all_ticks {
        assert_eq!(t.symbol, "AAPL", "only trades are ticks: {t:?}");
        assert!(arrived.elapsed() < WAIT);
    }
    assert!(
        regular_seen
            .lock()
            .unwrap()
            .ticks
            .iter()
            .all(|(_, t)| t.conditions.contains("@"))
    );
    assert!(
        none_seen.lock().unwrap().ticks.is_empty(),
        "no trade carries condition Z"
    );
    sim.stop().await;
}

/// On msgpack a frame's trades are decoded first and handed to the tick strategies before its
/// quotes are decoded (`stream::trades_first`): the feed still gets every message of each frame
/// (no flood trade lost, quotes too), and the ticks are the feed's trades, in the same order;
/// a strategy that wants only marked trades gets exactly those.
#[actix_rt::test]
async fn msgpack_ticks_read_first_are_the_trades_the_feed_gets() {
    use traderd::sim::flood::{FLOOD_ID_BASE, MARK};
    let sim = start_sim(|_| {}).await;
    let (feed, feed_seen) = collector();
    let (ticks, ticks_seen) = collector();
    let (marked, marked_seen) = collector();
    let mut settings = quick_settings(StreamKind::MarketData, ws_url(&sim, "/v2/iex"));
    settings.codec = Codec::Msgpack;
    let both: std::collections::BTreeSet<String> = ["AAPL".into(), "MSFT".into()].into();
    let subs = Subscriptions {
        trades: both.clone(),
        quotes: both,
        ..Default::default()
    };
    let sinks = Sinks {
        market: Some(feed.recipient()),
        ticks: vec![
            TradeSubscriber {
                recipient: ticks.recipient(),
                condition: None,
            },
            TradeSubscriber {
                recipient: marked.recipient(),
                condition: Some(MARK.into()),
            },
        ],
        ..Default::default()
    };
    let client = StreamClient::new(settings, subs, sinks, None).start();
    wait_for("streaming", WAIT, || async {
        (client.send(GetStreamStatus).await.unwrap().state == ConnectionState::Streaming)
            .then_some(())
    })
    .await;
    set_fault(
        &sim,
        serde_json::json!({"kind": "flood", "msgs_per_s": 5000, "mark_every_ms": 5}),
    )
    .await;
    let flood_trades = |s: &common::actors::Seen| {
        s.data
            .iter()
            .filter_map(|(_, m)| m.as_trade())
            .filter(|t| t.id > FLOOD_ID_BASE)
            .count()
    };
    wait_for("flood trades and quotes at the feed", WAIT, || async {
        let s = feed_seen.lock().unwrap();
        (flood_trades(&s) > 1_000 && s.quotes("AAPL") + s.quotes("MSFT") > 1_000).then_some(())
    })
    .await;
    set_fault(&sim, serde_json::json!({"kind": "flood", "msgs_per_s": 0})).await;
    // The feed first: the ticks only grow, and each frame's ticks went before its batch.
    let at_feed: Vec<_> = feed_seen
        .lock()
        .unwrap()
        .data
        .iter()
        .filter_map(|(_, m)| m.as_trade().cloned())
        .collect();
    let ticks_of = |seen: &std::sync::Mutex<common::actors::Seen>| -> Vec<_> {
        let seen = seen.lock().unwrap();
        seen.ticks.iter().map(|(_, t)| t.clone()).collect()
    };
    let ticked = ticks_of(&ticks_seen);
    assert!(ticked.len() >= at_feed.len());
    assert!(
        ticked[..at_feed.len()] == at_feed[..],
        "the ticks are the feed's trades, in order"
    );
    let ids: Vec<u64> = at_feed
        .iter()
        .filter(|t| t.id > FLOOD_ID_BASE)
        .map(|t| t.id - FLOOD_ID_BASE)
        .collect();
    assert_eq!(ids[0], 1, "from the first flood trade");
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "every flood trade, in order"
    );
    let marked_at_feed: Vec<_> = at_feed
        .iter()
        .filter(|t| t.conditions.contains(MARK))
        .cloned()
        .collect();
    let marked_ticks = ticks_of(&marked_seen);
    assert!(!marked_at_feed.is_empty(), "the flood marked some trades");
    assert!(
        marked_ticks.len() >= marked_at_feed.len()
            && marked_ticks[..marked_at_feed.len()] == marked_at_feed[..],
        "the marked trades, and only those, to the strategy that wants them"
    );
    sim.stop().await;
}

#[actix_rt::test]
async fn drop_streams_reconnects_and_resubscribes() {
    let sim = start_sim(|_| {}).await;
    let (collector, seen) = collector();
    let subs = Subscriptions {
        trades: ["AAPL".to_string()].into(),
        quotes: ["SPY".to_string()].into(),
        ..Default::default()
    };
    let client = market_client(
        quick_settings(StreamKind::MarketData, ws_url(&sim, "/v2/iex")),
        subs,
        &collector,
        None,
    );
    wait_for("first trades", WAIT, || async {
        (seen.lock().unwrap().trades("AAPL") >= 3).then_some(())
    })
    .await;
    let first_streaming = seen.lock().unwrap().streaming_since().unwrap();

    let fault_at = Instant::now();
    set_fault(&sim, serde_json::json!({"kind": "drop_streams"})).await;
    let back = wait_for("streaming again", WAIT, || async {
        seen.lock()
            .unwrap()
            .streaming_since()
            .filter(|t| *t > first_streaming)
    })
    .await;
    let recovery = back - fault_at;
    // The whole set came back: data on both channels after the reconnect.
    wait_for("trades and quotes after the reconnect", WAIT, || async {
        let s = seen.lock().unwrap();
        let after = |sym: &str, want_trade: bool| {
            s.data
                .iter()
                .filter(|(t, _)| *t > back)
                .any(|(_, m)| match m {
                    DataMessage::Trade(t) => want_trade && t.symbol == sym,
                    DataMessage::Quote(q) => !want_trade && q.symbol == sym,
                    _ => false,
                })
        };
        (after("AAPL", true) && after("SPY", false)).then_some(())
    })
    .await;
    let status = client.send(GetStreamStatus).await.unwrap();
    assert_eq!(status.metrics.reconnects, 1);
    assert_eq!(status.state, ConnectionState::Streaming);
    {
        let s = seen.lock().unwrap();
        assert!(
            s.count_events(|k| matches!(
                k,
                StreamEventKind::StateChanged {
                    to: ConnectionState::Reconnecting,
                    ..
                }
            )) == 1
        );
        assert!(
            s.count_events(|k| matches!(k, StreamEventKind::Resumed { gap_from: Some(_) })) == 1
        );
        println!(
            "drop_streams: streaming again {} ms after the drop",
            recovery.as_millis()
        );
    }
    sim.stop().await;
}

#[actix_rt::test]
async fn garbage_frames_are_counted_skipped_and_streaming_goes_on() {
    let sim = start_sim(|_| {}).await;
    let (collector, seen) = collector();
    let client = market_client(
        quick_settings(StreamKind::MarketData, ws_url(&sim, "/v2/iex")),
        trades_of(&["AAPL", "MSFT"]),
        &collector,
        None,
    );
    wait_for("first trades", WAIT, || async {
        (seen.lock().unwrap().trades("AAPL") >= 1).then_some(())
    })
    .await;
    set_fault(&sim, serde_json::json!({"kind": "garbage", "count": 8})).await;
    let started = Instant::now();
    let status = wait_for("eight bad frames", WAIT, || async {
        let st = client.send(GetStreamStatus).await.unwrap();
        (st.metrics.frames_failed + st.metrics.messages_unknown >= 8).then_some(st)
    })
    .await;
    // Invalid JSON, truncated JSON and wrong types fail the frame; an unknown `T` is skipped.
    assert_eq!(status.metrics.frames_failed, 6, "{status:?}");
    assert_eq!(status.metrics.messages_unknown, 2, "{status:?}");
    assert_eq!(
        status.metrics.reconnects, 0,
        "bad frames never cost the connection"
    );
    let after = {
        let s = seen.lock().unwrap();
        s.trades("AAPL") + s.trades("MSFT")
    };
    wait_for("trades after the garbage", WAIT, || async {
        let s = seen.lock().unwrap();
        (s.trades("AAPL") + s.trades("MSFT") > after + 5).then_some(())
    })
    .await;
    assert_eq!(
        seen.lock()
            .unwrap()
            .count_events(|k| matches!(k, StreamEventKind::FrameRejected { .. })),
        6
    );
    println!(
        "garbage: 8 bad frames skipped in {} ms without a reconnect",
        started.elapsed().as_millis()
    );
    sim.stop().await;
}

#[actix_rt::test]
async fn a_frozen_stream_is_detected_as_stale_and_reconnected() {
    let sim = start_sim(|_| {}).await;
    let (collector, seen) = collector();
    let rest = client(&sim);
    let settings = quick_settings(StreamKind::MarketData, ws_url(&sim, "/v2/iex"));
    let stale_after = settings.stale_after;
    let client = market_client(settings, trades_of(&["AAPL"]), &collector, Some(rest));
    wait_for("first trades", WAIT, || async {
        (seen.lock().unwrap().trades("AAPL") >= 1).then_some(())
    })
    .await;
    let first = seen.lock().unwrap().streaming_since().unwrap();

    set_fault(&sim, serde_json::json!({"kind": "freeze", "seconds": 3.0})).await;
    let frozen_at = Instant::now();
    let stale_at = wait_for("the stale report", WAIT, || async {
        let s = seen.lock().unwrap();
        s.events
            .iter()
            .find(|(_, e)| matches!(e.kind, StreamEventKind::Stale { .. }))
            .map(|(t, _)| *t)
    })
    .await;
    let detection = stale_at - frozen_at;
    assert!(
        detection >= stale_after - Duration::from_millis(300),
        "not before the configured time: {detection:?}"
    );
    assert!(
        detection < stale_after + Duration::from_secs(2),
        "within the configured time plus a check period: {detection:?}"
    );
    // Pings were answered during the freeze: this was staleness, not a dead connection.
    assert_eq!(seen.lock().unwrap().count_events(|k| matches!(k, StreamEventKind::StateChanged { reason, .. } if reason.contains("heartbeat"))), 0);
    let back = wait_for("streaming again", WAIT, || async {
        seen.lock()
            .unwrap()
            .streaming_since()
            .filter(|t| *t > first)
    })
    .await;
    let count = seen.lock().unwrap().trades("AAPL");
    wait_for("trades after the freeze", WAIT, || async {
        (seen.lock().unwrap().trades("AAPL") > count).then_some(())
    })
    .await;
    let data_back = Instant::now();
    println!(
        "freeze: stale detected {} ms after the freeze (stale_after {} ms); reconnected after {} ms; data again after {} ms",
        detection.as_millis(),
        stale_after.as_millis(),
        (back - frozen_at).as_millis(),
        (data_back - frozen_at).as_millis()
    );
    assert!(
        client
            .send(GetStreamStatus)
            .await
            .unwrap()
            .metrics
            .reconnects
            >= 1
    );
    sim.stop().await;
}

#[actix_rt::test]
async fn auth_failure_stops_the_client_and_its_supervisor_restarts_it_with_growing_delays() {
    use traderd::actors::health::{ConnectionHealthMonitor, GetHealth, HealthSettings, Reporter};
    let sim = start_sim(|_| {}).await;
    let (collector, seen) = collector();
    let monitor = ConnectionHealthMonitor::new(
        HealthSettings::new(&Default::default(), Default::default()),
        None,
        None,
    )
    .start();
    let settings = quick_settings(StreamKind::MarketData, ws_url(&sim, "/v2/iex"));
    let sinks = Sinks {
        market: Some(collector.clone().recipient()),
        ..Default::default()
    };
    let listener = collector.clone().recipient();
    let health = Reporter::new(monitor.clone().recipient());
    let _client = actix::Supervisor::start(move |_| {
        StreamClient::new(settings, trades_of(&["AAPL"]), sinks, None)
            .with_listener(listener)
            .with_health(health)
    });
    wait_for("first trades", WAIT, || async {
        (seen.lock().unwrap().trades("AAPL") >= 1).then_some(())
    })
    .await;
    set_fault(
        &sim,
        serde_json::json!({"kind": "reject_auth", "enabled": true}),
    )
    .await;
    set_fault(&sim, serde_json::json!({"kind": "drop_streams"})).await;
    // Each refusal is fatal for the actor: it reports, stops, and is restarted after a delay
    // that doubles, so a bad key is never a hot loop.
    let fatal_at = |s: &Seen| -> Vec<Instant> {
        s.events
            .iter()
            .filter(|(_, e)| matches!(e.kind, StreamEventKind::Fatal { .. }))
            .map(|(t, _)| *t)
            .collect()
    };
    let fatals = wait_for("three fatal refusals", WAIT, || async {
        let f = fatal_at(&seen.lock().unwrap());
        (f.len() >= 3).then_some(f)
    })
    .await;
    let gaps: Vec<Duration> = fatals.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[0] >= Duration::from_millis(450), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(950), "{gaps:?}");
    let health = monitor.send(GetHealth).await.unwrap();
    let counts = &health.sources["stream:market_data"];
    assert!(
        counts.errors >= 4,
        "failures and restarts reported: {health:?}"
    );
    assert!(health.restarts_in_window >= 2, "{health:?}");

    // The keys work again: the next restart streams, with no operator.
    set_fault(
        &sim,
        serde_json::json!({"kind": "reject_auth", "enabled": false}),
    )
    .await;
    let last_fatal = *fatals.last().unwrap();
    wait_for("streaming after a restart", WAIT, || async {
        seen.lock()
            .unwrap()
            .streaming_since()
            .filter(|t| *t > last_fatal)
    })
    .await;
    sim.stop().await;
}

#[actix_rt::test]
async fn a_second_connection_with_the_same_key_waits_after_406() {
    let sim = start_sim(|_| {}).await;
    // Someone else holds the key's one connection.
    let (mut other, _) = tokio_tungstenite::connect_async(ws_url(&sim, "/v2/iex"))
        .await
        .unwrap();
    other.next_text().await;
    let auth = serde_json::json!({"action": "auth", "key": KEY, "secret": SECRET}).to_string();
    futures_util::SinkExt::send(&mut other, Message::Text(auth.into()))
        .await
        .unwrap();
    assert!(other.next_text().await.contains("authenticated"));

    let (collector, seen) = collector();
    let settings = quick_settings(StreamKind::MarketData, ws_url(&sim, "/v2/iex"));
    let wait = settings.connection_limit_wait;
    let _client = market_client(settings, trades_of(&["AAPL"]), &collector, None);
    wait_for("the 406 refusal", WAIT, || async {
        let s = seen.lock().unwrap();
        (s.count_events(
            |k| matches!(k, StreamEventKind::StateChanged { reason, .. } if reason.contains("406")),
        ) >= 1)
            .then_some(())
    })
    .await;
    // After a 406 the client waits at least `connection_limit_wait` between attempts.
    let attempts = |s: &Seen| {
        s.events
            .iter()
            .filter(|(_, e)| {
                matches!(
                    e.kind,
                    StreamEventKind::StateChanged {
                        to: ConnectionState::Connecting,
                        ..
                    }
                )
            })
            .map(|(t, _)| *t)
            .collect::<Vec<_>>()
    };
    wait_for("a second attempt", WAIT, || async {
        (attempts(&seen.lock().unwrap()).len() >= 2).then_some(())
    })
    .await;
    let times = attempts(&seen.lock().unwrap());
    assert!(
        times[1] - times[0] >= wait - Duration::from_millis(50),
        "{:?} between attempts",
        times[1] - times[0]
    );

    futures_util::SinkExt::close(&mut other).await.unwrap();
    wait_for(
        "streaming once the other connection is gone",
        WAIT,
        || async { (seen.lock().unwrap().trades("AAPL") >= 1).then_some(()) },
    )
    .await;
    sim.stop().await;
}

#[actix_rt::test]
async fn msgpack_frames_decode_with_their_timestamps() {
    let sim = start_sim(|_| {}).await;
    let (collector, seen) = collector();
    let mut settings = quick_settings(StreamKind::MarketData, ws_url(&sim, "/v2/sip"));
    settings.codec = Codec::Msgpack;
    let subs = Subscriptions {
        trades: ["*".to_string()].into(),
        bars: ["QQQ".to_string()].into(),
        ..Default::default()
    };
    let _client = market_client(settings, subs, &collector, None);
    wait_for("trades of several symbols and a bar", WAIT, || async {
        let s = seen.lock().unwrap();
        let bars = s
            .data
            .iter()
            .filter(|(_, m)| matches!(m, DataMessage::Bar(b) if b.symbol == "QQQ"))
            .count();
        (s.trades("AAPL") > 0 && s.trades("NVDA") > 0 && bars > 0).then_some(())
    })
    .await;
    let rest = client(&sim);
    let now = rest
        .get_clock()
        .await
        .unwrap()
        .timestamp
        .with_timezone(&chrono::Utc);
    {
        let s = seen.lock().unwrap();
        for (_, m) in &s.data {
            if let DataMessage::Trade(t) = m {
                assert!(
                    (now - t.timestamp).num_seconds().abs() < 3600,
                    "msgpack timestamps are market time: {}",
                    t.timestamp
                );
                assert!(t.price > dec!(0));
            }
        }
    }
    sim.stop().await;
}

#[actix_rt::test]
async fn trade_updates_stream_and_gap_repair_after_a_reconnect() {
    let sim = start_sim(|_| {}).await;
    let (collector, seen) = collector();
    let rest = client(&sim);
    let sinks = Sinks {
        trade_updates: Some(collector.clone().recipient()),
        order_stream_ready: Some(collector.clone().recipient()),
        ..Default::default()
    };
    let settings = quick_settings(StreamKind::TradeUpdates, ws_url(&sim, "/stream"));
    let client = StreamClient::new(
        settings,
        Subscriptions::default(),
        sinks,
        Some(rest.clone().into()),
    )
    .with_listener(collector.clone().recipient())
    .start();
    wait_for("ready", WAIT, || async {
        (!seen.lock().unwrap().ready.is_empty()).then_some(())
    })
    .await;
    assert!(
        seen.lock().unwrap().ready[0].gap_from.is_none(),
        "the first connection has no gap"
    );

    let order = rest
        .submit_order(OrderRequest::market("AAPL", OrderSide::Buy, dec!(3)))
        .await
        .unwrap();
    wait_for("new and fill events", WAIT, || async {
        let s = seen.lock().unwrap();
        let events: Vec<&str> = s
            .updates
            .iter()
            .filter(|u| u.order.id == order.id)
            .map(|u| u.event.as_str())
            .collect();
        (events.contains(&"new") && events.contains(&"fill")).then_some(())
    })
    .await;
    let fill = seen
        .lock()
        .unwrap()
        .updates
        .iter()
        .find(|u| u.event == "fill")
        .cloned()
        .unwrap();
    assert_eq!(
        (fill.qty, fill.position_qty),
        (Some(dec!(3)), Some(dec!(3)))
    );

    // Events lost in a gap: the stream is frozen while an order fills, then dropped.
    set_fault(&sim, serde_json::json!({"kind": "freeze", "seconds": 1.0})).await;
    let missed = rest
        .submit_order(OrderRequest::market("MSFT", OrderSide::Buy, dec!(2)))
        .await
        .unwrap();
    wait_for("the missed order to fill", WAIT, || async {
        (rest.get_order(missed.id).await.unwrap().filled_qty == dec!(2)).then_some(())
    })
    .await;
    set_fault(&sim, serde_json::json!({"kind": "drop_streams"})).await;
    let ready = wait_for("the repaired gap", WAIT, || async {
        let s = seen.lock().unwrap();
        s.ready
            .iter()
            .find(|r| r.gap_from.is_some())
            .map(|r| (r.orders.clone(), r.fills.clone()))
    })
    .await;
    assert!(
        !seen
            .lock()
            .unwrap()
            .updates
            .iter()
            .any(|u| u.order.id == missed.id),
        "the live stream never carried it"
    );
    assert!(
        ready
            .0
            .iter()
            .any(|o| o.id == missed.id && o.filled_qty == dec!(2)),
        "repair found the missed order"
    );
    assert!(
        ready.1.iter().any(|f| f.order_id == missed.id),
        "and its fill"
    );
    assert_eq!(
        client.send(GetStreamStatus).await.unwrap().state,
        ConnectionState::Streaming
    );
    sim.stop().await;
}

/// Reads the next text frame of a raw test connection.
trait NextText {
    async fn next_text(&mut self) -> String;
}

impl<S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin>
    NextText for S
{
    async fn next_text(&mut self) -> String {
        use futures_util::StreamExt;
        loop {
            match self.next().await {
                Some(Ok(Message::Text(t))) => return t.to_string(),
                Some(Ok(_)) => continue,
                other => panic!("connection ended: {other:?}"),
            }
        }
    }
}

/// A consumer that takes its time, in its own arbiter (thread), with a two-message mailbox.
struct SlowConsumer(std::sync::Arc<std::sync::Mutex<Vec<DataMessage>>>);

impl actix::Actor for SlowConsumer {
    type Context = actix::Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(2);
    }
}

impl actix::Handler<MarketBatch> for SlowConsumer {
    type Result = ();
    fn handle(&mut self, msg: MarketBatch, _: &mut Self::Context) {
        std::thread::sleep(Duration::from_millis(15));
        self.0.lock().unwrap().extend(msg.data);
    }
}

/// A market-data client streaming `subs` into `sinks`, under the simulator's flood of 20,000
/// messages a second once it streams.
async fn flooded_client(
    sim: &traderd::sim::SimHandle,
    subs: Subscriptions,
    sinks: Sinks,
) -> actix::Addr<StreamClient> {
    flooded_client_by(
        sim,
        subs,
        sinks,
        serde_json::json!({"kind": "flood", "msgs_per_s": 20000}),
    )
    .await
}

/// A market-data client streaming `subs` into `sinks`, under the simulator's `flood` once it
/// streams.
async fn flooded_client_by(
    sim: &traderd::sim::SimHandle,
    subs: Subscriptions,
    sinks: Sinks,
    flood: serde_json::Value,
) -> actix::Addr<StreamClient> {
    let client = StreamClient::new(
        quick_settings(StreamKind::MarketData, ws_url(sim, "/v2/iex")),
        subs,
        sinks,
        None,
    )
    .start();
    wait_for("streaming", WAIT, || async {
        (client.send(GetStreamStatus).await.unwrap().state == ConnectionState::Streaming)
            .then_some(())
    })
    .await;
    set_fault(sim, flood).await;
    client
}

/// A strategy slower than the flood, on ticks: its mailbox fills, its trades are held (not
/// dropped, in order) and offered again.
/// Trade ids, and the size of each message.
struct SlowTicks(
    std::sync::Arc<std::sync::Mutex<Vec<u64>>>,
    std::sync::Arc<std::sync::Mutex<Vec<usize>>>,
);

impl actix::Actor for SlowTicks {
    type Context = actix::Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(2);
    }
}

impl actix::Handler<TradeTicks> for SlowTicks {
    type Result = ();
    fn handle(&mut self, msg: TradeTicks, _: &mut Self::Context) {
        std::thread::sleep(Duration::from_millis(15));
        self.1.lock().unwrap().push(msg.trades.len());
        self.0
            .lock()
            .unwrap()
            .extend(msg.trades.iter().map(|t| t.id));
    }
}

#[actix_rt::test]
async fn a_slow_tick_strategy_gets_every_trade_in_order() {
    use traderd::sim::flood::FLOOD_ID_BASE;
    let sim = start_sim(|_| {}).await;
    let ticks = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sizes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let arbiter = actix::Arbiter::new();
    let slow = SlowTicks::start_in_arbiter(&arbiter.handle(), {
        let (ticks, sizes) = (ticks.clone(), sizes.clone());
        move |_| SlowTicks(ticks, sizes)
    });
    let sinks = Sinks {
        market: None,
        ticks: vec![TradeSubscriber {
            recipient: slow.recipient(),
            condition: None,
        }],
        ..Default::default()
    };
    let client = flooded_client(&sim, trades_of(&["AAPL"]), sinks).await;
    let flood = |ticks: &[u64]| -> Vec<u64> {
        ticks
            .iter()
            .filter(|i| **i > FLOOD_ID_BASE)
            .map(|i| i - FLOOD_ID_BASE)
            .collect()
    };

    // A handler of 15 ms and a mailbox of 2: at this rate the strategy's mailbox is full
    // most of the time, so most trades wait in the session before they are handed over.
    wait_for(
        "thousands of flood trades at the slow strategy",
        WAIT,
        || async { (flood(&ticks.lock().unwrap()).len() > 3_000).then_some(()) },
    )
    .await;
    set_fault(&sim, serde_json::json!({"kind": "flood", "msgs_per_s": 0})).await;
    let got = flood(&ticks.lock().unwrap());
    assert_eq!(got[0], 1, "from the first flood trade");
    assert!(
        got.windows(2).all(|w| w[1] == w[0] + 1),
        "every flood trade, in order: {} of them",
        got.len()
    );
    // A frame holds at most 100 messages: larger hand-overs are frames held while the
    // strategy's mailbox was full, then given together.
    let largest = sizes.lock().unwrap().iter().copied().max().unwrap_or(0);
    assert!(
        largest > 100,
        "held trades handed over together (largest {largest})"
    );
    let status = client.send(GetStreamStatus).await.unwrap();
    assert!(status.metrics.messages_received > 3_000);
    arbiter.stop();
    sim.stop().await;
}

#[actix_rt::test]
async fn under_a_flood_quotes_are_conflated_and_no_trade_is_lost() {
    use traderd::sim::flood::FLOOD_ID_BASE;
    let sim = start_sim(|_| {}).await;
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let arbiter = actix::Arbiter::new();
    let slow = SlowConsumer::start_in_arbiter(&arbiter.handle(), {
        let got = got.clone();
        move |_| SlowConsumer(got)
    });
    let sinks = Sinks {
        market: Some(slow.recipient()),
        ..Default::default()
    };
    let subs = Subscriptions {
        trades: ["AAPL".to_string()].into(),
        quotes: ["*".to_string()].into(),
        ..Default::default()
    };
    let client = flooded_client(&sim, subs, sinks).await;
    // Quotes are conflated only while the consumer's mailbox refuses a batch (a frame goes
    // whole to a consumer that keeps up): this sees the mailbox's bound hold. It did not
    // while each try went through a fresh clone of the sender (actix refuses a sender only
    // once it has filled the mailbox itself).
    let status = wait_for("quotes conflated under the flood", WAIT, || async {
        let st = client.send(GetStreamStatus).await.unwrap();
        (st.metrics.quotes_conflated > 100 && st.metrics.messages_received > 20_000).then_some(st)
    })
    .await;
    set_fault(&sim, serde_json::json!({"kind": "flood", "msgs_per_s": 0})).await;
    // Every flood trade the client received reaches the consumer, in order and without gaps.
    let received = status.metrics.messages_received;
    wait_for("the consumer to catch up", WAIT, || async {
        let st = client.send(GetStreamStatus).await.unwrap();
        (st.metrics.messages_processed + st.metrics.quotes_conflated >= received).then_some(())
    })
    .await;
    let ids: Vec<u64> = got
        .lock()
        .unwrap()
        .iter()
        .filter_map(|m| match m {
            DataMessage::Trade(t) if t.id > FLOOD_ID_BASE => Some(t.id - FLOOD_ID_BASE),
            _ => None,
        })
        .collect();
    // How many depends on the machine's load; that none is missing does not.
    assert!(ids.len() > 1_000, "{} flood trades", ids.len());
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "flood trades arrive complete and in order"
    );
    assert_eq!(ids[0], 1);
    println!(
        "flood: {} trades delivered without a gap, {} quotes conflated, {} messages received",
        ids.len(),
        status.metrics.quotes_conflated,
        status.metrics.messages_received
    );
    arbiter.stop();
    sim.stop().await;
}

/// A consumer that keeps up: the flood trades' ids, and how many messages it got.
struct Recorder {
    ids: std::sync::Arc<std::sync::Mutex<Vec<u64>>>,
    messages: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl actix::Actor for Recorder {
    type Context = actix::Context<Self>;
}

impl Recorder {
    fn record<'a>(&self, trades: impl Iterator<Item = &'a traderd::alpaca::stream::StreamTrade>) {
        use traderd::sim::flood::FLOOD_ID_BASE;
        let mut ids = self.ids.lock().unwrap();
        ids.extend(
            trades
                .filter(|t| t.id > FLOOD_ID_BASE)
                .map(|t| t.id - FLOOD_ID_BASE),
        );
    }
}

impl actix::Handler<MarketBatch> for Recorder {
    type Result = ();
    fn handle(&mut self, msg: MarketBatch, _: &mut Self::Context) {
        self.messages
            .fetch_add(msg.data.len() as u64, std::sync::atomic::Ordering::Relaxed);
        self.record(msg.data.iter().filter_map(DataMessage::as_trade));
    }
}

impl actix::Handler<TradeTicks> for Recorder {
    type Result = ();
    fn handle(&mut self, msg: TradeTicks, _: &mut Self::Context) {
        self.record(msg.trades.iter());
    }
}

/// Flat out (the simulator's frames back to back, so the session reads several a turn and,
/// without tick strategies or once it reads faster than they come, decodes them straight
/// into what it gathers for the feed): every trade reaches the feed, in order, every message
/// received is handed on or conflated.
#[actix_rt::test]
async fn flat_out_every_trade_reaches_the_feed_in_order_and_nothing_is_lost() {
    flat_out(false).await;
}

/// The same with a strategy on ticks: it gets every trade the feed gets, in order.
#[actix_rt::test]
async fn flat_out_every_trade_reaches_the_feed_and_the_ticks_in_order_and_nothing_is_lost() {
    flat_out(true).await;
}

async fn flat_out(with_ticks: bool) {
    let sim = start_sim(|_| {}).await;
    let arbiter = actix::Arbiter::new();
    let recorder = |arbiter: &actix::Arbiter| {
        let ids = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let messages = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let addr = Recorder::start_in_arbiter(&arbiter.handle(), {
            let (ids, messages) = (ids.clone(), messages.clone());
            move |_| Recorder { ids, messages }
        });
        (addr, ids, messages)
    };
    let (feed, feed_ids, feed_messages) = recorder(&arbiter);
    let (ticks, tick_ids, _) = recorder(&arbiter);
    let sinks = Sinks {
        market: Some(feed.recipient()),
        ticks: if with_ticks {
            vec![TradeSubscriber {
                recipient: ticks.recipient(),
                condition: None,
            }]
        } else {
            Vec::new()
        },
        ..Default::default()
    };
    let subs = Subscriptions {
        trades: ["AAPL".to_string(), "MSFT".to_string()].into(),
        quotes: ["*".to_string()].into(),
        bars: ["*".to_string()].into(),
        ..Default::default()
    };
    let client = flooded_client_by(
        &sim,
        subs,
        sinks,
        serde_json::json!({"kind": "flood", "max": true}),
    )
    .await;
    wait_for("100,000 messages flat out", WAIT, || async {
        let st = client.send(GetStreamStatus).await.unwrap();
        (st.metrics.messages_received > 100_000).then_some(())
    })
    .await;
    set_fault(&sim, serde_json::json!({"kind": "flood", "msgs_per_s": 0})).await;
    // Everything received handed on (or conflated), the feed's and the ticks' handlers done,
    // and nothing more arriving (the frames already sent still come in after the flood stops).
    let last = std::cell::Cell::new(0);
    let status = wait_for("the feed and the ticks to catch up", WAIT, || async {
        let st = client.send(GetStreamStatus).await.unwrap();
        let m = &st.metrics;
        let fed = feed_messages.load(std::sync::atomic::Ordering::Relaxed);
        let trades = (
            feed_ids.lock().unwrap().len(),
            tick_ids.lock().unwrap().len(),
        );
        let settled = last.replace(m.messages_received) == m.messages_received;
        (settled
            && m.messages_processed + m.quotes_conflated == m.messages_received
            && fed == m.messages_processed
            && (trades.0 == trades.1 || !with_ticks))
            .then_some(st)
    })
    .await;
    let m = &status.metrics;
    let in_order =
        |ids: &[u64]| ids.first() == Some(&1) && ids.windows(2).all(|w| w[1] == w[0] + 1);
    let feed_ids = feed_ids.lock().unwrap().clone();
    assert!(feed_ids.len() > 1_000, "{} flood trades", feed_ids.len());
    assert!(
        in_order(&feed_ids),
        "the feed's flood trades complete and in order"
    );
    let tick_ids = tick_ids.lock().unwrap().clone();
    if with_ticks {
        assert!(in_order(&tick_ids), "the ticks complete and in order");
        assert_eq!(tick_ids.len(), feed_ids.len(), "the same trades as ticks");
    } else {
        assert!(tick_ids.is_empty());
    }
    assert_eq!(m.messages_unknown, 0);
    println!(
        "flat out: {} messages in {} frames, {} trades, {} quotes conflated",
        m.messages_received,
        m.frames,
        feed_ids.len(),
        m.quotes_conflated
    );
    arbiter.stop();
    sim.stop().await;
}

#[actix_rt::test]
async fn the_simulator_streams_updated_bars_statuses_and_lulds() {
    // 600x: a market minute every 0.1 s, so bars, their corrections and bands come quickly.
    let sim = start_sim(|s| s.speed = 600.0).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(&sim, "/v2/iex"))
        .await
        .unwrap();
    ws.next_text().await;
    let send = |v: serde_json::Value| Message::Text(v.to_string().into());
    futures_util::SinkExt::send(
        &mut ws,
        send(serde_json::json!({"action": "auth", "key": KEY, "secret": SECRET})),
    )
    .await
    .unwrap();
    assert!(ws.next_text().await.contains("authenticated"));
    futures_util::SinkExt::send(
        &mut ws,
        send(serde_json::json!({"action": "subscribe", "updatedBars": ["*"], "statuses": ["AAPL"], "lulds": ["*"]})),
    )
    .await
    .unwrap();
    assert!(ws.next_text().await.contains("subscription"));
    admin_post(
        &sim,
        "halt",
        serde_json::json!({"symbol": "AAPL", "halted": true}),
    )
    .await;
    let (mut updated, mut luld, mut halt) = (0, 0, None);
    let deadline = Instant::now() + WAIT;
    while (updated == 0 || luld == 0 || halt.is_none()) && Instant::now() < deadline {
        let text = tokio::time::timeout(WAIT, ws.next_text()).await.unwrap();
        for m in traderd::alpaca::stream::decode_data_frame(Codec::Json, text.as_bytes()).unwrap() {
            match m {
                DataMessage::Bar(b) if b.kind == traderd::alpaca::stream::BarKind::Updated => {
                    updated += 1
                }
                DataMessage::Luld(l) => {
                    assert!(l.limit_down < l.limit_up, "{l:?}");
                    luld += 1;
                }
                DataMessage::Status(s) => halt = Some(s),
                _ => {}
            }
        }
    }
    let halt = halt.expect("a status message for the halt");
    assert_eq!(
        (halt.symbol.as_str(), halt.status_code.as_str()),
        ("AAPL", "H")
    );
    assert!(
        updated > 0 && luld > 0,
        "updated bars {updated}, lulds {luld}"
    );
    sim.stop().await;
}
