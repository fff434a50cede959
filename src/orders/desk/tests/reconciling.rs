//! Reconciliation, splits and the flatten plan, through the desk.

use super::*;

/// A fill of 3 MSFT at 50 of an order the journal does not know.
fn msft_fill() -> TradeActivity {
    TradeActivity {
        id: "act-1".into(),
        activity_type: "FILL".into(),
        transaction_time: t(1),
        fill_type: "fill".into(),
        price: dec!(50),
        qty: dec!(3),
        side: "buy".into(),
        symbol: "MSFT".into(),
        leaves_qty: dec!(0),
        cum_qty: dec!(3),
        order_id: Uuid::from_u128(9),
        order_status: None,
    }
}

#[test]
fn reconciliation_finds_our_orders_at_the_broker_closes_those_it_never_got_and_books_missing_fills()
{
    // After a restart: the journal has two open intents and a fill it missed.
    let mut desk = OrderDesk::new(ACK);
    let found = order("td-0-1-AAPL", 1, "filled", dec!(10), dec!(10), 1);
    let activity = msft_fill();
    let mut g = Gathered {
        intents: vec![
            stored("td-0-1-AAPL", dec!(10), serde_json::json!({})),
            stored("td-0-2-TSLA", dec!(5), serde_json::json!({})),
        ],
        ..Default::default()
    };
    g.view.by_client_id = HashMap::from([
        ("td-0-1-AAPL".to_string(), Some(found)),
        ("td-0-2-TSLA".to_string(), None),
    ]);
    g.view.fills = vec![activity];
    g.view.positions = vec![
        position("AAPL", dec!(10), "us_equity"),
        position("MSFT", dec!(3), "us_equity"),
    ];
    let e = reconcile_with(&mut desk, g, t(60));
    assert_eq!(fills(&e), vec![(dec!(10), dec!(100)), (dec!(3), dec!(50))]);
    assert_eq!(states(&e), vec![OrderStatus::Filled, OrderStatus::Rejected]);
    assert_eq!(events(&e), vec!["order_not_sent", "reconciled"]);
    let stats = desk.stats();
    assert_eq!(
        (
            stats.intents_found_at_broker,
            stats.intents_never_sent,
            stats.missing_fills
        ),
        (1, 1, 1)
    );
    assert_eq!(
        stats.position_mismatches, 0,
        "the positions agree once booked"
    );
    assert!(!e.iter().any(|e| matches!(e, Effect::Alert(_))));
    // A second reconciliation reading the same books nothing again.
    let mut g = Gathered::default();
    g.view.fills = vec![msft_fill()];
    g.view.positions = vec![
        position("AAPL", dec!(10), "us_equity"),
        position("MSFT", dec!(3), "us_equity"),
    ];
    let e = reconcile_with(&mut desk, g, t(120));
    assert!(fills(&e).is_empty(), "{e:?}");
}

#[test]
fn a_foreign_order_is_reported_once_while_it_stays_open_and_left_alone() {
    let mut desk = ready();
    let theirs = order("manual-1-AAPL", 77, "new", dec!(1), dec!(0), 1);
    // (reconciliation, foreign open at the broker?, foreign count after)
    let rows = [(1, true, 1), (2, true, 1), (3, false, 1), (4, true, 2)];
    for (n, open, count) in rows {
        let mut g = Gathered::default();
        if open {
            g.view.open_orders = vec![theirs.clone()];
        }
        let e = reconcile_with(&mut desk, g, t(60 * n));
        assert!(fills(&e).is_empty() && states(&e).is_empty() && intents(&e).is_empty());
        assert_eq!(desk.stats().foreign_orders, count, "reconciliation {n}");
    }
}

#[test]
fn a_difference_is_suspected_explained_or_confirmed_but_never_on_one_read() {
    let mut desk = ready();
    let held = || {
        let mut g = Gathered::default();
        g.view.positions = vec![position("AAPL", dec!(20), "us_equity")];
        g
    };
    // First read: suspected, and splits are looked up before it can be confirmed.
    let e = reconcile_with(&mut desk, held(), t(60));
    let expected = vec![SplitCandidate {
        symbol: "AAPL".into(),
        ours: dec!(0),
        broker: dec!(20),
    }];
    assert!(e.contains(&Effect::ExplainSplits {
        candidates: expected,
        confirm: true
    }));
    assert!(!e.iter().any(|e| matches!(e, Effect::Alert(_))));
    // No split explains it: the confirming read is asked for.
    let e = desk.on_splits_applied(Vec::new(), true);
    assert_eq!(
        e,
        vec![Effect::Reconcile {
            after: CONFIRM_AFTER
        }]
    );
    // The same difference read again: confirmed, journaled, health told.
    let e = reconcile_with(&mut desk, held(), t(61));
    assert!(
        e.iter()
            .any(|e| matches!(e, Effect::Alert(Alert::Mismatch { .. })))
    );
    assert_eq!(events(&e), vec!["position_mismatch"]);
    assert_eq!(desk.stats().position_mismatches, 1);
}

