//! Span → index document values, in one place for every trace-index backend: the lean
//! [`SpanDoc`] extracted from a span (what tantivy indexes and OpenSearch is sent, so both
//! index exactly the same values) and the exact `name=value` terms of keys and attributes.
//!
//! Which attributes become terms is [`IndexedAttributes`]: by default every string, int,
//! bool and double attribute of the span, its scope, its resource and its events (what a
//! Jaeger tag search looks at), each value up to [`MAX_INDEXED_VALUE_BYTES`]; or only a
//! configured list of names.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use clew_proto::model::{any_value, value_to_string, KeyValue, Resource, Scope};
use clew_proto::Span;

use super::days::day_of;

/// Longest error text indexed per span (bytes); stack-trace-sized messages are cut.
const MAX_ERROR_TEXT_BYTES: usize = 4096;
/// Longest indexed term (bytes: a service or span name, a `name=value` pair); longer ones
/// are cut. Tantivy rejects terms above 65 530 bytes.
pub const MAX_TERM_BYTES: usize = 1024;

/// Longest attribute value (and name) indexed when every attribute is indexed (bytes):
/// identifiers, routes, statuses and hosts fit; SQL text, stack traces and bodies are left
/// out of the index (they stay in the stored span).
pub const MAX_INDEXED_VALUE_BYTES: usize = 256;
/// Most attribute terms one span contributes when every attribute is indexed; the span's
/// own attributes come first, then its resource, scope and events.
pub const MAX_ATTRIBUTE_TERMS_PER_SPAN: usize = 128;
/// The `indexed_attributes` entry that selects every attribute.
pub const ALL_ATTRIBUTES: &str = "*";

/// Which attributes the index keeps `name=value` terms for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexedAttributes {
    /// Every string, int, bool and double attribute of the span, its scope, resource and
    /// events, values up to [`MAX_INDEXED_VALUE_BYTES`] (`indexed_attributes = ["*"]`).
    All,
    /// Only these names, looked up on the span, then on its resource (values cut at 1 KiB).
    Listed(Arc<[String]>),
}

impl IndexedAttributes {
    /// From the configured `indexed_attributes`: a `"*"` among them selects every attribute.
    pub fn from_names(names: &[String]) -> IndexedAttributes {
        if names.iter().any(|n| n == ALL_ATTRIBUTES) {
            IndexedAttributes::All
        } else {
            IndexedAttributes::Listed(names.into())
        }
    }

    /// Whether an `attr=name:value` condition can ever match: the index holds terms for
    /// `name` and for values of this length.
    pub fn covers(&self, name: &str, value: &str) -> bool {
        match self {
            IndexedAttributes::All => {
                name.len() <= MAX_INDEXED_VALUE_BYTES && value.len() <= MAX_INDEXED_VALUE_BYTES
            }
            IndexedAttributes::Listed(names) => names.iter().any(|n| n == name),
        }
    }
}

/// The `name=value` terms of one document, in one buffer: two allocations however many
/// terms (indexing every attribute gives a span ~25 of them). Each term sits behind a
/// [`TERM_PREFIX_BYTES`]-byte `char` whose code point is U+0080 plus the term's byte
/// length, so the buffer is also the one value tantivy's `attrs` field takes
/// ([`Terms::joined`]; its tokenizer splits it back into the terms) without a copy.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Terms {
    text: String,
    /// End offset in `text` of each term.
    ends: Vec<u32>,
}

/// Bytes of the length prefix before each term of [`Terms`]: U+0080 + at most
/// [`MAX_TERM_BYTES`] is below U+0800, so always two bytes of UTF-8.
pub const TERM_PREFIX_BYTES: usize = 2;
/// The code point of a term prefix is this plus the term's length.
pub const TERM_PREFIX_BASE: u32 = 0x80;

