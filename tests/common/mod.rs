//! Test harness: runs the real `clew` binary on free ports in a temporary data directory
//! and talks to it over real sockets.

#![allow(dead_code)]

pub mod ingest;
pub mod kafka;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clew_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use clew_proto::otlp::common::v1::{any_value, AnyValue, KeyValue};
use clew_proto::otlp::resource::v1::Resource;
use clew_proto::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};
use serde_json::Value;

pub mod agent;
pub mod alertmanager;
pub mod jaeger;
pub mod small_fs;

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Every listener flag of `clew serve`: a test server puts each one on a free loopback port
/// ([`ephemeral_listeners`]), so a new listener is added here once.
pub const SERVE_LISTENERS: [&str; 7] = [
    "--otlp-grpc-addr",
    "--otlp-http-addr",
    "--zipkin-addr",
    "--sampling-http-addr",
    "--sampling-grpc-addr",
    "--http-addr",
    "--jaeger-storage-grpc-addr",
];

/// `flag 127.0.0.1:0` for every flag of [`SERVE_LISTENERS`] not in `except` (the ones a test
/// sets itself).
pub fn ephemeral_listeners(except: &[&str]) -> Vec<&'static str> {
    SERVE_LISTENERS
        .iter()
        .filter(|flag| !except.contains(flag))
        .flat_map(|flag| [*flag, "127.0.0.1:0"])
        .collect()
}

