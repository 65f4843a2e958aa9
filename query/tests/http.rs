//! Health, readiness, metrics, unknown routes, backend failures and timeouts, and one
//! run over a real socket (through the router, with the in-memory stand-ins of `common`).

mod common;

use common::*;

#[tokio::test]
async fn health_and_readiness() {
    let f = Fixture::new();
    let answer = f.get("/healthz").await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, "ok")
    );
    let answer = f.get("/readyz").await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, "ok")
    );

    *f.index.ready.lock().unwrap() = Err("opening partitions".into());
    let answer = f.get("/readyz").await;
    let message = answer.error(StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        message.contains("trace index") && message.contains("opening partitions"),
        "{message}"
    );
    assert_eq!(answer.header("retry-after"), "1");

    *f.store.ready.lock().unwrap() = Err("replaying journal".into());
    let message = f
        .get("/readyz")
        .await
        .error(StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        message.contains("span store") && message.contains("replaying journal"),
        "{message}"
    );
    // not ready is not unhealthy: the process can still serve once they are ready
    assert_eq!(f.get("/healthz").await.status, StatusCode::OK);

    // a store that cannot serve again without a restart: /healthz tells the supervisor
    *f.store.broken.lock().unwrap() = Some("the span store in /d refuses every write".into());
    let answer = f.get("/healthz").await;
    let message = answer.error(StatusCode::SERVICE_UNAVAILABLE);
    assert!(message.contains("refuses every write"), "{message}");
    assert_eq!(answer.header("retry-after"), "", "only a restart helps");
}

#[tokio::test]
async fn metrics_come_from_the_render_function() {
    let f = Fixture::new();
    let answer = f.get("/metrics").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.header("content-type").starts_with("text/plain"));
    assert_eq!(answer.body, "# TYPE clew_up gauge\nclew_up 1\n");
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json_errors() {
    let f = Fixture::new();
    let answer = f.get("/api/v2/nothing").await;
    let message = answer.error(StatusCode::NOT_FOUND);
    assert!(message.contains("/api/v2/nothing"), "{message}");
    answer.assert_security_headers();
    let message = f
        .request(Method::POST, "/api/v1/search")
        .await
        .error(StatusCode::METHOD_NOT_ALLOWED);
    assert!(message.contains("POST"), "{message}");
}

#[tokio::test]
async fn retryable_backend_errors_are_503_with_retry_after() {
    let f = Fixture::with_checkouts();
    *f.store.fault.lock().unwrap() = Fault::Unavailable;
    for uri in [
        format!("/api/v1/traces/{}", trace_id(1)),
        "/api/v1/search".into(),
        "/api/v1/keys/order_id/111".into(),
    ] {
        let answer = f.get(&uri).await;
        let message = answer.error(StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            message.contains("span store") && message.contains("disk is gone"),
            "{uri}: {message}"
        );
        assert_eq!(answer.header("retry-after"), "1");
    }
    *f.store.fault.lock().unwrap() = Fault::None;
    *f.index.fault.lock().unwrap() = Fault::Unavailable;
    for uri in ["/api/v1/search", "/api/v1/services"] {
        let answer = f.get(uri).await;
        let message = answer.error(StatusCode::SERVICE_UNAVAILABLE);
        assert!(message.contains("trace index"), "{uri}: {message}");
        assert_eq!(answer.header("retry-after"), "1");
    }
}

#[tokio::test]
async fn other_backend_errors_are_500_with_a_message() {
    let f = Fixture::with_checkouts();
    *f.store.fault.lock().unwrap() = Fault::Corrupt;
    let answer = f.get(&format!("/api/v1/traces/{}", trace_id(1))).await;
    let message = answer.error(StatusCode::INTERNAL_SERVER_ERROR);
    assert!(message.contains("corrupt data in span cell"), "{message}");
    assert!(answer.headers.get("retry-after").is_none());
}

#[tokio::test]
async fn slow_backends_time_out_with_503() {
    let mut f = Fixture::with_checkouts();
    f.state = f.state.clone().with_timeout(Duration::from_millis(50));
    *f.index.fault.lock().unwrap() = Fault::Slow;
    let answer = f.get("/api/v1/search").await;
    let message = answer.error(StatusCode::SERVICE_UNAVAILABLE);
    assert!(message.contains("timed out"), "{message}");
    assert_eq!(answer.header("retry-after"), "1");
}

#[tokio::test]
async fn serves_over_tcp_and_shuts_down_gracefully() {
    let f = Fixture::with_checkouts();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, f.state.clone(), async {
        let _ = stopped.await;
    }));

    let client = reqwest::Client::new();
    let response = client
        .get(format!("http://{addr}/api/v1/traces/{}", trace_id(2)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(
        response.headers()["content-security-policy"],
        CONTENT_SECURITY_POLICY
    );
    let v: Value = response.json().await.unwrap();
    assert_eq!(
        v["spans"][3]["events"][0]["attributes"]["exception.message"],
        "card declined for order"
    );

    let response = client
        .get(format!("http://{addr}/api/v1/traces/xyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
