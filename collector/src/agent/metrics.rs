//! The agent's Prometheus metrics. Requests refused as a whole are counted by the shared
//! OTLP path in `clew_collector_requests_failed_total{protocol, reason}` (reasons
//! `spool_full`, `spool_failed`); spans received and rejected alone likewise.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use metrics::{counter, describe_counter, describe_gauge, gauge, Unit};

pub const SPANS_SAMPLED_OUT: &str = "clew_agent_spans_sampled_out_total";
pub const SPANS_ACCEPTED: &str = "clew_agent_spans_accepted_total";
pub const RECORDS_PRODUCED: &str = "clew_agent_records_produced_total";
pub const RECORDS_SPOOLED: &str = "clew_agent_records_spooled_total";
pub const PRODUCE_ERRORS: &str = "clew_agent_produce_errors_total";
pub const SPOOL_RECORDS: &str = "clew_agent_spool_records";
pub const SPOOL_BYTES: &str = "clew_agent_spool_bytes";
pub const SPOOL_DISK_BYTES: &str = "clew_agent_spool_disk_bytes";
pub const SPOOL_OLDEST_AGE: &str = "clew_agent_spool_oldest_record_age_seconds";
pub const SPOOL_CORRUPT: &str = "clew_agent_spool_corrupt_total";
pub const SPOOL_ERRORS: &str = "clew_agent_spool_errors_total";
pub const SAMPLING_RELOADS: &str = "clew_agent_sampling_reloads_total";

/// Bounded label sets.
pub const PRODUCE_ERROR_REASONS: [&str; 6] = [
    "timed_out",
    "queue_full",
    "too_large",
    "unknown_topic",
    "broker_down",
    "other",
];
pub const PATHS: [&str; 2] = ["direct", "replay"];

pub fn describe() {
    describe_counter!(
        SPANS_SAMPLED_OUT,
        Unit::Count,
        "spans dropped by head sampling (never error spans)"
    );
    describe_counter!(
        SPANS_ACCEPTED,
        Unit::Count,
        "spans acknowledged to OTLP clients, by where they went (kafka: Kafka acknowledged them; spool: fsynced to the disk spool)"
    );
    describe_counter!(
        RECORDS_PRODUCED,
        Unit::Count,
        "Kafka records acknowledged by Kafka, by path (direct from a request, or replayed from the spool)"
    );
    describe_counter!(
        RECORDS_SPOOLED,
        Unit::Count,
        "Kafka records written to the disk spool because Kafka did not acknowledge them in time (or the spool was not empty)"
    );
    describe_counter!(
        PRODUCE_ERRORS,
        Unit::Count,
        "Kafka records whose delivery failed, by path and reason (the record goes to, or stays in, the spool)"
    );
    describe_gauge!(
        SPOOL_RECORDS,
        Unit::Count,
        "records in the spool not yet delivered"
    );
    describe_gauge!(
        SPOOL_BYTES,
        Unit::Bytes,
        "bytes of records in the spool not yet delivered"
    );
    describe_gauge!(
        SPOOL_DISK_BYTES,
        Unit::Bytes,
        "bytes the spool occupies on disk (bounded by spool.max_bytes)"
    );
    describe_gauge!(
        SPOOL_OLDEST_AGE,
        Unit::Seconds,
        "age of the oldest record in the spool not yet delivered (0 when empty; records of an earlier run: since their segment file was created)"
    );
    describe_counter!(
        SPOOL_CORRUPT,
        Unit::Count,
        "spool segments cut at a torn or corrupt record when the agent started (crash during a write)"
    );
    describe_counter!(
        SPOOL_ERRORS,
        Unit::Count,
        "spool operations that failed, by operation (append, read, commit)"
    );
    describe_counter!(
        SAMPLING_RELOADS,
        Unit::Count,
        "reads of the sampling file, by result (ok, invalid, missing); on error the previous rates stay"
    );
    counter!(SPANS_SAMPLED_OUT).absolute(0);
    for path in ["kafka", "spool"] {
        counter!(SPANS_ACCEPTED, "path" => path).absolute(0);
    }
    for path in PATHS {
        counter!(RECORDS_PRODUCED, "path" => path).absolute(0);
        for reason in PRODUCE_ERROR_REASONS {
            counter!(PRODUCE_ERRORS, "path" => path, "reason" => reason).absolute(0);
        }
    }
    counter!(RECORDS_SPOOLED).absolute(0);
    counter!(SPOOL_CORRUPT).absolute(0);
    for op in ["append", "read", "commit"] {
        counter!(SPOOL_ERRORS, "op" => op).absolute(0);
    }
}

pub fn sampled_out(n: usize) {
    counter!(SPANS_SAMPLED_OUT).increment(n as u64);
}

pub fn spans_accepted(path: &'static str, n: usize) {
    counter!(SPANS_ACCEPTED, "path" => path).increment(n as u64);
}

pub fn records_produced(path: &'static str, n: usize) {
    counter!(RECORDS_PRODUCED, "path" => path).increment(n as u64);
}

pub fn records_spooled(n: usize) {
    counter!(RECORDS_SPOOLED).increment(n as u64);
}

pub fn produce_error(path: &'static str, reason: &'static str) {
    counter!(PRODUCE_ERRORS, "path" => path, "reason" => reason).increment(1);
}

/// Unix milliseconds of the oldest spooled record's append, 0 when the spool is empty;
/// the age gauge is computed from it whenever `/metrics` is read ([`refresh_spool_age`]),
/// so it keeps growing while nothing is delivered.
static SPOOL_OLDEST_UNIX_MS: AtomicU64 = AtomicU64::new(0);

pub fn spool_state(records: u64, bytes: u64, disk_bytes: u64, oldest: Option<SystemTime>) {
    gauge!(SPOOL_RECORDS).set(records as f64);
    gauge!(SPOOL_BYTES).set(bytes as f64);
    gauge!(SPOOL_DISK_BYTES).set(disk_bytes as f64);
    let ms = oldest
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| (d.as_millis() as u64).max(1));
    SPOOL_OLDEST_UNIX_MS.store(ms, Ordering::Relaxed);
    refresh_spool_age();
}

/// Sets `clew_agent_spool_oldest_record_age_seconds` from the oldest record's time (0 when
/// the spool is empty).
pub fn refresh_spool_age() {
    let oldest = SPOOL_OLDEST_UNIX_MS.load(Ordering::Relaxed);
    let age = if oldest == 0 {
        0.0
    } else {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        now.saturating_sub(oldest) as f64 / 1000.0
    };
    gauge!(SPOOL_OLDEST_AGE).set(age);
}

pub fn spool_corrupt(segments: u64) {
    counter!(SPOOL_CORRUPT).increment(segments);
}

pub fn spool_error(op: &'static str) {
    counter!(SPOOL_ERRORS, "op" => op).increment(1);
}

pub fn sampling_reload(result: &'static str) {
    counter!(SAMPLING_RELOADS, "result" => result).increment(1);
}
