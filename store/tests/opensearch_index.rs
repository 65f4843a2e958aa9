//! The OpenSearch trace index against a real OpenSearch (single node, security off): the
//! shared conformance suite unchanged, plus what OpenSearch itself shows of the template,
//! the daily indices and the documents, and how an unreachable cluster is reported.
//!
//! Needs `OPENSEARCH_URL=http://host:port`; `scripts/test` starts OpenSearch with
//! `scripts/opensearch-start` and runs these with `--ignored`. Every index opened here
//! uses its own random prefix, so runs (and the suite's cases) never see each other's data.

use clew_proto::Tenant;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use clew_store::conformance::fixtures::{checkout_trace, now_unix_nano, trace_id, BASE_TIME};
use clew_store::conformance::trace_index::{
    self as suite, IndexBackend, INDEXED_ATTRIBUTES, RETENTION_DAYS,
};
use clew_store::opensearch::OpenSearchTraceIndex;
use clew_store::{Common, EmbeddedIndexConfig, OpenSearchIndexConfig, TraceIndex, TraceQuery};
use serde_json::Value;

fn url() -> String {
    std::env::var("OPENSEARCH_URL").expect("OPENSEARCH_URL=http://host:port of an OpenSearch node")
}

/// A prefix no other run or case uses.
fn unique_prefix(what: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "clew-test-{what}-{:x}-{:x}-{}",
        std::process::id(),
        now_unix_nano() / 1_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn config(urls: Vec<String>, prefix: &str, timeout_ms: u64) -> OpenSearchIndexConfig {
    OpenSearchIndexConfig {
        urls,
        index_prefix: prefix.to_string(),
        username: None,
        password: None,
        bearer_token: None,
        ca_cert_path: None,
        insecure_skip_verify: false,
        timeout_ms,
        bulk_max_docs: 5_000,
        bulk_max_bytes: 8 << 20,
        bulk_concurrency: 4,
        number_of_shards: 1,
        // One node: replicas would keep every index yellow.
        number_of_replicas: 0,
    }
}

fn common() -> Common {
    Common {
        data_dir: std::env::temp_dir(),
        retention: clew_store::conformance::trace_index::retention_classes(RETENTION_DAYS),
        indexed_attributes: INDEXED_ATTRIBUTES.iter().map(|s| s.to_string()).collect(),
    }
}

fn open(prefix: &str) -> Arc<dyn TraceIndex> {
    Arc::new(
        OpenSearchTraceIndex::open(&config(vec![url()], prefix, 10_000), &common())
            .expect("open opensearch index"),
    )
}

async fn get(path: &str) -> Value {
    let resp = reqwest::get(format!("{}{path}", url())).await.unwrap();
    assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
    resp.json().await.unwrap()
}

async fn delete_indices(prefix: &str) {
    let _ = reqwest::Client::new()
        .delete(format!("{}/{prefix}-*", url()))
        .send()
        .await;
    let _ = reqwest::Client::new()
        .delete(format!("{}/_index_template/{prefix}", url()))
        .send()
        .await;
}

/// Each index on a fresh prefix of this run; a reopen is a new index object (client) on
/// the last prefix. The indices are deleted when the suite ends.
struct OpenSearch {
    run: String,
    prefixes: std::sync::Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl IndexBackend for OpenSearch {
    async fn open(&self) -> Arc<dyn TraceIndex> {
        let mut prefixes = self.prefixes.lock().unwrap();
        let prefix = format!("{}-{}", self.run, prefixes.len());
        prefixes.push(prefix.clone());
        open(&prefix)
    }

    async fn reopen(&self) -> Arc<dyn TraceIndex> {
        let prefixes = self.prefixes.lock().unwrap();
        open(prefixes.last().expect("an index was opened"))
    }
}

/// Every case of the shared suite, each on a fresh prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs OpenSearch (scripts/opensearch-start); scripts/test runs it"]
async fn conformance_suite() {
    let backend = OpenSearch {
        run: unique_prefix("suite"),
        prefixes: Default::default(),
    };
    suite::run_all(&backend).await;
    for p in backend.prefixes.into_inner().unwrap() {
        delete_indices(&p).await;
    }
}

/// What OpenSearch shows: the template with explicit mappings, one index per UTC day named
/// `<prefix>-YYYY.MM.DD` behind the alias, one document per span (rewrites overwrite), and
/// a refresh interval that meets "searchable within 2 s" without calling `refresh()`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs OpenSearch (scripts/opensearch-start); scripts/test runs it"]
async fn template_daily_indices_and_documents() {
    let prefix = unique_prefix("layout");
    let idx = open(&prefix);
    let day2 = BASE_TIME + 86_400 * 1_000_000_000;
    let a = checkout_trace(trace_id(1), "A-1", BASE_TIME, true);
    let b = checkout_trace(trace_id(2), "B-2", day2, false);
    idx.index_spans(a.clone().into()).await.unwrap();
    idx.index_spans(b.into()).await.unwrap();
    idx.index_spans(a.into()).await.unwrap(); // again: overwrites, adds nothing

    let template = get(&format!("/_index_template/{prefix}")).await;
    let t = &template["index_templates"][0]["index_template"];
    assert_eq!(t["index_patterns"][0], format!("{prefix}-*"));
    let settings = &t["template"]["settings"]["index"];
    assert_eq!(settings["refresh_interval"], "1s");
    let mappings = &t["template"]["mappings"];
    assert_eq!(mappings["dynamic"], "strict");
    let props = &mappings["properties"];
    for (field, ty) in [
        ("trace_id", "keyword"),
        ("start", "long"),
        ("start_time", "date"),
        ("duration", "long"),
        ("service", "keyword"),
        ("operation", "keyword"),
        ("kind", "keyword"),
        ("error", "boolean"),
        ("error_text", "text"),
        ("keys", "keyword"),
        ("attrs", "keyword"),
    ] {
        assert_eq!(props[field]["type"], ty, "mapping of {field}");
    }

    let mut indices: Vec<String> = get(&format!("/_cat/indices/{prefix}-*?format=json&h=index"))
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["index"].as_str().unwrap().to_string())
        .collect();
    indices.sort();
    assert_eq!(
        indices,
        [
            format!("{prefix}-2023.11.14"),
            format!("{prefix}-2023.11.15")
        ]
    );
    let aliases = get(&format!("/_alias/{prefix}")).await;
    assert_eq!(
        aliases.as_object().unwrap().len(),
        2,
        "both days behind the alias"
    );

    // Searchable without an explicit refresh, within the refresh interval (bounded wait).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let page = idx
            .find_trace_ids(
                &Tenant::default(),
                &TraceQuery {
                    business_keys: vec![("order_id".into(), "B-2".into())],
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        if page.hits.len() == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not searchable after 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    idx.refresh().await.unwrap();
    let count = get(&format!("/{prefix}/_count")).await;
    assert_eq!(
        count["count"], 8,
        "one document per span, rewrites included"
    );
    delete_indices(&prefix).await;
}

/// Nobody listens: a retryable error, for writes, searches and readiness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "part of the OpenSearch suite; scripts/test runs it"]
async fn unreachable_cluster_is_retryable() {
    let idx = OpenSearchTraceIndex::open(
        &config(vec!["http://127.0.0.1:1".into()], "clew-unused", 1_000),
        &common(),
    )
    .unwrap();
    let spans = checkout_trace(trace_id(1), "x", BASE_TIME, false);
    let err = idx.index_spans(spans.into()).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let err = idx
        .find_trace_ids(&Tenant::default(), &TraceQuery::default())
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(idx.ready().await.unwrap_err().is_retryable());
}

/// A second node URL that is down is skipped: requests fail over to the live one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs OpenSearch (scripts/opensearch-start); scripts/test runs it"]
async fn fails_over_to_a_live_node() {
    let prefix = unique_prefix("failover");
    let idx = OpenSearchTraceIndex::open(
        &config(vec!["http://127.0.0.1:1".into(), url()], &prefix, 10_000),
        &common(),
    )
    .unwrap();
    for i in 0..4 {
        let spans = checkout_trace(trace_id(i), &format!("o{i}"), BASE_TIME, false);
        idx.index_spans(spans.into()).await.unwrap();
    }
    idx.refresh().await.unwrap();
    for _ in 0..4 {
        let page = idx
            .find_trace_ids(&Tenant::default(), &TraceQuery::default())
            .await
            .unwrap();
        assert_eq!(page.hits.len(), 4);
    }
    delete_indices(&prefix).await;
}

/// Differential test: the same spans in the embedded tantivy index and in OpenSearch give
/// the same pages (ids, keys, cursors' order) for many queries. Traces here are wide
/// (up to 60 spans, some crossing midnight) and pages small, so searches take several
/// scan/verify rounds, which the conformance fixtures never need.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs OpenSearch (scripts/opensearch-start); scripts/test runs it"]
async fn same_answers_as_the_embedded_index() {
    use clew_store::conformance::fixtures::{kv, span, span_id, with_exception, with_key};
    use clew_store::embedded::tantivy_index::TantivyTraceIndex;

    const MS: u64 = 1_000_000;
    const HOUR: u64 = 3_600_000 * MS;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let services = ["frontend", "checkout", "payments", "inventory", "mailer"];
    let routes = ["/api/orders/{id}", "/api/cart", "/api/search"];
    let errors = [
        ("PaymentDeclinedError", "card declined for order"),
        (
            "java.net.SocketTimeoutException",
            "upstream timed out after 30s",
        ),
        ("SqlError", "deadlock detected"),
    ];
    let mut spans = Vec::new();
    // Day boundary: BASE_TIME is 22:13 UTC, traces spread over ~6 hours cross midnight.
    for t in 0..80u64 {
        let trace = trace_id(t);
        let start = BASE_TIME + rand(6 * HOUR);
        let n = 1 + rand(60) as usize;
        for i in 0..n {
            let service = services[(rand(5) as usize + i) % 5];
            let parent = (i > 0).then(|| span_id(rand(i as u64)));
            // Late spans of long traces land up to 2 h after the root.
            let offset = if rand(10) == 0 {
                rand(2 * HOUR)
            } else {
                rand(500 * MS)
            };
            let mut s = span(
                trace,
                span_id(i as u64),
                parent,
                service,
                &format!("op-{}", rand(4)),
                start + if i == 0 { 0 } else { offset },
                (1 + rand(300)) * MS,
            );
            s.attributes = vec![kv("http.route", routes[rand(3) as usize])];
            if rand(4) == 0 {
                s.attributes
                    .push(kv("db.system", ["postgresql", "redis"][rand(2) as usize]));
            }
            if i == 0 || rand(15) == 0 {
                s = with_key(s, "order_id", &format!("o-{}", t % 30));
            }
            if rand(12) == 0 {
                let (ty, msg) = errors[rand(3) as usize];
                s = with_exception(s, ty, msg);
            }
            spans.push(s);
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let mut common = common();
    common.data_dir = dir.path().to_path_buf();
    let embedded: Arc<dyn TraceIndex> =
        Arc::new(TantivyTraceIndex::open(&EmbeddedIndexConfig::default(), &common).unwrap());
    let prefix = unique_prefix("diff");
    let remote = open(&prefix);
    for chunk in spans.chunks(97) {
        embedded.index_spans(chunk.to_vec().into()).await.unwrap();
        remote.index_spans(chunk.to_vec().into()).await.unwrap();
    }
    embedded.refresh().await.unwrap();
    remote.refresh().await.unwrap();
    assert_eq!(
        embedded.services(&Tenant::default()).await.unwrap(),
        remote.services(&Tenant::default()).await.unwrap()
    );
    for s in services {
        assert_eq!(
            embedded.operations(&Tenant::default(), s).await.unwrap(),
            remote.operations(&Tenant::default(), s).await.unwrap()
        );
    }

    let base = TraceQuery::default();
    let mut queries = vec![
        base.clone(),
        TraceQuery {
            service: Some("payments".into()),
            ..base.clone()
        },
        TraceQuery {
            service: Some("mailer".into()),
            operation: Some("op-2".into()),
            ..base.clone()
        },
        TraceQuery {
            errors_only: true,
            ..base.clone()
        },
        TraceQuery {
            errors_only: true,
            service: Some("inventory".into()),
            ..base.clone()
        },
        TraceQuery {
            min_duration_nanos: Some(250 * MS),
            ..base.clone()
        },
        TraceQuery {
            min_duration_nanos: Some(100 * MS),
            max_duration_nanos: Some(120 * MS),
            service: Some("frontend".into()),
            ..base.clone()
        },
        TraceQuery {
            attributes: vec![("db.system".into(), "redis".into())],
            ..base.clone()
        },
        TraceQuery {
            attributes: vec![
                ("db.system".into(), "postgresql".into()),
                ("http.route".into(), "/api/cart".into()),
            ],
            errors_only: true,
            ..base.clone()
        },
        TraceQuery {
            business_keys: vec![("order_id".into(), "o-7".into())],
            ..base.clone()
        },
        TraceQuery {
            business_keys: vec![("order_id".into(), "o-3".into())],
            service: Some("mailer".into()),
            ..base.clone()
        },
        TraceQuery {
            text: Some("declined".into()),
            ..base.clone()
        },
        TraceQuery {
            text: Some("SocketTimeoutException".into()),
            ..base.clone()
        },
        TraceQuery {
            text: Some("timed out 30s".into()),
            service: Some("checkout".into()),
            ..base.clone()
        },
        TraceQuery {
            start_min_unix_nano: Some(BASE_TIME + 2 * HOUR),
            start_max_unix_nano: Some(BASE_TIME + 3 * HOUR),
            ..base.clone()
        },
        TraceQuery {
            start_min_unix_nano: Some(BASE_TIME + HOUR),
            errors_only: true,
            service: Some("frontend".into()),
            ..base.clone()
        },
    ];
    let more: Vec<TraceQuery> = queries
        .iter()
        .map(|q| TraceQuery {
            start_max_unix_nano: Some(BASE_TIME + 4 * HOUR),
            ..q.clone()
        })
        .collect();
    queries.extend(more);

    for q in &queries {
        for limit in [1, 3, 7, 100] {
            let q = TraceQuery { limit, ..q.clone() };
            let (a, pages_a) = all_pages(&*embedded, &q).await;
            let (b, pages_b) = all_pages(&*remote, &q).await;
            assert_eq!(a, b, "different answers for {q:?}");
            assert_eq!(pages_a, pages_b, "different paging for {q:?}");
        }
    }
    delete_indices(&prefix).await;
}

/// Every hit of `q` page by page: (hits as (trace id, start), number of pages).
async fn all_pages(idx: &dyn TraceIndex, q: &TraceQuery) -> (Vec<(String, u64)>, usize) {
    let mut out = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = idx
            .find_trace_ids(
                &Tenant::default(),
                &TraceQuery {
                    cursor: cursor.clone(),
                    ..q.clone()
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{q:?}: {e}"));
        pages += 1;
        out.extend(
            page.hits
                .iter()
                .map(|h| (h.trace_id.to_string(), h.start_unix_nano)),
        );
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
        assert!(pages < 200, "paging does not end for {q:?}");
    }
    (out, pages)
}

/// Two deployments whose prefixes share a beginning (`p` and `p-eu`) on one cluster: both
/// templates install (overlapping patterns, different priorities), each index sees only its
/// own traces, and retention in one never deletes the other's daily indices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs OpenSearch (scripts/opensearch-start); scripts/test runs it"]
async fn prefixes_sharing_a_beginning_stay_apart() {
    let base = unique_prefix("pair");
    let eu = format!("{base}-eu");
    let (a, b) = (open(&base), open(&eu));
    let old = BASE_TIME - 30 * 86_400 * 1_000_000_000;
    a.index_spans(checkout_trace(trace_id(1), "A", BASE_TIME, false).into())
        .await
        .unwrap();
    b.index_spans(checkout_trace(trace_id(2), "B", BASE_TIME, false).into())
        .await
        .unwrap();
    b.index_spans(checkout_trace(trace_id(3), "B-old", old, false).into())
        .await
        .unwrap();
    a.refresh().await.unwrap();
    b.refresh().await.unwrap();
    let all = |idx: Arc<dyn TraceIndex>| async move {
        idx.find_trace_ids(&Tenant::default(), &TraceQuery::default())
            .await
            .unwrap()
            .hits
            .into_iter()
            .map(|h| h.trace_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(all(a.clone()).await, [trace_id(1)]);
    assert_eq!(all(b.clone()).await, [trace_id(2), trace_id(3)]);
    assert_eq!(
        a.drop_expired(BASE_TIME).await.unwrap(),
        0,
        "not a's to drop"
    );
    assert_eq!(b.drop_expired(BASE_TIME).await.unwrap(), 1);
    assert_eq!(all(b).await, [trace_id(2)]);
    delete_indices(&eu).await;

    // a prefix that looks like a retention class of ours (`<base>-r2`): its daily indices
    // are named like our class-r2 indices, and are still not ours to drop
    let r2 = format!("{base}-r2");
    let c = open(&r2);
    c.index_spans(checkout_trace(trace_id(4), "C-old", old, false).into())
        .await
        .unwrap();
    c.refresh().await.unwrap();
    assert_eq!(
        a.drop_expired(BASE_TIME).await.unwrap(),
        0,
        "not a's to drop"
    );
    assert_eq!(all(c.clone()).await, [trace_id(4)]);
    assert_eq!(all(a.clone()).await, [trace_id(1)]);
    assert_eq!(
        c.drop_expired(BASE_TIME).await.unwrap(),
        1,
        "c's own, 30 days old"
    );
    delete_indices(&r2).await;
    delete_indices(&base).await;
}

/// A `_bulk` answer of 200 with some items refused is an error naming the reason, never a
/// silent success: here one day's index exists with a conflicting mapping (made by hand),
/// so the spans of that day are refused while those of the next day are indexed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs OpenSearch (scripts/opensearch-start); scripts/test runs it"]
async fn refused_bulk_items_are_reported() {
    let prefix = unique_prefix("refused");
    let idx = open(&prefix);
    // Install the template first, then make the BASE_TIME day's index by hand with
    // `duration` as a boolean: every span document of that day is refused (400).
    idx.ready().await.unwrap();
    let resp = reqwest::Client::new()
        .put(format!("{}/{prefix}-2023.11.14", url()))
        .json(&serde_json::json!({
            "settings": {"number_of_replicas": 0},
            "mappings": {"properties": {"duration": {"type": "boolean"}}}
        }))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let next_day = BASE_TIME + 86_400 * 1_000_000_000;
    let mut spans = checkout_trace(trace_id(1), "bad", BASE_TIME, false);
    spans.extend(checkout_trace(trace_id(2), "good", next_day, false));
    let err = idx.index_spans(spans.into()).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    let text = err.to_string();
    assert!(text.contains("rejected 4 span document(s)"), "{text}");
    assert!(text.contains("parsing_exception"), "{text}");
    idx.refresh().await.unwrap();
    let found = idx
        .find_trace_ids(&Tenant::default(), &TraceQuery::default())
        .await
        .unwrap();
    assert_eq!(
        found.hits.iter().map(|h| h.trace_id).collect::<Vec<_>>(),
        [trace_id(2)],
        "the other day's spans were indexed"
    );
    delete_indices(&prefix).await;
}
