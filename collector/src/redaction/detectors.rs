//! Finding secrets inside text: the built-in value detectors and the configured patterns.
//!
//! Most text holds no secret, so every detector sits behind a check that costs one pass
//! over the bytes and allocates nothing: the card detector runs only on text with at least
//! 13 ASCII digits; the bearer, JWT and query-string detectors only where one walk of an
//! Aho-Corasick DFA (ASCII case-insensitive, every occurrence, [`super::keys::for_each_match`])
//! finds their literal (`bearer`, `eyJ`, `token=`…); the configured patterns only where
//! their `RegexSet` matches. Only then are the exact regexes run and the matches collected.

use aho_corasick::dfa::DFA;
use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

use super::config::Detector;
use super::keys::{for_each_match, literal_dfa};

/// Card numbers have at most 19 digits and at least 13.
const CARD_MIN_DIGITS: usize = 13;
const CARD_MAX_DIGITS: usize = 19;

/// Query-string parameter names (their endings) whose values are secrets.
const URL_SECRET_NAMES: [&str; 14] = [
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "key",
    "signature",
    "sig",
    "auth",
    "credential",
    "credentials",
    "session",
    "sessionid",
    "sid",
];

/// One match: the byte range to replace and the rule that found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub start: usize,
    pub end: usize,
    pub rule: usize,
}

/// The value detectors in force, ready to run.
#[derive(Debug)]
pub struct TextDetectors {
    /// Rule index of each built-in detector in force.
    card: Option<usize>,
    bearer: Option<(usize, Regex)>,
    jwt: Option<(usize, Regex)>,
    url: Option<(usize, Regex)>,
    /// Literals of bearer, JWT and query-string secrets; each pattern's detector.
    literals: Option<(DFA, Vec<Detector>)>,
    /// The configured patterns, all at once, then one by one.
    set: Option<RegexSet>,
    patterns: Vec<(usize, Regex)>,
}

/// A pattern compiled with the configured size limit (and as much for its lazy DFA).
pub fn compile(pattern: &str, size_limit: usize) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .size_limit(size_limit)
        .dfa_size_limit(size_limit)
        .build()
}

impl TextDetectors {
    /// `detectors`: the built-in detectors in force with their rule index; `patterns`: the
    /// configured patterns, compiled.
    pub fn new(
        detectors: &[(Detector, usize)],
        patterns: Vec<(usize, Regex)>,
        size_limit: usize,
    ) -> Result<TextDetectors, regex::Error> {
        let rule_of = |d: Detector| detectors.iter().find(|(x, _)| *x == d).map(|(_, i)| *i);
        let built = |d: Detector, re: &str| -> Option<(usize, Regex)> {
            rule_of(d).map(|i| (i, Regex::new(re).expect("built-in regex compiles")))
        };
        let bearer = built(
            Detector::BearerToken,
            r"(?i)\bbearer\s+([A-Za-z0-9\-._~+/]{8,}=*)",
        );
        let jwt = built(
            Detector::Jwt,
            r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
        );
        let url = built(
            Detector::UrlSecret,
            &format!(
                r#"(?i)(?:^|[?&;\s])[a-z0-9_.\-]*(?:{})=([^&#;\s"'<>]+)"#,
                URL_SECRET_NAMES.join("|")
            ),
        );
        let mut literals: Vec<String> = Vec::new();
        let mut kinds = Vec::new();
        if bearer.is_some() {
            literals.push("bearer".into());
            kinds.push(Detector::BearerToken);
        }
        if jwt.is_some() {
            literals.push("eyj".into());
            kinds.push(Detector::Jwt);
        }
        if url.is_some() {
            for name in URL_SECRET_NAMES {
                literals.push(format!("{name}="));
                kinds.push(Detector::UrlSecret);
            }
        }
        let literals = if literals.is_empty() {
            None
        } else {
            // a DFA: a few dozen short literals, walked over every string value
            Some((literal_dfa(&literals), kinds))
        };
        let set = if patterns.is_empty() {
            None
        } else {
            Some(
                RegexSetBuilder::new(patterns.iter().map(|(_, r)| r.as_str()))
                    .size_limit(size_limit.saturating_mul(patterns.len()))
                    .dfa_size_limit(size_limit.saturating_mul(patterns.len()))
                    .build()?,
            )
        };
        Ok(TextDetectors {
            card: rule_of(Detector::CardNumber),
            bearer,
            jwt,
            url,
            literals,
            set,
            patterns,
        })
    }

