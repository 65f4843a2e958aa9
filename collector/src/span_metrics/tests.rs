use std::sync::Arc;

use clew_proto::model::{any_value, AnyValue, KeyValue, Resource, Scope, SpanKind, StatusCode};
use clew_proto::{RejectReason, Span, SpanId, TraceId};

use super::*;

const MS: u64 = 1_000_000;
const T0: u64 = 1_700_000_000 * 1_000_000_000;

struct S {
    trace: u128,
    id: u64,
    parent: Option<u64>,
    service: &'static str,
    name: &'static str,
    kind: SpanKind,
    status: StatusCode,
    duration_ms: u64,
    attrs: Vec<(&'static str, AnyValue)>,
}

fn s(service: &'static str, name: &'static str, kind: SpanKind) -> S {
    S {
        trace: 1,
        id: 1,
        parent: None,
        service,
        name,
        kind,
        status: StatusCode::Unset,
        duration_ms: 1,
        attrs: vec![],
    }
}

fn string(v: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(v.into())),
    }
}

impl S {
    fn span(self) -> Span {
        Span {
            tenant: Default::default(),
            trace_id: TraceId(self.trace.to_be_bytes()),
            span_id: SpanId(self.id.to_be_bytes()),
            parent_span_id: self.parent.map(|p| SpanId(p.to_be_bytes())),
            trace_state: String::new(),
            flags: 0,
            name: self.name.into(),
            kind: self.kind,
            start_unix_nano: T0,
            end_unix_nano: T0 + self.duration_ms * MS,
            attributes: self
                .attrs
                .into_iter()
                .map(|(k, v)| KeyValue {
                    key: k.into(),
                    value: Some(v),
                    ..Default::default()
                })
                .collect(),
            dropped_attributes_count: 0,
            events: vec![],
            dropped_events_count: 0,
            links: vec![],
            dropped_links_count: 0,
            status_code: self.status,
            status_message: String::new(),
            resource: Arc::new(Resource::default()),
            scope: Arc::new(Scope::default()),
            service_name: self.service.into(),
            business_keys: vec![],
            repairs: 0,
        }
    }
}

fn metrics(config: SpanMetricsConfig) -> SpanMetrics {
    config.validate().unwrap();
    SpanMetrics::new(&config).unwrap()
}

fn ingest(m: &SpanMetrics, spans: Vec<Span>, rejected: &[(usize, RejectReason)], now: u64) {
    ingest_as(m, &Tenant::default(), spans, rejected, now);
}

fn ingest_as(
    m: &SpanMetrics,
    tenant: &Tenant,
    mut spans: Vec<Span>,
    rejected: &[(usize, RejectReason)],
    now: u64,
) {
    for span in &mut spans {
        span.tenant = tenant.clone();
    }
    let observed = m.observe(tenant, &spans);
    m.record_at(observed, rejected, now);
}

fn text(m: &SpanMetrics, now: u64) -> String {
    text_for(m, None, now)
}

fn text_for(m: &SpanMetrics, only: Option<&Tenant>, now: u64) -> String {
    let mut out = String::new();
    m.render_at(&mut out, only, now);
    out
}

fn tenant(name: &str) -> Tenant {
    Tenant::parse(name).unwrap()
}

/// The value of the one sample line starting with `series ` (None if absent).
fn sample(text: &str, series: &str) -> Option<f64> {
    let prefix = format!("{series} ");
    let mut found = text.lines().filter(|l| l.starts_with(&prefix));
    let line = found.next()?;
    assert!(found.next().is_none(), "{series} appears twice");
    Some(line[prefix.len()..].parse().unwrap())
}

