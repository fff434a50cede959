//! The tools beside the daemon: `traderd data` (the history store), `backtest`, `report` (a
//! run's report from its journal), the soak (`traderd soak`: a long run under faults or ordinary
//! busy trading, with invariants checked throughout) and the load bench (`traderd bench-load`).
//! They drive the daemon and the simulator from outside; nothing in the daemon depends on them.

pub mod backtest;
pub mod bench_backtest;
pub mod bench_load;
pub mod data;
pub mod report;
pub mod soak;
