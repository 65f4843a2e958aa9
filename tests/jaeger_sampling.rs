//! Differential test of clew's Jaeger remote sampling against a real Jaeger v2.
//!
//! A real Jaeger v2 (`jaeger` v1.76.0, `remote_sampling` extension with the file provider,
//! `tests/jaeger/sampling.yaml`) and a real `clew serve --sampling-strategies` read the
//! same strategies file (`tests/jaeger/sampling-strategies.json`, copied to a temporary
//! directory so the test can change it). Both are asked for the strategy of several
//! services — listed and unknown, probabilistic and rate-limited, with their own
//! per-operation strategies, with the default's merged in, an unknown strategy type, a
//! rate that Go prints in exponent form, a name that needs escaping — over HTTP (every
//! answer byte for byte, status and content type too, bad requests included) and over gRPC
//! (`jaeger.api_v2.SamplingManager/GetSamplingStrategy`, the decoded messages, anchored to
//! values in the file so a wrong field number cannot agree with itself). Then the file
//! changes: clew serves the change within 2 s and both agree again; then it breaks: both
//! keep the old answers and clew counts the bad version.
//!
//! Needs the `jaeger` binary: `scripts/jaeger-fetch` builds it into `~/.cache/clew`.

mod common;

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use clew_proto::jaeger_sampling::{
    SamplingStrategyParameters, SamplingStrategyResponse, SamplingStrategyType,
    GET_SAMPLING_STRATEGY_PATH,
};
use common::agent::metric_value;
use common::{free_port, Clew};

const WAIT: Duration = Duration::from_secs(30);

/// Services asked for: every kind of entry in the file, and some that have none.
const SERVICES: [&str; 10] = [
    "checkout",
    "search",
    "payments",
    "inventory",
    "legacy-batch",
    "tiny",
    "a&b <c>",
    "unknown-service",
    "",
    "Checkout",
];

/// A running Jaeger v2 serving remote sampling from a strategies file.
struct Jaeger {
    child: Child,
    http: String,
    grpc: String,
}

impl Jaeger {
    fn start(strategies: &Path) -> Jaeger {
        let (http, grpc, otlp) = (free_port(), free_port(), free_port());
        let config = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/jaeger/sampling.yaml");
        let child = common::jaeger::command(config)
            .env("JAEGER_SAMPLING_FILE", strategies)
            .env("JAEGER_SAMPLING_HTTP_PORT", http.to_string())
            .env("JAEGER_SAMPLING_GRPC_PORT", grpc.to_string())
            .env("JAEGER_OTLP_GRPC_PORT", otlp.to_string())
            .spawn()
            .expect("spawn jaeger");
        Jaeger {
            child,
            http: format!("127.0.0.1:{http}"),
            grpc: format!("127.0.0.1:{grpc}"),
        }
    }
}

