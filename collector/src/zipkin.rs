//! Zipkin v2 bodies → [`ExportTraceServiceRequest`]: the decode step of the Zipkin
//! receiver ([`crate::receiver::zipkin`]) and of Kafka `zipkin_json` topics.
//!
//! Both encodings (JSON array of spans, protobuf `zipkin.proto3.ListOfSpans`) are read
//! into the same [`ZipkinSpan`] and translated once, by [`to_otlp`], the way the
//! OpenTelemetry Collector's Zipkin receiver translates them. The result goes through
//! OTLP's validation in [`crate::ingest::Front`], so a Zipkin span is rejected or repaired
//! exactly as an OTLP span would be (`docs/robustness.md`, item 27):
//!
//! - **Ids** are hex (either case): trace ids of 16 or 32 digits, span ids of 16. Any
//!   other id becomes an empty OTLP id, so that span alone is rejected
//!   (`invalid_trace_id` / `invalid_span_id`); a bad `parentId` is dropped and flagged as
//!   OTLP's wrong-length parent is. A `parentId` equal to the span's own id means a root.
//! - **Times**: `timestamp` and `duration` are microseconds. A missing (or non-positive)
//!   timestamp gives a span without times, rejected as `missing_timestamps`; a negative
//!   duration is repaired to zero; huge values saturate (and then fail OTLP's future check).
//! - **Kind** `CLIENT`/`SERVER`/`PRODUCER`/`CONSUMER` maps onto OTLP's kinds; any other
//!   kind (or none) is unspecified.
//! - **`shared`** (a server span that reuses its client's span id, B3 style): kept as it
//!   comes, like the OpenTelemetry Collector's receiver does. Both halves are stored: a
//!   span's cell is its id plus a span-kind discriminator (ADR 0001), so the SERVER half
//!   does not overwrite the CLIENT half; the Jaeger API splits the shared id at query time
//!   the way Jaeger's own adjuster does.
//! - **Endpoints**: `localEndpoint.serviceName` → resource `service.name` (spans grouped
//!   per service and scope); local ip/port → `net.host.ip` / `net.host.port`; remote
//!   service/ip/port → `peer.service` / `net.peer.ip` / `net.peer.port`.
//! - **Tags** → string attributes; `otel.status_code` / `otel.status_description` →
//!   status; an `error` tag → status ERROR with the tag's text as message (the tag is kept
//!   unless its value is `true`); `otel.scope.name` / `otel.library.name` (+ `version`) →
//!   the scope. **Annotations** → events. **`debug`** → `zipkin.debug = true`.
//! - **Hostile JSON**: serde_json's recursion limit (128) refuses absurd nesting, sizes are
//!   bounded by `max_request_bytes` before decoding, and a body that is not an array of
//!   span objects with the right field types is refused whole (400) with serde's message
//!   (which names the line and column). Tag values that are numbers or booleans are taken
//!   as their text, as Zipkin does.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use clew_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use clew_proto::otlp::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use clew_proto::otlp::resource::v1::Resource;
use clew_proto::otlp::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use serde::Deserialize;

use crate::error::{Error, Result};

