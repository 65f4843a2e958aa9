//! Trace-level search over span documents.
//!
//! Every condition of a [`TraceQuery`] must hold on *some* span of a trace, not on one
//! span. So the query is cut into condition groups by the shared
//! `trace_index::query_plan` (one group = what must hold on one span: `service`+`operation`,
//! `min`+`max` duration, each attribute, each business key, errors, text, and each
//! same-span entry, whose parts are one boolean conjunction over the one document of a
//! span), each restricted to the time range. The groups are ordered most selective first
//! (estimated from term document frequencies). A trace's sort key is `(earliest start of a
//! span matching any group in the range, trace id)`; pages are newest first by that key
//! and a cursor is the last key of a page (`trace_index::cursor`, `QueryPlan::page`).
//!
//! # How a search walks time
//!
//! A page of 20 out of a window holding tens of thousands of matches should cost the page,
//! not the window. So [`find`] walks the range newest first, in slices:
//!
//! ```text
//!   range [lo ─────────────────────────────────────────────── hi)   (hi: newest start indexed)
//!          … ◀──────── slice 3 ────────▶◀─ slice 2 ─▶◀ slice 1 ▶
//!   slice 1 is sized to hold SLICE_PAGES pages of the first group's spans (estimated from
//!   its document frequency and the data's time span), every older slice twice the one
//!   before
//!
//!   per slice [a, b):
//!     1. the first group over [a, b) only ─▶ trace ids not seen in a newer slice
//!        (segments whose `start` column min/max lies outside [a, b) are not searched)
//!     2. resolve those ids over the WHOLE range: their own span documents (trace-id
//!        postings, ~20 per trace) checked against every group ─▶ each trace's true key,
//!        or dropped when a group holds on none of its spans
//!     3. stop when more than `limit` hits below the cursor have keys ≥ a
//! ```
//!
//! Why this gives exactly the one-pass answer:
//!
//! - A trace first found in a slice may have an earlier matching span in an older slice
//!   (its key then drops below the slice), or its other groups may hold only on spans in
//!   other slices. Step 2 looks at all of its spans in the range, so the key is the one a
//!   pass over the whole range gives.
//! - A trace not seen yet has no first-group span at or after `a` (its first-group spans in
//!   the range are all older), so its key is below `a`. Once more than a page of hits have
//!   keys `≥ a`, no unseen trace can enter the page nor decide whether another page follows.
//!   Slices are half-open, so ties on a start at a slice boundary land in one slice, and
//!   ties are broken by trace id when the hits are sorted.
//! - A cursor does not move the walk's start: a trace below the cursor can have its
//!   first-group span above it. Deeper pages walk further, each page a few slices more.
//! - Without a lower bound the walk ends at the oldest start indexed; without an upper one
//!   it begins at the newest. Empty slices cost a look at the segments' min/max each.
//!
//! Cost: step 1 is tantivy's search of the first group in the segments of the slice, and
//! the trace ids of its matches, read by ordinal from the trace-id term dictionary; step 2
//! is one trace-id term lookup per candidate per segment plus a seek per group per span
//! document. Both grow with the candidates walked, i.e. with the page, not with the range.
//! Each partition keeps its segments' `start` and trace-id columns open
//! ([`SegmentColumns`]): opening the start column decodes its whole block index, which
//! cost more than a slice's search. (Before, the first group ran over the whole range and
//! the others filtered its candidates through a term set of up to 4,096 trace ids: at 3M
//! spans in 15 minutes, 41 % of a search went to harvesting every error's trace id and 40 %
//! to that term set; `BENCHMARKS.md`, issue 13.) The whole-range search is kept
//! ([`find_chunked`]) as the reference the walk is tested against and as a benchmark's
//! baseline ([`set_search_walk`]); it is also what a search gets when some segment lacks
//! the `start` column, since such a segment cannot be placed in time.
//!
//! **Tenants.** Every search of a partition that has the `tenant` field gets
//! `+tenant:<tenant>` next to its group, in one place ([`Search::with_tenant`]); the tenant is an
//! argument, never a condition of the plan, so no query text reaches it. A partition
//! created before tenants (no such field) holds tenant `default` only: it is searched for
//! `default` without the clause and skipped for every other tenant.

