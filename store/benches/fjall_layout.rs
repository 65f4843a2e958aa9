//! What the embedded span store's key layout costs (issue 13, ADR 0001 "fjall mapping"):
//! the store alone, no OTLP, no index, so fjall's background work (memtable flushes and
//! compactions, on its `fjall:worker` threads) is not drowned by the rest of `clew serve`.
//!
//! ```text
//! cargo bench --locked -p clew-store --features conformance --bench fjall_layout -- \
//!     [--spans N] [--batch N] [--late F] [--reads N] [--seed N]
//! ```
//!
//! Writes N spans (default 1,000,000) of generated traces (10–30 spans over six services,
//! ~12 attributes each, ids random) through `SpanStore::write_spans` in batches of
//! `--batch` (default 8,192, the pipeline's), one fsync per batch. With `--late F` a
//! fraction F of the traces arrive in pieces: each service's spans of such a trace come
//! one to three batches after the trace started, as exporters of different services
//! deliver them (the path where a batch finds the trace already stored). Then it waits
//! until the `fjall:worker` threads have been idle for 5 s, so compaction debt left at the
//! end of the writes is counted, closes the store, flushes what is left in memtables (and
//! waits for the worker again), and prints: write µs/span, CPU seconds per million spans
//! of the process and of the `fjall:worker` threads (from `/proc/self/task/*/stat`), the
//! store's table bytes per span, and `get_trace` latency of
//! `--reads` random trace ids after a reopen (first pass, then a second pass of the same ids).

mod common;

use common::{arg, Rng, ROUTES, SERVICES};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clew_proto::model::{any_value::Value, AnyValue, KeyValue};
use clew_proto::{Span, SpanId, SpanKind, StatusCode, Tenant, TraceId};
use clew_store::conformance::fixtures::{kv, kv_int, now_unix_nano, resource, scope};
use clew_store::embedded::fjall_store::FjallSpanStore;
use clew_store::{Common, EmbeddedStoreConfig, RetentionClasses, SpanStore};

fn s(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value)),
        }),
        ..Default::default()
    }
}

/// One generated trace: its spans, each with the index of its service.
fn trace(rng: &mut Rng, start: u64) -> (TraceId, Vec<(usize, Span)>) {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&rng.next().to_be_bytes());
    id[8..].copy_from_slice(&rng.next().to_be_bytes());
    let trace_id = TraceId(id);
    let n = 10 + rng.below(21) as usize;
    let resources: Vec<_> = SERVICES.iter().map(|s| resource(s)).collect();
    let order = rng.next();
    let mut spans = Vec::with_capacity(n);
    let mut ids: Vec<SpanId> = Vec::with_capacity(n);
    for i in 0..n {
        let service = if i == 0 { 0 } else { 1 + rng.below(5) as usize };
        let span_id = SpanId(rng.next().to_be_bytes());
        let parent = (i > 0).then(|| ids[rng.below(i as u64) as usize]);
        ids.push(span_id);
        let begin = start + i as u64 * 137_000 + rng.below(50_000);
        let route = ROUTES[rng.below(ROUTES.len() as u64) as usize];
        let mut attributes = vec![
            kv("http.request.method", ["GET", "POST", "PUT"][i % 3]),
            kv("http.route", route),
            kv_int(
                "http.response.status_code",
                [200, 200, 200, 201, 404][i % 5],
            ),
            s(
                "url.path",
                route.replace("{id}", &format!("{}", rng.below(100_000))),
            ),
            kv("server.address", SERVICES[service]),
            kv_int("server.port", 8080),
            s("user.id", format!("u-{}", rng.below(50_000))),
            kv("network.protocol.version", "1.1"),
            s("thread.name", format!("worker-{}", rng.below(16))),
        ];
        if i == 0 {
            attributes.push(s("order_id", format!("o-{order:016x}")));
        }
        if service == 3 || rng.below(4) == 0 {
            attributes.push(kv("db.system", "postgresql"));
            attributes.push(s(
                "db.statement",
                format!("SELECT * FROM items WHERE id = {}", rng.below(1_000_000)),
            ));
            attributes.push(kv_int("db.rows", rng.below(100) as i64));
        }
        let span = Span {
            tenant: Tenant::default(),
            trace_id,
            span_id,
            parent_span_id: parent,
            trace_state: String::new(),
            flags: 1,
            name: format!("{} {route}", ["GET", "POST", "PUT"][i % 3]),
            kind: if i == 0 {
                SpanKind::Server
            } else {
                [SpanKind::Client, SpanKind::Server, SpanKind::Internal][i % 3]
            },
            start_unix_nano: begin,
            end_unix_nano: begin + 1_000 + rng.below(2_000_000),
            attributes,
            dropped_attributes_count: 0,
            events: vec![],
            dropped_events_count: 0,
            links: vec![],
            dropped_links_count: 0,
            status_code: if rng.below(50) == 0 {
                StatusCode::Error
            } else {
                StatusCode::Unset
            },
            status_message: String::new(),
            resource: resources[service].clone(),
            scope: scope(),
            service_name: SERVICES[service].into(),
            business_keys: vec![],
            repairs: 0,
        };
        spans.push((service, span));
    }
    (trace_id, spans)
}

