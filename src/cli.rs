//! The command line: `traderd run`, `sim`, `check-config`, `audit`, `ctl`, `data`, the tools.
//! Parsing only; `main.rs` runs them.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "traderd",
    version,
    about = "An autonomous trading daemon for Alpaca, with an Alpaca-compatible simulator",
    long_about = "traderd trades an Alpaca account on its own: it streams market data, runs a strategy, checks \
every order against risk limits, and switches to capital preservation when errors pile up.\n\n\
Start with the embedded simulator, which needs no keys:\n    traderd run\n\n\
Configuration: config/traderd.toml (sim by default); check a file with `traderd check-config`."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the trading daemon. With the default config it trades on an embedded simulator
    /// (no keys, no money) at 60x speed; `paper` and `live` trade an Alpaca account.
    Run(RunArgs),
    /// Serve the Alpaca-compatible simulator (trading API, market data, admin API) on one port.
    Sim(SimArgs),
    /// Check a config file; print every problem and exit non-zero if there is one.
    CheckConfig(CheckConfigArgs),
    /// Work with the journal's hash-chained audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Run the daemon on the embedded simulator with random faults for a while, then print the
    /// figures that say whether capital preservation held (exit 1 if one that must be 0 is not).
    Soak(SoakArgs),
    /// The load bench: the release daemon against the simulator's flood, each in its own
    /// process; one JSON line per run (ingest rate, drops, tick-to-order latency, peak RSS, CPU
    /// per million messages, decode baseline). See docs/performance.md.
    BenchLoad(BenchLoadArgs),
    /// Talk to a running daemon over its control socket (status, pause, resume, flatten, halt…).
    Ctl(CtlArgs),
    /// The local history store the research loop reads: sync bars from the broker, import a
    /// CSV, list what is stored.
    #[command(subcommand)]
    Data(DataCommand),
    /// Backtest a config over the stored minute bars (`traderd data sync` first), through the
    /// same strategy, sizing, protection and risk code as `traderd run`, with the simulator's
    /// matching engine as the fill model. Writes summary.json, equity.csv, trades.csv,
    /// orders.csv and report.html to --out (sweep.csv with --sweep, walk_forward.csv with
    /// --walk-forward). See docs/backtesting.md.
    Backtest(BacktestArgs),
    /// The backtest's report for a paper or live run, from its journal: equity, cash and
    /// exposure (journaled once a minute and at each fill), round trips from the fills, the
    /// orders. Writes summary.json, equity.csv, trades.csv, orders.csv and report.html to --out.
    Report(ReportArgs),
    /// Work with parameter sweeps run in slices on several machines.
    #[command(subcommand)]
    Sweep(SweepCommand),
}

