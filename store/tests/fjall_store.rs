//! The embedded fjall span store: the shared conformance suite, plus what only an
//! embedded store has to prove (reopen, `kill -9` durability, on-disk corruption, locking).

use clew_proto::Tenant;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clew_proto::{RejectReason, Span, SpanKind, TraceId};
use clew_store::conformance::fixtures::{
    checkout_trace, now_unix_nano, span, span_id, trace_id, wide_trace, BASE_TIME,
};
use clew_store::conformance::span_store::{run_all, StoreBackend, SuiteParams};
use clew_store::embedded::fjall_store::FjallSpanStore;
use clew_store::{Common, EmbeddedStoreConfig, SpanStore, StoredTrace};

const CRASH_DIR_ENV: &str = "CLEW_TEST_CRASH_CHILD_DIR";

fn config(max_spans_per_trace: u32, max_bytes_per_trace: u64) -> EmbeddedStoreConfig {
    EmbeddedStoreConfig {
        max_spans_per_trace,
        max_bytes_per_trace,
        cache_mb: 16,
        ..EmbeddedStoreConfig::default()
    }
}

fn common(dir: &Path, retention_days: u32) -> Common {
    Common {
        data_dir: dir.to_path_buf(),
        retention: clew_store::conformance::retention_classes(retention_days),
        indexed_attributes: vec![],
    }
}

fn open(dir: &Path, max_spans_per_trace: u32) -> Arc<dyn SpanStore> {
    Arc::new(
        FjallSpanStore::open(&config(max_spans_per_trace, 64 << 20), &common(dir, 7))
            .expect("open fjall store"),
    )
}

fn sorted(mut spans: Vec<Span>) -> Vec<Span> {
    spans.sort_by_key(|s| (s.span_id.0, s.kind.as_i32()));
    spans
}

async fn fetch(store: &Arc<dyn SpanStore>, id: TraceId) -> StoredTrace {
    store
        .get_trace(&Tenant::default(), id)
        .await
        .expect("get_trace")
        .unwrap_or_else(|| panic!("trace {id} should exist"))
}

/// Each store in its own temporary directory, kept until the suite ends.
#[derive(Default)]
struct Fjall {
    dirs: Mutex<Vec<tempfile::TempDir>>,
}

impl Fjall {
    fn open_in(dir: &Path, params: SuiteParams) -> Arc<dyn SpanStore> {
        Arc::new(
            FjallSpanStore::open(
                &config(params.max_spans_per_trace, 64 << 20),
                &common(dir, params.retention_days),
            )
            .expect("open fjall store"),
        )
    }
}

#[async_trait::async_trait]
impl StoreBackend for Fjall {
    async fn open(&self, params: SuiteParams) -> Arc<dyn SpanStore> {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Fjall::open_in(dir.path(), params);
        self.dirs.lock().unwrap().push(dir);
        store
    }

    async fn reopen(&self, params: SuiteParams) -> Arc<dyn SpanStore> {
        let dirs = self.dirs.lock().unwrap();
        Fjall::open_in(dirs.last().expect("a store was opened").path(), params)
    }
}

/// Every case of the shared suite; fjall can do everything it asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    run_all(&Fjall::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_and_caps_survive_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_unix_nano();
    let checkout = checkout_trace(trace_id(1), "order-1", now, true);
    let big = wide_trace(trace_id(2), 8, now);
    {
        let store = open(dir.path(), 5);
        let batch: Vec<Span> = checkout.iter().chain(&big).cloned().collect();
        let report = store.write_spans(batch.into()).await.unwrap();
        assert_eq!(report.rejected.len(), 3);
        store.close().await.unwrap();
    }
    let store = open(dir.path(), 5);
    assert_eq!(
        sorted(fetch(&store, trace_id(1)).await.spans),
        sorted(checkout.clone())
    );
    let got = fetch(&store, trace_id(2)).await;
    assert!(got.truncated, "the truncated flag is persisted");
    assert_eq!(sorted(got.spans), sorted(big[..5].to_vec()));

    // the per-trace counts were persisted too: a replay is fine, a new span is still refused,
    // and a late span of the other trace still joins it
    let late = span(
        trace_id(1),
        span_id(9),
        Some(span_id(1)),
        "frontend",
        "late",
        now,
        5,
    );
    let report = store
        .write_spans(vec![big[0].clone(), big[6].clone(), late.clone()].into())
        .await
        .unwrap();
    assert_eq!(report.rejected, vec![(1, RejectReason::TraceTooLarge)]);
    let mut want = checkout;
    want.push(late);
    assert_eq!(sorted(fetch(&store, trace_id(1)).await.spans), sorted(want));
}

