//! TLS of clew's Kafka clients on the real broker of `scripts/kafka-start`, whose second
//! client listener speaks TLS and requires a client certificate (`KAFKA_TLS_BOOTSTRAP`,
//! `KAFKA_TLS_CA`, `KAFKA_TLS_CLIENT_CERT`, `KAFKA_TLS_CLIENT_KEY`). Nothing in clew is
//! TLS-specific: librdkafka (built with OpenSSL) takes Kafka's own `security.protocol`
//! and `ssl.*` properties from `[kafka.properties]` (`clew agent`) and
//! `[collector.kafka.properties]` (`clew serve`), as a user writes them.
//!
//! - OTLP → `clew agent` → TLS listener → `clew serve` consuming over TLS → query API;
//! - a CA that did not sign the broker's certificate: both clients log the failed
//!   verification, the agent keeps what it acknowledged in its spool and the collector
//!   commits nothing, so both deliver everything once given the right CA;
//! - a CA or client certificate file that does not exist: both programs refuse to start,
//!   naming the property.
//!
//! Run: `eval "$(scripts/kafka-start)"; cargo test --test kafka_tls -- --ignored`.

mod common;
#[path = "../net/tests/support/mod.rs"]
mod tls_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::agent::Agent;
use common::kafka::{bootstrap, create_topic};
use common::{otlp_span, random_trace_id, request, unique, Clew};
use prost::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

const PARTITIONS: i32 = 4;

/// What `scripts/kafka-start` printed about its TLS listener.
struct BrokerTls {
    bootstrap: String,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl BrokerTls {
    fn from_env() -> BrokerTls {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!("{name} not set: run `eval \"$(scripts/kafka-start)\"` (scripts/test does)")
            })
        };
        BrokerTls {
            bootstrap: var("KAFKA_TLS_BOOTSTRAP"),
            ca: var("KAFKA_TLS_CA").into(),
            cert: var("KAFKA_TLS_CLIENT_CERT").into(),
            key: var("KAFKA_TLS_CLIENT_KEY").into(),
        }
    }

    /// A `[<section>]` of librdkafka properties: TLS trusting `ca`, with the client
    /// certificate the listener requires.
    fn properties(&self, section: &str, ca: &Path) -> String {
        format!(
            "[{section}]\n\"security.protocol\" = \"SSL\"\n\"ssl.ca.location\" = {:?}\n\"ssl.certificate.location\" = {:?}\n\"ssl.key.location\" = {:?}\n",
            ca.to_str().unwrap(),
            self.cert.to_str().unwrap(),
            self.key.to_str().unwrap(),
        )
    }
}

/// An agent config producing `topic` to the TLS listener, trusting `ca`.
fn agent_config(dir: &Path, name: &str, tls: &BrokerTls, topic: &str, ca: &Path) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "[kafka]\nbrokers = {:?}\ntopic = {topic:?}\ndelivery_timeout_ms = 2000\n\n{}",
            tls.bootstrap,
            tls.properties("kafka.properties", ca)
        ),
    )
    .unwrap();
    path
}

/// A `clew serve` config consuming `topic` (Avro, as the agent writes it) from the TLS
/// listener in consumer group `group`, trusting `ca`.
fn collector_config(
    dir: &Path,
    name: &str,
    tls: &BrokerTls,
    topic: &str,
    group: &str,
    ca: &Path,
) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "[collector.kafka]\nbrokers = [{:?}]\ngroup_id = {group:?}\ncommit_interval_ms = 200\n\n[[collector.kafka.topics]]\nname = {topic:?}\nformat = \"avro\"\n\n{}",
            tls.bootstrap,
            tls.properties("collector.kafka.properties", ca)
        ),
    )
    .unwrap();
    path
}

/// One trace of three spans for service `tls-svc`, sent as OTLP/protobuf over HTTP.
async fn send_trace(agent: &Agent, trace: [u8; 16]) {
    let spans = (1..=3)
        .map(|i| otlp_span(trace, i, (i > 1).then_some(1), &format!("op-{i}"), vec![]))
        .collect();
    let resp = reqwest::Client::new()
        .post(agent.otlp_http_url())
        .header("content-type", "application/x-protobuf")
        .body(request("tls-svc", spans).encode_to_vec())
        .send()
        .await
        .expect("agent OTLP/HTTP reachable");
    assert_eq!(resp.status(), 200, "the agent acknowledges the trace");
}

