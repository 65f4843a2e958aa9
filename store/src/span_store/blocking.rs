//! The one [`SpanStore`] adapter for backends whose work blocks (fjall's file I/O,
//! HBase's Thrift calls): every call runs on tokio's blocking pool, retryable failures are
//! retried with doubling back-off where the backend asks for it, writers are serialized
//! (the meta cell is read-modify-write) unless the backend coordinates concurrent writes
//! itself ([`BlockingBackend::write_concurrency`]), and the store metrics are emitted per
//! batch.
//!
//! ```text
//!  SpanStore call ─▶ BlockingSpanStore ─▶ spawn_blocking ─▶ BlockingBackend (fjall, hbase)
//!                     (writer lock for write / drop_expired / close, retries, metrics)
//! ```
//!
//! The writer lock is a read-write lock: `drop_expired`, `close` and `put_state` always
//! hold it alone; `write` holds it alone for a backend that serializes its writers (fjall)
//! and shared for one that runs several batches at once (HBase, which keeps per-trace
//! leases, `super::trace_leases`), so `close` still waits for every write in flight.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use clew_proto::{Span, Tenant, TraceId};
use tracing::warn;

use super::admission::WriteOutcome;
use crate::metrics as m;
use crate::{Error, Result, SpanStore, StoredTrace, WriteReport};

/// How often a failed call is tried, and how long to wait before the second attempt
/// (doubling after that).
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub backoff_start: Duration,
}

impl Retry {
    /// One attempt: errors reach the caller at once.
    pub const NEVER: Retry = Retry {
        attempts: 1,
        backoff_start: Duration::ZERO,
    };
}

/// The blocking half of a span store. The adapter never runs two of `write`,
/// `drop_expired` and `close` at once; reads and `ready` run concurrently with anything.
pub trait BlockingBackend: Send + Sync + 'static {
    /// The `backend` label of the store metrics.
    const NAME: &'static str;
    /// Retries of retryable failures, for writes, reads and readiness checks.
    const RETRY: Retry;

    /// How many `write` calls may run at once. 1 (the default): the adapter serializes
    /// them. More: the backend keeps each trace's meta exact across concurrent calls
    /// itself.
    fn write_concurrency(&self) -> usize {
        1
    }
    /// Stores a batch (see the [`SpanStore`] contract); durable when it returns `Ok`.
    fn write(&self, spans: &[Span]) -> Result<WriteOutcome>;
    /// Reads whole traces of `tenant`, in the order asked, unknown ids skipped; the spans
    /// read carry `tenant`.
    fn read_traces(&self, tenant: &Tenant, ids: &[TraceId]) -> Result<Vec<StoredTrace>>;
    /// Drops data older than the retention period; returns how many buckets went.
    fn drop_expired(&self, now_unix_nano: u64) -> Result<u64>;
    /// Makes everything written durable and releases what can be released.
    fn close(&self) -> Result<()>;
    /// Whether reads and writes can be served now.
    fn ready(&self) -> Result<()>;
    /// Why the backend cannot serve again without a restart, if so (see
    /// [`SpanStore::broken`]).
    fn broken(&self) -> Option<String> {
        None
    }
    /// Damaged parts quarantined at open (see [`SpanStore::damage`]).
    fn damage(&self) -> Vec<crate::Damage> {
        Vec::new()
    }
    /// Replaces a state blob, durably (see [`SpanStore::put_state`]).
    fn put_state(&self, name: &str, value: &[u8]) -> Result<()>;
    /// Reads a state blob back.
    fn get_state(&self, name: &str) -> Result<Option<Vec<u8>>>;
}

