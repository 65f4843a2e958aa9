//! The `clew` configuration file, with command-line and `CLEW_*` environment overrides.
//!
//! Precedence: command-line flag > `CLEW_*` environment variable > config file > default.
//! Every default works for the all-in-one mode:
//!
//! ```toml
//! data_dir = "./clew-data"
//! retention_days = 7
//! indexed_attributes = ["*"]   # every attribute; or a list of names for a leaner index
//!
//! [query]
//! http_addr = "127.0.0.1:16686"
//! jaeger_storage_grpc_addr = "127.0.0.1:17271"   # Jaeger v2 remote storage (jaeger.storage.v2)
//!
//! [collector]                 # see clew_collector::CollectorConfig
//! otlp_grpc_addr = "127.0.0.1:4317"
//! otlp_http_addr = "127.0.0.1:4318"
//! zipkin_addr = "127.0.0.1:9411"   # Zipkin v2 API, POST /api/v2/spans
//! sampling_http_addr = "127.0.0.1:5778"   # Jaeger remote sampling, GET /api/sampling?service=
//! sampling_grpc_addr = "127.0.0.1:5779"   # Jaeger remote sampling, gRPC SamplingManager
//! sampling_strategies = "/etc/clew/strategies.json"   # optional: Jaeger strategies file
//! business_keys = ["order_id"]
//!
//! [[collector.tenants]]      # optional, per tenant: an ingest rate limit, a retention, or both
//! name = "shop"               # the [[auth.tokens]] tenant, or "default"
//! spans_per_second = 5000.0   # burst_spans = N: optional, default one second's worth
//! retention_days = 30         # default: the global retention_days; equal values share a class
//!
//! [collector.kafka]          # optional: consume spans from Kafka too
//! brokers = ["127.0.0.1:9092"]
//! topics = [{ name = "clew-spans", format = "avro" }]
//!
//! [span_metrics]             # RED + service-graph metrics on /metrics, see clew_collector::SpanMetricsConfig
//! enabled = true
//! dimensions = []             # e.g. ["http.route", { name = "http.request.method", default = "GET" }]
//! cardinality_limit = 5000    # series per metric and tenant; more fold into otel_metric_overflow="true"
//! service_graph = true
//! max_tenants = 100           # tenants with span metrics
//!
//! [inventory]                # the fleet inventory, see clew_collector::inventory
//! enabled = true
//! max_instances = 10000       # per tenant
//! quiet_after_secs = 600
//!
//! [store]
//! type = "embedded"
//!
//! [index]
//! type = "embedded"
//!
//! [redaction]                # on by default, see clew_collector::redaction and docs/redaction.md
//! enabled = true
//! default_rules = true        # secret keys, auth/cookie headers, cards, bearer, JWT, URL secrets
//! exempt_keys = []            # besides business_keys: exempt from the value detectors
//! # hash_key: or CLEW_REDACTION_HASH_KEY (never printed); needed by action = "hash"
//! [[redaction.rules]]
//! attribute = "user.email"    # a key glob, or pattern = "<regex>"
//! action = "hash"             # drop | mask | hash; keep_last = N with mask
//!
//! [alerting]                 # optional: error-signature alerts, see clew_collector::alerting
//! alertmanager_urls = ["http://127.0.0.1:9093"]
//! [[alerting.error_rules]]
//! name = "errors"
//! min_count = 20
//! window = "10s"
//! severity = "critical"
//!
//! [auth]                     # optional: bearer tokens, see clew_auth and docs/auth.md
//! [[auth.tokens]]
//! token_sha256 = "…"          # or token = "…" (at least 16 characters)
//! tenant = "shop"
//! scopes = ["ingest"]         # among ingest, read, admin
//! ```
//!
//! `[alerting] error_rules` and `[auth] tokens` are re-read while clew runs when the file
//! changes (a file that does not parse or validate keeps the rules and tokens in force);
//! everything else is read at start. Without `[auth]` tokens every listener must be on a
//! loopback address, unless `insecure_listen = true` / `--insecure-listen`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clew_collector::alerting::AlertingConfig;
use clew_collector::redaction::RedactionConfig;
use clew_collector::{CollectorConfig, SpanMetricsConfig, KAFKA_UNAVAILABLE};
use clew_store::{IndexConfig, StoreConfig};
use serde::{Deserialize, Serialize};

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the embedded store and index keep their files.
    pub data_dir: PathBuf,
    /// Traces older than this are deleted, a whole day at a time.
    pub retention_days: u32,
    /// Attributes indexed as exact `name=value` terms (besides business keys): `"*"`
    /// (the default) indexes every string, int, bool and double attribute of spans, their
    /// resources, scopes and events, values up to 256 bytes; otherwise only the names
    /// listed, looked up on the span, then its resource.
    pub indexed_attributes: Vec<String>,
    /// How often expired data is looked for, in seconds.
    pub retention_check_interval_secs: u64,
    pub query: QueryConfig,
    pub collector: CollectorConfig,
    /// `[span_metrics]`: RED and service-graph metrics from the stored spans.
    pub span_metrics: SpanMetricsConfig,
    /// `[inventory]`: services, instances, versions and SDKs from the stored spans.
    pub inventory: clew_collector::inventory::InventoryConfig,
    pub store: StoreConfig,
    pub index: IndexConfig,
    /// Error-signature alerts; absent: none.
    #[serde(skip_serializing_if = "is_default")]
    pub alerting: AlertingConfig,
    /// `[redaction]`: secrets dropped, masked or hashed before anything is written (on by
    /// default with the built-in rules).
    pub redaction: RedactionConfig,
    /// Listen on non-loopback addresses without `[auth]` (`--insecure-listen`): for a
    /// network that is itself trusted.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub insecure_listen: bool,
    /// `[auth]`: bearer tokens every listener requires; absent: none (loopback only).
    /// Printed with each plain `token` replaced by its `token_sha256`.
    #[serde(skip_serializing_if = "is_default")]
    pub auth: clew_auth::AuthConfig,
    /// `[tls]`: every listener speaks TLS with this certificate; absent: plain text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

