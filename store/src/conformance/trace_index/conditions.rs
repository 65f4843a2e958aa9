//! Conformance cases: each kind of condition, and conditions that hold on different spans
//! (or different traces).

#[allow(unused_imports)]
use super::*;

pub async fn find_by_business_key(idx: Arc<dyn TraceIndex>) {
    let (a, b) = (trace_id(1), trace_id(2));
    index(&idx, checkout_trace(a, "A-1001", BASE_TIME, false)).await;
    index(&idx, checkout_trace(b, "B-2002", BASE_TIME + MINUTE, false)).await;
    idx.refresh().await.unwrap();

    let page = find(&idx, key("order_id", "A-1001")).await;
    assert_eq!(page.hits.len(), 1, "{page:?}");
    assert_eq!(page.hits[0].trace_id, a);
    assert_eq!(
        page.hits[0].start_unix_nano, BASE_TIME,
        "earliest matching span is the root"
    );
    assert!(page.next_cursor.is_none());
    assert_eq!(ids(&idx, key("order_id", "B-2002")).await, vec![b]);
    assert!(
        ids(&idx, key("order_id", "A-100")).await.is_empty(),
        "keys are exact, not prefixes"
    );
    assert!(
        ids(&idx, key("user_id", "A-1001")).await.is_empty(),
        "the key name matters"
    );
    assert!(find(&idx, key("order_id", "nope"))
        .await
        .next_cursor
        .is_none());
}

pub async fn find_by_service(idx: Arc<dyn TraceIndex>) {
    let (a, b) = (trace_id(1), trace_id(2));
    index(&idx, checkout_trace(a, "1", BASE_TIME, false)).await;
    index(
        &idx,
        vec![span(
            b,
            span_id(1),
            None,
            "inventory",
            "Reserve",
            BASE_TIME,
            5 * MS,
        )],
    )
    .await;
    idx.refresh().await.unwrap();

    let svc = |s: &str| TraceQuery {
        service: Some(s.into()),
        ..q()
    };
    assert_eq!(ids(&idx, svc("inventory")).await, vec![b]);
    assert_eq!(ids(&idx, svc("payments")).await, vec![a]);
    assert!(
        ids(&idx, svc("pay")).await.is_empty(),
        "service names are exact"
    );
    assert!(
        ids(&idx, svc("Payments")).await.is_empty(),
        "service names are case-sensitive"
    );
}

pub async fn find_by_service_and_operation(idx: Arc<dyn TraceIndex>) {
    let (a, b) = (trace_id(1), trace_id(2));
    index(&idx, checkout_trace(a, "1", BASE_TIME, false)).await;
    // `payments` and `Charge` both occur in b, but never on one span.
    index(
        &idx,
        vec![
            span(b, span_id(1), None, "frontend", "Charge", BASE_TIME, 5 * MS),
            span(
                b,
                span_id(2),
                Some(span_id(1)),
                "payments",
                "Refund",
                BASE_TIME + MS,
                2 * MS,
            ),
        ],
    )
    .await;
    idx.refresh().await.unwrap();

    let so = |s: Option<&str>, o: &str| TraceQuery {
        service: s.map(Into::into),
        operation: Some(o.into()),
        ..q()
    };
    assert_eq!(ids(&idx, so(Some("payments"), "Charge")).await, vec![a]);
    assert_eq!(ids(&idx, so(Some("payments"), "Refund")).await, vec![b]);
    assert_eq!(
        id_set(&idx, so(None, "Charge")).await,
        set(&[a, b]),
        "operation alone, any service"
    );
    assert!(ids(&idx, so(Some("checkout"), "Charge")).await.is_empty());
    assert_eq!(
        ids(&idx, so(Some("payments"), "SELECT payments")).await,
        vec![a],
        "names with spaces"
    );
}

pub async fn errors_only(idx: Arc<dyn TraceIndex>) {
    let (a, b) = (trace_id(1), trace_id(2));
    index(&idx, checkout_trace(a, "1", BASE_TIME, true)).await;
    index(&idx, checkout_trace(b, "2", BASE_TIME + MINUTE, false)).await;
    idx.refresh().await.unwrap();

    assert_eq!(
        ids(
            &idx,
            TraceQuery {
                errors_only: true,
                ..q()
            }
        )
        .await,
        vec![a]
    );
    assert_eq!(
        id_set(&idx, q()).await,
        set(&[a, b]),
        "no condition finds every trace"
    );
    let svc_err = |s: &str| TraceQuery {
        service: Some(s.into()),
        errors_only: true,
        ..q()
    };
    assert_eq!(ids(&idx, svc_err("payments")).await, vec![a]);
    // frontend is in the failing trace, but the error is on a payments span: still a hit,
    // because conditions hold per trace.
    assert_eq!(ids(&idx, svc_err("frontend")).await, vec![a]);
}

