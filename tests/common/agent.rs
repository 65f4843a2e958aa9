//! Runs the real `clew agent` binary (OTLP in, Avro to Kafka) on free ports.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `clew agent`.
pub struct Agent {
    child: Child,
    pub otlp_grpc: SocketAddr,
    pub otlp_http: SocketAddr,
    pub metrics: SocketAddr,
    /// `--sampling-http-addr`, when given.
    pub sampling_http: Option<SocketAddr>,
    pub spool_dir: PathBuf,
}

impl Agent {
    /// Starts `clew agent` with `--spool-dir spool_dir`, free ports and `extra_args`
    /// (e.g. `--kafka-brokers`, `--kafka-topic`, `--config`).
    pub fn start(spool_dir: &Path, extra_args: &[&str]) -> Agent {
        Agent::start_logging_to(spool_dir, extra_args, Stdio::inherit())
    }

    /// [`Agent::start`] with the agent's stderr (its log) sent to `stderr`.
    pub fn start_logging_to(spool_dir: &Path, extra_args: &[&str], stderr: Stdio) -> Agent {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_clew"));
        cmd.arg("agent")
            .arg("--spool-dir")
            .arg(spool_dir)
            .args([
                "--otlp-grpc-addr",
                "127.0.0.1:0",
                "--otlp-http-addr",
                "127.0.0.1:0",
                "--metrics-addr",
                "127.0.0.1:0",
            ])
            .args(extra_args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env_remove("CLEW_AGENT_CONFIG")
            .env_remove("CLEW_SAMPLING_FILE")
            .env_remove("CLEW_SAMPLING_STRATEGIES")
            .env_remove("CLEW_SAMPLING_HTTP_ADDR")
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = cmd.spawn().expect("spawn clew agent");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("[clew agent stdout] {line}");
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let _ = child.kill();
                panic!("clew agent did not report its listen addresses within 60 s");
            };
            let Some(rest) = line.strip_prefix("clew agent listening ") else {
                continue;
            };
            let fields: HashMap<String, String> = rest
                .split_whitespace()
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let addr = |k: &str| -> SocketAddr {
                fields
                    .get(k)
                    .unwrap_or_else(|| panic!("no {k} in {line:?}"))
                    .parse()
                    .expect("socket address")
            };
            return Agent {
                otlp_grpc: addr("otlp_grpc"),
                otlp_http: addr("otlp_http"),
                metrics: addr("metrics"),
                sampling_http: fields.get("sampling_http").map(|_| addr("sampling_http")),
                spool_dir: PathBuf::from(&fields["spool"]),
                child,
            };
        }
    }

    pub fn otlp_grpc_url(&self) -> String {
        format!("http://{}", self.otlp_grpc)
    }

    pub fn otlp_http_url(&self) -> String {
        format!("http://{}/v1/traces", self.otlp_http)
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics_text(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.metrics))
            .await
            .expect("agent metrics reachable")
            .text()
            .await
            .expect("metrics body")
    }

    /// Sum of the samples of `name` whose label set contains every `labels` pair.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_value(&self.metrics_text().await, name, labels)
    }

    /// SIGTERM and wait for a clean exit (30 s at most).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("clew agent did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, no chance to flush.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sum of the samples of `name` in Prometheus text whose labels include all of `labels`.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let ok = labels
                .iter()
                .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")));
            if ok {
                value.parse::<f64>().ok()
            } else {
                None
            }
        })
        .sum()
}
