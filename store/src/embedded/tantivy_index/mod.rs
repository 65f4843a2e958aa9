//! Embedded trace index on tantivy: one document per span, one tantivy index per UTC day.
//!
//! # Schema (see `docs/adr/0002-index-schema.md`)
//!
//! | field | kind | why |
//! |---|---|---|
//! | `trace_id` | bytes, indexed + fast | what searches return (read from the column); the term lets later condition groups filter on the trace ids still alive |
//! | `start` | u64, fast only | time ranges run on the column (no term per timestamp), newest-first ordering |
//! | `duration` | u64, fast only | min/max duration ranges |
//! | `service`, `operation` | raw terms | exact filters, `services()` from the term dictionary |
//! | `kind` | raw terms, no longer filled (nothing searches by span kind) | in the schema so that older partitions keep their schema |
//! | `service_operation` | raw term `service\0operation` | `service + operation` on one span, `operations(service)` as a prefix range of the dictionary |
//! | `error` | raw term `1`, error spans only | errors-only; rare, so a short posting list |
//! | `error_text` | default tokenizer, doc ids only, error spans only | free text over status message, exception type and message |
//! | `keys` | raw terms `name=value` | business keys (filled in by the enrich stage) |
//! | `attrs` | exact terms `name=value`, one joined value per span (`span_doc::Terms::joined`, split by the `clew_terms` tokenizer; `raw`, one value per term, in partitions created before) | attributes `Common::indexed_attributes` selects (default: every scalar attribute of the span, scope, resource and events; `trace_index::span_doc`) |
//! | `tenant` | raw term, every span | the mandatory tenant clause of every search (`docs/adr/0011-tenants.md`) |
//! | `tenant_operation` | raw term `tenant\0service\0operation` | `services()` and `operations(service)` of one tenant as prefix ranges |
//!
//! Partitions created before tenants lack the last two fields: they hold tenant `default`
//! only, are searched for it without the clause and are no longer written (see
//! [`writer`]).
//!
//! Nothing is stored (no doc store), nothing is scored (no field norms, no frequencies or
//! positions): indexing cost is what limits ingest, and searches only need trace ids and
//! start times, both read from fast-field columns.
//!
//! # Writes and durability
//!
//! `index_spans` turns spans into [`document::SpanDoc`]s off the reactor (the terms of
//! each resource and scope built once per batch), and hands the batch to the one writer
//! thread ([`writer`]), which appends it to a write-ahead log
//! ([`wal`]) and fsyncs (once per group of concurrent batches) before acknowledging, then
//! adds the documents. Commits happen every `commit_interval_ms` (tantivy commits are
//! expensive), after which readers reload and the WAL is truncated; on open the WAL is
//! replayed. Replays may duplicate span documents, which searches collapse by trace id.
//!
//! # Searches
//!
//! See [`find_trace_ids`]: trace-level semantics by intersecting per-condition trace-id
//! sets, most selective first, over the day partitions the time range touches, walking
//! the range newest first in widening slices so that a page costs what it holds. The
//! conditions, limits and cursor are the shared `trace_index::query_plan` and
//! `trace_index::cursor`, so both index backends answer alike.
//!
//! # Retention
//!
//! A day partition is deleted as a whole once its day ended more than its retention
//! class's days ago (`crate::retention`; the default class: `retention_days`). Each class
//! has its own partitions of a day (see [`writer`]).

pub(crate) mod document;
mod find_trace_ids;
mod salvage;
pub(crate) mod schema;
mod wal;
mod writer;

#[doc(hidden)]
pub use self::find_trace_ids::{set_search_walk, SearchWalk};

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use clew_proto::{Span, Tenant};
use tantivy::Searcher;
use tokio::sync::oneshot;

use self::document::{IndexDoc, SpanDoc};
use self::wal::Wal;
use self::writer::{Command, Shared, Writer};
use super::config::EmbeddedIndexConfig;
use crate::metrics as m;
use crate::trace_index::span_doc::IndexedAttributes;
use crate::{Common, Error, Result, TraceIdPage, TraceIndex, TraceQuery};

/// Batches queued for the writer thread before `index_spans` callers wait.
const QUEUE_DEPTH: usize = 64;
/// Span documents per WAL record.
const WAL_RECORD_DOCS: usize = 4096;

