//! What trace search costs in the embedded tantivy index at volume (issue 13): the index
//! alone, no store, no HTTP, so the figures are `TraceIndex::find_trace_ids` and nothing
//! else.
//!
//! ```text
//! cargo bench --locked -p clew-store --features conformance --bench tantivy_search -- \
//!     [--spans N] [--window-secs S] [--queries N] [--dir PATH] [--only NAME]
//! ```
//!
//! Indexes N spans (default 3,000,000) of generated traces (10–30 spans over six services,
//! `frontend` first, 2 % of traces failing on one span with an exception, one `order_id`
//! business key per trace) whose starts are spread evenly over the last S seconds
//! (default 900, the soak's 15-minute window), in batches of 8,192 as the pipeline hands
//! them over, as fast as the index takes them (so its 1 s commits and tantivy's merges
//! happen while it fills, as in a server). With `--dir PATH` the index is kept there, and
//! a later run with the same PATH searches it again without rebuilding (for profiling:
//! `perf record -g -- target/release/deps/tantivy_search-… --dir PATH`).
//!
//! Then every search below runs `--queries` times (default 200), each time once by the
//! newest-first walk over time slices (`new`) and once over the whole range at once
//! (`old`, the search before issue 13), alternating, checked to give the same page, and
//! prints p50 / p99 of each. `--only NAME` runs just the searches whose name contains
//! NAME, new path only (for profiles).

mod common;

use common::{arg, Rng, ROUTES, SERVICES};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clew_proto::{BusinessKey, Span, SpanId, SpanKind, StatusCode, Tenant, TraceId};
use clew_store::conformance::fixtures::{
    kv, kv_int, now_unix_nano, resource, scope, with_exception,
};
use clew_store::embedded::tantivy_index::{set_search_walk, SearchWalk};
use clew_store::{Common, IndexConfig, RetentionClasses, TraceQuery};

/// One trace starting at `start`, its spans 150 µs apart, like the load generator's.
fn trace(rng: &mut Rng, n: u64, start: u64, resources: &[Arc<clew_proto::Resource>]) -> Vec<Span> {
    let trace_id = TraceId(clew_store::conformance::fixtures::trace_id(n).0);
    let len = 10 + rng.below(21);
    let fail_at = (rng.below(50) == 0).then(|| 1 + rng.below(len - 1));
    (0..len)
        .map(|k| {
            let service = if k == 0 { 0 } else { rng.below(6) as usize };
            let route = ROUTES[rng.below(5) as usize];
            let begin = start + k * 150_000;
            let mut attributes = vec![
                kv("http.route", route),
                kv_int("http.response.status_code", 200),
                kv(
                    "thread.name",
                    ["worker-1", "worker-2", "worker-3"][k as usize % 3],
                ),
            ];
            let mut business_keys = vec![];
            if k == 0 {
                let order = format!("o-{n:010}");
                attributes.push(kv("order_id", &order));
                business_keys.push(BusinessKey {
                    name: "order_id".into(),
                    value: order,
                });
            }
            let span = Span {
                tenant: Tenant::default(),
                trace_id,
                span_id: SpanId((k + 1).to_be_bytes()),
                parent_span_id: (k > 0).then(|| SpanId(1u64.to_be_bytes())),
                trace_state: String::new(),
                flags: 1,
                name: format!("GET {route}"),
                kind: if k == 0 {
                    SpanKind::Server
                } else {
                    SpanKind::Client
                },
                start_unix_nano: begin,
                end_unix_nano: begin + 50_000 + rng.below(20_000_000),
                attributes,
                dropped_attributes_count: 0,
                events: vec![],
                dropped_events_count: 0,
                links: vec![],
                dropped_links_count: 0,
                status_code: StatusCode::Unset,
                status_message: String::new(),
                resource: resources[service].clone(),
                scope: scope(),
                service_name: SERVICES[service].into(),
                business_keys,
                repairs: 0,
            };
            if fail_at == Some(k) {
                let mut span = with_exception(span, "TimeoutError", "payment provider timed out");
                span.attributes.push(kv("db.system", "postgresql"));
                span
            } else {
                span
            }
        })
        .collect()
}

/// `(first start, last start, traces)` of the index kept in `dir`, if one was built there.
fn built(dir: &Path) -> Option<(u64, u64, u64)> {
    let text = std::fs::read_to_string(dir.join("bench-window")).ok()?;
    let v: Vec<u64> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (v.len() == 3).then(|| (v[0], v[1], v[2]))
}

