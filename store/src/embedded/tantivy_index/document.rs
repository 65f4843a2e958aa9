//! The tantivy side of span → index document: the tantivy document built from the shared
//! [`SpanDoc`] (`trace_index::span_doc`), its write-ahead-log encoding, and the combined
//! `service\0operation` term.

use tantivy::TantivyDocument;

use super::schema::{self, Fields};
pub use crate::trace_index::span_doc::SpanDoc;

impl SpanDoc {
    /// The tantivy document: every field indexed, nothing stored.
    pub fn to_document(&self, f: &Fields) -> TantivyDocument {
        let mut doc = TantivyDocument::default();
        doc.add_bytes(f.trace_id, &self.trace_id);
        doc.add_u64(f.start, self.start_unix_nano);
        doc.add_u64(f.duration, self.duration_nanos);
        doc.add_text(f.service, &self.service);
        doc.add_text(f.operation, &self.operation);
        doc.add_text(
            f.service_operation,
            service_operation_term(&self.service, &self.operation),
        );
        doc.add_text(f.kind, &self.kind);
        if self.error {
            doc.add_text(f.error, schema::ERROR_TERM);
            if !self.error_text.is_empty() {
                doc.add_text(f.error_text, &self.error_text);
            }
        }
        for k in &self.keys {
            doc.add_text(f.keys, k);
        }
        for a in &self.attrs {
            doc.add_text(f.attrs, a);
        }
        doc
    }

    /// Appends the write-ahead-log form of this document to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.trace_id);
        out.extend_from_slice(&self.start_unix_nano.to_le_bytes());
        out.extend_from_slice(&self.duration_nanos.to_le_bytes());
        out.push(u8::from(self.error));
        put_str(out, &self.service);
        put_str(out, &self.operation);
        put_str(out, &self.kind);
        put_str(out, &self.error_text);
        put_strs(out, &self.keys);
        put_strs(out, &self.attrs);
    }

    /// Reads one document written by [`SpanDoc::encode`] from the front of `input`.
    pub fn decode(input: &mut &[u8]) -> Option<SpanDoc> {
        let trace_id: [u8; 16] = take(input, 16)?.try_into().ok()?;
        let start_unix_nano = u64::from_le_bytes(take(input, 8)?.try_into().ok()?);
        let duration_nanos = u64::from_le_bytes(take(input, 8)?.try_into().ok()?);
        let error = take(input, 1)?[0] != 0;
        Some(SpanDoc {
            trace_id,
            start_unix_nano,
            duration_nanos,
            error,
            service: get_str(input)?,
            operation: get_str(input)?,
            kind: get_str(input)?,
            error_text: get_str(input)?,
            keys: get_strs(input)?,
            attrs: get_strs(input)?,
        })
    }
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

fn put_strs(out: &mut Vec<u8>, v: &[String]) {
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
        let spans = checkout_trace(trace_id(2), "77", BASE_TIME, true);
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
    }
}
