//! The schema-independent Avro path: spans to and from apache-avro's `Value` tree, checked
//! against whatever writer schema a record names, after a bounds pre-scan of the bytes
//! that allocates nothing sized by the data. Records of schema versions other than v1 go
//! through here; so does the byte-for-byte reference the v1 codec is tested against.

use std::collections::HashMap;

use apache_avro::schema::Schema;
use apache_avro::types::Value;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource as OtlpResource;
use opentelemetry_proto::tonic::trace::v1 as otlp;

use super::reader::Reader;
use super::{
    same, AvroError, DecodedRequest, SpanExtras, MAX_SCHEMA_DEPTH, U_ARRAY, U_BOOL, U_BYTES,
    U_DOUBLE, U_KVLIST, U_LONG, U_NULL, U_STRING,
};
use crate::model::{
    any_value, AnyValue, ArrayValue, BusinessKey, Event, KeyValue, KeyValueList, Link, Span,
};

// ---------------------------------------------------------------- model → Avro value

fn rec(fields: Vec<(&str, Value)>) -> Value {
    Value::Record(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

fn s(v: &str) -> Value {
    Value::String(v.to_string())
}

fn attrs_value(attrs: &[KeyValue]) -> Value {
    Value::Array(attrs.iter().map(kv_value).collect())
}

fn kv_value(kv: &KeyValue) -> Value {
    rec(vec![
        ("key", s(&kv.key)),
        ("value", any_value(kv.value.as_ref())),
    ])
}

fn any_value(v: Option<&AnyValue>) -> Value {
    use any_value::Value as V;
    let (branch, inner) = match v.and_then(|v| v.value.as_ref()) {
        None => (U_NULL, Value::Null),
        Some(V::StringValue(x)) => (U_STRING, s(x)),
        Some(V::BoolValue(b)) => (U_BOOL, Value::Boolean(*b)),
        Some(V::IntValue(i)) => (U_LONG, Value::Long(*i)),
        Some(V::DoubleValue(d)) => (U_DOUBLE, Value::Double(*d)),
        Some(V::BytesValue(b)) => (U_BYTES, Value::Bytes(b.clone())),
        // Only meaningful in OTLP profiles (a dictionary index); traces never carry it.
        Some(V::StringValueStrindex(_)) => (U_NULL, Value::Null),
        Some(V::ArrayValue(a)) => (
            U_ARRAY,
            rec(vec![(
                "values",
                Value::Array(a.values.iter().map(|x| any_value(Some(x))).collect()),
            )]),
        ),
        Some(V::KvlistValue(l)) => (U_KVLIST, rec(vec![("values", attrs_value(&l.values))])),
    };
    rec(vec![("value", Value::Union(branch, Box::new(inner)))])
}

fn u32v(v: u32) -> Value {
    Value::Long(v as i64)
}

fn nanos(v: u64) -> Value {
    Value::Long(v as i64) // two's-complement bit pattern; see the schema doc
}

fn span_value(sp: &Span) -> Value {
    let parent = match &sp.parent_span_id {
        Some(p) => Value::Union(1, Box::new(Value::Fixed(8, p.0.to_vec()))),
        None => Value::Union(0, Box::new(Value::Null)),
    };
    rec(vec![
        ("trace_id", Value::Fixed(16, sp.trace_id.0.to_vec())),
        ("span_id", Value::Fixed(8, sp.span_id.0.to_vec())),
        ("parent_span_id", parent),
        ("trace_state", s(&sp.trace_state)),
        ("flags", u32v(sp.flags)),
        ("name", s(&sp.name)),
        ("kind", Value::Int(sp.kind.as_i32())),
        ("start_time_unix_nano", nanos(sp.start_unix_nano)),
        ("end_time_unix_nano", nanos(sp.end_unix_nano)),
        ("attributes", attrs_value(&sp.attributes)),
        (
            "dropped_attributes_count",
            u32v(sp.dropped_attributes_count),
        ),
        (
            "events",
            Value::Array(
                sp.events
                    .iter()
                    .map(|e| {
                        rec(vec![
                            ("time_unix_nano", nanos(e.time_unix_nano)),
                            ("name", s(&e.name)),
                            ("attributes", attrs_value(&e.attributes)),
                            ("dropped_attributes_count", u32v(e.dropped_attributes_count)),
                        ])
                    })
                    .collect(),
            ),
        ),
        ("dropped_events_count", u32v(sp.dropped_events_count)),
        (
            "links",
            Value::Array(
                sp.links
                    .iter()
                    .map(|l| {
                        rec(vec![
                            ("trace_id", Value::Bytes(l.trace_id.clone())),
                            ("span_id", Value::Bytes(l.span_id.clone())),
                            ("trace_state", s(&l.trace_state)),
                            ("attributes", attrs_value(&l.attributes)),
                            ("dropped_attributes_count", u32v(l.dropped_attributes_count)),
                            ("flags", u32v(l.flags)),
                        ])
                    })
                    .collect(),
            ),
        ),
        ("dropped_links_count", u32v(sp.dropped_links_count)),
        (
            "status",
            rec(vec![
                ("code", Value::Int(sp.status_code.as_i32())),
                ("message", s(&sp.status_message)),
            ]),
        ),
        (
            "business_keys",
            Value::Array(
                sp.business_keys
                    .iter()
                    .map(|k| rec(vec![("name", s(&k.name)), ("value", s(&k.value))]))
                    .collect(),
            ),
        ),
        ("repairs", u32v(sp.repairs)),
    ])
}

pub(super) fn batch_value(spans: &[Span]) -> Value {
    let mut resource_spans = Vec::new();
    let mut i = 0;
    while i < spans.len() {
        let res = &spans[i].resource;
        let mut scope_spans = Vec::new();
        while i < spans.len() && same(&spans[i].resource, res) {
            let scope = &spans[i].scope;
            let mut group = Vec::new();
            while i < spans.len() && same(&spans[i].resource, res) && same(&spans[i].scope, scope) {
                group.push(span_value(&spans[i]));
                i += 1;
            }
            scope_spans.push(rec(vec![
                (
                    "scope",
                    rec(vec![
                        ("name", s(&scope.name)),
                        ("version", s(&scope.version)),
                        ("attributes", attrs_value(&scope.attributes)),
                        (
                            "dropped_attributes_count",
                            u32v(scope.dropped_attributes_count),
                        ),
                    ]),
                ),
                ("schema_url", s(&scope.schema_url)),
                ("spans", Value::Array(group)),
            ]));
        }
        resource_spans.push(rec(vec![
            (
                "resource",
                rec(vec![
                    ("attributes", attrs_value(&res.attributes)),
                    (
                        "dropped_attributes_count",
                        u32v(res.dropped_attributes_count),
                    ),
                ]),
            ),
            ("schema_url", s(&res.schema_url)),
            ("scope_spans", Value::Array(scope_spans)),
        ]));
    }
    rec(vec![("resource_spans", Value::Array(resource_spans))])
}

// ---------------------------------------------------------------- Avro value → OTLP

/// Decodes a datum written with `writer`: the bounds pre-scan, then apache-avro.
pub(super) fn decode(writer: &Schema, datum: &[u8]) -> Result<DecodedRequest, AvroError> {
    prescan(writer, datum)?;
    // Decoded with the writer schema only; fields a newer schema adds are filled with
    // their defaults by `value_to_request`. (apache-avro's reader-schema resolution picks
    // union branches by shape, which turns an empty KeyValueList into an ArrayValue.)
    let mut cursor = datum;
    let value = apache_avro::from_avro_datum(writer, &mut cursor, None).map_err(Box::new)?;
    value_to_request(value)
}

fn shape(what: impl Into<String>) -> AvroError {
    AvroError::Shape(what.into())
}

/// Fields of a record, by name.
struct Fields(HashMap<String, Value>);

impl Fields {
    fn of(v: Value, what: &str) -> Result<Self, AvroError> {
        match v {
            Value::Record(fields) => Ok(Fields(fields.into_iter().collect())),
            other => Err(shape(format!("{what}: expected a record, got {other:?}"))),
        }
    }

    fn take(&mut self, name: &str) -> Result<Value, AvroError> {
        self.0
            .remove(name)
            .ok_or_else(|| shape(format!("missing field {name}")))
    }

    fn string(&mut self, name: &str) -> Result<String, AvroError> {
        match self.take(name)? {
            Value::String(s) => Ok(s),
            other => Err(shape(format!("{name}: expected a string, got {other:?}"))),
        }
    }

    fn bytes(&mut self, name: &str) -> Result<Vec<u8>, AvroError> {
        match self.take(name)? {
            Value::Bytes(b) | Value::Fixed(_, b) => Ok(b),
            other => Err(shape(format!("{name}: expected bytes, got {other:?}"))),
        }
    }

    fn long(&mut self, name: &str) -> Result<i64, AvroError> {
        match self.take(name)? {
            Value::Long(v) => Ok(v),
            Value::Int(v) => Ok(v as i64),
            other => Err(shape(format!("{name}: expected a long, got {other:?}"))),
        }
    }

    fn u32(&mut self, name: &str) -> Result<u32, AvroError> {
        let v = self.long(name)?;
        u32::try_from(v).map_err(|_| shape(format!("{name}: {v} is outside 0..=4294967295")))
    }

    fn int(&mut self, name: &str) -> Result<i32, AvroError> {
        match self.take(name)? {
            Value::Int(v) => Ok(v),
            other => Err(shape(format!("{name}: expected an int, got {other:?}"))),
        }
    }

    fn array(&mut self, name: &str) -> Result<Vec<Value>, AvroError> {
        match self.take(name)? {
            Value::Array(a) => Ok(a),
            other => Err(shape(format!("{name}: expected an array, got {other:?}"))),
        }
    }

    fn record(&mut self, name: &str) -> Result<Fields, AvroError> {
        let v = self.take(name)?;
        Fields::of(v, name)
    }
}

fn attrs_from(values: Vec<Value>) -> Result<Vec<KeyValue>, AvroError> {
    values
        .into_iter()
        .map(|v| {
            let mut f = Fields::of(v, "KeyValue")?;
            Ok(KeyValue {
                key: f.string("key")?,
                value: Some(any_from(f.take("value")?)?),
                ..Default::default()
            })
        })
        .collect()
}

fn any_from(v: Value) -> Result<AnyValue, AvroError> {
    use any_value::Value as V;
    let mut f = Fields::of(v, "AnyValue")?;
    let (branch, value) = match f.take("value")? {
        Value::Union(i, inner) => (i, *inner),
        other => return Err(shape(format!("AnyValue: expected a union, got {other:?}"))),
    };
    let value = match value {
        Value::Null => None,
        Value::String(s) => Some(V::StringValue(s)),
        Value::Boolean(b) => Some(V::BoolValue(b)),
        Value::Long(i) => Some(V::IntValue(i)),
        Value::Double(d) => Some(V::DoubleValue(d)),
        Value::Bytes(b) => Some(V::BytesValue(b)),
        rec @ Value::Record(_) if branch == U_ARRAY => {
            let items = Fields::of(rec, "ArrayValue")?.array("values")?;
            Some(V::ArrayValue(ArrayValue {
                values: items.into_iter().map(any_from).collect::<Result<_, _>>()?,
            }))
        }
        rec @ Value::Record(_) if branch == U_KVLIST => {
            let items = Fields::of(rec, "KeyValueList")?.array("values")?;
            Some(V::KvlistValue(KeyValueList {
                values: attrs_from(items)?,
            }))
        }
        other => return Err(shape(format!("AnyValue: unexpected {other:?}"))),
    };
    Ok(AnyValue { value })
}

fn value_to_request(v: Value) -> Result<DecodedRequest, AvroError> {
    let mut batch = Fields::of(v, "SpanBatch")?;
    let mut request = ExportTraceServiceRequest::default();
    let mut extras = Vec::new();
    for rs in batch.array("resource_spans")? {
        let mut rs = Fields::of(rs, "ResourceSpans")?;
        let mut res = rs.record("resource")?;
        let resource = OtlpResource {
            attributes: attrs_from(res.array("attributes")?)?,
            dropped_attributes_count: res.u32("dropped_attributes_count")?,
            ..Default::default()
        };
        let mut out_rs = otlp::ResourceSpans {
            resource: Some(resource),
            schema_url: rs.string("schema_url")?,
            scope_spans: Vec::new(),
        };
        for ss in rs.array("scope_spans")? {
            let mut ss = Fields::of(ss, "ScopeSpans")?;
            let mut sc = ss.record("scope")?;
            let scope = InstrumentationScope {
                name: sc.string("name")?,
                version: sc.string("version")?,
                attributes: attrs_from(sc.array("attributes")?)?,
                dropped_attributes_count: sc.u32("dropped_attributes_count")?,
            };
            let mut out_ss = otlp::ScopeSpans {
                scope: Some(scope),
                schema_url: ss.string("schema_url")?,
                spans: Vec::new(),
            };
            for sp in ss.array("spans")? {
                let (span, extra) = span_from(sp)?;
                out_ss.spans.push(span);
                extras.push(extra);
            }
            out_rs.scope_spans.push(out_ss);
        }
        request.resource_spans.push(out_rs);
    }
    Ok(DecodedRequest { request, extras })
}

fn span_from(v: Value) -> Result<(otlp::Span, SpanExtras), AvroError> {
    let mut f = Fields::of(v, "Span")?;
    let parent_span_id = match f.take("parent_span_id")? {
        Value::Union(_, inner) => match *inner {
            Value::Null => Vec::new(),
            Value::Fixed(_, b) => b,
            other => return Err(shape(format!("parent_span_id: unexpected {other:?}"))),
        },
        other => return Err(shape(format!("parent_span_id: unexpected {other:?}"))),
    };
    let mut events = Vec::new();
    for e in f.array("events")? {
        let mut e = Fields::of(e, "Event")?;
        events.push(Event {
            time_unix_nano: e.long("time_unix_nano")? as u64,
            name: e.string("name")?,
            attributes: attrs_from(e.array("attributes")?)?,
            dropped_attributes_count: e.u32("dropped_attributes_count")?,
        });
    }
    let mut links = Vec::new();
    for l in f.array("links")? {
        let mut l = Fields::of(l, "Link")?;
        links.push(Link {
            trace_id: l.bytes("trace_id")?,
            span_id: l.bytes("span_id")?,
            trace_state: l.string("trace_state")?,
            attributes: attrs_from(l.array("attributes")?)?,
            dropped_attributes_count: l.u32("dropped_attributes_count")?,
            flags: l.u32("flags")?,
        });
    }
    let mut status = f.record("status")?;
    let span = otlp::Span {
        trace_id: f.bytes("trace_id")?,
        span_id: f.bytes("span_id")?,
        parent_span_id,
        trace_state: f.string("trace_state")?,
        flags: f.u32("flags")?,
        name: f.string("name")?,
        kind: f.int("kind")?,
        start_time_unix_nano: f.long("start_time_unix_nano")? as u64,
        end_time_unix_nano: f.long("end_time_unix_nano")? as u64,
        attributes: attrs_from(f.array("attributes")?)?,
        dropped_attributes_count: f.u32("dropped_attributes_count")?,
        events,
        dropped_events_count: f.u32("dropped_events_count")?,
        links,
        dropped_links_count: f.u32("dropped_links_count")?,
        status: Some(otlp::Status {
            code: status.int("code")?,
            message: status.string("message")?,
        }),
    };
    let mut business_keys = Vec::new();
    for k in f.array("business_keys")? {
        let mut k = Fields::of(k, "BusinessKey")?;
        business_keys.push(BusinessKey {
            name: k.string("name")?,
            value: k.string("value")?,
        });
    }
    let extra = SpanExtras {
        business_keys,
        repairs: f.u32("repairs")?,
    };
    Ok((span, extra))
}

// ---------------------------------------------------------------- bounds pre-scan

/// Walks `datum` against `schema` without allocating anything sized by the data.
fn prescan(schema: &Schema, datum: &[u8]) -> Result<(), AvroError> {
    let mut names = HashMap::new();
    collect_names(schema, &mut names);
    let mut scan = Scan {
        r: Reader::new(datum),
        names,
    };
    scan.walk(schema, 0)?;
    scan.r.finish()
}

fn collect_names<'s>(schema: &'s Schema, names: &mut HashMap<String, &'s Schema>) {
    let mut add = |n: &apache_avro::schema::Name| {
        names.insert(n.fullname(None), schema);
        names.insert(n.name.clone(), schema);
    };
    match schema {
        Schema::Record(r) => {
            add(&r.name);
            for f in &r.fields {
                collect_names(&f.schema, names);
            }
        }
        Schema::Enum(e) => add(&e.name),
        Schema::Fixed(f) => add(&f.name),
        Schema::Array(a) => collect_names(&a.items, names),
        Schema::Map(m) => collect_names(&m.types, names),
        Schema::Union(u) => u.variants().iter().for_each(|v| collect_names(v, names)),
        _ => {}
    }
}

struct Scan<'a, 's> {
    r: Reader<'a>,
    names: HashMap<String, &'s Schema>,
}

impl<'s> Scan<'_, 's> {
    fn blocks(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<(), AvroError>,
    ) -> Result<(), AvroError> {
        loop {
            let count = self.r.block()?;
            if count == 0 {
                return Ok(());
            }
            for _ in 0..count {
                item(self)?;
            }
        }
    }

    fn walk(&mut self, schema: &'s Schema, depth: usize) -> Result<(), AvroError> {
        let r = &mut self.r;
        if depth > MAX_SCHEMA_DEPTH {
            return Err(r.err(format!("nested deeper than {MAX_SCHEMA_DEPTH} levels")));
        }
        match schema {
            Schema::Null => Ok(()),
            Schema::Boolean => r.boolean().map(|_| ()),
            Schema::Int | Schema::Long => r.long().map(|_| ()),
            Schema::Float => r.take(4, "float").map(|_| ()),
            Schema::Double => r.take(8, "double").map(|_| ()),
            Schema::Bytes => r.sized("bytes").map(|_| ()),
            Schema::String => r.str().map(|_| ()),
            Schema::Fixed(f) => r.take(f.size, "fixed").map(|_| ()),
            Schema::Enum(e) => {
                let i = r.long()?;
                if i < 0 || i as u64 >= e.symbols.len() as u64 {
                    return Err(r.err(format!("enum index {i} out of range")));
                }
                Ok(())
            }
            Schema::Array(a) => self.blocks(|s| s.walk(&a.items, depth + 1)),
            Schema::Map(m) => self.blocks(|s| {
                s.walk(&Schema::String, depth + 1)?;
                s.walk(&m.types, depth + 1)
            }),
            Schema::Union(u) => {
                let i = r.branch(u.variants().len())?;
                self.walk(&u.variants()[i], depth + 1)
            }
            Schema::Record(rec) => {
                for f in &rec.fields {
                    self.walk(&f.schema, depth + 1)?;
                }
                Ok(())
            }
            Schema::Ref { name } => {
                let target = self
                    .names
                    .get(&name.fullname(None))
                    .or_else(|| self.names.get(&name.name))
                    .copied()
                    .ok_or_else(|| self.r.err(format!("unknown named type {}", name.name)))?;
                self.walk(target, depth + 1)
            }
            other => Err(r.err(format!("schema type {other:?} is not used by clew"))),
        }
    }
}
