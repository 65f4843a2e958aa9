//! # clew-store: where spans live and how traces are found
//!
//! Two seams, each a small trait whose docs are its contract, each with one conformance
//! suite that every backend runs:
//!
//! ```text
//!            ┌──────────── SpanStore ─────────────┐   ┌──────────── TraceIndex ────────────┐
//!  write ──▶ │ row = trace id, cell = span        │   │ span docs: keys, errors, service,  │ ◀── index
//!            │ embedded: fjall (embedded/fjall_…) │   │ operation, duration, time          │
//!  fetch ◀── │ or HBase via Thrift1 (hbase/)      │   │ embedded: tantivy (embedded/tant…) │ ──▶ find ids
//!            └────────────────────────────────────┘   │ or OpenSearch over REST (opens…)   │
//!                                                     └────────────────────────────────────┘
//! ```
//!
//! - [`span_store`]: the [`SpanStore`] trait (durability, idempotency, size cap), and what
//!   its backends share: span admission and the one adapter over blocking backends.
//! - [`trace_index`]: the [`TraceIndex`] trait and [`TraceQuery`], and what its backends
//!   share: the query plan, the cursor codec, span → document values, day partitions.
//! - [`row_layout`]: the meta cell and cell column every span-store backend shares.
//! - [`config`]: the serde-tagged backend configs and the factory functions; each backend
//!   folder owns its own config struct and its validation.
//! - [`embedded`]: the default backends (fjall, tantivy), always built.
//! - [`hbase`]: the span store on HBase through its Thrift1 server (feature `hbase`).
//! - [`opensearch`]: the trace index on OpenSearch (or Elasticsearch) over its REST API
//!   (feature `opensearch`).
//! - `conformance` (feature `conformance`): the suites every backend must pass.
//!
//! Backends only depend on the neutral modules, never on each other. The `hbase` and
//! `opensearch` features (both default) compile their clients; without them only their
//! config types remain, and the factories answer that the backend was left out.

pub mod config;
pub mod damage;
pub mod embedded;
pub mod error;
pub mod hbase;
pub mod metrics;
pub mod opensearch;
pub mod retention;
pub mod row_layout;
pub mod span_store;
pub mod trace_index;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use config::{
    open_span_store, open_trace_index, Common, EmbeddedIndexConfig, EmbeddedStoreConfig,
    HbaseStoreConfig, HbaseTransport, IndexConfig, OpenSearchIndexConfig, Secret, StoreConfig,
};
pub use damage::Damage;
pub use error::{Error, Result};
pub use retention::{RetentionClass, RetentionClasses};
pub use span_store::{SpanStore, StoredTrace, WriteReport};
pub use trace_index::{SpanConditions, TraceHit, TraceIdPage, TraceIndex, TraceQuery};
