//! OTLP/protobuf `ExportTraceServiceRequest` bytes → validated spans, in one pass over the
//! wire format, without the generated request in between.
//!
//! The decoded request of prost was the costliest step of the ingest path (issue 13): one
//! allocation per id, every span and attribute moved from the request into the model, and
//! a second decode of the whole request when any string was not UTF-8. Here the bytes go
//! straight into the model's types: ids are read from the input and checked in place,
//! the resource and scope of a `ResourceSpans` / `ScopeSpans` are decoded once and shared
//! by their spans (`Origin`), every string is checked as UTF-8 once, and the spans go
//! through the same validation as [`super::convert_request`]'s (`Origin::convert_span`).
//!
//! What comes out is what prost's decode and [`super::convert_request`] give, including
//! every way prost refuses a message — the differential test (`proto/tests/otlp_wire/`)
//! checks both on mutated and on hand-built requests:
//!
//! - the framing is read with `prost::encoding`'s own primitives (keys, varints, wire
//!   types, unknown fields skipped by `skip_field`); a field whose length points past the
//!   end of its message is refused;
//! - nesting: prost's recursion limit, 100 message levels below the request, is counted
//!   the same way (unknown groups included), so a value nested too deep fails here exactly
//!   where it fails there, and the recursion stays as shallow as prost's;
//! - a field that occurs twice: the last one wins for scalars, strings and bytes; messages
//!   (resource, scope, status, an attribute's value, an array or map inside a value) are
//!   merged, repeated fields appended — protobuf's rules, which prost follows;
//! - invalid UTF-8 is not a failure: the bytes are replaced by U+FFFD and the span is
//!   flagged [`repair::INVALID_UTF8`] when one of the strings it keeps (its own, its
//!   resource's or its scope's) had some. Only the strings that survive count: a string
//!   overwritten by a later occurrence of its field flags nothing.
//!
//! A request that fails to decode is refused whole; spans that fail validation are
//! rejected one by one, as in [`super::convert_request`].

use opentelemetry_proto::tonic::common::v1::{
    any_value::Value, AnyValue, ArrayValue, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use prost::encoding::{
    check_wire_type, decode_key, decode_varint, skip_field, DecodeContext, WireType,
};

use super::{Converted, Limits, Origin, SpanParts};
use crate::model::repair;

/// prost's recursion limit (`prost::RECURSION_LIMIT`, not public): the request's fields
/// are decoded with this budget, each embedded message's with one less, and a message (or
/// an unknown group) is refused where the budget of the message around it is 0.
const RECURSION_LIMIT: u32 = 100;

/// Why a protobuf body is not an `ExportTraceServiceRequest`.
#[derive(Debug, Clone, PartialEq)]
pub struct WireError {
    kind: Kind,
    /// `(message, field)` from the innermost out, as prost's errors carry them.
    path: Vec<(&'static str, &'static str)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// A key, varint, wire type or unknown field prost's primitives refused.
    Prost(prost::DecodeError),
    BufferUnderflow,
    RecursionLimitReached,
    UnexpectedEndGroupTag,
}

impl WireError {
    fn at(mut self, message: &'static str, field: &'static str) -> WireError {
        self.path.push((message, field));
        self
    }
}

impl From<Kind> for WireError {
    fn from(kind: Kind) -> Self {
        WireError {
            kind,
            path: Vec::new(),
        }
    }
}

impl From<prost::DecodeError> for WireError {
    fn from(e: prost::DecodeError) -> Self {
        Kind::Prost(e).into()
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("failed to decode Protobuf message: ")?;
        for (message, field) in self.path.iter().rev() {
            write!(f, "{message}.{field}: ")?;
        }
        match &self.kind {
            Kind::Prost(e) => {
                let text = e.to_string();
                let text = text
                    .strip_prefix("failed to decode Protobuf message: ")
                    .unwrap_or(&text);
                f.write_str(text)
            }
            Kind::BufferUnderflow => f.write_str("buffer underflow"),
            Kind::RecursionLimitReached => f.write_str("recursion limit reached"),
            Kind::UnexpectedEndGroupTag => f.write_str("unexpected end group tag"),
        }
    }
}

impl std::error::Error for WireError {}

type Result<T> = std::result::Result<T, WireError>;

/// Adds a field to the path of an error passing through it.
fn at(message: &'static str, field: &'static str) -> impl FnOnce(WireError) -> WireError {
    move |e| e.at(message, field)
}

/// Decodes an OTLP/protobuf export request and validates its spans; see the module docs.
pub fn decode_request(bytes: &[u8], limits: &Limits, now_unix_nano: u64) -> Result<Converted> {
    let mut out = Output {
        limits,
        now_unix_nano,
        converted: Converted::default(),
        attributes: Vec::new(),
    };
    let depth = RECURSION_LIMIT;
    let mut buf = bytes;
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        match tag {
            1 => message(wire_type, &mut buf, depth)
                .and_then(|m| resource_spans(m, depth - 1, &mut out))
                .map_err(at("ExportTraceServiceRequest", "resource_spans"))?,
            _ => skip(wire_type, tag, &mut buf, depth)?,
        }
    }
    Ok(out.converted)
}

