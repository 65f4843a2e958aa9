//! Receivers: each protocol file only deals with its transport and hands its input to the
//! one ingest front half ([`crate::ingest::Front::ingest`]). For OTLP the shared path from
//! a decoded request to an OTLP answer is [`export`]; [`kafka`] consumes span records and
//! goes through the same front half with its own decoders.

pub mod kafka;
pub mod otlp_grpc;
pub mod otlp_http;
pub mod zipkin;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use clew_auth::Authenticator;
use clew_proto::from_otlp::Limits;
use clew_proto::otlp::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use clew_proto::Tenant;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::debug;

use crate::config::CollectorConfig;
use crate::enrich::Enricher;
use crate::error::{Error, Result};
use crate::ingest::{Decoded, Front, Input, Offload, Refused, Rejections};
use crate::metrics::{self, Protocol};
use crate::pipeline::Ingest;

/// Request bodies (decompressed) larger than this are decoded on the blocking pool.
pub(super) const INLINE_MAX_BYTES: usize = 64 * 1024;

/// What every receiver needs.
pub(crate) struct Shared {
    /// The ingest stages and where they end (the pipeline, or the agent's Kafka producer).
    pub front: Arc<Front>,
    pub max_request_bytes: usize,
    pub retry_after: Duration,
    /// Who may call the receivers (every one of them goes through `clew_auth::AuthLayer`).
    pub auth: Arc<Authenticator>,
}

impl Shared {
    pub fn new(
        config: &CollectorConfig,
        ingest: Ingest,
        observers: crate::Observers,
        auth: Arc<Authenticator>,
    ) -> Arc<Self> {
        Arc::new(Shared {
            front: Arc::new(Front {
                limits: config.span_limits(),
                redactor: observers.redactor,
                enricher: Some(Enricher::new(&config.business_keys)),
                sink: Arc::new(ingest),
                span_metrics: observers.span_metrics,
                alerting: observers.alerting,
                inventory: observers.inventory,
                rate_limits: crate::rate_limit::RateLimits::new(&config.tenants).map(Arc::new),
            }),
            max_request_bytes: config.max_request_bytes,
            retry_after: Duration::from_secs(config.retry_after_secs),
            auth,
        })
    }
}

/// Takes one OTLP request in through the ingest front half (`decode` runs there, on the
/// blocking pool when `heavy`, with the span limits and the time of validation) and builds
/// the OTLP answer; counts the request's outcome.
pub(crate) async fn export<F>(
    shared: &Arc<Shared>,
    protocol: Protocol,
    tenant: Tenant,
    heavy: bool,
    decode: F,
) -> Result<ExportTraceServiceResponse>
where
    F: FnOnce(&Limits, u64) -> Result<Decoded> + Send + 'static,
{
    let started = Instant::now();
    let input = Input {
        protocol,
        offload: if heavy {
            Offload::Blocking
        } else {
            Offload::Inline
        },
        count: true,
        origin: Default::default(),
        tenant,
    };
    let result = shared
        .front
        .ingest(input, decode)
        .await
        .map(|rejections| response(&rejections))
        .map_err(Refused::into_error);
    match &result {
        Ok(_) => metrics::acked(protocol, started.elapsed()),
        Err(e) => {
            metrics::request_failed(protocol, e.reason());
            debug!(protocol = protocol.as_str(), reason = e.reason(), error = %e, "otlp request refused");
        }
    }
    result
}

/// The tenant of a request: its principal's (put there by `clew_auth::AuthLayer`), or
/// `default`.
pub(crate) fn tenant_of(extensions: &axum::http::Extensions) -> Tenant {
    extensions
        .get::<clew_auth::Principal>()
        .map(|p| p.tenant.clone())
        .unwrap_or_default()
}

