//! `from_otlp::decode_request` (protobuf bytes straight into the span model) against the
//! path it replaced, prost's generated request + `convert_request` with the lenient second
//! decode for invalid UTF-8 ([`reference`]): on every input both refuse the request, or
//! both give the same kept spans (every field, repairs included) and the same rejections.
//!
//! Inputs: valid requests with random mutations (bytes flipped, inserted, removed, cut,
//! chunks repeated), random bytes, and requests built field by field from OTLP's schema
//! with what generated encoders never write — fields in any order, repeated singular
//! fields (last one wins, messages merged), unknown fields and groups at every level,
//! wrong wire types, ids of any length, invalid UTF-8 anywhere, values nested past the
//! limits. `CLEW_FUZZ_CASES` sets the number of cases (default 1500 each).

mod reference;

use clew_proto::from_otlp::{decode_request, Limits};
use clew_proto::model::repair;
use clew_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use clew_proto::otlp::common::v1::{
    any_value, AnyValue, InstrumentationScope, KeyValue, KeyValueList,
};
use clew_proto::otlp::resource::v1::Resource;
use clew_proto::otlp::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use prost::Message;

const NOW: u64 = 1_764_000_001_000_000_000;

fn cases() -> u32 {
    std::env::var("CLEW_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500)
}

/// Both decoders on `bytes`: whether they decoded it; panics where they disagree.
fn same_outcome(bytes: &[u8], limits: &Limits) -> bool {
    let new = decode_request(bytes, limits, NOW);
    let old = reference::decode_and_convert(bytes, limits, NOW);
    match (new, old) {
        (Ok(new), Ok(old)) => {
            // Debug text: NaN doubles compare equal there, and a difference is readable
            assert_eq!(format!("{:?}", new.spans), format!("{:?}", old.spans));
            assert_eq!(new.rejected, old.rejected);
            true
        }
        (Err(_), Err(_)) => false,
        (new, old) => panic!(
            "decoders disagree on {bytes:02x?}:\nnew: {:?}\nold: {:?}",
            new.map(|c| c.total()),
            old.map(|c| c.total())
        ),
    }
}

fn run(name: &str, strategy: impl Strategy<Value = Vec<u8>>, limits: Limits) {
    let decoded = std::cell::Cell::new(0u32);
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&strategy, |bytes| {
            decoded.set(decoded.get() + u32::from(same_outcome(&bytes, &limits)));
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    eprintln!(
        "{name}: {} cases, {} decoded by both, the rest refused by both",
        cases(),
        decoded.get()
    );
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// A request with every attribute type, nesting, events, links, a status, a scope, two
/// resources and one span of each rejection and repair.
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
    let good = |i: u8| Span {
        trace_id: vec![7; 16],
        span_id: vec![i; 8],
        parent_span_id: if i > 1 { vec![1; 8] } else { vec![] },
        name: format!("op-{i}"),
        kind: i32::from(i),
        start_time_unix_nano: NOW - 1_000_000_000,
        end_time_unix_nano: NOW - 500_000_000,
        attributes: attrs.clone(),
        events: vec![span::Event {
            time_unix_nano: NOW - 900_000_000,
            name: "exception".into(),
            attributes: vec![kv("exception.message", StringValue("boom".into()))],
            ..Default::default()
        }],
        links: vec![span::Link {
            trace_id: vec![9; 16],
            span_id: vec![9; 8],
            trace_state: "k=v".into(),
            ..Default::default()
        }],
        status: Some(Status {
            code: 2,
            message: "failed".into(),
        }),
        flags: 0x301,
        trace_state: "a=b".into(),
        ..Default::default()
    };
    let mut spans: Vec<Span> = (1..=3).map(good).collect();
    spans.push(Span {
        trace_id: vec![0; 16],
        ..good(4)
    });
    spans.push(Span {
        span_id: vec![1; 7],
        ..good(5)
    });
    spans.push(Span {
        start_time_unix_nano: 0,
        end_time_unix_nano: 0,
        ..good(6)
    });
    spans.push(Span {
        parent_span_id: vec![3; 3],
        name: String::new(),
        end_time_unix_nano: 1,
        ..good(7)
    });
    ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", StringValue("svc".into())),
                        kv("host.name", StringValue("node-1".into())),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "lib".into(),
                        version: "1.0".into(),
                        attributes: vec![kv("scope.attr", IntValue(1))],
                        dropped_attributes_count: 2,
                    }),
                    spans,
                    schema_url: "https://opentelemetry.io/schemas/1.4.0".into(),
                }],
                schema_url: "https://opentelemetry.io/schemas/1.4.0".into(),
            },
            ResourceSpans {
                resource: None,
                scope_spans: vec![ScopeSpans {
                    spans: vec![good(8)],
                    ..Default::default()
                }],
                ..Default::default()
            },
        ],
    }
}

