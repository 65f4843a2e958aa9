//! `traces_span_metrics_calls_total` and `traces_span_metrics_duration_milliseconds`: one
//! series per (service, span name, kind, status, configured dimensions).

use std::collections::HashMap;
use std::fmt::Write as _;

use clew_proto::model::{any_value, repair, AnyValue};
use clew_proto::{Span, SpanKind, StatusCode};

use super::exposition::{escape_label_value, write_histogram, Family};
use super::with_tenant;

pub const CALLS: &str = "traces_span_metrics_calls_total";
pub const DURATION: &str = "traces_span_metrics_duration_milliseconds";
pub const OVERFLOW_SPANS: &str = "clew_span_metrics_overflow_spans_total";
pub const SERIES: &str = "clew_span_metrics_series";

/// The spanmetrics connector's default explicit buckets, in milliseconds.
pub const BUCKETS_MS: [f64; 16] = [
    2.0, 4.0, 6.0, 8.0, 10.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1000.0, 1400.0, 2000.0, 5000.0,
    10000.0, 15000.0,
];

/// The series id of the overflow series.
pub const OVERFLOW: u32 = u32::MAX;

/// A configured extra dimension.
pub struct Dim {
    pub attribute: String,
    pub label: String,
    pub default: Option<String>,
}

/// A series' identity as bytes, built in a reused buffer so that looking up a known
/// series allocates nothing: service id, kind, status, then length-prefixed span name and
/// dimension values (a missing dimension is one marker byte).
#[derive(Default)]
pub struct SeriesKey(Vec<u8>);

impl SeriesKey {
    pub fn fill(&mut self, service: u32, span: &Span, dims: &[Dim]) {
        let b = &mut self.0;
        b.clear();
        b.extend_from_slice(&service.to_le_bytes());
        b.extend_from_slice(&span.kind.as_i32().to_le_bytes());
        b.extend_from_slice(&span.status_code.as_i32().to_le_bytes());
        push_str(b, span_name(span));
        for d in dims {
            match span.attribute(&d.attribute) {
                Some(v) => {
                    b.push(1);
                    let at = b.len();
                    b.extend_from_slice(&[0; 4]);
                    write_value(&mut ByteSink(&mut *b), v);
                    let len = (b.len() - at - 4) as u32;
                    b[at..at + 4].copy_from_slice(&len.to_le_bytes());
                }
                None => b.push(0),
            }
        }
    }
}

fn push_str(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as u32).to_le_bytes());
    b.extend_from_slice(s.as_bytes());
}

struct ByteSink<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for ByteSink<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// An attribute value as the connector turns it into a label value (pdata's `AsString`):
/// strings as they are, numbers and booleans in their text form.
fn write_value(out: &mut impl std::fmt::Write, v: &AnyValue) {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => {
            let _ = out.write_str(s);
        }
        Some(any_value::Value::IntValue(i)) => {
            let _ = write!(out, "{i}");
        }
        Some(any_value::Value::DoubleValue(d)) => {
            let _ = write!(out, "{d}");
        }
        Some(any_value::Value::BoolValue(b)) => {
            let _ = write!(out, "{b}");
        }
        // arrays, maps and bytes: the text form clew uses for index terms
        Some(_) => {
            let _ = out.write_str(&clew_proto::model::value_to_string(v));
        }
        None => {}
    }
}

/// `SPAN_KIND_SERVER`…, as the connector writes the span kind.
pub fn kind_label(kind: SpanKind) -> std::borrow::Cow<'static, str> {
    match kind {
        SpanKind::Unspecified => "SPAN_KIND_UNSPECIFIED".into(),
        SpanKind::Internal => "SPAN_KIND_INTERNAL".into(),
        SpanKind::Server => "SPAN_KIND_SERVER".into(),
        SpanKind::Client => "SPAN_KIND_CLIENT".into(),
        SpanKind::Producer => "SPAN_KIND_PRODUCER".into(),
        SpanKind::Consumer => "SPAN_KIND_CONSUMER".into(),
        SpanKind::Unknown(n) => n.to_string().into(),
    }
}

/// `STATUS_CODE_ERROR`…, as the connector writes the status code.
pub fn status_label(status: StatusCode) -> std::borrow::Cow<'static, str> {
    match status {
        StatusCode::Unset => "STATUS_CODE_UNSET".into(),
        StatusCode::Ok => "STATUS_CODE_OK".into(),
        StatusCode::Error => "STATUS_CODE_ERROR".into(),
        StatusCode::Unknown(n) => n.to_string().into(),
    }
}

