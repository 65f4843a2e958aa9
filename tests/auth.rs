//! Bearer-token authentication on every listener of a real `clew serve` (and of a real
//! `clew agent`), over real sockets: with a config holding an ingest-only token, a
//! read-only one (given as `token_sha256`) and an admin one, each listener answers no
//! token and a wrong token with 401 / UNAUTHENTICATED, a token without the scope with
//! 403 / PERMISSION_DENIED, and the right token with its normal answer — spans sent with
//! the ingest token are read back with the read token. Rewriting the config file without
//! a token revokes it while clew runs (a broken file changes nothing), and without
//! `[auth]` clew refuses to listen beyond loopback unless `--insecure-listen`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clew_proto::jaeger_sampling::{
    SamplingStrategyParameters, SamplingStrategyResponse, GET_SAMPLING_STRATEGY_PATH,
};
use clew_proto::jaeger_storage::v2 as pb;
use clew_proto::otlp::collector::trace::v1::trace_service_client::TraceServiceClient;
use clew_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use common::*;
use prost::Message;
use serde_json::Value;
use tonic::Code;

const INGEST: &str = "ingest-token-0123456789";
const READ: &str = "read-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";
/// Looks like a token, is none of them.
const WRONG: &str = "read-token-0123456780";

/// `echo -n read-token-0123456789 | sha256sum`
const READ_SHA256: &str = "d354526d2b69d5dec36caef20814c68e90bf9a093c3cce5d33b59e8d01e41652";

/// `google.rpc.Status`, as OTLP/HTTP refusals carry it.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// `[auth]` with the three tokens of tenant `shop`, or without the ingest one.
fn auth_section(with_ingest: bool) -> String {
    auth_section_of(with_ingest, "shop")
}

/// `[auth]` with the three tokens, all of `tenant` (what the admin token writes, the read
/// token reads back), or without the ingest one.
fn auth_section_of(with_ingest: bool, tenant: &str) -> String {
    let mut text = String::from("[auth]\n");
    if with_ingest {
        text += &format!(
            "[[auth.tokens]]\ntoken = \"{INGEST}\"\ntenant = \"{tenant}\"\nscopes = [\"ingest\"]\n"
        );
    }
    text += &format!(
        "[[auth.tokens]]\ntoken_sha256 = \"{}\"\ntenant = \"{tenant}\"\nscopes = [\"read\"]\n",
        READ_SHA256
    );
    text += &format!(
        "[[auth.tokens]]\ntoken = \"{ADMIN}\"\ntenant = \"{tenant}\"\nscopes = [\"admin\"]\n"
    );
    text
}

/// The answers that matter: refused (and how), or let through with this status.
#[derive(Debug, PartialEq)]
enum Answer {
    Unauthenticated,
    Forbidden,
    Through(u16),
}

fn bearer(token: Option<&str>) -> Option<String> {
    token.map(|t| format!("Bearer {t}"))
}

/// An HTTP answer: 401 must carry the challenge, 403 and 401 must not name a tenant.
async fn http_answer(req: reqwest::RequestBuilder, token: Option<&str>) -> (Answer, String) {
    let req = match bearer(token) {
        Some(b) => req.header("authorization", b),
        None => req,
    };
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    let body = resp.text().await.unwrap_or_default();
    let answer = match status {
        401 => {
            let challenge = challenge.expect("401 without WWW-Authenticate");
            assert!(
                challenge.starts_with("Bearer realm=\"clew\""),
                "{challenge}"
            );
            Answer::Unauthenticated
        }
        403 => Answer::Forbidden,
        s => Answer::Through(s),
    };
    if matches!(answer, Answer::Unauthenticated | Answer::Forbidden) {
        assert!(
            !body.contains("shop") && !body.contains("ops"),
            "a refusal names a tenant: {body}"
        );
    }
    (answer, body)
}

fn grpc_request<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    if let Some(b) = bearer(token) {
        req.metadata_mut()
            .insert("authorization", b.parse().unwrap());
    }
    req
}

fn grpc_answer<T>(result: Result<T, tonic::Status>) -> Answer {
    match result {
        Ok(_) => Answer::Through(200),
        Err(s) if s.code() == Code::Unauthenticated => {
            assert!(!s.message().contains("shop"), "{}", s.message());
            Answer::Unauthenticated
        }
        Err(s) if s.code() == Code::PermissionDenied => {
            assert!(!s.message().contains("shop"), "{}", s.message());
            Answer::Forbidden
        }
        Err(s) => panic!("unexpected gRPC status {s:?}"),
    }
}

