//! Business-key lookups, the service and operation lists, service dependencies (through
//! the router, with the in-memory stand-ins of `common`).

mod common;

use common::*;

#[tokio::test]
async fn key_lookup_returns_summaries_or_whole_traces() {
    let f = Fixture::with_checkouts();
    f.add(checkout_trace(
        trace_id(4),
        "222",
        BASE_TIME + 2_000_000_000,
        false,
    ));

    let v = f.get("/api/v1/keys/order_id/222").await.json();
    let ids: Vec<&str> = v["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["trace_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [trace_id(4).to_hex(), trace_id(2).to_hex()]);
    assert_eq!(v["traces"][1]["error_count"], 1);
    assert_eq!(v["traces"][1]["business_keys"], json!({"order_id": "222"}));
    assert_eq!(v["next_cursor"], Value::Null);

    let v = f
        .get("/api/v1/keys/order_id/222?full=true&limit=1")
        .await
        .json();
    assert_eq!(v["traces"].as_array().unwrap().len(), 1);
    let trace = &v["traces"][0];
    assert_eq!(trace["trace_id"], trace_id(4).to_hex());
    assert_eq!(trace["span_count"], 4);
    assert_eq!(
        trace["spans"][0]["start_time_unix_nano"],
        "1700000002000000000"
    );
    assert_eq!(
        trace["spans"][0]["business_keys"],
        json!({"order_id": "222"})
    );
    assert_eq!(v["next_cursor"], "1");

    let v = f.get("/api/v1/keys/order_id/nope").await.json();
    assert_eq!(v, json!({"traces": [], "next_cursor": null}));
}

#[tokio::test]
async fn key_lookup_decodes_the_path_and_refuses_unknown_parameters() {
    let f = Fixture::new();
    f.add(vec![clew_store::conformance::fixtures::with_key(
        span(trace_id(1), span_id(1), None, "a", "x", BASE_TIME, 1),
        "sku",
        "A/B 7",
    )]);
    let v = f.get("/api/v1/keys/sku/A%2FB%207").await.json();
    assert_eq!(v["traces"].as_array().unwrap().len(), 1);

    let message = f
        .get("/api/v1/keys/sku/x?service=a")
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(message.contains("`service`"), "{message}");
    f.get("/api/v1/keys/sku/x?full=yes")
        .await
        .error(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn services_and_operations() {
    let f = Fixture::with_checkouts();
    let v = f.get("/api/v1/services").await.json();
    assert_eq!(
        v,
        json!({"services": ["checkout", "frontend", "inventory", "payments"]})
    );
    let v = f.get("/api/v1/services/payments/operations").await.json();
    assert_eq!(v, json!({"operations": ["Charge", "SELECT payments"]}));
    let v = f.get("/api/v1/services/nobody/operations").await.json();
    assert_eq!(v, json!({"operations": []}));
}

#[tokio::test]
async fn dependencies_count_cross_service_calls_of_the_range() {
    let f = Fixture::with_checkouts();
    let answer = f.get("/api/v1/dependencies").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("content-type"), "application/json");
    answer.assert_security_headers();
    let v = answer.json();
    assert_eq!(
        v["edges"],
        serde_json::json!([
            {"parent": "checkout", "child": "payments", "call_count": 2, "error_count": 0},
            {"parent": "frontend", "child": "checkout", "call_count": 2, "error_count": 0},
        ])
    );
    assert_eq!(
        v["services"],
        serde_json::json!(["checkout", "frontend", "inventory", "payments"])
    );
    assert_eq!(v["traces_considered"], 3);
    assert_eq!(v["more_traces"], false);
    let q = f.index.last_query.lock().unwrap().clone().unwrap();
    assert_eq!(q.limit, clew_query::dependencies::DEFAULT_TRACES);

    // the sampling bound is said in the answer
    let v = f.get("/api/v1/dependencies?limit=1").await.json();
    assert_eq!(v["traces_considered"], 1);
    assert_eq!(v["more_traces"], true);

    // the time range reaches the index
    f.get("/api/v1/dependencies?start=2023-11-14T22:13:20Z&end=2023-11-14T23:13:20Z")
        .await
        .json();
    let q = f.index.last_query.lock().unwrap().clone().unwrap();
    assert_eq!(q.start_min_unix_nano, Some(1_700_000_000_000_000_000));
    assert_eq!(q.start_max_unix_nano, Some(1_700_003_600_000_000_000));
}

#[tokio::test]
async fn dependencies_refuse_other_parameters_and_bad_ranges() {
    let f = Fixture::with_checkouts();
    for (query, needle) in [
        ("service=frontend", "unknown query parameter `service`"),
        ("lookback=banana", "lookback"),
        (
            "start=1700000000000000000&lookback=1h",
            "either `start` or `lookback`",
        ),
        ("limit=0", "limit"),
    ] {
        let message = f
            .get(&format!("/api/v1/dependencies?{query}"))
            .await
            .error(StatusCode::BAD_REQUEST);
        assert!(message.contains(needle), "{query}: {message}");
    }
}
