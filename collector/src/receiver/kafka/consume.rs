//! The consumer thread: the only place that polls librdkafka, and so the place where
//! rebalance, statistics and commit callbacks run ([`Context`]).
//!
//! It fetches records, hands each to a tokio task ([`record::process`]) while fewer than
//! `max_in_flight_records` are in flight, collects finished records, and stores the
//! committable offset of each partition ([`Offsets`]) for librdkafka's periodic commit.
//! It keeps polling (so it stays in the group) while it pauses the assignment: when a
//! record fails to be written (the store is down) or when it has been at its in-flight
//! limit for a while. It runs on its own OS thread so that waiting in a rebalance callback
//! never blocks the async reactor.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use tokio::runtime::Handle;
use tracing::{debug, error, info, warn};

use super::offsets::{Offsets, Tp};
use super::record::{self, Finished, Worker};
use crate::metrics;

/// Longest a single poll blocks; also the cadence of pause/resume decisions.
const POLL: Duration = Duration::from_millis(100);

/// At the in-flight limit for this long, the consumer pauses its assignment so that it
/// can keep polling (and stay in the group) without fetching more.
const CAPACITY_PAUSE_AFTER: Duration = Duration::from_secs(1);

/// What the loop and the callbacks share. Only the consumer thread locks it, never across
/// a poll (callbacks run inside polls).
pub(super) struct State {
    offsets: Offsets,
    /// Fetched, not yet dispatched (the in-flight limit was reached, or fetched while paused).
    held: VecDeque<OwnedMessage>,
    finished: Receiver<Finished>,
}

/// librdkafka callbacks of the receiver's consumer.
pub(super) struct Context {
    state: Mutex<State>,
    drain_timeout: Duration,
    /// Set after an assignment, so that a paused consumer pauses its new partitions too.
    assignment_changed: AtomicBool,
    /// Shutting down: a revoke does not wait for records (the loop already drained them).
    closing: AtomicBool,
}