pub async fn key_and_error_on_different_spans(idx: Arc<dyn TraceIndex>) {
    let (a, b) = (trace_id(1), trace_id(2));
    index(&idx, checkout_trace(a, "A", BASE_TIME, true)).await;
    index(&idx, checkout_trace(b, "B", BASE_TIME + MINUTE, false)).await;
    idx.refresh().await.unwrap();

    // The key is on the frontend root, the error on the payments db span.
    assert_eq!(
        ids(
            &idx,
            TraceQuery {
                errors_only: true,
                ..key("order_id", "A")
            }
        )
        .await,
        vec![a]
    );
    assert!(ids(
        &idx,
        TraceQuery {
            errors_only: true,
            ..key("order_id", "B")
        }
    )
    .await
    .is_empty());
    let q3 = TraceQuery {
        text: Some("declined".into()),
        attributes: vec![("db.system".into(), "postgresql".into())],
        ..key("order_id", "A")
    };
    assert_eq!(ids(&idx, q3).await, vec![a]);
}

pub async fn conditions_on_different_traces_do_not_match(idx: Arc<dyn TraceIndex>) {
    let (a, b) = (trace_id(1), trace_id(2));
    index(&idx, checkout_trace(a, "A", BASE_TIME, false)).await;
    index(&idx, checkout_trace(b, "B", BASE_TIME + MINUTE, true)).await;
    let c = trace_id(3);
    index(
        &idx,
        vec![span(
            c,
            span_id(1),
            None,
            "inventory",
            "Reserve",
            BASE_TIME,
            5 * MS,
        )],
    )
    .await;
    idx.refresh().await.unwrap();

    assert!(ids(
        &idx,
        TraceQuery {
            errors_only: true,
            ..key("order_id", "A")
        }
    )
    .await
    .is_empty());
    assert!(ids(
        &idx,
        TraceQuery {
            text: Some("declined".into()),
            ..key("order_id", "A")
        }
    )
    .await
    .is_empty());
    let svc = TraceQuery {
        service: Some("inventory".into()),
        ..key("order_id", "B")
    };
    assert!(ids(&idx, svc).await.is_empty());
    let two_keys = TraceQuery {
        business_keys: vec![
            ("order_id".into(), "A".into()),
            ("order_id".into(), "B".into()),
        ],
        ..q()
    };
    assert!(ids(&idx, two_keys).await.is_empty());
}

pub async fn duration_range(idx: Arc<dyn TraceIndex>) {
    // a: spans of 50, 40, 30 and 20 ms; b: one span of 500 ms.
    let (a, b) = (trace_id(1), trace_id(2));
    index(&idx, checkout_trace(a, "1", BASE_TIME, false)).await;
    index(
        &idx,
        vec![span(
            b,
            span_id(1),
            None,
            "batch",
            "Nightly",
            BASE_TIME,
            500 * MS,
        )],
    )
    .await;
    idx.refresh().await.unwrap();

    let d = |min: Option<u64>, max: Option<u64>| TraceQuery {
        min_duration_nanos: min.map(|v| v * MS),
        max_duration_nanos: max.map(|v| v * MS),
        ..q()
    };
    assert_eq!(ids(&idx, d(Some(100), None)).await, vec![b]);
    assert_eq!(ids(&idx, d(None, Some(25))).await, vec![a]);
    assert_eq!(ids(&idx, d(Some(45), Some(55))).await, vec![a]);
    assert_eq!(
        id_set(&idx, d(Some(50), Some(500))).await,
        set(&[a, b]),
        "bounds are inclusive"
    );
    // Both bounds apply to one span: none of a's spans and not b's lies in 60..=400 ms.
    assert!(ids(&idx, d(Some(60), Some(400))).await.is_empty());
    let with_service = TraceQuery {
        service: Some("payments".into()),
        ..d(Some(45), None)
    };
    assert_eq!(
        ids(&idx, with_service).await,
        vec![a],
        "duration and service may hold on different spans"
    );
}

pub async fn time_range(idx: Arc<dyn TraceIndex>) {
    let (a, b, c, far) = (trace_id(1), trace_id(2), trace_id(3), trace_id(4));
    index(&idx, checkout_trace(a, "A", BASE_TIME, false)).await;
    index(&idx, checkout_trace(b, "B", BASE_TIME + HOUR, false)).await;
    index(&idx, checkout_trace(c, "C", BASE_TIME + 2 * HOUR, true)).await;
    index(&idx, checkout_trace(far, "F", BASE_TIME + 3 * DAY, false)).await;
    idx.refresh().await.unwrap();

    let range = |lo: Option<u64>, hi: Option<u64>| TraceQuery {
        start_min_unix_nano: lo.map(|v| BASE_TIME + v),
        start_max_unix_nano: hi.map(|v| BASE_TIME + v),
        ..q()
    };
    assert_eq!(
        ids(&idx, range(Some(30 * MINUTE), Some(90 * MINUTE))).await,
        vec![b]
    );
    assert_eq!(
        ids(&idx, range(Some(0), Some(HOUR))).await,
        vec![a],
        "the upper bound is exclusive"
    );
    assert_eq!(
        ids(&idx, range(Some(HOUR), Some(HOUR + MS))).await,
        vec![b],
        "the lower bound is inclusive"
    );
    assert_eq!(
        ids(&idx, range(None, None)).await,
        vec![far, c, b, a],
        "across day partitions, newest first"
    );
    assert_eq!(ids(&idx, range(Some(DAY), None)).await, vec![far]);
    assert_eq!(ids(&idx, range(None, Some(90 * MINUTE))).await, vec![b, a]);
    // The time range applies to every condition.
    assert!(ids(
        &idx,
        TraceQuery {
            business_keys: vec![("order_id".into(), "B".into())],
            ..range(Some(2 * HOUR), None)
        }
    )
    .await
    .is_empty());
    assert_eq!(
        ids(
            &idx,
            TraceQuery {
                errors_only: true,
                ..range(Some(90 * MINUTE), Some(DAY))
            }
        )
        .await,
        vec![c]
    );
    assert!(ids(
        &idx,
        TraceQuery {
            errors_only: true,
            ..range(Some(0), Some(90 * MINUTE))
        }
    )
    .await
    .is_empty());
    // A span that starts inside counts even when the trace's root started before.
    assert_eq!(ids(&idx, range(Some(2 * MS), Some(10 * MS))).await, vec![a]);
    // An empty range finds nothing.
    assert!(ids(&idx, range(Some(HOUR), Some(HOUR))).await.is_empty());
}