/// Protobuf messages of Zipkin's `zipkin.proto` (proto3), field numbers as there.
pub mod proto {
    use std::collections::HashMap;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListOfSpans {
        #[prost(message, repeated, tag = "1")]
        pub spans: Vec<Span>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Span {
        #[prost(bytes = "vec", tag = "1")]
        pub trace_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub parent_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "3")]
        pub id: Vec<u8>,
        /// `SPAN_KIND_UNSPECIFIED = 0`, `CLIENT = 1`, `SERVER = 2`, `PRODUCER = 3`,
        /// `CONSUMER = 4`.
        #[prost(int32, tag = "4")]
        pub kind: i32,
        #[prost(string, tag = "5")]
        pub name: String,
        /// Microseconds since the epoch.
        #[prost(fixed64, tag = "6")]
        pub timestamp: u64,
        /// Microseconds.
        #[prost(uint64, tag = "7")]
        pub duration: u64,
        #[prost(message, optional, tag = "8")]
        pub local_endpoint: Option<Endpoint>,
        #[prost(message, optional, tag = "9")]
        pub remote_endpoint: Option<Endpoint>,
        #[prost(message, repeated, tag = "10")]
        pub annotations: Vec<Annotation>,
        #[prost(map = "string, string", tag = "11")]
        pub tags: HashMap<String, String>,
        #[prost(bool, tag = "12")]
        pub debug: bool,
        #[prost(bool, tag = "13")]
        pub shared: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Endpoint {
        #[prost(string, tag = "1")]
        pub service_name: String,
        #[prost(bytes = "vec", tag = "2")]
        pub ipv4: Vec<u8>,
        #[prost(bytes = "vec", tag = "3")]
        pub ipv6: Vec<u8>,
        #[prost(int32, tag = "4")]
        pub port: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Annotation {
        #[prost(fixed64, tag = "1")]
        pub timestamp: u64,
        #[prost(string, tag = "2")]
        pub value: String,
    }
}

/// One Zipkin span, from either encoding. Ids are raw bytes (`None`: missing or not
/// valid hex of an accepted length).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ZipkinSpan {
    pub trace_id: Option<Vec<u8>>,
    pub parent_id: Option<ParentId>,
    pub id: Option<[u8; 8]>,
    pub kind: Kind,
    pub name: String,
    /// Microseconds since the epoch; 0: missing.
    pub timestamp_us: u64,
    /// Microseconds (negative ones already repaired to 0).
    pub duration_us: u64,
    pub local: Endpoint,
    pub remote: Endpoint,
    pub annotations: Vec<(u64, String)>,
    pub tags: BTreeMap<String, String>,
    pub debug: bool,
}

/// A span's parent as sent.
#[derive(Debug, Clone, PartialEq)]
pub enum ParentId {
    Valid([u8; 8]),
    /// Present but not 16 hex digits: dropped (and flagged) by OTLP's conversion.
    Invalid,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    #[default]
    Unspecified,
    Client,
    Server,
    Producer,
    Consumer,
}

impl Kind {
    fn from_text(s: &str) -> Kind {
        match s.to_ascii_uppercase().as_str() {
            "CLIENT" => Kind::Client,
            "SERVER" => Kind::Server,
            "PRODUCER" => Kind::Producer,
            "CONSUMER" => Kind::Consumer,
            _ => Kind::Unspecified,
        }
    }

    fn from_proto(k: i32) -> Kind {
        match k {
            1 => Kind::Client,
            2 => Kind::Server,
            3 => Kind::Producer,
            4 => Kind::Consumer,
            _ => Kind::Unspecified,
        }
    }