#[test]
fn calls_and_durations_use_the_connector_names_labels_and_buckets() {
    let m = metrics(SpanMetricsConfig {
        dimensions: vec![
            Dimension::Name("http.route".into()),
            Dimension::WithDefault {
                name: "http.request.method".into(),
                default: Some("GET".into()),
            },
        ],
        ..Default::default()
    });
    let mut spans = Vec::new();
    for (i, ms) in [1u64, 3, 3, 45, 2000, 20_000].into_iter().enumerate() {
        let mut span = s("checkout", "GET /cart", SpanKind::Server);
        span.id = i as u64 + 1;
        span.duration_ms = ms;
        span.attrs = vec![("http.route", string("/cart"))];
        spans.push(span.span());
    }
    let mut failed = s("checkout", "charge \"card\"", SpanKind::Client);
    failed.status = StatusCode::Error;
    failed.duration_ms = 7;
    spans.push(failed.span());
    ingest(&m, spans, &[], T0);
    let t = text(&m, T0);

    let ok = "service_name=\"checkout\",span_name=\"GET /cart\",span_kind=\"SPAN_KIND_SERVER\",status_code=\"STATUS_CODE_UNSET\",http_route=\"/cart\",http_request_method=\"GET\"";
    assert_eq!(
        sample(&t, &format!("traces_span_metrics_calls_total{{{ok}}}")),
        Some(6.0)
    );
    let bucket = |le: &str| {
        sample(
            &t,
            &format!("traces_span_metrics_duration_milliseconds_bucket{{{ok},le=\"{le}\"}}"),
        )
    };
    assert_eq!(bucket("2"), Some(1.0));
    assert_eq!(bucket("4"), Some(3.0));
    assert_eq!(bucket("50"), Some(4.0));
    assert_eq!(bucket("2000"), Some(5.0), "le is inclusive");
    assert_eq!(bucket("15000"), Some(5.0));
    assert_eq!(bucket("+Inf"), Some(6.0));
    assert_eq!(
        sample(
            &t,
            &format!("traces_span_metrics_duration_milliseconds_sum{{{ok}}}")
        ),
        Some(22052.0)
    );
    // a missing dimension without a default is no label at all; values are escaped
    let err = "service_name=\"checkout\",span_name=\"charge \\\"card\\\"\",span_kind=\"SPAN_KIND_CLIENT\",status_code=\"STATUS_CODE_ERROR\",http_request_method=\"GET\"";
    assert_eq!(
        sample(&t, &format!("traces_span_metrics_calls_total{{{err}}}")),
        Some(1.0)
    );
    assert!(t.contains("# TYPE traces_span_metrics_duration_milliseconds histogram"));
    assert_eq!(
        sample(
            &t,
            "clew_span_metrics_series{metric=\"traces_span_metrics\"}"
        ),
        Some(2.0)
    );
}

#[test]
fn spans_the_sink_rejected_are_not_counted() {
    let m = metrics(SpanMetricsConfig::default());
    let spans = (0..5)
        .map(|i| {
            let mut span = s("a", "op", SpanKind::Internal);
            span.id = i + 1;
            span.span()
        })
        .collect();
    ingest(
        &m,
        spans,
        &[
            (1, RejectReason::TraceTooLarge),
            (4, RejectReason::TraceTooLarge),
        ],
        T0,
    );
    // an input the sink refused is observed and never recorded
    let _ = m.observe(
        &Tenant::default(),
        &[s("a", "op", SpanKind::Internal).span()],
    );
    let t = text(&m, T0);
    assert_eq!(
        sample(&t, "traces_span_metrics_calls_total{service_name=\"a\",span_name=\"op\",span_kind=\"SPAN_KIND_INTERNAL\",status_code=\"STATUS_CODE_UNSET\"}"),
        Some(3.0)
    );
}

#[test]
fn label_sets_beyond_the_limit_fold_into_the_overflow_series() {
    let m = metrics(SpanMetricsConfig {
        cardinality_limit: 10,
        ..Default::default()
    });
    let names: Vec<String> = (0..25).map(|i| format!("op-{i}")).collect();
    let spans: Vec<Span> = names
        .iter()
        .map(|n| {
            let mut span = s("a", "x", SpanKind::Server).span();
            span.name = n.clone();
            span
        })
        .collect();
    ingest(&m, spans.clone(), &[], T0);
    // a known series keeps counting past the limit
    ingest(&m, spans[..1].to_vec(), &[], T0);
    let t = text(&m, T0);
    let calls: Vec<&str> = t
        .lines()
        .filter(|l| l.starts_with("traces_span_metrics_calls_total{"))
        .collect();
    assert_eq!(calls.len(), 11, "{calls:#?}");
    assert_eq!(
        sample(
            &t,
            "traces_span_metrics_calls_total{otel_metric_overflow=\"true\"}"
        ),
        Some(15.0)
    );
    assert_eq!(
        sample(
            &t,
            "clew_span_metrics_overflow_spans_total{metric=\"traces_span_metrics\"}"
        ),
        Some(15.0)
    );
    assert!(t.contains(
        "span_name=\"op-0\",span_kind=\"SPAN_KIND_SERVER\",status_code=\"STATUS_CODE_UNSET\"} 2\n"
    ));
    assert_eq!(
        sample(
            &t,
            "clew_span_metrics_series{metric=\"traces_span_metrics\"}"
        ),
        Some(10.0)
    );
}