pub use clew_collector::config::TlsConfig;

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// Settings of the query API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// Address of the query API and UI.
    pub http_addr: SocketAddr,
    /// Address of Jaeger v2's remote-storage gRPC API (`jaeger.storage.v2` TraceReader and
    /// DependencyReader), for a Jaeger with a `grpc` storage backend pointed at clew.
    pub jaeger_storage_grpc_addr: SocketAddr,
    /// `POST /api/v1/purge` deletes every stored trace. Only for conformance test suites
    /// (Jaeger's storage integration tests); set by `--enable-purge-for-tests` alone,
    /// never from a config file, and never printed.
    #[serde(skip)]
    pub enable_purge_for_tests: bool,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 16686)),
            jaeger_storage_grpc_addr: SocketAddr::from(([127, 0, 0, 1], 17271)),
            enable_purge_for_tests: false,
        }
    }
}

pub fn default_indexed_attributes() -> Vec<String> {
    vec![clew_store::trace_index::span_doc::ALL_ATTRIBUTES.to_string()]
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./clew-data"),
            retention_days: 7,
            indexed_attributes: default_indexed_attributes(),
            retention_check_interval_secs: 600,
            query: QueryConfig::default(),
            collector: CollectorConfig::default(),
            span_metrics: SpanMetricsConfig::default(),
            inventory: Default::default(),
            store: StoreConfig::default(),
            index: IndexConfig::default(),
            alerting: AlertingConfig::default(),
            redaction: RedactionConfig::default(),
            insecure_listen: false,
            auth: clew_auth::AuthConfig::default(),
            tls: None,
        }
    }
}

