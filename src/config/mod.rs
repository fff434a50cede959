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

mod check;
mod env;
mod schema;
mod sections;
mod strategy;

pub use check::{MAX_MONEY, check_symbols, is_symbol};
pub use env::{CREDENTIAL_KEY_ID, CREDENTIAL_SECRET, load_credentials, resolve_state_dir};
use schema::{check_keys, remove_path};
pub use sections::*;
pub use strategy::StrategySection;

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
    /// Several strategies at once, each on its own symbols; empty: the one `[strategy]`.
    pub strategies: Vec<StrategySection>,
    pub risk: RiskSection,
    pub orders: OrdersSection,
    pub account: AccountSection,
    pub stream: StreamSection,
    pub health: HealthSection,
    pub preservation: PreservationSection,
    pub shutdown: ShutdownSection,
    pub control: ControlSection,
    pub telemetry: TelemetrySection,
    pub notify: NotifySection,
    pub metrics: MetricsSection,
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
    /// Every strategy to run, each with its symbols: the `[[strategies]]`, or the one
    /// `[strategy]` on every symbol of `trading.symbols`.
    pub fn strategy_list(&self) -> Vec<StrategySection> {
        if !self.strategies.is_empty() {
            return self.strategies.clone();
        }
        let mut one = self.strategy.clone();
        one.symbols = self.trading.symbols.clone();
        vec![one]
    }

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

#[cfg(test)]
mod doc_tests;
#[cfg(test)]
mod tests;
