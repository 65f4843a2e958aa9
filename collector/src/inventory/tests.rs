use std::cmp::Ordering;
use std::sync::Arc;

use clew_proto::model::{any_value, AnyValue, KeyValue, Resource, Scope, SpanKind, StatusCode};
use clew_proto::{RejectReason, Span, SpanId, Tenant, TraceId};

use super::view::{answer, compare_versions, InventoryFilter};
use super::*;

const T0: u64 = 1_700_000_000_000;

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

/// A resource of `service` with `attrs` (key, string value) and the Python SDK.
fn resource(service: &str, attrs: &[(&str, &str)]) -> Arc<Resource> {
    let mut attributes = vec![
        kv("service.name", s(service)),
        kv("telemetry.sdk.name", s("opentelemetry")),
        kv("telemetry.sdk.language", s("python")),
    ];
    attributes.extend(attrs.iter().map(|(k, v)| kv(k, s(v))));
    Arc::new(Resource {
        attributes,
        ..Default::default()
    })
}

fn spans(resource: &Arc<Resource>, n: usize) -> Vec<Span> {
    (0..n)
        .map(|i| Span {
            tenant: Default::default(),
            trace_id: TraceId(1u128.to_be_bytes()),
            span_id: SpanId((i as u64 + 1).to_be_bytes()),
            parent_span_id: None,
            trace_state: String::new(),
            flags: 0,
            name: "op".into(),
            kind: SpanKind::Server,
            start_unix_nano: 1,
            end_unix_nano: 2,
            attributes: vec![],
            dropped_attributes_count: 0,
            events: vec![],
            dropped_events_count: 0,
            links: vec![],
            dropped_links_count: 0,
            status_code: StatusCode::Unset,
            status_message: String::new(),
            resource: resource.clone(),
            scope: Arc::new(Scope::default()),
            service_name: String::new(),
            business_keys: vec![],
            repairs: 0,
        })
        .collect()
}

fn inventory(config: InventoryConfig) -> Inventory {
    Inventory::new(&config).expect("enabled")
}

fn ingest(inv: &Inventory, batch: &[Span], protocol: Protocol, origin: &Origin, now_ms: u64) {
    let noted = inv.note(&Tenant::default(), batch);
    inv.record_at(noted, &[], protocol, origin, now_ms);
}

fn instances(inv: &Inventory) -> Vec<Instance> {
    let mut all = inv.snapshot(&Tenant::default()).instances;
    all.sort_by(|a, b| (&a.service, &a.instance).cmp(&(&b.service, &b.instance)));
    all
}

#[test]
fn one_group_per_resource_run_and_only_stored_spans_count() {
    let inv = inventory(InventoryConfig::default());
    let a = resource("checkout", &[("host.name", "web-1")]);
    let b = resource("payments", &[("host.name", "pay-1")]);
    let mut batch = spans(&a, 3);
    batch.extend(spans(&b, 2));
    batch.extend(spans(&a, 1));
    let noted = inv.note(&Tenant::default(), &batch);
    assert_eq!(noted.0.len(), 3, "runs of one resource: a, b, a");
    // the store refused the second span of `a` and the first of `b`
    let rejected = [
        (3, RejectReason::TraceTooLarge),
        (1, RejectReason::TraceTooLarge),
    ];
    inv.record_at(noted, &rejected, Protocol::Grpc, &Origin::default(), T0);
    let all = instances(&inv);
    assert_eq!(all.len(), 2);
    assert_eq!(
        (all[0].service.as_str(), all[0].spans_total),
        ("checkout", 3)
    );
    assert_eq!(
        (all[1].service.as_str(), all[1].spans_total),
        ("payments", 1)
    );
    assert_eq!(all[0].receivers, ["otlp_grpc"]);

    // a group the store refused entirely leaves no trace
    let c = resource("refused", &[]);
    let batch = spans(&c, 2);
    let noted = inv.note(&Tenant::default(), &batch);
    inv.record_at(
        noted,
        &[
            (0, RejectReason::TraceTooLarge),
            (1, RejectReason::TraceTooLarge),
        ],
        Protocol::Grpc,
        &Origin::default(),
        T0,
    );
    assert_eq!(instances(&inv).len(), 2);
}

