//! `[collector.kafka]`: where the Kafka receiver consumes from and how.
//!
//! ```toml
//! [collector.kafka]
//! brokers = ["kafka-1:9092", "kafka-2:9092"]
//! group_id = "clew-collector"                 # default
//! dead_letter_topic = "clew-spans-dead"       # optional: poison records go here
//!
//! [[collector.kafka.topics]]
//! name = "clew-spans"                         # written by `clew agent`
//! format = "avro"
//!
//! [[collector.kafka.topics]]
//! pattern = "^otel-traces-.*"                 # librdkafka regex subscription
//! format = "otlp_proto"                       # the OpenTelemetry Collector's Kafka exporter
//! ```

use std::collections::BTreeMap;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

fn bad(key: &'static str, message: impl Into<String>) -> Result<()> {
    Err(Error::Config {
        key,
        message: message.into(),
    })
}

/// How the values of one topic are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaFormat {
    /// clew's Avro span batch (`proto/schemas/span_batch_v1.avsc`, single-object encoding),
    /// as written by `clew agent`.
    Avro,
    /// One protobuf `ExportTraceServiceRequest` per record (the OpenTelemetry Collector's
    /// Kafka exporter, `encoding: otlp_proto`).
    OtlpProto,
    /// One OTLP/JSON `ExportTraceServiceRequest` per record (`encoding: otlp_json`).
    OtlpJson,
    /// One Zipkin v2 JSON array of spans per record (Zipkin's Kafka reporter,
    /// `zipkin-reporter`'s `KafkaSender` with the JSON v2 encoding), translated as the Zipkin
    /// receiver translates it ([`crate::zipkin`]).
    ZipkinJson,
}

impl KafkaFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            KafkaFormat::Avro => "avro",
            KafkaFormat::OtlpProto => "otlp_proto",
            KafkaFormat::OtlpJson => "otlp_json",
            KafkaFormat::ZipkinJson => "zipkin_json",
        }
    }
}

/// One subscription: a topic by `name`, or every topic matching `pattern`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A regular expression starting with `^` (librdkafka's regex subscription). The
    /// receiver matches topic names against it again to pick the format, so use syntax that
    /// librdkafka and Rust's `regex` read alike (`^prefix-.*`, classes, alternations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    pub format: KafkaFormat,
}

/// Where a consumer group with no committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OffsetReset {
    /// From the oldest record still in the topic: nothing already in Kafka is skipped.
    #[default]
    Earliest,
    /// Only records produced after the group first joined.
    Latest,
}

/// `[collector.kafka]` section. Absent: no Kafka receiver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port` each.
    pub brokers: Vec<String>,
    /// Consumer group; collectors sharing it share the partitions.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    pub topics: Vec<TopicConfig>,
    /// Poison records (undecodable values) are produced here with their original key,
    /// value and headers plus `clew.dlq.*` headers naming the source and the error. Unset:
    /// they are counted, logged and skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_topic: Option<String>,
    /// Most records being decoded, written or dead-lettered at once.
    #[serde(default = "default_max_in_flight_records")]
    pub max_in_flight_records: usize,
    /// Most spans of Kafka records handed to the ingest pipeline and not yet durable
    /// (keep it below `collector.queue_max_spans` to leave room for OTLP clients).
    #[serde(default = "default_max_in_flight_spans")]
    pub max_in_flight_spans: usize,
    #[serde(default)]
    pub auto_offset_reset: OffsetReset,
    /// librdkafka `session.timeout.ms`: a collector silent this long leaves the group.
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u64,
    /// librdkafka `max.poll.interval.ms` (the receiver polls every 100 ms, also while the
    /// store is down, so this only matters for a stuck process).
    #[serde(default = "default_max_poll_interval_ms")]
    pub max_poll_interval_ms: u64,
    /// How often offsets of durable records are committed.
    #[serde(default = "default_commit_interval_ms")]
    pub commit_interval_ms: u64,
    /// How often librdkafka reports statistics (the consumer lag gauge is refreshed then).
    #[serde(default = "default_statistics_interval_ms")]
    pub statistics_interval_ms: u64,
    /// On a rebalance or shutdown, how long to wait for records in flight on the
    /// partitions being given up before committing what is durable and letting go.
    #[serde(default = "default_drain_timeout_ms")]
    pub drain_timeout_ms: u64,
    /// First delay before a record whose write failed is written again; doubles each time…
    #[serde(default = "default_retry_backoff_min_ms")]
    pub retry_backoff_min_ms: u64,
    /// …up to this.
    #[serde(default = "default_retry_backoff_max_ms")]
    pub retry_backoff_max_ms: u64,
    /// Extra librdkafka properties for the consumer and the dead-letter producer
    /// (`security.protocol`, `sasl.*`, `ssl.*`, `fetch.max.bytes`, …). Properties the receiver
    /// sets itself for its delivery guarantees are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

