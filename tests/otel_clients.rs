//! End to end with real OpenTelemetry clients: the Python SDK (gRPC and HTTP/protobuf
//! exporters) and the Rust `opentelemetry-otlp` exporter (gRPC, HTTP/protobuf and
//! HTTP/JSON) send a multi-service trace to a real `clew serve`; the trace is then found by
//! business key, by error, by service and time, and by free text, and fetched whole.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

/// Checks what every client test sends: frontend root with `order_id`, a checkout span and a
/// failing payments database span with an exception event.
async fn assert_checkout_trace_is_findable(
    clew: &Clew,
    trace_id: &str,
    order: &str,
    db_span: &str,
    exception_type: &str,
) {
    // By business key: the key lookup API.
    let by_key = clew
        .wait_for(&format!("/api/v1/keys/order_id/{order}"), WAIT, |b| {
            trace_ids(b).iter().any(|t| t == trace_id)
        })
        .await;
    assert_eq!(
        trace_ids(&by_key),
        vec![trace_id.to_string()],
        "exactly this trace carries {order}"
    );
    let summary = &by_key["traces"][0];
    assert_eq!(summary["root_service"], "frontend");
    assert_eq!(summary["root_operation"], "GET /checkout");
    assert_eq!(summary["span_count"], 3);
    assert!(summary["error_count"].as_u64().unwrap() >= 1, "{summary}");

    // By error in another service than the one carrying the key (conditions on different spans).
    let (status, body) = clew
        .get(&format!(
            "/api/v1/search?service=payments&error=true&key=order_id:{order}"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(trace_ids(&body), vec![trace_id.to_string()]);

    // By service and time range.
    let now = now_unix_nano();
    let (status, body) = clew
        .get(&format!(
            "/api/v1/search?service=frontend&start={}&end={}&limit=1000",
            now - 600_000_000_000,
            now + 60_000_000_000
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(trace_ids(&body).iter().any(|t| t == trace_id), "{body}");
    // A time range that ended before the trace finds nothing of it.
    let (_, body) = clew
        .get(&format!(
            "/api/v1/search?service=frontend&start=1000&end=2000"
        ))
        .await;
    assert!(!trace_ids(&body).iter().any(|t| t == trace_id), "{body}");

    // Free text over the exception message, narrowed to this order.
    let (status, body) = clew
        .get(&format!("/api/v1/search?q=declined&key=order_id:{order}"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(trace_ids(&body), vec![trace_id.to_string()]);

    // The whole trace, every span with its attributes, events and parent links.
    let (status, trace) = clew.get(&format!("/api/v1/traces/{trace_id}")).await;
    assert_eq!(status, 200, "{trace}");
    assert_eq!(trace["spans"].as_array().unwrap().len(), 3, "{trace}");
    let root = span_named(&trace, "GET /checkout");
    let mid = span_named(&trace, "PlaceOrder");
    let db = span_named(&trace, db_span);
    assert_eq!(root["parent_span_id"], Value::Null);
    assert_eq!(mid["parent_span_id"], root["span_id"]);
    assert_eq!(db["parent_span_id"], mid["span_id"]);
    for s in [root, mid, db] {
        assert_eq!(s["trace_id"], trace_id);
    }
    assert_eq!(root["service"], "frontend");
    assert_eq!(mid["service"], "checkout");
    assert_eq!(db["service"], "payments");
    assert_eq!(root["kind"], "server");
    assert_eq!(db["kind"], "client");
    assert_eq!(root["attributes"]["order_id"], order);
    assert_eq!(root["attributes"]["http.route"], "/checkout");
    assert_eq!(root["attributes"]["http.status_code"], 500);
    assert_eq!(root["business_keys"]["order_id"], order);
    assert_eq!(root["resource"]["attributes"]["service.name"], "frontend");
    assert_eq!(db["attributes"]["db.system"], "postgresql");
    assert_eq!(db["status"]["code"], "error");
    let exception = db["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "exception")
        .unwrap_or_else(|| panic!("no exception event in {db}"));
    assert_eq!(exception["attributes"]["exception.type"], exception_type);
    assert!(
        exception["attributes"]["exception.message"]
            .as_str()
            .unwrap()
            .contains("card declined"),
        "{exception}"
    );
    let cart = mid["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "cart.loaded")
        .expect("cart.loaded event");
    assert_eq!(cart["attributes"]["items"], 3);
    let start: u64 = root["start_time_unix_nano"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let end: u64 = root["end_time_unix_nano"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(end >= start && start > 1_600_000_000_000_000_000, "{root}");
}

/// Runs tests/python/send_traces.py with `resource` (`k=v,…`, the SDK's
/// `OTEL_RESOURCE_ATTRIBUTES`); returns the trace id it printed.
fn send_python(protocol: &str, endpoint: &str, order: &str, resource: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/send_traces.py");
    let out = Command::new(python())
        .arg(script)
        .args([
            "--protocol",
            protocol,
            "--endpoint",
            endpoint,
            "--order-id",
            order,
            "--run-id",
            "python",
        ])
        .env("OTEL_RESOURCE_ATTRIBUTES", resource)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python sender failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trace_id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(trace_id.len(), 32, "python printed {trace_id:?}");
    trace_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Python OpenTelemetry SDK (scripts/setup-python); scripts/test runs it"]
async fn python_sdk_over_grpc_and_http_protobuf() {
    let clew = Clew::start(&[]);
    for (protocol, endpoint) in [
        ("grpc", clew.otlp_grpc_url()),
        ("http", format!("http://{}", clew.otlp_http)),
    ] {
        let order = unique(&format!("py-{protocol}"));
        let trace_id = send_python(protocol, &endpoint, &order, "");
        assert_checkout_trace_is_findable(
            &clew,
            &trace_id,
            &order,
            "SELECT payments",
            "RuntimeError",
        )
        .await;
    }
}

mod rust_sdk {
    use opentelemetry::trace::{
        Span as _, SpanKind, Status, TraceContextExt, Tracer, TracerProvider as _,
    };
    use opentelemetry::{Context, KeyValue};
    use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use opentelemetry_sdk::Resource;

    pub enum Transport {
        Grpc,
        HttpProtobuf,
        HttpJson,
    }

    fn provider(
        service: &str,
        transport: &Transport,
        grpc: &str,
        http: &str,
        resource: &[KeyValue],
    ) -> SdkTracerProvider {
        let exporter = match transport {
            Transport::Grpc => SpanExporter::builder()
                .with_tonic()
                .with_endpoint(grpc)
                .build(),
            Transport::HttpProtobuf => SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(http)
                .build(),
            Transport::HttpJson => SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpJson)
                .with_endpoint(http)
                .build(),
        }
        .expect("exporter");
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                Resource::builder()
                    .with_service_name(service.to_string())
                    .with_attributes(resource.iter().cloned())
                    .build(),
            )
            .build()
    }

    /// The `telemetry.sdk.version` this SDK puts on its resources.
    pub fn sdk_version() -> String {
        Resource::builder()
            .build()
            .get(&opentelemetry::Key::from_static_str(
                "telemetry.sdk.version",
            ))
            .expect("the SDK names its version")
            .to_string()
    }

    /// Sends the checkout trace; returns its trace id once every provider has flushed.
    pub fn send(transport: Transport, grpc: &str, http: &str, order: &str) -> String {
        send_with(transport, grpc, http, order, &[])
    }

    /// [`send`] with more resource attributes on every service.
    pub fn send_with(
        transport: Transport,
        grpc: &str,
        http: &str,
        order: &str,
        resource: &[KeyValue],
    ) -> String {
        let front = provider("frontend", &transport, grpc, http, resource);
        let check = provider("checkout", &transport, grpc, http, resource);
        let pay = provider("payments", &transport, grpc, http, resource);
        let t_front = front.tracer("shop.frontend");
        let t_check = check.tracer("shop.checkout");
        let t_pay = pay.tracer("shop.payments");

        let mut root = t_front
            .span_builder("GET /checkout")
            .with_kind(SpanKind::Server)
            .start(&t_front);
        root.set_attribute(KeyValue::new("order_id", order.to_string()));
        root.set_attribute(KeyValue::new("http.route", "/checkout"));
        root.set_attribute(KeyValue::new("http.status_code", 500i64));
        let trace_id = root.span_context().trace_id().to_string();
        let cx_root = Context::current_with_span(root);
        let mut mid = t_check
            .span_builder("PlaceOrder")
            .with_kind(SpanKind::Server)
            .start_with_context(&t_check, &cx_root);
        mid.add_event("cart.loaded", vec![KeyValue::new("items", 3i64)]);
        let cx_mid = Context::current_with_span(mid);
        let mut db = t_pay
            .span_builder("SELECT payments")
            .with_kind(SpanKind::Client)
            .start_with_context(&t_pay, &cx_mid);
        db.set_attribute(KeyValue::new("db.system", "postgresql"));
        db.add_event(
            "exception",
            vec![
                KeyValue::new("exception.type", "PaymentDeclined"),
                KeyValue::new(
                    "exception.message",
                    format!("card declined for order {order}"),
                ),
            ],
        );
        db.set_status(Status::error("card declined"));
        db.end();
        cx_mid.span().end();
        cx_root.span().set_status(Status::error("payment failed"));
        cx_root.span().end();
        for p in [front, check, pay] {
            p.force_flush().expect("flush");
            p.shutdown().expect("shutdown");
        }
        trace_id
    }
}

async fn rust_sdk_round_trip(transport: rust_sdk::Transport, label: &str) {
    let clew = Clew::start(&[]);
    let order = unique(label);
    let (grpc, http, o) = (clew.otlp_grpc_url(), clew.otlp_http_url(), order.clone());
    // The SDK's batch processor blocks; keep it off the test's async workers.
    let trace_id = tokio::task::spawn_blocking(move || rust_sdk::send(transport, &grpc, &http, &o))
        .await
        .unwrap();
    assert_checkout_trace_is_findable(
        &clew,
        &trace_id,
        &order,
        "SELECT payments",
        "PaymentDeclined",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_over_grpc() {
    rust_sdk_round_trip(rust_sdk::Transport::Grpc, "rs-grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_over_http_protobuf() {
    rust_sdk_round_trip(rust_sdk::Transport::HttpProtobuf, "rs-proto").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_over_http_json() {
    rust_sdk_round_trip(rust_sdk::Transport::HttpJson, "rs-json").await;
}

/// The fleet inventory with the real SDKs: each instance with its SDK language and version
/// (as the SDK itself reports it), its service version and the receivers it used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Python OpenTelemetry SDK (scripts/setup-python); scripts/test runs it"]
async fn inventory_names_each_sdk_with_its_versions_and_receivers() {
    let clew = Clew::start(&[]);
    let python_sdk = {
        let out = Command::new(python())
            .args([
                "-c",
                "from opentelemetry.sdk.version import __version__; print(__version__)",
            ])
            .output()
            .expect("python sdk version");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    assert!(!python_sdk.is_empty());
    let py = unique("py");
    for (protocol, endpoint) in [
        ("grpc", clew.otlp_grpc_url()),
        ("http", format!("http://{}", clew.otlp_http)),
    ] {
        send_python(
            protocol,
            &endpoint,
            &unique("inv"),
            &format!("service.instance.id={py},service.version=3.2.1"),
        );
    }
    let rs = unique("rs");
    let (grpc, http, attrs) = (
        clew.otlp_grpc_url(),
        clew.otlp_http_url(),
        vec![
            opentelemetry::KeyValue::new("service.instance.id", rs.clone()),
            opentelemetry::KeyValue::new("service.version", "0.9.0"),
        ],
    );
    tokio::task::spawn_blocking(move || {
        rust_sdk::send_with(rust_sdk::Transport::Grpc, &grpc, &http, "inv-rs", &attrs)
    })
    .await
    .unwrap();

    let answer = clew
        .wait_for("/api/v1/inventory?service=checkout", WAIT, |a| {
            a["services"][0]["instances"].as_array().map_or(0, Vec::len) == 2
        })
        .await;
    let instances = answer["services"][0]["instances"].as_array().unwrap();
    let of = |id: &str| instances.iter().find(|i| i["instance"] == id).unwrap();
    let p = of(&py);
    assert_eq!(p["sdk_language"], "python", "{p}");
    assert_eq!(p["sdk_name"], "opentelemetry");
    assert_eq!(p["sdk_version"], python_sdk.as_str());
    assert_eq!(p["service_version"], "3.2.1");
    assert_eq!(
        p["receivers"],
        serde_json::json!(["otlp_grpc", "otlp_http"])
    );
    assert_eq!(p["spans_total"], 2, "one checkout span per run");
    let r = of(&rs);
    assert_eq!(r["sdk_language"], "rust", "{r}");
    assert_eq!(r["sdk_version"], rust_sdk::sdk_version().as_str());
    assert_eq!(r["service_version"], "0.9.0");
    assert_eq!(r["receivers"], serde_json::json!(["otlp_grpc"]));
    assert_eq!(
        answer["services"][0]["service_versions"],
        serde_json::json!(["3.2.1", "0.9.0"])
    );
    // the SDK filter
    let (_, rust_only) = clew.get("/api/v1/inventory?sdk=rust").await;
    let services = rust_only["services"].as_array().unwrap();
    assert_eq!(
        services.len(),
        3,
        "frontend, checkout, payments: {rust_only:#}"
    );
    assert!(services.iter().all(|s| s["instances"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["instance"] == rs.as_str())));
}
