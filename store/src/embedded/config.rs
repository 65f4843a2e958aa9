//! `[store] type = "embedded"` and `[index] type = "embedded"`: the settings of the fjall
//! span store and the tantivy index, their defaults and their validation.

use serde::{Deserialize, Serialize};

use crate::span_store::admission::{
    default_max_bytes_per_trace, default_max_spans_per_trace, validate_caps,
};
use crate::{Error, Result};

/// fjall LSM under `<data_dir>/spans`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedStoreConfig {
    /// Spans kept per trace; later spans are rejected (`trace_too_large`).
    #[serde(default = "default_max_spans_per_trace")]
    pub max_spans_per_trace: u32,
    /// Encoded bytes kept per trace.
    #[serde(default = "default_max_bytes_per_trace")]
    pub max_bytes_per_trace: u64,
    /// fjall block cache, in MiB.
    #[serde(default = "default_cache_mb")]
    pub cache_mb: u64,
    /// fjall's background threads (memtable flushes and compactions). One by default:
    /// with more, fjall 3.1's first worker leaves compactions to the others (to stay free
    /// for flushes) by putting each compaction request back on the queue it took it from,
    /// and takes it again at once while they are busy: a busy loop that cost ~2 CPU
    /// seconds per million spans on two cores (BENCHMARKS.md, "fjall's worker pool").
    #[serde(default = "default_background_threads")]
    pub background_threads: usize,
}

impl Default for EmbeddedStoreConfig {
    fn default() -> Self {
        EmbeddedStoreConfig {
            max_spans_per_trace: default_max_spans_per_trace(),
            max_bytes_per_trace: default_max_bytes_per_trace(),
            cache_mb: default_cache_mb(),
            background_threads: default_background_threads(),
        }
    }
}

impl EmbeddedStoreConfig {
    /// Checks values without touching the disk.
    pub fn validate(&self) -> Result<()> {
        validate_caps(self.max_spans_per_trace, self.max_bytes_per_trace)?;
        if !(1..=16).contains(&self.background_threads) {
            return Err(Error::Config(
                "store.background_threads must be between 1 and 16".into(),
            ));
        }
        Ok(())
    }
}

/// tantivy under `<data_dir>/index`, one index per UTC day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedIndexConfig {
    /// How often new documents are committed (made searchable). Must be ≤ 1500 to keep
    /// the "searchable within 2 s" contract.
    #[serde(default = "default_commit_interval_ms")]
    pub commit_interval_ms: u64,
    /// tantivy writer memory budget, in MiB: each day partition being written gets a
    /// writer with half of it (usually one day is written; late spans open a second). A
    /// day's partitions are one per retention class written, so tenants in `k` classes
    /// other than the default can use up to `k + 1` times as much.
    #[serde(default = "default_writer_memory_mb")]
    pub writer_memory_mb: usize,
}

impl Default for EmbeddedIndexConfig {
    fn default() -> Self {
        EmbeddedIndexConfig {
            commit_interval_ms: default_commit_interval_ms(),
            writer_memory_mb: default_writer_memory_mb(),
        }
    }
}

impl EmbeddedIndexConfig {
    /// Checks values without touching the disk.
    pub fn validate(&self) -> Result<()> {
        if !(10..=1500).contains(&self.commit_interval_ms) {
            return Err(Error::Config(
                "index.commit_interval_ms must be between 10 and 1500 (searchable within 2 s)"
                    .into(),
            ));
        }
        if self.writer_memory_mb < 16 {
            return Err(Error::Config(
                "index.writer_memory_mb must be at least 16".into(),
            ));
        }
        Ok(())
    }
}

pub fn default_cache_mb() -> u64 {
    256
}
pub fn default_background_threads() -> usize {
    1
}
pub fn default_commit_interval_ms() -> u64 {
    1000
}
pub fn default_writer_memory_mb() -> usize {
    256
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn background_threads_default_to_one_and_zero_is_refused() {
        let config = EmbeddedStoreConfig::default();
        assert_eq!(config.background_threads, 1);
        assert!(config.validate().is_ok());
        let none = EmbeddedStoreConfig {
            background_threads: 0,
            ..config.clone()
        };
        let error = none.validate().unwrap_err().to_string();
        assert!(error.contains("store.background_threads"), "{error}");
        let parsed: EmbeddedStoreConfig =
            serde_json::from_str(r#"{"background_threads": 3}"#).unwrap();
        assert_eq!(parsed.background_threads, 3);
        let omitted: EmbeddedStoreConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(omitted, EmbeddedStoreConfig::default());
    }
}
