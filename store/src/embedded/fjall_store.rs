//! Embedded span store on fjall (an LSM-tree key-value engine), under `<data_dir>/spans`.
//!
//! # Layout
//!
//! fjall has no columns, so the row contract of `docs/design.md` ("Storage layout") is
//! mapped onto sorted keys. A *bucket* (one UTC day of ingest, one retention class, the
//! rows of tenant `default` or of every other tenant) is two keyspaces, one whose keys are
//! ordered by ingest time (the cells) and one keyed by row (the metas):
//!
//! ```text
//! keyspace "day-<N>.cells"   (N = days since the unix epoch of the ingest)
//!   stamp(8) ++ row key ++ span_id(8) ++ kind(1)  → encoded span (clew_proto::encoding, version byte first)
//! keyspace "day-<N>.metas"
//!   row key ++ 0x00                               → meta: v1 | span count u32 | bytes u64 | flags u8
//!                                                   (v2 | … as v1 … | tenant name, for other tenants)
//!   row key ++ 0x01 ++ stamp(8)                   → empty: the row has cells under this stamp
//! keyspaces "day-<N>-t.*"        the same day, rows of every tenant but `default`
//! keyspaces "day-<N>-r<D>[-t].*" the same, for tenants of the retention class of D days
//!   (the two above are the default class, the global retention_days)
//! ```
//!
//! - **Stamp.** Every write batch takes one *stamp*: its wall-clock time in nanoseconds,
//!   u64 big-endian, raised to one past the previous batch's if the clock did not move on
//!   (and, at open, past the newest stamp on disk). Batches are committed one at a time,
//!   so every batch's cells sort after every cell already stored: a memtable flushed to
//!   disk never overlaps the tables below it, and fjall's leveled compaction *moves* such
//!   tables down (a manifest change) instead of merging and rewriting them. Before, cells
//!   were keyed by the random trace id, every flushed table overlapped all the others and
//!   compaction rewrote the data again and again (`docs/adr/0001-row-layout.md`).
//! - **Metas** stay keyed by row: the meta cell (counts, truncated flag, tenant) and one
//!   empty *stamp entry* per batch that stored cells of the row, written blind (no list is
//!   read and rewritten). They are small (one meta per trace, one entry per batch of it), so
//!   their random keys cost little compaction.
//! - **Tenants** (`docs/adr/0011-tenants.md`). A row key is `row_layout::RowKey`: the bare
//!   trace id for tenant `default` (the rows of before tenants), `sha256(tenant)[..8] ++
//!   trace id` for the others. Those live in their own buckets, so within a keyspace every
//!   row key has the same length and a prefix of one row can never take in a key of
//!   another. A read checks the tenant its meta names (`MetaTenant::allows`).
//! - **Row read.** A point read of the meta (bloom-filtered), a prefix scan of the metas
//!   for the row's stamps, then one prefix scan `stamp ++ row key` of the cells per stamp
//!   (normally one: a trace usually arrives in one batch, a few when its spans trickle in).
//! - **Discriminator.** The byte after the span id is the span kind, so a client and a
//!   server span that share one span id (Zipkin-style shared spans) are two cells. Writing
//!   the same (trace id, span id, kind) again is a no-op: a trace that was stored before
//!   the batch is looked up under each of its stamps (bloom-filtered point reads), and a
//!   cell found is not rewritten and not counted again against the cap.
//! - **Meta cell.** Holds the per-trace span count, encoded bytes and the truncated flag,
//!   so the size cap costs one point read per trace per batch, not a row scan. It lives in
//!   the same bucket as the trace's cells and is written in the same atomic batch (fjall
//!   batches are atomic across the keyspaces of a database), with the stamp entry, so
//!   metas, stamp entries and cells never disagree after a crash.
//! - **Retention by buckets.** A trace lives in the bucket of the day its first span was
//!   ingested, in its tenant's retention class (`crate::retention`); late spans go to the
//!   bucket that already holds the trace (found with bloom-filtered point reads of the
//!   meta key, newest bucket first, whatever its class), so a trace is one row in one
//!   bucket. `drop_expired` deletes whole buckets (both keyspaces, the metas first) once
//!   their class's horizon passed: no tombstones, no compaction debt. A trace whose bucket
//!   expired and that receives more spans starts over in today's bucket.
//! - **Fetch by id, no time window.** For each live bucket (a handful: retention days + 1
//!   per class) a point read of the meta key, which the bloom filters answer without I/O
//!   when the trace is not there; then the row read above in the bucket that has it.
//!   Every class's buckets are read, so a tenant moved to another class between restarts
//!   still finds what it wrote before.
//!
//! # Buckets of before time-keyed cells
//!
//! Stores written before this layout have *row buckets*: one keyspace `day-<N>[-r<D>][-t]`
//! (no `.cells`/`.metas` marker) holding `row key ++ 0x00 → meta` and `row key ++ span_id
//! ++ kind → span`, a row being one prefix scan. They are read as before and stay
//! writable: a late span of a trace that lives in one joins its row there, in that layout
//! (so a trace stays one row in one bucket and a re-delivered span is found where it is).
//! New traces always start in a time-keyed bucket; row buckets go once their retention
//! passed.
//!
//! # Durability and concurrency
//!
//! A write is one fjall batch (cells + metas + stamp entries) committed with
//! `PersistMode::SyncData` before `write_spans` returns. Which spans are stored is decided
//! by the shared `span_store::admission`; the shared adapter (`span_store::blocking`)
//! serializes writers, because the cap is a read-modify-write of the meta cell (and the
//! stamps must follow commit order), and runs all blocking work (including encoding) in
//! `spawn_blocking`; reads never wait for writers. Every fjall error becomes the retryable
//! [`Error::Unavailable`]. See `docs/adr/0001-row-layout.md`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
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

