//! Matching attribute keys against the rules' globs.
//!
//! A glob has `*` (any run of characters) and `?` (one character) and matches ASCII
//! case-insensitively, so `*password*` finds `user.Password` and `DB_PASSWORD`. Each
//! glob's longest literal piece goes into one Aho-Corasick DFA: a key that contains none of
//! them cannot match any glob, which is the answer for almost every key, found in one walk
//! over its bytes without allocating ([`contains_any`]: a table lookup per byte, no search
//! set-up). Only keys that contain one are tried against the globs, in rule order.

use aho_corasick::automaton::Automaton;
use aho_corasick::dfa::DFA;
use aho_corasick::{Anchored, MatchKind, StartKind};

/// The key globs in force.
#[derive(Debug)]
pub struct KeyMatcher {
    /// `(glob lowercased, rule index, whether numbers are redacted)`, in rule order.
    globs: Vec<(Vec<u8>, usize, bool)>,
    /// The longest literal of every glob; `None` when some glob has none (`*`), and every
    /// key must be tried.
    prefilter: Option<DFA>,
}

/// An unanchored, ASCII case-insensitive DFA of `literals` that [`contains_any`] and
/// [`for_each_match`] walk (no prefilter: the walk is the whole search).
pub fn literal_dfa<I, P>(literals: I) -> DFA
where
    I: IntoIterator<Item = P>,
    P: AsRef<[u8]>,
{
    DFA::builder()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::Standard)
        .start_kind(StartKind::Unanchored)
        .prefilter(false)
        .build(literals)
        .expect("literal automaton builds")
}

/// Whether `text` contains one of the DFA's literals: one transition per byte. Used instead
/// of `AhoCorasick::is_match`, whose per-call set-up cost more than the walk on the short
/// keys and values of spans.
pub fn contains_any(dfa: &DFA, text: &[u8]) -> bool {
    if text.len() < dfa.min_pattern_len() {
        return false;
    }
    let mut sid = dfa
        .start_state(Anchored::No)
        .expect("unanchored start state");
    for &b in text {
        sid = dfa.next_state(Anchored::No, sid, b);
        if dfa.is_special(sid) && dfa.is_match(sid) {
            return true;
        }
    }
    false
}

/// Calls `found(pattern, start)` for every occurrence of every literal in `text`,
/// overlapping ones included (a `Standard` DFA walked to the end); stops when `found`
/// returns `false`.
pub fn for_each_match(dfa: &DFA, text: &[u8], mut found: impl FnMut(usize, usize) -> bool) {
    if text.len() < dfa.min_pattern_len() {
        return;
    }
    let mut sid = dfa
        .start_state(Anchored::No)
        .expect("unanchored start state");
    for (i, &b) in text.iter().enumerate() {
        sid = dfa.next_state(Anchored::No, sid, b);
        if dfa.is_special(sid) && dfa.is_match(sid) {
            for k in 0..dfa.match_len(sid) {
                let pid = dfa.match_pattern(sid, k);
                if !found(pid.as_usize(), i + 1 - dfa.pattern_len(pid)) {
                    return;
                }
            }
        }
    }
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
            Some(l) if !l.is_empty() => Some(literal_dfa(l)),
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
        if let Some(dfa) = &self.prefilter {
            if !contains_any(dfa, key.as_bytes()) {
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

    /// The DFA walks agree with aho-corasick's own search on texts made of the literals'
    /// pieces in either case (overlaps, repeats, prefixes of literals, other bytes).
    #[test]
    fn the_dfa_walks_find_what_aho_corasick_finds() {
        let literals = [
            "bearer",
            "eyj",
            "token=",
            "key=",
            "sessionid=",
            "session=",
            "sid=",
        ];
        let ac = aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(literals)
            .unwrap();
        let dfa = literal_dfa(literals);
        let pieces = [
            "bear", "er", "BEARER", "eyJ", "EYj", "token", "=", "ke", "y=", "session", "id=", "s",
            "i", "d", "x", " ", "é", "?", "&",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..5000 {
            let n = (next() % 12) as usize;
            let text: String = (0..n)
                .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                .collect();
            assert_eq!(
                contains_any(&dfa, text.as_bytes()),
                ac.is_match(&text),
                "{text:?}"
            );
            let mut walked = Vec::new();
            for_each_match(&dfa, text.as_bytes(), |p, start| {
                walked.push((p, start));
                true
            });
            let mut want: Vec<(usize, usize)> = ac
                .find_overlapping_iter(&text)
                .map(|m| (m.pattern().as_usize(), m.start()))
                .collect();
            walked.sort_unstable();
            want.sort_unstable();
            assert_eq!(walked, want, "{text:?}");
        }
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
        assert_eq!(k.find("tok"), None);
        assert_eq!(k.find("TOKEN"), Some((1, false)));
        assert_eq!(k.find("a.tokenizer"), Some((1, false)));
        let all = KeyMatcher::new(vec![("*".into(), 0, true)]);
        assert!(all.prefilter.is_none());
        assert_eq!(all.find("anything"), Some((0, true)));
    }
}
