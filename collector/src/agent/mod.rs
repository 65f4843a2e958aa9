//! `clew agent`: runs next to applications, takes OTLP on localhost and ships the spans as
//! Avro records to Kafka, spooling them to disk while Kafka is unreachable.
//!
//! ```text
//!  OTLP gRPC ─▶ receiver/otlp_grpc ─┐
//!                                   ├─▶ ingest::Front::ingest ─▶ AgentSink::submit
//!  OTLP HTTP ─▶ receiver/otlp_http ─┘   (decode, validate + convert, count: the collector's
//!                                        code, limits and answers; no enrich: the collector
//!                                        behind Kafka adds the business keys)
//!
//!  AgentSink::submit ─▶ head sampling (per service, per trace id; errors always kept):
//!                       sampler (rates file) or sampling::head (Jaeger strategies file)
//!                    ─▶ group by trace id ─▶ Avro single-object records ≤ message_max_bytes
//!                       (key = trace id: a trace stays in one partition; header
//!                       `clew-tenant` = the caller's tenant unless it is `default`)
//!                    ─▶ producer::Shipper::ship ─▶ Kafka (acks=all, idempotent) or spool (fsync)
//!                    ─▶ answer: OK (+ partial success) / UNAVAILABLE + retry hint when the spool is full
//!
//!  background: Shipper::replay (spool ─▶ Kafka, in order), Sampler::watch (rates file) or
//!              StrategyStore::watch (strategies file), /metrics + /healthz on metrics_addr,
//!              GET /api/sampling on sampling_http_addr (optional, for local SDKs)
//! ```
//!
//! - [`config`]: [`AgentConfig`], the agent's own TOML file.
//! - [`sampler`]: head sampling and the reloadable rates file.
//! - [`producer`]: the Kafka producer and the switch to and from the spool.
//! - [`spool`]: the bounded, crash-safe disk FIFO.
//! - [`metrics`]: what the agent counts.
//!
//! An OTLP request is acknowledged only once Kafka acknowledged each of its records (acks=all)
//! or the records are fsynced to the spool. Shutdown stops the listeners, lets in-flight
//! requests finish (delivered or spooled), flushes the producer and leaves whatever is
//! still undelivered in the spool for the next start.

pub mod config;
pub mod metrics;
pub mod producer;
pub mod sampler;
pub mod spool;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::routing::get;
use axum::Router;
use clew_proto::{RejectReason, Span, Tenant, TraceId};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub use config::AgentConfig;
use config::SpoolConfig;
use producer::Shipper;
use sampler::Sampler;
use spool::{Record, Recovery, Spool};

use crate::batcher::StoreRejections;
use crate::error::{Error, Result};
use crate::ingest::Front;
use crate::receiver::{bind, serve_http, spawn_otlp, stopped, Server, Shared};
use crate::sampling::head::HeadSampler;
use crate::sampling::StrategyStore;
use crate::sink::SpanSink;

/// Requests with more spans than this are encoded on the blocking pool.
const INLINE_MAX_SPANS: usize = 64;
/// How long shutdown waits for the replay task's current round and the producer flush.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Renders the Prometheus text for `/metrics` (the binary owns the recorder).
pub type RenderMetrics = Arc<dyn Fn() -> String + Send + Sync>;

/// A running agent.
pub struct Agent {
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    metrics_addr: SocketAddr,
    sampling_http_addr: Option<SocketAddr>,
    spool_dir: PathBuf,
    stop_otlp: watch::Sender<bool>,
    stop_background: watch::Sender<bool>,
    servers: Vec<Server>,
    background: Vec<JoinHandle<()>>,
    shipper: Arc<Shipper>,
    delivery_timeout: Duration,
}

/// The agent's three listeners, bound.
struct Listeners {
    grpc: (TcpListener, SocketAddr),
    http: (TcpListener, SocketAddr),
    metrics: (TcpListener, SocketAddr),
    sampling_http: Option<(TcpListener, SocketAddr)>,
}

/// The agent's head sampling: rates per service (its own TOML file) or the Jaeger
/// strategies file `clew serve` gives the SDKs.
pub enum HeadSampling {
    Rates(Arc<Sampler>),
    Strategies(Arc<HeadSampler>),
}

