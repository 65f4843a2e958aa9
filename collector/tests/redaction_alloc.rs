//! The redaction stage allocates nothing per span when no rule matches: a batch of 2N
//! clean spans costs the same allocations as a batch of N (only the per-batch counters).
//! Its own test binary, so that the counting allocator sees this test alone.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use clew_collector::redaction::{RedactionConfig, Redactor};
use clew_proto::model::{any_value::Value, AnyValue, Event, KeyValue, Resource};
use clew_proto::{Span, SpanId, TraceId};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn kv(k: &str, v: Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

/// Spans like the workload's: routes, ids, hosts, timestamps in text, an exception event,
/// a hex trace reference and a business key that passes a Luhn check.
fn clean_spans(n: usize, resource: &Arc<Resource>) -> Vec<Span> {
    (0..n)
        .map(|i| Span {
            tenant: Default::default(),
            trace_id: TraceId([1; 16]),
            span_id: SpanId((i as u64 + 1).to_be_bytes()),
            parent_span_id: None,
            trace_state: String::new(),
            flags: 0,
            name: "GET /api/orders/{id}".into(),
            kind: Default::default(),
            start_unix_nano: 1,
            end_unix_nano: 2,
            attributes: vec![
                kv("http.request.method", Value::StringValue("GET".into())),
                kv("http.route", Value::StringValue("/api/orders/{id}".into())),
                kv(
                    "url.path",
                    Value::StringValue(format!("/api/orders/{i}?page=2")),
                ),
                kv("http.response.status_code", Value::IntValue(200)),
                kv(
                    "server.address",
                    Value::StringValue("checkout.svc.cluster.local".into()),
                ),
                kv("order_id", Value::StringValue("4111111111111111".into())),
                kv("gen_ai.usage.input_tokens", Value::IntValue(42)),
                kv(
                    "trace.ref",
                    Value::StringValue("0af7651916cd43dd8448eb211c80319c".into()),
                ),
                kv(
                    "logged.at",
                    Value::StringValue("1764600000123456789".into()),
                ),
            ],
            dropped_attributes_count: 0,
            events: vec![Event {
                name: "exception".into(),
                attributes: vec![kv(
                    "exception.message",
                    Value::StringValue("connection reset by peer after 3 retries".into()),
                )],
                ..Default::default()
            }],
            dropped_events_count: 0,
            links: vec![],
            dropped_links_count: 0,
            status_code: Default::default(),
            status_message: "upstream returned 503".into(),
            resource: resource.clone(),
            scope: Default::default(),
            service_name: "checkout".into(),
            business_keys: vec![],
            repairs: 0,
        })
        .collect()
}

fn allocations_for(redactor: &Redactor, spans: &mut [Span]) -> usize {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    redactor.redact_all(spans);
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

#[test]
fn clean_spans_cost_no_allocation_per_span() {
    let mut config: RedactionConfig = toml::from_str(
        "[[rules]]\nattribute = \"user.email\"\naction = \"hash\"\n[[rules]]\npattern = 'ssn=(\\d{3}-\\d{2}-\\d{4})'\naction = \"mask\"\n",
    )
    .unwrap();
    config.hash_key = Some("alloc-test-key-0123456789".into());
    let redactor = Redactor::new(&config, &["order_id".to_string()]).unwrap();
    let resource = Arc::new(Resource {
        attributes: vec![
            kv("service.name", Value::StringValue("checkout".into())),
            kv("host.name", Value::StringValue("web-3".into())),
        ],
        ..Default::default()
    });
    let mut small = clean_spans(50, &resource);
    let mut large = clean_spans(100, &resource);
    let (before_small, before_large) = (small.clone(), large.clone());
    // warm up (lazy regex caches fill on first use)
    allocations_for(&redactor, &mut clean_spans(10, &resource));
    let a = allocations_for(&redactor, &mut small);
    let b = allocations_for(&redactor, &mut large);
    assert_eq!(small, before_small, "clean spans are not changed");
    assert_eq!(large, before_large);
    assert_eq!(a, b, "{a} allocations for 50 spans, {b} for 100");
    assert!(a <= 4, "{a} allocations per batch");
}
