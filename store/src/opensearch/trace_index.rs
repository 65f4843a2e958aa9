//! [`OpenSearchTraceIndex`]: the [`TraceIndex`] over the client, the writer and the
//! search (see the module docs of `opensearch`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use clew_proto::{Span, Tenant};
use reqwest::Method;
use serde_json::Value;
use tokio::sync::OnceCell;

use super::client::{Body, Client};
use super::config::OpenSearchIndexConfig;
use super::document::{self, day_of_index, doc_id, index_name, index_template, to_document};
use super::{find_trace_ids, writer};
use crate::metrics as m;
use crate::trace_index::span_doc::IndexedAttributes;
use crate::trace_index::span_doc::SpanDoc;
use crate::{
    Common, Error, Result, RetentionClass, RetentionClasses, TraceIdPage, TraceIndex, TraceQuery,
};

/// Most names `services()` and `operations()` return.
const MAX_NAMES: usize = 10_000;

/// The OpenSearch [`TraceIndex`].
pub struct OpenSearchTraceIndex {
    client: Client,
    prefix: String,
    shards: u32,
    replicas: u32,
    bulk_max_docs: usize,
    bulk_max_bytes: usize,
    bulk_concurrency: usize,
    timeout: Duration,
    indexed_attributes: Arc<IndexedAttributes>,
    /// Which daily indices a tenant's documents go to, and how long each class is kept.
    retention: Arc<RetentionClasses>,
    template: OnceCell<()>,
}

impl OpenSearchTraceIndex {
    /// Builds the index client; no network I/O (see the module docs).
    pub fn open(config: &OpenSearchIndexConfig, common: &Common) -> Result<Self> {
        Ok(OpenSearchTraceIndex {
            client: Client::new(config)?,
            prefix: config.index_prefix.clone(),
            shards: config.number_of_shards,
            replicas: config.number_of_replicas,
            bulk_max_docs: config.bulk_max_docs,
            bulk_max_bytes: config.bulk_max_bytes,
            bulk_concurrency: config.bulk_concurrency.max(1),
            timeout: Duration::from_millis(config.timeout_ms),
            indexed_attributes: Arc::new(IndexedAttributes::from_names(&common.indexed_attributes)),
            retention: Arc::new(common.retention.clone()),
            template: OnceCell::new(),
        })
    }

    /// The alias every daily index joins; searches, refreshes and listings go through it.
    pub fn alias(&self) -> &str {
        &self.prefix
    }

    /// Installs the index template once per process (again after a failure).
    async fn ensure_template(&self) -> Result<()> {
        self.template
            .get_or_try_init(|| async {
                self.client
                    .send(
                        "failed to install the opensearch index template",
                        Method::PUT,
                        &format!("/_index_template/{}", self.prefix),
                        &Body::Json(index_template(&self.prefix, self.shards, self.replicas)),
                    )
                    .await?;
                // Daily indices created from an older template (before tenants) get the
                // fields added since; their mappings are strict.
                self.client
                    .send(
                        "failed to add the tenant field to existing daily indices",
                        Method::PUT,
                        &format!(
                            "/{}-*/_mapping?allow_no_indices=true&ignore_unavailable=true",
                            self.prefix
                        ),
                        &Body::Json(document::added_mappings()),
                    )
                    .await
                    .map(|_| ())
            })
            .await
            .map(|_| ())
    }

    async fn send(
        &self,
        context: &'static str,
        method: Method,
        path: &str,
        body: Body,
    ) -> Result<Value> {
        self.client.send(context, method, path, &body).await
    }

