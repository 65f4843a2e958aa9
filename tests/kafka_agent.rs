//! `clew agent` against a real Kafka broker (`scripts/kafka-start`; `KAFKA_BOOTSTRAP`).
//!
//! Each test starts the real `clew agent` binary, sends OTLP over real sockets, and reads
//! the topic back with an rdkafka consumer, decoding every record with `clew_proto::avro`.
//! Topics are unique per test, so the tests share one broker; the one test that stops and
//! restarts the broker holds [`BROKER`] exclusively, the others hold it shared.
//!
//! Run: `eval "$(scripts/kafka-start)"; cargo test --test kafka_agent -- --ignored`.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use clew_proto::from_otlp::Limits;
use clew_proto::otlp::collector::trace::v1::trace_service_client::TraceServiceClient;
use clew_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use clew_proto::otlp::trace::v1::{Span as OtlpSpan, Status};
use common::agent::{metric_value, Agent};
use common::kafka::{bootstrap, broker, create_topic};
use common::{kv, otlp_span, random_trace_id, request, unique};
use prost::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::RwLock;

/// Shared by tests that only use the broker; exclusive for the one that restarts it.
static BROKER: RwLock<()> = RwLock::const_new(());

const PARTITIONS: i32 = 4;

/// One record read back from the topic.
#[derive(Debug, Clone)]
struct Rec {
    partition: i32,
    offset: i64,
    key: Vec<u8>,
    /// The record's value as it is on the topic (Avro).
    value: Vec<u8>,
    spans: Vec<clew_proto::Span>,
}

/// Reads every partition of `topic` from the beginning up to the high watermarks taken now
/// (everything the agent acknowledged before this call is below them: the agent acks only
/// after Kafka acked with acks=all). Bounded by `timeout`.
fn read_topic(topic: &str, timeout: Duration) -> Vec<Rec> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique("clew-agent-test"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("consumer");
    let deadline = Instant::now() + timeout;
    let mut high = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        let (_, h) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(30))
            .expect("watermarks");
        high.insert(p, h);
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let mut next: BTreeMap<i32, i64> = high.keys().map(|p| (*p, 0)).collect();
    let mut out = Vec::new();
    let limits = Limits::default();
    while next.iter().any(|(p, n)| *n < high[p]) {
        assert!(
            Instant::now() < deadline,
            "did not read {topic} to its high watermarks {high:?} within {timeout:?} (at {next:?})"
        );
        let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let msg = msg.expect("consume");
        let value = msg.payload().unwrap_or_default();
        let converted = clew_proto::avro::decode_batch(value, &limits, common::now_unix_nano())
            .unwrap_or_else(|e| {
                panic!(
                    "record at {}/{} is not our Avro: {e}",
                    msg.partition(),
                    msg.offset()
                )
            });
        assert!(converted.rejected.is_empty(), "{:?}", converted.rejected);
        next.insert(msg.partition(), msg.offset() + 1);
        out.push(Rec {
            partition: msg.partition(),
            offset: msg.offset(),
            key: msg.key().unwrap_or_default().to_vec(),
            value: value.to_vec(),
            spans: converted.spans,
        });
    }
    out
}

/// (trace id, span id) → number of times seen, and checks that every record is keyed by
/// its spans' trace id and that each trace lives in one partition.
fn index(recs: &[Rec]) -> HashMap<([u8; 16], [u8; 8]), usize> {
    let mut seen = HashMap::new();
    let mut partition_of: HashMap<[u8; 16], i32> = HashMap::new();
    for r in recs {
        for s in &r.spans {
            assert_eq!(r.key, s.trace_id.0.to_vec(), "record key is the trace id");
            let p = *partition_of.entry(s.trace_id.0).or_insert(r.partition);
            assert_eq!(p, r.partition, "trace {} split over partitions", s.trace_id);
            *seen.entry((s.trace_id.0, s.span_id.0)).or_default() += 1;
        }
    }
    seen
}

fn span_key(trace: [u8; 16], id: u64) -> ([u8; 16], [u8; 8]) {
    (trace, id.to_be_bytes())
}

