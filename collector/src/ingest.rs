//! The front half of the ingest path, written once: every receiver — OTLP gRPC and HTTP
//! ([`crate::receiver`]), the Kafka receiver ([`crate::receiver::kafka`]) and the agent's
//! receivers — hands its input to [`Front::ingest`], which runs the stages below in order
//! and hands the spans to the [`SpanSink`] at the end.
//!
//! ```text
//!  receiver ─▶ decode ─▶ validate + convert ─▶ count rejections ─▶ redact ─▶ enrich ─▶ span metrics ─▶ SpanSink::submit ─▶ span metrics
//!              by source  clew_proto::from_otlp  metrics.rs          redaction/ enrich.rs    observe          pipeline::Ingest   record what the
//!              (closure)  (protobuf, avro: while                                (not in the agent)            agent::AgentSink   sink stored
//!                          decoding)
//!             └───────────────── Front::prepare: CPU work, on the blocking pool for large inputs ──────┘
//! ```
//!
//! Only decoding differs by source, so a receiver passes a decode closure returning
//! [`Decoded`]: an OTLP request, or spans its decoder already validated (OTLP protobuf,
//! Avro batches).
//! Redaction ([`crate::redaction`]) runs right after validation, before enrichment and
//! before any sink: business keys, span metrics, alerts, the store, the index, its WAL and
//! the agent's Kafka records only ever see redacted spans.
//!
//! Span metrics ([`crate::span_metrics`]), error-signature alerts ([`crate::alerting`]) and
//! the fleet inventory ([`crate::inventory`]) take two steps around the sink: stage 6 notes each span's series and picks the error
//! spans while the spans are at hand, and once the sink answered `Ok` the spans it stored
//! (all but its rejections) are counted — so a span is counted when it is durable,
//! whichever receiver it came through, a refused input counts nothing, and every example
//! trace of an alert opens.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use clew_proto::from_otlp::{convert_request, Converted, Limits};
use clew_proto::model::repair;
use clew_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use clew_proto::{RejectReason, Span, Tenant};
use tokio::sync::Semaphore;
use tracing::debug;

use crate::alerting::{Alerting, Picked};
use crate::enrich::Enricher;
use crate::error::Error;
use crate::inventory::{Inventory, Noted, Origin};
use crate::metrics::{self, Protocol};
use crate::rate_limit::RateLimits;
use crate::redaction::Redactor;
use crate::sink::SpanSink;
use crate::span_metrics::{Observed, SpanMetrics};

/// What a source's decode step produced.
pub(crate) enum Decoded {
    /// An OTLP export request (OTLP/JSON bodies and Kafka `otlp_json` records, Zipkin
    /// spans translated); the next stage validates and converts it.
    Otlp(ExportTraceServiceRequest),
    /// Spans that their decoder validated against the same limits while decoding: OTLP
    /// protobuf ([`clew_proto::from_otlp::decode_request`]: gRPC, HTTP, Kafka
    /// `otlp_proto`) and Kafka `avro` records ([`clew_proto::avro::decode_batch`]).
    Validated(Converted),
}

/// Rejected spans per reason: the conversion's and the sink's.
pub(crate) type Rejections = BTreeMap<RejectReason, u64>;

/// Where the decode-to-enrich stages run.
pub(crate) enum Offload<'a> {
    /// On the calling task (small inputs).
    Inline,
    /// On the blocking pool.
    Blocking,
    /// On the blocking pool once one of these slots is free (a burst of large records
    /// takes at most that many threads).
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    BlockingIn(&'a Semaphore),
}

/// How one input is taken in.
pub(crate) struct Input<'a> {
    /// Label of `clew_collector_spans_received_total{protocol}`.
    pub protocol: Protocol,
    pub offload: Offload<'a>,
    /// Whether the input's spans are counted as received and rejected: `false` when a
    /// source takes in again an input it counted before (a Kafka record retried).
    pub count: bool,
    /// Its Kafka topic and shipping agent, for the fleet inventory.
    pub origin: Origin,
    /// Whose spans these are: the authenticated caller's tenant (`default` without auth),
    /// or the tenant a Kafka record's header names. Stamped on every span after
    /// validation; never taken from span data.
    pub tenant: Tenant,
}

/// A decode task that panicked; each source turns it into its own decode error.
pub(crate) struct DecoderFailed(String);

impl std::fmt::Display for DecoderFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "decoder task failed: {}", self.0)
    }
}

impl From<DecoderFailed> for Error {
    fn from(e: DecoderFailed) -> Self {
        Error::decode("request", e)
    }
}

