#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A strategy of one's own, through the library API: the example's `breakout`
//! (`examples/custom_strategy.rs`, compiled here as it is) registered by name, checked by the
//! config with its typed parameters, backtested, and trading on the simulator through
//! `daemon::run`.

mod common;

#[path = "../examples/custom_strategy.rs"]
#[allow(dead_code)] // its `main` is the example binary's
mod custom_strategy;

use common::wait_for;
use rust_decimal::Decimal;
use std::sync::Once;
use std::time::Duration;
use traderd::config::{CheckContext, Config};

const WAIT: Duration = Duration::from_secs(60);

fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        traderd::strategy::register("breakout", custom_strategy::Breakout::build).unwrap();
    });
}

fn config(params: &str) -> Result<Config, String> {
    Config::parse(
        &format!(
            "[sim]\nspeed = 120.0\n[account]\nrefresh_interval_ms = 300\n\
             [risk]\nmax_orders_per_minute = 1000\n\
             [strategy]\nname = \"breakout\"\nsizing_usd = \"2000\"\nprotection = \"none\"\n\
             [strategy.params]\n{params}\n"
        ),
        "test",
        &CheckContext::default(),
    )
    .map_err(|e| e.to_string())
}

#[test]
fn the_config_names_a_registered_strategy_and_its_typed_parameters() {
    // Before registration the name is unknown, and the error lists what there is.
    let unknown = Config::parse(
        "[strategy]\nname = \"mine\"\n",
        "test",
        &CheckContext::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        unknown.contains("unknown strategy \"mine\"") && unknown.contains("momentum"),
        "{unknown}"
    );
    register();
    let c = config("entry_lookback = 3\nexit_lookback = 2").unwrap();
    assert_eq!(c.strategy.build().unwrap().name(), "breakout");
    // Its parameters are its own: a typo and a bad value are named.
    let typo = config("entry_lookbak = 3").unwrap_err();
    assert!(
        typo.contains("entry_lookbak") && typo.contains("expected `entry_lookback`"),
        "{typo}"
    );
    let small = config("entry_lookback = 1").unwrap_err();
    assert!(small.contains("at least 2"), "{small}");
    // Pairs checks its legs and leaves protection to the spread.
    let pairs = Config::parse(
        "[strategy]\nname = \"pairs\"\n[strategy.pairs]\na = \"AAPL\"\nb = \"TSLA\"\n",
        "test",
        &CheckContext::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        pairs.contains("\"TSLA\" is not in trading.symbols")
            && pairs.contains("protection = \"none\""),
        "{pairs}"
    );
    // The built-ins' names stay theirs.
    assert!(traderd::strategy::register("momentum", custom_strategy::Breakout::build).is_err());
}

#[test]
fn a_registered_strategy_backtests_through_the_same_code() {
    register();
    let dir = tempfile::tempdir().unwrap();
    let mut store = traderd::history::HistoryStore::open(dir.path()).unwrap();
    // Five sessions of the simulator's own minute bars for the default symbols.
    let anchor = traderd::domain::calendar::Session::on(
        chrono::NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
    );
    let timeline = traderd::domain::calendar::Timeline::new(anchor);
    let config = config("entry_lookback = 10\nexit_lookback = 5").unwrap();
    for symbol in &config.trading.symbols {
        let bars = traderd::sim::market::minute_history(7, symbol, &timeline, 5);
        store.write(symbol, "1Min", &bars, None).unwrap();
    }
    let opts = traderd::tools::backtest::BacktestOptions {
        start: traderd::domain::calendar::et_midnight(timeline.session(-5).date),
        end: timeline.session(-1).close,
        out: dir.path().join("out"),
        cash: Decimal::from(100_000),
        slippage_bps: Decimal::ZERO,
        fee_bps: Decimal::ZERO,
        warmup_bars: 0,
    };
    let report = traderd::tools::backtest::run(&config, &store, &opts).unwrap();
    assert_eq!(report.strategy, "breakout");
    assert!(report.summary.trades > 5, "{:?}", report.summary);
    let trades = std::fs::read_to_string(dir.path().join("out/trades.csv")).unwrap();
    assert!(trades.lines().count() > 5);
}

