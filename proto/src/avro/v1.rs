//! The codec written for exactly `span_batch_v1.avsc`: spans are encoded straight from the
//! model into Avro binary, and records decoded straight from the bytes into the OTLP
//! request, field by field in schema order — no `apache_avro::types::Value` tree, no
//! field-name maps, no per-value boxing.
//!
//! Avro binary, as this schema uses it: `long`/`int` are zig-zag varints, `string`/`bytes`
//! a length then the bytes, `fixed` the raw bytes, `double` 8 bytes little-endian,
//! `boolean` one byte, a union its branch index then the value, an array blocks of
//! `count, items…` ended by a zero count (a negative count is followed by the block's byte
//! size). The encoder writes what apache-avro writes (one block per non-empty array), which
//! `generic` checks byte for byte in the tests.
//!
//! Hostile input: every length and block count is checked against the bytes left before
//! anything is allocated for it, attribute values nest at most [`MAX_VALUE_NESTING`] deep,
//! union branches and booleans must exist, strings must be UTF-8, and the datum must end
//! exactly where the record ends.

use std::sync::OnceLock;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource as OtlpResource;
use opentelemetry_proto::tonic::trace::v1 as otlp;

use super::reader::Reader;
use super::{
    fingerprint as schema_fingerprint, resource_groups, scope_groups, AvroError, DecodedRequest,
    SpanExtras, MAX_VALUE_NESTING, SCHEMA_V1, U_ARRAY, U_BOOL, U_BYTES, U_DOUBLE, U_KVLIST, U_LONG,
    U_NULL, U_STRING,
};
use crate::model::{
    any_value, AnyValue, ArrayValue, BusinessKey, Event, KeyValue, KeyValueList, Link, Span,
};

/// Fingerprint of the v1 schema: records carrying it are this codec's.
pub fn fingerprint() -> u64 {
    static FP: OnceLock<u64> = OnceLock::new();
    *FP.get_or_init(|| {
        let schema = apache_avro::Schema::parse_str(SCHEMA_V1).expect("the v1 schema parses");
        schema_fingerprint(&schema)
    })
}

// ---------------------------------------------------------------- encode

/// Appends the v1 datum of `spans` (no header) to `out`.
pub fn encode(spans: &[Span], out: &mut Vec<u8>) {
    let mut w = Writer(out);
    let resources: Vec<&[Span]> = resource_groups(spans).collect();
    w.array(resources.into_iter(), |w, group| {
        let resource = &group[0].resource;
        w.attributes(&resource.attributes);
        w.long(resource.dropped_attributes_count as i64);
        w.string(&resource.schema_url);
        let scopes: Vec<&[Span]> = scope_groups(group).collect();
        w.array(scopes.into_iter(), |w, group| {
            let scope = &group[0].scope;
            w.string(&scope.name);
            w.string(&scope.version);
            w.attributes(&scope.attributes);
            w.long(scope.dropped_attributes_count as i64);
            w.string(&scope.schema_url);
            w.array(group.iter(), |w, span| w.span(span));
        });
    });
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn long(&mut self, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            self.0.push((z as u8) | 0x80);
            z >>= 7;
        }
        self.0.push(z as u8);
    }

    fn bytes(&mut self, b: &[u8]) {
        self.long(b.len() as i64);
        self.0.extend_from_slice(b);
    }

    fn string(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    /// One block holding every item (none for an empty array), then the end marker.
    fn array<T>(
        &mut self,
        items: impl ExactSizeIterator<Item = T>,
        mut item: impl FnMut(&mut Self, T),
    ) {
        if items.len() > 0 {
            self.long(items.len() as i64);
            for i in items {
                item(self, i);
            }
        }
        self.0.push(0);
    }

    fn attributes(&mut self, attrs: &[KeyValue]) {
        self.array(attrs.iter(), |w, kv| w.key_value(kv));
    }

    fn key_value(&mut self, kv: &KeyValue) {
        self.string(&kv.key);
        self.any_value(kv.value.as_ref());
    }

    fn any_value(&mut self, v: Option<&AnyValue>) {
        use any_value::Value as V;
        match v.and_then(|v| v.value.as_ref()) {
            // StringValueStrindex only means something in OTLP profiles; traces never carry it.
            None | Some(V::StringValueStrindex(_)) => self.long(U_NULL as i64),
            Some(V::StringValue(s)) => {
                self.long(U_STRING as i64);
                self.string(s);
            }
            Some(V::BoolValue(b)) => {
                self.long(U_BOOL as i64);
                self.0.push(*b as u8);
            }
            Some(V::IntValue(i)) => {
                self.long(U_LONG as i64);
                self.long(*i);
            }
            Some(V::DoubleValue(d)) => {
                self.long(U_DOUBLE as i64);
                self.0.extend_from_slice(&d.to_le_bytes());
            }
            Some(V::BytesValue(b)) => {
                self.long(U_BYTES as i64);
                self.bytes(b);
            }
            Some(V::ArrayValue(a)) => {
                self.long(U_ARRAY as i64);
                self.array(a.values.iter(), |w, x| w.any_value(Some(x)));
            }
            Some(V::KvlistValue(l)) => {
                self.long(U_KVLIST as i64);
                self.attributes(&l.values);
            }
        }
    }

    fn span(&mut self, sp: &Span) {
        self.0.extend_from_slice(&sp.trace_id.0);
        self.0.extend_from_slice(&sp.span_id.0);
        match &sp.parent_span_id {
            Some(p) => {
                self.long(1);
                self.0.extend_from_slice(&p.0);
            }
            None => self.long(0),
        }
        self.string(&sp.trace_state);
        self.long(sp.flags as i64);
        self.string(&sp.name);
        self.long(sp.kind.as_i32() as i64);
        // fixed64 as its two's-complement bit pattern; see the schema doc
        self.long(sp.start_unix_nano as i64);
        self.long(sp.end_unix_nano as i64);
        self.attributes(&sp.attributes);
        self.long(sp.dropped_attributes_count as i64);
        self.array(sp.events.iter(), |w, e| {
            w.long(e.time_unix_nano as i64);
            w.string(&e.name);
            w.attributes(&e.attributes);
            w.long(e.dropped_attributes_count as i64);
        });
        self.long(sp.dropped_events_count as i64);
        self.array(sp.links.iter(), |w, l| {
            w.bytes(&l.trace_id);
            w.bytes(&l.span_id);
            w.string(&l.trace_state);
            w.attributes(&l.attributes);
            w.long(l.dropped_attributes_count as i64);
            w.long(l.flags as i64);
        });
        self.long(sp.dropped_links_count as i64);
        self.long(sp.status_code.as_i32() as i64);
        self.string(&sp.status_message);
        self.array(sp.business_keys.iter(), |w, k| {
            w.string(&k.name);
            w.string(&k.value);
        });
        self.long(sp.repairs as i64);
    }
}

