//! `clew serve`: builds the configured backends, starts the collector and the query API,
//! and shuts down cleanly on SIGTERM/SIGINT.
//!
//! ```text
//!  config ─▶ SpanStore + TraceIndex ─┬─▶ collector (OTLP gRPC + HTTP [+ Kafka] ─▶ pipeline ─▶ span metrics;
//!                                    │    Jaeger remote sampling HTTP + gRPC)
//!                                    ├─▶ query API (+ /metrics: the Prometheus recorder + span metrics;
//!                                    │   /api/v1/services/{s}/red from the span metrics,
//!                                    │   /api/v1/alerts from the alert evaluation)
//!                                    ├─▶ Jaeger remote storage (jaeger.storage.v2 gRPC readers)
//!                                    ├─▶ [alerting]: error-signature alerts → Alertmanager, webhooks
//!                                    └─▶ retention loop (drop expired buckets)
//!  SIGTERM ─▶ stop receivers (Kafka: commit durable records, leave the group), drain pipeline ─▶ stop query API ─▶ close index, close store
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing::{error, info, warn};

use crate::config::Config;

/// `config_file`: the file `config` was read from, watched for changed alert rules.
pub async fn serve(mut config: Config, config_file: Option<PathBuf>) -> Result<()> {
    // before anything is opened or bound
    let listeners = config.listeners();
    let listeners: Vec<(&str, &str)> = listeners.iter().map(|(w, a)| (*w, a.as_str())).collect();
    crate::auth::check_exposure(&listeners, config.auth.enabled(), config.insecure_listen)?;
    let prometheus = PrometheusBuilder::new()
        .install_recorder()
        .context("failed to install the metrics recorder")?;

    let created = create_data_dir(&config.data_dir)?;
    let running = match start(&mut config, config_file, prometheus).await {
        Ok(running) => running,
        Err(error) => {
            // A first run that fails (port taken, bad config) should not leave an empty
            // data directory behind; one that existed before is never touched.
            if let Some(dir) = created {
                remove_created_data_dir(&dir, &config.data_dir);
            }
            return Err(error);
        }
    };
    running.run_until_signal().await
}

/// What `start` has running.
struct Running {
    store: Arc<dyn clew_store::SpanStore>,
    index: Arc<dyn clew_store::TraceIndex>,
    collector: clew_collector::Collector,
    alerting: Option<Arc<clew_collector::alerting::Alerting>>,
    query: tokio::task::JoinHandle<std::io::Result<()>>,
    jaeger_storage: tokio::task::JoinHandle<std::io::Result<()>>,
    retention: tokio::task::JoinHandle<()>,
    /// Saves the fleet inventory; its last save runs once stopped.
    inventory: Option<tokio::task::JoinHandle<()>>,
    stop_tx: tokio::sync::watch::Sender<bool>,
}

/// Opens the backends, binds every listener and starts serving. On failure everything
/// opened so far is closed again (so the data directory is no longer in use).
async fn start(
    config: &mut Config,
    config_file: Option<PathBuf>,
    prometheus: PrometheusHandle,
) -> Result<Running> {
    config.data_dir = config
        .data_dir
        .canonicalize()
        .context("failed to resolve the data directory")?;
    let common = config.storage_common();
    let store = clew_store::open_span_store(&config.store, &common)
        .context("failed to open the span store")?;
    let index = match clew_store::open_trace_index(&config.index, &common) {
        Ok(index) => index,
        Err(error) => {
            let _ = store.close().await;
            return Err(error).context("failed to open the trace index");
        }
    };
    match start_serving(
        config,
        config_file,
        prometheus,
        store.clone(),
        index.clone(),
    )
    .await
    {
        Ok(running) => Ok(running),
        Err(error) => {
            let _ = index.close().await;
            let _ = store.close().await;
            Err(error)
        }
    }
}

