//! The collector's Prometheus metrics, in one place. Labels are small fixed sets
//! (protocol, reason); never ids or raw error text.

use std::time::Duration;

use clew_proto::RejectReason;
use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};

pub const SPANS_RECEIVED: &str = "clew_collector_spans_received_total";
pub const SPANS_REJECTED: &str = "clew_collector_spans_rejected_total";
pub const REQUESTS_FAILED: &str = "clew_collector_requests_failed_total";
pub const BATCH_SPANS: &str = "clew_collector_batch_spans";
pub const QUEUE_SPANS: &str = "clew_collector_queue_spans";
pub const ACK_SECONDS: &str = "clew_collector_ack_seconds";

/// The receiving protocol, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    Http,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::Http => "http",
        }
    }
}

/// Registers descriptions and pre-creates the reject series (so dashboards see zeros).
pub fn describe() {
    describe_counter!(
        SPANS_RECEIVED,
        Unit::Count,
        "spans received over OTLP, before validation"
    );
    describe_counter!(
        SPANS_REJECTED,
        Unit::Count,
        "spans refused alone (validation or store cap), by reason"
    );
    describe_counter!(
        REQUESTS_FAILED,
        Unit::Count,
        "whole requests refused, by protocol and reason"
    );
    describe_histogram!(
        BATCH_SPANS,
        Unit::Count,
        "spans per batch written to the store"
    );
    describe_gauge!(
        QUEUE_SPANS,
        Unit::Count,
        "spans accepted and not yet acknowledged"
    );
    describe_histogram!(
        ACK_SECONDS,
        Unit::Seconds,
        "time from receiving a request to answering it"
    );
    for r in RejectReason::ALL {
        counter!(SPANS_REJECTED, "reason" => r.as_str()).absolute(0);
    }
}

pub fn spans_received(protocol: Protocol, n: usize) {
    counter!(SPANS_RECEIVED, "protocol" => protocol.as_str()).increment(n as u64);
}

pub fn span_rejected(reason: RejectReason, n: u64) {
    counter!(SPANS_REJECTED, "reason" => reason.as_str()).increment(n);
}

pub fn request_failed(protocol: Protocol, reason: &'static str) {
    counter!(REQUESTS_FAILED, "protocol" => protocol.as_str(), "reason" => reason).increment(1);
}

pub fn batch_written(spans: usize) {
    histogram!(BATCH_SPANS).record(spans as f64);
}

pub fn queue_spans(spans: usize) {
    gauge!(QUEUE_SPANS).set(spans as f64);
}

pub fn acked(protocol: Protocol, elapsed: Duration) {
    histogram!(ACK_SECONDS, "protocol" => protocol.as_str()).record(elapsed.as_secs_f64());
}
