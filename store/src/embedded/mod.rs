//! The embedded backends of `clew serve`: everything under one data directory.
//!
//! - [`config`]: `[store]` and `[index]` with `type = "embedded"`.
//! - [`fjall_store`]: the span store on fjall.
//! - [`tantivy_index`]: the trace index on tantivy.
//! - [`background`]: tantivy's merges at a lower CPU priority than ingest.

pub mod background;
pub mod config;
pub mod fjall_store;
pub mod tantivy_index;
