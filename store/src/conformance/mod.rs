//! Conformance suites: the same fixtures and assertions for every backend.
//!
//! A backend's tests call `span_store::run_all(factory)` and `trace_index::run_all(factory)`
//! where the factory opens a fresh, empty backend.

pub mod fixtures;
pub mod span_store;
pub mod trace_index;
