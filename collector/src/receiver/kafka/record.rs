//! One Kafka record, from its bytes to "done": decode by the topic's format, then the same
//! ingest front half as OTLP ([`Front::ingest`]: validate, convert, count, enrich, submit
//! within `max_in_flight_spans`), retrying the *same* record until it is durable; or, for a
//! poison record, count it, dead-letter it and move on.
//!
//! A record is *done* only when its spans are durable in the store and handed to the index
//! (or when it was poison and is safely in the dead-letter topic). Only then may the
//! consumer commit past it. A record that was not done when the receiver stopped is
//! *abandoned*: not committed, read again after the restart.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use clew_proto::avro::{self, AvroError};
use clew_proto::from_otlp::Limits;
use clew_proto::{Span, Tenant};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use tokio::sync::{watch, Semaphore};
use tracing::{debug, warn};

use super::config::{KafkaFormat, TopicFormats};
use super::TENANT_HEADER;
use crate::batcher::StoreRejections;
use crate::decode::{decode_json, decode_plain, Format};
use crate::error::{Error, Result};
use crate::ingest::{Decoded, DecoderFailed, Front, Input, Offload, Refused};
use crate::inventory::{AgentId, Origin, AGENT_HEADER, AGENT_VERSION_HEADER};
use crate::metrics::{self, Protocol};
use crate::sink::SpanSink;

/// Values larger than this are decoded on the blocking pool.
const INLINE_MAX_BYTES: usize = 16 * 1024;

/// How long a dead-letter produce may wait for room in the producer's local queue.
const DEAD_LETTER_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

/// A record that finished: done (durable or dead-lettered) or abandoned.
#[derive(Debug)]
pub(super) struct Finished {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub generation: u64,
    pub done: bool,
}

/// Why a record can never be written: the value itself is bad.
#[derive(Debug)]
pub(super) struct Poison {
    /// Bounded metric label.
    pub reason: &'static str,
    pub message: String,
}

impl Poison {
    fn new(reason: &'static str, message: impl std::fmt::Display) -> Self {
        Poison {
            reason,
            message: message.to_string(),
        }
    }

    fn from_avro(e: AvroError) -> Self {
        let reason = match e {
            AvroError::TooShort(_) | AvroError::BadMagic(..) => "avro_bad_header",
            AvroError::UnknownFingerprint(..) => "avro_unknown_schema",
            _ => "avro_malformed",
        };
        Poison::new(reason, format!("failed to decode avro span batch: {e}"))
    }

    fn from_decode(e: Error) -> Self {
        match e {
            Error::TooLarge { .. } => Poison::new("too_large", e),
            e => Poison::new("undecodable", e),
        }
    }
}

impl From<DecoderFailed> for Poison {
    fn from(e: DecoderFailed) -> Self {
        Poison::new("undecodable", e)
    }
}

/// Every reason label of [`Poison`], for pre-registering the series.
pub(super) const POISON_REASONS: [&str; 7] = [
    "bad_tenant",
    "too_large",
    "undecodable",
    "avro_bad_header",
    "avro_unknown_schema",
    "avro_malformed",
    "unknown_topic",
];

/// The record was not done and must not be committed (the receiver is stopping).
#[derive(Debug)]
pub(super) struct Abandoned;

/// Where poison records go.
pub(super) struct DeadLetter {
    pub producer: FutureProducer,
    pub topic: String,
}

/// What every record task shares.
pub(super) struct Worker {
    /// The ingest front half, ending in an [`InFlightSpans`] in front of the pipeline.
    pub front: Arc<Front>,
    pub max_request_bytes: usize,
    pub formats: TopicFormats,
    /// Decodes running on the blocking pool at once (one per core).
    pub decode_slots: Arc<Semaphore>,
    pub dead_letter: Option<DeadLetter>,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Records currently failing to be written (or dead-lettered): while > 0 the consumer
    /// keeps its partitions paused.
    pub failing: Arc<AtomicUsize>,
    pub stop: watch::Receiver<bool>,
    pub finished: Sender<Finished>,
}

/// Sends the record's [`Finished`] exactly once, also when its task panics or is dropped
/// (then as abandoned), so the consumer never waits for a record nobody works on.
struct FinishGuard {
    finished: Sender<Finished>,
    record: Option<Finished>,
}