#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// The config whose strategy, sizing, protection, risk limits and trading.symbols to test
    /// (default: the built-in defaults).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// First day (YYYY-MM-DD, or an RFC 3339 time).
    #[arg(long)]
    pub start: String,
    /// Last day, included (YYYY-MM-DD, or an RFC 3339 time).
    #[arg(long)]
    pub end: String,
    /// Where the outputs go (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Starting cash, in US dollars.
    #[arg(long, default_value = "100000")]
    pub cash: String,
    /// Half the spread each side of a bar's price, in basis points: buys pay it, sells give it up.
    #[arg(long, default_value = "0")]
    pub slippage_bps: String,
    /// Fees on each fill's notional, in basis points (Alpaca's stocks are commission-free).
    #[arg(long, default_value = "0")]
    pub fee_bps: String,
    /// Bars of the strategy's interval before --start that prime its indicators without
    /// trading, as the daemon's warm-up does at start (stored bars permitting).
    #[arg(long, default_value_t = 200)]
    pub warmup_bars: usize,
    /// A parameter sweep: KEY=V1,V2,… of the config (e.g. strategy.momentum.rsi_period=10,14,20);
    /// repeat it, and the grid is the product. Every combination runs in parallel on all cores;
    /// --out gets sweep.csv, one row per combination ranked by --rank.
    #[arg(long)]
    pub sweep: Vec<String>,
    /// The figure a sweep is ranked by, best first: sharpe, sortino, total_return, cagr,
    /// calmar, max_drawdown, profit_factor.
    #[arg(long, default_value = "sharpe")]
    pub rank: String,
    /// Run only a slice of the sweep's grid: the combinations whose index is I modulo N (I from
    /// 0), for one machine of many; join the slices' sweep.csv with `traderd sweep merge`.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Walk-forward with a sweep: sweep the grid on each training span, run its best
    /// combination on the test span after it, roll on by the test span. Writes
    /// walk_forward.csv with in-sample and out-of-sample figures apart. E.g. train=120d,test=30d.
    #[arg(long, value_name = "train=Nd,test=Nd", requires = "sweep")]
    pub walk_forward: Option<String>,
    #[command(flatten)]
    pub dir: DataDirArg,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The daemon's state directory ([state] dir): the journal in it, or, for runs on the
    /// embedded simulator, the newest sim-* journal in it.
    #[arg(long)]
    pub state_dir: PathBuf,
    /// Where the outputs go (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// First day (YYYY-MM-DD, or an RFC 3339 time); default: the first sample.
    #[arg(long)]
    pub start: Option<String>,
    /// Last day, included (YYYY-MM-DD, or an RFC 3339 time); default: the last sample.
    #[arg(long)]
    pub end: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SweepCommand {
    /// Join the sweep.csv files of a sharded sweep (`traderd backtest --sweep … --shard I/N`)
    /// into one, ranked again.
    Merge(SweepMergeArgs),
}

#[derive(Debug, Args)]
pub struct SweepMergeArgs {
    /// The shards' sweep.csv files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The merged file.
    #[arg(long)]
    pub out: PathBuf,
    /// The figure to rank by (as in `backtest --rank`).
    #[arg(long, default_value = "sharpe")]
    pub rank: String,
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Pull bars from the broker's data API into the store (only what is missing), page by
    /// page, symbols together, within the rate limit. Against the simulator: set
    /// APCA_API_DATA_URL to `traderd sim`'s address (no keys needed there).
    Sync(DataSyncArgs),
    /// Import bars from a CSV file (header timestamp,open,high,low,close,volume; RFC 3339 or
    /// epoch timestamps). A bad line is named and nothing is written.
    Import(DataImportArgs),
    /// What is stored: symbol, timeframe, adjustment, first, last, count, gaps (bars the
    /// market calendar expects that are not stored).
    Ls(DataLsArgs),
}

#[derive(Debug, Args)]
pub struct DataDirArg {
    /// The history store's directory (default: $TRADERD_DATA_DIR, $XDG_DATA_HOME/traderd,
    /// ~/.local/share/traderd).
    #[arg(long, env = "TRADERD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DataSyncArgs {
    /// Symbols, comma-separated (AAPL,MSFT).
    #[arg(long, value_delimiter = ',', required = true)]
    pub symbols: Vec<String>,
    /// Bar timeframe: 1Min … 59Min, 1Hour … 23Hour, 1Day, 1Week, 1Month.
    #[arg(long, default_value = "1Min")]
    pub timeframe: String,
    /// First day (YYYY-MM-DD, or an RFC 3339 time).
    #[arg(long)]
    pub start: String,
    /// Last day, included (default: today).
    #[arg(long)]
    pub end: Option<String>,
    /// Price adjustment of the bars.
    #[arg(long, default_value = "split", value_parser = ["raw", "split", "dividend", "all"])]
    pub adjustment: String,
    /// Data feed (iex, sip); default: the plan's.
    #[arg(long)]
    pub feed: Option<String>,
    #[command(flatten)]
    pub dir: DataDirArg,
}

#[derive(Debug, Args)]
pub struct DataImportArgs {
    /// The CSV file.
    #[arg(long)]
    pub csv: PathBuf,
    /// The symbol its bars are of.
    #[arg(long)]
    pub symbol: String,
    /// Their timeframe (1Min, 1Day, …).
    #[arg(long)]
    pub timeframe: String,
    #[command(flatten)]
    pub dir: DataDirArg,
}

