//! Property tests of the simulator's books: for any sequence of orders, cancels, closes and
//! market movement, the account's numbers are what its fills say they must be.
//!
//! - a position's quantity is the sum of its signed fills;
//! - cash is the starting cash less the signed cost of every fill, to the last digit;
//! - equity is cash plus the market value of every position at the market's last price;
//! - no order fills more than its quantity, and its fills add up to its `filled_qty`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use proptest::prelude::*;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use std::collections::HashMap;
use traderd::alpaca::model::*;
use traderd::sim::calendar::{Session, Timeline};
use traderd::sim::engine::{AccountSettings, AssetInfo, CloseQty, Engine};
use traderd::sim::market::Market;

const SYMBOLS: [&str; 3] = ["AAPL", "SPY", "AMD"];
const CASH: Decimal = dec!(1000000);

#[derive(Debug, Clone)]
enum Op {
    Advance(u32),
    Market {
        sym: usize,
        buy: bool,
        qty: u32,
    },
    Limit {
        sym: usize,
        buy: bool,
        qty: u32,
        offset_bp: i32,
    },
    Ioc {
        sym: usize,
        buy: bool,
        qty: u32,
    },
    CancelAll,
    Close {
        sym: usize,
        pct: u32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u32..=120).prop_map(Op::Advance),
        3 => (0usize..3, any::<bool>(), 1u32..=1500).prop_map(|(sym, buy, qty)| Op::Market { sym, buy, qty }),
        2 => (0usize..3, any::<bool>(), 1u32..=300, -50i32..=50).prop_map(|(sym, buy, qty, offset_bp)| Op::Limit { sym, buy, qty, offset_bp }),
        1 => (0usize..3, any::<bool>(), 1u32..=3000).prop_map(|(sym, buy, qty)| Op::Ioc { sym, buy, qty }),
        1 => Just(Op::CancelAll),
        1 => (0usize..3, 1u32..=100).prop_map(|(sym, pct)| Op::Close { sym, pct }),
    ]
}

struct World {
    market: Market,
    engine: Engine,
    clock: f64,
}

impl World {
    fn new(seed: u64) -> World {
        let timeline = Timeline::new(Session::on(
            chrono::NaiveDate::from_ymd_opt(2026, 11, 20).unwrap(),
        ));
        let symbols: Vec<String> = SYMBOLS.iter().map(|s| s.to_string()).collect();
        let market = Market::new(seed, &symbols, timeline, 1);
        let assets = symbols
            .iter()
            .map(|s| AssetInfo {
                id: traderd::sim::asset_id(s),
                symbol: s.clone(),
                exchange: "NASDAQ".into(),
                prev_close: market.last_price(s).unwrap(),
            })
            .collect();
        let settings = AccountSettings {
            initial_cash: CASH,
            multiplier: Decimal::TWO,
        };
        let mut engine = Engine::new(seed, settings, assets, timeline.to_utc(0.0));
        for s in &symbols {
            engine.set_mark(s, market.last_price(s).unwrap());
        }
        let mut w = World {
            market,
            engine,
            clock: 0.0,
        };
        w.advance(1);
        w
    }

    fn advance(&mut self, seconds: u32) {
        self.clock += f64::from(seconds);
        let events = self.market.advance_to(self.clock);
        self.engine.on_market(&events);
    }

    fn apply(&mut self, op: &Op) {
        let side = |buy: bool| if buy { OrderSide::Buy } else { OrderSide::Sell };
        // Refusals (buying power, quantity) are part of the game; they must not change the books.
        let _ = match *op {
            Op::Advance(s) => {
                self.advance(s);
                Ok(())
            }
            Op::Market { sym, buy, qty } => self
                .engine
                .submit(OrderRequest::market(
                    SYMBOLS[sym],
                    side(buy),
                    Decimal::from(qty),
                ))
                .map(|_| ()),
            Op::Limit {
                sym,
                buy,
                qty,
                offset_bp,
            } => {
                let last = self.market.last_price(SYMBOLS[sym]).unwrap();
                let price =
                    (last * (Decimal::ONE + Decimal::new(i64::from(offset_bp), 4))).round_dp(2);
                let req = OrderRequest::limit(SYMBOLS[sym], side(buy), Decimal::from(qty), price)
                    .with_time_in_force(TimeInForce::Gtc);
                self.engine.submit(req).map(|_| ())
            }
            Op::Ioc { sym, buy, qty } => self
                .engine
                .submit(
                    OrderRequest::market(SYMBOLS[sym], side(buy), Decimal::from(qty))
                        .with_time_in_force(TimeInForce::Ioc),
                )
                .map(|_| ()),
            Op::CancelAll => {
                self.engine.cancel_all();
                Ok(())
            }
            Op::Close { sym, pct } => self
                .engine
                .close_position(SYMBOLS[sym], CloseQty::Percentage(Decimal::from(pct)))
                .map(|_| ()),
        };
    }