fn default_group_id() -> String {
    "clew-collector".to_string()
}
fn default_max_in_flight_records() -> usize {
    256
}
fn default_max_in_flight_spans() -> usize {
    100_000
}
fn default_session_timeout_ms() -> u64 {
    45_000
}
fn default_max_poll_interval_ms() -> u64 {
    300_000
}
fn default_commit_interval_ms() -> u64 {
    1_000
}
fn default_statistics_interval_ms() -> u64 {
    5_000
}
fn default_drain_timeout_ms() -> u64 {
    30_000
}
fn default_retry_backoff_min_ms() -> u64 {
    100
}
fn default_retry_backoff_max_ms() -> u64 {
    5_000
}

/// librdkafka properties that carry the receiver's guarantees (manual offset store,
/// commits only of durable records) or that have their own key here.
const RESERVED_PROPERTIES: [&str; 12] = [
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "auto.commit.interval.ms",
    "session.timeout.ms",
    "max.poll.interval.ms",
    "statistics.interval.ms",
    "enable.idempotence",
    "acks",
];

impl KafkaConfig {
    /// A config with defaults for everything but brokers and topics.
    pub fn new(brokers: Vec<String>, topics: Vec<TopicConfig>) -> Self {
        KafkaConfig {
            brokers,
            group_id: default_group_id(),
            topics,
            dead_letter_topic: None,
            max_in_flight_records: default_max_in_flight_records(),
            max_in_flight_spans: default_max_in_flight_spans(),
            auto_offset_reset: OffsetReset::default(),
            session_timeout_ms: default_session_timeout_ms(),
            max_poll_interval_ms: default_max_poll_interval_ms(),
            commit_interval_ms: default_commit_interval_ms(),
            statistics_interval_ms: default_statistics_interval_ms(),
            drain_timeout_ms: default_drain_timeout_ms(),
            retry_backoff_min_ms: default_retry_backoff_min_ms(),
            retry_backoff_max_ms: default_retry_backoff_max_ms(),
            properties: BTreeMap::new(),
        }
    }

    /// Checks the values without I/O. Errors name the key (`collector.kafka.…`).
    pub fn validate(&self) -> Result<()> {
        if self.brokers.is_empty() || self.brokers.iter().any(|b| b.trim().is_empty()) {
            return bad(
                "collector.kafka.brokers",
                "needs at least one host:port and no empty entries",
            );
        }
        if self.group_id.trim().is_empty() {
            return bad("collector.kafka.group_id", "must not be empty");
        }
        self.validate_topics()?;
        self.validate_in_flight()?;
        self.validate_timings()?;
        self.validate_properties()
    }

    /// The subscriptions, and a dead-letter topic outside them.
    fn validate_topics(&self) -> Result<()> {
        if self.topics.is_empty() {
            return bad(
                "collector.kafka.topics",
                "needs at least one { name = …, format = … } or { pattern = \"^…\", format = … }",
            );
        }
        let formats = TopicFormats::new(&self.topics)?;
        let Some(dlq) = &self.dead_letter_topic else {
            return Ok(());
        };
        if dlq.trim().is_empty() {
            return bad("collector.kafka.dead_letter_topic", "must not be empty");
        }
        if formats.format_of(dlq).is_some() {
            return bad(
                "collector.kafka.dead_letter_topic",
                format!("{dlq:?} is also consumed (it matches collector.kafka.topics): poison records would come back forever"),
            );
        }
        Ok(())
    }

    fn validate_in_flight(&self) -> Result<()> {
        if self.max_in_flight_records == 0 || self.max_in_flight_records > 100_000 {
            return bad(
                "collector.kafka.max_in_flight_records",
                format!("{} is outside 1..=100000", self.max_in_flight_records),
            );
        }
        if self.max_in_flight_spans == 0 || self.max_in_flight_spans > u32::MAX as usize {
            return bad(
                "collector.kafka.max_in_flight_spans",
                format!("{} is outside 1..=4294967295", self.max_in_flight_spans),
            );
        }
        Ok(())
    }

