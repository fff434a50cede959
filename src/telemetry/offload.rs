//! The daemon's log lines, written by a thread of their own. A line is formatted where it is
//! logged and put in a bounded queue the writer empties every few milliseconds; the trading
//! thread never waits for stderr or journald, nor wakes a thread. When the sink falls behind
//! (journald stalled, a terminal paused, a pipe nobody reads) and the queue is full, further
//! lines are dropped, counted, and the count is written as soon as the sink takes lines again:
//! a stalled log costs log lines, never a stalled daemon.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::Duration;
use tracing::Level;

/// Lines the queue holds before it drops (a few hundred bytes each: about a megabyte).
pub const QUEUE_LINES: usize = 4096;

/// Where the worker writes.
pub trait Sink: Send + 'static {
    type Line: Send + 'static;
    fn write(&mut self, line: Self::Line);
    /// `lost` lines were dropped since the last report.
    fn dropped(&mut self, lost: Lost);
}

/// Lines dropped because the queue was full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lost {
    pub lines: u64,
    /// Of them, at WARN or ERROR.
    pub warnings: u64,
}

impl Lost {
    /// The notice a sink writes for them.
    pub fn notice(&self) -> String {
        format!(
            "{} log lines dropped ({} of them warnings or errors): the log's reader fell behind",
            self.lines, self.warnings
        )
    }
}

/// Lines written and dropped since the start, for `ctl stats`.
#[derive(Debug, Default)]
pub struct Counts {
    written: AtomicU64,
    dropped: AtomicU64,
    dropped_warnings: AtomicU64,
}

impl Counts {
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    pub fn dropped(&self) -> Lost {
        Lost {
            lines: self.dropped.load(Ordering::Relaxed),
            warnings: self.dropped_warnings.load(Ordering::Relaxed),
        }
    }

    /// For `ctl stats`.
    pub fn to_json(&self) -> serde_json::Value {
        let dropped = self.dropped();
        serde_json::json!({
            "lines_written": self.written(),
            "lines_dropped": dropped.lines,
            "warnings_dropped": dropped.warnings,
        })
    }

    fn drop_one(&self, level: Level) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        if level <= Level::WARN {
            self.dropped_warnings.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What the writer has not taken yet.
struct Queue<L> {
    lines: Vec<L>,
    /// Answered once every line queued before them is written.
    flushes: Vec<mpsc::Sender<()>>,
}

struct Shared<L> {
    queue: Mutex<Queue<L>>,
    /// Wakes the writer for a flush (never for a line: see [`Offload::send`]).
    flush_asked: Condvar,
    capacity: usize,
    counts: Arc<Counts>,
}

/// The sending side: cheap to call from any thread, never blocks on the sink.
pub struct Offload<L> {
    shared: Arc<Shared<L>>,
}

impl<L> Clone for Offload<L> {
    fn clone(&self) -> Self {
        Offload {
            shared: self.shared.clone(),
        }
    }
}

/// How often the writer looks for lines while they come, and at most while none do.
const BUSY_POLL: Duration = Duration::from_millis(2);
const IDLE_POLL: Duration = Duration::from_millis(100);

impl<L: Send + 'static> Offload<L> {
    /// Starts the writer thread writing to `sink`; at most `capacity` lines wait for it.
    pub fn start<S: Sink<Line = L>>(sink: S, capacity: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                lines: Vec::new(),
                flushes: Vec::new(),
            }),
            flush_asked: Condvar::new(),
            capacity,
            counts: Arc::new(Counts::default()),
        });
        let theirs = shared.clone();
        std::thread::Builder::new()
            .name("traderd-log".into())
            .spawn(move || {
                crate::threads::background();
                work(sink, &theirs)
            })?;
        Ok(Offload { shared })
    }

    /// Queues one line logged at `level`; drops (and counts) it when the queue is full. The
    /// writer is not woken: it looks every few milliseconds while lines come (waking a thread
    /// costs the logging thread a system call and, in a VM, an interrupt to another core: in
    /// the load bench at `info` that was ~20 µs on each order's path, more than writing the
    /// line to a file).
    pub fn send(&self, line: L, level: Level) {
        let Ok(mut q) = self.shared.queue.lock() else {
            return self.shared.counts.drop_one(level);
        };
        if q.lines.len() >= self.shared.capacity {
            drop(q);
            self.shared.counts.drop_one(level);
        } else {
            q.lines.push(line);
        }
    }

    pub fn counts(&self) -> Arc<Counts> {
        self.shared.counts.clone()
    }

    /// Waits until every line queued so far is written, at most `within` (a sink that stays
    /// stalled must not hold the process up at its exit). Answers whether they were.
    pub fn flush(&self, within: Duration) -> bool {
        let (done, written) = mpsc::channel();
        match self.shared.queue.lock() {
            Ok(mut q) => q.flushes.push(done),
            Err(_) => return false,
        }
        self.shared.flush_asked.notify_one();
        written.recv_timeout(within).is_ok()
    }
}

