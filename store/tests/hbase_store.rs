//! The HBase span store against a real HBase (standalone, with its Thrift1 server): the
//! shared conformance suite, plus the row layout as HBase itself shows it.
//!
//! Needs `HBASE_THRIFT=host:port`; `scripts/test` starts HBase with `scripts/hbase-start`
//! and runs these with `--ignored`. Every run uses a fresh table with a unique name.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use clew_proto::encoding::decode_span;
use clew_store::conformance::fixtures::{checkout_trace, now_unix_nano, trace_id, wide_trace};
use clew_store::conformance::span_store::{
    self as suite, Capabilities, Retention, StoreBackend, SuiteParams,
};
use clew_store::hbase::connection::connect;
use clew_store::hbase::span_store::{cell_qualifier, CELL_QUALIFIER_LEN, META_QUALIFIER};
use clew_store::hbase::HbaseSpanStore;
use clew_store::row_layout::Meta;
use clew_store::{Common, HbaseStoreConfig, SpanStore};
use hbase_thrift::hbase::THbaseSyncClient;

fn thrift_addr() -> String {
    std::env::var("HBASE_THRIFT").expect("HBASE_THRIFT=host:port of an HBase Thrift1 server")
}

/// A table name no other run uses.
fn unique_table(what: &str) -> String {
    format!(
        "clew_test_{what}_{}_{}",
        std::process::id(),
        now_unix_nano() / 1_000_000
    )
}

/// The socket transport on `HBASE_THRIFT`, or with `CLEW_HBASE_TRANSPORT=http` the HTTPS
/// Thrift server of `scripts/hbase-start --thrift-https` (`HBASE_THRIFT_HTTPS`,
/// `HBASE_THRIFT_CA`): the same tests over either transport.
fn transport_config() -> HbaseStoreConfig {
    if std::env::var("CLEW_HBASE_TRANSPORT").as_deref() == Ok("http") {
        let url = std::env::var("HBASE_THRIFT_HTTPS").expect("HBASE_THRIFT_HTTPS=https://...");
        let ca = std::env::var("HBASE_THRIFT_CA").expect("HBASE_THRIFT_CA=<ca pem>");
        HbaseStoreConfig {
            transport: clew_store::HbaseTransport::Http,
            ca_cert_path: Some(ca.into()),
            ..HbaseStoreConfig::new(vec![url])
        }
    } else {
        HbaseStoreConfig::new(vec![thrift_addr()])
    }
}

fn config(table: &str, max_spans_per_trace: u32, max_bytes_per_trace: u64) -> HbaseStoreConfig {
    HbaseStoreConfig {
        table: table.to_string(),
        pool_size: 4,
        timeout_ms: 10_000,
        max_spans_per_trace,
        max_bytes_per_trace,
        ..transport_config()
    }
}

async fn open(table: String, params: SuiteParams) -> Arc<dyn SpanStore> {
    let common = Common {
        data_dir: std::env::temp_dir(),
        retention: clew_store::conformance::retention_classes(params.retention_days),
        indexed_attributes: vec![],
    };
    let store = tokio::task::spawn_blocking(move || {
        HbaseSpanStore::open(
            &config(&table, params.max_spans_per_trace, 64 << 20),
            &common,
        )
    })
    .await
    .unwrap()
    .expect("open hbase span store");
    Arc::new(store)
}

/// Every store of the suite on one table (each case uses its own trace ids); a reopen is a
/// new store, with its own connections, on the same table.
struct Hbase {
    table: String,
}

#[async_trait::async_trait]
impl StoreBackend for Hbase {
    /// HBase expires cells by the column family's TTL with the *server's* clock, so
    /// `drop_expired(now + 9 days)` cannot make a just-written trace vanish; the TTL
    /// itself is asserted in `table_and_row_layout`.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            retention: Retention::ServerTtl,
        }
    }

    async fn open(&self, params: SuiteParams) -> Arc<dyn SpanStore> {
        open(self.table.clone(), params).await
    }

    async fn reopen(&self, params: SuiteParams) -> Arc<dyn SpanStore> {
        open(self.table.clone(), params).await
    }
}

