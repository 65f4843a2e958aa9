//! Jaeger v2's remote-storage gRPC API (`jaeger.storage.v2`): the `TraceReader` and
//! `DependencyReader` an unmodified Jaeger v2 with a `grpc` storage backend calls, so that
//! Jaeger's query service, its APIs and its UI show what clew stores.
//!
//! ```text
//!  Jaeger query ──grpc──▶ TraceReader.FindTraces ─▶ TraceSearch ─▶ jaeger::find_traces ─▶ to_otlp chunks (stream)
//!                         TraceReader.GetTraces  ─────────────────▶ fetch_traces ───────▶ to_otlp chunks (stream)
//!                         GetServices / GetOperations ────────────▶ index / jaeger::list_operations
//!                         DependencyReader.GetDependencies ───────▶ jaeger::dependency_links
//! ```
//!
//! Every answer is the one clew's Jaeger HTTP API gives for the same question (the same
//! functions compute both): the same search semantics (one span satisfies every
//! condition, newest first), the same operations with their span kinds, the same
//! dependency counts. Traces travel as OTLP, exactly as stored; Jaeger's query service
//! applies its own adjusters to them.
//!
//! - `GetTraces` leaves unknown ids out (no error: Jaeger v2's reader contract) and ignores
//!   the optional time range (a trace is one row read either way). A trace is sent as
//!   consecutive chunks of at most [`CHUNK_BYTES`], which Jaeger joins again.
//! - `FindTraces`/`FindTraceIDs`: `search_depth` is the most traces to return and must be
//!   at least 1 (INVALID_ARGUMENT otherwise, as Jaeger's memory store); above clew's
//!   1000 it is cut to 1000. Attribute values are compared as text (pdata's `AsString`).
//!   A missing time bound is no bound.
//! - Errors map through [`crate::Error::to_grpc_status`]: bad queries INVALID_ARGUMENT,
//!   a store or index that cannot answer UNAVAILABLE.
//!
//! Writes are not part of these two services: Jaeger exports OTLP (`TraceService/Export`)
//! to its `writer` endpoint, which is clew's OTLP/gRPC receiver.

use std::future::Future;
use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};

use clew_proto::jaeger_storage::v2 as pb;
use clew_proto::otlp::common::v1 as otlp_common;
use clew_proto::otlp::trace::v1::TracesData;
use clew_proto::to_otlp::traces_data_chunks;
use clew_proto::TraceId;
use clew_store::StoredTrace;
use futures::Stream;
use pb::dependency_reader_server::{DependencyReader, DependencyReaderServer};
use pb::trace_reader_server::{TraceReader, TraceReaderServer};
use tonic::{Request, Response, Status};

use super::params::TraceSearch;
use super::{dependency_links, find_traces, list_operations, translate};
use crate::auth::Caller;
use crate::error::Error;
use crate::fetch_traces::fetch_traces;
use crate::QueryState;

/// Most encoded bytes of one streamed `TracesData` message (Go's gRPC clients accept
/// 4 MiB by default).
pub const CHUNK_BYTES: usize = 1 << 20;

/// Largest request accepted (a `GetTraces` asking for many ids, a query with many
/// attributes).
pub const MAX_REQUEST_BYTES: usize = 4 << 20;

/// Both services over one [`QueryState`].
#[derive(Clone)]
pub struct JaegerStorage {
    state: QueryState,
}

type TraceStream = Pin<Box<dyn Stream<Item = Result<TracesData, Status>> + Send>>;

impl JaegerStorage {
    pub fn new(state: QueryState) -> Self {
        JaegerStorage { state }
    }

    pub fn trace_reader(&self) -> TraceReaderServer<JaegerStorage> {
        TraceReaderServer::new(self.clone()).max_decoding_message_size(MAX_REQUEST_BYTES)
    }

    pub fn dependency_reader(&self) -> DependencyReaderServer<JaegerStorage> {
        DependencyReaderServer::new(self.clone()).max_decoding_message_size(MAX_REQUEST_BYTES)
    }
}

