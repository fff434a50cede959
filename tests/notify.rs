#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Notifications to webhooks against a real local receiver: a generic JSON webhook hears
//! fills and a mode change, retried through the receiver's first failures; a Slack-shaped one
//! hears only the mode change; nothing sent carries a key or secret, and nothing is lost.

mod common;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use common::{KEY, SECRET, wait_for};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use traderd::config::CheckContext;

#[derive(Default)]
struct Receiver {
    got: Mutex<Vec<(String, serde_json::Value)>>,
    /// Answers 500 to this many requests first.
    fail_first: AtomicUsize,
    attempts: AtomicUsize,
}

async fn hook(
    State(r): State<Arc<Receiver>>,
    Path(name): Path<String>,
    Json(body): Json<serde_json::Value>,
) -> StatusCode {
    r.attempts.fetch_add(1, Ordering::SeqCst);
    let failing = r
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    r.got.lock().unwrap().push((name, body));
    StatusCode::OK
}

#[actix_rt::test]
async fn webhooks_hear_fills_and_mode_changes_in_their_shapes_without_secrets() {
    let receiver = Arc::new(Receiver {
        fail_first: AtomicUsize::new(2),
        ..Default::default()
    });
    let app = Router::new()
        .route("/{name}", post(hook))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    actix_rt::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let sim = common::paper_sim().await;
    let env: BTreeMap<&str, String> = common::paper_env(&sim.base_url()).into_iter().collect();
    let dir = tempfile::tempdir().unwrap();
    let ctx = CheckContext {
        live_opt_in: false,
        have_keys: true,
    };
    let config = common::busy_config(
        &format!(
            "[connection]\nmode = \"paper\"\n\
             [notify]\ninstance = \"test-box\"\nmax_retries = 4\n\
             [[notify.webhooks]]\nurl = \"{base}/json\"\n\
             [[notify.webhooks]]\nurl = \"{base}/slack\"\nformat = \"slack\"\nevents = [\"mode\"]\n"
        ),
        &ctx,
    );
    let daemon = common::InProcess::start(config, ctx, dir.path(), move |k| env.get(k).cloned());
    let socket = daemon.socket.clone();
    wait_for("two fills", Duration::from_secs(60), || async {
        let r = traderd::control::call(&socket, "status", &[]).await.ok()?;
        (r.result?["fills"].as_u64()? >= 2).then_some(())
    })
    .await;
    let paused = traderd::control::call(&socket, "pause", &[]).await.unwrap();
    assert!(paused.ok, "{paused:?}");
    let got = wait_for("the notices", Duration::from_secs(30), || {
        let got = receiver.got.lock().unwrap().clone();
        let json_fills = got
            .iter()
            .filter(|(n, b)| n == "json" && b["kind"] == "fill")
            .count();
        let json_mode = got.iter().any(|(n, b)| n == "json" && b["kind"] == "mode");
        let slack_mode = got.iter().any(|(n, _)| n == "slack");
        async move { (json_fills >= 2 && json_mode && slack_mode).then_some(got) }
    })
    .await;
    daemon.stop().await;

    // The generic shape, with the facts.
    let fill = &got
        .iter()
        .find(|(n, b)| n == "json" && b["kind"] == "fill")
        .unwrap()
        .1;
    assert_eq!(fill["source"], "traderd");
    assert_eq!(fill["instance"], "test-box");
    assert!(
        fill["fields"]["symbol"].is_string() && fill["fields"]["price"].is_string(),
        "{fill}"
    );
    let mode = &got
        .iter()
        .find(|(n, b)| n == "json" && b["kind"] == "mode")
        .unwrap()
        .1;
    assert_eq!(mode["fields"]["to"], "reduce_only", "{mode}");
    // Slack's shape, and only what it asked for.
    let slack: Vec<&serde_json::Value> = got
        .iter()
        .filter(|(n, _)| n == "slack")
        .map(|(_, b)| b)
        .collect();
    assert!(
        slack.iter().all(|b| {
            b.as_object().is_some_and(|o| o.len() == 1)
                && b["text"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("[test-box] traderd: mode"))
        }),
        "{slack:?}"
    );
    // The receiver's first two answers were failures: retried, nothing lost.
    assert!(receiver.attempts.load(Ordering::SeqCst) >= got.len() + 2);
    // No key or secret in anything sent.
    let all = serde_json::to_string(&got).unwrap();
    assert!(!all.contains(SECRET) && !all.contains(KEY), "{all}");
    sim.stop().await;
}
