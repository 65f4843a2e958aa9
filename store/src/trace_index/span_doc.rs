//! Span → index document values, in one place for every trace-index backend: the lean
//! [`SpanDoc`] extracted from a span (what tantivy indexes and OpenSearch is sent, so both
//! index exactly the same values) and the exact `name=value` terms of keys and attributes.
//!
//! Which attributes become terms is [`IndexedAttributes`]: by default every string, int,
//! bool and double attribute of the span, its scope, its resource and its events (what a
//! Jaeger tag search looks at), each value up to [`MAX_INDEXED_VALUE_BYTES`]; or only a
//! configured list of names.

use std::collections::HashSet;
use std::sync::Arc;

use clew_proto::model::{any_value, value_to_string, KeyValue};
use clew_proto::Span;

use super::days::day_of;

/// Longest error text indexed per span (bytes); stack-trace-sized messages are cut.
const MAX_ERROR_TEXT_BYTES: usize = 4096;
/// Longest indexed term (bytes: a service or span name, a `name=value` pair); longer ones
/// are cut. Tantivy rejects terms above 65 530 bytes.
pub const MAX_TERM_BYTES: usize = 1024;

/// Longest attribute value (and name) indexed when every attribute is indexed (bytes):
/// identifiers, routes, statuses and hosts fit; SQL text, stack traces and bodies are left
/// out of the index (they stay in the stored span).
pub const MAX_INDEXED_VALUE_BYTES: usize = 256;
/// Most attribute terms one span contributes when every attribute is indexed; the span's
/// own attributes come first, then its resource, scope and events.
pub const MAX_ATTRIBUTE_TERMS_PER_SPAN: usize = 128;
/// The `indexed_attributes` entry that selects every attribute.
pub const ALL_ATTRIBUTES: &str = "*";

/// Which attributes the index keeps `name=value` terms for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexedAttributes {
    /// Every string, int, bool and double attribute of the span, its scope, resource and
    /// events, values up to [`MAX_INDEXED_VALUE_BYTES`] (`indexed_attributes = ["*"]`).
    All,
    /// Only these names, looked up on the span, then on its resource (values cut at 1 KiB).
    Listed(Arc<[String]>),
}

impl IndexedAttributes {
    /// From the configured `indexed_attributes`: a `"*"` among them selects every attribute.
    pub fn from_names(names: &[String]) -> IndexedAttributes {
        if names.iter().any(|n| n == ALL_ATTRIBUTES) {
            IndexedAttributes::All
        } else {
            IndexedAttributes::Listed(names.into())
        }
    }

    /// Whether an `attr=name:value` condition can ever match: the index holds terms for
    /// `name` and for values of this length.
    pub fn covers(&self, name: &str, value: &str) -> bool {
        match self {
            IndexedAttributes::All => {
                name.len() <= MAX_INDEXED_VALUE_BYTES && value.len() <= MAX_INDEXED_VALUE_BYTES
            }
            IndexedAttributes::Listed(names) => names.iter().any(|n| n == name),
        }
    }

    fn terms(&self, span: &Span) -> Vec<String> {
        match self {
            IndexedAttributes::All => every_attribute_term(span),
            IndexedAttributes::Listed(names) => names
                .iter()
                .filter_map(|name| {
                    span.attribute(name)
                        .map(|v| term_pair(name, &value_to_string(v)))
                })
                .collect(),
        }
    }
}

/// The distinct `name=value` terms of every scalar attribute of `span`, in the order of
/// [`MAX_ATTRIBUTE_TERMS_PER_SPAN`], skipping names and values over
/// [`MAX_INDEXED_VALUE_BYTES`].
fn every_attribute_term(span: &Span) -> Vec<String> {
    let sources = std::iter::once(&span.attributes)
        .chain(std::iter::once(&span.resource.attributes))
        .chain(std::iter::once(&span.scope.attributes))
        .chain(span.events.iter().map(|e| &e.attributes));
    let mut terms = Vec::new();
    let mut seen = HashSet::new();
    'sources: for attrs in sources {
        for kv in attrs {
            if terms.len() == MAX_ATTRIBUTE_TERMS_PER_SPAN {
                break 'sources;
            }
            if let Some(term) = scalar_term(kv) {
                if seen.insert(term.clone()) {
                    terms.push(term);
                }
            }
        }
    }
    terms
}

