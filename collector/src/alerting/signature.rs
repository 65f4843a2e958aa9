//! Error signatures: what makes two error spans "the same error".
//!
//! A signature is (service, operation, exception type, normalised message, top stack
//! frame). The exception comes from the span's first `exception` event (OpenTelemetry
//! semantic conventions: `exception.type`, `exception.message`, `exception.stacktrace`);
//! without one, the message is the span's status message. Normalising replaces what
//! differs between occurrences of one error — numbers, UUIDs, hex values, ids — with
//! placeholders, so `order 123 not found` and `order 456 not found` are one signature and
//! an exception message can never make the number of signatures grow without bound.
//!
//! The hash ([`Signature::hash`], the alert's `signature` label) is FNV-1a over the five
//! parts: the same on every collector and across restarts and versions, which is what lets
//! Alertmanager merge the alerts of several collectors.

use clew_proto::model::{find_attr, value_to_string};
use clew_proto::Span;

/// Longest normalised message and frame kept, in bytes (longer ones are cut at a char
/// boundary): bounds memory and label sizes.
const MAX_PART_BYTES: usize = 256;

/// What makes two error spans the same error.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Signature {
    pub service: String,
    pub operation: String,
    /// `exception.type`; empty when the span has no exception event with one.
    pub exception_type: String,
    /// The exception message (or status message), normalised.
    pub message: String,
    /// The innermost stack frame of `exception.stacktrace`, normalised; empty when there
    /// is no stack trace or no frame is recognised.
    pub top_frame: String,
}

impl Signature {
    /// The signature of an error span; `None` for a span that is not an error.
    pub fn of(span: &Span) -> Option<Signature> {
        if !span.is_error() {
            return None;
        }
        let event = span.events.iter().find(|e| e.name == "exception");
        let attr = |key: &str| {
            event
                .and_then(|e| find_attr(&e.attributes, key))
                .map(value_to_string)
                .unwrap_or_default()
        };
        let exception_type = attr("exception.type");
        let mut message = attr("exception.message");
        if message.is_empty() {
            message = span.status_message.clone();
        }
        Some(Signature {
            service: cut(&span.service_name).to_string(),
            operation: cut(&span.name).to_string(),
            exception_type: cut(&exception_type).to_string(),
            message: normalise(&message),
            top_frame: top_frame(&attr("exception.stacktrace"))
                .map(normalise)
                .unwrap_or_default(),
        })
    }

    /// 16 hex digits, stable across collectors, restarts and versions.
    pub fn hash(&self) -> String {
        let mut h = Fnv::new();
        for part in [
            &self.service,
            &self.operation,
            &self.exception_type,
            &self.message,
            &self.top_frame,
        ] {
            h.write(part.as_bytes());
            h.write(&[0xff]); // not valid UTF-8: no part can forge a separator
        }
        format!("{:016x}", h.0)
    }
}

/// FNV-1a, 64 bits.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Replaces the varying parts of an error text with placeholders and collapses white
/// space:
///
/// - UUIDs (`123e4567-e89b-12d3-a456-426614174000`) → `<uuid>`
/// - `0x`-prefixed hex, and hex words of 8+ characters with a digit → `<hex>`
/// - words that mix letters and digits, 8+ characters or with 2+ digits
///   (`ORD7F3K2`, `user_48213`, `req-ab12cd`) → `<id>`
/// - other digit runs → `<n>` (`3.14` → `<n>.<n>`)
///
/// Short mixed words with at most one digit (`ipv4`, `utf8`, `HTTP2`, `s3`) are kept.
pub fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_PART_BYTES));
    let mut rest = text;
    let mut pending_space = false;
    while let Some(c) = rest.chars().next() {
        if out.len() >= MAX_PART_BYTES {
            break;
        }
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            rest = &rest[c.len_utf8()..];
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        if is_word_char(c) {
            let end = rest.find(|c: char| !is_word_char(c)).unwrap_or(rest.len());
            let (word, after) = rest.split_at(end);
            if let Some(n) = uuid_len(rest) {
                out.push_str("<uuid>");
                rest = &rest[n..];
                continue;
            }
            push_word(&mut out, word);
            rest = after;
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    cut(&out).to_string()
}

/// Word characters of ids: ASCII letters, digits and `_`; a `-` joins words into one id
/// only inside a UUID ([`uuid_len`]) or when the words around it carry digits
/// (`req-ab12cd` is handled as `req`, `-`, `ab12cd`).
fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn push_word(out: &mut String, word: &str) {
    let digits = word.bytes().filter(u8::is_ascii_digit).count();
    if digits == 0 {
        out.push_str(word);
        return;
    }
    if digits == word.len() {
        out.push_str("<n>");
        return;
    }
    let lower = word.to_ascii_lowercase();
    if let Some(hex) = lower.strip_prefix("0x") {
        if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            out.push_str("<hex>");
            return;
        }
    }
    if word.len() >= 8 && word.bytes().all(|b| b.is_ascii_hexdigit()) {
        out.push_str("<hex>");
        return;
    }
    if word.len() >= 8 || digits >= 2 {
        out.push_str("<id>");
        return;
    }
    out.push_str(word);
}

