//! Conformance cases: each kind of condition, and conditions that hold on different spans
//! (or different traces).

#[allow(unused_imports)]
use super::*;
use clew_proto::Tenant;

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

/// A same-span entry holds on one span: in trace `a` the error is on a `payments` span
/// and the key on the `frontend` root, so "frontend and error on one span" and "the key
/// and error on one span" must not find `a`, though the same conditions at trace level
/// do. Resource attributes count as the span's own, the time range narrows the same span,
/// and the hit's start is that span's.
pub async fn same_span_conditions(idx: Arc<dyn TraceIndex>) {
    use crate::SpanConditions;
    let (a, b) = (trace_id(1), trace_id(2));
    // a: error on the payments db span only (20 ms, db.system, starts 3 ms in).
    index(&idx, checkout_trace(a, "A", BASE_TIME, true)).await;
    // b: error on the frontend root only, which carries the key.
    let mut spans = checkout_trace(b, "B", BASE_TIME + MINUTE, false);
    spans[0] = with_exception(spans[0].clone(), "TimeoutError", "upstream timed out");
    index(&idx, spans).await;
    idx.refresh().await.unwrap();

    let one = |c: SpanConditions| TraceQuery {
        same_span: vec![c],
        ..q()
    };
    let svc_err = |s: &str| SpanConditions {
        service: Some(s.into()),
        errors_only: true,
        ..Default::default()
    };
    assert_eq!(
        ids(&idx, one(svc_err("frontend"))).await,
        vec![b],
        "frontend error-free in a, its error on a payments span"
    );
    assert_eq!(
        id_set(
            &idx,
            TraceQuery {
                service: Some("frontend".into()),
                errors_only: true,
                ..q()
            }
        )
        .await,
        set(&[a, b]),
        "at trace level both match"
    );
    let page = find(&idx, one(svc_err("payments"))).await;
    assert_eq!(
        page.hits.iter().map(|h| h.trace_id).collect::<Vec<_>>(),
        vec![a]
    );
    assert_eq!(
        page.hits[0].start_unix_nano,
        BASE_TIME + 3 * MS,
        "the hit's start is the matching span's"
    );
    assert!(ids(&idx, one(svc_err("checkout"))).await.is_empty());

    let key_err = |order: &str| SpanConditions {
        business_keys: vec![("order_id".into(), order.into())],
        errors_only: true,
        ..Default::default()
    };
    assert!(
        ids(&idx, one(key_err("A"))).await.is_empty(),
        "the key on the root, the error on the db span"
    );
    assert_eq!(ids(&idx, one(key_err("B"))).await, vec![b]);
    assert_eq!(
        ids(
            &idx,
            TraceQuery {
                errors_only: true,
                ..key("order_id", "A")
            }
        )
        .await,
        vec![a],
        "at trace level the key and the error may be on different spans"
    );

    // Every kind of part on one span: the db span of a.
    let db = |min_ms: u64, max_ms: u64| SpanConditions {
        service: Some("payments".into()),
        operation: Some("SELECT payments".into()),
        errors_only: true,
        min_duration_nanos: Some(min_ms * MS),
        max_duration_nanos: Some(max_ms * MS),
        attributes: vec![
            ("db.system".into(), "postgresql".into()),
            ("host.name".into(), "host-1".into()),
        ],
        ..Default::default()
    };
    assert_eq!(ids(&idx, one(db(15, 25))).await, vec![a]);
    assert!(
        ids(&idx, one(db(25, 35))).await.is_empty(),
        "the 30 ms payments span is not the db span"
    );
    let charge_with_db = SpanConditions {
        operation: Some("Charge".into()),
        attributes: vec![("db.system".into(), "postgresql".into())],
        ..Default::default()
    };
    assert!(ids(&idx, one(charge_with_db)).await.is_empty());
    let resource_attr = SpanConditions {
        service: Some("checkout".into()),
        attributes: vec![("host.name".into(), "host-1".into())],
        ..Default::default()
    };
    assert_eq!(
        ids(&idx, one(resource_attr)).await,
        vec![b, a],
        "resource attributes are on every span's document"
    );
    let key_elsewhere = SpanConditions {
        service: Some("checkout".into()),
        business_keys: vec![("order_id".into(), "B".into())],
        ..Default::default()
    };
    assert!(ids(&idx, one(key_elsewhere)).await.is_empty());
    assert_eq!(
        ids(
            &idx,
            TraceQuery {
                service: Some("checkout".into()),
                ..key("order_id", "B")
            }
        )
        .await,
        vec![b]
    );

    // One part is a plain condition; nothing set is any span.
    assert_eq!(
        ids(
            &idx,
            one(SpanConditions {
                service: Some("payments".into()),
                ..Default::default()
            })
        )
        .await,
        vec![b, a]
    );
    assert_eq!(
        id_set(&idx, one(SpanConditions::default())).await,
        set(&[a, b])
    );

    // Next to trace-level conditions, and several entries: each on its own span.
    assert_eq!(
        ids(
            &idx,
            TraceQuery {
                same_span: vec![svc_err("payments")],
                ..key("order_id", "A")
            }
        )
        .await,
        vec![a]
    );
    assert!(ids(
        &idx,
        TraceQuery {
            same_span: vec![svc_err("payments")],
            ..key("order_id", "B")
        }
    )
    .await
    .is_empty());
    let two = |first: SpanConditions| TraceQuery {
        same_span: vec![
            first,
            SpanConditions {
                service: Some("payments".into()),
                operation: Some("Charge".into()),
                ..Default::default()
            },
        ],
        ..q()
    };
    assert_eq!(ids(&idx, two(key_err("B"))).await, vec![b]);
    assert!(ids(&idx, two(key_err("A"))).await.is_empty());

    // The time range holds for the same span: a's db span starts 3 ms in.
    let in_range = |lo_ms: u64, hi_ms: u64| TraceQuery {
        start_min_unix_nano: Some(BASE_TIME + lo_ms * MS),
        start_max_unix_nano: Some(BASE_TIME + hi_ms * MS),
        ..one(svc_err("payments"))
    };
    assert!(ids(&idx, in_range(0, 3)).await.is_empty());
    assert_eq!(ids(&idx, in_range(3, 4)).await, vec![a]);

    // A min above max is the caller's mistake, as at trace level.
    let backwards = one(SpanConditions {
        min_duration_nanos: Some(2),
        max_duration_nanos: Some(1),
        ..Default::default()
    });
    assert!(matches!(
        idx.find_trace_ids(&Tenant::default(), &backwards).await,
        Err(Error::InvalidRequest(_))
    ));
}

