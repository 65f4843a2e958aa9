//! `GET /api/v1/dependencies`: which service calls which, for a time range.
//!
//! ```text
//!  start/end/lookback ─▶ find trace ids (index, newest first, ≤ limit) ─▶ fetch traces ─▶ edges
//! ```
//!
//! An edge `parent → child` is counted once per span whose parent span (same trace) belongs
//! to another service; `error_count` counts those child spans with an error status. Spans
//! whose parent is missing from the trace contribute no edge.
//!
//! Sampling bound: only the newest `limit` traces of the range are read (default
//! [`DEFAULT_TRACES`], at most [`MAX_LIMIT`]); the answer says how many it read
//! (`traces_considered`) and whether older traces of the range were left out
//! (`more_traces`). Counts are therefore exact for small ranges and a sample of the newest
//! traffic for busy ones.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use clew_proto::{SpanId, TraceId};
use clew_store::trace_index::MAX_LIMIT;
use clew_store::StoredTrace;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::params::{self, shorten};

/// Traces read when the request gives no `limit`.
pub const DEFAULT_TRACES: usize = 500;

const PARAMS: &[&str] = &["start", "end", "lookback", "limit"];

/// The answer of `GET /api/v1/dependencies`.
#[derive(Debug, Serialize, PartialEq)]
pub struct DependenciesJson {
    /// Sorted by parent, then child.
    pub edges: Vec<EdgeJson>,
    /// Every service seen in the traces considered, sorted.
    pub services: Vec<String>,
    /// How many traces (the newest of the range) the edges were computed from.
    pub traces_considered: usize,
    /// The range holds older traces that were not read (the sampling bound was reached).
    pub more_traces: bool,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct EdgeJson {
    pub parent: String,
    pub child: String,
    pub call_count: u64,
    pub error_count: u64,
}

/// Validates the query string and turns it into an index query (only the time range and
/// the page size; an absent range means all retained traces).
pub fn parse(raw_query: Option<&str>, now_unix_nano: u64) -> Result<clew_store::TraceQuery> {
    for (name, _) in form_urlencoded::parse(raw_query.unwrap_or("").as_bytes()) {
        if !name.is_empty() && !PARAMS.contains(&name.as_ref()) {
            return Err(Error::bad_request(format!(
                "unknown query parameter `{}` (known: {})",
                shorten(&name),
                PARAMS.join(", ")
            )));
        }
    }
    let has_limit = form_urlencoded::parse(raw_query.unwrap_or("").as_bytes())
        .any(|(name, value)| name == "limit" && !value.is_empty());
    let mut query = params::parse_search(raw_query, now_unix_nano)?.query;
    if !has_limit {
        query.limit = DEFAULT_TRACES;
    }
    query.limit = query.limit.min(MAX_LIMIT);
    Ok(query)
}

/// Counts the cross-service parent → child calls of `traces`.
pub fn dependencies(traces: &[StoredTrace], more_traces: bool) -> DependenciesJson {
    let mut counts: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    let mut services = BTreeSet::new();
    for trace in traces {
        let service_of: HashMap<(TraceId, SpanId), &str> = trace
            .spans
            .iter()
            .map(|s| ((s.trace_id, s.span_id), s.service_name.as_str()))
            .collect();
        for span in &trace.spans {
            services.insert(span.service_name.clone());
            let Some(parent_id) = span.parent_span_id else {
                continue;
            };
            let Some(parent) = service_of.get(&(span.trace_id, parent_id)) else {
                continue;
            };
            if *parent == span.service_name {
                continue;
            }
            let entry = counts
                .entry((parent.to_string(), span.service_name.clone()))
                .or_default();
            entry.0 += 1;
            if span.is_error() {
                entry.1 += 1;
            }
        }
    }
    DependenciesJson {
        edges: counts
            .into_iter()
            .map(|((parent, child), (call_count, error_count))| EdgeJson {
                parent,
                child,
                call_count,
                error_count,
            })
            .collect(),
        services: services.into_iter().collect(),
        traces_considered: traces.len(),
        more_traces,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clew_store::conformance::fixtures::{checkout_trace, trace_id, BASE_TIME};

    fn stored(spans: Vec<clew_proto::Span>) -> StoredTrace {
        StoredTrace {
            trace_id: spans[0].trace_id,
            spans,
            truncated: false,
        }
    }

    fn edge(parent: &str, child: &str, call_count: u64, error_count: u64) -> EdgeJson {
        EdgeJson {
            parent: parent.into(),
            child: child.into(),
            call_count,
            error_count,
        }
    }

    #[test]
    fn counts_cross_service_calls_and_their_errors() {
        // frontend → checkout → payments(Charge) → payments(SELECT, fails): the failing
        // span's parent is in its own service, so it makes no edge
        let a = stored(checkout_trace(trace_id(1), "1", BASE_TIME, true));
        let mut b = stored(checkout_trace(trace_id(2), "2", BASE_TIME, false));
        b.spans[2].status_code = clew_proto::StatusCode::Error; // payments Charge
        let deps = dependencies(&[a, b], true);
        assert_eq!(
            deps.edges,
            [
                edge("checkout", "payments", 2, 1),
                edge("frontend", "checkout", 2, 0)
            ]
        );
        assert_eq!(deps.services, ["checkout", "frontend", "payments"]);
        assert_eq!(deps.traces_considered, 2);
        assert!(deps.more_traces);
    }

    #[test]
    fn spans_with_missing_parents_make_no_edge() {
        let mut t = stored(checkout_trace(trace_id(3), "3", BASE_TIME, false));
        t.spans.remove(1); // checkout: payments now points at a span that is not there
        let deps = dependencies(&[t], false);
        assert!(deps.edges.is_empty(), "{:?}", deps.edges);
        assert_eq!(deps.services, ["frontend", "payments"]);
    }

    #[test]
    fn only_time_range_and_limit_are_accepted() {
        let now = 1_800_000_000_000_000_000;
        assert_eq!(parse(None, now).unwrap().limit, DEFAULT_TRACES);
        assert_eq!(parse(Some("limit=5000"), now).unwrap().limit, MAX_LIMIT);
        let q = parse(Some("lookback=1h"), now).unwrap();
        assert_eq!(q.start_min_unix_nano, Some(now - 3_600_000_000_000));
        let e = parse(Some("service=x"), now).unwrap_err().to_string();
        assert!(e.contains("unknown query parameter `service`"), "{e}");
        assert!(parse(Some("lookback=banana"), now).is_err());
    }
}
