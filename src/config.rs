//! Typed, strict configuration.
//!
//! Every key has a default, so an empty file is a valid `sim` config. Checking reports every
//! problem at once, each with its key path and what to do:
//! 1. TOML syntax (one error: the parser stops there);
//! 2. every unknown key (with a suggestion) and every value of the wrong type, each checked on
//!    its own against the defaults, so one mistake does not hide the next;
//! 3. every semantic rule (ranges, URLs, symbols, keys present, the live opt-in).
//!
//! Units are in key names (`_ms`, `_usd`). API keys never live in the config: they come from
//! `APCA_API_KEY_ID` / `APCA_API_SECRET_KEY` or from systemd credentials (see [`load_credentials`]).

use crate::alpaca::num::flex;
use crate::alpaca::{ClientSettings, Credentials, Secret};
use crate::domain::Interval;
use crate::risk::RiskLimits;
use crate::strategy::{
    MeanReversion, MeanReversionParams, Momentum, MomentumParams, Probe, ProbeParams, Protection,
    Sizing, Strategy,
};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the daemon trades.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionMode {
    /// The embedded simulator: no keys, no money.
    #[default]
    Sim,
    /// An Alpaca paper account: keys, play money.
    Paper,
    /// An Alpaca live account: keys, real money, and `--live` on the command line.
    Live,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub connection: ConnectionSection,
    pub alpaca: AlpacaSection,
    pub sim: SimSection,
    pub trading: TradingSection,
    pub log: LogSection,
    pub state: StateSection,
    pub strategy: StrategySection,
    pub risk: RiskSection,
    pub orders: OrdersSection,
    pub account: AccountSection,
    pub stream: StreamSection,
    pub health: HealthSection,
    pub preservation: PreservationSection,
    pub shutdown: ShutdownSection,
    pub control: ControlSection,
    pub telemetry: TelemetrySection,
}

/// OpenTelemetry export (OTLP over HTTP/protobuf). Off unless an endpoint is set here or in
/// `OTEL_EXPORTER_OTLP_ENDPOINT`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySection {
    /// The collector's base URL (`http://127.0.0.1:4318`); `/v1/traces` and `/v1/metrics` are
    /// appended. Empty: `OTEL_EXPORTER_OTLP_ENDPOINT` when set, else no export.
    pub otlp_endpoint: String,
    /// The `service.name` resource attribute (`OTEL_SERVICE_NAME` wins when set).
    pub service_name: String,
    /// How often metrics are sampled and exported (`OTEL_METRIC_EXPORT_INTERVAL` wins for the export).
    pub metrics_interval_ms: u64,
}

impl Default for TelemetrySection {
    fn default() -> Self {
        TelemetrySection {
            otlp_endpoint: String::new(),
            service_name: "traderd".into(),
            metrics_interval_ms: 10_000,
        }
    }
}