impl Context {
    pub fn new(finished: Receiver<Finished>, drain_timeout: Duration) -> Self {
        Context {
            state: Mutex::new(State {
                offsets: Offsets::default(),
                held: VecDeque::new(),
                finished,
            }),
            drain_timeout,
            assignment_changed: AtomicBool::new(false),
            closing: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (plain bookkeeping).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    /// Applies finished records (waiting up to `wait` for the first one) and stores the
    /// committable offsets that moved.
    fn collect_finished(&mut self, consumer: &BaseConsumer<Context>, wait: Option<Duration>) {
        // the newest committable offset of each partition that moved
        let mut moved: HashMap<Tp, i64> = HashMap::new();
        let mut next = match wait {
            Some(w) => self.finished.recv_timeout(w).ok(),
            None => self.finished.try_recv().ok(),
        };
        while let Some(f) = next {
            if let Some(offset) =
                self.offsets
                    .finish(&f.topic, f.partition, f.generation, f.offset, f.done)
            {
                moved.insert((f.topic, f.partition), offset);
            }
            next = self.finished.try_recv().ok();
        }
        if moved.is_empty() {
            return;
        }
        // One element per partition: librdkafka would store a later duplicate element
        // (even one without an offset) over an earlier one.
        let mut tpl = TopicPartitionList::with_capacity(moved.len());
        for ((topic, partition), offset) in &moved {
            if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
                warn!(error = %e, topic, partition, "cannot record a kafka offset to store");
            }
        }
        match consumer.store_offsets(&tpl) {
            Ok(()) => debug!(offsets = ?moved, "stored kafka offsets for the next commit"),
            // Partitions revoked meanwhile cannot be stored; their next owner re-reads.
            Err(e) => debug!(error = %e, "storing kafka offsets failed"),
        }
    }
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                error!(target: "librdkafka", facility = fac, "{log_message}")
            }
            RDKafkaLogLevel::Warning => {
                warn!(target: "librdkafka", facility = fac, "{log_message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                info!(target: "librdkafka", facility = fac, "{log_message}")
            }
            RDKafkaLogLevel::Debug => debug!(target: "librdkafka", facility = fac, "{log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // While brokers are down librdkafka reports this several times a second: warn at
        // most every WARN_EVERY_SECS, the rest goes to debug.
        if warn_now() {
            warn!(%error, reason, "kafka consumer error (librdkafka retries on its own; repeats are logged at debug for {WARN_EVERY_SECS} s)");
        } else {
            debug!(%error, reason, "kafka consumer error (librdkafka retries on its own)");
        }
    }

    /// Refreshes the lag gauge of every partition this consumer holds.
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition < 0 || !p.desired {
                    continue;
                }
                // read_committed (librdkafka's default) reads up to the last stable offset
                let end = if p.ls_offset >= 0 {
                    p.ls_offset
                } else {
                    p.hi_offset
                };
                if end < 0 {
                    continue;
                }
                let from = if p.committed_offset >= 0 {
                    p.committed_offset
                } else {
                    p.lo_offset.max(0)
                };
                metrics::kafka_lag(topic, *partition, (end - from).max(0));
            }
        }
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                metrics::kafka_rebalance("revoke");
                let parts: Vec<Tp> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                self.revoke(consumer, &parts);
            }
            Rebalance::Assign(tpl) => {
                metrics::kafka_rebalance("assign");
                info!(partitions = tpl.count(), "kafka partitions assigned");
            }
            Rebalance::Error(e) => {
                metrics::kafka_rebalance("error");
                warn!(error = %e, "kafka rebalance failed");
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if matches!(rebalance, Rebalance::Assign(_)) {
            self.assignment_changed.store(true, Ordering::Release);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => {
                debug!(?offsets, "kafka offsets committed");
                metrics::kafka_commit(true);
                for e in offsets.elements() {
                    if let Offset::Offset(o) = e.offset() {
                        metrics::kafka_committed_offset(e.topic(), e.partition(), o);
                    }
                }
            }
            // Nothing new to commit.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => {
                metrics::kafka_commit(false);
                warn!(%error, "kafka offset commit failed (retried with the next commit)");
            }
        }
    }
}

impl Context {
    /// Partitions are being taken away: let their records in flight finish (bounded by
    /// `drain_timeout_ms`), commit what is durable, and forget them. Records not done by
    /// then are not committed; the next owner reads them again (the store is idempotent).
    fn revoke(&self, consumer: &BaseConsumer<Self>, parts: &[Tp]) {
        let mut st = self.lock();
        st.held.retain(|m| {
            !parts
                .iter()
                .any(|(t, p)| t == m.topic() && *p == m.partition())
        });
        let pending =
            |st: &State| -> usize { parts.iter().map(|(t, p)| st.offsets.pending(t, *p)).sum() };
        if !self.closing.load(Ordering::Acquire) {
            let deadline = Instant::now() + self.drain_timeout;
            st.collect_finished(consumer, None);
            while pending(&st) > 0 {
                if Instant::now() >= deadline {
                    warn!(
                        records = pending(&st),
                        "records of revoked kafka partitions still in flight after drain_timeout_ms; not committing them, their next owner reads them again"
                    );
                    break;
                }
                st.collect_finished(consumer, Some(POLL));
            }
        }
        st.collect_finished(consumer, None);
        commit_now(consumer, "revoke");
        for (t, p) in parts {
            st.offsets.revoke(t, *p);
            metrics::kafka_lag(t, *p, 0);
        }
        info!(partitions = parts.len(), "kafka partitions revoked");
    }
}

/// Synchronous commit of the stored offsets.
fn commit_now(consumer: &BaseConsumer<Context>, when: &'static str) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => {}
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(error) => warn!(%error, when, "kafka offset commit failed"),
    }
}

