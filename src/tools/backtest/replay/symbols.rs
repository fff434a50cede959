//! The replay's symbols, by index.

use rust_decimal::Decimal;

/// The symbols replayed, by index: the bars come with one.
#[derive(Default)]
pub(in crate::tools::backtest) struct Symbols {
    pub(super) names: Vec<String>,
    pub(super) index: hashbrown::HashMap<String, u32>,
    /// Each symbol's latest minute close: the engine's mark of a symbol it does not follow,
    /// set when an order makes it follow it.
    pub(super) latest_close: Vec<Option<Decimal>>,
    /// Whether the engine follows the symbol (a position, or an order that may fill): only
    /// these symbols' prices are fed to it. Exact at the start of a minute and after its
    /// fills; during the closes it may hold for a symbol that has only just been ordered.
    pub(super) active: Vec<bool>,
}

impl Symbols {
    /// The index of `name`, added if it is new.
    pub(in crate::tools::backtest) fn index(&mut self, name: &str) -> u32 {
        if let Some(i) = self.index.get(name) {
            return *i;
        }
        let i = self.names.len() as u32;
        self.names.push(name.to_string());
        self.index.insert(name.to_string(), i);
        self.latest_close.push(None);
        self.active.push(false);
        i
    }

    pub(super) fn name(&self, i: u32) -> &str {
        self.names.get(i as usize).map_or("", String::as_str)
    }

    pub(super) fn active(&self, i: u32) -> bool {
        self.active.get(i as usize).copied().unwrap_or(false)
    }
}
