//! Phase two: fetch whole traces from the [`SpanStore`] by id (one row read each).

use std::time::Duration;

use clew_proto::{Tenant, TraceId};
use clew_store::{SpanStore, StoredTrace};
use tracing::Instrument;

use crate::error::{Error, Result};

/// Fetches one trace of `tenant`; an unknown id (or one of another tenant) is a
/// [`Error::NotFound`].
pub async fn fetch_trace(
    store: &dyn SpanStore,
    tenant: &Tenant,
    trace_id: TraceId,
    timeout: Duration,
) -> Result<StoredTrace> {
    let doing = || format!("failed to fetch trace {trace_id} from the span store");
    let span = tracing::debug_span!("fetch_trace", %trace_id);
    tokio::time::timeout(timeout, store.get_trace(tenant, trace_id))
        .instrument(span)
        .await
        .map_err(|_| Error::Timeout {
            doing: doing(),
            after: timeout,
        })?
        .map_err(|e| Error::backend(doing(), e))?
        .ok_or_else(|| Error::NotFound(format!("trace {trace_id} not found")))
}

/// Fetches a page of traces in the order of `trace_ids`. Ids the store does not know (the
/// index can be ahead of a store that expired the row) are skipped.
pub async fn fetch_traces(
    store: &dyn SpanStore,
    tenant: &Tenant,
    trace_ids: &[TraceId],
    timeout: Duration,
) -> Result<Vec<StoredTrace>> {
    if trace_ids.is_empty() {
        return Ok(Vec::new());
    }
    let doing = "failed to fetch traces from the span store";
    let span = tracing::debug_span!(
        "fetch_traces",
        asked = trace_ids.len(),
        found = tracing::field::Empty
    );
    let traces = tokio::time::timeout(timeout, store.get_traces(tenant, trace_ids))
        .instrument(span.clone())
        .await
        .map_err(|_| Error::Timeout {
            doing: doing.into(),
            after: timeout,
        })?
        .map_err(|e| Error::backend(doing, e))?;
    span.record("found", traces.len());
    Ok(traces)
}
