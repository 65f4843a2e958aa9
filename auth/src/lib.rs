//! # clew-auth: who may call clew's listeners
//!
//! Every listener of `clew serve` and `clew agent` — OTLP gRPC and HTTP, Zipkin, remote
//! sampling HTTP and gRPC, the query API with the UI and Jaeger's HTTP API, Jaeger remote
//! storage gRPC, the agent's metrics endpoint — is wrapped in the one [`AuthLayer`]:
//!
//! ```text
//!  request ─▶ AuthLayer: need = policy(path) ─▶ Open? ───────────────────────────────▶ service
//!                 │                                                                    ▲
//!                 └─▶ Authenticator::authorize(Authorization, need)                    │
//!                        ├─ Ok(Principal {tenant, scopes}) ─▶ request extensions ─────┘
//!                        ├─ no / not a bearer token, unknown token ─▶ 401 | UNAUTHENTICATED
//!                        └─ token without the scope ──────────────▶ 403 | PERMISSION_DENIED
//! ```
//!
//! - [`config`]: `[auth]` / `[[auth.tokens]]` and their validation.
//! - [`Authenticator`]: the tokens in force, as SHA-256 digests compared in constant time
//!   (a plain token from the file is hashed when read); [`Authenticator::replace`] swaps
//!   them while clew runs (the config file was edited), so a removed entry is revoked.
//! - [`layer`]: the tower layer; HTTP bodies are rendered by each listener in its own
//!   protocol's error shape ([`Render`]), gRPC answers are trailers-only statuses.
//! - [`metrics`] counts refusals (`clew_auth_failures_total{listener,reason}`).
//!
//! Answers never say whether a token exists or which tenant it belongs to: an unknown token
//! and a malformed header get the same 401. Tokens are never logged or counted by value.
//!
//! The [`Principal`]'s tenant is what separates data: receivers stamp it on every span they
//! decode and every read of the store and the index takes it as an argument
//! (`docs/adr/0011-tenants.md`).

pub mod config;
pub mod layer;
pub mod metrics;

use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use config::{parse_auth_section, AuthConfig, ConfigError, Scope, TokenConfig};
pub use layer::{AuthLayer, Render};

/// The tenant of every caller while authentication is off.
pub const DEFAULT_TENANT: &str = clew_proto::tenant::DEFAULT_TENANT;
/// The realm of `WWW-Authenticate: Bearer realm="clew"`.
pub const REALM: &str = "clew";

/// Who a request comes from, put into its extensions by [`AuthLayer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: clew_proto::Tenant,
    pub scopes: Arc<[Scope]>,
}

impl Principal {
    /// Whether this principal may do what `need` asks (`admin` may do everything).
    pub fn allows(&self, need: &[Scope]) -> bool {
        self.scopes
            .iter()
            .any(|s| *s == Scope::Admin || need.contains(s))
    }
}

/// What an endpoint requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Anyone (`/healthz`, `/readyz`, the UI's static files).
    Open,
    /// A token with one of these scopes (or `admin`).
    AnyOf(&'static [Scope]),
}

pub const INGEST: Need = Need::AnyOf(&[Scope::Ingest]);
pub const READ: Need = Need::AnyOf(&[Scope::Read]);
pub const ADMIN: Need = Need::AnyOf(&[Scope::Admin]);
/// Remote sampling: SDKs hold ingest tokens, UIs and tools read ones.
pub const INGEST_OR_READ: Need = Need::AnyOf(&[Scope::Ingest, Scope::Read]);

/// Why a request was refused. The text is what the caller is told: it names neither the
/// token nor a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header, or not `Bearer <token>`.
    #[error("authentication required: send Authorization: Bearer <token>")]
    Missing,
    /// A bearer token that is not one of the configured ones.
    #[error("invalid bearer token")]
    Invalid,
    /// A valid token without the scope the endpoint needs.
    #[error("this token is not allowed here: it needs the {} scope", scope_list(.0))]
    Forbidden(&'static [Scope]),
}

impl AuthError {
    /// HTTP status: 401 or 403.
    pub fn http_status(&self) -> http::StatusCode {
        match self {
            AuthError::Missing | AuthError::Invalid => http::StatusCode::UNAUTHORIZED,
            AuthError::Forbidden(_) => http::StatusCode::FORBIDDEN,
        }
    }

