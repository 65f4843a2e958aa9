//! Error-signature alerts, evaluated by clew itself within seconds: the alerting
//! systems that only see metrics never see the exception or the trace.
//!
//! ```text
//!  ingest::Front::prepare, stage 6 ─▶ Alerting::pick: signature of every error span (signature.rs)
//!  ingest::Front::ingest, after the sink acknowledged ─▶ Alerting::observe: count the spans the
//!      store kept, per rule and signature (evaluator.rs) ─▶ fired now? ─┐
//!  tick every 250 ms: resolve after a quiet window, refresh firing ─────┼─▶ per target: bounded queue
//!  config file changed? re-read [alerting] error_rules (bad file: keep) ┘    ─▶ POST with back-off
//!                                                                            (delivery.rs)
//!  GET /api/v1/alerts, the /alerts page ◀── Alerting::board (firing + recently resolved)
//! ```
//!
//! What counts: only error spans the sink acknowledged as durable and the store did not
//! reject, so every example trace of an alert opens, and a request the collector refused
//! (overloaded) counts once, when the client's retry is stored. Spans that ended more than
//! [`MAX_SPAN_AGE`] before they arrived (a replayed Kafka backlog) count for nothing: an
//! alert says what is failing now. Occurrences are counted at arrival, on the collector's
//! clock.
//!
//! Scale-out: every collector evaluates the spans it ingests and posts alerts whose labels
//! carry nothing collector-specific (`alertname`, `service`, `operation`,
//! `exception_type`, `severity`, `signature`, and `tenant` where tenants are told apart),
//! so Alertmanager merges the alerts of one signature from several collectors into one.
//! Each collector counts only its own share of the spans, so `min_count` is per collector.
//!
//! Tenants (`docs/adr/0011-tenants.md`): each tenant's errors are counted apart under
//! every rule that applies to it (a rule may name one `tenant`), `max_signatures` is per
//! tenant, and the board is the caller's tenant's. Alerts carry a `tenant` label when
//! authentication is on (and, without it, when the tenant is not `default`).

pub mod config;
pub mod delivery;
pub mod evaluator;
mod metrics;
pub mod signature;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clew_proto::{RejectReason, Span, Tenant};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub use config::{AlertingConfig, ErrorRule};
use delivery::{Backoff, Render, Target};
use evaluator::{AlertState, AlertView, Evaluator, Occurrence};
use signature::Signature;

/// Error spans that ended longer ago than this when they arrived are not counted.
pub const MAX_SPAN_AGE: Duration = Duration::from_secs(300);
/// How often quiet alerts are resolved and firing ones refreshed.
const TICK: Duration = Duration::from_millis(250);

