//! The span-store conformance suite: what every [`SpanStore`] backend must do.
//!
//! A backend's test implements [`StoreBackend`] (open a store for the [`SuiteParams`] it is
//! given; open the same data again after a close; what it legitimately cannot do, as
//! [`Capabilities`]) and calls [`run_all`], which runs every one of [`cases`]: there is no
//! hand-picked subset, so a new case reaches every backend. Only the trait is used, so the
//! HBase backend runs the same assertions as the embedded one. Every case uses its own
//! trace ids, so a backend whose "fresh" store shares a table still gets meaningful results.

use clew_proto::Tenant;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;

use clew_proto::{RejectReason, Span, SpanKind, TraceId};

use super::fixtures::{
    checkout_trace, in_tenant, now_unix_nano, span, span_id, trace_id, wide_trace,
};
use crate::{SpanStore, StoredTrace};

const NANOS_PER_DAY: u64 = 86_400 * 1_000_000_000;

/// What a case asks of the store it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuiteParams {
    /// Per-trace span cap the store must enforce.
    pub max_spans_per_trace: u32,
    /// Retention the store must apply in `drop_expired`: the global `retention_days`
    /// of [`super::retention_classes`], with which the store must be opened.
    pub retention_days: u32,
}

impl Default for SuiteParams {
    fn default() -> Self {
        SuiteParams {
            max_spans_per_trace: 50_000,
            retention_days: 7,
        }
    }
}

/// How a backend applies retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// `drop_expired` deletes whole buckets older than the retention (fjall).
    DropsBuckets,
    /// The server expires data by its own clock (HBase's column-family TTL), so
    /// `drop_expired` has nothing to do and data written now cannot be made to expire by
    /// passing a later `now`; the TTL itself is the backend's own test.
    ServerTtl,
}

/// What a backend legitimately cannot do; every case still runs and asserts what the
/// backend does instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    pub retention: Retention,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            retention: Retention::DropsBuckets,
        }
    }
}

/// A span-store backend under test.
#[async_trait]
pub trait StoreBackend: Send + Sync {
    /// What this backend cannot do.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// A store for `params`: fresh and empty, or (for a server backend whose tables are
    /// shared) one where no case's trace ids were written before.
    async fn open(&self, params: SuiteParams) -> Arc<dyn SpanStore>;

    /// The data of the store most recently returned by [`StoreBackend::open`] (closed by
    /// the caller), opened again as a new store object with `params`: a process restart.
    async fn reopen(&self, params: SuiteParams) -> Arc<dyn SpanStore>;
}

/// A case's future.
pub type CaseFuture<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

/// One conformance case.
pub struct Case {
    pub name: &'static str,
    pub run: for<'a> fn(&'a dyn StoreBackend) -> CaseFuture<'a>,
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        vec![$(Case {
            name: stringify!($name),
            run: |backend| Box::pin($name(backend)),
        }),*]
    };
}

/// Every case, in the order [`run_all`] runs them.
pub fn cases() -> Vec<Case> {
    cases![
        whole_trace_round_trips,
        unknown_trace_is_none,
        get_traces_keeps_order_and_skips_unknown,
        rewrite_is_idempotent,
        duplicates_count_once_against_cap,
        shared_span_id_client_and_server_both_kept,
        late_spans_are_appended,
        many_traces_in_one_batch,
        size_cap_rejects_and_marks_truncated,
        concurrent_writers_of_one_trace,
        retention_drops_expired_data,
        retention_classes_expire_apart,
        survives_close_and_reopen,
        ready_when_open,
        state_blobs_are_kept_apart_and_durable,
        tenants_are_isolated,
    ]
}

/// Runs every case; each opens the stores it needs.
pub async fn run_all(backend: &dyn StoreBackend) {
    for case in cases() {
        eprintln!("span store conformance: {}", case.name);
        (case.run)(backend).await;
    }
}

fn sort_key(s: &Span) -> ([u8; 8], i32) {
    (s.span_id.0, s.kind.as_i32())
}

fn sorted(mut spans: Vec<Span>) -> Vec<Span> {
    spans.sort_by_key(sort_key);
    spans
}

