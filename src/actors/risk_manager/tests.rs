//! The risk checks decide from what they were told, never asking the feed: the price with the
//! proposal, halts pushed by the feed, the other symbols priced by live minute closes.

use super::*;
use crate::alpaca::model::OrderSide;
use crate::domain::OhlcBar;
use crate::messages::orders::Submitted;
use crate::risk::Purpose;
use chrono::{TimeZone, Utc};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// The order side as the risk checks see it: takes what is approved and answers the book,
/// keeping each approved order's reference price.
struct OrderSink {
    view: OrdersChanged,
    taken: Vec<(String, Decimal)>,
}

impl Actor for OrderSink {
    type Context = Context<Self>;
}

impl Handler<SubmitApproved> for OrderSink {
    type Result = Result<Submitted, crate::messages::orders::OrderError>;
    fn handle(&mut self, msg: SubmitApproved, _: &mut Context<Self>) -> Self::Result {
        let a = msg.0;
        self.taken
            .push((a.intent().symbol.clone(), a.reference_price));
        Ok(Submitted {
            client_order_id: format!("order-{}", self.taken.len()),
            view: self.view.clone(),
        })
    }
}

#[derive(Message)]
#[rtype(result = "Vec<(String, Decimal)>")]
struct Taken;

impl Handler<Taken> for OrderSink {
    type Result = MessageResult<Taken>;
    fn handle(&mut self, _: Taken, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.taken.clone())
    }
}

fn entry(symbol: &str, qty: i64) -> Intent {
    Intent::market(
        symbol,
        OrderSide::Buy,
        Decimal::from(qty),
        Purpose::Entry {
            take_profit: None,
            stop_loss: None,
            trail_pct: None,
        },
    )
}

fn minute(symbol: &str, close: i64, historical: bool) -> BarClosed {
    let p = Decimal::from(close);
    BarClosed {
        symbol: symbol.into(),
        interval: Interval::M1,
        bar: OhlcBar {
            start: Utc.with_ymd_and_hms(2026, 12, 1, 15, 0, 0).unwrap(),
            open: p,
            high: p,
            low: p,
            close: p,
            volume: Decimal::ONE,
            trades: 1,
            notional: p,
        },
        historical,
        degraded: false,
        trace: Default::default(),
    }
}

fn refused_code(r: Result<String, ProposeError>) -> Option<&'static str> {
    match r {
        Err(ProposeError::Refused(r)) => Some(r.code.as_str()),
        _ => None,
    }
}

/// Holds 100 MSFT; gross limit 60,000 US dollars; the account read and the market open.
async fn started() -> (Addr<RiskManager>, Addr<OrderSink>) {
    let view = OrdersChanged {
        positions: BTreeMap::from([("MSFT".to_string(), Decimal::from(100))]),
        ready: true,
        ..Default::default()
    };
    let orders = OrderSink {
        view: view.clone(),
        taken: Vec::new(),
    }
    .start();
    let limits = RiskLimits {
        max_gross_exposure_usd: Decimal::from(60_000),
        max_notional_per_symbol_usd: Decimal::from(100_000),
        ..RiskLimits::default()
    };
    let risk = RiskManager::new(limits, TradingMode::Active, orders.clone().recipient()).start();
    risk.send(view).await.unwrap();
    let account = crate::messages::AccountSnapshot {
        equity: Decimal::from(100_000),
        buying_power: Decimal::from(200_000),
        start_of_day_equity: Decimal::from(100_000),
        market_open: true,
        ..Default::default()
    };
    risk.send(AccountUpdated(account)).await.unwrap();
    (risk, orders)
}

