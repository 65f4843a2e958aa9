//! The index's write-ahead log: what makes `index_spans` durable without a tantivy commit.
//!
//! One append-only file. A record is one `index_spans` batch:
//! `[u32 body length][u32 CRC-32 of body][body = u32 count, count × SpanDoc]`, little
//! endian (records written before the CRC carry a byte-wise FNV-1a of the body instead,
//! which replay still accepts; the CRC is ~20× cheaper per byte, and the WAL holds every
//! term of every span). Records are appended and fsynced before the batch is acknowledged; after every
//! successful tantivy commit (which covers everything appended so far) the file is
//! truncated. On open, the records are replayed into the writers; a torn or corrupt tail
//! (a batch whose fsync never returned, so never acknowledged) ends the replay. Replaying a
//! batch that was already committed only adds duplicate span documents, which searches
//! collapse by trace id.
//!
//! A damaged record *followed by valid ones* is not a torn tail: a byte flipped on disk.
//! Replay skips to the next offset where a whole record checks out (length in bounds,
//! checksum and body decode), replays the rest, and reports the damage: the original file
//! is copied to the quarantine (`crate::damage`) and the skipped span documents are lost
//! for search (their spans stay in the store, readable by trace id).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::document::SpanDoc;
use crate::damage::{quarantine_dir, Damage};

/// Upper bound on one record, so a corrupt length never makes replay allocate absurdly.
const MAX_RECORD_BYTES: usize = 1 << 30;

pub struct Wal {
    path: PathBuf,
    file: File,
    bytes: u64,
}

impl Wal {
    /// Opens (or creates) the log and returns it with the documents it still holds, and
    /// the damage found in it (quarantined under `data_dir`), if any.
    pub fn open(
        path: &Path,
        data_dir: &Path,
    ) -> std::io::Result<(Wal, Vec<SpanDoc>, Option<Damage>)> {
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        // Make the file's directory entry durable too (it may have just been created).
        if let Some(parent) = path.parent() {
            File::open(parent)?.sync_all()?;
        }
        let mut data = Vec::new();
        file.read_to_end(&mut data)?;
        let Parsed {
            docs,
            valid,
            skipped,
        } = parse(&data);
        let damage = if skipped.is_empty() {
            None
        } else {
            let to = quarantine_dir(data_dir, "index wal")?;
            std::fs::copy(path, to.join("wal.log"))?;
            let bytes: usize = skipped.iter().map(|(from, to)| to - from).sum();
            let ranges: Vec<String> = skipped.iter().map(|(f, t)| format!("{f}..{t}")).collect();
            Some(
                Damage {
                    part: "index wal",
                    path: path.to_path_buf(),
                    quarantined_to: to,
                    detail: format!(
                        "{bytes} damaged bytes at {} skipped, the valid records after them \
                         replayed; the span documents in the damaged bytes are no longer \
                         searchable, the spans stay readable by trace id",
                        ranges.join(", ")
                    ),
                }
                .report(),
            )
        };
        if valid < data.len() {
            tracing::warn!(path = %path.display(), valid, len = data.len(), "index wal has a torn tail, ignoring it");
            file.set_len(valid as u64)?;
            file.sync_all()?;
        }
        Ok((
            Wal {
                path: path.to_path_buf(),
                file,
                bytes: valid as u64,
            },
            docs,
            damage,
        ))
    }

    /// Bytes of the records of `docs` cut into records of `per_record` documents.
    pub fn record_len(docs: &[SpanDoc], per_record: usize) -> usize {
        let records = docs.len().div_ceil(per_record.max(1));
        records * 12 + docs.iter().map(SpanDoc::encoded_len).sum::<usize>()
    }

