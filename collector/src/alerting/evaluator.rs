//! The rule state machine, without I/O or clocks: every call gets `now` (unix ms), so the
//! tests drive it with their own clock.
//!
//! Per rule and signature:
//!
//! ```text
//!            occurrence                 ≥ min_count within window
//!  (none) ───────────────▶ pending ───────────────────────────────▶ firing ──┐ occurrence: count, last seen
//!     ▲                      │ no occurrence for a window                │ ◀─┘ every resend interval: refresh
//!     └──────────────────────┘ (forgotten)                               │
//!     ▲                                                                  │ no occurrence for a window
//!     └──────────────── resolved (kept on the board for an hour) ◀───────┘
//! ```
//!
//! Each transition that Alertmanager must hear of (fire, refresh, resolve) is returned as
//! an [`AlertView`] for delivery; the caller never waits on delivery while holding the
//! state. Counting is by window steps of 1/100 of the window, so a signature costs at most
//! ~100 counters however many errors it has, and the window slides in those steps.
//!
//! Per tenant (`docs/adr/0011-tenants.md`): every rule counts each tenant's occurrences
//! apart (the same signature in two tenants is two alerts), `max_signatures` and the
//! resolved alerts kept for the board are per tenant, and the board shows one tenant's.

use std::collections::{HashMap, VecDeque};

use clew_proto::{Tenant, TraceId};
use serde::Serialize;

use super::config::ErrorRule;
use super::signature::Signature;

/// Example trace ids kept per alert.
pub const MAX_EXAMPLES: usize = 5;
/// Resolved alerts kept for the board: this many, for at most [`RESOLVED_KEEP_MS`].
const RESOLVED_KEEP: usize = 200;
const RESOLVED_KEEP_MS: u64 = 3_600_000;
/// Steps per window.
const STEPS: u64 = 100;

/// One error span, as the evaluator sees it.
#[derive(Debug, Clone)]
pub struct Occurrence {
    /// Whose span it was.
    pub tenant: Tenant,
    pub signature: Signature,
    pub trace_id: TraceId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Firing,
    Resolved,
}

/// One alert as delivered and as shown on the board.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertView {
    pub state: AlertState,
    /// Whose errors these are.
    pub tenant: Tenant,
    pub rule: String,
    pub severity: String,
    pub signature: Signature,
    /// [`Signature::hash`].
    pub hash: String,
    /// Errors of this signature since it was last quiet for a whole window.
    pub count: u64,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
    pub fired_at_ms: u64,
    pub resolved_at_ms: Option<u64>,
    /// Up to [`MAX_EXAMPLES`] distinct traces, the first ones seen.
    pub examples: Vec<TraceId>,
}

impl AlertView {
    /// What identifies the alert in a delivery queue (Alertmanager: its labels).
    pub fn key(&self) -> AlertKey {
        (self.tenant.clone(), self.rule.clone(), self.hash.clone())
    }
}

/// An alert's identity: tenant, rule, signature hash.
pub type AlertKey = (Tenant, String, String);

/// What the evaluator counted that nothing else sees.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Signatures not tracked because `max_signatures` were tracked already.
    pub signatures_dropped: u64,
}

struct Tracked {
    hash: String,
    /// (step start, count), oldest first, only steps overlapping the window.
    steps: VecDeque<(u64, u64)>,
    in_window: u64,
    count: u64,
    first_seen_ms: u64,
    last_seen_ms: u64,
    examples: Vec<TraceId>,
    firing: Option<Firing>,
}

struct Firing {
    fired_at_ms: u64,
    last_sent_ms: u64,
}

struct RuleState {
    rule: ErrorRule,
    window_ms: u64,
    step_ms: u64,
    /// By tenant, then signature.
    tracked: HashMap<Tenant, HashMap<Signature, Tracked>>,
}

impl RuleState {
    fn new(rule: ErrorRule) -> Self {
        let window_ms = (rule.window().as_millis() as u64).max(1);
        RuleState {
            rule,
            window_ms,
            step_ms: (window_ms / STEPS).max(1),
            tracked: HashMap::new(),
        }
    }

    fn matches(&self, o: &Occurrence) -> bool {
        self.rule.applies_to(&o.tenant)
            && self
                .rule
                .service
                .as_ref()
                .is_none_or(|s| *s == o.signature.service)
    }