/// Why an input was not acknowledged.
#[derive(Debug)]
pub(crate) enum Refused<E> {
    /// The input could not be decoded (the source's own error type: an OTLP error answer,
    /// a poison Kafka record).
    Decode(E),
    /// The sink did not take the spans; nothing of them is acknowledged.
    Sink(Error),
}

impl Refused<Error> {
    pub fn into_error(self) -> Error {
        match self {
            Refused::Decode(e) | Refused::Sink(e) => e,
        }
    }
}

/// A converted input on its way to the sink.
pub(crate) struct Prepared {
    pub converted: Converted,
    /// `converted.rejected` counted per reason.
    pub rejections: Rejections,
    /// What stage 6 noted, counted once the sink stored the spans.
    pub observed: Option<Observed>,
    /// The error spans the alert rules count once the sink has stored them.
    pub alert_errors: Option<Picked>,
    /// The resources the fleet inventory counts once the sink has stored their spans.
    pub inventory: Option<Noted>,
    /// Whose spans these are.
    pub tenant: Tenant,
}

/// The settings of the front-half stages and the sink they end in.
pub(crate) struct Front {
    pub limits: Limits,
    /// Stage 4; `None` where `[redaction] enabled = false`.
    pub redactor: Option<Arc<Redactor>>,
    /// `None` where a later hop enriches (the agent: the collector behind Kafka applies
    /// its own configured keys).
    pub enricher: Option<Enricher>,
    pub sink: Arc<dyn SpanSink>,
    /// `None` where span metrics are off, and in the agent (the collector behind Kafka
    /// counts the spans it stores).
    pub span_metrics: Option<Arc<SpanMetrics>>,
    /// Error-signature alerts (`[alerting]`); `None` when no rule is configured and in the
    /// agent.
    pub alerting: Option<Arc<Alerting>>,
    /// The fleet inventory (`[inventory]`); `None` when off and in the agent.
    pub inventory: Option<Arc<Inventory>>,
    /// Per-tenant rate limits (`[[collector.tenants]]`); `None`: no tenant is limited.
    pub rate_limits: Option<Arc<RateLimits>>,
}

