//! Jaeger's query-string rules (`cmd/query/app/query_parser.go`), with its error texts.
//!
//! Unlike clew's native API, and like Jaeger: unknown parameters are ignored, a repeated
//! parameter counts with its first value (`tag`, `tags` and `traceID` repeat), times are
//! integers (`start`/`end` in microseconds, `endTs` in milliseconds), `minDuration` and
//! `maxDuration` are Go durations (`10ms`, `1.5s`, `1h2m`), the dependencies `lookback`
//! is milliseconds. Without `start`, a search looks back two days; without `end`, up to
//! now. Error texts are Go's, word for word, since clients show them.

use std::collections::BTreeMap;

/// Traces a search returns without `limit` (`defaultQueryLimit`).
pub const DEFAULT_LIMIT: i64 = 100;
/// How far back a search looks without `start` (`defaultTraceQueryLookbackDuration`).
pub const DEFAULT_LOOKBACK_NANOS: i64 = 2 * 24 * 3_600 * 1_000_000_000;
/// How far back dependencies look without `lookback` (`defaultDependencyLookbackDuration`).
pub const DEFAULT_DEPENDENCY_LOOKBACK_NANOS: i64 = 24 * 3_600 * 1_000_000_000;

/// A parse failure: Go's message, answered with a 400.
pub type ParseError = String;

/// A validated `GET /api/traces?…`. Times are unix nanoseconds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TraceSearch {
    pub service: String,
    pub operation: String,
    pub tags: BTreeMap<String, String>,
    pub start_min_nanos: i64,
    pub start_max_nanos: i64,
    pub min_duration_nanos: i64,
    pub max_duration_nanos: i64,
    pub limit: i64,
    /// `traceID=`: fetch these ids instead of searching (as given, for error entries).
    pub trace_ids: Vec<(String, [u8; 16])>,
    /// `raw=true`: no adjusters.
    pub raw: bool,
}

/// A validated `GET /api/dependencies?…`.
#[derive(Debug, Clone, PartialEq)]
pub struct DependenciesQuery {
    pub end_nanos: i64,
    pub lookback_nanos: i64,
    pub service: String,
}

