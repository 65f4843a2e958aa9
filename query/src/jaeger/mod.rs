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
//!   spans. The index is asked for exactly that, as one same-span condition
//!   (`TraceQuery::same_span`): service, operation, durations, `error=true` and every tag
//!   it has a term for (with every attribute indexed, the default, any tag up to the
//!   index's value size; otherwise business keys — `tags={"order_id":"123"}` is the native
//!   key lookup — and listed attributes), on one span in the time range. Its candidates
//!   are then checked span by span for what the index cannot say exactly: tags it has no
//!   term for (lists and maps, longer values, doubles Go writes with an exponent),
//!   `error=false`, and `error=true` meaning status ERROR where the index's error flag
//!   also counts exception events. Candidates are read page by page until `limit` traces
//!   match or [`SCAN_BUDGET`] candidates were read; usually the first page is the answer.
//! - Deliberate differences from Jaeger v2's memory store (see `tests/jaeger_compat.rs`):
//!   `error=true` finds spans with status ERROR and `error=false` the others (Jaeger's
//!   memory store reads the text `"true"` as a boolean, gets false, and finds spans with
//!   status OK for either); results are newest
//!   first by start time (the memory store answers most recently *received* first); a
//!   `limit` below 1 means the default (the memory store answers 500) and one above
//!   clew's `MAX_LIMIT` (1000) is cut to it; error bodies are
//!   sent as `application/json` (Go's `http.Error` labels the same JSON `text/plain`);
//!   a tag the index has a term for is only found where the index holds it: with every
//!   attribute indexed, not on a span with more than 128 attribute terms beyond them
//!   (`span_doc::MAX_ATTRIBUTE_TERMS_PER_SPAN`) nor on a bytes attribute; with listed
//!   attributes and business keys, on the span's own attribute, else its resource's (not
//!   its scope's or events', and a resource value under a different span value is not
//!   found).
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
use clew_proto::{Span, Tenant, TraceId};
use clew_store::trace_index::span_doc::{IndexedAttributes, MAX_TERM_BYTES};
use clew_store::trace_index::MAX_LIMIT;
use clew_store::{SpanConditions, StoredTrace, TraceQuery};
use serde_json::{json, Value as Json};

use crate::auth::Caller;
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

