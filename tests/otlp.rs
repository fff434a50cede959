#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! OpenTelemetry export, for real: an OTLP/HTTP receiver of our own (axum, decoding the
//! protobuf with opentelemetry-proto), the release-like binary pointed at it through the
//! standard `OTEL_*` variables, and the trace of one fill walked back to the market message
//! that started it.

mod common;

use axum::{Router, body::Bytes, extract::State, routing::post};
use common::{KEY, SECRET, wait_for};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Received {
    spans: Vec<Span>,
    service_names: Vec<String>,
    instance_ids: Vec<String>,
    metric_names: Vec<String>,
    raw: Vec<u8>,
}

type Shared = Arc<Mutex<Received>>;

fn text(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attrs(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), text(&kv.value)))
        .collect()
}

async fn traces(State(seen): State<Shared>, body: Bytes) -> &'static str {
    let req = ExportTraceServiceRequest::decode(body.as_ref()).expect("protobuf traces");
    let mut s = seen.lock().unwrap();
    s.raw.extend_from_slice(&body);
    for rs in req.resource_spans {
        if let Some(r) = &rs.resource {
            if let Some(i) = attrs(&r.attributes).get("service.instance.id") {
                s.instance_ids.push(i.clone());
            }
            if let Some(n) = attrs(&r.attributes).get("service.name") {
                s.service_names.push(n.clone());
            }
        }
        for ss in rs.scope_spans {
            s.spans.extend(ss.spans);
        }
    }
    ""
}

async fn metrics(State(seen): State<Shared>, body: Bytes) -> &'static str {
    let req = ExportMetricsServiceRequest::decode(body.as_ref()).expect("protobuf metrics");
    let mut s = seen.lock().unwrap();
    s.raw.extend_from_slice(&body);
    for rm in req.resource_metrics {
        for sm in rm.scope_metrics {
            s.metric_names
                .extend(sm.metrics.into_iter().map(|m| m.name));
        }
    }
    ""
}

#[actix_rt::test]
async fn one_trace_follows_a_market_message_to_its_fill_and_metrics_arrive() {
    let seen: Shared = Arc::default();
    let app = Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/metrics", post(metrics))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = format!("http://{}", listener.local_addr().unwrap());
    actix_rt::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    // Paper mode against a simulator with a known secret, so the test can look for it.
    let sim = common::paper_sim().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("paper.toml");
    std::fs::write(
        &config,
        "[connection]\nmode = \"paper\"\n[strategy]\nsizing_usd = \"2000\"\nprotection = \"none\"\n[strategy.momentum]\nrsi_entry_min = 0.0\nrsi_entry_max = 100.0\nrsi_exit = 100.0\n[telemetry]\nmetrics_interval_ms = 300\n",
    )
    .unwrap();
    let url = sim.base_url();
    let mut child = common::Killed(
        common::paper_daemon(&url, &config, &dir.path().join("state"))
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver)
            .env("OTEL_SERVICE_NAME", "traderd-under-test")
            .env("TRADERD_INSTANCE", "paper-under-test")
            .env("OTEL_BSP_SCHEDULE_DELAY", "200")
            .stderr(std::fs::File::create(dir.path().join("daemon.log")).unwrap())
            .spawn()
            .unwrap(),
    );

    // A fill whose trace is complete: fill → submit → risk → signal → bar → stream message.
    let names = [
        "order.fill",
        "order.submit",
        "risk.check",
        "strategy.signal",
        "market.bar",
        "stream.message",
    ];
    let chain = wait_for(
        "a complete trace of a fill",
        Duration::from_secs(90),
        || {
            let s = seen.lock().unwrap();
            let by_id: HashMap<&[u8], &Span> = s
                .spans
                .iter()
                .map(|sp| (sp.span_id.as_slice(), sp))
                .collect();
            let found = s
                .spans
                .iter()
                .filter(|sp| sp.name == "order.fill")
                .find_map(|fill| {
                    let mut chain = vec![fill.clone()];
                    let mut cur = fill;
                    while !cur.parent_span_id.is_empty() {
                        cur = by_id.get(cur.parent_span_id.as_slice())?;
                        chain.push(cur.clone());
                    }
                    (chain.len() == names.len()).then_some(chain)
                });
            async move { found }
        },
    )
    .await;
    let got: Vec<&str> = chain.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(got, names, "the parent links, fill to root");
    let trace_id = &chain[0].trace_id;
    assert!(chain.iter().all(|s| &s.trace_id == trace_id), "one trace");
    let a: Vec<HashMap<String, String>> = chain.iter().map(|s| attrs(&s.attributes)).collect();
    let correlation = a[0]["correlation_id"].clone();
    assert!(!correlation.is_empty());
    for (span, at) in names.iter().zip(&a).take(5) {
        assert_eq!(
            at["correlation_id"], correlation,
            "{span} carries the correlation id"
        );
    }
    let symbol = &a[0]["symbol"];
    // The root is the message that closed the bar: bars close on event time, so that may be a
    // trade of another symbol that moved the clock past the minute.
    assert!(a.iter().take(5).all(|at| &at["symbol"] == symbol), "{a:?}");
    assert!(a[5].contains_key("event_time"));
    assert!(a[0].contains_key("price") && a[0].contains_key("client_order_id"));
    assert_eq!(a[2]["outcome"], "approved");
    // Quotes move the watermark too (docs/observability.md), so either kind may close a bar.
    assert!(
        ["trade", "quote"].contains(&a[5]["kind"].as_str()),
        "the root is a market message: {:?}",
        a[5]
    );
    eprintln!("trace {}:", hex(trace_id));
    for (i, (s, at)) in chain.iter().rev().zip(a.iter().rev()).enumerate() {
        eprintln!(
            "{}{} ({} µs) correlation_id={} symbol={}",
            "  ".repeat(i),
            s.name,
            (s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano)) / 1000,
            at.get("correlation_id").map(String::as_str).unwrap_or("-"),
            at["symbol"]
        );
    }

    // Metrics arrive too, and the service is named as the environment says.
    wait_for("metrics", Duration::from_secs(30), || {
        let s = seen.lock().unwrap();
        let all = [
            "traderd.stream.messages",
            "traderd.stream.reconnects",
            "traderd.stream.lag_ms",
            "traderd.orders.submitted",
            "traderd.orders.fills",
            "traderd.account.equity_usd",
            "traderd.exposure.net_usd",
            "traderd.mode",
            "traderd.strategy.signals",
            "traderd.strategy.paused",
        ]
        .iter()
        .all(|n| s.metric_names.iter().any(|m| m == n));
        async move { all.then_some(()) }
    })
    .await;
    {
        let s = seen.lock().unwrap();
        assert!(s.service_names.iter().all(|n| n == "traderd-under-test"));
        assert!(
            !s.instance_ids.is_empty() && s.instance_ids.iter().all(|i| i == "paper-under-test"),
            "service.instance.id: {:?}",
            s.instance_ids
        );
        // No key or secret in anything exported.
        let raw = String::from_utf8_lossy(&s.raw);
        assert!(
            !raw.contains(SECRET) && !raw.contains(KEY),
            "a key was exported"
        );
    }

    // SIGTERM: what is buffered is flushed before the exit.
    let _ = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status();
    let status = wait_for("the exit", Duration::from_secs(40), || {
        let r = child.0.try_wait().unwrap();
        async move { r }
    })
    .await;
    assert!(status.success(), "{status:?}");
    sim.stop().await;
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
