//! The browser UI in real headless Chromium: this test starts the real binary, sends traces
//! over OTLP/HTTP (protobuf), waits until they are searchable, then runs the browser test
//! `tests/ui/ui.test.mjs` (playwright-core driving Debian's chromium) against it. The browser
//! test saves screenshots (to `docs/screenshots/` when `CLEW_UPDATE_SCREENSHOTS=1`, else to a
//! temporary directory).
//!
//! Needs `/usr/bin/chromium` and playwright-core in the cache; `scripts/setup-browser`
//! installs both and `scripts/test` runs this test.

mod common;

use std::process::Command;
use std::time::Duration;

use clew_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use clew_proto::otlp::common::v1::{any_value, AnyValue, KeyValue};
use clew_proto::otlp::resource::v1::Resource;
use clew_proto::otlp::trace::v1::span::Event;
use clew_proto::otlp::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
use common::*;
use prost::Message;

const XSS_IMG: &str = r#"<img src=x onerror="window.__xss=1">"#;
const XSS_SCRIPT: &str = "<script>window.__xss=1</script>";
const XSS_SVG: &str = "<svg onload=window.__xss=1></svg>";

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

struct SpanSpec<'a> {
    id: u64,
    parent: Option<u64>,
    name: &'a str,
    /// Offset from the trace start and duration, in milliseconds.
    at_ms: u64,
    ms: u64,
    attrs: Vec<KeyValue>,
    events: Vec<Event>,
    error: bool,
}

fn span(trace: [u8; 16], start: u64, s: SpanSpec) -> Span {
    let begin = start + s.at_ms * 1_000_000;
    Span {
        trace_id: trace.to_vec(),
        span_id: s.id.to_be_bytes().to_vec(),
        parent_span_id: s
            .parent
            .map(|p| p.to_be_bytes().to_vec())
            .unwrap_or_default(),
        name: s.name.into(),
        kind: 2,
        start_time_unix_nano: begin,
        end_time_unix_nano: begin + s.ms * 1_000_000,
        attributes: s.attrs,
        events: s.events,
        status: s.error.then(|| Status {
            code: status::StatusCode::Error as i32,
            message: "failed".into(),
        }),
        ..Default::default()
    }
}

fn spec<'a>(id: u64, parent: Option<u64>, name: &'a str, at_ms: u64, ms: u64) -> SpanSpec<'a> {
    SpanSpec {
        id,
        parent,
        name,
        at_ms,
        ms,
        attrs: vec![],
        events: vec![],
        error: false,
    }
}

fn request(by_service: Vec<(&str, Vec<Span>)>) -> ExportTraceServiceRequest {
    request_with(
        by_service
            .into_iter()
            .map(|(service, spans)| {
                (
                    vec![kv("service.name", service), kv("host.name", "test-host")],
                    spans,
                )
            })
            .collect(),
    )
}