/// How spans are validated, where they go, and the buffer each span's attributes are
/// read into (one allocation of the right size per span instead of a vector grown
/// attribute by attribute).
struct Output<'l> {
    limits: &'l Limits,
    now_unix_nano: u64,
    converted: Converted,
    attributes: Vec<KeyValue>,
}

/// A `ResourceSpans`: its resource and schema URL first (a first pass over its fields, as
/// they may come after the spans), then its scopes' spans.
fn resource_spans(bytes: &[u8], depth: u32, out: &mut Output<'_>) -> Result<()> {
    const NAME: &str = "ResourceSpans";
    let mut resource = Attributes::default();
    let mut schema_url: &[u8] = &[];
    let mut buf = bytes;
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        match tag {
            1 => message(wire_type, &mut buf, depth)
                .and_then(|m| merge_resource(m, depth - 1, &mut resource))
                .map_err(at(NAME, "resource"))?,
            2 => {
                message(wire_type, &mut buf, depth).map_err(at(NAME, "scope_spans"))?;
            }
            3 => {
                schema_url =
                    length_delimited(wire_type, &mut buf).map_err(at(NAME, "schema_url"))?
            }
            _ => skip(wire_type, tag, &mut buf, depth)?,
        }
    }
    let mut bad = resource.bad;
    let schema_url = text(schema_url, &mut bad);
    let origin = Origin::resource(resource.list, resource.dropped, schema_url, out.limits);
    let mut buf = bytes;
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        match tag {
            2 => message(wire_type, &mut buf, depth)
                .and_then(|m| scope_spans(m, depth - 1, &origin, bad, out))
                .map_err(at(NAME, "scope_spans"))?,
            // read in the first pass
            1 | 3 => {
                length_delimited(wire_type, &mut buf)?;
            }
            _ => skip(wire_type, tag, &mut buf, depth)?,
        }
    }
    Ok(())
}

