//! The desk's decisions, without a runtime: each test feeds it what the broker, the stream
//! and the journal would say, in the order that makes the case, and checks what it answers.
//! These are the cases the daemon tests cover end to end (tests/daemon.rs, tests/chaos.rs).

use super::*;
use crate::alpaca::model::{Listing, NonTradeActivity, Position, TradeActivity, TradeUpdate};
use crate::domain::ConnectionState;
use crate::journal::store::StoredIntent;
use chrono::TimeZone;
use rust_decimal_macros::dec;
use std::collections::BTreeMap;

const ACK: Duration = Duration::from_secs(5);

fn t(sec: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 14, 30, 0).unwrap() + chrono::Duration::seconds(sec)
}

/// The broker's order `coid` (broker id `id`), `filled` of `qty` at `avg`, as of `sec`.
fn order(coid: &str, id: u128, status: &str, qty: Decimal, filled: Decimal, sec: i64) -> Order {
    order_with(coid, id, status, qty, filled, sec, serde_json::json!(null))
}

fn order_with(
    coid: &str,
    id: u128,
    status: &str,
    qty: Decimal,
    filled: Decimal,
    sec: i64,
    legs: serde_json::Value,
) -> Order {
    let symbol = coid.rsplit('-').next().unwrap();
    let avg = (filled > Decimal::ZERO).then(|| "100".to_string());
    serde_json::from_value(serde_json::json!({
        "id": Uuid::from_u128(id), "client_order_id": coid,
        "created_at": t(0), "updated_at": t(sec), "submitted_at": t(0),
        "asset_id": Uuid::nil(), "symbol": symbol, "qty": qty.to_string(),
        "filled_qty": filled.to_string(), "filled_avg_price": avg,
        "order_type": "market", "type": "market", "side": "buy", "time_in_force": "day",
        "status": status, "legs": legs,
    }))
    .unwrap()
}

fn update(event: &str, o: Order, exec: u128) -> TradeUpdate {
    TradeUpdate {
        event: event.into(),
        execution_id: Some(Uuid::from_u128(exec)),
        timestamp: Some(o.updated_at),
        price: o.filled_avg_price,
        qty: Some(o.filled_qty),
        order: o,
        position_qty: None,
    }
}

fn position(symbol: &str, qty: Decimal, class: &str) -> Position {
    serde_json::from_value(serde_json::json!({
        "asset_id": Uuid::nil(), "symbol": symbol, "exchange": "NASDAQ", "asset_class": class,
        "avg_entry_price": "100", "qty": qty.to_string(), "side": "long", "cost_basis": "0",
    }))
    .unwrap()
}

fn buy(symbol: &str, qty: Decimal, purpose: Purpose) -> Approved {
    Approved::assumed(Intent::market(symbol, OrderSide::Buy, qty, purpose))
}

/// A reconciliation that read `g` (run 1 and the journal's positions when it is the first).
fn reconcile_with(desk: &mut OrderDesk, mut g: Gathered, now: DateTime<Utc>) -> Vec<Effect> {
    let start = desk.begin_reconcile().expect("no reconciliation under way");
    if start.need_run {
        g.run = Some(1);
    }
    if start.load_positions && g.positions.is_none() {
        g.positions = Some(BTreeMap::new());
    }
    desk.on_reconciled(start, Ok(g), now)
}

/// Reconciled with an empty account, the stream ready.
fn ready() -> OrderDesk {
    let mut desk = OrderDesk::new(ACK);
    desk.connect_risk();
    reconcile_with(&mut desk, Gathered::default(), t(0));
    desk.on_stream_ready(&[], false, t(0));
    assert!(desk.ready());
    desk
}

fn fills(effects: &[Effect]) -> Vec<(Decimal, Decimal)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Journal(Record::Fill(f)) => Some((f.qty, f.price)),
            _ => None,
        })
        .collect()
}

fn states(effects: &[Effect]) -> Vec<OrderStatus> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Journal(Record::State(s)) => Some(s.status),
            _ => None,
        })
        .collect()
}

fn events(effects: &[Effect]) -> Vec<&'static str> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Journal(Record::Event(kind, _)) => Some(*kind),
            _ => None,
        })
        .collect()
}

fn intents(effects: &[Effect]) -> Vec<OrderIntent> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Journal(Record::Intent(i)) => Some(i.clone()),
            _ => None,
        })
        .collect()
}