/// Every case of the shared suite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs HBase (scripts/hbase-start); scripts/test runs it"]
async fn conformance_suite() {
    suite::run_all(&Hbase {
        table: unique_table("suite"),
    })
    .await;
}

/// Rows read through HBase's own Thrift interface: key = trace id, one family `s`, one
/// 9-byte qualifier (span id + kind) per span holding the versioned encoding, a `meta`
/// cell with count, bytes and the truncated flag; the family has TTL = retention and
/// keeps one version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs HBase (scripts/hbase-start); scripts/test runs it"]
async fn table_and_row_layout() {
    let table = unique_table("layout");
    let store = open(
        table.clone(),
        SuiteParams {
            max_spans_per_trace: 10,
            retention_days: 3,
        },
    )
    .await;
    let now = now_unix_nano();
    let checkout = checkout_trace(trace_id(1), "order-1", now, true);
    let wide = wide_trace(trace_id(2), 12, now);
    let batch: Vec<_> = checkout.iter().chain(&wide).cloned().collect();
    let report = store.write_spans(batch.into()).await.unwrap();
    assert_eq!(report.rejected.len(), 2, "12 spans against a cap of 10");

    let addr = thrift_addr();
    let (descriptors, rows) = tokio::task::spawn_blocking(move || {
        let mut client = connect(&addr, Duration::from_secs(10)).unwrap();
        let descriptors = client
            .get_column_descriptors(table.clone().into_bytes())
            .unwrap();
        let rows = client
            .get_rows(
                table.into_bytes(),
                vec![trace_id(1).0.to_vec(), trace_id(2).0.to_vec()],
                BTreeMap::new(),
            )
            .unwrap();
        (descriptors, rows)
    })
    .await
    .unwrap();

    assert_eq!(descriptors.len(), 1, "one column family");
    let family = descriptors.values().next().unwrap();
    assert_eq!(family.name.as_deref(), Some(&b"s:"[..]));
    assert_eq!(family.max_versions, Some(1));
    assert_eq!(
        family.time_to_live,
        Some(clew_store::conformance::LONG_DAYS as i32 * 86_400),
        "the family TTL is the longest retention class, not retention_days (3)"
    );
    assert_eq!(family.block_cache_enabled, Some(true));

    assert_eq!(rows.len(), 2);
    for (row, spans, truncated) in [
        (&rows[0], &checkout[..], false),
        (&rows[1], &wide[..10], true),
    ] {
        let trace = spans[0].trace_id;
        assert_eq!(
            row.row.as_deref(),
            Some(&trace.0[..]),
            "row key = 16-byte trace id"
        );
        let columns = row.columns.as_ref().unwrap();
        assert_eq!(columns.len(), spans.len() + 1, "one cell per span + meta");
        let mut meta_column = b"s:".to_vec();
        meta_column.extend_from_slice(META_QUALIFIER);
        let meta = Meta::decode(columns[&meta_column].value.as_deref().unwrap()).unwrap();
        assert_eq!(meta.spans as usize, spans.len());
        assert_eq!(meta.truncated, truncated);
        let mut bytes = 0;
        for span in spans {
            let mut name = b"s:".to_vec();
            name.extend_from_slice(&cell_qualifier(span));
            assert_eq!(name.len(), 2 + CELL_QUALIFIER_LEN);
            assert_eq!(
                &name[2..10],
                &span.span_id.0[..],
                "qualifier starts with the span id"
            );
            assert_eq!(name[10] as i32, span.kind.as_i32(), "then the kind");
            let value = columns
                .get(&name)
                .unwrap_or_else(|| panic!("cell of span {}", span.span_id))
                .value
                .as_deref()
                .unwrap();
            assert_eq!(value[0], 1, "leading format-version byte");
            assert_eq!(&decode_span(value).unwrap(), span);
            bytes += value.len() as u64;
        }
        assert_eq!(meta.bytes, bytes);
    }
}

