//! Stored spans back to OTLP: the one conversion model → OTLP, for readers that speak OTLP
//! (Jaeger v2's remote storage streams `TracesData`).
//!
//! Spans are grouped under their resource, then their scope, in the order they come
//! (spans of one request share their `Arc`s; equal resources and scopes read back
//! separately are merged too). Everything OTLP carries is kept; what clew adds
//! (service name, business keys, repair flags) is derived data and is not sent.

use std::sync::Arc;

use crate::model::{Resource, Scope, Span};
use crate::otlp::common::v1::InstrumentationScope;
use crate::otlp::resource::v1::Resource as OtlpResource;
use crate::otlp::trace::v1::{self as otlp, ResourceSpans, ScopeSpans, TracesData};

/// One span as OTLP.
pub fn span(span: &Span) -> otlp::Span {
    otlp::Span {
        trace_id: span.trace_id.as_bytes().to_vec(),
        span_id: span.span_id.as_bytes().to_vec(),
        trace_state: span.trace_state.clone(),
        parent_span_id: span
            .parent_span_id
            .map(|p| p.as_bytes().to_vec())
            .unwrap_or_default(),
        flags: span.flags,
        name: span.name.clone(),
        kind: span.kind.as_i32(),
        start_time_unix_nano: span.start_unix_nano,
        end_time_unix_nano: span.end_unix_nano,
        attributes: span.attributes.clone(),
        dropped_attributes_count: span.dropped_attributes_count,
        events: span.events.clone(),
        dropped_events_count: span.dropped_events_count,
        links: span.links.clone(),
        dropped_links_count: span.dropped_links_count,
        status: Some(otlp::Status {
            message: span.status_message.clone(),
            code: span.status_code.as_i32(),
        }),
    }
}

fn resource(r: &Resource) -> OtlpResource {
    OtlpResource {
        attributes: r.attributes.clone(),
        dropped_attributes_count: r.dropped_attributes_count,
        entity_refs: Vec::new(),
    }
}

fn scope(s: &Scope) -> InstrumentationScope {
    InstrumentationScope {
        name: s.name.clone(),
        version: s.version.clone(),
        attributes: s.attributes.clone(),
        dropped_attributes_count: s.dropped_attributes_count,
    }
}

/// `spans` as one `TracesData`, grouped by resource, then scope.
pub fn traces_data<'a>(spans: impl IntoIterator<Item = &'a Span>) -> TracesData {
    group(spans.into_iter().map(|s| (s, span(s))))
}

/// `spans` as a sequence of `TracesData`, each holding whole spans of about `max_bytes`
/// encoded at most (a bigger span travels alone), so that no message of a stream exceeds
/// a receiver's limit (gRPC's default is 4 MiB).
pub fn traces_data_chunks(spans: &[Span], max_bytes: usize) -> Vec<TracesData> {
    let mut chunks = Vec::new();
    let mut current: Vec<(&Span, otlp::Span)> = Vec::new();
    let mut bytes = 0;
    for s in spans {
        let converted = span(s);
        let len = prost::Message::encoded_len(&converted);
        if !current.is_empty() && bytes + len > max_bytes {
            chunks.push(group(std::mem::take(&mut current)));
            bytes = 0;
        }
        bytes += len;
        current.push((s, converted));
    }
    if !current.is_empty() {
        chunks.push(group(current));
    }
    chunks
}