/// A tenant moved to another retention class between restarts: what it wrote in the old
/// class is still read (every class's buckets are read), a late span of that trace joins
/// the old bucket (one row), new traces go to the new class, and each bucket expires by the
/// class it was written in, not by the tenant's class of now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_moved_to_another_class_keeps_what_it_wrote() {
    use clew_store::conformance::fixtures::in_tenant;
    use clew_store::RetentionClasses;
    const DAY: u64 = 86_400 * 1_000_000_000;
    let dir = tempfile::tempdir().unwrap();
    let shop = Tenant::parse("shop").unwrap();
    let open_with = |classes: RetentionClasses| -> Arc<dyn SpanStore> {
        let common = Common {
            data_dir: dir.path().to_path_buf(),
            retention: classes,
            indexed_attributes: vec![],
        };
        Arc::new(FjallSpanStore::open(&config(100, 64 << 20), &common).expect("open"))
    };
    let now = now_unix_nano();
    let old = in_tenant(checkout_trace(trace_id(1), "moved-1", now, false), "shop");
    {
        // shop keeps 2 days
        let store = open_with(RetentionClasses::new(7, [(shop.clone(), 2)]));
        store.write_spans(old.clone().into()).await.unwrap();
        store.close().await.unwrap();
    }
    // now shop keeps 30 days
    let store = open_with(RetentionClasses::new(7, [(shop.clone(), 30)]));
    let got = store.get_trace(&shop, trace_id(1)).await.unwrap();
    assert_eq!(
        sorted(got.expect("read from the 2-day class").spans),
        sorted(old.clone())
    );
    let mut late = old[0].clone();
    late.span_id = span_id(77);
    let new = in_tenant(checkout_trace(trace_id(2), "moved-2", now, false), "shop");
    let batch: Vec<Span> = new.iter().cloned().chain([late.clone()]).collect();
    store.write_spans(batch.into()).await.unwrap();
    let mut with_late = old.clone();
    with_late.push(late);
    let got = store.get_trace(&shop, trace_id(1)).await.unwrap().unwrap();
    assert_eq!(
        sorted(got.spans),
        sorted(with_late),
        "the late span joined the old row"
    );

    // past 2 days: the old class's bucket goes (its own horizon), the new class's stays
    let dropped = store.drop_expired(now + 4 * DAY).await.unwrap();
    assert_eq!(dropped, 1, "the 2-day bucket only");
    assert_eq!(store.get_trace(&shop, trace_id(1)).await.unwrap(), None);
    let got = store.get_trace(&shop, trace_id(2)).await.unwrap();
    assert_eq!(sorted(got.expect("30-day class").spans), sorted(new));
    assert_eq!(store.drop_expired(now + 20 * DAY).await.unwrap(), 0);
    assert!(store.get_trace(&shop, trace_id(2)).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_cap_rejects_spans_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn SpanStore> =
        Arc::new(FjallSpanStore::open(&config(50_000, 1024), &common(dir.path(), 7)).unwrap());
    let t = wide_trace(trace_id(3), 40, now_unix_nano());
    let report = store.write_spans(t.clone().into()).await.unwrap();
    assert!(
        !report.rejected.is_empty(),
        "40 spans of ~200 bytes exceed 1 KiB"
    );
    assert!(report
        .rejected
        .iter()
        .all(|(_, r)| *r == RejectReason::TraceTooLarge));
    let got = fetch(&store, trace_id(3)).await;
    assert!(got.truncated);
    assert_eq!(got.spans.len() + report.rejected.len(), t.len());
    let stored: usize = got
        .spans
        .iter()
        .map(|s| clew_proto::encoding::encode_span_to_vec(s).len())
        .sum();
    assert!(
        stored <= 1024,
        "stored {stored} bytes under a 1024-byte cap"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_span_joins_the_older_bucket_holding_its_trace() {
    const DAY: u64 = 86_400 * 1_000_000_000;
    let dir = tempfile::tempdir().unwrap();
    let now = now_unix_nano();
    let today = now / DAY;
    let t = checkout_trace(trace_id(5), "order-5", now, false);
    {
        let store = open(dir.path(), 100);
        store.write_spans(t.clone().into()).await.unwrap();
        store.close().await.unwrap();
    }
    {
        // age the trace: move its bucket (both keyspaces) from today to three days ago
        let db = fjall::Database::builder(dir.path().join("spans"))
            .open()
            .unwrap();
        for part in [".cells", ".metas"] {
            let new = raw_keyspace(&db, &format!("day-{today}{part}"));
            let old = raw_keyspace(&db, &format!("day-{}{part}", today - 3));
            for item in new.iter() {
                let (k, v) = item.into_inner().unwrap();
                old.insert(k, v).unwrap();
            }
            db.delete_keyspace(new).unwrap();
        }
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let late = span(
        trace_id(5),
        span_id(9),
        Some(span_id(1)),
        "frontend",
        "late",
        now,
        5,
    );
    {
        let store = open(dir.path(), 100);
        store
            .write_spans(vec![late.clone(), t[0].clone()].into())
            .await
            .unwrap();
        let mut want = t.clone();
        want.push(late.clone());
        assert_eq!(sorted(fetch(&store, trace_id(5)).await.spans), sorted(want));
        store.close().await.unwrap();
    }
    {
        let db = fjall::Database::builder(dir.path().join("spans"))
            .open()
            .unwrap();
        let old = raw_keyspace(&db, &format!("day-{}.cells", today - 3));
        assert_eq!(
            cells_of(&old, trace_id(5)),
            5,
            "the 4 cells and the late one, all in the old bucket"
        );
        let old_metas = raw_keyspace(&db, &format!("day-{}.metas", today - 3));
        assert_eq!(
            old_metas.prefix(trace_id(5).0).count(),
            1 + 2,
            "the meta and the stamp entries of the two batches, in the old bucket"
        );
        for part in [".cells", ".metas"] {
            let name = format!("day-{today}{part}");
            if db.keyspace_exists(&name) {
                let new = raw_keyspace(&db, &name);
                assert_eq!(cells_of(&new, trace_id(5)), 0);
                assert_eq!(new.prefix(trace_id(5).0).count(), 0);
            }
        }
    }
    // with 7 days of retention the old bucket expires 5 days from now, and the trace with it
    let store = open(dir.path(), 100);
    assert_eq!(store.drop_expired(now).await.unwrap(), 0);
    assert_eq!(store.drop_expired(now + 5 * DAY).await.unwrap(), 1);
    assert_eq!(
        store
            .get_trace(&Tenant::default(), trace_id(5))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_open_of_same_directory_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path(), 100);
    first.ready().await.expect("a fresh store is ready");
    let second = FjallSpanStore::open(&config(100, 64 << 20), &common(dir.path(), 7));
    assert!(second.is_err());
}

#[test]
fn unusable_data_dir_is_a_retryable_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("spans"), b"not a directory").unwrap();
    let err = FjallSpanStore::open(&config(100, 64 << 20), &common(dir.path(), 7))
        .err()
        .expect("open must fail");
    assert!(err.is_retryable(), "{err}");
}

/// The spans of crash-test batch `b`: three new traces, plus a late span of batch `b-1`'s
/// first trace.
fn crash_batch(b: u64) -> Vec<Span> {
    let mut spans: Vec<Span> = (0..3)
        .flat_map(|k| {
            checkout_trace(
                trace_id(1_000_000 + b * 3 + k),
                "order",
                BASE_TIME + b,
                k == 1,
            )
        })
        .collect();
    if b > 0 {
        spans.push(late_span(b - 1));
    }
    spans
}

fn late_span(of_batch: u64) -> Span {
    span(
        trace_id(1_000_000 + of_batch * 3),
        span_id(100),
        Some(span_id(1)),
        "late",
        "late-op",
        BASE_TIME,
        7,
    )
}

/// Child half of [`acknowledged_spans_survive_kill_9`]: writes batches until killed,
/// printing `ACK <n>` only after `write_spans` returned Ok.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper process of acknowledged_spans_survive_kill_9"]
async fn crash_child_writer() {
    let Ok(dir) = std::env::var(CRASH_DIR_ENV) else {
        return;
    };
    let store = open(Path::new(&dir), 50_000);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut out = std::io::stdout();
    for b in 0..100_000u64 {
        if Instant::now() > deadline {
            break;
        }
        let report = store
            .write_spans(crash_batch(b).into())
            .await
            .expect("child write");
        assert!(report.rejected.is_empty());
        writeln!(out, "ACK {b}").unwrap();
        out.flush().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_spans_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child_writer",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child writer");
    let stdout = child.stdout.take().unwrap();
    let lines = BufReader::new(stdout).lines();
    let mut acked: Vec<u64> = Vec::new();
    let mut killed = false;
    for line in lines {
        let line = line.expect("child stdout");
        // the harness may print "test crash_child_writer ... " on the same line as the first ack
        if let Some(at) = line.find("ACK ") {
            acked.push(line[at + 4..].trim().parse().expect("batch number"));
        }
        if !killed && acked.len() >= 40 {
            // SIGKILL while the child is in the middle of its next writes
            child.kill().expect("kill child");
            killed = true;
        }
    }
    let status = child.wait().unwrap();
    assert!(
        killed,
        "child ended before it was killed: {status:?}, {} acks",
        acked.len()
    );
    assert!(acked.len() >= 40);

    let store = open(dir.path(), 50_000);
    let last = *acked.last().unwrap();
    assert_eq!(acked, (0..=last).collect::<Vec<_>>(), "acks are in order");
    for &b in &acked {
        for k in 0..3 {
            let id = trace_id(1_000_000 + b * 3 + k);
            let got = store
                .get_trace(&Tenant::default(), id)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("acked trace of batch {b} lost"));
            let mut want = checkout_trace(id, "order", BASE_TIME + b, k == 1);
            if k == 0 && b < last {
                want.push(late_span(b)); // written by the acked batch b + 1
            }
            let got = sorted(got.spans);
            for w in &want {
                assert!(
                    got.contains(w),
                    "acked span {} of batch {b} lost",
                    w.span_id
                );
            }
        }
    }
    eprintln!(
        "kill -9 after {} acknowledged batches: all readable after reopen",
        acked.len()
    );
}

