//! Realistic OTLP workload shared by the micro-benchmarks and the load generator:
//! traces of 10–30 spans over a handful of services, 10–20 attributes per span (~400 B of
//! OTLP protobuf per span), one business key (`order_id`) per trace on the entry span, and
//! about 2 % failing traces with an exception event on a database span.

#![allow(dead_code)]

use clew_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use clew_proto::otlp::common::v1::{any_value::Value, AnyValue, InstrumentationScope, KeyValue};
use clew_proto::otlp::resource::v1::Resource;
use clew_proto::otlp::trace::v1::{span::Event, ResourceSpans, ScopeSpans, Span, Status};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub const SERVICES: [&str; 6] = [
    "frontend",
    "checkout",
    "payments",
    "inventory",
    "shipping",
    "users",
];
const ROUTES: [&str; 5] = [
    "/api/orders/{id}",
    "/api/cart",
    "/api/pay",
    "/api/stock/{sku}",
    "/api/users/{id}",
];

fn s(key: &str, v: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}
fn i(key: &str, v: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::IntValue(v)),
        }),
        ..Default::default()
    }
}

/// One generated trace: its id, its order id and its spans grouped by service.
pub struct GenTrace {
    pub trace_id: [u8; 16],
    pub order_id: String,
    pub failed: bool,
    pub spans: Vec<(usize, Span)>,
}

pub struct Workload {
    rng: StdRng,
    next_order: u64,
    run: u64,
}

impl Workload {
    pub fn new(seed: u64) -> Self {
        Workload {
            rng: StdRng::seed_from_u64(seed),
            next_order: 0,
            run: seed,
        }
    }

    pub fn trace(&mut self, start_unix_nano: u64) -> GenTrace {
        let mut trace_id: [u8; 16] = self.rng.random();
        trace_id[0] |= 1;
        self.next_order += 1;
        let order_id = format!("{}-{:08}", self.run, self.next_order);
        let n = self.rng.random_range(10..=30usize);
        let failed = self.rng.random_bool(0.02);
        let fail_at = if failed {
            self.rng.random_range(1..n)
        } else {
            usize::MAX
        };
        let mut spans = Vec::with_capacity(n);
        let mut ids: Vec<[u8; 8]> = Vec::with_capacity(n);
        for k in 0..n {
            let mut id: [u8; 8] = self.rng.random();
            id[0] |= 1;
            let parent = if k == 0 {
                None
            } else {
                Some(ids[self.rng.random_range(0..k)])
            };
            ids.push(id);
            let svc = if k == 0 {
                0
            } else {
                self.rng.random_range(0..SERVICES.len())
            };
            let start = start_unix_nano + (k as u64) * 150_000;
            let dur = self.rng.random_range(50_000..20_000_000u64);
            let route = ROUTES[self.rng.random_range(0..ROUTES.len())];
            let mut attributes = vec![
                s(
                    "http.request.method",
                    if k % 3 == 0 { "POST" } else { "GET" },
                ),
                s("http.route", route),
                i(
                    "http.response.status_code",
                    if k == fail_at { 500 } else { 200 },
                ),
                s(
                    "url.path",
                    route.replace("{id}", &self.rng.random_range(1..100_000u32).to_string()),
                ),
                s(
                    "server.address",
                    format!("{}.svc.cluster.local", SERVICES[svc]),
                ),
                i("server.port", 8080),
                s("network.protocol.version", "1.1"),
                s(
                    "thread.name",
                    format!("worker-{}", self.rng.random_range(0..16u32)),
                ),
                i("thread.id", self.rng.random_range(1..64i64)),
                s("code.function", "handle"),
            ];
            let extra = self.rng.random_range(0..=8usize);
            for e in 0..extra {
                attributes.push(s(
                    &format!("app.attr_{e}"),
                    format!("value-{}", self.rng.random_range(0..1000u32)),
                ));
            }
            if k == 0 {
                attributes.push(s("order_id", order_id.clone()));
            }
            let mut status = None;
            let mut events = Vec::new();
            if k == fail_at {
                attributes.push(s("db.system", "postgresql"));
                status = Some(Status {
                    code: 2,
                    message: "payment provider timeout".into(),
                });
                events.push(Event {
                    time_unix_nano: start + dur / 2,
                    name: "exception".into(),
                    attributes: vec![
                        s("exception.type", "TimeoutError"),
                        s(
                            "exception.message",
                            format!("payment provider timed out for order {order_id}"),
                        ),
                        s(
                            "exception.stacktrace",
                            "at pay (pay.rs:10)\nat handle (main.rs:3)",
                        ),
                    ],
                    dropped_attributes_count: 0,
                });
            }
            spans.push((
                svc,
                Span {
                    trace_id: trace_id.to_vec(),
                    span_id: id.to_vec(),
                    parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
                    name: format!("{} {}", if k % 3 == 0 { "POST" } else { "GET" }, route),
                    kind: if k == 0 { 2 } else { 3 },
                    start_time_unix_nano: start,
                    end_time_unix_nano: start + dur,
                    attributes,
                    events,
                    status,
                    flags: 0x301,
                    ..Default::default()
                },
            ));
        }
        GenTrace {
            trace_id,
            order_id,
            failed,
            spans,
        }
    }
}

/// Groups spans into one export request the way an SDK does (one ResourceSpans per service).
pub fn request(traces: &mut dyn Iterator<Item = GenTrace>) -> ExportTraceServiceRequest {
    let mut per_service: Vec<Vec<Span>> = vec![Vec::new(); SERVICES.len()];
    for t in traces {
        for (svc, span) in t.spans {
            per_service[svc].push(span);
        }
    }
    ExportTraceServiceRequest {
        resource_spans: per_service
            .into_iter()
            .enumerate()
            .filter(|(_, spans)| !spans.is_empty())
            .map(|(svc, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        s("service.name", SERVICES[svc]),
                        s("service.version", "1.4.2"),
                        s("deployment.environment", "production"),
                        s("host.name", format!("node-{svc}")),
                        s("telemetry.sdk.language", "rust"),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "shop".into(),
                        version: "1.0".into(),
                        ..Default::default()
                    }),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

/// Bytes of the files under `path`.
pub fn dir_bytes(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
