//! The collector's Prometheus metrics, in one place. Labels are small fixed sets
//! (protocol, reason); never ids or raw error text.

use std::time::Duration;

use clew_proto::RejectReason;
use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};

pub const SPANS_RECEIVED: &str = "clew_collector_spans_received_total";
pub const SPANS_REJECTED: &str = "clew_collector_spans_rejected_total";
pub const SPANS_REPAIRED: &str = "clew_collector_spans_repaired_total";
pub const REQUESTS_FAILED: &str = "clew_collector_requests_failed_total";
pub const BATCH_SPANS: &str = "clew_collector_batch_spans";
pub const QUEUE_SPANS: &str = "clew_collector_queue_spans";
pub const ACK_SECONDS: &str = "clew_collector_ack_seconds";
pub const WRITE_FAILURES: &str = "clew_collector_write_failures_total";
/// Values dropped, masked or hashed by the redaction stage, by rule.
pub const REDACTIONS: &str = "clew_redactions_total";
/// Spans of requests refused by a tenant's rate limit (`crate::rate_limit`).
pub const TENANT_THROTTLED: &str = "clew_tenant_throttled_spans_total";

/// Counts the spans of a request refused by `tenant`'s rate limit.
pub fn tenant_throttled(tenant: &str, spans: usize) {
    counter!(TENANT_THROTTLED, "tenant" => tenant.to_string()).increment(spans as u64);
}

pub const KAFKA_RECORDS_CONSUMED: &str = "clew_kafka_records_consumed_total";
pub const KAFKA_RECORDS_DONE: &str = "clew_kafka_records_done_total";
pub const KAFKA_RECORDS_POISON: &str = "clew_kafka_records_poison_total";
pub const KAFKA_DEAD_LETTER_FAILURES: &str = "clew_kafka_dead_letter_failures_total";
pub const KAFKA_WRITE_RETRIES: &str = "clew_kafka_write_retries_total";
pub const KAFKA_COMMITS: &str = "clew_kafka_commits_total";
pub const KAFKA_COMMITTED_OFFSET: &str = "clew_kafka_committed_offset";
pub const KAFKA_CONSUMER_LAG: &str = "clew_kafka_consumer_lag";
pub const KAFKA_RECORDS_IN_FLIGHT: &str = "clew_kafka_records_in_flight";
pub const KAFKA_PAUSED: &str = "clew_kafka_paused";
pub const KAFKA_REBALANCES: &str = "clew_kafka_rebalances_total";

/// The receiving protocol, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    Http,
    Kafka,
    Zipkin,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::Http => "http",
            Protocol::Kafka => "kafka",
            Protocol::Zipkin => "zipkin",
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
        SPANS_REPAIRED,
        Unit::Count,
        "spans kept after a repair (invalid UTF-8 replaced, values cut to limits, times fixed…), by protocol and repair"
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
    describe_counter!(
        WRITE_FAILURES,
        Unit::Count,
        "batches whose write failed, by stage (store, index) and retryable (true: answered 'retry later'); nothing of them is acknowledged"
    );
    for r in RejectReason::ALL {
        counter!(SPANS_REJECTED, "reason" => r.as_str()).absolute(0);
    }
    describe_redactions(&[]);
    for stage in ["store", "index"] {
        for retryable in ["true", "false"] {
            counter!(WRITE_FAILURES, "stage" => stage, "retryable" => retryable).absolute(0);
        }
    }
}

