//! The one error type of the store crate.

/// Result of store and index operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in a span store or trace index. Every variant says whether a caller
/// may retry: ingest maps retryable errors to OTLP "try again later" answers and
/// non-retryable ones to permanent failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The backend could not do the work now (I/O error, disk full, server down, timeout).
    #[error("{context}: {message}")]
    Unavailable {
        context: &'static str,
        message: String,
    },
    /// Stored bytes could not be decoded.
    #[error("corrupt data in {context}: {message}")]
    Corrupt {
        context: &'static str,
        message: String,
    },
    /// The caller asked for something that cannot be answered (bad cursor, bad query).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The configuration cannot be used.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl Error {
    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }

    pub fn unavailable(context: &'static str, err: impl std::fmt::Display) -> Self {
        Error::Unavailable {
            context,
            message: err.to_string(),
        }
    }

    pub fn corrupt(context: &'static str, err: impl std::fmt::Display) -> Self {
        Error::Corrupt {
            context,
            message: err.to_string(),
        }
    }
}
