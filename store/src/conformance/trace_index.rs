//! The trace-index conformance suite: every [`TraceIndex`] backend must pass it.
//!
//! A backend's test calls [`run_all`] with a factory that opens a fresh, empty index per
//! call. The factory must configure:
//! - `Common::indexed_attributes` containing at least `db.system` and `http.route`;
//! - `Common::retention_days = 7` (see [`retention_drop`]).
//!
//! Cases only use the trait, call `refresh()` before asserting searches, and use fixed
//! times around [`BASE_TIME`] so that no case depends on the wall clock.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use clew_proto::{Span, TraceId};

use super::fixtures::{
    checkout_trace, span, span_id, trace_id, with_exception, with_key, BASE_TIME,
};
use crate::trace_index::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::{Error, TraceIdPage, TraceIndex, TraceQuery};

const MS: u64 = 1_000_000;
const MINUTE: u64 = 60_000 * MS;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// Retention the factory must configure.
pub const RETENTION_DAYS: u32 = 7;
/// Attributes the factory must index (at least).
pub const INDEXED_ATTRIBUTES: &[&str] = &["db.system", "http.route"];

/// Runs every case, each on a fresh index from `open`.
pub async fn run_all<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn TraceIndex>>,
{
    find_by_business_key(open().await).await;
    find_by_service(open().await).await;
    find_by_service_and_operation(open().await).await;
    errors_only(open().await).await;
    key_and_error_on_different_spans(open().await).await;
    conditions_on_different_traces_do_not_match(open().await).await;
    duration_range(open().await).await;
    time_range(open().await).await;
    attribute_terms(open().await).await;
    free_text(open().await).await;
    query_syntax_in_text_is_harmless(open().await).await;
    newest_first_and_paging(open().await).await;
    malformed_cursor_is_invalid_request(open().await).await;
    limit_clamping(open().await).await;
    idempotent_indexing(open().await).await;
    services_and_operations(open().await).await;
    retention_drop(open().await).await;
}

async fn index(idx: &Arc<dyn TraceIndex>, spans: Vec<Span>) {
    idx.index_spans(spans.into()).await.expect("index_spans");
}

async fn find(idx: &Arc<dyn TraceIndex>, q: TraceQuery) -> TraceIdPage {
    idx.find_trace_ids(&q)
        .await
        .unwrap_or_else(|e| panic!("find_trace_ids({q:?}): {e}"))
}

/// Trace ids of one page, in result order.
async fn ids(idx: &Arc<dyn TraceIndex>, q: TraceQuery) -> Vec<TraceId> {
    find(idx, q)
        .await
        .hits
        .into_iter()
        .map(|h| h.trace_id)
        .collect()
}

/// Trace ids as a set (for cases that do not check order).
async fn id_set(idx: &Arc<dyn TraceIndex>, q: TraceQuery) -> HashSet<TraceId> {
    let v = ids(idx, q).await;
    let set: HashSet<TraceId> = v.iter().copied().collect();
    assert_eq!(set.len(), v.len(), "duplicate trace ids in one page: {v:?}");
    set
}

fn set(ids: &[TraceId]) -> HashSet<TraceId> {
    ids.iter().copied().collect()
}

fn q() -> TraceQuery {
    TraceQuery {
        limit: 100,
        ..Default::default()
    }
}

fn key(name: &str, value: &str) -> TraceQuery {
    TraceQuery {
        business_keys: vec![(name.into(), value.into())],
        ..q()
    }
}

fn text(t: &str) -> TraceQuery {
    TraceQuery {
        text: Some(t.into()),
        ..q()
    }
}

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
    other.attributes = vec![super::fixtures::kv("http.route", "/api/search")];
    index(&idx, vec![other]).await;
    idx.refresh().await.unwrap();

    let attr = |pairs: &[(&str, &str)]| TraceQuery {
        attributes: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..q()
    };
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