/// A `ScopeSpans`: its scope and schema URL first, then its spans, each validated as it
/// is read.
fn scope_spans(
    bytes: &[u8],
    depth: u32,
    origin: &Origin,
    resource_bad: bool,
    out: &mut Output<'_>,
) -> Result<()> {
    const NAME: &str = "ScopeSpans";
    let mut scope = ScopeFields::default();
    let mut schema_url: &[u8] = &[];
    let mut buf = bytes;
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        match tag {
            1 => message(wire_type, &mut buf, depth)
                .and_then(|m| merge_scope(m, depth - 1, &mut scope))
                .map_err(at(NAME, "scope"))?,
            2 => {
                message(wire_type, &mut buf, depth).map_err(at(NAME, "spans"))?;
            }
            3 => {
                schema_url =
                    length_delimited(wire_type, &mut buf).map_err(at(NAME, "schema_url"))?
            }
            _ => skip(wire_type, tag, &mut buf, depth)?,
        }
    }
    let mut bad = resource_bad | scope.attributes.bad;
    let name = text(scope.name, &mut bad);
    let version = text(scope.version, &mut bad);
    let schema_url = text(schema_url, &mut bad);
    let origin = origin.scope(
        name,
        version,
        scope.attributes.list,
        scope.attributes.dropped,
        schema_url,
        out.limits,
    );
    let mut buf = bytes;
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        match tag {
            2 => message(wire_type, &mut buf, depth)
                .and_then(|m| span(m, depth - 1, &origin, bad, out))
                .map_err(at(NAME, "spans"))?,
            1 | 3 => {
                length_delimited(wire_type, &mut buf)?;
            }
            _ => skip(wire_type, tag, &mut buf, depth)?,
        }
    }
    Ok(())
}

/// One span, validated and added to `out` (kept or rejected).
fn span(
    bytes: &[u8],
    depth: u32,
    origin: &Origin,
    scope_bad: bool,
    out: &mut Output<'_>,
) -> Result<()> {
    const NAME: &str = "Span";
    let mut parts = SpanParts::default();
    let (mut trace_state, mut name, mut status_message): (&[u8], &[u8], &[u8]) = (&[], &[], &[]);
    let mut bad = scope_bad;
    let mut buf = bytes;
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        let b = &mut buf;
        match tag {
            1 => parts.trace_id = length_delimited(wire_type, b).map_err(at(NAME, "trace_id"))?,
            2 => parts.span_id = length_delimited(wire_type, b).map_err(at(NAME, "span_id"))?,
            3 => trace_state = length_delimited(wire_type, b).map_err(at(NAME, "trace_state"))?,
            4 => {
                parts.parent_span_id =
                    length_delimited(wire_type, b).map_err(at(NAME, "parent_span_id"))?
            }
            5 => name = length_delimited(wire_type, b).map_err(at(NAME, "name"))?,
            6 => parts.kind = varint(wire_type, b).map_err(at(NAME, "kind"))? as i32,
            7 => {
                parts.start_time_unix_nano =
                    fixed64(wire_type, b).map_err(at(NAME, "start_time_unix_nano"))?
            }
            8 => {
                parts.end_time_unix_nano =
                    fixed64(wire_type, b).map_err(at(NAME, "end_time_unix_nano"))?
            }
            9 => message(wire_type, b, depth)
                .and_then(|m| key_value(m, depth - 1, &mut bad))
                .map(|kv| out.attributes.push(kv))
                .map_err(at(NAME, "attributes"))?,
            10 => {
                parts.dropped_attributes_count =
                    varint(wire_type, b).map_err(at(NAME, "dropped_attributes_count"))? as u32
            }
            11 => message(wire_type, b, depth)
                .and_then(|m| event(m, depth - 1, &mut bad))
                .map(|e| parts.events.push(e))
                .map_err(at(NAME, "events"))?,
            12 => {
                parts.dropped_events_count =
                    varint(wire_type, b).map_err(at(NAME, "dropped_events_count"))? as u32
            }
            13 => message(wire_type, b, depth)
                .and_then(|m| link(m, depth - 1, &mut bad))
                .map(|l| parts.links.push(l))
                .map_err(at(NAME, "links"))?,
            14 => {
                parts.dropped_links_count =
                    varint(wire_type, b).map_err(at(NAME, "dropped_links_count"))? as u32
            }
            15 => message(wire_type, b, depth)
                .and_then(|m| {
                    merge_status(m, depth - 1, &mut status_message, &mut parts.status_code)
                })
                .map_err(at(NAME, "status"))?,
            16 => parts.flags = fixed32(wire_type, b).map_err(at(NAME, "flags"))?,
            _ => skip(wire_type, tag, b, depth)?,
        }
    }
    parts.attributes = out.attributes.drain(..).collect();
    parts.trace_state = text(trace_state, &mut bad);
    parts.name = text(name, &mut bad);
    parts.status_message = text(status_message, &mut bad);
    match origin.convert_span(parts, out.limits, out.now_unix_nano) {
        Ok(mut span) => {
            if bad {
                span.repairs |= repair::INVALID_UTF8;
            }
            out.converted.spans.push(span);
        }
        Err(rejected) => out.converted.rejected.push(rejected),
    }
    Ok(())
}