    /// OTLP `SpanKind` number.
    fn otlp(self) -> i32 {
        match self {
            Kind::Unspecified => 0,
            Kind::Server => 2,
            Kind::Client => 3,
            Kind::Producer => 4,
            Kind::Consumer => 5,
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Endpoint {
    pub service_name: String,
    /// Text form of the IPv4 or IPv6 address (IPv6 wins when both are set, as in the
    /// OpenTelemetry Collector).
    pub ip: Option<String>,
    pub port: Option<u16>,
}

/// Decodes a JSON body (`application/json`, Kafka `zipkin_json`).
pub fn decode_json(bytes: &[u8]) -> Result<Vec<ZipkinSpan>> {
    let spans: Vec<JsonSpan> = serde_json::from_slice(bytes)
        .map_err(|e| Error::decode("zipkin v2 json (an array of spans)", e))?;
    Ok(spans.into_iter().map(JsonSpan::into_span).collect())
}

/// Decodes a protobuf `ListOfSpans` body (`application/x-protobuf`).
pub fn decode_proto(bytes: &[u8]) -> Result<Vec<ZipkinSpan>> {
    let list = proto::ListOfSpans::decode(bytes)
        .map_err(|e| Error::decode("protobuf zipkin.proto3.ListOfSpans", e))?;
    Ok(list.spans.into_iter().map(from_proto).collect())
}

/// JSON field layout of a Zipkin v2 span (unknown fields ignored, `null` as absent).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonSpan {
    trace_id: Option<String>,
    parent_id: Option<String>,
    id: Option<String>,
    kind: Option<String>,
    name: Option<String>,
    timestamp: Option<serde_json::Number>,
    duration: Option<serde_json::Number>,
    local_endpoint: Option<JsonEndpoint>,
    remote_endpoint: Option<JsonEndpoint>,
    annotations: Option<Vec<JsonAnnotation>>,
    tags: Option<BTreeMap<String, TagValue>>,
    debug: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonEndpoint {
    service_name: Option<String>,
    ipv4: Option<String>,
    ipv6: Option<String>,
    port: Option<i64>,
}

#[derive(Deserialize)]
struct JsonAnnotation {
    timestamp: Option<serde_json::Number>,
    value: Option<String>,
}

/// A tag value: text, or a number or boolean taken as its text.
#[derive(Deserialize)]
#[serde(untagged)]
enum TagValue {
    Text(String),
    Bool(bool),
    Number(serde_json::Number),
}

impl TagValue {
    fn into_text(self) -> String {
        match self {
            TagValue::Text(s) => s,
            TagValue::Bool(b) => b.to_string(),
            TagValue::Number(n) => n.to_string(),
        }
    }
}

/// Microseconds from a JSON number: negative or fractional-negative → 0, fractions cut.
fn micros(n: Option<&serde_json::Number>) -> u64 {
    match n {
        None => 0,
        Some(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f > 0.0).map(|f| f as u64))
            .unwrap_or(0),
    }
}

impl JsonSpan {
    fn into_span(self) -> ZipkinSpan {
        ZipkinSpan {
            trace_id: self.trace_id.as_deref().and_then(trace_id_from_hex),
            parent_id: self
                .parent_id
                .as_deref()
                .filter(|p| !p.is_empty())
                .map(|p| span_id_from_hex(p).map_or(ParentId::Invalid, ParentId::Valid)),
            id: self.id.as_deref().and_then(span_id_from_hex),
            kind: self
                .kind
                .as_deref()
                .map_or(Kind::Unspecified, Kind::from_text),
            name: self.name.unwrap_or_default(),
            timestamp_us: micros(self.timestamp.as_ref()),
            duration_us: micros(self.duration.as_ref()),
            local: self
                .local_endpoint
                .map(JsonEndpoint::into_endpoint)
                .unwrap_or_default(),
            remote: self
                .remote_endpoint
                .map(JsonEndpoint::into_endpoint)
                .unwrap_or_default(),
            annotations: self
                .annotations
                .unwrap_or_default()
                .into_iter()
                .map(|a| (micros(a.timestamp.as_ref()), a.value.unwrap_or_default()))
                .collect(),
            tags: self
                .tags
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_text()))
                .collect(),
            debug: self.debug.unwrap_or(false),
        }
    }
}

impl JsonEndpoint {
    fn into_endpoint(self) -> Endpoint {
        let v6 = self
            .ipv6
            .as_deref()
            .and_then(|s| s.parse::<Ipv6Addr>().ok())
            .map(|a| a.to_string());
        let v4 = self
            .ipv4
            .as_deref()
            .and_then(|s| s.parse::<Ipv4Addr>().ok())
            .map(|a| a.to_string());
        Endpoint {
            service_name: self.service_name.unwrap_or_default(),
            ip: v6.or(v4),
            port: self
                .port
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p > 0),
        }
    }
}

