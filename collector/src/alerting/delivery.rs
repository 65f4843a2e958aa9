//! Delivery: one bounded queue and one task per target (each Alertmanager, each webhook),
//! so a slow or dead target delays only itself and never the ingest path.
//!
//! ```text
//!  evaluator ─▶ Queue::push (latest state per alert replaces the waiting one; full: the
//!               oldest waiting alert is dropped, counted)
//!                  │ Notify
//!                  ▼
//!  target task: take ≤ 64 ─▶ render (endsAt from the time of sending) ─▶ POST
//!                  ▲                                                      │ 2xx: sent
//!                  └── back-off (doubling, capped) ◀── put back ◀─ error / 5xx / 429
//!                                                       (4xx other than 429: dropped, counted)
//! ```
//!
//! The payload is Alertmanager's API v2 `postableAlerts`: a JSON array of
//! `{labels, annotations, startsAt, endsAt, generatorURL}`; webhooks get the same array.
//! A firing alert's `endsAt` lies four resend intervals ahead, so Alertmanager resolves it
//! by itself if clew stops refreshing it; a resolved alert's `endsAt` is when it resolved.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{watch, Notify};
use tracing::{debug, warn};

use super::evaluator::{AlertKey, AlertState, AlertView};
use super::metrics;

/// Alerts per request.
const BATCH: usize = 64;

/// What is waiting for one target: the latest state of each alert, oldest first.
pub struct Queue {
    order: VecDeque<AlertKey>,
    latest: HashMap<AlertKey, AlertView>,
    cap: usize,
}

impl Queue {
    pub fn new(cap: usize) -> Self {
        Queue {
            order: VecDeque::new(),
            latest: HashMap::new(),
            cap: cap.max(1),
        }
    }

    /// Queues `alert`; an alert already waiting is replaced in place. Returns how many
    /// waiting alerts were dropped to make room (0 or 1).
    pub fn push(&mut self, alert: AlertView) -> u64 {
        let key = alert.key();
        if let Some(waiting) = self.latest.get_mut(&key) {
            *waiting = alert;
            return 0;
        }
        let mut dropped = 0;
        if self.order.len() >= self.cap {
            if let Some(old) = self.order.pop_front() {
                self.latest.remove(&old);
                dropped = 1;
            }
        }
        self.order.push_back(key.clone());
        self.latest.insert(key, alert);
        dropped
    }

    /// Takes up to `n` alerts, oldest first.
    pub fn take(&mut self, n: usize) -> Vec<AlertView> {
        let mut out = Vec::new();
        while out.len() < n {
            let Some(key) = self.order.pop_front() else {
                break;
            };
            if let Some(a) = self.latest.remove(&key) {
                out.push(a);
            }
        }
        out
    }

    /// Puts a batch that failed back in front, unless a newer state of an alert was
    /// queued meanwhile (that one goes instead) or the queue filled up (counted as
    /// dropped in the return value).
    pub fn put_back(&mut self, batch: Vec<AlertView>) -> u64 {
        let mut dropped = 0;
        for alert in batch.into_iter().rev() {
            let key = alert.key();
            if self.latest.contains_key(&key) {
                continue;
            }
            if self.order.len() >= self.cap {
                dropped += 1;
                continue;
            }
            self.order.push_front(key.clone());
            self.latest.insert(key, alert);
        }
        dropped
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// Doubling delays from `initial` up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
            next: initial,
        }
    }

    /// The delay before the next attempt; each call doubles the one after.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// How alerts are rendered (the same for every target).
#[derive(Debug, Clone)]
pub struct Render {
    /// Base of the trace links, without a trailing `/`.
    pub ui_url: String,
    pub resend: Duration,
    /// Give every alert a `tenant` label, `default`'s included (authentication is on).
    /// Without it only the alerts of other tenants have one (a collector behind Kafka
    /// whose agents check tokens), so alerts look as before tenants where there are none.
    pub label_tenants: bool,
}

impl Render {
    pub fn trace_url(&self, trace_id: &str) -> String {
        format!("{}/trace/{trace_id}", self.ui_url)
    }

