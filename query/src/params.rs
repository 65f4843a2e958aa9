//! Query-string parsing and validation: from `?service=…&attr=…` to a [`TraceQuery`].
//!
//! Rules (each violation is a 400 naming the parameter):
//! - Unknown parameters are refused: a typo (`servce=`) must not silently widen a search.
//! - A parameter that takes one value may not be given twice; `attr` and `key` repeat.
//! - An empty value (`service=`) means "not set", as HTML forms send empty fields.
//! - Durations are Go/Jaeger style (`150ms`, `1.5s`, `500us`, `2m`, `1h30m`, `7d`) or plain
//!   nanoseconds; negative durations are refused.
//! - Times are RFC 3339 (`2026-11-23T19:00:00Z`, `…+01:00`) or unix nanoseconds. Numbers that
//!   are too small to be unix nanoseconds (seconds, milliseconds, microseconds) are refused
//!   rather than read as a moment in 1970.
//! - `lookback=1h` sets the start to one hour before `end` (or now); it conflicts with
//!   `start`. The start must be before the end.
//! - `limit` must be a positive integer; more than [`MAX_LIMIT`] is clamped (more than
//!   [`MAX_FULL_LIMIT`] for key lookups that return whole traces).
//! - `attr=name:value` needs `name` to be indexed ([`check_attributes`]): a configured
//!   indexed attribute, or a business key (then it searches the business key). Anything
//!   the index holds no term for (a value over the indexed size, or a name outside a
//!   configured list) could never match and is refused with the reason.
//! - Sizes are bounded (number of parameters, length of values, free text) so that a request
//!   cannot make the index do unbounded work.

use std::time::Duration;

use clew_store::trace_index::{DEFAULT_LIMIT, MAX_LIMIT};
use clew_store::TraceQuery;

use crate::error::{Error, Result};
use crate::{Indexed, IndexedAttributes};
use clew_store::trace_index::span_doc::MAX_INDEXED_VALUE_BYTES;

/// Most parameters one request may carry.
pub const MAX_PARAMS: usize = 64;
/// Longest value of any parameter, in bytes.
pub const MAX_VALUE_BYTES: usize = 4096;
/// Longest free-text query (`q`), in characters.
pub const MAX_TEXT_CHARS: usize = 512;
/// Page size cap of `?full=true` lookups: whole traces are up to the per-trace cap each.
pub const MAX_FULL_LIMIT: usize = 100;
/// Unix nanoseconds below this (1973-03-03) are taken to be a unit mistake.
const MIN_PLAUSIBLE_UNIX_NANO: u64 = 100_000_000_000_000_000;

const SEARCH_PARAMS: &[&str] = &[
    "service",
    "operation",
    "error",
    "min_duration",
    "max_duration",
    "start",
    "end",
    "lookback",
    "attr",
    "key",
    "q",
    "limit",
    "cursor",
];
const INVENTORY_PARAMS: &[&str] = &["service", "sdk", "version", "quiet_for"];
const KEY_LOOKUP_PARAMS: &[&str] = &["start", "end", "lookback", "limit", "cursor", "full"];

/// What `error=` asks for. The index can only select traces *with* errors; traces without
/// any are selected after fetching (so such a page may hold fewer than `limit` traces while
/// `next_cursor` still leads on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorFilter {
    #[default]
    Any,
    WithErrors,
    WithoutErrors,
}

/// A validated `GET /api/v1/search`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchParams {
    pub query: TraceQuery,
    pub errors: ErrorFilter,
}

/// A validated `GET /api/v1/keys/{name}/{value}`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KeyLookupParams {
    pub query: TraceQuery,
    /// `full=true`: whole traces instead of summaries.
    pub full: bool,
}

