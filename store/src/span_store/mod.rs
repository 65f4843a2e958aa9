//! The span store seam: one row per trace, keyed by trace id, one cell per span.
//!
//! Every backend (embedded fjall, HBase) implements [`SpanStore`] and passes the same
//! conformance suite (`crate::conformance::span_store`). What the backends share is here:
//!
//! - [`admission`]: which spans of a batch are stored, skipped as duplicates or rejected
//!   for the per-trace cap, and the caps' defaults and validation.
//! - [`blocking`]: the one [`SpanStore`] adapter over a blocking backend (blocking pool,
//!   retries, writer serialization, metrics).
//! - [`trace_leases`]: per-trace leases that let a backend run several write batches at
//!   once without two of them read-modify-writing one trace's meta together.

pub mod admission;
pub mod blocking;
pub mod trace_leases;

use std::sync::Arc;

use async_trait::async_trait;
use clew_proto::{RejectReason, Span, Tenant, TraceId};

use crate::Result;

/// A whole trace as read from the store: every stored cell of its row.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTrace {
    pub trace_id: TraceId,
    /// Spans in no particular order (the query side assembles the tree).
    pub spans: Vec<Span>,
    /// True once any span of this trace was rejected for exceeding the per-trace cap.
    pub truncated: bool,
}

/// Outcome of a write: spans not listed in `rejected` are durable.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteReport {
    /// `(index into the written slice, why)` for every span that was not stored.
    pub rejected: Vec<(usize, RejectReason)>,
}

/// The wide-column span store.
///
/// Contract, for every backend:
/// - **Durability**: `write_spans` returns `Ok` only once every span not listed in the
///   report's `rejected` is durable (survives `kill -9` of the process, and for the
///   embedded backend a crash of the machine once the OS has flushed).
/// - **Idempotency**: writing a span (same trace id, span id and span kind — the kind tells
///   a client and a server span sharing one span id apart) again is a no-op for
///   readers: the trace still holds one copy of it, and it does not count twice against the
///   per-trace cap.
/// - **Late spans** of a known trace are new cells in the same row; nothing is rewritten.
/// - **Size cap**: spans that would take a trace past its configured span or byte cap are
///   rejected with [`RejectReason::TraceTooLarge`]; the trace is then reported `truncated`.
/// - **Reads**: `get_trace` is one row read; an unknown id is `Ok(None)`. `get_traces`
///   returns found traces in the order of the ids asked for, skipping unknown ids.
/// - **Tenants**: a span is stored in the row of its trace *in its tenant*
///   ([`Span::tenant`], `docs/adr/0011-tenants.md`); a read sees only the rows of the
///   tenant it is given, and a trace id of another tenant is unknown (`Ok(None)`). Spans
///   read back carry the tenant asked for.
/// - **Errors**: every `Err` says through [`crate::Error::is_retryable`] whether the same
///   call may succeed later; a failed write stored nothing that readers would miss on retry.
#[async_trait]
pub trait SpanStore: Send + Sync + 'static {
    /// Stores `spans` (any mix of traces). See the trait docs for the contract.
    async fn write_spans(&self, spans: Arc<[Span]>) -> Result<WriteReport>;

    /// How many `write_spans` calls the store serves at once to good effect; callers may
    /// keep that many batches in flight (the pipeline's store stage does). Any number of
    /// concurrent calls is always *correct*: a store that serializes its writers answers
    /// 1, and a store answering more keeps each trace's cap and idempotency exact across
    /// its concurrent calls.
    fn write_concurrency(&self) -> usize {
        1
    }

    /// Reads one whole trace of `tenant`.
    async fn get_trace(&self, tenant: &Tenant, trace_id: TraceId) -> Result<Option<StoredTrace>>;

    /// Reads many whole traces of `tenant` (a result page), in the order asked, unknown ids
    /// skipped.
    async fn get_traces(&self, tenant: &Tenant, trace_ids: &[TraceId]) -> Result<Vec<StoredTrace>>;

    /// Deletes data older than the retention period, relative to `now_unix_nano`.
    /// Returns how many buckets (partitions) were dropped.
    async fn drop_expired(&self, now_unix_nano: u64) -> Result<u64>;

    /// Makes everything written so far durable and releases resources; called at shutdown.
    async fn close(&self) -> Result<()>;

    /// Whether the store can serve reads and writes right now (for `/readyz`).
    async fn ready(&self) -> Result<()> {
        Ok(())
    }

    /// Why the store cannot serve again until the process restarts (an embedded store
    /// that refuses every write after a failed one), or `None`. Unlike [`Self::ready`],
    /// which also fails while a remote store is down for a while, this is what `/healthz`
    /// reports and what makes `clew serve` exit for its supervisor to restart it. Cheap:
    /// no I/O.
    fn broken(&self) -> Option<String> {
        None
    }

    /// Damaged parts found on disk at open and quarantined (`crate::damage`): the store
    /// serves the rest. Cheap: no I/O.
    fn damage(&self) -> Vec<crate::Damage> {
        Vec::new()
    }

    /// Replaces the small state blob `name` (the fleet inventory's snapshot, a few MB at
    /// most); durable when it returns `Ok`. A blob is not a trace: it is kept apart from
    /// the trace rows, no trace read ever returns it, and it counts against no cap. A
    /// store that keeps no state answers [`crate::Error::Config`].
    async fn put_state(&self, name: &str, value: Vec<u8>) -> Result<()> {
        let _ = (name, value);
        Err(crate::Error::Config(
            "this span store keeps no state".into(),
        ))
    }

    /// The blob last stored under `name`, or `None` if there is none.
    async fn get_state(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let _ = name;
        Err(crate::Error::Config(
            "this span store keeps no state".into(),
        ))
    }
}
