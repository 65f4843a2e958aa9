//! The embedded tantivy index against the trace-index conformance suite, plus reopen and
//! crash (kill -9) durability through its write-ahead log.

use clew_proto::Tenant;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use clew_store::conformance::fixtures::{checkout_trace, trace_id, BASE_TIME};
use clew_store::conformance::trace_index::{
    self, IndexBackend, INDEXED_ATTRIBUTES, RETENTION_DAYS,
};
use clew_store::embedded::tantivy_index::TantivyTraceIndex;
use clew_store::{Common, EmbeddedIndexConfig, TraceIndex, TraceQuery};

fn common(dir: &Path) -> Common {
    Common {
        data_dir: dir.to_path_buf(),
        retention: clew_store::conformance::trace_index::retention_classes(RETENTION_DAYS),
        indexed_attributes: INDEXED_ATTRIBUTES.iter().map(|s| s.to_string()).collect(),
    }
}

fn open(dir: &Path, commit_interval_ms: u64) -> TantivyTraceIndex {
    let config = EmbeddedIndexConfig {
        commit_interval_ms,
        writer_memory_mb: 32,
    };
    TantivyTraceIndex::open(&config, &common(dir)).expect("open index")
}

fn key(order: &str) -> TraceQuery {
    TraceQuery {
        business_keys: vec![("order_id".into(), order.into())],
        limit: 10,
        ..Default::default()
    }
}

/// Each index in its own temporary directory, kept until the suite ends.
#[derive(Default)]
struct Tantivy {
    dirs: std::sync::Mutex<Vec<tempfile::TempDir>>,
}

#[async_trait::async_trait]
impl IndexBackend for Tantivy {
    async fn open(&self) -> Arc<dyn TraceIndex> {
        let dir = tempfile::tempdir().unwrap();
        let idx: Arc<dyn TraceIndex> = Arc::new(open(dir.path(), 1000));
        self.dirs.lock().unwrap().push(dir);
        idx
    }

    async fn reopen(&self) -> Arc<dyn TraceIndex> {
        let dirs = self.dirs.lock().unwrap();
        Arc::new(open(dirs.last().expect("an index was opened").path(), 1000))
    }
}

/// Every case of the shared suite; tantivy can do everything it asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    trace_index::run_all(&Tantivy::default()).await;
}

