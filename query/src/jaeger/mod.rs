//! Jaeger's HTTP query API (`/api/...`), beside the native API on the same port: what the
//! Jaeger UI and Grafana's Jaeger data source call, answering as Jaeger v2 does.
//!
//! ```text
//!  GET /api/traces?…
//!    ─▶ params          Jaeger's parameters, defaults and error texts (400)
//!    ─▶ find trace ids  the index: a superset of Jaeger's answer, newest first, paged
//!    ─▶ fetch traces    the store: one row read per candidate
//!    ─▶ match           Jaeger's rule: one span satisfies every condition
//!    ─▶ translate       Jaeger's JSON: OTLP → Jaeger model, then Jaeger's adjusters
//! ```
//!
//! - Every answer is Jaeger's envelope `{"data", "total", "limit", "offset", "errors"}`;
//!   errors are `{"code", "msg"}` entries with the status as `code` (400 for bad input with
//!   Go's parse messages, 404 `trace not found`).
//! - Search semantics are Jaeger's: *one* span must satisfy service, operation, time
//!   range, durations and every tag (tags match span, scope, resource and event attributes
//!   by their text), unlike the native search where conditions may hold on different
//!   spans. The index narrows the candidates first — service, operation, time, duration,
//!   `error=true`, and tags that are business keys (`tags={"order_id":"123"}` is the native
//!   key lookup) or indexed attributes — and the candidates are then checked span by span.
//!   Candidates are read page by page until `limit` traces match or [`SCAN_BUDGET`]
//!   candidates were read.
//! - Deliberate differences from Jaeger v2's memory store (see `tests/jaeger_compat.rs`):
//!   `error=true` finds spans with status ERROR and `error=false` the others (Jaeger's
//!   memory store reads the text `"true"` as a boolean, gets false, and finds spans with
//!   status OK for either); results are newest
//!   first by start time (the memory store answers most recently *received* first); a
//!   `limit` below 1 means the default (the memory store answers 500) and one above
//!   clew's `MAX_LIMIT` (1000) is cut to it; error bodies are
//!   sent as `application/json` (Go's `http.Error` labels the same JSON `text/plain`);
//!   a tag matching only an attribute of the span's scope or events is not found when the
//!   tag is a business key or an indexed attribute (the index holds span and resource
//!   attributes; other tags are checked on every candidate and match all four).
//!   Spans whose resource has no `service.name` are listed, searched and counted in
//!   dependencies under clew's `unknown_service` (Jaeger lists and finds them under
//!   `missing-service-name`); their process is named as Jaeger names it.
//! - `/api/operations?spanKind=` needs each operation's span kind, which the trace index
//!   does not keep: it is read from the newest [`SCAN_BUDGET`] traces of the service;
//!   operations only seen in older traces are listed with an empty kind when no kind is
//!   asked for.

pub mod params;
pub mod storage_grpc;
pub mod translate;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use clew_proto::{Span, TraceId};
use clew_store::trace_index::MAX_LIMIT;
use clew_store::{StoredTrace, TraceQuery};
use serde_json::{json, Value as Json};

use crate::error::Error;
use crate::fetch_traces::{fetch_trace, fetch_traces};
use crate::find_trace_ids::find_trace_ids;
use crate::QueryState;
use params::{Form, TraceSearch};

/// Most candidate traces one search, operation listing or dependency graph reads.
pub const SCAN_BUDGET: usize = 5 * MAX_LIMIT;

/// The Jaeger endpoints, to be merged into the query router.
pub fn routes() -> Router<QueryState> {
    Router::new()
        .route("/api/services", get(services))
        .route("/api/services/{service}/operations", get(operations_legacy))
        .route("/api/operations", get(operations))
        .route("/api/traces", get(search))
        .route("/api/traces/{trace_id}", get(trace_by_id))
        .route("/api/dependencies", get(dependencies))
}