async fn write_ok(store: &Arc<dyn SpanStore>, spans: Vec<Span>) {
    let n = spans.len();
    let report = store
        .write_spans(spans.into())
        .await
        .unwrap_or_else(|e| panic!("write of {n} spans failed: {e}"));
    assert!(
        report.rejected.is_empty(),
        "nothing should be rejected, got {:?}",
        report.rejected
    );
}

async fn fetch(store: &Arc<dyn SpanStore>, id: TraceId) -> StoredTrace {
    store
        .get_trace(&Tenant::default(), id)
        .await
        .unwrap_or_else(|e| panic!("get_trace({id}) failed: {e}"))
        .unwrap_or_else(|| panic!("trace {id} should exist"))
}

/// Asserts that `trace` holds exactly `expected` (as a set), every field intact.
fn assert_spans(trace: &StoredTrace, expected: &[Span]) {
    let got = sorted(trace.spans.clone());
    let want = sorted(expected.to_vec());
    assert_eq!(got.len(), want.len(), "trace {} span count", trace.trace_id);
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(
            g, w,
            "span {} of trace {} differs",
            w.span_id, trace.trace_id
        );
    }
}

fn too_large(indices: impl IntoIterator<Item = usize>) -> Vec<(usize, RejectReason)> {
    indices
        .into_iter()
        .map(|i| (i, RejectReason::TraceTooLarge))
        .collect()
}

/// A trace written in one batch comes back whole: every span, every field.
pub async fn whole_trace_round_trips(backend: &dyn StoreBackend) {
    let store = backend.open(SuiteParams::default()).await;
    let now = now_unix_nano();
    let checkout = checkout_trace(trace_id(101), "order-101", now, true);
    let wide = wide_trace(trace_id(102), 30, now);
    write_ok(&store, checkout.iter().chain(&wide).cloned().collect()).await;

    let got = fetch(&store, trace_id(101)).await;
    assert_eq!(got.trace_id, trace_id(101));
    assert!(!got.truncated);
    assert_spans(&got, &checkout);
    // the fixture's error span, business key and link survive the round trip
    assert!(got.spans.iter().any(|s| s.is_error()));
    assert!(got
        .spans
        .iter()
        .any(|s| s.business_keys.iter().any(|k| k.value == "order-101")));
    assert!(got.spans.iter().any(|s| !s.links.is_empty()));

    let got = fetch(&store, trace_id(102)).await;
    assert!(!got.truncated);
    assert_spans(&got, &wide);
}

/// Unknown ids are `Ok(None)` / skipped, never an error.
pub async fn unknown_trace_is_none(backend: &dyn StoreBackend) {
    let store = backend.open(SuiteParams::default()).await;
    assert_eq!(
        store
            .get_trace(&Tenant::default(), trace_id(201))
            .await
            .expect("get_trace on empty store"),
        None
    );
    assert!(store
        .get_traces(&Tenant::default(), &[])
        .await
        .expect("get_traces of nothing")
        .is_empty());
    write_ok(
        &store,
        checkout_trace(trace_id(202), "order-202", now_unix_nano(), false),
    )
    .await;
    assert_eq!(
        store
            .get_trace(&Tenant::default(), trace_id(201))
            .await
            .expect("get_trace of unknown id"),
        None
    );
    assert!(store
        .get_traces(&Tenant::default(), &[trace_id(201), trace_id(203)])
        .await
        .expect("get_traces of unknown ids")
        .is_empty());
}

/// `get_traces` answers in the order asked and skips unknown ids.
pub async fn get_traces_keeps_order_and_skips_unknown(backend: &dyn StoreBackend) {
    let store = backend.open(SuiteParams::default()).await;
    let now = now_unix_nano();
    let traces: Vec<Vec<Span>> = (301..=303)
        .map(|n| checkout_trace(trace_id(n), &format!("order-{n}"), now, n == 302))
        .collect();
    for t in &traces {
        write_ok(&store, t.clone()).await;
    }
    let ask = [
        trace_id(303),
        trace_id(399),
        trace_id(301),
        trace_id(302),
        trace_id(398),
    ];
    let got = store
        .get_traces(&Tenant::default(), &ask)
        .await
        .expect("get_traces");
    let ids: Vec<TraceId> = got.iter().map(|t| t.trace_id).collect();
    assert_eq!(ids, vec![trace_id(303), trace_id(301), trace_id(302)]);
    assert_spans(&got[0], &traces[2]);
    assert_spans(&got[1], &traces[0]);
    assert_spans(&got[2], &traces[1]);
}

