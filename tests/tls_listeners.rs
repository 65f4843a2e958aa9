//! `[tls]` on a real `clew serve`: every listener speaks TLS with the configured
//! certificate — OTLP/HTTP export and the query API over HTTPS (reqwest on rustls), an
//! OTLP/gRPC export over TLS (tonic's client on a rustls connection, ALPN h2), the other
//! ports' handshakes (h2 on gRPC ports) — a plain-text client is refused, and
//! `clew config` prints the section. Rotation, broken files, client certificates and the
//! handshake timeout are tested on the accept loop itself (`net/tests/tls.rs`). The
//! Python OpenTelemetry SDK's exporters over TLS need `scripts/setup-python`'s venv (an
//! ignored test; `scripts/test` runs it). Certificates are made with the `openssl`
//! command line.

mod common;
#[path = "../net/tests/support/mod.rs"]
mod tls_support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clew_proto::otlp::collector::trace::v1::trace_service_client::TraceServiceClient;
use common::{kv, otlp_span, python, random_trace_id, request, Clew};
use prost::Message;
use tls_support::client_config;
use tokio_rustls::rustls::pki_types::ServerName;

/// `ca.pem` and a server certificate `server.pem` / `server.key` for localhost it signed.
fn make_certs(dir: &Path) {
    tls_support::make_ca(dir);
    tls_support::make_leaf(dir, "server");
}

/// The ALPN protocol a TLS handshake with `port` agreed on.
async fn alpn(port: u16, ca: &Path, offer: &[&[u8]]) -> Option<Vec<u8>> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(client_config(ca, offer)))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap_or_else(|e| panic!("TLS handshake with port {port}: {e}"));
    tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
}

/// Certificates in `dir` and a config file with `[tls]` using them.
fn tls_config(dir: &Path) -> std::path::PathBuf {
    make_certs(dir);
    let config = dir.join("clew.toml");
    std::fs::write(
        &config,
        format!(
            "[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            dir.join("server.pem"),
            dir.join("server.key")
        ),
    )
    .unwrap();
    config
}

