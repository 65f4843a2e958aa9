//! Head sampling from Jaeger strategies, as `clew agent` applies them to the spans its
//! local SDKs send: the decision an SDK polling the same strategies would have made at its
//! root span, made once per trace and service.
//!
//! ```text
//!  spans of a request ─▶ group by (trace id, service)
//!     group ─▶ error span? ──yes──▶ keep that span (always; clew's rule, not Jaeger's)
//!        │ decision cached for (trace, service)? ──yes──▶ apply it
//!        ▼ no
//!     strategy = strategies.for_service(service); deciding span = the group's local root
//!     (no parent, or its parent not in the group), else its first span
//!        ├─ operationSampling: rate = perOperation[deciding span's name] or its default;
//!        │     keep ⇔ trace_hash < rate × 2^64, or the operation's lower-bound limiter allows
//!        ├─ probabilistic:     keep ⇔ trace_hash < samplingRate × 2^64
//!        └─ rate limiting:     keep ⇔ the service's token bucket (maxTracesPerSecond) has a token
//!     ─▶ cache the decision (bounded), keep or drop the whole group
//! ```
//!
//! **Probabilistic decisions are the same on every agent**: `trace_hash` is a fixed mix
//! (splitmix64) of the 16 trace-id bytes, `hash < rate × 2^64` keeps a fraction `rate` of
//! random ids, and the answer depends on nothing but the trace id and the rate. So every
//! agent keeps or drops the same traces of a service, a trace kept at rate r is kept by
//! every service sampled at r or more (the kept sets are nested), and a trace's spans
//! reported by different hosts survive or vanish together.
//!
//! **Rate limiting is per agent**, as it is per process in Jaeger's SDKs: each agent lets
//! through `maxTracesPerSecond` new traces per second of that service (a bucket holding at
//! most `max(1, maxTracesPerSecond)` tokens, full at start). Which traces those are differs
//! between agents.
//!
//! Spans of one trace and service that arrive in later requests follow the cached decision
//! (up to [`DECISION_CACHE`] traces per generation, two generations); a span that comes
//! after its decision was evicted is decided again — the same answer for probabilistic
//! strategies, a fresh token for rate-limited ones.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use clew_proto::jaeger_sampling::SamplingStrategyResponse;
use clew_proto::{Span, SpanId, TraceId};

use super::StrategyStore;

/// Decisions remembered per generation (two generations are kept).
pub const DECISION_CACHE: usize = 65_536;