async fn channel(addr: std::net::SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"))
}

async fn otlp_grpc(
    addr: std::net::SocketAddr,
    token: Option<&str>,
    req: ExportTraceServiceRequest,
) -> Answer {
    let mut client = TraceServiceClient::new(channel(addr).await);
    grpc_answer(client.export(grpc_request(req, token)).await)
}

async fn sampling_grpc(addr: std::net::SocketAddr, token: Option<&str>) -> Answer {
    let mut client = tonic::client::Grpc::new(channel(addr).await);
    client.ready().await.expect("grpc ready");
    let codec =
        tonic_prost::ProstCodec::<SamplingStrategyParameters, SamplingStrategyResponse>::default();
    let result = client
        .unary(
            grpc_request(
                SamplingStrategyParameters {
                    service_name: "web".into(),
                },
                token,
            ),
            http::uri::PathAndQuery::from_static(GET_SAMPLING_STRATEGY_PATH),
            codec,
        )
        .await;
    grpc_answer(result)
}

async fn storage_grpc(addr: std::net::SocketAddr, token: Option<&str>) -> Answer {
    let mut client = pb::trace_reader_client::TraceReaderClient::new(channel(addr).await);
    grpc_answer(
        client
            .get_services(grpc_request(pb::GetServicesRequest {}, token))
            .await,
    )
}

/// One trace of one span of `service`, carrying `order_id`.
fn one_trace(service: &str, order: &str) -> ExportTraceServiceRequest {
    request(
        service,
        vec![otlp_span(
            random_trace_id(),
            1,
            None,
            "op",
            vec![kv("order_id", order)],
        )],
    )
}

fn zipkin_body(service: &str, order: &str) -> String {
    let trace = hex::encode(random_trace_id());
    serde_json::json!([{
        "traceId": trace, "id": "6b221d5bc9e6496c", "name": "get /api", "kind": "SERVER",
        "timestamp": now_unix_nano() / 1000 - 1000, "duration": 500,
        "localEndpoint": {"serviceName": service}, "tags": {"order_id": order}
    }])
    .to_string()
}

/// Tokens as the four cases name them.
const CASES: [(&str, Option<&str>); 5] = [
    ("no token", None),
    ("wrong token", Some(WRONG)),
    ("ingest token", Some(INGEST)),
    ("read token", Some(READ)),
    ("admin token", Some(ADMIN)),
];

fn expect(got: &[Answer], want: &[Answer], what: &str) {
    for ((case, _), (g, w)) in CASES.iter().zip(got.iter().zip(want)) {
        assert_eq!(g, w, "{what}, {case}");
    }
}