/// Rough per-span write cost (not a benchmark; debug builds are slow). Run with
/// `cargo test -p clew-store --features conformance --test fjall_store -- --ignored --nocapture write_cost`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "micro-measure, prints numbers"]
async fn write_cost_micro_measure() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 50_000);
    let now = now_unix_nano();
    let batches: Vec<Arc<[Span]>> = (0..200u64)
        .map(|b| {
            (0..50u64)
                .flat_map(|t| wide_trace(trace_id(b * 50 + t), 20, now))
                .collect::<Vec<_>>()
                .into()
        })
        .collect();
    let spans: usize = batches.iter().map(|b| b.len()).sum();
    let started = Instant::now();
    for batch in batches {
        store.write_spans(batch).await.unwrap();
    }
    let elapsed = started.elapsed();
    let ids: Vec<TraceId> = (0..10_000u64).step_by(7).map(trace_id).collect();
    let read_started = Instant::now();
    for id in &ids {
        store
            .get_trace(&Tenant::default(), *id)
            .await
            .unwrap()
            .unwrap();
    }
    let read = read_started.elapsed();
    eprintln!(
        "wrote {spans} spans in {elapsed:?}: {:.2} µs/span ({} spans/batch, one fsync per batch); get_trace {:.0} µs avg",
        elapsed.as_secs_f64() * 1e6 / spans as f64,
        1000,
        read.as_secs_f64() * 1e6 / ids.len() as f64
    );
}

