//! `clew_alerting_*`: what the error alerts cost and whether they reach their targets.
//! Labels are bounded: `rule` names come from the configuration, `kind` is
//! `alertmanager` or `webhook` (URLs can hold credentials and are never labels).

use metrics::{counter, describe_counter, describe_gauge, gauge, Unit};

pub const ERROR_SPANS: &str = "clew_alerting_error_spans_total";
pub const FIRED: &str = "clew_alerting_alerts_fired_total";
pub const RESOLVED: &str = "clew_alerting_alerts_resolved_total";
pub const FIRING: &str = "clew_alerting_alerts_firing";
pub const SIGNATURES: &str = "clew_alerting_signatures_tracked";
pub const SIGNATURES_DROPPED: &str = "clew_alerting_signatures_dropped_total";
pub const DELIVERIES: &str = "clew_alerting_notifications_total";
pub const DROPPED: &str = "clew_alerting_notifications_dropped_total";
pub const QUEUED: &str = "clew_alerting_queue_alerts";
pub const RELOADS: &str = "clew_alerting_rule_reloads_total";

pub fn describe() {
    describe_counter!(
        ERROR_SPANS,
        Unit::Count,
        "stored error spans the alert rules counted (after the store acknowledged them)"
    );
    describe_counter!(
        FIRED,
        Unit::Count,
        "error-signature alerts that fired, by rule"
    );
    describe_counter!(
        RESOLVED,
        Unit::Count,
        "error-signature alerts that resolved after a quiet window (or whose rule was removed), by rule"
    );
    describe_gauge!(FIRING, Unit::Count, "error-signature alerts firing now");
    describe_gauge!(
        SIGNATURES,
        Unit::Count,
        "error signatures tracked now, pending or firing (capped by alerting.max_signatures)"
    );
    describe_counter!(
        SIGNATURES_DROPPED,
        Unit::Count,
        "error-span occurrences not tracked because alerting.max_signatures signatures were tracked already"
    );
    describe_counter!(
        DELIVERIES,
        Unit::Count,
        "alerts posted, by target kind and result (sent; failed: retried with back-off; refused: a 4xx answer, not retried)"
    );
    describe_counter!(
        DROPPED,
        Unit::Count,
        "alert updates dropped because a target's delivery queue was full (alerting.queue_max_alerts)"
    );
    describe_gauge!(
        QUEUED,
        Unit::Count,
        "alerts waiting for delivery, by target kind"
    );
    describe_counter!(
        RELOADS,
        Unit::Count,
        "re-reads of the alert rules after the config file changed, by result (ok, error: the previous rules stay)"
    );
}

pub fn error_spans(n: usize) {
    counter!(ERROR_SPANS).increment(n as u64);
}

pub fn fired(rule: &str) {
    counter!(FIRED, "rule" => rule.to_string()).increment(1);
}

pub fn resolved(rule: &str) {
    counter!(RESOLVED, "rule" => rule.to_string()).increment(1);
}

pub fn state(firing: usize, tracked: usize) {
    gauge!(FIRING).set(firing as f64);
    gauge!(SIGNATURES).set(tracked as f64);
}

pub fn signatures_dropped(n: u64) {
    if n > 0 {
        counter!(SIGNATURES_DROPPED).increment(n);
    }
}

pub fn delivery(kind: &'static str, result: &'static str, alerts: usize) {
    counter!(DELIVERIES, "kind" => kind, "result" => result).increment(alerts as u64);
}

pub fn notifications_dropped(kind: &'static str, n: u64) {
    counter!(DROPPED, "kind" => kind).increment(n);
}

pub fn queued(kind: &'static str, n: usize) {
    gauge!(QUEUED, "kind" => kind).set(n as f64);
}

pub fn reload(result: &'static str) {
    counter!(RELOADS, "result" => result).increment(1);
}
