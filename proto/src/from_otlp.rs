//! The one conversion from OTLP to the span model, with per-span validation: from a
//! decoded request ([`convert_request`]: OTLP/JSON, Zipkin, Avro), or straight from the
//! protobuf bytes ([`decode_request`], in [`wire`]: OTLP/gRPC, OTLP/HTTP protobuf, Kafka
//! `otlp_proto`). Both take resources, scopes and spans through the same `Origin` steps.
//!
//! A bad span is rejected alone with a [`RejectReason`]; the other spans of the request
//! are kept. Repairable problems are repaired and flagged in [`Span::repairs`]
//! (`docs/robustness.md`, inputs 9–17):
//!
//! - trace/span id of the wrong length or all zeros: rejected;
//! - parent id all zeros or empty: root; wrong length: dropped, span kept and flagged;
//! - end before start: end := start; zero start: start := end; both zero: rejected;
//! - start far in the future or older than the accepted age: rejected;
//! - empty name / missing `service.name`: explicit placeholders;
//! - too many or too large attributes, events, links, too deep nesting: cut to
//!   [`Limits`], counted in `dropped_*`.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1 as otlp;

use crate::ids::{SpanId, TraceId};
use crate::model::{
    repair, Resource, Scope, Span, SpanKind, StatusCode, UNKNOWN_SERVICE, UNNAMED_SPAN,
};
use crate::reject::RejectReason;

pub mod wire;
pub use wire::{decode_request, WireError};

/// Placeholder for attribute values nested deeper than [`Limits::max_nesting_depth`].
pub const NESTING_PLACEHOLDER: &str = "[clew: value nested too deep]";

/// Size limits applied to every span on the way in.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Longest string or bytes attribute value kept, in bytes (cut at a char boundary).
    pub max_attribute_value_bytes: usize,
    /// Most attributes kept per span (and per resource, scope, event, link).
    pub max_attributes: usize,
    pub max_events: usize,
    pub max_links: usize,
    /// Longest span name, in bytes.
    pub max_name_bytes: usize,
    /// Deepest array/map nesting kept in an attribute value.
    pub max_nesting_depth: usize,
    /// Spans starting more than this far in the future are rejected.
    pub max_future_skew_nanos: u64,
    /// Spans starting more than this long ago are rejected (`None`: any age).
    pub max_age_nanos: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_attribute_value_bytes: 32 * 1024,
            max_attributes: 128,
            max_events: 128,
            max_links: 128,
            max_name_bytes: 1024,
            max_nesting_depth: 8,
            max_future_skew_nanos: 24 * 3600 * 1_000_000_000,
            max_age_nanos: None,
        }
    }
}

/// A span that was refused, with enough identity to say which in logs.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub reason: RejectReason,
    pub service_name: String,
    pub span_name: String,
}

/// Result of converting one export request.
#[derive(Debug, Default)]
pub struct Converted {
    pub spans: Vec<Span>,
    pub rejected: Vec<Rejected>,
}

impl Converted {
    /// Total spans seen (kept + rejected).
    pub fn total(&self) -> usize {
        self.spans.len() + self.rejected.len()
    }
}

/// Converts an OTLP export request into validated spans.
pub fn convert_request(
    req: ExportTraceServiceRequest,
    limits: &Limits,
    now_unix_nano: u64,
) -> Converted {
    convert_request_with(
        req,
        limits,
        now_unix_nano,
        std::iter::repeat(()),
        |_, ()| {},
    )
}

