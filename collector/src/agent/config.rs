//! The agent's configuration file (`clew agent --config agent.toml`). Every default works
//! for an agent next to applications on one host with a broker on `localhost:9092`:
//!
//! ```toml
//! otlp_grpc_addr = "127.0.0.1:4317"
//! otlp_http_addr = "127.0.0.1:4318"
//! metrics_addr = "127.0.0.1:9465"     # GET /metrics, /healthz
//!
//! [kafka]
//! brokers = "localhost:9092"
//! topic = "clew-spans"
//! linger_ms = 5
//! batch_max_bytes = 1048576
//! message_max_bytes = 1000000
//! delivery_timeout_ms = 5000
//! [kafka.properties]                  # any other librdkafka producer property
//! "client.id" = "clew-agent"
//! # TLS to the brokers: "security.protocol" = "SSL", "ssl.ca.location" = "/etc/clew/kafka-ca.pem"
//! # (client certificates: "ssl.certificate.location", "ssl.key.location")
//!
//! [spool]
//! dir = "./clew-agent-spool"
//! max_bytes = 1073741824
//!
//! [redaction]                        # on by default, as in clew serve
//! exempt_keys = ["order_id"]          # the business keys: no value detectors on them
//!
//! [auth]                             # optional: bearer tokens, see docs/auth.md
//! [[auth.tokens]]
//! token_sha256 = "…"                  # or token = "…"
//! tenant = "shop"
//! scopes = ["ingest"]
//!
//! [sampling]
//! default_rate = 1.0
//! services = { checkout = 0.1 }
//! file = "/etc/clew/sampling.toml"    # optional, re-read at run time
//! reload_interval_ms = 1000
//! ```
//!
//! Or, instead of the rates, the Jaeger sampling-strategies file `clew serve` gives the
//! SDKs (see `sampling::head`), optionally served to local SDKs as Jaeger's agent did:
//!
//! ```toml
//! sampling_http_addr = "127.0.0.1:5778"   # optional: GET /api/sampling?service=
//! [sampling]
//! strategies = "/etc/clew/strategies.json"
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clew_proto::from_otlp::Limits;
use serde::{Deserialize, Serialize};

use super::sampler::Rates;
use crate::config::LimitsConfig;
use crate::error::{Error, Result};
use crate::CollectorConfig;

/// Librdkafka properties the agent sets itself: its delivery guarantees depend on them.
pub const FIXED_PRODUCER_PROPERTIES: [&str; 6] = [
    "enable.idempotence",
    "acks",
    "compression.type",
    "bootstrap.servers",
    "message.timeout.ms",
    "delivery.timeout.ms",
];

/// The whole agent configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// OTLP/gRPC listen address (port 0: any free port).
    #[serde(default = "default_otlp_grpc_addr")]
    pub otlp_grpc_addr: String,
    /// OTLP/HTTP listen address.
    #[serde(default = "default_otlp_http_addr")]
    pub otlp_http_addr: String,
    /// Where `/metrics` (Prometheus) and `/healthz` are served.
    #[serde(default = "default_metrics_addr")]
    pub metrics_addr: String,
    /// Serve Jaeger remote sampling over HTTP here (`GET /api/sampling?service=`, from
    /// `sampling.strategies` or Jaeger's default strategy); absent: not served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling_http_addr: Option<String>,
    /// Largest accepted OTLP request, measured after decompression.
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    /// `Retry-After` / RetryInfo delay suggested to clients when the spool is full.
    #[serde(default = "default_retry_after_secs")]
    pub retry_after_secs: u64,
    /// Per-span limits, the same as the collector's (`[limits]`).
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub kafka: KafkaProducerConfig,
    #[serde(default)]
    pub spool: SpoolConfig,
    #[serde(default)]
    pub sampling: SamplingConfig,
    /// `[redaction]`: the same stage and rules as `clew serve`'s, applied before a span is
    /// written to Kafka or the spool (on by default). List the business keys the
    /// collector indexes in `exempt_keys`.
    #[serde(default)]
    pub redaction: crate::redaction::RedactionConfig,
    /// How this agent names itself in every record it produces (Kafka header
    /// `clew-agent`, next to `clew-agent-version`), so the collector's fleet inventory can
    /// tell which agent shipped which instance's spans; absent: the host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `[auth]`: bearer tokens the receivers, sampling and `/metrics` require (`ingest`
    /// for OTLP, `ingest` or `read` for sampling, `read` for `/metrics`); none: no check,
    /// and the agent refuses a non-loopback address unless `insecure_listen`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub auth: clew_auth::AuthConfig,
    /// Listen on non-loopback addresses without `[auth]` (`--insecure-listen`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_listen: bool,
    /// `[tls]`: the agent's receivers, sampling and metrics endpoint speak TLS with this
    /// certificate (the same section as `clew serve`'s); absent: plain text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::config::TlsConfig>,
}

