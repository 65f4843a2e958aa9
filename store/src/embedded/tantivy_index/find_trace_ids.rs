//! Trace-level search over span documents.
//!
//! Every condition of a [`TraceQuery`] must hold on *some* span of a trace, not on one
//! span. So the query is cut into condition groups by the shared
//! `trace_index::query_plan` (one group = what must hold on one span: `service`+`operation`,
//! `min`+`max` duration, each attribute, each business key, errors, text, and each
//! same-span entry, whose parts are one boolean conjunction over the one document of a
//! span), each restricted to the time range. The groups run most selective first
//! (estimated from term document frequencies); the first collects `trace id → earliest
//! matching start`. Its candidates are then taken newest first, a chunk at a time: every
//! following group only looks at the chunk's trace ids (a term-set filter on the indexed
//! trace id) and intersects. Chunks stop as soon as the page is certain (see
//! `Search::intersect_in_chunks`), so a
//! selective condition next to a broad one (`error` and a big service) costs the selective
//! one plus a few term-set lookups, not a scan of the broad one. The survivors are sorted
//! newest first by `(start, trace id)`, cut at the cursor and
//! paged. A query whose conditions form one group is one tantivy search.
//!
//! **Tenants.** Every search of a partition that has the `tenant` field gets
//! `+tenant:<tenant>` next to its group, in one place ([`Search::run`]); the tenant is an
//! argument, never a condition of the plan, so no query text reaches it. A partition
//! created before tenants (no such field) holds tenant `default` only: it is searched for
//! `default` without the clause and skipped for every other tenant.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clew_proto::Tenant;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{BytesColumn, Column};
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, RangeQuery, TermQuery, TermSetQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::{DocId, Score, Searcher, SegmentOrdinal, SegmentReader, Term};

use super::document::service_operation_term;
use super::schema::{self, Fields};
use super::writer::Shared;
use crate::trace_index::cursor::Key;
use crate::trace_index::query_plan::{Condition, QueryPlan};
use crate::{Error, Result, TraceIdPage, TraceQuery};

/// Candidates of the first group are checked against the other groups this many at a
/// time, with a term-set filter on their trace ids.
const TERM_SET_FILTER_MAX: usize = 4096;

type TraceMap = HashMap<[u8; 16], u64>;

/// What must hold on one span, as tantivy searches it.
enum Group {
    /// One exact term.
    Term(Term),
    /// Every term (the words of the free text).
    AllTerms(Vec<Term>),
    /// Duration within `[min, max]`.
    Duration(u64, u64),
    /// Every one of these on the same span document.
    All(Vec<Group>),
    /// Any span (a query with no conditions besides time).
    Any,
}

impl Group {
    /// The tantivy form of one planned condition.
    fn of(condition: &Condition, f: &Fields) -> Group {
        let term = |field, text: &str| Group::Term(Term::from_field_text(field, text));
        match condition {
            Condition::ServiceOperation { service, operation } => term(
                f.service_operation,
                &service_operation_term(service, operation),
            ),
            Condition::Service(s) => term(f.service, s),
            Condition::Operation(o) => term(f.operation, o),
            Condition::Error => term(f.error, schema::ERROR_TERM),
            Condition::Duration { min, max } => Group::Duration(*min, *max),
            Condition::Attribute(pair) => term(f.attrs, pair),
            Condition::BusinessKey(pair) => term(f.keys, pair),
            Condition::Words(words) => Group::AllTerms(
                words
                    .iter()
                    .map(|w| Term::from_field_text(f.error_text, w))
                    .collect(),
            ),
            Condition::SameSpan(parts) => {
                Group::All(parts.iter().map(|c| Group::of(c, f)).collect())
            }
        }
    }

    fn query(&self, f: &Fields) -> Box<dyn Query> {
        match self {
            Group::Term(t) => Box::new(TermQuery::new(t.clone(), IndexRecordOption::Basic)),
            Group::AllTerms(ts) => Box::new(BooleanQuery::new(
                ts.iter()
                    .map(|t| {
                        (
                            Occur::Must,
                            Box::new(TermQuery::new(t.clone(), IndexRecordOption::Basic))
                                as Box<dyn Query>,
                        )
                    })
                    .collect(),
            )),
            Group::Duration(lo, hi) => Box::new(RangeQuery::new(
                Bound::Included(Term::from_field_u64(f.duration, *lo)),
                Bound::Included(Term::from_field_u64(f.duration, *hi)),
            )),
            // A conjunction of the parts: every part matches the same document.
            Group::All(parts) => Box::new(BooleanQuery::new(
                parts.iter().map(|g| (Occur::Must, g.query(f))).collect(),
            )),
            Group::Any => Box::new(AllQuery),
        }
    }

