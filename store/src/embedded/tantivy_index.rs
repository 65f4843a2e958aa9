//! Embedded trace index on tantivy. (stub: being implemented)

use std::sync::Arc;

use async_trait::async_trait;
use clew_proto::Span;

use crate::config::{Common, IndexConfig};
use crate::{Error, Result, TraceIdPage, TraceIndex, TraceQuery};

pub struct TantivyTraceIndex;

impl TantivyTraceIndex {
    pub fn open(_config: &IndexConfig, _common: &Common) -> Result<Self> {
        Err(Error::Config("embedded trace index not implemented yet".into()))
    }
}

#[async_trait]
impl TraceIndex for TantivyTraceIndex {
    async fn index_spans(&self, _spans: Arc<[Span]>) -> Result<()> {
        unimplemented!()
    }
    async fn find_trace_ids(&self, _query: &TraceQuery) -> Result<TraceIdPage> {
        unimplemented!()
    }
    async fn services(&self) -> Result<Vec<String>> {
        unimplemented!()
    }
    async fn operations(&self, _service: &str) -> Result<Vec<String>> {
        unimplemented!()
    }
    async fn refresh(&self) -> Result<()> {
        unimplemented!()
    }
    async fn drop_expired(&self, _now_unix_nano: u64) -> Result<u64> {
        unimplemented!()
    }
    async fn close(&self) -> Result<()> {
        unimplemented!()
    }
}
