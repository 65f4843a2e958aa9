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
async fn undecodable_cell_is_skipped_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let t = checkout_trace(trace_id(4), "order-4", now_unix_nano(), false);
    {
        let store = open(dir.path(), 100);
        store.write_spans(t.clone().into()).await.unwrap();
        store.close().await.unwrap();
    }
    {
        // damage the row behind the store's back: one garbage cell in the trace's bucket
        let db = fjall::Database::builder(dir.path().join("spans"))
            .open()
            .unwrap();
        let name = db
            .list_keyspace_names()
            .into_iter()
            .find(|n| n.starts_with("day-"))
            .expect("a day bucket");
        let ks = db
            .keyspace(&name, fjall::KeyspaceCreateOptions::default)
            .unwrap();
        let mut key = trace_id(4).0.to_vec();
        key.extend_from_slice(&span_id(77).0);
        key.push(SpanKind::Internal.as_i32() as u8);
        ks.insert(key, vec![9u8, 1, 2, 3]).unwrap();
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let store = open(dir.path(), 100);
    let got = fetch(&store, trace_id(4)).await;
    assert_eq!(sorted(got.spans), sorted(t));
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
        // age the trace: move its row from today's bucket to the bucket of three days ago
        let db = fjall::Database::builder(dir.path().join("spans"))
            .open()
            .unwrap();
        let new = db
            .keyspace(
                &format!("day-{today}"),
                fjall::KeyspaceCreateOptions::default,
            )
            .unwrap();
        let old = db
            .keyspace(
                &format!("day-{}", today - 3),
                fjall::KeyspaceCreateOptions::default,
            )
            .unwrap();
        for item in new.iter() {
            let (k, v) = item.into_inner().unwrap();
            old.insert(k, v).unwrap();
        }
        db.delete_keyspace(new).unwrap();
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
        let old = db
            .keyspace(
                &format!("day-{}", today - 3),
                fjall::KeyspaceCreateOptions::default,
            )
            .unwrap();
        assert_eq!(
            old.prefix(trace_id(5).0).count(),
            1 + 5,
            "meta + 5 cells, all in the old bucket"
        );
        if db.keyspace_exists(&format!("day-{today}")) {
            let new = db
                .keyspace(
                    &format!("day-{today}"),
                    fjall::KeyspaceCreateOptions::default,
                )
                .unwrap();
            assert_eq!(new.prefix(trace_id(5).0).count(), 0);
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
