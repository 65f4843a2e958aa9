//! Trace-level search over span documents in OpenSearch (`docs/adr/0008-opensearch-index.md`).
//!
//! Every condition must hold on *some* span of a trace, different conditions possibly on
//! different spans (a same-span group is one bool filter, so all its parts hold on the one
//! document of a span), and results are distinct traces ordered newest first by the start of
//! their earliest span that matches any condition (then by trace id). OpenSearch matches
//! documents, not groups of documents, so the search runs in two alternating steps:
//!
//! ```text
//!  plan: conditions ─▶ groups (what must hold on one span) ─▶ counts per group (1 request)
//!                      drive = the group with the fewest spans
//!  loop:
//!    scan   drive spans ∧ time range, sorted (start, trace id) desc, search_after
//!           ─▶ new candidate trace ids
//!    verify candidates: terms(trace_id) aggregation over (ids ∧ time ∧ any group), with
//!           per group a filter count and the earliest matching span (top_hits, exact ns)
//!           ─▶ trace passes iff every group counted ≥ 1; its key = earliest start
//!    until limit + 1 passing traces lie above the scan position, or the scan ends
//! ```
//!
//! Why that is exact: every matching trace has a drive span, and its key is at most that
//! span's start. Once the scan has passed position `(p, id)`, any trace not seen yet has
//! all its drive spans below it, so its `(key, id)` is below it too: every result above
//! the scan position is known, with its exact key from the verify step. Paging uses the
//! same `(key, trace id)` as keyset cursor as the embedded index, so pages stay stable
//! under concurrent writes of older data.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use clew_proto::Tenant;
use reqwest::Method;
use serde_json::{json, Value};

use super::client::{Body, Client};
use super::document::{
    clamp_i64, tenant_filter, ATTRS, DURATION, ERROR, ERROR_TEXT, KEYS, OPERATION, SERVICE, START,
    TRACE_ID,
};
use crate::metrics as m;
use crate::trace_index::query_plan::{Condition, QueryPlan};
use crate::{Error, Result, TraceIdPage, TraceQuery};

/// Most spans one search may scan before it gives up as too broad.
pub const SCAN_BUDGET_SPANS: usize = 500_000;
/// Largest scan request (OpenSearch's default `index.max_result_window`).
const MAX_SCAN_BATCH: usize = 10_000;
/// Most trace ids verified by one request.
const MAX_VERIFY_IDS: usize = 1_000;

type Id = [u8; 16];

/// Where searches go: the alias over every daily index of this prefix, and missing
/// indices are no error (a fresh cluster has none yet).
pub fn search_path(alias: &str) -> String {
    format!("/{alias}/_search?ignore_unavailable=true&allow_no_indices=true")
}

/// The query clause of one planned condition.
fn clause(condition: &Condition) -> Value {
    let term = |field: &str, value: &str| json!({"term": {field: value}});
    match condition {
        Condition::ServiceOperation { service, operation } => json!({"bool": {"filter": [
            term(SERVICE, service), term(OPERATION, operation)
        ]}}),
        Condition::Service(s) => term(SERVICE, s),
        Condition::Operation(o) => term(OPERATION, o),
        Condition::Error => json!({"term": {ERROR: true}}),
        Condition::Duration { min, max } => {
            json!({"range": {DURATION: {"gte": clamp_i64(*min), "lte": clamp_i64(*max)}}})
        }
        Condition::Attribute(pair) => term(ATTRS, pair),
        Condition::BusinessKey(pair) => term(KEYS, pair),
        // Words, never query syntax: a `match` query with `and` over the same words the
        // documents were indexed with (see `document::to_document`).
        Condition::Words(words) => json!({"match": {ERROR_TEXT: {
            "query": words.join(" "),
            "operator": "and",
        }}}),
        // One bool filter: every part matches the one document of a span.
        Condition::SameSpan(parts) => {
            json!({"bool": {"filter": parts.iter().map(clause).collect::<Vec<_>>()}})
        }
    }
}