impl FinishGuard {
    fn finish(mut self, done: bool) {
        if let Some(mut r) = self.record.take() {
            r.done = done;
            let _ = self.finished.send(r);
        }
    }
}

impl Drop for FinishGuard {
    fn drop(&mut self) {
        if let Some(r) = self.record.take() {
            let _ = self.finished.send(r);
        }
    }
}

/// Counts a record as failing while it lives.
struct Failing(Arc<AtomicUsize>);

impl Failing {
    fn new(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        Failing(counter.clone())
    }
}

impl Drop for Failing {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Capped exponential back-off.
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Backoff { next: min, max }
    }

    fn next(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }
}

/// Processes one record to the end and reports it to the consumer.
pub(super) async fn process(worker: Arc<Worker>, msg: OwnedMessage, generation: u64) {
    let guard = FinishGuard {
        finished: worker.finished.clone(),
        record: Some(Finished {
            topic: msg.topic().to_string(),
            partition: msg.partition(),
            offset: msg.offset(),
            generation,
            done: false,
        }),
    };
    let done = worker.handle(Arc::new(msg)).await.is_ok();
    guard.finish(done);
}

impl Worker {
    async fn handle(&self, msg: Arc<OwnedMessage>) -> Result<(), Abandoned> {
        let Some(format) = self.formats.format_of(msg.topic()) else {
            let p = Poison::new(
                "unknown_topic",
                format!(
                    "topic {:?} matches no entry of collector.kafka.topics (librdkafka and the receiver read the pattern differently?)",
                    msg.topic()
                ),
            );
            return self.poison(&msg, None, p).await;
        };
        let tenant = match tenant_of(&msg) {
            Ok(t) => t,
            Err(p) => return self.poison(&msg, Some(format), p).await,
        };
        let mut backoff = Backoff::new(self.backoff_min, self.backoff_max);
        let mut failing: Option<Failing> = None;
        let mut first = true;
        loop {
            // The value is decoded again on each retry instead of keeping a copy of the spans.
            let result = self
                .front
                .ingest(
                    self.input(&msg, first, tenant.clone()),
                    self.decoder(&msg, format),
                )
                .await;
            first = false;
            match result {
                // Store rejections are counted and logged by the store writer; the rest
                // of the record is durable.
                Ok(_) => {
                    metrics::kafka_record_done(msg.topic(), "stored");
                    return Ok(());
                }
                Err(Refused::Decode(p)) => return self.poison(&msg, Some(format), p).await,
                Err(Refused::Sink(Error::ShuttingDown)) => return Err(Abandoned),
                Err(Refused::Sink(error)) => {
                    metrics::kafka_write_retried(error.reason());
                    if failing.is_none() {
                        warn!(
                            topic = msg.topic(), partition = msg.partition(), offset = msg.offset(),
                            %error, retryable = error.is_retryable(),
                            "writing the spans of a kafka record failed; pausing consumption and retrying the record"
                        );
                        failing = Some(Failing::new(&self.failing));
                    } else {
                        debug!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), %error, "kafka record write failed again");
                    }
                    self.sleep_unless_stopping(backoff.next()).await?;
                }
            }
        }
    }

    /// Large values are decoded on the blocking pool; a record is counted on its first try.
    fn input(&self, msg: &OwnedMessage, first: bool, tenant: Tenant) -> Input<'_> {
        let len = msg.payload().map_or(0, <[u8]>::len);
        Input {
            protocol: Protocol::Kafka,
            offload: if len <= INLINE_MAX_BYTES {
                Offload::Inline
            } else {
                Offload::BlockingIn(&self.decode_slots)
            },
            count: first,
            origin: if self.front.inventory.is_some() {
                origin(msg)
            } else {
                Origin::default()
            },
            // from the record's `clew-tenant` header (`default` without one), stamped on
            // every span by Front::prepare as the OTLP receivers do with the caller's
            tenant,
        }
    }

    /// The decode stage for this record's value.
    fn decoder(
        &self,
        msg: &Arc<OwnedMessage>,
        format: KafkaFormat,
    ) -> impl FnOnce(&Limits, u64) -> Result<Decoded, Poison> + Send + 'static {
        let (msg, max_request_bytes) = (msg.clone(), self.max_request_bytes);
        move |limits, now| {
            decode_record(
                format,
                msg.payload().unwrap_or_default(),
                max_request_bytes,
                limits,
                now,
            )
        }
    }

    /// Counts and logs a poison record and dead-letters it when configured.
    async fn poison(
        &self,
        msg: &OwnedMessage,
        format: Option<KafkaFormat>,
        poison: Poison,
    ) -> Result<(), Abandoned> {
        metrics::kafka_poison(msg.topic(), poison.reason);
        warn!(
            topic = msg.topic(),
            partition = msg.partition(),
            offset = msg.offset(),
            format = format.map_or("none", KafkaFormat::as_str),
            reason = poison.reason,
            error = %poison.message,
            dead_letter_topic = self.dead_letter.as_ref().map(|d| d.topic.as_str()),
            "poison kafka record"
        );
        let Some(dead_letter) = &self.dead_letter else {
            metrics::kafka_record_done(msg.topic(), "skipped");
            return Ok(());
        };
        let mut backoff = Backoff::new(self.backoff_min, self.backoff_max);
        let mut failing: Option<Failing> = None;
        loop {
            let headers = dead_letter_headers(msg, format, &poison);
            let mut record = FutureRecord::<[u8], [u8]>::to(&dead_letter.topic).headers(headers);
            if let Some(key) = msg.key() {
                record = record.key(key);
            }
            if let Some(value) = msg.payload() {
                record = record.payload(value);
            }
            match dead_letter
                .producer
                .send(record, Timeout::After(DEAD_LETTER_QUEUE_TIMEOUT))
                .await
            {
                Ok(_) => {
                    metrics::kafka_record_done(msg.topic(), "dead_lettered");
                    return Ok(());
                }
                Err((error, _)) => {
                    metrics::kafka_dead_letter_failed();
                    warn!(
                        topic = msg.topic(), partition = msg.partition(), offset = msg.offset(),
                        dead_letter_topic = %dead_letter.topic, %error,
                        "producing a poison record to the dead-letter topic failed; not committing past it, retrying"
                    );
                    failing.get_or_insert_with(|| Failing::new(&self.failing));
                    self.sleep_unless_stopping(backoff.next()).await?;
                }
            }
        }
    }

    async fn sleep_unless_stopping(&self, d: Duration) -> Result<(), Abandoned> {
        let mut stop = self.stop.clone();
        if *stop.borrow() {
            return Err(Abandoned);
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => Ok(()),
            _ = stop.wait_for(|s| *s) => Err(Abandoned),
        }
    }
}

