//! Jaeger remote sampling: one strategies file steers the SDKs (which ask clew for their
//! strategy) and `clew agent`'s own head sampling.
//!
//! ```text
//!  strategies file ─▶ strategies::Strategies::parse (Jaeger's file provider rules)
//!        ▲                      │
//!        │ polled every second  ▼
//!  StrategyStore::watch ─▶ StrategyStore (last good strategies, swapped whole)
//!                               ├─▶ http: GET /api/sampling?service=  (Jaeger v2's JSON, any path)
//!                               ├─▶ grpc: jaeger.api_v2.SamplingManager/GetSamplingStrategy
//!                               └─▶ head::HeadSampler (clew agent: keep or drop each trace)
//! ```
//!
//! - [`strategies`]: the file format and the answer per service, as Jaeger computes it,
//!   and Jaeger's HTTP JSON text.
//! - [`http`] and [`grpc`]: the two endpoints, as Jaeger v2's `remote_sampling` extension
//!   serves them (`clew serve`: `sampling_http_addr`, default `127.0.0.1:5778`, and
//!   `sampling_grpc_addr`, default `127.0.0.1:5779`).
//! - [`head`]: the agent's sampling decision from the same strategies.
//!
//! Reloading: the file is read every `RELOAD_INTERVAL` and re-parsed when its bytes
//! changed (a stat alone misses a same-size rewrite within the file system's time
//! granularity; strategies files are small). A version that cannot be read or parsed
//! leaves the last good strategies in force, is logged once with the reason and counted in
//! `clew_sampling_strategies_reload_errors_total{reason}`;
//! `clew_sampling_strategies_last_reload_success_timestamp_seconds` says when the
//! strategies in force were loaded. At start-up a bad file is an error (there is nothing
//! good to keep), as in Jaeger.

pub mod grpc;
pub mod head;
pub mod http;
pub mod strategies;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use clew_proto::jaeger_sampling::SamplingStrategyResponse;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::metrics;
pub use strategies::{Strategies, DEFAULT_SAMPLING_PROBABILITY};

/// How often the strategies file is looked at (a change is served within about this long).
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// Largest strategies file read (a bigger one is refused as unreadable).
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The strategies in force, and where they come from.
#[derive(Debug)]
pub struct StrategyStore {
    file: Option<PathBuf>,
    default_probability: f64,
    current: RwLock<Arc<Strategies>>,
    /// What the last look at the file found: its bytes, or the read error's text; a
    /// version is parsed, logged and counted once.
    last_seen: Mutex<Option<Result<Vec<u8>, String>>>,
}

impl StrategyStore {
    /// Loads `file` (Jaeger's default strategy without one). A file that cannot be read or
    /// is not a valid strategies file is an error naming the file.
    pub fn load(file: Option<PathBuf>, default_probability: f64) -> Result<StrategyStore, String> {
        metrics::describe_sampling();
        let store = StrategyStore {
            current: RwLock::new(Arc::new(Strategies::defaults(default_probability))),
            file,
            default_probability,
            last_seen: Mutex::new(None),
        };
        match &store.file {
            None => metrics::sampling_loaded(0),
            Some(path) => {
                let bytes = read_file(path)?;
                let strategies = Strategies::parse(&bytes, default_probability).map_err(|e| {
                    format!("invalid sampling strategies file {}: {e}", path.display())
                })?;
                info!(file = %path.display(), services = strategies.services.len(), "sampling strategies loaded");
                metrics::sampling_loaded(strategies.services.len());
                *store.current.write().expect("strategies lock") = Arc::new(strategies);
                *store.last_seen.lock().expect("last seen lock") = Some(Ok(bytes));
            }
        }
        Ok(store)
    }

    /// The strategies in force.
    pub fn strategies(&self) -> Arc<Strategies> {
        self.current.read().expect("strategies lock").clone()
    }

    /// The answer for `service` now.
    pub fn for_service(&self, service: &str) -> SamplingStrategyResponse {
        self.strategies().for_service(service).clone()
    }

