//! The OpenSearch side of the index contract, in one place: field names, the index
//! template (settings + explicit mappings), daily index names, and the span → document
//! conversion (built on the shared [`SpanDoc`], so both backends index exactly the same
//! values).
//!
//! | field | mapping | why |
//! |---|---|---|
//! | `trace_id` | keyword (hex), doc values | what searches return; sort tie-break, terms filter and per-trace aggregation |
//! | `start` | long (unix ns), doc values | exact ns for newest-first order, time ranges and cursors (`date` holds ms only) |
//! | `start_time` | date (epoch ms) | for people browsing the indices (OpenSearch Dashboards' time field) |
//! | `duration` | long (ns), no doc values | min/max duration ranges |
//! | `service`, `operation` | keyword, doc values | exact filters; `services()` and `operations()` as terms aggregations |
//! | `kind` | keyword, no doc values | exact filter |
//! | `error` | boolean, error spans only | errors-only |
//! | `error_text` | text, doc ids only, no norms | free text over status message, exception type and message |
//! | `keys`, `attrs` | keyword `name=value`, no doc values | business keys and configured attributes, exact terms |
//! | `tenant` | keyword, no doc values | the span's tenant: a filter of every search (`docs/adr/0011-tenants.md`); documents of before tenants have none and count as `default` |
//!
//! `_source` is off: the span store holds the spans, the index only answers "which
//! traces". Mappings are `strict`, so a document that does not fit is an error, not a
//! silently added field. Document ids are derived from (trace id, span id, kind), so
//! writing a span again overwrites its document instead of adding one; for a tenant other than
//! `default` the id starts with the tenant's key prefix, so equal ids in two tenants are two
//! documents.

use base64::Engine as _;
use clew_proto::{Span, Tenant};
use serde_json::{json, Value};

use crate::row_layout::discriminator;
use crate::trace_index::days::{day_dir_name, parse_day_dir_name};
use crate::trace_index::query_plan::words;
use crate::trace_index::span_doc::SpanDoc;
use crate::RetentionClass;

pub const TRACE_ID: &str = "trace_id";
pub const START: &str = "start";
pub const START_TIME: &str = "start_time";
pub const DURATION: &str = "duration";
pub const SERVICE: &str = "service";
pub const OPERATION: &str = "operation";
pub const KIND: &str = "kind";
pub const ERROR: &str = "error";
pub const ERROR_TEXT: &str = "error_text";
pub const KEYS: &str = "keys";
pub const ATTRS: &str = "attrs";
pub const TENANT: &str = "tenant";

/// The mapping of the fields added after the first template, put on indices that exist
/// already (their mappings are strict).
pub fn added_mappings() -> Value {
    json!({"properties": {TENANT: {"type": "keyword", "doc_values": false}}})
}

/// The filter that keeps a search within `tenant`. Documents indexed before tenants have
/// no `tenant` field and belong to `default`.
pub fn tenant_filter(tenant: &Tenant) -> Value {
    if tenant.is_default() {
        json!({"bool": {
            "should": [
                {"term": {TENANT: tenant.as_str()}},
                {"bool": {"must_not": {"exists": {"field": TENANT}}}},
            ],
            "minimum_should_match": 1,
        }})
    } else {
        json!({"term": {TENANT: tenant.as_str()}})
    }
}

/// The index template clew installs as `<prefix>`: every index `<prefix>-*` gets these
/// settings and mappings and joins the alias `<prefix>`, which searches go through.
pub fn index_template(prefix: &str, shards: u32, replicas: u32) -> Value {
    let keyword = |doc_values: bool| json!({"type": "keyword", "doc_values": doc_values});
    json!({
        "index_patterns": [format!("{prefix}-*")],
        // Composable templates with overlapping patterns must differ in priority: a
        // longer prefix (`clew-spans-eu` next to `clew-spans`) is more specific and wins.
        "priority": 100 + prefix.len(),
        "template": {
            "settings": {
                "index": {
                    "number_of_shards": shards,
                    "number_of_replicas": replicas,
                    // Searchable within 2 s of the acknowledgement; set explicitly so that
                    // idle shards keep refreshing too.
                    "refresh_interval": "1s",
                    // fsync the translog before acknowledging each bulk request.
                    "translog.durability": "request",
                }
            },
            "mappings": {
                "dynamic": "strict",
                "_source": {"enabled": false},
                "properties": {
                    TRACE_ID: keyword(true),
                    START: {"type": "long"},
                    START_TIME: {"type": "date", "format": "epoch_millis"},
                    DURATION: {"type": "long", "doc_values": false},
                    SERVICE: keyword(true),
                    OPERATION: keyword(true),
                    KIND: keyword(false),
                    ERROR: {"type": "boolean", "doc_values": false},
                    ERROR_TEXT: {
                        "type": "text",
                        "analyzer": "standard",
                        "index_options": "docs",
                        "norms": false,
                    },
                    KEYS: keyword(false),
                    ATTRS: keyword(false),
                    TENANT: keyword(false),
                }
            },
            "aliases": { prefix: {} },
        },
        "_meta": {"managed_by": "clew", "schema_version": 1},
    })
}

/// `<prefix>-YYYY.MM.DD` of the UTC day `day` (days since the unix epoch) in the default
/// retention class, `<prefix>-r<days>-YYYY.MM.DD` in a class of `days`.
pub fn index_name(prefix: &str, class: RetentionClass, day: u32) -> String {
    let date = day_dir_name(day).replace('-', ".");
    match class.tag() {
        None => format!("{prefix}-{date}"),
        Some(tag) => format!("{prefix}-{tag}-{date}"),
    }
}

