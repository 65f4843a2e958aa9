//! OTLP trace requests with invalid UTF-8 in their strings, kept instead of refused.
//!
//! prost refuses a whole message when any `string` field holds bytes that are not UTF-8,
//! so one bad attribute value would cost every good span sent with it. When that happens,
//! the request is decoded a second time with the messages below — the same field numbers
//! and wire types as OTLP's trace messages, every `string` read as `bytes` — and turned
//! into the ordinary request with each invalid sequence replaced by U+FFFD (what Jaeger
//! does). The spans that carried one (in their own strings, or their resource's or scope's)
//! are reported so that validation flags them ([`crate::model::repair::INVALID_UTF8`]).
//!
//! Only the failing requests pay for the second decode; valid ones never reach this module.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest as Request;
use opentelemetry_proto::tonic::common::v1 as common;
use opentelemetry_proto::tonic::resource::v1 as resource;
use opentelemetry_proto::tonic::trace::v1 as trace;
use prost::Message;

use crate::from_otlp::{convert_request_with, Converted, Limits};
use crate::model::repair;

/// A request decoded with invalid UTF-8 replaced, and, per span in request order, whether
/// that span (or its resource or scope) had some.
#[derive(Debug, Clone, PartialEq)]
pub struct Repaired {
    pub request: Request,
    pub invalid_utf8: Vec<bool>,
}

/// Whether a prost decode error is the invalid-UTF-8 one (the only failure this module
/// can repair).
pub fn is_invalid_utf8(e: &prost::DecodeError) -> bool {
    e.to_string().contains("UTF-8")
}

/// Decodes `bytes` as an OTLP trace request, replacing invalid UTF-8. Fails exactly where
/// a strict decode fails for any other reason.
pub fn decode(bytes: &[u8]) -> Result<Repaired, prost::DecodeError> {
    let raw = RawRequest::decode(bytes)?;
    let mut invalid_utf8 = Vec::new();
    let resource_spans = raw
        .resource_spans
        .into_iter()
        .map(|rs| {
            let mut res_bad = false;
            let resource = rs.resource.map(|r| resource::Resource {
                attributes: attributes(r.attributes, &mut res_bad),
                dropped_attributes_count: r.dropped_attributes_count,
                entity_refs: r
                    .entity_refs
                    .into_iter()
                    .map(|e| common::EntityRef {
                        schema_url: text(e.schema_url, &mut res_bad),
                        r#type: text(e.r#type, &mut res_bad),
                        id_keys: e
                            .id_keys
                            .into_iter()
                            .map(|k| text(k, &mut res_bad))
                            .collect(),
                        description_keys: e
                            .description_keys
                            .into_iter()
                            .map(|k| text(k, &mut res_bad))
                            .collect(),
                    })
                    .collect(),
            });
            let schema_url = text(rs.schema_url, &mut res_bad);
            let scope_spans = rs
                .scope_spans
                .into_iter()
                .map(|ss| {
                    let mut scope_bad = res_bad;
                    let scope = ss.scope.map(|s| common::InstrumentationScope {
                        name: text(s.name, &mut scope_bad),
                        version: text(s.version, &mut scope_bad),
                        attributes: attributes(s.attributes, &mut scope_bad),
                        dropped_attributes_count: s.dropped_attributes_count,
                    });
                    let schema_url = text(ss.schema_url, &mut scope_bad);
                    let spans = ss
                        .spans
                        .into_iter()
                        .map(|s| {
                            let mut bad = scope_bad;
                            let span = span(s, &mut bad);
                            invalid_utf8.push(bad);
                            span
                        })
                        .collect();
                    trace::ScopeSpans {
                        scope,
                        spans,
                        schema_url,
                    }
                })
                .collect();
            trace::ResourceSpans {
                resource,
                scope_spans,
                schema_url,
            }
        })
        .collect();
    Ok(Repaired {
        request: Request { resource_spans },
        invalid_utf8,
    })
}

/// Validates and converts a repaired request like any other ([`convert_request_with`]),
/// flagging the spans that had invalid UTF-8 with [`repair::INVALID_UTF8`].
pub fn convert(repaired: Repaired, limits: &Limits, now_unix_nano: u64) -> Converted {
    convert_request_with(
        repaired.request,
        limits,
        now_unix_nano,
        repaired.invalid_utf8,
        |span, bad| {
            if bad {
                span.repairs |= repair::INVALID_UTF8;
            }
        },
    )
}