async fn start_serving(
    config: &Config,
    config_file: Option<PathBuf>,
    prometheus: PrometheusHandle,
    store: Arc<dyn clew_store::SpanStore>,
    index: Arc<dyn clew_store::TraceIndex>,
) -> Result<Running> {
    let auth = clew_auth::Authenticator::new(&config.auth)?;
    if let Some(tls) = &config.tls {
        use_tls(tls)?;
    }
    let query_listener = tokio::net::TcpListener::bind(config.query.http_addr)
        .await
        .with_context(|| format!("failed to listen on {} (query API)", config.query.http_addr))?;
    let query_addr = query_listener.local_addr()?;
    let jaeger_storage_listener =
        tokio::net::TcpListener::bind(config.query.jaeger_storage_grpc_addr)
            .await
            .with_context(|| {
                format!(
                    "failed to listen on {} (Jaeger remote storage gRPC)",
                    config.query.jaeger_storage_grpc_addr
                )
            })?;
    let jaeger_storage_addr = jaeger_storage_listener.local_addr()?;
    // A configured [alerting] section runs even without rules, so rules added to the file
    // later take effect.
    let config_file = config_file.and_then(|f| f.canonicalize().ok());
    let alerting = (config.alerting != Default::default()).then(|| {
        clew_collector::alerting::Alerting::start(
            &config.alerting,
            config_file.clone(),
            &format!("http://{query_addr}"),
            auth.enabled(),
        )
    });
    if alerting.is_some() && config.alerting.ui_url.is_none() && query_addr.ip().is_unspecified() {
        warn!(%query_addr, "the trace links in alerts use the query address, which names no host; set [alerting] ui_url to the address people open");
    }
    // with auth on, every series has a `tenant` label from the start (ADR 0011)
    let span_metrics = clew_collector::SpanMetrics::new(&config.span_metrics)
        .map(|m| Arc::new(m.label_tenants(auth.enabled())));
    let redactor = clew_collector::redaction::Redactor::from_config(
        &config.redaction,
        &config.collector.business_keys,
    )
    .context("failed to build the redaction rules")?;
    let inventory = clew_collector::inventory::Inventory::new(&config.inventory)
        .map(|i| Arc::new(i.label_tenants(auth.enabled())));
    if let Some(inventory) = &inventory {
        inventory.load(&store).await;
    }
    let observers = clew_collector::Observers {
        redactor,
        alerting: alerting.clone(),
        span_metrics: span_metrics.clone(),
        inventory: inventory.clone(),
    };
    let collector = match clew_collector::Collector::start_with(
        config.collector.clone(),
        store.clone(),
        index.clone(),
        observers,
        auth.clone(),
    )
    .await
    {
        Ok(collector) => collector,
        Err(error) => {
            if let Some(alerting) = &alerting {
                alerting.shutdown().await;
            }
            return Err(error).context("failed to start the collector (OTLP and Kafka receivers)");
        }
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // /metrics: the recorder's families, then the span metrics' own (their series and
    // buckets are bounded by their own table).
    let rendered = span_metrics.clone();
    let mut state = clew_query::QueryState::new(
        store.clone(),
        index.clone(),
        Arc::new(move |only: Option<&clew_proto::Tenant>| {
            crate::alloc::report_gauges();
            let mut text = prometheus.render();
            if let Some(m) = &rendered {
                m.render(&mut text, only);
            }
            text
        }),
    )
    .with_indexed(clew_query::Indexed {
        attributes: clew_query::IndexedAttributes::from_names(&config.indexed_attributes),
        business_keys: config.collector.business_keys.clone(),
    })
    .with_purge_for_tests(config.query.enable_purge_for_tests)
    .with_auth(auth.clone());
    if config.query.enable_purge_for_tests {
        warn!("--enable-purge-for-tests: POST /api/v1/purge deletes every stored trace");
    }
    if let Some(m) = span_metrics {
        state = state.with_service_red(Arc::new(
            move |tenant: &clew_proto::Tenant, service: &str| {
                m.service_red(tenant, service).map(|points| {
                    points
                        .into_iter()
                        .map(|p| clew_query::RedPoint {
                            t: p.t,
                            calls: p.calls,
                            errors: p.errors,
                            p50_ms: p.p50_ms,
                            p99_ms: p.p99_ms,
                        })
                        .collect()
                })
            },
        ));
    }
    if let Some(inventory) = &inventory {
        let inventory = inventory.clone();
        clew_collector::inventory::view::describe();
        state = state.with_inventory(Arc::new(
            move |tenant: &clew_proto::Tenant, q: &clew_query::InventoryQuery| {
                let filter = clew_collector::inventory::InventoryFilter {
                    service: q.service.clone(),
                    sdk: q.sdk.clone(),
                    version: q.version.clone(),
                    quiet_for_ms: q.quiet_for.map(|d| d.as_millis() as u64),
                };
                serde_json::to_value(inventory.answer(tenant, &filter)).unwrap_or_default()
            },
        ));
    }
    let state = match &alerting {
        Some(alerting) => {
            let alerting = alerting.clone();
            state.with_alerts(Arc::new(move |tenant: &clew_proto::Tenant| {
                serde_json::to_value(alerting.board(tenant)).unwrap_or_default()
            }))
        }
        None => state,
    };
    let mut storage_stop = stop_rx.clone();
    let jaeger_storage = tokio::spawn(clew_query::jaeger::storage_grpc::serve(
        jaeger_storage_listener,
        state.clone(),
        async move {
            let _ = storage_stop.wait_for(|s| *s).await;
        },
    ));
    let mut query_stop = stop_rx.clone();
    let query = tokio::spawn(clew_query::serve(query_listener, state, async move {
        let _ = query_stop.wait_for(|s| *s).await;
    }));
    // saves the inventory until stopped (after the collector drained, so the last save
    // has every stored span)
    let inventory = inventory
        .map(|i| tokio::spawn(i.run(store.clone(), config.retention_days, stop_rx.clone())));
    if let (true, Some(file)) = (auth.enabled(), config_file) {
        tokio::spawn(crate::auth::reload_loop(
            auth.clone(),
            file,
            stop_rx.clone(),
        ));
    }
    let retention = tokio::spawn(retention_loop(
        store.clone(),
        index.clone(),
        Duration::from_secs(config.retention_check_interval_secs),
        stop_rx.clone(),
    ));

    // One machine-readable line on stdout (tests and scripts read it), details in the log.
    println!(
        "clew listening otlp_grpc={} otlp_http={} zipkin={} sampling_http={} sampling_grpc={} http={} jaeger_storage_grpc={} data_dir={}",
        collector.grpc_addr(),
        collector.http_addr(),
        collector.zipkin_addr(),
        collector.sampling_http_addr(),
        collector.sampling_grpc_addr(),
        query_addr,
        jaeger_storage_addr,
        config.data_dir.display()
    );
    info!(
        otlp_grpc = %collector.grpc_addr(),
        otlp_http = %collector.http_addr(),
        zipkin = %collector.zipkin_addr(),
        sampling_http = %collector.sampling_http_addr(),
        sampling_grpc = %collector.sampling_grpc_addr(),
        ui = %format!("http://{query_addr}/"),
        jaeger_storage_grpc = %jaeger_storage_addr,
        data_dir = %config.data_dir.display(),
        auth = if auth.enabled() { "bearer tokens" } else { "off" },
        business_keys = ?config.collector.business_keys,
        retention_days = config.retention_days,
        retention_classes = config.retention_classes().classes().len(),
        "clew is serving"
    );
    Ok(Running {
        store,
        index,
        collector,
        alerting,
        query,
        jaeger_storage,
        retention,
        inventory,
        stop_tx,
    })
}

impl Running {
    async fn run_until_signal(self) -> Result<()> {
        let Running {
            store,
            index,
            collector,
            alerting,
            query,
            jaeger_storage,
            retention,
            inventory,
            stop_tx,
        } = self;
        let broken = tokio::select! {
            _ = wait_for_signal() => None,
            why = until_broken(&store, &index) => Some(why),
        };
        match &broken {
            None => info!("shutting down: draining the ingest pipeline"),
            Some(why) => error!(
                "{why}; clew stops so that its supervisor starts it again (nothing acknowledged \
                 is lost)"
            ),
        }
        if let Err(error) = collector.shutdown().await {
            warn!(%error, "collector did not shut down cleanly");
        }
        if let Some(alerting) = alerting {
            alerting.shutdown().await;
        }
        let _ = stop_tx.send(true);
        match query.await {
            Ok(Err(error)) => warn!(%error, "query API stopped with an error"),
            Err(error) => warn!(%error, "query API task failed"),
            Ok(Ok(())) => {}
        }
        match jaeger_storage.await {
            Ok(Err(error)) => warn!(%error, "Jaeger remote storage API stopped with an error"),
            Err(error) => warn!(%error, "Jaeger remote storage API task failed"),
            Ok(Ok(())) => {}
        }
        let _ = retention.await;
        if let Some(inventory) = inventory {
            let _ = inventory.await;
        }
        let closed_index = index
            .close()
            .await
            .context("failed to close the trace index");
        let closed_store = store
            .close()
            .await
            .context("failed to close the span store");
        if let Some(why) = broken {
            // closing a broken backend fails too; the cause is what to report
            anyhow::bail!("{why}");
        }
        closed_index?;
        closed_store?;
        info!("clew stopped");
        Ok(())
    }
}

/// How often [`until_broken`] looks.
const BROKEN_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Resolves once the store or the index cannot serve again without a restart (an embedded
/// backend that refuses every write since one failed: disk full, I/O error), with why.
/// Being up and broken is the one state a supervisor cannot see and fix, so `clew serve`
/// exits non-zero instead (and `/healthz` answers 503 meanwhile).
async fn until_broken(
    store: &Arc<dyn clew_store::SpanStore>,
    index: &Arc<dyn clew_store::TraceIndex>,
) -> String {
    let mut tick = tokio::time::interval(BROKEN_CHECK_INTERVAL);
    loop {
        tick.tick().await;
        if let Some(why) = store.broken().or_else(|| index.broken()) {
            return why;
        }
    }
}

/// Creates the data directory and any missing parents; returns the topmost directory this
/// call created (None when the data directory already existed). Each level is made with
/// `create_dir`, so a directory another process created at the same moment is not ours.
fn create_data_dir(data_dir: &Path) -> Result<Option<PathBuf>> {
    let failed = |e: std::io::Error| {
        anyhow::Error::new(e).context(format!(
            "failed to create data directory {}",
            data_dir.display()
        ))
    };
    let missing: Vec<&Path> = data_dir
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
        .collect();
    let mut created = None;
    for dir in missing.into_iter().rev() {
        match std::fs::create_dir(dir) {
            Ok(()) => {
                created.get_or_insert_with(|| dir.to_path_buf());
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(failed(e)),
        }
    }
    if !data_dir.is_dir() {
        // e.g. the path names a file: let create_dir_all say what is wrong
        std::fs::create_dir_all(data_dir).map_err(failed)?;
    }
    Ok(created)
}

/// Removes `dir` (made by this run) after a failed start, unless another process has
/// opened the span store inside it meanwhile.
fn remove_created_data_dir(dir: &Path, data_dir: &Path) {
    if span_store_locked_elsewhere(data_dir) {
        warn!(dir = %dir.display(), "another process uses the new data directory; leaving it");
        return;
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {
            info!(dir = %dir.display(), "removed the data directory this failed start created")
        }
        Err(error) => {
            warn!(%error, dir = %dir.display(), "failed to remove the data directory this failed start created")
        }
    }
}

/// Whether the embedded span store's lock file (`<data_dir>/spans/lock`, held by fjall
/// while a store is open) is locked. Our own store is closed by now; its background
/// threads may take a moment to let go, hence the retries.
fn span_store_locked_elsewhere(data_dir: &Path) -> bool {
    let Ok(file) = std::fs::File::open(data_dir.join("spans").join("lock")) else {
        return false;
    };
    for _ in 0..10 {
        match file.try_lock() {
            Ok(()) => {
                let _ = file.unlock();
                return false;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(std::fs::TryLockError::Error(_)) => return false,
        }
    }
    true
}

async fn retention_loop(
    store: Arc<dyn clew_store::SpanStore>,
    index: Arc<dyn clew_store::TraceIndex>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        match store.drop_expired(now).await {
            Ok(0) => {}
            Ok(n) => info!(buckets = n, "retention dropped expired span buckets"),
            Err(error) => warn!(%error, "retention of the span store failed"),
        }
        match index.drop_expired(now).await {
            Ok(0) => {}
            Ok(n) => info!(partitions = n, "retention dropped expired index partitions"),
            Err(error) => warn!(%error, "retention of the trace index failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

pub(crate) async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(error) => {
                    warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops clew");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Puts every listener this process opens from now on behind TLS with `tls`'s certificate
/// (`[tls]` of `clew serve` and of `clew agent`).
pub fn use_tls(tls: &crate::config::TlsConfig) -> Result<()> {
    let loaded = clew_net::Tls::load(clew_net::TlsFiles {
        cert_file: tls.cert_file.clone(),
        key_file: tls.key_file.clone(),
        client_ca_file: tls.client_ca_file.clone(),
    })
    .context("failed to load [tls]")?;
    if clew_net::use_tls_for_every_listener(loaded).is_err() {
        anyhow::bail!("[tls] was already set up in this process");
    }
    Ok(())
}