/// A write's hold on the writer lock (never read; held for its lifetime).
#[allow(dead_code)]
enum WriterGuard<'a> {
    Shared(tokio::sync::RwLockReadGuard<'a, ()>),
    Alone(tokio::sync::RwLockWriteGuard<'a, ()>),
}

/// A [`SpanStore`] over a [`BlockingBackend`]. Cheap to share (`Arc` inside).
pub struct BlockingSpanStore<B> {
    backend: Arc<B>,
    /// Serializes writers (unless the backend runs several at once), retention and close.
    writer: tokio::sync::RwLock<()>,
}

impl<B: BlockingBackend> BlockingSpanStore<B> {
    pub fn new(backend: B) -> Self {
        BlockingSpanStore {
            backend: Arc::new(backend),
            writer: tokio::sync::RwLock::new(()),
        }
    }

    /// The backend, for what only it can do (tests of its layout).
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Runs `f` off the reactor, retrying retryable failures as the backend asks.
    async fn blocking<T, F>(&self, context: &'static str, retry: Retry, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&B) -> Result<T> + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let mut backoff = retry.backoff_start;
        let mut attempt = 1;
        loop {
            let backend = self.backend.clone();
            let f = f.clone();
            let result = tokio::task::spawn_blocking(move || f(&backend))
                .await
                .map_err(|e| Error::unavailable(context, e))?;
            match result {
                Err(e) if e.is_retryable() && attempt < retry.attempts => {
                    warn!(error = %e, attempt, backend = B::NAME, "span store call failed, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

#[async_trait]
impl<B: BlockingBackend> SpanStore for BlockingSpanStore<B> {
    async fn write_spans(&self, spans: Arc<[Span]>) -> Result<WriteReport> {
        let started = Instant::now();
        let _writer = if self.backend.write_concurrency() > 1 {
            WriterGuard::Shared(self.writer.read().await)
        } else {
            WriterGuard::Alone(self.writer.write().await)
        };
        let out = self
            .blocking("span store write task failed", B::RETRY, move |b| {
                b.write(&spans)
            })
            .await?;
        Ok(out.finish(B::NAME, started))
    }

    fn write_concurrency(&self) -> usize {
        self.backend.write_concurrency().max(1)
    }

    async fn get_trace(&self, tenant: &Tenant, trace_id: TraceId) -> Result<Option<StoredTrace>> {
        let tenant = tenant.clone();
        let mut traces = self
            .blocking("span store read task failed", B::RETRY, move |b| {
                b.read_traces(&tenant, &[trace_id])
            })
            .await?;
        Ok(traces.pop())
    }

    async fn get_traces(&self, tenant: &Tenant, trace_ids: &[TraceId]) -> Result<Vec<StoredTrace>> {
        if trace_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = trace_ids.to_vec();
        let tenant = tenant.clone();
        self.blocking("span store read task failed", B::RETRY, move |b| {
            b.read_traces(&tenant, &ids)
        })
        .await
    }

    async fn drop_expired(&self, now_unix_nano: u64) -> Result<u64> {
        let _writer = self.writer.write().await;
        let dropped = self
            .blocking("span store retention task failed", Retry::NEVER, move |b| {
                b.drop_expired(now_unix_nano)
            })
            .await?;
        if dropped > 0 {
            metrics::counter!(m::STORE_BUCKETS_DROPPED_TOTAL, "backend" => B::NAME)
                .increment(dropped);
        }
        Ok(dropped)
    }

    async fn close(&self) -> Result<()> {
        let _writer = self.writer.write().await;
        self.blocking("span store close task failed", Retry::NEVER, |b| b.close())
            .await
    }

    async fn ready(&self) -> Result<()> {
        self.blocking("span store readiness task failed", B::RETRY, |b| b.ready())
            .await
    }

    fn broken(&self) -> Option<String> {
        self.backend.broken()
    }

    fn damage(&self) -> Vec<crate::Damage> {
        self.backend.damage()
    }

    async fn put_state(&self, name: &str, value: Vec<u8>) -> Result<()> {
        let _writer = self.writer.write().await;
        let name = name.to_string();
        self.blocking("span store state write task failed", B::RETRY, move |b| {
            b.put_state(&name, &value)
        })
        .await
    }

    async fn get_state(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let name = name.to_string();
        self.blocking("span store state read task failed", B::RETRY, move |b| {
            b.get_state(&name)
        })
        .await
    }
}