#[actix_rt::test]
async fn a_registered_strategy_trades_on_the_simulator_through_daemon_run() {
    register();
    let dir = tempfile::tempdir().unwrap();
    let daemon = common::InProcess::start(
        config("entry_lookback = 3\nexit_lookback = 2").unwrap(),
        CheckContext::default(),
        dir.path(),
        |_| None,
    );
    let socket = daemon.socket.clone();
    let status = wait_for("the breakout's fills", WAIT, || async {
        let r = traderd::control::call(&socket, "status", &[]).await.ok()?;
        let result = r.result?;
        (result["fills"].as_u64()? >= 2).then_some(result)
    })
    .await;
    daemon.stop().await;
    // The orders are the breakout's: its signals name it in the journal's intents.
    let store = common::journal_of(dir.path());
    let intents = store.intents(false).unwrap();
    assert!(!intents.is_empty(), "{status}");
    assert!(
        intents.iter().all(|i| i
            .intent
            .correlation_id
            .as_str()
            .starts_with(&i.intent.symbol)),
        "every order answers a bar of its symbol"
    );
}

#[actix_rt::test]
async fn pairs_trades_both_legs_together_on_the_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::parse(
        "[sim]\nspeed = 120.0\n[account]\nrefresh_interval_ms = 300\n\
         [risk]\nmax_orders_per_minute = 1000\n\
         [trading]\nsymbols = [\"AAPL\", \"MSFT\", \"SPY\"]\n\
         [strategy]\nname = \"pairs\"\nsizing_usd = \"3000\"\nprotection = \"none\"\n\
         [strategy.pairs]\na = \"MSFT\"\nb = \"SPY\"\nlookback = 20\nentry_z = 1.5\nexit_z = 0.5\n",
        "test",
        &CheckContext::default(),
    )
    .unwrap();
    let daemon = common::InProcess::start(config, CheckContext::default(), dir.path(), |_| None);
    let socket = daemon.socket.clone();
    wait_for("both legs of a pair filled", WAIT, || async {
        let r = traderd::control::call(&socket, "status", &[]).await.ok()?;
        (r.result?["fills"].as_u64()? >= 4).then_some(())
    })
    .await;
    daemon.stop().await;
    let store = common::journal_of(dir.path());
    // Every order answers a bar of its leg, and the legs go in pairs: for each bar time,
    // MSFT and SPY on opposite sides (an entry: short one, buy the other; an exit: close
    // both), never AAPL.
    let mut by_bar: std::collections::BTreeMap<String, Vec<(String, String)>> = Default::default();
    for i in store.intents(false).unwrap() {
        let corr = i.intent.correlation_id.as_str().to_string();
        let Some((symbol, start)) = corr.rsplit_once('-') else {
            panic!("correlation id {corr}");
        };
        assert_eq!(symbol, i.intent.symbol);
        by_bar
            .entry(start.to_string())
            .or_default()
            .push((symbol.to_string(), i.intent.side.as_str().to_string()));
    }
    assert!(!by_bar.is_empty());
    let paired = by_bar
        .values()
        .filter(|legs| {
            legs.len() == 2
                && legs.iter().any(|(s, _)| s == "MSFT")
                && legs.iter().any(|(s, _)| s == "SPY")
                && legs[0].1 != legs[1].1
        })
        .count();
    assert!(
        by_bar.values().flatten().all(|(s, _)| s != "AAPL"),
        "{by_bar:?}"
    );
    assert!(
        paired * 10 >= by_bar.len() * 9,
        "legs not in pairs: {by_bar:?}"
    );
}