#[derive(Debug, Args)]
pub struct DataLsArgs {
    /// Print JSON, for scripts.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub dir: DataDirArg,
}

#[derive(Debug, Args)]
#[command(after_help = "Commands:
  status      mode, streams, positions, open orders, equity
  health      the health monitor's view: sources, windows, streams, pings
  positions   positions as the order side books them
  orders      order counters and what is open
  stats       market-data counters (stream, feed) and tick-to-order latency
  pause       active -> reduce_only: only orders that shrink a position
  resume      reduce_only, preserved or halted -> active
  flatten     capital preservation now: cancel every order, close every position
  halt        the kill switch: nothing is sent at all
  events      follow mode changes, orders, fills and health changes live (Ctrl-C stops)
  subscribe SYM...    trade these symbols too (bars warmed up from REST first)
  unsubscribe SYM...  stop trading them (refused while one holds a position)
  reload      re-read the config file: risk limits and symbols (SIGHUP does the same)
  shutdown    stop the daemon (its configured shutdown sequence)

Exit status: 0 done, 1 the daemon refused (the message says why), 3 no daemon on the socket.")]
pub struct CtlArgs {
    /// The command (see below).
    pub command: String,
    /// Arguments of the command.
    pub args: Vec<String>,
    /// The daemon's socket (default: $RUNTIME_DIRECTORY/traderd.sock, $XDG_RUNTIME_DIR/traderd.sock,
    /// else traderd.sock in the state directory).
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// The daemon's state directory, to find its socket.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// The daemon's config file, to find its socket.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print the answer as JSON, for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SoakProfile {
    /// Random faults from the simulator; capital preservation must hold.
    Faults,
    /// No faults: a busy strategy on ten symbols under the 200/min rate limit; no mode change,
    /// no mismatch, no ERROR line, positions agree, memory flat.
    Busy,
}

#[derive(Debug, Args)]
pub struct SoakArgs {
    /// What to run: `faults` (random faults, capital preservation must hold) or `busy`
    /// (ordinary trading under the rate limit, nothing may go wrong).
    #[arg(long, value_enum, default_value = "faults")]
    pub profile: SoakProfile,
    /// How long to run, in minutes.
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// Seed of the fault schedule and the market.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Simulator speed (market seconds per wall second).
    #[arg(long, default_value_t = 20.0)]
    pub speed: f64,
    /// Where the journal goes (default: a new directory under the system's temp dir).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Log filter for the daemon's own log lines (the soak prints its progress regardless).
    #[arg(long, default_value = "error")]
    pub log_level: String,
}

#[derive(Debug, Args)]
pub struct BenchLoadArgs {
    /// Symbol counts to run, comma-separated (every symbol subscribed on trades, quotes, bars).
    #[arg(long, value_delimiter = ',', default_values_t = [1000])]
    pub symbols: Vec<usize>,
    /// Codecs to run, comma-separated: json, msgpack.
    #[arg(long, value_delimiter = ',', default_values_t = ["json".to_string(), "msgpack".to_string()])]
    pub codec: Vec<String>,
    /// Messages per flood frame.
    #[arg(long, default_value_t = 100)]
    pub batch: u32,
    /// Seconds of the flat-out flood the ingest rate is measured over.
    #[arg(long, default_value_t = 10.0)]
    pub ingest_seconds: f64,
    /// Seconds of the paced flood with marked trades (tick-to-order latency).
    #[arg(long, default_value_t = 20.0)]
    pub latency_seconds: f64,
    /// Messages a second of the flood while latency is measured.
    #[arg(long, default_value_t = 100_000)]
    pub latency_rate: u32,
    /// A marked trade (a probe order) every this many milliseconds.
    #[arg(long, default_value_t = 10)]
    pub mark_every_ms: u32,
    /// Seconds of the decode baseline (the flood's frames decoded in a tight loop).
    #[arg(long, default_value_t = 3.0)]
    pub decode_seconds: f64,
    /// The daemon's journal durability (`state.sync`): full (the default) or normal.
    #[arg(long, default_value = "full", value_parser = ["full", "normal"])]
    pub journal_sync: String,
    /// Where the configs, journals and daemon logs go (default: a new temp directory).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every record of the audit chain; name the first broken one and exit 1 if any is.
    Verify(StateArgs),
}

