//! Logging setup, filtered by `RUST_LOG` or the configured level:
//! - under systemd (stderr is the journal stream named by `JOURNAL_STREAM`), each event goes to
//!   journald through `systemd-journal-logger` as a structured entry: `MESSAGE`, `PRIORITY`,
//!   one field per event field (`SYMBOL`, `CLIENT_ORDER_ID`, `ORDER_ID`, `MODE`, …, upper-cased
//!   by the journal protocol) and `TRADERD_ACTOR` (the actor module that logged it), so
//!   `journalctl -u traderd SYMBOL=AAPL` works;
//! - otherwise readable lines on stderr (ANSI colour only on a terminal).
//!
//! The daemon's lines are written by a thread of their own ([`offload`]): logging never makes
//! the trading thread wait for journald or stderr.

pub mod offload;

pub use crate::trace::TraceContext;
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

/// Readable lines on stderr (ANSI colour only on a terminal), written by `writer`. As in
/// journald's entries, a line carries its own fields, not the `info` spans it was logged in
/// (those are for the traces): seeing them, the layer would format each one's fields as it is
/// made, for nothing but a prefix to the lines inside it, and at `info` that is three spans on
/// every order's path and one on every live bar. Debug spans (a REST request's) still prefix
/// the debug lines inside them.
fn stderr_layer<S, W>(writer: W) -> impl Layer<S>
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + 'static,
{
    tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            meta.is_event() || *meta.level() >= Level::DEBUG
        }))
}

/// Installs the stderr logger, writing on the calling thread (the tools' and `ctl`'s: a line
/// is on the terminal before the next step). `default_level` applies when `RUST_LOG` is unset.
pub fn init_stderr(default_level: &str) {
    let _ = tracing_subscriber::registry()
        .with(filter(default_level))
        .with(stderr_layer(std::io::stderr))
        .with(ErrorCounter)
        .try_init();
}

static ERRORS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static FIRST_ERRORS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Counts ERROR events and keeps the first ten as text: the soak's "no ERROR line" check.
pub struct ErrorCounter;

struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?} ");
        } else {
            let _ = write!(self.0, "{}={value:?} ", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for ErrorCounter {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if *event.metadata().level() != Level::ERROR {
            return;
        }
        ERRORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut first) = FIRST_ERRORS.lock() {
            if first.len() < 10 {
                let mut text = Text(String::new());
                event.record(&mut text);
                first.push(text.0.trim_end().to_string());
            }
        }
    }
}

/// ERROR events logged since the start of the process (with [`init_stderr`]), and the first
/// ten of them.
pub fn errors_logged() -> (u64, Vec<String>) {
    let first = FIRST_ERRORS.lock().map(|f| f.clone()).unwrap_or_default();
    (ERRORS.load(std::sync::atomic::Ordering::Relaxed), first)
}

/// The exporters and the log's writer, kept to flush them at exit (the log's lines are
/// flushed when this is dropped, however the process ends its run).
#[derive(Default)]
pub struct Telemetry {
    logs: Option<LogGuard>,
    tracer: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
    meter: Option<opentelemetry_sdk::metrics::SdkMeterProvider>,
    /// Where it exports (for the start-up log line), if anywhere.
    pub exporting_to: Option<String>,
    pub metrics_interval: std::time::Duration,
}

impl Telemetry {
    /// The meter metrics are recorded with, when exporting.
    pub fn meter(&self) -> Option<opentelemetry::metrics::Meter> {
        use opentelemetry::metrics::MeterProvider;
        self.meter.as_ref().map(|m| m.meter("traderd"))
    }

    /// Exports what is buffered and stops the exporters (at exit); then the log's lines.
    pub fn shutdown(mut self) {
        if let Some(t) = self.tracer.take()
            && let Err(e) = t.shutdown()
        {
            eprintln!("traderd: flushing traces failed: {e}");
        }
        if let Some(m) = self.meter.take()
            && let Err(e) = m.shutdown()
        {
            eprintln!("traderd: flushing metrics failed: {e}");
        }
    }
}

/// How long the log's last lines may take at exit (a stalled journald must not hold up a stop
/// that systemd times).
const LOG_FLUSH: std::time::Duration = std::time::Duration::from_secs(2);

/// Flushes the log's lines when dropped, whichever sink its writer thread writes to.
struct LogGuard(Box<dyn Fn(std::time::Duration) -> bool + Send + Sync>);