/// The running alert evaluation: rules, their state and the delivery tasks.
pub struct Alerting {
    evaluator: Mutex<Evaluator>,
    targets: Vec<Arc<Target>>,
    render: Render,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// The error spans of one input (indexes into its spans), picked before the sink.
#[derive(Debug, Default)]
pub struct Picked(Vec<(usize, Occurrence)>);

impl Alerting {
    /// Starts the evaluation and one delivery task per target. `config` must have passed
    /// [`AlertingConfig::validate`]; `config_file` (the file it came from) is polled for
    /// changed rules; `default_ui_url` is the base of trace links when `ui_url` is unset;
    /// `label_tenants` (authentication is on) gives every alert a `tenant` label.
    /// Must be called inside a tokio runtime.
    pub fn start(
        config: &AlertingConfig,
        config_file: Option<PathBuf>,
        default_ui_url: &str,
        label_tenants: bool,
    ) -> Arc<Alerting> {
        metrics::describe();
        let ui_url = config
            .ui_url
            .as_deref()
            .unwrap_or(default_ui_url)
            .trim_end_matches('/')
            .to_string();
        let resend = Duration::from_millis(config.resend_interval_ms);
        let render = Render {
            ui_url,
            resend,
            label_tenants,
        };
        let mut targets = Vec::new();
        for url in &config.alertmanager_urls {
            let post = format!("{}/api/v2/alerts", url.trim_end_matches('/'));
            targets.push(Target::new("alertmanager", post, config.queue_max_alerts));
        }
        for url in &config.webhook_urls {
            targets.push(Target::new("webhook", url.clone(), config.queue_max_alerts));
        }
        let (stop, stop_rx) = watch::channel(false);
        let alerting = Arc::new(Alerting {
            evaluator: Mutex::new(Evaluator::new(
                &config.error_rules,
                config.max_signatures,
                config.resend_interval_ms,
            )),
            targets,
            render: render.clone(),
            stop,
            tasks: Mutex::new(Vec::new()),
        });
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.request_timeout_ms))
            .build()
            .unwrap_or_default();
        let mut tasks = Vec::new();
        for target in &alerting.targets {
            tasks.push(tokio::spawn(delivery::run(
                target.clone(),
                client.clone(),
                render.clone(),
                Backoff::new(
                    Duration::from_millis(config.retry_initial_ms),
                    Duration::from_millis(config.retry_max_ms),
                ),
                stop_rx.clone(),
            )));
        }
        tasks.push(tokio::spawn(tick_loop(
            Arc::downgrade(&alerting),
            config.clone(),
            config_file,
            stop_rx,
        )));
        *alerting.tasks.lock().expect("alerting tasks lock") = tasks;
        info!(
            rules = config.error_rules.len(),
            alertmanagers = config.alertmanager_urls.len(),
            webhooks = config.webhook_urls.len(),
            ui_url = %alerting.render.ui_url,
            "error alerts evaluated"
        );
        alerting
    }

    /// Stage 6 of the ingest path: the signature of each recent error span of one input
    /// (all of `tenant`). CPU only, nothing for spans that are not errors.
    pub fn pick(&self, tenant: &Tenant, spans: &[Span]) -> Picked {
        let oldest = (now_ms() * 1_000_000).saturating_sub(MAX_SPAN_AGE.as_nanos() as u64);
        Picked(
            spans
                .iter()
                .enumerate()
                .filter(|(_, s)| s.end_unix_nano.max(s.start_unix_nano) >= oldest)
                .filter_map(|(i, span)| {
                    Signature::of(span).map(|signature| {
                        (
                            i,
                            Occurrence {
                                tenant: tenant.clone(),
                                signature,
                                trace_id: span.trace_id,
                            },
                        )
                    })
                })
                .collect(),
        )
    }

    /// Counts the picked error spans the store kept (`rejected`: the store's rejections,
    /// by index) and hands the alerts that fire to delivery without waiting for it.
    pub fn observe(&self, picked: Picked, rejected: &[(usize, RejectReason)]) {
        // sorted once: a large request can have many rejections and many error spans
        let mut rejected: Vec<usize> = rejected.iter().map(|(i, _)| *i).collect();
        rejected.sort_unstable();
        let occurrences: Vec<Occurrence> = picked
            .0
            .into_iter()
            .filter(|(i, _)| rejected.binary_search(i).is_err())
            .map(|(_, o)| o)
            .collect();
        if occurrences.is_empty() {
            return;
        }
        metrics::error_spans(occurrences.len());
        let fired = {
            let mut e = self.evaluator.lock().expect("alert evaluator lock");
            let fired = e.observe(&occurrences, now_ms());
            metrics::signatures_dropped(e.take_counts().signatures_dropped);
            if !fired.is_empty() {
                metrics::state(e.firing(), e.tracked());
            }
            fired
        };
        for a in &fired {
            info!(rule = %a.rule, tenant = %a.tenant, service = %a.signature.service, operation = %a.signature.operation, exception_type = %a.signature.exception_type, signature = %a.hash, count = a.count, "error alert fired");
            metrics::fired(&a.rule);
        }
        self.deliver(&fired);
    }

    /// `tenant`'s firing and recently resolved alerts, newest first, and the rules that
    /// apply to it.
    pub fn board(&self, tenant: &Tenant) -> Board {
        let now = now_ms();
        let (views, rules) = {
            let e = self.evaluator.lock().expect("alert evaluator lock");
            (e.board(now, tenant), e.rules())
        };
        let rules: Vec<String> = rules
            .into_iter()
            .filter(|r| r.applies_to(tenant))
            .map(|r| r.name)
            .collect();
        Board {
            enabled: !rules.is_empty(),
            rules,
            alerts: views.iter().map(|v| self.board_alert(v)).collect(),
        }
    }

    /// Stops the evaluation and delivery (waiting alerts are not delivered: Alertmanager
    /// ends firing alerts at their `endsAt`).
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().expect("alerting tasks lock"));
        for task in tasks {
            let _ = task.await;
        }
    }

    fn deliver(&self, alerts: &[AlertView]) {
        if alerts.is_empty() {
            return;
        }
        for a in alerts.iter().filter(|a| a.state == AlertState::Resolved) {
            info!(rule = %a.rule, tenant = %a.tenant, signature = %a.hash, count = a.count, "error alert resolved");
            metrics::resolved(&a.rule);
        }
        for t in &self.targets {
            t.push(alerts);
        }
    }

    fn tick(&self) {
        let out = {
            let mut e = self.evaluator.lock().expect("alert evaluator lock");
            let out = e.tick(now_ms());
            metrics::state(e.firing(), e.tracked());
            out
        };
        self.deliver(&out);
    }

    fn set_rules(&self, rules: &[ErrorRule]) {
        let out = self
            .evaluator
            .lock()
            .expect("alert evaluator lock")
            .set_rules(rules, now_ms());
        self.deliver(&out);
    }

    fn board_alert(&self, v: &AlertView) -> BoardAlert {
        let ns = |ms: u64| (u128::from(ms) * 1_000_000).to_string();
        BoardAlert {
            state: v.state,
            alertname: v.rule.clone(),
            severity: v.severity.clone(),
            service: v.signature.service.clone(),
            operation: v.signature.operation.clone(),
            exception_type: v.signature.exception_type.clone(),
            message: v.signature.message.clone(),
            top_frame: v.signature.top_frame.clone(),
            signature: v.hash.clone(),
            count: v.count,
            first_seen_unix_nano: ns(v.first_seen_ms),
            last_seen_unix_nano: ns(v.last_seen_ms),
            fired_at_unix_nano: ns(v.fired_at_ms),
            resolved_at_unix_nano: v.resolved_at_ms.map(ns),
            example_trace_ids: v.examples.iter().map(|t| t.to_hex()).collect(),
            labels: self
                .render
                .labels(v)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }
    }
}

