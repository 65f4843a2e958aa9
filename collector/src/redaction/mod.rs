//! Stage 4 of the ingest path: redaction, after validation and before enrichment, span
//! metrics and any sink — so neither the store, the index, the index WAL nor a Kafka
//! record written by `clew agent` ever holds a redacted value ([`crate::ingest`]).
//!
//! ```text
//!  span ─▶ every attribute (span, resource, scope, event, link; nested maps and arrays)
//!            key matches a key rule?  ─yes─▶ drop | mask | hash the whole value
//!            │ no (and key not exempt)
//!            ▼
//!          string value ─▶ value rules (patterns, card numbers, bearer, JWT, URL secrets)
//!  span name, event names, status message ─▶ value rules
//!  rules that touched the span ─▶ `clew.redacted = "rule,rule"`; clew_redactions_total{rule}
//! ```
//!
//! Rules come from [`RedactionConfig`]: the configured ones first, then the built-in ones
//! ([`config::built_in_rules`]). Key rules match attribute keys by glob ([`keys`]); value
//! rules find secrets inside text ([`detectors`]). Both sit behind prefilters that decide
//! "nothing here" in one pass without allocating, so a span without secrets costs a scan
//! of its keys and strings and nothing else. Regexes are compiled once, here, with a size
//! limit; the `regex` crate matches in linear time, so no input can make a rule
//! backtrack.
//!
//! Configured business keys (and `exempt_keys`) are exempt from the value rules — an order
//! number may pass a Luhn check — but a key rule naming them applies (`hash` keeps them
//! searchable). Resources and scopes are shared by the spans of a request: each is
//! redacted once and shared again.

pub mod config;
pub mod detectors;
pub mod keys;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use clew_proto::model::{any_value::Value, value_to_string, AnyValue, KeyValue};
use clew_proto::Span;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use config::{Action, Detector, EffectiveRule, Matcher, RedactionConfig, RuleConfig};
use detectors::{Hit, TextDetectors};
use keys::KeyMatcher;

use crate::enrich::BAGGAGE_PREFIX;
use crate::error::{Error, Result};

/// The span attribute naming the rules that redacted something of the span
/// (comma-separated, in rule order), never the values.
pub const REDACTED_ATTRIBUTE: &str = "clew.redacted";

/// The mask every `mask` replacement starts with.
pub const MASK: &str = "****";

/// What `hash` replacements start with (then 32 hex digits).
pub const HASH_PREFIX: &str = "hmac:";