impl Terms {
    /// Room for `terms` terms of `bytes` bytes together.
    pub fn with_capacity(terms: usize, bytes: usize) -> Terms {
        Terms {
            text: String::with_capacity(bytes + TERM_PREFIX_BYTES * terms),
            ends: Vec::with_capacity(terms),
        }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes of all terms together (without their prefixes).
    pub fn text_len(&self) -> usize {
        self.text.len() - TERM_PREFIX_BYTES * self.ends.len()
    }

    /// Every term behind its length prefix, as one string.
    pub fn joined(&self) -> &str {
        &self.text
    }

    pub fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)? as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        Some(&self.text[start + TERM_PREFIX_BYTES..end])
    }

    pub fn iter(&self) -> TermsIter<'_> {
        TermsIter {
            text: &self.text,
            ends: self.ends.iter(),
            start: 0,
        }
    }

    pub fn contains(&self, term: &str) -> bool {
        self.iter().any(|t| t == term)
    }

    /// Appends `term`, cut at 1 KiB like every term.
    pub fn push(&mut self, term: &str) {
        let start = self.begin_term();
        self.text.push_str(term);
        self.end_term(start);
    }

    /// Starts a term, to be written into `text` and closed by [`Terms::end_term`] with the
    /// offset returned (the prefix's; truncating `text` to it drops the term).
    fn begin_term(&mut self) -> usize {
        let start = self.text.len();
        self.text
            .push(char::from_u32(TERM_PREFIX_BASE).expect("a char"));
        start
    }

    /// Closes the term written into `text` since `start` (from [`Terms::begin_term`]),
    /// cutting it at 1 KiB and writing its length prefix.
    fn end_term(&mut self, start: usize) {
        let body = start + TERM_PREFIX_BYTES;
        if self.text.len() - body > MAX_TERM_BYTES {
            let mut cut = body + MAX_TERM_BYTES;
            while !self.text.is_char_boundary(cut) {
                cut -= 1;
            }
            self.text.truncate(cut);
        }
        let len = (self.text.len() - body) as u32;
        let mut prefix = [0u8; 4];
        let prefix = char::from_u32(TERM_PREFIX_BASE + len)
            .expect("a term of at most 1 KiB has a prefix char")
            .encode_utf8(&mut prefix);
        self.text.replace_range(start..body, prefix);
        self.ends.push(self.text.len() as u32);
    }

    /// Removes the last term.
    fn pop(&mut self) {
        self.ends.pop();
        self.text
            .truncate(self.ends.last().map_or(0, |&e| e as usize));
    }

    fn extend(&mut self, other: &Terms) {
        let base = self.text.len() as u32;
        self.text.push_str(&other.text);
        self.ends.extend(other.ends.iter().map(|e| e + base));
    }
}

impl std::fmt::Debug for Terms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl serde::Serialize for Terms {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'a> FromIterator<&'a str> for Terms {
    fn from_iter<I: IntoIterator<Item = &'a str>>(iter: I) -> Terms {
        let mut terms = Terms::default();
        for t in iter {
            terms.push(t);
        }
        terms
    }
}

impl<'a> IntoIterator for &'a Terms {
    type Item = &'a str;
    type IntoIter = TermsIter<'a>;
    fn into_iter(self) -> TermsIter<'a> {
        self.iter()
    }
}

/// The terms of a [`Terms`], in order.
#[derive(Clone)]
pub struct TermsIter<'a> {
    text: &'a str,
    ends: std::slice::Iter<'a, u32>,
    start: usize,
}

impl<'a> Iterator for TermsIter<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        let end = *self.ends.next()? as usize;
        let term = &self.text[self.start + TERM_PREFIX_BYTES..end];
        self.start = end;
        Some(term)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.ends.size_hint()
    }
}

impl ExactSizeIterator for TermsIter<'_> {}

