//! The collector's configuration: where it listens, how much it accepts, how it batches.
//!
//! Every default works for the all-in-one mode; `Default` reuses the same functions serde
//! uses, so a missing key and `CollectorConfig::default()` agree.

use std::net::SocketAddr;
use std::path::PathBuf;

use clew_proto::from_otlp::Limits;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
pub use crate::receiver::kafka::KafkaConfig;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// `[collector]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    /// OTLP/gRPC listen address (port 0: any free port).
    #[serde(default = "default_otlp_grpc_addr")]
    pub otlp_grpc_addr: String,
    /// OTLP/HTTP listen address (port 0: any free port).
    #[serde(default = "default_otlp_http_addr")]
    pub otlp_http_addr: String,
    /// Zipkin v2 API listen address, `POST /api/v2/spans` (port 0: any free port).
    #[serde(default = "default_zipkin_addr")]
    pub zipkin_addr: String,
    /// Jaeger remote sampling over HTTP, `GET /api/sampling?service=` (port 0: any free port).
    #[serde(default = "default_sampling_http_addr")]
    pub sampling_http_addr: String,
    /// Jaeger remote sampling over gRPC, `jaeger.api_v2.SamplingManager` (port 0: any free port).
    #[serde(default = "default_sampling_grpc_addr")]
    pub sampling_grpc_addr: String,
    /// Jaeger sampling-strategies file (JSON) served to SDKs, re-read when it changes
    /// (absent: every service gets probabilistic `sampling_default_probability`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling_strategies: Option<PathBuf>,
    /// Jaeger's `default_sampling_probability`: the rate of the default strategy and of
    /// strategies the file leaves incomplete.
    #[serde(default = "default_sampling_probability")]
    pub sampling_default_probability: f64,
    /// Largest accepted request, measured after decompression.
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    /// Attribute names whose values become business keys (`order_id`, `user_id`, …).
    #[serde(default)]
    pub business_keys: Vec<String>,
    /// `[[collector.tenants]]`: per-tenant ingest rate limits (`crate::rate_limit`) and
    /// retention (`retention_days`, applied by the store and index); a tenant without an
    /// entry is not limited and keeps the global `retention_days`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<crate::rate_limit::TenantSettings>,
    /// A batch is written once it holds this many spans…
    #[serde(default = "default_batch_max_spans")]
    pub batch_max_spans: usize,
    /// …or once its first span has waited this long.
    #[serde(default = "default_batch_timeout_ms")]
    pub batch_timeout_ms: u64,
    /// Most spans accepted but not yet acknowledged (queued or being written).
    #[serde(default = "default_queue_max_spans")]
    pub queue_max_spans: usize,
    /// How long a request waits for queue room before it is answered "overloaded".
    #[serde(default = "default_enqueue_timeout_ms")]
    pub enqueue_timeout_ms: u64,
    /// `Retry-After` / RetryInfo delay suggested to clients when overloaded.
    #[serde(default = "default_retry_after_secs")]
    pub retry_after_secs: u64,
    /// Per-span limits applied on the way in.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// `[collector.kafka]`: consume spans from Kafka too (absent: no Kafka receiver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaConfig>,
}

/// `[collector.limits]`: maps onto [`clew_proto::from_otlp::Limits`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    #[serde(default = "default_max_attribute_value_bytes")]
    pub max_attribute_value_bytes: usize,
    #[serde(default = "default_max_attributes")]
    pub max_attributes: usize,
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    #[serde(default = "default_max_links")]
    pub max_links: usize,
    #[serde(default = "default_max_name_bytes")]
    pub max_name_bytes: usize,
    #[serde(default = "default_max_nesting_depth")]
    pub max_nesting_depth: usize,
    /// Spans starting further than this in the future are rejected.
    #[serde(default = "default_max_future_skew_secs")]
    pub max_future_skew_secs: u64,
    /// Spans older than this are rejected (usually the retention period; unset: any age).
    #[serde(default)]
    pub max_age_days: Option<u64>,
}

