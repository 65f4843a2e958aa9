//! The HTTP endpoints. Each handler reads top to bottom as the query flow:
//!
//! ```text
//!  parse + validate (params) ─▶ find trace ids (index) ─▶ fetch traces (store) ─▶ assemble ─▶ JSON
//! ```
//!
//! Errors are returned as [`Error`] and become HTTP answers in `error.rs` only.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use clew_proto::{IdError, TraceId};
use clew_store::StoredTrace;
use serde::Serialize;

use crate::assemble;
use crate::auth::{Caller, MetricsCaller};
use crate::dependencies;
use crate::error::{Error, Result};
use crate::fetch_traces::{fetch_trace, fetch_traces};
use crate::find_trace_ids::find_trace_ids;
use crate::json::{OperationsJson, ServicesJson, SummaryJson, TraceJson, TracesPage};
use crate::params::{self, shorten, ErrorFilter};
use crate::QueryState;

/// The UI: one HTML page per view, all scripts and styles same-origin files (the CSP
/// forbids inline script and inline style), embedded in the binary.
mod ui {
    pub const SEARCH: &str = include_str!("ui/search.html");
    pub const TRACE: &str = include_str!("ui/trace.html");
    pub const KEYS: &str = include_str!("ui/keys.html");
    pub const MAP: &str = include_str!("ui/map.html");
    pub const ALERTS: &str = include_str!("ui/alerts.html");
    pub const SERVICE: &str = include_str!("ui/service.html");
    pub const INVENTORY: &str = include_str!("ui/inventory.html");
    /// `/ui/{name}` → (content type, body).
    pub const ASSETS: &[(&str, &str, &str)] = &[
        (
            "app.css",
            "text/css; charset=utf-8",
            include_str!("ui/app.css"),
        ),
        (
            "common.js",
            "text/javascript; charset=utf-8",
            include_str!("ui/common.js"),
        ),
        (
            "search.js",
            "text/javascript; charset=utf-8",
            include_str!("ui/search.js"),
        ),
        (
            "trace.js",
            "text/javascript; charset=utf-8",
            include_str!("ui/trace.js"),
        ),
        (
            "keys.js",
            "text/javascript; charset=utf-8",
            include_str!("ui/keys.js"),
        ),
        (
            "map.js",
            "text/javascript; charset=utf-8",
            include_str!("ui/map.js"),
        ),
        (
            "alerts.js",
            "text/javascript; charset=utf-8",
            include_str!("ui/alerts.js"),
        ),
        (
            "service.js",
            "text/javascript; charset=utf-8",
            include_str!("ui/service.js"),
        ),
        (
            "inventory.js",
            "text/javascript; charset=utf-8",
            include_str!("ui/inventory.js"),
        ),
        (
            "favicon.svg",
            "image/svg+xml",
            include_str!("ui/favicon.svg"),
        ),
    ];
}