/// The attributes of a resource or scope, merged over every occurrence of the message.
#[derive(Default)]
struct Attributes {
    list: Vec<KeyValue>,
    dropped: u32,
    /// Whether a kept string among them was not UTF-8.
    bad: bool,
}

fn merge_resource(bytes: &[u8], depth: u32, into: &mut Attributes) -> Result<()> {
    const NAME: &str = "Resource";
    let mut buf = bytes;
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        let b = &mut buf;
        match tag {
            1 => message(wire_type, b, depth)
                .and_then(|m| key_value(m, depth - 1, &mut into.bad))
                .map(|kv| into.list.push(kv))
                .map_err(at(NAME, "attributes"))?,
            2 => {
                into.dropped =
                    varint(wire_type, b).map_err(at(NAME, "dropped_attributes_count"))? as u32
            }
            // not kept in the model; its strings still count for the UTF-8 flag
            3 => message(wire_type, b, depth)
                .and_then(|m| entity_ref(m, depth - 1, &mut into.bad))
                .map_err(at(NAME, "entity_refs"))?,
            _ => skip(wire_type, tag, b, depth)?,
        }
    }
    Ok(())
}

fn entity_ref(bytes: &[u8], depth: u32, bad: &mut bool) -> Result<()> {
    const NAME: &str = "EntityRef";
    let (mut schema_url, mut r#type): (&[u8], &[u8]) = (&[], &[]);
    let mut buf = bytes;
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        let b = &mut buf;
        match tag {
            1 => schema_url = length_delimited(wire_type, b).map_err(at(NAME, "schema_url"))?,
            2 => r#type = length_delimited(wire_type, b).map_err(at(NAME, "type"))?,
            3 => check_text(
                length_delimited(wire_type, b).map_err(at(NAME, "id_keys"))?,
                bad,
            ),
            4 => check_text(
                length_delimited(wire_type, b).map_err(at(NAME, "description_keys"))?,
                bad,
            ),
            _ => skip(wire_type, tag, b, depth)?,
        }
    }
    check_text(schema_url, bad);
    check_text(r#type, bad);
    Ok(())
}

/// An `InstrumentationScope`, merged over every occurrence: its strings as the last
/// occurrence left them.
#[derive(Default)]
struct ScopeFields<'a> {
    name: &'a [u8],
    version: &'a [u8],
    attributes: Attributes,
}

fn merge_scope<'a>(bytes: &'a [u8], depth: u32, into: &mut ScopeFields<'a>) -> Result<()> {
    const NAME: &str = "InstrumentationScope";
    let mut buf = bytes;
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        let b = &mut buf;
        match tag {
            1 => into.name = length_delimited(wire_type, b).map_err(at(NAME, "name"))?,
            2 => into.version = length_delimited(wire_type, b).map_err(at(NAME, "version"))?,
            3 => message(wire_type, b, depth)
                .and_then(|m| key_value(m, depth - 1, &mut into.attributes.bad))
                .map(|kv| into.attributes.list.push(kv))
                .map_err(at(NAME, "attributes"))?,
            4 => {
                into.attributes.dropped =
                    varint(wire_type, b).map_err(at(NAME, "dropped_attributes_count"))? as u32
            }
            _ => skip(wire_type, tag, b, depth)?,
        }
    }
    Ok(())
}

