//! The agent's disk spool: a bounded, crash-safe FIFO of Kafka records kept while Kafka is
//! unreachable, replayed in order once it is back.
//!
//! ```text
//!  dir/
//!    00000000000000000007.seg   "CLEWSPL1" │ frame │ frame │ …        (oldest: being replayed)
//!    00000000000000000008.seg   "CLEWSPL1" │ frame │ …                (newest: appended to)
//!    cursor                     "7 1234\n": first record not yet delivered (segment, offset)
//!
//!  frame = len u32 LE │ crc32(payload) u32 LE │ payload
//!  payload = key_len u32 LE │ key │ value                                   (tenant `default`)
//!          | key_len|TENANT_FLAG u32 LE │ tenant_len u8 │ tenant │ key │ value  (any other)
//! ```
//!
//! Frame versions: a frame of tenant `default` is exactly what agents wrote before tenants
//! (no flag), so spools written before the upgrade replay unchanged, and a spool holding
//! only tenant `default` stays readable by an older agent. A frame of any other tenant sets
//! bit 31 of `key_len` ([`TENANT_FLAG`]; keys are 16-byte trace ids, so the bit was always 0)
//! and names its tenant, checked with [`Tenant::parse`] when read; an older agent reads such
//! a frame as corrupt and cuts its segment there (a downgrade with such records spooled
//! loses them: drain the spool first). `docs/adr/0006-agent-delivery-and-spool.md`.
//!
//! - [`Spool::append`] writes all frames of a call with one `write` and `fdatasync`s before
//!   it returns: what it returned `Ok` for survives a crash or a power cut.
//! - The total size on disk is bounded by `max_bytes`; an append that does not fit is
//!   refused whole ([`AppendError::Full`]) — the spool never drops what it holds.
//! - [`Spool::peek`] reads from the cursor; [`Spool::commit`] moves the cursor past
//!   delivered records and deletes segments that hold nothing undelivered. The cursor file
//!   is replaced atomically but not fsynced: after a crash it may lag, which re-sends
//!   (duplicates, harmless downstream) and never skips.
//! - [`Spool::open`] scans every segment and checks every frame's length and CRC. A frame
//!   that fails (a crash in the middle of an append) ends its segment: the segment is
//!   truncated there and the cut is counted (`clew_agent_spool_corrupt_total`).

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use clew_proto::Tenant;
use tracing::{info, warn};

/// Opens every segment file.
pub const SEGMENT_MAGIC: &[u8; 8] = b"CLEWSPL1";
const FRAME_HEADER: u64 = 8;
const KEY_LEN_BYTES: u64 = 4;
/// Bit 31 of a frame's `key_len`: a tenant (`tenant_len u8 │ tenant`) follows the length.
pub const TENANT_FLAG: u32 = 1 << 31;
/// Larger frames are treated as corruption when reading (no record is that large: the
/// producer splits values at `kafka.message_max_bytes`).
pub const MAX_FRAME_BYTES: u64 = 256 * 1024 * 1024;
const CURSOR_FILE: &str = "cursor";
/// Most append times remembered for [`Spool::oldest_record_time`]; past it an append's
/// time is not noted and the age reads as that of an older append (never younger).
const MAX_APPEND_TIMES: usize = 65_536;
const SEGMENT_SUFFIX: &str = ".seg";

/// One Kafka record: key and value bytes, and the tenant its spans belong to (the
/// `clew-tenant` header when it is not `default`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub tenant: Tenant,
}

impl Record {
    /// Bytes this record takes in a segment.
    pub fn frame_len(&self) -> u64 {
        FRAME_HEADER
            + KEY_LEN_BYTES
            + tenant_bytes(&self.tenant)
            + self.key.len() as u64
            + self.value.len() as u64
    }
}

/// Bytes a frame spends naming its tenant: none for `default`.
fn tenant_bytes(t: &Tenant) -> u64 {
    if t.is_default() {
        0
    } else {
        1 + t.as_str().len() as u64
    }
}

