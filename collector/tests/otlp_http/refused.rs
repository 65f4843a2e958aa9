//! Bad input: size limits (with and without Content-Length, gzip bombs), content types,
//! undecodable protobuf, deep nesting, invalid UTF-8.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_limit_with_content_length_is_413() {
    let h = start(small_limit_config()).await;
    let mut s = span(1, 1, "big");
    s.attributes = vec![kv("blob", &"x".repeat(100 * 1024))];
    let resp = post(&h, Some(PB), None, request(vec![s], vec![]).encode_to_vec()).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(resp.headers().get("retry-after").is_none());
    let st = pb_status(resp).await;
    assert_eq!(st.code, tonic::Code::ResourceExhausted as i32);
    assert!(st.message.contains("65536"), "{}", st.message);
    assert_eq!(h.store.len(), 0);
    h.collector.shutdown().await.unwrap();
}

/// Chunked body without Content-Length, over a raw socket: the limit holds while streaming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_limit_without_content_length_is_413() {
    let h = start(small_limit_config()).await;
    let addr = h.collector.http_addr();
    let status_line = tokio::task::spawn_blocking(move || {
        let mut sock = std::net::TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(sock, "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        let chunk = vec![0x0au8; 16 * 1024];
        for _ in 0..8 {
            if write!(sock, "{:x}\r\n", chunk.len()).is_err() || sock.write_all(&chunk).is_err() || sock.write_all(b"\r\n").is_err() {
                break;
            }
        }
        let _ = sock.write_all(b"0\r\n\r\n");
        let mut buf = vec![0u8; 4096];
        let n = sock.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_string()
    })
    .await
    .unwrap();
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    assert_eq!(h.store.len(), 0);
    h.collector.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_accepted_bomb_413_corrupt_400() {
    let h = start(small_limit_config()).await;
    // valid gzip
    let body = gzip(&request(vec![span(1, 1, "zipped")], vec![]).encode_to_vec());
    let resp = post(&h, Some(PB), Some("gzip"), body).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(h.store.names(), vec!["zipped"]);

    // decompression bomb: 32 MiB of a repeated valid field → tiny body, far over the limit
    let bomb = {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![0u8; 32 * 1024 * 1024]).unwrap();
        enc.finish().unwrap()
    };
    assert!(bomb.len() < 64 * 1024);
    let resp = post(&h, Some(PB), Some("gzip"), bomb).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // corrupt gzip
    let mut corrupt = gzip(&request(spans(20, "c"), vec![]).encode_to_vec());
    let n = corrupt.len();
    for b in &mut corrupt[12..n - 8] {
        *b ^= 0x5a;
    }
    let resp = post(&h, Some(PB), Some("gzip"), corrupt).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(pb_status(resp).await.message.contains("gzip"));

    // gzip header on plain bytes
    let resp = post(
        &h,
        Some(PB),
        Some("gzip"),
        request(vec![span(1, 2, "plain")], vec![]).encode_to_vec(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(h.store.names(), vec!["zipped"]);
    h.collector.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_content_type_is_415() {
    let h = start(test_config()).await;
    let body = request(vec![span(1, 1, "x")], vec![]).encode_to_vec();
    let resp = post(&h, Some("text/plain"), None, body.clone()).await;
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let resp = post(&h, None, None, body.clone()).await;
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert!(
        v["message"].as_str().unwrap().contains("Content-Type"),
        "{v}"
    );
    let resp = post(&h, Some(PB), Some("br"), body).await;
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(h.store.len(), 0);
    h.collector.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_truncated_protobuf_is_400() {
    let h = start(test_config()).await;
    let mut seed = 0x1234_5678u32;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed as u8
        })
        .collect();
    let resp = post(&h, Some(PB), None, random).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        pb_status(resp).await.code,
        tonic::Code::InvalidArgument as i32
    );

    let full = request(spans(10, "t"), vec![]).encode_to_vec();
    let resp = post(&h, Some(PB), None, full[..full.len() - 7].to_vec()).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    // a length prefix pointing far past the end
    let resp = post(
        &h,
        Some(PB),
        None,
        vec![0x0a, 0xff, 0xff, 0xff, 0x7f, 1, 2, 3],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    let resp = post(
        &h,
        Some("application/json"),
        None,
        b"{\"resourceSpans\": [".to_vec(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["code"], 3);
    assert_eq!(h.store.len(), 0);
    h.collector.shutdown().await.unwrap();
}

fn nested(depth: usize) -> AnyValue {
    let mut v = AnyValue {
        value: Some(Value::StringValue("leaf".into())),
    };
    for _ in 0..depth {
        v = AnyValue {
            value: Some(Value::ArrayValue(ArrayValue { values: vec![v] })),
        };
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_nesting_is_refused_or_cut_without_overflow() {
    let h = start(test_config()).await;
    // Beyond prost's recursion limit: the request is refused.
    let mut s = span(1, 1, "too-deep");
    s.attributes = vec![KeyValue {
        key: "deep".into(),
        value: Some(nested(500)),
        ..Default::default()
    }];
    let resp = post(&h, Some(PB), None, request(vec![s], vec![]).encode_to_vec()).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    // Within the decoder's limit but past the span limit: kept and cut.
    let mut s = span(1, 2, "cut");
    s.attributes = vec![KeyValue {
        key: "deep".into(),
        value: Some(nested(30)),
        ..Default::default()
    }];
    let resp = post(&h, Some(PB), None, request(vec![s], vec![]).encode_to_vec()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let stored = h.store.spans.lock().unwrap().clone();
    assert_eq!(stored.len(), 1);
    assert_ne!(
        stored[0].repairs & clew_proto::model::repair::NESTING_CUT,
        0
    );

    // JSON nested 100k deep: refused by the JSON recursion limit.
    let mut deep = String::from(
        r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[{"key":"k","value":"#,
    );
    for _ in 0..100_000 {
        deep.push_str(r#"{"arrayValue":{"values":["#);
    }
    let resp = post(&h, Some("application/json"), None, deep.into_bytes()).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(h.store.len(), 1);
    h.collector.shutdown().await.unwrap();
}

/// Invalid UTF-8 costs no span: the bytes are replaced by U+FFFD, the span is kept and
/// flagged, its neighbours are untouched, and the repair is counted. JSON that is not
/// UTF-8 is not JSON: refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_is_replaced_and_the_span_kept() {
    use clew_proto::model::repair::INVALID_UTF8;
    let h = start(test_config()).await;
    let mut bad_attr = span(1, 3, "attr");
    bad_attr.attributes = vec![kv("user.name", "XXrenée")];
    let mut bytes = request(
        vec![span(1, 1, "okay"), span(1, 2, "BAD!"), bad_attr],
        vec![],
    )
    .encode_to_vec();
    break_utf8(&mut bytes, b"BAD!");
    break_utf8(&mut bytes, b"XXren");
    let resp = post(&h, Some(PB), None, bytes).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let answer = ExportTraceServiceResponse::decode(resp.bytes().await.unwrap()).unwrap();
    assert_eq!(answer.partial_success, None, "nothing rejected");
    assert_eq!(
        h.store.names(),
        vec!["attr", "okay", "\u{FFFD}\u{FFFD}D!"],
        "every span kept, the invalid bytes replaced"
    );
    assert_eq!(repairs_of(&h.store, "okay"), vec![0]);
    assert_eq!(
        repairs_of(&h.store, "\u{FFFD}\u{FFFD}D!"),
        vec![INVALID_UTF8]
    );
    assert_eq!(repairs_of(&h.store, "attr"), vec![INVALID_UTF8]);
    let stored = h.store.spans.lock().unwrap().clone();
    let attr = stored.iter().find(|s| s.name == "attr").unwrap();
    assert_eq!(
        clew_proto::model::value_to_string(attr.attribute("user.name").unwrap()),
        "\u{FFFD}\u{FFFD}renée"
    );

    let json =
        b"{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"name\":\"\xff\"}]}]}]}".to_vec();
    let resp = post(&h, Some("application/json"), None, json).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(h.store.len(), 3);
    h.collector.shutdown().await.unwrap();
}
