//! The Zipkin receiver behind its real socket, in front of a store that can stall or fail:
//! overload is a 503 with `Retry-After`, a failing store acknowledges nothing, and the 202
//! comes only once the spans are written (`docs/robustness.md`, item 27).

#[path = "common/mod.rs"]
mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use reqwest::StatusCode;

fn url(h: &Harness) -> String {
    format!("http://{}/api/v2/spans", h.collector.zipkin_addr())
}

/// A Zipkin v2 JSON body of `n` spans of one trace, named `{prefix}-{i}`.
fn body(n: usize, trace: u8, prefix: &str) -> Vec<u8> {
    let ts = now_nanos() / 1000 - 1000;
    let spans: Vec<_> = (0..n)
        .map(|i| {
            serde_json::json!({
                "traceId": format!("{trace:032x}"), "id": format!("{:016x}", i + 1),
                "name": format!("{prefix}-{i}"), "timestamp": ts, "duration": 10,
                "localEndpoint": {"serviceName": "svc"}, "tags": {"order_id": "o-1"}
            })
        })
        .collect();
    serde_json::to_vec(&spans).unwrap()
}

async fn post(h: &Harness, body: Vec<u8>) -> reqwest::Response {
    reqwest::Client::new()
        .post(url(h))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request sent")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_only_once_durable_and_enriched() {
    let h = start(test_config()).await;
    let resp = post(&h, body(3, 1, "ok")).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(resp.text().await.unwrap(), "");
    // the 202 came after the write: the spans are there already
    assert_eq!(h.store.len(), 3);
    assert_eq!(h.index.names().len(), 3);
    h.collector.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_503_with_retry_after_and_store_failure_acks_nothing() {
    let config = clew_collector::CollectorConfig {
        queue_max_spans: 10,
        batch_max_spans: 10,
        enqueue_timeout_ms: 100,
        ..test_config()
    };
    let h = start(config).await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    *h.store.gate.lock().unwrap() = Some(gate.clone());
    let first = {
        let url = url(&h);
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .header("content-type", "application/json")
                .body(body(10, 2, "first"))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    while h.store.writes_started.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let resp = post(&h, body(1, 3, "second")).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert!(resp.text().await.unwrap().contains("overloaded"));
    gate.add_permits(100);
    assert_eq!(first.await.unwrap(), StatusCode::ACCEPTED);
    assert_eq!(h.store.len(), 10);

    h.store.fail.store(FAIL_RETRYABLE, Ordering::SeqCst);
    let resp = post(&h, body(2, 4, "down")).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().contains_key("retry-after"));
    assert!(!h.store.names().iter().any(|n| n.starts_with("down")));
    h.collector.shutdown().await.unwrap();
}
