//! Logging setup, filtered by `RUST_LOG` or the configured level:
//! - under systemd (stderr is the journal stream named by `JOURNAL_STREAM`), each event goes to
//!   journald through `systemd-journal-logger` as a structured entry: `MESSAGE`, `PRIORITY`,
//!   one field per event field (`SYMBOL`, `CLIENT_ORDER_ID`, `ORDER_ID`, `MODE`, …, upper-cased
//!   by the journal protocol) and `TRADERD_ACTOR` (the actor module that logged it), so
//!   `journalctl -u traderd SYMBOL=AAPL` works;
//! - otherwise readable lines on stderr (ANSI colour only on a terminal).

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

/// Readable lines on stderr (ANSI colour only on a terminal).
fn stderr_layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
}

/// Installs the stderr logger. `default_level` applies when `RUST_LOG` is unset.
pub fn init_stderr(default_level: &str) {
    let _ = tracing_subscriber::registry()
        .with(filter(default_level))
        .with(stderr_layer())
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

/// The exporters, kept to flush them at exit.
#[derive(Default)]
pub struct Telemetry {
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

    /// Exports what is buffered and stops the exporters (at exit).
    pub fn shutdown(self) {
        if let Some(t) = self.tracer
            && let Err(e) = t.shutdown()
        {
            eprintln!("traderd: flushing traces failed: {e}");
        }
        if let Some(m) = self.meter
            && let Err(e) = m.shutdown()
        {
            eprintln!("traderd: flushing metrics failed: {e}");
        }
    }
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
            Ok(log) => Some(JournalLayer {
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
    let stderr = journal.is_none().then(stderr_layer);
    let _ = tracing_subscriber::registry()
        .with(filter(default_level))
        .with(journal)
        .with(stderr)
        .with(otel)
        .try_init();
    if let Some(p) = problem {
        tracing::error!(problem = %p, "OpenTelemetry export is off");
    }
    (telemetry, sink)
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