    fn view(
        &self,
        tenant: &Tenant,
        sig: &Signature,
        t: &Tracked,
        state: AlertState,
        now: u64,
    ) -> AlertView {
        view(&self.rule, tenant, sig, t, state, now)
    }
}

fn view(
    rule: &ErrorRule,
    tenant: &Tenant,
    sig: &Signature,
    t: &Tracked,
    state: AlertState,
    now: u64,
) -> AlertView {
    AlertView {
        state,
        tenant: tenant.clone(),
        rule: rule.name.clone(),
        severity: rule.severity.clone(),
        signature: sig.clone(),
        hash: t.hash.clone(),
        count: t.count,
        first_seen_ms: t.first_seen_ms,
        last_seen_ms: t.last_seen_ms,
        fired_at_ms: t.firing.as_ref().map_or(now, |f| f.fired_at_ms),
        resolved_at_ms: (state == AlertState::Resolved).then_some(now),
        examples: t.examples.clone(),
    }
}

impl Tracked {
    /// Drops the steps that no longer overlap `(now - window, now]`.
    fn expire(&mut self, now: u64, window_ms: u64, step_ms: u64) {
        while let Some(&(start, n)) = self.steps.front() {
            if start + step_ms + window_ms > now {
                break;
            }
            self.steps.pop_front();
            self.in_window -= n;
        }
    }
}

/// The state of every rule.
pub struct Evaluator {
    rules: Vec<RuleState>,
    /// Per tenant.
    max_signatures: usize,
    resend_ms: u64,
    /// Signatures tracked per tenant, over all rules (no entry: none).
    tracked: HashMap<Tenant, usize>,
    /// Per tenant, newest first.
    resolved: HashMap<Tenant, VecDeque<AlertView>>,
    counts: Counts,
}

impl Evaluator {
    pub fn new(rules: &[ErrorRule], max_signatures: usize, resend_ms: u64) -> Self {
        Evaluator {
            rules: rules.iter().cloned().map(RuleState::new).collect(),
            max_signatures,
            resend_ms: resend_ms.max(1),
            tracked: HashMap::new(),
            resolved: HashMap::new(),
            counts: Counts::default(),
        }
    }

    /// Counts `occurrences` at `now`; returns the alerts that fire now.
    pub fn observe(&mut self, occurrences: &[Occurrence], now: u64) -> Vec<AlertView> {
        let mut out = Vec::new();
        for rs in &mut self.rules {
            let mut fired: Vec<&Occurrence> = Vec::new();
            for o in occurrences {
                if !rs.matches(o) {
                    continue;
                }
                let sigs = rs.tracked.entry(o.tenant.clone()).or_default();
                if !sigs.contains_key(&o.signature) {
                    let tracked = self.tracked.entry(o.tenant.clone()).or_default();
                    if *tracked >= self.max_signatures {
                        self.counts.signatures_dropped += 1;
                        continue;
                    }
                    *tracked += 1;
                    sigs.insert(
                        o.signature.clone(),
                        Tracked {
                            hash: o.signature.hash(),
                            steps: VecDeque::new(),
                            in_window: 0,
                            count: 0,
                            first_seen_ms: now,
                            last_seen_ms: now,
                            examples: Vec::new(),
                            firing: None,
                        },
                    );
                }
                let t = sigs.get_mut(&o.signature).expect("just inserted");
                let step = now - now % rs.step_ms;
                match t.steps.back_mut() {
                    Some((start, n)) if *start == step => *n += 1,
                    _ => t.steps.push_back((step, 1)),
                }
                t.in_window += 1;
                t.count += 1;
                t.last_seen_ms = t.last_seen_ms.max(now);
                if t.examples.len() < MAX_EXAMPLES && !t.examples.contains(&o.trace_id) {
                    t.examples.push(o.trace_id);
                }
                t.expire(now, rs.window_ms, rs.step_ms);
                if t.firing.is_none() && t.in_window >= rs.rule.min_count {
                    t.firing = Some(Firing {
                        fired_at_ms: now,
                        last_sent_ms: now,
                    });
                    fired.push(o);
                }
            }
            // one notification per alert that fired in this call, with its final count
            for o in fired {
                if let Some(t) = rs.tracked.get(&o.tenant).and_then(|s| s.get(&o.signature)) {
                    out.push(rs.view(&o.tenant, &o.signature, t, AlertState::Firing, now));
                }
            }
            // a tenant whose signatures were all dropped keeps no empty map
            rs.tracked.retain(|_, sigs| !sigs.is_empty());
        }
        out
    }

