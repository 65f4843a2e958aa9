//! `jaeger.api_v2.SamplingManager` over gRPC (`GetSamplingStrategy`), the service Jaeger
//! v2's `remote_sampling` extension serves on :5779 and Jaeger v1's collector on :14250.
//! Hand-written in the shape tonic generates (there is no protoc in the build); the
//! messages are `clew_proto::jaeger_sampling`'s.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use clew_proto::jaeger_sampling::{
    SamplingStrategyParameters, SamplingStrategyResponse, GET_SAMPLING_STRATEGY_PATH, SERVICE_NAME,
};
use tokio::net::TcpListener;
use tonic::body::Body;
use tonic::codegen::{http, Body as HttpBody, StdError};
use tonic::server::{Grpc, NamedService, UnaryService};

use super::StrategyStore;
use crate::error::{Error, Result};
use crate::metrics;

/// Sampling requests are tiny; anything larger is refused by the codec.
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// The tonic service.
#[derive(Clone)]
pub struct SamplingManagerServer {
    store: Arc<StrategyStore>,
}

impl SamplingManagerServer {
    pub fn new(store: Arc<StrategyStore>) -> Self {
        SamplingManagerServer { store }
    }
}

impl NamedService for SamplingManagerServer {
    const NAME: &'static str = SERVICE_NAME;
}

struct GetSamplingStrategy(Arc<StrategyStore>);

impl UnaryService<SamplingStrategyParameters> for GetSamplingStrategy {
    type Response = SamplingStrategyResponse;
    type Future =
        std::future::Ready<std::result::Result<tonic::Response<Self::Response>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<SamplingStrategyParameters>) -> Self::Future {
        metrics::sampling_request("grpc");
        let answer = self.0.for_service(&request.get_ref().service_name);
        std::future::ready(Ok(tonic::Response::new(answer)))
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = std::result::Result<T, Infallible>> + Send>>;

impl<B> tonic::codegen::Service<http::Request<B>> for SamplingManagerServer
where
    B: HttpBody + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::result::Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != GET_SAMPLING_STRATEGY_PATH {
            return Box::pin(async {
                Ok(tonic::Status::unimplemented("unknown method").into_http())
            });
        }
        let method = GetSamplingStrategy(self.store.clone());
        Box::pin(async move {
            let codec = tonic_prost::ProstCodec::<
                SamplingStrategyResponse,
                SamplingStrategyParameters,
            >::default();
            let mut grpc =
                Grpc::new(codec).apply_max_message_size_config(Some(MAX_REQUEST_BYTES), None);
            Ok(grpc.unary(method, req).await)
        })
    }
}

/// Serves the SamplingManager on `listener` until `shutdown` resolves. With `[auth]`, a
/// call needs an `ingest` or a `read` token.
pub async fn serve(
    listener: TcpListener,
    store: Arc<StrategyStore>,
    auth: Arc<clew_auth::Authenticator>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let app = tonic::service::Routes::new(SamplingManagerServer::new(store))
        .into_axum_router()
        .layer(clew_auth::AuthLayer::grpc(
            auth,
            "sampling_grpc",
            clew_auth::layer::ingest_or_read_everywhere,
        ));
    clew_net::serve(
        "sampling grpc",
        listener,
        clew_net::Protocol::Grpc,
        app,
        shutdown,
    )
    .await
    .map_err(|source| Error::Listen {
        what: "serve sampling grpc",
        addr,
        source,
    })
}
