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
