//! # clew-proto: the span model and its wire forms
//!
//! Everything else in clew speaks in terms of this crate's [`Span`]:
//!
//! ```text
//!  OTLP (protobuf / JSON) ──from_otlp──▶ Span ──encoding──▶ stored cell (version byte + protobuf)
//!                                         │
//!                                         ├──▶ index document (built in clew-store)
//!                                         └──to_otlp──▶ OTLP TracesData (Jaeger remote storage reads)
//! ```
//!
//! - [`ids`]: `TraceId` / `SpanId` newtypes with hex text forms.
//! - [`model`]: the validated span, sharing its resource and scope through `Arc`.
//! - [`from_otlp`]: the one conversion from OTLP, with per-span validation, repairs and
//!   limits (`docs/robustness.md`): from a decoded request, or straight from protobuf
//!   bytes ([`from_otlp::decode_request`], invalid UTF-8 replaced and flagged).
//! - [`encoding`]: the versioned stored-span encoding (`docs/adr/0003-span-encoding.md`).
//! - [`avro`]: the Avro span-batch format agents ship through Kafka (single-object
//!   encoding, schema `proto/schemas/span_batch_v1.avsc`, `docs/adr/0005-avro-wire-format.md`).
//! - [`to_otlp`]: stored spans back to OTLP `TracesData`, grouped by resource and scope.
//! - [`jaeger_storage`]: Jaeger v2's remote-storage gRPC API (`jaeger.storage.v2`),
//!   generated from `proto/jaeger/storage/v2/*.proto` by `build.rs`.
//! - [`tenant`]: the tenant every span and every read belongs to, with its key prefix.
//! - [`reject`]: why a span was refused, as metric labels and OTLP partial-success text.
//! - [`jaeger_sampling`]: Jaeger's remote-sampling messages (`jaeger.api_v2`, contract in
//!   `proto/schemas/jaeger/api_v2/sampling.proto`).

pub mod avro;
pub mod encoding;
pub mod from_otlp;
pub mod go_json;
pub mod ids;
pub mod jaeger_sampling;
pub mod jaeger_storage;
pub mod model;
pub mod reject;
pub mod tenant;
pub mod to_otlp;

pub use ids::{IdError, SpanId, TraceId};
pub use model::{BusinessKey, Resource, Scope, Span, SpanKind, StatusCode};
pub use reject::RejectReason;
pub use tenant::{Tenant, TenantError};

/// Re-export of the OTLP generated types, so other crates use the same version.
pub use opentelemetry_proto::tonic as otlp;
