//! The span-document schema, shared by the writer and the searcher. Day partitions are
//! named by `trace_index::days`, like OpenSearch's daily indices.

use tantivy::schema::{
    BytesOptions, Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions,
};

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

pub use crate::trace_index::days::{day_dir_name, day_of, parse_day_dir_name, DAY_NANOS};

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
    pub kind: Field,
    pub error: Field,
    pub error_text: Field,
    pub keys: Field,
    pub attrs: Field,
    pub tenant: Field,
    pub tenant_operation: Field,
}

impl Fields {
    pub fn new() -> Self {
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
        let kind = b.add_text_field(KIND, exact.clone());
        let error = b.add_text_field(ERROR, exact.clone());
        let error_text = b.add_text_field(ERROR_TEXT, text);
        let keys = b.add_text_field(KEYS, exact.clone());
        let attrs = b.add_text_field(ATTRS, exact.clone());
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
            kind,
            error,
            error_text,
            keys,
            attrs,
            tenant,
            tenant_operation,
        }
    }
}