/// Serves both services on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: QueryState,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "jaeger remote storage (grpc) listening");
    }
    let auth = clew_auth::AuthLayer::grpc(
        state.auth.clone(),
        "jaeger_storage_grpc",
        clew_auth::layer::read_everywhere,
    );
    let storage = JaegerStorage::new(state);
    let app = tonic::service::Routes::new(storage.trace_reader())
        .add_service(storage.dependency_reader())
        .into_axum_router()
        .layer(auth);
    clew_net::serve(
        "jaeger remote storage grpc",
        listener,
        clew_net::Protocol::Grpc,
        app,
        shutdown,
    )
    .await
}

fn invalid(message: impl Into<String>) -> Status {
    Error::bad_request(message).to_grpc_status()
}

/// Unix nanoseconds of a timestamp, saturating; `None` for an absent one.
fn timestamp_nanos(t: Option<&prost_types::Timestamp>) -> Option<i64> {
    t.map(|t| {
        let nanos = i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
        nanos.clamp(0, i128::from(i64::MAX)) as i64
    })
}

fn timestamp(unix_nano: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: (unix_nano / 1_000_000_000) as i64,
        nanos: (unix_nano % 1_000_000_000) as i32,
    }
}

fn duration_nanos(name: &str, d: Option<&prost_types::Duration>) -> Result<i64, Status> {
    let Some(d) = d else { return Ok(0) };
    let nanos = i128::from(d.seconds) * 1_000_000_000 + i128::from(d.nanos);
    if nanos < 0 {
        return Err(invalid(format!("{name} must not be negative")));
    }
    Ok(nanos.min(i128::from(i64::MAX)) as i64)
}

/// A query attribute value as OTLP's `AnyValue` (the two messages have the same shape).
fn otlp_value(v: &pb::AnyValue) -> otlp_common::AnyValue {
    use otlp_common::any_value::Value as O;
    use pb::any_value::Value as P;
    let value = v.value.as_ref().map(|v| match v {
        P::StringValue(s) => O::StringValue(s.clone()),
        P::BoolValue(b) => O::BoolValue(*b),
        P::IntValue(i) => O::IntValue(*i),
        P::DoubleValue(d) => O::DoubleValue(*d),
        P::BytesValue(b) => O::BytesValue(b.clone()),
        P::ArrayValue(a) => O::ArrayValue(otlp_common::ArrayValue {
            values: a.values.iter().map(otlp_value).collect(),
        }),
        P::KvlistValue(l) => O::KvlistValue(otlp_common::KeyValueList {
            values: l
                .values
                .iter()
                .map(|kv| otlp_common::KeyValue {
                    key: kv.key.clone(),
                    value: kv.value.as_ref().map(otlp_value),
                    ..Default::default()
                })
                .collect(),
        }),
    });
    otlp_common::AnyValue { value }
}

/// The request's query as the [`TraceSearch`] the Jaeger HTTP API builds from its
/// parameters; INVALID_ARGUMENT for what no search can mean.
pub fn trace_search(query: Option<&pb::TraceQueryParameters>) -> Result<TraceSearch, Status> {
    let Some(q) = query else {
        return Err(invalid("query is required"));
    };
    if q.search_depth <= 0 {
        return Err(invalid(format!(
            "search_depth must be at least 1, got {}",
            q.search_depth
        )));
    }
    let min = duration_nanos("duration_min", q.duration_min.as_ref())?;
    let max = duration_nanos("duration_max", q.duration_max.as_ref())?;
    if min != 0 && max != 0 && max < min {
        return Err(invalid("duration_max must not be less than duration_min"));
    }
    let start_min = timestamp_nanos(q.start_time_min.as_ref()).unwrap_or(0);
    let start_max = timestamp_nanos(q.start_time_max.as_ref()).unwrap_or(i64::MAX);
    let mut tags = std::collections::BTreeMap::new();
    for kv in &q.attributes {
        // Jaeger's server drops attributes without a value
        if let Some(value) = &kv.value {
            tags.insert(kv.key.clone(), translate::as_string(&otlp_value(value)));
        }
    }
    Ok(TraceSearch {
        service: q.service_name.clone(),
        operation: q.operation_name.clone(),
        tags,
        start_min_nanos: start_min,
        start_max_nanos: start_max,
        min_duration_nanos: min,
        max_duration_nanos: max,
        limit: i64::from(q.search_depth),
        trace_ids: Vec::new(),
        raw: true,
    })
}

