//! Property: whatever the strategy asks, in whatever order, an approved order never takes the
//! book past a configured limit (orders fill at the price risk checked them at).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use chrono::{Duration, TimeZone, Utc};
use proptest::prelude::*;
use rust_decimal::Decimal;
use traderd::alpaca::model::OrderSide;
use traderd::risk::{Intent, Purpose, RiskLimits, RiskState, TradingMode, check};

const SYMBOLS: [&str; 4] = ["AAPL", "MSFT", "SPY", "AMD"];

#[derive(Debug, Clone)]
struct Step {
    symbol: usize,
    buy: bool,
    qty: i64,
    limit_offset_bp: Option<i64>,
    price_move_bp: i64,
    seconds: i64,
}

fn step() -> impl Strategy<Value = Step> {
    (
        0usize..4,
        any::<bool>(),
        1i64..400,
        prop::option::of(-800i64..800),
        -300i64..300,
        0i64..20,
    )
        .prop_map(
            |(symbol, buy, qty, limit_offset_bp, price_move_bp, seconds)| Step {
                symbol,
                buy,
                qty,
                limit_offset_bp,
                price_move_bp,
                seconds,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn approved_orders_never_breach_a_limit(steps in prop::collection::vec(step(), 1..120)) {
        let limits = RiskLimits {
            max_qty_per_symbol: Decimal::from(300),
            max_notional_per_symbol_usd: Decimal::from(30_000),
            max_gross_exposure_usd: Decimal::from(60_000),
            max_positions: 3,
            max_open_orders: 10,
            max_orders_per_minute: 20,
            price_band_pct: Decimal::from(5),
            daily_loss_limit_usd: Decimal::from(5_000),
            require_market_open: true,
        };
        let mut state = RiskState {
            last_trade: SYMBOLS.iter().zip([190i64, 420, 550, 150]).map(|(s, p)| (s.to_string(), Decimal::from(p))).collect(),
            buying_power: Decimal::from(200_000),
            equity: Decimal::from(100_000),
            start_of_day_equity: Decimal::from(100_000),
            market_open: true,
            ..RiskState::default()
        };
        let mut cash = Decimal::from(100_000);
        let mut now = Utc.with_ymd_and_hms(2026, 11, 20, 14, 30, 0).unwrap();
        for s in steps {
            now += Duration::seconds(s.seconds);
            let sym = SYMBOLS[s.symbol].to_string();
            let last = state.last_trade[&sym];
            let moved = (last * (Decimal::ONE + Decimal::new(s.price_move_bp, 4))).round_dp(2).max(Decimal::ONE);
            state.last_trade.insert(sym.clone(), moved);
            let mv: Decimal = state.positions.iter().map(|(k, q)| *q * state.last_trade[k]).sum();
            state.equity = cash + mv;
            let limit = s.limit_offset_bp.map(|bp| (moved * (Decimal::ONE + Decimal::new(bp, 4))).round_dp(2));
            let side = if s.buy { OrderSide::Buy } else { OrderSide::Sell };
            let intent = Intent { symbol: sym.clone(), side, qty: Decimal::from(s.qty), limit_price: limit, correlation_id: "p".into(), trace: Default::default(), strategy: None, purpose: if s.buy { Purpose::Entry { take_profit: None, stop_loss: None, trail_pct: None } } else { Purpose::Exit } };
            let Ok(approved) = check(intent, &state, &limits, TradingMode::Active, now) else { continue };
            // Fill at the checked price.
            let price = approved.reference_price;
            let delta = side.sign() * Decimal::from(s.qty);
            let q = state.positions.entry(sym.clone()).or_default();
            *q += delta;
            cash -= delta * price;
            state.recent_orders.push_back(now);
            while state.recent_orders.len() > 100 { state.recent_orders.pop_front(); }
            prop_assert!((price - moved).abs() <= moved * limits.price_band_pct / Decimal::ONE_HUNDRED, "price band");
            prop_assert!(state.recent_orders.iter().filter(|t| **t > now - Duration::minutes(1)).count() <= limits.max_orders_per_minute, "order rate");
            if !approved.reduces_only {
                let held = state.positions[&sym];
                prop_assert!(held.abs() <= limits.max_qty_per_symbol, "{sym} qty {held}");
                prop_assert!(held.abs() * price <= limits.max_notional_per_symbol_usd, "{sym} notional");
                let open = state.positions.values().filter(|q| !q.is_zero()).count();
                prop_assert!(open <= limits.max_positions, "{open} positions");
                // Valued as risk values them: the traded symbol at the higher of price and last.
                let value = price.max(moved);
                prop_assert!(held.abs() * value <= limits.max_notional_per_symbol_usd, "{sym} notional at the higher price");
                let gross: Decimal = state.positions.iter().map(|(k, q)| q.abs() * if *k == sym { value } else { state.last_trade[k] }).sum();
                prop_assert!(gross <= limits.max_gross_exposure_usd, "gross {gross}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    /// What the backtest relies on to size nothing for entries refused at the pace checks: for
    /// an entry from flat at the last trade (market, in the band), in a mode that trades, the
    /// full check refuses exactly when `pace` does, with its code, whatever the size, the
    /// protection and the rest of the account.
    #[test]
    fn an_entry_from_flat_is_refused_at_pace_exactly_when_pace_refuses(
        open_orders in 0usize..14,
        recent in 0usize..40,
        max_open_orders in 1usize..12,
        max_per_minute in 1usize..30,
        qty in 1i64..5_000,
        price_cents in 1i64..1_000_000,
        buy in any::<bool>(),
        held in prop::collection::vec((0usize..4, -500i64..500), 0..4),
        equity in 1_000i64..1_000_000,
        take_profit in prop::option::of(1i64..1_000_000),
    ) {
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 15, 0, 0).unwrap();
        let limits = RiskLimits {
            max_open_orders,
            max_orders_per_minute: max_per_minute,
            ..RiskLimits::default()
        };
        let price = Decimal::new(price_cents, 2);
        let mut state = RiskState {
            open_orders,
            equity: Decimal::from(equity),
            start_of_day_equity: Decimal::from(equity),
            buying_power: Decimal::from(equity),
            market_open: true,
            ..RiskState::default()
        };
        state.last_trade.insert("NEW".into(), price);
        for (s, q) in held {
            state.positions.insert(SYMBOLS[s].into(), Decimal::from(q));
            state.last_trade.insert(SYMBOLS[s].into(), Decimal::from(100));
        }
        for i in 0..recent {
            state.recent_orders.push_back(now - Duration::seconds(i as i64 * 3));
        }
        let side = if buy { OrderSide::Buy } else { OrderSide::Sell };
        let intent = Intent::market("NEW", side, Decimal::from(qty), Purpose::Entry {
            take_profit: take_profit.map(|c| Decimal::new(c, 2)),
            stop_loss: None,
            trail_pct: None,
        });
        let full = check(intent, &state, &limits, TradingMode::Active, now)
            .map(|_| ())
            .map_err(|r| r.code);
        match traderd::risk::pace(&state, &limits, now) {
            Err(code) => prop_assert_eq!(full, Err(code)),
            Ok(()) => prop_assert!(
                !matches!(full, Err(c) if c.as_str() == "order_rate" || c.as_str() == "max_open_orders"),
                "{:?}",
                full
            ),
        }
    }
}

mod buys_a_share {
    use proptest::prelude::*;
    use rust_decimal::Decimal;
    use traderd::strategy::{Protection, Sizing, buys_a_share, entry_qty};

    fn decimal() -> impl Strategy<Value = Decimal> {
        (
            any::<u32>(),
            any::<u32>(),
            prop_oneof![Just(0u32), any::<u32>()],
            any::<bool>(),
            0u32..=28,
        )
            .prop_map(|(lo, mid, hi, negative, scale)| {
                Decimal::from_parts(lo, mid, hi, negative, scale)
            })
    }

    /// `entry_qty`'s answer for a fixed notional, where its division does not overflow.
    fn reference(notional: Decimal, price: Decimal) -> Option<bool> {
        if price > Decimal::ZERO && notional.checked_div(price).is_none() {
            return None;
        }
        Some(
            entry_qty(
                price,
                Decimal::ZERO,
                Sizing::FixedNotional { usd: notional },
                Protection::None,
            )
            .is_some(),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 20_000, ..ProptestConfig::default() })]

        /// The replay asks `buys_a_share` where the daemon would size the entry: the same
        /// answer for any notional and price, and for those a hair apart.
        #[test]
        fn is_entry_qtys_answer(notional in decimal(), price in decimal()) {
            if let Some(expected) = reference(notional, price) {
                prop_assert_eq!(buys_a_share(notional, price), expected, "{} / {}", notional, price);
            }
        }

        #[test]
        fn is_entry_qtys_answer_a_hair_apart(price in decimal(), gap in decimal(), shift in 0u32..=28) {
            let gap = gap / Decimal::from_i128_with_scale(10_i128.pow(shift), 0);
            let near = [
                price.checked_sub(gap),
                price.checked_add(gap),
                gap.checked_mul(price).and_then(|g| price.checked_sub(g)),
                Some(price),
            ];
            for notional in near.into_iter().flatten() {
                if let Some(expected) = reference(notional, price) {
                    prop_assert_eq!(buys_a_share(notional, price), expected, "{} / {}", notional, price);
                }
            }
        }
    }
}

/// One change the risk gate is told of, or a proposal.
#[derive(Debug, Clone)]
enum GateStep {
    /// The order side's book: a quantity (cents of a share) per symbol, 0 for none.
    Book([i64; 4]),
    Minute {
        symbol: usize,
        cents: i64,
        historical: bool,
    },
    Split(usize),
    Propose {
        symbol: usize,
        buy: bool,
        qty: i64,
        cents: Option<i64>,
        seconds: i64,
    },
}

fn gate_step() -> impl Strategy<Value = GateStep> {
    prop_oneof![
        prop::array::uniform4(-50_000i64..50_000).prop_map(GateStep::Book),
        (0usize..4, 1i64..100_000, any::<bool>()).prop_map(|(symbol, cents, historical)| {
            GateStep::Minute {
                symbol,
                cents,
                historical,
            }
        }),
        (0usize..4).prop_map(GateStep::Split),
        (
            0usize..4,
            any::<bool>(),
            1i64..300,
            prop::option::of(1i64..100_000),
            0i64..30
        )
            .prop_map(|(symbol, buy, qty, cents, seconds)| GateStep::Propose {
                symbol,
                buy,
                qty,
                cents,
                seconds
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// The gate keeps its counts as the state changes rather than walking every position at
    /// each check: whatever it is told, in whatever order, it decides exactly as the plain
    /// check over the same state, and its counts are the ones counted from scratch.
    #[test]
    fn the_gate_decides_as_the_plain_check_over_the_same_state(steps in prop::collection::vec(gate_step(), 1..150)) {
        use traderd::risk::{AccountRead, RiskGate, Tally};
        let limits = RiskLimits {
            max_qty_per_symbol: Decimal::from(600),
            max_notional_per_symbol_usd: Decimal::from(40_000),
            max_gross_exposure_usd: Decimal::from(90_000),
            max_positions: 3,
            max_open_orders: 10,
            max_orders_per_minute: 15,
            price_band_pct: Decimal::from(5),
            daily_loss_limit_usd: Decimal::from(5_000),
            require_market_open: true,
        };
        let mut gate = RiskGate::new(limits.clone(), TradingMode::Active);
        gate.on_account(&AccountRead {
            buying_power: Decimal::from(150_000),
            equity: Decimal::from(100_000),
            start_of_day_equity: Decimal::from(100_000),
            market_open: true,
            ..Default::default()
        });
        let cents = |c: i64| Decimal::new(c, 2);
        let mut now = Utc.with_ymd_and_hms(2026, 12, 1, 15, 0, 0).unwrap();
        for step in steps {
            match step {
                GateStep::Book(q) => {
                    let positions: std::collections::BTreeMap<String, Decimal> =
                        SYMBOLS.iter().zip(q).map(|(s, q)| (s.to_string(), cents(q))).collect();
                    gate.on_orders(&positions, 0, &Default::default());
                }
                GateStep::Minute { symbol, cents: c, historical } => {
                    gate.on_minute(SYMBOLS[symbol].into(), cents(c), now, historical);
                }
                GateStep::Split(symbol) => gate.on_split(SYMBOLS[symbol]),
                GateStep::Propose { symbol, buy, qty, cents: c, seconds } => {
                    now += Duration::seconds(seconds);
                    let side = if buy { OrderSide::Buy } else { OrderSide::Sell };
                    let intent = Intent::market(SYMBOLS[symbol], side, Decimal::from(qty), Purpose::Entry {
                        take_profit: None,
                        stop_loss: None,
                        trail_pct: None,
                    });
                    let mut state = gate.state().clone();
                    if let Some(c) = c {
                        state.last_trade.insert(SYMBOLS[symbol].into(), cents(c));
                    }
                    let plain = check(intent.clone(), &state, &limits, TradingMode::Active, now)
                        .map(|a| a.reference_price)
                        .map_err(|r| r.code);
                    let gated = gate
                        .propose(intent, c.map(cents), now)
                        .map(|a| a.reference_price)
                        .map_err(|e| match e {
                            traderd::risk::ProposeError::Refused(r) => r.code,
                            other => panic!("{other}"),
                        });
                    prop_assert_eq!(gated, plain);
                }
            }
            let counted = Tally::of(gate.state(), now);
            prop_assert_eq!(gate.tally().positions_held, counted.positions_held);
            prop_assert_eq!(gate.tally().gross_held, counted.gross_held);
        }
    }
}