fn pair(trace: u128, client: &'static str, server: &'static str) -> (Span, Span) {
    let mut c = s(client, "call", SpanKind::Client);
    c.trace = trace;
    c.id = 10;
    c.parent = Some(9);
    c.duration_ms = 300;
    let mut sv = s(server, "handle", SpanKind::Server);
    sv.trace = trace;
    sv.id = 11;
    sv.parent = Some(10);
    sv.duration_ms = 250;
    (c.span(), sv.span())
}

#[test]
fn service_graph_pairs_halves_across_batches_and_expires_the_rest() {
    let m = metrics(SpanMetricsConfig {
        service_graph_wait_ms: 1000,
        ..Default::default()
    });
    // same batch, server first
    let (c1, s1) = pair(1, "frontend", "cart");
    ingest(&m, vec![s1, c1], &[], T0);
    // different batches, client first; the server half failed
    let (c2, mut s2) = pair(2, "frontend", "cart");
    s2.status_code = StatusCode::Error;
    ingest(&m, vec![c2], &[], T0);
    ingest(&m, vec![s2], &[], T0 + 500 * MS);
    // a producer → consumer pair is a messaging edge
    let (mut c3, mut s3) = pair(3, "cart", "mailer");
    c3.kind = SpanKind::Producer;
    s3.kind = SpanKind::Consumer;
    ingest(&m, vec![c3, s3], &[], T0);
    // a client whose server never comes is unpaired after the wait
    let (c4, _) = pair(4, "frontend", "ghost");
    ingest(&m, vec![c4], &[], T0 + 600 * MS);
    let t = text(&m, T0 + 1500 * MS);
    let edge = "client=\"frontend\",server=\"cart\"";
    assert_eq!(
        sample(&t, &format!("traces_service_graph_request_total{{{edge}}}")),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &t,
            &format!("traces_service_graph_request_failed_total{{{edge}}}")
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &t,
            &format!("traces_service_graph_request_server_seconds_bucket{{{edge},le=\"0.2\"}}")
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &t,
            &format!("traces_service_graph_request_server_seconds_bucket{{{edge},le=\"0.4\"}}")
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &t,
            &format!("traces_service_graph_request_server_seconds_sum{{{edge}}}")
        ),
        Some(0.5)
    );
    assert_eq!(
        sample(
            &t,
            &format!("traces_service_graph_request_client_seconds_sum{{{edge}}}")
        ),
        Some(0.6)
    );
    assert_eq!(
        sample(&t, "traces_service_graph_request_total{client=\"cart\",server=\"mailer\",connection_type=\"messaging_system\"}"),
        Some(1.0)
    );
    assert_eq!(sample(&t, "clew_service_graph_pending_spans"), Some(1.0));
    assert_eq!(
        sample(&t, "traces_service_graph_unpaired_spans_total"),
        Some(0.0)
    );
    let t = text(&m, T0 + 1600 * MS);
    assert_eq!(
        sample(&t, "traces_service_graph_unpaired_spans_total"),
        Some(1.0)
    );
    assert_eq!(sample(&t, "clew_service_graph_pending_spans"), Some(0.0));
}

#[test]
fn the_pending_store_is_bounded() {
    let m = metrics(SpanMetricsConfig {
        service_graph_max_pending: 2,
        ..Default::default()
    });
    for trace in 1..=5 {
        let (c, _) = pair(trace, "a", "b");
        ingest(&m, vec![c], &[], T0);
    }
    let t = text(&m, T0);
    assert_eq!(sample(&t, "clew_service_graph_pending_spans"), Some(2.0));
    assert_eq!(
        sample(&t, "traces_service_graph_dropped_spans_total"),
        Some(3.0)
    );
}

#[test]
fn service_graph_off_renders_no_edges() {
    let m = metrics(SpanMetricsConfig {
        service_graph: false,
        ..Default::default()
    });
    let (c, sv) = pair(1, "a", "b");
    ingest(&m, vec![c, sv], &[], T0);
    let t = text(&m, T0);
    assert!(!t.contains("traces_service_graph"), "{t}");
    assert!(t.contains("traces_span_metrics_calls_total{"));
}

