//! `Journal` actor: durable records in SQLite (see [`store`]) and the hash-chained audit log
//! (see [`audit`]). It runs on an arbiter (thread) of its own, so a slow disk never blocks
//! another actor; every call returns once the record is on disk. Records sent in order
//! ([`Ordered`]) are committed in groups: all those queued together in one transaction, one
//! sync (group commit), each answered after it. The one exception is the order path's
//! write-ahead: an [`IntentWriter`] writes an order's intent on the caller's thread to a file
//! of its own ([`intent_log`]), synced before the request leaves, so the request waits for
//! its own sync only: not for a thread hand-off, nor for the store's commits. The journal's
//! thread copies it into the store right after ([`ImportIntent`]); a stop in between is
//! mended at the next start (docs/architecture.md).
//!
//! Handles: [`RecordIntent`], [`RecordOrderState`], [`RecordFill`], [`RecordEquity`], [`RecordMode`],
//! [`RecordEvent`], [`LoadIntents`], [`LoadFills`], [`CurrentMode`], [`NextCounter`],
//! [`VerifyAudit`], [`ImportIntent`]. Emits nothing. Restart behaviour: the store is reopened by whoever
//! restarts it ([`start`]); nothing lives only in memory.

pub mod audit;
pub mod intent_log;
pub mod store;
mod writer;

pub use writer::{ImportIntent, IntentWriter};

pub use store::CORPORATE_ACTION;

pub use audit::{AuditRecord, Broken};
pub use store::{
    Durability, EquitySample, FillRecord, JournalError, ModeTransition, OrderIntent, OrderState,
    Store, StoredIntent,
};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

pub struct Journal {
    shared: Shared,
    /// A commit of the open batch is spawned (it runs once the mailbox is drained).
    commit_due: bool,
}

/// The store and its write latencies, shared by the journal's thread and the intent writer.
#[derive(Clone)]
struct Shared(Arc<Mutex<Books>>);

struct Books {
    store: Store,
    /// How long each write took, to its commit (on disk, as `state.sync` says).
    writes: crate::latency::LatencyHistogram,
    /// The records of the open batch, answered once it is committed: when each was written
    /// and what to tell its sender.
    batch: Vec<(std::time::Instant, Answer)>,
}

/// Tells a record's sender its answer, or the batch's commit error.
type Answer = Box<dyn FnOnce(Option<&JournalError>) + Send>;

impl Shared {
    /// Nothing panics while holding the lock, so a poisoned one is as good as any.
    fn lock(&self) -> MutexGuard<'_, Books> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Books {
    /// `work` on the store, after committing the open batch (a read sees only what is on
    /// disk; a write is its own transaction); its time counted among the writes when `write`.
    fn run<T>(&mut self, write: bool, work: impl FnOnce(&mut Store) -> T) -> T {
        // A failed commit is told to the batch's senders.
        let _ = self.commit();
        let started = std::time::Instant::now();
        let done = work(&mut self.store);
        if write {
            self.writes.record(started.elapsed());
        }
        done
    }

    /// Writes a record into the open batch (opening one), to be answered by `answer` once
    /// the batch is committed. A record that fails is answered at once.
    fn batch<T: Send + 'static>(
        &mut self,
        work: impl FnOnce(&mut Store) -> Result<T, JournalError>,
        answer: impl FnOnce(Result<T, JournalError>) + Send + 'static,
    ) {
        let started = std::time::Instant::now();
        let written = self
            .store
            .begin_batch()
            .and_then(|()| work(&mut self.store));
        match written {
            Ok(value) => self.batch.push((
                started,
                Box::new(move |failed| {
                    answer(match failed {
                        Some(e) => Err(e.clone()),
                        None => Ok(value),
                    })
                }),
            )),
            Err(e) => answer(Err(e)),
        }
    }

    /// Commits the open batch, if any, and answers its records.
    fn commit(&mut self) -> Result<(), JournalError> {
        let committed = self.store.commit_batch();
        for (started, answer) in self.batch.drain(..) {
            self.writes.record(started.elapsed());
            answer(committed.as_ref().err());
        }
        committed
    }
}

/// The journal's write latency (`/metrics`).
#[derive(Message)]
#[rtype(result = "crate::latency::LatencySummary")]
pub struct GetJournalStats;

impl Handler<GetJournalStats> for Journal {
    type Result = MessageResult<GetJournalStats>;
    fn handle(&mut self, _: GetJournalStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.shared.lock().writes.summary())
    }
}

impl Actor for Journal {
    type Context = Context<Self>;
}

