//! `GET /api/v1/search`: filters, paging, bad input, what is indexed (through the router,
//! with the in-memory stand-ins of `common`).

mod common;

use common::*;

#[tokio::test]
async fn search_returns_summaries_newest_first() {
    let f = Fixture::with_checkouts();
    let v = f.get("/api/v1/search").await.json();
    let ids: Vec<&str> = v["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["trace_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            trace_id(2).to_hex(),
            trace_id(3).to_hex(),
            trace_id(1).to_hex()
        ]
    );
    assert_eq!(v["next_cursor"], Value::Null);

    let failing = &v["traces"][0];
    assert_eq!(
        *failing,
        json!({
            "trace_id": trace_id(2).to_hex(),
            "root_service": "frontend",
            "root_operation": "GET /checkout",
            "start_time_unix_nano": "1700000001000000000",
            "duration_nanos": 50_000_000,
            "span_count": 4,
            "error_count": 1,
            "services": [
                {"name": "checkout", "span_count": 1, "error_count": 0},
                {"name": "frontend", "span_count": 1, "error_count": 0},
                {"name": "payments", "span_count": 2, "error_count": 1},
            ],
            "business_keys": {"order_id": "222"},
            "truncated": false,
        })
    );
}

#[tokio::test]
async fn search_filters_reach_the_index() {
    let f = Fixture::with_checkouts();
    let v = f
        .get("/api/v1/search?service=payments&error=true&min_duration=10ms&lookback=10000d")
        .await
        .json();
    assert_eq!(v["traces"].as_array().unwrap().len(), 1);
    assert_eq!(v["traces"][0]["trace_id"], trace_id(2).to_hex());

    let uri = "/api/v1/search?operation=Charge&max_duration=1.5s&start=2023-11-14T22:13:20Z&end=1800000000000000000\
               &attr=http.route:/api/orders/%7Bid%7D&attr=db.system:postgresql&key=order_id:222&q=card%20declined&limit=5000";
    let v = f.get(uri).await.json();
    assert_eq!(v["traces"].as_array().unwrap().len(), 1);
    let q = f.index.last_query.lock().unwrap().clone().unwrap();
    assert_eq!(q.operation.as_deref(), Some("Charge"));
    assert_eq!(q.max_duration_nanos, Some(1_500_000_000));
    assert_eq!(q.start_min_unix_nano, Some(BASE_TIME));
    assert_eq!(q.start_max_unix_nano, Some(1_800_000_000_000_000_000));
    assert_eq!(
        q.attributes,
        vec![
            ("http.route".to_string(), "/api/orders/{id}".to_string()),
            ("db.system".into(), "postgresql".into())
        ]
    );
    assert_eq!(
        q.business_keys,
        vec![("order_id".to_string(), "222".to_string())]
    );
    assert_eq!(q.text.as_deref(), Some("card declined"));
    assert_eq!(q.limit, clew_store::trace_index::MAX_LIMIT, "limit clamped");
}

#[tokio::test]
async fn search_error_false_keeps_traces_without_errors() {
    let f = Fixture::with_checkouts();
    let v = f.get("/api/v1/search?error=false").await.json();
    let ids: Vec<&str> = v["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["trace_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [trace_id(3).to_hex(), trace_id(1).to_hex()]);
}

#[tokio::test]
async fn search_pages_with_the_cursor() {
    let f = Fixture::with_checkouts();
    let mut seen = Vec::new();
    let mut uri = "/api/v1/search?limit=1".to_string();
    for _ in 0..10 {
        let v = f.get(&uri).await.json();
        assert_eq!(v["traces"].as_array().unwrap().len(), 1);
        seen.push(v["traces"][0]["trace_id"].as_str().unwrap().to_string());
        match v["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/api/v1/search?limit=1&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            trace_id(2).to_hex(),
            trace_id(3).to_hex(),
            trace_id(1).to_hex()
        ]
    );
}

#[tokio::test]
async fn search_bad_input_is_400_naming_the_parameter() {
    let f = Fixture::with_checkouts();
    for (query, needle) in [
        ("servce=payments", "unknown query parameter `servce`"),
        ("limit=0", "`limit`"),
        ("limit=-3", "`limit`"),
        ("limit=lots", "`limit`"),
        ("min_duration=-5ms", "negative"),
        (
            "start=2023-11-15T00:00:00Z&end=2023-11-14T00:00:00Z",
            "not before `end`",
        ),
        ("attr=no-colon", "`attr`"),
        ("error=maybe", "`error`"),
        ("cursor=not-a-cursor", "malformed cursor"),
    ] {
        let message = f
            .get(&format!("/api/v1/search?{query}"))
            .await
            .error(StatusCode::BAD_REQUEST);
        assert!(message.contains(needle), "{query}: {message}");
    }
}

#[tokio::test]
async fn traces_the_store_no_longer_has_are_skipped() {
    let f = Fixture::with_checkouts();
    f.index
        .extra
        .lock()
        .unwrap()
        .push((trace_id(77), BASE_TIME + 9_000_000_000));
    let v = f.get("/api/v1/search").await.json();
    assert_eq!(v["traces"].as_array().unwrap().len(), 3);
    assert_eq!(v["traces"][0]["trace_id"], trace_id(2).to_hex());
}

#[tokio::test]
async fn attributes_that_are_not_indexed_are_refused_with_what_is() {
    let mut f = Fixture::with_checkouts();
    f.state = f.state.clone().with_indexed(clew_query::Indexed {
        attributes: clew_query::IndexedAttributes::from_names(&[
            "http.route".into(),
            "db.system".into(),
        ]),
        business_keys: vec!["order_id".into()],
    });
    let message = f
        .get("/api/v1/search?attr=user.email:a@example.com")
        .await
        .error(StatusCode::BAD_REQUEST);
    for needle in [
        "attribute `user.email` is not indexed",
        "indexed attributes: http.route, db.system",
        "business keys: order_id",
        "`indexed_attributes`",
    ] {
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    }
    // a business key is searchable through `attr=` too
    let v = f.get("/api/v1/search?attr=order_id:222").await.json();
    assert_eq!(v["traces"].as_array().unwrap().len(), 1);
    assert_eq!(v["traces"][0]["trace_id"], trace_id(2).to_hex());
    let q = f.index.last_query.lock().unwrap().clone().unwrap();
    assert!(q.attributes.is_empty());
    assert_eq!(q.business_keys, vec![("order_id".into(), "222".into())]);
    // an indexed attribute reaches the index as it is
    f.get("/api/v1/search?attr=db.system:postgresql")
        .await
        .json();
    let q = f.index.last_query.lock().unwrap().clone().unwrap();
    assert_eq!(
        q.attributes,
        vec![("db.system".into(), "postgresql".into())]
    );
}
