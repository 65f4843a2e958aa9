//! The embedded tantivy index against the trace-index conformance suite, plus reopen and
//! crash (kill -9) durability through its write-ahead log.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use clew_store::conformance::fixtures::{checkout_trace, trace_id, BASE_TIME};
use clew_store::conformance::trace_index::{self, INDEXED_ATTRIBUTES, RETENTION_DAYS};
use clew_store::embedded::tantivy_index::TantivyTraceIndex;
use clew_store::{Common, IndexConfig, TraceIndex, TraceQuery};

fn common(dir: &Path) -> Common {
    Common {
        data_dir: dir.to_path_buf(),
        retention_days: RETENTION_DAYS,
        indexed_attributes: INDEXED_ATTRIBUTES.iter().map(|s| s.to_string()).collect(),
    }
}

fn open(dir: &Path, commit_interval_ms: u64) -> TantivyTraceIndex {
    let config = IndexConfig::Embedded { commit_interval_ms, writer_memory_mb: 32 };
    TantivyTraceIndex::open(&config, &common(dir)).expect("open index")
}

fn key(order: &str) -> TraceQuery {
    TraceQuery { business_keys: vec![("order_id".into(), order.into())], limit: 10, ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    let dirs = Arc::new(std::sync::Mutex::new(Vec::new()));
    trace_index::run_all(|| {
        let dirs = dirs.clone();
        async move {
            let dir = tempfile::tempdir().unwrap();
            let idx: Arc<dyn TraceIndex> = Arc::new(open(dir.path(), 1000));
            dirs.lock().unwrap().push(dir);
            idx
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    {
        let idx = open(dir.path(), 1000);
        idx.index_spans(checkout_trace(trace_id(1), "committed", BASE_TIME, true).into()).await.unwrap();
        idx.refresh().await.unwrap();
        // Acknowledged but not committed by refresh: close() must commit it.
        idx.index_spans(checkout_trace(trace_id(2), "at-close", BASE_TIME, false).into()).await.unwrap();
        idx.close().await.unwrap();
        idx.close().await.unwrap();
    }
    let idx = open(dir.path(), 1000);
    let found = idx.find_trace_ids(&key("committed")).await.unwrap();
    assert_eq!(found.hits.len(), 1);
    assert_eq!(found.hits[0].trace_id, trace_id(1));
    assert_eq!(idx.find_trace_ids(&key("at-close")).await.unwrap().hits.len(), 1);
    assert_eq!(idx.services().await.unwrap(), ["checkout", "frontend", "payments"]);
    idx.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searchable_without_refresh_after_commit_interval() {
    let dir = tempfile::tempdir().unwrap();
    let idx = open(dir.path(), 100);
    idx.index_spans(checkout_trace(trace_id(1), "soon", BASE_TIME, false).into()).await.unwrap();
    let mut found = false;
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if !idx.find_trace_ids(&key("soon")).await.unwrap().hits.is_empty() {
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
    let Ok(dir) = std::env::var(CRASH_DIR_ENV) else { return };
    let idx = open(Path::new(&dir), 1500);
    for n in 0u64.. {
        let mut spans = Vec::new();
        for t in 0..10 {
            let id = n * 10 + t;
            spans.extend(checkout_trace(trace_id(id), &format!("crash-{id}"), BASE_TIME + n, n % 2 == 0));
        }
        idx.index_spans(spans.into()).await.unwrap();
        println!("acked {n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_keeps_acknowledged_spans() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
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
    assert!(wal.len() > 0, "the child was killed before committing, so the WAL holds batches");

    let idx = open(dir.path(), 1000);
    for n in 0..=acked {
        for t in 0..10 {
            let order = format!("crash-{}", n * 10 + t);
            let hits = idx.find_trace_ids(&key(&order)).await.unwrap().hits;
            assert_eq!(hits.len(), 1, "acknowledged trace {order} lost after kill -9");
            assert_eq!(hits[0].trace_id, trace_id(n * 10 + t));
        }
    }
    let errors = TraceQuery { errors_only: true, limit: 1000, ..Default::default() };
    assert!(idx.find_trace_ids(&errors).await.unwrap().hits.len() >= (acked as usize / 2 + 1) * 10);
    idx.close().await.unwrap();
}
