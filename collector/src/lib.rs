//! # clew-collector: OTLP in, durable spans out
//!
//! The collector receives spans over OTLP (gRPC and HTTP), Zipkin's v2 API and from Kafka, validates and
//! enriches them, batches them and writes them through `clew-store`'s [`SpanStore`] and
//! [`TraceIndex`] traits. A request is acknowledged only once both writes of its spans
//! returned `Ok`.
//!
//! ```text
//!  OTLP gRPC ─▶ receiver/otlp_grpc ─┐
//!  OTLP HTTP ─▶ receiver/otlp_http ─┤
//!  Zipkin ────▶ receiver/zipkin ────┼─▶ ingest::Front::ingest ─────────────────────────────────▶ SpanSink::submit
//!  Kafka ─────▶ receiver/kafka ─────┘   decode ─▶ validate + convert ─▶ count rejections            │ = pipeline::Ingest
//!               (offsets committed      ─▶ redact ─▶ enrich ─▶ span metrics                         ▼   bounded by spans
//!                after the ack; poison                                                 batcher (batcher.rs)
//!                → dead-letter topic)                                                      ▼
//!                                                                          store writer ─▶ index writer (writer.rs)
//!       answer ◀── ack (per request: partial success) ◀────────────────────────────────────┘
//! ```
//!
//! The whole path reads from two places: [`ingest`] (receiver to sink: every stage in
//! order in [`ingest::Front`]) and [`pipeline::start`] (sink to ack).
//!
//! - [`config`]: [`CollectorConfig`] and its validation.
//! - [`receiver`]: the OTLP transports (each wrapped in `clew_auth::AuthLayer`, which
//!   asks for an `ingest` token when `[auth]` is on), which end in one shared `export` path, and the
//!   Kafka receiver ([`receiver::kafka`]: consumer group, Avro / OTLP protobuf / OTLP JSON
//!   per topic, offsets committed only for durable records, dead-letter topic; cargo
//!   feature `kafka`).
//! - [`decode`]: content types, bounded gzip, protobuf and OTLP/JSON decoding.
//! - [`zipkin`]: Zipkin v2 JSON and protobuf spans → an OTLP request (the Zipkin
//!   receiver's and Kafka `zipkin_json`'s decode step).
//! - [`ingest`]: the front half every receiver calls: decode → … → the sink.
//! - [`alerting`]: error-signature alerts (`[alerting]`): signatures picked in the front
//!   half, counted once stored, delivered to Alertmanager and webhooks; the alert board.
//! - [`redaction`]: stage 4, `[redaction]`: attribute keys and secrets in values dropped,
//!   masked or hashed before anything is written (on by default).
//! - [`enrich`]: business keys from span, resource and baggage attributes.
//! - [`pipeline`]: builds the stages behind the sink ([`pipeline::start`]); [`batcher`] and
//!   [`writer`] are its stages.
//! - [`error`]: the one error type and its gRPC/HTTP mapping; [`metrics`]: what is counted.
//! - [`file_watch`]: noticing that a file changed (the alert rules' reload, and the
//!   binary's reload of `[auth]` tokens).
//! - [`sampling`]: Jaeger remote sampling — the strategies file (Jaeger's format and
//!   rules, re-read when it changes), its HTTP and gRPC endpoints, and the head sampling
//!   `clew agent` derives from it.
//! - [`sink`]: the seam where the front half hands spans on: the pipeline here, or the agent.
//! - [`inventory`]: stage 6 too, the fleet inventory (`[inventory]`): services, instances,
//!   versions, SDKs, receivers and agents, from the resources of the spans stored.
//! - [`span_metrics`]: stage 6, RED metrics (the spanmetrics connector's names), Tempo's
//!   service-graph metrics and each service's last hour, from the spans the sink stored.
//! - `agent` (cargo feature `kafka`): `clew agent` — the same receivers and front half in
//!   front of Kafka (Avro) and a disk spool.
//!
//! Ack policy: `docs/adr/0004-ack-policy.md`.

