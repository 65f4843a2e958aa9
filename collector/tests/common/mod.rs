//! Shared test harness: a recording in-memory store and index (able to fail or stall on
//! demand), request builders, and a collector started on free ports.
#![allow(dead_code)]

use clew_proto::Tenant;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use clew_collector::{Collector, CollectorConfig};
use clew_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use clew_proto::otlp::common::v1::{any_value::Value, AnyValue, KeyValue};
use clew_proto::otlp::resource::v1::Resource;
use clew_proto::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span as OtlpSpan};
use clew_proto::{RejectReason, Span, TraceId};
use clew_store::{SpanStore, StoredTrace, TraceIdPage, TraceIndex, TraceQuery, WriteReport};
use tokio::sync::Semaphore;

pub const FAIL_NONE: u8 = 0;
pub const FAIL_RETRYABLE: u8 = 1;
pub const FAIL_PERMANENT: u8 = 2;

/// Span name the recording store refuses with `TraceTooLarge`.
pub const TOO_LARGE_NAME: &str = "store-says-too-large";

fn failure(mode: u8, what: &'static str) -> clew_store::Result<()> {
    match mode {
        FAIL_RETRYABLE => Err(clew_store::Error::unavailable(
            what,
            "disk full (simulated)",
        )),
        FAIL_PERMANENT => Err(clew_store::Error::corrupt(what, "broken (simulated)")),
        _ => Ok(()),
    }
}

#[derive(Default)]
pub struct RecordingStore {
    pub spans: Mutex<Vec<Span>>,
    pub fail: AtomicU8,
    /// When set, each write waits for one permit (tests stall the store with it).
    pub gate: Mutex<Option<Arc<Semaphore>>>,
    /// Calls of `write_spans` so far (including stalled ones).
    pub writes_started: std::sync::atomic::AtomicUsize,
}

impl RecordingStore {
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .spans
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.name.clone())
            .collect();
        v.sort();
        v
    }
    pub fn len(&self) -> usize {
        self.spans.lock().unwrap().len()
    }
}

#[async_trait]
impl SpanStore for RecordingStore {
    async fn write_spans(&self, spans: Arc<[Span]>) -> clew_store::Result<WriteReport> {
        self.writes_started.fetch_add(1, Ordering::SeqCst);
        let gate = self.gate.lock().unwrap().clone();
        if let Some(g) = gate {
            g.acquire().await.unwrap().forget();
        }
        failure(self.fail.load(Ordering::SeqCst), "write spans")?;
        let mut report = WriteReport::default();
        let mut stored = self.spans.lock().unwrap();
        for (i, s) in spans.iter().enumerate() {
            if s.name == TOO_LARGE_NAME {
                report.rejected.push((i, RejectReason::TraceTooLarge));
            } else if !stored
                .iter()
                .any(|x| x.trace_id == s.trace_id && x.span_id == s.span_id)
            {
                stored.push(s.clone());
            }
        }
        Ok(report)
    }
    async fn get_trace(
        &self,
        _tenant: &Tenant,
        trace_id: TraceId,
    ) -> clew_store::Result<Option<StoredTrace>> {
        let spans: Vec<Span> = self
            .spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect();
        Ok((!spans.is_empty()).then_some(StoredTrace {
            trace_id,
            spans,
            truncated: false,
        }))
    }
    async fn get_traces(
        &self,
        _tenant: &Tenant,
        ids: &[TraceId],
    ) -> clew_store::Result<Vec<StoredTrace>> {
        let mut out = Vec::new();
        for id in ids {
            out.extend(self.get_trace(&Tenant::default(), *id).await?);
        }
        Ok(out)
    }
    async fn drop_expired(&self, _now: u64) -> clew_store::Result<u64> {
        Ok(0)
    }
    async fn close(&self) -> clew_store::Result<()> {
        Ok(())
    }
}

#[derive(Default)]
pub struct RecordingIndex {
    pub spans: Mutex<Vec<Span>>,
    pub fail: AtomicU8,
}

impl RecordingIndex {
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .spans
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.name.clone())
            .collect();
        v.sort();
        v
    }
}