/// GET on the query API with `token`, polling until `ready(body)`.
async fn read_until(clew: &Clew, path: &str, token: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resp = reqwest::Client::new()
            .get(clew.api_url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status == 200 && ready(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never ready; last {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_listener_checks_tokens_and_scopes_and_a_removed_token_is_revoked() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("clew.toml");
    std::fs::write(&config, auth_section(true)).unwrap();
    let clew = Clew::start(&["--config", config.to_str().unwrap()]);
    let http = reqwest::Client::new();
    use Answer::*;

    // OTLP/HTTP, protobuf: refusals are google.rpc.Status in protobuf
    let mut got = Vec::new();
    for (_, token) in CASES {
        let body = one_trace("auth-otlp-http", "o-http").encode_to_vec();
        let req = http
            .post(clew.otlp_http_url())
            .header("content-type", "application/x-protobuf")
            .body(body);
        let (answer, body) = http_answer(req, token).await;
        if answer == Unauthenticated || answer == Forbidden {
            let status = RpcStatus::decode(body.as_bytes()).expect("rpc status");
            assert_eq!(status.code, if answer == Forbidden { 7 } else { 16 });
        }
        got.push(answer);
    }
    let ingest = [
        Unauthenticated,
        Unauthenticated,
        Through(200),
        Forbidden,
        Through(200),
    ];
    expect(&got, &ingest, "OTLP/HTTP");
    // … and in JSON for a JSON request
    let (answer, body) = http_answer(
        http.post(clew.otlp_http_url())
            .header("content-type", "application/json")
            .body("{}"),
        None,
    )
    .await;
    assert_eq!(answer, Unauthenticated);
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["code"], 16, "{body}");

    // OTLP/gRPC
    let mut got = Vec::new();
    for (_, token) in CASES {
        got.push(otlp_grpc(clew.otlp_grpc, token, one_trace("auth-otlp-grpc", "o-grpc")).await);
    }
    expect(&got, &ingest, "OTLP/gRPC");

    // Zipkin
    let mut got = Vec::new();
    for (_, token) in CASES {
        let req = http
            .post(clew.zipkin_url())
            .header("content-type", "application/json")
            .body(zipkin_body("auth-zipkin", "o-zipkin"));
        got.push(http_answer(req, token).await.0);
    }
    let zipkin = [
        Unauthenticated,
        Unauthenticated,
        Through(202),
        Forbidden,
        Through(202),
    ];
    expect(&got, &zipkin, "Zipkin");

    // remote sampling: ingest or read (no token of ours lacks both)
    let sampling = [
        Unauthenticated,
        Unauthenticated,
        Through(200),
        Through(200),
        Through(200),
    ];
    let mut got = Vec::new();
    for (_, token) in CASES {
        let url = format!("http://{}/api/sampling?service=web", clew.sampling_http);
        got.push(http_answer(http.get(url), token).await.0);
    }
    expect(&got, &sampling, "sampling HTTP");
    let mut got = Vec::new();
    for (_, token) in CASES {
        got.push(sampling_grpc(clew.sampling_grpc, token).await);
    }
    expect(&got, &sampling, "sampling gRPC");

    // query API (clew's JSON error), Jaeger's HTTP API (Jaeger's envelope), /metrics
    let read = [
        Unauthenticated,
        Unauthenticated,
        Forbidden,
        Through(200),
        Through(200),
    ];
    for path in [
        "/api/v1/services",
        "/api/v1/search?lookback=1h",
        "/api/v1/inventory",
        "/api/services",
        "/metrics",
    ] {
        let mut got = Vec::new();
        for (_, token) in CASES {
            let (answer, body) = http_answer(http.get(clew.api_url(path)), token).await;
            if answer == Unauthenticated && path.starts_with("/api/v1/") {
                let v: Value = serde_json::from_str(&body).unwrap();
                assert!(
                    v["error"]
                        .as_str()
                        .unwrap()
                        .to_lowercase()
                        .contains("bearer"),
                    "{body}"
                );
            }
            if answer == Forbidden && path == "/api/services" {
                let v: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(v["errors"][0]["code"], 403, "{body}");
            }
            got.push(answer);
        }
        expect(&got, &read, path);
    }
    // open without a token: health for supervisors, the UI's pages and files
    for path in [
        "/healthz",
        "/readyz",
        "/",
        "/trace/0123",
        "/inventory",
        "/ui/common.js",
    ] {
        let (answer, _) = http_answer(http.get(clew.api_url(path)), None).await;
        assert_eq!(answer, Through(200), "{path}");
    }

    // Jaeger remote storage gRPC
    let mut got = Vec::new();
    for (_, token) in CASES {
        got.push(storage_grpc(clew.jaeger_storage_grpc, token).await);
    }
    expect(&got, &read, "Jaeger remote storage gRPC");

    // what the ingest token sent, the read token reads
    for service in ["auth-otlp-http", "auth-otlp-grpc", "auth-zipkin"] {
        let path = format!("/api/v1/search?service={service}&lookback=1h");
        let found = read_until(&clew, &path, READ, |b| !trace_ids(b).is_empty()).await;
        // twice: once with the ingest token, once with the admin token
        assert_eq!(trace_ids(&found).len(), 2, "{service}: {found}");
    }

    // failures are counted per listener and reason
    let metrics = clew.metrics(Some(READ)).await;
    for line in [
        "clew_auth_failures_total{listener=\"otlp_http\",reason=\"missing_token\"}",
        "clew_auth_failures_total{listener=\"otlp_grpc\",reason=\"insufficient_scope\"}",
        "clew_auth_failures_total{listener=\"jaeger_storage_grpc\",reason=\"invalid_token\"}",
    ] {
        let n: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(line))
            .unwrap_or_else(|| panic!("no {line} in /metrics"))
            .trim()
            .parse()
            .unwrap();
        assert!(n >= 1.0, "{line} {n}");
    }
    assert!(!metrics.contains(INGEST) && !metrics.contains(READ));

    // a file that does not parse changes nothing …
    std::fs::write(&config, "[auth\nthis is not toml").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        otlp_grpc(
            clew.otlp_grpc,
            Some(INGEST),
            one_trace("auth-otlp-grpc", "o")
        )
        .await,
        Through(200)
    );
    // … and the file without the ingest entry revokes it within seconds, everywhere
    std::fs::write(&config, auth_section(false)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let req = http
            .post(clew.otlp_http_url())
            .header("content-type", "application/x-protobuf")
            .body(one_trace("auth-otlp-http", "o").encode_to_vec());
        if http_answer(req, Some(INGEST)).await.0 == Unauthenticated {
            break;
        }
        assert!(Instant::now() < deadline, "the removed token still works");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        otlp_grpc(
            clew.otlp_grpc,
            Some(INGEST),
            one_trace("auth-otlp-grpc", "o")
        )
        .await,
        Unauthenticated
    );
    let url = format!("http://{}/api/sampling?service=web", clew.sampling_http);
    assert_eq!(
        http_answer(http.get(&url), Some(INGEST)).await.0,
        Unauthenticated
    );
    // the others stay
    assert_eq!(
        otlp_grpc(
            clew.otlp_grpc,
            Some(ADMIN),
            one_trace("auth-otlp-grpc", "o")
        )
        .await,
        Through(200)
    );
    assert_eq!(
        storage_grpc(clew.jaeger_storage_grpc, Some(READ)).await,
        Through(200)
    );
}

