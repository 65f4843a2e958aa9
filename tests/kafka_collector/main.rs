//! The Kafka receiver end to end on a real Kafka broker: records produced by these tests
//! (with rdkafka, bytes from clew's Avro encoder, from prost, hand-written OTLP/JSON, and
//! from Python fastavro) are consumed by the real `clew serve` binary and read back through
//! the query API.
//!
//! Needs `KAFKA_BOOTSTRAP=host:port`: `eval "$(scripts/kafka-start)"`; `scripts/test` starts
//! the broker and runs these with `--ignored`. Every test uses its own topics and consumer
//! group, so they share one broker.
//!
//! By topic: [`formats`] (each record format stored, offsets committed), [`poison`]
//! (dead-lettered, never blocking), [`failures`] (kill -9, store outage, rebalances: no span
//! lost or stored twice).

#[path = "../common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clew_proto::from_otlp::{convert_request, Limits};
use clew_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use common::kafka::{bootstrap, create_topic};
use common::*;
use prost::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

async fn produce(
    p: &FutureProducer,
    topic: &str,
    partition: Option<i32>,
    key: &[u8],
    value: &[u8],
    headers: Option<OwnedHeaders>,
) -> i64 {
    let mut record = FutureRecord::to(topic).key(key).payload(value);
    if let Some(partition) = partition {
        record = record.partition(partition);
    }
    if let Some(h) = headers {
        record = record.headers(h);
    }
    p.send(record, Duration::from_secs(30))
        .await
        .map_err(|(e, _)| e)
        .expect("record delivered")
        .offset
}

/// Writes a config file with a `[collector.kafka]` section (short commit and statistics
/// intervals, so that tests see commits and lag quickly).
fn kafka_config(dir: &Path, group: &str, kafka_extra: &str) -> PathBuf {
    let path = dir.join("clew.toml");
    std::fs::write(
        &path,
        format!(
            "[collector.kafka]\nbrokers = [\"{}\"]\ngroup_id = \"{group}\"\ncommit_interval_ms = 200\nstatistics_interval_ms = 500\n{kafka_extra}\n",
            bootstrap()
        ),
    )
    .unwrap();
    path
}

/// One trace as spans of the span model, validated like any input.
fn model_spans(req: ExportTraceServiceRequest) -> Vec<clew_proto::Span> {
    let c = convert_request(req, &Limits::default(), now_unix_nano());
    assert!(c.rejected.is_empty());
    c.spans
}

/// `n` spans of one trace: span 1 the root (with the order id), the others its children.
fn trace_request(
    trace: [u8; 16],
    service: &str,
    ids: std::ops::RangeInclusive<u64>,
    order: &str,
) -> ExportTraceServiceRequest {
    let spans = ids
        .map(|i| {
            let attrs = if i == 1 {
                vec![kv("order_id", order)]
            } else {
                vec![kv("db.system", "postgresql")]
            };
            otlp_span(trace, i, (i > 1).then_some(1), &format!("op-{i}"), attrs)
        })
        .collect();
    request(service, spans)
}

/// Polls until the trace has `spans` spans; returns it.
async fn wait_trace(
    clew: &Clew,
    trace: &[u8; 16],
    spans: usize,
    timeout: Duration,
) -> serde_json::Value {
    let id = hex::encode(trace);
    let deadline = Instant::now() + timeout;
    loop {
        let (status, t) = clew.get(&format!("/api/v1/traces/{id}")).await;
        if status == 200 && t["spans"].as_array().map_or(0, Vec::len) >= spans {
            return t;
        }
        if Instant::now() > deadline {
            panic!("trace {id} did not reach {spans} spans within {timeout:?}; last answer {status}: {t}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Value of one Prometheus series from `/metrics` (`labels` must all match).
async fn metric(clew: &Clew, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let text = reqwest::get(clew.api_url("/metrics"))
        .await
        .expect("metrics reachable")
        .text()
        .await
        .unwrap();
    metric_in(&text, name, labels)
}

fn metric_in(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .reduce(|a, b| a + b)
}

/// Polls `/metrics` until the series reaches at least `want`.
async fn wait_metric(
    clew: &Clew,
    name: &str,
    labels: &[(&str, &str)],
    want: f64,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let v = metric(clew, name, labels).await;
        if v.is_some_and(|v| v >= want) {
            return;
        }
        if Instant::now() > deadline {
            panic!("{name}{labels:?} did not reach {want} within {timeout:?} (last {v:?})");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Offsets committed by `group` on partitions `0..partitions` of `topic` (-1: none).
fn committed(group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    got.elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => -1,
        })
        .collect()
}

async fn wait_committed(group: &str, topic: &str, want: Vec<i64>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let (g, t, p) = (group.to_string(), topic.to_string(), want.len() as i32);
        let got = tokio::task::spawn_blocking(move || committed(&g, &t, p))
            .await
            .unwrap();
        if got == want {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "group {group} committed {got:?} on {topic}, want {want:?} (within {timeout:?})"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const WAIT: Duration = Duration::from_secs(60);

mod failures;
mod formats;
mod poison;
