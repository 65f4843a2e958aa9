//! `[store] type = "hbase"`: the settings of the HBase span store, their defaults and their
//! validation. Always compiled, so a binary built without the `hbase` feature still reads
//! (and then refuses, by name) a configuration that asks for HBase.

use serde::{Deserialize, Serialize};

use crate::span_store::admission::{
    default_max_bytes_per_trace, default_max_spans_per_trace, validate_caps,
};
use crate::{Error, Result};

/// HBase through its Thrift1 server (`crate::hbase`); TTL = retention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HbaseStoreConfig {
    /// `host:port` of HBase Thrift1 servers, used round-robin.
    pub thrift_addrs: Vec<String>,
    /// Table name, `namespace:table` or `table`; created if missing.
    #[serde(default = "default_hbase_table")]
    pub table: String,
    /// Thrift connections kept open, and the most write batches in flight at once.
    #[serde(default = "default_hbase_pool_size")]
    pub pool_size: usize,
    /// Connect, read and write timeout of every Thrift call.
    #[serde(default = "default_hbase_timeout_ms")]
    pub timeout_ms: u64,
    /// Spans kept per trace; later spans are rejected (`trace_too_large`).
    #[serde(default = "default_max_spans_per_trace")]
    pub max_spans_per_trace: u32,
    /// Encoded bytes kept per trace.
    #[serde(default = "default_max_bytes_per_trace")]
    pub max_bytes_per_trace: u64,
}

impl HbaseStoreConfig {
    /// A config for these Thrift servers with every other setting at its default.
    pub fn new(thrift_addrs: Vec<String>) -> Self {
        HbaseStoreConfig {
            thrift_addrs,
            table: default_hbase_table(),
            pool_size: default_hbase_pool_size(),
            timeout_ms: default_hbase_timeout_ms(),
            max_spans_per_trace: default_max_spans_per_trace(),
            max_bytes_per_trace: default_max_bytes_per_trace(),
        }
    }

    /// Checks values without touching the network.
    pub fn validate(&self) -> Result<()> {
        if self.thrift_addrs.is_empty() {
            return Err(Error::Config(
                "store.thrift_addrs must name at least one hbase thrift server".into(),
            ));
        }
        let table = &self.table;
        if table.is_empty() || table.matches(':').count() > 1 {
            return Err(Error::Config(format!(
                "store.table {table:?} must be `table` or `namespace:table`"
            )));
        }
        if self.pool_size == 0 || self.timeout_ms == 0 {
            return Err(Error::Config(
                "store.pool_size and store.timeout_ms must be at least 1".into(),
            ));
        }
        validate_caps(self.max_spans_per_trace, self.max_bytes_per_trace)
    }
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