fn stored(coid: &str, qty: Decimal, request: serde_json::Value) -> StoredIntent {
    let symbol = coid.rsplit('-').next().unwrap();
    StoredIntent {
        intent: OrderIntent {
            client_order_id: coid.into(),
            symbol: symbol.into(),
            side: OrderSide::Buy,
            qty,
            request,
            correlation_id: "c".into(),
            created_at: t(0),
        },
        broker_order_id: None,
        status: None,
        filled_qty: Decimal::ZERO,
    }
}

#[test]
fn orders_wait_for_reconciliation_and_the_stream_and_closes_only_for_reconciliation() {
    // (reconciled?, stream ready?, purpose, taken?)
    let rows = [
        (false, false, Purpose::Exit, false),
        (false, true, Purpose::Flatten, false),
        (true, false, Purpose::Exit, false),
        (true, false, Purpose::Flatten, true),
        (true, true, Purpose::Exit, true),
    ];
    for (reconciled, streaming, purpose, taken) in rows {
        let mut desk = OrderDesk::new(ACK);
        if streaming {
            desk.on_stream_ready(&[], false, t(0));
        }
        if reconciled {
            reconcile_with(&mut desk, Gathered::default(), t(0));
        }
        let r = desk.submit(buy("AAPL", dec!(1), purpose.clone()), t(1));
        assert_eq!(r.is_ok(), taken, "{reconciled} {streaming} {purpose:?}");
    }
}

#[test]
fn a_fill_before_the_answer_is_booked_once_and_the_late_answer_changes_nothing() {
    let mut desk = ready();
    let s = desk
        .submit(buy("AAPL", dec!(10), Purpose::Exit), t(1))
        .unwrap();
    assert_eq!(s.client_order_id, "td-1-1-AAPL");
    assert_eq!(s.request.client_order_id.as_deref(), Some("td-1-1-AAPL"));
    assert!(desk.view().busy_symbols.contains("AAPL"), "in flight");
    // The stream's fill comes before the POST answer.
    let filled = order(&s.client_order_id, 1, "filled", dec!(10), dec!(10), 2);
    let e = desk.on_updates(&[update("fill", filled, 7)], t(2));
    assert_eq!(fills(&e), vec![(dec!(10), dec!(100))]);
    assert_eq!(states(&e), vec![OrderStatus::Filled]);
    // The answer, a snapshot from before the fill.
    let answer = order(&s.client_order_id, 1, "new", dec!(10), dec!(0), 1);
    let e = desk.on_sent(&s.client_order_id, Ok(Ok(answer)), t(3));
    assert!(fills(&e).is_empty(), "no second fill: {e:?}");
    assert!(states(&e).is_empty(), "a final state is kept: {e:?}");
    assert!(e.contains(&Effect::Alert(Alert::OrderAccepted)));
    let v = desk.view();
    assert_eq!(v.positions.get("AAPL"), Some(&dec!(10)));
    assert!(v.busy_symbols.is_empty() && v.open_orders == 0);
    let stats = desk.stats();
    assert_eq!((stats.submitted, stats.accepted, stats.fills), (1, 1, 1));
}

/// What a lookup finds, the fills booked, the states journaled, the never-sent count.
type Lookup = (
    Option<Order>,
    Vec<(Decimal, Decimal)>,
    Vec<OrderStatus>,
    u64,
);

