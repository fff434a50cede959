//! The config's sections and their defaults: every key, with the value an empty file gets.

use super::*;

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

/// The opt-in HTTP endpoints: `/metrics` (Prometheus), `/healthz`, `/readyz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSection {
    /// Where to serve them (`127.0.0.1:9464`); empty: not served.
    pub listen: String,
}

/// Webhooks told of mode changes, fills and health crossings (`[[notify.webhooks]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifySection {
    pub webhooks: Vec<Webhook>,
    /// How long one POST may take.
    pub timeout_ms: u64,
    /// Retries of a failed POST (with exponential backoff from 500 ms), then it is dropped.
    pub max_retries: usize,
    /// Notices waiting per webhook at most; past it the newest are dropped and counted (a
    /// slow receiver never holds up trading nor memory).
    pub queue: usize,
    /// Names this daemon in every notice; empty: `TRADERD_INSTANCE`, else the host name.
    pub instance: String,
}

impl Default for NotifySection {
    fn default() -> Self {
        NotifySection {
            webhooks: Vec::new(),
            timeout_ms: 5_000,
            max_retries: 5,
            queue: 100,
            instance: String::new(),
        }
    }
}

/// One webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// Where to POST (http or https). A Slack or Discord URL is a secret: it is never logged.
    pub url: String,
    /// `json` (generic), `slack` or `discord`.
    #[serde(default)]
    pub format: crate::notify::Format,
    /// What it hears: `mode`, `fill`, `health` (default: all three).
    #[serde(default = "all_notices")]
    pub events: Vec<crate::notify::NoticeKind>,
}

fn all_notices() -> Vec<crate::notify::NoticeKind> {
    use crate::notify::NoticeKind::*;
    vec![Mode, Fill, Health]
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
    pub feed: Feed,
    /// How warm-up bars are adjusted for corporate actions: `split` (default: indicators see
    /// one price scale across a split), `raw`, `dividend` or `all`.
    pub adjustment: Adjustment,
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
            feed: Feed::Iex,
            adjustment: Adjustment::Split,
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
    pub clock: ClockChoice,
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
            clock: ClockChoice::Sim,
            symbols: crate::domain::listings::DEFAULT_SYMBOLS
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
    pub codec: CodecChoice,
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
            codec: CodecChoice::Json,
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

/// The market-data feed: `iex` (the free plan), `sip` (paid), `delayed_sip`, `test`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Feed {
    #[default]
    Iex,
    Sip,
    DelayedSip,
    Test,
}

impl Feed {
    /// As in the stream's URL (`…/v2/iex`).
    pub fn as_str(self) -> &'static str {
        match self {
            Feed::Iex => "iex",
            Feed::Sip => "sip",
            Feed::DelayedSip => "delayed_sip",
            Feed::Test => "test",
        }
    }
}

/// How bars are adjusted for corporate actions: `raw`, `split`, `dividend`, `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Adjustment {
    Raw,
    #[default]
    Split,
    Dividend,
    All,
}

impl Adjustment {
    /// As Alpaca's `adjustment` parameter takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Adjustment::Raw => "raw",
            Adjustment::Split => "split",
            Adjustment::Dividend => "dividend",
            Adjustment::All => "all",
        }
    }
}

/// The embedded simulator's clock: `sim` (always open, accelerated) or `wall` (real time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClockChoice {
    #[default]
    Sim,
    Wall,
}

/// The market-data stream's codec: `json` or `msgpack`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CodecChoice {
    #[default]
    Json,
    Msgpack,
}

/// How an entry is sized: `fixed_notional` (sizing_usd per entry), `percent_of_equity`
/// (sizing_pct of equity) or `risk_per_trade` (lose at most sizing_pct of equity at the stop).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SizingChoice {
    #[default]
    FixedNotional,
    PercentOfEquity,
    RiskPerTrade,
}

/// The protection attached to entries: `bracket` (take-profit and stop-loss legs),
/// `trailing_stop` or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ProtectionChoice {
    #[default]
    Bracket,
    TrailingStop,
    None,
}
