//! Embedded span store on fjall (an LSM-tree key-value engine), under `<data_dir>/spans`.
//!
//! # Layout
//!
//! fjall has no columns, so the row contract of `docs/design.md` ("Storage layout") is
//! mapped onto sorted keys: a row is every key that starts with the 16-byte trace id, and
//! a cell is one key inside that prefix.
//!
//! ```text
//! keyspace "day-<N>"   (one per UTC day of *ingest*, N = days since the unix epoch)
//!   trace_id(16) ++ 0x00                      → meta: v1 | span count u32 | bytes u64 | flags u8
//!   trace_id(16) ++ span_id(8) ++ kind(1)     → encoded span (clew_proto::encoding, version byte first)
//! keyspace "day-<N>-t"  (the same day, rows of every tenant but `default`)
//!   tenant(8) ++ trace_id(16) ++ 0x00         → meta: v2 | … as v1 … | tenant name
//!   tenant(8) ++ trace_id(16) ++ span_id(8) ++ kind(1) → encoded span
//! keyspace "day-<N>-r<D>", "day-<N>-r<D>-t"   (the same, for tenants of the retention
//!   class of D days; the two above are the default class, the global retention_days)
//! ```
//!
//! - **Tenants** (`docs/adr/0011-tenants.md`). A row key is `row_layout::RowKey`: the bare
//!   trace id for tenant `default` (the rows of before tenants), `sha256(tenant)[..8] ++
//!   trace id` for the others. Those live in their own keyspace per day, so a prefix scan
//!   of a 16-byte default row can never run into a 24-byte key of another tenant that
//!   happens to start with the same bytes; within `day-<N>-t` every row key has the same
//!   length. A read checks the tenant its meta names (`MetaTenant::allows`).
//!
//! - **Row read = one prefix scan.** The meta key is a prefix of every cell key whose span
//!   id starts with `0x00`, so it always sorts first in its row; rows of different traces
//!   never interleave.
//! - **Discriminator.** The byte after the span id is the span kind, so a client and a
//!   server span that share one span id (Zipkin-style shared spans) are two cells. Writing
//!   the same (trace id, span id, kind) again is a no-op: the cell is not rewritten and not
//!   counted again against the cap.
//! - **Meta cell.** Holds the per-trace span count, encoded bytes and the truncated flag,
//!   so the size cap costs one point read per trace per batch, not a row scan. It lives in
//!   the same bucket as the trace's cells and is written in the same atomic batch, so the
//!   two never disagree after a crash.
//! - **Retention by buckets.** A trace lives in the bucket of the day its first span was
//!   ingested, in its tenant's retention class (`crate::retention`); late spans go to the
//!   bucket that already holds the trace (found with bloom-filtered point reads of the
//!   meta key, newest bucket first, whatever its class), so a trace is one row in one
//!   bucket. `drop_expired` deletes whole keyspaces once their class's horizon passed: no
//!   tombstones, no compaction debt. A trace whose bucket expired and that receives more
//!   spans starts over in today's bucket.
//! - **Fetch by id, no time window.** For each live bucket (a handful: retention days + 1
//!   per class) a point read of the meta key, which the bloom filters answer without I/O
//!   when the trace is not there; then one prefix scan of the bucket that has it. Every
//!   class's buckets are read, so a tenant moved to another class between restarts still
//!   finds what it wrote before.
//!
//! # Durability and concurrency
//!
//! A write is one fjall batch (cells + metas) committed with `PersistMode::SyncData`
//! before `write_spans` returns. Which spans are stored is decided by the shared
//! `span_store::admission`; the shared adapter (`span_store::blocking`) serializes writers,
//! because the cap is a read-modify-write of the meta cell, and runs all blocking work
//! (including encoding) in `spawn_blocking`; reads never wait for writers. Every fjall
//! error becomes the retryable [`Error::Unavailable`]. See `docs/adr/0001-row-layout.md`.

use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};
use std::time::Instant;

