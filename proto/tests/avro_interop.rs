//! Interop with an independent Avro implementation (Python fastavro) through the published
//! schema file only.

use std::path::PathBuf;
use std::process::Command;

use clew_proto::avro;
use clew_proto::from_otlp::Limits;

/// Same lookup as `tests/common/mod.rs` `python()` at the workspace root.
fn python() -> PathBuf {
    if let Ok(p) = std::env::var("CLEW_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").expect("HOME");
    let cache = std::env::var("CLEW_CACHE").unwrap_or_else(|_| format!("{home}/.cache/clew"));
    let p = PathBuf::from(cache).join("venv/bin/python");
    assert!(
        p.exists(),
        "{} missing: run scripts/setup-python (scripts/test does)",
        p.display()
    );
    p
}

fn run(args: &[&str]) -> String {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = Command::new(python())
        .arg(format!("{root}/tests/python/avro_interop.py"))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/schemas/span_batch_v1.avsc"
        ))
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
#[ignore = "needs fastavro (scripts/setup-python); scripts/test runs it"]
fn fastavro_writes_what_rust_reads() {
    let dir = std::env::temp_dir().join(format!("clew-avro-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("from_python.avro");
    run(&["write", path.to_str().unwrap()]);
    let bytes = std::fs::read(&path).unwrap();
    let out = avro::decode_batch(&bytes, &Limits::default(), 1_800_000_000_000_000_000).unwrap();
    assert!(out.rejected.is_empty());
    assert_eq!(out.spans.len(), 2);
    let root = &out.spans[0];
    assert_eq!(root.service_name, "py-service");
    assert_eq!(root.name, "py-root");
    assert_eq!(root.parent_span_id, None);
    assert!(root.is_error());
    assert_eq!(root.attributes.len(), 4);
    assert_eq!(out.spans[1].parent_span_id, Some(root.span_id));
    // Rust's writer agrees byte for byte on the fingerprint.
    assert_eq!(bytes[..10], avro::encode_batch(&[])[..10]);
}

#[test]
#[ignore = "needs fastavro (scripts/setup-python); scripts/test runs it"]
fn fastavro_reads_what_rust_writes() {
    let dir = std::env::temp_dir().join(format!("clew-avro-r-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let golden = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/span_batch_v1.avro"
    );
    let json = run(&["read", golden]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let spans = &v["resource_spans"][0]["scope_spans"][0]["spans"];
    assert_eq!(spans.as_array().unwrap().len(), 2);
    assert_eq!(spans[0]["name"], "GET /orders/{id}");
    assert_eq!(spans[0]["trace_id"], "07".repeat(16));
    assert_eq!(spans[0]["business_keys"][0]["value"], "12345");
    assert_eq!(spans[0]["dropped_attributes_count"], 4294967295u64);
}