fn merge_status<'a>(
    bytes: &'a [u8],
    depth: u32,
    message: &mut &'a [u8],
    code: &mut i32,
) -> Result<()> {
    const NAME: &str = "Status";
    let mut buf = bytes;
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        let b = &mut buf;
        match tag {
            2 => *message = length_delimited(wire_type, b).map_err(at(NAME, "message"))?,
            3 => *code = varint(wire_type, b).map_err(at(NAME, "code"))? as i32,
            _ => skip(wire_type, tag, b, depth)?,
        }
    }
    Ok(())
}

fn event(bytes: &[u8], depth: u32, bad: &mut bool) -> Result<Event> {
    const NAME: &str = "Event";
    let mut ev = Event::default();
    let mut name: &[u8] = &[];
    let mut buf = bytes;
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        let b = &mut buf;
        match tag {
            1 => ev.time_unix_nano = fixed64(wire_type, b).map_err(at(NAME, "time_unix_nano"))?,
            2 => name = length_delimited(wire_type, b).map_err(at(NAME, "name"))?,
            3 => message(wire_type, b, depth)
                .and_then(|m| key_value(m, depth - 1, bad))
                .map(|kv| ev.attributes.push(kv))
                .map_err(at(NAME, "attributes"))?,
            4 => {
                ev.dropped_attributes_count =
                    varint(wire_type, b).map_err(at(NAME, "dropped_attributes_count"))? as u32
            }
            _ => skip(wire_type, tag, b, depth)?,
        }
    }
    ev.name = text(name, bad);
    Ok(ev)
}

fn link(bytes: &[u8], depth: u32, bad: &mut bool) -> Result<Link> {
    const NAME: &str = "Link";
    let mut link = Link::default();
    let (mut trace_id, mut span_id, mut trace_state): (&[u8], &[u8], &[u8]) = (&[], &[], &[]);
    let mut buf = bytes;
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        let b = &mut buf;
        match tag {
            1 => trace_id = length_delimited(wire_type, b).map_err(at(NAME, "trace_id"))?,
            2 => span_id = length_delimited(wire_type, b).map_err(at(NAME, "span_id"))?,
            3 => trace_state = length_delimited(wire_type, b).map_err(at(NAME, "trace_state"))?,
            4 => message(wire_type, b, depth)
                .and_then(|m| key_value(m, depth - 1, bad))
                .map(|kv| link.attributes.push(kv))
                .map_err(at(NAME, "attributes"))?,
            5 => {
                link.dropped_attributes_count =
                    varint(wire_type, b).map_err(at(NAME, "dropped_attributes_count"))? as u32
            }
            6 => link.flags = fixed32(wire_type, b).map_err(at(NAME, "flags"))?,
            _ => skip(wire_type, tag, b, depth)?,
        }
    }
    link.trace_id = trace_id.to_vec();
    link.span_id = span_id.to_vec();
    link.trace_state = text(trace_state, bad);
    Ok(link)
}

/// One attribute; `bad` is set when its key or a string in its value was not UTF-8.
fn key_value(bytes: &[u8], depth: u32, bad: &mut bool) -> Result<KeyValue> {
    const NAME: &str = "KeyValue";
    let mut key: &[u8] = &[];
    let mut value: Option<AnyValue> = None;
    // whether the value as merged so far holds a string that was not UTF-8
    let mut value_bad = false;
    let mut key_strindex = 0;
    let mut buf = bytes;
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        let b = &mut buf;
        match tag {
            1 => key = length_delimited(wire_type, b).map_err(at(NAME, "key"))?,
            2 => message(wire_type, b, depth)
                .and_then(|m| {
                    let v = value.get_or_insert_with(AnyValue::default);
                    merge_any_value(m, depth - 1, v, &mut value_bad)
                })
                .map_err(at(NAME, "value"))?,
            3 => key_strindex = varint(wire_type, b).map_err(at(NAME, "key_strindex"))? as i32,
            _ => skip(wire_type, tag, b, depth)?,
        }
    }
    *bad |= value_bad;
    Ok(KeyValue {
        key: text(key, bad),
        value,
        key_strindex,
    })
}

