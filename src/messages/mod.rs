//! The typed cross-actor contract. Commands are imperative (`ChangeSubscriptions`), events
//! past tense (`BarClosed`); actors address each other by message type (`Recipient<M>`).

pub mod account;
pub mod health;
pub mod market;
pub mod mode;
pub mod orders;
pub mod risk;
pub mod strategy;
pub mod stream;

use crate::alpaca::model::{Order, TradeActivity, TradeUpdate};
use crate::alpaca::stream::{ChannelLists, DataMessage};
use crate::connection::{ConnectionState, StreamStatus};
pub use crate::domain::StreamKind;
use crate::domain::{Interval, OhlcBar};
use actix::prelude::*;
use chrono::{DateTime, Utc};
use std::time::Instant;

/// Market data decoded from one or more frames: trades, quotes, bars, statuses (never control
/// messages). Quotes may have been conflated per symbol under pressure; trades and bars never.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct MarketBatch {
    pub data: Vec<DataMessage>,
    /// When the first frame of the batch arrived.
    pub received_at: Instant,
    /// Set on the first batch after a reconnect, before any data that followed it: the stream
    /// was down from this time (the last event seen before the gap; `None` if there was none).
    /// It travels in band so the consumer learns of the gap before it sees later data.
    pub gap: Option<Option<DateTime<Utc>>>,
}

/// Order lifecycle events from the `trade_updates` stream, in order.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct TradeUpdatesReceived {
    pub updates: Vec<TradeUpdate>,
}

/// The `trade_updates` stream is (again) live. After a reconnect it carries what changed during
/// the gap, read from REST: the order side may submit again only after handling this.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct OrderStreamReady {
    /// The last event seen before the gap; `None` on the first connection.
    pub gap_from: Option<DateTime<Utc>>,
    /// Orders updated since `gap_from` (empty on the first connection).
    pub orders: Vec<Order>,
    /// Fills since `gap_from`.
    pub fills: Vec<TradeActivity>,
}

/// What a stream client did, for the health monitor, the control socket and other actors.
#[derive(Message, Debug, Clone, serde::Serialize)]
#[rtype(result = "()")]
pub struct StreamEvent {
    pub stream: StreamKind,
    pub kind: StreamEventKind,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum StreamEventKind {
    StateChanged {
        from: ConnectionState,
        to: ConnectionState,
        reason: String,
    },
    /// A frame that could not be decoded was skipped.
    FrameRejected { reason: String, sample: String },
    /// The server sent an error message.
    ServerError { code: u16, message: String },
    /// Connected but silent while the market is open: reconnecting.
    Stale { silent_ms: u64 },
    /// Authentication or the subscription was refused: the client stops; its supervisor restarts it.
    Fatal { reason: String },
    /// The account's plan does not cover the configured feed (409): the stream went on with
    /// `to` (IEX) instead. Not an error; a note for the operator.
    FeedFallback {
        from: String,
        to: String,
        reason: String,
    },
    /// Streaming again after a reconnect; data between `gap_from` and now came by REST or not at all.
    Resumed { gap_from: Option<DateTime<Utc>> },
}

/// Add and remove symbols per channel at run time.
#[derive(Message, Debug, Clone, Default)]
#[rtype(result = "()")]
pub struct ChangeSubscriptions {
    pub add: ChannelLists,
    pub remove: ChannelLists,
}

/// Asks a stream client for its state, metrics and subscriptions.
#[derive(Message, Debug)]
#[rtype(result = "StreamStatus")]
pub struct GetStreamStatus;

/// Registers a listener for [`StreamEvent`]s.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddStreamListener(pub Recipient<StreamEvent>);

/// A bar closed (or, with `historical`, a bar from the warm-up or a backfill).
#[derive(Message, Debug, Clone, PartialEq)]
#[rtype(result = "()")]
pub struct BarClosed {
    pub symbol: String,
    pub interval: Interval,
    pub bar: OhlcBar,
    pub historical: bool,
    /// Built from REST bars while the market-data stream was down (the feed polls them so
    /// strategies keep getting closed bars): live, but late by up to the poll interval.
    pub degraded: bool,
    /// The `market.bar` span's context (live bars).
    pub trace: crate::trace::TraceContext,
}

/// A symbol's bars of one interval from a warm-up, oldest first, all historical: what a
/// [`BarClosed`] per bar would say, in one message. (With 1,000 symbols a warm-up is
/// 200,000 bars; one message each crossed threads one by one and was most of the hand-over
/// in start → ready, docs/performance.md.) Shared, not copied, between subscribers: the
/// fetched bars themselves, moved in.
#[derive(Message, Debug, Clone, PartialEq)]
#[rtype(result = "()")]
pub struct HistoryBars {
    pub symbol: String,
    pub interval: Interval,
    pub bars: std::sync::Arc<Vec<OhlcBar>>,
}

/// Trades as they came, for strategies that trade on ticks: one per frame, from the
/// market-data session as soon as the frame is decoded (the feed is not on the way); several
/// frames' at once after the strategy's mailbox had no room.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct TradeTicks {
    pub trades: Vec<crate::alpaca::stream::StreamTrade>,
    /// When the frame that held the first of them arrived.
    pub arrived: Instant,
}

