//! End-to-end load benchmark against a running `clew serve`.
//!
//! Sends realistic OTLP traces over gRPC (pre-encoded, so the generator spends little CPU
//! on the shared machine), measures sustained acknowledged spans/s and acknowledged →
//! searchable latency, then measures trace-by-id, business-key lookup (full traces) and
//! search latency through the query API.
//!
//! ```text
//! cargo bench --bench load -- --spans 1000000 --grpc 127.0.0.1:4317 --api 127.0.0.1:16686
//! ```
//! `scripts/bench-e2e` starts a release `clew serve` on a fresh data directory, runs this,
//! and adds disk bytes per span and peak memory.
//!
//! `--jaeger` also times Jaeger's HTTP API on the same data, each query right after its
//! native twin (trace by id; a business-key tag search returning full traces; service +
//! error search), and prints both side by side with their ratio.
//!
//! `--ingest-only` measures acknowledged spans/s and nothing else (no query API needed):
//! `scripts/bench-e2e --agent` uses it against a release `clew agent` in front of a real
//! Kafka broker, where an acknowledgement means Kafka acknowledged the Avro records
//! (acks=all).
//!
//! `--token TOKEN` sends `authorization: Bearer TOKEN` with every request (OTLP and query
//! API), for a clew with `[auth]` tokens (the token needs the `ingest` scope, and `read`
//! unless `--ingest-only`).

mod otlp_client;
mod workload;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;

use otlp_client::{now_unix_nano, percentile, summary, RawCodec};