/// Marker ending the name of a time-keyed bucket's cells keyspace. A name without a marker
/// is a row bucket (the layout of before); clew versions of before skip marked names
/// (they do not parse as a bucket name).
const CELLS_MARKER: &str = ".cells";
/// Marker ending the name of a time-keyed bucket's metas keyspace.
const METAS_MARKER: &str = ".metas";

/// Length of a batch's stamp, the first bytes of every time-keyed cell key.
const STAMP_LEN: usize = 8;
/// The byte after the row key of a meta cell.
const META_TAG: u8 = 0x00;
/// The byte after the row key of a stamp entry (time-keyed metas keyspace only).
const STAMP_TAG: u8 = 0x01;

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
    /// The stamp of the last write batch (or the newest on disk at open); the next one is
    /// above it. Used by `write` only.
    last_stamp: AtomicU64,
    /// Wall-clock second of the last [`FjallRows::report_gauges`].
    gauges_reported: AtomicU64,
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

/// How a bucket keeps its rows.
#[derive(Clone)]
enum Layout {
    /// One keyspace (the layout of before time-keyed cells): meta and cells under the row
    /// key, a row is one prefix scan.
    Rows(Keyspace),
    /// Cells under `stamp ++ row key ++ suffix`, metas and stamp entries under the row key.
    TimeKeyed { cells: Keyspace, metas: Keyspace },
}

#[derive(Clone)]
struct Bucket {
    day: u64,
    class: RetentionClass,
    /// Holds the rows of tenants other than `default` (`day-<N>-t…`).
    tenanted: bool,
    layout: Layout,
}

impl Bucket {
    /// The keyspace holding the bucket's meta cells.
    fn metas(&self) -> &Keyspace {
        match &self.layout {
            Layout::Rows(rows) => rows,
            Layout::TimeKeyed { metas, .. } => metas,
        }
    }

    fn is_time_keyed(&self) -> bool {
        matches!(self.layout, Layout::TimeKeyed { .. })
    }

