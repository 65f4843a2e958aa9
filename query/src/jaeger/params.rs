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

/// A JSON object of strings, decoded as Go's `json.Unmarshal` into `map[string]string`
/// decodes it: the whole text is syntax-checked first (Go's scanner messages), then the
/// entries are read in document order, the first one that is not a string (or null)
/// being the error.
fn parse_tags_json(text: &str) -> Result<BTreeMap<String, String>, String> {
    go_json_syntax(text)?;
    let kind = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "bool",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    match &value {
        serde_json::Value::Object(_) => {}
        serde_json::Value::Null => return Ok(BTreeMap::new()),
        other => {
            return Err(format!(
                "json: cannot unmarshal {} into Go value of type map[string]string",
                kind(other)
            ))
        }
    }
    let entries: OrderedEntries = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    for (k, v) in entries.0 {
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

/// A JSON object's entries in document order.
struct OrderedEntries(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for OrderedEntries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = OrderedEntries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<OrderedEntries, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    out.push(entry);
                }
                Ok(OrderedEntries(out))
            }
        }
        d.deserialize_map(Entries)
    }
}

/// Go's `encoding/json` syntax check (`checkValid`, the scanner of `scanner.go`): the same
/// states, so the same message for the same mistake. Bytes are quoted as Go quotes them.
fn go_json_syntax(text: &str) -> Result<(), String> {
    #[derive(Clone, Copy, PartialEq)]
    enum Ctx {
        ObjectKey,
        ObjectValue,
        ArrayValue,
    }
    #[derive(Clone, Copy, PartialEq)]
    enum St {
        BeginValueOrEmpty,
        BeginValue,
        BeginStringOrEmpty,
        BeginString,
        EndValue,
        EndTop,
        InString,
        InStringEsc,
        InStringEscU(u8),
        Neg,
        One,
        Zero,
        Dot,
        Dot0,
        E,
        ESign,
        E0,
        /// Inside `true`, `false` or `null`: the literal and how much of it was read.
        Literal(&'static str, usize),
    }
    let is_space = |c: u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n');
    let err = |c: u8, context: &str| {
        Err(format!(
            "invalid character {} {context}",
            go_quote_char(char::from(c))
        ))
    };
    let mut stack: Vec<Ctx> = Vec::new();
    let mut state = St::BeginValue;
    let mut end_top = false;
    let step = |state: &mut St, stack: &mut Vec<Ctx>, end_top: &mut bool, c: u8| {
        // a state that ends a value hands the byte on to EndValue, as Go's do
        let mut c_state = *state;
        loop {
            match c_state {
                St::BeginValueOrEmpty | St::BeginValue => {
                    if is_space(c) {
                        return Ok(());
                    }
                    if c_state == St::BeginValueOrEmpty && c == b']' {
                        stack.pop();
                        *state = St::EndValue;
                        return Ok(());
                    }
                    *state = match c {
                        b'{' => {
                            stack.push(Ctx::ObjectKey);
                            St::BeginStringOrEmpty
                        }
                        b'[' => {
                            stack.push(Ctx::ArrayValue);
                            St::BeginValueOrEmpty
                        }
                        b'"' => St::InString,
                        b'-' => St::Neg,
                        b'0' => St::Zero,
                        b'1'..=b'9' => St::One,
                        b't' => St::Literal("true", 1),
                        b'f' => St::Literal("false", 1),
                        b'n' => St::Literal("null", 1),
                        _ => return err(c, "looking for beginning of value"),
                    };
                    return Ok(());
                }
                St::BeginStringOrEmpty | St::BeginString => {
                    if is_space(c) {
                        return Ok(());
                    }
                    if c_state == St::BeginStringOrEmpty && c == b'}' {
                        stack.pop();
                        *state = St::EndValue;
                        return Ok(());
                    }
                    if c == b'"' {
                        *state = St::InString;
                        return Ok(());
                    }
                    return err(c, "looking for beginning of object key string");
                }
                St::EndValue => {
                    let Some(top) = stack.last_mut() else {
                        *end_top = true;
                        c_state = St::EndTop;
                        *state = St::EndTop;
                        continue;
                    };
                    if is_space(c) {
                        *state = St::EndValue;
                        return Ok(());
                    }
                    match (*top, c) {
                        (Ctx::ObjectKey, b':') => {
                            *top = Ctx::ObjectValue;
                            *state = St::BeginValue;
                        }
                        (Ctx::ObjectKey, _) => return err(c, "after object key"),
                        (Ctx::ObjectValue, b',') => {
                            *top = Ctx::ObjectKey;
                            *state = St::BeginString;
                        }
                        (Ctx::ObjectValue, b'}') | (Ctx::ArrayValue, b']') => {
                            stack.pop();
                            *state = St::EndValue;
                        }
                        (Ctx::ObjectValue, _) => return err(c, "after object key:value pair"),
                        (Ctx::ArrayValue, b',') => *state = St::BeginValue,
                        (Ctx::ArrayValue, _) => return err(c, "after array element"),
                    }
                    return Ok(());
                }
                St::EndTop => {
                    if !is_space(c) {
                        return err(c, "after top-level value");
                    }
                    return Ok(());
                }
                St::InString => {
                    match c {
                        b'"' => *state = St::EndValue,
                        b'\\' => *state = St::InStringEsc,
                        c if c < 0x20 => return err(c, "in string literal"),
                        _ => {}
                    }
                    return Ok(());
                }
                St::InStringEsc => {
                    *state = match c {
                        b'b' | b'f' | b'n' | b'r' | b't' | b'\\' | b'/' | b'"' => St::InString,
                        b'u' => St::InStringEscU(0),
                        _ => return err(c, "in string escape code"),
                    };
                    return Ok(());
                }
                St::InStringEscU(n) => {
                    if !c.is_ascii_hexdigit() {
                        return err(c, "in \\u hexadecimal character escape");
                    }
                    *state = if n == 3 {
                        St::InString
                    } else {
                        St::InStringEscU(n + 1)
                    };
                    return Ok(());
                }
                St::Neg => {
                    *state = match c {
                        b'0' => St::Zero,
                        b'1'..=b'9' => St::One,
                        _ => return err(c, "in numeric literal"),
                    };
                    return Ok(());
                }
                St::One if c.is_ascii_digit() => return Ok(()),
                St::One | St::Zero => match c {
                    b'.' => {
                        *state = St::Dot;
                        return Ok(());
                    }
                    b'e' | b'E' => {
                        *state = St::E;
                        return Ok(());
                    }
                    _ => c_state = St::EndValue,
                },
                St::Dot => {
                    if !c.is_ascii_digit() {
                        return err(c, "after decimal point in numeric literal");
                    }
                    *state = St::Dot0;
                    return Ok(());
                }
                St::Dot0 => match c {
                    b'0'..=b'9' => return Ok(()),
                    b'e' | b'E' => {
                        *state = St::E;
                        return Ok(());
                    }
                    _ => c_state = St::EndValue,
                },
                St::E if c == b'+' || c == b'-' => {
                    *state = St::ESign;
                    return Ok(());
                }
                St::E | St::ESign => {
                    if !c.is_ascii_digit() {
                        return err(c, "in exponent of numeric literal");
                    }
                    *state = St::E0;
                    return Ok(());
                }
                St::E0 => {
                    if c.is_ascii_digit() {
                        return Ok(());
                    }
                    c_state = St::EndValue;
                }
                St::Literal(word, n) => {
                    let want = word.as_bytes()[n];
                    if c != want {
                        return err(
                            c,
                            &format!(
                                "in literal {word} (expecting {})",
                                go_quote_char(char::from(want))
                            ),
                        );
                    }
                    *state = if n + 1 == word.len() {
                        St::EndValue
                    } else {
                        St::Literal(word, n + 1)
                    };
                    return Ok(());
                }
            }
            *state = c_state;
        }
    };
    for &c in text.as_bytes() {
        step(&mut state, &mut stack, &mut end_top, c)?;
    }
    if end_top {
        return Ok(());
    }
    // Go's eof(): one more space, which ends a number and breaks a literal
    step(&mut state, &mut stack, &mut end_top, b' ')?;
    if end_top {
        return Ok(());
    }
    Err("unexpected end of JSON input".into())
}

/// Go's `url.QueryUnescape`: `%XX` decoded, `+` a space; `None` for a malformed escape.
pub fn go_query_unescape(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// `model.TraceIDFromString`: up to 32 hex digits, short ids left-padded with zeros.
pub fn parse_trace_id(text: &str) -> Result<[u8; 16], String> {
    if text.len() > 32 {
        return Err(format!(
            "TraceID cannot be longer than 32 hex characters: {text}"
        ));
    }
    // Go splits bytes: the halves may cut a multi-byte character (then neither is hex)
    let bytes = text.as_bytes();
    let (high, low) = if bytes.len() > 16 {
        bytes.split_at(bytes.len() - 16)
    } else {
        (&[][..], bytes)
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

fn go_parse_hex(bytes: &[u8]) -> Result<u64, String> {
    let quoted = || go_quote_bytes(bytes);
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_hexdigit) {
        return Err(format!(
            "strconv.ParseUint: parsing {}: invalid syntax",
            quoted()
        ));
    }
    let text = std::str::from_utf8(bytes).expect("hex digits are ASCII");
    u64::from_str_radix(text, 16).map_err(|_| {
        format!(
            "strconv.ParseUint: parsing {}: value out of range",
            quoted()
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

/// `strconv.Quote` of bytes that may not be UTF-8: invalid bytes become `\xNN`.
fn go_quote_bytes(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_escaped(c, '"', &mut out);
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
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

    /// Pairs seen from Jaeger v2 (`tags=` of `GET /api/traces`).
    #[test]
    fn tags_json_errors_are_gos() {
        let cases = [
            (
                "[1]",
                "json: cannot unmarshal array into Go value of type map[string]string",
            ),
            (
                r#"{"a":"b",}"#,
                "invalid character '}' looking for beginning of object key string",
            ),
            (r#"{"a" "b"}"#, "invalid character '\"' after object key"),
            ("x", "invalid character 'x' looking for beginning of value"),
            (
                r#"{"a":"b"}x"#,
                "invalid character 'x' after top-level value",
            ),
            (
                r#""s""#,
                "json: cannot unmarshal string into Go value of type map[string]string",
            ),
            (
                r#"{"a":true}"#,
                "json: cannot unmarshal bool into Go value of type string",
            ),
            (r#"{"a":"b"#, "unexpected end of JSON input"),
            (
                "nul",
                "invalid character ' ' in literal null (expecting 'l')",
            ),
            (
                r#"{"a":{}}"#,
                "json: cannot unmarshal object into Go value of type string",
            ),
            ("  ", "unexpected end of JSON input"),
            (
                r#"{"a":1.5}"#,
                "json: cannot unmarshal number into Go value of type string",
            ),
            (
                r#"{"b":1,"a":true}"#,
                "json: cannot unmarshal number into Go value of type string",
            ),
            (
                "[1.]",
                "invalid character ']' after decimal point in numeric literal",
            ),
            ("01", "invalid character '1' after top-level value"),
            (
                r#"{"a":"\x"}"#,
                "invalid character 'x' in string escape code",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse_tags_json(text).unwrap_err(), want, "{text}");
        }
        assert_eq!(parse_tags_json("null").unwrap(), BTreeMap::new());
        let ok = parse_tags_json(r#" {"a":"1","b":null,"a":"2","c":"\u00e9"} "#).unwrap();
        assert_eq!(ok["a"], "2");
        assert_eq!(ok["b"], "");
        assert_eq!(ok["c"], "é");
        assert!(go_json_syntax(r#"[1,-2.5e+3,true,false,null,{},[],"\""]"#).is_ok());
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
        // 18 bytes: the split falls inside `é`, as Go's does, and no panic
        assert_eq!(
            parse_trace_id(&format!("a\u{e9}{}", "a".repeat(15))).unwrap_err(),
            "strconv.ParseUint: parsing \"a\\xc3\": invalid syntax"
        );
    }

    #[test]
    fn query_unescape_like_go() {
        assert_eq!(go_query_unescape("a+b%2Fc").as_deref(), Some("a b/c"));
        assert_eq!(go_query_unescape("%zz"), None);
        assert_eq!(go_query_unescape("%4"), None);
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
