//! Error-signature alerts against a real Alertmanager (Debian's `prometheus-alertmanager`,
//! `scripts/alertmanager-fetch`) and a real webhook receiver (a small HTTP server here):
//! the real `clew serve` binary ingests error spans over OTLP/HTTP and posts alerts.
//!
//! Windows are short (a few seconds) to keep the suite fast; nothing asserts on time.
//! `scripts/test` runs these (`--ignored`); `bench_first_error_to_alertmanager` is the
//! BENCHMARKS.md measurement, run on its own.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::{Json, Router};
use clew_proto::otlp::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use clew_proto::otlp::resource::v1::Resource;
use clew_proto::otlp::trace::v1::span::Event;
use clew_proto::otlp::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
use common::alertmanager::Alertmanager;
use common::free_port;
use common::*;
use prost::Message;
use serde_json::Value;

/// Every alert array a webhook received, in order, with when it arrived (RFC 3339).
#[derive(Clone, Default)]
struct Webhook {
    url: String,
    received: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Webhook {
    async fn start() -> Webhook {
        let received: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let store = received.clone();
        let app = Router::new().route(
            "/hook",
            post(move |Json(body): Json<Value>| {
                let store = store.clone();
                async move {
                    store.lock().unwrap().push((rfc3339_now(), body));
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Webhook { url, received }
    }

    /// Every alert posted, flattened, each with whether it was a resolution: an `endsAt`
    /// not after its arrival (a firing alert's lies four resend intervals ahead).
    fn alerts(&self) -> Vec<(bool, Value)> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(at, batch)| {
                batch
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |a| (a["endsAt"].as_str().unwrap_or("") <= at.as_str(), a))
            })
            .collect()
    }
}

fn config_file(dir: &std::path::Path, alerting: &str) -> String {
    let path = dir.join("clew.toml");
    std::fs::write(&path, alerting).unwrap();
    path.display().to_string()
}

/// One error span of its own trace, as a payment service reports a declined card: an
/// `exception` event whose message carries ids that differ on every occurrence.
fn error_span(trace: [u8; 16], operation: &str, exception_type: &str, n: u64) -> Span {
    let end = now_unix_nano();
    let start = end - 3_000_000;
    Span {
        trace_id: trace.to_vec(),
        span_id: (n + 1).to_be_bytes().to_vec(),
        name: operation.into(),
        kind: 2,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        events: vec![Event {
            time_unix_nano: end - 1_000_000,
            name: "exception".into(),
            attributes: vec![
                kv("exception.type", exception_type),
                kv(
                    "exception.message",
                    &format!(
                        "card 4111{:08} declined for order ORD{:06}X, request {}",
                        n * 7919 % 100_000_000,
                        n,
                        uuid_like(n)
                    ),
                ),
                kv(
                    "exception.stacktrace",
                    &format!(
                        "{exception_type}: declined\n\tat com.shop.Payments.charge(Payments.java:{})\n\tat com.shop.Api.handle(Api.java:7)",
                        40 + n % 3
                    ),
                ),
            ],
            ..Default::default()
        }],
        status: Some(Status {
            code: status::StatusCode::Error as i32,
            message: "card declined".into(),
        }),
        ..Default::default()
    }
}

fn uuid_like(n: u64) -> String {
    let h = format!(
        "{:032x}",
        (n as u128 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834)
    );
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn host_request(service: &str, host: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service), kv("host.name", host)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Sends one OTLP/HTTP request and checks it was taken whole (ingest unaffected by alerts).
async fn send(client: &reqwest::Client, clew: &Clew, req: ExportTraceServiceRequest) {
    let resp = client
        .post(clew.otlp_http_url())
        .header("content-type", "application/x-protobuf")
        .body(req.encode_to_vec())
        .send()
        .await
        .expect("otlp http reachable");
    assert_eq!(resp.status().as_u16(), 200, "otlp export failed");
    let body = resp.bytes().await.unwrap();
    let answer = ExportTraceServiceResponse::decode(body).unwrap();
    assert!(
        answer.partial_success.is_none_or(|p| p.rejected_spans == 0),
        "spans were rejected"
    );
}

/// `errors` spans of one signature from `hosts` hosts; returns their trace ids (hex).
async fn send_errors(
    clew: &Clew,
    operation: &str,
    exception_type: &str,
    hosts: u64,
    errors: u64,
) -> HashSet<String> {
    let client = reqwest::Client::new();
    let mut ids = HashSet::new();
    let per_host = errors / hosts;
    for h in 0..hosts {
        let spans: Vec<Span> = (0..per_host)
            .map(|i| {
                let trace = random_trace_id();
                ids.insert(hex::encode(trace));
                error_span(trace, operation, exception_type, h * per_host + i)
            })
            .collect();
        send(
            &client,
            clew,
            host_request("payments", &format!("payments-{h:03}.prod"), spans),
        )
        .await;
    }
    ids
}

async fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// clew's own board entry for `alertname` and `exception_type`.
async fn board_alert(clew: &Clew, alertname: &str, exception_type: &str) -> Option<Value> {
    let (status, body) = clew.get("/api/v1/alerts").await;
    assert_eq!(status, 200);
    body["alerts"]
        .as_array()?
        .iter()
        .find(|a| a["alertname"] == alertname && a["exception_type"] == exception_type)
        .cloned()
}

fn label_names(alert: &Value) -> BTreeSet<String> {
    alert["labels"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs prometheus-alertmanager (scripts/alertmanager-fetch); scripts/test runs it"]
async fn one_alert_per_signature_from_fifty_hosts_with_examples_that_open_then_resolved() {
    let am = Alertmanager::start().await;
    let hook = Webhook::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(
        dir.path(),
        &format!(
            r#"
[alerting]
alertmanager_urls = ["{}"]
webhook_urls = ["{}"]
resend_interval_ms = 1000
retry_initial_ms = 100
retry_max_ms = 1000
[[alerting.error_rules]]
name = "payment-errors"
service = "payments"
min_count = 20
window = "3s"
severity = "critical"
"#,
            am.url(),
            hook.url
        ),
    );
    let clew = Clew::start(&["--config", &config]);

    // 1. 500 errors of one signature from 50 hosts: one alert
    let sent = send_errors(&clew, "charge", "CardDeclinedException", 50, 500).await;
    assert_eq!(sent.len(), 500);
    let mine = wait_until(
        "clew to count all 500 errors",
        Duration::from_secs(30),
        async || {
            board_alert(&clew, "payment-errors", "CardDeclinedException")
                .await
                .filter(|a| a["count"] == 500)
        },
    )
    .await;
    assert_eq!(mine["state"], "firing");
    assert_eq!(
        mine["message"],
        "card <n> declined for order <id>, request <uuid>"
    );
    assert_eq!(
        mine["top_frame"],
        "at com.shop.Payments.charge(Payments.java:<n>)"
    );
    let signature = mine["signature"].as_str().unwrap().to_string();
    let in_am = wait_until(
        "the alert in Alertmanager",
        Duration::from_secs(30),
        async || {
            let alerts = am.alerts_with("alertname", "payment-errors").await;
            (!alerts.is_empty()).then_some(alerts)
        },
    )
    .await;
    assert_eq!(in_am.len(), 1, "one alert for 50 hosts: {in_am:?}");
    let alert = &in_am[0];
    assert_eq!(
        label_names(alert),
        BTreeSet::from(
            [
                "alertname",
                "exception_type",
                "operation",
                "service",
                "severity",
                "signature"
            ]
            .map(String::from)
        ),
        "exactly the documented labels, nothing host- or collector-specific"
    );
    let labels = &alert["labels"];
    assert_eq!(labels["service"], "payments");
    assert_eq!(labels["operation"], "charge");
    assert_eq!(labels["exception_type"], "CardDeclinedException");
    assert_eq!(labels["severity"], "critical");
    assert_eq!(labels["signature"], signature.as_str());

    // the example traces open, and hold the failing span
    let ids: Vec<String> = alert["annotations"]["example_trace_ids"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect();
    assert!((1..=5).contains(&ids.len()), "{ids:?}");
    let urls = alert["annotations"]["example_trace_urls"].as_str().unwrap();
    for id in &ids {
        assert!(sent.contains(id), "{id} is one of the traces sent");
        assert!(
            urls.contains(&format!("http://{}/trace/{id}", clew.http)),
            "{urls}"
        );
        let (status, trace) = clew.get(&format!("/api/v1/traces/{id}")).await;
        assert_eq!(status, 200, "example trace {id} opens");
        let failing = trace["spans"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "charge" && s["status"]["code"] == "error")
            .expect("the failing span is in the trace");
        assert_eq!(failing["events"][0]["name"], "exception");
        assert_eq!(
            failing["events"][0]["attributes"]["exception.type"],
            "CardDeclinedException"
        );
    }
    let count: u64 = alert["annotations"]["count"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((20..=500).contains(&count), "{count}");

    // 2. a second signature: a second alert
    send_errors(&clew, "charge", "InsufficientFundsException", 3, 30).await;
    let second = wait_until(
        "the second alert in Alertmanager",
        Duration::from_secs(30),
        async || {
            am.alerts_with("exception_type", "InsufficientFundsException")
                .await
                .into_iter()
                .next()
        },
    )
    .await;
    assert_ne!(second["labels"]["signature"], signature.as_str());
    assert_eq!(second["labels"]["alertname"], "payment-errors");
    assert!(am.alerts_with("signature", &signature).await.len() <= 1);

    // 3. the errors stop: both resolve, in Alertmanager and on clew's board
    wait_until(
        "both alerts to resolve in Alertmanager",
        Duration::from_secs(60),
        async || {
            am.alerts_with("alertname", "payment-errors")
                .await
                .is_empty()
                .then_some(())
        },
    )
    .await;
    let resolved = board_alert(&clew, "payment-errors", "CardDeclinedException")
        .await
        .unwrap();
    assert_eq!(resolved["state"], "resolved");
    assert_eq!(resolved["count"], 500);
    assert!(resolved["resolved_at_unix_nano"].is_string());

    // 4. the webhook saw the same payloads: the firing alert with the same labels and
    //    examples, then its resolution (endsAt not after the time it was received)
    let webhook = wait_until(
        "the webhook to see both resolutions",
        Duration::from_secs(30),
        async || {
            let all = hook.alerts();
            let resolved: HashSet<String> = all
                .iter()
                .filter(|(resolution, _)| *resolution)
                .map(|(_, a)| a["labels"]["signature"].to_string())
                .collect();
            (resolved.len() >= 2).then_some(all)
        },
    )
    .await;
    let first_sig: Vec<&(bool, Value)> = webhook
        .iter()
        .filter(|(_, a)| a["labels"]["signature"] == signature.as_str())
        .collect();
    assert!(first_sig.len() >= 2, "fired (and refreshed), then resolved");
    let (fired_as_resolution, fired) = first_sig[0];
    assert!(!fired_as_resolution);
    assert_eq!(
        fired["labels"], alert["labels"],
        "same labels as in Alertmanager"
    );
    assert_eq!(
        fired["annotations"]["example_trace_ids"],
        alert["annotations"]["example_trace_ids"]
    );
    assert!(
        first_sig.last().unwrap().0,
        "the last one is the resolution"
    );
    assert_eq!(
        first_sig.iter().filter(|(r, _)| *r).count(),
        1,
        "resolved once, never fired again"
    );
}

fn rfc3339_now() -> String {
    // compare as text: both are UTC, millisecond ISO-8601 with a `Z`
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    clew_collector::alerting::delivery::rfc3339(ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs prometheus-alertmanager (scripts/alertmanager-fetch); scripts/test runs it"]
async fn alerts_wait_while_alertmanager_is_down_and_arrive_once_it_is_back() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(
        dir.path(),
        &format!(
            r#"
[alerting]
alertmanager_urls = ["http://127.0.0.1:{port}"]
resend_interval_ms = 1000
retry_initial_ms = 100
retry_max_ms = 1000
[[alerting.error_rules]]
name = "down-test"
min_count = 20
window = "60s"
severity = "warning"
"#
        ),
    );
    let clew = Clew::start(&["--config", &config]);
    // ingest goes on while nobody takes the alerts (send checks every answer)
    send_errors(&clew, "refund", "GatewayTimeoutException", 4, 40).await;
    wait_until("clew to fire", Duration::from_secs(30), async || {
        board_alert(&clew, "down-test", "GatewayTimeoutException")
            .await
            .filter(|a| a["state"] == "firing" && a["count"] == 40)
    })
    .await;
    wait_until(
        "a failed delivery to be counted",
        Duration::from_secs(30),
        async || {
            let text = reqwest::get(clew.api_url("/metrics"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            text.lines()
                .any(|l| {
                    l.starts_with("clew_alerting_notifications_total{")
                        && l.contains("kind=\"alertmanager\"")
                        && l.contains("result=\"failed\"")
                })
                .then_some(())
        },
    )
    .await;
    // more traffic while down: still taken whole
    send_errors(&clew, "refund", "GatewayTimeoutException", 2, 20).await;

    let am = Alertmanager::start_on(port).await;
    let alert = wait_until(
        "the alert once Alertmanager is back",
        Duration::from_secs(60),
        async || {
            am.alerts_with("alertname", "down-test")
                .await
                .into_iter()
                .next()
        },
    )
    .await;
    assert_eq!(alert["labels"]["exception_type"], "GatewayTimeoutException");
    assert_eq!(alert["labels"]["operation"], "refund");
    assert_eq!(am.alerts_with("alertname", "down-test").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark (BENCHMARKS.md): run alone with --ignored --nocapture bench_"]
async fn bench_first_error_to_alertmanager() {
    let am = Alertmanager::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(
        dir.path(),
        &format!(
            r#"
[alerting]
alertmanager_urls = ["{}"]
[[alerting.error_rules]]
name = "bench"
min_count = 20
window = "10s"
severity = "critical"
"#,
            am.url()
        ),
    );
    let clew = Arc::new(Clew::start(&["--config", &config]));
    let mut latencies = Vec::new();
    for run in 0..5 {
        let operation = format!("bench-op-{run}");
        let t0 = Instant::now();
        // a steady 100 errors/s from 10 hosts: one error per host every 100 ms
        let sender = {
            let clew = clew.clone();
            let operation = operation.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut n = 0;
                loop {
                    for h in 0..10 {
                        let span = error_span(random_trace_id(), &operation, "BenchException", n);
                        n += 1;
                        send(
                            &client,
                            &clew,
                            host_request("payments", &format!("host-{h}"), vec![span]),
                        )
                        .await;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        loop {
            if !am.alerts_with("operation", &operation).await.is_empty() {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(120), "no alert");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let latency = t0.elapsed();
        sender.abort();
        println!(
            "# run {run}: first error span → alert in Alertmanager {:.0} ms",
            latency.as_secs_f64() * 1e3
        );
        latencies.push(latency);
    }
    latencies.sort();
    println!(
        "# first error → Alertmanager, 10 s window, min_count 20, 100 errors/s: min {:.0} ms, median {:.0} ms, max {:.0} ms",
        latencies[0].as_secs_f64() * 1e3,
        latencies[2].as_secs_f64() * 1e3,
        latencies[4].as_secs_f64() * 1e3
    );
}

/// The value of one sample line of clew's `/metrics` whose line starts with `series`.
async fn metric(clew: &Clew, series: &str) -> Option<f64> {
    let text = reqwest::get(clew.api_url("/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_are_re_read_when_the_file_changes_and_a_bad_file_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let rule = |name: &str, min_count: u64| {
        format!(
            "[alerting]\nreload_interval_ms = 100\n[[alerting.error_rules]]\nname = \"{name}\"\nmin_count = {min_count}\nwindow = \"60s\"\n"
        )
    };
    let config = config_file(dir.path(), &rule("strict", 1000));
    let clew = Clew::start(&["--config", &config]);
    send_errors(&clew, "capture", "FirstException", 1, 10).await;
    let (_, board) = clew.get("/api/v1/alerts").await;
    assert_eq!(board["rules"], serde_json::json!(["strict"]));

    // a rule that fires at 5: taken at run time (errors counted after the change)
    std::fs::write(&config, rule("lenient", 5)).unwrap();
    wait_until("the new rule", Duration::from_secs(30), async || {
        let (_, b) = clew.get("/api/v1/alerts").await;
        (b["rules"] == serde_json::json!(["lenient"])).then_some(())
    })
    .await;
    send_errors(&clew, "capture", "SecondException", 1, 10).await;
    wait_until(
        "the alert of the new rule",
        Duration::from_secs(30),
        async || {
            board_alert(&clew, "lenient", "SecondException")
                .await
                .filter(|a| a["state"] == "firing")
        },
    )
    .await;
    assert!(board_alert(&clew, "strict", "FirstException")
        .await
        .is_none());

    // a file that does not parse, then one that does not validate: logged, counted, the
    // rules stay in force
    let reload_errors = "clew_alerting_rule_reloads_total{result=\"error\"}";
    for (i, bad) in [
        "[alerting\n".to_string(),
        rule("lenient", 5).replace("60s", "sixty seconds"),
    ]
    .into_iter()
    .enumerate()
    {
        std::fs::write(&config, bad).unwrap();
        wait_until(
            "the reload error to be counted",
            Duration::from_secs(30),
            async || {
                metric(&clew, reload_errors)
                    .await
                    .filter(|n| *n >= (i + 1) as f64)
            },
        )
        .await;
        let (_, b) = clew.get("/api/v1/alerts").await;
        assert_eq!(b["rules"], serde_json::json!(["lenient"]));
    }
    send_errors(&clew, "capture", "ThirdException", 1, 10).await;
    wait_until(
        "an alert under the rules kept",
        Duration::from_secs(30),
        async || {
            board_alert(&clew, "lenient", "ThirdException")
                .await
                .filter(|a| a["state"] == "firing")
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs prometheus-alertmanager (scripts/alertmanager-fetch); scripts/test runs it"]
async fn two_collectors_seeing_one_signature_make_one_alert_in_alertmanager() {
    let am = Alertmanager::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(
        dir.path(),
        &format!(
            r#"
[alerting]
alertmanager_urls = ["{}"]
resend_interval_ms = 1000
[[alerting.error_rules]]
name = "scale-out"
min_count = 20
window = "30s"
severity = "critical"
"#,
            am.url()
        ),
    );
    // two collectors (own stores), the same rules, each taking half of the hosts
    let a = Clew::start(&["--config", &config]);
    let b = Clew::start(&["--config", &config]);
    send_errors(&a, "charge", "CardDeclinedException", 25, 250).await;
    send_errors(&b, "charge", "CardDeclinedException", 25, 250).await;
    let mut signatures = Vec::new();
    for clew in [&a, &b] {
        let alert = wait_until(
            "each collector to fire",
            Duration::from_secs(30),
            async || {
                board_alert(clew, "scale-out", "CardDeclinedException")
                    .await
                    .filter(|a| a["count"] == 250)
            },
        )
        .await;
        signatures.push(alert["signature"].clone());
    }
    assert_eq!(signatures[0], signatures[1], "the same signature on both");
    // both have posted (each fired, and refreshes every second); Alertmanager holds one
    let metric_sent = "clew_alerting_notifications_total{kind=\"alertmanager\",result=\"sent\"}";
    for clew in [&a, &b] {
        wait_until(
            "each collector to deliver",
            Duration::from_secs(30),
            async || metric(clew, metric_sent).await.filter(|n| *n >= 2.0),
        )
        .await;
    }
    let in_am = am.alerts_with("alertname", "scale-out").await;
    assert_eq!(in_am.len(), 1, "merged into one: {in_am:?}");
    assert_eq!(in_am[0]["labels"]["signature"], signatures[0]);
}

/// With `[auth]`, each tenant's errors are its own: the same signature sent by two tenants
/// is two alerts in Alertmanager, each with its `tenant` label (and the same `signature`),
/// and each tenant's board shows its own alert only, its example traces its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs prometheus-alertmanager (scripts/alertmanager-fetch); scripts/test runs it"]
async fn two_tenants_one_signature_make_two_alerts_each_with_its_tenant() {
    const SHOP: &str = "shop-token-0123456789";
    const BANK: &str = "bank-token-0123456789";
    let am = Alertmanager::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(
        dir.path(),
        &format!(
            r#"
[auth]
[[auth.tokens]]
token = "{SHOP}"
tenant = "shop"
scopes = ["ingest", "read"]
[[auth.tokens]]
token = "{BANK}"
tenant = "bank"
scopes = ["ingest", "read"]

[alerting]
alertmanager_urls = ["{}"]
resend_interval_ms = 1000
retry_initial_ms = 100
retry_max_ms = 1000
[[alerting.error_rules]]
name = "tenant-errors"
min_count = 10
window = "1m"
"#,
            am.url()
        ),
    );
    let clew = Clew::start(&["--config", &config]);
    let client = reqwest::Client::new();
    // 6 errors each: 12 of one signature in all, yet neither tenant reaches 10 ...
    let send_as = |token: &'static str, from: u64, n: u64| {
        let client = client.clone();
        let url = clew.otlp_http_url();
        async move {
            let mut ids = Vec::new();
            let spans: Vec<Span> = (from..from + n)
                .map(|i| {
                    let trace = random_trace_id();
                    ids.push(hex::encode(trace));
                    error_span(trace, "charge", "CardDeclinedException", i)
                })
                .collect();
            let resp = client
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/x-protobuf")
                .body(host_request("payments", "payments-1", spans).encode_to_vec())
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 200);
            ids
        }
    };
    let board = |token: &'static str| {
        let client = client.clone();
        let url = clew.api_url("/api/v1/alerts");
        async move {
            let body: Value = client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            body["alerts"].as_array().cloned().unwrap_or_default()
        }
    };
    let mut shop_ids = send_as(SHOP, 0, 6).await;
    let mut bank_ids = send_as(BANK, 100, 6).await;
    // ... until each sends 4 more
    shop_ids.extend(send_as(SHOP, 6, 4).await);
    let shop_alert = wait_until("shop's alert", Duration::from_secs(30), async || {
        board(SHOP).await.into_iter().find(|a| a["count"] == 10)
    })
    .await;
    assert!(
        board(BANK).await.is_empty(),
        "bank has 6 errors: no alert of its own, none of shop's"
    );
    bank_ids.extend(send_as(BANK, 106, 4).await);
    let bank_alert = wait_until("bank's alert", Duration::from_secs(30), async || {
        board(BANK).await.into_iter().find(|a| a["count"] == 10)
    })
    .await;
    assert_eq!(
        board(SHOP).await.len(),
        1,
        "shop's board: its own alert only"
    );
    assert_eq!(shop_alert["signature"], bank_alert["signature"]);
    for (alert, ids, tenant) in [
        (&shop_alert, &shop_ids, "shop"),
        (&bank_alert, &bank_ids, "bank"),
    ] {
        assert_eq!(alert["labels"]["tenant"], tenant);
        for id in alert["example_trace_ids"].as_array().unwrap() {
            assert!(
                ids.contains(&id.as_str().unwrap().to_string()),
                "{tenant}: {id}"
            );
        }
    }

    // Alertmanager: two alerts, one per tenant, with the documented labels and `tenant`
    let in_am = wait_until(
        "both alerts in Alertmanager",
        Duration::from_secs(30),
        async || {
            let alerts = am.alerts_with("alertname", "tenant-errors").await;
            (alerts.len() == 2).then_some(alerts)
        },
    )
    .await;
    let mut tenants: Vec<String> = in_am
        .iter()
        .map(|a| a["labels"]["tenant"].as_str().unwrap().to_string())
        .collect();
    tenants.sort();
    assert_eq!(tenants, ["bank", "shop"]);
    for alert in &in_am {
        assert_eq!(
            label_names(alert),
            BTreeSet::from(
                [
                    "alertname",
                    "exception_type",
                    "operation",
                    "service",
                    "severity",
                    "signature",
                    "tenant"
                ]
                .map(String::from)
            ),
        );
        assert_eq!(alert["labels"]["signature"], shop_alert["signature"]);
    }
}