/// `{"data": …, "total": …, "limit": 0, "offset": 0, "errors": …}`
fn envelope(status: StatusCode, data: Json, total: usize, errors: Json) -> Response {
    let body = json!({"data": data, "total": total, "limit": 0, "offset": 0, "errors": errors});
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn ok(data: Json, total: usize) -> Response {
    envelope(StatusCode::OK, data, total, Json::Null)
}

/// A failed request, as Jaeger's `handleError` writes it.
fn fail(status: StatusCode, msg: impl Into<String>) -> Response {
    let msg = msg.into();
    if status.is_server_error() {
        tracing::warn!(error = %msg, status = status.as_u16(), "jaeger api query failed");
    }
    envelope(
        status,
        Json::Null,
        0,
        json!([{"code": status.as_u16(), "msg": msg}]),
    )
}

fn bad_request(msg: impl Into<String>) -> Response {
    fail(StatusCode::BAD_REQUEST, msg)
}

fn from_error(e: Error) -> Response {
    match e {
        Error::NotFound(_) => fail(StatusCode::NOT_FOUND, "trace not found"),
        e => fail(e.status(), e.to_string()),
    }
}

/// A list, or `null` when empty (Go's nil slice).
fn list_or_null(items: Vec<Json>) -> Json {
    if items.is_empty() {
        Json::Null
    } else {
        Json::Array(items)
    }
}

/// `GET /api/services`
async fn services(State(state): State<QueryState>) -> Response {
    let doing = "failed to list services from the trace index";
    match tokio::time::timeout(state.timeout, state.index.services()).await {
        Err(_) => from_error(Error::Timeout {
            doing: doing.into(),
            after: state.timeout,
        }),
        Ok(Err(e)) => from_error(Error::backend(doing, e)),
        Ok(Ok(services)) => {
            let total = services.len();
            ok(
                list_or_null(services.into_iter().map(Json::String).collect()),
                total,
            )
        }
    }
}

/// `GET /api/services/{service}/operations`: operation names, every kind.
async fn operations_legacy(State(state): State<QueryState>, uri: Uri) -> Response {
    // as Jaeger: the raw path segment, query-unescaped (`+` is a space), "" if malformed
    let raw = uri.path().rsplit('/').nth(1).unwrap_or("");
    let service = params::go_query_unescape(raw).unwrap_or_default();
    let doing = "failed to list operations from the trace index";
    match tokio::time::timeout(state.timeout, state.index.operations(&service)).await {
        Err(_) => from_error(Error::Timeout {
            doing: doing.into(),
            after: state.timeout,
        }),
        Ok(Err(e)) => from_error(Error::backend(doing, e)),
        Ok(Ok(names)) => {
            let total = names.len();
            ok(
                list_or_null(names.into_iter().map(Json::String).collect()),
                total,
            )
        }
    }
}

/// `GET /api/operations?service=&spanKind=`: operations with their span kind.
async fn operations(State(state): State<QueryState>, RawQuery(raw): RawQuery) -> Response {
    let form = Form::parse(raw.as_deref());
    let service = form.value("service").to_string();
    if service.is_empty() {
        return bad_request("parameter 'service' is required");
    }
    let kind = form.value("spanKind").to_string();
    match list_operations(&state, &service, &kind).await {
        Ok(operations) => {
            let data: Vec<Json> = operations
                .into_iter()
                .map(|(name, span_kind)| json!({"name": name, "spanKind": span_kind}))
                .collect();
            let total = data.len();
            ok(Json::Array(data), total)
        }
        Err(e) => from_error(e),
    }
}

/// The `(name, span kind)` operations of `service`, sorted, of one `kind` (Jaeger's
/// lowercase text; empty: every kind). Kinds are read from the newest [`SCAN_BUDGET`]
/// traces; operations only seen in older traces are listed with an empty kind when no
/// kind is asked for.
pub async fn list_operations(
    state: &QueryState,
    service: &str,
    kind: &str,
) -> Result<Vec<(String, String)>, Error> {
    let query = TraceQuery {
        service: Some(service.to_string()),
        ..Default::default()
    };
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    scan(state, &query, MAX_LIMIT, |trace| {
        for span in &trace.spans {
            if span.service_name == service {
                let k = translate::kind_text(span.kind).unwrap_or("");
                seen.insert((span.name.clone(), k.to_string()));
            }
        }
        true
    })
    .await?;
    if kind.is_empty() {
        // operations of traces older than the scan: their kind is unknown here
        let names = match tokio::time::timeout(state.timeout, state.index.operations(service)).await
        {
            Ok(Ok(names)) => names,
            Ok(Err(e)) => return Err(Error::backend("failed to list operations", e)),
            Err(_) => {
                return Err(Error::Timeout {
                    doing: "failed to list operations".into(),
                    after: state.timeout,
                })
            }
        };
        for name in names {
            if !seen.iter().any(|(n, _)| *n == name) {
                seen.insert((name, String::new()));
            }
        }
    }
    Ok(seen
        .into_iter()
        .filter(|(_, k)| kind.is_empty() || *k == kind)
        .collect())
}

/// `GET /api/traces/{traceID}`
async fn trace_by_id(
    State(state): State<QueryState>,
    uri: Uri,
    RawQuery(raw): RawQuery,
) -> Response {
    // as Jaeger (`UseEncodedPath`): the id is parsed as it is in the URL, still encoded
    let text = uri.path().rsplit('/').next().unwrap_or("");
    let id = match params::parse_trace_id(text) {
        Ok(id) => id,
        Err(msg) => return bad_request(msg),
    };
    let raw = match params::check_trace_params(&Form::parse(raw.as_deref())) {
        Ok(raw) => raw,
        Err(msg) => return bad_request(msg),
    };
    let Ok(trace_id) = TraceId::from_bytes(&id) else {
        // the all-zero id: no span can have it
        return fail(StatusCode::NOT_FOUND, "trace not found");
    };
    match fetch_trace(state.store.as_ref(), trace_id, state.timeout).await {
        Ok(trace) => traces_answer(vec![trace], Json::Null, !raw).await,
        Err(e) => from_error(e),
    }
}

/// `GET /api/traces?service=&operation=&tags=&tag=&minDuration=&maxDuration=&start=&end=&limit=`
/// or `?traceID=…&traceID=…`.
async fn search(State(state): State<QueryState>, RawQuery(raw): RawQuery) -> Response {
    let form = Form::parse(raw.as_deref());
    let search = match params::parse_search(&form, now_nanos()) {
        Ok(search) => search,
        Err(msg) => return bad_request(msg),
    };
    if !search.trace_ids.is_empty() {
        return traces_by_ids(&state, &search).await;
    }
    match find_traces(&state, &search).await {
        Ok(found) => traces_answer(found, Json::Null, !search.raw).await,
        Err(e) => from_error(e),
    }
}

/// The traces of a search, newest first: at most `search.limit` (below 1: the default,
/// above [`MAX_LIMIT`]: cut to it) traces in which one span satisfies every condition.
pub async fn find_traces(
    state: &QueryState,
    search: &TraceSearch,
) -> Result<Vec<StoredTrace>, Error> {
    let limit = if search.limit < 1 {
        params::DEFAULT_LIMIT as usize
    } else {
        (search.limit as usize).min(MAX_LIMIT)
    };
    let Some(query) = index_query(search, state.indexed.as_deref()) else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    scan(state, &query, limit, |trace| {
        if trace.spans.iter().any(|s| span_matches(s, search)) {
            found.push(trace);
        }
        found.len() < limit
    })
    .await?;
    Ok(found)
}

async fn traces_by_ids(state: &QueryState, search: &TraceSearch) -> Response {
    let mut ids = Vec::new();
    let mut errors = Vec::new();
    for (text, bytes) in &search.trace_ids {
        match TraceId::from_bytes(bytes) {
            Ok(id) => ids.push((text.clone(), id)),
            Err(_) => errors.push(not_found_entry(bytes)),
        }
    }
    let wanted: Vec<TraceId> = ids.iter().map(|(_, id)| *id).collect();
    let traces = match fetch_traces(state.store.as_ref(), &wanted, state.timeout).await {
        Ok(traces) => traces,
        Err(e) => return from_error(e),
    };
    for (_, id) in &ids {
        if !traces.iter().any(|t| t.trace_id == *id) {
            errors.push(not_found_entry(id.as_bytes()));
        }
    }
    let errors = list_or_null(errors);
    traces_answer(traces, errors, !search.raw).await
}

fn not_found_entry(id: &[u8]) -> Json {
    json!({"msg": "trace not found", "traceID": translate::trace_id_text(id)})
}

/// The index query whose answer holds every trace Jaeger would find; `None` when no trace
/// can match (an empty time range, a negative maximum duration).
fn index_query(search: &TraceSearch, indexed: Option<&crate::Indexed>) -> Option<TraceQuery> {
    if search.start_min_nanos > search.start_max_nanos || search.max_duration_nanos < 0 {
        return None;
    }
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let mut query = TraceQuery {
        service: non_empty(&search.service),
        operation: non_empty(&search.operation),
        errors_only: search.tags.get("error").map(String::as_str) == Some("true"),
        min_duration_nanos: (search.min_duration_nanos > 0)
            .then_some(search.min_duration_nanos as u64),
        max_duration_nanos: (search.max_duration_nanos > 0)
            .then_some(search.max_duration_nanos as u64),
        start_min_unix_nano: Some(search.start_min_nanos.max(0) as u64),
        start_max_unix_nano: Some((search.start_max_nanos.max(0) as u64).saturating_add(1)),
        ..Default::default()
    };
    if let Some(indexed) = indexed {
        for (key, value) in &search.tags {
            if indexed.business_keys.contains(key) {
                query.business_keys.push((key.clone(), value.clone()));
            } else if key != "error"
                // arrays and maps have no index term (Jaeger compares their JSON text):
                // such tags are left to `span_matches` over what the other conditions find
                && !value.starts_with(['[', '{'])
                && indexed.attributes.covers(key, value)
            {
                query.attributes.push((key.clone(), value.clone()));
            }
        }
    }
    if !query.business_keys.is_empty() {
        // A business key names a handful of traces: asking the index for the key alone
        // is the native key lookup, and intersecting it with the service's (large) set of
        // spans only costs time. `span_matches` still applies every condition.
        query.service = None;
        query.operation = None;
    }
    Some(query)
}

/// Jaeger's rule: this one span satisfies every condition of the search.
fn span_matches(span: &Span, search: &TraceSearch) -> bool {
    if !search.service.is_empty() && span.service_name != search.service {
        return false;
    }
    if let Some(error) = search.tags.get("error") {
        let is_error = span.status_code == clew_proto::StatusCode::Error;
        if is_error != (error == "true") {
            return false;
        }
    }
    if !search.operation.is_empty() && span.name != search.operation {
        return false;
    }
    let start = span.start_unix_nano as i128;
    if start < search.start_min_nanos as i128 || start > search.start_max_nanos as i128 {
        return false;
    }
    let duration = span.duration_nanos() as i128;
    if search.min_duration_nanos != 0 && duration < search.min_duration_nanos as i128 {
        return false;
    }
    if search.max_duration_nanos != 0 && duration > search.max_duration_nanos as i128 {
        return false;
    }
    search
        .tags
        .iter()
        .filter(|(key, _)| *key != "error")
        .all(|(key, value)| has_attribute(span, key, value))
}

/// The tag matches a span, scope, resource or event attribute, compared as text.
fn has_attribute(span: &Span, key: &str, value: &str) -> bool {
    let matches = |attrs: &[clew_proto::model::KeyValue]| {
        attrs.iter().find(|kv| kv.key == key).is_some_and(|kv| {
            kv.value
                .as_ref()
                .map(translate::as_string)
                .unwrap_or_default()
                == value
        })
    };
    matches(&span.attributes)
        || matches(&span.scope.attributes)
        || matches(&span.resource.attributes)
        || span.events.iter().any(|e| matches(&e.attributes))
}

/// Reads the traces `query` finds, newest first, a page at a time (the first of
/// `first_page` traces, each next one twice as big, up to [`MAX_LIMIT`]), handing each to
/// `visit` until it returns false or [`SCAN_BUDGET`] traces were read. A search whose
/// conditions the index answers exactly reads no more traces than it returns.
async fn scan(
    state: &QueryState,
    query: &TraceQuery,
    first_page: usize,
    mut visit: impl FnMut(StoredTrace) -> bool,
) -> Result<(), Error> {
    let mut query = query.clone();
    query.limit = first_page.clamp(1, MAX_LIMIT);
    let mut read = 0;
    loop {
        let page = find_trace_ids(state.index.as_ref(), &query, state.timeout).await?;
        let ids: Vec<TraceId> = page.hits.iter().map(|h| h.trace_id).collect();
        read += ids.len();
        for trace in fetch_traces(state.store.as_ref(), &ids, state.timeout).await? {
            if !visit(trace) {
                return Ok(());
            }
        }
        match page.next_cursor {
            Some(cursor) if read < SCAN_BUDGET && !ids.is_empty() => {
                query.cursor = Some(cursor);
                query.limit = (query.limit * 2).min(MAX_LIMIT);
            }
            _ => return Ok(()),
        }
    }
}

/// `{"data": [trace, …]}` built off the reactor (a big trace is milliseconds of CPU).
async fn traces_answer(traces: Vec<StoredTrace>, errors: Json, adjust: bool) -> Response {
    let built = tokio::task::spawn_blocking(move || {
        traces
            .iter()
            .filter(|t| !t.spans.is_empty())
            .map(|t| translate::trace_json(&t.spans, adjust))
            .collect::<Vec<_>>()
    })
    .await;
    match built {
        Ok(data) => envelope(StatusCode::OK, Json::Array(data), 0, errors),
        Err(_) => fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            "failed to translate traces: the worker task failed",
        ),
    }
}