#[actix_rt::test]
async fn rebalance_buys_its_weights_once_a_day_on_the_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::parse(
        "[sim]\nspeed = 120.0\n[account]\nrefresh_interval_ms = 300\n\
         [trading]\nsymbols = [\"AAPL\", \"MSFT\", \"SPY\"]\n\
         [strategy]\nname = \"rebalance\"\nprotection = \"none\"\n\
         [strategy.rebalance]\nmethod = \"fixed\"\nweights = { AAPL = 0.3, MSFT = 0.3, SPY = 0.4 }\n\
         at = \"09:40\"\ninvest = 0.5\ndrift_band = 0.05\n",
        "test",
        &CheckContext::default(),
    )
    .unwrap();
    let daemon = common::InProcess::start(config, CheckContext::default(), dir.path(), |_| None);
    let socket = daemon.socket.clone();
    wait_for("the three purchases filled", WAIT, || async {
        let r = traderd::control::call(&socket, "status", &[]).await.ok()?;
        (r.result?["fills"].as_u64()? >= 3).then_some(())
    })
    .await;
    // A window of ten more market minutes (5 s at 120x) in which nothing may happen: no
    // second rebalance the same day (a negative check needs a span, not a condition).
    tokio::time::sleep(Duration::from_secs(5)).await;
    daemon.stop().await;
    let store = common::journal_of(dir.path());
    let intents = store.intents(false).unwrap();
    let mut symbols: Vec<&str> = intents.iter().map(|i| i.intent.symbol.as_str()).collect();
    symbols.sort();
    assert_eq!(symbols, ["AAPL", "MSFT", "SPY"], "one order each, once");
    // Each holding is its weight of half the equity (100,000), within a share's worth.
    for f in store.fills().unwrap() {
        let w = match f.symbol.as_str() {
            "SPY" => 0.4,
            _ => 0.3,
        };
        let value: f64 = (f.qty * f.price).try_into().unwrap();
        let price: f64 = f.price.try_into().unwrap();
        assert!(
            (value - 50_000.0 * w).abs() <= price + 1.0,
            "{} held {value:.2}, target {:.2}",
            f.symbol,
            50_000.0 * w
        );
    }
}

