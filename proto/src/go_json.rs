//! JSON text exactly as Go's `encoding/json` writes it, for the answers where clew must be
//! byte-for-byte what Jaeger (a Go program) answers: Jaeger's tag values in the Jaeger API
//! and the remote-sampling JSON.

/// A float64 as Go writes it: shortest digits, plain from 1e-6 up to below 1e21, exponent
/// form outside (`1e-7`, `1e+21`); `NaN`, `+Inf`, `-Inf` as Go's `strconv` spells them
/// (`encoding/json` refuses those; pdata's string forms of them use these).
pub fn float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let text = format!("{f:e}");
        match text.split_once('e') {
            Some((mantissa, exp)) if !exp.starts_with('-') => format!("{mantissa}e+{exp}"),
            _ => text,
        }
    } else {
        format!("{f}")
    }
}

/// A JSON string as Go (1.22 and later) writes it: HTML-safe (`<`, `>`, `&` as `\u003c`…),
/// `\b` and `\f` short forms, U+2028/U+2029 escaped, other control characters as `\u00XX`.
pub fn push_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c if (c as u32) < 0x20 || matches!(c, '<' | '>' | '&') => {
                let b = c as u8;
                out.push_str("\\u00");
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 0xf) as usize] as char);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_and_strings_as_go_writes_them() {
        assert_eq!(float(1.0), "1");
        assert_eq!(float(0.001), "0.001");
        assert_eq!(float(1e-7), "1e-7");
        assert_eq!(float(1e21), "1e+21");
        assert_eq!(float(f64::NAN), "NaN");
        assert_eq!(float(f64::NEG_INFINITY), "-Inf");
        let mut out = String::new();
        push_string(&mut out, "a<b>&\"\\\n\u{8}\u{c}\u{1}\u{2028}é");
        assert_eq!(out, r#""a\u003cb\u003e\u0026\"\\\n\b\f\u0001\u2028é""#);
    }
}
