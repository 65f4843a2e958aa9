//! Writes: span documents in `_bulk` requests, with every item's outcome checked.
//!
//! ```text
//!  spans ─▶ SpanDoc + JSON (off the reactor) ─▶ chunks (≤ bulk_max_docs, ≤ bulk_max_bytes)
//!        ─▶ _bulk ─▶ per item: ok │ 429/5xx: retry that item (back-off) │ other 4xx: error
//! ```
//!
//! A `_bulk` answer of 200 says nothing about its items: each item has its own status.
//! Items refused for load (429, `es_rejected_execution_exception`) or by a failing shard
//! (5xx) are sent again, alone, with exponential back-off, up to [`MAX_ATTEMPTS`] times;
//! what still fails is a retryable [`Error::Unavailable`]. Items refused for what they
//! are (a mapping conflict: 400) are an [`Error::InvalidRequest`] naming the reason. The
//! call returns `Ok` only once every item was indexed: OpenSearch answered it after
//! writing it to the translog, which is fsynced per request (`translog.durability:
//! request`), so it survives a crash of the node.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::client::{describe_error_object, Body, Client};
use crate::metrics as m;
use crate::{Error, Result};

/// Attempts per document (the first one included) before giving up as unavailable.
pub const MAX_ATTEMPTS: u32 = 5;
/// First back-off; doubled per attempt (100, 200, 400, 800 ms).
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// One document ready to send: its action line and source line, newline-terminated.
pub struct Item {
    pub bytes: Vec<u8>,
}

impl Item {
    pub fn new(index: &str, id: &str, doc: &Value) -> Item {
        let action = serde_json::json!({"index": {"_index": index, "_id": id}});
        let mut bytes = serde_json::to_vec(&action).expect("json");
        bytes.push(b'\n');
        serde_json::to_writer(&mut bytes, doc).expect("json");
        bytes.push(b'\n');
        Item { bytes }
    }
}

/// Sends `items` in chunks and retries what the cluster refused for load; no retry starts
/// once `budget` has passed since the call began.
pub async fn bulk(
    client: &Client,
    items: Vec<Item>,
    max_docs: usize,
    max_bytes: usize,
    budget: Duration,
) -> Result<()> {
    let began = Instant::now();
    let mut pending: Vec<Item> = items;
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=MAX_ATTEMPTS {
        let mut retry = Vec::new();
        let mut rejected: Option<(usize, String)> = None;
        let mut last_retry_reason = String::new();
        for chunk in chunks(pending, max_docs, max_bytes) {
            let outcome = send_chunk(client, &chunk).await;
            match outcome {
                Ok(statuses) => {
                    for (item, status) in chunk.into_iter().zip(statuses) {
                        match status {
                            ItemStatus::Ok => {}
                            ItemStatus::Retry(reason) => {
                                last_retry_reason = reason;
                                retry.push(item);
                            }
                            ItemStatus::Rejected(reason) => {
                                let r = rejected.get_or_insert((0, reason));
                                r.0 += 1;
                            }
                        }
                    }
                }
                // The whole request failed retryably (node down, 429 on the request):
                // the chunk is sent again with the rest.
                Err(e) if e.is_retryable() => {
                    last_retry_reason = match e {
                        Error::Unavailable { message, .. } => message,
                        other => other.to_string(),
                    };
                    retry.extend(chunk);
                }
                Err(e) => return Err(e),
            }
        }
        if let Some((n, reason)) = rejected {
            // Rejected documents would be rejected again: report them, never drop them.
            return Err(Error::InvalidRequest(format!(
                "opensearch rejected {n} span document(s): {reason}"
            )));
        }
        if retry.is_empty() {
            return Ok(());
        }
        metrics::counter!(m::INDEX_RETRIES_TOTAL, "backend" => "opensearch")
            .increment(retry.len() as u64);
        if attempt == MAX_ATTEMPTS || began.elapsed() + backoff > budget {
            return Err(Error::unavailable(
                "failed to index span documents",
                format!(
                    "{} document(s) still refused after {attempt} attempt(s): {last_retry_reason}",
                    retry.len()
                ),
            ));
        }
        tracing::debug!(
            documents = retry.len(),
            attempt,
            reason = %last_retry_reason,
            "opensearch refused bulk items for now; retrying them"
        );
        tokio::time::sleep(backoff).await;
        backoff *= 2;
        pending = retry;
    }
    unreachable!("the last attempt returns")
}

