//! The client under the simulator's faults: rate limits, 5xx bursts, latency past the
//! timeout, and an order POST whose connection is dropped after the order was accepted.
//! Each ends with exactly the orders that were meant, never a duplicate.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

mod common;

use common::*;
use rust_decimal_macros::dec;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use traderd::alpaca::BrokerError;
use traderd::alpaca::error::ConnectivityKind;
use traderd::alpaca::model::*;
use traderd::alpaca::rest::ListOrders;

#[tokio::test]
async fn a_real_rate_limit_is_waited_out_using_the_reset_header() {
    // Three requests per one-second window, like Alpaca's 200 a minute but quicker.
    let sim = start_sim(|s| {
        s.rate_limit = 3;
        s.rate_window_s = 1;
    })
    .await;
    let c = client(&sim);
    for _ in 0..8 {
        c.get_clock()
            .await
            .expect("every request succeeds in the end");
    }
    let stats = sim_stats(&sim).await;
    let limited = stats["rate_limited"].as_u64().unwrap();
    // The client read X-Ratelimit-Remaining: 0 and waited for the reset rather than hammering.
    assert!(
        limited <= 2,
        "the client should mostly wait before the limit, got {limited} 429s: {stats}"
    );
    assert!(c.stats().requests.load(Ordering::Relaxed) >= 8);
    sim.stop().await;
}

#[tokio::test]
async fn injected_429s_are_retried_with_backoff() {
    let sim = start_sim(|_| {}).await;
    let c = client(&sim);
    set_fault(&sim, serde_json::json!({"kind": "rate_limit", "count": 2})).await;
    let started = Instant::now();
    let account = c.get_account().await.expect("succeeds after two 429s");
    assert_eq!(account.cash, dec!(100000));
    assert_eq!(c.stats().rate_limited.load(Ordering::Relaxed), 2);
    assert_eq!(c.stats().retries.load(Ordering::Relaxed), 2);
    // Each 429 says the window resets within a second; the client waited rather than spun.
    assert!(
        started.elapsed() >= Duration::from_millis(40),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(sim_stats(&sim).await["rate_limited"], 2);
    sim.stop().await;
}

#[tokio::test]
async fn a_5xx_burst_is_retried_through() {
    let sim = start_sim(|_| {}).await;
    let c = client(&sim);
    set_fault(
        &sim,
        serde_json::json!({"kind": "http_error", "status": 503, "count": 3}),
    )
    .await;
    let positions = c.list_positions().await.expect("succeeds after three 503s");
    assert!(positions.is_empty());
    assert_eq!(c.stats().retries.load(Ordering::Relaxed), 3);
    assert_eq!(sim_stats(&sim).await["faults"]["injected_http_errors"], 3);

    // More errors than retries: the error comes back typed, as a retryable server error.
    set_fault(
        &sim,
        serde_json::json!({"kind": "http_error", "status": 502, "count": 50}),
    )
    .await;
    let err = c.get_account().await.unwrap_err();
    assert_eq!(err.status(), Some(502), "{err}");
    assert!(err.is_retryable() && !err.is_connectivity());
    set_fault(&sim, serde_json::json!({"kind": "clear"})).await;
    c.get_account()
        .await
        .expect("fine again once the fault clears");
    sim.stop().await;
}

#[tokio::test]
async fn an_order_post_during_a_5xx_burst_creates_exactly_one_order() {
    let sim = start_sim(|_| {}).await;
    let c = client(&sim);
    set_fault(
        &sim,
        serde_json::json!({"kind": "http_error", "status": 503, "count": 2}),
    )
    .await;
    let order = c
        .submit_order(
            OrderRequest::market("AAPL", OrderSide::Buy, dec!(1)).with_client_order_id("burst-1"),
        )
        .await
        .expect("the client asks, finds nothing, and resends");
    assert_eq!(order.client_order_id, "burst-1");
    let state = sim_state(&sim).await;
    assert_eq!(state["orders"].as_array().unwrap().len(), 1, "{state}");
    assert!(
        c.stats()
            .order_lookups_after_ambiguity
            .load(Ordering::Relaxed)
            >= 1
    );
    sim.stop().await;
}

#[tokio::test]
async fn accept_then_drop_ends_with_exactly_one_order() {
    let sim = start_sim(|_| {}).await;
    let c = client(&sim);
    set_fault(
        &sim,
        serde_json::json!({"kind": "drop_after_accept", "count": 1}),
    )
    .await;
    let order = c
        .submit_order(
            OrderRequest::market("MSFT", OrderSide::Buy, dec!(2)).with_client_order_id("drop-1"),
        )
        .await
        .expect("the client finds the order the broker took");
    assert_eq!(order.client_order_id, "drop-1");
    let stats = sim_stats(&sim).await;
    assert_eq!(stats["faults"]["injected_drops"], 1, "{stats}");
    assert_eq!(stats["order_posts"], 1, "the POST was not resent: {stats}");
    let orders = sim_state(&sim).await["orders"].as_array().unwrap().clone();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0]["client_order_id"], "drop-1");
    assert_eq!(
        c.stats()
            .order_lookups_after_ambiguity
            .load(Ordering::Relaxed),
        1
    );

    // The same again with a generated client order id.
    set_fault(
        &sim,
        serde_json::json!({"kind": "drop_after_accept", "count": 1}),
    )
    .await;
    let second = c
        .submit_order(OrderRequest::market("MSFT", OrderSide::Buy, dec!(1)))
        .await
        .unwrap();
    let all = c
        .list_orders(&ListOrders {
            status: Some("all"),
            ..Default::default()
        })
        .await
        .unwrap()
        .items;
    assert_eq!(all.len(), 2);
    assert!(all.iter().any(|o| o.id == second.id));
    sim.stop().await;
}

