//! Back-pressure and failures behind the receiver: overload, store and index failures,
//! store rejections, many concurrent requests.

use super::*;

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