    /// Whether `other` is this bucket (a row bucket and a time-keyed bucket of the same
    /// day, class and tenants are two buckets).
    fn is(&self, other: &Bucket) -> bool {
        (self.day, self.class, self.tenanted, self.is_time_keyed())
            == (
                other.day,
                other.class,
                other.tenanted,
                other.is_time_keyed(),
            )
    }
}

/// The longest key: stamp, row key, cell suffix.
const KEY_MAX: usize = STAMP_LEN + ROW_KEY_MAX + CELL_SUFFIX_LEN;

/// A key of a bucket, built from parts without allocating.
#[derive(Clone, Copy)]
struct Key {
    buf: [u8; KEY_MAX],
    len: usize,
}

impl Key {
    fn of(parts: &[&[u8]]) -> Key {
        let mut buf = [0u8; KEY_MAX];
        let mut len = 0;
        for part in parts {
            buf[len..len + part.len()].copy_from_slice(part);
            len += part.len();
        }
        Key { buf, len }
    }
}

impl AsRef<[u8]> for Key {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The meta cell's key: row key, then `0x00` (both layouts).
fn meta_key(row: &RowKey) -> Key {
    Key::of(&[row.as_bytes(), &[META_TAG]])
}

/// A row bucket's cell key: row key, then the cell suffix.
fn row_cell_key(row: &RowKey, suffix: &[u8]) -> Key {
    Key::of(&[row.as_bytes(), suffix])
}

/// `span`'s cell key in a row bucket.
#[cfg(test)]
fn cell_key(span: &Span) -> Key {
    row_cell_key(&RowKey::of(span), &cell_suffix(span))
}

/// A time-keyed cell key: stamp, row key, cell suffix.
fn timed_cell_key(stamp: &[u8; STAMP_LEN], row: &RowKey, suffix: &[u8]) -> Key {
    Key::of(&[stamp, row.as_bytes(), suffix])
}

/// The prefix of every time-keyed cell of `row` written under `stamp`.
fn timed_row_prefix(stamp: &[u8; STAMP_LEN], row: &RowKey) -> Key {
    Key::of(&[stamp, row.as_bytes()])
}

/// The stamp entry of `row` for `stamp` (time-keyed metas keyspace).
fn stamp_key(row: &RowKey, stamp: &[u8; STAMP_LEN]) -> Key {
    Key::of(&[row.as_bytes(), &[STAMP_TAG], stamp])
}

/// The prefix of every stamp entry of `row`.
fn stamps_prefix(row: &RowKey) -> Key {
    Key::of(&[row.as_bytes(), &[STAMP_TAG]])
}

/// The name of a row bucket, and the base of a time-keyed bucket's two names.
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

/// Which keyspace of a bucket a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// A row bucket's one keyspace.
    Rows,
    Cells,
    Metas,
}

fn keyspace_name(day: u64, class: RetentionClass, tenanted: bool, part: Part) -> String {
    let marker = match part {
        Part::Rows => "",
        Part::Cells => CELLS_MARKER,
        Part::Metas => METAS_MARKER,
    };
    format!("{}{marker}", bucket_name(day, class, tenanted))
}

/// `(day, class, tenanted, part)` of a keyspace name written by [`keyspace_name`].
fn parse_keyspace_name(name: &str) -> Option<(u64, RetentionClass, bool, Part)> {
    let (base, part) = if let Some(base) = name.strip_suffix(CELLS_MARKER) {
        (base, Part::Cells)
    } else if let Some(base) = name.strip_suffix(METAS_MARKER) {
        (base, Part::Metas)
    } else {
        (name, Part::Rows)
    };
    let (day, class, tenanted) = parse_bucket_name(base)?;
    Some((day, class, tenanted, part))
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
    bucket: Bucket,
    /// Whether the trace had cells before this batch (only then can a cell already exist).
    existed: bool,
    /// Time-keyed bucket, trace stored before: the stamps under which it has cells.
    stamps: Vec<[u8; STAMP_LEN]>,
    /// Time-keyed bucket: this batch stores cells of the trace (under its stamp).
    stores_cells: bool,
}