/// The embedded [`TraceIndex`].
pub struct TantivyTraceIndex {
    shared: Arc<Shared>,
    tx: SyncSender<Command>,
    indexed_attributes: Arc<IndexedAttributes>,
    /// Cleared when the writer thread ends (closed, or died).
    writer_alive: Arc<AtomicBool>,
    /// Set by `close`: a writer that ended after it is not broken.
    closing: AtomicBool,
    /// `<data_dir>/index`, for messages.
    root: std::path::PathBuf,
}

impl TantivyTraceIndex {
    /// Opens (or creates) the index under `<data_dir>/index`, replaying its WAL.
    pub fn open(config: &EmbeddedIndexConfig, common: &Common) -> Result<Self> {
        let root = common.data_dir.join("index");
        let shared = Arc::new(Shared::open(root.join("days"), &common.data_dir)?);
        let writer = Writer::open(
            shared.clone(),
            &root.join("wal.log"),
            Duration::from_millis(config.commit_interval_ms),
            config.writer_memory_mb,
            common.retention.clone(),
        )?;
        let (tx, rx) = sync_channel(QUEUE_DEPTH);
        let writer_alive = Arc::new(AtomicBool::new(true));
        let alive = writer_alive.clone();
        std::thread::Builder::new()
            .name("clew-index-writer".into())
            .spawn(move || {
                writer.run(rx);
                alive.store(false, Ordering::Release);
            })
            .map_err(|e| Error::unavailable("failed to start index writer thread", e))?;
        Ok(TantivyTraceIndex {
            shared,
            tx,
            indexed_attributes: Arc::new(IndexedAttributes::from_names(&common.indexed_attributes)),
            writer_alive,
            closing: AtomicBool::new(false),
            root,
        })
    }

    async fn send<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T>>) -> Command + Send + 'static,
    ) -> Result<T>
    where
        T: Send + 'static,
    {
        let tx = self.tx.clone();
        let (ack_tx, ack_rx) = oneshot::channel();
        blocking(move || tx.send(make(ack_tx)).map_err(|_| closed())).await?;
        ack_rx.await.map_err(|_| closed())?
    }

    /// The partitions `tenant` can have documents in, and whether each records tenants
    /// (one of before tenants holds tenant `default` only).
    fn searchers(&self, tenant: &Tenant) -> Vec<(Searcher, bool)> {
        self.shared
            .snapshot(0..=u32::MAX)
            .iter()
            .filter(|p| p.tenanted || tenant.is_default())
            .map(|p| (p.reader.searcher(), p.tenanted))
            .collect()
    }
}

/// Adds to `out` every term of `field` that starts with `prefix` (all of them for an empty
/// one), without the prefix, and with `cut` only up to the next separator (`\0`).
fn names_under(
    searcher: &Searcher,
    field: tantivy::schema::Field,
    prefix: &str,
    cut: bool,
    out: &mut BTreeSet<String>,
) -> Result<()> {
    let fail = |e: &dyn std::fmt::Display| Error::unavailable("failed to list index terms", e);
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1; // the prefixes end in the separator, `\0`
    }
    for segment in searcher.segment_readers() {
        let inverted = segment.inverted_index(field).map_err(|e| fail(&e))?;
        let mut range = inverted.terms().range().ge(prefix.as_bytes());
        if !end.is_empty() {
            range = range.lt(&end);
        }
        let mut terms = range.into_stream().map_err(|e| fail(&e))?;
        while terms.advance() {
            let mut name = &terms.key()[prefix.len()..];
            if cut {
                if let Some(at) = name
                    .iter()
                    .position(|&b| b == schema::SERVICE_OPERATION_SEP as u8)
                {
                    name = &name[..at];
                }
            }
            if !out.contains(&*String::from_utf8_lossy(name)) {
                out.insert(String::from_utf8_lossy(name).into_owned());
            }
        }
    }
    Ok(())
}

const CLOSED: &str = "index writer is closed";

fn closed() -> Error {
    Error::unavailable("trace index", CLOSED)
}

/// Runs blocking tantivy or file work off the async reactor.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::unavailable("index task failed", e))?
}

