//! `clew_auth_failures_total{listener,reason}`: refused requests, by listener (a fixed
//! name such as `otlp_grpc` or `query`) and reason (`missing_token`, `invalid_token`,
//! `insufficient_scope`). Never labelled with a token or a tenant.

use metrics::{counter, describe_counter, Unit};

pub const AUTH_FAILURES: &str = "clew_auth_failures_total";

const REASONS: [&str; 3] = ["missing_token", "invalid_token", "insufficient_scope"];

/// Registers the description and pre-creates the listener's series (dashboards see zeros).
pub fn describe(listener: &'static str) {
    describe_counter!(
        AUTH_FAILURES,
        Unit::Count,
        "requests refused for a missing or invalid bearer token (401) or a missing scope (403)"
    );
    for reason in REASONS {
        counter!(AUTH_FAILURES, "listener" => listener, "reason" => reason).increment(0);
    }
}

pub(crate) fn failure(listener: &'static str, reason: &'static str) {
    counter!(AUTH_FAILURES, "listener" => listener, "reason" => reason).increment(1);
}

/// Re-reads of the `[auth]` tokens after the config file changed, by `result` (`ok`,
/// `error`: the tokens in force stayed).
pub const AUTH_RELOADS: &str = "clew_auth_reloads_total";

pub fn reload(result: &'static str) {
    describe_counter!(
        AUTH_RELOADS,
        Unit::Count,
        "re-reads of the [auth] tokens after the config file changed"
    );
    counter!(AUTH_RELOADS, "result" => result).increment(1);
}