/// What the index keeps of one span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanDoc {
    pub trace_id: [u8; 16],
    pub start_unix_nano: u64,
    pub duration_nanos: u64,
    pub service: String,
    pub operation: String,
    pub kind: String,
    pub error: bool,
    /// Status message, exception type and message; empty unless `error`.
    pub error_text: String,
    /// Business keys as `name=value`.
    pub keys: Vec<String>,
    /// Indexed attributes as `name=value` (see [`IndexedAttributes`]).
    pub attrs: Terms,
    /// The span's tenant: a field of its own in every index, never one of the terms above.
    pub tenant: clew_proto::Tenant,
}

impl SpanDoc {
    /// Extracts the indexed parts of `span`, with the attribute terms `indexed` selects.
    /// For a batch, [`SpanDoc::from_spans`] gives the same documents for less work.
    pub fn from_span(span: &Span, indexed: &IndexedAttributes) -> SpanDoc {
        SpanDocBuilder::new(indexed).doc(span)
    }

    /// The documents of a batch of spans, in order (see [`SpanDocBuilder`]).
    pub fn from_spans(spans: &[Span], indexed: &IndexedAttributes) -> Vec<SpanDoc> {
        let mut builder = SpanDocBuilder::new(indexed);
        spans.iter().map(|s| builder.doc(s)).collect()
    }

    /// The UTC day partition of the document.
    pub fn day(&self) -> u32 {
        day_of(self.start_unix_nano)
    }
}

/// Builds the [`SpanDoc`]s of one batch. The spans of one request share their resource and
/// scope (one `Arc` each from the OTLP conversion), so with every attribute indexed the
/// terms of each distinct resource and scope are formatted and hashed once per batch and
/// copied into each of its spans' documents in one piece, instead of being built, allocated
/// and deduplicated again for every span. The documents are exactly those of building each
/// span alone.
pub struct SpanDocBuilder<'s> {
    indexed: &'s IndexedAttributes,
    resources: SharedTerms<'s, Resource>,
    scopes: SharedTerms<'s, Scope>,
    /// Hashes of the current document's attribute terms, reused from span to span.
    seen: Seen,
}

impl<'s> SpanDocBuilder<'s> {
    pub fn new(indexed: &'s IndexedAttributes) -> Self {
        SpanDocBuilder {
            indexed,
            resources: SharedTerms::default(),
            scopes: SharedTerms::default(),
            seen: Seen::default(),
        }
    }

    /// The document of `span`; the span must outlive the builder (its resource and scope
    /// are remembered by address).
    pub fn doc(&mut self, span: &'s Span) -> SpanDoc {
        let error = span.is_error();
        let mut error_text = String::new();
        if error {
            error_text.push_str(&span.status_message);
            if let Some((ty, msg)) = span.exception() {
                error_text.push(' ');
                error_text.push_str(&ty);
                if msg != span.status_message {
                    error_text.push(' ');
                    error_text.push_str(&msg);
                }
            }
            truncate_at_char(&mut error_text, MAX_ERROR_TEXT_BYTES);
        }
        let keys = span
            .business_keys
            .iter()
            .map(|k| term_pair(&k.name, &k.value))
            .collect();
        let attrs = match self.indexed {
            IndexedAttributes::All => self.every_attribute_term(span),
            IndexedAttributes::Listed(names) => {
                let mut terms = Terms::default();
                for name in names.iter() {
                    if let Some(v) = span.attribute(name) {
                        terms.push(&term_pair(name, &value_to_string(v)));
                    }
                }
                terms
            }
        };
        SpanDoc {
            trace_id: span.trace_id.0,
            start_unix_nano: span.start_unix_nano,
            duration_nanos: span.duration_nanos(),
            service: bounded(&span.service_name),
            operation: bounded(&span.name),
            kind: span.kind.as_str().to_string(),
            error,
            error_text,
            keys,
            attrs,
            tenant: span.tenant.clone(),
        }
    }

