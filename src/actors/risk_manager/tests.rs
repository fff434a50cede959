//! The risk checks decide from what they were told, never asking the feed: the price with the
//! proposal, halts pushed by the feed, the other symbols priced by live minute closes. What
//! is pushed goes to the RiskManager as messages; proposals ask the gate it shares, as the
//! OrderManager does.

use super::*;
use crate::alpaca::model::OrderSide;
use crate::domain::OhlcBar;
use crate::messages::orders::ProposeError;
use crate::risk::{Intent, Purpose};
use chrono::{TimeZone, Utc};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// The RiskManager and the gate it shares.
struct Risk {
    addr: Addr<RiskManager>,
    gate: SharedGate,
}

impl Risk {
    /// A proposal, as the OrderManager makes it: the approved order's reference price.
    fn propose(&self, intent: Intent, price: Option<i64>) -> Result<Decimal, ProposeError> {
        self.gate
            .lock()
            .propose(intent, price.map(Decimal::from), Utc::now())
            .map(|a| a.reference_price)
    }

    async fn tell<M>(&self, m: M)
    where
        M: Message<Result = ()> + Send + 'static,
        RiskManager: Handler<M>,
    {
        self.addr.send(m).await.unwrap();
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

fn refused_code(r: Result<Decimal, ProposeError>) -> Option<&'static str> {
    match r {
        Err(ProposeError::Refused(r)) => Some(r.code.as_str()),
        _ => None,
    }
}

/// Holds 100 MSFT; gross limit 60,000 US dollars; the account read and the market open.
async fn started() -> Risk {
    let limits = RiskLimits {
        max_gross_exposure_usd: Decimal::from(60_000),
        max_notional_per_symbol_usd: Decimal::from(100_000),
        ..RiskLimits::default()
    };
    let manager = RiskManager::new(limits, TradingMode::Active);
    let gate = manager.gate();
    let positions = BTreeMap::from([("MSFT".to_string(), Decimal::from(100))]);
    gate.lock().on_orders(&positions, 0, &Default::default());
    let risk = Risk {
        addr: manager.start(),
        gate,
    };
    let account = crate::messages::AccountSnapshot {
        equity: Decimal::from(100_000),
        buying_power: Decimal::from(200_000),
        start_of_day_equity: Decimal::from(100_000),
        market_open: true,
        ..Default::default()
    };
    risk.tell(AccountUpdated(account)).await;
    risk
}

#[actix::test]
async fn a_proposal_brings_its_price_and_a_minute_close_prices_the_rest() {
    let risk = started().await;
    // No price for AAPL from anywhere: refused, never guessed.
    assert_eq!(
        refused_code(risk.propose(entry("AAPL", 10), None)),
        Some("no_price")
    );
    // The price the strategy decided at is the check's price.
    assert_eq!(
        risk.propose(entry("AAPL", 10), Some(150)),
        Ok(Decimal::from(150))
    );
    // MSFT unpriced counts nothing toward gross: 200 AAPL at 150 = 30,000 fits under 60,000.
    assert!(risk.propose(entry("AAPL", 200), Some(150)).is_ok());
    // A warm-up bar prices MSFT where nothing did (100 × 250 = 25,000 held)...
    risk.tell(minute("MSFT", 250, true)).await;
    assert!(
        risk.propose(entry("AAPL", 200), Some(150)).is_ok(),
        "25,000 + 30,000 is under 60,000"
    );
    // ...but never over a live price: a later historical bar does not move it.
    risk.tell(minute("MSFT", 10, true)).await;
    // A live close does: 100 × 400 = 40,000 held, with 30,000 more it is past 60,000.
    risk.tell(minute("MSFT", 400, false)).await;
    assert_eq!(
        refused_code(risk.propose(entry("AAPL", 200), Some(150))),
        Some("gross_exposure")
    );
    // A split: the price in the old shares is forgotten until the next one comes.
    risk.tell(SplitApplied {
        symbol: "AAPL".into(),
        ratio: Some(Decimal::from(4)),
    })
    .await;
    assert_eq!(
        refused_code(risk.propose(entry("AAPL", 1), None)),
        Some("no_price")
    );
    let stats = risk.addr.send(GetRiskStats).await.unwrap();
    assert_eq!(stats.approved, 3);
    assert_eq!(stats.refused.get("no_price"), Some(&2));
    assert_eq!(stats.refused.get("gross_exposure"), Some(&1));
}

#[actix::test]
async fn the_book_the_order_side_tells_the_gate_holds_room_for_what_is_pending() {
    let risk = started().await;
    // At most 1,000 shares a symbol: 400 AAPL fits.
    assert!(risk.propose(entry("AAPL", 400), Some(10)).is_ok());
    // The order side took it and tells the gate its book: 400 AAPL pending.
    let positions = BTreeMap::from([("MSFT".to_string(), Decimal::from(100))]);
    let pending = crate::risk::SymbolMap::from([("AAPL".to_string(), Decimal::from(400))]);
    risk.gate.lock().on_orders(&positions, 1, &pending);
    // 700 more would be 1,100 with what is pending; 700 of another symbol fits.
    assert_eq!(
        refused_code(risk.propose(entry("AAPL", 700), Some(10))),
        Some("symbol_qty")
    );
    assert!(risk.propose(entry("NVDA", 700), Some(10)).is_ok());
}

#[actix::test]
async fn a_halt_pushed_by_the_feed_stops_entries_until_the_resumption() {
    let risk = started().await;
    let status = |halted| SymbolStatus {
        symbol: "AAPL".into(),
        halted,
    };
    risk.tell(status(true)).await;
    assert_eq!(
        refused_code(risk.propose(entry("AAPL", 1), Some(150))),
        Some("symbol_halted")
    );
    // Another symbol trades on.
    assert!(risk.propose(entry("NVDA", 1), Some(150)).is_ok());
    risk.tell(status(false)).await;
    assert!(risk.propose(entry("AAPL", 1), Some(150)).is_ok());
}

#[actix::test]
async fn a_live_bar_inside_the_session_opens_the_market_before_the_next_clock_read() {
    let risk = started().await;
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
    risk.tell(AccountUpdated(closed(at(14, 29)))).await;
    let bar = |h, m, historical| {
        let mut b = minute("AAPL", 150, historical);
        b.bar.start = at(h, m);
        b
    };
    let propose = || risk.propose(entry("AAPL", 1), Some(150));
    assert_eq!(refused_code(propose()), Some("market_closed"));
    // A pre-market bar and a warm-up bar inside the session open nothing.
    risk.tell(bar(14, 29, false)).await;
    risk.tell(bar(14, 31, true)).await;
    assert_eq!(refused_code(propose()), Some("market_closed"));
    // The session's first live bar does.
    risk.tell(bar(14, 30, false)).await;
    assert!(propose().is_ok());
    // A read made before that bar, answered late, does not close it again.
    risk.tell(AccountUpdated(closed(at(14, 29)))).await;
    assert!(propose().is_ok());
    // A bar at the close does.
    risk.tell(bar(21, 0, false)).await;
    assert_eq!(refused_code(propose()), Some("market_closed"));
}