impl AgentConfig {
    /// `name`, or the host name (`/proc/sys/kernel/hostname`, `$HOSTNAME`), or `clew-agent`.
    pub fn agent_name(&self) -> String {
        self.name
            .clone()
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
            })
            .or_else(|| std::env::var("HOSTNAME").ok())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "clew-agent".into())
    }
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// `[kafka]`: where and how spans are produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaProducerConfig {
    /// Bootstrap brokers, comma-separated `host:port`.
    #[serde(default = "default_brokers")]
    pub brokers: String,
    /// Topic the Avro span records go to (key: trace id).
    #[serde(default = "default_topic")]
    pub topic: String,
    /// How long librdkafka waits to fill a batch (`linger.ms`).
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
    /// Largest batch of records per partition request (`batch.size`).
    #[serde(default = "default_batch_max_bytes")]
    pub batch_max_bytes: u64,
    /// Largest record (`message.max.bytes`; keep it ≤ the topic's `max.message.bytes`).
    /// A trace's spans that do not fit in one record are split over several records with
    /// the same key.
    #[serde(default = "default_message_max_bytes")]
    pub message_max_bytes: u64,
    /// How long a record may take to be acknowledged by Kafka before it goes to the spool
    /// instead (`message.timeout.ms`). A request waits at most about this long.
    #[serde(default = "default_delivery_timeout_ms")]
    pub delivery_timeout_ms: u64,
    /// Most records waiting in the producer's memory (`queue.buffering.max.messages`).
    #[serde(default = "default_queue_max_records")]
    pub queue_max_records: u64,
    /// Other librdkafka producer properties (security, client id…). The ones the agent's
    /// guarantees rest on ([`FIXED_PRODUCER_PROPERTIES`]) cannot be set here.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// `[spool]`: the disk queue used while Kafka is unreachable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// Directory of the segment files (created if missing; one agent per directory).
    #[serde(default = "default_spool_dir")]
    pub dir: PathBuf,
    /// Most bytes on disk; when full, OTLP clients get retryable errors.
    #[serde(default = "default_spool_max_bytes")]
    pub max_bytes: u64,
    /// Size of one segment file (segments are deleted once replayed).
    #[serde(default = "default_spool_segment_bytes")]
    pub segment_bytes: u64,
    /// Records replayed per round while draining.
    #[serde(default = "default_replay_batch_records")]
    pub replay_batch_records: usize,
}

/// `[sampling]`: head sampling (see `agent::sampler`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingConfig {
    #[serde(default = "default_rate")]
    pub default_rate: f64,
    #[serde(default)]
    pub services: BTreeMap<String, f64>,
    /// Optional TOML file with rates laid over these, re-read when it changes.
    #[serde(default)]
    pub file: Option<PathBuf>,
    #[serde(default = "default_reload_interval_ms")]
    pub reload_interval_ms: u64,
    /// Jaeger sampling-strategies file (JSON, the one `clew serve` gives SDKs): when set,
    /// head sampling follows it instead of the rates above (`sampling::head`), and it is
    /// re-read every second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategies: Option<PathBuf>,
    /// Jaeger's `default_sampling_probability` for that file.
    #[serde(default = "default_sampling_probability")]
    pub default_probability: f64,
}

fn default_otlp_grpc_addr() -> String {
    "127.0.0.1:4317".into()
}
fn default_otlp_http_addr() -> String {
    "127.0.0.1:4318".into()
}
fn default_metrics_addr() -> String {
    "127.0.0.1:9465".into()
}
fn default_max_request_bytes() -> usize {
    CollectorConfig::default().max_request_bytes
}
fn default_retry_after_secs() -> u64 {
    1
}
fn default_brokers() -> String {
    "localhost:9092".into()
}
fn default_topic() -> String {
    "clew-spans".into()
}
fn default_linger_ms() -> u64 {
    5
}
fn default_batch_max_bytes() -> u64 {
    1024 * 1024
}
fn default_message_max_bytes() -> u64 {
    // Kafka's default broker/topic limit is 1048588 bytes including the record overhead.
    1_000_000
}
fn default_delivery_timeout_ms() -> u64 {
    5_000
}
fn default_queue_max_records() -> u64 {
    100_000
}
fn default_spool_dir() -> PathBuf {
    PathBuf::from("./clew-agent-spool")
}
fn default_spool_max_bytes() -> u64 {
    1024 * 1024 * 1024
}
fn default_spool_segment_bytes() -> u64 {
    16 * 1024 * 1024
}
fn default_replay_batch_records() -> usize {
    2_000
}
fn default_rate() -> f64 {
    1.0
}
fn default_reload_interval_ms() -> u64 {
    1_000
}
fn default_sampling_probability() -> f64 {
    crate::sampling::DEFAULT_SAMPLING_PROBABILITY
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            otlp_grpc_addr: default_otlp_grpc_addr(),
            otlp_http_addr: default_otlp_http_addr(),
            metrics_addr: default_metrics_addr(),
            sampling_http_addr: None,
            max_request_bytes: default_max_request_bytes(),
            retry_after_secs: default_retry_after_secs(),
            limits: LimitsConfig::default(),
            kafka: KafkaProducerConfig::default(),
            spool: SpoolConfig::default(),
            sampling: SamplingConfig::default(),
            redaction: Default::default(),
            name: None,
            auth: Default::default(),
            insecure_listen: false,
            tls: None,
        }
    }
}

