//! Criterion micro-benchmarks of the hot path: frame decoding (JSON and msgpack, batched
//! trades and quotes as the simulator and Alpaca send them), bar aggregation, indicator
//! updates, the risk check, and an actor hop (actix mailbox, one way and round trip).
//! `make bench` runs them; figures and method are in docs/performance.md.

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmarks fail loudly

use chrono::{Duration, TimeZone, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rust_decimal::Decimal;
use std::hint::black_box;
use traderd::actors::market_data::{BarBook, Interval};
use traderd::alpaca::stream::{
    self, Code, Codec, DataMessage, StreamQuote, StreamTrade, Wanted, decode_data_frame,
};

const BATCH: usize = 400;
const SYMBOLS: [&str; 8] = [
    "AAPL", "MSFT", "AMZN", "GOOGL", "NVDA", "META", "TSLA", "SPY",
];

fn trades(n: usize) -> Vec<DataMessage> {
    let t0 = Utc.with_ymd_and_hms(2026, 11, 20, 14, 30, 0).unwrap();
    (0..n)
        .map(|i| {
            DataMessage::Trade(StreamTrade {
                symbol: SYMBOLS[i % SYMBOLS.len()].into(),
                id: 1_000_000 + i as u64,
                exchange: Code::new("V"),
                price: Decimal::new(19_000 + (i as i64 * 7) % 500, 2),
                size: Decimal::from(1 + (i as i64 * 13) % 500),
                timestamp: t0 + Duration::nanoseconds(i as i64 * 1_234_567),
                conditions: ["@"].into_iter().collect(),
                tape: Code::new("C"),
            })
        })
        .collect()
}

fn quotes(n: usize) -> Vec<DataMessage> {
    let t0 = Utc.with_ymd_and_hms(2026, 11, 20, 14, 30, 0).unwrap();
    (0..n)
        .map(|i| {
            let bid = Decimal::new(19_000 + (i as i64 * 7) % 500, 2);
            DataMessage::Quote(StreamQuote {
                symbol: SYMBOLS[i % SYMBOLS.len()].into(),
                bid_exchange: Code::new("V"),
                bid_price: bid,
                bid_size: Decimal::from(100 * (1 + i as i64 % 10)),
                ask_exchange: Code::new("Q"),
                ask_price: bid + Decimal::new(2, 2),
                ask_size: Decimal::from(200),
                timestamp: t0 + Duration::nanoseconds(i as i64 * 987_654),
                conditions: ["R"].into_iter().collect(),
                tape: Code::new("C"),
            })
        })
        .collect()
}

fn decode(c: &mut Criterion) {
    for (name, messages) in [("trades", trades(BATCH)), ("quotes", quotes(BATCH))] {
        for codec in [Codec::Json, Codec::Msgpack] {
            let frame = codec.encode(&messages);
            let mut group = c.benchmark_group(format!("decode/{name}"));
            group.throughput(Throughput::Elements(BATCH as u64));
            group.bench_function(format!("{codec:?}").to_lowercase(), |b| {
                b.iter(|| decode_data_frame(codec, black_box(&frame)).unwrap())
            });
            group.finish();
        }
    }
}

/// A flood's frame, 100 messages: 40 trades and 60 quotes interleaved, in msgpack and JSON.
/// Read in one pass, and trades first (the first pass alone is what a tick strategy waits
/// for; then the rest).
fn trades_first(c: &mut Criterion) {
    let (t, q) = (trades(40), quotes(60));
    let mut messages = Vec::with_capacity(100);
    let (mut t, mut q) = (t.into_iter(), q.into_iter());
    for i in 0..100 {
        messages.extend(if i % 5 < 2 { t.next() } else { q.next() });
    }
    // The last trade is marked, as a probe's frame is (every trade first, or only the marked).
    if let Some(DataMessage::Trade(t)) = messages.iter_mut().rev().find(|m| m.as_trade().is_some())
    {
        t.conditions.push(traderd::domain::MARK);
    }
    let marked = [traderd::domain::MARK.to_string()];
    for (codec, group) in [
        (Codec::Msgpack, "decode/mixed_frame"),
        (Codec::Json, "decode/mixed_frame_json"),
    ] {
        let frame = codec.encode(&messages);
        let mut group = c.benchmark_group(group);
        group.throughput(Throughput::Elements(100));
        group.bench_function("one_pass", |b| {
            b.iter(|| decode_data_frame(codec, black_box(&frame)).unwrap())
        });
        for (name, wanted) in [
            ("every", Wanted::Every),
            ("marked", Wanted::WithCondition(&marked)),
        ] {
            group.bench_function(format!("trades_first_pass/{name}"), |b| {
                b.iter(|| stream::trades_first(codec, black_box(&frame), wanted).unwrap())
            });
            group.bench_function(format!("trades_first_then_rest/{name}"), |b| {
                b.iter(|| {
                    let first = stream::trades_first(codec, black_box(&frame), wanted);
                    stream::decode_rest(first.unwrap(), codec, &frame).unwrap()
                })
            });
        }
        group.finish();
    }
}

fn aggregate(c: &mut Criterion) {
    let n = 100_000usize;
    let t0 = Utc.with_ymd_and_hms(2026, 11, 20, 14, 30, 0).unwrap();
    let input: Vec<(String, Decimal, Decimal, chrono::DateTime<Utc>)> = (0..n)
        .map(|i| {
            (
                format!("S{}", i % 100),
                Decimal::new(10_000 + (i as i64 % 300), 2),
                Decimal::from(100),
                t0 + Duration::milliseconds(i as i64 * 20),
            )
        })
        .collect();
    let mut group = c.benchmark_group("aggregate");
    group.throughput(Throughput::Elements(n as u64));
    group.sample_size(20);
    group.bench_function("trades_into_5_intervals_100_symbols", |b| {
        b.iter(|| {
            let mut book = BarBook::new(&Interval::ALL, 500);
            let mut closed = 0usize;
            for (s, p, q, t) in &input {
                closed += book.on_trade(s, *p, *q, *t).len();
            }
            black_box(closed)
        })
    });
    group.finish();
}

fn indicators(c: &mut Criterion) {
    use traderd::strategy::indicators::{Bollinger, Macd, Rsi};
    let closes: Vec<f64> = (0..10_000)
        .map(|i| 100.0 + ((i as f64) * 0.37).sin() * 2.0 + (i as f64) * 0.001)
        .collect();
    let mut group = c.benchmark_group("indicators");
    group.throughput(Throughput::Elements(closes.len() as u64));
    group.bench_function("rsi14_macd_12_26_9_bollinger20", |b| {
        b.iter(|| {
            let (mut rsi, mut macd, mut bb) =
                (Rsi::new(14), Macd::new(12, 26, 9), Bollinger::new(20, 2.0));
            let mut last = 0.0;
            for &x in &closes {
                last += rsi.update(x).unwrap_or(0.0);
                last += macd.update(x).1.map(|m| m.histogram).unwrap_or(0.0);
                last += bb.update(x).map(|v| v.middle).unwrap_or(0.0);
            }
            black_box(last)
        })
    });
    group.finish();
}

fn risk_check(c: &mut Criterion) {
    use std::collections::VecDeque;
    use traderd::alpaca::model::OrderSide;
    use traderd::risk::{Intent, Purpose, RiskLimits, RiskState, TradingMode, check};
    let symbols: Vec<String> = (0..100).map(|i| format!("S{i}")).collect();
    let state = RiskState {
        positions: symbols
            .iter()
            .take(4)
            .map(|s| (s.clone(), Decimal::from(10)))
            .collect(),
        last_trade: symbols
            .iter()
            .map(|s| (s.clone(), Decimal::new(10_000, 2)))
            .collect(),
        open_orders: 2,
        pending_qty: Default::default(),
        buying_power: Decimal::from(100_000),
        equity: Decimal::from(100_000),
        start_of_day_equity: Decimal::from(100_000),
        market_open: true,
        recent_orders: VecDeque::new(),
        halted: Default::default(),
    };
    let limits = RiskLimits::default();
    let now = Utc.with_ymd_and_hms(2026, 11, 20, 15, 0, 0).unwrap();
    let intent = Intent {
        symbol: "S50".into(),
        side: OrderSide::Buy,
        qty: Decimal::from(10),
        limit_price: None,
        correlation_id: "S50-1".into(),
        purpose: Purpose::Entry {
            take_profit: None,
            stop_loss: None,
            trail_pct: None,
        },
        trace: Default::default(),
        strategy: None,
    };
    let mut group = c.benchmark_group("risk");
    group.throughput(Throughput::Elements(1));
    group.bench_function("check_an_entry_100_symbols", |b| {
        b.iter(|| {
            check(
                black_box(intent.clone()),
                &state,
                &limits,
                TradingMode::Active,
                now,
            )
            .is_ok()
        })
    });
    group.finish();
}

/// A counting actor: the hop of a message through an actix mailbox.
struct Counter(u64);
impl actix::Actor for Counter {
    type Context = actix::Context<Self>;
}
#[derive(actix::Message)]
#[rtype(result = "u64")]
struct Bump;
impl actix::Handler<Bump> for Counter {
    type Result = u64;
    fn handle(&mut self, _: Bump, _: &mut Self::Context) -> u64 {
        self.0 += 1;
        self.0
    }
}

fn actor_hop(c: &mut Criterion) {
    use actix::Actor;
    let system = actix::System::new();
    let addr = system.block_on(async { Counter(0).start() });
    let n = 10_000u64;
    let mut group = c.benchmark_group("actor_hop");
    group.throughput(Throughput::Elements(n));
    group.bench_function("do_send_10k_then_sync", |b| {
        b.iter(|| {
            system.block_on(async {
                for _ in 0..n - 1 {
                    addr.do_send(Bump);
                }
                black_box(addr.send(Bump).await.unwrap())
            })
        })
    });
    group.bench_function("send_await_10k_round_trips", |b| {
        b.iter(|| {
            system.block_on(async {
                let mut last = 0;
                for _ in 0..n {
                    last = addr.send(Bump).await.unwrap();
                }
                black_box(last)
            })
        })
    });
    group.finish();
}

/// One order intent journaled (the write that precedes every order request), with a disk
/// flush (`state.sync = full`) and without (`normal`), in a temp directory on this disk.
fn journal_intent(c: &mut Criterion) {
    use traderd::alpaca::model::OrderSide;
    use traderd::journal::{Durability, OrderIntent, Store};
    let mut group = c.benchmark_group("journal");
    for (name, durability) in [
        ("intent_full", Durability::Full),
        ("intent_normal", Durability::Normal),
    ] {
        let Ok(dir) = tempfile::tempdir() else { return };
        let Ok(mut store) = Store::open(dir.path()) else {
            return;
        };
        if store.set_durability(durability).is_err() {
            return;
        }
        let mut n = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                n += 1;
                let intent = OrderIntent {
                    client_order_id: format!("bench-{n}"),
                    symbol: "AAPL".into(),
                    side: OrderSide::Buy,
                    qty: Decimal::from(10),
                    request: serde_json::json!({"symbol": "AAPL", "qty": "10", "side": "buy", "type": "market"}),
                    correlation_id: format!("AAPL-t{n}").into(),
                    created_at: Utc::now(),
                };
                black_box(store.record_intent(&intent).is_ok())
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    decode,
    trades_first,
    aggregate,
    indicators,
    risk_check,
    actor_hop,
    journal_intent
);
criterion_main!(benches);