/// `clew <args>` until it prints its listen line (`Ok`) or exits (`Err(stderr)`).
fn start_or_exit(args: &[&str], listen_prefix: &str) -> Result<std::process::Child, String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_clew"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("CLEW_CONFIG")
        .env_remove("CLEW_AGENT_CONFIG")
        .env_remove("CLEW_INSECURE_LISTEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn clew");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            if line.starts_with(listen_prefix) {
                return Ok(child);
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success(), "clew exited 0 without listening");
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return Err(err);
        }
        assert!(
            Instant::now() < deadline,
            "clew neither listened nor exited"
        );
    }
}

fn serve_args<'a>(data_dir: &'a Path, grpc_addr: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "serve",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--otlp-grpc-addr",
        grpc_addr,
    ];
    args.extend(ephemeral_listeners(&["--otlp-grpc-addr"]));
    args.extend_from_slice(extra);
    args
}

#[test]
fn without_auth_a_non_loopback_address_needs_insecure_listen() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let err = start_or_exit(&serve_args(&data, "0.0.0.0:0", &[]), "clew listening")
        .expect_err("clew listened on 0.0.0.0 without auth");
    assert!(
        err.contains("OTLP gRPC (--otlp-grpc-addr) on 0.0.0.0:0"),
        "{err}"
    );
    assert!(
        err.contains("--insecure-listen") && err.contains("[auth]"),
        "{err}"
    );
    assert!(!data.exists(), "a refused start left a data directory");

    let mut child = start_or_exit(
        &serve_args(&data, "0.0.0.0:0", &["--insecure-listen"]),
        "clew listening",
    )
    .expect("--insecure-listen starts");
    let _ = child.kill();
    let _ = child.wait();

    // with tokens, no flag is needed
    let config = tmp.path().join("clew.toml");
    std::fs::write(&config, auth_section(true)).unwrap();
    let mut child = start_or_exit(
        &serve_args(&data, "0.0.0.0:0", &["--config", config.to_str().unwrap()]),
        "clew listening",
    )
    .expect("auth on starts on 0.0.0.0");
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(feature = "kafka")]
mod agent {
    use super::*;