/// Retention classes on HBase: each put carries its class's TTL (the `_ttl` attribute of
/// Thrift1's `mutateRows`), and HBase itself expires the cells. With a retention "day" of
/// one second (`open_with_day`), the short class (2 days) is gone after 3 s while the
/// default (7) and long (30) classes are still read, then the default class goes too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs HBase (scripts/hbase-start); scripts/test runs it"]
async fn retention_class_ttls_expire_cells_apart() {
    use clew_proto::Tenant;
    use clew_store::conformance::fixtures::in_tenant;
    use clew_store::conformance::{retention_classes, LONG_TENANT, SHORT_TENANT};
    const DAY: Duration = Duration::from_secs(1);
    let table = unique_table("ttl");
    let common = Common {
        data_dir: std::env::temp_dir(),
        retention: retention_classes(7),
        indexed_attributes: vec![],
    };
    let store: Arc<dyn SpanStore> = Arc::new(
        tokio::task::spawn_blocking(move || {
            HbaseSpanStore::open_with_day(&config(&table, 100, 64 << 20), &common, DAY)
        })
        .await
        .unwrap()
        .expect("open hbase span store"),
    );
    let id = trace_id(77);
    let now = now_unix_nano();
    let plain = checkout_trace(id, "ttl-d", now, false);
    let short = in_tenant(checkout_trace(id, "ttl-s", now, false), SHORT_TENANT);
    let long = in_tenant(checkout_trace(id, "ttl-l", now, false), LONG_TENANT);
    let written = std::time::Instant::now();
    let batch: Vec<_> = plain.iter().chain(&short).chain(&long).cloned().collect();
    let report = store.write_spans(batch.into()).await.unwrap();
    assert!(report.rejected.is_empty());
    let (default_t, short_t, long_t) = (
        Tenant::default(),
        Tenant::parse(SHORT_TENANT).unwrap(),
        Tenant::parse(LONG_TENANT).unwrap(),
    );
    let spans_of = |t: &Tenant| {
        let (store, t) = (store.clone(), t.clone());
        async move {
            store
                .get_trace(&t, id)
                .await
                .expect("get_trace")
                .map_or(0, |tr| tr.spans.len())
        }
    };
    assert_eq!(spans_of(&short_t).await, short.len(), "written");
    assert!(
        written.elapsed() < 2 * DAY,
        "the machine is too slow for this test's timing"
    );
    tokio::time::sleep((3 * DAY).saturating_sub(written.elapsed())).await;
    assert_eq!(
        spans_of(&short_t).await,
        0,
        "the short class (2 days) expired"
    );
    assert_eq!(
        spans_of(&default_t).await,
        plain.len(),
        "default class: 7 days"
    );
    assert_eq!(spans_of(&long_t).await, long.len(), "long class: 30 days");
    tokio::time::sleep((8 * DAY).saturating_sub(written.elapsed())).await;
    assert_eq!(
        spans_of(&default_t).await,
        0,
        "the default class (7 days) expired"
    );
    assert_eq!(spans_of(&long_t).await, long.len(), "long class: 30 days");
}

