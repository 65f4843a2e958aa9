//! Span → index document values, in one place for every trace-index backend: the lean
//! [`SpanDoc`] extracted from a span (what tantivy indexes and OpenSearch is sent, so both
//! index exactly the same values) and the exact `name=value` terms of keys and attributes.

use clew_proto::model::value_to_string;
use clew_proto::Span;

use super::days::day_of;

/// Longest error text indexed per span (bytes); stack-trace-sized messages are cut.
const MAX_ERROR_TEXT_BYTES: usize = 4096;
/// Longest indexed term value (bytes); tantivy rejects terms above 65 530 bytes.
const MAX_TERM_BYTES: usize = 1024;

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
    /// Configured indexed attributes as `name=value`.
    pub attrs: Vec<String>,
}

impl SpanDoc {
    /// Extracts the indexed parts of `span`; `indexed_attributes` are looked up on the span,
    /// then on its resource.
    pub fn from_span(span: &Span, indexed_attributes: &[String]) -> SpanDoc {
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
        let attrs = indexed_attributes
            .iter()
            .filter_map(|name| {
                span.attribute(name)
                    .map(|v| term_pair(name, &value_to_string(v)))
            })
            .collect();
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
    use crate::conformance::fixtures::{checkout_trace, trace_id, BASE_TIME};

    #[test]
    fn extracts_keys_attributes_and_error_text() {
        let spans = checkout_trace(trace_id(1), "12345", BASE_TIME, true);
        let attrs = vec![
            "db.system".to_string(),
            "http.route".to_string(),
            "host.name".to_string(),
        ];
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
}