impl Drop for Jaeger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn enc(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An HTTP answer: status, content type, body text.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

async fn http_get(addr: &str, path_and_query: &str) -> Answer {
    let resp = reqwest::get(format!("http://{addr}{path_and_query}"))
        .await
        .unwrap_or_else(|e| panic!("GET {addr}{path_and_query}: {e}"));
    Answer {
        status: resp.status().as_u16(),
        content_type: resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        body: resp.text().await.unwrap_or_default(),
    }
}

async fn grpc_get(addr: &str, service: &str) -> SamplingStrategyResponse {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.expect("grpc ready");
    let codec =
        tonic_prost::ProstCodec::<SamplingStrategyParameters, SamplingStrategyResponse>::default();
    client
        .unary(
            tonic::Request::new(SamplingStrategyParameters {
                service_name: service.to_string(),
            }),
            http::uri::PathAndQuery::from_static(GET_SAMPLING_STRATEGY_PATH),
            codec,
        )
        .await
        .unwrap_or_else(|e| panic!("GetSamplingStrategy({service:?}) on {addr}: {e}"))
        .into_inner()
}

async fn wait_up(addr: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(resp) = reqwest::get(format!("http://{addr}/?service=x")).await {
            if resp.status().is_success() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{addr} did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The HTTP questions: the strategy of every service on the paths SDKs use, and bad ones.
fn questions() -> Vec<String> {
    let mut q: Vec<String> = SERVICES
        .iter()
        .flat_map(|s| {
            [
                format!("/api/sampling?service={}", enc(s)),
                format!("/sampling?service={}", enc(s)),
            ]
        })
        .collect();
    q.extend([
        "/api/sampling".to_string(),
        "/api/sampling?service=checkout&service=search".to_string(),
        "/?service=payments".to_string(),
    ]);
    q
}

/// Asks both everything; asserts equal answers; returns clew's (HTTP and gRPC).
async fn compare(
    clew: &Clew,
    jaeger: &Jaeger,
    when: &str,
) -> (Vec<Answer>, Vec<SamplingStrategyResponse>) {
    let clew_http = clew.sampling_http.to_string();
    let clew_grpc = clew.sampling_grpc.to_string();
    let mut http_answers = Vec::new();
    for q in questions() {
        let ours = http_get(&clew_http, &q).await;
        let theirs = http_get(&jaeger.http, &q).await;
        assert_eq!(ours, theirs, "{when}: GET {q}");
        http_answers.push(ours);
    }
    let mut grpc_answers = Vec::new();
    for s in SERVICES {
        let ours = grpc_get(&clew_grpc, s).await;
        let theirs = grpc_get(&jaeger.grpc, s).await;
        assert_eq!(ours, theirs, "{when}: GetSamplingStrategy({s:?})");
        grpc_answers.push(ours);
    }
    (http_answers, grpc_answers)
}

fn rate(r: &SamplingStrategyResponse) -> Option<f64> {
    r.probabilistic_sampling.as_ref().map(|p| p.sampling_rate)
}

async fn reload_errors(clew: &Clew, reason: &str) -> f64 {
    let text = clew.metrics(None).await;
    metric_value(
        &text,
        "clew_sampling_strategies_reload_errors_total",
        &[("reason", reason)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Jaeger v2 binary (scripts/jaeger-fetch builds it with Go); run with --ignored"]
async fn remote_sampling_answers_like_jaeger_v2() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("strategies.json");
    let original = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/jaeger/sampling-strategies.json"
    );
    std::fs::copy(original, &file).unwrap();

    // clew first: it binds its own listeners, so the free ports picked for Jaeger next
    // cannot be ones clew takes while Jaeger is still starting.
    let clew = Clew::start(&["--sampling-strategies", file.to_str().unwrap()]);
    let jaeger = Jaeger::start(&file);
    wait_up(&jaeger.http).await;
    wait_up(&clew.sampling_http.to_string()).await;

    let (http_before, grpc_before) = compare(&clew, &jaeger, "from the file").await;

    // Anchors in the file: Jaeger's own answers carry its values in the fields where the
    // contract puts them (so equality above is not two wrong encodings agreeing).
    let checkout = grpc_get(&jaeger.grpc, "checkout").await;
    assert_eq!(rate(&checkout), Some(0.8));
    let ops = checkout
        .operation_sampling
        .clone()
        .expect("checkout's operations");
    let names: Vec<&str> = ops
        .per_operation_strategies
        .iter()
        .map(|o| o.operation.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "POST /checkout",
            "GET /health",
            "GET /metrics",
            "GET /find?q=<term>&page=\"1\""
        ]
    );
    assert_eq!(ops.default_sampling_probability, 0.8);
    let search = grpc_get(&jaeger.grpc, "search").await;
    assert_eq!(
        search.strategy_type,
        SamplingStrategyType::RateLimiting as i32
    );
    assert_eq!(
        search.rate_limiting_sampling.unwrap().max_traces_per_second,
        15
    );
    assert_eq!(
        search
            .operation_sampling
            .unwrap()
            .default_sampling_probability,
        0.25,
        "a rate-limited service without operations gets the default's, at the default's rate"
    );
    assert_eq!(
        rate(&grpc_get(&jaeger.grpc, "unknown-service").await),
        Some(0.25)
    );
    let unknown_type = grpc_get(&jaeger.grpc, "legacy-batch").await;
    assert_eq!(rate(&unknown_type), Some(0.001));
    let http_checkout = http_get(&jaeger.http, "/api/sampling?service=checkout").await;
    assert!(
        http_checkout
            .body
            .starts_with(r#"{"strategyType":0,"probabilisticSampling":{"samplingRate":0.8}"#),
        "{}",
        http_checkout.body
    );

    // A change of the file: served by clew within 2 s, and equal to Jaeger's once Jaeger
    // has re-read it too.
    let changed = std::fs::read_to_string(original)
        .unwrap()
        .replace(r#""param": 0.8"#, r#""param": 0.3"#)
        .replace(r#""service": "search""#, r#""service": "search-v2""#);
    std::fs::write(&file, changed).unwrap();
    let written = Instant::now();
    let clew_grpc = clew.sampling_grpc.to_string();
    loop {
        if rate(&grpc_get(&clew_grpc, "checkout").await) == Some(0.3) {
            break;
        }
        assert!(
            written.elapsed() < Duration::from_secs(2),
            "clew did not serve the changed file within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + WAIT;
    while rate(&grpc_get(&jaeger.grpc, "checkout").await) != Some(0.3) {
        assert!(Instant::now() < deadline, "jaeger did not re-read the file");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (http_changed, grpc_changed) = compare(&clew, &jaeger, "after the change").await;
    assert_ne!(http_changed, http_before);
    assert_ne!(grpc_changed, grpc_before);
    assert_eq!(
        grpc_get(&clew_grpc, "search").await.strategy_type,
        SamplingStrategyType::Probabilistic as i32,
        "search lost its entry: the default now"
    );

    // A broken file: both keep the last good strategies; clew says so in its metrics.
    for (broken, reason) in [
        ("{\"service_strategies\": [", "invalid"),
        (
            r#"{"service_strategies": {"service": "checkout"}}"#,
            "invalid",
        ),
    ] {
        let before = reload_errors(&clew, reason).await;
        std::fs::write(&file, broken).unwrap();
        let deadline = Instant::now() + WAIT;
        while reload_errors(&clew, reason).await <= before {
            assert!(
                Instant::now() < deadline,
                "broken file {broken:?} not noticed"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Jaeger looks at the file every second too; give it two looks.
        tokio::time::sleep(Duration::from_millis(2_100)).await;
        let (http_now, grpc_now) = compare(&clew, &jaeger, &format!("with {broken:?}")).await;
        assert_eq!(http_now, http_changed, "clew kept the last good strategies");
        assert_eq!(grpc_now, grpc_changed);
    }

    // A file that goes away is a read error for clew; the old answers stay.
    let before = reload_errors(&clew, "read").await;
    std::fs::remove_file(&file).unwrap();
    let deadline = Instant::now() + WAIT;
    while reload_errors(&clew, "read").await <= before {
        assert!(Instant::now() < deadline, "missing file not noticed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rate(&grpc_get(&clew_grpc, "checkout").await), Some(0.3));

    // clew's own rule (a probability outside 0..=1 is a typo, not a strategy; Jaeger would
    // serve it): refused, counted, old answers kept.
    let before = reload_errors(&clew, "invalid").await;
    std::fs::write(
        &file,
        r#"{"service_strategies": [{"service": "checkout", "type": "probabilistic", "param": 10}]}"#,
    )
    .unwrap();
    let deadline = Instant::now() + WAIT;
    while reload_errors(&clew, "invalid").await <= before {
        assert!(
            Instant::now() < deadline,
            "out-of-range probability not refused"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rate(&grpc_get(&clew_grpc, "checkout").await), Some(0.3));
    let last = clew.metrics(None).await;
    assert!(
        metric_value(
            &last,
            "clew_sampling_strategies_last_reload_success_timestamp_seconds",
            &[]
        ) > 1.0e9,
        "the last good reload's time is published"
    );
}