/// The decoded query string, in order.
pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn parse(raw: Option<&str>) -> Form {
        Form(
            form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// Go's `FormValue`: the first value, or empty.
    pub fn value(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// Every value, empty ones included.
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

fn parse_error(param: &str, err: String) -> ParseError {
    format!("unable to parse param '{param}': {err}")
}

/// `parseTraceQueryParams` and `validateQuery`, checks in Jaeger's order.
pub fn parse_search(form: &Form, now_nanos: i64) -> Result<TraceSearch, ParseError> {
    let start = parse_time(form, "start", 1_000, now_nanos - DEFAULT_LOOKBACK_NANOS)?;
    let end = parse_time(form, "end", 1_000, now_nanos)?;
    let tags = parse_tags(&form.values("tag"), &form.values("tags"))?;
    let limit = match form.value("limit") {
        "" => DEFAULT_LIMIT,
        text => go_parse_int(text, 32)?,
    };
    let min = parse_go_duration(form, "minDuration")?;
    let max = parse_go_duration(form, "maxDuration")?;
    let mut trace_ids = Vec::new();
    for id in form.values("traceID") {
        let parsed = parse_trace_id(id).map_err(|e| format!("cannot parse traceID param: {e}"))?;
        trace_ids.push((id.to_string(), parsed));
    }
    let raw = parse_bool(form, "raw")?;
    let search = TraceSearch {
        service: form.value("service").to_string(),
        operation: form.value("operation").to_string(),
        tags,
        start_min_nanos: start,
        start_max_nanos: end,
        min_duration_nanos: min,
        max_duration_nanos: max,
        limit,
        trace_ids,
        raw,
    };
    if search.trace_ids.is_empty() && search.service.is_empty() {
        return Err("parameter 'service' is required".into());
    }
    if min != 0 && max != 0 && max < min {
        return Err("'maxDuration' should be greater than 'minDuration'".into());
    }
    Ok(search)
}

/// `parseDependenciesQueryParams`: `endTs` (ms, default now), `lookback` (ms, default 24h).
pub fn parse_dependencies(form: &Form, now_nanos: i64) -> Result<DependenciesQuery, ParseError> {
    let end_nanos = parse_time(form, "endTs", 1_000_000, now_nanos)?;
    let lookback_nanos = match form.value("lookback") {
        "" => DEFAULT_DEPENDENCY_LOOKBACK_NANOS,
        text => go_parse_int(text, 64)
            .map_err(|e| parse_error("lookback", e))?
            .wrapping_mul(1_000_000),
    };
    Ok(DependenciesQuery {
        end_nanos,
        lookback_nanos,
        service: form.value("service").to_string(),
    })
}

/// `start`/`end` of `GET /api/traces/{id}`: checked like Jaeger, then unused (a trace is
/// one row read whatever the range, as in Jaeger's memory store).
pub fn check_trace_params(form: &Form) -> Result<bool, ParseError> {
    for name in ["start", "end"] {
        let text = form.value(name);
        if !text.is_empty() {
            go_parse_int(text, 64).map_err(|e| parse_error(name, e))?;
        }
    }
    parse_bool(form, "raw")
}

fn parse_time(form: &Form, name: &str, unit_nanos: i64, default: i64) -> Result<i64, ParseError> {
    match form.value(name) {
        "" => Ok(default),
        text => Ok(go_parse_int(text, 64)
            .map_err(|e| parse_error(name, e))?
            .wrapping_mul(unit_nanos)),
    }
}

fn parse_go_duration(form: &Form, name: &str) -> Result<i64, ParseError> {
    match form.value(name) {
        "" => Ok(0),
        text => go_parse_duration(text).map_err(|e| parse_error(name, e)),
    }
}

fn parse_bool(form: &Form, name: &str) -> Result<bool, ParseError> {
    match form.value(name) {
        "" => Ok(false),
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        text => Err(parse_error(
            name,
            format!(
                "strconv.ParseBool: parsing {}: invalid syntax",
                go_quote(text)
            ),
        )),
    }
}

/// `parseTags`: `tag=k:v` (split at the first `:`) then `tags={"k":"v"}`, later wins.
pub fn parse_tags(simple: &[&str], json: &[&str]) -> Result<BTreeMap<String, String>, ParseError> {
    let mut tags = BTreeMap::new();
    for tag in simple {
        match tag.split_once(':') {
            Some((k, v)) => {
                tags.insert(k.to_string(), v.to_string());
            }
            None => {
                return Err(format!(
                    "malformed 'tag' parameter, expecting key:value, received: {tag}"
                ))
            }
        }
    }
    for text in json {
        let map = parse_tags_json(text)
            .map_err(|e| format!("malformed 'tags' parameter, cannot unmarshal JSON: {e}"))?;
        tags.extend(map);
    }
    Ok(tags)
}

/// A JSON object of strings, with Go's `encoding/json` messages for the usual mistakes.
fn parse_tags_json(text: &str) -> Result<BTreeMap<String, String>, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        if e.is_eof() || text.trim().is_empty() {
            "unexpected end of JSON input".to_string()
        } else {
            let c = text.trim_start().chars().next().unwrap_or(' ');
            if text.trim_start().starts_with('{') {
                let after = text.trim_start()[1..]
                    .trim_start()
                    .chars()
                    .next()
                    .unwrap_or(' ');
                format!(
                    "invalid character {} looking for beginning of object key string",
                    go_quote_char(after)
                )
            } else {
                format!(
                    "invalid character {} looking for beginning of value",
                    go_quote_char(c)
                )
            }
        }
    })?;
    let kind = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "bool",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    };
    let serde_json::Value::Object(map) = value else {
        return Err(format!(
            "json: cannot unmarshal {} into Go value of type map[string]string",
            kind(&value)
        ));
    };
    let mut out = BTreeMap::new();
    for (k, v) in map {
        match v {
            serde_json::Value::String(s) => {
                out.insert(k, s);
            }
            serde_json::Value::Null => {
                out.insert(k, String::new());
            }
            other => {
                return Err(format!(
                    "json: cannot unmarshal {} into Go value of type string",
                    kind(&other)
                ))
            }
        }
    }
    Ok(out)
}

/// `model.TraceIDFromString`: up to 32 hex digits, short ids left-padded with zeros.
pub fn parse_trace_id(text: &str) -> Result<[u8; 16], String> {
    if text.len() > 32 {
        return Err(format!(
            "TraceID cannot be longer than 32 hex characters: {text}"
        ));
    }
    let (high, low) = if text.len() > 16 {
        text.split_at(text.len() - 16)
    } else {
        ("", text)
    };
    let high = if high.is_empty() {
        0
    } else {
        go_parse_hex(high)?
    };
    let low = go_parse_hex(low)?;
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&high.to_be_bytes());
    id[8..].copy_from_slice(&low.to_be_bytes());
    Ok(id)
}

fn go_parse_hex(text: &str) -> Result<u64, String> {
    let err = || {
        format!(
            "strconv.ParseUint: parsing {}: invalid syntax",
            go_quote(text)
        )
    };
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(err());
    }
    u64::from_str_radix(text, 16).map_err(|_| {
        format!(
            "strconv.ParseUint: parsing {}: value out of range",
            go_quote(text)
        )
    })
}

