//! Prometheus's exposition formats, written from metric families: the
//! classic text format 0.0.4 (what `promtool check metrics` checks, and
//! the default) and OpenMetrics 1.0 (for a scraper whose `Accept` asks
//! for it).
//!
//! Our own encoder rather than the `prometheus-client` crate: that crate
//! writes OpenMetrics only, and promtool 2.42 (Debian 12's) rejects its
//! counters in a scrape; the two formats differ in a handful of rules
//! (counter and info names, `# EOF`, bucket bounds), all here. Knows
//! nothing of watches.
use std::fmt::Write as _;

use crate::histogram::Histogram;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`.
    Text,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

impl Format {
    /// What a scraper's `Accept` header asks for.
    pub fn negotiate(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Self::OpenMetrics,
            _ => Self::Text,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Text => "text/plain; version=0.0.4; charset=utf-8",
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    /// Its name is without `_total`, which each sample gets.
    Counter,
    Histogram,
    /// A constant 1 whose labels say something (`_info` is added).
    Info,
}

pub enum Value {
    Number(f64),
    Histogram(Histogram),
}

pub struct Sample {
    pub labels: Vec<(&'static str, String)>,
    pub value: Value,
}

/// One metric: its name, help, kind and samples.
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<Sample>,
}

impl Family {
    pub fn new(name: &'static str, kind: Kind, help: &'static str) -> Self {
        Self {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    pub fn push(&mut self, labels: Vec<(&'static str, String)>, value: f64) {
        self.samples.push(Sample {
            labels,
            value: Value::Number(value),
        });
    }

    pub fn push_histogram(&mut self, labels: Vec<(&'static str, String)>, h: Histogram) {
        self.samples.push(Sample {
            labels,
            value: Value::Histogram(h),
        });
    }
}

/// The families in `format`; families with no samples are left out.
pub fn encode(families: &[Family], format: Format) -> String {
    let mut out = String::with_capacity(families.iter().map(|f| 64 + 96 * f.samples.len()).sum());
    for family in families.iter().filter(|f| !f.samples.is_empty()) {
        let (type_name, kind) = match (family.kind, format) {
            (Kind::Gauge, _) => (family.name.to_owned(), "gauge"),
            (Kind::Counter, Format::Text) => (format!("{}_total", family.name), "counter"),
            (Kind::Counter, Format::OpenMetrics) => (family.name.to_owned(), "counter"),
            (Kind::Histogram, _) => (family.name.to_owned(), "histogram"),
            (Kind::Info, Format::Text) => (format!("{}_info", family.name), "gauge"),
            (Kind::Info, Format::OpenMetrics) => (family.name.to_owned(), "info"),
        };
        let _ = writeln!(out, "# HELP {type_name} {}", escape_help(family.help));
        let _ = writeln!(out, "# TYPE {type_name} {kind}");
        let sample_name = match family.kind {
            Kind::Counter => format!("{}_total", family.name),
            Kind::Info => format!("{}_info", family.name),
            _ => family.name.to_owned(),
        };
        for sample in &family.samples {
            match &sample.value {
                Value::Number(v) => line(&mut out, &sample_name, &sample.labels, None, *v),
                Value::Histogram(h) => {
                    let bucket = format!("{}_bucket", family.name);
                    for (le, count) in h.cumulative() {
                        let le = bound(le, format);
                        line(&mut out, &bucket, &sample.labels, Some(&le), count as f64);
                    }
                    let sum = format!("{}_sum", family.name);
                    line(&mut out, &sum, &sample.labels, None, h.sum);
                    let count = format!("{}_count", family.name);
                    line(&mut out, &count, &sample.labels, None, h.count() as f64);
                }
            }
        }
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

fn line(out: &mut String, name: &str, labels: &[(&str, String)], le: Option<&str>, value: f64) {
    out.push_str(name);
    if !labels.is_empty() || le.is_some() {
        out.push('{');
        let mut first = true;
        for (key, value) in labels
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .chain(le.map(|le| ("le", le)))
        {
            if !first {
                out.push(',');
            }
            first = false;
            let _ = write!(out, "{key}=\"{}\"", escape_label(value));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {}", number(value));
}

/// `1`, `0.25`, `+Inf`, `NaN`: what both formats read.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// A bucket bound: OpenMetrics wants canonical floats (`1.0`, not `1`).
fn bound(le: f64, format: Format) -> String {
    match format {
        _ if le.is_infinite() => "+Inf".into(),
        Format::Text => format!("{le}"),
        Format::OpenMetrics => format!("{le:?}"),
    }
}

fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn families() -> Vec<Family> {
        let mut up = Family::new("x_up", Kind::Gauge, "Whether it runs.");
        up.push(vec![("watch", "a\"b\\c\nd".into())], 1.0);
        let mut restarts = Family::new("x_restarts", Kind::Counter, "Restarts.");
        restarts.push(vec![("watch", "a".into())], 3.0);
        let mut build = Family::new("x_build", Kind::Info, "Build.");
        build.push(vec![("version", "0.1.0".into())], 1.0);
        let mut latency = Family::new("x_seconds", Kind::Histogram, "Latency.");
        let mut h = Histogram::default();
        h.observe(std::time::Duration::from_millis(1));
        latency.push_histogram(Vec::new(), h);
        let empty = Family::new("x_none", Kind::Gauge, "Nothing.");
        vec![up, restarts, build, latency, empty]
    }

    #[test]
    fn the_classic_text_format() {
        let text = encode(&families(), Format::Text);
        assert!(
            text.contains("# TYPE x_up gauge\nx_up{watch=\"a\\\"b\\\\c\\nd\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE x_restarts_total counter\nx_restarts_total{watch=\"a\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE x_build_info gauge\nx_build_info{version=\"0.1.0\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{le=\"0.001\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "x_seconds_bucket{le=\"+Inf\"} 1\nx_seconds_sum 0.001\nx_seconds_count 1\n"
            ),
            "{text}"
        );
        assert!(!text.contains("x_none"), "{text}");
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn openmetrics() {
        let text = encode(&families(), Format::OpenMetrics);
        assert!(
            text.contains("# TYPE x_restarts counter\nx_restarts_total{watch=\"a\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE x_build info\nx_build_info{version=\"0.1.0\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("x_seconds_bucket{le=\"1.0\"} 1\n"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
            )),
            Format::OpenMetrics
        );
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
    }
}