    /// Estimated matching documents, to run the most selective group first.
    fn estimate(&self, searchers: &[(Searcher, bool)]) -> u64 {
        let df = |t: &Term| {
            searchers
                .iter()
                .map(|(s, _)| s.doc_freq(t).unwrap_or(u64::MAX / 4))
                .sum::<u64>()
        };
        match self {
            Group::Term(t) => df(t),
            Group::AllTerms(ts) => ts.iter().map(df).min().unwrap_or(u64::MAX),
            // At most as many as its most selective part.
            Group::All(parts) => parts
                .iter()
                .map(|g| g.estimate(searchers))
                .min()
                .unwrap_or(u64::MAX),
            Group::Duration(..) | Group::Any => u64::MAX,
        }
    }
}

/// How [`find`] walks the time range: a switch for benchmarks only, which compare the
/// two on the same index (`store/benches/tantivy_search.rs`).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchWalk {
    /// Newest first, slice by slice (what clew does).
    Slices,
    /// The whole range at once (the search before issue 13).
    WholeRange,
}

static WHOLE_RANGE: AtomicBool = AtomicBool::new(false);

/// Sets how every later search of this process walks time (benchmarks only).
#[doc(hidden)]
pub fn set_search_walk(walk: SearchWalk) {
    WHOLE_RANGE.store(walk == SearchWalk::WholeRange, Ordering::Relaxed);
}

/// Runs `q` for `tenant` against the partitions it can touch.
pub fn find(shared: &Shared, tenant: &Tenant, q: &TraceQuery) -> Result<TraceIdPage> {
    find_chunked(shared, tenant, q, TERM_SET_FILTER_MAX)
}

/// [`find`], checking candidates of the first group `chunk` at a time.
fn find_chunked(
    shared: &Shared,
    tenant: &Tenant,
    q: &TraceQuery,
    chunk: usize,
) -> Result<TraceIdPage> {
    let plan = QueryPlan::new(q)?;
    if plan.empty_time_range() {
        return Ok(TraceIdPage::default());
    }
    let search = Search::new(shared, tenant, &plan);
    let mut groups = search.most_selective_first(&plan);
    let first = groups.remove(0);
    let first_found = search.run(&first, None)?;
    let hits: Vec<Key> = if groups.is_empty() {
        first_found
            .into_iter()
            .map(|(id, start)| (start, id))
            .filter(|key| plan.below_cursor(key))
            .collect()
    } else {
        search.intersect_in_chunks(first_found, &groups, &plan, chunk)?
    };
    Ok(plan.page(hits))
}

/// One search over the day partitions of the plan's time range, for one tenant.
struct Search<'a> {
    fields: &'a Fields,
    /// The partitions the tenant can have documents in; `true` when the partition has the
    /// `tenant` field (and so needs the tenant clause).
    searchers: Vec<(Searcher, bool)>,
    /// `+tenant:<tenant>`.
    tenant: Term,
    /// The time range as a query, when the plan has one.
    time: Option<Box<dyn Query>>,
}

impl<'a> Search<'a> {
    fn new(shared: &'a Shared, tenant: &Tenant, plan: &QueryPlan) -> Self {
        let f = &shared.fields;
        let lo = plan.start_min_unix_nano.unwrap_or(0);
        let hi = plan.start_max_unix_nano; // exclusive
        let last_day = hi.map_or(u32::MAX, |hi| schema::day_of(hi - 1));
        let partitions = shared.snapshot(schema::day_of(lo)..=last_day);
        let searchers = partitions
            .iter()
            .filter(|p| p.tenanted || tenant.is_default())
            .map(|p| (p.reader.searcher(), p.tenanted))
            .collect();
        let time = plan.has_time_range().then(|| {
            Box::new(RangeQuery::new(
                Bound::Included(Term::from_field_u64(f.start, lo)),
                hi.map_or(Bound::Unbounded, |hi| {
                    Bound::Excluded(Term::from_field_u64(f.start, hi))
                }),
            )) as Box<dyn Query>
        });
        Search {
            fields: f,
            searchers,
            tenant: Term::from_field_text(f.tenant, tenant.as_str()),
            time,
        }
    }

    /// The plan's groups (at least one: "any span"), most selective first.
    fn most_selective_first(&self, plan: &QueryPlan) -> Vec<Group> {
        let mut groups: Vec<Group> = plan
            .conditions
            .iter()
            .map(|c| Group::of(c, self.fields))
            .collect();
        if groups.is_empty() {
            groups.push(Group::Any);
        }
        let mut ordered: Vec<(u64, Group)> = groups
            .into_iter()
            .map(|g| (g.estimate(&self.searchers), g))
            .collect();
        ordered.sort_by_key(|(estimate, _)| *estimate);
        ordered.into_iter().map(|(_, g)| g).collect()
    }