fn text(bytes: Vec<u8>, bad: &mut bool) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| {
        *bad = true;
        String::from_utf8_lossy(e.as_bytes()).into_owned()
    })
}

fn attributes(raw: Vec<RawKeyValue>, bad: &mut bool) -> Vec<common::KeyValue> {
    raw.into_iter()
        .map(|kv| common::KeyValue {
            key: text(kv.key, bad),
            value: kv.value.map(|v| any_value(v, bad)),
            key_strindex: kv.key_strindex,
        })
        .collect()
}

fn any_value(raw: RawAnyValue, bad: &mut bool) -> common::AnyValue {
    use common::any_value::Value as V;
    let value = raw.value.map(|v| match v {
        RawValue::StringValue(s) => V::StringValue(text(s, bad)),
        RawValue::BoolValue(b) => V::BoolValue(b),
        RawValue::IntValue(i) => V::IntValue(i),
        RawValue::DoubleValue(d) => V::DoubleValue(d),
        RawValue::ArrayValue(a) => V::ArrayValue(common::ArrayValue {
            values: a.values.into_iter().map(|v| any_value(v, bad)).collect(),
        }),
        RawValue::KvlistValue(l) => V::KvlistValue(common::KeyValueList {
            values: attributes(l.values, bad),
        }),
        RawValue::BytesValue(b) => V::BytesValue(b),
        RawValue::StringValueStrindex(i) => V::StringValueStrindex(i),
    });
    common::AnyValue { value }
}

fn span(s: RawSpan, bad: &mut bool) -> trace::Span {
    trace::Span {
        trace_id: s.trace_id,
        span_id: s.span_id,
        trace_state: text(s.trace_state, bad),
        parent_span_id: s.parent_span_id,
        flags: s.flags,
        name: text(s.name, bad),
        kind: s.kind,
        start_time_unix_nano: s.start_time_unix_nano,
        end_time_unix_nano: s.end_time_unix_nano,
        attributes: attributes(s.attributes, bad),
        dropped_attributes_count: s.dropped_attributes_count,
        events: s
            .events
            .into_iter()
            .map(|e| trace::span::Event {
                time_unix_nano: e.time_unix_nano,
                name: text(e.name, bad),
                attributes: attributes(e.attributes, bad),
                dropped_attributes_count: e.dropped_attributes_count,
            })
            .collect(),
        dropped_events_count: s.dropped_events_count,
        links: s
            .links
            .into_iter()
            .map(|l| trace::span::Link {
                trace_id: l.trace_id,
                span_id: l.span_id,
                trace_state: text(l.trace_state, bad),
                attributes: attributes(l.attributes, bad),
                dropped_attributes_count: l.dropped_attributes_count,
                flags: l.flags,
            })
            .collect(),
        dropped_links_count: s.dropped_links_count,
        status: s.status.map(|st| trace::Status {
            message: text(st.message, bad),
            code: st.code,
        }),
    }
}

// OTLP's trace messages with every `string` as `bytes` (same tags and wire types; see
// opentelemetry-proto's trace/v1, common/v1 and resource/v1 definitions).

#[derive(Clone, PartialEq, Message)]
struct RawRequest {
    #[prost(message, repeated, tag = "1")]
    resource_spans: Vec<RawResourceSpans>,
}

#[derive(Clone, PartialEq, Message)]
struct RawResourceSpans {
    #[prost(message, optional, tag = "1")]
    resource: Option<RawResource>,
    #[prost(message, repeated, tag = "2")]
    scope_spans: Vec<RawScopeSpans>,
    #[prost(bytes = "vec", tag = "3")]
    schema_url: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct RawResource {
    #[prost(message, repeated, tag = "1")]
    attributes: Vec<RawKeyValue>,
    #[prost(uint32, tag = "2")]
    dropped_attributes_count: u32,
    #[prost(message, repeated, tag = "3")]
    entity_refs: Vec<RawEntityRef>,
}

#[derive(Clone, PartialEq, Message)]
struct RawEntityRef {
    #[prost(bytes = "vec", tag = "1")]
    schema_url: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    r#type: Vec<u8>,
    #[prost(bytes = "vec", repeated, tag = "3")]
    id_keys: Vec<Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "4")]
    description_keys: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