// ---- the time-keyed layout (ADR 0001, "fjall mapping") and the buckets of before it ----

const DAY: u64 = 86_400 * 1_000_000_000;

/// Opens (or creates) a keyspace of the store's database behind its back.
fn raw_keyspace(db: &fjall::Database, name: &str) -> fjall::Keyspace {
    db.keyspace(name, fjall::KeyspaceCreateOptions::default)
        .unwrap()
}

fn raw_db(dir: &Path) -> fjall::Database {
    fjall::Database::builder(dir.join("spans")).open().unwrap()
}

/// Length of a time-keyed cell key of tenant `default`: stamp, trace id, span id, kind.
const TIMED_CELL_LEN: usize = 8 + 16 + 9;

/// Cells of `trace` (tenant `default`) in a time-keyed cells keyspace.
fn cells_of(cells: &fjall::Keyspace, trace: TraceId) -> usize {
    cells
        .iter()
        .map(|item| item.key().unwrap())
        .filter(|k| k.len() == TIMED_CELL_LEN && k[8..24] == trace.0)
        .count()
}

/// The stamps of the stamp entries of `trace` (tenant `default`) in a metas keyspace.
fn stamps_of(metas: &fjall::Keyspace, trace: TraceId) -> Vec<[u8; 8]> {
    let mut prefix = trace.0.to_vec();
    prefix.push(1);
    metas
        .prefix(&prefix)
        .map(|item| item.key().unwrap()[17..].try_into().unwrap())
        .collect()
}