#[test]
fn a_split_that_explains_a_difference_is_booked_and_the_feed_told() {
    let mut desk = ready();
    let adj = crate::orders::splits::Adjustment {
        symbol: "AAPL".into(),
        from: dec!(10),
        to: dec!(40),
        key: "split:AAPL:2026-11-20:4:1".into(),
        ratio: Some(dec!(4)),
        detail: "4:1".into(),
    };
    let e = desk.on_splits_applied(vec![adj], false);
    assert_eq!(events(&e), vec!["split_applied"]);
    assert!(e.contains(&Effect::SplitApplied {
        symbol: "AAPL".into(),
        ratio: Some(dec!(4))
    }));
    assert_eq!(desk.view().positions.get("AAPL"), Some(&dec!(30)));
    assert_eq!(desk.stats().split_adjustments, 1);
}

#[test]
fn split_adjustments_are_keyed_by_the_split_at_price_zero() {
    let split: crate::alpaca::model::Split = serde_json::from_value(serde_json::json!({
        "id": "x", "symbol": "AAPL", "new_rate": 4, "old_rate": 1,
        "process_date": "2026-11-20", "ex_date": "2026-11-20",
    }))
    .unwrap();
    let candidates = [SplitCandidate {
        symbol: "AAPL".into(),
        ours: dec!(10),
        broker: dec!(40),
    }];
    let today = t(0).date_naive();
    let out = split_adjustments(
        &candidates,
        &[split],
        &[] as &[NonTradeActivity],
        &[],
        today,
    );
    assert_eq!(out.len(), 1);
    let (adj, record) = &out[0];
    assert_eq!((adj.from, adj.to), (dec!(10), dec!(40)));
    assert_eq!(
        record.client_order_id,
        crate::journal::store::CORPORATE_ACTION
    );
    assert_eq!(
        (record.side, record.qty, record.price),
        (OrderSide::Buy, dec!(30), Decimal::ZERO)
    );
    assert_eq!(record.execution_id, adj.key);
}

#[test]
fn the_first_reconciliation_failing_is_retried_and_journal_failures_stop_the_desk() {
    let mut desk = OrderDesk::new(ACK);
    let start = desk.begin_reconcile().unwrap();
    assert!(desk.begin_reconcile().is_none(), "one at a time");
    let e = desk.on_reconciled(start, Err("HTTP 500".into()), t(1));
    assert_eq!(
        e,
        vec![Effect::Reconcile {
            after: RETRY_FIRST_RECONCILIATION
        }]
    );
    assert!(!desk.lifecycle().reconciled());
    // (write failed?, stops?)
    let rows = [
        (true, false),
        (true, false),
        (false, false),
        (true, false),
        (true, false),
        (true, true),
    ];
    for (i, (failed, stops)) in rows.into_iter().enumerate() {
        let e = desk.journal_outcome(failed);
        assert_eq!(e.contains(&Effect::Stop), stops, "write {i}");
    }
    assert_eq!(desk.stats().journal_errors, 5);
}

#[test]
fn final_orders_are_forgotten_after_the_next_reconciliation() {
    let mut desk = ready();
    for n in 0..20u128 {
        let s = desk
            .submit(buy("AAPL", dec!(1), Purpose::Exit), t(1))
            .unwrap();
        let coid = s.client_order_id;
        desk.on_sent(
            &coid,
            Ok(Ok(order(&coid, 100 + n, "filled", dec!(1), dec!(1), 2))),
            t(2),
        );
    }
    assert!(desk.tracked_entries() >= 40);
    let _ = desk.poll_plan(t(3)); // final orders leave the book
    // The next reconciliation began after they were final: its journal read has them.
    let mut g = Gathered::default();
    g.view.positions = vec![position("AAPL", dec!(20), "us_equity")];
    let e = reconcile_with(&mut desk, g, t(4));
    assert_eq!(
        e.iter().filter(|e| matches!(e, Effect::Forget(_))).count(),
        20
    );
    assert_eq!(desk.tracked_entries(), 0);
    assert_eq!(desk.book().len(), 0);
}

#[test]
fn flatten_closes_equities_itself_and_leaves_the_rest_to_the_broker() {
    let foreign: crate::alpaca::model::Listing<Position> = Listing::decode(
        serde_json::to_vec(&serde_json::json!([
            { "symbol": "AAPL250117C00200000", "qty": "1", "asset_class": "us_option", "weird": true },
            { "qty": "3", "why": "no symbol" },
        ]))
        .unwrap()
        .as_slice(),
    )
    .unwrap();
    let mut positions = Listing {
        items: vec![
            position("AAPL", dec!(10), "us_equity"),
            position("SPY", dec!(-4), "us_equity"),
            position("MSFT", dec!(0), "us_equity"),
            position("BTC/USD", dec!(1), "crypto"),
        ],
        ..Default::default()
    };
    positions.items.extend(foreign.items);
    positions.foreign = foreign.foreign;
    let plan = flatten_plan(positions, &[], "flatten-1");
    let closes: Vec<_> = plan
        .close
        .iter()
        .map(|i| {
            (
                i.symbol.as_str(),
                i.side,
                i.qty,
                i.purpose.clone(),
                i.correlation_id.as_str(),
            )
        })
        .collect();
    assert_eq!(
        closes,
        vec![
            (
                "AAPL",
                OrderSide::Sell,
                dec!(10),
                Purpose::Flatten,
                "flatten-1"
            ),
            (
                "SPY",
                OrderSide::Buy,
                dec!(4),
                Purpose::Flatten,
                "flatten-1"
            ),
        ]
    );
    assert!(plan.liquidate.contains(&"BTC/USD".to_string()), "{plan:?}");
    assert_eq!(plan.liquidate.len() + plan.unreadable.len(), 3, "{plan:?}");
}

