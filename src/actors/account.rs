//! `AccountManager` actor: the account (equity, cash, buying power), the broker's positions and
//! the market clock, read on a timer and after every fill, and published as
//! [`AccountUpdated`] to the risk checks, the strategy and whoever else subscribes.
//!
//! Start-of-day equity is Alpaca's `last_equity` (equity at the previous close), so the daily
//! loss limit survives a restart without any state of our own. The day's P&L is split into
//! unrealized (the positions' intraday P&L) and realized (the rest: closed trades and fees).
//!
//! Each read after a fill, and one a minute of the broker's clock otherwise, is journaled as an
//! [`EquitySample`] (equity, cash, gross and net exposure): `traderd report` draws from them.
//!
//! Handles: [`RefreshAccount`], [`GetAccount`], [`AddAccountListener`]. Emits
//! [`AccountUpdated`], [`RecordEquity`]. A failed read keeps the last snapshot and is retried
//! at the next tick.

use crate::alpaca::model::{Account, Clock, Position};
use crate::broker::BrokerRef;
use crate::journal::{EquitySample, RecordEquity};
pub use crate::messages::account::{AddAccountListener, GetAccount};
use crate::messages::{AccountSnapshot, AccountUpdated, RefreshAccount};
use actix::prelude::*;
use rust_decimal::Decimal;
use std::time::Duration;

pub struct AccountManager {
    rest: BrokerRef,
    interval: Duration,
    snapshot: Option<AccountSnapshot>,
    listeners: Vec<Recipient<AccountUpdated>>,
    reading: bool,
    /// A refresh was asked for while a read was in progress.
    again: bool,
    failures: u64,
    /// Where equity samples go, and when the last one was taken (broker time).
    journal: Option<Recipient<RecordEquity>>,
    last_sample: Option<chrono::DateTime<chrono::Utc>>,
    /// A fill asked for this read: sample it whatever the time.
    after_fill: bool,
}

/// Samples at most this often but after fills.
const SAMPLE_EVERY: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

impl AccountManager {
    pub fn new(rest: BrokerRef, interval: Duration) -> Self {
        AccountManager {
            rest,
            interval,
            snapshot: None,
            listeners: Vec::new(),
            reading: false,
            again: false,
            failures: 0,
            journal: None,
            last_sample: None,
            after_fill: false,
        }
    }

    /// Journals equity samples there.
    pub fn with_journal(mut self, journal: Recipient<RecordEquity>) -> Self {
        self.journal = Some(journal);
        self
    }

    fn sample(
        &mut self,
        snap: &AccountSnapshot,
        at: chrono::DateTime<chrono::Utc>,
        after_fill: bool,
        ctx: &mut Context<Self>,
    ) {
        let Some(journal) = &self.journal else {
            return;
        };
        let due = self
            .last_sample
            .is_none_or(|last| at - last >= SAMPLE_EVERY);
        if !(due || after_fill) {
            return;
        }
        self.last_sample = Some(at);
        let sample = EquitySample {
            at,
            equity: snap.equity,
            cash: snap.cash,
            gross_exposure: snap.gross_exposure,
            net_exposure: snap.net_exposure,
        };
        let write = journal.send(RecordEquity(sample));
        ctx.spawn(actix::fut::wrap_future(async move {
            match write.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot journal the equity sample"),
                Err(e) => tracing::warn!(error = %e, "the journal did not take the equity sample"),
            }
        }));
    }

    fn read(&mut self, ctx: &mut Context<Self>) {
        if self.reading {
            self.again = true;
            return;
        }
        self.reading = true;
        let after_fill = std::mem::take(&mut self.after_fill);
        let rest = self.rest.clone();
        let work = async move {
            let account = rest.get_account().await?;
            // Entries the daemon cannot model are reported by reconciliation, not here.
            let positions = rest.list_positions().await?.items;
            let clock = rest.get_clock().await?;
            Ok::<_, crate::alpaca::BrokerError>((account, positions, clock))
        };
        ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
            act.reading = false;
            match result {
                Ok((account, positions, clock)) => {
                    act.failures = 0;
                    let snap = snapshot(&account, &positions, &clock);
                    let at = clock.timestamp.with_timezone(&chrono::Utc);
                    act.sample(&snap, at, after_fill, ctx);
                    if act.snapshot.is_none() {
                        // Entries are sized from it: until now the strategy ignored them.
                        tracing::info!(equity = %snap.equity, buying_power = %snap.buying_power, market_open = snap.market_open, positions = snap.positions.len(), "account read for the first time");
                    } else if act.snapshot.as_ref().map(|s| s.day_pnl) != Some(snap.day_pnl) {
                        tracing::debug!(equity = %snap.equity, day_pnl = %snap.day_pnl, "account read");
                    }
                    act.snapshot = Some(snap.clone());
                    act.listeners.retain(|l| l.connected());
                    for l in &act.listeners {
                        l.do_send(AccountUpdated(snap.clone()));
                    }
                }
                Err(e) => {
                    act.after_fill |= after_fill;
                    act.failures += 1;
                    tracing::warn!(error = %e, failures = act.failures, "cannot read the account; keeping the last snapshot");
                }
            }
            if std::mem::take(&mut act.again) {
                act.read(ctx);
            }
        }));
    }
}