    /// Resolves quiet alerts, forgets quiet pending signatures and returns what must be
    /// (re)sent: resolutions and refreshes of firing alerts due for one.
    pub fn tick(&mut self, now: u64) -> Vec<AlertView> {
        let mut out = Vec::new();
        let resend_ms = self.resend_ms;
        for rs in &mut self.rules {
            let (window_ms, step_ms) = (rs.window_ms, rs.step_ms);
            let mut gone = Vec::new();
            for (tenant, sigs) in rs.tracked.iter_mut() {
                for (sig, t) in sigs.iter_mut() {
                    t.expire(now, window_ms, step_ms);
                    if now.saturating_sub(t.last_seen_ms) >= window_ms {
                        gone.push((tenant.clone(), sig.clone(), t.firing.is_some()));
                        continue;
                    }
                    if let Some(f) = &mut t.firing {
                        if now.saturating_sub(f.last_sent_ms) >= resend_ms {
                            f.last_sent_ms = now;
                            out.push(view(&rs.rule, tenant, sig, t, AlertState::Firing, now));
                        }
                    }
                }
            }
            for (tenant, sig, was_firing) in gone {
                let Some(sigs) = rs.tracked.get_mut(&tenant) else {
                    continue;
                };
                let t = sigs.remove(&sig).expect("just seen");
                if sigs.is_empty() {
                    rs.tracked.remove(&tenant);
                }
                untrack(&mut self.tracked, &tenant, 1);
                if was_firing {
                    let v = rs.view(&tenant, &sig, &t, AlertState::Resolved, now);
                    self.resolved
                        .entry(tenant)
                        .or_default()
                        .push_front(v.clone());
                    out.push(v);
                }
            }
        }
        for resolved in self.resolved.values_mut() {
            while resolved.len() > RESOLVED_KEEP
                || resolved
                    .back()
                    .is_some_and(|v| v.resolved_at_ms.unwrap_or(0) + RESOLVED_KEEP_MS <= now)
            {
                resolved.pop_back();
            }
        }
        self.resolved.retain(|_, r| !r.is_empty());
        out
    }

    /// Replaces the rules. A rule that stays exactly the same keeps its state; the firing
    /// alerts of every other old rule are resolved (and returned for delivery).
    pub fn set_rules(&mut self, rules: &[ErrorRule], now: u64) -> Vec<AlertView> {
        let mut old: Vec<RuleState> = std::mem::take(&mut self.rules);
        let mut out = Vec::new();
        for rule in rules {
            match old.iter().position(|rs| rs.rule == *rule) {
                Some(i) => self.rules.push(old.swap_remove(i)),
                None => self.rules.push(RuleState::new(rule.clone())),
            }
        }
        for rs in old {
            for (tenant, sigs) in &rs.tracked {
                untrack(&mut self.tracked, tenant, sigs.len());
                for (sig, t) in sigs {
                    if t.firing.is_some() {
                        let v = rs.view(tenant, sig, t, AlertState::Resolved, now);
                        self.resolved
                            .entry(tenant.clone())
                            .or_default()
                            .push_front(v.clone());
                        out.push(v);
                    }
                }
            }
        }
        out
    }

    /// `tenant`'s firing alerts and recently resolved ones, newest first (by when they
    /// fired).
    pub fn board(&self, now: u64, tenant: &Tenant) -> Vec<AlertView> {
        let mut all: Vec<AlertView> = self
            .rules
            .iter()
            .flat_map(|rs| {
                rs.tracked
                    .get(tenant)
                    .into_iter()
                    .flatten()
                    .filter(|(_, t)| t.firing.is_some())
                    .map(move |(sig, t)| rs.view(tenant, sig, t, AlertState::Firing, now))
            })
            .chain(self.resolved.get(tenant).into_iter().flatten().cloned())
            .collect();
        all.sort_by(|a, b| {
            b.fired_at_ms
                .cmp(&a.fired_at_ms)
                .then_with(|| a.rule.cmp(&b.rule))
                .then_with(|| a.hash.cmp(&b.hash))
        });
        all
    }

