//! The replay's symbols, by index.

use rust_decimal::Decimal;
use std::rc::Rc;

/// The symbols replayed, by index: the bars come with one.
#[derive(Default)]
pub(in crate::tools::backtest) struct Symbols {
    /// Shared with the bar being handled (a bar's symbol is borrowed across calls that need
    /// the replay mutably).
    pub(super) names: Vec<Rc<str>>,
    index: hashbrown::HashMap<String, u32>,
    /// Each symbol's latest minute close: the engine's mark of a symbol it does not follow,
    /// set when an order makes it follow it.
    latest_close: Vec<Option<Decimal>>,
    /// Whether the engine follows the symbol (a position, or an order that may fill): only
    /// these symbols' prices are fed to it. Exact at the start of a minute and after its
    /// fills; during the closes it may hold for a symbol that has only just been ordered.
    active: Vec<bool>,
}

impl Symbols {
    /// The index of `name`, added if it is new.
    pub(in crate::tools::backtest) fn index(&mut self, name: &str) -> u32 {
        if let Some(i) = self.index.get(name) {
            return *i;
        }
        let i = self.names.len() as u32;
        self.names.push(name.into());
        self.index.insert(name.to_string(), i);
        self.latest_close.push(None);
        self.active.push(false);
        i
    }

    pub(super) fn name(&self, i: u32) -> &str {
        self.names.get(i as usize).map_or("", |n| n)
    }

    /// The name of `i`, shared.
    pub(super) fn shared(&self, i: u32) -> Rc<str> {
        self.names
            .get(i as usize)
            .cloned()
            .unwrap_or_else(|| "".into())
    }

    pub(super) fn active(&self, i: u32) -> bool {
        self.active.get(i as usize).copied().unwrap_or(false)
    }

    /// Whether the engine may follow `name` (a symbol not replayed: it may).
    pub(super) fn followed(&self, name: &str) -> bool {
        self.index.get(name).is_none_or(|i| self.active(*i))
    }

    /// The engine follows exactly these symbols now.
    pub(super) fn follow_only<'n>(&mut self, names: impl Iterator<Item = &'n str>) {
        self.active.iter_mut().for_each(|a| *a = false);
        for name in names {
            self.follow(name);
        }
    }

    /// The engine follows `name` from now (an order for it was placed).
    pub(super) fn follow(&mut self, name: &str) {
        if let Some(a) = self
            .index
            .get(name)
            .and_then(|i| self.active.get_mut(*i as usize))
        {
            *a = true;
        }
    }

    pub(super) fn note_close(&mut self, i: u32, close: Decimal) {
        if let Some(c) = self.latest_close.get_mut(i as usize) {
            *c = Some(close);
        }
    }

    /// `name`'s latest minute close, once it has had one in the range.
    pub(super) fn latest_close(&self, name: &str) -> Option<Decimal> {
        let i = *self.index.get(name)?;
        self.latest_close.get(i as usize).copied().flatten()
    }
}