/// The account, positions and clock as one snapshot.
pub fn snapshot(account: &Account, positions: &[Position], clock: &Clock) -> AccountSnapshot {
    let unrealized: Decimal = positions
        .iter()
        .filter_map(|p| p.unrealized_intraday_pl)
        .sum();
    let day_pnl = account.equity - account.last_equity;
    AccountSnapshot {
        equity: account.equity,
        cash: account.cash,
        buying_power: account.buying_power,
        start_of_day_equity: account.last_equity,
        day_pnl,
        unrealized_day_pnl: unrealized,
        realized_day_pnl: day_pnl - unrealized,
        positions: positions
            .iter()
            .map(|p| (p.symbol.clone(), p.qty))
            .collect(),
        gross_exposure: account
            .long_market_value
            .saturating_add(account.short_market_value.abs()),
        net_exposure: account
            .long_market_value
            .saturating_add(account.short_market_value),
        unrealized: positions
            .iter()
            .filter_map(|p| Some((p.symbol.clone(), p.unrealized_pl?)))
            .collect(),
        market_open: clock.is_open,
        next_open: Some(clock.next_open.with_timezone(&chrono::Utc)),
        next_close: Some(clock.next_close.with_timezone(&chrono::Utc)),
        trading_blocked: account.trading_blocked || account.account_blocked,
        read_at: Some(clock.timestamp.with_timezone(&chrono::Utc)),
    }
}

/// Under the daemon's supervision: it keeps its state across a restart (it holds no
/// connection of its own).
impl actix::Supervised for AccountManager {
    fn restarting(&mut self, _: &mut Context<Self>) {
        tracing::warn!(actor = "AccountManager", "actor restarting");
    }
}

impl Actor for AccountManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.read(ctx);
        ctx.run_interval(self.interval, |act, ctx| act.read(ctx));
    }
}

impl Handler<RefreshAccount> for AccountManager {
    type Result = ();
    fn handle(&mut self, _: RefreshAccount, ctx: &mut Context<Self>) {
        // Only fills ask for a read (the order manager, after each).
        self.after_fill = true;
        self.read(ctx);
    }
}

impl Handler<GetAccount> for AccountManager {
    type Result = Option<AccountSnapshot>;
    fn handle(&mut self, _: GetAccount, _: &mut Context<Self>) -> Self::Result {
        self.snapshot.clone()
    }
}

impl Handler<AddAccountListener> for AccountManager {
    type Result = ();
    fn handle(&mut self, msg: AddAccountListener, _: &mut Context<Self>) {
        if let Some(s) = &self.snapshot {
            msg.0.do_send(AccountUpdated(s.clone()));
        }
        self.listeners.push(msg.0);
    }
}
