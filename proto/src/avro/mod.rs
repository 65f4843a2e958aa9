//! The Avro span format: what a clew agent writes to Kafka and a collector reads back.
//!
//! ```text
//!  [Span] ──encode_batch──▶ C3 01 │ fingerprint (8 B, LE) │ SpanBatch datum   (Kafka value)
//!                                   record_key(span) = 16-byte trace id        (Kafka key)
//!  bytes ──decode_batch──▶ marker? ─▶ writer schema by fingerprint
//!        ├─ v1 (this build's schema) ─▶ v1::decode: bytes straight into the OTLP request
//!        └─ any other known version ─▶ generic: bounds pre-scan, apache-avro Value tree
//!        ─▶ from_otlp::convert_request (same validation, repairs and limits as OTLP)
//! ```
//!
//! Two implementations of one contract:
//! - [`v1`] is a codec written for exactly `span_batch_v1.avsc`: it encodes straight from
//!   the span model and decodes straight into the OTLP request, with no intermediate
//!   `apache_avro::types::Value` tree (which cost ~70% of the Kafka ingest CPU). It is what
//!   records written with v1, the only version so far, go through.
//! - [`generic`] walks apache-avro's `Value` tree against whatever schema the record names:
//!   the path for records of another known version (schema evolution), and the reference
//!   the v1 codec is tested against byte for byte.
//!
//! The schema file `proto/schemas/span_batch_v1.avsc` is the contract (an independent
//! implementation, e.g. Python `fastavro`, reads and writes it); this module is one
//! implementation of it. Records use Avro *single-object encoding*, so every record names
//! the exact schema it was written with and readers resolve old records against the newest
//! schema they know. Evolution rules: `proto/schemas/README.md` and
//! `docs/adr/0005-avro-wire-format.md`.
//!
//! Robustness (`docs/robustness.md` input 20): both decoders refuse, before allocating,
//! every string/bytes length and every array block count that does not fit in the bytes
//! that are left, nonexistent union branches, nesting deeper than a cap, and bytes after
//! the datum. The v1 decoder checks as it reads; for the generic one (apache-avro trusts
//! declared lengths up to 512 MiB, reserves capacity from declared counts and recurses
//! per nesting level) the bytes are first walked against the writer schema without
//! allocating (nesting capped at [`MAX_SCHEMA_DEPTH`]). A record that fails is an error,
//! never an allocation of what it claims.

mod generic;
mod reader;
pub mod v1;

use std::sync::{Arc, OnceLock};

use apache_avro::rabin::Rabin;
use apache_avro::schema::Schema;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use crate::from_otlp::{convert_request_with, Converted, Limits};
use crate::model::{BusinessKey, Span};

/// The published v1 schema (`proto/schemas/span_batch_v1.avsc`).
pub const SCHEMA_V1: &str = include_str!("../../schemas/span_batch_v1.avsc");

/// The two marker bytes that open an Avro single-object-encoded record.
pub const SINGLE_OBJECT_MARKER: [u8; 2] = [0xC3, 0x01];

/// Marker + 8-byte fingerprint.
pub const HEADER_LEN: usize = 10;

/// Deepest schema nesting the generic decoder walks (an AnyValue nesting level costs 4).
pub const MAX_SCHEMA_DEPTH: usize = 128;
/// Deepest array/map nesting of one attribute value the v1 decoder reads (the same
/// allowance [`MAX_SCHEMA_DEPTH`] gives the generic one; validation then cuts values to
/// `Limits::max_nesting_depth`).
pub const MAX_VALUE_NESTING: usize = 28;

