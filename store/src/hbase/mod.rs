//! The HBase backend: the span store on HBase through its Thrift1 server.
//!
//! - [`config`]: `[store] type = "hbase"`, always compiled so every binary reads it.
//! - `span_store` (feature `hbase`): [`HbaseSpanStore`], the row layout and the
//!   write/read paths.
//! - `connection` (feature `hbase`): the blocking Thrift client pool and error
//!   classification.

pub mod config;
#[cfg(feature = "hbase")]
pub mod connection;
#[cfg(feature = "hbase")]
pub mod span_store;

pub use config::{HbaseStoreConfig, HbaseTransport};
#[cfg(feature = "hbase")]
pub use span_store::HbaseSpanStore;
