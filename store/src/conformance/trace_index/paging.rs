//! Conformance cases: newest-first order, cursors, and the limits every query obeys.

#[allow(unused_imports)]
use super::*;
use clew_proto::Tenant;

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
            .find_trace_ids(
                &Tenant::default(),
                &TraceQuery {
                    cursor: Some(bad.into()),
                    ..q()
                },
            )
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

/// A query holds at most `MAX_GROUPS` conditions; one more is the caller's mistake
/// (`InvalidRequest`), not a slow search.
pub async fn condition_limit(idx: Arc<dyn TraceIndex>) {
    use crate::trace_index::query_plan::MAX_GROUPS;
    let a = trace_id(1);
    index(&idx, checkout_trace(a, "A-1", BASE_TIME, true)).await;
    idx.refresh().await.unwrap();
    let keys = |n: usize| TraceQuery {
        business_keys: vec![("order_id".to_string(), "A-1".to_string()); n],
        ..q()
    };
    assert_eq!(
        ids(&idx, keys(MAX_GROUPS)).await,
        vec![a],
        "{MAX_GROUPS} conditions are served"
    );
    let over = keys(MAX_GROUPS + 1);
    match idx.find_trace_ids(&Tenant::default(), &over).await {
        Err(Error::InvalidRequest(message)) => {
            assert!(message.contains(&MAX_GROUPS.to_string()), "{message}")
        }
        other => panic!(
            "{} conditions: expected InvalidRequest, got {other:?}",
            MAX_GROUPS + 1
        ),
    }
    // The parts of a same-span group count one each: one group of MAX_GROUPS parts is
    // served, one more part anywhere is over.
    let same_span = |n: usize, extra: usize| TraceQuery {
        same_span: vec![crate::SpanConditions {
            business_keys: vec![("order_id".to_string(), "A-1".to_string()); n],
            ..Default::default()
        }],
        ..keys(extra)
    };
    assert_eq!(ids(&idx, same_span(MAX_GROUPS, 0)).await, vec![a]);
    assert_eq!(ids(&idx, same_span(MAX_GROUPS - 1, 1)).await, vec![a]);
    for over in [same_span(MAX_GROUPS + 1, 0), same_span(MAX_GROUPS, 1)] {
        assert!(
            matches!(
                idx.find_trace_ids(&Tenant::default(), &over).await,
                Err(Error::InvalidRequest(_))
            ),
            "{over:?}"
        );
    }
}
