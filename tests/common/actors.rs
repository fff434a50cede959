//! A real actor that records what the stream client and the feed deliver, for tests to read.

use actix::prelude::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use traderd::actors::stream_client::{Backoff, Sinks, StreamClient, StreamSettings, Subscriptions};
use traderd::alpaca::stream::DataMessage;
use traderd::alpaca::{Credentials, Secret};
use traderd::messages::*;

#[derive(Default)]
pub struct Seen {
    pub data: Vec<(Instant, DataMessage)>,
    pub events: Vec<(Instant, StreamEvent)>,
    pub updates: Vec<traderd::alpaca::model::TradeUpdate>,
    pub ready: Vec<OrderStreamReady>,
    pub bars: Vec<BarClosed>,
    /// Trades handed over as ticks, each with when its frame arrived.
    pub ticks: Vec<(Instant, traderd::alpaca::stream::StreamTrade)>,
}

impl Seen {
    pub fn trades(&self, symbol: &str) -> usize {
        self.data
            .iter()
            .filter(|(_, m)| matches!(m, DataMessage::Trade(t) if t.symbol == symbol))
            .count()
    }
    pub fn quotes(&self, symbol: &str) -> usize {
        self.data
            .iter()
            .filter(|(_, m)| matches!(m, DataMessage::Quote(q) if q.symbol == symbol))
            .count()
    }
    /// When the stream last reached `Streaming`, if it did.
    pub fn streaming_since(&self) -> Option<Instant> {
        self.events
            .iter()
            .rev()
            .find(|(_, e)| {
                matches!(
                    &e.kind,
                    StreamEventKind::StateChanged {
                        to: traderd::actors::stream_client::ConnectionState::Streaming,
                        ..
                    }
                )
            })
            .map(|(t, _)| *t)
    }
    pub fn count_events(&self, pred: impl Fn(&StreamEventKind) -> bool) -> usize {
        self.events.iter().filter(|(_, e)| pred(&e.kind)).count()
    }
}

pub struct Collector(pub Arc<Mutex<Seen>>);

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<MarketBatch> for Collector {
    type Result = ();
    fn handle(&mut self, msg: MarketBatch, _: &mut Context<Self>) {
        let now = Instant::now();
        self.0
            .lock()
            .unwrap()
            .data
            .extend(msg.data.into_iter().map(|m| (now, m)));
    }
}

impl Handler<StreamEvent> for Collector {
    type Result = ();
    fn handle(&mut self, msg: StreamEvent, _: &mut Context<Self>) {
        self.0.lock().unwrap().events.push((Instant::now(), msg));
    }
}

impl Handler<TradeUpdatesReceived> for Collector {
    type Result = ();
    fn handle(&mut self, msg: TradeUpdatesReceived, _: &mut Context<Self>) {
        self.0.lock().unwrap().updates.extend(msg.updates);
    }
}

impl Handler<OrderStreamReady> for Collector {
    type Result = ();
    fn handle(&mut self, msg: OrderStreamReady, _: &mut Context<Self>) {
        self.0.lock().unwrap().ready.push(msg);
    }
}

impl Handler<TradeTicks> for Collector {
    type Result = ();
    fn handle(&mut self, msg: TradeTicks, _: &mut Context<Self>) {
        let mut seen = self.0.lock().unwrap();
        seen.ticks
            .extend(msg.trades.into_iter().map(|t| (msg.arrived, t)));
    }
}

impl Handler<BarClosed> for Collector {
    type Result = ();
    fn handle(&mut self, msg: BarClosed, _: &mut Context<Self>) {
        self.0.lock().unwrap().bars.push(msg);
    }
}

/// A warm-up's history, kept as the closed bars it stands for.
impl Handler<HistoryBars> for Collector {
    type Result = ();
    fn handle(&mut self, msg: HistoryBars, _: &mut Context<Self>) {
        let mut seen = self.0.lock().unwrap();
        seen.bars.extend(msg.bars.iter().map(|bar| BarClosed {
            symbol: msg.symbol.clone(),
            interval: msg.interval,
            bar: bar.clone(),
            historical: true,
            degraded: false,
            trace: Default::default(),
        }));
    }
}

pub fn collector() -> (Addr<Collector>, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    (Collector(seen.clone()).start(), seen)
}

/// Stream settings tuned for tests: quick heartbeats, staleness and backoff.
pub fn quick_settings(kind: StreamKind, url: String) -> StreamSettings {
    let creds = Credentials {
        key_id: super::KEY.into(),
        secret: Secret::new(super::SECRET),
    };
    StreamSettings {
        ping_interval: Duration::from_millis(200),
        pong_timeout: Duration::from_secs(2),
        stale_after: Duration::from_millis(1500),
        auth_timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(3),
        backoff: Backoff {
            base: Duration::from_millis(50),
            cap: Duration::from_millis(400),
            floor: Duration::from_millis(10),
        },
        connection_limit_wait: Duration::from_millis(800),
        ..StreamSettings::new(kind, url, creds)
    }
}

pub fn trades_of(symbols: &[&str]) -> Subscriptions {
    Subscriptions {
        trades: symbols.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// A market-data client against the simulator, reporting to `collector`.
pub fn market_client(
    settings: StreamSettings,
    subs: Subscriptions,
    collector: &Addr<Collector>,
    rest: Option<traderd::alpaca::AlpacaClient>,
) -> Addr<StreamClient> {
    let sinks = Sinks {
        market: Some(collector.clone().recipient()),
        ..Default::default()
    };
    StreamClient::new(settings, subs, sinks, rest.map(Into::into))
        .with_listener(collector.clone().recipient())
        .start()
}
