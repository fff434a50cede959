//! The order path's write-ahead, on the caller's thread: an intent goes to the intent log
//! ([`IntentLog`]) and is synced there before [`IntentWriter::record_intent`] returns; the
//! journal's thread then copies it into the store ([`ImportIntent`], queued in order with the
//! records that follow it), in its next group commit. The order path never waits for the
//! store's commits, only for its own sync.

use super::intent_log::IntentLog;
use super::{Journal, JournalError, OrderIntent, Shared};
use crate::latency::{LatencyHistogram, LatencySummary};
use actix::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Writes order intents ahead of their requests (see the module).
#[derive(Clone)]
pub struct IntentWriter {
    shared: Shared,
    log: Arc<Mutex<LogSide>>,
    journal: Addr<Journal>,
    stored: Arc<Stored>,
}

struct LogSide {
    log: IntentLog,
    /// A second connection to the store, to read whether it has a client order id (the
    /// store's readers never wait for its writer).
    reader: rusqlite::Connection,
    /// How long each intent took to be written, synced included.
    writes: LatencyHistogram,
}

/// How far the store has the log's records: every one up to `through` is committed there.
#[derive(Default)]
pub(super) struct Stored {
    through: AtomicU64,
    /// A copy failed: the log is never used from its start again in this run.
    stuck: AtomicBool,
}

impl Stored {
    fn done(&self, seq: u64, outcome: Result<(), JournalError>) {
        match outcome {
            Ok(()) if !self.stuck.load(Ordering::Acquire) => {
                self.through.fetch_max(seq, Ordering::AcqRel);
            }
            Ok(()) => {}
            Err(e) => {
                self.stuck.store(true, Ordering::Release);
                tracing::error!(seq, error = %e, "an intent could not be copied into the journal's store; it stays in the intent log and is copied in at the next start");
            }
        }
    }
}

/// Copies an intent of the log into the store (in the journal's open batch).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ImportIntent {
    /// The intent as the log has it (JSON), read back on the journal's thread.
    entry: Vec<u8>,
    seq: u64,
    stored: Arc<Stored>,
}

impl Handler<ImportIntent> for Journal {
    type Result = ();
    fn handle(&mut self, msg: ImportIntent, ctx: &mut Context<Self>) {
        let ImportIntent { entry, seq, stored } = msg;
        self.shared.lock().batch(
            |store| {
                let intent: OrderIntent = serde_json::from_slice(&entry)
                    .map_err(|e| JournalError::Corrupt(e.to_string()))?;
                store.copy_intent(&intent).map(|_| ())
            },
            move |r| stored.done(seq, r),
        );
        self.commit_soon(ctx);
    }
}

impl IntentWriter {
    /// The writer over `log`, whose intents `journal` copies into the store of `shared`.
    pub(super) fn new(
        shared: Shared,
        log: IntentLog,
        journal: Addr<Journal>,
    ) -> Result<IntentWriter, JournalError> {
        let path = shared.lock().store.path().to_path_buf();
        let reader = rusqlite::Connection::open(&path)
            .and_then(|c| {
                c.busy_timeout(std::time::Duration::from_secs(5))
                    .map(|()| c)
            })
            .map_err(|e| JournalError::Storage {
                path: path.display().to_string(),
                message: format!("cannot open a reader: {e}"),
            })?;
        Ok(IntentWriter {
            shared,
            log: Arc::new(Mutex::new(LogSide {
                log,
                reader,
                writes: LatencyHistogram::new(),
            })),
            journal,
            stored: Arc::default(),
        })
    }

    /// Nothing panics while holding the lock, so a poisoned one is as good as any.
    fn side(&self) -> MutexGuard<'_, LogSide> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Journals `intent` (on disk when this returns, as `state.sync` says); refuses a client
    /// order id it has seen before.
    pub fn record_intent(&self, intent: &OrderIntent) -> Result<(), JournalError> {
        self.write_ahead(intent, &intent.request)
    }

    /// [`IntentWriter::record_intent`] with the request as it will be sent, in place of
    /// `intent.request` (the order path: no JSON value made of it on the way).
    pub fn write_ahead<R: serde::Serialize>(
        &self,
        intent: &OrderIntent,
        request: &R,
    ) -> Result<(), JournalError> {
        let mut side = self.side();
        let started = std::time::Instant::now();
        let coid = &intent.client_order_id;
        if side.log.knows(coid) || side.has(coid)? {
            return Err(JournalError::DuplicateIntent(coid.clone()));
        }
        let through = self.stored.through.load(Ordering::Acquire);
        let logged = side.log.append_with(intent, request, through)?;
        let Some(seq) = logged else {
            // The log is full of records the store does not have yet: straight into the
            // store, as a commit of its own.
            drop(side);
            let mut intent = intent.clone();
            intent.request =
                serde_json::to_value(request).map_err(|e| JournalError::Corrupt(e.to_string()))?;
            return self.write_to_store(&intent);
        };
        side.writes.record(started.elapsed());
        // Queued while the log is held: the copies reach the store in the log's order.
        self.journal.do_send(ImportIntent {
            entry: side.log.last_entry().to_vec(),
            seq,
            stored: self.stored.clone(),
        });
        Ok(())
    }

    fn write_to_store(&self, intent: &OrderIntent) -> Result<(), JournalError> {
        let mut books = self.shared.lock();
        let started = std::time::Instant::now();
        let written = books.store.record_intent(intent);
        let committed = books.commit();
        books.writes.record(started.elapsed());
        written.and(committed)
    }

    /// Waits until the intent log is made (a new one is filled with zeros on a thread of its
    /// own; until then intents go to the store directly); whether it is used.
    pub fn wait_ready(&self) -> bool {
        self.side().log.wait_ready()
    }

    /// How long intents took to be written to the log, synced included (`/metrics`, stats).
    pub fn write_latency(&self) -> LatencySummary {
        self.side().writes.summary()
    }

    /// Transactions the journal's store has committed since it opened (a batch of records
    /// counts once).
    pub fn commits(&self) -> u64 {
        self.shared.lock().store.commits()
    }

    /// The log's last record and the last the store has with all before it (tests, status).
    pub fn log_position(&self) -> (u64, u64) {
        let last = self.side().log.last_seq();
        (last, self.stored.through.load(Ordering::Acquire))
    }
}

impl LogSide {
    /// Whether the store has an intent with this client order id (committed).
    fn has(&self, coid: &str) -> Result<bool, JournalError> {
        super::store::has_intent(&self.reader, coid).map_err(|e| JournalError::Storage {
            path: self.reader.path().unwrap_or_default().to_string(),
            message: format!("cannot read whether it has an intent: {e}"),
        })
    }
}
