//! The single writer thread: appends batches to the WAL (one fsync per group of
//! batches), feeds tantivy's writers, commits on a timer and drops expired days.
//!
//! ```text
//! index_spans ─▶ (spawn_blocking: spans → SpanDocs → WAL record + IndexDocs)
//!            ─▶ channel ─▶ writer thread: WAL append + fsync ─▶ ack ─▶ add_document
//!                                         every commit_interval_ms: commit, reload readers,
//!                                         truncate WAL
//! ```
//!
//! A day's documents go to its partition `YYYY-MM-DD`, which records tenants. A partition
//! of that name created before tenants (no `tenant` field) is left as it is, read for tenant
//! `default` only, and the day's new documents go to a second partition `YYYY-MM-DD.t`.
//! Those two are the default retention class's; the documents of tenants in a class of
//! `D` days (`crate::retention`) go to the day's `YYYY-MM-DD.t.r<D>`, dropped by its own
//! horizon. Every search reads every class's partitions of its days: the tenant clause
//! keeps tenants apart, the class only decides when a partition is dropped.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tantivy::directory::MmapDirectory;
use tantivy::merge_policy::LogMergePolicy;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy};
use tokio::sync::oneshot;

use super::document::IndexDoc;
use super::find_trace_ids::SegmentColumns;
use super::salvage;
use super::schema::{self, AttrsLayout, Fields};
use super::wal::Wal;
use crate::embedded::background;
use crate::metrics as m;
use crate::{Damage, Error, Result, RetentionClass, RetentionClasses};

/// Most commands handled (and fsynced) as one group.
const MAX_GROUP: usize = 256;
/// tantivy's smallest per-thread writer budget is 15 MB.
const MIN_WRITER_BYTES: usize = 16 << 20;

/// Segments above this many documents are not merged again (tantivy's `LogMergePolicy`
/// default is 10M). With one-second commits of ~60k documents, merges of eight segments a
/// level make 0.5M- then ~4M-document segments; with the default cap those were merged
/// once more, eight at a time, into ~30M-document segments: a merge that took a core for a
/// minute or more, held ~0.5 GiB and set the server ~13 s behind its load twice in a
/// 25-minute soak (BENCHMARKS.md, "soak after the search walk"). Searches skip segments
/// outside their time slice by the segments' own min/max start, so more, smaller segments
/// cost them little.
const MAX_DOCS_BEFORE_MERGE: usize = 2_000_000;

/// State shared by the writer thread and the searchers.
pub struct Shared {
    pub fields: Fields,
    pub days_dir: PathBuf,
    /// Open day partitions, by UTC day number, generation (0: `YYYY-MM-DD`, 1: the
    /// day's `YYYY-MM-DD.t` next to a partition of before tenants, and every partition of
    /// a class other than the default) and retention class.
    pub partitions: RwLock<BTreeMap<PartitionKey, Arc<Partition>>>,
    /// Damaged parts found (and quarantined) at open.
    pub damage: std::sync::Mutex<Vec<Damage>>,
}

/// `(day, generation, class)` of a partition.
pub type PartitionKey = (u32, u8, RetentionClass);

/// One day's tantivy index and its reader.
pub struct Partition {
    pub day: u32,
    pub class: RetentionClass,
    /// Has the `tenant` field; `false` for a partition created before tenants, which holds
    /// tenant `default` only and is no longer written.
    pub tenanted: bool,
    pub index: Index,
    pub reader: IndexReader,
    pub dir: PathBuf,
    /// How its `attrs` field takes a span's terms (older partitions: one value each).
    pub layout: AttrsLayout,
    /// The columns searches read, per segment, opened once.
    pub columns: SegmentColumns,
}