/// Same-span searches page newest first like any other: traces whose error is on the
/// `frontend` root, between traces whose error is elsewhere.
pub async fn same_span_paging(idx: Arc<dyn TraceIndex>) {
    use crate::SpanConditions;
    let mut frontend_failed = Vec::new();
    for i in 0..12u64 {
        let id = trace_id(i + 1);
        let start = BASE_TIME + i * MINUTE;
        let mut spans = checkout_trace(id, &format!("o{i}"), start, i % 2 == 1);
        if i % 3 == 0 {
            spans[0] = with_exception(spans[0].clone(), "TimeoutError", "upstream timed out");
            frontend_failed.push(id);
        }
        index(&idx, spans).await;
    }
    idx.refresh().await.unwrap();
    frontend_failed.reverse();
    let mut query = TraceQuery {
        same_span: vec![SpanConditions {
            service: Some("frontend".into()),
            errors_only: true,
            ..Default::default()
        }],
        limit: 3,
        ..Default::default()
    };
    let mut seen = Vec::new();
    loop {
        let page = find(&idx, query.clone()).await;
        assert!(page.hits.len() <= 3);
        seen.extend(page.hits.iter().map(|h| h.trace_id));
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => break,
        }
        assert!(seen.len() <= 12, "paging must end");
    }
    assert_eq!(seen, frontend_failed);
}