fn error_span(trace: [u8; 16], id: u64, parent: Option<u64>, name: &str) -> OtlpSpan {
    let mut s = otlp_span(trace, id, parent, name, vec![kv("error.kind", "boom")]);
    s.status = Some(Status {
        code: 2,
        message: "failed".into(),
    });
    s
}

/// A trace of `n` spans for `service` (span ids base+1..=base+n).
fn trace_request(service: &str, trace: [u8; 16], base: u64, n: u64) -> ExportTraceServiceRequest {
    let spans = (1..=n)
        .map(|i| {
            otlp_span(
                trace,
                base + i,
                (i > 1).then_some(base + 1),
                &format!("op-{i}"),
                vec![
                    kv("order_id", &format!("o-{base}")),
                    kv("seq", &i.to_string()),
                ],
            )
        })
        .collect();
    request(service, spans)
}

async fn post_protobuf(agent: &Agent, req: &ExportTraceServiceRequest) -> reqwest::Response {
    reqwest::Client::new()
        .post(agent.otlp_http_url())
        .header("content-type", "application/x-protobuf")
        .body(req.encode_to_vec())
        .send()
        .await
        .expect("agent OTLP/HTTP reachable")
}

fn agent_args<'a>(topic: &'a str, brokers: &'a str) -> Vec<&'a str> {
    vec!["--kafka-brokers", brokers, "--kafka-topic", topic]
}

/// Issue 12 §1: the agent redacts before it writes a record. A card number in
/// `db.statement` and in an exception message, a password attribute, a bearer token in the
/// authorization header and a `?token=` in `url.full` reach the topic masked, their bytes
/// are in no record value, and a business key listed in `exempt_keys` passes unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka (KAFKA_BOOTSTRAP from scripts/kafka-start); scripts/test runs it"]
async fn agent_redacts_secrets_before_they_reach_kafka() {
    let _broker = BROKER.read().await;
    let topic = unique("agent-redact");
    create_topic(&topic, PARTITIONS).await;
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("agent.toml");
    std::fs::write(&config, "[redaction]\nexempt_keys = [\"order_id\"]\n").unwrap();
    let brokers = bootstrap();
    let mut args = agent_args(&topic, &brokers);
    args.extend(["--config", config.to_str().unwrap()]);
    let agent = Agent::start(&tmp.path().join("spool"), &args);

    let trace = random_trace_id();
    let card = "4539 1488 0343 6467"; // Luhn-valid Visa
    let card_in_message = "5425233430109903"; // Luhn-valid Mastercard
    let order_id = "4111111111111111"; // Luhn-valid, but a business key
    let password = "pw-Kq7ZmT3xWv9Ly2Hd";
    let bearer = "tok9Gm2LpQ7vX4cR8nZ";
    let url_token = "u7Hs2KdP9qLm4XcV";
    let mut root = otlp_span(
        trace,
        1,
        None,
        "POST /checkout",
        vec![
            kv(
                "http.request.header.authorization",
                &format!("Bearer {bearer}"),
            ),
            kv(
                "url.full",
                &format!("https://shop.example/cb?token={url_token}"),
            ),
            kv("user.password", password),
            kv("order_id", order_id),
        ],
    );
    root.events.push(clew_proto::otlp::trace::v1::span::Event {
        name: "exception".into(),
        time_unix_nano: root.start_time_unix_nano,
        attributes: vec![kv(
            "exception.message",
            &format!("card {card_in_message} declined"),
        )],
        ..Default::default()
    });
    let db = otlp_span(
        trace,
        2,
        Some(1),
        "SELECT",
        vec![kv(
            "db.statement",
            &format!("SELECT 1 FROM c WHERE pan = '{card}'"),
        )],
    );
    let resp = post_protobuf(&agent, &request("redact-svc", vec![root, db])).await;
    assert_eq!(resp.status(), 200);
    drop(resp);

    let recs = read_topic(&topic, Duration::from_secs(30));
    let spans: Vec<&clew_proto::Span> = recs.iter().flat_map(|r| &r.spans).collect();
    assert_eq!(spans.len(), 2);
    let attr = |span: &clew_proto::Span, key: &str| {
        clew_proto::model::find_attr(&span.attributes, key)
            .map(clew_proto::model::value_to_string)
            .unwrap_or_else(|| panic!("no {key}"))
    };
    let root = spans.iter().find(|s| s.name == "POST /checkout").unwrap();
    assert_eq!(attr(root, "http.request.header.authorization"), "****");
    assert_eq!(attr(root, "url.full"), "https://shop.example/cb?token=****");
    assert_eq!(attr(root, "user.password"), "****");
    assert_eq!(attr(root, "order_id"), order_id);
    assert_eq!(
        attr(root, "clew.redacted"),
        "password,authorization_header,card_number,url_secret"
    );
    assert_eq!(
        clew_proto::model::value_to_string(
            clew_proto::model::find_attr(&root.events[0].attributes, "exception.message").unwrap()
        ),
        "card ****9903 declined"
    );
    let db = spans.iter().find(|s| s.name == "SELECT").unwrap();
    assert_eq!(
        attr(db, "db.statement"),
        "SELECT 1 FROM c WHERE pan = '****6467'"
    );
    for r in &recs {
        for secret in [card, card_in_message, password, bearer, url_token] {
            assert!(
                !r.value
                    .windows(secret.len())
                    .any(|w| w == secret.as_bytes()),
                "{secret} in the record at {}/{}",
                r.partition,
                r.offset
            );
        }
        assert!(r
            .value
            .windows(order_id.len())
            .any(|w| w == order_id.as_bytes()));
    }
}

