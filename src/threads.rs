//! Threads that do the daemon's background work (the journal's commits, the log's writes, the
//! allocator's trims, the making of the intent log) run under Linux's `SCHED_BATCH` policy.
//! A thread woken under the default policy may take the CPU from the thread that woke it: the
//! order path's thread woke the journal with each intent's copy and, about one
//! intent in a hundred, lost its core to the journal's commit for 150–300 µs before its
//! request went out (docs/performance.md, issue 19's eighteenth session). A `SCHED_BATCH`
//! thread never preempts on waking (the scheduler treats it as CPU-bound; it runs on an idle
//! core or at the next tick) and otherwise keeps its fair share of the CPU, the same nice
//! value, no privilege needed. The order path's own thread keeps the default policy, as do the
//! market-data feed's (tried as background work: the send's tail as low, tick → intent's p99
//! no better, so not kept) and the runtime's workers.

/// Marks the calling thread as background work (`SCHED_BATCH`). Answers whether the policy
/// was taken; where it is not (another OS, a sandbox that refuses it) nothing changes and the
/// thread runs as before.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn background() -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `sched_setscheduler` reads the `sched_param` it is given (ours, alive for the
    // call) and changes only the calling thread's (pid 0's) policy; SCHED_BATCH with
    // priority 0 is the documented combination and needs no privilege.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) == 0 }
}

#[cfg(not(target_os = "linux"))]
pub fn background() -> bool {
    false
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The calling thread's scheduling policy (`SCHED_*`).
    #[allow(unsafe_code)]
    fn policy() -> i32 {
        // SAFETY: takes no pointer; reads the calling thread's (pid 0's) policy.
        unsafe { libc::sched_getscheduler(0) }
    }

    #[test]
    fn a_background_thread_runs_under_sched_batch_and_others_keep_the_default() {
        let marked = std::thread::spawn(|| (background(), policy()))
            .join()
            .unwrap();
        assert_eq!(marked, (true, libc::SCHED_BATCH));
        let plain = std::thread::spawn(policy).join().unwrap();
        assert_eq!(plain, libc::SCHED_OTHER);
    }
}
