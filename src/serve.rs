//! `clew serve`: builds the configured backends, starts the collector and the query API,
//! and shuts down cleanly on SIGTERM/SIGINT.
//!
//! ```text
//!  config ─▶ SpanStore + TraceIndex ─┬─▶ collector (OTLP gRPC + HTTP [+ Kafka] ─▶ pipeline)
//!                                    ├─▶ query API (+ /metrics from the Prometheus recorder)
//!                                    └─▶ retention loop (drop expired buckets)
//!  SIGTERM ─▶ stop receivers (Kafka: commit durable records, leave the group), drain pipeline ─▶ stop query API ─▶ close index, close store
//! ```

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use metrics_exporter_prometheus::PrometheusBuilder;
use tracing::{info, warn};

use crate::config::Config;

pub async fn serve(mut config: Config) -> Result<()> {
    let prometheus = PrometheusBuilder::new()
        .install_recorder()
        .context("failed to install the metrics recorder")?;

    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "failed to create data directory {}",
            config.data_dir.display()
        )
    })?;
    config.data_dir = config
        .data_dir
        .canonicalize()
        .context("failed to resolve the data directory")?;
    let common = config.storage_common();
    let store = clew_store::open_span_store(&config.store, &common)
        .context("failed to open the span store")?;
    let index = clew_store::open_trace_index(&config.index, &common)
        .context("failed to open the trace index")?;

    let query_listener = tokio::net::TcpListener::bind(config.query.http_addr)
        .await
        .with_context(|| format!("failed to listen on {} (query API)", config.query.http_addr))?;
    let query_addr = query_listener.local_addr()?;
    let collector =
        clew_collector::Collector::start(config.collector.clone(), store.clone(), index.clone())
            .await
            .context("failed to start the collector (OTLP and Kafka receivers)")?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let state = clew_query::QueryState::new(
        store.clone(),
        index.clone(),
        Arc::new(move || prometheus.render()),
    );
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
        "clew listening otlp_grpc={} otlp_http={} http={} data_dir={}",
        collector.grpc_addr(),
        collector.http_addr(),
        query_addr,
        config.data_dir.display()
    );
    info!(
        otlp_grpc = %collector.grpc_addr(),
        otlp_http = %collector.http_addr(),
        ui = %format!("http://{query_addr}/"),
        data_dir = %config.data_dir.display(),
        business_keys = ?config.collector.business_keys,
        retention_days = config.retention_days,
        "clew is serving"
    );

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
