//! The tantivy side of span → index document: the shared [`SpanDoc`]
//! (`trace_index::span_doc`) as a tantivy [`Document`] ([`IndexDoc`]), its write-ahead-log
//! encoding, and the combined `service\0operation` term.

use tantivy::schema::document::{ReferenceValue, ReferenceValueLeaf};
use tantivy::schema::{Document, Field, Value};

use super::schema::{self, AttrsLayout, Fields};
pub use crate::trace_index::span_doc::SpanDoc;
use crate::trace_index::span_doc::{Terms, TermsIter};

/// A span document as tantivy indexes it: tantivy reads every field value straight out of
/// the [`SpanDoc`] (its writer indexes any [`Document`] without copying it), where a
/// `TantivyDocument` would first copy each of the span's ~30 terms into a buffer of its
/// own. Every field is indexed, nothing is stored.
///
/// The attribute terms are one joined value ([`Terms::joined`]: the terms' own buffer, no
/// copy) that the `attrs`
/// field's tokenizer splits again: tantivy's writer has per-value costs (it sorts a
/// document's values by field, walks them once for the fast fields and twice for the doc
/// store even though nothing is stored, and boxes a token stream per value) that one value
/// per term paid ~20 times a span. Partitions written before that layout take the same
/// terms one value each ([`IndexDoc::set_layout`]).
#[derive(Debug)]
pub struct IndexDoc {
    doc: SpanDoc,
    service_operation: String,
    /// `tenant\0service\0operation`.
    tenant_operation: String,
    layout: AttrsLayout,
    fields: FieldIds,
}

/// The schema's field handles, copied into each document.
#[derive(Debug, Clone, Copy)]
struct FieldIds {
    trace_id: Field,
    start: Field,
    duration: Field,
    service: Field,
    operation: Field,
    service_operation: Field,
    error: Field,
    error_text: Field,
    keys: Field,
    attrs: Field,
    tenant: Field,
    tenant_operation: Field,
}

impl IndexDoc {
    pub fn new(doc: SpanDoc, f: &Fields) -> IndexDoc {
        let service_operation = service_operation_term(&doc.service, &doc.operation);
        IndexDoc {
            tenant_operation: tenant_term(doc.tenant.as_str(), &service_operation),
            service_operation,
            doc,
            layout: AttrsLayout::Joined,
            fields: FieldIds {
                trace_id: f.trace_id,
                start: f.start,
                duration: f.duration,
                service: f.service,
                operation: f.operation,
                service_operation: f.service_operation,
                error: f.error,
                error_text: f.error_text,
                keys: f.keys,
                attrs: f.attrs,
                tenant: f.tenant,
                tenant_operation: f.tenant_operation,
            },
        }
    }

    /// The UTC day partition of the document.
    pub fn day(&self) -> u32 {
        self.doc.day()
    }

    /// The tenant of the span (its retention class picks the partition).
    pub fn tenant(&self) -> &clew_proto::Tenant {
        &self.doc.tenant
    }

    /// Feeds the attribute terms the way a partition of `layout` indexes them.
    pub fn set_layout(&mut self, layout: AttrsLayout) {
        self.layout = layout;
    }
}

/// One field value of an [`IndexDoc`], borrowed from it.
#[derive(Debug, Clone, Copy)]
pub enum DocValue<'a> {
    Str(&'a str),
    U64(u64),
    Bytes(&'a [u8]),
}

impl<'a> Value<'a> for DocValue<'a> {
    type ArrayIter = std::iter::Empty<Self>;
    type ObjectIter = std::iter::Empty<(&'a str, Self)>;

    fn as_value(&self) -> ReferenceValue<'a, Self> {
        ReferenceValue::Leaf(match *self {
            DocValue::Str(s) => ReferenceValueLeaf::Str(s),
            DocValue::U64(v) => ReferenceValueLeaf::U64(v),
            DocValue::Bytes(b) => ReferenceValueLeaf::Bytes(b),
        })
    }
}

impl Document for IndexDoc {
    type Value<'a> = DocValue<'a>;
    type FieldsValuesIter<'a> = IndexDocValues<'a>;

    fn iter_fields_and_values(&self) -> IndexDocValues<'_> {
        IndexDocValues {
            doc: self,
            step: 0,
            key: 0,
            attrs: self.doc.attrs.iter(),
        }
    }
}