/// Overrides from the command line or `CLEW_*` variables (clap merges the two).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// Configuration file (TOML).
    #[arg(long, env = "CLEW_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory of the embedded store and index [default: ./clew-data].
    #[arg(long, env = "CLEW_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// OTLP/gRPC listen address [default: 127.0.0.1:4317].
    #[arg(long, env = "CLEW_OTLP_GRPC_ADDR", value_name = "ADDR")]
    pub otlp_grpc_addr: Option<SocketAddr>,
    /// OTLP/HTTP listen address [default: 127.0.0.1:4318].
    #[arg(long, env = "CLEW_OTLP_HTTP_ADDR", value_name = "ADDR")]
    pub otlp_http_addr: Option<SocketAddr>,
    /// Zipkin v2 API listen address (`POST /api/v2/spans`) [default: 127.0.0.1:9411].
    #[arg(long, env = "CLEW_ZIPKIN_ADDR", value_name = "ADDR")]
    pub zipkin_addr: Option<SocketAddr>,
    /// Jaeger remote sampling HTTP listen address (`GET /api/sampling?service=`)
    /// [default: 127.0.0.1:5778].
    #[arg(long, env = "CLEW_SAMPLING_HTTP_ADDR", value_name = "ADDR")]
    pub sampling_http_addr: Option<SocketAddr>,
    /// Jaeger remote sampling gRPC listen address (`jaeger.api_v2.SamplingManager`)
    /// [default: 127.0.0.1:5779].
    #[arg(long, env = "CLEW_SAMPLING_GRPC_ADDR", value_name = "ADDR")]
    pub sampling_grpc_addr: Option<SocketAddr>,
    /// Jaeger sampling-strategies file (JSON) served to SDKs, re-read when it changes
    /// [default: none, every service gets probabilistic 0.001].
    #[arg(long, env = "CLEW_SAMPLING_STRATEGIES", value_name = "FILE")]
    pub sampling_strategies: Option<PathBuf>,
    /// Query API and UI listen address [default: 127.0.0.1:16686].
    #[arg(long, env = "CLEW_HTTP_ADDR", value_name = "ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Jaeger v2 remote-storage gRPC listen address (`jaeger.storage.v2`)
    /// [default: 127.0.0.1:17271].
    #[arg(long, env = "CLEW_JAEGER_STORAGE_GRPC_ADDR", value_name = "ADDR")]
    pub jaeger_storage_grpc_addr: Option<SocketAddr>,
    /// TESTS ONLY: serve `POST /api/v1/purge`, which DESTROYS ALL STORED TRACES, for
    /// storage conformance suites (Jaeger's storage integration tests). Never enable this
    /// on a server holding data you want to keep.
    #[arg(long, env = "CLEW_ENABLE_PURGE_FOR_TESTS")]
    pub enable_purge_for_tests: bool,
    /// Listen on non-loopback addresses although no `[auth]` tokens are configured:
    /// anyone who reaches the ports can send and read traces.
    #[arg(long, env = "CLEW_INSECURE_LISTEN")]
    pub insecure_listen: bool,
    /// Attribute name to index as a business key (repeatable; adds to the config file's list).
    /// The environment variable takes a comma-separated list.
    #[arg(
        long = "business-key",
        env = "CLEW_BUSINESS_KEYS",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub business_keys: Vec<String>,
    /// Days of data to keep [default: 7].
    #[arg(long, env = "CLEW_RETENTION_DAYS", value_name = "N")]
    pub retention_days: Option<u32>,
    /// Kafka bootstrap brokers of the Kafka receiver (replaces `[collector.kafka] brokers`;
    /// needs a `[collector.kafka]` section naming the topics). The environment variable
    /// takes a comma-separated list.
    #[arg(
        long = "kafka-brokers",
        env = "CLEW_KAFKA_BROKERS",
        value_name = "HOST:PORT"
    )]
    pub kafka_brokers: Vec<String>,
}

impl Config {
    /// Reads the file named by the overrides (if any), then applies the overrides.
    pub fn load(overrides: &Overrides) -> Result<Config> {
        let mut config = match &overrides.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        config.apply(overrides)?;
        config.redaction.apply_hash_key_env(
            std::env::var(clew_collector::redaction::config::HASH_KEY_ENV).ok(),
        );
        config.validate().with_context(|| match &overrides.config {
            Some(p) => format!("invalid configuration (file {})", p.display()),
            None => "invalid configuration".to_string(),
        })?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read config file {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("failed to parse config file {}", path.display()))
    }