/// The control socket (`traderd ctl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ControlSection {
    /// The socket's path; empty: `$RUNTIME_DIRECTORY/traderd.sock`, `$XDG_RUNTIME_DIR/traderd.sock`,
    /// else `traderd.sock` in the state directory.
    pub socket: String,
    /// A group (name or number) whose members may connect too: the socket is then mode 0660.
    pub group: String,
    /// Users (uids) allowed besides the daemon's own and root.
    pub allowed_uids: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionSection {
    pub mode: ConnectionMode,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlpacaSection {
    pub paper_trading_url: String,
    pub live_trading_url: String,
    pub data_url: String,
    pub data_stream_url: String,
    /// `iex` (free) or `sip` (paid).
    pub feed: String,
    /// How warm-up bars are adjusted for corporate actions: `split` (default: indicators see
    /// one price scale across a split), `raw`, `dividend` or `all`.
    pub adjustment: String,
    pub requests_per_minute: u32,
    pub request_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    pub max_retries: u32,
    pub retry_min_delay_ms: u64,
    pub retry_max_delay_ms: u64,
}

impl Default for AlpacaSection {
    fn default() -> Self {
        AlpacaSection {
            paper_trading_url: "https://paper-api.alpaca.markets".into(),
            live_trading_url: "https://api.alpaca.markets".into(),
            data_url: "https://data.alpaca.markets".into(),
            data_stream_url: "wss://stream.data.alpaca.markets".into(),
            feed: "iex".into(),
            adjustment: "split".into(),
            requests_per_minute: 200,
            request_timeout_ms: 10_000,
            connect_timeout_ms: 5_000,
            max_retries: 5,
            retry_min_delay_ms: 200,
            retry_max_delay_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimSection {
    /// Address of the embedded simulator; port 0 picks a free one.
    pub listen: String,
    pub seed: u64,
    /// Market seconds per wall second (60 = a minute of market in a second).
    pub speed: f64,
    /// `sim` (skips closed hours, always open) or `wall` (real time, real calendar).
    pub clock: String,
    pub symbols: Vec<String>,
    #[serde(with = "flex")]
    pub initial_cash_usd: Decimal,
    /// Requests a minute per key, as Alpaca enforces; 0 disables the limit.
    pub rate_limit_per_minute: u32,
}

impl Default for SimSection {
    fn default() -> Self {
        SimSection {
            listen: "127.0.0.1:0".into(),
            seed: 1,
            speed: 60.0,
            clock: "sim".into(),
            symbols: crate::sim::market::DEFAULT_SYMBOLS
                .iter()
                .map(|(s, ..)| s.to_string())
                .collect(),
            initial_cash_usd: Decimal::from(100_000),
            rate_limit_per_minute: 200,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TradingSection {
    /// Symbols the daemon subscribes to and trades.
    pub symbols: Vec<String>,
}

impl Default for TradingSection {
    fn default() -> Self {
        TradingSection {
            symbols: vec!["AAPL".into(), "MSFT".into(), "SPY".into()],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// A tracing filter: `info`, `debug`, `traderd=debug,warn`, … `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct StateSection {
    /// Where the journal lives; see [`resolve_state_dir`] for what wins when several are set.
    pub dir: String,
    /// `full`: a record is on the disk before the call returns (survives a power loss);
    /// `normal`: handed to the OS (survives a crash of the process, not of the machine).
    pub sync: crate::journal::Durability,
}

/// The strategy, its sizing and the protection attached to entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StrategySection {
    /// `momentum` (RSI + MACD), `mean_reversion` (Bollinger z-score), or `probe` (the load
    /// bench's latency probe: orders on marked trades; not for trading).
    pub name: String,
    /// The bar interval it trades on: 1m, 5m, 15m, 1h or 1d.
    pub interval: Interval,
    /// `fixed_notional` (sizing_usd per entry), `percent_of_equity` (sizing_pct of equity) or
    /// `risk_per_trade` (lose at most sizing_pct of equity at the stop).
    pub sizing: String,
    #[serde(with = "flex")]
    pub sizing_usd: Decimal,
    #[serde(with = "flex")]
    pub sizing_pct: Decimal,
    /// `bracket` (take-profit and stop-loss legs), `trailing_stop` or `none`.
    pub protection: String,
    #[serde(with = "flex")]
    pub take_profit_pct: Decimal,
    #[serde(with = "flex")]
    pub stop_loss_pct: Decimal,
    #[serde(with = "flex")]
    pub trail_pct: Decimal,
    pub momentum: MomentumParams,
    pub mean_reversion: MeanReversionParams,
    pub probe: ProbeParams,
}

impl Default for StrategySection {
    fn default() -> Self {
        StrategySection {
            name: "momentum".into(),
            interval: Interval::M1,
            sizing: "fixed_notional".into(),
            sizing_usd: Decimal::from(5_000),
            sizing_pct: Decimal::from(2),
            protection: "bracket".into(),
            take_profit_pct: Decimal::from(2),
            stop_loss_pct: Decimal::ONE,
            trail_pct: Decimal::ONE,
            momentum: MomentumParams::default(),
            mean_reversion: MeanReversionParams::default(),
            probe: ProbeParams::default(),
        }
    }
}

impl StrategySection {
    /// The sizing rule; `None` for an unknown name (reported by [`Config::check`]).
    pub fn sizing_rule(&self) -> Option<Sizing> {
        Some(match self.sizing.as_str() {
            "fixed_notional" => Sizing::FixedNotional {
                usd: self.sizing_usd,
            },
            "percent_of_equity" => Sizing::PercentOfEquity {
                pct: self.sizing_pct,
            },
            "risk_per_trade" => Sizing::RiskPerTrade {
                pct: self.sizing_pct,
            },
            _ => return None,
        })
    }

    /// The protection rule; `None` for an unknown name.
    pub fn protection_rule(&self) -> Option<Protection> {
        Some(match self.protection.as_str() {
            "bracket" => Protection::Bracket {
                take_profit_pct: self.take_profit_pct,
                stop_loss_pct: self.stop_loss_pct,
            },
            "trailing_stop" => Protection::TrailingStop {
                trail_pct: self.trail_pct,
            },
            "none" => Protection::None,
            _ => return None,
        })
    }

    /// The configured strategy, or `None` for an unknown name.
    pub fn build(&self) -> Option<Box<dyn Strategy>> {
        match self.name.as_str() {
            "momentum" => Some(Box::new(Momentum::new(
                self.momentum.clone(),
                self.interval,
            ))),
            "mean_reversion" => Some(Box::new(MeanReversion::new(
                self.mean_reversion.clone(),
                self.interval,
            ))),
            "probe" => Some(Box::new(Probe::new(self.probe.clone(), self.interval))),
            _ => None,
        }
    }
}

/// Pre-trade limits (see `risk::check`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RiskSection {
    #[serde(with = "flex")]
    pub max_qty_per_symbol: Decimal,
    #[serde(with = "flex")]
    pub max_notional_per_symbol_usd: Decimal,
    #[serde(with = "flex")]
    pub max_gross_exposure_usd: Decimal,
    pub max_positions: usize,
    pub max_open_orders: usize,
    pub max_orders_per_minute: usize,
    #[serde(with = "flex")]
    pub price_band_pct: Decimal,
    #[serde(with = "flex")]
    pub daily_loss_limit_usd: Decimal,
    pub require_market_open: bool,
}

impl Default for RiskSection {
    fn default() -> Self {
        let l = RiskLimits::default();
        RiskSection {
            max_qty_per_symbol: l.max_qty_per_symbol,
            max_notional_per_symbol_usd: l.max_notional_per_symbol_usd,
            max_gross_exposure_usd: l.max_gross_exposure_usd,
            max_positions: l.max_positions,
            max_open_orders: l.max_open_orders,
            max_orders_per_minute: l.max_orders_per_minute,
            price_band_pct: l.price_band_pct,
            daily_loss_limit_usd: l.daily_loss_limit_usd,
            require_market_open: l.require_market_open,
        }
    }
}

impl RiskSection {
    pub fn limits(&self) -> RiskLimits {
        RiskLimits {
            max_qty_per_symbol: self.max_qty_per_symbol,
            max_notional_per_symbol_usd: self.max_notional_per_symbol_usd,
            max_gross_exposure_usd: self.max_gross_exposure_usd,
            max_positions: self.max_positions,
            max_open_orders: self.max_open_orders,
            max_orders_per_minute: self.max_orders_per_minute,
            price_band_pct: self.price_band_pct,
            daily_loss_limit_usd: self.daily_loss_limit_usd,
            require_market_open: self.require_market_open,
        }
    }
}

/// The order side's timers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrdersSection {
    /// An order the broker has not acknowledged this long after sending is looked up by its
    /// client order id (never resent on a guess).
    pub ack_timeout_ms: u64,
    /// How often open orders are polled over REST while the trade_updates stream is down.
    pub poll_interval_ms: u64,
    /// How often the journal is reconciled with the broker while running.
    pub reconcile_interval_s: u64,
}

impl Default for OrdersSection {
    fn default() -> Self {
        OrdersSection {
            ack_timeout_ms: 5_000,
            poll_interval_ms: 1_000,
            reconcile_interval_s: 60,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountSection {
    /// How often account, positions and the market clock are read (also after every fill).
    pub refresh_interval_ms: u64,
}

impl Default for AccountSection {
    fn default() -> Self {
        AccountSection {
            refresh_interval_ms: 5_000,
        }
    }
}

/// What the ConnectionHealthMonitor watches and when it sends the system into capital
/// preservation. A threshold of 0 turns that check off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthSection {
    /// The sliding window REST errors are counted in.
    pub window_s: u64,
    /// REST errors (5xx, 429, timeouts, refused connections; every attempt counts) within
    /// `window_s` that trip capital preservation.
    pub rest_errors_in_window: u32,
    /// A stream down, or the market-data stream silent, this long while the market is open trips it.
    pub stream_down_limit_s: u64,
    /// Orders the broker rejects in a row that trip it.
    pub order_rejects_in_a_row: u32,
    /// Actor restarts within `restart_window_s` that exhaust the restart budget and trip it.
    pub restart_budget: u32,
    pub restart_window_s: u64,
    /// The day's loss reaching `risk.daily_loss_limit_usd` trips it.
    pub daily_loss_trips: bool,
    /// A reconciliation finding a position the journal does not explain trips it.
    pub mismatch_trips: bool,
    /// How often the broker is pinged (`GET /v2/clock`, latency recorded).
    pub ping_interval_ms: u64,
}

impl Default for HealthSection {
    fn default() -> Self {
        HealthSection {
            window_s: 60,
            rest_errors_in_window: 20,
            stream_down_limit_s: 120,
            order_rejects_in_a_row: 5,
            restart_budget: 5,
            restart_window_s: 60,
            daily_loss_trips: true,
            mismatch_trips: true,
            ping_interval_ms: 5_000,
        }
    }
}

/// The flatten procedure (entering `preserving`) and leaving `preserved`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PreservationSection {
    /// Backoff between flatten attempts: from this, doubling, up to `retry_max_ms`. It never gives up.
    pub retry_min_ms: u64,
    pub retry_max_ms: u64,
    /// How long one attempt waits for the broker to show no position and no open order.
    pub verify_timeout_ms: u64,
    /// While preserved, also set the account's `suspend_trade` so the broker itself refuses new
    /// orders (cleared again on resume).
    pub suspend_trade: bool,
    /// Leave `preserved` for `active` by itself after this many seconds; 0 (the default) means
    /// only an operator's `resume` does.
    pub cooldown_s: u64,
}

impl Default for PreservationSection {
    fn default() -> Self {
        PreservationSection {
            retry_min_ms: 1_000,
            retry_max_ms: 30_000,
            verify_timeout_ms: 15_000,
            suspend_trade: false,
            cooldown_s: 0,
        }
    }
}

/// What SIGTERM / SIGINT do, in order: stop entries, optionally cancel open orders, optionally
/// flatten, let orders in flight settle, close the streams, flush the journal, exit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownSection {
    /// Cancel every open order (protective stops included) before exiting.
    pub cancel_open_orders: bool,
    /// Close every position before exiting (waits until the broker shows flat, within the timeout).
    pub flatten: bool,
    /// The whole sequence ends within this; what is left is reconciled at the next start.
    pub timeout_s: u64,
}

impl Default for ShutdownSection {
    fn default() -> Self {
        ShutdownSection {
            cancel_open_orders: false,
            flatten: false,
            timeout_s: 30,
        }
    }
}

/// The WebSocket clients (market data and trade_updates).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamSection {
    /// `json` or `msgpack` for market data (trade_updates is always JSON).
    pub codec: String,
    pub ping_interval_ms: u64,
    /// No frame (not even a pong) for this long: the connection is dead.
    pub pong_timeout_ms: u64,
    /// No data for this long while subscribed and the market is open: reconnect.
    pub stale_after_ms: u64,
    /// Reconnect backoff: full jitter up to min(max, min·2^attempt).
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
    /// Also subscribe to the minute-bar channel (counted; our bars are built from the trades).
    pub subscribe_bars: bool,
    /// While the market-data stream is down, poll closed minute bars over REST this often so
    /// strategies keep getting bars (marked degraded); 0 never polls.
    pub rest_bars_poll_ms: u64,
}

impl Default for StreamSection {
    fn default() -> Self {
        StreamSection {
            codec: "json".into(),
            ping_interval_ms: 10_000,
            pong_timeout_ms: 30_000,
            stale_after_ms: 60_000,
            reconnect_min_ms: 500,
            reconnect_max_ms: 30_000,
            subscribe_bars: false,
            rest_bars_poll_ms: 60_000,
        }
    }
}

/// One problem found in a config, with the key path it concerns.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a config.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ConfigError {
    pub source_name: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "{}: {n} problem{}",
            self.source_name,
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

/// What the checks need to know beyond the file.
#[derive(Debug, Clone, Default)]
pub struct CheckContext {
    /// `--live` was given on the command line.
    pub live_opt_in: bool,
    /// API keys could be found (env or credentials directory).
    pub have_keys: bool,
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path, ctx: &CheckContext) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            source_name: name.clone(),
            problems: vec![Problem {
                path: String::new(),
                message: format!("cannot read the file: {e}"),
            }],
        })?;
        Self::parse(&text, &name, ctx)
    }

    /// Parses and checks config text; `name` names it in messages.
    pub fn parse(text: &str, name: &str, ctx: &CheckContext) -> Result<Config, ConfigError> {
        let fail = |problems| ConfigError {
            source_name: name.to_string(),
            problems,
        };
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            fail(vec![Problem {
                path: String::new(),
                message: format!("not valid TOML: {}", e.to_string().trim()),
            }])
        })?;
        let schema = toml::Table::try_from(Config::default()).map_err(|e| {
            fail(vec![Problem {
                path: String::new(),
                message: format!("internal: defaults do not serialize: {e}"),
            }])
        })?;
        let mut problems = Vec::new();
        check_keys(&table, &schema, "", &schema, &mut problems);
        // Check the rest of the file too: without the keys already found wrong, it must parse.
        let mut rest = table;
        for p in &problems {
            remove_path(&mut rest, &p.path);
        }
        match toml::Value::Table(rest).try_into::<Config>() {
            Ok(config) => {
                let broken: Vec<String> = problems.iter().map(|p| p.path.clone()).collect();
                problems.extend(
                    config
                        .check(ctx)
                        .into_iter()
                        .filter(|p| !broken.contains(&p.path)),
                );
                if problems.is_empty() {
                    Ok(config)
                } else {
                    Err(fail(problems))
                }
            }
            Err(e) => {
                problems.push(Problem {
                    path: String::new(),
                    message: e.message().trim().to_string(),
                });
                Err(fail(problems))
            }
        }
    }

    /// The semantic rules; every violation is returned.
    pub fn check(&self, ctx: &CheckContext) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut bad = |path: &str, message: String| {
            out.push(Problem {
                path: path.into(),
                message,
            })
        };
        match self.connection.mode {
            ConnectionMode::Sim => {}
            ConnectionMode::Paper | ConnectionMode::Live if !ctx.have_keys => bad(
                "connection.mode",
                format!(
                    "\"{}\" needs API keys: set APCA_API_KEY_ID and APCA_API_SECRET_KEY, or give systemd credentials named apca_api_key_id and apca_api_secret_key (LoadCredential=)",
                    self.mode_name()
                ),
            ),
            _ => {}
        }
        if self.connection.mode == ConnectionMode::Live && !ctx.live_opt_in {
            bad(
                "connection.mode",
                "\"live\" trades real money: confirm by adding --live to the command line".into(),
            );
        }
        let a = &self.alpaca;
        for (path, url, schemes) in [
            (
                "alpaca.paper_trading_url",
                &a.paper_trading_url,
                &["https", "http"][..],
            ),
            (
                "alpaca.live_trading_url",
                &a.live_trading_url,
                &["https", "http"][..],
            ),
            ("alpaca.data_url", &a.data_url, &["https", "http"][..]),
            (
                "alpaca.data_stream_url",
                &a.data_stream_url,
                &["wss", "ws"][..],
            ),
        ] {
            if let Err(m) = check_url(url, schemes) {
                bad(path, m);
            }
        }
        if !["iex", "sip", "delayed_sip", "test"].contains(&a.feed.as_str()) {
            bad(
                "alpaca.feed",
                format!(
                    "unknown feed {:?}: use iex (free), sip (paid), delayed_sip or test",
                    a.feed
                ),
            );
        }
        if !["raw", "split", "dividend", "all"].contains(&a.adjustment.as_str()) {
            bad(
                "alpaca.adjustment",
                format!(
                    "unknown adjustment {:?}: use split (the default: one price scale across a split), raw, dividend or all",
                    a.adjustment
                ),
            );
        }
        if !(1..=10_000).contains(&a.requests_per_minute) {
            bad(
                "alpaca.requests_per_minute",
                format!(
                    "{} is out of range: use 1 to 10000 (Alpaca allows 200)",
                    a.requests_per_minute
                ),
            );
        }
        for (path, v, min, max) in [
            (
                "alpaca.request_timeout_ms",
                a.request_timeout_ms,
                100,
                300_000,
            ),
            (
                "alpaca.connect_timeout_ms",
                a.connect_timeout_ms,
                100,
                300_000,
            ),
            ("alpaca.retry_min_delay_ms", a.retry_min_delay_ms, 1, 60_000),
            (
                "alpaca.retry_max_delay_ms",
                a.retry_max_delay_ms,
                1,
                600_000,
            ),
        ] {
            if !(min..=max).contains(&v) {
                bad(path, format!("{v} is out of range: use {min} to {max}"));
            }
        }
        if a.retry_min_delay_ms > a.retry_max_delay_ms {
            bad(
                "alpaca.retry_min_delay_ms",
                "must not exceed alpaca.retry_max_delay_ms".into(),
            );
        }
        if a.max_retries > 20 {
            bad(
                "alpaca.max_retries",
                format!("{} is out of range: use 0 to 20", a.max_retries),
            );
        }
        let s = &self.sim;
        if s.listen.parse::<std::net::SocketAddr>().is_err() {
            bad(
                "sim.listen",
                format!(
                    "{:?} is not an address: use IP:PORT, e.g. 127.0.0.1:0",
                    s.listen
                ),
            );
        }
        if !(s.speed.is_finite() && s.speed > 0.0 && s.speed <= 100_000.0) {
            bad(
                "sim.speed",
                format!(
                    "{} is out of range: use a number above 0 and at most 100000",
                    s.speed
                ),
            );
        }
        if !["sim", "wall"].contains(&s.clock.as_str()) {
            bad(
                "sim.clock",
                format!(
                    "unknown clock {:?}: use sim (always open, accelerated) or wall (real time)",
                    s.clock
                ),
            );
        }
        if s.initial_cash_usd <= Decimal::ZERO || s.initial_cash_usd > MAX_MONEY {
            bad(
                "sim.initial_cash_usd",
                format!(
                    "{} is out of range: above 0 and at most {MAX_MONEY}",
                    s.initial_cash_usd
                ),
            );
        }
        check_symbols("sim.symbols", &s.symbols, &mut bad);
        check_symbols("trading.symbols", &self.trading.symbols, &mut bad);
        if self.connection.mode == ConnectionMode::Sim {
            let unknown: Vec<&str> = self
                .trading
                .symbols
                .iter()
                .filter(|t| !s.symbols.contains(t))
                .map(String::as_str)
                .collect();
            if !unknown.is_empty() {
                bad(
                    "trading.symbols",
                    format!(
                        "{} not listed by the simulator: add to sim.symbols or remove",
                        unknown.join(", ")
                    ),
                );
            }
        }
        let st = &self.strategy;
        if st.build().is_none() {
            bad(
                "strategy.name",
                format!(
                    "unknown strategy {:?}: use momentum or mean_reversion",
                    st.name
                ),
            );
        }
        if st.sizing_rule().is_none() {
            bad(
                "strategy.sizing",
                format!(
                    "unknown sizing {:?}: use fixed_notional, percent_of_equity or risk_per_trade",
                    st.sizing
                ),
            );
        }
        if st.protection_rule().is_none() {
            bad(
                "strategy.protection",
                format!(
                    "unknown protection {:?}: use bracket, trailing_stop or none",
                    st.protection
                ),
            );
        }
        if st.sizing == "risk_per_trade" && st.protection == "none" {
            bad(
                "strategy.sizing",
                "risk_per_trade sizes from the stop distance: choose protection bracket or trailing_stop".into(),
            );
        }
        for (path, v, max) in [
            (
                "strategy.sizing_usd",
                st.sizing_usd,
                Decimal::from(10_000_000),
            ),
            ("strategy.sizing_pct", st.sizing_pct, Decimal::ONE_HUNDRED),
            (
                "strategy.take_profit_pct",
                st.take_profit_pct,
                Decimal::from(50),
            ),
            (
                "strategy.stop_loss_pct",
                st.stop_loss_pct,
                Decimal::from(50),
            ),
            ("strategy.trail_pct", st.trail_pct, Decimal::from(50)),
        ] {
            if v <= Decimal::ZERO || v > max {
                bad(
                    path,
                    format!("{v} is out of range: use above 0 and at most {max}"),
                );
            }
        }
        let m = &st.momentum;
        if m.rsi_period < 2 || m.macd_fast < 1 || m.macd_signal < 1 || m.macd_fast >= m.macd_slow {
            bad(
                "strategy.momentum",
                "periods must be positive (rsi_period at least 2) and macd_fast below macd_slow"
                    .into(),
            );
        }
        if !(0.0..=100.0).contains(&m.rsi_entry_min)
            || !(0.0..=100.0).contains(&m.rsi_entry_max)
            || m.rsi_entry_min > m.rsi_entry_max
        {
            bad(
                "strategy.momentum",
                "rsi_entry_min and rsi_entry_max must be within 0..100, min at most max".into(),
            );
        }
        let mr = &st.mean_reversion;
        let mr_ok = mr.period >= 2
            && mr.band_std.is_finite()
            && mr.band_std > 0.0
            && mr.entry_z.is_finite()
            && mr.exit_z.is_finite();
        if !mr_ok {
            bad(
                "strategy.mean_reversion",
                "period must be at least 2 and band_std above 0".into(),
            );
        }
        let r = &self.risk;
        for (path, v, max) in [
            ("risk.max_qty_per_symbol", r.max_qty_per_symbol, MAX_MONEY),
            (
                "risk.max_notional_per_symbol_usd",
                r.max_notional_per_symbol_usd,
                MAX_MONEY,
            ),
            (
                "risk.max_gross_exposure_usd",
                r.max_gross_exposure_usd,
                MAX_MONEY,
            ),
            (
                "risk.price_band_pct",
                r.price_band_pct,
                Decimal::ONE_HUNDRED,
            ),
            (
                "risk.daily_loss_limit_usd",
                r.daily_loss_limit_usd,
                MAX_MONEY,
            ),
        ] {
            if v <= Decimal::ZERO {
                bad(path, format!("{v} must be above 0"));
            } else if v > max {
                bad(path, format!("{v} is out of range: at most {max}"));
            }
        }
        for (path, v) in [
            ("risk.max_positions", r.max_positions),
            ("risk.max_open_orders", r.max_open_orders),
            ("risk.max_orders_per_minute", r.max_orders_per_minute),
        ] {
            if v == 0 {
                bad(path, "must be at least 1".into());
            }
        }
        let o = &self.orders;
        for (path, v, min, max) in [
            ("orders.ack_timeout_ms", o.ack_timeout_ms, 100, 600_000),
            ("orders.poll_interval_ms", o.poll_interval_ms, 50, 600_000),
            (
                "orders.reconcile_interval_s",
                o.reconcile_interval_s,
                1,
                86_400,
            ),
            (
                "account.refresh_interval_ms",
                self.account.refresh_interval_ms,
                100,
                600_000,
            ),
            (
                "stream.ping_interval_ms",
                self.stream.ping_interval_ms,
                50,
                600_000,
            ),
            (
                "stream.pong_timeout_ms",
                self.stream.pong_timeout_ms,
                100,
                600_000,
            ),
            (
                "stream.stale_after_ms",
                self.stream.stale_after_ms,
                100,
                3_600_000,
            ),
            (
                "stream.reconnect_min_ms",
                self.stream.reconnect_min_ms,
                1,
                600_000,
            ),
            (
                "stream.reconnect_max_ms",
                self.stream.reconnect_max_ms,
                1,
                3_600_000,
            ),
        ] {
            if !(min..=max).contains(&v) {
                bad(path, format!("{v} is out of range: use {min} to {max}"));
            }
        }
        for (path, v, min, max) in [
            ("health.window_s", self.health.window_s, 1, 86_400),
            (
                "health.stream_down_limit_s",
                self.health.stream_down_limit_s,
                0,
                86_400,
            ),
            (
                "health.restart_window_s",
                self.health.restart_window_s,
                1,
                86_400,
            ),
            (
                "health.ping_interval_ms",
                self.health.ping_interval_ms,
                100,
                3_600_000,
            ),
            (
                "preservation.retry_min_ms",
                self.preservation.retry_min_ms,
                10,
                3_600_000,
            ),
            (
                "preservation.retry_max_ms",
                self.preservation.retry_max_ms,
                10,
                3_600_000,
            ),
            (
                "preservation.verify_timeout_ms",
                self.preservation.verify_timeout_ms,
                100,
                3_600_000,
            ),
            (
                "preservation.cooldown_s",
                self.preservation.cooldown_s,
                0,
                7 * 86_400,
            ),
            ("shutdown.timeout_s", self.shutdown.timeout_s, 1, 3_600),
            (
                "telemetry.metrics_interval_ms",
                self.telemetry.metrics_interval_ms,
                100,
                3_600_000,
            ),
        ] {
            if !(min..=max).contains(&v) {
                bad(path, format!("{v} is out of range: use {min} to {max}"));
            }
        }
        if !self.telemetry.otlp_endpoint.is_empty()
            && let Err(e) = check_url(&self.telemetry.otlp_endpoint, &["http", "https"])
        {
            bad("telemetry.otlp_endpoint", e);
        }
        if self.telemetry.service_name.trim().is_empty() {
            bad("telemetry.service_name", "must not be empty".into());
        }
        if self.preservation.retry_min_ms > self.preservation.retry_max_ms {
            bad(
                "preservation.retry_min_ms",
                "must not exceed preservation.retry_max_ms".into(),
            );
        }
        if self.stream.reconnect_min_ms > self.stream.reconnect_max_ms {
            bad(
                "stream.reconnect_min_ms",
                "must not exceed stream.reconnect_max_ms".into(),
            );
        }
        if self.stream.pong_timeout_ms <= self.stream.ping_interval_ms {
            bad(
                "stream.pong_timeout_ms",
                "must be longer than stream.ping_interval_ms".into(),
            );
        }
        if !["json", "msgpack"].contains(&self.stream.codec.as_str()) {
            bad(
                "stream.codec",
                format!("unknown codec {:?}: use json or msgpack", self.stream.codec),
            );
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            bad(
                "log.level",
                format!(
                    "{:?} is not a log filter: use error, warn, info, debug, trace or e.g. traderd=debug,info",
                    self.log.level
                ),
            );
        }
        out
    }

    pub fn mode_name(&self) -> &'static str {
        match self.connection.mode {
            ConnectionMode::Sim => "sim",
            ConnectionMode::Paper => "paper",
            ConnectionMode::Live => "live",
        }
    }

    /// REST client settings for a broker, with `APCA_API_BASE_URL` / `APCA_API_DATA_URL`
    /// overriding the configured URLs as Alpaca's SDKs do. `sim_url` is the embedded
    /// simulator's address in `sim` mode.
    pub fn client_settings(
        &self,
        sim_url: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> ClientSettings {
        let a = &self.alpaca;
        let (trading, data) = match (self.connection.mode, sim_url) {
            (ConnectionMode::Sim, Some(url)) => (url.to_string(), url.to_string()),
            (ConnectionMode::Live, _) => (a.live_trading_url.clone(), a.data_url.clone()),
            _ => (a.paper_trading_url.clone(), a.data_url.clone()),
        };
        ClientSettings {
            trading_url: env("APCA_API_BASE_URL")
                .filter(|v| !v.is_empty())
                .unwrap_or(trading),
            data_url: env("APCA_API_DATA_URL")
                .filter(|v| !v.is_empty())
                .unwrap_or(data),
            requests_per_minute: a.requests_per_minute,
            request_timeout: Duration::from_millis(a.request_timeout_ms),
            connect_timeout: Duration::from_millis(a.connect_timeout_ms),
            max_retries: a.max_retries as usize,
            retry_min_delay: Duration::from_millis(a.retry_min_delay_ms),
            retry_max_delay: Duration::from_millis(a.retry_max_delay_ms),
        }
    }
}