#[derive(Debug, Args)]
pub struct StateArgs {
    /// The state directory holding traderd.sqlite (default: $STATE_DIRECTORY, state.dir from the
    /// config, $XDG_STATE_HOME/traderd, ~/.local/state/traderd).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// The config file whose state.dir to use.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Address to listen on; port 0 picks a free port (printed on the first line of stdout).
    #[arg(long, default_value = "127.0.0.1:5454")]
    pub listen: SocketAddr,
    /// Seed of the market model and the account: the same seed gives the same run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Symbols to list, comma-separated (default: AAPL,MSFT,AMZN,GOOGL,NVDA,META,TSLA,AMD,SPY,QQQ).
    #[arg(long, value_delimiter = ',')]
    pub symbols: Vec<String>,
    /// Market seconds per wall second in the sim clock (60: a minute of market each second).
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// `sim`: start at the latest session open and skip closed hours (always open);
    /// `wall`: real time and the real exchange calendar.
    #[arg(long, default_value = "sim", value_parser = ["sim", "wall"])]
    pub clock: String,
    /// Accept only this API key id (with --secret); without both, any non-empty pair is accepted.
    #[arg(long, requires = "secret", env = "TRADERD_SIM_KEY")]
    pub key: Option<String>,
    /// The API secret that goes with --key.
    #[arg(
        long,
        requires = "key",
        env = "TRADERD_SIM_SECRET",
        hide_env_values = true
    )]
    pub secret: Option<String>,
    /// Requests per minute per key before 429, as Alpaca enforces; 0 disables the limit.
    #[arg(long, default_value_t = 200)]
    pub rate_limit: u32,
    /// Length of the rate-limit window in seconds (Alpaca's is 60).
    #[arg(long, default_value_t = 60)]
    pub rate_window_s: u64,
    /// Starting cash of the account, in US dollars.
    #[arg(long, default_value = "100000")]
    pub cash_usd: String,
    /// Sessions of minute-bar history behind the start (daily bars go back a year).
    #[arg(long, default_value_t = 5)]
    pub history_sessions: i64,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The config file (default: $CONFIGURATION_DIRECTORY/traderd.toml, ./config/traderd.toml,
    /// /etc/traderd/traderd.toml, the first that exists; none found: the built-in defaults).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where the journal lives (default: $STATE_DIRECTORY, state.dir from the config,
    /// $XDG_STATE_HOME/traderd, ~/.local/state/traderd).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Confirm that a `live` config is meant to trade real money.
    #[arg(long)]
    pub live: bool,
}

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// The file to check (default: $CONFIGURATION_DIRECTORY/traderd.toml, ./config/traderd.toml,
    /// /etc/traderd/traderd.toml, the first that exists).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Confirm that a `live` config is meant to trade real money.
    #[arg(long)]
    pub live: bool,
}

/// The config file to use when none is given.
pub fn default_config_path(env: impl Fn(&str) -> Option<String>) -> Result<PathBuf, String> {
    let mut candidates = Vec::new();
    if let Some(dir) = env("CONFIGURATION_DIRECTORY").filter(|d| !d.is_empty()) {
        candidates.push(PathBuf::from(dir).join("traderd.toml"));
    }
    candidates.push(PathBuf::from("config/traderd.toml"));
    candidates.push(PathBuf::from("/etc/traderd/traderd.toml"));
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
            format!(
                "no config file found (looked in {}); pass --config FILE",
                looked.join(", ")
            )
        })
}
