//! Zipkin receiver: `POST /api/v2/spans` with a Zipkin v2 JSON array
//! (`application/json`) or a protobuf `ListOfSpans` (`application/x-protobuf`), optionally
//! gzip-compressed, on its own listener (`collector.zipkin_addr`, default
//! `127.0.0.1:9411`).
//!
//! The transport is OTLP/HTTP's ([`super::otlp_http`]): the body is streamed and cut off
//! at `max_request_bytes` (after decompression too), decoding runs off the reactor for
//! large bodies, and the spans go through the same [`super::export`] path, so they are
//! validated as OTLP spans and the answer comes only after the sink's `Ok`. Answers
//! follow Zipkin and the OpenTelemetry Collector's Zipkin receiver: `202 Accepted` with an
//! empty body — or, when some spans were rejected, a JSON body
//! `{"rejectedSpans": n, "errorMessage": "…"}`; errors are `text/plain` with the status of
//! [`Error::http_status`] (400 undecodable, 413 too large, 415 unknown content type,
//! 503 + `Retry-After` when overloaded). With `[auth]`, a request needs an `ingest`
//! token: 401 / 403 as `text/plain`, before the body is read.

use std::future::Future;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use tokio::net::TcpListener;

use super::{export, read_body, serve_http, Shared, INLINE_MAX_BYTES};
use crate::decode::{decompress_bounded, Compression, Format};
use crate::error::{Error, Result};
use crate::ingest::Decoded;
use crate::metrics::{self, Protocol};
use crate::zipkin;

pub const SPANS_PATH: &str = "/api/v2/spans";

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(SPANS_PATH, post(spans))
        // The limit is enforced on the streamed (and decompressed) body below.
        .layer(DefaultBodyLimit::disable())
        .layer(clew_auth::AuthLayer::http(
            shared.auth.clone(),
            "zipkin",
            clew_auth::layer::ingest_everywhere,
            clew_auth::layer::text_refusal,
        ))
        .with_state(shared)
}

/// Serves the Zipkin API on `listener` until `shutdown` resolves, then finishes in-flight
/// requests.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    serve_http("serve zipkin", listener, router(shared), shutdown).await
}

/// Decompresses (bounded) and decodes one Zipkin body into an OTLP request.
pub fn decode_body(
    body: Bytes,
    compression: Compression,
    format: Format,
    limit_bytes: usize,
) -> Result<clew_proto::otlp::collector::trace::v1::ExportTraceServiceRequest> {
    let plain = decompress_bounded(body, compression, limit_bytes)?;
    let spans = match format {
        Format::Json => zipkin::decode_json(&plain)?,
        Format::Protobuf => zipkin::decode_proto(&plain)?,
    };
    Ok(zipkin::to_otlp(spans))
}

async fn spans(
    State(shared): State<Arc<Shared>>,
    principal: Option<axum::Extension<clew_auth::Principal>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let tenant = principal.map(|p| p.0.tenant).unwrap_or_default();
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    // Zipkin clients that send no Content-Type send JSON (Zipkin's own default).
    let format = match text(header::CONTENT_TYPE) {
        None => Ok(Format::Json),
        Some(ct) => Format::from_content_type(Some(ct)),
    };
    let format = match format {
        Ok(f) => f,
        Err(e) => return refused(&shared, e),
    };
    let compression = match Compression::from_content_encoding(text(header::CONTENT_ENCODING)) {
        Ok(c) => c,
        Err(e) => return refused(&shared, e),
    };
    let limit = shared.max_request_bytes;
    let body = match read_body(&headers, body, limit).await {
        Ok(b) => b,
        Err(e) => return refused(&shared, e),
    };
    let heavy = body.len() > INLINE_MAX_BYTES
        || (compression == Compression::Gzip && body.len() > INLINE_MAX_BYTES / 8);
    match export(&shared, Protocol::Zipkin, tenant, heavy, move |_, _| {
        decode_body(body, compression, format, limit).map(Decoded::Otlp)
    })
    .await
    {
        Ok(resp) => match resp.partial_success {
            None => StatusCode::ACCEPTED.into_response(),
            Some(p) => (
                StatusCode::ACCEPTED,
                [(header::CONTENT_TYPE, "application/json")],
                serde_json::to_vec(&serde_json::json!({
                    "rejectedSpans": p.rejected_spans,
                    "errorMessage": p.error_message,
                }))
                .unwrap_or_default(),
            )
                .into_response(),
        },
        // `export` has already counted the failure.
        Err(e) => error_response(&shared, &e),
    }
}

/// A request refused before `export` saw it.
fn refused(shared: &Shared, e: Error) -> Response {
    metrics::request_failed(Protocol::Zipkin, e.reason());
    tracing::debug!(reason = e.reason(), error = %e, "zipkin request refused");
    error_response(shared, &e)
}

/// The error as text; `Retry-After` when retryable.
fn error_response(shared: &Shared, e: &Error) -> Response {
    let mut resp = (
        e.http_status(),
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        e.to_string(),
    )
        .into_response();
    if e.is_retryable() {
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            // whole seconds, rounded up
            HeaderValue::from(
                e.retry_after(shared.retry_after)
                    .as_secs_f64()
                    .ceil()
                    .max(1.0) as u64,
            ),
        );
    }
    resp
}
