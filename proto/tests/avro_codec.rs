//! The Avro span format: round trips, golden record, schema evolution, hostile input.

use std::sync::Arc;

use clew_proto::avro::{self, AvroError, Codec, SCHEMA_V1};
use clew_proto::from_otlp::Limits;
use clew_proto::model::{
    any_value::Value, repair, AnyValue, ArrayValue, Event, KeyValue, KeyValueList, Link,
};
use clew_proto::{
    BusinessKey, RejectReason, Resource, Scope, Span, SpanId, SpanKind, StatusCode, TraceId,
};

const NOW: u64 = 1_800_000_000_000_000_000;

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn all_value_types() -> Vec<KeyValue> {
    let nested = Value::ArrayValue(ArrayValue {
        values: vec![
            AnyValue {
                value: Some(Value::IntValue(1)),
            },
            AnyValue { value: None },
            AnyValue {
                value: Some(Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(Value::KvlistValue(KeyValueList { values: vec![] })),
                    }],
                })),
            },
            AnyValue {
                value: Some(Value::ArrayValue(ArrayValue { values: vec![] })),
            },
        ],
    });
    vec![
        kv(
            "s",
            Value::StringValue("<script>alert(1)</script> ünï".into()),
        ),
        kv("b", Value::BoolValue(true)),
        kv("i", Value::IntValue(i64::MIN)),
        kv("d", Value::DoubleValue(1.5)),
        kv("bytes", Value::BytesValue(vec![0, 1, 255])),
        kv("arr", nested),
        kv(
            "map",
            Value::KvlistValue(KeyValueList {
                values: vec![
                    kv("inner", Value::StringValue("x".into())),
                    kv("inner", Value::DoubleValue(-0.0)),
                    kv(
                        "deeper",
                        Value::KvlistValue(KeyValueList {
                            values: vec![kv("z", Value::BoolValue(false))],
                        }),
                    ),
                ],
            }),
        ),
        KeyValue {
            key: "absent".into(),
            value: Some(AnyValue { value: None }),
            ..Default::default()
        },
    ]
}

/// A span that sets every field the Avro format carries (and that passes validation).
fn full_span() -> Span {
    let attrs = all_value_types();
    let mut res_attrs = vec![kv("service.name", Value::StringValue("checkout".into()))];
    res_attrs.extend(attrs.clone());
    Span {
        tenant: Default::default(),
        trace_id: TraceId([7; 16]),
        span_id: SpanId([8; 8]),
        parent_span_id: Some(SpanId([9; 8])),
        trace_state: "k=v".into(),
        flags: 0x301,
        name: "GET /orders/{id}".into(),
        kind: SpanKind::Unknown(99),
        start_unix_nano: 1_700_000_000_000_000_000,
        end_unix_nano: 1_700_000_000_500_000_000,
        attributes: attrs.clone(),
        dropped_attributes_count: u32::MAX,
        events: vec![Event {
            time_unix_nano: 1_700_000_000_100_000_000,
            name: "exception".into(),
            attributes: vec![kv("exception.type", Value::StringValue("IOError".into()))],
            dropped_attributes_count: 1,
        }],
        dropped_events_count: 4,
        links: vec![Link {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            trace_state: "a=b".into(),
            attributes: attrs.clone(),
            dropped_attributes_count: 2,
            flags: 0x100,
        }],
        dropped_links_count: 5,
        status_code: StatusCode::Error,
        status_message: "boom".into(),
        resource: Arc::new(Resource {
            attributes: res_attrs,
            dropped_attributes_count: 6,
            schema_url: "https://r".into(),
        }),
        scope: Arc::new(Scope {
            name: "lib".into(),
            version: "1.2".into(),
            attributes: attrs,
            dropped_attributes_count: 7,
            schema_url: "https://s".into(),
        }),
        service_name: "checkout".into(),
        business_keys: vec![BusinessKey {
            name: "order_id".into(),
            value: "12345".into(),
        }],
        repairs: repair::END_BEFORE_START,
    }
}

fn decode(bytes: &[u8]) -> Result<Vec<Span>, AvroError> {
    let out = avro::decode_batch(bytes, &Limits::default(), NOW)?;
    assert!(out.rejected.is_empty(), "rejected: {:?}", out.rejected);
    Ok(out.spans)
}

fn root(mut s: Span, id: u8) -> Span {
    s.span_id = SpanId([id; 8]);
    s.parent_span_id = None;
    s
}

