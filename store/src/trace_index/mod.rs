//! The trace index seam: find trace ids by what people search for.
//!
//! Every backend (embedded tantivy, OpenSearch) implements [`TraceIndex`] and passes the
//! same conformance suite (`crate::conformance::trace_index`). What the backends share is
//! here, so neither imports the other:
//!
//! - [`query_plan`]: a [`TraceQuery`] checked and cut into condition groups, every limit
//!   (page size, group cap, text size and words) and the words of free text.
//! - [`cursor`]: the keyset cursor codec.
//! - [`span_doc`]: span → the values both backends index.
//! - [`days`]: UTC day partitions and their names.

pub mod cursor;
pub mod days;
pub mod query_plan;
pub mod span_doc;

use std::sync::Arc;

use async_trait::async_trait;
use clew_proto::{Span, Tenant, TraceId};

use crate::Result;

/// Hard upper bound on `TraceQuery::limit`; larger limits are clamped to it.
pub const MAX_LIMIT: usize = 1000;
/// Default page size.
pub const DEFAULT_LIMIT: usize = 20;

/// A search for traces. Every condition that is set must hold on *some* span of the trace;
/// different conditions may hold on different spans of the same trace (the order id on the
/// entry span, the error on a database span). Conditions that must hold on *one* span
/// together go into [`TraceQuery::same_span`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceQuery {
    /// Exact service name (`service.name` of the resource).
    pub service: Option<String>,
    /// Exact span name; when `service` is also set, the span must belong to that service.
    pub operation: Option<String>,
    /// Only traces with at least one error span.
    pub errors_only: bool,
    /// Some span lasted at least this long (nanoseconds).
    pub min_duration_nanos: Option<u64>,
    /// Some span lasted at most this long (nanoseconds); combined with `min` on one span.
    pub max_duration_nanos: Option<u64>,
    /// Spans starting at or after this time (unix ns, inclusive).
    pub start_min_unix_nano: Option<u64>,
    /// Spans starting before this time (unix ns, exclusive).
    pub start_max_unix_nano: Option<u64>,
    /// Exact `name=value` terms on configured indexed attributes (e.g. `http.route`).
    pub attributes: Vec<(String, String)>,
    /// Exact business keys (`order_id=12345`).
    pub business_keys: Vec<(String, String)>,
    /// Free text over error text: status message, exception type and message. It is data,
    /// never query syntax: it is split into words, all of which must occur; text without
    /// any word (`*`, `\`) adds no condition.
    pub text: Option<String>,
    /// Each entry: every one of its conditions holds on one and the same span (Jaeger's
    /// search rule: service, operation, error, duration and every tag on one span). The
    /// time range applies to that span too. Different entries, and the trace-level fields
    /// above, may hold on other spans.
    pub same_span: Vec<SpanConditions>,
    /// Page size; 0 means [`DEFAULT_LIMIT`], larger values are clamped to [`MAX_LIMIT`].
    pub limit: usize,
    /// Opaque cursor from a previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// Conditions that all hold on one span: the trace matches when one of its spans (in the
/// query's time range) satisfies every condition that is set. Each field means what the
/// field of the same name in [`TraceQuery`] means, narrowed to that one span; an entry with
/// nothing set matches any span.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpanConditions {
    /// Exact service name.
    pub service: Option<String>,
    /// Exact span name.
    pub operation: Option<String>,
    /// The span is an error span.
    pub errors_only: bool,
    /// The span lasted at least this long (nanoseconds).
    pub min_duration_nanos: Option<u64>,
    /// The span lasted at most this long (nanoseconds).
    pub max_duration_nanos: Option<u64>,
    /// Exact `name=value` terms of indexed attributes of the span (its own, its
    /// resource's, scope's and events', as the index holds them).
    pub attributes: Vec<(String, String)>,
    /// Exact business keys found on the span.
    pub business_keys: Vec<(String, String)>,
}

/// One trace found by the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceHit {
    pub trace_id: TraceId,
    /// Start time of the earliest indexed span of the trace matching the query (unix ns);
    /// results are ordered newest first by this value, then by trace id.
    pub start_unix_nano: u64,
}

/// A page of results, newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceIdPage {
    pub hits: Vec<TraceHit>,
    /// Present when more results may follow.
    pub next_cursor: Option<String>,
}

/// The secondary index over spans.
///
/// Contract, for every backend:
/// - **Durability**: `index_spans` returns `Ok` once the spans are durable for the index:
///   a crash after `Ok` does not lose them (they are searchable after restart).
/// - **Freshness**: spans are searchable within 2 seconds of `index_spans` returning.
///   `refresh` makes everything indexed so far searchable now.
/// - **Idempotency**: indexing the same span twice does not make a trace appear twice in
///   results.
/// - **Order**: results are distinct trace ids, newest first, paged with an opaque cursor
///   that is stable under concurrent writes of older data.
/// - **Errors**: a malformed cursor or query is [`crate::Error::InvalidRequest`];
///   pathological free text fails fast instead of running long.
/// - **Tenants**: a span is indexed in its tenant ([`Span::tenant`]); `find_trace_ids`,
///   `services` and `operations` see only the documents of the tenant they are given,
///   whatever the query says: the tenant is a condition of its own that no field of
///   [`TraceQuery`] can reach or widen (`docs/adr/0011-tenants.md`).
#[async_trait]
pub trait TraceIndex: Send + Sync + 'static {
    /// Indexes `spans` (business keys already filled in by the enrich stage).
    async fn index_spans(&self, spans: Arc<[Span]>) -> Result<()>;

    /// How many `index_spans` calls the index serves at once to good effect; callers may
    /// keep that many batches in flight (the pipeline's index stage does). Concurrent
    /// calls are always correct; an index that serializes its writer answers 1.
    fn write_concurrency(&self) -> usize {
        1
    }

    /// Finds trace ids of `tenant` matching `query`, newest first.
    async fn find_trace_ids(&self, tenant: &Tenant, query: &TraceQuery) -> Result<TraceIdPage>;

    /// Service names seen in `tenant`, sorted.
    async fn services(&self, tenant: &Tenant) -> Result<Vec<String>>;

    /// Operation (span) names seen for `service` in `tenant`, sorted.
    async fn operations(&self, tenant: &Tenant, service: &str) -> Result<Vec<String>>;

    /// Makes everything indexed so far searchable now.
    async fn refresh(&self) -> Result<()>;

    /// Deletes index partitions older than the retention period. Returns how many.
    async fn drop_expired(&self, now_unix_nano: u64) -> Result<u64>;

    /// Commits everything and releases resources; called at shutdown.
    async fn close(&self) -> Result<()>;

    /// Whether the index can serve now (for `/readyz`).
    async fn ready(&self) -> Result<()> {
        Ok(())
    }

    /// Why the index cannot serve again until the process restarts, or `None` (see
    /// `SpanStore::broken`). Cheap: no I/O.
    fn broken(&self) -> Option<String> {
        None
    }

    /// Damaged parts found on disk at open and quarantined (`crate::damage`): the index
    /// serves the rest. Cheap: no I/O.
    fn damage(&self) -> Vec<crate::Damage> {
        Vec::new()
    }
}