/// A tenant moved to another retention class between restarts: its documents in the old
/// class's partition (`YYYY-MM-DD.t.r2`) are still found, new ones go to the new class's
/// partition of the same day (`.t.r30`), and each partition is dropped by the class it
/// was written in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_moved_to_another_class_keeps_what_it_wrote() {
    use clew_store::conformance::fixtures::in_tenant;
    use clew_store::RetentionClasses;
    const DAY: u64 = 86_400 * 1_000_000_000;
    let dir = tempfile::tempdir().unwrap();
    let shop = Tenant::parse("shop").unwrap();
    let open_with = |classes: RetentionClasses| {
        let common = Common {
            retention: classes,
            ..common(dir.path())
        };
        let config = EmbeddedIndexConfig {
            commit_interval_ms: 1000,
            writer_memory_mb: 32,
        };
        TantivyTraceIndex::open(&config, &common).expect("open index")
    };
    async fn found(idx: &TantivyTraceIndex, order: &str) -> usize {
        let shop = Tenant::parse("shop").unwrap();
        idx.find_trace_ids(&shop, &key(order))
            .await
            .unwrap()
            .hits
            .len()
    }
    let doc = |id, order| {
        in_tenant(
            checkout_trace(trace_id(id), order, BASE_TIME, false),
            "shop",
        )
    };
    {
        let idx = open_with(RetentionClasses::new(7, [(shop.clone(), 2)]));
        idx.index_spans(doc(1, "in-r2").into()).await.unwrap();
        idx.close().await.unwrap();
    }
    let idx = open_with(RetentionClasses::new(7, [(shop.clone(), 30)]));
    idx.index_spans(doc(2, "in-r30").into()).await.unwrap();
    idx.refresh().await.unwrap();
    assert_eq!(
        found(&idx, "in-r2").await,
        1,
        "the old class's partition is searched"
    );
    assert_eq!(found(&idx, "in-r30").await, 1);
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("index").join("days"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["2023-11-14.t.r2", "2023-11-14.t.r30"]);

    assert_eq!(
        idx.drop_expired(BASE_TIME + 4 * DAY).await.unwrap(),
        1,
        "r2 only"
    );
    idx.refresh().await.unwrap();
    assert_eq!(found(&idx, "in-r2").await, 0);
    assert_eq!(found(&idx, "in-r30").await, 1);
    idx.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    {
        let idx = open(dir.path(), 1000);
        idx.index_spans(checkout_trace(trace_id(1), "committed", BASE_TIME, true).into())
            .await
            .unwrap();
        idx.refresh().await.unwrap();
        // Acknowledged but not committed by refresh: close() must commit it.
        idx.index_spans(checkout_trace(trace_id(2), "at-close", BASE_TIME, false).into())
            .await
            .unwrap();
        assert!(idx.ready().await.is_ok());
        idx.close().await.unwrap();
        idx.close().await.unwrap();
        let after = idx
            .index_spans(checkout_trace(trace_id(3), "late", BASE_TIME, false).into())
            .await;
        assert!(
            after.is_err_and(|e| e.is_retryable()),
            "writes after close fail, retryably"
        );
        assert!(idx.ready().await.is_err());
    }
    let idx = open(dir.path(), 1000);
    let found = idx
        .find_trace_ids(&Tenant::default(), &key("committed"))
        .await
        .unwrap();
    assert_eq!(found.hits.len(), 1);
    assert_eq!(found.hits[0].trace_id, trace_id(1));
    assert_eq!(
        idx.find_trace_ids(&Tenant::default(), &key("at-close"))
            .await
            .unwrap()
            .hits
            .len(),
        1
    );
    assert_eq!(
        idx.services(&Tenant::default()).await.unwrap(),
        ["checkout", "frontend", "payments"]
    );
    idx.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searchable_without_refresh_after_commit_interval() {
    let dir = tempfile::tempdir().unwrap();
    let idx = open(dir.path(), 100);
    idx.index_spans(checkout_trace(trace_id(1), "soon", BASE_TIME, false).into())
        .await
        .unwrap();
    let mut found = false;
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if !idx
            .find_trace_ids(&Tenant::default(), &key("soon"))
            .await
            .unwrap()
            .hits
            .is_empty()
        {
            found = true;
            break;
        }
    }
    assert!(found, "the commit timer makes spans searchable");
    idx.close().await.unwrap();
}

const CRASH_DIR_ENV: &str = "CLEW_TEST_INDEX_CRASH_DIR";