impl Journal {
    /// Commits the open batch once the records queued now are written: a spawned future runs
    /// after the mailbox is drained, so records sent together share one commit.
    fn commit_soon(&mut self, ctx: &mut Context<Self>) {
        if std::mem::replace(&mut self.commit_due, true) {
            return;
        }
        ctx.spawn(actix::fut::ready(()).map(|(), act: &mut Journal, _| {
            act.commit_due = false;
            if let Err(e) = act.shared.lock().commit() {
                tracing::error!(error = %e, "journal: a batch of records failed to commit");
            }
        }));
    }
}

/// Records written and not yet committed when the journal's thread stops are committed.
impl Drop for Journal {
    fn drop(&mut self) {
        if let Err(e) = self.shared.lock().commit() {
            tracing::error!(error = %e, "journal: the last batch of records failed to commit");
        }
    }
}

/// A running journal: its address and the thread it owns.
pub struct JournalHandle {
    pub addr: Addr<Journal>,
    /// The order path's write-ahead, on the order path's own thread.
    pub intents: IntentWriter,
    arbiter: Arbiter,
}

impl JournalHandle {
    /// Stops the journal's thread now: records still queued are dropped (the batch it has
    /// written is committed; intents written ahead are copied in at the next start).
    pub fn stop(self) {
        self.arbiter.stop();
    }

    /// Stops the journal's thread after the messages already queued, once it has written and
    /// committed them.
    pub async fn close(self) {
        // Answered once every record queued before it is written and committed (the
        // mailbox is in order): stopping the thread drops what is still queued.
        if let Err(e) = self.addr.send(Flush).await {
            tracing::error!(error = %e, "the journal did not answer before stopping");
        }
        self.arbiter.stop();
        let arbiter = self.arbiter;
        if tokio::task::spawn_blocking(move || arbiter.join())
            .await
            .is_err()
        {
            tracing::error!("the journal thread did not stop cleanly");
        }
    }
}

/// Opens the journal in `dir` and starts its actor on a thread of its own.
pub fn start(dir: &Path, durability: Durability) -> Result<JournalHandle, JournalError> {
    let mut store = Store::open(dir)?;
    store.set_durability(durability)?;
    let (log, left) =
        intent_log::IntentLog::open(dir, intent_log::CAPACITY, durability == Durability::Full)?;
    // Intents a stop left in the log before the store had them, before anything else.
    let mut copied = 0;
    for intent in &left {
        if store.copy_intent(intent)? {
            copied += 1;
        }
    }
    if copied > 0 {
        tracing::warn!(
            copied,
            "journal: intents the last run wrote ahead but had not stored yet are now in the journal"
        );
    }
    let shared = Shared(Arc::new(Mutex::new(Books {
        store,
        writes: Default::default(),
        batch: Vec::new(),
    })));
    let arbiter = Arbiter::new();
    // Its commits never take the CPU from the thread that hands it a record.
    arbiter.spawn_fn(|| {
        crate::threads::background();
    });
    let journal = shared.clone();
    let addr = Journal::start_in_arbiter(&arbiter.handle(), move |_| Journal {
        shared: journal,
        commit_due: false,
    });
    let intents = IntentWriter::new(shared, log, addr.clone())?;
    Ok(JournalHandle {
        addr,
        intents,
        arbiter,
    })
}

/// A record sent in order. The order manager writes from futures it spawns; actix polls an
/// actor's spawned futures in an order of its own (one that completes is replaced by the last
/// spawned), so an `Addr::send` made on a future's first poll can overtake one spawned before
/// it, and a leg's state reached the journal before the leg's intent. `Ordered` goes in with
/// `do_send` when the write is made (see [`ordered`]) and the answer comes back on a
/// channel.
pub struct Ordered<M: Message>(pub M, pub tokio::sync::oneshot::Sender<M::Result>);

impl<M> Message for Ordered<M>
where
    M: Message + Send + 'static,
    M::Result: Send,
{
    type Result = ();
}

/// Queues `msg` now, in order (see [`Ordered`]), and answers a future of the journal's answer;
/// `None` when the journal is not running. The record is queued when this is called, not when
/// the future is first polled.
pub fn ordered<M, T>(
    journal: &Addr<Journal>,
    msg: M,
) -> impl std::future::Future<Output = Option<Result<T, JournalError>>> + use<M, T>
where
    M: Message<Result = Result<T, JournalError>> + Send + 'static,
    T: Send + 'static,
    Journal: Handler<Ordered<M>>,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    journal.do_send(Ordered(msg, tx));
    async move { rx.await.ok() }
}

