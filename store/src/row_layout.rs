//! Pieces of the wide-column row layout that every span-store backend shares
//! (`docs/adr/0001-row-layout.md`): the per-trace meta cell, and a span's cell within the
//! row (span id, then the span-kind discriminator), and the row key of a trace of a
//! tenant (`docs/adr/0011-tenants.md`). Keeping them in one place keeps the embedded and
//! HBase rows byte-for-byte alike; what is admitted into a row is decided in
//! `span_store::admission`.

use clew_proto::tenant::TENANT_PREFIX_LEN;
use clew_proto::{Span, SpanKind, Tenant, TraceId};

const META_V1: u8 = 1;
/// A meta cell of a tenant other than `default`: v1's fields, then the tenant's name
/// (length byte + bytes), which reads check.
const META_V2: u8 = 2;
/// Encoded length of a v1 meta cell (the default tenant's).
pub const META_LEN: usize = 14;
const META_FLAG_TRUNCATED: u8 = 1;

/// Longest row key: tenant prefix + trace id.
pub const ROW_KEY_MAX: usize = TENANT_PREFIX_LEN + 16;

/// The row key of a trace of a tenant: the bare 16-byte trace id for tenant `default`
/// (the key of every row written before tenants existed), `sha256(tenant)[..8] ++ trace id`
/// for every other tenant. Fixed length per kind, so rows of different tenants never
/// interleave under a prefix scan of one row.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RowKey {
    bytes: [u8; ROW_KEY_MAX],
    len: u8,
}

impl RowKey {
    pub fn new(tenant: &Tenant, trace: &TraceId) -> RowKey {
        let mut bytes = [0u8; ROW_KEY_MAX];
        let len = match tenant.key_prefix() {
            None => {
                bytes[..16].copy_from_slice(&trace.0);
                16
            }
            Some(prefix) => {
                bytes[..TENANT_PREFIX_LEN].copy_from_slice(&prefix);
                bytes[TENANT_PREFIX_LEN..].copy_from_slice(&trace.0);
                ROW_KEY_MAX
            }
        };
        RowKey {
            bytes,
            len: len as u8,
        }
    }

    /// The row key of `span`'s trace in `span`'s tenant.
    pub fn of(span: &Span) -> RowKey {
        RowKey::new(&span.tenant, &span.trace_id)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The trace id (the last 16 bytes).
    pub fn trace_id(&self) -> TraceId {
        let end = usize::from(self.len);
        let mut id = [0u8; 16];
        id.copy_from_slice(&self.bytes[end - 16..end]);
        TraceId(id)
    }
}

impl std::fmt::Debug for RowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.as_bytes()))
    }
}

/// What a row's meta cell says about the tenant it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaTenant<'a> {
    /// A v1 meta: tenant `default`.
    Default,
    /// A v2 meta: this tenant.
    Named(&'a str),
    /// Unreadable: nothing can be said.
    Unknown,
}

impl MetaTenant<'_> {
    /// Whether a row with this meta may be returned to `tenant`: only a readable meta of
    /// another tenant (a key prefix collision, 1 in 2^64 per pair of tenants) is refused.
    pub fn allows(&self, tenant: &Tenant) -> bool {
        match self {
            MetaTenant::Default => tenant.is_default(),
            MetaTenant::Named(name) => *name == tenant.as_str(),
            MetaTenant::Unknown => true,
        }
    }
}

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

    /// The meta cell of a row of `tenant`: v1 for `default`, v2 (with the tenant's name)
    /// for any other tenant.
    pub fn encode_for(&self, tenant: &Tenant) -> Vec<u8> {
        let mut out = self.encode().to_vec();
        if !tenant.is_default() {
            out[0] = META_V2;
            out.push(tenant.as_str().len() as u8);
            out.extend_from_slice(tenant.as_str().as_bytes());
        }
        out
    }

    /// Which tenant a meta cell (v1 or v2) names.
    pub fn tenant_of(bytes: &[u8]) -> MetaTenant<'_> {
        match bytes.first() {
            Some(&META_V1) if bytes.len() == META_LEN => MetaTenant::Default,
            Some(&META_V2) if bytes.len() > META_LEN => {
                let n = usize::from(bytes[META_LEN]);
                match bytes.get(META_LEN + 1..) {
                    Some(name) if name.len() == n => std::str::from_utf8(name)
                        .map(MetaTenant::Named)
                        .unwrap_or(MetaTenant::Unknown),
                    _ => MetaTenant::Unknown,
                }
            }
            _ => MetaTenant::Unknown,
        }
    }

    /// `None` for anything that is not a v1 or v2 meta cell.
    pub fn decode(bytes: &[u8]) -> Option<Meta> {
        let head_ok = match bytes.first() {
            Some(&META_V1) => bytes.len() == META_LEN,
            Some(&META_V2) => !matches!(Meta::tenant_of(bytes), MetaTenant::Unknown),
            _ => false,
        };
        if !head_ok {
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
    fn row_keys_and_metas_of_tenants() {
        let trace = TraceId([9; 16]);
        let default = RowKey::new(&Tenant::default(), &trace);
        assert_eq!(
            default.as_bytes(),
            &trace.0,
            "tenant default keeps the bare trace id"
        );
        let shop = Tenant::parse("shop").unwrap();
        let key = RowKey::new(&shop, &trace);
        assert_eq!(key.as_bytes().len(), 24);
        assert_eq!(&key.as_bytes()[..8], &shop.key_prefix().unwrap());
        assert_eq!(key.trace_id(), trace);
        assert_eq!(default.trace_id(), trace);
        assert_ne!(key, RowKey::new(&Tenant::parse("shop2").unwrap(), &trace));

        let meta = Meta {
            spans: 3,
            bytes: 99,
            truncated: false,
        };
        let v1 = meta.encode_for(&Tenant::default());
        assert_eq!(v1, meta.encode().to_vec());
        assert_eq!(Meta::tenant_of(&v1), MetaTenant::Default);
        let v2 = meta.encode_for(&shop);
        assert_eq!(Meta::decode(&v2), Some(meta));
        assert_eq!(Meta::tenant_of(&v2), MetaTenant::Named("shop"));
        assert!(MetaTenant::Named("shop").allows(&shop));
        assert!(!MetaTenant::Named("shop").allows(&Tenant::default()));
        assert!(!MetaTenant::Default.allows(&shop));
        assert_eq!(Meta::tenant_of(&v2[..v2.len() - 1]), MetaTenant::Unknown);
        assert_eq!(Meta::decode(&v2[..v2.len() - 1]), None);
    }

    #[test]
    fn discriminator_keeps_known_kinds_and_folds_unknown_ones() {
        assert_eq!(discriminator(SpanKind::Server), 2);
        assert_eq!(discriminator(SpanKind::Client), 3);
        assert_eq!(discriminator(SpanKind::Unknown(77)), 0xff);
    }
}
