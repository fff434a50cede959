//! Logging setup, filtered by `RUST_LOG` or the configured level:
//! - under systemd (stderr is the journal stream named by `JOURNAL_STREAM`), each event goes to
//!   journald through `systemd-journal-logger` as a structured entry: `MESSAGE`, `PRIORITY`,
//!   one field per event field (`SYMBOL`, `CLIENT_ORDER_ID`, `ORDER_ID`, `MODE`, …, upper-cased
//!   by the journal protocol) and `TRADERD_ACTOR` (the actor module that logged it), so
//!   `journalctl -u traderd SYMBOL=AAPL` works;
//! - otherwise readable lines on stderr (ANSI colour only on a terminal).

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

fn filter(default_level: &str) -> EnvFilter {
    EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(default_level))
        .unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Installs the stderr logger. `default_level` applies when `RUST_LOG` is unset.
pub fn init_stderr(default_level: &str) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter(default_level))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// Installs journald logging when stderr is the journal, else the stderr logger. Answers
/// which one it chose (`"journald"` or `"stderr"`).
pub fn init(default_level: &str) -> &'static str {
    if systemd_journal_logger::connected_to_journal() {
        match systemd_journal_logger::JournalLog::new() {
            Ok(log) => {
                let log = log.with_syslog_identifier("traderd".into());
                let _ = tracing_subscriber::registry()
                    .with(filter(default_level))
                    .with(JournalLayer { log })
                    .try_init();
                return "journald";
            }
            Err(e) => eprintln!("traderd: cannot open the journal ({e}); logging to stderr"),
        }
    }
    init_stderr(default_level);
    "stderr"
}

/// Sends each event to journald as one structured entry.
pub struct JournalLayer {
    log: systemd_journal_logger::JournalLog,
}

#[derive(Default)]
struct Fields {
    message: String,
    pairs: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.pairs
                .push((field.name().to_string(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.pairs
                .push((field.name().to_string(), format!("{value:?}")));
        }
    }
}

/// The actor a log line comes from: `traderd::actors::order_manager` → `order_manager`.
pub fn actor_of(target: &str) -> Option<&str> {
    let rest = target.strip_prefix("traderd::actors::")?;
    rest.split("::").next()
}

impl<S: Subscriber> Layer<S> for JournalLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let level = match *meta.level() {
            Level::ERROR => log::Level::Error,
            Level::WARN => log::Level::Warn,
            Level::INFO => log::Level::Info,
            Level::DEBUG => log::Level::Debug,
            Level::TRACE => log::Level::Trace,
        };
        let mut pairs: Vec<(&str, &str)> = fields
            .pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Some(actor) = actor_of(meta.target()) {
            pairs.push(("traderd_actor", actor));
        }
        let message = &fields.message;
        log::Log::log(
            &self.log,
            &log::Record::builder()
                .args(format_args!("{message}"))
                .level(level)
                .target(meta.target())
                .module_path(meta.module_path())
                .file(meta.file())
                .line(meta.line())
                .key_values(&pairs)
                .build(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_actor_is_the_module_under_actors() {
        assert_eq!(
            actor_of("traderd::actors::order_manager"),
            Some("order_manager")
        );
        assert_eq!(
            actor_of("traderd::actors::stream_client::session"),
            Some("stream_client")
        );
        assert_eq!(actor_of("traderd::daemon"), None);
    }
}
