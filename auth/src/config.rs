//! `[auth]` and its `[[auth.tokens]]`: the bearer tokens clew accepts, each with a tenant
//! and scopes.
//!
//! ```toml
//! [auth]
//! [[auth.tokens]]
//! token = "…"                  # the token itself (at least 16 characters) …
//! tenant = "shop"
//! scopes = ["ingest"]
//! [[auth.tokens]]
//! token_sha256 = "9f86d0…"     # … or the hex SHA-256 of it, so the file holds no secret
//! tenant = "shop"
//! scopes = ["read"]
//! ```
//!
//! Without an `[auth]` section (or with no tokens at all) nothing is checked and every
//! caller is tenant `default`. Printed back (`clew config`), a plain `token` becomes its
//! `token_sha256`: the same configuration, without the secret.

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Plain tokens shorter than this are refused: a short token can be guessed, and its
/// printed SHA-256 tested against guesses.
pub const MIN_TOKEN_CHARS: usize = 16;
/// Longest tenant name.
pub const MAX_TENANT_CHARS: usize = clew_proto::tenant::MAX_TENANT_CHARS;

/// `[auth]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `[[auth.tokens]]`: every token accepted. Empty: authentication is off.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<TokenConfig>,
}

/// One `[[auth.tokens]]` entry: exactly one of `token` and `token_sha256`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The token as clients send it (`Authorization: Bearer <token>`).
    #[serde(default)]
    pub token: Option<String>,
    /// Lower- or upper-case hex of the token's SHA-256 (64 digits).
    #[serde(default)]
    pub token_sha256: Option<String>,
    /// Who the token's holder is: the tenant their spans are stored under and their
    /// queries read (`[a-z0-9][a-z0-9_-]{0,63}`).
    #[serde(default)]
    pub tenant: String,
    /// Among `ingest`, `read`, `admin`.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// Never shows the token.