#[test]
fn every_field_round_trips() {
    let span = full_span();
    let bytes = avro::encode_batch(std::slice::from_ref(&span));
    assert_eq!(decode(&bytes).unwrap(), vec![span]);
}

#[test]
fn minimal_span_round_trips() {
    let span = Span {
        parent_span_id: None,
        trace_state: String::new(),
        flags: 0,
        kind: SpanKind::Unspecified,
        attributes: vec![],
        events: vec![],
        links: vec![],
        dropped_attributes_count: 0,
        dropped_events_count: 0,
        dropped_links_count: 0,
        status_code: StatusCode::Unset,
        status_message: String::new(),
        resource: Arc::new(Resource {
            attributes: vec![kv("service.name", Value::StringValue("s".into()))],
            ..Default::default()
        }),
        scope: Arc::new(Scope::default()),
        service_name: "s".into(),
        business_keys: vec![],
        repairs: 0,
        ..full_span()
    };
    assert_eq!(
        decode(&avro::encode_batch(std::slice::from_ref(&span))).unwrap(),
        vec![span]
    );
}

#[test]
fn resources_and_scopes_group_and_stay_shared() {
    let a = full_span();
    let b = root(full_span(), 10); // same resource and scope content as `a`
    let mut c = root(full_span(), 11);
    c.scope = Arc::new(Scope {
        name: "other".into(),
        ..(*c.scope).clone()
    });
    let mut d = root(full_span(), 12);
    d.resource = Arc::new(Resource {
        attributes: vec![kv("service.name", Value::StringValue("payments".into()))],
        ..Default::default()
    });
    d.service_name = "payments".into();
    let spans = vec![a, b, c, d];
    let back = decode(&avro::encode_batch(&spans)).unwrap();
    assert_eq!(back, spans);
    assert!(Arc::ptr_eq(&back[0].resource, &back[1].resource));
    assert!(Arc::ptr_eq(&back[0].scope, &back[1].scope));
    assert!(!Arc::ptr_eq(&back[1].scope, &back[2].scope));
    assert!(!Arc::ptr_eq(&back[2].resource, &back[3].resource));
}

#[test]
fn decoded_spans_are_validated_like_otlp() {
    let mut zero_trace = root(full_span(), 20);
    zero_trace.trace_id = TraceId([0; 16]);
    let mut no_times = root(full_span(), 21);
    no_times.start_unix_nano = 0;
    no_times.end_unix_nano = 0;
    let mut backwards = root(full_span(), 22);
    backwards.end_unix_nano = backwards.start_unix_nano - 1;
    backwards.repairs = 0;
    let mut far_future = root(full_span(), 23);
    far_future.start_unix_nano = u64::MAX - 1; // > i64::MAX: tests the unsigned mapping too
    far_future.end_unix_nano = u64::MAX;
    let good = root(full_span(), 24);
    let bytes = avro::encode_batch(&[zero_trace, no_times, backwards, far_future, good.clone()]);
    let out = avro::decode_batch(&bytes, &Limits::default(), NOW).unwrap();
    let reasons: Vec<_> = out.rejected.iter().map(|r| r.reason).collect();
    assert_eq!(
        reasons,
        vec![
            RejectReason::InvalidTraceId,
            RejectReason::MissingTimestamps,
            RejectReason::TimestampInFuture
        ]
    );
    assert_eq!(out.spans.len(), 2);
    assert_eq!(out.spans[0].repairs, repair::END_BEFORE_START);
    assert_eq!(
        out.spans[0].business_keys, good.business_keys,
        "extras stay with their span"
    );
    assert_eq!(out.spans[1], good);
}

#[test]
fn record_key_is_the_trace_id() {
    assert_eq!(avro::record_key(&full_span()), [7; 16]);
}

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/golden/span_batch_v1.avro"
);

fn golden_spans() -> Vec<Span> {
    vec![full_span(), root(full_span(), 10)]
}

#[test]
fn golden_v1_record_still_decodes() {
    // Written by the v1 encoder; if it stops decoding, records still sitting in Kafka
    // topics (and agents not yet upgraded) break. Never rewrite it: add a v2 golden.
    let golden = std::fs::read(GOLDEN).expect("golden file present");
    assert_eq!(decode(&golden).unwrap(), golden_spans());
}