/// utime + stime in clock ticks: of the process, and of its threads named `fjall:worker`.
fn cpu_ticks() -> (u64, u64) {
    let fields = |stat: &str| -> Option<u64> {
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
    };
    let process = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| fields(&s))
        .unwrap_or(0);
    let mut worker = 0;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            if stat.contains("(fjall:worker)") {
                worker += fields(&stat).unwrap_or(0);
            }
        }
    }
    (process, worker)
}

fn ticks_per_s() -> f64 {
    // SC_CLK_TCK, 100 on Linux
    100.0
}

/// Waits until the `fjall:worker` threads used no CPU for 5 s (at most 10 min); returns
/// their ticks then.
async fn wait_idle(mut last: u64) -> u64 {
    let mut idle = 0;
    for _ in 0..600 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (_, w) = cpu_ticks();
        idle = if w == last { idle + 1 } else { 0 };
        last = w;
        if idle >= 5 {
            break;
        }
    }
    last
}

fn dir_bytes(path: &Path) -> (u64, u64) {
    let mut total = 0;
    let mut journals = 0;
    let Ok(entries) = std::fs::read_dir(path) else {
        return (0, 0);
    };
    for e in entries.flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => total += dir_bytes(&e.path()).0,
            _ => {
                let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                total += len;
                if e.path().extension().is_some_and(|x| x == "jnl") {
                    journals += len;
                }
            }
        }
    }
    (total, journals)
}

