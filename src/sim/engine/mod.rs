//! The simulated broker: orders, matching against the market model's quotes and trades, and
//! the account's books, all in `Decimal`. A plain synchronous state machine: the server feeds
//! it requests and market events and reads views back; nothing here does I/O or reads a clock.
//!
//! - [`submit`](Engine::submit), [`replace`](Engine::replace), [`cancel`](Engine::cancel),
//!   [`close_position`](Engine::close_position): the trading API's commands (in `commands.rs`).
//! - [`on_market`](Engine::on_market): quotes, trades and session closes (in `matching.rs`).
//! - Views: [`account`](Engine::account), [`positions`](Engine::positions), orders, activities.
//!
//! Every lifecycle change is also recorded as a [`TradeUpdate`] in an outbox for the
//! `trade_updates` stream.

mod amend;
mod books;
mod commands;
mod matching;
mod validate;

pub use books::PositionBook;
pub use commands::{CloseQty, ListOrdersFilter};

use crate::alpaca::model::*;
use chrono::{DateTime, Utc};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;
use rust_decimal::prelude::Signed;
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

/// A refusal in Alpaca's terms: HTTP status, Alpaca code, message and extra body fields.
#[derive(Debug, Clone, PartialEq)]
pub struct SimError {
    pub status: u16,
    pub code: u64,
    pub message: String,
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl SimError {
    pub fn new(status: u16, code: u64, message: impl Into<String>) -> Self {
        SimError {
            status,
            code,
            message: message.into(),
            extra: serde_json::Map::new(),
        }
    }
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(422, 40010001, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, 40310000, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, 40410000, message)
    }
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extra.insert(key.to_string(), value.into());
        self
    }
    pub fn body(&self) -> ApiErrorBody {
        ApiErrorBody {
            code: Some(self.code),
            message: self.message.clone(),
            extra: self.extra.clone(),
        }
    }
}

/// Facts about a tradable asset the engine needs.
#[derive(Debug, Clone)]
pub struct AssetInfo {
    pub id: Uuid,
    pub symbol: String,
    pub exchange: String,
    pub prev_close: Decimal,
}

/// How the simulated account starts.
#[derive(Debug, Clone)]
pub struct AccountSettings {
    pub initial_cash: Decimal,
    /// 1 for a cash account, 2 (Reg T) or 4 for margin.
    pub multiplier: Decimal,
}

impl Default for AccountSettings {
    fn default() -> Self {
        AccountSettings {
            initial_cash: Decimal::from(100_000),
            multiplier: Decimal::TWO,
        }
    }
}

/// The top of book the engine matches against: the last quote and what is left of it.
#[derive(Debug, Clone)]
struct TopOfBook {
    bid: Decimal,
    ask: Decimal,
    bid_left: Decimal,
    ask_left: Decimal,
}

/// An order with the simulator's private state beside its wire form.
#[derive(Debug, Clone)]
struct SimOrder {
    order: Order,
    parent: Option<Uuid>,
    legs: Vec<Uuid>,
    /// Shares to fill; for notional orders fixed at the first fill.
    target: Option<Decimal>,
    /// A stop or trailing stop whose trigger was hit.
    triggered: bool,
    /// Sum of quantity × price over the fills, exact: the average is derived from it.
    filled_cost: Decimal,
}

impl SimOrder {
    fn remaining(&self) -> Decimal {
        match self.target {
            Some(t) => (t - self.order.filled_qty).max(Decimal::ZERO),
            None => Decimal::ZERO,
        }
    }
    fn is_active(&self) -> bool {
        self.order.status.is_open() && self.order.status != OrderStatus::Held
    }
}