fn work<S: Sink>(mut sink: S, shared: &Shared<S::Line>) {
    let mut poll = BUSY_POLL;
    // The drops the sink has been told of.
    let mut reported = Lost::default();
    loop {
        let (lines, flushes) = {
            let Ok(q) = shared.queue.lock() else { return };
            let Ok((mut q, _)) = shared
                .flush_asked
                .wait_timeout_while(q, poll, |q| q.flushes.is_empty())
            else {
                return;
            };
            (std::mem::take(&mut q.lines), std::mem::take(&mut q.flushes))
        };
        poll = if lines.is_empty() {
            (poll * 2).min(IDLE_POLL)
        } else {
            BUSY_POLL
        };
        for line in lines {
            sink.write(line);
            shared.counts.written.fetch_add(1, Ordering::Relaxed);
        }
        let dropped = shared.counts.dropped();
        if dropped.lines > reported.lines {
            sink.dropped(Lost {
                lines: dropped.lines - reported.lines,
                warnings: dropped.warnings.saturating_sub(reported.warnings),
            });
            reported = dropped;
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// A `tracing_subscriber` writer of one formatted line: handed to the [`Offload`] as it is
/// dropped (the fmt layer makes one per event and writes the whole line into it).
pub struct LineWriter<'a> {
    line: Vec<u8>,
    level: Level,
    to: &'a Offload<Vec<u8>>,
}

impl<'a> LineWriter<'a> {
    fn new(to: &'a Offload<Vec<u8>>, level: Level) -> Self {
        LineWriter {
            line: Vec::new(),
            level,
            to,
        }
    }
}

impl std::io::Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter<'_> {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.to.send(std::mem::take(&mut self.line), self.level);
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Offload<Vec<u8>> {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter::new(self, Level::INFO)
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> LineWriter<'a> {
        LineWriter::new(self, *meta.level())
    }
}

/// Formatted lines to the process's stderr.
pub struct Stderr;

impl Sink for Stderr {
    type Line = Vec<u8>;

    fn write(&mut self, line: Vec<u8>) {
        use std::io::Write;
        // Nowhere to report a failed write to stderr.
        let _ = std::io::stderr().lock().write_all(&line);
    }

    fn dropped(&mut self, lost: Lost) {
        use std::io::Write;
        let at = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ");
        let _ = writeln!(std::io::stderr().lock(), "{at}  WARN {}", lost.notice());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::Receiver;

    /// Records what it is given; holds every write until `open` is sent.
    struct Gate {
        open: Receiver<()>,
        seen: Seen,
    }

    impl Sink for Gate {
        type Line = String;

        fn write(&mut self, line: String) {
            let _ = self.open.recv();
            if let Ok(mut seen) = self.seen.lock() {
                seen.push(line);
            }
        }

        fn dropped(&mut self, lost: Lost) {
            if let Ok(mut seen) = self.seen.lock() {
                seen.push(lost.notice());
            }
        }
    }

    type Seen = Arc<Mutex<Vec<String>>>;

    /// A writer of `capacity` lines to a [`Gate`]: the gate's key and what it let through.
    fn gated(capacity: usize) -> (Offload<String>, mpsc::Sender<()>, Seen) {
        let (open, gate) = mpsc::channel();
        let seen = Seen::default();
        let sink = Gate {
            open: gate,
            seen: seen.clone(),
        };
        (Offload::start(sink, capacity).unwrap(), open, seen)
    }

    #[test]
    fn a_stalled_sink_costs_lines_never_a_wait_and_the_loss_is_reported() {
        let (offload, open, seen) = gated(4);
        // The sink takes nothing: four lines wait in the queue (eight if the writer took a
        // batch meanwhile, which it then holds), the rest are dropped at once (this would
        // hang if sending waited).
        let levels = [Level::INFO, Level::WARN, Level::ERROR, Level::DEBUG];
        for i in 0..20 {
            offload.send(format!("line {i}"), levels[i % 4]);
        }
        let dropped = offload.counts().dropped();
        assert!((12..=16).contains(&dropped.lines), "{dropped:?}");
        assert!(
            !offload.flush(Duration::from_millis(50)),
            "the sink is stalled"
        );
        // The sink comes back: what was queued is written in order, then the notice.
        for _ in 0..20 {
            open.send(()).unwrap();
        }
        assert!(offload.flush(Duration::from_secs(10)));
        let seen = seen.lock().unwrap().clone();
        let written: Vec<usize> = seen
            .iter()
            .filter_map(|l| l.strip_prefix("line ")?.parse().ok())
            .collect();
        assert_eq!(written[0], 0);
        assert!(written.is_sorted(), "in the order logged: {seen:?}");
        assert_eq!(written.len() as u64 + dropped.lines, 20, "{seen:?}");
        assert_eq!(offload.counts().written() as usize, written.len());
        let warnings = (0..20)
            .filter(|i| !written.contains(i) && levels[i % 4] <= Level::WARN)
            .count();
        assert_eq!(dropped.warnings, warnings as u64, "{seen:?}");
        let notice = seen.iter().find(|l| l.contains("dropped")).unwrap();
        assert_eq!(
            notice,
            &format!(
                "{} log lines dropped ({warnings} of them warnings or errors): the log's reader fell behind",
                dropped.lines
            )
        );
        // After the batch it was counted beside.
        let at = |l: &str| seen.iter().position(|s| s == l);
        assert!(at(notice) > at("line 0"), "{seen:?}");
    }

    #[test]
    fn a_flush_waits_for_every_line_queued_before_it() {
        let (offload, open, seen) = gated(QUEUE_LINES);
        for i in 0..100 {
            open.send(()).unwrap();
            offload.send(format!("line {i}"), Level::INFO);
        }
        assert!(offload.flush(Duration::from_secs(10)));
        assert_eq!(seen.lock().unwrap().len(), 100);
        assert_eq!(offload.counts().dropped(), Lost::default());
    }
}
