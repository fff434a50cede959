//! The machine's own floor under tick → intent: a fixed computation about as long as tick →
//! intent's median, started the way a tick's work is (a thread woken from sleep), timed in
//! the bench's own process under the latency phase's flood.
//! None of the daemon's code is in it, so what its tail adds to its median is what this
//! machine adds to any piece of work that long: the host taking the virtual CPU, interrupts,
//! caches and TLBs cold after a sleep.

use crate::latency::{LatencyHistogram, LatencySummary};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The floor's thread (stopped as the daemon's trimming thread is: its channel closes);
/// [`Floor::finish`] stops it and gives its figures.
pub struct Floor {
    stop: mpsc::Sender<()>,
    /// Samples taken so far (what a test waits on).
    #[cfg_attr(not(test), allow(dead_code))]
    taken: Arc<AtomicU64>,
    thread: JoinHandle<LatencyHistogram>,
}

/// A fixed amount of arithmetic the optimiser cannot fold away; answers its result.
fn work(rounds: u64) -> u64 {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    for i in 0..rounds {
        x = std::hint::black_box(x.rotate_left(5) ^ i.wrapping_mul(0x0100_0000_01b3));
    }
    x
}

/// Rounds of [`work`] that take `us` on this machine: the fastest of several timed tries,
/// so a try the machine interrupted does not shorten the work.
fn calibrate(us: f64) -> u64 {
    const TRY: u64 = 200_000;
    let fastest = (0..20)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(work(TRY));
            t.elapsed()
        })
        .min()
        .unwrap_or(Duration::from_micros(1))
        .max(Duration::from_nanos(1));
    ((us * 1e-6) / (fastest.as_secs_f64() / TRY as f64)).max(1.0) as u64
}

impl Floor {
    /// Calibrates the work to `work_us` ([`calibrate`]: under load too), then times it every
    /// `every` until finished. `None` if the thread cannot start.
    pub fn start(work_us: f64, every: Duration) -> Option<Floor> {
        let rounds = calibrate(work_us);
        let (stop, stopped) = mpsc::channel::<()>();
        let taken = Arc::new(AtomicU64::new(0));
        let count = taken.clone();
        let thread = std::thread::Builder::new()
            .name("bench-floor".into())
            .spawn(move || {
                let mut h = LatencyHistogram::new();
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    let t = Instant::now();
                    std::hint::black_box(work(rounds));
                    h.record(t.elapsed());
                    count.fetch_add(1, Ordering::Relaxed);
                }
                h
            })
            .ok()?;
        Some(Floor {
            stop,
            taken,
            thread,
        })
    }

    /// Stops timing; the figures of what was timed.
    pub fn finish(self) -> LatencySummary {
        let Floor { stop, thread, .. } = self;
        drop(stop);
        thread.join().map(|h| h.summary()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_times_work_of_the_length_asked() {
        let floor = Floor::start(200.0, Duration::from_millis(2)).expect("a thread");
        let deadline = Instant::now() + Duration::from_secs(10);
        while floor.taken.load(Ordering::Relaxed) < 5 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let s = floor.finish();
        assert!(s.count >= 5, "samples: {}", s.count);
        // Calibrated from its fastest try: the median is the length asked, give or take a
        // loaded machine.
        assert!(
            s.p50_us >= 150 && s.p50_us <= 2_000,
            "median of 200 µs of work: {} µs",
            s.p50_us
        );
    }
}
