//! Property: reconciliation never reports a mismatch when broker and journal agree, whatever the
//! order in which fills happen at the broker, reach the daemon (stream events, late or
//! repeated; REST polls; POST answers), and reconciliation reads begin, read the broker's
//! positions and come back. And a real difference (a position changed with no fill of ours)
//! is confirmed by the second read once everything has settled.
//!
//! The order side's real parts are used: the [`OrderBook`] folds every report by cumulative
//! quantity, the [`PositionCheck`] books the fills and judges each read, as the OrderManager
//! drives them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, VecDeque};
use traderd::alpaca::model::*;
use traderd::journal::OrderIntent;
use traderd::orders::book::{Change, OrderBook};
use traderd::orders::positions::{PositionCheck, ReadToken, Verdict};
use uuid::Uuid;

const SYMBOLS: [&str; 3] = ["AAPL", "MSFT", "SPY"];

#[derive(Debug, Clone)]
enum Step {
    /// The daemon sends an order (tracked before the request leaves).
    Place { symbol: usize, buy: bool, qty: u8 },
    /// The broker fills part (or all) of an open order.
    BrokerFill { order: usize, qty: u8 },
    /// The broker cancels an open order (what was filled stays).
    BrokerCancel { order: usize },
    /// The oldest stream event reaches the daemon.
    Deliver,
    /// A stream event is seen again (a repeat after a reconnect).
    Redeliver { back: usize },
    /// A REST poll or a POST answer: the broker's current view of one order.
    Poll { order: usize },
    /// A reconciliation begins (takes its token).
    BeginRead,
    /// The oldest begun read reads the broker's positions now.
    ReadPositions,
    /// The oldest read that has its positions comes back and is judged.
    Apply,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (0..SYMBOLS.len(), any::<bool>(), 1u8..20).prop_map(|(symbol, buy, qty)| Step::Place { symbol, buy, qty }),
        3 => (0usize..64, 1u8..20).prop_map(|(order, qty)| Step::BrokerFill { order, qty }),
        1 => (0usize..64).prop_map(|order| Step::BrokerCancel { order }),
        4 => Just(Step::Deliver),
        1 => (0usize..8).prop_map(|back| Step::Redeliver { back }),
        1 => (0usize..64).prop_map(|order| Step::Poll { order }),
        2 => Just(Step::BeginRead),
        2 => Just(Step::ReadPositions),
        2 => Just(Step::Apply),
    ]
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 14, 30, 0).unwrap()
}

/// One order as the broker keeps it.
#[derive(Debug, Clone)]
struct BrokerOrder {
    id: Uuid,
    coid: String,
    symbol: String,
    side: OrderSide,
    qty: Decimal,
    filled: Decimal,
    notional: Decimal,
    status: OrderStatus,
}

impl BrokerOrder {
    fn view(&self) -> Order {
        Order {
            id: self.id,
            client_order_id: self.coid.clone(),
            created_at: t0(),
            updated_at: t0(),
            submitted_at: t0(),
            filled_at: None,
            expired_at: None,
            expires_at: None,
            canceled_at: None,
            failed_at: None,
            replaced_at: None,
            replaced_by: None,
            replaces: None,
            asset_id: Uuid::nil(),
            symbol: self.symbol.clone(),
            asset_class: AssetClass::UsEquity,
            notional: None,
            qty: Some(self.qty),
            filled_qty: self.filled,
            filled_avg_price: (self.filled > Decimal::ZERO).then(|| self.notional / self.filled),
            order_class: OrderClass::Simple,
            order_type: OrderType::Market,
            kind: OrderType::Market,
            side: self.side,
            position_intent: None,
            time_in_force: TimeInForce::Day,
            limit_price: None,
            stop_price: None,
            trail_price: None,
            trail_percent: None,
            hwm: None,
            status: self.status,
            extended_hours: false,
            legs: None,
            ratio_qty: None,
            subtag: None,
            source: None,
        }
    }
}

/// The broker and the daemon's order side, and the reads in progress.
#[derive(Default)]
struct World {
    orders: Vec<BrokerOrder>,
    positions: BTreeMap<String, Decimal>,
    /// Stream events not yet delivered (the order as it was at the event), and those delivered.
    stream: VecDeque<Order>,
    delivered: Vec<Order>,
    book: OrderBook,
    check: PositionCheck,
    /// Reads begun: their token, and the broker's positions once read.
    reads: VecDeque<(ReadToken, Option<BTreeMap<String, Decimal>>)>,
    verdicts: Vec<(String, Verdict)>,
    /// Fills the daemon would book for a shared average (the book needs a price).
    price: Decimal,
}

impl World {
    fn new() -> Self {
        World {
            price: Decimal::from(100),
            ..Default::default()
        }
    }

    fn fold(&mut self, order: &Order) {
        for e in self.book.on_order(order) {
            if let Change::Fill(f) = e {
                self.check.book(&f.symbol, f.side.sign() * f.qty);
            }
        }
    }

    fn open_order(&mut self, pick: usize) -> Option<usize> {
        let open: Vec<usize> = (0..self.orders.len())
            .filter(|i| self.orders[*i].status.is_open())
            .collect();
        (!open.is_empty()).then(|| open[pick % open.len()])
    }

