//! clew span → Jaeger JSON span, the way Jaeger v2 answers its HTTP API.
//!
//! Two steps that Jaeger performs in two places, done here in one pass per trace:
//!
//! 1. **OTLP → Jaeger model**, as the OpenTelemetry Collector's `pkg/translator/jaeger`
//!    (`traces_to_jaegerproto.go`) does it: the resource becomes the process (its
//!    `service.name` the service name, the other attributes its tags); the span's tags are
//!    `otel.scope.name`/`otel.scope.version`, the attributes, `span.kind`,
//!    `otel.status_code`, `error=true`, `otel.status_description` and `w3c.tracestate`;
//!    the parent becomes a `CHILD_OF` reference and links `FOLLOWS_FROM` references
//!    (`CHILD_OF` when the link says `opentracing.ref_type=child_of`); events become logs
//!    with an `event` field. Maps and arrays become JSON strings, bytes base64. The
//!    `@jaeger@warnings` attribute becomes the span's `warnings`. What Jaeger v2's
//!    write-path sanitizer changes is reproduced too: process names for resources without
//!    a text `service.name`, and a warning on spans that do not end after they start.
//! 2. **The query service's adjusters** (`querysvc/adjusters.go`), in Jaeger's order: sort
//!    tags and log fields (the `event` field first), move `telemetry.sdk.*` and
//!    `telemetry.distro.*` span tags to the process, turn integer `ip`/`peer.ipv4` tags
//!    into dotted quads, drop references with a zero trace id, put the parent reference
//!    first. Clock-skew adjustment is off in Jaeger's default v2 configuration
//!    (`max_clock_skew_adjust: 0s`): no time is moved, but Jaeger still computes the skew
//!    and warns on each span it would move, and on duplicate ids and missing parents, and
//!    so does clew; span deduplication is the store's
//!    (writing a span twice is a no-op). First of all, as in Jaeger, a server span sharing
//!    its id with a client span (Zipkin style) gets a new id under the client span.
//!
//! Processes are numbered `p1`, `p2`, … in span order, equal processes sharing a number.
//! `raw=true` skips step 2, as in Jaeger.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use clew_proto::model::repair;
use clew_proto::model::{any_value::Value, AnyValue, KeyValue};
use clew_proto::{Span, SpanKind, StatusCode};
use serde::ser::{SerializeStruct, Serializer};
use serde::Serialize;
use serde_json::Value as Json;

/// Largest integer a JavaScript number holds exactly; larger tag values are sent as text.
const JS_MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// Span tags the OTel tag adjuster moves to the process.
const OTEL_LIBRARY_KEYS: &[&str] = &[
    "telemetry.sdk.language",
    "telemetry.sdk.name",
    "telemetry.sdk.version",
    "telemetry.distro.name",
    "telemetry.distro.version",
];

/// A typed Jaeger tag (`model.KeyValue`).
#[derive(Debug, Clone, PartialEq)]
pub struct Tag {
    pub key: String,
    pub value: TagValue,
}

/// Jaeger's value types, in the order Jaeger sorts them (`ValueType` enum numbers).
#[derive(Debug, Clone, PartialEq)]
pub enum TagValue {
    Str(String),
    Bool(bool),
    Int(i64),
    Float(f64),
    Binary(Vec<u8>),
}

impl TagValue {
    fn rank(&self) -> u8 {
        match self {
            TagValue::Str(_) => 0,
            TagValue::Bool(_) => 1,
            TagValue::Int(_) => 2,
            TagValue::Float(_) => 3,
            TagValue::Binary(_) => 4,
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            TagValue::Str(_) => "string",
            TagValue::Bool(_) => "bool",
            TagValue::Int(_) => "int64",
            TagValue::Float(_) => "float64",
            TagValue::Binary(_) => "binary",
        }
    }
}

impl Tag {
    fn str(key: &str, value: &str) -> Tag {
        Tag {
            key: key.to_string(),
            value: TagValue::Str(value.to_string()),
        }
    }

    /// Jaeger's order: key, then value type, then value.
    fn compare(&self, other: &Tag) -> Ordering {
        self.key
            .cmp(&other.key)
            .then(self.value.rank().cmp(&other.value.rank()))
            .then_with(|| match (&self.value, &other.value) {
                (TagValue::Str(a), TagValue::Str(b)) => a.cmp(b),
                (TagValue::Bool(a), TagValue::Bool(b)) => a.cmp(b),
                (TagValue::Int(a), TagValue::Int(b)) => a.cmp(b),
                (TagValue::Float(a), TagValue::Float(b)) => {
                    a.partial_cmp(b).unwrap_or(Ordering::Equal)
                }
                (TagValue::Binary(a), TagValue::Binary(b)) => a.cmp(b),
                _ => Ordering::Equal,
            })
    }
}

/// `{"key", "type", "value"}`: integers beyond JavaScript's exact range and floats JSON
/// cannot hold (NaN, infinities) as text, bytes as base64.
impl Serialize for Tag {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut tag = serializer.serialize_struct("Tag", 3)?;
        tag.serialize_field("key", &self.key)?;
        tag.serialize_field("type", self.value.type_name())?;
        match &self.value {
            TagValue::Str(s) => tag.serialize_field("value", s)?,
            TagValue::Bool(b) => tag.serialize_field("value", b)?,
            TagValue::Int(i) if !(-JS_MAX_SAFE_INTEGER..=JS_MAX_SAFE_INTEGER).contains(i) => {
                tag.serialize_field("value", &i.to_string())?
            }
            TagValue::Int(i) => tag.serialize_field("value", i)?,
            TagValue::Float(f) if f.is_finite() => tag.serialize_field("value", f)?,
            TagValue::Float(f) => tag.serialize_field("value", &f.to_string())?,
            TagValue::Binary(b) => tag.serialize_field("value", &base64(b))?,
        }
        tag.end()
    }
}