use std::collections::{HashMap, HashSet};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use clew_proto::Tenant;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{BytesColumn, Column};
use tantivy::index::{InvertedIndexReader, SegmentId};
use tantivy::query::{
    AllQuery, BooleanQuery, EnableScoring, Occur, Query, RangeQuery, TermQuery, TermSetQuery,
};
use tantivy::schema::IndexRecordOption;
use tantivy::{DocId, DocSet, Score, Searcher, SegmentOrdinal, SegmentReader, Term, TERMINATED};

use super::document::service_operation_term;
use super::schema::{self, Fields};
use super::writer::Shared;
use crate::trace_index::cursor::Key;
use crate::trace_index::query_plan::{Condition, QueryPlan};
use crate::{Error, Result, TraceIdPage, TraceQuery};

/// Candidates of the first group are checked against the other groups this many at a
/// time, with a term-set filter on their trace ids.
const TERM_SET_FILTER_MAX: usize = 4096;

/// The newest slice of the time range is sized to hold this many pages of the first
/// group's spans, were they spread evenly over the data's time; each older slice is twice
/// as wide as the one before.
const SLICE_PAGES: u64 = 4;

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
    if WHOLE_RANGE.load(Ordering::Relaxed) {
        return find_chunked(shared, tenant, q, TERM_SET_FILTER_MAX);
    }
    find_walking(shared, tenant, q, None)
}

/// [`find`] walking the time range newest first, slice by slice; the first slice is
/// `first_slice` nanoseconds wide when given, else sized from the first group's estimate.
fn find_walking(
    shared: &Shared,
    tenant: &Tenant,
    q: &TraceQuery,
    first_slice: Option<u64>,
) -> Result<TraceIdPage> {
    let plan = QueryPlan::new(q)?;
    if plan.empty_time_range() {
        return Ok(TraceIdPage::default());
    }
    let search = Search::new(shared, tenant, &plan);
    let Some(data) = search.data_starts() else {
        // A segment without start times cannot be skipped by time: search it whole.
        return find_chunked(shared, tenant, q, TERM_SET_FILTER_MAX);
    };
    let groups = search.most_selective_first(&plan);
    let range = search.range.unwrap_or(Starts::ALL);
    // Only starts that some document has: the walk begins at the newest one.
    let lo = range.lo.max(data.lo);
    let hi = range.hi.min(data.hi);
    if lo >= hi {
        return Ok(TraceIdPage::default());
    }
    let mut width = first_slice
        .unwrap_or_else(|| search.first_slice_width(&groups[0], data, plan.limit))
        .max(1);
    let mut seen: HashSet<[u8; 16]> = HashSet::new();
    let mut hits: Vec<Key> = Vec::new();
    let mut b = hi;
    loop {
        let a = b.saturating_sub(width).max(lo);
        let slice = Starts { lo: a, hi: b };
        let found = search.run_in(&groups[0], slice)?;
        if (a, b, groups.len()) == (lo, hi, 1) {
            // One slice over the whole range and one group: its starts are the keys.
            hits.extend(
                found
                    .into_iter()
                    .map(|(id, start)| (start, id))
                    .filter(|key| plan.below_cursor(key)),
            );
            break;
        }
        let mut candidates: Vec<[u8; 16]> =
            found.into_keys().filter(|id| seen.insert(*id)).collect();
        candidates.sort_unstable();
        // A candidate's key is its earliest matching start over the whole range, which
        // can lie in an older slice (or in a newer one for the other groups): resolve it
        // over the whole range, by its trace id.
        hits.extend(
            search
                .resolve(&candidates, &groups, range)?
                .into_iter()
                .filter(|key| plan.below_cursor(key)),
        );
        if a == lo {
            break;
        }
        // Every trace not seen yet has all its first-group spans (in range) before `a`,
        // so its key is below `a`: once more than a page of hits is at or above it, the
        // page and whether another follows are certain.
        if hits.iter().filter(|&&(start, _)| start >= a).count() > plan.limit {
            break;
        }
        b = a;
        width = width.saturating_mul(2);
    }
    Ok(plan.page(hits))
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

/// Span starts `[lo, hi)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Starts {
    lo: u64,
    /// Exclusive; `u64::MAX` stands for "no upper bound" (no span starts then: ingest
    /// refuses spans starting more than a day ahead).
    hi: u64,
}