/// Whether `path` is one of Jaeger's (`/api/…` but not clew's own `/api/v1/…`), whose
/// errors come in Jaeger's envelope.
pub fn is_jaeger_path(path: &str) -> bool {
    path.starts_with("/api/") && !path.starts_with("/api/v1/")
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
async fn services(State(state): State<QueryState>, Caller(tenant): Caller) -> Response {
    let doing = "failed to list services from the trace index";
    match tokio::time::timeout(state.timeout, state.index.services(&tenant)).await {
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
async fn operations_legacy(
    State(state): State<QueryState>,
    Caller(tenant): Caller,
    uri: Uri,
) -> Response {
    // as Jaeger: the raw path segment, query-unescaped (`+` is a space), "" if malformed
    let raw = uri.path().rsplit('/').nth(1).unwrap_or("");
    let service = params::go_query_unescape(raw).unwrap_or_default();
    let doing = "failed to list operations from the trace index";
    match tokio::time::timeout(state.timeout, state.index.operations(&tenant, &service)).await {
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
async fn operations(
    State(state): State<QueryState>,
    Caller(tenant): Caller,
    RawQuery(raw): RawQuery,
) -> Response {
    let form = Form::parse(raw.as_deref());
    let service = form.value("service").to_string();
    if service.is_empty() {
        return bad_request("parameter 'service' is required");
    }
    let kind = form.value("spanKind").to_string();
    match list_operations(&state, &tenant, &service, &kind).await {
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
    tenant: &Tenant,
    service: &str,
    kind: &str,
) -> Result<Vec<(String, String)>, Error> {
    let query = TraceQuery {
        service: Some(service.to_string()),
        ..Default::default()
    };
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    scan(state, tenant, &query, MAX_LIMIT, |trace| {
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
        let names = match tokio::time::timeout(
            state.timeout,
            state.index.operations(tenant, service),
        )
        .await
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
    Caller(tenant): Caller,
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
    match fetch_trace(state.store.as_ref(), &tenant, trace_id, state.timeout).await {
        Ok(trace) => traces_answer(vec![trace], Json::Null, !raw).await,
        Err(e) => from_error(e),
    }
}

/// `GET /api/traces?service=&operation=&tags=&tag=&minDuration=&maxDuration=&start=&end=&limit=`
/// or `?traceID=…&traceID=…`.
async fn search(
    State(state): State<QueryState>,
    Caller(tenant): Caller,
    RawQuery(raw): RawQuery,
) -> Response {
    let form = Form::parse(raw.as_deref());
    let search = match params::parse_search(&form, now_nanos()) {
        Ok(search) => search,
        Err(msg) => return bad_request(msg),
    };
    if !search.trace_ids.is_empty() {
        return traces_by_ids(&state, &tenant, &search).await;
    }
    match find_traces(&state, &tenant, &search).await {
        Ok(found) => traces_answer(found, Json::Null, !search.raw).await,
        Err(e) => from_error(e),
    }
}

/// The traces of a search, newest first: at most `search.limit` (below 1: the default,
/// above [`MAX_LIMIT`]: cut to it) traces in which one span satisfies every condition.
pub async fn find_traces(
    state: &QueryState,
    tenant: &Tenant,
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
    scan(state, tenant, &query, limit, |trace| {
        if trace.spans.iter().any(|s| span_matches(s, search)) {
            found.push(trace);
        }
        found.len() < limit
    })
    .await?;
    Ok(found)
}

async fn traces_by_ids(state: &QueryState, tenant: &Tenant, search: &TraceSearch) -> Response {
    let mut ids = Vec::new();
    let mut errors = Vec::new();
    for (text, bytes) in &search.trace_ids {
        match TraceId::from_bytes(bytes) {
            Ok(id) => ids.push((text.clone(), id)),
            Err(_) => errors.push(not_found_entry(bytes)),
        }
    }
    let wanted: Vec<TraceId> = ids.iter().map(|(_, id)| *id).collect();
    let traces = match fetch_traces(state.store.as_ref(), tenant, &wanted, state.timeout).await {
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
///
/// Jaeger's rule is one span for everything, so everything the index can hold goes into
/// one same-span entry: service, operation, `error=true`, the durations and each tag the
/// index has a term for; the time range applies to that span too. With every attribute
/// indexed a tag is the span's attribute term (its own, resource, scope and event
/// attributes, as Jaeger looks); otherwise a business key, or a listed attribute. What the
/// index has no term for is left to [`span_matches`], which checks every condition of the
/// candidates exactly.
fn index_query(search: &TraceSearch, indexed: Option<&crate::Indexed>) -> Option<TraceQuery> {
    if search.start_min_nanos > search.start_max_nanos || search.max_duration_nanos < 0 {
        return None;
    }
    // Names longer than the index keeps are cut there: leave them to `span_matches`.
    let name = |s: &str| (!s.is_empty() && s.len() <= MAX_TERM_BYTES).then(|| s.to_string());
    let mut span = SpanConditions {
        service: name(&search.service),
        operation: name(&search.operation),
        errors_only: search.tags.get("error").map(String::as_str) == Some("true"),
        min_duration_nanos: (search.min_duration_nanos > 0)
            .then_some(search.min_duration_nanos as u64),
        max_duration_nanos: (search.max_duration_nanos > 0)
            .then_some(search.max_duration_nanos as u64),
        ..Default::default()
    };
    if let Some(indexed) = indexed {
        let every_attribute = indexed.attributes == IndexedAttributes::All;
        for (key, value) in &search.tags {
            if key == "error"
                // arrays and maps have no index term (Jaeger compares their JSON text)
                || value.starts_with(['[', '{'])
                || double_text_differs(value)
            {
                continue;
            }
            let attribute = indexed.attributes.covers(key, value);
            if every_attribute && attribute {
                span.attributes.push((key.clone(), value.clone()));
            } else if indexed.business_keys.contains(key) {
                span.business_keys.push((key.clone(), value.clone()));
            } else if attribute {
                span.attributes.push((key.clone(), value.clone()));
            }
        }
    }
    Some(TraceQuery {
        start_min_unix_nano: Some(search.start_min_nanos.max(0) as u64),
        start_max_unix_nano: Some((search.start_max_nanos.max(0) as u64).saturating_add(1)),
        same_span: vec![span],
        ..Default::default()
    })
}

/// Whether a double attribute Jaeger writes as `value` (Go's text: `1e+21`) is indexed
/// under another text (Rust's: `1000000000000000000000`), so its term would miss it.
fn double_text_differs(value: &str) -> bool {
    value
        .parse::<f64>()
        .is_ok_and(|f| clew_proto::go_json::float(f) == value && f.to_string() != value)
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
    tenant: &Tenant,
    query: &TraceQuery,
    first_page: usize,
    mut visit: impl FnMut(StoredTrace) -> bool,
) -> Result<(), Error> {
    let mut query = query.clone();
    query.limit = first_page.clamp(1, MAX_LIMIT);
    let mut read = 0;
    loop {
        let page = find_trace_ids(state.index.as_ref(), tenant, &query, state.timeout).await?;
        let ids: Vec<TraceId> = page.hits.iter().map(|h| h.trace_id).collect();
        read += ids.len();
        for trace in fetch_traces(state.store.as_ref(), tenant, &ids, state.timeout).await? {
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

/// `{"data": [trace, …]}` built off the reactor (a big trace is milliseconds of CPU),
/// each trace serialized straight from its translation.
async fn traces_answer(traces: Vec<StoredTrace>, errors: Json, adjust: bool) -> Response {
    let built = tokio::task::spawn_blocking(move || {
        let data: Vec<translate::TraceOut<'_>> = traces
            .iter()
            .filter(|t| !t.spans.is_empty())
            .map(|t| translate::trace_out(&t.spans, adjust))
            .collect();
        serde_json::to_vec(&Envelope {
            data,
            errors,
            limit: 0,
            offset: 0,
            total: 0,
        })
    })
    .await;
    match built {
        Ok(Ok(body)) => {
            let mut response = (StatusCode::OK, body).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Ok(Err(e)) => fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to write traces: {e}"),
        ),
        Err(_) => fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            "failed to translate traces: the worker task failed",
        ),
    }
}

/// Jaeger's envelope, fields in the order [`envelope`] writes them.
#[derive(serde::Serialize)]
struct Envelope<D> {
    data: D,
    errors: Json,
    limit: u8,
    offset: u8,
    total: usize,
}

/// `GET /api/dependencies?endTs=&lookback=&service=`: parent → child service call counts
/// of the traces that started after `endTs - lookback` and ended before `endTs`, every
/// span whose parent is in the trace counting once (calls within a service included), as
/// Jaeger's memory store counts them.
async fn dependencies(
    State(state): State<QueryState>,
    Caller(tenant): Caller,
    RawQuery(raw): RawQuery,
) -> Response {
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
    let links = match dependency_links(&state, &tenant, start, query.end_nanos).await {
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
    tenant: &Tenant,
    start: i64,
    end: i64,
) -> Result<BTreeMap<(String, String), u64>, Error> {
    let index_query = TraceQuery {
        start_min_unix_nano: Some(start.max(0) as u64),
        start_max_unix_nano: Some(end.max(0) as u64),
        ..Default::default()
    };
    let mut links: BTreeMap<(String, String), u64> = BTreeMap::new();
    scan(state, tenant, &index_query, MAX_LIMIT, |trace| {
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
    fn every_condition_the_index_holds_is_asked_on_one_span() {
        let listed = crate::Indexed {
            attributes: crate::IndexedAttributes::from_names(&["http.route".into()]),
            business_keys: vec!["order_id".into()],
        };
        let q = search(
            r#"service=a&operation=b&minDuration=1ms&tags={"order_id":"7","http.route":"/x","other":"y","error":"true","big":"1e%2B21","list":"[1]"}"#,
        );
        let iq = index_query(&q, Some(&listed)).unwrap();
        assert_eq!(iq.same_span.len(), 1, "{iq:?}");
        let span = &iq.same_span[0];
        assert_eq!(
            (span.service.as_deref(), span.operation.as_deref()),
            (Some("a"), Some("b"))
        );
        assert!(span.errors_only);
        assert_eq!(span.min_duration_nanos, Some(1_000_000));
        assert_eq!(
            span.business_keys,
            [("order_id".to_string(), "7".to_string())]
        );
        assert_eq!(
            span.attributes,
            [("http.route".to_string(), "/x".to_string())],
            "unlisted tags are checked on the candidates"
        );
        assert!(iq.service.is_none() && iq.business_keys.is_empty() && !iq.errors_only);

        let all = crate::Indexed {
            attributes: crate::IndexedAttributes::All,
            business_keys: vec!["order_id".into()],
        };
        let iq = index_query(&q, Some(&all)).unwrap();
        let span = &iq.same_span[0];
        assert!(span.business_keys.is_empty());
        let names: Vec<&str> = span.attributes.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            ["http.route", "order_id", "other"],
            "every attribute is a term; Go's double text, lists and maps are not"
        );

        let long = format!("service={}", "s".repeat(MAX_TERM_BYTES + 1));
        assert!(index_query(&search(&long), None).unwrap().same_span[0]
            .service
            .is_none());
        assert!(index_query(&search("service=a&start=10&end=5"), None).is_none());
        assert!(double_text_differs("1e+21") && !double_text_differs("0.5"));
        assert!(!double_text_differs("12345") && !double_text_differs("A-1"));
    }
}
