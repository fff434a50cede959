//! `Supervisor`: owns the [`TradingMode`] state machine and runs the flatten procedure.
//!
//! The actors themselves are started under actix supervision by [`crate::daemon`] (a stopped
//! actor is restarted and its `restarting()` resets its connection state and reports to the
//! ConnectionHealthMonitor, which counts restarts against the budget). This actor decides what
//! the system may do:
//!
//! ```text
//!   active ⇄ reduce_only          (operator pause / resume)
//!   active, reduce_only → preserving   (a health threshold, or operator flatten)
//!   preserving → preserved        (the broker shows no position and no open order)
//!   preserved → active            (operator resume, or the cool-down when configured)
//!   any → halted                  (operator halt: nothing is sent at all)
//!   halted → active               (operator resume)
//! ```
//!
//! Every transition is logged at WARN or above with its cause, journaled (the journal's last
//! transition is the mode a restart comes back in), applied to the RiskManager, and published
//! to listeners as [`ModeChanged`].
//!
//! The flatten procedure (entering `preserving`, also after a restart in it): new entries stop
//! (the RiskManager refuses them); each attempt cancels every open order and closes every
//! position through the OrderManager (journaled like any order), closes directly at the broker
//! what the order side could not (a position it never knew of), then re-reads the broker until
//! it shows no position and no open order. A failed attempt is logged and retried with
//! exponential backoff, for as long as it takes. Optionally the account's `suspend_trade` is set
//! while preserved. If the procedure cannot run at all (the order manager or the journal gone),
//! the Supervisor asks the process to exit non-zero so that systemd restarts it.
//!
//! Handles: [`crate::actors::health::ThresholdCrossed`], [`Operator`], [`GetSupervisorStatus`],
//! [`AddModeListener`].

use crate::alpaca::model::AccountConfigurationsPatch;
use crate::alpaca::rest::CloseAmount;
use crate::broker::BrokerRef;
use crate::config::PreservationSection;
use crate::journal::{Journal, ModeTransition, RecordMode};
use crate::messages::health::{Rearm, ThresholdCrossed};
pub use crate::messages::mode::{
    AddModeListener, GetSupervisorStatus, ModeChanged, Operator, OperatorCommand, SupervisorStatus,
};
use crate::messages::orders::Flatten;
use crate::messages::risk::SetMode;
use crate::mode::{ModeDecision, ModeInput, decide};
use crate::risk::TradingMode;
use actix::prelude::*;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct SupervisorSettings {
    pub retry_min: Duration,
    pub retry_max: Duration,
    pub verify_timeout: Duration,
    pub suspend_trade: bool,
    pub cooldown: Option<Duration>,
}

impl SupervisorSettings {
    pub fn new(p: &PreservationSection) -> Self {
        SupervisorSettings {
            retry_min: Duration::from_millis(p.retry_min_ms),
            retry_max: Duration::from_millis(p.retry_max_ms),
            verify_timeout: Duration::from_millis(p.verify_timeout_ms),
            suspend_trade: p.suspend_trade,
            cooldown: (p.cooldown_s > 0).then(|| Duration::from_secs(p.cooldown_s)),
        }
    }
}

/// How a flatten loop ended.
enum FlattenEnd {
    Flat {
        attempts: u64,
    },
    /// The mode changed (operator halt, say): this loop is not wanted any more.
    Superseded,
    /// The procedure cannot run at all.
    Fatal(String),
}

pub struct Supervisor {
    settings: SupervisorSettings,
    mode: TradingMode,
    since: DateTime<Utc>,
    cause: String,
    journal: Addr<Journal>,
    risk: Recipient<SetMode>,
    /// The order side's flatten procedure.
    orders: Recipient<Flatten>,
    rest: BrokerRef,
    health: Option<Recipient<Rearm>>,
    listeners: Vec<Recipient<ModeChanged>>,
    /// Bumped on every transition; a flatten loop of an older one stops.
    generation: Arc<AtomicU64>,
    attempts: Arc<AtomicU64>,
    preserving_since: Option<Instant>,
    transitions: u64,
    crossings: u64,
    times_to_flat_ms: Vec<u64>,
    history: std::collections::VecDeque<ModeChanged>,
    fatal: Option<tokio::sync::watch::Sender<Option<String>>>,
}