#[test]
#[ignore = "writes the golden file; run only when introducing a new schema version"]
fn write_golden_v1() {
    std::fs::write(GOLDEN, avro::encode_batch(&golden_spans())).unwrap();
}

/// A hypothetical v2 following the rules: one new field, with a default.
fn schema_v2() -> String {
    let anchor = r#"{"name": "repairs","#;
    assert!(SCHEMA_V1.contains(anchor));
    SCHEMA_V1.replace(
        anchor,
        &format!(
            r#"{{"name": "sampling_weight", "doc": "test-only v2 field", "type": "double", "default": 1.0}}, {anchor}"#
        ),
    )
}

#[test]
fn v1_record_decodes_with_a_reader_that_knows_v1_and_v2() {
    let v2 = schema_v2();
    let reader = Codec::new(&[SCHEMA_V1, &v2]).unwrap();
    assert_ne!(
        reader.writer_fingerprint(),
        Codec::current().writer_fingerprint()
    );
    let spans = golden_spans();
    let v1_record = avro::encode_batch(&spans);
    let out = reader.decode(&v1_record, &Limits::default(), NOW).unwrap();
    assert_eq!(out.spans, spans);
    // The golden v1 bytes too.
    let golden = std::fs::read(GOLDEN).expect("golden file present");
    assert_eq!(
        reader
            .decode(&golden, &Limits::default(), NOW)
            .unwrap()
            .spans,
        spans
    );
    // And the v2 writer's records decode with the v2 reader; a v1-only reader names the
    // fingerprint it does not know instead of misreading the bytes.
    let v2_record = reader.encode(&spans);
    assert!(
        v2_record.is_err(),
        "v2 has a field our encoder does not fill: must error, not guess"
    );
}

#[test]
fn v1_only_reader_refuses_an_unknown_fingerprint() {
    let mut bytes = avro::encode_batch(&golden_spans());
    bytes[2] ^= 0xff;
    let err = decode(&bytes).unwrap_err();
    assert!(matches!(err, AvroError::UnknownFingerprint(..)), "{err}");
    assert!(err.to_string().contains("unknown avro schema fingerprint"));
}