#[async_trait]
impl TraceIndex for TantivyTraceIndex {
    async fn index_spans(&self, spans: Arc<[Span]>) -> Result<()> {
        if spans.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let attrs = self.indexed_attributes.clone();
        let shared = self.shared.clone();
        let tx = self.tx.clone();
        let ack = blocking(move || {
            let docs = SpanDoc::from_spans(&spans, &attrs);
            let mut record = Vec::with_capacity(Wal::record_len(&docs, WAL_RECORD_DOCS));
            // Bounded records: a huge batch becomes several, each replayable on its own.
            for chunk in docs.chunks(WAL_RECORD_DOCS) {
                Wal::encode_record(chunk, &mut record);
            }
            let docs = docs
                .into_iter()
                .map(|d| IndexDoc::new(d, &shared.fields))
                .collect();
            let (ack_tx, ack_rx) = oneshot::channel();
            tx.send(Command::Append {
                docs,
                record,
                ack: ack_tx,
            })
            .map_err(|_| closed())?;
            Ok(ack_rx)
        })
        .await?;
        ack.await.map_err(|_| closed())??;
        metrics::histogram!(m::INDEX_WRITE_SECONDS, "backend" => "embedded")
            .record(started.elapsed().as_secs_f64());
        Ok(())
    }

    async fn find_trace_ids(&self, tenant: &Tenant, query: &TraceQuery) -> Result<TraceIdPage> {
        let started = Instant::now();
        let shared = self.shared.clone();
        let query = query.clone();
        let tenant = tenant.clone();
        let page = blocking(move || find_trace_ids::find(&shared, &tenant, &query)).await;
        metrics::histogram!(m::INDEX_SEARCH_SECONDS, "backend" => "embedded")
            .record(started.elapsed().as_secs_f64());
        page
    }

    async fn services(&self, tenant: &Tenant) -> Result<Vec<String>> {
        let searchers = self.searchers(tenant);
        let f = self.shared.fields.clone();
        let prefix = document::tenant_term(tenant.as_str(), "");
        blocking(move || {
            let mut names = BTreeSet::new();
            for (searcher, tenanted) in &searchers {
                if *tenanted {
                    names_under(searcher, f.tenant_operation, &prefix, true, &mut names)?;
                } else {
                    names_under(searcher, f.service, "", false, &mut names)?;
                }
            }
            Ok(names.into_iter().collect())
        })
        .await
    }

    async fn operations(&self, tenant: &Tenant, service: &str) -> Result<Vec<String>> {
        let searchers = self.searchers(tenant);
        let f = self.shared.fields.clone();
        let service_prefix = document::service_operation_term(service, "");
        let prefix = document::tenant_term(tenant.as_str(), &service_prefix);
        blocking(move || {
            let mut names = BTreeSet::new();
            for (searcher, tenanted) in &searchers {
                if *tenanted {
                    names_under(searcher, f.tenant_operation, &prefix, false, &mut names)?;
                } else {
                    names_under(
                        searcher,
                        f.service_operation,
                        &service_prefix,
                        false,
                        &mut names,
                    )?;
                }
            }
            Ok(names.into_iter().collect())
        })
        .await
    }

    async fn refresh(&self) -> Result<()> {
        self.send(|ack| Command::Commit { ack }).await
    }

    async fn drop_expired(&self, now_unix_nano: u64) -> Result<u64> {
        self.send(move |ack| Command::DropExpired { now_unix_nano, ack })
            .await
    }

    async fn close(&self) -> Result<()> {
        self.closing.store(true, Ordering::Release);
        let result = match self.send(|ack| Command::Close { ack }).await {
            // Closing twice is fine.
            Err(Error::Unavailable { message, .. }) if message == CLOSED => Ok(()),
            other => other,
        };
        self.writer_alive.store(false, Ordering::Release);
        result
    }

    async fn ready(&self) -> Result<()> {
        if self.writer_alive.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(closed())
        }
    }

    fn damage(&self) -> Vec<crate::Damage> {
        self.shared
            .damage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn broken(&self) -> Option<String> {
        (!self.writer_alive.load(Ordering::Acquire) && !self.closing.load(Ordering::Acquire)).then(
            || {
                format!(
                    "the trace index writer of {} stopped after a failure (see the log); a \
                     restart recovers the index from its write-ahead log",
                    self.root.display()
                )
            },
        )
    }
}

#[cfg(test)]
mod upgrade_tests {
    use super::*;
    use crate::conformance::fixtures::{in_tenant, span, span_id, trace_id, BASE_TIME};
    use tantivy::schema::Schema;

