//! The process's memory allocator: jemalloc (`tikv-jemallocator`) instead of glibc's
//! malloc. The ingest path allocates a string per attribute key and value of every span
//! on the decoding thread and frees them on the store and index writer threads; glibc's
//! per-thread caches do not refill across threads, so malloc and free were a third of the
//! instructions per span (BENCHMARKS.md, "Allocator"). jemalloc costs ~9 % fewer
//! instructions per span and, with the options below, about half glibc's peak RSS.
//!
//! Also linked into `benches/ingest_cost.rs` (`#[path]`), so that the bench counts what
//! `clew serve` runs.

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts (`_RJEM_MALLOC_CONF` in the environment still
/// overrides them): a background thread returns unused pages to the kernel, dirty pages
/// after 1 s (jemalloc's default is 10 s, which let RSS follow the peak of every burst),
/// and no lazily freed ("muzzy") stage in between.
#[cfg(not(target_env = "msvc"))]
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8; 60] =
    b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

/// Live heap bytes (gauge): what the process has allocated and not freed.
pub const MEMORY_ALLOCATED_BYTES: &str = "clew_memory_allocated_bytes";
/// Bytes of the allocator's pages that are resident (gauge): the heap's share of RSS,
/// live bytes plus what the allocator keeps for reuse or has not returned yet.
pub const MEMORY_RESIDENT_BYTES: &str = "clew_memory_resident_bytes";

/// Sets the allocator's gauges from fresh statistics (called when `/metrics` is rendered).
#[cfg(not(target_env = "msvc"))]
pub fn report_gauges() {
    use tikv_jemalloc_ctl::{epoch, stats};
    // jemalloc caches its statistics until the epoch advances
    if epoch::advance().is_err() {
        return;
    }
    if let Ok(bytes) = stats::allocated::read() {
        metrics::gauge!(MEMORY_ALLOCATED_BYTES).set(bytes as f64);
    }
    if let Ok(bytes) = stats::resident::read() {
        metrics::gauge!(MEMORY_RESIDENT_BYTES).set(bytes as f64);
    }
}

#[cfg(target_env = "msvc")]
pub fn report_gauges() {}
