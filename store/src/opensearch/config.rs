//! `[index] type = "opensearch"`: the settings of the OpenSearch trace index, their
//! defaults, their validation, and the [`Secret`] that keeps credentials out of logs.
//! Always compiled, so a binary built without the `opensearch` feature still reads (and
//! then refuses, by name) a configuration that asks for OpenSearch.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// OpenSearch (or Elasticsearch) over its REST API (`crate::opensearch`): one index per
/// UTC day, `<index_prefix>-YYYY.MM.DD` (`<index_prefix>-r<days>-YYYY.MM.DD` for a tenant
/// retention class), created from an index template clew installs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenSearchIndexConfig {
    /// Base URLs of cluster nodes (`http://host:9200`), used round-robin with fail-over.
    pub urls: Vec<String>,
    /// Prefix of the daily indices, of the index template and of the alias over them.
    #[serde(default = "default_opensearch_index_prefix")]
    pub index_prefix: String,
    /// Basic-auth user (with `password`).
    #[serde(default)]
    pub username: Option<String>,
    /// Basic-auth password; never logged or printed.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Bearer token (instead of basic auth); never logged or printed.
    #[serde(default)]
    pub bearer_token: Option<Secret>,
    /// PEM file of the CA that signed the cluster's certificates (for `https` URLs).
    #[serde(default)]
    pub ca_cert_path: Option<PathBuf>,
    /// Accept any server certificate. For tests only.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Timeout of every request (connect included).
    #[serde(default = "default_opensearch_timeout_ms")]
    pub timeout_ms: u64,
    /// Span documents per `_bulk` request.
    #[serde(default = "default_opensearch_bulk_max_docs")]
    pub bulk_max_docs: usize,
    /// Body bytes per `_bulk` request (a request holds at least one document).
    #[serde(default = "default_opensearch_bulk_max_bytes")]
    pub bulk_max_bytes: usize,
    /// Write batches indexed at once, each in its own `_bulk` requests (the node works
    /// on them in parallel and fsyncs its translog once for requests that arrive
    /// together).
    #[serde(default = "default_opensearch_bulk_concurrency")]
    pub bulk_concurrency: usize,
    /// Primary shards of each daily index.
    #[serde(default = "default_opensearch_shards")]
    pub number_of_shards: u32,
    /// Replicas of each shard (0 on a single-node cluster keeps its health green).
    #[serde(default = "default_opensearch_replicas")]
    pub number_of_replicas: u32,
}

impl OpenSearchIndexConfig {
    /// A config for these node URLs with every other setting at its default.
    pub fn new(urls: Vec<String>) -> Self {
        OpenSearchIndexConfig {
            urls,
            index_prefix: default_opensearch_index_prefix(),
            username: None,
            password: None,
            bearer_token: None,
            ca_cert_path: None,
            insecure_skip_verify: false,
            timeout_ms: default_opensearch_timeout_ms(),
            bulk_max_docs: default_opensearch_bulk_max_docs(),
            bulk_max_bytes: default_opensearch_bulk_max_bytes(),
            bulk_concurrency: default_opensearch_bulk_concurrency(),
            number_of_shards: default_opensearch_shards(),
            number_of_replicas: default_opensearch_replicas(),
        }
    }

    /// Checks values without touching the network.
    pub fn validate(&self) -> Result<()> {
        self.validate_urls()?;
        validate_index_prefix(&self.index_prefix)?;
        self.validate_credentials()?;
        self.validate_sizes()
    }

    fn validate_urls(&self) -> Result<()> {
        if self.urls.is_empty() {
            return Err(Error::Config(
                "index.urls must name at least one opensearch node".into(),
            ));
        }
        for url in &self.urls {
            let ok = url.starts_with("http://") || url.starts_with("https://");
            if !ok || url.len() <= "https://".len() {
                return Err(Error::Config(format!(
                    "index.urls: {url:?} is not an http:// or https:// url"
                )));
            }
        }
        Ok(())
    }

    fn validate_credentials(&self) -> Result<()> {
        if self.username.is_some() != self.password.is_some() {
            return Err(Error::Config(
                "index.username and index.password go together".into(),
            ));
        }
        if self.username.is_some() && self.bearer_token.is_some() {
            return Err(Error::Config(
                "index: set either username/password or bearer_token, not both".into(),
            ));
        }
        Ok(())
    }

    fn validate_sizes(&self) -> Result<()> {
        if self.timeout_ms == 0
            || self.bulk_max_docs == 0
            || self.bulk_concurrency == 0
            || self.number_of_shards == 0
        {
            return Err(Error::Config(
                "index.timeout_ms, index.bulk_max_docs, index.bulk_concurrency and index.number_of_shards must be at least 1"
                    .into(),
            ));
        }
        if self.bulk_max_bytes < 64 * 1024 {
            return Err(Error::Config(
                "index.bulk_max_bytes must be at least 65536".into(),
            ));
        }
        Ok(())
    }
}

/// OpenSearch index names: lowercase, no path or pattern characters, and the prefix plus
/// `-YYYY.MM.DD` within the 255-byte limit.
fn validate_index_prefix(prefix: &str) -> Result<()> {
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
pub fn default_opensearch_bulk_concurrency() -> usize {
    4
}
pub fn default_opensearch_shards() -> u32 {
    1
}
pub fn default_opensearch_replicas() -> u32 {
    1
}