#[actix::test]
async fn a_proposal_brings_its_price_and_a_minute_close_prices_the_rest() {
    let (risk, orders) = started().await;
    // No price for AAPL from anywhere: refused, never guessed.
    let r = risk.send(Propose::new(entry("AAPL", 10))).await.unwrap();
    assert_eq!(refused_code(r), Some("no_price"));
    // The price the strategy decided at is the check's price.
    let r = risk
        .send(Propose::at(entry("AAPL", 10), Decimal::from(150)))
        .await;
    assert!(r.unwrap().is_ok());
    // MSFT unpriced counts nothing toward gross: 200 AAPL at 150 = 30,000 fits under 60,000.
    let r = risk
        .send(Propose::at(entry("AAPL", 200), Decimal::from(150)))
        .await;
    assert!(r.unwrap().is_ok());
    // A warm-up bar prices MSFT where nothing did (100 × 250 = 25,000 held)...
    risk.send(minute("MSFT", 250, true)).await.unwrap();
    let r = risk
        .send(Propose::at(entry("AAPL", 200), Decimal::from(150)))
        .await;
    assert!(r.unwrap().is_ok(), "25,000 + 30,000 is under 60,000");
    // ...but never over a live price: a later historical bar does not move it.
    risk.send(minute("MSFT", 10, true)).await.unwrap();
    // A live close does: 100 × 400 = 40,000 held, with 30,000 more it is past 60,000.
    risk.send(minute("MSFT", 400, false)).await.unwrap();
    let r = risk
        .send(Propose::at(entry("AAPL", 200), Decimal::from(150)))
        .await;
    assert_eq!(refused_code(r.unwrap()), Some("gross_exposure"));
    let taken = orders.send(Taken).await.unwrap();
    assert_eq!(
        taken,
        vec![
            ("AAPL".to_string(), Decimal::from(150)),
            ("AAPL".to_string(), Decimal::from(150)),
            ("AAPL".to_string(), Decimal::from(150)),
        ]
    );
    // A split: the price in the old shares is forgotten until the next one comes.
    risk.send(SplitApplied {
        symbol: "AAPL".into(),
        ratio: Some(Decimal::from(4)),
    })
    .await
    .unwrap();
    let r = risk.send(Propose::new(entry("AAPL", 1))).await.unwrap();
    assert_eq!(refused_code(r), Some("no_price"));
}

#[actix::test]
async fn a_halt_pushed_by_the_feed_stops_entries_until_the_resumption() {
    let (risk, _orders) = started().await;
    let status = |halted| SymbolStatus {
        symbol: "AAPL".into(),
        halted,
    };
    risk.send(status(true)).await.unwrap();
    let r = risk
        .send(Propose::at(entry("AAPL", 1), Decimal::from(150)))
        .await;
    assert_eq!(refused_code(r.unwrap()), Some("symbol_halted"));
    // Another symbol trades on.
    let r = risk
        .send(Propose::at(entry("NVDA", 1), Decimal::from(150)))
        .await;
    assert!(r.unwrap().is_ok());
    risk.send(status(false)).await.unwrap();
    let r = risk
        .send(Propose::at(entry("AAPL", 1), Decimal::from(150)))
        .await;
    assert!(r.unwrap().is_ok());
}

#[actix::test]
async fn a_live_bar_inside_the_session_opens_the_market_before_the_next_clock_read() {
    let (risk, _orders) = started().await;
    let at = |h, m| Utc.with_ymd_and_hms(2026, 12, 1, h, m, 0).unwrap();
    // Read at 14:29: closed, opening at 14:30 and closing at 21:00 (UTC).
    let closed = |read_at| crate::messages::AccountSnapshot {
        equity: Decimal::from(100_000),
        buying_power: Decimal::from(200_000),
        start_of_day_equity: Decimal::from(100_000),
        market_open: false,
        next_open: Some(at(14, 30)),
        next_close: Some(at(21, 0)),
        read_at: Some(read_at),
        ..Default::default()
    };
    risk.send(AccountUpdated(closed(at(14, 29)))).await.unwrap();
    let bar = |h, m, historical| {
        let mut b = minute("AAPL", 150, historical);
        b.bar.start = at(h, m);
        b
    };
    let propose = || risk.send(Propose::at(entry("AAPL", 1), Decimal::from(150)));
    assert_eq!(
        refused_code(propose().await.unwrap()),
        Some("market_closed")
    );
    // A pre-market bar and a warm-up bar inside the session open nothing.
    risk.send(bar(14, 29, false)).await.unwrap();
    risk.send(bar(14, 31, true)).await.unwrap();
    assert_eq!(
        refused_code(propose().await.unwrap()),
        Some("market_closed")
    );
    // The session's first live bar does.
    risk.send(bar(14, 30, false)).await.unwrap();
    assert!(propose().await.unwrap().is_ok());
    // A read made before that bar, answered late, does not close it again.
    risk.send(AccountUpdated(closed(at(14, 29)))).await.unwrap();
    assert!(propose().await.unwrap().is_ok());
    // A bar at the close does.
    risk.send(bar(21, 0, false)).await.unwrap();
    assert_eq!(
        refused_code(propose().await.unwrap()),
        Some("market_closed")
    );
}
