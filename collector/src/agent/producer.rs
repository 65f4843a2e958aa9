//! Shipping records to Kafka, with the disk spool behind it.
//!
//! ```text
//!  ship(records) ── spool empty? ──yes──▶ produce every record (idempotent, acks=all)
//!        │                                   │ each delivery report within delivery_timeout_ms
//!        │no (spooling)                      ├─ all acknowledged ─▶ Ok  (client acked: in Kafka)
//!        ▼                                   └─ some failed ─▶ append those to the spool ─┐
//!  append all to the spool (fsync) ◀───────────────────────────────────────────────────┘
//!        │ Ok: client acked (durable on disk)      Full / I/O error: client gets a retryable error
//!        ▼
//!  replay task: peek the oldest records ─▶ produce them ─▶ commit the delivered prefix ─▶ …
//!               (one probe record at a time after a failure, backing off 0.2 → 5 s;
//!                the spool empty again ⇒ new requests go straight to Kafka)
//! ```
//!
//! Order: while the spool holds anything, every new record goes behind it, and the replay
//! task sends in spool order and moves on only past a delivered prefix; so records of one
//! trace reach their partition in the order the agent accepted them, outage or not (between
//! requests that were in flight together, no order is promised — they raced anyway).
//!
//! Duplicates: Kafka's idempotent producer removes the duplicates its own retries would
//! make. A record can still reach the topic twice when (a) its delivery timed out but the
//! broker had written it (the timeout cannot tell; the record is spooled and replayed), (b)
//! in a replay batch a record failed while a later one was delivered (the later one is sent
//! again after the failed one), or (c) the agent stopped between a delivery and saving the
//! spool cursor. Each case needs an outage or a crash, and the collector's store is
//! idempotent (same trace id + span id = same cell), so query results stay exactly once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use tokio::sync::{watch, Notify};
use tracing::{debug, error, info, warn};

use super::config::{KafkaProducerConfig, SpoolConfig};
use super::metrics;
use super::spool::{AppendError, Peeked, Record, Spool};
use crate::error::{Error, Result};
use crate::inventory::{AGENT_HEADER, AGENT_VERSION_HEADER};
use crate::receiver::kafka::TENANT_HEADER;

const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Bytes read from the spool per replay round (at least one record).
const REPLAY_BATCH_BYTES: u64 = 16 * 1024 * 1024;
/// Room librdkafka needs around a record on top of key and value.
const RECORD_OVERHEAD_BYTES: u64 = 1024;

/// Routes librdkafka's logs and errors into `tracing`. An unreachable broker is something
/// the agent handles (it spools), so connection errors are warnings, not errors; only fatal
/// client errors are logged as errors.
pub struct AgentContext;

impl ClientContext for AgentContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                error!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Error | RDKafkaLogLevel::Warning => {
                warn!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                info!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Debug => debug!(target: "librdkafka", facility = fac, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
            error!(target: "librdkafka", %error, reason, "kafka producer failed fatally");
        } else {
            warn!(target: "librdkafka", %error, reason, "kafka client error (records are spooled until kafka acknowledges them)");
        }
    }
}

/// Where a call's records ended up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shipped {
    /// Acknowledged by Kafka.
    pub kafka: usize,
    /// Written to the spool (replayed later).
    pub spooled: usize,
}

/// The Kafka producer, the spool and the switch between them. See the module docs.
pub struct Shipper {
    producer: FutureProducer<AgentContext>,
    topic: String,
    spool: Mutex<Spool>,
    /// True from the first spooled record until the replay task finds the spool empty
    /// (set and cleared under the spool lock; read without it on the fast path).
    spooling: AtomicBool,
    wake: Notify,
    queue_timeout: Duration,
    replay_batch_records: usize,
    max_bytes: u64,
    /// `clew-agent` and `clew-agent-version`, on every record (`clew-tenant` is added per
    /// record, for tenants other than `default`).
    identity: OwnedHeaders,
}

/// The librdkafka producer settings the agent runs with.
pub fn producer_config(k: &KafkaProducerConfig) -> ClientConfig {
    let mut cc = ClientConfig::new();
    for (key, value) in &k.properties {
        cc.set(key, value);
    }
    let message_max = k.message_max_bytes + RECORD_OVERHEAD_BYTES;
    cc.set("bootstrap.servers", &k.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "none")
        .set("linger.ms", k.linger_ms.to_string())
        .set("batch.size", k.batch_max_bytes.min(message_max).to_string())
        .set("message.max.bytes", message_max.to_string())
        .set("message.timeout.ms", k.delivery_timeout_ms.to_string())
        .set(
            "queue.buffering.max.messages",
            k.queue_max_records.to_string(),
        );
    cc
}

