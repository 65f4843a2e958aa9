//! Conformance suites: the same fixtures and assertions for every backend.
//!
//! One declarative list of cases per seam ([`span_store::cases`], [`trace_index::cases`]).
//! A backend's test implements the seam's backend trait ([`span_store::StoreBackend`],
//! [`trace_index::IndexBackend`]: open fresh, reopen the same data, capabilities) and calls
//! `run_all`, which runs the whole list. What a backend legitimately cannot do is a
//! capability flag it declares, which the affected cases branch on; no case is left out.

pub mod fixtures;
pub mod span_store;
pub mod trace_index;