/// Parses a search query string. `now_unix_nano` anchors `lookback`.
/// `GET /api/v1/inventory?service=&sdk=&version=&quiet_for=`.
pub fn parse_inventory(raw_query: Option<&str>) -> Result<crate::InventoryQuery> {
    let mut params = Params::parse(raw_query, INVENTORY_PARAMS)?;
    Ok(crate::InventoryQuery {
        service: params.one("service")?,
        sdk: params.one("sdk")?,
        version: params.one("version")?,
        quiet_for: params
            .one_with("quiet_for", parse_duration)?
            .map(Duration::from_nanos),
    })
}

pub fn parse_search(raw_query: Option<&str>, now_unix_nano: u64) -> Result<SearchParams> {
    let mut params = Params::parse(raw_query, SEARCH_PARAMS)?;
    let mut query = TraceQuery {
        service: params.one("service")?,
        operation: params.one("operation")?,
        text: params.one("q")?,
        ..Default::default()
    };
    if let Some(text) = &query.text {
        if text.chars().count() > MAX_TEXT_CHARS {
            return Err(bad(
                "q",
                text,
                &format!("free text is limited to {MAX_TEXT_CHARS} characters"),
            ));
        }
    }
    let errors = match params.one("error")?.as_deref() {
        None => ErrorFilter::Any,
        Some("true") => ErrorFilter::WithErrors,
        Some("false") => ErrorFilter::WithoutErrors,
        Some(other) => return Err(bad("error", other, "expected `true` or `false`")),
    };
    query.errors_only = errors == ErrorFilter::WithErrors;
    query.min_duration_nanos = params.one_with("min_duration", parse_duration)?;
    query.max_duration_nanos = params.one_with("max_duration", parse_duration)?;
    if let (Some(min), Some(max)) = (query.min_duration_nanos, query.max_duration_nanos) {
        if min > max {
            return Err(Error::bad_request(format!(
                "invalid query parameters: `min_duration` ({min} ns) is greater than `max_duration` ({max} ns)"
            )));
        }
    }
    query.attributes = params.all_with("attr", parse_name_value)?;
    query.business_keys = params.all_with("key", parse_name_value)?;
    fill_page_and_time(&mut params, &mut query, now_unix_nano)?;
    Ok(SearchParams { query, errors })
}

/// Checks every `attr=` condition of `query` against what the index holds terms for: a
/// condition on a business key becomes a business-key condition (the index keeps business
/// keys apart from attributes), one on a name that is not indexed at all is a 400 that says
/// what is indexed and which setting to change.
pub fn check_attributes(query: &mut TraceQuery, indexed: &Indexed) -> Result<()> {
    let mut attributes = Vec::with_capacity(query.attributes.len());
    for (name, value) in std::mem::take(&mut query.attributes) {
        if indexed.business_keys.contains(&name) {
            query.business_keys.push((name, value));
        } else if indexed.attributes.covers(&name, &value) {
            attributes.push((name, value));
        } else if indexed.attributes == IndexedAttributes::All {
            let name = shorten(&name);
            return Err(Error::bad_request(format!(
                "`attr={name}:…` can never match: attribute names and values longer than \
                 {MAX_INDEXED_VALUE_BYTES} bytes are not indexed (the stored spans keep them)"
            )));
        } else {
            let IndexedAttributes::Listed(listed) = &indexed.attributes else {
                unreachable!("covered above")
            };
            let list = |names: &[String]| {
                if names.is_empty() {
                    "(none)".to_string()
                } else {
                    names.join(", ")
                }
            };
            let name = shorten(&name);
            return Err(Error::bad_request(format!(
                "attribute `{name}` is not indexed, so `attr={name}:…` can never match; \
                 indexed attributes: {}; business keys: {}; to search by `{name}`, add it to \
                 `indexed_attributes` (or `collector.business_keys`) in the configuration \
                 (it applies to spans received from then on)",
                list(listed),
                list(&indexed.business_keys),
            )));
        }
    }
    query.attributes = attributes;
    Ok(())
}

