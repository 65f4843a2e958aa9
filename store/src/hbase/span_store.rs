//! The span store on HBase, through HBase's Thrift1 server.
//!
//! # Layout (the row contract of `docs/design.md`, see `docs/adr/0001-row-layout.md`)
//!
//! ```text
//! table <table>, one column family `s` (TTL = the longest retention class, 1 version,
//!   block cache on)
//!   row key: trace_id(16)            (tenant `default`, the rows of before tenants)
//!            sha256(tenant)[..8] ++ trace_id(16)   (every other tenant; meta v2 names it)
//!     s:meta                         → v1 | span count u32 LE | bytes u64 LE | flags u8
//!     s:<span_id(8) ++ kind(1)>      → encoded span (clew_proto::encoding, version byte first)
//! ```
//!
//! - **One row per trace, one Get per trace.** Late spans are new cells in the row.
//! - **Meta cell** (`meta`, 4 bytes, so it can never be a 9-byte span qualifier): the size
//!   cap costs one multi-get of the batch's metas, and the meta is written in the same
//!   row mutation as the cells it counts — HBase applies one row's mutations atomically,
//!   so count and cells never disagree.
//! - **Idempotency.** For traces that already have a meta, the batch's qualifiers are read
//!   first (one multi-get for all such traces); cells that exist are neither rewritten nor
//!   counted. With one version kept, a re-write would be invisible anyway; the check is
//!   for the cap.
//! - **Retention** is a TTL HBase applies with the server's clock at read and compaction
//!   time, so [`SpanStore::drop_expired`] has nothing to do and returns 0. Each put carries
//!   the TTL of its tenant's retention class (`crate::retention`) as the `_ttl` mutation
//!   attribute (milliseconds, an 8-byte big-endian long: what `Mutation.setTTL` sends),
//!   which Thrift1's `mutateRows` passes to every `Put` of the call; so a batch is one
//!   `mutateRows` per class it holds. A cell TTL can only shorten the column family's,
//!   hence the family TTL = the longest class. Thrift1 cannot alter a family: a table
//!   created with a shorter TTL keeps it (logged at open; `alter` it in the HBase shell).
//! - **Concurrency.** Up to `pool_size` write batches run at once, each on its own pooled
//!   connection ([`SpanStore::write_concurrency`]; the pipeline keeps that many in
//!   flight). The meta is read-modify-write, so a batch first claims a lease on each of
//!   its traces (`crate::span_store::trace_leases`): two batches touching the same trace
//!   run one after the other, the second reading the meta the first wrote; batches of
//!   disjoint traces overlap. Several clew processes writing the same trace at the same
//!   instant could each admit spans up to the cap. All Thrift calls are blocking and run
//!   in `spawn_blocking` on pooled connections; retryable failures are retried with
//!   back-off before [`Error::Unavailable`] reaches the caller.
//!
//! Thrift1 can neither create namespaces nor pre-split tables: the store creates a missing
//! table in an existing namespace; pre-splitting on the first byte of the row key is an
//! operator step (see the ADR).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use clew_proto::encoding::SharedDecoder;
use clew_proto::{Span, Tenant, TraceId};
use hbase_thrift::hbase::{
    BatchMutation, ColumnDescriptor, Mutation, THbaseSyncClient, TRowResult,
};
use tracing::{info, warn};

use super::config::HbaseStoreConfig;
use super::connection::{is_already_exists, Pool};
use crate::metrics as m;
use crate::row_layout::{cell_suffix, Meta, RowKey, CELL_SUFFIX_LEN};
use crate::span_store::admission::{Admission, Caps, WriteOutcome};
use crate::span_store::blocking::{BlockingBackend, BlockingSpanStore, Retry};
use crate::span_store::trace_leases::TraceLeases;
use crate::{Common, Error, Result, RetentionClass, RetentionClasses, StoredTrace};

const BACKEND: &str = "hbase";
/// The one column family.
pub const FAMILY: &[u8] = b"s";
/// Qualifier of the per-trace meta cell.
pub const META_QUALIFIER: &[u8] = b"meta";
/// Length of a span cell qualifier: span id + discriminator.
pub const CELL_QUALIFIER_LEN: usize = CELL_SUFFIX_LEN;
/// Row key prefix of the state blobs ([`crate::SpanStore::put_state`]): 18 bytes, so a
/// state row (prefix + name) is never 16 bytes long like a trace row.
pub const STATE_ROW_PREFIX: &[u8] = b"clew.state.row.v1/";
/// Qualifier of a state blob's one cell.
const STATE_QUALIFIER: &[u8] = b"v";
/// Attempts per call for retryable errors, with doubling back-off from `BACKOFF_START`.
const ATTEMPTS: u32 = 4;
const BACKOFF_START: Duration = Duration::from_millis(100);