    fn apply(&mut self, o: &Overrides) -> Result<()> {
        if let Some(d) = &o.data_dir {
            self.data_dir = d.clone();
        }
        if let Some(a) = o.otlp_grpc_addr {
            self.collector.otlp_grpc_addr = a.to_string();
        }
        if let Some(a) = o.otlp_http_addr {
            self.collector.otlp_http_addr = a.to_string();
        }
        if let Some(a) = o.zipkin_addr {
            self.collector.zipkin_addr = a.to_string();
        }
        if let Some(a) = o.sampling_http_addr {
            self.collector.sampling_http_addr = a.to_string();
        }
        if let Some(a) = o.sampling_grpc_addr {
            self.collector.sampling_grpc_addr = a.to_string();
        }
        if let Some(f) = &o.sampling_strategies {
            self.collector.sampling_strategies = Some(f.clone());
        }
        if let Some(a) = o.http_addr {
            self.query.http_addr = a;
        }
        if let Some(a) = o.jaeger_storage_grpc_addr {
            self.query.jaeger_storage_grpc_addr = a;
        }
        if o.enable_purge_for_tests {
            self.query.enable_purge_for_tests = true;
        }
        if o.insecure_listen {
            self.insecure_listen = true;
        }
        for key in &o.business_keys {
            let key = key.trim();
            if !key.is_empty() && !self.collector.business_keys.iter().any(|k| k == key) {
                self.collector.business_keys.push(key.to_string());
            }
        }
        if let Some(r) = o.retention_days {
            self.retention_days = r;
        }
        let brokers = parse_kafka_brokers(&o.kafka_brokers)?;
        if !brokers.is_empty() {
            if !cfg!(feature = "kafka") {
                bail!("{KAFKA_UNAVAILABLE} (--kafka-brokers / CLEW_KAFKA_BROKERS)");
            }
            match &mut self.collector.kafka {
                Some(kafka) => kafka.brokers = brokers,
                None => bail!(
                    "--kafka-brokers / CLEW_KAFKA_BROKERS needs a [collector.kafka] section in the config file naming the topics to consume"
                ),
            }
        }
        Ok(())
    }

    /// Checks every value without touching the disk or the network.
    pub fn validate(&self) -> Result<()> {
        if self.retention_days == 0 {
            bail!("retention_days must be at least 1");
        }
        if self.retention_check_interval_secs == 0 {
            bail!("retention_check_interval_secs must be at least 1");
        }
        if self.data_dir.as_os_str().is_empty() {
            bail!("data_dir must not be empty");
        }
        self.collector.validate().context("in [collector]")?;
        self.span_metrics.validate().context("in [span_metrics]")?;
        self.inventory.validate().context("in [inventory]")?;
        self.store.validate().context("in [store]")?;
        self.index.validate().context("in [index]")?;
        self.alerting.validate().map_err(anyhow::Error::msg)?;
        // the error names the rule (`redaction.rules[N] ("name")`)
        self.redaction.validate()?;
        // the error names the entry (`auth.tokens[N]`)
        self.auth.validate()?;
        Ok(())
    }

    /// Every listener `clew serve` opens, as (what, configured address).
    pub fn listeners(&self) -> Vec<(&'static str, String)> {
        let c = &self.collector;
        vec![
            ("OTLP gRPC (--otlp-grpc-addr)", c.otlp_grpc_addr.clone()),
            ("OTLP HTTP (--otlp-http-addr)", c.otlp_http_addr.clone()),
            ("Zipkin (--zipkin-addr)", c.zipkin_addr.clone()),
            (
                "remote sampling HTTP (--sampling-http-addr)",
                c.sampling_http_addr.clone(),
            ),
            (
                "remote sampling gRPC (--sampling-grpc-addr)",
                c.sampling_grpc_addr.clone(),
            ),
            (
                "query API and UI (--http-addr)",
                self.query.http_addr.to_string(),
            ),
            (
                "Jaeger remote storage gRPC (--jaeger-storage-grpc-addr)",
                self.query.jaeger_storage_grpc_addr.to_string(),
            ),
        ]
    }

    /// The settings every storage backend shares.
    pub fn storage_common(&self) -> clew_store::Common {
        clew_store::Common {
            data_dir: self.data_dir.clone(),
            retention: self.retention_classes(),
            indexed_attributes: self.indexed_attributes.clone(),
        }
    }