pub async fn free_text(idx: Arc<dyn TraceIndex>) {
    let (a, b, c) = (trace_id(1), trace_id(2), trace_id(3));
    index(&idx, checkout_trace(a, "1", BASE_TIME, true)).await;
    let timeout = with_exception(
        span(
            b,
            span_id(1),
            None,
            "gateway",
            "Proxy",
            BASE_TIME + MINUTE,
            5 * MS,
        ),
        "UpstreamTimeoutError",
        "upstream timed out after 30s",
    );
    index(&idx, vec![timeout]).await;
    // The words appear on c, but not in error text: text searches error text only.
    let mut plain = span(
        c,
        span_id(1),
        None,
        "declined",
        "declined",
        BASE_TIME,
        5 * MS,
    );
    plain.status_message = "declined".into();
    index(&idx, vec![plain]).await;
    idx.refresh().await.unwrap();

    assert_eq!(
        ids(&idx, text("declined")).await,
        vec![a],
        "exception message"
    );
    assert_eq!(
        ids(&idx, text("DECLINED")).await,
        vec![a],
        "case-insensitive"
    );
    assert_eq!(
        ids(&idx, text("PaymentDeclinedError")).await,
        vec![a],
        "exception type"
    );
    assert_eq!(ids(&idx, text("card declined")).await, vec![a]);
    assert_eq!(
        ids(&idx, text("declined!")).await,
        vec![a],
        "punctuation is not syntax"
    );
    assert_eq!(ids(&idx, text("timed out")).await, vec![b]);
    assert!(
        ids(&idx, text("declined timed")).await.is_empty(),
        "every word must match"
    );
    assert!(ids(&idx, text("stacktrace")).await.is_empty());
    let keyed = TraceQuery {
        text: Some("declined".into()),
        ..key("order_id", "1")
    };
    assert_eq!(ids(&idx, keyed).await, vec![a]);
}

pub async fn query_syntax_in_text_is_harmless(idx: Arc<dyn TraceIndex>) {
    let a = trace_id(1);
    index(&idx, checkout_trace(a, "1", BASE_TIME, true)).await;
    idx.refresh().await.unwrap();

    let nasty = [
        "\"a:b OR (c",
        "*",
        "\\",
        "service:payments",
        "declined AND",
        "declined OR nothing",
        "((((((((((",
        "error_text:declined",
        "/.*/",
        "de*",
        "~!@#$%^&*()_+{}|:<>?[];',./`",
        "\u{0}\u{1}\u{ffff}",
    ];
    for t in nasty {
        match idx.find_trace_ids(&text(t)).await {
            Ok(_) | Err(Error::InvalidRequest(_)) => {}
            Err(e) => panic!("text {t:?} must not fail with {e}"),
        }
    }
    // Words that are not all in the error text never match, whatever syntax they spell.
    for t in [
        "\"a:b OR (c",
        "service:payments",
        "declined AND",
        "declined OR nothing",
        "de*",
    ] {
        assert!(
            ids(&idx, text(t)).await.is_empty(),
            "{t:?} was read as query syntax"
        );
    }
    // Huge or many-word text fails fast or is bounded, never runs long or crashes.
    let huge = "declined ".repeat(100_000);
    match idx.find_trace_ids(&text(&huge)).await {
        Ok(_) | Err(Error::InvalidRequest(_)) => {}
        Err(e) => panic!("huge text must not fail with {e}"),
    }
    let many: String = (0..5000).map(|i| format!("w{i} ")).collect();
    match idx.find_trace_ids(&text(&many)).await {
        Ok(page) => assert!(page.hits.is_empty()),
        Err(Error::InvalidRequest(_)) => {}
        Err(e) => panic!("many-word text must not fail with {e}"),
    }
}

