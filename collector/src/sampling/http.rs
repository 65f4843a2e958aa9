//! The HTTP sampling endpoint, as Jaeger v2's `remote_sampling` extension serves it: every
//! path (`/api/sampling`, `/sampling` — the default of OpenTelemetry's `jaeger_remote`
//! samplers —, `/`) answers `?service=NAME` with the strategy's JSON
//! ([`super::strategies::to_jaeger_json`]). Jaeger's status codes and bodies: 400
//! `'service' parameter must be provided once` unless exactly one `service` is given,
//! 500 `cannot marshall to JSON` for a rate limit above the Thrift form's int16.

use std::future::Future;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use clew_auth::{AuthLayer, Authenticator};
use tokio::net::TcpListener;

use super::strategies::to_jaeger_json;
use super::StrategyStore;
use crate::error::Result;
use crate::metrics;
use crate::receiver::serve_http;

/// The endpoint's routes (also mounted by `clew agent` for its local SDKs). With `[auth]`,
/// a request needs an `ingest` or a `read` token (SDKs hold ingest tokens).
pub fn router(store: Arc<StrategyStore>, auth: Arc<Authenticator>) -> Router {
    Router::new()
        .fallback(answer)
        .layer(AuthLayer::http(
            auth,
            "sampling_http",
            clew_auth::layer::ingest_or_read_everywhere,
            clew_auth::layer::text_refusal,
        ))
        .with_state(store)
}

/// Serves [`router`] on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    store: Arc<StrategyStore>,
    auth: Arc<Authenticator>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    serve_http(
        "serve sampling http",
        listener,
        router(store, auth),
        shutdown,
    )
    .await
}

async fn answer(
    State(store): State<Arc<StrategyStore>>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let mut services = params.iter().filter(|(k, _)| k == "service");
    let service = match (services.next(), services.next()) {
        (Some((_, s)), None) => s,
        _ => {
            return go_error(
                StatusCode::BAD_REQUEST,
                "'service' parameter must be provided once",
            )
        }
    };
    let strategies = store.strategies();
    match to_jaeger_json(strategies.for_service(service)) {
        Some(json) => {
            metrics::sampling_request("http");
            (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                json,
            )
                .into_response()
        }
        None => go_error(StatusCode::INTERNAL_SERVER_ERROR, "cannot marshall to JSON"),
    }
}

/// Go's `http.Error`: the text and a newline, as plain text.
fn go_error(status: StatusCode, text: &str) -> Response {
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        format!("{text}\n"),
    )
        .into_response()
}