impl TraceBucket {
    /// Whether the cell `suffix` of `row` is already stored: one bloom-filtered point read
    /// per stamp the row has (row bucket: one).
    fn cell_exists(&self, row: &RowKey, suffix: &[u8]) -> Result<bool> {
        if !self.existed {
            return Ok(false);
        }
        match &self.bucket.layout {
            Layout::Rows(rows) => rows
                .contains_key(row_cell_key(row, suffix))
                .map_err(unavailable("failed to read span cell")),
            Layout::TimeKeyed { cells, .. } => {
                for stamp in &self.stamps {
                    if cells
                        .contains_key(timed_cell_key(stamp, row, suffix))
                        .map_err(unavailable("failed to read span cell"))?
                    {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
        }
    }
}

/// Options of the cells keyspace of every bucket (and of a row bucket). Cells of one trace
/// repeat resource and attribute keys, so LZ4 on every level (fjall's default leaves L0 and
/// L1 uncompressed) and 32 KiB blocks — room for a whole typical trace row in one block —
/// shrink the store several times over for little CPU; trace reads touch one or two blocks
/// either way.
fn bucket_options() -> KeyspaceCreateOptions {
    KeyspaceCreateOptions::default()
        .data_block_compression_policy(CompressionPolicy::all(CompressionType::Lz4))
        .data_block_size_policy(BlockSizePolicy::all(32 * 1024))
}

/// Options of a time-keyed bucket's metas: small random-keyed values read by point reads,
/// so fjall's default (small) blocks, LZ4 on every level.
///
/// A 4 MiB memtable, not fjall's 64 MiB: the metas take ~5 % of the bytes the cells take,
/// and a journal is only deleted once every keyspace with writes in it has flushed them.
/// With the default the metas would flush once per ~20 cell flushes, pinning every journal
/// in between (up to fjall's 512 MiB journal limit) on disk; at 4 MiB they flush about as
/// often as the cells.
fn metas_options() -> KeyspaceCreateOptions {
    KeyspaceCreateOptions::default()
        .data_block_compression_policy(CompressionPolicy::all(CompressionType::Lz4))
        .max_memtable_size(METAS_MEMTABLE_BYTES)
}

/// Memtable size of a time-keyed bucket's metas (see [`metas_options`]).
const METAS_MEMTABLE_BYTES: u64 = 4 * 1024 * 1024;

/// Opens (or creates) the two keyspaces of a time-keyed bucket.
fn open_time_keyed(
    db: &Database,
    day: u64,
    class: RetentionClass,
    tenanted: bool,
) -> Result<Bucket> {
    let cells = db
        .keyspace(
            &keyspace_name(day, class, tenanted, Part::Cells),
            bucket_options,
        )
        .map_err(unavailable("failed to open span bucket"))?;
    let metas = db
        .keyspace(
            &keyspace_name(day, class, tenanted, Part::Metas),
            metas_options,
        )
        .map_err(unavailable("failed to open span bucket"))?;
    Ok(Bucket {
        day,
        class,
        tenanted,
        layout: Layout::TimeKeyed { cells, metas },
    })
}

/// The newest stamp of a cells keyspace (its last key's first bytes), 0 when empty.
fn newest_stamp(cells: &Keyspace) -> Result<u64> {
    let Some(last) = cells.last_key_value() else {
        return Ok(0);
    };
    let key = last
        .key()
        .map_err(unavailable("failed to read the newest span cell"))?;
    Ok(key
        .get(..STAMP_LEN)
        .and_then(|s| <[u8; STAMP_LEN]>::try_from(s).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0))
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
                .worker_threads(config.background_threads)
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
        // time-keyed buckets by one of their two keyspaces: a crash between creating (or
        // dropping) the two leaves one, and the other is created again (empty)
        let mut time_keyed: Vec<(u64, RetentionClass, bool)> = Vec::new();
        for name in db.list_keyspace_names() {
            match parse_keyspace_name(&name) {
                Some((day, class, tenanted, Part::Rows)) => {
                    let rows = db
                        .keyspace(&name, bucket_options)
                        .map_err(unavailable("failed to open span bucket"))?;
                    buckets.push(Bucket {
                        day,
                        class,
                        tenanted,
                        layout: Layout::Rows(rows),
                    });
                }
                Some((day, class, tenanted, Part::Cells | Part::Metas))
                    if !time_keyed.contains(&(day, class, tenanted)) =>
                {
                    time_keyed.push((day, class, tenanted));
                }
                // not a bucket, or the other half of a time-keyed bucket already seen
                _ => {}
            }
        }
        let mut last_stamp = 0;
        for (day, class, tenanted) in time_keyed {
            let bucket = open_time_keyed(&db, day, class, tenanted)?;
            if let Layout::TimeKeyed { cells, .. } = &bucket.layout {
                last_stamp = last_stamp.max(newest_stamp(cells)?);
            }
            buckets.push(bucket);
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
            last_stamp: AtomicU64::new(last_stamp),
            gauges_reported: AtomicU64::new(0),
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

    /// The time-keyed bucket for `day`, `class` and the tenants of `tenanted`, created if
    /// needed (new traces never start in a row bucket). Called by `write` only.
    fn bucket_for_day(&self, day: u64, class: RetentionClass, tenanted: bool) -> Result<Bucket> {
        if let Some(b) = self
            .buckets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .rev()
            .find(|b| {
                b.is_time_keyed() && b.day == day && b.class == class && b.tenanted == tenanted
            })
        {
            return Ok(b.clone());
        }
        let bucket = open_time_keyed(&self.db, day, class, tenanted)?;
        let mut buckets = self.buckets.write().unwrap_or_else(PoisonError::into_inner);
        buckets.push(bucket.clone());
        buckets.sort_by_key(|b| b.day);
        Ok(bucket)
    }

    /// The stamp of the next write batch: now, or one past the last stamp if the clock did
    /// not move on (or went back). Called by `write` only.
    fn next_stamp(&self) -> [u8; STAMP_LEN] {
        let stamp = wall_clock_nanos().max(self.last_stamp.load(Ordering::Relaxed) + 1);
        self.last_stamp.store(stamp, Ordering::Relaxed);
        stamp.to_be_bytes()
    }

    /// Finds the bucket already holding row `row` of `tenant` (newest first) and its meta.
    fn find_trace(
        &self,
        buckets: &[Bucket],
        tenant: &Tenant,
        row: &RowKey,
    ) -> Result<Option<(Bucket, Meta)>> {
        let key = meta_key(row);
        let trace = row.trace_id();
        let tenanted = !tenant.is_default();
        for bucket in buckets.iter().rev().filter(|b| b.tenanted == tenanted) {
            let Some(raw) = bucket
                .metas()
                .get(key)
                .map_err(unavailable("failed to read trace meta"))?
            else {
                continue;
            };
            let meta = match Meta::decode(&raw) {
                Some(meta) => meta,
                None => {
                    warn!(trace_id = %trace, "corrupt trace meta cell, recounting the row");
                    recount_row(bucket, row)?
                }
            };
            return Ok(Some((bucket.clone(), meta)));
        }
        Ok(None)
    }

    fn write_batch(&self, spans: &[Span]) -> Result<WriteOutcome> {
        if spans.is_empty() {
            return Ok(WriteOutcome::default());
        }
        let buckets = self.live_buckets();
        let today = wall_clock_nanos() / NANOS_PER_DAY;
        let stamp = self.next_stamp();
        // today's buckets, by class and whether they hold tenant `default`'s rows
        let mut today_buckets: Vec<((RetentionClass, bool), Bucket)> = Vec::new();
        let mut admission = Admission::new(self.caps);
        // By admission slot.
        let mut traces: Vec<TraceBucket> = Vec::new();
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncData));

        for (index, span) in spans.iter().enumerate() {
            let row = RowKey::of(span);
            let slot = match admission.slot(&row) {
                Some(slot) => slot,
                None => {
                    let (trace, meta) = match self.find_trace(&buckets, &span.tenant, &row)? {
                        Some((bucket, meta)) => {
                            let stamps = match &bucket.layout {
                                Layout::TimeKeyed { metas, .. } => row_stamps(metas, &row, &mut 0)?,
                                Layout::Rows(_) => Vec::new(),
                            };
                            let trace = TraceBucket {
                                bucket,
                                existed: true,
                                stamps,
                                stores_cells: false,
                            };
                            (trace, Some(meta))
                        }
                        None => {
                            let which = (
                                self.retention.class_of(&span.tenant),
                                !span.tenant.is_default(),
                            );
                            let bucket = match today_buckets.iter().find(|(w, _)| *w == which) {
                                Some((_, b)) => b.clone(),
                                None => {
                                    let b = self.bucket_for_day(today, which.0, which.1)?;
                                    today_buckets.push((which, b.clone()));
                                    b
                                }
                            };
                            let trace = TraceBucket {
                                bucket,
                                existed: false,
                                stamps: Vec::new(),
                                stores_cells: false,
                            };
                            (trace, None)
                        }
                    };
                    traces.push(trace);
                    admission.add_trace(row, &span.tenant, meta)
                }
            };
            let trace = &traces[slot];
            let suffix = cell_suffix(span);
            let exists = || trace.cell_exists(&row, &suffix);
            let Some(encoded) = admission.admit(index, span, slot, exists)? else {
                continue;
            };
            match &trace.bucket.layout {
                Layout::Rows(rows) => {
                    batch.insert(rows, row_cell_key(&row, &suffix).as_ref(), encoded);
                }
                Layout::TimeKeyed { cells, .. } => {
                    batch.insert(
                        cells,
                        timed_cell_key(&stamp, &row, &suffix).as_ref(),
                        encoded,
                    );
                    traces[slot].stores_cells = true;
                }
            }
        }

        for (slot, row, _, cell) in admission.changed_metas() {
            let trace = &traces[slot];
            batch.insert(trace.bucket.metas(), meta_key(&row).as_ref(), cell);
            // a row's cells are stored only together with its meta (the count changes)
            if trace.stores_cells {
                let entry = stamp_key(&row, &stamp);
                batch.insert(trace.bucket.metas(), entry.as_ref(), Vec::<u8>::new());
            }
        }
        batch
            .commit()
            .map_err(unavailable("failed to write spans durably"))?;
        self.report_gauges();
        Ok(admission.finish())
    }

    /// Sets the gauges of fjall's memory and journals, at most once a second (from the
    /// write path: they only change with writes and the flushes those start).
    fn report_gauges(&self) {
        let now = wall_clock_nanos() / 1_000_000_000;
        let last = self.gauges_reported.load(Ordering::Relaxed);
        if now == last
            || self
                .gauges_reported
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        metrics::gauge!(m::STORE_CACHE_BYTES, "backend" => "embedded")
            .set(self.db.cache_size() as f64);
        metrics::gauge!(m::STORE_MEMTABLE_BYTES, "backend" => "embedded")
            .set(self.db.write_buffer_size() as f64);
        metrics::gauge!(m::STORE_JOURNALS, "backend" => "embedded")
            .set(self.db.journal_count() as f64);
        metrics::gauge!(m::STORE_FLUSHES_QUEUED, "backend" => "embedded")
            .set(self.db.outstanding_flushes() as f64);
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
        let row_len = row.as_bytes().len();
        let tenanted = !tenant.is_default();
        let mut found: Option<StoredTrace> = None;
        let mut decoder = SharedDecoder::default();
        for bucket in buckets.iter().rev().filter(|b| b.tenanted == tenanted) {
            let Some(raw) = bucket
                .metas()
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
            let mut cell = |key: &[u8], value: &[u8], want_len: usize| {
                if key.len() != want_len {
                    warn!(trace_id = %trace, key_len = key.len(), "unexpected key in trace row, skipped");
                    *corrupt += 1;
                    return;
                }
                match decoder.decode(value) {
                    Ok(mut span) => {
                        span.tenant = tenant.clone();
                        stored.spans.push(span)
                    }
                    Err(error) => {
                        warn!(%error, trace_id = %trace, "undecodable span cell, skipped");
                        *corrupt += 1;
                    }
                }
            };
            match &bucket.layout {
                Layout::Rows(rows) => {
                    for item in rows.prefix(row.as_bytes()) {
                        let (key, value) = item
                            .into_inner()
                            .map_err(unavailable("failed to read trace row"))?;
                        if key.len() != mkey.len {
                            cell(&key[..], &value[..], row_len + CELL_SUFFIX_LEN);
                        }
                    }
                }
                Layout::TimeKeyed { cells, metas } => {
                    let mut bad_entries = 0;
                    let stamps = row_stamps(metas, &row, &mut bad_entries)?;
                    for stamp in stamps {
                        for item in cells.prefix(timed_row_prefix(&stamp, &row)) {
                            let (key, value) = item
                                .into_inner()
                                .map_err(unavailable("failed to read trace row"))?;
                            cell(&key[..], &value[..], STAMP_LEN + row_len + CELL_SUFFIX_LEN);
                        }
                    }
                    *corrupt += bad_entries;
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
            // The metas first: without them no read finds the bucket's traces. A crash (or
            // an error) before the cells go too leaves a lone cells keyspace, which the next
            // open takes back as an (expired, empty-looking) bucket and the next run drops.
            self.db
                .delete_keyspace(bucket.metas().clone())
                .map_err(unavailable("failed to drop expired span bucket"))?;
            self.buckets
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|b| !b.is(&bucket));
            if let Layout::TimeKeyed { cells, .. } = bucket.layout {
                self.db
                    .delete_keyspace(cells)
                    .map_err(unavailable("failed to drop expired span bucket"))?;
            }
            dropped += 1;
        }
        Ok(dropped)
    }
}

/// The stamps under which row `row` has cells, from its stamp entries in a time-keyed
/// bucket's `metas`, oldest first; malformed entries are skipped and counted in `corrupt`.
fn row_stamps(metas: &Keyspace, row: &RowKey, corrupt: &mut u64) -> Result<Vec<[u8; STAMP_LEN]>> {
    let prefix = stamps_prefix(row);
    let mut stamps = Vec::new();
    for item in metas.prefix(prefix) {
        let key = item
            .key()
            .map_err(unavailable("failed to read the stamps of a trace"))?;
        match <[u8; STAMP_LEN]>::try_from(&key[prefix.len..]) {
            Ok(stamp) => stamps.push(stamp),
            Err(_) => {
                warn!(trace_id = %row.trace_id(), key_len = key.len(), "malformed stamp entry, skipped");
                *corrupt += 1;
            }
        }
    }
    Ok(stamps)
}

/// Rebuilds a meta from the row itself (only when the stored meta is unreadable).
fn recount_row(bucket: &Bucket, row: &RowKey) -> Result<Meta> {
    let mut meta = Meta::default();
    let mut count = |item: fjall::Guard, want_len: usize| -> Result<()> {
        let (key, value) = item
            .into_inner()
            .map_err(unavailable("failed to read trace row"))?;
        if key.len() == want_len {
            meta.spans += 1;
            meta.bytes += value.len() as u64;
        }
        Ok(())
    };
    let row_len = row.as_bytes().len();
    match &bucket.layout {
        Layout::Rows(rows) => {
            for item in rows.prefix(row.as_bytes()) {
                count(item, row_len + CELL_SUFFIX_LEN)?;
            }
        }
        Layout::TimeKeyed { cells, metas } => {
            for stamp in row_stamps(metas, row, &mut 0)? {
                for item in cells.prefix(timed_row_prefix(&stamp, row)) {
                    count(item, STAMP_LEN + row_len + CELL_SUFFIX_LEN)?;
                }
            }
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

    #[test]
    fn keyspace_names_mark_the_layout_and_old_versions_skip_the_marked_ones() {
        use RetentionClass::{Days, Default};
        for class in [Default, Days(1), Days(30)] {
            for tenanted in [false, true] {
                for part in [Part::Rows, Part::Cells, Part::Metas] {
                    let name = keyspace_name(19_675, class, tenanted, part);
                    assert_eq!(
                        parse_keyspace_name(&name),
                        Some((19_675, class, tenanted, part)),
                        "{name}"
                    );
                    // what a clew of before time-keyed cells parses (`parse_bucket_name`
                    // was its whole parser): only the row buckets
                    assert_eq!(
                        parse_bucket_name(&name).is_some(),
                        part == Part::Rows,
                        "{name}"
                    );
                }
            }
        }
        assert_eq!(
            keyspace_name(19_675, Days(30), true, Part::Cells),
            "day-19675-r30-t.cells"
        );
        assert_eq!(
            keyspace_name(19_675, Default, false, Part::Metas),
            "day-19675.metas"
        );
        assert_eq!(
            keyspace_name(19_675, Default, false, Part::Rows),
            "day-19675"
        );
        for other in ["day-1.cells.cells", ".cells", "state.metas", "day-x.metas"] {
            assert_eq!(parse_keyspace_name(other), None, "{other}");
        }
    }

    #[test]
    fn time_keyed_keys_sort_by_stamp_first_and_stamp_entries_after_the_meta() {
        let a = RowKey::new(&Tenant::default(), &TraceId([0xff; 16]));
        let b = RowKey::new(&Tenant::default(), &TraceId([0x01; 16]));
        let suffix = [0xff; CELL_SUFFIX_LEN];
        let (s1, s2) = (1u64.to_be_bytes(), 2u64.to_be_bytes());
        // a later batch's cells sort after an earlier one's, whatever their rows
        assert!(
            timed_cell_key(&s1, &a, &suffix).as_ref() < timed_cell_key(&s2, &b, &[0; 9]).as_ref()
        );
        let cell = timed_cell_key(&s1, &a, &suffix);
        assert_eq!(cell.as_ref().len(), STAMP_LEN + 16 + CELL_SUFFIX_LEN);
        assert!(cell
            .as_ref()
            .starts_with(timed_row_prefix(&s1, &a).as_ref()));
        assert!(!cell
            .as_ref()
            .starts_with(timed_row_prefix(&s1, &b).as_ref()));
        // in the metas: the meta, then the row's stamp entries in stamp order
        let (meta, e1, e2) = (meta_key(&a), stamp_key(&a, &s1), stamp_key(&a, &s2));
        assert!(meta.as_ref() < e1.as_ref() && e1.as_ref() < e2.as_ref());
        assert!(e1.as_ref().starts_with(stamps_prefix(&a).as_ref()));
        assert!(!meta.as_ref().starts_with(stamps_prefix(&a).as_ref()));
        let shop = RowKey::new(&Tenant::parse("shop").unwrap(), &TraceId([0xff; 16]));
        assert_eq!(
            timed_cell_key(&s1, &shop, &suffix).as_ref().len(),
            KEY_MAX,
            "the longest key fits"
        );
    }
}