/// The field values of an [`IndexDoc`], in schema order; error fields only on error spans.
pub struct IndexDocValues<'a> {
    doc: &'a IndexDoc,
    step: u8,
    key: usize,
    /// The remaining attribute terms, when fed one value each.
    attrs: TermsIter<'a>,
}

impl<'a> Iterator for IndexDocValues<'a> {
    type Item = (Field, DocValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let IndexDoc {
            doc: d,
            service_operation,
            tenant_operation,
            layout,
            fields: f,
        } = self.doc;
        loop {
            let step = self.step;
            self.step = step.saturating_add(1).min(12);
            let item = match step {
                0 => (f.trace_id, DocValue::Bytes(&d.trace_id)),
                1 => (f.start, DocValue::U64(d.start_unix_nano)),
                2 => (f.duration, DocValue::U64(d.duration_nanos)),
                3 => (f.service, DocValue::Str(&d.service)),
                4 => (f.operation, DocValue::Str(&d.operation)),
                5 => (f.service_operation, DocValue::Str(service_operation)),
                // No search asks for the span kind: the schema keeps the field (the
                // partitions' schemas stay as they are), no document fills it.
                6 => continue,
                7 if d.error => (f.error, DocValue::Str(schema::ERROR_TERM)),
                8 if d.error && !d.error_text.is_empty() => {
                    (f.error_text, DocValue::Str(&d.error_text))
                }
                7 | 8 => continue,
                9 => (f.tenant, DocValue::Str(d.tenant.as_str())),
                10 => (f.tenant_operation, DocValue::Str(tenant_operation)),
                _ => {
                    // Step 11: the keys, then the joined attribute terms; step 12: done.
                    if let Some(k) = d.keys.get(self.key) {
                        self.key += 1;
                        self.step = step;
                        return Some((f.keys, DocValue::Str(k)));
                    }
                    return match layout {
                        AttrsLayout::Joined => (step == 11 && !d.attrs.is_empty())
                            .then_some((f.attrs, DocValue::Str(d.attrs.joined()))),
                        AttrsLayout::PerTerm => {
                            self.attrs.next().map(|a| (f.attrs, DocValue::Str(a)))
                        }
                    };
                }
            };
            return Some(item);
        }
    }
}

impl SpanDoc {
    /// Bytes [`SpanDoc::encode`] appends.
    pub fn encoded_len(&self) -> usize {
        let tenant = if self.tenant.is_default() {
            0
        } else {
            4 + self.tenant.as_str().len()
        };
        tenant
            + 16
            + 8
            + 8
            + 1
            + 4 * 5
            + self.service.len()
            + self.operation.len()
            + self.kind.len()
            + self.error_text.len()
            + self.keys.iter().map(|k| 4 + k.len()).sum::<usize>()
            + 4
            + 4 * self.attrs.len()
            + self.attrs.text_len()
    }

    /// Appends the write-ahead-log form of this document to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.trace_id);
        out.extend_from_slice(&self.start_unix_nano.to_le_bytes());
        out.extend_from_slice(&self.duration_nanos.to_le_bytes());
        // Bit 1: a tenant other than `default` follows (records of before tenants, and
        // the default tenant's, have none).
        let tenanted = !self.tenant.is_default();
        out.push(u8::from(self.error) | (u8::from(tenanted) << 1));
        if tenanted {
            put_str(out, self.tenant.as_str());
        }
        put_str(out, &self.service);
        put_str(out, &self.operation);
        put_str(out, &self.kind);
        put_str(out, &self.error_text);
        put_strs(out, self.keys.iter().map(String::as_str));
        put_strs(out, self.attrs.iter());
    }

    /// Reads one document written by [`SpanDoc::encode`] from the front of `input`.
    pub fn decode(input: &mut &[u8]) -> Option<SpanDoc> {
        let trace_id: [u8; 16] = take(input, 16)?.try_into().ok()?;
        let start_unix_nano = u64::from_le_bytes(take(input, 8)?.try_into().ok()?);
        let duration_nanos = u64::from_le_bytes(take(input, 8)?.try_into().ok()?);
        let flags = take(input, 1)?[0];
        let error = flags & 1 != 0;
        let tenant = if flags & 2 != 0 {
            clew_proto::Tenant::parse(&get_str(input)?).ok()?
        } else {
            clew_proto::Tenant::default()
        };
        Some(SpanDoc {
            tenant,
            trace_id,
            start_unix_nano,
            duration_nanos,
            error,
            service: get_str(input)?,
            operation: get_str(input)?,
            kind: get_str(input)?,
            error_text: get_str(input)?,
            keys: get_strs(input)?,
            attrs: get_terms(input)?,
        })
    }
}

