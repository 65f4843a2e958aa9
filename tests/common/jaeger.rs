//! The real Jaeger v2 (`jaeger`, module github.com/jaegertracing/jaeger, built once by
//! `scripts/jaeger-fetch` into the cache), for the tests that compare clew with it.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The `jaeger` binary, built first if it is not in the cache yet.
pub fn binary() -> PathBuf {
    let root = env!("CARGO_MANIFEST_DIR");
    let status = Command::new(format!("{root}/scripts/jaeger-fetch"))
        .status()
        .expect("run scripts/jaeger-fetch");
    assert!(status.success(), "scripts/jaeger-fetch failed");
    let home = std::env::var("HOME").expect("HOME");
    let cache = std::env::var("CLEW_CACHE").unwrap_or_else(|_| format!("{home}/.cache/clew"));
    let version = std::env::var("JAEGER_VERSION").unwrap_or_else(|_| "v1.76.0".into());
    PathBuf::from(cache).join(format!("jaeger-{version}/jaeger"))
}

/// `jaeger --config <config>`, its own telemetry off (Jaeger traces itself over OTLP to
/// localhost:4317 by default: not here), stdout dropped, stderr to the test's. The caller
/// adds the port variables its config reads and spawns it.
pub fn command(config: &str) -> Command {
    let mut cmd = Command::new(binary());
    cmd.args(["--config", config])
        .env("OTEL_SDK_DISABLED", "true")
        .env("OTEL_TRACES_EXPORTER", "none")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    cmd
}