/// Splits `items` into requests of at most `max_docs` documents and about `max_bytes`.
fn chunks(items: Vec<Item>, max_docs: usize, max_bytes: usize) -> Vec<Vec<Item>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for item in items {
        if !current.is_empty()
            && (current.len() >= max_docs || bytes + item.bytes.len() > max_bytes)
        {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += item.bytes.len();
        current.push(item);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[derive(Debug, PartialEq)]
enum ItemStatus {
    Ok,
    Retry(String),
    Rejected(String),
}

async fn send_chunk(client: &Client, chunk: &[Item]) -> Result<Vec<ItemStatus>> {
    let started = Instant::now();
    let body: Vec<u8> = chunk.iter().flat_map(|i| i.bytes.iter().copied()).collect();
    // Only what is needed to judge each item comes back.
    let answer = client
        .send(
            "failed to index span documents",
            Method::POST,
            "/_bulk?filter_path=errors,items.*.status,items.*.error",
            &Body::NdJson(body),
        )
        .await?;
    metrics::histogram!(m::INDEX_WRITE_SECONDS, "backend" => "opensearch")
        .record(started.elapsed().as_secs_f64());
    item_statuses(&answer, chunk.len())
}

/// Each item's outcome, in request order.
fn item_statuses(answer: &Value, expected: usize) -> Result<Vec<ItemStatus>> {
    let items = answer.get("items").and_then(Value::as_array);
    let errors = answer.get("errors").and_then(Value::as_bool);
    let Some(items) = items.filter(|i| i.len() == expected) else {
        return Err(Error::unavailable(
            "failed to index span documents",
            format!(
                "bulk answer lists {} items for {expected} documents",
                items.map_or(0, Vec::len)
            ),
        ));
    };
    if errors == Some(false) {
        return Ok(items.iter().map(|_| ItemStatus::Ok).collect());
    }
    Ok(items
        .iter()
        .map(|item| {
            // One key per item: the action ("index").
            let result = item.as_object().and_then(|o| o.values().next());
            let status = result
                .and_then(|r| r.get("status"))
                .and_then(Value::as_u64)
                .and_then(|s| StatusCode::from_u16(s as u16).ok());
            let reason = || {
                result
                    .and_then(|r| r.get("error"))
                    .map(describe_error_object)
                    .unwrap_or_else(|| "no reason given".into())
            };
            match status {
                Some(s) if s.is_success() => ItemStatus::Ok,
                Some(s) if s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() => {
                    ItemStatus::Retry(format!("{s}: {}", reason()))
                }
                Some(s) => ItemStatus::Rejected(format!("{s}: {}", reason())),
                None => ItemStatus::Retry(format!("item without a status: {}", reason())),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn items_are_judged_one_by_one() {
        let answer = json!({"errors": true, "items": [
            {"index": {"status": 201}},
            {"index": {"status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "rejected execution"}}},
            {"index": {"status": 400, "error": {"type": "strict_dynamic_mapping_exception", "reason": "mapping set to strict"}}},
            {"index": {"status": 503, "error": {"type": "unavailable_shards_exception", "reason": "primary shard is not active"}}},
            {"index": {"status": 200}},
        ]});
        let s = item_statuses(&answer, 5).unwrap();
        assert_eq!(s[0], ItemStatus::Ok);
        assert!(
            matches!(&s[1], ItemStatus::Retry(r) if r.contains("es_rejected_execution_exception"))
        );
        assert!(
            matches!(&s[2], ItemStatus::Rejected(r) if r.contains("strict_dynamic_mapping_exception"))
        );
        assert!(matches!(&s[3], ItemStatus::Retry(_)));
        assert_eq!(s[4], ItemStatus::Ok);
        assert!(
            item_statuses(&answer, 4).is_err(),
            "an item count mismatch is an error"
        );
        let ok = json!({"errors": false, "items": [{"index": {"status": 201}}]});
        assert_eq!(item_statuses(&ok, 1).unwrap(), [ItemStatus::Ok]);
    }

    #[test]
    fn chunks_respect_docs_and_bytes() {
        let item = |n: usize| Item {
            bytes: vec![b'x'; n],
        };
        let c = chunks((0..10).map(|_| item(10)).collect(), 4, 1000);
        assert_eq!(c.iter().map(Vec::len).collect::<Vec<_>>(), [4, 4, 2]);
        let c = chunks((0..10).map(|_| item(10)).collect(), 100, 25);
        assert_eq!(c.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 2, 2, 2]);
        let c = chunks(vec![item(100), item(1)], 100, 10);
        assert_eq!(c.len(), 2, "an oversized document goes alone");
    }
}