    /// Each interval in its range, then how they must relate.
    fn validate_timings(&self) -> Result<()> {
        for (key, v, min, max) in [
            (
                "collector.kafka.session_timeout_ms",
                self.session_timeout_ms,
                1_000,
                3_600_000,
            ),
            (
                "collector.kafka.max_poll_interval_ms",
                self.max_poll_interval_ms,
                1_000,
                86_400_000,
            ),
            (
                "collector.kafka.commit_interval_ms",
                self.commit_interval_ms,
                10,
                600_000,
            ),
            (
                "collector.kafka.statistics_interval_ms",
                self.statistics_interval_ms,
                100,
                600_000,
            ),
            (
                "collector.kafka.drain_timeout_ms",
                self.drain_timeout_ms,
                0,
                600_000,
            ),
            (
                "collector.kafka.retry_backoff_min_ms",
                self.retry_backoff_min_ms,
                1,
                600_000,
            ),
            (
                "collector.kafka.retry_backoff_max_ms",
                self.retry_backoff_max_ms,
                1,
                600_000,
            ),
        ] {
            if v < min || v > max {
                return bad(key, format!("{v} is outside {min}..={max}"));
            }
        }
        if self.retry_backoff_max_ms < self.retry_backoff_min_ms {
            return bad(
                "collector.kafka.retry_backoff_max_ms",
                format!(
                    "{} is below retry_backoff_min_ms ({})",
                    self.retry_backoff_max_ms, self.retry_backoff_min_ms
                ),
            );
        }
        if self.drain_timeout_ms >= self.max_poll_interval_ms {
            return bad(
                "collector.kafka.drain_timeout_ms",
                format!(
                    "{} must be below max_poll_interval_ms ({}): the group would evict the collector while it drains",
                    self.drain_timeout_ms, self.max_poll_interval_ms
                ),
            );
        }
        Ok(())
    }

    fn validate_properties(&self) -> Result<()> {
        for key in self.properties.keys() {
            if RESERVED_PROPERTIES.contains(&key.as_str()) {
                return bad(
                    "collector.kafka.properties",
                    format!("{key:?} is set by the receiver itself (or by its own key in [collector.kafka])"),
                );
            }
        }
        Ok(())
    }
}

/// Which format a consumed topic has: exact names first, then patterns in config order.
#[derive(Debug, Clone)]
pub struct TopicFormats {
    names: Vec<(String, KafkaFormat)>,
    patterns: Vec<(Regex, KafkaFormat)>,
}

impl TopicFormats {
    pub fn new(topics: &[TopicConfig]) -> Result<Self> {
        let mut names = Vec::new();
        let mut patterns = Vec::new();
        for t in topics {
            match (&t.name, &t.pattern) {
                (Some(name), None) if !name.trim().is_empty() && !name.starts_with('^') => {
                    if names.iter().any(|(n, _)| n == name) {
                        return Err(Error::Config {
                            key: "collector.kafka.topics",
                            message: format!("topic {name:?} is listed twice"),
                        });
                    }
                    names.push((name.clone(), t.format));
                }
                (Some(name), None) => {
                    return Err(Error::Config {
                        key: "collector.kafka.topics",
                        message: format!(
                        "name {name:?} is empty or starts with '^' (use pattern = … for a regex)"
                    ),
                    })
                }
                (None, Some(pattern)) => {
                    if !pattern.starts_with('^') {
                        return Err(Error::Config {
                            key: "collector.kafka.topics",
                            message: format!(
                                "pattern {pattern:?} must start with '^' (librdkafka subscribes by regex only then)"
                            ),
                        });
                    }
                    let re = Regex::new(pattern).map_err(|e| Error::Config {
                        key: "collector.kafka.topics",
                        message: format!("pattern {pattern:?} is not a valid regex: {e}"),
                    })?;
                    patterns.push((re, t.format));
                }
                _ => {
                    return Err(Error::Config {
                        key: "collector.kafka.topics",
                        message: "each entry needs exactly one of name or pattern".into(),
                    })
                }
            }
        }
        Ok(TopicFormats { names, patterns })
    }

    /// The subscription list for librdkafka (names and `^` patterns).
    pub fn subscription(&self) -> Vec<String> {
        self.names
            .iter()
            .map(|(n, _)| n.clone())
            .chain(self.patterns.iter().map(|(p, _)| p.as_str().to_string()))
            .collect()
    }

