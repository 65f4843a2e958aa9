//! OTLP/gRPC receiver over real sockets with tonic's generated client (gzip on).

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clew_proto::otlp::collector::trace::v1::trace_service_client::TraceServiceClient;
use clew_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use common::*;
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;
use tonic::Code;
use tonic_types::StatusExt;

async fn client(h: &Harness, gzip: bool) -> TraceServiceClient<Channel> {
    let mut c = TraceServiceClient::connect(h.grpc_url())
        .await
        .expect("connect")
        .max_encoding_message_size(usize::MAX);
    if gzip {
        c = c
            .send_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Gzip);
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_with_gzip_partial_success_and_business_keys() {
    let h = start(test_config()).await;
    let mut c = client(&h, true).await;
    let mut keyed = span(3, 1, "keyed");
    keyed.attributes = vec![kv("baggage.order_id", "o-1")];
    let mut bad = span(3, 2, "bad");
    bad.span_id = vec![1, 2, 3];
    let mut all = spans(100, "g");
    all.push(keyed);
    all.push(bad);
    let resp = c
        .export(request(all, vec![kv("tenant", "t1")]))
        .await
        .expect("ok")
        .into_inner();
    let ps = resp.partial_success.expect("partial success");
    assert_eq!(ps.rejected_spans, 1);
    assert!(
        ps.error_message.contains("invalid_span_id"),
        "{}",
        ps.error_message
    );
    assert_eq!(h.store.len(), 101);
    assert_eq!(h.index.spans.lock().unwrap().len(), 101);
    let stored = h.store.spans.lock().unwrap().clone();
    let k = stored.iter().find(|s| s.name == "keyed").unwrap();
    let keys: Vec<(&str, &str)> = k
        .business_keys
        .iter()
        .map(|k| (k.name.as_str(), k.value.as_str()))
        .collect();
    assert_eq!(keys, vec![("order_id", "o-1"), ("tenant", "t1")]);

    let resp = c
        .export(ExportTraceServiceRequest::default())
        .await
        .expect("empty ok")
        .into_inner();
    assert_eq!(resp.partial_success, None);
    assert_eq!(h.store.len(), 101);
    h.collector.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_is_resource_exhausted_without_retry_info() {
    let config = clew_collector::CollectorConfig {
        max_request_bytes: 64 * 1024,
        ..test_config()
    };
    let h = start(config).await;
    for gzip in [false, true] {
        let mut c = client(&h, gzip).await;
        let mut s = span(1, 1, "big");
        s.attributes = vec![kv("blob", &"y".repeat(200 * 1024))];
        let err = c
            .export(request(vec![s], vec![]))
            .await
            .expect_err("too large");
        assert_eq!(err.code(), Code::ResourceExhausted, "gzip={gzip}: {err:?}");
        assert!(err.get_details_retry_info().is_none());
    }
    assert_eq!(h.store.len(), 0);
    h.collector.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_is_invalid_argument() {
    let h = start(test_config()).await;
    let mut c = client(&h, false).await;
    let mut s = span(1, 1, "x");
    // nested past prost's recursion limit: tonic's decoder refuses it
    let mut v = clew_proto::otlp::common::v1::AnyValue {
        value: Some(clew_proto::otlp::common::v1::any_value::Value::StringValue(
            "l".into(),
        )),
    };
    for _ in 0..300 {
        v = clew_proto::otlp::common::v1::AnyValue {
            value: Some(clew_proto::otlp::common::v1::any_value::Value::ArrayValue(
                clew_proto::otlp::common::v1::ArrayValue { values: vec![v] },
            )),
        };
    }
    s.attributes = vec![clew_proto::otlp::common::v1::KeyValue {
        key: "deep".into(),
        value: Some(v),
        ..Default::default()
    }];
    let err = c
        .export(request(vec![s], vec![]))
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("recursion limit"),
        "{}",
        err.message()
    );
    assert_eq!(h.store.len(), 0);
    h.collector.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_and_store_down_are_unavailable_with_retry_info() {
    let config = clew_collector::CollectorConfig {
        queue_max_spans: 10,
        batch_max_spans: 10,
        enqueue_timeout_ms: 100,
        ..test_config()
    };
    let h = start(config).await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    *h.store.gate.lock().unwrap() = Some(gate.clone());
    let mut c1 = client(&h, true).await;
    let first = tokio::spawn(async move {
        c1.export(request(spans(10, "first"), vec![]))
            .await
            .map(|_| ())
    });
    while h.store.writes_started.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut c = client(&h, true).await;
    let err = c
        .export(request(vec![span(9, 9, "second")], vec![]))
        .await
        .expect_err("overloaded");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.get_details_retry_info().is_some());
    gate.add_permits(1000);
    first.await.unwrap().expect("first acknowledged");
    assert_eq!(h.store.len(), 10);

    h.store.fail.store(FAIL_RETRYABLE, Ordering::SeqCst);
    let err = c
        .export(request(spans(2, "down"), vec![]))
        .await
        .expect_err("store down");
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains("disk full"), "{}", err.message());
    h.store.fail.store(FAIL_PERMANENT, Ordering::SeqCst);
    let err = c
        .export(request(spans(2, "broken"), vec![]))
        .await
        .expect_err("store broken");
    assert_eq!(err.code(), Code::Internal);
    assert_eq!(h.store.len(), 10);
    assert_eq!(h.index.spans.lock().unwrap().len(), 10);
    h.collector.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_what_was_accepted() {
    let h = start(test_config()).await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    *h.store.gate.lock().unwrap() = Some(gate.clone());
    let mut c = client(&h, false).await;
    let inflight = tokio::spawn(async move {
        c.export(request(spans(5, "late"), vec![]))
            .await
            .map(|_| ())
    });
    while h.store.writes_started.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let store = h.store.clone();
    let index = h.index.clone();
    let shutdown = tokio::spawn(h.collector.shutdown());
    tokio::time::sleep(Duration::from_millis(50)).await;
    gate.add_permits(1000);
    inflight
        .await
        .unwrap()
        .expect("in-flight request acknowledged");
    shutdown.await.unwrap().unwrap();
    assert_eq!(store.len(), 5);
    assert_eq!(index.spans.lock().unwrap().len(), 5);
}

/// Request bytes as they are, responses decoded by prost: how a client whose strings are
/// not UTF-8 looks on the wire (tonic's generated client cannot send one).
#[derive(Clone, Default)]
struct RawRequestCodec;

impl tonic::codec::Codec for RawRequestCodec {
    type Encode = Vec<u8>;
    type Decode = clew_proto::otlp::collector::trace::v1::ExportTraceServiceResponse;
    type Encoder = RawEncoder;
    type Decoder = ResponseDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> ResponseDecoder {
        ResponseDecoder
    }
}

struct RawEncoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

struct ResponseDecoder;

impl tonic::codec::Decoder for ResponseDecoder {
    type Item = clew_proto::otlp::collector::trace::v1::ExportTraceServiceResponse;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Self::Item>, tonic::Status> {
        use prost::Message;
        Self::Item::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_is_replaced_and_the_span_kept() {
    use clew_proto::model::repair::INVALID_UTF8;
    use prost::Message;
    let h = start(test_config()).await;
    let mut bytes = request(vec![span(1, 1, "okay"), span(1, 2, "BAD!")], vec![]).encode_to_vec();
    break_utf8(&mut bytes, b"BAD!");
    let channel = Channel::from_shared(h.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    );
    let resp = grpc
        .unary(tonic::Request::new(bytes), path, RawRequestCodec)
        .await
        .expect("accepted")
        .into_inner();
    assert_eq!(resp.partial_success, None);
    assert_eq!(h.store.names(), vec!["okay", "\u{FFFD}\u{FFFD}D!"]);
    assert_eq!(
        repairs_of(&h.store, "\u{FFFD}\u{FFFD}D!"),
        vec![INVALID_UTF8]
    );
    // a message that is not protobuf at all is still refused as before
    grpc.ready().await.unwrap();
    let err = grpc
        .unary(
            tonic::Request::new(vec![0xff; 32]),
            tonic::codegen::http::uri::PathAndQuery::from_static(
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            ),
            RawRequestCodec,
        )
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    h.collector.shutdown().await.unwrap();
}