pub struct Engine {
    rng: ChaCha8Rng,
    settings: AccountSettings,
    account_id: Uuid,
    account_number: String,
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
    market_open: bool,
    cash: Decimal,
    last_equity: Decimal,
    positions: BTreeMap<String, PositionBook>,
    assets: BTreeMap<String, AssetInfo>,
    marks: HashMap<String, Decimal>,
    books: HashMap<String, TopOfBook>,
    orders: Vec<SimOrder>,
    index: HashMap<Uuid, usize>,
    /// Per symbol, where in `orders` its orders not known final are (pruned as they end):
    /// matching looks at these, not at every order ever placed.
    unfinished: HashMap<String, Vec<usize>>,
    /// The open of the session `now` is in and the next one's, while `now` stays between.
    session_span: Option<(DateTime<Utc>, DateTime<Utc>)>,
    by_client_id: HashMap<String, Uuid>,
    activities: Vec<TradeActivity>,
    /// The close of the session `now` is in (or the last one): when day orders expire.
    session_close: DateTime<Utc>,
    /// The last session whose balances are settled (the one before today's).
    balance_asof: chrono::NaiveDate,
    /// Non-trade activities: SPLIT so far.
    other_activities: Vec<NonTradeActivity>,
    configurations: AccountConfigurations,
    outbox: Vec<TradeUpdate>,
}

