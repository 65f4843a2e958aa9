//! The query API driven through its router (and once over a real socket), with small
//! in-memory stand-ins for the span store and the trace index. The real backends are tested
//! end to end in the workspace's `tests/`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use clew_proto::{Span, TraceId};
use clew_query::{router, serve, QueryState, CONTENT_SECURITY_POLICY};
use clew_store::conformance::fixtures::{checkout_trace, span, span_id, trace_id, BASE_TIME};
use clew_store::trace_index::{TraceHit, TraceIdPage, TraceQuery};
use clew_store::{Error as StoreError, SpanStore, StoredTrace, TraceIndex, WriteReport};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

// ---------------------------------------------------------------------------------------
// in-test backends

/// How a stand-in backend should fail, if at all.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    Unavailable,
    Corrupt,
    Slow,
}

fn fault_error(fault: Fault) -> Option<StoreError> {
    match fault {
        Fault::Unavailable => Some(StoreError::unavailable("test backend", "disk is gone")),
        Fault::Corrupt => Some(StoreError::corrupt("span cell", "unknown format version 9")),
        Fault::None | Fault::Slow => None,
    }
}

/// Spans of every trace, shared by both stand-ins.
#[derive(Default)]
struct Data {
    traces: Mutex<HashMap<TraceId, Vec<Span>>>,
    truncated: Mutex<Vec<TraceId>>,
}

struct MemStore {
    data: Arc<Data>,
    fault: Mutex<Fault>,
    ready: Mutex<Result<(), String>>,
}

struct MemIndex {
    data: Arc<Data>,
    fault: Mutex<Fault>,
    ready: Mutex<Result<(), String>>,
    /// Traces the index knows but the store has lost (expired rows).
    extra: Mutex<Vec<(TraceId, u64)>>,
    last_query: Mutex<Option<TraceQuery>>,
}