    /// gRPC code: 16 UNAUTHENTICATED or 7 PERMISSION_DENIED.
    pub fn grpc_code(&self) -> i32 {
        match self {
            AuthError::Missing | AuthError::Invalid => 16,
            AuthError::Forbidden(_) => 7,
        }
    }

    /// The `reason` label of `clew_auth_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing_token",
            AuthError::Invalid => "invalid_token",
            AuthError::Forbidden(_) => "insufficient_scope",
        }
    }
}

/// `ingest`, `ingest or read`, or `admin` (an admin token may do everything anyway).
fn scope_list(scopes: &[Scope]) -> String {
    let names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    names.join(" or ")
}

struct Entry {
    digest: [u8; 32],
    principal: Principal,
}

/// The tokens in force. Cheap to share (`Arc`); [`Authenticator::replace`] swaps them.
pub struct Authenticator {
    /// Fixed at start: auth cannot be switched on or off without a restart, so a file
    /// edited to hold no tokens refuses everyone rather than opening every listener.
    enabled: bool,
    entries: RwLock<Arc<[Entry]>>,
    /// Every caller while auth is off: tenant `default`, every scope.
    anonymous: Principal,
    /// A caller of an open endpoint (`/healthz`) while auth is on: no scope at all.
    unauthenticated: Principal,
}

impl Authenticator {
    /// From a validated `[auth]`; with no tokens, authentication is off.
    pub fn new(config: &AuthConfig) -> Result<Arc<Authenticator>, ConfigError> {
        Ok(Arc::new(Authenticator {
            enabled: config.enabled(),
            entries: RwLock::new(entries(config)?),
            anonymous: Principal {
                tenant: clew_proto::Tenant::default(),
                scopes: Arc::from(Scope::ALL),
            },
            unauthenticated: Principal {
                tenant: clew_proto::Tenant::default(),
                scopes: Arc::from([]),
            },
        }))
    }

