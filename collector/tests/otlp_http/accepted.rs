//! Requests that are taken in: partial success, OTLP/JSON quirks, empty requests.

use super::*;

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
