//! `[alerting]`: where alerts go and the error rules that make them.
//!
//! ```toml
//! [alerting]
//! alertmanager_urls = ["http://127.0.0.1:9093"]   # Alertmanager API v2 (POST /api/v2/alerts)
//! webhook_urls = []                               # plain JSON POST of the same payload
//! ui_url = "http://clew.example.com:16686"        # links in alerts (default: the query address)
//! [[alerting.error_rules]]
//! name = "errors"          # alertname
//! service = "payments"     # optional filter; absent = every service
//! tenant = "shop"          # optional filter; absent = every tenant, each counted apart
//! min_count = 20           # errors of one signature ...
//! window = "10s"           # ... within this sliding window
//! severity = "critical"
//! ```
//!
//! Only `error_rules` are re-read when the file changes; the other keys take effect on a
//! restart.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[alerting]` section. Absent or without rules: nothing is evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertingConfig {
    /// Alertmanager base URLs (`http://host:9093`); alerts are posted to
    /// `{url}/api/v2/alerts`.
    pub alertmanager_urls: Vec<String>,
    /// URLs that receive the same JSON array of alerts as a plain POST.
    pub webhook_urls: Vec<String>,
    /// Base URL of clew's UI as people reach it, for the trace links in alerts. Unset: the
    /// query API's listen address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ui_url: Option<String>,
    /// Most signatures tracked at once (over all rules); more are counted in
    /// `clew_alerting_signatures_dropped_total` and not tracked.
    pub max_signatures: usize,
    /// How often a firing alert is posted again (Alertmanager forgets an alert at its
    /// `endsAt`, which is set to four of these ahead).
    pub resend_interval_ms: u64,
    /// Alerts waiting for delivery per target; past it the oldest waiting update is dropped
    /// (counted). A firing alert is posted again at the next resend anyway.
    pub queue_max_alerts: usize,
    /// Back-off between delivery attempts doubles from `retry_initial_ms` up to
    /// `retry_max_ms`.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// Timeout of one delivery request.
    pub request_timeout_ms: u64,
    /// How often the config file is checked for changed rules.
    pub reload_interval_ms: u64,
    pub error_rules: Vec<ErrorRule>,
}

/// `[[alerting.error_rules]]`: a signature seen `min_count` times within `window` fires.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorRule {
    /// The alert's `alertname`.
    pub name: String,
    /// Only spans of this service (`service.name`); absent: every service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Only spans of this tenant; absent: every tenant's, each tenant's counted apart
    /// (`docs/adr/0011-tenants.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub min_count: u64,
    /// `"500ms"`, `"10s"`, `"5m"`, `"1h"`.
    pub window: String,
    #[serde(default = "default_severity")]
    pub severity: String,
}

fn default_severity() -> String {
    "warning".to_string()
}

impl Default for AlertingConfig {
    fn default() -> Self {
        AlertingConfig {
            alertmanager_urls: Vec::new(),
            webhook_urls: Vec::new(),
            ui_url: None,
            max_signatures: 10_000,
            resend_interval_ms: 30_000,
            queue_max_alerts: 10_000,
            retry_initial_ms: 250,
            retry_max_ms: 5_000,
            request_timeout_ms: 5_000,
            reload_interval_ms: 1_000,
            error_rules: Vec::new(),
        }
    }
}

/// The largest `min_count`: counts are kept per window step, so this only guards against
/// a typo that could never fire.
const MAX_MIN_COUNT: u64 = 1_000_000_000;
/// The longest window: signatures are kept (bounded) for one window after their last
/// occurrence.
const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);

impl AlertingConfig {
    /// Checks every value without I/O; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        for (key, urls) in [
            ("alerting.alertmanager_urls", &self.alertmanager_urls),
            ("alerting.webhook_urls", &self.webhook_urls),
        ] {
            for (i, url) in urls.iter().enumerate() {
                check_http_url(url).map_err(|e| format!("{key}[{i}]: {e}"))?;
            }
        }
        if let Some(url) = &self.ui_url {
            check_http_url(url).map_err(|e| format!("alerting.ui_url: {e}"))?;
        }
        for (key, v) in [
            ("alerting.max_signatures", self.max_signatures as u64),
            ("alerting.resend_interval_ms", self.resend_interval_ms),
            ("alerting.queue_max_alerts", self.queue_max_alerts as u64),
            ("alerting.retry_initial_ms", self.retry_initial_ms),
            ("alerting.request_timeout_ms", self.request_timeout_ms),
            ("alerting.reload_interval_ms", self.reload_interval_ms),
        ] {
            if v == 0 {
                return Err(format!("{key}: must be at least 1"));
            }
        }
        if self.retry_max_ms < self.retry_initial_ms {
            return Err(format!(
                "alerting.retry_max_ms: {} is below retry_initial_ms ({})",
                self.retry_max_ms, self.retry_initial_ms
            ));
        }
        validate_rules(&self.error_rules)
    }

    /// Whether anything is to be evaluated.
    pub fn enabled(&self) -> bool {
        !self.error_rules.is_empty()
    }
}

