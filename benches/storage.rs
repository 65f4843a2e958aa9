//! Micro-benchmark of the backends on the ingest path, without OTLP: per-span cost of
//! `SpanStore::write_spans` (fjall, or HBase over Thrift1) and `TraceIndex::index_spans`
//! (tantivy, including its write-ahead log) in pipeline-sized batches, then trace-by-id read
//! latency.
//!
//! `cargo bench --bench storage -- [--spans N] [--batch N] [--store embedded|hbase]
//! [--index embedded|opensearch] [--index-concurrency N] [--indexed-attributes all|listed]`
//!
//! `--store hbase` writes to a fresh table (`clew_bench_<pid>`) on the Thrift server(s) in
//! `HBASE_THRIFT` (`host:port[,host:port…]`; `eval "$(scripts/hbase-start)"` sets it), with
//! `--pool N` connections (default 4).
//!
//! `--index opensearch` indexes into fresh daily indices `clew-bench-<pid>-*` (one shard, no
//! replica) on the node(s) in `OPENSEARCH_URL` (`eval "$(scripts/opensearch-start)"` sets
//! it), deleted at the end. `--index-concurrency N` keeps N `index_spans` calls in flight
//! (the collector's writers run concurrently); default 1. Index bytes per span are the
//! tantivy directory size after the final commit, or OpenSearch's primary store size after
//! a flush and a force-merge to one segment.

mod workload;

use clew_proto::Tenant;
use std::sync::Arc;
use std::time::Instant;

use clew_proto::from_otlp::{convert_request, Limits};
use clew_proto::{BusinessKey, Span, TraceId};
use clew_store::{Common, HbaseStoreConfig, IndexConfig, OpenSearchIndexConfig, StoreConfig};