    /// The labels every collector gives this alert: nothing collector-specific, so
    /// Alertmanager merges the same alert from several collectors into one; the tenant's
    /// name keeps two tenants' alerts of one signature apart.
    pub fn labels(&self, alert: &AlertView) -> BTreeMap<&'static str, String> {
        let s = &alert.signature;
        let mut labels = BTreeMap::from([
            ("alertname", alert.rule.clone()),
            ("service", s.service.clone()),
            ("operation", s.operation.clone()),
            ("severity", alert.severity.clone()),
            ("signature", alert.hash.clone()),
        ]);
        // Alertmanager drops empty label values; absent says the same
        if !s.exception_type.is_empty() {
            labels.insert("exception_type", s.exception_type.clone());
        }
        if self.label_tenants || !alert.tenant.is_default() {
            labels.insert("tenant", alert.tenant.to_string());
        }
        labels
    }

    /// One Alertmanager API v2 `postableAlert`, as of `now_ms`.
    pub fn alert(&self, alert: &AlertView, now_ms: u64) -> Value {
        let s = &alert.signature;
        let ids: Vec<String> = alert.examples.iter().map(|t| t.to_hex()).collect();
        let urls: Vec<String> = ids.iter().map(|id| self.trace_url(id)).collect();
        let what = if s.exception_type.is_empty() {
            s.message.clone()
        } else if s.message.is_empty() {
            s.exception_type.clone()
        } else {
            format!("{}: {}", s.exception_type, s.message)
        };
        let mut annotations = BTreeMap::from([
            (
                "summary",
                format!(
                    "{} errors in {} {}: {what}",
                    alert.count, s.service, s.operation
                ),
            ),
            ("count", alert.count.to_string()),
            ("first_seen", rfc3339(alert.first_seen_ms)),
            ("last_seen", rfc3339(alert.last_seen_ms)),
            ("message", s.message.clone()),
            ("example_trace_ids", ids.join(" ")),
            ("example_trace_urls", urls.join(" ")),
            ("alerts_url", format!("{}/alerts", self.ui_url)),
        ]);
        if !s.top_frame.is_empty() {
            annotations.insert("top_frame", s.top_frame.clone());
        }
        let ends_at = match alert.state {
            AlertState::Firing => now_ms + 4 * self.resend.as_millis() as u64,
            AlertState::Resolved => alert.resolved_at_ms.unwrap_or(now_ms),
        };
        json!({
            "labels": self.labels(alert),
            "annotations": annotations,
            "startsAt": rfc3339(alert.fired_at_ms),
            "endsAt": rfc3339(ends_at),
            "generatorURL": urls.first().cloned().unwrap_or_else(|| format!("{}/alerts", self.ui_url)),
        })
    }
}

/// One destination of alerts.
pub struct Target {
    /// `alertmanager` or `webhook`: the `kind` label of the delivery metrics (URLs may hold
    /// credentials and are never labels).
    pub kind: &'static str,
    /// Where the JSON array is posted.
    pub post_url: String,
    queue: Mutex<Queue>,
    wake: Notify,
}

impl Target {
    pub fn new(kind: &'static str, post_url: String, cap: usize) -> Arc<Target> {
        Arc::new(Target {
            kind,
            post_url,
            queue: Mutex::new(Queue::new(cap)),
            wake: Notify::new(),
        })
    }

    /// Queues alerts without waiting (the evaluator's and ingest's side).
    pub fn push(&self, alerts: &[AlertView]) {
        if alerts.is_empty() {
            return;
        }
        let (dropped, len) = {
            let mut q = self.queue.lock().expect("alert queue lock");
            let dropped: u64 = alerts.iter().map(|a| q.push(a.clone())).sum();
            (dropped, q.len())
        };
        metrics::queued(self.kind, len);
        if dropped > 0 {
            metrics::notifications_dropped(self.kind, dropped);
            warn!(
                kind = self.kind,
                dropped, "alert delivery queue full; dropped the oldest waiting alerts"
            );
        }
        self.wake.notify_one();
    }

    fn take(&self) -> Vec<AlertView> {
        self.queue.lock().expect("alert queue lock").take(BATCH)
    }

    fn put_back(&self, batch: Vec<AlertView>) {
        let dropped = self.queue.lock().expect("alert queue lock").put_back(batch);
        if dropped > 0 {
            metrics::notifications_dropped(self.kind, dropped);
        }
    }

    fn waiting(&self) -> usize {
        self.queue.lock().expect("alert queue lock").len()
    }
}

/// Delivers `target`'s queue until `stop` turns true (what is still queued then stays
/// undelivered: Alertmanager ends firing alerts at their `endsAt`).
pub async fn run(
    target: Arc<Target>,
    client: reqwest::Client,
    render: Render,
    mut backoff: Backoff,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let batch = target.take();
        if batch.is_empty() {
            metrics::queued(target.kind, 0);
            tokio::select! {
                _ = target.wake.notified() => continue,
                _ = stop.wait_for(|s| *s) => return,
            }
        }
        let now = super::now_ms();
        let body: Vec<Value> = batch.iter().map(|a| render.alert(a, now)).collect();
        let result = client.post(&target.post_url).json(&body).send().await;
        let outcome = match result {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                warn!(kind = target.kind, %status, answer = %text.chars().take(300).collect::<String>(), "alert target refused the alerts; not retrying them");
                metrics::delivery(target.kind, "refused", batch.len());
                backoff.reset();
                continue;
            }
            Ok(r) => Err(format!("answered {}", r.status())),
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(()) => {
                debug!(kind = target.kind, alerts = batch.len(), "alerts delivered");
                metrics::delivery(target.kind, "sent", batch.len());
                metrics::queued(target.kind, target.waiting());
                backoff.reset();
            }
            Err(error) => {
                metrics::delivery(target.kind, "failed", batch.len());
                let delay = backoff.next_delay();
                warn!(kind = target.kind, %error, retry_in_ms = delay.as_millis() as u64, "alert delivery failed; retrying");
                target.put_back(batch);
                metrics::queued(target.kind, target.waiting());
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
    }
}