/// `name=value` of a string, int, bool or double attribute within the size limits.
fn scalar_term(kv: &KeyValue) -> Option<String> {
    use any_value::Value;
    if kv.key.is_empty() || kv.key.len() > MAX_INDEXED_VALUE_BYTES {
        return None;
    }
    let value = kv.value.as_ref()?;
    match value.value.as_ref()? {
        Value::StringValue(s) if s.len() > MAX_INDEXED_VALUE_BYTES => None,
        Value::StringValue(_)
        | Value::BoolValue(_)
        | Value::IntValue(_)
        | Value::DoubleValue(_) => Some(term_pair(&kv.key, &value_to_string(value))),
        _ => None,
    }
}

/// What the index keeps of one span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanDoc {
    pub trace_id: [u8; 16],
    pub start_unix_nano: u64,
    pub duration_nanos: u64,
    pub service: String,
    pub operation: String,
    pub kind: String,
    pub error: bool,
    /// Status message, exception type and message; empty unless `error`.
    pub error_text: String,
    /// Business keys as `name=value`.
    pub keys: Vec<String>,
    /// Indexed attributes as `name=value` (see [`IndexedAttributes`]).
    pub attrs: Vec<String>,
}

impl SpanDoc {
    /// Extracts the indexed parts of `span`, with the attribute terms `indexed` selects.
    pub fn from_span(span: &Span, indexed: &IndexedAttributes) -> SpanDoc {
        let error = span.is_error();
        let mut error_text = String::new();
        if error {
            error_text.push_str(&span.status_message);
            if let Some((ty, msg)) = span.exception() {
                error_text.push(' ');
                error_text.push_str(&ty);
                if msg != span.status_message {
                    error_text.push(' ');
                    error_text.push_str(&msg);
                }
            }
            truncate_at_char(&mut error_text, MAX_ERROR_TEXT_BYTES);
        }
        let keys = span
            .business_keys
            .iter()
            .map(|k| term_pair(&k.name, &k.value))
            .collect();
        let attrs = indexed.terms(span);
        SpanDoc {
            trace_id: span.trace_id.0,
            start_unix_nano: span.start_unix_nano,
            duration_nanos: span.duration_nanos(),
            service: bounded(&span.service_name),
            operation: bounded(&span.name),
            kind: span.kind.as_str().to_string(),
            error,
            error_text,
            keys,
            attrs,
        }
    }

    /// The UTC day partition of the document.
    pub fn day(&self) -> u32 {
        day_of(self.start_unix_nano)
    }
}

/// The exact `name=value` term of a business key or an indexed attribute.
pub fn term_pair(name: &str, value: &str) -> String {
    let mut t = String::with_capacity(name.len() + value.len() + 1);
    t.push_str(name);
    t.push('=');
    t.push_str(value);
    truncate_at_char(&mut t, MAX_TERM_BYTES);
    t
}

fn bounded(s: &str) -> String {
    let mut s = s.to_string();
    truncate_at_char(&mut s, MAX_TERM_BYTES);
    s
}

