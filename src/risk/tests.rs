//! The risk checks, one refusal code at a time, and the limits they keep.

use super::*;
use chrono::TimeZone;
use rust_decimal_macros::dec;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 15, 0, 0).unwrap()
}

fn state() -> RiskState {
    RiskState {
        positions: SymbolMap::from([("AAPL".to_string(), dec!(10))]),
        last_trade: SymbolMap::from([
            ("AAPL".to_string(), dec!(100)),
            ("MSFT".to_string(), dec!(400)),
        ]),
        open_orders: 0,
        pending_qty: SymbolMap::new(),
        buying_power: dec!(100000),
        equity: dec!(100000),
        start_of_day_equity: dec!(100000),
        market_open: true,
        recent_orders: VecDeque::new(),
        halted: Default::default(),
    }
}

fn intent(symbol: &str, side: OrderSide, qty: Decimal, limit: Option<Decimal>) -> Intent {
    Intent {
        trace: Default::default(),
        strategy: None,
        symbol: symbol.into(),
        side,
        qty,
        limit_price: limit,
        correlation_id: "c".into(),
        purpose: Purpose::Exit,
    }
}

#[test]
fn table() {
    use OrderSide::{Buy, Sell};
    use RefusalCode::*;
    type Tweak = fn(&mut RiskState, &mut RiskLimits);
    let none: Tweak = |_, _| {};
    // (name, mode, intent, tweak, expected refusal or None for approval)
    let rows: Vec<(&str, TradingMode, Intent, Tweak, Option<RefusalCode>)> = vec![
        (
            "a plain buy",
            TradingMode::Active,
            intent("MSFT", Buy, dec!(5), None),
            none,
            None,
        ),
        (
            "halted sends nothing, not even a close",
            TradingMode::Halted,
            intent("AAPL", Sell, dec!(10), None),
            none,
            Some(ModeHalted),
        ),
        (
            "preserving blocks strategies",
            TradingMode::Preserving,
            intent("AAPL", Sell, dec!(10), None),
            none,
            Some(ModePreserving),
        ),
        (
            "preserved blocks strategies",
            TradingMode::Preserved,
            intent("MSFT", Buy, dec!(1), None),
            none,
            Some(ModePreserving),
        ),
        (
            "a trading halt refuses an entry",
            TradingMode::Active,
            intent("MSFT", Buy, dec!(5), None),
            |s, _| {
                s.halted.insert("MSFT".into());
            },
            Some(SymbolHalted),
        ),
        (
            "a trading halt lets a position be reduced",
            TradingMode::Active,
            intent("AAPL", Sell, dec!(4), None),
            |s, _| {
                s.halted.insert("AAPL".into());
            },
            None,
        ),
        (
            "reduce-only allows a partial close",
            TradingMode::ReduceOnly,
            intent("AAPL", Sell, dec!(4), None),
            none,
            None,
        ),
        (
            "reduce-only refuses a new position",
            TradingMode::ReduceOnly,
            intent("MSFT", Buy, dec!(1), None),
            none,
            Some(ModeReduceOnly),
        ),
        (
            "reduce-only refuses going through zero",
            TradingMode::ReduceOnly,
            intent("AAPL", Sell, dec!(11), None),
            none,
            Some(ModeReduceOnly),
        ),
        (
            "zero quantity",
            TradingMode::Active,
            intent("MSFT", Buy, dec!(0), None),
            none,
            Some(InvalidQty),
        ),
        (
            "market closed",
            TradingMode::Active,
            intent("MSFT", Buy, dec!(1), None),
            |s, _| s.market_open = false,
            Some(MarketClosed),
        ),
        (
            "no last trade",
            TradingMode::Active,
            intent("NVDA", Buy, dec!(1), None),
            none,
            Some(NoPrice),
        ),
        (
            "fat finger limit",
            TradingMode::Active,
            intent("MSFT", Buy, dec!(1), Some(dec!(440))),
            none,
            Some(PriceBand),
        ),
        (
            "limit inside the band",
            TradingMode::Active,
            intent("MSFT", Buy, dec!(1), Some(dec!(419))),
            none,
            None,
        ),
        (
            "order rate",
            TradingMode::Active,
            intent("MSFT", Buy, dec!(1), None),
            |s, l| {
                l.max_orders_per_minute = 2;
                s.recent_orders =
                    VecDeque::from([now() - Duration::seconds(30), now() - Duration::seconds(10)]);
            },
            Some(OrderRate),
        ),
        (
            "old orders leave the rate window",
            TradingMode::Active,
            intent("MSFT", Buy, dec!(1), None),
            |s, l| {
                l.max_orders_per_minute = 2;
                s.recent_orders =
                    VecDeque::from([now() - Duration::seconds(90), now() - Duration::seconds(10)]);
            },
            None,
        ),
        (
            "too many open orders",
            TradingMode::Active,
            intent("MSFT", Buy, dec!(1), None),
            |s, _| s.open_orders = 10,
            Some(MaxOpenOrders),
        ),
        (
            "daily loss limit blocks entries",
            TradingMode::Active,
            intent("MSFT", Buy, dec!(1), None),
            |s, _| s.equity = dec!(97999),
            Some(DailyLoss),
        ),
        (
            "daily loss limit allows exits",
            TradingMode::Active,
            intent("AAPL", Sell, dec!(10), None),
            |s, _| s.equity = dec!(90000),
            None,
        ),
        (
            "per-symbol quantity counts pending orders",
            TradingMode::Active,
            intent("AAPL", Buy, dec!(50), None),
            |s, l| {
                l.max_qty_per_symbol = dec!(100);
                s.pending_qty.insert("AAPL".into(), dec!(45));
            },
            Some(SymbolQty),
        ),
        (
            "per-symbol notional",
            TradingMode::Active,
            intent("MSFT", Buy, dec!(60), None),
            none,
            Some(SymbolNotional),
        ),
        (
            "max positions",
            TradingMode::Active,
            intent("MSFT", Buy, dec!(1), None),
            |_, l| l.max_positions = 1,
            Some(MaxPositions),
        ),
        (
            "adding to a held symbol is not a new position",
            TradingMode::Active,
            intent("AAPL", Buy, dec!(1), None),
            |_, l| l.max_positions = 1,
            None,
        ),
        (
            "gross exposure",
            TradingMode::Active,
            intent("MSFT", Buy, dec!(10), None),
            |_, l| l.max_gross_exposure_usd = dec!(4500),
            Some(GrossExposure),
        ),
        (
            "buying power",
            TradingMode::Active,
            intent("MSFT", Buy, dec!(10), None),
            |s, _| s.buying_power = dec!(3999),
            Some(BuyingPower),
        ),
        (
            "a short entry counts as exposure",
            TradingMode::Active,
            intent("MSFT", Sell, dec!(60), None),
            none,
            Some(SymbolNotional),
        ),
    ];
    for (name, mode, i, tweak, want) in rows {
        let (mut s, mut l) = (state(), RiskLimits::default());
        tweak(&mut s, &mut l);
        let got = check(i, &s, &l, mode, now());
        assert_eq!(got.as_ref().err().map(|r| r.code), want, "{name}: {got:?}");
    }
}