/// The redaction stage, built once from the configuration.
pub struct Redactor {
    rules: Vec<EffectiveRule>,
    keys: KeyMatcher,
    text: TextDetectors,
    /// Keys the value rules skip: business keys (and their `baggage.` forms), `exempt_keys`.
    /// A few names: a scan that compares lengths first beats hashing every key.
    exempt: Vec<String>,
    hmac: Option<Hmac<Sha256>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl Redactor {
    /// `None` when redaction is off; `business_keys`: `[collector] business_keys`.
    pub fn from_config(
        config: &RedactionConfig,
        business_keys: &[String],
    ) -> Result<Option<Arc<Redactor>>> {
        if !config.enabled {
            return Ok(None);
        }
        Redactor::new(config, business_keys).map(|r| Some(Arc::new(r)))
    }

    /// Compiles every rule. Errors name the rule.
    pub fn new(config: &RedactionConfig, business_keys: &[String]) -> Result<Redactor> {
        let bad = |message: String| Error::Config {
            key: "redaction",
            message,
        };
        if config.regex_size_limit_bytes < 1024 {
            return Err(bad(format!(
                "redaction.regex_size_limit_bytes: {} is below the minimum of 1024",
                config.regex_size_limit_bytes
            )));
        }
        let rules = config.effective_rules()?;
        let label = |i: usize| match config.rules.get(i).and_then(|r| r.name.as_ref()) {
            Some(n) => format!("redaction.rules[{i}] ({n:?})"),
            None => format!("redaction.rules[{i}]"),
        };
        let hmac = match config.hash_key.as_deref() {
            Some(k) if k.len() < config::MIN_HASH_KEY_BYTES => {
                return Err(bad(format!(
                    "redaction.hash_key (or {}) must be at least {} bytes",
                    config::HASH_KEY_ENV,
                    config::MIN_HASH_KEY_BYTES
                )))
            }
            Some(k) => Some(Hmac::<Sha256>::new_from_slice(k.as_bytes()).expect("any key length")),
            None => None,
        };
        let mut globs = Vec::new();
        let mut built_in = Vec::new();
        let mut patterns = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            if r.action == Action::Hash && hmac.is_none() {
                return Err(bad(format!(
                    "{}: action = \"hash\" needs redaction.hash_key or {}",
                    label(i),
                    config::HASH_KEY_ENV
                )));
            }
            match &r.matcher {
                Matcher::Attribute { glob, numbers } => globs.push((glob.clone(), i, *numbers)),
                Matcher::Detector(d) => built_in.push((*d, i)),
                Matcher::Pattern(p) => {
                    let re = detectors::compile(p, config.regex_size_limit_bytes)
                        .map_err(|e| bad(format!("{}: pattern does not compile: {e}", label(i))))?;
                    patterns.push((i, re));
                }
            }
        }
        let text = TextDetectors::new(&built_in, patterns, config.regex_size_limit_bytes).map_err(
            |e| {
                bad(format!(
                    "redaction.rules: the patterns together do not compile: {e}"
                ))
            },
        )?;
        let mut exempt = Vec::new();
        for k in business_keys.iter().chain(&config.exempt_keys) {
            let k = k.trim();
            if !k.is_empty() && !exempt.iter().any(|e| e == k) {
                exempt.push(k.to_string());
                exempt.push(format!("{BAGGAGE_PREFIX}{k}"));
            }
        }
        Ok(Redactor {
            rules,
            keys: KeyMatcher::new(globs),
            text,
            exempt,
            hmac,
        })
    }

    /// The rules in force, in order.
    pub fn rules(&self) -> &[EffectiveRule] {
        &self.rules
    }

    /// Redacts every span in place and counts `clew_redactions_total{rule}` once for the
    /// batch.
    pub fn redact_all(&self, spans: &mut [Span]) {
        let mut counts = vec![0u64; self.rules.len()];
        let mut touched = Touched::new(self.rules.len());
        let mut shared = SharedCache::default();
        let mut memo = Memo::default();
        for span in spans {
            touched.clear();
            self.redact_span(span, &mut touched, &mut counts, &mut shared, &mut memo);
            if touched.any() {
                self.mark(span, &touched);
            }
        }
        for (rule, n) in self.rules.iter().zip(counts) {
            if n > 0 {
                crate::metrics::redacted(&rule.name, n);
            }
        }
    }

    fn redact_span(
        &self,
        span: &mut Span,
        touched: &mut Touched,
        counts: &mut [u64],
        shared: &mut SharedCache,
        memo: &mut Memo,
    ) {
        let mut r = Run {
            redactor: self,
            touched,
            counts,
            memo: Some(memo),
        };
        r.text_field(&mut span.name);
        r.text_field(&mut span.status_message);
        r.attributes(&mut span.attributes);
        for event in &mut span.events {
            r.text_field(&mut event.name);
            r.attributes(&mut event.attributes);
        }
        for link in &mut span.links {
            r.attributes(&mut link.attributes);
        }
        for key in &mut span.business_keys {
            // keys an Avro record carried: key rules apply to them as to the attribute
            if let Some((rule, _)) = self.keys.find(&key.name) {
                let mut v = AnyValue {
                    value: Some(Value::StringValue(std::mem::take(&mut key.value))),
                };
                r.apply_key_rule(rule, &mut v);
                key.value = value_to_string(&v);
            }
        }
        if let Some((resource, rules)) = shared.resource(&span.resource, |res| {
            self.redact_shared(&res.attributes, counts, |run| {
                let mut res = (**res).clone();
                run.attributes(&mut res.attributes);
                res
            })
        }) {
            span.resource = resource;
            // the service name is the resource's `service.name`: redacted with it
            span.service_name =
                match clew_proto::model::find_attr(&span.resource.attributes, "service.name")
                    .map(value_to_string)
                {
                    Some(s) if !s.is_empty() => s,
                    _ => clew_proto::model::UNKNOWN_SERVICE.to_string(),
                };
            touched.union(&rules);
        }
        if let Some((scope, rules)) = shared.scope(&span.scope, |sc| {
            self.redact_shared(&sc.attributes, counts, |run| {
                let mut sc = (**sc).clone();
                run.attributes(&mut sc.attributes);
                sc
            })
        }) {
            span.scope = scope;
            touched.union(&rules);
        }
    }

