//! The account's side of the engine: marks, cash, equity, exposure, buying power, the
//! account and position views, the open orders of a symbol.

use super::*;

impl Engine {
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

    /// Every symbol [`Engine::is_active`] holds for.
    pub fn active_symbols(&self) -> impl Iterator<Item = &str> {
        self.positions.keys().map(String::as_str).chain(
            self.unfinished
                .iter()
                .filter(|(s, l)| !l.is_empty() && !self.positions.contains_key(*s))
                .map(|(s, _)| s.as_str()),
        )
    }

    pub fn cash(&self) -> Decimal {
        self.cash
    }

    pub fn position_book(&self, symbol: &str) -> Option<&PositionBook> {
        self.positions.get(symbol)
    }

    pub(super) fn market_values(&self) -> (Decimal, Decimal) {
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
    pub(super) fn reserved(&self) -> Decimal {
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

    pub(super) fn adds_exposure(&self, symbol: &str, side: OrderSide) -> bool {
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
    pub(super) fn estimate_price(
        &self,
        symbol: &str,
        side: OrderSide,
        given: Option<Decimal>,
    ) -> Decimal {
        if let Some(p) = given {
            return p;
        }
        match (self.book(symbol), side) {
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

    pub(super) fn shorting_enabled(&self) -> bool {
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

    /// How many orders [`Engine::open_orders`] gives for every symbol, counted in place.
    pub fn open_count(&self) -> usize {
        self.unfinished
            .values()
            .flatten()
            .filter(|i| {
                self.orders
                    .get(**i)
                    .is_some_and(|o| o.order.status.is_open())
            })
            .count()
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
    pub(super) fn held_for_orders(&self, symbol: &str) -> Decimal {
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
}