    /// Sorted distinct values of `field` among documents matching `query`.
    async fn names(&self, field: &str, query: Value) -> Result<Vec<String>> {
        let answer = self
            .send(
                "failed to list names in the index",
                Method::POST,
                &find_trace_ids::search_path(self.alias()),
                Body::Json(serde_json::json!({
                    "size": 0,
                    "track_total_hits": false,
                    "query": query,
                    "aggs": {"n": {"terms": {"field": field, "size": MAX_NAMES}}},
                })),
            )
            .await?;
        let mut names: Vec<String> = answer["aggregations"]["n"]["buckets"]
            .as_array()
            .map(|b| {
                b.iter()
                    .filter_map(|b| b["key"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        Ok(names)
    }
}

#[async_trait]
impl TraceIndex for OpenSearchTraceIndex {
    /// `bulk_concurrency`: each call sends its own `_bulk` requests and shares nothing
    /// with the others but the HTTP client.
    fn write_concurrency(&self) -> usize {
        self.bulk_concurrency
    }

    async fn index_spans(&self, spans: Arc<[Span]>) -> Result<()> {
        if spans.is_empty() {
            return Ok(());
        }
        self.ensure_template().await?;
        let prefix = self.prefix.clone();
        let attrs = self.indexed_attributes.clone();
        let retention = self.retention.clone();
        let batch = spans.clone();
        // Building documents is CPU work: off the reactor.
        let items = tokio::task::spawn_blocking(move || {
            batch
                .iter()
                .map(|span| {
                    let doc = SpanDoc::from_span(span, &attrs);
                    writer::Item::new(
                        &index_name(&prefix, retention.class_of(&span.tenant), doc.day()),
                        &doc_id(span),
                        &to_document(&doc),
                    )
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| Error::unavailable("failed to build index documents", e))?;
        writer::bulk(
            &self.client,
            items,
            self.bulk_max_docs,
            self.bulk_max_bytes,
            self.timeout,
        )
        .await?;
        metrics::counter!(m::INDEX_DOCS_TOTAL, "backend" => "opensearch")
            .increment(spans.len() as u64);
        Ok(())
    }

    async fn find_trace_ids(&self, tenant: &Tenant, query: &TraceQuery) -> Result<TraceIdPage> {
        find_trace_ids::find(&self.client, self.alias(), tenant, query).await
    }

    async fn services(&self, tenant: &Tenant) -> Result<Vec<String>> {
        self.names(document::SERVICE, document::tenant_filter(tenant))
            .await
    }

    async fn operations(&self, tenant: &Tenant, service: &str) -> Result<Vec<String>> {
        self.names(
            document::OPERATION,
            serde_json::json!({"bool": {"filter": [
                {"term": {document::SERVICE: service}},
                document::tenant_filter(tenant),
            ]}}),
        )
        .await
    }

    async fn refresh(&self) -> Result<()> {
        self.send(
            "failed to refresh the index",
            Method::POST,
            &format!(
                "/{}/_refresh?ignore_unavailable=true&allow_no_indices=true",
                self.alias()
            ),
            Body::None,
        )
        .await
        .map(|_| ())
    }

    async fn drop_expired(&self, now_unix_nano: u64) -> Result<u64> {
        // A day is expired once all of it lies before its class's horizon (as in the
        // embedded index); an index of a class no longer configured keeps its own days.
        let listing = self
            .send(
                "failed to list daily indices",
                Method::GET,
                &format!(
                    "/_cat/indices/{}-*?format=json&h=index&expand_wildcards=all",
                    self.prefix
                ),
                Body::None,
            )
            .await?;
        let mut expired: Vec<(String, RetentionClass)> = listing
            .as_array()
            .map(|rows| {
                rows.iter()
                    .filter_map(|r| r["index"].as_str())
                    .filter_map(|name| {
                        let (class, day) = day_of_index(&self.prefix, name)?;
                        (day < self.retention.first_kept_day(class, now_unix_nano))
                            .then(|| (name.to_string(), class))
                    })
                    .collect()
            })
            .unwrap_or_default();
        // `<prefix>-r7-YYYY.MM.DD` may also be the default-class index of another clew
        // whose prefix is `<prefix>-r7`: a class index is ours only if it joined our alias
        // (the longer prefix's template wins its indices, see `index_template`).
        if expired.iter().any(|(_, c)| *c != RetentionClass::Default) {
            let members = self
                .send(
                    "failed to list the indices of the alias",
                    Method::GET,
                    &format!("/_cat/aliases/{}?format=json&h=index", self.prefix),
                    Body::None,
                )
                .await?;
            let ours: std::collections::HashSet<&str> = members
                .as_array()
                .map(|rows| rows.iter().filter_map(|r| r["index"].as_str()).collect())
                .unwrap_or_default();
            expired.retain(|(name, class)| {
                *class == RetentionClass::Default || ours.contains(name.as_str())
            });
        }
        let expired: Vec<String> = expired.into_iter().map(|(name, _)| name).collect();
        for name in &expired {
            self.send(
                "failed to delete an expired daily index",
                Method::DELETE,
                &format!("/{name}"),
                Body::None,
            )
            .await?;
            tracing::info!(index = %name, "deleted expired daily index");
            metrics::counter!(m::INDEX_PARTITIONS_DROPPED_TOTAL, "backend" => "opensearch")
                .increment(1);
        }
        Ok(expired.len() as u64)
    }

    async fn close(&self) -> Result<()> {
        // Every acknowledged write is already durable in the cluster.
        Ok(())
    }

    async fn ready(&self) -> Result<()> {
        self.ensure_template().await?;
        let health = self
            .send(
                "opensearch cluster health",
                Method::GET,
                "/_cluster/health",
                Body::None,
            )
            .await?;
        match health["status"].as_str() {
            Some("green" | "yellow") => Ok(()),
            other => Err(Error::unavailable(
                "opensearch cluster health",
                format!("status {}", other.unwrap_or("unknown")),
            )),
        }
    }
}
