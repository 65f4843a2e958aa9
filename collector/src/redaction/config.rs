//! `[redaction]`: which attribute keys and which values are dropped, masked or hashed
//! before anything is written. On by default with the built-in rules ([`built_in_rules`]).
//!
//! ```toml
//! [redaction]
//! enabled = true
//! default_rules = true            # the built-in key globs and value detectors
//! exempt_keys = ["invoice_no"]    # besides [collector] business_keys: no value detectors
//! regex_size_limit_bytes = 1048576
//! # hash_key = "…"                # or CLEW_REDACTION_HASH_KEY; needed by `hash` rules
//!
//! [[redaction.rules]]
//! name = "user_email"             # optional: rules[N] otherwise
//! attribute = "user.email"        # a glob over attribute keys (`*`, `?`), or …
//! action = "hash"                 # drop | mask | hash
//!
//! [[redaction.rules]]
//! pattern = "ssn=(\\d{3}-\\d{2}-\\d{4})"   # … a regex over string values (group 1 if any)
//! action = "mask"
//! keep_last = 4
//! ```

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The environment variable that supplies `hash_key` (it wins over the file).
pub const HASH_KEY_ENV: &str = "CLEW_REDACTION_HASH_KEY";

/// Shortest accepted `hash_key`: a short key makes the hashes guessable.
pub const MIN_HASH_KEY_BYTES: usize = 16;

/// `[redaction]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedactionConfig {
    /// Redact at all (off: spans are stored as received).
    pub enabled: bool,
    /// Apply the built-in rules ([`built_in_rules`]) after the configured ones.
    pub default_rules: bool,
    /// Key of the `hash` action's HMAC-SHA256, at least 16 bytes. Never printed; the
    /// environment variable `CLEW_REDACTION_HASH_KEY` wins over the file.
    #[serde(skip_serializing)]
    pub hash_key: Option<String>,
    /// Attribute keys exempt from the value detectors (besides `[collector] business_keys`,
    /// which always are): an order number may pass a Luhn check. Rules naming such a key by
    /// its `attribute` still apply.
    pub exempt_keys: Vec<String>,
    /// Most memory one compiled `pattern` may take (the regex crate's `size_limit`); a
    /// pattern that needs more is a config error.
    pub regex_size_limit_bytes: usize,
    /// The configured rules, tried before the built-in ones (the first key rule that
    /// matches a key wins).
    pub rules: Vec<RuleConfig>,
}

impl Default for RedactionConfig {
    fn default() -> Self {
        RedactionConfig {
            enabled: true,
            default_rules: true,
            hash_key: None,
            exempt_keys: Vec::new(),
            regex_size_limit_bytes: 1 << 20,
            rules: Vec::new(),
        }
    }
}

/// One `[[redaction.rules]]` entry: `attribute` (a key glob) or `pattern` (a value regex).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Name in `clew_redactions_total{rule}` and `clew.redacted` (default `rules[N]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Glob over attribute keys (`*` any run, `?` one character, ASCII case-insensitive):
    /// the whole value of a matching key is redacted, whatever its type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute: Option<String>,
    /// Regex searched in string values, span and event names and status messages; with a
    /// capture group, only group 1 is redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    pub action: Action,
    /// `mask` only: keep at most this many trailing characters (never more than a quarter
    /// of the value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<usize>,
}

/// What happens to what a rule matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The attribute is removed (in names and messages, where there is no key to remove,
    /// the matched text is).
    Drop,
    /// Replaced by `****`, followed by at most `keep_last` trailing characters.
    Mask,
    /// Replaced by `hmac:` and 32 hex digits of its keyed HMAC-SHA256: equal values stay
    /// equal, so they stay searchable.
    Hash,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Drop => "drop",
            Action::Mask => "mask",
            Action::Hash => "hash",
        }
    }
}

/// What a rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    /// A glob over attribute keys. `numbers`: whether int, double and bool values are
    /// redacted too (the built-in key rules leave them: `gen_ai.usage.input_tokens` is a
    /// count, not a token).
    Attribute { glob: String, numbers: bool },
    /// A user regex over string values.
    Pattern(String),
    /// A built-in value detector.
    Detector(Detector),
}

/// The built-in value detectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detector {
    /// 13–19 digits, in one group or grouped as cards are written (4-4-4-4…, 4-6-5) with
    /// single spaces or dashes, a card network's prefix, Luhn-valid.
    CardNumber,
    /// `Bearer <token>` (the token is redacted).
    BearerToken,
    /// `eyJ….….…`: a JSON web token.
    Jwt,
    /// `password=`, `token=`, `key=`, `secret=`… in a URL query string (the value is
    /// redacted).
    UrlSecret,
}

