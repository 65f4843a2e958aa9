//! The tenant a span belongs to and a query runs for (`docs/adr/0011-tenants.md`).
//!
//! A tenant never comes from span data or query text: a receiver stamps the authenticated
//! caller's tenant on every span it decodes, and every read of the store and the index
//! takes the caller's tenant as a separate argument. Without authentication everything is
//! [`Tenant::default`] (`default`), whose rows and documents look exactly as before tenants
//! existed.

use std::fmt;
use std::sync::{Arc, OnceLock};

/// Longest tenant name.
pub const MAX_TENANT_CHARS: usize = 64;
/// The name of the tenant of everything written and read without authentication.
pub const DEFAULT_TENANT: &str = "default";
/// Length of [`Tenant::key_prefix`].
pub const TENANT_PREFIX_LEN: usize = 8;

/// A validated tenant name (`[a-z0-9][a-z0-9_-]{0,63}`) with its key prefix computed once.
/// Cheap to clone (`Arc` inside); compared and hashed by name.
#[derive(Clone)]
pub struct Tenant(Arc<Inner>);

struct Inner {
    name: Box<str>,
    /// `None` for the default tenant, whose keys carry no prefix.
    prefix: Option<[u8; TENANT_PREFIX_LEN]>,
}

/// Why a tenant name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "tenant {0:?} must be 1 to 64 characters among a-z 0-9 - _, starting with a letter or digit"
)]
pub struct TenantError(pub String);

impl Tenant {
    /// Checks `name` against `[a-z0-9][a-z0-9_-]{0,63}`.
    pub fn parse(name: &str) -> Result<Tenant, TenantError> {
        let bytes = name.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= MAX_TENANT_CHARS
            && matches!(bytes[0], b'a'..=b'z' | b'0'..=b'9')
            && bytes
                .iter()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'));
        if !ok {
            return Err(TenantError(name.to_string()));
        }
        if name == DEFAULT_TENANT {
            return Ok(Tenant::default());
        }
        Ok(Tenant(Arc::new(Inner {
            name: name.into(),
            prefix: Some(prefix_of(name)),
        })))
    }

    pub fn as_str(&self) -> &str {
        &self.0.name
    }

    pub fn is_default(&self) -> bool {
        self.0.prefix.is_none()
    }

    /// The first 8 bytes of SHA-256 of the name, which lead every row key of the tenant;
    /// `None` for the default tenant (its keys are bare trace ids, as before tenants).
    pub fn key_prefix(&self) -> Option<[u8; TENANT_PREFIX_LEN]> {
        self.0.prefix
    }
}

fn prefix_of(name: &str) -> [u8; TENANT_PREFIX_LEN] {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(name.as_bytes());
    let mut out = [0u8; TENANT_PREFIX_LEN];
    out.copy_from_slice(&digest[..TENANT_PREFIX_LEN]);
    out
}

impl Default for Tenant {
    /// The tenant `default` (one shared allocation).
    fn default() -> Tenant {
        static DEFAULT: OnceLock<Tenant> = OnceLock::new();
        DEFAULT
            .get_or_init(|| {
                Tenant(Arc::new(Inner {
                    name: DEFAULT_TENANT.into(),
                    prefix: None,
                }))
            })
            .clone()
    }
}

impl PartialEq for Tenant {
    fn eq(&self, other: &Tenant) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.name == other.0.name
    }
}

impl Eq for Tenant {}

impl std::hash::Hash for Tenant {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.name.hash(state)
    }
}

impl PartialOrd for Tenant {
    fn partial_cmp(&self, other: &Tenant) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Tenant {
    fn cmp(&self, other: &Tenant) -> std::cmp::Ordering {
        self.0.name.cmp(&other.0.name)
    }
}

impl fmt::Debug for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0.name, f)
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.name)
    }
}

impl std::str::FromStr for Tenant {
    type Err = TenantError;
    fn from_str(s: &str) -> Result<Tenant, TenantError> {
        Tenant::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_only_other_tenants_get_a_prefix() {
        for ok in ["default", "shop", "a", "0-b_c", &"x".repeat(64)] {
            assert_eq!(Tenant::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "Shop",
            "-a",
            "_a",
            "a b",
            "a.b",
            "a:b",
            "*",
            &"x".repeat(65),
        ] {
            assert!(Tenant::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Tenant::parse("default").unwrap().is_default());
        assert_eq!(Tenant::default().key_prefix(), None);
        let shop = Tenant::parse("shop").unwrap();
        let prefix = shop.key_prefix().unwrap();
        assert_ne!(Some(prefix), Tenant::parse("shop2").unwrap().key_prefix());
        // the first 8 bytes of SHA-256("shop"): part of every stored key, never to change
        assert_eq!(hex::encode(prefix), "8d9001d32c6a703d");
        assert_eq!(shop, Tenant::parse("shop").unwrap());
        assert_ne!(shop, Tenant::default());
    }
}
