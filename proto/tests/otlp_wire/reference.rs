//! The OTLP/protobuf decoding that `from_otlp::decode_request` replaced, kept as the
//! reference it is tested against: prost's generated request, then `convert_request`; and
//! when prost refuses a string that is not UTF-8, a second decode of the request with the
//! messages below — OTLP's trace messages with every `string` read as `bytes` — each
//! invalid sequence replaced by U+FFFD, and the spans that carried one (in their own
//! strings, or their resource's or scope's) flagged `repair::INVALID_UTF8`.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest as Request;
use opentelemetry_proto::tonic::common::v1 as common;
use opentelemetry_proto::tonic::resource::v1 as resource;
use opentelemetry_proto::tonic::trace::v1 as trace;
use prost::Message;

use clew_proto::from_otlp::{convert_request, convert_request_with, Converted, Limits};
use clew_proto::model::repair;

/// prost's decode (with the second, lenient one for invalid UTF-8) and the conversion.
pub fn decode_and_convert(
    bytes: &[u8],
    limits: &Limits,
    now_unix_nano: u64,
) -> Result<Converted, prost::DecodeError> {
    match Request::decode(bytes) {
        Ok(request) => Ok(convert_request(request, limits, now_unix_nano)),
        Err(e) if e.to_string().contains("UTF-8") => {
            decode(bytes).map(|repaired| convert(repaired, limits, now_unix_nano))
        }
        Err(e) => Err(e),
    }
}

/// A request decoded with invalid UTF-8 replaced, and, per span in request order, whether
/// that span (or its resource or scope) had some.
struct Repaired {
    request: Request,
    invalid_utf8: Vec<bool>,
}

/// Decodes `bytes` as an OTLP trace request, replacing invalid UTF-8. Fails exactly where
/// a strict decode fails for any other reason.
fn decode(bytes: &[u8]) -> Result<Repaired, prost::DecodeError> {
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

/// Validates and converts a repaired request like any other (`convert_request_with`),
/// flagging the spans that had invalid UTF-8 with `repair::INVALID_UTF8`.
fn convert(repaired: Repaired, limits: &Limits, now_unix_nano: u64) -> Converted {
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