/// Two strategies at once, one of them pairs: each trades only its own symbols, names itself
/// in its orders' client ids, shows in `ctl status`, pauses alone; and what each holds by its
/// journaled fills is what the broker holds of its symbols.
#[actix_rt::test]
async fn two_strategies_at_once_each_with_its_own_symbols_and_positions() {
    use rust_decimal::Decimal;
    use std::collections::BTreeMap;
    let sim = common::paper_sim().await;
    let env: BTreeMap<&str, String> = common::paper_env(&sim.base_url()).into_iter().collect();
    let dir = tempfile::tempdir().unwrap();
    let text = "[connection]\nmode = \"paper\"\n[account]\nrefresh_interval_ms = 300\n\
         [risk]\nmax_orders_per_minute = 1000\n\
         [trading]\nsymbols = [\"AAPL\", \"MSFT\", \"SPY\"]\n\
         [[strategies]]\nname = \"trend\"\nkind = \"momentum\"\nsymbols = [\"AAPL\"]\n\
         sizing_usd = \"2000\"\nprotection = \"none\"\n\
         [strategies.momentum]\nrsi_entry_min = 0.0\nrsi_entry_max = 100.0\nrsi_exit = 100.0\n\
         [[strategies]]\nname = \"pair\"\nkind = \"pairs\"\nsymbols = [\"MSFT\", \"SPY\"]\n\
         sizing_usd = \"3000\"\nprotection = \"none\"\nallocation_usd = \"10000\"\n\
         [strategies.pairs]\na = \"MSFT\"\nb = \"SPY\"\nlookback = 20\nentry_z = 1.0\nexit_z = 0.3\n";
    let ctx = CheckContext {
        live_opt_in: false,
        have_keys: true,
    };
    let config = Config::parse(text, "test", &ctx).unwrap_or_else(|e| panic!("{e}"));
    // Two strategies may not share a symbol.
    let shared = Config::parse(
        &text.replace("symbols = [\"AAPL\"]", "symbols = [\"AAPL\", \"SPY\"]"),
        "test",
        &ctx,
    )
    .unwrap_err()
    .to_string();
    assert!(
        shared.contains("SPY is traded by \"trend\" already"),
        "{shared}"
    );
    let daemon = common::InProcess::start(config, ctx, dir.path(), move |k| env.get(k).cloned());
    let socket = daemon.socket.clone();
    let status = wait_for("both strategies' orders filled", WAIT, || async {
        let r = traderd::control::call(&socket, "status", &[]).await.ok()?;
        let result = r.result?;
        let s = result["strategies"].as_array()?;
        (s.len() == 2
            && s.iter().all(|s| s["orders"].as_u64().unwrap_or(0) >= 2)
            && result["fills"].as_u64()? >= 4)
            .then_some(result)
    })
    .await;
    eprintln!("{}", traderd::control::render("status", &status));
    // Every fill is one strategy's; each has its realised and unrealised P&L.
    let fills: u64 = status["strategies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["fills"].as_u64().unwrap())
        .sum();
    assert_eq!(Some(fills), status["fills"].as_u64(), "{status}");
    for s in status["strategies"].as_array().unwrap() {
        assert!(
            s["realized_pnl"].is_string() && s["unrealized_pnl"].is_string(),
            "{s}"
        );
    }
    assert_eq!(status["strategies"][0]["name"], "trend");
    assert_eq!(status["strategies"][1]["kind"], "pairs");
    // One strategy pauses alone.
    let args = ["--strategy".to_string(), "trend".to_string()];
    let paused = traderd::control::call(&socket, "pause", &args)
        .await
        .unwrap();
    assert!(paused.ok, "{paused:?}");
    let r = traderd::control::call(&socket, "status", &[])
        .await
        .unwrap();
    let r = r.result.unwrap();
    assert_eq!(r["strategies"][0]["paused"], true);
    assert_eq!(r["strategies"][1]["paused"], false);
    assert_eq!(r["mode"], "active", "the daemon is not paused");
    let nobody = ["--strategy".to_string(), "nobody".to_string()];
    let unknown = traderd::control::call(&socket, "pause", &nobody)
        .await
        .unwrap();
    assert!(!unknown.ok);
    // Debug commands are off unless the daemon was started with TRADERD_DEBUG_COMMANDS=1.
    let wedge = ["3".to_string()];
    let off = traderd::control::call(&socket, "debug-wedge", &wedge)
        .await
        .unwrap();
    assert_eq!(off.error.map(|e| e.code).as_deref(), Some("disabled"));
    daemon.stop().await;

    // Attribution: each fill's strategy from its client order id; each strategy's symbols are
    // its own; what each holds by its fills is what the broker holds.
    let store = common::journal_of(dir.path());
    let mut held: BTreeMap<(String, String), Decimal> = BTreeMap::new();
    for f in store.fills().unwrap() {
        let strategy = traderd::orders::ClientOrderIds::strategy_of(&f.client_order_id)
            .unwrap_or_else(|| panic!("no strategy in {}", f.client_order_id))
            .to_string();
        let mine: &[&str] = if strategy == "trend" {
            &["AAPL"]
        } else {
            &["MSFT", "SPY"]
        };
        assert!(
            mine.contains(&f.symbol.as_str()),
            "{strategy} filled {}",
            f.symbol
        );
        *held.entry((strategy, f.symbol.clone())).or_default() += f.side.sign() * f.qty;
    }
    held.retain(|_, q| !q.is_zero());
    let state = common::sim_state(&sim).await;
    let broker: BTreeMap<String, Decimal> = state["positions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let qty = p["qty"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| p["qty"].to_string());
            (
                p["symbol"].as_str().unwrap().to_string(),
                qty.parse::<Decimal>().unwrap(),
            )
        })
        .filter(|(_, q)| !q.is_zero())
        .collect();
    let ours: BTreeMap<String, Decimal> = held.iter().map(|((_, s), q)| (s.clone(), *q)).collect();
    assert_eq!(ours, broker, "per strategy: {held:?}");
    sim.stop().await;
}