impl Starts {
    const ALL: Starts = Starts {
        lo: 0,
        hi: u64::MAX,
    };

    fn contains(&self, start: u64) -> bool {
        self.lo <= start && start < self.hi
    }

    /// Whether a segment whose starts lie in `[min, max]` can hold one of these.
    fn overlaps(&self, (min, max): (u64, u64)) -> bool {
        self.lo <= max && min < self.hi
    }

    fn query(&self, f: &Fields) -> Box<dyn Query> {
        Box::new(RangeQuery::new(
            Bound::Included(Term::from_field_u64(f.start, self.lo)),
            if self.hi == u64::MAX {
                Bound::Unbounded
            } else {
                Bound::Excluded(Term::from_field_u64(f.start, self.hi))
            },
        ))
    }
}

/// The columns a search reads of one segment.
struct Columns {
    starts: Column<u64>,
    /// `None` when no document of the segment has a trace id.
    ids: Option<BytesColumn>,
    /// The trace-id terms of the inverted index, when they are exactly the trace ids of
    /// the column's dictionary (same count; both sorted): then a column ordinal is a term
    /// ordinal, and the term dictionary (an FST) turns it into the trace id without the
    /// column dictionary's zstd blocks, each decompressed with a fresh context.
    terms: Option<Arc<InvertedIndexReader>>,
    /// The least and greatest start.
    bounds: (u64, u64),
}

/// A partition's [`Columns`] by segment, opened once per segment rather than once per
/// search: opening the start column decodes its whole block index (blockwise-linear
/// codec; ~20,000 blocks for a segment of 10M spans), which cost more than a slice's search.
#[derive(Default)]
pub struct SegmentColumns(Mutex<HashMap<SegmentId, Option<Arc<Columns>>>>);

impl SegmentColumns {
    /// The columns of each segment of `searcher` (by ordinal); `None` for a segment
    /// without a start column. Forgets segments `searcher` no longer has.
    fn of(&self, searcher: &Searcher) -> Vec<Option<Arc<Columns>>> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let segments = searcher.segment_readers();
        map.retain(|id, _| segments.iter().any(|s| s.segment_id() == *id));
        segments
            .iter()
            .map(|segment| {
                map.entry(segment.segment_id())
                    .or_insert_with(|| {
                        let fast = segment.fast_fields();
                        let starts = fast.u64(schema::START).ok()?;
                        let ids = fast.bytes(schema::TRACE_ID).ok().flatten();
                        let terms = segment
                            .schema()
                            .get_field(schema::TRACE_ID)
                            .ok()
                            .and_then(|field| segment.inverted_index(field).ok())
                            .filter(|inverted| {
                                ids.as_ref().map(|i| i.dictionary().num_terms())
                                    == Some(inverted.terms().num_terms())
                            });
                        let bounds = (starts.min_value(), starts.max_value());
                        Some(Arc::new(Columns {
                            starts,
                            ids,
                            terms,
                            bounds,
                        }))
                    })
                    .clone()
            })
            .collect()
    }
}

/// One day partition as a search sees it.
struct Partition {
    searcher: Searcher,
    /// The partition has the `tenant` field (and so needs the tenant clause).
    tenanted: bool,
    /// Per segment (by ordinal).
    columns: Vec<Option<Arc<Columns>>>,
}