#[test]
fn service_history_counts_requests_per_minute() {
    let m = metrics(SpanMetricsConfig::default());
    let mut spans = Vec::new();
    for i in 0..10u64 {
        let mut span = s("cart", "GET /cart", SpanKind::Server);
        span.id = i + 1;
        span.duration_ms = 10 * (i + 1);
        if i == 0 {
            span.status = StatusCode::Error;
        }
        spans.push(span.span());
    }
    // client spans are not requests the service handled
    spans.push(s("cart", "call", SpanKind::Client).span());
    ingest(&m, spans, &[], T0);
    let points = m.service_red_at(&Tenant::default(), "cart", T0).unwrap();
    assert_eq!(points.len(), 60);
    let last = points.last().unwrap();
    assert_eq!(last.t, T0 / 1_000_000_000 / 60 * 60);
    assert_eq!((last.calls, last.errors), (10, 1));
    let p50 = last.p50_ms.unwrap();
    assert!((40.0..=60.0).contains(&p50), "p50 {p50}");
    assert!(m.service_red_at(&Tenant::default(), "nobody", T0).is_none());
    assert!(SpanMetrics::new(&SpanMetricsConfig {
        enabled: false,
        ..Default::default()
    })
    .is_none());
}

/// A server span of `service`, `name`, 10 ms.
fn server(service: &'static str, name: &str, id: u64) -> Span {
    let mut span = s(service, "x", SpanKind::Server);
    span.id = id;
    let mut span = span.span();
    span.name = name.to_string();
    span
}

#[test]
fn without_tenants_the_exposition_has_no_tenant_label_and_with_auth_it_only_adds_one() {
    let spans = || {
        let (c, sv) = pair(1, "frontend", "cart");
        vec![c, sv, server("cart", "GET /cart", 3)]
    };
    let plain = metrics(SpanMetricsConfig::default());
    let before = text(&plain, T0);
    assert!(!before.contains("tenant"), "{before}");
    assert!(before.contains("traces_service_graph_unpaired_spans_total 0\n"));
    ingest(&plain, spans(), &[], T0);
    let plain_text = text(&plain, T0);
    assert!(!plain_text.contains("tenant"), "{plain_text}");

    // with auth on: the same lines, each with tenant="default" among its labels
    let authed = metrics(SpanMetricsConfig::default()).label_tenants(true);
    ingest(&authed, spans(), &[], T0);
    let authed_text = text(&authed, T0);
    assert!(authed_text.contains(
        "traces_span_metrics_calls_total{service_name=\"cart\",span_name=\"GET /cart\",span_kind=\"SPAN_KIND_SERVER\",status_code=\"STATUS_CODE_UNSET\",tenant=\"default\"} 1\n"
    ), "{authed_text}");
    assert!(
        authed_text.contains("traces_service_graph_unpaired_spans_total{tenant=\"default\"} 0\n")
    );
    assert!(authed_text.contains(
        "clew_span_metrics_series{metric=\"traces_span_metrics\",tenant=\"default\"} 3\n"
    ));
    let stripped: String = authed_text
        .lines()
        .filter(|l| !l.contains(LEFT_OUT_TENANT_SPANS))
        .map(|l| {
            let l = l
                .replace(",tenant=\"default\"", "")
                .replace("{tenant=\"default\"}", "");
            format!("{l}\n")
        })
        .collect();
    assert_eq!(stripped, plain_text);
}