/// The same span written twice, in one batch or across batches, is stored once.
pub async fn rewrite_is_idempotent(backend: &dyn StoreBackend) {
    let store = backend.open(SuiteParams::default()).await;
    let t = checkout_trace(trace_id(401), "order-401", now_unix_nano(), true);
    let mut batch = t.clone();
    batch.push(t[0].clone());
    batch.push(t[3].clone());
    write_ok(&store, batch).await;
    assert_spans(&fetch(&store, trace_id(401)).await, &t);

    write_ok(&store, t.clone()).await;
    write_ok(&store, vec![t[1].clone(), t[1].clone()]).await;
    let got = fetch(&store, trace_id(401)).await;
    assert_spans(&got, &t);
    assert!(!got.truncated);
}

/// Re-delivered spans do not count twice against the per-trace cap.
pub async fn duplicates_count_once_against_cap(backend: &dyn StoreBackend) {
    let store = backend
        .open(SuiteParams {
            max_spans_per_trace: 4,
            ..SuiteParams::default()
        })
        .await;
    let now = now_unix_nano();
    let t = checkout_trace(trace_id(501), "order-501", now, false);
    let mut batch = t.clone();
    batch.extend(t.iter().take(2).cloned());
    write_ok(&store, batch).await; // 6 spans in, 4 distinct: exactly at the cap
    write_ok(&store, t.clone()).await; // replay of a full trace: not rejected
    let got = fetch(&store, trace_id(501)).await;
    assert_spans(&got, &t);
    assert!(
        !got.truncated,
        "a trace exactly at the cap is not truncated"
    );

    let fifth = span(
        trace_id(501),
        span_id(5),
        Some(span_id(1)),
        "frontend",
        "extra",
        now,
        10,
    );
    let report = store
        .write_spans(vec![fifth].into())
        .await
        .expect("write past cap");
    assert_eq!(report.rejected, too_large([0]));
    let got = fetch(&store, trace_id(501)).await;
    assert!(got.truncated);
    assert_spans(&got, &t);
}

/// A client and a server span sharing one span id are two cells, each idempotent.
pub async fn shared_span_id_client_and_server_both_kept(backend: &dyn StoreBackend) {
    let store = backend.open(SuiteParams::default()).await;
    let now = now_unix_nano();
    let mut client = span(
        trace_id(601),
        span_id(2),
        Some(span_id(1)),
        "frontend",
        "GET /cart",
        now,
        100,
    );
    client.kind = SpanKind::Client;
    let mut server = span(
        trace_id(601),
        span_id(2),
        Some(span_id(1)),
        "cart",
        "GET /cart",
        now + 5,
        80,
    );
    server.kind = SpanKind::Server;
    let root = span(
        trace_id(601),
        span_id(1),
        None,
        "frontend",
        "GET /",
        now,
        200,
    );
    let all = vec![root, client, server];
    write_ok(&store, all.clone()).await;
    write_ok(&store, all.clone()).await;
    assert_spans(&fetch(&store, trace_id(601)).await, &all);
}

/// Spans arriving after their trace was first written join the same trace.
pub async fn late_spans_are_appended(backend: &dyn StoreBackend) {
    let store = backend.open(SuiteParams::default()).await;
    let t = checkout_trace(trace_id(701), "order-701", now_unix_nano(), true);
    write_ok(&store, t[..2].to_vec()).await;
    assert_spans(&fetch(&store, trace_id(701)).await, &t[..2]);
    write_ok(&store, vec![t[3].clone()]).await;
    write_ok(&store, vec![t[2].clone(), t[0].clone()]).await;
    let got = fetch(&store, trace_id(701)).await;
    assert_spans(&got, &t);
    assert!(!got.truncated);
}