    /// The distinct `name=value` terms of every scalar attribute of `span`: its own, then
    /// its resource's, scope's and events', at most [`MAX_ATTRIBUTE_TERMS_PER_SPAN`],
    /// skipping names and values over [`MAX_INDEXED_VALUE_BYTES`].
    fn every_attribute_term(&mut self, span: &'s Span) -> Terms {
        let resource = self.resources.get(&span.resource, |r| &r.attributes);
        let scope = self.scopes.get(&span.scope, |s| &s.attributes);
        let seen = &mut self.seen;
        seen.clear();
        let mut terms = Terms::with_capacity(
            span.attributes.len() + resource.terms.len() + scope.terms.len(),
            span.attributes.len() * 32 + resource.terms.text_len() + scope.terms.text_len(),
        );
        for kv in &span.attributes {
            if terms.len() == MAX_ATTRIBUTE_TERMS_PER_SPAN {
                return terms;
            }
            push_distinct(&mut terms, seen, kv);
        }
        for shared in [resource, scope] {
            if !extend_distinct(&mut terms, seen, shared) {
                return terms;
            }
        }
        for kv in span.events.iter().flat_map(|e| &e.attributes) {
            if terms.len() == MAX_ATTRIBUTE_TERMS_PER_SPAN {
                return terms;
            }
            push_distinct(&mut terms, seen, kv);
        }
        terms
    }
}

/// The distinct terms of one resource or scope, with their hashes.
#[derive(Default)]
struct HashedTerms {
    terms: Terms,
    hashes: Vec<u64>,
}

/// The [`HashedTerms`] of each distinct resource (or scope) of a batch, by address.
struct SharedTerms<'s, T> {
    by_address: HashMap<*const T, HashedTerms>,
    /// Borrows the values whose addresses are keys, so no address is reused meanwhile.
    _alive: std::marker::PhantomData<&'s T>,
}

impl<T> Default for SharedTerms<'_, T> {
    fn default() -> Self {
        SharedTerms {
            by_address: HashMap::new(),
            _alive: std::marker::PhantomData,
        }
    }
}

impl<'s, T> SharedTerms<'s, T> {
    fn get(&mut self, value: &'s Arc<T>, attributes: impl Fn(&T) -> &[KeyValue]) -> &HashedTerms {
        self.by_address
            .entry(Arc::as_ptr(value))
            .or_insert_with(|| {
                let attrs = attributes(value);
                let mut shared = HashedTerms {
                    terms: Terms::with_capacity(attrs.len(), attrs.len() * 32),
                    hashes: Vec::with_capacity(attrs.len()),
                };
                let mut seen = Seen::default();
                for kv in attrs {
                    if let Some(hash) = push_distinct(&mut shared.terms, &mut seen, kv) {
                        shared.hashes.push(hash);
                    }
                }
                shared
            })
    }
}

/// Appends the term of `kv` if it is a scalar within the size limits and not already in
/// `terms`; returns its hash if it was appended.
fn push_distinct(terms: &mut Terms, seen: &mut Seen, kv: &KeyValue) -> Option<u64> {
    let start = terms.begin_term();
    if !write_scalar_term(&mut terms.text, kv) {
        terms.text.truncate(start);
        return None;
    }
    terms.end_term(start);
    let start = start + TERM_PREFIX_BYTES;
    let hash = term_hash(&terms.text.as_bytes()[start..]);
    if seen.insert(hash) {
        return Some(hash);
    }
    // Same hash: new only if no earlier term is equal.
    let last = terms.len() - 1;
    let term = &terms.text[start..];
    if terms.iter().take(last).any(|t| t == term) {
        terms.pop();
        None
    } else {
        Some(hash)
    }
}

/// Appends the terms of `shared` not already in `terms`, up to the cap; returns false once
/// the cap is reached.
fn extend_distinct(terms: &mut Terms, seen: &mut Seen, shared: &HashedTerms) -> bool {
    if terms.len() + shared.terms.len() <= MAX_ATTRIBUTE_TERMS_PER_SPAN
        && !shared.hashes.iter().any(|h| seen.contains(h))
    {
        // The usual case: nothing in common with the span's own attributes.
        terms.extend(&shared.terms);
        seen.extend(shared.hashes.iter().copied());
        return true;
    }
    for (term, &hash) in shared.terms.iter().zip(&shared.hashes) {
        if terms.len() == MAX_ATTRIBUTE_TERMS_PER_SPAN {
            return false;
        }
        if seen.insert(hash) || !terms.contains(term) {
            terms.push(term);
        }
    }
    true
}

