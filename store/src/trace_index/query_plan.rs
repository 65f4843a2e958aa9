//! The one query plan of every trace index: a [`TraceQuery`] checked and cut into
//! condition groups, with its page size, cursor and time range. Backends only translate
//! each [`Condition`] into their own query language (a tantivy query, an OpenSearch
//! clause); every limit is applied here, the same way for all of them.
//!
//! ```text
//!  TraceQuery ─▶ limit (default / clamp) ─▶ cursor (decoded) ─▶ conditions, one per group:
//!               service[+operation] · errors · duration [min, max] · each attribute ·
//!               each business key · the words of the free text ·
//!               each same-span entry (all its parts in one group)
//!               ─▶ at most MAX_GROUPS conditions in all ─▶ QueryPlan
//! ```
//!
//! A group is what must hold on one span; different groups may hold on different spans of
//! the same trace. A same-span entry ([`crate::SpanConditions`]) is one group however many
//! parts it has ([`Condition::SameSpan`]: a conjunction inside one span document, on every
//! backend); an entry with one part is that part's plain group, and one with none adds
//! nothing.

use super::cursor::{decode_cursor, Key};
use super::span_doc::term_pair;
use super::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::{Error, Result, SpanConditions, TraceHit, TraceIdPage, TraceQuery};

/// Longest accepted free text (bytes).
pub const MAX_TEXT_BYTES: usize = 4096;
/// Words of the free text that are searched; later ones are ignored.
pub const MAX_TEXT_TOKENS: usize = 16;
/// Most conditions in one query, counting each part of a same-span group (so a group is
/// at most this many too). Each group costs a pass over the index (tantivy) or a filter
/// aggregation per trace bucket (OpenSearch); each part one term or range in it.
pub const MAX_GROUPS: usize = 48;
/// Longest word kept by the text analysis.
pub const MAX_WORD_BYTES: usize = 40;
/// The tantivy analyzer that splits text into words, for documents and query text alike.
pub const TEXT_ANALYZER: &str = "default";

/// What must hold on one span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// Exact service name.
    Service(String),
    /// Exact span name.
    Operation(String),
    /// Both on the same span.
    ServiceOperation { service: String, operation: String },
    /// An error span.
    Error,
    /// Duration within `[min, max]` nanoseconds.
    Duration { min: u64, max: u64 },
    /// An indexed attribute, as its `name=value` term.
    Attribute(String),
    /// A business key, as its `name=value` term.
    BusinessKey(String),
    /// Every one of these words in the error text.
    Words(Vec<String>),
    /// Every one of these (at least two, none of them `Words` or `SameSpan`) on the same
    /// span: one document of the index.
    SameSpan(Vec<Condition>),
}

impl Condition {
    /// How many conditions this is towards [`MAX_GROUPS`].
    pub fn count(&self) -> usize {
        match self {
            Condition::SameSpan(parts) => parts.len(),
            _ => 1,
        }
    }
}

/// A checked query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryPlan {
    /// One per group, in the order of the [`TraceQuery`] fields; empty means "any span".
    pub conditions: Vec<Condition>,
    /// Page size, defaulted and clamped.
    pub limit: usize,
    /// Only keys strictly below this one.
    pub cursor: Option<Key>,
    /// Spans starting at or after this time (inclusive).
    pub start_min_unix_nano: Option<u64>,
    /// Spans starting before this time (exclusive).
    pub start_max_unix_nano: Option<u64>,
}

impl QueryPlan {
    /// Checks `q` and cuts it into groups; errors are the caller's fault
    /// ([`Error::InvalidRequest`]).
    pub fn new(q: &TraceQuery) -> Result<QueryPlan> {
        let cursor = q.cursor.as_deref().map(decode_cursor).transpose()?;
        Ok(QueryPlan {
            conditions: conditions(q)?,
            limit: page_size(q.limit),
            cursor,
            start_min_unix_nano: q.start_min_unix_nano,
            start_max_unix_nano: q.start_max_unix_nano,
        })
    }

    /// True when the time range holds no instant: nothing can match.
    pub fn empty_time_range(&self) -> bool {
        let lo = self.start_min_unix_nano.unwrap_or(0);
        self.start_max_unix_nano.is_some_and(|hi| hi <= lo)
    }

    /// True when the query restricts start times at all.
    pub fn has_time_range(&self) -> bool {
        self.start_min_unix_nano.is_some() || self.start_max_unix_nano.is_some()
    }

    /// Whether `key` lies below the cursor (every key does without one).
    pub fn below_cursor(&self, key: &Key) -> bool {
        self.cursor.is_none_or(|c| *key < c)
    }