/// Issue 3 §2: OTLP over gRPC and HTTP (protobuf and JSON) in, Avro records out, one record
/// per trace per request, keyed by trace id, every span exactly once, and the same
/// validation answers as the collector (a bad span is rejected alone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka (KAFKA_BOOTSTRAP from scripts/kafka-start); scripts/test runs it"]
async fn agent_ships_otlp_grpc_and_http_as_avro_records_keyed_by_trace() {
    let _broker = BROKER.read().await;
    let topic = unique("agent-ship");
    create_topic(&topic, PARTITIONS).await;
    let tmp = tempfile::tempdir().unwrap();
    let brokers = bootstrap();
    let agent = Agent::start(&tmp.path().join("spool"), &agent_args(&topic, &brokers));

    let mut expect: HashSet<([u8; 16], [u8; 8])> = HashSet::new();
    let mut traces = Vec::new();
    // gRPC: 10 requests of 3 traces x 4 spans, two services in one request.
    let mut client = TraceServiceClient::connect(agent.otlp_grpc_url())
        .await
        .unwrap();
    for r in 0..10u64 {
        let mut req = ExportTraceServiceRequest::default();
        for t in 0..3u64 {
            let trace = random_trace_id();
            traces.push(trace);
            let base = 1000 * (r * 3 + t + 1);
            let service = if t % 2 == 0 { "frontend" } else { "payments" };
            req.resource_spans
                .extend(trace_request(service, trace, base, 4).resource_spans);
            expect.extend((1..=4).map(|i| span_key(trace, base + i)));
        }
        let resp = client.export(req).await.expect("grpc export").into_inner();
        assert_eq!(resp.partial_success, None);
    }
    // HTTP protobuf, with one invalid span (all-zero trace id): rejected alone.
    for r in 0..5u64 {
        let trace = random_trace_id();
        let base = 100_000 + 1000 * r;
        let mut req = trace_request("checkout", trace, base, 5);
        req.resource_spans[0].scope_spans[0].spans.push(otlp_span(
            [0; 16],
            base + 99,
            None,
            "bad",
            vec![],
        ));
        expect.extend((1..=5).map(|i| span_key(trace, base + i)));
        let resp = post_protobuf(&agent, &req).await;
        assert_eq!(resp.status(), 200);
        let body = clew_proto::otlp::collector::trace::v1::ExportTraceServiceResponse::decode(
            resp.bytes().await.unwrap(),
        )
        .unwrap();
        let p = body
            .partial_success
            .expect("partial success for the bad span");
        assert_eq!(p.rejected_spans, 1);
        assert!(
            p.error_message.contains("invalid_trace_id"),
            "{}",
            p.error_message
        );
    }
    // HTTP JSON.
    let json_trace = random_trace_id();
    let json = serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
        "scopeSpans": [{"spans": [{
            "traceId": hex::encode(json_trace), "spanId": "00000000000000aa", "name": "json-op",
            "kind": 2, "startTimeUnixNano": (common::now_unix_nano() - 1_000_000).to_string(),
            "endTimeUnixNano": common::now_unix_nano().to_string(),
            "attributes": [{"key": "http.route", "value": {"stringValue": "/api/<script>"}}]
        }]}]
    }]});
    let resp = reqwest::Client::new()
        .post(agent.otlp_http_url())
        .json(&json)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    expect.insert(span_key(json_trace, 0xaa));

    let recs = read_topic(&topic, Duration::from_secs(60));
    let seen = index(&recs);
    let got: HashSet<_> = seen.keys().copied().collect();
    assert_eq!(got, expect, "exactly the accepted spans are in the topic");
    let dups: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "duplicated spans: {dups:?}");
    // One record per trace per request (no trace here exceeds one record).
    assert_eq!(recs.len(), traces.len() + 5 + 1);
    // Content survives: service, attributes, names.
    let json_span = recs
        .iter()
        .flat_map(|r| &r.spans)
        .find(|s| s.trace_id.0 == json_trace)
        .unwrap();
    assert_eq!(json_span.service_name, "json-svc");
    assert_eq!(json_span.name, "json-op");
    assert_eq!(
        json_span
            .attribute("http.route")
            .map(clew_proto::model::value_to_string)
            .as_deref(),
        Some("/api/<script>")
    );
    assert!(
        json_span.business_keys.is_empty(),
        "the agent does not enrich; the collector does"
    );
    let m = agent.metrics_text().await;
    assert_eq!(
        metric_value(
            &m,
            "clew_agent_records_produced_total",
            &[("path", "direct")]
        ),
        recs.len() as f64
    );
    assert_eq!(
        metric_value(&m, "clew_agent_records_spooled_total", &[]),
        0.0
    );
}