#[actix_rt::test]
async fn a_strategy_stops_entering_at_its_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::parse(
        "[sim]\nspeed = 120.0\n[account]\nrefresh_interval_ms = 300\n\
         [risk]\nmax_orders_per_minute = 1000\n\
         [trading]\nsymbols = [\"AAPL\", \"MSFT\", \"SPY\"]\n\
         [[strategies]]\nname = \"capped\"\nkind = \"momentum\"\nsymbols = [\"AAPL\", \"MSFT\", \"SPY\"]\n\
         sizing_usd = \"2000\"\nprotection = \"none\"\nallocation_usd = \"3000\"\n\
         [strategies.momentum]\nrsi_entry_min = 0.0\nrsi_entry_max = 100.0\nrsi_exit = 100.0\n",
        "test",
        &CheckContext::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let daemon = common::InProcess::start(config, CheckContext::default(), dir.path(), |_| None);
    let socket = daemon.socket.clone();
    // One $2,000 entry fits under $3,000; a second, on another symbol, would not.
    let status = wait_for("an entry held back by the allocation", WAIT, || async {
        let r = traderd::control::call(&socket, "status", &[]).await.ok()?;
        let result = r.result?;
        (result["strategies"][0]["over_allocation"].as_u64()? >= 1).then_some(result)
    })
    .await;
    daemon.stop().await;
    let held = status["strategies"][0]["positions"].as_object().unwrap();
    assert!(
        held.len() <= 1,
        "at most one $2,000 position under $3,000: {status}"
    );
}

/// Says what it saw; buys on every bar (acted on only when live).
struct Recorder(std::sync::Arc<std::sync::Mutex<Vec<(String, i64, bool)>>>);

impl traderd::strategy::Strategy for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }
    fn interval(&self) -> traderd::domain::Interval {
        traderd::domain::Interval::M1
    }
    fn on_bar(&mut self, input: &traderd::strategy::BarInput<'_>) -> traderd::strategy::Signal {
        self.0.lock().unwrap().push((
            input.symbol.to_string(),
            input.bar.start.timestamp(),
            input.historical,
        ));
        traderd::strategy::Signal::Enter {
            side: traderd::alpaca::model::OrderSide::Buy,
            reason: "every bar".into(),
        }
    }
}

/// Answers every proposal with "not sent".
struct Refuser;
impl actix::Actor for Refuser {
    type Context = actix::Context<Self>;
}
impl actix::Handler<traderd::messages::orders::Propose> for Refuser {
    type Result = Result<String, traderd::messages::orders::ProposeError>;
    fn handle(
        &mut self,
        _: traderd::messages::orders::Propose,
        _: &mut Self::Context,
    ) -> Self::Result {
        Err(traderd::messages::orders::ProposeError::NotSent(
            "test".into(),
        ))
    }
}

#[actix_rt::test]
async fn a_warm_up_s_history_reaches_the_strategy_bar_by_bar_and_is_not_acted_on() {
    use actix::Actor;
    use traderd::actors::strategy_runner::{GetStrategyStats, StrategyRunner};
    use traderd::domain::{Interval, OhlcBar};
    use traderd::messages::{BarClosed, HistoryBars};
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let refuser = Refuser.start();
    let runner = StrategyRunner::new(
        Box::new(Recorder(seen.clone())),
        traderd::strategy::Sizing::FixedNotional {
            usd: Decimal::from(100),
        },
        traderd::strategy::Protection::None,
        refuser.recipient(),
    )
    .start();
    let t0 = chrono::DateTime::from_timestamp(1_764_599_400, 0).unwrap();
    let bar = |i: i64| OhlcBar {
        start: t0 + chrono::Duration::minutes(i),
        open: Decimal::from(10),
        high: Decimal::from(11),
        low: Decimal::from(9),
        close: Decimal::from(10 + i),
        volume: Decimal::from(100),
        trades: 1,
        notional: Decimal::ZERO,
    };
    let history: Vec<OhlcBar> = (0..200).map(bar).collect();
    runner
        .send(HistoryBars {
            symbol: "AAPL".into(),
            interval: Interval::M1,
            bars: history.into(),
        })
        .await
        .unwrap();
    // Another interval's history is not the strategy's.
    runner
        .send(HistoryBars {
            symbol: "AAPL".into(),
            interval: Interval::M5,
            bars: vec![bar(0)].into(),
        })
        .await
        .unwrap();
    let stats = runner.send(GetStrategyStats).await.unwrap();
    assert_eq!((stats.bars, stats.signals), (200, 0), "{stats:?}");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 200);
        assert!(
            seen.iter()
                .all(|(s, _, historical)| s == "AAPL" && *historical)
        );
        let starts: Vec<i64> = seen.iter().map(|(_, t, _)| *t).collect();
        assert!(starts.windows(2).all(|w| w[1] - w[0] == 60), "in order");
    }
    // The first live bar after it is acted on.
    runner
        .send(BarClosed {
            symbol: "AAPL".into(),
            interval: Interval::M1,
            bar: bar(200),
            historical: false,
            degraded: false,
            trace: Default::default(),
        })
        .await
        .unwrap();
    let stats = runner.send(GetStrategyStats).await.unwrap();
    assert_eq!((stats.bars, stats.signals), (201, 1), "{stats:?}");
    assert_eq!(
        seen.lock().unwrap().last(),
        Some(&("AAPL".to_string(), bar(200).start.timestamp(), false))
    );
}