/// Value → decoded input, by the topic's format. Avro batches and OTLP protobuf are
/// validated against `limits` while they are decoded; OTLP/JSON and Zipkin requests by
/// the next stage.
pub(super) fn decode_record(
    format: KafkaFormat,
    value: &[u8],
    max_request_bytes: usize,
    limits: &Limits,
    now_unix_nano: u64,
) -> Result<Decoded, Poison> {
    if value.len() > max_request_bytes {
        return Err(Poison::new(
            "too_large",
            format!(
                "record value is {} bytes, above collector.max_request_bytes ({})",
                value.len(),
                max_request_bytes
            ),
        ));
    }
    Ok(match format {
        KafkaFormat::Avro => Decoded::Validated(
            avro::decode_batch(value, limits, now_unix_nano).map_err(Poison::from_avro)?,
        ),
        KafkaFormat::OtlpProto => Decoded::Validated(
            decode_plain(value, Format::Protobuf, limits, now_unix_nano)
                .map_err(Poison::from_decode)?,
        ),
        KafkaFormat::OtlpJson => Decoded::Otlp(decode_json(value).map_err(Poison::from_decode)?),
        KafkaFormat::ZipkinJson => Decoded::Otlp(crate::zipkin::to_otlp(
            crate::zipkin::decode_json(value).map_err(Poison::from_decode)?,
        )),
    })
}

/// The sink in front of the pipeline that keeps the spans of Kafka records in it below
/// `max_in_flight_spans`, leaving queue room for OTLP clients.
pub(super) struct InFlightSpans {
    pub sink: Arc<dyn SpanSink>,
    pub permits: Arc<Semaphore>,
    pub max_in_flight_spans: usize,
}

#[async_trait]
impl SpanSink for InFlightSpans {
    async fn submit(&self, spans: Vec<Span>) -> Result<StoreRejections> {
        if spans.is_empty() {
            return Ok(Vec::new());
        }
        let want = spans.len().min(self.max_in_flight_spans) as u32;
        let _permit = self
            .permits
            .clone()
            .acquire_many_owned(want)
            .await
            .map_err(|_| Error::ShuttingDown)?;
        self.sink.submit(spans).await
    }
}

