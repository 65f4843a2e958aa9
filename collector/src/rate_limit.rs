//! Per-tenant ingest rate limits (`[[collector.tenants]]`, `docs/adr/0011-tenants.md`): a
//! token bucket of spans per tenant, checked once per request after decoding (when its
//! span count is known) and before anything is queued. A request past the bucket is
//! refused whole — 429 with `Retry-After` over HTTP, `RESOURCE_EXHAUSTED` with a
//! `google.rpc.RetryInfo` over gRPC, as OTLP's throttling rules ask — so nothing of it is
//! acknowledged and the client sends it again later. The spans refused are counted per
//! tenant in `clew_tenant_throttled_spans_total{tenant}` (tenants are configured names, a
//! bounded set).
//!
//! The same entries may also set a tenant's `retention_days` (its retention class, which
//! the store and index apply: `clew_store::retention`); an entry may set either or both.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clew_proto::Tenant;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::metrics;

/// One `[[collector.tenants]]` entry: a tenant's ingest rate limit, its retention, or both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSettings {
    /// The tenant (`[[auth.tokens]] tenant`, or `default`).
    pub name: String,
    /// Sustained spans per second the tenant may send; absent: not limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spans_per_second: Option<f64>,
    /// Spans it may send at once above that rate; default: one second's worth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_spans: Option<u64>,
    /// Days its traces are kept; absent: the global `retention_days`. Tenants with the
    /// same value share a retention class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
}

/// Checks `[[collector.tenants]]`.
pub fn validate(limits: &[TenantSettings]) -> Result<()> {
    let bad = |i: usize, message: String| Error::Config {
        key: "collector.tenants",
        message: format!("[{i}]: {message}"),
    };
    for (i, l) in limits.iter().enumerate() {
        Tenant::parse(&l.name).map_err(|e| bad(i, e.to_string()))?;
        if l.spans_per_second
            .is_some_and(|r| !(r.is_finite() && r > 0.0))
        {
            return Err(bad(i, "spans_per_second must be a positive number".into()));
        }
        if l.burst_spans == Some(0) {
            return Err(bad(i, "burst_spans must be at least 1".into()));
        }
        if l.burst_spans.is_some() && l.spans_per_second.is_none() {
            return Err(bad(i, "burst_spans needs spans_per_second".into()));
        }
        if l.retention_days == Some(0) {
            return Err(bad(i, "retention_days must be at least 1".into()));
        }
        if l.spans_per_second.is_none() && l.retention_days.is_none() {
            return Err(bad(
                i,
                format!(
                    "tenant {:?} sets neither spans_per_second nor retention_days",
                    l.name
                ),
            ));
        }
        if limits[..i].iter().any(|o| o.name == l.name) {
            return Err(bad(i, format!("tenant {:?} is listed twice", l.name)));
        }
    }
    Ok(())
}

struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

/// The buckets of the configured tenants; tenants without an entry are not limited.
pub struct RateLimits {
    buckets: Mutex<HashMap<Tenant, Bucket>>,
}

impl RateLimits {
    /// `None` when no tenant is limited.
    pub fn new(limits: &[TenantSettings]) -> Option<RateLimits> {
        let now = Instant::now();
        let buckets: HashMap<Tenant, Bucket> = limits
            .iter()
            .filter_map(|l| {
                let rate = l.spans_per_second?;
                let burst = l.burst_spans.map_or(rate.ceil(), |b| b as f64);
                let tenant = Tenant::parse(&l.name).ok()?;
                Some((
                    tenant,
                    Bucket {
                        rate,
                        burst,
                        tokens: burst,
                        at: now,
                    },
                ))
            })
            .collect();
        (!buckets.is_empty()).then(|| RateLimits {
            buckets: Mutex::new(buckets),
        })
    }

    /// Takes `spans` from `tenant`'s bucket, or says how long to wait before the same
    /// request would pass ([`Error::Throttled`]). A request larger than the burst passes
    /// when the bucket is full, leaving a debt that later requests wait out.
    pub fn take(&self, tenant: &Tenant, spans: usize) -> Result<()> {
        self.take_at(tenant, spans, Instant::now())
    }