fn group<'a>(spans: impl IntoIterator<Item = (&'a Span, otlp::Span)>) -> TracesData {
    type Scopes<'a> = Vec<(&'a Arc<Scope>, Vec<otlp::Span>)>;
    let mut groups: Vec<(&'a Arc<Resource>, Scopes<'a>)> = Vec::new();
    for (s, converted) in spans {
        let same_resource = |r: &&Arc<Resource>| Arc::ptr_eq(r, &s.resource) || **r == s.resource;
        let at = match groups.iter().position(|(r, _)| same_resource(r)) {
            Some(at) => at,
            None => {
                groups.push((&s.resource, Vec::new()));
                groups.len() - 1
            }
        };
        let scopes = &mut groups[at].1;
        let same_scope = |sc: &&Arc<Scope>| Arc::ptr_eq(sc, &s.scope) || **sc == s.scope;
        match scopes.iter().position(|(sc, _)| same_scope(sc)) {
            Some(i) => scopes[i].1.push(converted),
            None => scopes.push((&s.scope, vec![converted])),
        }
    }
    TracesData {
        resource_spans: groups
            .into_iter()
            .map(|(r, scopes)| ResourceSpans {
                resource: Some(resource(r)),
                schema_url: r.schema_url.clone(),
                scope_spans: scopes
                    .into_iter()
                    .map(|(sc, spans)| ScopeSpans {
                        scope: Some(scope(sc)),
                        schema_url: sc.schema_url.clone(),
                        spans,
                    })
                    .collect(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::from_otlp::{convert_request, Limits};
    use crate::otlp::collector::trace::v1::ExportTraceServiceRequest;
    use crate::otlp::common::v1::{any_value, AnyValue, KeyValue};

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn otlp_span(id: u8, parent: Option<u8>) -> otlp::Span {
        otlp::Span {
            trace_id: vec![7; 16],
            span_id: vec![id; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            trace_state: "k=v".into(),
            flags: 0x101,
            name: format!("op-{id}"),
            kind: 2,
            start_time_unix_nano: 1_700_000_000_000_000_000 + u64::from(id),
            end_time_unix_nano: 1_700_000_000_500_000_000,
            attributes: vec![
                kv("s", any_value::Value::StringValue("x".into())),
                kv("i", any_value::Value::IntValue(-3)),
                kv("b", any_value::Value::BytesValue(vec![0, 255])),
            ],
            dropped_attributes_count: 2,
            events: vec![otlp::span::Event {
                time_unix_nano: 1_700_000_000_100_000_000,
                name: "exception".into(),
                attributes: vec![kv(
                    "exception.message",
                    any_value::Value::StringValue("boom".into()),
                )],
                dropped_attributes_count: 1,
            }],
            dropped_events_count: 3,
            links: vec![otlp::span::Link {
                trace_id: vec![9; 16],
                span_id: vec![9; 8],
                trace_state: String::new(),
                attributes: vec![],
                dropped_attributes_count: 0,
                flags: 0,
            }],
            dropped_links_count: 4,
            status: Some(otlp::Status {
                message: "bad".into(),
                code: 2,
            }),
        }
    }

    /// OTLP → model → OTLP gives back what came in (the conversion adds nothing that was
    /// not in the request, and loses nothing).
    #[test]
    fn round_trips_through_the_model() {
        let sent = ResourceSpans {
            resource: Some(OtlpResource {
                attributes: vec![kv(
                    "service.name",
                    any_value::Value::StringValue("svc".into()),
                )],
                dropped_attributes_count: 1,
                entity_refs: vec![],
            }),
            schema_url: "https://opentelemetry.io/schemas/1.20.0".into(),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "lib".into(),
                    version: "1.0".into(),
                    attributes: vec![kv("a", any_value::Value::BoolValue(true))],
                    dropped_attributes_count: 0,
                }),
                schema_url: "scope-schema".into(),
                spans: vec![otlp_span(1, None), otlp_span(2, Some(1))],
            }],
        };
        let request = ExportTraceServiceRequest {
            resource_spans: vec![sent.clone()],
        };
        let converted = convert_request(request, &Limits::default(), 1_700_000_001_000_000_000);
        assert!(converted.rejected.is_empty(), "{:?}", converted.rejected);
        let back = traces_data(converted.spans.iter());
        assert_eq!(back.resource_spans, vec![sent]);
    }

    #[test]
    fn groups_by_resource_then_scope() {
        let request = ExportTraceServiceRequest {
            resource_spans: ["a", "b", "a"]
                .iter()
                .enumerate()
                .map(|(i, service)| ResourceSpans {
                    resource: Some(OtlpResource {
                        attributes: vec![kv(
                            "service.name",
                            any_value::Value::StringValue((*service).into()),
                        )],
                        ..Default::default()
                    }),
                    schema_url: String::new(),
                    scope_spans: vec![ScopeSpans {
                        scope: None,
                        schema_url: String::new(),
                        spans: vec![otlp_span(i as u8 + 1, None)],
                    }],
                })
                .collect(),
        };
        let converted = convert_request(request, &Limits::default(), 1_700_000_001_000_000_000);
        let back = traces_data(converted.spans.iter());
        // the two equal "a" resources are one group, in first-seen order
        assert_eq!(back.resource_spans.len(), 2);
        assert_eq!(back.resource_spans[0].scope_spans[0].spans.len(), 2);
        assert_eq!(back.resource_spans[1].scope_spans[0].spans.len(), 1);
    }

    #[test]
    fn chunks_hold_whole_spans_within_the_budget() {
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: None,
                schema_url: String::new(),
                scope_spans: vec![ScopeSpans {
                    scope: None,
                    schema_url: String::new(),
                    spans: (1..=10).map(|i| otlp_span(i, None)).collect(),
                }],
            }],
        };
        let converted = convert_request(request, &Limits::default(), 1_700_000_001_000_000_000);
        let one = prost::Message::encoded_len(&span(&converted.spans[0]));
        let chunks = traces_data_chunks(&converted.spans, 3 * one);
        let sizes: Vec<usize> = chunks
            .iter()
            .map(|c| c.resource_spans[0].scope_spans[0].spans.len())
            .collect();
        assert_eq!(sizes, [3, 3, 3, 1]);
        // a budget below one span still sends every span, one per chunk
        assert_eq!(traces_data_chunks(&converted.spans, 1).len(), 10);
        assert!(traces_data_chunks(&[], 100).is_empty());
    }
}