fn https_client(ca: &Path) -> reqwest::Client {
    tls_support::https_client(ca, Duration::from_secs(10))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Python OpenTelemetry SDK (scripts/setup-python); scripts/test runs it"]
async fn python_sdk_exports_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let config = tls_config(dir.path());
    let ca = dir.path().join("ca.pem");
    let clew = Clew::start(&["--config", config.to_str().unwrap()]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/send_traces.py");
    let https = https_client(&ca);
    for (protocol, port) in [
        ("grpc", clew.otlp_grpc.port()),
        ("http", clew.otlp_http.port()),
    ] {
        let out = Command::new(python())
            .arg(script)
            .args(["--protocol", protocol, "--endpoint"])
            .arg(format!("https://localhost:{port}"))
            .args(["--order-id", "tls-1", "--run-id", "tls", "--ca-file"])
            .arg(&ca)
            // requests lets these variables override a CA file set on its session (which
            // is how the HTTP exporter passes it), so a machine that sets them would make
            // the exporter trust only the system CAs
            .env_remove("REQUESTS_CA_BUNDLE")
            .env_remove("CURL_CA_BUNDLE")
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "python sender ({protocol}) failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let trace_id = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let url = format!(
            "https://localhost:{}/api/v1/traces/{trace_id}",
            clew.http.port()
        );
        let trace: serde_json::Value = https.get(&url).send().await.unwrap().json().await.unwrap();
        assert_eq!(
            trace["spans"].as_array().map(Vec::len),
            Some(3),
            "{protocol}: {trace}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_speaks_tls_from_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = tls_config(dir.path());
    let ca = dir.path().join("ca.pem");

    let printed = Command::new(env!("CARGO_BIN_EXE_clew"))
        .args(["config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(
        printed.contains("[tls]") && printed.contains("server.pem"),
        "{printed}"
    );

    let clew = Clew::start(&["--config", config.to_str().unwrap()]);
    let https = https_client(&ca);

    // OTLP/HTTP over HTTPS
    let http_trace = random_trace_id();
    let body = request(
        "tls-http",
        vec![otlp_span(http_trace, 1, None, "op", vec![kv("k", "v")])],
    )
    .encode_to_vec();
    let resp = https
        .post(format!(
            "https://localhost:{}/v1/traces",
            clew.otlp_http.port()
        ))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // OTLP/gRPC over TLS: tonic's client on a rustls connection that negotiated h2
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(&ca, &[b"h2"])));
    let grpc_addr = clew.otlp_grpc;
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://localhost:{}", grpc_addr.port()))
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_: http::Uri| {
                let connector = connector.clone();
                async move {
                    let tcp = tokio::net::TcpStream::connect(grpc_addr).await?;
                    let tls = connector
                        .connect(ServerName::try_from("localhost").unwrap(), tcp)
                        .await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
                }
            }))
            .await
            .unwrap();
    let grpc_trace = random_trace_id();
    TraceServiceClient::new(channel)
        .export(request(
            "tls-grpc",
            vec![otlp_span(grpc_trace, 1, None, "op", vec![])],
        ))
        .await
        .unwrap();

    // the query API over HTTPS reads both
    for trace in [http_trace, grpc_trace] {
        let url = format!(
            "https://localhost:{}/api/v1/traces/{}",
            clew.http.port(),
            hex::encode(trace)
        );
        let resp = https.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{url}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let services: serde_json::Value = https
            .get(format!(
                "https://localhost:{}/api/v1/services",
                clew.http.port()
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if services["services"]
            .as_array()
            .is_some_and(|s| s.len() == 2)
        {
            break;
        }
        assert!(Instant::now() < deadline, "{services}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // every other port: HTTP ones offer h2 and http/1.1, gRPC ones h2
    for port in [clew.zipkin.port(), clew.sampling_http.port()] {
        assert_eq!(
            alpn(port, &ca, &[b"http/1.1"]).await.as_deref(),
            Some(&b"http/1.1"[..])
        );
    }
    for port in [
        clew.otlp_grpc.port(),
        clew.sampling_grpc.port(),
        clew.jaeger_storage_grpc.port(),
    ] {
        assert_eq!(
            alpn(port, &ca, &[b"h2", b"http/1.1"]).await.as_deref(),
            Some(&b"h2"[..])
        );
    }
    let zipkin = https
        .post(format!(
            "https://localhost:{}/api/v2/spans",
            clew.zipkin.port()
        ))
        .header("content-type", "application/json")
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(zipkin.status(), 202);

    // plain text on a TLS port: no answer
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(clew.api_url("/api/v1/services"))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");
}

/// `clew agent` takes the same `[tls]`: its OTLP/HTTP receiver and metrics endpoint
/// answer over HTTPS (Kafka unreachable here, so the spans go to the spool), and a
/// plain-text client gets no answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clew_agent_listeners_speak_tls_from_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = tls_config(dir.path());
    let ca = dir.path().join("ca.pem");
    let agent = common::agent::Agent::start(
        &dir.path().join("spool"),
        &[
            "--config",
            config.to_str().unwrap(),
            "--kafka-brokers",
            "127.0.0.1:1",
        ],
    );
    let https = https_client(&ca);
    let body = request(
        "tls-agent",
        vec![otlp_span(
            random_trace_id(),
            1,
            None,
            "op",
            vec![kv("k", "v")],
        )],
    )
    .encode_to_vec();
    let answer = https
        .post(format!(
            "https://localhost:{}/v1/traces",
            agent.otlp_http.port()
        ))
        .header("content-type", "application/x-protobuf")
        .body(body.clone())
        .send()
        .await
        .expect("OTLP over HTTPS to the agent");
    assert_eq!(answer.status(), 200, "{:?}", answer.text().await);
    let metrics = https
        .get(format!(
            "https://localhost:{}/metrics",
            agent.metrics.port()
        ))
        .send()
        .await
        .expect("metrics over HTTPS")
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("clew_agent_"), "{metrics}");
    assert_eq!(
        alpn(agent.otlp_grpc.port(), &ca, &[b"h2"]).await.as_deref(),
        Some(&b"h2"[..])
    );
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .post(format!(
            "http://127.0.0.1:{}/v1/traces",
            agent.otlp_http.port()
        ))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP got an answer: {plain:?}");
}