/// The stream of chunks of `traces`, in order, built off the reactor.
async fn stream(traces: Vec<StoredTrace>) -> Result<TraceStream, Status> {
    let chunks = tokio::task::spawn_blocking(move || {
        traces
            .iter()
            .flat_map(|t| traces_data_chunks(&t.spans, CHUNK_BYTES))
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|_| {
        Error::Worker {
            doing: "failed to convert traces to otlp",
        }
        .to_grpc_status()
    })?;
    Ok(Box::pin(futures::stream::iter(chunks.into_iter().map(Ok))))
}

#[tonic::async_trait]
impl TraceReader for JaegerStorage {
    type GetTracesStream = TraceStream;
    type FindTracesStream = TraceStream;

    async fn get_traces(
        &self,
        request: Request<pb::GetTracesRequest>,
    ) -> Result<Response<TraceStream>, Status> {
        let tenant = Caller::of(request.extensions());
        let mut ids = Vec::new();
        for (i, q) in request.get_ref().query.iter().enumerate() {
            if q.trace_id.len() != 16 {
                return Err(invalid(format!(
                    "query[{i}].trace_id must be 16 bytes, got {}",
                    q.trace_id.len()
                )));
            }
            // the all-zero id names no trace
            if let Ok(id) = TraceId::from_bytes(&q.trace_id) {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        let traces = fetch_traces(self.state.store.as_ref(), &tenant, &ids, self.state.timeout)
            .await
            .map_err(|e| e.to_grpc_status())?;
        stream(traces).await.map(Response::new)
    }

    async fn get_services(
        &self,
        request: Request<pb::GetServicesRequest>,
    ) -> Result<Response<pb::GetServicesResponse>, Status> {
        let tenant = Caller::of(request.extensions());
        let doing = "failed to list services from the trace index";
        let services = match tokio::time::timeout(
            self.state.timeout,
            self.state.index.services(&tenant),
        )
        .await
        {
            Ok(Ok(services)) => services,
            Ok(Err(e)) => return Err(Error::backend(doing, e).to_grpc_status()),
            Err(_) => {
                return Err(Error::Timeout {
                    doing: doing.into(),
                    after: self.state.timeout,
                }
                .to_grpc_status())
            }
        };
        Ok(Response::new(pb::GetServicesResponse { services }))
    }

    async fn get_operations(
        &self,
        request: Request<pb::GetOperationsRequest>,
    ) -> Result<Response<pb::GetOperationsResponse>, Status> {
        let q = request.get_ref();
        if q.service.is_empty() {
            return Err(invalid("service is required"));
        }
        let operations = list_operations(
            &self.state,
            &Caller::of(request.extensions()),
            &q.service,
            &q.span_kind,
        )
        .await
        .map_err(|e| e.to_grpc_status())?
        .into_iter()
        .map(|(name, span_kind)| pb::Operation { name, span_kind })
        .collect();
        Ok(Response::new(pb::GetOperationsResponse { operations }))
    }

    async fn find_traces(
        &self,
        request: Request<pb::FindTracesRequest>,
    ) -> Result<Response<TraceStream>, Status> {
        let search = trace_search(request.get_ref().query.as_ref())?;
        let traces = find_traces(&self.state, &Caller::of(request.extensions()), &search)
            .await
            .map_err(|e| e.to_grpc_status())?;
        stream(traces).await.map(Response::new)
    }

    async fn find_trace_i_ds(
        &self,
        request: Request<pb::FindTracesRequest>,
    ) -> Result<Response<pb::FindTraceIDsResponse>, Status> {
        let search = trace_search(request.get_ref().query.as_ref())?;
        let traces = find_traces(&self.state, &Caller::of(request.extensions()), &search)
            .await
            .map_err(|e| e.to_grpc_status())?;
        let trace_ids = traces
            .iter()
            .filter(|t| !t.spans.is_empty())
            .map(|t| {
                let start = t.spans.iter().map(|s| s.start_unix_nano).min();
                let end = t.spans.iter().map(|s| s.end_unix_nano).max();
                pb::FoundTraceId {
                    trace_id: t.trace_id.as_bytes().to_vec(),
                    start: start.map(timestamp),
                    end: end.map(timestamp),
                }
            })
            .collect();
        Ok(Response::new(pb::FindTraceIDsResponse { trace_ids }))
    }
}

#[tonic::async_trait]
impl DependencyReader for JaegerStorage {
    async fn get_dependencies(
        &self,
        request: Request<pb::GetDependenciesRequest>,
    ) -> Result<Response<pb::GetDependenciesResponse>, Status> {
        let q = request.get_ref();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        let end = timestamp_nanos(q.end_time.as_ref()).unwrap_or(now);
        let Some(start) = timestamp_nanos(q.start_time.as_ref()) else {
            return Err(invalid("start_time is required"));
        };
        if end < start {
            return Err(invalid("end_time must not be before start_time"));
        }
        let dependencies =
            dependency_links(&self.state, &Caller::of(request.extensions()), start, end)
                .await
                .map_err(|e| e.to_grpc_status())?
                .into_iter()
                .map(|((parent, child), call_count)| pb::Dependency {
                    parent,
                    child,
                    call_count,
                    source: String::new(),
                })
                .collect();
        Ok(Response::new(pb::GetDependenciesResponse { dependencies }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(seconds: i64) -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp { seconds, nanos: 5 })
    }

    fn query() -> pb::TraceQueryParameters {
        pb::TraceQueryParameters {
            service_name: "svc".into(),
            operation_name: "op".into(),
            attributes: vec![
                pb::KeyValue {
                    key: "n".into(),
                    value: Some(pb::AnyValue {
                        value: Some(pb::any_value::Value::DoubleValue(72.5)),
                    }),
                },
                pb::KeyValue {
                    key: "error".into(),
                    value: Some(pb::AnyValue {
                        value: Some(pb::any_value::Value::BoolValue(true)),
                    }),
                },
                pb::KeyValue {
                    key: "dropped".into(),
                    value: None,
                },
            ],
            start_time_min: ts(10),
            start_time_max: ts(20),
            duration_min: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
            duration_max: None,
            search_depth: 7,
        }
    }

    #[test]
    fn query_becomes_the_http_apis_search() {
        let s = trace_search(Some(&query())).unwrap();
        assert_eq!(s.service, "svc");
        assert_eq!(s.operation, "op");
        assert_eq!(s.start_min_nanos, 10_000_000_005);
        assert_eq!(s.start_max_nanos, 20_000_000_005);
        assert_eq!(s.min_duration_nanos, 1_000_000_000);
        assert_eq!(s.max_duration_nanos, 0);
        assert_eq!(s.limit, 7);
        assert_eq!(s.tags.get("n").map(String::as_str), Some("72.5"));
        assert_eq!(s.tags.get("error").map(String::as_str), Some("true"));
        assert!(!s.tags.contains_key("dropped"));
        let open = trace_search(Some(&pb::TraceQueryParameters {
            start_time_min: None,
            start_time_max: None,
            ..query()
        }))
        .unwrap();
        assert_eq!((open.start_min_nanos, open.start_max_nanos), (0, i64::MAX));
    }

    #[test]
    fn bad_queries_are_invalid_arguments() {
        let code =
            |q: Option<pb::TraceQueryParameters>| trace_search(q.as_ref()).unwrap_err().code();
        assert_eq!(code(None), tonic::Code::InvalidArgument);
        let depth = pb::TraceQueryParameters {
            search_depth: 0,
            ..query()
        };
        assert_eq!(code(Some(depth)), tonic::Code::InvalidArgument);
        let negative = pb::TraceQueryParameters {
            duration_max: Some(prost_types::Duration {
                seconds: -1,
                nanos: 0,
            }),
            ..query()
        };
        assert_eq!(code(Some(negative)), tonic::Code::InvalidArgument);
        let inverted = pb::TraceQueryParameters {
            duration_max: Some(prost_types::Duration {
                seconds: 0,
                nanos: 5,
            }),
            ..query()
        };
        assert_eq!(code(Some(inverted)), tonic::Code::InvalidArgument);
    }
}
