//! Request bodies → validated spans: content negotiation, bounded gzip decompression,
//! protobuf and OTLP/JSON decoding.
//!
//! Decisions (`docs/robustness.md`, inputs 1–8):
//!
//! - **Size**: `max_request_bytes` bounds the *decompressed* body. Decompression streams
//!   through a reader capped at the limit and stops as soon as it is crossed, so a
//!   decompression bomb costs at most about the limit in memory and never more.
//! - **Protobuf** is decoded straight into the span model by
//!   [`clew_proto::from_otlp::decode_request`] (no generated request in between), which
//!   refuses what prost refuses: every length is checked against the bytes actually present
//!   (no allocation from a declared length), and 100 levels of nesting stop it with an
//!   error instead of overflowing the stack.
//! - **Invalid UTF-8 costs no span**: the invalid bytes of a protobuf string are replaced
//!   by U+FFFD and the spans that had some flagged (`repair::INVALID_UTF8`, counted in
//!   `clew_collector_spans_repaired_total`), where prost would refuse the whole request.
//!   JSON must be UTF-8 text to be JSON at all: a JSON body that is not is refused.
//! - **JSON** follows the OTLP/JSON mapping: hex ids in either case, enums as integers,
//!   64-bit integers as strings or numbers, unknown fields ignored, serde_json's recursion
//!   limit (128) refuses absurd nesting. The generated serde code is strict in a few places
//!   where the mapping is lenient (`null` fields, a `KeyValue` without `key`, an
//!   `arrayValue` without `values`, a malformed hex id which would otherwise fail the whole
//!   request); when the fast path fails, the body is normalized ([`normalize_json`]) and
//!   decoded again, so that a bad id rejects only its span.

use std::io::Read;

use bytes::Bytes;
use flate2::read::MultiGzDecoder;
use prost::Message;
use serde_json::Value;

use crate::error::{Error, Result};
use clew_proto::from_otlp::{convert_request, decode_request, Converted, Limits};
use clew_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;

/// How an OTLP/HTTP body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    Json,
}

impl Format {
    /// Content type of responses in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }

    /// Parses a `Content-Type` header, ignoring parameters such as `charset`.
    pub fn from_content_type(header: Option<&str>) -> Result<Format> {
        let Some(header) = header else {
            return Err(Error::UnsupportedMediaType(
                "missing Content-Type; use application/x-protobuf or application/json".into(),
            ));
        };
        let essence = header.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case("application/x-protobuf") {
            Ok(Format::Protobuf)
        } else if essence.eq_ignore_ascii_case("application/json") {
            Ok(Format::Json)
        } else {
            Err(Error::UnsupportedMediaType(format!(
                "unsupported Content-Type {:?}; use application/x-protobuf or application/json",
                truncate_for_message(header)
            )))
        }
    }
}

/// How an OTLP/HTTP body is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

impl Compression {
    /// Parses a `Content-Encoding` header (`gzip`, `identity`, or none).
    pub fn from_content_encoding(header: Option<&str>) -> Result<Compression> {
        match header.map(str::trim) {
            None | Some("") => Ok(Compression::None),
            Some(h) if h.eq_ignore_ascii_case("identity") => Ok(Compression::None),
            Some(h) if h.eq_ignore_ascii_case("gzip") || h.eq_ignore_ascii_case("x-gzip") => {
                Ok(Compression::Gzip)
            }
            Some(h) => Err(Error::UnsupportedMediaType(format!(
                "unsupported Content-Encoding {:?}; use gzip or none",
                truncate_for_message(h)
            ))),
        }
    }
}

fn truncate_for_message(s: &str) -> String {
    s.chars().take(100).collect()
}

/// Decompresses (if needed) and decodes one body into spans validated against `limits`.
/// CPU-heavy: call it off the reactor for large bodies.
pub fn decode_body(
    body: Bytes,
    compression: Compression,
    format: Format,
    limit_bytes: usize,
    limits: &Limits,
    now_unix_nano: u64,
) -> Result<Converted> {
    let plain = decompress_bounded(body, compression, limit_bytes)?;
    decode_plain(&plain, format, limits, now_unix_nano)
}

/// The request body as sent, decompressed, never larger than `limit_bytes`
/// ([`Error::TooLarge`] otherwise).
pub fn decompress_bounded(
    body: Bytes,
    compression: Compression,
    limit_bytes: usize,
) -> Result<Bytes> {
    match compression {
        Compression::None if body.len() > limit_bytes => Err(Error::TooLarge { limit_bytes }),
        Compression::None => Ok(body),
        Compression::Gzip => Ok(Bytes::from(gunzip_bounded(&body, limit_bytes)?)),
    }
}

