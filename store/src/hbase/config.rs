//! `[store] type = "hbase"`: the settings of the HBase span store, their defaults and their
//! validation. Always compiled, so a binary built without the `hbase` feature still reads
//! (and then refuses, by name) a configuration that asks for HBase.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::span_store::admission::{
    default_max_bytes_per_trace, default_max_spans_per_trace, validate_caps,
};
use crate::{Error, Result};

/// HBase through its Thrift1 server (`crate::hbase`); TTL = retention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HbaseStoreConfig {
    /// HBase Thrift1 servers, used round-robin: `host:port` with `transport = "socket"`,
    /// `http://host:port/` or `https://host:port/` URLs with `transport = "http"`.
    pub thrift_addrs: Vec<String>,
    /// How Thrift messages travel: `socket` (binary protocol on a plain TCP connection,
    /// the Thrift server's default mode) or `http` (each message an HTTP POST body, the
    /// Thrift server's `hbase.regionserver.thrift.http` mode, the only one HBase serves
    /// over TLS).
    #[serde(default)]
    pub transport: HbaseTransport,
    /// PEM file of the CA that signed the Thrift server's certificate (`https` URLs only;
    /// without it the built-in Mozilla root set is used).
    #[serde(default)]
    pub ca_cert_path: Option<PathBuf>,
    /// Accept any server certificate (`https` URLs only). For tests only.
    #[serde(default)]
    pub insecure_skip_verify: bool,
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
            transport: HbaseTransport::default(),
            ca_cert_path: None,
            insecure_skip_verify: false,
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
        match self.transport {
            HbaseTransport::Socket => {
                if let Some(url) = self.thrift_addrs.iter().find(|a| a.contains("://")) {
                    return Err(Error::Config(format!(
                        "store.thrift_addrs: {url:?} is a url; urls need store.transport = \"http\""
                    )));
                }
                if self.ca_cert_path.is_some() {
                    return Err(Error::Config(
                        "store.ca_cert_path needs store.transport = \"http\" and https urls \
                         (hbase's thrift server speaks tls only in http mode)"
                            .into(),
                    ));
                }
                if self.insecure_skip_verify {
                    return Err(Error::Config(
                        "store.insecure_skip_verify needs store.transport = \"http\" and https urls"
                            .into(),
                    ));
                }
            }
            HbaseTransport::Http => {
                for url in &self.thrift_addrs {
                    let rest = url
                        .strip_prefix("https://")
                        .or_else(|| url.strip_prefix("http://"));
                    if rest.is_none_or(|r| r.trim_end_matches('/').is_empty()) {
                        return Err(Error::Config(format!(
                            "store.thrift_addrs: {url:?} is not an http:// or https:// url \
                             (store.transport = \"http\")"
                        )));
                    }
                }
                let tls_options = self.ca_cert_path.is_some() || self.insecure_skip_verify;
                if tls_options && self.thrift_addrs.iter().any(|u| u.starts_with("http://")) {
                    return Err(Error::Config(
                        "store.ca_cert_path and store.insecure_skip_verify apply to https urls; \
                         store.thrift_addrs has an http:// one"
                            .into(),
                    ));
                }
            }
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

/// `[store] transport`: how clew reaches HBase's Thrift1 servers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HbaseTransport {
    /// Binary protocol on a buffered TCP connection (the Thrift server's default mode).
    #[default]
    Socket,
    /// Binary protocol as HTTP POST bodies, over TLS for `https` URLs.
    Http,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn err(config: &HbaseStoreConfig) -> String {
        config.validate().unwrap_err().to_string()
    }

    #[test]
    fn transport_and_tls_options_are_checked_together() {
        let mut socket = HbaseStoreConfig::new(vec!["127.0.0.1:9090".into()]);
        socket.validate().unwrap();
        socket.ca_cert_path = Some("/ca.pem".into());
        assert!(
            err(&socket).contains("store.ca_cert_path"),
            "{}",
            err(&socket)
        );
        socket.ca_cert_path = None;
        socket.insecure_skip_verify = true;
        assert!(err(&socket).contains("store.insecure_skip_verify"));
        let url_on_socket = HbaseStoreConfig::new(vec!["https://h:9090/".into()]);
        assert!(err(&url_on_socket).contains("store.transport"));

        let mut http = HbaseStoreConfig::new(vec!["https://h:9090/".into()]);
        http.transport = HbaseTransport::Http;
        http.validate().unwrap();
        http.ca_cert_path = Some("/ca.pem".into());
        http.validate().unwrap();
        http.thrift_addrs.push("http://plain:9090/".into());
        assert!(err(&http).contains("https urls"), "{}", err(&http));
        http.thrift_addrs = vec!["h:9090".into()];
        assert!(err(&http).contains("not an http:// or https:// url"));
    }
}
