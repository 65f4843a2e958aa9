//! Backend configuration: serde-tagged enums and the one factory that builds backends.
//!
//! ```toml
//! [store]
//! type = "embedded"          # the default
//! max_spans_per_trace = 50000
//!
//! # or, spans in HBase through its Thrift1 server:
//! # [store]
//! # type = "hbase"
//! # thrift_addrs = ["127.0.0.1:9090"]
//! # table = "clew_spans"      # created if missing (its namespace must exist)
//! # pool_size = 4
//! # timeout_ms = 5000
//!
//! [index]
//! type = "embedded"          # the default
//! commit_interval_ms = 1000
//!
//! # or, the index on OpenSearch / Elasticsearch over its REST API:
//! # [index]
//! # type = "opensearch"
//! # urls = ["https://search-1:9200", "https://search-2:9200"]
//! # index_prefix = "clew-spans"   # daily indices clew-spans-YYYY.MM.DD
//! # username = "clew"             # basic auth, or bearer_token = "…"
//! # password = "…"
//! # ca_cert_path = "/etc/clew/opensearch-ca.pem"
//! # insecure_skip_verify = false
//! # timeout_ms = 10000
//! # bulk_max_docs = 5000
//! # bulk_max_bytes = 8388608
//! # number_of_shards = 1
//! # number_of_replicas = 1
//! ```

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{Error, Result, SpanStore, TraceIndex};

/// Settings every backend shares, filled in by the binary from the top-level config.
#[derive(Debug, Clone, PartialEq)]
pub struct Common {
    /// Directory under which embedded backends keep their files.
    pub data_dir: PathBuf,
    /// Data older than this is dropped (whole buckets / partitions).
    pub retention_days: u32,
    /// Attribute names indexed as exact `name=value` terms (besides business keys).
    pub indexed_attributes: Vec<String>,
}

/// Which span store to use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum StoreConfig {
    /// fjall LSM under `<data_dir>/spans`.
    Embedded {
        /// Spans kept per trace; later spans are rejected (`trace_too_large`).
        #[serde(default = "default_max_spans_per_trace")]
        max_spans_per_trace: u32,
        /// Encoded bytes kept per trace.
        #[serde(default = "default_max_bytes_per_trace")]
        max_bytes_per_trace: u64,
        /// fjall block cache, in MiB.
        #[serde(default = "default_cache_mb")]
        cache_mb: u64,
    },
    /// HBase through its Thrift1 server (`crate::hbase`); TTL = retention.
    Hbase {
        /// `host:port` of HBase Thrift1 servers, used round-robin.
        thrift_addrs: Vec<String>,
        /// Table name, `namespace:table` or `table`; created if missing.
        #[serde(default = "default_hbase_table")]
        table: String,
        /// Thrift connections kept open.
        #[serde(default = "default_hbase_pool_size")]
        pool_size: usize,
        /// Connect, read and write timeout of every Thrift call.
        #[serde(default = "default_hbase_timeout_ms")]
        timeout_ms: u64,
        /// Spans kept per trace; later spans are rejected (`trace_too_large`).
        #[serde(default = "default_max_spans_per_trace")]
        max_spans_per_trace: u32,
        /// Encoded bytes kept per trace.
        #[serde(default = "default_max_bytes_per_trace")]
        max_bytes_per_trace: u64,
    },
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig::Embedded {
            max_spans_per_trace: default_max_spans_per_trace(),
            max_bytes_per_trace: default_max_bytes_per_trace(),
            cache_mb: default_cache_mb(),
        }
    }
}