async fn act(fault: Fault) -> clew_store::Result<()> {
    if fault == Fault::Slow {
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    fault_error(fault).map_or(Ok(()), Err)
}

#[async_trait]
impl SpanStore for MemStore {
    async fn write_spans(&self, spans: Arc<[Span]>) -> clew_store::Result<WriteReport> {
        let mut traces = self.data.traces.lock().unwrap();
        for s in spans.iter() {
            traces.entry(s.trace_id).or_default().push(s.clone());
        }
        Ok(WriteReport::default())
    }

    async fn get_trace(&self, trace_id: TraceId) -> clew_store::Result<Option<StoredTrace>> {
        let fault = *self.fault.lock().unwrap();
        act(fault).await?;
        let truncated = self.data.truncated.lock().unwrap().contains(&trace_id);
        Ok(self
            .data
            .traces
            .lock()
            .unwrap()
            .get(&trace_id)
            .map(|spans| StoredTrace {
                trace_id,
                spans: spans.clone(),
                truncated,
            }))
    }

    async fn get_traces(&self, trace_ids: &[TraceId]) -> clew_store::Result<Vec<StoredTrace>> {
        let mut out = Vec::new();
        for id in trace_ids {
            if let Some(t) = self.get_trace(*id).await? {
                out.push(t);
            }
        }
        Ok(out)
    }

    async fn drop_expired(&self, _now: u64) -> clew_store::Result<u64> {
        Ok(0)
    }

    async fn close(&self) -> clew_store::Result<()> {
        Ok(())
    }

    async fn ready(&self) -> clew_store::Result<()> {
        self.ready
            .lock()
            .unwrap()
            .clone()
            .map_err(|e| StoreError::unavailable("span store", e))
    }
}

fn matches(spans: &[Span], q: &TraceQuery) -> bool {
    let any = |f: &dyn Fn(&Span) -> bool| spans.iter().any(f);
    q.service
        .as_ref()
        .is_none_or(|svc| any(&|s| &s.service_name == svc))
        && q.operation
            .as_ref()
            .is_none_or(|op| any(&|s| &s.name == op))
        && (!q.errors_only || any(&|s| s.is_error()))
        && q.min_duration_nanos
            .is_none_or(|min| any(&|s| s.duration_nanos() >= min))
        && q.max_duration_nanos
            .is_none_or(|max| any(&|s| s.duration_nanos() <= max))
        && q.start_min_unix_nano
            .is_none_or(|t| any(&|s| s.start_unix_nano >= t))
        && q.start_max_unix_nano
            .is_none_or(|t| any(&|s| s.start_unix_nano < t))
        && q.business_keys.iter().all(|(n, v)| {
            any(&|s| {
                s.business_keys
                    .iter()
                    .any(|k| &k.name == n && &k.value == v)
            })
        })
        && q.text
            .as_ref()
            .is_none_or(|text| any(&|s| s.status_message.contains(text.as_str())))
}

#[async_trait]
impl TraceIndex for MemIndex {
    async fn index_spans(&self, _spans: Arc<[Span]>) -> clew_store::Result<()> {
        Ok(())
    }

    async fn find_trace_ids(&self, query: &TraceQuery) -> clew_store::Result<TraceIdPage> {
        *self.last_query.lock().unwrap() = Some(query.clone());
        let fault = *self.fault.lock().unwrap();
        act(fault).await?;
        let offset = match &query.cursor {
            None => 0,
            Some(c) => c
                .parse::<usize>()
                .map_err(|_| StoreError::InvalidRequest(format!("malformed cursor `{c}`")))?,
        };
        let mut hits: Vec<TraceHit> = self
            .data
            .traces
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, spans)| matches(spans, query))
            .map(|(id, spans)| TraceHit {
                trace_id: *id,
                start_unix_nano: spans.iter().map(|s| s.start_unix_nano).min().unwrap_or(0),
            })
            .collect();
        if query
            == &(TraceQuery {
                limit: query.limit,
                cursor: query.cursor.clone(),
                ..Default::default()
            })
        {
            hits.extend(self.extra.lock().unwrap().iter().map(|(id, t)| TraceHit {
                trace_id: *id,
                start_unix_nano: *t,
            }));
        }
        hits.sort_by(|a, b| {
            b.start_unix_nano
                .cmp(&a.start_unix_nano)
                .then(a.trace_id.cmp(&b.trace_id))
        });
        let total = hits.len();
        let hits: Vec<TraceHit> = hits.into_iter().skip(offset).take(query.limit).collect();
        let next = offset + hits.len();
        Ok(TraceIdPage {
            hits,
            next_cursor: (next < total).then(|| next.to_string()),
        })
    }

    async fn services(&self) -> clew_store::Result<Vec<String>> {
        let fault = *self.fault.lock().unwrap();
        act(fault).await?;
        let mut names: Vec<String> = self
            .data
            .traces
            .lock()
            .unwrap()
            .values()
            .flatten()
            .map(|s| s.service_name.clone())
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn operations(&self, service: &str) -> clew_store::Result<Vec<String>> {
        let mut names: Vec<String> = self
            .data
            .traces
            .lock()
            .unwrap()
            .values()
            .flatten()
            .filter(|s| s.service_name == service)
            .map(|s| s.name.clone())
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn refresh(&self) -> clew_store::Result<()> {
        Ok(())
    }

    async fn drop_expired(&self, _now: u64) -> clew_store::Result<u64> {
        Ok(0)
    }

    async fn close(&self) -> clew_store::Result<()> {
        Ok(())
    }

    async fn ready(&self) -> clew_store::Result<()> {
        self.ready
            .lock()
            .unwrap()
            .clone()
            .map_err(|e| StoreError::unavailable("trace index", e))
    }
}

struct Fixture {
    data: Arc<Data>,
    store: Arc<MemStore>,
    index: Arc<MemIndex>,
    state: QueryState,
}

impl Fixture {
    fn new() -> Self {
        let data = Arc::new(Data::default());
        let store = Arc::new(MemStore {
            data: data.clone(),
            fault: Mutex::new(Fault::None),
            ready: Mutex::new(Ok(())),
        });
        let index = Arc::new(MemIndex {
            data: data.clone(),
            fault: Mutex::new(Fault::None),
            ready: Mutex::new(Ok(())),
            extra: Mutex::new(Vec::new()),
            last_query: Mutex::new(None),
        });
        let render: clew_query::MetricsRender =
            Arc::new(|| "# TYPE clew_up gauge\nclew_up 1\n".to_string());
        let state = QueryState::new(store.clone(), index.clone(), render);
        Fixture {
            data,
            store,
            index,
            state,
        }
    }

    fn add(&self, spans: Vec<Span>) {
        let mut traces = self.data.traces.lock().unwrap();
        for s in spans {
            traces.entry(s.trace_id).or_default().push(s);
        }
    }

    /// Two checkout traces (the newer one failing) and an unrelated inventory trace.
    fn with_checkouts() -> Self {
        let f = Fixture::new();
        f.add(checkout_trace(trace_id(1), "111", BASE_TIME, false));
        f.add(checkout_trace(
            trace_id(2),
            "222",
            BASE_TIME + 1_000_000_000,
            true,
        ));
        f.add(vec![span(
            trace_id(3),
            span_id(1),
            None,
            "inventory",
            "Reserve",
            BASE_TIME + 500_000_000,
            7_000,
        )]);
        f
    }

    async fn get(&self, uri: &str) -> Answer {
        self.request(Method::GET, uri).await
    }

    async fn request(&self, method: Method, uri: &str) -> Answer {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let response = router(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8(bytes.to_vec()).unwrap(),
        }
    }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        assert_eq!(
            self.header(header::CONTENT_TYPE.as_str()),
            "application/json",
            "body: {}",
            self.body
        );
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    /// A JSON error answer with `status`; returns its message.
    fn error(&self, status: StatusCode) -> String {
        assert_eq!(self.status, status, "body: {}", self.body);
        let message = self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message: {}", self.body))
            .to_string();
        assert!(!message.is_empty());
        assert_eq!(
            message.chars().next().map(|c| c.is_lowercase()),
            Some(true),
            "lowercase: {message}"
        );
        message
    }

    fn assert_security_headers(&self) {
        assert_eq!(
            self.header("content-security-policy"),
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(self.header("x-content-type-options"), "nosniff");
    }
}

// ---------------------------------------------------------------------------------------
// GET /api/v1/traces/{trace_id}

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

// ---------------------------------------------------------------------------------------
// GET /api/v1/search

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

// ---------------------------------------------------------------------------------------
// GET /api/v1/keys/{name}/{value}

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

// ---------------------------------------------------------------------------------------
// services, operations

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

// ---------------------------------------------------------------------------------------
// health, readiness, metrics, unknown routes

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
}

#[tokio::test]
async fn metrics_come_from_the_render_function() {
    let f = Fixture::new();
    let answer = f.get("/metrics").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.header("content-type").starts_with("text/plain"));
    assert_eq!(answer.body, "# TYPE clew_up gauge\nclew_up 1\n");
}