fn sort_tags(tags: &mut [Tag]) {
    tags.sort_by(Tag::compare);
}

/// One OTLP attribute as a Jaeger tag (`attributeToJaegerProtoTag`).
pub fn attribute_tag(kv: &KeyValue) -> Tag {
    let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => TagValue::Str(s.clone()),
        Some(Value::IntValue(i)) => TagValue::Int(*i),
        Some(Value::BoolValue(b)) => TagValue::Bool(*b),
        Some(Value::DoubleValue(d)) => TagValue::Float(*d),
        Some(Value::BytesValue(b)) => TagValue::Binary(b.clone()),
        Some(Value::ArrayValue(_) | Value::KvlistValue(_)) => {
            TagValue::Str(kv.value.as_ref().map(as_string).unwrap_or_default())
        }
        Some(Value::StringValueStrindex(_)) | None => TagValue::Str(String::new()),
    };
    Tag {
        key: kv.key.clone(),
        value,
    }
}

/// pdata's `Value.AsString`: how Jaeger compares tag filters with attributes, and how it
/// turns maps and arrays into tag text.
pub fn as_string(v: &AnyValue) -> String {
    match &v.value {
        None | Some(Value::StringValueStrindex(_)) => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => clew_proto::go_json::float(*d),
        Some(Value::BytesValue(b)) => base64(b),
        Some(Value::ArrayValue(_) | Value::KvlistValue(_)) => {
            let mut out = String::new();
            go_json(v, &mut out);
            out
        }
    }
}

/// `json.Marshal` of pdata's `AsRaw()` form: map keys sorted, bytes base64, Go's escaping.
fn go_json(v: &AnyValue, out: &mut String) {
    match &v.value {
        None => out.push_str("null"),
        Some(Value::StringValue(s)) => clew_proto::go_json::push_string(out, s),
        Some(Value::StringValueStrindex(_)) => out.push_str("\"\""),
        Some(Value::BoolValue(b)) => out.push_str(if *b { "true" } else { "false" }),
        Some(Value::IntValue(i)) => out.push_str(&i.to_string()),
        Some(Value::DoubleValue(d)) => out.push_str(&clew_proto::go_json::float(*d)),
        Some(Value::BytesValue(b)) => clew_proto::go_json::push_string(out, &base64(b)),
        Some(Value::ArrayValue(a)) => {
            out.push('[');
            for (i, item) in a.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json(item, out);
            }
            out.push(']');
        }
        Some(Value::KvlistValue(kvs)) => {
            // a Go map: one entry per key (the last wins), keys in byte order
            let mut entries: Vec<(&str, Option<&AnyValue>)> = Vec::new();
            for kv in &kvs.values {
                match entries.iter_mut().find(|(k, _)| *k == kv.key) {
                    Some(entry) => entry.1 = kv.value.as_ref(),
                    None => entries.push((&kv.key, kv.value.as_ref())),
                }
            }
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                clew_proto::go_json::push_string(out, key);
                out.push(':');
                match value {
                    Some(value) => go_json(value, out),
                    None => out.push_str("null"),
                }
            }
            out.push('}');
        }
    }
}

/// Standard base64 with padding, as Go encodes `[]byte` in JSON.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Jaeger's text form of a trace id: 16 hex digits when the high half is zero, else 32.
pub fn trace_id_text(bytes: &[u8]) -> String {
    let (high, low) = id_halves(bytes);
    if high == 0 {
        format!("{low:016x}")
    } else {
        format!("{high:016x}{low:016x}")
    }
}

/// `(high, low)` of a 16-byte trace id (other lengths read as zero, as pdata would).
fn id_halves(bytes: &[u8]) -> (u64, u64) {
    match <[u8; 16]>::try_from(bytes) {
        Ok(b) => (
            u64::from_be_bytes(b[..8].try_into().expect("8 bytes")),
            u64::from_be_bytes(b[8..].try_into().expect("8 bytes")),
        ),
        Err(_) => (0, 0),
    }
}

fn span_id_text(bytes: &[u8]) -> String {
    let id = <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .unwrap_or(0);
    format!("{id:016x}")
}

/// The OpenTracing `span.kind` value of an OTLP kind; none for unspecified.
pub fn kind_text(kind: SpanKind) -> Option<&'static str> {
    match kind {
        SpanKind::Client => Some("client"),
        SpanKind::Server => Some("server"),
        SpanKind::Producer => Some("producer"),
        SpanKind::Consumer => Some("consumer"),
        SpanKind::Internal => Some("internal"),
        SpanKind::Unspecified | SpanKind::Unknown(_) => None,
    }
}

/// The Jaeger process of a span: service name and sorted tags.
#[derive(Debug, Clone, PartialEq)]
struct Process {
    service_name: String,
    tags: Vec<Tag>,
}