/// `family:qualifier`, the column name Thrift1 takes and returns.
pub fn column(qualifier: &[u8]) -> Vec<u8> {
    let mut c = Vec::with_capacity(FAMILY.len() + 1 + qualifier.len());
    c.extend_from_slice(FAMILY);
    c.push(b':');
    c.extend_from_slice(qualifier);
    c
}

/// The qualifier of a span's cell: span id, then the kind (client and server spans that
/// share one span id are two cells).
pub fn cell_qualifier(span: &Span) -> [u8; CELL_QUALIFIER_LEN] {
    cell_suffix(span)
}

/// The HBase span store. Cheap to share (`Arc` inside).
pub type HbaseSpanStore = BlockingSpanStore<HbaseRows>;

/// The blocking half of [`HbaseSpanStore`]: the connection pool and the table.
pub struct HbaseRows {
    pool: Pool,
    table: Vec<u8>,
    caps: Caps,
    retention: RetentionClasses,
    /// A day of retention: 24 h (shorter only in tests, to see HBase expire cells).
    day: Duration,
    /// Write batches in flight at once (= the pool size).
    write_concurrency: usize,
    /// The traces of the write batches in flight.
    leases: TraceLeases,
}

/// The `_ttl` attribute HBase reads from a mutation (`Mutation.OP_ATTRIBUTE_TTL`).
const TTL_ATTRIBUTE: &[u8] = b"_ttl";

/// Cells of the batch that are already stored: (admission slot, qualifier).
type ExistingCells = HashSet<(usize, [u8; CELL_QUALIFIER_LEN])>;

fn no_attributes() -> BTreeMap<Vec<u8>, Vec<u8>> {
    BTreeMap::new()
}

impl HbaseSpanStore {
    /// Connects and creates the table if it is missing (blocking; call before serving).
    pub fn open(config: &HbaseStoreConfig, common: &Common) -> Result<Self> {
        Self::open_with_day(config, common, Duration::from_secs(86_400))
    }

    /// [`HbaseSpanStore::open`] with a retention day of `day` instead of 24 h: for tests
    /// that watch HBase expire cells by their class's TTL within seconds.
    #[doc(hidden)]
    pub fn open_with_day(
        config: &HbaseStoreConfig,
        common: &Common,
        day: Duration,
    ) -> Result<Self> {
        let rows = HbaseRows {
            pool: Pool::new(config)?,
            table: config.table.as_bytes().to_vec(),
            caps: Caps {
                max_spans_per_trace: config.max_spans_per_trace,
                max_bytes_per_trace: config.max_bytes_per_trace,
            },
            retention: common.retention.clone(),
            day,
            write_concurrency: config.pool_size.max(1),
            leases: TraceLeases::default(),
        };
        let ttl_seconds = i32::try_from(
            (u128::from(common.retention.longest_days()) * day.as_millis() / 1000).max(1),
        )
        .map_err(|_| Error::Config("retention_days is too large for an hbase ttl".into()))?;
        let mut attempt = 0;
        loop {
            match rows.ensure_table(ttl_seconds) {
                Err(e) if e.is_retryable() && attempt + 1 < ATTEMPTS * 3 => {
                    warn!(error = %e, "hbase not ready, retrying table set-up");
                    std::thread::sleep(BACKOFF_START * 2u32.pow(attempt.min(4)));
                    attempt += 1;
                }
                other => break other?,
            }
        }
        Ok(BlockingSpanStore::new(rows))
    }
}

