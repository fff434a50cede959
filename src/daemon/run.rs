//! The process's run loop as a library call: start the daemon, serve until asked to stop (the
//! caller's `shutdown` future, the control socket's `shutdown`, or capital preservation that
//! cannot run), then run the shutdown sequence under its deadline and answer how it ended.
//! `main.rs` only parses the command line, sets up telemetry and calls [`run`]; a test starts
//! and stops the whole daemon in-process the same way.

use super::{Daemon, StartError};
use crate::config::{CheckContext, Config};
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

/// What [`run`] needs beyond the config.
pub struct RunOptions {
    pub config: Config,
    pub state_dir: PathBuf,
    /// The file the config came from: `reload` (and SIGHUP) read it again.
    pub config_path: Option<PathBuf>,
    pub check: CheckContext,
    /// Reload the config on SIGHUP (the process does; a test in a shared process does not).
    pub reload_on_sighup: bool,
    /// Metrics to record while running, and how often.
    pub metrics: Option<(opentelemetry::metrics::Meter, Duration)>,
}

/// How a run ended, and the exit status the process gives for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Stopped on request; the shutdown sequence finished in time: 0.
    Clean,
    /// The shutdown sequence did not finish in time; the next start reconciles what is left: 1.
    Late,
    /// Capital preservation could not run: 70, so that the service manager restarts the
    /// daemon, which resumes it.
    PreservationCannotRun(String),
}

impl Exit {
    pub fn code(&self) -> u8 {
        match self {
            Exit::Clean => 0,
            Exit::Late => 1,
            Exit::PreservationCannotRun(_) => 70,
        }
    }
}

/// Starts the daemon and serves until `shutdown` completes (or the control socket asks, or
/// capital preservation cannot run), then stops it. Must run inside an actix `System`.
pub async fn run(
    options: RunOptions,
    env: impl Fn(&str) -> Option<String>,
    shutdown: impl Future<Output = ()>,
) -> Result<Exit, StartError> {
    let RunOptions {
        config,
        state_dir,
        config_path,
        check,
        reload_on_sighup,
        metrics,
    } = options;
    // Freed memory back to the system every few seconds, while the daemon runs.
    let _trimmer = super::memory::trim_every(Duration::from_secs(5));
    // The HTTP endpoints' address is bound before anything starts: a taken port is a clear
    // error, not a daemon without its health check.
    let http = if config.metrics.listen.is_empty() {
        None
    } else {
        let listener = tokio::net::TcpListener::bind(&config.metrics.listen)
            .await
            .map_err(|e| {
                StartError::Config(format!(
                    "metrics.listen {}: cannot listen there: {e}",
                    config.metrics.listen
                ))
            })?;
        Some(listener)
    };
    let daemon = super::start(&config, &state_dir, env).await?;
    let http = http.map(|listener| {
        tracing::info!(listen = %config.metrics.listen, "serving /metrics, /healthz and /readyz");
        let probes =
            super::http::Probes::of(&daemon, Duration::from_millis(config.stream.stale_after_ms));
        actix::spawn(super::http::serve(listener, probes))
    });
    if let Some(path) = config_path {
        daemon
            .control
            .do_send(crate::control::ConfigSource { path, check });
    }
    tracing::info!("running; Ctrl-C or SIGTERM stops it; SIGHUP reloads risk limits and symbols");
    let fatal_reason = serve(&daemon, shutdown, reload_on_sighup, metrics).await;
    if let Some(task) = http {
        task.abort();
    }
    tracing::info!("stopping");
    super::systemd::notify_stopping();
    // The sequence has its own deadline; this one is the last word.
    let limits = config.shutdown.clone();
    let limit = Duration::from_secs(limits.timeout_s + 5);
    let in_time = tokio::time::timeout(limit, daemon.shutdown(&limits))
        .await
        .unwrap_or(false);
    if let Some(reason) = fatal_reason {
        tracing::error!(reason = %reason, "exiting with status 70 so that the service manager restarts the daemon");
        return Ok(Exit::PreservationCannotRun(reason));
    }
    if !in_time {
        tracing::error!(
            timeout_s = limits.timeout_s,
            "the shutdown did not finish in time; the next start reconciles what is left"
        );
        return Ok(Exit::Late);
    }
    Ok(Exit::Clean)
}

/// Serves until asked to stop; answers why capital preservation cannot run, if that is why.
async fn serve(
    daemon: &Daemon,
    shutdown: impl Future<Output = ()>,
    reload_on_sighup: bool,
    metrics: Option<(opentelemetry::metrics::Meter, Duration)>,
) -> Option<String> {
    let mut fatal = daemon.fatal.clone();
    let mut stop = daemon.stop_requested.clone();
    // systemd: READY after reconciliation, then watchdog pings while the actors answer.
    let mut service = Box::pin(async {
        super::systemd::notify_ready(daemon).await;
        let dog = async {
            match super::systemd::watchdog_interval() {
                Some(interval) => super::systemd::watchdog(daemon, interval).await,
                None => std::future::pending().await,
            }
        };
        let record = async {
            match metrics {
                Some((meter, every)) => super::metrics::record_metrics(daemon, meter, every).await,
                None => std::future::pending().await,
            }
        };
        tokio::join!(dog, record);
    });
    let mut hangup = if reload_on_sighup {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP: reload with traderd ctl reload");
                None
            }
        }
    } else {
        None
    };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut service => return None,
            _ = &mut shutdown => return None,
            _ = stop.wait_for(|s| *s) => {
                tracing::warn!("shutdown asked for on the control socket");
                return None;
            }
            r = fatal.wait_for(|f| f.is_some()) => return r.ok().and_then(|f| f.clone()),
            Some(()) = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                match daemon.control.send(crate::control::Reload).await {
                    Ok(Ok(report)) => tracing::warn!(report = %report, "SIGHUP: config reloaded"),
                    Ok(Err(why)) => tracing::error!(why = %why, "SIGHUP: config not reloaded"),
                    Err(e) => tracing::error!(error = %e, "SIGHUP: the control server is not running"),
                }
            }
        }
    }
}