/// The service name Jaeger shows for a span's resource. Jaeger v2 sanitizes resources as
/// it writes them (`jptrace/sanitizer`): a missing `service.name` becomes
/// `missing-service-name`, a non-text one `service-name-wrong-type`, an empty one
/// `empty-service-name`.
pub fn service_name(span: &Span) -> String {
    let first = span
        .resource
        .attributes
        .iter()
        .find(|kv| kv.key == "service.name");
    match first.map(|kv| kv.value.as_ref().and_then(|v| v.value.as_ref())) {
        None => "missing-service-name".into(),
        Some(Some(Value::StringValue(s))) if s.is_empty() => "empty-service-name".into(),
        Some(Some(Value::StringValue(s))) => s.clone(),
        Some(_) => "service-name-wrong-type".into(),
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Reference {
    child_of: bool,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
}

/// One span in Jaeger's model, adjusted, with its process.
struct JaegerSpan<'a> {
    span: &'a Span,
    /// The span id as answered (the uniquifier may change it).
    span_id: Vec<u8>,
    /// The first `span.kind` tag as text, in translation order (`model.Span.HasSpanKind`).
    rpc_kind: Option<String>,
    tags: Vec<Tag>,
    references: Vec<Reference>,
    process: Process,
    warnings: Vec<String>,
}

/// Jaeger's span attribute for warnings recorded on the span (a list of texts).
pub const WARNINGS_ATTRIBUTE: &str = "@jaeger@warnings";

/// The warnings a span carries in [`WARNINGS_ATTRIBUTE`] (`jptrace.GetWarnings`).
fn warnings(span: &Span) -> Vec<String> {
    let Some(kv) = span
        .attributes
        .iter()
        .find(|kv| kv.key == WARNINGS_ATTRIBUTE)
    else {
        return Vec::new();
    };
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::ArrayValue(items)) => items
            .values
            .iter()
            .map(|v| match &v.value {
                Some(Value::StringValue(s)) => s.clone(),
                _ => String::new(),
            })
            .collect(),
        _ => vec![kv.value.as_ref().map(as_string).unwrap_or_default()],
    }
}

fn jaeger_span(span: &Span, adjust: bool) -> JaegerSpan<'_> {
    // tags, in the translator's order (the sort below makes the order Jaeger's)
    let mut tags = Vec::with_capacity(span.attributes.len() + 6);
    if !span.scope.name.is_empty() {
        tags.push(Tag::str("otel.scope.name", &span.scope.name));
    }
    if !span.scope.version.is_empty() {
        tags.push(Tag::str("otel.scope.version", &span.scope.version));
    }
    tags.extend(span.attributes.iter().map(attribute_tag));
    let mut warnings = warnings(span);
    if !warnings.is_empty() {
        tags.retain(|t| t.key != WARNINGS_ATTRIBUTE);
    }
    // Jaeger v2's write-path sanitizer gives a span that does not end after its start 1 ns
    // and a warning (clew stores such a span with end = start)
    if span.end_unix_nano <= span.start_unix_nano && span.repairs & repair::ZERO_START == 0 {
        warnings.push(format!(
            "Negative duration detected, sanitizing end timestamp. Original end timestamp: {}, \
             adjusted to: {}",
            go_time(span.end_unix_nano),
            go_time(span.start_unix_nano.saturating_add(1))
        ));
    }
    if let Some(kind) = kind_text(span.kind) {
        tags.push(Tag::str("span.kind", kind));
    }
    match span.status_code {
        StatusCode::Error => {
            tags.push(Tag::str("otel.status_code", "ERROR"));
            tags.push(Tag {
                key: "error".into(),
                value: TagValue::Bool(true),
            });
        }
        StatusCode::Ok => tags.push(Tag::str("otel.status_code", "OK")),
        _ => {}
    }
    if !span.status_message.is_empty() {
        tags.push(Tag::str("otel.status_description", &span.status_message));
    }
    if !span.trace_state.is_empty() {
        tags.push(Tag::str("w3c.tracestate", &span.trace_state));
    }

    let mut process = Process {
        service_name: service_name(span),
        tags: span
            .resource
            .attributes
            .iter()
            .filter(|kv| kv.key != "service.name")
            .map(attribute_tag)
            .collect(),
    };

    let rpc_kind = tags
        .iter()
        .find(|t| t.key == "span.kind")
        .map(|t| match &t.value {
            TagValue::Str(s) => s.clone(),
            _ => String::new(),
        });
    if adjust {
        // adjusters: sort, then OTel library tags to the process, then IP tags
        sort_tags(&mut tags);
        sort_tags(&mut process.tags);
        let library;
        (library, tags) = tags
            .into_iter()
            .partition(|t| OTEL_LIBRARY_KEYS.contains(&t.key.as_str()));
        process.tags.extend(library);
        fix_ip_tags(&mut tags);
        fix_ip_tags(&mut process.tags);
        sort_tags(&mut process.tags);
    }

    JaegerSpan {
        span,
        span_id: span.span_id.as_bytes().to_vec(),
        rpc_kind,
        tags,
        references: references(span),
        process,
        warnings,
    }
}

/// Integer `ip` and `peer.ipv4` tags as dotted quads (Jaeger's IP tag adjuster).
fn fix_ip_tags(tags: &mut [Tag]) {
    for tag in tags.iter_mut() {
        if tag.key != "ip" && tag.key != "peer.ipv4" {
            continue;
        }
        let n = match tag.value {
            TagValue::Int(i) => i as u32,
            TagValue::Float(f) => f as u32,
            _ => continue,
        };
        let [a, b, c, d] = n.to_be_bytes();
        tag.value = TagValue::Str(format!("{a}.{b}.{c}.{d}"));
    }
}

fn references(span: &Span) -> Vec<Reference> {
    let trace_id = span.trace_id.as_bytes().to_vec();
    let mut refs = Vec::with_capacity(span.links.len() + 1);
    let parent = span.parent_span_id.map(|p| p.as_bytes().to_vec());
    if let Some(parent) = &parent {
        refs.push(Reference {
            child_of: true,
            trace_id: trace_id.clone(),
            span_id: parent.clone(),
        });
    }
    for link in &span.links {
        let child_of = link
            .attributes
            .iter()
            .find(|kv| kv.key == "opentracing.ref_type")
            .is_some_and(|kv| kv.value.as_ref().map(as_string).as_deref() == Some("child_of"));
        if parent.as_ref() == Some(&link.span_id) && link.trace_id == trace_id {
            refs[0].child_of = child_of;
            continue;
        }
        refs.push(Reference {
            child_of,
            trace_id: link.trace_id.clone(),
            span_id: link.span_id.clone(),
        });
    }
    refs
}