/// The tenant a record's `clew-tenant` header names, `default` without the header. A
/// header that is not a valid tenant name (or several that disagree) makes the record
/// poison: storing it as `default` would put one tenant's spans into another's.
pub(super) fn tenant_of(msg: &OwnedMessage) -> Result<Tenant, Poison> {
    let Some(headers) = msg.headers() else {
        return Ok(Tenant::default());
    };
    let mut found: Option<Tenant> = None;
    for h in headers.iter().filter(|h| h.key == TENANT_HEADER) {
        let value = h.value.unwrap_or_default();
        let tenant = std::str::from_utf8(value)
            .ok()
            .and_then(|v| Tenant::parse(v).ok())
            .ok_or_else(|| {
                Poison::new(
                    "bad_tenant",
                    format!(
                        "record header {TENANT_HEADER} {:?} is not a tenant name ([a-z0-9][a-z0-9_-]{{0,63}})",
                        String::from_utf8_lossy(&value[..value.len().min(80)])
                    ),
                )
            })?;
        if found.as_ref().is_some_and(|f| *f != tenant) {
            return Err(Poison::new(
                "bad_tenant",
                format!("record has several {TENANT_HEADER} headers naming different tenants"),
            ));
        }
        found = Some(tenant);
    }
    Ok(found.unwrap_or_default())
}

