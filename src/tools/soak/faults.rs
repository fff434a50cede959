//! The faults soak: random faults at the simulator, the daemon's answers to each checked.

use super::*;

pub(super) async fn run_faults(opts: SoakOptions) -> Result<SoakReport, String> {
    let mut config = Config::parse(&soak_config(), "soak settings", &CheckContext::default())
        .map_err(|e| e.to_string())?;
    config.sim.seed = opts.seed;
    config.sim.speed = opts.speed;
    std::fs::create_dir_all(&opts.state_dir)
        .map_err(|e| format!("cannot create {}: {e}", opts.state_dir.display()))?;
    let daemon = crate::daemon::start(&config, &opts.state_dir, |_| None)
        .await
        .map_err(|e| e.to_string())?;
    let admin = AdminClient::new(
        daemon
            .sim
            .as_ref()
            .map(|s| s.base_url())
            .ok_or("the soak needs the embedded simulator")?,
    );
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed);
    let mut report = SoakReport {
        seed: opts.seed,
        ..SoakReport::default()
    };
    let started = Instant::now();
    let deadline = started + opts.duration;
    let gap =
        |rng: &mut rand_chacha::ChaCha8Rng| Duration::from_millis(rng.random_range(3_000..12_000));
    let mut next_fault = started + gap(&mut rng);
    let mut undo: Vec<(Instant, serde_json::Value)> = Vec::new();
    let mut mode = TradingMode::Active;
    let mut resume_at: Option<Instant> = None;
    let mut next_progress = started + Duration::from_secs(30);
    eprintln!(
        "soak: {} s, seed {}, simulator at {} ({}x); progress every 30 s",
        opts.duration.as_secs(),
        opts.seed,
        admin.base(),
        opts.speed
    );
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if now >= next_fault {
            let (kind, fault, then) = draw(&mut rng);
            match admin.post_fault(&fault).await {
                Ok(()) => {
                    report.faults_injected += 1;
                    *report.faults.entry(kind).or_default() += 1;
                    tracing::warn!(fault = %fault, "soak: fault injected");
                    if let Some((after, u)) = then {
                        undo.push((now + after, u));
                    }
                }
                Err(e) => tracing::error!(error = %e, "soak: the simulator refused a fault"),
            }
            next_fault = now + gap(&mut rng);
        }
        let (due, later): (Vec<_>, Vec<_>) = undo.into_iter().partition(|(at, _)| *at <= now);
        undo = later;
        for (_, u) in due {
            if let Err(e) = admin.post_fault(&u).await {
                tracing::error!(error = %e, "soak: cannot undo a fault");
            }
        }
        let status = daemon
            .supervisor
            .send(GetSupervisorStatus)
            .await
            .map_err(|e| format!("the supervisor is not running: {e}"))?;
        if status.mode != mode {
            let cause = status
                .history
                .last()
                .map(|t| t.cause.clone())
                .unwrap_or_default();
            eprintln!(
                "soak: {:>5} s  {} -> {}  ({cause})",
                started.elapsed().as_secs(),
                mode.name(),
                status.mode.name()
            );
            if status.mode == TradingMode::Preserved {
                match exposure(&admin).await {
                    Ok((0, 0)) => {}
                    Ok((p, o)) => {
                        report.preserved_but_not_flat += 1;
                        eprintln!("soak: PRESERVED BUT NOT FLAT: {p} positions, {o} open orders");
                    }
                    Err(e) => tracing::warn!(error = %e, "soak: cannot read the simulator"),
                }
                resume_at = Some(now + Duration::from_millis(rng.random_range(2_000..6_000)));
            }
            mode = status.mode;
        }
        if mode == TradingMode::Preserved && resume_at.is_some_and(|t| now >= t) {
            resume_at = None;
            match daemon
                .supervisor
                .send(Operator(OperatorCommand::Resume))
                .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => eprintln!("soak: resume refused: {e}"),
                Err(e) => return Err(format!("the supervisor is not running: {e}")),
            }
        }
        if now >= next_progress {
            next_progress = now + Duration::from_secs(30);
            let orders = daemon.orders.send(GetOrderStats).await.ok();
            eprintln!(
                "soak: {:>5} s  mode {}  faults {}  crossings {}  preservations {}  fills {}",
                started.elapsed().as_secs(),
                mode.name(),
                report.faults_injected,
                status.crossings,
                status.times_to_flat_ms.len(),
                orders.map(|o| o.fills).unwrap_or(0)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The end: no more faults; a preservation in progress is let finish, so its time counts.
    let _ = admin
        .post_fault(&serde_json::json!({"kind": "clear"}))
        .await;
    let finish_by = Instant::now() + Duration::from_secs(120);
    while Instant::now() < finish_by {
        match daemon.supervisor.send(GetSupervisorStatus).await {
            Ok(s) if s.mode == TradingMode::Preserving => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            _ => break,
        }
    }
    let status = daemon
        .supervisor
        .send(GetSupervisorStatus)
        .await
        .map_err(|e| e.to_string())?;
    let health = daemon
        .health
        .send(GetHealth)
        .await
        .map_err(|e| e.to_string())?;
    report.seconds = started.elapsed().as_secs();
    report.threshold_crossings = status.crossings.max(health.crossings);
    report.preservations = status.times_to_flat_ms.len();
    let mut times = status.times_to_flat_ms.clone();
    times.sort_unstable();
    report.time_to_flat_ms = Percentiles {
        median: times.get(times.len() / 2).copied(),
        max: times.last().copied(),
    };
    report.flatten_attempts = status.flatten_attempts;
    settle_and_count(daemon, &admin, &mut report).await?;
    Ok(report)
}

/// Halts the daemon, lets orders in flight settle, stops it, and counts against the broker:
/// orders sent, duplicate client order ids, fills lost or booked twice, panics.
pub(super) async fn settle_and_count(
    daemon: crate::daemon::Daemon,
    admin: &AdminClient,
    report: &mut SoakReport,
) -> Result<(), String> {
    // Nothing new from here: then let orders in flight settle before reading the broker.
    daemon.risk.do_send(SetMode(TradingMode::Halted));
    let settle_by = Instant::now() + Duration::from_secs(30);
    while Instant::now() < settle_by {
        match daemon.orders.send(GetOrderStats).await {
            Ok(s) if s.unsettled > 0 => tokio::time::sleep(Duration::from_millis(100)).await,
            _ => break,
        }
    }
    for runner in &daemon.strategies {
        let stats = runner
            .send(crate::messages::strategy::GetStrategyStats)
            .await
            .map_err(|e| format!("a strategy is not running: {e}"))?;
        report.cold_bars += stats.cold_bars;
    }
    let sim_state = admin.get("/_sim/state").await?;
    let sim_stats = admin.get("/_sim/stats").await?;
    let state_dir = daemon.state_dir.clone();
    daemon.stop().await;

    report.orders_sent = sim_stats["order_posts"].as_u64().unwrap_or(0);
    report.duplicate_client_order_ids = sim_stats["client_order_id_reuses"].as_u64().unwrap_or(0);
    if let Some(b) = report.busy.as_mut() {
        b.rate_limited = sim_stats["rate_limited"].as_u64().unwrap_or(0);
    }
    let store = crate::journal::Store::open(&state_dir).map_err(|e| e.to_string())?;
    let fills = store.fills().map_err(|e| e.to_string())?;
    report.fills = fills.len();
    let mut journaled: HashMap<String, Decimal> = HashMap::new();
    for f in &fills {
        *journaled.entry(f.broker_order_id.clone()).or_default() += f.qty;
    }
    for o in sim_state["orders"].as_array().into_iter().flatten() {
        let filled = dec(&o["filled_qty"]);
        let id = o["id"].as_str().unwrap_or_default();
        let held = journaled.get(id).copied().unwrap_or_default();
        if filled > held {
            report.fills_lost += 1;
            eprintln!(
                "soak: FILL LOST: order {id} filled {filled} at the broker, {held} journaled"
            );
        } else if held > filled {
            report.fills_booked_twice += 1;
            eprintln!(
                "soak: FILL BOOKED TWICE: order {id} filled {filled} at the broker, {held} journaled"
            );
        }
    }
    report.flatten_overshoots = flatten_overshoots(&store, &fills)?;
    report.panics = PANICS.load(Ordering::SeqCst);
    Ok(())
}

/// Fills of the flatten procedure's closing orders that took a position away from flat or
/// past it (a close sent twice: the second sells what the first already sold), replaying the
/// journal's fills in time order. Each is printed.
fn flatten_overshoots(
    store: &crate::journal::Store,
    fills: &[crate::journal::FillRecord],
) -> Result<u64, String> {
    let closing: std::collections::HashSet<String> = store
        .intents(false)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|i| i.intent.correlation_id.as_str().starts_with("flatten-"))
        .map(|i| i.intent.client_order_id)
        .collect();
    let mut in_order: Vec<&crate::journal::FillRecord> = fills.iter().collect();
    in_order.sort_by_key(|f| f.at);
    let mut held: HashMap<&str, Decimal> = HashMap::new();
    let mut overshoots = 0;
    for f in in_order {
        let before = held.get(f.symbol.as_str()).copied().unwrap_or_default();
        let after = before + f.side.sign() * f.qty;
        if closing.contains(&f.client_order_id)
            && (after.abs() > before.abs()
                || (after > Decimal::ZERO && before < Decimal::ZERO)
                || (after < Decimal::ZERO && before > Decimal::ZERO))
        {
            overshoots += 1;
            eprintln!(
                "soak: FLATTEN OVERSHOT: {} {} {:?} {} took the position from {before} to {after}",
                f.client_order_id, f.symbol, f.side, f.qty
            );
        }
        held.insert(f.symbol.as_str(), after);
    }
    Ok(overshoots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alpaca::model::OrderSide;
    use crate::journal::{FillRecord, OrderIntent, Store};
    use chrono::TimeZone;
    use rust_decimal_macros::dec;

    /// The seed-7 soak's journal in small: an entry, two flatten closes of the same
    /// position (the second sold short), the buy back. The check finds exactly the overshoot.
    #[test]
    fn a_close_sent_twice_is_an_overshoot_and_a_close_once_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let t = |s: i64| chrono::Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap();
        let orders = [
            ("td-1-2b-AAPL", OrderSide::Buy, "AAPL-1", 0),
            ("td-1-2d-AAPL", OrderSide::Sell, "flatten-1", 10),
            ("td-1-30-AAPL", OrderSide::Sell, "flatten-2", 20),
            ("td-1-33-AAPL", OrderSide::Buy, "flatten-3", 30),
            ("td-1-40-MSFT", OrderSide::Buy, "MSFT-1", 40),
            ("td-1-41-MSFT", OrderSide::Sell, "flatten-4", 50),
        ];
        let mut fills = Vec::new();
        for (coid, side, correlation, at) in orders {
            let symbol = coid.rsplit('-').next().unwrap();
            store
                .record_intent(&OrderIntent {
                    client_order_id: coid.into(),
                    symbol: symbol.into(),
                    side,
                    qty: dec!(10),
                    request: serde_json::Value::Null,
                    correlation_id: correlation.into(),
                    created_at: t(at),
                })
                .unwrap();
            fills.push(FillRecord {
                execution_id: format!("x-{coid}"),
                client_order_id: coid.into(),
                broker_order_id: format!("b-{coid}"),
                symbol: symbol.into(),
                side,
                qty: dec!(10),
                price: dec!(100),
                at: t(at + 1),
            });
        }
        // Read back in any order: the check replays them by time.
        fills.reverse();
        assert_eq!(flatten_overshoots(&store, &fills), Ok(1));
    }
}
