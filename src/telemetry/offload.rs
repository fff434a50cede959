//! The daemon's log lines, written by a thread of their own. A line is formatted where it is
//! logged and handed over through a bounded queue; the trading thread never waits for stderr
//! or journald. When the sink falls behind (journald stalled, a terminal paused, a pipe nobody
//! reads) and the queue is full, further lines are dropped, counted, and the count is written
//! as soon as the sink takes lines again: a stalled log costs log lines, never a stalled daemon.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};
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
    /// Dropped and not yet reported to the sink.
    unreported: AtomicU64,
    unreported_warnings: AtomicU64,
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
        let warning = level <= Level::WARN;
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.unreported.fetch_add(1, Ordering::Relaxed);
        if warning {
            self.dropped_warnings.fetch_add(1, Ordering::Relaxed);
            self.unreported_warnings.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The drops not yet reported, now reported.
    fn take_unreported(&self) -> Lost {
        Lost {
            lines: self.unreported.swap(0, Ordering::Relaxed),
            warnings: self.unreported_warnings.swap(0, Ordering::Relaxed),
        }
    }
}

enum Job<L> {
    Line(L),
    /// Answered once every line queued before it is written.
    Flush(mpsc::Sender<()>),
}

/// The sending side: cheap to call from any thread, never blocks.
pub struct Offload<L> {
    queue: SyncSender<Job<L>>,
    counts: Arc<Counts>,
}

impl<L> Clone for Offload<L> {
    fn clone(&self) -> Self {
        Offload {
            queue: self.queue.clone(),
            counts: self.counts.clone(),
        }
    }
}

impl<L: Send + 'static> Offload<L> {
    /// Starts the worker thread writing to `sink`, with a queue of `capacity` lines.
    pub fn start<S: Sink<Line = L>>(sink: S, capacity: usize) -> std::io::Result<Self> {
        let (queue, jobs) = mpsc::sync_channel(capacity);
        let counts = Arc::new(Counts::default());
        let theirs = counts.clone();
        std::thread::Builder::new()
            .name("traderd-log".into())
            .spawn(move || work(sink, jobs, &theirs))?;
        Ok(Offload { queue, counts })
    }

    /// Queues one line logged at `level`; drops (and counts) it when the queue is full.
    pub fn send(&self, line: L, level: Level) {
        match self.queue.try_send(Job::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counts.drop_one(level)
            }
        }
    }

    pub fn counts(&self) -> Arc<Counts> {
        self.counts.clone()
    }

    /// Waits until every line queued so far is written, at most `within` (a sink that stays
    /// stalled must not hold the process up at its exit). Answers whether they were.
    pub fn flush(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let (done, written) = mpsc::channel();
        let mut job = Job::Flush(done);
        loop {
            match self.queue.try_send(job) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    job = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(_) => return false,
            }
        }
        written
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }
}

fn work<S: Sink>(mut sink: S, jobs: Receiver<Job<S::Line>>, counts: &Counts) {
    for job in jobs {
        match job {
            Job::Line(line) => {
                sink.write(line);
                counts.written.fetch_add(1, Ordering::Relaxed);
            }
            Job::Flush(done) => {
                let _ = done.send(());
            }
        }
        let lost = counts.take_unreported();
        if lost.lines > 0 {
            sink.dropped(lost);
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
        LineWriter {
            line: Vec::new(),
            level: Level::INFO,
            to: self,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> LineWriter<'a> {
        LineWriter {
            line: Vec::new(),
            level: *meta.level(),
            to: self,
        }
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
    use std::sync::Mutex;

    /// Records what it is given; holds every write until `open` is sent.
    struct Gate {
        open: Receiver<()>,
        seen: Arc<Mutex<Vec<String>>>,
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

    #[test]
    fn a_stalled_sink_costs_lines_never_a_wait_and_the_loss_is_reported() {
        let (open, gate) = mpsc::channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let offload = Offload::start(
            Gate {
                open: gate,
                seen: seen.clone(),
            },
            4,
        )
        .unwrap();
        // The sink takes nothing: the first line is in its hands, four wait in the queue, and
        // the rest are dropped at once (this would hang if sending waited).
        let levels = [Level::INFO, Level::WARN, Level::ERROR, Level::DEBUG];
        for i in 0..20 {
            offload.send(format!("line {i}"), levels[i % 4]);
        }
        let dropped = offload.counts().dropped();
        assert!(
            (15..=16).contains(&dropped.lines),
            "1 being written and 4 queued (or 0 taken yet and 4 queued): {dropped:?}"
        );
        assert_eq!(
            dropped.warnings, 8,
            "lines 5, 6, 9, 10, … 17, 18: {dropped:?}"
        );
        assert!(
            !offload.flush(Duration::from_millis(50)),
            "the sink is stalled"
        );
        // The sink comes back: what was queued is written in order, then the notice.
        for _ in 0..10 {
            open.send(()).unwrap();
        }
        assert!(offload.flush(Duration::from_secs(10)));
        let seen = seen.lock().unwrap().clone();
        let written: Vec<&String> = seen.iter().filter(|l| l.starts_with("line")).collect();
        assert!(written.len() == 5 || written.len() == 4, "{seen:?}");
        assert_eq!(written[0], "line 0");
        let mut numbers: Vec<usize> = written
            .iter()
            .filter_map(|l| l.strip_prefix("line ")?.parse().ok())
            .collect();
        let sorted = numbers.clone();
        numbers.sort_unstable();
        assert_eq!(numbers, sorted, "in the order logged: {seen:?}");
        let notice = seen.iter().find(|l| l.contains("dropped")).unwrap();
        assert!(
            notice.starts_with(&format!("{} log lines dropped", dropped.lines)),
            "{notice}"
        );
        assert_eq!(offload.counts().written() as usize, written.len());
    }

    #[test]
    fn a_flush_waits_for_every_line_queued_before_it() {
        let (open, gate) = mpsc::channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let offload = Offload::start(
            Gate {
                open: gate,
                seen: seen.clone(),
            },
            QUEUE_LINES,
        )
        .unwrap();
        for i in 0..100 {
            open.send(()).unwrap();
            offload.send(format!("line {i}"), Level::INFO);
        }
        assert!(offload.flush(Duration::from_secs(10)));
        assert_eq!(seen.lock().unwrap().len(), 100);
        assert_eq!(offload.counts().dropped(), Lost::default());
    }
}
