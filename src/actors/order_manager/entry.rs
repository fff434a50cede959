//! The order side's way in, shared by the OrderManager and the strategies on its thread
//! ([`OrderEntry`]): a proposal is checked by the risk gate, taken by the desk, given its
//! submit span and its intent written ahead in one call, in the proposer's own turn. A
//! strategy's signal thus reaches the request without a mailbox hop ([`Proposer::Direct`]);
//! what comes back (the broker's answer, an exit's clearing) is the OrderManager's, as a
//! message ([`Sent`], [`Dispatch`]).
//!
//! The desk and what goes with it sit behind one mutex. Every holder is on the trading
//! thread, so it is never contended; no call made while it is held takes it again (the
//! closures given to [`OrderEntry::with`] see only the [`Core`]).

use super::OrderManager;
use crate::alpaca::BrokerError;
use crate::alpaca::model::{Order, OrderRequest};
use crate::broker::BrokerRef;
use crate::journal::{IntentWriter, OrderIntent};
use crate::messages::OrdersChanged;
use crate::messages::orders::{Propose, ProposeError};
use crate::orders::desk::{OrderDesk, Submission};
use crate::risk::SharedGate;
use crate::trace::TraceContext;
use actix::prelude::*;
use chrono::Utc;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What the order side keeps that a proposal changes.
pub struct Core {
    pub desk: OrderDesk,
    /// The risk checks, shared with the RiskManager (from `Connect`).
    pub risk: Option<SharedGate>,
    /// Each open order's `order.submit` span context (its fills are its children).
    pub traces: HashMap<String, TraceContext>,
    pub listeners: Vec<Recipient<OrdersChanged>>,
    /// Views published so far (each carries its number).
    pub published: u64,
    pub tick_to_intent: crate::latency::LatencyHistogram,
}

impl Core {
    /// The book as the listeners see it, numbered as the last published.
    pub fn view(&self) -> OrdersChanged {
        OrdersChanged {
            seq: self.published,
            ..self.desk.view()
        }
    }

    /// The gate learns the book, and the listeners are told.
    pub fn publish(&mut self) {
        self.published += 1;
        let view = self.view();
        if let Some(risk) = &self.risk {
            risk.lock()
                .on_orders(&view.positions, view.open_orders, &view.pending_qty);
        }
        self.listeners.retain(|l| l.connected());
        for l in &self.listeners {
            l.do_send(view.clone());
        }
    }
}

/// An approved proposal the desk has taken: what to journal and send, and the submit span
/// (it lasts until the broker answers).
pub struct Entered {
    pub submission: Submission,
    pub span: tracing::Span,
}

/// The outcome of sending an order: `Err` when its intent could not be written (nothing was
/// sent), else the broker's answer; and tick to order (intent written, request handed to the
/// HTTP client) for a live signal's order.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Sent {
    pub client_order_id: String,
    pub tick_to_order: Option<Duration>,
    /// Of tick to order, what was not this intent's own write-ahead (its sync included).
    pub beyond_write: Option<Duration>,
    pub result: Result<Result<Order, BrokerError>, String>,
}

/// An exit or a close taken in a proposer's turn: the OrderManager clears the symbol's other
/// orders, then sends it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Dispatch(pub Entered);

/// The order side's way in (cheap to clone: shared).
#[derive(Clone)]
pub struct OrderEntry {
    core: Arc<Mutex<Core>>,
    intents: IntentWriter,
    rest: BrokerRef,
}

impl OrderEntry {
    pub fn new(desk: OrderDesk, intents: IntentWriter, rest: BrokerRef) -> Self {
        OrderEntry {
            core: Arc::new(Mutex::new(Core {
                desk,
                risk: None,
                traces: HashMap::new(),
                listeners: Vec::new(),
                published: 0,
                tick_to_intent: crate::latency::LatencyHistogram::new(),
            })),
            intents,
            rest,
        }
    }

