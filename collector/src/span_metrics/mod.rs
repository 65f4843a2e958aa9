//! Stage 6 of the ingest path: RED metrics, service-graph edges and a per-service hour of
//! per-minute aggregates, computed from the spans the sink stored.
//!
//! ```text
//!  Front::prepare ── 6. SpanMetrics::observe(tenant, &spans) ─▶ Observed (the tenant, series ids, durations, pair halves)
//!  Front::ingest  ── 7. sink.submit(spans) ─▶ Ok(rejections) ─▶ SpanMetrics::record(observed, rejections)
//!                                                               ├─ red.rs            traces_span_metrics_*
//!                                                               ├─ service_graph.rs  traces_service_graph_*
//!                                                               └─ history.rs        GET /api/v1/services/{s}/red
//!  GET /metrics ─▶ SpanMetrics::render (Prometheus text, appended to the recorder's)
//! ```
//!
//! The names and labels are those of the OpenTelemetry Collector's spanmetrics connector
//! behind its Prometheus exporter (namespace `traces.span.metrics`, unit milliseconds, its
//! default buckets) and of Tempo's service-graph processor, so the dashboards, Grafana's
//! service graph and Jaeger's Monitor tab written for them work unchanged.
//!
//! Counting happens in two steps because the spans move into the sink: `observe` (while
//! the spans are at hand, on the CPU stage) resolves each span's series once, without
//! allocating for a series it has seen before; `record` (after the sink answered `Ok`)
//! counts the spans the sink did not reject. A request the sink refuses is counted when
//! it is sent again and accepted; a span sent twice and accepted twice (a client retry
//! after a lost answer, a Kafka replay) is counted twice, as the connector would.
//!
//! Per tenant (`docs/adr/0011-tenants.md`): every tenant has its own series, service
//! graph and history, each with the limits below, so one tenant's label sets can never
//! push another's into the overflow series. The exposition adds a `tenant` label to every
//! series once tenants must be told apart: always when authentication is on, and without
//! it from the first span of a tenant other than `default` (a collector behind Kafka whose
//! agents check tokens) — so a clew without tenants renders exactly what it did before
//! tenants existed, and two tenants' series are never two samples with the same labels.
//! `GET /metrics` shows a caller without the `admin` scope its own tenant's series only.
//!
//! Everything is bounded: `cardinality_limit` series per metric and tenant (further label
//! sets fold into one `otel_metric_overflow="true"` series, counted in
//! `clew_span_metrics_overflow_spans_total`), `service_graph_max_pending` waiting pair
//! halves per tenant, [`history::MAX_SERVICES`] services with an hour of history per
//! tenant, and at most `max_tenants` tenants (spans of further tenants are counted in
//! `clew_span_metrics_left_out_tenant_spans_total`, nothing else).

pub mod config;
mod exposition;
mod history;
mod red;
mod service_graph;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use clew_proto::{RejectReason, Span, SpanKind, Tenant};

pub use config::{Dimension, SpanMetricsConfig};
pub use history::RedPoint;

use exposition::Family;
use history::History;
use red::{RedTable, SeriesKey};
use service_graph::{Half, ServiceGraph, TenantGraph};

/// A service id that stands for "too many services" (the overflow series).
const OVERFLOW_SERVICE: u32 = u32::MAX;
const NANOS_PER_MINUTE: u64 = 60_000_000_000;

/// Spans of tenants left out because `max_tenants` tenants have span metrics already.
pub const LEFT_OUT_TENANT_SPANS: &str = "clew_span_metrics_left_out_tenant_spans_total";

/// The collector's span metrics, shared by every receiver's front half and the query API.
pub struct SpanMetrics {
    dims: Vec<red::Dim>,
    graph_enabled: bool,
    cardinality_limit: usize,
    max_pending: usize,
    wait_ns: u64,
    max_tenants: usize,
    /// Label every series with its tenant even while only `default` has spans (set when
    /// authentication is on).
    label_tenants: bool,
    state: Mutex<Tenants>,
}

