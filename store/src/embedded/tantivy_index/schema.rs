//! The span-document schema, shared by the writer and the searcher. Day partitions are
//! named by `trace_index::days`, like OpenSearch's daily indices.

use tantivy::schema::{
    BytesOptions, Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

#[cfg(doc)]
use crate::trace_index::span_doc::Terms;
use crate::trace_index::span_doc::TERM_PREFIX_BASE;

/// Field names (the only place they are spelled).
pub const TRACE_ID: &str = "trace_id";
pub const START: &str = "start";
pub const DURATION: &str = "duration";
pub const SERVICE: &str = "service";
pub const OPERATION: &str = "operation";
pub const SERVICE_OPERATION: &str = "service_operation";
pub const KIND: &str = "kind";
pub const ERROR: &str = "error";
pub const ERROR_TEXT: &str = "error_text";
pub const KEYS: &str = "keys";
pub const ATTRS: &str = "attrs";
/// The span's tenant (raw term); every search of a partition that has it requires it.
pub const TENANT: &str = "tenant";
/// `tenant\0service\0operation`: the services and operations of one tenant as a prefix
/// range of the dictionary.
pub const TENANT_OPERATION: &str = "tenant_operation";

/// The one term of the `error` field, present on error spans only.
pub const ERROR_TERM: &str = "1";
/// Separator of the combined `service\0operation` term.
pub const SERVICE_OPERATION_SEP: char = '\0';
/// Tokenizer of `error_text`, used for documents and for query text alike
/// (`trace_index::query_plan::words`).
pub const TEXT_TOKENIZER: &str = crate::trace_index::query_plan::TEXT_ANALYZER;
/// Tokenizer of `attrs`: a span's attribute terms arrive as one joined value
/// ([`TermsTokenizer`]).
pub const TERMS_TOKENIZER: &str = "clew_terms";

pub use crate::trace_index::days::{day_dir_name, day_of, parse_day_dir_name};

/// Handles of the schema's fields.
#[derive(Clone, Debug)]
pub struct Fields {
    pub schema: Schema,
    pub trace_id: Field,
    pub start: Field,
    pub duration: Field,
    pub service: Field,
    pub operation: Field,
    pub service_operation: Field,
    pub error: Field,
    pub error_text: Field,
    pub keys: Field,
    pub attrs: Field,
    pub tenant: Field,
    pub tenant_operation: Field,
}

/// How a partition's `attrs` field takes a span's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttrsLayout {
    /// One field value holding every term ([`Terms::joined`], [`TERMS_TOKENIZER`]): what
    /// partitions are created with.
    Joined,
    /// One field value per term (the `raw` tokenizer): partitions written before the
    /// joined layout. Same fields, same terms; only the tokenizer name in the schema
    /// differs.
    PerTerm,
}

impl Fields {
    /// The schema new partitions are created with.
    pub fn new() -> Self {
        Fields::with_layout(AttrsLayout::Joined)
    }

    /// The schema of a partition with the given `attrs` layout; field ids do not depend
    /// on the layout.
    pub fn with_layout(layout: AttrsLayout) -> Self {
        // Nothing is stored and nothing is scored: no doc store, no field norms, no
        // positions. Exact terms only need doc ids (`Basic`).
        let exact = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("raw")
                .set_fieldnorms(false)
                .set_index_option(IndexRecordOption::Basic),
        );
        let text = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(TEXT_TOKENIZER)
                .set_fieldnorms(false)
                .set_index_option(IndexRecordOption::Basic),
        );
        let attrs_options = match layout {
            AttrsLayout::Joined => TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(TERMS_TOKENIZER)
                    .set_fieldnorms(false)
                    .set_index_option(IndexRecordOption::Basic),
            ),
            AttrsLayout::PerTerm => exact.clone(),
        };
        // Times are fast-only: range queries run on the column, so no per-value terms.
        let fast_u64 = NumericOptions::default().set_fast();

        let mut b = Schema::builder();
        let trace_id =
            b.add_bytes_field(TRACE_ID, BytesOptions::default().set_indexed().set_fast());
        let start = b.add_u64_field(START, fast_u64.clone());
        let duration = b.add_u64_field(DURATION, fast_u64);
        let service = b.add_text_field(SERVICE, exact.clone());
        let operation = b.add_text_field(OPERATION, exact.clone());
        let service_operation = b.add_text_field(SERVICE_OPERATION, exact.clone());
        // Not filled any more (no search asks for the span kind); kept so that the
        // partitions' schemas stay as they are.
        b.add_text_field(KIND, exact.clone());
        let error = b.add_text_field(ERROR, exact.clone());
        let error_text = b.add_text_field(ERROR_TEXT, text);
        let keys = b.add_text_field(KEYS, exact.clone());
        let attrs = b.add_text_field(ATTRS, attrs_options);
        // Added with tenants, last, so the fields before keep their ids: a partition
        // created before has exactly the fields above (`Partition::open`).
        let tenant = b.add_text_field(TENANT, exact.clone());
        let tenant_operation = b.add_text_field(TENANT_OPERATION, exact);
        Fields {
            schema: b.build(),
            trace_id,
            start,
            duration,
            service,
            operation,
            service_operation,
            error,
            error_text,
            keys,
            attrs,
            tenant,
            tenant_operation,
        }
    }
}

