//! Shared test fixtures: realistic spans and traces built from the public model.
//!
//! The same fixtures feed every backend's conformance suite, the query tests and the
//! micro-benchmarks.

use std::sync::Arc;

use clew_proto::model::{any_value::Value, AnyValue, Event, KeyValue, Link};
use clew_proto::{BusinessKey, Resource, Scope, Span, SpanId, SpanKind, StatusCode, TraceId};

/// 2023-11-14T22:13:20Z, a fixed "now" for tests that do not depend on the wall clock.
pub const BASE_TIME: u64 = 1_700_000_000_000_000_000;

/// Nanoseconds since the unix epoch, from the wall clock.
pub fn now_unix_nano() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

pub fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

pub fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

/// A trace id made from a number (distinct numbers give distinct, non-zero ids).
pub fn trace_id(n: u64) -> TraceId {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
    b[8..].copy_from_slice(&(n + 1).to_be_bytes());
    TraceId(b)
}

/// A span id made from a number (non-zero).
pub fn span_id(n: u64) -> SpanId {
    SpanId((n + 1).to_be_bytes())
}

pub fn resource(service: &str) -> Arc<Resource> {
    Arc::new(Resource {
        attributes: vec![
            kv("service.name", service),
            kv("host.name", "host-1"),
            kv("telemetry.sdk.language", "rust"),
        ],
        dropped_attributes_count: 0,
        schema_url: String::new(),
    })
}

pub fn scope() -> Arc<Scope> {
    Arc::new(Scope {
        name: "clew-fixtures".into(),
        version: "1.0".into(),
        ..Default::default()
    })
}

/// A plain span with a few attributes.
pub fn span(
    trace: TraceId,
    id: SpanId,
    parent: Option<SpanId>,
    service: &str,
    name: &str,
    start: u64,
    duration: u64,
) -> Span {
    Span {
        tenant: Default::default(),
        trace_id: trace,
        span_id: id,
        parent_span_id: parent,
        trace_state: String::new(),
        flags: 1,
        name: name.into(),
        kind: if parent.is_none() {
            SpanKind::Server
        } else {
            SpanKind::Client
        },
        start_unix_nano: start,
        end_unix_nano: start + duration,
        attributes: vec![
            kv("http.route", "/api/orders/{id}"),
            kv_int("http.status_code", 200),
        ],
        dropped_attributes_count: 0,
        events: vec![],
        dropped_events_count: 0,
        links: vec![],
        dropped_links_count: 0,
        status_code: StatusCode::Unset,
        status_message: String::new(),
        resource: resource(service),
        scope: scope(),
        service_name: service.into(),
        business_keys: vec![],
        repairs: 0,
    }
}

/// `spans`, every one of them in `tenant` (as a receiver stamps them).
pub fn in_tenant(mut spans: Vec<Span>, tenant: &str) -> Vec<Span> {
    let tenant = clew_proto::Tenant::parse(tenant).expect("a valid tenant name");
    for s in &mut spans {
        s.tenant = tenant.clone();
    }
    spans
}

/// Marks `span` as failed with an exception event.
pub fn with_exception(mut span: Span, ty: &str, message: &str) -> Span {
    span.status_code = StatusCode::Error;
    span.status_message = message.into();
    span.events.push(Event {
        time_unix_nano: span.start_unix_nano + 1,
        name: "exception".into(),
        attributes: vec![
            kv("exception.type", ty),
            kv("exception.message", message),
            kv(
                "exception.stacktrace",
                "at db.query (db.rs:42)\nat handler (main.rs:7)",
            ),
        ],
        dropped_attributes_count: 0,
    });
    span
}

/// Adds a business key (as attribute and as enriched key) to `span`.
pub fn with_key(mut span: Span, name: &str, value: &str) -> Span {
    span.attributes.push(kv(name, value));
    span.business_keys.push(BusinessKey {
        name: name.into(),
        value: value.into(),
    });
    span
}

/// A realistic three-service trace: `frontend` entry span carrying `order_id=<order>`,
/// `checkout` in the middle, and a `payments` database span that fails with an
/// exception when `fail` is set. Returns 4 spans.
pub fn checkout_trace(trace: TraceId, order: &str, start: u64, fail: bool) -> Vec<Span> {
    let root = with_key(
        span(
            trace,
            span_id(1),
            None,
            "frontend",
            "GET /checkout",
            start,
            50_000_000,
        ),
        "order_id",
        order,
    );
    let mut mid = span(
        trace,
        span_id(2),
        Some(span_id(1)),
        "checkout",
        "PlaceOrder",
        start + 1_000_000,
        40_000_000,
    );
    mid.kind = SpanKind::Server;
    let mut pay = span(
        trace,
        span_id(3),
        Some(span_id(2)),
        "payments",
        "Charge",
        start + 2_000_000,
        30_000_000,
    );
    pay.links.push(Link {
        trace_id: trace_id(999_999).0.to_vec(),
        span_id: span_id(7).0.to_vec(),
        trace_state: String::new(),
        attributes: vec![kv("link.kind", "follows_from")],
        dropped_attributes_count: 0,
        flags: 0,
    });
    let mut db = span(
        trace,
        span_id(4),
        Some(span_id(3)),
        "payments",
        "SELECT payments",
        start + 3_000_000,
        20_000_000,
    );
    db.attributes.push(kv("db.system", "postgresql"));
    if fail {
        db = with_exception(db, "PaymentDeclinedError", "card declined for order");
    }
    vec![root, mid, pay, db]
}

/// A synthetic trace of `n` spans in a chain-and-fanout shape, for load and size tests.
pub fn wide_trace(trace: TraceId, n: usize, start: u64) -> Vec<Span> {
    (0..n)
        .map(|i| {
            let parent = if i == 0 {
                None
            } else {
                Some(span_id(((i - 1) / 4) as u64))
            };
            let service = ["frontend", "checkout", "payments", "inventory"][i % 4];
            span(
                trace,
                span_id(i as u64),
                parent,
                service,
                &format!("op-{}", i % 7),
                start + i as u64 * 1000,
                5_000,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_valid() {
        let a = trace_id(1);
        let b = trace_id(2);
        assert_ne!(a, b);
        assert!(TraceId::from_bytes(&a.0).is_ok());
        assert!(SpanId::from_bytes(&span_id(0).0).is_ok());
    }

    #[test]
    fn checkout_trace_has_key_and_error() {
        let t = checkout_trace(trace_id(5), "12345", BASE_TIME, true);
        assert_eq!(t.len(), 4);
        assert_eq!(t[0].business_keys[0].value, "12345");
        assert!(t[3].is_error());
        assert!(!t[0].is_error());
    }
}