/// Which trace index to use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum IndexConfig {
    /// tantivy under `<data_dir>/index`, one index per UTC day.
    Embedded {
        /// How often new documents are committed (made searchable). Must be ≤ 1500 to keep
        /// the "searchable within 2 s" contract.
        #[serde(default = "default_commit_interval_ms")]
        commit_interval_ms: u64,
        /// tantivy writer memory budget, in MiB.
        #[serde(default = "default_writer_memory_mb")]
        writer_memory_mb: usize,
    },
    /// OpenSearch (or Elasticsearch) over its REST API (`crate::opensearch`): one index per
    /// UTC day, `<index_prefix>-YYYY.MM.DD`, created from an index template clew installs.
    Opensearch {
        /// Base URLs of cluster nodes (`http://host:9200`), used round-robin with fail-over.
        urls: Vec<String>,
        /// Prefix of the daily indices, of the index template and of the alias over them.
        #[serde(default = "default_opensearch_index_prefix")]
        index_prefix: String,
        /// Basic-auth user (with `password`).
        #[serde(default)]
        username: Option<String>,
        /// Basic-auth password; never logged or printed.
        #[serde(default)]
        password: Option<Secret>,
        /// Bearer token (instead of basic auth); never logged or printed.
        #[serde(default)]
        bearer_token: Option<Secret>,
        /// PEM file of the CA that signed the cluster's certificates (for `https` URLs).
        #[serde(default)]
        ca_cert_path: Option<PathBuf>,
        /// Accept any server certificate. For tests only.
        #[serde(default)]
        insecure_skip_verify: bool,
        /// Timeout of every request (connect included).
        #[serde(default = "default_opensearch_timeout_ms")]
        timeout_ms: u64,
        /// Span documents per `_bulk` request.
        #[serde(default = "default_opensearch_bulk_max_docs")]
        bulk_max_docs: usize,
        /// Body bytes per `_bulk` request (a request holds at least one document).
        #[serde(default = "default_opensearch_bulk_max_bytes")]
        bulk_max_bytes: usize,
        /// Primary shards of each daily index.
        #[serde(default = "default_opensearch_shards")]
        number_of_shards: u32,
        /// Replicas of each shard (0 on a single-node cluster keeps its health green).
        #[serde(default = "default_opensearch_replicas")]
        number_of_replicas: u32,
    },
}

/// A credential read from the configuration: its `Debug` and its serialized form are
/// redacted, so it never reaches a log line or `clew config` output.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig::Embedded {
            commit_interval_ms: default_commit_interval_ms(),
            writer_memory_mb: default_writer_memory_mb(),
        }
    }
}

pub fn default_max_spans_per_trace() -> u32 {
    50_000
}
pub fn default_max_bytes_per_trace() -> u64 {
    64 * 1024 * 1024
}
pub fn default_cache_mb() -> u64 {
    256
}
/// In the default namespace: HBase's Thrift1 interface cannot create namespaces.
pub fn default_hbase_table() -> String {
    "clew_spans".into()
}
pub fn default_hbase_pool_size() -> usize {
    4
}
pub fn default_hbase_timeout_ms() -> u64 {
    5000
}
pub fn default_commit_interval_ms() -> u64 {
    1000
}
pub fn default_writer_memory_mb() -> usize {
    256
}
pub fn default_opensearch_index_prefix() -> String {
    "clew-spans".into()
}
pub fn default_opensearch_timeout_ms() -> u64 {
    10_000
}
pub fn default_opensearch_bulk_max_docs() -> usize {
    5_000
}
pub fn default_opensearch_bulk_max_bytes() -> usize {
    8 << 20
}
pub fn default_opensearch_shards() -> u32 {
    1
}
pub fn default_opensearch_replicas() -> u32 {
    1
}

impl StoreConfig {
    /// Checks values without touching the disk or network.
    pub fn validate(&self) -> Result<()> {
        match self {
            StoreConfig::Hbase {
                thrift_addrs,
                table,
                pool_size,
                timeout_ms,
                max_spans_per_trace,
                max_bytes_per_trace,
            } => {
                if thrift_addrs.is_empty() {
                    return Err(Error::Config(
                        "store.thrift_addrs must name at least one hbase thrift server".into(),
                    ));
                }
                if table.is_empty() || table.matches(':').count() > 1 {
                    return Err(Error::Config(format!(
                        "store.table {table:?} must be `table` or `namespace:table`"
                    )));
                }
                if *pool_size == 0 || *timeout_ms == 0 {
                    return Err(Error::Config(
                        "store.pool_size and store.timeout_ms must be at least 1".into(),
                    ));
                }
                check_caps(*max_spans_per_trace, *max_bytes_per_trace)
            }
            StoreConfig::Embedded {
                max_spans_per_trace,
                max_bytes_per_trace,
                ..
            } => check_caps(*max_spans_per_trace, *max_bytes_per_trace),
        }
    }
}