#[test]
fn absurd_values_are_refused_not_overflowed() {
    let limits = RiskLimits {
        max_qty_per_symbol: Decimal::MAX,
        max_notional_per_symbol_usd: Decimal::MAX,
        max_gross_exposure_usd: Decimal::MAX,
        ..RiskLimits::default()
    };
    let mut st = state();
    st.buying_power = Decimal::MAX;
    st.last_trade.insert("AAPL".into(), Decimal::MAX / dec!(2));
    st.positions.insert("MSFT".into(), Decimal::MAX);
    for (qty, symbol) in [
        (Decimal::MAX, "AAPL"),
        (dec!(79228162514264337593543950335), "MSFT"),
        (dec!(3), "AAPL"),
    ] {
        let r = check(
            intent(symbol, OrderSide::Buy, qty, None),
            &st,
            &limits,
            TradingMode::Active,
            now(),
        );
        assert_eq!(
            r.unwrap_err().code,
            RefusalCode::OutOfRange,
            "{qty} {symbol}"
        );
    }
}

#[test]
fn refusals_say_why() {
    let r = check(
        intent("MSFT", OrderSide::Buy, dec!(1), Some(dec!(500))),
        &state(),
        &RiskLimits::default(),
        TradingMode::Active,
        now(),
    )
    .unwrap_err();
    assert_eq!(
        r.to_string(),
        "risk refused MSFT Buy 1: price_band (price 500 is more than 5% from the last trade 400)"
    );
    let a = check(
        intent("AAPL", OrderSide::Sell, dec!(10), None),
        &state(),
        &RiskLimits::default(),
        TradingMode::Active,
        now(),
    )
    .unwrap();
    assert!(a.reduces_only);
    assert_eq!(a.reference_price, dec!(100));
}

#[test]
fn closing_orders_pass_in_every_mode_but_halted_and_only_if_they_reduce() {
    use OrderSide::{Buy, Sell};
    let mut closing = intent("AAPL", Sell, dec!(10), None);
    closing.purpose = Purpose::Flatten;
    let mut st = state();
    // No price, market closed, rate exhausted: a close still goes out.
    st.last_trade.clear();
    st.market_open = false;
    let limits = RiskLimits {
        max_orders_per_minute: 0,
        ..RiskLimits::default()
    };
    for mode in [
        TradingMode::Active,
        TradingMode::ReduceOnly,
        TradingMode::Preserving,
        TradingMode::Preserved,
    ] {
        let ok = check(closing.clone(), &st, &limits, mode, now());
        assert!(ok.is_ok_and(|a| a.reduces_only), "{mode:?}");
    }
    let halted = check(closing.clone(), &st, &limits, TradingMode::Halted, now());
    assert_eq!(halted.unwrap_err().code, RefusalCode::ModeHalted);
    // A "close" that would go through zero, or add, is refused.
    let mut through = intent("AAPL", Sell, dec!(11), None);
    through.purpose = Purpose::Flatten;
    assert_eq!(
        check(through, &st, &limits, TradingMode::Preserving, now())
            .unwrap_err()
            .code,
        RefusalCode::InvalidQty
    );
    let mut adds = intent("AAPL", Buy, dec!(1), None);
    adds.purpose = Purpose::Protect { trail_pct: dec!(1) };
    assert!(check(adds, &st, &limits, TradingMode::Active, now()).is_err());
    // A protective stop is for active and reduce-only; while preserving it is refused.
    let mut guard = intent("AAPL", Sell, dec!(10), None);
    guard.purpose = Purpose::Protect { trail_pct: dec!(1) };
    for (mode, passes) in [
        (TradingMode::Active, true),
        (TradingMode::ReduceOnly, true),
        (TradingMode::Preserving, false),
        (TradingMode::Preserved, false),
        (TradingMode::Halted, false),
    ] {
        let r = check(guard.clone(), &st, &limits, mode, now());
        assert_eq!(r.is_ok(), passes, "{mode:?}");
    }
}