fn from_proto(s: proto::Span) -> ZipkinSpan {
    let endpoint = |e: Option<proto::Endpoint>| {
        e.map(|e| {
            let v6 = <[u8; 16]>::try_from(e.ipv6.as_slice())
                .ok()
                .map(|b| Ipv6Addr::from(b).to_string());
            let v4 = <[u8; 4]>::try_from(e.ipv4.as_slice())
                .ok()
                .map(|b| Ipv4Addr::from(b).to_string());
            Endpoint {
                service_name: e.service_name,
                ip: v6.or(v4),
                port: u16::try_from(e.port).ok().filter(|p| *p > 0),
            }
        })
        .unwrap_or_default()
    };
    ZipkinSpan {
        trace_id: match s.trace_id.len() {
            8 => Some([&[0u8; 8][..], &s.trace_id].concat()),
            16 => Some(s.trace_id),
            _ => None,
        },
        parent_id: match s.parent_id.len() {
            0 => None,
            _ => Some(
                <[u8; 8]>::try_from(s.parent_id.as_slice())
                    .map_or(ParentId::Invalid, ParentId::Valid),
            ),
        },
        id: <[u8; 8]>::try_from(s.id.as_slice()).ok(),
        kind: Kind::from_proto(s.kind),
        name: s.name,
        timestamp_us: s.timestamp,
        duration_us: s.duration,
        local: endpoint(s.local_endpoint),
        remote: endpoint(s.remote_endpoint),
        annotations: s
            .annotations
            .into_iter()
            .map(|a| (a.timestamp, a.value))
            .collect(),
        tags: s.tags.into_iter().collect(),
        debug: s.debug,
    }
}

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// 16 hex digits (the high half is zero) or 32.
fn trace_id_from_hex(s: &str) -> Option<Vec<u8>> {
    match s.len() {
        16 => hex_bytes(s).map(|low| [&[0u8; 8][..], &low].concat()),
        32 => hex_bytes(s),
        _ => None,
    }
}

fn span_id_from_hex(s: &str) -> Option<[u8; 8]> {
    if s.len() != 16 {
        return None;
    }
    hex_bytes(s).and_then(|b| <[u8; 8]>::try_from(b).ok())
}

fn kv_str(key: &str, value: impl Into<String>) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.into()))
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

const SCOPE_NAME_TAGS: [&str; 2] = ["otel.scope.name", "otel.library.name"];
const SCOPE_VERSION_TAGS: [&str; 2] = ["otel.scope.version", "otel.library.version"];

