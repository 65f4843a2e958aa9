//! Head sampling in the agent: a rate per service, decided per trace, error spans always
//! kept; the rates can be changed at run time through a small TOML file.
//!
//! ```text
//!  span ─▶ is_error? ──yes──▶ keep
//!            │no
//!            ▼
//!  trace_hash(trace id) < rate(service) × 2^64 ? ─▶ keep : drop (counted)
//! ```
//!
//! The decision depends only on the trace id and the rate, never on the host or on
//! randomness, so every agent keeps or drops the same traces at the same rate: a kept
//! trace is whole across hosts (for the services sampled at that rate), and a trace kept
//! at rate r is kept by every service whose rate is ≥ r.
//!
//! Rates file (`sampling.file`), re-read when its modification time or size changes
//! (polled every `sampling.reload_interval_ms`) or on SIGHUP:
//!
//! ```toml
//! default_rate = 0.5          # optional: replaces [sampling] default_rate
//! [services]                  # optional: per service, over [sampling] services
//! checkout = 0.1
//! payments = 1.0
//! ```
//!
//! A file that cannot be read or parsed, or holds a rate outside 0..=1, changes nothing: the
//! previous rates stay in force, the error is logged and counted
//! (`clew_agent_sampling_reloads_total{result}`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use clew_proto::Span;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::metrics;

/// A file's (modification time, length): what tells a poll that it changed.
type Stamp = (SystemTime, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
}

/// Sampling rates in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rates {
    /// Fraction of traces kept for services without their own rate (0.0–1.0).
    #[serde(default = "default_rate")]
    pub default_rate: f64,
    /// Per-service rates (`service.name` → 0.0–1.0).
    #[serde(default)]
    pub services: BTreeMap<String, f64>,
}

fn default_rate() -> f64 {
    1.0
}

impl Default for Rates {
    fn default() -> Self {
        Rates {
            default_rate: default_rate(),
            services: BTreeMap::new(),
        }
    }
}

impl Rates {
    /// Every rate must be a number in 0..=1; the error names the offending key.
    pub fn validate(&self, prefix: &str) -> Result<(), String> {
        let check = |key: String, v: f64| {
            if v.is_finite() && (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("{key}: {v} is not a rate between 0.0 and 1.0"))
            }
        };
        check(format!("{prefix}default_rate"), self.default_rate)?;
        for (service, rate) in &self.services {
            check(format!("{prefix}services.{service:?}"), *rate)?;
        }
        Ok(())
    }

    pub fn rate(&self, service: &str) -> f64 {
        self.services
            .get(service)
            .copied()
            .unwrap_or(self.default_rate)
    }

    /// The head-sampling decision for one span: error spans always, others by trace.
    pub fn keeps_span(&self, span: &Span) -> bool {
        span.is_error() || keeps(trace_hash(&span.trace_id), self.rate(&span.service_name))
    }

    /// `self` with the file's values laid over it.
    fn overlaid(&self, file: &RatesFile) -> Rates {
        let mut out = self.clone();
        if let Some(d) = file.default_rate {
            out.default_rate = d;
        }
        for (k, v) in &file.services {
            out.services.insert(k.clone(), *v);
        }
        out
    }
}

/// The reloadable file: every key optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RatesFile {
    default_rate: Option<f64>,
    #[serde(default)]
    services: BTreeMap<String, f64>,
}

/// The trace-id hash and threshold of every head-sampling decision (one algorithm for the
/// rates and the Jaeger strategies: `sampling::head`).
pub use crate::sampling::head::{keeps, trace_hash};

/// The sampler the agent runs: base rates from the agent config, the file over them.
#[derive(Debug)]
pub struct Sampler {
    base: Rates,
    file: Option<PathBuf>,
    current: RwLock<Arc<Rates>>,
    /// (modified, len) of the file when last looked at (`Some(None)`: it was missing).
    seen: RwLock<Option<Option<Stamp>>>,
}

impl Sampler {
    /// Starts with `base` overlaid with `file` when that reads and parses; a bad or missing
    /// file at start-up is logged and counted and `base` is used.
    pub fn new(base: Rates, file: Option<PathBuf>) -> Sampler {
        let s = Sampler {
            current: RwLock::new(Arc::new(base.clone())),
            base,
            file,
            seen: RwLock::new(None),
        };
        s.reload();
        s
    }

