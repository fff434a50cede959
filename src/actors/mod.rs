//! The actors, one module each: thin shells over their synchronous cores.

pub mod account;
pub mod health;
pub mod market_data;
pub mod notifier;
pub mod order_manager;
pub mod risk_manager;
pub mod strategy_runner;
pub mod stream_client;
pub mod supervisor;