impl HeadSampling {
    /// The spans kept, each with its position in `spans`, in order.
    pub fn sample(&self, spans: Vec<Span>) -> Vec<(usize, Span)> {
        match self {
            HeadSampling::Rates(sampler) => {
                let rates = sampler.rates();
                spans
                    .into_iter()
                    .enumerate()
                    .filter(|(_, s)| rates.keeps_span(s))
                    .collect()
            }
            HeadSampling::Strategies(sampler) => sampler.sample(spans),
        }
    }
}

impl Agent {
    /// Validates `config`, opens the spool (replaying what an earlier run left), creates
    /// the producer, binds the listeners and serves.
    /// `auth` (built from `config.auth`, kept by the caller to re-read its tokens) decides
    /// who may call every listener.
    pub async fn start(
        config: AgentConfig,
        render: RenderMetrics,
        auth: Arc<clew_auth::Authenticator>,
    ) -> Result<Agent> {
        config.validate()?;
        crate::metrics::describe();
        metrics::describe();
        let redactor = crate::redaction::Redactor::from_config(&config.redaction, &[])?;
        if let Some(r) = &redactor {
            crate::metrics::describe_redactions(
                &r.rules().iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
            );
        }
        let listeners = bind_listeners(&config).await?;
        let (spool, recovery) = open_spool(&config.spool).await?;
        let spool_dir = config
            .spool
            .dir
            .canonicalize()
            .unwrap_or_else(|_| config.spool.dir.clone());
        let shipper = Shipper::new(&config.kafka, &config.spool, spool, &config.agent_name())?;
        let (stop_otlp, otlp_stop) = watch::channel(false);
        let (stop_background, background_stop) = watch::channel(false);
        let strategies = match (&config.sampling.strategies, &config.sampling_http_addr) {
            (None, None) => None,
            (file, _) => Some(Arc::new(
                StrategyStore::load(file.clone(), config.sampling.default_probability).map_err(
                    |message| Error::Config {
                        key: "sampling.strategies",
                        message,
                    },
                )?,
            )),
        };
        let (sampling, sampling_watch) = match (&config.sampling.strategies, &strategies) {
            (Some(_), Some(store)) => (
                HeadSampling::Strategies(Arc::new(HeadSampler::new(store.clone()))),
                tokio::spawn(
                    store
                        .clone()
                        .watch(crate::sampling::RELOAD_INTERVAL, background_stop.clone()),
                ),
            ),
            _ => {
                let sampler = Arc::new(Sampler::new(
                    config.sampling.rates(),
                    config.sampling.file.clone(),
                ));
                let watch = tokio::spawn(sampler.clone().watch(
                    Duration::from_millis(config.sampling.reload_interval_ms),
                    background_stop.clone(),
                ));
                (HeadSampling::Rates(sampler), watch)
            }
        };
        let shared = receivers_shared(&config, redactor, sampling, shipper.clone(), auth.clone());
        let Listeners {
            grpc: (grpc_listener, grpc_addr),
            http: (http_listener, http_addr),
            metrics: (metrics_listener, metrics_addr),
            sampling_http,
        } = listeners;
        let mut servers = spawn_otlp(grpc_listener, http_listener, shared, &otlp_stop);
        let metrics_server = tokio::spawn(serve_metrics(
            metrics_listener,
            render,
            auth.clone(),
            stopped(&background_stop),
        ));
        servers.push(("metrics", metrics_server));
        let sampling_http_addr = sampling_http.as_ref().map(|(_, a)| *a);
        if let (Some((listener, _)), Some(store)) = (sampling_http, strategies) {
            let server =
                crate::sampling::http::serve(listener, store, auth, stopped(&background_stop));
            servers.push(("sampling http", tokio::spawn(server)));
        }
        let replay = tokio::spawn(shipper.clone().replay(background_stop));
        info!(
            %grpc_addr, %http_addr, %metrics_addr, sampling_http_addr = ?sampling_http_addr,
            brokers = %config.kafka.brokers, topic = %config.kafka.topic,
            spool = %spool_dir.display(),
            spooled_records = recovery.records,
            "clew agent listening"
        );
        Ok(Agent {
            grpc_addr,
            http_addr,
            metrics_addr,
            sampling_http_addr,
            spool_dir,
            stop_otlp,
            stop_background,
            servers,
            background: vec![replay, sampling_watch],
            shipper,
            delivery_timeout: Duration::from_millis(config.kafka.delivery_timeout_ms),
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// Where Jaeger remote sampling is served to local SDKs, when configured.
    pub fn sampling_http_addr(&self) -> Option<SocketAddr> {
        self.sampling_http_addr
    }

    /// The spool directory (absolute when it could be resolved).
    pub fn spool_dir(&self) -> &std::path::Path {
        &self.spool_dir
    }

    /// Stops accepting, lets in-flight requests finish (each ends delivered or spooled),
    /// stops the replay task after its current round, flushes the producer. Undelivered
    /// records stay in the spool for the next start.
    pub async fn shutdown(self) -> Result<()> {
        let Agent {
            stop_otlp,
            stop_background,
            servers,
            background,
            shipper,
            delivery_timeout,
            ..
        } = self;
        let _ = stop_otlp.send(true);
        let mut first_error = None;
        let mut servers = servers.into_iter();
        for (what, task) in servers.by_ref().take(2) {
            first_error = first_error.or(server_result(what, task.await));
        }
        let _ = stop_background.send(true);
        for (what, task) in servers {
            first_error = first_error.or(server_result(what, task.await));
        }
        let wait = STOP_TIMEOUT.max(delivery_timeout * 2);
        for task in background {
            if tokio::time::timeout(wait, task).await.is_err() {
                warn!("agent background task did not stop in time");
            }
        }
        let s = shipper.clone();
        let _ = tokio::task::spawn_blocking(move || s.flush(wait)).await;
        let (records, bytes) = shipper.spool_pending();
        info!(
            spooled_records = records,
            spooled_bytes = bytes,
            "agent stopped; spooled records are replayed on the next start"
        );
        first_error.map_or(Ok(()), Err)
    }
}

fn server_result(
    what: &'static str,
    r: std::result::Result<Result<()>, tokio::task::JoinError>,
) -> Option<Error> {
    match r {
        Ok(Ok(())) => None,
        Ok(Err(e)) => {
            warn!(server = what, error = %e, "agent server failed");
            Some(e)
        }
        Err(e) => {
            warn!(server = what, error = %e, "agent server task failed");
            None
        }
    }
}

async fn bind_listeners(config: &AgentConfig) -> Result<Listeners> {
    Ok(Listeners {
        grpc: bind("bind otlp grpc listener", &config.otlp_grpc_addr).await?,
        http: bind("bind otlp http listener", &config.otlp_http_addr).await?,
        metrics: bind("bind metrics listener", &config.metrics_addr).await?,
        sampling_http: match &config.sampling_http_addr {
            Some(addr) => Some(bind("bind sampling http listener", addr).await?),
            None => None,
        },
    })
}

/// Opens the spool off the reactor (recovery reads every segment) and counts what it
/// had to truncate.
async fn open_spool(config: &SpoolConfig) -> Result<(Spool, Recovery)> {
    let spool_error = |source| Error::Spool {
        what: "open the spool",
        source,
    };
    let config = config.clone();
    let (spool, recovery) = tokio::task::spawn_blocking(move || {
        Spool::open(&config.dir, config.max_bytes, config.segment_bytes)
    })
    .await
    .map_err(|e| spool_error(std::io::Error::other(e.to_string())))?
    .map_err(spool_error)?;
    metrics::spool_corrupt(recovery.truncated_segments);
    Ok((spool, recovery))
}

/// The receivers' settings: the collector's ingest front half with redaction (no secret
/// reaches Kafka or the spool) and without enrichment (the collector behind Kafka applies
/// its own business keys), ending in the [`AgentSink`].
fn receivers_shared(
    config: &AgentConfig,
    redactor: Option<Arc<crate::redaction::Redactor>>,
    sampling: HeadSampling,
    shipper: Arc<Shipper>,
    auth: Arc<clew_auth::Authenticator>,
) -> Arc<Shared> {
    let sink = AgentSink {
        sampling,
        shipper,
        message_max_bytes: config.kafka.message_max_bytes as usize,
    };
    Arc::new(Shared {
        front: Arc::new(Front {
            limits: config.span_limits(),
            redactor,
            enricher: None,
            sink: Arc::new(sink),
            span_metrics: None,
            alerting: None,
            inventory: None,
            // rate limits apply at the collector, which reads the tenant from the record
            rate_limits: None,
        }),
        max_request_bytes: config.max_request_bytes,
        retry_after: Duration::from_secs(config.retry_after_secs),
        auth,
    })
}

/// `/metrics` needs a `read` token when `[auth]` is on; `/healthz` is open.
async fn serve_metrics(
    listener: TcpListener,
    render: RenderMetrics,
    auth: Arc<clew_auth::Authenticator>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let app = Router::new()
        .route(
            "/metrics",
            get(move || async move {
                metrics::refresh_spool_age();
                render()
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .layer(clew_auth::AuthLayer::http(
            auth,
            "metrics",
            clew_auth::layer::metrics_endpoint,
            clew_auth::layer::text_refusal,
        ));
    serve_http("serve metrics", listener, app, shutdown).await
}

/// The agent's end of the receivers: sample, encode, ship.
pub struct AgentSink {
    sampling: HeadSampling,
    shipper: Arc<Shipper>,
    message_max_bytes: usize,
}

#[async_trait]
impl SpanSink for AgentSink {
    async fn submit(&self, spans: Vec<Span>) -> Result<StoreRejections> {
        let total = spans.len();
        let kept = self.sampling.sample(spans);
        metrics::sampled_out(total - kept.len());
        if kept.is_empty() {
            return Ok(Vec::new());
        }
        let max = self.message_max_bytes;
        let (records, rejections) = if kept.len() > INLINE_MAX_SPANS {
            tokio::task::spawn_blocking(move || build_records(kept, max))
                .await
                .map_err(|e| Error::decode("request", format!("encoder task failed: {e}")))?
        } else {
            build_records(kept, max)
        };
        for (_, reason) in &rejections {
            crate::metrics::span_rejected(*reason, 1);
        }
        self.shipper.ship(records).await?;
        Ok(rejections)
    }
}

/// One record per trace and tenant (in the order traces first appear), each an Avro
/// batch of that trace's spans, carrying their tenant; a trace too large for one record is
/// split into several with the same key. A single span larger than `max_bytes` is rejected
/// alone (`span_too_large`). (A request's spans share one tenant, the caller's; grouping
/// by it too keeps a record from ever mixing two.)
pub fn build_records(
    spans: Vec<(usize, Span)>,
    max_bytes: usize,
) -> (Vec<(Record, usize)>, StoreRejections) {
    let mut order: Vec<(Tenant, TraceId)> = Vec::new();
    let mut by_trace: HashMap<(Tenant, TraceId), Vec<(usize, Span)>> = HashMap::new();
    for (i, s) in spans {
        let key = (s.tenant.clone(), s.trace_id);
        by_trace
            .entry(key)
            .or_insert_with_key(|k| {
                order.push(k.clone());
                Vec::new()
            })
            .push((i, s));
    }
    let mut records = Vec::with_capacity(order.len());
    let mut rejected = Vec::new();
    for key in order {
        let group = by_trace.remove(&key).expect("grouped above");
        let (idx, spans): (Vec<usize>, Vec<Span>) = group.into_iter().unzip();
        let (tenant, trace) = key;
        let at = (&tenant, &trace);
        encode_split(at, &idx, &spans, max_bytes, &mut records, &mut rejected);
    }
    rejected.sort_unstable_by_key(|(i, _)| *i);
    (records, rejected)
}

fn encode_split(
    (tenant, trace): (&Tenant, &TraceId),
    idx: &[usize],
    spans: &[Span],
    max_bytes: usize,
    out: &mut Vec<(Record, usize)>,
    rejected: &mut StoreRejections,
) {
    let value = clew_proto::avro::encode_batch(spans);
    if value.len() <= max_bytes {
        out.push((
            Record {
                key: trace.0.to_vec(),
                value,
                tenant: tenant.clone(),
            },
            spans.len(),
        ));
        return;
    }
    if spans.len() == 1 {
        rejected.push((idx[0], RejectReason::SpanTooLarge));
        return;
    }
    let mid = spans.len() / 2;
    let at = (tenant, trace);
    encode_split(at, &idx[..mid], &spans[..mid], max_bytes, out, rejected);
    encode_split(at, &idx[mid..], &spans[mid..], max_bytes, out, rejected);
}

#[cfg(test)]
mod tests {
    use super::*;
    use clew_proto::from_otlp::Limits;
    use clew_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
    use clew_proto::otlp::common::v1::{any_value, AnyValue, KeyValue};
    use clew_proto::otlp::resource::v1::Resource;
    use clew_proto::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span as OtlpSpan};

    const NOW: u64 = 1_800_000_000_000_000_000;

    fn spans(traces: &[(u8, usize)], attr_bytes: usize) -> Vec<Span> {
        let mut otlp = Vec::new();
        let mut id = 1u64;
        for (t, n) in traces {
            for _ in 0..*n {
                otlp.push(OtlpSpan {
                    trace_id: [*t; 16].to_vec(),
                    span_id: id.to_be_bytes().to_vec(),
                    name: "op".into(),
                    start_time_unix_nano: NOW - 2_000,
                    end_time_unix_nano: NOW - 1_000,
                    attributes: vec![KeyValue {
                        key: "blob".into(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::StringValue("x".repeat(attr_bytes))),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                });
                id += 1;
            }
        }
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource::default()),
                scope_spans: vec![ScopeSpans {
                    spans: otlp,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let limits = Limits {
            max_attribute_value_bytes: 1 << 20,
            ..Limits::default()
        };
        clew_proto::from_otlp::convert_request(req, &limits, NOW).spans
    }

    fn decode(r: &Record) -> Vec<Span> {
        let limits = Limits {
            max_attribute_value_bytes: 1 << 20,
            ..Limits::default()
        };
        clew_proto::avro::decode_batch(&r.value, &limits, NOW)
            .unwrap()
            .spans
    }

    #[test]
    fn one_record_per_trace_keyed_by_trace_id_in_first_seen_order() {
        let mut input = spans(&[(3, 2), (1, 3), (2, 1)], 10);
        // Interleave: trace 1's spans are not contiguous.
        input.swap(1, 3);
        let expect_order: Vec<u8> = vec![3, 1, 2];
        let (records, rejected) =
            build_records(input.clone().into_iter().enumerate().collect(), 1 << 20);
        assert!(rejected.is_empty());
        assert_eq!(records.len(), 3);
        for ((r, n), t) in records.iter().zip(expect_order) {
            assert_eq!(r.key, vec![t; 16]);
            let got = decode(r);
            assert_eq!(got.len(), *n);
            assert!(got.iter().all(|s| s.trace_id.0 == [t; 16]));
        }
        let total: usize = records.iter().map(|(_, n)| n).sum();
        assert_eq!(total, input.len());
    }

    #[test]
    fn large_trace_is_split_and_oversized_span_rejected() {
        let mut input = spans(&[(7, 40)], 2_000);
        input.extend(spans(&[(9, 1)], 20_000));
        let (records, rejected) = build_records(input.into_iter().enumerate().collect(), 10_000);
        assert_eq!(rejected, vec![(40, RejectReason::SpanTooLarge)]);
        assert!(records.len() >= 8, "{} records", records.len());
        let mut ids = Vec::new();
        for (r, n) in &records {
            assert!(r.value.len() <= 10_000);
            assert_eq!(r.key, vec![7; 16]);
            let got = decode(r);
            assert_eq!(got.len(), *n);
            ids.extend(got.into_iter().map(|s| s.span_id));
        }
        // Every span once, in the original order.
        let expect: Vec<_> = (1..=40u64)
            .map(|i| clew_proto::SpanId(i.to_be_bytes()))
            .collect();
        assert_eq!(ids, expect);
    }
}
