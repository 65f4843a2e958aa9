//! The fleet inventory (`GET /api/v1/inventory`) of a real `clew serve`, fed over its real
//! receivers: instances told apart, receivers recorded, the cap holding against 100,000
//! distinct hosts, quiet instances and their gauge, and the inventory read back after a
//! restart. The SDK versions of the real OpenTelemetry SDKs are checked in
//! tests/otel_clients.rs, the agent over Kafka in tests/kafka_e2e.rs, the page in
//! tests/ui_browser.rs.

mod common;

use std::time::{Duration, Instant};

use clew_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use clew_proto::otlp::common::v1::KeyValue;
use clew_proto::otlp::resource::v1::Resource;
use clew_proto::otlp::trace::v1::{ResourceSpans, ScopeSpans};
use common::*;
use prost::Message;
use serde_json::Value;

fn config(dir: &std::path::Path, body: &str) -> String {
    let path = dir.join("clew.toml");
    std::fs::write(&path, body).expect("write config");
    path.to_str().expect("utf-8").to_string()
}

/// One request: for each resource (its attributes), one span of a new trace.
fn request_of(resources: &[Vec<KeyValue>]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: resources
            .iter()
            .enumerate()
            .map(|(i, attrs)| ResourceSpans {
                resource: Some(Resource {
                    attributes: attrs.clone(),
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![otlp_span(
                        random_trace_id(),
                        i as u64 + 1,
                        None,
                        "op",
                        vec![],
                    )],
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

async fn post_otlp(clew: &Clew, req: &ExportTraceServiceRequest) {
    let answer = reqwest::Client::new()
        .post(clew.otlp_http_url())
        .header("content-type", "application/x-protobuf")
        .body(req.encode_to_vec())
        .send()
        .await
        .expect("post");
    assert_eq!(
        answer.status(),
        200,
        "{}",
        answer.text().await.unwrap_or_default()
    );
}

async fn inventory(clew: &Clew, query: &str) -> Value {
    let (status, body) = clew.get(&format!("/api/v1/inventory{query}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The instances of `service`, by instance label.
fn instances<'a>(answer: &'a Value, service: &str) -> Vec<&'a Value> {
    answer["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter(|s| s["service"] == service)
        .flat_map(|s| s["instances"].as_array().expect("instances"))
        .collect()
}

/// Waits until `/metrics` has exactly the line `line`.
async fn wait_metric_line(clew: &Clew, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = clew.metrics(None).await;
        if metrics.lines().any(|l| l == line) {
            return;
        }
        assert!(Instant::now() < deadline, "no `{line}` on /metrics");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_receivers_quiet_and_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        "[inventory]\nquiet_after_secs = 3\npersist_interval_secs = 1\n",
    );
    let data = tmp.path().join("data");
    let mut clew = Clew::start_in(&data, &["--config", &cfg]);
    let service = unique("inv");
    let res = |extra: &[(&str, &str)]| {
        let mut attrs = vec![kv("service.name", &service)];
        attrs.extend(extra.iter().map(|(k, v)| kv(k, v)));
        attrs
    };
    // three instances: by instance id, by host + pid, by host alone; the id wins over host
    post_otlp(
        &clew,
        &request_of(&[
            res(&[
                ("service.instance.id", "i-1"),
                ("host.name", "a"),
                ("service.version", "1.0.0"),
            ]),
            res(&[("service.instance.id", "i-1"), ("host.name", "b")]),
            res(&[("host.name", "web-2"), ("process.pid", "4242")]),
            res(&[
                ("host.name", "web-3"),
                ("telemetry.sdk.language", "<b>go</b>"),
            ]),
        ]),
    )
    .await;
    // the same instance through Zipkin: a second receiver
    let zipkin = serde_json::json!([{
        "traceId": "5af7183fb1d4cf5f", "id": "6b221d5bc9e6496c", "name": "get",
        "timestamp": now_unix_nano() / 1000 - 1000, "duration": 10,
        "localEndpoint": {"serviceName": service}
    }]);
    let answer = reqwest::Client::new()
        .post(clew.zipkin_url())
        .json(&zipkin)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);

    let query = format!("?service={service}");
    let answer = clew
        .wait_for(
            &format!("/api/v1/inventory{query}"),
            Duration::from_secs(20),
            |a| instances(a, &service).len() == 4,
        )
        .await;
    let all = instances(&answer, &service);
    let by = |label: &str| {
        *all.iter()
            .find(|i| i["instance"] == label)
            .unwrap_or_else(|| panic!("no instance {label:?} in {answer:#}"))
    };
    let i1 = by("i-1");
    assert_eq!(i1["spans_total"], 2, "{i1}");
    assert_eq!(i1["service_version"], "1.0.0");
    assert_eq!(i1["receivers"], serde_json::json!(["otlp_http"]));
    assert_eq!(by("web-2/4242")["pid"], 4242);
    // hostile values come back verbatim, as JSON string data
    assert_eq!(by("web-3")["sdk_language"], "<b>go</b>");
    // Zipkin spans carry no host: the service's unnamed instance
    assert_eq!(by("")["receivers"], serde_json::json!(["zipkin"]));
    assert_eq!(by("")["quiet"], false);

    // filters
    let v1 = inventory(&clew, &format!("{query}&version=1.0.0")).await;
    assert_eq!(instances(&v1, &service).len(), 1);
    let bad = reqwest::get(clew.api_url("/api/v1/inventory?quiet_for=soon"))
        .await
        .unwrap();
    assert_eq!(
        bad.status(),
        400,
        "a bad duration is a 400, not an empty answer"
    );
    let bad = reqwest::get(clew.api_url("/api/v1/inventory?host=x"))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400, "an unknown filter is a 400");

    // silent for 3 s: quiet, in the quiet_for filter and in the gauge
    let quiet = clew
        .wait_for(
            &format!("/api/v1/inventory{query}&quiet_for=3s"),
            Duration::from_secs(20),
            |a| instances(a, &service).len() == 4,
        )
        .await;
    assert!(instances(&quiet, &service)
        .iter()
        .all(|i| i["quiet"] == true));
    let gauge = format!("clew_inventory_quiet_instances{{service=\"{service}\"}} 4");
    wait_metric_line(&clew, &gauge).await;

    // saved in the store and read back by the next process
    assert!(clew.terminate().success());
    let clew = Clew::start_in(&data, &["--config", &cfg]);
    let back = inventory(&clew, &query).await;
    let again = instances(&back, &service);
    assert_eq!(again.len(), 4, "{back:#}");
    let i1 = again.iter().find(|i| i["instance"] == "i-1").unwrap();
    assert_eq!(i1["spans_total"], 2);
    assert_eq!(i1["first_seen_ms"], by("i-1")["first_seen_ms"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hundred_thousand_hosts_stay_within_the_cap() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        "[inventory]\nmax_instances = 5000\npersist_interval_secs = 1\n",
    );
    let clew = Clew::start(&["--config", &cfg]);
    let service = unique("fleet");
    for chunk in 0..100 {
        let resources: Vec<Vec<KeyValue>> = (0..1000)
            .map(|i| {
                vec![
                    kv("service.name", &service),
                    kv("host.name", &format!("host-{}", chunk * 1000 + i)),
                ]
            })
            .collect();
        post_otlp(&clew, &request_of(&resources)).await;
    }
    let answer = inventory(&clew, "").await;
    assert_eq!(
        answer["instances_kept"], 5000,
        "{}",
        answer["instances_kept"]
    );
    assert_eq!(answer["instances_left_out"], 95_000);
    assert_eq!(answer["instances_left_out_saturated"], false);
    assert_eq!(answer["spans_left_out"], 95_000);
    assert_eq!(instances(&answer, &service).len(), 5000);
    wait_metric_line(&clew, "clew_inventory_left_out_instances 95000").await;
}