/// Every tenant's span metrics, by name (the exposition's order).
struct Tenants {
    by: BTreeMap<Tenant, State>,
    /// Stored spans of tenants beyond `max_tenants`.
    left_out_spans: u64,
}

/// One tenant's span metrics.
struct State {
    services: Services,
    red: RedTable,
    graph: ServiceGraph,
    history: History,
}

/// What [`SpanMetrics::observe`] saw of one input's spans, in span order.
pub struct Observed {
    tenant: Tenant,
    /// `false`: the tenant is beyond `max_tenants`; `spans` is empty and `left_out` counts.
    kept: bool,
    left_out: usize,
    spans: Vec<SpanObs>,
}

struct SpanObs {
    series: u32,
    service: u32,
    duration_ns: u64,
    end_unix_nano: u64,
    error: bool,
    /// A server or consumer span: a request the service handled (the RED history).
    entry: bool,
    half: Option<Half>,
}

impl SpanMetrics {
    /// `None` when span metrics are disabled. The config must be valid.
    pub fn new(config: &SpanMetricsConfig) -> Option<SpanMetrics> {
        if !config.enabled {
            return None;
        }
        let dims = config
            .dimensions
            .iter()
            .map(|d| red::Dim {
                attribute: d.name().to_string(),
                label: config::label_name(d.name()),
                default: d.default_value().map(str::to_string),
            })
            .collect();
        Some(SpanMetrics {
            dims,
            graph_enabled: config.service_graph,
            cardinality_limit: config.cardinality_limit,
            max_pending: config.service_graph_max_pending,
            wait_ns: config.service_graph_wait_ms.saturating_mul(1_000_000),
            max_tenants: config.max_tenants,
            label_tenants: false,
            state: Mutex::new(Tenants {
                by: BTreeMap::new(),
                left_out_spans: 0,
            }),
        })
    }

    /// Labels every series with its tenant from the start, `default`'s included: for a
    /// collector with authentication on, whose series then keep one shape for good.
    /// Without it the label appears with the first span of another tenant.
    pub fn label_tenants(mut self, on: bool) -> Self {
        self.label_tenants = on;
        self
    }

    fn new_state(&self) -> State {
        State {
            services: Services::new(self.cardinality_limit),
            red: RedTable::new(self.cardinality_limit),
            graph: ServiceGraph::new(self.cardinality_limit, self.max_pending, self.wait_ns),
            history: History::default(),
        }
    }

    /// Resolves each span's series in `tenant`'s metrics (creating it if new and under
    /// the limit) and notes what `record` needs; counts nothing yet. `spans` are one
    /// input's, all of `tenant`.
    pub fn observe(&self, tenant: &Tenant, spans: &[Span]) -> Observed {
        let mut key = SeriesKey::default();
        let mut out = Vec::with_capacity(spans.len());
        let mut tenants = self.state.lock().expect("span metrics lock");
        if !tenants.by.contains_key(tenant) {
            if tenants.by.len() >= self.max_tenants {
                return Observed {
                    tenant: tenant.clone(),
                    kept: false,
                    left_out: spans.len(),
                    spans: Vec::new(),
                };
            }
            tenants.by.insert(tenant.clone(), self.new_state());
        }
        let state = tenants.by.get_mut(tenant).expect("present");
        let State {
            services,
            red: table,
            ..
        } = state;
        // Spans of one request mostly share a service: resolve it once per run.
        let mut last_service: Option<(&str, u32)> = None;
        for span in spans {
            let service = match last_service {
                Some((name, id)) if name == span.service_name => id,
                _ => {
                    let id = services.id(&span.service_name);
                    last_service = Some((&span.service_name, id));
                    id
                }
            };
            let series = if service == OVERFLOW_SERVICE {
                red::OVERFLOW
            } else {
                key.fill(service, span, &self.dims);
                table.series(&key, || {
                    red::labels(&services.names[service as usize], span, &self.dims)
                })
            };
            let half = if self.graph_enabled {
                Half::of(span)
            } else {
                None
            };
            out.push(SpanObs {
                series,
                service,
                duration_ns: span.duration_nanos(),
                end_unix_nano: span.end_unix_nano,
                error: span.status_code == clew_proto::StatusCode::Error,
                entry: matches!(span.kind, SpanKind::Server | SpanKind::Consumer),
                half,
            });
        }
        Observed {
            tenant: tenant.clone(),
            kept: true,
            left_out: 0,
            spans: out,
        }
    }

