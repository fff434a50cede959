//! Our REST client against `traderd sim` on loopback: every trading endpoint, the order
//! classes and types, and Alpaca's refusals.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

mod common;

use common::*;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use std::time::Duration;
use traderd::alpaca::BrokerError;
use traderd::alpaca::model::*;
use traderd::alpaca::rest::{CloseAmount, ListOrders};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn account_clock_calendar_assets_and_configurations() {
    let sim = start_sim(|_| {}).await;
    let c = client(&sim);

    let account = c.get_account().await.unwrap();
    assert_eq!(account.status, AccountStatus::Active);
    assert_eq!(account.cash, dec!(100000));
    assert_eq!(account.equity, account.cash);
    assert_eq!(account.last_equity, dec!(100000));

    let clock = c.get_clock().await.unwrap();
    assert!(
        clock.is_open,
        "the sim clock is open whenever it starts: {clock:?}"
    );
    assert!(clock.next_close > clock.timestamp && clock.next_open > clock.timestamp);

    let today = clock.timestamp.date_naive();
    let days = c
        .get_calendar(today - chrono::Duration::days(14), today)
        .await
        .unwrap();
    assert!(
        (8..=11).contains(&days.len()),
        "{} trading days in two weeks",
        days.len()
    );
    assert!(days.iter().all(|d| d.open.to_string() == "09:30:00"
        && d.close.to_string()
            == if traderd::sim::calendar::is_early_close(d.date) {
                "13:00:00"
            } else {
                "16:00:00"
            }));

    let assets = c.list_assets().await.unwrap();
    assert_eq!(assets.len(), 10);
    let aapl = c.get_asset("AAPL").await.unwrap();
    assert_eq!(
        (aapl.symbol.as_str(), aapl.exchange.as_str(), aapl.tradable),
        ("AAPL", "NASDAQ", true)
    );
    let missing = c.get_asset("NOPE").await.unwrap_err();
    assert_eq!(missing.status(), Some(404), "{missing}");

    let conf = c.get_account_configurations().await.unwrap();
    assert!(!conf.suspend_trade);
    let patched = c
        .patch_account_configurations(&AccountConfigurationsPatch {
            suspend_trade: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(patched.suspend_trade);
    assert!(c.get_account().await.unwrap().trade_suspended_by_user);
    let refused = c
        .submit_order(OrderRequest::market("AAPL", OrderSide::Buy, dec!(1)))
        .await
        .unwrap_err();
    assert_eq!(
        (refused.status(), refused.code()),
        (Some(403), Some(40310000)),
        "{refused}"
    );
    sim.stop().await;
}

#[tokio::test]
async fn market_order_fills_and_books_agree() {
    let sim = start_sim(|_| {}).await;
    let c = client(&sim);
    let order = c
        .submit_order(
            OrderRequest::market("AAPL", OrderSide::Buy, dec!(10))
                .with_client_order_id("buy-aapl-1"),
        )
        .await
        .unwrap();
    assert_eq!(order.client_order_id, "buy-aapl-1");
    assert_eq!(order.status, OrderStatus::New);
    let filled = wait_for("the market order to fill", WAIT, || async {
        let o = c.get_order(order.id).await.unwrap();
        (o.status == OrderStatus::Filled).then_some(o)
    })
    .await;
    let price = filled.filled_avg_price.unwrap();
    assert_eq!(filled.filled_qty, dec!(10));

    let position = c.get_position("AAPL").await.unwrap().expect("a position");
    assert_eq!(position.qty, dec!(10));
    assert_eq!(position.avg_entry_price, price);
    assert_eq!(position.side, PositionSide::Long);
    assert!(c.get_position("MSFT").await.unwrap().is_none());

    let account = c.get_account().await.unwrap();
    assert_eq!(account.cash, (dec!(100000) - dec!(10) * price).round_dp(2));
    let state = sim_state(&sim).await;
    assert_eq!(state["positions"][0]["qty"], "10");
    assert_eq!(state["orders"].as_array().unwrap().len(), 1);

    let by_client = c
        .get_order_by_client_id("buy-aapl-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_client.id, order.id);
    assert!(
        c.get_order_by_client_id("never-sent")
            .await
            .unwrap()
            .is_none()
    );

    let fills = c.fills_since(None).await.unwrap().items;
    assert_eq!(fills.len(), 1);
    assert_eq!(
        (fills[0].order_id, fills[0].qty, fills[0].price),
        (order.id, dec!(10), price)
    );
    sim.stop().await;
}

#[tokio::test]
async fn resting_limit_order_lists_replaces_and_cancels() {
    let sim = start_sim(|_| {}).await;
    let c = client(&sim);
    let ask = c.latest_quotes(&["MSFT"]).await.unwrap().quotes["MSFT"].ap;
    let far = (ask * dec!(0.5)).round_dp(2);
    let order = c
        .submit_order(
            OrderRequest::limit("MSFT", OrderSide::Buy, dec!(2), far)
                .with_time_in_force(TimeInForce::Gtc),
        )
        .await
        .unwrap();

    let open = c.list_orders(&ListOrders::default()).await.unwrap().items;
    assert_eq!(
        open.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![order.id]
    );
    let closed = c
        .list_orders(&ListOrders {
            status: Some("closed"),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(closed.is_empty());

    let lower = far - dec!(1);
    let replaced = c
        .replace_order(
            order.id,
            &ReplaceOrderRequest {
                limit_price: Some(lower),
                qty: Some(dec!(3)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(replaced.replaces, Some(order.id));
    assert_eq!(
        (replaced.limit_price, replaced.qty),
        (Some(lower), Some(dec!(3)))
    );
    let old = c.get_order(order.id).await.unwrap();
    assert_eq!(
        (old.status, old.replaced_by),
        (OrderStatus::Replaced, Some(replaced.id))
    );

    c.cancel_order(replaced.id).await.unwrap();
    let canceled = c.get_order(replaced.id).await.unwrap();
    assert_eq!(canceled.status, OrderStatus::Canceled);
    assert!(canceled.canceled_at.is_some());

    let again = c.cancel_order(replaced.id).await.unwrap_err();
    assert_eq!(
        (again.status(), again.code()),
        (Some(422), Some(42210000)),
        "{again}"
    );
    let unknown = c.cancel_order(uuid::Uuid::new_v4()).await.unwrap_err();
    assert_eq!(
        (unknown.status(), unknown.code()),
        (Some(404), Some(40410000)),
        "{unknown}"
    );

    let all = c
        .list_orders(&ListOrders {
            status: Some("all"),
            direction: Some("asc"),
            ..Default::default()
        })
        .await
        .unwrap()
        .items;
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].id, order.id);
    sim.stop().await;
}

#[tokio::test]
async fn cancel_all_reports_every_order() {
    let sim = start_sim(|_| {}).await;
    let c = client(&sim);
    let bid = c.latest_quotes(&["AAPL"]).await.unwrap().quotes["AAPL"].bp;
    for k in 1..=3 {
        c.submit_order(OrderRequest::limit(
            "AAPL",
            OrderSide::Buy,
            dec!(1),
            (bid * dec!(0.8)).round_dp(2) - Decimal::from(k),
        ))
        .await
        .unwrap();
    }
    let result = c.cancel_all_orders().await.unwrap();
    assert_eq!(result.len(), 3);
    assert!(result.iter().all(|r| r.status == 200));
    assert!(
        c.list_orders(&ListOrders::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(c.cancel_all_orders().await.unwrap().is_empty());
    sim.stop().await;
}

#[tokio::test]
async fn bracket_legs_wake_on_entry_fill_and_one_exit_cancels_the_other() {
    let sim = start_sim(|_| {}).await;
    let c = client(&sim);
    let ask = c.latest_quotes(&["SPY"]).await.unwrap().quotes["SPY"].ap;
    let mut req = OrderRequest::market("SPY", OrderSide::Buy, dec!(5));
    req.order_class = Some(OrderClass::Bracket);
    req.take_profit = Some(TakeProfit {
        limit_price: (ask * dec!(1.5)).round_dp(2),
    });
    req.stop_loss = Some(StopLoss {
        stop_price: (ask * dec!(0.5)).round_dp(2),
        limit_price: None,
    });
    let entry = c.submit_order(req).await.unwrap();
    let legs = entry.legs.clone().expect("legs nested in the POST answer");
    assert_eq!(legs.len(), 2);
    assert!(
        legs.iter()
            .all(|l| l.status == OrderStatus::Held && l.side == OrderSide::Sell)
    );

    let legs = wait_for("the legs to wake", WAIT, || async {
        let o = c.get_order(entry.id).await.unwrap();
        let legs = o.legs.unwrap_or_default();
        (o.status == OrderStatus::Filled && legs.iter().all(|l| l.status == OrderStatus::New))
            .then_some(legs)
    })
    .await;
    let (tp, sl) = (&legs[0], &legs[1]);
    assert_eq!((tp.kind, sl.kind), (OrderType::Limit, OrderType::Stop));
    assert_eq!((tp.qty, sl.qty), (Some(dec!(5)), Some(dec!(5))));

    // The shares are held by the exits: selling them again is refused.
    let held = c
        .submit_order(OrderRequest::market("SPY", OrderSide::Sell, dec!(1)))
        .await
        .unwrap_err();
    assert_eq!(held.status(), Some(403), "{held}");
    assert!(
        held.to_string().contains("insufficient qty available"),
        "{held}"
    );
    // Both exits claim the same 5 shares: available 0, not -5 (one exit can fill, not both).
    let position = c.get_position("SPY").await.unwrap().unwrap();
    assert_eq!(
        (position.qty, position.qty_available),
        (dec!(5), Some(dec!(0)))
    );

    // Move the take-profit to a marketable price: it fills, and the stop is canceled.
    let bid = c.latest_quotes(&["SPY"]).await.unwrap().quotes["SPY"].bp;
    let moved = c
        .replace_order(
            tp.id,
            &ReplaceOrderRequest {
                limit_price: Some((bid * dec!(0.9)).round_dp(2)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    wait_for(
        "the take-profit to fill and the stop to be canceled",
        WAIT,
        || async {
            let tp = c.get_order(moved.id).await.unwrap();
            let sl = c.get_order(sl.id).await.unwrap();
            (tp.status == OrderStatus::Filled && sl.status == OrderStatus::Canceled).then_some(())
        },
    )
    .await;
    assert!(c.get_position("SPY").await.unwrap().is_none());
    sim.stop().await;
}

#[tokio::test]
async fn oco_oto_trailing_stop_and_stop_orders() {
    let sim = start_sim(|_| {}).await;
    let c = client(&sim);
    c.submit_order(OrderRequest::market("NVDA", OrderSide::Buy, dec!(20)))
        .await
        .unwrap();
    wait_for("the position", WAIT, || async {
        c.get_position("NVDA")
            .await
            .unwrap()
            .filter(|p| p.qty == dec!(20))
    })
    .await;
    let last = c.latest_trades(&["NVDA"]).await.unwrap().trades["NVDA"].p;

    // OCO: exit-only, both sides live at once.
    let mut oco = OrderRequest::limit(
        "NVDA",
        OrderSide::Sell,
        dec!(10),
        (last * dec!(1.5)).round_dp(2),
    );
    oco.order_class = Some(OrderClass::Oco);
    oco.take_profit = Some(TakeProfit {
        limit_price: (last * dec!(1.5)).round_dp(2),
    });
    oco.stop_loss = Some(StopLoss {
        stop_price: (last * dec!(0.5)).round_dp(2),
        limit_price: None,
    });
    let oco = c.submit_order(oco).await.unwrap();
    let legs = oco.legs.clone().unwrap();
    assert_eq!(legs.len(), 1);
    assert_eq!(
        (oco.status, legs[0].status, legs[0].kind),
        (OrderStatus::New, OrderStatus::New, OrderType::Stop)
    );
    c.cancel_order(oco.id).await.unwrap();
    assert_eq!(
        c.get_order(legs[0].id).await.unwrap().status,
        OrderStatus::Canceled
    );

    // OTO: an entry with one held exit.
    let mut oto = OrderRequest::market("NVDA", OrderSide::Buy, dec!(1));
    oto.order_class = Some(OrderClass::Oto);
    oto.stop_loss = Some(StopLoss {
        stop_price: (last * dec!(0.5)).round_dp(2),
        limit_price: None,
    });
    let oto = c.submit_order(oto).await.unwrap();
    assert_eq!(oto.legs.as_ref().map(Vec::len), Some(1));

    // A trailing stop tracks its high-water mark; a sell stop far below rests.
    let mut trail = OrderRequest::market("NVDA", OrderSide::Sell, dec!(5));
    trail.kind = OrderType::TrailingStop;
    trail.trail_percent = Some(dec!(30));
    let trail = c
        .submit_order(trail.with_time_in_force(TimeInForce::Gtc))
        .await
        .unwrap();
    // The high-water mark starts at the last trade when the order arrives.
    let hwm = trail.hwm.expect("a trailing stop reports its hwm");
    assert!(
        (hwm - last).abs() < last * dec!(0.01),
        "hwm {hwm} near the last trade {last}"
    );
    assert_eq!(trail.stop_price, Some((hwm * dec!(0.7)).round_dp(2)));
    let mut stop = OrderRequest::market("NVDA", OrderSide::Sell, dec!(1));
    stop.kind = OrderType::Stop;
    stop.stop_price = Some((last * dec!(0.5)).round_dp(2));
    let stop = c.submit_order(stop).await.unwrap();
    assert_eq!(c.get_order(stop.id).await.unwrap().status, OrderStatus::New);

    // A buy stop below the market triggers on the next print and fills.
    let mut buy_stop = OrderRequest::market("NVDA", OrderSide::Buy, dec!(1));
    buy_stop.kind = OrderType::Stop;
    buy_stop.stop_price = Some((last * dec!(0.9)).round_dp(2));
    let buy_stop = c.submit_order(buy_stop).await.unwrap();
    wait_for("a triggered stop to fill", WAIT, || async {
        (c.get_order(buy_stop.id).await.unwrap().status == OrderStatus::Filled).then_some(())
    })
    .await;
    sim.stop().await;
}

#[tokio::test]
async fn ioc_fok_partial_fills_and_notional() {
    let sim = start_sim(|s| s.account.initial_cash = dec!(5000000)).await;
    let c = client(&sim);
    // Larger than any displayed size (at most 1,000 shares): fills over several quotes.
    let big = c
        .submit_order(OrderRequest::market("AMD", OrderSide::Buy, dec!(3000)))
        .await
        .unwrap();
    let done = wait_for(
        "the large order to fill in parts",
        Duration::from_secs(20),
        || async {
            let o = c.get_order(big.id).await.unwrap();
            (o.status == OrderStatus::Filled).then_some(o)
        },
    )
    .await;
    let parts = c
        .fills_since(None)
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|f| f.order_id == big.id)
        .collect::<Vec<_>>();
    assert!(
        parts.len() >= 3,
        "expected several partial fills, got {}",
        parts.len()
    );
    assert_eq!(parts.iter().map(|f| f.qty).sum::<Decimal>(), dec!(3000));
    assert_eq!(parts.last().unwrap().fill_type, "fill");
    assert!(parts[0].fill_type == "partial_fill");
    let vwap = parts.iter().map(|f| f.qty * f.price).sum::<Decimal>() / dec!(3000);
    assert_eq!(done.filled_avg_price, Some(vwap.round_dp(9)));

    // FOK larger than the displayed size: nothing fills, the order is canceled.
    let fok = c
        .submit_order(
            OrderRequest::market("AMD", OrderSide::Buy, dec!(5000))
                .with_time_in_force(TimeInForce::Fok),
        )
        .await
        .unwrap();
    let fok = c.get_order(fok.id).await.unwrap();
    assert_eq!(
        (fok.status, fok.filled_qty),
        (OrderStatus::Canceled, dec!(0))
    );
    // IOC: what the quote shows fills, the rest is canceled. Orders just above may have taken
    // the displayed size of the current quote, so a fresh quote may be needed for a fill.
    let ioc = wait_for("an IOC to fill what the quote shows", WAIT, || async {
        let ioc = c
            .submit_order(
                OrderRequest::market("AMD", OrderSide::Buy, dec!(5000))
                    .with_time_in_force(TimeInForce::Ioc),
            )
            .await
            .unwrap();
        let ioc = c.get_order(ioc.id).await.unwrap();
        assert_eq!(ioc.status, OrderStatus::Canceled);
        assert!(ioc.filled_qty < dec!(5000), "{}", ioc.filled_qty);
        (ioc.filled_qty > dec!(0)).then_some(ioc)
    })
    .await;
    assert!(ioc.filled_qty > dec!(0));

    // Notional and fractional orders.
    let mut notional = OrderRequest::market("TSLA", OrderSide::Buy, dec!(0));
    notional.qty = None;
    notional.notional = Some(dec!(1000));
    let n = c.submit_order(notional).await.unwrap();
    let n = wait_for("the notional order to fill", WAIT, || async {
        let o = c.get_order(n.id).await.unwrap();
        (o.status == OrderStatus::Filled).then_some(o)
    })
    .await;
    let cost = n.filled_qty * n.filled_avg_price.unwrap();
    assert!(cost <= dec!(1000) && cost > dec!(999.99), "{cost}");
    assert!(!n.filled_qty.fract().is_zero());
    sim.stop().await;
}

#[tokio::test]
async fn positions_close_by_qty_percentage_and_all() {
    let sim = start_sim(|_| {}).await;
    let c = client(&sim);
    for sym in ["AAPL", "MSFT", "GOOGL"] {
        c.submit_order(OrderRequest::market(sym, OrderSide::Buy, dec!(10)))
            .await
            .unwrap();
    }
    wait_for("three positions", WAIT, || async {
        (c.list_positions().await.unwrap().len() == 3).then_some(())
    })
    .await;

    let by_qty = c
        .close_position("AAPL", CloseAmount::Qty(dec!(4)))
        .await
        .unwrap();
    assert_eq!((by_qty.side, by_qty.qty), (OrderSide::Sell, Some(dec!(4))));
    let by_pct = c
        .close_position("MSFT", CloseAmount::Percentage(dec!(50)))
        .await
        .unwrap();
    assert_eq!(by_pct.qty, Some(dec!(5)));
    wait_for("partial closes", WAIT, || async {
        let a = c.get_position("AAPL").await.unwrap()?;
        let m = c.get_position("MSFT").await.unwrap()?;
        (a.qty == dec!(6) && m.qty == dec!(5)).then_some(())
    })
    .await;
    let none = c
        .close_position("AMZN", CloseAmount::All)
        .await
        .unwrap_err();
    assert_eq!(
        (none.status(), none.code()),
        (Some(404), Some(40410000)),
        "{none}"
    );

    // A resting order that close-all must cancel first.
    c.submit_order(OrderRequest::limit(
        "GOOGL",
        OrderSide::Sell,
        dec!(10),
        dec!(9999),
    ))
    .await
    .unwrap();
    let closed = c.close_all_positions(true).await.unwrap();
    assert_eq!(closed.len(), 3);
    assert!(
        closed
            .iter()
            .all(|r| r.status == 200 && matches!(r.body, ClosePositionBody::Order(_))),
        "{closed:?}"
    );
    wait_for("flat", WAIT, || async {
        c.list_positions().await.unwrap().is_empty().then_some(())
    })
    .await;
    assert!(
        c.list_orders(&ListOrders::default())
            .await
            .unwrap()
            .is_empty()
    );
    sim.stop().await;
}

#[tokio::test]
async fn refusals_have_alpacas_status_codes_and_bodies() {
    let sim = start_sim(|s| s.account.initial_cash = dec!(1000)).await;
    let c = client(&sim);
    c.submit_order(
        OrderRequest::market("AAPL", OrderSide::Buy, dec!(1)).with_client_order_id("dup"),
    )
    .await
    .unwrap();
    let dup = c
        .submit_order(
            OrderRequest::market("AAPL", OrderSide::Buy, dec!(1)).with_client_order_id("dup"),
        )
        .await
        .unwrap_err();
    assert_eq!(dup.status(), Some(422), "{dup}");
    assert!(
        dup.to_string().contains("client_order_id must be unique"),
        "{dup}"
    );

    let poor = c
        .submit_order(OrderRequest::market("SPY", OrderSide::Buy, dec!(100)))
        .await
        .unwrap_err();
    assert_eq!(
        (poor.status(), poor.code()),
        (Some(403), Some(40310000)),
        "{poor}"
    );
    let BrokerError::Api {
        body: Some(body), ..
    } = &poor
    else {
        panic!("{poor:?}")
    };
    assert_eq!(body.message, "insufficient buying power");
    assert!(body.extra.contains_key("buying_power"));

    let mut no_price = OrderRequest::market("AAPL", OrderSide::Buy, dec!(1));
    no_price.kind = OrderType::Limit;
    let invalid = c.submit_order(no_price).await.unwrap_err();
    assert_eq!(
        (invalid.status(), invalid.code()),
        (Some(422), Some(40010001)),
        "{invalid}"
    );
    let subpenny = c
        .submit_order(OrderRequest::limit(
            "AAPL",
            OrderSide::Buy,
            dec!(1),
            dec!(10.001),
        ))
        .await
        .unwrap_err();
    assert_eq!(subpenny.status(), Some(422), "{subpenny}");
    let unknown = c.get_order(uuid::Uuid::new_v4()).await.unwrap_err();
    assert_eq!(
        (unknown.status(), unknown.code()),
        (Some(404), Some(40410000))
    );
    let too_long = c
        .submit_order(
            OrderRequest::market("AAPL", OrderSide::Buy, dec!(1))
                .with_client_order_id("x".repeat(49)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(too_long, BrokerError::InvalidRequest(_)),
        "{too_long}"
    );
    let stats = sim_stats(&sim).await;
    assert_eq!(
        stats["order_posts"], 5,
        "the 49-character id never left the client: {stats}"
    );
    sim.stop().await;
}

#[tokio::test]
async fn wrong_keys_get_401_and_the_secret_never_appears_in_errors() {
    let sim = start_sim(|s| s.credentials = Some(("RIGHTKEY".into(), "right-secret".into()))).await;
    let c = client(&sim);
    let err = c.get_account().await.unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(401), Some(40110000)),
        "{err}"
    );
    assert!(!format!("{err} {err:?}").contains(SECRET));
    assert!(!err.is_retryable());
    sim.stop().await;
}

/// Absurd amounts, as any client might send them: a clear 422 each, the connection and the
/// simulator unharmed, nothing booked.
#[tokio::test]
async fn absurd_amounts_get_a_clear_refusal_and_break_nothing() {
    let sim = start_sim(|_| {}).await;
    let http = admin();
    let url = format!("{}/v2/orders", sim.base_url());
    let max = "79228162514264337593543950335";
    let bodies = [
        serde_json::json!({"symbol":"AAPL","qty":max,"side":"buy","type":"market","time_in_force":"day"}),
        serde_json::json!({"symbol":"AAPL","qty":"1","side":"sell","type":"trailing_stop","trail_price":max,"time_in_force":"day"}),
        serde_json::json!({"symbol":"AAPL","notional":max,"side":"buy","type":"market","time_in_force":"day"}),
        serde_json::json!({"symbol":"AAPL","qty":"1","side":"buy","type":"limit","limit_price":max,"time_in_force":"day"}),
        serde_json::json!({"symbol":"AAPL","qty":"0.000000000000000000000000001","side":"buy","type":"market","time_in_force":"day"}),
    ];
    for body in bodies {
        let resp = http
            .post(&url)
            .header("APCA-API-KEY-ID", "k")
            .header("APCA-API-SECRET-KEY", "s")
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{body}: the connection broke: {e}"));
        assert_eq!(resp.status().as_u16(), 422, "{body}");
        let text = resp.text().await.unwrap();
        assert!(
            text.contains("out of range") || text.contains("decimal places"),
            "{body}: {text}"
        );
    }
    let c = client(&sim);
    assert!(
        c.list_orders(&ListOrders::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(c.get_account().await.unwrap().cash, dec!(100000));
}

/// The raw JSON of a GET against the simulator.
async fn raw(sim: &traderd::sim::SimHandle, path: &str) -> serde_json::Value {
    admin()
        .get(format!("{}{path}", sim.base_url()))
        .header("APCA-API-KEY-ID", KEY)
        .header("APCA-API-SECRET-KEY", SECRET)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn payloads_carry_what_alpaca_sends_in_2026() {
    let sim = start_sim(|_| {}).await;
    let c = client(&sim);
    let mut updates = sim.sim.trade_updates.subscribe();
    // The account: the new informational fields, not the PDT ones removed on 2026-07-06.
    let account = raw(&sim, "/v2/account").await;
    for key in [
        "options_approved_level",
        "options_trading_level",
        "balance_asof",
        "crypto_tier",
        "intraday_adjustments",
        "pending_reg_taf_fees",
        "admin_configurations",
        "user_configurations",
    ] {
        assert!(account.get(key).is_some(), "account lacks {key}: {account}");
    }
    for key in [
        "daytrading_buying_power",
        "pattern_day_trader",
        "daytrade_count",
    ] {
        assert!(account.get(key).is_none(), "account still has {key}");
    }
    let conf = raw(&sim, "/v2/account/configurations").await;
    assert!(
        conf.get("pdt_check").is_none() && conf.get("dtbp_check").is_none(),
        "{conf}"
    );
    let asset = raw(&sim, "/v2/assets/AAPL").await;
    for key in [
        "margin_requirement_long",
        "margin_requirement_short",
        "maintenance_margin_requirement",
    ] {
        assert!(asset.get(key).is_some(), "asset lacks {key}: {asset}");
    }
    let today = c.get_clock().await.unwrap().timestamp.date_naive();
    let days = c
        .get_calendar(today - chrono::Duration::days(7), today)
        .await
        .unwrap();
    assert!(
        days.iter()
            .all(|d| d.settlement_date.is_some_and(|s| s > d.date))
    );
    // An order without a position intent gets one; a day order its expiry; subtag and source
    // are there, null.
    let order = c
        .submit_order(OrderRequest::market("SPY", OrderSide::Buy, dec!(1)))
        .await
        .unwrap();
    assert_eq!(order.position_intent, Some(PositionIntent::BuyToOpen));
    assert!(order.expires_at.is_some_and(|e| e > order.created_at));
    let wire = raw(&sim, &format!("/v2/orders/{}", order.id)).await;
    assert!(
        wire["subtag"].is_null() && wire.get("subtag").is_some(),
        "{wire}"
    );
    assert!(wire.get("source").is_some(), "{wire}");
    let sell = c
        .submit_order(OrderRequest::market("SPY", OrderSide::Sell, dec!(1)))
        .await
        .unwrap();
    assert_eq!(sell.position_intent, Some(PositionIntent::SellToClose));
    // Every trade update carries an execution id, not only fills.
    let mut events = Vec::new();
    while events.len() < 4 {
        let u = tokio::time::timeout(WAIT, updates.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(
            u.execution_id.is_some(),
            "{} without an execution id",
            u.event
        );
        events.push(u.event);
    }
    assert!(
        events.iter().any(|e| e == "new") && events.iter().any(|e| e == "fill"),
        "{events:?}"
    );
    sim.stop().await;
}
