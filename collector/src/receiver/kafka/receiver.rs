//! A running Kafka receiver: [`start`] creates the consumer (and the dead-letter producer)
//! and the consumer thread; [`KafkaReceiver::shutdown`] drains and leaves the group.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureProducer;
use tokio::sync::{oneshot, watch, Semaphore};
use tracing::{info, warn};

use super::config::{KafkaConfig, OffsetReset, TopicFormats};
use super::consume::{self, Context};
use super::record::{self, DeadLetter, InFlightSpans, Worker};
use crate::error::{Error, Result};
use crate::metrics;
use crate::receiver::Shared;

/// A running Kafka receiver.
pub struct KafkaReceiver {
    stop: Arc<AtomicBool>,
    stop_tasks: watch::Sender<bool>,
    stopped: oneshot::Receiver<()>,
    thread: std::thread::JoinHandle<()>,
    drain_timeout: Duration,
}

/// Creates the consumer (and the dead-letter producer), subscribes and starts consuming.
/// Brokers need not be reachable yet: librdkafka keeps connecting in the background.
pub(crate) fn start(config: &KafkaConfig, shared: Arc<Shared>) -> Result<KafkaReceiver> {
    config.validate()?;
    let formats = TopicFormats::new(&config.topics)?;
    let subscription = formats.subscription();
    let named: Vec<String> = config
        .topics
        .iter()
        .filter_map(|t| t.name.clone())
        .collect();
    metrics::describe_kafka(&named, &record::POISON_REASONS);

    let drain_timeout = Duration::from_millis(config.drain_timeout_ms);
    let (finished_tx, finished_rx) = std::sync::mpsc::channel();
    let consumer: BaseConsumer<Context> = consumer_config(config)
        .create_with_context(Context::new(finished_rx, drain_timeout))
        .map_err(|e| Error::Kafka {
            what: "create the kafka consumer",
            message: e.to_string(),
        })?;
    let topics: Vec<&str> = subscription.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(|e| Error::Kafka {
        what: "subscribe to the kafka topics",
        message: e.to_string(),
    })?;
    let dead_letter = match &config.dead_letter_topic {
        Some(topic) => Some(DeadLetter {
            producer: producer_config(config)
                .create::<FutureProducer>()
                .map_err(|e| Error::Kafka {
                    what: "create the kafka dead-letter producer",
                    message: e.to_string(),
                })?,
            topic: topic.clone(),
        }),
        None => None,
    };

    let (stop_tasks, stop_rx) = watch::channel(false);
    let in_flight = InFlightSpans {
        sink: shared.front.sink.clone(),
        permits: Arc::new(Semaphore::new(config.max_in_flight_spans)),
        max_in_flight_spans: config.max_in_flight_spans,
    };
    let worker = Arc::new(Worker {
        front: Arc::new(shared.front.with_sink(Arc::new(in_flight))),
        max_request_bytes: shared.max_request_bytes,
        formats,
        decode_slots: Arc::new(Semaphore::new(
            std::thread::available_parallelism().map_or(2, |n| n.get()),
        )),
        dead_letter,
        backoff_min: Duration::from_millis(config.retry_backoff_min_ms),
        backoff_max: Duration::from_millis(config.retry_backoff_max_ms),
        failing: Arc::new(AtomicUsize::new(0)),
        stop: stop_rx,
        finished: finished_tx,
    });
    let stop = Arc::new(AtomicBool::new(false));
    let (stopped_tx, stopped) = oneshot::channel();
    let runtime = tokio::runtime::Handle::current();
    let max_records = config.max_in_flight_records;
    let thread_stop = stop.clone();
    let thread = std::thread::Builder::new()
        .name("clew-kafka".into())
        .spawn(move || {
            consume::run(consumer, worker, runtime, thread_stop, max_records);
            let _ = stopped_tx.send(());
        })
        .map_err(|source| Error::Listen {
            what: "start the kafka consumer thread",
            addr: config.brokers.join(","),
            source,
        })?;
    info!(
        brokers = %config.brokers.join(","),
        group_id = %config.group_id,
        topics = ?subscription,
        dead_letter_topic = ?config.dead_letter_topic,
        "kafka receiver consuming"
    );
    Ok(KafkaReceiver {
        stop,
        stop_tasks,
        stopped,
        thread,
        drain_timeout,
    })
}

impl KafkaReceiver {
    /// Stops fetching, lets records in flight finish (at most `drain_timeout_ms`; records
    /// still failing are abandoned at once, uncommitted), commits what is durable and
    /// leaves the group. Call it before the ingest pipeline is closed.
    pub async fn shutdown(self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.stop_tasks.send(true);
        // drain, then librdkafka's close (leave group, final commit)
        let limit = self.drain_timeout + Duration::from_secs(30);
        match tokio::time::timeout(limit, self.stopped).await {
            Ok(_) => {
                let thread = self.thread;
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            }
            Err(_) => warn!("kafka consumer did not close in time; leaving it behind"),
        }
    }
}

fn base_config(config: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", config.brokers.join(","));
    c.set("client.id", "clew-collector");
    for (k, v) in &config.properties {
        c.set(k, v);
    }
    c
}

fn consumer_config(config: &KafkaConfig) -> ClientConfig {
    let mut c = base_config(config);
    c.set("group.id", &config.group_id)
        // librdkafka commits what the receiver *stores*, and the receiver stores only the
        // offsets of records that are durable.
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set(
            "auto.commit.interval.ms",
            config.commit_interval_ms.to_string(),
        )
        .set(
            "auto.offset.reset",
            match config.auto_offset_reset {
                OffsetReset::Earliest => "earliest",
                OffsetReset::Latest => "latest",
            },
        )
        .set("session.timeout.ms", config.session_timeout_ms.to_string())
        .set(
            "max.poll.interval.ms",
            config.max_poll_interval_ms.to_string(),
        )
        .set(
            "statistics.interval.ms",
            config.statistics_interval_ms.to_string(),
        )
        .set("enable.partition.eof", "false");
    c
}

fn producer_config(config: &KafkaConfig) -> ClientConfig {
    let mut c = base_config(config);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        // fail a dead-letter produce after 30 s and retry it, rather than wait 5 min
        .set("message.timeout.ms", "30000");
    c
}