fn kind_byte(span: &Span) -> u8 {
    span.kind.as_i32() as u8
}

/// A tiny writer of the layout of before time-keyed cells (one keyspace per bucket,
/// `trace ++ 0x00` → v1 meta, `trace ++ span id ++ kind` → encoded span), kept here
/// independent of the store's code: the rows a store of before wrote, byte for byte.
fn write_row_of_before(rows: &fjall::Keyspace, trace: TraceId, spans: &[Span], truncated: bool) {
    let mut bytes = 0u64;
    for s in spans {
        let encoded = clew_proto::encoding::encode_span_to_vec(s);
        bytes += encoded.len() as u64;
        let mut key = trace.0.to_vec();
        key.extend_from_slice(&s.span_id.0);
        key.push(kind_byte(s));
        rows.insert(key, encoded).unwrap();
    }
    let mut meta = vec![1u8];
    meta.extend_from_slice(&(spans.len() as u32).to_le_bytes());
    meta.extend_from_slice(&bytes.to_le_bytes());
    meta.push(u8::from(truncated));
    let mut key = trace.0.to_vec();
    key.push(0);
    rows.insert(key, meta).unwrap();
}

/// A data directory written before time-keyed cells (row buckets only) is read, and
/// written, by this version: rows read whole, a late span joins its row in the row bucket
/// (so a re-delivery is found there and not stored twice), the cap and truncated flag of
/// the old meta hold, and new traces start in a time-keyed bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_row_buckets_is_read_and_written() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_unix_nano();
    let today = now / DAY;
    let recent = checkout_trace(trace_id(20), "order-20", now, false);
    let full = wide_trace(trace_id(21), 7, now);
    {
        let db = raw_db(dir.path());
        write_row_of_before(
            &raw_keyspace(&db, &format!("day-{today}")),
            trace_id(20),
            &recent,
            false,
        );
        // yesterday's bucket, its trace at the cap of 5 spans
        write_row_of_before(
            &raw_keyspace(&db, &format!("day-{}", today - 1)),
            trace_id(21),
            &full[..5],
            false,
        );
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let new = checkout_trace(trace_id(22), "order-22", now, false);
    let late = span(
        trace_id(20),
        span_id(9),
        Some(span_id(1)),
        "frontend",
        "late",
        now,
        5,
    );
    let mut want = recent.clone();
    want.push(late.clone());
    {
        let store = open(dir.path(), 5);
        assert_eq!(
            sorted(fetch(&store, trace_id(20)).await.spans),
            sorted(recent.clone())
        );
        let got = fetch(&store, trace_id(21)).await;
        assert!(!got.truncated);
        assert_eq!(sorted(got.spans), sorted(full[..5].to_vec()));

        // a re-delivery and a late span of each old trace, and a new trace
        let batch: Vec<Span> = [
            recent[0].clone(),
            late.clone(),
            full[2].clone(),
            full[5].clone(),
        ]
        .into_iter()
        .chain(new.iter().cloned())
        .collect();
        let report = store.write_spans(batch.into()).await.unwrap();
        assert_eq!(
            report.rejected,
            vec![(3, RejectReason::TraceTooLarge)],
            "trace 21 was at its cap of 5: its new span is refused, its re-delivery is not"
        );
        assert_eq!(
            sorted(fetch(&store, trace_id(20)).await.spans),
            sorted(want.clone())
        );
        let got = fetch(&store, trace_id(21)).await;
        assert!(got.truncated, "the old meta's count held the cap");
        assert_eq!(sorted(got.spans), sorted(full[..5].to_vec()));
        assert_eq!(
            sorted(fetch(&store, trace_id(22)).await.spans),
            sorted(new.clone())
        );
        store.close().await.unwrap();
    }
    {
        let db = raw_db(dir.path());
        let rows = raw_keyspace(&db, &format!("day-{today}"));
        assert_eq!(
            rows.prefix(trace_id(20).0).count(),
            1 + recent.len() + 1,
            "meta, the old cells and the late one: one row in the row bucket, no cell twice"
        );
        assert_eq!(rows.prefix(trace_id(22).0).count(), 0);
        let cells = raw_keyspace(&db, &format!("day-{today}.cells"));
        let metas = raw_keyspace(&db, &format!("day-{today}.metas"));
        assert_eq!(cells_of(&cells, trace_id(22)), new.len());
        assert_eq!(cells_of(&cells, trace_id(20)), 0);
        assert_eq!(stamps_of(&metas, trace_id(22)).len(), 1);
        assert_eq!(metas.prefix(trace_id(20).0).count(), 0);
    }
    // a mixed store reopens as such, and the row buckets expire as before
    let store = open(dir.path(), 5);
    assert_eq!(
        sorted(fetch(&store, trace_id(20)).await.spans),
        sorted(want)
    );
    assert_eq!(sorted(fetch(&store, trace_id(22)).await.spans), sorted(new));
    assert_eq!(
        store.drop_expired(now + 7 * DAY).await.unwrap(),
        1,
        "yesterday's row bucket only"
    );
    assert_eq!(
        store
            .get_trace(&Tenant::default(), trace_id(21))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.drop_expired(now + 9 * DAY).await.unwrap(),
        2,
        "today's row bucket and today's time-keyed bucket"
    );
    for id in [20, 22] {
        assert_eq!(
            store
                .get_trace(&Tenant::default(), trace_id(id))
                .await
                .unwrap(),
            None
        );
    }
}

