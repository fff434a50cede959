//! The `traderd` command line as a library call: parses the arguments and runs one command.
//! `src/main.rs` is only [`main`]; a binary of your own with your strategies registered
//! (`strategy::register`) calls it too and is the whole of `traderd` plus them
//! (`examples/custom_strategy.rs`).

use crate::cli::{self, Cli, Command};
use crate::config::{self, CheckContext, Config};
use crate::sim::{self, SimSettings, clock::ClockMode, engine::AccountSettings};
use anyhow::{Context, anyhow};
use clap::Parser;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// Parses the command line and runs the command; the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run_daemon(args),
        Command::Sim(args) => run_sim(args),
        Command::Soak(args) => run_soak(args),
        Command::BenchLoad(args) => run_bench_load(args),
        Command::BenchBacktest(args) => crate::tools::bench_backtest::run(args)
            .map(|line| {
                println!("{line}");
                ExitCode::SUCCESS
            })
            .map_err(|e| anyhow!(e)),
        Command::Ctl(args) => run_ctl(args),
        Command::CheckConfig(args) => check_config(args),
        Command::Audit(cli::AuditCommand::Verify(args)) => audit_verify(args),
        Command::Data(cmd) => crate::tools::data::run(cmd, &env),
        Command::Backtest(args) => crate::tools::data::backtest(args, &env),
        Command::Report(args) => crate::tools::data::report(args),
        Command::Sweep(cli::SweepCommand::Merge(args)) => {
            crate::tools::backtest::sweep::merge(&args.files, &args.rank, &args.out)
                .map(|n| {
                    println!("{n} combinations merged into {}", args.out.display());
                    ExitCode::SUCCESS
                })
                .map_err(|e| anyhow!(e))
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("traderd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A year of sessions: what `traderd sim --history-sessions` serves at most (about 98,000
/// minute bars a symbol, ~14 MB of memory each).
const MAX_HISTORY_SESSIONS: i64 = 260;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn check_config(args: cli::CheckConfigArgs) -> anyhow::Result<ExitCode> {
    let path = match args.config {
        Some(p) => p,
        None => cli::default_config_path(env).map_err(|e| anyhow!(e))?,
    };
    let keys = config::load_credentials(env);
    let ctx = CheckContext {
        live_opt_in: args.live,
        have_keys: matches!(keys, Ok(Some(_))),
    };
    let mut problems = Vec::new();
    if let Err(e) = &keys {
        problems.push(format!("API keys: {e}"));
    }
    match Config::load(&path, &ctx) {
        Ok(c) if problems.is_empty() => {
            println!(
                "{}: ok (connection {}, trading {})",
                path.display(),
                c.mode_name(),
                c.trading.symbols.join(",")
            );
            Ok(ExitCode::SUCCESS)
        }
        Ok(_) => {
            eprintln!("{}: {} problem(s)", path.display(), problems.len());
            for p in problems {
                eprintln!("  - {p}");
            }
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            eprint!("{e}");
            for p in problems {
                eprintln!("  - {p}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

fn audit_verify(args: cli::StateArgs) -> anyhow::Result<ExitCode> {
    let configured = match &args.config {
        Some(path) => {
            let ctx = CheckContext {
                live_opt_in: true,
                have_keys: true,
            };
            Config::load(path, &ctx)
                .map_err(|e| anyhow!("{e}"))?
                .state
                .dir
        }
        None => String::new(),
    };
    let dir = config::resolve_state_dir(args.state_dir.as_deref(), &configured, env)
        .map_err(|e| anyhow!(e))?;
    let file = dir.join(crate::journal::store::FILE_NAME);
    if !file.is_file() {
        return Err(anyhow!(
            "no journal at {} (is the state directory right?)",
            file.display()
        ));
    }
    let store = crate::journal::Store::open(&dir)?;
    match store.verify_audit()? {
        Ok(n) => {
            println!("{}: audit chain intact ({n} records)", file.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(broken) => {
            eprintln!("{}: {broken}", file.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

fn run_daemon(args: cli::RunArgs) -> anyhow::Result<ExitCode> {
    let keys = config::load_credentials(env).map_err(|e| anyhow!("API keys: {e}"))?;
    let ctx = CheckContext {
        live_opt_in: args.live,
        have_keys: keys.is_some(),
    };
    // No file anywhere is fine for `run`: the built-in defaults trade on the simulator.
    let path = args.config.or_else(|| cli::default_config_path(env).ok());
    let (config, source) = match &path {
        Some(path) => (
            Config::load(path, &ctx).map_err(|e| anyhow!("{e}"))?,
            path.display().to_string(),
        ),
        None => {
            let c = Config::default();
            let problems = c.check(&ctx);
            if !problems.is_empty() {
                return Err(anyhow!("built-in defaults: {problems:?}"));
            }
            (c, "built-in defaults".to_string())
        }
    };
    let (telemetry, logging) = crate::telemetry::init(&config.log.level, &config.telemetry, env);
    let exporting = telemetry
        .exporting_to
        .clone()
        .unwrap_or_else(|| "off".into());
    let state_dir = config::resolve_state_dir(args.state_dir.as_deref(), &config.state.dir, env)
        .map_err(|e| anyhow!(e))?;
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("cannot create the state directory {}", state_dir.display()))?;
    tracing::info!(config = %source, logging, otlp = %exporting, mode = config.mode_name(), symbols = %config.trading.symbols.join(","), strategy = %config.strategy.name, "traderd starting");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let handle = runtime.handle().clone();
    let system = actix::System::with_tokio_rt(move || runtime);
    let metrics = telemetry.meter().map(|m| (m, telemetry.metrics_interval));
    let options = crate::daemon::RunOptions {
        config,
        state_dir,
        config_path: path,
        check: ctx,
        reload_on_sighup: true,
        metrics,
    };
    let result = system
        .block_on(crate::daemon::run(options, env, wait_for_stop_signal()))
        .map(|exit| ExitCode::from(exit.code()))
        .map_err(anyhow::Error::from);
    // After a start that failed late, actors started before the failure are dropped with the
    // system; a REST request one had in flight gives its connection back to the HTTP pool as
    // it is dropped, and the pool spawns a task for it: that needs the runtime's context,
    // without which it panicked ("there is no reactor running").
    let in_runtime = handle.enter();
    drop(system);
    drop(in_runtime);
    // Traces, metrics and log lines still buffered go out before the process ends (the log's
    // last, so that it has what the actors said as they were dropped).
    telemetry.shutdown();
    result
}

/// `traderd ctl`: exit 0 done, 1 the daemon refused (the message says why), 3 no daemon.
fn run_ctl(args: cli::CtlArgs) -> anyhow::Result<ExitCode> {
    let socket = match &args.socket {
        Some(p) => p.clone(),
        None => {
            let configured = match &args.config {
                Some(path) => {
                    let ctx = CheckContext {
                        live_opt_in: true,
                        have_keys: true,
                    };
                    Config::load(path, &ctx).map_err(|e| anyhow!("{e}"))?
                }
                None => Config::default(),
            };
            if configured.control.socket.is_empty() {
                let dir = config::resolve_state_dir(
                    args.state_dir.as_deref(),
                    &configured.state.dir,
                    env,
                );
                // Under systemd (RUNTIME_DIRECTORY) or a login session (XDG_RUNTIME_DIR) the
                // socket is there, whether or not a state directory can be named.
                let runtime_dir = ["RUNTIME_DIRECTORY", "XDG_RUNTIME_DIR"]
                    .iter()
                    .any(|k| env(k).is_some_and(|v| !v.is_empty()));
                match dir {
                    Ok(dir) => crate::control::default_socket(env, &dir),
                    Err(_) if runtime_dir && args.state_dir.is_none() => {
                        crate::control::default_socket(env, std::path::Path::new(""))
                    }
                    Err(e) => return Err(anyhow!(e)),
                }
            } else {
                configured.control.socket.into()
            }
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    if args.command == "top" {
        return match crate::control::top::run(&socket, Duration::from_millis(500)) {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(e) => {
                eprintln!("traderd ctl top: {e}");
                Ok(ExitCode::from(2))
            }
        };
    }
    if args.command == "events" {
        let json = args.json;
        let r = runtime.block_on(crate::control::follow(&socket, |e| {
            if e["kind"] == "following" {
                eprintln!(
                    "following mode changes on {} (Ctrl-C stops)",
                    socket.display()
                );
            } else if json {
                println!("{e}");
            } else {
                println!("{}", crate::control::render_event(&e));
            }
        }));
        return match r {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(e) => {
                eprintln!("traderd ctl: {e}");
                Ok(ExitCode::from(3))
            }
        };
    }
    let mut call_args = args.args.clone();
    if let Some(name) = &args.strategy {
        call_args = vec!["--strategy".into(), name.clone()];
    }
    let response = match runtime.block_on(crate::control::call(&socket, &args.command, &call_args))
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("traderd ctl: {e}");
            return Ok(ExitCode::from(3));
        }
    };
    if !response.ok {
        let (code, message) = response
            .error
            .map(|e| (e.code, e.message))
            .unwrap_or_default();
        if args.json {
            println!(
                "{}",
                serde_json::json!({ "error": { "code": code, "message": message } })
            );
        } else {
            eprintln!("traderd ctl {}: {message} ({code})", args.command);
        }
        return Ok(ExitCode::FAILURE);
    }
    let result = response.result.unwrap_or_default();
    if args.json {
        println!("{result}");
    } else {
        print!("{}", crate::control::render(&args.command, &result));
    }
    Ok(ExitCode::SUCCESS)
}

fn run_soak(args: cli::SoakArgs) -> anyhow::Result<ExitCode> {
    crate::telemetry::init_stderr(&args.log_level);
    if !(args.minutes > 0.0 && args.minutes <= 24.0 * 60.0) {
        return Err(anyhow!("--minutes must be above 0 and at most a day"));
    }
    let state_dir = args.state_dir.unwrap_or_else(|| fresh_work_dir("soak"));
    let opts = crate::tools::soak::SoakOptions {
        profile: match args.profile {
            cli::SoakProfile::Faults => crate::tools::soak::Profile::Faults,
            cli::SoakProfile::Busy => crate::tools::soak::Profile::Busy,
        },
        duration: Duration::from_secs_f64(args.minutes * 60.0),
        seed: args.seed,
        speed: args.speed,
        state_dir,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let system = actix::System::with_tokio_rt(move || runtime);
    let report = system
        .block_on(crate::tools::soak::run(opts))
        .map_err(|e| anyhow!("soak: {e}"))?;
    eprintln!("{}", crate::tools::soak::summary(&report));
    println!("{}", serde_json::to_string(&report)?);
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn run_bench_load(args: cli::BenchLoadArgs) -> anyhow::Result<ExitCode> {
    use crate::alpaca::stream::Codec;
    let codecs = args
        .codec
        .iter()
        .map(|c| match c.as_str() {
            "json" => Ok(Codec::Json),
            "msgpack" => Ok(Codec::Msgpack),
            other => Err(anyhow!("--codec: {other:?} is neither json nor msgpack")),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if args.symbols.iter().any(|n| !(1..=10_000).contains(n)) {
        return Err(anyhow!("--symbols: each count must be between 1 and 10000"));
    }
    for (name, s) in [
        ("--ingest-seconds", args.ingest_seconds),
        ("--latency-seconds", args.latency_seconds),
    ] {
        if !(s.is_finite() && (1.0..=600.0).contains(&s)) {
            return Err(anyhow!("{name} must be between 1 and 600"));
        }
    }
    let work_dir = args
        .work_dir
        .unwrap_or_else(|| fresh_work_dir("bench-load"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut failed = false;
    for &symbols in &args.symbols {
        for &codec in &codecs {
            let opts = crate::tools::bench_load::RunOptions {
                symbols,
                codec,
                batch: args.batch.clamp(1, 5000),
                ingest_seconds: args.ingest_seconds,
                latency_seconds: args.latency_seconds,
                latency_rate: args.latency_rate,
                mark_every_ms: args.mark_every_ms,
                journal_sync: args.journal_sync.clone(),
                decode_seconds: args.decode_seconds.clamp(0.1, 60.0),
                work_dir: work_dir.clone(),
                starve: args.starve,
                peer_python: args.peer.as_ref().map(|_| args.peer_python.clone()),
            };
            match runtime.block_on(crate::tools::bench_load::run(opts)) {
                Ok(line) => println!("{line}"),
                Err(e) => {
                    eprintln!("bench-load: run with {symbols} symbols failed: {e}");
                    failed = true;
                }
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn run_sim(args: cli::SimArgs) -> anyhow::Result<ExitCode> {
    crate::telemetry::init_stderr("info");
    let initial_cash = crate::alpaca::num::parse_decimal(&args.cash_usd)
        .ok()
        .filter(|c| c.is_sign_positive() && !c.is_zero() && *c <= crate::config::MAX_MONEY)
        .ok_or_else(|| {
            anyhow!(
                "--cash-usd must be a positive amount of at most {}, got {:?}",
                crate::config::MAX_MONEY,
                args.cash_usd
            )
        })?;
    if !(args.speed.is_finite() && args.speed > 0.0) {
        return Err(anyhow!(
            "--speed must be a positive number, got {}",
            args.speed
        ));
    }
    let mut settings = SimSettings {
        seed: args.seed,
        speed: args.speed,
        clock: if args.clock == "wall" {
            ClockMode::Wall
        } else {
            ClockMode::Sim
        },
        credentials: args.key.zip(args.secret),
        rate_limit: args.rate_limit,
        rate_window_s: args.rate_window_s.max(1),
        account: AccountSettings {
            initial_cash,
            ..AccountSettings::default()
        },
        history_sessions: args.history_sessions.clamp(1, MAX_HISTORY_SESSIONS),
        ..SimSettings::default()
    };
    if !args.symbols.is_empty() {
        let probe = format!("[sim]\nsymbols = {:?}\n", args.symbols);
        if let Err(e) = Config::parse(&probe, "--symbols", &CheckContext::default()).map(|_| ()) {
            let bad: Vec<String> = e
                .problems
                .iter()
                .filter(|p| p.path == "sim.symbols")
                .map(|p| p.message.clone())
                .collect();
            if !bad.is_empty() {
                return Err(anyhow!("--symbols: {}", bad.join("; ")));
            }
        }
        settings.symbols = args.symbols;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let description = format!("seed {}, speed {}x, clock {}, {} symbols", settings.seed, settings.speed, args.clock, settings.symbols.len());
        let handle = sim::start(settings, args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
        let mut out = std::io::stdout();
        writeln!(out, "traderd sim listening on {} ({description})", handle.base_url())?;
        out.flush()?;
        tracing::info!(url = %handle.base_url(), "simulator ready; admin API at /_sim/ (docs/simulator.md); Ctrl-C stops it");
        wait_for_stop_signal().await;
        tracing::info!("stopping the simulator");
        handle.stop().await;
        Ok(ExitCode::SUCCESS)
    })
}

async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// A work directory of its own under the temp dir: the time and the process id, so two runs
/// started in the same second never share one.
fn fresh_work_dir(kind: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "traderd-{kind}-{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S"),
        std::process::id()
    ))
}
