//! Where the ingest front half hands validated spans: the seam between the receivers and
//! what happens next.
//!
//! ```text
//!  ingest::Front::ingest ─▶ decode … enrich … ─▶ SpanSink::submit
//!                                                           ├─ pipeline::Ingest  (clew serve: store + index)
//!                                                           └─ agent::AgentSink  (clew agent: Avro to Kafka, or the spool)
//! ```
//!
//! The Kafka receiver puts its own `InFlightSpans` limit in front of `pipeline::Ingest`.
//! The OTLP receivers answer the client from what `submit` returns, so both sinks share the
//! same status codes, partial-success messages and retry hints (`error.rs`).

use async_trait::async_trait;
use clew_proto::Span;

use crate::batcher::StoreRejections;
use crate::error::Result;
use crate::pipeline::Ingest;

/// A destination for validated spans.
///
/// Contract: `Ok(rejections)` means every span of `spans` not named in `rejections`
/// (indexes into `spans`, with a reason) is durable at the destination — the client may
/// forget it. An `Err` means nothing of the call is acknowledged; retryable errors
/// ([`crate::Error::is_retryable`]) tell the client to send the same request again, and a
/// resend must be harmless (every destination is idempotent by trace id + span id
/// downstream).
#[async_trait]
pub trait SpanSink: Send + Sync + 'static {
    async fn submit(&self, spans: Vec<Span>) -> Result<StoreRejections>;
}

#[async_trait]
impl SpanSink for Ingest {
    async fn submit(&self, spans: Vec<Span>) -> Result<StoreRejections> {
        Ingest::submit(self, spans).await
    }
}
