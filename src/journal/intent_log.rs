//! The order path's write-ahead: a file of its own that an order's intent is written to, and
//! synced, before its request leaves. The journal's store has the intent a moment later (the
//! journal's thread copies it in, in order with the order's other records); a crash in between
//! leaves it here, and the next start copies it in before anything else (`journal::start`).
//!
//! Why a file of its own: the store is one SQLite file with one writer at a time, and its
//! thread's commits (states, fills, equity) each hold it for a disk sync. An intent written
//! there waited behind whichever commit was on the disk, then made its own: two syncs before
//! the request. Here it waits for nothing but its own sync, of one or two sectors of a file
//! written in place (filled with zeros when it is made, so a sync writes no metadata).
//!
//! The layout: records, each at a 512-byte boundary (a torn write never touches a record
//! already synced), each a 32-byte header — `TDI1`, the generation, the sequence number, the
//! length, a check (the first 8 bytes of SHA-256 over the rest) — and the intent as JSON. The
//! file is used from the start again (a new generation) only once the store has every record
//! of the one before; reading stops at the first record that is not whole or not of the first
//! record's generation.

use super::{JournalError, OrderIntent};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The log's file name, in the state directory beside the store.
pub const FILE_NAME: &str = "intents.log";
/// The file's size: 1,000–2,000 intents between two uses of its start.
pub const CAPACITY: u64 = 1 << 20;

const MAGIC: [u8; 4] = *b"TDI1";
const HEADER: usize = 32;
const SECTOR: u64 = 512;
/// The largest record written straight to the disk (a larger one is not written here).
const MAX_RECORD: usize = 8192;

/// A record's bytes at a page boundary, as direct I/O needs them.
#[repr(C, align(4096))]
struct Page([u8; MAX_RECORD]);

pub struct IntentLog {
    file: File,
    /// A new log being filled with zeros; nothing is written to it until that is done.
    filling: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    /// It could not be made: every intent goes to the store.
    broken: bool,
    /// The file opened for synced writes straight to the disk (`O_DIRECT | O_DSYNC`): one
    /// system call, no page cache, no separate flush of the file; `None` where the file
    /// system does not take them (then a write and `fdatasync`) or when the log does not sync.
    direct: Option<File>,
    page: Box<Page>,
    path: PathBuf,
    capacity: u64,
    /// Each record synced before [`IntentLog::append`] returns (`state.sync = full`).
    sync: bool,
    generation: u64,
    /// Where the next record goes.
    at: u64,
    /// The last record's sequence number (they go on across generations).
    seq: u64,
    /// The client order ids of this generation (the store may not have them yet).
    ids: HashSet<String>,
    /// The length of the last record's intent (its JSON, in `page` after the header).
    last_len: usize,
}