/// Translates Zipkin spans into one OTLP request: one resource per local service, one
/// scope per instrumentation scope tag, in the order they first appear.
pub fn to_otlp(spans: Vec<ZipkinSpan>) -> ExportTraceServiceRequest {
    // service → (scope name, scope version) → spans, in first-seen order.
    type Scopes = Vec<((String, String), Vec<Span>)>;
    let mut services: Vec<(String, Scopes)> = Vec::new();
    for mut z in spans {
        let scope_name = take_first(&mut z.tags, &SCOPE_NAME_TAGS);
        let scope_version = take_first(&mut z.tags, &SCOPE_VERSION_TAGS);
        let service = z.local.service_name.clone();
        let scope = (scope_name, scope_version);
        let span = to_otlp_span(z);
        let scopes = match services.iter().position(|(s, _)| *s == service) {
            Some(i) => &mut services[i].1,
            None => {
                services.push((service, Vec::new()));
                &mut services.last_mut().expect("just pushed").1
            }
        };
        match scopes.iter_mut().find(|(s, _)| *s == scope) {
            Some((_, group)) => group.push(span),
            None => scopes.push((scope, vec![span])),
        }
    }
    let resource_spans = services
        .into_iter()
        .map(|(service, scopes)| ResourceSpans {
            resource: Some(Resource {
                // No service name: OTLP's conversion names it as for any OTLP span
                // without one.
                attributes: if service.is_empty() {
                    Vec::new()
                } else {
                    vec![kv_str("service.name", service)]
                },
                ..Default::default()
            }),
            scope_spans: scopes
                .into_iter()
                .map(|((name, version), spans)| ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name,
                        version,
                        ..Default::default()
                    }),
                    spans,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

fn take_first(tags: &mut BTreeMap<String, String>, keys: &[&str]) -> String {
    let mut found = None;
    for k in keys {
        if let Some(v) = tags.remove(*k) {
            found.get_or_insert(v);
        }
    }
    found.unwrap_or_default()
}

fn to_otlp_span(z: ZipkinSpan) -> Span {
    let ZipkinSpan {
        trace_id,
        parent_id,
        id,
        kind,
        name,
        timestamp_us,
        duration_us,
        local,
        remote,
        annotations,
        mut tags,
        debug,
    } = z;
    let mut attributes: Vec<KeyValue> = Vec::with_capacity(tags.len() + 6);
    let status = status_from_tags(&mut tags);
    let trace_state = tags.remove("w3c.tracestate").unwrap_or_default();

    let span_id = id.map(|i| i.to_vec()).unwrap_or_default();
    let parent_span_id = match parent_id {
        None => Vec::new(),
        Some(ParentId::Valid(p)) if Some(p) == id => Vec::new(),
        Some(ParentId::Valid(p)) => p.to_vec(),
        // One byte: OTLP's conversion drops a wrong-length parent and flags the repair.
        Some(ParentId::Invalid) => vec![0],
    };

    for (k, v) in tags {
        attributes.push(kv_str(&k, v));
    }
    if let Some(ip) = local.ip {
        attributes.push(kv_str("net.host.ip", ip));
    }
    if let Some(port) = local.port {
        attributes.push(kv("net.host.port", any_value::Value::IntValue(port.into())));
    }
    if !remote.service_name.is_empty() {
        attributes.push(kv_str("peer.service", remote.service_name));
    }
    if let Some(ip) = remote.ip {
        attributes.push(kv_str("net.peer.ip", ip));
    }
    if let Some(port) = remote.port {
        attributes.push(kv("net.peer.port", any_value::Value::IntValue(port.into())));
    }
    if debug {
        attributes.push(kv("zipkin.debug", any_value::Value::BoolValue(true)));
    }

    // Both zero: rejected as `missing_timestamps`, as an OTLP span without times.
    let (start, end) = match timestamp_us {
        0 => (0, 0),
        ts => {
            let start = ts.saturating_mul(1000);
            (
                start,
                start.saturating_add(duration_us.saturating_mul(1000)),
            )
        }
    };
    let events = annotations
        .into_iter()
        .map(|(ts, value)| {
            let (name, attributes) = event_from_annotation(value);
            span::Event {
                time_unix_nano: ts.saturating_mul(1000),
                name,
                attributes,
                ..Default::default()
            }
        })
        .collect();

    Span {
        trace_id: trace_id.unwrap_or_default(),
        span_id,
        parent_span_id,
        trace_state,
        name,
        kind: kind.otlp(),
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes,
        events,
        status,
        ..Default::default()
    }
}

/// An annotation's event name and attributes. The OpenTelemetry SDKs' Zipkin exporters
/// write an event as `{"<name>": {<attributes>}}`; that form is unpacked (scalar values
/// only), any other value is the event's name as it is.
fn event_from_annotation(value: String) -> (String, Vec<KeyValue>) {
    if !value.starts_with('{') {
        return (value, Vec::new());
    }
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(&value)
    else {
        return (value, Vec::new());
    };
    let Some((name, serde_json::Value::Object(attrs))) =
        map.iter().next().filter(|_| map.len() == 1)
    else {
        return (value, Vec::new());
    };
    let attributes = attrs
        .iter()
        .filter_map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => any_value::Value::StringValue(s.clone()),
                serde_json::Value::Bool(b) => any_value::Value::BoolValue(*b),
                serde_json::Value::Number(n) => match n.as_i64() {
                    Some(i) => any_value::Value::IntValue(i),
                    None => any_value::Value::DoubleValue(n.as_f64()?),
                },
                _ => return None,
            };
            Some(kv(k, v))
        })
        .collect();
    (name.clone(), attributes)
}