    /// `trace id → earliest matching start` of the traces with a span matching `group`
    /// in the time range; with `alive`, only those traces, each keeping the earlier of
    /// its start there and here.
    fn run(&self, group: &Group, alive: Option<Arc<TraceMap>>) -> Result<TraceMap> {
        let f = self.fields;
        let mut must: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, group.query(f))];
        if let Some(t) = &self.time {
            must.push((Occur::Must, t.box_clone()));
        }
        if let Some(alive) = &alive {
            let ids = alive
                .keys()
                .map(|id| Term::from_field_bytes(f.trace_id, id));
            must.push((Occur::Must, Box::new(TermSetQuery::new(ids))));
        }
        // The one place the tenant joins a search: a mandatory clause of its own, on every
        // partition that records tenants.
        let mut with_tenant = must
            .iter()
            .map(|(o, q)| (*o, q.box_clone()))
            .collect::<Vec<_>>();
        with_tenant.push((
            Occur::Must,
            Box::new(TermQuery::new(
                self.tenant.clone(),
                IndexRecordOption::Basic,
            )),
        ));
        let with_tenant: Box<dyn Query> = Box::new(BooleanQuery::new(with_tenant));
        let before_tenants: Box<dyn Query> = if must.len() == 1 {
            must.pop().expect("one").1
        } else {
            Box::new(BooleanQuery::new(must))
        };
        let collector = TraceCollector {
            alive: alive.clone(),
        };
        let mut found = TraceMap::new();
        for (searcher, tenanted) in &self.searchers {
            let query = if *tenanted {
                &with_tenant
            } else {
                &before_tenants
            };
            let part = searcher
                .search(&**query, &collector)
                .map_err(|e| Error::unavailable("index search failed", e))?;
            merge_min(&mut found, part);
        }
        if let Some(prev) = &alive {
            for (id, start) in found.iter_mut() {
                if let Some(&p) = prev.get(id) {
                    *start = (*start).min(p);
                }
            }
        }
        Ok(found)
    }

    /// The keys of the first group's candidates that pass every other group, below the
    /// cursor. The other groups only look at candidates of the first one, newest first,
    /// a chunk at a time. A trace's key (its earliest matching start) is at most its
    /// start in the first group, so once more than a page of hits is newer than the
    /// oldest candidate looked at, no later candidate can get into the page.
    fn intersect_in_chunks(
        &self,
        first_found: TraceMap,
        rest: &[Group],
        plan: &QueryPlan,
        chunk: usize,
    ) -> Result<Vec<Key>> {
        let mut candidates: Vec<Key> = first_found
            .into_iter()
            .map(|(id, start)| (start, id))
            .collect();
        candidates.sort_unstable_by(|a, b| b.cmp(a));
        let mut hits = Vec::new();
        for chunk in candidates.chunks(chunk.max(1)) {
            let mut alive: TraceMap = chunk.iter().map(|&(start, id)| (id, start)).collect();
            for group in rest {
                alive = self.run(group, Some(Arc::new(alive)))?;
                if alive.is_empty() {
                    break;
                }
            }
            hits.extend(
                alive
                    .into_iter()
                    .map(|(id, start)| (start, id))
                    .filter(|key| plan.below_cursor(key)),
            );
            let floor = chunk.last().map_or(0, |&(start, _)| start);
            if hits.iter().filter(|&&(start, _)| start > floor).count() > plan.limit {
                break;
            }
        }
        Ok(hits)
    }
}

fn merge_min(into: &mut TraceMap, from: TraceMap) {
    if into.is_empty() {
        *into = from;
        return;
    }
    for (id, start) in from {
        into.entry(id)
            .and_modify(|s| *s = (*s).min(start))
            .or_insert(start);
    }
}

/// Collects `trace id → earliest start` of matching span documents, optionally keeping
/// only trace ids in `alive`.
struct TraceCollector {
    alive: Option<Arc<TraceMap>>,
}

struct TraceSegmentCollector {
    ids: Option<BytesColumn>,
    starts: Column<u64>,
    /// Only trace ids in here count (checked once per distinct trace, at harvest).
    alive: Option<Arc<TraceMap>>,
    /// Segment-local trace-id ordinal → earliest start.
    by_ord: HashMap<u64, u64>,
}

impl Collector for TraceCollector {
    type Fruit = TraceMap;
    type Child = TraceSegmentCollector;