// ---------------------------------------------------------------- decode

/// Decodes a v1 datum (no header). Offsets in errors count from the datum's start.
pub fn decode(datum: &[u8]) -> Result<DecodedRequest, AvroError> {
    let mut r = Reader::new(datum);
    let mut extras = Vec::new();
    let resource_spans = r.array(|r| r.resource_spans(&mut extras))?;
    r.finish()?;
    Ok(DecodedRequest {
        request: ExportTraceServiceRequest { resource_spans },
        extras,
    })
}

fn shape(what: String) -> AvroError {
    AvroError::Shape(what)
}

/// What this schema reads beyond the primitives of [`Reader`].
impl Reader<'_> {
    fn int(&mut self, name: &str) -> Result<i32, AvroError> {
        let v = self.long()?;
        i32::try_from(v).map_err(|_| self.err(format!("{name}: int {v} out of range")))
    }

    /// A `long` field OTLP holds as uint32.
    fn u32(&mut self, name: &str) -> Result<u32, AvroError> {
        let v = self.long()?;
        u32::try_from(v).map_err(|_| shape(format!("{name}: {v} is outside 0..=4294967295")))
    }

    fn bytes(&mut self) -> Result<Vec<u8>, AvroError> {
        Ok(self.sized("bytes")?.to_vec())
    }

    fn string(&mut self) -> Result<String, AvroError> {
        Ok(self.str()?.to_owned())
    }

    fn fixed<const N: usize>(&mut self, what: &str) -> Result<[u8; N], AvroError> {
        Ok(self.take(N, what)?.try_into().expect("N bytes"))
    }

    fn double(&mut self) -> Result<f64, AvroError> {
        Ok(f64::from_le_bytes(self.fixed::<8>("double")?))
    }

    fn array<T>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<T, AvroError>,
    ) -> Result<Vec<T>, AvroError> {
        let mut out = Vec::new();
        loop {
            let count = self.block()?;
            if count == 0 {
                return Ok(out);
            }
            out.reserve(count);
            for _ in 0..count {
                out.push(item(self)?);
            }
        }
    }

    fn attributes(&mut self, depth: usize) -> Result<Vec<KeyValue>, AvroError> {
        self.array(|r| {
            Ok(KeyValue {
                key: r.string()?,
                value: Some(r.any_value(depth)?),
                ..Default::default()
            })
        })
    }

    fn any_value(&mut self, depth: usize) -> Result<AnyValue, AvroError> {
        use any_value::Value as V;
        let value = match self.branch(U_KVLIST as usize + 1)? as u32 {
            U_NULL => None,
            U_STRING => Some(V::StringValue(self.string()?)),
            U_BOOL => Some(V::BoolValue(self.boolean()?)),
            U_LONG => Some(V::IntValue(self.long()?)),
            U_DOUBLE => Some(V::DoubleValue(self.double()?)),
            U_BYTES => Some(V::BytesValue(self.bytes()?)),
            branch => {
                if depth >= MAX_VALUE_NESTING {
                    return Err(self.err(format!(
                        "attribute value nested deeper than {MAX_VALUE_NESTING} levels"
                    )));
                }
                if branch == U_ARRAY {
                    Some(V::ArrayValue(ArrayValue {
                        values: self.array(|r| r.any_value(depth + 1))?,
                    }))
                } else {
                    Some(V::KvlistValue(KeyValueList {
                        values: self.attributes(depth + 1)?,
                    }))
                }
            }
        };
        Ok(AnyValue { value })
    }

    fn resource_spans(
        &mut self,
        extras: &mut Vec<SpanExtras>,
    ) -> Result<otlp::ResourceSpans, AvroError> {
        let resource = OtlpResource {
            attributes: self.attributes(0)?,
            dropped_attributes_count: self.u32("dropped_attributes_count")?,
            ..Default::default()
        };
        let schema_url = self.string()?;
        let scope_spans = self.array(|r| r.scope_spans(extras))?;
        Ok(otlp::ResourceSpans {
            resource: Some(resource),
            schema_url,
            scope_spans,
        })
    }

    fn scope_spans(&mut self, extras: &mut Vec<SpanExtras>) -> Result<otlp::ScopeSpans, AvroError> {
        let scope = InstrumentationScope {
            name: self.string()?,
            version: self.string()?,
            attributes: self.attributes(0)?,
            dropped_attributes_count: self.u32("dropped_attributes_count")?,
        };
        let schema_url = self.string()?;
        let spans = self.array(|r| {
            let (span, extra) = r.span()?;
            extras.push(extra);
            Ok(span)
        })?;
        Ok(otlp::ScopeSpans {
            scope: Some(scope),
            schema_url,
            spans,
        })
    }

    fn span(&mut self) -> Result<(otlp::Span, SpanExtras), AvroError> {
        let trace_id = self.fixed::<16>("trace_id")?.to_vec();
        let span_id = self.fixed::<8>("span_id")?.to_vec();
        let parent_span_id = match self.branch(2)? {
            0 => Vec::new(),
            _ => self.fixed::<8>("parent_span_id")?.to_vec(),
        };
        let trace_state = self.string()?;
        let flags = self.u32("flags")?;
        let name = self.string()?;
        let kind = self.int("kind")?;
        let start_time_unix_nano = self.long()? as u64;
        let end_time_unix_nano = self.long()? as u64;
        let attributes = self.attributes(0)?;
        let dropped_attributes_count = self.u32("dropped_attributes_count")?;
        let events = self.array(|r| {
            Ok(Event {
                time_unix_nano: r.long()? as u64,
                name: r.string()?,
                attributes: r.attributes(0)?,
                dropped_attributes_count: r.u32("dropped_attributes_count")?,
            })
        })?;
        let dropped_events_count = self.u32("dropped_events_count")?;
        let links = self.array(|r| {
            Ok(Link {
                trace_id: r.bytes()?,
                span_id: r.bytes()?,
                trace_state: r.string()?,
                attributes: r.attributes(0)?,
                dropped_attributes_count: r.u32("dropped_attributes_count")?,
                flags: r.u32("flags")?,
            })
        })?;
        let dropped_links_count = self.u32("dropped_links_count")?;
        let status = otlp::Status {
            code: self.int("code")?,
            message: self.string()?,
        };
        let business_keys = self.array(|r| {
            Ok(BusinessKey {
                name: r.string()?,
                value: r.string()?,
            })
        })?;
        let repairs = self.u32("repairs")?;
        let span = otlp::Span {
            trace_id,
            span_id,
            parent_span_id,
            trace_state,
            flags,
            name,
            kind,
            start_time_unix_nano,
            end_time_unix_nano,
            attributes,
            dropped_attributes_count,
            events,
            dropped_events_count,
            links,
            dropped_links_count,
            status: Some(status),
        };
        Ok((
            span,
            SpanExtras {
                business_keys,
                repairs,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_round_trips_at_the_edges() {
        for v in [0, 1, -1, 63, -64, 64, i32::MAX as i64, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            Writer(&mut out).long(v);
            let mut r = Reader::new(&out);
            assert_eq!(r.long().unwrap(), v);
            assert_eq!(r.pos, out.len());
        }
    }
}