/// The rules' checks (also applied to a re-read file before it replaces the rules).
pub fn validate_rules(rules: &[ErrorRule]) -> Result<(), String> {
    for (i, rule) in rules.iter().enumerate() {
        let key = |field: &str| format!("alerting.error_rules[{i}].{field}");
        if rule.name.trim().is_empty() {
            return Err(format!("{}: must not be empty", key("name")));
        }
        if rules[..i].iter().any(|r| r.name == rule.name) {
            return Err(format!(
                "{}: {:?} is the name of an earlier rule too",
                key("name"),
                rule.name
            ));
        }
        if rule.min_count == 0 || rule.min_count > MAX_MIN_COUNT {
            return Err(format!(
                "{}: {} is outside 1..={MAX_MIN_COUNT}",
                key("min_count"),
                rule.min_count
            ));
        }
        let window = parse_duration(&rule.window).map_err(|e| format!("{}: {e}", key("window")))?;
        if window < Duration::from_millis(100) || window > MAX_WINDOW {
            return Err(format!(
                "{}: {:?} is outside 100ms..=24h",
                key("window"),
                rule.window
            ));
        }
        if rule.severity.trim().is_empty() {
            return Err(format!("{}: must not be empty", key("severity")));
        }
        if let Some(tenant) = &rule.tenant {
            clew_proto::Tenant::parse(tenant).map_err(|e| format!("{}: {e}", key("tenant")))?;
        }
    }
    Ok(())
}

impl ErrorRule {
    /// Whether the rule counts `tenant`'s errors.
    pub fn applies_to(&self, tenant: &clew_proto::Tenant) -> bool {
        self.tenant.as_deref().is_none_or(|t| t == tenant.as_str())
    }

    /// The window; [`validate_rules`] has checked that it parses.
    pub fn window(&self) -> Duration {
        parse_duration(&self.window).unwrap_or(Duration::from_secs(10))
    }
}

/// `"250ms"`, `"10s"`, `"5m"`, `"1h"`: a whole number and a unit.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like \"10s\", \"500ms\" or \"5m\""))?;
    let ms = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => {
            return Err(format!(
                "{text:?} has no known unit (ms, s, m or h), as in \"10s\""
            ))
        }
    };
    ms.map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is too long"))
}

fn check_http_url(url: &str) -> Result<(), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!("{url:?} must start with http:// (put a TLS-terminating proxy in front for https)")
    })?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{url:?} has no host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, window: &str) -> ErrorRule {
        ErrorRule {
            name: name.into(),
            service: None,
            tenant: None,
            min_count: 20,
            window: window.into(),
            severity: "critical".into(),
        }
    }

    #[test]
    fn the_issue_example_parses() {
        let text = r#"
alertmanager_urls = ["http://127.0.0.1:9093"]
webhook_urls = []
[[error_rules]]
name = "errors"
service = "payments"
min_count = 20
window = "10s"
severity = "critical"
"#;
        let c: AlertingConfig = toml::from_str(text).unwrap();
        c.validate().unwrap();
        assert_eq!(c.error_rules[0].window(), Duration::from_secs(10));
        assert_eq!(c.error_rules[0].service.as_deref(), Some("payments"));
        assert!(c.enabled());
        assert!(!AlertingConfig::default().enabled());
        AlertingConfig::default().validate().unwrap();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        for bad in [
            "",
            "10",
            "s",
            "1.5s",
            "10 parsecs",
            "-1s",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn errors_name_the_key() {
        let mut c = AlertingConfig {
            error_rules: vec![rule("a", "10s"), rule("a", "10s")],
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().contains("error_rules[1].name"));
        c.error_rules = vec![rule("a", "10 s")];
        assert!(c.validate().unwrap_err().contains("error_rules[0].window"));
        c.error_rules = vec![rule("a", "10ms")];
        assert!(c.validate().unwrap_err().contains("error_rules[0].window"));
        c.error_rules = vec![ErrorRule {
            min_count: 0,
            ..rule("a", "1s")
        }];
        assert!(c.validate().unwrap_err().contains("min_count"));
        c.error_rules.clear();
        c.alertmanager_urls = vec!["https://am:9093".into()];
        assert!(c
            .validate()
            .unwrap_err()
            .contains("alerting.alertmanager_urls[0]"));
        c.alertmanager_urls.clear();
        c.ui_url = Some("ftp://x".into());
        assert!(c.validate().unwrap_err().contains("alerting.ui_url"));
        c.ui_url = None;
        c.error_rules = vec![ErrorRule {
            tenant: Some("Shop.Team".into()),
            ..rule("a", "1s")
        }];
        assert!(c.validate().unwrap_err().contains("error_rules[0].tenant"));
        c.error_rules[0].tenant = Some("shop".into());
        c.validate().unwrap();
        let shop = clew_proto::Tenant::parse("shop").unwrap();
        assert!(c.error_rules[0].applies_to(&shop));
        assert!(!c.error_rules[0].applies_to(&clew_proto::Tenant::default()));
        assert!(rule("b", "1s").applies_to(&shop));
        assert!(toml::from_str::<AlertingConfig>("alertmanager_url = []").is_err());
    }
}