#[test]
fn wrong_magic_and_short_input_are_clear_errors() {
    assert!(matches!(decode(&[]), Err(AvroError::TooShort(0))));
    assert!(matches!(decode(&[0xC3]), Err(AvroError::TooShort(1))));
    assert!(matches!(
        decode(b"{\"resourceSpans\":[]}"),
        Err(AvroError::BadMagic(b'{', b'"'))
    ));
    assert!(matches!(
        decode(&[0x0a, 0x10, 1, 2, 3, 4, 5, 6, 7, 8]),
        Err(AvroError::BadMagic(..))
    ));
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = avro::encode_batch(&golden_spans());
    for cut in 0..bytes.len() {
        assert!(
            decode(&bytes[..cut]).is_err(),
            "prefix of {cut} bytes decoded"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(decode(&longer), Err(AvroError::Malformed { .. })));
}

#[test]
fn corrupted_bytes_never_panic() {
    let bytes = avro::encode_batch(&golden_spans());
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..3000 {
        let mut b = bytes.clone();
        for _ in 0..1 + next() % 4 {
            let i = 10 + (next() as usize) % (b.len() - 10);
            b[i] = next() as u8;
        }
        let _ = avro::decode_batch(&b, &Limits::default(), NOW);
    }
    // Pure garbage after a valid header.
    for len in 0..200 {
        let mut b = bytes[..10].to_vec();
        b.extend((0..len).map(|_| next() as u8));
        let _ = avro::decode_batch(&b, &Limits::default(), NOW);
    }
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    // Hand-built datum: one resource whose one attribute is an array nested 100000 deep.
    let header = &avro::encode_batch(&[])[..10];
    let mut b = header.to_vec();
    b.extend([2]); // resource_spans: block of 1
    b.extend([2]); // resource.attributes: block of 1
    b.extend([2, b'k']); // key "k"
    for _ in 0..100_000 {
        b.extend([12, 2]); // AnyValue union branch 6 (ArrayValue), values: block of 1
    }
    let err = decode(&b).unwrap_err();
    assert!(err.to_string().contains("nested deeper"), "{err}");
}

#[test]
fn absurd_lengths_and_counts_are_refused_before_allocating() {
    let header = avro::encode_batch(&[])[..10].to_vec();
    // resource_spans: a block claiming i64::MAX/2 items.
    let mut b = header.clone();
    b.extend([0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    let err = decode(&b).unwrap_err();
    assert!(err.to_string().contains("absurd count"), "{err}");
    // one resource, one attribute whose key claims 400 MiB (under apache-avro's own 512 MiB cap).
    let mut b = header.clone();
    b.extend([2, 2]);
    b.extend([0x80, 0x80, 0x80, 0x90, 0x03]); // zigzag(400 MiB)
    b.extend(b"short");
    let err = decode(&b).unwrap_err();
    assert!(err.to_string().contains("absurd length"), "{err}");
}

// ------------------------------------------------- the v1 codec against apache-avro

/// Batches covering every field, every value type, nesting, several resources and scopes,
/// negative and huge numbers, empty and absent values.
fn varied_batches() -> Vec<Vec<Span>> {
    let mut edge = root(full_span(), 30);
    edge.start_unix_nano = u64::MAX; // the two's-complement mapping of the schema doc
    edge.end_unix_nano = 0;
    edge.flags = u32::MAX;
    edge.attributes.push(kv("neg", Value::IntValue(i64::MIN)));
    edge.attributes
        .push(kv("nan", Value::DoubleValue(f64::NAN)));
    edge.attributes.push(KeyValue {
        key: "absent".into(),
        value: None,
        ..Default::default()
    });
    edge.attributes.push(kv(
        "empty.kvlist",
        Value::KvlistValue(KeyValueList { values: vec![] }),
    ));
    edge.attributes
        .push(kv("long.text", Value::StringValue("é".repeat(5000))));
    let mut other = root(full_span(), 31);
    other.resource = Arc::new(Resource {
        attributes: vec![kv("service.name", Value::StringValue("payments".into()))],
        ..Default::default()
    });
    vec![
        vec![],
        vec![full_span()],
        golden_spans(),
        vec![full_span(), edge, other, root(full_span(), 32)],
    ]
}

#[test]
fn v1_codec_writes_exactly_what_apache_avro_writes() {
    let codec = Codec::current();
    for spans in varied_batches() {
        let direct = codec.encode(&spans).unwrap();
        let reference = codec.encode_via_value_tree(&spans).unwrap();
        assert_eq!(direct, reference, "{} spans", spans.len());
    }
    // and the golden record, written by the apache-avro encoder of an earlier build
    let golden = std::fs::read(GOLDEN).expect("golden file present");
    assert_eq!(codec.encode(&golden_spans()).unwrap(), golden);
}

#[test]
fn v1_codec_reads_exactly_what_apache_avro_reads() {
    let codec = Codec::current();
    for spans in varied_batches() {
        let bytes = codec.encode(&spans).unwrap();
        let direct = codec.decode_request(&bytes).unwrap();
        let reference = codec.decode_request_via_value_tree(&bytes).unwrap();
        // NaN != NaN: compare the protobuf encodings
        use prost::Message;
        assert_eq!(
            direct.request.encode_to_vec(),
            reference.request.encode_to_vec()
        );
        assert_eq!(direct.extras, reference.extras);
    }
}

#[test]
fn v1_codec_refuses_whatever_apache_avro_refuses() {
    // Corrupted and truncated records: both decoders fail, or both decode the same thing.
    let codec = Codec::current();
    let bytes = codec.encode(&varied_batches()[3]).unwrap();
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut both_ok = 0;
    for round in 0..4000 {
        let mut b = bytes.clone();
        if round % 4 == 0 {
            b.truncate(10 + (next() as usize) % (bytes.len() - 10));
        } else {
            for _ in 0..1 + next() % 3 {
                let i = 10 + (next() as usize) % (b.len() - 10);
                b[i] = next() as u8;
            }
        }
        let direct = codec.decode_request(&b);
        let reference = codec.decode_request_via_value_tree(&b);
        match (&direct, &reference) {
            (Ok(d), Ok(r)) => {
                use prost::Message;
                assert_eq!(d.request.encode_to_vec(), r.request.encode_to_vec());
                assert_eq!(d.extras, r.extras);
                both_ok += 1;
            }
            (Err(_), Err(_)) => {}
            _ => panic!(
                "round {round}: v1 {:?} vs apache-avro {:?}",
                direct.map(|_| ()),
                reference.map(|_| ())
            ),
        }
    }
    assert!(both_ok > 0, "some corruptions (string bytes) still decode");
}