impl HbaseRows {
    fn ensure_table(&self, ttl_seconds: i32) -> Result<()> {
        let table = self.table.clone();
        let exists = self.pool.with_client("failed to list hbase tables", |c| {
            Ok(c.get_table_names()?.contains(&table))
        })?;
        if exists {
            self.check_family_ttl(ttl_seconds);
            return Ok(());
        }
        let family = ColumnDescriptor {
            name: Some(FAMILY.to_vec()),
            max_versions: Some(1),
            compression: Some("NONE".into()),
            in_memory: Some(false),
            bloom_filter_type: Some("ROW".into()),
            bloom_filter_vector_size: Some(0),
            bloom_filter_nb_hashes: Some(0),
            block_cache_enabled: Some(true),
            time_to_live: Some(ttl_seconds),
        };
        let created = self.pool.with_client("failed to create hbase table", |c| {
            match c.create_table(table.clone(), vec![family.clone()]) {
                Ok(()) => Ok(true),
                Err(e) if is_already_exists(&e) => Ok(false),
                Err(e) => Err(e),
            }
        })?;
        if created {
            info!(table = %String::from_utf8_lossy(&self.table), ttl_seconds, "created hbase span table");
        }
        Ok(())
    }

    /// Warns when the table's family TTL is shorter than the longest retention class: the
    /// cells of that class then expire by the family's TTL (Thrift1 cannot alter it).
    fn check_family_ttl(&self, wanted_seconds: i32) {
        let table = self.table.clone();
        let families = self
            .pool
            .with_client("failed to read hbase column families", |c| {
                c.get_column_descriptors(table.clone())
            });
        let family_ttl = match families {
            Ok(f) => f
                .values()
                .find(|d| {
                    d.name.as_deref().map(|n| n.strip_suffix(b":").unwrap_or(n)) == Some(FAMILY)
                })
                .and_then(|d| d.time_to_live),
            Err(error) => {
                warn!(%error, "could not check the hbase column family ttl");
                return;
            }
        };
        if let Some(ttl) = family_ttl.filter(|&t| t > 0 && t < wanted_seconds) {
            warn!(
                table = %String::from_utf8_lossy(&self.table),
                family_ttl_seconds = ttl,
                longest_retention_seconds = wanted_seconds,
                "the hbase column family ttl is shorter than the longest retention class: its \
                 cells expire by the family ttl; raise it with `alter` in the hbase shell"
            );
        }
    }