    fn run(&mut self, step: &Step) {
        match step {
            Step::Place { symbol, buy, qty } => {
                let n = self.orders.len();
                let side = if *buy {
                    OrderSide::Buy
                } else {
                    OrderSide::Sell
                };
                let o = BrokerOrder {
                    id: Uuid::from_u128(n as u128 + 1),
                    coid: format!("td-1-{n:x}-{}", SYMBOLS[*symbol]),
                    symbol: SYMBOLS[*symbol].to_string(),
                    side,
                    qty: Decimal::from(*qty),
                    filled: Decimal::ZERO,
                    notional: Decimal::ZERO,
                    status: OrderStatus::New,
                };
                self.book.track(
                    &OrderIntent {
                        client_order_id: o.coid.clone(),
                        symbol: o.symbol.clone(),
                        side,
                        qty: o.qty,
                        request: serde_json::Value::Null,
                        correlation_id: Default::default(),
                        created_at: t0(),
                    },
                    t0(),
                );
                self.stream.push_back(o.view());
                self.orders.push(o);
            }
            Step::BrokerFill { order, qty } => {
                let Some(i) = self.open_order(*order) else {
                    return;
                };
                let price = self.price;
                let o = &mut self.orders[i];
                let q = Decimal::from(*qty).min(o.qty - o.filled);
                o.filled += q;
                o.notional += q * price;
                o.status = if o.filled == o.qty {
                    OrderStatus::Filled
                } else {
                    OrderStatus::PartiallyFilled
                };
                *self.positions.entry(o.symbol.clone()).or_default() += o.side.sign() * q;
                let view = o.view();
                self.stream.push_back(view);
                self.price += Decimal::ONE;
            }
            Step::BrokerCancel { order } => {
                let Some(i) = self.open_order(*order) else {
                    return;
                };
                self.orders[i].status = OrderStatus::Canceled;
                let view = self.orders[i].view();
                self.stream.push_back(view);
            }
            Step::Deliver => {
                if let Some(o) = self.stream.pop_front() {
                    self.fold(&o);
                    self.delivered.push(o);
                }
            }
            Step::Redeliver { back } => {
                if let Some(o) = self.delivered.iter().rev().nth(*back).cloned() {
                    self.fold(&o);
                }
            }
            Step::Poll { order } => {
                if self.orders.is_empty() {
                    return;
                }
                let o = self.orders[order % self.orders.len()].view();
                self.fold(&o);
            }
            Step::BeginRead => {
                let token = self.check.begin_read();
                self.reads.push_back((token, None));
            }
            Step::ReadPositions => {
                let positions = self.positions.clone();
                if let Some(r) = self.reads.iter_mut().find(|r| r.1.is_none()) {
                    r.1 = Some(positions);
                }
            }
            Step::Apply => {
                if self.reads.front().is_some_and(|r| r.1.is_some()) {
                    let (token, positions) = self.reads.pop_front().unwrap();
                    self.judge(token, &positions.unwrap());
                }
            }
        }
    }

    fn judge(&mut self, token: ReadToken, positions: &BTreeMap<String, Decimal>) {
        let book = &self.book;
        let unsettled = |s: &str| book.open().any(|t| t.symbol == s);
        let v = self.check.judge(token, positions, unsettled, false);
        self.verdicts.extend(v);
    }

    /// Everything reaches the daemon and every order ends.
    fn settle(&mut self) {
        for i in 0..self.orders.len() {
            if self.orders[i].status.is_open() {
                self.orders[i].status = OrderStatus::Canceled;
                let view = self.orders[i].view();
                self.stream.push_back(view);
            }
        }
        while let Some(o) = self.stream.pop_front() {
            self.fold(&o);
        }
    }

    fn read_now(&mut self) -> Vec<(String, Verdict)> {
        let token = self.check.begin_read();
        let positions = self.positions.clone();
        let before = self.verdicts.len();
        self.judge(token, &positions);
        self.verdicts.split_off(before)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_mismatch_is_reported_when_broker_and_journal_agree(steps in prop::collection::vec(step(), 1..200)) {
        let mut w = World::new();
        for s in &steps {
            w.run(s);
        }
        for (symbol, v) in &w.verdicts {
            prop_assert!(
                matches!(v, Verdict::Agrees | Verdict::Inconclusive | Verdict::Unsettled),
                "{symbol}: {v:?} although no fill was lost or invented"
            );
        }
        // Once everything has reached the daemon, every read agrees.
        w.settle();
        for (symbol, v) in w.read_now() {
            prop_assert_eq!(v, Verdict::Agrees, "{} after settling", symbol);
        }
    }

    #[test]
    fn a_real_difference_is_confirmed_by_the_second_read(
        steps in prop::collection::vec(step(), 1..120),
        symbol in 0..SYMBOLS.len(),
        change in 1i64..50,
    ) {
        let mut w = World::new();
        for s in &steps {
            w.run(s);
        }
        w.settle();
        // A position changes at the broker with no fill of ours (a split, a transfer).
        *w.positions.entry(SYMBOLS[symbol].to_string()).or_default() += Decimal::from(change);
        let first: Vec<_> = w.read_now().into_iter().filter(|(s, _)| s == SYMBOLS[symbol]).collect();
        prop_assert!(matches!(first[0].1, Verdict::Suspected { .. }), "{:?}", first);
        let second: Vec<_> = w.read_now().into_iter().filter(|(s, _)| s == SYMBOLS[symbol]).collect();
        prop_assert!(matches!(second[0].1, Verdict::Confirmed { .. }), "{:?}", second);
    }
}
