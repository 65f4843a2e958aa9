//! `clew agent`: loads the agent configuration (file, `CLEW_*` environment, flags), starts
//! the agent and stops it cleanly on SIGTERM/SIGINT.
//!
//! ```text
//!  agent.toml + env + flags ─▶ AgentConfig ─▶ clew_collector::agent::Agent
//!                                              (OTLP gRPC + HTTP ─▶ Avro ─▶ Kafka | spool)
//!  SIGTERM ─▶ stop OTLP listeners, finish in-flight requests ─▶ flush producer ─▶ exit
//!             (undelivered records stay in the spool and are replayed on the next start)
//! ```

//!
//! The agent ships to Kafka: a build without the cargo feature `kafka` has no agent, and
//! `clew agent` says so.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
#[cfg(feature = "kafka")]
use {
    anyhow::Context,
    clew_collector::agent::{Agent, AgentConfig},
    metrics_exporter_prometheus::PrometheusBuilder,
    std::path::Path,
    std::sync::Arc,
    tracing::{info, warn},
};

/// Overrides of the agent file, from the command line or `CLEW_*` variables.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AgentOverrides {
    /// Agent configuration file (TOML; see `clew_collector::agent::config`).
    #[arg(long, env = "CLEW_AGENT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Kafka bootstrap brokers, comma-separated host:port [default: localhost:9092].
    #[arg(long, env = "CLEW_KAFKA_BROKERS", value_name = "HOSTS")]
    pub kafka_brokers: Option<String>,
    /// Kafka topic for the Avro span records [default: clew-spans].
    #[arg(long, env = "CLEW_KAFKA_TOPIC", value_name = "TOPIC")]
    pub kafka_topic: Option<String>,
    /// OTLP/gRPC listen address [default: 127.0.0.1:4317].
    #[arg(long, env = "CLEW_OTLP_GRPC_ADDR", value_name = "ADDR")]
    pub otlp_grpc_addr: Option<SocketAddr>,
    /// OTLP/HTTP listen address [default: 127.0.0.1:4318].
    #[arg(long, env = "CLEW_OTLP_HTTP_ADDR", value_name = "ADDR")]
    pub otlp_http_addr: Option<SocketAddr>,
    /// Listen address of /metrics and /healthz [default: 127.0.0.1:9465].
    #[arg(long, env = "CLEW_METRICS_ADDR", value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Spool directory [default: ./clew-agent-spool].
    #[arg(long, env = "CLEW_SPOOL_DIR", value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,
    /// Most bytes the spool may take on disk [default: 1 GiB].
    #[arg(long, env = "CLEW_SPOOL_MAX_BYTES", value_name = "BYTES")]
    pub spool_max_bytes: Option<u64>,
    /// Sampling rates file, re-read when it changes or on SIGHUP.
    #[arg(long, env = "CLEW_SAMPLING_FILE", value_name = "FILE")]
    pub sampling_file: Option<PathBuf>,
    /// Jaeger sampling-strategies file (JSON, the one `clew serve --sampling-strategies`
    /// gives SDKs): head sampling follows it instead of the rates; re-read when it changes.
    #[arg(long, env = "CLEW_SAMPLING_STRATEGIES", value_name = "FILE")]
    pub sampling_strategies: Option<PathBuf>,
    /// Serve Jaeger remote sampling to local SDKs here (`GET /api/sampling?service=`)
    /// [default: not served].
    #[arg(long, env = "CLEW_SAMPLING_HTTP_ADDR", value_name = "ADDR")]
    pub sampling_http_addr: Option<SocketAddr>,
    /// Listen on non-loopback addresses although no `[auth]` tokens are configured.
    #[arg(long, env = "CLEW_INSECURE_LISTEN")]
    pub insecure_listen: bool,
}

/// `clew agent`: loads the configuration, prints it (`print_config`) or runs the agent
/// until SIGTERM/SIGINT.
#[cfg(feature = "kafka")]
pub fn main(overrides: &AgentOverrides, print_config: bool, log: &str) -> Result<()> {
    let config = load(overrides)?;
    if print_config {
        print!("{}", toml::to_string_pretty(&config)?);
        print!("\n{}", config.redaction.describe());
        return Ok(());
    }
    crate::init_logging(log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("clew-agent")
        .build()?;
    runtime.block_on(run(config, overrides.config.clone()))
}

#[cfg(not(feature = "kafka"))]
pub fn main(_: &AgentOverrides, _: bool, _: &str) -> Result<()> {
    anyhow::bail!("clew agent is not available: clew was built without the \"kafka\" feature")
}

/// File, then overrides, then validation (errors name the file).
#[cfg(feature = "kafka")]
pub fn load(o: &AgentOverrides) -> Result<AgentConfig> {
    let mut config = match &o.config {
        Some(path) => from_file(path)?,
        None => AgentConfig::default(),
    };
    config
        .redaction
        .apply_hash_key_env(std::env::var(clew_collector::redaction::config::HASH_KEY_ENV).ok());
    if let Some(v) = &o.kafka_brokers {
        config.kafka.brokers = crate::config::parse_kafka_brokers(&[v])?.join(",");
    }
    if let Some(v) = &o.kafka_topic {
        config.kafka.topic = v.clone();
    }
    if let Some(v) = o.otlp_grpc_addr {
        config.otlp_grpc_addr = v.to_string();
    }
    if let Some(v) = o.otlp_http_addr {
        config.otlp_http_addr = v.to_string();
    }
    if let Some(v) = o.metrics_addr {
        config.metrics_addr = v.to_string();
    }
    if let Some(v) = &o.spool_dir {
        config.spool.dir = v.clone();
    }
    if let Some(v) = o.spool_max_bytes {
        config.spool.max_bytes = v;
    }
    if let Some(v) = &o.sampling_file {
        config.sampling.file = Some(v.clone());
    }
    if let Some(v) = &o.sampling_strategies {
        config.sampling.strategies = Some(v.clone());
    }
    if let Some(v) = o.sampling_http_addr {
        config.sampling_http_addr = Some(v.to_string());
    }
    if o.insecure_listen {
        config.insecure_listen = true;
    }
    config.validate().with_context(|| match &o.config {
        Some(p) => format!("invalid agent configuration (file {})", p.display()),
        None => "invalid agent configuration".to_string(),
    })?;
    Ok(config)
}

#[cfg(feature = "kafka")]
fn from_file(path: &Path) -> Result<AgentConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read agent config file {}", path.display()))?;
    toml::from_str(&text)
        .with_context(|| format!("failed to parse agent config file {}", path.display()))
}

