//! Who may call the query port, and how a refusal looks there (the layer itself is
//! `clew_auth::AuthLayer`, shared by every listener).
//!
//! | path | needs |
//! |---|---|
//! | `/healthz`, `/readyz` | nothing (supervisors) |
//! | the UI's pages and files: `/`, `/trace/…`, `/keys/…`, `/map`, `/alerts`, `/inventory`, `/services/…`, `/ui/…` | nothing (they hold no data; every API call they make needs a token) |
//! | `POST /api/v1/purge` (tests only) | `admin` |
//! | everything else: `/api/v1/…`, Jaeger's `/api/…`, `/metrics`, unknown paths | `read` |
//!
//! Every read runs for the caller's tenant ([`Caller`]); `/metrics` shows a token without
//! `admin` its own tenant's span-metric series only and no sample labelled with another
//! tenant ([`MetricsCaller`], `routes::without_other_tenants`).
//!
//! Refusals come in the shape of the API asked: Jaeger's envelope for Jaeger's paths
//! (`{"data": null, …, "errors": [{"code": 401, "msg": …}]}`), `{"error": …}` otherwise.

use axum::body::Bytes;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Response};
use clew_auth::{AuthError, Need, Principal};
use clew_proto::Tenant;

/// The caller's tenant, which every read of a handler passes to the store and the index:
/// the authenticated principal's, or `default` (authentication off). Taken from the
/// request's extensions only, never from its path, query or body.
pub struct Caller(pub Tenant);

impl Caller {
    /// The tenant of a request's extensions (`clew_auth::AuthLayer` put the principal
    /// there).
    pub fn of(extensions: &axum::http::Extensions) -> Tenant {
        extensions
            .get::<Principal>()
            .map(|p| p.tenant.clone())
            .unwrap_or_default()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Caller(Caller::of(&parts.extensions)))
    }
}

/// Whose span-metric series `GET /metrics` shows: `None` (every tenant's) without
/// authentication and to an `admin` token, `Some(tenant)` to any other token — a `read`
/// token of one tenant never sees another tenant's service or operation names there.
pub struct MetricsCaller(pub Option<Tenant>);

impl<S: Send + Sync> FromRequestParts<S> for MetricsCaller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let only = parts
            .extensions
            .get::<Principal>()
            .filter(|p| !p.scopes.contains(&clew_auth::Scope::Admin))
            .map(|p| p.tenant.clone());
        Ok(MetricsCaller(only))
    }
}

/// See the module docs.
pub fn policy(path: &str) -> Need {
    let page = matches!(path, "/" | "/map" | "/alerts" | "/inventory")
        || ["/trace/", "/keys/", "/services/", "/ui/"]
            .iter()
            .any(|p| path.starts_with(p));
    match path {
        "/healthz" | "/readyz" => Need::Open,
        _ if page => Need::Open,
        "/api/v1/purge" => clew_auth::ADMIN,
        _ => clew_auth::READ,
    }
}

/// See the module docs.
pub fn refusal(error: &AuthError, path: &str, _request: &HeaderMap) -> Response<Bytes> {
    let message = error.to_string();
    let body = if crate::jaeger::is_jaeger_path(path) {
        serde_json::json!({
            "data": null, "total": 0, "limit": 0, "offset": 0,
            "errors": [{"code": error.http_status().as_u16(), "msg": message}],
        })
    } else {
        serde_json::json!({ "error": message })
    };
    let mut resp = Response::new(Bytes::from(body.to_string()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_health_are_open_data_is_not() {
        for open in [
            "/",
            "/trace/abc",
            "/keys/order_id/1",
            "/map",
            "/alerts",
            "/inventory",
            "/services/web",
            "/ui/common.js",
            "/healthz",
            "/readyz",
        ] {
            assert_eq!(policy(open), Need::Open, "{open}");
        }
        for read in [
            "/api/v1/search",
            "/api/v1/services",
            "/api/v1/alerts",
            "/api/v1/inventory",
            "/api/traces",
            "/api/services",
            "/metrics",
            "/nothing",
            "/mapx",
        ] {
            assert_eq!(policy(read), clew_auth::READ, "{read}");
        }
        assert_eq!(policy("/api/v1/purge"), clew_auth::ADMIN);
    }

    #[test]
    fn other_tenants_samples_are_left_out_of_metrics() {
        let text = "# HELP a x\n# TYPE a counter\na{tenant=\"shop\"} 1\na{tenant=\"bank\"} 2\n\
                    b{service=\"s\",tenant=\"shop\"} 3\nb{service=\"s\",tenant=\"shopping\"} 4\n\
                    c{service=\"x,tenant=\\\"bank\\\"\"} 5\nd 6\ne{tenant=\"bank\",x=\"tenant=\\\"shop\\\"\"} 7\n";
        let kept = crate::routes::without_other_tenants(text, "shop");
        assert_eq!(
            kept,
            "# HELP a x\n# TYPE a counter\na{tenant=\"shop\"} 1\n\
             b{service=\"s\",tenant=\"shop\"} 3\n\
             c{service=\"x,tenant=\\\"bank\\\"\"} 5\nd 6\n"
        );
    }

    #[tokio::test]
    async fn metrics_show_every_tenant_to_admin_and_without_auth_else_the_callers_own() {
        use clew_auth::Scope;
        let only = |principal: Option<Principal>| async move {
            let (mut parts, ()) = axum::http::Request::new(()).into_parts();
            if let Some(p) = principal {
                parts.extensions.insert(p);
            }
            let MetricsCaller(only) = MetricsCaller::from_request_parts(&mut parts, &())
                .await
                .unwrap();
            only
        };
        let shop = Tenant::parse("shop").unwrap();
        let principal = |scopes: &[Scope]| Principal {
            tenant: shop.clone(),
            scopes: scopes.into(),
        };
        assert_eq!(only(None).await, None, "auth off: every tenant");
        assert_eq!(only(Some(principal(&[Scope::Admin]))).await, None);
        assert_eq!(
            only(Some(principal(&[Scope::Read]))).await,
            Some(shop.clone())
        );
        assert_eq!(
            only(Some(principal(&[Scope::Read, Scope::Ingest]))).await,
            Some(shop.clone())
        );
    }
}