/// The `span_name` label: the name the span arrived with. A span that came without one is
/// stored as `<unnamed>` (a repair), but counted under `""` as the spanmetrics connector
/// counts it, so dashboards built on the connector see the same series.
fn span_name(span: &Span) -> &str {
    if span.repairs & repair::EMPTY_NAME != 0 {
        ""
    } else {
        &span.name
    }
}

/// The label pairs of a new series (`service_name="…",span_name="…",…`), rendered once.
pub fn labels(service: &str, span: &Span, dims: &[Dim]) -> String {
    let mut out = String::new();
    out.push_str("service_name=\"");
    escape_label_value(&mut out, service);
    out.push_str("\",span_name=\"");
    escape_label_value(&mut out, span_name(span));
    let _ = write!(
        out,
        "\",span_kind=\"{}\",status_code=\"{}\"",
        kind_label(span.kind),
        status_label(span.status_code)
    );
    for d in dims {
        let mut value = String::new();
        match span.attribute(&d.attribute) {
            Some(v) => write_value(&mut value, v),
            None => match &d.default {
                Some(default) => value.push_str(default),
                None => continue,
            },
        }
        let _ = write!(out, ",{}=\"", d.label);
        escape_label_value(&mut out, &value);
        out.push('"');
    }
    out
}

struct Series {
    labels: String,
    /// Per bucket of [`BUCKETS_MS`], then `+Inf` (not cumulative).
    buckets: [u64; BUCKETS_MS.len() + 1],
    sum_ms: f64,
    count: u64,
}

impl Series {
    fn new(labels: String) -> Self {
        Series {
            labels,
            buckets: [0; BUCKETS_MS.len() + 1],
            sum_ms: 0.0,
            count: 0,
        }
    }

    fn record(&mut self, duration_ns: u64) {
        let ms = duration_ns as f64 / 1e6;
        self.buckets[BUCKETS_MS.partition_point(|b| *b < ms)] += 1;
        self.sum_ms += ms;
        self.count += 1;
    }
}

/// Every RED series, at most `limit` plus the overflow series.
pub struct RedTable {
    ids: HashMap<Box<[u8]>, u32>,
    series: Vec<Series>,
    overflow: Series,
    limit: usize,
}

impl RedTable {
    pub fn new(limit: usize) -> Self {
        RedTable {
            ids: HashMap::new(),
            series: Vec::new(),
            overflow: Series::new("otel_metric_overflow=\"true\"".to_string()),
            limit,
        }
    }

    /// The id of `key`'s series; a new one (labels from `labels`) while under the limit,
    /// else [`OVERFLOW`].
    pub fn series(&mut self, key: &SeriesKey, labels: impl FnOnce() -> String) -> u32 {
        if let Some(id) = self.ids.get(key.0.as_slice()) {
            return *id;
        }
        if self.series.len() >= self.limit {
            return OVERFLOW;
        }
        let id = self.series.len() as u32;
        self.series.push(Series::new(labels()));
        self.ids.insert(key.0.as_slice().into(), id);
        id
    }

    pub fn record(&mut self, id: u32, duration_ns: u64) {
        match self.series.get_mut(id as usize) {
            Some(s) => s.record(duration_ns),
            None => self.overflow.record(duration_ns),
        }
    }

    /// Both families over every tenant's table (with its `tenant="…"` pair when tenants
    /// are labelled).
    pub fn render(out: &mut String, tables: &[(Option<&str>, &RedTable)]) {
        // A series created for spans the sink then rejected has no calls: not shown.
        let shown = || {
            tables.iter().flat_map(|(tenant, table)| {
                table
                    .series
                    .iter()
                    .chain(std::iter::once(&table.overflow))
                    .filter(|s| s.count > 0)
                    .map(move |s| (with_tenant(&s.labels, *tenant), s))
            })
        };
        Family::counter(CALLS, "spans stored, by service, span name, kind, status and configured dimensions (OpenTelemetry spanmetrics connector names)").write(out);
        for (labels, s) in shown() {
            let _ = writeln!(out, "{CALLS}{{{labels}}} {}", s.count);
        }
        Family::histogram(
            DURATION,
            "duration of the stored spans in milliseconds, same labels as traces_span_metrics_calls_total",
        )
        .write(out);
        for (labels, s) in shown() {
            write_histogram(out, DURATION, &labels, &BUCKETS_MS, &s.buckets, s.sum_ms);
        }
    }

    /// Spans counted in the overflow series.
    pub fn overflow_count(&self) -> u64 {
        self.overflow.count
    }

    pub fn series_count(&self) -> usize {
        self.series.len()
    }
}