#[async_trait]
impl TraceIndex for RecordingIndex {
    async fn index_spans(&self, spans: Arc<[Span]>) -> clew_store::Result<()> {
        failure(self.fail.load(Ordering::SeqCst), "index spans")?;
        self.spans.lock().unwrap().extend(spans.iter().cloned());
        Ok(())
    }
    async fn find_trace_ids(
        &self,
        _tenant: &Tenant,
        _q: &TraceQuery,
    ) -> clew_store::Result<TraceIdPage> {
        Ok(TraceIdPage::default())
    }
    async fn services(&self, _tenant: &Tenant) -> clew_store::Result<Vec<String>> {
        Ok(vec![])
    }
    async fn operations(&self, _tenant: &Tenant, _s: &str) -> clew_store::Result<Vec<String>> {
        Ok(vec![])
    }
    async fn refresh(&self) -> clew_store::Result<()> {
        Ok(())
    }
    async fn drop_expired(&self, _now: u64) -> clew_store::Result<u64> {
        Ok(0)
    }
    async fn close(&self) -> clew_store::Result<()> {
        Ok(())
    }
}

pub struct Harness {
    pub collector: Collector,
    pub store: Arc<RecordingStore>,
    pub index: Arc<RecordingIndex>,
}

impl Harness {
    pub fn http_url(&self) -> String {
        format!("http://{}/v1/traces", self.collector.http_addr())
    }
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.collector.grpc_addr())
    }
}

pub fn test_config() -> CollectorConfig {
    CollectorConfig {
        otlp_grpc_addr: "127.0.0.1:0".into(),
        otlp_http_addr: "127.0.0.1:0".into(),
        zipkin_addr: "127.0.0.1:0".into(),
        sampling_http_addr: "127.0.0.1:0".into(),
        sampling_grpc_addr: "127.0.0.1:0".into(),
        business_keys: vec!["order_id".into(), "tenant".into()],
        batch_timeout_ms: 5,
        ..Default::default()
    }
}

pub async fn start(config: CollectorConfig) -> Harness {
    let store = Arc::new(RecordingStore::default());
    let index = Arc::new(RecordingIndex::default());
    let collector = Collector::start(config, store.clone(), index.clone())
        .await
        .expect("collector starts");
    Harness {
        collector,
        store,
        index,
    }
}

pub fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

pub fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

/// A valid span named `name`; trace id derived from `trace`, span id from `id`.
pub fn span(trace: u8, id: u8, name: &str) -> OtlpSpan {
    let now = now_nanos();
    OtlpSpan {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        name: name.into(),
        kind: 2,
        start_time_unix_nano: now - 1_000_000,
        end_time_unix_nano: now,
        ..Default::default()
    }
}

/// One resource (`service.name = svc`, plus extra resource attributes) holding `spans`.
pub fn request(spans: Vec<OtlpSpan>, resource_attrs: Vec<KeyValue>) -> ExportTraceServiceRequest {
    let mut attributes = vec![kv("service.name", "svc")];
    attributes.extend(resource_attrs);
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes,
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

/// `n` valid spans named `{prefix}{i}`.
pub fn spans(n: usize, prefix: &str) -> Vec<OtlpSpan> {
    (0..n)
        .map(|i| {
            span(
                1 + (i % 200) as u8,
                1 + (i % 250) as u8 + (i / 250) as u8,
                &format!("{prefix}{i}"),
            )
        })
        .collect()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// Overwrites the first two bytes of `marker` in an encoded request with bytes that are
/// not UTF-8 (lengths unchanged): a string prost refuses.
pub fn break_utf8(bytes: &mut [u8], marker: &[u8]) {
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("marker in the encoding");
    bytes[at] = 0xff;
    bytes[at + 1] = 0xfe;
}

/// The spans the store holds whose name is `name`, with their repair flags.
pub fn repairs_of(store: &RecordingStore, name: &str) -> Vec<u32> {
    store
        .spans
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.name == name)
        .map(|s| s.repairs)
        .collect()
}
