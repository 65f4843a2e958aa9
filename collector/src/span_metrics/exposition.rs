//! Prometheus text exposition (format 0.0.4) of the span-metrics families. They are
//! rendered here rather than through the `metrics` recorder because their series are
//! bounded by their own table (the cardinality limit and its overflow series) and their
//! buckets are the connector's and Tempo's, not the recorder's.

use std::fmt::Write as _;

/// The `# HELP` / `# TYPE` lines of one family.
pub struct Family<'a> {
    name: &'a str,
    kind: &'static str,
    help: &'a str,
}

impl<'a> Family<'a> {
    pub fn counter(name: &'a str, help: &'a str) -> Self {
        Family {
            name,
            kind: "counter",
            help,
        }
    }

    pub fn gauge(name: &'a str, help: &'a str) -> Self {
        Family {
            name,
            kind: "gauge",
            help,
        }
    }

    pub fn histogram(name: &'a str, help: &'a str) -> Self {
        Family {
            name,
            kind: "histogram",
            help,
        }
    }

    pub fn write(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
    }
}

/// A label value with `\`, `"` and newlines escaped.
pub fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// One histogram series: cumulative `_bucket` lines (then `+Inf`), `_sum` and `_count`.
/// `counts` has one entry per bound plus the `+Inf` bucket, not cumulative.
pub fn write_histogram(
    out: &mut String,
    name: &str,
    labels: &str,
    bounds: &[f64],
    counts: &[u64],
    sum: f64,
) {
    let sep = if labels.is_empty() { "" } else { "," };
    let mut cumulative = 0;
    for (bound, n) in bounds.iter().zip(counts) {
        cumulative += n;
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
        );
    }
    cumulative += counts[bounds.len()];
    let _ = writeln!(
        out,
        "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
    );
    let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
    let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        escape_label_value(&mut out, "a\"b\\c\nd");
        assert_eq!(out, "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn histograms_are_cumulative() {
        let mut out = String::new();
        write_histogram(&mut out, "h", "a=\"1\"", &[1.0, 2.5], &[1, 2, 3], 9.5);
        assert_eq!(
            out,
            "h_bucket{a=\"1\",le=\"1\"} 1\nh_bucket{a=\"1\",le=\"2.5\"} 3\nh_bucket{a=\"1\",le=\"+Inf\"} 6\nh_sum{a=\"1\"} 9.5\nh_count{a=\"1\"} 6\n"
        );
    }
}
