//! traderd: an autonomous trading daemon for Alpaca, and the Alpaca-compatible simulator it is
//! built and tested against. See `docs/architecture.md` for the shape of the whole.

pub mod actors;
pub mod aggregation;
pub mod alpaca;
pub mod analytics;
pub mod app;
pub mod broker;
pub mod cli;
pub mod config;
pub mod connection;
pub mod control;
pub mod daemon;
pub mod domain;
pub mod history;
pub mod journal;
pub mod latency;
pub mod messages;
pub mod mode;
pub mod notify;
pub mod orders;
pub mod risk;
pub mod sim;
pub mod strategy;
pub mod telemetry;
pub mod threads;
pub mod tools;
pub mod trace;