/// `tenant\0rest`: a term of the `tenant_operation` field, or (with `rest` = `service\0`
/// or empty) the prefix of a tenant's services or of one of its services' operations.
pub fn tenant_term(tenant: &str, rest: &str) -> String {
    let mut t = String::with_capacity(tenant.len() + rest.len() + 1);
    t.push_str(tenant);
    t.push(schema::SERVICE_OPERATION_SEP);
    t.push_str(rest);
    t
}

/// The combined term of the operations listing and of `service + operation` queries.
pub fn service_operation_term(service: &str, operation: &str) -> String {
    let mut t = String::with_capacity(service.len() + operation.len() + 1);
    t.push_str(service);
    t.push(schema::SERVICE_OPERATION_SEP);
    t.push_str(operation);
    t
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_strs<'a>(out: &mut Vec<u8>, v: impl ExactSizeIterator<Item = &'a str>) {
    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    for s in v {
        put_str(out, s);
    }
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if input.len() < n {
        return None;
    }
    let (head, tail) = input.split_at(n);
    *input = tail;
    Some(head)
}

fn get_u32(input: &mut &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(take(input, 4)?.try_into().ok()?))
}

fn get_str(input: &mut &[u8]) -> Option<String> {
    let n = get_u32(input)? as usize;
    String::from_utf8(take(input, n)?.to_vec()).ok()
}

fn get_terms(input: &mut &[u8]) -> Option<Terms> {
    let n = get_u32(input)? as usize;
    let mut terms = Terms::with_capacity(n.min(input.len() / 4), 0);
    for _ in 0..n {
        let len = get_u32(input)? as usize;
        terms.push(std::str::from_utf8(take(input, len)?).ok()?);
    }
    Some(terms)
}

