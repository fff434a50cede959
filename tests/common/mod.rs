//! Shared helpers for the end-to-end tests: a real simulator on 127.0.0.1:0, a real client,
//! and waiting on conditions with deadlines (never sleep-and-hope).

#![allow(dead_code)]

pub mod actors;

use std::future::Future;
use std::time::{Duration, Instant};
use traderd::alpaca::{AlpacaClient, ClientSettings, Credentials, Secret};
use traderd::sim::{self, SimHandle, SimSettings};

pub const KEY: &str = "PKTESTKEY";
pub const SECRET: &str = "test-secret-do-not-log";

/// A simulator with the given tweaks, at a fixed seed, at 60x, without a rate limit.
pub async fn start_sim(tweak: impl FnOnce(&mut SimSettings)) -> SimHandle {
    let mut settings = SimSettings {
        seed: 42,
        speed: 60.0,
        rate_limit: 0,
        ..SimSettings::default()
    };
    tweak(&mut settings);
    sim::start(settings, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("bind simulator")
}

/// Client settings with quick retries so fault tests stay short.
pub fn fast_settings(base: &str) -> ClientSettings {
    ClientSettings {
        retry_min_delay: Duration::from_millis(20),
        retry_max_delay: Duration::from_millis(200),
        request_timeout: Duration::from_secs(5),
        ..ClientSettings::for_base_url(base)
    }
}

pub fn client(sim: &SimHandle) -> AlpacaClient {
    client_with(fast_settings(&sim.base_url()))
}

pub fn client_with(settings: ClientSettings) -> AlpacaClient {
    let creds = Credentials {
        key_id: KEY.into(),
        secret: Secret::new(SECRET),
    };
    AlpacaClient::new(settings, &creds).expect("client")
}

/// Polls `check` until it returns `Some`, failing the test after `within`.
pub async fn wait_for<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A raw HTTP client for the admin API.
pub fn admin() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

pub async fn set_fault(sim: &SimHandle, fault: serde_json::Value) {
    let resp = admin()
        .post(format!("{}/_sim/faults", sim.base_url()))
        .json(&fault)
        .send()
        .await
        .unwrap();
    assert!(
        resp.status().is_success(),
        "fault {fault} refused: {}",
        resp.text().await.unwrap_or_default()
    );
}

/// `POST /_sim/{path}` with a JSON body; the answer, which must be a success.
pub async fn admin_post(sim: &SimHandle, path: &str, body: serde_json::Value) -> serde_json::Value {
    let resp = admin()
        .post(format!("{}/_sim/{path}", sim.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let answer: serde_json::Value = resp.json().await.unwrap_or_default();
    assert!(
        status.is_success(),
        "POST /_sim/{path} {body}: {status} {answer}"
    );
    answer
}

async fn admin_get(sim: &SimHandle, path: &str) -> serde_json::Value {
    let resp = admin()
        .get(format!("{}/_sim/{path}", sim.base_url()))
        .send()
        .await
        .unwrap();
    resp.json().await.unwrap()
}

pub async fn sim_state(sim: &SimHandle) -> serde_json::Value {
    admin_get(sim, "state").await
}

pub async fn sim_stats(sim: &SimHandle) -> serde_json::Value {
    admin_get(sim, "stats").await
}

/// A spawned daemon, killed (and reaped) when dropped, so a failing test leaves none behind.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A simulator that takes only `KEY`/`SECRET`, at 120x: the broker a paper-mode daemon
/// trades against (it outlives the daemon, as an Alpaca account does).
pub async fn paper_sim() -> SimHandle {
    paper_sim_with(|_| {}).await
}

/// [`paper_sim`], with `tweak` applied to its settings after.
pub async fn paper_sim_with(tweak: impl FnOnce(&mut SimSettings)) -> SimHandle {
    start_sim(|s| {
        s.credentials = Some((KEY.into(), SECRET.into()));
        s.speed = 120.0;
        tweak(s);
    })
    .await
}

/// The variables that point a paper-mode daemon at `sim_url` with `KEY`/`SECRET`.
pub fn paper_env(sim_url: &str) -> [(&'static str, String); 4] {
    [
        ("APCA_API_KEY_ID", KEY.to_string()),
        ("APCA_API_SECRET_KEY", SECRET.to_string()),
        ("APCA_API_BASE_URL", sim_url.to_string()),
        ("APCA_API_DATA_URL", sim_url.to_string()),
    ]
}

/// `traderd run --config C --state-dir S` in paper mode against `sim_url` (keys and URLs in
/// its environment, `RUST_LOG=info`, stdout discarded); the caller adds stderr and the rest.
pub fn paper_daemon(
    sim_url: &str,
    config: &std::path::Path,
    state: &std::path::Path,
) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_traderd"));
    c.args(["run", "--config"])
        .arg(config)
        .arg("--state-dir")
        .arg(state)
        .envs(paper_env(sim_url))
        .env("RUST_LOG", "info")
        .env_remove("STATE_DIRECTORY")
        .stdout(std::process::Stdio::null());
    c
}

/// `traderd ARGS --data-dir DIR`, without API keys in its environment.
#[allow(dead_code)] // not every test binary uses it
pub fn traderd_data(args: &[&str], data_dir: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_traderd"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("APCA_API_KEY_ID")
        .env_remove("APCA_API_SECRET_KEY")
        .output()
        .unwrap()
}

/// The whole daemon in this process (`daemon::run`) with its state in `dir`, until
/// [`InProcess::stop`]. Must run inside an actix system (`#[actix_rt::test]`).
pub struct InProcess {
    pub socket: std::path::PathBuf,
    stop: tokio::sync::oneshot::Sender<()>,
    running: tokio::task::JoinHandle<Result<traderd::daemon::Exit, traderd::daemon::StartError>>,
}

impl InProcess {
    pub fn start(
        config: traderd::config::Config,
        check: traderd::config::CheckContext,
        dir: &std::path::Path,
        env: impl Fn(&str) -> Option<String> + 'static,
    ) -> InProcess {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let options = traderd::daemon::RunOptions {
            config,
            state_dir: dir.to_path_buf(),
            config_path: None,
            check,
            reload_on_sighup: false,
            metrics: None,
        };
        let running = actix_rt::spawn(traderd::daemon::run(options, env, async {
            let _ = stopped.await;
        }));
        InProcess {
            socket: dir.join("traderd.sock"),
            stop,
            running,
        }
    }

    /// Ends the run through its shutdown sequence; the exit must be clean.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let exit = tokio::time::timeout(Duration::from_secs(60), self.running)
            .await
            .expect("the run ends")
            .expect("the run's task")
            .expect("the run");
        assert_eq!(exit, traderd::daemon::Exit::Clean);
        assert_eq!(exit.code(), 0);
    }
}

/// The journal a run in `dir` wrote: `dir`'s own, or (on the embedded simulator) the newest
/// `sim-*` one in it.
pub fn journal_of(dir: &std::path::Path) -> traderd::journal::Store {
    let at = traderd::tools::report::journal_dir(dir).expect("a journal");
    traderd::journal::Store::open(&at).expect("the journal opens")
}

/// A config that trades often: momentum entering on any RSI with market orders only, at 120x,
/// the account read every 300 ms; `extra` adds sections (e.g. `[connection] mode = "paper"`).
pub fn busy_config(extra: &str, ctx: &traderd::config::CheckContext) -> traderd::config::Config {
    let text = format!(
        "[sim]\nspeed = 120.0\n[account]\nrefresh_interval_ms = 300\n\
         [risk]\nmax_orders_per_minute = 1000\n\
         [strategy]\nsizing_usd = \"2000\"\nprotection = \"none\"\n\
         [strategy.momentum]\nrsi_entry_min = 0.0\nrsi_entry_max = 100.0\nrsi_exit = 100.0\n{extra}"
    );
    traderd::config::Config::parse(&text, "test", ctx).unwrap_or_else(|e| panic!("{e}"))
}
