//! Pieces of the wide-column row layout that every span-store backend shares
//! (`docs/adr/0001-row-layout.md`): the per-trace meta cell, the span-kind discriminator
//! that follows the span id in a cell's column, and the accounting of one write batch.
//! Keeping them in one place keeps the embedded and HBase rows byte-for-byte alike.

use std::time::Instant;

use clew_proto::{RejectReason, SpanKind};

use crate::metrics as m;
use crate::WriteReport;

const META_V1: u8 = 1;
/// Encoded length of a meta cell.
pub const META_LEN: usize = 14;
const META_FLAG_TRUNCATED: u8 = 1;

/// Per-trace bookkeeping kept in the trace's meta cell: span count, encoded bytes and the
/// truncated flag (set once a span was rejected by the per-trace cap).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Meta {
    pub spans: u32,
    pub bytes: u64,
    pub truncated: bool,
}

impl Meta {
    /// Version byte, span count (u32 LE), bytes (u64 LE), flags.
    pub fn encode(&self) -> [u8; META_LEN] {
        let mut out = [0u8; META_LEN];
        out[0] = META_V1;
        out[1..5].copy_from_slice(&self.spans.to_le_bytes());
        out[5..13].copy_from_slice(&self.bytes.to_le_bytes());
        out[13] = if self.truncated {
            META_FLAG_TRUNCATED
        } else {
            0
        };
        out
    }

    /// `None` for anything that is not a v1 meta cell.
    pub fn decode(bytes: &[u8]) -> Option<Meta> {
        if bytes.len() != META_LEN || bytes[0] != META_V1 {
            return None;
        }
        Some(Meta {
            spans: u32::from_le_bytes(bytes[1..5].try_into().ok()?),
            bytes: u64::from_le_bytes(bytes[5..13].try_into().ok()?),
            truncated: bytes[13] & META_FLAG_TRUNCATED != 0,
        })
    }
}

/// The byte after the span id in a cell's column: the span kind, so a client and a server
/// span sharing one span id are two cells. Out-of-range kinds share `0xff`.
pub fn discriminator(kind: SpanKind) -> u8 {
    match kind {
        SpanKind::Unknown(_) => 0xff,
        known => known.as_i32() as u8,
    }
}

/// What one write batch did, for the report and the metrics.
#[derive(Default)]
pub(crate) struct WriteOutcome {
    pub report: WriteReport,
    pub stored: u64,
    pub bytes: u64,
    pub duplicates: u64,
}

impl WriteOutcome {
    /// Emits the batch's store metrics for `backend` and hands back the report.
    pub fn finish(self, backend: &'static str, started: Instant) -> WriteReport {
        metrics::histogram!(m::STORE_WRITE_SECONDS, "backend" => backend)
            .record(started.elapsed().as_secs_f64());
        metrics::counter!(m::STORE_SPANS_WRITTEN_TOTAL, "backend" => backend)
            .increment(self.stored);
        metrics::counter!(m::STORE_BYTES_WRITTEN_TOTAL, "backend" => backend).increment(self.bytes);
        if self.duplicates > 0 {
            metrics::counter!(m::STORE_DUPLICATE_SPANS_TOTAL, "backend" => backend)
                .increment(self.duplicates);
        }
        if !self.report.rejected.is_empty() {
            metrics::counter!(
                m::STORE_SPANS_REJECTED_TOTAL,
                "backend" => backend,
                "reason" => RejectReason::TraceTooLarge.as_str()
            )
            .increment(self.report.rejected.len() as u64);
        }
        self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_and_rejects_other_versions() {
        let meta = Meta {
            spans: 7,
            bytes: 1 << 40,
            truncated: true,
        };
        assert_eq!(meta.encode().len(), META_LEN);
        assert_eq!(Meta::decode(&meta.encode()), Some(meta));
        assert_eq!(Meta::decode(&[]), None);
        assert_eq!(Meta::decode(&[2; META_LEN]), None);
        let mut other = meta.encode();
        other[0] = 2;
        assert_eq!(Meta::decode(&other), None);
        assert_eq!(Meta::decode(&other[..5]), None);
    }

    #[test]
    fn discriminator_keeps_known_kinds_and_folds_unknown_ones() {
        assert_eq!(discriminator(SpanKind::Server), 2);
        assert_eq!(discriminator(SpanKind::Client), 3);
        assert_eq!(discriminator(SpanKind::Unknown(77)), 0xff);
    }
}