macro_rules! journal_message {
    ($(#[$doc:meta])* $name:ident $(($($field:ty),*))? => $result:ty, |$store:ident, $msg:ident| $body:expr) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name $(($(pub $field),*))?;

        impl Message for $name {
            type Result = $result;
        }

        impl Handler<$name> for Journal {
            type Result = MessageResult<$name>;
            fn handle(&mut self, $msg: $name, _: &mut Context<Self>) -> Self::Result {
                let write = stringify!($name).starts_with("Record");
                MessageResult(self.shared.lock().run(write, |$store| $body))
            }
        }

        impl Handler<Ordered<$name>> for Journal {
            type Result = ();
            fn handle(&mut self, msg: Ordered<$name>, ctx: &mut Context<Self>) {
                if !stringify!($name).starts_with("Record") {
                    let MessageResult(r) = <Journal as Handler<$name>>::handle(self, msg.0, ctx);
                    let _ = msg.1.send(r);
                    return;
                }
                let $msg = msg.0;
                let answer = msg.1;
                self.shared.lock().batch(|$store| $body, move |r| {
                    let _ = answer.send(r);
                });
                self.commit_soon(ctx);
            }
        }
    };
}

journal_message!(
    /// Journals an order intent before its request is sent.
    RecordIntent(OrderIntent) => Result<(), JournalError>, |store, msg| store.record_intent(&msg.0)
);
journal_message!(
    /// Records the broker's latest state of an order.
    RecordOrderState(OrderState) => Result<(), JournalError>, |store, msg| store.record_order_state(&msg.0)
);
journal_message!(
    /// Records a fill; `Ok(false)` when the execution was already journaled.
    RecordFill(FillRecord) => Result<bool, JournalError>, |store, msg| store.record_fill(&msg.0)
);
journal_message!(
    /// Records the account's equity, cash and exposure at a time.
    RecordEquity(EquitySample) => Result<(), JournalError>, |store, msg| store.record_equity(&msg.0)
);
journal_message!(
    /// Records a TradingMode transition.
    RecordMode(ModeTransition) => Result<(), JournalError>, |store, msg| store.record_mode(&msg.0)
);
journal_message!(
    /// Any other audited event: (time, kind, body).
    RecordEvent(DateTime<Utc>, String, serde_json::Value) => Result<i64, JournalError>, |store, msg| store.record_event(msg.0, &msg.1, &msg.2)
);
journal_message!(
    /// Journaled intents, oldest first; `true` for those not known to be final.
    LoadIntents(bool) => Result<Vec<StoredIntent>, JournalError>, |store, msg| store.intents(msg.0)
);
journal_message!(
    /// Every journaled fill, oldest first.
    LoadFills => Result<Vec<FillRecord>, JournalError>, |store, _msg| store.fills()
);
journal_message!(
    /// What reconciliation needs of the intents: those not final, and those created or
    /// changed since the given time.
    LoadIntentsSince(DateTime<Utc>) => Result<Vec<StoredIntent>, JournalError>, |store, msg| store.intents_since(&msg.0)
);
journal_message!(
    /// Every fill of the broker orders with a fill since the given time.
    LoadFillsSince(DateTime<Utc>) => Result<Vec<FillRecord>, JournalError>, |store, msg| store.fills_of_orders_since(&msg.0)
);
journal_message!(
    /// Whether nothing was ever recorded in this journal.
    IsNew => Result<bool, JournalError>, |store, _msg| store.is_new()
);
journal_message!(
    /// When the last fill was made.
    LastFillAt => Result<Option<DateTime<Utc>>, JournalError>, |store, _msg| store.last_fill_at()
);
journal_message!(
    /// The position per symbol from every fill.
    LoadPositions => Result<std::collections::BTreeMap<String, rust_decimal::Decimal>, JournalError>, |store, _msg| store.positions()
);
journal_message!(
    /// The last journaled TradingMode.
    CurrentMode => Result<Option<String>, JournalError>, |store, _msg| store.current_mode()
);
journal_message!(
    /// The next value of a durable counter.
    NextCounter(String) => Result<u64, JournalError>, |store, msg| store.next_counter(&msg.0)
);
journal_message!(
    /// Commits the records written so far (a no-op read: a read commits the open batch first).
    Flush => Result<(), JournalError>, |_store, _msg| Ok(())
);
journal_message!(
    /// Checks the audit chain.
    VerifyAudit => Result<Result<u64, Broken>, JournalError>, |store, _msg| store.verify_audit()
);
