//! The `[strategy]` section (and each `[[strategies]]` entry): which strategy, its interval,
//! sizing, protection and parameters; building it.

use super::*;
use crate::strategy::{PairsParams, RebalanceParams};

/// The strategy, its sizing and the protection attached to entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StrategySection {
    /// `momentum` (RSI + MACD), `mean_reversion` (Bollinger z-score), `pairs` (the z-score of
    /// two symbols' spread, both legs at once), `rebalance` (target weights on a schedule),
    /// `probe` (the load
    /// bench's latency probe: orders on marked trades; not for trading), or the name of a
    /// strategy registered by the binary (`strategy::register`, docs/strategies.md).
    pub name: String,
    /// In `[[strategies]]`: what it runs (the kinds `name` takes in `[strategy]`); `name`
    /// is then its own label.
    pub kind: String,
    /// In `[[strategies]]`: the symbols it trades (each symbol belongs to one strategy).
    pub symbols: Vec<String>,
    /// In `[[strategies]]`: the most it may hold, gross, in US dollars (0: no cap of its own;
    /// the account-wide limits of `[risk]` hold for all).
    #[serde(with = "flex")]
    pub allocation_usd: Decimal,
    /// In `[[strategies]]`: the most it may hold, gross, as a percent of equity (0: none of its
    /// own). With `allocation_usd` too, the tighter holds.
    #[serde(with = "flex")]
    pub allocation_pct: Decimal,
    /// The bar interval it trades on: 1m, 5m, 15m, 1h or 1d.
    pub interval: Interval,
    /// `fixed_notional` (sizing_usd per entry), `percent_of_equity` (sizing_pct of equity) or
    /// `risk_per_trade` (lose at most sizing_pct of equity at the stop).
    pub sizing: SizingChoice,
    #[serde(with = "flex")]
    pub sizing_usd: Decimal,
    #[serde(with = "flex")]
    pub sizing_pct: Decimal,
    /// `bracket` (take-profit and stop-loss legs), `trailing_stop` or `none`.
    pub protection: ProtectionChoice,
    #[serde(with = "flex")]
    pub take_profit_pct: Decimal,
    #[serde(with = "flex")]
    pub stop_loss_pct: Decimal,
    #[serde(with = "flex")]
    pub trail_pct: Decimal,
    pub momentum: MomentumParams,
    pub mean_reversion: MeanReversionParams,
    pub probe: ProbeParams,
    /// `pairs`: the two legs, the rolling window, the z-scores to enter and leave.
    pub pairs: PairsParams,
    /// `rebalance`: target weights (fixed, equal, inverse volatility), schedule, drift band.
    pub rebalance: RebalanceParams,
    /// The parameters of a registered strategy (its own keys, typed by it).
    pub params: toml::Table,
}

impl Default for StrategySection {
    fn default() -> Self {
        StrategySection {
            name: "momentum".into(),
            kind: String::new(),
            symbols: Vec::new(),
            allocation_usd: Decimal::ZERO,
            allocation_pct: Decimal::ZERO,
            interval: Interval::M1,
            sizing: SizingChoice::FixedNotional,
            sizing_usd: Decimal::from(5_000),
            sizing_pct: Decimal::from(2),
            protection: ProtectionChoice::Bracket,
            take_profit_pct: Decimal::from(2),
            stop_loss_pct: Decimal::ONE,
            trail_pct: Decimal::ONE,
            momentum: MomentumParams::default(),
            mean_reversion: MeanReversionParams::default(),
            probe: ProbeParams::default(),
            pairs: PairsParams::default(),
            rebalance: RebalanceParams::default(),
            params: toml::Table::new(),
        }
    }
}

impl StrategySection {
    /// What it runs: `kind` in `[[strategies]]`, `name` in `[strategy]`.
    pub fn kind(&self) -> &str {
        if self.kind.is_empty() {
            &self.name
        } else {
            &self.kind
        }
    }

    /// The sizing rule; `None` for an unknown name (reported by [`Config::check`]).
    pub fn sizing_rule(&self) -> Sizing {
        match self.sizing {
            SizingChoice::FixedNotional => Sizing::FixedNotional {
                usd: self.sizing_usd,
            },
            SizingChoice::PercentOfEquity => Sizing::PercentOfEquity {
                pct: self.sizing_pct,
            },
            SizingChoice::RiskPerTrade => Sizing::RiskPerTrade {
                pct: self.sizing_pct,
            },
        }
    }

    /// The protection rule.
    pub fn protection_rule(&self) -> Protection {
        match self.protection {
            ProtectionChoice::Bracket => Protection::Bracket {
                take_profit_pct: self.take_profit_pct,
                stop_loss_pct: self.stop_loss_pct,
            },
            ProtectionChoice::TrailingStop => Protection::TrailingStop {
                trail_pct: self.trail_pct,
            },
            ProtectionChoice::None => Protection::None,
        }
    }

    /// The configured strategy: a built-in, or one registered by name
    /// (`strategy::register`) built from `[strategy.params]`. `Err` says what is wrong: an
    /// unknown name (and the names there are), or the registered strategy's refusal of its
    /// parameters.
    pub fn build(&self) -> Result<Box<dyn Strategy>, String> {
        match self.kind() {
            "momentum" => Ok(Box::new(Momentum::new(
                self.momentum.clone(),
                self.interval,
            ))),
            "mean_reversion" => Ok(Box::new(MeanReversion::new(
                self.mean_reversion.clone(),
                self.interval,
            ))),
            "probe" => Ok(Box::new(Probe::new(self.probe.clone(), self.interval))),
            "pairs" => Ok(Box::new(crate::strategy::Pairs::new(
                self.pairs.clone(),
                self.interval,
            ))),
            "rebalance" => Ok(Box::new(crate::strategy::Rebalance::new(
                self.rebalance.clone(),
                self.interval,
            ))),
            name => match crate::strategy::registry::lookup(name) {
                Some(factory) => factory(&self.params, self.interval),
                None => Err(format!(
                    "unknown strategy {name:?}: use one of {} (or register yours: docs/strategies.md)",
                    crate::strategy::registry::names().join(", ")
                )),
            },
        }
    }
}
