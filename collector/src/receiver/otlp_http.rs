//! OTLP/HTTP receiver: `POST /v1/traces` with `application/x-protobuf` or
//! `application/json` bodies, optionally gzip-compressed; the answer uses the request's
//! content type.
//!
//! The body is streamed and cut off at `max_request_bytes` whatever Content-Length says
//! (a Content-Length over the limit is refused before reading). Errors carry an OTLP
//! `google.rpc.Status` body; retryable ones add `Retry-After`. With `[auth]`, a request
//! needs an `ingest` token (checked before the body is read): 401 / 403 with the same
//! `google.rpc.Status` body (code UNAUTHENTICATED / PERMISSION_DENIED).

use std::future::Future;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use clew_auth::{AuthError, AuthLayer};
use prost::Message;
use tokio::net::TcpListener;

use super::{export, read_body, serve_http, Shared, INLINE_MAX_BYTES};
use crate::decode::{decode_body, encode_response, Compression, Format};
use crate::error::{Error, Result};
use crate::ingest::Decoded;
use crate::metrics::{self, Protocol};

pub const TRACES_PATH: &str = "/v1/traces";

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(TRACES_PATH, post(traces))
        // The limit is enforced on the streamed (and decompressed) body below.
        .layer(DefaultBodyLimit::disable())
        .layer(AuthLayer::http(
            shared.auth.clone(),
            "otlp_http",
            clew_auth::layer::ingest_everywhere,
            auth_refusal,
        ))
        .with_state(shared)
}

/// A refusal by authentication, as a `google.rpc.Status` in the request's format.
fn auth_refusal(
    e: &AuthError,
    _path: &str,
    request: &HeaderMap,
) -> axum::http::Response<bytes::Bytes> {
    let content_type = request
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let format = Format::from_content_type(content_type).unwrap_or(Format::Json);
    let mut resp = axum::http::Response::new(status_body(e.grpc_code(), e.to_string(), format));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    resp
}

/// `google.rpc.Status` as protobuf or JSON.
fn status_body(code: i32, message: String, format: Format) -> bytes::Bytes {
    match format {
        Format::Protobuf => tonic_types::Status {
            code,
            message,
            details: Vec::new(),
        }
        .encode_to_vec()
        .into(),
        Format::Json => {
            serde_json::to_vec(&serde_json::json!({ "code": code, "message": message }))
                .unwrap_or_default()
                .into()
        }
    }
}

/// Serves OTLP/HTTP on `listener` until `shutdown` resolves, then finishes in-flight requests.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    serve_http("serve otlp http", listener, router(shared), shutdown).await
}

async fn traces(
    State(shared): State<Arc<Shared>>,
    principal: Option<axum::Extension<clew_auth::Principal>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let tenant = principal.map(|p| p.0.tenant).unwrap_or_default();
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let format = match Format::from_content_type(text(header::CONTENT_TYPE)) {
        Ok(f) => f,
        // No usable format to answer in: JSON is the readable choice.
        Err(e) => return refused(&shared, e, Format::Json),
    };
    let compression = match Compression::from_content_encoding(text(header::CONTENT_ENCODING)) {
        Ok(c) => c,
        Err(e) => return refused(&shared, e, format),
    };
    let limit = shared.max_request_bytes;
    let body = match read_body(&headers, body, limit).await {
        Ok(b) => b,
        Err(e) => return refused(&shared, e, format),
    };
    let heavy = body.len() > INLINE_MAX_BYTES
        || (compression == Compression::Gzip && body.len() > INLINE_MAX_BYTES / 8);
    match export(
        &shared,
        Protocol::Http,
        tenant,
        heavy,
        move |limits, now| {
            decode_body(body, compression, format, limit, limits, now).map(Decoded::Validated)
        },
    )
    .await
    {
        Ok(resp) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, format.content_type())],
            encode_response(&resp, format),
        )
            .into_response(),
        // `export` has already counted the failure.
        Err(e) => error_response(&shared, &e, format),
    }
}

/// A request refused before `export` saw it.
fn refused(shared: &Shared, e: Error, format: Format) -> Response {
    metrics::request_failed(Protocol::Http, e.reason());
    tracing::debug!(reason = e.reason(), error = %e, "otlp http request refused");
    error_response(shared, &e, format)
}

/// `google.rpc.Status` body in the request's format; `Retry-After` when retryable.
fn error_response(shared: &Shared, e: &Error, format: Format) -> Response {
    let body = status_body(e.grpc_code() as i32, e.to_string(), format);
    let mut resp = (
        e.http_status(),
        [(header::CONTENT_TYPE, format.content_type())],
        body,
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
