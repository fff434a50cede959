//! A strategy's state per symbol.

/// A strategy's state per symbol, by name. Symbols tend to come round in the same order (a
/// backtest hands each minute's bars in symbol order, the feed closes a minute's bars
/// together), so the symbol after the last one asked for is tried before the map.
#[derive(Debug, Clone)]
pub struct PerSymbol<T> {
    slots: hashbrown::HashMap<String, usize>,
    /// By slot: the name and the state (none after a reset).
    items: Vec<(String, Option<T>)>,
    /// The slot after the last one asked for.
    next: usize,
}

impl<T> Default for PerSymbol<T> {
    fn default() -> Self {
        PerSymbol {
            slots: hashbrown::HashMap::new(),
            items: Vec::new(),
            next: 0,
        }
    }
}

impl<T> PerSymbol<T> {
    /// `symbol`'s state, made by `make` the first time (or the first time after a reset).
    pub fn get_or_insert_with(&mut self, symbol: &str, make: impl FnOnce() -> T) -> &mut T {
        let guess = self.next;
        let found = match self.items.get(guess) {
            Some((name, _)) if name == symbol => Some(guess),
            _ => self.slots.get(symbol).copied(),
        };
        let len = self.items.len();
        if let Some(slot) = found.filter(|slot| *slot < len) {
            self.next = if slot + 1 < len { slot + 1 } else { 0 };
            // In bounds: just checked.
            return self.items[slot].1.get_or_insert_with(make);
        }
        self.slots.insert(symbol.to_string(), len);
        self.next = 0;
        self.items.push((symbol.to_string(), None));
        // In bounds: just pushed.
        self.items[len].1.get_or_insert_with(make)
    }

    /// `symbol`'s state, if it has one.
    pub fn get(&self, symbol: &str) -> Option<&T> {
        let slot = *self.slots.get(symbol)?;
        self.items.get(slot)?.1.as_ref()
    }

    /// Forgets `symbol`'s state: the next bar starts it afresh.
    pub fn remove(&mut self, symbol: &str) {
        if let Some(slot) = self.slots.get(symbol)
            && let Some((_, state)) = self.items.get_mut(*slot)
        {
            *state = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_symbol_keeps_its_own_state_in_any_order_and_a_reset_starts_it_afresh() {
        let mut states = PerSymbol::<u32>::default();
        let names = ["A", "B", "C"];
        // In turn (the guess), then out of turn (the map), then a newcomer.
        let order = ["A", "B", "C", "A", "B", "C", "C", "A", "B", "B", "D", "A"];
        let mut expected = std::collections::HashMap::new();
        for name in order {
            *states.get_or_insert_with(name, || 0) += 1;
            *expected.entry(name).or_insert(0) += 1;
        }
        for name in names.iter().chain(&["D"]) {
            assert_eq!(states.get(name), expected.get(name), "{name}");
        }
        states.remove("B");
        assert_eq!(states.get("B"), None);
        assert_eq!(*states.get_or_insert_with("B", || 10), 10);
        assert_eq!(states.get("A"), Some(&4));
        assert_eq!(states.get("E"), None);
    }
}
