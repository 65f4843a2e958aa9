//! CPU cost per span of the embedded ingest path, made to be counted with callgrind
//! (instruction counts are repeatable on a shared machine; wall-clock times are not).
//!
//! Drives the real path behind the gRPC server for a fixed set of workload spans, with the
//! stages `clew serve` runs by default, in `ingest::Front`'s order: decode + validate of
//! pre-encoded OTLP requests (`decode::decode_plain`, what the gRPC and HTTP receivers
//! call: protobuf straight into the span model) → redact (the default rules) → enrich (business
//! key `order_id`) → span metrics `observe` → `pipeline::Ingest::submit` (batcher → fjall
//! store → tantivy index + WAL → ack) → span metrics `record`, `--concurrency` requests in
//! flight like the exporters of `benches/load.rs`, then the final index commit and close.
//! `--redaction off` and `--span-metrics off` leave those stages out (to see their cost).
//! Not counted: the gRPC/HTTP transport in front and Prometheus counters (no recorder).
//!
//! ```sh
//! cargo build --release --workspace --all-features --locked --benches
//! B=$(ls -t target/release/deps/ingest_cost-* | grep -v '\.d$' | head -1)
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.gen $B --spans 50000 --phase generate
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.all $B --spans 50000
//! # Ir per span = (Ir of cg.all − Ir of cg.gen) / spans
//! ```
//!
//! `--phase generate` stops after building (and encoding) the requests and opening the
//! store and index, so subtracting its count leaves the ingest path alone. The index commit
//! interval is set far beyond the run so that only the final commit happens (timer
//! commits under callgrind's slowdown would otherwise change the count); tantivy still
//! flushes segments when its memory budget fills, as it does in `clew serve`.
//! `--indexed-attributes all|listed` as in `benches/storage.rs`.

mod workload;

// `clew serve`'s allocator (jemalloc), so that the count is the server's.
#[path = "../src/alloc.rs"]
#[allow(dead_code)] // its gauges are `clew serve`'s /metrics
mod alloc;

use std::sync::Arc;

use clew_collector::decode::{decode_plain, Format};
use clew_collector::enrich::Enricher;
use clew_collector::redaction::{RedactionConfig, Redactor};
use clew_collector::{CollectorConfig, SpanMetrics, SpanMetricsConfig};
use clew_proto::from_otlp::Limits;
use clew_store::{Common, EmbeddedIndexConfig, StoreConfig, TraceIndex};
use prost::Message;

fn arg(name: &str, default: &str) -> String {
    let argv: Vec<String> = std::env::args().collect();
    argv.iter()
        .position(|a| a == name)
        .and_then(|i| argv.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let total: usize = arg("--spans", "50000").parse().unwrap();
    let concurrency: usize = arg("--concurrency", "8").parse().unwrap();
    let phase = arg("--phase", "all");
    let indexed_attributes = match arg("--indexed-attributes", "all").as_str() {
        "all" => vec!["*".into()],
        "listed" => vec![
            "http.route".into(),
            "db.system".into(),
            "http.response.status_code".into(),
        ],
        other => panic!("--indexed-attributes all|listed, not {other}"),
    };
    let on = |flag: &str| match arg(flag, "on").as_str() {
        "on" => true,
        "off" => false,
        other => panic!("{flag} on|off, not {other}"),
    };
    let (redaction, span_metrics) = (on("--redaction"), on("--span-metrics"));

    // 25 traces per request (~500 spans), like an SDK batch; times an hour ago, one day.
    let mut w = workload::Workload::new(3);
    let t0 = now() - 3_600_000_000_000;
    let mut requests: Vec<Vec<u8>> = Vec::new();
    let mut spans = 0usize;
    while spans < total {
        let traces: Vec<_> = (0..25)
            .map(|k| w.trace(t0 + (spans as u64 + k) * 1000))
            .collect();
        spans += traces.iter().map(|t| t.spans.len()).sum::<usize>();
        requests.push(workload::request(&mut traces.into_iter()).encode_to_vec());
    }

    let dir = tempfile::tempdir().unwrap();
    let common = Common {
        data_dir: dir.path().to_path_buf(),
        retention: clew_store::RetentionClasses::uniform(7),
        indexed_attributes,
    };
    // Opened directly: the configuration's validation keeps the interval ≤ 1.5 s.
    let index_config = EmbeddedIndexConfig {
        commit_interval_ms: 3_600_000,
        ..EmbeddedIndexConfig::default()
    };
    let store = clew_store::open_span_store(&StoreConfig::default(), &common).unwrap();
    let index: Arc<dyn TraceIndex> = Arc::new(
        clew_store::embedded::tantivy_index::TantivyTraceIndex::open(&index_config, &common)
            .unwrap(),
    );
    if phase == "generate" {
        println!("generated {spans} spans in {} requests", requests.len());
        store.close().await.unwrap();
        index.close().await.unwrap();
        return;
    }

    let config = CollectorConfig::default();
    let (ingest, done) = clew_collector::pipeline::start(&config, store.clone(), index.clone());
    let business_keys = ["order_id".to_string()];
    let enricher = Arc::new(Enricher::new(&business_keys));
    // What `clew serve` builds from its default `[redaction]` and `[span_metrics]`.
    let redactor = if redaction {
        Redactor::from_config(&RedactionConfig::default(), &business_keys).unwrap()
    } else {
        None
    };
    let metrics = if span_metrics {
        SpanMetrics::new(&SpanMetricsConfig::default()).map(Arc::new)
    } else {
        None
    };
    let requests = Arc::new(requests);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut exporters = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (ingest, enricher, redactor, metrics, requests, next) = (
            ingest.clone(),
            enricher.clone(),
            redactor.clone(),
            metrics.clone(),
            requests.clone(),
            next.clone(),
        );
        exporters.spawn(async move {
            let mut acked = 0usize;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(body) = requests.get(i) else {
                    return acked;
                };
                let mut converted = decode_plain(body, Format::Protobuf, &Limits::default(), now())
                    .unwrap()
                    .spans;
                if let Some(redactor) = &redactor {
                    redactor.redact_all(&mut converted);
                }
                enricher.enrich_all(&mut converted);
                let observed = metrics
                    .as_ref()
                    .map(|m| m.observe(&clew_proto::Tenant::default(), &converted));
                let n = converted.len();
                let rejected = ingest.submit(converted).await.unwrap();
                if let (Some(metrics), Some(observed)) = (&metrics, observed) {
                    metrics.record(observed, &rejected);
                }
                acked += n - rejected.len();
            }
        });
    }
    let mut acked = 0;
    while let Some(n) = exporters.join_next().await {
        acked += n.unwrap();
    }
    ingest.close();
    drop(ingest);
    done.await.unwrap();
    store.close().await.unwrap();
    index.close().await.unwrap();
    println!(
        "acked {acked} of {spans} spans in {} requests",
        requests.len()
    );
    // On-disk size after the final commit: the index (day partitions + WAL) and the store.
    let index_bytes = workload::dir_bytes(&dir.path().join("index"));
    let all_bytes = workload::dir_bytes(dir.path());
    println!(
        "disk: index {index_bytes} B ({:.1} B/span), store {} B ({:.1} B/span)",
        index_bytes as f64 / acked as f64,
        all_bytes - index_bytes,
        (all_bytes - index_bytes) as f64 / acked as f64,
    );
}
