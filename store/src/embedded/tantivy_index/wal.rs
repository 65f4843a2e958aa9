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

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::document::SpanDoc;

/// Upper bound on one record, so a corrupt length never makes replay allocate absurdly.
const MAX_RECORD_BYTES: usize = 1 << 30;

pub struct Wal {
    path: PathBuf,
    file: File,
    bytes: u64,
}

impl Wal {
    /// Opens (or creates) the log and returns it with the documents it still holds.
    pub fn open(path: &Path) -> std::io::Result<(Wal, Vec<SpanDoc>)> {
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
        let (docs, valid) = parse(&data);
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

/// Decodes whole valid records; returns the docs and how many bytes were valid.
fn parse(data: &[u8]) -> (Vec<SpanDoc>, usize) {
    let mut docs = Vec::new();
    let mut pos = 0usize;
    while data.len() - pos >= 8 {
        let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap_or_default()) as usize;
        let sum = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().unwrap_or_default());
        if len > MAX_RECORD_BYTES || data.len() - pos - 8 < len {
            break;
        }
        let body = &data[pos + 8..pos + 8 + len];
        if crc32fast::hash(body) != sum && fnv1a(body) != sum {
            break;
        }
        let Some(batch) = decode_body(body) else {
            break;
        };
        docs.extend(batch);
        pos += 8 + len;
    }
    (docs, pos)
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
        let (_, replay) = Wal::open(&path).unwrap();
        assert_eq!(replay.len(), 4);
        assert_eq!(replay[0].trace_id, trace_id(5).0);
        // A corrupt body matches neither checksum.
        rec[20] ^= 1;
        std::fs::write(&path, &rec).unwrap();
        let (_, replay) = Wal::open(&path).unwrap();
        assert!(replay.is_empty());
    }

    #[test]
    fn replays_whole_records_and_drops_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        {
            let (mut wal, replay) = Wal::open(&path).unwrap();
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
        let (mut wal, replay) = Wal::open(&path).unwrap();
        assert_eq!(replay.len(), 8);
        assert_eq!(replay[4].trace_id, trace_id(2).0);
        wal.truncate().unwrap();
        let mut rec = Vec::new();
        Wal::encode_record(&docs(4), &mut rec);
        wal.append(&rec).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (_, replay) = Wal::open(&path).unwrap();
        assert_eq!(replay.len(), 4);
        assert_eq!(replay[0].trace_id, trace_id(4).0);
    }
}