pub async fn attribute_terms(idx: Arc<dyn TraceIndex>) {
    let (a, b) = (trace_id(1), trace_id(2));
    index(&idx, checkout_trace(a, "1", BASE_TIME, false)).await;
    let mut other = span(
        b,
        span_id(1),
        None,
        "search",
        "Query",
        BASE_TIME + MINUTE,
        5 * MS,
    );
    other.attributes = vec![crate::conformance::fixtures::kv(
        "http.route",
        "/api/search",
    )];
    index(&idx, vec![other]).await;
    idx.refresh().await.unwrap();

    assert_eq!(
        ids(&idx, attr(&[("db.system", "postgresql")])).await,
        vec![a]
    );
    assert_eq!(
        ids(&idx, attr(&[("http.route", "/api/search")])).await,
        vec![b]
    );
    assert_eq!(
        ids(&idx, attr(&[("http.route", "/api/orders/{id}")])).await,
        vec![a]
    );
    assert!(ids(
        &idx,
        attr(&[("db.system", "postgresql"), ("http.route", "/api/search")])
    )
    .await
    .is_empty());
    assert!(ids(&idx, attr(&[("db.system", "mysql")])).await.is_empty());
    assert!(
        ids(&idx, attr(&[("http.route", "/api")])).await.is_empty(),
        "attribute values are exact"
    );
}

/// Every scalar attribute is a term, wherever it sits on the span (its own attributes,
/// resource, scope, events) and whatever its type; conditions on several of them may hold
/// on different spans of the trace; values over the size limit are not indexed.
pub async fn any_attribute_is_searchable(idx: Arc<dyn TraceIndex>) {
    use crate::conformance::fixtures::{kv, kv_int};
    use crate::trace_index::span_doc::MAX_INDEXED_VALUE_BYTES;
    let (a, b) = (trace_id(1), trace_id(2));
    let mut spans = checkout_trace(a, "1", BASE_TIME, false);
    spans[1].attributes.push(kv("user_id", "u-42"));
    spans[1].attributes.push(kv_int("retry.count", 3));
    spans[2].events.push(clew_proto::model::Event {
        name: "cache.miss".into(),
        attributes: vec![kv("cache.key", "cart:9")],
        ..Default::default()
    });
    spans[2]
        .attributes
        .push(kv("db.statement", &"x".repeat(MAX_INDEXED_VALUE_BYTES + 1)));
    index(&idx, spans).await;
    let mut other = checkout_trace(b, "2", BASE_TIME + MINUTE, false);
    other[1].attributes.push(kv("user_id", "u-7"));
    index(&idx, other).await;
    idx.refresh().await.unwrap();

    assert_eq!(ids(&idx, attr(&[("user_id", "u-42")])).await, vec![a]);
    assert_eq!(ids(&idx, attr(&[("user_id", "u-7")])).await, vec![b]);
    assert_eq!(
        ids(&idx, attr(&[("retry.count", "3")])).await,
        vec![a],
        "int"
    );
    assert_eq!(
        ids(&idx, attr(&[("cache.key", "cart:9")])).await,
        vec![a],
        "event"
    );
    assert_eq!(
        ids(&idx, attr(&[("host.name", "host-1")])).await,
        vec![b, a],
        "resource attributes, newest first"
    );
    assert_eq!(
        ids(&idx, attr(&[("user_id", "u-42"), ("cache.key", "cart:9")])).await,
        vec![a],
        "attributes on different spans of one trace"
    );
    assert!(
        ids(&idx, attr(&[("user_id", "u-42"), ("cache.key", "cart:1")]))
            .await
            .is_empty()
    );
    assert!(
        ids(
            &idx,
            attr(&[("db.statement", &"x".repeat(MAX_INDEXED_VALUE_BYTES + 1))])
        )
        .await
        .is_empty(),
        "values over the limit are not indexed"
    );
}

/// A query for traces with these exact attribute terms.
fn attr(pairs: &[(&str, &str)]) -> TraceQuery {
    TraceQuery {
        attributes: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..q()
    }
}