/// Pauses or resumes everything assigned.
fn set_paused(consumer: &BaseConsumer<Context>, paused: bool, why: &str) {
    let assignment = match consumer.assignment() {
        Ok(a) => a,
        Err(error) => {
            warn!(%error, "cannot read the kafka assignment to pause or resume it");
            return;
        }
    };
    let result = if paused {
        consumer.pause(&assignment)
    } else {
        consumer.resume(&assignment)
    };
    match result {
        Ok(()) if paused => info!(
            partitions = assignment.count(),
            why, "kafka consumption paused"
        ),
        Ok(()) => info!(partitions = assignment.count(), "kafka consumption resumed"),
        Err(error) => warn!(%error, paused, "pausing or resuming kafka partitions failed"),
    }
    metrics::kafka_paused(paused);
}

/// Runs until `stop`, then drains (bounded), commits and closes the consumer (leaving the
/// group).
pub(super) fn run(
    consumer: BaseConsumer<Context>,
    worker: Arc<Worker>,
    runtime: Handle,
    stop: Arc<AtomicBool>,
    max_in_flight_records: usize,
) {
    let ctx = consumer.context().clone();
    let failing: Arc<AtomicUsize> = worker.failing.clone();
    let mut paused = false;
    let mut full_since: Option<Instant> = None;
    while !stop.load(Ordering::Acquire) {
        let mut st = ctx.lock();
        st.collect_finished(&consumer, None);
        while st.offsets.in_flight() < max_in_flight_records {
            let Some(msg) = st.held.pop_front() else {
                break;
            };
            let generation = st
                .offsets
                .dispatch(msg.topic(), msg.partition(), msg.offset());
            runtime.spawn(record::process(worker.clone(), msg, generation));
        }
        metrics::kafka_in_flight(st.offsets.in_flight());
        let full = !st.held.is_empty();
        full_since = if full {
            full_since.or(Some(Instant::now()))
        } else {
            None
        };
        let store_failing = failing.load(Ordering::Acquire) > 0;
        let full_for_long = full_since.is_some_and(|t| t.elapsed() >= CAPACITY_PAUSE_AFTER);
        let want_paused = store_failing || full_for_long;
        if full && !want_paused {
            // Wait for room rather than fetch more.
            st.collect_finished(&consumer, Some(POLL));
            continue;
        }
        drop(st);
        let new_partitions = ctx.assignment_changed.swap(false, Ordering::AcqRel);
        if want_paused != paused || (paused && new_partitions) {
            let why = if store_failing {
                "writing spans fails; retrying the failed records"
            } else {
                "at max_in_flight_records"
            };
            set_paused(&consumer, want_paused, why);
            paused = want_paused;
        }
        match consumer.poll(POLL) {
            Some(Ok(m)) => {
                metrics::kafka_consumed(m.topic());
                let owned = m.detach();
                drop(m);
                ctx.lock().held.push_back(owned);
            }
            // The same condition reaches the context's `error` callback, which warns.
            Some(Err(error)) => debug!(%error, "kafka consumer error"),
            None => {}
        }
    }

    // Shutdown: nothing new is dispatched; records in flight finish (bounded); what is
    // done is committed; then the consumer leaves the group.
    ctx.closing.store(true, Ordering::Release);
    let deadline = Instant::now() + ctx.drain_timeout;
    {
        let mut st = ctx.lock();
        st.held.clear();
        loop {
            st.collect_finished(&consumer, None);
            if st.offsets.in_flight() == 0 {
                break;
            }
            if Instant::now() >= deadline {
                warn!(
                    records = st.offsets.in_flight(),
                    "kafka records still in flight at shutdown are not committed; they are read again after a restart"
                );
                break;
            }
            st.collect_finished(&consumer, Some(POLL));
        }
        metrics::kafka_in_flight(st.offsets.in_flight());
    }
    commit_now(&consumer, "shutdown");
    // Dropping closes the consumer: it leaves the group (the revoke callback commits again).
    drop(consumer);
    info!("kafka receiver stopped");
}

/// Seconds between two warnings about consumer errors.
const WARN_EVERY_SECS: u64 = 10;

/// True at most once every [`WARN_EVERY_SECS`] (process-wide).
fn warn_now() -> bool {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST.load(Ordering::Relaxed);
    now >= last + WARN_EVERY_SECS
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}
