//! Batch stage: groups submissions into store-sized batches (group commit).
//!
//! A batch is handed to the store writer when it holds `batch_max_spans`, or when the
//! store writer has room for another batch (it keeps as many in flight as the store's
//! `write_concurrency`, 1 for the embedded store; nothing is lost by writing now, and
//! latency stays low at light load), or at the latest `batch_timeout_ms` after its first submission arrived. While
//! the store is busy, batches grow on their own, so that heavy load means few large
//! writes. Submissions are never split: a batch may exceed `batch_max_spans` by less than
//! one submission.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clew_proto::{RejectReason, Span};
use tokio::sync::{mpsc, oneshot, Notify, OwnedSemaphorePermit};
use tokio::time::Instant;

use crate::error::Result;

/// What a submission is answered with: the store's per-span rejections, as indexes into
/// the submitted spans. Spans not listed are durable in the store and the index.
pub type StoreRejections = Vec<(usize, RejectReason)>;

/// One receiver request's spans on their way to the store.
pub struct Submission {
    pub spans: Vec<Span>,
    pub ack: oneshot::Sender<Result<StoreRejections>>,
    /// Queue room held until the submission is answered (back-pressure by spans).
    pub permit: OwnedSemaphorePermit,
}

/// The part of a batch that came from one submission.
pub struct Part {
    pub len: usize,
    pub ack: oneshot::Sender<Result<StoreRejections>>,
    pub permit: OwnedSemaphorePermit,
}

/// Spans of several submissions, in submission order; `parts` say where each begins.
#[derive(Default)]
pub struct Batch {
    pub spans: Vec<Span>,
    pub parts: Vec<Part>,
}

impl Batch {
    fn push(&mut self, s: Submission) {
        self.parts.push(Part {
            len: s.spans.len(),
            ack: s.ack,
            permit: s.permit,
        });
        if self.spans.is_empty() {
            self.spans = s.spans;
        } else {
            self.spans.extend(s.spans);
        }
    }
}

/// How many batches the store writer has taken and not finished, how many it writes at
/// once ([`clew_store::SpanStore::write_concurrency`]), and a wake-up for when the number
/// in flight drops.
pub struct WriterLoad {
    pub in_flight: AtomicUsize,
    pub capacity: usize,
    pub done: Notify,
}

impl WriterLoad {
    /// A writer that keeps up to `capacity` batches in flight.
    pub fn new(capacity: usize) -> Self {
        WriterLoad {
            in_flight: AtomicUsize::new(0),
            capacity: capacity.max(1),
            done: Notify::new(),
        }
    }

    pub fn finished_one(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.done.notify_one();
    }

    /// Whether the writer could start another batch now.
    fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) < self.capacity
    }
}

/// Runs until every sender of `rx` is gone, then flushes what it holds and returns.
pub async fn run(
    mut rx: mpsc::Receiver<Submission>,
    tx: mpsc::Sender<Batch>,
    load: Arc<WriterLoad>,
    max_spans: usize,
    timeout: Duration,
) {
    while let Some(first) = rx.recv().await {
        let deadline = Instant::now() + timeout;
        let mut batch = Batch::default();
        batch.push(first);
        let mut open = true;
        while open && batch.spans.len() < max_spans {
            // Take whatever is already queued before deciding.
            match rx.try_recv() {
                Ok(s) => {
                    batch.push(s);
                    continue;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            if load.idle() {
                break;
            }
            tokio::select! {
                s = rx.recv() => match s {
                    Some(s) => batch.push(s),
                    None => open = false,
                },
                _ = load.done.notified() => {}
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        load.in_flight.fetch_add(1, Ordering::AcqRel);
        if tx.send(batch).await.is_err() {
            // The writer is gone; dropping the batch answers its submissions "shutting down".
            return;
        }
    }
}