/// `config_file`: where `config` came from, re-read for changed `[auth]` tokens.
#[cfg(feature = "kafka")]
async fn run(config: AgentConfig, config_file: Option<PathBuf>) -> Result<()> {
    let mut listeners = vec![
        (
            "OTLP gRPC (--otlp-grpc-addr)",
            config.otlp_grpc_addr.as_str(),
        ),
        (
            "OTLP HTTP (--otlp-http-addr)",
            config.otlp_http_addr.as_str(),
        ),
        ("metrics (--metrics-addr)", config.metrics_addr.as_str()),
    ];
    if let Some(addr) = &config.sampling_http_addr {
        listeners.push(("remote sampling HTTP (--sampling-http-addr)", addr.as_str()));
    }
    crate::auth::check_exposure(&listeners, config.auth.enabled(), config.insecure_listen)?;
    let auth = clew_auth::Authenticator::new(&config.auth)?;
    if let Some(tls) = &config.tls {
        crate::serve::use_tls(tls)?;
    }
    let prometheus = PrometheusBuilder::new()
        .install_recorder()
        .context("failed to install the metrics recorder")?;
    let brokers = config.kafka.brokers.clone();
    let topic = config.kafka.topic.clone();
    let agent = Agent::start(config, Arc::new(move || prometheus.render()), auth.clone())
        .await
        .context("failed to start the agent")?;
    let (stop_reload, reload_stop) = tokio::sync::watch::channel(false);
    if let (true, Some(file)) = (
        auth.enabled(),
        config_file.and_then(|f| f.canonicalize().ok()),
    ) {
        tokio::spawn(crate::auth::reload_loop(auth.clone(), file, reload_stop));
    }
    // One machine-readable line on stdout (tests and scripts read it), details in the log.
    let sampling = agent
        .sampling_http_addr()
        .map(|a| format!(" sampling_http={a}"))
        .unwrap_or_default();
    println!(
        "clew agent listening otlp_grpc={} otlp_http={} metrics={} kafka={} topic={} spool={}{sampling}",
        agent.grpc_addr(),
        agent.http_addr(),
        agent.metrics_addr(),
        brokers,
        topic,
        agent.spool_dir().display()
    );
    crate::serve::wait_for_signal().await;
    let _ = stop_reload.send(true);
    info!("shutting down: finishing in-flight requests, flushing the producer");
    if let Err(error) = agent.shutdown().await {
        warn!(%error, "agent did not shut down cleanly");
    }
    info!("clew agent stopped");
    Ok(())
}

#[cfg(all(test, feature = "kafka"))]
mod tests {
    use super::*;

    #[test]
    fn file_then_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "[kafka]\nbrokers = \"a:1\"\ntopic = \"t1\"\n[spool]\ndir = \"/s\"\n",
        )
        .unwrap();
        let c = load(&AgentOverrides {
            config: Some(path),
            kafka_topic: Some("t2".into()),
            spool_max_bytes: Some(10 << 20),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.kafka.brokers, "a:1");
        assert_eq!(c.kafka.topic, "t2");
        assert_eq!(c.spool.dir, PathBuf::from("/s"));
        assert_eq!(c.spool.max_bytes, 10 << 20);
    }

    #[test]
    fn brokers_override_is_parsed_like_serve() {
        let c = load(&AgentOverrides {
            kafka_brokers: Some(" a:1 ,b:2".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.kafka.brokers, "a:1,b:2");
        let err = load(&AgentOverrides {
            kafka_brokers: Some("a:1,,b:2".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("CLEW_KAFKA_BROKERS"), "{err:#}");
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad-agent.toml");
        std::fs::write(&path, "[sampling]\ndefault_rate = 3.0\n").unwrap();
        let err = load(&AgentOverrides {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("bad-agent.toml") && text.contains("default_rate"),
            "{text}"
        );
    }
}

#[cfg(all(test, not(feature = "kafka")))]
mod tests_without_kafka {
    use super::*;

    #[test]
    fn agent_says_it_needs_the_kafka_feature() {
        let err = main(&AgentOverrides::default(), false, "info").unwrap_err();
        assert!(
            err.to_string()
                .contains("clew was built without the \"kafka\" feature"),
            "{err}"
        );
    }
}