impl Default for KafkaProducerConfig {
    fn default() -> Self {
        KafkaProducerConfig {
            brokers: default_brokers(),
            topic: default_topic(),
            linger_ms: default_linger_ms(),
            batch_max_bytes: default_batch_max_bytes(),
            message_max_bytes: default_message_max_bytes(),
            delivery_timeout_ms: default_delivery_timeout_ms(),
            queue_max_records: default_queue_max_records(),
            properties: BTreeMap::new(),
        }
    }
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            dir: default_spool_dir(),
            max_bytes: default_spool_max_bytes(),
            segment_bytes: default_spool_segment_bytes(),
            replay_batch_records: default_replay_batch_records(),
        }
    }
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig {
            default_rate: default_rate(),
            services: BTreeMap::new(),
            file: None,
            reload_interval_ms: default_reload_interval_ms(),
            strategies: None,
            default_probability: default_sampling_probability(),
        }
    }
}

impl KafkaProducerConfig {
    fn validate(&self) -> Result<()> {
        if self.brokers.trim().is_empty() {
            return bad("kafka.brokers", "must name at least one host:port");
        }
        if !is_topic_name(&self.topic) {
            return bad(
                "kafka.topic",
                format!(
                    "{:?} is not a Kafka topic name (1–249 of a-z A-Z 0-9 . _ -)",
                    self.topic
                ),
            );
        }
        if self.linger_ms > 60_000 {
            return bad(
                "kafka.linger_ms",
                format!("{} is above 60000", self.linger_ms),
            );
        }
        if !(1024..=1_000_000_000).contains(&self.message_max_bytes) {
            return bad(
                "kafka.message_max_bytes",
                format!("{} is outside 1024..=1000000000", self.message_max_bytes),
            );
        }
        if self.batch_max_bytes == 0 {
            return bad("kafka.batch_max_bytes", "must be at least 1");
        }
        if !(100..=3_600_000).contains(&self.delivery_timeout_ms) {
            return bad(
                "kafka.delivery_timeout_ms",
                format!("{} is outside 100..=3600000", self.delivery_timeout_ms),
            );
        }
        if !(1..=10_000_000).contains(&self.queue_max_records) {
            return bad(
                "kafka.queue_max_records",
                format!("{} is outside 1..=10000000", self.queue_max_records),
            );
        }
        match self
            .properties
            .keys()
            .find(|key| FIXED_PRODUCER_PROPERTIES.contains(&key.as_str()))
        {
            Some(key) => bad(
                "kafka.properties",
                format!("{key:?} is set by the agent itself (its delivery guarantees depend on it); use the [kafka] keys"),
            ),
            None => Ok(()),
        }
    }
}

