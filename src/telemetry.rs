//! Logging setup: readable lines on stderr, filtered by `RUST_LOG` or the configured level.
//! (journald and OpenTelemetry export come with the operations work.)

use tracing_subscriber::EnvFilter;

/// Installs the stderr logger. `default_level` applies when `RUST_LOG` is unset.
pub fn init_stderr(default_level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(default_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
