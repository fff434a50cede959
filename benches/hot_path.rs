//! Criterion micro-benchmarks of the market-data hot path: frame decoding (JSON and msgpack,
//! batched trades and quotes as the simulator and Alpaca send them) and bar aggregation.
//! `make bench` runs them; figures and method are in docs/performance.md.

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmarks fail loudly

use chrono::{Duration, TimeZone, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rust_decimal::Decimal;
use std::hint::black_box;
use traderd::alpaca::stream::{
    Code, Codec, DataMessage, StreamQuote, StreamTrade, decode_data_frame,
};
use traderd::market_data::{BarBook, Interval};

const BATCH: usize = 400;
const SYMBOLS: [&str; 8] = [
    "AAPL", "MSFT", "AMZN", "GOOGL", "NVDA", "META", "TSLA", "SPY",
];

fn trades(n: usize) -> Vec<DataMessage> {
    let t0 = Utc.with_ymd_and_hms(2026, 11, 20, 14, 30, 0).unwrap();
    (0..n)
        .map(|i| {
            DataMessage::Trade(StreamTrade {
                symbol: SYMBOLS[i % SYMBOLS.len()].to_string(),
                id: 1_000_000 + i as u64,
                exchange: Code::new("V"),
                price: Decimal::new(19_000 + (i as i64 * 7) % 500, 2),
                size: Decimal::from(1 + (i as i64 * 13) % 500),
                timestamp: t0 + Duration::nanoseconds(i as i64 * 1_234_567),
                conditions: vec!["@".into()],
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
                symbol: SYMBOLS[i % SYMBOLS.len()].to_string(),
                bid_exchange: Code::new("V"),
                bid_price: bid,
                bid_size: Decimal::from(100 * (1 + i as i64 % 10)),
                ask_exchange: Code::new("Q"),
                ask_price: bid + Decimal::new(2, 2),
                ask_size: Decimal::from(200),
                timestamp: t0 + Duration::nanoseconds(i as i64 * 987_654),
                conditions: vec!["R".into()],
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

criterion_group!(benches, decode, aggregate);
criterion_main!(benches);