/// Parses the query string of a business-key lookup of `name`=`value` (from the path).
pub fn parse_key_lookup(
    name: &str,
    value: &str,
    raw_query: Option<&str>,
    now_unix_nano: u64,
) -> Result<KeyLookupParams> {
    if name.is_empty() {
        return Err(Error::bad_request(
            "invalid business key in path: the key name is empty",
        ));
    }
    if name.len() > MAX_VALUE_BYTES || value.len() > MAX_VALUE_BYTES {
        return Err(Error::bad_request(format!(
            "invalid business key in path: longer than {MAX_VALUE_BYTES} bytes"
        )));
    }
    let mut params = Params::parse(raw_query, KEY_LOOKUP_PARAMS)?;
    let full = params.one_with("full", parse_bool)?.unwrap_or(false);
    let mut query = TraceQuery {
        business_keys: vec![(name.to_string(), value.to_string())],
        ..Default::default()
    };
    fill_page_and_time(&mut params, &mut query, now_unix_nano)?;
    if full {
        query.limit = query.limit.min(MAX_FULL_LIMIT);
    }
    Ok(KeyLookupParams { query, full })
}

/// `limit`, `cursor`, `start`, `end`, `lookback`: shared by search and key lookup.
fn fill_page_and_time(
    params: &mut Params,
    query: &mut TraceQuery,
    now_unix_nano: u64,
) -> Result<()> {
    query.limit = params
        .one_with("limit", parse_limit)?
        .unwrap_or(DEFAULT_LIMIT);
    query.cursor = params.one("cursor")?;
    let start = params.one_with("start", parse_timestamp)?;
    let end = params.one_with("end", parse_timestamp)?;
    let lookback = params.one_with("lookback", parse_duration)?;
    let start = match (start, lookback) {
        (Some(_), Some(_)) => {
            return Err(Error::bad_request(
                "invalid query parameters: give either `start` or `lookback`, not both",
            ))
        }
        (None, Some(lookback)) => Some(end.unwrap_or(now_unix_nano).saturating_sub(lookback)),
        (start, None) => start,
    };
    if let (Some(start), Some(end)) = (start, end) {
        if start >= end {
            return Err(Error::bad_request(format!(
                "invalid query parameters: the start ({start}) is not before `end` ({end})"
            )));
        }
    }
    query.start_min_unix_nano = start;
    query.start_max_unix_nano = end;
    Ok(())
}

/// The decoded `name=value` pairs of a query string, checked against the names allowed.
struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    fn parse(raw_query: Option<&str>, allowed: &[&str]) -> Result<Self> {
        let mut pairs = Vec::new();
        for (name, value) in form_urlencoded::parse(raw_query.unwrap_or("").as_bytes()) {
            if name.is_empty() && value.is_empty() {
                continue; // `?a=1&&b=2`
            }
            if !allowed.contains(&name.as_ref()) {
                return Err(Error::bad_request(format!(
                    "unknown query parameter `{}` (known: {})",
                    shorten(&name),
                    allowed.join(", ")
                )));
            }
            if value.len() > MAX_VALUE_BYTES {
                return Err(bad(
                    &name,
                    &value,
                    &format!("values are limited to {MAX_VALUE_BYTES} bytes"),
                ));
            }
            pairs.push((name.into_owned(), value.into_owned()));
            if pairs.len() > MAX_PARAMS {
                return Err(Error::bad_request(format!(
                    "too many query parameters: at most {MAX_PARAMS}"
                )));
            }
        }
        Ok(Params { pairs })
    }

    /// The single non-empty value of `name`, if given.
    fn one(&mut self, name: &str) -> Result<Option<String>> {
        let mut values = self.all(name);
        if values.len() > 1 {
            return Err(Error::bad_request(format!(
                "query parameter `{name}` is given more than once"
            )));
        }
        Ok(values.pop())
    }

    fn one_with<T>(
        &mut self,
        name: &str,
        parse: impl Fn(&str) -> std::result::Result<T, String>,
    ) -> Result<Option<T>> {
        self.one(name)?
            .map(|v| parse(&v).map_err(|why| bad(name, &v, &why)))
            .transpose()
    }

    /// Every non-empty value of `name`, in order.
    fn all(&mut self, name: &str) -> Vec<String> {
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pairs)
            .into_iter()
            .partition(|(n, _)| n == name);
        self.pairs = rest;
        mine.into_iter()
            .map(|(_, v)| v)
            .filter(|v| !v.is_empty())
            .collect()
    }

    fn all_with<T>(
        &mut self,
        name: &str,
        parse: impl Fn(&str) -> std::result::Result<T, String>,
    ) -> Result<Vec<T>> {
        self.all(name)
            .iter()
            .map(|v| parse(v).map_err(|why| bad(name, v, &why)))
            .collect()
    }
}