/// A mutation of `seed`: up to 8 edits, or fresh random bytes (as `collector/tests/decode_fuzz.rs`).
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

#[test]
fn mutated_requests_decode_the_same() {
    run(
        "mutated seed",
        mutated(seed_request().encode_to_vec()),
        Limits::default(),
    );
}

#[test]
fn mutated_requests_decode_the_same_under_tight_limits() {
    let limits = Limits {
        max_attribute_value_bytes: 3,
        max_attributes: 2,
        max_events: 1,
        max_links: 0,
        max_name_bytes: 2,
        max_nesting_depth: 1,
        max_future_skew_nanos: 0,
        max_age_nanos: Some(600_000_000),
    };
    run(
        "mutated seed, tight limits",
        mutated(seed_request().encode_to_vec()),
        limits,
    );
}

// ---- requests built field by field ----

/// One field of a message as it goes on the wire.
#[derive(Debug, Clone)]
enum Field {
    Varint(u32, u64),
    Fixed64(u32, u64),
    Fixed32(u32, u32),
    Bytes(u32, Vec<u8>),
    Group(u32, Vec<Field>),
}

fn encode(fields: &[Field]) -> Vec<u8> {
    use prost::encoding::{encode_key, encode_varint, WireType};
    let mut out = Vec::new();
    for f in fields {
        match f {
            Field::Varint(tag, v) => {
                encode_key(*tag, WireType::Varint, &mut out);
                encode_varint(*v, &mut out);
            }
            Field::Fixed64(tag, v) => {
                encode_key(*tag, WireType::SixtyFourBit, &mut out);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Field::Fixed32(tag, v) => {
                encode_key(*tag, WireType::ThirtyTwoBit, &mut out);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Field::Bytes(tag, b) => {
                encode_key(*tag, WireType::LengthDelimited, &mut out);
                encode_varint(b.len() as u64, &mut out);
                out.extend_from_slice(b);
            }
            Field::Group(tag, inner) => {
                encode_key(*tag, WireType::StartGroup, &mut out);
                out.extend(encode(inner));
                encode_key(*tag, WireType::EndGroup, &mut out);
            }
        }
    }
    out
}

fn message(tag: u32, fields: Vec<Field>) -> Field {
    Field::Bytes(tag, encode(&fields))
}

/// Mostly short ASCII, sometimes bytes that are not UTF-8 (or are, by chance).
fn text() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => "[a-z. =]{0,6}".prop_map(String::into_bytes),
        1 => Just(b"service.name".to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..4),
    ]
}

fn text_field(tag: u32) -> impl Strategy<Value = Field> {
    text().prop_map(move |t| Field::Bytes(tag, t))
}

/// A field no OTLP message has (all wire types, groups with content), or a known tag with
/// the wrong wire type now and then.
fn unknown() -> impl Strategy<Value = Field> {
    let leaf = prop_oneof![
        (17..40u32, any::<u64>()).prop_map(|(t, v)| Field::Varint(t, v)),
        (17..40u32, any::<u64>()).prop_map(|(t, v)| Field::Fixed64(t, v)),
        (17..40u32, any::<u32>()).prop_map(|(t, v)| Field::Fixed32(t, v)),
        (17..40u32, prop::collection::vec(any::<u8>(), 0..4)).prop_map(|(t, v)| Field::Bytes(t, v)),
    ];
    prop_oneof![
        8 => leaf.clone(),
        2 => (17..40u32, prop::collection::vec(leaf, 0..3)).prop_map(|(t, v)| Field::Group(t, v)),
        1 => (1..17u32, any::<u64>()).prop_map(|(t, v)| Field::Varint(t, v)),
        1 => (1..17u32, any::<u32>()).prop_map(|(t, v)| Field::Fixed32(t, v)),
    ]
}