impl Detector {
    pub fn describe(self) -> &'static str {
        match self {
            Detector::CardNumber => "card numbers: 13-19 digits, grouped as cards are (spaces or dashes), card network prefix, Luhn-valid",
            Detector::BearerToken => "bearer tokens: \"Bearer <token>\"",
            Detector::Jwt => "JSON web tokens: eyJ….….…",
            Detector::UrlSecret => "secrets in query strings: password=, passwd=, pwd=, secret=, token=, key=, signature=, sig=, auth=, credential=, session=…",
        }
    }
}

/// A rule in force, configured or built in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveRule {
    pub name: String,
    pub matcher: Matcher,
    pub action: Action,
    pub keep_last: usize,
}

/// The built-in rules, in the order they are tried (after the configured ones).
pub fn built_in_rules() -> Vec<EffectiveRule> {
    let key = |name: &str, glob: &str| EffectiveRule {
        name: name.to_string(),
        matcher: Matcher::Attribute {
            glob: glob.to_string(),
            numbers: false,
        },
        action: Action::Mask,
        keep_last: 0,
    };
    let detector = |name: &str, d: Detector, keep_last: usize| EffectiveRule {
        name: name.to_string(),
        matcher: Matcher::Detector(d),
        action: Action::Mask,
        keep_last,
    };
    vec![
        key("password", "*password*"),
        key("passwd", "*passwd*"),
        key("secret", "*secret*"),
        key("token", "*token*"),
        key("authorization", "authorization"),
        key("authorization_header", "http.request.header.authorization"),
        key("cookie_header", "http.request.header.cookie"),
        key("set_cookie_header", "http.response.header.set-cookie"),
        detector("card_number", Detector::CardNumber, 4),
        detector("bearer_token", Detector::BearerToken, 0),
        detector("jwt", Detector::Jwt, 0),
        detector("url_secret", Detector::UrlSecret, 0),
    ]
}

fn bad<T>(message: String) -> Result<T> {
    Err(Error::Config {
        key: "redaction",
        message,
    })
}

impl RedactionConfig {
    /// The rules in force, in order: the configured ones, then the built-in ones (when
    /// `default_rules`). Errors name the rule (`redaction.rules[N] "name"`).
    pub fn effective_rules(&self) -> Result<Vec<EffectiveRule>> {
        let mut rules = Vec::with_capacity(self.rules.len() + 12);
        for (i, r) in self.rules.iter().enumerate() {
            let label = match &r.name {
                Some(n) => format!("redaction.rules[{i}] ({n:?})"),
                None => format!("redaction.rules[{i}]"),
            };
            let name = match &r.name {
                Some(n) if n.trim().is_empty() => return bad(format!("{label}: name is empty")),
                Some(n) if n.contains(',') => {
                    return bad(format!("{label}: name must not contain ','"))
                }
                Some(n) => n.clone(),
                None => format!("rules[{i}]"),
            };
            let matcher = match (&r.attribute, &r.pattern) {
                (Some(glob), None) if glob.is_empty() => {
                    return bad(format!("{label}: attribute is empty"))
                }
                (Some(glob), None) => Matcher::Attribute {
                    glob: glob.clone(),
                    numbers: true,
                },
                (None, Some(p)) if p.is_empty() => {
                    return bad(format!("{label}: pattern is empty"))
                }
                (None, Some(p)) => Matcher::Pattern(p.clone()),
                _ => {
                    return bad(format!(
                        "{label}: needs exactly one of attribute (a key glob) or pattern (a regex)"
                    ))
                }
            };
            if r.keep_last.is_some() && r.action != Action::Mask {
                return bad(format!(
                    "{label}: keep_last applies to action = \"mask\" only, not {:?}",
                    r.action.as_str()
                ));
            }
            rules.push(EffectiveRule {
                name,
                matcher,
                action: r.action,
                keep_last: r.keep_last.unwrap_or(0),
            });
        }
        if self.default_rules {
            rules.extend(built_in_rules());
        }
        for (i, r) in rules.iter().enumerate() {
            if rules[..i].iter().any(|o| o.name == r.name) {
                return bad(format!(
                    "rule name {:?} is used twice (names label clew_redactions_total and clew.redacted)",
                    r.name
                ));
            }
        }
        Ok(rules)
    }

    /// Takes `CLEW_REDACTION_HASH_KEY`'s value (when set and not empty) as the key.
    pub fn apply_hash_key_env(&mut self, env: Option<String>) {
        if let Some(k) = env.filter(|k| !k.is_empty()) {
            self.hash_key = Some(k);
        }
    }

