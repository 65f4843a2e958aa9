//! Per-trace write leases: several write batches of one store in flight at once, while the
//! meta cell of each trace stays read-modify-write by one batch at a time.
//!
//! ```text
//!  batch A: traces {t1, t2} ─ claim ─▶ read metas ─▶ admit ─▶ mutate ─ release ─┐
//!  batch B: traces {t3}     ─ claim ─▶ read metas ─▶ admit ─▶ mutate ─ release  │ (in parallel)
//!  batch C: traces {t2, t4} ─ claim … waits for A (t2) ……………………………………………………┘─▶ read metas (sees A's) ─▶ …
//! ```
//!
//! A batch claims all its traces at once or waits, under one mutex: no batch holds some
//! traces while waiting for others, so batches cannot deadlock. Two batches touching the
//! same trace never read its meta at the same time, so they can never both find the trace
//! absent (both "first") and both write a meta counting only their own spans: the second
//! reads the meta the first wrote. Batches with disjoint traces never wait for each other.
//!
//! The lease covers one process; writers in different processes are not coordinated (see
//! the HBase store's docs).

use std::collections::HashSet;
use std::sync::{Condvar, Mutex, PoisonError};

use crate::row_layout::RowKey;

/// The traces some in-flight write batch holds.
#[derive(Default)]
pub struct TraceLeases {
    held: Mutex<HashSet<RowKey>>,
    released: Condvar,
}

/// The traces one batch holds; released on drop (also when the batch failed or panicked).
#[must_use = "the traces are released when the lease is dropped"]
pub struct Lease<'a> {
    leases: &'a TraceLeases,
    rows: Vec<RowKey>,
}

impl TraceLeases {
    /// Blocks until no other batch holds any of `rows`, then holds all of them. `rows`
    /// must be distinct (a batch's traces, deduplicated).
    pub fn claim(&self, rows: &[RowKey]) -> Lease<'_> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        while rows.iter().any(|r| held.contains(r)) {
            held = self
                .released
                .wait(held)
                .unwrap_or_else(PoisonError::into_inner);
        }
        held.extend(rows.iter().copied());
        Lease {
            leases: self,
            rows: rows.to_vec(),
        }
    }

    /// How many traces are held right now (for tests).
    pub fn held(&self) -> usize {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut held = self
            .leases
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for row in &self.rows {
            held.remove(row);
        }
        drop(held);
        self.leases.released.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::fixtures::trace_id;
    use clew_proto::Tenant;
    use std::sync::mpsc;
    use std::time::Duration;

    fn row(n: u8) -> RowKey {
        RowKey::new(&Tenant::default(), &trace_id(n.into()))
    }

    #[test]
    fn a_batch_sharing_a_trace_waits_and_disjoint_batches_do_not() {
        let leases = TraceLeases::default();
        let first = leases.claim(&[row(1), row(2)]);
        std::thread::scope(|s| {
            let (tx, rx) = mpsc::channel();
            let leases = &leases;
            s.spawn(move || {
                let _lease = leases.claim(&[row(2), row(3)]);
                tx.send(()).unwrap();
            });
            // Disjoint traces: claimed at once while the first batch is still in flight.
            drop(leases.claim(&[row(4)]));
            assert!(
                rx.recv_timeout(Duration::from_millis(200)).is_err(),
                "the batch sharing trace 2 must wait for the first batch"
            );
            drop(first);
            rx.recv_timeout(Duration::from_secs(5))
                .expect("released once the first batch is done");
        });
        assert_eq!(leases.held(), 0);
    }

    #[test]
    fn a_panicking_batch_releases_its_traces() {
        let leases = TraceLeases::default();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _lease = leases.claim(&[row(7)]);
            panic!("write failed");
        }));
        assert!(r.is_err());
        drop(leases.claim(&[row(7)]));
        assert_eq!(leases.held(), 0);
    }
}