/// A running `clew serve`.
pub struct Clew {
    child: Child,
    /// The `clew` process itself: `child` unless clew runs under a wrapper (`strace`).
    pid: u32,
    pub otlp_grpc: SocketAddr,
    pub otlp_http: SocketAddr,
    pub zipkin: SocketAddr,
    pub sampling_http: SocketAddr,
    pub sampling_grpc: SocketAddr,
    pub http: SocketAddr,
    /// Jaeger v2 remote storage (`jaeger.storage.v2` gRPC).
    pub jaeger_storage_grpc: SocketAddr,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Clew {
    /// Starts `clew serve` in a fresh temporary data directory.
    pub fn start(extra_args: &[&str]) -> Clew {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        let mut clew = Clew::start_in(&dir, extra_args);
        clew._tmp = Some(tmp);
        clew
    }

    /// Starts `clew serve` on `data_dir` (kept by the caller, e.g. across restarts).
    pub fn start_in(data_dir: &Path, extra_args: &[&str]) -> Clew {
        Clew::start_logging_to(data_dir, extra_args, Stdio::inherit())
    }

    /// [`Clew::start_in`] with clew's stderr (its log and final error) sent to `stderr`.
    pub fn start_logging_to(data_dir: &Path, extra_args: &[&str], stderr: Stdio) -> Clew {
        Clew::start_wrapped(&[], data_dir, extra_args, stderr)
    }

    /// [`Clew::start_logging_to`] with `clew` run by `wrapper` (a program and its
    /// arguments, e.g. `strace -o LOG`), which must run it as its only direct child.
    pub fn start_wrapped(
        wrapper: &[&str],
        data_dir: &Path,
        extra_args: &[&str],
        stderr: Stdio,
    ) -> Clew {
        let clew = env!("CARGO_BIN_EXE_clew");
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(clew);
                cmd
            }
            None => Command::new(clew),
        };
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(ephemeral_listeners(&[]))
            .args(["--business-key", "order_id"])
            .args(extra_args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env_remove("CLEW_CONFIG")
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = cmd.spawn().expect("spawn clew");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("[clew stdout] {line}");
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(l) => l,
                Err(_) => {
                    let _ = child.kill();
                    panic!("clew did not report its listen addresses within 60 s");
                }
            };
            if let Some(rest) = line.strip_prefix("clew listening ") {
                let mut addrs = std::collections::HashMap::new();
                for part in rest.split_whitespace() {
                    if let Some((k, v)) = part.split_once('=') {
                        addrs.insert(k.to_string(), v.to_string());
                    }
                }
                let get = |k: &str| -> SocketAddr {
                    addrs
                        .get(k)
                        .unwrap_or_else(|| panic!("no {k} in {line:?}"))
                        .parse()
                        .expect("socket address")
                };
                let pid = if wrapper.is_empty() {
                    child.id()
                } else {
                    wrapped_child(child.id())
                };
                return Clew {
                    pid,
                    otlp_grpc: get("otlp_grpc"),
                    otlp_http: get("otlp_http"),
                    zipkin: get("zipkin"),
                    sampling_http: get("sampling_http"),
                    sampling_grpc: get("sampling_grpc"),
                    http: get("http"),
                    jaeger_storage_grpc: get("jaeger_storage_grpc"),
                    child,
                    data_dir: data_dir.to_path_buf(),
                    _tmp: None,
                };
            }
        }
    }

    /// The clew process's id (for `/proc/<pid>/status`).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn api_url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.http, path_and_query)
    }

    pub fn otlp_http_url(&self) -> String {
        format!("http://{}/v1/traces", self.otlp_http)
    }

    pub fn zipkin_url(&self) -> String {
        format!("http://{}/api/v2/spans", self.zipkin)
    }

    pub fn otlp_grpc_url(&self) -> String {
        format!("http://{}", self.otlp_grpc)
    }

    /// GET on the query API: (status, JSON body or `Value::Null`).
    pub async fn get(&self, path_and_query: &str) -> (u16, Value) {
        let resp = reqwest::get(self.api_url(path_and_query))
            .await
            .expect("query API reachable");
        let status = resp.status().as_u16();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// The text of `/metrics`, asked with `token` as a bearer token when given; panics
    /// when it cannot be read.
    pub async fn metrics(&self, token: Option<&str>) -> String {
        let mut req = reqwest::Client::new().get(self.api_url("/metrics"));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("the /metrics body")
    }

    /// Polls `path` until `ready(body)` holds; panics after `timeout`. (Freshness is a
    /// target measured in benchmarks; tests only wait for it.)
    pub async fn wait_for(
        &self,
        path: &str,
        timeout: Duration,
        ready: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, body) = self.get(path).await;
            if status == 200 && ready(&body) {
                return body;
            }
            if Instant::now() > deadline {
                panic!("{path} never satisfied the condition; last answer {status}: {body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits up to `timeout` for clew to exit on its own; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, no chance to flush.
    pub fn kill9(&mut self) {
        self.signal("-KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` (`-TERM`, `-KILL`) to the clew process itself, unless it has exited
    /// (its pid could belong to another process by now).
    fn signal(&mut self, signal: &str) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let _ = Command::new("kill")
            .args([signal, &self.pid.to_string()])
            .status();
    }

    /// SIGTERM and wait for a clean exit; returns the exit status (of the wrapper, if
    /// any, which exits with clew).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("clew did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The one child process of `parent` (the clew a wrapper started), waiting for it briefly.
fn wrapped_child(parent: u32) -> u32 {
    let path = format!("/proc/{parent}/task/{parent}/children");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let children = std::fs::read_to_string(&path).unwrap_or_default();
        if let Some(pid) = children.split_whitespace().next() {
            return pid.parse().expect("pid");
        }
        assert!(
            Instant::now() < deadline,
            "wrapper {parent} started no child"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Clew {
    fn drop(&mut self) {
        // the clew process first: a tracer killed alone would leave it running, detached
        self.signal("-KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A unique suffix for values in one test run.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

pub fn now_unix_nano() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// The Python interpreter with the OpenTelemetry SDK (`scripts/setup-python` makes it).
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("CLEW_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").expect("HOME");
    let cache = std::env::var("CLEW_CACHE").unwrap_or_else(|_| format!("{home}/.cache/clew"));
    let p = PathBuf::from(cache).join("venv/bin/python");
    assert!(
        p.exists(),
        "{} missing: run scripts/setup-python (scripts/test does)",
        p.display()
    );
    p
}

/// Span ids of a trace answer, as a sorted list.
pub fn span_ids(trace: &Value) -> Vec<String> {
    let mut ids: Vec<String> = trace["spans"]
        .as_array()
        .expect("spans array")
        .iter()
        .map(|s| s["span_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// The span named `name` in a trace answer.
pub fn span_named<'a>(trace: &'a Value, name: &str) -> &'a Value {
    trace["spans"]
        .as_array()
        .expect("spans array")
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no span named {name} in {trace}"))
}

/// Trace ids of a search/keys answer, in order.
pub fn trace_ids(answer: &Value) -> Vec<String> {
    answer["traces"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| t["trace_id"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

// OTLP request builders shared by the tests that send raw OTLP.

pub fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

pub fn otlp_span(
    trace: [u8; 16],
    id: u64,
    parent: Option<u64>,
    name: &str,
    attrs: Vec<KeyValue>,
) -> Span {
    let start = now_unix_nano() - 1_000_000;
    Span {
        trace_id: trace.to_vec(),
        span_id: id.to_be_bytes().to_vec(),
        parent_span_id: parent.map(|p| p.to_be_bytes().to_vec()).unwrap_or_default(),
        name: name.into(),
        kind: 2,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 500_000,
        attributes: attrs,
        ..Default::default()
    }
}

pub fn request(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service)],
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

/// One encoded OTLP request: trace `trace` of `spans` spans (a root and its children),
/// each with a random `blob` attribute of 64 × `blob_repeat` bytes — for filling disks.
pub fn blob_request(service: &str, trace: [u8; 16], spans: u64, blob_repeat: usize) -> Vec<u8> {
    use prost::Message;
    let blob = hex::encode(rand::random::<[u8; 32]>()).repeat(blob_repeat);
    let spans = (1..=spans)
        .map(|i| {
            otlp_span(
                trace,
                i,
                (i > 1).then_some(1),
                "op",
                vec![kv("blob", &blob)],
            )
        })
        .collect();
    request(service, spans).encode_to_vec()
}

pub fn random_trace_id() -> [u8; 16] {
    let mut t: [u8; 16] = rand::random();
    t[0] |= 1;
    t
}