/// Head sampling: a service at rate 0 only ships its error spans; other services are
/// untouched; a new rate in the sampling file applies without a restart; a broken file
/// keeps the rates in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka (KAFKA_BOOTSTRAP from scripts/kafka-start); scripts/test runs it"]
async fn sampling_keeps_error_spans_and_reloads_its_file_at_run_time() {
    let _broker = BROKER.read().await;
    let topic = unique("agent-sampling");
    create_topic(&topic, PARTITIONS).await;
    let tmp = tempfile::tempdir().unwrap();
    let rates = tmp.path().join("sampling.toml");
    std::fs::write(&rates, "[services]\nnoisy = 0.0\n").unwrap();
    let config = tmp.path().join("agent.toml");
    std::fs::write(&config, "[sampling]\nreload_interval_ms = 100\n").unwrap();
    let brokers = bootstrap();
    let mut args = agent_args(&topic, &brokers);
    let rates_arg = rates.to_string_lossy().into_owned();
    let config_arg = config.to_string_lossy().into_owned();
    args.extend(["--sampling-file", &rates_arg, "--config", &config_arg]);
    let agent = Agent::start(&tmp.path().join("spool"), &args);

    // Phase 1: "noisy" at 0 — 20 traces of 3 spans, the last span of every other trace
    // failing; "quiet" (default 1.0) — 5 traces.
    let mut expect = HashSet::new();
    let mut client = TraceServiceClient::connect(agent.otlp_grpc_url())
        .await
        .unwrap();
    for t in 0..20u64 {
        let trace = random_trace_id();
        let base = 1000 * (t + 1);
        let mut req = trace_request("noisy", trace, base, 2);
        if t % 2 == 0 {
            req.resource_spans[0].scope_spans[0].spans.push(error_span(
                trace,
                base + 3,
                Some(base + 1),
                "db",
            ));
            expect.insert(span_key(trace, base + 3));
        }
        let resp = client.export(req).await.unwrap().into_inner();
        assert_eq!(resp.partial_success, None, "sampling is not a rejection");
    }
    for t in 0..5u64 {
        let trace = random_trace_id();
        let base = 900_000 + 1000 * t;
        client
            .export(trace_request("quiet", trace, base, 3))
            .await
            .unwrap();
        expect.extend((1..=3).map(|i| span_key(trace, base + i)));
    }
    let seen = index(&read_topic(&topic, Duration::from_secs(60)));
    let got: HashSet<_> = seen.keys().copied().collect();
    assert_eq!(got, expect, "only noisy's error spans and all of quiet's");
    assert_eq!(
        agent
            .metric("clew_agent_spans_sampled_out_total", &[])
            .await,
        40.0
    );

    // Phase 2: the file now keeps everything of "noisy"; wait (bounded) for the reload.
    let ok_before = agent
        .metric("clew_agent_sampling_reloads_total", &[("result", "ok")])
        .await;
    std::fs::write(&rates, "[services]\nnoisy = 1.0\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while agent
        .metric("clew_agent_sampling_reloads_total", &[("result", "ok")])
        .await
        <= ok_before
    {
        assert!(
            Instant::now() < deadline,
            "sampling file was not reloaded within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Phase 3: a broken file is refused and the rates stay (noisy still at 1.0).
    std::fs::write(&rates, "[services]\nnoisy = 7\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while agent
        .metric(
            "clew_agent_sampling_reloads_total",
            &[("result", "invalid")],
        )
        .await
        < 1.0
    {
        assert!(
            Instant::now() < deadline,
            "broken sampling file not noticed within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for t in 0..10u64 {
        let trace = random_trace_id();
        let base = 500_000 + 1000 * t;
        client
            .export(trace_request("noisy", trace, base, 3))
            .await
            .unwrap();
        expect.extend((1..=3).map(|i| span_key(trace, base + i)));
    }
    let seen = index(&read_topic(&topic, Duration::from_secs(60)));
    let got: HashSet<_> = seen.keys().copied().collect();
    assert_eq!(got, expect, "after the reload every noisy span is kept");
}

/// Head sampling from a Jaeger strategies file (`--sampling-strategies`, the file `clew
/// serve` gives SDKs): a trace is kept or dropped whole by its entry span's operation
/// strategy; error spans are kept anyway; a rate-limited service lets through its tokens'
/// worth of whole traces; nothing sampled out is a rejection. The agent serves the same
/// strategies to local SDKs (`--sampling-http-addr`) and follows a change of the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka (KAFKA_BOOTSTRAP from scripts/kafka-start); scripts/test runs it"]
async fn jaeger_strategies_drive_head_sampling_and_are_served_to_local_sdks() {
    let _broker = BROKER.read().await;
    let topic = unique("agent-strategies");
    create_topic(&topic, PARTITIONS).await;
    let tmp = tempfile::tempdir().unwrap();
    let strategies = tmp.path().join("strategies.json");
    let file = |noisy: f64| {
        format!(
            r#"{{"default_strategy": {{"type": "probabilistic", "param": 1.0}},
                "service_strategies": [
                  {{"service": "noisy", "type": "probabilistic", "param": {noisy},
                    "operation_strategies": [{{"operation": "POST /keep", "type": "probabilistic", "param": 1}}]}},
                  {{"service": "limited", "type": "ratelimiting", "param": 2}}]}}"#
        )
    };
    std::fs::write(&strategies, file(0.0)).unwrap();
    let brokers = bootstrap();
    let mut args = agent_args(&topic, &brokers);
    let strategies_arg = strategies.to_string_lossy().into_owned();
    args.extend([
        "--sampling-strategies",
        &strategies_arg,
        "--sampling-http-addr",
        "127.0.0.1:0",
    ]);
    let agent = Agent::start(&tmp.path().join("spool"), &args);
    let sampling = agent.sampling_http.expect("sampling served");
    let noisy_answer = || async move {
        reqwest::get(format!("http://{sampling}/sampling?service=noisy"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    assert_eq!(
        noisy_answer().await,
        r#"{"strategyType":0,"probabilisticSampling":{"samplingRate":0},"operationSampling":{"defaultSamplingProbability":0,"defaultLowerBoundTracesPerSecond":0,"perOperationStrategies":[{"operation":"POST /keep","probabilisticSampling":{"samplingRate":1}}],"defaultUpperBoundTracesPerSecond":0}}"#
    );

    let mut client = TraceServiceClient::connect(agent.otlp_grpc_url())
        .await
        .unwrap();
    let mut expect = HashSet::new();
    let mut sent = 0usize;
    // noisy, entered by "op-1" (rate 0): dropped whole, but for the error spans
    for t in 0..10u64 {
        let trace = random_trace_id();
        let base = 1000 * (t + 1);
        let mut req = trace_request("noisy", trace, base, 3);
        if t % 3 == 0 {
            req.resource_spans[0].scope_spans[0].spans.push(error_span(
                trace,
                base + 4,
                Some(base + 1),
                "db",
            ));
            expect.insert(span_key(trace, base + 4));
            sent += 1;
        }
        sent += 3;
        let resp = client.export(req).await.unwrap().into_inner();
        assert_eq!(resp.partial_success, None, "sampling is not a rejection");
    }
    // noisy, entered by "POST /keep" (rate 1), children first as SDKs send them: kept whole
    for t in 0..5u64 {
        let trace = random_trace_id();
        let base = 100_000 + 1000 * t;
        let spans = vec![
            otlp_span(trace, base + 2, Some(base + 1), "SELECT", vec![]),
            otlp_span(trace, base + 1, None, "POST /keep", vec![]),
        ];
        client.export(request("noisy", spans)).await.unwrap();
        expect.extend([span_key(trace, base + 1), span_key(trace, base + 2)]);
        sent += 2;
    }
    // limited: 10 traces in one request; the bucket holds 2 tokens at start
    let mut limited = Vec::new();
    let mut limited_traces = Vec::new();
    for t in 0..10u64 {
        let trace = random_trace_id();
        let base = 200_000 + 1000 * t;
        limited.push(otlp_span(trace, base + 1, None, "search", vec![]));
        limited.push(otlp_span(trace, base + 2, Some(base + 1), "query", vec![]));
        limited_traces.push((trace, base));
        sent += 2;
    }
    let resp = client
        .export(request("limited", limited))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.partial_success, None);

    let seen = index(&read_topic(&topic, Duration::from_secs(60)));
    let got: HashSet<_> = seen.keys().copied().collect();
    let limited_kept: Vec<_> = limited_traces
        .iter()
        .filter(|(trace, base)| got.contains(&span_key(*trace, base + 1)))
        .collect();
    assert_eq!(limited_kept.len(), 2, "two tokens: two traces of limited");
    for (trace, base) in limited_kept {
        assert!(got.contains(&span_key(*trace, base + 2)), "kept whole");
        expect.extend([span_key(*trace, base + 1), span_key(*trace, base + 2)]);
    }
    assert_eq!(got, expect);
    assert_eq!(
        agent
            .metric("clew_agent_spans_sampled_out_total", &[])
            .await,
        (sent - expect.len()) as f64
    );

    // The file changes: the agent's answer and its decisions follow.
    std::fs::write(&strategies, file(1.0)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !noisy_answer()
        .await
        .contains(r#""samplingRate":1},"operationSampling""#)
    {
        assert!(
            Instant::now() < deadline,
            "strategies not reloaded within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for t in 0..5u64 {
        let trace = random_trace_id();
        let base = 300_000 + 1000 * t;
        client
            .export(trace_request("noisy", trace, base, 3))
            .await
            .unwrap();
        expect.extend((1..=3).map(|i| span_key(trace, base + i)));
    }
    let seen = index(&read_topic(&topic, Duration::from_secs(60)));
    let got: HashSet<_> = seen.keys().copied().collect();
    assert_eq!(got, expect, "after the change noisy's traces are kept");
}

/// Issue 3 fault test: the broker is stopped while the agent receives traffic. The agent
/// keeps acknowledging (it spools), the broker comes back (same port, same data), and every
/// acknowledged span reaches the topic exactly once, each trace's spans in the order the
/// agent acknowledged them.
///
/// Each trace is sent as 4 requests of one span each (sequentially, one client), spread
/// over the phases, so the order check spans the switch to the spool and back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka started by scripts/kafka-start (it stops and restarts the broker); scripts/test runs it"]
async fn broker_outage_spools_and_replays_every_acknowledged_span_once_in_order() {
    let _broker = BROKER.write().await;
    let topic = unique("agent-outage");
    create_topic(&topic, PARTITIONS).await;
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("agent.toml");
    std::fs::write(&config, "[kafka]\ndelivery_timeout_ms = 2000\n").unwrap();
    let brokers = bootstrap();
    let config_arg = config.to_string_lossy().into_owned();
    let mut args = agent_args(&topic, &brokers);
    args.extend(["--config", &config_arg]);
    let agent = Agent::start(&tmp.path().join("spool"), &args);
    let mut client = TraceServiceClient::connect(agent.otlp_grpc_url())
        .await
        .unwrap();

    // 12 traces in flight at once; every round sends the next span of each.
    let traces: Vec<[u8; 16]> = (0..12).map(|_| random_trace_id()).collect();
    let mut acked: Vec<([u8; 16], u64)> = Vec::new();
    let mut refused = 0;
    let mut round = 0u64;
    let round_of = |round: u64| -> Vec<([u8; 16], u64, ExportTraceServiceRequest)> {
        traces
            .iter()
            .map(|t| {
                let span = otlp_span(
                    *t,
                    round + 1,
                    (round > 0).then_some(1),
                    "step",
                    vec![kv("round", &round.to_string())],
                );
                (*t, round + 1, request("outage-svc", vec![span]))
            })
            .collect()
    };
    // Phase 0: broker up.
    send_all(&mut client, round_of(round), &mut acked, &mut refused).await;
    round += 1;
    // Phase 1: broker down; the agent keeps acknowledging (spool).
    broker("kafka-stop", &[]);
    for _ in 0..2 {
        send_all(&mut client, round_of(round), &mut acked, &mut refused).await;
        round += 1;
    }
    let spooled = agent.metric("clew_agent_records_spooled_total", &[]).await;
    assert!(
        spooled > 0.0,
        "nothing went to the spool while the broker was down"
    );
    assert_eq!(refused, 0, "the spool had room: nothing may be refused");
    assert_eq!(
        acked.len(),
        3 * traces.len(),
        "every request acknowledged while the broker was down"
    );
    // Phase 2: broker back; traffic continues (behind the spool until it is drained).
    broker("kafka-start", &["--restart"]);
    send_all(&mut client, round_of(round), &mut acked, &mut refused).await;
    assert_eq!(refused, 0);

    // Everything acknowledged reaches the topic (bounded wait for the replay).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let pending = agent.metric("clew_agent_spool_records", &[]).await;
        if pending == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "spool not drained within 120 s ({pending} records left)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let recs = read_topic(&topic, Duration::from_secs(60));
    let seen = index(&recs);
    for (t, id) in &acked {
        assert!(
            seen.contains_key(&span_key(*t, *id)),
            "acknowledged span {}/{id} missing",
            hex::encode(t)
        );
    }
    let dups: Vec<_> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, n)| (hex::encode(k.0), u64::from_be_bytes(k.1), *n))
        .collect();
    assert!(
        dups.is_empty(),
        "spans in the topic more than once: {dups:?}"
    );
    // Per trace, spans appear in the order they were acknowledged (offsets within the
    // trace's one partition).
    for t in &traces {
        let mut order: Vec<(i64, u64)> = recs
            .iter()
            .flat_map(|r| r.spans.iter().map(move |s| (r, s)))
            .filter(|(_, s)| s.trace_id.0 == *t)
            .map(|(r, s)| (r.offset, u64::from_be_bytes(s.span_id.0)))
            .collect();
        order.sort();
        let ids: Vec<u64> = order.iter().map(|(_, id)| *id).collect();
        assert_eq!(
            ids,
            (1..=4).collect::<Vec<_>>(),
            "trace {} out of order",
            hex::encode(t)
        );
    }
    let m = agent.metrics_text().await;
    let replayed = metric_value(
        &m,
        "clew_agent_records_produced_total",
        &[("path", "replay")],
    );
    let spooled = metric_value(&m, "clew_agent_records_spooled_total", &[]);
    assert!(
        spooled >= 24.0,
        "both outage rounds went to the spool ({spooled})"
    );
    assert_eq!(replayed, spooled, "every spooled record was replayed once");
}

/// Spool full: with Kafka unreachable and a tiny spool, clients get retryable answers
/// (gRPC UNAVAILABLE, HTTP 503 + Retry-After) and nothing of a refused request is kept;
/// what was acknowledged survives an agent restart and reaches Kafka once it is reachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka (KAFKA_BOOTSTRAP from scripts/kafka-start); scripts/test runs it"]
async fn full_spool_refuses_with_retryable_errors_and_keeps_everything_acknowledged() {
    let _broker = BROKER.read().await;
    let topic = unique("agent-full");
    create_topic(&topic, PARTITIONS).await;
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let config = tmp.path().join("agent.toml");
    std::fs::write(
        &config,
        "[kafka]\ndelivery_timeout_ms = 500\nmessage_max_bytes = 4096\n[spool]\nmax_bytes = 32768\nsegment_bytes = 8192\n",
    )
    .unwrap();
    let config_arg = config.to_string_lossy().into_owned();
    // A port nothing listens on: Kafka is unreachable.
    let dead = format!("127.0.0.1:{}", common::free_port());
    let mut agent = Agent::start(
        &spool,
        &[
            "--kafka-brokers",
            &dead,
            "--kafka-topic",
            &topic,
            "--config",
            &config_arg,
        ],
    );
    let mut client = TraceServiceClient::connect(agent.otlp_grpc_url())
        .await
        .unwrap();
    let mut acked = Vec::new();
    let mut refused = Vec::new();
    for r in 0..200u64 {
        let trace = random_trace_id();
        let base = 1000 * (r + 1);
        let req = trace_request("full-svc", trace, base, 4);
        let keys: Vec<_> = (1..=4).map(|i| span_key(trace, base + i)).collect();
        if r % 2 == 0 {
            match client.export(req).await {
                Ok(_) => acked.extend(keys),
                Err(s) => {
                    assert_eq!(s.code(), tonic::Code::Unavailable, "{s}");
                    assert!(s.message().contains("spool is full"), "{}", s.message());
                    refused.extend(keys);
                }
            }
        } else {
            let resp = post_protobuf(&agent, &req).await;
            match resp.status().as_u16() {
                200 => acked.extend(keys),
                503 => {
                    assert!(
                        resp.headers().contains_key("retry-after"),
                        "503 without Retry-After"
                    );
                    refused.extend(keys);
                }
                other => panic!("unexpected HTTP status {other}"),
            }
        }
        if refused.len() >= 16 {
            break;
        }
    }
    assert!(!acked.is_empty(), "the spool accepted nothing");
    assert!(refused.len() >= 16, "the tiny spool never filled up");
    assert!(
        agent
            .metric(
                "clew_collector_requests_failed_total",
                &[("reason", "spool_full")]
            )
            .await
            >= 4.0
    );
    let disk = agent.metric("clew_agent_spool_disk_bytes", &[]).await;
    assert!(disk <= 32768.0, "spool over its bound: {disk}");
    assert_eq!(agent.terminate().code(), Some(0));

    // Same spool, reachable broker: what was acknowledged is replayed on start.
    let brokers = bootstrap();
    let agent = Agent::start(&spool, &agent_args(&topic, &brokers));
    let deadline = Instant::now() + Duration::from_secs(60);
    while agent.metric("clew_agent_spool_records", &[]).await > 0.0 {
        assert!(Instant::now() < deadline, "spool not replayed within 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let seen = index(&read_topic(&topic, Duration::from_secs(60)));
    for k in &acked {
        assert!(seen.contains_key(k), "acknowledged span lost");
    }
    for k in &refused {
        assert!(!seen.contains_key(k), "a refused request was partly kept");
    }
    assert_eq!(seen.len(), acked.len());
    assert!(seen.values().all(|n| *n == 1), "duplicates after replay");
}

/// Sends each request in turn; records acknowledged (trace, span id) and counts retryable
/// refusals. Anything else fails the test.
async fn send_all(
    client: &mut TraceServiceClient<tonic::transport::Channel>,
    reqs: Vec<([u8; 16], u64, ExportTraceServiceRequest)>,
    acked: &mut Vec<([u8; 16], u64)>,
    refused: &mut usize,
) {
    for (t, id, req) in reqs {
        match client.export(req).await {
            Ok(r) => {
                assert_eq!(r.into_inner().partial_success, None);
                acked.push((t, id));
            }
            Err(s) if s.code() == tonic::Code::Unavailable => *refused += 1,
            Err(s) => panic!("unexpected answer: {s}"),
        }
    }
}