/// Length of a UUID (8-4-4-4-12 hex digits) at the start of `s`, if one is there and
/// does not run on into more word characters.
fn uuid_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if b.len() < 36 {
        return None;
    }
    for (i, c) in b[..36].iter().enumerate() {
        let ok = match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        };
        if !ok {
            return None;
        }
    }
    match b.get(36) {
        Some(c) if c.is_ascii_alphanumeric() || *c == b'_' => None,
        _ => Some(36),
    }
}

/// The innermost frame of a stack trace, recognised for the common formats:
///
/// - Python (`Traceback (most recent call last):`): the last `File "…", line N, in f`
/// - Java, JavaScript, .NET: the first line starting with `at `
/// - Go (`goroutine 1 [running]:`): the first function line after the header
fn top_frame(stack: &str) -> Option<&str> {
    let lines = || stack.lines().map(str::trim).filter(|l| !l.is_empty());
    if stack.contains("Traceback (most recent call last)") {
        return lines().filter(|l| l.starts_with("File \"")).last();
    }
    if let Some(frame) = lines().find(|l| l.starts_with("at ")) {
        return Some(frame);
    }
    if lines().next()?.starts_with("goroutine ") {
        return lines().nth(1);
    }
    None
}

/// `s` cut to at most [`MAX_PART_BYTES`] at a char boundary.
fn cut(s: &str) -> &str {
    if s.len() <= MAX_PART_BYTES {
        return s;
    }
    let mut end = MAX_PART_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_ids_uuids_and_hex_are_normalised_away() {
        for (a, b) in [
            ("order 123 not found", "order 98765 not found"),
            (
                "card declined for user 7f3a9c2e-1b4d-4e8f-9a0b-c1d2e3f40516",
                "card declined for user 00000000-0000-4000-8000-000000000000",
            ),
            ("bad pointer 0xdeadbeef", "bad pointer 0x7FFF0012"),
            ("object deadbeef12 gone", "object 0123abcdef gone"),
            ("order ORD7F3K2 declined", "order ORD9Z1Q8 declined"),
            ("session user_48213 expired", "session user_77 expired"),
            ("took 3.14 s, limit 2.5", "took 10.0 s, limit 7.25"),
            ("  many\t spaces \n here ", "many spaces here"),
        ] {
            assert_eq!(normalise(a), normalise(b), "{a:?} vs {b:?}");
        }
        assert_eq!(normalise("order 123 not found"), "order <n> not found");
        assert_eq!(
            normalise("user 7f3a9c2e-1b4d-4e8f-9a0b-c1d2e3f40516!"),
            "user <uuid>!"
        );
        assert_eq!(normalise("at 0xdeadbeef"), "at <hex>");
        assert_eq!(normalise("id=ORD7F3K2"), "id=<id>");
        assert_eq!(normalise("3.14"), "<n>.<n>");
        // words without digits and short mixed words stay: they name things, not instances
        assert_eq!(
            normalise("CardDeclinedException over HTTP2 via ipv4"),
            "CardDeclinedException over HTTP2 via ipv4"
        );
        // different errors stay different
        assert_ne!(normalise("card declined"), normalise("card expired"));
        assert_eq!(normalise(""), "");
    }

    #[test]
    fn long_and_non_ascii_text_is_cut_at_a_char_boundary() {
        let long = "é".repeat(1000);
        let n = normalise(&long);
        assert!(n.len() <= MAX_PART_BYTES + 4, "{}", n.len());
        assert!(n.starts_with("éé"));
        let numbers = (0..10_000)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(normalise(&numbers).len() <= MAX_PART_BYTES + 4);
    }

    #[test]
    fn top_frames_of_common_stack_traces() {
        let java = "java.lang.IllegalStateException: boom\n\tat com.shop.Pay.charge(Pay.java:42)\n\tat com.shop.Api.handle(Api.java:7)";
        assert_eq!(top_frame(java), Some("at com.shop.Pay.charge(Pay.java:42)"));
        let python = "Traceback (most recent call last):\n  File \"app.py\", line 10, in main\n    pay()\n  File \"pay.py\", line 3, in pay\n    raise ValueError(x)\nValueError: x";
        assert_eq!(top_frame(python), Some("File \"pay.py\", line 3, in pay"));
        let go = "goroutine 1 [running]:\nmain.charge(0x1)\n\t/src/main.go:12 +0x1d";
        assert_eq!(top_frame(go), Some("main.charge(0x1)"));
        assert_eq!(top_frame(""), None);
        assert_eq!(top_frame("just a message"), None);
        // line numbers are normalised with the rest, so a redeploy keeps the signature
        assert_eq!(
            normalise(top_frame(java).unwrap()),
            normalise("at com.shop.Pay.charge(Pay.java:57)")
        );
    }

    #[test]
    fn hash_is_stable_and_separates_parts() {
        let s = Signature {
            service: "payments".into(),
            operation: "charge".into(),
            exception_type: "CardDeclinedException".into(),
            message: "card <n> declined".into(),
            top_frame: String::new(),
        };
        // a fixed value: changing it changes every alert's identity in Alertmanager
        assert_eq!(s.hash(), "552a301b4b8416ec");
        // FNV-1a 64 reference vector
        let mut h = Fnv::new();
        h.write(b"a");
        assert_eq!(h.0, 0xaf63_dc4c_8601_ec8c);
        let moved = Signature {
            service: "paymentscharge".into(),
            operation: String::new(),
            ..s.clone()
        };
        assert_ne!(s.hash(), moved.hash());
    }
}