    /// Whether any detector matches `text` (no allocation when none can).
    pub fn matches(&self, text: &str) -> bool {
        let mut hits = None;
        self.scan(text, &mut hits, true);
        hits.is_some()
    }

    /// Every match in `text`, sorted, without overlaps (the earliest, then longest, wins);
    /// `None` — and no allocation — when nothing matches.
    pub fn find(&self, text: &str) -> Option<Vec<Hit>> {
        let mut hits = None;
        self.scan(text, &mut hits, false);
        let mut hits: Vec<Hit> = hits?;
        hits.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
        let mut end = 0;
        hits.retain(|h| {
            let keep = h.start >= end;
            if keep {
                end = h.end;
            }
            keep
        });
        Some(hits)
    }

    /// Collects matches into `hits` (created on the first); with `first_only`, stops at
    /// the first.
    fn scan(&self, text: &str, hits: &mut Option<Vec<Hit>>, first_only: bool) {
        let push = |h: Hit, hits: &mut Option<Vec<Hit>>| hits.get_or_insert_with(Vec::new).push(h);
        if let Some(rule) = self.card {
            if text.len() >= CARD_MIN_DIGITS && count_digits(text.as_bytes()) >= CARD_MIN_DIGITS {
                card_numbers(text.as_bytes(), |start, end| {
                    push(Hit { start, end, rule }, hits)
                });
                if first_only && hits.is_some() {
                    return;
                }
            }
        }
        if let Some((dfa, kinds)) = &self.literals {
            let (mut bearer, mut jwt, mut url) = (false, false, false);
            // every occurrence, overlapping ones too: never fewer detectors run than a
            // leftmost search would start
            for_each_match(dfa, text.as_bytes(), |pattern, start| {
                match kinds[pattern] {
                    Detector::BearerToken => bearer = true,
                    Detector::Jwt => jwt = jwt || text.as_bytes()[start..].starts_with(b"eyJ"),
                    Detector::UrlSecret => url = true,
                    Detector::CardNumber => {}
                }
                !(bearer && jwt && url)
            });
            for (on, found) in [(bearer, &self.bearer), (jwt, &self.jwt), (url, &self.url)] {
                if let (true, Some((rule, re))) = (on, found) {
                    if capture_hits(re, *rule, text, hits, first_only) && first_only {
                        return;
                    }
                }
            }
        }
        if let Some(set) = &self.set {
            if set.is_match(text) {
                for i in set.matches(text).iter() {
                    let (rule, re) = &self.patterns[i];
                    if capture_hits(re, *rule, text, hits, first_only) && first_only {
                        return;
                    }
                }
            }
        }
    }
}

/// Adds the matches of `re` (group 1 where it has one, else the whole match); whether
/// there was one.
fn capture_hits(
    re: &Regex,
    rule: usize,
    text: &str,
    hits: &mut Option<Vec<Hit>>,
    first_only: bool,
) -> bool {
    let mut found = false;
    for caps in re.captures_iter(text) {
        let m = caps
            .get(1)
            .or_else(|| caps.get(0))
            .expect("group 0 is the match");
        if m.is_empty() {
            continue;
        }
        found = true;
        hits.get_or_insert_with(Vec::new).push(Hit {
            start: m.start(),
            end: m.end(),
            rule,
        });
        if first_only {
            break;
        }
    }
    found
}

fn count_digits(bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| b.is_ascii_digit()).count()
}

/// Calls `found` with the byte range of each card number in `text`: runs of digit groups
/// joined by one space or dash, not touching letters or other digits, 13–19 digits in
/// all, grouped as cards are ([`card_shaped`]), with a card network's prefix, Luhn-valid.
/// Inside a longer run (a phone number before a card number), every sequence of whole
/// groups is tried. Allocates nothing.
pub fn card_numbers(text: &[u8], mut found: impl FnMut(usize, usize)) {
    let mut i = 0;
    while i < text.len() {
        if !text[i].is_ascii_digit() || (i > 0 && text[i - 1].is_ascii_alphanumeric()) {
            i += 1;
            continue;
        }
        let (run_end, digits) = run_at(text, i);
        let touches_letter = run_end < text.len() && text[run_end].is_ascii_alphabetic();
        if digits >= CARD_MIN_DIGITS && !touches_letter {
            cards_in_run(&text[..run_end], i, &mut found);
        }
        i = run_end.max(i + 1);
    }
}