impl IntentLog {
    /// Opens the log in `dir` (made and filled with zeros to `capacity` when it is new) and
    /// reads its last generation: the intents a stop may have left before the store had
    /// them. The caller puts those in the store before the first [`IntentLog::append`],
    /// which starts a new generation from the file's start.
    pub fn open(
        dir: &Path,
        capacity: u64,
        sync: bool,
    ) -> Result<(IntentLog, Vec<OrderIntent>), JournalError> {
        let path = dir.join(FILE_NAME);
        let fail = |what: &str, e: std::io::Error| storage(&path, format!("{what}: {e}"));
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path).map_err(|e| fail("cannot open", e))?;
        let len = file.metadata().map_err(|e| fail("cannot read", e))?.len();
        let capacity = capacity.max(SECTOR * 2);
        let mut content = Vec::new();
        (&file)
            .take(capacity)
            .read_to_end(&mut content)
            .map_err(|e| fail("cannot read", e))?;
        // A new log is written out in full once, so a record's sync never allocates: on a
        // thread of its own, not to hold up the start (until then intents go to the store).
        let filling = if len < capacity {
            let (filler, new) = (
                file.try_clone().map_err(|e| fail("cannot open", e))?,
                len == 0,
            );
            let dir = dir.to_path_buf();
            let fill = move || {
                crate::threads::background();
                zeros(&filler, len, capacity - len)?;
                filler.sync_all()?;
                if new {
                    File::open(&dir)?.sync_all()?;
                }
                Ok(())
            };
            Some(
                std::thread::Builder::new()
                    .name("intent-log-fill".into())
                    .spawn(fill)
                    .map_err(|e| fail("cannot start the thread that makes it", e))?,
            )
        } else {
            None
        };
        let (generation, recovered) = read_records(&content);
        let direct = if sync { open_direct(&path) } else { None };
        let seq = recovered.last().map(|(seq, _)| *seq).unwrap_or(0);
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0).max(0) as u64;
        let log = IntentLog {
            file,
            filling,
            broken: false,
            direct,
            page: Box::new(Page([0; MAX_RECORD])),
            path,
            capacity,
            sync,
            // Above every generation in the file: the first record's is the latest.
            generation: generation.saturating_add(1).max(now),
            at: 0,
            seq,
            ids: HashSet::new(),
            last_len: 0,
        };
        Ok((log, recovered.into_iter().map(|(_, i)| i).collect()))
    }

    /// Whether records are written here (a new log is made first; one that could not be
    /// made never is).
    pub fn ready(&mut self) -> bool {
        if self.filling.as_ref().is_some_and(|h| !h.is_finished()) {
            return false;
        }
        self.wait_ready()
    }

    /// Waits until a new log is made; whether records are written here.
    pub fn wait_ready(&mut self) -> bool {
        if let Some(h) = self.filling.take() {
            let made = h
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the thread that made it stopped")));
            if let Err(e) = made {
                tracing::error!(path = %self.path.display(), error = %e, "intent log: cannot make it; intents go to the journal's store directly");
                self.broken = true;
            }
        }
        !self.broken
    }

    /// Whether this generation has an intent with this client order id.
    pub fn knows(&self, client_order_id: &str) -> bool {
        self.ids.contains(client_order_id)
    }

    /// The last record's sequence number.
    pub fn last_seq(&self) -> u64 {
        self.seq
    }

    /// The last record written: the intent as JSON.
    pub fn last_entry(&self) -> &[u8] {
        self.page
            .0
            .get(HEADER..HEADER + self.last_len)
            .unwrap_or_default()
    }

    /// Writes `intent` (synced when the log syncs) and answers its sequence number; `None`
    /// when it does not fit now: the file is full and the store does not have every record
    /// of this generation yet (`stored_through`: the last sequence number it has, with all
    /// before it), or the intent is larger than the file. The caller then writes it to the
    /// store itself.
    pub fn append(
        &mut self,
        intent: &OrderIntent,
        stored_through: u64,
    ) -> Result<Option<u64>, JournalError> {
        self.append_with(intent, &intent.request, stored_through)
    }

    /// [`IntentLog::append`] with the request given as it will be sent (`intent.request` is
    /// not read): written as the intent's `request`, without making a JSON value of it first.
    pub fn append_with<R: serde::Serialize>(
        &mut self,
        intent: &OrderIntent,
        request: &R,
        stored_through: u64,
    ) -> Result<Option<u64>, JournalError> {
        if !self.ready() {
            return Ok(None);
        }
        // Serialized straight into the page the record is written from; one that does not
        // fit is too large for the log.
        self.last_len = 0;
        let mut body = &mut self.page.0[HEADER..];
        let room = body.len();
        match serde_json::to_writer(&mut body, &Entry::of(intent, request)) {
            Ok(()) => {}
            Err(e) if e.is_io() => return Ok(None),
            Err(e) => return Err(JournalError::Corrupt(e.to_string())),
        }
        let len = (room - body.len()) as u64;
        let size = aligned(HEADER as u64 + len);
        if size > self.capacity {
            return Ok(None);
        }
        if self.at + size > self.capacity {
            if stored_through < self.seq {
                return Ok(None);
            }
            self.generation = self.generation.saturating_add(1);
            self.at = 0;
            self.ids.clear();
        }
        let seq = self.seq + 1;
        let (n, size) = (HEADER + len as usize, size as usize);
        let page = &mut self.page.0;
        let check = check(self.generation, seq, &page[HEADER..n]);
        page[0..4].copy_from_slice(&MAGIC);
        page[4..12].copy_from_slice(&self.generation.to_le_bytes());
        page[12..20].copy_from_slice(&seq.to_le_bytes());
        page[20..24].copy_from_slice(&(len as u32).to_le_bytes());
        page[24..32].copy_from_slice(&check);
        page[n..size].fill(0);
        let record = &self.page.0[..size];
        let at = self.at;
        let buffered = |file: &File| {
            file.write_all_at(record, at)
                .and_then(|()| if self.sync { file.sync_data() } else { Ok(()) })
        };
        let written = match self.direct.as_ref().map(|d| d.write_all_at(record, at)) {
            // A file system that takes the flags but not this alignment: the usual way from
            // now on.
            Some(Err(e)) if e.raw_os_error() == Some(libc::EINVAL) => {
                tracing::info!(error = %e, "intent log: direct writes refused; writing and syncing instead");
                let r = buffered(&self.file);
                self.direct = None;
                r
            }
            Some(r) => r,
            None => buffered(&self.file),
        };
        written.map_err(|e| storage(&self.path, format!("cannot write an intent: {e}")))?;
        self.at += size as u64;
        self.seq = seq;
        self.last_len = len as usize;
        self.ids.insert(intent.client_order_id.clone());
        Ok(Some(seq))
    }
}