    /// The page of `hits` (keys of matching traces, any order): newest first, at most
    /// `limit`, with a cursor when more follow.
    pub fn page(&self, mut hits: Vec<Key>) -> TraceIdPage {
        hits.sort_unstable_by(|a, b| b.cmp(a));
        let more = hits.len() > self.limit;
        hits.truncate(self.limit);
        let next_cursor = if more {
            hits.last()
                .map(|&(s, id)| super::cursor::encode_cursor(s, &id))
        } else {
            None
        };
        TraceIdPage {
            hits: hits
                .into_iter()
                .map(|(start, id)| TraceHit {
                    trace_id: clew_proto::TraceId(id),
                    start_unix_nano: start,
                })
                .collect(),
            next_cursor,
        }
    }
}

/// `limit` 0 is [`DEFAULT_LIMIT`]; larger than [`MAX_LIMIT`] is clamped.
pub fn page_size(limit: usize) -> usize {
    if limit == 0 {
        DEFAULT_LIMIT
    } else {
        limit.min(MAX_LIMIT)
    }
}

fn conditions(q: &TraceQuery) -> Result<Vec<Condition>> {
    let mut groups = span_conditions(&SpanConditions {
        service: q.service.clone(),
        operation: q.operation.clone(),
        errors_only: q.errors_only,
        min_duration_nanos: q.min_duration_nanos,
        max_duration_nanos: q.max_duration_nanos,
        attributes: q.attributes.clone(),
        business_keys: q.business_keys.clone(),
    })?;
    if let Some(text) = &q.text {
        let words = query_words(text)?;
        if !words.is_empty() {
            groups.push(Condition::Words(words));
        }
    }
    for entry in &q.same_span {
        let mut parts = span_conditions(entry)?;
        match parts.len() {
            0 => {}
            1 => groups.extend(parts.pop()),
            _ => groups.push(Condition::SameSpan(parts)),
        }
    }
    if groups.iter().map(Condition::count).sum::<usize>() > MAX_GROUPS {
        return Err(Error::InvalidRequest(format!(
            "a search holds at most {MAX_GROUPS} conditions"
        )));
    }
    Ok(groups)
}

/// The conditions of `c`, each one group, in field order: `service[+operation]`, error,
/// duration `[min, max]`, each attribute, each business key.
fn span_conditions(c: &SpanConditions) -> Result<Vec<Condition>> {
    let mut groups = Vec::new();
    match (&c.service, &c.operation) {
        (Some(s), Some(o)) => groups.push(Condition::ServiceOperation {
            service: s.clone(),
            operation: o.clone(),
        }),
        (Some(s), None) => groups.push(Condition::Service(s.clone())),
        (None, Some(o)) => groups.push(Condition::Operation(o.clone())),
        (None, None) => {}
    }
    if c.errors_only {
        groups.push(Condition::Error);
    }
    if c.min_duration_nanos.is_some() || c.max_duration_nanos.is_some() {
        let min = c.min_duration_nanos.unwrap_or(0);
        let max = c.max_duration_nanos.unwrap_or(u64::MAX);
        if min > max {
            return Err(Error::InvalidRequest(format!(
                "min duration {min} ns is above max duration {max} ns"
            )));
        }
        groups.push(Condition::Duration { min, max });
    }
    for (name, value) in &c.attributes {
        groups.push(Condition::Attribute(term_pair(name, value)));
    }
    for (name, value) in &c.business_keys {
        groups.push(Condition::BusinessKey(term_pair(name, value)));
    }
    Ok(groups)
}

/// The distinct words of search text, at most [`MAX_TEXT_TOKENS`]. The text is data, never
/// query syntax: it is only ever split into words that become exact term conditions.
pub fn query_words(text: &str) -> Result<Vec<String>> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(Error::InvalidRequest(format!(
            "search text is longer than {MAX_TEXT_BYTES} bytes"
        )));
    }
    let mut unique: Vec<String> = Vec::new();
    for w in words(text) {
        if unique.len() == MAX_TEXT_TOKENS {
            break;
        }
        if !unique.contains(&w) {
            unique.push(w);
        }
    }
    Ok(unique)
}