/// The fields of a message: each of `known` gives zero or more fields (absent, once, a
/// singular field repeated), plus now and then an unknown one, in any order.
fn fields(known: Vec<BoxedStrategy<Vec<Field>>>) -> impl Strategy<Value = Vec<Field>> {
    (known, prop::collection::vec(unknown(), 0..2), 0..4u8).prop_flat_map(
        |(known, unknown, dice)| {
            let mut all: Vec<Field> = known.into_iter().flatten().collect();
            if dice == 0 {
                all.extend(unknown);
            }
            Just(all).prop_shuffle()
        },
    )
}

/// A singular field: mostly absent or once, sometimes twice.
fn opt(field: impl Strategy<Value = Field> + 'static) -> BoxedStrategy<Vec<Field>> {
    let field = field.boxed();
    prop_oneof![
        3 => prop::collection::vec(field.clone(), 0..=1),
        1 => prop::collection::vec(field, 2..=2),
    ]
    .boxed()
}

fn any_value() -> impl Strategy<Value = Vec<Field>> {
    let leaf = fields(vec![
        opt(text_field(1)),
        opt((0..3u64).prop_map(|v| Field::Varint(2, v))),
        opt(any::<u64>().prop_map(|v| Field::Varint(3, v))),
        opt(any::<u64>().prop_map(|v| Field::Fixed64(4, v))),
        opt(prop::collection::vec(any::<u8>(), 0..5).prop_map(|v| Field::Bytes(7, v))),
        opt(any::<u64>().prop_map(|v| Field::Varint(8, v))),
    ])
    .prop_map(|mut f| {
        f.truncate(2);
        f
    });
    leaf.prop_recursive(4, 24, 3, |inner| {
        let array = prop::collection::vec(inner.clone(), 0..3)
            .prop_map(|vs| message(5, vs.into_iter().map(|v| message(1, v)).collect()));
        let kvlist = prop::collection::vec((text(), inner), 0..3).prop_map(|kvs| {
            message(
                6,
                kvs.into_iter()
                    .map(|(k, v)| message(1, vec![Field::Bytes(1, k), message(2, v)]))
                    .collect(),
            )
        });
        // one or two oneof fields: a second one replaces or merges into the first
        prop::collection::vec(prop_oneof![array, kvlist, text_field(1)], 1..3)
    })
}

fn key_value() -> impl Strategy<Value = Vec<Field>> {
    prop_oneof![
        6 => (text(), any_value()).prop_map(|(k, v)| vec![Field::Bytes(1, k), message(2, v)]),
        1 => fields(vec![
            opt(text_field(1)),
            opt(any_value().prop_map(|v| message(2, v))),
            opt(any::<u64>().prop_map(|v| Field::Varint(3, v))),
        ]),
    ]
}

fn attributes(tag: u32) -> BoxedStrategy<Vec<Field>> {
    prop::collection::vec(key_value().prop_map(move |kv| message(tag, kv)), 0..4).boxed()
}

fn id(len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => prop::collection::vec(1..=255u8, len),
        1 => Just(vec![0; len]),
        1 => prop::collection::vec(any::<u8>(), 0..20),
    ]
}

fn time() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => (NOW - 2_000_000_000)..NOW,
        1 => Just(0u64),
        1 => any::<u64>(),
    ]
}

fn count(tag: u32) -> BoxedStrategy<Vec<Field>> {
    opt((0..5u64).prop_map(move |v| Field::Varint(tag, v)))
}

fn span_fields() -> impl Strategy<Value = Vec<Field>> {
    let event = fields(vec![
        opt(time().prop_map(|t| Field::Fixed64(1, t))),
        opt(text_field(2)),
        attributes(3),
        count(4),
    ]);
    let link = fields(vec![
        opt(id(16).prop_map(|v| Field::Bytes(1, v))),
        opt(id(8).prop_map(|v| Field::Bytes(2, v))),
        opt(text_field(3)),
        attributes(4),
        count(5),
        opt(any::<u32>().prop_map(|v| Field::Fixed32(6, v))),
    ]);
    let status = fields(vec![
        opt(text_field(2)),
        opt((0..4u64).prop_map(|v| Field::Varint(3, v))),
    ]);
    fields(vec![
        opt(id(16).prop_map(|v| Field::Bytes(1, v))),
        opt(id(8).prop_map(|v| Field::Bytes(2, v))),
        opt(text_field(3)),
        opt(prop_oneof![Just(vec![]), id(8)].prop_map(|v| Field::Bytes(4, v))),
        opt(text_field(5)),
        opt((0..8u64).prop_map(|v| Field::Varint(6, v))),
        opt(time().prop_map(|t| Field::Fixed64(7, t))),
        opt(time().prop_map(|t| Field::Fixed64(8, t))),
        attributes(9),
        count(10),
        prop::collection::vec(event.prop_map(|e| message(11, e)), 0..2).boxed(),
        count(12),
        prop::collection::vec(link.prop_map(|l| message(13, l)), 0..2).boxed(),
        count(14),
        opt(status.prop_map(|s| message(15, s))),
        opt(any::<u32>().prop_map(|v| Field::Fixed32(16, v))),
    ])
}