/// Metric label for a failed delivery (bounded set: `metrics::PRODUCE_ERROR_REASONS`).
pub fn error_reason(e: &KafkaError) -> &'static str {
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::MessageTimedOut) => "timed_out",
        Some(RDKafkaErrorCode::QueueFull) => "queue_full",
        Some(RDKafkaErrorCode::MessageSizeTooLarge) => "too_large",
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
            "unknown_topic"
        }
        Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure) => {
            "broker_down"
        }
        _ => "other",
    }
}

impl Shipper {
    /// Creates the producer (it connects in the background: an unreachable broker is not an
    /// error here) over an opened spool.
    /// `name` goes into every record's `clew-agent` header.
    pub fn new(
        k: &KafkaProducerConfig,
        s: &SpoolConfig,
        spool: Spool,
        name: &str,
    ) -> Result<Arc<Shipper>> {
        let producer: FutureProducer<AgentContext> = producer_config(k)
            .create_with_context(AgentContext)
            .map_err(|e: KafkaError| Error::Kafka {
                what: "create the kafka producer",
                message: e.to_string(),
            })?;
        let spooling = !spool.is_empty();
        metrics::spool_state(
            spool.pending_records(),
            spool.pending_bytes(),
            spool.disk_bytes(),
            spool.oldest_record_time(),
        );
        Ok(Arc::new(Shipper {
            producer,
            topic: k.topic.clone(),
            max_bytes: spool.max_bytes(),
            spool: Mutex::new(spool),
            spooling: AtomicBool::new(spooling),
            wake: Notify::new(),
            queue_timeout: Duration::from_millis(k.delivery_timeout_ms),
            replay_batch_records: s.replay_batch_records,
            identity: OwnedHeaders::new()
                .insert(Header {
                    key: AGENT_HEADER,
                    value: Some(name),
                })
                .insert(Header {
                    key: AGENT_VERSION_HEADER,
                    value: Some(env!("CARGO_PKG_VERSION")),
                }),
        }))
    }

    /// Whether new records currently go to the spool.
    pub fn is_spooling(&self) -> bool {
        self.spooling.load(Ordering::Acquire)
    }

    /// Delivers `records` to Kafka, or makes them durable in the spool; `Ok` means the
    /// client may forget them. `records[i].1` is the number of spans record `i` carries.
    pub async fn ship(self: &Arc<Self>, records: Vec<(Record, usize)>) -> Result<Shipped> {
        if records.is_empty() {
            return Ok(Shipped::default());
        }
        let mut shipped = Shipped::default();
        let records = if self.is_spooling() {
            records
        } else {
            let outcomes = self
                .produce_all(records.iter().map(|(r, _)| r), "direct")
                .await;
            let mut failed = Vec::new();
            let mut first_error = None;
            let mut delivered = 0;
            for (rec, outcome) in records.into_iter().zip(outcomes) {
                match outcome {
                    Ok(()) => {
                        delivered += 1;
                        shipped.kafka += rec.1;
                    }
                    Err(reason) => {
                        first_error.get_or_insert(reason);
                        failed.push(rec);
                    }
                }
            }
            metrics::records_produced("direct", delivered);
            if failed.is_empty() {
                metrics::spans_accepted("kafka", shipped.kafka);
                return Ok(shipped);
            }
            warn!(
                records = failed.len(),
                reason = first_error.unwrap_or("other"),
                "kafka did not acknowledge records in time; writing them to the spool"
            );
            failed
        };
        let spans: usize = records.iter().map(|(_, n)| n).sum();
        let result = self
            .append(records.into_iter().map(|(r, _)| r).collect())
            .await;
        if result.is_ok() {
            shipped.spooled = spans;
            metrics::spans_accepted("spool", spans);
        }
        // Spans already in Kafka count as accepted only if the whole call succeeds: on an
        // error the client sends them again.
        metrics::spans_accepted("kafka", if result.is_ok() { shipped.kafka } else { 0 });
        result.map(|()| shipped)
    }