/// One search over the day partitions of the plan's time range, for one tenant.
struct Search<'a> {
    fields: &'a Fields,
    /// The partitions the tenant can have documents in.
    searchers: Vec<(Searcher, bool)>,
    partitions: Vec<Partition>,
    /// `+tenant:<tenant>`.
    tenant: Term,
    /// The plan's time range, when it has one.
    range: Option<Starts>,
}

impl<'a> Search<'a> {
    fn new(shared: &'a Shared, tenant: &Tenant, plan: &QueryPlan) -> Self {
        let f = &shared.fields;
        let lo = plan.start_min_unix_nano.unwrap_or(0);
        let hi = plan.start_max_unix_nano; // exclusive
        let last_day = hi.map_or(u32::MAX, |hi| schema::day_of(hi - 1));
        let partitions = shared.snapshot(schema::day_of(lo)..=last_day);
        let partitions: Vec<Partition> = partitions
            .iter()
            .filter(|p| p.tenanted || tenant.is_default())
            .map(|p| {
                let searcher = p.reader.searcher();
                Partition {
                    columns: p.columns.of(&searcher),
                    searcher,
                    tenanted: p.tenanted,
                }
            })
            .collect();
        let searchers = partitions
            .iter()
            .map(|p| (p.searcher.clone(), p.tenanted))
            .collect();
        let range = plan.has_time_range().then_some(Starts {
            lo,
            hi: hi.unwrap_or(u64::MAX),
        });
        Search {
            fields: f,
            searchers,
            partitions,
            tenant: Term::from_field_text(f.tenant, tenant.as_str()),
            range,
        }
    }

    /// The starts of every document searched, `[least, greatest + 1)`; `None` when a
    /// segment has no start column (and so cannot be placed in time).
    fn data_starts(&self) -> Option<Starts> {
        let mut data = Starts {
            lo: u64::MAX,
            hi: 0,
        };
        for p in &self.partitions {
            for columns in &p.columns {
                let (min, max) = columns.as_ref()?.bounds;
                data.lo = data.lo.min(min);
                data.hi = data.hi.max(max.saturating_add(1));
            }
        }
        Some(data)
    }

    /// The width of the newest slice: what should hold a few pages of the first group's
    /// spans if they were spread evenly over the data's time.
    fn first_slice_width(&self, first: &Group, data: Starts, limit: usize) -> u64 {
        let docs: u64 = self
            .searchers
            .iter()
            .map(|(s, _)| s.num_docs())
            .sum::<u64>()
            .max(1);
        let matching = first.estimate(&self.searchers).clamp(1, docs);
        let wanted = (SLICE_PAGES * (limit as u64 + 1)) as u128;
        let span = data.hi.saturating_sub(data.lo) as u128;
        (span * wanted / matching as u128).min(u64::MAX as u128) as u64
    }

    /// `query` on a partition, with the tenant clause where it records tenants: the one
    /// place the tenant joins a search, a mandatory clause of its own.
    fn with_tenant(&self, query: Box<dyn Query>, tenanted: bool) -> Box<dyn Query> {
        if !tenanted {
            return query;
        }
        Box::new(BooleanQuery::new(vec![
            (Occur::Must, query),
            (
                Occur::Must,
                Box::new(TermQuery::new(
                    self.tenant.clone(),
                    IndexRecordOption::Basic,
                )),
            ),
        ]))
    }

