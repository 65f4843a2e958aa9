//! The collector's one error type, and the one place where errors become gRPC and HTTP
//! answers (OTLP specification 1.x, `docs/robustness.md` "OTLP answers").
//!
//! | error                         | gRPC                 | HTTP | client retries |
//! |-------------------------------|----------------------|------|----------------|
//! | `Decode`                      | INVALID_ARGUMENT     | 400  | no             |
//! | `TooLarge`                    | RESOURCE_EXHAUSTED   | 413  | no (no hint)   |
//! | `UnsupportedMediaType`        | INVALID_ARGUMENT     | 415  | no             |
//! | `Overloaded`, `ShuttingDown`, `PipelineFailed` | UNAVAILABLE + RetryInfo | 503 + Retry-After | yes |
//! | `Store` (retryable)           | UNAVAILABLE + RetryInfo | 503 + Retry-After | yes |
//! | `Store` (permanent)           | INTERNAL             | 500  | no             |
//! | `SpoolFull`, `Spool` (agent)  | UNAVAILABLE + RetryInfo | 503 + Retry-After | yes |
//! | `Kafka` (client start-up)     | INTERNAL             | 500  | no             |

use std::time::Duration;

use axum::http::StatusCode as HttpStatus;
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

/// Result of collector operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body could not be decoded as an OTLP export request.
    #[error("failed to decode {what}: {message}")]
    Decode { what: &'static str, message: String },
    /// The (decompressed) request is larger than `max_request_bytes`.
    #[error("request body exceeds the limit of {limit_bytes} bytes (after decompression)")]
    TooLarge { limit_bytes: usize },
    /// Content-Type or Content-Encoding the collector does not speak.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// No room in the ingest queue within `enqueue_timeout_ms`.
    #[error("collector is overloaded: no room for {spans} spans in the ingest queue within {waited_ms} ms, retry later")]
    Overloaded { spans: usize, waited_ms: u64 },
    /// The pipeline has stopped (shutdown in progress).
    #[error("collector is shutting down, retry later")]
    ShuttingDown,
    /// The pipeline dropped a batch without answering while not shutting down (its writer
    /// failed); nothing of it was acknowledged.
    #[error(
        "the ingest pipeline stopped before writing these spans (see the server log), retry later"
    )]
    PipelineFailed,
    /// The span store or trace index failed; nothing of the request was acknowledged.
    #[error("failed to {stage} spans: {source}")]
    Store {
        stage: &'static str,
        #[source]
        source: clew_store::Error,
    },
    /// The agent could not reach Kafka and its disk spool has no room for the request
    /// (nothing of the request is acknowledged; clients retry later).
    #[error("kafka is unreachable and the agent's spool is full ({max_bytes} bytes), retry later")]
    SpoolFull { max_bytes: u64 },
    /// The agent could not reach Kafka and writing to its disk spool failed (disk full,
    /// I/O error): nothing of the request is acknowledged.
    #[error("kafka is unreachable and the agent failed to {what}: {source}")]
    Spool {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A Kafka client could not be set up (bad broker list or librdkafka property), or the
    /// collector's Kafka receiver could not subscribe.
    #[error("failed to {what}: {message}")]
    Kafka { what: &'static str, message: String },
    /// A configuration value cannot be used.
    /// The caller's tenant sent more spans than its rate limit allows (`crate::rate_limit`).
    #[error("this tenant's ingest rate limit is exhausted, retry in {} ms", retry_after.as_millis())]
    Throttled { retry_after: Duration },

    #[error("invalid configuration: {key}: {message}")]
    Config { key: &'static str, message: String },
    /// A listener could not be bound or served.
    #[error("failed to {what} on {addr}: {source}")]
    Listen {
        what: &'static str,
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn decode(what: &'static str, err: impl std::fmt::Display) -> Self {
        Error::Decode {
            what,
            message: err.to_string(),
        }
    }

    /// Whether a client should send the same request again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Overloaded { .. }
            | Error::Throttled { .. }
            | Error::ShuttingDown
            | Error::PipelineFailed
            | Error::SpoolFull { .. }
            | Error::Spool { .. } => true,
            Error::Store { source, .. } => source.is_retryable(),
            _ => false,
        }
    }

    /// Metric label for `clew_collector_requests_failed_total{reason}` (bounded set).
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Decode { .. } => "undecodable",
            Error::TooLarge { .. } => "too_large",
            Error::UnsupportedMediaType(_) => "unsupported_media_type",
            Error::Overloaded { .. } => "overloaded",
            Error::ShuttingDown => "shutting_down",
            Error::PipelineFailed => "pipeline_failed",
            Error::Store { source, .. } if source.is_retryable() => "store_unavailable",
            Error::Store { .. } => "store_failed",
            Error::SpoolFull { .. } => "spool_full",
            Error::Spool { .. } => "spool_failed",
            Error::Kafka { .. } => "kafka",
            Error::Throttled { .. } => "throttled",
            Error::Config { .. } => "config",
            Error::Listen { .. } => "listen",
        }
    }

    /// The gRPC answer. Retryable errors carry a RetryInfo detail with `retry_after`.
    pub fn to_grpc_status(&self, retry_after: Duration) -> tonic::Status {
        let message = self.to_string();
        match self {
            Error::Decode { .. } | Error::UnsupportedMediaType(_) => {
                tonic::Status::invalid_argument(message)
            }
            Error::TooLarge { .. } => tonic::Status::resource_exhausted(message),
            // OTLP: throttling is RESOURCE_EXHAUSTED with a RetryInfo saying when
            Error::Throttled { retry_after } => tonic::Status::with_error_details(
                Code::ResourceExhausted,
                message,
                ErrorDetails::with_retry_info(Some(*retry_after)),
            ),
            _ if self.is_retryable() => tonic::Status::with_error_details(
                Code::Unavailable,
                message,
                ErrorDetails::with_retry_info(Some(retry_after)),
            ),
            _ => tonic::Status::internal(message),
        }
    }

    /// The HTTP status; retryable errors also get `Retry-After` (see the HTTP receiver).
    pub fn http_status(&self) -> HttpStatus {
        match self {
            Error::Decode { .. } => HttpStatus::BAD_REQUEST,
            Error::TooLarge { .. } => HttpStatus::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType(_) => HttpStatus::UNSUPPORTED_MEDIA_TYPE,
            Error::Throttled { .. } => HttpStatus::TOO_MANY_REQUESTS,
            _ if self.is_retryable() => HttpStatus::SERVICE_UNAVAILABLE,
            _ => HttpStatus::INTERNAL_SERVER_ERROR,
        }
    }

    /// How long a client should wait before retrying: the throttle's own delay, else
    /// `default` (the configured `retry_after_secs`).
    pub fn retry_after(&self, default: Duration) -> Duration {
        match self {
            Error::Throttled { retry_after } => *retry_after,
            _ => default,
        }
    }

    /// gRPC code number used in the OTLP/HTTP `google.rpc.Status` error body.
    pub(crate) fn grpc_code(&self) -> Code {
        self.to_grpc_status(Duration::ZERO).code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping() {
        let retry = Duration::from_secs(1);
        let cases: Vec<(Error, Code, HttpStatus)> = vec![
            (
                Error::decode("protobuf", "bad"),
                Code::InvalidArgument,
                HttpStatus::BAD_REQUEST,
            ),
            (
                Error::TooLarge { limit_bytes: 1 },
                Code::ResourceExhausted,
                HttpStatus::PAYLOAD_TOO_LARGE,
            ),
            (
                Error::Overloaded {
                    spans: 1,
                    waited_ms: 1,
                },
                Code::Unavailable,
                HttpStatus::SERVICE_UNAVAILABLE,
            ),
            (
                Error::Store {
                    stage: "store",
                    source: clew_store::Error::unavailable("write", "disk full"),
                },
                Code::Unavailable,
                HttpStatus::SERVICE_UNAVAILABLE,
            ),
            (
                Error::SpoolFull { max_bytes: 1 },
                Code::Unavailable,
                HttpStatus::SERVICE_UNAVAILABLE,
            ),
            (
                Error::Spool {
                    what: "append to the spool",
                    source: std::io::Error::other("disk full"),
                },
                Code::Unavailable,
                HttpStatus::SERVICE_UNAVAILABLE,
            ),
            (
                Error::Store {
                    stage: "store",
                    source: clew_store::Error::corrupt("write", "bad"),
                },
                Code::Internal,
                HttpStatus::INTERNAL_SERVER_ERROR,
            ),
            (
                Error::Throttled {
                    retry_after: Duration::from_millis(1500),
                },
                Code::ResourceExhausted,
                HttpStatus::TOO_MANY_REQUESTS,
            ),
        ];
        for (e, code, http) in cases {
            let st = e.to_grpc_status(retry);
            assert_eq!(st.code(), code, "{e}");
            assert_eq!(e.http_status(), http, "{e}");
            assert_eq!(
                st.get_details_retry_info().is_some(),
                e.is_retryable(),
                "{e}"
            );
        }
        // too large must not carry a retry hint
        assert!(Error::TooLarge { limit_bytes: 1 }
            .to_grpc_status(retry)
            .get_details_retry_info()
            .is_none());
    }
}
