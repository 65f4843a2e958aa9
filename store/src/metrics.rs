//! Prometheus metrics of the store crate (`clew_store_*`, `clew_index_*`).