    /// `trace id → earliest start in `starts`` of the traces with a span matching `group`
    /// there. Segments whose starts all lie outside are not searched at all.
    fn run_in(&self, group: &Group, starts: Starts) -> Result<TraceMap> {
        let fail = |e: tantivy::TantivyError| Error::unavailable("index search failed", e);
        let mut found = TraceMap::new();
        for p in &self.partitions {
            let weight = self
                .with_tenant(group.query(self.fields), p.tenanted)
                .weight(EnableScoring::disabled_from_searcher(&p.searcher))
                .map_err(fail)?;
            for (segment, columns) in p.searcher.segment_readers().iter().zip(&p.columns) {
                let Some(columns) = columns.as_ref().filter(|c| starts.overlaps(c.bounds)) else {
                    continue;
                };
                // The time range is checked on each matching document's start as it is
                // collected: no range query, which would open the start column again.
                let mut collector = TraceSegmentCollector {
                    ids: columns.ids.clone(),
                    terms: columns.terms.clone(),
                    starts: columns.starts.clone(),
                    within: starts,
                    alive: None,
                    by_ord: HashMap::new(),
                };
                let deleted = segment.alive_bitset();
                weight
                    .for_each_no_score(segment, &mut |docs| {
                        for &doc in docs {
                            if deleted.is_none_or(|d| d.is_alive(doc)) {
                                collector.collect(doc, 0.0);
                            }
                        }
                    })
                    .map_err(fail)?;
                merge_min(&mut found, collector.harvest());
            }
        }
        Ok(found)
    }

    /// The keys of those of `ids` (sorted) that match every group in `range`: each
    /// trace's earliest start of a span matching any group there. Reads only the span
    /// documents of these traces (their trace-id postings), checking each group's
    /// matches at those documents.
    fn resolve(&self, ids: &[[u8; 16]], groups: &[Group], range: Starts) -> Result<Vec<Key>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let fail = |e: &dyn std::fmt::Display| Error::unavailable("index search failed", e);
        let f = self.fields;
        // earliest[i * groups + g]: trace i's earliest start matching group g.
        let mut earliest = vec![u64::MAX; ids.len() * groups.len()];
        for p in &self.partitions {
            let weights = groups
                .iter()
                .map(|g| {
                    self.with_tenant(g.query(f), p.tenanted)
                        .weight(EnableScoring::disabled_from_searcher(&p.searcher))
                })
                .collect::<tantivy::Result<Vec<_>>>()
                .map_err(|e| fail(&e))?;
            for (segment, columns) in p.searcher.segment_readers().iter().zip(&p.columns) {
                let Some(columns) = columns.as_ref().filter(|c| range.overlaps(c.bounds)) else {
                    continue;
                };
                let inverted = segment.inverted_index(f.trace_id).map_err(|e| fail(&e))?;
                let mut docs: Vec<(DocId, usize)> = Vec::new();
                for (i, id) in ids.iter().enumerate() {
                    let term = Term::from_field_bytes(f.trace_id, id);
                    let Some(mut postings) = inverted
                        .read_postings(&term, IndexRecordOption::Basic)
                        .map_err(|e| fail(&e))?
                    else {
                        continue;
                    };
                    while postings.doc() != TERMINATED {
                        docs.push((postings.doc(), i));
                        postings.advance();
                    }
                }
                if docs.is_empty() {
                    continue;
                }
                docs.sort_unstable();
                let starts = &columns.starts;
                let alive = segment.alive_bitset();
                let mut scorers = weights
                    .iter()
                    .map(|w| w.scorer(segment, 1.0))
                    .collect::<tantivy::Result<Vec<_>>>()
                    .map_err(|e| fail(&e))?;
                for (doc, i) in docs {
                    if alive.is_some_and(|a| a.is_deleted(doc)) {
                        continue;
                    }
                    let start = starts.first(doc).unwrap_or(0);
                    if !range.contains(start) {
                        continue;
                    }
                    for (g, scorer) in scorers.iter_mut().enumerate() {
                        if scorer.doc() < doc {
                            scorer.seek(doc);
                        }
                        if scorer.doc() == doc {
                            let e = &mut earliest[i * groups.len() + g];
                            *e = (*e).min(start);
                        }
                    }
                }
            }
        }
        Ok(ids
            .iter()
            .zip(earliest.chunks(groups.len()))
            .filter(|(_, starts)| starts.iter().all(|&s| s != u64::MAX))
            .map(|(id, starts)| (starts.iter().copied().min().unwrap_or(0), *id))
            .collect())
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
        if let Some(range) = &self.range {
            must.push((Occur::Must, range.query(f)));
        }
        if let Some(alive) = &alive {
            let ids = alive
                .keys()
                .map(|id| Term::from_field_bytes(f.trace_id, id));
            must.push((Occur::Must, Box::new(TermSetQuery::new(ids))));
        }
        let query: Box<dyn Query> = if must.len() == 1 {
            must.pop().expect("one").1
        } else {
            Box::new(BooleanQuery::new(must))
        };
        let collector = TraceCollector {
            alive: alive.clone(),
        };
        let mut found = TraceMap::new();
        for (searcher, tenanted) in &self.searchers {
            let query = self.with_tenant(query.box_clone(), *tenanted);
            let part = searcher
                .search(&*query, &collector)
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
    /// [`Columns::terms`]: where trace ids are read from when present.
    terms: Option<Arc<InvertedIndexReader>>,
    starts: Column<u64>,
    /// Only documents starting in here count.
    within: Starts,
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
            terms: None,
            starts,
            within: Starts::ALL,
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
        if !self.within.contains(start) {
            return;
        }
        self.by_ord
            .entry(ord)
            .and_modify(|s| *s = (*s).min(start))
            .or_insert(start);
    }