/// `GET /api/v1/traces/{trace_id}`
pub async fn trace_by_id(
    State(state): State<QueryState>,
    Caller(tenant): Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response> {
    let Path(raw_id) = path.map_err(path_error)?;
    let trace_id = parse_trace_id(&raw_id)?;
    let trace = fetch_trace(state.store.as_ref(), &tenant, trace_id, state.timeout).await?;
    json_off_reactor("failed to assemble trace", move || TraceJson::new(&trace)).await
}

/// `GET /api/v1/search?…`
pub async fn search(
    State(state): State<QueryState>,
    Caller(tenant): Caller,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let mut params = params::parse_search(raw.as_deref(), now_unix_nano())?;
    if let Some(indexed) = &state.indexed {
        params::check_attributes(&mut params.query, indexed)?;
    }
    let page = find_trace_ids(state.index.as_ref(), &tenant, &params.query, state.timeout).await?;
    let ids: Vec<TraceId> = page.hits.iter().map(|hit| hit.trace_id).collect();
    let mut traces = fetch_traces(state.store.as_ref(), &tenant, &ids, state.timeout).await?;
    if params.errors == ErrorFilter::WithoutErrors {
        traces.retain(|t| !t.spans.iter().any(|s| s.is_error()));
    }
    let next_cursor = page.next_cursor;
    json_off_reactor("failed to summarise traces", move || TracesPage {
        traces: summaries(&traces),
        next_cursor,
    })
    .await
}

/// `GET /api/v1/keys/{name}/{value}?full=…`
pub async fn key_lookup(
    State(state): State<QueryState>,
    Caller(tenant): Caller,
    path: Result<Path<(String, String)>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let Path((name, value)) = path.map_err(path_error)?;
    let params = params::parse_key_lookup(&name, &value, raw.as_deref(), now_unix_nano())?;
    let page = find_trace_ids(state.index.as_ref(), &tenant, &params.query, state.timeout).await?;
    let ids: Vec<TraceId> = page.hits.iter().map(|hit| hit.trace_id).collect();
    let traces = fetch_traces(state.store.as_ref(), &tenant, &ids, state.timeout).await?;
    let next_cursor = page.next_cursor;
    if params.full {
        json_off_reactor("failed to assemble traces", move || TracesPage {
            traces: traces.iter().map(TraceJson::new).collect(),
            next_cursor,
        })
        .await
    } else {
        json_off_reactor("failed to summarise traces", move || TracesPage {
            traces: summaries(&traces),
            next_cursor,
        })
        .await
    }
}

/// `GET /api/v1/services`
pub async fn services(
    State(state): State<QueryState>,
    Caller(tenant): Caller,
) -> Result<Json<ServicesJson>> {
    let doing = "failed to list services from the trace index";
    let services = tokio::time::timeout(state.timeout, state.index.services(&tenant))
        .await
        .map_err(|_| Error::Timeout {
            doing: doing.into(),
            after: state.timeout,
        })?
        .map_err(|e| Error::backend(doing, e))?;
    Ok(Json(ServicesJson { services }))
}

/// `GET /api/v1/services/{service}/operations`
pub async fn operations(
    State(state): State<QueryState>,
    Caller(tenant): Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<OperationsJson>> {
    let Path(service) = path.map_err(path_error)?;
    let doing = || {
        format!(
            "failed to list operations of service `{}` from the trace index",
            shorten(&service)
        )
    };
    let operations = tokio::time::timeout(state.timeout, state.index.operations(&tenant, &service))
        .await
        .map_err(|_| Error::Timeout {
            doing: doing(),
            after: state.timeout,
        })?
        .map_err(|e| Error::backend(doing(), e))?;
    Ok(Json(OperationsJson { operations }))
}

/// `GET /api/v1/services/{service}/red`: the service's last hour, one point per minute
/// (calls, errors, p50/p99 of its server and consumer spans), from the caller's tenant's
/// span metrics.
pub async fn service_red(
    State(state): State<QueryState>,
    Caller(tenant): Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<RedJson>> {
    let Path(service) = path.map_err(path_error)?;
    let Some(red) = &state.service_red else {
        return Err(Error::NotFound(
            "span metrics are disabled ([span_metrics] enabled = false): no per-service history"
                .into(),
        ));
    };
    let Some(points) = red(&tenant, &service) else {
        return Err(Error::NotFound(format!(
            "no stored span of this tenant names service `{}` since clew started",
            shorten(&service)
        )));
    };
    Ok(Json(RedJson {
        service,
        step_seconds: 60,
        points,
    }))
}

#[derive(Serialize)]
pub struct RedJson {
    service: String,
    step_seconds: u64,
    points: Vec<crate::RedPoint>,
}

/// `GET /healthz`: the process is up and its store and index can serve again, if not now
/// then once what they depend on is back. 503 when one of them cannot without a restart
/// (an embedded store that refuses every write since one failed): the supervisor's cue.
pub async fn healthz(State(state): State<QueryState>) -> Result<&'static str> {
    if let Some(why) = state.store.broken().or_else(|| state.index.broken()) {
        return Err(Error::Unhealthy(why));
    }
    Ok("ok")
}

/// `GET /readyz`: the store and the index can serve. The body is `ok`, followed by one
/// `degraded: …` line per damaged part the store or the index quarantined at open (it
/// serves everything else, so it is ready).
pub async fn readyz(State(state): State<QueryState>) -> Result<String> {
    let not_ready =
        |what: &str, why: String| Error::NotReady(format!("{what} is not ready: {why}"));
    match tokio::time::timeout(state.timeout, state.store.ready()).await {
        Err(_) => return Err(not_ready("span store", "readiness check timed out".into())),
        Ok(Err(e)) => return Err(not_ready("span store", e.to_string())),
        Ok(Ok(())) => {}
    }
    match tokio::time::timeout(state.timeout, state.index.ready()).await {
        Err(_) => return Err(not_ready("trace index", "readiness check timed out".into())),
        Ok(Err(e)) => return Err(not_ready("trace index", e.to_string())),
        Ok(Ok(())) => {}
    }
    let mut body = String::from("ok");
    for damage in state.store.damage().into_iter().chain(state.index.damage()) {
        body.push_str("\ndegraded: ");
        body.push_str(&damage.to_string());
    }
    Ok(body)
}

/// `POST /api/v1/purge` (only with `--enable-purge-for-tests`): deletes every stored
/// trace, by expiring every bucket of the store and every partition of the index at once
/// (retention with "now" at the end of time). For storage conformance suites that need an
/// empty backend before each case. The answer closes the connection: a suite calls it once
/// per case, and a kept-alive connection would outlive the suite's client (Jaeger's
/// integration tests check for leaked goroutines at the end).
pub async fn purge(State(state): State<QueryState>) -> Result<Response> {
    tracing::warn!("purging every stored trace (--enable-purge-for-tests)");
    let doing = "failed to purge";
    let end_of_time = u64::MAX;
    let timeout = state.timeout * 3;
    let purged = async {
        state.index.drop_expired(end_of_time).await?;
        state.store.drop_expired(end_of_time).await?;
        state.index.refresh().await
    };
    match tokio::time::timeout(timeout, purged).await {
        Err(_) => Err(Error::Timeout {
            doing: doing.into(),
            after: timeout,
        }),
        Ok(Err(e)) => Err(Error::backend(doing, e)),
        Ok(Ok(())) => Ok(([(header::CONNECTION, "close")], "purged").into_response()),
    }
}

/// `GET /metrics`: Prometheus text, rendered by whatever the binary installed; a caller
/// without the `admin` scope gets its own tenant's span-metric series only, and no sample
/// of any family labelled with another tenant.
pub async fn metrics(
    State(state): State<QueryState>,
    MetricsCaller(only): MetricsCaller,
) -> Response {
    let render = state.metrics_render.clone();
    let text = tokio::task::spawn_blocking(move || {
        let text = render(only.as_ref());
        match &only {
            Some(tenant) => without_other_tenants(&text, tenant.as_str()),
            None => text,
        }
    })
    .await;
    match text {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => Error::Worker {
            doing: "failed to render metrics",
        }
        .into_response(),
    }
}

/// `text` (Prometheus exposition) without the samples labelled `tenant="<another>"`. In
/// the text format a label value's `"` is escaped, so `{tenant="` or `,tenant="` can only
/// start a label, never sit inside a value.
pub fn without_other_tenants(text: &str, tenant: &str) -> String {
    let own = format!("tenant=\"{tenant}\"");
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let labelled = ["{tenant=\"", ",tenant=\""]
            .iter()
            .filter_map(|p| line.find(p).map(|at| at + 1))
            .min();
        let other = labelled.is_some_and(|at| !line[at..].starts_with(&own));
        if !other {
            out.push_str(line);
        }
    }
    out
}

/// `GET /`: the search page.
pub async fn search_page() -> Html<&'static str> {
    Html(ui::SEARCH)
}

