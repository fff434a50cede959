//! The busy soak: a busy strategy under Alpaca's rate limit with no faults, and the
//! invariants checked throughout (positions agree, no mode change, no ERROR, flat memory).

use super::faults::settle_and_count;
use super::*;

/// A `traderd sim` child process, killed (and reaped) when dropped.
struct SimProcess {
    child: std::process::Child,
    url: String,
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts this binary's simulator in a process of its own, with a key pair for this run.
fn spawn_sim(config: &Config, key: &str, secret: &str) -> Result<SimProcess, String> {
    use std::io::BufRead;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut child = std::process::Command::new(exe)
        .args(["sim", "--listen", "127.0.0.1:0", "--seed"])
        .arg(config.sim.seed.to_string())
        .arg("--speed")
        .arg(config.sim.speed.to_string())
        .arg("--rate-limit")
        .arg(config.sim.rate_limit_per_minute.to_string())
        .arg("--symbols")
        .arg(config.sim.symbols.join(","))
        .env("TRADERD_SIM_KEY", key)
        .env("TRADERD_SIM_SECRET", secret)
        .env("RUST_LOG", "error")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the simulator: {e}"))?;
    let stdout = child.stdout.take().ok_or("the simulator has no stdout")?;
    let mut line = String::new();
    let read = std::io::BufReader::new(stdout).read_line(&mut line);
    let mut sim = SimProcess {
        child,
        url: String::new(),
    };
    read.map_err(|e| format!("cannot read the simulator's address: {e}"))?;
    sim.url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .ok_or_else(|| format!("the simulator did not say where it listens: {line:?}"))?
        .to_string();
    Ok(sim)
}

pub(super) async fn run_busy(opts: SoakOptions) -> Result<SoakReport, String> {
    let check = CheckContext {
        have_keys: true,
        ..CheckContext::default()
    };
    let mut config =
        Config::parse(&busy_config(), "busy soak settings", &check).map_err(|e| e.to_string())?;
    config.sim.seed = opts.seed;
    config.sim.speed = opts.speed;
    std::fs::create_dir_all(&opts.state_dir)
        .map_err(|e| format!("cannot create {}: {e}", opts.state_dir.display()))?;
    // The broker in a process of its own (as Alpaca is): this process's RSS is the daemon's,
    // not the simulated account's, which keeps every order as Alpaca does.
    let key = format!("SOAK{}", uuid::Uuid::new_v4().simple()).to_uppercase();
    let secret = uuid::Uuid::new_v4().simple().to_string();
    let sim = spawn_sim(&config, &key, &secret)?;
    config.connection.mode = crate::config::ConnectionMode::Paper;
    let url = sim.url.clone();
    let env = move |name: &str| match name {
        "APCA_API_KEY_ID" => Some(key.clone()),
        "APCA_API_SECRET_KEY" => Some(secret.clone()),
        "APCA_API_BASE_URL" | "APCA_API_DATA_URL" => Some(url.clone()),
        _ => None,
    };
    let daemon = crate::daemon::start(&config, &opts.state_dir, env)
        .await
        .map_err(|e| e.to_string())?;
    let admin = AdminClient::new(sim.url.clone());
    let mut report = SoakReport {
        profile: Profile::Busy,
        seed: opts.seed,
        ..SoakReport::default()
    };
    let mut busy = BusyFigures::default();
    let started = Instant::now();
    let deadline = started + opts.duration;
    // Warm-up: the first tenth of the run, at least 30 s and at most 3 minutes.
    let warmup = (opts.duration / 10).clamp(Duration::from_secs(30), Duration::from_secs(180));
    let mut warmed = false;
    let mut next_progress = started + Duration::from_secs(30);
    let mut streak = 0u32;
    eprintln!(
        "soak (busy): {} s, seed {}, {} symbols, simulator at {} ({}x, {} requests/min); progress every 30 s",
        opts.duration.as_secs(),
        opts.seed,
        config.trading.symbols.len(),
        admin.base(),
        opts.speed,
        config.sim.rate_limit_per_minute
    );
    while Instant::now() < deadline {
        let status = daemon
            .supervisor
            .send(GetSupervisorStatus)
            .await
            .map_err(|e| format!("the supervisor is not running: {e}"))?;
        for t in status.history.iter().skip(busy.mode_changes.len()) {
            let line = format!(
                "{} s: {} -> {} ({})",
                started.elapsed().as_secs(),
                t.from.name(),
                t.to.name(),
                t.cause
            );
            eprintln!("soak: MODE CHANGED: {line}");
            busy.mode_changes.push(line);
        }
        // Positions: compared only when both sides are settled (the daemon has nothing open
        // or in flight, and no fill arrived while we read); a difference counts when it
        // persists over three such samples.
        let before = daemon
            .orders
            .send(GetOrderStats)
            .await
            .map_err(|e| e.to_string())?;
        let broker = positions_of(&serde_json::json!({
            "positions": admin.get("/_sim/positions").await?
        }));
        let after = daemon
            .orders
            .send(GetOrderStats)
            .await
            .map_err(|e| e.to_string())?;
        if before.unsettled == 0 && after.unsettled == 0 && before.fills == after.fills {
            busy.positions_compared += 1;
            if after.positions != broker {
                streak += 1;
                if streak == 3 {
                    busy.positions_disagreed += 1;
                    eprintln!(
                        "soak: POSITIONS DISAGREE: daemon {:?}, broker {broker:?}",
                        after.positions
                    );
                }
            } else {
                streak = 0;
            }
        }
        busy.reconciliations = after.reconciliations;
        busy.mismatches = after.position_mismatches;
        let rss = rss_mb();
        busy.rss_peak_mb = busy.rss_peak_mb.max(rss);
        busy.sim_rss_mb =
            crate::tools::bench_load::proc_status_mb(&sim.child.id().to_string(), "VmRSS")
                .unwrap_or(0.0);
        if !warmed && started.elapsed() >= warmup {
            warmed = true;
            busy.rss_after_warmup_mb = rss;
            busy.anon_after_warmup_mb = rss_anon_mb();
        }
        if Instant::now() >= next_progress {
            next_progress = Instant::now() + Duration::from_secs(30);
            let (errors, _) = crate::telemetry::errors_logged();
            eprintln!(
                "soak: {:>5} s  mode {}  fills {}  reconciliations {}  mismatches {}  errors {}  rss {:.1} MB (anon {:.1})  kept per order {}",
                started.elapsed().as_secs(),
                status.mode.name(),
                after.fills,
                after.reconciliations,
                after.position_mismatches,
                errors,
                rss,
                rss_anon_mb(),
                after.tracked_entries
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    busy.rss_end_mb = rss_mb();
    busy.anon_end_mb = rss_anon_mb();
    let (errors, first) = crate::telemetry::errors_logged();
    busy.error_lines = errors;
    busy.first_errors = first;
    report.seconds = started.elapsed().as_secs();
    report.busy = Some(busy);
    settle_and_count(daemon, &admin, &mut report).await?;
    drop(sim);
    Ok(report)
}