/// OTLP status from `otel.status_code` / `otel.status_description` and `error` (removed
/// from the tags, except an `error` tag with a message, which stays an attribute as in the
/// OpenTelemetry Collector).
fn status_from_tags(tags: &mut BTreeMap<String, String>) -> Option<Status> {
    let mut status: Option<Status> = None;
    if let Some(code) = tags.remove("otel.status_code") {
        let code = match code.to_ascii_uppercase().as_str() {
            "OK" => 1,
            "ERROR" => 2,
            _ => 0,
        };
        let message = tags.remove("otel.status_description").unwrap_or_default();
        status = Some(Status { code, message });
    }
    if let Some(error) = tags.get("error").cloned() {
        let s = status.get_or_insert_with(Status::default);
        s.code = 2;
        if error == "true" {
            tags.remove("error");
        } else if s.message.is_empty() {
            s.message = error;
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use clew_proto::from_otlp::{convert_request, Limits};
    use clew_proto::RejectReason;

    const NOW_US: u64 = 1_700_000_000_000_000;

    fn convert(body: &str) -> clew_proto::from_otlp::Converted {
        let req = to_otlp(decode_json(body.as_bytes()).unwrap());
        convert_request(req, &Limits::default(), NOW_US * 1000 + 1_000_000_000)
    }

    fn attr<'a>(span: &'a clew_proto::Span, key: &str) -> Option<&'a any_value::Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
    }

    fn text(s: &str) -> any_value::Value {
        any_value::Value::StringValue(s.into())
    }

    #[test]
    fn translates_a_client_span() {
        let body = format!(
            r#"[{{"traceId":"5AF7183FB1D4CF5F","parentId":"6b221d5bc9e6496c","id":"352bff9a74ca9ad2",
            "kind":"CLIENT","name":"get /api","timestamp":{NOW_US},"duration":207000,
            "localEndpoint":{{"serviceName":"frontend","ipv4":"192.168.99.1","port":8080}},
            "remoteEndpoint":{{"serviceName":"backend","ipv6":"::1","port":9000}},
            "annotations":[{{"timestamp":{NOW_US},"value":"ws"}},
              {{"timestamp":{NOW_US},"value":"{{\"exception\": {{\"exception.message\": \"x\", \"n\": 3}}}}"}}],
            "tags":{{"http.path":"/api","order_id":"o-1","retries":3,"error":"boom"}},
            "debug":true}}]"#
        );
        let out = convert(&body);
        assert!(out.rejected.is_empty());
        let s = &out.spans[0];
        assert_eq!(s.trace_id.to_string(), "00000000000000005af7183fb1d4cf5f");
        assert_eq!(s.span_id.to_string(), "352bff9a74ca9ad2");
        assert_eq!(s.parent_span_id.unwrap().to_string(), "6b221d5bc9e6496c");
        assert_eq!(s.service_name, "frontend");
        assert_eq!(s.kind, clew_proto::SpanKind::Client);
        assert_eq!(s.start_unix_nano, NOW_US * 1000);
        assert_eq!(s.end_unix_nano, NOW_US * 1000 + 207_000_000);
        assert_eq!(s.status_code, clew_proto::StatusCode::Error);
        assert_eq!(s.status_message, "boom");
        assert_eq!(attr(s, "order_id"), Some(&text("o-1")));
        assert_eq!(attr(s, "retries"), Some(&text("3")));
        assert_eq!(attr(s, "error"), Some(&text("boom")));
        assert_eq!(attr(s, "net.host.ip"), Some(&text("192.168.99.1")));
        assert_eq!(
            attr(s, "net.host.port"),
            Some(&any_value::Value::IntValue(8080))
        );
        assert_eq!(attr(s, "peer.service"), Some(&text("backend")));
        assert_eq!(attr(s, "net.peer.ip"), Some(&text("::1")));
        assert_eq!(
            attr(s, "zipkin.debug"),
            Some(&any_value::Value::BoolValue(true))
        );
        assert_eq!(s.events.len(), 2);
        assert_eq!(s.events[1].name, "exception");
        assert_eq!(s.events[1].attributes[0].key, "exception.message");
        assert_eq!(s.events[1].attributes[1].key, "n");
        assert_eq!(s.events[0].name, "ws");
        assert_eq!(s.events[0].time_unix_nano, NOW_US * 1000);
    }

    #[test]
    fn bad_ids_and_missing_times_reject_only_their_span() {
        let ok = r#""traceId":"0123456789abcdef0123456789abcdef","id":"0123456789abcdef""#;
        let body = format!(
            r#"[{{{ok},"name":"good","timestamp":{NOW_US},"duration":1}},
            {{"traceId":"xyz","id":"0123456789abcdef","name":"bad trace","timestamp":{NOW_US}}},
            {{"traceId":"0123456789abcdef012","id":"0123456789abcdef","timestamp":{NOW_US}}},
            {{"traceId":"0123456789abcdef","id":"12345","timestamp":{NOW_US}}},
            {{"traceId":"0123456789abcdef","timestamp":{NOW_US}}},
            {{{ok},"name":"no time"}},
            {{{ok},"name":"negative","timestamp":-5}},
            {{"traceId":"00000000000000000000000000000000","id":"0123456789abcdef","timestamp":{NOW_US}}}]"#
        );
        let out = convert(&body);
        assert_eq!(out.spans.len(), 1);
        assert_eq!(out.spans[0].name, "good");
        let reasons: Vec<_> = out.rejected.iter().map(|r| r.reason).collect();
        assert_eq!(
            reasons,
            [
                RejectReason::InvalidTraceId,
                RejectReason::InvalidTraceId,
                RejectReason::InvalidSpanId,
                RejectReason::InvalidSpanId,
                RejectReason::MissingTimestamps,
                RejectReason::MissingTimestamps,
                RejectReason::InvalidTraceId,
            ]
        );
    }

    #[test]
    fn negative_duration_bad_parent_and_unknown_kind_are_repaired() {
        let body = format!(
            r#"[{{"traceId":"0123456789abcdef","id":"0123456789abcdef","parentId":"zz",
            "kind":"SIDEWAYS","timestamp":{NOW_US},"duration":-7}}]"#
        );
        let out = convert(&body);
        let s = &out.spans[0];
        assert_eq!(s.end_unix_nano, s.start_unix_nano);
        assert_eq!(s.parent_span_id, None);
        assert_ne!(s.repairs, 0);
        assert_eq!(s.kind, clew_proto::SpanKind::Unspecified);
    }

    #[test]
    fn shared_server_half_keeps_the_client_id_beside_it() {
        let body = format!(
            r#"[{{"traceId":"0123456789abcdef","id":"1111111111111111","kind":"CLIENT","timestamp":{NOW_US},"localEndpoint":{{"serviceName":"a"}}}},
            {{"traceId":"0123456789abcdef","id":"1111111111111111","kind":"SERVER","shared":true,"timestamp":{NOW_US},"localEndpoint":{{"serviceName":"b"}}}}]"#
        );
        let out = convert(&body);
        assert_eq!(out.spans.len(), 2);
        let server = out.spans.iter().find(|s| s.service_name == "b").unwrap();
        let client = out.spans.iter().find(|s| s.service_name == "a").unwrap();
        assert_eq!(server.span_id, client.span_id);
        assert_eq!(server.span_id.to_string(), "1111111111111111");
        assert_eq!(server.kind, clew_proto::SpanKind::Server);
        assert_eq!(client.kind, clew_proto::SpanKind::Client);
        // distinct cells in the trace's row: the halves never overwrite each other
        assert_ne!(
            clew_store::row_layout::discriminator(server.kind),
            clew_store::row_layout::discriminator(client.kind)
        );
    }

    #[test]
    fn groups_per_service_and_scope() {
        let span = |svc: &str, scope: &str| {
            format!(
                r#"{{"traceId":"0123456789abcdef","id":"0123456789abcdef","timestamp":{NOW_US},"localEndpoint":{{"serviceName":"{svc}"}},"tags":{{"otel.scope.name":"{scope}","otel.status_code":"ERROR","otel.status_description":"bad"}}}}"#
            )
        };
        let body = format!(
            "[{},{},{},{}]",
            span("a", "x"),
            span("b", "x"),
            span("a", "y"),
            span("a", "x")
        );
        let req = to_otlp(decode_json(body.as_bytes()).unwrap());
        assert_eq!(req.resource_spans.len(), 2);
        assert_eq!(req.resource_spans[0].scope_spans.len(), 2);
        assert_eq!(req.resource_spans[0].scope_spans[0].spans.len(), 2);
        assert_eq!(
            req.resource_spans[0].scope_spans[1]
                .scope
                .as_ref()
                .unwrap()
                .name,
            "y"
        );
        let s = &req.resource_spans[1].scope_spans[0].spans[0];
        assert_eq!(s.status.as_ref().unwrap().code, 2);
        assert_eq!(s.status.as_ref().unwrap().message, "bad");
        assert!(s.attributes.is_empty());
    }

    #[test]
    fn hostile_json_is_refused_not_crashed() {
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        let deep_in_tags = format!(
            r#"[{{"tags":{{"a":{}{}}}}}]"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        let cases: Vec<&[u8]> = vec![
            b"",
            b"{}",
            b"null",
            b"[1]",
            b"[{\"traceId\":5}]",
            b"[{\"tags\":{\"a\":{\"b\":1}}}]",
            b"[{\"annotations\":{}}]",
            b"[{\"timestamp\":\"soon\"}]",
            b"[{\"localEndpoint\":{\"port\":\"x\"}}]",
            b"[{\"id\":\"\xff\xfe\"}]",
            deep.as_bytes(),
            deep_in_tags.as_bytes(),
        ];
        for body in cases {
            let e = decode_json(body).unwrap_err();
            assert!(matches!(e, Error::Decode { .. }), "{e}");
        }
        // Absent fields and nulls decode (and are then rejected span by span).
        let spans = decode_json(b"[{}, {\"traceId\":null,\"tags\":null,\"port\":null}]").unwrap();
        assert_eq!(spans.len(), 2);
        assert!(spans[0].trace_id.is_none());
        // Huge numbers saturate.
        let spans =
            decode_json(b"[{\"timestamp\":1e300,\"duration\":18446744073709551615}]").unwrap();
        let req = to_otlp(spans);
        let s = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(s.end_time_unix_nano, u64::MAX);
    }

    #[test]
    fn protobuf_list_of_spans() {
        let list = proto::ListOfSpans {
            spans: vec![
                proto::Span {
                    trace_id: vec![1; 16],
                    id: vec![2; 8],
                    parent_id: vec![3; 8],
                    kind: 2,
                    name: "serve".into(),
                    timestamp: NOW_US,
                    duration: 10,
                    local_endpoint: Some(proto::Endpoint {
                        service_name: "svc".into(),
                        ipv4: vec![10, 0, 0, 1],
                        port: 80,
                        ..Default::default()
                    }),
                    tags: [("k".to_string(), "v".to_string())].into(),
                    ..Default::default()
                },
                proto::Span {
                    trace_id: vec![1; 3],
                    id: vec![2; 8],
                    timestamp: NOW_US,
                    ..Default::default()
                },
            ],
        };
        let spans = decode_proto(&list.encode_to_vec()).unwrap();
        let out = convert_request(
            to_otlp(spans),
            &Limits::default(),
            NOW_US * 1000 + 1_000_000_000,
        );
        assert_eq!(out.spans.len(), 1);
        assert_eq!(out.rejected[0].reason, RejectReason::InvalidTraceId);
        let s = &out.spans[0];
        assert_eq!(s.kind, clew_proto::SpanKind::Server);
        assert_eq!(s.service_name, "svc");
        assert_eq!(s.end_unix_nano - s.start_unix_nano, 10_000);
        assert_eq!(attr(s, "net.host.ip"), Some(&text("10.0.0.1")));
        assert_eq!(attr(s, "k"), Some(&text("v")));
        assert!(decode_proto(b"\x0a\xff\xff\xff\xff\x0f").is_err());
    }

    #[test]
    fn hex_ids() {
        assert_eq!(
            span_id_from_hex("00000000000000FF"),
            Some([0, 0, 0, 0, 0, 0, 0, 255])
        );
        assert_eq!(span_id_from_hex("+0000000000000FF"), None);
        assert_eq!(span_id_from_hex("ééééééééé"), None);
        assert_eq!(trace_id_from_hex("0123456789abcdef0"), None);
        assert_eq!(trace_id_from_hex("").map(|v| v.len()), None);
    }
}
