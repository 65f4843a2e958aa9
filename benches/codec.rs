//! Micro-benchmarks of the per-span codec costs on the ingest path:
//! OTLP protobuf decode → conversion/validation → stored-span encode, and the read-side
//! decode; and the Kafka wire formats side by side: Avro records as `clew agent` writes
//! them (one single-object record per trace, `agent::build_records`) and as the collector
//! reads them (`avro::decode_batch`, validation included), against OTLP protobuf.
//! Bytes per span on the wire are printed; and stage 6, span metrics (observe + record)
//! on the same spans; the fleet inventory (note + record); the bearer-token check of
//! `[auth]`; and stage 4, redaction with the default rules. Run:
//! `cargo bench --bench codec`.

mod workload;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use prost::Message;

use clew_proto::encoding::{decode_span, encode_span};
use clew_proto::from_otlp::{convert_request, Limits};
use clew_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;

const NOW: u64 = 1_800_000_000_000_000_000;

fn bench(c: &mut Criterion) {
    let mut w = workload::Workload::new(7);
    let req = workload::request(&mut (0..25).map(|_| w.trace(NOW - 1_000_000_000)));
    let spans: usize = req
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    let bytes = req.encode_to_vec();
    eprintln!(
        "request: {spans} spans, {} bytes of OTLP protobuf ({} B/span)",
        bytes.len(),
        bytes.len() / spans
    );

    let mut g = c.benchmark_group("ingest_codec");
    g.throughput(Throughput::Elements(spans as u64));
    g.bench_function("otlp_protobuf_decode", |b| {
        b.iter(|| ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap())
    });
    let limits = Limits::default();
    g.bench_function("convert_and_validate", |b| {
        b.iter_batched(
            || req.clone(),
            |r| convert_request(r, &limits, NOW),
            BatchSize::LargeInput,
        )
    });
    let converted = convert_request(req.clone(), &limits, NOW).spans;
    g.bench_function("stored_span_encode", |b| {
        let mut buf = Vec::with_capacity(1 << 20);
        b.iter(|| {
            buf.clear();
            for s in &converted {
                encode_span(s, &mut buf);
            }
            buf.len()
        })
    });
    let cells: Vec<Vec<u8>> = converted
        .iter()
        .map(clew_proto::encoding::encode_span_to_vec)
        .collect();
    let stored: usize = cells.iter().map(Vec::len).sum();
    eprintln!(
        "stored encoding: {} B/span before compression",
        stored / spans
    );
    g.bench_function("stored_span_decode", |b| {
        b.iter(|| {
            cells
                .iter()
                .map(|c| decode_span(c).unwrap().attributes.len())
                .sum::<usize>()
        })
    });
    g.finish();

    // Stage 6: span metrics (RED series + service graph + history) on the same spans, as
    // Front::prepare (observe) and Front::ingest (record) run them; the series exist after
    // the first round, as in steady state.
    let mut g = c.benchmark_group("span_metrics");
    g.throughput(Throughput::Elements(spans as u64));
    let config = clew_collector::SpanMetricsConfig {
        dimensions: vec![clew_collector::span_metrics::Dimension::Name(
            "http.route".into(),
        )],
        ..Default::default()
    };
    let metrics = clew_collector::SpanMetrics::new(&config).unwrap();
    g.bench_function("observe_and_record", |b| {
        b.iter(|| {
            let observed = metrics.observe(&clew_proto::Tenant::default(), &converted);
            metrics.record(observed, &[]);
        })
    });
    g.bench_function("render_metrics_text", |b| {
        let mut out = String::new();
        b.iter(|| {
            out.clear();
            metrics.render(&mut out, None);
            out.len()
        })
    });
    g.finish();

    // Stage 6 too: the fleet inventory (note the resource groups, then count the stored
    // spans per instance), in steady state: the instances exist after the first round.
    let mut g = c.benchmark_group("inventory");
    g.throughput(Throughput::Elements(spans as u64));
    let inventory = clew_collector::inventory::Inventory::new(&Default::default()).unwrap();
    let origin = clew_collector::inventory::Origin::default();
    g.bench_function("note_and_record", |b| {
        b.iter(|| {
            let noted = inventory.note(&clew_proto::Tenant::default(), &converted);
            inventory.record(noted, &[], clew_collector::metrics::Protocol::Grpc, &origin);
        })
    });
    // the worst case: every span with a resource of its own (one group per span)
    let one_each: Vec<clew_proto::Span> = converted
        .iter()
        .map(|s| clew_proto::Span {
            resource: std::sync::Arc::new((*s.resource).clone()),
            ..s.clone()
        })
        .collect();
    g.bench_function("note_and_record_resource_per_span", |b| {
        b.iter(|| {
            let noted = inventory.note(&clew_proto::Tenant::default(), &one_each);
            inventory.record(noted, &[], clew_collector::metrics::Protocol::Grpc, &origin);
        })
    });
    g.finish();

    // Receive: the bearer-token check every request of a clew with [auth] pays once (not
    // per span), against 3 and 100 configured tokens; every entry is compared whatever
    // matches (constant time), so the table size is the cost.
    let mut g = c.benchmark_group("auth");
    for n in [3usize, 100] {
        let toml_text: String = (0..n)
            .map(|i| {
                format!("[[auth.tokens]]\ntoken = \"bench-token-{i:08}-0123456789\"\ntenant = \"t{i}\"\nscopes = [\"ingest\"]\n")
            })
            .collect();
        let config = clew_auth::config::parse_auth_section(&toml_text).expect("bench tokens");
        let auth = clew_auth::Authenticator::new(&config).expect("bench authenticator");
        let header = format!("Bearer bench-token-{:08}-0123456789", n - 1);
        g.bench_function(format!("authorize_{n}_tokens"), |b| {
            b.iter(|| {
                auth.authorize(Some(header.as_bytes()), clew_auth::INGEST)
                    .expect("authorised")
            })
        });
    }
    g.finish();

    // Stage 4: redaction with the default rules (and with two configured rules besides),
    // on the converted spans of the request, as Front::prepare runs it. The workload holds
    // no secrets, so this is the cost every span pays; `with_secrets` masks a card number,
    // a password and a ?token= on every tenth span.
    let mut g = c.benchmark_group("redaction");
    g.throughput(Throughput::Elements(spans as u64));
    let defaults = clew_collector::redaction::RedactionConfig::default();
    let default_rules = clew_collector::redaction::Redactor::new(&defaults, &["order_id".into()])
        .expect("default redaction rules");
    g.bench_function("default_rules", |b| {
        b.iter_batched(
            || converted.clone(),
            |mut spans| {
                default_rules.redact_all(&mut spans);
                spans
            },
            BatchSize::LargeInput,
        )
    });
    let configured: clew_collector::redaction::RedactionConfig = toml::from_str(
        "hash_key = \"bench-key-0123456789abcdef\"\n[[rules]]\nattribute = \"user.email\"\naction = \"hash\"\n[[rules]]\npattern = \"ssn=(\\\\d{3}-\\\\d{2}-\\\\d{4})\"\naction = \"mask\"\n",
    )
    .expect("bench redaction config");
    let with_configured =
        clew_collector::redaction::Redactor::new(&configured, &["order_id".into()])
            .expect("configured redaction rules");
    g.bench_function("default_and_two_configured_rules", |b| {
        b.iter_batched(
            || converted.clone(),
            |mut spans| {
                with_configured.redact_all(&mut spans);
                spans
            },
            BatchSize::LargeInput,
        )
    });
    let with_secrets: Vec<clew_proto::Span> = converted
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut s = s.clone();
            if i % 10 == 0 {
                let kv = |k: &str, v: &str| clew_proto::model::KeyValue {
                    key: k.into(),
                    value: Some(clew_proto::model::AnyValue {
                        value: Some(clew_proto::model::any_value::Value::StringValue(v.into())),
                    }),
                    ..Default::default()
                };
                s.attributes.push(kv(
                    "db.statement",
                    "SELECT 1 FROM c WHERE pan = '4111 1111 1111 1111'",
                ));
                s.attributes.push(kv("user.password", "hunter2"));
                s.attributes
                    .push(kv("url.full", "https://shop.example/cb?token=abcdef"));
            }
            s
        })
        .collect();
    g.bench_function("default_rules_with_secrets", |b| {
        b.iter_batched(
            || with_secrets.clone(),
            |mut spans| {
                default_rules.redact_all(&mut spans);
                spans
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();

    // Kafka wire formats, per span: Avro (one record per trace) vs OTLP protobuf.
    let mut g = c.benchmark_group("kafka_wire");
    g.throughput(Throughput::Elements(spans as u64));
    let indexed = || {
        converted
            .clone()
            .into_iter()
            .enumerate()
            .collect::<Vec<_>>()
    };
    let (records, rejected) = clew_collector::agent::build_records(indexed(), 1_000_000);
    assert!(rejected.is_empty());
    let avro_bytes: usize = records
        .iter()
        .map(|(r, _)| r.key.len() + r.value.len())
        .sum();
    let avro_values: usize = records.iter().map(|(r, _)| r.value.len()).sum();
    // OTLP protobuf as the OpenTelemetry Collector's Kafka exporter writes it when it
    // partitions by trace id: one ExportTraceServiceRequest per trace.
    let per_trace_otlp: Vec<Vec<u8>> = {
        let mut ids: Vec<Vec<u8>> = req
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .map(|sp| sp.trace_id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        ids.iter()
            .map(|id| {
                let mut one = req.clone();
                for rs in &mut one.resource_spans {
                    for ss in &mut rs.scope_spans {
                        ss.spans.retain(|sp| &sp.trace_id == id);
                    }
                    rs.scope_spans.retain(|ss| !ss.spans.is_empty());
                }
                one.resource_spans.retain(|rs| !rs.scope_spans.is_empty());
                one.encode_to_vec()
            })
            .collect()
    };
    let otlp_trace_bytes: usize = per_trace_otlp.iter().map(|b| b.len() + 16).sum();
    eprintln!(
        "kafka wire, {spans} spans in {} traces: avro {} B/span (record values {} B/span, +16 B key), \
         otlp protobuf one request for all {} B/span, otlp protobuf one request per trace {} B/span (+16 B key)",
        records.len(),
        avro_bytes / spans,
        avro_values / spans,
        bytes.len() / spans,
        otlp_trace_bytes / spans,
    );
    g.bench_function("avro_encode_per_trace_records", |b| {
        b.iter_batched(
            indexed,
            |v| clew_collector::agent::build_records(v, 1_000_000).0.len(),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("otlp_protobuf_encode", |b| {
        let mut buf = Vec::with_capacity(bytes.len());
        b.iter(|| {
            buf.clear();
            req.encode(&mut buf).unwrap();
            buf.len()
        })
    });
    g.bench_function("avro_decode_and_validate", |b| {
        b.iter(|| {
            records
                .iter()
                .map(|(r, _)| {
                    clew_proto::avro::decode_batch(&r.value, &limits, NOW)
                        .unwrap()
                        .spans
                        .len()
                })
                .sum::<usize>()
        })
    });
    // The same records through apache-avro's Value tree (the codec before the v1 one).
    let codec = clew_proto::avro::Codec::current();
    g.bench_function("avro_decode_via_value_tree", |b| {
        b.iter(|| {
            records
                .iter()
                .map(|(r, _)| {
                    codec
                        .decode_request_via_value_tree(&r.value)
                        .unwrap()
                        .extras
                        .len()
                })
                .sum::<usize>()
        })
    });
    g.bench_function("avro_decode_v1_codec", |b| {
        b.iter(|| {
            records
                .iter()
                .map(|(r, _)| codec.decode_request(&r.value).unwrap().extras.len())
                .sum::<usize>()
        })
    });
    let traces: Vec<Vec<clew_proto::Span>> = {
        let mut by_trace: std::collections::BTreeMap<_, Vec<_>> = Default::default();
        for s in &converted {
            by_trace.entry(s.trace_id).or_default().push(s.clone());
        }
        by_trace.into_values().collect()
    };
    g.bench_function("avro_encode_via_value_tree", |b| {
        b.iter(|| {
            traces
                .iter()
                .map(|t| codec.encode_via_value_tree(t).unwrap().len())
                .sum::<usize>()
        })
    });
    g.bench_function("avro_encode_v1_codec", |b| {
        b.iter(|| {
            traces
                .iter()
                .map(|t| codec.encode(t).unwrap().len())
                .sum::<usize>()
        })
    });
    g.bench_function("otlp_protobuf_decode_and_validate", |b| {
        b.iter(|| {
            let r = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
            convert_request(r, &limits, NOW).spans.len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