/// Child process of `kill_9_keeps_acknowledged_spans`: indexes batches forever with the
/// longest commit interval, printing each acknowledged batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper run as a child process by kill_9_keeps_acknowledged_spans"]
async fn crash_child() {
    let Ok(dir) = std::env::var(CRASH_DIR_ENV) else {
        return;
    };
    let idx = open(Path::new(&dir), 1500);
    for n in 0u64.. {
        let mut spans = Vec::new();
        for t in 0..10 {
            let id = n * 10 + t;
            spans.extend(checkout_trace(
                trace_id(id),
                &format!("crash-{id}"),
                BASE_TIME + n,
                n % 2 == 0,
            ));
        }
        idx.index_spans(spans.into()).await.unwrap();
        println!("acked {n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_keeps_acknowledged_spans() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = None;
    while let Some(Ok(line)) = lines.next() {
        if let Some(n) = line.strip_prefix("acked ") {
            let n: u64 = n.trim().parse().unwrap();
            acked = Some(n);
            if n >= 30 {
                break;
            }
        }
    }
    // SIGKILL: no destructor, no close, no commit in flight is awaited.
    child.kill().unwrap();
    child.wait().unwrap();
    let acked = acked.expect("child acknowledged batches");
    let wal = std::fs::metadata(dir.path().join("index").join("wal.log")).expect("wal exists");
    assert!(
        wal.len() > 0,
        "the child was killed before committing, so the WAL holds batches"
    );

    let idx = open(dir.path(), 1000);
    for n in 0..=acked {
        for t in 0..10 {
            let order = format!("crash-{}", n * 10 + t);
            let hits = idx
                .find_trace_ids(&Tenant::default(), &key(&order))
                .await
                .unwrap()
                .hits;
            assert_eq!(
                hits.len(),
                1,
                "acknowledged trace {order} lost after kill -9"
            );
            assert_eq!(hits[0].trace_id, trace_id(n * 10 + t));
        }
    }
    let errors = TraceQuery {
        errors_only: true,
        limit: 1000,
        ..Default::default()
    };
    assert!(
        idx.find_trace_ids(&Tenant::default(), &errors)
            .await
            .unwrap()
            .hits
            .len()
            >= (acked as usize / 2 + 1) * 10
    );
    idx.close().await.unwrap();
}

/// Indexing cost, printed (never asserted): `cargo test -p clew-store --features
/// conformance --release --test tantivy_index index_cost -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, run by hand"]
async fn index_cost() {
    let dir = tempfile::tempdir().unwrap();
    let idx = open(dir.path(), 1000);
    let batches: Vec<Arc<[clew_proto::Span]>> = (0..200u64)
        .map(|b| {
            let mut spans = Vec::with_capacity(1000);
            for t in 0..250u64 {
                let n = b * 250 + t;
                spans.extend(checkout_trace(
                    trace_id(n),
                    &format!("order-{n}"),
                    BASE_TIME + n * 1000,
                    n % 20 == 0,
                ));
            }
            spans.into()
        })
        .collect();
    let spans: usize = batches.iter().map(|b| b.len()).sum();
    let started = std::time::Instant::now();
    let cpu_before = cpu_seconds();
    for batch in batches {
        idx.index_spans(batch).await.unwrap();
    }
    let acked = started.elapsed();
    idx.refresh().await.unwrap();
    let total = started.elapsed();
    let cpu = cpu_seconds() - cpu_before;
    println!(
        "{spans} spans: acked in {acked:?} ({:.0} spans/s), committed in {total:?} ({:.0} spans/s), \
         process cpu {cpu:.2}s = {:.2} µs/span",
        spans as f64 / acked.as_secs_f64(),
        spans as f64 / total.as_secs_f64(),
        cpu * 1e6 / spans as f64
    );
    let bytes: u64 = walk(&dir.path().join("index"));
    println!(
        "index on disk after commit: {bytes} bytes = {:.1} bytes/span",
        bytes as f64 / spans as f64
    );
    let q = TraceQuery {
        service: Some("payments".into()),
        errors_only: true,
        limit: 20,
        ..Default::default()
    };
    let t = std::time::Instant::now();
    let page = idx.find_trace_ids(&Tenant::default(), &q).await.unwrap();
    println!(
        "search service+errors: {} hits in {:?}",
        page.hits.len(),
        t.elapsed()
    );
    let t = std::time::Instant::now();
    let page = idx
        .find_trace_ids(&Tenant::default(), &key("order-4242"))
        .await
        .unwrap();
    println!(
        "business key lookup: {} hits in {:?}",
        page.hits.len(),
        t.elapsed()
    );
    idx.close().await.unwrap();
}

fn cpu_seconds() -> f64 {
    // utime + stime of this process, from /proc (Linux only; 0 elsewhere).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn walk(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        walk(&e.path())
                    } else {
                        e.metadata().map(|m| m.len()).unwrap_or(0)
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}