    /// The core, for one call. (Nothing in it panics; were a holder to, the core is whole
    /// between two calls, so a poisoned lock is taken as it is.)
    pub fn with<T>(&self, f: impl FnOnce(&mut Core) -> T) -> T {
        let mut core = self.core.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut core)
    }

    pub fn intents(&self) -> &IntentWriter {
        &self.intents
    }

    /// The risk checks, then the desk takes the approved order (pending from now). Not yet
    /// written or sent, and the gate does not know it yet: the caller writes it ahead (or
    /// hands it on), then [`OrderEntry::publish`]es, before the next proposal.
    pub fn enter(&self, msg: Propose) -> Result<Entered, ProposeError> {
        self.with(|core| {
            let Some(risk) = core.risk.clone() else {
                return Err(ProposeError::NotSent(
                    "the risk checks are not connected yet".into(),
                ));
            };
            let now = Utc::now();
            let approved = risk.lock().propose(msg.intent, msg.price, now)?;
            let s = core
                .desk
                .submit(approved, now)
                .map_err(|e| ProposeError::NotSent(format!("not ready: {e}")))?;
            let intent = &s.intent;
            // The submit span (child of the risk check) lasts until the broker answers; its
            // context is kept for the fills.
            let span = tracing::info_span!(
                parent: None,
                "order.submit",
                client_order_id = %s.client_order_id,
                correlation_id = %intent.correlation_id,
                symbol = %intent.symbol,
                side = ?intent.side,
                qty = %intent.qty,
                purpose = ?intent.purpose,
            );
            intent.trace.adopt(&span);
            if let Some(at) = intent.trace.arrived() {
                core.tick_to_intent.record(at.elapsed());
            }
            core.traces
                .insert(s.client_order_id.clone(), TraceContext::of(&span));
            Ok(Entered {
                submission: s,
                span,
            })
        })
    }

    /// Writes the intent ahead, here and now, and answers the request's sending, to be
    /// spawned: the request leaves only once the intent is on disk.
    pub fn send(
        &self,
        record: OrderIntent,
        request: OrderRequest,
        arrived: Option<Instant>,
        span: tracing::Span,
    ) -> impl Future<Output = Sent> + 'static {
        let client_order_id = record.client_order_id.clone();
        let writing = Instant::now();
        let written = span
            .in_scope(|| self.intents.write_ahead(&record, &request))
            .map_err(|e| e.to_string());
        // Tick to order ends here: the intent is written and the request goes to the HTTP
        // client.
        let tick_to_order = arrived.map(|at| at.elapsed());
        let beyond_write = tick_to_order.map(|t| t.saturating_sub(writing.elapsed()));
        let rest = self.rest.clone();
        let work = async move {
            let result = match written {
                Ok(()) => Ok(rest.submit_order(request).await),
                Err(e) => Err(e),
            };
            Sent {
                client_order_id,
                tick_to_order,
                beyond_write,
                result,
            }
        };
        tracing::Instrument::instrument(work, span)
    }

    /// The gate learns the book, and the listeners are told (after every change).
    pub fn publish(&self) {
        self.with(Core::publish);
    }

    /// The number of the last view published: every view from it on has the orders taken
    /// so far.
    pub fn published(&self) -> u64 {
        self.with(|core| core.published)
    }
}

/// The answer to a proposal: the client order id, or why not; `Err` when it never reached
/// the order side.
pub type Answer = Pin<Box<dyn Future<Output = Result<Result<String, ProposeError>, MailboxError>>>>;

/// Where a strategy proposes.
#[derive(Clone)]
pub enum Proposer {
    /// Through a mailbox (a strategy on its own, in tests).
    Mailbox(Recipient<Propose>),
    /// In the strategy's own turn, through the order side's entry; the OrderManager is told
    /// what comes back. For a strategy on the OrderManager's thread.
    Direct {
        entry: OrderEntry,
        manager: Addr<OrderManager>,
    },
}

impl From<Recipient<Propose>> for Proposer {
    fn from(r: Recipient<Propose>) -> Self {
        Proposer::Mailbox(r)
    }
}

impl Proposer {
    /// Proposes from an actor's turn: a direct proposal's request is sent from `ctx` (its
    /// first step runs as soon as the turn's handler returns).
    pub fn propose<A>(&self, msg: Propose, ctx: &mut Context<A>) -> Answer
    where
        A: Actor<Context = Context<A>>,
    {
        match self {
            Proposer::Mailbox(r) => Box::pin(r.send(msg)),
            Proposer::Direct { entry, manager } => {
                let answer = entry.enter(msg).map(|e| direct(entry, manager, e, ctx));
                Box::pin(std::future::ready(Ok(answer)))
            }
        }
    }

    /// After a direct proposal was taken: the number of the first view the proposer will be
    /// sent with the order in (`OrdersChanged::seq`); its views before that one do not show
    /// it. `None` through a mailbox (the answer comes after the view).
    pub fn shown_from(&self) -> Option<u64> {
        match self {
            Proposer::Mailbox(_) => None,
            Proposer::Direct { entry, .. } => Some(entry.published()),
        }
    }
}

/// Sends an order taken in a proposer's turn (its intent written first) and tells the
/// OrderManager the outcome; an exit or a close goes to the OrderManager to clear first.
/// Were the proposer to restart before the answer, the request would be dropped with its
/// context: the order stays in flight at the desk, which looks it up by client order id
/// after the ack timeout (as after the OrderManager's own restart).
fn direct<A>(
    entry: &OrderEntry,
    manager: &Addr<OrderManager>,
    e: Entered,
    ctx: &mut Context<A>,
) -> String
where
    A: Actor<Context = Context<A>>,
{
    let coid = e.submission.client_order_id.clone();
    if !e.submission.clear.is_empty() {
        manager.do_send(Dispatch(e));
        entry.publish();
        return coid;
    }
    let arrived = e.submission.intent.trace.arrived();
    let sending = entry.send(e.submission.record, e.submission.request, arrived, e.span);
    // After the write-ahead (it is not tick to order's), before the next proposal.
    entry.publish();
    let manager = manager.clone();
    ctx.spawn(actix::fut::wrap_future(async move {
        manager.do_send(sending.await)
    }));
    coid
}
