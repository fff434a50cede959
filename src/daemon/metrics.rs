//! The daemon's metrics, sampled from its actors and recorded through OpenTelemetry (the
//! exporter itself is set up in [`crate::telemetry`]).

/// Samples the daemon every `every` and records the metrics (exported by the periodic reader):
/// `traderd.stream.messages` and `traderd.stream.reconnects` (counters, by `stream`),
/// `traderd.stream.lag_ms` (gauge: how long ago the last market message came),
/// `traderd.orders.submitted`, `traderd.orders.fills` (counters), `traderd.risk.refusals`
/// (counter, by `code`), `traderd.account.equity_usd`, `traderd.exposure.net_usd` and `.gross_usd` (long and
/// short market values), `traderd.positions` (gauges) and `traderd.mode` (gauge: 0 active, 1 reduce_only,
/// 2 preserving, 3 preserved, 4 halted), and by `strategy` (its name): `traderd.strategy.signals`,
/// `traderd.strategy.orders`, `traderd.strategy.refused` (counters) and `traderd.strategy.paused`
/// (gauge, 0 or 1), and `traderd.log.dropped` (counter: log lines dropped because the log's
/// reader fell behind). Money becomes a float only here, at the export.
pub async fn record_metrics(
    d: &super::Daemon,
    meter: opentelemetry::metrics::Meter,
    every: std::time::Duration,
) {
    use opentelemetry::KeyValue;
    use rust_decimal::prelude::ToPrimitive;
    let messages = meter.u64_counter("traderd.stream.messages").build();
    let reconnects = meter.u64_counter("traderd.stream.reconnects").build();
    let lag = meter.f64_gauge("traderd.stream.lag_ms").build();
    let submitted = meter.u64_counter("traderd.orders.submitted").build();
    let fills = meter.u64_counter("traderd.orders.fills").build();
    let refusals = meter.u64_counter("traderd.risk.refusals").build();
    let equity = meter.f64_gauge("traderd.account.equity_usd").build();
    let exposure = meter.f64_gauge("traderd.exposure.net_usd").build();
    let gross = meter.f64_gauge("traderd.exposure.gross_usd").build();
    let positions = meter.u64_gauge("traderd.positions").build();
    let mode = meter.i64_gauge("traderd.mode").build();
    let strategy_signals = meter.u64_counter("traderd.strategy.signals").build();
    let strategy_orders = meter.u64_counter("traderd.strategy.orders").build();
    let strategy_refused = meter.u64_counter("traderd.strategy.refused").build();
    let strategy_paused = meter.u64_gauge("traderd.strategy.paused").build();
    let log_dropped = meter.u64_counter("traderd.log.dropped").build();
    // Counters take what is new since the last sample.
    let mut last: std::collections::HashMap<String, u64> = Default::default();
    let mut delta = |key: String, now: u64| {
        let before = last.insert(key, now).unwrap_or(0);
        now.saturating_sub(before)
    };
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        for (name, addr) in [
            ("market_data", &d.market_stream),
            ("trade_updates", &d.trade_stream),
        ] {
            let Ok(s) = addr.send(crate::messages::GetStreamStatus).await else {
                continue;
            };
            let attrs = [KeyValue::new("stream", name)];
            messages.add(
                delta(format!("messages.{name}"), s.metrics.messages_received),
                &attrs,
            );
            reconnects.add(
                delta(format!("reconnects.{name}"), s.metrics.reconnects),
                &attrs,
            );
            if name == "market_data"
                && let Some(at) = s.metrics.last_message_at
            {
                let ms = (chrono::Utc::now() - at).num_milliseconds().max(0) as f64;
                lag.record(ms, &attrs);
            }
        }
        if let Ok(o) = d
            .orders
            .send(crate::actors::order_manager::GetOrderStats)
            .await
        {
            submitted.add(delta("submitted".into(), o.submitted), &[]);
            fills.add(delta("fills".into(), o.fills), &[]);
            positions.record(o.positions.len() as u64, &[]);
        }
        for runner in &d.strategies {
            let Ok(st) = runner
                .send(crate::messages::strategy::GetStrategyStats)
                .await
            else {
                continue;
            };
            let attrs = [KeyValue::new("strategy", st.name.clone())];
            strategy_signals.add(delta(format!("signals.{}", st.name), st.signals), &attrs);
            strategy_orders.add(delta(format!("orders.{}", st.name), st.sent), &attrs);
            strategy_refused.add(
                delta(
                    format!("strategy_refused.{}", st.name),
                    st.refused + st.over_allocation,
                ),
                &attrs,
            );
            strategy_paused.record(u64::from(st.paused), &attrs);
        }
        if let Ok(r) = d.risk.send(crate::actors::risk_manager::GetRiskStats).await {
            for (code, n) in r.refused {
                refusals.add(
                    delta(format!("refused.{code}"), n),
                    &[KeyValue::new("code", code)],
                );
            }
        }
        if let Ok(Some(a)) = d.account.send(crate::actors::account::GetAccount).await {
            equity.record(a.equity.to_f64().unwrap_or(0.0), &[]);
            exposure.record(a.net_exposure.to_f64().unwrap_or(0.0), &[]);
            gross.record(a.gross_exposure.to_f64().unwrap_or(0.0), &[]);
        }
        if let Ok(s) = d
            .supervisor
            .send(crate::actors::supervisor::GetSupervisorStatus)
            .await
        {
            mode.record(s.mode.code(), &[]);
        }
        if let Some(log) = crate::telemetry::log_counts() {
            log_dropped.add(delta("log.dropped".into(), log.dropped().lines), &[]);
        }
    }
}