/// Runs `q` against the indices behind `alias`.
pub async fn find(
    client: &Client,
    alias: &str,
    tenant: &Tenant,
    q: &TraceQuery,
) -> Result<TraceIdPage> {
    let started = Instant::now();
    let plan = QueryPlan::new(q)?;
    if plan.empty_time_range() {
        return Ok(TraceIdPage::default());
    }
    let limit = plan.limit;
    let groups: Vec<Value> = plan.conditions.iter().map(clause).collect();
    let lo = plan.start_min_unix_nano;
    let hi = plan.start_max_unix_nano; // exclusive
    let time = plan.has_time_range().then(|| {
        let mut range = serde_json::Map::new();
        if let Some(lo) = lo {
            range.insert("gte".into(), json!(clamp_i64(lo)));
        }
        if let Some(hi) = hi {
            range.insert("lt".into(), json!(clamp_i64(hi)));
        }
        json!({"range": {START: range}})
    });
    let search = Search {
        client,
        path: search_path(alias),
        groups,
        tenant: tenant_filter(tenant),
        time,
    };

    let drive = match search.groups.len() {
        0 => json!({"match_all": {}}),
        1 => search.groups[0].clone(),
        _ => match search.most_selective_group().await? {
            Some(i) => search.groups[i].clone(),
            None => return Ok(TraceIdPage::default()),
        },
    };

    let mut verified: HashMap<Id, Option<u64>> = HashMap::new();
    // Passing traces below the cursor, as (key, id).
    let mut found: Vec<(u64, Id)> = Vec::new();
    let mut after: Option<(i64, String)> = None;
    let mut batch = ((limit + 1) * 10).clamp(100, MAX_SCAN_BATCH);
    let mut scanned = 0usize;
    let complete_above = loop {
        let hits = search.scan(&drive, batch, after.as_ref()).await?;
        scanned += hits.len();
        let exhausted = hits.len() < batch;
        let mut fresh: Vec<Id> = Vec::new();
        let mut fresh_set: HashSet<Id> = HashSet::new();
        for (_, id) in &hits {
            if !verified.contains_key(id) && fresh_set.insert(*id) {
                fresh.push(*id);
            }
        }
        for ids in fresh.chunks(search.verify_chunk()) {
            let keys = search.verify(ids).await?;
            for id in ids {
                let key = keys.get(id).copied();
                verified.insert(*id, key);
                if let Some(key) = key {
                    if plan.below_cursor(&(key, *id)) {
                        found.push((key, *id));
                    }
                }
            }
        }
        let position = hits.last().map(|(start, id)| (*start, *id));
        let complete_above = if exhausted { None } else { position };
        let complete = found
            .iter()
            .filter(|k| complete_above.is_none_or(|p| **k > p))
            .count();
        if exhausted || complete > limit {
            break complete_above;
        }
        if scanned >= SCAN_BUDGET_SPANS {
            return Err(Error::InvalidRequest(format!(
                "the search scanned {scanned} spans without completing a page: add conditions or narrow the time range"
            )));
        }
        after = hits
            .last()
            .map(|(start, id)| (clamp_i64(*start), hex::encode(id)));
        batch = (batch * 2).min(MAX_SCAN_BATCH);
    };

    let hits: Vec<(u64, Id)> = found
        .into_iter()
        .filter(|k| complete_above.is_none_or(|p| *k > p))
        .collect();
    metrics::histogram!(m::INDEX_SEARCH_SECONDS, "backend" => "opensearch")
        .record(started.elapsed().as_secs_f64());
    Ok(plan.page(hits))
}

struct Search<'a> {
    client: &'a Client,
    path: String,
    groups: Vec<Value>,
    /// The caller's tenant (`document::tenant_filter`), a filter of every request.
    tenant: Value,
    time: Option<Value>,
}