    /// A day partition written before tenants (the schema without the tenant fields)
    /// keeps serving tenant `default` only, and the day's new documents go to a second
    /// partition that records tenants.
    #[tokio::test]
    async fn a_partition_of_before_tenants_serves_default_only() {
        let dir = tempfile::tempdir().unwrap();
        let common = Common {
            data_dir: dir.path().to_path_buf(),
            retention: crate::RetentionClasses::uniform(100_000),
            indexed_attributes: vec![],
        };
        let day = schema::day_of(BASE_TIME);
        let old_dir = dir
            .path()
            .join("index/days")
            .join(schema::day_dir_name(day));
        std::fs::create_dir_all(&old_dir).unwrap();
        {
            // what clew wrote before tenants: per-term `attrs`, no tenant fields
            let fields = schema::Fields::with_layout(schema::AttrsLayout::PerTerm);
            let mut b = Schema::builder();
            for (_, entry) in fields.schema.fields() {
                if ![schema::TENANT, schema::TENANT_OPERATION].contains(&entry.name()) {
                    b.add_field(entry.clone());
                }
            }
            let old = tantivy::Index::create_in_dir(&old_dir, b.build()).unwrap();
            let mut w: tantivy::IndexWriter = old.writer(15_000_000).unwrap();
            let mut doc = tantivy::TantivyDocument::default();
            doc.add_bytes(fields.trace_id, &trace_id(1).0);
            doc.add_u64(fields.start, BASE_TIME);
            doc.add_text(fields.service, "legacy");
            doc.add_text(fields.service_operation, "legacy\0Old");
            doc.add_text(fields.attrs, "host.name=legacy-host");
            w.add_document(doc).unwrap();
            w.commit().unwrap();
            assert!(old.schema().get_field(schema::TENANT).is_err());
        }

        let idx = TantivyTraceIndex::open(&EmbeddedIndexConfig::default(), &common).unwrap();
        let default = Tenant::default();
        let shop = Tenant::parse("shop").unwrap();
        let all = TraceQuery {
            limit: 100,
            ..Default::default()
        };
        let ids = |t: &Tenant| {
            let (idx, t, q) = (&idx, t.clone(), all.clone());
            async move {
                let mut v: Vec<_> = (idx.find_trace_ids(&t, &q).await.unwrap().hits)
                    .into_iter()
                    .map(|h| h.trace_id)
                    .collect();
                v.sort();
                v
            }
        };
        assert_eq!(ids(&default).await, vec![trace_id(1)]);
        assert!(
            ids(&shop).await.is_empty(),
            "the old partition is tenant default's"
        );
        assert_eq!(idx.services(&default).await.unwrap(), ["legacy"]);
        assert!(idx.services(&shop).await.unwrap().is_empty());
        assert_eq!(idx.operations(&default, "legacy").await.unwrap(), ["Old"]);
        let by_host = TraceQuery {
            attributes: vec![("host.name".into(), "legacy-host".into())],
            limit: 100,
            ..Default::default()
        };
        let found = idx.find_trace_ids(&default, &by_host).await.unwrap().hits;
        assert_eq!(found.len(), 1, "an attribute term of the old partition");
        assert!(idx
            .find_trace_ids(&shop, &by_host)
            .await
            .unwrap()
            .hits
            .is_empty());

        // the same day, after the upgrade: both tenants write
        let new_default = span(
            trace_id(2),
            span_id(1),
            None,
            "web",
            "Get",
            BASE_TIME + 5,
            1,
        );
        let new_shop = in_tenant(
            vec![span(
                trace_id(3),
                span_id(1),
                None,
                "shop-api",
                "Buy",
                BASE_TIME + 5,
                1,
            )],
            "shop",
        );
        idx.index_spans(vec![new_default].into()).await.unwrap();
        idx.index_spans(new_shop.into()).await.unwrap();
        idx.refresh().await.unwrap();
        assert!(old_dir
            .with_file_name(format!("{}.t", schema::day_dir_name(day)))
            .is_dir());
        let mut want = vec![trace_id(1), trace_id(2)];
        want.sort();
        assert_eq!(ids(&default).await, want);
        assert_eq!(ids(&shop).await, vec![trace_id(3)]);
        assert_eq!(idx.services(&default).await.unwrap(), ["legacy", "web"]);
        assert_eq!(idx.services(&shop).await.unwrap(), ["shop-api"]);
        idx.close().await.unwrap();

        // and so after a restart
        let idx = TantivyTraceIndex::open(&EmbeddedIndexConfig::default(), &common).unwrap();
        let found = idx.find_trace_ids(&shop, &all).await.unwrap().hits;
        assert_eq!(found.len(), 1);
        assert_eq!(
            idx.find_trace_ids(&default, &all).await.unwrap().hits.len(),
            2
        );
    }
}