#[cfg(feature = "kafka")]
pub mod agent;
pub mod alerting;
pub mod batcher;
pub mod config;
pub mod decode;
pub mod enrich;
pub mod error;
pub mod file_watch;
pub mod ingest;
pub mod inventory;
pub mod metrics;
pub mod pipeline;
pub mod rate_limit;
pub mod receiver;
pub mod redaction;
pub mod sampling;
pub mod sink;
pub mod span_metrics;
pub mod writer;
pub mod zipkin;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clew_store::{SpanStore, TraceIndex};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub use config::{CollectorConfig, LimitsConfig, KAFKA_UNAVAILABLE};
pub use error::{Error, Result};
pub use pipeline::Ingest;
use receiver::{bind, spawn_otlp, spawn_sampling, spawn_zipkin, Server};
pub use span_metrics::{SpanMetrics, SpanMetricsConfig};

/// How long [`Collector::shutdown`] waits for queued spans to be written and answered.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// The optional stages of the front half, built by the owner from its own sections
/// (`[redaction]`, `[span_metrics]`, `[alerting]`), for every receiver (Kafka's too).
#[derive(Default, Clone)]
pub struct Observers {
    /// Stage 4, redaction ([`redaction::Redactor::from_config`]); `None`: spans are
    /// stored as received (`clew serve` builds it from `[redaction]`, on by default).
    pub redactor: Option<Arc<redaction::Redactor>>,
    /// Error-signature alerts ([`alerting::Alerting::start`]).
    pub alerting: Option<Arc<alerting::Alerting>>,
    /// RED span metrics and the service graph, which the owner renders on `/metrics`.
    pub span_metrics: Option<Arc<SpanMetrics>>,
    /// The fleet inventory ([`inventory::Inventory`]), which the owner serves and saves.
    pub inventory: Option<Arc<inventory::Inventory>>,
}

/// A running collector: both OTLP listeners, the Kafka receiver when configured, and the
/// ingest pipeline.
pub struct Collector {
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    zipkin_addr: SocketAddr,
    sampling_http_addr: SocketAddr,
    sampling_grpc_addr: SocketAddr,
    stop: watch::Sender<bool>,
    ingest: Ingest,
    #[cfg(feature = "kafka")]
    kafka: Option<receiver::kafka::KafkaReceiver>,
    servers: Vec<Server>,
    pipeline: JoinHandle<()>,
}

impl Collector {
    /// Validates `config`, binds both listeners, starts the pipeline and serves.
    /// The store and index are not closed by the collector; their owner closes them after
    /// [`Collector::shutdown`].
    pub async fn start(
        config: CollectorConfig,
        store: Arc<dyn SpanStore>,
        index: Arc<dyn TraceIndex>,
    ) -> Result<Collector> {
        Collector::start_with(
            config,
            store,
            index,
            Observers::default(),
            clew_auth::Authenticator::disabled(),
        )
        .await
    }