    /// Checks every rule, compiling the patterns (no I/O).
    pub fn validate(&self) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        super::Redactor::new(self, &[]).map(drop)
    }

    /// The effective rules as `#` comment lines, for `clew config` (which prints the file
    /// form above them).
    pub fn describe(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        if !self.enabled {
            out.push_str(
                "# redaction is off ([redaction] enabled = false): spans are stored as received\n",
            );
            return out;
        }
        let rules = match self.effective_rules() {
            Ok(r) => r,
            Err(e) => return format!("# {e}\n"),
        };
        let _ = writeln!(
            out,
            "# redaction rules in force, in order (the first key rule matching a key wins; value rules apply to what is left):"
        );
        for r in rules {
            let what = match &r.matcher {
                Matcher::Attribute { glob, numbers } => format!(
                    "attribute {glob:?}{}",
                    if *numbers {
                        ""
                    } else {
                        " (string, bytes, array and map values)"
                    }
                ),
                Matcher::Pattern(p) => format!("pattern {p:?}"),
                Matcher::Detector(d) => d.describe().to_string(),
            };
            let keep = if r.action == Action::Mask && r.keep_last > 0 {
                format!(", keep_last = {}", r.keep_last)
            } else {
                String::new()
            };
            let _ = writeln!(out, "#   {}: {what} → {}{keep}", r.name, r.action.as_str());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_has_the_built_in_rules_and_reads_from_an_empty_section() {
        let d = RedactionConfig::default();
        assert!(d.enabled);
        let parsed: RedactionConfig = toml::from_str("").unwrap();
        assert_eq!(parsed, d);
        let names: Vec<String> = d
            .effective_rules()
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names.len(), 12);
        assert!(names.contains(&"card_number".to_string()));
        d.validate().unwrap();
        let text = d.describe();
        assert!(text.contains("\"*password*\""), "{text}");
        assert!(text.contains("http.response.header.set-cookie"), "{text}");
        assert!(text.contains("keep_last = 4"), "{text}");
    }

    #[test]
    fn rules_read_from_toml_and_the_key_is_never_printed() {
        let c: RedactionConfig = toml::from_str(
            "hash_key = \"0123456789abcdef0123\"\n[[rules]]\nname = \"email\"\nattribute = \"user.email\"\naction = \"hash\"\n[[rules]]\npattern = \"x(\\\\d+)\"\naction = \"mask\"\nkeep_last = 2\n",
        )
        .unwrap();
        c.validate().unwrap();
        let rules = c.effective_rules().unwrap();
        assert_eq!(rules[0].name, "email");
        assert_eq!(rules[1].name, "rules[1]");
        assert_eq!(rules[1].keep_last, 2);
        let printed = toml::to_string(&c).unwrap();
        assert!(!printed.contains("0123456789abcdef"), "{printed}");
        assert!(!c.describe().contains("0123456789abcdef"));
    }

    fn error_of(toml_text: &str, key: Option<&str>) -> String {
        let mut c: RedactionConfig = toml::from_str(toml_text).unwrap();
        c.apply_hash_key_env(key.map(str::to_string));
        c.validate().unwrap_err().to_string()
    }

    #[test]
    fn config_errors_name_the_rule() {
        let e = error_of(
            "[[rules]]\nname = \"broken\"\npattern = \"(unclosed\"\naction = \"mask\"\n",
            None,
        );
        assert!(e.contains("redaction.rules[0] (\"broken\")"), "{e}");
        assert!(e.contains("does not compile"), "{e}");
        let e = error_of(
            "[[rules]]\nattribute = \"a\"\naction = \"mask\"\n[[rules]]\nname = \"huge\"\npattern = \"\\\\w{1000}\\\\w{1000}\"\naction = \"drop\"\n",
            None,
        );
        assert!(e.contains("redaction.rules[1] (\"huge\")"), "{e}");
        assert!(e.contains("size limit"), "{e}");
        let e = error_of(
            "[[rules]]\nname = \"h\"\nattribute = \"a\"\naction = \"hash\"\n",
            None,
        );
        assert!(e.contains("redaction.rules[0] (\"h\")"), "{e}");
        assert!(e.contains(HASH_KEY_ENV), "{e}");
        let e = error_of(
            "[[rules]]\nname = \"h\"\nattribute = \"a\"\naction = \"hash\"\n",
            Some("short"),
        );
        assert!(e.contains("at least 16 bytes"), "{e}");
        let e = error_of(
            "[[rules]]\nattribute = \"a\"\npattern = \"b\"\naction = \"mask\"\n",
            None,
        );
        assert!(e.contains("redaction.rules[0]"), "{e}");
        assert!(e.contains("exactly one of"), "{e}");
        let e = error_of(
            "[[rules]]\nattribute = \"a\"\naction = \"drop\"\nkeep_last = 4\n",
            None,
        );
        assert!(e.contains("keep_last"), "{e}");
        let e = error_of(
            "[[rules]]\nname = \"token\"\nattribute = \"a\"\naction = \"drop\"\n",
            None,
        );
        assert!(e.contains("\"token\" is used twice"), "{e}");
        let err =
            toml::from_str::<RedactionConfig>("[[rules]]\nattribute = \"a\"\naction = \"erase\"\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("erase"), "{err}");
    }
}