    /// A redacted copy of a shared resource or scope, or `None` when nothing of
    /// `attributes` needs redacting (then nothing is cloned).
    fn redact_shared<T>(
        &self,
        attributes: &[KeyValue],
        counts: &mut [u64],
        build: impl FnOnce(&mut Run<'_>) -> T,
    ) -> Option<(Arc<T>, Touched)> {
        if !attributes.iter().any(|kv| self.needs(kv)) {
            return None;
        }
        let mut touched = Touched::new(self.rules.len());
        let mut run = Run {
            redactor: self,
            touched: &mut touched,
            counts,
            memo: None,
        };
        let value = build(&mut run);
        Some((Arc::new(value), touched))
    }

    fn is_exempt(&self, key: &str) -> bool {
        self.exempt.iter().any(|e| e == key)
    }

    /// Whether some rule would change `kv` (read only, no allocation).
    fn needs(&self, kv: &KeyValue) -> bool {
        if kv.key == REDACTED_ATTRIBUTE {
            return false;
        }
        if let Some((_, numbers)) = self.keys.find(&kv.key) {
            return numbers || !is_number(kv.value.as_ref());
        }
        !self.is_exempt(&kv.key) && kv.value.as_ref().is_some_and(|v| self.value_needs(v))
    }

    fn value_needs(&self, v: &AnyValue) -> bool {
        match &v.value {
            Some(Value::StringValue(s)) => self.text.matches(s),
            Some(Value::ArrayValue(a)) => a.values.iter().any(|v| self.value_needs(v)),
            Some(Value::KvlistValue(l)) => l.values.iter().any(|kv| self.needs(kv)),
            _ => false,
        }
    }

    /// Adds (or extends) `clew.redacted` with the names of the rules that touched the span.
    fn mark(&self, span: &mut Span, touched: &Touched) {
        let existing = span
            .attributes
            .iter_mut()
            .find(|kv| kv.key == REDACTED_ATTRIBUTE);
        let mut names = match existing.as_ref().and_then(|kv| kv.value.as_ref()) {
            Some(AnyValue {
                value: Some(Value::StringValue(s)),
            }) => s.clone(),
            _ => String::new(),
        };
        for (i, rule) in self.rules.iter().enumerate() {
            if touched.has(i) && !names.split(',').any(|n| n == rule.name) {
                if !names.is_empty() {
                    names.push(',');
                }
                names.push_str(&rule.name);
            }
        }
        let value = Some(AnyValue {
            value: Some(Value::StringValue(names)),
        });
        match existing {
            Some(kv) => kv.value = value,
            None => span.attributes.push(KeyValue {
                key: REDACTED_ATTRIBUTE.to_string(),
                value,
                ..Default::default()
            }),
        }
    }

    /// `hmac:` and the first 16 bytes of the value's keyed HMAC-SHA256, in hex.
    fn hash(&self, text: &str) -> String {
        let mut mac = self
            .hmac
            .clone()
            .expect("hash rules need a key (checked at start)");
        mac.update(text.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(HASH_PREFIX.len() + 32);
        out.push_str(HASH_PREFIX);
        out.push_str(&hex::encode(&digest[..16]));
        out
    }

    /// What one rule's action puts in place of `text` (`None` for drop).
    fn replacement(&self, rule: usize, text: &str) -> Option<String> {
        let r = &self.rules[rule];
        match r.action {
            Action::Drop => None,
            Action::Mask => Some(mask(text, r.keep_last)),
            Action::Hash if is_hash(text) => Some(text.to_string()),
            Action::Hash => Some(self.hash(text)),
        }
    }
}

/// `****` and at most `keep_last` trailing characters, never more than a quarter of them.
pub fn mask(text: &str, keep_last: usize) -> String {
    let keep = keep_last.min(text.chars().count() / 4);
    let tail_start = text
        .char_indices()
        .rev()
        .nth(keep.wrapping_sub(1))
        .map_or(text.len(), |(i, _)| i);
    let tail = if keep == 0 { "" } else { &text[tail_start..] };
    let mut out = String::with_capacity(MASK.len() + tail.len());
    out.push_str(MASK);
    out.push_str(tail);
    out
}

/// A value a `hash` rule already produced (re-delivered, or hashed by `clew agent`).
fn is_hash(text: &str) -> bool {
    text.strip_prefix(HASH_PREFIX)
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_number(v: Option<&AnyValue>) -> bool {
    matches!(
        v.and_then(|v| v.value.as_ref()),
        Some(Value::IntValue(_) | Value::DoubleValue(_) | Value::BoolValue(_))
    )
}

/// One span's pass: the rules that touched it, the batch's counts and memo (none for the
/// once-per-batch resources and scopes).
struct Run<'a> {
    redactor: &'a Redactor,
    touched: &'a mut Touched,
    counts: &'a mut [u64],
    memo: Option<&'a mut Memo>,
}

/// Keys and texts a [`Memo`] holds at most (a batch's distinct attribute keys are a few
/// dozen; its short values many more); later ones are checked without being remembered.
/// Each is 7/8 of a power of two: the tables are allocated at that size once per batch.
const MEMO_KEYS: usize = 224;
const MEMO_TEXTS: usize = 896;

/// Texts (and keys) longer than this are never remembered (they rarely repeat, and a long
/// one would cost more to hash and copy than to scan).
const MEMO_TEXT_BYTES: usize = 64;

/// What one batch learned about its keys and texts. The spans of a request repeat the same
/// attribute keys and many of the same values (methods, routes, host names), and a hash
/// lookup costs less than walking the key automaton or the value detectors again. Both
/// are pure functions of the text, so a remembered answer is the answer: which key rule
/// matches a key (or none), and that a text holds nothing any value rule finds (texts with
/// a match are never remembered and are scanned every time).
///
/// The memo allocates once per batch, not per span: its tables are sized for
/// [`MEMO_KEYS`] and [`MEMO_TEXTS`] up front and hold texts inline ([`ShortText`]), so a clean span costs no
/// allocation (`tests/redaction_alloc.rs`).
struct Memo {
    keys: HashMap<ShortText, Option<(usize, bool)>, foldhash::fast::RandomState>,
    clean: HashSet<ShortText, foldhash::fast::RandomState>,
}

impl Default for Memo {
    fn default() -> Self {
        let table = || foldhash::fast::RandomState::default();
        Memo {
            keys: HashMap::with_capacity_and_hasher(MEMO_KEYS, table()),
            clean: HashSet::with_capacity_and_hasher(MEMO_TEXTS, table()),
        }
    }
}

/// A text of at most [`MEMO_TEXT_BYTES`] held inline; hashes and compares as its bytes, so
/// the tables are looked up by `&[u8]`.
#[derive(Clone, Copy)]
struct ShortText {
    len: u8,
    bytes: [u8; MEMO_TEXT_BYTES],
}

impl ShortText {
    fn new(text: &str) -> Option<ShortText> {
        let len = text.len();
        (len <= MEMO_TEXT_BYTES).then(|| {
            let mut bytes = [0; MEMO_TEXT_BYTES];
            bytes[..len].copy_from_slice(text.as_bytes());
            ShortText {
                len: len as u8,
                bytes,
            }
        })
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl PartialEq for ShortText {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for ShortText {}

impl std::hash::Hash for ShortText {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state)
    }
}

impl std::borrow::Borrow<[u8]> for ShortText {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl Memo {
    fn key(&mut self, keys: &KeyMatcher, key: &str) -> Option<(usize, bool)> {
        if let Some(found) = self.keys.get(key.as_bytes()) {
            return *found;
        }
        let found = keys.find(key);
        if self.keys.len() < MEMO_KEYS {
            if let Some(short) = ShortText::new(key) {
                self.keys.insert(short, found);
            }
        }
        found
    }

    fn is_clean(&self, text: &str) -> bool {
        text.len() <= MEMO_TEXT_BYTES && self.clean.contains(text.as_bytes())
    }

    fn note_clean(&mut self, text: &str) {
        if self.clean.len() < MEMO_TEXTS {
            if let Some(short) = ShortText::new(text) {
                self.clean.insert(short);
            }
        }
    }
}

impl Run<'_> {
    /// The key rule for `key` (through the batch's memo when there is one).
    fn key_rule(&mut self, key: &str) -> Option<(usize, bool)> {
        match &mut self.memo {
            Some(memo) => memo.key(&self.redactor.keys, key),
            None => self.redactor.keys.find(key),
        }
    }

    fn hit(&mut self, rule: usize) {
        self.touched.set(rule);
        self.counts[rule] += 1;
    }

    fn attributes(&mut self, attrs: &mut Vec<KeyValue>) {
        attrs.retain_mut(|kv| self.key_value(kv));
    }

    /// Redacts one pair; `false` when it is dropped.
    fn key_value(&mut self, kv: &mut KeyValue) -> bool {
        if kv.key == REDACTED_ATTRIBUTE {
            return true;
        }
        let r = self.redactor;
        if let Some((rule, numbers)) = self.key_rule(&kv.key) {
            if !numbers && is_number(kv.value.as_ref()) {
                return true;
            }
            return match &mut kv.value {
                Some(v) => self.apply_key_rule(rule, v),
                None => true,
            };
        }
        match &mut kv.value {
            Some(v) if !r.is_exempt(&kv.key) => self.value(v),
            _ => true,
        }
    }

    /// A key rule on a whole value; `false` when the pair is dropped.
    fn apply_key_rule(&mut self, rule: usize, v: &mut AnyValue) -> bool {
        let r = self.redactor;
        let text = match &v.value {
            Some(Value::StringValue(s)) => std::borrow::Cow::Borrowed(s.as_str()),
            _ => std::borrow::Cow::Owned(value_to_string(v)),
        };
        match r.replacement(rule, &text) {
            None => {
                self.hit(rule);
                false
            }
            Some(new) => {
                let unchanged = matches!(&v.value, Some(Value::StringValue(s)) if *s == new);
                if !unchanged {
                    drop(text);
                    v.value = Some(Value::StringValue(new));
                    self.hit(rule);
                }
                true
            }
        }
    }

    /// Value rules inside a value; `false` when a `drop` rule matched it.
    fn value(&mut self, v: &mut AnyValue) -> bool {
        match &mut v.value {
            Some(Value::StringValue(s)) => match self.text(s, true) {
                Redacted::Unchanged => true,
                Redacted::Replaced(new) => {
                    *s = new;
                    true
                }
                Redacted::Dropped => false,
            },
            // one element dropped drops the attribute: it is the attribute that is secret
            Some(Value::ArrayValue(a)) => a
                .values
                .iter_mut()
                .fold(true, |keep, v| self.value(v) && keep),
            Some(Value::KvlistValue(l)) => {
                self.attributes(&mut l.values);
                true
            }
            _ => true,
        }
    }

    /// Value rules in a span or event name or a status message: there is no key to
    /// drop, so `drop` removes the matched text.
    fn text_field(&mut self, s: &mut String) {
        if let Redacted::Replaced(new) = self.text(s, false) {
            *s = new;
        }
    }

    fn text(&mut self, s: &str, may_drop: bool) -> Redacted {
        let r = self.redactor;
        // no rule matches empty text (empty matches are skipped, `capture_hits`)
        if s.is_empty() || self.memo.as_ref().is_some_and(|m| m.is_clean(s)) {
            return Redacted::Unchanged;
        }
        let Some(hits) = r.text.find(s) else {
            if let Some(memo) = &mut self.memo {
                memo.note_clean(s);
            }
            return Redacted::Unchanged;
        };
        let mut out = String::with_capacity(s.len());
        let mut at = 0;
        let mut changed = false;
        for Hit { start, end, rule } in hits {
            out.push_str(&s[at..start]);
            let matched = &s[start..end];
            match r.replacement(rule, matched) {
                None if may_drop => {
                    self.hit(rule);
                    return Redacted::Dropped;
                }
                None => {
                    self.hit(rule);
                    changed = true;
                }
                Some(new) => {
                    if new != matched {
                        self.hit(rule);
                        changed = true;
                    }
                    out.push_str(&new);
                }
            }
            at = end;
        }
        if !changed {
            return Redacted::Unchanged;
        }
        out.push_str(&s[at..]);
        Redacted::Replaced(out)
    }
}

enum Redacted {
    Unchanged,
    Replaced(String),
    Dropped,
}

/// The rules that touched one span (a bit per rule).
#[derive(Debug, Clone)]
struct Touched(Vec<u64>);

impl Touched {
    fn new(rules: usize) -> Touched {
        Touched(vec![0; rules.div_ceil(64).max(1)])
    }
    fn clear(&mut self) {
        self.0.iter_mut().for_each(|w| *w = 0);
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn has(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    fn any(&self) -> bool {
        self.0.iter().any(|w| *w != 0)
    }
    fn union(&mut self, other: &Touched) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a |= b;
        }
    }
}

/// The last resource and scope seen in a batch and what became of them: the spans of one
/// request share them, so each is checked (and, if need be, copied and redacted) once.
#[derive(Default)]
struct SharedCache {
    resource: Option<Shared<clew_proto::model::Resource>>,
    scope: Option<Shared<clew_proto::model::Scope>>,
}

/// A shared value as received and its redacted copy (`None`: nothing to redact).
struct Shared<T> {
    original: Arc<T>,
    redacted: Option<(Arc<T>, Touched)>,
}

fn lookup<T>(
    slot: &mut Option<Shared<T>>,
    current: &Arc<T>,
    redact: impl FnOnce(&Arc<T>) -> Option<(Arc<T>, Touched)>,
) -> Option<(Arc<T>, Touched)> {
    match slot {
        Some(s) if Arc::ptr_eq(&s.original, current) => s.redacted.clone(),
        // a span of this batch already got the redacted copy
        Some(s)
            if s.redacted
                .as_ref()
                .is_some_and(|(r, _)| Arc::ptr_eq(r, current)) =>
        {
            None
        }
        _ => {
            let redacted = redact(current);
            *slot = Some(Shared {
                original: current.clone(),
                redacted: redacted.clone(),
            });
            redacted
        }
    }
}

impl SharedCache {
    fn resource(
        &mut self,
        current: &Arc<clew_proto::model::Resource>,
        redact: impl FnOnce(
            &Arc<clew_proto::model::Resource>,
        ) -> Option<(Arc<clew_proto::model::Resource>, Touched)>,
    ) -> Option<(Arc<clew_proto::model::Resource>, Touched)> {
        lookup(&mut self.resource, current, redact)
    }

    fn scope(
        &mut self,
        current: &Arc<clew_proto::model::Scope>,
        redact: impl FnOnce(
            &Arc<clew_proto::model::Scope>,
        ) -> Option<(Arc<clew_proto::model::Scope>, Touched)>,
    ) -> Option<(Arc<clew_proto::model::Scope>, Touched)> {
        lookup(&mut self.scope, current, redact)
    }
}

#[cfg(test)]
mod tests;