/// The span references and parent reference adjusters; returns the warnings of the first.
fn adjust_references(refs: &mut Vec<Reference>, trace_id: &[u8]) -> Vec<String> {
    // span references adjuster: a reference into trace 0 is dropped, saying so in Go's
    // `%+v` of the reference
    let mut warnings = Vec::new();
    refs.retain(|r| {
        let valid = id_halves(&r.trace_id) != (0, 0);
        if !valid {
            warnings.push(format!(
                "Invalid span reference removed {{TraceID:{} SpanID:{} RefType:{} \
                 XXX_NoUnkeyedLiteral:{{}} XXX_unrecognized:[] XXX_sizecache:0}}",
                trace_id_text(&r.trace_id),
                span_id_text(&r.span_id),
                if r.child_of {
                    "CHILD_OF"
                } else {
                    "FOLLOWS_FROM"
                }
            ));
        }
        valid
    });
    // parent reference adjuster: the first CHILD_OF into the same trace goes first
    let same = |r: &Reference| r.trace_id == trace_id;
    let first = refs
        .iter()
        .position(|r| same(r) && r.child_of)
        .or_else(|| refs.iter().position(same));
    if let Some(i) = first {
        refs.swap(0, i);
    }
    warnings
}

/// `model.Span.ParentSpanID`: the first `CHILD_OF` into the same trace, else the first
/// `FOLLOWS_FROM` into it.
fn parent_of(refs: &[Reference], trace_id: &[u8]) -> Option<Vec<u8>> {
    let same = |r: &&Reference| r.trace_id == trace_id;
    refs.iter()
        .filter(same)
        .find(|r| r.child_of)
        .or_else(|| refs.iter().find(same))
        .map(|r| r.span_id.clone())
}

/// `model.Span.ReplaceParentID`.
fn replace_parent(refs: &mut Vec<Reference>, trace_id: &[u8], new_parent: &[u8]) {
    let old = parent_of(refs, trace_id).unwrap_or_else(|| vec![0; 8]);
    if let Some(r) = refs
        .iter_mut()
        .find(|r| r.span_id == old && r.trace_id == trace_id)
    {
        r.span_id = new_parent.to_vec();
        return;
    }
    // MaybeAddParentSpanID
    if new_parent.iter().all(|b| *b == 0)
        || refs
            .iter()
            .any(|r| r.span_id == new_parent && r.trace_id == trace_id)
    {
        return;
    }
    refs.insert(
        0,
        Reference {
            child_of: true,
            trace_id: trace_id.to_vec(),
            span_id: new_parent.to_vec(),
        },
    );
}

/// Jaeger's clock-skew adjuster with `max_clock_skew_adjust: 0s` (Jaeger v2's default):
/// nothing is moved, but each span whose computed skew is not zero gets Jaeger's warning,
/// and so do spans with a duplicate id or a parent missing from the trace.
fn clock_skew_warnings(spans: &mut [JaegerSpan<'_>], trace_id: &[u8]) {
    // nodes: the first span of each id
    let mut node_of: HashMap<Vec<u8>, usize> = HashMap::new();
    for i in 0..spans.len() {
        if node_of.contains_key(&spans[i].span_id) {
            spans[i]
                .warnings
                .push("duplicate span IDs; skipping clock skew adjustment".into());
        } else {
            node_of.insert(spans[i].span_id.clone(), i);
        }
    }
    let mut nodes: Vec<usize> = node_of.values().copied().collect();
    nodes.sort_unstable();
    let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for &i in &nodes {
        match parent_of(&spans[i].references, trace_id).filter(|p| p.iter().any(|b| *b != 0)) {
            None => roots.push(i),
            Some(parent) => match node_of.get(&parent) {
                Some(&p) => children.entry(p).or_default().push(i),
                None => {
                    spans[i].warnings.push(format!(
                        "invalid parent span IDs={}; skipping clock skew adjustment",
                        span_id_text(&parent)
                    ));
                    roots.push(i);
                }
            },
        }
    }
    let host: Vec<String> = spans.iter().map(|s| host_key(&s.process)).collect();
    // (node, its parent, the skew it inherits: host and delta)
    let mut work: Vec<(usize, Option<usize>, String, i128)> = roots
        .iter()
        .map(|&r| (r, None, host[r].clone(), 0))
        .collect();
    while let Some((n, parent, mut skew_host, mut delta)) = work.pop() {
        if let Some(p) = parent {
            if host[n] != skew_host || host[n].is_empty() {
                skew_host = host[n].clone();
                delta = skew(spans[n].span, spans[p].span);
            }
        }
        if delta != 0 {
            spans[n].warnings.push(format!(
                "clock skew adjustment disabled; not applying calculated delta of {}",
                go_duration(delta)
            ));
        }
        for &c in children.get(&n).map(Vec::as_slice).unwrap_or(&[]) {
            work.push((c, Some(n), skew_host.clone(), delta));
        }
    }
}

/// `calculateSkew`: how far the child must move to sit inside its parent (nanoseconds).
fn skew(child: &Span, parent: &Span) -> i128 {
    let (ps, cs) = (
        parent.start_unix_nano as i128,
        child.start_unix_nano as i128,
    );
    let (pd, cd) = (
        parent.duration_nanos() as i128,
        child.duration_nanos() as i128,
    );
    if cd > pd {
        return if cs < ps { ps - cs } else { 0 };
    }
    if cs >= ps && cs + cd <= ps + pd {
        return 0;
    }
    ps + (pd - cd) / 2 - cs
}

/// The host of a process for the clock-skew adjuster: its `ip` tag.
fn host_key(process: &Process) -> String {
    let Some(tag) = process.tags.iter().find(|t| t.key == "ip") else {
        return String::new();
    };
    match &tag.value {
        TagValue::Str(s) => s.clone(),
        TagValue::Int(i) => std::net::Ipv4Addr::from(*i as u32).to_string(),
        TagValue::Binary(b) if b.len() == 4 => {
            std::net::Ipv4Addr::from(<[u8; 4]>::try_from(b.as_slice()).expect("4 bytes"))
                .to_string()
        }
        TagValue::Binary(b) if b.len() == 16 => {
            let v6 = std::net::Ipv6Addr::from(<[u8; 16]>::try_from(b.as_slice()).expect("16"));
            match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => v6.to_string(),
            }
        }
        _ => String::new(),
    }
}

