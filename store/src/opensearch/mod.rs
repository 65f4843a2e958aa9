//! The trace index on OpenSearch 2.x over its REST API: one document per span in daily
//! indices, searched at trace level. It only uses REST calls Elasticsearch 7.8+ also has,
//! but is tested on OpenSearch only. See `docs/adr/0008-opensearch-index.md`.
//!
//! ```text
//!  index_spans ─▶ SpanDoc (trace_index::span_doc) ─▶ JSON docs ─▶ _bulk (writer) ─▶ <prefix>-YYYY.MM.DD
//!                                                                                          │ alias <prefix>
//!  find_trace_ids ─▶ QueryPlan (trace_index::query_plan) ─▶ scan drive spans ⇄ verify ◀─────┘
//! ```
//!
//! - [`config`]: `[index] type = "opensearch"`, always compiled so every binary reads it.
//!
//! The rest needs the `opensearch` feature:
//!
//! - [`document`]: field names, the index template (settings and explicit mappings), index
//!   names, span → document.
//! - [`writer`]: `_bulk` with per-item outcome checks and retries.
//! - [`find_trace_ids`]: trace-level search (scan + verify) over the shared query plan and
//!   keyset cursor (`trace_index::query_plan`, `trace_index::cursor`).
//! - [`client`]: node selection, credentials, TLS, error classification.
//! - `trace_index`: [`OpenSearchTraceIndex`], the [`crate::TraceIndex`] over those.
//!
//! # Lifecycle
//!
//! Opening does no I/O: clew starts while the cluster is still coming up (`/readyz` says
//! not ready, writes answer retryable errors). The index template is installed (and
//! overwritten, so mapping changes take effect with the next daily index) on the first
//! call that needs the cluster. Daily indices are created by the first write into them,
//! from the template; retention deletes whole daily indices. Tenants of a retention class
//! other than the global `retention_days` (`crate::retention`) write to their class's own
//! daily indices, `<prefix>-r<days>-YYYY.MM.DD`, deleted by that class's horizon; they
//! match the same template and join the same alias, so searches cover every class.
//!
//! # Contract
//!
//! - Durability: `index_spans` returns `Ok` after every item of every `_bulk` request was
//!   indexed; the translog is fsynced per request before OpenSearch answers.
//! - Freshness: `refresh_interval: 1s`; [`TraceIndex::refresh`] calls `_refresh`.
//! - Idempotency: document ids are (trace id, span id, kind), so a span written twice is
//!   one document.
//! - A cluster that cannot be reached, or refuses for load, is [`Error::Unavailable`].

pub mod config;

#[cfg(feature = "opensearch")]
pub mod client;
#[cfg(feature = "opensearch")]
pub mod document;
#[cfg(feature = "opensearch")]
pub mod find_trace_ids;
#[cfg(feature = "opensearch")]
mod trace_index;
#[cfg(feature = "opensearch")]
pub mod writer;

pub use config::OpenSearchIndexConfig;
#[cfg(feature = "opensearch")]
pub use trace_index::OpenSearchTraceIndex;
