//! Tenant isolation end to end (`docs/adr/0011-tenants.md`), on a real `clew serve`
//! (embedded fjall + tantivy) with two tenants' tokens, over real sockets: spans sent by
//! tenant `shop` (OTLP/HTTP) and tenant `bank` (OTLP/gRPC and Zipkin, one trace id shared
//! with shop) are each visible to their own tenant only — trace by id, search, key lookup,
//! services, operations, dependencies, Jaeger's HTTP API, Jaeger remote storage, the
//! service RED history, the alert board, the fleet inventory and the span metrics of
//! `/metrics` — and query strings that try to name a tenant stay within the caller's.
//! The same checks run in scale-out shape (HBase + OpenSearch, `--ignored`: scripts/test
//! runs them next to the other HBase and OpenSearch suites).

mod common;

use std::time::{Duration, Instant};

use clew_proto::jaeger_storage::v2 as pb;
use clew_proto::otlp::collector::trace::v1::trace_service_client::TraceServiceClient;
use clew_proto::otlp::trace::v1::{status, Status};
use common::*;
use prost::Message;
use serde_json::Value;

const SHOP: &str = "shop-token-0123456789";
const BANK: &str = "bank-token-0123456789";
/// Tenant `ops`, scope `admin`: `/metrics` shows it every tenant's series.
const OPS: &str = "ops-admin-token-0123456789";

/// Two tenants that write and read, an admin, an alert rule that fires on one error, and
/// the inventory saved (and its gauges set) every second.
fn config() -> String {
    format!(
        "[collector]\nbusiness_keys = [\"order_id\"]\n\n[auth]\n\
         [[auth.tokens]]\ntoken = \"{SHOP}\"\ntenant = \"shop\"\nscopes = [\"ingest\", \"read\"]\n\
         [[auth.tokens]]\ntoken = \"{BANK}\"\ntenant = \"bank\"\nscopes = [\"ingest\", \"read\"]\n\
         [[auth.tokens]]\ntoken = \"{OPS}\"\ntenant = \"ops\"\nscopes = [\"admin\"]\n\n\
         [alerting]\n[[alerting.error_rules]]\nname = \"errors\"\nmin_count = 1\nwindow = \"10m\"\n\n\
         [inventory]\npersist_interval_secs = 1\n"
    )
}

