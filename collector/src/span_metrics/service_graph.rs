//! Tempo's service-graph metrics: an edge `client → server` for every client (or producer)
//! span whose child is a server (or consumer) span, in whichever order and batch the two
//! arrive.
//!
//! A half waits in `pending`, keyed by (trace id, the client span's id), until its other
//! half comes or `wait` has passed (then it counts as unpaired); at most `max_pending`
//! halves wait, a half beyond that is dropped and counted. Completed edges are
//! `traces_service_graph_request_total`, `…_failed_total` (either half has status ERROR),
//! `…_server_seconds` (the server span's duration) and `…_client_seconds` (the client
//! span's), labelled `client`, `server` and, for producer/consumer pairs,
//! `connection_type="messaging_system"`, with Tempo's default buckets.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;

use clew_proto::{Span, SpanId, SpanKind, TraceId};

use super::exposition::{escape_label_value, write_histogram, Family};
use super::{with_tenant, OVERFLOW_SERVICE};

pub const REQUEST_TOTAL: &str = "traces_service_graph_request_total";
pub const REQUEST_FAILED: &str = "traces_service_graph_request_failed_total";
pub const SERVER_SECONDS: &str = "traces_service_graph_request_server_seconds";
pub const CLIENT_SECONDS: &str = "traces_service_graph_request_client_seconds";
pub const UNPAIRED: &str = "traces_service_graph_unpaired_spans_total";
pub const DROPPED: &str = "traces_service_graph_dropped_spans_total";
pub const PENDING: &str = "clew_service_graph_pending_spans";

/// Tempo's default service-graph buckets, in seconds.
pub const BUCKETS_S: [f64; 8] = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Side {
    Client,
    Server,
}

/// One span's part in a pair.
pub struct Half {
    side: Side,
    key: (TraceId, SpanId),
    messaging: bool,
}

impl Half {
    pub fn of(span: &Span) -> Option<Half> {
        match span.kind {
            SpanKind::Client | SpanKind::Producer => Some(Half {
                side: Side::Client,
                key: (span.trace_id, span.span_id),
                messaging: span.kind == SpanKind::Producer,
            }),
            SpanKind::Server | SpanKind::Consumer => Some(Half {
                side: Side::Server,
                key: (span.trace_id, span.parent_span_id?),
                messaging: span.kind == SpanKind::Consumer,
            }),
            _ => None,
        }
    }
}

struct Waiting {
    side: Side,
    service: u32,
    duration_ns: u64,
    error: bool,
    messaging: bool,
    since_ns: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct EdgeKey {
    client: u32,
    server: u32,
    messaging: bool,
}

struct Edge {
    key: Option<EdgeKey>,
    total: u64,
    failed: u64,
    server: [u64; BUCKETS_S.len() + 1],
    server_sum: f64,
    client: [u64; BUCKETS_S.len() + 1],
    client_sum: f64,
}

impl Edge {
    fn new(key: Option<EdgeKey>) -> Self {
        Edge {
            key,
            total: 0,
            failed: 0,
            server: [0; BUCKETS_S.len() + 1],
            server_sum: 0.0,
            client: [0; BUCKETS_S.len() + 1],
            client_sum: 0.0,
        }
    }

    fn record(&mut self, client_ns: u64, server_ns: u64, failed: bool) {
        self.total += 1;
        self.failed += u64::from(failed);
        let (c, s) = (client_ns as f64 / 1e9, server_ns as f64 / 1e9);
        self.client[BUCKETS_S.partition_point(|b| *b < c)] += 1;
        self.client_sum += c;
        self.server[BUCKETS_S.partition_point(|b| *b < s)] += 1;
        self.server_sum += s;
    }

    fn labels(&self, names: &[Box<str>]) -> String {
        let Some(k) = self.key else {
            return "otel_metric_overflow=\"true\"".to_string();
        };
        let mut out = String::from("client=\"");
        escape_label_value(&mut out, &names[k.client as usize]);
        out.push_str("\",server=\"");
        escape_label_value(&mut out, &names[k.server as usize]);
        out.push('"');
        if k.messaging {
            out.push_str(",connection_type=\"messaging_system\"");
        }
        out
    }
}

/// One tenant's graph as rendered: its `tenant="…"` pair (when tenants are labelled), the
/// graph, and the tenant's service names its edges point into.
pub type TenantGraph<'a> = (Option<&'a str>, &'a ServiceGraph, &'a [Box<str>]);

pub struct ServiceGraph {
    pending: HashMap<(TraceId, SpanId), Waiting>,
    order: VecDeque<((TraceId, SpanId), u64)>,
    max_pending: usize,
    wait_ns: u64,
    ids: HashMap<EdgeKey, u32>,
    edges: Vec<Edge>,
    overflow: Edge,
    limit: usize,
    unpaired: u64,
    dropped: u64,
}

impl ServiceGraph {
    pub fn new(limit: usize, max_pending: usize, wait_ns: u64) -> Self {
        ServiceGraph {
            pending: HashMap::new(),
            order: VecDeque::new(),
            max_pending,
            wait_ns,
            ids: HashMap::new(),
            edges: Vec::new(),
            overflow: Edge::new(None),
            limit,
            unpaired: 0,
            dropped: 0,
        }
    }