fn open(dir: &Path) -> Arc<dyn SpanStore> {
    let common = Common {
        data_dir: dir.to_path_buf(),
        retention: RetentionClasses::uniform(7),
        indexed_attributes: vec![],
    };
    Arc::new(FjallSpanStore::open(&EmbeddedStoreConfig::default(), &common).expect("open store"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let total: usize = arg("--spans", 1_000_000);
    let batch: usize = arg("--batch", 8192);
    let late: f64 = arg("--late", 0.0);
    let reads: usize = arg("--reads", 2000);
    let mut rng = Rng(arg("--seed", 7));

    // Generate the batches: whole traces, or (a fraction `late`) the root service's spans
    // now and each other service's 1–3 batches later.
    let start = now_unix_nano();
    let mut ids: Vec<TraceId> = Vec::new();
    let mut pending: Vec<(usize, Span)> = Vec::new(); // (batch number due, span)
    let mut batches: Vec<Vec<Span>> = vec![Vec::new()];
    let mut generated = 0;
    while generated < total {
        let now_batch = batches.len() - 1;
        let (id, spans) = trace(&mut rng, start + generated as u64 * 1_000);
        ids.push(id);
        generated += spans.len();
        let pieces = rng.below(1000) < (late * 1000.0) as u64;
        let mut delays = [0usize; SERVICES.len()];
        if pieces {
            for d in delays.iter_mut().skip(1) {
                *d = 1 + rng.below(3) as usize;
            }
        }
        for (service, span) in spans {
            if delays[service] == 0 {
                batches[now_batch].push(span);
            } else {
                pending.push((now_batch + delays[service], span));
            }
        }
        if batches[now_batch].len() >= batch {
            batches.push(Vec::new());
            let due = batches.len() - 1;
            let (now, later): (Vec<_>, Vec<_>) = pending.drain(..).partition(|(d, _)| *d <= due);
            pending = later;
            batches[due].extend(now.into_iter().map(|(_, s)| s));
        }
    }
    let last = batches.len() - 1;
    batches[last].extend(pending.drain(..).map(|(_, s)| s));
    let spans: usize = batches.iter().map(Vec::len).sum();
    let batches: Vec<Arc<[Span]>> = batches.into_iter().map(Arc::from).collect();

    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let (p0, w0) = cpu_ticks();
    let t = Instant::now();
    for b in &batches {
        let report = store.write_spans(b.clone()).await.expect("write");
        assert!(report.rejected.is_empty());
    }
    let write_s = t.elapsed().as_secs_f64();
    let (p1, w1) = cpu_ticks();
    // let the background work finish: fjall:worker idle for 5 s
    wait_idle(w1).await;
    let settle_s = t.elapsed().as_secs_f64() - write_s;
    let (_, w2) = cpu_ticks();
    store.close().await.expect("close");
    drop(store);
    // flush what is still in memtables (and let the compactions it starts run), so the
    // tables on disk hold every span and that work is counted too
    let flush_worker = {
        let db = fjall::Database::builder(dir.path().join("spans"))
            .open()
            .expect("reopen raw");
        let (_, wa) = cpu_ticks();
        for name in db.list_keyspace_names() {
            db.keyspace(&name, fjall::KeyspaceCreateOptions::default)
                .expect("keyspace")
                .rotate_memtable_and_wait()
                .expect("flush");
        }
        let wb = wait_idle(wa).await;
        db.persist(fjall::PersistMode::SyncAll).expect("persist");
        wb - wa
    };
    let (p2, _) = cpu_ticks();
    let (bytes, journals) = dir_bytes(&dir.path().join("spans"));

    // reads after a reopen, random ids; then the same ids again
    let store = open(dir.path());
    let mut pick: Vec<TraceId> = (0..reads)
        .map(|_| ids[rng.below(ids.len() as u64) as usize])
        .collect();
    pick.dedup();
    let mut passes = Vec::new();
    for _ in 0..2 {
        let mut lat = Vec::with_capacity(pick.len());
        for id in &pick {
            let t = Instant::now();
            let got = store
                .get_trace(&Tenant::default(), *id)
                .await
                .expect("read");
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            assert!(
                got.is_some_and(|t| !t.spans.is_empty()),
                "trace {id} missing"
            );
        }
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
        passes.push((lat[lat.len() / 2], lat[lat.len() * 99 / 100]));
    }
    store.close().await.expect("close");

    let m = spans as f64 / 1e6;
    let hz = ticks_per_s();
    println!("| what | value |\n|---|---|");
    println!(
        "| spans | {spans} in {} batches of ≤ {batch} (+ late pieces), {} traces, late fraction {late} |",
        batches.len(),
        ids.len()
    );
    println!(
        "| write | {:.2} µs/span ({:.0} spans/s), then {settle_s:.0} s until fjall:worker idle |",
        write_s * 1e6 / spans as f64,
        spans as f64 / write_s
    );
    println!(
        "| process CPU-s/M: during writes / writes + settle + final flush | {:.2} / {:.2} |",
        (p1 - p0) as f64 / hz / m,
        (p2 - p0) as f64 / hz / m
    );
    println!(
        "| fjall:worker CPU-s/M: during writes / + settle / + final flush | {:.2} / {:.2} / {:.2} |",
        (w1 - w0) as f64 / hz / m,
        (w2 - w0) as f64 / hz / m,
        (w2 - w0 + flush_worker) as f64 / hz / m
    );
    println!(
        "| store tables on disk after the final flush | {:.1} B/span ({:.1} MiB; journals, preallocated, {:.1} MiB more) |",
        (bytes - journals) as f64 / spans as f64,
        (bytes - journals) as f64 / (1 << 20) as f64,
        journals as f64 / (1 << 20) as f64
    );
    println!(
        "| get_trace p50 / p99 after reopen ({} ids), first pass | {:.3} / {:.3} ms |",
        pick.len(),
        passes[0].0,
        passes[0].1
    );
    println!(
        "| get_trace p50 / p99, second pass | {:.3} / {:.3} ms |",
        passes[1].0, passes[1].1
    );
}