    /// The `mutateRows` attributes of a write in `class`: its TTL in milliseconds.
    fn ttl_attributes(&self, class: RetentionClass) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let ms = u128::from(self.retention.days(class)) * self.day.as_millis();
        let ms = i64::try_from(ms).unwrap_or(i64::MAX);
        BTreeMap::from([(TTL_ATTRIBUTE.to_vec(), ms.to_be_bytes().to_vec())])
    }

    /// Reads whole rows; `keys` in order, unknown ones skipped.
    fn read_rows(&self, keys: &[RowKey]) -> Result<Vec<TRowResult>> {
        let rows: Vec<Vec<u8>> = keys.iter().map(|k| k.as_bytes().to_vec()).collect();
        let table = self.table.clone();
        self.pool
            .with_client("failed to read traces from hbase", |c| {
                c.get_rows(table, rows, no_attributes())
            })
    }

    /// One batch, in four steps under a lease on its traces: the metas of its traces (one
    /// multi-get), the cells that already exist in traces already stored (one multi-get),
    /// admission, and one `mutateRows` in which each row's cells and meta are applied
    /// atomically. The lease is held until `mutateRows` returned (or failed), so a batch
    /// sharing a trace reads this one's meta, never the one before it.
    fn write_batch(&self, spans: &[Span]) -> Result<WriteOutcome> {
        if spans.is_empty() {
            return Ok(WriteOutcome::default());
        }
        let order = traces_in_order(spans);
        let rows: Vec<RowKey> = order.iter().map(|(row, _)| *row).collect();
        let _lease = self.leases.claim(&rows);
        let metas = self.read_metas(&order)?;
        let mut admission = Admission::new(self.caps);
        for ((row, tenant), meta) in order.iter().zip(&metas) {
            admission.add_trace(*row, tenant, *meta);
        }
        let existing = self.read_existing_cells(spans, &order, &metas)?;
        let mut cells: Vec<Vec<Mutation>> = vec![Vec::new(); order.len()];
        for (index, span) in spans.iter().enumerate() {
            let slot = admission
                .slot(&RowKey::of(span))
                .expect("every trace was added");
            let q = cell_qualifier(span);
            let exists = || Ok(existing.contains(&(slot, q)));
            if let Some(encoded) = admission.admit(index, span, slot, exists)? {
                cells[slot].push(put(column(&q), encoded.to_vec()));
            }
        }
        // one `mutateRows` per retention class: its `_ttl` applies to every put of the call
        let mut by_class: BTreeMap<RetentionClass, Vec<BatchMutation>> = BTreeMap::new();
        for (slot, row) in row_mutations(&admission, cells) {
            let class = self.retention.class_of(&order[slot].1);
            by_class.entry(class).or_default().push(row);
        }
        for (class, rows) in by_class {
            self.mutate_rows(rows, self.ttl_attributes(class))?;
        }
        Ok(admission.finish())
    }

    /// The stored meta of each trace (`None`: not stored yet), in the order of `order`.
    /// A meta that cannot be read is rebuilt from the row itself.
    fn read_metas(&self, order: &[(RowKey, Tenant)]) -> Result<Vec<Option<Meta>>> {
        let slots = slots_of(order);
        let rows: Vec<Vec<u8>> = order.iter().map(|(k, _)| k.as_bytes().to_vec()).collect();
        let table = self.table.clone();
        let meta_rows = self
            .pool
            .with_client("failed to read trace metas from hbase", |c| {
                c.get_rows_with_columns(table, rows, vec![column(META_QUALIFIER)], no_attributes())
            })?;
        let mut metas: Vec<Option<Meta>> = vec![None; order.len()];
        let mut corrupt_metas: Vec<usize> = Vec::new();
        for row in meta_rows {
            let Some(slot) = row_slot(&row, &slots) else {
                continue;
            };
            let raw = row
                .columns
                .as_ref()
                .and_then(|cols| cols.get(&column(META_QUALIFIER)))
                .and_then(|cell| cell.value.as_deref());
            if let Some(raw) = raw {
                let (row, tenant) = &order[slot];
                if !Meta::tenant_of(raw).allows(tenant) {
                    return Err(collision(row, tenant));
                }
                match Meta::decode(raw) {
                    Some(meta) => metas[slot] = Some(meta),
                    None => corrupt_metas.push(slot),
                }
            }
        }
        for slot in corrupt_metas {
            let row = order[slot].0;
            warn!(trace_id = %row.trace_id(), "corrupt trace meta cell, recounting the row");
            metas[slot] = Some(self.recount_row(row)?);
        }
        Ok(metas)
    }

    /// Rebuilds a meta from the row itself (only when the stored meta is unreadable).
    fn recount_row(&self, key: RowKey) -> Result<Meta> {
        let row = self.read_rows(&[key])?;
        let mut meta = Meta::default();
        for (name, cell) in row.iter().flat_map(|r| r.columns.iter().flatten()) {
            if name.len() == FAMILY.len() + 1 + CELL_QUALIFIER_LEN {
                meta.spans += 1;
                meta.bytes += cell.value.as_ref().map_or(0, |v| v.len() as u64);
            }
        }
        Ok(meta)
    }

    /// Which of the batch's cells already exist, for traces already in the store (only
    /// those can have any): one multi-get of the batch's qualifiers over their rows.
    fn read_existing_cells(
        &self,
        spans: &[Span],
        order: &[(RowKey, Tenant)],
        metas: &[Option<Meta>],
    ) -> Result<ExistingCells> {
        let mut existing = ExistingCells::new();
        let known: HashSet<RowKey> = order
            .iter()
            .zip(metas)
            .filter(|(_, m)| m.is_some())
            .map(|((row, _), _)| *row)
            .collect();
        if known.is_empty() {
            return Ok(existing);
        }
        let mut columns: Vec<Vec<u8>> = spans
            .iter()
            .filter(|s| known.contains(&RowKey::of(s)))
            .map(|s| column(&cell_qualifier(s)))
            .collect();
        columns.sort();
        columns.dedup();
        let known_rows: Vec<Vec<u8>> = order
            .iter()
            .filter(|(row, _)| known.contains(row))
            .map(|(row, _)| row.as_bytes().to_vec())
            .collect();
        let table = self.table.clone();
        let found = self
            .pool
            .with_client("failed to read existing span cells from hbase", |c| {
                c.get_rows_with_columns(table, known_rows, columns, no_attributes())
            })?;
        let slots = slots_of(order);
        for row in found {
            let Some(slot) = row_slot(&row, &slots) else {
                continue;
            };
            for name in row.columns.iter().flat_map(|c| c.keys()) {
                if let Some(q) = name
                    .strip_prefix(FAMILY)
                    .and_then(|rest| rest.strip_prefix(b":"))
                    .and_then(|q| <[u8; CELL_QUALIFIER_LEN]>::try_from(q).ok())
                {
                    existing.insert((slot, q));
                }
            }
        }
        Ok(existing)
    }

    /// One `mutateRows`; the mutations move into the call (the blocking layer retries a
    /// failed write by running the whole batch again, not this call).
    fn mutate_rows(
        &self,
        rows: Vec<BatchMutation>,
        attributes: BTreeMap<Vec<u8>, Vec<u8>>,
    ) -> Result<()> {
        let table = self.table.clone();
        self.pool
            .with_client("failed to write spans to hbase", |c| {
                c.mutate_rows(table, rows, attributes)
            })
    }

    fn read_batch(&self, tenant: &Tenant, ids: &[TraceId]) -> Result<Vec<StoredTrace>> {
        let started = Instant::now();
        let keys: Vec<RowKey> = ids.iter().map(|id| RowKey::new(tenant, id)).collect();
        let rows = self.read_rows(&keys)?;
        let mut by_key: HashMap<Vec<u8>, TRowResult> = HashMap::with_capacity(rows.len());
        for row in rows {
            if let Some(key) = row.row.clone() {
                by_key.insert(key, row);
            }
        }
        let mut decoder = SharedDecoder::default();
        let mut corrupt = 0u64;
        let mut out = Vec::with_capacity(by_key.len());
        for (id, key) in ids.iter().zip(&keys) {
            let Some(row) = by_key.remove(key.as_bytes()) else {
                continue;
            };
            let mut trace = StoredTrace {
                trace_id: *id,
                spans: Vec::new(),
                truncated: false,
            };
            for (name, cell) in row.columns.iter().flatten() {
                let Some(q) = name.strip_prefix(FAMILY).and_then(|r| r.strip_prefix(b":")) else {
                    corrupt += 1;
                    continue;
                };
                let value = cell.value.as_deref().unwrap_or_default();
                if q == META_QUALIFIER {
                    if !Meta::tenant_of(value).allows(tenant) {
                        return Err(collision(key, tenant));
                    }
                    match Meta::decode(value) {
                        Some(meta) => trace.truncated = meta.truncated,
                        None => {
                            warn!(trace_id = %id, "corrupt trace meta cell, reading the row anyway");
                            corrupt += 1;
                        }
                    }
                } else if q.len() != CELL_QUALIFIER_LEN {
                    warn!(trace_id = %id, qualifier_len = q.len(), "unexpected cell in trace row, skipped");
                    corrupt += 1;
                } else {
                    match decoder.decode(value) {
                        Ok(mut span) => {
                            span.tenant = tenant.clone();
                            trace.spans.push(span)
                        }
                        Err(error) => {
                            warn!(%error, trace_id = %id, "undecodable span cell, skipped");
                            corrupt += 1;
                        }
                    }
                }
            }
            out.push(trace);
        }
        if corrupt > 0 {
            metrics::counter!(m::STORE_CORRUPT_CELLS_TOTAL, "backend" => BACKEND)
                .increment(corrupt);
        }
        metrics::histogram!(m::STORE_READ_SECONDS, "backend" => BACKEND)
            .record(started.elapsed().as_secs_f64());
        Ok(out)
    }
}

