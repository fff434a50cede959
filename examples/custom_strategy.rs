//! A strategy of your own, without forking traderd: a channel breakout, registered under the
//! name `breakout`, in a binary that is the whole of `traderd` plus it.
//!
//! ```sh
//! cargo build --release --example custom_strategy
//! target/release/examples/custom_strategy check-config --config my.toml
//! target/release/examples/custom_strategy backtest --config my.toml --start 2026-11-01 --end 2026-11-30 --out out/
//! target/release/examples/custom_strategy run --config my.toml
//! ```
//!
//! with, in `my.toml`:
//!
//! ```toml
//! [strategy]
//! name = "breakout"
//! interval = "5m"
//! [strategy.params]
//! entry_lookback = 20   # enter long when a bar closes above the highest high of the last 20
//! exit_lookback = 10    # leave when one closes below the lowest low of the last 10
//! ```
//!
//! Sizing, protection and the risk limits come from the config as for any strategy; the
//! strategy only says what it wants (docs/strategies.md).

use rust_decimal::Decimal;
use std::collections::{HashMap, VecDeque};
use std::process::ExitCode;
use traderd::alpaca::model::OrderSide;
use traderd::domain::Interval;
use traderd::strategy::{BarInput, Signal, Strategy};

/// The breakout's parameters, from `[strategy.params]`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakoutParams {
    /// Bars whose highest high a close must pass to enter.
    pub entry_lookback: usize,
    /// Bars whose lowest low a close must fall under to leave.
    pub exit_lookback: usize,
}

impl Default for BreakoutParams {
    fn default() -> Self {
        BreakoutParams {
            entry_lookback: 20,
            exit_lookback: 10,
        }
    }
}

/// Long on a close above the channel, out on a close below the shorter one.
pub struct Breakout {
    params: BreakoutParams,
    interval: Interval,
    /// Each symbol's last bars' (high, low), newest last.
    recent: HashMap<String, VecDeque<(Decimal, Decimal)>>,
}

impl Breakout {
    /// The factory registered under `breakout`: checks the parameters.
    pub fn build(params: &toml::Table, interval: Interval) -> Result<Box<dyn Strategy>, String> {
        let params: BreakoutParams = traderd::strategy::params(params)?;
        if params.entry_lookback < 2 || params.exit_lookback < 2 {
            return Err(format!(
                "strategy.params: entry_lookback ({}) and exit_lookback ({}) must be at least 2",
                params.entry_lookback, params.exit_lookback
            ));
        }
        Ok(Box::new(Breakout {
            params,
            interval,
            recent: HashMap::new(),
        }))
    }
}

impl Strategy for Breakout {
    fn name(&self) -> &str {
        "breakout"
    }

    fn interval(&self) -> Interval {
        self.interval
    }

    fn on_bar(&mut self, input: &BarInput<'_>) -> Signal {
        let keep = self.params.entry_lookback.max(self.params.exit_lookback);
        let recent = self.recent.entry(input.symbol.to_string()).or_default();
        let last = |n: usize| recent.iter().rev().take(n);
        let close = input.bar.close;
        let signal = if input.position.is_zero() && recent.len() >= self.params.entry_lookback {
            match last(self.params.entry_lookback).map(|(h, _)| *h).max() {
                Some(high) if close > high => Signal::Enter {
                    side: OrderSide::Buy,
                    reason: format!(
                        "close {close} above the {}-bar high {high}",
                        self.params.entry_lookback
                    ),
                },
                _ => Signal::Hold,
            }
        } else if input.position > Decimal::ZERO && recent.len() >= self.params.exit_lookback {
            match last(self.params.exit_lookback).map(|(_, l)| *l).min() {
                Some(low) if close < low => Signal::Exit {
                    reason: format!(
                        "close {close} below the {}-bar low {low}",
                        self.params.exit_lookback
                    ),
                },
                _ => Signal::Hold,
            }
        } else {
            Signal::Hold
        };
        recent.push_back((input.bar.high, input.bar.low));
        while recent.len() > keep {
            recent.pop_front();
        }
        signal
    }

    /// After a split the old prices mean nothing: start the symbol over.
    fn reset(&mut self, symbol: &str) {
        self.recent.remove(symbol);
    }
}

fn main() -> ExitCode {
    if let Err(e) = traderd::strategy::register("breakout", Breakout::build) {
        eprintln!("custom_strategy: {e}");
        return ExitCode::FAILURE;
    }
    traderd::app::main()
}