pub async fn newest_first_and_paging(idx: Arc<dyn TraceIndex>) {
    let n = 25u64;
    for i in 0..n {
        index(
            &idx,
            checkout_trace(
                trace_id(100 + i),
                &format!("o{i}"),
                BASE_TIME + i * MINUTE,
                i % 3 == 0,
            ),
        )
        .await;
    }
    // Two traces starting at the same nanosecond: ordered by trace id, both returned.
    index(
        &idx,
        checkout_trace(trace_id(500), "tie", BASE_TIME + 10 * MINUTE, false),
    )
    .await;
    idx.refresh().await.unwrap();
    let total = n as usize + 1;

    let all = find(
        &idx,
        TraceQuery {
            service: Some("frontend".into()),
            ..q()
        },
    )
    .await;
    assert_eq!(all.hits.len(), total);
    assert!(all.next_cursor.is_none());
    for w in all.hits.windows(2) {
        assert!(
            w[0].start_unix_nano >= w[1].start_unix_nano,
            "newest first: {w:?}"
        );
    }
    assert_eq!(all.hits[0].trace_id, trace_id(100 + n - 1));
    assert_eq!(all.hits[0].start_unix_nano, BASE_TIME + (n - 1) * MINUTE);

    // Pages of 7 (4 pages), with older data written between pages.
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = find(
            &idx,
            TraceQuery {
                service: Some("frontend".into()),
                limit: 7,
                cursor: cursor.clone(),
                ..q()
            },
        )
        .await;
        assert!(page.hits.len() <= 7);
        seen.extend(page.hits.iter().map(|h| h.trace_id));
        pages += 1;
        if pages == 1 {
            index(
                &idx,
                checkout_trace(trace_id(900), "late", BASE_TIME - HOUR, false),
            )
            .await;
            idx.refresh().await.unwrap();
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
        assert!(pages < 20, "paging does not end");
    }
    assert!(pages >= 4, "expected at least 4 pages, got {pages}");
    let unique: HashSet<TraceId> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "duplicates across pages");
    let expected: Vec<TraceId> = all.hits.iter().map(|h| h.trace_id).collect();
    assert_eq!(
        &seen[..total],
        &expected[..],
        "pages concatenate to the single-page order without gaps"
    );
    assert!(
        seen.len() == total || seen[total..] == [trace_id(900)],
        "only the older late trace may follow"
    );

    // Paging with several condition groups (the intersecting plan) is just as stable.
    let errs = TraceQuery {
        service: Some("frontend".into()),
        errors_only: true,
        limit: 3,
        ..q()
    };
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = find(
            &idx,
            TraceQuery {
                cursor: cursor.clone(),
                ..errs.clone()
            },
        )
        .await;
        seen.extend(page.hits.iter().map(|h| h.trace_id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let expected: Vec<TraceId> = (0..n)
        .rev()
        .filter(|i| i % 3 == 0)
        .map(|i| trace_id(100 + i))
        .collect();
    assert_eq!(seen, expected);
}

pub async fn malformed_cursor_is_invalid_request(idx: Arc<dyn TraceIndex>) {
    index(&idx, checkout_trace(trace_id(1), "1", BASE_TIME, false)).await;
    idx.refresh().await.unwrap();
    for bad in ["", "not-a-cursor", "💥", "%00", &"f".repeat(10_000)] {
        let r = idx
            .find_trace_ids(&TraceQuery {
                cursor: Some(bad.into()),
                ..q()
            })
            .await;
        assert!(
            matches!(r, Err(Error::InvalidRequest(_))),
            "cursor {bad:?} gave {r:?}"
        );
    }
}

pub async fn limit_clamping(idx: Arc<dyn TraceIndex>) {
    for i in 0..3 {
        index(
            &idx,
            checkout_trace(trace_id(i), "1", BASE_TIME + i * MINUTE, false),
        )
        .await;
    }
    idx.refresh().await.unwrap();

    let page = find(&idx, TraceQuery { limit: 1, ..q() }).await;
    assert_eq!(page.hits.len(), 1);
    assert!(page.next_cursor.is_some());
    let page = find(
        &idx,
        TraceQuery {
            limit: usize::MAX,
            ..q()
        },
    )
    .await;
    assert_eq!(page.hits.len(), 3, "a huge limit is clamped, not an error");
    assert!(page.hits.len() <= MAX_LIMIT);
    let page = find(
        &idx,
        TraceQuery {
            limit: MAX_LIMIT + 1,
            ..q()
        },
    )
    .await;
    assert_eq!(page.hits.len(), 3);
    let page = find(&idx, TraceQuery { limit: 0, ..q() }).await;
    assert!(
        (1..=DEFAULT_LIMIT.min(3)).contains(&page.hits.len()),
        "limit 0 is clamped: {page:?}"
    );
}

pub async fn idempotent_indexing(idx: Arc<dyn TraceIndex>) {
    let a = trace_id(1);
    index(&idx, checkout_trace(a, "A", BASE_TIME, true)).await;
    idx.refresh().await.unwrap();
    index(&idx, checkout_trace(a, "A", BASE_TIME, true)).await;
    index(&idx, checkout_trace(a, "A", BASE_TIME, true)).await;
    idx.refresh().await.unwrap();

    assert_eq!(ids(&idx, key("order_id", "A")).await, vec![a]);
    assert_eq!(ids(&idx, q()).await, vec![a]);
    assert_eq!(
        ids(
            &idx,
            TraceQuery {
                errors_only: true,
                service: Some("frontend".into()),
                ..q()
            }
        )
        .await,
        vec![a]
    );
    // A late span of the same trace adds conditions, not a second hit.
    let late = with_key(
        span(
            a,
            span_id(9),
            Some(span_id(1)),
            "mailer",
            "Send",
            BASE_TIME + MINUTE,
            MS,
        ),
        "user_id",
        "u7",
    );
    index(&idx, vec![late]).await;
    idx.refresh().await.unwrap();
    assert_eq!(ids(&idx, q()).await, vec![a]);
    assert_eq!(
        ids(
            &idx,
            TraceQuery {
                business_keys: vec![("user_id".into(), "u7".into())],
                ..key("order_id", "A")
            }
        )
        .await,
        vec![a]
    );
}

pub async fn services_and_operations(idx: Arc<dyn TraceIndex>) {
    assert!(idx.services().await.unwrap().is_empty());
    index(&idx, checkout_trace(trace_id(1), "1", BASE_TIME, false)).await;
    index(
        &idx,
        checkout_trace(trace_id(2), "2", BASE_TIME + 2 * DAY, true),
    )
    .await;
    // A service whose name is a prefix of another one.
    index(
        &idx,
        vec![span(
            trace_id(3),
            span_id(1),
            None,
            "pay",
            "Zap",
            BASE_TIME,
            MS,
        )],
    )
    .await;
    idx.refresh().await.unwrap();

    assert_eq!(
        idx.services().await.unwrap(),
        ["checkout", "frontend", "pay", "payments"]
    );
    assert_eq!(
        idx.operations("payments").await.unwrap(),
        ["Charge", "SELECT payments"]
    );
    assert_eq!(idx.operations("pay").await.unwrap(), ["Zap"]);
    assert_eq!(idx.operations("frontend").await.unwrap(), ["GET /checkout"]);
    assert!(idx.operations("nobody").await.unwrap().is_empty());
    assert!(idx.operations("").await.unwrap().is_empty());
}

/// Needs `retention_days = RETENTION_DAYS` (7).
pub async fn retention_drop(idx: Arc<dyn TraceIndex>) {
    let (old, recent) = (trace_id(1), trace_id(2));
    index(
        &idx,
        checkout_trace(old, "old", BASE_TIME - 30 * DAY, false),
    )
    .await;
    index(
        &idx,
        checkout_trace(recent, "recent", BASE_TIME - DAY, false),
    )
    .await;
    idx.refresh().await.unwrap();
    assert_eq!(ids(&idx, key("order_id", "old")).await, vec![old]);

    let dropped = idx.drop_expired(BASE_TIME).await.unwrap();
    assert!(dropped >= 1, "the 30-day-old partition is dropped");
    assert!(ids(&idx, key("order_id", "old")).await.is_empty());
    assert_eq!(
        ids(&idx, key("order_id", "recent")).await,
        vec![recent],
        "data within retention stays"
    );
    assert_eq!(
        idx.drop_expired(BASE_TIME).await.unwrap(),
        0,
        "nothing left to drop"
    );

    // The index keeps working after a drop.
    index(&idx, checkout_trace(trace_id(3), "new", BASE_TIME, false)).await;
    idx.refresh().await.unwrap();
    assert_eq!(ids(&idx, key("order_id", "new")).await, vec![trace_id(3)]);
}