/// [`convert_request`], with one `extra` per input span (in request order) that `apply`
/// adds to the span if it is kept: what a decoder learned about a span besides its OTLP
/// fields (Avro business keys and repairs).
pub fn convert_request_with<T>(
    req: ExportTraceServiceRequest,
    limits: &Limits,
    now_unix_nano: u64,
    extras: impl IntoIterator<Item = T>,
    mut apply: impl FnMut(&mut Span, T),
) -> Converted {
    let mut extras = extras.into_iter();
    let mut out = Converted::default();
    for rs in req.resource_spans {
        let otlp_resource = rs.resource.unwrap_or_default();
        let origin = Origin::resource(
            otlp_resource.attributes,
            otlp_resource.dropped_attributes_count,
            rs.schema_url,
            limits,
        );
        for ss in rs.scope_spans {
            let otlp_scope = ss.scope.unwrap_or_default();
            let origin = origin.scope(
                otlp_scope.name,
                otlp_scope.version,
                otlp_scope.attributes,
                otlp_scope.dropped_attributes_count,
                ss.schema_url,
                limits,
            );
            out.spans.reserve(ss.spans.len());
            for span in ss.spans {
                let extra = extras.next();
                match with_parts(span, |parts| {
                    origin.convert_span(parts, limits, now_unix_nano)
                }) {
                    Ok(mut s) => {
                        if let Some(extra) = extra {
                            apply(&mut s, extra);
                        }
                        out.spans.push(s);
                    }
                    Err(r) => out.rejected.push(r),
                }
            }
        }
    }
    out
}

/// Where spans come from, validated once for all of them: their resource (with the service
/// name derived from it) and, below a `ScopeSpans`, their scope; the repairs these needed
/// go onto every span.
pub(crate) struct Origin {
    resource: Arc<Resource>,
    scope: Arc<Scope>,
    service_name: String,
    repairs: u32,
}

impl Origin {
    /// A `ResourceSpans`' resource, cut to the limits; `service.name` or the placeholder.
    pub(crate) fn resource(
        mut attributes: Vec<KeyValue>,
        mut dropped_attributes_count: u32,
        schema_url: String,
        limits: &Limits,
    ) -> Origin {
        let mut repairs = limit_attributes(&mut attributes, &mut dropped_attributes_count, limits);
        let service_name = match crate::model::find_attr(&attributes, "service.name")
            .map(crate::model::value_to_string)
        {
            Some(s) if !s.is_empty() => s,
            _ => {
                repairs |= repair::MISSING_SERVICE;
                UNKNOWN_SERVICE.to_string()
            }
        };
        Origin {
            resource: Arc::new(Resource {
                attributes,
                dropped_attributes_count,
                schema_url,
            }),
            scope: Arc::default(),
            service_name,
            repairs,
        }
    }

    /// The same resource below one `ScopeSpans`' scope, cut to the limits.
    pub(crate) fn scope(
        &self,
        name: String,
        version: String,
        mut attributes: Vec<KeyValue>,
        mut dropped_attributes_count: u32,
        schema_url: String,
        limits: &Limits,
    ) -> Origin {
        let repairs = limit_attributes(&mut attributes, &mut dropped_attributes_count, limits);
        Origin {
            resource: self.resource.clone(),
            scope: Arc::new(Scope {
                name,
                version,
                attributes,
                dropped_attributes_count,
                schema_url,
            }),
            service_name: self.service_name.clone(),
            repairs: self.repairs | repairs,
        }
    }

    /// One span: identity and times decide whether it is kept; everything else is cut to
    /// the limits. Each step returns the repair flags it set.
    pub(crate) fn convert_span(
        &self,
        span: SpanParts<'_>,
        limits: &Limits,
        now_unix_nano: u64,
    ) -> Result<Span, Rejected> {
        let reject = |reason: RejectReason| Rejected {
            reason,
            service_name: self.service_name.clone(),
            span_name: span.name.chars().take(128).collect(),
        };
        let (trace_id, span_id, parent_span_id, mut repairs) = span_ids(&span).map_err(reject)?;
        let (start, end, time_repairs) =
            span_times(&span, limits, now_unix_nano).map_err(reject)?;
        repairs |= time_repairs | self.repairs;

        let mut name = span.name;
        repairs |= limit_name(&mut name, limits);
        let mut attributes = span.attributes;
        let mut dropped_attributes_count = span.dropped_attributes_count;
        repairs |= limit_attributes(&mut attributes, &mut dropped_attributes_count, limits);
        let mut events = span.events;
        let mut dropped_events_count = span.dropped_events_count;
        repairs |= limit_events(&mut events, &mut dropped_events_count, limits);
        let mut links = span.links;
        let mut dropped_links_count = span.dropped_links_count;
        repairs |= limit_links(&mut links, &mut dropped_links_count, limits);
        let mut trace_state = span.trace_state;
        repairs |= limit_text(&mut trace_state, limits);
        let mut status_message = span.status_message;
        repairs |= limit_text(&mut status_message, limits);

        Ok(Span {
            tenant: Default::default(),
            trace_id,
            span_id,
            parent_span_id,
            trace_state,
            flags: span.flags,
            name,
            kind: SpanKind::from_i32(span.kind),
            start_unix_nano: start,
            end_unix_nano: end,
            attributes,
            dropped_attributes_count,
            events,
            dropped_events_count,
            links,
            dropped_links_count,
            status_code: StatusCode::from_i32(span.status_code),
            status_message,
            resource: self.resource.clone(),
            scope: self.scope.clone(),
            service_name: self.service_name.clone(),
            business_keys: Vec::new(),
            repairs,
        })
    }
}

