//! Soak benchmark: a steady OTLP/gRPC load at a fixed rate for a long time against a
//! running `clew serve`, sampled every window: acknowledged spans/s, export latency,
//! query latency (trace by id, business-key lookup, service + error search), the server's
//! RSS and the bytes in its data directory. One CSV row per window (`--out`), and a summary
//! comparing the first and the last windows on stdout.
//!
//! ```text
//! cargo bench --bench soak -- --rate 90000 --seconds 1800 --grpc 127.0.0.1:4317 \
//!     --api 127.0.0.1:16686 --pid PID --data-dir DIR --out soak.csv
//! ```
//! `scripts/soak` measures the maximum first, starts a fresh server, runs this at 80 % of
//! it and draws the CSV (`scripts/plot-soak`).
//!
//! The load is the shared workload (`workload.rs`), generated once as a pool of encoded
//! requests and replayed round after round with every trace made new: the trace ids are
//! XORed with the round number, the order ids renumbered and the timestamps moved to the
//! moment the request is due, by patching the bytes in place (offsets found and checked
//! when the pool is built), so the generator costs next to nothing on the shared machine
//! and every round writes new rows and new index terms, as production does.
//!
//! Requests are due at a fixed schedule (spans / rate); export latency is measured from
//! when a request was due, not from when it was sent, so a server falling behind shows as
//! latency instead of as a slower load (no coordinated omission).

mod otlp_client;
mod workload;

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clew_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use otlp_client::{now_unix_nano, percentile, RawCodec};

struct Args {
    rate: f64,
    seconds: u64,
    window: u64,
    grpc: String,
    api: String,
    pid: Option<u32>,
    data_dir: Option<PathBuf>,
    out: PathBuf,
    pool_requests: usize,
    concurrency: usize,
    seed: u64,
}