impl LogGuard {
    /// The guard of `writer`, whose counts become [`log_counts`].
    fn of<L: Send + 'static>(writer: &offload::Offload<L>) -> LogGuard {
        let _ = LOG_COUNTS.set(writer.counts());
        let writer = writer.clone();
        LogGuard(Box::new(move |within| writer.flush(within)))
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        (self.0)(LOG_FLUSH);
    }
}

static LOG_COUNTS: std::sync::OnceLock<std::sync::Arc<offload::Counts>> =
    std::sync::OnceLock::new();

/// The daemon's log lines written and dropped so far (`None`: the log writes on the calling
/// thread, as the tools' does), for `ctl stats` and the metrics.
pub fn log_counts() -> Option<&'static offload::Counts> {
    LOG_COUNTS.get().map(|c| &**c)
}

/// Builds the OTLP exporters when an endpoint is configured (here or in the standard
/// `OTEL_EXPORTER_OTLP_ENDPOINT`). Must run outside any async runtime (the exporters use
/// reqwest's blocking client on threads of their own, as opentelemetry-otlp requires).
fn exporters(
    t: &crate::config::TelemetrySection,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Telemetry, String> {
    use opentelemetry_otlp::WithExportConfig;
    let set = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    let base = if !t.otlp_endpoint.is_empty() {
        Some(t.otlp_endpoint.trim_end_matches('/').to_string())
    } else {
        None
    };
    let from_env = set("OTEL_EXPORTER_OTLP_ENDPOINT").or(set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"));
    if base.is_none() && from_env.is_none() {
        return Ok(Telemetry::default());
    }
    // reqwest is built without a bundled crypto provider (https collectors need one).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut resource = opentelemetry_sdk::Resource::builder().with_attribute(
        opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
    );
    if set("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(t.service_name.clone());
    }
    resource = resource.with_attribute(opentelemetry::KeyValue::new(
        "service.instance.id",
        instance_id(env),
    ));
    let resource = resource.build();
    let with_base = |path: &str| base.as_ref().map(|b| format!("{b}{path}"));
    let mut spans = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary);
    if let Some(url) = with_base("/v1/traces") {
        spans = spans.with_endpoint(url);
    }
    let spans = spans
        .build()
        .map_err(|e| format!("the OTLP span exporter: {e}"))?;
    let mut metrics = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary);
    if let Some(url) = with_base("/v1/metrics") {
        metrics = metrics.with_endpoint(url);
    }
    let metrics = metrics
        .build()
        .map_err(|e| format!("the OTLP metric exporter: {e}"))?;
    let interval = std::time::Duration::from_millis(t.metrics_interval_ms);
    let mut reader = opentelemetry_sdk::metrics::PeriodicReader::builder(metrics);
    if set("OTEL_METRIC_EXPORT_INTERVAL").is_none() {
        reader = reader.with_interval(interval);
    }
    let tracer = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(spans)
        .with_resource(resource.clone())
        .build();
    let meter = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
        .with_reader(reader.build())
        .with_resource(resource)
        .build();
    Ok(Telemetry {
        logs: None,
        tracer: Some(tracer),
        meter: Some(meter),
        exporting_to: Some(base.or(from_env).unwrap_or_default()),
        metrics_interval: interval,
    })
}

/// Installs logging (journald when stderr is the journal, else stderr) and, when configured,
/// OTLP export of traces and metrics. Answers the exporters (flush them with
/// [`Telemetry::shutdown`]) and which log sink it chose (`"journald"` or `"stderr"`).
pub fn init(
    default_level: &str,
    otlp: &crate::config::TelemetrySection,
    env: impl Fn(&str) -> Option<String>,
) -> (Telemetry, &'static str) {
    use opentelemetry::trace::TracerProvider;
    let (telemetry, problem) = match exporters(otlp, &env) {
        Ok(t) => (t, None),
        Err(e) => (Telemetry::default(), Some(e)),
    };
    let otel = telemetry
        .tracer
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("traderd")));
    let journal = if systemd_journal_logger::connected_to_journal() {
        match systemd_journal_logger::JournalLog::new() {
            Ok(log) => Some(Journal {
                log: log.with_syslog_identifier("traderd".into()),
            }),
            Err(e) => {
                eprintln!("traderd: cannot open the journal ({e}); logging to stderr");
                None
            }
        }
    } else {
        None
    };
    let sink = if journal.is_some() {
        "journald"
    } else {
        "stderr"
    };
    let started = match journal {
        Some(j) => offload::Offload::start(j, offload::QUEUE_LINES)
            .map(|o| (Some(JournalLayer { to: o.clone() }), None, LogGuard::of(&o))),
        None => offload::Offload::start(offload::Stderr, offload::QUEUE_LINES)
            .map(|o| (None, Some(stderr_layer(o.clone())), LogGuard::of(&o))),
    };
    let (journal, stderr, in_place, guard) = match started {
        Ok((journal, stderr, guard)) => (journal, stderr, None, Some(guard)),
        Err(e) => {
            // Without a thread of its own the log writes where it is logged, as before.
            eprintln!("traderd: cannot start the log's writer thread ({e}); logging in place");
            (None, None, Some(stderr_layer(std::io::stderr)), None)
        }
    };
    let mut telemetry = telemetry;
    telemetry.logs = guard;
    let _ = tracing_subscriber::registry()
        .with(filter(default_level))
        .with(journal)
        .with(stderr)
        .with(in_place)
        .with(otel)
        .try_init();
    if let Some(p) = problem {
        tracing::error!(problem = %p, "OpenTelemetry export is off");
    }
    (telemetry, sink)
}

