//! The embedded backends of `clew serve`: everything under one data directory.

pub mod fjall_store;
pub mod tantivy_index;