fn check_url(url: &str, schemes: &[&str]) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(u) if schemes.contains(&u.scheme()) && u.host().is_some() => Ok(()),
        Ok(u) => Err(format!(
            "{url:?} must be a {} URL with a host, got scheme {:?}",
            schemes.join(" or "),
            u.scheme()
        )),
        Err(e) => Err(format!("{url:?} is not a URL ({e})")),
    }
}

/// Alpaca's symbol syntax for US equities: an upper-case letter, then upper-case letters and
/// digits, with at most two share-class suffixes after a dot (`BRK.B`, `ABR.PR.D`); at most 16
/// characters. `.`, `..`, `A.`, `.A`, `a`, `A B` are not symbols.
pub fn is_symbol(s: &str) -> bool {
    let mut parts = s.split('.');
    let head_ok = parts.next().is_some_and(|head| {
        head.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            && head
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    });
    let rest: Vec<&str> = parts.collect();
    head_ok
        && s.len() <= 16
        && rest.len() <= 2
        && rest.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        })
}

/// The largest amount (dollars or shares) a config may name: a trillion. Far above any real
/// account, and small enough that every product the daemon and the simulator form with it
/// (an amount times a price from the wire, at most 10^14) stays inside `Decimal`'s range.
pub const MAX_MONEY: Decimal = Decimal::from_parts(0xd4a5_1000, 0xe8, 0, false, 0);