/// Splits text into lowercase words: tantivy's default analysis (runs of letters and
/// digits, lowercased, words over 40 bytes dropped). Documents and query text go through
/// it on every backend, so free text finds the same spans everywhere
/// (`java.net.SocketTimeoutException` is three words).
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut analyzer = tantivy::tokenizer::TokenizerManager::default()
        .get(TEXT_ANALYZER)
        .expect("tantivy's default tokenizer is always registered");
    let mut stream = analyzer.token_stream(text);
    while stream.advance() {
        let w = &stream.token().text;
        if w.len() <= MAX_WORD_BYTES {
            out.push(w.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_condition_per_group_in_field_order() {
        let mut q = TraceQuery {
            text: Some("\"a:b OR (c".into()),
            ..Default::default()
        };
        q.business_keys.push(("order_id".into(), "A-1".into()));
        q.attributes.push(("db.system".into(), "postgresql".into()));
        (q.service, q.operation) = (Some("payments".into()), Some("Charge".into()));
        (q.errors_only, q.min_duration_nanos) = (true, Some(5));
        let plan = QueryPlan::new(&q).unwrap();
        assert_eq!(
            plan.conditions,
            [
                Condition::ServiceOperation {
                    service: "payments".into(),
                    operation: "Charge".into()
                },
                Condition::Error,
                Condition::Duration {
                    min: 5,
                    max: u64::MAX
                },
                Condition::Attribute("db.system=postgresql".into()),
                Condition::BusinessKey("order_id=A-1".into()),
                Condition::Words(vec!["a".into(), "b".into(), "or".into(), "c".into()]),
            ]
        );
        assert_eq!(plan.limit, DEFAULT_LIMIT);
    }

    #[test]
    fn a_same_span_entry_is_one_group_of_its_parts() {
        let q = TraceQuery {
            business_keys: vec![("order_id".into(), "A-1".into())],
            same_span: vec![
                SpanConditions {
                    service: Some("payments".into()),
                    errors_only: true,
                    attributes: vec![("db.system".into(), "postgresql".into())],
                    ..Default::default()
                },
                SpanConditions {
                    operation: Some("Charge".into()),
                    ..Default::default()
                },
                SpanConditions::default(),
            ],
            ..Default::default()
        };
        let plan = QueryPlan::new(&q).unwrap();
        assert_eq!(
            plan.conditions,
            [
                Condition::BusinessKey("order_id=A-1".into()),
                Condition::SameSpan(vec![
                    Condition::Service("payments".into()),
                    Condition::Error,
                    Condition::Attribute("db.system=postgresql".into()),
                ]),
                Condition::Operation("Charge".into()),
            ]
        );
        let count: usize = plan.conditions.iter().map(Condition::count).sum();
        assert_eq!(count, 5);
    }

    #[test]
    fn limits_are_applied_here() {
        assert_eq!(page_size(0), DEFAULT_LIMIT);
        assert_eq!(page_size(MAX_LIMIT + 1), MAX_LIMIT);
        let at_cap = TraceQuery {
            business_keys: (0..MAX_GROUPS)
                .map(|i| ("k".into(), i.to_string()))
                .collect(),
            ..Default::default()
        };
        assert_eq!(
            QueryPlan::new(&at_cap).unwrap().conditions.len(),
            MAX_GROUPS
        );
        let over = TraceQuery {
            business_keys: (0..=MAX_GROUPS)
                .map(|i| ("k".into(), i.to_string()))
                .collect(),
            ..Default::default()
        };
        assert!(matches!(
            QueryPlan::new(&over),
            Err(Error::InvalidRequest(_))
        ));
        let backwards = TraceQuery {
            min_duration_nanos: Some(2),
            max_duration_nanos: Some(1),
            ..Default::default()
        };
        assert!(matches!(
            QueryPlan::new(&backwards),
            Err(Error::InvalidRequest(_))
        ));
        let bad_cursor = TraceQuery {
            cursor: Some("zz".into()),
            ..Default::default()
        };
        assert!(matches!(
            QueryPlan::new(&bad_cursor),
            Err(Error::InvalidRequest(_))
        ));
    }

    #[test]
    fn text_is_split_into_bounded_words() {
        assert_eq!(query_words("\"a:b OR (c").unwrap(), ["a", "b", "or", "c"]);
        assert!(query_words("*").unwrap().is_empty());
        assert!(query_words("\\").unwrap().is_empty());
        let long = "word ".repeat(100);
        assert_eq!(query_words(&long).unwrap().len(), 1);
        let many: String = (0..100).map(|i| format!("w{i} ")).collect();
        assert_eq!(query_words(&many).unwrap().len(), MAX_TEXT_TOKENS);
        assert!(query_words(&"x".repeat(MAX_TEXT_BYTES + 1)).is_err());
    }

    #[test]
    fn words_split_like_the_embedded_index() {
        assert_eq!(
            words("java.net.SocketTimeoutException: a:b 30s!"),
            ["java", "net", "sockettimeoutexception", "a", "b", "30s"]
        );
        assert!(words("* \\ ((").is_empty());
        assert!(words(&"x".repeat(41)).is_empty());
    }

    #[test]
    fn pages_are_newest_first_with_a_cursor_when_more_follow() {
        let plan = QueryPlan::new(&TraceQuery {
            limit: 2,
            ..Default::default()
        })
        .unwrap();
        let page = plan.page(vec![(1, [1; 16]), (3, [3; 16]), (2, [2; 16])]);
        let starts: Vec<u64> = page.hits.iter().map(|h| h.start_unix_nano).collect();
        assert_eq!(starts, [3, 2]);
        let cursor = decode_cursor(page.next_cursor.as_deref().unwrap()).unwrap();
        assert_eq!(cursor, (2, [2; 16]));
        assert!(plan.page(vec![(1, [1; 16])]).next_cursor.is_none());
    }
}