fn default_otlp_grpc_addr() -> String {
    "127.0.0.1:4317".to_string()
}
fn default_otlp_http_addr() -> String {
    "127.0.0.1:4318".to_string()
}
fn default_zipkin_addr() -> String {
    "127.0.0.1:9411".to_string()
}
fn default_sampling_http_addr() -> String {
    "127.0.0.1:5778".to_string()
}
fn default_sampling_grpc_addr() -> String {
    "127.0.0.1:5779".to_string()
}
fn default_sampling_probability() -> f64 {
    crate::sampling::DEFAULT_SAMPLING_PROBABILITY
}
fn default_max_request_bytes() -> usize {
    64 * 1024 * 1024
}
fn default_batch_max_spans() -> usize {
    8192
}
fn default_batch_timeout_ms() -> u64 {
    20
}
fn default_queue_max_spans() -> usize {
    200_000
}
fn default_enqueue_timeout_ms() -> u64 {
    2_000
}
fn default_retry_after_secs() -> u64 {
    1
}
fn default_max_attribute_value_bytes() -> usize {
    Limits::default().max_attribute_value_bytes
}
fn default_max_attributes() -> usize {
    Limits::default().max_attributes
}
fn default_max_events() -> usize {
    Limits::default().max_events
}
fn default_max_links() -> usize {
    Limits::default().max_links
}
fn default_max_name_bytes() -> usize {
    Limits::default().max_name_bytes
}
fn default_max_nesting_depth() -> usize {
    Limits::default().max_nesting_depth
}
fn default_max_future_skew_secs() -> u64 {
    Limits::default().max_future_skew_nanos / NANOS_PER_SEC
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            otlp_grpc_addr: default_otlp_grpc_addr(),
            otlp_http_addr: default_otlp_http_addr(),
            zipkin_addr: default_zipkin_addr(),
            sampling_http_addr: default_sampling_http_addr(),
            sampling_grpc_addr: default_sampling_grpc_addr(),
            sampling_strategies: None,
            sampling_default_probability: default_sampling_probability(),
            max_request_bytes: default_max_request_bytes(),
            business_keys: Vec::new(),
            tenants: Vec::new(),
            batch_max_spans: default_batch_max_spans(),
            batch_timeout_ms: default_batch_timeout_ms(),
            queue_max_spans: default_queue_max_spans(),
            enqueue_timeout_ms: default_enqueue_timeout_ms(),
            retry_after_secs: default_retry_after_secs(),
            limits: LimitsConfig::default(),
            kafka: None,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_attribute_value_bytes: default_max_attribute_value_bytes(),
            max_attributes: default_max_attributes(),
            max_events: default_max_events(),
            max_links: default_max_links(),
            max_name_bytes: default_max_name_bytes(),
            max_nesting_depth: default_max_nesting_depth(),
            max_future_skew_secs: default_max_future_skew_secs(),
            max_age_days: None,
        }
    }
}

impl LimitsConfig {
    /// Checks the limits (keys `collector.limits.*`; the agent's `[limits]` shares them).
    pub fn validate(&self) -> Result<()> {
        for (key, v) in [
            (
                "collector.limits.max_attribute_value_bytes",
                self.max_attribute_value_bytes,
            ),
            ("collector.limits.max_attributes", self.max_attributes),
            ("collector.limits.max_name_bytes", self.max_name_bytes),
            ("collector.limits.max_nesting_depth", self.max_nesting_depth),
        ] {
            if v == 0 {
                return bad(key, "must be at least 1");
            }
        }
        if self.max_nesting_depth > 64 {
            return bad(
                "collector.limits.max_nesting_depth",
                format!("{} is above the maximum of 64", self.max_nesting_depth),
            );
        }
        if self.max_age_days == Some(0) {
            return bad(
                "collector.limits.max_age_days",
                "must be at least 1 (or unset for any age)",
            );
        }
        Ok(())
    }
}

/// Largest `queue_max_spans`: permits of a tokio semaphore are acquired as `u32`.
const MAX_QUEUE_SPANS: usize = u32::MAX as usize;

/// The error text for Kafka settings in a build without the `kafka` cargo feature.
pub const KAFKA_UNAVAILABLE: &str =
    "kafka ingest is not available: clew was built without the \"kafka\" feature";

fn bad(key: &'static str, message: impl Into<String>) -> Result<()> {
    Err(Error::Config {
        key,
        message: message.into(),
    })
}

fn check_addr(key: &'static str, addr: &str) -> Result<()> {
    match addr.parse::<SocketAddr>() {
        Ok(_) => Ok(()),
        Err(e) => bad(key, format!("{addr:?} is not an ip:port address: {e}")),
    }
}

/// A sampling probability: a number in 0..=1.
pub(crate) fn check_probability(key: &'static str, p: f64) -> Result<()> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        bad(key, format!("{p} is not a probability between 0 and 1"))
    }
}

impl CollectorConfig {
    /// Checks the values without doing any I/O. Errors name the offending key.
    pub fn validate(&self) -> Result<()> {
        crate::rate_limit::validate(&self.tenants)?;
        check_addr("collector.otlp_grpc_addr", &self.otlp_grpc_addr)?;
        check_addr("collector.otlp_http_addr", &self.otlp_http_addr)?;
        check_addr("collector.zipkin_addr", &self.zipkin_addr)?;
        check_addr("collector.sampling_http_addr", &self.sampling_http_addr)?;
        check_addr("collector.sampling_grpc_addr", &self.sampling_grpc_addr)?;
        check_probability(
            "collector.sampling_default_probability",
            self.sampling_default_probability,
        )?;
        self.validate_request_size()?;
        self.validate_queue()?;
        self.validate_business_keys()?;
        self.limits.validate()?;
        self.validate_kafka()
    }

