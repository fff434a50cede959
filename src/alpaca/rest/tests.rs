//! The client without a server: budgets, paths, error bodies, secrets.

use super::*;

#[test]
fn null_where_a_list_is_expected_reads_as_empty() {
    let resp = Response {
        status: StatusCode::OK,
        body: b"null".to_vec(),
    };
    let list: Option<Vec<Position>> = decode("GET /v2/positions", &resp).unwrap();
    assert_eq!(list.unwrap_or_default(), Vec::new());
}

#[test]
fn the_budget_holds_in_every_sixty_second_window() {
    use governor::clock::FakeRelativeClock;
    for per_minute in [200u32, 60, 10, 1000] {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::direct_with_clock(window_quota(per_minute), clock.clone());
        // A client that asks every 10 ms for five minutes: when was it let through?
        let mut passed: Vec<u64> = Vec::new();
        for ms in (0..300_000u64).step_by(10) {
            if limiter.check().is_ok() {
                passed.push(ms);
            }
            clock.advance(Duration::from_millis(10));
        }
        let most = passed
            .iter()
            .map(|start| {
                passed
                    .iter()
                    .filter(|t| **t >= *start && **t < start + 60_000)
                    .count()
            })
            .max()
            .unwrap_or(0);
        assert!(
            most as u32 <= per_minute,
            "{per_minute}/min: {most} in one window"
        );
        assert!(
            most as u32 >= per_minute * 9 / 10,
            "{per_minute}/min: only {most} used"
        );
    }
}

#[test]
fn symbols_cannot_escape_the_path() {
    assert!(path_segment("AAPL").is_ok());
    assert!(path_segment("BRK.B").is_ok());
    for bad in ["", "../v2/account", "A/B", "A?x=1", "A B"] {
        assert!(path_segment(bad).is_err(), "{bad}");
    }
}

#[test]
fn error_bodies_keep_alpacas_code_and_message() {
    let e = api_error(
        "POST /v2/orders",
        StatusCode::FORBIDDEN,
        br#"{"code":40310000,"message":"insufficient buying power","buying_power":"1"}"#,
    );
    assert_eq!(e.code(), Some(40310000));
    assert!(e.to_string().contains("insufficient buying power"));
    let e = api_error(
        "GET /v2/stocks/bars",
        StatusCode::BAD_GATEWAY,
        b"<html>bad gateway</html>",
    );
    assert_eq!(e.status(), Some(502));
    assert!(e.is_retryable());
}

#[test]
fn secrets_do_not_show_in_debug() {
    let creds = Credentials {
        key_id: "PKTEST".into(),
        secret: Secret::new("very-secret-value"),
    };
    let client =
        AlpacaClient::new(ClientSettings::for_base_url("http://127.0.0.1:1"), &creds).unwrap();
    for text in [format!("{creds:?}"), format!("{client:?}")] {
        assert!(!text.contains("very-secret-value"), "{text}");
    }
}