fn in_flight(
    coid: &str,
    symbol: &str,
    side: OrderSide,
    qty: Decimal,
) -> crate::orders::book::InFlight {
    crate::orders::book::InFlight {
        client_order_id: coid.into(),
        symbol: symbol.into(),
        side,
        qty,
    }
}

/// A soak found capital preservation selling twice: an attempt's closing orders were still
/// on their way (429s, retried) when the broker was checked, so the next attempt closed the
/// same positions again, and they went short until a third bought back. Closing orders of
/// ours still in flight count against what the next attempt closes; orders that would add to
/// the position do not (they may never land).
#[test]
fn flatten_counts_closing_orders_still_in_flight_and_never_closes_twice() {
    let positions = Listing {
        items: vec![
            position("AAPL", dec!(10), "us_equity"),
            position("MSFT", dec!(4), "us_equity"),
            position("SPY", dec!(-6), "us_equity"),
            position("QQQ", dec!(5), "us_equity"),
        ],
        ..Default::default()
    };
    let flying = [
        in_flight("td-1-2d-AAPL", "AAPL", OrderSide::Sell, dec!(10)),
        in_flight("td-1-2e-MSFT", "MSFT", OrderSide::Sell, dec!(3)),
        in_flight("td-1-2f-SPY", "SPY", OrderSide::Buy, dec!(2)),
        in_flight("td-1-2g-SPY", "SPY", OrderSide::Buy, dec!(4)),
        in_flight("td-1-2h-QQQ", "QQQ", OrderSide::Buy, dec!(5)),
    ];
    let plan = flatten_plan(positions, &flying, "flatten-2");
    let closes: Vec<_> = plan
        .close
        .iter()
        .map(|i| (i.symbol.as_str(), i.side, i.qty))
        .collect();
    assert_eq!(
        closes,
        vec![
            ("MSFT", OrderSide::Sell, dec!(1)),
            ("QQQ", OrderSide::Sell, dec!(5)),
        ],
        "what is not already closing; an entry in flight does not count"
    );
    assert_eq!(
        plan.covered,
        vec![
            ("AAPL".to_string(), vec!["td-1-2d-AAPL".to_string()]),
            (
                "SPY".to_string(),
                vec!["td-1-2f-SPY".to_string(), "td-1-2g-SPY".to_string()]
            ),
        ]
    );
}

proptest::proptest! {
    /// Whatever is in flight, the closes never take a position past flat once what is in
    /// flight on the closing side lands, and close it whole when nothing is.
    #[test]
    fn flatten_never_closes_past_flat(
        held in -50i64..50,
        flying in proptest::collection::vec((proptest::bool::ANY, 1i64..30), 0..4),
    ) {
        let held = Decimal::from(held);
        let positions = Listing {
            items: vec![position("AAPL", held, "us_equity")],
            ..Default::default()
        };
        let flying: Vec<_> = flying
            .iter()
            .enumerate()
            .map(|(i, (sell, q))| {
                let side = if *sell { OrderSide::Sell } else { OrderSide::Buy };
                in_flight(&format!("td-{i}"), "AAPL", side, Decimal::from(*q))
            })
            .collect();
        let plan = flatten_plan(positions, &flying, "flatten-p");
        let closing_side = if held > Decimal::ZERO { OrderSide::Sell } else { OrderSide::Buy };
        let landing: Decimal = flying
            .iter()
            .filter(|o| o.side == closing_side)
            .map(|o| o.qty)
            .sum();
        let closed: Decimal = plan.close.iter().map(|i| i.qty).sum();
        proptest::prop_assert!(plan.close.iter().all(|i| i.side == closing_side && i.qty > Decimal::ZERO));
        if held.is_zero() {
            proptest::prop_assert!(plan.close.is_empty() && plan.covered.is_empty());
        } else if landing.is_zero() {
            proptest::prop_assert_eq!(closed, held.abs());
        } else if landing >= held.abs() {
            proptest::prop_assert!(plan.close.is_empty());
            proptest::prop_assert_eq!(plan.covered.len(), 1);
        } else {
            proptest::prop_assert_eq!(closed + landing, held.abs());
        }
    }
}
