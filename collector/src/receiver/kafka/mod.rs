//! Kafka receiver: consumes span records from Kafka topics as a member of a consumer group
//! and commits a record's offset only once its spans are durable (at-least-once; the store
//! is idempotent, so a record read twice stores its spans once).
//!
//! ```text
//!  Kafka ─▶ consumer thread (consume.rs: BaseConsumer::poll; rebalance, stats and commit
//!           │ callbacks; pauses the assignment while writes fail or it is at its limit)
//!           │ ≤ max_in_flight_records records in flight; offsets tracked per partition
//!           ▼ one tokio task per record (record.rs)
//!  tenant from the `clew-tenant` header (none: `default`)  └─ invalid: poison "bad_tenant"
//!  decode by the topic's format                                      (blocking pool if large)
//!    avro:       clew_proto::avro::decode_batch (validates while decoding, same limits)
//!    otlp_proto: prost ExportTraceServiceRequest
//!    otlp_json:  decode.rs OTLP/JSON
//!    zipkin_json: zipkin.rs Zipkin v2 JSON → OTLP
//!           │                          └─ undecodable: poison ─▶ counted, logged ─▶
//!           │                             dead-letter topic (wait for delivery) ─┐
//!           ▼                                                                    │
//!  ingest::Front::ingest: the OTLP receivers' front half (validate + convert,   │
//!    count, enrich) ─▶ InFlightSpans (≤ max_in_flight_spans) ─▶ Ingest::submit   │
//!    ─▶ store + index durable                                                    │
//!           │  fails: pause consumption, back off (100 ms → 5 s), the same record │
//!           │  again, until it is written; nothing is skipped                     │
//!           ▼                                                                    ▼
//!  finished ─▶ consumer thread: commit only a contiguous prefix of done records per
//!              partition (offsets.rs) ─▶ store_offsets ─▶ commit every commit_interval_ms,
//!              and synchronously on revoke and on shutdown
//! ```
//!
//! Permanent store errors are retried like transient ones (with the capped back-off, logged
//! and counted in `clew_kafka_write_retries_total{reason="store_failed"}`): the record stays
//! in Kafka and its partition waits, rather than its spans being lost. Fix the store, and
//! consumption resumes on its own.
//!
//! Decisions: `docs/adr/0007-kafka-offsets.md`.

//!
//! Everything but [`config`] needs librdkafka and is built with the cargo feature `kafka`
//! (on by default); without it a `[collector.kafka]` section is a configuration error.

pub mod config;
#[cfg(feature = "kafka")]
mod consume;

/// Kafka record header naming the tenant of a record's spans (`clew agent` writes it for
/// every tenant but `default`; a record without it is tenant `default`). The collector
/// checks it with `clew_proto::Tenant::parse`: a record whose header fails is poison
/// (`reason="bad_tenant"`), never stored as `default`. `docs/adr/0011-tenants.md`.
pub const TENANT_HEADER: &str = "clew-tenant";
#[cfg(feature = "kafka")]
mod offsets;
#[cfg(feature = "kafka")]
mod receiver;
#[cfg(feature = "kafka")]
mod record;

pub use config::{KafkaConfig, KafkaFormat, OffsetReset, TopicConfig};
#[cfg(feature = "kafka")]
pub(crate) use receiver::start;
#[cfg(feature = "kafka")]
pub use receiver::KafkaReceiver;
