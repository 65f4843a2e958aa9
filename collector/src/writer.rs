//! Write stages: the span store first, then the trace index with only the spans the store
//! kept, then the acknowledgements.
//!
//! The two writes run as two stages joined by a one-slot channel, so the store writes batch
//! N+1 while the index writes batch N; each stage keeps as many batches in flight as its
//! backend serves at once (`write_concurrency`: 1 for fjall and tantivy, the Thrift pool
//! for HBase, `bulk_concurrency` for OpenSearch). A submission is answered only after both writes of
//! its batch returned `Ok`; if either fails, every submission of the batch gets an error
//! (retryable when the backend says so) and nothing of it is acknowledged. A retry after an
//! index failure rewrites spans the store already holds, which the store contract makes a
//! no-op.

use std::future::Future;
use std::sync::Arc;

use clew_proto::{RejectReason, Span};
use clew_store::{SpanStore, TraceIndex};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, error, warn};

use crate::batcher::{Batch, Part, StoreRejections, WriterLoad};
use crate::error::Error;
use crate::metrics;

/// A batch the store has accepted, on its way to the index.
pub struct StoredBatch {
    spans: Arc<[Span]>,
    /// Sorted by index.
    rejected: Vec<(usize, RejectReason)>,
    parts: Vec<Part>,
}

/// Store stage: writes each batch, up to [`SpanStore::write_concurrency`] at once, and
/// passes each on to the index stage as its write finishes (not necessarily in order:
/// every batch is answered on its own, and the store keeps a trace's cap exact across
/// concurrent writes).
pub async fn write_store(
    mut rx: mpsc::Receiver<Batch>,
    tx: mpsc::Sender<StoredBatch>,
    store: Arc<dyn SpanStore>,
    load: Arc<WriterLoad>,
) {
    let limit = store.write_concurrency().max(1);
    let tx = &tx;
    in_flight(
        &mut rx,
        limit,
        |batch| write_one(batch, store.clone(), load.clone()),
        |stored| async move {
            match stored {
                Some(stored) => tx.send(stored).await.is_ok(),
                None => true,
            }
        },
    )
    .await;
}

/// Runs `start(item)` as a task for each item of `rx`, at most `limit` at once, and hands
/// each task's output to `done` as it finishes (completion order), until `rx` is closed
/// and every task finished, or `done` answers `false`.
async fn in_flight<I, O, T, D>(
    rx: &mut mpsc::Receiver<I>,
    limit: usize,
    mut start: impl FnMut(I) -> T,
    mut done: impl FnMut(Option<O>) -> D,
) where
    T: Future<Output = Option<O>> + Send + 'static,
    O: Send + 'static,
    D: Future<Output = bool>,
{
    let mut running: JoinSet<Option<O>> = JoinSet::new();
    let mut open = true;
    while open || !running.is_empty() {
        tokio::select! {
            biased;
            Some(finished_task) = running.join_next(), if !running.is_empty() => {
                if !done(finished(finished_task)).await {
                    return;
                }
            }
            item = rx.recv(), if open && running.len() < limit => match item {
                Some(item) => {
                    running.spawn(start(item));
                }
                None => open = false,
            },
        }
    }
}

/// A write task's result; a panicked task dropped its batch, which answers its
/// submissions with an error.
fn finished<T>(done: Result<Option<T>, tokio::task::JoinError>) -> Option<T> {
    done.unwrap_or_else(|e| {
        error!(error = %e, "write task failed; its batch is answered with errors");
        None
    })
}

/// Writes one batch to the store; `None` if it failed (its submissions are answered).
async fn write_one(
    batch: Batch,
    store: Arc<dyn SpanStore>,
    load: Arc<WriterLoad>,
) -> Option<StoredBatch> {
    let spans: Arc<[Span]> = batch.spans.into();
    let result = store.write_spans(spans.clone()).await;
    load.finished_one();
    match result {
        Ok(report) => {
            metrics::batch_written(spans.len());
            let mut rejected = report.rejected;
            rejected.sort_unstable_by_key(|(i, _)| *i);
            rejected.retain(|(i, _)| *i < spans.len());
            for (i, reason) in &rejected {
                let s = &spans[*i];
                debug!(trace_id = %s.trace_id, span_id = %s.span_id, %reason, "span rejected by the store");
                metrics::span_rejected(*reason, 1);
            }
            Some(StoredBatch {
                spans,
                rejected,
                parts: batch.parts,
            })
        }
        Err(error) => {
            warn!(%error, spans = spans.len(), retryable = error.is_retryable(), "span store write failed; answering the batch with errors");
            fail(batch.parts, "store", &error);
            None
        }
    }
}