    /// The global `retention_days` and the tenants of `[[collector.tenants]]` that set
    /// their own (the entries are validated: a name that does not parse is left out).
    pub fn retention_classes(&self) -> clew_store::RetentionClasses {
        clew_store::RetentionClasses::new(
            self.retention_days,
            self.collector.tenants.iter().filter_map(|t| {
                Some((clew_proto::Tenant::parse(&t.name).ok()?, t.retention_days?))
            }),
        )
    }

    /// The retention classes in force, as `#` comment lines for `clew config`.
    pub fn describe_retention(&self) -> String {
        use std::fmt::Write;
        let mut out = String::from(
            "# retention classes (days each tenant's traces are kept; [[collector.tenants]] retention_days):\n",
        );
        for (class, days, tenants) in self.retention_classes().classes() {
            let who = if class == clew_store::RetentionClass::Default {
                "default class (retention_days): every other tenant".to_string()
            } else {
                tenants
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(out, "#   {days} days: {who}");
        }
        out
    }
}

/// The Kafka broker list of `--kafka-brokers` / `CLEW_KAFKA_BROKERS`, for `clew serve` and
/// `clew agent` alike: each value is a comma-separated list of `host:port` (a repeated flag
/// adds to it), each entry trimmed; an empty entry is an error.
pub fn parse_kafka_brokers<S: AsRef<str>>(values: &[S]) -> Result<Vec<String>> {
    let mut brokers = Vec::new();
    for value in values {
        let value = value.as_ref();
        for (i, entry) in value.split(',').enumerate() {
            let entry = entry.trim();
            if entry.is_empty() {
                bail!(
                    "invalid --kafka-brokers / CLEW_KAFKA_BROKERS {value:?}: entry {} is empty (expected host:port[,host:port…])",
                    i + 1
                );
            }
            brokers.push(entry.to_string());
        }
    }
    Ok(brokers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.query.http_addr.to_string(), "127.0.0.1:16686");
        assert_eq!(
            c.query.jaeger_storage_grpc_addr.to_string(),
            "127.0.0.1:17271"
        );
        assert!(!c.query.enable_purge_for_tests);
        assert_eq!(c.collector.otlp_grpc_addr, "127.0.0.1:4317");
        assert_eq!(c.collector.otlp_http_addr, "127.0.0.1:4318");
        assert_eq!(c.collector.sampling_http_addr, "127.0.0.1:5778");
        assert_eq!(c.collector.sampling_grpc_addr, "127.0.0.1:5779");
        assert_eq!(c.collector.sampling_strategies, None);
        assert_eq!(c.data_dir, PathBuf::from("./clew-data"));
    }