#[test]
fn an_answer_lost_is_looked_up_after_the_ack_timeout_never_resent() {
    let ambiguous = || BrokerError::Ambiguous {
        client_order_id: "td-1-1-AAPL".into(),
        attempts: 3,
        detail: "timed out".into(),
    };
    let rows: [Lookup; 2] = [
        (
            Some(order("td-1-1-AAPL", 1, "filled", dec!(10), dec!(10), 3)),
            vec![(dec!(10), dec!(100))],
            vec![OrderStatus::Filled],
            0,
        ),
        (None, vec![], vec![OrderStatus::Rejected], 1),
    ];
    for (found, booked, journaled, never_sent) in rows {
        let mut desk = ready();
        let s = desk
            .submit(buy("AAPL", dec!(10), Purpose::Exit), t(1))
            .unwrap();
        let e = desk.on_sent(&s.client_order_id, Ok(Err(ambiguous())), t(2));
        assert!(states(&e).is_empty() && events(&e).is_empty(), "{e:?}");
        assert_eq!(
            desk.poll_plan(t(3)),
            None,
            "not overdue yet (the stream is up)"
        );
        let plan = desk.poll_plan(t(7)).expect("overdue");
        assert_eq!(plan.lookups, vec![s.client_order_id.clone()]);
        assert_eq!(desk.poll_plan(t(7)), None, "one poll at a time");
        let e = desk.on_polled(&plan, vec![(s.client_order_id.clone(), Ok(found))], t(8));
        assert_eq!(fills(&e), booked);
        assert_eq!(states(&e), journaled);
        assert!(intents(&e).is_empty(), "never resent");
        let stats = desk.stats();
        assert_eq!((stats.lookups, stats.intents_never_sent), (1, never_sent));
        assert_eq!(desk.view().open_orders, 0);
    }
}

#[test]
fn a_duplicate_event_and_a_stale_poll_book_nothing_twice_and_undo_nothing() {
    let mut desk = ready();
    let s = desk
        .submit(buy("MSFT", dec!(10), Purpose::Exit), t(1))
        .unwrap();
    let coid = s.client_order_id.clone();
    desk.on_sent(
        &coid,
        Ok(Ok(order(&coid, 2, "new", dec!(10), dec!(0), 1))),
        t(1),
    );
    let part = update(
        "partial_fill",
        order(&coid, 2, "partially_filled", dec!(10), dec!(4), 2),
        8,
    );
    let full = update("fill", order(&coid, 2, "filled", dec!(10), dec!(10), 3), 9);
    // (batch, fills booked by it)
    let rows = [
        (vec![part.clone()], vec![(dec!(4), dec!(100))]),
        (vec![part.clone()], vec![]),
        (vec![full.clone(), full.clone()], vec![(dec!(6), dec!(100))]),
        (vec![part], vec![]),
    ];
    for (batch, booked) in rows {
        assert_eq!(fills(&desk.on_updates(&batch, t(4))), booked);
    }
    // The stream goes down; a poll answers from a replica that has not seen the fill.
    desk.on_stream_state(ConnectionState::Reconnecting);
    let stale = order(&coid, 2, "partially_filled", dec!(10), dec!(4), 2);
    let plan = PollPlan {
        lookups: vec![coid.clone()],
        overdue: HashSet::new(),
    };
    let e = desk.on_polled(&plan, vec![(coid.clone(), Ok(Some(stale)))], t(5));
    assert!(fills(&e).is_empty() && states(&e).is_empty(), "{e:?}");
    assert_eq!(desk.book().get(&coid).unwrap().filled_qty, dec!(10));
    assert_eq!(desk.view().positions.get("MSFT"), Some(&dec!(10)));
    assert_eq!(desk.stats().fills, 2);
}

#[test]
fn the_stream_down_polls_every_open_order_and_a_missed_fill_is_found() {
    let mut desk = ready();
    let s = desk
        .submit(buy("AAPL", dec!(10), Purpose::Exit), t(1))
        .unwrap();
    let coid = s.client_order_id;
    desk.on_sent(
        &coid,
        Ok(Ok(order(&coid, 1, "new", dec!(10), dec!(0), 1))),
        t(1),
    );
    assert_eq!(
        desk.poll_plan(t(2)),
        None,
        "the stream is up and the order answered"
    );
    desk.on_stream_state(ConnectionState::Failed);
    let plan = desk
        .poll_plan(t(2))
        .expect("polled while the stream is down");
    assert_eq!(plan.lookups, vec![coid.clone()]);
    assert!(plan.overdue.is_empty());
    let filled = order(&coid, 1, "filled", dec!(10), dec!(10), 2);
    let e = desk.on_polled(&plan, vec![(coid.clone(), Ok(Some(filled)))], t(2));
    assert_eq!(fills(&e), vec![(dec!(10), dec!(100))]);
    assert_eq!(desk.stats().polls, 1);
}