/// Go's `time.Time.String()` of a UTC time: `2026-12-01 10:17:05.535747 +0000 UTC`.
pub fn go_time(unix_nano: u64) -> String {
    let secs = unix_nano / 1_000_000_000;
    let nanos = unix_nano % 1_000_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = clew_store::trace_index::days::civil_from_days(days as i64);
    let fraction = if nanos == 0 {
        String::new()
    } else {
        format!(".{nanos:09}").trim_end_matches('0').to_string()
    };
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}{fraction} +0000 UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Go's `time.Duration.String()`: `270ns`, `3.976µs`, `1.5ms`, `2m3.5s`, `1h0m0s`.
pub fn go_duration(nanos: i128) -> String {
    let neg = nanos < 0;
    let u = nanos.unsigned_abs();
    let frac = |v: u128, prec: u32| -> (u128, String) {
        let scale = 10u128.pow(prec);
        let digits = format!("{:0width$}", v % scale, width = prec as usize);
        let digits = digits.trim_end_matches('0');
        (
            v / scale,
            if digits.is_empty() {
                String::new()
            } else {
                format!(".{digits}")
            },
        )
    };
    let text = if u == 0 {
        "0s".to_string()
    } else if u < 1_000 {
        format!("{u}ns")
    } else if u < 1_000_000 {
        let (i, f) = frac(u, 3);
        format!("{i}{f}\u{b5}s")
    } else if u < 1_000_000_000 {
        let (i, f) = frac(u, 6);
        format!("{i}{f}ms")
    } else {
        let (secs, f) = frac(u, 9);
        let (mins, hours) = (secs / 60, secs / 3600);
        if hours > 0 {
            format!("{hours}h{}m{}{f}s", mins % 60, secs % 60)
        } else if mins > 0 {
            format!("{mins}m{}{f}s", secs % 60)
        } else {
            format!("{secs}{f}s")
        }
    };
    if neg {
        format!("-{text}")
    } else {
        text
    }
}

/// Jaeger's Zipkin span id uniquifier: a server span that shares its id with a client
/// span (Zipkin's shared spans) gets a new id, becomes the client span's child, and the
/// children of the shared id become its children.
fn uniquify_shared_span_ids(spans: &mut [JaegerSpan<'_>], trace_id: &[u8]) {
    let mut by_id: HashMap<Vec<u8>, Vec<usize>> = HashMap::new();
    for (i, s) in spans.iter().enumerate() {
        by_id.entry(s.span_id.clone()).or_default().push(i);
    }
    let mut max_used: u64 = 0;
    let mut old_to_new: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    for i in 0..spans.len() {
        let shared_with_client = by_id[&spans[i].span_id]
            .iter()
            .any(|&k| spans[k].rpc_kind.as_deref() == Some("client"));
        if spans[i].rpc_kind.as_deref() != Some("server") || !shared_with_client {
            continue;
        }
        let Some(new_id) =
            (max_used + 1..u64::MAX).find(|id| !by_id.contains_key(id.to_be_bytes().as_slice()))
        else {
            spans[i]
                .warnings
                .push("cannot assign unique span ID, too many spans in the trace".into());
            continue;
        };
        max_used = new_id;
        let new_id = new_id.to_be_bytes().to_vec();
        let old = std::mem::replace(&mut spans[i].span_id, new_id.clone());
        replace_parent(&mut spans[i].references, trace_id, &old);
        old_to_new.insert(old, new_id);
    }
    for s in spans.iter_mut() {
        let new_parent = parent_of(&s.references, trace_id).and_then(|p| old_to_new.get(&p));
        if let Some(new_parent) = new_parent {
            if s.span_id != *new_parent {
                let new_parent = new_parent.clone();
                replace_parent(&mut s.references, trace_id, &new_parent);
            }
        }
    }
}

/// Log fields of one event: `event` first, the other fields sorted (when adjusting).
fn log_out(event: &clew_proto::model::Event, adjust: bool) -> LogOut {
    let mut fields: Vec<Tag> = Vec::with_capacity(event.attributes.len() + 1);
    if !event.name.is_empty() && !event.attributes.iter().any(|kv| kv.key == "event") {
        fields.push(Tag::str("event", &event.name));
    }
    fields.extend(event.attributes.iter().map(attribute_tag));
    if adjust {
        let offset = match fields
            .iter()
            .position(|f| f.key == "event" && matches!(f.value, TagValue::Str(_)))
        {
            Some(i) => {
                fields.swap(0, i);
                1
            }
            None => 0,
        };
        if fields.len() > 1 {
            sort_tags(&mut fields[offset..]);
        }
    }
    LogOut {
        fields,
        timestamp: event.time_unix_nano / 1000,
    }
}

// Jaeger's JSON (`uimodel`), serialized straight from these: no `serde_json::Value` tree
// per tag and span. Fields are declared in the order of their JSON names' bytes, the order
// in which a `serde_json::Map` writes them, so the bytes are what the `Json` form gives.

/// A whole trace in Jaeger's JSON (`uimodel.Trace`).
#[derive(Serialize)]
pub struct TraceOut<'a> {
    processes: BTreeMap<String, ProcessOut>,
    spans: Vec<SpanOut<'a>>,
    #[serde(rename = "traceID")]
    trace_id: String,
    warnings: Option<()>,
}