fn arg(name: &str, default: usize) -> usize {
    let argv: Vec<String> = std::env::args().collect();
    argv.iter()
        .position(|a| a == name)
        .and_then(|i| argv.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn arg_str(name: &str, default: &str) -> String {
    let argv: Vec<String> = std::env::args().collect();
    argv.iter()
        .position(|a| a == name)
        .and_then(|i| argv.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let total = arg("--spans", 300_000);
    let batch = arg("--batch", 8192);
    let store_kind = arg_str("--store", "embedded");
    let index_kind = arg_str("--index", "embedded");
    let index_concurrency = arg("--index-concurrency", 1).max(1);
    let os_url = std::env::var("OPENSEARCH_URL").unwrap_or_default();
    let os_prefix = format!("clew-bench-{}", std::process::id());
    let index_config = match index_kind.as_str() {
        "embedded" => IndexConfig::default(),
        "opensearch" => {
            assert!(
                !os_url.is_empty(),
                "--index opensearch needs OPENSEARCH_URL=http://host:port (scripts/opensearch-start)"
            );
            IndexConfig::Opensearch(OpenSearchIndexConfig {
                index_prefix: os_prefix.clone(),
                timeout_ms: 30_000,
                number_of_shards: 1,
                number_of_replicas: 0,
                ..OpenSearchIndexConfig::new(os_url.split(',').map(str::to_string).collect())
            })
        }
        other => panic!("--index {other}: expected embedded or opensearch"),
    };
    let store_config = match store_kind.as_str() {
        "embedded" => StoreConfig::default(),
        "hbase" => {
            let addrs = std::env::var("HBASE_THRIFT")
                .expect("--store hbase needs HBASE_THRIFT=host:port (scripts/hbase-start)");
            StoreConfig::Hbase(HbaseStoreConfig {
                table: format!("clew_bench_{}", std::process::id()),
                pool_size: arg("--pool", 4),
                ..HbaseStoreConfig::new(addrs.split(',').map(str::to_string).collect())
            })
        }
        other => panic!("--store {other}: expected embedded or hbase"),
    };
    let mut w = workload::Workload::new(3);
    let mut spans: Vec<Span> = Vec::with_capacity(total);
    let mut ids: Vec<TraceId> = Vec::new();
    let t0 = now() - 3_600_000_000_000;
    while spans.len() < total {
        let traces: Vec<_> = (0..25)
            .map(|k| w.trace(t0 + (spans.len() as u64 + k) * 1000))
            .collect();
        ids.extend(traces.iter().map(|t| TraceId(t.trace_id)));
        let mut converted = convert_request(
            workload::request(&mut traces.into_iter()),
            &Limits::default(),
            now(),
        )
        .spans;
        for s in &mut converted {
            if let Some(v) = s
                .attributes
                .iter()
                .find(|kv| kv.key == "order_id")
                .and_then(|kv| kv.value.as_ref())
            {
                s.business_keys.push(BusinessKey {
                    name: "order_id".into(),
                    value: clew_proto::model::value_to_string(v),
                });
            }
        }
        spans.extend(converted);
    }
    let dir = tempfile::tempdir().unwrap();
    let common = Common {
        data_dir: dir.path().to_path_buf(),
        retention: clew_store::RetentionClasses::uniform(7),
        // `--indexed-attributes all` (the default configuration) or `listed` (the three
        // names the workload's searches use: the index before every attribute was indexed)
        indexed_attributes: match arg_str("--indexed-attributes", "all").as_str() {
            "all" => vec!["*".into()],
            "listed" => vec![
                "http.route".into(),
                "db.system".into(),
                "http.response.status_code".into(),
            ],
            other => panic!("--indexed-attributes all|listed, not {other}"),
        },
    };
    let store = clew_store::open_span_store(&store_config, &common).unwrap();
    let index = clew_store::open_trace_index(&index_config, &common).unwrap();
    let batches: Vec<Arc<[Span]>> = spans.chunks(batch).map(|c| Arc::from(c.to_vec())).collect();

    let t = Instant::now();
    for b in &batches {
        store.write_spans(b.clone()).await.unwrap();
    }
    let store_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut in_flight: tokio::task::JoinSet<clew_store::Result<()>> = tokio::task::JoinSet::new();
    for b in &batches {
        if in_flight.len() >= index_concurrency {
            in_flight.join_next().await.unwrap().unwrap().unwrap();
        }
        let (index, b) = (index.clone(), b.clone());
        in_flight.spawn(async move { index.index_spans(b).await });
    }
    while let Some(r) = in_flight.join_next().await {
        r.unwrap().unwrap();
    }
    let index_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    index.refresh().await.unwrap();
    let commit_s = t.elapsed().as_secs_f64();
    let index_bytes = match index_kind.as_str() {
        "opensearch" => opensearch_store_bytes(&os_url, &os_prefix).await,
        _ => dir_bytes(&dir.path().join("index")),
    };

    let mut lat = Vec::new();
    for (k, id) in ids.iter().enumerate().step_by((ids.len() / 2000).max(1)) {
        let t = Instant::now();
        let tr = store.get_trace(&Tenant::default(), *id).await.unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(tr.is_some(), "trace {k} missing");
    }
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = spans.len() as f64;
    println!("| what | value |\n|---|---|");
    println!("| spans | {} in batches of {batch} |", spans.len());
    let store_what = match store_kind.as_str() {
        "hbase" => "HBase via Thrift1 mutateRows",
        _ => "fjall, fsync per batch",
    };
    println!(
        "| store write ({store_what}) | {:.2} µs/span ({:.0} spans/s) |",
        store_s * 1e6 / n,
        n / store_s
    );
    let index_what = match index_kind.as_str() {
        "opensearch" => format!("OpenSearch _bulk, {index_concurrency} call(s) in flight"),
        _ => format!("tantivy + WAL fsync per batch, {index_concurrency} call(s) in flight"),
    };
    println!(
        "| index write ({index_what}) | {:.2} µs/span ({:.0} spans/s) |",
        index_s * 1e6 / n,
        n / index_s
    );
    println!(
        "| final index commit / refresh | {:.0} ms |",
        commit_s * 1e3
    );
    println!(
        "| index size | {:.1} bytes/span ({:.1} MiB) |",
        index_bytes as f64 / n,
        index_bytes as f64 / (1 << 20) as f64
    );
    println!(
        "| get_trace p50 / p99 ({} reads) | {:.3} / {:.3} ms |",
        lat.len(),
        lat[lat.len() / 2],
        lat[(lat.len() as f64 * 0.99) as usize]
    );

    // Search latency on what was just indexed: service + errors over the whole range, and
    // a business-key lookup, as the query API would ask.
    let mut search = Vec::new();
    let mut by_key = Vec::new();
    for k in 0..200usize {
        let q = clew_store::TraceQuery {
            service: Some(workload::SERVICES[k % workload::SERVICES.len()].to_string()),
            errors_only: true,
            start_min_unix_nano: Some(t0 - 1),
            start_max_unix_nano: Some(now()),
            limit: 20,
            ..Default::default()
        };
        let t = Instant::now();
        index.find_trace_ids(&Tenant::default(), &q).await.unwrap();
        search.push(t.elapsed().as_secs_f64() * 1e3);
        // the next keyed span from a pseudo-random place, wrapping around (an offset past
        // the last entry span would otherwise find no key at all)
        let order = spans
            .iter()
            .cycle()
            .skip((k * 7919) % spans.len())
            .find_map(|s| s.business_keys.first())
            .map(|b| b.value.clone())
            .unwrap_or_default();
        let q = clew_store::TraceQuery {
            business_keys: vec![("order_id".into(), order.clone())],
            limit: 20,
            ..Default::default()
        };
        let t = Instant::now();
        let page = index.find_trace_ids(&Tenant::default(), &q).await.unwrap();
        by_key.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(
            page.hits.len(),
            1,
            "business key {order:?} must find exactly its trace: {:?}",
            page.hits
        );
    }
    for (name, mut v) in [
        ("find_trace_ids service + errors, whole range", search),
        ("find_trace_ids business key", by_key),
    ] {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "| {name} p50 / p99 ({} queries) | {:.2} / {:.2} ms |",
            v.len(),
            v[v.len() / 2],
            v[(v.len() as f64 * 0.99) as usize]
        );
    }
    store.close().await.unwrap();
    index.close().await.unwrap();
    if index_kind == "opensearch" {
        let http = reqwest::Client::new();
        let _ = http.delete(format!("{os_url}/{os_prefix}-*")).send().await;
        let _ = http
            .delete(format!("{os_url}/_index_template/{os_prefix}"))
            .send()
            .await;
    }
}

/// Bytes of all files under `path`.
fn dir_bytes(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// Primary store size of the bench's indices after a flush and a force-merge to one segment
/// (what the data settles to once OpenSearch's background merges are done).
async fn opensearch_store_bytes(url: &str, prefix: &str) -> u64 {
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(600))
        .build()
        .unwrap();
    let url = url.split(',').next().unwrap();
    for path in [
        format!("{prefix}/_flush"),
        format!("{prefix}/_forcemerge?max_num_segments=1"),
        format!("{prefix}/_refresh"),
    ] {
        let r = http.post(format!("{url}/{path}")).send().await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }
    let stats: serde_json::Value = http
        .get(format!("{url}/{prefix}/_stats/store,docs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let p = &stats["_all"]["primaries"];
    eprintln!(
        "opensearch: {} docs, {} bytes in primaries",
        p["docs"]["count"], p["store"]["size_in_bytes"]
    );
    p["store"]["size_in_bytes"].as_u64().unwrap()
}