    pub fn format_of(&self, topic: &str) -> Option<KafkaFormat> {
        self.names
            .iter()
            .find(|(n, _)| n == topic)
            .map(|(_, f)| *f)
            .or_else(|| {
                self.patterns
                    .iter()
                    .find(|(p, _)| p.is_match(topic))
                    .map(|(_, f)| *f)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, format: KafkaFormat) -> TopicConfig {
        TopicConfig {
            name: Some(name.into()),
            pattern: None,
            format,
        }
    }

    fn pattern(p: &str, format: KafkaFormat) -> TopicConfig {
        TopicConfig {
            name: None,
            pattern: Some(p.into()),
            format,
        }
    }

    #[test]
    fn parses_with_defaults_and_picks_formats() {
        let c: KafkaConfig = toml::from_str(
            r#"
            brokers = ["127.0.0.1:9092"]
            dead_letter_topic = "dead"
            [[topics]]
            name = "clew-spans"
            format = "avro"
            [[topics]]
            pattern = "^otel-.*"
            format = "otlp_proto"
            [[topics]]
            pattern = "^otel-json-.*"
            format = "otlp_json"
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.group_id, "clew-collector");
        assert_eq!(c.auto_offset_reset, OffsetReset::Earliest);
        let mut expect = KafkaConfig::new(c.brokers.clone(), c.topics.clone());
        expect.dead_letter_topic = Some("dead".into());
        assert_eq!(c, expect);
        let f = TopicFormats::new(&c.topics).unwrap();
        assert_eq!(
            f.subscription(),
            vec!["clew-spans", "^otel-.*", "^otel-json-.*"]
        );
        assert_eq!(f.format_of("clew-spans"), Some(KafkaFormat::Avro));
        assert_eq!(f.format_of("otel-a"), Some(KafkaFormat::OtlpProto));
        // first matching pattern wins, in config order
        assert_eq!(f.format_of("otel-json-a"), Some(KafkaFormat::OtlpProto));
        assert_eq!(f.format_of("other"), None);
    }

    #[test]
    fn unknown_keys_and_formats_are_refused() {
        let e = toml::from_str::<KafkaConfig>("brokers=[\"a:1\"]\ntopics=[]\ngroup=\"x\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("group"), "{e}");
        let e = toml::from_str::<KafkaConfig>(
            "brokers=[\"a:1\"]\n[[topics]]\nname=\"t\"\nformat=\"zipkin\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("zipkin"), "{e}");
    }

    #[test]
    fn validate_names_the_key() {
        let ok = KafkaConfig::new(vec!["a:1".into()], vec![topic("t", KafkaFormat::Avro)]);
        ok.validate().unwrap();
        let check = |c: KafkaConfig, key: &str| {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(key), "{e} should name {key}");
        };
        check(
            KafkaConfig {
                brokers: vec![],
                ..ok.clone()
            },
            "collector.kafka.brokers",
        );
        check(
            KafkaConfig {
                topics: vec![],
                ..ok.clone()
            },
            "collector.kafka.topics",
        );
        check(
            KafkaConfig {
                topics: vec![pattern("otel-.*", KafkaFormat::OtlpProto)],
                ..ok.clone()
            },
            "collector.kafka.topics",
        );
        check(
            KafkaConfig {
                topics: vec![pattern("^otel-(", KafkaFormat::OtlpProto)],
                ..ok.clone()
            },
            "collector.kafka.topics",
        );
        check(
            KafkaConfig {
                topics: vec![TopicConfig {
                    name: Some("a".into()),
                    pattern: Some("^a".into()),
                    format: KafkaFormat::Avro,
                }],
                ..ok.clone()
            },
            "collector.kafka.topics",
        );
        check(
            KafkaConfig {
                topics: vec![pattern("^t.*", KafkaFormat::Avro)],
                dead_letter_topic: Some("t-dead".into()),
                ..ok.clone()
            },
            "collector.kafka.dead_letter_topic",
        );
        check(
            KafkaConfig {
                max_in_flight_records: 0,
                ..ok.clone()
            },
            "collector.kafka.max_in_flight_records",
        );
        check(
            KafkaConfig {
                retry_backoff_min_ms: 10,
                retry_backoff_max_ms: 5,
                ..ok.clone()
            },
            "collector.kafka.retry_backoff_max_ms",
        );
        let mut props = ok.clone();
        props
            .properties
            .insert("enable.auto.commit".into(), "true".into());
        check(props, "collector.kafka.properties");
    }
}
