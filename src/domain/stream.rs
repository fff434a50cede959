//! The two streams and where a connection stands.

use serde::Serialize;

/// Which of the two streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamKind {
    MarketData,
    TradeUpdates,
}

/// Where a stream connection stands. Every change is published as a `StreamEvent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    Disconnected,
    Connecting,
    Authenticating,
    Subscribing,
    Streaming,
    Reconnecting,
    /// Stopped for good (authentication refused): an operator must act.
    Failed,
}

impl ConnectionState {
    /// Whether the machine may go from `self` to `to`.
    pub fn can_go_to(self, to: ConnectionState) -> bool {
        use ConnectionState::*;
        matches!(
            (self, to),
            (_, Disconnected)
                | (Disconnected | Reconnecting | Failed, Connecting)
                | (Connecting, Authenticating | Reconnecting | Failed)
                | (Authenticating, Subscribing | Reconnecting | Failed)
                | (Subscribing, Streaming | Reconnecting | Failed)
                | (Streaming, Reconnecting | Failed)
        )
    }
}
