//! OTLP/gRPC receiver (`opentelemetry.proto.collector.trace.v1.TraceService/Export`).
//!
//! The service is written out here rather than generated: tonic hands it the message
//! bytes (decompressed and size-checked, gzip accepted), and the ingest path decodes them
//! like an OTLP/HTTP protobuf body (`crate::decode::decode_plain`): straight into the span
//! model, on the blocking pool when large, and with invalid UTF-8 replaced instead of
//! failing the whole request.
//!
//! tonic's codes for its own failures differ from what OTLP asks for; [`remap_codec_errors`]
//! fixes them up on the way out:
//!
//! - a message over `max_request_bytes` (checked on the decompressed size): tonic says
//!   OUT_OF_RANGE (retryable for OTLP clients!) → RESOURCE_EXHAUSTED without retry hint;
//! - corrupt gzip: tonic says INTERNAL → INVALID_ARGUMENT.
//!   The service's own INTERNAL answers (permanent store failures) are marked with the
//!   [`OWN_INTERNAL`] metadata key, which the layer removes, so they pass unchanged.
//!
//! Everything the service itself answers maps through [`crate::error::Error::to_grpc_status`].
//! With `[auth]`, every call needs an `ingest` token (`clew_auth::AuthLayer`, before the
//! message is read): UNAUTHENTICATED / PERMISSION_DENIED otherwise.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::{HeaderValue, Response};
use bytes::{Buf, Bytes};
use clew_proto::otlp::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use tokio::net::TcpListener;
use tonic::codec::{
    Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings, EncodeBuf, Encoder,
};
use tonic::codegen::{http, BoxFuture, StdError};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Code, Request, Status};
use tower::util::MapResponseLayer;

use super::{export, Shared, INLINE_MAX_BYTES};
use crate::decode::{decode_plain, Format};
use crate::error::{Error, Result};
use crate::ingest::Decoded;
use crate::metrics::Protocol;

/// Marks INTERNAL answers produced by the service (not by tonic's decoder).
const OWN_INTERNAL: &str = "x-clew-internal";

/// gRPC path of the one method.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// The OTLP trace service: takes the request message as bytes.
#[derive(Clone)]
pub struct OtlpGrpc {
    shared: Arc<Shared>,
    compression: EnabledCompressionEncodings,
}

impl OtlpGrpc {
    async fn export(
        &self,
        request: Request<Bytes>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, Status> {
        let tenant = super::tenant_of(request.extensions());
        let body = request.into_inner();
        let heavy = body.len() > INLINE_MAX_BYTES;
        export(
            &self.shared,
            Protocol::Grpc,
            tenant,
            heavy,
            move |limits, now| {
                decode_plain(&body, Format::Protobuf, limits, now).map(Decoded::Validated)
            },
        )
        .await
        .map(tonic::Response::new)
        .map_err(|e| {
            let mut status = e.to_grpc_status(self.shared.retry_after);
            if status.code() == Code::Internal {
                status.metadata_mut().insert(
                    OWN_INTERNAL,
                    tonic::metadata::MetadataValue::from_static("1"),
                );
            }
            status
        })
    }
}

impl NamedService for OtlpGrpc {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

impl<B> tower::Service<http::Request<B>> for OtlpGrpc
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            if req.uri().path() != EXPORT_PATH {
                return Ok(Status::unimplemented(format!(
                    "unknown method {}; this port serves {EXPORT_PATH}",
                    req.uri().path()
                ))
                .into_http());
            }
            let limit = this.shared.max_request_bytes;
            let mut grpc = Grpc::new(ExportCodec)
                .apply_compression_config(this.compression, this.compression)
                .apply_max_message_size_config(Some(limit), None);
            Ok(grpc.unary(this, req).await)
        })
    }
}

impl UnaryService<Bytes> for OtlpGrpc {
    type Response = ExportTraceServiceResponse;
    type Future = BoxFuture<tonic::Response<ExportTraceServiceResponse>, Status>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.export(request).await })
    }
}

/// Request messages as bytes, responses encoded by prost.
struct ExportCodec;

impl Codec for ExportCodec {
    type Encode = ExportTraceServiceResponse;
    type Decode = Bytes;
    type Encoder = ResponseEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> ResponseEncoder {
        ResponseEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

struct ResponseEncoder;

impl Encoder for ResponseEncoder {
    type Item = ExportTraceServiceResponse;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("encoding the response: {e}")))
    }
}

struct RawDecoder;

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Serves OTLP/gRPC on `listener` until `shutdown` resolves, then finishes in-flight calls.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let limit = shared.max_request_bytes;
    let auth = clew_auth::AuthLayer::grpc(
        shared.auth.clone(),
        "otlp_grpc",
        clew_auth::layer::ingest_everywhere,
    );
    let mut compression = EnabledCompressionEncodings::default();
    compression.enable(CompressionEncoding::Gzip);
    let service = OtlpGrpc {
        shared,
        compression,
    };
    let app = tonic::service::Routes::new(service)
        .into_axum_router()
        .layer(auth)
        .layer(MapResponseLayer::new(move |resp| {
            remap_codec_errors(resp, limit)
        }));
    clew_net::serve(
        "otlp grpc",
        listener,
        clew_net::Protocol::Grpc,
        app,
        shutdown,
    )
    .await
    .map_err(|source| Error::Listen {
        what: "serve otlp grpc",
        addr,
        source,
    })
}

/// See the module docs: maps tonic's decoder failures to the codes OTLP requires.
fn remap_codec_errors<B>(mut resp: Response<B>, limit_bytes: usize) -> Response<B> {
    let code = resp
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok());
    let replacement = match code.map(Code::from_i32) {
        // The service never answers OUT_OF_RANGE; only tonic's size check does.
        Some(Code::OutOfRange) => {
            Error::TooLarge { limit_bytes }.to_grpc_status(Default::default())
        }
        Some(Code::Internal) if resp.headers_mut().remove(OWN_INTERNAL).is_some() => return resp,
        Some(Code::Internal) => {
            let detail = resp
                .headers()
                .get("grpc-message")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let detail = percent_decode(&detail);
            Error::decode("protobuf ExportTraceServiceRequest", detail)
                .to_grpc_status(Default::default())
        }
        _ => return resp,
    };
    let headers = resp.headers_mut();
    headers.insert("grpc-status", HeaderValue::from(replacement.code() as i32));
    if let Ok(msg) = HeaderValue::from_str(&percent_encode(replacement.message())) {
        headers.insert("grpc-message", msg);
    }
    resp
}

/// grpc-message is percent-encoded (gRPC over HTTP/2 spec).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_round_trip() {
        let s = "bad: 100% \u{e9}t\u{e9}\n";
        assert_eq!(percent_decode(&percent_encode(s)), s);
        assert_eq!(percent_decode("a%2"), "a%2");
    }
}