#[test]
fn instances_are_told_apart_by_instance_id_else_host_and_pid() {
    let inv = inventory(InventoryConfig::default());
    let origin = Origin::default();
    for attrs in [
        vec![("service.instance.id", "i-1"), ("host.name", "h")],
        // the same instance id on another host is the same instance
        vec![("service.instance.id", "i-1"), ("host.name", "other")],
        vec![("host.name", "h"), ("process.pid", "10")],
        vec![("host.name", "h"), ("process.pid", "11")],
        vec![("host.name", "h")],
        vec![],
    ] {
        let r = resource("svc", &attrs);
        ingest(&inv, &spans(&r, 1), Protocol::Http, &origin, T0);
    }
    let labels: Vec<String> = instances(&inv).into_iter().map(|i| i.instance).collect();
    assert_eq!(labels, ["", "h", "h/10", "h/11", "i-1"]);
    let no_service = Arc::new(Resource::default());
    ingest(&inv, &spans(&no_service, 1), Protocol::Http, &origin, T0);
    assert!(instances(&inv)
        .iter()
        .any(|i| i.service == "unknown_service"));
}

#[test]
fn details_are_read_again_only_after_refresh_secs() {
    let inv = inventory(InventoryConfig {
        refresh_secs: 5,
        ..Default::default()
    });
    let origin = Origin::default();
    let v1 = resource("svc", &[("host.name", "h"), ("service.version", "1.0.0")]);
    let v2 = resource("svc", &[("host.name", "h"), ("service.version", "2.0.0")]);
    ingest(&inv, &spans(&v1, 1), Protocol::Grpc, &origin, T0);
    ingest(&inv, &spans(&v2, 1), Protocol::Grpc, &origin, T0 + 4_000);
    let i = &instances(&inv)[0];
    assert_eq!(
        i.service_version.as_deref(),
        Some("1.0.0"),
        "not refreshed yet"
    );
    assert_eq!(
        (i.spans_total, i.last_seen_ms),
        (2, T0 + 4_000),
        "but counted"
    );
    ingest(&inv, &spans(&v2, 1), Protocol::Grpc, &origin, T0 + 5_000);
    assert_eq!(instances(&inv)[0].service_version.as_deref(), Some("2.0.0"));
}

#[test]
fn receivers_and_the_shipping_agent_are_kept() {
    let inv = inventory(InventoryConfig {
        refresh_secs: 1,
        ..Default::default()
    });
    let r = resource("svc", &[("host.name", "h")]);
    let kafka = Origin {
        topic: Some("clew-spans".into()),
        agent: Some(Arc::new(AgentId {
            name: "node-7".into(),
            version: "0.1.0".into(),
        })),
    };
    ingest(&inv, &spans(&r, 1), Protocol::Grpc, &Origin::default(), T0);
    ingest(&inv, &spans(&r, 1), Protocol::Kafka, &kafka, T0 + 1_000);
    ingest(&inv, &spans(&r, 1), Protocol::Kafka, &kafka, T0 + 2_000);
    ingest(
        &inv,
        &spans(&r, 1),
        Protocol::Zipkin,
        &Origin::default(),
        T0 + 3_000,
    );
    let i = &instances(&inv)[0];
    assert_eq!(i.receivers, ["otlp_grpc", "kafka/clew-spans", "zipkin"]);
    assert_eq!(
        i.agent,
        Some(AgentId {
            name: "node-7".into(),
            version: "0.1.0".into()
        })
    );
}

#[test]
fn the_cap_holds_and_what_it_leaves_out_is_counted() {
    let inv = inventory(InventoryConfig {
        max_instances: 100,
        ..Default::default()
    });
    let origin = Origin::default();
    for host in 0..1_000 {
        let r = resource("fleet", &[("host.name", &format!("host-{host}"))]);
        // each host twice: left-out instances are counted once each
        ingest(&inv, &spans(&r, 2), Protocol::Grpc, &origin, T0);
        ingest(&inv, &spans(&r, 1), Protocol::Grpc, &origin, T0);
    }
    let snap = inv.snapshot(&Tenant::default());
    assert_eq!(snap.instances.len(), 100);
    assert_eq!(snap.left_out, 900);
    assert!(!snap.left_out_saturated);
    assert_eq!(snap.left_out_spans, 900 * 3);
    // beyond what is counted exactly (here 100,000) the count is a lower bound, and says so
    for host in 1_000..101_200 {
        let r = resource("fleet", &[("host.name", &format!("host-{host}"))]);
        ingest(&inv, &spans(&r, 1), Protocol::Grpc, &origin, T0);
    }
    let snap = inv.snapshot(&Tenant::default());
    assert_eq!(snap.left_out, 100_000);
    assert!(snap.left_out_saturated);
}