struct Args {
    spans: u64,
    grpc: String,
    api: String,
    concurrency: usize,
    traces_per_request: usize,
    queries: usize,
    seed: u64,
    ingest_only: bool,
    jaeger: bool,
    token: Option<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        spans: 1_000_000,
        grpc: "127.0.0.1:4317".into(),
        api: "127.0.0.1:16686".into(),
        concurrency: 8,
        traces_per_request: 25,
        queries: 2000,
        seed: 1,
        ingest_only: false,
        jaeger: false,
        token: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut val = || {
            it.next()
                .unwrap_or_else(|| panic!("{flag} needs a value"))
                .clone()
        };
        match flag.as_str() {
            "--spans" => a.spans = val().parse().expect("--spans N"),
            "--grpc" => a.grpc = val(),
            "--api" => a.api = val(),
            "--concurrency" => a.concurrency = val().parse().expect("--concurrency N"),
            "--traces-per-request" => {
                a.traces_per_request = val().parse().expect("--traces-per-request N")
            }
            "--queries" => a.queries = val().parse().expect("--queries N"),
            "--seed" => a.seed = val().parse().expect("--seed N"),
            "--ingest-only" => a.ingest_only = true,
            "--jaeger" => a.jaeger = true,
            "--token" => a.token = Some(val()),
            "--bench" => {} // passed by `cargo bench`
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

struct Batch {
    body: Bytes,
    orders: Vec<(String, [u8; 16])>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = parse_args();
    eprintln!("generating {} spans …", args.spans);
    let mut w = workload::Workload::new(args.seed);
    let mut batches = Vec::new();
    let mut total = 0u64;
    let mut bytes_total = 0usize;
    let t0 = now_unix_nano() - 60_000_000_000;
    let mut n = 0u64;
    while total < args.spans {
        let mut traces = Vec::with_capacity(args.traces_per_request);
        for _ in 0..args.traces_per_request {
            n += 1;
            traces.push(w.trace(t0 + n * 10_000));
        }
        let orders = traces
            .iter()
            .map(|t| (t.order_id.clone(), t.trace_id))
            .collect();
        let spans: u64 = traces.iter().map(|t| t.spans.len() as u64).sum();
        let body = Bytes::from(workload::request(&mut traces.into_iter()).encode_to_vec());
        bytes_total += body.len();
        total += spans;
        batches.push(Batch { body, orders });
    }
    eprintln!(
        "{} requests, {} spans, {} B/span OTLP protobuf",
        batches.len(),
        total,
        bytes_total as u64 / total
    );

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", args.grpc))
        .unwrap()
        .connect()
        .await
        .expect("connect to clew OTLP gRPC");
    let path = http::uri::PathAndQuery::from_static(otlp_client::EXPORT_PATH);
    let batches = Arc::new(batches);
    let next = Arc::new(AtomicU64::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    let bearer = args.token.as_ref().map(|t| format!("Bearer {t}"));
    let http = {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(b) = &bearer {
            headers.insert(
                reqwest::header::AUTHORIZATION,
                b.parse().expect("--token: a header value"),
            );
        }
        reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .unwrap()
    };
    let bearer: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> = bearer
        .as_deref()
        .map(|b| b.parse().expect("--token: a header value"));
    let freshness: Arc<Mutex<Vec<f64>>> = Arc::default();
    let (fresh_tx, mut fresh_rx) = tokio::sync::mpsc::channel::<(String, Instant)>(64);

    // Freshness probe: for sampled acknowledged requests, poll the key API until found.
    let api = args.api.clone();
    let fresh = freshness.clone();
    let http2 = http.clone();
    let probe = tokio::spawn(async move {
        while let Some((order, acked_at)) = fresh_rx.recv().await {
            let url = format!("http://{api}/api/v1/keys/order_id/{order}");
            loop {
                let found = match http2.get(&url).send().await {
                    Ok(r) => r
                        .json::<serde_json::Value>()
                        .await
                        .ok()
                        .and_then(|v| v["traces"].as_array().map(|a| !a.is_empty()))
                        .unwrap_or(false),
                    Err(_) => false,
                };
                if found {
                    fresh
                        .lock()
                        .unwrap()
                        .push(acked_at.elapsed().as_secs_f64() * 1000.0);
                    break;
                }
                if acked_at.elapsed() > Duration::from_secs(30) {
                    fresh.lock().unwrap().push(f64::INFINITY);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });

    let start = Instant::now();
    let ingest_only = args.ingest_only;
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let batches = batches.clone();
        let next = next.clone();
        let retries = retries.clone();
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        let path = path.clone();
        let fresh_tx = fresh_tx.clone();
        let bearer = bearer.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(b) = batches.get(i) else { break };
                loop {
                    grpc.ready().await.expect("channel ready");
                    let mut request = tonic::Request::new(b.body.clone());
                    if let Some(v) = &bearer {
                        request.metadata_mut().insert("authorization", v.clone());
                    }
                    match grpc.unary(request, path.clone(), RawCodec).await {
                        Ok(resp) => {
                            let r = resp.into_inner();
                            if let Some(p) = r.partial_success {
                                assert_eq!(
                                    p.rejected_spans, 0,
                                    "clew rejected spans: {}",
                                    p.error_message
                                );
                            }
                            if i % 50 == 0 && !ingest_only {
                                let _ = fresh_tx.try_send((b.orders[0].0.clone(), Instant::now()));
                            }
                            break;
                        }
                        Err(s)
                            if matches!(
                                s.code(),
                                tonic::Code::Unavailable | tonic::Code::ResourceExhausted
                            ) =>
                        {
                            retries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(s) => panic!("export failed: {s}"),
                    }
                }
            }
        }));
    }
    drop(fresh_tx);
    for w in workers {
        w.await.unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    probe.await.unwrap();
    let rate = total as f64 / elapsed;
    println!("## ingest\n");
    println!("| spans | seconds | spans/s | OTLP bytes/span | retried requests (overload) |");
    println!("|---|---|---|---|---|");
    println!(
        "| {total} | {elapsed:.1} | {rate:.0} | {} | {} |\n",
        bytes_total as u64 / total,
        retries.load(Ordering::Relaxed)
    );
    if args.ingest_only {
        return;
    }

    // Let the last commit land before timing queries.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut rng_i = 12345usize;
    let mut pick = |len: usize| {
        rng_i = rng_i
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng_i >> 33) % len
    };
    let all: Vec<&(String, [u8; 16])> = batches.iter().flat_map(|b| b.orders.iter()).collect();
    // Times one GET; the body is read in full. `must_succeed` panics on an error status.
    let timed = |url: String, must_succeed: bool| {
        let http = http.clone();
        async move {
            let t = Instant::now();
            let r = http.get(&url).send().await.unwrap();
            let ok = r.status().is_success();
            assert!(ok || !must_succeed, "{url} failed: {}", r.status());
            let _ = r.bytes().await.unwrap();
            (t.elapsed().as_secs_f64() * 1000.0, ok)
        }
    };
    let mut by_id = Vec::new();
    let mut by_key = Vec::new();
    let mut search = Vec::new();
    let (mut j_by_id, mut j_by_key, mut j_search) = (Vec::new(), Vec::new(), Vec::new());
    let mut misses = 0;
    let api = &args.api;
    for q in 0..args.queries {
        let (order, trace) = all[pick(all.len())];
        let trace = hex::encode(trace);
        let (ms, ok) = timed(format!("http://{api}/api/v1/traces/{trace}"), false).await;
        by_id.push(ms);
        if !ok {
            misses += 1;
        }
        if args.jaeger {
            let (ms, ok) = timed(format!("http://{api}/api/traces/{trace}"), false).await;
            j_by_id.push(ms);
            if !ok {
                misses += 1;
            }
        }
        let url = format!("http://{api}/api/v1/keys/order_id/{order}?full=true");
        by_key.push(timed(url, true).await.0);
        let (s, e) = (now_unix_nano() - 3_600_000_000_000, now_unix_nano());
        if args.jaeger {
            // The entry span (service frontend) carries the key; Jaeger needs a service.
            let (s_us, e_us) = (s / 1000, e / 1000);
            let url = format!(
                "http://{api}/api/traces?service=frontend&tags=%7B%22order_id%22%3A%22{order}%22%7D&start={s_us}&end={e_us}&limit=20"
            );
            j_by_key.push(timed(url, true).await.0);
        }
        let svc = workload::SERVICES[q % workload::SERVICES.len()];
        let url = format!(
            "http://{api}/api/v1/search?service={svc}&error=true&start={s}&end={e}&limit=20"
        );
        search.push(timed(url, true).await.0);
        if args.jaeger {
            let (s_us, e_us) = (s / 1000, e / 1000);
            let url = format!(
                "http://{api}/api/traces?service={svc}&tags=%7B%22error%22%3A%22true%22%7D&start={s_us}&end={e_us}&limit=20"
            );
            j_search.push(timed(url, true).await.0);
        }
    }
    if args.jaeger {
        println!("## Jaeger HTTP API next to the native API (milliseconds, same data, each query right after its native twin)\n");
        println!("| what | native p50 | native p99 | Jaeger API p50 | Jaeger API p99 | p50 ratio | p99 ratio |");
        println!("|---|---|---|---|---|---|---|");
        let pair = |name: &str, native: &[f64], jaeger: &[f64]| {
            let (mut n, mut j) = (native.to_vec(), jaeger.to_vec());
            n.sort_by(|a, b| a.partial_cmp(b).unwrap());
            j.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let (n50, n99, j50, j99) = (
                percentile(&n, 0.5),
                percentile(&n, 0.99),
                percentile(&j, 0.5),
                percentile(&j, 0.99),
            );
            println!(
                "| {name} | {n50:.2} | {n99:.2} | {j50:.2} | {j99:.2} | {:.2} | {:.2} |",
                j50 / n50,
                j99 / n99
            );
        };
        pair("trace by id", &by_id, &j_by_id);
        pair(
            "business key, full traces (native keys?full=true / Jaeger tags={order_id})",
            &by_key,
            &j_by_key,
        );
        pair(
            "service + error, 1 h, limit 20 (native: summaries / Jaeger: full traces)",
            &search,
            &j_search,
        );
        println!();
    }
    println!("## latency (milliseconds, through the HTTP query API, sequential)\n");
    println!("| what | n | p50 | p99 | max |");
    println!("|---|---|---|---|---|");
    println!("{}", summary("trace by id", by_id));
    println!("{}", summary("business-key lookup, full traces", by_key));
    println!(
        "{}",
        summary("search service+error+1h range, limit 20", search)
    );
    println!(
        "{}",
        summary(
            "acknowledged → searchable (sampled)",
            freshness.lock().unwrap().clone()
        )
    );
    if misses > 0 {
        println!("\n**{misses} trace-by-id lookups did not find an acknowledged trace**");
        std::process::exit(1);
    }
}