    /// A stored span's half: completes an edge with its waiting other half, or waits.
    pub fn offer(&mut self, half: Half, service: u32, duration_ns: u64, error: bool, now_ns: u64) {
        if let Some(other) = self.pending.get(&half.key) {
            if other.side != half.side {
                let other = self.pending.remove(&half.key).expect("present");
                let (client, server) = match half.side {
                    Side::Client => ((service, duration_ns), (other.service, other.duration_ns)),
                    Side::Server => ((other.service, other.duration_ns), (service, duration_ns)),
                };
                let messaging = half.messaging || other.messaging;
                self.edge(client.0, server.0, messaging).record(
                    client.1,
                    server.1,
                    error || other.error,
                );
            }
            // the same half again (a resent span): the first one keeps waiting
            return;
        }
        if self.pending.len() >= self.max_pending {
            self.dropped += 1;
            return;
        }
        self.pending.insert(
            half.key,
            Waiting {
                side: half.side,
                service,
                duration_ns,
                error,
                messaging: half.messaging,
                since_ns: now_ns,
            },
        );
        self.order.push_back((half.key, now_ns));
    }

    fn edge(&mut self, client: u32, server: u32, messaging: bool) -> &mut Edge {
        if client == OVERFLOW_SERVICE || server == OVERFLOW_SERVICE {
            return &mut self.overflow;
        }
        let key = EdgeKey {
            client,
            server,
            messaging,
        };
        let id = match self.ids.get(&key) {
            Some(id) => *id,
            None if self.edges.len() >= self.limit => return &mut self.overflow,
            None => {
                let id = self.edges.len() as u32;
                self.edges.push(Edge::new(Some(key)));
                self.ids.insert(key, id);
                id
            }
        };
        &mut self.edges[id as usize]
    }

    /// Halves that waited `wait` without their other half are unpaired.
    pub fn expire(&mut self, now_ns: u64) {
        while let Some((key, since)) = self.order.front().copied() {
            if since.saturating_add(self.wait_ns) > now_ns {
                break;
            }
            self.order.pop_front();
            // the key may have been paired (and even reused) since it was queued
            if self.pending.get(&key).is_some_and(|w| w.since_ns == since) {
                self.pending.remove(&key);
                self.unpaired += 1;
            }
        }
    }

    /// Every family over every tenant's graph (with its `tenant="…"` pair when tenants
    /// are labelled; `names`: that tenant's service names).
    pub fn render(out: &mut String, graphs: &[TenantGraph<'_>]) {
        let shown: Vec<(&Edge, String)> = graphs
            .iter()
            .flat_map(|(tenant, graph, names)| {
                graph
                    .edges
                    .iter()
                    .chain(std::iter::once(&graph.overflow))
                    .filter(|e| e.total > 0)
                    .map(move |e| (e, with_tenant(&e.labels(names), *tenant).into_owned()))
            })
            .collect();
        Family::counter(
            REQUEST_TOTAL,
            "requests between two services (a client or producer span and its server or consumer child), by client and server (Tempo's names)",
        )
        .write(out);
        for (e, labels) in &shown {
            let _ = writeln!(out, "{REQUEST_TOTAL}{{{labels}}} {}", e.total);
        }
        Family::counter(
            REQUEST_FAILED,
            "requests between two services where either span has status ERROR",
        )
        .write(out);
        for (e, labels) in &shown {
            let _ = writeln!(out, "{REQUEST_FAILED}{{{labels}}} {}", e.failed);
        }
        Family::histogram(
            SERVER_SECONDS,
            "duration of the server span of each request, in seconds",
        )
        .write(out);
        for (e, labels) in &shown {
            write_histogram(
                out,
                SERVER_SECONDS,
                labels,
                &BUCKETS_S,
                &e.server,
                e.server_sum,
            );
        }
        Family::histogram(
            CLIENT_SECONDS,
            "duration of the client span of each request, in seconds",
        )
        .write(out);
        for (e, labels) in &shown {
            write_histogram(
                out,
                CLIENT_SECONDS,
                labels,
                &BUCKETS_S,
                &e.client,
                e.client_sum,
            );
        }
        // the per-graph counters: unlabelled without tenants, `{tenant="…"}` with them
        let per_graph = |out: &mut String, name: &str, value: &dyn Fn(&ServiceGraph) -> u64| {
            for &(tenant, graph, _) in graphs {
                match tenant {
                    None => {
                        let _ = writeln!(out, "{name} {}", value(graph));
                    }
                    Some(t) => {
                        let _ = writeln!(out, "{name}{{{t}}} {}", value(graph));
                    }
                }
            }
        };
        Family::counter(
            UNPAIRED,
            "client or server spans whose other half did not arrive within span_metrics.service_graph_wait_ms",
        )
        .write(out);
        per_graph(out, UNPAIRED, &|g| g.unpaired);
        Family::counter(
            DROPPED,
            "client or server spans not paired because span_metrics.service_graph_max_pending halves were already waiting",
        )
        .write(out);
        per_graph(out, DROPPED, &|g| g.dropped);
        Family::gauge(
            PENDING,
            "client or server spans waiting for their other half",
        )
        .write(out);
        per_graph(out, PENDING, &|g| g.pending.len() as u64);
    }

    /// Requests counted in the overflow series.
    pub fn overflow_count(&self) -> u64 {
        self.overflow.total
    }

    pub fn series_count(&self) -> usize {
        self.edges.len()
    }
}