#[derive(Serialize)]
struct ProcessOut {
    #[serde(rename = "serviceName")]
    service_name: String,
    tags: Vec<Tag>,
}

#[derive(Serialize)]
struct SpanOut<'a> {
    duration: u64,
    logs: Vec<LogOut>,
    #[serde(rename = "operationName")]
    operation_name: &'a str,
    #[serde(rename = "processID")]
    process_id: String,
    references: Vec<ReferenceOut>,
    #[serde(rename = "spanID")]
    span_id: String,
    #[serde(rename = "startTime")]
    start_time: u64,
    tags: Vec<Tag>,
    #[serde(rename = "traceID")]
    trace_id: String,
    /// `null` when there are none.
    warnings: Option<Vec<String>>,
}

#[derive(Serialize)]
struct ReferenceOut {
    #[serde(rename = "refType")]
    ref_type: &'static str,
    #[serde(rename = "spanID")]
    span_id: String,
    #[serde(rename = "traceID")]
    trace_id: String,
}

#[derive(Serialize)]
struct LogOut {
    fields: Vec<Tag>,
    timestamp: u64,
}

/// A whole trace in Jaeger's JSON (`uimodel.Trace`), ready to serialize; `adjust: false`
/// is Jaeger's `raw=true`, the translation without the adjusters.
pub fn trace_out(spans: &[Span], adjust: bool) -> TraceOut<'_> {
    let mut ordered: Vec<&Span> = spans.iter().collect();
    ordered.sort_by_key(|s| (s.start_unix_nano, s.span_id));
    let mut jaeger_spans: Vec<JaegerSpan<'_>> = ordered
        .into_iter()
        .map(|s| jaeger_span(s, adjust))
        .collect();
    let trace_id = spans.first().map(|s| s.trace_id.as_bytes().to_vec());
    let trace_id = trace_id.unwrap_or_default();
    if adjust {
        uniquify_shared_span_ids(&mut jaeger_spans, &trace_id);
        clock_skew_warnings(&mut jaeger_spans, &trace_id);
        for js in &mut jaeger_spans {
            let warnings = adjust_references(&mut js.references, &trace_id);
            js.warnings.extend(warnings);
        }
    }
    let trace_id_text = trace_id_text(&trace_id);
    let mut processes: Vec<Process> = Vec::new();
    let mut spans_out = Vec::with_capacity(jaeger_spans.len());
    for js in jaeger_spans {
        let index = match processes.iter().position(|p| *p == js.process) {
            Some(i) => i,
            None => {
                processes.push(js.process.clone());
                processes.len() - 1
            }
        };
        spans_out.push(span_out(
            js,
            format!("p{}", index + 1),
            &trace_id_text,
            adjust,
        ));
    }
    let processes = processes
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let process = ProcessOut {
                service_name: p.service_name,
                tags: p.tags,
            };
            (format!("p{}", i + 1), process)
        })
        .collect();
    TraceOut {
        processes,
        spans: spans_out,
        trace_id: if spans.is_empty() {
            String::new()
        } else {
            trace_id_text
        },
        warnings: None,
    }
}

/// [`trace_out`] as a JSON value.
pub fn trace_json(spans: &[Span], adjust: bool) -> Json {
    serde_json::to_value(trace_out(spans, adjust)).expect("a trace always serializes")
}

fn span_out<'a>(
    js: JaegerSpan<'a>,
    process_id: String,
    trace_id_text: &str,
    adjust: bool,
) -> SpanOut<'a> {
    let span = js.span;
    SpanOut {
        duration: span.duration_nanos() / 1000,
        logs: span.events.iter().map(|e| log_out(e, adjust)).collect(),
        operation_name: &span.name,
        process_id,
        references: js
            .references
            .iter()
            .map(|r| ReferenceOut {
                ref_type: if r.child_of {
                    "CHILD_OF"
                } else {
                    "FOLLOWS_FROM"
                },
                span_id: span_id_text(&r.span_id),
                trace_id: trace_id_text_of(&r.trace_id, span, trace_id_text),
            })
            .collect(),
        span_id: span_id_text(&js.span_id),
        start_time: span.start_unix_nano / 1000,
        tags: js.tags,
        trace_id: trace_id_text.to_string(),
        warnings: (!js.warnings.is_empty()).then_some(js.warnings),
    }
}

