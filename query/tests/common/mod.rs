//! The test harness of the query API tests: small in-memory stand-ins for the span store
//! and the trace index, a fixture that drives the router, and the answer helpers. The real
//! backends are tested end to end in the workspace's `tests/`.

#![allow(dead_code, unused_imports)]

pub use std::collections::HashMap;
pub use std::sync::{Arc, Mutex};
pub use std::time::Duration;

pub use async_trait::async_trait;
pub use axum::body::Body;
pub use axum::http::{header, Method, Request, StatusCode};
pub use clew_proto::{Span, Tenant, TraceId};
pub use clew_query::{router, serve, QueryState, CONTENT_SECURITY_POLICY};
pub use clew_store::conformance::fixtures::{checkout_trace, span, span_id, trace_id, BASE_TIME};
pub use clew_store::trace_index::{TraceHit, TraceIdPage, TraceQuery};
pub use clew_store::{Error as StoreError, SpanStore, StoredTrace, TraceIndex, WriteReport};
pub use http_body_util::BodyExt;
pub use serde_json::{json, Value};
pub use tower::ServiceExt;

// ---------------------------------------------------------------------------------------
// in-test backends

/// How a stand-in backend should fail, if at all.
#[derive(Clone, Copy, PartialEq)]
pub enum Fault {
    None,
    Unavailable,
    Corrupt,
    Slow,
}

pub fn fault_error(fault: Fault) -> Option<StoreError> {
    match fault {
        Fault::Unavailable => Some(StoreError::unavailable("test backend", "disk is gone")),
        Fault::Corrupt => Some(StoreError::corrupt("span cell", "unknown format version 9")),
        Fault::None | Fault::Slow => None,
    }
}

/// Spans of every trace, shared by both stand-ins.
#[derive(Default)]
pub struct Data {
    pub traces: Mutex<HashMap<TraceId, Vec<Span>>>,
    pub truncated: Mutex<Vec<TraceId>>,
}

pub struct MemStore {
    pub data: Arc<Data>,
    pub fault: Mutex<Fault>,
    pub ready: Mutex<Result<(), String>>,
    /// What `broken()` says.
    pub broken: Mutex<Option<String>>,
}

pub struct MemIndex {
    pub data: Arc<Data>,
    pub fault: Mutex<Fault>,
    pub ready: Mutex<Result<(), String>>,
    /// Traces the index knows but the store has lost (expired rows).
    pub extra: Mutex<Vec<(TraceId, u64)>>,
    pub last_query: Mutex<Option<TraceQuery>>,
}

pub async fn act(fault: Fault) -> clew_store::Result<()> {
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

    async fn get_trace(
        &self,
        _tenant: &Tenant,
        trace_id: TraceId,
    ) -> clew_store::Result<Option<StoredTrace>> {
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

    async fn get_traces(
        &self,
        _tenant: &Tenant,
        trace_ids: &[TraceId],
    ) -> clew_store::Result<Vec<StoredTrace>> {
        let mut out = Vec::new();
        for id in trace_ids {
            if let Some(t) = self.get_trace(&Tenant::default(), *id).await? {
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

    fn broken(&self) -> Option<String> {
        self.broken.lock().unwrap().clone()
    }
}

pub fn matches(spans: &[Span], q: &TraceQuery) -> bool {
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

    async fn find_trace_ids(
        &self,
        _tenant: &Tenant,
        query: &TraceQuery,
    ) -> clew_store::Result<TraceIdPage> {
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

    async fn services(&self, _tenant: &Tenant) -> clew_store::Result<Vec<String>> {
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

    async fn operations(&self, _tenant: &Tenant, service: &str) -> clew_store::Result<Vec<String>> {
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

pub struct Fixture {
    pub data: Arc<Data>,
    pub store: Arc<MemStore>,
    pub index: Arc<MemIndex>,
    pub state: QueryState,
}

impl Fixture {
    pub fn new() -> Self {
        let data = Arc::new(Data::default());
        let store = Arc::new(MemStore {
            data: data.clone(),
            fault: Mutex::new(Fault::None),
            ready: Mutex::new(Ok(())),
            broken: Mutex::new(None),
        });
        let index = Arc::new(MemIndex {
            data: data.clone(),
            fault: Mutex::new(Fault::None),
            ready: Mutex::new(Ok(())),
            extra: Mutex::new(Vec::new()),
            last_query: Mutex::new(None),
        });
        let render: clew_query::MetricsRender =
            Arc::new(|_| "# TYPE clew_up gauge\nclew_up 1\n".to_string());
        let state = QueryState::new(store.clone(), index.clone(), render);
        Fixture {
            data,
            store,
            index,
            state,
        }
    }

    pub fn add(&self, spans: Vec<Span>) {
        let mut traces = self.data.traces.lock().unwrap();
        for s in spans {
            traces.entry(s.trace_id).or_default().push(s);
        }
    }

    /// Two checkout traces (the newer one failing) and an unrelated inventory trace.
    pub fn with_checkouts() -> Self {
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

    pub async fn get(&self, uri: &str) -> Answer {
        self.request(Method::GET, uri).await
    }

    pub async fn request(&self, method: Method, uri: &str) -> Answer {
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

pub struct Answer {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        assert_eq!(
            self.header(header::CONTENT_TYPE.as_str()),
            "application/json",
            "body: {}",
            self.body
        );
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    /// A JSON error answer with `status`; returns its message.
    pub fn error(&self, status: StatusCode) -> String {
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

    pub fn assert_security_headers(&self) {
        assert_eq!(
            self.header("content-security-policy"),
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(self.header("x-content-type-options"), "nosniff");
    }
}
