//! Background work at a lower CPU priority than ingest.
//!
//! tantivy merges a day partition's segments on its own pool of threads
//! (`merge_thread_N`, four per index writer). A merge is minutes of CPU in bursts: on a
//! busy machine each burst took the cores the ingest path needed, and acknowledgements
//! waited seconds until the backlog drained (the soak in BENCHMARKS.md: merges jumping
//! from 0.1 to 0.5 cores for 20 s set the export p99 from 0.25 s to 3.9 s on two cores).
//! Merges are not on the acknowledgement path and can wait, so their threads run at
//! `nice` [`MERGE_NICE`]: when the cores are busy the scheduler gives ingest the time
//! first, and merges run in what is left (they still get ~10 % of a contended core, so
//! they never stop). The same idea as RocksDB's lower-priority compaction pool.
//!
//! tantivy builds its merge pool with the index writer and gives no hook into its
//! threads, so they are found by name in `/proc/self/task` right after the writer is
//! created. On other systems nothing changes.

/// The `nice` value of tantivy's merge threads (0 is the default, 19 the lowest).
pub const MERGE_NICE: i32 = 10;

/// Prefix of the names tantivy gives its merge threads.
pub const MERGE_THREAD_PREFIX: &str = "merge_thread";

/// Sets the nice value of every thread of this process whose name starts with
/// `prefix`; returns how many were set. Threads already at `nice` are set again.
#[cfg(target_os = "linux")]
pub fn renice_threads(prefix: &str, nice: i32) -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    let mut set = 0;
    for task in tasks.flatten() {
        let Ok(name) = std::fs::read_to_string(task.path().join("comm")) else {
            continue;
        };
        if !name.trim_end().starts_with(prefix) {
            continue;
        }
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<libc::id_t>().ok())
        else {
            continue;
        };
        // SAFETY: setpriority only reads its three integer arguments. On Linux a thread
        // has its own nice value, and PRIO_PROCESS with a thread id sets that thread's.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) } == 0 {
            set += 1;
        }
    }
    set
}

#[cfg(not(target_os = "linux"))]
pub fn renice_threads(_prefix: &str, _nice: i32) -> usize {
    0
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn nice_of(tid: libc::id_t) -> i32 {
        // SAFETY: as above; getpriority only reads its arguments.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) }
    }

    #[test]
    fn only_the_named_threads_are_reniced() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let named = std::thread::Builder::new()
            .name("clew-renice-t".into())
            .spawn(move || {
                // SAFETY: gettid has no arguments.
                tx.send(unsafe { libc::gettid() } as libc::id_t).unwrap();
                done_rx.recv().ok();
            })
            .unwrap();
        let tid = rx.recv().unwrap();
        // SAFETY: as above.
        let me = unsafe { libc::gettid() } as libc::id_t;
        let mine = nice_of(me);
        assert_eq!(renice_threads("clew-renice-t", 10), 1);
        assert_eq!(nice_of(tid), 10, "the named thread");
        assert_eq!(nice_of(me), mine, "and no other");
        assert_eq!(renice_threads("no-such-thread", 10), 0);
        done_tx.send(()).unwrap();
        named.join().unwrap();
    }
}
