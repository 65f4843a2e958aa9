//! The one tower layer every listener is wrapped in (axum routers and tonic servers
//! alike: both are services over `http::Request`).
//!
//! Per listener it takes a name (the `listener` label of the failure counter), a policy
//! (path → [`Need`]) and how refusals look in that listener's protocol: [`Render`] for
//! HTTP listeners (OTLP/HTTP answers a `google.rpc.Status`, the query API its JSON error,
//! Zipkin text), [`grpc_refusal`] for gRPC ones. HTTP 401 answers carry
//! `WWW-Authenticate: Bearer realm="clew"` (with RFC 6750's `error=` for a bad token or
//! a missing scope), whatever the renderer wrote.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use tower::{Layer, Service};

use crate::{metrics, AuthError, Authenticator, Need};

/// Renders a refusal in the listener's protocol, for a request to `path` with these
/// headers (to answer in its content type). The layer sets the status and
/// `WWW-Authenticate`.
pub type Render = fn(error: &AuthError, path: &str, request: &HeaderMap) -> Response<Bytes>;

/// What a request to this path needs.
pub type Policy = fn(path: &str) -> Need;

/// Wraps a listener's service; see the module docs.
#[derive(Clone)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
    listener: &'static str,
    policy: Policy,
    render: Render,
    /// Refusals are gRPC statuses, not HTTP ones.
    grpc: bool,
}

impl AuthLayer {
    /// For an HTTP listener whose refusals `render` writes.
    pub fn http(
        auth: Arc<Authenticator>,
        listener: &'static str,
        policy: Policy,
        render: Render,
    ) -> Self {
        metrics::describe(listener);
        AuthLayer {
            auth,
            listener,
            policy,
            render,
            grpc: false,
        }
    }

    /// For a gRPC listener: every method needs `need`; refusals are gRPC statuses.
    pub fn grpc(auth: Arc<Authenticator>, listener: &'static str, policy: Policy) -> Self {
        AuthLayer {
            grpc: true,
            ..AuthLayer::http(auth, listener, policy, grpc_refusal)
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`AuthLayer`] makes.
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    layer: AuthLayer,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, ResBody> Service<Request<B>> for AuthService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Either<ResBody, Full<Bytes>>>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let layer = &self.layer;
        let need = (layer.policy)(req.uri().path());
        let authorization = req.headers().get(header::AUTHORIZATION);
        match layer
            .auth
            .authorize(authorization.map(HeaderValue::as_bytes), need)
        {
            Ok(principal) => {
                req.extensions_mut().insert(principal);
                // the service that was polled ready serves this call
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(async move {
                    let resp = inner.call(req).await?;
                    Ok(resp.map(Either::Left))
                })
            }
            Err(error) => {
                metrics::failure(layer.listener, error.reason());
                tracing::debug!(
                    listener = layer.listener,
                    reason = error.reason(),
                    path = req.uri().path(),
                    "request refused by authentication"
                );
                let resp = if layer.grpc {
                    grpc_refusal(&error, req.uri().path(), req.headers())
                } else {
                    http_refusal(&error, req.uri().path(), req.headers(), layer.render)
                };
                Box::pin(async move { Ok(resp.map(|b| Either::Right(Full::new(b)))) })
            }
        }
    }
}

/// `render`'s answer with the status and challenge set.
fn http_refusal(
    error: &AuthError,
    path: &str,
    request: &HeaderMap,
    render: Render,
) -> Response<Bytes> {
    let mut resp = render(error, path, request);
    *resp.status_mut() = error.http_status();
    let challenge = match error {
        AuthError::Missing => "Bearer realm=\"clew\"",
        AuthError::Invalid => "Bearer realm=\"clew\", error=\"invalid_token\"",
        AuthError::Forbidden(_) => "Bearer realm=\"clew\", error=\"insufficient_scope\"",
    };
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    resp
}