impl Engine {
    pub fn new(
        seed: u64,
        settings: AccountSettings,
        assets: Vec<AssetInfo>,
        now: DateTime<Utc>,
    ) -> Engine {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_acc0_u64);
        let account_id = random_uuid(&mut rng);
        let account_number = format!("PA{:010}", rng.next_u64() % 10_000_000_000);
        let marks = assets
            .iter()
            .map(|a| (a.symbol.clone(), a.prev_close))
            .collect();
        Engine {
            rng,
            account_id,
            account_number,
            created_at: now,
            now,
            market_open: true,
            cash: settings.initial_cash,
            last_equity: settings.initial_cash,
            settings,
            positions: BTreeMap::new(),
            assets: assets.into_iter().map(|a| (a.symbol.clone(), a)).collect(),
            marks,
            books: HashMap::new(),
            orders: Vec::new(),
            index: HashMap::new(),
            unfinished: HashMap::new(),
            session_span: None,
            by_client_id: HashMap::new(),
            activities: Vec::new(),
            other_activities: Vec::new(),
            session_close: crate::sim::calendar::latest_session_at_or_before(now).close,
            balance_asof: crate::sim::calendar::latest_session_at_or_before(now)
                .prev()
                .date,
            configurations: AccountConfigurations {
                // Removed from Alpaca's answer on 2026-07-06.
                dtbp_check: None,
                trade_confirm_email: Some("none".into()),
                suspend_trade: false,
                no_shorting: false,
                fractional_trading: true,
                max_margin_multiplier: Some("4".into()),
                pdt_check: None,
                ptp_no_exception_entry: false,
                max_options_trading_level: Some(0),
            },
            outbox: Vec::new(),
        }
    }

    /// Sets the engine's notion of now and whether the market is open.
    pub fn set_time(&mut self, now: DateTime<Utc>, market_open: bool) {
        self.now = self.now.max(now);
        self.market_open = market_open;
        // The session changes only when the next one opens: looked up then, not at every event.
        if self
            .session_span
            .is_some_and(|(open, next)| open <= self.now && self.now < next)
        {
            return;
        }
        let session = crate::sim::calendar::latest_session_at_or_before(self.now);
        self.session_close = session.close;
        self.balance_asof = session.prev().date;
        self.session_span = Some((session.open, session.next().open));
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    pub fn asset(&self, symbol: &str) -> Option<&AssetInfo> {
        self.assets.get(symbol)
    }

    /// The mark used for market values: last trade price, else the previous close.
    pub fn mark(&self, symbol: &str) -> Decimal {
        self.marks.get(symbol).copied().unwrap_or_default()
    }

    /// Sets the mark of a symbol (the simulator does this from the market at start).
    pub fn set_mark(&mut self, symbol: &str, price: Decimal) {
        match self.marks.get_mut(symbol) {
            Some(m) => *m = price,
            None => {
                self.marks.insert(symbol.to_string(), price);
            }
        }
    }

    /// Whether the market's prices of `symbol` matter to the account now: a position is held
    /// or an order may still fill. A backtest feeds only these symbols' prices to the engine.
    pub fn is_active(&self, symbol: &str) -> bool {
        self.positions.contains_key(symbol)
            || self.unfinished.get(symbol).is_some_and(|l| !l.is_empty())
    }

    pub fn cash(&self) -> Decimal {
        self.cash
    }

    pub fn position_book(&self, symbol: &str) -> Option<&PositionBook> {
        self.positions.get(symbol)
    }

    fn market_values(&self) -> (Decimal, Decimal) {
        let mut long = Decimal::ZERO;
        let mut short = Decimal::ZERO;
        for (symbol, p) in &self.positions {
            let mv = p.qty * self.mark(symbol);
            if p.qty.is_sign_negative() {
                short += mv
            } else {
                long += mv
            }
        }
        (long, short)
    }

    /// Cash plus the market value of every position.
    pub fn equity(&self) -> Decimal {
        let (long, short) = self.market_values();
        self.cash + long + short
    }

    /// The market value of the longs plus that of the shorts, both counted positive.
    pub fn gross_exposure(&self) -> Decimal {
        let (long, short) = self.market_values();
        long - short
    }

    /// What open orders that add exposure have reserved of the buying power.
    fn reserved(&self) -> Decimal {
        self.unfinished
            .values()
            .flatten()
            .filter_map(|&i| self.orders.get(i))
            .filter(|o| o.is_active() && self.adds_exposure(&o.order.symbol, o.order.side))
            .map(|o| match o.target {
                Some(_) => {
                    o.remaining()
                        * self.estimate_price(
                            &o.order.symbol,
                            o.order.side,
                            o.order.limit_price.or(o.order.stop_price),
                        )
                }
                None => o.order.notional.unwrap_or_default(),
            })
            .sum()
    }

    fn adds_exposure(&self, symbol: &str, side: OrderSide) -> bool {
        let qty = self
            .positions
            .get(symbol)
            .map(|p| p.qty)
            .unwrap_or_default();
        match side {
            OrderSide::Buy => !qty.is_sign_negative() || qty.is_zero(),
            OrderSide::Sell => qty.is_sign_negative() || qty.is_zero(),
        }
    }

    /// The price an order is expected to trade at, for buying-power checks.
    fn estimate_price(&self, symbol: &str, side: OrderSide, given: Option<Decimal>) -> Decimal {
        if let Some(p) = given {
            return p;
        }
        match (self.books.get(symbol), side) {
            (Some(b), OrderSide::Buy) => b.ask,
            (Some(b), OrderSide::Sell) => b.bid,
            _ => self.mark(symbol),
        }
    }

    pub fn buying_power(&self) -> Decimal {
        let (long, short) = self.market_values();
        let gross = long - short;
        (self.settings.multiplier * self.equity() - gross - self.reserved()).max(Decimal::ZERO)
    }

    pub fn account(&self) -> Account {
        let (long, short) = self.market_values();
        let equity = self.cash + long + short;
        let gross = long - short;
        let bp = self.buying_power();
        let margin_account = self.settings.multiplier > Decimal::ONE;
        let initial_margin = if margin_account {
            gross / Decimal::TWO
        } else {
            gross
        };
        let maintenance = long * Decimal::new(25, 2) - short * Decimal::new(30, 2);
        Account {
            id: self.account_id,
            account_number: self.account_number.clone(),
            status: AccountStatus::Active,
            crypto_status: Some(AccountStatus::Active),
            currency: "USD".into(),
            cash: self.cash.round_dp(2),
            portfolio_value: equity.round_dp(2),
            buying_power: bp.round_dp(2),
            regt_buying_power: Some(bp.round_dp(2)),
            daytrading_buying_power: None,
            effective_buying_power: Some(bp.round_dp(2)),
            non_marginable_buying_power: Some(
                (self.cash - self.reserved()).max(Decimal::ZERO).round_dp(2),
            ),
            options_buying_power: Some(Decimal::ZERO),
            bod_dtbp: Some(Decimal::ZERO),
            accrued_fees: Some(Decimal::ZERO),
            pending_transfer_in: Some(Decimal::ZERO),
            pending_transfer_out: Some(Decimal::ZERO),
            pattern_day_trader: None,
            trading_blocked: false,
            transfers_blocked: false,
            account_blocked: false,
            trade_suspended_by_user: self.configurations.suspend_trade,
            shorting_enabled: self.shorting_enabled(),
            created_at: self.created_at,
            multiplier: self.settings.multiplier,
            equity: equity.round_dp(2),
            last_equity: self.last_equity.round_dp(2),
            long_market_value: long.round_dp(2),
            short_market_value: short.round_dp(2),
            position_market_value: Some(gross.round_dp(2)),
            initial_margin: initial_margin.round_dp(2),
            maintenance_margin: maintenance.round_dp(2),
            last_maintenance_margin: Some(Decimal::ZERO),
            sma: Some(equity.round_dp(2)),
            daytrade_count: None,
            options_approved_level: Some(0.into()),
            options_trading_level: Some(0.into()),
            crypto_tier: Some(0.into()),
            balance_asof: Some(self.balance_asof.to_string()),
            intraday_adjustments: Some(Decimal::ZERO),
            pending_reg_taf_fees: Some(Decimal::ZERO),
            admin_configurations: Some(serde_json::json!({})),
            user_configurations: None,
        }
    }

    fn shorting_enabled(&self) -> bool {
        self.settings.multiplier > Decimal::ONE && !self.configurations.no_shorting
    }

    /// The signed quantity held of `symbol` (0 when none): what a backtest asks at every bar,
    /// without building the whole [`Position`].
    pub fn qty(&self, symbol: &str) -> Decimal {
        self.positions
            .get(symbol)
            .map(|p| p.qty)
            .unwrap_or_default()
    }

    /// The open orders (bracket legs included), of one symbol or all, oldest first: what
    /// `list_orders` with status `open` and no nesting lists, without building its answer.
    pub fn open_orders(&self, symbol: Option<&str>) -> Vec<&Order> {
        let mut index: Vec<usize> = match symbol {
            Some(s) => self.unfinished.get(s).cloned().unwrap_or_default(),
            None => self.unfinished.values().flatten().copied().collect(),
        };
        index.sort_unstable();
        index
            .into_iter()
            .filter_map(|i| self.orders.get(i))
            .map(|o| &o.order)
            .filter(|o| o.status.is_open())
            .collect()
    }

    /// Every symbol held and its signed quantity.
    pub fn held(&self) -> impl Iterator<Item = (&str, Decimal)> {
        self.positions.iter().map(|(s, p)| (s.as_str(), p.qty))
    }

    pub fn positions(&self) -> Vec<Position> {
        self.positions
            .keys()
            .filter_map(|s| self.position(s))
            .collect()
    }

    pub fn position(&self, symbol: &str) -> Option<Position> {
        let p = self.positions.get(symbol)?;
        let asset = self.assets.get(symbol)?;
        let price = self.mark(symbol);
        let market_value = p.qty * price;
        let cost_basis = p.qty * p.avg_entry_price;
        let unrealized = market_value - cost_basis;
        let ratio = |num: Decimal, den: Decimal| {
            if den.is_zero() {
                Decimal::ZERO
            } else {
                (num / den.abs()).round_dp(10)
            }
        };
        let intraday = p.qty * (price - p.intraday_basis);
        Some(Position {
            asset_id: asset.id,
            symbol: symbol.to_string(),
            exchange: asset.exchange.clone(),
            asset_class: AssetClass::UsEquity,
            asset_marginable: true,
            avg_entry_price: p.avg_entry_price.round_dp(9),
            qty: p.qty,
            qty_available: Some(p.qty - p.qty.signum() * self.held_for_orders(symbol)),
            side: if p.qty.is_sign_negative() {
                PositionSide::Short
            } else {
                PositionSide::Long
            },
            market_value: Some(market_value.round_dp(4)),
            cost_basis: cost_basis.round_dp(4),
            unrealized_pl: Some(unrealized.round_dp(4)),
            unrealized_plpc: Some(ratio(unrealized, cost_basis)),
            unrealized_intraday_pl: Some(intraday.round_dp(4)),
            unrealized_intraday_plpc: Some(ratio(intraday, p.qty * p.intraday_basis)),
            current_price: Some(price),
            lastday_price: Some(asset.prev_close),
            change_today: Some(ratio(price - asset.prev_close, asset.prev_close)),
        })
    }

    /// Shares of the position in `symbol` that open closing orders already claim.
    fn held_for_orders(&self, symbol: &str) -> Decimal {
        let qty = self
            .positions
            .get(symbol)
            .map(|p| p.qty)
            .unwrap_or_default();
        if qty.is_zero() {
            return Decimal::ZERO;
        }
        let closing = if qty.is_sign_positive() {
            OrderSide::Sell
        } else {
            OrderSide::Buy
        };
        // The exits of one bracket or OCO (one takes profit, one stops the loss; only one
        // can fill) claim the shares once: the largest of the group.
        let mut groups: HashMap<Uuid, Decimal> = HashMap::new();
        for o in self
            .unfinished
            .get(symbol)
            .into_iter()
            .flatten()
            .filter_map(|&i| self.orders.get(i))
            .filter(|o| o.is_active() && o.order.symbol == symbol && o.order.side == closing)
        {
            let g = groups.entry(o.parent.unwrap_or(o.order.id)).or_default();
            *g = (*g).max(o.remaining());
        }
        groups.values().copied().sum::<Decimal>().min(qty.abs())
    }

    pub fn other_activities(&self) -> &[NonTradeActivity] {
        &self.other_activities
    }

    pub fn activities(&self) -> &[TradeActivity] {
        &self.activities
    }

    pub fn configurations(&self) -> &AccountConfigurations {
        &self.configurations
    }

    pub fn patch_configurations(
        &mut self,
        patch: AccountConfigurationsPatch,
    ) -> Result<AccountConfigurations, SimError> {
        let c = &mut self.configurations;
        if let Some(v) = patch.dtbp_check {
            c.dtbp_check = Some(v)
        }
        if let Some(v) = patch.trade_confirm_email {
            c.trade_confirm_email = Some(v)
        }
        if let Some(v) = patch.suspend_trade {
            c.suspend_trade = v
        }
        if let Some(v) = patch.no_shorting {
            c.no_shorting = v
        }
        if let Some(v) = patch.fractional_trading {
            c.fractional_trading = v
        }
        if let Some(v) = patch.max_margin_multiplier {
            if !["1", "2", "4"].contains(&v.as_str()) {
                return Err(SimError::validation(
                    "max_margin_multiplier must be 1, 2 or 4",
                ));
            }
            c.max_margin_multiplier = Some(v);
        }
        if let Some(v) = patch.pdt_check {
            c.pdt_check = Some(v)
        }
        Ok(c.clone())
    }

    /// Lifecycle events since the last call, oldest first.
    pub fn drain_updates(&mut self) -> Vec<TradeUpdate> {
        std::mem::take(&mut self.outbox)
    }

    fn new_id(&mut self) -> Uuid {
        random_uuid(&mut self.rng)
    }

    fn get(&self, id: Uuid) -> Option<&SimOrder> {
        self.index.get(&id).map(|&i| &self.orders[i])
    }

    fn get_mut(&mut self, id: Uuid) -> Option<&mut SimOrder> {
        match self.index.get(&id) {
            Some(&i) => self.orders.get_mut(i),
            None => None,
        }
    }

    /// The wire form of an order, with its legs nested when `nested`.
    fn view(&self, id: Uuid, nested: bool) -> Option<Order> {
        let o = self.get(id)?;
        let mut order = o.order.clone();
        if nested && !o.legs.is_empty() {
            order.legs = Some(o.legs.iter().filter_map(|l| self.view(*l, false)).collect());
        }
        Some(order)
    }

    fn record(&mut self, id: Uuid, event: &str, fill: Option<(Decimal, Decimal)>) {
        let Some(order) = self.view(id, true) else {
            return;
        };
        let position_qty = fill.map(|_| {
            self.positions
                .get(&order.symbol)
                .map(|p| p.qty)
                .unwrap_or_default()
        });
        // Alpaca gives every event an execution id, not only fills.
        let execution_id = Some(self.new_id());
        self.outbox.push(TradeUpdate {
            event: event.to_string(),
            execution_id,
            timestamp: Some(self.now),
            price: fill.map(|f| f.0),
            qty: fill.map(|f| f.1),
            position_qty,
            order,
        });
    }

    /// Every order, oldest first, legs listed separately (for the admin state view).
    pub fn all_orders(&self) -> Vec<Order> {
        self.orders.iter().map(|o| o.order.clone()).collect()
    }
}

pub(crate) fn random_uuid(rng: &mut ChaCha8Rng) -> Uuid {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}