#[cfg(test)]
mod tests {
    use super::document::{IndexDoc, SpanDoc};
    use super::schema::{self, AttrsLayout, Fields};
    use super::*;
    use crate::conformance::fixtures::{checkout_trace, trace_id, BASE_TIME};

    /// A partition written before the joined `attrs` layout (one value per term, `raw` in
    /// its schema) opens with its own schema, takes new spans in its layout and answers
    /// attribute searches over its old and new spans; a new partition is joined.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_per_term_partition_keeps_working() {
        let dir = tempfile::tempdir().unwrap();
        let common = Common {
            data_dir: dir.path().to_path_buf(),
            retention: crate::RetentionClasses::uniform(100_000),
            indexed_attributes: vec!["*".into()],
        };
        let old = checkout_trace(trace_id(1), "old", BASE_TIME, true);
        let day = schema::day_of(BASE_TIME);
        let part = dir
            .path()
            .join("index/days")
            .join(schema::day_dir_name(day));
        std::fs::create_dir_all(&part).unwrap();
        let legacy = Fields::with_layout(AttrsLayout::PerTerm);
        let index = tantivy::Index::create_in_dir(&part, legacy.schema.clone()).unwrap();
        let mut w = index
            .writer_with_num_threads::<IndexDoc>(1, 15_000_000)
            .unwrap();
        for d in SpanDoc::from_spans(&old, &IndexedAttributes::All) {
            let mut doc = IndexDoc::new(d, &legacy);
            doc.set_layout(AttrsLayout::PerTerm);
            w.add_document(doc).unwrap();
        }
        w.commit().unwrap();
        w.wait_merging_threads().unwrap();
        drop(index);

        let idx = TantivyTraceIndex::open(&EmbeddedIndexConfig::default(), &common).unwrap();
        let layout = |day| idx.shared.snapshot(day..=day).first().map(|p| p.layout);
        assert_eq!(layout(day), Some(AttrsLayout::PerTerm));
        idx.index_spans(checkout_trace(trace_id(2), "new", BASE_TIME, false).into())
            .await
            .unwrap();
        let next_day = BASE_TIME + crate::trace_index::days::DAY_NANOS;
        idx.index_spans(checkout_trace(trace_id(3), "later", next_day, false).into())
            .await
            .unwrap();
        idx.refresh().await.unwrap();
        assert_eq!(layout(day + 1), Some(AttrsLayout::Joined));
        let attr = |name: &str, value: &str| TraceQuery {
            attributes: vec![(name.into(), value.into())],
            limit: 10,
            ..Default::default()
        };
        let ids = |q| {
            let idx = &idx;
            async move {
                let mut ids: Vec<_> = idx
                    .find_trace_ids(&Tenant::default(), &q)
                    .await
                    .unwrap()
                    .hits
                    .into_iter()
                    .map(|h| h.trace_id)
                    .collect();
                ids.sort();
                ids
            }
        };
        // A resource attribute of every span, and one of the failing span only.
        let mut all = vec![trace_id(1), trace_id(2), trace_id(3)];
        all.sort();
        assert_eq!(ids(attr("host.name", "host-1")).await, all);
        assert_eq!(ids(attr("db.system", "postgresql")).await.len(), 3);
        assert_eq!(
            ids(attr("exception.type", "PaymentDeclinedError")).await,
            [trace_id(1)]
        );
        assert!(ids(attr("host.name", "host-2")).await.is_empty());
        idx.close().await.unwrap();
        // Reopened: still per term, still found.
        let idx = TantivyTraceIndex::open(&EmbeddedIndexConfig::default(), &common).unwrap();
        assert_eq!(
            idx.shared.snapshot(day..=day).first().map(|p| p.layout),
            Some(AttrsLayout::PerTerm)
        );
        let found = idx
            .find_trace_ids(&Tenant::default(), &attr("host.name", "host-1"))
            .await
            .unwrap();
        assert_eq!(found.hits.len(), 3);
        idx.close().await.unwrap();
    }
}
