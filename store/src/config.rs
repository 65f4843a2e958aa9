//! Backend configuration: the serde-tagged enums and the one factory per seam.
//!
//! Each backend folder owns its settings and their validation (`embedded/config.rs`,
//! `hbase/config.rs`, `opensearch/config.rs`); this module only picks one by `type` and
//! builds it. Every config type is compiled into every binary, so a binary built without
//! a backend's Cargo feature still reads a file that names it, and then says which feature
//! is missing instead of "unknown variant".
//!
//! ```toml
//! [store]
//! type = "embedded"          # the default
//! max_spans_per_trace = 50000
//!
//! # or, spans in HBase through its Thrift1 server (feature `hbase`):
//! # [store]
//! # type = "hbase"
//! # thrift_addrs = ["127.0.0.1:9090"]
//! # table = "clew_spans"      # created if missing (its namespace must exist)
//! # pool_size = 4                # thrift connections = write batches in flight
//! # timeout_ms = 5000
//!
//! [index]
//! type = "embedded"          # the default
//! commit_interval_ms = 1000
//!
//! # or, the index on OpenSearch / Elasticsearch over its REST API (feature `opensearch`):
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
//! # bulk_concurrency = 4          # write batches indexed at once
//! # number_of_shards = 1
//! # number_of_replicas = 1
//! ```
//!
//! The variants wrap their backend's struct; unknown keys are still errors because every
//! one of those structs denies them (serde hands a newtype variant of an internally
//! tagged enum the map without its `type` key).

use std::path::PathBuf;
use std::sync::Arc;

use serde::{de, Deserialize, Deserializer, Serialize};

pub use crate::embedded::config::{EmbeddedIndexConfig, EmbeddedStoreConfig};
pub use crate::hbase::config::{HbaseStoreConfig, HbaseTransport};
pub use crate::opensearch::config::{OpenSearchIndexConfig, Secret};
use crate::{Error, Result, SpanStore, TraceIndex};

/// Settings every backend shares, filled in by the binary from the top-level config.
#[derive(Debug, Clone, PartialEq)]
pub struct Common {
    /// Directory under which embedded backends keep their files.
    pub data_dir: PathBuf,
    /// How long each tenant's data is kept: the global `retention_days` and the tenants'
    /// retention classes (whole buckets / partitions are dropped, HBase cells expire).
    pub retention: crate::RetentionClasses,
    /// Attribute names indexed as exact `name=value` terms (besides business keys).
    pub indexed_attributes: Vec<String>,
}

/// Which span store to use (`type` may be left out: `embedded`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StoreConfig {
    /// fjall LSM under `<data_dir>/spans`.
    Embedded(EmbeddedStoreConfig),
    /// HBase through its Thrift1 server (`crate::hbase`); TTL = retention.
    Hbase(HbaseStoreConfig),
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig::Embedded(EmbeddedStoreConfig::default())
    }
}

impl StoreConfig {
    /// Checks values without touching the disk or network.
    pub fn validate(&self) -> Result<()> {
        match self {
            StoreConfig::Embedded(c) => c.validate(),
            StoreConfig::Hbase(c) => c.validate(),
        }
    }
}

/// Which trace index to use (`type` may be left out: `embedded`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum IndexConfig {
    /// tantivy under `<data_dir>/index`, one index per UTC day.
    Embedded(EmbeddedIndexConfig),
    /// OpenSearch (or Elasticsearch) over its REST API (`crate::opensearch`).
    Opensearch(OpenSearchIndexConfig),
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig::Embedded(EmbeddedIndexConfig::default())
    }
}

impl IndexConfig {
    /// Checks values without touching the disk or network.
    pub fn validate(&self) -> Result<()> {
        match self {
            IndexConfig::Embedded(c) => c.validate(),
            IndexConfig::Opensearch(c) => c.validate(),
        }
    }
}

/// A backend section as a map, with `type = "embedded"` when it names none: a `[store]` or
/// `[index]` that only tunes the embedded backend needs no `type` line.
fn with_default_type<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<serde_json::Value, D::Error> {
    let mut section = serde_json::Value::deserialize(d)?;
    if let serde_json::Value::Object(keys) = &mut section {
        keys.entry("type").or_insert_with(|| "embedded".into());
    }
    Ok(section)
}

impl<'de> Deserialize<'de> for StoreConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        enum Tagged {
            Embedded(EmbeddedStoreConfig),
            Hbase(HbaseStoreConfig),
        }
        Ok(
            match Tagged::deserialize(with_default_type(d)?).map_err(de::Error::custom)? {
                Tagged::Embedded(c) => StoreConfig::Embedded(c),
                Tagged::Hbase(c) => StoreConfig::Hbase(c),
            },
        )
    }
}

impl<'de> Deserialize<'de> for IndexConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        enum Tagged {
            Embedded(EmbeddedIndexConfig),
            Opensearch(OpenSearchIndexConfig),
        }
        Ok(
            match Tagged::deserialize(with_default_type(d)?).map_err(de::Error::custom)? {
                Tagged::Embedded(c) => IndexConfig::Embedded(c),
                Tagged::Opensearch(c) => IndexConfig::Opensearch(c),
            },
        )
    }
}

/// Builds the configured span store.
pub fn open_span_store(config: &StoreConfig, common: &Common) -> Result<Arc<dyn SpanStore>> {
    config.validate()?;
    match config {
        StoreConfig::Embedded(c) => Ok(Arc::new(
            crate::embedded::fjall_store::FjallSpanStore::open(c, common)?,
        )),
        #[cfg(feature = "hbase")]
        StoreConfig::Hbase(c) => Ok(Arc::new(crate::hbase::HbaseSpanStore::open(c, common)?)),
        #[cfg(not(feature = "hbase"))]
        StoreConfig::Hbase(_) => Err(not_built("store", "hbase")),
    }
}

