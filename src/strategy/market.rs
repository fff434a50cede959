//! The market view's bars: every symbol's latest closed bar.

use crate::domain::OhlcBar;

/// Every symbol's latest closed bar: what a [`MarketView`](super::MarketView) shows. Looked up by name in
/// constant time, or by the slot a caller took for a symbol ([`MarketBars::slot`],
/// [`MarketBars::keep_at`]: a backtest keeps one at every close of every symbol); iterated
/// in symbol order.
#[derive(Debug, Clone, Default)]
pub struct MarketBars {
    slots: hashbrown::HashMap<String, usize>,
    /// By slot: the latest bar, none before the first or after a removal.
    bars: Vec<Option<OhlcBar>>,
    /// The symbols with a bar, sorted.
    order: Vec<String>,
}

impl MarketBars {
    pub fn get(&self, symbol: &str) -> Option<&OhlcBar> {
        let slot = *self.slots.get(symbol)?;
        self.bars.get(slot)?.as_ref()
    }

    pub fn contains_key(&self, symbol: &str) -> bool {
        self.get(symbol).is_some()
    }

    /// `symbol`'s slot, taken the first time (with no bar yet).
    pub fn slot(&mut self, symbol: &str) -> usize {
        if let Some(slot) = self.slots.get(symbol) {
            return *slot;
        }
        let slot = self.bars.len();
        self.slots.insert(symbol.to_string(), slot);
        self.bars.push(None);
        slot
    }

    /// Sets `symbol`'s latest bar; the one it replaces, if any.
    pub fn insert(&mut self, symbol: String, bar: OhlcBar) -> Option<OhlcBar> {
        let slot = self.slot(&symbol);
        self.put(slot, &symbol, bar)
    }

    fn put(&mut self, slot: usize, symbol: &str, bar: OhlcBar) -> Option<OhlcBar> {
        let entry = self.bars.get_mut(slot)?;
        if entry.is_none() {
            let at = self
                .order
                .binary_search_by(|s| s.as_str().cmp(symbol))
                .unwrap_or_else(|i| i);
            self.order.insert(at, symbol.to_string());
        }
        entry.replace(bar)
    }

    /// Keeps `bar` as `symbol`'s latest: the name is copied only the first time.
    pub fn keep(&mut self, symbol: &str, bar: &OhlcBar) {
        let slot = self.slot(symbol);
        self.keep_at(slot, symbol, bar);
    }

    /// [`MarketBars::keep`] for the symbol of `slot` (from [`MarketBars::slot`]), without
    /// looking its name up.
    pub fn keep_at(&mut self, slot: usize, symbol: &str, bar: &OhlcBar) {
        match self.bars.get_mut(slot) {
            Some(Some(b)) => b.clone_from(bar),
            Some(None) => {
                self.put(slot, symbol, bar.clone());
            }
            None => self.keep(symbol, bar),
        }
    }

    /// The symbols, in order.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.order.iter()
    }

    /// (symbol, latest bar), in symbol order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &OhlcBar)> {
        self.order
            .iter()
            .filter_map(|s| self.get(s).map(|b| (s, b)))
    }

    /// Forgets `symbol`'s bar (a split: it is in old prices).
    pub fn remove(&mut self, symbol: &str) -> Option<OhlcBar> {
        self.order.retain(|s| s != symbol);
        let slot = *self.slots.get(symbol)?;
        self.bars.get_mut(slot)?.take()
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}