/// Where a record starts (or where the records before it end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// Records read from the cursor on, and the position after the last of them.
#[derive(Debug, Default)]
pub struct Peeked {
    pub records: Vec<Record>,
    /// Per record, the position right after it (what to [`Spool::commit`] once it and
    /// every record before it are delivered).
    pub ends: Vec<Position>,
    /// Where the cursor moves once all of `records` are delivered.
    pub end: Option<Position>,
    bytes: u64,
}

/// Why an append was refused. Nothing of the call was written when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("the spool is full: {used} of {max} bytes used, {wanted} more wanted")]
    Full { used: u64, max: u64, wanted: u64 },
    #[error("failed to write to the spool: {0}")]
    Io(#[from] io::Error),
}

/// What [`Spool::open`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Undelivered records found.
    pub records: u64,
    /// Their bytes on disk.
    pub bytes: u64,
    /// Segments cut short because a frame failed its length or CRC check.
    pub truncated_segments: u64,
    /// Bytes removed by those cuts.
    pub truncated_bytes: u64,
}

#[derive(Debug)]
struct Segment {
    id: u64,
    /// Valid bytes, header included.
    len: u64,
}

/// See the module docs.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    /// Oldest first. The last one is appended to (when `writer` is open).
    segments: VecDeque<Segment>,
    writer: Option<File>,
    next_id: u64,
    cursor: Position,
    /// Sum of segment lengths: what the spool occupies on disk.
    disk_bytes: u64,
    pending_records: u64,
    pending_bytes: u64,
    /// Where each append's last record ends and when it was appended, oldest first;
    /// entries the cursor has reached are dropped.
    appended: VecDeque<(Position, SystemTime)>,
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}{SEGMENT_SUFFIX}"))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, checking every frame; see the module docs.
    pub fn open(dir: &Path, max_bytes: u64, segment_bytes: u64) -> io::Result<(Spool, Recovery)> {
        fs::create_dir_all(dir)?;
        let mut ids = Vec::new();
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = name
                .strip_suffix(SEGMENT_SUFFIX)
                .and_then(|n| n.parse::<u64>().ok())
            {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let saved = read_cursor(dir);
        let mut recovery = Recovery::default();
        let mut segments = VecDeque::new();
        let mut next_id = ids.last().map_or(1, |l| l + 1);
        let mut cursor = None;
        for id in ids {
            let path = segment_path(dir, id);
            if saved.is_some_and(|c| id < c.segment) {
                // Fully delivered before the last stop; its deletion did not happen.
                fs::remove_file(&path)?;
                continue;
            }
            let (valid, records_from) = scan_segment(&path, saved, id)?;
            let on_disk = fs::metadata(&path)?.len();
            if valid < FRAME_HEADER {
                // Created but its header never made it: holds nothing.
                fs::remove_file(&path)?;
                if on_disk > 0 {
                    recovery.truncated_segments += 1;
                    recovery.truncated_bytes += on_disk;
                }
                continue;
            }
            if valid < on_disk {
                warn!(
                    segment = %path.display(),
                    valid_bytes = valid,
                    cut_bytes = on_disk - valid,
                    "spool segment ends in a torn or corrupt record (crash during a write?); truncating it there"
                );
                let f = OpenOptions::new().write(true).open(&path)?;
                f.set_len(valid)?;
                f.sync_all()?;
                recovery.truncated_segments += 1;
                recovery.truncated_bytes += on_disk - valid;
            }
            let start = match saved {
                Some(c) if c.segment == id => c.offset.clamp(FRAME_HEADER, valid),
                _ => FRAME_HEADER,
            };
            if cursor.is_none() {
                cursor = Some(Position {
                    segment: id,
                    offset: start,
                });
            }
            recovery.records += records_from;
            recovery.bytes += valid - start;
            segments.push_back(Segment { id, len: valid });
        }
        next_id = next_id.max(saved.map_or(1, |c| c.segment + 1));
        let cursor = cursor.unwrap_or(Position {
            segment: next_id,
            offset: FRAME_HEADER,
        });
        let disk_bytes = segments.iter().map(|s| s.len).sum();
        // Records from an earlier run: as old as the file holding the first of them, until
        // all of them are delivered.
        let mut appended = VecDeque::new();
        if let (true, Some(last)) = (recovery.records > 0, segments.back()) {
            let meta = fs::metadata(segment_path(dir, cursor.segment))?;
            let since = meta.created().or_else(|_| meta.modified())?;
            let end = Position {
                segment: last.id,
                offset: last.len,
            };
            appended.push_back((end, since));
        }
        let spool = Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            segment_bytes: segment_bytes.max(FRAME_HEADER + 1),
            segments,
            writer: None,
            next_id,
            cursor,
            disk_bytes,
            pending_records: recovery.records,
            pending_bytes: recovery.bytes,
            appended,
        };
        if recovery.records > 0 {
            info!(
                dir = %dir.display(),
                records = recovery.records,
                bytes = recovery.bytes,
                "spool holds undelivered records from an earlier run; they are replayed first"
            );
        }
        Ok((spool, recovery))
    }

    /// Undelivered records.
    pub fn pending_records(&self) -> u64 {
        self.pending_records
    }

    /// Bytes of undelivered records (frames included).
    pub fn pending_bytes(&self) -> u64 {
        self.pending_bytes
    }

    /// Bytes the spool occupies on disk (never more than `max_bytes`).
    pub fn disk_bytes(&self) -> u64 {
        self.disk_bytes
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    pub fn is_empty(&self) -> bool {
        self.pending_records == 0
    }

    /// When the oldest undelivered record was appended (`None` when empty). For records
    /// an earlier run left, the creation time of the segment file holding the first.
    pub fn oldest_record_time(&self) -> Option<SystemTime> {
        if self.pending_records == 0 {
            return None;
        }
        self.appended.front().map(|(_, t)| *t)
    }

    /// Appends `records` in order and makes them durable, or writes nothing.
    pub fn append(&mut self, records: &[Record]) -> Result<(), AppendError> {
        let wanted: u64 = records.iter().map(Record::frame_len).sum();
        if records.is_empty() {
            return Ok(());
        }
        let needs_new = match (&self.writer, self.segments.back()) {
            (Some(_), Some(last)) => {
                last.len > FRAME_HEADER && last.len + wanted > self.segment_bytes
            }
            _ => true,
        };
        let header = if needs_new { FRAME_HEADER } else { 0 };
        if self.disk_bytes + header + wanted > self.max_bytes {
            return Err(AppendError::Full {
                used: self.disk_bytes,
                max: self.max_bytes,
                wanted: header + wanted,
            });
        }
        if needs_new {
            self.new_segment()?;
        }
        let mut buf = Vec::with_capacity(wanted as usize);
        for r in records {
            encode_frame(r, &mut buf);
        }
        let seg = self.segments.back_mut().expect("a segment to append to");
        let file = self.writer.as_mut().expect("an open writer");
        let before = seg.len;
        let written = file.write_all(&buf).and_then(|_| file.sync_data());
        if let Err(e) = written {
            // Take back what may have reached the file; if even that fails, never append
            // behind it again (the next open cuts the segment at the torn frame).
            let undone = file.set_len(before).and_then(|_| file.sync_data());
            if undone.is_err() {
                self.writer = None;
            }
            return Err(AppendError::Io(e));
        }
        seg.len += wanted;
        let end = Position {
            segment: seg.id,
            offset: seg.len,
        };
        if self.appended.len() < MAX_APPEND_TIMES {
            self.appended.push_back((end, SystemTime::now()));
        } else if let Some(last) = self.appended.back_mut() {
            // no room to note this append: the last entry now ends here (it reads older)
            last.0 = end;
        }
        self.disk_bytes += wanted;
        self.pending_records += records.len() as u64;
        self.pending_bytes += wanted;
        Ok(())
    }

    fn new_segment(&mut self) -> io::Result<()> {
        let id = self.next_id;
        let path = segment_path(&self.dir, id);
        let mut f = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        let made = f
            .write_all(SEGMENT_MAGIC)
            .and_then(|_| f.sync_all())
            .and_then(|_| sync_dir(&self.dir));
        if let Err(e) = made {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        self.next_id += 1;
        self.disk_bytes += FRAME_HEADER;
        if self.pending_records == 0 && self.segments.is_empty() {
            self.cursor = Position {
                segment: id,
                offset: FRAME_HEADER,
            };
        }
        self.segments.push_back(Segment {
            id,
            len: FRAME_HEADER,
        });
        self.writer = Some(f);
        Ok(())
    }

    /// Reads up to `max_records` records (and about `max_bytes`, at least one record) from
    /// the cursor on, in append order, without moving the cursor.
    pub fn peek(&self, max_records: usize, max_bytes: u64) -> io::Result<Peeked> {
        let mut out = Peeked::default();
        let mut pos = self.cursor;
        let first = pos.segment;
        for seg in self.segments.iter().filter(|s| s.id >= first) {
            if seg.id > pos.segment {
                pos = Position {
                    segment: seg.id,
                    offset: FRAME_HEADER,
                };
            }
            if pos.offset >= seg.len {
                continue;
            }
            let mut f = File::open(segment_path(&self.dir, seg.id))?;
            f.seek(SeekFrom::Start(pos.offset))?;
            let mut reader = io::BufReader::with_capacity(256 * 1024, f.take(seg.len - pos.offset));
            while pos.offset < seg.len {
                if out.records.len() >= max_records
                    || (!out.records.is_empty() && out.bytes >= max_bytes)
                {
                    return Ok(out);
                }
                let record = read_frame(&mut reader, seg.len - pos.offset)?.ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "spool segment {} changed under the agent: bad record at offset {}",
                            seg.id, pos.offset
                        ),
                    )
                })?;
                pos.offset += record.frame_len();
                out.bytes += record.frame_len();
                out.records.push(record);
                out.ends.push(pos);
                out.end = Some(pos);
            }
        }
        Ok(out)
    }

    /// Marks everything before `to` (a [`Peeked::end`]) as delivered: moves the cursor,
    /// deletes segments that hold nothing undelivered and saves the cursor.
    pub fn commit(&mut self, to: Position, records: u64) -> io::Result<()> {
        if to <= self.cursor {
            return Ok(());
        }
        let mut freed = 0;
        for seg in &self.segments {
            if seg.id < self.cursor.segment || seg.id > to.segment {
                continue;
            }
            let from = if seg.id == self.cursor.segment {
                self.cursor.offset
            } else {
                FRAME_HEADER
            };
            let until = if seg.id == to.segment {
                to.offset
            } else {
                seg.len
            };
            freed += until.saturating_sub(from);
        }
        self.cursor = to;
        self.pending_bytes = self.pending_bytes.saturating_sub(freed);
        self.pending_records = self.pending_records.saturating_sub(records);
        // An append is delivered once the cursor reached its end.
        while self
            .appended
            .front()
            .is_some_and(|(end, _)| *end <= self.cursor)
        {
            self.appended.pop_front();
        }
        if self.pending_records == 0 {
            self.appended.clear();
        }
        // Drop segments wholly before the cursor, and the cursor's own segment once it is
        // read to the end (the one being appended to included: the next append opens a new one).
        while let Some(first) = self.segments.front() {
            let done = first.id < self.cursor.segment
                || (first.id == self.cursor.segment && self.cursor.offset >= first.len);
            if !done {
                break;
            }
            let first = self.segments.pop_front().expect("front exists");
            if self.segments.is_empty() {
                self.writer = None;
            }
            fs::remove_file(segment_path(&self.dir, first.id))?;
            self.disk_bytes = self.disk_bytes.saturating_sub(first.len);
            if self.cursor.segment == first.id {
                self.cursor = match self.segments.front() {
                    Some(next) => Position {
                        segment: next.id,
                        offset: FRAME_HEADER,
                    },
                    None => Position {
                        segment: self.next_id,
                        offset: FRAME_HEADER,
                    },
                };
            }
        }
        if self.segments.is_empty() {
            self.pending_bytes = 0;
            self.pending_records = 0;
        }
        write_cursor(&self.dir, self.cursor)
    }
}

