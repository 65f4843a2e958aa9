//! Corrupted files (`docs/robustness.md`, machine failures): a flipped byte in an index
//! segment, the index WAL or the store journal of a stopped clew. The next `clew serve`
//! detects it (checksums), quarantines the damaged part under `<data_dir>/quarantine/`,
//! reports it (`/readyz` "degraded: …", `clew_storage_quarantined_total{part}`, an error
//! log line), serves and takes everything else, and the start after that reports nothing:
//! the damage is not re-crashed on at every start.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use prost::Message;

/// Sends `traces` one-span traces of service `svc` in one OTLP/HTTP request.
async fn send(clew: &Clew, traces: &[[u8; 16]]) {
    let spans = traces
        .iter()
        .map(|&t| {
            otlp_span(
                t,
                1,
                None,
                "op",
                vec![kv("order_id", &hex::encode(&t[..4]))],
            )
        })
        .collect();
    let resp = reqwest::Client::new()
        .post(clew.otlp_http_url())
        .header("content-type", "application/x-protobuf")
        .body(request("svc", spans).encode_to_vec())
        .send()
        .await
        .expect("OTLP/HTTP reachable");
    assert_eq!(resp.status().as_u16(), 200);
}

fn traces(n: usize) -> Vec<[u8; 16]> {
    (0..n).map(|_| random_trace_id()).collect()
}

/// Flips one byte of `file` at `offset`.
fn flip(file: &Path, offset: usize) {
    let mut bytes = std::fs::read(file).expect("read");
    bytes[offset] ^= 0x5a;
    std::fs::write(file, bytes).expect("write");
}

async fn readyz(clew: &Clew) -> String {
    let resp = reqwest::get(clew.api_url("/readyz")).await.expect("readyz");
    assert_eq!(resp.status().as_u16(), 200, "clew serves the rest: ready");
    resp.text().await.expect("body")
}

async fn quarantined_metric(clew: &Clew, part: &str) -> f64 {
    let text = clew.metrics(None).await;
    let series = format!("clew_storage_quarantined_total{{part=\"{part}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn found_by_search(clew: &Clew, trace: &[u8; 16]) -> bool {
    let (status, body) = clew
        .get(&format!(
            "/api/v1/keys/order_id/{}",
            hex::encode(&trace[..4])
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    trace_ids(&body).contains(&hex::encode(trace))
}

async fn readable_by_id(clew: &Clew, trace: &[u8; 16]) -> bool {
    clew.get(&format!("/api/v1/traces/{}", hex::encode(trace)))
        .await
        .0
        == 200
}

fn quarantine_files(data_dir: &Path) -> Vec<PathBuf> {
    walk(&data_dir.join("quarantine"))
}

/// After the damaged start: new spans are taken and found, and the next start is clean.
async fn still_writable_then_clean_restart(clew: Clew, data_dir: &Path) {
    let fresh = traces(3);
    send(&clew, &fresh).await;
    for t in &fresh {
        assert!(readable_by_id(&clew, t).await, "new spans are stored");
    }
    clew.wait_for(
        &format!("/api/v1/keys/order_id/{}", hex::encode(&fresh[0][..4])),
        Duration::from_secs(10),
        |b| trace_ids(b).contains(&hex::encode(fresh[0])),
    )
    .await;
    drop(clew);
    let clew = Clew::start_in(data_dir, &[]);
    assert_eq!(
        readyz(&clew).await,
        "ok",
        "the next start finds nothing damaged"
    );
    assert!(readable_by_id(&clew, &fresh[1]).await);
}

#[tokio::test]
async fn damaged_index_segment_is_cut_out_and_the_rest_serves() {
    damaged_index_segment(false).await;
}

#[tokio::test]
async fn truncated_index_segment_is_cut_out_and_the_rest_serves() {
    damaged_index_segment(true).await;
}

/// A byte flipped in, or the second half cut off, the largest term dictionary.
async fn damaged_index_segment(truncate: bool) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data_dir = tmp.path().join("data");
    let first = traces(50);
    {
        let mut clew = Clew::start_in(&data_dir, &[]);
        send(&clew, &first).await;
        assert!(clew.terminate().success());
    }
    // the largest term dictionary of the index: one segment
    let mut terms: Vec<PathBuf> = walk(&data_dir.join("index"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "term"))
        .collect();
    terms.sort_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0));
    let term = terms.pop().expect("a committed segment");
    if truncate {
        let len = std::fs::metadata(&term).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&term)
            .and_then(|f| f.set_len(len / 2))
            .expect("truncate");
    } else {
        flip(&term, std::fs::metadata(&term).unwrap().len() as usize / 3);
    }

    let clew = Clew::start_in(&data_dir, &[]);
    let ready = readyz(&clew).await;
    assert!(ready.starts_with("ok\ndegraded: index segment "), "{ready}");
    assert_eq!(quarantined_metric(&clew, "index segment").await, 1.0);
    let segment = term.file_stem().unwrap().to_string_lossy().into_owned();
    assert!(
        !walk(&data_dir.join("index"))
            .iter()
            .any(|p| p.to_string_lossy().contains(&segment)),
        "the damaged segment left the index"
    );
    assert!(
        quarantine_files(&data_dir)
            .iter()
            .any(|p| p.ends_with(term.file_name().unwrap())),
        "and is kept in the quarantine"
    );
    // not served as valid: its spans are no longer found by the index, still by id
    assert!(!found_by_search(&clew, &first[0]).await);
    for t in &first {
        assert!(
            readable_by_id(&clew, t).await,
            "the store keeps serving the spans"
        );
    }
    still_writable_then_clean_restart(clew, &data_dir).await;
}