impl Supervisor {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: SupervisorSettings,
        mode: TradingMode,
        cause: &str,
        journal: Addr<Journal>,
        risk: Recipient<SetMode>,
        orders: Recipient<Flatten>,
        rest: BrokerRef,
        health: Option<Recipient<Rearm>>,
        fatal: Option<tokio::sync::watch::Sender<Option<String>>>,
    ) -> Self {
        Supervisor {
            settings,
            mode,
            since: Utc::now(),
            cause: cause.into(),
            journal,
            risk,
            orders,
            rest,
            health,
            listeners: Vec::new(),
            generation: Arc::new(AtomicU64::new(0)),
            attempts: Arc::new(AtomicU64::new(0)),
            preserving_since: None,
            transitions: 0,
            crossings: 0,
            times_to_flat_ms: Vec::new(),
            history: std::collections::VecDeque::new(),
            fatal,
        }
    }

    /// The procedure cannot run: say so and ask the process to exit non-zero.
    fn fatal(&mut self, reason: String) {
        tracing::error!(reason = %reason, "capital preservation cannot run; exiting so that the service manager restarts the daemon");
        match &self.fatal {
            Some(tx) => {
                let _ = tx.send(Some(reason));
            }
            None => System::current().stop_with_code(70),
        }
    }

    /// Applies what the mode machine decides for `input`; answers whether the mode moved.
    fn apply(&mut self, input: ModeInput, ctx: &mut Context<Self>) -> bool {
        match decide(self.mode, &input) {
            ModeDecision::Move { to, cause } => {
                self.transition(to, cause, ctx);
                true
            }
            ModeDecision::Stay | ModeDecision::Refuse(_) => false,
        }
    }

    fn transition(&mut self, to: TradingMode, cause: String, ctx: &mut Context<Self>) {
        let from = self.mode;
        if from == to {
            return;
        }
        self.mode = to;
        self.since = Utc::now();
        self.cause = cause.clone();
        self.transitions += 1;
        self.generation.fetch_add(1, Ordering::SeqCst);
        let (from_name, to_name) = (from.name(), to.name());
        match to {
            TradingMode::Preserving | TradingMode::Halted => {
                tracing::error!(from = from_name, to = to_name, cause = %cause, "trading mode changed")
            }
            _ => {
                tracing::warn!(from = from_name, to = to_name, cause = %cause, "trading mode changed")
            }
        }
        self.risk.do_send(SetMode(to));
        let record = ModeTransition {
            from: from_name.into(),
            to: to_name.into(),
            cause: cause.clone(),
            at: self.since,
        };
        let journal = self.journal.clone();
        ctx.spawn(
            async move { journal.send(RecordMode(record)).await }
                .into_actor(self)
                .map(move |r, act, _| match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::error!(to = to_name, error = %e, "the mode change could not be journaled; a restart may not come back in it")
                    }
                    Err(e) => act.fatal(format!("the journal is not running: {e}")),
                }),
        );
        let event = ModeChanged {
            from,
            to,
            cause,
            at: self.since,
        };
        self.listeners.retain(|l| l.connected());
        for l in &self.listeners {
            l.do_send(event.clone());
        }
        if self.history.len() == 50 {
            self.history.pop_front();
        }
        self.history.push_back(event);
        match to {
            TradingMode::Preserving => {
                self.preserving_since = Some(Instant::now());
                self.start_flatten(ctx);
            }
            TradingMode::Preserved => self.on_preserved(ctx),
            TradingMode::Active | TradingMode::ReduceOnly => {
                if let Some(h) = &self.health {
                    h.do_send(Rearm);
                }
            }
            TradingMode::Halted => {}
        }
    }

    fn on_preserved(&mut self, ctx: &mut Context<Self>) {
        if let Some(since) = self.preserving_since.take() {
            self.times_to_flat_ms
                .push(since.elapsed().as_millis() as u64);
        }
        if self.settings.suspend_trade {
            let rest = self.rest.clone();
            ctx.spawn(
                async move {
                    rest.patch_account_configurations(&AccountConfigurationsPatch {
                        suspend_trade: Some(true),
                        ..Default::default()
                    })
                    .await
                }
                .into_actor(self)
                .map(|r, _, _| match r {
                    Ok(_) => tracing::warn!("account suspend_trade set: the broker itself refuses new orders while preserved"),
                    Err(e) => tracing::error!(error = %e, "cannot set suspend_trade at the broker; the daemon still sends nothing"),
                }),
            );
        }
        if let Some(cooldown) = self.settings.cooldown {
            let generation = self.generation.load(Ordering::SeqCst);
            ctx.run_later(cooldown, move |act, ctx| {
                if act.mode == TradingMode::Preserved
                    && act.generation.load(Ordering::SeqCst) == generation
                {
                    let f = act.resume(
                        format!("cool-down of {} s elapsed", cooldown.as_secs()),
                        ctx,
                    );
                    ctx.spawn(f.map(|r, _, _| {
                        if let Err(e) = r {
                            tracing::error!(error = %e, "cool-down could not resume");
                        }
                    }));
                }
            });
        }
    }

    fn start_flatten(&mut self, ctx: &mut Context<Self>) {
        let generation = self.generation.clone();
        let mine = generation.load(Ordering::SeqCst);
        let orders = self.orders.clone();
        let rest = self.rest.clone();
        let settings = self.settings.clone();
        let attempts = self.attempts.clone();
        tracing::error!(
            "capital preservation: cancelling every open order and closing every position until the broker shows flat"
        );
        let work = async move {
            let current = || generation.load(Ordering::SeqCst) == mine;
            let mut delay = settings.retry_min;
            let mut n = 0u64;
            loop {
                if !current() {
                    return FlattenEnd::Superseded;
                }
                n += 1;
                attempts.fetch_add(1, Ordering::Relaxed);
                match orders.send(Flatten).await {
                    Ok(Ok(report)) => {
                        tracing::warn!(attempt = n, canceled = report.canceled, closing = ?report.closing, "flatten attempt: orders canceled, closing orders sent");
                        // What the order side could not close (a position it never knew of,
                        // say) is closed at the broker directly.
                        for (symbol, r) in &report.closing {
                            if let Err(why) = r {
                                tracing::warn!(attempt = n, symbol = %symbol, why = %why, "closing at the broker directly");
                                if let Err(e) = rest.close_position(symbol, CloseAmount::All).await
                                {
                                    tracing::error!(attempt = n, symbol = %symbol, error = %e, "the broker did not take the close");
                                }
                            }
                        }
                    }
                    Ok(Err(e)) => {
                        tracing::error!(attempt = n, error = %e, "flatten attempt failed");
                    }
                    Err(e) => {
                        return FlattenEnd::Fatal(format!("the order manager is not running: {e}"));
                    }
                }
                let deadline = Instant::now() + settings.verify_timeout;
                let last = loop {
                    if !current() {
                        return FlattenEnd::Superseded;
                    }
                    let seen = broker_exposure(&rest).await;
                    if let Ok((0, 0)) = seen {
                        tracing::warn!(
                            attempt = n,
                            "the broker shows no position and no open order"
                        );
                        return FlattenEnd::Flat { attempts: n };
                    }
                    if Instant::now() >= deadline {
                        break seen;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                };
                match last {
                    Ok((positions, open_orders)) => {
                        tracing::error!(
                            attempt = n,
                            positions,
                            open_orders,
                            retry_in_ms = delay.as_millis() as u64,
                            "not flat yet; trying again"
                        )
                    }
                    Err(e) => {
                        tracing::error!(attempt = n, error = %e, retry_in_ms = delay.as_millis() as u64, "cannot read the broker; trying again")
                    }
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(settings.retry_max);
            }
        };
        ctx.spawn(
            work.into_actor(self)
                .map(move |end, act, ctx| match end {
                    FlattenEnd::Flat { attempts } => {
                        if act.generation.load(Ordering::SeqCst) == mine {
                            act.apply(
                                ModeInput::Flat(format!(
                                    "flat after {attempts} attempt(s): the broker shows no position and no open order"
                                )),
                                ctx,
                            );
                        }
                    }
                    FlattenEnd::Superseded => {}
                    FlattenEnd::Fatal(reason) => act.fatal(reason),
                }),
        );
    }

    /// preserved / reduce_only / halted → active; from preserved with `suspend_trade`, only
    /// once the broker has lifted it.
    fn resume(
        &mut self,
        cause: String,
        _: &mut Context<Self>,
    ) -> ResponseActFuture<Self, Result<TradingMode, String>> {
        match decide(self.mode, &ModeInput::Resume) {
            ModeDecision::Refuse(why) => return Box::pin(fut::ready(Err(why))),
            ModeDecision::Stay => return Box::pin(fut::ready(Ok(self.mode))),
            ModeDecision::Move { .. } => {}
        }
        let lift = self.settings.suspend_trade && self.mode == TradingMode::Preserved;
        let rest = self.rest.clone();
        Box::pin(
            async move {
                if lift {
                    rest.patch_account_configurations(&AccountConfigurationsPatch {
                        suspend_trade: Some(false),
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| {
                        format!("cannot clear suspend_trade at the broker ({e}); still preserved")
                    })?;
                }
                Ok(())
            }
            .into_actor(self)
            .map(move |r: Result<(), String>, act, ctx| {
                r?;
                act.transition(TradingMode::Active, cause, ctx);
                Ok(act.mode)
            }),
        )
    }

    fn status(&self) -> SupervisorStatus {
        SupervisorStatus {
            mode: self.mode,
            since: self.since,
            cause: self.cause.clone(),
            transitions: self.transitions,
            crossings: self.crossings,
            flatten_attempts: self.attempts.load(Ordering::Relaxed),
            times_to_flat_ms: self.times_to_flat_ms.clone(),
            history: self.history.iter().cloned().collect(),
        }
    }
}

/// (positions not zero, open orders) at the broker, entries the daemon cannot model included:
/// the account is flat only when nothing at all is held or open.
pub async fn broker_exposure(rest: &BrokerRef) -> Result<(usize, usize), String> {
    let held = rest
        .list_positions()
        .await
        .map_err(|e| e.to_string())?
        .held_count();
    let open = crate::broker::open_order_count(rest.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    Ok((held, open))
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.risk.do_send(SetMode(self.mode));
        match self.mode {
            TradingMode::Preserving => {
                tracing::error!("started in preserving: the flatten procedure resumes");
                self.preserving_since = Some(Instant::now());
                self.start_flatten(ctx);
            }
            TradingMode::Preserved => {
                tracing::warn!(
                    "started in preserved: flat and blocked until an operator resumes (traderd ctl resume)"
                );
                if self.settings.cooldown.is_some() {
                    self.on_preserved(ctx);
                }
            }
            TradingMode::Halted => {
                tracing::warn!("started halted: nothing is sent until an operator resumes")
            }
            TradingMode::ReduceOnly => tracing::warn!("started in reduce_only"),
            TradingMode::Active => {}
        }
    }
}

impl Handler<ThresholdCrossed> for Supervisor {
    type Result = ();
    fn handle(&mut self, msg: ThresholdCrossed, ctx: &mut Context<Self>) {
        self.crossings += 1;
        if !self.apply(ModeInput::Crossed(msg.0.to_string()), ctx) {
            tracing::warn!(cause = %msg.0, mode = self.mode.name(), "threshold crossed; the mode already blocks new entries");
        }
    }
}

impl Handler<Operator> for Supervisor {
    type Result = ResponseActFuture<Self, Result<TradingMode, String>>;
    fn handle(&mut self, msg: Operator, ctx: &mut Context<Self>) -> Self::Result {
        let done = |r: Result<TradingMode, String>| -> Self::Result { Box::pin(fut::ready(r)) };
        let input = match msg.0 {
            // Resuming may first clear `suspend_trade` at the broker.
            OperatorCommand::Resume => return self.resume("operator: resume".into(), ctx),
            OperatorCommand::Pause => ModeInput::Pause,
            OperatorCommand::Flatten => ModeInput::Flatten,
            OperatorCommand::Halt => ModeInput::Halt,
        };
        match decide(self.mode, &input) {
            ModeDecision::Refuse(why) => done(Err(why)),
            _ => {
                self.apply(input, ctx);
                done(Ok(self.mode))
            }
        }
    }
}

impl Handler<crate::messages::mode::Wedge> for Supervisor {
    type Result = ();
    fn handle(&mut self, msg: crate::messages::mode::Wedge, ctx: &mut Context<Self>) {
        tracing::warn!(
            seconds = msg.0.as_secs_f64(),
            "the supervisor is wedged on purpose (ctl debug-wedge): the watchdog must withhold its pings"
        );
        ctx.wait(actix::fut::wrap_future(tokio::time::sleep(msg.0)));
    }
}

impl Handler<GetSupervisorStatus> for Supervisor {
    type Result = MessageResult<GetSupervisorStatus>;
    fn handle(&mut self, _: GetSupervisorStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.status())
    }
}

impl Handler<AddModeListener> for Supervisor {
    type Result = ();
    fn handle(&mut self, msg: AddModeListener, _: &mut Context<Self>) {
        self.listeners.push(msg.0);
    }
}