/// One batch mixing the spans of many traces, interleaved.
pub async fn many_traces_in_one_batch(backend: &dyn StoreBackend) {
    let store = backend.open(SuiteParams::default()).await;
    let now = now_unix_nano();
    let mut traces: Vec<Vec<Span>> = (0..40u64)
        .map(|n| {
            checkout_trace(
                trace_id(800 + n),
                &format!("order-{n}"),
                now + n,
                n % 3 == 0,
            )
        })
        .collect();
    traces.push(wide_trace(trace_id(899), 100, now));
    // round-robin: span 0 of every trace, then span 1 of every trace, ...
    let mut batch = Vec::new();
    for i in 0..100 {
        batch.extend(traces.iter().filter_map(|t| t.get(i).cloned()));
    }
    write_ok(&store, batch).await;

    let ids: Vec<TraceId> = traces.iter().map(|t| t[0].trace_id).collect();
    let got = store
        .get_traces(&Tenant::default(), &ids)
        .await
        .expect("get_traces");
    assert_eq!(got.len(), traces.len());
    for (g, want) in got.iter().zip(&traces) {
        assert_eq!(g.trace_id, want[0].trace_id);
        assert_spans(g, want);
    }
}

/// Spans past the cap are rejected by index, the trace reads as truncated, the stored part
/// stays readable, and replays of stored spans of a full trace are not rejected.
pub async fn size_cap_rejects_and_marks_truncated(backend: &dyn StoreBackend) {
    let store = backend
        .open(SuiteParams {
            max_spans_per_trace: 10,
            ..SuiteParams::default()
        })
        .await;
    let now = now_unix_nano();
    let big = wide_trace(trace_id(901), 25, now);
    let small = checkout_trace(trace_id(902), "order-902", now, false);
    let batch: Vec<Span> = big.iter().chain(&small).cloned().collect();
    let report = store
        .write_spans(batch.into())
        .await
        .expect("write over cap");
    assert_eq!(report.rejected, too_large(10..25));

    let got = fetch(&store, trace_id(901)).await;
    assert!(got.truncated);
    assert_spans(&got, &big[..10]);
    let other = fetch(&store, trace_id(902)).await;
    assert!(
        !other.truncated,
        "a trace next to a truncated one is not truncated"
    );
    assert_spans(&other, &small);

    // replaying stored spans of the full trace is fine, new ones are still refused
    write_ok(&store, big[..10].to_vec()).await;
    let report = store
        .write_spans(vec![big[3].clone(), big[20].clone(), big[7].clone()].into())
        .await
        .expect("write");
    assert_eq!(report.rejected, too_large([1]));
    assert_spans(&fetch(&store, trace_id(901)).await, &big[..10]);

    // the cap also holds across batches
    let third = wide_trace(trace_id(903), 12, now);
    write_ok(&store, third[..8].to_vec()).await;
    assert!(!fetch(&store, trace_id(903)).await.truncated);
    let report = store
        .write_spans(third[8..].to_vec().into())
        .await
        .expect("write");
    assert_eq!(report.rejected, too_large([2, 3]));
    let got = fetch(&store, trace_id(903)).await;
    assert!(got.truncated);
    assert_spans(&got, &third[..10]);
}

/// Concurrent writers of overlapping spans of one trace: every span once, none lost.
pub async fn concurrent_writers_of_one_trace(backend: &dyn StoreBackend) {
    let store = backend.open(SuiteParams::default()).await;
    let t = wide_trace(trace_id(1001), 45, now_unix_nano());
    let mut tasks = Vec::new();
    for k in 0..8 {
        let store = store.clone();
        let part: Vec<Span> = t[k * 5..k * 5 + 10].to_vec();
        tasks.push(tokio::spawn(
            async move { store.write_spans(part.into()).await },
        ));
    }
    for task in tasks {
        let report = task.await.expect("writer task").expect("concurrent write");
        assert!(report.rejected.is_empty());
    }
    assert_spans(&fetch(&store, trace_id(1001)).await, &t[..45]);
}

