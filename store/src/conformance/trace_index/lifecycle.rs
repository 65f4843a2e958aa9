//! Conformance cases: idempotent writes, service and operation names, retention, and the
//! contracts of time and process lifetime (freshness, reopen, readiness).

#[allow(unused_imports)]
use super::*;
use clew_proto::Tenant;

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
    assert!(idx.services(&Tenant::default()).await.unwrap().is_empty());
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
        idx.services(&Tenant::default()).await.unwrap(),
        ["checkout", "frontend", "pay", "payments"]
    );
    assert_eq!(
        idx.operations(&Tenant::default(), "payments")
            .await
            .unwrap(),
        ["Charge", "SELECT payments"]
    );
    assert_eq!(
        idx.operations(&Tenant::default(), "pay").await.unwrap(),
        ["Zap"]
    );
    assert_eq!(
        idx.operations(&Tenant::default(), "frontend")
            .await
            .unwrap(),
        ["GET /checkout"]
    );
    assert!(idx
        .operations(&Tenant::default(), "nobody")
        .await
        .unwrap()
        .is_empty());
    assert!(idx
        .operations(&Tenant::default(), "")
        .await
        .unwrap()
        .is_empty());
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

/// Freshness: spans are searchable within 2 seconds of `index_spans` returning, without
/// `refresh()`. Polled, so a fast backend passes at once; a little slack on top of the
/// contract keeps a loaded test machine from failing it.
pub async fn searchable_within_two_seconds(idx: Arc<dyn TraceIndex>) {
    const CONTRACT: std::time::Duration = std::time::Duration::from_secs(2);
    const SLACK: std::time::Duration = std::time::Duration::from_secs(1);
    let a = trace_id(1);
    index(&idx, checkout_trace(a, "fresh-1", BASE_TIME, false)).await;
    let started = std::time::Instant::now();
    loop {
        if ids(&idx, key("order_id", "fresh-1")).await == vec![a] {
            break;
        }
        assert!(
            started.elapsed() < CONTRACT + SLACK,
            "not searchable {:?} after index_spans returned",
            started.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Readiness: an open index says it can serve, before and after it holds data.
pub async fn ready_when_open(idx: Arc<dyn TraceIndex>) {
    idx.ready().await.expect("a freshly opened index is ready");
    index(
        &idx,
        checkout_trace(trace_id(1), "ready-1", BASE_TIME, false),
    )
    .await;
    idx.refresh().await.unwrap();
    idx.ready().await.expect("an index holding data is ready");
}

/// Durability across a restart: what was indexed (committed by `refresh`, or only
/// acknowledged) is found after `close` and a new open of the same data, and the
/// reopened index takes new spans.
pub async fn survives_close_and_reopen(backend: &dyn IndexBackend) {
    let idx = backend.open().await;
    let (a, b) = (trace_id(1), trace_id(2));
    index(&idx, checkout_trace(a, "kept-1", BASE_TIME, true)).await;
    idx.refresh().await.unwrap();
    index(&idx, checkout_trace(b, "kept-2", BASE_TIME + MINUTE, false)).await;
    idx.close().await.expect("close");
    drop(idx);

    let idx = backend.reopen().await;
    idx.refresh().await.unwrap();
    assert_eq!(ids(&idx, key("order_id", "kept-1")).await, vec![a]);
    assert_eq!(ids(&idx, key("order_id", "kept-2")).await, vec![b]);
    let errors = TraceQuery {
        errors_only: true,
        ..q()
    };
    assert_eq!(
        ids(&idx, errors).await,
        vec![a],
        "the error flag is durable"
    );
    index(
        &idx,
        checkout_trace(trace_id(3), "kept-3", BASE_TIME, false),
    )
    .await;
    idx.refresh().await.unwrap();
    assert_eq!(
        ids(&idx, key("order_id", "kept-3")).await,
        vec![trace_id(3)]
    );
    idx.close().await.expect("close after reopen");
}
