//! The query API's own Prometheus metrics.
//!
//! - `clew_query_requests_total{endpoint, status}`: answered requests.
//! - `clew_query_seconds{endpoint}`: time to answer.
//!
//! `endpoint` is the route template (`/api/v1/traces/{trace_id}`), never the concrete path,
//! and `status` is the numeric HTTP status: both are bounded sets.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

pub const REQUESTS_TOTAL: &str = "clew_query_requests_total";
pub const SECONDS: &str = "clew_query_seconds";

/// `endpoint` label of requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// Registers descriptions with whatever recorder the binary installed.
pub fn describe() {
    metrics::describe_counter!(
        REQUESTS_TOTAL,
        "query API requests answered, by endpoint and HTTP status"
    );
    metrics::describe_histogram!(
        SECONDS,
        metrics::Unit::Seconds,
        "time to answer a query API request, by endpoint"
    );
}

/// Middleware: counts and times every request by route template and status.
pub async fn track(request: Request, next: Next) -> Response {
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let endpoint = endpoint.unwrap_or_else(|| UNMATCHED.to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(REQUESTS_TOTAL, "endpoint" => endpoint.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(SECONDS, "endpoint" => endpoint).record(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::get;
    use axum::Router;
    use metrics::{
        Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    };
    use tower::ServiceExt;

    /// Remembers `name{label=value,…}` of every counter and histogram registered.
    #[derive(Default)]
    struct Keys(Mutex<Vec<String>>);

    impl Keys {
        fn note(&self, key: &Key) {
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            self.0
                .lock()
                .unwrap()
                .push(format!("{}{{{}}}", key.name(), labels.join(",")));
        }
    }

    impl Recorder for Keys {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            self.note(key);
            Counter::noop()
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            self.note(key);
            Gauge::noop()
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            self.note(key);
            Histogram::noop()
        }
    }

    #[test]
    fn labels_are_route_templates_and_statuses() {
        let keys = Keys::default();
        metrics::with_local_recorder(&keys, || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            runtime.block_on(async {
                let app = Router::new()
                    .route("/api/v1/traces/{trace_id}", get(|| async { "trace" }))
                    .layer(axum::middleware::from_fn(super::track));
                for uri in ["/api/v1/traces/0123abc", "/no/such/path"] {
                    let request = Request::builder().uri(uri).body(Body::empty()).unwrap();
                    app.clone().oneshot(request).await.unwrap();
                }
            });
        });
        let keys = keys.0.into_inner().unwrap();
        assert_eq!(
            keys,
            [
                "clew_query_requests_total{endpoint=/api/v1/traces/{trace_id},status=200}",
                "clew_query_seconds{endpoint=/api/v1/traces/{trace_id}}",
                "clew_query_requests_total{endpoint=unmatched,status=404}",
                "clew_query_seconds{endpoint=unmatched}",
            ]
        );
    }
}