#[test]
fn saved_and_read_back_with_the_same_identities() {
    let config = InventoryConfig::default();
    let inv = inventory(config.clone());
    let origin = Origin::default();
    for attrs in [
        vec![("service.instance.id", "i-1")],
        vec![("host.name", "h"), ("process.pid", "10")],
        vec![],
    ] {
        let r = resource("svc", &attrs);
        ingest(&inv, &spans(&r, 2), Protocol::Grpc, &origin, T0);
    }
    let bytes = inv.encode_if_dirty().expect("changed");
    assert!(inv.encode_if_dirty().is_none(), "nothing changed since");
    let back = inventory(config);
    assert_eq!(back.restore(&bytes), Ok(3));
    // everything but when the details were last read (they are read again at once)
    let json = |i: &Inventory| serde_json::to_value(instances(i)).unwrap();
    assert_eq!(json(&back), json(&inv));
    // the same resources count on the instances read back, not on new ones
    for attrs in [vec![("service.instance.id", "i-1")], vec![]] {
        let r = resource("svc", &attrs);
        ingest(&back, &spans(&r, 1), Protocol::Grpc, &origin, T0 + 1);
    }
    let all = instances(&back);
    assert_eq!(all.len(), 3);
    assert_eq!(all.iter().map(|i| i.spans_total).sum::<u64>(), 8);
    assert!(back.restore(b"not gzip").is_err());
}

#[test]
fn expired_instances_go() {
    let inv = inventory(InventoryConfig::default());
    let origin = Origin::default();
    let old = resource("svc", &[("host.name", "old")]);
    let new = resource("svc", &[("host.name", "new")]);
    ingest(&inv, &spans(&old, 1), Protocol::Grpc, &origin, T0);
    ingest(&inv, &spans(&new, 1), Protocol::Grpc, &origin, T0 + 10_000);
    assert_eq!(inv.expire(T0 + 5_000), 1);
    assert_eq!(instances(&inv)[0].instance, "new");
}

#[test]
fn answer_marks_quiet_and_outdated_and_filters() {
    let config = InventoryConfig {
        quiet_after_secs: 60,
        ..Default::default()
    };
    let inv = inventory(config.clone());
    let origin = Origin::default();
    let sdk = |host: &str, version: &str, service_version: &str| {
        resource(
            "checkout",
            &[
                ("host.name", host),
                ("telemetry.sdk.version", version),
                ("service.version", service_version),
            ],
        )
    };
    ingest(
        &inv,
        &spans(&sdk("a", "1.9.0", "2.0"), 1),
        Protocol::Grpc,
        &origin,
        T0,
    );
    ingest(
        &inv,
        &spans(&sdk("b", "1.10.0", "2.1"), 1),
        Protocol::Grpc,
        &origin,
        T0 + 100_000,
    );
    let payments = resource("payments", &[("host.name", "p")]);
    ingest(
        &inv,
        &spans(&payments, 1),
        Protocol::Grpc,
        &origin,
        T0 + 100_000,
    );

    let now = T0 + 120_000;
    let all = answer(
        inv.snapshot(&Tenant::default()),
        &InventoryFilter::default(),
        &config,
        now,
    );
    assert_eq!(all.instances_kept, 3);
    assert_eq!(
        all.services
            .iter()
            .map(|s| s.service.as_str())
            .collect::<Vec<_>>(),
        ["checkout", "payments"]
    );
    let checkout = &all.services[0];
    assert_eq!(checkout.service_versions, ["2.1", "2.0"]);
    assert_eq!(checkout.quiet_instances, 1);
    let (b, a) = (&checkout.instances[0], &checkout.instances[1]);
    assert_eq!(
        (b.instance.instance.as_str(), b.quiet, b.sdk_outdated),
        ("b", false, false)
    );
    assert_eq!(
        (a.instance.instance.as_str(), a.quiet, a.sdk_outdated),
        ("a", true, true)
    );
    assert_eq!(all.newest_sdk_versions[0].version, "1.10.0");

    let quiet = InventoryFilter {
        quiet_for_ms: Some(60_000),
        ..Default::default()
    };
    let q = answer(inv.snapshot(&Tenant::default()), &quiet, &config, now);
    assert_eq!(q.services.len(), 1);
    assert_eq!(q.services[0].instances.len(), 1);
    assert_eq!(q.services[0].instances[0].instance.instance, "a");

    let by_sdk = |sdk: &str| {
        answer(
            inv.snapshot(&Tenant::default()),
            &InventoryFilter {
                sdk: Some(sdk.into()),
                ..Default::default()
            },
            &config,
            now,
        )
        .services
        .iter()
        .map(|s| s.instances.len())
        .sum::<usize>()
    };
    assert_eq!(by_sdk("Python"), 3);
    assert_eq!(by_sdk("opentelemetry@1.9.0"), 1);
    assert_eq!(by_sdk("java"), 0);
    let by_version = answer(
        inv.snapshot(&Tenant::default()),
        &InventoryFilter {
            service: Some("checkout".into()),
            version: Some("2.0".into()),
            ..Default::default()
        },
        &config,
        now,
    );
    assert_eq!(by_version.services[0].instances.len(), 1);
}

