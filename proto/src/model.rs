//! The span model every part of clew shares.
//!
//! It is OTLP's span with validated identifiers, its resource and scope attached (shared
//! between the spans of one request through `Arc`), a derived service name and the
//! business keys found by the collector's enrich stage. Nested values (attributes, events,
//! links) reuse the OTLP message types so that nothing is lost and nothing is copied on the
//! way in.

use std::sync::Arc;

pub use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, KeyValue, KeyValueList,
};
pub use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};

use crate::ids::{SpanId, TraceId};

/// Service name used when a resource has no `service.name` attribute.
pub const UNKNOWN_SERVICE: &str = "unknown_service";
/// Span name used when a span arrives with an empty name.
pub const UNNAMED_SPAN: &str = "<unnamed>";

/// OTLP span kind. Values outside the enum are kept as `Unknown(n)`, never a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SpanKind {
    #[default]
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
    Unknown(i32),
}

impl SpanKind {
    pub fn from_i32(v: i32) -> Self {
        match v {
            0 => Self::Unspecified,
            1 => Self::Internal,
            2 => Self::Server,
            3 => Self::Client,
            4 => Self::Producer,
            5 => Self::Consumer,
            n => Self::Unknown(n),
        }
    }

    pub fn as_i32(self) -> i32 {
        match self {
            Self::Unspecified => 0,
            Self::Internal => 1,
            Self::Server => 2,
            Self::Client => 3,
            Self::Producer => 4,
            Self::Consumer => 5,
            Self::Unknown(n) => n,
        }
    }

    /// Lowercase name used in the API and as an index term.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::Internal => "internal",
            Self::Server => "server",
            Self::Client => "client",
            Self::Producer => "producer",
            Self::Consumer => "consumer",
            Self::Unknown(_) => "unknown",
        }
    }
}

/// OTLP status code. Out-of-range values are kept as `Unknown(n)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StatusCode {
    #[default]
    Unset,
    Ok,
    Error,
    Unknown(i32),
}

impl StatusCode {
    pub fn from_i32(v: i32) -> Self {
        match v {
            0 => Self::Unset,
            1 => Self::Ok,
            2 => Self::Error,
            n => Self::Unknown(n),
        }
    }

    pub fn as_i32(self) -> i32 {
        match self {
            Self::Unset => 0,
            Self::Ok => 1,
            Self::Error => 2,
            Self::Unknown(n) => n,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unset => "unset",
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Unknown(_) => "unknown",
        }
    }
}

/// The resource a span came from (shared by all spans of one `ResourceSpans`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resource {
    pub attributes: Vec<KeyValue>,
    pub dropped_attributes_count: u32,
    pub schema_url: String,
}

/// The instrumentation scope a span came from (shared by all spans of one `ScopeSpans`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scope {
    pub name: String,
    pub version: String,
    pub attributes: Vec<KeyValue>,
    pub dropped_attributes_count: u32,
    pub schema_url: String,
}

/// A business key found on a span (`order_id=12345`), by configured attribute name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BusinessKey {
    pub name: String,
    pub value: String,
}

/// Repairs made to a span while validating it; kept with the span so a reader can tell.
pub mod repair {
    /// The parent span id had the wrong length and was dropped (span kept as a root).
    pub const PARENT_ID_DROPPED: u32 = 1 << 0;
    /// End time was before start time; end was set to start.
    pub const END_BEFORE_START: u32 = 1 << 1;
    /// Start time was zero; it was set to the end time.
    pub const ZERO_START: u32 = 1 << 2;
    /// The span name was empty; it was replaced by [`crate::model::UNNAMED_SPAN`].
    pub const EMPTY_NAME: u32 = 1 << 3;
    /// The resource had no `service.name`; [`crate::model::UNKNOWN_SERVICE`] is used.
    pub const MISSING_SERVICE: u32 = 1 << 4;
    /// Attribute values, attributes, events or links were cut to the configured limits.
    pub const TRUNCATED: u32 = 1 << 5;
    /// Attribute values nested deeper than the limit were replaced by a placeholder.
    pub const NESTING_CUT: u32 = 1 << 6;
    /// Some string of the span (or of its resource or scope) was not UTF-8; the invalid
    /// bytes were replaced by U+FFFD.
    pub const INVALID_UTF8: u32 = 1 << 7;