/// `GET /api/v1/alerts`: one tenant's.
#[derive(Debug, Clone, Serialize)]
pub struct Board {
    /// Whether any error rule applies to the tenant.
    pub enabled: bool,
    /// The names of the rules in force for the tenant.
    pub rules: Vec<String>,
    /// Firing alerts and those resolved within the last hour (at most 200), newest first
    /// (by when they fired).
    pub alerts: Vec<BoardAlert>,
}

/// One alert of the board. Timestamps are unix nanoseconds as decimal strings, like the
/// rest of the API; every string but `state` comes from span data and is shown as text.
#[derive(Debug, Clone, Serialize)]
pub struct BoardAlert {
    /// `firing` or `resolved`.
    pub state: AlertState,
    pub alertname: String,
    pub severity: String,
    pub service: String,
    pub operation: String,
    pub exception_type: String,
    /// The normalised message.
    pub message: String,
    pub top_frame: String,
    pub signature: String,
    pub count: u64,
    pub first_seen_unix_nano: String,
    pub last_seen_unix_nano: String,
    pub fired_at_unix_nano: String,
    pub resolved_at_unix_nano: Option<String>,
    pub example_trace_ids: Vec<String>,
    /// The labels as Alertmanager has them.
    pub labels: std::collections::BTreeMap<String, String>,
}

/// Ticks the evaluator and re-reads the rules when the config file changes, until `stop`.
async fn tick_loop(
    alerting: std::sync::Weak<Alerting>,
    started_with: AlertingConfig,
    config_file: Option<PathBuf>,
    mut stop: watch::Receiver<bool>,
) {
    let reload_every = Duration::from_millis(started_with.reload_interval_ms);
    let mut watch = config_file.map(crate::file_watch::FileWatch::new);
    let mut last_check = tokio::time::Instant::now();
    let mut current = started_with.clone();
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let Some(alerting) = alerting.upgrade() else {
            return;
        };
        alerting.tick();
        let Some(watch) = watch.as_mut() else {
            continue;
        };
        if last_check.elapsed() < reload_every {
            continue;
        }
        last_check = tokio::time::Instant::now();
        if !watch.changed() {
            continue;
        }
        let path = watch.path();
        match read_alerting(path).await {
            Ok(new) => {
                if new.error_rules != current.error_rules {
                    alerting.set_rules(&new.error_rules);
                    info!(file = %path.display(), rules = new.error_rules.len(), "alert rules re-read");
                }
                let restart_only = AlertingConfig {
                    error_rules: Vec::new(),
                    ..new.clone()
                };
                if restart_only
                    != (AlertingConfig {
                        error_rules: Vec::new(),
                        ..started_with.clone()
                    })
                {
                    warn!(file = %path.display(), "[alerting] settings other than error_rules changed; they take effect after a restart");
                }
                current = new;
                metrics::reload("ok");
            }
            Err(error) => {
                warn!(file = %path.display(), %error, "failed to re-read the alert rules; the previous rules stay in force");
                metrics::reload("error");
            }
        }
    }
}

