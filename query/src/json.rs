//! The shapes the API answers with.
//!
//! Conventions: ids are lowercase hex; unix-nanosecond timestamps are decimal *strings*
//! (they exceed 2^53, where JavaScript numbers lose precision); durations and counts are
//! numbers; attribute maps are JSON objects (`{"key": value}`). Span data is returned
//! verbatim as JSON string data: HTML in a span name stays `<b>…</b>` in the JSON and it is
//! the renderer's job to show it as text.

use std::collections::BTreeMap;

use clew_proto::model::{attributes_to_json, repair, Event, Link};
use clew_proto::Span;
use clew_store::StoredTrace;
use serde::Serialize;
use serde_json::Value;

use crate::assemble::{self, TraceSummary};

/// Every error answer.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub error: String,
}

/// `GET /api/v1/traces/{trace_id}` (and each trace of `?full=true` lookups).
#[derive(Debug, Serialize)]
pub struct TraceJson {
    pub trace_id: String,
    pub truncated: bool,
    pub span_count: usize,
    /// In [`assemble::tree_order`].
    pub spans: Vec<SpanJson>,
}

impl TraceJson {
    pub fn new(trace: &StoredTrace) -> Self {
        let spans = assemble::tree_order(&trace.spans)
            .into_iter()
            .map(|i| SpanJson::new(&trace.spans[i]))
            .collect();
        TraceJson {
            trace_id: trace.trace_id.to_hex(),
            truncated: trace.truncated,
            span_count: trace.spans.len(),
            spans,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SpanJson {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub service: String,
    pub name: String,
    pub kind: &'static str,
    pub start_time_unix_nano: String,
    pub end_time_unix_nano: String,
    pub duration_nanos: u64,
    pub status: StatusJson,
    pub attributes: Value,
    pub events: Vec<EventJson>,
    pub links: Vec<LinkJson>,
    pub resource: ResourceJson,
    pub scope: ScopeJson,
    pub business_keys: BTreeMap<String, String>,
    pub trace_state: String,
    pub flags: u32,
    pub dropped_attributes_count: u32,
    pub dropped_events_count: u32,
    pub dropped_links_count: u32,
    /// Names of the repairs made while validating the span (see [`repair_names`]).
    pub repairs: Vec<&'static str>,
}

#[derive(Debug, Serialize)]
pub struct StatusJson {
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct EventJson {
    pub time_unix_nano: String,
    pub name: String,
    pub attributes: Value,
    pub dropped_attributes_count: u32,
}

#[derive(Debug, Serialize)]
pub struct LinkJson {
    pub trace_id: String,
    pub span_id: String,
    pub trace_state: String,
    pub attributes: Value,
}

#[derive(Debug, Serialize)]
pub struct ResourceJson {
    pub attributes: Value,
    pub schema_url: String,
}

#[derive(Debug, Serialize)]
pub struct ScopeJson {
    pub name: String,
    pub version: String,
}

impl SpanJson {
    pub fn new(span: &Span) -> Self {
        let mut business_keys = BTreeMap::new();
        for key in &span.business_keys {
            business_keys
                .entry(key.name.clone())
                .or_insert_with(|| key.value.clone());
        }
        SpanJson {
            trace_id: span.trace_id.to_hex(),
            span_id: span.span_id.to_hex(),
            parent_span_id: span.parent_span_id.map(|p| p.to_hex()),
            service: span.service_name.clone(),
            name: span.name.clone(),
            kind: span.kind.as_str(),
            start_time_unix_nano: span.start_unix_nano.to_string(),
            end_time_unix_nano: span.end_unix_nano.to_string(),
            duration_nanos: span.duration_nanos(),
            status: StatusJson {
                code: span.status_code.as_str(),
                message: span.status_message.clone(),
            },
            attributes: attributes_to_json(&span.attributes),
            events: span.events.iter().map(EventJson::new).collect(),
            links: span.links.iter().map(LinkJson::new).collect(),
            resource: ResourceJson {
                attributes: attributes_to_json(&span.resource.attributes),
                schema_url: span.resource.schema_url.clone(),
            },
            scope: ScopeJson {
                name: span.scope.name.clone(),
                version: span.scope.version.clone(),
            },
            business_keys,
            trace_state: span.trace_state.clone(),
            flags: span.flags,
            dropped_attributes_count: span.dropped_attributes_count,
            dropped_events_count: span.dropped_events_count,
            dropped_links_count: span.dropped_links_count,
            repairs: repair_names(span.repairs),
        }
    }
}

impl EventJson {
    fn new(event: &Event) -> Self {
        EventJson {
            time_unix_nano: event.time_unix_nano.to_string(),
            name: event.name.clone(),
            attributes: attributes_to_json(&event.attributes),
            dropped_attributes_count: event.dropped_attributes_count,
        }
    }
}

impl LinkJson {
    fn new(link: &Link) -> Self {
        LinkJson {
            // links are stored as OTLP sent them (raw bytes, not validated)
            trace_id: hex::encode(&link.trace_id),
            span_id: hex::encode(&link.span_id),
            trace_state: link.trace_state.clone(),
            attributes: attributes_to_json(&link.attributes),
        }
    }
}

/// The names of the bits set in a span's `repairs`, in bit order; unknown bits are
/// reported as `"unknown"` (once).
pub fn repair_names(bits: u32) -> Vec<&'static str> {
    const NAMES: [(u32, &str); 7] = [
        (repair::PARENT_ID_DROPPED, "parent_id_dropped"),
        (repair::END_BEFORE_START, "end_before_start"),
        (repair::ZERO_START, "zero_start"),
        (repair::EMPTY_NAME, "empty_name"),
        (repair::MISSING_SERVICE, "missing_service"),
        (repair::TRUNCATED, "truncated"),
        (repair::NESTING_CUT, "nesting_cut"),
    ];
    let mut names: Vec<&'static str> = NAMES
        .iter()
        .filter(|(bit, _)| bits & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    let known = NAMES.iter().fold(0, |acc, (bit, _)| acc | bit);
    if bits & !known != 0 {
        names.push("unknown");
    }
    names
}

/// One entry of a result list.
#[derive(Debug, Serialize)]
pub struct SummaryJson {
    pub trace_id: String,
    pub root_service: Option<String>,
    pub root_operation: Option<String>,
    pub start_time_unix_nano: String,
    pub duration_nanos: u64,
    pub span_count: usize,
    pub error_count: usize,
    pub services: Vec<ServiceJson>,
    pub business_keys: BTreeMap<String, String>,
    pub truncated: bool,
}

#[derive(Debug, Serialize)]
pub struct ServiceJson {
    pub name: String,
    pub span_count: usize,
    pub error_count: usize,
}

impl SummaryJson {
    pub fn new(trace: &StoredTrace, summary: TraceSummary) -> Self {
        SummaryJson {
            trace_id: trace.trace_id.to_hex(),
            root_service: summary.root_service,
            root_operation: summary.root_operation,
            start_time_unix_nano: summary.start_unix_nano.to_string(),
            duration_nanos: summary.duration_nanos,
            span_count: summary.span_count,
            error_count: summary.error_count,
            services: summary
                .services
                .into_iter()
                .map(|s| ServiceJson {
                    name: s.name,
                    span_count: s.span_count,
                    error_count: s.error_count,
                })
                .collect(),
            business_keys: summary.business_keys,
            truncated: trace.truncated,
        }
    }
}

/// `GET /api/v1/search`, `GET /api/v1/keys/{name}/{value}`: summaries, or whole traces
/// with `?full=true`, newest first.
#[derive(Debug, Serialize)]
pub struct TracesPage<T> {
    pub traces: Vec<T>,
    /// Pass back as `cursor` for the next page; `null` when there is none.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ServicesJson {
    pub services: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct OperationsJson {
    pub operations: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clew_store::conformance::fixtures::{checkout_trace, trace_id, BASE_TIME};

    #[test]
    fn span_shape() {
        let spans = checkout_trace(trace_id(1), "12345", BASE_TIME, true);
        let v = serde_json::to_value(SpanJson::new(&spans[3])).unwrap();
        assert_eq!(v["start_time_unix_nano"], "1700000000003000000");
        assert_eq!(v["duration_nanos"], 20_000_000);
        assert_eq!(v["kind"], "client");
        assert_eq!(v["status"]["code"], "error");
        assert_eq!(v["status"]["message"], "card declined for order");
        assert_eq!(v["events"][0]["name"], "exception");
        assert_eq!(v["events"][0]["time_unix_nano"], "1700000000003000001");
        assert_eq!(
            v["events"][0]["attributes"]["exception.type"],
            "PaymentDeclinedError"
        );
        assert_eq!(v["attributes"]["db.system"], "postgresql");
        assert_eq!(v["attributes"]["http.status_code"], 200);
        assert_eq!(v["resource"]["attributes"]["service.name"], "payments");
        assert_eq!(v["scope"]["name"], "clew-fixtures");
        assert_eq!(v["repairs"], serde_json::json!([]));
        let root = serde_json::to_value(SpanJson::new(&spans[0])).unwrap();
        assert_eq!(root["parent_span_id"], Value::Null);
        assert_eq!(root["business_keys"]["order_id"], "12345");
        let pay = serde_json::to_value(SpanJson::new(&spans[2])).unwrap();
        assert_eq!(pay["links"][0]["span_id"], "0000000000000008");
        assert_eq!(pay["links"][0]["attributes"]["link.kind"], "follows_from");
    }

    #[test]
    fn repairs_are_named() {
        assert!(repair_names(0).is_empty());
        assert_eq!(
            repair_names(repair::ZERO_START | repair::MISSING_SERVICE),
            ["zero_start", "missing_service"]
        );
        assert_eq!(repair_names(1 << 31), ["unknown"]);
    }
}