/// `drop_expired` keeps fresh data and removes data older than the retention period (a
/// server-TTL backend: `drop_expired` is a harmless no-op).
pub async fn retention_drops_expired_data(backend: &dyn StoreBackend) {
    let params = SuiteParams {
        retention_days: 7,
        ..SuiteParams::default()
    };
    let store = backend.open(params).await;
    let now = now_unix_nano();
    let t = checkout_trace(trace_id(1101), "order-1101", now, false);
    write_ok(&store, t.clone()).await;

    store
        .drop_expired(now_unix_nano())
        .await
        .expect("drop_expired(now)");
    assert_spans(&fetch(&store, trace_id(1101)).await, &t);

    let later = now_unix_nano() + u64::from(params.retention_days + 2) * NANOS_PER_DAY;
    if backend.capabilities().retention == Retention::ServerTtl {
        let dropped = store
            .drop_expired(later)
            .await
            .expect("drop_expired(later)");
        assert_eq!(dropped, 0, "the server expires data, there are no buckets");
        assert_spans(&fetch(&store, trace_id(1101)).await, &t);
        return;
    }
    let dropped = store
        .drop_expired(later)
        .await
        .expect("drop_expired(later)");
    assert!(
        dropped >= 1,
        "at least the bucket holding the trace is dropped"
    );
    assert_eq!(
        store
            .get_trace(&Tenant::default(), trace_id(1101))
            .await
            .expect("get_trace after retention"),
        None
    );

    // the store keeps working after a drop
    let fresh = checkout_trace(trace_id(1102), "order-1102", now_unix_nano(), false);
    write_ok(&store, fresh.clone()).await;
    assert_spans(&fetch(&store, trace_id(1102)).await, &fresh);
}

/// Tenants in different retention classes ([`super::retention_classes`]): written the
/// same day, then retention runs at a `now` where only the short class expired: the short
/// tenant's trace is gone, the long tenant's and the default tenant's stay; later the
/// default class expires by the global `retention_days` and the long one still stays.
/// A server-TTL backend drops nothing here (the TTL per class is its own test).
pub async fn retention_classes_expire_apart(backend: &dyn StoreBackend) {
    use super::{LONG_DAYS, LONG_TENANT, SHORT_DAYS, SHORT_TENANT};
    let params = SuiteParams {
        retention_days: 7,
        ..SuiteParams::default()
    };
    assert!(SHORT_DAYS + 1 < params.retention_days && params.retention_days + 2 < LONG_DAYS);
    let store = backend.open(params).await;
    let now = now_unix_nano();
    let id = trace_id(1701);
    let plain = checkout_trace(id, "order-1701", now, false);
    let short = in_tenant(checkout_trace(id, "order-1701s", now, false), SHORT_TENANT);
    let long = in_tenant(checkout_trace(id, "order-1701l", now, true), LONG_TENANT);
    write_ok(
        &store,
        plain.iter().chain(&short).chain(&long).cloned().collect(),
    )
    .await;
    let (short_t, long_t) = (
        Tenant::parse(SHORT_TENANT).unwrap(),
        Tenant::parse(LONG_TENANT).unwrap(),
    );
    let got = |t: &Tenant| {
        let (store, t) = (store.clone(), t.clone());
        async move { store.get_trace(&t, id).await.expect("get_trace") }
    };
    assert_spans(&got(&short_t).await.expect("short tenant's trace"), &short);
    assert_spans(&got(&long_t).await.expect("long tenant's trace"), &long);

    // past the short class's horizon only
    let after_short = now + u64::from(SHORT_DAYS + 2) * NANOS_PER_DAY;
    let dropped = store
        .drop_expired(after_short)
        .await
        .expect("drop_expired past the short class");
    if backend.capabilities().retention == Retention::ServerTtl {
        assert_eq!(dropped, 0, "the server expires data, there are no buckets");
        assert_spans(
            &got(&short_t).await.expect("short, kept by drop_expired"),
            &short,
        );
        assert_spans(&got(&long_t).await.expect("long tenant's trace"), &long);
        assert_spans(&fetch(&store, id).await, &plain);
        return;
    }
    assert!(dropped >= 1, "the short class's bucket is dropped");
    assert_eq!(got(&short_t).await, None, "the short class expired");
    assert_spans(&got(&long_t).await.expect("long class kept"), &long);
    assert_spans(&fetch(&store, id).await, &plain);

    // past the global retention: the default class goes, the long class stays
    let after_default = now + u64::from(params.retention_days + 2) * NANOS_PER_DAY;
    store
        .drop_expired(after_default)
        .await
        .expect("drop_expired past the default class");
    assert_eq!(
        store
            .get_trace(&Tenant::default(), id)
            .await
            .expect("get_trace"),
        None,
        "the default class expired by the global retention_days"
    );
    assert_spans(&got(&long_t).await.expect("long class still kept"), &long);

    // a late span of the long tenant's trace still lands in its row
    let mut late = long[0].clone();
    late.span_id = span_id(0x17_01_99);
    write_ok(&store, vec![late.clone()]).await;
    let with_late: Vec<Span> = long.iter().cloned().chain([late]).collect();
    assert_spans(
        &got(&long_t).await.expect("long class after a late span"),
        &with_late,
    );
}

