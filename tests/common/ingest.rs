//! Ingest loops for fault tests: one OTLP/gRPC and one OTLP/HTTP client, each sending one
//! new trace per request and sending a request again after a retryable answer (as OTLP
//! exporters do), recording every answer by the phase of the test in which it arrived.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clew_proto::otlp::collector::trace::v1::trace_service_client::TraceServiceClient;
use clew_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use super::{kv, otlp_span, request};

/// Phases: 0 before the outage, 1 while a backend is down, 2 from the moment it is being
/// started again.
pub const PHASES: usize = 3;

/// What the ingest loops saw, by the phase in which the answer arrived.
#[derive(Default, Debug)]
pub struct Seen {
    pub acked: [usize; PHASES],
    pub retryable: [usize; PHASES],
    /// Anything else: OK with rejected spans, a non-retryable status, 503 without Retry-After.
    pub wrong: Vec<String>,
    /// (trace id, span ids, business key `order_id`) of every acknowledged request.
    pub acked_traces: Vec<([u8; 16], Vec<u64>, String)>,
}

/// Shared state of a fault test's ingest loops.
#[derive(Clone, Default)]
pub struct Loops {
    pub phase: Arc<AtomicUsize>,
    pub stop: Arc<AtomicBool>,
    pub seen: Arc<Mutex<Seen>>,
}

pub const SPANS_PER_REQUEST: u64 = 5;

/// A request of one new trace of `service` whose root carries a fresh `order_id`.
fn new_request(service: &str) -> ([u8; 16], String, ExportTraceServiceRequest) {
    let trace: [u8; 16] = rand::random::<[u8; 16]>().map(|b| b | 1);
    let order = format!("{service}-{}", hex::encode(&trace[..6]));
    let spans = (1..=SPANS_PER_REQUEST)
        .map(|i| {
            let attrs = if i == 1 {
                vec![kv("order_id", &order)]
            } else {
                vec![]
            };
            otlp_span(trace, i, (i > 1).then_some(1), "op", attrs)
        })
        .collect();
    (trace, order, request(service, spans))
}

impl Loops {
    fn acked(&self, phase: usize, trace: [u8; 16], order: String) {
        let mut s = self.seen.lock().unwrap();
        s.acked[phase] += 1;
        s.acked_traces
            .push((trace, (1..=SPANS_PER_REQUEST).collect(), order));
    }

    /// The gRPC loop, until `stop`.
    pub fn spawn_grpc(&self, url: String, service: &str) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        let service = service.to_string();
        let channel = tonic::transport::Endpoint::from_shared(url)
            .unwrap()
            .timeout(Duration::from_secs(30))
            .connect_lazy();
        tokio::spawn(async move {
            let mut client = TraceServiceClient::new(channel);
            while !this.stop.load(Ordering::Relaxed) {
                let (trace, order, req) = new_request(&service);
                loop {
                    let answer = client.export(req.clone()).await;
                    // the phase when the answer came, not when the request left
                    let p = this.phase.load(Ordering::Relaxed);
                    match answer {
                        Ok(answer) => {
                            match answer.into_inner().partial_success {
                                Some(ps) if ps.rejected_spans > 0 => this
                                    .seen
                                    .lock()
                                    .unwrap()
                                    .wrong
                                    .push(format!("grpc partial success {ps:?}")),
                                _ => this.acked(p, trace, order),
                            }
                            break;
                        }
                        Err(st) if st.code() == tonic::Code::Unavailable => {
                            this.seen.lock().unwrap().retryable[p] += 1;
                            if this.stop.load(Ordering::Relaxed) {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(250)).await;
                        }
                        Err(st) => {
                            this.seen
                                .lock()
                                .unwrap()
                                .wrong
                                .push(format!("grpc: {st:?}"));
                            break;
                        }
                    }
                }
            }
        })
    }

    /// The HTTP (protobuf) loop, until `stop`.
    pub fn spawn_http(&self, url: String, service: &str) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        let service = service.to_string();
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            while !this.stop.load(Ordering::Relaxed) {
                let (trace, order, req) = new_request(&service);
                let body = req.encode_to_vec();
                loop {
                    let resp = client
                        .post(&url)
                        .header("content-type", "application/x-protobuf")
                        .body(body.clone())
                        .send()
                        .await;
                    let resp = match resp {
                        Ok(r) => r,
                        Err(e) => {
                            this.seen.lock().unwrap().wrong.push(format!("http: {e}"));
                            break;
                        }
                    };
                    let p = this.phase.load(Ordering::Relaxed);
                    let status = resp.status().as_u16();
                    let retry_after = resp.headers().contains_key("retry-after");
                    match status {
                        200 => {
                            this.acked(p, trace, order);
                            break;
                        }
                        503 if retry_after => {
                            this.seen.lock().unwrap().retryable[p] += 1;
                            if this.stop.load(Ordering::Relaxed) {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(250)).await;
                        }
                        _ => {
                            let text = resp.text().await.unwrap_or_default();
                            this.seen.lock().unwrap().wrong.push(format!(
                                "http {status} (retry-after: {retry_after}): {text}"
                            ));
                            break;
                        }
                    }
                }
            }
        })
    }

    /// Waits until `cond(seen)` holds, or fails the test after `limit` with what was seen.
    pub async fn wait(&self, what: &str, limit: Duration, cond: impl Fn(&Seen) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            {
                let s = self.seen.lock().unwrap();
                assert!(
                    s.wrong.is_empty(),
                    "wrong answers while {what}: {:?}",
                    s.wrong
                );
                if cond(&s) {
                    return;
                }
                if Instant::now() > deadline {
                    panic!(
                        "not {what} within {limit:?}: acked {:?}, retryable {:?}",
                        s.acked, s.retryable
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Runs `scripts/<name> <args>` and waits for it at most `limit`, killing it after.
pub fn run_script(name: &str, args: &[&str], limit: Duration) {
    let script = format!("{}/scripts/{name}", env!("CARGO_MANIFEST_DIR"));
    let mut child = std::process::Command::new(&script)
        .args(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{script}: {e}"));
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{script} {args:?} failed: {status}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{script} {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