fn check_caps(max_spans_per_trace: u32, max_bytes_per_trace: u64) -> Result<()> {
    if max_spans_per_trace == 0 {
        return Err(Error::Config(
            "store.max_spans_per_trace must be at least 1".into(),
        ));
    }
    if max_bytes_per_trace < 1024 {
        return Err(Error::Config(
            "store.max_bytes_per_trace must be at least 1024".into(),
        ));
    }
    Ok(())
}

impl IndexConfig {
    /// Checks values without touching the disk or network.
    pub fn validate(&self) -> Result<()> {
        match self {
            IndexConfig::Embedded {
                commit_interval_ms,
                writer_memory_mb,
            } => {
                if !(10..=1500).contains(commit_interval_ms) {
                    return Err(Error::Config(
                        "index.commit_interval_ms must be between 10 and 1500 (searchable within 2 s)".into(),
                    ));
                }
                if *writer_memory_mb < 16 {
                    return Err(Error::Config(
                        "index.writer_memory_mb must be at least 16".into(),
                    ));
                }
                Ok(())
            }
            IndexConfig::Opensearch {
                urls,
                index_prefix,
                username,
                password,
                bearer_token,
                timeout_ms,
                bulk_max_docs,
                bulk_max_bytes,
                number_of_shards,
                ..
            } => {
                if urls.is_empty() {
                    return Err(Error::Config(
                        "index.urls must name at least one opensearch node".into(),
                    ));
                }
                for url in urls {
                    let ok = url.starts_with("http://") || url.starts_with("https://");
                    if !ok || url.len() <= "https://".len() {
                        return Err(Error::Config(format!(
                            "index.urls: {url:?} is not an http:// or https:// url"
                        )));
                    }
                }
                check_index_prefix(index_prefix)?;
                if username.is_some() != password.is_some() {
                    return Err(Error::Config(
                        "index.username and index.password go together".into(),
                    ));
                }
                if username.is_some() && bearer_token.is_some() {
                    return Err(Error::Config(
                        "index: set either username/password or bearer_token, not both".into(),
                    ));
                }
                if *timeout_ms == 0 || *bulk_max_docs == 0 || *number_of_shards == 0 {
                    return Err(Error::Config(
                        "index.timeout_ms, index.bulk_max_docs and index.number_of_shards must be at least 1"
                            .into(),
                    ));
                }
                if *bulk_max_bytes < 64 * 1024 {
                    return Err(Error::Config(
                        "index.bulk_max_bytes must be at least 65536".into(),
                    ));
                }
                Ok(())
            }
        }
    }
}

/// OpenSearch index names: lowercase, no path or pattern characters, and the prefix plus
/// `-YYYY.MM.DD` within the 255-byte limit.
fn check_index_prefix(prefix: &str) -> Result<()> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c);
    if prefix.is_empty()
        || prefix.len() > 200
        || !prefix.chars().all(allowed)
        || prefix.starts_with(['-', '_', '.'])
    {
        return Err(Error::Config(format!(
            "index.index_prefix {prefix:?} must be 1 to 200 characters of a-z, 0-9, `-`, `_` and `.`, not starting with `-`, `_` or `.`"
        )));
    }
    Ok(())
}

/// Builds the configured span store.
pub fn open_span_store(config: &StoreConfig, common: &Common) -> Result<Arc<dyn SpanStore>> {
    config.validate()?;
    match config {
        StoreConfig::Embedded { .. } => Ok(Arc::new(
            crate::embedded::fjall_store::FjallSpanStore::open(config, common)?,
        )),
        StoreConfig::Hbase { .. } => Ok(Arc::new(crate::hbase::HbaseSpanStore::open(
            config, common,
        )?)),
    }
}

