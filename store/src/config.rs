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
//! type = "embedded"          # the default; "opensearch" comes later
//! commit_interval_ms = 1000
//! ```

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
        }
    }
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

    fn parse(json: &str) -> StoreConfig {
        serde_json::from_str(json).unwrap()
    }
}