/// A trailers-only gRPC answer: HTTP 200, `grpc-status` 16 UNAUTHENTICATED or 7
/// PERMISSION_DENIED, the message in `grpc-message`.
pub fn grpc_refusal(error: &AuthError, _path: &str, _request: &HeaderMap) -> Response<Bytes> {
    let mut resp = Response::new(Bytes::new());
    *resp.status_mut() = StatusCode::OK;
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from(error.grpc_code()));
    // the messages are ASCII without '%': no percent-encoding needed
    if let Ok(message) = HeaderValue::from_str(&error.to_string()) {
        headers.insert("grpc-message", message);
    }
    resp
}

/// A plain-text refusal, for listeners whose protocol has no error body of its own
/// (Zipkin, remote sampling over HTTP, the agent's metrics endpoint).
pub fn text_refusal(error: &AuthError, _path: &str, _request: &HeaderMap) -> Response<Bytes> {
    let mut resp = Response::new(Bytes::from(format!("{error}\n")));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Every path needs `ingest`.
pub fn ingest_everywhere(_path: &str) -> Need {
    crate::INGEST
}

/// Every path needs `ingest` or `read` (remote sampling).
pub fn ingest_or_read_everywhere(_path: &str) -> Need {
    crate::INGEST_OR_READ
}

/// Every path needs `read`.
pub fn read_everywhere(_path: &str) -> Need {
    crate::READ
}

/// A metrics endpoint: `/healthz` and `/readyz` open, the rest (`/metrics`) needs `read`.
pub fn metrics_endpoint(path: &str) -> Need {
    match path {
        "/healthz" | "/readyz" => Need::Open,
        _ => crate::READ,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuthConfig, TokenConfig};
    use std::convert::Infallible;

    fn auth() -> Arc<Authenticator> {
        Authenticator::new(&AuthConfig {
            tokens: vec![TokenConfig {
                token: Some("read-token-0123456789".into()),
                tenant: "shop".into(),
                scopes: vec!["read".into()],
                ..Default::default()
            }],
        })
        .unwrap()
    }

    async fn call(layer: &AuthLayer, path: &str, token: Option<&str>) -> Response<Bytes> {
        use http_body_util::BodyExt;
        let svc = tower::service_fn(|req: Request<()>| async move {
            let tenant = req
                .extensions()
                .get::<crate::Principal>()
                .map(|p| p.tenant.to_string())
                .unwrap_or_default();
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(tenant))))
        });
        let mut svc = layer.layer(svc);
        let mut req = Request::builder().uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = svc.call(req.body(()).unwrap()).await.unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        Response::from_parts(parts, bytes)
    }

    #[tokio::test]
    async fn http_refusals_carry_the_challenge_and_grants_the_principal() {
        let layer = AuthLayer::http(auth(), "test", metrics_endpoint, text_refusal);
        let open = call(&layer, "/healthz", None).await;
        assert_eq!(open.status(), StatusCode::OK);
        let missing = call(&layer, "/metrics", None).await;
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            missing.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"clew\""
        );
        let wrong = call(&layer, "/metrics", Some("read-token-0123456780")).await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        let ok = call(&layer, "/metrics", Some("read-token-0123456789")).await;
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.body(), "shop");

        let ingest = AuthLayer::http(auth(), "test", ingest_everywhere, text_refusal);
        let forbidden = call(&ingest, "/v1/traces", Some("read-token-0123456789")).await;
        assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
        assert!(std::str::from_utf8(forbidden.body())
            .unwrap()
            .contains("ingest scope"));
        assert!(!std::str::from_utf8(forbidden.body())
            .unwrap()
            .contains("shop"));
    }

    #[tokio::test]
    async fn grpc_refusals_are_statuses() {
        let layer = AuthLayer::grpc(auth(), "test", ingest_everywhere);
        let missing = call(&layer, "/svc/Method", None).await;
        assert_eq!(missing.status(), StatusCode::OK);
        assert_eq!(missing.headers()["grpc-status"], "16");
        let forbidden = call(&layer, "/svc/Method", Some("read-token-0123456789")).await;
        assert_eq!(forbidden.headers()["grpc-status"], "7");
    }
}