fn is_topic_name(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= 249
        && topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl SpoolConfig {
    /// `message_max_bytes`: the largest record the spool must hold.
    fn validate(&self, message_max_bytes: u64) -> Result<()> {
        if self.dir.as_os_str().is_empty() {
            return bad("spool.dir", "must not be empty");
        }
        if self.segment_bytes < 4096 {
            return bad(
                "spool.segment_bytes",
                format!("{} is below the minimum of 4096", self.segment_bytes),
            );
        }
        if self.max_bytes < self.segment_bytes.min(message_max_bytes) {
            return bad(
                "spool.max_bytes",
                format!(
                    "{} is below one segment ({}) or one record ({})",
                    self.max_bytes, self.segment_bytes, message_max_bytes
                ),
            );
        }
        if self.replay_batch_records == 0 {
            return bad("spool.replay_batch_records", "must be at least 1");
        }
        Ok(())
    }
}

impl SamplingConfig {
    fn validate(&self) -> Result<()> {
        if let Err(message) = self.rates().validate("sampling.") {
            return bad("sampling", message);
        }
        crate::config::check_probability("sampling.default_probability", self.default_probability)?;
        if self.strategies.is_some()
            && (self.file.is_some()
                || !self.services.is_empty()
                || self.default_rate != default_rate())
        {
            return bad(
                "sampling.strategies",
                "a strategies file replaces default_rate, services and file: set one or the other",
            );
        }
        if !(50..=3_600_000).contains(&self.reload_interval_ms) {
            return bad(
                "sampling.reload_interval_ms",
                format!("{} is outside 50..=3600000", self.reload_interval_ms),
            );
        }
        Ok(())
    }

    pub fn rates(&self) -> Rates {
        Rates {
            default_rate: self.default_rate,
            services: self.services.clone(),
        }
    }
}

fn bad(key: &'static str, message: impl Into<String>) -> Result<()> {
    Err(Error::Config {
        key,
        message: message.into(),
    })
}

impl AgentConfig {
    /// Checks the values without doing any I/O. Errors name the offending key.
    pub fn validate(&self) -> Result<()> {
        self.redaction.validate()?;
        self.auth.validate().map_err(|e| Error::Config {
            key: "auth",
            message: e.0,
        })?;
        let sampling_http = self.sampling_http_addr.as_ref();
        for (key, addr) in [
            ("otlp_grpc_addr", Some(&self.otlp_grpc_addr)),
            ("otlp_http_addr", Some(&self.otlp_http_addr)),
            ("metrics_addr", Some(&self.metrics_addr)),
            ("sampling_http_addr", sampling_http),
        ]
        .into_iter()
        .filter_map(|(k, a)| a.map(|a| (k, a)))
        {
            if let Err(e) = addr.parse::<SocketAddr>() {
                return bad(key, format!("{addr:?} is not an ip:port address: {e}"));
            }
        }
        if !(1024..=u32::MAX as usize).contains(&self.max_request_bytes) {
            return bad(
                "max_request_bytes",
                format!("{} is outside 1024..=4 GiB", self.max_request_bytes),
            );
        }
        // The limits section is the collector's: its checks (keys say `collector.`).
        self.limits.validate()?;
        self.kafka.validate()?;
        self.spool.validate(self.kafka.message_max_bytes)?;
        self.sampling.validate()
    }

    /// The per-span limits in the form the OTLP conversion takes.
    pub fn span_limits(&self) -> Limits {
        CollectorConfig {
            limits: self.limits.clone(),
            ..Default::default()
        }
        .span_limits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_matches_empty_file() {
        let d = AgentConfig::default();
        d.validate().unwrap();
        let parsed: AgentConfig = toml::from_str("").unwrap();
        assert_eq!(parsed, d);
        assert_eq!(d.span_limits(), Limits::default());
        assert_eq!(d.kafka.topic, "clew-spans");
        assert_eq!(d.otlp_grpc_addr, "127.0.0.1:4317");
        assert_eq!(d.otlp_http_addr, "127.0.0.1:4318");
        assert_eq!(d.spool.max_bytes, 1 << 30);
    }

    #[test]
    fn full_file_parses() {
        let c: AgentConfig = toml::from_str(
            r#"
otlp_grpc_addr = "127.0.0.1:0"
[kafka]
brokers = "k1:9092,k2:9092"
topic = "spans.v1"
[kafka.properties]
"client.id" = "me"
[spool]
dir = "/var/spool/clew"
max_bytes = 1000000
[sampling]
default_rate = 0.5
services = { checkout = 0.1 }
file = "/etc/clew/sampling.toml"
"#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.sampling.rates().rate("checkout"), 0.1);
        assert_eq!(c.sampling.rates().rate("x"), 0.5);
        assert_eq!(c.kafka.properties["client.id"], "me");
    }

    #[test]
    fn errors_name_the_key() {
        let e = toml::from_str::<AgentConfig>("[kafka]\nbroker = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("broker"), "{e}");
        let mut c = AgentConfig::default();
        c.sampling.services.insert("a".into(), 1.5);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("sampling") && e.contains("\"a\""), "{e}");
        let mut c = AgentConfig::default();
        c.kafka
            .properties
            .insert("enable.idempotence".into(), "false".into());
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("kafka.properties"), "{e}");
        let mut c = AgentConfig::default();
        c.sampling.strategies = Some("/etc/s.json".into());
        c.sampling.default_rate = 0.5;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("sampling.strategies"), "{e}");
        let c = AgentConfig {
            sampling_http_addr: Some("nope".into()),
            ..Default::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("sampling_http_addr"), "{e}");
        let mut c = AgentConfig::default();
        c.kafka.topic = "bad topic".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("kafka.topic"));
    }
}
