#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The whole daemon against the simulator: it trades on its own and its books agree with the
//! broker's; a risk refusal never reaches the broker; `kill -9` in the middle of a submit, then a
//! restart, loses nothing and sends nothing twice.

mod common;

use common::{SECRET, set_fault, sim_state, sim_stats, wait_for};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command};
use std::str::FromStr;
use std::time::Duration;
use traderd::actors::account::GetAccount;
use traderd::actors::order_manager::GetOrderStats;
use traderd::actors::risk_manager::{GetRiskStats, SetMode};
use traderd::config::{CheckContext, Config};
use traderd::journal::{LoadFills, LoadIntents, Store, VerifyAudit};
use traderd::messages::RefreshAccount;
use traderd::risk::TradingMode;

const WAIT: Duration = Duration::from_secs(60);

/// A strategy that trades often: momentum entering on any RSI, at 120x.
const BUSY: &str = r#"
[sim]
speed = 120.0
[orders]
reconcile_interval_s = 2
[account]
refresh_interval_ms = 300
[risk]
max_orders_per_minute = 1000
"#;

fn config(extra: &str) -> Config {
    Config::parse(
        &format!("{BUSY}{}\n{extra}", traderd::tools::soak::BUSY_STRATEGY),
        "test",
        &CheckContext::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn dec(v: &serde_json::Value) -> Decimal {
    match v {
        serde_json::Value::String(s) => Decimal::from_str(s).unwrap(),
        other => Decimal::from_str(&other.to_string()).unwrap(),
    }
}

/// The simulator's positions, signed, without zeros.
fn sim_positions(state: &serde_json::Value) -> BTreeMap<String, Decimal> {
    state["positions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["symbol"].as_str().unwrap().to_string(), dec(&p["qty"])))
        .filter(|(_, q)| !q.is_zero())
        .collect()
}

fn fill_positions(fills: &[traderd::journal::FillRecord]) -> BTreeMap<String, Decimal> {
    let mut out: BTreeMap<String, Decimal> = BTreeMap::new();
    for f in fills {
        *out.entry(f.symbol.clone()).or_default() += f.side.sign() * f.qty;
    }
    out.retain(|_, q| !q.is_zero());
    out
}

/// Every intent the daemon's journal has (learned legs included).
async fn intents_of(daemon: &traderd::daemon::Daemon) -> Vec<traderd::journal::StoredIntent> {
    daemon
        .journal
        .addr
        .send(LoadIntents(false))
        .await
        .unwrap()
        .unwrap()
}

#[actix_rt::test]
async fn the_daemon_trades_on_its_own_and_its_books_agree_with_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = traderd::daemon::start(&config(""), dir.path(), |_| None)
        .await
        .unwrap();
    let sim = daemon.sim.as_ref().unwrap();
    // Trading on its own: entries and exits, with bracket legs.
    let stats = wait_for("six fills", WAIT, || async {
        let s = daemon.orders.send(GetOrderStats).await.unwrap();
        (s.fills >= 6).then_some(s)
    })
    .await;
    assert!(stats.reconciliations >= 1 && stats.run == 1, "{stats:?}");
    // Stop new orders, then the four views must meet: the order manager's positions, the
    // journal's fills, the account manager's read of the broker, and the simulator itself.
    daemon
        .risk
        .send(SetMode(TradingMode::Halted))
        .await
        .unwrap();
    let (positions, fills) = wait_for("the books to agree", WAIT, || async {
        let om = daemon.orders.send(GetOrderStats).await.unwrap();
        if om.unsettled > 0 {
            return None;
        }
        let fills = daemon.journal.addr.send(LoadFills).await.unwrap().unwrap();
        daemon.account.send(RefreshAccount).await.unwrap();
        let account = daemon.account.send(GetAccount).await.unwrap()?;
        let at_sim = sim_positions(&sim_state(sim).await);
        let journaled = fill_positions(&fills);
        let account_positions: BTreeMap<String, Decimal> = account
            .positions
            .into_iter()
            .filter(|(_, q)| !q.is_zero())
            .collect();
        (om.positions == journaled && journaled == at_sim && at_sim == account_positions)
            .then_some((at_sim, fills))
    })
    .await;
    eprintln!("positions {positions:?} after {} fills", fills.len());
    // Every order was sent once: one POST per journaled intent of ours (legs are the broker's).
    let intents = intents_of(&daemon).await;
    let ours = intents
        .iter()
        .filter(|i| i.intent.request.get("leg_of").is_none())
        .count();
    let legs = intents.len() - ours;
    let sim = sim_stats(daemon.sim.as_ref().unwrap()).await;
    assert_eq!(sim["client_order_id_reuses"], 0, "{sim}");
    assert_eq!(sim["order_posts"].as_u64().unwrap() as usize, ours, "{sim}");
    assert!(legs > 0, "bracket legs are learned and journaled");
    // Each fill belongs to a journaled order, and the audit chain is whole.
    let known: std::collections::HashSet<&str> = intents
        .iter()
        .map(|i| i.intent.client_order_id.as_str())
        .collect();
    assert!(
        fills
            .iter()
            .all(|f| known.contains(f.client_order_id.as_str()))
    );
    let audited = daemon
        .journal
        .addr
        .send(VerifyAudit)
        .await
        .unwrap()
        .unwrap();
    assert!(audited.unwrap() > fills.len() as u64);
    // What the order side keeps per order is forgotten once the order is final and a later
    // reconciliation has read the journal: bounded by the open orders, not by all orders sent.
    let kept = wait_for("final orders forgotten", WAIT, || async {
        let om = daemon.orders.send(GetOrderStats).await.unwrap();
        (om.tracked_entries <= 6 * om.open_orders + 6).then_some(om)
    })
    .await;
    eprintln!(
        "{} entries kept for {} open orders after {} orders",
        kept.tracked_entries,
        kept.open_orders,
        intents.len()
    );
    daemon.stop().await;
}

#[actix_rt::test]
async fn a_risk_refusal_never_reaches_the_simulator() {
    let dir = tempfile::tempdir().unwrap();
    // Every entry is worth 2000 USD; the limit per symbol is 100.
    let cfg = config("");
    let mut cfg = cfg;
    cfg.risk.max_notional_per_symbol_usd = Decimal::from(100);
    let daemon = traderd::daemon::start(&cfg, dir.path(), |_| None)
        .await
        .unwrap();
    let refused = wait_for("three refusals", WAIT, || async {
        let r = daemon.risk.send(GetRiskStats).await.unwrap();
        let n = r.refused.get("symbol_notional").copied().unwrap_or(0);
        (n >= 3).then_some(n)
    })
    .await;
    let stats = sim_stats(daemon.sim.as_ref().unwrap()).await;
    assert_eq!(stats["order_posts"], 0, "{refused} refusals, yet {stats}");
    let intents = intents_of(&daemon).await;
    assert!(
        intents.is_empty(),
        "a refused intent is never journaled as an order"
    );
    let r = daemon.risk.send(GetRiskStats).await.unwrap();
    assert_eq!(r.approved, 0);
    daemon.stop().await;
}

#[actix_rt::test]
async fn trailing_stops_guard_entries_and_flatten_leaves_the_broker_flat() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config("");
    cfg.strategy.protection = traderd::config::ProtectionChoice::TrailingStop;
    let daemon = traderd::daemon::start(&cfg, dir.path(), |_| None)
        .await
        .unwrap();
    let sim = daemon.sim.as_ref().unwrap();
    let open_at_sim = |state: &serde_json::Value| -> Vec<serde_json::Value> {
        state["orders"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| {
                ["new", "accepted", "held", "partially_filled", "pending_new"]
                    .contains(&o["status"].as_str().unwrap_or(""))
            })
            .cloned()
            .collect()
    };
    // An entry fills, then its trailing stop rests at the broker.
    let stop = wait_for("a resting trailing stop", WAIT, || async {
        let state = sim_state(sim).await;
        open_at_sim(&state)
            .into_iter()
            .find(|o| o["type"] == "trailing_stop")
    })
    .await;
    assert!(
        stop["client_order_id"]
            .as_str()
            .unwrap()
            .starts_with("td-1-")
    );
    // Reduce-only keeps the strategy from entering again; the flatten's closes still pass.
    daemon
        .risk
        .send(SetMode(TradingMode::ReduceOnly))
        .await
        .unwrap();
    let report = daemon
        .orders
        .send(traderd::actors::order_manager::Flatten)
        .await
        .unwrap()
        .unwrap();
    assert!(report.closing.values().all(|r| r.is_ok()), "{report:?}");
    wait_for("the broker to be flat", WAIT, || async {
        let state = sim_state(sim).await;
        let om = daemon.orders.send(GetOrderStats).await.unwrap();
        (sim_positions(&state).is_empty()
            && open_at_sim(&state).is_empty()
            && om.positions.is_empty())
        .then_some(())
    })
    .await;
    let refused = daemon.risk.send(GetRiskStats).await.unwrap();
    eprintln!("flatten: {report:?}; risk: {refused:?}");
    daemon.stop().await;
}

// ----- crash and restart, with the real binary ---------------------------------------------

fn spawn_daemon(sim_url: &str, state: &Path, config: &Path, log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    common::paper_daemon(sim_url, config, state)
        .stderr(log)
        .spawn()
        .unwrap()
}

fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

async fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let child = std::sync::Mutex::new(child);
    wait_for("the daemon to exit", Duration::from_secs(20), || {
        let r = child.lock().unwrap().try_wait().unwrap();
        async move { r }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_middle_of_a_submit_then_restart_loses_nothing_and_sends_nothing_twice() {
    let sim = common::paper_sim().await;
    let url = sim.base_url();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let cfg = dir.path().join("traderd.toml");
    // Market orders only (no resting legs), so the broker's books are still when we compare.
    let text = format!(
        "[connection]\nmode = \"paper\"\n{BUSY}{}",
        traderd::tools::soak::BUSY_STRATEGY
    )
    .replace(
        "sizing_usd = \"2000\"",
        "sizing_usd = \"2000\"\nprotection = \"none\"",
    )
    .replace("[orders]\n", "[orders]\nack_timeout_ms = 1000\n");
    std::fs::write(&cfg, text).unwrap();
    // The first order is taken by the broker, whose answer is then held back: the daemon is
    // killed while it waits.
    // Its trade_updates are lost meanwhile, so only reconciliation can tell what became of it.
    set_fault(
        &sim,
        serde_json::json!({"kind": "delay_after_accept", "ms": 30000, "count": 1}),
    )
    .await;
    set_fault(
        &sim,
        serde_json::json!({"kind": "mute_trade_updates", "seconds": 30.0}),
    )
    .await;
    let mut first = spawn_daemon(&url, &state, &cfg, &dir.path().join("run1.log"));
    wait_for("the first order POST", WAIT, || async {
        (sim_stats(&sim).await["order_posts"].as_u64().unwrap() >= 1).then_some(())
    })
    .await;
    first.kill().unwrap(); // SIGKILL
    wait_exit(&mut first).await;
    set_fault(&sim, serde_json::json!({"kind": "clear"})).await;

    // The journal has the intent, written before the request, with no answer recorded, and
    // the broker has the order. (Other intents may be journaled and not sent yet: those are
    // closed as never sent at the restart.)
    let at_broker: Vec<String> = sim_state(&sim).await["orders"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["client_order_id"].as_str().map(String::from))
        .collect();
    // Written ahead: in the store, or still only in the intent log (synced before the
    // request; the next start copies it into the store).
    let limbo = {
        let store = Store::open(&state).unwrap();
        let (_, ahead) = traderd::journal::intent_log::IntentLog::open(
            &state,
            traderd::journal::intent_log::CAPACITY,
            false,
        )
        .unwrap();
        let stored = store.intents(false).unwrap();
        let answered = |c: &String| {
            stored
                .iter()
                .any(|i| &i.intent.client_order_id == c && i.broker_order_id.is_some())
        };
        let mut open: Vec<String> = stored
            .iter()
            .map(|i| i.intent.client_order_id.clone())
            .collect();
        open.extend(ahead.into_iter().map(|i| i.client_order_id));
        open.retain(|c| at_broker.contains(c) && !answered(c));
        assert!(
            !open.is_empty(),
            "the killed submit left a journaled intent the broker took: {:?}",
            store.intents(false).unwrap()
        );
        open[0].clone()
    };

    // Restart: reconciliation finds the order and books its fill.
    let mut second = spawn_daemon(&url, &state, &cfg, &dir.path().join("run2.log"));
    wait_for("the limbo order to be found and filled", WAIT, || async {
        let store = Store::open(&state).ok()?;
        let found = store
            .intents(false)
            .ok()?
            .into_iter()
            .find(|i| i.intent.client_order_id == limbo)?;
        let filled = store
            .fills()
            .ok()?
            .iter()
            .any(|f| f.client_order_id == limbo);
        (found.broker_order_id.is_some() && filled).then_some(())
    })
    .await;
    // Let it trade on a little, then stop it cleanly.
    let before = sim_stats(&sim).await["order_posts"].as_u64().unwrap();
    wait_for("more orders after the restart", WAIT, || async {
        (sim_stats(&sim).await["order_posts"].as_u64().unwrap() >= before + 2).then_some(())
    })
    .await;
    terminate(&mut second);
    assert!(wait_exit(&mut second).await.success());
    let log2 = std::fs::read_to_string(dir.path().join("run2.log")).unwrap();
    assert!(
        log2.contains("journaled order found at the broker"),
        "reconciliation reports the order:\n{log2}"
    );
    assert!(!log2.contains(SECRET), "the secret never reaches a log");
    // A run without faults says nothing alarming: no ERROR, the stream not called down at
    // start or at shutdown, its own bracket legs not called foreign.
    for alarm in [" ERROR ", "trade_updates stream down", "did not send"] {
        let hits: Vec<&str> = log2.lines().filter(|l| l.contains(alarm)).collect();
        assert!(hits.is_empty(), "{alarm:?} in a fault-free run: {hits:#?}");
    }
    assert!(
        !log2.contains("a new journal") && log2.contains("journal recorded no mode change"),
        "a restart on the same journal is not a new journal"
    );
    let log1 = std::fs::read_to_string(dir.path().join("run1.log")).unwrap();
    assert!(log1.contains("a new journal"), "the first run's is");
    assert!(
        !log2.contains("position differs"),
        "no mismatch once the fills are booked:\n{log2}"
    );
    for line in log2
        .lines()
        .filter(|l| l.contains("reconcil") || l.contains(limbo.as_str()))
    {
        eprintln!("run 2: {line}");
    }

    // Nothing sent twice, nothing lost: every order the broker filled is in the journal with
    // the same filled quantity, and positions agree.
    let stats = sim_stats(&sim).await;
    assert_eq!(stats["client_order_id_reuses"], 0, "{stats}");
    let store = Store::open(&state).unwrap();
    let fills = store.fills().unwrap();
    let mut journaled: BTreeMap<String, Decimal> = BTreeMap::new();
    for f in &fills {
        *journaled.entry(f.broker_order_id.clone()).or_default() += f.qty;
    }
    let state_now = sim_state(&sim).await;
    let mut broker_filled = 0;
    for o in state_now["orders"].as_array().unwrap() {
        let filled = dec(&o["filled_qty"]);
        if filled.is_zero() {
            continue;
        }
        broker_filled += 1;
        let id = o["id"].as_str().unwrap();
        assert_eq!(
            journaled.get(id).copied().unwrap_or_default(),
            filled,
            "order {id} ({}) filled {filled} at the broker",
            o["client_order_id"]
        );
    }
    assert!(broker_filled >= 3);
    assert_eq!(fill_positions(&fills), sim_positions(&state_now));
    // Every intent of ours was either sent once, or closed as never sent (journaled, then
    // killed before its request left: reconciliation closes it and never resends it).
    let intents = store.intents(false).unwrap();
    let (sent, never_sent): (Vec<_>, Vec<_>) = intents
        .iter()
        .filter(|i| i.intent.request.get("leg_of").is_none())
        .partition(|i| i.broker_order_id.is_some());
    let at_broker: std::collections::HashSet<&str> = state_now["orders"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["client_order_id"].as_str())
        .collect();
    for i in &never_sent {
        assert_eq!(
            i.status,
            Some(traderd::alpaca::model::OrderStatus::Rejected),
            "{i:?}"
        );
        assert!(
            !at_broker.contains(i.intent.client_order_id.as_str()),
            "{i:?}"
        );
    }
    let ours = sent.len() as u64;
    assert_eq!(
        stats["order_posts"].as_u64().unwrap(),
        ours,
        "one POST per intent; run 2 ended:\n{}",
        log2.lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Two runs: two run ids, so no client order id could repeat across the restart.
    assert!(
        store
            .intents(false)
            .unwrap()
            .iter()
            .any(|i| i.intent.client_order_id.starts_with("td-2-"))
    );
    let audit = Command::new(env!("CARGO_BIN_EXE_traderd"))
        .args(["audit", "verify", "--state-dir"])
        .arg(&state)
        .env_remove("STATE_DIRECTORY")
        .output()
        .unwrap();
    assert!(
        audit.status.success(),
        "{}",
        String::from_utf8_lossy(&audit.stderr)
    );
    sim.stop().await;
}

#[actix_rt::test]
async fn run_starts_trades_and_stops_the_whole_daemon_as_a_library_call() {
    let dir = tempfile::tempdir().unwrap();
    let daemon =
        common::InProcess::start(config(""), CheckContext::default(), dir.path(), |_| None);
    // Up, and trading: the control socket answers with fills.
    let socket = daemon.socket.clone();
    wait_for("fills over the control socket", WAIT, || async {
        let r = traderd::control::call(&socket, "status", &[]).await.ok()?;
        let fills = r.result?["fills"].as_u64()?;
        (fills >= 2).then_some(())
    })
    .await;
    // Its background threads (the journal's among them) never preempt the order path's.
    let policies = thread_policies();
    assert!(policies.contains(&libc::SCHED_BATCH), "{policies:?}");
    assert!(policies.contains(&libc::SCHED_OTHER), "{policies:?}");
    // The caller's future ends the run: the shutdown sequence runs, the exit is clean.
    daemon.stop().await;
    assert!(
        traderd::control::call(&socket, "status", &[])
            .await
            .is_err(),
        "the socket is gone with the daemon"
    );
}

/// The scheduling policy of each of this process's threads (`/proc/self/task/*/stat`, field
/// 41).
fn thread_policies() -> Vec<i32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let stat = std::fs::read_to_string(task.unwrap().path().join("stat")).unwrap_or_default();
        // The fields after the command's closing parenthesis start at the third.
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        if let Some(policy) = rest.split(' ').nth(41 - 3) {
            out.push(policy.parse().unwrap());
        }
    }
    out
}

/// A start that fails late (the control socket cannot be made, after the journal is open)
/// says why and exits 1 without a panic: nothing is left started that would first run as the
/// runtime is dropped.
#[test]
fn a_start_that_fails_late_gives_the_reason_and_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("a-file");
    std::fs::write(&not_a_dir, "").unwrap();
    let config = dir.path().join("traderd.toml");
    std::fs::write(
        &config,
        format!(
            "[control]\nsocket = \"{}\"\n",
            not_a_dir.join("traderd.sock").display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_traderd"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot create the control socket"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A strategy proposes in its own turn, and what it sees of the order side is always one
/// published view plus its own proposals: a second signal queued behind the first finds the
/// first pending (the view showing that order comes a message later), and once the entry has
/// filled the next signal is its exit, never a second entry.
#[actix_rt::test]
async fn a_signal_queued_behind_a_strategy_s_order_finds_it_pending_and_the_next_is_its_exit() {
    use traderd::actors::strategy_runner::GetStrategyStats;
    use traderd::alpaca::stream::{Code, Conditions, StreamTrade};
    use traderd::messages::TradeTicks;
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::parse(
        "[sim]\nspeed = 120.0\n[account]\nrefresh_interval_ms = 300\n\
         [trading]\nsymbols = [\"AAPL\"]\n\
         [strategy]\nname = \"probe\"\nsizing = \"fixed_notional\"\nsizing_usd = \"500\"\n\
         protection = \"none\"\n",
        "test",
        &CheckContext::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let daemon = traderd::daemon::start(&cfg, dir.path(), |_| None)
        .await
        .unwrap();
    let price = wait_for("AAPL's last trade", WAIT, || async {
        let latest = daemon.rest.latest_trades(&["AAPL"]).await.ok()?;
        Some(latest.trades.get("AAPL")?.p)
    })
    .await;
    let mut id = 0;
    let mut mark = || {
        id += 1;
        let mut conditions = Conditions::default();
        conditions.push(traderd::domain::MARK);
        StreamTrade {
            symbol: "AAPL".into(),
            id,
            exchange: Code::new("V"),
            price,
            size: Decimal::ONE,
            timestamp: chrono::Utc::now(),
            conditions,
            tape: Code::new("C"),
        }
    };
    // Two marks queued on the strategy's thread at once (both are in its mailbox before it
    // runs, so the view its first order publishes comes after the second), then handled.
    let mut queued = 0;
    let mut twice = |trades: [StreamTrade; 2]| {
        let runner = daemon.strategy.clone();
        daemon.trading_arbiter.spawn(async move {
            for t in trades {
                runner.do_send(TradeTicks {
                    trades: vec![t],
                    arrived: std::time::Instant::now(),
                });
            }
        });
        queued += 2;
        let runner = daemon.strategy.clone();
        wait_for("the marks handled", WAIT, move || {
            let runner = runner.clone();
            async move {
                let s = runner.send(GetStrategyStats).await.unwrap();
                (s.trades >= queued).then_some(s)
            }
        })
    };
    let position = || async {
        let s = daemon.orders.send(GetOrderStats).await.unwrap();
        (s.unsettled == 0).then(|| s.positions.get("AAPL").copied().unwrap_or_default())
    };
    wait_for("the order side ready", WAIT, || async {
        let s = daemon.orders.send(GetOrderStats).await.unwrap();
        s.ready.then_some(())
    })
    .await;
    // The entry (the account may not be read yet: then again).
    let deadline = std::time::Instant::now() + WAIT;
    let stats = loop {
        let s = twice([mark(), mark()]).await;
        if s.sent > 0 || std::time::Instant::now() > deadline {
            break s;
        }
    };
    assert_eq!(
        (stats.proposed, stats.sent),
        (1, 1),
        "the second mark waits: {stats:?}"
    );
    let held = wait_for("the entry filled", WAIT, || async {
        position().await.filter(|q| !q.is_zero())
    })
    .await;
    // The exit, and a second mark behind it.
    twice([mark(), mark()]).await;
    wait_for("the exit filled", WAIT, || async {
        position().await.filter(|q| q.is_zero())
    })
    .await;
    let stats = daemon.strategy.send(GetStrategyStats).await.unwrap();
    assert_eq!((stats.proposed, stats.sent), (2, 2), "{stats:?}");
    let intents = intents_of(&daemon).await;
    let sides: Vec<(&str, Decimal)> = intents
        .iter()
        .map(|i| (i.intent.side.as_str(), i.intent.qty))
        .collect();
    assert_eq!(sides, vec![("buy", held), ("sell", held)]);
}
