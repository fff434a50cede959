//! The trace context messages carry from the stream to the fill (see [`TraceContext`]).
//! A plain value with no dependency on the daemon, so every layer can carry it.

/// The trace a message belongs to: the OpenTelemetry context of the span that sent it on.
/// Messages carry it from the stream to the fill (stream message → bar → signal → risk check →
/// submit → fill), so each stage's span is a child of the one before, in one trace. Empty when
/// no exporter is configured. It also carries when the market data that started the chain
/// arrived, so the order side can measure tick to order. It never takes part in a message's
/// equality.
#[derive(Clone, Default)]
pub struct TraceContext {
    cx: Option<opentelemetry::Context>,
    arrived: Option<std::time::Instant>,
}

impl std::fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TraceContext")
    }
}

impl PartialEq for TraceContext {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl TraceContext {
    /// The context of `span` (for the next stage); none for a span that is off (below the
    /// log level: asking for its context would only build an empty one on the order path).
    pub fn of(span: &tracing::Span) -> Self {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        TraceContext {
            cx: (!span.is_disabled()).then(|| span.context()),
            arrived: None,
        }
    }

    /// Makes `span` (not yet entered) a child of this context.
    pub fn adopt(&self, span: &tracing::Span) {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        if let Some(cx) = &self.cx {
            let _ = span.set_parent(cx.clone());
        }
    }

    /// Makes `span` a child of this context and returns the context of the next stage (the
    /// span's, with the same arrival time).
    pub fn child(&self, span: &tracing::Span) -> Self {
        self.adopt(span);
        TraceContext {
            arrived: self.arrived,
            ..TraceContext::of(span)
        }
    }

    /// The same context, started by market data that arrived at `at`.
    pub fn arrived_at(self, at: Option<std::time::Instant>) -> Self {
        TraceContext {
            arrived: at,
            ..self
        }
    }

    /// When the market data that started this chain arrived (live data only).
    pub fn arrived(&self) -> Option<std::time::Instant> {
        self.arrived
    }
}