fn encode_frame(r: &Record, out: &mut Vec<u8>) {
    let payload_len = (r.frame_len() - FRAME_HEADER) as usize;
    let start = out.len();
    out.extend_from_slice(&(payload_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    if r.tenant.is_default() {
        out.extend_from_slice(&(r.key.len() as u32).to_le_bytes());
    } else {
        let name = r.tenant.as_str().as_bytes();
        out.extend_from_slice(&(r.key.len() as u32 | TENANT_FLAG).to_le_bytes());
        // a tenant name is at most 64 bytes (Tenant::parse)
        out.push(name.len() as u8);
        out.extend_from_slice(name);
    }
    out.extend_from_slice(&r.key);
    out.extend_from_slice(&r.value);
    let crc = crc32fast::hash(&out[start + FRAME_HEADER as usize..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Reads one frame of at most `left` bytes. `Ok(None)`: torn or corrupt (length past the
/// end, bad CRC, inconsistent key or tenant length, a tenant name [`Tenant::parse`] refuses).
fn read_frame(r: &mut impl Read, left: u64) -> io::Result<Option<Record>> {
    if left < FRAME_HEADER + KEY_LEN_BYTES {
        return Ok(None);
    }
    let mut head = [0u8; FRAME_HEADER as usize];
    if !read_full(r, &mut head)? {
        return Ok(None);
    }
    let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as u64;
    let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
    if !(KEY_LEN_BYTES..=MAX_FRAME_BYTES).contains(&len) || FRAME_HEADER + len > left {
        return Ok(None);
    }
    let mut payload = vec![0u8; len as usize];
    if !read_full(r, &mut payload)? || crc32fast::hash(&payload) != crc {
        return Ok(None);
    }
    let key_len = u32::from_le_bytes(payload[..4].try_into().expect("4 bytes"));
    let mut at = 4;
    let tenant = if key_len & TENANT_FLAG == 0 {
        Tenant::default()
    } else {
        let Some(&name_len) = payload.get(at) else {
            return Ok(None);
        };
        let name = payload.get(at + 1..at + 1 + name_len as usize);
        let Some(Ok(tenant)) = name.map(|n| std::str::from_utf8(n).map(Tenant::parse)) else {
            return Ok(None);
        };
        at += 1 + name_len as usize;
        match tenant {
            // `default` is never flagged: a frame naming it was not written by the agent
            Ok(t) if !t.is_default() => t,
            _ => return Ok(None),
        }
    };
    let key_len = (key_len & !TENANT_FLAG) as usize;
    if key_len > payload.len() - at {
        return Ok(None);
    }
    let value = payload.split_off(at + key_len);
    let key = payload[at..].to_vec();
    Ok(Some(Record { key, value, tenant }))
}

/// `Ok(false)` at end of input before `buf` is full.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Length of the valid prefix of a segment, and how many records of it lie at or after
/// the saved cursor.
fn scan_segment(path: &Path, cursor: Option<Position>, id: u64) -> io::Result<(u64, u64)> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut r = io::BufReader::with_capacity(1 << 20, file);
    let mut magic = [0u8; 8];
    if size < FRAME_HEADER || !read_full(&mut r, &mut magic)? || &magic != SEGMENT_MAGIC {
        return Ok((0, 0));
    }
    let from = match cursor {
        Some(c) if c.segment == id => c.offset,
        _ => FRAME_HEADER,
    };
    let mut offset = FRAME_HEADER;
    let mut records = 0;
    while offset < size {
        match read_frame(&mut r, size - offset)? {
            Some(rec) => {
                if offset >= from {
                    records += 1;
                }
                offset += rec.frame_len();
            }
            None => break,
        }
    }
    Ok((offset, records))
}

fn read_cursor(dir: &Path) -> Option<Position> {
    let text = fs::read_to_string(dir.join(CURSOR_FILE)).ok()?;
    let mut parts = text.split_whitespace();
    let segment = parts.next()?.parse().ok()?;
    let offset = parts.next()?.parse().ok()?;
    Some(Position { segment, offset })
}

fn write_cursor(dir: &Path, c: Position) -> io::Result<()> {
    let tmp = dir.join(format!("{CURSOR_FILE}.tmp"));
    fs::write(&tmp, format!("{} {}\n", c.segment, c.offset))?;
    fs::rename(tmp, dir.join(CURSOR_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u32, value_len: usize) -> Record {
        Record {
            key: i.to_be_bytes().repeat(4),
            value: vec![(i % 251) as u8; value_len],
            tenant: Tenant::default(),
        }
    }

    fn drain(spool: &mut Spool, batch: usize) -> Vec<Record> {
        let mut out = Vec::new();
        loop {
            let p = spool.peek(batch, u64::MAX).unwrap();
            let Some(end) = p.end else { break };
            let n = p.records.len() as u64;
            out.extend(p.records);
            spool.commit(end, n).unwrap();
        }
        out
    }

    #[test]
    fn fifo_across_segments_and_calls() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, rec0) = Spool::open(dir.path(), 1 << 20, 300).unwrap();
        assert_eq!(rec0, Recovery::default());
        let all: Vec<Record> = (0..50).map(|i| rec(i, 20 + i as usize)).collect();
        for chunk in all.chunks(3) {
            s.append(chunk).unwrap();
        }
        assert_eq!(s.pending_records(), 50);
        assert!(s.segments.len() > 3, "small segments roll over");
        // Peek does not consume.
        assert_eq!(s.peek(5, u64::MAX).unwrap().records, all[..5].to_vec());
        assert_eq!(s.peek(5, u64::MAX).unwrap().records, all[..5].to_vec());
        let got = drain(&mut s, 7);
        assert_eq!(got, all);
        assert!(s.is_empty());
        assert_eq!(s.pending_bytes(), 0);
        assert_eq!(s.disk_bytes(), 0, "delivered segments are deleted");
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(SEGMENT_SUFFIX))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        // Appending after a full drain starts a new segment and keeps working.
        s.append(&all[..2]).unwrap();
        assert_eq!(drain(&mut s, 10), all[..2].to_vec());
    }

    #[test]
    fn oldest_record_time_follows_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(dir.path(), 1 << 20, 200).unwrap();
        assert_eq!(s.oldest_record_time(), None);
        let all: Vec<Record> = (0..9).map(|i| rec(i, 40)).collect();
        for chunk in all.chunks(3) {
            s.append(chunk).unwrap();
        }
        let times: Vec<SystemTime> = s.appended.iter().map(|(_, t)| *t).collect();
        assert_eq!(times.len(), 3);
        assert_eq!(s.oldest_record_time(), Some(times[0]));
        // two records of the first append delivered: it is still the oldest
        let p = s.peek(2, u64::MAX).unwrap();
        s.commit(p.end.unwrap(), 2).unwrap();
        assert_eq!(s.oldest_record_time(), Some(times[0]));
        // the rest of the first append and the whole second one
        let p = s.peek(4, u64::MAX).unwrap();
        s.commit(p.end.unwrap(), 4).unwrap();
        assert_eq!(s.oldest_record_time(), Some(times[2]));
        drop(s);
        // after a restart: the segment file's time, never in the future
        let (mut s, _) = Spool::open(dir.path(), 1 << 20, 200).unwrap();
        let recovered = s.oldest_record_time().expect("records left");
        assert!(recovered <= SystemTime::now());
        drain(&mut s, 10);
        assert_eq!(s.oldest_record_time(), None);
    }

    #[test]
    fn interleaved_append_and_replay_keep_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(dir.path(), 1 << 20, 500).unwrap();
        let mut expect = Vec::new();
        let mut got = Vec::new();
        for i in 0..40u32 {
            let r = rec(i, 40);
            s.append(std::slice::from_ref(&r)).unwrap();
            expect.push(r);
            if i % 3 == 0 {
                let p = s.peek(2, u64::MAX).unwrap();
                let n = p.records.len() as u64;
                got.extend(p.records);
                s.commit(p.end.unwrap(), n).unwrap();
            }
        }
        got.extend(drain(&mut s, 4));
        assert_eq!(got, expect);
    }

    #[test]
    fn bounded_append_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let r = rec(1, 100);
        let max = FRAME_HEADER + 3 * r.frame_len();
        let (mut s, _) = Spool::open(dir.path(), max, 1 << 20).unwrap();
        s.append(&[r.clone(), r.clone()]).unwrap();
        let err = s.append(&[r.clone(), r.clone()]).unwrap_err();
        assert!(matches!(err, AppendError::Full { .. }), "{err}");
        assert_eq!(s.pending_records(), 2, "a refused append writes nothing");
        s.append(std::slice::from_ref(&r)).unwrap();
        assert!(matches!(
            s.append(std::slice::from_ref(&r)),
            Err(AppendError::Full { .. })
        ));
        assert!(s.disk_bytes() <= max);
        // Delivering frees room.
        let got = drain(&mut s, 1);
        assert_eq!(got.len(), 3);
        s.append(&[r.clone(), r.clone()]).unwrap();
        assert_eq!(s.pending_records(), 2);
    }

    #[test]
    fn survives_restart_and_resumes_at_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let all: Vec<Record> = (0..30).map(|i| rec(i, 64)).collect();
        {
            let (mut s, _) = Spool::open(dir.path(), 1 << 20, 400).unwrap();
            s.append(&all[..20]).unwrap();
            let p = s.peek(8, u64::MAX).unwrap();
            s.commit(p.end.unwrap(), 8).unwrap();
            s.append(&all[20..]).unwrap();
        }
        let (mut s, recovery) = Spool::open(dir.path(), 1 << 20, 400).unwrap();
        assert_eq!(recovery.records, 22);
        assert_eq!(recovery.truncated_segments, 0);
        assert_eq!(s.pending_records(), 22);
        s.append(&[rec(99, 10)]).unwrap();
        let got = drain(&mut s, 5);
        let mut expect = all[8..].to_vec();
        expect.push(rec(99, 10));
        assert_eq!(got, expect);
        // And again after a full drain: nothing left, nothing replayed twice.
        drop(s);
        let (s, recovery) = Spool::open(dir.path(), 1 << 20, 400).unwrap();
        assert_eq!(recovery.records, 0);
        assert!(s.is_empty());
    }

    #[test]
    fn torn_tail_is_cut_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let all: Vec<Record> = (0..5).map(|i| rec(i, 50)).collect();
        {
            let (mut s, _) = Spool::open(dir.path(), 1 << 20, 1 << 20).unwrap();
            s.append(&all).unwrap();
        }
        let seg = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(SEGMENT_SUFFIX))
            .unwrap();
        let good_len = fs::metadata(&seg).unwrap().len();
        // A crash in the middle of the next append: half a frame at the end.
        let mut torn = Vec::new();
        encode_frame(&rec(5, 50), &mut torn);
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&torn[..torn.len() / 2]).unwrap();
        drop(f);
        let (mut s, recovery) = Spool::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        assert_eq!(recovery.records, 5);
        assert_eq!(recovery.truncated_segments, 1);
        assert_eq!(recovery.truncated_bytes, (torn.len() / 2) as u64);
        assert_eq!(fs::metadata(&seg).unwrap().len(), good_len);
        // Appends after recovery are readable after the good records.
        s.append(&[rec(6, 10)]).unwrap();
        let mut expect = all.clone();
        expect.push(rec(6, 10));
        assert_eq!(drain(&mut s, 100), expect);
    }

    #[test]
    fn flipped_bit_ends_the_segment_at_that_frame() {
        let dir = tempfile::tempdir().unwrap();
        let all: Vec<Record> = (0..4).map(|i| rec(i, 30)).collect();
        {
            let (mut s, _) = Spool::open(dir.path(), 1 << 20, 1 << 20).unwrap();
            s.append(&all).unwrap();
        }
        let seg = segment_path(dir.path(), 1);
        let mut bytes = fs::read(&seg).unwrap();
        // Corrupt the value of the third record.
        let third = FRAME_HEADER + 2 * all[0].frame_len();
        let i = (third + FRAME_HEADER + KEY_LEN_BYTES + 16 + 3) as usize;
        bytes[i] ^= 0x40;
        fs::write(&seg, &bytes).unwrap();
        let (mut s, recovery) = Spool::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        assert_eq!(recovery.records, 2);
        assert_eq!(recovery.truncated_segments, 1);
        assert_eq!(drain(&mut s, 100), all[..2].to_vec());
    }

    /// A segment as agents wrote it before tenants (no flag in any frame): what the
    /// frame format read then, spelled out byte by byte here rather than with
    /// `encode_frame`, so a change to the writer cannot hide a change to the reader.
    fn old_frame(key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut payload = (key.len() as u32).to_le_bytes().to_vec();
        payload.extend_from_slice(key);
        payload.extend_from_slice(value);
        let mut f = (payload.len() as u32).to_le_bytes().to_vec();
        f.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        f.extend_from_slice(&payload);
        f
    }

    #[test]
    fn frames_written_before_tenants_replay_and_new_frames_carry_the_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let mut old = SEGMENT_MAGIC.to_vec();
        old.extend(old_frame(&[1; 16], b"old-a"));
        old.extend(old_frame(&[2; 16], b"old-b"));
        fs::write(segment_path(dir.path(), 1), &old).unwrap();
        let (mut s, recovery) = Spool::open(dir.path(), 1 << 20, 1 << 16).unwrap();
        assert_eq!(recovery.records, 2);
        assert_eq!(recovery.truncated_segments, 0);
        let shop = Tenant::parse("shop").unwrap();
        let new = vec![
            Record {
                key: vec![3; 16],
                value: b"new-shop".to_vec(),
                tenant: shop.clone(),
            },
            Record {
                key: vec![4; 16],
                value: b"new-default".to_vec(),
                tenant: Tenant::default(),
            },
        ];
        s.append(&new).unwrap();
        drop(s);
        // after a restart: the old frames as tenant `default`, then the new ones, in order
        let (mut s, recovery) = Spool::open(dir.path(), 1 << 20, 1 << 16).unwrap();
        assert_eq!((recovery.records, recovery.truncated_segments), (4, 0));
        let got = drain(&mut s, 10);
        let want = [
            (vec![1; 16], b"old-a".to_vec(), Tenant::default()),
            (vec![2; 16], b"old-b".to_vec(), Tenant::default()),
            (vec![3; 16], b"new-shop".to_vec(), shop),
            (vec![4; 16], b"new-default".to_vec(), Tenant::default()),
        ];
        let got: Vec<_> = got
            .into_iter()
            .map(|r| (r.key, r.value, r.tenant))
            .collect();
        assert_eq!(got, want);
        // a frame of tenant `default` is byte for byte the old format
        let mut buf = Vec::new();
        encode_frame(&new[1], &mut buf);
        assert_eq!(buf, old_frame(&[4; 16], b"new-default"));
        // and one of another tenant flags its key length and names the tenant
        let mut buf = Vec::new();
        encode_frame(&new[0], &mut buf);
        assert_eq!(buf.len() as u64, new[0].frame_len());
        assert_eq!(&buf[8..12], &(16u32 | TENANT_FLAG).to_le_bytes());
        assert_eq!(&buf[12..17], b"\x04shop");
    }

    #[test]
    fn a_frame_naming_an_invalid_tenant_ends_its_segment() {
        for name in [&b"Shop"[..], b"default", b"", &[0xff]] {
            let dir = tempfile::tempdir().unwrap();
            let mut payload = (16u32 | TENANT_FLAG).to_le_bytes().to_vec();
            payload.push(name.len() as u8);
            payload.extend_from_slice(name);
            payload.extend_from_slice(&[5; 16]);
            payload.extend_from_slice(b"value");
            let mut seg = SEGMENT_MAGIC.to_vec();
            seg.extend(old_frame(&[1; 16], b"good"));
            seg.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            seg.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            seg.extend_from_slice(&payload);
            fs::write(segment_path(dir.path(), 1), &seg).unwrap();
            let (mut s, recovery) = Spool::open(dir.path(), 1 << 20, 1 << 16).unwrap();
            assert_eq!(
                (recovery.records, recovery.truncated_segments),
                (1, 1),
                "{name:?}"
            );
            let got = drain(&mut s, 10);
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].value, b"good");
        }
    }

    #[test]
    fn empty_or_headerless_segment_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(segment_path(dir.path(), 3), b"CLEW").unwrap();
        let (mut s, recovery) = Spool::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        assert_eq!(recovery.records, 0);
        assert_eq!(recovery.truncated_segments, 1);
        assert!(!segment_path(dir.path(), 3).exists());
        s.append(&[rec(1, 1)]).unwrap();
        assert!(
            segment_path(dir.path(), 4).exists(),
            "new ids never reuse old ones"
        );
    }
}