/// Builds the configured trace index.
pub fn open_trace_index(config: &IndexConfig, common: &Common) -> Result<Arc<dyn TraceIndex>> {
    config.validate()?;
    match config {
        IndexConfig::Embedded { .. } => Ok(Arc::new(
            crate::embedded::tantivy_index::TantivyTraceIndex::open(config, common)?,
        )),
        IndexConfig::Opensearch { .. } => Ok(Arc::new(
            crate::opensearch::OpenSearchTraceIndex::open(config, common)?,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hbase_store_config_parses_with_defaults_and_validates() {
        let config: StoreConfig = parse(r#"{"type": "hbase", "thrift_addrs": ["127.0.0.1:9090"]}"#);
        assert_eq!(
            config,
            StoreConfig::Hbase {
                thrift_addrs: vec!["127.0.0.1:9090".into()],
                table: "clew_spans".into(),
                pool_size: 4,
                timeout_ms: 5000,
                max_spans_per_trace: default_max_spans_per_trace(),
                max_bytes_per_trace: default_max_bytes_per_trace(),
            }
        );
        config.validate().unwrap();
        let no_addrs: StoreConfig = parse(r#"{"type": "hbase", "thrift_addrs": []}"#);
        let err = no_addrs.validate().unwrap_err().to_string();
        assert!(err.contains("store.thrift_addrs"), "{err}");
        let bad_table: StoreConfig =
            parse(r#"{"type": "hbase", "thrift_addrs": ["h:1"], "table": "a:b:c"}"#);
        assert!(bad_table.validate().is_err());
        assert_eq!(StoreConfig::default(), parse(r#"{"type": "embedded"}"#));
    }

    #[test]
    fn opensearch_index_config_parses_with_defaults_and_validates() {
        let config: IndexConfig =
            serde_json::from_str(r#"{"type": "opensearch", "urls": ["http://127.0.0.1:9200"]}"#)
                .unwrap();
        assert_eq!(
            config,
            IndexConfig::Opensearch {
                urls: vec!["http://127.0.0.1:9200".into()],
                index_prefix: "clew-spans".into(),
                username: None,
                password: None,
                bearer_token: None,
                ca_cert_path: None,
                insecure_skip_verify: false,
                timeout_ms: 10_000,
                bulk_max_docs: 5_000,
                bulk_max_bytes: 8 << 20,
                number_of_shards: 1,
                number_of_replicas: 1,
            }
        );
        config.validate().unwrap();
        let bad = |json: &str, key: &str| {
            let c: IndexConfig = serde_json::from_str(json).unwrap();
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{json}: {err}");
        };
        bad(r#"{"type": "opensearch", "urls": []}"#, "index.urls");
        bad(
            r#"{"type": "opensearch", "urls": ["127.0.0.1:9200"]}"#,
            "index.urls",
        );
        for prefix in ["Clew", "clew*", "_clew", "a,b", "a b", ""] {
            bad(
                &format!(
                    r#"{{"type": "opensearch", "urls": ["http://h:1"], "index_prefix": "{prefix}"}}"#
                ),
                "index.index_prefix",
            );
        }
        bad(
            r#"{"type": "opensearch", "urls": ["http://h:1"], "username": "u"}"#,
            "index.password",
        );
        bad(
            r#"{"type": "opensearch", "urls": ["http://h:1"], "username": "u", "password": "p", "bearer_token": "t"}"#,
            "bearer_token",
        );
        let unknown = serde_json::from_str::<IndexConfig>(
            r#"{"type": "opensearch", "urls": ["http://h:1"], "pasword": "p"}"#,
        );
        assert!(unknown.is_err(), "unknown keys are errors");
    }

    #[test]
    fn credentials_are_redacted_in_debug_and_serialized_forms() {
        let config: IndexConfig = serde_json::from_str(
            r#"{"type": "opensearch", "urls": ["http://h:1"], "username": "clew", "password": "hunter2", "bearer_token": null}"#,
        )
        .unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("clew"), "{debug}");
        let json = serde_json::to_string(&config).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
        let token: IndexConfig = serde_json::from_str(
            r#"{"type": "opensearch", "urls": ["http://h:1"], "bearer_token": "s3cr3t-token"}"#,
        )
        .unwrap();
        assert!(!format!("{token:?}").contains("s3cr3t"));
        assert!(!serde_json::to_string(&token).unwrap().contains("s3cr3t"));
    }

    fn parse(json: &str) -> StoreConfig {
        serde_json::from_str(json).unwrap()
    }
}
