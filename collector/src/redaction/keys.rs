//! Matching attribute keys against the rules' globs.
//!
//! A glob has `*` (any run of characters) and `?` (one character) and matches ASCII
//! case-insensitively, so `*password*` finds `user.Password` and `DB_PASSWORD`. Each
//! glob's longest literal piece goes into one Aho-Corasick automaton: a key that contains
//! none of them cannot match any glob, which is the answer for almost every key, found in
//! one pass over it without allocating. Only keys that contain one are tried against the
//! globs, in rule order.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind};

/// The key globs in force.
#[derive(Debug)]
pub struct KeyMatcher {
    /// `(glob lowercased, rule index, whether numbers are redacted)`, in rule order.
    globs: Vec<(Vec<u8>, usize, bool)>,
    /// The longest literal of every glob; `None` when some glob has none (`*`), and every
    /// key must be tried.
    prefilter: Option<AhoCorasick>,
}

impl KeyMatcher {
    pub fn new(globs: Vec<(String, usize, bool)>) -> KeyMatcher {
        let globs: Vec<(Vec<u8>, usize, bool)> = globs
            .into_iter()
            .map(|(g, rule, numbers)| (g.to_ascii_lowercase().into_bytes(), rule, numbers))
            .collect();
        let literals: Option<Vec<&[u8]>> = globs
            .iter()
            .map(|(g, _, _)| {
                g.split(|b| *b == b'*' || *b == b'?')
                    .max_by_key(|piece| piece.len())
                    .filter(|piece| !piece.is_empty())
            })
            .collect();
        let prefilter = match literals {
            Some(l) if !l.is_empty() => Some(
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .kind(Some(AhoCorasickKind::DFA))
                    .build(l)
                    .expect("key literal automaton builds"),
            ),
            _ => None,
        };
        KeyMatcher { globs, prefilter }
    }

    pub fn is_empty(&self) -> bool {
        self.globs.is_empty()
    }

    /// The first rule whose glob matches `key`, and whether it redacts numbers.
    pub fn find(&self, key: &str) -> Option<(usize, bool)> {
        if self.globs.is_empty() {
            return None;
        }
        if let Some(ac) = &self.prefilter {
            if !ac.is_match(key) {
                return None;
            }
        }
        self.globs
            .iter()
            .find(|(g, _, _)| glob_match(g, key.as_bytes()))
            .map(|(_, rule, numbers)| (*rule, *numbers))
    }
}

/// `*` and `?` glob over bytes, `glob` lowercased, `text` compared ASCII case-insensitively
/// (`?` is one byte). Linear in practice: one backtrack point, the last `*`.
pub fn glob_match(glob: &[u8], text: &[u8]) -> bool {
    let (mut g, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if g < glob.len() && (glob[g] == b'?' || glob[g] == text[t].to_ascii_lowercase()) {
            g += 1;
            t += 1;
        } else if g < glob.len() && glob[g] == b'*' {
            star = Some((g, t));
            g += 1;
        } else if let Some((sg, st)) = star {
            g = sg + 1;
            t = st + 1;
            star = Some((sg, st + 1));
        } else {
            return false;
        }
    }
    glob[g..].iter().all(|b| *b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let m = |g: &str, t: &str| glob_match(g.as_bytes(), t.as_bytes());
        assert!(m("*password*", "user.password"));
        assert!(m("*password*", "DB_PASSWORD_HASH"));
        assert!(m("*password*", "password"));
        assert!(!m("*password*", "passw0rd"));
        assert!(m("authorization", "Authorization"));
        assert!(!m("authorization", "x-authorization"));
        assert!(m("http.request.header.*", "http.request.header.cookie"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("*", ""));
        assert!(m("*a*b*c", "xxaxxbxxc"));
        assert!(!m("*a*b*c", "xxaxxbxxcx"));
    }

    #[test]
    fn first_matching_rule_wins_and_the_prefilter_lets_only_candidates_through() {
        let k = KeyMatcher::new(vec![
            ("session_token".into(), 0, true),
            ("*token*".into(), 1, false),
            ("authorization".into(), 2, false),
        ]);
        assert_eq!(k.find("session_token"), Some((0, true)));
        assert_eq!(k.find("x-auth-TOKEN"), Some((1, false)));
        assert_eq!(k.find("AUTHORIZATION"), Some((2, false)));
        assert_eq!(k.find("http.route"), None);
        let all = KeyMatcher::new(vec![("*".into(), 0, true)]);
        assert!(all.prefilter.is_none());
        assert_eq!(all.find("anything"), Some((0, true)));
    }
}