/// Hands each event, as one structured entry, to the thread that writes it to journald.
pub struct JournalLayer {
    to: offload::Offload<JournalEntry>,
}

/// One event, ready for journald: its fields as text, the rest from its callsite.
pub struct JournalEntry {
    message: String,
    pairs: Vec<(String, String)>,
    meta: &'static tracing::Metadata<'static>,
}

/// Writes entries to journald (`systemd-journal-logger`: the native protocol on its socket).
struct Journal {
    log: systemd_journal_logger::JournalLog,
}

impl offload::Sink for Journal {
    type Line = JournalEntry;

    fn write(&mut self, e: JournalEntry) {
        let level = match *e.meta.level() {
            Level::ERROR => log::Level::Error,
            Level::WARN => log::Level::Warn,
            Level::INFO => log::Level::Info,
            Level::DEBUG => log::Level::Debug,
            Level::TRACE => log::Level::Trace,
        };
        let mut pairs: Vec<(&str, &str)> = e
            .pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Some(actor) = actor_of(e.meta.target()) {
            pairs.push(("traderd_actor", actor));
        }
        let message = &e.message;
        log::Log::log(
            &self.log,
            &log::Record::builder()
                .args(format_args!("{message}"))
                .level(level)
                .target(e.meta.target())
                .module_path(e.meta.module_path())
                .file(e.meta.file())
                .line(e.meta.line())
                .key_values(&pairs)
                .build(),
        );
    }

    fn dropped(&mut self, lost: offload::Lost) {
        let notice = lost.notice();
        log::Log::log(
            &self.log,
            &log::Record::builder()
                .args(format_args!("{notice}"))
                .level(log::Level::Warn)
                .target("traderd::telemetry")
                .build(),
        );
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    pairs: Vec<(String, String)>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.message = value;
        } else {
            self.pairs.push((field.name().to_string(), value));
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }
}

/// The synchronous cores and the actor shell that runs each: a core's log line is its
/// actor's (the order side's decisions log from `orders::desk`, run by the order manager).
const CORES: &[(&str, &str)] = &[
    ("traderd::orders", "order_manager"),
    ("traderd::risk", "risk_manager"),
    ("traderd::strategy", "strategy_runner"),
    ("traderd::mode", "supervisor"),
    ("traderd::connection", "stream_client"),
    ("traderd::aggregation", "market_data"),
];

/// The actor a log line comes from: `traderd::actors::order_manager` → `order_manager`, and
/// `traderd::orders::desk` (a core the order manager runs) → `order_manager`.
pub fn actor_of(target: &str) -> Option<&str> {
    if let Some(rest) = target.strip_prefix("traderd::actors::") {
        return rest.split("::").next();
    }
    CORES
        .iter()
        .find(|(core, _)| {
            target
                .strip_prefix(core)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        })
        .map(|(_, actor)| *actor)
}

impl<S: Subscriber> Layer<S> for JournalLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let entry = JournalEntry {
            message: fields.message,
            pairs: fields.pairs,
            meta,
        };
        self.to.send(entry, *meta.level());
    }
}

/// What tells this daemon from others in a collector or a notification: `TRADERD_INSTANCE`
/// (`traderd@paper.service` sets it to `paper`), else the host name.
pub fn instance_id(env: &impl Fn(&str) -> Option<String>) -> String {
    env("TRADERD_INSTANCE")
        .map(|i| i.trim().to_string())
        .filter(|i| !i.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "traderd".into())
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
        // A core's lines are its actor's.
        assert_eq!(actor_of("traderd::orders::desk"), Some("order_manager"));
        assert_eq!(actor_of("traderd::mode"), Some("supervisor"));
        assert_eq!(actor_of("traderd::modern"), None);
    }
}
