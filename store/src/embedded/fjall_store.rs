//! Embedded span store on fjall. (stub: being implemented)

use std::sync::Arc;

use async_trait::async_trait;
use clew_proto::{Span, TraceId};

use crate::config::{Common, StoreConfig};
use crate::{Error, Result, SpanStore, StoredTrace, WriteReport};

pub struct FjallSpanStore;

impl FjallSpanStore {
    pub fn open(_config: &StoreConfig, _common: &Common) -> Result<Self> {
        Err(Error::Config("embedded span store not implemented yet".into()))
    }
}

#[async_trait]
impl SpanStore for FjallSpanStore {
    async fn write_spans(&self, _spans: Arc<[Span]>) -> Result<WriteReport> {
        unimplemented!()
    }
    async fn get_trace(&self, _trace_id: TraceId) -> Result<Option<StoredTrace>> {
        unimplemented!()
    }
    async fn get_traces(&self, _trace_ids: &[TraceId]) -> Result<Vec<StoredTrace>> {
        unimplemented!()
    }
    async fn drop_expired(&self, _now_unix_nano: u64) -> Result<u64> {
        unimplemented!()
    }
    async fn close(&self) -> Result<()> {
        unimplemented!()
    }
}