pub fn check_symbols(path: &str, symbols: &[String], bad: &mut impl FnMut(&str, String)) {
    if symbols.is_empty() {
        bad(path, "must list at least one symbol".into());
    }
    for s in symbols {
        if !is_symbol(s) {
            bad(
                path,
                format!("{s:?} is not a symbol: use upper-case tickers such as AAPL or BRK.B"),
            );
        }
    }
    let mut seen = std::collections::HashSet::new();
    for s in symbols {
        if !seen.insert(s) {
            bad(path, format!("{s} is listed twice"));
        }
    }
}

/// Walks the user's table against the schema (the defaults): unknown keys, tables where
/// values belong and the reverse, and each leaf value tried on its own.
fn check_keys(
    user: &toml::Table,
    schema: &toml::Table,
    prefix: &str,
    root: &toml::Table,
    out: &mut Vec<Problem>,
) {
    for (key, value) in user {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let Some(expected) = schema.get(key) else {
            let hint = closest(key, schema.keys())
                .map(|k| format!("; did you mean `{k}`?"))
                .unwrap_or_default();
            let known = schema
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            out.push(Problem {
                path,
                message: format!("unknown key{hint} (known here: {known})"),
            });
            continue;
        };
        match (expected, value) {
            (toml::Value::Table(s), toml::Value::Table(u)) => check_keys(u, s, &path, root, out),
            (toml::Value::Table(_), _) => out.push(Problem {
                path,
                message: format!("must be a table ([{key}]), not a {}", value.type_str()),
            }),
            (_, _) => {
                if let Err(message) = try_leaf(root, &path, value) {
                    out.push(Problem { path, message });
                }
            }
        }
    }
}

