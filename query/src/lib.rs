//! # clew-query: the native JSON query API
//!
//! The read side of clew. Every search runs in two phases against the two seams of
//! `clew-store`, then assembles what it found:
//!
//! ```text
//!  GET /api/v1/search?…  ─▶ params ─▶ find_trace_ids ─────▶ fetch_traces ──────▶ assemble ─▶ json
//!                          (400 on   (TraceIndex: ids,     (SpanStore: one row   (tree order,
//!                           bad input) newest first)        read per trace)       summaries)
//!  GET /api/v1/traces/{id} ─────────────────────────────▶ fetch_traces ──────▶ assemble ─▶ json
//! ```
//!
//! - [`params`]: query-string parsing and validation into a `TraceQuery`.
//! - [`find_trace_ids`], [`fetch_traces`]: the two phases, each bounded by a timeout.
//! - [`assemble`]: span tree order (safe against cycles and orphans) and trace summaries.
//! - [`dependencies`]: service → service call counts for the service map.
//! - [`json`]: the response shapes (timestamps as decimal strings).
//! - [`error`]: the one error type and its one mapping to HTTP.
//! - [`metrics`]: `clew_query_*` metrics.
//! - [`jaeger`]: Jaeger's HTTP query API (`/api/services`, `/api/traces`, …) over the same
//!   two phases, answering with Jaeger's envelope, span shape and error texts; and
//!   [`jaeger::storage_grpc`], Jaeger v2's remote-storage gRPC API (`jaeger.storage.v2`)
//!   giving the same answers as OTLP, on its own listener (`query.jaeger_storage_grpc_addr`,
//!   by default 127.0.0.1:17271).
//! - `POST /api/v1/purge` exists only with `--enable-purge-for-tests` and deletes every
//!   stored trace (for Jaeger's storage integration tests).
//! - `routes`: the handlers, and the browser UI (`src/ui/`: static HTML, CSS and JavaScript
//!   embedded in the binary; pages at `/`, `/trace/{id}`, `/keys/{name}/{value}`, `/map`,
//!   `/alerts`, `/services/{service}`, `/inventory`).
//!
//! - [`auth`]: which paths need which scope when `[auth]` is on (the layer is
//!   `clew_auth::AuthLayer`, the same on every listener): the UI's pages and `/healthz`,
//!   `/readyz` are open, the APIs and `/metrics` need `read`, the purge `admin`.
//!
//! The address it listens on is the binary's to choose (`query.http_addr`, by default
//! 127.0.0.1:16686). Every response carries a strict Content-Security-Policy and
//! `X-Content-Type-Options: nosniff`: span data is returned as JSON string data, verbatim,
//! and never as HTML.

pub mod assemble;
pub mod auth;
pub mod dependencies;
pub mod error;
pub mod fetch_traces;
pub mod find_trace_ids;
pub mod jaeger;
pub mod json;
pub mod metrics;
pub mod params;
mod routes;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderName, HeaderValue};
use axum::routing::get;
use axum::Router;
pub use clew_store::trace_index::span_doc::IndexedAttributes;
use clew_store::{SpanStore, TraceIndex};
use tower_http::set_header::SetResponseHeaderLayer;

pub use error::{Error, Result};

/// How long one store or index call may take before the request fails with a 503.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Renders the process's Prometheus metrics as text (the binary installs the exporter):
/// with `None` every tenant's span-metric series, with `Some(tenant)` that tenant's only
/// (a caller without the `admin` scope, see [`auth::MetricsCaller`]).
pub type MetricsRender = Arc<dyn Fn(Option<&clew_proto::Tenant>) -> String + Send + Sync>;

/// A tenant's alert board as JSON (`GET /api/v1/alerts`), from whatever evaluates alerts
/// in this process (the binary wires the collector's error-signature alerts in).
pub type AlertsRender = Arc<dyn Fn(&clew_proto::Tenant) -> serde_json::Value + Send + Sync>;
/// The filters of `GET /api/v1/inventory` (each one given must hold).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InventoryQuery {
    /// Exact service name.
    pub service: Option<String>,
    /// SDK language or name, optionally `@version` (`python@1.45.2`).
    pub sdk: Option<String>,
    /// Exact `service.version`.
    pub version: Option<String>,
    /// Only instances silent at least this long.
    pub quiet_for: Option<Duration>,
}

/// A tenant's fleet inventory as JSON (`GET /api/v1/inventory`), from the collector in
/// this process (the binary wires it in).
pub type InventoryRender =
    Arc<dyn Fn(&clew_proto::Tenant, &InventoryQuery) -> serde_json::Value + Send + Sync>;

/// One minute of a service's requests, for `GET /api/v1/services/{service}/red`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RedPoint {
    /// Start of the minute, unix seconds.
    pub t: u64,
    pub calls: u64,
    pub errors: u64,
    /// `null` in a minute without calls.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// A tenant's service's last hour, one point per minute oldest first, from the collector's
/// span metrics (the binary wires it); `None` for a service no stored span of the tenant
/// named.
pub type ServiceRed = Arc<dyn Fn(&clew_proto::Tenant, &str) -> Option<Vec<RedPoint>> + Send + Sync>;

/// The `Content-Security-Policy` of every response.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'";

