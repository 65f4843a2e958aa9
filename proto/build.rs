//! Generates the Jaeger remote-storage API (`jaeger.storage.v2`) from `jaeger/*.proto`.
//!
//! protox compiles the `.proto` files in-process (no `protoc` needed); OTLP's
//! `TracesData` is not generated but mapped to opentelemetry-proto's type, so a trace read
//! through this API is the same Rust value the OTLP receivers decode.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "jaeger/storage/v2/trace_storage.proto",
        "jaeger/storage/v2/dependency_storage.proto",
    ];
    for p in protos
        .iter()
        .chain(["jaeger/opentelemetry/proto/trace/v1/trace.proto"].iter())
    {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["jaeger"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .build_transport(false)
        .extern_path(
            ".opentelemetry.proto.trace.v1",
            "::opentelemetry_proto::tonic::trace::v1",
        )
        .compile_fds(fds)?;
    Ok(())
}