/// An [`OrderIntent`] as the log writes it, its request borrowed as it will be sent: the same
/// JSON, read back as an `OrderIntent` (a test holds the two together).
#[derive(serde::Serialize)]
struct Entry<'a, R> {
    client_order_id: &'a str,
    symbol: &'a str,
    side: crate::alpaca::model::OrderSide,
    qty: rust_decimal::Decimal,
    request: &'a R,
    correlation_id: &'a crate::domain::CorrelationId,
    created_at: chrono::DateTime<chrono::Utc>,
}

impl<'a, R> Entry<'a, R> {
    fn of(i: &'a OrderIntent, request: &'a R) -> Self {
        // Every field named, so a field added to the intent fails to build here.
        let OrderIntent {
            client_order_id,
            symbol,
            side,
            qty,
            request: _,
            correlation_id,
            created_at,
        } = i;
        Entry {
            client_order_id,
            symbol,
            side: *side,
            qty: *qty,
            request,
            correlation_id,
            created_at: *created_at,
        }
    }
}

fn storage(path: &Path, message: String) -> JournalError {
    JournalError::Storage {
        path: path.display().to_string(),
        message,
    }
}

/// The log opened for direct, synced writes, where the file system takes them.
fn open_direct(path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
        .open(path)
        .ok()
}

fn zeros(file: &File, mut at: u64, mut n: u64) -> std::io::Result<()> {
    let block = [0u8; 64 * 1024];
    while n > 0 {
        let k = n.min(block.len() as u64) as usize;
        file.write_all_at(&block[..k], at)?;
        (at, n) = (at + k as u64, n - k as u64);
    }
    Ok(())
}

fn aligned(n: u64) -> u64 {
    n.div_ceil(SECTOR) * SECTOR
}

