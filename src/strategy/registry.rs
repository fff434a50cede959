//! Strategies of your own, by name: [`register`] one before the daemon or the backtest starts,
//! and `strategy.name = "yours"` builds it, with its parameters from `[strategy.params]`
//! (see docs/strategies.md and `examples/custom_strategy.rs`).

use super::Strategy;
use crate::domain::Interval;
use std::collections::BTreeMap;
use std::sync::{LazyLock, RwLock};

/// Builds a registered strategy from its `[strategy.params]` table and the configured
/// interval; `Err` says what is wrong with the parameters.
pub type Factory = fn(&toml::Table, Interval) -> Result<Box<dyn Strategy>, String>;

/// The names of the built-ins, which cannot be registered again.
pub const BUILT_IN: [&str; 5] = ["momentum", "mean_reversion", "pairs", "rebalance", "probe"];

static REGISTERED: LazyLock<RwLock<BTreeMap<String, Factory>>> =
    LazyLock::new(|| RwLock::new(BTreeMap::new()));

/// Makes `name` a strategy the config can name. Register before loading the config (the
/// config's check looks names up). `Err` for a built-in's name, a name registered already,
/// or one that is not lowercase letters, digits and `_`.
pub fn register(name: &str, factory: Factory) -> Result<(), String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(format!(
            "strategy name {name:?}: use lowercase letters, digits and _"
        ));
    }
    if BUILT_IN.contains(&name) {
        return Err(format!("{name:?} is a built-in strategy"));
    }
    let mut map = REGISTERED.write().unwrap_or_else(|e| e.into_inner());
    if map.contains_key(name) {
        return Err(format!("a strategy {name:?} is registered already"));
    }
    map.insert(name.to_string(), factory);
    Ok(())
}

/// The registered strategy's factory, if `name` is registered.
pub fn lookup(name: &str) -> Option<Factory> {
    REGISTERED
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(name)
        .copied()
}

/// Every name the config may use: the built-ins (but the probe), then the registered ones.
pub fn names() -> Vec<String> {
    let registered = REGISTERED.read().unwrap_or_else(|e| e.into_inner());
    BUILT_IN
        .iter()
        .filter(|n| **n != "probe")
        .map(|n| n.to_string())
        .chain(registered.keys().cloned())
        .collect()
}

/// A strategy's typed parameters from its `[strategy.params]` table (missing keys take the
/// type's `#[serde(default)]`s); `Err` names the bad key.
pub fn params<T: serde::de::DeserializeOwned>(table: &toml::Table) -> Result<T, String> {
    toml::Value::Table(table.clone())
        .try_into()
        .map_err(|e: toml::de::Error| format!("strategy.params: {}", e.message()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::{BarInput, Signal};

    struct Never;
    impl Strategy for Never {
        fn name(&self) -> &str {
            "never"
        }
        fn interval(&self) -> Interval {
            Interval::M1
        }
        fn on_bar(&mut self, _: &BarInput<'_>) -> Signal {
            Signal::Hold
        }
    }

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        #[serde(default = "five")]
        lookback: usize,
    }
    fn five() -> usize {
        5
    }

    fn build(t: &toml::Table, _: Interval) -> Result<Box<dyn Strategy>, String> {
        let _: P = params(t)?;
        Ok(Box::new(Never))
    }

    #[test]
    fn names_are_checked_and_registered_once() {
        assert!(
            register("momentum", build)
                .unwrap_err()
                .contains("built-in")
        );
        assert!(register("Bad-Name", build).is_err());
        assert!(register("", build).is_err());
        register("never_test", build).unwrap();
        assert!(
            register("never_test", build)
                .unwrap_err()
                .contains("already")
        );
        assert!(lookup("never_test").is_some());
        assert!(names().contains(&"never_test".to_string()));
        assert!(!names().contains(&"probe".to_string()));
    }

    #[test]
    fn params_are_typed_with_defaults_and_a_clear_error() {
        let p: P = params(&toml::Table::new()).unwrap();
        assert_eq!(p.lookback, 5);
        let t: toml::Table = "lookback = 9".parse().unwrap();
        assert_eq!(params::<P>(&t).unwrap().lookback, 9);
        let t: toml::Table = "lookbak = 9".parse().unwrap();
        let e = params::<P>(&t).err().unwrap();
        assert!(e.contains("lookbak"), "{e}");
        let t: toml::Table = "lookback = \"x\"".parse().unwrap();
        assert!(params::<P>(&t).is_err());
    }
}