/// Why an Avro record could not be decoded (or, for a bug, encoded).
#[derive(Debug, thiserror::Error)]
pub enum AvroError {
    #[error("avro record is {0} bytes, shorter than the 10-byte single-object header")]
    TooShort(usize),
    #[error("not an avro single-object record: expected marker c3 01, got {0:02x} {1:02x}")]
    BadMagic(u8, u8),
    #[error("unknown avro schema fingerprint {0:016x} (known: {1})")]
    UnknownFingerprint(u64, String),
    #[error("malformed avro datum at byte {offset}: {what}")]
    Malformed { offset: usize, what: String },
    #[error("avro datum does not match the span batch schema: {0}")]
    Shape(String),
    #[error("invalid avro schema: {0}")]
    Schema(String),
    #[error("avro: {0}")]
    Avro(#[from] Box<apache_avro::Error>),
}

/// The Kafka record key for a span: its trace id, so all spans of a trace land in one
/// partition (and so one collector sees a trace's spans in order).
pub fn record_key(span: &Span) -> [u8; 16] {
    span.trace_id.0
}

/// CRC-64-AVRO (Rabin) fingerprint of a schema's parsing canonical form, as the `u64` whose
/// little-endian bytes follow the marker.
pub fn fingerprint(schema: &Schema) -> u64 {
    let fp = schema.fingerprint::<Rabin>();
    let bytes: [u8; 8] = fp.bytes[..8].try_into().expect("rabin digest is 8 bytes");
    u64::from_le_bytes(bytes)
}

/// A set of known schema versions: the newest is written and is the reader schema that
/// every older record is resolved to.
pub struct Codec {
    known: Vec<(u64, Schema)>,
}

impl Codec {
    /// Parses schema versions, oldest first. The last one is the current (writer/reader)
    /// schema.
    pub fn new(versions: &[&str]) -> Result<Self, AvroError> {
        let mut known = Vec::with_capacity(versions.len());
        for text in versions {
            let schema = Schema::parse_str(text).map_err(|e| AvroError::Schema(e.to_string()))?;
            known.push((fingerprint(&schema), schema));
        }
        if known.is_empty() {
            return Err(AvroError::Schema("no schema versions given".into()));
        }
        Ok(Codec { known })
    }

    /// The codec of this build: knows v1.
    pub fn current() -> &'static Codec {
        static CODEC: OnceLock<Codec> = OnceLock::new();
        CODEC.get_or_init(|| Codec::new(&[SCHEMA_V1]).expect("the v1 schema parses"))
    }

    fn current_schema(&self) -> &(u64, Schema) {
        self.known.last().expect("at least one schema")
    }

    /// Fingerprint written into new records.
    pub fn writer_fingerprint(&self) -> u64 {
        self.current_schema().0
    }

    /// Encodes spans as one single-object record. Consecutive spans sharing a resource
    /// (and scope) are grouped under it, as in OTLP.
    pub fn encode(&self, spans: &[Span]) -> Result<Vec<u8>, AvroError> {
        let (fp, _) = self.current_schema();
        if *fp == v1::fingerprint() {
            let mut out = Vec::with_capacity(HEADER_LEN + spans.len() * 512);
            out.extend_from_slice(&SINGLE_OBJECT_MARKER);
            out.extend_from_slice(&fp.to_le_bytes());
            v1::encode(spans, &mut out);
            return Ok(out);
        }
        self.encode_via_value_tree(spans)
    }

    /// [`Codec::encode`] through apache-avro's `Value` tree and the current schema, whatever
    /// it is: the reference the v1 codec is tested and benchmarked against.
    #[doc(hidden)]
    pub fn encode_via_value_tree(&self, spans: &[Span]) -> Result<Vec<u8>, AvroError> {
        let (fp, schema) = self.current_schema();
        let datum =
            apache_avro::to_avro_datum(schema, generic::batch_value(spans)).map_err(Box::new)?;
        let mut out = Vec::with_capacity(HEADER_LEN + datum.len());
        out.extend_from_slice(&SINGLE_OBJECT_MARKER);
        out.extend_from_slice(&fp.to_le_bytes());
        out.extend_from_slice(&datum);
        Ok(out)
    }

    /// Decodes one record into the OTLP request it carries, plus what clew adds per span
    /// (business keys, repair flags), in span order. No validation yet.
    pub fn decode_request(&self, bytes: &[u8]) -> Result<DecodedRequest, AvroError> {
        let (fp, writer) = self.writer_of(bytes)?;
        let datum = &bytes[HEADER_LEN..];
        if fp == v1::fingerprint() {
            return v1::decode(datum).map_err(past_header);
        }
        generic::decode(writer, datum).map_err(past_header)
    }

    /// [`Codec::decode_request`] through apache-avro's `Value` tree whatever the writer
    /// schema: the reference the v1 codec is tested and benchmarked against.
    #[doc(hidden)]
    pub fn decode_request_via_value_tree(&self, bytes: &[u8]) -> Result<DecodedRequest, AvroError> {
        let (_, writer) = self.writer_of(bytes)?;
        generic::decode(writer, &bytes[HEADER_LEN..]).map_err(past_header)
    }