/// Builds the configured trace index.
pub fn open_trace_index(config: &IndexConfig, common: &Common) -> Result<Arc<dyn TraceIndex>> {
    config.validate()?;
    match config {
        IndexConfig::Embedded(c) => Ok(Arc::new(
            crate::embedded::tantivy_index::TantivyTraceIndex::open(c, common)?,
        )),
        #[cfg(feature = "opensearch")]
        IndexConfig::Opensearch(c) => Ok(Arc::new(crate::opensearch::OpenSearchTraceIndex::open(
            c, common,
        )?)),
        #[cfg(not(feature = "opensearch"))]
        IndexConfig::Opensearch(_) => Err(not_built("index", "opensearch")),
    }
}

/// The answer for a configured backend this binary was built without.
#[allow(dead_code)] // unused when every backend feature is on
fn not_built(seam: &str, backend: &str) -> Error {
    Error::Config(format!(
        "{seam} type \"{backend}\" is not available: clew was built without the \"{backend}\" feature"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span_store::admission::{default_max_bytes_per_trace, default_max_spans_per_trace};

    #[test]
    fn hbase_store_config_parses_with_defaults_and_validates() {
        let config: StoreConfig = parse(r#"{"type": "hbase", "thrift_addrs": ["127.0.0.1:9090"]}"#);
        assert_eq!(
            config,
            StoreConfig::Hbase(HbaseStoreConfig {
                thrift_addrs: vec!["127.0.0.1:9090".into()],
                transport: HbaseTransport::Socket,
                ca_cert_path: None,
                insecure_skip_verify: false,
                table: "clew_spans".into(),
                pool_size: 4,
                timeout_ms: 5000,
                max_spans_per_trace: default_max_spans_per_trace(),
                max_bytes_per_trace: default_max_bytes_per_trace(),
            })
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
            IndexConfig::Opensearch(OpenSearchIndexConfig {
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
                bulk_concurrency: 4,
                number_of_shards: 1,
                number_of_replicas: 1,
            })
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

    #[test]
    fn unknown_keys_and_types_are_errors_in_every_variant() {
        for json in [
            r#"{"type": "embedded", "max_span_per_trace": 1}"#,
            r#"{"type": "hbase", "thrift_addrs": ["h:1"], "tabel": "t"}"#,
            r#"{"type": "cassandra"}"#,
            r#"{"max_span_per_trace": 1}"#,
        ] {
            let err = serde_json::from_str::<StoreConfig>(json)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("unknown field")
                    || err.contains("unknown variant")
                    || err.contains("missing field"),
                "{json}: {err}"
            );
        }
        for json in [
            r#"{"type": "embedded", "commit_interval": 5}"#,
            r#"{"type": "opensearch", "urls": ["http://h:1"], "pasword": "p"}"#,
        ] {
            let err = serde_json::from_str::<IndexConfig>(json)
                .unwrap_err()
                .to_string();
            assert!(err.contains("unknown field"), "{json}: {err}");
        }
        let defaults: IndexConfig = serde_json::from_str(r#"{"type": "embedded"}"#).unwrap();
        assert_eq!(defaults, IndexConfig::default());
        // no `type`: the embedded backend, tuned
        let tuned: StoreConfig = serde_json::from_str(r#"{"max_spans_per_trace": 7}"#).unwrap();
        assert!(matches!(tuned, StoreConfig::Embedded(c) if c.max_spans_per_trace == 7));
        let tuned: IndexConfig = serde_json::from_str(r#"{"commit_interval_ms": 250}"#).unwrap();
        assert!(matches!(tuned, IndexConfig::Embedded(c) if c.commit_interval_ms == 250));
    }

    #[test]
    fn serialized_form_keeps_the_type_key() {
        let json = serde_json::to_value(StoreConfig::default()).unwrap();
        assert_eq!(json["type"], "embedded");
        assert_eq!(json["max_spans_per_trace"], 50_000);
        let json = serde_json::to_value(IndexConfig::Opensearch(OpenSearchIndexConfig::new(vec![
            "http://h:1".into(),
        ])))
        .unwrap();
        assert_eq!(json["type"], "opensearch");
        assert_eq!(json["urls"][0], "http://h:1");
    }

    #[cfg(not(feature = "hbase"))]
    #[test]
    fn a_backend_left_out_of_the_build_is_named() {
        let config = StoreConfig::Hbase(HbaseStoreConfig::new(vec!["h:1".into()]));
        let common = Common {
            data_dir: std::env::temp_dir(),
            retention: crate::RetentionClasses::uniform(1),
            indexed_attributes: vec![],
        };
        let err = open_span_store(&config, &common).err().unwrap().to_string();
        assert!(
            err.contains(
                r#"store type "hbase" is not available: clew was built without the "hbase" feature"#
            ),
            "{err}"
        );
    }

    #[cfg(not(feature = "opensearch"))]
    #[test]
    fn an_index_left_out_of_the_build_is_named() {
        let config = IndexConfig::Opensearch(OpenSearchIndexConfig::new(vec!["http://h:1".into()]));
        let common = Common {
            data_dir: std::env::temp_dir(),
            retention: crate::RetentionClasses::uniform(1),
            indexed_attributes: vec![],
        };
        let err = open_trace_index(&config, &common)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(r#"built without the "opensearch" feature"#),
            "{err}"
        );
    }

    fn parse(json: &str) -> StoreConfig {
        serde_json::from_str(json).unwrap()
    }
}
