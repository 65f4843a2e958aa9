//! clew's span metrics against the real thing: the OpenTelemetry Collector's spanmetrics
//! connector behind its Prometheus exporter, as built into Jaeger v2 (the binary
//! `scripts/jaeger-fetch` builds; config `tests/jaeger/spanmetrics.yaml`). The same OTLP
//! requests go to both, in the same order; then every `traces_span_metrics_*` sample of
//! the two `/metrics` answers must be the same — names, label sets, counts, bucket counts
//! and sums.
//!
//! Only the labels the exporter adds from the resource and scope (`job`, `instance`,
//! `otel_scope_*`) are left out of the comparison: clew's metrics carry no resource labels.
//!
//! - `same_series_as_the_spanmetrics_connector`: three services, every span kind and
//!   status, durations on and around every bucket bound, a dimension found on the span,
//!   on the resource, as an int, or missing (with and without a default), span names
//!   that need escaping in the text format.
//! - `same_overflow_as_the_spanmetrics_connector`: one service, more span names than the
//!   cardinality limit: the same series kept, the rest in the same
//!   `otel_metric_overflow="true"` series. (The connector limits series per resource,
//!   clew per metric: with one resource the two are the same; README says so.)
//!
//! Run by scripts/test: `cargo test --test span_metrics_compat -- --ignored`.

mod common;

use std::collections::BTreeMap;
use std::process::Child;
use std::time::{Duration, Instant};

use clew_proto::otlp::collector::trace::v1::trace_service_client::TraceServiceClient;
use clew_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use clew_proto::otlp::common::v1::{any_value, AnyValue, KeyValue};
use clew_proto::otlp::resource::v1::Resource;
use clew_proto::otlp::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
use common::*;

const MS: u64 = 1_000_000;

/// Jaeger v2 running only the spanmetrics connector; killed when dropped.
struct Connector {
    child: Child,
    otlp_grpc: String,
    metrics: String,
}