    /// The header checked, the writer schema of the record by its fingerprint.
    fn writer_of(&self, bytes: &[u8]) -> Result<(u64, &Schema), AvroError> {
        if bytes.len() < HEADER_LEN {
            if bytes.len() >= 2 && bytes[..2] != SINGLE_OBJECT_MARKER {
                return Err(AvroError::BadMagic(bytes[0], bytes[1]));
            }
            return Err(AvroError::TooShort(bytes.len()));
        }
        if bytes[..2] != SINGLE_OBJECT_MARKER {
            return Err(AvroError::BadMagic(bytes[0], bytes[1]));
        }
        let fp = u64::from_le_bytes(bytes[2..10].try_into().expect("8 bytes"));
        let writer = self
            .known
            .iter()
            .find(|(k, _)| *k == fp)
            .map(|(_, s)| s)
            .ok_or_else(|| {
                let known: Vec<String> = self
                    .known
                    .iter()
                    .map(|(k, _)| format!("{k:016x}"))
                    .collect();
                AvroError::UnknownFingerprint(fp, known.join(", "))
            })?;
        Ok((fp, writer))
    }

    /// Decodes one record and validates its spans exactly like OTLP input
    /// ([`convert_request`]): bad spans are rejected alone, with a reason.
    pub fn decode(
        &self,
        bytes: &[u8],
        limits: &Limits,
        now_unix_nano: u64,
    ) -> Result<Converted, AvroError> {
        let DecodedRequest { request, extras } = self.decode_request(bytes)?;
        Ok(convert_request_with(
            request,
            limits,
            now_unix_nano,
            extras,
            |span, extra| {
                span.repairs |= extra.repairs;
                span.business_keys = extra.business_keys;
            },
        ))
    }
}

/// `AnyValue.value` union branches, in schema order.
pub(crate) const U_NULL: u32 = 0;
pub(crate) const U_STRING: u32 = 1;
pub(crate) const U_BOOL: u32 = 2;
pub(crate) const U_LONG: u32 = 3;
pub(crate) const U_DOUBLE: u32 = 4;
pub(crate) const U_BYTES: u32 = 5;
pub(crate) const U_ARRAY: u32 = 6;
pub(crate) const U_KVLIST: u32 = 7;

/// Offsets of datum errors counted from the start of the record.
fn past_header(e: AvroError) -> AvroError {
    match e {
        AvroError::Malformed { offset, what } => AvroError::Malformed {
            offset: offset + HEADER_LEN,
            what,
        },
        other => other,
    }
}

/// Whether two spans share a resource or scope (the same `Arc`, or equal values).
fn same<T: PartialEq>(a: &Arc<T>, b: &Arc<T>) -> bool {
    Arc::ptr_eq(a, b) || **a == **b
}

/// Consecutive spans sharing a resource, as OTLP groups them (scopes within: [`scope_groups`]).
fn resource_groups(spans: &[Span]) -> impl Iterator<Item = &[Span]> {
    groups(spans, |a, b| same(&a.resource, &b.resource))
}

/// Consecutive spans of one resource group sharing a scope.
fn scope_groups(spans: &[Span]) -> impl Iterator<Item = &[Span]> {
    groups(spans, |a, b| same(&a.scope, &b.scope))
}

fn groups(spans: &[Span], same: impl Fn(&Span, &Span) -> bool) -> impl Iterator<Item = &[Span]> {
    let mut rest = spans;
    std::iter::from_fn(move || {
        let first = rest.first()?;
        let n = rest.iter().take_while(|s| same(first, s)).count();
        let (group, tail) = rest.split_at(n);
        rest = tail;
        Some(group)
    })
}

/// What one record carries before validation.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedRequest {
    pub request: ExportTraceServiceRequest,
    /// Per span, in the order of `request`'s spans.
    pub extras: Vec<SpanExtras>,
}

/// The fields clew adds to an OTLP span.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpanExtras {
    pub business_keys: Vec<BusinessKey>,
    pub repairs: u32,
}

/// Encodes spans with the current schema (see [`Codec::encode`]).
pub fn encode_batch(spans: &[Span]) -> Vec<u8> {
    Codec::current()
        .encode(spans)
        .expect("span batch values are built to match the v1 schema")
}

/// Decodes and validates one record with the current schema set (see [`Codec::decode`]).
pub fn decode_batch(
    bytes: &[u8],
    limits: &Limits,
    now_unix_nano: u64,
) -> Result<Converted, AvroError> {
    Codec::current().decode(bytes, limits, now_unix_nano)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_marker_and_fingerprint() {
        let bytes = encode_batch(&[]);
        assert_eq!(bytes[..2], SINGLE_OBJECT_MARKER);
        assert_eq!(
            u64::from_le_bytes(bytes[2..10].try_into().unwrap()),
            Codec::current().writer_fingerprint()
        );
        assert_eq!(Codec::current().writer_fingerprint(), v1::fingerprint());
    }
}