#[tokio::test]
async fn latency_past_the_timeout_is_a_connectivity_error() {
    let sim = start_sim(|_| {}).await;
    let mut settings = fast_settings(&sim.base_url());
    settings.request_timeout = Duration::from_millis(200);
    settings.max_retries = 1;
    let c = client_with(settings);
    set_fault(&sim, serde_json::json!({"kind": "latency", "ms": 600})).await;
    let err = c.get_clock().await.unwrap_err();
    assert!(
        matches!(
            err,
            BrokerError::Connectivity {
                kind: ConnectivityKind::Timeout,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_connectivity() && err.is_retryable());
    set_fault(&sim, serde_json::json!({"kind": "latency", "ms": 0})).await;
    c.get_clock().await.expect("fine once latency is cleared");
    sim.stop().await;
}

#[tokio::test]
async fn a_dead_broker_is_a_connectivity_error_and_an_order_is_not_ambiguous() {
    let sim = start_sim(|_| {}).await;
    let url = sim.base_url();
    sim.stop().await;
    let mut settings = fast_settings(&url);
    settings.max_retries = 2;
    let c = client_with(settings);
    let err = c.get_account().await.unwrap_err();
    assert!(
        matches!(
            err,
            BrokerError::Connectivity {
                kind: ConnectivityKind::Connect,
                ..
            }
        ),
        "{err:?}"
    );
    // Nothing reached the broker, so the answer is "not sent", not "unknown".
    let order = c
        .submit_order(OrderRequest::market("AAPL", OrderSide::Buy, dec!(1)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            order,
            BrokerError::Connectivity {
                kind: ConnectivityKind::Connect,
                ..
            }
        ),
        "{order:?}"
    );
    assert_eq!(
        c.stats()
            .order_lookups_after_ambiguity
            .load(Ordering::Relaxed),
        0,
        "nothing was sent, nothing to ask"
    );
}

#[tokio::test]
async fn bad_fault_requests_are_refused_clearly() {
    let sim = start_sim(|_| {}).await;
    let resp = admin()
        .post(format!("{}/_sim/faults", sim.base_url()))
        .body(r#"{"kind":"explode"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("http_error"));
    let resp = admin()
        .post(format!("{}/_sim/faults", sim.base_url()))
        .json(&serde_json::json!({"kind": "http_error", "status": 200, "count": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // The reset endpoint clears the account and faults.
    let c = client(&sim);
    c.submit_order(OrderRequest::market("AAPL", OrderSide::Buy, dec!(1)))
        .await
        .unwrap();
    set_fault(&sim, serde_json::json!({"kind": "latency", "ms": 5})).await;
    admin()
        .post(format!("{}/_sim/reset", sim.base_url()))
        .send()
        .await
        .unwrap();
    let state = sim_state(&sim).await;
    assert!(
        state["orders"].as_array().unwrap().is_empty()
            && state["positions"].as_array().unwrap().is_empty()
    );
    assert_eq!(state["cash"], "100000");
    assert_eq!(sim_stats(&sim).await["faults"]["latency_ms"], 0);
    sim.stop().await;
}

#[tokio::test]
async fn hostile_query_strings_get_clear_errors_not_dropped_connections() {
    let sim = start_sim(|_| {}).await;
    // A multi-byte character across the tenth byte, where a date would end; and others.
    for path in [
        "/v2/calendar?start=2026-11-2%C3%A9x",
        "/v2/orders?after=%E2%82%AC%E2%82%AC%E2%82%AC",
        "/v2/stocks/bars?symbols=AAPL&timeframe=1%F0%9F%98%80",
    ] {
        let resp = admin()
            .get(format!("{}{path}", sim.base_url()))
            .header("APCA-API-KEY-ID", KEY)
            .header("APCA-API-SECRET-KEY", SECRET)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: the connection failed: {e}"));
        assert!(resp.status().is_client_error(), "{path}: {}", resp.status());
        let body: serde_json::Value = resp.json().await.unwrap();
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{path}: {body}"
        );
    }
    sim.stop().await;
}