/// A trace written by several batches (and across a reopen) has cells under several
/// stamps: it reads whole, re-deliveries are found under every stamp (stored once, counted
/// once against the cap), and every batch's cells sort after the batches before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_of_several_stamps_reads_whole_and_redelivery_stays_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_unix_nano();
    let today = now / DAY;
    let w = wide_trace(trace_id(30), 12, now);
    let other = |n: u64| wide_trace(trace_id(n), 3, now);
    {
        let store = open(dir.path(), 10);
        // other traces in between, so the row's stamps are not neighbours
        let b1: Vec<Span> = w[..3].iter().cloned().chain(other(31)).collect();
        let b2: Vec<Span> = other(32)
            .into_iter()
            .chain(w[3..6].iter().cloned())
            .collect();
        assert!(store
            .write_spans(b1.into())
            .await
            .unwrap()
            .rejected
            .is_empty());
        assert!(store
            .write_spans(b2.into())
            .await
            .unwrap()
            .rejected
            .is_empty());
        assert_eq!(
            sorted(fetch(&store, trace_id(30)).await.spans),
            sorted(w[..6].to_vec())
        );
        store.close().await.unwrap();
    }
    {
        // after a reopen: everything again (under both stamps) and two new spans
        let store = open(dir.path(), 10);
        let b3: Vec<Span> = w[..8].iter().cloned().chain(other(33)).collect();
        assert!(store
            .write_spans(b3.into())
            .await
            .unwrap()
            .rejected
            .is_empty());
        let got = fetch(&store, trace_id(30)).await;
        assert!(!got.truncated);
        assert_eq!(
            sorted(got.spans),
            sorted(w[..8].to_vec()),
            "one copy of each"
        );
        // 8 counted: 2 more fit the cap of 10, the rest is refused; a re-delivery is not
        let b4: Vec<Span> = w[8..].iter().cloned().chain([w[1].clone()]).collect();
        let report = store.write_spans(b4.into()).await.unwrap();
        assert_eq!(
            report.rejected,
            vec![
                (2, RejectReason::TraceTooLarge),
                (3, RejectReason::TraceTooLarge)
            ]
        );
        let got = fetch(&store, trace_id(30)).await;
        assert!(got.truncated);
        assert_eq!(sorted(got.spans), sorted(w[..10].to_vec()));
        store.close().await.unwrap();
    }
    let db = raw_db(dir.path());
    let cells = raw_keyspace(&db, &format!("day-{today}.cells"));
    let metas = raw_keyspace(&db, &format!("day-{today}.metas"));
    let stamps = stamps_of(&metas, trace_id(30));
    assert_eq!(
        stamps.len(),
        4,
        "one stamp entry per batch that stored cells"
    );
    assert_eq!(cells_of(&cells, trace_id(30)), 10);
    // in key order, the cells come batch by batch: trace 31 (batch 1) < 32 (2) < 33 (3)
    let batch_of = |k: &[u8]| -> Option<u64> { (31..=33).find(|&n| k[8..24] == trace_id(n).0) };
    let order: Vec<u64> = cells
        .iter()
        .map(|item| item.key().unwrap())
        .filter_map(|k| batch_of(&k[..]))
        .collect();
    assert_eq!(order.len(), 9);
    assert!(order.windows(2).all(|p| p[0] <= p[1]), "{order:?}");
    assert!(stamps.windows(2).all(|p| p[0] < p[1]), "{stamps:?}");
}