/// What the handlers share.
#[derive(Clone)]
pub struct QueryState {
    pub store: Arc<dyn SpanStore>,
    pub index: Arc<dyn TraceIndex>,
    pub metrics_render: MetricsRender,
    /// Upper bound for each store or index call; see [`DEFAULT_TIMEOUT`].
    pub timeout: Duration,
    /// What the index can search by `attr=`; `None` (the default) checks nothing.
    pub indexed: Option<Arc<Indexed>>,
    /// Serve `POST /api/v1/purge`, which deletes every stored trace (tests only).
    pub purge_for_tests: bool,
    /// The alert board; `None`: this process evaluates no alerts.
    pub alerts: Option<AlertsRender>,
    /// Per-service RED history; `None` when span metrics are off (the RED API answers 404).
    pub service_red: Option<ServiceRed>,
    /// The fleet inventory; `None` when this process keeps none.
    pub inventory: Option<InventoryRender>,
    /// Who may call the API (both listeners); off by default.
    pub auth: Arc<clew_auth::Authenticator>,
}

/// The attributes the trace index holds terms for, as configured where spans are indexed
/// (by default every attribute, values up to a size limit). An `attr=` condition the index
/// cannot hold could never match, so the search refuses it with a message instead of
/// answering "no traces".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Indexed {
    /// `indexed_attributes` of the configuration.
    pub attributes: IndexedAttributes,
    /// `collector.business_keys`: `attr=` on one of these searches the business key.
    pub business_keys: Vec<String>,
}

impl Default for Indexed {
    /// Nothing indexed besides the fixed fields.
    fn default() -> Self {
        Indexed {
            attributes: IndexedAttributes::Listed(Arc::from([])),
            business_keys: Vec::new(),
        }
    }
}

impl QueryState {
    pub fn new(
        store: Arc<dyn SpanStore>,
        index: Arc<dyn TraceIndex>,
        metrics_render: MetricsRender,
    ) -> Self {
        QueryState {
            store,
            index,
            metrics_render,
            timeout: DEFAULT_TIMEOUT,
            indexed: None,
            purge_for_tests: false,
            alerts: None,
            service_red: None,
            inventory: None,
            auth: clew_auth::Authenticator::disabled(),
        }
    }

    /// Requires tokens as `auth` says (see [`auth`]).
    pub fn with_auth(mut self, auth: Arc<clew_auth::Authenticator>) -> Self {
        self.auth = auth;
        self
    }

    /// Serves `GET /api/v1/services/{service}/red` from `red`.
    pub fn with_service_red(mut self, red: ServiceRed) -> Self {
        self.service_red = Some(red);
        self
    }

    /// Checks `attr=` conditions against what is indexed (see [`Indexed`]).
    pub fn with_indexed(mut self, indexed: Indexed) -> Self {
        self.indexed = Some(Arc::new(indexed));
        self
    }

    /// Serves `POST /api/v1/purge`, which DESTROYS EVERY STORED TRACE: only for storage
    /// conformance suites (`clew serve --enable-purge-for-tests`).
    pub fn with_purge_for_tests(mut self, enabled: bool) -> Self {
        self.purge_for_tests = enabled;
        self
    }

    /// Serves `GET /api/v1/alerts` from `alerts`.
    pub fn with_alerts(mut self, alerts: AlertsRender) -> Self {
        self.alerts = Some(alerts);
        self
    }

    /// Serves `GET /api/v1/inventory` from `inventory`.
    pub fn with_inventory(mut self, inventory: InventoryRender) -> Self {
        self.inventory = Some(inventory);
        self
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// All endpoints, with metrics and security headers on every response (errors and
/// unknown paths included).
pub fn router(state: QueryState) -> Router {
    metrics::describe();
    let auth = clew_auth::AuthLayer::http(state.auth.clone(), "query", auth::policy, auth::refusal);
    let mut router: Router<QueryState> = Router::new();
    if state.purge_for_tests {
        router = router.route("/api/v1/purge", axum::routing::post(routes::purge));
    }
    router
        .route("/", get(routes::search_page))
        .route("/trace/{trace_id}", get(routes::trace_page))
        .route("/keys/{name}/{value}", get(routes::keys_page))
        .route("/map", get(routes::map_page))
        .route("/alerts", get(routes::alerts_page))
        .route("/inventory", get(routes::inventory_page))
        .route("/services/{service}", get(routes::service_page))
        .route("/ui/{name}", get(routes::ui_asset))
        .route("/api/v1/dependencies", get(routes::dependencies))
        .route("/api/v1/alerts", get(routes::alerts))
        .route("/api/v1/inventory", get(routes::inventory))
        .route("/api/v1/traces/{trace_id}", get(routes::trace_by_id))
        .route("/api/v1/search", get(routes::search))
        .route("/api/v1/keys/{name}/{value}", get(routes::key_lookup))
        .route("/api/v1/services", get(routes::services))
        .route(
            "/api/v1/services/{service}/operations",
            get(routes::operations),
        )
        .route("/api/v1/services/{service}/red", get(routes::service_red))
        .merge(jaeger::routes())
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .fallback(routes::no_route)
        .method_not_allowed_fallback(routes::wrong_method)
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(auth)
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("referrer-policy"),
            HeaderValue::from_static("no-referrer"),
        ))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` completes, then finishes the requests in
/// flight and returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: QueryState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "query api listening");
    }
    clew_net::serve(
        "query api",
        listener,
        clew_net::Protocol::Http,
        router(state),
        shutdown,
    )
    .await
}