/// One OTLP span as validation takes it: its ids borrowed (from the request message, or
/// from the protobuf bytes themselves), everything else owned and moved into the [`Span`].
#[derive(Default)]
pub(crate) struct SpanParts<'a> {
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub parent_span_id: &'a [u8],
    pub trace_state: String,
    pub flags: u32,
    pub name: String,
    pub kind: i32,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    pub attributes: Vec<KeyValue>,
    pub dropped_attributes_count: u32,
    pub events: Vec<otlp::span::Event>,
    pub dropped_events_count: u32,
    pub links: Vec<otlp::span::Link>,
    pub dropped_links_count: u32,
    pub status_message: String,
    pub status_code: i32,
}

/// Takes an OTLP span apart for `Origin::convert_span` (the parts borrow its ids).
fn with_parts<R>(span: otlp::Span, f: impl FnOnce(SpanParts<'_>) -> R) -> R {
    let otlp::Span {
        trace_id,
        span_id,
        parent_span_id,
        trace_state,
        flags,
        name,
        kind,
        start_time_unix_nano,
        end_time_unix_nano,
        attributes,
        dropped_attributes_count,
        events,
        dropped_events_count,
        links,
        dropped_links_count,
        status,
    } = span;
    let status = status.unwrap_or_default();
    f(SpanParts {
        trace_id: &trace_id,
        span_id: &span_id,
        parent_span_id: &parent_span_id,
        trace_state,
        flags,
        name,
        kind,
        start_time_unix_nano,
        end_time_unix_nano,
        attributes,
        dropped_attributes_count,
        events,
        dropped_events_count,
        links,
        dropped_links_count,
        status_message: status.message,
        status_code: status.code,
    })
}

/// Trace and span id (wrong length or all zeros: rejected) and the parent id (empty or all
/// zeros: a root; wrong length: dropped and flagged).
fn span_ids(span: &SpanParts<'_>) -> Result<(TraceId, SpanId, Option<SpanId>, u32), RejectReason> {
    let trace_id = TraceId::from_bytes(span.trace_id).map_err(|_| RejectReason::InvalidTraceId)?;
    let span_id = SpanId::from_bytes(span.span_id).map_err(|_| RejectReason::InvalidSpanId)?;
    let (parent_span_id, repairs) = match span.parent_span_id.len() {
        0 => (None, 0),
        8 => (SpanId::from_bytes(span.parent_span_id).ok(), 0), // all zeros: root
        _ => (None, repair::PARENT_ID_DROPPED),
    };
    Ok((trace_id, span_id, parent_span_id, repairs))
}

/// Start and end, repaired when one is missing or end is before start; rejected when both
/// are missing or start is outside the accepted window around `now_unix_nano`.
fn span_times(
    span: &SpanParts<'_>,
    limits: &Limits,
    now_unix_nano: u64,
) -> Result<(u64, u64, u32), RejectReason> {
    let (mut start, mut end) = (span.start_time_unix_nano, span.end_time_unix_nano);
    let mut repairs = 0;
    if start == 0 && end == 0 {
        return Err(RejectReason::MissingTimestamps);
    }
    if start == 0 {
        start = end;
        repairs |= repair::ZERO_START;
    }
    if end < start {
        end = start;
        repairs |= repair::END_BEFORE_START;
    }
    if start > now_unix_nano.saturating_add(limits.max_future_skew_nanos) {
        return Err(RejectReason::TimestampInFuture);
    }
    if let Some(max_age) = limits.max_age_nanos {
        if start < now_unix_nano.saturating_sub(max_age) {
            return Err(RejectReason::TimestampTooOld);
        }
    }
    Ok((start, end, repairs))
}

/// An empty name gets the placeholder; a long one is cut.
fn limit_name(name: &mut String, limits: &Limits) -> u32 {
    if name.is_empty() {
        *name = UNNAMED_SPAN.to_string();
        repair::EMPTY_NAME
    } else if truncate_str(name, limits.max_name_bytes) {
        repair::TRUNCATED
    } else {
        0
    }
}

/// Free text (trace state, status message) is cut like an attribute value.
fn limit_text(text: &mut String, limits: &Limits) -> u32 {
    if truncate_str(text, limits.max_attribute_value_bytes) {
        repair::TRUNCATED
    } else {
        0
    }
}

/// Cuts a list to `max` entries, counting what it dropped.
fn limit_count<T>(items: &mut Vec<T>, dropped: &mut u32, max: usize) -> u32 {
    if items.len() <= max {
        return 0;
    }
    *dropped = dropped.saturating_add((items.len() - max) as u32);
    items.truncate(max);
    repair::TRUNCATED
}

fn limit_events(events: &mut Vec<otlp::span::Event>, dropped: &mut u32, limits: &Limits) -> u32 {
    let mut repairs = limit_count(events, dropped, limits.max_events);
    for ev in events {
        if truncate_str(&mut ev.name, limits.max_name_bytes) {
            repairs |= repair::TRUNCATED;
        }
        repairs |= limit_attributes(&mut ev.attributes, &mut ev.dropped_attributes_count, limits);
    }
    repairs
}

fn limit_links(links: &mut Vec<otlp::span::Link>, dropped: &mut u32, limits: &Limits) -> u32 {
    let mut repairs = limit_count(links, dropped, limits.max_links);
    for link in links {
        repairs |= limit_text(&mut link.trace_state, limits);
        repairs |= limit_attributes(
            &mut link.attributes,
            &mut link.dropped_attributes_count,
            limits,
        );
    }
    repairs
}

/// Cuts `s` to at most `max` bytes at a char boundary. Returns whether it cut.
fn truncate_str(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    true
}

/// Applies count, size and nesting limits to a list of attributes. Returns repair flags.
fn limit_attributes(attrs: &mut Vec<KeyValue>, dropped: &mut u32, limits: &Limits) -> u32 {
    let mut repairs = limit_count(attrs, dropped, limits.max_attributes);
    for kv in attrs.iter_mut() {
        if truncate_str(&mut kv.key, limits.max_name_bytes) {
            repairs |= repair::TRUNCATED;
        }
        if let Some(v) = kv.value.as_mut() {
            repairs |= limit_value(v, 0, limits);
        }
    }
    repairs
}

fn limit_value(v: &mut AnyValue, depth: usize, limits: &Limits) -> u32 {
    let mut repairs = 0;
    match v.value.as_mut() {
        Some(Value::StringValue(s)) if s.len() > limits.max_attribute_value_bytes => {
            truncate_str(s, limits.max_attribute_value_bytes);
            repairs |= repair::TRUNCATED;
        }
        Some(Value::BytesValue(b)) if b.len() > limits.max_attribute_value_bytes => {
            b.truncate(limits.max_attribute_value_bytes);
            repairs |= repair::TRUNCATED;
        }
        Some(Value::ArrayValue(_)) | Some(Value::KvlistValue(_))
            if depth >= limits.max_nesting_depth =>
        {
            v.value = Some(Value::StringValue(NESTING_PLACEHOLDER.to_string()));
            repairs |= repair::NESTING_CUT;
        }
        Some(Value::ArrayValue(a)) => {
            if a.values.len() > limits.max_attributes {
                a.values.truncate(limits.max_attributes);
                repairs |= repair::TRUNCATED;
            }
            for item in &mut a.values {
                repairs |= limit_value(item, depth + 1, limits);
            }
        }
        Some(Value::KvlistValue(kvl)) => {
            if kvl.values.len() > limits.max_attributes {
                kvl.values.truncate(limits.max_attributes);
                repairs |= repair::TRUNCATED;
            }
            for kv in &mut kvl.values {
                if let Some(inner) = kv.value.as_mut() {
                    repairs |= limit_value(inner, depth + 1, limits);
                }
            }
        }
        _ => {}
    }
    repairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    use opentelemetry_proto::tonic::resource::v1::Resource as OtlpResource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status};

    const NOW: u64 = 1_800_000_000_000_000_000;

    fn span(trace: Vec<u8>, id: Vec<u8>) -> otlp::Span {
        otlp::Span {
            trace_id: trace,
            span_id: id,
            name: "op".into(),
            start_time_unix_nano: NOW - 1000,
            end_time_unix_nano: NOW,
            ..Default::default()
        }
    }

    fn request(spans: Vec<otlp::Span>, service: Option<&str>) -> ExportTraceServiceRequest {
        let attributes = service
            .map(|s| {
                vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(Value::StringValue(s.into())),
                    }),
                    ..Default::default()
                }]
            })
            .unwrap_or_default();
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(OtlpResource {
                    attributes,
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn bad_ids_reject_only_that_span() {
        let req = request(
            vec![
                span(vec![1; 16], vec![1; 8]),
                span(vec![0; 16], vec![2; 8]),
                span(vec![1; 15], vec![3; 8]),
                span(vec![1; 16], vec![0; 8]),
                span(vec![1; 16], vec![]),
            ],
            Some("svc"),
        );
        let out = convert_request(req, &Limits::default(), NOW);
        assert_eq!(out.spans.len(), 1);
        assert_eq!(out.spans[0].span_id, SpanId([1; 8]));
        let reasons: Vec<_> = out.rejected.iter().map(|r| r.reason).collect();
        assert_eq!(
            reasons,
            vec![
                RejectReason::InvalidTraceId,
                RejectReason::InvalidTraceId,
                RejectReason::InvalidSpanId,
                RejectReason::InvalidSpanId
            ]
        );
    }

    #[test]
    fn parent_ids() {
        let mut zero_parent = span(vec![1; 16], vec![1; 8]);
        zero_parent.parent_span_id = vec![0; 8];
        let mut bad_parent = span(vec![1; 16], vec![2; 8]);
        bad_parent.parent_span_id = vec![5; 3];
        let mut good_parent = span(vec![1; 16], vec![3; 8]);
        good_parent.parent_span_id = vec![1; 8];
        let out = convert_request(
            request(vec![zero_parent, bad_parent, good_parent], Some("s")),
            &Limits::default(),
            NOW,
        );
        assert_eq!(out.spans.len(), 3);
        assert_eq!(out.spans[0].parent_span_id, None);
        assert_eq!(out.spans[0].repairs & repair::PARENT_ID_DROPPED, 0);
        assert_eq!(out.spans[1].parent_span_id, None);
        assert_ne!(out.spans[1].repairs & repair::PARENT_ID_DROPPED, 0);
        assert_eq!(out.spans[2].parent_span_id, Some(SpanId([1; 8])));
    }

    #[test]
    fn time_repairs_and_rejections() {
        let mut backwards = span(vec![1; 16], vec![1; 8]);
        backwards.end_time_unix_nano = backwards.start_time_unix_nano - 500;
        let mut zero_start = span(vec![1; 16], vec![2; 8]);
        zero_start.start_time_unix_nano = 0;
        let mut both_zero = span(vec![1; 16], vec![3; 8]);
        both_zero.start_time_unix_nano = 0;
        both_zero.end_time_unix_nano = 0;
        let mut future = span(vec![1; 16], vec![4; 8]);
        future.start_time_unix_nano = u64::MAX - 1;
        future.end_time_unix_nano = u64::MAX;
        let out = convert_request(
            request(vec![backwards, zero_start, both_zero, future], Some("s")),
            &Limits::default(),
            NOW,
        );
        assert_eq!(out.spans.len(), 2);
        assert_eq!(out.spans[0].end_unix_nano, out.spans[0].start_unix_nano);
        assert_ne!(out.spans[0].repairs & repair::END_BEFORE_START, 0);
        assert_eq!(out.spans[1].start_unix_nano, NOW);
        assert_ne!(out.spans[1].repairs & repair::ZERO_START, 0);
        let reasons: Vec<_> = out.rejected.iter().map(|r| r.reason).collect();
        assert_eq!(
            reasons,
            vec![
                RejectReason::MissingTimestamps,
                RejectReason::TimestampInFuture
            ]
        );
    }

    #[test]
    fn placeholders_for_missing_names() {
        let mut s = span(vec![1; 16], vec![1; 8]);
        s.name = String::new();
        s.kind = 42;
        s.status = Some(Status {
            code: 7,
            message: "m".into(),
        });
        let out = convert_request(request(vec![s], None), &Limits::default(), NOW);
        let s = &out.spans[0];
        assert_eq!(s.name, UNNAMED_SPAN);
        assert_eq!(s.service_name, UNKNOWN_SERVICE);
        assert_eq!(s.kind, SpanKind::Unknown(42));
        assert_eq!(s.status_code, StatusCode::Unknown(7));
        assert_ne!(s.repairs & repair::MISSING_SERVICE, 0);
        assert_ne!(s.repairs & repair::EMPTY_NAME, 0);
    }

    #[test]
    fn limits_cut_and_count() {
        let limits = Limits {
            max_attributes: 2,
            max_events: 1,
            max_attribute_value_bytes: 4,
            max_nesting_depth: 2,
            ..Limits::default()
        };
        let mut s = span(vec![1; 16], vec![1; 8]);
        let big = |k: &str| KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue("héllo world".into())),
            }),
            ..Default::default()
        };
        s.attributes = vec![big("a"), big("b"), big("c")];
        s.dropped_attributes_count = 1;
        s.events = vec![Default::default(), Default::default(), Default::default()];
        // nested 5 deep
        let mut v = AnyValue {
            value: Some(Value::StringValue("leaf".into())),
        };
        for _ in 0..5 {
            v = AnyValue {
                value: Some(Value::ArrayValue(ArrayValue { values: vec![v] })),
            };
        }
        s.attributes[1].value = Some(AnyValue {
            value: Some(Value::KvlistValue(KeyValueList {
                values: vec![KeyValue {
                    key: "k".into(),
                    value: Some(v),
                    ..Default::default()
                }],
            })),
        });
        let out = convert_request(request(vec![s], Some("s")), &limits, NOW);
        let s = &out.spans[0];
        assert_eq!(s.attributes.len(), 2);
        assert_eq!(s.dropped_attributes_count, 2);
        assert_eq!(s.events.len(), 1);
        assert_eq!(s.dropped_events_count, 2);
        // "héllo" cut at 4 bytes stays valid UTF-8: "hél" is 4 bytes
        assert_eq!(
            crate::model::value_to_string(s.attributes[0].value.as_ref().unwrap()),
            "hél"
        );
        assert!(
            crate::model::value_to_json(s.attributes[1].value.as_ref().unwrap())
                .to_string()
                .contains(NESTING_PLACEHOLDER)
        );
        assert_ne!(s.repairs & repair::TRUNCATED, 0);
        assert_ne!(s.repairs & repair::NESTING_CUT, 0);
    }

    #[test]
    fn empty_request_is_empty() {
        let out = convert_request(
            ExportTraceServiceRequest::default(),
            &Limits::default(),
            NOW,
        );
        assert_eq!(out.total(), 0);
        let out = convert_request(request(vec![], Some("s")), &Limits::default(), NOW);
        assert_eq!(out.total(), 0);
    }
}
