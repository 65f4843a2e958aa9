//! Stage 6 of the ingest path: RED metrics, service-graph edges and a per-service hour of
//! per-minute aggregates, computed from the spans the sink stored.
//!
//! ```text
//!  Front::prepare ── 6. SpanMetrics::observe(&spans) ─▶ Observed (series ids, durations, pair halves)
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
//! Everything is bounded: `cardinality_limit` series per metric (further label sets fold
//! into one `otel_metric_overflow="true"` series, counted in
//! `clew_span_metrics_overflow_spans_total`), `service_graph_max_pending` waiting pair
//! halves, [`history::MAX_SERVICES`] services with an hour of history.

pub mod config;
mod exposition;
mod history;
mod red;
mod service_graph;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use clew_proto::{RejectReason, Span, SpanKind};

pub use config::{Dimension, SpanMetricsConfig};
pub use history::RedPoint;

use exposition::Family;
use history::History;
use red::{RedTable, SeriesKey};
use service_graph::{Half, ServiceGraph};

/// A service id that stands for "too many services" (the overflow series).
const OVERFLOW_SERVICE: u32 = u32::MAX;
const NANOS_PER_MINUTE: u64 = 60_000_000_000;

/// The collector's span metrics, shared by every receiver's front half and the query API.
pub struct SpanMetrics {
    dims: Vec<red::Dim>,
    graph_enabled: bool,
    state: Mutex<State>,
}

struct State {
    services: Services,
    red: RedTable,
    graph: ServiceGraph,
    history: History,
}

/// What [`SpanMetrics::observe`] saw of one input's spans, in span order.
pub struct Observed {
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
            state: Mutex::new(State {
                services: Services::new(config.cardinality_limit),
                red: RedTable::new(config.cardinality_limit),
                graph: ServiceGraph::new(
                    config.cardinality_limit,
                    config.service_graph_max_pending,
                    config.service_graph_wait_ms.saturating_mul(1_000_000),
                ),
                history: History::default(),
            }),
        })
    }

    /// Resolves each span's series (creating it if new and under the limit) and notes
    /// what `record` needs; counts nothing yet.
    pub fn observe(&self, spans: &[Span]) -> Observed {
        let mut key = SeriesKey::default();
        let mut out = Vec::with_capacity(spans.len());
        let mut state = self.state.lock().expect("span metrics lock");
        let State {
            services,
            red: table,
            ..
        } = &mut *state;
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
        Observed { spans: out }
    }

    /// Counts the observed spans the sink stored: all but those in `rejected` (indexes
    /// into the submitted spans, as [`crate::sink::SpanSink::submit`] returns them).
    pub fn record(&self, observed: Observed, rejected: &[(usize, RejectReason)]) {
        self.record_at(observed, rejected, unix_nanos());
    }

    fn record_at(&self, observed: Observed, rejected: &[(usize, RejectReason)], now_ns: u64) {
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
        let mut state = self.state.lock().expect("span metrics lock");
        let State {
            red: table,
            graph,
            history,
            ..
        } = &mut *state;
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

    /// The Prometheus text of every span-metrics family (appended to `out`).
    pub fn render(&self, out: &mut String) {
        self.render_at(out, unix_nanos());
    }

    fn render_at(&self, out: &mut String, now_ns: u64) {
        let mut state = self.state.lock().expect("span metrics lock");
        let State {
            services,
            red: table,
            graph,
            ..
        } = &mut *state;
        graph.expire(now_ns);
        table.render(out);
        let mut overflow = vec![(
            "traces_span_metrics",
            table.overflow_count(),
            table.series_count(),
        )];
        if self.graph_enabled {
            graph.render(out, &services.names);
            overflow.push((
                "traces_service_graph",
                graph.overflow_count(),
                graph.series_count(),
            ));
        }
        Family::counter(
            red::OVERFLOW_SPANS,
            "spans (service graph: requests) counted in an otel_metric_overflow=\"true\" series because their metric reached span_metrics.cardinality_limit, by metric",
        )
        .write(out);
        for (metric, n, _) in &overflow {
            let _ = writeln!(out, "{}{{metric=\"{metric}\"}} {n}", red::OVERFLOW_SPANS);
        }
        Family::gauge(
            red::SERIES,
            "series kept, by metric (at most span_metrics.cardinality_limit, besides the overflow series)",
        )
        .write(out);
        for (metric, _, n) in &overflow {
            let _ = writeln!(out, "{}{{metric=\"{metric}\"}} {n}", red::SERIES);
        }
    }

    /// The last hour of one service's requests (its server and consumer spans, by the
    /// minute they ended in), one point per minute, oldest first; `None` for a service no
    /// stored span named.
    pub fn service_red(&self, service: &str) -> Option<Vec<RedPoint>> {
        self.service_red_at(service, unix_nanos())
    }

    fn service_red_at(&self, service: &str, now_ns: u64) -> Option<Vec<RedPoint>> {
        let state = self.state.lock().expect("span metrics lock");
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

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