/// `GET /trace/{trace_id}`: the trace page. It is served for any id: the page's script
/// checks the id and the API answers a malformed one with a 400 that the page shows (the
/// HTML is static, so nothing from the path is ever reflected into it).
pub async fn trace_page() -> Html<&'static str> {
    Html(ui::TRACE)
}

/// `GET /keys/{name}/{value}`: every trace of a business key, as a timeline.
pub async fn keys_page() -> Html<&'static str> {
    Html(ui::KEYS)
}

/// `GET /map`: the service map.
pub async fn map_page() -> Html<&'static str> {
    Html(ui::MAP)
}

/// `GET /alerts`: the alert board.
pub async fn alerts_page() -> Html<&'static str> {
    Html(ui::ALERTS)
}

/// `GET /api/v1/alerts`: the caller's tenant's firing and recently resolved alerts,
/// newest first, as the process's alert evaluation has them (`{"enabled": false,
/// "alerts": []}` where none runs, as on a query-only node).
pub async fn alerts(State(state): State<QueryState>, Caller(tenant): Caller) -> Result<Response> {
    let Some(render) = state.alerts.clone() else {
        return Ok(
            Json(serde_json::json!({"enabled": false, "rules": [], "alerts": []})).into_response(),
        );
    };
    json_off_reactor("failed to render the alert board", move || render(&tenant)).await
}

/// `GET /inventory`: the fleet inventory page.
pub async fn inventory_page() -> Html<&'static str> {
    Html(ui::INVENTORY)
}