fn bad(name: &str, value: &str, why: &str) -> Error {
    Error::bad_request(format!(
        "invalid query parameter `{name}`=`{}`: {why}",
        shorten(value)
    ))
}

/// User input echoed in an error message, cut to a readable length.
pub(crate) fn shorten(text: &str) -> String {
    const MAX: usize = 64;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

fn parse_bool(text: &str) -> std::result::Result<bool, String> {
    match text {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected `true` or `false`".into()),
    }
}

fn parse_limit(text: &str) -> std::result::Result<usize, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected a positive integer".into());
    }
    // all digits: too many of them is just a very large limit
    let n = text.parse::<u64>().unwrap_or(u64::MAX);
    if n == 0 {
        return Err("expected a positive integer".into());
    }
    Ok(usize::try_from(n).unwrap_or(MAX_LIMIT).min(MAX_LIMIT))
}

/// `name:value`, split at the first `:`; the name must not be empty.
fn parse_name_value(text: &str) -> std::result::Result<(String, String), String> {
    match text.split_once(':') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err("expected `name:value`".into()),
    }
}

/// A Go/Jaeger-style duration (`150ms`, `1.5s`, `1h30m`, `7d`) or plain nanoseconds.
pub fn parse_duration(text: &str) -> std::result::Result<u64, String> {
    const HINT: &str = "expected a duration like `150ms`, `1.5s`, `2m` or nanoseconds";
    if text.starts_with('-') {
        return Err("negative durations are not allowed".into());
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<u64>()
            .map_err(|_| "duration is too large".to_string());
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest.is_empty() {
        return Err(HINT.into());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "d" => 86_400 * 1_000_000_000,
            "" => return Err(format!("{HINT} (a unit is missing)")),
            _ => return Err(format!("{HINT} (unknown unit `{}`)", shorten(unit))),
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(HINT.into());
        }
        // at most 9 fractional digits matter (nanoseconds of a second)
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole
                .parse()
                .map_err(|_| "duration is too large".to_string())?
        };
        let fraction = &fraction[..fraction.len().min(9)];
        let scale = 10u128.pow(fraction.len() as u32);
        let fraction: u128 = if fraction.is_empty() {
            0
        } else {
            fraction.parse().map_err(|_| HINT.to_string())?
        };
        total = whole
            .checked_mul(unit_nanos)
            .and_then(|w| w.checked_add(fraction * unit_nanos / scale))
            .and_then(|v| v.checked_add(total))
            .ok_or("duration is too large")?;
        rest = tail;
    }
    u64::try_from(total).map_err(|_| "duration is too large".to_string())
}

