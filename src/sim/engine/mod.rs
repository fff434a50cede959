//! The simulated broker: orders, matching against the market model's quotes and trades, and
//! the account's books, all in `Decimal`. A plain synchronous state machine: the server feeds
//! it requests and market events and reads views back; nothing here does I/O or reads a clock.
//!
//! - [`submit`](Engine::submit), [`replace`](Engine::replace), [`cancel`](Engine::cancel),
//!   [`close_position`](Engine::close_position): the trading API's commands (in `commands.rs`).
//! - [`on_market`](Engine::on_market): quotes, trades and session closes (in `matching.rs`).
//! - Views: [`account`](Engine::account), [`positions`](Engine::positions) and the account's
//!   figures (in `account.rs`), orders, activities.
//!
//! Every lifecycle change is also recorded as a [`TradeUpdate`] in an outbox for the
//! `trade_updates` stream.

mod account;
mod amend;
mod books;
mod commands;
mod matching;
mod validate;

pub use books::PositionBook;
pub use commands::{CloseQty, ListOrdersFilter};

use crate::alpaca::model::*;
use chrono::{DateTime, Utc};
use hashbrown::HashMap;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;
use rust_decimal::prelude::Signed;
use std::collections::BTreeMap;
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
    /// False once withdrawn (a halt, the end of a backtest's bar) until the next quote: the
    /// entry stays, so a symbol quoted again costs no insertion.
    live: bool,
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
    /// A buffer for the places of the orders being matched (kept between events).
    scratch: Vec<usize>,
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
            scratch: Vec::new(),
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

    /// The symbol's book to trade against: none before its first quote or once withdrawn.
    fn book(&self, symbol: &str) -> Option<&TopOfBook> {
        self.books.get(symbol).filter(|b| b.live)
    }

    fn book_mut(&mut self, symbol: &str) -> Option<&mut TopOfBook> {
        self.books.get_mut(symbol).filter(|b| b.live)
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
