//! The HBase backend: the span store on HBase through its Thrift1 server.
//!
//! - [`span_store`]: [`HbaseSpanStore`], the row layout and the write/read paths.
//! - [`connection`]: the blocking Thrift client pool and error classification.

pub mod connection;
pub mod span_store;

pub use span_store::HbaseSpanStore;
