//! The journal's SQLite store, synchronous: the `Journal` actor owns it on a thread of its own.
//!
//! One file, `traderd.sqlite`, in the state directory, in WAL mode with `synchronous = FULL`,
//! so a record is on disk when its call returns (an order intent is written before its request
//! is sent). Every change and its audit record are one transaction. The audit table refuses
//! updates and deletes (triggers); the hash chain catches what goes around them.
//!
//! Money is stored as decimal text, never as a float.

mod reads;

use super::audit::{self, AuditRecord, Broken, GENESIS};
use crate::alpaca::model::{OrderSide, OrderStatus};
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The client order id of the journal's adjustments for corporate actions (a split): a row
/// of `fills` with price 0 that changes a position with no trade.
pub const CORPORATE_ACTION: &str = "corporate-action";

pub const FILE_NAME: &str = "traderd.sqlite";

/// Runs a statement through the connection's cache of prepared statements (the order path
/// writes the same few statements again and again).
fn exec(
    tx: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<usize> {
    tx.prepare_cached(sql)?.execute(params)
}

/// How far a journaled record has gone when the call that wrote it returns (`state.sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// On the disk (SQLite `synchronous = FULL`): it survives a power loss. The default.
    #[default]
    Full,
    /// Handed to the operating system (`synchronous = NORMAL` in WAL mode): it survives the
    /// process crashing but not the machine, where the last records may be lost (the file
    /// stays consistent; the broker still has the orders and reconciliation finds them by
    /// client order id). Saves a disk flush per record on the order path.
    Normal,
}
const SCHEMA_VERSION: i64 = 1;

#[derive(Debug, Clone, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {message}")]
    Storage { path: String, message: String },
    #[error("an order intent with client_order_id {0} is already journaled")]
    DuplicateIntent(String),
    #[error("no order intent with client_order_id {0}")]
    UnknownIntent(String),
    #[error("journal record is unreadable: {0}")]
    Corrupt(String),
}

/// An order the daemon decided to send, written before the request leaves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderIntent {
    pub client_order_id: String,
    pub symbol: String,
    pub side: OrderSide,
    pub qty: Decimal,
    /// The full request as it will be sent (JSON).
    pub request: serde_json::Value,
    /// Ties the order to the market message that caused it (and to its trace).
    pub correlation_id: crate::domain::CorrelationId,
    pub created_at: DateTime<Utc>,
}

/// What the broker says about an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderState {
    pub client_order_id: String,
    pub broker_order_id: Option<String>,
    pub status: OrderStatus,
    pub filled_qty: Decimal,
    pub filled_avg_price: Option<Decimal>,
    pub at: DateTime<Utc>,
}

/// One execution. `execution_id` makes recording it twice harmless.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FillRecord {
    pub execution_id: String,
    pub client_order_id: String,
    pub broker_order_id: String,
    pub symbol: String,
    pub side: OrderSide,
    pub qty: Decimal,
    pub price: Decimal,
    pub at: DateTime<Utc>,
}

/// The account as read at one time: what `traderd report` draws the equity curve from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EquitySample {
    pub at: DateTime<Utc>,
    pub equity: Decimal,
    pub cash: Decimal,
    /// Long market value plus the absolute short market value.
    pub gross_exposure: Decimal,
    /// Long market value plus the (negative) short market value.
    pub net_exposure: Decimal,
}

/// A TradingMode change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModeTransition {
    pub from: String,
    pub to: String,
    pub cause: String,
    pub at: DateTime<Utc>,
}

/// An intent as journaled, with the broker's latest word on it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredIntent {
    pub intent: OrderIntent,
    pub broker_order_id: Option<String>,
    pub status: Option<OrderStatus>,
    pub filled_qty: Decimal,
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Transactions committed (a batch counts once).
    commits: u64,
}

fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

fn status_text(s: OrderStatus) -> String {
    s.name()
}