/// A record's topic and, from its headers, the `clew agent` that produced it.
fn origin(msg: &OwnedMessage) -> Origin {
    let header = |name: &str| {
        msg.headers()?
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    Origin {
        topic: Some(msg.topic().into()),
        agent: header(AGENT_HEADER).map(|name| {
            Arc::new(AgentId {
                name,
                version: header(AGENT_VERSION_HEADER).unwrap_or_default(),
            })
        }),
    }
}

/// The source record's headers, then `clew.dlq.*` headers naming where it came from and
/// why it is here.
fn dead_letter_headers(
    msg: &OwnedMessage,
    format: Option<KafkaFormat>,
    poison: &Poison,
) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new();
    if let Some(original) = msg.headers() {
        for h in original.iter() {
            headers = headers.insert(Header {
                key: h.key,
                value: h.value,
            });
        }
    }
    let partition = msg.partition().to_string();
    let offset = msg.offset().to_string();
    for (key, value) in [
        ("clew.dlq.source.topic", msg.topic()),
        ("clew.dlq.source.partition", partition.as_str()),
        ("clew.dlq.source.offset", offset.as_str()),
        (
            "clew.dlq.format",
            format.map_or("none", KafkaFormat::as_str),
        ),
        ("clew.dlq.reason", poison.reason),
        ("clew.dlq.error", poison.message.as_str()),
    ] {
        headers = headers.insert(Header {
            key,
            value: Some(value),
        });
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::Enricher;
    use crate::ingest::now_unix_nano;
    use clew_proto::from_otlp::Converted;
    use clew_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
    use clew_proto::otlp::common::v1::{any_value, AnyValue, KeyValue};
    use clew_proto::otlp::resource::v1::Resource;
    use clew_proto::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span as OtlpSpan};
    use clew_proto::RejectReason;
    use prost::Message as _;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            ..Default::default()
        }
    }

    fn request() -> ExportTraceServiceRequest {
        let now = now_unix_nano();
        let span = |id: u8, trace: u8| OtlpSpan {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            name: format!("op{id}"),
            start_time_unix_nano: now - 1_000_000,
            end_time_unix_nano: now,
            attributes: vec![kv("order_id", "o-1")],
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "svc")],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    // the second span has an all-zero trace id: rejected alone
                    spans: vec![span(1, 7), span(2, 0), span(3, 7)],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    struct Setup {
        front: Front,
    }

    /// The tests only decode: nothing reaches a sink.
    struct NoSink;

    #[async_trait]
    impl SpanSink for NoSink {
        async fn submit(&self, _: Vec<Span>) -> Result<StoreRejections> {
            unreachable!("the tests only decode")
        }
    }

    impl Setup {
        fn new() -> Self {
            Setup {
                front: Front {
                    limits: Limits::default(),
                    redactor: None,
                    enricher: Some(Enricher::new(&["order_id".to_string()])),
                    sink: Arc::new(NoSink),
                    span_metrics: None,
                    alerting: None,
                    inventory: None,
                    rate_limits: None,
                },
            }
        }

        fn decoding(&self) -> &Front {
            &self.front
        }
    }

    /// Decodes, validates, converts and enriches one value as `Worker::handle` does before
    /// it submits.
    fn decode_value(front: &Front, format: KafkaFormat, value: &[u8]) -> Result<Converted, Poison> {
        front
            .prepare(
                Protocol::Kafka,
                false,
                &Default::default(),
                |limits, now| decode_record(format, value, 4096, limits, now),
            )
            .map(|p| p.converted)
    }

    #[test]
    fn zipkin_json_records_decode_validate_and_enrich() {
        let setup = Setup::new();
        let ts = now_unix_nano() / 1000 - 1000;
        let span = |trace: &str, id: &str| {
            format!(
                r#"{{"traceId":"{trace}","id":"{id}","name":"op","timestamp":{ts},"duration":5,"localEndpoint":{{"serviceName":"svc"}},"tags":{{"order_id":"o-1"}}}}"#
            )
        };
        let body = format!(
            "[{},{},{}]",
            span("0707070707070707", "0101010101010101"),
            span("00000000000000000000000000000000", "0202020202020202"),
            span("0707070707070707", "0303030303030303")
        );
        let c = decode_value(setup.decoding(), KafkaFormat::ZipkinJson, body.as_bytes()).unwrap();
        assert_eq!(c.spans.len(), 2);
        assert_eq!(c.rejected[0].reason, RejectReason::InvalidTraceId);
        assert_eq!(c.spans[0].service_name, "svc");
        assert_eq!(c.spans[0].business_keys[0].value, "o-1");
    }

    #[test]
    fn every_format_decodes_validates_and_enriches() {
        let setup = Setup::new();
        let shared = setup.decoding();
        let req = request();
        let proto = req.encode_to_vec();
        let json = serde_json::to_vec(&req).unwrap();
        for (format, bytes) in [
            (KafkaFormat::OtlpProto, proto.clone()),
            (KafkaFormat::OtlpJson, json),
        ] {
            let c = decode_value(shared, format, &bytes).unwrap();
            assert_eq!(c.spans.len(), 2, "{format:?}");
            assert_eq!(c.rejected.len(), 1, "{format:?}");
            assert_eq!(c.rejected[0].reason, RejectReason::InvalidTraceId);
            assert_eq!(c.spans[0].business_keys[0].value, "o-1");
        }
        // avro: keys the agent carried are kept alongside the collector's
        let mut spans = decode_value(shared, KafkaFormat::OtlpProto, &proto)
            .unwrap()
            .spans;
        spans[0].business_keys = vec![clew_proto::BusinessKey {
            name: "user_id".into(),
            value: "u-9".into(),
        }];
        let c = decode_value(shared, KafkaFormat::Avro, &avro::encode_batch(&spans)).unwrap();
        assert_eq!(c.spans.len(), 2);
        let keys: Vec<_> = c.spans[0]
            .business_keys
            .iter()
            .map(|k| format!("{}={}", k.name, k.value))
            .collect();
        assert_eq!(keys, vec!["order_id=o-1", "user_id=u-9"]);
    }

    #[test]
    fn poison_is_classified() {
        let setup = Setup::new();
        let shared = setup.decoding();
        let reason = |format, bytes: &[u8]| decode_value(shared, format, bytes).unwrap_err().reason;
        assert_eq!(
            reason(KafkaFormat::Avro, b"garbage!garbage!"),
            "avro_bad_header"
        );
        assert_eq!(reason(KafkaFormat::Avro, b""), "avro_bad_header");
        let mut unknown = avro::encode_batch(&[]);
        unknown[5] ^= 0xff;
        assert_eq!(reason(KafkaFormat::Avro, &unknown), "avro_unknown_schema");
        let mut truncated =
            decode_value(shared, KafkaFormat::OtlpProto, &request().encode_to_vec())
                .map(|c| avro::encode_batch(&c.spans))
                .unwrap();
        truncated.truncate(truncated.len() - 3);
        assert_eq!(reason(KafkaFormat::Avro, &truncated), "avro_malformed");
        assert_eq!(reason(KafkaFormat::OtlpProto, &[0xff; 64]), "undecodable");
        assert_eq!(reason(KafkaFormat::OtlpJson, b"{not json"), "undecodable");
        assert_eq!(reason(KafkaFormat::ZipkinJson, b"{}"), "undecodable");
        assert_eq!(reason(KafkaFormat::ZipkinJson, &[b' '; 5000]), "too_large");
        assert_eq!(reason(KafkaFormat::OtlpJson, &[b' '; 5000]), "too_large");
        for r in [
            "avro_bad_header",
            "avro_unknown_schema",
            "avro_malformed",
            "undecodable",
            "too_large",
        ] {
            assert!(POISON_REASONS.contains(&r));
        }
    }

    #[test]
    fn dead_letter_headers_keep_the_original_and_name_the_source() {
        let original = OwnedHeaders::new().insert(Header {
            key: "traceparent",
            value: Some("00-abc"),
        });
        let msg = OwnedMessage::new(
            Some(b"value".to_vec()),
            Some(b"key".to_vec()),
            "spans".into(),
            rdkafka::Timestamp::NotAvailable,
            3,
            42,
            Some(original),
        );
        let h = dead_letter_headers(
            &msg,
            Some(KafkaFormat::Avro),
            &Poison::new("avro_bad_header", "bad magic"),
        );
        let got: Vec<(String, String)> = h
            .iter()
            .map(|h| {
                (
                    h.key.to_string(),
                    String::from_utf8_lossy(h.value.unwrap()).into_owned(),
                )
            })
            .collect();
        let want = [
            ("traceparent", "00-abc"),
            ("clew.dlq.source.topic", "spans"),
            ("clew.dlq.source.partition", "3"),
            ("clew.dlq.source.offset", "42"),
            ("clew.dlq.format", "avro"),
            ("clew.dlq.reason", "avro_bad_header"),
            ("clew.dlq.error", "bad magic"),
        ];
        assert_eq!(
            got,
            want.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        );
    }

    fn with_headers(headers: &[(&str, Option<&[u8]>)]) -> OwnedMessage {
        let mut h = OwnedHeaders::new();
        for (key, value) in headers {
            h = h.insert(Header { key, value: *value });
        }
        OwnedMessage::new(
            None,
            None,
            "spans".into(),
            rdkafka::Timestamp::NotAvailable,
            0,
            7,
            Some(h),
        )
    }

    #[test]
    fn the_tenant_header_names_the_tenant_and_a_bad_one_is_poison() {
        let reason =
            |h: &[(&str, Option<&[u8]>)]| tenant_of(&with_headers(h)).map_err(|p| p.reason);
        assert_eq!(reason(&[]), Ok(Tenant::default()));
        assert_eq!(
            reason(&[("clew-agent", Some(b"host"))]),
            Ok(Tenant::default())
        );
        let shop = Tenant::parse("shop").unwrap();
        assert_eq!(reason(&[(TENANT_HEADER, Some(b"shop"))]), Ok(shop.clone()));
        assert_eq!(
            reason(&[
                (TENANT_HEADER, Some(b"shop")),
                (TENANT_HEADER, Some(b"shop"))
            ]),
            Ok(shop)
        );
        assert_eq!(
            reason(&[(TENANT_HEADER, Some(b"default"))]),
            Ok(Tenant::default())
        );
        let bad: [&[u8]; 6] = [
            b"",
            b"Shop",
            b"shop.eu",
            b"-shop",
            &[0xff, 0xfe],
            &[b'a'; 65],
        ];
        for value in bad {
            assert_eq!(
                reason(&[(TENANT_HEADER, Some(value))]),
                Err("bad_tenant"),
                "{value:?}"
            );
        }
        assert_eq!(reason(&[(TENANT_HEADER, None)]), Err("bad_tenant"));
        assert_eq!(
            reason(&[
                (TENANT_HEADER, Some(b"shop")),
                (TENANT_HEADER, Some(b"bank"))
            ]),
            Err("bad_tenant")
        );
        assert!(POISON_REASONS.contains(&"bad_tenant"));
        // the message says which header and what it held, bounded
        let p = tenant_of(&with_headers(&[(TENANT_HEADER, Some(b"Shop"))])).unwrap_err();
        assert!(
            p.message.contains("clew-tenant") && p.message.contains("Shop"),
            "{}",
            p.message
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let got: Vec<u128> = (0..5).map(|_| b.next().as_millis()).collect();
        assert_eq!(got, vec![100, 200, 400, 500, 500]);
    }
}