/// `GET /api/dependencies?endTs=&lookback=&service=`: parent → child service call counts
/// of the traces that started after `endTs - lookback` and ended before `endTs`, every
/// span whose parent is in the trace counting once (calls within a service included), as
/// Jaeger's memory store counts them.
async fn dependencies(State(state): State<QueryState>, RawQuery(raw): RawQuery) -> Response {
    let query = match params::parse_dependencies(&Form::parse(raw.as_deref()), now_nanos()) {
        Ok(query) => query,
        Err(msg) => return bad_request(msg),
    };
    let start = query.end_nanos.saturating_sub(query.lookback_nanos);
    if query.end_nanos < start {
        return fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            "end time must be greater than start time",
        );
    }
    let links = match dependency_links(&state, start, query.end_nanos).await {
        Ok(links) => links,
        Err(e) => return from_error(e),
    };
    let data: Vec<Json> = links
        .into_iter()
        .filter(|((parent, child), _)| {
            query.service.is_empty() || *parent == query.service || *child == query.service
        })
        .map(|((parent, child), calls)| json!({"parent": parent, "child": child, "callCount": calls}))
        .collect();
    ok(Json::Array(data), 0)
}

/// `(parent service, child service) → calls` of the traces that started after `start`
/// and ended before `end` (unix nanoseconds), every span whose parent is in the trace
/// counting once (calls within a service included), as Jaeger's memory store counts them.
pub async fn dependency_links(
    state: &QueryState,
    start: i64,
    end: i64,
) -> Result<BTreeMap<(String, String), u64>, Error> {
    let index_query = TraceQuery {
        start_min_unix_nano: Some(start.max(0) as u64),
        start_max_unix_nano: Some(end.max(0) as u64),
        ..Default::default()
    };
    let mut links: BTreeMap<(String, String), u64> = BTreeMap::new();
    scan(state, &index_query, MAX_LIMIT, |trace| {
        let first = trace.spans.iter().map(|s| s.start_unix_nano).min();
        let last = trace.spans.iter().map(|s| s.end_unix_nano).max();
        let (Some(first), Some(last)) = (first, last) else {
            return true;
        };
        if (first as i128) <= start as i128 || (last as i128) >= end as i128 {
            return true;
        }
        let mut service_of: HashMap<_, String> = HashMap::new();
        for span in &trace.spans {
            service_of
                .entry(span.span_id)
                .or_insert_with(|| span.service_name.clone());
        }
        for span in &trace.spans {
            let Some(parent) = span.parent_span_id.and_then(|p| service_of.get(&p)) else {
                continue;
            };
            *links
                .entry((parent.clone(), span.service_name.clone()))
                .or_default() += 1;
        }
        true
    })
    .await?;
    Ok(links)
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clew_store::conformance::fixtures::{checkout_trace, trace_id, BASE_TIME};

    fn search(q: &str) -> TraceSearch {
        params::parse_search(&Form::parse(Some(q)), BASE_TIME as i64 + 1_000_000_000_000).unwrap()
    }

    #[test]
    fn one_span_must_satisfy_every_condition() {
        let spans = checkout_trace(trace_id(1), "1", BASE_TIME, true);
        let root = &spans[0];
        let service = translate::service_name(root);
        let q = search(&format!("service={service}&operation={}", root.name));
        assert!(spans.iter().any(|s| span_matches(s, &q)));
        // an operation of another service does not match with this service
        let other = spans
            .iter()
            .find(|s| translate::service_name(s) != service)
            .unwrap();
        let q = search(&format!("service={service}&operation={}", other.name));
        assert!(!spans.iter().any(|s| span_matches(s, &q)));
        let q = search(&format!("service={service}&tag=nope:1"));
        assert!(!spans.iter().any(|s| span_matches(s, &q)));
    }

    #[test]
    fn business_keys_and_errors_narrow_the_index_query() {
        let indexed = crate::Indexed {
            attributes: crate::IndexedAttributes::from_names(&["http.route".into()]),
            business_keys: vec!["order_id".into()],
        };
        let q = search(
            r#"service=a&tags={"order_id":"7","http.route":"/x","other":"y","error":"true"}"#,
        );
        let iq = index_query(&q, Some(&indexed)).unwrap();
        assert_eq!(
            iq.business_keys,
            [("order_id".to_string(), "7".to_string())]
        );
        assert_eq!(
            iq.attributes,
            [("http.route".to_string(), "/x".to_string())]
        );
        assert!(iq.errors_only);
        // the key alone narrows the index; the service is checked per span afterwards
        assert_eq!(iq.service, None);
        let iq = index_query(
            &search(r#"service=a&tags={"error":"true"}"#),
            Some(&indexed),
        );
        assert_eq!(iq.unwrap().service.as_deref(), Some("a"));
        assert!(index_query(&search("service=a&start=10&end=5"), None).is_none());
    }
}