impl fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenConfig")
            .field("token", &self.token.as_ref().map(|_| "****"))
            .field("token_sha256", &self.token_sha256)
            .field("tenant", &self.tenant)
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// Printed with the plain token replaced by its SHA-256.
impl Serialize for TokenConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Printed<'a> {
            token_sha256: String,
            tenant: &'a str,
            scopes: &'a [String],
        }
        let token_sha256 = match (&self.token, &self.token_sha256) {
            (Some(token), _) => hex::encode(Sha256::digest(token.as_bytes())),
            (None, Some(hash)) => hash.to_ascii_lowercase(),
            (None, None) => String::new(),
        };
        Printed {
            token_sha256,
            tenant: &self.tenant,
            scopes: &self.scopes,
        }
        .serialize(s)
    }
}

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Send spans (OTLP, Zipkin, the agent's receivers) and poll sampling strategies.
    Ingest,
    /// Read traces: the query API, the Jaeger APIs, sampling strategies, `/metrics`.
    Read,
    /// Everything, including what only an operator may do (`POST /api/v1/purge`).
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Ingest, Scope::Read, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A configuration error, naming the entry (`auth.tokens[2]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// One checked entry: the digest clients' tokens are compared with, and who they are.
pub(crate) struct Checked {
    pub digest: [u8; 32],
    pub tenant: clew_proto::Tenant,
    pub scopes: Vec<Scope>,
}

impl AuthConfig {
    /// Whether tokens are checked at all.
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Checks every entry without I/O; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.checked().map(|_| ())
    }

    pub(crate) fn checked(&self) -> Result<Vec<Checked>, ConfigError> {
        let mut out: Vec<Checked> = Vec::with_capacity(self.tokens.len());
        for (i, entry) in self.tokens.iter().enumerate() {
            let bad = |what: String| ConfigError(format!("auth.tokens[{i}]: {what}"));
            let digest = match (&entry.token, &entry.token_sha256) {
                (Some(_), Some(_)) => {
                    return Err(bad(
                        "has both token and token_sha256; give exactly one".into()
                    ))
                }
                (None, None) => {
                    return Err(bad("has neither token nor token_sha256".into()));
                }
                (Some(token), None) => {
                    if token.trim().is_empty() {
                        return Err(bad("token is empty".into()));
                    }
                    if token.trim() != token || token.chars().any(char::is_control) {
                        return Err(bad(
                            "token has spaces or control characters at its ends or inside".into(),
                        ));
                    }
                    if token.chars().count() < MIN_TOKEN_CHARS {
                        return Err(bad(format!(
                            "token is shorter than {MIN_TOKEN_CHARS} characters"
                        )));
                    }
                    Sha256::digest(token.as_bytes()).into()
                }
                (None, Some(hash)) => {
                    let mut digest = [0u8; 32];
                    if hash.len() != 64 || hex::decode_to_slice(hash, &mut digest).is_err() {
                        return Err(bad(format!(
                            "token_sha256 is not 64 hex digits (a SHA-256), it has {} characters{}",
                            hash.len(),
                            if hash.chars().all(|c| c.is_ascii_hexdigit()) {
                                ""
                            } else {
                                " and non-hex ones"
                            }
                        )));
                    }
                    digest
                }
            };
            if entry.tenant.is_empty() {
                return Err(bad("tenant is missing or empty".into()));
            }
            let tenant =
                clew_proto::Tenant::parse(&entry.tenant).map_err(|e| bad(e.to_string()))?;
            if entry.scopes.is_empty() {
                return Err(bad(
                    "scopes is missing or empty (give some of \"ingest\", \"read\", \"admin\")"
                        .into(),
                ));
            }
            let mut scopes = Vec::new();
            for s in &entry.scopes {
                match Scope::parse(s) {
                    Some(scope) => scopes.push(scope),
                    None => {
                        return Err(bad(format!(
                            "unknown scope {s:?} (expected \"ingest\", \"read\" or \"admin\")"
                        )))
                    }
                }
            }
            if let Some(j) = out.iter().position(|c| c.digest == digest) {
                return Err(bad(format!("is the same token as auth.tokens[{j}]")));
            }
            out.push(Checked {
                digest,
                tenant,
                scopes,
            });
        }
        Ok(out)
    }
}

/// The `[auth]` section of a whole config file's text (absent: auth off), validated; the
/// run-time reload reads the file with this.
pub fn parse_auth_section(text: &str) -> Result<AuthConfig, ConfigError> {
    let mut file: toml::Table = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
    let config = match file.remove("auth") {
        None => AuthConfig::default(),
        Some(section) => section
            .try_into::<AuthConfig>()
            .map_err(|e| ConfigError(format!("in [auth]: {e}")))?,
    };
    config.validate()?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AuthConfig, ConfigError> {
        parse_auth_section(text)
    }

    #[test]
    fn no_section_is_auth_off() {
        assert!(!parse("data_dir = \"x\"\n").unwrap().enabled());
        assert!(!AuthConfig::default().enabled());
    }

    #[test]
    fn entries_are_checked_and_errors_name_them() {
        let ok = "[[auth.tokens]]\ntoken = \"0123456789abcdef\"\ntenant = \"shop\"\nscopes = [\"ingest\"]\n";
        assert!(parse(ok).unwrap().enabled());
        let cases = [
            ("token = \"0123456789abcdef\"\ntoken_sha256 = \"00\"\ntenant = \"t\"\nscopes = [\"read\"]", "auth.tokens[1]: has both token and token_sha256"),
            ("tenant = \"t\"\nscopes = [\"read\"]", "auth.tokens[1]: has neither"),
            ("token = \"\"\ntenant = \"t\"\nscopes = [\"read\"]", "auth.tokens[1]: token is empty"),
            ("token = \"short\"\ntenant = \"t\"\nscopes = [\"read\"]", "shorter than 16"),
            ("token_sha256 = \"zz\"\ntenant = \"t\"\nscopes = [\"read\"]", "auth.tokens[1]: token_sha256 is not 64 hex digits"),
            ("token = \"fedcba9876543210\"\ntenant = \"t\"\nscopes = [\"write\"]", "auth.tokens[1]: unknown scope \"write\""),
            ("token = \"fedcba9876543210\"\ntenant = \"t\"\nscopes = []", "auth.tokens[1]: scopes is missing"),
            ("token = \"fedcba9876543210\"\nscopes = [\"read\"]", "auth.tokens[1]: tenant is missing"),
            ("token = \"fedcba9876543210\"\ntenant = \"a b\"\nscopes = [\"read\"]", "tenant \"a b\""),
            ("token = \"fedcba9876543210\"\ntenant = \"Shop\"\nscopes = [\"read\"]", "tenant \"Shop\" must be"),
            ("token = \"0123456789abcdef\"\ntenant = \"t\"\nscopes = [\"read\"]", "auth.tokens[1]: is the same token as auth.tokens[0]"),
            ("tokne = \"x\"", "unknown field"),
        ];
        for (entry, want) in cases {
            let text = format!("{ok}[[auth.tokens]]\n{entry}\n");
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(want), "{entry}: {err}");
        }
    }

    #[test]
    fn printed_without_the_token_and_reads_back_equivalent() {
        let text = "[[auth.tokens]]\ntoken = \"0123456789abcdef\"\ntenant = \"shop\"\nscopes = [\"ingest\", \"read\"]\n";
        let c = parse(text).unwrap();
        let printed = toml::to_string(&c).unwrap();
        assert!(!printed.contains("0123456789abcdef"), "{printed}");
        assert!(
            printed.contains(&hex::encode(Sha256::digest(b"0123456789abcdef"))),
            "{printed}"
        );
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
        let back: AuthConfig = toml::from_str(&printed).unwrap();
        assert_eq!(
            back.checked().unwrap()[0].digest,
            c.checked().unwrap()[0].digest
        );
    }
}