/// The end of the run of digit groups starting at `i`, and its number of digits.
fn run_at(text: &[u8], mut j: usize) -> (usize, usize) {
    let mut digits = 0;
    loop {
        while j < text.len() && text[j].is_ascii_digit() {
            j += 1;
            digits += 1;
        }
        if j + 1 < text.len() && matches!(text[j], b' ' | b'-') && text[j + 1].is_ascii_digit() {
            j += 1;
        } else {
            return (j, digits);
        }
    }
}

/// Tries, from each group of the run `run[start..]` on, the sequences of whole groups of
/// 13–19 digits, longest first; a found card's groups are not tried again.
fn cards_in_run(run: &[u8], mut start: usize, found: &mut impl FnMut(usize, usize)) {
    while start < run.len() {
        // the groups from `start` while they hold at most 19 digits (so at most 19 groups)
        let mut groups = [(0usize, 0usize); CARD_MAX_DIGITS];
        let (mut n, mut digits, mut j) = (0, 0, start);
        let mut first_end = None;
        while j < run.len() && n < CARD_MAX_DIGITS {
            let s = j;
            while j < run.len() && run[j].is_ascii_digit() {
                j += 1;
            }
            first_end.get_or_insert(j);
            digits += j - s;
            if digits > CARD_MAX_DIGITS {
                break;
            }
            groups[n] = (s, j);
            n += 1;
            j += 1; // the separator
        }
        let mut total: usize = groups[..n].iter().map(|(s, e)| e - s).sum();
        let mut card = None;
        for last in (0..n).rev() {
            if (CARD_MIN_DIGITS..=CARD_MAX_DIGITS).contains(&total)
                && card_shaped(&groups[..=last])
                && is_card(&run[groups[0].0..groups[last].1])
            {
                card = Some(groups[last].1);
                break;
            }
            total -= groups[last].1 - groups[last].0;
        }
        match card {
            Some(end) => {
                found(start, end);
                start = end + 1;
            }
            None => start = first_end.unwrap_or(run.len()) + 1,
        }
    }
}

/// Digit groups as cards are written: one group, or groups of 4 (the last one 1–4
/// long), or 4-6-5 and 4-6-4 (Amex, Diners). Other groupings are ids and phone numbers
/// (`svc-54321-987654337`).
fn card_shaped(groups: &[(usize, usize)]) -> bool {
    let len = |g: &(usize, usize)| g.1 - g.0;
    match groups {
        [_] => true,
        [a, b, c] if len(a) == 4 && len(b) == 6 && matches!(len(c), 4 | 5) => true,
        [init @ .., last] => init.iter().all(|g| len(g) == 4) && (1..=4).contains(&len(last)),
        [] => false,
    }
}

/// A card network's prefix (Visa, Mastercard, Amex, Diners, JCB, Discover, UnionPay,
/// Maestro) and a valid Luhn check digit, over digits with separators between them.
fn is_card(text: &[u8]) -> bool {
    let mut ds = text
        .iter()
        .copied()
        .filter(u8::is_ascii_digit)
        .map(|d| d - b'0');
    let (a, b) = (ds.next().unwrap_or(0), ds.next().unwrap_or(0));
    let prefix_ok = match a {
        4 | 6 => true,
        2 => (2..=7).contains(&b),
        3 => matches!(b, 0 | 4..=9),
        5 => b <= 8,
        _ => false,
    };
    prefix_ok && luhn(text)
}