/// The account as the AccountManager last read it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct AccountSnapshot {
    pub equity: rust_decimal::Decimal,
    pub cash: rust_decimal::Decimal,
    pub buying_power: rust_decimal::Decimal,
    /// Equity at the previous close (Alpaca's `last_equity`): the day's starting point.
    pub start_of_day_equity: rust_decimal::Decimal,
    /// equity − start-of-day equity.
    pub day_pnl: rust_decimal::Decimal,
    /// Intraday unrealized P&L of the positions held now.
    pub unrealized_day_pnl: rust_decimal::Decimal,
    /// The rest of the day's P&L: closed trades (and fees).
    pub realized_day_pnl: rust_decimal::Decimal,
    /// Broker positions, signed.
    pub positions: std::collections::BTreeMap<String, rust_decimal::Decimal>,
    /// Long market value plus the absolute short market value, and long plus (negative)
    /// short: what is held, gross and net.
    pub gross_exposure: rust_decimal::Decimal,
    pub net_exposure: rust_decimal::Decimal,
    /// Each position's unrealised P&L, as the broker values it.
    pub unrealized: std::collections::BTreeMap<String, rust_decimal::Decimal>,
    pub market_open: bool,
    /// The clock's next regular open and close (broker time): with the bars' own times they
    /// tell the risk checks the market opened before the next read does.
    pub next_open: Option<DateTime<Utc>>,
    pub next_close: Option<DateTime<Utc>>,
    pub trading_blocked: bool,
    pub read_at: Option<DateTime<Utc>>,
}

/// The AccountManager read the account again.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct AccountUpdated(pub AccountSnapshot);

/// Ask the AccountManager to read the account now (after a fill).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct RefreshAccount;

/// What the order side holds: positions from the journal's fills, open orders and what they may
/// still add. Sent after every change.
pub use crate::orders::desk::OrdersChanged;

impl Message for OrdersChanged {
    type Result = ();
}

/// A position was adjusted for a split of `symbol` (`ratio`: shares after per share before,
/// when known): bars and indicators before it are in the old shares, so the feed fetches the
/// symbol's history again, split-adjusted, and its subscribers start the symbol over.
#[derive(Message, Debug, Clone, PartialEq)]
#[rtype(result = "()")]
pub struct SplitApplied {
    pub symbol: String,
    pub ratio: Option<rust_decimal::Decimal>,
}

/// The feed is delivering bars from REST while the market-data stream is down: the stream's
/// silence is covered (the health monitor does not count it as down while these keep coming).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct StreamCovered {
    pub stream: StreamKind,
    pub bars: usize,
}