pub(crate) fn truncate_at_char(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::fixtures::{checkout_trace, kv, trace_id, BASE_TIME};

    #[test]
    fn extracts_keys_attributes_and_error_text() {
        let spans = checkout_trace(trace_id(1), "12345", BASE_TIME, true);
        let attrs = IndexedAttributes::from_names(&[
            "db.system".to_string(),
            "http.route".to_string(),
            "host.name".to_string(),
        ]);
        let root = SpanDoc::from_span(&spans[0], &attrs);
        assert_eq!(root.keys, vec!["order_id=12345"]);
        assert!(!root.error && root.error_text.is_empty());
        assert!(
            root.attrs.contains(&"host.name=host-1".to_string()),
            "resource attribute"
        );
        let db = SpanDoc::from_span(&spans[3], &attrs);
        assert!(db.error);
        assert!(db.error_text.contains("PaymentDeclinedError"));
        assert!(db.error_text.contains("card declined"));
        assert!(db.attrs.contains(&"db.system=postgresql".to_string()));
        assert_eq!(db.service, "payments");
    }

    #[test]
    fn listed_attributes_index_only_those_names() {
        let spans = checkout_trace(trace_id(1), "12345", BASE_TIME, true);
        let listed = IndexedAttributes::from_names(&["db.system".to_string()]);
        assert_eq!(
            SpanDoc::from_span(&spans[3], &listed).attrs,
            vec!["db.system=postgresql"]
        );
        assert!(listed.covers("db.system", "x"));
        assert!(!listed.covers("http.route", "/"));
    }

    #[test]
    fn every_attribute_of_span_resource_scope_and_events_is_a_term() {
        use clew_proto::model::{AnyValue, Event};
        let mut span = checkout_trace(trace_id(1), "12345", BASE_TIME, true).remove(3);
        let scalar = |key: &str, v: any_value::Value| KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        };
        span.attributes
            .push(scalar("retry", any_value::Value::IntValue(3)));
        span.attributes
            .push(scalar("cached", any_value::Value::BoolValue(false)));
        span.attributes
            .push(scalar("ratio", any_value::Value::DoubleValue(0.5)));
        span.attributes.push(scalar(
            "db.statement",
            any_value::Value::StringValue("x".repeat(MAX_INDEXED_VALUE_BYTES + 1)),
        ));
        span.attributes
            .push(scalar("blob", any_value::Value::BytesValue(vec![1, 2, 3])));
        span.events.push(Event {
            name: "cache.miss".into(),
            attributes: vec![kv("cache.key", "user:7")],
            ..Default::default()
        });
        let all = IndexedAttributes::from_names(&["http.route".into(), "*".into()]);
        assert_eq!(all, IndexedAttributes::All);
        let attrs = SpanDoc::from_span(&span, &all).attrs;
        for term in [
            "db.system=postgresql",
            "retry=3",
            "cached=false",
            "ratio=0.5",
            "host.name=host-1",
            "telemetry.sdk.language=rust",
            "cache.key=user:7",
            "exception.type=PaymentDeclinedError",
        ] {
            assert!(attrs.contains(&term.to_string()), "{term} in {attrs:?}");
        }
        assert!(
            !attrs
                .iter()
                .any(|t| t.starts_with("db.statement=") || t.starts_with("blob=")),
            "long values and bytes stay out of the index: {attrs:?}"
        );
        let distinct: HashSet<_> = attrs.iter().collect();
        assert_eq!(distinct.len(), attrs.len(), "terms are distinct");
        assert!(all.covers("anything", "short"));
        assert!(!all.covers("anything", &"x".repeat(MAX_INDEXED_VALUE_BYTES + 1)));
    }

    #[test]
    fn a_span_contributes_at_most_the_term_cap() {
        let mut span = checkout_trace(trace_id(1), "1", BASE_TIME, false).remove(0);
        for i in 0..MAX_ATTRIBUTE_TERMS_PER_SPAN * 2 {
            span.attributes.push(kv(&format!("a{i}"), "v"));
        }
        let attrs = SpanDoc::from_span(&span, &IndexedAttributes::All).attrs;
        assert_eq!(attrs.len(), MAX_ATTRIBUTE_TERMS_PER_SPAN);
        assert!(
            attrs.contains(&"a0=v".to_string()),
            "the span's own attributes first"
        );
    }
}
