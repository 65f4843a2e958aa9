//! Micro-benchmarks of the per-span codec costs on the ingest path:
//! OTLP protobuf decode → conversion/validation → stored-span encode, and the read-side
//! decode. Run: `cargo bench --bench codec`.

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
}

criterion_group!(benches, bench);
criterion_main!(benches);