    fn validate_request_size(&self) -> Result<()> {
        if self.max_request_bytes < 1024 {
            return bad(
                "collector.max_request_bytes",
                format!("{} is below the minimum of 1024", self.max_request_bytes),
            );
        }
        if self.max_request_bytes > u32::MAX as usize {
            return bad(
                "collector.max_request_bytes",
                format!("{} is above the maximum of 4 GiB", self.max_request_bytes),
            );
        }
        Ok(())
    }

    /// Batching and the ingest queue.
    fn validate_queue(&self) -> Result<()> {
        if self.batch_max_spans == 0 {
            return bad("collector.batch_max_spans", "must be at least 1");
        }
        if self.batch_timeout_ms == 0 || self.batch_timeout_ms > 60_000 {
            return bad(
                "collector.batch_timeout_ms",
                format!("{} is outside 1..=60000", self.batch_timeout_ms),
            );
        }
        if self.queue_max_spans < self.batch_max_spans || self.queue_max_spans > MAX_QUEUE_SPANS {
            return bad(
                "collector.queue_max_spans",
                format!(
                    "{} must be at least batch_max_spans ({}) and at most {MAX_QUEUE_SPANS}",
                    self.queue_max_spans, self.batch_max_spans
                ),
            );
        }
        if self.enqueue_timeout_ms > 600_000 {
            return bad(
                "collector.enqueue_timeout_ms",
                format!("{} is above the maximum of 600000", self.enqueue_timeout_ms),
            );
        }
        Ok(())
    }

    fn validate_business_keys(&self) -> Result<()> {
        match self.business_keys.iter().position(|k| k.trim().is_empty()) {
            Some(i) => bad("collector.business_keys", format!("entry {i} is empty")),
            None => Ok(()),
        }
    }

    fn validate_kafka(&self) -> Result<()> {
        match &self.kafka {
            None => Ok(()),
            Some(_) if !cfg!(feature = "kafka") => bad("collector.kafka", KAFKA_UNAVAILABLE),
            Some(kafka) => kafka.validate(),
        }
    }

    /// The per-span limits in the form the OTLP conversion takes.
    pub fn span_limits(&self) -> Limits {
        let l = &self.limits;
        Limits {
            max_attribute_value_bytes: l.max_attribute_value_bytes,
            max_attributes: l.max_attributes,
            max_events: l.max_events,
            max_links: l.max_links,
            max_name_bytes: l.max_name_bytes,
            max_nesting_depth: l.max_nesting_depth,
            max_future_skew_nanos: l.max_future_skew_secs.saturating_mul(NANOS_PER_SEC),
            max_age_nanos: l
                .max_age_days
                .map(|d| d.saturating_mul(86_400 * NANOS_PER_SEC)),
        }
    }
}

/// `[tls]`: the certificate every listener serves (`clew serve`: OTLP gRPC and HTTP, Zipkin,
/// sampling HTTP and gRPC, query API + UI, Jaeger remote storage; `clew agent`: its OTLP
/// receivers, sampling and metrics). The files are re-read when they
/// change (checked every second): new connections get the new certificate, a file that
/// does not load keeps the old one (and is logged). Only paths: nothing secret is printed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the certificate.
    pub key_file: PathBuf,
    /// PEM CA certificates: when set, clients must present a certificate one of them
    /// issued (mutual TLS). Read at start only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_matches_empty_file() {
        let d = CollectorConfig::default();
        d.validate().unwrap();
        let parsed: CollectorConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed, d);
        assert_eq!(d.span_limits(), Limits::default());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err =
            serde_json::from_str::<CollectorConfig>(r#"{"max_request_byte": 5}"#).unwrap_err();
        assert!(err.to_string().contains("max_request_byte"), "{err}");
    }

    #[cfg(not(feature = "kafka"))]
    #[test]
    fn kafka_section_needs_the_kafka_feature() {
        let c = CollectorConfig {
            kafka: Some(KafkaConfig::new(vec!["a:1".into()], Vec::new())),
            ..Default::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("collector.kafka") && e.contains(KAFKA_UNAVAILABLE),
            "{e}"
        );
    }

    #[test]
    fn validate_names_the_key() {
        let c = CollectorConfig {
            queue_max_spans: 10,
            ..Default::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("collector.queue_max_spans"), "{e}");
        let c = CollectorConfig {
            otlp_http_addr: "nope".into(),
            ..Default::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("collector.otlp_http_addr"));
        let c = CollectorConfig {
            limits: LimitsConfig {
                max_age_days: Some(3),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            c.span_limits().max_age_nanos,
            Some(3 * 86_400 * NANOS_PER_SEC)
        );
    }
}
