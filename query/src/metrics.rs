//! The query API's own Prometheus metrics.
//!
//! - `clew_query_requests_total{endpoint, status}`: answered requests.
//! - `clew_query_seconds{endpoint}`: time to answer.
//!
//! `endpoint` is the route template (`/api/v1/traces/{trace_id}`), never the concrete path,
//! and `status` is the numeric HTTP status: both are bounded sets.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

pub const REQUESTS_TOTAL: &str = "clew_query_requests_total";
pub const SECONDS: &str = "clew_query_seconds";

/// `endpoint` label of requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// Registers descriptions with whatever recorder the binary installed.
pub fn describe() {
    metrics::describe_counter!(REQUESTS_TOTAL, "query API requests answered, by endpoint and HTTP status");
    metrics::describe_histogram!(SECONDS, metrics::Unit::Seconds, "time to answer a query API request, by endpoint");
}

/// Middleware: counts and times every request by route template and status.
pub async fn track(request: Request, next: Next) -> Response {
    let endpoint = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let endpoint = endpoint.unwrap_or_else(|| UNMATCHED.to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(REQUESTS_TOTAL, "endpoint" => endpoint.clone(), "status" => status).increment(1);
    metrics::histogram!(SECONDS, "endpoint" => endpoint).record(started.elapsed().as_secs_f64());
    response
}