/// Merges one occurrence of an `AnyValue` into `v`. `bad` says whether `v` holds a string
/// that was not UTF-8; a field of the `oneof` replaces the value and with it that flag,
/// except for an array or map merged into one of the same kind.
fn merge_any_value(bytes: &[u8], depth: u32, v: &mut AnyValue, bad: &mut bool) -> Result<()> {
    const NAME: &str = "AnyValue";
    let mut buf = bytes;
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        let b = &mut buf;
        match tag {
            1 => {
                let raw = length_delimited(wire_type, b).map_err(at(NAME, "string_value"))?;
                *bad = false;
                v.value = Some(Value::StringValue(text(raw, bad)));
            }
            2 => {
                let n = varint(wire_type, b).map_err(at(NAME, "bool_value"))?;
                (v.value, *bad) = (Some(Value::BoolValue(n != 0)), false);
            }
            3 => {
                let n = varint(wire_type, b).map_err(at(NAME, "int_value"))?;
                (v.value, *bad) = (Some(Value::IntValue(n as i64)), false);
            }
            4 => {
                let n = fixed64(wire_type, b).map_err(at(NAME, "double_value"))?;
                (v.value, *bad) = (Some(Value::DoubleValue(f64::from_bits(n))), false);
            }
            5 => {
                let m = message(wire_type, b, depth).map_err(at(NAME, "array_value"))?;
                if !matches!(v.value, Some(Value::ArrayValue(_))) {
                    (v.value, *bad) = (Some(Value::ArrayValue(ArrayValue::default())), false);
                }
                let Some(Value::ArrayValue(array)) = &mut v.value else {
                    unreachable!("set above")
                };
                merge_array(m, depth - 1, &mut array.values, bad)
                    .map_err(at(NAME, "array_value"))?;
            }
            6 => {
                let m = message(wire_type, b, depth).map_err(at(NAME, "kvlist_value"))?;
                if !matches!(v.value, Some(Value::KvlistValue(_))) {
                    (v.value, *bad) = (Some(Value::KvlistValue(KeyValueList::default())), false);
                }
                let Some(Value::KvlistValue(list)) = &mut v.value else {
                    unreachable!("set above")
                };
                merge_kvlist(m, depth - 1, &mut list.values, bad)
                    .map_err(at(NAME, "kvlist_value"))?;
            }
            7 => {
                let raw = length_delimited(wire_type, b).map_err(at(NAME, "bytes_value"))?;
                (v.value, *bad) = (Some(Value::BytesValue(raw.to_vec())), false);
            }
            8 => {
                let n = varint(wire_type, b).map_err(at(NAME, "string_value_strindex"))?;
                (v.value, *bad) = (Some(Value::StringValueStrindex(n as i32)), false);
            }
            _ => skip(wire_type, tag, b, depth)?,
        }
    }
    Ok(())
}

fn merge_array(bytes: &[u8], depth: u32, into: &mut Vec<AnyValue>, bad: &mut bool) -> Result<()> {
    let mut buf = bytes;
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        match tag {
            1 => {
                let m = message(wire_type, &mut buf, depth).map_err(at("ArrayValue", "values"))?;
                let mut v = AnyValue::default();
                let mut v_bad = false;
                merge_any_value(m, depth - 1, &mut v, &mut v_bad)
                    .map_err(at("ArrayValue", "values"))?;
                *bad |= v_bad;
                into.push(v);
            }
            _ => skip(wire_type, tag, &mut buf, depth)?,
        }
    }
    Ok(())
}