/// RFC 3339 or unix nanoseconds.
pub fn parse_timestamp(text: &str) -> std::result::Result<u64, String> {
    if text.starts_with('-') {
        return Err("times before 1970 are not allowed".into());
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let n = text
            .parse::<u64>()
            .map_err(|_| "time is too large for unix nanoseconds".to_string())?;
        if n < MIN_PLAUSIBLE_UNIX_NANO {
            return Err("expected unix nanoseconds (19 digits) or RFC 3339; this looks like seconds, milliseconds or microseconds".into());
        }
        return Ok(n);
    }
    parse_rfc3339(text)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` to unix nanoseconds.
fn parse_rfc3339(text: &str) -> std::result::Result<u64, String> {
    const HINT: &str = "expected RFC 3339 like `2026-11-23T19:00:00Z` or unix nanoseconds";
    let b = text.as_bytes();
    let digits = |from: usize, len: usize| -> std::result::Result<i64, String> {
        let part = b.get(from..from + len).ok_or(HINT)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return Err(HINT.into());
        }
        Ok(part
            .iter()
            .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')))
    };
    let sep = |at: usize, allowed: &[u8]| {
        if b.get(at).is_some_and(|c| allowed.contains(c)) {
            Ok(())
        } else {
            Err(HINT.to_string())
        }
    };

    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    sep(4, b"-")?;
    sep(7, b"-")?;
    sep(10, b"Tt ")?;
    let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    sep(13, b":")?;
    sep(16, b":")?;
    let mut at = 19;
    let mut nanos: i64 = 0;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let frac_len = b[at..].iter().take_while(|c| c.is_ascii_digit()).count();
        if frac_len == 0 {
            return Err(HINT.into());
        }
        let kept = frac_len.min(9);
        nanos = digits(at, kept)? * 10i64.pow((9 - kept) as u32);
        at += frac_len;
    }
    let offset_secs = match b.get(at) {
        Some(b'Z' | b'z') if at + 1 == b.len() => 0,
        // a space is a `+` that went into a URL unencoded
        Some(sign @ (b'+' | b'-' | b' ')) if at + 6 == b.len() => {
            sep(at + 3, b":")?;
            let (oh, om) = (digits(at + 1, 2)?, digits(at + 4, 2)?);
            if oh > 23 || om > 59 {
                return Err(format!("{HINT} (bad offset)"));
            }
            let offset = oh * 3600 + om * 60;
            if *sign != b'-' {
                offset
            } else {
                -offset
            }
        }
        _ => return Err(format!("{HINT} (a time zone `Z` or `±HH:MM` is required)")),
    };
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(format!("{HINT} (no such date)"));
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err(format!("{HINT} (no such time of day)"));
    }
    // month and day were checked above, so they fit
    let days = clew_store::trace_index::days::days_from_civil(year, month as u32, day as u32);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    if secs < 0 {
        return Err("times before 1970 are not allowed".into());
    }
    // year ≤ 9999 keeps this far inside u64 nanoseconds… except past 2554
    (secs as u64)
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(nanos as u64))
        .ok_or_else(|| "time is too far in the future".to_string())
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000_000_000;

    fn search(q: &str) -> Result<SearchParams> {
        parse_search(Some(q), NOW)
    }

    fn err(q: &str) -> String {
        match search(q) {
            Err(e @ Error::BadRequest(_)) => e.to_string(),
            other => panic!("expected 400 for {q:?}, got {other:?}"),
        }
    }

    #[test]
    fn empty_query_gives_defaults() {
        let p = parse_search(None, NOW).unwrap();
        assert_eq!(
            p.query,
            TraceQuery {
                limit: DEFAULT_LIMIT,
                ..Default::default()
            }
        );
        assert_eq!(p.errors, ErrorFilter::Any);
        assert_eq!(search("").unwrap(), p);
        assert_eq!(
            search("service=&q=&limit=").unwrap(),
            p,
            "empty values are unset"
        );
    }

    #[test]
    fn full_search() {
        let p = search(
            "service=payments&operation=GET+%2Fcheckout&error=true&min_duration=150ms&max_duration=1.5s\
             &start=2023-11-14T22:13:20Z&end=1700000001000000000&attr=http.route:/api/orders/{id}\
             &attr=db.system:postgresql&key=order_id:12345&q=card+declined&limit=50&cursor=abc",
        )
        .unwrap();
        let q = p.query;
        assert_eq!(q.service.as_deref(), Some("payments"));
        assert_eq!(q.operation.as_deref(), Some("GET /checkout"));
        assert!(q.errors_only);
        assert_eq!(p.errors, ErrorFilter::WithErrors);
        assert_eq!(q.min_duration_nanos, Some(150_000_000));
        assert_eq!(q.max_duration_nanos, Some(1_500_000_000));
        assert_eq!(q.start_min_unix_nano, Some(NOW));
        assert_eq!(q.start_max_unix_nano, Some(NOW + 1_000_000_000));
        let unencoded_plus = search("start=2023-11-14T23:13:20+01:00").unwrap().query;
        assert_eq!(
            unencoded_plus.start_min_unix_nano,
            Some(NOW),
            "`+` decoded as a space"
        );
        assert_eq!(
            q.attributes,
            vec![
                ("http.route".into(), "/api/orders/{id}".into()),
                ("db.system".into(), "postgresql".into())
            ]
        );
        assert_eq!(q.business_keys, vec![("order_id".into(), "12345".into())]);
        assert_eq!(q.text.as_deref(), Some("card declined"));
        assert_eq!(q.limit, 50);
        assert_eq!(q.cursor.as_deref(), Some("abc"));
    }

    #[test]
    fn first_colon_splits_name_and_value() {
        let q = search("attr=url:http://x:80/a&key=k:").unwrap().query;
        assert_eq!(q.attributes, vec![("url".into(), "http://x:80/a".into())]);
        assert_eq!(q.business_keys, vec![("k".into(), "".into())]);
    }

    #[test]
    fn error_false_is_filtered_after_fetch() {
        let p = search("error=false").unwrap();
        assert_eq!(p.errors, ErrorFilter::WithoutErrors);
        assert!(!p.query.errors_only);
    }

    #[test]
    fn lookback_anchors_on_end_or_now() {
        let q = search("lookback=1h").unwrap().query;
        assert_eq!(q.start_min_unix_nano, Some(NOW - 3_600_000_000_000));
        assert_eq!(q.start_max_unix_nano, None);
        let q = search("lookback=2m&end=1700000000000000000").unwrap().query;
        assert_eq!(q.start_min_unix_nano, Some(NOW - 120_000_000_000));
        assert_eq!(q.start_max_unix_nano, Some(NOW));
        let q = search("lookback=100000d").unwrap().query;
        assert_eq!(q.start_min_unix_nano, Some(0), "huge lookback saturates");
    }

    #[test]
    fn limits_are_clamped() {
        assert_eq!(search("limit=5000").unwrap().query.limit, MAX_LIMIT);
        assert_eq!(
            search("limit=99999999999999999999999").unwrap().query.limit,
            MAX_LIMIT
        );
        assert_eq!(search("limit=1").unwrap().query.limit, 1);
    }

    #[test]
    fn every_bad_input_is_a_400_naming_the_parameter() {
        let cases: &[(&str, &str)] = &[
            ("servce=payments", "unknown query parameter `servce`"),
            ("service=a&service=b", "`service` is given more than once"),
            ("limit=0", "`limit`=`0`"),
            ("limit=-5", "`limit`=`-5`"),
            ("limit=ten", "`limit`=`ten`"),
            ("limit=1.5", "`limit`=`1.5`"),
            ("error=yes", "`error`=`yes`"),
            ("min_duration=-5ms", "negative durations"),
            ("max_duration=-1", "negative durations"),
            ("min_duration=5parsecs", "unknown unit"),
            ("min_duration=5", ""),
            ("min_duration=ms", "`min_duration`"),
            ("min_duration=1.2.3s", "`min_duration`"),
            ("min_duration=99999999999999999999h", "too large"),
            (
                "min_duration=2s&max_duration=1s",
                "greater than `max_duration`",
            ),
            ("start=yesterday", "`start`=`yesterday`"),
            ("start=-1", "before 1970"),
            ("start=1700000000", "looks like seconds"),
            ("start=2023-02-30T00:00:00Z", "no such date"),
            ("start=2023-11-14T25:00:00Z", "no such time"),
            ("start=2023-11-14T22:13:20", "time zone"),
            ("start=1960-01-01T00:00:00Z", "before 1970"),
            (
                "start=2023-11-14T22:13:20Z&end=2023-11-14T22:13:19Z",
                "is not before `end`",
            ),
            (
                "start=1700000000000000000&end=1700000000000000000",
                "is not before `end`",
            ),
            (
                "start=1700000000000000000&lookback=1h",
                "either `start` or `lookback`",
            ),
            ("lookback=-1h", "negative"),
            ("attr=nocolon", "`attr`=`nocolon`: expected `name:value`"),
            ("attr=:value", "expected `name:value`"),
            ("key=order_id", "`key`"),
        ];
        for (q, needle) in cases {
            if needle.is_empty() {
                assert!(search(q).is_ok(), "{q} should parse");
                continue;
            }
            let message = err(q);
            assert!(
                message.contains(needle),
                "{q}: {message:?} should contain {needle:?}"
            );
            assert!(
                message.starts_with(|c: char| c.is_lowercase()),
                "lowercase: {message}"
            );
            assert!(!message.ends_with('.'), "no trailing period: {message}");
        }
    }

    #[test]
    fn attributes_must_be_indexed() {
        let indexed = Indexed {
            attributes: IndexedAttributes::from_names(&["http.route".into(), "db.system".into()]),
            business_keys: vec!["order_id".into()],
        };
        let mut q = search("attr=http.route:/a&attr=order_id:7&key=tenant:t")
            .unwrap()
            .query;
        check_attributes(&mut q, &indexed).unwrap();
        assert_eq!(q.attributes, vec![("http.route".into(), "/a".into())]);
        assert_eq!(
            q.business_keys,
            vec![
                ("tenant".into(), "t".into()),
                ("order_id".into(), "7".into())
            ],
            "attr= on a business key searches the business key"
        );
        let mut q = search("attr=user.email:a@b").unwrap().query;
        let message = check_attributes(&mut q, &indexed).unwrap_err().to_string();
        for needle in [
            "attribute `user.email` is not indexed",
            "indexed attributes: http.route, db.system",
            "business keys: order_id",
            "`indexed_attributes`",
        ] {
            assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        }
        assert!(!message.ends_with('.'));
        let nothing = Indexed::default();
        let mut q = search("attr=a:b").unwrap().query;
        assert!(check_attributes(&mut q, &nothing)
            .unwrap_err()
            .to_string()
            .contains("indexed attributes: (none); business keys: (none)"));
    }

    #[test]
    fn with_every_attribute_indexed_any_short_attribute_is_searchable() {
        let indexed = Indexed {
            attributes: IndexedAttributes::All,
            business_keys: vec!["order_id".into()],
        };
        let mut q = search("attr=user.email:a@b&attr=order_id:7").unwrap().query;
        check_attributes(&mut q, &indexed).unwrap();
        assert_eq!(q.attributes, vec![("user.email".into(), "a@b".into())]);
        assert_eq!(q.business_keys, vec![("order_id".into(), "7".into())]);
        let long = "v".repeat(MAX_INDEXED_VALUE_BYTES + 1);
        let mut q = search(&format!("attr=db.statement:{long}")).unwrap().query;
        let message = check_attributes(&mut q, &indexed).unwrap_err().to_string();
        assert!(
            message.contains("longer than 256 bytes are not indexed"),
            "{message}"
        );
    }

    #[test]
    fn oversized_input_is_refused() {
        let long_text = "a".repeat(MAX_TEXT_CHARS + 1);
        assert!(err(&format!("q={long_text}")).contains("`q`"));
        let huge = "a".repeat(MAX_VALUE_BYTES + 1);
        assert!(err(&format!("service={huge}")).contains("4096 bytes"));
        let many = vec!["attr=a:b"; MAX_PARAMS + 1].join("&");
        assert!(err(&many).contains("too many"));
    }

    #[test]
    fn error_messages_do_not_echo_long_input() {
        let message = err(&format!("limit={}", "x".repeat(1000)));
        assert!(message.len() < 200, "{message}");
    }

    #[test]
    fn key_lookup() {
        let p = parse_key_lookup(
            "order_id",
            "12345",
            Some("full=true&limit=5&lookback=1h"),
            NOW,
        )
        .unwrap();
        assert!(p.full);
        assert_eq!(
            p.query.business_keys,
            vec![("order_id".into(), "12345".into())]
        );
        assert_eq!(p.query.limit, 5);
        assert_eq!(p.query.start_min_unix_nano, Some(NOW - 3_600_000_000_000));
        assert!(!parse_key_lookup("k", "v", None, NOW).unwrap().full);
        assert_eq!(
            parse_key_lookup("k", "v", Some("limit=500"), NOW)
                .unwrap()
                .query
                .limit,
            500
        );
        assert_eq!(
            parse_key_lookup("k", "v", Some("limit=500&full=true"), NOW)
                .unwrap()
                .query
                .limit,
            MAX_FULL_LIMIT
        );
        for bad in ["service=x", "full=maybe", "limit=0", "q=text"] {
            assert!(
                matches!(
                    parse_key_lookup("k", "v", Some(bad), NOW),
                    Err(Error::BadRequest(_))
                ),
                "{bad}"
            );
        }
        assert!(parse_key_lookup("", "v", None, NOW).is_err());
    }

    #[test]
    fn durations() {
        for (text, nanos) in [
            ("0", 0),
            ("150", 150),
            ("150ns", 150),
            ("500us", 500_000),
            ("500µs", 500_000),
            ("150ms", 150_000_000),
            ("1.5s", 1_500_000_000),
            (".5s", 500_000_000),
            ("2m", 120_000_000_000),
            ("1h30m", 5_400_000_000_000),
            ("1d", 86_400_000_000_000),
            ("1.0000000001s", 1_000_000_000),
        ] {
            assert_eq!(parse_duration(text), Ok(nanos), "{text}");
        }
        for text in [
            "",
            "s",
            "1.5",
            "-1s",
            "1.s.",
            "1x",
            "1..5s",
            "18446744073709551616",
        ] {
            assert!(parse_duration(text).is_err(), "{text}");
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("2023-11-14T22:13:20Z"), Ok(NOW));
        assert_eq!(parse_timestamp("2023-11-14t22:13:20z"), Ok(NOW));
        assert_eq!(parse_timestamp("2023-11-14 22:13:20Z"), Ok(NOW));
        assert_eq!(parse_timestamp("2023-11-14T23:13:20+01:00"), Ok(NOW));
        assert_eq!(parse_timestamp("2023-11-14T21:13:20-01:00"), Ok(NOW));
        assert_eq!(
            parse_timestamp("2023-11-14T23:13:20 01:00"),
            Ok(NOW),
            "unencoded `+` in a URL"
        );
        assert_eq!(
            parse_timestamp("2023-11-14T22:13:20.5Z"),
            Ok(NOW + 500_000_000)
        );
        assert_eq!(
            parse_timestamp("2023-11-14T22:13:20.123456789123Z"),
            Ok(NOW + 123_456_789)
        );
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_timestamp("2024-02-29T00:00:00Z"),
            Ok(1_709_164_800_000_000_000)
        );
        assert_eq!(parse_timestamp("1700000000000000000"), Ok(NOW));
        for bad in [
            "2023-11-14",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20+1:00",
            "2023-13-01T00:00:00Z",
            "2023-11-14T22:13:20Zjunk",
            "99999999999999999999",
            "9999-12-31T23:59:59Z",
            "２０２３-11-14T22:13:20Z",
        ] {
            assert!(parse_timestamp(bad).is_err(), "{bad}");
        }
    }
}