    /// Encodes one batch as a record into `out` (done by the caller, off the writer thread).
    pub fn encode_record(docs: &[SpanDoc], out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0u8; 8]);
        out.extend_from_slice(&(docs.len() as u32).to_le_bytes());
        for d in docs {
            d.encode(out);
        }
        let body_len = (out.len() - start - 8) as u32;
        let sum = crc32fast::hash(&out[start + 8..]);
        out[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&sum.to_le_bytes());
    }

    /// Appends already-encoded records; durable once [`Wal::sync`] returns.
    pub fn append(&mut self, records: &[u8]) -> std::io::Result<()> {
        self.file.write_all(records)?;
        self.bytes += records.len() as u64;
        Ok(())
    }

    pub fn sync(&mut self) -> std::io::Result<()> {
        self.file.sync_data()
    }

    /// Forgets everything appended so far (called after a successful commit).
    pub fn truncate(&mut self) -> std::io::Result<()> {
        if self.bytes == 0 {
            return Ok(());
        }
        self.file.set_len(0)?;
        self.file.sync_all()?;
        self.bytes = 0;
        Ok(())
    }

    /// Cuts the file back to `len` bytes (undoes a partial append).
    pub fn rewind(&mut self, len: u64) -> std::io::Result<()> {
        self.file.set_len(len)?;
        self.bytes = len;
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.bytes
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What [`parse`] found.
struct Parsed {
    docs: Vec<SpanDoc>,
    /// End of the last valid record: what follows is a torn tail.
    valid: usize,
    /// Damaged byte ranges that valid records follow.
    skipped: Vec<(usize, usize)>,
}

/// Decodes every valid record, skipping damaged ones that valid records follow.
fn parse(data: &[u8]) -> Parsed {
    let mut docs = Vec::new();
    let mut skipped = Vec::new();
    let mut pos = 0usize;
    let mut valid = 0usize;
    while data.len() - pos >= 8 {
        if let Some((batch, len)) = record_at(data, pos) {
            docs.extend(batch);
            pos += len;
            valid = pos;
            continue;
        }
        // the next offset where a whole record checks out, if any: damage, not a torn tail
        match (pos + 1..data.len() - 8).find(|&at| record_at(data, at).is_some()) {
            Some(next) => {
                skipped.push((pos, next));
                pos = next;
            }
            None => break,
        }
    }
    Parsed {
        docs,
        valid,
        skipped,
    }
}

/// The record starting at `pos` if it is whole and valid: its documents and length.
fn record_at(data: &[u8], pos: usize) -> Option<(Vec<SpanDoc>, usize)> {
    let header = data.get(pos..pos + 8)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let sum = u32::from_le_bytes(header[4..].try_into().ok()?);
    if !(4..=MAX_RECORD_BYTES).contains(&len) || data.len() - pos - 8 < len {
        return None;
    }
    let body = &data[pos + 8..pos + 8 + len];
    // cheap before the checksum (resyncing tries every offset of a damaged stretch): a
    // record holds 1..=WAL_RECORD_DOCS documents of at least a trace id (16 bytes) each
    let count = u32::from_le_bytes(body[..4].try_into().ok()?) as usize;
    if count == 0 || count > super::WAL_RECORD_DOCS || count > len / 16 {
        return None;
    }
    // CRC-32 since it replaced FNV-1a; records of an older clew still replay
    if crc32fast::hash(body) != sum && fnv1a(body) != sum {
        return None;
    }
    Some((decode_body(body)?, 8 + len))
}

fn decode_body(mut body: &[u8]) -> Option<Vec<SpanDoc>> {
    let count = u32::from_le_bytes(body.get(..4)?.try_into().ok()?) as usize;
    body = &body[4..];
    let mut docs = Vec::with_capacity(count.min(body.len() / 40));
    for _ in 0..count {
        docs.push(SpanDoc::decode(&mut body)?);
    }
    body.is_empty().then_some(docs)
}

/// The checksum of records written before the CRC.
fn fnv1a(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in data {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::fixtures::{checkout_trace, trace_id, BASE_TIME};

    fn docs(n: u64) -> Vec<SpanDoc> {
        checkout_trace(trace_id(n), "1", BASE_TIME, true)
            .iter()
            .map(|s| SpanDoc::from_span(s, &crate::trace_index::span_doc::IndexedAttributes::All))
            .collect()
    }

    #[test]
    fn replays_records_of_the_fnv_format_before_the_crc() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let mut rec = Vec::new();
        Wal::encode_record(&docs(5), &mut rec);
        let sum = fnv1a(&rec[8..]);
        rec[4..8].copy_from_slice(&sum.to_le_bytes());
        std::fs::write(&path, &rec).unwrap();
        let (_, replay, _) = Wal::open(&path, dir.path()).unwrap();
        assert_eq!(replay.len(), 4);
        assert_eq!(replay[0].trace_id, trace_id(5).0);
        // A corrupt body matches neither checksum.
        rec[20] ^= 1;
        std::fs::write(&path, &rec).unwrap();
        let (_, replay, _) = Wal::open(&path, dir.path()).unwrap();
        assert!(replay.is_empty());
    }

    #[test]
    fn replays_whole_records_and_drops_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        {
            let (mut wal, replay, damage) = Wal::open(&path, dir.path()).unwrap();
            assert!(damage.is_none());
            assert!(replay.is_empty());
            let mut rec = Vec::new();
            Wal::encode_record(&docs(1), &mut rec);
            Wal::encode_record(&docs(2), &mut rec);
            wal.append(&rec).unwrap();
            let mut torn = Vec::new();
            Wal::encode_record(&docs(3), &mut torn);
            wal.append(&torn[..torn.len() / 2]).unwrap();
            wal.sync().unwrap();
        }
        let (mut wal, replay, damage) = Wal::open(&path, dir.path()).unwrap();
        assert!(damage.is_none(), "a torn tail is not damage: {damage:?}");
        assert_eq!(replay.len(), 8);
        assert_eq!(replay[4].trace_id, trace_id(2).0);
        wal.truncate().unwrap();
        let mut rec = Vec::new();
        Wal::encode_record(&docs(4), &mut rec);
        wal.append(&rec).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (_, replay, _) = Wal::open(&path, dir.path()).unwrap();
        assert_eq!(replay.len(), 4);
        assert_eq!(replay[0].trace_id, trace_id(4).0);
    }

    #[test]
    fn a_damaged_record_is_skipped_quarantined_and_the_rest_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index").join("wal.log");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut rec = Vec::new();
        Wal::encode_record(&docs(1), &mut rec);
        let second = rec.len();
        Wal::encode_record(&docs(2), &mut rec);
        let third = rec.len();
        Wal::encode_record(&docs(3), &mut rec);
        for flip in [second + 2, second + 6, (second + third) / 2] {
            // a flipped byte in the length, the checksum, then the body of record 2
            let mut damaged = rec.clone();
            damaged[flip] ^= 0x40;
            std::fs::write(&path, &damaged).unwrap();
            let (wal, replay, damage) = Wal::open(&path, dir.path()).unwrap();
            let ids: Vec<_> = replay.iter().map(|d| d.trace_id).collect();
            assert_eq!(replay.len(), 8, "flip at {flip}");
            assert_eq!(ids[0], trace_id(1).0);
            assert_eq!(ids[4], trace_id(3).0, "flip at {flip}: record 3 replayed");
            let damage = damage.expect("damage reported");
            assert_eq!(damage.part, "index wal");
            assert_eq!(
                std::fs::read(damage.quarantined_to.join("wal.log")).unwrap(),
                damaged,
                "the original file is kept in the quarantine"
            );
            assert_eq!(wal.len(), rec.len() as u64, "nothing valid is cut off");
        }
    }
}