    /// Every flag with its metric label, in bit order.
    pub const NAMES: [(u32, &str); 8] = [
        (PARENT_ID_DROPPED, "parent_id_dropped"),
        (END_BEFORE_START, "end_before_start"),
        (ZERO_START, "zero_start"),
        (EMPTY_NAME, "empty_name"),
        (MISSING_SERVICE, "missing_service"),
        (TRUNCATED, "truncated"),
        (NESTING_CUT, "nesting_cut"),
        (INVALID_UTF8, "invalid_utf8"),
    ];
}

/// One validated span.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// `None` for a root span (OTLP: empty or all-zero parent id).
    pub parent_span_id: Option<SpanId>,
    pub trace_state: String,
    pub flags: u32,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub attributes: Vec<KeyValue>,
    pub dropped_attributes_count: u32,
    pub events: Vec<Event>,
    pub dropped_events_count: u32,
    pub links: Vec<Link>,
    pub dropped_links_count: u32,
    pub status_code: StatusCode,
    pub status_message: String,
    pub resource: Arc<Resource>,
    pub scope: Arc<Scope>,
    /// `service.name` of the resource, or [`UNKNOWN_SERVICE`].
    pub service_name: String,
    /// Business keys found by the enrich stage (empty until then).
    pub business_keys: Vec<BusinessKey>,
    /// Bit set of [`repair`] flags.
    pub repairs: u32,
    /// Whose span this is: set by the receiver from the authenticated caller (never from
    /// span data), and by the store from the tenant a read asked for. Not part of the
    /// stored span encoding: the row key carries it.
    pub tenant: crate::Tenant,
}

impl Span {
    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano)
    }

    /// Error spans: status ERROR, or an `exception` event.
    pub fn is_error(&self) -> bool {
        self.status_code == StatusCode::Error || self.events.iter().any(|e| e.name == "exception")
    }

    /// Looks an attribute up on the span, then on its resource.
    pub fn attribute(&self, key: &str) -> Option<&AnyValue> {
        find_attr(&self.attributes, key).or_else(|| find_attr(&self.resource.attributes, key))
    }

    /// `(exception.type, exception.message)` of the first exception event, if any.
    pub fn exception(&self) -> Option<(String, String)> {
        let ev = self.events.iter().find(|e| e.name == "exception")?;
        let ty = find_attr(&ev.attributes, "exception.type")
            .map(value_to_string)
            .unwrap_or_default();
        let msg = find_attr(&ev.attributes, "exception.message")
            .map(value_to_string)
            .unwrap_or_default();
        Some((ty, msg))
    }
}

/// First attribute named `key`.
pub fn find_attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
}

/// Text form of an attribute value, as used for index terms and business keys.
/// Strings are verbatim; scalars use their natural form; arrays and maps are JSON-like.
pub fn value_to_string(v: &AnyValue) -> String {
    use any_value::Value;
    match &v.value {
        None => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BytesValue(b)) => hex::encode(b),
        Some(Value::StringValueStrindex(i)) => format!("strindex:{i}"),
        Some(Value::ArrayValue(a)) => {
            let parts: Vec<String> = a
                .values
                .iter()
                .map(value_to_json)
                .map(|j| j.to_string())
                .collect();
            format!("[{}]", parts.join(","))
        }
        Some(Value::KvlistValue(_)) => value_to_json(v).to_string(),
    }
}

/// JSON form of an attribute value, as the query API returns it.
pub fn value_to_json(v: &AnyValue) -> serde_json::Value {
    use any_value::Value;
    use serde_json::Value as J;
    match &v.value {
        None => J::Null,
        Some(Value::StringValue(s)) => J::String(s.clone()),
        Some(Value::BoolValue(b)) => J::Bool(*b),
        Some(Value::IntValue(i)) => J::from(*i),
        Some(Value::DoubleValue(d)) => serde_json::Number::from_f64(*d)
            .map(J::Number)
            .unwrap_or_else(|| J::String(d.to_string())),
        Some(Value::BytesValue(b)) => J::String(hex::encode(b)),
        Some(Value::StringValueStrindex(i)) => J::String(format!("strindex:{i}")),
        Some(Value::ArrayValue(a)) => J::Array(a.values.iter().map(value_to_json).collect()),
        Some(Value::KvlistValue(kv)) => attributes_to_json(&kv.values),
    }
}

/// JSON object of attributes (`{"key": value, …}`); later duplicates win.
pub fn attributes_to_json(attrs: &[KeyValue]) -> serde_json::Value {
    let mut map = serde_json::Map::with_capacity(attrs.len());
    for kv in attrs {
        map.insert(
            kv.key.clone(),
            kv.value
                .as_ref()
                .map(value_to_json)
                .unwrap_or(serde_json::Value::Null),
        );
    }
    serde_json::Value::Object(map)
}
