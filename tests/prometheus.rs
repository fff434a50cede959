#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The opt-in HTTP endpoints against a real Prometheus (Debian's package; `.ci/run` installs
//! it): Prometheus scrapes `/metrics` and answers a query for a traderd metric through its
//! HTTP API; `/readyz` is 200 once reconciled; `/healthz` is 200 while active and 503 with a
//! JSON reason once an operator pauses trading.

mod common;

use common::wait_for;
use std::process::{Command, Stdio};
use std::time::Duration;
use traderd::config::CheckContext;

const WAIT: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn get(url: &str) -> Option<(u16, serde_json::Value)> {
    traderd::alpaca::rest::install_crypto_provider();
    let r = reqwest::get(url).await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.ok()?))
}

/// The value of a Prometheus query's first sample.
async fn query(prometheus: &str, q: &str) -> Option<f64> {
    let (_, body) = get(&format!("{prometheus}/api/v1/query?query={q}")).await?;
    body["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

fn contrib(file: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config/contrib")
        .join(file)
}

/// The `traderd_…` metric names a dashboard or rule file uses.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("traderd_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        out.insert(name);
    }
    out
}

#[actix_rt::test]
async fn prometheus_scrapes_the_daemon_and_health_follows_the_mode() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = common::busy_config(
        &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
        &CheckContext::default(),
    );
    let daemon = common::InProcess::start(config, CheckContext::default(), dir.path(), |_| None);
    let base = format!("http://127.0.0.1:{port}");
    let ready = wait_for("/readyz 200", WAIT, || async {
        let (status, body) = get(&format!("{base}/readyz")).await?;
        (status == 200).then_some(body)
    })
    .await;
    assert_eq!(ready["ready"], true);

    // A real Prometheus scraping it every second.
    let prom_port = free_port();
    // The shipped alert rules pass promtool and load into it; the rules evaluate every second.
    let rules = contrib("alerts.yml");
    let check = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("promtool (Debian's prometheus package)");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: traderd\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n",
            rules.display()
        ),
    )
    .unwrap();
    let prometheus = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("Prometheus is needed (apt-get install prometheus; .ci/run does it): {e}")
        });
    let _prometheus = common::Killed(prometheus);
    let prom = format!("http://127.0.0.1:{prom_port}");
    let fills = wait_for("Prometheus to have traderd's fills", WAIT, || {
        let prom = prom.clone();
        async move {
            query(&prom, "traderd_orders_fills_total")
                .await
                .filter(|f| *f >= 1.0)
        }
    })
    .await;
    assert!(fills >= 1.0);
    assert_eq!(query(&prom, "traderd_mode").await, Some(0.0));
    let (status, health) = get(&format!("{base}/healthz")).await.unwrap();
    assert_eq!(
        (status, health["status"].as_str()),
        (200, Some("ok")),
        "{health}"
    );

    // Paused: not healthy, and why; Prometheus sees the mode.
    let paused = traderd::control::call(&daemon.socket, "pause", &[])
        .await
        .unwrap();
    assert!(paused.ok);
    let (status, health) = get(&format!("{base}/healthz")).await.unwrap();
    assert_eq!(status, 503, "{health}");
    assert!(
        health["reason"].as_str().unwrap().contains("reduce_only"),
        "{health}"
    );
    wait_for("Prometheus to see reduce_only", WAIT, || {
        let prom = prom.clone();
        async move { (query(&prom, "traderd_mode").await == Some(1.0)).then_some(()) }
    })
    .await;
    // The shipped rule sees it too: TraderdNotActive is pending (it fires after 1m).
    wait_for("TraderdNotActive pending", WAIT, || {
        let prom = prom.clone();
        async move {
            let (_, alerts) = get(&format!("{prom}/api/v1/alerts")).await?;
            alerts["data"]["alerts"]
                .as_array()?
                .iter()
                .any(|a| a["labels"]["alertname"] == "TraderdNotActive")
                .then_some(())
        }
    })
    .await;
    let (_, loaded) = get(&format!("{prom}/api/v1/rules")).await.unwrap();
    let loaded = loaded["data"]["groups"][0]["rules"].as_array().unwrap();
    assert_eq!(loaded.len(), 5);
    assert!(loaded.iter().all(|r| r["health"] == "ok"), "{loaded:?}");
    // Every traderd metric the shipped dashboard and rules use is served.
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Served: every family declared (a family of labels with no sample yet, like refusals
    // before the first, still is), counters with their `_total` samples.
    let mut served: std::collections::BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect();
    for l in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        match l.split_once(' ') {
            Some((name, "counter")) => served.insert(format!("{name}_total")),
            Some((name, _)) => served.insert(name.to_string()),
            None => false,
        };
    }
    for m in [
        "traderd_exposure_gross_usd",
        "traderd_orders_final_total",
        "traderd_journal_writes_total",
        "traderd_journal_write_seconds",
        "traderd_journal_intent_writes_total",
        "traderd_journal_intent_write_seconds",
        "traderd_stream_bytes_total",
        "traderd_stream_frames_failed_total",
        "traderd_stream_processed_total",
    ] {
        assert!(served.contains(m), "{m} not served");
    }
    assert!(
        text.contains("traderd_orders_final_total{status=\"filled\"}"),
        "{text}"
    );
    // The dashboard is a Grafana dashboard: JSON, panels querying Prometheus.
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(contrib("grafana-dashboard.json")).unwrap())
            .expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 8);
    assert!(panels.iter().all(|p| p["targets"][0]["expr"].is_string()));
    for file in ["alerts.yml", "grafana-dashboard.json"] {
        let used = metric_names(&std::fs::read_to_string(contrib(file)).unwrap());
        assert!(!used.is_empty(), "{file} uses no traderd metric");
        for m in used {
            assert!(
                served.contains(m.as_str()),
                "{file} uses {m}, not served: {served:?}"
            );
        }
    }
    // Nothing about orders' ids or secrets is served.
    assert!(
        !text.contains("client_order_id") && !text.contains("td-"),
        "{text}"
    );
    daemon.stop().await;
}