/// Durability across a restart: spans, the truncated flag and the per-trace counts are read
/// back after `close` and a new open of the same data, and the cap still holds.
pub async fn survives_close_and_reopen(backend: &dyn StoreBackend) {
    let params = SuiteParams {
        max_spans_per_trace: 5,
        ..SuiteParams::default()
    };
    let store = backend.open(params).await;
    let now = now_unix_nano();
    let checkout = checkout_trace(trace_id(1201), "order-1201", now, true);
    let big = wide_trace(trace_id(1202), 8, now);
    let report = store
        .write_spans(
            checkout
                .iter()
                .chain(&big)
                .cloned()
                .collect::<Vec<_>>()
                .into(),
        )
        .await
        .expect("write before close");
    assert_eq!(
        report.rejected,
        too_large(checkout.len() + 5..checkout.len() + 8)
    );
    store.close().await.expect("close");
    drop(store);

    let store = backend.reopen(params).await;
    assert_spans(&fetch(&store, trace_id(1201)).await, &checkout);
    let got = fetch(&store, trace_id(1202)).await;
    assert!(got.truncated, "the truncated flag is durable");
    assert_spans(&got, &big[..5]);
    // the counts are durable too: a replay is fine, a new span is still refused
    let report = store
        .write_spans(vec![big[0].clone(), big[6].clone()].into())
        .await
        .expect("write after reopen");
    assert_eq!(report.rejected, too_large([1]));
    store.close().await.expect("close after reopen");
}

/// Readiness: an open store says it can serve, before and after it holds data.
pub async fn ready_when_open(backend: &dyn StoreBackend) {
    let store = backend.open(SuiteParams::default()).await;
    store
        .ready()
        .await
        .expect("a freshly opened store is ready");
    let t = checkout_trace(trace_id(1301), "order-1301", now_unix_nano(), false);
    write_ok(&store, t.clone()).await;
    store.ready().await.expect("a store holding data is ready");
    assert_spans(&fetch(&store, trace_id(1301)).await, &t);
}

/// State blobs (`put_state` / `get_state`): replaced whole, unknown names are `None`,
/// durable across close and reopen, and never seen by trace reads.
pub async fn state_blobs_are_kept_apart_and_durable(backend: &dyn StoreBackend) {
    let store = backend.open(SuiteParams::default()).await;
    // a fresh name per run: a remote backend's table may outlive the run
    let name = format!("conformance-{}", now_unix_nano());
    assert_eq!(store.get_state(&name).await.expect("get unknown"), None);
    store
        .put_state(&name, b"first".to_vec())
        .await
        .expect("put state");
    let big: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    store
        .put_state(&name, big.clone())
        .await
        .expect("replace state");
    assert_eq!(
        store.get_state(&name).await.expect("get"),
        Some(big.clone())
    );
    let other = format!("{name}-other");
    assert_eq!(store.get_state(&other).await.expect("get other"), None);
    let t = checkout_trace(trace_id(1401), "order-1401", now_unix_nano(), false);
    write_ok(&store, t.clone()).await;
    assert_spans(&fetch(&store, trace_id(1401)).await, &t);
    store.close().await.expect("close");
    drop(store);

    let store = backend.reopen(SuiteParams::default()).await;
    assert_eq!(
        store.get_state(&name).await.expect("get after reopen"),
        Some(big)
    );
    assert_spans(&fetch(&store, trace_id(1401)).await, &t);
    store.close().await.expect("close after reopen");
}

