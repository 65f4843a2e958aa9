//! Bad input and crashes against the real binary with the real embedded store and index
//! (`docs/robustness.md`): partial success keeps the good spans, `kill -9` loses nothing that
//! was acknowledged, the query API answers malformed input with 400s.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use clew_proto::otlp::collector::trace::v1::trace_service_client::TraceServiceClient;
use clew_proto::otlp::trace::v1::Span;
use common::*;
use prost::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_success_keeps_the_good_spans_over_http_and_grpc() {
    let clew = Clew::start(&[]);
    let trace = random_trace_id();
    let order = unique("partial");
    let good_root = otlp_span(trace, 1, None, "root", vec![kv("order_id", &order)]);
    let good_child = otlp_span(trace, 2, Some(1), "child", vec![]);
    let mut zero_trace = otlp_span([0; 16], 3, None, "zero-trace", vec![]);
    zero_trace.trace_id = vec![0; 16];
    let short_span = Span {
        span_id: vec![1, 2, 3],
        ..otlp_span(trace, 4, None, "short-span-id", vec![])
    };
    let body = request(
        "partial-svc",
        vec![good_root, zero_trace, good_child, short_span],
    )
    .encode_to_vec();

    let resp = reqwest::Client::new()
        .post(clew.otlp_http_url())
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-protobuf");
    let answer = clew_proto::otlp::collector::trace::v1::ExportTraceServiceResponse::decode(
        resp.bytes().await.unwrap(),
    )
    .unwrap();
    let partial = answer.partial_success.expect("partial_success set");
    assert_eq!(partial.rejected_spans, 2);
    assert!(
        partial.error_message.contains("trace id"),
        "{}",
        partial.error_message
    );
    assert!(
        partial.error_message.contains("span id"),
        "{}",
        partial.error_message
    );

    let trace_hex = hex::encode(trace);
    let (status, t) = clew.get(&format!("/api/v1/traces/{trace_hex}")).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(
        span_ids(&t),
        vec![
            "0000000000000001".to_string(),
            "0000000000000002".to_string()
        ]
    );

    // The same over gRPC, with a JSON twin of the good span in the other receiver.
    let trace2 = random_trace_id();
    let mut client = TraceServiceClient::connect(clew.otlp_grpc_url())
        .await
        .unwrap();
    let bad = Span {
        trace_id: vec![9; 3],
        ..otlp_span(trace2, 8, None, "bad", vec![])
    };
    let answer = client
        .export(request(
            "partial-svc",
            vec![otlp_span(trace2, 7, None, "ok", vec![]), bad],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.partial_success.expect("partial").rejected_spans, 1);
    let (status, t) = clew
        .get(&format!("/api/v1/traces/{}", hex::encode(trace2)))
        .await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(span_ids(&t), vec!["0000000000000007".to_string()]);

    // The good spans are searchable too.
    clew.wait_for(
        &format!("/api/v1/keys/order_id/{order}"),
        Duration::from_secs(20),
        |b| trace_ids(b) == vec![trace_hex.clone()],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_with_uppercase_ids_string_int64_and_unknown_fields() {
    let clew = Clew::start(&[]);
    let trace_hex = hex::encode(random_trace_id()).to_uppercase();
    let start = now_unix_nano() - 5_000_000;
    let body = serde_json::json!({
        "resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
            "someFutureField": {"x": 1},
            "scopeSpans": [{
                "scope": {"name": "json-test"},
                "spans": [{
                    "traceId": trace_hex,
                    "spanId": "00000000000000AB",
                    "name": "<script>alert('x')</script>",
                    "kind": 2,
                    "startTimeUnixNano": start.to_string(),
                    "endTimeUnixNano": start + 1_000_000,
                    "attributes": [{"key": "count", "value": {"intValue": "42"}}],
                    "status": {"code": 2, "message": "bad"},
                    "unknownSpanField": true
                }]
            }]
        }]
    });
    let resp = reqwest::Client::new()
        .post(clew.otlp_http_url())
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let (status, t) = clew
        .get(&format!("/api/v1/traces/{}", trace_hex.to_lowercase()))
        .await;
    assert_eq!(status, 200, "{t}");
    let span = &t["spans"][0];
    assert_eq!(span["span_id"], "00000000000000ab");
    assert_eq!(
        span["name"], "<script>alert('x')</script>",
        "stored verbatim"
    );
    assert_eq!(span["attributes"]["count"], 42);
    assert_eq!(span["status"]["code"], "error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_errors_have_specific_statuses() {
    let clew = Clew::start(&[]);
    let http = reqwest::Client::new();
    let post = |ct: Option<&'static str>, body: Vec<u8>| {
        let mut r = http.post(clew.otlp_http_url()).body(body);
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        r.send()
    };
    assert_eq!(
        post(Some("text/plain"), b"hello".to_vec())
            .await
            .unwrap()
            .status()
            .as_u16(),
        415
    );
    assert_eq!(
        post(None, b"hello".to_vec())
            .await
            .unwrap()
            .status()
            .as_u16(),
        415
    );
    assert_eq!(
        post(
            Some("application/x-protobuf"),
            vec![0xff, 0xff, 0xff, 0x0f, 0x12]
        )
        .await
        .unwrap()
        .status()
        .as_u16(),
        400
    );
    assert_eq!(
        post(Some("application/json"), b"{not json".to_vec())
            .await
            .unwrap()
            .status()
            .as_u16(),
        400
    );
    // Empty request: plain success.
    assert_eq!(
        post(Some("application/x-protobuf"), vec![])
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    // gzip header on plain bytes.
    let r = http
        .post(clew.otlp_http_url())
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(request("s", vec![]).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // Still serving valid data afterwards.
    let trace = random_trace_id();
    let r = post(
        Some("application/x-protobuf"),
        request(
            "after-errors",
            vec![otlp_span(trace, 1, None, "ok", vec![])],
        )
        .encode_to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (status, _) = clew
        .get(&format!("/api/v1/traces/{}", hex::encode(trace)))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_api_rejects_malformed_input_with_400() {
    let clew = Clew::start(&[]);
    for path in [
        "/api/v1/traces/xyz",
        "/api/v1/traces/0123456789abcdef0123456789abcde",
        "/api/v1/traces/..%2F..%2Fetc%2Fpasswd",
        "/api/v1/search?limit=-1",
        "/api/v1/search?limit=abc",
        "/api/v1/search?min_duration=-5ms",
        "/api/v1/search?start=2000&end=1000",
        "/api/v1/search?cursor=not-a-cursor",
        "/api/v1/search?servce=typo",
    ] {
        let (status, body) = clew.get(path).await;
        assert_eq!(status, 400, "{path} answered {status}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{path}: {body}"
        );
    }
    let (status, _) = clew
        .get("/api/v1/traces/0123456789abcdef0123456789abcdef")
        .await;
    assert_eq!(status, 404);
    // Query syntax in free text is data.
    for q in ["a:b OR (c", "*", "\\", "\"unterminated", "field:[* TO *]"] {
        let url = format!("/api/v1/search?q={}", urlencode(q));
        let (status, body) = clew.get(&url).await;
        assert_eq!(status, 200, "q={q}: {body}");
    }
    let (status, body) = clew.get("/api/v1/search?limit=100000000").await;
    assert_eq!(status, 200, "absurd limits are clamped: {body}");
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `kill -9` in the middle of ingest: after a restart on the same data directory, every
/// acknowledged span can be fetched and its trace is still found through the index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_spans_survive_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut clew = Clew::start_in(&dir, &[]);
    let acked: Arc<Mutex<Vec<([u8; 16], String)>>> = Arc::default();
    let url = clew.otlp_grpc_url();
    let acked2 = acked.clone();
    let sender = tokio::spawn(async move {
        let mut client = TraceServiceClient::connect(url).await.unwrap();
        for batch in 0u64.. {
            let mut spans = Vec::new();
            let mut traces = Vec::new();
            for t in 0..20u64 {
                let trace = random_trace_id();
                let order = format!("k9-{batch}-{t}");
                spans.push(otlp_span(
                    trace,
                    1,
                    None,
                    "root",
                    vec![kv("order_id", &order)],
                ));
                spans.extend((2..6).map(|i| otlp_span(trace, i, Some(1), "child", vec![])));
                traces.push((trace, order));
            }
            match client.export(request("kill9-svc", spans)).await {
                Ok(r) => {
                    assert!(r
                        .into_inner()
                        .partial_success
                        .map_or(true, |p| p.rejected_spans == 0));
                    acked2.lock().unwrap().extend(traces);
                }
                Err(_) => break, // the server died mid-request: not acknowledged
            }
        }
    });
    // Let some batches be acknowledged, then kill without warning.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 400 {
        assert!(
            std::time::Instant::now() < deadline,
            "ingest too slow to test"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    clew.kill9();
    let _ = sender.await;
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 400);

    let clew = Clew::start_in(&dir, &[]);
    for (trace, _) in &acked {
        let (status, t) = clew
            .get(&format!("/api/v1/traces/{}", hex::encode(trace)))
            .await;
        assert_eq!(
            status,
            200,
            "acknowledged trace {} lost",
            hex::encode(trace)
        );
        assert_eq!(t["spans"].as_array().unwrap().len(), 5, "{t}");
    }
    // Searchable after restart too (the index replays what it had not committed).
    for (trace, order) in acked.iter().rev().take(25) {
        clew.wait_for(
            &format!("/api/v1/keys/order_id/{order}"),
            Duration::from_secs(20),
            |b| trace_ids(b) == vec![hex::encode(trace)],
        )
        .await;
    }
}

/// SIGTERM drains the pipeline and closes the store and index cleanly: the process exits 0
/// and a restart finds both the trace and its business key without any replay window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_cleanly_and_keeps_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut clew = Clew::start_in(&dir, &[]);
    let trace = random_trace_id();
    let order = unique("sigterm");
    let mut client = TraceServiceClient::connect(clew.otlp_grpc_url())
        .await
        .unwrap();
    client
        .export(request(
            "term-svc",
            vec![
                otlp_span(trace, 1, None, "root", vec![kv("order_id", &order)]),
                otlp_span(trace, 2, Some(1), "child", vec![]),
            ],
        ))
        .await
        .unwrap();
    let status = clew.terminate();
    assert!(status.success(), "clew exited with {status} on SIGTERM");
    // The index WAL is empty after a clean shutdown: everything was committed.
    let wal = dir.join("index/wal.log");
    assert_eq!(
        std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0),
        0,
        "index WAL not drained on shutdown"
    );

    let clew = Clew::start_in(&dir, &[]);
    let (status, t) = clew
        .get(&format!("/api/v1/traces/{}", hex::encode(trace)))
        .await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(span_ids(&t).len(), 2);
    let (status, body) = clew.get(&format!("/api/v1/keys/order_id/{order}")).await;
    assert_eq!(status, 200);
    assert_eq!(trace_ids(&body), vec![hex::encode(trace)]);
}

/// A trace far larger than the per-trace cap (set in a config file): the cap holds, the
/// excess is rejected and reported through partial success, and the stored part stays
/// readable and marked truncated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_trace_cap_from_the_config_file_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("clew.toml");
    std::fs::write(
        &config,
        "[store]\ntype = \"embedded\"\nmax_spans_per_trace = 10\n",
    )
    .unwrap();
    let clew = Clew::start(&["--config", config.to_str().unwrap()]);
    let trace = random_trace_id();
    let spans: Vec<Span> = (1..=25)
        .map(|i| otlp_span(trace, i, if i == 1 { None } else { Some(1) }, "s", vec![]))
        .collect();
    let mut client = TraceServiceClient::connect(clew.otlp_grpc_url())
        .await
        .unwrap();
    let answer = client
        .export(request("cap-svc", spans))
        .await
        .unwrap()
        .into_inner();
    let partial = answer.partial_success.expect("partial success");
    assert_eq!(partial.rejected_spans, 15);
    assert!(
        partial.error_message.contains("cap"),
        "{}",
        partial.error_message
    );
    let (status, t) = clew
        .get(&format!("/api/v1/traces/{}", hex::encode(trace)))
        .await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(span_ids(&t).len(), 10);
    assert_eq!(t["truncated"], true);
    // The rejections are counted by reason.
    let metrics = clew.metrics(None).await;
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("clew_collector_spans_rejected_total") && l.contains("trace_too_large")
        })
        .unwrap_or_else(|| panic!("no trace_too_large rejection metric in:\n{metrics}"));
    assert!(line.trim_end().ends_with(" 15"), "{line}");
}
