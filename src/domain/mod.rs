//! The plain types every layer shares: bars and intervals, the market calendar, the trading
//! mode, the streams and their connection states. The lowest floor of the house: nothing here
//! imports from anywhere else in the crate.

pub mod bars;
pub mod calendar;
pub mod ids;
pub mod listings;
pub mod mode;
pub mod stream;

pub use bars::{Interval, OhlcBar};
pub use ids::CorrelationId;
pub use mode::TradingMode;
pub use stream::{ConnectionState, StreamKind};

/// The trade condition the simulator's flood marks the trades it times with (no tape has it:
/// theirs are one character), and the load bench's probe strategy trades on.
pub const MARK: &str = "MARK";