#[test]
fn spans_per_minute_is_the_last_complete_minute() {
    let inv = inventory(InventoryConfig::default());
    let r = resource("svc", &[]);
    let minute = (T0 / 60_000 + 1) * 60_000;
    ingest(
        &inv,
        &spans(&r, 7),
        Protocol::Grpc,
        &Origin::default(),
        minute + 1_000,
    );
    ingest(
        &inv,
        &spans(&r, 5),
        Protocol::Grpc,
        &Origin::default(),
        minute + 59_000,
    );
    ingest(
        &inv,
        &spans(&r, 2),
        Protocol::Grpc,
        &Origin::default(),
        minute + 61_000,
    );
    let i = &instances(&inv)[0];
    assert_eq!(i.spans_per_minute(minute + 62_000), 12);
    assert_eq!(i.spans_per_minute(minute + 121_000), 2);
    assert_eq!(i.spans_per_minute(minute + 181_000), 0);
}

#[test]
fn versions_compare_as_people_read_them() {
    for (a, b, want) in [
        ("1.10.0", "1.9.3", Ordering::Greater),
        ("1.2", "1.2.0", Ordering::Equal),
        ("v2.0.0", "1.99", Ordering::Greater),
        ("1.2.0-rc1", "1.2.0", Ordering::Less),
        ("0.33.0", "0.33.0", Ordering::Equal),
    ] {
        assert_eq!(compare_versions(a, b), want, "{a} vs {b}");
        assert_eq!(compare_versions(b, a), want.reverse(), "{b} vs {a}");
    }
}

fn ingest_as(inv: &Inventory, tenant: &Tenant, batch: &[Span], now_ms: u64) {
    let mut batch = batch.to_vec();
    for span in &mut batch {
        span.tenant = tenant.clone();
    }
    let noted = inv.note(tenant, &batch);
    inv.record_at(noted, &[], Protocol::Http, &Origin::default(), now_ms);
}

