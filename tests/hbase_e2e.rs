//! End to end on HBase: the real `clew serve` configured with the HBase span store (and
//! the embedded index) ingests OTLP and answers trace-by-id and business-key lookups from
//! a real HBase. Needs `HBASE_THRIFT=host:port`; `scripts/test` starts HBase and runs this
//! with `--ignored`.

mod common;

use std::time::Duration;

use clew_proto::otlp::collector::trace::v1::trace_service_client::TraceServiceClient;
use clew_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use clew_proto::otlp::common::v1::{any_value, AnyValue, KeyValue};
use clew_proto::otlp::resource::v1::Resource;
use clew_proto::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};
use common::*;
use prost::Message;

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn otlp_span(
    trace: [u8; 16],
    id: u64,
    parent: Option<u64>,
    name: &str,
    attrs: Vec<KeyValue>,
) -> Span {
    let start = now_unix_nano() - 1_000_000;
    Span {
        trace_id: trace.to_vec(),
        span_id: id.to_be_bytes().to_vec(),
        parent_span_id: parent.map(|p| p.to_be_bytes().to_vec()).unwrap_or_default(),
        name: name.into(),
        kind: 2,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 500_000,
        attributes: attrs,
        ..Default::default()
    }
}

fn request(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs HBase (scripts/hbase-start); scripts/test runs it"]
async fn serve_on_hbase_ingests_and_answers_by_id_and_business_key() {
    let thrift = std::env::var("HBASE_THRIFT").expect("HBASE_THRIFT=host:port");
    let dir = tempfile::tempdir().unwrap();
    let table = unique("clew_e2e").replace(['-', '.'], "_");
    let config = dir.path().join("clew.toml");
    std::fs::write(
        &config,
        format!("[store]\ntype = \"hbase\"\nthrift_addrs = [\"{thrift}\"]\ntable = \"{table}\"\n"),
    )
    .unwrap();
    let clew = Clew::start(&["--config", config.to_str().unwrap()]);

    // one trace over OTLP/HTTP (root with the business key), its late child over gRPC
    let trace: [u8; 16] = rand::random::<[u8; 16]>().map(|b| b | 1);
    let order = unique("order");
    let body = request(
        "checkout",
        vec![otlp_span(
            trace,
            1,
            None,
            "POST /checkout",
            vec![kv("order_id", &order)],
        )],
    )
    .encode_to_vec();
    let resp = reqwest::Client::new()
        .post(clew.otlp_http_url())
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut client = TraceServiceClient::connect(clew.otlp_grpc_url())
        .await
        .unwrap();
    let answer = client
        .export(request(
            "payments",
            vec![otlp_span(trace, 2, Some(1), "charge", vec![])],
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.partial_success.is_none_or(|p| p.rejected_spans == 0));

    let trace_hex = hex::encode(trace);
    let (status, t) = clew.get(&format!("/api/v1/traces/{trace_hex}")).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(
        span_ids(&t),
        vec![
            "0000000000000001".to_string(),
            "0000000000000002".to_string()
        ]
    );
    let (status, _) = clew
        .get(&format!("/api/v1/traces/{}", hex::encode([7u8; 16])))
        .await;
    assert_eq!(status, 404);

    let found = clew
        .wait_for(
            &format!("/api/v1/keys/order_id/{order}"),
            Duration::from_secs(20),
            |b| trace_ids(b) == vec![trace_hex.clone()],
        )
        .await;
    assert_eq!(trace_ids(&found), vec![trace_hex]);
}