/// Writes `name=value` of a string, int, bool or double attribute within the size limits
/// (the value as [`value_to_string`] writes it); returns false, having written part of it
/// perhaps, for anything else.
fn write_scalar_term(out: &mut String, kv: &KeyValue) -> bool {
    use any_value::Value;
    if kv.key.is_empty() || kv.key.len() > MAX_INDEXED_VALUE_BYTES {
        return false;
    }
    let Some(value) = kv.value.as_ref().and_then(|v| v.value.as_ref()) else {
        return false;
    };
    if matches!(value, Value::StringValue(s) if s.len() > MAX_INDEXED_VALUE_BYTES) {
        return false;
    }
    out.push_str(&kv.key);
    out.push('=');
    match value {
        Value::StringValue(s) => out.push_str(s),
        Value::BoolValue(b) => out.push_str(if *b { "true" } else { "false" }),
        // What `value_to_string` writes, without `fmt`'s machinery (~3 ints a span).
        Value::IntValue(i) => out.push_str(itoa::Buffer::new().format(*i)),
        Value::DoubleValue(d) => {
            let _ = write!(out, "{d}");
        }
        _ => return false,
    }
    true
}

/// Hashes of the terms of one document: finds duplicates without comparing strings (a
/// hash already present is then checked by comparing).
type Seen = HashSet<u64, BuildHasherDefault<PassThrough>>;

/// The hasher of [`Seen`], whose keys are hashes already.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// A fast 64-bit hash of a term (word at a time); collisions are resolved by comparing.
fn term_hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w.try_into().expect("8 bytes"))).wrapping_mul(K);
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    // Spread the high bits into the low ones the table indexes by.
    h ^ (h >> 32)
}

/// The exact `name=value` term of a business key or an indexed attribute.
pub fn term_pair(name: &str, value: &str) -> String {
    let mut t = String::with_capacity(name.len() + value.len() + 1);
    t.push_str(name);
    t.push('=');
    t.push_str(value);
    truncate_at_char(&mut t, MAX_TERM_BYTES);
    t
}

fn bounded(s: &str) -> String {
    let mut s = s.to_string();
    truncate_at_char(&mut s, MAX_TERM_BYTES);
    s
}

