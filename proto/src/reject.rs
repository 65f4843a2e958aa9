//! Why a single span was refused. Each reason is a metric label and a sentence in the
//! OTLP partial-success message.

/// Reasons a span is rejected alone while the rest of its request is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// Trace id missing, wrong length or all zeros.
    InvalidTraceId,
    /// Span id missing, wrong length or all zeros.
    InvalidSpanId,
    /// Start and end time both zero.
    MissingTimestamps,
    /// Start time more than the allowed skew in the future.
    TimestampInFuture,
    /// Start time older than the oldest accepted time (before retention).
    TimestampTooOld,
    /// The trace already holds the configured maximum of spans or bytes.
    TraceTooLarge,
    /// The encoded span alone is larger than the per-span limit.
    SpanTooLarge,
}

impl RejectReason {
    /// All reasons, for pre-registering metric labels.
    pub const ALL: [RejectReason; 7] = [
        RejectReason::InvalidTraceId,
        RejectReason::InvalidSpanId,
        RejectReason::MissingTimestamps,
        RejectReason::TimestampInFuture,
        RejectReason::TimestampTooOld,
        RejectReason::TraceTooLarge,
        RejectReason::SpanTooLarge,
    ];

    /// Stable snake_case label (metrics, logs).
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::InvalidTraceId => "invalid_trace_id",
            RejectReason::InvalidSpanId => "invalid_span_id",
            RejectReason::MissingTimestamps => "missing_timestamps",
            RejectReason::TimestampInFuture => "timestamp_in_future",
            RejectReason::TimestampTooOld => "timestamp_too_old",
            RejectReason::TraceTooLarge => "trace_too_large",
            RejectReason::SpanTooLarge => "span_too_large",
        }
    }

    /// English explanation for OTLP `partial_success.error_message`.
    pub fn explain(self) -> &'static str {
        match self {
            RejectReason::InvalidTraceId => "trace id is not 16 bytes or is all zeros",
            RejectReason::InvalidSpanId => "span id is not 8 bytes or is all zeros",
            RejectReason::MissingTimestamps => "start and end time are both zero",
            RejectReason::TimestampInFuture => "start time is too far in the future",
            RejectReason::TimestampTooOld => "start time is older than the retention period",
            RejectReason::TraceTooLarge => "trace exceeds the per-trace span or byte cap",
            RejectReason::SpanTooLarge => "encoded span exceeds the per-span size limit",
        }
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