impl Store {
    /// Opens (creating if needed) the journal in `dir`.
    pub fn open(dir: &Path) -> Result<Store, JournalError> {
        let fail = |message: String| JournalError::Storage {
            path: dir.display().to_string(),
            message,
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| fail(format!("cannot create the state directory: {e}")))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        let path = dir.join(FILE_NAME);
        let conn = Connection::open(&path)
            .map_err(|e| fail(format!("cannot open {}: {e}", path.display())))?;
        let mut store = Store {
            conn,
            path,
            commits: 0,
        };
        store.migrate()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: rusqlite::Error) -> JournalError {
        JournalError::Storage {
            path: self.path.display().to_string(),
            message: e.to_string(),
        }
    }

    /// Sets how durable each record is when its call returns (default [`Durability::Full`]).
    pub fn set_durability(&mut self, d: Durability) -> Result<(), JournalError> {
        let pragma = match d {
            Durability::Full => "PRAGMA synchronous = FULL",
            Durability::Normal => "PRAGMA synchronous = NORMAL",
        };
        self.conn.execute_batch(pragma).map_err(|e| self.err(e))
    }

    fn migrate(&mut self) -> Result<(), JournalError> {
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(JournalError::Storage {
                path: self.path.display().to_string(),
                message: format!("cannot switch to WAL (got {mode})"),
            });
        }
        self.conn
            .execute_batch(
                "PRAGMA synchronous = FULL;
                 PRAGMA foreign_keys = ON;
                 CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS order_intents (
                     client_order_id TEXT PRIMARY KEY,
                     created_at TEXT NOT NULL,
                     symbol TEXT NOT NULL,
                     side TEXT NOT NULL,
                     qty TEXT NOT NULL,
                     request TEXT NOT NULL,
                     correlation_id TEXT NOT NULL,
                     broker_order_id TEXT,
                     status TEXT,
                     filled_qty TEXT NOT NULL DEFAULT '0',
                     filled_avg_price TEXT,
                     updated_at TEXT);
                 CREATE TABLE IF NOT EXISTS fills (
                     execution_id TEXT PRIMARY KEY,
                     client_order_id TEXT NOT NULL,
                     broker_order_id TEXT NOT NULL,
                     symbol TEXT NOT NULL,
                     side TEXT NOT NULL,
                     qty TEXT NOT NULL,
                     price TEXT NOT NULL,
                     at TEXT NOT NULL);
                 CREATE INDEX IF NOT EXISTS fills_by_order ON fills (client_order_id);
                 CREATE INDEX IF NOT EXISTS fills_by_time ON fills (at);
                 CREATE INDEX IF NOT EXISTS fills_by_broker_order ON fills (broker_order_id);
                 CREATE INDEX IF NOT EXISTS intents_by_status ON order_intents (status);
                 CREATE TABLE IF NOT EXISTS mode_transitions (
                     id INTEGER PRIMARY KEY AUTOINCREMENT,
                     at TEXT NOT NULL, from_mode TEXT NOT NULL, to_mode TEXT NOT NULL, cause TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS equity (
                     at TEXT PRIMARY KEY,
                     equity TEXT NOT NULL, cash TEXT NOT NULL,
                     gross_exposure TEXT NOT NULL, net_exposure TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS audit (
                     seq INTEGER PRIMARY KEY,
                     at TEXT NOT NULL, kind TEXT NOT NULL, body TEXT NOT NULL,
                     prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
                 CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
                     BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
                 CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
                     BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;",
            )
            .map_err(|e| self.err(e))?;
        let version: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        match version.as_deref().map(i64::from_str) {
            None => {
                self.conn
                    .execute(
                        "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
                        [SCHEMA_VERSION.to_string()],
                    )
                    .map_err(|e| self.err(e))?;
            }
            Some(Ok(v)) if v == SCHEMA_VERSION => {}
            Some(v) => {
                return Err(JournalError::Storage {
                    path: self.path.display().to_string(),
                    message: format!(
                        "schema version {v:?} is not {SCHEMA_VERSION}: this journal was written by another traderd version"
                    ),
                });
            }
        }
        Ok(())
    }

    /// Appends an audit record inside the caller's transaction.
    fn append_audit(
        tx: &rusqlite::Connection,
        at: &DateTime<Utc>,
        kind: &str,
        body: &str,
    ) -> rusqlite::Result<i64> {
        let (seq, prev): (i64, String) = tx
            .prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
            .unwrap_or((0, GENESIS.to_string()));
        let seq = seq + 1;
        let at = ts(at);
        let hash = audit::hash(seq, &at, kind, body, &prev);
        exec(
            tx,
            "INSERT INTO audit (seq, at, kind, body, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![seq, at, kind, body, prev, hash],
        )?;
        Ok(seq)
    }

    /// One record's writes, all or none: a transaction of its own, or within an open batch
    /// ([`Store::begin_batch`]) a savepoint of it.
    fn with_tx<T>(
        &mut self,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T, JournalError> {
        let path = self.path.display().to_string();
        let storage = |e: rusqlite::Error| JournalError::Storage {
            path: path.clone(),
            message: e.to_string(),
        };
        if self.conn.is_autocommit() {
            let tx = self.conn.transaction().map_err(storage)?;
            let out = f(&tx).map_err(storage)?;
            tx.commit().map_err(storage)?;
            self.commits += 1;
            Ok(out)
        } else {
            let sp = self.conn.savepoint().map_err(storage)?;
            let out = f(&sp).map_err(storage)?;
            sp.commit().map_err(storage)?;
            Ok(out)
        }
    }

    /// Opens a batch, if none is open: the records written until [`Store::commit_batch`] are
    /// one transaction, on disk together with one sync (group commit).
    pub fn begin_batch(&mut self) -> Result<(), JournalError> {
        if self.conn.is_autocommit() {
            self.conn
                .execute_batch("BEGIN IMMEDIATE")
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Whether a batch is open (written, not yet committed).
    pub fn in_batch(&self) -> bool {
        !self.conn.is_autocommit()
    }

    /// Commits the open batch, if any (on disk when this returns, as `state.sync` says); on
    /// failure every record of the batch is rolled back.
    pub fn commit_batch(&mut self) -> Result<(), JournalError> {
        if self.conn.is_autocommit() {
            return Ok(());
        }
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            if !self.conn.is_autocommit() {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
            return Err(self.err(e));
        }
        self.commits += 1;
        Ok(())
    }

    /// Transactions committed since the store was opened (a batch counts once).
    pub fn commits(&self) -> u64 {
        self.commits
    }

    /// Copies in an intent that was written ahead (`journal::intent_log`): one the store has
    /// already (copied in at a start, before the run that wrote it stopped) is as good as
    /// copied. Answers whether it was new.
    pub fn copy_intent(&mut self, intent: &OrderIntent) -> Result<bool, JournalError> {
        match self.record_intent(intent) {
            Ok(()) => Ok(true),
            Err(JournalError::DuplicateIntent(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Journals an intent; refuses a client order id it has seen before.
    pub fn record_intent(&mut self, intent: &OrderIntent) -> Result<(), JournalError> {
        let exists = has_intent(&self.conn, &intent.client_order_id).map_err(|e| self.err(e))?;
        if exists {
            return Err(JournalError::DuplicateIntent(
                intent.client_order_id.clone(),
            ));
        }
        let body =
            serde_json::to_string(intent).map_err(|e| JournalError::Corrupt(e.to_string()))?;
        self.with_tx(|tx| {
            exec(tx,
                "INSERT INTO order_intents (client_order_id, created_at, symbol, side, qty, request, correlation_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    intent.client_order_id,
                    ts(&intent.created_at),
                    intent.symbol,
                    intent.side.as_str(),
                    intent.qty.to_string(),
                    intent.request.to_string(),
                    intent.correlation_id.as_str()
                ],
            )?;
            Self::append_audit(tx, &intent.created_at, "order_intent", &body)?;
            Ok(())
        })
    }

    /// Records the broker's latest state of an order.
    pub fn record_order_state(&mut self, s: &OrderState) -> Result<(), JournalError> {
        let body = serde_json::to_string(s).map_err(|e| JournalError::Corrupt(e.to_string()))?;
        let changed = self.with_tx(|tx| {
            let n = exec(tx,
                "UPDATE order_intents SET broker_order_id = COALESCE(?2, broker_order_id), status = ?3, filled_qty = ?4, filled_avg_price = ?5, updated_at = ?6 WHERE client_order_id = ?1",
                params![s.client_order_id, s.broker_order_id, status_text(s.status), s.filled_qty.to_string(), s.filled_avg_price.map(|p| p.to_string()), ts(&s.at)],
            )?;
            if n > 0 {
                Self::append_audit(tx, &s.at, "order_state", &body)?;
            }
            Ok(n)
        })?;
        if changed == 0 {
            return Err(JournalError::UnknownIntent(s.client_order_id.clone()));
        }
        Ok(())
    }

    /// Records a fill; `Ok(false)` when this execution was already journaled.
    pub fn record_fill(&mut self, f: &FillRecord) -> Result<bool, JournalError> {
        let body = serde_json::to_string(f).map_err(|e| JournalError::Corrupt(e.to_string()))?;
        self.with_tx(|tx| {
            let n = exec(tx,
                "INSERT OR IGNORE INTO fills (execution_id, client_order_id, broker_order_id, symbol, side, qty, price, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![f.execution_id, f.client_order_id, f.broker_order_id, f.symbol, f.side.as_str(), f.qty.to_string(), f.price.to_string(), ts(&f.at)],
            )?;
            if n > 0 {
                Self::append_audit(tx, &f.at, "fill", &body)?;
            }
            Ok(n > 0)
        })
    }

    /// Records the account's equity, cash and exposure at a time (once a minute and at fills);
    /// a second sample at the same time replaces the first.
    pub fn record_equity(&mut self, e: &EquitySample) -> Result<(), JournalError> {
        self.with_tx(|tx| {
            exec(tx,
                "INSERT OR REPLACE INTO equity (at, equity, cash, gross_exposure, net_exposure) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![ts(&e.at), e.equity.to_string(), e.cash.to_string(), e.gross_exposure.to_string(), e.net_exposure.to_string()],
            )?;
            Ok(())
        })
    }

    /// Records a TradingMode change.
    pub fn record_mode(&mut self, m: &ModeTransition) -> Result<(), JournalError> {
        let body = serde_json::to_string(m).map_err(|e| JournalError::Corrupt(e.to_string()))?;
        self.with_tx(|tx| {
            exec(tx,
                "INSERT INTO mode_transitions (at, from_mode, to_mode, cause) VALUES (?1, ?2, ?3, ?4)",
                params![ts(&m.at), m.from, m.to, m.cause],
            )?;
            Self::append_audit(tx, &m.at, "mode_transition", &body)?;
            Ok(())
        })
    }

    /// Any other event worth an audit record (reconciliation results, operator commands, …).
    pub fn record_event(
        &mut self,
        at: DateTime<Utc>,
        kind: &str,
        body: &serde_json::Value,
    ) -> Result<i64, JournalError> {
        let body = body.to_string();
        self.with_tx(|tx| Self::append_audit(tx, &at, kind, &body))
    }

    /// The mode the daemon was last in, if any was journaled.
    pub fn current_mode(&self) -> Result<Option<String>, JournalError> {
        self.conn
            .query_row(
                "SELECT to_mode FROM mode_transitions ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// A durable counter (for client order ids unique across restarts): returns the next value.
    pub fn next_counter(&mut self, name: &str) -> Result<u64, JournalError> {
        let key = format!("counter:{name}");
        self.with_tx(|tx| {
            let current: Option<String> = tx.query_row("SELECT value FROM meta WHERE key = ?1", [&key], |r| r.get(0)).optional()?;
            let next = current.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + 1;
            exec(tx, "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value", params![key, next.to_string()])?;
            Ok(next)
        })
    }
}

/// Whether the store `conn` is open on has an intent with this client order id (the store's
/// own writes, and the intent writer's reader connection).
pub(super) fn has_intent(conn: &rusqlite::Connection, coid: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM order_intents WHERE client_order_id = ?1")
        .and_then(|mut st| st.query_row([coid], |_| Ok(())).optional())
        .map(|found| found.is_some())
}
