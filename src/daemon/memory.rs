//! Memory handed back: the system allocator (glibc's) keeps what a thread freed in that
//! thread's arena, resident, and a freed page below a live allocation is never returned on
//! its own. Under a flood with orders the daemon's live heap stayed under 40 MB while its
//! resident set grew with every order, past 80 MB in a minute (heaptrack and /proc,
//! docs/performance.md). Every few seconds a thread of its own asks the allocator to give
//! back what it holds free (`malloc_trim`: whole free pages, in every arena; under a
//! millisecond at this size).

use std::sync::mpsc;
use std::time::Duration;

/// The trimming thread; it stops when this is dropped.
pub struct Trimmer {
    _stop: mpsc::Sender<()>,
}

/// Starts trimming every `every`. `None` where there is nothing to trim (another allocator
/// than glibc's) or the thread cannot start.
pub fn trim_every(every: Duration) -> Option<Trimmer> {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return None;
    }
    let (stop, stopped) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("traderd-trim".into())
        .spawn(move || {
            crate::threads::background();
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                trim();
            }
        })
        .ok()?;
    Some(Trimmer { _stop: stop })
}

/// One of the crate's two `unsafe` calls (the lint is `deny` for the crate, allowed here
/// and in [`crate::threads`] alone).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() {
    // SAFETY: malloc_trim takes no pointer and only releases memory the allocator holds free;
    // it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    fn anon_mb() -> f64 {
        crate::tools::bench_load::proc_status_mb("self", "RssAnon").unwrap_or(0.0)
    }

    #[test]
    fn freed_memory_below_a_live_allocation_goes_back_to_the_system() {
        // 64 MB of small blocks, then one kept above them: freeing the blocks leaves the
        // pages resident until a trim.
        let blocks: Vec<Box<[u8; 240]>> = (0..280_000).map(|i| Box::new([i as u8; 240])).collect();
        let pin = Box::new([7u8; 240]);
        let full = anon_mb();
        drop(blocks);
        let freed = anon_mb();
        let t = trim_every(Duration::from_millis(10)).expect("a trimming thread");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while anon_mb() > full - 40.0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let trimmed = anon_mb();
        drop(t);
        assert!(pin[0] == 7);
        assert!(
            freed > full - 20.0,
            "freed pages stay resident: {full} -> {freed} MB"
        );
        assert!(
            trimmed < full - 40.0,
            "a trim gives them back: {full} -> {trimmed} MB"
        );
    }
}