fn check(generation: u64, seq: u64, body: &[u8]) -> [u8; 8] {
    let mut h = Sha256::new();
    h.update(generation.to_le_bytes());
    h.update(seq.to_le_bytes());
    h.update((body.len() as u32).to_le_bytes());
    h.update(body);
    let digest = h.finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

/// The first record's generation and its records in order, up to the first that is not
/// whole, not of that generation, or not in sequence.
fn read_records(content: &[u8]) -> (u64, Vec<(u64, OrderIntent)>) {
    let mut out: Vec<(u64, OrderIntent)> = Vec::new();
    let mut generation = 0;
    let mut at = 0usize;
    while let Some(header) = content.get(at..at + HEADER) {
        let word = |r: std::ops::Range<usize>| {
            let mut b = [0u8; 8];
            b[..r.len()].copy_from_slice(&header[r]);
            u64::from_le_bytes(b)
        };
        let (g, seq, len) = (word(4..12), word(12..20), word(20..24) as usize);
        let Some(body) = content.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        let in_turn = match out.last() {
            None => true,
            Some((last, _)) => g == generation && seq == last + 1,
        };
        if header[0..4] != MAGIC || !in_turn || header[24..32] != check(g, seq, body) {
            break;
        }
        let Ok(intent) = serde_json::from_slice::<OrderIntent>(body) else {
            tracing::warn!(
                seq,
                "intent log: a record that is whole but not an intent; read up to it"
            );
            break;
        };
        generation = g;
        out.push((seq, intent));
        at += aligned((HEADER + len) as u64) as usize;
    }
    (generation, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alpaca::model::OrderSide;
    use proptest::prelude::*;

    fn intent(k: u64) -> OrderIntent {
        OrderIntent {
            client_order_id: format!("td-r1-{k}-AAPL"),
            symbol: "AAPL".into(),
            side: OrderSide::Buy,
            qty: rust_decimal::Decimal::from(k + 1),
            request: serde_json::json!({ "symbol": "AAPL", "padding": "x".repeat((k % 7) as usize * 90) }),
            correlation_id: format!("AAPL-{k}").into(),
            created_at: chrono::DateTime::from_timestamp(1_700_000_000 + k as i64, 123_456_789)
                .unwrap(),
        }
    }

    /// What a stop leaves: every record synced is read back, in order; a new start writes a
    /// new generation from the top, and what is left of the old one below it is not read.
    #[test]
    fn what_is_written_is_read_back_after_a_stop_and_only_the_last_generation() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, none) = IntentLog::open(dir.path(), 64 * 1024, true).unwrap();
        assert!(none.is_empty());
        assert!(log.wait_ready());
        for k in 0..10 {
            assert_eq!(log.append(&intent(k), 0).unwrap(), Some(k + 1));
        }
        assert!(log.knows(&intent(3).client_order_id));
        drop(log);
        let (mut log, back) = IntentLog::open(dir.path(), 64 * 1024, true).unwrap();
        assert_eq!(back, (0..10).map(intent).collect::<Vec<_>>());
        assert_eq!(log.last_seq(), 10);
        // A new generation: two records over the old ten.
        log.append(&intent(100), 10).unwrap();
        log.append(&intent(101), 10).unwrap();
        drop(log);
        let (_, back) = IntentLog::open(dir.path(), 64 * 1024, true).unwrap();
        assert_eq!(back, vec![intent(100), intent(101)]);
    }

    /// The file is used from the top again only once the store has every record; until then
    /// the intent is the caller's to write elsewhere.
    #[test]
    fn a_full_log_starts_over_only_once_the_store_has_everything() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = IntentLog::open(dir.path(), 4 * 1024, true).unwrap();
        assert!(log.wait_ready());
        let mut k = 0;
        while log.append(&intent(0), 0).unwrap().is_some() {
            k += 1;
            assert!(k < 100, "a 4 KiB log took {k} records");
        }
        let last = log.last_seq();
        assert!(last >= 2, "{last}");
        assert_eq!(log.append(&intent(1), last - 1).unwrap(), None);
        assert_eq!(log.append(&intent(1), last).unwrap(), Some(last + 1));
        assert!(!log.knows(&intent(0).client_order_id));
        drop(log);
        let (_, back) = IntentLog::open(dir.path(), 4 * 1024, true).unwrap();
        assert_eq!(back, vec![intent(1)]);
    }

    /// An intent too large for one record is not written (the caller stores it directly) and
    /// leaves nothing behind: the next is written, read back, and is the last entry.
    #[test]
    fn an_intent_over_a_record_s_size_is_not_written_and_the_next_is() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = IntentLog::open(dir.path(), 64 * 1024, true).unwrap();
        assert!(log.wait_ready());
        let mut large = intent(0);
        large.request = serde_json::json!({ "padding": "x".repeat(MAX_RECORD) });
        assert_eq!(log.append(&large, 0).unwrap(), None);
        assert!(
            log.last_entry().is_empty(),
            "no entry from a record not written"
        );
        assert!(!log.knows(&large.client_order_id));
        assert_eq!(log.append(&intent(1), 0).unwrap(), Some(1));
        assert_eq!(
            serde_json::from_slice::<OrderIntent>(log.last_entry()).unwrap(),
            intent(1)
        );
        drop(log);
        let (_, back) = IntentLog::open(dir.path(), 64 * 1024, true).unwrap();
        assert_eq!(back, vec![intent(1)]);
    }

    /// The request written as it will be sent reads back as the intent whose `request` is that
    /// request's JSON value (what the store keeps).
    #[test]
    fn a_request_written_as_sent_reads_back_as_its_json_value() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = IntentLog::open(dir.path(), 64 * 1024, true).unwrap();
        assert!(log.wait_ready());
        let request = crate::alpaca::model::OrderRequest::limit(
            "AAPL",
            OrderSide::Buy,
            rust_decimal::Decimal::new(15, 1),
            rust_decimal::Decimal::new(18_725, 2),
        )
        .with_client_order_id("td-r1-0-AAPL");
        let mut want = intent(0);
        let mut without = want.clone();
        without.request = serde_json::Value::Null;
        log.append_with(&without, &request, 0).unwrap().unwrap();
        want.request = serde_json::to_value(&request).unwrap();
        assert_eq!(
            serde_json::from_slice::<OrderIntent>(log.last_entry()).unwrap(),
            want
        );
        drop(log);
        let (_, back) = IntentLog::open(dir.path(), 64 * 1024, true).unwrap();
        assert_eq!(back, vec![want]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// A crash at any byte: whatever is read back is the records written, in order, up to
        /// the one the crash cut (never a record out of turn, never one made up).
        #[test]
        fn a_crash_at_any_byte_reads_back_a_prefix(n in 1u64..12, cut in 0usize..12_000, garbage in any::<u8>()) {
            let dir = tempfile::tempdir().unwrap();
            let (mut log, _) = IntentLog::open(dir.path(), 16 * 1024, false).unwrap();
            prop_assert!(log.wait_ready());
            let written: Vec<OrderIntent> = (0..n).map(intent).collect();
            for i in &written {
                log.append(i, 0).unwrap();
            }
            drop(log);
            let path = dir.path().join(FILE_NAME);
            let mut bytes = std::fs::read(&path).unwrap();
            let end = bytes.len();
            for b in &mut bytes[cut.min(end)..(cut + 64).min(end)] {
                *b = garbage;
            }
            std::fs::write(&path, &bytes).unwrap();
            let (_, back) = IntentLog::open(dir.path(), 16 * 1024, false).unwrap();
            prop_assert!(back.len() <= written.len());
            prop_assert_eq!(&back[..], &written[..back.len()]);
        }
    }
}