    #[test]
    fn file_then_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clew.toml");
        std::fs::write(
            &path,
            "data_dir = \"/var/lib/clew\"\nretention_days = 3\n[collector]\nbusiness_keys = [\"order_id\"]\n[store]\ntype = \"embedded\"\nmax_spans_per_trace = 10\n",
        )
        .unwrap();
        let o = Overrides {
            config: Some(path),
            retention_days: Some(9),
            business_keys: vec!["user_id".into(), "order_id".into()],
            ..Default::default()
        };
        let c = Config::load(&o).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/clew"));
        assert_eq!(c.retention_days, 9);
        assert_eq!(
            c.collector.business_keys,
            vec!["order_id".to_string(), "user_id".to_string()]
        );
        assert!(matches!(
            c.store,
            StoreConfig::Embedded(clew_store::EmbeddedStoreConfig {
                max_spans_per_trace: 10,
                ..
            })
        ));
    }

    #[test]
    fn jaeger_storage_address_from_file_then_flag_and_purge_only_from_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clew.toml");
        std::fs::write(
            &path,
            "[query]\njaeger_storage_grpc_addr = \"0.0.0.0:1234\"\n",
        )
        .unwrap();
        let from_file = Config::load(&Overrides {
            config: Some(path.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            from_file.query.jaeger_storage_grpc_addr.to_string(),
            "0.0.0.0:1234"
        );
        let flagged = Config::load(&Overrides {
            config: Some(path),
            jaeger_storage_grpc_addr: Some("127.0.0.1:5555".parse().unwrap()),
            enable_purge_for_tests: true,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            flagged.query.jaeger_storage_grpc_addr.to_string(),
            "127.0.0.1:5555"
        );
        assert!(flagged.query.enable_purge_for_tests);
        // the purge switch is neither printed nor read from a file
        let printed = toml::to_string(&flagged).unwrap();
        assert!(!printed.contains("purge"), "{printed}");
        let file = dir.path().join("purge.toml");
        std::fs::write(&file, "[query]\nenable_purge_for_tests = true\n").unwrap();
        assert!(Config::from_file(&file).is_err());
    }

    #[test]
    fn unknown_keys_are_errors_that_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "retention_dayz = 3\n").unwrap();
        let err = Config::load(&Overrides {
            config: Some(path.clone()),
            ..Default::default()
        })
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("bad.toml"), "{text}");
        assert!(text.contains("retention_dayz"), "{text}");
    }

    #[test]
    fn tls_section_reads_back_and_refuses_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tls.toml");
        std::fs::write(
            &path,
            "[tls]\ncert_file = \"/etc/clew/tls.pem\"\nkey_file = \"/etc/clew/tls.key\"\n",
        )
        .unwrap();
        let c = Config::from_file(&path).unwrap();
        let tls = c.tls.as_ref().unwrap();
        assert_eq!(tls.cert_file, PathBuf::from("/etc/clew/tls.pem"));
        assert_eq!(tls.client_ca_file, None);
        let printed = toml::to_string_pretty(&c).unwrap();
        assert!(printed.contains("[tls]"), "{printed}");
        assert_eq!(toml::from_str::<Config>(&printed).unwrap(), c);
        // absent: no section printed
        let printed = toml::to_string_pretty(&Config::default()).unwrap();
        assert!(!printed.contains("[tls]"), "{printed}");

        std::fs::write(
            &path,
            "[tls]\ncert_file = \"a\"\nkey_file = \"b\"\nca = \"c\"\n",
        )
        .unwrap();
        assert!(Config::from_file(&path).is_err());
        std::fs::write(&path, "[tls]\ncert_file = \"a\"\n").unwrap();
        let err = format!("{:#}", Config::from_file(&path).unwrap_err());
        assert!(err.contains("key_file"), "{err}");
    }

    #[cfg(feature = "kafka")]
    #[test]
    fn kafka_section_and_brokers_override() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clew.toml");
        std::fs::write(
            &path,
            "[collector.kafka]\nbrokers = [\"old:9092\"]\ntopics = [{ name = \"clew-spans\", format = \"avro\" }]\n",
        )
        .unwrap();
        let o = Overrides {
            config: Some(path.clone()),
            kafka_brokers: vec!["a:1".into(), " b:2 ".into()],
            ..Default::default()
        };
        let c = Config::load(&o).unwrap();
        let kafka = c.collector.kafka.as_ref().unwrap();
        assert_eq!(kafka.brokers, vec!["a:1".to_string(), "b:2".to_string()]);
        assert_eq!(kafka.group_id, "clew-collector");
        // the printed configuration reads back the same
        let printed = toml::to_string_pretty(&c).unwrap();
        assert_eq!(toml::from_str::<Config>(&printed).unwrap(), c);

        let err = Config::load(&Overrides {
            kafka_brokers: vec!["a:1".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("[collector.kafka]"), "{err:#}");

        std::fs::write(
            &path,
            "[collector.kafka]\nbrokers = [\"a:1\"]\ntopics = [{ pattern = \"no-caret\", format = \"otlp_proto\" }]\n",
        )
        .unwrap();
        let err = Config::load(&Overrides {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("collector.kafka.topics"), "{text}");
        assert!(text.contains("clew.toml"), "{text}");
    }

    #[test]
    fn kafka_brokers_are_split_trimmed_and_empties_refused() {
        assert_eq!(
            parse_kafka_brokers(&["a:1, b:2", "c:3"]).unwrap(),
            vec!["a:1".to_string(), "b:2".to_string(), "c:3".to_string()]
        );
        assert!(parse_kafka_brokers::<&str>(&[]).unwrap().is_empty());
        for bad in ["a:1,,b:2", "a:1,", " ", ""] {
            let err = parse_kafka_brokers(&[bad]).unwrap_err().to_string();
            assert!(err.contains("CLEW_KAFKA_BROKERS"), "{bad:?}: {err}");
            assert!(err.contains("is empty"), "{bad:?}: {err}");
        }
    }

    #[cfg(not(feature = "kafka"))]
    #[test]
    fn kafka_settings_need_the_kafka_feature() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clew.toml");
        std::fs::write(
            &path,
            "[collector.kafka]\nbrokers = [\"a:1\"]\ntopics = [{ name = \"clew-spans\", format = \"avro\" }]\n",
        )
        .unwrap();
        let err = Config::load(&Overrides {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains(KAFKA_UNAVAILABLE), "{err:#}");
        let err = Config::load(&Overrides {
            kafka_brokers: vec!["a:1".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains(KAFKA_UNAVAILABLE), "{err:#}");
    }

    #[test]
    fn alerting_section_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clew.toml");
        std::fs::write(
            &path,
            "[alerting]\nalertmanager_urls = [\"http://127.0.0.1:9093\"]\nwebhook_urls = []\n[[alerting.error_rules]]\nname = \"errors\"\nservice = \"payments\"\nmin_count = 20\nwindow = \"10s\"\nseverity = \"critical\"\n",
        )
        .unwrap();
        let o = Overrides {
            config: Some(path.clone()),
            ..Default::default()
        };
        let c = Config::load(&o).unwrap();
        assert_eq!(c.alerting.error_rules[0].min_count, 20);
        let printed = toml::to_string_pretty(&c).unwrap();
        assert_eq!(toml::from_str::<Config>(&printed).unwrap(), c);
        std::fs::write(
            &path,
            "[alerting]\n[[alerting.error_rules]]\nname = \"errors\"\nmin_count = 20\nwindow = \"ten seconds\"\n",
        )
        .unwrap();
        let err = format!("{:#}", Config::load(&o).unwrap_err());
        assert!(err.contains("alerting.error_rules[0].window"), "{err}");
        assert!(err.contains("clew.toml"), "{err}");
    }

    #[test]
    fn span_metrics_section_reads_validates_and_prints_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clew.toml");
        std::fs::write(
            &path,
            "[span_metrics]\ndimensions = [\"http.route\", { name = \"http.request.method\", default = \"GET\" }]\ncardinality_limit = 100\nservice_graph = false\n",
        )
        .unwrap();
        let c = Config::load(&Overrides {
            config: Some(path.clone()),
            ..Default::default()
        })
        .unwrap();
        assert!(c.span_metrics.enabled);
        assert!(!c.span_metrics.service_graph);
        assert_eq!(c.span_metrics.cardinality_limit, 100);
        assert_eq!(c.span_metrics.dimensions.len(), 2);
        let printed = toml::to_string_pretty(&c).unwrap();
        assert_eq!(toml::from_str::<Config>(&printed).unwrap(), c);
        assert!(Config::default().span_metrics.enabled);

        std::fs::write(&path, "[span_metrics]\ndimensions = [\"span.name\"]\n").unwrap();
        let err = Config::load(&Overrides {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("span_metrics.dimensions"), "{text}");
        assert!(text.contains("span_name"), "{text}");
        assert!(text.contains("clew.toml"), "{text}");
    }

    #[test]
    fn redaction_is_on_by_default_and_a_bad_rule_is_an_error_naming_it_and_the_file() {
        let c = Config::default();
        assert!(c.redaction.enabled && c.redaction.default_rules);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clew.toml");
        std::fs::write(
            &path,
            "[redaction]\n[[redaction.rules]]\nname = \"ssn\"\npattern = \"(\\\\d{3}\"\naction = \"mask\"\n",
        )
        .unwrap();
        let err = format!(
            "{:#}",
            Config::load(&Overrides {
                config: Some(path.clone()),
                ..Default::default()
            })
            .unwrap_err()
        );
        assert!(err.contains("redaction.rules[0] (\"ssn\")"), "{err}");
        assert!(err.contains("does not compile"), "{err}");
        assert!(err.contains("clew.toml"), "{err}");
        // the printed configuration reads back the same, without the hash key
        std::fs::write(
            &path,
            "[redaction]\nhash_key = \"k-0123456789abcdef\"\n[[redaction.rules]]\nattribute = \"user.email\"\naction = \"hash\"\n",
        )
        .unwrap();
        let c = Config::load(&Overrides {
            config: Some(path),
            ..Default::default()
        })
        .unwrap();
        let printed = toml::to_string_pretty(&c).unwrap();
        assert!(!printed.contains("k-0123456789abcdef"), "{printed}");
        let back: Config = toml::from_str(&printed).unwrap();
        assert_eq!(back.redaction.rules, c.redaction.rules);
    }

    #[test]
    fn auth_is_read_printed_without_tokens_and_bad_entries_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clew.toml");
        std::fs::write(
            &path,
            "insecure_listen = true
[[auth.tokens]]
token = \"s3cret-0123456789ab\"
tenant = \"shop\"
scopes = [\"ingest\", \"read\"]
",
        )
        .unwrap();
        let o = Overrides {
            config: Some(path.clone()),
            ..Default::default()
        };
        let c = Config::load(&o).unwrap();
        assert!(c.auth.enabled() && c.insecure_listen);
        let printed = toml::to_string_pretty(&c).unwrap();
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(printed.contains("token_sha256"), "{printed}");
        // the printed form is the same configuration
        let back: Config = toml::from_str(&printed).unwrap();
        back.validate().unwrap();
        assert!(!toml::to_string(&Config::default())
            .unwrap()
            .contains("auth"));

        std::fs::write(
            &path,
            "[[auth.tokens]]
token = \"s3cret-0123456789ab\"
tenant = \"shop\"
scopes = [\"write\"]
",
        )
        .unwrap();
        let err = format!("{:#}", Config::load(&o).unwrap_err());
        assert!(
            err.contains("auth.tokens[0]: unknown scope \"write\""),
            "{err}"
        );
        assert!(err.contains("clew.toml"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn tenants_retention_days_make_the_store_s_retention_classes() {
        let c: Config = toml::from_str(
            "retention_days = 5
[[collector.tenants]]
name = \"shop\"
retention_days = 30
[[collector.tenants]]
name = \"bank\"
spans_per_second = 10.0
[[collector.tenants]]
name = \"same\"
retention_days = 5
",
        )
        .unwrap();
        c.validate().unwrap();
        let classes = c.storage_common().retention;
        let t = |n| clew_proto::Tenant::parse(n).unwrap();
        assert_eq!(classes.days_of(&t("shop")), 30);
        assert_eq!(
            classes.days_of(&t("bank")),
            5,
            "rate limit only: the global value"
        );
        assert_eq!(
            classes.class_of(&t("same")),
            clew_store::RetentionClass::Default
        );
        assert_eq!(classes.days_of(&clew_proto::Tenant::default()), 5);
        assert_eq!(classes.classes().len(), 2, "5 days and 30 days");
        assert_eq!(
            c.describe_retention(),
            "# retention classes (days each tenant's traces are kept; [[collector.tenants]] retention_days):\n\
             #   5 days: default class (retention_days): every other tenant\n\
             #   30 days: shop\n"
        );
        // the global value moved by --retention-days still decides the default class
        let mut c = c;
        c.retention_days = 30;
        let classes = c.retention_classes();
        assert_eq!(
            classes.class_of(&t("shop")),
            clew_store::RetentionClass::Default
        );
        assert_eq!(classes.days_of(&t("same")), 5, "now a class of its own");

        for (text, why) in [
            (
                "[[collector.tenants]]\nname = \"shop\"\nretention_days = 0\n",
                "collector.tenants: [0]: retention_days must be at least 1",
            ),
            (
                "[[collector.tenants]]\nname = \"shop\"\n",
                "sets neither spans_per_second nor retention_days",
            ),
            (
                "[[collector.tenants]]\nname = \"shop\"\nretention_days = -1\n",
                "retention_days",
            ),
        ] {
            let err = toml::from_str::<Config>(text)
                .map_err(anyhow::Error::from)
                .and_then(|c| c.validate())
                .unwrap_err();
            assert!(format!("{err:#}").contains(why), "{text}: {err:#}");
        }
    }

    #[test]
    fn invalid_values_are_rejected() {
        let o = Overrides {
            retention_days: Some(0),
            ..Default::default()
        };
        let err = Config::load(&o).unwrap_err();
        assert!(format!("{err:#}").contains("retention_days"));
    }
}
