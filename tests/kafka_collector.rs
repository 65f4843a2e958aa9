//! The Kafka receiver end to end on a real Kafka broker: records produced by these tests
//! (with rdkafka, bytes from clew's Avro encoder, from prost, hand-written OTLP/JSON, and
//! from Python fastavro) are consumed by the real `clew serve` binary and read back through
//! the query API.
//!
//! Needs `KAFKA_BOOTSTRAP=host:port`: `eval "$(scripts/kafka-start)"`; `scripts/test` starts
//! the broker and runs these with `--ignored`. Every test uses its own topics and consumer
//! group, so they share one broker.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka (KAFKA_BOOTSTRAP; scripts/kafka-start); scripts/test runs it"]
async fn avro_records_are_stored_with_every_span_and_offsets_committed() {
    let topic = unique("clew-avro");
    let group = unique("clew-group");
    create_topic(&topic, 4).await;
    let p = producer();
    // 12 traces; each in two records (spans 1–3, then the late spans 4–5)
    let mut traces = Vec::new();
    for i in 0..12 {
        let trace = random_trace_id();
        let order = unique(&format!("order{i}"));
        for ids in [1..=3, 4..=5] {
            let spans = model_spans(trace_request(trace, "checkout", ids, &order));
            let key = clew_proto::avro::record_key(&spans[0]);
            produce(
                &p,
                &topic,
                None,
                &key,
                &clew_proto::avro::encode_batch(&spans),
                None,
            )
            .await;
        }
        traces.push((trace, order));
    }

    let dir = tempfile::tempdir().unwrap();
    let config = kafka_config(
        dir.path(),
        &group,
        &format!("topics = [{{ name = \"{topic}\", format = \"avro\" }}]"),
    );
    let clew = Clew::start(&["--config", config.to_str().unwrap()]);
    for (trace, order) in &traces {
        let t = wait_trace(&clew, trace, 5, WAIT).await;
        let want: Vec<String> = (1..=5).map(|i| format!("{i:016x}")).collect();
        assert_eq!(span_ids(&t), want);
        assert_eq!(
            span_named(&t, "op-1")["business_keys"]["order_id"],
            order.as_str()
        );
        assert_eq!(
            span_named(&t, "op-2")["attributes"]["db.system"],
            "postgresql"
        );
        assert_eq!(span_named(&t, "op-1")["service"], "checkout");
    }
    // searchable by business key (indexed, not only stored)
    let (trace, order) = &traces[0];
    clew.wait_for(&format!("/api/v1/keys/order_id/{order}"), WAIT, |b| {
        trace_ids(b) == vec![hex::encode(trace)]
    })
    .await;

    wait_metric(
        &clew,
        "clew_kafka_records_done_total",
        &[("topic", &topic), ("outcome", "stored")],
        24.0,
        WAIT,
    )
    .await;
    assert_eq!(
        metric(
            &clew,
            "clew_collector_spans_received_total",
            &[("protocol", "kafka")]
        )
        .await,
        Some(60.0)
    );
    // every record's offset is committed: 24 records over 4 partitions
    let deadline = Instant::now() + WAIT;
    loop {
        let (g, t) = (group.clone(), topic.clone());
        let got = tokio::task::spawn_blocking(move || committed(&g, &t, 4))
            .await
            .unwrap();
        if got.iter().sum::<i64>() == 24 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "committed {got:?}, want 24 records in total"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // and the lag gauge says so
    let deadline = Instant::now() + WAIT;
    loop {
        let text = reqwest::get(clew.api_url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let lags: Vec<f64> = (0..4)
            .filter_map(|p| {
                metric_in(
                    &text,
                    "clew_kafka_consumer_lag",
                    &[("topic", &topic), ("partition", &p.to_string())],
                )
            })
            .collect();
        if lags.len() == 4 && lags.iter().all(|l| *l == 0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "consumer lag never reached 0 on all 4 partitions: {lags:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka (KAFKA_BOOTSTRAP; scripts/kafka-start); scripts/test runs it"]
async fn otlp_proto_and_otlp_json_records_by_name_and_by_pattern() {
    let proto_topic = unique("clew-otlp-proto");
    let json_prefix = unique("clew-otlp-json");
    let json_topic = format!("{json_prefix}-a");
    let group = unique("clew-group");
    create_topic(&proto_topic, 4).await;
    // a pattern subscription sees topics that exist when it joins (or at the next metadata refresh)
    create_topic(&json_topic, 2).await;
    let p = producer();

    // what the OpenTelemetry Collector's Kafka exporter writes with encoding otlp_proto:
    // one whole ExportTraceServiceRequest per record
    let proto_trace = random_trace_id();
    let proto_order = unique("order-proto");
    let req = trace_request(proto_trace, "otel-proto-svc", 1..=4, &proto_order);
    produce(
        &p,
        &proto_topic,
        None,
        &proto_trace,
        &req.encode_to_vec(),
        None,
    )
    .await;

    // encoding otlp_json, as text: hex ids, 64-bit integers as strings, enums as integers
    let json_trace = random_trace_id();
    let json_order = unique("order-json");
    let start = now_unix_nano() - 5_000_000;
    let json = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"otel-json-svc"}}}}]}},
        "scopeSpans":[{{"scope":{{"name":"otelcol"}},"spans":[
          {{"traceId":"{t}","spanId":"00000000000000a1","parentSpanId":"","name":"GET /json","kind":2,
            "startTimeUnixNano":"{s}","endTimeUnixNano":"{e}",
            "attributes":[{{"key":"order_id","value":{{"stringValue":"{o}"}}}},{{"key":"http.status_code","value":{{"intValue":"200"}}}}],
            "status":{{}}}},
          {{"traceId":"{T}","spanId":"00000000000000A2","parentSpanId":"00000000000000a1","name":"query","kind":3,
            "startTimeUnixNano":"{s}","endTimeUnixNano":{e},"status":{{"code":2,"message":"timeout"}},"futureField":true}}
        ]}}]}}]}}"#,
        t = hex::encode(json_trace),
        T = hex::encode_upper(json_trace),
        s = start,
        e = start + 2_000_000,
        o = json_order,
    );
    produce(&p, &json_topic, None, &json_trace, json.as_bytes(), None).await;

    let dir = tempfile::tempdir().unwrap();
    let config = kafka_config(
        dir.path(),
        &group,
        &format!(
            "topics = [{{ name = \"{proto_topic}\", format = \"otlp_proto\" }}, {{ pattern = \"^{json_prefix}-.*\", format = \"otlp_json\" }}]"
        ),
    );
    let clew = Clew::start(&["--config", config.to_str().unwrap()]);

    let t = wait_trace(&clew, &proto_trace, 4, WAIT).await;
    assert_eq!(span_ids(&t).len(), 4);
    assert_eq!(span_named(&t, "op-1")["service"], "otel-proto-svc");
    assert_eq!(
        span_named(&t, "op-1")["business_keys"]["order_id"],
        proto_order.as_str()
    );

    let t = wait_trace(&clew, &json_trace, 2, WAIT).await;
    assert_eq!(
        span_ids(&t),
        vec![
            "00000000000000a1".to_string(),
            "00000000000000a2".to_string()
        ]
    );
    let root = span_named(&t, "GET /json");
    assert_eq!(root["service"], "otel-json-svc");
    assert_eq!(root["attributes"]["http.status_code"], 200);
    assert_eq!(root["business_keys"]["order_id"], json_order.as_str());
    assert_eq!(span_named(&t, "query")["status"]["code"], "error");
    assert_eq!(
        span_named(&t, "query")["parent_span_id"],
        "00000000000000a1"
    );

    clew.wait_for(&format!("/api/v1/keys/order_id/{json_order}"), WAIT, |b| {
        trace_ids(b) == vec![hex::encode(json_trace)]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka (KAFKA_BOOTSTRAP) and fastavro (scripts/setup-python); scripts/test runs it"]
async fn avro_written_by_fastavro_from_the_published_schema_is_consumed() {
    let topic = unique("clew-fastavro");
    let group = unique("clew-group");
    create_topic(&topic, 1).await;
    let trace = random_trace_id();
    let order = unique("order-py");
    let start = now_unix_nano() - 60_000_000_000;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("from_python.avro");
    let root = env!("CARGO_MANIFEST_DIR");
    let status = std::process::Command::new(python())
        .arg(format!("{root}/tests/python/avro_kafka_record.py"))
        .arg(format!("{root}/proto/schemas/span_batch_v1.avsc"))
        .arg(&out)
        .arg(hex::encode(trace))
        .arg(start.to_string())
        .arg(&order)
        .status()
        .expect("run python");
    assert!(status.success(), "avro_kafka_record.py failed: {status}");
    let bytes = std::fs::read(&out).unwrap();
    produce(&producer(), &topic, None, &trace, &bytes, None).await;

    // the collector knows no business keys of its own here: order_id comes from the record
    let config = kafka_config(
        dir.path(),
        &group,
        &format!("topics = [{{ name = \"{topic}\", format = \"avro\" }}]"),
    );
    let clew = Clew::start(&["--config", config.to_str().unwrap()]);
    let t = wait_trace(&clew, &trace, 3, WAIT).await;
    assert_eq!(
        span_ids(&t),
        vec![
            "0101010101010101".to_string(),
            "0202020202020202".to_string(),
            "0303030303030303".to_string()
        ]
    );
    let root = span_named(&t, "POST /checkout");
    assert_eq!(root["service"], "py-checkout");
    assert_eq!(root["kind"], "server");
    assert_eq!(root["parent_span_id"], serde_json::Value::Null);
    assert_eq!(root["start_time_unix_nano"], start.to_string());
    assert_eq!(root["duration_nanos"], 40_000_000);
    assert_eq!(root["attributes"]["http.route"], "/checkout");
    assert_eq!(root["attributes"]["http.status_code"], 500);
    assert_eq!(root["attributes"]["retry"], false);
    assert_eq!(root["business_keys"]["order_id"], order.as_str());
    assert_eq!(root["scope"]["name"], "fastavro-test");
    let charge = span_named(&t, "charge card");
    assert_eq!(charge["parent_span_id"], "0101010101010101");
    assert_eq!(charge["status"]["code"], "error");
    assert_eq!(charge["status"]["message"], "card declined");
    assert_eq!(charge["attributes"]["amount"], 12.5);
    assert_eq!(charge["events"][0]["name"], "exception");
    assert_eq!(
        charge["events"][0]["attributes"]["exception.type"],
        "CardDeclined"
    );
    let db = span_named(&t, "SELECT cards");
    assert_eq!(db["kind"], "client");
    assert_eq!(db["attributes"]["db.system"], "postgresql");
    assert_eq!(db["attributes"]["tags"], serde_json::json!(["a", 2]));
    // searchable by the key the record carried, and by error
    clew.wait_for(&format!("/api/v1/keys/order_id/{order}"), WAIT, |b| {
        trace_ids(b) == vec![hex::encode(trace)]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka (KAFKA_BOOTSTRAP; scripts/kafka-start); scripts/test runs it"]
async fn a_poison_record_is_dead_lettered_counted_and_never_blocks_its_partition() {
    let topic = unique("clew-poison");
    let dead = format!("{topic}-dead");
    let group = unique("clew-group");
    create_topic(&topic, 1).await;
    create_topic(&dead, 1).await;
    let p = producer();
    let (a, b) = (random_trace_id(), random_trace_id());
    let record = |trace| {
        let spans = model_spans(trace_request(trace, "svc", 1..=3, "o"));
        clew_proto::avro::encode_batch(&spans)
    };
    let garbage = b"\x00\x01this is not an avro span batch \xff\xfe".to_vec();
    assert_eq!(produce(&p, &topic, Some(0), &a, &record(a), None).await, 0);
    let headers = OwnedHeaders::new().insert(Header {
        key: "origin",
        value: Some("kafka-test"),
    });
    assert_eq!(
        produce(&p, &topic, Some(0), b"poison-key", &garbage, Some(headers)).await,
        1
    );
    assert_eq!(produce(&p, &topic, Some(0), &b, &record(b), None).await, 2);

    let dir = tempfile::tempdir().unwrap();
    let config = kafka_config(
        dir.path(),
        &group,
        &format!(
            "dead_letter_topic = \"{dead}\"\ntopics = [{{ name = \"{topic}\", format = \"avro\" }}]"
        ),
    );
    let clew = Clew::start(&["--config", config.to_str().unwrap()]);
    wait_trace(&clew, &a, 3, WAIT).await;
    wait_trace(&clew, &b, 3, WAIT).await;
    wait_metric(
        &clew,
        "clew_kafka_records_done_total",
        &[("topic", &topic), ("outcome", "dead_lettered")],
        1.0,
        WAIT,
    )
    .await;
    assert_eq!(
        metric(
            &clew,
            "clew_kafka_records_poison_total",
            &[("topic", &topic), ("reason", "avro_bad_header")]
        )
        .await,
        Some(1.0)
    );
    assert_eq!(
        metric(
            &clew,
            "clew_kafka_records_poison_total",
            &[("topic", &topic)]
        )
        .await,
        Some(1.0),
        "only the garbage record is poison"
    );
    assert_eq!(
        metric(
            &clew,
            "clew_kafka_records_done_total",
            &[("topic", &topic), ("outcome", "stored")]
        )
        .await,
        Some(2.0)
    );
    // committed past the poison record: the next record to read is 3
    wait_committed(&group, &topic, vec![3], WAIT).await;

    // the dead-letter topic holds the original bytes, key and headers, plus where and why
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique("clew-dlq-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&dead]).unwrap();
    let deadline = Instant::now() + WAIT;
    let msg = loop {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            break m.expect("dead-letter record").detach();
        }
        assert!(
            Instant::now() < deadline,
            "nothing arrived in the dead-letter topic"
        );
    };
    assert_eq!(msg.payload(), Some(&garbage[..]));
    assert_eq!(msg.key(), Some(&b"poison-key"[..]));
    let headers: BTreeMap<String, String> = msg
        .headers()
        .expect("headers")
        .iter()
        .map(|h| {
            (
                h.key.to_string(),
                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
            )
        })
        .collect();
    assert_eq!(headers["origin"], "kafka-test");
    assert_eq!(headers["clew.dlq.source.topic"], topic);
    assert_eq!(headers["clew.dlq.source.partition"], "0");
    assert_eq!(headers["clew.dlq.source.offset"], "1");
    assert_eq!(headers["clew.dlq.reason"], "avro_bad_header");
    assert!(headers["clew.dlq.error"].contains("avro"), "{headers:?}");
    assert!(
        consumer.poll(Duration::from_secs(2)).is_none(),
        "exactly one record is dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka (KAFKA_BOOTSTRAP; scripts/kafka-start); scripts/test runs it"]
async fn kill_9_mid_stream_then_restart_loses_and_duplicates_no_span() {
    const TRACES: usize = 300;
    let topic = unique("clew-kill");
    let group = unique("clew-group");
    create_topic(&topic, 4).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = kafka_config(
        dir.path(),
        &group,
        &format!("topics = [{{ name = \"{topic}\", format = \"avro\" }}]"),
    );
    let args = ["--config", config.to_str().unwrap()];
    let mut clew = Clew::start_in(&data, &args);

    // Each trace in two records (spans 1–4, then 5–6 three traces later), produced
    // continuously while the collector is killed and restarted.
    let traces: Vec<[u8; 16]> = (0..TRACES).map(|_| random_trace_id()).collect();
    let produced = Arc::new(AtomicUsize::new(0));
    let feeder = {
        let (traces, topic, produced) = (traces.clone(), topic.clone(), produced.clone());
        tokio::spawn(async move {
            let p = producer();
            for i in 0..TRACES + 3 {
                if i < TRACES {
                    let spans = model_spans(trace_request(traces[i], "kill", 1..=4, "o"));
                    produce(
                        &p,
                        &topic,
                        None,
                        &traces[i],
                        &clew_proto::avro::encode_batch(&spans),
                        None,
                    )
                    .await;
                }
                if i >= 3 {
                    let t = traces[i - 3];
                    let spans = model_spans(trace_request(t, "kill", 5..=6, "o"));
                    produce(
                        &p,
                        &topic,
                        None,
                        &t,
                        &clew_proto::avro::encode_batch(&spans),
                        None,
                    )
                    .await;
                }
                produced.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        })
    };

    // kill it once it has stored a good part, while records keep coming
    wait_metric(
        &clew,
        "clew_kafka_records_done_total",
        &[("topic", &topic), ("outcome", "stored")],
        150.0,
        WAIT,
    )
    .await;
    let before = metric(
        &clew,
        "clew_kafka_records_done_total",
        &[("topic", &topic), ("outcome", "stored")],
    )
    .await
    .unwrap();
    clew.kill9();
    assert!(
        produced.load(Ordering::Relaxed) < TRACES,
        "the producer finished before the kill; the test would not test a kill mid-stream"
    );
    eprintln!(
        "killed after {before} stored records, {} traces produced",
        produced.load(Ordering::Relaxed)
    );
    let clew = Clew::start_in(&data, &args);
    tokio::time::timeout(WAIT, feeder)
        .await
        .expect("producer finished")
        .unwrap();

    let want: Vec<String> = (1..=6).map(|i| format!("{i:016x}")).collect();
    for trace in &traces {
        let t = wait_trace(&clew, trace, 6, WAIT).await;
        // the API lists each stored span once: a span written twice would show twice
        assert_eq!(span_ids(&t), want, "trace {}", hex::encode(trace));
        assert_eq!(t["span_count"], 6);
    }
    let after = metric(
        &clew,
        "clew_kafka_records_done_total",
        &[("topic", &topic), ("outcome", "stored")],
    )
    .await
    .unwrap();
    eprintln!(
        "after the restart: {after} records stored (of {} produced); records read again: {}",
        2 * TRACES,
        before + after - 2.0 * TRACES as f64
    );
    assert!(before + after >= 2.0 * TRACES as f64);
}

/// `scripts/hbase-stop --thrift-only` / `scripts/hbase-start --thrift-only`, bounded in time.
fn thrift_server(action: &str) {
    let script = format!("{}/scripts/hbase-{action}", env!("CARGO_MANIFEST_DIR"));
    let mut child = std::process::Command::new(&script)
        .arg("--thrift-only")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{script}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{script} --thrift-only failed: {status}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{script} --thrift-only did not finish within 240 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn committed_sum(group: &str, topic: &str, partitions: i32) -> i64 {
    let (g, t) = (group.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || committed(&g, &t, partitions))
        .await
        .unwrap()
        .iter()
        .map(|o| (*o).max(0))
        .sum()
}

/// `docs/robustness.md` input 21: the span store (HBase, through its Thrift server) goes away while
/// records arrive. The receiver pauses, commits nothing it could not store, the lag grows;
/// when the Thrift server is back, every record is stored and committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka (KAFKA_BOOTSTRAP) and HBase started by scripts/hbase-start (HBASE_THRIFT; its Thrift server is stopped and restarted); scripts/test runs it"]
async fn store_outage_pauses_consumption_commits_nothing_unstored_and_resumes() {
    let thrift = std::env::var("HBASE_THRIFT").expect("HBASE_THRIFT=host:port");
    let topic = unique("clew-outage");
    let group = unique("clew-group");
    create_topic(&topic, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let table = unique("clew_kafka_outage").replace(['-', '.'], "_");
    let config = kafka_config(
        dir.path(),
        &group,
        &format!(
            "retry_backoff_max_ms = 1000\ntopics = [{{ name = \"{topic}\", format = \"avro\" }}]\n[store]\ntype = \"hbase\"\nthrift_addrs = [\"{thrift}\"]\ntable = \"{table}\"\ntimeout_ms = 2000\n"
        ),
    );
    let clew = Clew::start(&["--config", config.to_str().unwrap()]);
    let p = producer();
    let send = |n: usize| {
        let (p, topic) = (p.clone(), topic.clone());
        async move {
            let mut traces = Vec::new();
            for _ in 0..n {
                let t = random_trace_id();
                let spans = model_spans(trace_request(t, "outage", 1..=4, "o"));
                produce(
                    &p,
                    &topic,
                    None,
                    &t,
                    &clew_proto::avro::encode_batch(&spans),
                    None,
                )
                .await;
                traces.push(t);
            }
            traces
        }
    };

    let before = send(20).await;
    for t in &before {
        wait_trace(&clew, t, 4, WAIT).await;
    }
    let deadline = Instant::now() + WAIT;
    while committed_sum(&group, &topic, 2).await != 20 {
        assert!(
            Instant::now() < deadline,
            "the first 20 records were not committed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    tokio::task::spawn_blocking(|| thrift_server("stop"))
        .await
        .unwrap();
    let during = send(20).await;
    wait_metric(&clew, "clew_kafka_paused", &[], 1.0, WAIT).await;
    wait_metric(&clew, "clew_kafka_write_retries_total", &[], 2.0, WAIT).await;
    wait_metric(
        &clew,
        "clew_kafka_consumer_lag",
        &[("topic", &topic)],
        20.0,
        WAIT,
    )
    .await;
    // still down a while later: nothing of the second batch is committed
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        committed_sum(&group, &topic, 2).await,
        20,
        "offsets of records that could not be stored were committed"
    );
    assert_eq!(metric(&clew, "clew_kafka_paused", &[]).await, Some(1.0));

    tokio::task::spawn_blocking(|| thrift_server("start"))
        .await
        .unwrap();
    for t in before.iter().chain(&during) {
        let trace = wait_trace(&clew, t, 4, Duration::from_secs(120)).await;
        let want: Vec<String> = (1..=4).map(|i| format!("{i:016x}")).collect();
        assert_eq!(span_ids(&trace), want);
    }
    let deadline = Instant::now() + WAIT;
    while committed_sum(&group, &topic, 2).await != 40 {
        assert!(
            Instant::now() < deadline,
            "the records stored after the outage were not committed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + WAIT;
    while metric(&clew, "clew_kafka_paused", &[]).await != Some(0.0) {
        assert!(Instant::now() < deadline, "consumption was not resumed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Two collectors in one group: the second joining and the first leaving (SIGTERM: drain,
/// commit, leave) move partitions while records arrive. Every span ends up stored by one
/// of them and every record is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka (KAFKA_BOOTSTRAP; scripts/kafka-start); scripts/test runs it"]
async fn rebalances_between_two_collectors_lose_no_span() {
    const TRACES: usize = 120;
    let topic = unique("clew-rebalance");
    let group = unique("clew-group");
    create_topic(&topic, 4).await;
    let dir = tempfile::tempdir().unwrap();
    let config = kafka_config(
        dir.path(),
        &group,
        &format!(
            "session_timeout_ms = 6000\ntopics = [{{ name = \"{topic}\", format = \"avro\" }}]"
        ),
    );
    let args = ["--config", config.to_str().unwrap()];
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    let mut a = Clew::start_in(&data_a, &args);

    let traces: Vec<[u8; 16]> = (0..TRACES).map(|_| random_trace_id()).collect();
    let feeder = {
        let (traces, topic) = (traces.clone(), topic.clone());
        tokio::spawn(async move {
            let p = producer();
            for i in 0..TRACES + 3 {
                if i < TRACES {
                    let spans = model_spans(trace_request(traces[i], "rebalance", 1..=4, "o"));
                    produce(
                        &p,
                        &topic,
                        None,
                        &traces[i],
                        &clew_proto::avro::encode_batch(&spans),
                        None,
                    )
                    .await;
                }
                if i >= 3 {
                    let t = traces[i - 3];
                    let spans = model_spans(trace_request(t, "rebalance", 5..=6, "o"));
                    produce(
                        &p,
                        &topic,
                        None,
                        &t,
                        &clew_proto::avro::encode_batch(&spans),
                        None,
                    )
                    .await;
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        })
    };
    let stored = |c: &Clew| {
        let topic = topic.clone();
        let url = c.api_url("/metrics");
        async move {
            let text = reqwest::get(url).await.unwrap().text().await.unwrap();
            metric_in(
                &text,
                "clew_kafka_records_done_total",
                &[("topic", &topic), ("outcome", "stored")],
            )
            .unwrap_or(0.0)
        }
    };
    wait_metric(
        &a,
        "clew_kafka_records_done_total",
        &[("topic", &topic), ("outcome", "stored")],
        30.0,
        WAIT,
    )
    .await;
    let b = Clew::start_in(&data_b, &args);
    // both get partitions: b stores records too
    wait_metric(
        &b,
        "clew_kafka_records_done_total",
        &[("topic", &topic), ("outcome", "stored")],
        10.0,
        WAIT,
    )
    .await;
    assert!(stored(&a).await > 30.0);
    assert!(
        a.terminate().success(),
        "collector a did not shut down cleanly"
    );
    tokio::time::timeout(WAIT, feeder)
        .await
        .expect("producer finished")
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while committed_sum(&group, &topic, 4).await != 2 * TRACES as i64 {
        assert!(Instant::now() < deadline, "not every record was committed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // a's store, read back by a collector without Kafka
    let a = Clew::start_in(&data_a, &[]);
    let want: Vec<String> = (1..=6).map(|i| format!("{i:016x}")).collect();
    for t in &traces {
        let id = hex::encode(t);
        let mut ids = Vec::new();
        for c in [&a, &b] {
            let (status, trace) = c.get(&format!("/api/v1/traces/{id}")).await;
            if status == 200 {
                ids.extend(span_ids(&trace));
            }
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids, want, "trace {id}: spans missing from both collectors");
    }
}