/// Decompresses gzip (one or more members), failing with [`Error::TooLarge`] as soon as
/// the output would pass `limit_bytes`. The output buffer grows to at most `limit_bytes + 1`.
pub fn gunzip_bounded(compressed: &[u8], limit_bytes: usize) -> Result<Vec<u8>> {
    const CHUNK: usize = 64 * 1024;
    let mut reader = MultiGzDecoder::new(compressed).take(limit_bytes as u64 + 1);
    let mut out: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::decode("gzip body", e)),
        };
        if out.len() + n > limit_bytes {
            return Err(Error::TooLarge { limit_bytes });
        }
        if out.capacity() - out.len() < n {
            // Double, but never past the limit: memory stays near the limit.
            let want = out.len().max(CHUNK).min(limit_bytes + 1 - out.len()).max(n);
            out.reserve_exact(want);
        }
        out.extend_from_slice(&chunk[..n]);
    }
    Ok(out)
}

/// Decodes an uncompressed body into spans validated against `limits` (rejected ones
/// listed with their reason); see the module docs for invalid UTF-8.
pub fn decode_plain(
    bytes: &[u8],
    format: Format,
    limits: &Limits,
    now_unix_nano: u64,
) -> Result<Converted> {
    match format {
        Format::Protobuf => decode_request(bytes, limits, now_unix_nano)
            .map_err(|e| Error::decode("protobuf ExportTraceServiceRequest", e)),
        Format::Json => Ok(convert_request(decode_json(bytes)?, limits, now_unix_nano)),
    }
}

/// OTLP/JSON → request; see the module docs for the lenient second pass.
pub fn decode_json(bytes: &[u8]) -> Result<ExportTraceServiceRequest> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(ExportTraceServiceRequest::default());
    }
    let first_err = match serde_json::from_slice::<ExportTraceServiceRequest>(bytes) {
        Ok(req) => return Ok(req),
        Err(e) => e,
    };
    // Syntax errors (and nesting past the recursion limit) fail here already.
    let mut value: Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::decode("json ExportTraceServiceRequest", e))?;
    if !normalize_json(&mut value) {
        return Err(Error::decode("json ExportTraceServiceRequest", first_err));
    }
    serde_json::from_value(value).map_err(|e| Error::decode("json ExportTraceServiceRequest", e))
}

/// Rewrites the places where the generated serde code is stricter than OTLP/JSON.
/// Returns whether anything changed.
pub fn normalize_json(value: &mut Value) -> bool {
    let mut changed = false;
    walk(value, None, &mut changed);
    changed
}

fn walk(value: &mut Value, key: Option<&str>, changed: &mut bool) {
    match value {
        Value::Object(map) => {
            let before = map.len();
            map.retain(|_, v| !v.is_null());
            *changed |= map.len() != before;
            for id_key in ["traceId", "spanId", "parentSpanId"] {
                if let Some(v) = map.get_mut(id_key) {
                    if !is_hex_id(v) {
                        // An empty trace/span id rejects just this span in the conversion;
                        // a 1-byte parent id is dropped there and the span flagged.
                        *v = Value::String(if id_key == "parentSpanId" {
                            "00".into()
                        } else {
                            String::new()
                        });
                        *changed = true;
                    }
                }
            }
            for wrapper in ["arrayValue", "kvlistValue"] {
                if let Some(Value::Object(inner)) = map.get_mut(wrapper) {
                    if !inner.contains_key("values") {
                        inner.insert("values".into(), Value::Array(Vec::new()));
                        *changed = true;
                    }
                }
            }
            for (k, v) in map.iter_mut() {
                walk(v, Some(k.as_str()), changed);
            }
        }
        Value::Array(items) => {
            // Elements of `attributes` and of a kvlist's `values` are KeyValues.
            let key_values = matches!(key, Some("attributes"));
            for item in items.iter_mut() {
                if key_values {
                    if let Value::Object(kv) = item {
                        if !kv.contains_key("key") {
                            kv.insert("key".into(), Value::String(String::new()));
                            *changed = true;
                        }
                    }
                }
                walk(item, None, changed);
            }
        }
        _ => {}
    }
}

fn is_hex_id(v: &Value) -> bool {
    match v {
        Value::String(s) => s.len() % 2 == 0 && s.bytes().all(|b| b.is_ascii_hexdigit()),
        _ => false,
    }
}