fn parse_args() -> Args {
    let mut a = Args {
        rate: 50_000.0,
        seconds: 1800,
        window: 10,
        grpc: "127.0.0.1:4317".into(),
        api: "127.0.0.1:16686".into(),
        pid: None,
        data_dir: None,
        out: "soak.csv".into(),
        pool_requests: 400,
        concurrency: 16,
        seed: 7,
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
            "--rate" => a.rate = val().parse().expect("--rate SPANS_PER_SECOND"),
            "--seconds" => a.seconds = val().parse().expect("--seconds N"),
            "--window" => a.window = val().parse().expect("--window SECONDS"),
            "--grpc" => a.grpc = val(),
            "--api" => a.api = val(),
            "--pid" => a.pid = Some(val().parse().expect("--pid PID")),
            "--data-dir" => a.data_dir = Some(val().into()),
            "--out" => a.out = val().into(),
            "--pool-requests" => a.pool_requests = val().parse().expect("--pool-requests N"),
            "--concurrency" => a.concurrency = val().parse().expect("--concurrency N"),
            "--seed" => a.seed = val().parse().expect("--seed N"),
            "--bench" => {} // passed by `cargo bench`
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(a.rate > 0.0 && a.window > 0 && a.seconds >= a.window);
    a
}

/// One encoded request of the pool and where its bytes change from round to round.
struct Template {
    body: Vec<u8>,
    spans: u64,
    /// Offsets of the 16 bytes of every trace id.
    trace_ids: Vec<usize>,
    /// Offsets of the 8 digits of every order id, with the trace's number in the pool.
    orders: Vec<(usize, u64)>,
    /// Offsets of every fixed64 timestamp (span start and end, event time).
    times: Vec<usize>,
    /// The earliest timestamp of the request: it is moved to the moment the request is due.
    t0: u64,
    /// The first trace's id and number in the pool (what the query probes ask for).
    probe: ([u8; 16], u64),
}

fn run_of(a: &Args) -> u64 {
    a.seed
}

type PatchPoints = (Vec<usize>, Vec<(usize, u64)>, Vec<usize>);

/// One pass over a request's bytes: where its trace ids (a span's field 1: tag 0x0a,
/// length 16), order ids (`RUN-` and 8 digits) and timestamps (fixed64 after the tag of a
/// span's start 0x39, end 0x41, or an event's time 0x09) are. `first` is the pool number
/// of the request's first trace.
fn patch_points(
    body: &[u8],
    ids: &[([u8; 16], String)],
    times: &BTreeSet<u64>,
    run: u64,
    first: u64,
) -> PatchPoints {
    let id_set: HashSet<&[u8]> = ids.iter().map(|(id, _)| &id[..]).collect();
    let prefix = format!("{run}-");
    let (mut trace_ids, mut orders, mut offsets) = (Vec::new(), Vec::new(), Vec::new());
    let mut seen_orders = HashSet::new();
    for i in 0..body.len() {
        let rest = &body[i..];
        if i >= 2
            && body[i - 2..i] == [0x0a, 0x10]
            && rest.len() >= 16
            && id_set.contains(&rest[..16])
        {
            trace_ids.push(i);
        }
        if i >= 1 && matches!(body[i - 1], 0x09 | 0x39 | 0x41) && rest.len() >= 8 {
            let v = u64::from_le_bytes(rest[..8].try_into().unwrap());
            if times.contains(&v) {
                offsets.push(i);
            }
        }
        if rest.starts_with(prefix.as_bytes()) {
            let digits = &rest[prefix.len()..];
            if digits.len() >= 8 && digits[..8].iter().all(u8::is_ascii_digit) {
                let n: u64 = std::str::from_utf8(&digits[..8]).unwrap().parse().unwrap();
                if (first..first + ids.len() as u64).contains(&n) {
                    orders.push((i + prefix.len(), n));
                    seen_orders.insert(n);
                }
            }
        }
    }
    let found: HashSet<&[u8]> = trace_ids.iter().map(|&o| &body[o..o + 16]).collect();
    assert_eq!(
        found.len(),
        ids.len(),
        "a trace id not found in its request"
    );
    assert_eq!(
        seen_orders.len(),
        ids.len(),
        "an order id not found in its request"
    );
    (trace_ids, orders, offsets)
}

/// The order id of trace number `n` (1-based, unique over the whole soak).
fn order_id(run: u64, n: u64) -> String {
    format!("{run}-{n:08}")
}

fn build_pool(a: &Args) -> (Vec<Template>, u64) {
    let mut w = workload::Workload::new(a.seed);
    let base = 1_000_000_000_000_000_000u64; // far from any id bytes or attribute value
    let mut pool = Vec::with_capacity(a.pool_requests);
    let mut n = 0u64;
    for _ in 0..a.pool_requests {
        let mut traces = Vec::with_capacity(25);
        for _ in 0..25 {
            n += 1;
            traces.push(w.trace(base + n * 10_000));
        }
        let mut times = BTreeSet::new();
        for t in &traces {
            for (_, s) in &t.spans {
                times.insert(s.start_time_unix_nano);
                times.insert(s.end_time_unix_nano);
                times.extend(s.events.iter().map(|e| e.time_unix_nano));
            }
        }
        let spans = traces.iter().map(|t| t.spans.len() as u64).sum();
        let ids: Vec<([u8; 16], String)> = traces
            .iter()
            .map(|t| (t.trace_id, t.order_id.clone()))
            .collect();
        let first = n - 24;
        let body = workload::request(&mut traces.into_iter()).encode_to_vec();
        let (trace_ids, orders, offsets) = patch_points(&body, &ids, &times, run_of(a), first);
        pool.push(Template {
            body,
            spans,
            trace_ids,
            orders,
            times: offsets,
            t0: *times.first().expect("spans"),
            probe: (ids[0].0, first),
        });
    }
    (pool, n)
}

/// Round `round` of template `t`, due at `due_unix_nano`: new trace ids, order ids and times.
fn instantiate(
    t: &Template,
    round: u64,
    pool_traces: u64,
    run: u64,
    due_unix_nano: u64,
) -> Vec<u8> {
    let mut body = t.body.clone();
    let x = round.to_le_bytes();
    for &o in &t.trace_ids {
        for (b, x) in body[o + 8..o + 16].iter_mut().zip(x) {
            *b ^= x;
        }
    }
    for &(o, n) in &t.orders {
        let id = order_id(run, round * pool_traces + n);
        body[o..o + 8].copy_from_slice(&id.as_bytes()[id.len() - 8..]);
    }
    let shift = due_unix_nano.saturating_sub(t.t0);
    for &o in &t.times {
        let v = u64::from_le_bytes(body[o..o + 8].try_into().unwrap()) + shift;
        body[o..o + 8].copy_from_slice(&v.to_le_bytes());
    }
    body
}

fn probe_id(t: &Template, round: u64) -> [u8; 16] {
    let mut id = t.probe.0;
    for (b, x) in id[8..].iter_mut().zip(round.to_le_bytes()) {
        *b ^= x;
    }
    id
}

/// The patching is checked once against prost's decode: round 3 of the first template has
/// the new ids, order ids and times everywhere, and nothing else changed.
fn self_check(t: &Template, pool_traces: u64, run: u64) {
    let before = ExportTraceServiceRequest::decode(t.body.as_slice()).expect("template decodes");
    let due = now_unix_nano();
    let after =
        ExportTraceServiceRequest::decode(instantiate(t, 3, pool_traces, run, due).as_slice())
            .expect("patched request decodes");
    let spans = |r: &ExportTraceServiceRequest| {
        r.resource_spans
            .iter()
            .flat_map(|rs| rs.scope_spans.iter().flat_map(|ss| ss.spans.clone()))
            .collect::<Vec<_>>()
    };
    let (b, a) = (spans(&before), spans(&after));
    assert_eq!(b.len(), a.len());
    let shift = due - t.t0;
    let new_order = order_id(run, 3 * pool_traces + t.probe.1);
    for (b, a) in b.iter().zip(&a) {
        assert_eq!(a.trace_id[..8], b.trace_id[..8]);
        assert_ne!(a.trace_id[8..], b.trace_id[8..]);
        assert_eq!(a.span_id, b.span_id);
        assert_eq!(a.start_time_unix_nano, b.start_time_unix_nano + shift);
        assert_eq!(a.end_time_unix_nano, b.end_time_unix_nano + shift);
        for (eb, ea) in b.events.iter().zip(&a.events) {
            assert_eq!(ea.time_unix_nano, eb.time_unix_nano + shift);
        }
        assert_eq!(a.attributes.len(), b.attributes.len());
    }
    let probe = probe_id(t, 3);
    let has_order = a.iter().any(|s| {
        s.trace_id == probe
            && s.attributes.iter().any(|kv| {
                kv.key == "order_id"
                    && matches!(
                        kv.value.as_ref().and_then(|v| v.value.as_ref()),
                        Some(clew_proto::otlp::common::v1::any_value::Value::StringValue(v)) if *v == new_order
                    )
            })
    });
    assert!(has_order, "the probe trace carries its new order id");
}

/// What the workers and probes collect during one window.
#[derive(Default)]
struct Window {
    acked_spans: u64,
    retries: u64,
    export_ms: Vec<f64>,
    by_id_ms: Vec<f64>,
    key_ms: Vec<f64>,
    search_ms: Vec<f64>,
    misses: u64,
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The server's threads grouped by what runs on them (by thread name, as
/// `scripts/thread-cpu` names them): the columns of the CPU panel.
const THREAD_GROUPS: [&str; 5] = ["ingest", "index", "merge", "store", "other"];

fn thread_group(name: &str) -> usize {
    // group 1 (index: tantivy's indexer threads, the index writer) becomes the remainder
    // of the process total in the sampling loop
    if name.starts_with("thrd-tantivy-in") || name.starts_with("clew-index") {
        1
    } else if name.starts_with("merge_thread") {
        2
    } else if name.starts_with("fjall") {
        3
    } else if name.starts_with("clew") || name.starts_with("tokio") {
        0
    } else {
        4
    }
}

/// CPU ticks (user + system) of every thread of `pid`, by thread id: a thread's own
/// counter, so threads that started since the last sample count from zero.
fn thread_ticks(pid: u32) -> std::collections::HashMap<u32, (usize, u64)> {
    let mut out = std::collections::HashMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let ticks = stat_ticks(&stat);
        if let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) {
            out.insert(tid, (thread_group(&stat[open + 1..close]), ticks));
        }
    }
    out
}

