//! OTLP/HTTP receiver over real sockets with reqwest (`docs/robustness.md`: inputs 1–8,
//! OTLP answers).

mod common;

use std::io::{Read, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clew_proto::otlp::collector::trace::v1::ExportTraceServiceResponse;
use clew_proto::otlp::common::v1::{any_value::Value, AnyValue, ArrayValue, KeyValue};
use common::*;
use prost::Message;
use reqwest::StatusCode;

const PB: &str = "application/x-protobuf";

async fn post(
    h: &Harness,
    content_type: Option<&str>,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new().post(h.http_url()).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    if let Some(ce) = encoding {
        req = req.header("content-encoding", ce);
    }
    req.send().await.expect("request sent")
}

async fn pb_response(resp: reqwest::Response) -> ExportTraceServiceResponse {
    assert_eq!(resp.headers()["content-type"], PB);
    ExportTraceServiceResponse::decode(resp.bytes().await.unwrap()).unwrap()
}

/// Decodes an OTLP/HTTP protobuf error body (`google.rpc.Status`).
async fn pb_status(resp: reqwest::Response) -> tonic_types::Status {
    tonic_types::Status::decode(resp.bytes().await.unwrap()).expect("google.rpc.Status body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_success_stores_good_spans_and_enriches_business_keys() {
    let h = start(test_config()).await;
    let mut good = span(1, 1, "good-a");
    good.attributes = vec![kv("order_id", "12345")];
    let mut bad = span(2, 2, "bad-id");
    bad.trace_id = vec![0; 16];
    let good2 = span(1, 2, "good-b");
    let req = request(vec![good, bad, good2], vec![kv("tenant", "acme")]);
    let resp = post(&h, Some(PB), None, req.encode_to_vec()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = pb_response(resp).await;
    let ps = body.partial_success.expect("partial success");
    assert_eq!(ps.rejected_spans, 1);
    assert!(
        ps.error_message.contains("invalid_trace_id"),
        "{}",
        ps.error_message
    );
    assert_eq!(h.store.names(), vec!["good-a", "good-b"]);
    assert_eq!(h.index.names(), vec!["good-a", "good-b"]);
    let stored = h.store.spans.lock().unwrap().clone();
    let a = stored.iter().find(|s| s.name == "good-a").unwrap();
    let keys: Vec<(&str, &str)> = a
        .business_keys
        .iter()
        .map(|k| (k.name.as_str(), k.value.as_str()))
        .collect();
    assert_eq!(keys, vec![("order_id", "12345"), ("tenant", "acme")]);
    let b = stored.iter().find(|s| s.name == "good-b").unwrap();
    assert_eq!(b.business_keys.len(), 1, "tenant from the resource only");
    h.collector.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_uppercase_ids_string_ints_unknown_fields() {
    let h = start(test_config()).await;
    let now = now_nanos();
    let body = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"js"}}}}]}},
        "futureField":[1,2],
        "scopeSpans":[{{"scope":{{"name":"s"}},"spans":[
          {{"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174","parentSpanId":"",
            "name":"json-span","kind":3,"startTimeUnixNano":"{}","endTimeUnixNano":{},
            "attributes":[{{"key":"order_id","value":{{"intValue":"987"}}}}],
            "status":{{"code":2}},"someUnknown":{{"x":true}}}}]}}]}}]}}"#,
        now - 1000,
        now
    );
    let resp = post(
        &h,
        Some("application/json; charset=utf-8"),
        None,
        body.into_bytes(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let v: serde_json::Value = resp.json().await.unwrap();
    assert!(v.get("partialSuccess").is_none_or(|p| p.is_null()), "{v}");
    let stored = h.store.spans.lock().unwrap().clone();
    assert_eq!(stored.len(), 1);
    let s = &stored[0];
    assert_eq!(s.trace_id.to_string(), "5b8efff798038103d269b633813fc60c");
    assert_eq!(s.service_name, "js");
    assert_eq!(s.end_unix_nano, now);
    assert_eq!(s.business_keys[0].value, "987");
    assert!(s.is_error());
    h.collector.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_requests_succeed() {
    let h = start(test_config()).await;
    let resp = post(&h, Some(PB), None, Vec::new()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(pb_response(resp).await.partial_success, None);
    let resp = post(&h, Some("application/json"), None, b"{}".to_vec()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = post(&h, Some(PB), None, request(vec![], vec![]).encode_to_vec()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(h.store.len(), 0);
    h.collector.shutdown().await.unwrap();
}

fn small_limit_config() -> clew_collector::CollectorConfig {
    clew_collector::CollectorConfig {
        max_request_bytes: 64 * 1024,
        ..test_config()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_limit_with_content_length_is_413() {
    let h = start(small_limit_config()).await;
    let mut s = span(1, 1, "big");
    s.attributes = vec![kv("blob", &"x".repeat(100 * 1024))];
    let resp = post(&h, Some(PB), None, request(vec![s], vec![]).encode_to_vec()).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(resp.headers().get("retry-after").is_none());
    let st = pb_status(resp).await;
    assert_eq!(st.code, tonic::Code::ResourceExhausted as i32);
    assert!(st.message.contains("65536"), "{}", st.message);
    assert_eq!(h.store.len(), 0);
    h.collector.shutdown().await.unwrap();
}

/// Chunked body without Content-Length, over a raw socket: the limit holds while streaming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_limit_without_content_length_is_413() {
    let h = start(small_limit_config()).await;
    let addr = h.collector.http_addr();
    let status_line = tokio::task::spawn_blocking(move || {
        let mut sock = std::net::TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(sock, "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        let chunk = vec![0x0au8; 16 * 1024];
        for _ in 0..8 {
            if write!(sock, "{:x}\r\n", chunk.len()).is_err() || sock.write_all(&chunk).is_err() || sock.write_all(b"\r\n").is_err() {
                break;
            }
        }
        let _ = sock.write_all(b"0\r\n\r\n");
        let mut buf = vec![0u8; 4096];
        let n = sock.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_string()
    })
    .await
    .unwrap();
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    assert_eq!(h.store.len(), 0);
    h.collector.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_accepted_bomb_413_corrupt_400() {
    let h = start(small_limit_config()).await;
    // valid gzip
    let body = gzip(&request(vec![span(1, 1, "zipped")], vec![]).encode_to_vec());
    let resp = post(&h, Some(PB), Some("gzip"), body).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(h.store.names(), vec!["zipped"]);

    // decompression bomb: 32 MiB of a repeated valid field → tiny body, far over the limit
    let bomb = {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![0u8; 32 * 1024 * 1024]).unwrap();
        enc.finish().unwrap()
    };
    assert!(bomb.len() < 64 * 1024);
    let resp = post(&h, Some(PB), Some("gzip"), bomb).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // corrupt gzip
    let mut corrupt = gzip(&request(spans(20, "c"), vec![]).encode_to_vec());
    let n = corrupt.len();
    for b in &mut corrupt[12..n - 8] {
        *b ^= 0x5a;
    }
    let resp = post(&h, Some(PB), Some("gzip"), corrupt).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(pb_status(resp).await.message.contains("gzip"));

    // gzip header on plain bytes
    let resp = post(
        &h,
        Some(PB),
        Some("gzip"),
        request(vec![span(1, 2, "plain")], vec![]).encode_to_vec(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(h.store.names(), vec!["zipped"]);
    h.collector.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_content_type_is_415() {
    let h = start(test_config()).await;
    let body = request(vec![span(1, 1, "x")], vec![]).encode_to_vec();
    let resp = post(&h, Some("text/plain"), None, body.clone()).await;
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let resp = post(&h, None, None, body.clone()).await;
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert!(
        v["message"].as_str().unwrap().contains("Content-Type"),
        "{v}"
    );
    let resp = post(&h, Some(PB), Some("br"), body).await;
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(h.store.len(), 0);
    h.collector.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_truncated_protobuf_is_400() {
    let h = start(test_config()).await;
    let mut seed = 0x1234_5678u32;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed as u8
        })
        .collect();
    let resp = post(&h, Some(PB), None, random).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        pb_status(resp).await.code,
        tonic::Code::InvalidArgument as i32
    );

    let full = request(spans(10, "t"), vec![]).encode_to_vec();
    let resp = post(&h, Some(PB), None, full[..full.len() - 7].to_vec()).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    // a length prefix pointing far past the end
    let resp = post(
        &h,
        Some(PB),
        None,
        vec![0x0a, 0xff, 0xff, 0xff, 0x7f, 1, 2, 3],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    let resp = post(
        &h,
        Some("application/json"),
        None,
        b"{\"resourceSpans\": [".to_vec(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["code"], 3);
    assert_eq!(h.store.len(), 0);
    h.collector.shutdown().await.unwrap();
}

fn nested(depth: usize) -> AnyValue {
    let mut v = AnyValue {
        value: Some(Value::StringValue("leaf".into())),
    };
    for _ in 0..depth {
        v = AnyValue {
            value: Some(Value::ArrayValue(ArrayValue { values: vec![v] })),
        };
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_nesting_is_refused_or_cut_without_overflow() {
    let h = start(test_config()).await;
    // Beyond prost's recursion limit: the request is refused.
    let mut s = span(1, 1, "too-deep");
    s.attributes = vec![KeyValue {
        key: "deep".into(),
        value: Some(nested(500)),
        ..Default::default()
    }];
    let resp = post(&h, Some(PB), None, request(vec![s], vec![]).encode_to_vec()).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    // Within the decoder's limit but past the span limit: kept and cut.
    let mut s = span(1, 2, "cut");
    s.attributes = vec![KeyValue {
        key: "deep".into(),
        value: Some(nested(30)),
        ..Default::default()
    }];
    let resp = post(&h, Some(PB), None, request(vec![s], vec![]).encode_to_vec()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let stored = h.store.spans.lock().unwrap().clone();
    assert_eq!(stored.len(), 1);
    assert_ne!(
        stored[0].repairs & clew_proto::model::repair::NESTING_CUT,
        0
    );

    // JSON nested 100k deep: refused by the JSON recursion limit.
    let mut deep = String::from(
        r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[{"key":"k","value":"#,
    );
    for _ in 0..100_000 {
        deep.push_str(r#"{"arrayValue":{"values":["#);
    }
    let resp = post(&h, Some("application/json"), None, deep.into_bytes()).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(h.store.len(), 1);
    h.collector.shutdown().await.unwrap();
}

/// Strict UTF-8: the whole request is refused with a message; nothing is stored silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_refuses_the_request() {
    let h = start(test_config()).await;
    let mut bytes = request(vec![span(1, 1, "okay"), span(1, 2, "BAD!")], vec![]).encode_to_vec();
    let at = bytes.windows(4).position(|w| w == b"BAD!").unwrap();
    bytes[at] = 0xff;
    bytes[at + 1] = 0xfe;
    let resp = post(&h, Some(PB), None, bytes).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let st = pb_status(resp).await;
    assert!(
        st.message.contains("UTF-8") || st.message.contains("utf-8"),
        "{}",
        st.message
    );
    assert_eq!(h.store.len(), 0);
    h.collector.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_503_with_retry_after_and_nothing_dropped() {
    let config = clew_collector::CollectorConfig {
        queue_max_spans: 10,
        batch_max_spans: 10,
        enqueue_timeout_ms: 100,
        ..test_config()
    };
    let h = start(config).await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    *h.store.gate.lock().unwrap() = Some(gate.clone());

    let url = h.http_url();
    let first = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .header("content-type", PB)
            .body(request(spans(10, "first"), vec![]).encode_to_vec())
            .send()
            .await
            .unwrap()
            .status()
    });
    // wait until the first request holds the whole queue
    while h.store.writes_started.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let resp = post(
        &h,
        Some(PB),
        None,
        request(vec![span(9, 9, "second")], vec![]).encode_to_vec(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(pb_status(resp).await.code, tonic::Code::Unavailable as i32);
    assert_eq!(h.store.len(), 0);

    gate.add_permits(100);
    assert_eq!(first.await.unwrap(), StatusCode::OK);
    assert_eq!(h.store.len(), 10);
    assert!(!h.store.names().contains(&"second".to_string()));
    h.collector.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_or_index_failure_is_retryable_and_nothing_acked() {
    let h = start(test_config()).await;
    h.store.fail.store(FAIL_RETRYABLE, Ordering::SeqCst);
    let resp = post(
        &h,
        Some(PB),
        None,
        request(spans(3, "down"), vec![]).encode_to_vec(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().contains_key("retry-after"));
    assert!(pb_status(resp).await.message.contains("disk full"));
    assert_eq!(h.store.len(), 0);
    assert_eq!(h.index.names().len(), 0);

    h.store.fail.store(FAIL_PERMANENT, Ordering::SeqCst);
    let resp = post(
        &h,
        Some(PB),
        None,
        request(spans(3, "broken"), vec![]).encode_to_vec(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(resp.headers().get("retry-after").is_none());

    // store fine, index down: still a retryable error (the retry rewrites idempotently)
    h.store.fail.store(FAIL_NONE, Ordering::SeqCst);
    h.index.fail.store(FAIL_RETRYABLE, Ordering::SeqCst);
    let resp = post(
        &h,
        Some(PB),
        None,
        request(spans(2, "idx"), vec![]).encode_to_vec(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    h.index.fail.store(FAIL_NONE, Ordering::SeqCst);
    let resp = post(
        &h,
        Some(PB),
        None,
        request(spans(2, "idx"), vec![]).encode_to_vec(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(h.store.names(), vec!["idx0", "idx1"]);
    assert_eq!(h.index.names(), vec!["idx0", "idx1"]);
    h.collector.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_rejections_become_partial_success_and_are_not_indexed() {
    let h = start(test_config()).await;
    let req = request(
        vec![
            span(1, 1, "kept"),
            span(1, 2, TOO_LARGE_NAME),
            span(1, 3, "kept2"),
        ],
        vec![],
    );
    let resp = post(&h, Some(PB), None, req.encode_to_vec()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let ps = pb_response(resp).await.partial_success.unwrap();
    assert_eq!(ps.rejected_spans, 1);
    assert!(
        ps.error_message.contains("trace_too_large"),
        "{}",
        ps.error_message
    );
    assert_eq!(h.store.names(), vec!["kept", "kept2"]);
    assert_eq!(h.index.names(), vec!["kept", "kept2"]);
    h.collector.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_requests_are_batched_and_all_acked() {
    let h = start(test_config()).await;
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for t in 0..20u8 {
        let (client, url) = (client.clone(), h.http_url());
        tasks.push(tokio::spawn(async move {
            let spans: Vec<_> = (0..50u8)
                .map(|i| span(t + 1, i + 1, &format!("c{t}-{i}")))
                .collect();
            client
                .post(url)
                .header("content-type", PB)
                .body(request(spans, vec![]).encode_to_vec())
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(h.store.len(), 1000);
    assert_eq!(h.index.spans.lock().unwrap().len(), 1000);
    h.collector.shutdown().await.unwrap();
}