fn remove_path(table: &mut toml::Table, path: &str) {
    match path.split_once('.') {
        None => {
            table.remove(path);
        }
        Some((head, tail)) => {
            if let Some(toml::Value::Table(t)) = table.get_mut(head) {
                remove_path(t, tail);
            }
        }
    }
}

/// Puts one user value into the defaults and deserializes: does this value, alone, fit?
fn try_leaf(root: &toml::Table, path: &str, value: &toml::Value) -> Result<(), String> {
    let mut tree = root.clone();
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop().unwrap_or_default();
    let mut table = &mut tree;
    for p in parts {
        table = match table.get_mut(p) {
            Some(toml::Value::Table(t)) => t,
            _ => return Ok(()),
        };
    }
    table.insert(last.to_string(), value.clone());
    toml::Value::Table(tree)
        .try_into::<Config>()
        .map(|_| ())
        .map_err(|e| {
            let msg = e.message().trim().to_string();
            format!("{msg} (got {})", short(value))
        })
}

fn short(v: &toml::Value) -> String {
    let s = v.to_string();
    if s.len() > 40 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(40).map(|(i, _)| i).unwrap_or(s.len())]
        )
    } else {
        s
    }
}

/// The known key closest to a mistyped one, if it is close enough to be a typo.
fn closest<'a>(key: &str, known: impl Iterator<Item = &'a String>) -> Option<&'a String> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for j in 0..b.len() {
                let cur = row[j + 1];
                row[j + 1] = (prev + usize::from(ca != b[j]))
                    .min(row[j] + 1)
                    .min(cur + 1);
                prev = cur;
            }
        }
        row[b.len()]
    }
    known
        .map(|k| (distance(key, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// The state directory: `$STATE_DIRECTORY` when systemd sets it (the first of several), else
/// `--state-dir`, else `state.dir` from the config, else `$XDG_STATE_HOME/traderd`, else
/// `~/.local/state/traderd`.
pub fn resolve_state_dir(
    cli: Option<&Path>,
    configured: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<PathBuf, String> {
    if let Some(dir) = env("STATE_DIRECTORY").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir.split(':').next().unwrap_or(&dir)));
    }
    if let Some(dir) = cli {
        return Ok(dir.to_path_buf());
    }
    if !configured.is_empty() {
        return Ok(PathBuf::from(configured));
    }
    if let Some(xdg) = env("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(xdg).join("traderd"));
    }
    match env("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/state/traderd")),
        None => Err("no state directory: set --state-dir, state.dir, or run under systemd with StateDirectory=".into()),
    }
}