impl Search<'_> {
    async fn post(&self, body: Value) -> Result<Value> {
        self.client
            .send(
                "index search failed",
                Method::POST,
                &self.path,
                &Body::Json(body),
            )
            .await
    }

    /// `clause`, the time range and the tenant: the filters of every request. The one
    /// place the tenant joins a search; it never comes from the query.
    fn filter(&self, clause: Value) -> Vec<Value> {
        let mut f = vec![clause, self.tenant.clone()];
        f.extend(self.time.clone());
        f
    }

    /// Index of the group matching the fewest spans in the time range; `None` when some
    /// group matches nothing (then no trace can match).
    async fn most_selective_group(&self) -> Result<Option<usize>> {
        let filters: serde_json::Map<String, Value> = self
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| (i.to_string(), g.clone()))
            .collect();
        let query = json!({"bool": {"filter": self.filter(json!({"match_all": {}}))}});
        let answer = self
            .post(json!({
                "size": 0,
                "track_total_hits": false,
                "query": query,
                "aggs": {"g": {"filters": {"filters": filters}}},
            }))
            .await?;
        let buckets = &answer["aggregations"]["g"]["buckets"];
        let mut best: Option<(u64, usize)> = None;
        for i in 0..self.groups.len() {
            // No aggregations at all: no index exists yet.
            let count = buckets[i.to_string()]["doc_count"].as_u64().unwrap_or(0);
            if best.is_none_or(|(c, _)| count < c) {
                best = Some((count, i));
            }
        }
        Ok(best.filter(|(c, _)| *c > 0).map(|(_, i)| i))
    }

    /// One page of drive spans below `after`, newest first: `(start, trace id)`.
    async fn scan(
        &self,
        drive: &Value,
        size: usize,
        after: Option<&(i64, String)>,
    ) -> Result<Vec<(u64, Id)>> {
        let mut body = json!({
            "size": size,
            "_source": false,
            "track_total_hits": false,
            "query": {"bool": {"filter": self.filter(drive.clone())}},
            "sort": [{START: {"order": "desc"}}, {TRACE_ID: {"order": "desc"}}],
        });
        if let Some((start, id)) = after {
            body["search_after"] = json!([start, id]);
        }
        let answer = self.post(body).await?;
        let hits = answer["hits"]["hits"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        hits.iter()
            .map(|h| {
                let sort = &h["sort"];
                let start = sort[0].as_i64().ok_or_else(|| bad_answer("sort value"))?;
                let id = parse_id(sort[1].as_str())?;
                Ok((start.max(0) as u64, id))
            })
            .collect()
    }

    fn verify_chunk(&self) -> usize {
        // Buckets per request stay far below OpenSearch's `search.max_buckets` (65 535).
        (60_000 / (self.groups.len() + 2)).min(MAX_VERIFY_IDS)
    }

    /// The key (earliest start of a span matching any group) of each of `ids` that has a
    /// span matching every group within the time range.
    async fn verify(&self, ids: &[Id]) -> Result<HashMap<Id, u64>> {
        let hex_ids: Vec<String> = ids.iter().map(hex::encode).collect();
        let mut bool_query = json!({"filter": self.filter(json!({"terms": {TRACE_ID: hex_ids}}))});
        if !self.groups.is_empty() {
            bool_query["should"] = json!(self.groups);
            bool_query["minimum_should_match"] = json!(1);
        }
        let mut per_trace = json!({
            "first": {"top_hits": {
                "size": 1,
                "_source": false,
                "sort": [{START: {"order": "asc"}}],
            }}
        });
        // With one group every document of the bucket matches it.
        if self.groups.len() > 1 {
            for (i, g) in self.groups.iter().enumerate() {
                per_trace[format!("g{i}")] = json!({"filter": g});
            }
        }
        let answer = self
            .post(json!({
                "size": 0,
                "track_total_hits": false,
                "query": {"bool": bool_query},
                "aggs": {"t": {
                    "terms": {"field": TRACE_ID, "size": ids.len(), "execution_hint": "map"},
                    "aggs": per_trace,
                }},
            }))
            .await?;
        let mut out = HashMap::new();
        let Some(buckets) = answer["aggregations"]["t"]["buckets"].as_array() else {
            return Ok(out);
        };
        for b in buckets {
            let all = (0..self.groups.len()).all(|i| {
                self.groups.len() == 1 || b[format!("g{i}")]["doc_count"].as_u64() > Some(0)
            });
            if !all {
                continue;
            }
            let id = parse_id(b["key"].as_str())?;
            let start = b["first"]["hits"]["hits"][0]["sort"][0]
                .as_i64()
                .ok_or_else(|| bad_answer("earliest start"))?;
            out.insert(id, start.max(0) as u64);
        }
        Ok(out)
    }
}

fn parse_id(hex_id: Option<&str>) -> Result<Id> {
    hex_id
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| <Id>::try_from(b).ok())
        .ok_or_else(|| bad_answer("trace id"))
}

fn bad_answer(what: &str) -> Error {
    Error::corrupt(
        "opensearch search answer",
        format!("missing or malformed {what}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::trace_index::query_plan::MAX_TEXT_BYTES;

    /// The clauses of `q`, one per group.
    fn plan(q: &TraceQuery) -> Result<Vec<Value>> {
        Ok(QueryPlan::new(q)?.conditions.iter().map(clause).collect())
    }

    #[test]
    fn plan_makes_one_group_per_condition_and_text_is_words() {
        let q = TraceQuery {
            service: Some("payments".into()),
            operation: Some("Charge".into()),
            errors_only: true,
            min_duration_nanos: Some(5),
            business_keys: vec![("order_id".into(), "A-1".into())],
            attributes: vec![("db.system".into(), "postgresql".into())],
            text: Some("\"a:b OR (c".into()),
            ..Default::default()
        };
        let groups = plan(&q).unwrap();
        assert_eq!(groups.len(), 6);
        assert_eq!(groups[1], json!({"term": {"error": true}}));
        assert_eq!(
            groups[2],
            json!({"range": {"duration": {"gte": 5, "lte": i64::MAX}}})
        );
        assert_eq!(groups[4], json!({"term": {"keys": "order_id=A-1"}}));
        assert_eq!(groups[5]["match"]["error_text"]["query"], "a b or c");
        let only_syntax = TraceQuery {
            text: Some("* \\".into()),
            ..Default::default()
        };
        assert!(
            plan(&only_syntax).unwrap().is_empty(),
            "no words, no condition"
        );
        let long = TraceQuery {
            text: Some("x".repeat(MAX_TEXT_BYTES + 1)),
            ..Default::default()
        };
        assert!(matches!(plan(&long), Err(Error::InvalidRequest(_))));
        let backwards = TraceQuery {
            min_duration_nanos: Some(2),
            max_duration_nanos: Some(1),
            ..Default::default()
        };
        assert!(matches!(plan(&backwards), Err(Error::InvalidRequest(_))));
    }
}