/// Index stage: indexes what the store kept, up to [`TraceIndex::write_concurrency`]
/// batches at once, then answers every submission of each batch.
pub async fn write_index(
    mut rx: mpsc::Receiver<StoredBatch>,
    index: Arc<dyn TraceIndex>,
    permits: Arc<Semaphore>,
    queue_max_spans: usize,
) {
    let limit = index.write_concurrency().max(1);
    in_flight(
        &mut rx,
        limit,
        |batch| index_one(batch, index.clone()),
        |_: Option<()>| {
            metrics::queue_spans(queue_max_spans.saturating_sub(permits.available_permits()));
            async { true }
        },
    )
    .await;
}

/// Indexes one stored batch and answers its submissions.
async fn index_one(batch: StoredBatch, index: Arc<dyn TraceIndex>) -> Option<()> {
    let to_index: Arc<[Span]> = if batch.rejected.is_empty() {
        batch.spans.clone()
    } else {
        let mut skip = batch.rejected.iter().map(|(i, _)| *i).peekable();
        let mut kept = Vec::with_capacity(batch.spans.len() - batch.rejected.len());
        for (i, s) in batch.spans.iter().enumerate() {
            if skip.peek() == Some(&i) {
                while skip.peek() == Some(&i) {
                    skip.next();
                }
            } else {
                kept.push(s.clone());
            }
        }
        kept.into()
    };
    let result = if to_index.is_empty() {
        Ok(())
    } else {
        index.index_spans(to_index).await
    };
    match result {
        Ok(()) => ack(batch.parts, &batch.rejected),
        Err(error) => {
            warn!(%error, spans = batch.spans.len(), retryable = error.is_retryable(), "trace index write failed; answering the batch with errors");
            fail(batch.parts, "index", &error);
        }
    }
    Some(())
}

/// Answers each part with the store rejections that fall in its range, re-based.
fn ack(parts: Vec<Part>, rejected: &[(usize, RejectReason)]) {
    let mut offset = 0;
    let mut r = 0;
    for part in parts {
        let end = offset + part.len;
        let mut mine: StoreRejections = Vec::new();
        while r < rejected.len() && rejected[r].0 < end {
            mine.push((rejected[r].0 - offset, rejected[r].1));
            r += 1;
        }
        let _ = part.ack.send(Ok(mine));
        drop(part.permit);
        offset = end;
    }
}

fn fail(parts: Vec<Part>, stage: &'static str, error: &clew_store::Error) {
    metrics::write_failed(stage, error.is_retryable());
    for part in parts {
        let _ = part.ack.send(Err(Error::Store {
            stage,
            source: copy_store_error(error),
        }));
    }
}

/// `clew_store::Error` is not `Clone`; every submission of a failed batch gets its own copy.
fn copy_store_error(e: &clew_store::Error) -> clew_store::Error {
    use clew_store::Error as E;
    match e {
        E::Unavailable { context, message } => E::Unavailable {
            context,
            message: message.clone(),
        },
        E::Corrupt { context, message } => E::Corrupt {
            context,
            message: message.clone(),
        },
        E::InvalidRequest(m) => E::InvalidRequest(m.clone()),
        E::Config(m) => E::Config(m.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    #[tokio::test]
    async fn acks_map_rejections_back_to_their_submission() {
        let sem = Arc::new(Semaphore::new(100));
        let mut rxs = Vec::new();
        let mut parts = Vec::new();
        for len in [2usize, 3, 1] {
            let (tx, rx) = oneshot::channel();
            parts.push(Part {
                len,
                ack: tx,
                permit: sem.clone().acquire_many_owned(len as u32).await.unwrap(),
            });
            rxs.push(rx);
        }
        assert_eq!(sem.available_permits(), 94);
        ack(
            parts,
            &[
                (1, RejectReason::TraceTooLarge),
                (2, RejectReason::SpanTooLarge),
                (4, RejectReason::TraceTooLarge),
            ],
        );
        let got: Vec<StoreRejections> = futures::future::join_all(rxs)
            .await
            .into_iter()
            .map(|r| r.unwrap().unwrap())
            .collect();
        assert_eq!(
            got,
            vec![
                vec![(1, RejectReason::TraceTooLarge)],
                vec![
                    (0, RejectReason::SpanTooLarge),
                    (2, RejectReason::TraceTooLarge)
                ],
                vec![]
            ]
        );
        assert_eq!(sem.available_permits(), 100);
    }
}