/// The Luhn check over the ASCII digits of `text` (other bytes are skipped).
pub fn luhn(text: &[u8]) -> bool {
    let mut sum = 0u32;
    let mut n = 0;
    for d in text.iter().rev().filter(|b| b.is_ascii_digit()) {
        let mut v = u32::from(d - b'0');
        if n % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
        n += 1;
    }
    n > 0 && sum % 10 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> TextDetectors {
        TextDetectors::new(
            &[
                (Detector::CardNumber, 0),
                (Detector::BearerToken, 1),
                (Detector::Jwt, 2),
                (Detector::UrlSecret, 3),
            ],
            vec![(4, compile(r"ssn=(\d{3}-\d{2}-\d{4})", 1 << 20).unwrap())],
            1 << 20,
        )
        .unwrap()
    }

    fn found<'a>(d: &TextDetectors, text: &'a str) -> Vec<(&'a str, usize)> {
        d.find(text)
            .unwrap_or_default()
            .into_iter()
            .map(|h| (&text[h.start..h.end], h.rule))
            .collect()
    }

    #[test]
    fn luhn_positives_and_negatives() {
        for ok in [
            "4111111111111111",
            "79927398713",
            "5555555555554444",
            "378282246310005",
        ] {
            assert!(luhn(ok.as_bytes()), "{ok}");
        }
        for bad in ["4111111111111112", "79927398710", "1234567812345678", ""] {
            assert!(!luhn(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn card_numbers_with_and_without_separators() {
        let d = all();
        assert_eq!(found(&d, "4111111111111111"), vec![("4111111111111111", 0)]);
        assert_eq!(
            found(&d, "SELECT * FROM cards WHERE pan = '4111 1111 1111 1111'"),
            vec![("4111 1111 1111 1111", 0)]
        );
        assert_eq!(
            found(&d, "card=5555-5555-5555-4444;"),
            vec![("5555-5555-5555-4444", 0)]
        );
        assert_eq!(found(&d, "amex 3782 822463 10005").len(), 1);
        assert_eq!(found(&d, "4111-1111-1111-1111-110 (19)").len(), 1); // 19 digits, Luhn-valid
                                                                        // Amex 15, Visa 13, Maestro 19
        assert_eq!(found(&d, "378282246310005").len(), 1);
        assert_eq!(found(&d, "4222222222222").len(), 1);
        assert_eq!(found(&d, "6759649826438453110").len(), 1);
        // a phone number before it in the same run of groups
        assert_eq!(
            found(&d, "call 555 1234 4111 1111 1111 1111"),
            vec![("4111 1111 1111 1111", 0)]
        );
    }

    #[test]
    fn card_negatives() {
        let d = all();
        for text in [
            "4111111111111112",        // Luhn fails
            "1700000000000000000",     // a nanosecond timestamp: no card prefix
            "411111111111",            // 12 digits
            "41111111111111111111111", // 23 digits in one group
            "id 4111111111111111abc",  // touches letters
            "x4111111111111111",       // touches letters
            "4111--1111-1111-1111",    // double separator
            "trace 0af7651916cd43dd8448eb211c80319c",
            "2026-12-01 14:51:09.123456",
            "svc-54321-987654337", // an id: Luhn-valid digits, not card-shaped
            "4111 11 1111111111",  // not grouped like a card
        ] {
            assert!(found(&d, text).is_empty(), "{text}: {:?}", found(&d, text));
        }
    }

    #[test]
    fn bearer_tokens_and_jwts() {
        let d = all();
        assert_eq!(
            found(&d, "Authorization: Bearer abc.DEF-123_~+/=="),
            vec![("abc.DEF-123_~+/==", 1)]
        );
        assert_eq!(found(&d, "bearer    xyz12345"), vec![("xyz12345", 1)]);
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        assert_eq!(found(&d, &format!("token {jwt} expired")), vec![(jwt, 2)]);
        for text in [
            "the bearer of bad news",
            "eyJ alone",
            "eyJhbGciOiJIUzI1NiJ9 only one part",
        ] {
            assert!(found(&d, text).is_empty(), "{text}");
        }
    }

    #[test]
    fn url_query_secrets() {
        let d = all();
        assert_eq!(
            found(&d, "https://shop.example/cb?order=12&token=s3cr3t&x=1"),
            vec![("s3cr3t", 3)]
        );
        assert_eq!(
            found(&d, "/login?user=bob&password=hunter2#frag"),
            vec![("hunter2", 3)]
        );
        assert_eq!(found(&d, "GET /x?api_key=AKIA123"), vec![("AKIA123", 3)]);
        assert_eq!(
            found(&d, "https://b.blob.example/c?sv=2020&sig=abc%2Fdef"),
            vec![("abc%2Fdef", 3)]
        );
        assert_eq!(
            found(&d, "login failed password=hunter2"),
            vec![("hunter2", 3)]
        );
        for text in [
            "https://shop.example/search?q=token",
            "/items?page=2",
            "tokens are nice",
        ] {
            assert!(found(&d, text).is_empty(), "{text}");
        }
    }

    #[test]
    fn user_patterns_redact_group_one() {
        let d = all();
        assert_eq!(found(&d, "ssn=123-45-6789 ok"), vec![("123-45-6789", 4)]);
        assert!(found(&d, "ssn=12-345-6789").is_empty());
        assert!(d.matches("ssn=123-45-6789"));
        assert!(!d.matches("GET /api/v1/orders/12"));
    }

    #[test]
    fn overlapping_matches_keep_the_first() {
        let d = all();
        // the url detector and the card detector both see the digits
        let hits = found(&d, "/pay?key=4111111111111111");
        assert_eq!(hits.len(), 1, "{hits:?}");
    }
}