#[test]
fn bracket_legs_are_learned_once_and_their_fills_booked() {
    let mut desk = ready();
    let entry = Purpose::Entry {
        take_profit: Some(dec!(110)),
        stop_loss: Some(dec!(90)),
        trail_pct: None,
    };
    let s = desk.submit(buy("AAPL", dec!(10), entry), t(1)).unwrap();
    assert_eq!(s.request.order_class, Some(OrderClass::Bracket));
    let coid = s.client_order_id.clone();
    let legs = serde_json::json!([
        serde_json::to_value(order("leg-tp-AAPL", 11, "held", dec!(10), dec!(0), 1)).unwrap(),
        serde_json::to_value(order("leg-sl-AAPL", 12, "held", dec!(10), dec!(0), 1)).unwrap(),
    ]);
    let answer = order_with(&coid, 10, "filled", dec!(10), dec!(10), 1, legs);
    let e = desk.on_sent(&coid, Ok(Ok(answer.clone())), t(2));
    let learned: Vec<_> = intents(&e)
        .into_iter()
        .map(|i| (i.client_order_id, i.request["leg_of"].clone()))
        .collect();
    assert_eq!(
        learned,
        vec![
            ("leg-tp-AAPL".to_string(), serde_json::json!(coid)),
            ("leg-sl-AAPL".to_string(), serde_json::json!(coid)),
        ]
    );
    // The same parent reported again (the stream, a gap repair) teaches nothing new.
    let again = desk.on_updates(&[update("fill", answer, 5)], t(3));
    assert!(intents(&again).is_empty(), "{again:?}");
    // The take-profit leg fills: booked like any order of ours.
    let tp = order("leg-tp-AAPL", 11, "filled", dec!(10), dec!(10), 4);
    let e = desk.on_updates(&[update("fill", tp, 6)], t(4));
    assert_eq!(fills(&e), vec![(dec!(10), dec!(100))]);
    assert_eq!(desk.stats().fills, 2);
}

#[test]
fn a_filled_entry_with_a_trail_asks_for_its_stop_once() {
    let mut desk = ready();
    let entry = Purpose::Entry {
        take_profit: None,
        stop_loss: None,
        trail_pct: Some(dec!(2)),
    };
    let s = desk.submit(buy("AAPL", dec!(10), entry), t(1)).unwrap();
    let coid = s.client_order_id;
    let filled = order(&coid, 1, "filled", dec!(10), dec!(10), 2);
    let e = desk.on_sent(&coid, Ok(Ok(filled.clone())), t(2));
    let protects: Vec<_> = e
        .iter()
        .filter_map(|e| match e {
            Effect::Protect { entry, intent } => Some((entry.clone(), intent.side, intent.qty)),
            _ => None,
        })
        .collect();
    assert_eq!(protects, vec![(coid.clone(), OrderSide::Sell, dec!(10))]);
    let again = desk.on_updates(&[update("fill", filled, 3)], t(3));
    assert!(!again.iter().any(|e| matches!(e, Effect::Protect { .. })));
}

#[test]
fn an_exit_clears_our_orders_on_the_symbol_and_sends_no_more_than_is_left() {
    // (left after clearing, quantity sent; None: dropped with an event, no state journaled)
    let rows = [
        (Ok(dec!(10)), Some(dec!(10))),
        (Ok(dec!(4)), Some(dec!(4))),
        (Ok(dec!(0)), None),
        (Err("cannot cancel".to_string()), None),
    ];
    for (left, sent) in rows {
        let mut desk = ready();
        let stop = desk
            .submit(
                buy("AAPL", dec!(10), Purpose::Protect { trail_pct: dec!(1) }),
                t(1),
            )
            .unwrap();
        let sc = stop.client_order_id.clone();
        desk.on_sent(
            &sc,
            Ok(Ok(order(&sc, 5, "new", dec!(10), dec!(0), 1))),
            t(1),
        );
        let exit = desk
            .submit(
                Approved::assumed(Intent::market(
                    "AAPL",
                    OrderSide::Sell,
                    dec!(10),
                    Purpose::Exit,
                )),
                t(2),
            )
            .unwrap();
        assert_eq!(exit.clear, vec![Uuid::from_u128(5)]);
        match (
            desk.after_clear(exit.record, exit.request, left, t(3)),
            sent,
        ) {
            (Ok((record, request)), Some(qty)) => {
                assert_eq!((record.qty, request.qty), (qty, Some(qty)));
                assert_eq!(desk.book().get(&record.client_order_id).unwrap().qty, qty);
            }
            (Err(effects), None) => {
                assert!(states(&effects).is_empty(), "never journaled: {effects:?}");
                assert_eq!(events(&effects), vec!["order_not_sent"]);
            }
            (other, sent) => panic!("{other:?} for {sent:?}"),
        }
    }
}