    /// Authentication off: every caller is tenant `default` with every scope.
    pub fn disabled() -> Arc<Authenticator> {
        Authenticator::new(&AuthConfig::default()).expect("empty auth config is valid")
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Puts `config`'s tokens in force for the following requests. Refused (the tokens in
    /// force stay) when it would switch authentication on or off, which needs a restart.
    pub fn replace(&self, config: &AuthConfig) -> Result<usize, ConfigError> {
        let new = entries(config)?;
        if !self.enabled && config.enabled() {
            return Err(ConfigError(
                "tokens were added to a configuration that started without [auth]; authentication is switched on by a restart".into(),
            ));
        }
        let n = new.len();
        *self.entries.write().unwrap_or_else(|e| e.into_inner()) = new;
        Ok(n)
    }

    /// Checks `authorization` (the header's value) against `need`. While auth is off every
    /// caller is tenant `default` with every scope; an open endpoint's caller is, while
    /// auth is on, tenant `default` with no scope.
    pub fn authorize(
        &self,
        authorization: Option<&[u8]>,
        need: Need,
    ) -> Result<Principal, AuthError> {
        if !self.enabled {
            return Ok(self.anonymous.clone());
        }
        let scopes = match need {
            Need::Open => return Ok(self.unauthenticated.clone()),
            Need::AnyOf(scopes) => scopes,
        };
        let token = authorization.and_then(bearer).ok_or(AuthError::Missing)?;
        let digest: [u8; 32] = Sha256::digest(token).into();
        let entries = self
            .entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // Every entry is compared, whatever matched, so the time taken says nothing about
        // where (or whether) the token is in the table.
        let mut found: Option<&Entry> = None;
        for entry in entries.iter() {
            if bool::from(entry.digest.ct_eq(&digest)) {
                found = Some(entry);
            }
        }
        let principal = found.ok_or(AuthError::Invalid)?.principal.clone();
        if principal.allows(scopes) {
            Ok(principal)
        } else {
            Err(AuthError::Forbidden(scopes))
        }
    }
}

fn entries(config: &AuthConfig) -> Result<Arc<[Entry]>, ConfigError> {
    Ok(config
        .checked()?
        .into_iter()
        .map(|c| Entry {
            digest: c.digest,
            principal: Principal {
                tenant: c.tenant,
                scopes: Arc::from(c.scopes),
            },
        })
        .collect())
}

/// The token of `Bearer <token>` (scheme case-insensitive, RFC 6750), if that is what the
/// header holds.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || !rest.first()?.is_ascii_whitespace() {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(entries: &[(&str, &str, &[&str])]) -> AuthConfig {
        AuthConfig {
            tokens: entries
                .iter()
                .map(|(token, tenant, scopes)| TokenConfig {
                    token: Some(token.to_string()),
                    tenant: tenant.to_string(),
                    scopes: scopes.iter().map(|s| s.to_string()).collect(),
                    ..Default::default()
                })
                .collect(),
        }
    }

    const INGEST_TOKEN: &str = "ingest-0123456789";
    const ADMIN_TOKEN: &str = "admin-0123456789ab";

    fn auth() -> Arc<Authenticator> {
        Authenticator::new(&config(&[
            (INGEST_TOKEN, "shop", &["ingest"]),
            (ADMIN_TOKEN, "ops", &["admin"]),
        ]))
        .unwrap()
    }

    fn header(token: &str) -> Vec<u8> {
        format!("Bearer {token}").into_bytes()
    }

    #[test]
    fn scopes_are_checked_and_admin_may_do_everything() {
        let a = auth();
        let p = a.authorize(Some(&header(INGEST_TOKEN)), INGEST).unwrap();
        assert_eq!(p.tenant.as_str(), "shop");
        assert_eq!(
            a.authorize(Some(&header(INGEST_TOKEN)), READ),
            Err(AuthError::Forbidden(&[Scope::Read]))
        );
        assert!(a
            .authorize(Some(&header(INGEST_TOKEN)), INGEST_OR_READ)
            .is_ok());
        for need in [INGEST, READ, ADMIN, INGEST_OR_READ] {
            assert!(a.authorize(Some(&header(ADMIN_TOKEN)), need).is_ok());
        }
    }

    #[test]
    fn missing_malformed_and_unknown_tokens() {
        let a = auth();
        assert_eq!(a.authorize(None, READ), Err(AuthError::Missing));
        for bad in [
            "Basic dXNlcjpwYXNz",
            "Bearer",
            "Bearer ",
            "Bearerx ingest-0123456789",
            INGEST_TOKEN,
        ] {
            assert_eq!(
                a.authorize(Some(bad.as_bytes()), INGEST),
                Err(AuthError::Missing),
                "{bad}"
            );
        }
        assert_eq!(
            a.authorize(Some(&header("ingest-0123456780")), INGEST),
            Err(AuthError::Invalid)
        );
        assert!(a
            .authorize(Some(b"bearer   ingest-0123456789  "), INGEST)
            .is_ok());
        // open endpoints need nothing, and grant nothing
        assert!(a.authorize(None, Need::Open).unwrap().scopes.is_empty());
    }

    #[test]
    fn token_sha256_entries_match_the_plain_token() {
        let hash = hex::encode(Sha256::digest(INGEST_TOKEN.as_bytes())).to_uppercase();
        let a = Authenticator::new(&AuthConfig {
            tokens: vec![TokenConfig {
                token_sha256: Some(hash),
                tenant: "shop".into(),
                scopes: vec!["read".into()],
                ..Default::default()
            }],
        })
        .unwrap();
        assert!(a.authorize(Some(&header(INGEST_TOKEN)), READ).is_ok());
    }

    #[test]
    fn replace_revokes_and_cannot_switch_auth_on_or_off() {
        let a = auth();
        a.replace(&config(&[(ADMIN_TOKEN, "ops", &["admin"])]))
            .unwrap();
        assert_eq!(
            a.authorize(Some(&header(INGEST_TOKEN)), INGEST),
            Err(AuthError::Invalid)
        );
        // every token removed: everyone refused, nothing opened
        a.replace(&AuthConfig::default()).unwrap();
        assert_eq!(
            a.authorize(Some(&header(ADMIN_TOKEN)), INGEST),
            Err(AuthError::Invalid)
        );
        let off = Authenticator::disabled();
        assert!(off
            .replace(&config(&[(ADMIN_TOKEN, "ops", &["admin"])]))
            .is_err());
        let p = off.authorize(None, ADMIN).unwrap();
        assert_eq!(p.tenant.as_str(), DEFAULT_TENANT);
    }
}