use clew_proto::encoding::SharedDecoder;
use clew_proto::{Span, Tenant, TraceId};
use fjall::config::{BlockSizePolicy, CompressionPolicy};
use fjall::{CompressionType, Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::damage::{move_into, quarantine_dir, Damage};
use tracing::warn;

use super::config::EmbeddedStoreConfig;
use crate::metrics as m;
use crate::row_layout::{cell_suffix, Meta, RowKey, CELL_SUFFIX_LEN, ROW_KEY_MAX};
use crate::span_store::admission::{Admission, Caps, WriteOutcome};
use crate::span_store::blocking::{BlockingBackend, BlockingSpanStore, Retry};
use crate::{Common, Error, Result, RetentionClass, RetentionClasses, StoredTrace};

const BACKEND: &str = "embedded";
const NANOS_PER_DAY: u64 = 86_400 * 1_000_000_000;
const BUCKET_PREFIX: &str = "day-";

/// Suffix of the buckets holding the rows of tenants other than `default`.
const TENANTED_SUFFIX: &str = "-t";

/// The embedded span store. Cheap to share (`Arc` inside).
pub type FjallSpanStore = BlockingSpanStore<FjallRows>;

/// The blocking half of [`FjallSpanStore`]: the database and its day buckets.
pub struct FjallRows {
    db: Database,
    /// `<data_dir>/spans`, for messages.
    path: PathBuf,
    /// Live buckets, oldest first. Changed only by `write` and `drop_expired`, which the
    /// adapter never runs concurrently.
    buckets: RwLock<Vec<Bucket>>,
    caps: Caps,
    retention: RetentionClasses,
    /// Damaged journals quarantined at open.
    damage: Vec<Damage>,
    /// Keyspace "state": named blobs ([`SpanStore::put_state`]), never a day bucket, so
    /// retention leaves it alone (its owner expires what it holds).
    ///
    /// [`SpanStore::put_state`]: crate::SpanStore::put_state
    state: Keyspace,
}

/// The keyspace of the state blobs (not a `day-<N>` name, so never taken for a bucket).
const STATE_KEYSPACE: &str = "state";

#[derive(Clone)]
struct Bucket {
    day: u64,
    class: RetentionClass,
    /// Holds the rows of tenants other than `default` (`day-<N>-t`).
    tenanted: bool,
    keyspace: Keyspace,
}

/// A meta or cell key: row key, then `0x00` or the cell suffix.
#[derive(Clone, Copy)]
struct Key {
    buf: [u8; ROW_KEY_MAX + CELL_SUFFIX_LEN],
    len: usize,
}

impl AsRef<[u8]> for Key {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

fn key(row: &RowKey, suffix: &[u8]) -> Key {
    let row = row.as_bytes();
    let mut buf = [0u8; ROW_KEY_MAX + CELL_SUFFIX_LEN];
    buf[..row.len()].copy_from_slice(row);
    buf[row.len()..row.len() + suffix.len()].copy_from_slice(suffix);
    Key {
        buf,
        len: row.len() + suffix.len(),
    }
}

fn meta_key(row: &RowKey) -> Key {
    key(row, &[0])
}

fn cell_key(span: &Span) -> Key {
    key(&RowKey::of(span), &cell_suffix(span))
}

fn bucket_name(day: u64, class: RetentionClass, tenanted: bool) -> String {
    let suffix = if tenanted { TENANTED_SUFFIX } else { "" };
    match class.tag() {
        None => format!("{BUCKET_PREFIX}{day}{suffix}"),
        Some(tag) => format!("{BUCKET_PREFIX}{day}-{tag}{suffix}"),
    }
}

/// `(day, class, tenanted)` of a bucket name written by [`bucket_name`].
fn parse_bucket_name(name: &str) -> Option<(u64, RetentionClass, bool)> {
    let rest = name.strip_prefix(BUCKET_PREFIX)?;
    let (rest, tenanted) = match rest.strip_suffix(TENANTED_SUFFIX) {
        Some(rest) => (rest, true),
        None => (rest, false),
    };
    let (day, class) = match rest.split_once('-') {
        Some((day, tag)) => (day, RetentionClass::parse_tag(tag)?),
        None => (rest, RetentionClass::Default),
    };
    if !day.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((day.parse().ok()?, class, tenanted))
}

fn wall_clock_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn unavailable(context: &'static str) -> impl FnOnce(fjall::Error) -> Error {
    move |e| Error::unavailable(context, e)
}

/// Where a trace touched by the current batch lives.
struct TraceBucket {
    keyspace: Keyspace,
    /// Whether the trace had cells before this batch (only then can a cell already exist).
    existed: bool,
}

/// Options of every day bucket. Cells of one trace repeat resource and attribute keys, so
/// LZ4 on every level (fjall's default leaves L0 and L1 uncompressed) and 32 KiB blocks —
/// room for a whole typical trace row in one block — shrink the store several times over
/// for little CPU; trace reads touch one or two blocks either way.
fn bucket_options() -> KeyspaceCreateOptions {
    KeyspaceCreateOptions::default()
        .data_block_compression_policy(CompressionPolicy::all(CompressionType::Lz4))
        .data_block_size_policy(BlockSizePolicy::all(32 * 1024))
}

impl FjallSpanStore {
    /// Opens (or creates) the store under `<data_dir>/spans`.
    pub fn open(config: &EmbeddedStoreConfig, common: &Common) -> Result<Self> {
        let path: PathBuf = common.data_dir.join("spans");
        std::fs::create_dir_all(&path).map_err(|e| {
            Error::unavailable(
                "failed to create span store directory",
                format!("{}: {e}", path.display()),
            )
        })?;
        let open = || {
            Database::builder(&path)
                .cache_size(config.cache_mb.saturating_mul(1024 * 1024))
                .journal_compression(CompressionType::Lz4)
                .open()
        };
        let mut damage = Vec::new();
        let db = match open() {
            // a journal batch that fails its checksum before the tail: fjall refuses to open
            // (and would at every start); set the journals aside and open the rest
            Err(fjall::Error::JournalRecovery(why)) => {
                damage.push(quarantine_journals(&path, &common.data_dir, &why)?);
                open()
            }
            other => other,
        };
        let db = db.map_err(|e| match e {
            // fjall's own text is just `FjallError: Locked`
            fjall::Error::Locked => Error::unavailable(
                "failed to open span store",
                format!(
                    "data directory {} is in use by another clew process (lock held on {}); \
                         stop it or pass another --data-dir",
                    common.data_dir.display(),
                    path.join("lock").display()
                ),
            ),
            e => Error::unavailable(
                "failed to open span store",
                format!("{}: {e}", path.display()),
            ),
        })?;
        let mut buckets = Vec::new();
        for name in db.list_keyspace_names() {
            let Some((day, class, tenanted)) = parse_bucket_name(&name) else {
                continue;
            };
            let keyspace = db
                .keyspace(&name, bucket_options)
                .map_err(unavailable("failed to open span bucket"))?;
            buckets.push(Bucket {
                day,
                class,
                tenanted,
                keyspace,
            });
        }
        buckets.sort_by_key(|b| b.day);
        let state = db
            .keyspace(STATE_KEYSPACE, KeyspaceCreateOptions::default)
            .map_err(unavailable("failed to open the state keyspace"))?;
        Ok(BlockingSpanStore::new(FjallRows {
            db,
            path,
            state,
            buckets: RwLock::new(buckets),
            caps: Caps {
                max_spans_per_trace: config.max_spans_per_trace,
                max_bytes_per_trace: config.max_bytes_per_trace,
            },
            retention: common.retention.clone(),
            damage,
        }))
    }
}

/// Moves every journal (`*.jnl`) of the store in `path` to the quarantine after fjall
/// refused to recover them (`why`); what they held that was not yet flushed into tables
/// is lost for serving (kept in the quarantine).
fn quarantine_journals(
    path: &Path,
    data_dir: &Path,
    why: &fjall::JournalRecoveryError,
) -> Result<Damage> {
    let failed = |e: std::io::Error| {
        Error::unavailable(
            "failed to quarantine a damaged span store journal",
            format!("{}: {e}", path.display()),
        )
    };
    let to = quarantine_dir(data_dir, "store journal").map_err(failed)?;
    let mut moved = Vec::new();
    for entry in std::fs::read_dir(path).map_err(failed)? {
        let file = entry.map_err(failed)?.path();
        if file.extension().is_some_and(|e| e == "jnl") {
            move_into(&file, &to).map_err(failed)?;
            moved.push(
                file.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    moved.sort();
    Ok(Damage {
        part: "store journal",
        path: path.to_path_buf(),
        quarantined_to: to,
        detail: format!(
            "journal recovery failed ({why:?}); journals {} set aside: the spans they held \
             that were not yet flushed to tables are no longer served",
            moved.join(", ")
        ),
    }
    .report())
}

impl FjallRows {
    fn live_buckets(&self) -> Vec<Bucket> {
        self.buckets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The bucket for `day`, `class` and the tenants of `tenanted`, created if needed.
    /// Called by `write` only.
    fn bucket_for_day(&self, day: u64, class: RetentionClass, tenanted: bool) -> Result<Keyspace> {
        if let Some(b) = self
            .buckets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .rev()
            .find(|b| b.day == day && b.class == class && b.tenanted == tenanted)
        {
            return Ok(b.keyspace.clone());
        }
        let keyspace = self
            .db
            .keyspace(&bucket_name(day, class, tenanted), bucket_options)
            .map_err(unavailable("failed to create span bucket"))?;
        let mut buckets = self.buckets.write().unwrap_or_else(PoisonError::into_inner);
        buckets.push(Bucket {
            day,
            class,
            tenanted,
            keyspace: keyspace.clone(),
        });
        buckets.sort_by_key(|b| b.day);
        Ok(keyspace)
    }

    /// Finds the bucket already holding row `row` of `tenant` (newest first) and its meta.
    fn find_trace(
        &self,
        buckets: &[Bucket],
        tenant: &Tenant,
        row: &RowKey,
    ) -> Result<Option<(Keyspace, Meta)>> {
        let key = meta_key(row);
        let trace = row.trace_id();
        let tenanted = !tenant.is_default();
        for bucket in buckets.iter().rev().filter(|b| b.tenanted == tenanted) {
            let Some(raw) = bucket
                .keyspace
                .get(key)
                .map_err(unavailable("failed to read trace meta"))?
            else {
                continue;
            };
            let meta = match Meta::decode(&raw) {
                Some(meta) => meta,
                None => {
                    warn!(trace_id = %trace, "corrupt trace meta cell, recounting the row");
                    recount_row(&bucket.keyspace, row)?
                }
            };
            return Ok(Some((bucket.keyspace.clone(), meta)));
        }
        Ok(None)
    }

    fn write_batch(&self, spans: &[Span]) -> Result<WriteOutcome> {
        if spans.is_empty() {
            return Ok(WriteOutcome::default());
        }
        let buckets = self.live_buckets();
        let today = wall_clock_nanos() / NANOS_PER_DAY;
        // today's buckets, by class and whether they hold tenant `default`'s rows
        let mut today_buckets: Vec<((RetentionClass, bool), Keyspace)> = Vec::new();
        let mut admission = Admission::new(self.caps);
        // By admission slot.
        let mut traces: Vec<TraceBucket> = Vec::new();
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncData));

        for (index, span) in spans.iter().enumerate() {
            let row = RowKey::of(span);
            let slot = match admission.slot(&row) {
                Some(slot) => slot,
                None => {
                    let (bucket, meta) = match self.find_trace(&buckets, &span.tenant, &row)? {
                        Some((keyspace, meta)) => (
                            TraceBucket {
                                keyspace,
                                existed: true,
                            },
                            Some(meta),
                        ),
                        None => {
                            let which = (
                                self.retention.class_of(&span.tenant),
                                !span.tenant.is_default(),
                            );
                            let keyspace = match today_buckets.iter().find(|(w, _)| *w == which) {
                                Some((_, k)) => k.clone(),
                                None => {
                                    let k = self.bucket_for_day(today, which.0, which.1)?;
                                    today_buckets.push((which, k.clone()));
                                    k
                                }
                            };
                            let bucket = TraceBucket {
                                keyspace,
                                existed: false,
                            };
                            (bucket, None)
                        }
                    };
                    traces.push(bucket);
                    admission.add_trace(row, &span.tenant, meta)
                }
            };
            let bucket = &traces[slot];
            let key = cell_key(span);
            let exists = || {
                Ok(bucket.existed
                    && bucket
                        .keyspace
                        .contains_key(key)
                        .map_err(unavailable("failed to read span cell"))?)
            };
            if let Some(encoded) = admission.admit(index, span, slot, exists)? {
                batch.insert(&bucket.keyspace, key.as_ref(), encoded);
            }
        }

        for (slot, row, _, cell) in admission.changed_metas() {
            batch.insert(&traces[slot].keyspace, meta_key(&row).as_ref(), cell);
        }
        batch
            .commit()
            .map_err(unavailable("failed to write spans durably"))?;
        Ok(admission.finish())
    }

    /// Reads one whole trace of `tenant` from every bucket that has its meta (normally
    /// exactly one).
    fn read_trace(
        &self,
        buckets: &[Bucket],
        tenant: &Tenant,
        trace: TraceId,
        corrupt: &mut u64,
    ) -> Result<Option<StoredTrace>> {
        let row = RowKey::new(tenant, &trace);
        let mkey = meta_key(&row);
        let cell_key_len = row.as_bytes().len() + CELL_SUFFIX_LEN;
        let tenanted = !tenant.is_default();
        let mut found: Option<StoredTrace> = None;
        let mut decoder = SharedDecoder::default();
        for bucket in buckets.iter().rev().filter(|b| b.tenanted == tenanted) {
            let Some(raw) = bucket
                .keyspace
                .get(mkey)
                .map_err(unavailable("failed to read trace meta"))?
            else {
                continue;
            };
            if !Meta::tenant_of(&raw).allows(tenant) {
                return Err(Error::unavailable(
                    "failed to read trace",
                    format!(
                        "row of trace {trace} names another tenant than {tenant} (a tenant key \
                         prefix collision); not served"
                    ),
                ));
            }
            let truncated = match Meta::decode(&raw) {
                Some(meta) => meta.truncated,
                None => {
                    warn!(trace_id = %trace, "corrupt trace meta cell, reading the row anyway");
                    *corrupt += 1;
                    false
                }
            };
            let stored = found.get_or_insert_with(|| StoredTrace {
                trace_id: trace,
                spans: Vec::new(),
                truncated: false,
            });
            stored.truncated |= truncated;
            for item in bucket.keyspace.prefix(row.as_bytes()) {
                let (key, value) = item
                    .into_inner()
                    .map_err(unavailable("failed to read trace row"))?;
                if key.len() == mkey.len {
                    continue;
                }
                if key.len() != cell_key_len {
                    warn!(trace_id = %trace, key_len = key.len(), "unexpected key in trace row, skipped");
                    *corrupt += 1;
                    continue;
                }
                match decoder.decode(&value) {
                    Ok(mut span) => {
                        span.tenant = tenant.clone();
                        stored.spans.push(span)
                    }
                    Err(error) => {
                        warn!(%error, trace_id = %trace, "undecodable span cell, skipped");
                        *corrupt += 1;
                    }
                }
            }
        }
        Ok(found)
    }

    fn read_batch(&self, tenant: &Tenant, ids: &[TraceId]) -> Result<Vec<StoredTrace>> {
        let buckets = self.live_buckets();
        let mut out = Vec::with_capacity(ids.len());
        let mut corrupt = 0;
        let result = ids.iter().try_for_each(|id| {
            let started = Instant::now();
            let trace = self.read_trace(&buckets, tenant, *id, &mut corrupt)?;
            metrics::histogram!(m::STORE_READ_SECONDS, "backend" => BACKEND)
                .record(started.elapsed().as_secs_f64());
            out.extend(trace);
            Ok::<_, Error>(())
        });
        if corrupt > 0 {
            metrics::counter!(m::STORE_CORRUPT_CELLS_TOTAL, "backend" => BACKEND)
                .increment(corrupt);
        }
        result.map(|()| out)
    }

    fn drop_expired_buckets(&self, now_unix_nano: u64) -> Result<u64> {
        // A bucket holds data ingested before the end of its day; it expires once that end
        // is more than its class's retention before `now`.
        let expired: Vec<Bucket> = self
            .live_buckets()
            .into_iter()
            .filter(|b| b.day < u64::from(self.retention.first_kept_day(b.class, now_unix_nano)))
            .collect();
        let mut dropped = 0;
        for bucket in expired {
            self.db
                .delete_keyspace(bucket.keyspace)
                .map_err(unavailable("failed to drop expired span bucket"))?;
            self.buckets
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|b| {
                    (b.day, b.class, b.tenanted) != (bucket.day, bucket.class, bucket.tenanted)
                });
            dropped += 1;
        }
        Ok(dropped)
    }
}

/// Rebuilds a meta from the row itself (only when the stored meta is unreadable).
fn recount_row(keyspace: &Keyspace, row: &RowKey) -> Result<Meta> {
    let mut meta = Meta::default();
    for item in keyspace.prefix(row.as_bytes()) {
        let (key, value) = item
            .into_inner()
            .map_err(unavailable("failed to read trace row"))?;
        if key.len() == row.as_bytes().len() + CELL_SUFFIX_LEN {
            meta.spans += 1;
            meta.bytes += value.len() as u64;
        }
    }
    Ok(meta)
}

impl BlockingBackend for FjallRows {
    const NAME: &'static str = BACKEND;
    const RETRY: Retry = Retry::NEVER;

    fn write(&self, spans: &[Span]) -> Result<WriteOutcome> {
        self.write_batch(spans)
    }

    fn read_traces(&self, tenant: &Tenant, ids: &[TraceId]) -> Result<Vec<StoredTrace>> {
        self.read_batch(tenant, ids)
    }

    fn drop_expired(&self, now_unix_nano: u64) -> Result<u64> {
        self.drop_expired_buckets(now_unix_nano)
    }

    fn close(&self) -> Result<()> {
        self.db
            .persist(PersistMode::SyncAll)
            .map_err(unavailable("failed to persist span store"))
    }

    /// Not ready once fjall has poisoned itself (a journal write or fsync failed: disk full,
    /// I/O error); every write would fail until the process restarts and recovers.
    fn ready(&self) -> Result<()> {
        self.db
            .persist(PersistMode::Buffer)
            .map_err(unavailable("span store is not writable"))
    }

    /// fjall poisons itself when a journal write or fsync fails (disk full, I/O error)
    /// and refuses every later write, even once space is back: only reopening recovers
    /// (from the journal, losing nothing acknowledged).
    fn broken(&self) -> Option<String> {
        match self.db.persist(PersistMode::Buffer) {
            Err(fjall::Error::Poisoned) => Some(format!(
                "the span store in {} refuses every write since one failed (disk full or an \
                 I/O error; see the log); a restart recovers it from its journal",
                self.path.display()
            )),
            _ => None,
        }
    }

    fn damage(&self) -> Vec<Damage> {
        self.damage.clone()
    }

    fn put_state(&self, name: &str, value: &[u8]) -> Result<()> {
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncData));
        batch.insert(&self.state, name, value);
        batch
            .commit()
            .map_err(unavailable("failed to write a state blob durably"))
    }

    fn get_state(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.state
            .get(name)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(unavailable("failed to read a state blob"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clew_proto::SpanKind;

    #[test]
    fn meta_key_sorts_before_every_cell_of_its_row() {
        let trace = TraceId([5; 16]);
        let mut span = crate::conformance::fixtures::span(
            trace,
            clew_proto::SpanId([0, 0, 0, 0, 0, 0, 0, 1]),
            None,
            "s",
            "n",
            1,
            1,
        );
        span.kind = SpanKind::Unspecified;
        let cell = cell_key(&span);
        let row = RowKey::of(&span);
        assert!(meta_key(&row).as_ref() < cell.as_ref());
        assert!(cell.as_ref().starts_with(&trace.0));
        span.tenant = Tenant::parse("shop").unwrap();
        let (cell, row) = (cell_key(&span), RowKey::of(&span));
        assert!(meta_key(&row).as_ref() < cell.as_ref());
        assert_eq!(cell.as_ref().len(), 33);
        assert!(cell.as_ref().starts_with(row.as_bytes()));
    }

    #[test]
    fn client_and_server_spans_sharing_an_id_get_distinct_cells() {
        let trace = TraceId([5; 16]);
        let mut a = crate::conformance::fixtures::span(
            trace,
            clew_proto::SpanId([3; 8]),
            None,
            "s",
            "n",
            1,
            1,
        );
        let mut b = a.clone();
        a.kind = SpanKind::Client;
        b.kind = SpanKind::Server;
        assert_ne!(cell_key(&a).as_ref(), cell_key(&b).as_ref());
        assert_eq!(
            crate::row_layout::discriminator(SpanKind::Unknown(77)),
            0xff
        );
    }

    #[test]
    fn bucket_names_round_trip() {
        use RetentionClass::{Days, Default};
        for class in [Default, Days(1), Days(30)] {
            for tenanted in [false, true] {
                assert_eq!(
                    parse_bucket_name(&bucket_name(19_675, class, tenanted)),
                    Some((19_675, class, tenanted))
                );
            }
        }
        assert_eq!(
            bucket_name(19_675, Default, false),
            "day-19675",
            "the name of before tenants"
        );
        assert_eq!(bucket_name(19_675, Default, true), "day-19675-t");
        assert_eq!(bucket_name(19_675, Days(30), false), "day-19675-r30");
        assert_eq!(bucket_name(19_675, Days(30), true), "day-19675-r30-t");
        for other in [
            "other",
            "day-x",
            "day--t",
            "day-1-r0",
            "day-1-x-t",
            "day-+1",
            "state",
        ] {
            assert_eq!(parse_bucket_name(other), None, "{other}");
        }
    }
}
