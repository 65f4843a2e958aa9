//! Receivers. Each OTLP protocol file only deals with its transport; the shared path
//! from a decoded request to an OTLP answer is [`export`]. [`kafka`] consumes span records
//! from Kafka and shares the decoders, conversion, enrichment and [`Ingest`].

pub mod kafka;
pub mod otlp_grpc;
pub mod otlp_http;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clew_proto::from_otlp::{convert_request, Converted, Limits};
use clew_proto::otlp::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use clew_proto::RejectReason;
use tracing::debug;

use crate::config::CollectorConfig;
use crate::enrich::Enricher;
use crate::error::{Error, Result};
use crate::metrics::{self, Protocol};
use crate::pipeline::Ingest;
use crate::sink::SpanSink;

/// Requests with more spans than this are converted on the blocking pool.
const INLINE_MAX_SPANS: usize = 64;

/// What both receivers need.
pub(crate) struct Shared {
    /// Where validated spans go (the ingest pipeline, or the agent's Kafka producer).
    pub sink: Arc<dyn SpanSink>,
    /// Business-key lookup; `None` where a later hop enriches (the agent: the collector
    /// behind Kafka applies its own configured keys).
    pub enricher: Option<Enricher>,
    pub limits: Limits,
    pub max_request_bytes: usize,
    pub retry_after: Duration,
}

impl Shared {
    pub fn new(config: &CollectorConfig, ingest: Ingest) -> Arc<Self> {
        Arc::new(Shared {
            sink: Arc::new(ingest),
            enricher: Some(Enricher::new(&config.business_keys)),
            limits: config.span_limits(),
            max_request_bytes: config.max_request_bytes,
            retry_after: Duration::from_secs(config.retry_after_secs),
        })
    }
}

/// Runs `decode` (if any work is left to do), converts, enriches, submits and builds the
/// OTLP answer. Heavy work runs on the blocking pool when `heavy`.
pub(crate) async fn export<F>(
    shared: &Arc<Shared>,
    protocol: Protocol,
    heavy: bool,
    decode: F,
) -> Result<ExportTraceServiceResponse>
where
    F: FnOnce() -> Result<ExportTraceServiceRequest> + Send + 'static,
{
    let started = Instant::now();
    let result = export_inner(shared, protocol, heavy, decode).await;
    match &result {
        Ok(_) => metrics::acked(protocol, started.elapsed()),
        Err(e) => {
            metrics::request_failed(protocol, e.reason());
            debug!(protocol = protocol.as_str(), reason = e.reason(), error = %e, "otlp request refused");
        }
    }
    result
}

async fn export_inner<F>(
    shared: &Arc<Shared>,
    protocol: Protocol,
    heavy: bool,
    decode: F,
) -> Result<ExportTraceServiceResponse>
where
    F: FnOnce() -> Result<ExportTraceServiceRequest> + Send + 'static,
{
    let converted = if heavy {
        let s = shared.clone();
        tokio::task::spawn_blocking(move || prepare(&s, decode))
            .await
            .map_err(|e| Error::decode("request", format!("decoder task failed: {e}")))??
    } else {
        prepare(shared, decode)?
    };
    metrics::spans_received(protocol, converted.total());

    let mut reasons: BTreeMap<RejectReason, u64> = BTreeMap::new();
    for r in &converted.rejected {
        debug!(reason = %r.reason, service = %r.service_name, span = %r.span_name, "span rejected");
        *reasons.entry(r.reason).or_default() += 1;
    }
    for (reason, n) in &reasons {
        metrics::span_rejected(*reason, *n);
    }
    // Store rejections are counted and logged by the store writer (or the sink).
    for (_, reason) in shared.sink.submit(converted.spans).await? {
        *reasons.entry(reason).or_default() += 1;
    }
    Ok(response(&reasons))
}

fn prepare<F>(shared: &Shared, decode: F) -> Result<Converted>
where
    F: FnOnce() -> Result<ExportTraceServiceRequest>,
{
    let request = decode()?;
    let mut converted = convert_request(request, &shared.limits, now_unix_nano());
    if let Some(enricher) = &shared.enricher {
        enricher.enrich_all(&mut converted.spans);
    }
    Ok(converted)
}

/// Counts spans of a decoded request without converting it.
pub(crate) fn span_count(req: &ExportTraceServiceRequest) -> usize {
    req.resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum()
}

pub(crate) fn is_heavy_request(req: &ExportTraceServiceRequest) -> bool {
    span_count(req) > INLINE_MAX_SPANS
}

/// OTLP answer: plain success, or partial success naming every reason with its count.
fn response(reasons: &BTreeMap<RejectReason, u64>) -> ExportTraceServiceResponse {
    let rejected: u64 = reasons.values().sum();
    if rejected == 0 {
        return ExportTraceServiceResponse {
            partial_success: None,
        };
    }
    let details: Vec<String> = reasons
        .iter()
        .map(|(r, n)| format!("{n} {} ({})", r.as_str(), r.explain()))
        .collect();
    ExportTraceServiceResponse {
        partial_success: Some(ExportTracePartialSuccess {
            rejected_spans: rejected as i64,
            error_message: format!(
                "{rejected} of the spans were rejected: {}",
                details.join("; ")
            ),
        }),
    }
}

fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_success_names_reasons() {
        let mut m = BTreeMap::new();
        assert_eq!(response(&m).partial_success, None);
        m.insert(RejectReason::InvalidTraceId, 2);
        m.insert(RejectReason::TraceTooLarge, 1);
        let p = response(&m).partial_success.unwrap();
        assert_eq!(p.rejected_spans, 3);
        assert!(
            p.error_message
                .contains("2 invalid_trace_id (trace id is not 16 bytes"),
            "{}",
            p.error_message
        );
        assert!(
            p.error_message.contains("1 trace_too_large"),
            "{}",
            p.error_message
        );
    }
}