/// CPU ticks (user + system) of the whole process, ended threads included.
fn process_ticks(pid: u32) -> u64 {
    stat_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default())
}

/// utime + stime of a `/proc/…/stat` line (the 14th and 15th fields; the name before them
/// is in parentheses and may hold spaces), 0 when unreadable.
fn stat_ticks(stat: &str) -> u64 {
    let Some(close) = stat.rfind(')') else {
        return 0;
    };
    let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    fields
        .get(11)
        .and_then(|u| u.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
}

/// Busy and total ticks of the whole machine (every core) from /proc/stat.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().next() else {
        return (0, 0);
    };
    let v: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    // idle + iowait
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// The server's own gauges of what holds its memory, from `/metrics` (0 when absent).
const MEMORY_GAUGES: [&str; 5] = [
    "clew_memory_allocated_bytes",
    "clew_memory_resident_bytes",
    "clew_store_cache_bytes",
    "clew_store_memtable_bytes",
    "clew_index_segments",
];

fn gauges(text: &str) -> [f64; MEMORY_GAUGES.len()] {
    let mut out = [0.0; MEMORY_GAUGES.len()];
    for line in text.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        if let Some(i) = MEMORY_GAUGES.iter().position(|g| *g == name) {
            out[i] += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    out
}

fn p(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    percentile(v, q)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = parse_args();
    let run = args.seed;
    let (pool, pool_traces) = build_pool(&args);
    self_check(&pool[0], pool_traces, run);
    let pool_spans: u64 = pool.iter().map(|t| t.spans).sum();
    // spans due before template i within a round
    let before: Vec<u64> = pool
        .iter()
        .scan(0, |acc, t| {
            let b = *acc;
            *acc += t.spans;
            Some(b)
        })
        .collect();
    eprintln!(
        "pool: {} requests, {pool_spans} spans, replayed at {} spans/s for {} s",
        pool.len(),
        args.rate,
        args.seconds
    );

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", args.grpc))
        .unwrap()
        .connect()
        .await
        .expect("connect to clew OTLP gRPC");
    let path = http::uri::PathAndQuery::from_static(otlp_client::EXPORT_PATH);
    let http = reqwest::Client::new();
    let pool = Arc::new(pool);
    let before = Arc::new(before);
    let window = Arc::new(Mutex::new(Window::default()));
    // acknowledged probe traces (when, trace id, order id), newest last
    let acked: Arc<Mutex<VecDeque<(Instant, [u8; 16], String)>>> = Arc::default();
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let start_unix = now_unix_nano();
    let end = start + Duration::from_secs(args.seconds);
    let due = {
        let (pool, before, rate) = (pool.clone(), before.clone(), args.rate);
        move |i: u64| -> Duration {
            let (round, k) = (i / pool.len() as u64, (i % pool.len() as u64) as usize);
            Duration::from_secs_f64((round * pool_spans + before[k]) as f64 / rate)
        }
    };

    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (pool, window, acked, next, due) = (
            pool.clone(),
            window.clone(),
            acked.clone(),
            next.clone(),
            due.clone(),
        );
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        let path = path.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let at = start + due(i);
                if at >= end {
                    break;
                }
                tokio::time::sleep_until(at.into()).await;
                let (round, k) = (i / pool.len() as u64, (i % pool.len() as u64) as usize);
                let t = &pool[k];
                let due_unix = start_unix + due(i).as_nanos() as u64;
                let body = Bytes::from(instantiate(t, round, pool_traces, run, due_unix));
                let mut retries = 0;
                loop {
                    grpc.ready().await.expect("channel ready");
                    match grpc
                        .unary(tonic::Request::new(body.clone()), path.clone(), RawCodec)
                        .await
                    {
                        Ok(resp) => {
                            if let Some(p) = resp.into_inner().partial_success {
                                assert_eq!(p.rejected_spans, 0, "rejected: {}", p.error_message);
                            }
                            break;
                        }
                        Err(s)
                            if matches!(
                                s.code(),
                                tonic::Code::Unavailable | tonic::Code::ResourceExhausted
                            ) =>
                        {
                            retries += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(s) => panic!("export failed: {s}"),
                    }
                }
                let ms = at.elapsed().as_secs_f64() * 1000.0;
                {
                    let mut w = window.lock().unwrap();
                    w.acked_spans += t.spans;
                    w.retries += retries;
                    w.export_ms.push(ms);
                }
                if i % 10 == 0 {
                    let order = order_id(run, round * pool_traces + t.probe.1);
                    let mut a = acked.lock().unwrap();
                    a.push_back((Instant::now(), probe_id(t, round), order));
                    if a.len() > 1000 {
                        a.pop_front();
                    }
                }
            }
        }));
    }

    // Query probes, one after the other: a trace acknowledged just now by id (the store
    // answers once acknowledged), one acknowledged ≥ 3 s ago by its order id (the index is
    // searchable within 2 s), and a service + error search over the last 15 minutes.
    let probes = {
        let (window, acked, api, http) = (
            window.clone(),
            acked.clone(),
            args.api.clone(),
            http.clone(),
        );
        tokio::spawn(async move {
            let timed = |url: String| {
                let http = http.clone();
                async move {
                    let t = Instant::now();
                    let r = http.get(&url).send().await.expect("query API");
                    let status = r.status();
                    let body: serde_json::Value = r.json().await.unwrap_or_default();
                    (t.elapsed().as_secs_f64() * 1000.0, status, body)
                }
            };
            // every failed or empty probe is told (the first 20 in full), by kind
            let mut told = 0;
            let mut miss = |what: &str, url: &str, status: reqwest::StatusCode, age: Duration| {
                if told < 20 {
                    eprintln!(
                        "probe miss: {what} {url} answered {status} (acknowledged {:.1} s before)",
                        age.as_secs_f64()
                    );
                    told += 1;
                }
                1
            };
            let mut q = 0usize;
            while Instant::now() < end {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let (newest, settled) = {
                    let a = acked.lock().unwrap();
                    let settled = a
                        .iter()
                        .rev()
                        .find(|(at, _, _)| at.elapsed() >= Duration::from_secs(3))
                        .cloned();
                    (a.back().cloned(), settled)
                };
                let Some((acked_at, id, _)) = newest else {
                    continue;
                };
                let url = format!("http://{api}/api/v1/traces/{}", hex::encode(id));
                let (ms, status, _) = timed(url.clone()).await;
                let mut misses = 0;
                if !status.is_success() {
                    misses += miss("trace by id", &url, status, acked_at.elapsed());
                }
                let mut key = None;
                if let Some((acked_at, _, order)) = settled {
                    let url = format!("http://{api}/api/v1/keys/order_id/{order}");
                    let (ms, status, body) = timed(url.clone()).await;
                    let found = body["traces"].as_array().is_some_and(|t| !t.is_empty());
                    if !(status.is_success() && found) {
                        misses += miss(
                            "key lookup (empty or failed)",
                            &url,
                            status,
                            acked_at.elapsed(),
                        );
                    }
                    key = Some(ms);
                }
                q += 1;
                let svc = workload::SERVICES[q % workload::SERVICES.len()];
                let now = now_unix_nano();
                let url = format!(
                    "http://{api}/api/v1/search?service={svc}&error=true&start={}&end={now}&limit=20",
                    now - 900_000_000_000
                );
                let (s_ms, status, _) = timed(url.clone()).await;
                if !status.is_success() {
                    misses += miss("search", &url, status, Duration::ZERO);
                }
                let mut w = window.lock().unwrap();
                w.by_id_ms.push(ms);
                w.key_ms.extend(key);
                w.search_ms.push(s_ms);
                w.misses += misses;
            }
        })
    };

    let mut out = std::fs::File::create(&args.out).expect("--out file");
    writeln!(
        out,
        "seconds,acked_spans_per_s,total_spans,retries,export_p50_ms,export_p99_ms,by_id_p99_ms,key_p99_ms,search_p99_ms,queries,misses,rss_mib,disk_bytes,disk_bytes_per_span,rss_anon_mib,rss_file_mib,{},machine_cores,heap_allocated_mib,heap_resident_mib,store_cache_mib,store_memtable_mib,index_segments",
        THREAD_GROUPS.map(|g| format!("cores_{g}")).join(",")
    )
    .unwrap();
    let hz = 100.0; // USER_HZ: what /proc reports ticks in on Linux
    let mut ticks_before = args.pid.map(thread_ticks).unwrap_or_default();
    let mut machine_before = machine_ticks();
    let mut process_before = args.pid.map_or(0, process_ticks);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let metrics_url = format!("http://{}/metrics", args.api);
    let mut total = 0u64;
    let mut total_misses = 0u64;
    let mut rows: Vec<Vec<f64>> = Vec::new();
    let mut tick = tokio::time::interval_at(
        (start + Duration::from_secs(args.window)).into(),
        Duration::from_secs(args.window),
    );
    loop {
        tick.tick().await;
        let mut w = std::mem::take(&mut *window.lock().unwrap());
        total += w.acked_spans;
        total_misses += w.misses;
        let secs = start.elapsed().as_secs_f64();
        let rss = args.pid.map_or(0, |p| rss_kib(p, "VmRSS:")) as f64 / 1024.0;
        let disk = args.data_dir.as_deref().map_or(0, workload::dir_bytes);
        // cores used in the window by each group of the server's threads, and by the
        // whole machine (the load generator and everything else included)
        let ticks_now = args.pid.map(thread_ticks).unwrap_or_default();
        let mut group_ticks = [0u64; THREAD_GROUPS.len()];
        for (tid, (group, ticks)) in &ticks_now {
            let before = ticks_before.get(tid).map_or(0, |(_, t)| *t);
            group_ticks[*group] += ticks.saturating_sub(before);
        }
        ticks_before = ticks_now;
        // tantivy starts its indexer threads anew at every commit (once a second), so
        // most of them start and end between two samples: the index group is what the
        // process spent (its counter keeps ended threads' time) beyond the long-lived groups
        let process_now = args.pid.map_or(0, process_ticks);
        let named: u64 = group_ticks.iter().sum::<u64>() - group_ticks[1];
        group_ticks[1] = process_now
            .saturating_sub(process_before)
            .saturating_sub(named);
        process_before = process_now;
        let machine_now = machine_ticks();
        let (machine_busy, machine_all) = (
            machine_now.0.saturating_sub(machine_before.0),
            machine_now.1.saturating_sub(machine_before.1),
        );
        machine_before = machine_now;
        let metrics_text = match http.get(&metrics_url).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let g = gauges(&metrics_text);
        let mib = |b: f64| b / (1024.0 * 1024.0);
        let mut row = vec![
            secs,
            w.acked_spans as f64 / args.window as f64,
            total as f64,
            w.retries as f64,
            p(&mut w.export_ms, 0.5),
            p(&mut w.export_ms, 0.99),
            p(&mut w.by_id_ms, 0.99),
            p(&mut w.key_ms, 0.99),
            p(&mut w.search_ms, 0.99),
            w.by_id_ms.len() as f64,
            w.misses as f64,
            rss,
            disk as f64,
            if total > 0 {
                disk as f64 / total as f64
            } else {
                0.0
            },
            // RSS split: heap (anonymous) and mapped files (tantivy's mmap'd segments:
            // page cache the kernel can take back, not memory clew holds)
            args.pid.map_or(0, |p| rss_kib(p, "RssAnon:")) as f64 / 1024.0,
            args.pid.map_or(0, |p| rss_kib(p, "RssFile:")) as f64 / 1024.0,
        ];
        row.extend(
            group_ticks
                .iter()
                .map(|t| *t as f64 / hz / args.window as f64),
        );
        row.push(if machine_all > 0 {
            machine_busy as f64 / machine_all as f64 * cores
        } else {
            0.0
        });
        row.extend([mib(g[0]), mib(g[1]), mib(g[2]), mib(g[3]), g[4]]);
        let line: Vec<String> = row
            .iter()
            .map(|v| {
                if v.fract() == 0.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.2}")
                }
            })
            .collect();
        writeln!(out, "{}", line.join(",")).unwrap();
        out.flush().unwrap();
        eprintln!(
            "{:>6.0} s  {:>7.0} spans/s  export p99 {:>7.1} ms  by id p99 {:>6.1} ms  key p99 {:>6.1} ms  search p99 {:>6.1} ms  RSS {:>5.0} MiB  disk {:>5.0} B/span",
            row[0], row[1], row[5], row[6], row[7], row[8], row[11], row[13]
        );
        rows.push(row);
        if Instant::now() + Duration::from_millis(500) >= end {
            break;
        }
    }
    for w in workers {
        w.await.unwrap();
    }
    probes.await.unwrap();
    let w = std::mem::take(&mut *window.lock().unwrap());
    total += w.acked_spans;
    total_misses += w.misses;

    // First and last fifth of the run, each the median of its windows (the first window is
    // left out: the server starts cold).
    let fifth = (rows.len() / 5).max(1);
    let median = |rows: &[Vec<f64>], col: usize| {
        let mut v: Vec<f64> = rows
            .iter()
            .map(|r| r[col])
            .filter(|v| v.is_finite())
            .collect();
        p(&mut v, 0.5)
    };
    let first = &rows[1.min(rows.len() - 1)..(1 + fifth).min(rows.len())];
    let last = &rows[rows.len() - fifth..];
    println!(
        "## soak: {} spans/s offered for {} s ({total} spans acknowledged, window {} s)\n",
        args.rate, args.seconds, args.window
    );
    println!("| what (median of the windows) | first fifth | last fifth |");
    println!("|---|---|---|");
    for (name, col) in [
        ("acknowledged spans/s", 1),
        ("export latency p99 ms (from when due)", 5),
        ("trace by id p99 ms", 6),
        ("business-key lookup p99 ms", 7),
        ("service + error search (15 min) p99 ms", 8),
        ("RSS MiB", 11),
        ("of which anonymous (heap) MiB", 14),
        ("of which mapped files MiB", 15),
        ("heap allocated (live) MiB", 22),
        ("heap resident (allocator) MiB", 23),
        ("store block cache MiB", 24),
        ("store memtables MiB", 25),
        ("index segments (partitions written)", 26),
        ("cores used by the server's ingest threads", 16),
        ("… index (tantivy indexer + writer)", 17),
        ("… index merges", 18),
        ("… store (fjall flushes, compactions)", 19),
        ("cores used by the whole machine", 21),
        ("disk bytes per span", 13),
    ] {
        println!(
            "| {name} | {:.1} | {:.1} |",
            median(first, col),
            median(last, col)
        );
    }
    let peak_rss = rows.iter().map(|r| r[11]).fold(0.0, f64::max);
    let hwm = args.pid.map_or(0, |p| rss_kib(p, "VmHWM:")) / 1024;
    let retries: f64 = rows.iter().map(|r| r[3]).sum();
    println!("\npeak RSS sampled {peak_rss:.0} MiB (VmHWM {hwm} MiB); retried requests {retries:.0}; failed or empty query probes {total_misses}");
    if total_misses > 0 {
        std::process::exit(1);
    }
}