/// The `[alerting]` section of the config file (absent: no rules), validated.
async fn read_alerting(path: &Path) -> Result<AlertingConfig, String> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| format!("failed to read {}: {e}", path.display()))?;
    parse_alerting(&text)
}

/// The `[alerting]` section of a whole config file's text, validated.
pub fn parse_alerting(text: &str) -> Result<AlertingConfig, String> {
    let mut file: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    let config = match file.remove("alerting") {
        None => AlertingConfig::default(),
        Some(section) => section
            .try_into::<AlertingConfig>()
            .map_err(|e| format!("in [alerting]: {e}"))?,
    };
    config.validate()?;
    Ok(config)
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clew_proto::model::Event;
    use clew_proto::otlp::common::v1::{any_value, AnyValue, KeyValue};
    use clew_proto::{SpanId, StatusCode, TraceId};

    fn error_span(trace: u8, message: &str, end_unix_nano: u64) -> Span {
        let kv = |k: &str, v: &str| KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            ..Default::default()
        };
        Span {
            tenant: Default::default(),
            trace_id: TraceId([trace; 16]),
            span_id: SpanId([trace; 8]),
            parent_span_id: None,
            trace_state: String::new(),
            flags: 0,
            name: "charge".into(),
            kind: Default::default(),
            start_unix_nano: end_unix_nano - 1000,
            end_unix_nano,
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: vec![Event {
                time_unix_nano: end_unix_nano,
                name: "exception".into(),
                attributes: vec![
                    kv("exception.type", "CardDeclinedException"),
                    kv("exception.message", message),
                ],
                ..Default::default()
            }],
            dropped_events_count: 0,
            links: Vec::new(),
            dropped_links_count: 0,
            status_code: StatusCode::Error,
            status_message: String::new(),
            resource: Default::default(),
            scope: Default::default(),
            service_name: "payments".into(),
            business_keys: Vec::new(),
            repairs: 0,
        }
    }

    #[tokio::test]
    async fn picks_recent_error_spans_and_counts_only_stored_ones() {
        let config = AlertingConfig {
            error_rules: vec![ErrorRule {
                name: "errors".into(),
                service: None,
                tenant: None,
                min_count: 3,
                window: "10s".into(),
                severity: "critical".into(),
            }],
            ..Default::default()
        };
        let a = Alerting::start(&config, None, "http://127.0.0.1:16686", false);
        let now = now_ms() * 1_000_000;
        let mut ok = error_span(9, "fine", now);
        ok.status_code = StatusCode::Ok;
        ok.events.clear();
        let spans = vec![
            error_span(1, "card 1 declined", now),
            ok,
            error_span(2, "card 2 declined", now),
            error_span(3, "card 3 declined", now - 10 * 60 * 1_000_000_000),
            error_span(4, "card 4 declined", now),
        ];
        let picked = a.pick(&Tenant::default(), &spans);
        assert_eq!(
            picked.0.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![0, 2, 4],
            "errors only, and not the one that ended 10 minutes ago"
        );
        // the store rejected one of them: 2 of 3 count, nothing fires
        a.observe(picked, &[(2, RejectReason::TraceTooLarge)]);
        assert!(a.board(&Tenant::default()).alerts.is_empty());
        a.observe(a.pick(&Tenant::default(), &spans[4..]), &[]);
        let board = a.board(&Tenant::default());
        assert!(board.enabled);
        assert_eq!(board.alerts.len(), 1);
        let alert = &board.alerts[0];
        assert_eq!(alert.message, "card <n> declined");
        assert_eq!(alert.count, 3);
        assert_eq!(
            alert.example_trace_ids,
            vec![TraceId([1; 16]).to_hex(), TraceId([4; 16]).to_hex()]
        );
        a.shutdown().await;
    }

    #[test]
    fn the_alerting_section_is_read_from_a_whole_config_file() {
        let c = parse_alerting(
            "data_dir = \"x\"\n[query]\nhttp_addr = \"1.2.3.4:5\"\n[alerting]\n[[alerting.error_rules]]\nname = \"e\"\nmin_count = 2\nwindow = \"2s\"\n",
        )
        .unwrap();
        assert_eq!(c.error_rules.len(), 1);
        assert_eq!(c.error_rules[0].severity, "warning");
        assert!(parse_alerting("").unwrap().error_rules.is_empty());
        let e = parse_alerting(
            "[alerting]\n[[alerting.error_rules]]\nname = \"e\"\nmin_count = 2\nwindow = \"2 s\"\n",
        )
        .unwrap_err();
        assert!(e.contains("error_rules[0].window"), "{e}");
        assert!(parse_alerting("[alerting\n").is_err());
    }
}