impl Shared {
    /// Opens every day partition under `days_dir`, quarantining damaged ones (or their
    /// damaged segments) under `data_dir` first (`salvage`).
    pub fn open(days_dir: PathBuf, data_dir: &Path) -> Result<Shared> {
        std::fs::create_dir_all(&days_dir).map_err(|e| {
            Error::unavailable(
                "failed to create index directory",
                format!("{}: {e}", days_dir.display()),
            )
        })?;
        let fields = Fields::new();
        let mut partitions = BTreeMap::new();
        let mut damage = Vec::new();
        let entries = std::fs::read_dir(&days_dir)
            .map_err(|e| Error::unavailable("failed to list index partitions", e))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| Error::unavailable("failed to list index partitions", e))?;
            let name = entry.file_name();
            let Some(key) = name.to_str().and_then(parse_partition_dir_name) else {
                tracing::warn!(path = %entry.path().display(), "ignoring unknown entry in index directory");
                continue;
            };
            damage.extend(
                salvage::check_partition(&entry.path(), data_dir).map_err(|e| {
                    Error::unavailable(
                        "failed to quarantine a damaged index partition",
                        format!("{}: {e}", entry.path().display()),
                    )
                })?,
            );
            partitions.insert(key, Arc::new(Partition::open(&fields, &days_dir, key)?));
        }
        Ok(Shared {
            fields,
            days_dir,
            partitions: RwLock::new(partitions),
            damage: std::sync::Mutex::new(damage),
        })
    }

    pub fn snapshot(&self, days: std::ops::RangeInclusive<u32>) -> Vec<Arc<Partition>> {
        let map = self.partitions.read().unwrap_or_else(|p| p.into_inner());
        map.range(
            (*days.start(), 0, RetentionClass::Default)
                ..=(*days.end(), u8::MAX, RetentionClass::Days(u32::MAX)),
        )
        .rev()
        .map(|(_, p)| p.clone())
        .collect()
    }

    /// The partition new documents of `day` and `class` go to: the first of the day and
    /// class that records tenants, created if needed.
    fn partition(&self, day: u32, class: RetentionClass) -> Result<Arc<Partition>> {
        // a class other than the default has no partition of before tenants
        let first = if class == RetentionClass::Default {
            0
        } else {
            1
        };
        for generation in first..=1u8 {
            let key = (day, generation, class);
            let existing = self
                .partitions
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .cloned();
            match existing {
                Some(p) if p.tenanted => return Ok(p),
                Some(_) => continue,
                None => {
                    let p = Arc::new(Partition::open(&self.fields, &self.days_dir, key)?);
                    self.partitions
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(key, p.clone());
                    return Ok(p);
                }
            }
        }
        Err(Error::unavailable(
            "failed to open index partition",
            format!(
                "day {} has no partition that records tenants",
                schema::day_dir_name(day)
            ),
        ))
    }
}

/// Suffix of a day's second partition (next to one of before tenants), and of every
/// partition of a class other than the default (before its `.r<days>`).
const SECOND_PARTITION_SUFFIX: &str = ".t";

/// Directory name of a partition: `YYYY-MM-DD`, `YYYY-MM-DD.t` or `YYYY-MM-DD.t.r<days>`.
fn partition_dir_name((day, generation, class): PartitionKey) -> String {
    let mut name = schema::day_dir_name(day);
    if generation != 0 {
        name.push_str(SECOND_PARTITION_SUFFIX);
    }
    if let Some(tag) = class.tag() {
        name.push('.');
        name.push_str(&tag);
    }
    name
}

/// The key of a name written by [`partition_dir_name`].
fn parse_partition_dir_name(name: &str) -> Option<PartitionKey> {
    let (name, class) = match name.rsplit_once('.') {
        Some((rest, tag)) if tag.starts_with('r') => (rest, RetentionClass::parse_tag(tag)?),
        _ => (name, RetentionClass::Default),
    };
    match name.strip_suffix(SECOND_PARTITION_SUFFIX) {
        Some(day) => Some((schema::parse_day_dir_name(day)?, 1, class)),
        // a class's partitions always record tenants: `.t` is never missing
        None if class == RetentionClass::Default => {
            Some((schema::parse_day_dir_name(name)?, 0, class))
        }
        None => None,
    }
}