/// The batch's traces (row key and tenant), in first-seen order; a trace's position is its
/// admission slot.
fn traces_in_order(spans: &[Span]) -> Vec<(RowKey, Tenant)> {
    let mut seen = HashSet::new();
    spans
        .iter()
        .filter(|s| seen.insert(RowKey::of(s)))
        .map(|s| (RowKey::of(s), s.tenant.clone()))
        .collect()
}

fn slots_of(order: &[(RowKey, Tenant)]) -> HashMap<Vec<u8>, usize> {
    order
        .iter()
        .enumerate()
        .map(|(slot, (row, _))| (row.as_bytes().to_vec(), slot))
        .collect()
}

fn row_slot(row: &TRowResult, slots: &HashMap<Vec<u8>, usize>) -> Option<usize> {
    slots.get(row.row.as_deref()?).copied()
}

/// A row whose meta names another tenant than the one whose key led to it: two tenant
/// names with the same key prefix (1 in 2^64 per pair). Never served, never written.
fn collision(row: &RowKey, tenant: &Tenant) -> Error {
    Error::unavailable(
        "failed to access trace row",
        format!(
            "row of trace {} names another tenant than {tenant} (a tenant key prefix \
             collision); not served",
            row.trace_id()
        ),
    )
}

/// One row mutation per trace whose meta changed: its new cells, then its meta; with
/// the trace's admission slot.
fn row_mutations(
    admission: &Admission,
    mut cells: Vec<Vec<Mutation>>,
) -> Vec<(usize, BatchMutation)> {
    admission
        .changed_metas()
        .map(|(slot, row, _, cell)| {
            let mut mutations = std::mem::take(&mut cells[slot]);
            mutations.push(put(column(META_QUALIFIER), cell));
            let row = BatchMutation {
                row: Some(row.as_bytes().to_vec()),
                mutations: Some(mutations),
            };
            (slot, row)
        })
        .collect()
}