/// Segments of every day partition under `dir`, from their `meta.json`.
fn segments(dir: &Path) -> Vec<usize> {
    let Ok(days) = std::fs::read_dir(dir.join("index/days")) else {
        return vec![];
    };
    days.flatten()
        .filter_map(|d| std::fs::read_to_string(d.path().join("meta.json")).ok())
        .filter_map(|m| serde_json::from_str::<serde_json::Value>(&m).ok())
        .map(|m| m["segments"].as_array().map_or(0, Vec::len))
        .collect()
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let total: u64 = arg("--spans", 3_000_000);
    let window_s: u64 = arg("--window-secs", 900);
    let queries: usize = arg("--queries", 200);
    let only: String = arg("--only", String::new());
    let kept: Option<PathBuf> = {
        let d: String = arg("--dir", String::new());
        (!d.is_empty()).then(|| PathBuf::from(d))
    };
    let temp = tempfile::tempdir().unwrap();
    let dir = kept.clone().unwrap_or_else(|| temp.path().to_path_buf());
    let common = Common {
        data_dir: dir.clone(),
        retention: RetentionClasses::uniform(7),
        indexed_attributes: vec!["*".into()],
    };
    let index = clew_store::open_trace_index(&IndexConfig::default(), &common).unwrap();
    let (t0, t1, traces) = match built(&dir) {
        Some(w) => {
            println!("searching the index kept in {}", dir.display());
            w
        }
        None => {
            let t1 = now_unix_nano();
            let t0 = t1 - window_s * 1_000_000_000;
            let traces = total / 20;
            let step = (t1 - t0) / traces.max(1);
            let resources: Vec<_> = SERVICES.iter().map(|s| resource(s)).collect();
            let mut rng = Rng(13);
            let t = Instant::now();
            let (mut batch, mut spans) = (Vec::with_capacity(8192 + 30), 0u64);
            for n in 0..traces {
                batch.extend(trace(&mut rng, n, t0 + n * step, &resources));
                if batch.len() >= 8192 || n + 1 == traces {
                    spans += batch.len() as u64;
                    let b: Arc<[Span]> = std::mem::take(&mut batch).into();
                    index.index_spans(b).await.unwrap();
                }
            }
            index.refresh().await.unwrap();
            println!(
                "indexed {spans} spans ({traces} traces over {window_s} s) in {:.1} s",
                t.elapsed().as_secs_f64()
            );
            if kept.is_some() {
                std::fs::write(dir.join("bench-window"), format!("{t0} {t1} {traces}")).unwrap();
            }
            (t0, t1, traces)
        }
    };
    println!("segments per day partition: {:?}", segments(&dir));
    println!(
        "machine: load average {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );

    let service_error = |k: usize, lo: Option<u64>, hi: Option<u64>| TraceQuery {
        service: Some(SERVICES[k % SERVICES.len()].into()),
        errors_only: true,
        start_min_unix_nano: lo,
        start_max_unix_nano: hi,
        limit: 20,
        ..Default::default()
    };
    let (lo, hi) = (Some(t0), Some(t1 + 1));
    type Make = Box<dyn Fn(usize) -> (TraceQuery, usize)>;
    let searches: Vec<(&str, Make)> = vec![
        (
            "service + error, whole window, limit 20",
            Box::new(move |k| (service_error(k, lo, hi), 1)),
        ),
        (
            "service + error, whole window, 3rd page",
            Box::new(move |k| (service_error(k, lo, hi), 3)),
        ),
        (
            "service + error, since the window's start (no end)",
            Box::new(move |k| (service_error(k, lo, None), 1)),
        ),
        (
            "service + error, last minute",
            Box::new(move |k| (service_error(k, Some(t1 - 60_000_000_000), hi), 1)),
        ),
        (
            "error only, whole window",
            Box::new(move |_| {
                let q = TraceQuery {
                    errors_only: true,
                    start_min_unix_nano: lo,
                    start_max_unix_nano: hi,
                    limit: 20,
                    ..Default::default()
                };
                (q, 1)
            }),
        ),
        (
            "service only, whole window",
            Box::new(move |k| {
                let mut q = service_error(k, lo, hi);
                q.errors_only = false;
                (q, 1)
            }),
        ),
        (
            "service + http.route, whole window",
            Box::new(move |k| {
                let mut q = service_error(k + 1, lo, hi);
                q.errors_only = false;
                q.attributes = vec![("http.route".into(), ROUTES[k % ROUTES.len()].into())];
                (q, 1)
            }),
        ),
        (
            "service + error + text, whole window",
            Box::new(move |k| {
                let mut q = service_error(k, lo, hi);
                q.text = Some("timed out".into());
                (q, 1)
            }),
        ),
        (
            "business key, no time range",
            Box::new(move |k| {
                let n = (k as u64 * 7919) % traces;
                let q = TraceQuery {
                    business_keys: vec![("order_id".into(), format!("o-{n:010}"))],
                    limit: 20,
                    ..Default::default()
                };
                (q, 1)
            }),
        ),
    ];

    let tenant = Tenant::default();
    // The page `pages` deep, and the time its last request took.
    let search = |q: TraceQuery, pages: usize, walk: SearchWalk| {
        let index = index.clone();
        let tenant = tenant.clone();
        async move {
            set_search_walk(walk);
            let mut q = q;
            let mut took = 0.0;
            let mut page = Default::default();
            for _ in 0..pages {
                let t = Instant::now();
                page = index.find_trace_ids(&tenant, &q).await.unwrap();
                took = t.elapsed().as_secs_f64() * 1e3;
                match &page.next_cursor {
                    Some(c) => q.cursor = Some(c.clone()),
                    None => break,
                }
            }
            (page, took)
        }
    };
    println!();
    println!("| search ({queries} each) | new p50 / p99 | old p50 / p99 |\n|---|---|---|");
    for (name, make) in &searches {
        if !name.contains(only.as_str()) {
            continue;
        }
        let (mut new, mut old) = (Vec::new(), Vec::new());
        for k in 0..queries {
            let (q, pages) = make(k);
            let (page, took) = search(q.clone(), pages, SearchWalk::Slices).await;
            new.push(took);
            if !only.is_empty() {
                continue;
            }
            let (reference, took) = search(q.clone(), pages, SearchWalk::WholeRange).await;
            old.push(took);
            assert_eq!(page, reference, "{name}: {q:?}");
        }
        let old = if old.is_empty() {
            "–".to_string()
        } else {
            format!(
                "{:.2} / {:.2} ms",
                percentile(&mut old, 0.5),
                percentile(&mut old, 0.99)
            )
        };
        println!(
            "| {name} | {:.2} / {:.2} ms | {old} |",
            percentile(&mut new, 0.5),
            percentile(&mut new, 0.99)
        );
    }
    index.close().await.unwrap();
}