    fn check(&self) -> Result<(), TestCaseError> {
        let fills = self.engine.activities();
        let mut position: HashMap<&str, Decimal> = HashMap::new();
        let mut cash = CASH;
        let mut per_order: HashMap<uuid::Uuid, Decimal> = HashMap::new();
        for f in fills {
            let sign = if f.side == "buy" {
                Decimal::ONE
            } else {
                Decimal::NEGATIVE_ONE
            };
            *position.entry(f.symbol.as_str()).or_default() += sign * f.qty;
            cash -= sign * f.qty * f.price;
            *per_order.entry(f.order_id).or_default() += f.qty;
        }
        prop_assert_eq!(
            self.engine.cash(),
            cash,
            "cash is the starting cash less the fills"
        );
        let mut equity = cash;
        for sym in SYMBOLS {
            let held = self
                .engine
                .position_book(sym)
                .map(|p| p.qty)
                .unwrap_or_default();
            let from_fills = position.get(sym).copied().unwrap_or_default();
            prop_assert_eq!(held, from_fills, "{}: position = sum of fills", sym);
            equity += held * self.market.last_price(sym).unwrap();
        }
        let account = self.engine.account();
        prop_assert_eq!(
            account.equity,
            equity.round_dp(2),
            "equity = cash + market value"
        );
        prop_assert_eq!(account.cash, cash.round_dp(2));
        prop_assert!(account.buying_power >= Decimal::ZERO);
        for order in self.engine.all_orders() {
            let filled = per_order.get(&order.id).copied().unwrap_or_default();
            prop_assert_eq!(
                order.filled_qty,
                filled,
                "order {}'s fills add up",
                order.id
            );
            if let Some(q) = order.qty {
                prop_assert!(order.filled_qty <= q, "order {} overfilled", order.id);
            }
        }
        for p in self.engine.positions() {
            prop_assert_eq!(
                p.market_value.unwrap(),
                (p.qty * p.current_price.unwrap()).round_dp(4)
            );
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn books_always_agree_with_fills(seed in 0u64..1000, ops in prop::collection::vec(op(), 1..40)) {
        let mut world = World::new(seed);
        for op in &ops {
            world.apply(op);
            world.check()?;
        }
    }
}

#[test]
fn a_full_session_expires_day_orders_and_rolls_last_equity() {
    let mut w = World::new(3);
    w.apply(&Op::Market {
        sym: 0,
        buy: true,
        qty: 100,
    });
    let last = w.market.last_price("AAPL").unwrap();
    let far = (last * dec!(0.5)).round_dp(2);
    let day = w
        .engine
        .submit(OrderRequest::limit("SPY", OrderSide::Buy, dec!(1), far))
        .unwrap();
    let gtc = w
        .engine
        .submit(
            OrderRequest::limit("SPY", OrderSide::Buy, dec!(1), far)
                .with_time_in_force(TimeInForce::Gtc),
        )
        .unwrap();
    w.advance(23_400);
    let orders: HashMap<_, _> = w
        .engine
        .all_orders()
        .into_iter()
        .map(|o| (o.id, o.status))
        .collect();
    assert_eq!(orders[&day.id], OrderStatus::Expired);
    assert_eq!(orders[&gtc.id], OrderStatus::New);
    let account = w.engine.account();
    assert_ne!(
        account.last_equity, CASH,
        "last_equity is the equity at the close"
    );
    w.check().unwrap();
}