/// Encodes a response in the request's format.
pub fn encode_response<M: Message + serde::Serialize>(msg: &M, format: Format) -> Vec<u8> {
    match format {
        Format::Protobuf => msg.encode_to_vec(),
        Format::Json => serde_json::to_vec(msg).unwrap_or_else(|_| b"{}".to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn content_types() {
        assert_eq!(
            Format::from_content_type(Some("application/json; charset=utf-8")).unwrap(),
            Format::Json
        );
        assert_eq!(
            Format::from_content_type(Some("Application/X-Protobuf")).unwrap(),
            Format::Protobuf
        );
        assert!(matches!(
            Format::from_content_type(Some("text/plain")),
            Err(Error::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            Format::from_content_type(None),
            Err(Error::UnsupportedMediaType(_))
        ));
        assert_eq!(
            Compression::from_content_encoding(Some("GZIP")).unwrap(),
            Compression::Gzip
        );
        assert!(Compression::from_content_encoding(Some("br")).is_err());
    }

    #[test]
    fn gunzip_stops_at_limit() {
        let bomb = gzip(&vec![0u8; 8 * 1024 * 1024]);
        assert!(bomb.len() < 64 * 1024);
        assert!(matches!(
            gunzip_bounded(&bomb, 1024 * 1024),
            Err(Error::TooLarge { .. })
        ));
        let ok = gunzip_bounded(&gzip(b"hello"), 5).unwrap();
        assert_eq!(ok, b"hello");
        assert!(matches!(
            gunzip_bounded(&gzip(b"hello!"), 5),
            Err(Error::TooLarge { .. })
        ));
        assert!(matches!(
            gunzip_bounded(b"not gzip at all", 1024),
            Err(Error::Decode { .. })
        ));
        let mut corrupt = gzip(b"hello world hello world");
        let n = corrupt.len();
        corrupt[n / 2] ^= 0xff;
        corrupt.truncate(n - 3);
        assert!(matches!(
            gunzip_bounded(&corrupt, 1024),
            Err(Error::Decode { .. })
        ));
    }

    #[test]
    fn json_ids_any_case_and_string_ints() {
        let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{
            "traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174",
            "name":"x","kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":1700000000000001000,
            "attributes":[{"key":"n","value":{"intValue":"42"}}],"someFutureField":{"a":1}}]}]}]}"#;
        let req = decode_json(body).unwrap();
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(
            hex::encode(&span.trace_id),
            "5b8efff798038103d269b633813fc60c"
        );
        assert_eq!(span.start_time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(span.end_time_unix_nano, 1_700_000_000_000_001_000);
        assert_eq!(span.kind, 2);
    }

    #[test]
    fn json_bad_id_and_nulls_are_normalized() {
        let body = br#"{"resourceSpans":[{"resource":null,"scopeSpans":[{"spans":[
            {"traceId":"zz","spanId":"eee19b7ec3c1b174","parentSpanId":"xyz","name":"bad"},
            {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b175","name":"good",
             "attributes":[{"value":{"arrayValue":{}}}]}]}]}]}"#;
        let req = decode_json(body).unwrap();
        let spans = &req.resource_spans[0].scope_spans[0].spans;
        assert!(spans[0].trace_id.is_empty());
        assert_eq!(spans[0].parent_span_id, vec![0]);
        assert_eq!(spans[1].trace_id.len(), 16);
    }

    #[test]
    fn json_garbage_and_deep_nesting_fail_cleanly() {
        assert!(matches!(
            decode_json(b"{not json"),
            Err(Error::Decode { .. })
        ));
        let mut deep = String::from(
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[{"key":"k","value":"#,
        );
        for _ in 0..100_000 {
            deep.push_str(r#"{"arrayValue":{"values":["#);
        }
        assert!(matches!(
            decode_json(deep.as_bytes()),
            Err(Error::Decode { .. })
        ));
        assert_eq!(
            decode_json(b"  ").unwrap(),
            ExportTraceServiceRequest::default()
        );
        assert_eq!(
            decode_json(b"{}").unwrap(),
            ExportTraceServiceRequest::default()
        );
    }

    #[test]
    fn protobuf_garbage_fails_cleanly() {
        let protobuf = |bytes: &[u8]| decode_plain(bytes, Format::Protobuf, &Limits::default(), 0);
        // field 1, length-delimited, declared length far past the end
        assert!(matches!(
            protobuf(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2]),
            Err(Error::Decode { .. })
        ));
        assert!(matches!(protobuf(&[0xff; 64]), Err(Error::Decode { .. })));
        assert_eq!(protobuf(&[]).unwrap().total(), 0);
    }
}