    /// Looks at the file once: a new version replaces the strategies when it parses; one
    /// that does not (or a file that cannot be read) is logged and counted once and
    /// changes nothing. Returns whether the strategies changed.
    pub fn reload_if_changed(&self) -> bool {
        let Some(path) = &self.file else {
            return false;
        };
        let seen = read_file(path);
        let mut last = self.last_seen.lock().expect("last seen lock");
        if last.as_ref() == Some(&seen) {
            return false;
        }
        *last = Some(seen.clone());
        drop(last);
        let bytes = match seen {
            Ok(bytes) => bytes,
            Err(error) => {
                warn!(file = %path.display(), %error, "sampling strategies file not readable; keeping the last good strategies");
                metrics::sampling_reload_error("read");
                return false;
            }
        };
        match Strategies::parse(&bytes, self.default_probability) {
            Ok(strategies) => {
                info!(file = %path.display(), services = strategies.services.len(), "sampling strategies reloaded");
                metrics::sampling_loaded(strategies.services.len());
                *self.current.write().expect("strategies lock") = Arc::new(strategies);
                true
            }
            Err(error) => {
                warn!(file = %path.display(), %error, "sampling strategies file is invalid; keeping the last good strategies");
                metrics::sampling_reload_error("invalid");
                false
            }
        }
    }

    /// Polls the file every `every` until `stop` turns true (returns at once without a file).
    pub async fn watch(self: Arc<Self>, every: Duration, mut stop: watch::Receiver<bool>) {
        if self.file.is_none() {
            return;
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {
                    let store = self.clone();
                    let _ = tokio::task::spawn_blocking(move || store.reload_if_changed()).await;
                }
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return;
                    }
                }
            }
        }
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    let failed = |e: std::io::Error| format!("failed to read {}: {e}", path.display());
    let len = std::fs::metadata(path).map_err(failed)?.len();
    if len > MAX_FILE_BYTES {
        return Err(format!(
            "{} is {len} bytes, more than the {MAX_FILE_BYTES} a strategies file may have",
            path.display()
        ));
    }
    std::fs::read(path).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(store: &StrategyStore, service: &str) -> f64 {
        store
            .for_service(service)
            .probabilistic_sampling
            .map(|p| p.sampling_rate)
            .unwrap_or(-1.0)
    }

    #[test]
    fn changes_apply_and_bad_versions_keep_the_last_good() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strategies.json");
        let good =
            r#"{"service_strategies": [{"service": "a", "type": "probabilistic", "param": 0.5}]}"#;
        std::fs::write(&path, good).unwrap();
        let store = StrategyStore::load(Some(path.clone()), 0.001).unwrap();
        assert_eq!(rate(&store, "a"), 0.5);
        assert_eq!(rate(&store, "b"), 0.001);
        assert!(!store.reload_if_changed(), "same bytes: nothing to do");

        for bad in [
            "{",
            r#"{"service_strategies": [{"service": "a", "type": "probabilistic", "param": 5}]}"#,
        ] {
            std::fs::write(&path, bad).unwrap();
            assert!(!store.reload_if_changed());
            assert_eq!(rate(&store, "a"), 0.5, "after {bad:?}");
        }
        std::fs::remove_file(&path).unwrap();
        assert!(!store.reload_if_changed());
        assert_eq!(rate(&store, "a"), 0.5);

        std::fs::write(
            &path,
            r#"{"default_strategy": {"type": "probabilistic", "param": 0.2}}"#,
        )
        .unwrap();
        assert!(store.reload_if_changed());
        assert_eq!(rate(&store, "a"), 0.2);
        // back to a version seen before: applied again
        std::fs::write(&path, good).unwrap();
        assert!(store.reload_if_changed());
        assert_eq!(rate(&store, "a"), 0.5);
    }

    #[test]
    fn bad_or_missing_file_at_start_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let err = StrategyStore::load(Some(path.clone()), 0.001).unwrap_err();
        assert!(err.contains("s.json"), "{err}");
        std::fs::write(&path, "[1]").unwrap();
        let err = StrategyStore::load(Some(path), 0.001).unwrap_err();
        assert!(
            err.contains("s.json") && err.contains("JSON object"),
            "{err}"
        );
        let none = StrategyStore::load(None, 0.001).unwrap();
        assert_eq!(rate(&none, "x"), 0.001);
        assert!(!none.reload_if_changed());
    }
}
