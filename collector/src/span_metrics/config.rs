//! `[span_metrics]`: which RED series and service-graph edges the collector keeps.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The labels every span-metrics series has; configured dimensions may not take them.
pub const BUILT_IN_LABELS: [&str; 4] = ["service_name", "span_name", "span_kind", "status_code"];
/// The label a series has once tenants are told apart (`docs/adr/0011-tenants.md`); no
/// dimension may take it either.
pub const TENANT_LABEL: &str = "tenant";

/// `[span_metrics]` section.
///
/// ```toml
/// [span_metrics]
/// enabled = true
/// dimensions = ["http.route", { name = "http.request.method", default = "GET" }]
/// cardinality_limit = 5000
/// service_graph = true
/// service_graph_wait_ms = 10000
/// service_graph_max_pending = 10000
/// max_tenants = 100
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpanMetricsConfig {
    /// RED metrics (`traces_span_metrics_*`) from every stored span.
    pub enabled: bool,
    /// Extra labels, looked up on the span's attributes, then its resource's. A span
    /// without the attribute gets the dimension's `default`, or no such label at all.
    pub dimensions: Vec<Dimension>,
    /// Most series per metric; spans of further label sets are counted in one series
    /// labelled `otel_metric_overflow="true"`.
    pub cardinality_limit: usize,
    /// Service-graph metrics (`traces_service_graph_*`) from client/server span pairs.
    pub service_graph: bool,
    /// How long half of a client/server pair waits for its other half.
    pub service_graph_wait_ms: u64,
    /// Most halves waiting at once; a half beyond it is dropped (and counted).
    pub service_graph_max_pending: usize,
    /// Most tenants with span metrics; each has its own `cardinality_limit` series per
    /// metric, `service_graph_max_pending` halves and service history. Spans of a tenant
    /// first seen once this many have metrics are counted, not kept.
    pub max_tenants: usize,
}

impl Default for SpanMetricsConfig {
    fn default() -> Self {
        SpanMetricsConfig {
            enabled: true,
            dimensions: Vec::new(),
            cardinality_limit: 5000,
            service_graph: true,
            service_graph_wait_ms: 10_000,
            service_graph_max_pending: 10_000,
            max_tenants: 100,
        }
    }
}

/// One extra dimension: an attribute name, or `{ name, default }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Dimension {
    Name(String),
    WithDefault {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        default: Option<String>,
    },
}

impl Dimension {
    pub fn name(&self) -> &str {
        match self {
            Dimension::Name(n) | Dimension::WithDefault { name: n, .. } => n,
        }
    }

    pub fn default_value(&self) -> Option<&str> {
        match self {
            Dimension::Name(_) => None,
            Dimension::WithDefault { default, .. } => default.as_deref(),
        }
    }
}

impl SpanMetricsConfig {
    /// Checks the values (keys `span_metrics.*`) without I/O.
    pub fn validate(&self) -> Result<()> {
        if self.cardinality_limit == 0 {
            return bad("span_metrics.cardinality_limit", "must be at least 1");
        }
        if self.cardinality_limit > 1_000_000 {
            return bad(
                "span_metrics.cardinality_limit",
                format!("{} is above the maximum of 1000000", self.cardinality_limit),
            );
        }
        if self.service_graph_wait_ms == 0 {
            return bad("span_metrics.service_graph_wait_ms", "must be at least 1");
        }
        if self.service_graph_max_pending == 0 {
            return bad(
                "span_metrics.service_graph_max_pending",
                "must be at least 1",
            );
        }
        if !(1..=100_000).contains(&self.max_tenants) {
            return bad("span_metrics.max_tenants", "must be between 1 and 100000");
        }
        let mut labels: Vec<String> = BUILT_IN_LABELS.iter().map(|l| l.to_string()).collect();
        for d in &self.dimensions {
            if d.name().trim().is_empty() {
                return bad("span_metrics.dimensions", "a dimension name is empty");
            }
            let label = label_name(d.name());
            if label == TENANT_LABEL {
                return bad(
                    "span_metrics.dimensions",
                    format!(
                        "{:?} becomes the label \"tenant\", which is the tenant's own (every series has it with authentication on)",
                        d.name()
                    ),
                );
            }
            if let Some(taken) = labels.iter().find(|l| **l == label) {
                return bad(
                    "span_metrics.dimensions",
                    format!(
                        "{:?} becomes the label {label:?}, which {} already has",
                        d.name(),
                        if BUILT_IN_LABELS.contains(&taken.as_str()) {
                            "every series"
                        } else {
                            "another dimension"
                        }
                    ),
                );
            }
            labels.push(label);
        }
        Ok(())
    }
}

/// An attribute name as a Prometheus label name, as the OpenTelemetry Collector's
/// Prometheus exporters write it: every character outside `[A-Za-z0-9_]` becomes `_`, and
/// a name starting with a digit gets the prefix `key_` (`http.route` → `http_route`).
pub fn label_name(attribute: &str) -> String {
    let mut out: String = attribute
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    }
    out
}

fn bad(key: &'static str, message: impl Into<String>) -> Result<()> {
    Err(Error::Config {
        key,
        message: message.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names_are_sanitised_like_the_otel_prometheus_exporter() {
        assert_eq!(label_name("http.route"), "http_route");
        assert_eq!(label_name("http.request.method"), "http_request_method");
        assert_eq!(label_name("k8s-pod/name"), "k8s_pod_name");
        assert_eq!(label_name("2xx"), "key_2xx");
        assert_eq!(label_name("ünicode"), "_nicode");
    }

    #[test]
    fn dimensions_read_as_names_or_tables_and_print_back() {
        let c: SpanMetricsConfig = toml::from_str(
            "dimensions = [\"http.route\", { name = \"http.request.method\", default = \"GET\" }]\ncardinality_limit = 10\n",
        )
        .unwrap();
        assert_eq!(c.dimensions[0].name(), "http.route");
        assert_eq!(c.dimensions[0].default_value(), None);
        assert_eq!(c.dimensions[1].default_value(), Some("GET"));
        assert!(c.enabled && c.service_graph);
        c.validate().unwrap();
        let printed = toml::to_string(&c).unwrap();
        assert_eq!(toml::from_str::<SpanMetricsConfig>(&printed).unwrap(), c);
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("cardinality_limit = 0", "span_metrics.cardinality_limit"),
            (
                "service_graph_wait_ms = 0",
                "span_metrics.service_graph_wait_ms",
            ),
            (
                "service_graph_max_pending = 0",
                "span_metrics.service_graph_max_pending",
            ),
            ("dimensions = [\"service.name\"]", "span_metrics.dimensions"),
            ("dimensions = [\"a.b\", \"a_b\"]", "span_metrics.dimensions"),
            ("dimensions = [\" \"]", "span_metrics.dimensions"),
            ("dimensions = [\"tenant\"]", "span_metrics.dimensions"),
            ("max_tenants = 0", "span_metrics.max_tenants"),
        ] {
            let c: SpanMetricsConfig = toml::from_str(text).unwrap();
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
        assert!(toml::from_str::<SpanMetricsConfig>("enabld = true").is_err());
    }
}
