//! The Jaeger v2 remote-storage gRPC API (`jaeger.storage.v2`) of a real `clew serve`,
//! called with a gRPC client generated from the same contract: traces come back as the
//! OTLP that was sent, searches and lookups follow the reader contract (unknown ids are
//! left out, bad queries are INVALID_ARGUMENT), and the test-only purge endpoint exists only
//! behind its flag and empties the store and the index. The end-to-end check with a real
//! Jaeger is `tests/jaeger_compat.rs` and `scripts/jaeger-storage-integration`.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use clew_proto::jaeger_storage::v2 as pb;
use clew_proto::otlp::trace::v1::TracesData;
use common::*;
use pb::dependency_reader_client::DependencyReaderClient;
use pb::trace_reader_client::TraceReaderClient;
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(30);

async fn channel(clew: &Clew) -> Channel {
    Channel::from_shared(format!("http://{}", clew.jaeger_storage_grpc))
        .unwrap()
        .connect()
        .await
        .expect("connect to the jaeger storage api")
}

async fn post_otlp(
    clew: &Clew,
    export: &clew_proto::otlp::collector::trace::v1::ExportTraceServiceRequest,
) {
    let resp = reqwest::Client::new()
        .post(clew.otlp_http_url())
        .header("content-type", "application/x-protobuf")
        .body(prost::Message::encode_to_vec(export))
        .send()
        .await
        .expect("otlp post");
    assert!(resp.status().is_success(), "{}", resp.status());
}

async fn collect(mut stream: tonic::Streaming<TracesData>) -> Vec<TracesData> {
    let mut out = Vec::new();
    while let Some(chunk) = stream.message().await.expect("stream") {
        out.push(chunk);
    }
    out
}

fn chunk_span_ids(chunks: &[TracesData]) -> BTreeSet<Vec<u8>> {
    chunks
        .iter()
        .flat_map(|c| &c.resource_spans)
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| s.span_id.clone())
        .collect()
}