    fn agent_args<'a>(spool: &'a Path, config: &'a Path, grpc_addr: &'a str) -> Vec<&'a str> {
        vec![
            "agent",
            "--config",
            config.to_str().unwrap(),
            "--spool-dir",
            spool.to_str().unwrap(),
            "--otlp-grpc-addr",
            grpc_addr,
            "--otlp-http-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
            "--sampling-http-addr",
            "127.0.0.1:0",
        ]
    }

    fn field(line: &str, key: &str) -> std::net::SocketAddr {
        line.split_whitespace()
            .find_map(|p| p.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key} in {line}"))
            .parse()
            .unwrap()
    }

    /// The agent's receivers, sampling and `/metrics`, with Kafka unreachable (spans go
    /// to the spool, which is an acknowledgement all the same).
    #[tokio::test(flavor = "multi_thread")]
    async fn agent_listeners_check_tokens_and_scopes() {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("agent.toml");
        std::fs::write(
            &config,
            // any tenant would do (it rides in the clew-tenant header); tenant
            // isolation through Kafka is tests/kafka_e2e.rs's
            format!(
                "[kafka]\nbrokers = \"127.0.0.1:1\"\ndelivery_timeout_ms = 1000\n{}",
                auth_section_of(true, "default")
            ),
        )
        .unwrap();
        let spool = tmp.path().join("spool");
        let mut child = Command::new(env!("CARGO_BIN_EXE_clew"))
            .args(agent_args(&spool, &config, "127.0.0.1:0"))
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let line = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.starts_with("clew agent listening "))
            .expect("agent listen line");
        let (grpc, otlp_http, metrics, sampling) = (
            field(&line, "otlp_grpc"),
            field(&line, "otlp_http"),
            field(&line, "metrics"),
            field(&line, "sampling_http"),
        );
        let http = reqwest::Client::new();
        use Answer::*;
        let ingest = [
            Unauthenticated,
            Unauthenticated,
            Through(200),
            Forbidden,
            Through(200),
        ];

        let mut got = Vec::new();
        for (_, token) in CASES {
            let req = http
                .post(format!("http://{otlp_http}/v1/traces"))
                .header("content-type", "application/x-protobuf")
                .body(one_trace("agent", "o").encode_to_vec());
            got.push(http_answer(req, token).await.0);
        }
        expect(&got, &ingest, "agent OTLP/HTTP");
        let mut got = Vec::new();
        for (_, token) in CASES {
            got.push(otlp_grpc(grpc, token, one_trace("agent", "o")).await);
        }
        expect(&got, &ingest, "agent OTLP/gRPC");

        let mut got = Vec::new();
        for (_, token) in CASES {
            let url = format!("http://{sampling}/api/sampling?service=web");
            got.push(http_answer(http.get(url), token).await.0);
        }
        expect(
            &got,
            &[
                Unauthenticated,
                Unauthenticated,
                Through(200),
                Through(200),
                Through(200),
            ],
            "agent sampling HTTP",
        );

        let mut got = Vec::new();
        for (_, token) in CASES {
            let url = format!("http://{metrics}/metrics");
            got.push(http_answer(http.get(url), token).await.0);
        }
        expect(
            &got,
            &[
                Unauthenticated,
                Unauthenticated,
                Forbidden,
                Through(200),
                Through(200),
            ],
            "agent /metrics",
        );
        let (health, _) = http_answer(http.get(format!("http://{metrics}/healthz")), None).await;
        assert_eq!(health, Through(200));

        // the agent re-reads its tokens too
        std::fs::write(
            &config,
            format!(
                "[kafka]\nbrokers = \"127.0.0.1:1\"\ndelivery_timeout_ms = 1000\n{}",
                auth_section(false)
            ),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while otlp_grpc(grpc, Some(INGEST), one_trace("agent", "o")).await != Unauthenticated {
            assert!(Instant::now() < deadline, "the removed token still works");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn agent_without_auth_refuses_a_non_loopback_address() {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("agent.toml");
        std::fs::write(&config, "[kafka]\nbrokers = \"127.0.0.1:1\"\n").unwrap();
        let spool = tmp.path().join("spool");
        let err = start_or_exit(
            &agent_args(&spool, &config, "0.0.0.0:0"),
            "clew agent listening",
        )
        .expect_err("agent listened on 0.0.0.0 without auth");
        assert!(
            err.contains("OTLP gRPC (--otlp-grpc-addr) on 0.0.0.0:0"),
            "{err}"
        );
        let mut args = agent_args(&spool, &config, "0.0.0.0:0");
        args.push("--insecure-listen");
        let mut child = start_or_exit(&args, "clew agent listening").expect("--insecure-listen");
        let _ = child.kill();
        let _ = child.wait();
    }
}