fn get_strs(input: &mut &[u8]) -> Option<Vec<String>> {
    let n = get_u32(input)? as usize;
    // Each string needs at least its 4-byte length: never trust `n` for the allocation.
    let mut v = Vec::with_capacity(n.min(input.len() / 4));
    for _ in 0..n {
        v.push(get_str(input)?);
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::fixtures::{checkout_trace, trace_id, BASE_TIME};

    #[test]
    fn wal_encoding_round_trips_and_rejects_truncation() {
        let mut spans = checkout_trace(trace_id(2), "77", BASE_TIME, true);
        // one span of another tenant: its name is in the record, the others' is not
        spans[1].tenant = clew_proto::Tenant::parse("shop").unwrap();
        let attrs = crate::trace_index::span_doc::IndexedAttributes::All;
        let docs: Vec<SpanDoc> = spans
            .iter()
            .map(|s| SpanDoc::from_span(s, &attrs))
            .collect();
        let mut buf = Vec::new();
        for d in &docs {
            d.encode(&mut buf);
        }
        let mut input = &buf[..];
        for d in &docs {
            assert_eq!(SpanDoc::decode(&mut input).as_ref(), Some(d));
        }
        assert!(input.is_empty());
        for cut in 0..buf.len().min(200) {
            let mut input = &buf[..cut];
            let _ = SpanDoc::decode(&mut input); // never panics
        }
        let sizes: usize = docs.iter().map(SpanDoc::encoded_len).sum();
        assert_eq!(sizes, buf.len());
    }

    /// The `TantivyDocument` the index was fed before [`IndexDoc`].
    fn reference_document(d: &SpanDoc, f: &Fields) -> tantivy::TantivyDocument {
        let mut doc = tantivy::TantivyDocument::default();
        doc.add_bytes(f.trace_id, &d.trace_id);
        doc.add_u64(f.start, d.start_unix_nano);
        doc.add_u64(f.duration, d.duration_nanos);
        doc.add_text(f.service, &d.service);
        doc.add_text(f.operation, &d.operation);
        doc.add_text(
            f.service_operation,
            service_operation_term(&d.service, &d.operation),
        );
        if d.error {
            doc.add_text(f.error, schema::ERROR_TERM);
            if !d.error_text.is_empty() {
                doc.add_text(f.error_text, &d.error_text);
            }
        }
        for k in &d.keys {
            doc.add_text(f.keys, k);
        }
        for a in &d.attrs {
            doc.add_text(f.attrs, a);
        }
        doc.add_text(f.tenant, d.tenant.as_str());
        doc.add_text(
            f.tenant_operation,
            tenant_term(
                d.tenant.as_str(),
                &service_operation_term(&d.service, &d.operation),
            ),
        );
        doc
    }

    /// Every (field, term, doc ids) of a one-segment index, and its fast-field columns.
    fn contents(index: &tantivy::Index, f: &Fields) -> Vec<String> {
        use tantivy::DocSet;
        let reader = index.reader().unwrap();
        let searcher = reader.searcher();
        let mut out = Vec::new();
        for segment in searcher.segment_readers() {
            for (name, field) in [
                ("trace_id", f.trace_id),
                ("service", f.service),
                ("operation", f.operation),
                ("service_operation", f.service_operation),
                ("kind", f.schema.get_field(schema::KIND).unwrap()),
                ("error", f.error),
                ("error_text", f.error_text),
                ("keys", f.keys),
                ("attrs", f.attrs),
                ("tenant", f.tenant),
                ("tenant_operation", f.tenant_operation),
            ] {
                let inverted = segment.inverted_index(field).unwrap();
                let mut terms = inverted.terms().stream().unwrap();
                while terms.advance() {
                    let mut postings = inverted
                        .read_postings_from_terminfo(
                            terms.value(),
                            tantivy::schema::IndexRecordOption::Basic,
                        )
                        .unwrap();
                    let mut docs = Vec::new();
                    while postings.doc() != tantivy::TERMINATED {
                        docs.push(postings.doc());
                        postings.advance();
                    }
                    out.push(format!("{name} {:?} {docs:?}", terms.key()));
                }
            }
            let fast = segment.fast_fields();
            for name in [schema::START, schema::DURATION] {
                let col = fast.u64(name).unwrap();
                let values: Vec<u64> = (0..segment.max_doc())
                    .map(|d| col.first(d).unwrap())
                    .collect();
                out.push(format!("{name} {values:?}"));
            }
        }
        out
    }

    #[test]
    fn index_docs_index_exactly_what_tantivy_documents_did() {
        let attrs = crate::trace_index::span_doc::IndexedAttributes::All;
        let mut spans = checkout_trace(trace_id(3), "99", BASE_TIME, true);
        spans.extend(checkout_trace(trace_id(4), "100", BASE_TIME, false));
        let docs = SpanDoc::from_spans(&spans, &attrs);
        assert!(docs.iter().any(|d| d.error && !d.error_text.is_empty()));
        assert!(docs.iter().any(|d| d.attrs.len() > 3));
        // Both layouts of `attrs`: one joined value (new partitions), one value per term.
        let mut indexes = Vec::new();
        for layout in [AttrsLayout::Joined, AttrsLayout::PerTerm] {
            let f = Fields::with_layout(layout);
            let index = tantivy::Index::create_in_ram(f.schema.clone());
            schema::register_tokenizers(&index);
            let mut w = index
                .writer_with_num_threads::<IndexDoc>(1, 15_000_000)
                .unwrap();
            for d in &docs {
                let mut doc = IndexDoc::new(d.clone(), &f);
                doc.set_layout(layout);
                w.add_document(doc).unwrap();
            }
            w.commit().unwrap();
            indexes.push((index, f));
        }
        // The reference: a `TantivyDocument` per span, one value per term.
        let f = Fields::with_layout(AttrsLayout::PerTerm);
        let old_index = tantivy::Index::create_in_ram(f.schema.clone());
        let mut w = old_index
            .writer_with_num_threads::<tantivy::TantivyDocument>(1, 15_000_000)
            .unwrap();
        for d in &docs {
            w.add_document(reference_document(d, &f)).unwrap();
        }
        w.commit().unwrap();
        let expected = contents(&old_index, &f);
        assert!(expected.iter().any(|t| t.starts_with("attrs ")));
        assert!(!expected.iter().any(|t| t.starts_with("kind ")));
        for (index, f) in &indexes {
            assert_eq!(contents(index, f), expected);
        }
    }
}