fn request() -> impl Strategy<Value = Vec<u8>> {
    let entity_ref = fields(vec![
        opt(text_field(1)),
        opt(text_field(2)),
        prop::collection::vec(text_field(3), 0..2).boxed(),
        prop::collection::vec(text_field(4), 0..2).boxed(),
    ]);
    let resource = fields(vec![
        attributes(1),
        count(2),
        prop::collection::vec(entity_ref.prop_map(|e| message(3, e)), 0..2).boxed(),
    ]);
    let scope = fields(vec![
        opt(text_field(1)),
        opt(text_field(2)),
        attributes(3),
        count(4),
    ]);
    let scope_spans = fields(vec![
        opt(scope.prop_map(|s| message(1, s))),
        prop::collection::vec(span_fields().prop_map(|s| message(2, s)), 0..4).boxed(),
        opt(text_field(3)),
    ]);
    let resource_spans = fields(vec![
        opt(resource.prop_map(|r| message(1, r))),
        prop::collection::vec(scope_spans.prop_map(|s| message(2, s)), 0..3).boxed(),
        opt(text_field(3)),
    ]);
    prop::collection::vec(resource_spans.prop_map(|r| message(1, r)), 0..3)
        .prop_map(|rs| encode(&rs))
}

#[test]
fn requests_built_field_by_field_decode_the_same() {
    run("built", request(), Limits::default());
}

#[test]
fn built_requests_mutated_decode_the_same() {
    run(
        "built, mutated",
        request().prop_flat_map(mutated),
        Limits::default(),
    );
}

#[test]
fn built_requests_decode_the_same_under_tight_limits() {
    let limits = Limits {
        max_attribute_value_bytes: 2,
        max_attributes: 1,
        max_events: 1,
        max_links: 1,
        max_name_bytes: 1,
        max_nesting_depth: 1,
        ..Limits::default()
    };
    run("built, tight limits", request(), limits);
}

// ---- cases picked by hand ----

/// A request with one span whose only attribute has the value `value`.
fn one_attribute(value: Vec<Field>) -> Vec<u8> {
    let span = vec![
        Field::Bytes(1, vec![1; 16]),
        Field::Bytes(2, vec![2; 8]),
        Field::Bytes(5, b"op".to_vec()),
        Field::Fixed64(7, NOW - 10),
        Field::Fixed64(8, NOW),
        message(9, vec![Field::Bytes(1, b"k".to_vec()), message(2, value)]),
    ];
    encode(&[message(1, vec![message(2, vec![message(2, span)])])])
}

#[test]
fn the_seed_decodes_the_same() {
    let bytes = seed_request().encode_to_vec();
    assert!(same_outcome(&bytes, &Limits::default()));
    let converted = decode_request(&bytes, &Limits::default(), NOW).unwrap();
    assert_eq!((converted.spans.len(), converted.rejected.len()), (5, 3));
}

#[test]
fn nesting_fails_at_prosts_recursion_limit_and_not_before() {
    // each array level is two messages (ArrayValue, AnyValue) below the attribute's value
    let nested = |levels: usize, leaf: Field| {
        let mut v = vec![leaf];
        for _ in 0..levels {
            v = vec![message(5, vec![message(1, v)])];
        }
        one_attribute(v)
    };
    for leaf in [
        Field::Bytes(1, b"leaf".to_vec()),
        Field::Varint(20, 1),
        Field::Group(20, vec![Field::Group(21, vec![Field::Varint(22, 1)])]),
    ] {
        let outcomes: Vec<bool> = (40..52)
            .map(|levels| same_outcome(&nested(levels, leaf.clone()), &Limits::default()))
            .collect();
        assert!(
            outcomes[0] && !outcomes[outcomes.len() - 1],
            "{leaf:?}: {outcomes:?}"
        );
    }
}