/// Several write batches in flight at once (`write_concurrency` = the pool size) touching
/// the same trace: each reads the meta the one before it wrote, so the trace's cap holds
/// exactly (no two batches both find the trace new and each admit up to the cap), the
/// meta counts every stored cell, and batches of other traces are not held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs HBase (scripts/hbase-start); scripts/test runs it"]
async fn concurrent_batches_share_a_traces_cap() {
    use clew_proto::SpanId;
    use clew_store::conformance::fixtures::span;

    const CAP: u32 = 10;
    const BATCHES: u64 = 8;
    const SHARED_PER_BATCH: u64 = 4;
    let store = open(
        unique_table("concurrent"),
        SuiteParams {
            max_spans_per_trace: CAP,
            retention_days: 7,
        },
    )
    .await;
    assert_eq!(store.write_concurrency(), 4, "pool_size batches in flight");
    let shared = trace_id(0xC0C0);
    let now = now_unix_nano();
    let batches: Vec<Arc<[clew_proto::Span]>> = (0..BATCHES)
        .map(|b| {
            let mut spans = Vec::new();
            // Spans of the shared trace; neighbouring batches repeat one span each, so
            // re-deliveries race too.
            for n in 0..=SHARED_PER_BATCH {
                let id = b * SHARED_PER_BATCH + n + 1;
                spans.push(span(
                    shared,
                    SpanId(id.to_be_bytes()),
                    None,
                    "svc",
                    "op",
                    now,
                    1,
                ));
            }
            // A trace of this batch only.
            let own = trace_id(0xD000 + b);
            for n in 1..=3u64 {
                spans.push(span(
                    own,
                    SpanId(n.to_be_bytes()),
                    None,
                    "svc",
                    "op",
                    now,
                    1,
                ));
            }
            spans.into()
        })
        .collect();
    let writes: Vec<_> = batches
        .iter()
        .cloned()
        .map(|batch| {
            let store = store.clone();
            tokio::spawn(async move { store.write_spans(batch).await.expect("write") })
        })
        .collect();
    let mut rejected_shared = 0;
    for (b, write) in writes.into_iter().enumerate() {
        let report = write.await.unwrap();
        for (i, _) in &report.rejected {
            assert!(
                *i <= SHARED_PER_BATCH as usize,
                "batch {b}: only spans of the shared trace are over its cap"
            );
            rejected_shared += 1;
        }
    }
    let distinct = BATCHES * SHARED_PER_BATCH + 1;
    let trace = store
        .get_trace(&Default::default(), shared)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        trace.spans.len(),
        CAP as usize,
        "the cap holds across concurrent batches"
    );
    assert!(trace.truncated);
    // Every distinct span was either stored or rejected (duplicates of stored ones are
    // neither); a span whose every copy was rejected counts once per copy.
    assert!(rejected_shared as u64 >= distinct - u64::from(CAP));
    for b in 0..BATCHES {
        let own = store
            .get_trace(&Default::default(), trace_id(0xD000 + b))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            own.spans.len(),
            3,
            "other traces of each batch are all stored"
        );
    }
    // The meta counts what is stored: a later new span is rejected, not admitted over
    // an under-counted meta.
    let late: Arc<[clew_proto::Span]> = vec![span(
        shared,
        SpanId(999u64.to_be_bytes()),
        None,
        "svc",
        "op",
        now,
        1,
    )]
    .into();
    let report = store.write_spans(late).await.unwrap();
    assert_eq!(report.rejected.len(), 1, "the trace is full");
}

/// An address nobody listens on is a retryable error, reported after the retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: open retries with back-off for ~15 s; scripts/test runs it"]
async fn unreachable_server_is_retryable() {
    let config = HbaseStoreConfig {
        table: "clew_unused".into(),
        pool_size: 1,
        timeout_ms: 500,
        max_spans_per_trace: 10,
        max_bytes_per_trace: 1 << 20,
        ..HbaseStoreConfig::new(vec!["127.0.0.1:1".into()])
    };
    let common = Common {
        data_dir: std::env::temp_dir(),
        retention: clew_store::RetentionClasses::uniform(1),
        indexed_attributes: vec![],
    };
    let err = tokio::task::spawn_blocking(move || HbaseSpanStore::open(&config, &common))
        .await
        .unwrap()
        .err()
        .expect("open must fail");
    assert!(err.is_retryable(), "{err}");
}