/// `GET /api/v1/inventory?service=&sdk=&version=&quiet_for=`: the caller's tenant's
/// services and instances that send spans (`{"enabled": false, "services": []}` where this process keeps no
/// inventory, as on a query-only node or with `[inventory] enabled = false`).
pub async fn inventory(
    State(state): State<QueryState>,
    Caller(tenant): Caller,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let query = params::parse_inventory(raw.as_deref())?;
    let Some(render) = state.inventory.clone() else {
        return Ok(Json(serde_json::json!({"enabled": false, "services": []})).into_response());
    };
    json_off_reactor("failed to render the inventory", move || {
        render(&tenant, &query)
    })
    .await
}

/// `GET /services/{service}`: the service page (RED charts); `service.js` reads the name
/// from the URL.
pub async fn service_page() -> Html<&'static str> {
    Html(ui::SERVICE)
}

/// `GET /ui/{name}`: the UI's scripts, stylesheet and icon.
pub async fn ui_asset(path: Result<Path<String>, PathRejection>) -> Result<Response> {
    let Path(name) = path.map_err(path_error)?;
    let Some((_, content_type, body)) = ui::ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return Err(Error::NotFound(format!("no UI asset `{}`", shorten(&name))));
    };
    Ok((
        [
            (header::CONTENT_TYPE, *content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        *body,
    )
        .into_response())
}

/// `GET /api/v1/dependencies?start=&end=|lookback=&limit=`: service → service call counts
/// from the newest `limit` traces of the range (see [`crate::dependencies`]).
pub async fn dependencies(
    State(state): State<QueryState>,
    Caller(tenant): Caller,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let query = dependencies::parse(raw.as_deref(), now_unix_nano())?;
    let page = find_trace_ids(state.index.as_ref(), &tenant, &query, state.timeout).await?;
    let ids: Vec<TraceId> = page.hits.iter().map(|hit| hit.trace_id).collect();
    let traces = fetch_traces(state.store.as_ref(), &tenant, &ids, state.timeout).await?;
    let more_traces = page.next_cursor.is_some();
    json_off_reactor("failed to compute service dependencies", move || {
        dependencies::dependencies(&traces, more_traces)
    })
    .await
}

/// Any path no route matches.
pub async fn no_route(method: Method, uri: Uri) -> Error {
    Error::NotFound(format!(
        "no endpoint {method} {} (see / for the list)",
        shorten(uri.path())
    ))
}

/// A known path with a method it does not serve.
pub async fn wrong_method(method: Method, uri: Uri) -> Error {
    Error::MethodNotAllowed(format!(
        "method {method} is not allowed on {} (only GET)",
        shorten(uri.path())
    ))
}

fn parse_trace_id(raw: &str) -> Result<TraceId> {
    TraceId::from_hex(raw).map_err(|e| {
        let why = match e {
            IdError::AllZeros => "the id is all zeros".to_string(),
            _ => "expected 32 hex digits (or 16 for a legacy 64-bit id)".to_string(),
        };
        Error::bad_request(format!(
            "invalid trace id `{}` in path: {why}",
            shorten(raw)
        ))
    })
}

fn path_error(rejection: PathRejection) -> Error {
    Error::bad_request(format!(
        "invalid path: {}",
        rejection.body_text().to_lowercase()
    ))
}

fn summaries(traces: &[StoredTrace]) -> Vec<SummaryJson> {
    traces
        .iter()
        .map(|t| SummaryJson::new(t, assemble::summarize(&t.spans)))
        .collect()
}

/// Builds and serialises a response body on the blocking pool: a 10,000-span trace is
/// milliseconds of CPU that must not stall the reactor.
async fn json_off_reactor<T: Serialize>(
    doing: &'static str,
    build: impl FnOnce() -> T + Send + 'static,
) -> Result<Response> {
    let bytes = tokio::task::spawn_blocking(move || serde_json::to_vec(&build()))
        .await
        .map_err(|_| Error::Worker { doing })?
        .map_err(|_| Error::Worker { doing })?;
    let mut response = (StatusCode::OK, bytes).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_id_errors_say_what_and_where() {
        let e = parse_trace_id("xyz").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid trace id `xyz` in path: expected 32 hex digits (or 16 for a legacy 64-bit id)"
        );
        let e = parse_trace_id(&"0".repeat(32)).unwrap_err();
        assert!(e.to_string().ends_with("the id is all zeros"));
        assert!(parse_trace_id(&"a".repeat(31)).is_err());
        assert!(parse_trace_id("../etc").is_err());
        assert!(parse_trace_id(&"a".repeat(16)).is_ok());
        assert!(parse_trace_id(&"A".repeat(32)).is_ok());
    }
}