struct RawScopeSpans {
    #[prost(message, optional, tag = "1")]
    scope: Option<RawScope>,
    #[prost(message, repeated, tag = "2")]
    spans: Vec<RawSpan>,
    #[prost(bytes = "vec", tag = "3")]
    schema_url: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct RawScope {
    #[prost(bytes = "vec", tag = "1")]
    name: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    version: Vec<u8>,
    #[prost(message, repeated, tag = "3")]
    attributes: Vec<RawKeyValue>,
    #[prost(uint32, tag = "4")]
    dropped_attributes_count: u32,
}

#[derive(Clone, PartialEq, Message)]
struct RawSpan {
    #[prost(bytes = "vec", tag = "1")]
    trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    span_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    trace_state: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    parent_span_id: Vec<u8>,
    #[prost(fixed32, tag = "16")]
    flags: u32,
    #[prost(bytes = "vec", tag = "5")]
    name: Vec<u8>,
    #[prost(int32, tag = "6")]
    kind: i32,
    #[prost(fixed64, tag = "7")]
    start_time_unix_nano: u64,
    #[prost(fixed64, tag = "8")]
    end_time_unix_nano: u64,
    #[prost(message, repeated, tag = "9")]
    attributes: Vec<RawKeyValue>,
    #[prost(uint32, tag = "10")]
    dropped_attributes_count: u32,
    #[prost(message, repeated, tag = "11")]
    events: Vec<RawEvent>,
    #[prost(uint32, tag = "12")]
    dropped_events_count: u32,
    #[prost(message, repeated, tag = "13")]
    links: Vec<RawLink>,
    #[prost(uint32, tag = "14")]
    dropped_links_count: u32,
    #[prost(message, optional, tag = "15")]
    status: Option<RawStatus>,
}

#[derive(Clone, PartialEq, Message)]
struct RawEvent {
    #[prost(fixed64, tag = "1")]
    time_unix_nano: u64,
    #[prost(bytes = "vec", tag = "2")]
    name: Vec<u8>,
    #[prost(message, repeated, tag = "3")]
    attributes: Vec<RawKeyValue>,
    #[prost(uint32, tag = "4")]
    dropped_attributes_count: u32,
}

#[derive(Clone, PartialEq, Message)]
struct RawLink {
    #[prost(bytes = "vec", tag = "1")]
    trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    span_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    trace_state: Vec<u8>,
    #[prost(message, repeated, tag = "4")]
    attributes: Vec<RawKeyValue>,
    #[prost(uint32, tag = "5")]
    dropped_attributes_count: u32,
    #[prost(fixed32, tag = "6")]
    flags: u32,
}

#[derive(Clone, PartialEq, Message)]
struct RawStatus {
    #[prost(bytes = "vec", tag = "2")]
    message: Vec<u8>,
    #[prost(int32, tag = "3")]
    code: i32,
}

#[derive(Clone, PartialEq, Message)]
struct RawKeyValue {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(message, optional, tag = "2")]
    value: Option<RawAnyValue>,
    #[prost(int32, tag = "3")]
    key_strindex: i32,
}

#[derive(Clone, PartialEq, Message)]
struct RawAnyValue {
    #[prost(oneof = "RawValue", tags = "1, 2, 3, 4, 5, 6, 7, 8")]
    value: Option<RawValue>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum RawValue {
    #[prost(bytes = "vec", tag = "1")]
    StringValue(Vec<u8>),
    #[prost(bool, tag = "2")]
    BoolValue(bool),
    #[prost(int64, tag = "3")]
    IntValue(i64),
    #[prost(double, tag = "4")]
    DoubleValue(f64),
    #[prost(message, tag = "5")]
    ArrayValue(RawArrayValue),
    #[prost(message, tag = "6")]
    KvlistValue(RawKeyValueList),
    #[prost(bytes = "vec", tag = "7")]
    BytesValue(Vec<u8>),
    #[prost(int32, tag = "8")]
    StringValueStrindex(i32),
}

#[derive(Clone, PartialEq, Message)]
struct RawArrayValue {
    #[prost(message, repeated, tag = "1")]
    values: Vec<RawAnyValue>,
}

#[derive(Clone, PartialEq, Message)]
struct RawKeyValueList {
    #[prost(message, repeated, tag = "1")]
    values: Vec<RawKeyValue>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};