impl Connector {
    async fn start(cardinality_limit: usize) -> Connector {
        let grpc = free_port();
        let prom = free_port();
        let config = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/jaeger/spanmetrics.yaml");
        let child = common::jaeger::command(config)
            .env("SPANMETRICS_OTLP_GRPC_PORT", grpc.to_string())
            .env("SPANMETRICS_PROMETHEUS_PORT", prom.to_string())
            .env(
                "SPANMETRICS_CARDINALITY_LIMIT",
                cardinality_limit.to_string(),
            )
            .spawn()
            .expect("start jaeger with the spanmetrics connector");
        let connector = Connector {
            child,
            otlp_grpc: format!("http://127.0.0.1:{grpc}"),
            metrics: format!("http://127.0.0.1:{prom}/metrics"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TraceServiceClient::connect(connector.otlp_grpc.clone())
            .await
            .is_err()
            || reqwest::get(&connector.metrics).await.is_err()
        {
            assert!(
                Instant::now() < deadline,
                "the spanmetrics connector did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        connector
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// clew with the same dimensions and cardinality limit as `tests/jaeger/spanmetrics.yaml`.
fn start_clew(cardinality_limit: usize) -> (Clew, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("clew.toml");
    std::fs::write(
        &config,
        format!(
            "[span_metrics]\n\
             dimensions = [\"http.route\", {{ name = \"http.request.method\", default = \"GET\" }}]\n\
             cardinality_limit = {cardinality_limit}\n"
        ),
    )
    .expect("write clew.toml");
    let clew = Clew::start(&["--config", config.to_str().expect("utf-8 path")]);
    (clew, dir)
}

/// Sends every request, in order, to both; each must be accepted whole.
async fn send_to_both(clew: &Clew, connector: &Connector, requests: &[ExportTraceServiceRequest]) {
    for url in [clew.otlp_grpc_url(), connector.otlp_grpc.clone()] {
        let mut client = TraceServiceClient::connect(url.clone())
            .await
            .expect("connect");
        for req in requests {
            let answer = client
                .export(req.clone())
                .await
                .unwrap_or_else(|e| panic!("{url} refused a request: {e}"))
                .into_inner();
            if let Some(partial) = answer.partial_success {
                assert_eq!(
                    partial.rejected_spans, 0,
                    "{url} rejected spans: {partial:?}"
                );
            }
        }
    }
}

/// One sample: metric name and its labels without the exporter's resource/scope labels.
type Series = (String, BTreeMap<String, String>);

/// The `traces_span_metrics_*` samples of a Prometheus text exposition, and the TYPE of
/// each such metric family.
fn span_metric_samples(text: &str) -> (BTreeMap<Series, f64>, BTreeMap<String, String>) {
    let mut samples = BTreeMap::new();
    let mut types = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE traces_span_metrics_") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line");
            types.insert(format!("traces_span_metrics_{name}"), kind.to_string());
            continue;
        }
        if !line.starts_with("traces_span_metrics_") {
            continue;
        }
        let (name, labels, value) = parse_sample(line);
        let labels = labels
            .into_iter()
            .filter(|(k, _)| k != "job" && k != "instance" && !k.starts_with("otel_scope_"))
            .collect();
        let previous = samples.insert((name, labels), value);
        assert!(previous.is_none(), "a sample twice: {line}");
    }
    (samples, types)
}

/// `name{k="v",…} value` (the text format's escapes `\\`, `\"`, `\n` in label values).
fn parse_sample(line: &str) -> (String, BTreeMap<String, String>, f64) {
    let mut labels = BTreeMap::new();
    let (name, rest) = match line.find('{') {
        None => {
            let (name, value) = line.split_once(' ').expect("sample line");
            return (name.into(), labels, parse_value(value));
        }
        Some(i) => (&line[..i], &line[i + 1..]),
    };
    let mut chars = rest.chars().peekable();
    loop {
        match chars.peek() {
            Some('}') => {
                chars.next();
                break;
            }
            Some(',') | Some(' ') => {
                chars.next();
                continue;
            }
            None => panic!("unterminated labels: {line}"),
            _ => {}
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(
            chars.next(),
            Some('"'),
            "label value must be quoted: {line}"
        );
        let mut value = String::new();
        loop {
            match chars.next().expect("unterminated label value") {
                '"' => break,
                '\\' => match chars.next().expect("escape") {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                c => value.push(c),
            }
        }
        labels.insert(key, value);
    }
    let value: String = chars.collect();
    let value = value.trim();
    // a timestamp after the value is allowed by the format; neither side writes one
    let value = value.split(' ').next().expect("value");
    (name.into(), labels, parse_value(value))
}

fn parse_value(v: &str) -> f64 {
    match v {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v
            .parse()
            .unwrap_or_else(|_| panic!("not a sample value: {v}")),
    }
}

async fn scrape(url: &str) -> String {
    reqwest::get(url)
        .await
        .and_then(|r| r.error_for_status())
        .unwrap_or_else(|e| panic!("scrape {url}: {e}"))
        .text()
        .await
        .expect("metrics body")
}

fn calls(samples: &BTreeMap<Series, f64>) -> f64 {
    samples
        .iter()
        .filter(|((name, _), _)| name == "traces_span_metrics_calls_total")
        .map(|(_, v)| v)
        .sum()
}

/// Waits until both count `spans` calls (the connector flushes every 200 ms, clew counts
/// a span once it is stored), then asserts the two sets of samples are the same.
async fn assert_same_metrics(
    clew: &Clew,
    connector: &Connector,
    spans: usize,
) -> BTreeMap<Series, f64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let (ours, theirs) = loop {
        let ours = span_metric_samples(&scrape(&clew.api_url("/metrics")).await);
        let theirs = span_metric_samples(&scrape(&connector.metrics).await);
        if calls(&ours.0) == spans as f64 && calls(&theirs.0) == spans as f64 {
            break (ours, theirs);
        }
        assert!(
            Instant::now() < deadline,
            "calls never reached {spans}: clew {}, connector {}",
            calls(&ours.0),
            calls(&theirs.0)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(ours.1, theirs.1, "metric families and their TYPEs differ");

    let mut differences = Vec::new();
    for (series, want) in &theirs.0 {
        match ours.0.get(series) {
            None => differences.push(format!("only the connector has {series:?} = {want}")),
            // sums are float additions of the same durations: allow rounding, nothing more
            Some(got) if (got - want).abs() > 1e-9 * want.abs().max(1.0) => {
                differences.push(format!("{series:?}: clew {got}, connector {want}"))
            }
            Some(_) => {}
        }
    }
    for (series, got) in &ours.0 {
        if !theirs.0.contains_key(series) {
            differences.push(format!("only clew has {series:?} = {got}"));
        }
    }
    assert!(
        differences.is_empty(),
        "{} differences in {} samples:\n{}",
        differences.len(),
        theirs.0.len(),
        differences.join("\n")
    );
    ours.0
}

fn attr(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn resource_spans(resource: Vec<KeyValue>, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: resource,
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A span of `trace` with a duration in nanoseconds, kind, status code and attributes.
fn span(
    trace: [u8; 16],
    id: u64,
    name: &str,
    kind: i32,
    code: i32,
    nanos: u64,
    attrs: Vec<KeyValue>,
) -> Span {
    let start = now_unix_nano() - 60_000 * MS;
    Span {
        trace_id: trace.to_vec(),
        span_id: id.to_be_bytes().to_vec(),
        name: name.into(),
        kind,
        start_time_unix_nano: start,
        end_time_unix_nano: start + nanos,
        attributes: attrs,
        status: Some(Status {
            code,
            message: if code == status::StatusCode::Error as i32 {
                "boom".into()
            } else {
                String::new()
            },
        }),
        ..Default::default()
    }
}

#[tokio::test]
#[ignore = "needs the Jaeger v2 binary (scripts/jaeger-fetch builds it); run by scripts/test"]
async fn same_series_as_the_spanmetrics_connector() {
    let connector = Connector::start(5000).await;
    let (clew, _config) = start_clew(5000);

    // Durations on, just below and just above each bucket bound (ms), and beyond the last.
    let bounds_ms = [
        2u64, 4, 6, 8, 10, 50, 100, 200, 400, 800, 1000, 1400, 2000, 5000, 10000, 15000,
    ];
    let mut durations = vec![0, 1, 999_999, 20_000 * MS, 3_600_000 * MS];
    for b in bounds_ms {
        durations.extend([b * MS - 1, b * MS, b * MS + 1]);
    }
    let names = [
        "GET /orders/{id}",
        "SELECT orders",
        "publish order.created",
        "quote\"back\\slash",
        "line\nbreak",
        "検索",
        "",
    ];
    let services: [(&str, Vec<KeyValue>); 3] = [
        ("checkout", vec![]),
        // a dimension on the resource applies to every span without it on the span
        (
            "payments",
            vec![attr(
                "http.request.method",
                any_value::Value::StringValue("PUT".into()),
            )],
        ),
        (
            "inventory",
            vec![attr(
                "host.name",
                any_value::Value::StringValue("db-1".into()),
            )],
        ),
    ];

    let mut requests = Vec::new();
    let mut total = 0;
    let mut id = 1u64;
    for round in 0..4u64 {
        let mut resource_spans_list = Vec::new();
        for (s, (service, extra)) in services.iter().enumerate() {
            let mut resource = vec![attr(
                "service.name",
                any_value::Value::StringValue((*service).into()),
            )];
            resource.extend(extra.iter().cloned());
            let trace = random_trace_id();
            let mut spans = Vec::new();
            for (i, nanos) in durations.iter().enumerate() {
                let n = i as u64 + round * 7 + s as u64 * 3;
                let mut attrs = Vec::new();
                match n % 5 {
                    0 => attrs.push(attr(
                        "http.route",
                        any_value::Value::StringValue("/orders/{id}".into()),
                    )),
                    1 => attrs.push(attr("http.route", any_value::Value::IntValue(404))),
                    2 => attrs.push(attr("http.route", any_value::Value::BoolValue(true))),
                    3 => attrs.push(attr("http.route", any_value::Value::DoubleValue(1.5))),
                    _ => {}
                }
                if n % 3 == 0 {
                    attrs.push(attr(
                        "http.request.method",
                        any_value::Value::StringValue("POST".into()),
                    ));
                }
                spans.push(span(
                    trace,
                    id,
                    names[(n % names.len() as u64) as usize],
                    (n % 6) as i32,
                    (n / 2 % 3) as i32,
                    *nanos,
                    attrs,
                ));
                id += 1;
            }
            total += spans.len();
            resource_spans_list.push(resource_spans(resource, spans));
        }
        requests.push(ExportTraceServiceRequest {
            resource_spans: resource_spans_list,
        });
    }

    send_to_both(&clew, &connector, &requests).await;
    let samples = assert_same_metrics(&clew, &connector, total).await;
    assert!(
        samples
            .keys()
            .any(|(_, labels)| labels.get("span_name").is_some_and(String::is_empty)),
        "a span sent without a name is counted under span_name=\"\""
    );
}

#[tokio::test]
#[ignore = "needs the Jaeger v2 binary (scripts/jaeger-fetch builds it); run by scripts/test"]
async fn same_overflow_as_the_spanmetrics_connector() {
    let limit = 10;
    let connector = Connector::start(limit).await;
    let (clew, _config) = start_clew(limit);
    let resource = vec![attr(
        "service.name",
        any_value::Value::StringValue("fanout".into()),
    )];

    // 40 span names, each twice, one request per 8 spans: the first `limit` label sets
    // keep their series, every later one goes to the overflow series.
    let mut requests = Vec::new();
    let mut id = 1u64;
    let mut total = 0;
    for chunk in 0..10u64 {
        let trace = random_trace_id();
        let spans: Vec<Span> = (0..8u64)
            .map(|i| {
                let n = chunk * 4 + i % 4;
                id += 1;
                span(trace, id, &format!("op-{n}"), 2, 0, (n + 1) * MS, vec![])
            })
            .collect();
        total += spans.len();
        requests.push(ExportTraceServiceRequest {
            resource_spans: vec![resource_spans(resource.clone(), spans)],
        });
    }

    send_to_both(&clew, &connector, &requests).await;
    let samples = assert_same_metrics(&clew, &connector, total).await;
    let overflow = BTreeMap::from([("otel_metric_overflow".to_string(), "true".to_string())]);
    assert_eq!(
        samples.get(&("traces_span_metrics_calls_total".to_string(), overflow)),
        Some(&((total - 2 * limit) as f64)),
        "the first {limit} span names keep their series, the other spans overflow"
    );
}
