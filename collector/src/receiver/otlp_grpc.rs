//! OTLP/gRPC receiver (`opentelemetry.proto.collector.trace.v1.TraceService/Export`).
//!
//! gzip requests are accepted. tonic enforces `max_request_bytes` on the decompressed
//! message; it reports a declared length over the limit as OUT_OF_RANGE, which
//! [`remap_too_large`] turns into the RESOURCE_EXHAUSTED (without retry hint) that OTLP
//! asks for. Everything else maps through [`crate::error::Error::to_grpc_status`].

use std::future::Future;
use std::sync::Arc;

use axum::http::{HeaderValue, Response};
use clew_proto::otlp::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use clew_proto::otlp::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::{Code, Request, Status};
use tower::util::MapResponseLayer;

use super::{export, is_heavy_request, Shared};
use crate::error::{Error, Result};
use crate::metrics::Protocol;

/// The tonic service implementation.
pub struct OtlpGrpc {
    shared: Arc<Shared>,
}

#[tonic::async_trait]
impl TraceService for OtlpGrpc {
    async fn export(&self, request: Request<ExportTraceServiceRequest>) -> Result<tonic::Response<ExportTraceServiceResponse>, Status> {
        let req = request.into_inner();
        let heavy = is_heavy_request(&req);
        export(&self.shared, Protocol::Grpc, heavy, move || Ok(req))
            .await
            .map(tonic::Response::new)
            .map_err(|e| e.to_grpc_status(self.shared.retry_after))
    }
}

/// Serves OTLP/gRPC on `listener` until `shutdown` resolves, then finishes in-flight calls.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let limit = shared.max_request_bytes;
    let service = TraceServiceServer::new(OtlpGrpc { shared })
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(limit);
    let incoming = futures::stream::unfold(listener, |listener| async move {
        let conn = listener.accept().await.map(|(stream, _)| {
            let _ = stream.set_nodelay(true);
            stream
        });
        Some((conn, listener))
    });
    tonic::transport::Server::builder()
        .layer(MapResponseLayer::new(move |resp| remap_too_large(resp, limit)))
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| Error::Listen { what: "serve otlp grpc", addr, source: std::io::Error::other(e) })
}

/// OUT_OF_RANGE is only ever produced by tonic's message-size check (the service never
/// returns it); OTLP wants RESOURCE_EXHAUSTED without retry information for that case.
fn remap_too_large<B>(mut resp: Response<B>, limit_bytes: usize) -> Response<B> {
    let out_of_range = (Code::OutOfRange as i32).to_string();
    if resp.headers().get("grpc-status").is_some_and(|v| v.as_bytes() == out_of_range.as_bytes()) {
        let status = Error::TooLarge { limit_bytes }.to_grpc_status(Default::default());
        let headers = resp.headers_mut();
        headers.insert("grpc-status", HeaderValue::from((status.code() as i32) as u32));
        if let Ok(msg) = HeaderValue::from_str(status.message()) {
            headers.insert("grpc-message", msg);
        }
    }
    resp
}
