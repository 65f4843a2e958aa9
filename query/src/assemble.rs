//! Turning a stored trace (spans in no particular order) into what a reader wants: the spans
//! in call-tree order, and a one-line summary for result lists.
//!
//! Span data comes from anyone who can send spans, so the parent links may be anything:
//! cycles, self-parents, parents that never arrived, span ids shared by two spans. Tree
//! building is an explicit-stack walk with a visited set: it never loops, never recurses
//! (a 10,000-deep chain is fine) and places every span exactly once.

use std::collections::{BTreeMap, HashMap};

use clew_proto::{Span, SpanId};

/// Indices into `spans` in display order:
/// 1. depth-first from each root (no parent), roots and children by start time;
/// 2. then each orphan (its parent never arrived) with its subtree, by start time;
/// 3. then whatever is left (spans caught in parent cycles or parented by themselves),
///    by start time, each with its not-yet-placed subtree.
///
/// Ties in start time are broken by span id, then by position, so the order is stable.
pub fn tree_order(spans: &[Span]) -> Vec<usize> {
    let by_start = |a: &usize, b: &usize| {
        let (sa, sb) = (&spans[*a], &spans[*b]);
        (sa.start_unix_nano, sa.span_id, *a).cmp(&(sb.start_unix_nano, sb.span_id, *b))
    };

    let present: std::collections::HashSet<SpanId> = spans.iter().map(|s| s.span_id).collect();
    let mut children: HashMap<SpanId, Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    let mut orphans = Vec::new();
    for (i, span) in spans.iter().enumerate() {
        match span.parent_span_id {
            None => roots.push(i),
            Some(parent) if !present.contains(&parent) => orphans.push(i),
            Some(parent) => children.entry(parent).or_default().push(i),
        }
    }
    for list in children.values_mut() {
        list.sort_by(by_start);
    }
    roots.sort_by(by_start);
    orphans.sort_by(by_start);
    let mut rest: Vec<usize> = (0..spans.len()).collect();
    rest.sort_by(by_start);

    let mut placed = vec![false; spans.len()];
    let mut order = Vec::with_capacity(spans.len());
    let mut stack = Vec::new();
    for start in roots.into_iter().chain(orphans).chain(rest) {
        if placed[start] {
            continue;
        }
        stack.push(start);
        while let Some(i) = stack.pop() {
            if placed[i] {
                continue;
            }
            placed[i] = true;
            order.push(i);
            if let Some(kids) = children.get(&spans[i].span_id) {
                // reversed so that the earliest child is popped (and shown) first
                stack.extend(kids.iter().rev().copied().filter(|&k| !placed[k]));
            }
        }
    }
    order
}

/// Per-service counts within one trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCount {
    pub name: String,
    pub span_count: usize,
    pub error_count: usize,
}

/// What a result list shows for one trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceSummary {
    /// Service and name of the root span: the span without a parent (the earliest if
    /// several), else the earliest span. `None` only for a trace without spans.
    pub root_service: Option<String>,
    pub root_operation: Option<String>,
    /// Earliest start (unix ns); 0 for a trace without spans.
    pub start_unix_nano: u64,
    /// Latest end minus earliest start.
    pub duration_nanos: u64,
    pub span_count: usize,
    pub error_count: usize,
    /// Sorted by service name.
    pub services: Vec<ServiceCount>,
    /// Business keys seen on the trace; for a name seen with several values, the value on
    /// the earliest span carrying it.
    pub business_keys: BTreeMap<String, String>,
}