fn merge_kvlist(bytes: &[u8], depth: u32, into: &mut Vec<KeyValue>, bad: &mut bool) -> Result<()> {
    let mut buf = bytes;
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        match tag {
            1 => message(wire_type, &mut buf, depth)
                .and_then(|m| key_value(m, depth - 1, bad))
                .map(|kv| into.push(kv))
                .map_err(at("KeyValueList", "values"))?,
            _ => skip(wire_type, tag, &mut buf, depth)?,
        }
    }
    Ok(())
}

/// The bytes of a length-delimited field (string, bytes, or an embedded message).
fn length_delimited<'a>(wire_type: WireType, buf: &mut &'a [u8]) -> Result<&'a [u8]> {
    check_wire_type(WireType::LengthDelimited, wire_type)?;
    let len = decode_varint(buf)?;
    if len > buf.len() as u64 {
        return Err(Kind::BufferUnderflow.into());
    }
    let (field, rest) = buf.split_at(len as usize);
    *buf = rest;
    Ok(field)
}

/// An embedded message's bytes, where the enclosing message is decoded with `depth` of
/// the recursion budget left (its fields get `depth - 1`).
fn message<'a>(wire_type: WireType, buf: &mut &'a [u8], depth: u32) -> Result<&'a [u8]> {
    check_wire_type(WireType::LengthDelimited, wire_type)?;
    if depth == 0 {
        return Err(Kind::RecursionLimitReached.into());
    }
    length_delimited(wire_type, buf)
}

fn varint(wire_type: WireType, buf: &mut &[u8]) -> Result<u64> {
    check_wire_type(WireType::Varint, wire_type)?;
    Ok(decode_varint(buf)?)
}

fn fixed64(wire_type: WireType, buf: &mut &[u8]) -> Result<u64> {
    check_wire_type(WireType::SixtyFourBit, wire_type)?;
    let (bytes, rest) = buf.split_first_chunk::<8>().ok_or(Kind::BufferUnderflow)?;
    *buf = rest;
    Ok(u64::from_le_bytes(*bytes))
}

fn fixed32(wire_type: WireType, buf: &mut &[u8]) -> Result<u32> {
    check_wire_type(WireType::ThirtyTwoBit, wire_type)?;
    let (bytes, rest) = buf.split_first_chunk::<4>().ok_or(Kind::BufferUnderflow)?;
    *buf = rest;
    Ok(u32::from_le_bytes(*bytes))
}

/// Skips an unknown field as prost does, counting nested groups against the recursion
/// budget (`skip_field` would start a fresh one).
fn skip(wire_type: WireType, tag: u32, buf: &mut &[u8], depth: u32) -> Result<()> {
    if depth == 0 {
        return Err(Kind::RecursionLimitReached.into());
    }
    if wire_type == WireType::StartGroup {
        loop {
            let (inner_tag, inner_wire_type) = decode_key(buf)?;
            if inner_wire_type == WireType::EndGroup {
                return if inner_tag == tag {
                    Ok(())
                } else {
                    Err(Kind::UnexpectedEndGroupTag.into())
                };
            }
            skip(inner_wire_type, inner_tag, buf, depth - 1)?;
        }
    }
    Ok(skip_field(wire_type, tag, buf, DecodeContext::default())?)
}

/// A string field: UTF-8 as sent, or with each invalid sequence replaced by U+FFFD and
/// `bad` set.
fn text(raw: &[u8], bad: &mut bool) -> String {
    match std::str::from_utf8(raw) {
        Ok(s) => s.to_owned(),
        Err(_) => {
            *bad = true;
            String::from_utf8_lossy(raw).into_owned()
        }
    }
}

/// A string field the model does not keep: only whether it is UTF-8 matters.
fn check_text(raw: &[u8], bad: &mut bool) {
    *bad |= std::str::from_utf8(raw).is_err();
}
