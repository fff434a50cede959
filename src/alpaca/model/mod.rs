//! Serde types for Alpaca's wire formats: the trading API ([`trading`]) and market data
//! ([`data`]). These types are used by both our client and the simulator, so a change here
//! shows up on both sides of every test.

pub mod account;
pub mod corporate;
pub mod data;
pub mod listing;
pub mod trading;
pub mod utc;

pub use account::*;
pub use corporate::*;
pub use data::*;
pub use listing::{Foreign, Listing};
pub use trading::*;