/// The `attrs` layout of a partition's schema, by the tokenizer its `attrs` field names.
pub fn attrs_layout(schema: &Schema) -> AttrsLayout {
    let tokenizer = schema
        .get_field(ATTRS)
        .ok()
        .map(|f| schema.get_field_entry(f).field_type())
        .and_then(|t| match t {
            tantivy::schema::FieldType::Str(options) => options.get_indexing_options(),
            _ => None,
        })
        .map(|indexing| indexing.tokenizer());
    if tokenizer == Some(TERMS_TOKENIZER) {
        AttrsLayout::Joined
    } else {
        AttrsLayout::PerTerm
    }
}

/// Registers the tokenizers the schema names beyond tantivy's own on `index`.
pub fn register_tokenizers(index: &tantivy::Index) {
    index
        .tokenizers()
        .register(TERMS_TOKENIZER, TermsTokenizer::default());
}

/// The terms of a joined value ([`Terms::joined`]: each term behind a `char` of code point
/// U+0080 + its byte length), in order, each with its byte offset in the value; a
/// malformed value ends early.
#[derive(Clone)]
pub struct JoinedTerms<'a> {
    rest: &'a str,
    offset: usize,
}

impl<'a> JoinedTerms<'a> {
    pub fn new(joined: &'a str) -> Self {
        JoinedTerms {
            rest: joined,
            offset: 0,
        }
    }
}

impl<'a> Iterator for JoinedTerms<'a> {
    type Item = (usize, &'a str);

    fn next(&mut self) -> Option<(usize, &'a str)> {
        let mut chars = self.rest.chars();
        let len = (chars.next()? as u32).checked_sub(TERM_PREFIX_BASE)? as usize;
        let after = chars.as_str();
        let Some(term) = after.get(..len) else {
            self.rest = "";
            return None;
        };
        let start = self.offset + (self.rest.len() - after.len());
        self.offset = start + len;
        self.rest = &after[len..];
        Some((start, term))
    }
}

/// Splits a joined value ([`Terms::joined`]) back into its terms, one token each: a
/// span's ~20 attribute terms reach tantivy as one field value, so its writer handles
/// one value (one token stream, one pass of each of its per-value loops) instead of one
/// per term.
#[derive(Clone, Default)]
pub struct TermsTokenizer {
    token: Token,
}

pub struct TermsTokenStream<'a> {
    terms: JoinedTerms<'a>,
    token: &'a mut Token,
}

impl Tokenizer for TermsTokenizer {
    type TokenStream<'a> = TermsTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> TermsTokenStream<'a> {
        self.token.reset();
        TermsTokenStream {
            terms: JoinedTerms::new(text),
            token: &mut self.token,
        }
    }
}

impl TokenStream for TermsTokenStream<'_> {
    fn advance(&mut self) -> bool {
        let Some((start, term)) = self.terms.next() else {
            return false;
        };
        self.token.text.clear();
        self.token.text.push_str(term);
        self.token.offset_from = start;
        self.token.offset_to = start + term.len();
        self.token.position = self.token.position.wrapping_add(1);
        self.token.position_length = 1;
        true
    }

    fn token(&self) -> &Token {
        self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        self.token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(text: &str) -> Vec<String> {
        let mut tokenizer = TermsTokenizer::default();
        let mut stream = tokenizer.token_stream(text);
        let mut out = Vec::new();
        while stream.advance() {
            out.push(stream.token().text.clone());
        }
        out
    }

    #[test]
    fn joined_terms_split_back_into_the_same_terms() {
        let long = "k=".to_string() + &"é".repeat(511);
        let terms = [
            "a=1",
            "",
            "sep=\u{0}\u{3}x",
            "ünï=cödé",
            long.as_str(),
            "z=9",
        ];
        let joined: crate::trace_index::span_doc::Terms = terms.into_iter().collect();
        let joined = joined.joined();
        assert_eq!(tokens(joined), terms);
        let split: Vec<&str> = JoinedTerms::new(joined).map(|(_, t)| t).collect();
        assert_eq!(split, terms);
        assert!(tokens("").is_empty());
        assert!(tokens("\u{7f}a").is_empty(), "no prefix: malformed");
        // Truncated: the terms before the cut, then the stream ends.
        let cut = joined.len() - 2;
        assert_eq!(tokens(&joined[..cut]), &terms[..terms.len() - 1]);
    }

    #[test]
    fn field_ids_do_not_depend_on_the_layout() {
        let (joined, per_term) = (Fields::new(), Fields::with_layout(AttrsLayout::PerTerm));
        assert_eq!(joined.attrs, per_term.attrs);
        assert_eq!(joined.keys, per_term.keys);
        assert_eq!(joined.trace_id, per_term.trace_id);
        assert_ne!(joined.schema, per_term.schema);
    }
}