/// A StrategyRunner of a `Recorder` (an entry on every bar) sized at `usd` an entry, its
/// order side ready (and refusing everything), the account's equity read if `equity`.
async fn ready_runner(
    usd: i64,
    equity: Option<i64>,
) -> actix::Addr<traderd::actors::strategy_runner::StrategyRunner> {
    use actix::Actor;
    use traderd::messages::OrdersChanged;
    let runner = traderd::actors::strategy_runner::StrategyRunner::new(
        Box::new(Recorder(Default::default())),
        traderd::strategy::Sizing::FixedNotional {
            usd: Decimal::from(usd),
        },
        traderd::strategy::Protection::None,
        Refuser.start().recipient(),
    )
    .start();
    runner
        .send(OrdersChanged {
            ready: true,
            ..Default::default()
        })
        .await
        .unwrap();
    if let Some(equity) = equity {
        runner.send(account(equity)).await.unwrap();
    }
    runner
}

fn account(equity: i64) -> traderd::messages::AccountUpdated {
    traderd::messages::AccountUpdated(traderd::messages::AccountSnapshot {
        equity: Decimal::from(equity),
        ..Default::default()
    })
}

/// AAPL's live minute bar `i` (from a fixed start), every price `close`.
fn closed(i: i64, close: i64) -> traderd::messages::BarClosed {
    let t0 = chrono::DateTime::from_timestamp(1_764_599_400, 0).unwrap();
    traderd::messages::BarClosed {
        symbol: "AAPL".into(),
        interval: traderd::domain::Interval::M1,
        bar: traderd::domain::OhlcBar {
            start: t0 + chrono::Duration::minutes(i),
            open: Decimal::from(close),
            high: Decimal::from(close),
            low: Decimal::from(close),
            close: Decimal::from(close),
            volume: Decimal::from(100),
            trades: 1,
            notional: Decimal::ZERO,
        },
        historical: false,
        degraded: false,
        trace: Default::default(),
    }
}

/// (signals, ignored, proposed) of the runner's stats.
async fn counts(
    runner: &actix::Addr<traderd::actors::strategy_runner::StrategyRunner>,
) -> (u64, u64, u64) {
    let s = runner
        .send(traderd::actors::strategy_runner::GetStrategyStats)
        .await
        .unwrap();
    (s.signals, s.ignored, s.proposed)
}

#[actix_rt::test]
async fn an_entry_before_the_account_s_first_read_is_ignored_and_counted_not_dropped_silently() {
    // Reconciled and ready, but the account not read yet: the entry cannot be sized.
    let runner = ready_runner(100, None).await;
    runner.send(closed(0, 10)).await.unwrap();
    runner.send(closed(1, 10)).await.unwrap();
    assert_eq!(counts(&runner).await, (2, 2, 0));
    // Once read, the next entry is proposed (and this order side refuses it).
    runner.send(account(100_000)).await.unwrap();
    runner.send(closed(2, 10)).await.unwrap();
    assert_eq!(counts(&runner).await, (3, 2, 1));
}

#[actix_rt::test]
async fn an_entry_that_sizes_to_no_whole_share_is_ignored_and_counted() {
    // $100 an entry: at $150 a share it buys none, and is ignored, not proposed.
    let runner = ready_runner(100, Some(100_000)).await;
    runner.send(closed(0, 150)).await.unwrap();
    assert_eq!(counts(&runner).await, (1, 1, 0));
    // At $50, two shares: proposed.
    runner.send(closed(1, 50)).await.unwrap();
    assert_eq!(counts(&runner).await, (2, 1, 1));
}