impl Partition {
    fn open(fields: &Fields, days_dir: &Path, key: PartitionKey) -> Result<Partition> {
        let (day, _, class) = key;
        let dir = days_dir.join(partition_dir_name(key));
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::unavailable(
                "failed to create index partition",
                format!("{}: {e}", dir.display()),
            )
        })?;
        let mmap = MmapDirectory::open(&dir)
            .map_err(|e| Error::unavailable("failed to open index partition", e))?;
        let failed = |e: &dyn std::fmt::Display| {
            Error::unavailable(
                "failed to open index partition",
                format!("{}: {e}", dir.display()),
            )
        };
        let index = if Index::exists(&mmap).map_err(|e| failed(&e))? {
            Index::open(mmap).map_err(|e| failed(&e))?
        } else {
            Index::create(mmap, fields.schema.clone(), Default::default())
                .map_err(|e| failed(&e))?
        };
        schema::register_tokenizers(&index);
        let schema = index.schema();
        // Partitions of before the joined `attrs` layout take one value per term; field
        // ids do not depend on the layout.
        let layout = schema::attrs_layout(&schema);
        let expected = Fields::with_layout(layout).schema;
        let tenanted = schema == expected;
        // A partition of before tenants has every field but the tenant ones, with the
        // same ids: the searches' field handles fit it.
        let before_tenants = !tenanted
            && schema.num_fields() + 2 == expected.num_fields()
            && schema
                .fields()
                .all(|(field, entry)| expected.get_field(entry.name()).ok() == Some(field));
        if !tenanted && !before_tenants {
            return Err(failed(&"its schema is not one this clew knows"));
        }
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e| Error::unavailable("failed to open index reader", e))?;
        Ok(Partition {
            day,
            class,
            tenanted,
            index,
            reader,
            dir,
            layout,
            columns: SegmentColumns::default(),
        })
    }
}

pub enum Command {
    Append {
        docs: Vec<IndexDoc>,
        record: Vec<u8>,
        ack: oneshot::Sender<Result<()>>,
    },
    Commit {
        ack: oneshot::Sender<Result<()>>,
    },
    /// Drop the partitions whose class's retention ended before this time.
    DropExpired {
        now_unix_nano: u64,
        ack: oneshot::Sender<Result<u64>>,
    },
    Close {
        ack: oneshot::Sender<Result<()>>,
    },
}

struct DayWriter {
    partition: Arc<Partition>,
    writer: IndexWriter<IndexDoc>,
    /// Documents added since the last commit.
    dirty: bool,
}

pub struct Writer {
    shared: Arc<Shared>,
    wal: Wal,
    /// A failed WAL write could not be undone: refuse appends until the next truncation.
    wal_broken: bool,
    /// Documents were acknowledged but could not be handed to tantivy: keep the WAL.
    keep_wal: bool,
    writers: HashMap<(u32, RetentionClass), DayWriter>,
    /// Which class a tenant's documents go to, and how long each class is kept.
    retention: RetentionClasses,
    commit_interval: Duration,
    writer_bytes: usize,
    dirty_since: Option<Instant>,
}

impl Writer {
    /// Opens the WAL and replays (and commits) what it still holds.
    pub fn open(
        shared: Arc<Shared>,
        wal_path: &Path,
        commit_interval: Duration,
        writer_memory_mb: usize,
        retention: RetentionClasses,
    ) -> Result<Writer> {
        let data_dir = shared.days_dir.parent().and_then(Path::parent);
        let (wal, replay, damage) = Wal::open(wal_path, data_dir.unwrap_or(Path::new(".")))
            .map_err(|e| Error::unavailable("failed to open index wal", e))?;
        if let Some(damage) = damage {
            shared
                .damage
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(damage);
        }
        let mut w = Writer {
            shared,
            wal,
            wal_broken: false,
            keep_wal: false,
            writers: HashMap::new(),
            retention,
            commit_interval,
            // Usually one day is written at a time; late spans open a second writer.
            writer_bytes: (writer_memory_mb << 20).div_euclid(2).max(MIN_WRITER_BYTES),
            dirty_since: None,
        };
        if !replay.is_empty() {
            tracing::info!(docs = replay.len(), path = %w.wal.path().display(), "replaying index wal");
            let fields = w.shared.fields.clone();
            w.add(replay.into_iter().map(|d| IndexDoc::new(d, &fields)));
            w.commit()?;
        }
        Ok(w)
    }