    fn harvest(self) -> TraceMap {
        let mut out = TraceMap::with_capacity(self.by_ord.len());
        let Some(ids) = &self.ids else { return out };
        if let Some(terms) = &self.terms {
            let (terms, mut bytes) = (terms.terms(), Vec::with_capacity(16));
            for (ord, start) in self.by_ord {
                match terms.ord_to_term(ord, &mut bytes) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "failed to read a trace id of an index segment");
                        continue;
                    }
                }
                if let Ok(id) = <[u8; 16]>::try_from(bytes.as_slice()) {
                    if self.alive.as_ref().is_none_or(|a| a.contains_key(&id)) {
                        out.insert(id, start);
                    }
                }
            }
            return out;
        }
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
    use crate::conformance::fixtures::{
        checkout_trace, now_unix_nano, span, span_id, trace_id, with_exception,
    };
    use crate::embedded::config::EmbeddedIndexConfig;
    use crate::embedded::tantivy_index::TantivyTraceIndex;
    use crate::{Common, TraceIndex};

    /// A tantivy index in `dir` that indexes the `db.system` attribute.
    fn open_index(dir: &std::path::Path) -> TantivyTraceIndex {
        let common = Common {
            data_dir: dir.to_path_buf(),
            retention: crate::RetentionClasses::uniform(7),
            indexed_attributes: vec!["db.system".into()],
        };
        TantivyTraceIndex::open(&EmbeddedIndexConfig::default(), &common).unwrap()
    }

    /// Every page of `q`, following the cursor, as `find` answers them.
    fn all_pages(
        q: &TraceQuery,
        find: impl Fn(&TraceQuery) -> TraceIdPage,
    ) -> Vec<Vec<crate::TraceHit>> {
        let mut all = Vec::new();
        let mut q = q.clone();
        loop {
            let page = find(&q);
            all.push(page.hits.clone());
            match page.next_cursor {
                Some(c) => q.cursor = Some(c),
                None => break,
            }
        }
        all
    }

    /// Paging through a multi-group query gives the same pages whether the first group's
    /// candidates are checked in tiny chunks (early stop, many chunk boundaries) or all at
    /// once — including a condition on another span with an earlier start than the first
    /// group's, and ties on the start time.
    #[tokio::test]
    async fn chunked_intersection_pages_like_one_pass() {
        let dir = tempfile::tempdir().unwrap();
        let index = open_index(dir.path());
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
                let q = TraceQuery {
                    limit,
                    ..base_query.clone()
                };
                let pages = |chunk: usize| {
                    all_pages(&q, |q| {
                        find_chunked(&index.shared, &Tenant::default(), q, chunk).unwrap()
                    })
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

    /// The newest-first walk over time slices gives the same pages as one pass over the
    /// whole range, for slices far narrower than the traces (so most traces have matching
    /// spans in several slices): a trace first found by a late error span keeps the
    /// start of its earlier error span or of its earlier `frontend` span as its key; ties
    /// on the start break by trace id; empty slices (a ten-minute gap) are walked past;
    /// ranges without a lower bound, without any bound, and bounds that cut traces in two.
    #[tokio::test]
    async fn time_slices_page_like_one_pass() {
        let dir = tempfile::tempdir().unwrap();
        let index = open_index(dir.path());
        let sec = 1_000_000_000u64;
        let base = (now_unix_nano() - 3_600 * sec) / sec * sec;
        let mut spans = Vec::new();
        for i in 0..150u64 {
            let id = trace_id(i + 1);
            // Two clusters a gap apart; 40 distinct root starts, so many ties.
            let cluster = if i % 2 == 0 { 0 } else { 600 * sec };
            let start = base + cluster + (i * 7919 % 40) * sec;
            let mut trace = vec![
                span(id, span_id(1), None, "frontend", "GET /", start, sec),
                span(
                    id,
                    span_id(2),
                    Some(span_id(1)),
                    "frontend",
                    "render",
                    start + 50 * sec,
                    sec,
                ),
            ];
            // Error spans later than the root, some traces with two far apart (the first
            // found by the walk is not the earliest), some with none.
            if i % 3 != 1 {
                let at = start + (i * 37 % 30) * sec;
                trace.push(with_exception(
                    span(
                        id,
                        span_id(3),
                        Some(span_id(1)),
                        "payments",
                        "Charge",
                        at,
                        sec,
                    ),
                    "Declined",
                    "card declined",
                ));
                if i % 4 == 0 {
                    let later = at + (5 + i % 25) * sec;
                    trace.push(with_exception(
                        span(
                            id,
                            span_id(4),
                            Some(span_id(1)),
                            "payments",
                            "Retry",
                            later,
                            sec,
                        ),
                        "Declined",
                        "card declined again",
                    ));
                }
            }
            spans.extend(trace);
        }
        index.index_spans(spans.into()).await.unwrap();
        index.refresh().await.unwrap();

        let ranges = [
            (None, None),
            (None, Some(base + 620 * sec)),
            (Some(base + 12 * sec), None),
            (Some(base + 12 * sec), Some(base + 633 * sec)),
        ];
        for (lo, hi) in ranges {
            let queries = [
                // error is the first group; `frontend` often only on an earlier span
                TraceQuery {
                    service: Some("frontend".into()),
                    errors_only: true,
                    ..Default::default()
                },
                // one group: a trace's key is its earliest error span
                TraceQuery {
                    errors_only: true,
                    ..Default::default()
                },
                TraceQuery {
                    service: Some("payments".into()),
                    text: Some("declined".into()),
                    operation: Some("Charge".into()),
                    ..Default::default()
                },
                // no conditions: every trace, keyed by its root
                TraceQuery::default(),
            ];
            for base_query in queries {
                for limit in [3, 8, 200] {
                    let q = TraceQuery {
                        limit,
                        start_min_unix_nano: lo,
                        start_max_unix_nano: hi,
                        ..base_query.clone()
                    };
                    let pages = |find: &dyn Fn(&TraceQuery) -> TraceIdPage| all_pages(&q, find);
                    let tenant = Tenant::default();
                    let reference =
                        pages(&|q| find_chunked(&index.shared, &tenant, q, usize::MAX).unwrap());
                    assert!(
                        reference.iter().map(Vec::len).sum::<usize>() > 20,
                        "{q:?} finds enough to page through"
                    );
                    for first_slice in [Some(1_000), Some(sec), Some(3 * sec + 7), None] {
                        let walked = pages(&|q| {
                            find_walking(&index.shared, &tenant, q, first_slice).unwrap()
                        });
                        assert_eq!(walked, reference, "{q:?}, first slice {first_slice:?}");
                    }
                }
            }
        }
    }
}
