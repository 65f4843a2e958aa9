//! Enrich stage: finds the configured business keys on each span.
//!
//! A key `order_id` is looked up, first hit wins, on the span's attributes, then its
//! resource's attributes, then as a baggage-derived attribute `baggage.order_id` (span,
//! then resource). The value is the attribute's text form
//! ([`clew_proto::model::value_to_string`]); empty values are skipped.

use clew_proto::model::value_to_string;
use clew_proto::{BusinessKey, Span};

/// Prefix under which propagated baggage entries are recorded as span attributes.
pub const BAGGAGE_PREFIX: &str = "baggage.";

/// The configured business keys, ready to look up.
#[derive(Debug, Clone, Default)]
pub struct Enricher {
    /// `(name, "baggage.<name>")`
    keys: Vec<(String, String)>,
}

impl Enricher {
    pub fn new(names: &[String]) -> Self {
        let mut keys: Vec<(String, String)> = Vec::with_capacity(names.len());
        for n in names {
            let n = n.trim();
            if !n.is_empty() && !keys.iter().any(|(k, _)| k == n) {
                keys.push((n.to_string(), format!("{BAGGAGE_PREFIX}{n}")));
            }
        }
        Enricher { keys }
    }

    /// Fills `span.business_keys` (replacing whatever was there).
    pub fn enrich(&self, span: &mut Span) {
        if self.keys.is_empty() {
            return;
        }
        let mut found = Vec::new();
        for (name, baggage_name) in &self.keys {
            let value = span
                .attribute(name)
                .map(value_to_string)
                .filter(|v| !v.is_empty())
                .or_else(|| {
                    span.attribute(baggage_name)
                        .map(value_to_string)
                        .filter(|v| !v.is_empty())
                });
            if let Some(value) = value {
                found.push(BusinessKey {
                    name: name.clone(),
                    value,
                });
            }
        }
        span.business_keys = found;
    }

    /// Enriches every span. Keys a span already carries (an Avro record from `clew agent`)
    /// are kept after the configured ones; spans converted from OTLP carry none.
    pub fn enrich_all(&self, spans: &mut [Span]) {
        if self.keys.is_empty() {
            return;
        }
        for span in spans {
            let carried = std::mem::take(&mut span.business_keys);
            self.enrich(span);
            for key in carried {
                if !span.business_keys.contains(&key) {
                    span.business_keys.push(key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clew_proto::model::{any_value::Value, AnyValue, KeyValue, Resource};
    use clew_proto::{SpanId, TraceId};
    use std::sync::Arc;

    fn kv(k: &str, v: Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    fn span(attrs: Vec<KeyValue>, res: Vec<KeyValue>) -> Span {
        Span {
            tenant: Default::default(),
            trace_id: TraceId([1; 16]),
            span_id: SpanId([1; 8]),
            parent_span_id: None,
            trace_state: String::new(),
            flags: 0,
            name: "op".into(),
            kind: Default::default(),
            start_unix_nano: 1,
            end_unix_nano: 2,
            attributes: attrs,
            dropped_attributes_count: 0,
            events: vec![],
            dropped_events_count: 0,
            links: vec![],
            dropped_links_count: 0,
            status_code: Default::default(),
            status_message: String::new(),
            resource: Arc::new(Resource {
                attributes: res,
                ..Default::default()
            }),
            scope: Default::default(),
            service_name: "s".into(),
            business_keys: vec![],
            repairs: 0,
        }
    }

    #[test]
    fn span_then_resource_then_baggage_skipping_empty() {
        let e = Enricher::new(&[
            "order_id".into(),
            "user_id".into(),
            "tenant".into(),
            "missing".into(),
        ]);
        let mut s = span(
            vec![
                kv("order_id", Value::IntValue(12345)),
                kv("user_id", Value::StringValue(String::new())),
                kv("baggage.user_id", Value::StringValue("u-7".into())),
            ],
            vec![
                kv("tenant", Value::StringValue("acme".into())),
                kv("order_id", Value::StringValue("other".into())),
            ],
        );
        e.enrich(&mut s);
        let got: Vec<(&str, &str)> = s
            .business_keys
            .iter()
            .map(|k| (k.name.as_str(), k.value.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("order_id", "12345"),
                ("user_id", "u-7"),
                ("tenant", "acme")
            ]
        );
    }
}