pub(crate) fn truncate_at_char(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::fixtures::{checkout_trace, kv, trace_id, BASE_TIME};

    #[test]
    fn extracts_keys_attributes_and_error_text() {
        let spans = checkout_trace(trace_id(1), "12345", BASE_TIME, true);
        let attrs = IndexedAttributes::from_names(&[
            "db.system".to_string(),
            "http.route".to_string(),
            "host.name".to_string(),
        ]);
        let root = SpanDoc::from_span(&spans[0], &attrs);
        assert_eq!(root.keys, vec!["order_id=12345"]);
        assert!(!root.error && root.error_text.is_empty());
        assert!(
            root.attrs.contains("host.name=host-1"),
            "resource attribute"
        );
        let db = SpanDoc::from_span(&spans[3], &attrs);
        assert!(db.error);
        assert!(db.error_text.contains("PaymentDeclinedError"));
        assert!(db.error_text.contains("card declined"));
        assert!(db.attrs.contains("db.system=postgresql"));
        assert_eq!(db.service, "payments");
    }

    #[test]
    fn listed_attributes_index_only_those_names() {
        let spans = checkout_trace(trace_id(1), "12345", BASE_TIME, true);
        let listed = IndexedAttributes::from_names(&["db.system".to_string()]);
        assert_eq!(
            SpanDoc::from_span(&spans[3], &listed)
                .attrs
                .iter()
                .collect::<Vec<_>>(),
            vec!["db.system=postgresql"]
        );
        assert!(listed.covers("db.system", "x"));
        assert!(!listed.covers("http.route", "/"));
    }

    #[test]
    fn every_attribute_of_span_resource_scope_and_events_is_a_term() {
        use clew_proto::model::{AnyValue, Event};
        let mut span = checkout_trace(trace_id(1), "12345", BASE_TIME, true).remove(3);
        let scalar = |key: &str, v: any_value::Value| KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        };
        span.attributes
            .push(scalar("retry", any_value::Value::IntValue(3)));
        span.attributes
            .push(scalar("cached", any_value::Value::BoolValue(false)));
        span.attributes
            .push(scalar("ratio", any_value::Value::DoubleValue(0.5)));
        span.attributes.push(scalar(
            "db.statement",
            any_value::Value::StringValue("x".repeat(MAX_INDEXED_VALUE_BYTES + 1)),
        ));
        span.attributes
            .push(scalar("blob", any_value::Value::BytesValue(vec![1, 2, 3])));
        span.events.push(Event {
            name: "cache.miss".into(),
            attributes: vec![kv("cache.key", "user:7")],
            ..Default::default()
        });
        let all = IndexedAttributes::from_names(&["http.route".into(), "*".into()]);
        assert_eq!(all, IndexedAttributes::All);
        let attrs = SpanDoc::from_span(&span, &all).attrs;
        for term in [
            "db.system=postgresql",
            "retry=3",
            "cached=false",
            "ratio=0.5",
            "host.name=host-1",
            "telemetry.sdk.language=rust",
            "cache.key=user:7",
            "exception.type=PaymentDeclinedError",
        ] {
            assert!(attrs.contains(term), "{term} in {attrs:?}");
        }
        assert!(
            !attrs
                .iter()
                .any(|t| t.starts_with("db.statement=") || t.starts_with("blob=")),
            "long values and bytes stay out of the index: {attrs:?}"
        );
        let distinct: HashSet<_> = attrs.iter().collect();
        assert_eq!(distinct.len(), attrs.len(), "terms are distinct");
        assert!(all.covers("anything", "short"));
        assert!(!all.covers("anything", &"x".repeat(MAX_INDEXED_VALUE_BYTES + 1)));
    }

    #[test]
    fn a_span_contributes_at_most_the_term_cap() {
        let mut span = checkout_trace(trace_id(1), "1", BASE_TIME, false).remove(0);
        for i in 0..MAX_ATTRIBUTE_TERMS_PER_SPAN * 2 {
            span.attributes.push(kv(&format!("a{i}"), "v"));
        }
        let attrs = SpanDoc::from_span(&span, &IndexedAttributes::All).attrs;
        assert_eq!(attrs.len(), MAX_ATTRIBUTE_TERMS_PER_SPAN);
        assert!(attrs.contains("a0=v"), "the span's own attributes first");
    }

    /// The term builder before the per-batch one: one `String` per term and a set of
    /// copies. The batch builder must give exactly its terms, in its order.
    fn reference_terms(span: &Span) -> Vec<String> {
        fn scalar_term(kv: &KeyValue) -> Option<String> {
            use any_value::Value;
            if kv.key.is_empty() || kv.key.len() > MAX_INDEXED_VALUE_BYTES {
                return None;
            }
            let value = kv.value.as_ref()?;
            match value.value.as_ref()? {
                Value::StringValue(s) if s.len() > MAX_INDEXED_VALUE_BYTES => None,
                Value::StringValue(_)
                | Value::BoolValue(_)
                | Value::IntValue(_)
                | Value::DoubleValue(_) => Some(term_pair(&kv.key, &value_to_string(value))),
                _ => None,
            }
        }
        let sources = std::iter::once(&span.attributes)
            .chain(std::iter::once(&span.resource.attributes))
            .chain(std::iter::once(&span.scope.attributes))
            .chain(span.events.iter().map(|e| &e.attributes));
        let mut terms = Vec::new();
        let mut seen = HashSet::new();
        'sources: for attrs in sources {
            for kv in attrs {
                if terms.len() == MAX_ATTRIBUTE_TERMS_PER_SPAN {
                    break 'sources;
                }
                if let Some(term) = scalar_term(kv) {
                    if seen.insert(term.clone()) {
                        terms.push(term);
                    }
                }
            }
        }
        terms
    }

    #[test]
    fn a_batch_gives_the_terms_of_each_span_alone() {
        use clew_proto::model::{AnyValue, Event};
        let int = |key: &str, i: i64| KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::IntValue(i)),
            }),
            ..Default::default()
        };
        let mut spans = checkout_trace(trace_id(1), "12345", BASE_TIME, true);
        spans.extend(checkout_trace(trace_id(2), "777", BASE_TIME, false));
        // One resource shared by several spans, with a duplicate inside it.
        let mut resource = (*spans[0].resource).clone();
        resource.attributes.push(kv("host.name", "host-1"));
        resource.attributes.push(int("process.pid", 42));
        let resource = Arc::new(resource);
        for s in spans.iter_mut().take(3) {
            s.resource = resource.clone();
        }
        // A span attribute equal to a resource one, and one equal in name only.
        spans[1].attributes.push(kv("host.name", "host-1"));
        spans[2].attributes.push(kv("host.name", "other"));
        // Duplicates among the span's own attributes and in its events.
        spans[4].attributes.push(kv("db.system", "postgresql"));
        spans[4].events.push(Event {
            name: "retry".into(),
            attributes: vec![kv("db.system", "postgresql"), int("attempt", 2)],
            ..Default::default()
        });
        // Near the cap: the resource's terms only partly fit.
        for i in 0..MAX_ATTRIBUTE_TERMS_PER_SPAN - 2 {
            spans[5].attributes.push(kv(&format!("a{i}"), "v"));
        }
        let all = IndexedAttributes::All;
        let batch = SpanDoc::from_spans(&spans, &all);
        assert_eq!(batch.len(), spans.len());
        for (span, doc) in spans.iter().zip(&batch) {
            assert_eq!(doc, &SpanDoc::from_span(span, &all));
            let terms: Vec<&str> = doc.attrs.iter().collect();
            assert_eq!(terms, reference_terms(span));
        }
        assert_eq!(batch[5].attrs.len(), MAX_ATTRIBUTE_TERMS_PER_SPAN);
    }

    #[test]
    fn int_terms_are_written_as_value_to_string_writes_them() {
        for i in [0, 7, -1, 42, 8080, i64::MIN, i64::MAX, -1_000_000_007] {
            let v = clew_proto::model::AnyValue {
                value: Some(any_value::Value::IntValue(i)),
            };
            let kv = KeyValue {
                key: "n".into(),
                value: Some(v.clone()),
                ..Default::default()
            };
            let mut out = String::new();
            assert!(write_scalar_term(&mut out, &kv));
            assert_eq!(out, format!("n={}", value_to_string(&v)));
        }
    }

    #[test]
    fn terms_keep_their_order_and_cut_long_ones() {
        let mut terms: Terms = ["a=1", "b=2"].into_iter().collect();
        terms.push(&"x".repeat(MAX_TERM_BYTES + 10));
        assert_eq!(terms.len(), 3);
        assert_eq!(terms.get(1), Some("b=2"));
        assert_eq!(terms.get(2).map(str::len), Some(MAX_TERM_BYTES));
        terms.pop();
        assert_eq!(terms.iter().collect::<Vec<_>>(), vec!["a=1", "b=2"]);
        assert_eq!(serde_json::to_string(&terms).unwrap(), r#"["a=1","b=2"]"#);
        assert_eq!(terms.text_len(), 6);
        assert_eq!(terms.joined(), "\u{83}a=1\u{83}b=2");
        assert_eq!(terms.get(2), None);
    }
}
