//! Messages of the strategy topic.

use actix::prelude::*;

#[derive(Message)]
#[rtype(result = "StrategyStats")]
pub struct GetStrategyStats;

/// Stops (`true`) or resumes acting on one strategy's signals; the others go on.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct PauseStrategy(pub bool);

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct StrategyStats {
    /// Its name (`[[strategies]]`), or its kind for the one `[strategy]`.
    pub name: String,
    pub kind: String,
    pub symbols: Vec<String>,
    pub paused: bool,
    /// Entries not proposed because they would take it past its allocation.
    pub over_allocation: u64,
    pub bars: u64,
    /// Live bars of a symbol it had been given no history of (the warm-up from REST failed,
    /// or never reached it): its indicators started cold. 0 after a healthy start.
    pub cold_bars: u64,
    /// Live trades it asked for and saw.
    pub trades: u64,
    pub signals: u64,
    /// Signals not acted on: the order side not ready, an order for the symbol in
    /// progress, the strategy paused, or (an entry) the account's equity not known yet or a
    /// size of no whole share.
    pub ignored: u64,
    pub proposed: u64,
    pub sent: u64,
    pub refused: u64,
}
