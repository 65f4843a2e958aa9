//! clew's span metrics and alert rules in a real Prometheus (and Alertmanager): Debian's
//! `prometheus` and `prometheus-alertmanager` (scripts/prometheus-fetch installs them),
//! started here as plain processes on free 127.0.0.1 ports with the configs in
//! `deploy/prometheus/test/`, killed when the test ends (Drop).
//!
//! - `prometheus_sees_exact_red_metrics_and_service_graph`: a known set of spans (counts
//!   per service, operation and status, known durations, client/server pairs sent in
//!   separate requests, a trace over the store's span cap) gives exactly those counts,
//!   sums, buckets and edges through PromQL; then 20,000 distinct span names stay within
//!   the cardinality limit (one overflow series, its counter right).
//! - `rules_fire_and_resolve_in_prometheus_and_alertmanager`: `deploy/prometheus/clew-rules.yml`
//!   with its windows and `for:` shortened; error rate, p99 latency, rejected spans and
//!   traffic drop and an instance gone quiet (the fleet inventory's gauge) each fire (in
//!   Prometheus and in Alertmanager) and resolve again.
//!
//! Run by scripts/test: `cargo test --test prometheus_e2e -- --ignored --test-threads=1`.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clew_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use clew_proto::otlp::trace::v1::{status, Span, Status};
use common::*;
use prost::Message;
use serde_json::Value;

const MS: u64 = 1_000_000;

/// A child process killed (and reaped) when dropped.
struct Proc {
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], common::free_port()))
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