#[test]
fn each_tenant_has_its_own_instances_cap_and_saved_inventory() {
    let config = InventoryConfig {
        max_instances: 2,
        ..Default::default()
    };
    let inv = inventory(config.clone());
    let (shop, bank) = (
        Tenant::parse("shop").unwrap(),
        Tenant::parse("bank").unwrap(),
    );
    // the same resource in two tenants is two instances
    let shared = resource("checkout", &[("host.name", "web-1")]);
    ingest_as(&inv, &shop, &spans(&shared, 3), T0);
    ingest_as(&inv, &bank, &spans(&shared, 1), T0);
    // shop fills its cap; bank's next instance is still kept
    for host in ["web-2", "web-3", "web-4"] {
        let r = resource("checkout", &[("host.name", host)]);
        ingest_as(&inv, &shop, &spans(&r, 1), T0);
    }
    ingest_as(&inv, &bank, &spans(&resource("ledger", &[]), 2), T0);

    let spans_of = |t: &Tenant| {
        let mut v: Vec<(String, String, u64)> = inv
            .snapshot(t)
            .instances
            .into_iter()
            .map(|i| (i.service, i.instance, i.spans_total))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        spans_of(&shop),
        vec![
            ("checkout".into(), "web-1".into(), 3),
            ("checkout".into(), "web-2".into(), 1)
        ]
    );
    assert_eq!(
        spans_of(&bank),
        vec![
            ("checkout".into(), "web-1".into(), 1),
            ("ledger".into(), "".into(), 2)
        ]
    );
    assert!(spans_of(&Tenant::default()).is_empty());
    let (s, b) = (inv.snapshot(&shop), inv.snapshot(&bank));
    assert_eq!((s.left_out, s.left_out_spans), (2, 2), "web-3 and web-4");
    assert_eq!((b.left_out, b.left_out_spans), (0, 0));
    // the answer is one tenant's: nothing of the other's services
    let answer = inv.answer(&bank, &InventoryFilter::default());
    let services: Vec<&str> = answer.services.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(services, ["checkout", "ledger"]);
    assert_eq!(answer.instances_kept, 2);
    assert_eq!(answer.instances_left_out, 0);
    assert_eq!(
        inv.answer(&Tenant::default(), &InventoryFilter::default())
            .services
            .len(),
        0
    );

    // saved and read back per tenant
    ingest(
        &inv,
        &spans(&resource("legacy", &[]), 1),
        Protocol::Grpc,
        &Origin::default(),
        T0,
    );
    let bytes = inv.encode_if_dirty().expect("changed");
    let back = inventory(config.clone());
    assert_eq!(back.restore(&bytes), Ok(5));
    let names = |i: &Inventory, t: &Tenant| {
        let mut v: Vec<String> = i
            .snapshot(t)
            .instances
            .into_iter()
            .map(|i| i.service)
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&back, &shop), ["checkout", "checkout"]);
    assert_eq!(names(&back, &bank), ["checkout", "ledger"]);
    assert_eq!(names(&back, &Tenant::default()), ["legacy"]);

    // a blob saved before tenants (no `tenants`) is tenant default's
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_end(&mut json)
        .unwrap();
    let mut saved: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(saved["tenants"].as_array().map(Vec::len), Some(2));
    saved.as_object_mut().unwrap().remove("tenants");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&serde_json::to_vec(&saved).unwrap()).unwrap();
    let old = inventory(config);
    assert_eq!(old.restore(&gz.finish().unwrap()), Ok(1));
    assert_eq!(names(&old, &Tenant::default()), ["legacy"]);
    assert!(names(&old, &shop).is_empty());
}

#[test]
fn the_gauges_are_labelled_by_tenant_once_tenants_are_told_apart() {
    let tenants_of = |inv: &Inventory| {
        inv.gauge_snapshots()
            .into_iter()
            .map(|(t, s)| (t, s.instances.len()))
            .collect::<Vec<_>>()
    };
    let r = resource("svc", &[]);
    // without tenants: one unlabelled set, as before tenants
    let plain = inventory(InventoryConfig::default());
    assert_eq!(tenants_of(&plain), vec![(None, 0)]);
    ingest(
        &plain,
        &spans(&r, 1),
        Protocol::Grpc,
        &Origin::default(),
        T0,
    );
    assert_eq!(tenants_of(&plain), vec![(None, 1)]);
    // another tenant's spans: every tenant's set has its name
    ingest_as(&plain, &Tenant::parse("shop").unwrap(), &spans(&r, 1), T0);
    let mut got = tenants_of(&plain);
    got.sort();
    assert_eq!(
        got,
        vec![(Some("default".into()), 1), (Some("shop".into()), 1)]
    );
    // with auth on: labelled from the start
    let authed = inventory(InventoryConfig::default()).label_tenants(true);
    assert!(tenants_of(&authed).is_empty());
    ingest(
        &authed,
        &spans(&r, 1),
        Protocol::Grpc,
        &Origin::default(),
        T0,
    );
    assert_eq!(tenants_of(&authed), vec![(Some("default".into()), 1)]);
}