#[test]
fn each_tenant_has_its_own_series_budget_graph_and_history() {
    let m = metrics(SpanMetricsConfig {
        cardinality_limit: 10,
        ..Default::default()
    });
    let (shop, bank) = (tenant("shop"), tenant("bank"));
    // shop exhausts its own budget...
    let flood: Vec<Span> = (0..25)
        .map(|i| server("shop-api", &format!("op-{i}"), i + 1))
        .collect();
    ingest_as(&m, &shop, flood, &[], T0);
    // ...and bank's first series are still series of their own
    let bank_spans: Vec<Span> = (0..3)
        .map(|i| server("bank-api", &format!("pay-{i}"), i + 1))
        .collect();
    ingest_as(&m, &bank, bank_spans, &[], T0);
    // the same service name in both tenants is two services
    ingest_as(&m, &bank, vec![server("shop-api", "op-0", 9)], &[], T0);
    let (c, sv) = pair(7, "bank-web", "bank-api");
    ingest_as(&m, &bank, vec![c, sv], &[], T0);

    let t = text(&m, T0);
    let calls = |t: &str, tenant: &str| {
        t.lines()
            .filter(|l| {
                l.starts_with("traces_span_metrics_calls_total{")
                    && l.contains(&format!("tenant=\"{tenant}\"}}"))
            })
            .count()
    };
    assert_eq!(calls(&t, "shop"), 11, "10 series and shop's overflow: {t}");
    assert_eq!(
        calls(&t, "bank"),
        6,
        "3 + 1 + the pair's 2, no overflow: {t}"
    );
    assert_eq!(
        sample(
            &t,
            "traces_span_metrics_calls_total{otel_metric_overflow=\"true\",tenant=\"shop\"}"
        ),
        Some(15.0)
    );
    assert_eq!(
        sample(&t, "clew_span_metrics_overflow_spans_total{metric=\"traces_span_metrics\",tenant=\"bank\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&t, "traces_span_metrics_calls_total{service_name=\"shop-api\",span_name=\"op-0\",span_kind=\"SPAN_KIND_SERVER\",status_code=\"STATUS_CODE_UNSET\",tenant=\"bank\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&t, "traces_service_graph_request_total{client=\"bank-web\",server=\"bank-api\",tenant=\"bank\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &t,
            "traces_service_graph_unpaired_spans_total{tenant=\"shop\"}"
        ),
        Some(0.0)
    );
    assert_eq!(sample(&t, LEFT_OUT_TENANT_SPANS), Some(0.0));

    // one tenant's view: its series only, nothing of the other's names
    let bank_only = text_for(&m, Some(&bank), T0);
    assert!(!bank_only.contains("tenant=\"shop\""), "{bank_only}");
    assert!(!bank_only.contains("op-1\""), "{bank_only}");
    assert!(!bank_only.contains(LEFT_OUT_TENANT_SPANS), "{bank_only}");
    assert_eq!(calls(&bank_only, "bank"), 6);
    let nobody = text_for(&m, Some(&tenant("nobody")), T0);
    assert!(
        !nobody.contains("shop") && !nobody.contains("bank"),
        "{nobody}"
    );
    assert!(nobody.contains("# TYPE traces_span_metrics_calls_total counter"));

    // RED history per (tenant, service)
    let calls_of = |t: &Tenant, service: &str| {
        m.service_red_at(t, service, T0)
            .map(|p| p.iter().map(|p| p.calls).sum::<u64>())
    };
    assert_eq!(calls_of(&shop, "shop-api"), Some(25));
    assert_eq!(calls_of(&bank, "shop-api"), Some(1));
    assert_eq!(calls_of(&shop, "bank-api"), None);
    assert_eq!(calls_of(&Tenant::default(), "shop-api"), None);
}

#[test]
fn tenants_beyond_max_tenants_are_counted_not_kept() {
    let m = metrics(SpanMetricsConfig {
        max_tenants: 2,
        ..Default::default()
    });
    for name in ["a", "b", "c"] {
        let spans = (0..4).map(|i| server("svc", "op", i + 1)).collect();
        ingest_as(
            &m,
            &tenant(name),
            spans,
            &[(0, RejectReason::TraceTooLarge)],
            T0,
        );
    }
    let t = text(&m, T0);
    assert!(
        t.contains("tenant=\"a\"") && t.contains("tenant=\"b\""),
        "{t}"
    );
    assert!(!t.contains("tenant=\"c\""), "{t}");
    assert_eq!(
        sample(&t, LEFT_OUT_TENANT_SPANS),
        Some(3.0),
        "stored spans of c"
    );
    assert!(m.service_red_at(&tenant("c"), "svc", T0).is_none());
    // a tenant that has its metrics keeps them
    ingest_as(&m, &tenant("a"), vec![server("svc", "op", 9)], &[], T0);
    assert_eq!(
        sample(&text(&m, T0), "traces_span_metrics_calls_total{service_name=\"svc\",span_name=\"op\",span_kind=\"SPAN_KIND_SERVER\",status_code=\"STATUS_CODE_UNSET\",tenant=\"a\"}"),
        Some(4.0)
    );
}