    fn kv(key: &str, v: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue(v.into())),
            }),
            ..Default::default()
        }
    }

    fn request(spans: Vec<trace::Span>) -> Request {
        Request {
            resource_spans: vec![trace::ResourceSpans {
                resource: Some(resource::Resource {
                    attributes: vec![kv("service.name", "svc")],
                    ..Default::default()
                }),
                scope_spans: vec![trace::ScopeSpans {
                    scope: Some(common::InstrumentationScope {
                        name: "lib".into(),
                        ..Default::default()
                    }),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    /// Replaces the first occurrence of `marker` in the encoding with bytes that are not
    /// UTF-8 of the same length (so every length prefix stays right).
    fn corrupt(bytes: &mut [u8], marker: &[u8]) {
        let at = bytes
            .windows(marker.len())
            .position(|w| w == marker)
            .expect("marker in the encoding");
        bytes[at] = 0xff;
        bytes[at + 1] = 0xfe;
    }

    #[test]
    fn a_valid_request_decodes_to_the_same_request() {
        let mut span = trace::Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "op".into(),
            attributes: vec![kv("a", "b")],
            ..Default::default()
        };
        span.events.push(trace::span::Event {
            name: "e".into(),
            attributes: vec![kv("x", "y")],
            ..Default::default()
        });
        span.status = Some(trace::Status {
            message: "boom".into(),
            code: 2,
        });
        let req = request(vec![span]);
        let out = decode(&req.encode_to_vec()).unwrap();
        assert_eq!(out.request, req);
        assert_eq!(out.invalid_utf8, vec![false]);
    }

    #[test]
    fn invalid_utf8_is_replaced_and_only_its_span_flagged() {
        let good = trace::Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "good".into(),
            attributes: vec![kv("k", "fine")],
            start_time_unix_nano: 1_900_000_000_000_000_000,
            end_time_unix_nano: 1_900_000_000_001_000_000,
            ..Default::default()
        };
        let bad = trace::Span {
            span_id: vec![3; 8],
            name: "bad".into(),
            attributes: vec![kv("k", "XXvalue")],
            ..good.clone()
        };
        let mut bytes = request(vec![good, bad]).encode_to_vec();
        corrupt(&mut bytes, b"XXvalue");
        let strict = Request::decode(bytes.as_slice()).unwrap_err();
        assert!(is_invalid_utf8(&strict), "{strict}");
        let out = decode(&bytes).unwrap();
        assert_eq!(out.invalid_utf8, vec![false, true]);
        let spans = &out.request.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans[0].attributes, vec![kv("k", "fine")]);
        assert_eq!(spans[1].attributes, vec![kv("k", "\u{FFFD}\u{FFFD}value")]);
        let converted = convert(out, &Limits::default(), 1_900_000_000_002_000_000);
        assert!(converted.rejected.is_empty(), "{:?}", converted.rejected);
        let flags: Vec<bool> = converted
            .spans
            .iter()
            .map(|s| s.repairs & repair::INVALID_UTF8 != 0)
            .collect();
        assert_eq!(flags, vec![false, true]);
    }

    #[test]
    fn invalid_utf8_in_the_resource_flags_all_its_spans() {
        let span = |id: u8| trace::Span {
            trace_id: vec![1; 16],
            span_id: vec![id; 8],
            name: "op".into(),
            ..Default::default()
        };
        let mut req = request(vec![span(1), span(2)]);
        req.resource_spans[0]
            .resource
            .as_mut()
            .unwrap()
            .attributes
            .push(kv("host.name", "XXhost"));
        let mut bytes = req.encode_to_vec();
        corrupt(&mut bytes, b"XXhost");
        assert_eq!(decode(&bytes).unwrap().invalid_utf8, vec![true, true]);
    }

    #[test]
    fn other_malformations_still_fail() {
        assert!(decode(&[0xff; 16]).is_err());
        let bytes = request(vec![trace::Span::default()]).encode_to_vec();
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