/// Where a trace falls in 0..2^64: a fixed mix of all 16 id bytes (trace ids are meant to
/// be random, but not every SDK makes every byte random).
pub fn trace_hash(id: &TraceId) -> u64 {
    let hi = u64::from_be_bytes(id.0[..8].try_into().expect("8 bytes"));
    let lo = u64::from_be_bytes(id.0[8..].try_into().expect("8 bytes"));
    splitmix64(hi ^ splitmix64(lo))
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Whether a trace with this hash is kept at `rate`.
pub fn keeps(hash: u64, rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    if rate <= 0.0 || rate.is_nan() {
        return false;
    }
    // 2^64 × rate, exact enough: rates are configured with a few digits.
    hash < (rate * 18_446_744_073_709_551_616.0) as u64
}

/// Jaeger's SDK rate limiter: `per_second` credits a second, at most `max(1, per_second)`
/// banked, full at start.
#[derive(Debug)]
struct TokenBucket {
    per_second: f64,
    balance: f64,
    max: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(per_second: f64, now: Instant) -> TokenBucket {
        let max = per_second.max(1.0);
        TokenBucket {
            per_second,
            balance: max,
            max,
            last: now,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.balance = (self.balance + elapsed * self.per_second).min(self.max);
        if self.balance >= 1.0 {
            self.balance -= 1.0;
            true
        } else {
            false
        }
    }
}

/// (trace, hash of the service name).
type DecisionKey = (TraceId, u64);

#[derive(Debug, Default)]
struct Decisions {
    young: HashMap<DecisionKey, bool>,
    old: HashMap<DecisionKey, bool>,
}

impl Decisions {
    fn get(&self, key: &DecisionKey) -> Option<bool> {
        self.young.get(key).or_else(|| self.old.get(key)).copied()
    }

    fn put(&mut self, key: DecisionKey, keep: bool) {
        if self.young.len() >= DECISION_CACHE {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(key, keep);
    }
}

#[derive(Debug, Default)]
struct State {
    decisions: Decisions,
    /// Rate limiters by service (rate-limiting strategies) and by (service, operation)
    /// (lower bounds); rebuilt when the configured rate changes.
    limiters: HashMap<(String, Option<String>), TokenBucket>,
}

/// The agent's sampler over a [`StrategyStore`].
#[derive(Debug)]
pub struct HeadSampler {
    store: Arc<StrategyStore>,
    state: Mutex<State>,
}

impl HeadSampler {
    pub fn new(store: Arc<StrategyStore>) -> HeadSampler {
        HeadSampler {
            store,
            state: Mutex::new(State::default()),
        }
    }

    pub fn store(&self) -> &Arc<StrategyStore> {
        &self.store
    }

    /// Keeps the spans to send, each with its position in `spans`, in order.
    pub fn sample(&self, spans: Vec<Span>) -> Vec<(usize, Span)> {
        self.sample_at(spans, Instant::now())
    }

    fn sample_at(&self, spans: Vec<Span>, now: Instant) -> Vec<(usize, Span)> {
        let strategies = self.store.strategies();
        // The groups with the span ids in each, decided in order of first appearance (so
        // rate-limit tokens go to the traces that came first).
        let mut groups: HashMap<DecisionKey, (Vec<usize>, HashSet<SpanId>)> = HashMap::new();
        let mut order = Vec::new();
        let keys: Vec<DecisionKey> = spans
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let key = (s.trace_id, service_hash(&s.service_name));
                let group = groups.entry(key).or_insert_with(|| {
                    order.push(key);
                    Default::default()
                });
                group.0.push(i);
                group.1.insert(s.span_id);
                key
            })
            .collect();
        let mut state = self.state.lock().expect("sampler state");
        let mut keep_group: HashMap<DecisionKey, bool> = HashMap::with_capacity(groups.len());
        for key in &order {
            let (members, ids) = &groups[key];
            let keep = match state.decisions.get(key) {
                Some(k) => k,
                None => {
                    let decider = members
                        .iter()
                        .map(|i| &spans[*i])
                        .find(|s| s.parent_span_id.is_none_or(|p| !ids.contains(&p)))
                        .unwrap_or(&spans[members[0]]);
                    let strategy = strategies.for_service(&decider.service_name);
                    let keep = decide(strategy, decider, &mut state.limiters, now);
                    state.decisions.put(*key, keep);
                    keep
                }
            };
            keep_group.insert(*key, keep);
        }
        drop(state);
        spans
            .into_iter()
            .enumerate()
            .filter(|(i, s)| s.is_error() || keep_group[&keys[*i]])
            .collect()
    }
}

fn service_hash(service: &str) -> u64 {
    let mut h = DefaultHasher::new();
    service.hash(&mut h);
    h.finish()
}

/// The decision for a new trace of `span.service_name` whose local root is `span`.
fn decide(
    strategy: &SamplingStrategyResponse,
    span: &Span,
    limiters: &mut HashMap<(String, Option<String>), TokenBucket>,
    now: Instant,
) -> bool {
    let hash = trace_hash(&span.trace_id);
    let mut limit = |operation: Option<&str>, per_second: f64| {
        let key = (span.service_name.clone(), operation.map(str::to_string));
        let bucket = limiters
            .entry(key)
            .or_insert_with(|| TokenBucket::new(per_second, now));
        if bucket.per_second != per_second {
            *bucket = TokenBucket::new(per_second, now);
        }
        bucket.take(now)
    };
    if let Some(ops) = &strategy.operation_sampling {
        let rate = ops
            .per_operation_strategies
            .iter()
            .find(|o| o.operation == span.name)
            .and_then(|o| o.probabilistic_sampling.as_ref())
            .map_or(ops.default_sampling_probability, |p| p.sampling_rate);
        if keeps(hash, rate) {
            return true;
        }
        let lower = ops.default_lower_bound_traces_per_second;
        return lower > 0.0 && limit(Some(&span.name), lower);
    }
    if let Some(p) = &strategy.probabilistic_sampling {
        return keeps(hash, p.sampling_rate);
    }
    match &strategy.rate_limiting_sampling {
        Some(r) => limit(None, f64::from(r.max_traces_per_second)),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc as StdArc;
    use std::time::Duration;

    use clew_proto::model::{Resource, Scope, SpanKind, StatusCode};

    use super::*;

    fn span(trace: u128, id: u64, parent: Option<u64>, service: &str, name: &str) -> Span {
        Span {
            tenant: Default::default(),
            trace_id: TraceId(trace.to_be_bytes()),
            span_id: SpanId(id.to_be_bytes()),
            parent_span_id: parent.map(|p| SpanId(p.to_be_bytes())),
            trace_state: String::new(),
            flags: 0,
            name: name.into(),
            kind: SpanKind::Server,
            start_unix_nano: 1,
            end_unix_nano: 2,
            attributes: vec![],
            dropped_attributes_count: 0,
            events: vec![],
            dropped_events_count: 0,
            links: vec![],
            dropped_links_count: 0,
            status_code: StatusCode::Ok,
            status_message: String::new(),
            resource: StdArc::new(Resource::default()),
            scope: StdArc::new(Scope::default()),
            service_name: service.into(),
            business_keys: vec![],
            repairs: 0,
        }
    }

    fn random_ids(n: usize, seed: u128) -> Vec<u128> {
        let mut x: u128 = 0x1234_5678_9abc_def0_0fed_cba9_8765_4321 ^ seed;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(0x2360_ED05_1FC6_5DA4_4385_DF64_9FCC_F645)
                    .wrapping_add(0x5851_F42D_4C95_7F2D_1405_7B7E_F767_814F);
                x
            })
            .collect()
    }

    fn sampler(json: &str) -> (HeadSampler, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strategies.json");
        std::fs::write(&path, json).unwrap();
        let store = StrategyStore::load(Some(path), 0.001).unwrap();
        (HeadSampler::new(Arc::new(store)), dir)
    }

    const FILE: &str = r#"{
      "default_strategy": {"type": "probabilistic", "param": 0.25},
      "service_strategies": [
        {"service": "all", "type": "probabilistic", "param": 1.0},
        {"service": "none", "type": "probabilistic", "param": 0.0},
        {"service": "limited", "type": "ratelimiting", "param": 3},
        {"service": "shop", "type": "probabilistic", "param": 0.0,
         "operation_strategies": [{"operation": "POST /buy", "type": "probabilistic", "param": 1.0}]}
      ]}"#;

    fn kept(s: &HeadSampler, spans: Vec<Span>) -> usize {
        s.sample(spans).len()
    }

    #[test]
    fn probabilistic_rates_hold_and_are_the_same_on_every_agent() {
        let (a, _d1) = sampler(FILE);
        let (b, _d2) = sampler(FILE);
        let ids = random_ids(20_000, 0);
        let spans =
            |svc: &str| -> Vec<Span> { ids.iter().map(|t| span(*t, 1, None, svc, "op")).collect() };
        let on_a = a.sample(spans("other"));
        let on_b = b.sample(spans("other"));
        let share = on_a.len() as f64 / ids.len() as f64;
        assert!((0.23..0.27).contains(&share), "kept {share}");
        let ia: Vec<usize> = on_a.iter().map(|(i, _)| *i).collect();
        let ib: Vec<usize> = on_b.iter().map(|(i, _)| *i).collect();
        assert_eq!(ia, ib, "two agents keep the same traces");
        assert_eq!(kept(&a, spans("all")), ids.len());
        assert_eq!(kept(&a, spans("none")), 0);
    }

    #[test]
    fn error_spans_are_kept_whatever_the_strategy() {
        let (s, _d) = sampler(FILE);
        let mut err = span(7, 2, Some(1), "none", "db");
        err.status_code = StatusCode::Error;
        let out = s.sample(vec![span(7, 1, None, "none", "op"), err]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, 1);
    }

    #[test]
    fn the_local_root_decides_for_the_whole_trace_and_later_spans_follow() {
        let (s, _d) = sampler(FILE);
        for t in random_ids(200, 1) {
            // children first (they end first), the entry span last: the entry decides
            let batch = vec![
                span(t, 3, Some(2), "shop", "SELECT"),
                span(t, 2, Some(1), "shop", "charge"),
                span(t, 1, None, "shop", "POST /buy"),
            ];
            assert_eq!(kept(&s, batch), 3, "kept whole by its entry operation");
            // a late span of the same trace, in another request, follows the decision
            assert_eq!(kept(&s, vec![span(t, 4, Some(1), "shop", "SELECT")]), 1);
            // another trace entered by an operation at rate 0: dropped whole
            let other = t.wrapping_add(1);
            let batch = vec![
                span(other, 2, Some(1), "shop", "POST /buy"),
                span(other, 1, None, "shop", "GET /"),
            ];
            assert_eq!(kept(&s, batch), 0);
        }
    }

    #[test]
    fn rate_limiting_lets_through_n_traces_a_second_per_agent() {
        let (s, _d) = sampler(FILE);
        let t0 = Instant::now();
        let ids = random_ids(10, 2);
        let batch: Vec<Span> = ids
            .iter()
            .flat_map(|t| {
                [
                    span(*t, 1, None, "limited", "op"),
                    span(*t, 2, Some(1), "limited", "db"),
                ]
            })
            .collect();
        let out = s.sample_at(batch, t0);
        // the bucket starts full (3 tokens): three whole traces
        assert_eq!(out.len(), 6);
        let traces: HashSet<TraceId> = out.iter().map(|(_, sp)| sp.trace_id).collect();
        assert_eq!(traces.len(), 3);
        // half a second later: 1.5 tokens earned, one trace more
        let more: Vec<Span> = random_ids(5, 3)
            .iter()
            .map(|t| span(*t, 1, None, "limited", "op"))
            .collect();
        assert_eq!(s.sample_at(more, t0 + Duration::from_millis(500)).len(), 1);
        // kept traces stay kept for their later spans, even with an empty bucket
        let kept_trace = u128::from_be_bytes(out[0].1.trace_id.0);
        let late = vec![span(kept_trace, 9, Some(1), "limited", "db")];
        assert_eq!(s.sample_at(late, t0 + Duration::from_millis(500)).len(), 1);
    }

    #[test]
    fn decisions_follow_a_reloaded_file() {
        let (s, dir) = sampler(FILE);
        let t = random_ids(1, 4)[0];
        assert_eq!(kept(&s, vec![span(t, 1, None, "none", "op")]), 0);
        std::fs::write(
            dir.path().join("strategies.json"),
            r#"{"default_strategy": {"type": "probabilistic", "param": 1.0}}"#,
        )
        .unwrap();
        assert!(s.store().reload_if_changed());
        // a new trace gets the new strategy
        assert_eq!(kept(&s, vec![span(t + 1, 1, None, "none", "op")]), 1);
    }

    #[test]
    fn keeps_edges() {
        assert!(keeps(u64::MAX, 1.0));
        assert!(!keeps(0, 0.0));
        assert!(keeps(0, 0.000_001));
        assert!(!keeps(u64::MAX, 0.999_999));
        assert!(!keeps(0, f64::NAN));
    }
}