    /// Counts the observed spans the sink stored: all but those in `rejected` (indexes
    /// into the submitted spans, as [`crate::sink::SpanSink::submit`] returns them).
    pub fn record(&self, observed: Observed, rejected: &[(usize, RejectReason)]) {
        self.record_at(observed, rejected, unix_nanos());
    }

    fn record_at(&self, observed: Observed, rejected: &[(usize, RejectReason)], now_ns: u64) {
        let mut tenants = self.state.lock().expect("span metrics lock");
        if !observed.kept {
            let stored = observed.left_out.saturating_sub(rejected.len());
            tenants.left_out_spans += stored as u64;
            return;
        }
        // observe created it, and tenants are never removed
        let Some(state) = tenants.by.get_mut(&observed.tenant) else {
            return;
        };
        let mut skip = Vec::new();
        if !rejected.is_empty() {
            skip = vec![false; observed.spans.len()];
            for (i, _) in rejected {
                if let Some(s) = skip.get_mut(*i) {
                    *s = true;
                }
            }
        }
        let now_minute = now_ns / NANOS_PER_MINUTE;
        let State {
            red: table,
            graph,
            history,
            ..
        } = state;
        for (i, obs) in observed.spans.into_iter().enumerate() {
            if skip.get(i).copied().unwrap_or(false) {
                continue;
            }
            table.record(obs.series, obs.duration_ns);
            if obs.entry && obs.service != OVERFLOW_SERVICE {
                // the minute the request ended in (a span from the future: now)
                let minute = (obs.end_unix_nano / NANOS_PER_MINUTE).min(now_minute);
                history.record(obs.service, minute, now_minute, obs.duration_ns, obs.error);
            }
            if let Some(half) = obs.half {
                graph.offer(half, obs.service, obs.duration_ns, obs.error, now_ns);
            }
        }
        graph.expire(now_ns);
    }

    /// The Prometheus text of every span-metrics family (appended to `out`): every
    /// tenant's series, or `only` that tenant's.
    pub fn render(&self, out: &mut String, only: Option<&Tenant>) {
        self.render_at(out, only, unix_nanos());
    }

