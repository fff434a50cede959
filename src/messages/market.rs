//! Messages of the market-data feed: subscribing to bars, trades and splits, the latest
//! prices, run-time symbol changes, the feed's counters.

use crate::alpaca::stream::{StreamQuote, StreamTrade};
use crate::domain::{Interval, OhlcBar};
use crate::messages::{BarClosed, HistoryBars, SplitApplied, StreamCovered, TradeTicks};
use actix::prelude::*;

/// Registers a receiver of closed bars: [`BarClosed`] one at a time, and a warm-up's
/// history a symbol at a time ([`HistoryBars`]).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddBarSubscriber {
    pub closed: Recipient<BarClosed>,
    pub history: Recipient<HistoryBars>,
}

impl AddBarSubscriber {
    pub fn of<A>(actor: &Addr<A>) -> Self
    where
        A: Actor<Context = Context<A>> + Handler<BarClosed> + Handler<HistoryBars>,
    {
        AddBarSubscriber {
            closed: actor.clone().recipient(),
            history: actor.clone().recipient(),
        }
    }
}

/// Registers a receiver of minute closes as marks (the risk checks' prices of what is held):
/// every live minute bar, and from a warm-up the last minute of each symbol only.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddMarkListener(pub Recipient<BarClosed>);

/// A receiver of live trades as they come ([`TradeTicks`], one per frame, held in order
/// while its mailbox is full): all of them, or only those carrying `condition`. Given to the market-data stream's session
/// ([`Sinks::ticks`](crate::actors::stream_client::Sinks)), which hands them over as soon as
/// it has decoded their frame: the feed is not on the way (docs/architecture.md).
#[derive(Clone)]
pub struct TradeSubscriber {
    pub recipient: Recipient<TradeTicks>,
    pub condition: Option<String>,
}

/// A symbol's trading status changed on the `statuses` channel: `halted` (see
/// [`crate::actors::market_data::is_halt`]) or trading again. Pushed to the risk checks, so
/// they never ask the feed.
#[derive(Message, Debug, Clone, PartialEq)]
#[rtype(result = "()")]
pub struct SymbolStatus {
    pub symbol: String,
    pub halted: bool,
}

/// Registers a receiver of [`SymbolStatus`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddStatusListener(pub Recipient<SymbolStatus>);

/// The last `n` closed bars of a symbol and interval, oldest first.
#[derive(Message)]
#[rtype(result = "Vec<OhlcBar>")]
pub struct GetBars {
    pub symbol: String,
    pub interval: Interval,
    pub n: usize,
}

/// The latest trade and quote of a symbol.
#[derive(Message)]
#[rtype(result = "Latest")]
pub struct GetLatest(pub String);

#[derive(Debug, Clone, Default)]
pub struct Latest {
    pub trade: Option<StreamTrade>,
    pub quote: Option<StreamQuote>,
    /// The trading status the `statuses` channel last gave: halted (`H`, a trading halt; `Q`,
    /// quotation only; `P`, paused for volatility) until a resumption (`T`).
    pub halted: Option<crate::alpaca::stream::data::TradingStatus>,
    /// The last limit-up/limit-down band.
    pub luld: Option<crate::alpaca::stream::data::Luld>,
}

/// Counters of the feed.
#[derive(Message)]
#[rtype(result = "FeedStats")]
pub struct GetFeedStats;

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct FeedStats {
    pub trades: u64,
    pub quotes: u64,
    /// Bars from the stream's bar channels (counted; ours are built from the trades).
    pub bars: u64,
    pub bars_closed: u64,
    pub late_trades: u64,
    pub backfills: u64,
    pub backfilled_minutes: u64,
    pub live: bool,
    /// The market-data stream is down and bars come from REST polls.
    pub degraded: bool,
    /// Minute bars taken from REST polls while degraded.
    pub rest_minutes: u64,
    pub rest_poll_failures: u64,
    /// Trading status messages (halts and resumptions).
    pub statuses: u64,
    /// Limit-up/limit-down bands.
    pub lulds: u64,
    /// Live trades, quotes and bars let go because more arrived while warming up or
    /// backfilling than the feed holds (their minutes came from REST).
    pub held_let_go: u64,
}

/// Where to say that REST bars cover the stream's silence.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetCoverListener(pub Recipient<StreamCovered>);

/// Adds symbols at run time: their bars are warmed up from REST first (answered when done, so
/// the caller subscribes the stream after, and no live trade comes before the history).
#[derive(Message)]
#[rtype(result = "Result<usize, String>")]
pub struct AddSymbols(pub Vec<String>);

/// Stops backfilling symbols (their bars stay; no more trades come once unsubscribed).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemoveSymbols(pub Vec<String>);

/// Tells `0` when a symbol's history starts over after a split (before its new history).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddSplitListener(pub Recipient<SplitApplied>);