/// Retention drops a time-keyed bucket whole (both keyspaces, counted as one bucket), and
/// a lone cells keyspace that a crash in the middle of a drop left is dropped by the next
/// run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_both_keyspaces_of_a_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_unix_nano();
    let today = now / DAY;
    let t = checkout_trace(trace_id(40), "order-40", now, false);
    {
        let store = open(dir.path(), 100);
        store.write_spans(t.clone().into()).await.unwrap();
        store.close().await.unwrap();
    }
    {
        let db = raw_db(dir.path());
        let names = db.list_keyspace_names();
        for part in [".cells", ".metas"] {
            assert!(
                names
                    .iter()
                    .any(|n| n.to_string() == format!("day-{today}{part}")),
                "{names:?}"
            );
        }
        // what a crash between the two deletions of a drop leaves (the metas go first)
        let lone = raw_keyspace(&db, &format!("day-{}.cells", today - 20));
        lone.insert(vec![0u8; TIMED_CELL_LEN], b"x".to_vec())
            .unwrap();
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let store = open(dir.path(), 100);
    assert_eq!(
        store.drop_expired(now).await.unwrap(),
        1,
        "the left-over of 20 days ago"
    );
    assert_spans_eq(&fetch(&store, trace_id(40)).await, &t);
    assert_eq!(store.drop_expired(now + 9 * DAY).await.unwrap(), 1);
    assert_eq!(
        store
            .get_trace(&Tenant::default(), trace_id(40))
            .await
            .unwrap(),
        None
    );
    store.close().await.unwrap();
    drop(store);
    let db = raw_db(dir.path());
    let left: Vec<String> = db
        .list_keyspace_names()
        .iter()
        .map(|n| n.to_string())
        .filter(|n| n.starts_with("day-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

fn assert_spans_eq(got: &StoredTrace, want: &[Span]) {
    assert_eq!(sorted(got.spans.clone()), sorted(want.to_vec()));
}

/// An unreadable meta cell of a time-keyed row is rebuilt from the row's cells under its
/// stamps: the cap still counts what is stored and re-deliveries stay duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_meta_of_a_time_keyed_row_is_recounted() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_unix_nano();
    let today = now / DAY;
    let w = wide_trace(trace_id(50), 8, now);
    {
        let store = open(dir.path(), 6);
        store.write_spans(w[..2].to_vec().into()).await.unwrap();
        store.write_spans(w[2..4].to_vec().into()).await.unwrap();
        store.close().await.unwrap();
    }
    {
        let db = raw_db(dir.path());
        let metas = raw_keyspace(&db, &format!("day-{today}.metas"));
        let mut key = trace_id(50).0.to_vec();
        key.push(0);
        metas.insert(key, vec![9u8, 9, 9]).unwrap();
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let store = open(dir.path(), 6);
    assert_spans_eq(&fetch(&store, trace_id(50)).await, &w[..4]);
    // recounted as 4 spans: two of the four new ones fit, the re-deliveries are duplicates
    let batch: Vec<Span> = [w[0].clone(), w[3].clone()]
        .into_iter()
        .chain(w[4..].iter().cloned())
        .collect();
    let report = store.write_spans(batch.into()).await.unwrap();
    assert_eq!(
        report.rejected,
        vec![
            (4, RejectReason::TraceTooLarge),
            (5, RejectReason::TraceTooLarge)
        ]
    );
    let got = fetch(&store, trace_id(50)).await;
    assert!(got.truncated);
    assert_spans_eq(&got, &w[..6]);
}

/// A garbage cell under one of a time-keyed row's stamps is skipped, the rest is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_time_keyed_cell_is_skipped_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_unix_nano();
    let today = now / DAY;
    let t = checkout_trace(trace_id(60), "order-60", now, false);
    {
        let store = open(dir.path(), 100);
        store.write_spans(t.clone().into()).await.unwrap();
        store.close().await.unwrap();
    }
    {
        let db = raw_db(dir.path());
        let metas = raw_keyspace(&db, &format!("day-{today}.metas"));
        let cells = raw_keyspace(&db, &format!("day-{today}.cells"));
        let stamps = stamps_of(&metas, trace_id(60));
        assert_eq!(stamps.len(), 1);
        let mut key = stamps[0].to_vec();
        key.extend_from_slice(&trace_id(60).0);
        key.extend_from_slice(&span_id(77).0);
        key.push(SpanKind::Internal.as_i32() as u8);
        cells.insert(key, vec![9u8, 1, 2, 3]).unwrap();
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let store = open(dir.path(), 100);
    assert_spans_eq(&fetch(&store, trace_id(60)).await, &t);
}

/// A row bucket of tenants other than `default` (`day-<N>-t`, rows `sha256(tenant)[..8] ++
/// trace id`, v2 metas naming the tenant), as a store of before wrote it: read by its
/// tenant only, and a late span joins the row there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenanted_row_bucket_of_before_is_read_and_written() {
    use clew_store::conformance::fixtures::in_tenant;
    let dir = tempfile::tempdir().unwrap();
    let now = now_unix_nano();
    let today = now / DAY;
    let shop = Tenant::parse("shop").unwrap();
    let t = in_tenant(checkout_trace(trace_id(70), "order-70", now, false), "shop");
    let mut row = shop.key_prefix().unwrap().to_vec();
    row.extend_from_slice(&trace_id(70).0);
    {
        let db = raw_db(dir.path());
        let rows = raw_keyspace(&db, &format!("day-{today}-t"));
        let mut bytes = 0u64;
        for s in &t {
            let encoded = clew_proto::encoding::encode_span_to_vec(s);
            bytes += encoded.len() as u64;
            let mut key = row.clone();
            key.extend_from_slice(&s.span_id.0);
            key.push(kind_byte(s));
            rows.insert(key, encoded).unwrap();
        }
        let mut meta = vec![2u8];
        meta.extend_from_slice(&(t.len() as u32).to_le_bytes());
        meta.extend_from_slice(&bytes.to_le_bytes());
        meta.push(0);
        meta.push(4);
        meta.extend_from_slice(b"shop");
        let mut key = row.clone();
        key.push(0);
        rows.insert(key, meta).unwrap();
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let mut late = t[0].clone();
    late.span_id = span_id(88);
    {
        let store = open(dir.path(), 100);
        assert_eq!(
            store
                .get_trace(&Tenant::default(), trace_id(70))
                .await
                .unwrap(),
            None,
            "another tenant's row"
        );
        let got = store.get_trace(&shop, trace_id(70)).await.unwrap().unwrap();
        assert_spans_eq(&got, &t);
        let report = store
            .write_spans(vec![t[1].clone(), late.clone()].into())
            .await
            .unwrap();
        assert!(report.rejected.is_empty());
        let mut want = t.clone();
        want.push(late);
        let got = store.get_trace(&shop, trace_id(70)).await.unwrap().unwrap();
        assert_spans_eq(&got, &want);
        store.close().await.unwrap();
    }
    let db = raw_db(dir.path());
    let rows = raw_keyspace(&db, &format!("day-{today}-t"));
    assert_eq!(
        rows.prefix(&row).count(),
        1 + t.len() + 1,
        "meta, the cells of before and the late one, once each"
    );
}
