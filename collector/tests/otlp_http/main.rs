//! OTLP/HTTP receiver over real sockets with reqwest (`docs/robustness.md`: inputs 1–8, OTLP answers),
//! by topic: what is accepted and stored, what bad input is refused and how, and how
//! back-pressure and store failures reach the client.

#[path = "../common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clew_proto::otlp::collector::trace::v1::ExportTraceServiceResponse;
use clew_proto::otlp::common::v1::{any_value::Value, AnyValue, ArrayValue, KeyValue};
use common::*;
use prost::Message;
use reqwest::StatusCode;

const PB: &str = "application/x-protobuf";

async fn post(
    h: &Harness,
    content_type: Option<&str>,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new().post(h.http_url()).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    if let Some(ce) = encoding {
        req = req.header("content-encoding", ce);
    }
    req.send().await.expect("request sent")
}

async fn pb_response(resp: reqwest::Response) -> ExportTraceServiceResponse {
    assert_eq!(resp.headers()["content-type"], PB);
    ExportTraceServiceResponse::decode(resp.bytes().await.unwrap()).unwrap()
}

/// Decodes an OTLP/HTTP protobuf error body (`google.rpc.Status`).
async fn pb_status(resp: reqwest::Response) -> tonic_types::Status {
    tonic_types::Status::decode(resp.bytes().await.unwrap()).expect("google.rpc.Status body")
}

fn small_limit_config() -> clew_collector::CollectorConfig {
    clew_collector::CollectorConfig {
        max_request_bytes: 64 * 1024,
        ..test_config()
    }
}

mod accepted;
mod backpressure;
mod refused;