// ---------------------------------------------------------------------------------------
// the browser UI: pages and assets

#[tokio::test]
async fn ui_pages_are_static_html_under_the_strict_csp() {
    let f = Fixture::new();
    for (path, script) in [
        ("/", "/ui/search.js"),
        ("/trace/0af7651916cd43dd8448eb211c80319c", "/ui/trace.js"),
        ("/keys/order_id/12345", "/ui/keys.js"),
        ("/map", "/ui/map.js"),
    ] {
        let answer = f.get(path).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        assert_eq!(
            answer.header("content-type"),
            "text/html; charset=utf-8",
            "{path}"
        );
        answer.assert_security_headers();
        let body = &answer.body;
        assert!(
            body.contains(&format!(
                "<script type=\"module\" src=\"{script}\"></script>"
            )),
            "{path}"
        );
        assert!(
            body.contains("<link rel=\"stylesheet\" href=\"/ui/app.css\">"),
            "{path}"
        );
        // nothing inline that the CSP would have to allow, nothing from elsewhere
        assert_eq!(
            body.matches("<script").count(),
            1,
            "{path}: one script, by src"
        );
        assert!(
            !body.contains("style=") && !body.contains("<style"),
            "{path}: no inline style"
        );
        let inline_handler = body.split(" on").skip(1).any(|rest| {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        });
        assert!(!inline_handler, "{path}: no inline event handler");
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{path}: no external asset"
        );
    }
    // the search page keeps the list of JSON endpoints
    let answer = f.get("/").await;
    for path in [
        "/api/v1/search?lookback=1h",
        "/api/v1/services",
        "/api/v1/dependencies?lookback=1h",
        "/healthz",
    ] {
        assert!(answer.body.contains(&format!("href=\"{path}")), "{path}");
    }
}

#[tokio::test]
async fn the_trace_page_is_served_for_any_id_and_reflects_none() {
    // the page is static: its script validates the id and the API answers a bad one with a
    // 400, which the page shows
    let f = Fixture::new();
    let good = f.get("/trace/0af7651916cd43dd8448eb211c80319c").await;
    for bad in [
        "/trace/not-hex",
        "/trace/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    ] {
        let answer = f.get(bad).await;
        assert_eq!(answer.status, StatusCode::OK, "{bad}");
        assert_eq!(answer.body, good.body, "{bad}: the same static page");
        answer.assert_security_headers();
    }
    assert_eq!(
        f.get("/api/v1/traces/not-hex").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn ui_assets_have_their_content_types() {
    let f = Fixture::new();
    for (name, content_type) in [
        ("app.css", "text/css; charset=utf-8"),
        ("common.js", "text/javascript; charset=utf-8"),
        ("search.js", "text/javascript; charset=utf-8"),
        ("trace.js", "text/javascript; charset=utf-8"),
        ("keys.js", "text/javascript; charset=utf-8"),
        ("map.js", "text/javascript; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let answer = f.get(&format!("/ui/{name}")).await;
        assert_eq!(answer.status, StatusCode::OK, "{name}");
        assert_eq!(answer.header("content-type"), content_type, "{name}");
        answer.assert_security_headers();
        assert!(!answer.body.is_empty());
        if name.ends_with(".js") {
            // span data goes in as text only
            assert!(!answer.body.contains("innerHTML"), "{name}");
            assert!(!answer.body.contains("insertAdjacentHTML"), "{name}");
            assert!(!answer.body.contains("document.write"), "{name}");
            assert!(!answer.body.contains("eval("), "{name}");
        }
    }
    for missing in ["/ui/nope.js", "/ui/..%2Fsearch.html", "/ui/search.html"] {
        let message = f.get(missing).await.error(StatusCode::NOT_FOUND);
        assert!(message.contains("no UI asset"), "{missing}: {message}");
    }
}

// ---------------------------------------------------------------------------------------
// GET /api/v1/dependencies

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

// ---------------------------------------------------------------------------------------
// backend failures

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

// ---------------------------------------------------------------------------------------
// over a real socket

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
