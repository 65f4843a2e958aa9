//! Conformance cases: free text is data (words), never query syntax.

#[allow(unused_imports)]
use super::*;
use clew_proto::Tenant;

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
        match idx.find_trace_ids(&Tenant::default(), &text(t)).await {
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
    match idx.find_trace_ids(&Tenant::default(), &text(&huge)).await {
        Ok(_) | Err(Error::InvalidRequest(_)) => {}
        Err(e) => panic!("huge text must not fail with {e}"),
    }
    let many: String = (0..5000).map(|i| format!("w{i} ")).collect();
    match idx.find_trace_ids(&Tenant::default(), &text(&many)).await {
        Ok(page) => assert!(page.hits.is_empty()),
        Err(Error::InvalidRequest(_)) => {}
        Err(e) => panic!("many-word text must not fail with {e}"),
    }
}