/// Binds a listener; errors name `what` and the address.
pub(crate) async fn bind(what: &'static str, addr: &str) -> Result<(TcpListener, SocketAddr)> {
    let listen_error = |source| Error::Listen {
        what,
        addr: addr.to_string(),
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(listen_error)?;
    let local = listener.local_addr().map_err(listen_error)?;
    Ok((listener, local))
}

/// A server task, named for logs.
pub(crate) type Server = (&'static str, JoinHandle<Result<()>>);

/// Spawns the OTLP/gRPC and OTLP/HTTP servers over `shared`; both finish their in-flight
/// requests and stop once `stop` turns true.
pub(crate) fn spawn_otlp(
    grpc: TcpListener,
    http: TcpListener,
    shared: Arc<Shared>,
    stop: &watch::Receiver<bool>,
) -> Vec<Server> {
    let grpc = otlp_grpc::serve(grpc, shared.clone(), stopped(stop));
    let http = otlp_http::serve(http, shared, stopped(stop));
    vec![
        ("otlp grpc", tokio::spawn(grpc)),
        ("otlp http", tokio::spawn(http)),
    ]
}

/// Spawns the Zipkin server over `shared`; it finishes its in-flight requests and stops
/// once `stop` turns true.
pub(crate) fn spawn_zipkin(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: &watch::Receiver<bool>,
) -> Server {
    (
        "zipkin",
        tokio::spawn(zipkin::serve(listener, shared, stopped(stop))),
    )
}

/// Spawns the Jaeger remote-sampling servers (HTTP and gRPC) over `store` and the task
/// that re-reads its file; all stop once `stop` turns true.
pub(crate) fn spawn_sampling(
    http: TcpListener,
    grpc: TcpListener,
    store: Arc<crate::sampling::StrategyStore>,
    auth: Arc<Authenticator>,
    stop: &watch::Receiver<bool>,
) -> Vec<Server> {
    let watch = store
        .clone()
        .watch(crate::sampling::RELOAD_INTERVAL, stop.clone());
    vec![
        (
            "sampling http",
            tokio::spawn(crate::sampling::http::serve(
                http,
                store.clone(),
                auth.clone(),
                stopped(stop),
            )),
        ),
        (
            "sampling grpc",
            tokio::spawn(crate::sampling::grpc::serve(
                grpc,
                store,
                auth,
                stopped(stop),
            )),
        ),
        (
            "sampling reload",
            tokio::spawn(async move {
                watch.await;
                Ok(())
            }),
        ),
    ]
}

/// Resolves once `stop` turns true: a server's graceful-shutdown signal.
pub(crate) fn stopped(stop: &watch::Receiver<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut stop = stop.clone();
    async move {
        let _ = stop.wait_for(|s| *s).await;
    }
}

/// Serves `app` over HTTP/1.1 and HTTP/2 on `listener` until `shutdown` resolves, then
/// finishes in-flight requests (within `clew_net`'s limits, as every listener).
pub(crate) async fn serve_http(
    what: &'static str,
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    clew_net::serve(what, listener, clew_net::Protocol::Http, app, shutdown)
        .await
        .map_err(|source| Error::Listen { what, addr, source })
}

/// Reads an HTTP request body of at most `limit` bytes: a `Content-Length` over the limit
/// is refused before anything is read, and the stream is cut off at the limit whatever
/// it said. Compressed bytes are capped too: a body that does not shrink is too large
/// anyway.
pub(crate) async fn read_body(
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
    limit: usize,
) -> Result<bytes::Bytes> {
    use http_body_util::{BodyExt, LengthLimitError, Limited};
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Error::TooLarge { limit_bytes: limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(Error::TooLarge { limit_bytes: limit })
        }
        Err(e) => Err(Error::decode(
            "request body",
            format!("failed to read it: {e}"),
        )),
    }
}

/// OTLP answer: plain success, or partial success naming every reason with its count.
fn response(reasons: &Rejections) -> ExportTraceServiceResponse {
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

#[cfg(test)]
mod tests {
    use super::*;
    use clew_proto::RejectReason;

    #[test]
    fn partial_success_names_reasons() {
        let mut m = Rejections::new();
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
