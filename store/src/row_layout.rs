//! Pieces of the wide-column row layout that every span-store backend shares
//! (`docs/adr/0001-row-layout.md`): the per-trace meta cell, and a span's cell within the
//! row (span id, then the span-kind discriminator). Keeping them in one place keeps the
//! embedded and HBase rows byte-for-byte alike; what is admitted into a row is decided in
//! `span_store::admission`.

use clew_proto::{Span, SpanKind};

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

/// Length of the part of a cell's column that follows the trace: span id + discriminator.
pub const CELL_SUFFIX_LEN: usize = 9;

/// A span's cell within its trace's row: span id, then [`discriminator`] (client and
/// server spans that share one span id are two cells).
pub fn cell_suffix(span: &Span) -> [u8; CELL_SUFFIX_LEN] {
    let mut q = [0u8; CELL_SUFFIX_LEN];
    q[..8].copy_from_slice(&span.span_id.0);
    q[8] = discriminator(span.kind);
    q
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