    /// The thread body: runs until `Close` or until every sender is gone.
    pub fn run(mut self, rx: Receiver<Command>) {
        loop {
            let first = match self.dirty_since {
                Some(since) => {
                    let wait =
                        (since + self.commit_interval).saturating_duration_since(Instant::now());
                    match rx.recv_timeout(wait) {
                        Ok(cmd) => cmd,
                        Err(RecvTimeoutError::Timeout) => {
                            self.commit_logged();
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                None => match rx.recv() {
                    Ok(cmd) => cmd,
                    Err(_) => break,
                },
            };
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(cmd) => group.push(cmd),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            if self.handle(group) {
                return;
            }
            if self
                .dirty_since
                .is_some_and(|s| s.elapsed() >= self.commit_interval)
            {
                self.commit_logged();
            }
        }
        self.commit_logged();
        self.shutdown();
    }

    /// Handles one group of commands; returns true when the thread must stop.
    fn handle(&mut self, group: Vec<Command>) -> bool {
        let mut appends = Vec::new();
        let mut others = Vec::new();
        for cmd in group {
            match cmd {
                Command::Append { docs, record, ack } => appends.push((docs, record, ack)),
                other => others.push(other),
            }
        }
        if !appends.is_empty() {
            match self.append_durably(appends.iter().map(|(_, r, _)| r.as_slice())) {
                Ok(()) => {
                    let mut all = Vec::new();
                    for (docs, _, ack) in appends {
                        let _ = ack.send(Ok(()));
                        all.extend(docs);
                    }
                    self.add(all.into_iter());
                }
                Err(e) => {
                    for (_, _, ack) in appends {
                        let _ = ack.send(Err(Error::unavailable("failed to write index wal", &e)));
                    }
                }
            }
        }
        for cmd in others {
            match cmd {
                Command::Append { .. } => {}
                Command::Commit { ack } => {
                    let _ = ack.send(self.commit());
                }
                Command::DropExpired { now_unix_nano, ack } => {
                    let _ = ack.send(self.drop_expired(now_unix_nano));
                }
                Command::Close { ack } => {
                    let result = self.commit();
                    self.shutdown();
                    let _ = ack.send(result);
                    return true;
                }
            }
        }
        false
    }

    fn append_durably<'a>(
        &mut self,
        records: impl Iterator<Item = &'a [u8]>,
    ) -> std::io::Result<()> {
        if self.wal_broken {
            return Err(std::io::Error::other(
                "index wal is unusable until the next commit",
            ));
        }
        let before = self.wal.len();
        let result = records
            .into_iter()
            .try_for_each(|r| self.wal.append(r))
            .and_then(|()| self.wal.sync());
        if result.is_err() && self.wal.len() != before {
            // Cut the partial records so later ones are not stranded behind a torn record.
            if let Err(e) = self.wal.rewind(before) {
                tracing::error!(error = %e, "failed to rewind index wal after a write error");
                self.wal_broken = true;
            }
        }
        result
    }

    fn add(&mut self, docs: impl Iterator<Item = IndexDoc>) {
        let mut n = 0u64;
        for mut doc in docs {
            let day = doc.day();
            let class = self.retention.class_of(doc.tenant());
            let result = self.writer(day, class).and_then(|w| {
                w.dirty = true;
                doc.set_layout(w.partition.layout);
                w.writer
                    .add_document(doc)
                    .map_err(|e| Error::unavailable("failed to add index document", e))
            });
            match result {
                Ok(_) => n += 1,
                Err(e) => {
                    // Acknowledged and in the WAL: keep the WAL so a restart indexes it.
                    tracing::error!(error = %e, day, "failed to index span document");
                    self.keep_wal = true;
                }
            }
        }
        if n > 0 {
            self.dirty_since.get_or_insert_with(Instant::now);
            metrics::counter!(m::INDEX_DOCS_TOTAL, "backend" => "embedded").increment(n);
        }
    }

    fn writer(&mut self, day: u32, class: RetentionClass) -> Result<&mut DayWriter> {
        if !self.writers.contains_key(&(day, class)) {
            let partition = self.shared.partition(day, class)?;
            let writer: IndexWriter<IndexDoc> = partition
                .index
                .writer_with_num_threads(1, self.writer_bytes)
                .map_err(|e| Error::unavailable("failed to open index writer", e))?;
            let mut merges = LogMergePolicy::default();
            merges.set_max_docs_before_merge(MAX_DOCS_BEFORE_MERGE);
            writer.set_merge_policy(Box::new(merges));
            // the writer has just started its merge threads: they yield to ingest
            background::renice_threads(background::MERGE_THREAD_PREFIX, background::MERGE_NICE);
            self.writers.insert(
                (day, class),
                DayWriter {
                    partition,
                    writer,
                    dirty: false,
                },
            );
        }
        Ok(self.writers.get_mut(&(day, class)).expect("inserted above"))
    }

    fn commit_logged(&mut self) {
        if let Err(e) = self.commit() {
            tracing::error!(error = %e, "index commit failed, retrying after the next interval");
            self.dirty_since = Some(Instant::now());
        }
    }

    /// Commits every dirty writer, reloads its readers, truncates the WAL and closes
    /// writers that had nothing to commit (days no longer written).
    fn commit(&mut self) -> Result<()> {
        let started = Instant::now();
        let mut failed = None;
        let mut idle = Vec::new();
        let mut segments = 0;
        for (&key, w) in self.writers.iter_mut() {
            let day = key.0;
            if !w.dirty {
                idle.push(key);
                continue;
            }
            match w.writer.commit() {
                Ok(_) => {
                    w.dirty = false;
                    if let Err(e) = w.partition.reader.reload() {
                        tracing::warn!(error = %e, day, "failed to reload index reader");
                    }
                    segments += w.partition.reader.searcher().segment_readers().len();
                }
                Err(e) => failed = Some(Error::unavailable("failed to commit index", e)),
            }
        }
        for key in idle {
            self.writers.remove(&key);
        }
        if let Some(e) = failed {
            return Err(e);
        }
        if !self.keep_wal {
            self.wal
                .truncate()
                .map_err(|e| Error::unavailable("failed to truncate index wal", e))?;
            self.wal_broken = false;
        }
        self.dirty_since = None;
        metrics::histogram!(m::INDEX_COMMIT_SECONDS, "backend" => "embedded")
            .record(started.elapsed().as_secs_f64());
        if segments > 0 {
            metrics::gauge!(m::INDEX_SEGMENTS, "backend" => "embedded").set(segments as f64);
        }
        Ok(())
    }

    fn drop_expired(&mut self, now_unix_nano: u64) -> Result<u64> {
        // Commit first so nothing of the dropped days waits in the WAL to be replayed.
        self.commit()?;
        // A day is expired once all of it lies before its class's horizon.
        let retention = &self.retention;
        let expired: Vec<Arc<Partition>> = {
            let mut map = self
                .shared
                .partitions
                .write()
                .unwrap_or_else(|p| p.into_inner());
            let keys: Vec<PartitionKey> = map
                .keys()
                .filter(|(day, _, class)| *day < retention.first_kept_day(*class, now_unix_nano))
                .copied()
                .collect();
            keys.iter().filter_map(|k| map.remove(k)).collect()
        };
        let mut dropped = 0;
        for p in expired {
            self.writers.remove(&(p.day, p.class));
            let dir = p.dir.clone();
            drop(p);
            // Open searches keep their mmaps; removing the files is safe on unix.
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => dropped += 1,
                Err(e) => {
                    tracing::warn!(error = %e, path = %dir.display(), "failed to remove expired index partition")
                }
            }
        }
        metrics::counter!(m::INDEX_PARTITIONS_DROPPED_TOTAL, "backend" => "embedded")
            .increment(dropped);
        Ok(dropped)
    }

    fn shutdown(&mut self) {
        for ((day, _), w) in self.writers.drain() {
            if let Err(e) = w.writer.wait_merging_threads() {
                tracing::warn!(error = %e, day, "index merge did not finish at shutdown");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_dir_names_round_trip() {
        use RetentionClass::{Days, Default};
        let day = schema::parse_day_dir_name("2023-11-14").unwrap();
        for (key, name) in [
            ((day, 0, Default), "2023-11-14"),
            ((day, 1, Default), "2023-11-14.t"),
            ((day, 1, Days(30)), "2023-11-14.t.r30"),
        ] {
            assert_eq!(partition_dir_name(key), name);
            assert_eq!(parse_partition_dir_name(name), Some(key), "{name}");
        }
        for other in [
            "2023-11-14.r30",
            "2023-11-14.t.r0",
            "2023-11-14.t.x",
            "2023-11-14.t.t",
            "wal.log",
        ] {
            assert_eq!(parse_partition_dir_name(other), None, "{other}");
        }
    }
}