struct Prometheus {
    _proc: Proc,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Prometheus scraping `clew` every `scrape`, evaluating `rules` (a file) every second,
    /// alerting to `alertmanager`.
    async fn start(
        clew: SocketAddr,
        rules: &Path,
        alertmanager: SocketAddr,
        scrape: &str,
    ) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = std::fs::read_to_string(repo("deploy/prometheus/test/prometheus.yml"))
            .unwrap()
            .replace("@SCRAPE_INTERVAL@", scrape)
            .replace("@RULES@", &rules.display().to_string())
            .replace("@ALERTMANAGER@", &alertmanager.to_string())
            .replace("@CLEW@", &clew.to_string());
        assert!(!config.contains('@'), "placeholder left: {config}");
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let addr = free_addr();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start prometheus (run scripts/prometheus-fetch)");
        let p = Prometheus {
            _proc: Proc { child },
            addr,
            _dir: dir,
        };
        wait_http_ok(&format!("http://{addr}/-/ready"), "prometheus").await;
        p
    }

    /// An instant query: each result's labels and value.
    async fn query(&self, promql: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let body: Value = reqwest::Client::new()
            .get(format!("http://{}/api/v1/query", self.addr))
            .query(&[("query", promql)])
            .send()
            .await
            .expect("prometheus reachable")
            .json()
            .await
            .expect("prometheus answers json");
        assert_eq!(body["status"], "success", "{promql}: {body}");
        body["data"]["result"]
            .as_array()
            .expect("vector result")
            .iter()
            .map(|r| {
                let labels = r["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect();
                let value = r["value"][1].as_str().unwrap().parse().unwrap();
                (labels, value)
            })
            .collect()
    }

    /// The value of a query expected to give one series (None when it gives none).
    async fn scalar(&self, promql: &str) -> Option<f64> {
        let r = self.query(promql).await;
        assert!(r.len() <= 1, "{promql} gave {} series: {r:?}", r.len());
        r.first().map(|(_, v)| *v)
    }

    /// Polls `promql` until it equals `want` (a scrape after the last write); panics with
    /// the last value after `limit`.
    async fn wait_value(&self, promql: &str, want: f64, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.scalar(promql).await;
            if got == Some(want) {
                return;
            }
            if Instant::now() > deadline {
                panic!("{promql}: wanted {want}, last {got:?}");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Firing alerts named `name` (label sets).
    async fn firing(&self, name: &str) -> Vec<Value> {
        let body: Value = reqwest::get(format!("http://{}/api/v1/alerts", self.addr))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["data"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["labels"]["alertname"] == name && a["state"] == "firing")
            .map(|a| a["labels"].clone())
            .collect()
    }
}

struct Alertmanager {
    _proc: Proc,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    async fn start() -> Alertmanager {
        let dir = tempfile::tempdir().unwrap();
        let addr = free_addr();
        let child = Command::new("prometheus-alertmanager")
            .arg(format!(
                "--config.file={}",
                repo("deploy/prometheus/test/alertmanager.yml").display()
            ))
            .arg(format!("--storage.path={}", dir.path().display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start prometheus-alertmanager (run scripts/prometheus-fetch)");
        let a = Alertmanager {
            _proc: Proc { child },
            addr,
            _dir: dir,
        };
        wait_http_ok(&format!("http://{addr}/-/ready"), "alertmanager").await;
        a
    }

    /// Active alerts named `name` (label sets).
    async fn active(&self, name: &str) -> Vec<Value> {
        let body: Value = reqwest::get(format!("http://{}/api/v2/alerts", self.addr))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body.as_array()
            .unwrap()
            .iter()
            .filter(|a| a["labels"]["alertname"] == name && a["status"]["state"] == "active")
            .map(|a| a["labels"].clone())
            .collect()
    }
}

async fn wait_http_ok(url: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = reqwest::get(url).await {
            if r.status().is_success() {
                return;
            }
        }
        if Instant::now() > deadline {
            panic!("{what} not ready at {url} within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An OTLP span with a kind, status, duration and parent.
#[allow(clippy::too_many_arguments)]
fn span(
    trace: [u8; 16],
    id: u64,
    parent: Option<u64>,
    name: &str,
    kind: i32,
    error: bool,
    ms: u64,
    attrs: Vec<clew_proto::otlp::common::v1::KeyValue>,
) -> Span {
    let end = now_unix_nano() - MS;
    Span {
        trace_id: trace.to_vec(),
        span_id: id.to_be_bytes().to_vec(),
        parent_span_id: parent.map(|p| p.to_be_bytes().to_vec()).unwrap_or_default(),
        name: name.into(),
        kind,
        start_time_unix_nano: end - ms * MS,
        end_time_unix_nano: end,
        attributes: attrs,
        status: error.then(|| Status {
            code: status::StatusCode::Error as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const PRODUCER: i32 = 4;
const CONSUMER: i32 = 5;

/// Sends one OTLP/HTTP protobuf request; returns the partial-success rejected count.
async fn send(clew: &Clew, req: ExportTraceServiceRequest) -> i64 {
    let resp = reqwest::Client::new()
        .post(clew.otlp_http_url())
        .header("content-type", "application/x-protobuf")
        .body(req.encode_to_vec())
        .send()
        .await
        .expect("otlp http reachable");
    assert_eq!(resp.status().as_u16(), 200, "otlp export failed");
    let body = resp.bytes().await.unwrap();
    clew_proto::otlp::collector::trace::v1::ExportTraceServiceResponse::decode(body)
        .unwrap()
        .partial_success
        .map_or(0, |p| p.rejected_spans)
}

fn config_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("clew.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Debian's prometheus and prometheus-alertmanager (scripts/prometheus-fetch); run with --ignored"]
async fn prometheus_sees_exact_red_metrics_and_service_graph() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config_file(
        tmp.path(),
        "[span_metrics]\ndimensions = [\"http.route\"]\ncardinality_limit = 5000\n\n[store]\ntype = \"embedded\"\nmax_spans_per_trace = 50\n",
    );
    let clew = Clew::start(&["--config", config.to_str().unwrap()]);
    let am = Alertmanager::start().await;
    let no_rules = tmp.path().join("none.yml");
    std::fs::write(&no_rules, "groups: []\n").unwrap();
    let prom = Prometheus::start(clew.http, &no_rules, am.addr, "2s").await;

    // The known set. frontend GET /checkout: 10 × 5 ms (2 errors), 10 × 150 ms,
    // 10 × 1200 ms (4 errors); each calls cart (client span in frontend, server span in
    // cart, sent in a later request) 20 times, 5 of cart's server spans failing; 3
    // frontend → mailer producer/consumer pairs.
    let route = || vec![kv("http.route", "/checkout")];
    let mut front = Vec::new();
    let mut cart = Vec::new();
    let mut mailer = Vec::new();
    let mut expected_sum_ms = 0u64;
    for i in 0..30u64 {
        let trace = random_trace_id();
        let (ms, error) = match i {
            0..=9 => (5, i < 2),
            10..=19 => (150, false),
            _ => (1200, i >= 26),
        };
        expected_sum_ms += ms;
        front.push(span(
            trace,
            1,
            None,
            "GET /checkout",
            SERVER,
            error,
            ms,
            route(),
        ));
        if i < 20 {
            front.push(span(
                trace,
                2,
                Some(1),
                "POST /cart",
                CLIENT,
                false,
                100,
                vec![],
            ));
            cart.push(span(
                trace,
                3,
                Some(2),
                "POST /cart",
                SERVER,
                i < 5,
                80,
                vec![],
            ));
        }
        if i < 3 {
            front.push(span(
                trace,
                4,
                Some(1),
                "send mail",
                PRODUCER,
                false,
                2,
                vec![],
            ));
            mailer.push(span(
                trace,
                5,
                Some(4),
                "send mail",
                CONSUMER,
                false,
                30,
                vec![],
            ));
        }
    }
    assert_eq!(send(&clew, request("frontend", front)).await, 0);
    assert_eq!(send(&clew, request("cart", cart)).await, 0);
    assert_eq!(send(&clew, request("mailer", mailer)).await, 0);
    // one trace of 60 spans over the store's cap of 50: only the 50 stored are counted
    let big = random_trace_id();
    let capped = (1..=60)
        .map(|i| span(big, i, None, "batch item", SERVER, false, 1, vec![]))
        .collect();
    assert_eq!(send(&clew, request("capped", capped)).await, 10);

    // service, span name, kind, status → calls
    let want: BTreeMap<(&str, &str, &str, &str), f64> = [
        (
            (
                "frontend",
                "GET /checkout",
                "SPAN_KIND_SERVER",
                "STATUS_CODE_UNSET",
            ),
            24.0,
        ),
        (
            (
                "frontend",
                "GET /checkout",
                "SPAN_KIND_SERVER",
                "STATUS_CODE_ERROR",
            ),
            6.0,
        ),
        (
            (
                "frontend",
                "POST /cart",
                "SPAN_KIND_CLIENT",
                "STATUS_CODE_UNSET",
            ),
            20.0,
        ),
        (
            (
                "frontend",
                "send mail",
                "SPAN_KIND_PRODUCER",
                "STATUS_CODE_UNSET",
            ),
            3.0,
        ),
        (
            (
                "cart",
                "POST /cart",
                "SPAN_KIND_SERVER",
                "STATUS_CODE_UNSET",
            ),
            15.0,
        ),
        (
            (
                "cart",
                "POST /cart",
                "SPAN_KIND_SERVER",
                "STATUS_CODE_ERROR",
            ),
            5.0,
        ),
        (
            (
                "mailer",
                "send mail",
                "SPAN_KIND_CONSUMER",
                "STATUS_CODE_UNSET",
            ),
            3.0,
        ),
        (
            (
                "capped",
                "batch item",
                "SPAN_KIND_SERVER",
                "STATUS_CODE_UNSET",
            ),
            50.0,
        ),
    ]
    .into_iter()
    .collect();
    let total: f64 = want.values().sum();
    prom.wait_value(
        "sum(traces_span_metrics_calls_total)",
        total,
        Duration::from_secs(60),
    )
    .await;
    let got: BTreeMap<(String, String, String, String), f64> = prom
        .query("sum by (service_name, span_name, span_kind, status_code) (traces_span_metrics_calls_total)")
        .await
        .into_iter()
        .map(|(l, v)| {
            (
                (
                    l["service_name"].clone(),
                    l["span_name"].clone(),
                    l["span_kind"].clone(),
                    l["status_code"].clone(),
                ),
                v,
            )
        })
        .collect();
    let want_owned: BTreeMap<(String, String, String, String), f64> = want
        .iter()
        .map(|((a, b, c, d), v)| {
            (
                (a.to_string(), b.to_string(), c.to_string(), d.to_string()),
                *v,
            )
        })
        .collect();
    assert_eq!(got, want_owned);
    assert_eq!(
        prom.scalar("count(traces_span_metrics_calls_total)").await,
        Some(want.len() as f64)
    );
    // the configured dimension, sanitised, only where the attribute is
    assert_eq!(
        prom.scalar("sum(traces_span_metrics_calls_total{http_route=\"/checkout\"})")
            .await,
        Some(30.0)
    );
    assert_eq!(
        prom.scalar(
            "sum(traces_span_metrics_calls_total{service_name=\"frontend\",http_route=\"\"})"
        )
        .await,
        Some(23.0)
    );
    // durations: sum and buckets of frontend's GET /checkout
    let op = "service_name=\"frontend\",span_name=\"GET /checkout\"";
    assert_eq!(
        prom.scalar(&format!(
            "sum(traces_span_metrics_duration_milliseconds_sum{{{op}}})"
        ))
        .await,
        Some(expected_sum_ms as f64)
    );
    for (le, n) in [
        ("4", 0.0),
        ("6", 10.0),
        ("100", 10.0),
        ("200", 20.0),
        ("1000", 20.0),
        ("1400", 30.0),
        ("+Inf", 30.0),
    ] {
        assert_eq!(
            prom.scalar(&format!(
                "sum(traces_span_metrics_duration_milliseconds_bucket{{{op},le=\"{le}\"}})"
            ))
            .await,
            Some(n),
            "le={le}"
        );
    }
    assert_eq!(
        prom.scalar(&format!(
            "sum(traces_span_metrics_duration_milliseconds_count{{{op}}})"
        ))
        .await,
        Some(30.0)
    );
    // the service graph: edges from pairs sent in different requests
    let edges: BTreeMap<(String, String), f64> = prom
        .query("traces_service_graph_request_total")
        .await
        .into_iter()
        .map(|(l, v)| ((l["client"].clone(), l["server"].clone()), v))
        .collect();
    assert_eq!(
        edges,
        [
            (("frontend".to_string(), "cart".to_string()), 20.0),
            (("frontend".to_string(), "mailer".to_string()), 3.0)
        ]
        .into_iter()
        .collect()
    );
    let edge = "client=\"frontend\",server=\"cart\"";
    assert_eq!(
        prom.scalar(&format!(
            "traces_service_graph_request_failed_total{{{edge}}}"
        ))
        .await,
        Some(5.0)
    );
    let server_sum = prom
        .scalar(&format!(
            "traces_service_graph_request_server_seconds_sum{{{edge}}}"
        ))
        .await
        .unwrap();
    assert!((server_sum - 1.6).abs() < 1e-9, "{server_sum}");
    let client_sum = prom
        .scalar(&format!(
            "traces_service_graph_request_client_seconds_sum{{{edge}}}"
        ))
        .await
        .unwrap();
    assert!((client_sum - 2.0).abs() < 1e-9, "{client_sum}");
    assert_eq!(
        prom.scalar(&format!(
            "traces_service_graph_request_server_seconds_bucket{{{edge},le=\"0.1\"}}"
        ))
        .await,
        Some(20.0)
    );
    assert_eq!(
        prom.scalar("traces_service_graph_request_total{connection_type=\"messaging_system\"}")
            .await,
        Some(3.0)
    );
    assert_eq!(
        prom.scalar("clew_service_graph_pending_spans").await,
        Some(0.0)
    );

    // 20,000 distinct span names: the first ones fill the limit, the rest fold into the
    // overflow series
    let known = want.len() as f64;
    for chunk in 0..20u64 {
        let mut spans = Vec::new();
        let mut trace = random_trace_id();
        for i in 0..1000u64 {
            if i % 40 == 0 {
                trace = random_trace_id();
            }
            let n = chunk * 1000 + i;
            spans.push(span(
                trace,
                n + 1,
                None,
                &format!("op-{n}"),
                SERVER,
                false,
                3,
                vec![],
            ));
        }
        assert_eq!(send(&clew, request("names", spans)).await, 0);
    }
    let overflowed = 20_000.0 - (5000.0 - known);
    prom.wait_value(
        "sum(traces_span_metrics_calls_total)",
        total + 20_000.0,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        prom.scalar("count(traces_span_metrics_calls_total{otel_metric_overflow=\"\"})")
            .await,
        Some(5000.0)
    );
    assert_eq!(
        prom.scalar("traces_span_metrics_calls_total{otel_metric_overflow=\"true\"}")
            .await,
        Some(overflowed)
    );
    assert_eq!(
        prom.scalar(
            "traces_span_metrics_duration_milliseconds_count{otel_metric_overflow=\"true\"}"
        )
        .await,
        Some(overflowed)
    );
    assert_eq!(
        prom.scalar("clew_span_metrics_overflow_spans_total{metric=\"traces_span_metrics\"}")
            .await,
        Some(overflowed)
    );
    assert_eq!(
        prom.scalar("clew_span_metrics_series{metric=\"traces_span_metrics\"}")
            .await,
        Some(5000.0)
    );
    // the RED history behind the UI's service page agrees
    let (status, red) = clew.get("/api/v1/services/cart/red").await;
    assert_eq!(status, 200, "{red}");
    let points = red["points"].as_array().unwrap();
    assert_eq!(points.len(), 60);
    let calls: u64 = points.iter().map(|p| p["calls"].as_u64().unwrap()).sum();
    let errors: u64 = points.iter().map(|p| p["errors"].as_u64().unwrap()).sum();
    assert_eq!((calls, errors), (20, 5));
    let (status, body) = clew.get("/api/v1/services/nobody/red").await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().unwrap().contains("nobody"), "{body}");
}

/// What the traffic loop sends each round.
const HEALTHY: u8 = 0;
const FAILING: u8 = 1;
const REJECTED: u8 = 2;
const STOPPED: u8 = 3;

/// `deploy/prometheus/clew-rules.yml` with its windows and `for:` durations shortened so
/// each rule can fire and resolve within a minute or two.
fn fast_rules(dir: &Path) -> PathBuf {
    let rules = std::fs::read_to_string(repo("deploy/prometheus/clew-rules.yml")).unwrap();
    let mut fast = rules.clone();
    for (from, to) in [("[5m]", "[10s]"), ("[1h]", "[40s]")] {
        assert!(fast.contains(from), "the rules no longer use {from}");
        fast = fast.replace(from, to);
    }
    for m in ["1m", "2m", "3m", "5m", "10m"] {
        fast = fast.replace(&format!("for: {m}\n"), "for: 3s\n");
    }
    assert!(
        !fast.contains("for: 1") && !fast.contains("for: 2") && !fast.contains("for: 5"),
        "a for: duration was not shortened"
    );
    assert_eq!(
        fast.matches("        for: 3s\n").count(),
        rules.matches("        for: ").count()
    );
    let path = dir.join("clew-rules-fast.yml");
    std::fs::write(&path, fast).unwrap();
    path
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !cond().await {
        if Instant::now() > deadline {
            panic!("{what}: not within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Debian's prometheus and prometheus-alertmanager (scripts/prometheus-fetch); run with --ignored"]
async fn rules_fire_and_resolve_in_prometheus_and_alertmanager() {
    let tmp = tempfile::tempdir().unwrap();
    // an instance is quiet after 3 s here (10 minutes by default)
    let config = tmp.path().join("clew.toml");
    std::fs::write(
        &config,
        "[inventory]\nquiet_after_secs = 3\npersist_interval_secs = 1\n",
    )
    .unwrap();
    let clew = Arc::new(Clew::start(&["--config", config.to_str().unwrap()]));
    let am = Alertmanager::start().await;
    let rules = fast_rules(tmp.path());
    let prom = Prometheus::start(clew.http, &rules, am.addr, "1s").await;

    // 10 requests/s from payments: healthy (5 ms, no errors), failing (half of them
    // errors, 700 ms), rejected (bad trace ids next to good spans) or nothing
    let mode = Arc::new(AtomicU8::new(HEALTHY));
    let traffic = {
        let (clew, mode) = (clew.clone(), mode.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                let m = mode.load(Ordering::Relaxed);
                if m != STOPPED {
                    let mut spans = Vec::new();
                    for i in 0..5u64 {
                        n += 1;
                        let error = m == FAILING && i % 2 == 0;
                        let ms = if m == FAILING { 700 } else { 5 };
                        spans.push(span(
                            random_trace_id(),
                            n,
                            None,
                            "POST /pay",
                            SERVER,
                            error,
                            ms,
                            vec![],
                        ));
                    }
                    if m == REJECTED {
                        let mut bad = span(
                            random_trace_id(),
                            1,
                            None,
                            "POST /pay",
                            SERVER,
                            false,
                            5,
                            vec![],
                        );
                        bad.trace_id = vec![0; 16];
                        spans.push(bad);
                    }
                    send(&clew, request("payments", spans)).await;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let limit = Duration::from_secs(90);
    let firing = |name: &'static str| {
        let prom = &prom;
        move || async move { !prom.firing(name).await.is_empty() }
    };
    let quiet = |name: &'static str| {
        let prom = &prom;
        move || async move { prom.firing(name).await.is_empty() }
    };
    let in_am = |name: &'static str| {
        let am = &am;
        move || async move { !am.active(name).await.is_empty() }
    };
    let gone_from_am = |name: &'static str| {
        let am = &am;
        move || async move { am.active(name).await.is_empty() }
    };

    // healthy traffic: nothing fires
    let rate = "sum(rate(traces_span_metrics_calls_total{service_name=\"payments\"}[10s]))";
    wait_until("payments traffic scraped", limit, || async {
        prom.scalar(rate).await.is_some_and(|v| v > 5.0)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    for name in [
        "ClewServiceErrorRateHigh",
        "ClewOperationLatencyP99High",
        "ClewSpansRejected",
    ] {
        assert!(
            prom.firing(name).await.is_empty(),
            "{name} fires on healthy traffic"
        );
    }

    // failing and slow: the error-rate and p99 rules fire, in Prometheus and Alertmanager
    mode.store(FAILING, Ordering::Relaxed);
    wait_until(
        "ClewServiceErrorRateHigh fires",
        limit,
        firing("ClewServiceErrorRateHigh"),
    )
    .await;
    let alert = &prom.firing("ClewServiceErrorRateHigh").await[0];
    assert_eq!(alert["service_name"], "payments");
    assert_eq!(alert["severity"], "critical");
    wait_until(
        "ClewOperationLatencyP99High fires",
        limit,
        firing("ClewOperationLatencyP99High"),
    )
    .await;
    let alert = &prom.firing("ClewOperationLatencyP99High").await[0];
    assert_eq!(
        (alert["service_name"].as_str(), alert["span_name"].as_str()),
        (Some("payments"), Some("POST /pay"))
    );
    wait_until(
        "error-rate alert in Alertmanager",
        limit,
        in_am("ClewServiceErrorRateHigh"),
    )
    .await;
    wait_until(
        "p99 alert in Alertmanager",
        limit,
        in_am("ClewOperationLatencyP99High"),
    )
    .await;
    let delivered = &am.active("ClewServiceErrorRateHigh").await[0];
    assert_eq!(delivered["service_name"], "payments");
    assert_eq!(delivered["severity"], "critical");

    // healthy again: both resolve, and Alertmanager is told
    mode.store(HEALTHY, Ordering::Relaxed);
    wait_until(
        "ClewServiceErrorRateHigh resolves",
        limit,
        quiet("ClewServiceErrorRateHigh"),
    )
    .await;
    wait_until(
        "ClewOperationLatencyP99High resolves",
        limit,
        quiet("ClewOperationLatencyP99High"),
    )
    .await;
    wait_until(
        "error-rate alert resolved in Alertmanager",
        limit,
        gone_from_am("ClewServiceErrorRateHigh"),
    )
    .await;
    wait_until(
        "p99 alert resolved in Alertmanager",
        limit,
        gone_from_am("ClewOperationLatencyP99High"),
    )
    .await;

    // clew's own health: one span in six refused fires ClewSpansRejected; it resolves
    mode.store(REJECTED, Ordering::Relaxed);
    wait_until(
        "ClewSpansRejected fires",
        limit,
        firing("ClewSpansRejected"),
    )
    .await;
    wait_until(
        "rejections alert in Alertmanager",
        limit,
        in_am("ClewSpansRejected"),
    )
    .await;
    mode.store(HEALTHY, Ordering::Relaxed);
    wait_until(
        "ClewSpansRejected resolves",
        limit,
        quiet("ClewSpansRejected"),
    )
    .await;
    wait_until(
        "rejections alert resolved in Alertmanager",
        limit,
        gone_from_am("ClewSpansRejected"),
    )
    .await;

    // traffic stops after a steady stretch: the traffic-drop rule fires, then resolves once
    // the hourly (here: 40 s) average has no traffic left either
    assert!(prom.firing("ClewServiceTrafficDrop").await.is_empty());
    mode.store(STOPPED, Ordering::Relaxed);
    wait_until(
        "ClewServiceTrafficDrop fires",
        limit,
        firing("ClewServiceTrafficDrop"),
    )
    .await;
    assert_eq!(
        prom.firing("ClewServiceTrafficDrop").await[0]["service_name"],
        "payments"
    );
    wait_until(
        "traffic-drop alert in Alertmanager",
        limit,
        in_am("ClewServiceTrafficDrop"),
    )
    .await;
    // the sender's instance fell silent: the inventory counts it quiet and
    // ClewInstanceWentQuiet fires for its service
    wait_until(
        "ClewInstanceWentQuiet fires",
        limit,
        firing("ClewInstanceWentQuiet"),
    )
    .await;
    assert_eq!(
        prom.firing("ClewInstanceWentQuiet").await[0]["service"],
        "payments"
    );
    wait_until(
        "instance-quiet alert in Alertmanager",
        limit,
        in_am("ClewInstanceWentQuiet"),
    )
    .await;
    wait_until(
        "ClewServiceTrafficDrop resolves",
        limit,
        quiet("ClewServiceTrafficDrop"),
    )
    .await;
    wait_until(
        "traffic-drop alert resolved in Alertmanager",
        limit,
        gone_from_am("ClewServiceTrafficDrop"),
    )
    .await;
    // it sends again: no longer quiet
    mode.store(HEALTHY, Ordering::Relaxed);
    wait_until(
        "ClewInstanceWentQuiet resolves",
        limit,
        quiet("ClewInstanceWentQuiet"),
    )
    .await;
    wait_until(
        "instance-quiet alert resolved in Alertmanager",
        limit,
        gone_from_am("ClewInstanceWentQuiet"),
    )
    .await;
    traffic.abort();
}
