//! Prometheus metrics of the store crate, emitted per batch through the `metrics` facade.
//!
//! Names: `clew_store_*` for the span store, `clew_index_*` for the trace index.

/// Seconds spent in one span-store write batch (histogram), label `backend`.
pub const STORE_WRITE_SECONDS: &str = "clew_store_write_seconds";
/// Spans written to the store (counter), label `backend`.
pub const STORE_SPANS_WRITTEN_TOTAL: &str = "clew_store_spans_written_total";
/// Bytes of encoded spans written (counter), label `backend`.
pub const STORE_BYTES_WRITTEN_TOTAL: &str = "clew_store_bytes_written_total";
/// Spans the store rejected (counter), labels `backend` and `reason`.
pub const STORE_SPANS_REJECTED_TOTAL: &str = "clew_store_spans_rejected_total";
/// Seconds per trace read (histogram), label `backend`.
pub const STORE_READ_SECONDS: &str = "clew_store_read_seconds";
/// Retention buckets dropped (counter), label `backend`.
pub const STORE_BUCKETS_DROPPED_TOTAL: &str = "clew_store_buckets_dropped_total";
/// Spans written again that were already stored: idempotent no-ops (counter), label `backend`.
pub const STORE_DUPLICATE_SPANS_TOTAL: &str = "clew_store_duplicate_spans_total";
/// Stored cells skipped on read because they could not be decoded (counter), label `backend`.
pub const STORE_CORRUPT_CELLS_TOTAL: &str = "clew_store_corrupt_cells_total";

/// Bytes held by the embedded store's block cache (gauge, at most `store.cache_mb`).
pub const STORE_CACHE_BYTES: &str = "clew_store_cache_bytes";
/// Bytes of the embedded store's memtables, active and sealed, not yet flushed (gauge).
pub const STORE_MEMTABLE_BYTES: &str = "clew_store_memtable_bytes";
/// Journal files of the embedded store on disk (gauge): one is written, the others wait
/// for their memtables to be flushed.
pub const STORE_JOURNALS: &str = "clew_store_journals";
/// Memtable flushes queued in the embedded store (gauge); a growing queue means flushes
/// fall behind ingest.
pub const STORE_FLUSHES_QUEUED: &str = "clew_store_flushes_queued";

/// Damaged parts of the embedded store or index found at open and quarantined (counter),
/// label `part` (`index segment`, `index partition`, `index wal`, `store journal`).
pub const STORAGE_QUARANTINED_TOTAL: &str = "clew_storage_quarantined_total";

/// Seconds spent handing one batch to the index (histogram), label `backend`.
pub const INDEX_WRITE_SECONDS: &str = "clew_index_write_seconds";
/// Span documents indexed (counter), label `backend`.
pub const INDEX_DOCS_TOTAL: &str = "clew_index_documents_total";
/// Seconds per index commit (histogram), label `backend`.
pub const INDEX_COMMIT_SECONDS: &str = "clew_index_commit_seconds";
/// Seconds per search (histogram), label `backend`.
pub const INDEX_SEARCH_SECONDS: &str = "clew_index_search_seconds";
/// Span documents sent again after the index backend refused them for now (counter),
/// label `backend`.
pub const INDEX_RETRIES_TOTAL: &str = "clew_index_retries_total";
/// Segments of the embedded index's partitions being written, after the last commit
/// (gauge): each commit adds one, merges take them back.
pub const INDEX_SEGMENTS: &str = "clew_index_segments";
/// Index partitions dropped by retention (counter), label `backend`.
pub const INDEX_PARTITIONS_DROPPED_TOTAL: &str = "clew_index_partitions_dropped_total";
