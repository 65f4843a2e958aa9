//! The one error type of the query crate, and the one place where errors become HTTP.
//!
//! | error | status |
//! |---|---|
//! | [`Error::BadRequest`], [`clew_store::Error::InvalidRequest`] | 400 |
//! | [`Error::NotFound`] | 404 |
//! | [`Error::MethodNotAllowed`] | 405 |
//! | retryable store/index errors, [`Error::NotReady`], [`Error::Timeout`] | 503 + `Retry-After` |
//! | [`Error::Unhealthy`] (`/healthz`: only a restart helps) | 503 |
//! | everything else | 500, with a message saying what failed |
//!
//! Every answer is `{"error": "<lowercase message>"}` as `application/json`.
//!
//! The gRPC API (Jaeger remote storage) answers the same errors with the matching gRPC
//! code ([`Error::to_grpc_status`]): 400 → INVALID_ARGUMENT, 404 → NOT_FOUND, 503 →
//! UNAVAILABLE, 500 → INTERNAL, with the same message.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::json::ErrorBody;

/// Result of query operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Seconds a client is asked to wait before retrying a 503.
pub const RETRY_AFTER_SECS: u64 = 1;

/// What went wrong while answering a query.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is wrong (bad parameter, malformed id); says what and where.
    #[error("{0}")]
    BadRequest(String),
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A store or index call failed; `doing` says which (`"failed to fetch trace …"`).
    #[error("{doing}: {source}")]
    Backend {
        doing: String,
        #[source]
        source: clew_store::Error,
    },
    /// A store or index call took longer than the query timeout.
    #[error("{doing}: timed out after {}s", .after.as_secs())]
    Timeout { doing: String, after: Duration },
    /// The method is not served on this path.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// Work that ran off the async reactor did not finish (it panicked or was cancelled).
    #[error("{doing}: the worker task failed")]
    Worker { doing: &'static str },
    /// The store or index cannot serve yet (`/readyz`).
    #[error("{0}")]
    NotReady(String),
    /// The store or index cannot serve again without a restart (`/healthz`).
    #[error("{0}")]
    Unhealthy(String),
}

impl Error {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Error::BadRequest(message.into())
    }

    pub fn backend(doing: impl Into<String>, source: clew_store::Error) -> Self {
        Error::Backend {
            doing: doing.into(),
            source,
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::Worker { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Error::Backend {
                source: clew_store::Error::InvalidRequest(_),
                ..
            } => StatusCode::BAD_REQUEST,
            Error::Backend { source, .. } if source.is_retryable() => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::Backend { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Error::Timeout { .. } | Error::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            // No Retry-After: only a restart helps.
            Error::Unhealthy(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl Error {
    /// The gRPC status this error is answered with (see the module docs).
    pub fn to_grpc_status(&self) -> tonic::Status {
        let code = match self.status() {
            StatusCode::BAD_REQUEST => tonic::Code::InvalidArgument,
            StatusCode::NOT_FOUND => tonic::Code::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => tonic::Code::Unimplemented,
            StatusCode::SERVICE_UNAVAILABLE => tonic::Code::Unavailable,
            _ => tonic::Code::Internal,
        };
        let message = self.to_string();
        if code == tonic::Code::Internal || code == tonic::Code::Unavailable {
            tracing::warn!(error = %message, ?code, "grpc query failed");
        }
        tonic::Status::new(code, message)
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        // a retry helps everything but an unhealthy process
        let retry = !matches!(self, Error::Unhealthy(_));
        let message = self.to_string();
        if status.is_server_error() {
            tracing::warn!(error = %message, status = status.as_u16(), "query failed");
        } else {
            tracing::debug!(error = %message, status = status.as_u16(), "query rejected");
        }
        let mut response = (status, Json(ErrorBody { error: message })).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE && retry {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(Error::bad_request("x").status(), StatusCode::BAD_REQUEST);
        assert_eq!(Error::NotFound("x".into()).status(), StatusCode::NOT_FOUND);
        let bad_cursor = Error::backend(
            "searching",
            clew_store::Error::InvalidRequest("bad cursor".into()),
        );
        assert_eq!(bad_cursor.status(), StatusCode::BAD_REQUEST);
        let down = Error::backend(
            "searching",
            clew_store::Error::unavailable("index", "disk gone"),
        );
        assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
        let corrupt = Error::backend(
            "fetching",
            clew_store::Error::corrupt("span cell", "bad version byte"),
        );
        assert_eq!(corrupt.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            corrupt.to_string(),
            "fetching: corrupt data in span cell: bad version byte"
        );
    }

    #[test]
    fn grpc_codes() {
        use tonic::Code;
        assert_eq!(
            Error::bad_request("x").to_grpc_status().code(),
            Code::InvalidArgument
        );
        assert_eq!(
            Error::NotFound("x".into()).to_grpc_status().code(),
            Code::NotFound
        );
        let down = Error::backend("searching", clew_store::Error::unavailable("index", "down"));
        assert_eq!(down.to_grpc_status().code(), Code::Unavailable);
        assert_eq!(down.to_grpc_status().message(), down.to_string());
    }

    #[test]
    fn retryable_answers_carry_retry_after() {
        let resp = Error::backend("searching", clew_store::Error::unavailable("index", "down"))
            .into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        let resp = Error::bad_request("nope").into_response();
        assert!(resp.headers().get(header::RETRY_AFTER).is_none());
    }
}