/// The class and day of an index named by [`index_name`] with this `prefix`; `None` for
/// any other name (another prefix that shares ours as its beginning, a hand-made index).
pub fn day_of_index(prefix: &str, name: &str) -> Option<(RetentionClass, u32)> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('-')?;
    let (class, date) = match rest.split_once('-') {
        Some((tag, date)) => (RetentionClass::parse_tag(tag)?, date),
        None => (RetentionClass::Default, rest),
    };
    if date.contains('-') {
        return None;
    }
    Some((class, parse_day_dir_name(&date.replace('.', "-"))?))
}

/// Document id: URL-safe base64 of trace id, span id and the kind discriminator (the span
/// store's cell identity), which OpenSearch keeps as 25 raw bytes.
pub fn doc_id(span: &Span) -> String {
    let mut raw = Vec::with_capacity(33);
    if let Some(prefix) = span.tenant.key_prefix() {
        raw.extend_from_slice(&prefix);
    }
    raw.extend_from_slice(&span.trace_id.0);
    raw.extend_from_slice(&span.span_id.0);
    raw.push(discriminator(span.kind));
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// The JSON document of one span.
pub fn to_document(doc: &SpanDoc) -> Value {
    let start = clamp_i64(doc.start_unix_nano);
    let mut v = json!({
        TRACE_ID: hex::encode(doc.trace_id),
        START: start,
        START_TIME: start / 1_000_000,
        DURATION: clamp_i64(doc.duration_nanos),
        SERVICE: doc.service,
        OPERATION: doc.operation,
        KIND: doc.kind,
        TENANT: doc.tenant.as_str(),
    });
    let map = v.as_object_mut().expect("object");
    if doc.error {
        map.insert(ERROR.into(), Value::Bool(true));
        // The shared words, so OpenSearch's `standard` analyzer only ever sees words it
        // keeps as they are (`java.net.SocketTimeoutException` is one word in `standard`).
        let words = words(&doc.error_text);
        if !words.is_empty() {
            map.insert(ERROR_TEXT.into(), Value::String(words.join(" ")));
        }
    }
    if !doc.keys.is_empty() {
        map.insert(KEYS.into(), json!(doc.keys));
    }
    if !doc.attrs.is_empty() {
        map.insert(ATTRS.into(), json!(doc.attrs));
    }
    v
}

/// Nanosecond values past 2262 do not fit OpenSearch's signed long; they are clamped.
pub fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::fixtures::{checkout_trace, trace_id, BASE_TIME};
    use crate::trace_index::days::day_of;

    #[test]
    fn index_names_round_trip_and_reject_other_prefixes() {
        let day = day_of(BASE_TIME);
        let default = RetentionClass::Default;
        assert_eq!(
            index_name("clew-spans", default, day),
            "clew-spans-2023.11.14"
        );
        assert_eq!(
            day_of_index("clew-spans", "clew-spans-2023.11.14"),
            Some((default, day))
        );
        let r30 = RetentionClass::Days(30);
        assert_eq!(
            index_name("clew-spans", r30, day),
            "clew-spans-r30-2023.11.14"
        );
        assert_eq!(
            day_of_index("clew-spans", "clew-spans-r30-2023.11.14"),
            Some((r30, day))
        );
        assert_eq!(day_of_index("clew-spans", "clew-spans-r0-2023.11.14"), None);
        assert_eq!(
            day_of_index("clew-spans", "clew-spans-r30-x-2023.11.14"),
            None
        );
        assert_eq!(day_of_index("clew-spans", "clew-spans-eu-2023.11.14"), None);
        assert_eq!(day_of_index("clew-spans", "clew-spans-2023-11-14"), None);
        assert_eq!(day_of_index("clew-spans", "clew-spans2023.11.14"), None);
        assert_eq!(day_of_index("clew", "clew-spans-2023.11.14"), None);
    }

    #[test]
    fn documents_carry_every_indexed_field() {
        let spans = checkout_trace(trace_id(1), "A-1", BASE_TIME, true);
        let attrs = crate::trace_index::span_doc::IndexedAttributes::from_names(&[
            "db.system".to_string(),
            "http.route".to_string(),
        ]);
        let root = to_document(&SpanDoc::from_span(&spans[0], &attrs));
        assert_eq!(root[TRACE_ID], hex::encode(trace_id(1).0));
        assert_eq!(root[START], BASE_TIME as i64);
        assert_eq!(root[START_TIME], (BASE_TIME / 1_000_000) as i64);
        assert_eq!(root[DURATION], 50_000_000);
        assert_eq!(root[SERVICE], "frontend");
        assert_eq!(root[OPERATION], "GET /checkout");
        assert_eq!(root[KEYS], json!(["order_id=A-1"]));
        assert_eq!(root[ATTRS], json!(["http.route=/api/orders/{id}"]));
        assert!(root.get(ERROR).is_none() && root.get(ERROR_TEXT).is_none());
        let db = to_document(&SpanDoc::from_span(&spans[3], &attrs));
        assert_eq!(db[ERROR], true);
        assert_eq!(
            db[ERROR_TEXT],
            "card declined for order paymentdeclinederror"
        );
        assert_ne!(doc_id(&spans[0]), doc_id(&spans[1]));
        assert_eq!(doc_id(&spans[0]).len(), 34);
        assert_eq!(root[TENANT], "default");
        let mut other = spans[0].clone();
        other.tenant = Tenant::parse("shop").unwrap();
        assert_ne!(doc_id(&other), doc_id(&spans[0]), "one document per tenant");
        assert_eq!(
            to_document(&SpanDoc::from_span(&other, &attrs))[TENANT],
            "shop"
        );
    }
}