#[test]
fn a_later_field_overwrites_or_merges_like_prost() {
    // string then int: the int wins, and the invalid string flags nothing
    let bytes = one_attribute(vec![Field::Bytes(1, vec![0xff]), Field::Varint(3, 5)]);
    assert!(same_outcome(&bytes, &Limits::default()));
    let span = &decode_request(&bytes, &Limits::default(), NOW)
        .unwrap()
        .spans[0];
    assert_eq!(span.repairs & repair::INVALID_UTF8, 0);
    assert_eq!(
        span.attributes[0].value,
        Some(AnyValue {
            value: Some(any_value::Value::IntValue(5))
        })
    );
    // two arrays merge into one
    let item = |s: &str| message(1, vec![Field::Bytes(1, s.as_bytes().to_vec())]);
    let bytes = one_attribute(vec![
        message(5, vec![item("a")]),
        message(5, vec![item("b")]),
    ]);
    assert!(same_outcome(&bytes, &Limits::default()));
    let span = &decode_request(&bytes, &Limits::default(), NOW)
        .unwrap()
        .spans[0];
    let Some(any_value::Value::ArrayValue(a)) = &span.attributes[0].value.as_ref().unwrap().value
    else {
        panic!("not an array: {:?}", span.attributes[0]);
    };
    assert_eq!(a.values.len(), 2);
}

#[test]
fn invalid_utf8_is_replaced_and_only_its_span_flagged() {
    let span = |id: u8, value: &[u8]| {
        message(
            2,
            vec![
                Field::Bytes(1, vec![1; 16]),
                Field::Bytes(2, vec![id; 8]),
                Field::Bytes(5, b"op".to_vec()),
                Field::Fixed64(7, NOW - 10),
                message(
                    9,
                    vec![
                        Field::Bytes(1, b"k".to_vec()),
                        message(2, vec![Field::Bytes(1, value.to_vec())]),
                    ],
                ),
            ],
        )
    };
    let bytes = encode(&[message(
        1,
        vec![message(
            2,
            vec![span(1, b"fine"), span(2, b"\xff\xfevalue")],
        )],
    )]);
    assert!(same_outcome(&bytes, &Limits::default()));
    let spans = decode_request(&bytes, &Limits::default(), NOW)
        .unwrap()
        .spans;
    let flags: Vec<bool> = spans
        .iter()
        .map(|s| s.repairs & repair::INVALID_UTF8 != 0)
        .collect();
    assert_eq!(flags, vec![false, true]);
    assert_eq!(
        spans[1].attributes[0].value,
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(
                "\u{FFFD}\u{FFFD}value".into()
            ))
        })
    );
    // in the resource (after its spans on the wire): every span of it
    let host = message(
        1,
        vec![
            Field::Bytes(1, b"host.name".to_vec()),
            message(2, vec![Field::Bytes(1, b"\xffhost".to_vec())]),
        ],
    );
    let bytes = encode(&[message(
        1,
        vec![
            message(2, vec![span(1, b"a"), span(2, b"b")]),
            message(1, vec![host]),
        ],
    )]);
    assert!(same_outcome(&bytes, &Limits::default()));
    let spans = decode_request(&bytes, &Limits::default(), NOW)
        .unwrap()
        .spans;
    assert_eq!(spans.len(), 2);
    assert!(spans.iter().all(|s| s.repairs & repair::INVALID_UTF8 != 0));
}

#[test]
fn other_malformations_fail() {
    let bytes = seed_request().encode_to_vec();
    for end in [1, bytes.len() / 2, bytes.len() - 1] {
        assert!(!same_outcome(&bytes[..end], &Limits::default()));
    }
    assert!(!same_outcome(&[0xff; 16], &Limits::default()));
    // a known field with the wrong wire type
    assert!(!same_outcome(
        &encode(&[Field::Varint(1, 3)]),
        &Limits::default()
    ));
    // an end group that opens nothing
    assert!(!same_outcome(&[0x0c], &Limits::default()));
    assert!(same_outcome(&[], &Limits::default()));
}