/// Polls the query API until the trace has `spans` spans.
async fn wait_trace(clew: &Clew, trace: &[u8; 16], spans: usize, timeout: Duration) {
    let id = hex::encode(trace);
    let deadline = Instant::now() + timeout;
    loop {
        let (status, t) = clew.get(&format!("/api/v1/traces/{id}")).await;
        if status == 200 && t["spans"].as_array().map_or(0, Vec::len) == spans {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "trace {id} did not reach {spans} spans within {timeout:?}; last answer {status}: {t}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls `log` (a file a process writes its stderr to) until it contains `needle`; returns
/// the line.
async fn wait_log(log: &Path, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(needle)) {
            eprintln!("[{}] {line}", log.display());
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "{} did not log {needle:?} within {timeout:?}:\n{text}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Records on `topic` (sum of the high watermarks), read over the plain-text listener.
fn records_on(topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique("clew-tls-test"))
        .create()
        .expect("consumer");
    (0..PARTITIONS)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(30))
                .expect("watermarks")
                .1
        })
        .sum()
}

fn log_file(path: &Path) -> Stdio {
    std::fs::File::create(path).expect("log file").into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka's TLS listener (KAFKA_TLS_* from scripts/kafka-start); scripts/test runs it"]
async fn agent_and_collector_carry_a_trace_over_tls() {
    let tls = BrokerTls::from_env();
    let topic = unique("tls-spans");
    create_topic(&topic, PARTITIONS).await;
    let tmp = tempfile::tempdir().unwrap();
    let agent_cfg = agent_config(tmp.path(), "agent.toml", &tls, &topic, &tls.ca);
    let agent = Agent::start(
        &tmp.path().join("spool"),
        &["--config", agent_cfg.to_str().unwrap()],
    );
    let clew_cfg = collector_config(
        tmp.path(),
        "clew.toml",
        &tls,
        &topic,
        &unique("tls-group"),
        &tls.ca,
    );
    let clew = Clew::start(&["--config", clew_cfg.to_str().unwrap()]);

    let trace = random_trace_id();
    send_trace(&agent, trace).await;
    wait_trace(&clew, &trace, 3, Duration::from_secs(90)).await;

    // straight to Kafka over TLS, not through the spool
    assert_eq!(
        agent.metric("clew_agent_records_produced_total", &[]).await,
        1.0
    );
    assert_eq!(
        agent.metric("clew_agent_records_spooled_total", &[]).await,
        0.0
    );
    assert_eq!(records_on(&topic), 1, "one record on the topic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka's TLS listener (KAFKA_TLS_* from scripts/kafka-start); scripts/test runs it"]
async fn a_wrong_ca_is_refused_with_a_clear_error_and_nothing_is_lost() {
    let tls = BrokerTls::from_env();
    let topic = unique("tls-wrong-ca");
    create_topic(&topic, PARTITIONS).await;
    let tmp = tempfile::tempdir().unwrap();
    let wrong = tmp.path().join("wrong");
    std::fs::create_dir(&wrong).unwrap();
    tls_support::make_ca(&wrong); // a CA of its own, that signed nothing of the broker's
    let wrong_ca = wrong.join("ca.pem");
    let spool = tmp.path().join("spool");
    let group = unique("tls-wrong-ca-group");
    const VERIFY: &str = "certificate verify failed";

    // The agent acknowledges (its spool keeps the record) and says why Kafka refuses it.
    let agent_log = tmp.path().join("agent-wrong.log");
    let cfg = agent_config(tmp.path(), "agent-wrong.toml", &tls, &topic, &wrong_ca);
    let mut agent = Agent::start_logging_to(
        &spool,
        &["--config", cfg.to_str().unwrap()],
        log_file(&agent_log),
    );
    let trace = random_trace_id();
    send_trace(&agent, trace).await;
    let line = wait_log(&agent_log, VERIFY, Duration::from_secs(60)).await;
    assert!(line.contains("SSL handshake failed"), "{line}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while agent.metric("clew_agent_spool_records", &[]).await < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the refused record never reached the spool"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        agent.metric("clew_agent_records_produced_total", &[]).await,
        0.0
    );
    assert_eq!(records_on(&topic), 0, "nothing crossed the refused link");
    assert!(agent.terminate().success(), "the agent stops cleanly");

    // The collector keeps serving, logs the same reason and consumes nothing.
    let clew_log = tmp.path().join("clew-wrong.log");
    let cfg = collector_config(
        tmp.path(),
        "clew-wrong.toml",
        &tls,
        &topic,
        &group,
        &wrong_ca,
    );
    let data = tmp.path().join("data");
    let mut clew = Clew::start_logging_to(
        &data,
        &["--config", cfg.to_str().unwrap()],
        log_file(&clew_log),
    );
    let line = wait_log(&clew_log, VERIFY, Duration::from_secs(60)).await;
    assert!(line.contains("SSL handshake failed"), "{line}");
    let (status, _) = clew.get("/api/v1/services").await;
    assert_eq!(status, 200, "clew serve keeps answering");
    assert!(clew.terminate().success(), "clew serve stops cleanly");

    // The right CA: the agent replays its spool, the collector (same group: it committed
    // nothing) reads the trace.
    let cfg = agent_config(tmp.path(), "agent.toml", &tls, &topic, &tls.ca);
    let agent = Agent::start(&spool, &["--config", cfg.to_str().unwrap()]);
    let cfg = collector_config(tmp.path(), "clew.toml", &tls, &topic, &group, &tls.ca);
    let clew = Clew::start_in(&data, &["--config", cfg.to_str().unwrap()]);
    wait_trace(&clew, &trace, 3, Duration::from_secs(90)).await;
    assert_eq!(records_on(&topic), 1, "the spooled record, once");
    assert_eq!(agent.metric("clew_agent_spool_records", &[]).await, 0.0);
}

/// Runs `clew <args>` until it exits (60 s at most): its status and stderr.
fn run_to_exit(args: &[&str]) -> (std::process::ExitStatus, String) {
    let tmp = tempfile::tempdir().unwrap();
    let err = tmp.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_clew"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("CLEW_CONFIG")
        .env_remove("CLEW_AGENT_CONFIG")
        .stdout(Stdio::null())
        .stderr(log_file(&err))
        .spawn()
        .expect("spawn clew");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let err = std::fs::read_to_string(&err).unwrap();
            eprintln!("[clew {}: {status}] {err}", args[0]);
            return (status, err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "clew {args:?} kept running with a missing file:\n{}",
                std::fs::read_to_string(&err).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A CA file, or a client certificate, that is not there is a start-up error of both
/// programs, naming the property, not a client that retries forever. Needs no broker:
/// librdkafka reads the files when the client is created.
#[test]
fn a_missing_ca_or_certificate_file_stops_agent_and_collector_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    tls_support::make_ca(tmp.path());
    let missing = |name: &str| tmp.path().join(name);
    let cases = [
        // (CA, client certificate, the property the error must name)
        (
            missing("no-such-ca.pem"),
            missing("no-such-client.pem"),
            "ssl.ca.location",
        ),
        (
            tmp.path().join("ca.pem"),
            missing("no-such-client.pem"),
            "ssl.certificate.location",
        ),
    ];
    for (i, (ca, cert, property)) in cases.into_iter().enumerate() {
        let tls = BrokerTls {
            bootstrap: "127.0.0.1:9".into(),
            ca,
            cert,
            key: missing("no-such-client.key"),
        };
        let agent_cfg = agent_config(tmp.path(), &format!("agent-{i}.toml"), &tls, "t", &tls.ca);
        let spool = tmp.path().join(format!("spool-{i}"));
        let (status, err) = run_to_exit(&[
            "agent",
            "--config",
            agent_cfg.to_str().unwrap(),
            "--spool-dir",
            spool.to_str().unwrap(),
            "--otlp-grpc-addr",
            "127.0.0.1:0",
            "--otlp-http-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ]);
        assert!(!status.success(), "clew agent started anyway:\n{err}");
        assert!(err.contains(property), "{property}: {err}");

        let clew_cfg = collector_config(
            tmp.path(),
            &format!("clew-{i}.toml"),
            &tls,
            "t",
            "g",
            &tls.ca,
        );
        let data = tmp.path().join(format!("data-{i}"));
        let mut args = vec![
            "serve",
            "--config",
            clew_cfg.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ];
        args.extend(common::ephemeral_listeners(&[]));
        let (status, err) = run_to_exit(&args);
        assert!(!status.success(), "clew serve started anyway:\n{err}");
        assert!(err.contains(property), "{property}: {err}");
    }
}