/// One resource (its attributes) per entry.
fn request_with(by_resource: Vec<(Vec<KeyValue>, Vec<Span>)>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: by_resource
            .into_iter()
            .map(|(attributes, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes,
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

fn trace_id() -> [u8; 16] {
    let mut t: [u8; 16] = rand::random();
    t[0] |= 1;
    t
}

async fn send(clew: &Clew, req: ExportTraceServiceRequest) {
    let resp = reqwest::Client::new()
        .post(clew.otlp_http_url())
        .header("content-type", "application/x-protobuf")
        .body(req.encode_to_vec())
        .send()
        .await
        .expect("otlp http reachable");
    assert_eq!(resp.status().as_u16(), 200, "otlp export failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and playwright-core (scripts/setup-browser); scripts/test runs it"]
async fn search_trace_keys_and_map_pages_in_headless_chromium() {
    // every error signature fires at once, and stays firing for the test: the alert board
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("clew.toml");
    std::fs::write(
        &config,
        "[alerting]\n[[alerting.error_rules]]\nname = \"errors\"\nmin_count = 1\nwindow = \"1h\"\nseverity = \"critical\"\n",
    )
    .unwrap();
    let clew = Clew::start(&["--config", config.to_str().unwrap()]);
    let now = now_unix_nano();

    // 1. an order that fails in the database: frontend → checkout → payments → db (exception),
    //    plus an inventory span whose parent never arrived (an orphan)
    let order = unique("order");
    let checkout_id = trace_id();
    let start = now - 60_000_000_000;
    let mut root = spec(1, None, "GET /checkout", 0, 120);
    root.attrs = vec![
        kv("order_id", &order),
        kv("http.url", "https://shop.example/checkout?id=1"),
    ];
    let mut charge = spec(3, Some(2), "Charge", 10, 90);
    charge.error = true;
    let mut db = spec(4, Some(3), "SELECT payments", 20, 60);
    db.error = true;
    db.attrs = vec![
        kv("db.system", "postgresql"),
        kv("db.statement", "SELECT * FROM payments WHERE order_id = $1"),
    ];
    db.events = vec![Event {
        time_unix_nano: start + 70_000_000,
        name: "exception".into(),
        attributes: vec![
            kv("exception.type", "PaymentDeclinedError"),
            kv("exception.message", "card declined for order"),
            kv("exception.stacktrace", "PaymentDeclinedError: card declined for order\n    at charge (payments.js:42)\n    at run (db.js:7)"),
        ],
        ..Default::default()
    }];
    send(
        &clew,
        request(vec![
            ("frontend", vec![span(checkout_id, start, root)]),
            (
                "checkout",
                vec![span(
                    checkout_id,
                    start,
                    spec(2, Some(1), "PlaceOrder", 5, 100),
                )],
            ),
            (
                "payments",
                vec![
                    span(checkout_id, start, charge),
                    span(checkout_id, start, db),
                ],
            ),
            (
                "inventory",
                vec![span(
                    checkout_id,
                    start,
                    spec(9, Some(77), "Reserve", 30, 10),
                )],
            ),
        ]),
    )
    .await;

    // 2. a healthy, slower order, a minute earlier
    let healthy_id = trace_id();
    let start_b = now - 120_000_000_000;
    let mut root_b = spec(1, None, "GET /checkout", 0, 400);
    root_b.attrs = vec![kv("order_id", &unique("order-ok"))];
    send(
        &clew,
        request(vec![
            ("frontend", vec![span(healthy_id, start_b, root_b)]),
            (
                "checkout",
                vec![span(
                    healthy_id,
                    start_b,
                    spec(2, Some(1), "PlaceOrder", 5, 300),
                )],
            ),
        ]),
    )
    .await;

    // 3. HTML and script everywhere a span carries a string
    let xss_id = trace_id();
    let xss_order = unique("xss");
    let start_x = now - 30_000_000_000;
    let mut xroot = spec(1, None, XSS_SCRIPT, 0, 50);
    xroot.attrs = vec![
        kv("order_id", &xss_order),
        kv(XSS_IMG, XSS_SCRIPT),
        kv("link.js", "javascript:window.__xss=1"),
        kv(
            "link.data",
            "data:text/html,<script>window.__xss=1</script>",
        ),
    ];
    xroot.events = vec![Event {
        time_unix_nano: start_x + 1_000_000,
        name: XSS_IMG.into(),
        attributes: vec![kv("message", XSS_SCRIPT)],
        ..Default::default()
    }];
    let mut xchild = spec(2, Some(1), XSS_IMG, 5, 20);
    xchild.error = true;
    xchild.events = vec![Event {
        time_unix_nano: start_x + 6_000_000,
        name: "exception".into(),
        attributes: vec![
            kv("exception.type", XSS_SVG),
            kv("exception.message", XSS_IMG),
            kv("exception.stacktrace", XSS_SCRIPT),
        ],
        ..Default::default()
    }];
    send(
        &clew,
        request(vec![
            (XSS_IMG, vec![span(xss_id, start_x, xroot)]),
            (XSS_SVG, vec![span(xss_id, start_x, xchild)]),
        ]),
    )
    .await;

    // 4. a 10,000-span trace, three hours ago (outside the one-hour searches above)
    let big_id = trace_id();
    let start_big = now - 3 * 3_600_000_000_000;
    let big: Vec<Span> = (0..10_000u64)
        .map(|i| {
            let parent = if i == 0 { None } else { Some((i - 1) / 4 + 1) };
            span(
                big_id,
                start_big,
                spec(i + 1, parent, &format!("op-{}", i % 7), i / 10, 5),
            )
        })
        .collect();
    send(&clew, request(vec![("bulk", big)])).await;

    let big_path = format!("/api/v1/traces/{}", hex::encode(big_id));
    clew.wait_for(&big_path, Duration::from_secs(60), |b| {
        b["span_count"] == 10_000
    })
    .await;
    clew.wait_for(
        "/api/v1/search?lookback=1h&limit=100",
        Duration::from_secs(30),
        |b| b["traces"].as_array().is_some_and(|t| t.len() == 3),
    )
    .await;

    // the three error signatures: Charge (status message only), the database exception,
    // and the hostile one
    clew.wait_for("/api/v1/alerts", Duration::from_secs(30), |b| {
        b["alerts"].as_array().is_some_and(|a| a.len() == 3)
    })
    .await;
    // 5. a second clew for the service page: storefront's requests over the last 50
    //    minutes (20-50 a minute, a slow and failing stretch 20-15 minutes ago)
    let red = Clew::start(&[]);
    let mut red_spans = Vec::new();
    let (mut red_calls, mut red_errors) = (0u64, 0u64);
    for k in 0..50u64 {
        // a second into each clock minute, so each k is one point of the chart
        let minute_start = (now / 60_000_000_000 - (50 - k)) * 60_000_000_000 + 1_000_000_000;
        let bad = (30..35).contains(&k);
        for i in 0..(20 + (k % 7) * 5) {
            let mut s = spec(
                1,
                None,
                "GET /products",
                i * 100,
                if bad { 350 + i * 10 } else { 15 + (i % 5) * 10 },
            );
            s.error = (bad && i % 4 == 0) || (i == 0 && k % 10 == 0);
            red_calls += 1;
            red_errors += u64::from(s.error);
            red_spans.push(span(trace_id(), minute_start, s));
        }
    }
    send(&red, request(vec![("storefront", red_spans)])).await;

    // 6. a third clew for the inventory page (instances quiet after 5 s): storefront's
    //    web-2 on an older SDK, silent by the time the page opens (the browser test sends
    //    web-1's span itself, just before), and an instance made of hostile values
    let inv_config = dir.path().join("inventory.toml");
    std::fs::write(&inv_config, "[inventory]\nquiet_after_secs = 5\n").unwrap();
    let inv = Clew::start(&["--config", inv_config.to_str().unwrap()]);
    let sdk = |host: &str, version: &str, service_version: &str| {
        vec![
            kv("service.name", "storefront"),
            kv("host.name", host),
            kv("service.version", service_version),
            kv("telemetry.sdk.name", "opentelemetry"),
            kv("telemetry.sdk.language", "python"),
            kv("telemetry.sdk.version", version),
        ]
    };
    let one = |id: u64| vec![span(trace_id(), now, spec(id, None, "GET /", 0, 5))];
    send(
        &inv,
        request_with(vec![
            (sdk("web-2", "1.30.0", "1.9.0"), one(1)),
            (
                vec![
                    kv("service.name", XSS_IMG),
                    kv("host.name", XSS_SVG),
                    kv("service.version", XSS_SCRIPT),
                    kv("telemetry.sdk.language", XSS_IMG),
                ],
                one(2),
            ),
        ]),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;

    let expected = serde_json::json!({
        "checkout_trace": hex::encode(checkout_id),
        "healthy_trace": hex::encode(healthy_id),
        "xss_trace": hex::encode(xss_id),
        "big_trace": hex::encode(big_id),
        "order": order,
        "xss_order": xss_order,
        "checkout_span_count": 5,
        "error_span_id": hex::encode(4u64.to_be_bytes()),
        "orphan_span_id": hex::encode(9u64.to_be_bytes()),
        "edges": [
            {"parent": "checkout", "child": "payments", "call_count": 1, "error_count": 1},
            {"parent": "frontend", "child": "checkout", "call_count": 2, "error_count": 0},
            {"parent": XSS_IMG, "child": XSS_SVG, "call_count": 1, "error_count": 1},
        ],
        "payloads": [XSS_IMG, XSS_SCRIPT, XSS_SVG],
        "alert_count": 3,
        "payments_red": {"calls": 2, "errors": 2},
        "red": {
            "base": format!("http://{}", red.http),
            "service": "storefront",
            "calls": red_calls,
            "errors": red_errors,
            "minutes": 50,
        },
        "inventory": {
            "base": format!("http://{}", inv.http),
            "otlp_http": inv.otlp_http_url(),
            "newest_sdk": "1.45.2",
        },
    });
    let repo = env!("CARGO_MANIFEST_DIR");
    let status = Command::new("node")
        .current_dir(repo)
        .arg("tests/ui/ui.test.mjs")
        .arg(format!("http://{}", clew.http))
        .arg(expected.to_string())
        .status()
        .expect("run node (scripts/setup-browser checks it is installed)");
    assert!(status.success(), "the browser test failed: {status}");
}

/// The UI of a clew with `[auth]`: the page asks for a token once, shows the results with
/// the read token, says why a wrong token is refused, and says "not authorised" for a
/// token without the read scope (`tests/ui/auth.test.mjs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and playwright-core (scripts/setup-browser); scripts/test runs it"]
async fn token_prompt_with_auth_in_headless_chromium() {
    const INGEST: &str = "ui-ingest-token-0123456789";
    const READ: &str = "ui-read-token-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("clew.toml");
    std::fs::write(
        &config,
        format!(
            "[[auth.tokens]]\ntoken = \"{INGEST}\"\ntenant = \"shop\"\nscopes = [\"ingest\"]\n\
             [[auth.tokens]]\ntoken = \"{READ}\"\ntenant = \"shop\"\nscopes = [\"read\"]\n"
        ),
    )
    .unwrap();
    let clew = Clew::start(&["--config", config.to_str().unwrap()]);
    let order = unique("order-auth");
    let trace = trace_id();
    let mut root = spec(1, None, "GET /checkout", 0, 50);
    root.attrs = vec![kv("order_id", &order)];
    let resp = reqwest::Client::new()
        .post(clew.otlp_http_url())
        .header("content-type", "application/x-protobuf")
        .bearer_auth(INGEST)
        .body(
            request(vec![(
                "frontend",
                vec![span(trace, now_unix_nano() - 1_000_000_000, root)],
            )])
            .encode_to_vec(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        200,
        "otlp export with the ingest token"
    );
    // searchable (asked with the read token)
    let path = format!("/api/v1/keys/order_id/{order}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let found: serde_json::Value = reqwest::Client::new()
            .get(clew.api_url(&path))
            .bearer_auth(READ)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or_default();
        if !trace_ids(&found).is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never searchable");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let expected = serde_json::json!({
        "order": order,
        "trace": hex::encode(trace),
        "read_token": READ,
        "ingest_token": INGEST,
    });
    let status = Command::new("node")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("tests/ui/auth.test.mjs")
        .arg(format!("http://{}", clew.http))
        .arg(expected.to_string())
        .status()
        .expect("run node (scripts/setup-browser checks it is installed)");
    assert!(status.success(), "the browser auth test failed: {status}");
}
