//! The ingest pipeline behind the sink, built in one place: [`start`]. Together with the
//! front half in [`crate::ingest`] (receiver → decode → … → [`Ingest::submit`]) it is the
//! whole path from a receiver to the ack.

use std::sync::Arc;
use std::time::Duration;

use clew_proto::Span;
use clew_store::{SpanStore, TraceIndex};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;
use tracing::error;

use crate::batcher::{self, Batch, StoreRejections, Submission, WriterLoad};
use crate::config::CollectorConfig;
use crate::error::{Error, Result};
use crate::metrics;
use crate::writer::{self, StoredBatch};

/// Submissions waiting for the batcher. The real bound is the span semaphore; this only
/// keeps the channel itself small.
const SUBMIT_CHANNEL: usize = 4096;

/// Starts the pipeline stages and returns the handle receivers submit through, and a task
/// that ends once every [`Ingest`] clone is dropped and everything queued is written and
/// answered.
///
/// ```text
///  receivers (otlp_grpc, otlp_http, kafka) ─▶ ingest::Front::ingest (ingest.rs):
///    decode ─▶ validate + convert ─▶ count rejections ─▶ (redact) ─▶ enrich ─▶ (span metrics)
///    (per request or record, off the reactor when large)
///                                                  │ SpanSink::submit
///                            Ingest::submit: wait ≤ enqueue_timeout_ms for queue room
///                            (semaphore of queue_max_spans permits), else Overloaded
///                                                  │ mpsc<Submission>
///                                                  ▼
///                                    batcher (≤ batch_max_spans / batch_timeout_ms,
///                                             or at once when the store is idle)
///                                                  │ mpsc<Batch>, 1 slot
///                                                  ▼
///                                    store writer: SpanStore::write_spans
///                                    (up to SpanStore::write_concurrency batches at once)
///                                                  │ mpsc<StoredBatch>, 1 slot
///                                                  ▼
///                                    index writer: TraceIndex::index_spans (stored spans only;
///                                    up to TraceIndex::write_concurrency batches at once)
///                                                  │
///                                                  ▼
///                        ack each submission (oneshot) with its store rejections,
///                        release its queue permits; errors go back instead of acks
/// ```
pub fn start(
    config: &CollectorConfig,
    store: Arc<dyn SpanStore>,
    index: Arc<dyn TraceIndex>,
) -> (Ingest, JoinHandle<()>) {
    let permits = Arc::new(Semaphore::new(config.queue_max_spans));
    let load = Arc::new(WriterLoad::new(store.write_concurrency()));
    let (submit_tx, submit_rx) = mpsc::channel::<Submission>(SUBMIT_CHANNEL);
    let (batch_tx, batch_rx) = mpsc::channel::<Batch>(1);
    let (stored_tx, stored_rx) = mpsc::channel::<StoredBatch>(1);

    let batcher = tokio::spawn(batcher::run(
        submit_rx,
        batch_tx,
        load.clone(),
        config.batch_max_spans,
        Duration::from_millis(config.batch_timeout_ms),
    ));
    let store_writer = tokio::spawn(writer::write_store(batch_rx, stored_tx, store, load));
    let index_writer = tokio::spawn(writer::write_index(
        stored_rx,
        index,
        permits.clone(),
        config.queue_max_spans,
    ));

    let done = tokio::spawn(async move {
        for (stage, task) in [
            ("batcher", batcher),
            ("store writer", store_writer),
            ("index writer", index_writer),
        ] {
            if let Err(e) = task.await {
                error!(stage, error = %e, "ingest pipeline stage failed");
            }
        }
    });
    let ingest = Ingest {
        inner: Arc::new(Inner {
            tx: submit_tx,
            permits,
            queue_max_spans: config.queue_max_spans,
            enqueue_timeout: Duration::from_millis(config.enqueue_timeout_ms),
        }),
    };
    (ingest, done)
}

/// Where receivers hand validated spans to the pipeline. Cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    inner: Arc<Inner>,
}

struct Inner {
    tx: mpsc::Sender<Submission>,
    permits: Arc<Semaphore>,
    queue_max_spans: usize,
    enqueue_timeout: Duration,
}

impl Ingest {
    /// Queues `spans` and waits until they are durable in the store and the index.
    ///
    /// Returns the store's per-span rejections (indexes into `spans`); every other span is
    /// durable. Fails with [`Error::Overloaded`] when no queue room frees up within
    /// `enqueue_timeout_ms`, and with a store error when a write failed (nothing of the
    /// batch is acknowledged then).
    pub async fn submit(&self, spans: Vec<Span>) -> Result<StoreRejections> {
        if spans.is_empty() {
            return Ok(Vec::new());
        }
        let inner = &self.inner;
        // A request larger than the whole queue takes the whole queue.
        let want = spans.len().min(inner.queue_max_spans) as u32;
        let n = spans.len();
        let (ack, answer) = oneshot::channel();
        let enqueue = async {
            let permit = inner
                .permits
                .clone()
                .acquire_many_owned(want)
                .await
                .map_err(|_| Error::ShuttingDown)?;
            inner
                .tx
                .send(Submission { spans, ack, permit })
                .await
                .map_err(|_| Error::ShuttingDown)
        };
        match tokio::time::timeout(inner.enqueue_timeout, enqueue).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(Error::Overloaded {
                    spans: n,
                    waited_ms: inner.enqueue_timeout.as_millis() as u64,
                })
            }
        }
        metrics::queue_spans(self.queued_spans());
        // A dropped sender means the pipeline stopped before writing: nothing was acked.
        // Only a closed pipeline is shutting down; otherwise its writer failed.
        answer.await.map_err(|_| {
            if inner.permits.is_closed() {
                Error::ShuttingDown
            } else {
                Error::PipelineFailed
            }
        })?
    }

    /// Spans accepted and not yet answered.
    pub fn queued_spans(&self) -> usize {
        self.inner
            .queue_max_spans
            .saturating_sub(self.inner.permits.available_permits())
    }

    /// Refuses new submissions from now on (they get [`Error::ShuttingDown`]); queued
    /// ones are still written and answered.
    pub fn close(&self) {
        self.inner.permits.close();
    }
}
