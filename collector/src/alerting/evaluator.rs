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

use std::collections::{HashMap, VecDeque};

use clew_proto::TraceId;
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
    pub fn key(&self) -> (String, String) {
        (self.rule.clone(), self.hash.clone())
    }
}

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
    tracked: HashMap<Signature, Tracked>,
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
        self.rule
            .service
            .as_ref()
            .is_none_or(|s| *s == o.signature.service)
    }

    fn view(&self, sig: &Signature, t: &Tracked, state: AlertState, now: u64) -> AlertView {
        view(&self.rule, sig, t, state, now)
    }
}

fn view(rule: &ErrorRule, sig: &Signature, t: &Tracked, state: AlertState, now: u64) -> AlertView {
    AlertView {
        state,
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
    max_signatures: usize,
    resend_ms: u64,
    tracked: usize,
    resolved: VecDeque<AlertView>,
    counts: Counts,
}

impl Evaluator {
    pub fn new(rules: &[ErrorRule], max_signatures: usize, resend_ms: u64) -> Self {
        Evaluator {
            rules: rules.iter().cloned().map(RuleState::new).collect(),
            max_signatures,
            resend_ms: resend_ms.max(1),
            tracked: 0,
            resolved: VecDeque::new(),
            counts: Counts::default(),
        }
    }

    /// Counts `occurrences` at `now`; returns the alerts that fire now.
    pub fn observe(&mut self, occurrences: &[Occurrence], now: u64) -> Vec<AlertView> {
        let mut out = Vec::new();
        for rs in &mut self.rules {
            let mut fired: Vec<&Signature> = Vec::new();
            for o in occurrences {
                if !rs.matches(o) {
                    continue;
                }
                if !rs.tracked.contains_key(&o.signature) {
                    if self.tracked >= self.max_signatures {
                        self.counts.signatures_dropped += 1;
                        continue;
                    }
                    self.tracked += 1;
                    rs.tracked.insert(
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
                let t = rs.tracked.get_mut(&o.signature).expect("just inserted");
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
                    fired.push(&o.signature);
                }
            }
            // one notification per alert that fired in this call, with its final count
            for sig in fired {
                if let Some(t) = rs.tracked.get(sig) {
                    out.push(rs.view(sig, t, AlertState::Firing, now));
                }
            }
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
            for (sig, t) in rs.tracked.iter_mut() {
                t.expire(now, window_ms, step_ms);
                if now.saturating_sub(t.last_seen_ms) >= window_ms {
                    gone.push((sig.clone(), t.firing.is_some()));
                    continue;
                }
                if let Some(f) = &mut t.firing {
                    if now.saturating_sub(f.last_sent_ms) >= resend_ms {
                        f.last_sent_ms = now;
                        out.push(view(&rs.rule, sig, t, AlertState::Firing, now));
                    }
                }
            }
            for (sig, was_firing) in gone {
                let t = rs.tracked.remove(&sig).expect("just seen");
                self.tracked -= 1;
                if was_firing {
                    let v = rs.view(&sig, &t, AlertState::Resolved, now);
                    self.resolved.push_front(v.clone());
                    out.push(v);
                }
            }
        }
        while self.resolved.len() > RESOLVED_KEEP
            || self
                .resolved
                .back()
                .is_some_and(|v| v.resolved_at_ms.unwrap_or(0) + RESOLVED_KEEP_MS <= now)
        {
            self.resolved.pop_back();
        }
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
            self.tracked -= rs.tracked.len();
            for (sig, t) in &rs.tracked {
                if t.firing.is_some() {
                    let v = rs.view(sig, t, AlertState::Resolved, now);
                    self.resolved.push_front(v.clone());
                    out.push(v);
                }
            }
        }
        out
    }

    /// Firing alerts and the recently resolved ones, newest first (by when they fired).
    pub fn board(&self, now: u64) -> Vec<AlertView> {
        let mut all: Vec<AlertView> = self
            .rules
            .iter()
            .flat_map(|rs| {
                rs.tracked
                    .iter()
                    .filter(|(_, t)| t.firing.is_some())
                    .map(move |(sig, t)| rs.view(sig, t, AlertState::Firing, now))
            })
            .chain(self.resolved.iter().cloned())
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

    /// Signatures tracked now (pending or firing).
    pub fn tracked(&self) -> usize {
        self.tracked
    }

    pub fn firing(&self) -> usize {
        self.rules
            .iter()
            .map(|rs| rs.tracked.values().filter(|t| t.firing.is_some()).count())
            .sum()
    }

    /// Takes the counts gathered since the last call.
    pub fn take_counts(&mut self) -> Counts {
        std::mem::take(&mut self.counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, service: Option<&str>, min_count: u64, window: &str) -> ErrorRule {
        ErrorRule {
            name: name.into(),
            service: service.map(String::from),
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
        assert_eq!(e.board(T0 + 9_800)[0].count, 120);
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
        let board = e.board(T0 + 4_000);
        assert_eq!(board.len(), 1);
        assert_eq!(board[0].state, AlertState::Resolved);
        assert_eq!(e.observe(&three, T0 + 5_000).len(), 1);
        let board = e.board(T0 + 5_000);
        assert_eq!(board.len(), 2);
        assert_eq!(board[0].state, AlertState::Firing, "newest first");
        // an hour later the resolved one is gone from the board
        e.tick(T0 + 3_500 + RESOLVED_KEEP_MS);
        assert!(e
            .board(T0 + 3_500 + RESOLVED_KEEP_MS)
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
}