    fn for_segment(
        &self,
        _: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<TraceSegmentCollector> {
        let ids = segment.fast_fields().bytes(schema::TRACE_ID)?;
        let starts = segment.fast_fields().u64(schema::START)?;
        Ok(TraceSegmentCollector {
            ids,
            starts,
            alive: self.alive.clone(),
            by_ord: HashMap::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<TraceMap>) -> tantivy::Result<TraceMap> {
        let mut out = TraceMap::new();
        for f in fruits {
            merge_min(&mut out, f);
        }
        Ok(out)
    }
}

impl SegmentCollector for TraceSegmentCollector {
    type Fruit = TraceMap;

    fn collect(&mut self, doc: DocId, _: Score) {
        let Some(ids) = &self.ids else { return };
        let Some(ord) = ids.ords().first(doc) else {
            return;
        };
        let start = self.starts.first(doc).unwrap_or(0);
        self.by_ord
            .entry(ord)
            .and_modify(|s| *s = (*s).min(start))
            .or_insert(start);
    }

    fn harvest(self) -> TraceMap {
        let mut out = TraceMap::with_capacity(self.by_ord.len());
        let Some(ids) = &self.ids else { return out };
        // Sorted ordinals decode the dictionary in one forward pass, block by block.
        let mut ords: Vec<(u64, u64)> = self.by_ord.into_iter().collect();
        ords.sort_unstable();
        let sorted: Vec<u64> = ords.iter().map(|&(ord, _)| ord).collect();
        let mut starts = ords.iter().map(|&(_, start)| start);
        let alive = self.alive.as_deref();
        let result = ids.dictionary().sorted_ords_to_term_cb(&sorted, |bytes| {
            let start = starts.next().unwrap_or(0);
            let Ok(id) = <[u8; 16]>::try_from(bytes) else {
                return;
            };
            if alive.is_none_or(|a| a.contains_key(&id)) {
                out.insert(id, start);
            }
        });
        if let Err(e) = result {
            tracing::warn!(error = %e, "failed to read trace ids of an index segment");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::fixtures::{checkout_trace, now_unix_nano, trace_id};
    use crate::embedded::config::EmbeddedIndexConfig;
    use crate::embedded::tantivy_index::TantivyTraceIndex;
    use crate::{Common, TraceIndex};

    /// Paging through a multi-group query gives the same pages whether the first group's
    /// candidates are checked in tiny chunks (early stop, many chunk boundaries) or all at
    /// once — including a condition on another span with an earlier start than the first
    /// group's, and ties on the start time.
    #[tokio::test]
    async fn chunked_intersection_pages_like_one_pass() {
        let dir = tempfile::tempdir().unwrap();
        let common = Common {
            data_dir: dir.path().to_path_buf(),
            retention: crate::RetentionClasses::uniform(7),
            indexed_attributes: vec!["db.system".into()],
        };
        let index = TantivyTraceIndex::open(&EmbeddedIndexConfig::default(), &common).unwrap();
        let base = now_unix_nano() - 3_600_000_000_000;
        let mut spans = Vec::new();
        for i in 0..120u64 {
            // 40 distinct start times: many traces share one.
            let start = base + (i * 7919 % 40) * 1_000_000_000;
            let mut trace = checkout_trace(trace_id(i + 1), &format!("o{i}"), start, i % 3 != 1);
            // The failing db span starts a varying while after the root, so the order of
            // the first group's starts differs from the order of the traces' keys.
            let db = &mut trace[3];
            let shift = (i * 37 % 50) * 1_000_000_000;
            db.start_unix_nano += shift;
            db.end_unix_nano += shift;
            spans.extend(trace);
        }
        index.index_spans(spans.into()).await.unwrap();
        index.refresh().await.unwrap();

        let queries = [
            // errors (on the db span, 3 ms after the root) + a service of the root span
            TraceQuery {
                service: Some("frontend".into()),
                errors_only: true,
                ..Default::default()
            },
            TraceQuery {
                service: Some("checkout".into()),
                errors_only: true,
                attributes: vec![("db.system".into(), "postgresql".into())],
                text: Some("declined".into()),
                ..Default::default()
            },
        ];
        for base_query in queries {
            for limit in [4, 30] {
                let pages = |chunk: usize| {
                    let mut all = Vec::new();
                    let mut q = TraceQuery {
                        limit,
                        ..base_query.clone()
                    };
                    loop {
                        let page =
                            find_chunked(&index.shared, &Tenant::default(), &q, chunk).unwrap();
                        all.push(page.hits.clone());
                        match page.next_cursor {
                            Some(c) => q.cursor = Some(c),
                            None => break,
                        }
                    }
                    all
                };
                let reference = pages(usize::MAX);
                let total: usize = reference.iter().map(Vec::len).sum();
                assert_eq!(total, 80, "{base_query:?} limit {limit}");
                for chunk in [1, 5, 32] {
                    assert_eq!(
                        pages(chunk),
                        reference,
                        "{base_query:?} limit {limit} chunk {chunk}"
                    );
                }
            }
        }
    }
}