async fn get(clew: &Clew, token: &str, path: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .get(clew.api_url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("query API reachable");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Polls until `ready` holds for `token`'s answer to `path`.
async fn wait_for(clew: &Clew, token: &str, path: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = get(clew, token, path).await;
        if status == 200 && ready(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never ready; last {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every `service_name` (or `serviceName` / `service`) string anywhere in `v`.
fn services_in(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if matches!(k.as_str(), "service" | "service_name" | "serviceName") {
                        if let Some(s) = x.as_str() {
                            out.push(s.to_string());
                        }
                    }
                    walk(x, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(v, &mut out);
    out
}

fn grpc<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

async fn channel(addr: std::net::SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_never_see_each_others_data() {
    let tmp = tempfile::tempdir().unwrap();
    let config_path = tmp.path().join("clew.toml");
    std::fs::write(&config_path, config()).unwrap();
    let clew = Clew::start(&["--config", config_path.to_str().unwrap()]);
    isolation(&clew).await;
}

/// The same checks in scale-out shape: rows in a real HBase (tenant-prefixed row keys, the
/// tenant in the meta cell) and documents in a real OpenSearch (the `tenant` filter).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs HBase and OpenSearch (scripts/hbase-start, scripts/opensearch-start); scripts/test runs it"]
async fn tenants_never_see_each_others_data_on_hbase_and_opensearch() {
    let thrift = std::env::var("HBASE_THRIFT").expect("HBASE_THRIFT=host:port");
    let url = std::env::var("OPENSEARCH_URL").expect("OPENSEARCH_URL=http://host:port");
    let tmp = tempfile::tempdir().unwrap();
    let config_path = tmp.path().join("clew.toml");
    let table = unique("clew_tenants").replace(['-', '.'], "_");
    let prefix = unique("clew-tenants").replace('.', "-");
    std::fs::write(
        &config_path,
        format!(
            "{}\n[store]\ntype = \"hbase\"\nthrift_addrs = [\"{thrift}\"]\ntable = \"{table}\"\n\n\
             [index]\ntype = \"opensearch\"\nurls = [\"{url}\"]\nindex_prefix = \"{prefix}\"\nnumber_of_replicas = 0\n",
            config()
        ),
    )
    .unwrap();
    let clew = Clew::start(&["--config", config_path.to_str().unwrap()]);
    isolation(&clew).await;
}

/// Spans of tenant `shop` (OTLP/HTTP) and `bank` (OTLP/gRPC and Zipkin, one trace id shared
/// with shop) into `clew`, then every read API, as each tenant.
async fn isolation(clew: &Clew) {
    let http = reqwest::Client::new();

    let shared = random_trace_id();
    let shop_only = random_trace_id();
    let bank_only = random_trace_id();
    let hex = hex::encode;

    // shop: the shared trace id, and one with an error, over OTLP/HTTP
    let mut failing = otlp_span(shop_only, 2, None, "Charge", vec![kv("order_id", "s-2")]);
    failing.status = Some(Status {
        code: status::StatusCode::Error as i32,
        message: "card declined".into(),
    });
    let shop_req = request(
        "shop-api",
        vec![
            otlp_span(shared, 1, None, "Buy", vec![kv("order_id", "s-1")]),
            otlp_span(shared, 3, Some(1), "Reserve", vec![kv("tenant", "bank")]),
            failing,
        ],
    );
    let resp = http
        .post(clew.otlp_http_url())
        .bearer_auth(SHOP)
        .header("content-type", "application/x-protobuf")
        .body(shop_req.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // bank: its own trace over OTLP/gRPC, and the shared trace id over Zipkin
    let mut client = TraceServiceClient::new(channel(clew.otlp_grpc).await);
    client
        .export(grpc(
            request(
                "bank-api",
                vec![otlp_span(
                    bank_only,
                    1,
                    None,
                    "Pay",
                    vec![kv("order_id", "b-1")],
                )],
            ),
            BANK,
        ))
        .await
        .expect("bank's OTLP/gRPC export");
    let zipkin = serde_json::json!([{
        "traceId": hex(shared), "id": "6b221d5bc9e6496c", "name": "transfer", "kind": "SERVER",
        "timestamp": now_unix_nano() / 1000 - 1000, "duration": 500,
        "localEndpoint": {"serviceName": "bank-ledger"}, "tags": {"order_id": "b-2"}
    }]);
    let resp = http
        .post(clew.zipkin_url())
        .bearer_auth(BANK)
        .header("content-type", "application/json")
        .body(zipkin.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap());

    // both tenants' data is searchable
    wait_for(clew, SHOP, "/api/v1/search?limit=50", |b| {
        trace_ids(b).len() == 2
    })
    .await;
    wait_for(clew, BANK, "/api/v1/search?limit=50", |b| {
        trace_ids(b).len() == 2
    })
    .await;

    // trace by id: another tenant's trace is a 404; a shared id is each tenant's own row
    let (status, _) = get(clew, BANK, &format!("/api/v1/traces/{}", hex(shop_only))).await;
    assert_eq!(status, 404, "shop's trace asked by bank");
    let (status, _) = get(clew, SHOP, &format!("/api/v1/traces/{}", hex(bank_only))).await;
    assert_eq!(status, 404, "bank's trace asked by shop");
    let (status, body) = get(clew, SHOP, &format!("/api/v1/traces/{}", hex(shared))).await;
    assert_eq!(status, 200);
    assert_eq!(
        span_ids(&body).len(),
        2,
        "shop's two spans of the shared id: {body}"
    );
    assert!(!body.to_string().contains("bank-ledger"), "{body}");
    let (status, body) = get(clew, BANK, &format!("/api/v1/traces/{}", hex(shared))).await;
    assert_eq!(status, 200);
    assert_eq!(
        span_ids(&body).len(),
        1,
        "bank's one span of the shared id: {body}"
    );
    assert!(!body.to_string().contains("shop-api"), "{body}");

    // searches, key lookups and listings stay within the caller's tenant
    let shop_ids = || {
        let mut v = vec![hex(shared), hex(shop_only)];
        v.sort();
        v
    };
    let sorted = |b: &Value| {
        let mut v = trace_ids(b);
        v.sort();
        v
    };
    let (_, body) = get(clew, SHOP, "/api/v1/search?limit=50").await;
    assert_eq!(sorted(&body), shop_ids());
    let (_, body) = get(clew, BANK, "/api/v1/search?service=shop-api").await;
    assert!(trace_ids(&body).is_empty(), "{body}");
    let (_, body) = get(clew, BANK, "/api/v1/search?error=true").await;
    assert!(
        trace_ids(&body).is_empty(),
        "shop's error seen by bank: {body}"
    );
    let (_, body) = get(clew, SHOP, "/api/v1/keys/order_id/b-1").await;
    assert!(trace_ids(&body).is_empty(), "{body}");
    let (_, body) = get(clew, BANK, "/api/v1/keys/order_id/b-1").await;
    assert_eq!(trace_ids(&body), vec![hex(bank_only)]);
    let (_, body) = get(clew, SHOP, "/api/v1/services").await;
    assert_eq!(body["services"], serde_json::json!(["shop-api"]));
    let (_, body) = get(clew, BANK, "/api/v1/services").await;
    assert_eq!(
        body["services"],
        serde_json::json!(["bank-api", "bank-ledger"])
    );
    let (_, body) = get(clew, SHOP, "/api/v1/services/bank-api/operations").await;
    assert_eq!(body["operations"], serde_json::json!([]));
    let (_, body) = get(clew, BANK, "/api/v1/services/bank-api/operations").await;
    assert_eq!(body["operations"], serde_json::json!(["Pay"]));
    let (status, body) = get(clew, SHOP, "/api/v1/dependencies?lookback=1h").await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.to_string().contains("bank"), "{body}");

    // injections: query strings naming a tenant, wildcards and index field names
    for path in [
        "/api/v1/search?q=tenant:bank%20OR%20*",
        "/api/v1/search?q=*",
        "/api/v1/search?q=_id:*",
        "/api/v1/search?attr=tenant:bank",
        "/api/v1/search?attr=_id:*",
        "/api/v1/search?attr=service:bank-api",
        "/api/v1/search?key=tenant:bank",
        "/api/v1/search?key=order_id:b-1%20OR%20tenant:bank",
        "/api/v1/search?key=order_id:b-1&q=tenant:bank",
        "/api/v1/search?service=*",
        "/api/v1/search?service=bank-api",
        "/api/v1/keys/tenant/bank",
        "/api/v1/keys/order_id/*",
    ] {
        let (status, body) = get(clew, SHOP, path).await;
        assert_eq!(status, 200, "{path}: {body}");
        for id in trace_ids(&body) {
            assert!(
                shop_ids().contains(&id),
                "{path} from shop found {id}: {body}"
            );
        }
        assert!(!body.to_string().contains("bank-"), "{path}: {body}");
    }
    // an attribute named `tenant` is an attribute: shop's own span has `tenant=bank`
    let (_, body) = get(clew, SHOP, "/api/v1/search?attr=tenant:bank").await;
    assert_eq!(trace_ids(&body), vec![hex(shared)]);
    let (_, body) = get(clew, BANK, "/api/v1/search?attr=tenant:bank").await;
    assert!(trace_ids(&body).is_empty(), "{body}");

    // Jaeger's HTTP API
    let (status, _) = get(clew, BANK, &format!("/api/traces/{}", hex(shop_only))).await;
    assert_eq!(status, 404);
    let (_, body) = get(clew, SHOP, "/api/services").await;
    assert_eq!(body["data"], serde_json::json!(["shop-api"]));
    let (_, body) = get(clew, SHOP, "/api/traces?service=bank-api&lookback=1h").await;
    assert!(
        body["data"].as_array().is_none_or(|d| d.is_empty()),
        "{body}"
    );
    let (_, body) = get(clew, BANK, "/api/traces?service=bank-api&lookback=1h").await;
    assert_eq!(body["data"].as_array().map(Vec::len), Some(1), "{body}");
    let (_, body) = get(
        clew,
        SHOP,
        &format!(
            "/api/traces?traceID={}&traceID={}",
            hex(bank_only),
            hex(shared)
        ),
    )
    .await;
    assert!(
        !services_in(&body).iter().any(|s| s.starts_with("bank")),
        "{body}"
    );
    let end = now_unix_nano() / 1_000_000 + 60_000;
    let (_, body) = get(
        clew,
        SHOP,
        &format!("/api/dependencies?endTs={end}&lookback=3600000"),
    )
    .await;
    assert!(!body.to_string().contains("bank"), "{body}");

    // Jaeger remote storage (gRPC)
    let mut reader =
        pb::trace_reader_client::TraceReaderClient::new(channel(clew.jaeger_storage_grpc).await);
    let services = reader
        .get_services(grpc(pb::GetServicesRequest {}, BANK))
        .await
        .unwrap()
        .into_inner()
        .services;
    assert_eq!(services, ["bank-api", "bank-ledger"]);
    let mut stream = reader
        .get_traces(grpc(
            pb::GetTracesRequest {
                query: vec![pb::GetTraceParams {
                    trace_id: shop_only.to_vec(),
                    ..Default::default()
                }],
            },
            BANK,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut chunks = 0;
    while let Some(chunk) = stream.message().await.unwrap() {
        chunks += chunk.resource_spans.len();
    }
    assert_eq!(chunks, 0, "shop's trace through bank's remote storage");

    // RED history per (tenant, service): each tenant its own services' only
    let body = wait_for(clew, SHOP, "/api/v1/services/shop-api/red", |b| {
        red_calls(b) == 3
    })
    .await;
    assert_eq!(body["service"], "shop-api");
    let body = wait_for(clew, BANK, "/api/v1/services/bank-ledger/red", |b| {
        red_calls(b) == 1
    })
    .await;
    assert_eq!(body["service"], "bank-ledger");
    for (token, other) in [
        (BANK, "shop-api"),
        (SHOP, "bank-ledger"),
        (SHOP, "bank-api"),
    ] {
        let (status, body) = get(clew, token, &format!("/api/v1/services/{other}/red")).await;
        assert_eq!(status, 404, "another tenant's {other} history: {body}");
    }

    // alerts: shop's error fires for shop, with its tenant label; bank's board stays empty
    let body = wait_for(clew, SHOP, "/api/v1/alerts", |b| {
        b["alerts"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    let alert = &body["alerts"][0];
    assert_eq!(alert["service"], "shop-api", "{body}");
    assert_eq!(alert["labels"]["tenant"], "shop", "{body}");
    assert_eq!(alert["example_trace_ids"][0], hex(shop_only), "{body}");
    // the alert's example trace opens for shop (the link's reader), not for bank
    let (status, _) = get(clew, SHOP, &format!("/api/v1/traces/{}", hex(shop_only))).await;
    assert_eq!(status, 200);
    let (status, body) = get(clew, BANK, "/api/v1/alerts").await;
    assert_eq!(status, 200);
    assert_eq!(
        body["enabled"], true,
        "the rule applies to bank too: {body}"
    );
    assert_eq!(
        body["alerts"],
        serde_json::json!([]),
        "shop's alert on bank's board"
    );

    // the fleet inventory: each tenant's own instances
    let body = wait_for(clew, BANK, "/api/v1/inventory", |b| {
        b["services"].as_array().is_some_and(|s| s.len() == 2)
    })
    .await;
    let mut services = services_in(&body["services"]);
    services.dedup();
    assert_eq!(services, ["bank-api", "bank-ledger"], "{body}");
    let (_, body) = get(clew, SHOP, "/api/v1/inventory").await;
    let mut services = services_in(&body["services"]);
    services.dedup();
    assert_eq!(services, ["shop-api"], "{body}");
    assert!(!body.to_string().contains("bank-"), "{body}");

    // /metrics: a read token sees its own tenant's span metrics and inventory gauges,
    // labelled; admin sees all
    let bank_gauge = "clew_inventory_instances{service=\"bank-ledger\",sdk_language=\"\",sdk_version=\"\",tenant=\"bank\"} 1\n";
    let deadline = Instant::now() + Duration::from_secs(20);
    while !clew.metrics(Some(OPS)).await.contains(bank_gauge) {
        assert!(Instant::now() < deadline, "no {bank_gauge}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shop_metrics = clew.metrics(Some(SHOP)).await;
    assert!(
        shop_metrics.contains("clew_inventory_instances{service=\"shop-api\",sdk_language=\"\",sdk_version=\"\",tenant=\"shop\"} 1\n"),
        "{shop_metrics}"
    );
    assert!(
        shop_metrics.contains("traces_span_metrics_calls_total{service_name=\"shop-api\",span_name=\"Buy\",span_kind=\"SPAN_KIND_SERVER\",status_code=\"STATUS_CODE_UNSET\",tenant=\"shop\"} 1\n"),
        "{shop_metrics}"
    );
    assert!(!shop_metrics.contains("bank-"), "{shop_metrics}");
    assert!(!shop_metrics.contains("tenant=\"bank\""), "{shop_metrics}");
    let bank_metrics = clew.metrics(Some(BANK)).await;
    assert!(
        bank_metrics.contains("service_name=\"bank-ledger\""),
        "{bank_metrics}"
    );
    assert!(!bank_metrics.contains("shop-api"), "{bank_metrics}");
    assert!(bank_metrics.contains(bank_gauge), "{bank_metrics}");
    assert!(!bank_metrics.contains("tenant=\"shop\""), "{bank_metrics}");
    let all = clew.metrics(Some(OPS)).await;
    for line in [
        "traces_span_metrics_calls_total{service_name=\"shop-api\",span_name=\"Charge\",span_kind=\"SPAN_KIND_SERVER\",status_code=\"STATUS_CODE_ERROR\",tenant=\"shop\"} 1\n",
        "traces_span_metrics_calls_total{service_name=\"bank-api\",span_name=\"Pay\",span_kind=\"SPAN_KIND_SERVER\",status_code=\"STATUS_CODE_UNSET\",tenant=\"bank\"} 1\n",
        "clew_span_metrics_series{metric=\"traces_span_metrics\",tenant=\"bank\"} 2\n",
    ] {
        assert!(all.contains(line), "{line} not in {all}");
    }
    // every span-metric sample names its tenant (with auth on, default's would too)
    for line in all
        .lines()
        .filter(|l| l.starts_with("traces_span_metrics_"))
    {
        assert!(line.contains(",tenant=\""), "{line}");
    }
}

/// The calls of a RED history answer, over its hour.
fn red_calls(body: &Value) -> u64 {
    body["points"]
        .as_array()
        .map(|p| p.iter().filter_map(|p| p["calls"].as_u64()).sum())
        .unwrap_or(0)
}

/// Without auth there are no tenants to tell apart: the span metrics of `/metrics` have
/// no `tenant` label, exactly as before tenants (dashboards and the spanmetrics connector
/// comparison in `span_metrics_compat.rs` see the same series), and the RED history,
/// alerts and inventory are tenant `default`'s, as they always were.
#[tokio::test(flavor = "multi_thread")]
async fn without_auth_span_metrics_have_no_tenant_label() {
    let tmp = tempfile::tempdir().unwrap();
    let config_path = tmp.path().join("clew.toml");
    std::fs::write(
        &config_path,
        "[alerting]\n[[alerting.error_rules]]\nname = \"errors\"\nmin_count = 1\nwindow = \"10m\"\n",
    )
    .unwrap();
    let clew = Clew::start(&["--config", config_path.to_str().unwrap()]);
    let trace = random_trace_id();
    let mut failing = otlp_span(trace, 2, Some(1), "Charge", vec![]);
    failing.status = Some(Status {
        code: status::StatusCode::Error as i32,
        message: "card declined".into(),
    });
    let req = request(
        "shop-api",
        vec![otlp_span(trace, 1, None, "Buy", vec![]), failing],
    );
    let resp = reqwest::Client::new()
        .post(clew.otlp_http_url())
        .header("content-type", "application/x-protobuf")
        .body(req.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let anyone = |path: &'static str| {
        let clew = &clew;
        async move {
            let resp = reqwest::Client::new()
                .get(clew.api_url(path))
                .send()
                .await
                .unwrap();
            (
                resp.status().as_u16(),
                resp.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let board = loop {
        let (status, red) = anyone("/api/v1/services/shop-api/red").await;
        let (_, board) = anyone("/api/v1/alerts").await;
        if status == 200 && red_calls(&red) == 2 && board["alerts"][0].is_object() {
            break board;
        }
        assert!(
            Instant::now() < deadline,
            "no RED history or alert: {status} {red} {board}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let text = clew.metrics(None).await;
    assert!(
        text.contains("traces_span_metrics_calls_total{service_name=\"shop-api\",span_name=\"Buy\",span_kind=\"SPAN_KIND_SERVER\",status_code=\"STATUS_CODE_UNSET\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("traces_service_graph_unpaired_spans_total 0\n"),
        "{text}"
    );
    assert!(
        text.contains("clew_span_metrics_series{metric=\"traces_span_metrics\"} 2\n"),
        "{text}"
    );
    assert!(
        !text.contains("tenant=\""),
        "a tenant label without tenants: {text}"
    );
    assert!(
        !text.contains("clew_span_metrics_left_out_tenant_spans_total"),
        "{text}"
    );
    let labels = &board["alerts"][0]["labels"];
    assert_eq!(labels["alertname"], "errors", "{board}");
    assert!(labels.get("tenant").is_none(), "{board}");
    let (_, inventory) = anyone("/api/v1/inventory").await;
    let mut services = services_in(&inventory["services"]);
    services.dedup();
    assert_eq!(services, ["shop-api"], "{inventory}");
}

/// `[[collector.tenants]]`: past its bucket a tenant's whole request is refused, 429 with
/// `Retry-After` over HTTP and `RESOURCE_EXHAUSTED` with a RetryInfo over gRPC, counted per
/// tenant; other tenants are not held back.
#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_past_its_rate_limit_is_told_when_to_retry() {
    let tmp = tempfile::tempdir().unwrap();
    let config_path = tmp.path().join("clew.toml");
    let text = config().replace(
        "[auth]",
        "[[collector.tenants]]\nname = \"shop\"\nspans_per_second = 0.01\nburst_spans = 3\n\n[auth]",
    );
    std::fs::write(&config_path, text).unwrap();
    let clew = Clew::start(&["--config", config_path.to_str().unwrap()]);
    let http = reqwest::Client::new();
    let three = |service: &str| {
        let trace = random_trace_id();
        request(
            service,
            (1..=3)
                .map(|i| otlp_span(trace, i, (i > 1).then_some(1), "op", vec![]))
                .collect(),
        )
        .encode_to_vec()
    };
    let post = |token: &'static str, body: Vec<u8>| {
        http.post(clew.otlp_http_url())
            .bearer_auth(token)
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
    };
    assert_eq!(post(SHOP, three("limited")).await.unwrap().status(), 200);
    let refused = post(SHOP, three("limited")).await.unwrap();
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 100, "3 spans at 0.01/s: {retry_after} s");
    // bank has no limit
    for _ in 0..3 {
        assert_eq!(post(BANK, three("free")).await.unwrap().status(), 200);
    }
    // gRPC: RESOURCE_EXHAUSTED with a RetryInfo
    let mut client = TraceServiceClient::new(channel(clew.otlp_grpc).await);
    let trace = random_trace_id();
    let status = client
        .export(grpc(
            request("limited", vec![otlp_span(trace, 1, None, "op", vec![])]),
            SHOP,
        ))
        .await
        .expect_err("shop's bucket is empty");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    use tonic_types::StatusExt;
    let retry = status.get_details_retry_info().expect("a RetryInfo detail");
    assert!(retry.retry_delay.unwrap() >= Duration::from_secs(90));

    // nothing of the refused requests was stored, and the refusals are counted
    let body = wait_for(&clew, SHOP, "/api/v1/search?service=limited", |b| {
        !trace_ids(b).is_empty()
    })
    .await;
    assert_eq!(trace_ids(&body).len(), 1, "{body}");
    let metrics = clew.metrics(Some(SHOP)).await;
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("clew_tenant_throttled_spans_total{") && l.contains("tenant=\"shop\"")
        })
        .unwrap_or_else(|| panic!("no throttled count in {metrics}"));
    assert!(
        line.ends_with(" 4"),
        "3 spans over HTTP, 1 over gRPC: {line}"
    );
}

/// `[[collector.tenants]] retention_days`: `clew config` prints the retention classes in
/// force (tenants grouped by their days, the global value for everyone else), a value of 0
/// is a config error naming the entry, and on a running `clew serve` a tenant's spans land
/// in its class's index partition (`YYYY-MM-DD.t.r<days>`) while the other tenants' stay
/// in the default class's, each searchable by its own tenant only.
#[tokio::test(flavor = "multi_thread")]
async fn tenants_in_retention_classes_are_configured_shown_and_written_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let config_path = tmp.path().join("clew.toml");
    let tenants = "[[collector.tenants]]\nname = \"shop\"\nretention_days = 30\n\n\
        [[collector.tenants]]\nname = \"archive\"\nretention_days = 30\nspans_per_second = 1000.0\n\n\
        [[collector.tenants]]\nname = \"brief\"\nretention_days = 2\n\n\
        [[collector.tenants]]\nname = \"same\"\nretention_days = 9\n\n\
        [[collector.tenants]]\nname = \"bank\"\nspans_per_second = 1000.0\n\n[auth]";
    let text = format!(
        "retention_days = 9\n{}",
        config().replace("[auth]", tenants)
    );
    std::fs::write(&config_path, text).unwrap();
    let clew_config = |path: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_clew"))
            .args(["config", "--config"])
            .arg(path)
            .env_remove("CLEW_CONFIG")
            .env_remove("CLEW_RETENTION_DAYS")
            .output()
            .unwrap()
    };
    let printed = clew_config(&config_path);
    assert!(printed.status.success(), "{printed:?}");
    let printed = String::from_utf8_lossy(&printed.stdout);
    let classes: Vec<&str> = printed
        .lines()
        .skip_while(|l| !l.starts_with("# retention classes"))
        .skip(1)
        .take_while(|l| l.starts_with("#   "))
        .collect();
    assert_eq!(
        classes,
        [
            "#   9 days: default class (retention_days): every other tenant",
            "#   2 days: brief",
            "#   30 days: archive, shop",
        ],
        "{printed}"
    );
    // the entries themselves round-trip, rate limits and retention side by side
    assert!(
        printed.contains("name = \"archive\"\nspans_per_second = 1000.0\nretention_days = 30"),
        "{printed}"
    );

    // 0 days is an error naming the entry
    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[collector.tenants]]\nname = \"shop\"\nretention_days = 0\n",
    )
    .unwrap();
    let refused = clew_config(&bad);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("collector.tenants") && err.contains("[0]: retention_days must be at least 1"),
        "{err}"
    );

    // a running clew writes shop (30 days) apart from bank (the default class)
    let clew = Clew::start(&["--config", config_path.to_str().unwrap()]);
    let http = reqwest::Client::new();
    for (token, service) in [(SHOP, "kept-long"), (BANK, "kept-default")] {
        let trace = random_trace_id();
        let body = request(service, vec![otlp_span(trace, 1, None, "op", vec![])]).encode_to_vec();
        let resp = http
            .post(clew.otlp_http_url())
            .bearer_auth(token)
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let path = format!("/api/v1/search?service={service}");
        wait_for(&clew, token, &path, |b| trace_ids(b).len() == 1).await;
    }
    let (_, other) = get(&clew, BANK, "/api/v1/search?service=kept-long").await;
    assert!(trace_ids(&other).is_empty(), "{other}");
    let days = clew.data_dir.join("index").join("days");
    let mut names: Vec<String> = std::fs::read_dir(&days)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        !names[0].contains(".r") && names[1].ends_with(".t.r30"),
        "the default class's partition and shop's 30-day one: {names:?}"
    );
}

/// The fleet inventory is saved per tenant (every second, `config()`) and read back apart
/// by the next process.
#[tokio::test(flavor = "multi_thread")]
async fn each_tenants_inventory_is_saved_and_read_back_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let config_path = tmp.path().join("clew.toml");
    std::fs::write(&config_path, config()).unwrap();
    let data = tmp.path().join("data");
    let args = ["--config", config_path.to_str().unwrap()];
    let mut clew = Clew::start_in(&data, &args);
    for (token, service) in [(SHOP, "shop-api"), (BANK, "bank-api")] {
        let req = request(
            service,
            vec![otlp_span(random_trace_id(), 1, None, "op", vec![])],
        );
        let resp = reqwest::Client::new()
            .post(clew.otlp_http_url())
            .bearer_auth(token)
            .header("content-type", "application/x-protobuf")
            .body(req.encode_to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let services_of = |body: &Value| {
        let mut s = services_in(&body["services"]);
        s.dedup();
        s
    };
    for (token, service) in [(SHOP, "shop-api"), (BANK, "bank-api")] {
        wait_for(&clew, token, "/api/v1/inventory", |b| {
            services_of(b) == [service]
        })
        .await;
    }
    assert!(clew.terminate().success());
    let clew = Clew::start_in(&data, &args);
    for (token, service) in [(SHOP, "shop-api"), (BANK, "bank-api")] {
        let (status, body) = get(&clew, token, "/api/v1/inventory").await;
        assert_eq!(status, 200);
        assert_eq!(services_of(&body), [service], "{body}");
    }
}
