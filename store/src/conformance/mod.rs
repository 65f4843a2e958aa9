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

use crate::RetentionClasses;

/// Tenant in a short retention class in every backend under test.
pub const SHORT_TENANT: &str = "brief";
/// Its retention, in days.
pub const SHORT_DAYS: u32 = 2;
/// Tenant in a long retention class in every backend under test.
pub const LONG_TENANT: &str = "archive";
/// Its retention, in days.
pub const LONG_DAYS: u32 = 30;

/// The retention classes every backend under test is opened with: `default_days` for
/// every tenant but [`SHORT_TENANT`] ([`SHORT_DAYS`]) and [`LONG_TENANT`] ([`LONG_DAYS`]).
/// Only those two tenants' data depends on it, so the other cases are unaffected.
pub fn retention_classes(default_days: u32) -> RetentionClasses {
    let t = |name| clew_proto::Tenant::parse(name).expect("a valid tenant name");
    RetentionClasses::new(
        default_days,
        [(t(SHORT_TENANT), SHORT_DAYS), (t(LONG_TENANT), LONG_DAYS)],
    )
}