fn put(column: Vec<u8>, value: Vec<u8>) -> Mutation {
    Mutation {
        is_delete: Some(false),
        column: Some(column),
        value: Some(value),
        write_to_w_a_l: Some(true),
    }
}

impl BlockingBackend for HbaseRows {
    const NAME: &'static str = BACKEND;
    const RETRY: Retry = Retry {
        attempts: ATTEMPTS,
        backoff_start: BACKOFF_START,
    };

    fn write_concurrency(&self) -> usize {
        self.write_concurrency
    }

    fn write(&self, spans: &[Span]) -> Result<WriteOutcome> {
        self.write_batch(spans)
    }

    fn read_traces(&self, tenant: &Tenant, ids: &[TraceId]) -> Result<Vec<StoredTrace>> {
        self.read_batch(tenant, ids)
    }

    /// HBase expires cells itself, by each put's class TTL (and the column family's TTL,
    /// the longest class), so there is nothing to drop here.
    fn drop_expired(&self, _now_unix_nano: u64) -> Result<u64> {
        Ok(0)
    }

    /// Every write is durable in HBase's WAL when `mutateRows` returns; nothing to flush.
    fn close(&self) -> Result<()> {
        Ok(())
    }

    fn ready(&self) -> Result<()> {
        let table = self.table.clone();
        self.pool
            .with_client("hbase table is not available", |c| {
                c.is_table_enabled(table.clone())
            })?
            .then_some(())
            .ok_or_else(|| Error::unavailable("hbase table is not available", "table is disabled"))
    }

    /// One row per blob, in the span table; the default class's TTL expires a blob not
    /// rewritten within the global retention, like the default tenant's traces.
    fn put_state(&self, name: &str, value: &[u8]) -> Result<()> {
        self.mutate_rows(
            vec![BatchMutation {
                row: Some(state_row(name)),
                mutations: Some(vec![put(column(STATE_QUALIFIER), value.to_vec())]),
            }],
            self.ttl_attributes(RetentionClass::Default),
        )
    }

    fn get_state(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let table = self.table.clone();
        let rows = vec![state_row(name)];
        let found = self
            .pool
            .with_client("failed to read a state blob from hbase", |c| {
                c.get_rows_with_columns(
                    table.clone(),
                    rows.clone(),
                    vec![column(STATE_QUALIFIER)],
                    no_attributes(),
                )
            })?;
        Ok(found
            .into_iter()
            .filter_map(|row| row.columns)
            .find_map(|mut columns| columns.remove(&column(STATE_QUALIFIER)))
            .and_then(|cell| cell.value))
    }
}

fn state_row(name: &str) -> Vec<u8> {
    [STATE_ROW_PREFIX, name.as_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::fixtures::{now_unix_nano, span, span_id, trace_id};

    #[test]
    fn cell_qualifier_is_span_id_then_kind_and_never_the_meta() {
        let s = span(
            trace_id(1),
            span_id(0x0102),
            None,
            "svc",
            "op",
            now_unix_nano(),
            1,
        );
        let q = cell_qualifier(&s);
        assert_eq!(&q[..8], &s.span_id.0);
        assert_eq!(i32::from(q[8]), s.kind.as_i32());
        assert_ne!(q.len(), META_QUALIFIER.len());
        assert_eq!(column(&q)[..2], *b"s:");
    }
}
