//! Randomised decoding (`docs/robustness.md`): every decoder of untrusted bytes — OTLP
//! protobuf and JSON (then validation and conversion), Zipkin v2 JSON and proto, clew's
//! Avro records — gets valid requests with random mutations (bytes flipped, inserted,
//! removed, cut, chunks repeated) and plain random bytes, for a fixed budget of cases per
//! decoder. Each must answer `Ok` or `Err`, never panic. The budget is
//! `CLEW_FUZZ_CASES` (default 1500 per decoder in the suite; `scripts/fuzz-decode` runs a
//! longer one); the number of cases tried and how many decoded is printed.

use std::sync::atomic::{AtomicU64, Ordering};

use clew_collector::decode::{decode_plain, Format};
use clew_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use clew_proto::otlp::common::v1::{any_value, AnyValue, KeyValue, KeyValueList};
use clew_proto::otlp::resource::v1::Resource;
use clew_proto::otlp::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use prost::Message;

fn cases() -> u32 {
    std::env::var("CLEW_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500)
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// A request with every attribute type, nesting, events, links and a status.
fn seed_request() -> ExportTraceServiceRequest {
    use any_value::Value::*;
    let attrs = vec![
        kv("s", StringValue("value".into())),
        kv("i", IntValue(-42)),
        kv("d", DoubleValue(1.5)),
        kv("b", BoolValue(true)),
        kv("bytes", BytesValue(vec![0, 1, 2, 255])),
        kv(
            "arr",
            ArrayValue(clew_proto::otlp::common::v1::ArrayValue {
                values: vec![AnyValue {
                    value: Some(StringValue("x".into())),
                }],
            }),
        ),
        kv(
            "map",
            KvlistValue(KeyValueList {
                values: vec![kv("inner", IntValue(7))],
            }),
        ),
        kv("order_id", StringValue("12345".into())),
    ];
    let spans = (1..=3u8)
        .map(|i| Span {
            trace_id: vec![7; 16],
            span_id: vec![i; 8],
            parent_span_id: if i > 1 { vec![1; 8] } else { vec![] },
            name: format!("op-{i}"),
            kind: i32::from(i),
            start_time_unix_nano: 1_764_000_000_000_000_000,
            end_time_unix_nano: 1_764_000_000_500_000_000,
            attributes: attrs.clone(),
            events: vec![span::Event {
                time_unix_nano: 1_764_000_000_100_000_000,
                name: "exception".into(),
                attributes: vec![kv("exception.message", StringValue("boom".into()))],
                ..Default::default()
            }],
            links: vec![span::Link {
                trace_id: vec![9; 16],
                span_id: vec![9; 8],
                ..Default::default()
            }],
            status: Some(Status {
                code: 2,
                message: "failed".into(),
            }),
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", StringValue("svc".into()))],
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

const OTLP_JSON: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","parentSpanId":"eee19b7ec3c1b173","name":"op","kind":2,"startTimeUnixNano":"1764000000000000000","endTimeUnixNano":"1764000001000000000","attributes":[{"key":"i","value":{"intValue":"3"}},{"key":"a","value":{"arrayValue":{"values":[{"doubleValue":1.5}]}}}],"events":[{"name":"e","timeUnixNano":"1764000000000000001"}],"status":{"code":2,"message":"x"}}]}]}]}"#;

const ZIPKIN_JSON: &str = r#"[{"traceId":"5b8efff798038103d269b633813fc60c","id":"eee19b7ec3c1b174","parentId":"eee19b7ec3c1b173","name":"get /api","kind":"SERVER","timestamp":1764000000000000,"duration":1500,"localEndpoint":{"serviceName":"frontend","ipv4":"10.0.0.1","port":8080},"remoteEndpoint":{"serviceName":"db"},"tags":{"http.method":"GET","error":"boom"},"annotations":[{"timestamp":1764000000000100,"value":"ws"}],"shared":true}]"#;

/// A mutation of `seed`: up to 8 edits, or fresh random bytes.
fn mutated(seed: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = seed.len().max(1);
    let edits = prop::collection::vec((0..5u8, 0..len, any::<u8>(), 1..64usize), 0..8);
    prop_oneof![
        8 => edits.prop_map(move |edits| {
            let mut b = seed.clone();
            for (op, at, byte, n) in edits {
                let at = at.min(b.len());
                match op {
                    0 if at < b.len() => b[at] ^= byte | 1,
                    1 => b.insert(at, byte),
                    2 if at < b.len() => {
                        b.remove(at);
                    }
                    3 => b.truncate(at),
                    _ => {
                        // repeat a chunk: deep or long repetitions of what parses
                        let end = (at + n).min(b.len());
                        let chunk = b[at..end].to_vec();
                        for _ in 0..(n % 8) {
                            b.splice(at..at, chunk.iter().copied());
                        }
                    }
                }
            }
            b
        }),
        1 => prop::collection::vec(any::<u8>(), 0..512),
    ]
}

/// Runs `decode` on `cases()` mutations of `seed`; panics (fails) on the first panic of
/// `decode`, with the input proptest shrank it to.
fn fuzz(name: &str, seed: Vec<u8>, decode: impl Fn(&[u8]) -> bool) {
    let decoded = AtomicU64::new(0);
    let cases = cases();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&mutated(seed), |input| {
            if decode(&input) {
                decoded.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    eprintln!(
        "{name}: {cases} cases, {} decoded, the rest refused with an error",
        decoded.load(Ordering::Relaxed)
    );
}

fn otlp(bytes: &[u8], format: Format) -> bool {
    decode_plain(
        bytes,
        format,
        &clew_proto::from_otlp::Limits::default(),
        1_764_000_000_000_000_000,
    )
    .is_ok()
}

#[test]
fn otlp_protobuf_never_panics() {
    fuzz("otlp protobuf", seed_request().encode_to_vec(), |b| {
        otlp(b, Format::Protobuf)
    });
}

#[test]
fn otlp_json_never_panics() {
    fuzz("otlp json", OTLP_JSON.as_bytes().to_vec(), |b| {
        otlp(b, Format::Json)
    });
}

#[test]
fn zipkin_json_never_panics() {
    fuzz("zipkin json", ZIPKIN_JSON.as_bytes().to_vec(), |b| {
        clew_collector::zipkin::decode_json(b)
            .map(clew_collector::zipkin::to_otlp)
            .is_ok()
    });
}

#[test]
fn zipkin_proto_never_panics() {
    // the JSON seed's spans as protobuf, via a decode of a hand-built list is not exposed:
    // mutate the OTLP seed's bytes instead (same wire format family, other field numbers)
    fuzz("zipkin proto", seed_request().encode_to_vec(), |b| {
        clew_collector::zipkin::decode_proto(b)
            .map(clew_collector::zipkin::to_otlp)
            .is_ok()
    });
}

#[test]
fn avro_records_never_panic() {
    let codec = clew_proto::avro::Codec::current();
    let spans = clew_proto::from_otlp::convert_request(
        seed_request(),
        &clew_proto::from_otlp::Limits::default(),
        1_764_000_000_000_000_000,
    )
    .spans;
    let record = codec.encode(&spans).expect("encode seed");
    fuzz("avro", record, |b| codec.decode_request(b).is_ok());
}
