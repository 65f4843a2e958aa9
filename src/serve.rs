//! `clew serve`: builds the configured backends, starts the collector and the query API,
//! and shuts down cleanly on SIGTERM/SIGINT.
//!
//! ```text
//!  config ─▶ SpanStore + TraceIndex ─┬─▶ collector (OTLP gRPC + HTTP [+ Kafka] ─▶ pipeline) ─▶ span metrics
//!                                    ├─▶ query API (+ /metrics: the Prometheus recorder + span metrics;
//!                                    │              /api/v1/services/{s}/red from the span metrics)
//!                                    └─▶ retention loop (drop expired buckets)
//!  SIGTERM ─▶ stop receivers (Kafka: commit durable records, leave the group), drain pipeline ─▶ stop query API ─▶ close index, close store
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing::{info, warn};

use crate::config::Config;

pub async fn serve(mut config: Config) -> Result<()> {
    let prometheus = PrometheusBuilder::new()
        .install_recorder()
        .context("failed to install the metrics recorder")?;

    let created = create_data_dir(&config.data_dir)?;
    let running = match start(&mut config, prometheus).await {
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
    query: tokio::task::JoinHandle<std::io::Result<()>>,
    retention: tokio::task::JoinHandle<()>,
    stop_tx: tokio::sync::watch::Sender<bool>,
}

/// Opens the backends, binds every listener and starts serving. On failure everything
/// opened so far is closed again (so the data directory is no longer in use).
async fn start(config: &mut Config, prometheus: PrometheusHandle) -> Result<Running> {
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
    match start_serving(config, prometheus, store.clone(), index.clone()).await {
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
    prometheus: PrometheusHandle,
    store: Arc<dyn clew_store::SpanStore>,
    index: Arc<dyn clew_store::TraceIndex>,
) -> Result<Running> {
    let query_listener = tokio::net::TcpListener::bind(config.query.http_addr)
        .await
        .with_context(|| format!("failed to listen on {} (query API)", config.query.http_addr))?;
    let query_addr = query_listener.local_addr()?;
    let span_metrics = clew_collector::SpanMetrics::new(&config.span_metrics).map(Arc::new);
    let collector = clew_collector::Collector::start(
        config.collector.clone(),
        store.clone(),
        index.clone(),
        span_metrics.clone(),
    )
    .await
    .context("failed to start the collector (OTLP and Kafka receivers)")?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // /metrics: the recorder's families, then the span metrics' own (their series and
    // buckets are bounded by their own table).
    let rendered = span_metrics.clone();
    let mut state = clew_query::QueryState::new(
        store.clone(),
        index.clone(),
        Arc::new(move || {
            let mut text = prometheus.render();
            if let Some(m) = &rendered {
                m.render(&mut text);
            }
            text
        }),
    )
    .with_indexed(clew_query::Indexed {
        attributes: config.indexed_attributes.clone(),
        business_keys: config.collector.business_keys.clone(),
    });
    if let Some(m) = span_metrics {
        state = state.with_service_red(Arc::new(move |service: &str| {
            m.service_red(service).map(|points| {
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
        }));
    }
    let mut query_stop = stop_rx.clone();
    let query = tokio::spawn(clew_query::serve(query_listener, state, async move {
        let _ = query_stop.wait_for(|s| *s).await;
    }));
    let retention = tokio::spawn(retention_loop(
        store.clone(),
        index.clone(),
        Duration::from_secs(config.retention_check_interval_secs),
        stop_rx.clone(),
    ));

    // One machine-readable line on stdout (tests and scripts read it), details in the log.
    println!(
        "clew listening otlp_grpc={} otlp_http={} zipkin={} http={} data_dir={}",
        collector.grpc_addr(),
        collector.http_addr(),
        collector.zipkin_addr(),
        query_addr,
        config.data_dir.display()
    );
    info!(
        otlp_grpc = %collector.grpc_addr(),
        otlp_http = %collector.http_addr(),
        zipkin = %collector.zipkin_addr(),
        ui = %format!("http://{query_addr}/"),
        data_dir = %config.data_dir.display(),
        business_keys = ?config.collector.business_keys,
        retention_days = config.retention_days,
        "clew is serving"
    );
    Ok(Running {
        store,
        index,
        collector,
        query,
        retention,
        stop_tx,
    })
}

impl Running {
    async fn run_until_signal(self) -> Result<()> {
        let Running {
            store,
            index,
            collector,
            query,
            retention,
            stop_tx,
        } = self;
        wait_for_signal().await;
        info!("shutting down: draining the ingest pipeline");
        if let Err(error) = collector.shutdown().await {
            warn!(%error, "collector did not shut down cleanly");
        }
        let _ = stop_tx.send(true);
        match query.await {
            Ok(Err(error)) => warn!(%error, "query API stopped with an error"),
            Err(error) => warn!(%error, "query API task failed"),
            Ok(Ok(())) => {}
        }
        let _ = retention.await;
        index
            .close()
            .await
            .context("failed to close the trace index")?;
        store
            .close()
            .await
            .context("failed to close the span store")?;
        info!("clew stopped");
        Ok(())
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