    /// [`Collector::start`] with what watches the ingested spans besides the store: every
    /// span stored counts in `observers.span_metrics` and `observers.alerting`; and with
    /// `auth` deciding who may call every listener.
    pub async fn start_with(
        config: CollectorConfig,
        store: Arc<dyn SpanStore>,
        index: Arc<dyn TraceIndex>,
        observers: Observers,
        auth: Arc<clew_auth::Authenticator>,
    ) -> Result<Collector> {
        config.validate()?;
        metrics::describe();
        if let Some(r) = &observers.redactor {
            let names: Vec<String> = r.rules().iter().map(|r| r.name.clone()).collect();
            metrics::describe_redactions(&names);
        }
        let (grpc_listener, grpc_addr) =
            bind("bind otlp grpc listener", &config.otlp_grpc_addr).await?;
        let (http_listener, http_addr) =
            bind("bind otlp http listener", &config.otlp_http_addr).await?;
        let (zipkin_listener, zipkin_addr) =
            bind("bind zipkin listener", &config.zipkin_addr).await?;
        let (sampling_http_listener, sampling_http_addr) =
            bind("bind sampling http listener", &config.sampling_http_addr).await?;
        let (sampling_grpc_listener, sampling_grpc_addr) =
            bind("bind sampling grpc listener", &config.sampling_grpc_addr).await?;
        let strategies = Arc::new(
            sampling::StrategyStore::load(
                config.sampling_strategies.clone(),
                config.sampling_default_probability,
            )
            .map_err(|message| Error::Config {
                key: "collector.sampling_strategies",
                message,
            })?,
        );

        let (ingest, pipeline) = pipeline::start(&config, store, index);
        let shared = receiver::Shared::new(&config, ingest.clone(), observers, auth.clone());
        #[cfg(feature = "kafka")]
        let kafka = match &config.kafka {
            Some(k) => Some(receiver::kafka::start(k, shared.clone())?),
            None => None,
        };
        let (stop, stop_rx) = watch::channel(false);
        let mut servers = spawn_otlp(grpc_listener, http_listener, shared.clone(), &stop_rx);
        servers.push(spawn_zipkin(zipkin_listener, shared, &stop_rx));
        servers.extend(spawn_sampling(
            sampling_http_listener,
            sampling_grpc_listener,
            strategies,
            auth,
            &stop_rx,
        ));
        info!(%grpc_addr, %http_addr, %zipkin_addr, %sampling_http_addr, %sampling_grpc_addr, "receivers listening (otlp grpc, otlp http, zipkin, jaeger remote sampling http and grpc)");
        Ok(Collector {
            grpc_addr,
            http_addr,
            zipkin_addr,
            sampling_http_addr,
            sampling_grpc_addr,
            stop,
            ingest,
            #[cfg(feature = "kafka")]
            kafka,
            servers,
            pipeline,
        })
    }

    /// Where OTLP/gRPC is served (the real port when configured with port 0).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// Where OTLP/HTTP is served (`POST /v1/traces`).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where the Zipkin v2 API is served (`POST /api/v2/spans`).
    pub fn zipkin_addr(&self) -> SocketAddr {
        self.zipkin_addr
    }

    /// Where Jaeger remote sampling is served over HTTP (`GET /api/sampling?service=`).
    pub fn sampling_http_addr(&self) -> SocketAddr {
        self.sampling_http_addr
    }

    /// Where Jaeger remote sampling is served over gRPC (`jaeger.api_v2.SamplingManager`).
    pub fn sampling_grpc_addr(&self) -> SocketAddr {
        self.sampling_grpc_addr
    }

    /// Stops accepting, lets in-flight requests finish, writes and answers everything
    /// queued (the Kafka receiver commits what became durable and leaves its group), then
    /// returns. The first server error, if any, is returned.
    pub async fn shutdown(self) -> Result<()> {
        let Collector {
            stop,
            ingest,
            #[cfg(feature = "kafka")]
            kafka,
            servers,
            pipeline,
            ..
        } = self;
        let _ = stop.send(true);
        #[cfg(feature = "kafka")]
        if let Some(kafka) = kafka {
            kafka.shutdown().await;
        }
        let mut first_error = None;
        for (what, task) in servers {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    warn!(server = what, error = %e, "otlp server failed");
                    first_error.get_or_insert(e);
                }
                Err(e) => warn!(server = what, error = %e, "otlp server task failed"),
            }
        }
        ingest.close();
        drop(ingest);
        if tokio::time::timeout(DRAIN_TIMEOUT, pipeline).await.is_err() {
            warn!(
                "ingest pipeline did not drain in time; unanswered requests were not acknowledged"
            );
        }
        info!("otlp receivers stopped, pipeline drained");
        first_error.map_or(Ok(()), Err)
    }
}