    /// Rates in force now.
    pub fn rates(&self) -> Arc<Rates> {
        self.current.read().expect("rates lock").clone()
    }

    /// Keeps the spans to send, in order; returns how many were dropped.
    pub fn sample(&self, spans: &mut Vec<Span>) -> usize {
        let rates = self.rates();
        if rates.default_rate >= 1.0 && rates.services.values().all(|r| *r >= 1.0) {
            return 0;
        }
        let before = spans.len();
        spans.retain(|s| rates.keeps_span(s));
        before - spans.len()
    }

    /// Re-reads the file if it changed (or appeared or vanished) since the last look.
    pub fn reload_if_changed(&self) {
        let Some(path) = &self.file else { return };
        if *self.seen.read().expect("seen lock") == Some(stamp(path)) {
            return;
        }
        self.reload();
    }

    /// Reads the file now (SIGHUP, start-up). Keeps the previous rates on any error.
    pub fn reload(&self) {
        let Some(path) = &self.file else { return };
        let stamp = stamp(path);
        *self.seen.write().expect("seen lock") = Some(stamp);
        match read_rates_file(path).and_then(|f| {
            let rates = self.base.overlaid(&f);
            rates.validate("")?;
            Ok(rates)
        }) {
            Ok(rates) => {
                let changed = *self.rates() != rates;
                if changed {
                    info!(file = %path.display(), default_rate = rates.default_rate, services = ?rates.services, "sampling rates loaded");
                }
                *self.current.write().expect("rates lock") = Arc::new(rates);
                metrics::sampling_reload("ok");
            }
            Err(error) => {
                let result = if stamp.is_none() {
                    "missing"
                } else {
                    "invalid"
                };
                warn!(file = %path.display(), %error, "sampling file not applied; keeping the previous rates");
                metrics::sampling_reload(result);
            }
        }
    }