/// `strconv.ParseInt(text, 10, bits)`.
fn go_parse_int(text: &str, bits: u32) -> Result<i64, String> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "strconv.ParseInt: parsing {}: invalid syntax",
            go_quote(text)
        ));
    }
    let out_of_range = || {
        format!(
            "strconv.ParseInt: parsing {}: value out of range",
            go_quote(text)
        )
    };
    let n: i128 = text.parse().map_err(|_| out_of_range())?;
    let max = (1i128 << (bits - 1)) - 1;
    if n > max || n < -max - 1 {
        return Err(out_of_range());
    }
    Ok(n as i64)
}

/// Go's `time.ParseDuration`, its grammar, limits and messages.
pub fn go_parse_duration(orig: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {}", go_quote(orig));
    let mut s = orig;
    let mut neg = false;
    if let Some(c) = s.chars().next() {
        if c == '-' || c == '+' {
            neg = c == '-';
            s = &s[1..];
        }
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    const LIMIT: u128 = 1 << 63;
    let mut total: u128 = 0;
    while !s.is_empty() {
        let b = s.as_bytes();
        if !(b[0] == b'.' || b[0].is_ascii_digit()) {
            return Err(invalid());
        }
        let int_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let mut v: u128 = 0;
        for d in &b[..int_len] {
            v = v * 10 + u128::from(d - b'0');
            if v >= LIMIT {
                return Err(invalid());
            }
        }
        s = &s[int_len..];
        let pre = int_len > 0;
        let (mut f, mut scale, mut post) = (0u128, 1f64, false);
        if s.starts_with('.') {
            s = &s[1..];
            let frac_len = s.bytes().take_while(|c| c.is_ascii_digit()).count();
            let mut overflow = false;
            for d in &s.as_bytes()[..frac_len] {
                if overflow {
                    continue;
                }
                if f > (LIMIT - 1) / 10 {
                    overflow = true;
                    continue;
                }
                let y = f * 10 + u128::from(d - b'0');
                if y >= LIMIT {
                    overflow = true;
                    continue;
                }
                f = y;
                scale *= 10.0;
            }
            post = frac_len > 0;
            s = &s[frac_len..];
        }
        if !pre && !post {
            return Err(invalid());
        }
        let unit_len = s
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map(|(i, _)| i)
            .unwrap_or(s.len());
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {}", go_quote(orig)));
        }
        let (unit, rest) = s.split_at(unit_len);
        s = rest;
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    go_quote(unit),
                    go_quote(orig)
                ))
            }
        };
        if v > LIMIT / unit_nanos {
            return Err(invalid());
        }
        v *= unit_nanos;
        if f > 0 {
            v += (f as f64 * (unit_nanos as f64 / scale)) as u128;
            if v > LIMIT {
                return Err(invalid());
            }
        }
        total += v;
        if total > LIMIT {
            return Err(invalid());
        }
    }
    if neg {
        return Ok((total as i128).wrapping_neg() as i64);
    }
    if total > LIMIT - 1 {
        return Err(invalid());
    }
    Ok(total as i64)
}

/// Go's `strconv.Quote` for the texts that appear in error messages.
pub fn go_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        push_escaped(c, '"', &mut out);
    }
    out.push('"');
    out
}

/// How Go's JSON scanner quotes a character: `'x'`.
fn go_quote_char(c: char) -> String {
    match c {
        '\'' => "'\\''".into(),
        '"' => "'\"'".into(),
        c => {
            let mut out = String::from("'");
            push_escaped(c, '\'', &mut out);
            out.push('\'');
            out
        }
    }
}

