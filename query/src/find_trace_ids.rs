//! Phase one of every search: ask the [`TraceIndex`] for trace ids, newest first.

use std::time::Duration;

use clew_proto::Tenant;
use clew_store::trace_index::{TraceIdPage, MAX_LIMIT};
use clew_store::{TraceIndex, TraceQuery};
use tracing::Instrument;

use crate::error::{Error, Result};

/// Finds one page of trace ids matching `query` (its limit clamped to `1..=MAX_LIMIT`).
/// Gives up after `timeout`, so that a pathological query fails fast with a 503.
pub async fn find_trace_ids(
    index: &dyn TraceIndex,
    tenant: &Tenant,
    query: &TraceQuery,
    timeout: Duration,
) -> Result<TraceIdPage> {
    let mut query = query.clone();
    query.limit = query.limit.clamp(1, MAX_LIMIT);
    let span = tracing::debug_span!(
        "find_trace_ids",
        limit = query.limit,
        hits = tracing::field::Empty
    );
    let doing = "failed to search the trace index";
    let page = tokio::time::timeout(timeout, index.find_trace_ids(tenant, &query))
        .instrument(span.clone())
        .await
        .map_err(|_| Error::Timeout {
            doing: doing.into(),
            after: timeout,
        })?
        .map_err(|e| Error::backend(doing, e))?;
    span.record("hits", page.hits.len());
    Ok(page)
}
