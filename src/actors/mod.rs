//! The actors, one module each: thin shells over their synchronous cores.

pub mod market_data;
pub mod stream_client;