    fn render_at(&self, out: &mut String, only: Option<&Tenant>, now_ns: u64) {
        let mut tenants = self.state.lock().expect("span metrics lock");
        for state in tenants.by.values_mut() {
            state.graph.expire(now_ns);
        }
        let labelled = self.label_tenants || tenants.by.keys().any(|t| !t.is_default());
        let empty;
        let mut shown: Vec<(Option<String>, &State)> = tenants
            .by
            .iter()
            .filter(|(t, _)| only.is_none_or(|o| o == *t))
            .map(|(t, state)| (labelled.then(|| tenant_label(t)), state))
            .collect();
        if shown.is_empty() && !labelled {
            // before the first span: the families with their zero counts, as always
            empty = self.new_state();
            shown.push((None, &empty));
        }
        let tables: Vec<(Option<&str>, &RedTable)> = shown
            .iter()
            .map(|(label, s)| (label.as_deref(), &s.red))
            .collect();
        RedTable::render(out, &tables);
        if self.graph_enabled {
            let graphs: Vec<TenantGraph<'_>> = shown
                .iter()
                .map(|(label, s)| (label.as_deref(), &s.graph, s.services.names.as_slice()))
                .collect();
            ServiceGraph::render(out, &graphs);
        }
        let metric_line =
            |out: &mut String, family: &str, metric: &str, tenant: Option<&str>, n: u64| {
                let tenant = tenant.map(|t| format!(",{t}")).unwrap_or_default();
                let _ = writeln!(out, "{family}{{metric=\"{metric}\"{tenant}}} {n}");
            };
        Family::counter(
            red::OVERFLOW_SPANS,
            "spans (service graph: requests) counted in an otel_metric_overflow=\"true\" series because their metric reached span_metrics.cardinality_limit, by metric",
        )
        .write(out);
        for (label, s) in &shown {
            metric_line(
                out,
                red::OVERFLOW_SPANS,
                "traces_span_metrics",
                label.as_deref(),
                s.red.overflow_count(),
            );
            if self.graph_enabled {
                metric_line(
                    out,
                    red::OVERFLOW_SPANS,
                    "traces_service_graph",
                    label.as_deref(),
                    s.graph.overflow_count(),
                );
            }
        }
        Family::gauge(
            red::SERIES,
            "series kept, by metric (at most span_metrics.cardinality_limit, besides the overflow series)",
        )
        .write(out);
        for (label, s) in &shown {
            metric_line(
                out,
                red::SERIES,
                "traces_span_metrics",
                label.as_deref(),
                s.red.series_count() as u64,
            );
            if self.graph_enabled {
                metric_line(
                    out,
                    red::SERIES,
                    "traces_service_graph",
                    label.as_deref(),
                    s.graph.series_count() as u64,
                );
            }
        }
        if labelled && only.is_none() {
            Family::counter(
                LEFT_OUT_TENANT_SPANS,
                "stored spans not in the span metrics because span_metrics.max_tenants tenants have them already",
            )
            .write(out);
            let _ = writeln!(out, "{LEFT_OUT_TENANT_SPANS} {}", tenants.left_out_spans);
        }
    }

    /// The last hour of one of `tenant`'s services' requests (its server and consumer
    /// spans, by the minute they ended in), one point per minute, oldest first; `None` for
    /// a service no stored span of the tenant named.
    pub fn service_red(&self, tenant: &Tenant, service: &str) -> Option<Vec<RedPoint>> {
        self.service_red_at(tenant, service, unix_nanos())
    }

    fn service_red_at(&self, tenant: &Tenant, service: &str, now_ns: u64) -> Option<Vec<RedPoint>> {
        let tenants = self.state.lock().expect("span metrics lock");
        let state = tenants.by.get(tenant)?;
        let id = *state.services.ids.get(service)?;
        Some(state.history.points(id, now_ns / NANOS_PER_MINUTE))
    }
}

/// Service names ↔ small ids, at most `limit` of them.
struct Services {
    ids: HashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
    limit: usize,
}

impl Services {
    fn new(limit: usize) -> Self {
        Services {
            ids: HashMap::new(),
            names: Vec::new(),
            limit,
        }
    }

    fn id(&mut self, name: &str) -> u32 {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        if self.names.len() >= self.limit {
            return OVERFLOW_SERVICE;
        }
        let id = self.names.len() as u32;
        self.names.push(name.into());
        self.ids.insert(name.into(), id);
        id
    }
}

/// `tenant="<name>"` (tenant names need no escaping: `[a-z0-9][a-z0-9_-]*`).
fn tenant_label(tenant: &Tenant) -> String {
    format!("tenant=\"{}\"", tenant.as_str())
}

/// A series' labels with the tenant's pair after them, when tenants are labelled.
fn with_tenant<'a>(labels: &'a str, tenant: Option<&str>) -> std::borrow::Cow<'a, str> {
    match tenant {
        None => labels.into(),
        Some(t) if labels.is_empty() => t.to_string().into(),
        Some(t) => format!("{labels},{t}").into(),
    }
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