/// A trace id is a trace *of a tenant* (`docs/adr/0011-tenants.md`): the same id written by
/// three tenants is three rows; each tenant reads only its own, with its spans carrying it;
/// an id that exists only in another tenant is unknown; caps count per tenant; and the
/// default tenant's rows are those of a store without tenants.
pub async fn tenants_are_isolated(backend: &dyn StoreBackend) {
    let store = backend
        .open(SuiteParams {
            max_spans_per_trace: 6,
            ..SuiteParams::default()
        })
        .await;
    let now = now_unix_nano();
    let (shared, only_shop) = (trace_id(1501), trace_id(1502));
    let default = Tenant::default();
    let shop = Tenant::parse("shop").unwrap();
    let bank = Tenant::parse("bank").unwrap();
    let plain = checkout_trace(shared, "order-d", now, false);
    let shops = in_tenant(checkout_trace(shared, "order-s", now, true), "shop");
    let banks = in_tenant(wide_trace(shared, 6, now), "bank");
    let shop_only = in_tenant(checkout_trace(only_shop, "order-s2", now, false), "shop");
    // one batch with every tenant mixed, as the batcher makes them
    let batch: Vec<Span> = plain
        .iter()
        .chain(&shops)
        .chain(&banks)
        .chain(&shop_only)
        .cloned()
        .collect();
    write_ok(&store, batch).await;

    let got = |t: &Tenant, id| {
        let store = store.clone();
        let t = t.clone();
        async move { store.get_trace(&t, id).await.expect("get_trace") }
    };
    let d = got(&default, shared).await.expect("default's trace");
    assert_spans(&d, &plain);
    let s = got(&shop, shared).await.expect("shop's trace");
    assert_spans(&s, &shops);
    assert!(s.spans.iter().all(|sp| sp.tenant == shop));
    let b = got(&bank, shared).await.expect("bank's trace");
    assert_spans(&b, &banks);
    assert!(
        !b.truncated,
        "6 spans of bank fit its cap of 6; the other tenants' do not count"
    );

    assert_eq!(
        got(&default, only_shop).await,
        None,
        "shop's trace asked by default"
    );
    assert_eq!(
        got(&bank, only_shop).await,
        None,
        "shop's trace asked by bank"
    );
    assert_eq!(
        store
            .get_traces(&bank, &[only_shop, shared])
            .await
            .unwrap()
            .iter()
            .map(|t| t.trace_id)
            .collect::<Vec<_>>(),
        vec![shared]
    );
    let page = store.get_traces(&shop, &[only_shop, shared]).await.unwrap();
    assert_eq!(page.len(), 2);
    assert_spans(&page[0], &shop_only);

    // rewriting shop's spans leaves the others' rows alone; the cap is per tenant's row
    write_ok(&store, shops.clone()).await;
    let extra = in_tenant(
        (100..103)
            .map(|i| span(shared, span_id(i), None, "late", "late", now, 1))
            .collect(),
        "bank",
    );
    let report = store.write_spans(extra.into()).await.unwrap();
    assert_eq!(report.rejected.len(), 3, "bank's row is full at 6");
    assert!(got(&bank, shared).await.unwrap().truncated);
    assert!(!got(&default, shared).await.unwrap().truncated);
    assert!(!got(&shop, shared).await.unwrap().truncated);
    assert_spans(&got(&default, shared).await.unwrap(), &plain);
}