/// `2024-05-01T12:00:00.123Z` for a unix time in milliseconds.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = clew_store::trace_index::days::civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::signature::Signature;
    use clew_proto::TraceId;

    fn alert(message: &str, state: AlertState) -> AlertView {
        AlertView {
            state,
            tenant: Default::default(),
            rule: "errors".into(),
            severity: "critical".into(),
            signature: Signature {
                service: "payments".into(),
                operation: "charge".into(),
                exception_type: "CardDeclinedException".into(),
                message: message.into(),
                top_frame: String::new(),
            },
            hash: format!("h-{message}"),
            count: 20,
            first_seen_ms: 1_000,
            last_seen_ms: 2_000,
            fired_at_ms: 2_000,
            resolved_at_ms: (state == AlertState::Resolved).then_some(5_000),
            examples: vec![TraceId([0xab; 16])],
        }
    }

    #[test]
    fn queue_keeps_the_latest_state_per_alert_and_is_bounded() {
        let mut q = Queue::new(2);
        assert_eq!(q.push(alert("a", AlertState::Firing)), 0);
        assert_eq!(q.push(alert("b", AlertState::Firing)), 0);
        // a newer state replaces the waiting one, in its place
        assert_eq!(q.push(alert("a", AlertState::Resolved)), 0);
        assert_eq!(q.len(), 2);
        // full: the oldest waiting alert goes
        assert_eq!(q.push(alert("c", AlertState::Firing)), 1);
        let got = q.take(10);
        let names: Vec<_> = got.iter().map(|a| a.signature.message.as_str()).collect();
        assert_eq!(names, vec!["b", "c"]);
        assert!(q.is_empty());
        // a failed batch goes back in front, unless a newer state came meanwhile
        q.push(alert("c", AlertState::Resolved));
        assert_eq!(q.put_back(got), 0);
        let got = q.take(10);
        let states: Vec<_> = got
            .iter()
            .map(|a| (a.signature.message.as_str(), a.state))
            .collect();
        assert_eq!(
            states,
            vec![("b", AlertState::Firing), ("c", AlertState::Resolved)]
        );
        let mut q = Queue::new(1);
        q.push(alert("x", AlertState::Firing));
        assert_eq!(q.put_back(vec![alert("y", AlertState::Firing)]), 1);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(250), Duration::from_secs(2));
        let got: Vec<u64> = (0..6).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(got, vec![250, 500, 1000, 2000, 2000, 2000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(250));
    }

    #[test]
    fn payload_is_alertmanager_v2_with_links_and_no_collector_label() {
        let r = Render {
            ui_url: "http://clew:16686".into(),
            resend: Duration::from_secs(30),
            label_tenants: false,
        };
        let v = r.alert(&alert("card <n> declined", AlertState::Firing), 10_000);
        assert_eq!(v["labels"]["alertname"], "errors");
        assert_eq!(v["labels"]["exception_type"], "CardDeclinedException");
        assert_eq!(v["labels"]["signature"], "h-card <n> declined");
        assert_eq!(
            v["labels"].as_object().unwrap().len(),
            6,
            "only the documented labels: {v}"
        );
        assert_eq!(v["startsAt"], "1970-01-01T00:00:02.000Z");
        assert_eq!(v["endsAt"], "1970-01-01T00:02:10.000Z");
        let id = "ab".repeat(16);
        assert_eq!(v["annotations"]["example_trace_ids"], id);
        assert_eq!(
            v["annotations"]["example_trace_urls"],
            format!("http://clew:16686/trace/{id}")
        );
        assert_eq!(v["generatorURL"], format!("http://clew:16686/trace/{id}"));
        assert_eq!(v["annotations"]["count"], "20");
        let v = r.alert(&alert("x", AlertState::Resolved), 10_000);
        assert_eq!(v["endsAt"], "1970-01-01T00:00:05.000Z");
    }

    #[test]
    fn alerts_carry_their_tenant_where_tenants_are_told_apart() {
        let shop = AlertView {
            tenant: clew_proto::Tenant::parse("shop").unwrap(),
            ..alert("x", AlertState::Firing)
        };
        let mut r = Render {
            ui_url: "http://clew:16686".into(),
            resend: Duration::from_secs(30),
            label_tenants: false,
        };
        // without auth: no label for default, the tenant's name for any other
        assert!(!r
            .labels(&alert("x", AlertState::Firing))
            .contains_key("tenant"));
        assert_eq!(r.labels(&shop)["tenant"], "shop");
        // with auth: every alert has one
        r.label_tenants = true;
        assert_eq!(
            r.labels(&alert("x", AlertState::Firing))["tenant"],
            "default"
        );
        let v = r.alert(&shop, 10_000);
        assert_eq!(v["labels"]["tenant"], "shop");
        // the link opens the trace for whoever holds a token of that tenant
        assert_eq!(
            v["generatorURL"],
            format!("http://clew:16686/trace/{}", "ab".repeat(16))
        );
        // the same alert of two tenants waits twice in a queue
        let mut q = Queue::new(10);
        q.push(alert("x", AlertState::Firing));
        q.push(shop);
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