    fn take_at(&self, tenant: &Tenant, spans: usize, now: Instant) -> Result<()> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let Some(b) = buckets.get_mut(tenant) else {
            return Ok(());
        };
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * b.rate).min(b.burst);
        b.at = now;
        let need = (spans as f64).min(b.burst);
        if b.tokens >= need {
            b.tokens -= spans as f64;
            return Ok(());
        }
        let wait = Duration::from_secs_f64((need - b.tokens) / b.rate);
        metrics::tenant_throttled(tenant.as_str(), spans);
        Err(Error::Throttled {
            retry_after: wait.max(Duration::from_millis(1)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: f64, burst: Option<u64>) -> RateLimits {
        RateLimits::new(&[TenantSettings {
            name: "shop".into(),
            spans_per_second: Some(rate),
            burst_spans: burst,
            retention_days: None,
        }])
        .unwrap()
    }

    #[test]
    fn a_bucket_refills_at_its_rate_and_says_how_long_to_wait() {
        let shop = Tenant::parse("shop").unwrap();
        let l = limits(100.0, Some(200));
        let t0 = Instant::now();
        l.take_at(&shop, 150, t0).unwrap();
        l.take_at(&shop, 50, t0).unwrap();
        let Err(Error::Throttled { retry_after }) = l.take_at(&shop, 50, t0) else {
            panic!("the bucket is empty");
        };
        assert_eq!(retry_after, Duration::from_millis(500));
        l.take_at(&shop, 50, t0 + Duration::from_millis(500))
            .unwrap();
        // other tenants are not limited
        l.take_at(&Tenant::default(), 1_000_000, t0).unwrap();
        // nor are tenants whose entry sets only their retention
        let retention_only = TenantSettings {
            name: "shop".into(),
            spans_per_second: None,
            burst_spans: None,
            retention_days: Some(3),
        };
        assert!(RateLimits::new(&[retention_only]).is_none());
        // larger than the burst: passes on a full bucket, then the debt is waited out
        let l = limits(10.0, None);
        l.take_at(&shop, 1000, t0).unwrap();
        assert!(l.take_at(&shop, 1, t0 + Duration::from_secs(10)).is_err());
        l.take_at(&shop, 1, t0 + Duration::from_secs(100)).unwrap();
    }

    #[test]
    fn entries_are_checked() {
        let entry = |name: &str, rate: f64, burst| TenantSettings {
            name: name.into(),
            spans_per_second: Some(rate),
            burst_spans: burst,
            retention_days: None,
        };
        let retention = |name: &str, days| TenantSettings {
            name: name.into(),
            spans_per_second: None,
            burst_spans: None,
            retention_days: Some(days),
        };
        assert!(validate(&[entry("shop", 1.0, None)]).is_ok());
        assert!(validate(&[retention("shop", 30)]).is_ok(), "retention only");
        let both = TenantSettings {
            retention_days: Some(1),
            ..entry("bank", 5.0, Some(10))
        };
        assert!(validate(std::slice::from_ref(&both)).is_ok());
        let nothing = TenantSettings {
            retention_days: None,
            spans_per_second: None,
            burst_spans: None,
            ..both.clone()
        };
        let burst_alone = TenantSettings {
            spans_per_second: None,
            ..both
        };
        for (bad, why) in [
            (vec![entry("Shop", 1.0, None)], "tenant \"Shop\""),
            (vec![entry("shop", 0.0, None)], "spans_per_second"),
            (vec![entry("shop", f64::NAN, None)], "spans_per_second"),
            (vec![entry("shop", 1.0, Some(0))], "burst_spans"),
            (
                vec![entry("a", 1.0, None), entry("a", 2.0, None)],
                "listed twice",
            ),
            (
                vec![retention("shop", 0)],
                "retention_days must be at least 1",
            ),
            (
                vec![entry("a", 1.0, None), retention("a", 3)],
                "listed twice",
            ),
            (
                vec![nothing],
                "sets neither spans_per_second nor retention_days",
            ),
            (vec![burst_alone], "burst_spans needs spans_per_second"),
        ] {
            let e = validate(&bad).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains("collector.tenants"), "{e}");
        }
    }
}