/// Registers the Kafka receiver's descriptions (only when it runs) and pre-creates the
/// poison and outcome series of the topics subscribed by name.
pub fn describe_kafka(topics: &[String], poison_reasons: &[&'static str]) {
    describe_counter!(
        KAFKA_RECORDS_CONSUMED,
        Unit::Count,
        "kafka records fetched by the receiver, by topic"
    );
    describe_counter!(
        KAFKA_RECORDS_DONE,
        Unit::Count,
        "kafka records finished, by topic and outcome: stored (spans durable in store and index), dead_lettered (poison, in the dead-letter topic), skipped (poison, no dead-letter topic configured)"
    );
    describe_counter!(
        KAFKA_RECORDS_POISON,
        Unit::Count,
        "kafka records whose value cannot be decoded, by topic and reason"
    );
    describe_counter!(
        KAFKA_DEAD_LETTER_FAILURES,
        Unit::Count,
        "failed produces to the dead-letter topic (retried; nothing is committed past the record)"
    );
    describe_counter!(
        KAFKA_WRITE_RETRIES,
        Unit::Count,
        "failed writes of a kafka record's spans, retried with back-off while consumption is paused, by reason"
    );
    describe_counter!(
        KAFKA_COMMITS,
        Unit::Count,
        "offset commits of the consumer group, by result"
    );
    describe_gauge!(
        KAFKA_COMMITTED_OFFSET,
        Unit::Count,
        "last offset committed, by topic and partition (next record to read)"
    );
    describe_gauge!(
        KAFKA_CONSUMER_LAG,
        Unit::Count,
        "records behind: high watermark minus committed offset, by topic and partition (0 for partitions this collector gave up)"
    );
    describe_gauge!(
        KAFKA_RECORDS_IN_FLIGHT,
        Unit::Count,
        "kafka records being decoded, written or dead-lettered"
    );
    describe_gauge!(
        KAFKA_PAUSED,
        Unit::Count,
        "1 while consumption is paused (the store is failing, or the receiver is at its in-flight limit)"
    );
    describe_counter!(
        KAFKA_REBALANCES,
        Unit::Count,
        "consumer group rebalances, by kind (assign, revoke, error)"
    );
    for topic in topics {
        for outcome in ["stored", "dead_lettered", "skipped"] {
            counter!(KAFKA_RECORDS_DONE, "topic" => topic.clone(), "outcome" => outcome)
                .absolute(0);
        }
        for reason in poison_reasons {
            counter!(KAFKA_RECORDS_POISON, "topic" => topic.clone(), "reason" => *reason)
                .absolute(0);
        }
    }
    counter!(KAFKA_DEAD_LETTER_FAILURES).absolute(0);
    gauge!(KAFKA_PAUSED).set(0.0);
}

pub fn kafka_consumed(topic: &str) {
    counter!(KAFKA_RECORDS_CONSUMED, "topic" => topic.to_string()).increment(1);
}

pub fn kafka_record_done(topic: &str, outcome: &'static str) {
    counter!(KAFKA_RECORDS_DONE, "topic" => topic.to_string(), "outcome" => outcome).increment(1);
}

pub fn kafka_poison(topic: &str, reason: &'static str) {
    counter!(KAFKA_RECORDS_POISON, "topic" => topic.to_string(), "reason" => reason).increment(1);
}

pub fn kafka_dead_letter_failed() {
    counter!(KAFKA_DEAD_LETTER_FAILURES).increment(1);
}

pub fn kafka_write_retried(reason: &'static str) {
    counter!(KAFKA_WRITE_RETRIES, "reason" => reason).increment(1);
}

pub fn kafka_commit(ok: bool) {
    counter!(KAFKA_COMMITS, "result" => if ok { "ok" } else { "failed" }).increment(1);
}

pub fn kafka_committed_offset(topic: &str, partition: i32, offset: i64) {
    gauge!(KAFKA_COMMITTED_OFFSET, "topic" => topic.to_string(), "partition" => partition.to_string())
        .set(offset as f64);
}

pub fn kafka_lag(topic: &str, partition: i32, lag: i64) {
    gauge!(KAFKA_CONSUMER_LAG, "topic" => topic.to_string(), "partition" => partition.to_string())
        .set(lag as f64);
}

pub fn kafka_in_flight(records: usize) {
    gauge!(KAFKA_RECORDS_IN_FLIGHT).set(records as f64);
}

pub fn kafka_paused(paused: bool) {
    gauge!(KAFKA_PAUSED).set(if paused { 1.0 } else { 0.0 });
}

pub fn kafka_rebalance(kind: &'static str) {
    counter!(KAFKA_REBALANCES, "kind" => kind).increment(1);
}

/// Registers `clew_redactions_total` and pre-creates a series per rule in force (by
/// `clew serve` and `clew agent`).
pub fn describe_redactions(rules: &[String]) {
    describe_counter!(
        REDACTIONS,
        Unit::Count,
        "attribute values dropped, masked or hashed and matches replaced in text before anything is written, by redaction rule"
    );
    for rule in rules {
        counter!(REDACTIONS, "rule" => rule.clone()).absolute(0);
    }
}

/// Counted once per batch and rule (rule names come from the configuration: bounded).
pub fn redacted(rule: &str, n: u64) {
    counter!(REDACTIONS, "rule" => rule.to_string()).increment(n);
}

pub fn spans_received(protocol: Protocol, n: usize) {
    counter!(SPANS_RECEIVED, "protocol" => protocol.as_str()).increment(n as u64);
}

pub fn span_rejected(reason: RejectReason, n: u64) {
    counter!(SPANS_REJECTED, "reason" => reason.as_str()).increment(n);
}

pub fn spans_repaired(protocol: Protocol, repair: &'static str, n: u64) {
    counter!(SPANS_REPAIRED, "protocol" => protocol.as_str(), "repair" => repair).increment(n);
}

pub fn request_failed(protocol: Protocol, reason: &'static str) {
    counter!(REQUESTS_FAILED, "protocol" => protocol.as_str(), "reason" => reason).increment(1);
}

pub fn write_failed(stage: &'static str, retryable: bool) {
    counter!(WRITE_FAILURES, "stage" => stage, "retryable" => if retryable { "true" } else { "false" })
        .increment(1);
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

// Remote sampling (`sampling`): the strategies file and the answers served from it.
pub const SAMPLING_RELOAD_ERRORS: &str = "clew_sampling_strategies_reload_errors_total";
pub const SAMPLING_LAST_RELOAD: &str =
    "clew_sampling_strategies_last_reload_success_timestamp_seconds";
pub const SAMPLING_SERVICES: &str = "clew_sampling_strategies_services";
pub const SAMPLING_REQUESTS: &str = "clew_sampling_requests_total";

/// Why a strategies file was not applied, as a metric label.
pub const SAMPLING_RELOAD_ERROR_REASONS: [&str; 2] = ["read", "invalid"];

/// Registers the sampling metrics (by `clew serve` and `clew agent`, whichever loads a
/// strategies file).
pub fn describe_sampling() {
    describe_counter!(
        SAMPLING_RELOAD_ERRORS,
        Unit::Count,
        "versions of the sampling strategies file that were not applied, by reason (read: the file could not be read; invalid: not a valid strategies file); the last good strategies stay in force"
    );
    describe_gauge!(
        SAMPLING_LAST_RELOAD,
        Unit::Seconds,
        "unix time at which the strategies in force were loaded (at start-up, or the last good change of the file)"
    );
    describe_gauge!(
        SAMPLING_SERVICES,
        Unit::Count,
        "services with their own entry in the strategies in force"
    );
    describe_counter!(
        SAMPLING_REQUESTS,
        Unit::Count,
        "sampling strategy requests answered, by protocol (http, grpc)"
    );
    for reason in SAMPLING_RELOAD_ERROR_REASONS {
        counter!(SAMPLING_RELOAD_ERRORS, "reason" => reason).absolute(0);
    }
    for protocol in ["http", "grpc"] {
        counter!(SAMPLING_REQUESTS, "protocol" => protocol).absolute(0);
    }
}

pub fn sampling_reload_error(reason: &'static str) {
    counter!(SAMPLING_RELOAD_ERRORS, "reason" => reason).increment(1);
}

pub fn sampling_loaded(services: usize) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    gauge!(SAMPLING_LAST_RELOAD).set(now);
    gauge!(SAMPLING_SERVICES).set(services as f64);
}

pub fn sampling_request(protocol: &'static str) {
    counter!(SAMPLING_REQUESTS, "protocol" => protocol).increment(1);
}