/// Summarises one trace. `spans` may be in any order.
pub fn summarize(spans: &[Span]) -> TraceSummary {
    let earliest =
        |a: &&Span, b: &&Span| (a.start_unix_nano, a.span_id).cmp(&(b.start_unix_nano, b.span_id));
    let root = spans
        .iter()
        .filter(|s| s.parent_span_id.is_none())
        .min_by(earliest)
        .or_else(|| spans.iter().min_by(earliest));

    let start = spans.iter().map(|s| s.start_unix_nano).min().unwrap_or(0);
    let end = spans
        .iter()
        .map(|s| s.end_unix_nano.max(s.start_unix_nano))
        .max()
        .unwrap_or(0);

    let mut services: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut error_count = 0;
    for span in spans {
        let error = span.is_error();
        error_count += usize::from(error);
        let entry = services.entry(span.service_name.as_str()).or_default();
        entry.0 += 1;
        entry.1 += usize::from(error);
    }

    let mut keyed: Vec<&Span> = spans
        .iter()
        .filter(|s| !s.business_keys.is_empty())
        .collect();
    keyed.sort_by(earliest);
    let mut business_keys = BTreeMap::new();
    for span in keyed {
        for key in &span.business_keys {
            business_keys
                .entry(key.name.clone())
                .or_insert_with(|| key.value.clone());
        }
    }

    TraceSummary {
        root_service: root.map(|s| s.service_name.clone()),
        root_operation: root.map(|s| s.name.clone()),
        start_unix_nano: start,
        duration_nanos: end.saturating_sub(start),
        span_count: spans.len(),
        error_count,
        services: services
            .into_iter()
            .map(|(name, (span_count, error_count))| ServiceCount {
                name: name.to_string(),
                span_count,
                error_count,
            })
            .collect(),
        business_keys,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clew_store::conformance::fixtures::{
        checkout_trace, span, span_id, trace_id, wide_trace, BASE_TIME,
    };

    fn ids(spans: &[Span], order: &[usize]) -> Vec<SpanId> {
        order.iter().map(|&i| spans[i].span_id).collect()
    }

    fn assert_each_once(spans: &[Span], order: &[usize]) {
        let mut seen = vec![0u32; spans.len()];
        for &i in order {
            seen[i] += 1;
        }
        assert!(
            seen.iter().all(|&n| n == 1),
            "every span exactly once: {seen:?}"
        );
    }

    #[test]
    fn checkout_trace_in_call_order_from_any_input_order() {
        let mut spans = checkout_trace(trace_id(1), "12345", BASE_TIME, true);
        spans.reverse();
        let order = tree_order(&spans);
        assert_eq!(
            ids(&spans, &order),
            vec![span_id(1), span_id(2), span_id(3), span_id(4)]
        );
    }

    #[test]
    fn children_by_start_time_depth_first() {
        let t = trace_id(1);
        let spans = vec![
            span(t, span_id(1), None, "a", "root", BASE_TIME, 100),
            span(
                t,
                span_id(3),
                Some(span_id(1)),
                "a",
                "late child",
                BASE_TIME + 50,
                10,
            ),
            span(
                t,
                span_id(2),
                Some(span_id(1)),
                "a",
                "early child",
                BASE_TIME + 10,
                10,
            ),
            span(
                t,
                span_id(4),
                Some(span_id(2)),
                "a",
                "grandchild",
                BASE_TIME + 11,
                1,
            ),
        ];
        let order = tree_order(&spans);
        assert_eq!(
            ids(&spans, &order),
            vec![span_id(1), span_id(2), span_id(4), span_id(3)]
        );
    }

    #[test]
    fn orphans_follow_the_tree_with_their_subtrees() {
        let t = trace_id(1);
        let spans = vec![
            span(
                t,
                span_id(10),
                Some(span_id(99)),
                "a",
                "orphan",
                BASE_TIME - 5,
                10,
            ),
            span(
                t,
                span_id(11),
                Some(span_id(10)),
                "a",
                "orphan child",
                BASE_TIME,
                1,
            ),
            span(t, span_id(1), None, "a", "root", BASE_TIME, 100),
            span(
                t,
                span_id(2),
                Some(span_id(1)),
                "a",
                "child",
                BASE_TIME + 1,
                1,
            ),
        ];
        let order = tree_order(&spans);
        assert_eq!(
            ids(&spans, &order),
            vec![span_id(1), span_id(2), span_id(10), span_id(11)]
        );
    }

    #[test]
    fn cycles_and_self_parents_never_loop_and_appear_once() {
        let t = trace_id(1);
        let spans = vec![
            span(t, span_id(1), None, "a", "root", BASE_TIME, 100),
            // 5 -> 6 -> 7 -> 5
            span(t, span_id(5), Some(span_id(7)), "a", "c1", BASE_TIME + 5, 1),
            span(t, span_id(6), Some(span_id(5)), "a", "c2", BASE_TIME + 6, 1),
            span(t, span_id(7), Some(span_id(6)), "a", "c3", BASE_TIME + 7, 1),
            // its own parent, with a child
            span(
                t,
                span_id(8),
                Some(span_id(8)),
                "a",
                "self",
                BASE_TIME + 1,
                1,
            ),
            span(
                t,
                span_id(9),
                Some(span_id(8)),
                "a",
                "self child",
                BASE_TIME + 2,
                1,
            ),
        ];
        let order = tree_order(&spans);
        assert_each_once(&spans, &order);
        assert_eq!(
            ids(&spans, &order),
            vec![
                span_id(1),
                span_id(8),
                span_id(9),
                span_id(5),
                span_id(6),
                span_id(7)
            ]
        );
    }

    #[test]
    fn only_a_cycle_no_root() {
        let t = trace_id(1);
        let spans = vec![
            span(t, span_id(1), Some(span_id(2)), "a", "x", BASE_TIME + 1, 1),
            span(t, span_id(2), Some(span_id(1)), "a", "y", BASE_TIME, 1),
        ];
        let order = tree_order(&spans);
        assert_eq!(ids(&spans, &order), vec![span_id(2), span_id(1)]);
        let summary = summarize(&spans);
        assert_eq!(
            summary.root_operation.as_deref(),
            Some("y"),
            "earliest span when nothing is a root"
        );
    }

    #[test]
    fn shared_span_ids_place_each_span_once() {
        let t = trace_id(1);
        let spans = vec![
            span(t, span_id(1), None, "a", "root", BASE_TIME, 100),
            span(
                t,
                span_id(2),
                Some(span_id(1)),
                "a",
                "client",
                BASE_TIME + 1,
                10,
            ),
            span(
                t,
                span_id(2),
                Some(span_id(1)),
                "b",
                "server",
                BASE_TIME + 2,
                5,
            ),
            span(t, span_id(3), Some(span_id(2)), "b", "db", BASE_TIME + 3, 1),
        ];
        let order = tree_order(&spans);
        assert_each_once(&spans, &order);
        assert_eq!(order, vec![0, 1, 3, 2]);
    }

    #[test]
    fn ten_thousand_spans_deep_chain_and_wide() {
        let t = trace_id(1);
        let chain: Vec<Span> = (0..10_000u64)
            .map(|i| {
                let parent = if i == 0 { None } else { Some(span_id(i - 1)) };
                span(t, span_id(i), parent, "a", "op", BASE_TIME + i, 1)
            })
            .rev()
            .collect();
        let order = tree_order(&chain);
        assert_eq!(order.len(), 10_000);
        assert_each_once(&chain, &order);
        assert_eq!(chain[order[0]].span_id, span_id(0));
        assert_eq!(chain[order[9_999]].span_id, span_id(9_999));

        let wide = wide_trace(t, 10_000, BASE_TIME);
        let order = tree_order(&wide);
        assert_each_once(&wide, &order);
        assert_eq!(order[0], 0);
        assert_eq!(summarize(&wide).span_count, 10_000);
    }

    #[test]
    fn empty_trace() {
        assert!(tree_order(&[]).is_empty());
        let s = summarize(&[]);
        assert_eq!(s.root_service, None);
        assert_eq!(
            (s.span_count, s.duration_nanos, s.start_unix_nano),
            (0, 0, 0)
        );
    }

    #[test]
    fn checkout_summary() {
        let spans = checkout_trace(trace_id(1), "12345", BASE_TIME, true);
        let s = summarize(&spans);
        assert_eq!(s.root_service.as_deref(), Some("frontend"));
        assert_eq!(s.root_operation.as_deref(), Some("GET /checkout"));
        assert_eq!(s.start_unix_nano, BASE_TIME);
        assert_eq!(s.duration_nanos, 50_000_000);
        assert_eq!((s.span_count, s.error_count), (4, 1));
        let names: Vec<&str> = s.services.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["checkout", "frontend", "payments"]);
        assert_eq!(
            s.services[2],
            ServiceCount {
                name: "payments".into(),
                span_count: 2,
                error_count: 1
            }
        );
        assert_eq!(
            s.business_keys.get("order_id").map(String::as_str),
            Some("12345")
        );
    }

    #[test]
    fn root_is_earliest_parentless_span_and_duration_spans_all() {
        let t = trace_id(1);
        let spans = vec![
            span(t, span_id(1), None, "late-root", "b", BASE_TIME + 10, 10),
            span(
                t,
                span_id(2),
                Some(span_id(77)),
                "orphan",
                "early orphan",
                BASE_TIME,
                5,
            ),
            span(t, span_id(3), None, "early-root", "a", BASE_TIME + 5, 100),
        ];
        let s = summarize(&spans);
        assert_eq!(s.root_service.as_deref(), Some("early-root"));
        assert_eq!(s.start_unix_nano, BASE_TIME);
        assert_eq!(s.duration_nanos, 105);
    }

    #[test]
    fn end_before_start_does_not_underflow() {
        let t = trace_id(1);
        let mut s = span(t, span_id(1), None, "a", "x", BASE_TIME, 0);
        s.end_unix_nano = 0;
        assert_eq!(summarize(&[s]).duration_nanos, 0);
    }
}