    /// Polls the file every `every` until `stop` resolves; SIGHUP forces a reload.
    pub async fn watch(
        self: Arc<Self>,
        every: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        if self.file.is_none() {
            return;
        }
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let hup_recv = async {
                match hup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let hup_recv = std::future::pending::<()>();
            tokio::select! {
                _ = tokio::time::sleep(every) => {
                    let s = self.clone();
                    let _ = tokio::task::spawn_blocking(move || s.reload_if_changed()).await;
                }
                _ = hup_recv => {
                    info!("SIGHUP: re-reading the sampling file");
                    let s = self.clone();
                    let _ = tokio::task::spawn_blocking(move || s.reload()).await;
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

fn read_rates_file(path: &Path) -> Result<RatesFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("failed to read {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("failed to parse {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc as StdArc;

    use clew_proto::model::{Resource, Scope, SpanKind, StatusCode};
    use clew_proto::{SpanId, TraceId};

    use super::*;

    fn span(trace: u128, service: &str, error: bool) -> Span {
        Span {
            tenant: Default::default(),
            trace_id: TraceId(trace.to_be_bytes()),
            span_id: SpanId(1u64.to_be_bytes()),
            parent_span_id: None,
            trace_state: String::new(),
            flags: 0,
            name: "op".into(),
            kind: SpanKind::Server,
            start_unix_nano: 1,
            end_unix_nano: 2,
            attributes: vec![],
            dropped_attributes_count: 0,
            events: vec![],
            dropped_events_count: 0,
            links: vec![],
            dropped_links_count: 0,
            status_code: if error {
                StatusCode::Error
            } else {
                StatusCode::Ok
            },
            status_message: String::new(),
            resource: StdArc::new(Resource::default()),
            scope: StdArc::new(Scope::default()),
            service_name: service.into(),
            business_keys: vec![],
            repairs: 0,
        }
    }

    fn rates(default: f64, services: &[(&str, f64)]) -> Rates {
        Rates {
            default_rate: default,
            services: services.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    fn random_ids(n: usize) -> Vec<u128> {
        // A fixed LCG: deterministic "random" ids.
        let mut x: u128 = 0x1234_5678_9abc_def0_0fed_cba9_8765_4321;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(0x2360_ED05_1FC6_5DA4_4385_DF64_9FCC_F645)
                    .wrapping_add(0x5851_F42D_4C95_7F2D_1405_7B7E_F767_814F);
                x
            })
            .collect()
    }

    #[test]
    fn rates_hold_statistically() {
        let s = Sampler::new(rates(0.25, &[("all", 1.0), ("none", 0.0)]), None);
        let ids = random_ids(20_000);
        let mut spans: Vec<Span> = ids.iter().map(|t| span(*t, "other", false)).collect();
        let dropped = s.sample(&mut spans);
        let kept = spans.len() as f64 / ids.len() as f64;
        assert!((0.23..0.27).contains(&kept), "kept {kept}");
        assert_eq!(dropped + spans.len(), ids.len());
        let mut all: Vec<Span> = ids.iter().map(|t| span(*t, "all", false)).collect();
        assert_eq!(s.sample(&mut all), 0);
        let mut none: Vec<Span> = ids.iter().map(|t| span(*t, "none", false)).collect();
        assert_eq!(s.sample(&mut none), ids.len());
    }

    #[test]
    fn error_spans_are_always_kept() {
        let s = Sampler::new(rates(0.0, &[]), None);
        let mut spans = vec![
            span(1, "a", false),
            span(1, "a", true),
            span(2, "b", true),
            span(3, "b", false),
        ];
        assert_eq!(s.sample(&mut spans), 2);
        assert!(spans.iter().all(|s| s.is_error()));
        assert_eq!(spans.len(), 2);
    }

    #[test]
    fn decision_is_per_trace_and_nested_across_rates() {
        let s = Sampler::new(rates(0.5, &[("low", 0.1)]), None);
        for id in random_ids(2_000) {
            // Every span of a trace gets the same answer, on any agent (no state involved).
            let mut spans: Vec<Span> = (0..5).map(|_| span(id, "x", false)).collect();
            let d = s.sample(&mut spans);
            assert!(d == 0 || d == 5, "trace split: {d} of 5 dropped");
            let again = Sampler::new(rates(0.5, &[("low", 0.1)]), None);
            let mut one = vec![span(id, "x", false)];
            assert_eq!(again.sample(&mut one) == 0, d == 0);
            // Kept at 10 % ⇒ kept at 50 %.
            let mut low = vec![span(id, "low", false)];
            if s.sample(&mut low) == 0 {
                assert_eq!(d, 0);
            }
        }
    }

    #[test]
    fn file_overlays_and_bad_file_keeps_previous() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sampling.toml");
        std::fs::write(&path, "[services]\ncheckout = 0.0\n").unwrap();
        let s = Sampler::new(rates(1.0, &[("payments", 0.5)]), Some(path.clone()));
        let r = s.rates();
        assert_eq!(r.rate("checkout"), 0.0);
        assert_eq!(r.rate("payments"), 0.5, "config rates stay under the file");
        assert_eq!(r.rate("other"), 1.0);

        // Unparseable, out-of-range, unknown key: each keeps the previous rates.
        for bad in [
            "[services\n",
            "default_rate = 2.0\n",
            "[services]\ncheckout = -0.1\n",
            "defualt_rate = 0.5\n",
        ] {
            std::fs::write(&path, bad).unwrap();
            s.reload();
            assert_eq!(*s.rates(), *r, "after {bad:?}");
        }
        // Missing file: previous rates too.
        std::fs::remove_file(&path).unwrap();
        s.reload_if_changed();
        assert_eq!(*s.rates(), *r);

        std::fs::write(&path, "default_rate = 0.0\n[services]\ncheckout = 1.0\n").unwrap();
        s.reload_if_changed();
        let r2 = s.rates();
        assert_eq!(r2.rate("checkout"), 1.0);
        assert_eq!(r2.rate("other"), 0.0);
        assert_eq!(r2.rate("payments"), 0.5);
    }

    #[test]
    fn unchanged_file_is_not_reread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sampling.toml");
        std::fs::write(&path, "default_rate = 0.5\n").unwrap();
        let s = Sampler::new(Rates::default(), Some(path.clone()));
        assert_eq!(s.rates().default_rate, 0.5);
        // Same stamp: a poll does not reread (swap the content under a fixed mtime+len).
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::fs::write(&path, "default_rate = 0.7\n").unwrap();
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(mtime).unwrap();
        drop(f);
        s.reload_if_changed();
        assert_eq!(s.rates().default_rate, 0.5);
        // An explicit reload (SIGHUP) does.
        s.reload();
        assert_eq!(s.rates().default_rate, 0.7);
    }
}