impl Front {
    /// The same stages in front of another sink.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub fn with_sink(&self, sink: Arc<dyn SpanSink>) -> Front {
        Front {
            limits: self.limits.clone(),
            redactor: self.redactor.clone(),
            enricher: self.enricher.clone(),
            sink,
            span_metrics: self.span_metrics.clone(),
            alerting: self.alerting.clone(),
            inventory: self.inventory.clone(),
            rate_limits: self.rate_limits.clone(),
        }
    }

    /// Takes one input in: [`Front::prepare`] (decode → … → span metrics) where `input`
    /// says, then [`SpanSink::submit`]. `Ok` carries every rejected span per reason; all
    /// other spans are durable at the sink.
    pub async fn ingest<D, E>(
        self: &Arc<Self>,
        input: Input<'_>,
        decode: D,
    ) -> Result<Rejections, Refused<E>>
    where
        D: FnOnce(&Limits, u64) -> Result<Decoded, E> + Send + 'static,
        E: From<DecoderFailed> + Send + 'static,
    {
        let Input {
            protocol,
            offload,
            count,
            origin,
            tenant,
        } = input;
        let prepared = self
            .off_the_reactor(offload, move |front| {
                front.prepare(protocol, count, &tenant, decode)
            })
            .await
            .map_err(Refused::Decode)?;
        // the tenant's rate limit, once the request's spans are counted: the whole request
        // passes or none of it (crate::rate_limit)
        if let Some(limits) = &self.rate_limits {
            let spans = prepared.converted.spans.len();
            limits
                .take(&prepared.tenant, spans)
                .map_err(Refused::Sink)?;
        }
        let mut rejections = prepared.rejections;
        // 7. hand to the sink. Store rejections are counted and logged by the store writer
        //    (or the sink).
        let stored = self
            .sink
            .submit(prepared.converted.spans)
            .await
            .map_err(Refused::Sink)?;
        // 6, second half: count the spans the sink stored.
        if let (Some(metrics), Some(observed)) = (&self.span_metrics, prepared.observed) {
            metrics.record(observed, &stored);
        }
        // 8. alerts count the error spans the store kept (see crate::alerting)
        if let (Some(alerting), Some(errors)) = (&self.alerting, prepared.alert_errors) {
            alerting.observe(errors, &stored);
        }
        // 9. the fleet inventory counts the stored spans of each resource
        if let (Some(inventory), Some(noted)) = (&self.inventory, prepared.inventory) {
            inventory.record(noted, &stored, protocol, &origin);
        }
        for (_, reason) in stored {
            *rejections.entry(reason).or_default() += 1;
        }
        Ok(rejections)
    }

    /// The CPU-bound stages, in flow order (7, the sink, follows in [`Front::ingest`]).
    pub fn prepare<D, E>(
        &self,
        protocol: Protocol,
        count: bool,
        tenant: &Tenant,
        decode: D,
    ) -> Result<Prepared, E>
    where
        D: FnOnce(&Limits, u64) -> Result<Decoded, E>,
    {
        let now = now_unix_nano();
        // 1. decode, by source
        let decoded = decode(&self.limits, now)?;
        // 2. validate + convert
        let mut converted = convert(decoded, &self.limits, now);
        //    ... and whose they are (the conversion leaves every span in `default`)
        if !tenant.is_default() {
            for span in &mut converted.spans {
                span.tenant = tenant.clone();
            }
        }
        // 3. count rejections
        let rejections = count_rejections(protocol, count, &converted);
        // 4. redact: after validation, before enrich and before anything is written, so no
        //    later stage and no sink sees an unredacted value.
        if let Some(redactor) = &self.redactor {
            redactor.redact_all(&mut converted.spans);
        }
        // 5. enrich
        self.enrich(&mut converted.spans);
        // 6. span metrics: note each span's series now (after enrich, while the spans are
        //    here); error signatures for the alert rules. Front::ingest counts the spans the
        //    sink stored.
        //    Each keeps the input's tenant with what it noted: series, alerts and
        //    instances are per tenant (`docs/adr/0011-tenants.md`).
        let observed = (self.span_metrics.as_ref()).map(|m| m.observe(tenant, &converted.spans));
        let alert_errors = (self.alerting.as_ref()).map(|a| a.pick(tenant, &converted.spans));
        let inventory = (self.inventory.as_ref()).map(|i| i.note(tenant, &converted.spans));
        Ok(Prepared {
            converted,
            rejections,
            observed,
            alert_errors,
            inventory,
            tenant: tenant.clone(),
        })
    }

    fn enrich(&self, spans: &mut [Span]) {
        if let Some(enricher) = &self.enricher {
            enricher.enrich_all(spans);
        }
    }

    async fn off_the_reactor<T, E>(
        self: &Arc<Self>,
        offload: Offload<'_>,
        work: impl FnOnce(&Front) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DecoderFailed> + Send + 'static,
    {
        let slot = match offload {
            Offload::Inline => return work(self),
            Offload::Blocking => None,
            Offload::BlockingIn(slots) => Some(slots.acquire().await.expect("never closed")),
        };
        let front = self.clone();
        let done = tokio::task::spawn_blocking(move || work(&front)).await;
        drop(slot);
        done.unwrap_or_else(|e| Err(E::from(DecoderFailed(e.to_string()))))
    }
}

/// Validate + convert: OTLP requests through [`convert_request`]; validated batches pass.
fn convert(decoded: Decoded, limits: &Limits, now_unix_nano: u64) -> Converted {
    match decoded {
        Decoded::Otlp(request) => convert_request(request, limits, now_unix_nano),
        Decoded::Validated(converted) => converted,
    }
}

/// Counts the input's spans and its conversion rejections (when `count`), and groups the
/// rejections by reason for the answer.
fn count_rejections(protocol: Protocol, count: bool, converted: &Converted) -> Rejections {
    let mut reasons = Rejections::new();
    for r in &converted.rejected {
        if count {
            debug!(protocol = protocol.as_str(), reason = %r.reason, service = %r.service_name, span = %r.span_name, "span rejected");
        }
        *reasons.entry(r.reason).or_default() += 1;
    }
    if count {
        metrics::spans_received(protocol, converted.total());
        for (reason, n) in &reasons {
            metrics::span_rejected(*reason, *n);
        }
        count_repairs(protocol, &converted.spans);
    }
    reasons
}

/// Counts the kept spans that were repaired, per repair (a span may count under several).
fn count_repairs(protocol: Protocol, spans: &[Span]) {
    let mut per_flag = [0u64; repair::NAMES.len()];
    for s in spans.iter().filter(|s| s.repairs != 0) {
        for (i, (flag, _)) in repair::NAMES.iter().enumerate() {
            per_flag[i] += u64::from(s.repairs & flag != 0);
        }
    }
    for ((_, name), n) in repair::NAMES.iter().zip(per_flag) {
        if n > 0 {
            metrics::spans_repaired(protocol, name, n);
        }
    }
}

pub(crate) fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