    /// Sends every record and waits for each delivery report; `Err(reason)` per failure.
    async fn produce_all<'a>(
        &self,
        records: impl Iterator<Item = &'a Record>,
        path: &'static str,
    ) -> Vec<Result<(), &'static str>> {
        let sends = records.map(|r| {
            let mut headers = self.identity.clone();
            if !r.tenant.is_default() {
                // records of tenant `default` go without it, as before tenants
                headers = headers.insert(Header {
                    key: TENANT_HEADER,
                    value: Some(r.tenant.as_str()),
                });
            }
            let record = FutureRecord::to(&self.topic)
                .key(r.key.as_slice())
                .payload(r.value.as_slice())
                .headers(headers);
            self.producer
                .send(record, Timeout::After(self.queue_timeout))
        });
        let results = futures::future::join_all(sends).await;
        results
            .into_iter()
            .map(|r| match r {
                Ok(_) => Ok(()),
                Err((e, _)) => {
                    let reason = error_reason(&e);
                    debug!(path, reason, error = %e, "kafka delivery failed");
                    metrics::produce_error(path, reason);
                    Err(reason)
                }
            })
            .collect()
    }

    /// Appends to the spool (fsync) and switches new traffic to it.
    async fn append(self: &Arc<Self>, records: Vec<Record>) -> Result<()> {
        let n = records.len();
        let me = self.clone();
        let appended = tokio::task::spawn_blocking(move || {
            let mut spool = me.spool.lock().expect("spool lock");
            let r = spool.append(&records);
            if r.is_ok() {
                me.spooling.store(true, Ordering::Release);
            }
            metrics::spool_state(
                spool.pending_records(),
                spool.pending_bytes(),
                spool.disk_bytes(),
                spool.oldest_record_time(),
            );
            r
        })
        .await
        .map_err(|e| Error::Spool {
            what: "append to the spool",
            source: std::io::Error::other(e.to_string()),
        })?;
        match appended {
            Ok(()) => {
                metrics::records_spooled(n);
                self.wake.notify_one();
                Ok(())
            }
            Err(AppendError::Full { .. }) => Err(Error::SpoolFull {
                max_bytes: self.max_bytes,
            }),
            Err(AppendError::Io(source)) => {
                metrics::spool_error("append");
                error!(error = %source, "failed to append to the spool");
                Err(Error::Spool {
                    what: "append to the spool",
                    source,
                })
            }
        }
    }

    /// Reads the next replay batch; `None` when the spool is empty (and new records go
    /// straight to Kafka again from then on).
    async fn next_batch(self: &Arc<Self>, limit: usize) -> std::io::Result<Option<Peeked>> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let spool = me.spool.lock().expect("spool lock");
            if spool.is_empty() {
                if me.spooling.swap(false, Ordering::AcqRel) {
                    info!("spool drained; sending straight to kafka again");
                }
                return Ok(None);
            }
            spool.peek(limit, REPLAY_BATCH_BYTES).map(Some)
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?
    }

    async fn commit(self: &Arc<Self>, to: super::spool::Position, records: u64) {
        let me = self.clone();
        let done = tokio::task::spawn_blocking(move || {
            let mut spool = me.spool.lock().expect("spool lock");
            let r = spool.commit(to, records);
            metrics::spool_state(
                spool.pending_records(),
                spool.pending_bytes(),
                spool.disk_bytes(),
                spool.oldest_record_time(),
            );
            r
        })
        .await;
        if let Err(error) = done
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r)
        {
            // The records are in Kafka; at worst they are sent again after a restart.
            metrics::spool_error("commit");
            warn!(%error, "failed to move the spool cursor past delivered records");
        }
    }

    /// Replays the spool into Kafka until `stop` is set; see the module docs.
    pub async fn replay(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut backoff = MIN_BACKOFF;
        let mut probing = false;
        loop {
            if *stop.borrow() {
                return;
            }
            let limit = if probing {
                1
            } else {
                self.replay_batch_records
            };
            let batch = match self.next_batch(limit).await {
                Ok(Some(b)) => b,
                Ok(None) => {
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        r = stop.changed() => if r.is_err() { return },
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    continue;
                }
                Err(error) => {
                    metrics::spool_error("read");
                    error!(%error, "failed to read the spool; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(MAX_BACKOFF) => {}
                        r = stop.changed() => if r.is_err() { return },
                    }
                    continue;
                }
            };
            let outcomes = self.produce_all(batch.records.iter(), "replay").await;
            let prefix = outcomes.iter().take_while(|o| o.is_ok()).count();
            let delivered = outcomes.iter().filter(|o| o.is_ok()).count();
            metrics::records_produced("replay", delivered);
            if prefix > 0 {
                self.commit(batch.ends[prefix - 1], prefix as u64).await;
            }
            if prefix == batch.records.len() {
                if probing {
                    info!("kafka acknowledged a spooled record again; replaying the spool");
                }
                probing = false;
                backoff = MIN_BACKOFF;
                continue;
            }
            if delivered > prefix {
                warn!(
                    records = delivered - prefix,
                    "records delivered after a failed one will be sent again (duplicates in the topic; the store is idempotent)"
                );
            }
            if !probing {
                warn!(
                    reason = outcomes[prefix].err().unwrap_or("other"),
                    "kafka is not acknowledging spooled records; retrying one at a time with backoff"
                );
            }
            probing = true;
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                r = stop.changed() => if r.is_err() { return },
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Waits for records still in the producer's queue (bounded by `timeout`).
    pub fn flush(&self, timeout: Duration) {
        if let Err(error) = self.producer.flush(Timeout::After(timeout)) {
            warn!(%error, "kafka producer did not flush before shutdown");
        }
    }

    /// Records and bytes waiting in the spool.
    pub fn spool_pending(&self) -> (u64, u64) {
        let spool = self.spool.lock().expect("spool lock");
        (spool.pending_records(), spool.pending_bytes())
    }
}