/// The text of a reference's trace id: the trace's own (the usual case) is written once.
fn trace_id_text_of(id: &[u8], span: &Span, own_text: &str) -> String {
    if id == span.trace_id.as_bytes() {
        own_text.to_string()
    } else {
        trace_id_text(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clew_proto::model::{ArrayValue, Event, KeyValueList, Link};
    use clew_store::conformance::fixtures::{checkout_trace, trace_id, BASE_TIME};
    use serde_json::json;

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    #[test]
    fn attribute_values_become_typed_tags() {
        let s =
            |v: Value| serde_json::to_value(attribute_tag(&kv("k", v))).unwrap()["value"].clone();
        assert_eq!(s(Value::StringValue("x".into())), json!("x"));
        assert_eq!(s(Value::IntValue(42)), json!(42));
        assert_eq!(s(Value::IntValue(1 << 60)), json!((1i64 << 60).to_string()));
        assert_eq!(s(Value::BoolValue(true)), json!(true));
        assert_eq!(s(Value::DoubleValue(1.5)), json!(1.5));
        assert_eq!(s(Value::BytesValue(vec![1, 2, 3, 4])), json!("AQIDBA=="));
        let array = Value::ArrayValue(ArrayValue {
            values: vec![
                AnyValue {
                    value: Some(Value::IntValue(1)),
                },
                AnyValue {
                    value: Some(Value::DoubleValue(2.0)),
                },
                AnyValue {
                    value: Some(Value::StringValue("<a>".into())),
                },
            ],
        });
        assert_eq!(s(array), json!("[1,2,\"\\u003ca\\u003e\"]"));
        let map = Value::KvlistValue(KeyValueList {
            values: vec![
                kv("z", Value::BoolValue(false)),
                kv("a", Value::IntValue(1)),
            ],
        });
        assert_eq!(s(map), json!("{\"a\":1,\"z\":false}"));
        assert_eq!(
            attribute_tag(&kv("k", Value::IntValue(1)))
                .value
                .type_name(),
            "int64"
        );
    }

    #[test]
    fn go_number_and_id_text() {
        assert_eq!(clew_proto::go_json::float(1.0), "1");
        assert_eq!(clew_proto::go_json::float(0.1), "0.1");
        assert_eq!(clew_proto::go_json::float(1e21), "1e+21");
        assert_eq!(clew_proto::go_json::float(1.5e-7), "1.5e-7");
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"ab"), "YWI=");
        let mut id = [0u8; 16];
        id[15] = 0xab;
        assert_eq!(trace_id_text(&id), "00000000000000ab");
        id[0] = 1;
        assert_eq!(trace_id_text(&id), "010000000000000000000000000000ab");
    }

    /// The answer is serialized straight from `TraceOut`: its bytes must be those of the
    /// `Json` form (whose maps write their keys sorted), for every kind of tag, reference,
    /// log and warning, adjusted and raw.
    #[test]
    fn direct_serialization_writes_the_bytes_of_the_json_form() {
        let mut spans = checkout_trace(trace_id(9), "9", BASE_TIME, true);
        spans[1].attributes.extend([
            kv("big", Value::IntValue(i64::MAX)),
            kv("nan", Value::DoubleValue(f64::NAN)),
            kv("ratio", Value::DoubleValue(0.25)),
            kv("raw", Value::BytesValue(vec![0, 1, 2])),
            kv("ok", Value::BoolValue(true)),
            kv(
                "<script>",
                Value::StringValue("\"quoted\"\n</script>".into()),
            ),
        ]);
        spans[2].end_unix_nano = spans[2].start_unix_nano; // a warning
        for adjust in [true, false] {
            let direct = serde_json::to_string(&trace_out(&spans, adjust)).unwrap();
            let tree = serde_json::to_string(&trace_json(&spans, adjust)).unwrap();
            assert_eq!(direct, tree, "adjust {adjust}");
        }
        let tree = trace_json(&spans, true);
        assert_eq!(tree["spans"].as_array().map(Vec::len), Some(4));
        assert!(tree["warnings"].is_null());
    }

    #[test]
    fn span_translation_follows_the_otel_translator_and_the_adjusters() {
        let mut spans = checkout_trace(trace_id(7), "7", BASE_TIME, true);
        let span = &mut spans[1];
        span.status_code = StatusCode::Error;
        span.status_message = "boom".into();
        span.trace_state = "k=v".into();
        span.attributes
            .push(kv("peer.ipv4", Value::IntValue(0x7f000001)));
        span.attributes
            .push(kv("telemetry.sdk.name", Value::StringValue("x".into())));
        span.events = vec![Event {
            time_unix_nano: 5_000,
            name: "exception".into(),
            attributes: vec![
                kv("exception.type", Value::StringValue("E".into())),
                kv("a", Value::IntValue(1)),
            ],
            dropped_attributes_count: 0,
        }];
        let other = trace_id(8);
        span.links = vec![Link {
            trace_id: other.as_bytes().to_vec(),
            span_id: vec![0, 0, 0, 0, 0, 0, 0, 9],
            ..Default::default()
        }];
        let trace = trace_json(&spans, true);
        let j = trace["spans"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["spanID"] == span_id_text(spans[1].span_id.as_bytes()))
            .unwrap();
        let keys: Vec<&str> = j["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["key"].as_str().unwrap())
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "tags are sorted by key");
        assert!(
            !keys.contains(&"telemetry.sdk.name"),
            "moved to the process"
        );
        let tag = |k: &str| {
            j["tags"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["key"] == k)
                .unwrap_or_else(|| panic!("no tag {k} in {j}"))["value"]
                .clone()
        };
        assert_eq!(tag("error"), json!(true));
        assert_eq!(tag("otel.status_code"), json!("ERROR"));
        assert_eq!(tag("otel.status_description"), json!("boom"));
        assert_eq!(tag("w3c.tracestate"), json!("k=v"));
        assert_eq!(tag("peer.ipv4"), json!("127.0.0.1"));
        assert_eq!(tag("span.kind"), json!(kind_text(spans[1].kind).unwrap()));
        let refs = j["references"].as_array().unwrap();
        assert_eq!(refs[0]["refType"], "CHILD_OF");
        assert_eq!(refs[1]["refType"], "FOLLOWS_FROM");
        assert_eq!(refs[1]["spanID"], "0000000000000009");
        let fields = j["logs"][0]["fields"].as_array().unwrap();
        assert_eq!(
            fields[0],
            json!({"key": "event", "type": "string", "value": "exception"})
        );
        assert_eq!(fields[1]["key"], "a");
        assert_eq!(j["logs"][0]["timestamp"], 5);
        let pid = j["processID"].as_str().unwrap();
        let process = &trace["processes"][pid];
        assert!(process["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["key"] == "telemetry.sdk.name"));
        assert_eq!(process["serviceName"], json!(service_name(&spans[1])));
        assert_eq!(trace["warnings"], Json::Null);
        assert_eq!(j["warnings"], Json::Null);
    }

    #[test]
    fn a_server_span_sharing_a_client_span_id_gets_its_own_id() {
        use clew_proto::SpanId;
        let id = |n: u64| SpanId(n.to_be_bytes());
        let mut spans = checkout_trace(trace_id(5), "5", BASE_TIME, false);
        spans.truncate(2); // frontend root (server), checkout (server, child of the root)
        let mut client = spans[0].clone();
        client.span_id = id(5);
        client.parent_span_id = Some(spans[0].span_id); // the root: fixture id 2
        client.kind = SpanKind::Client;
        client.start_unix_nano += 1;
        let mut server = spans[1].clone();
        server.span_id = id(5);
        server.parent_span_id = Some(spans[0].span_id);
        server.start_unix_nano += 2;
        let mut child = spans[1].clone();
        child.span_id = id(6);
        child.parent_span_id = Some(id(5));
        child.kind = SpanKind::Internal;
        child.start_unix_nano += 3;
        spans.truncate(1);
        spans.extend([client, server, child]);
        let trace = trace_json(&spans, true);
        let by_id = |sid: &str| {
            trace["spans"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["spanID"] == sid)
                .cloned()
                .collect::<Vec<_>>()
        };
        // ids 2, 5 and 6 are taken: the server span becomes 1, a child of the client span
        let server = &by_id("0000000000000001")[0];
        assert_eq!(server["references"][0]["spanID"], "0000000000000005");
        assert_eq!(
            by_id("0000000000000005").len(),
            1,
            "only the client keeps 5"
        );
        let child = &by_id("0000000000000006")[0];
        assert_eq!(child["references"][0]["spanID"], "0000000000000001");
        // raw: untouched
        let raw = trace_json(&spans, false);
        let fives = raw["spans"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["spanID"] == "0000000000000005")
            .count();
        assert_eq!(fives, 2);
    }

    #[test]
    fn go_time_text() {
        assert_eq!(go_time(0), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(
            go_time(1_796_120_225_535_747_000),
            "2026-12-01 10:17:05.535747 +0000 UTC"
        );
        assert_eq!(
            go_time(951_782_400_000_000_001),
            "2000-02-29 00:00:00.000000001 +0000 UTC"
        );
    }

    #[test]
    fn go_duration_text() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(270), "270ns");
        assert_eq!(go_duration(-3_976), "-3.976\u{b5}s");
        assert_eq!(go_duration(1_500_000), "1.5ms");
        assert_eq!(go_duration(2_000_000_000), "2s");
        assert_eq!(go_duration(123_500_000_000), "2m3.5s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
    }

    #[test]
    fn clock_skew_is_computed_and_only_warned_about() {
        let mut spans = checkout_trace(trace_id(11), "11", BASE_TIME, false);
        spans.truncate(2);
        // the child ends 20 ms after its parent: Jaeger would centre it, 25 ms earlier
        spans[1].start_unix_nano = spans[0].start_unix_nano + 30_000_000;
        spans[1].end_unix_nano = spans[1].start_unix_nano + 40_000_000;
        let mut orphan = spans[1].clone();
        orphan.span_id = clew_proto::SpanId([9; 8]);
        orphan.parent_span_id = Some(clew_proto::SpanId([8; 8]));
        spans.push(orphan);
        let trace = trace_json(&spans, true);
        let warnings = |sid: &str| {
            trace["spans"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["spanID"] == sid)
                .unwrap()["warnings"]
                .clone()
        };
        let child = span_id_text(spans[1].span_id.as_bytes());
        assert_eq!(
            warnings(&child),
            json!(["clock skew adjustment disabled; not applying calculated delta of -25ms"])
        );
        assert_eq!(
            warnings("0909090909090909"),
            json!(["invalid parent span IDs=0808080808080808; skipping clock skew adjustment"])
        );
        assert_eq!(
            warnings(&span_id_text(spans[0].span_id.as_bytes())),
            Json::Null
        );
        let raw = trace_json(&spans, false);
        assert!(raw["spans"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["warnings"].is_null()));
    }

    #[test]
    fn jaeger_warnings_attribute_becomes_span_warnings() {
        let mut spans = checkout_trace(trace_id(9), "9", BASE_TIME, false);
        spans.truncate(1);
        spans[0].attributes.push(kv(
            WARNINGS_ATTRIBUTE,
            Value::ArrayValue(ArrayValue {
                values: vec![AnyValue {
                    value: Some(Value::StringValue("clock skew".into())),
                }],
            }),
        ));
        let trace = trace_json(&spans, true);
        let span = &trace["spans"][0];
        assert_eq!(span["warnings"], json!(["clock skew"]));
        assert!(!span["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["key"] == WARNINGS_ATTRIBUTE));
    }
}