fn push_escaped(c: char, quote: char, out: &mut String) {
    match c {
        c if c == quote || c == '\\' => {
            out.push('\\');
            out.push(c);
        }
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\u{b}' => out.push_str("\\v"),
        c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000_000_000;

    fn search(q: &str) -> Result<TraceSearch, String> {
        parse_search(&Form::parse(Some(q)), NOW)
    }

    #[test]
    fn defaults_and_units() {
        let s = search("service=a&start=1700000000000000&minDuration=1.5ms&tag=k:v:w").unwrap();
        assert_eq!(s.start_min_nanos, 1_700_000_000_000_000_000);
        assert_eq!(s.start_max_nanos, NOW);
        assert_eq!(s.min_duration_nanos, 1_500_000);
        assert_eq!(s.limit, DEFAULT_LIMIT);
        assert_eq!(s.tags["k"], "v:w");
        let s = search("service=a&service=b&tags=%7B%22k%22%3A%22x%22%7D&tag=k:v&limit=3").unwrap();
        assert_eq!(s.service, "a", "the first value counts");
        assert_eq!(s.tags["k"], "x", "tags= wins over tag=");
        assert_eq!(s.limit, 3);
        assert_eq!(s.start_min_nanos, NOW - DEFAULT_LOOKBACK_NANOS);
        assert!(
            search("service=a&bogus=1").is_ok(),
            "unknown parameters are ignored"
        );
    }

    #[test]
    fn errors_are_jaegers() {
        assert_eq!(search("").unwrap_err(), "parameter 'service' is required");
        assert_eq!(
            search("service=a&start=abc").unwrap_err(),
            "unable to parse param 'start': strconv.ParseInt: parsing \"abc\": invalid syntax"
        );
        assert_eq!(
            search("service=a&minDuration=10x").unwrap_err(),
            "unable to parse param 'minDuration': time: unknown unit \"x\" in duration \"10x\""
        );
        assert_eq!(
            search("service=a&maxDuration=10").unwrap_err(),
            "unable to parse param 'maxDuration': time: missing unit in duration \"10\""
        );
        assert_eq!(
            search("service=a&minDuration=2s&maxDuration=1s").unwrap_err(),
            "'maxDuration' should be greater than 'minDuration'"
        );
        assert_eq!(
            search("service=a&limit=x").unwrap_err(),
            "strconv.ParseInt: parsing \"x\": invalid syntax"
        );
        assert_eq!(
            search("service=a&limit=99999999999").unwrap_err(),
            "strconv.ParseInt: parsing \"99999999999\": value out of range"
        );
        assert_eq!(
            search("service=a&tag=novalue").unwrap_err(),
            "malformed 'tag' parameter, expecting key:value, received: novalue"
        );
        assert_eq!(
            search("service=a&tags=%7Bbad").unwrap_err(),
            "malformed 'tags' parameter, cannot unmarshal JSON: invalid character 'b' looking for beginning of object key string"
        );
        assert_eq!(
            search("service=a&tags=").unwrap_err(),
            "malformed 'tags' parameter, cannot unmarshal JSON: unexpected end of JSON input"
        );
        assert_eq!(
            search("service=a&traceID=xyz").unwrap_err(),
            "cannot parse traceID param: strconv.ParseUint: parsing \"xyz\": invalid syntax"
        );
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_parse_duration("1h2m3.5s"), Ok(3_723_500_000_000));
        assert_eq!(go_parse_duration("500us"), Ok(500_000));
        assert_eq!(
            go_parse_duration("\u{b5}s"),
            Err("time: invalid duration \"µs\"".into())
        );
        assert_eq!(go_parse_duration("-1ms"), Ok(-1_000_000));
        assert_eq!(go_parse_duration("0"), Ok(0));
        assert!(go_parse_duration("").is_err());
        assert!(go_parse_duration(".s").is_err());
        assert!(go_parse_duration("9999999999h").is_err());
        assert_eq!(
            go_parse_duration("1d").unwrap_err(),
            "time: unknown unit \"d\" in duration \"1d\""
        );
    }

    #[test]
    fn trace_ids_like_jaeger() {
        let id = parse_trace_id("abc").unwrap();
        assert_eq!(id[14..], [0x0a, 0xbc]);
        assert_eq!(id[..14], [0; 14]);
        assert!(parse_trace_id(&"f".repeat(32)).is_ok());
        assert_eq!(
            parse_trace_id(&"a".repeat(33)).unwrap_err(),
            format!(
                "TraceID cannot be longer than 32 hex characters: {}",
                "a".repeat(33)
            )
        );
        assert_eq!(
            parse_trace_id("").unwrap_err(),
            "strconv.ParseUint: parsing \"\": invalid syntax"
        );
    }

    #[test]
    fn dependencies_in_milliseconds() {
        let d = parse_dependencies(
            &Form::parse(Some("endTs=1700000000000&lookback=60000")),
            NOW,
        )
        .unwrap();
        assert_eq!(d.end_nanos, 1_700_000_000_000_000_000);
        assert_eq!(d.lookback_nanos, 60_000_000_000);
        let d = parse_dependencies(&Form::parse(None), NOW).unwrap();
        assert_eq!(
            (d.end_nanos, d.lookback_nanos),
            (NOW, DEFAULT_DEPENDENCY_LOOKBACK_NANOS)
        );
        assert_eq!(
            parse_dependencies(&Form::parse(Some("lookback=1h")), NOW).unwrap_err(),
            "unable to parse param 'lookback': strconv.ParseInt: parsing \"1h\": invalid syntax"
        );
    }
}
