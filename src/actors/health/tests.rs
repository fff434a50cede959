//! The health monitor's windows, thresholds and crossings.

use super::*;
use crate::alpaca::rest::RestOutcome;

fn settings() -> HealthSettings {
    HealthSettings::new(&HealthSection::default(), Decimal::from(100))
}

fn rest(broker_error: bool) -> HealthReport {
    HealthReport {
        source: "rest",
        event: HealthEvent::Rest(RestOutcome {
            endpoint: "GET /v2/clock".into(),
            status: Some(if broker_error { 503 } else { 200 }),
            broker_error,
            latency: Duration::from_millis(1),
        }),
    }
}

#[test]
fn rest_errors_trip_once_at_the_threshold_and_successes_do_not_count() {
    let mut m = ConnectionHealthMonitor::new(settings(), None, None);
    for _ in 0..19 {
        m.on_report(rest(true));
        m.on_report(rest(false));
    }
    assert!(m.tripped.is_none());
    m.on_report(rest(true));
    assert_eq!(
        m.tripped,
        Some(Cause::RestErrors {
            errors: 20,
            window_s: 60
        })
    );
    for _ in 0..50 {
        m.on_report(rest(true));
    }
    assert_eq!(m.crossings, 1, "latched: one storm is one crossing");
}

#[test]
fn rejects_count_in_a_row_and_an_acceptance_resets_them() {
    let mut m = ConnectionHealthMonitor::new(settings(), None, None);
    let reject = || HealthReport {
        source: "orders",
        event: HealthEvent::OrderRejected {
            detail: "403".into(),
        },
    };
    for _ in 0..4 {
        m.on_report(reject());
    }
    m.on_report(HealthReport {
        source: "orders",
        event: HealthEvent::OrderAccepted,
    });
    for _ in 0..4 {
        m.on_report(reject());
    }
    assert!(m.tripped.is_none());
    m.on_report(reject());
    assert_eq!(m.tripped, Some(Cause::OrderRejects { in_a_row: 5 }));
}

#[test]
fn the_restart_budget_is_exhausted_by_one_restart_more_than_it_allows() {
    let mut m = ConnectionHealthMonitor::new(settings(), None, None);
    let restart = || HealthReport {
        source: "stream:market_data",
        event: HealthEvent::ActorRestarted {
            reason: "auth".into(),
        },
    };
    for _ in 0..5 {
        m.on_report(restart());
    }
    assert!(m.tripped.is_none());
    m.on_report(restart());
    assert!(matches!(
        m.tripped,
        Some(Cause::RestartBudget { restarts: 6, .. })
    ));
}

#[test]
fn a_stream_down_trips_only_while_the_market_is_open_and_past_the_limit() {
    let mut s = settings();
    s.stream_down_limit = Duration::from_millis(20);
    let mut m = ConnectionHealthMonitor::new(s, None, None);
    m.on_stream_state(StreamKind::TradeUpdates, ConnectionState::Reconnecting);
    std::thread::sleep(Duration::from_millis(40));
    m.set_market_open(false);
    m.check_streams();
    assert!(m.tripped.is_none(), "market closed");
    m.set_market_open(true);
    m.check_streams();
    assert!(m.tripped.is_none(), "down before the open does not count");
    std::thread::sleep(Duration::from_millis(40));
    m.check_streams();
    assert!(matches!(m.tripped, Some(Cause::StreamDown { .. })));
}

#[test]
fn a_stream_covered_by_rest_bars_trips_only_when_the_cover_fails_too() {
    let mut s = settings();
    s.stream_down_limit = Duration::from_secs(60);
    let mut m = ConnectionHealthMonitor::new(s, None, None);
    m.set_market_open(true);
    m.on_stream_state(StreamKind::MarketData, ConnectionState::Reconnecting);
    let long_ago = Instant::now()
        .checked_sub(Duration::from_secs(600))
        .unwrap();
    let w = m.streams.entry(StreamKind::MarketData).or_default();
    w.unhealthy_since = Some(long_ago);
    m.open_since = Some(long_ago);
    // Bars came by REST a moment ago: down, but covered.
    w.covered_at = Some(Instant::now());
    m.check_streams();
    assert!(m.tripped.is_none(), "covered");
    assert!(m.status().streams["market_data"].covered);
    // The REST bars stopped coming too, longer ago than the limit: both failed.
    let w = m.streams.entry(StreamKind::MarketData).or_default();
    w.covered_at = Instant::now().checked_sub(Duration::from_secs(61));
    m.check_streams();
    assert!(
        matches!(m.tripped, Some(Cause::StreamDown { .. })),
        "{:?}",
        m.tripped
    );
}

#[test]
fn rearm_clears_the_latch_and_the_windows() {
    let mut m = ConnectionHealthMonitor::new(settings(), None, None);
    for _ in 0..20 {
        m.on_report(rest(true));
    }
    assert!(m.tripped.is_some());
    m.rearm();
    assert_eq!(m.status().tripped, None);
    m.on_report(rest(true));
    assert!(m.tripped.is_none());
    assert_eq!(m.status().rest_errors_in_window, 1);
    for _ in 0..19 {
        m.on_report(rest(true));
    }
    assert_eq!(
        m.crossings, 2,
        "a new storm after re-arming is a new crossing"
    );
}