    pub fn rules(&self) -> Vec<ErrorRule> {
        self.rules.iter().map(|rs| rs.rule.clone()).collect()
    }

    /// Signatures tracked now (pending or firing), over every tenant.
    pub fn tracked(&self) -> usize {
        self.tracked.values().sum()
    }

    /// Firing alerts, over every tenant.
    pub fn firing(&self) -> usize {
        self.rules
            .iter()
            .flat_map(|rs| rs.tracked.values())
            .map(|sigs| sigs.values().filter(|t| t.firing.is_some()).count())
            .sum()
    }

    /// Takes the counts gathered since the last call.
    pub fn take_counts(&mut self) -> Counts {
        std::mem::take(&mut self.counts)
    }
}

/// `n` fewer signatures tracked for `tenant` (its entry goes at zero).
fn untrack(tracked: &mut HashMap<Tenant, usize>, tenant: &Tenant, n: usize) {
    if let Some(count) = tracked.get_mut(tenant) {
        *count = count.saturating_sub(n);
        if *count == 0 {
            tracked.remove(tenant);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, service: Option<&str>, min_count: u64, window: &str) -> ErrorRule {
        ErrorRule {
            name: name.into(),
            service: service.map(String::from),
            tenant: None,
            min_count,
            window: window.into(),
            severity: "critical".into(),
        }
    }

    fn sig(service: &str, message: &str) -> Signature {
        Signature {
            service: service.into(),
            operation: "charge".into(),
            exception_type: "CardDeclinedException".into(),
            message: message.into(),
            top_frame: String::new(),
        }
    }

    fn occ(s: &Signature, trace: u8) -> Occurrence {
        Occurrence {
            tenant: Tenant::default(),
            signature: s.clone(),
            trace_id: TraceId([trace; 16]),
        }
    }

    const T0: u64 = 1_700_000_000_000;

    #[test]
    fn fires_once_at_min_count_within_the_window() {
        let mut e = Evaluator::new(&[rule("errors", None, 20, "10s")], 100, 30_000);
        let s = sig("payments", "card <n> declined");
        // 19 errors spread over 9.5 s: not yet
        for i in 0..19u64 {
            assert!(e.observe(&[occ(&s, i as u8 + 1)], T0 + i * 500).is_empty());
        }
        assert!(e.tick(T0 + 9_500).is_empty());
        // the 20th within the window fires, once
        let fired = e.observe(&[occ(&s, 30)], T0 + 9_600);
        assert_eq!(fired.len(), 1);
        let a = &fired[0];
        assert_eq!(a.state, AlertState::Firing);
        assert_eq!((a.rule.as_str(), a.count), ("errors", 20));
        assert_eq!(a.first_seen_ms, T0);
        assert_eq!(a.last_seen_ms, T0 + 9_600);
        assert_eq!(a.examples.len(), MAX_EXAMPLES);
        assert_eq!(a.examples[0], TraceId([1; 16]));
        // it keeps occurring: no second alert, the count grows
        for i in 0..100u64 {
            assert!(e.observe(&[occ(&s, 40)], T0 + 9_700 + i).is_empty());
        }
        assert_eq!(e.board(T0 + 9_800, &Tenant::default())[0].count, 120);
        assert_eq!(e.firing(), 1);
    }

    #[test]
    fn spread_out_errors_never_fire() {
        let mut e = Evaluator::new(&[rule("errors", None, 5, "1s")], 100, 30_000);
        let s = sig("payments", "x");
        // one error every 300 ms: never more than 4 in a second
        for i in 0..50u64 {
            let now = T0 + i * 300;
            assert!(e.observe(&[occ(&s, 1)], now).is_empty(), "at {i}");
            assert!(e.tick(now).is_empty());
        }
        // a burst does
        let burst: Vec<_> = (0..5).map(|i| occ(&s, i)).collect();
        assert_eq!(e.observe(&burst, T0 + 20_000).len(), 1);
    }

    #[test]
    fn refreshes_while_firing_and_resolves_after_a_quiet_window() {
        let mut e = Evaluator::new(&[rule("errors", None, 3, "2s")], 100, 1_000);
        let s = sig("payments", "x");
        let three: Vec<_> = (0..3).map(|i| occ(&s, i)).collect();
        assert_eq!(e.observe(&three, T0).len(), 1);
        assert!(e.tick(T0 + 500).is_empty());
        let refresh = e.tick(T0 + 1_000);
        assert_eq!(refresh.len(), 1);
        assert_eq!(refresh[0].state, AlertState::Firing);
        assert_eq!(refresh[0].fired_at_ms, T0);
        e.observe(&[occ(&s, 9)], T0 + 1_500);
        // 2 s after the last error: resolved, with that time
        let before = e.tick(T0 + 3_499);
        assert_eq!(before.len(), 1, "a refresh, due since T0 + 2 s");
        assert_eq!(before[0].state, AlertState::Firing);
        let resolved = e.tick(T0 + 3_500);
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].state, AlertState::Resolved);
        assert_eq!(resolved[0].resolved_at_ms, Some(T0 + 3_500));
        assert_eq!(resolved[0].count, 4);
        assert_eq!(e.tracked(), 0);
        // the board keeps it; a new burst is a new alert
        let board = e.board(T0 + 4_000, &Tenant::default());
        assert_eq!(board.len(), 1);
        assert_eq!(board[0].state, AlertState::Resolved);
        assert_eq!(e.observe(&three, T0 + 5_000).len(), 1);
        let board = e.board(T0 + 5_000, &Tenant::default());
        assert_eq!(board.len(), 2);
        assert_eq!(board[0].state, AlertState::Firing, "newest first");
        // an hour later the resolved one is gone from the board
        e.tick(T0 + 3_500 + RESOLVED_KEEP_MS);
        assert!(e
            .board(T0 + 3_500 + RESOLVED_KEEP_MS, &Tenant::default())
            .iter()
            .all(|a| a.state == AlertState::Firing || a.fired_at_ms > T0));
    }

    #[test]
    fn signatures_services_and_rules_are_separate() {
        let mut e = Evaluator::new(
            &[
                rule("payments-errors", Some("payments"), 2, "10s"),
                rule("all-errors", None, 2, "10s"),
            ],
            100,
            30_000,
        );
        let pay = sig("payments", "declined");
        let pay2 = sig("payments", "expired");
        let cart = sig("cart", "declined");
        let fired = e.observe(
            &[
                occ(&pay, 1),
                occ(&pay, 2),
                occ(&pay2, 3),
                occ(&cart, 4),
                occ(&cart, 5),
            ],
            T0,
        );
        let mut got: Vec<_> = fired
            .iter()
            .map(|a| {
                (
                    a.rule.as_str(),
                    a.signature.service.as_str(),
                    a.signature.message.as_str(),
                )
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("all-errors", "cart", "declined"),
                ("all-errors", "payments", "declined"),
                ("payments-errors", "payments", "declined"),
            ]
        );
    }

    #[test]
    fn the_number_of_signatures_is_capped_and_counted() {
        let mut e = Evaluator::new(&[rule("errors", None, 1000, "10s")], 3, 30_000);
        let many: Vec<_> = (0..10)
            .map(|i| occ(&sig("payments", &format!("m{i}")), 1))
            .collect();
        e.observe(&many, T0);
        assert_eq!(e.tracked(), 3);
        assert_eq!(e.take_counts().signatures_dropped, 7);
        assert_eq!(e.take_counts().signatures_dropped, 0);
        // tracked ones free their slot once quiet for a window
        e.tick(T0 + 10_000);
        assert_eq!(e.tracked(), 0);
        e.observe(&many[5..], T0 + 10_001);
        assert_eq!(e.tracked(), 3);
    }

    #[test]
    fn reloaded_rules_keep_unchanged_state_and_resolve_removed_alerts() {
        let keep = rule("keep", None, 1, "10s");
        let gone = rule("gone", None, 1, "10s");
        let mut e = Evaluator::new(&[keep.clone(), gone.clone()], 100, 30_000);
        let s = sig("payments", "x");
        assert_eq!(e.observe(&[occ(&s, 1)], T0).len(), 2);
        let changed = ErrorRule {
            min_count: 5,
            ..gone.clone()
        };
        let out = e.set_rules(&[keep.clone(), changed.clone()], T0 + 1);
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].rule.as_str(), out[0].state),
            ("gone", AlertState::Resolved)
        );
        assert_eq!(e.firing(), 1, "the unchanged rule still fires");
        assert_eq!(e.tracked(), 1);
        assert_eq!(e.rules(), vec![keep, changed]);
        // the unchanged rule does not fire again
        assert!(e.observe(&[occ(&s, 2)], T0 + 2).is_empty());
    }

    fn occ_of(tenant: &Tenant, s: &Signature, trace: u8) -> Occurrence {
        Occurrence {
            tenant: tenant.clone(),
            ..occ(s, trace)
        }
    }

    #[test]
    fn tenants_are_counted_capped_and_shown_apart() {
        let shop = Tenant::parse("shop").unwrap();
        let bank = Tenant::parse("bank").unwrap();
        let only_bank = ErrorRule {
            tenant: Some("bank".into()),
            ..rule("bank-errors", None, 1, "10s")
        };
        let mut e = Evaluator::new(&[rule("errors", None, 3, "10s"), only_bank], 2, 30_000);
        let s = sig("payments", "card <n> declined");
        // shop's 2 and bank's 2 of one signature: neither reaches 3 under "errors"
        let fired = e.observe(
            &[
                occ_of(&shop, &s, 1),
                occ_of(&shop, &s, 2),
                occ_of(&bank, &s, 3),
                occ_of(&bank, &s, 4),
            ],
            T0,
        );
        assert_eq!(
            fired
                .iter()
                .map(|a| (a.rule.as_str(), a.tenant.as_str()))
                .collect::<Vec<_>>(),
            vec![("bank-errors", "bank")],
            "the bank-only rule fires for bank, nothing counts across tenants"
        );
        let fired = e.observe(&[occ_of(&shop, &s, 5)], T0 + 1);
        assert_eq!(fired.len(), 1);
        assert_eq!((fired[0].tenant.as_str(), fired[0].count), ("shop", 3));
        assert_eq!(
            fired[0].examples,
            vec![TraceId([1; 16]), TraceId([2; 16]), TraceId([5; 16])]
        );
        // the board: each tenant's own alerts only
        let board = |t: &Tenant| {
            e.board(T0 + 2, t)
                .iter()
                .map(|a| (a.rule.clone(), a.tenant.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            board(&shop),
            vec![("errors".to_string(), "shop".to_string())]
        );
        assert_eq!(
            board(&bank),
            vec![("bank-errors".to_string(), "bank".to_string())]
        );
        assert!(board(&Tenant::default()).is_empty());
        // max_signatures (2) per tenant: shop tracks s and a, its b and c are dropped; a
        // tenant new to the evaluator still has its whole budget
        for (i, m) in ["a", "b", "c"].into_iter().enumerate() {
            e.observe(&[occ_of(&shop, &sig("payments", m), 10 + i as u8)], T0 + 3);
        }
        assert_eq!(e.take_counts().signatures_dropped, 2, "shop's b and c");
        let cafe = Tenant::parse("cafe").unwrap();
        e.observe(&[occ_of(&cafe, &sig("ledger", "x"), 20)], T0 + 4);
        assert_eq!(
            e.take_counts().signatures_dropped,
            0,
            "cafe's first signature"
        );
        assert_eq!(e.tracked(), 2 + 2 + 1);
        // resolved alerts stay on their tenant's board
        e.tick(T0 + 20_000);
        let resolved = e.board(T0 + 20_000, &shop);
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].state, AlertState::Resolved);
        assert_eq!(e.board(T0 + 20_000, &bank).len(), 1);
        assert_eq!(e.tracked(), 0);
        // the keys of one signature's alerts in two tenants differ
        assert_ne!(
            AlertView {
                tenant: shop.clone(),
                ..resolved[0].clone()
            }
            .key(),
            AlertView {
                tenant: bank.clone(),
                ..resolved[0].clone()
            }
            .key()
        );
    }
}