#[test]
fn a_refusal_closes_the_intent_and_tells_health_unless_retryable() {
    let mut desk = ready();
    let s = desk
        .submit(buy("AAPL", dec!(10), Purpose::Exit), t(1))
        .unwrap();
    let refusal = BrokerError::Api {
        endpoint: "POST /v2/orders".into(),
        status: 403,
        code: Some(40310000),
        message: "insufficient buying power".into(),
        body: None,
    };
    let e = desk.on_sent(&s.client_order_id, Ok(Err(refusal)), t(2));
    assert_eq!(states(&e), vec![OrderStatus::Rejected]);
    assert_eq!(events(&e), vec!["order_not_sent"]);
    assert!(
        e.iter()
            .any(|e| matches!(e, Effect::Alert(Alert::OrderRejected { .. })))
    );
    assert_eq!(desk.stats().refused_by_broker, 1);
    assert_eq!(desk.view().open_orders, 0);
}

#[test]
fn a_restart_forgets_what_was_in_flight_and_reconciles_before_any_order() {
    let mut desk = ready();
    let s = desk
        .submit(buy("AAPL", dec!(1), Purpose::Exit), t(1))
        .unwrap();
    let e = desk.restarted();
    assert!(matches!(&e[..], [Effect::Alert(Alert::Restarted { .. })]));
    assert!(!desk.ready());
    assert!(
        desk.submit(buy("AAPL", dec!(1), Purpose::Exit), t(2))
            .is_err()
    );
    // The reconciliation after the restart keeps the run: ids go on, never reused.
    reconcile_with(&mut desk, Gathered::default(), t(3));
    let next = desk
        .submit(buy("AAPL", dec!(1), Purpose::Exit), t(4))
        .unwrap();
    assert_ne!(next.client_order_id, s.client_order_id);
}

mod reconciling;

#[test]
fn a_symbol_is_busy_while_its_entry_is_in_flight_or_open_and_not_for_a_stop_alone() {
    let mut desk = ready();
    let busy = |desk: &OrderDesk, symbol: &str| desk.view().busy_symbols.contains(symbol);
    assert!(!busy(&desk, "AAPL"));
    let entry = Purpose::Entry {
        take_profit: None,
        stop_loss: None,
        trail_pct: None,
    };
    let s = desk.submit(buy("AAPL", dec!(10), entry), t(1)).unwrap();
    let coid = s.client_order_id;
    assert!(busy(&desk, "AAPL"), "in flight");
    assert!(!busy(&desk, "MSFT"), "another symbol");
    let open = order(&coid, 1, "new", dec!(10), dec!(0), 2);
    desk.on_sent(&coid, Ok(Ok(open)), t(2));
    assert!(busy(&desk, "AAPL"), "accepted, open");
    let filled = order(&coid, 1, "filled", dec!(10), dec!(10), 3);
    desk.on_updates(&[update("fill", filled, 7)], t(3));
    assert!(!busy(&desk, "AAPL"), "filled");
    // The entry's trailing stop, open: it guards the position, it is not a trade in progress.
    let stop = desk
        .submit(
            buy("AAPL", dec!(10), Purpose::Protect { trail_pct: dec!(2) }),
            t(4),
        )
        .unwrap();
    let open = order(&stop.client_order_id, 2, "new", dec!(10), dec!(0), 5);
    desk.on_sent(&stop.client_order_id, Ok(Ok(open)), t(5));
    assert!(!busy(&desk, "AAPL"), "a stop alone");
}

#[test]
fn the_map_kept_per_order_holds_three_thousand_orders_without_growing() {
    // A growing table rehashes into memory never touched: a pause on the order path.
    let mut desk = ready();
    let made = desk.kept.capacity();
    assert!(made >= 3_000, "capacity {made}");
    assert!(desk.kept.is_empty());
    for _ in 0..3_000 {
        desk.submit(buy("AAPL", dec!(1), Purpose::Exit), t(1))
            .expect("submitted");
    }
    assert_eq!(desk.kept.len(), 3_000);
    assert_eq!(desk.kept.capacity(), made, "the map grew");
}
