//! # clew-collector: OTLP in, durable spans out
//!
//! The collector receives spans over OTLP (gRPC and HTTP), validates and enriches them,
//! batches them and writes them through `clew-store`'s [`SpanStore`] and [`TraceIndex`]
//! traits. A request is acknowledged only once both writes of its spans returned `Ok`.
//!
//! ```text
//!  OTLP gRPC ─▶ receiver/otlp_grpc ─┐
//!                                   ├─▶ decode ─▶ convert + validate ─▶ enrich ─▶ pipeline::Ingest::submit
//!  OTLP HTTP ─▶ receiver/otlp_http ─┤   (decode.rs)  (clew_proto::from_otlp)  (enrich.rs)     │  bounded by spans
//!  Kafka ─────▶ receiver/kafka ─────┘   (+ avro)                                              ▼
//!               (offsets committed after the ack; poison → dead-letter topic)
//!       answer ◀── ack (per request: partial success) ◀── index writer ◀── store writer ◀── batcher
//!                                                        (writer.rs)        (writer.rs)     (batcher.rs)
//! ```
//!
//! - [`config`]: [`CollectorConfig`] and its validation.
//! - [`receiver`]: the OTLP transports, which end in one shared `export` path, and the
//!   Kafka receiver ([`receiver::kafka`]: consumer group, Avro / OTLP protobuf / OTLP JSON
//!   per topic, offsets committed only for durable records, dead-letter topic).
//! - [`decode`]: content types, bounded gzip, protobuf and OTLP/JSON decoding.
//! - [`enrich`]: business keys from span, resource and baggage attributes.
//! - [`pipeline`]: builds the ingest stages ([`pipeline::start`]); [`batcher`] and
//!   [`writer`] are its stages.
//! - [`error`]: the one error type and its gRPC/HTTP mapping; [`metrics`]: what is counted.
//! - [`sink`]: the seam where receivers hand spans on: the pipeline here, or the agent.
//! - [`agent`]: `clew agent` — the same receivers in front of Kafka (Avro) and a disk spool.
//!
//! Ack policy: `docs/adr/0004-ack-policy.md`.

pub mod agent;
pub mod batcher;
pub mod config;
pub mod decode;
pub mod enrich;
pub mod error;
pub mod metrics;
pub mod pipeline;
pub mod receiver;
pub mod sink;
pub mod writer;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clew_store::{SpanStore, TraceIndex};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub use config::{CollectorConfig, LimitsConfig};
pub use error::{Error, Result};
pub use pipeline::Ingest;

/// How long [`Collector::shutdown`] waits for queued spans to be written and answered.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// A running collector: both OTLP listeners, the Kafka receiver when configured, and the
/// ingest pipeline.
pub struct Collector {
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    stop: watch::Sender<bool>,
    ingest: Ingest,
    kafka: Option<receiver::kafka::KafkaReceiver>,
    servers: Vec<(&'static str, JoinHandle<Result<()>>)>,
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
        config.validate()?;
        metrics::describe();
        let bind = |what: &'static str, addr: String| async move {
            TcpListener::bind(&addr)
                .await
                .map_err(|source| Error::Listen { what, addr, source })
        };
        let grpc_listener = bind("bind otlp grpc listener", config.otlp_grpc_addr.clone()).await?;
        let http_listener = bind("bind otlp http listener", config.otlp_http_addr.clone()).await?;
        let local = |l: &TcpListener, what: &'static str, addr: &str| {
            l.local_addr().map_err(|source| Error::Listen {
                what,
                addr: addr.to_string(),
                source,
            })
        };
        let grpc_addr = local(
            &grpc_listener,
            "read otlp grpc address",
            &config.otlp_grpc_addr,
        )?;
        let http_addr = local(
            &http_listener,
            "read otlp http address",
            &config.otlp_http_addr,
        )?;

        let (ingest, pipeline) = pipeline::start(&config, store, index);
        let shared = receiver::Shared::new(&config, ingest.clone());
        let kafka = match &config.kafka {
            Some(k) => Some(receiver::kafka::start(k, shared.clone())?),
            None => None,
        };
        let (stop, stopped) = watch::channel(false);
        let signal = move || {
            let mut rx = stopped.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let grpc = tokio::spawn(receiver::otlp_grpc::serve(
            grpc_listener,
            shared.clone(),
            signal(),
        ));
        let http = tokio::spawn(receiver::otlp_http::serve(http_listener, shared, signal()));
        info!(%grpc_addr, %http_addr, "otlp receivers listening (grpc, http)");
        Ok(Collector {
            grpc_addr,
            http_addr,
            stop,
            ingest,
            kafka,
            servers: vec![("otlp grpc", grpc), ("otlp http", http)],
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

    /// Stops accepting, lets in-flight requests finish, writes and answers everything
    /// queued (the Kafka receiver commits what became durable and leaves its group), then
    /// returns. The first server error, if any, is returned.
    pub async fn shutdown(self) -> Result<()> {
        let Collector {
            stop,
            ingest,
            kafka,
            servers,
            pipeline,
            ..
        } = self;
        let _ = stop.send(true);
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

/// Runs the collector until `shutdown` resolves, then shuts it down cleanly.
pub async fn run(
    config: CollectorConfig,
    store: Arc<dyn SpanStore>,
    index: Arc<dyn TraceIndex>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let collector = Collector::start(config, store, index).await?;
    shutdown.await;
    collector.shutdown().await
}