#[tokio::test]
async fn damaged_index_wal_record_is_skipped_and_later_records_replayed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data_dir = tmp.path().join("data");
    let config = tmp.path().join("clew.toml");
    // the longest commit interval, so the WAL still holds the batch at kill -9
    std::fs::write(
        &config,
        "[index]\ntype = \"embedded\"\ncommit_interval_ms = 1500\n",
    )
    .unwrap();
    let config = config.to_str().unwrap().to_string();
    // one request of more spans than a WAL record holds (4096 documents): several records
    let all = traces(3 * 4096 + 100);
    {
        let mut clew = Clew::start_in(&data_dir, &["--config", &config]);
        send(&clew, &all).await;
        clew.kill9();
    }
    let wal = data_dir.join("index").join("wal.log");
    let bytes = std::fs::read(&wal).expect("wal");
    let records = record_offsets(&bytes);
    assert!(
        records.len() >= 3,
        "the WAL holds the acknowledged batch in several records (no commit before kill -9): {records:?}"
    );
    // which traces each record holds: their ids appear in its bytes
    let ids: std::collections::HashSet<[u8; 16]> = all.iter().copied().collect();
    let in_record = |k: usize| -> Vec<[u8; 16]> {
        let end = records.get(k + 1).copied().unwrap_or(bytes.len());
        let mut found: Vec<[u8; 16]> = bytes[records[k]..end]
            .windows(16)
            .filter_map(|w| <[u8; 16]>::try_from(w).ok())
            .filter(|w| ids.contains(w))
            .collect();
        found.dedup();
        found.truncate(3);
        found
    };
    let (before, damaged, after) = (in_record(0), in_record(1), in_record(2));
    assert!(!before.is_empty() && !damaged.is_empty() && !after.is_empty());
    // a byte inside the second record's body
    flip(&wal, (records[1] + records[2]) / 2);

    let clew = Clew::start_in(&data_dir, &["--config", &config]);
    let ready = readyz(&clew).await;
    assert!(ready.starts_with("ok\ndegraded: index wal "), "{ready}");
    assert_eq!(quarantined_metric(&clew, "index wal").await, 1.0);
    for t in before.iter().chain(&after) {
        assert!(
            found_by_search(&clew, t).await,
            "records around the damage are replayed"
        );
    }
    for t in &damaged {
        assert!(
            !found_by_search(&clew, t).await,
            "the damaged record is not served"
        );
    }
    for t in before.iter().chain(&damaged).chain(&after) {
        assert!(readable_by_id(&clew, t).await, "the store keeps every span");
    }
    still_writable_then_clean_restart(clew, &data_dir).await;
}

#[tokio::test]
async fn damaged_store_journal_is_quarantined_and_the_store_opens() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data_dir = tmp.path().join("data");
    // several batches, so the damaged one is followed by valid ones (a damaged tail is a
    // torn write, which fjall truncates by itself)
    let batches: Vec<Vec<[u8; 16]>> = (0..20).map(|_| traces(20)).collect();
    {
        let mut clew = Clew::start_in(&data_dir, &[]);
        for b in &batches {
            send(&clew, b).await;
        }
        assert!(clew.terminate().success());
    }
    let journal = walk(&data_dir.join("spans"))
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "jnl"))
        .expect("a journal");
    // a byte of a row key (keys are not compressed) in the middle batch: its checksum fails
    let bytes = std::fs::read(&journal).unwrap();
    let id = batches[10][0];
    let at = bytes
        .windows(id.len())
        .position(|w| w == id)
        .expect("the trace id in a journal key");
    flip(&journal, at + 3);

    let clew = Clew::start_in(&data_dir, &[]);
    let ready = readyz(&clew).await;
    assert!(ready.starts_with("ok\ndegraded: store journal "), "{ready}");
    assert_eq!(quarantined_metric(&clew, "store journal").await, 1.0);
    assert!(
        quarantine_files(&data_dir)
            .iter()
            .any(|p| p.ends_with(journal.file_name().unwrap())),
        "the journal is kept in the quarantine"
    );
    still_writable_then_clean_restart(clew, &data_dir).await;
}

/// Offsets of the WAL's records (`[u32 len][u32 checksum][body]`).
fn record_offsets(wal: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 8 <= wal.len() {
        out.push(pos);
        let len = u32::from_le_bytes(wal[pos..pos + 4].try_into().unwrap()) as usize;
        pos += 8 + len;
    }
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}