/// Names of the systemd credentials holding the keys.
pub const CREDENTIAL_KEY_ID: &str = "apca_api_key_id";
pub const CREDENTIAL_SECRET: &str = "apca_api_secret_key";

/// API keys from `APCA_API_KEY_ID` / `APCA_API_SECRET_KEY`, else from files in
/// `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`). `Ok(None)` when neither is set.
/// Errors name the variable or file, never the value.
pub fn load_credentials(
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Credentials>, String> {
    let key = env("APCA_API_KEY_ID").filter(|v| !v.trim().is_empty());
    let secret = env("APCA_API_SECRET_KEY").filter(|v| !v.trim().is_empty());
    match (key, secret) {
        (Some(k), Some(s)) => {
            return Ok(Some(Credentials {
                key_id: k.trim().to_string(),
                secret: Secret::new(s.trim()),
            }));
        }
        (Some(_), None) => {
            return Err("APCA_API_KEY_ID is set but APCA_API_SECRET_KEY is not".into());
        }
        (None, Some(_)) => {
            return Err("APCA_API_SECRET_KEY is set but APCA_API_KEY_ID is not".into());
        }
        (None, None) => {}
    }
    let Some(dir) = env("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    let dir = PathBuf::from(dir);
    let read = |name: &str| -> Result<Option<String>, String> {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(v) if v.trim().is_empty() => {
                Err(format!("credential file {} is empty", path.display()))
            }
            Ok(v) => Ok(Some(v.trim().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!(
                "cannot read credential file {}: {e}",
                path.display()
            )),
        }
    };
    match (read(CREDENTIAL_KEY_ID)?, read(CREDENTIAL_SECRET)?) {
        (Some(k), Some(s)) => Ok(Some(Credentials {
            key_id: k,
            secret: Secret::new(s),
        })),
        (None, None) => Ok(None),
        _ => Err(format!(
            "$CREDENTIALS_DIRECTORY must hold both {CREDENTIAL_KEY_ID} and {CREDENTIAL_SECRET}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "test.toml", &CheckContext::default())
    }

    #[test]
    fn amounts_have_sane_upper_bounds() {
        let e = parse("[sim]\ninitial_cash_usd = \"40000000000000000000000000000\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sim.initial_cash_usd") && e.contains("out of range"),
            "{e}"
        );
        let e = parse("[risk]\nmax_gross_exposure_usd = \"1e20\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("risk.max_gross_exposure_usd"), "{e}");
        assert!(parse("[sim]\ninitial_cash_usd = \"1000000000000\"\n").is_ok());
    }

    #[test]
    fn symbols_follow_alpacas_syntax() {
        for good in ["AAPL", "BRK.B", "ABR.PR.D", "SPY", "X", "QQQ3"] {
            assert!(is_symbol(good), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "...",
            "A.",
            ".A",
            "A..B",
            "a",
            "A B",
            "3M",
            "AAPL/",
            "A.B.C.D",
            "ABCDEFGHIJKLMNOPQ",
        ] {
            assert!(!is_symbol(bad), "{bad:?}");
        }
    }

    #[test]
    fn empty_file_is_the_sim_default() {
        let c = parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.connection.mode, ConnectionMode::Sim);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = r#"
            [connection]
            mode = "paper"
            [alpaca]
            requests_per_minit = 5
            request_timeout_ms = "fast"
            feed = "nasdaq"
            [sim]
            speed = 60.0
            sped = 3
            [tradin]
            symbols = ["AAPL"]
        "#;
        let err = parse(text).unwrap_err();
        let text = err.to_string();
        for needle in [
            "alpaca.requests_per_minit",
            "did you mean `requests_per_minute`",
            "alpaca.request_timeout_ms",
            "sim.sped: unknown key; did you mean",
            "tradin",
            "did you mean `trading`",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        // The semantic problem (paper without keys) is listed beside the structural ones.
        assert!(text.contains("connection.mode"), "{text}");
        assert!(text.contains("alpaca.feed"), "{text}");
        assert_eq!(err.problems.len(), 6, "{text}");
    }

    #[test]
    fn semantic_problems_are_all_listed() {
        let text = r#"
            [connection]
            mode = "live"
            [alpaca]
            feed = "nasdaq"
            data_url = "ftp://x"
            [sim]
            speed = -1.0
            [trading]
            symbols = ["AAPL", "aapl", "AAPL"]
        "#;
        let err = parse(text).unwrap_err();
        let paths: Vec<&str> = err.problems.iter().map(|p| p.path.as_str()).collect();
        for p in [
            "connection.mode",
            "alpaca.feed",
            "alpaca.data_url",
            "sim.speed",
            "trading.symbols",
        ] {
            assert!(paths.contains(&p), "{p} missing: {err}");
        }
        assert!(err.to_string().contains("--live"), "{err}");
        assert!(err.to_string().contains("APCA_API_KEY_ID"), "{err}");
    }

    #[test]
    fn live_with_keys_and_opt_in_is_accepted() {
        let ctx = CheckContext {
            live_opt_in: true,
            have_keys: true,
        };
        let c = Config::parse("[connection]\nmode = \"live\"\n", "t", &ctx).unwrap();
        assert_eq!(c.connection.mode, ConnectionMode::Live);
        let settings = c.client_settings(None, |_| None);
        assert_eq!(settings.trading_url, "https://api.alpaca.markets");
    }

    #[test]
    fn syntax_errors_say_where() {
        let err = parse("[sim\nspeed = 1").unwrap_err();
        assert!(err.to_string().contains("not valid TOML"), "{err}");
    }

    #[test]
    fn env_urls_override_the_config() {
        let c = Config::default();
        let env = |k: &str| match k {
            "APCA_API_BASE_URL" => Some("http://127.0.0.1:9".to_string()),
            "APCA_API_DATA_URL" => Some("http://127.0.0.1:8".to_string()),
            _ => None,
        };
        let s = c.client_settings(Some("http://127.0.0.1:7"), env);
        assert_eq!(
            (s.trading_url.as_str(), s.data_url.as_str()),
            ("http://127.0.0.1:9", "http://127.0.0.1:8")
        );
    }

    #[test]
    fn credentials_from_env_or_directory_and_never_printed() {
        let env = |k: &str| match k {
            "APCA_API_KEY_ID" => Some("PKX".to_string()),
            "APCA_API_SECRET_KEY" => Some("s3cr3t-value".to_string()),
            _ => None,
        };
        let c = load_credentials(env).unwrap().unwrap();
        assert!(!format!("{c:?}").contains("s3cr3t-value"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CREDENTIAL_KEY_ID), "PKDIR\n").unwrap();
        std::fs::write(dir.path().join(CREDENTIAL_SECRET), "dir-secret\n").unwrap();
        let d = dir.path().to_string_lossy().to_string();
        let c = load_credentials(|k| (k == "CREDENTIALS_DIRECTORY").then(|| d.clone()))
            .unwrap()
            .unwrap();
        assert_eq!(c.key_id, "PKDIR");
        assert_eq!(c.secret.expose(), "dir-secret");
        let half = load_credentials(|k| (k == "APCA_API_KEY_ID").then(|| "x".to_string()));
        assert!(half.unwrap_err().contains("APCA_API_SECRET_KEY"));
    }

    #[test]
    fn shipped_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let ctx = CheckContext {
            live_opt_in: true,
            have_keys: true,
        };
        for name in ["traderd.toml", "paper.example.toml", "live.example.toml"] {
            Config::load(&dir.join(name), &ctx).unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(
            Config::load(&dir.join("traderd.toml"), &ctx).unwrap(),
            Config::default()
        );
    }
}

#[cfg(test)]
mod doc_tests {
    use super::*;

    fn leaf_paths(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
        for (k, v) in table {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(t) => leaf_paths(t, &path, out),
                _ => out.push(path),
            }
        }
    }

    #[test]
    fn configuration_doc_lists_every_key() {
        let doc = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md"),
        )
        .unwrap();
        let mut keys = Vec::new();
        leaf_paths(
            &toml::Table::try_from(Config::default()).unwrap(),
            "",
            &mut keys,
        );
        for key in &keys {
            assert!(
                doc.contains(&format!("| `{key}` |")),
                "docs/configuration.md does not describe `{key}`"
            );
        }
        let documented = doc
            .lines()
            .filter_map(|l| l.strip_prefix("| `")?.split_once("` |").map(|(key, _)| key))
            .filter(|key| key.contains('.') && !key.chars().any(|c| c.is_ascii_uppercase()))
            .count();
        assert_eq!(
            documented,
            keys.len(),
            "docs/configuration.md describes keys the code does not have"
        );
    }
}
