//! The trace-index conformance suite: every [`TraceIndex`] backend runs all of [`cases`].
//!
//! A backend's test implements [`IndexBackend`] (open a fresh, empty index; open the
//! same data again after a close; what it legitimately cannot do, as [`Capabilities`]) and
//! calls [`run_all`]. There is no other entry point: a new case reaches every backend.
//! The indexes it opens must configure:
//! - `Common::indexed_attributes = `[`INDEXED_ATTRIBUTES`] (every attribute, the default);
//! - `Common::retention = `[`retention_classes`]`(`[`RETENTION_DAYS`]`)` (see
//!   [`lifecycle::retention_drop`] and [`tenants::retention_classes_drop_apart`]).
//!
//! Cases only use the trait, call `refresh()` before asserting searches (except
//! [`lifecycle::searchable_within_two_seconds`], which tests the freshness contract), and
//! use fixed times around [`BASE_TIME`] so that no case depends on the wall clock.
//!
//! The cases, by topic:
//! - [`conditions`]: each kind of condition, conditions on different spans, and
//!   same-span conditions (all on one span);
//! - [`text`]: free text as data, never query syntax;
//! - [`paging`]: order, cursors, limits (page size and the condition cap);
//! - [`lifecycle`]: idempotency, names, retention, freshness, reopen, readiness;
//! - [`tenants`]: isolation of tenants in searches, cursors and listings.

pub mod conditions;
pub mod lifecycle;
pub mod paging;
pub mod tenants;
pub mod text;

use clew_proto::Tenant;
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use clew_proto::{Span, TraceId};

#[allow(unused_imports)] // each topic takes what it needs through `use super::*`
use super::fixtures::{
    checkout_trace, span, span_id, trace_id, with_exception, with_key, BASE_TIME,
};
#[allow(unused_imports)]
use crate::trace_index::{DEFAULT_LIMIT, MAX_LIMIT};
#[allow(unused_imports)]
use crate::{Error, TraceIdPage, TraceIndex, TraceQuery};

pub use super::retention_classes;

const MS: u64 = 1_000_000;
const MINUTE: u64 = 60_000 * MS;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// Retention the indexes must be opened with.
pub const RETENTION_DAYS: u32 = 7;
/// `indexed_attributes` the indexes must be opened with: every attribute.
pub const INDEXED_ATTRIBUTES: &[&str] = &[crate::trace_index::span_doc::ALL_ATTRIBUTES];

/// What a backend legitimately cannot do; every case still runs and asserts what the
/// backend does instead. Every index today can do everything, so this is empty; a
/// backend that cannot (say, one without partition drops) adds a flag here and the cases
/// that depend on it branch on it, never by leaving a case out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {}

/// A trace-index backend under test.
#[async_trait]
pub trait IndexBackend: Send + Sync {
    /// What this backend cannot do.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// A fresh, empty index.
    async fn open(&self) -> Arc<dyn TraceIndex>;

    /// The data of the index most recently returned by [`IndexBackend::open`] (closed by
    /// the caller), opened again as a new index object: the restart of a process.
    async fn reopen(&self) -> Arc<dyn TraceIndex>;
}

/// A case's future.
pub type CaseFuture<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

/// One conformance case.
pub struct Case {
    pub name: &'static str,
    pub run: for<'a> fn(&'a dyn IndexBackend) -> CaseFuture<'a>,
}

/// Cases that need only a fresh index.
macro_rules! on_fresh_index {
    ($($module:ident :: $name:ident),* $(,)?) => {
        [$(Case {
            name: stringify!($name),
            run: |backend| Box::pin(async move { $module::$name(backend.open().await).await }),
        }),*]
    };
}

/// Cases that drive the backend itself (reopen, capabilities).
macro_rules! on_backend {
    ($($module:ident :: $name:ident),* $(,)?) => {
        [$(Case {
            name: stringify!($name),
            run: |backend| Box::pin($module::$name(backend)),
        }),*]
    };
}

/// Every case, in the order [`run_all`] runs them.
pub fn cases() -> Vec<Case> {
    let mut all = Vec::new();
    all.extend(on_fresh_index![
        conditions::find_by_business_key,
        conditions::find_by_service,
        conditions::find_by_service_and_operation,
        conditions::errors_only,
        conditions::key_and_error_on_different_spans,
        conditions::conditions_on_different_traces_do_not_match,
        conditions::duration_range,
        conditions::time_range,
        conditions::attribute_terms,
        conditions::any_attribute_is_searchable,
        conditions::same_span_conditions,
        conditions::same_span_paging,
        text::free_text,
        text::query_syntax_in_text_is_harmless,
        paging::newest_first_and_paging,
        paging::malformed_cursor_is_invalid_request,
        paging::limit_clamping,
        paging::condition_limit,
        lifecycle::idempotent_indexing,
        lifecycle::services_and_operations,
        lifecycle::retention_drop,
        lifecycle::searchable_within_two_seconds,
        lifecycle::ready_when_open,
        tenants::tenants_are_isolated,
        tenants::retention_classes_drop_apart,
    ]);
    all.extend(on_backend![lifecycle::survives_close_and_reopen]);
    all
}

/// Runs every case, each on its own fresh index.
pub async fn run_all(backend: &dyn IndexBackend) {
    for case in cases() {
        eprintln!("trace index conformance: {}", case.name);
        (case.run)(backend).await;
    }
}

async fn index(idx: &Arc<dyn TraceIndex>, spans: Vec<Span>) {
    idx.index_spans(spans.into()).await.expect("index_spans");
}

async fn find(idx: &Arc<dyn TraceIndex>, q: TraceQuery) -> TraceIdPage {
    idx.find_trace_ids(&Tenant::default(), &q)
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