fn query(service: &str) -> pb::TraceQueryParameters {
    pb::TraceQueryParameters {
        service_name: service.into(),
        search_depth: 10,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_storage_reads_what_was_written() {
    let clew = Clew::start(&[]);
    let service = unique("grpc-reader");
    let trace = random_trace_id();
    let big = "x".repeat(30_000); // within max_attribute_value_bytes (32 KiB)
                                  // 80 spans of ~30 kB: more than one streamed chunk (1 MiB each)
    let mut spans: Vec<_> = (1..=80u64)
        .map(|i| {
            otlp_span(
                trace,
                i,
                (i > 1).then_some(1),
                if i == 1 { "root" } else { "child" },
                vec![kv("blob", &big)],
            )
        })
        .collect();
    spans[1].kind = 3; // one client span
    post_otlp(&clew, &request(&service, spans.clone())).await;

    let mut reader = TraceReaderClient::new(channel(&clew).await);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let found = reader
            .find_trace_i_ds(pb::FindTracesRequest {
                query: Some(query(&service)),
            })
            .await
            .expect("find trace ids")
            .into_inner();
        if found.trace_ids.len() == 1 {
            assert_eq!(found.trace_ids[0].trace_id, trace.to_vec());
            let start = found.trace_ids[0].start.unwrap();
            let first = spans.iter().map(|s| s.start_time_unix_nano).min().unwrap();
            assert_eq!(
                start.seconds as u64 * 1_000_000_000 + start.nanos as u64,
                first
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never found: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // by id: every span, as sent, in chunks of whole spans
    let chunks = collect(
        reader
            .get_traces(pb::GetTracesRequest {
                query: vec![
                    pb::GetTraceParams {
                        trace_id: trace.to_vec(),
                        ..Default::default()
                    },
                    // unknown: left out, no error
                    pb::GetTraceParams {
                        trace_id: random_trace_id().to_vec(),
                        ..Default::default()
                    },
                ],
            })
            .await
            .expect("get traces")
            .into_inner(),
    )
    .await;
    assert!(chunks.len() > 1, "a 2.4 MB trace comes in several chunks");
    let sent_ids: BTreeSet<Vec<u8>> = spans.iter().map(|s| s.span_id.clone()).collect();
    assert_eq!(chunk_span_ids(&chunks), sent_ids);
    let root = chunks
        .iter()
        .flat_map(|c| &c.resource_spans)
        .flat_map(|rs| rs.scope_spans.iter().map(move |ss| (rs, ss)))
        .flat_map(|(rs, ss)| ss.spans.iter().map(move |s| (rs, s)))
        .find(|(_, s)| s.span_id == spans[0].span_id)
        .expect("root span");
    assert_eq!(root.1.attributes, spans[0].attributes);
    assert_eq!(root.1.start_time_unix_nano, spans[0].start_time_unix_nano);
    assert_eq!(
        root.0.resource.as_ref().unwrap().attributes,
        vec![kv("service.name", &service)]
    );

    // search: the same trace, whole
    let found = collect(
        reader
            .find_traces(pb::FindTracesRequest {
                query: Some(pb::TraceQueryParameters {
                    operation_name: "child".into(),
                    ..query(&service)
                }),
            })
            .await
            .expect("find traces")
            .into_inner(),
    )
    .await;
    assert_eq!(chunk_span_ids(&found), sent_ids);
    let none = collect(
        reader
            .find_traces(pb::FindTracesRequest {
                query: Some(pb::TraceQueryParameters {
                    operation_name: "nosuch".into(),
                    ..query(&service)
                }),
            })
            .await
            .expect("find traces")
            .into_inner(),
    )
    .await;
    assert!(none.is_empty());

    // services and operations (with kinds, as clew's Jaeger API lists them)
    let services = reader
        .get_services(pb::GetServicesRequest {})
        .await
        .unwrap()
        .into_inner()
        .services;
    assert!(services.contains(&service), "{services:?}");
    let ops = reader
        .get_operations(pb::GetOperationsRequest {
            service: service.clone(),
            span_kind: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .operations;
    let ops: BTreeSet<(String, String)> = ops.into_iter().map(|o| (o.name, o.span_kind)).collect();
    assert_eq!(
        ops,
        BTreeSet::from([
            ("child".to_string(), "client".to_string()),
            ("child".to_string(), "server".to_string()),
            ("root".to_string(), "server".to_string()),
        ])
    );
    let (_, http_ops) = clew
        .get(&format!("/api/operations?service={service}"))
        .await;
    assert_eq!(
        http_ops["data"].as_array().map(Vec::len),
        Some(3),
        "{http_ops}"
    );

    // dependencies: one service calling itself 79 times
    let deps = DependencyReaderClient::new(channel(&clew).await)
        .get_dependencies(pb::GetDependenciesRequest {
            start_time: Some(prost_types::Timestamp {
                seconds: (now_unix_nano() / 1_000_000_000) as i64 - 3600,
                nanos: 0,
            }),
            end_time: Some(prost_types::Timestamp {
                seconds: (now_unix_nano() / 1_000_000_000) as i64 + 60,
                nanos: 0,
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .dependencies;
    assert!(
        deps.iter()
            .any(|d| d.parent == service && d.child == service && d.call_count == 79),
        "{deps:?}"
    );

    // bad queries
    let code = |r: Result<tonic::Response<tonic::Streaming<TracesData>>, tonic::Status>| {
        r.err().map(|s| s.code())
    };
    let no_depth = reader
        .find_traces(pb::FindTracesRequest {
            query: Some(pb::TraceQueryParameters {
                search_depth: 0,
                ..query(&service)
            }),
        })
        .await;
    assert_eq!(code(no_depth), Some(tonic::Code::InvalidArgument));
    let short_id = reader
        .get_traces(pb::GetTracesRequest {
            query: vec![pb::GetTraceParams {
                trace_id: vec![1, 2, 3],
                ..Default::default()
            }],
        })
        .await;
    assert_eq!(code(short_id), Some(tonic::Code::InvalidArgument));
    let no_service = reader
        .get_operations(pb::GetOperationsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(no_service.code(), tonic::Code::InvalidArgument);

    // no purge without the flag
    let resp = reqwest::Client::new()
        .post(clew.api_url("/api/v1/purge"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_for_tests_empties_store_and_index() {
    let clew = Clew::start(&["--enable-purge-for-tests"]);
    let service = unique("purged");
    let before = random_trace_id();
    post_otlp(
        &clew,
        &request(&service, vec![otlp_span(before, 1, None, "op", vec![])]),
    )
    .await;
    clew.wait_for(&format!("/api/traces?service={service}"), WAIT, |b| {
        b["data"].as_array().map(Vec::len) == Some(1)
    })
    .await;

    let resp = reqwest::Client::new()
        .post(clew.api_url("/api/v1/purge"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // one request per connection: a suite's client keeps no connection alive
    assert_eq!(resp.headers()["connection"], "close");
    let (status, _) = clew
        .get(&format!("/api/traces/{}", hex::encode(before)))
        .await;
    assert_eq!(status, 404, "the trace is gone from the store");
    let (_, services) = clew.get("/api/services").await;
    assert!(
        !services["data"].to_string().contains(&service),
        "the service is gone from the index: {services}"
    );

    // and clew keeps working: a new trace is stored and found
    let after = random_trace_id();
    post_otlp(
        &clew,
        &request(&service, vec![otlp_span(after, 1, None, "op", vec![])]),
    )
    .await;
    let found = clew
        .wait_for(&format!("/api/traces?service={service}"), WAIT, |b| {
            b["data"].as_array().map(Vec::len) == Some(1)
        })
        .await;
    assert_eq!(found["data"][0]["traceID"], hex::encode(after));
    let (status, _) = clew
        .get(&format!("/api/traces/{}", hex::encode(after)))
        .await;
    assert_eq!(status, 200);
}
