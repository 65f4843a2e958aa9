//! `GET /api/v1/traces/{trace_id}`: whole traces in tree order, id parsing, span data
//! returned verbatim (through the router, with the in-memory stand-ins of `common`).

mod common;

use common::*;

#[tokio::test]
async fn trace_by_id_returns_the_whole_trace_in_tree_order() {
    let f = Fixture::new();
    let mut spans = checkout_trace(trace_id(7), "12345", BASE_TIME, true);
    spans.reverse();
    f.add(spans);

    let answer = f.get(&format!("/api/v1/traces/{}", trace_id(7))).await;
    assert_eq!(answer.status, StatusCode::OK);
    answer.assert_security_headers();
    let v = answer.json();
    assert_eq!(v["trace_id"], trace_id(7).to_hex());
    assert_eq!(v["truncated"], false);
    assert_eq!(v["span_count"], 4);
    let names: Vec<&str> = v["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["GET /checkout", "PlaceOrder", "Charge", "SELECT payments"]
    );

    let root = &v["spans"][0];
    assert_eq!(root["trace_id"], trace_id(7).to_hex());
    assert_eq!(root["span_id"], span_id(1).to_hex());
    assert_eq!(root["parent_span_id"], Value::Null);
    assert_eq!(root["service"], "frontend");
    assert_eq!(root["kind"], "server");
    assert_eq!(
        root["start_time_unix_nano"], "1700000000000000000",
        "timestamps are strings"
    );
    assert_eq!(root["end_time_unix_nano"], "1700000000050000000");
    assert_eq!(root["duration_nanos"], 50_000_000, "durations are numbers");
    assert_eq!(root["status"], json!({"code": "unset", "message": ""}));
    assert_eq!(root["business_keys"], json!({"order_id": "12345"}));
    assert_eq!(root["attributes"]["order_id"], "12345");
    assert_eq!(root["attributes"]["http.status_code"], 200);
    assert_eq!(root["resource"]["attributes"]["service.name"], "frontend");
    assert_eq!(root["resource"]["schema_url"], "");
    assert_eq!(
        root["scope"],
        json!({"name": "clew-fixtures", "version": "1.0"})
    );
    assert_eq!(root["flags"], 1);
    assert_eq!(root["trace_state"], "");
    assert_eq!(root["dropped_attributes_count"], 0);
    assert_eq!(root["dropped_events_count"], 0);
    assert_eq!(root["dropped_links_count"], 0);
    assert_eq!(root["repairs"], json!([]));

    let charge = &v["spans"][2];
    assert_eq!(charge["parent_span_id"], span_id(2).to_hex());
    assert_eq!(charge["links"][0]["trace_id"], trace_id(999_999).to_hex());
    assert_eq!(charge["links"][0]["span_id"], span_id(7).to_hex());
    assert_eq!(
        charge["links"][0]["attributes"],
        json!({"link.kind": "follows_from"})
    );

    let db = &v["spans"][3];
    assert_eq!(
        db["status"],
        json!({"code": "error", "message": "card declined for order"})
    );
    let exception = &db["events"][0];
    assert_eq!(exception["name"], "exception");
    assert_eq!(exception["time_unix_nano"], "1700000000003000001");
    assert_eq!(
        exception["attributes"]["exception.type"],
        "PaymentDeclinedError"
    );
    assert_eq!(
        exception["attributes"]["exception.stacktrace"],
        "at db.query (db.rs:42)\nat handler (main.rs:7)"
    );
    assert_eq!(exception["dropped_attributes_count"], 0);
}

#[tokio::test]
async fn unknown_trace_is_404() {
    let f = Fixture::with_checkouts();
    let id = trace_id(42);
    let message = f
        .get(&format!("/api/v1/traces/{id}"))
        .await
        .error(StatusCode::NOT_FOUND);
    assert_eq!(message, format!("trace {id} not found"));
}

#[tokio::test]
async fn malformed_trace_ids_are_400() {
    let f = Fixture::with_checkouts();
    for bad in [
        "xyz",
        "..%2Fetc",
        "..",
        &"a".repeat(31),
        &"a".repeat(33),
        &"0".repeat(32),
        "%3Cscript%3E",
        "%FF%FE",
    ] {
        let answer = f.get(&format!("/api/v1/traces/{bad}")).await;
        let message = answer.error(StatusCode::BAD_REQUEST);
        assert!(
            message.contains("trace id") || message.contains("invalid path"),
            "{bad}: {message}"
        );
        answer.assert_security_headers();
    }
    // an unencoded `../etc` is two segments: no route, a JSON 404, never a 500
    f.get("/api/v1/traces/../etc")
        .await
        .error(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn legacy_64_bit_ids_and_uppercase_hex_are_accepted() {
    let f = Fixture::new();
    let legacy = TraceId::from_hex("00000000000000ff").unwrap();
    f.add(vec![span(
        legacy,
        span_id(1),
        None,
        "old",
        "legacy",
        BASE_TIME,
        1,
    )]);
    let v = f.get("/api/v1/traces/00000000000000FF").await.json();
    assert_eq!(v["trace_id"], "000000000000000000000000000000ff");
    assert_eq!(v["spans"][0]["name"], "legacy");
}

#[tokio::test]
async fn html_in_span_data_is_returned_verbatim_as_json_strings() {
    let f = Fixture::new();
    let evil = r#"<script>alert("x")</script><img src=x onerror=alert(1)>&amp;"#;
    let mut s = span(trace_id(9), span_id(1), None, evil, evil, BASE_TIME, 10);
    s.status_message = evil.into();
    s.attributes
        .push(clew_store::conformance::fixtures::kv(evil, evil));
    f.add(vec![s]);

    let answer = f.get(&format!("/api/v1/traces/{}", trace_id(9))).await;
    assert_eq!(answer.status, StatusCode::OK);
    answer.assert_security_headers();
    let v = answer.json();
    let span = &v["spans"][0];
    assert_eq!(span["name"], evil);
    assert_eq!(span["service"], evil);
    assert_eq!(span["status"]["message"], evil);
    assert_eq!(span["attributes"][evil], evil);

    let search = f.get("/api/v1/search").await;
    assert_eq!(search.json()["traces"][0]["root_operation"], evil);
}

#[tokio::test]
async fn cyclic_and_self_parented_spans_each_appear_once() {
    let f = Fixture::new();
    let t = trace_id(5);
    f.add(vec![
        span(t, span_id(1), Some(span_id(2)), "a", "one", BASE_TIME, 10),
        span(
            t,
            span_id(2),
            Some(span_id(1)),
            "a",
            "two",
            BASE_TIME + 1,
            10,
        ),
        span(
            t,
            span_id(3),
            Some(span_id(3)),
            "a",
            "self",
            BASE_TIME + 2,
            10,
        ),
        span(
            t,
            span_id(4),
            Some(span_id(99)),
            "a",
            "orphan",
            BASE_TIME + 3,
            10,
        ),
    ]);
    let v = f.get(&format!("/api/v1/traces/{t}")).await.json();
    let names: Vec<&str> = v["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["orphan", "one", "two", "self"]);
}

#[tokio::test]
async fn truncated_traces_say_so() {
    let f = Fixture::with_checkouts();
    f.data.truncated.lock().unwrap().push(trace_id(1));
    assert_eq!(
        f.get(&format!("/api/v1/traces/{}", trace_id(1)))
            .await
            .json()["truncated"],
        true
    );
    let v = f.get("/api/v1/keys/order_id/111").await.json();
    assert_eq!(v["traces"][0]["truncated"], true);
}
