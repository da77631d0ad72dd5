//! The two Prometheus exposition formats: OpenMetrics 1.0 (what Prometheus asks for) and the
//! classic text format 0.0.4 (what `curl` and older scrapers get), from one list of families.
//!
//! The formats differ where counters are named: OpenMetrics names the family without `_total`
//! and its samples with it; the classic format puts HELP and TYPE under the `_total` name, as
//! Ray's exporter does.

use std::fmt::Write as _;

use rayai_core::LATENCY_BUCKETS_MS;

/// `Content-Type` of the OpenMetrics format.
pub(crate) const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// `Content-Type` of the classic text format.
pub(crate) const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Which format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    OpenMetrics,
    Classic,
}

impl Format {
    /// OpenMetrics when the `Accept` header names it (Prometheus does), else the classic format.
    pub(crate) fn negotiate(accept: Option<&str>) -> Self {
        let asks = accept.is_some_and(|accept| {
            accept.split(',').any(|range| {
                let mut params = range.split(';').map(str::trim);
                let media = params.next().unwrap_or("");
                media.eq_ignore_ascii_case("application/openmetrics-text")
                    && !params.any(|p| {
                        p.strip_prefix("q=")
                            .and_then(|q| q.parse::<f64>().ok())
                            .is_some_and(|q| q <= 0.0)
                    })
            })
        });
        if asks {
            Format::OpenMetrics
        } else {
            Format::Classic
        }
    }

    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => OPENMETRICS,
            Format::Classic => CLASSIC,
        }
    }
}

/// What kind of metric a family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A latency histogram's counts per bucket of [`LATENCY_BUCKETS_MS`] (not cumulative; the last
/// above the largest bound), and the sum of the observations.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Buckets {
    pub(crate) counts: Vec<u64>,
    pub(crate) sum: f64,
}

impl Buckets {
    /// Adds another histogram's counts to these.
    pub(crate) fn add(&mut self, other: &Buckets) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.sum += other.sum;
    }
}

/// One sample's value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Number(f64),
    Histogram(Buckets),
}

/// One labelled sample of a family.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub(crate) labels: Vec<(&'static str, String)>,
    pub(crate) value: Value,
}

/// A metric family: its name (for a counter, without `_total`), help, kind and samples.
#[derive(Debug, Clone)]
pub(crate) struct Family {
    pub(crate) name: &'static str,
    pub(crate) help: &'static str,
    pub(crate) kind: Kind,
    pub(crate) samples: Vec<Sample>,
}

impl Family {
    pub(crate) fn new(name: &'static str, kind: Kind, help: &'static str) -> Self {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    /// Adds a sample with a number.
    pub(crate) fn number(&mut self, labels: Vec<(&'static str, String)>, value: f64) {
        self.samples.push(Sample {
            labels,
            value: Value::Number(value),
        });
    }

    /// Adds a histogram sample.
    pub(crate) fn histogram(&mut self, labels: Vec<(&'static str, String)>, buckets: Buckets) {
        self.samples.push(Sample {
            labels,
            value: Value::Histogram(buckets),
        });
    }
}

/// Every family in `format`.
pub(crate) fn encode(families: &[Family], format: Format) -> String {
    let mut out = String::with_capacity(8192);
    for family in families {
        write_family(&mut out, family, format);
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

fn write_family(out: &mut String, family: &Family, format: Format) {
    let (kind, suffix) = match family.kind {
        Kind::Counter => ("counter", "_total"),
        Kind::Gauge => ("gauge", ""),
        Kind::Histogram => ("histogram", ""),
    };
    let declared = match format {
        Format::Classic => format!("{}{suffix}", family.name),
        Format::OpenMetrics => family.name.to_owned(),
    };
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {declared} {}", escape_help(family.help));
    let _ = writeln!(out, "# TYPE {declared} {kind}");
    for sample in &family.samples {
        match &sample.value {
            Value::Number(v) => {
                out.push_str(family.name);
                out.push_str(suffix);
                write_labels(out, &sample.labels, None);
                let _ = writeln!(out, " {}", number(*v));
            }
            Value::Histogram(b) => {
                let mut cumulative = 0u64;
                for (i, upper) in LATENCY_BUCKETS_MS.iter().enumerate() {
                    cumulative += b.counts.get(i).copied().unwrap_or(0);
                    let le = format!("{upper:?}");
                    let _ = write!(out, "{}_bucket", family.name);
                    write_labels(out, &sample.labels, Some(&le));
                    let _ = writeln!(out, " {cumulative}");
                }
                let count: u64 = b.counts.iter().sum();
                let _ = write!(out, "{}_bucket", family.name);
                write_labels(out, &sample.labels, Some("+Inf"));
                let _ = writeln!(out, " {count}");
                let _ = write!(out, "{}_sum", family.name);
                write_labels(out, &sample.labels, None);
                let _ = writeln!(out, " {}", number(b.sum));
                let _ = write!(out, "{}_count", family.name);
                write_labels(out, &sample.labels, None);
                let _ = writeln!(out, " {count}");
            }
        }
    }
}

fn write_labels(out: &mut String, labels: &[(&'static str, String)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (name, value) in labels {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(name);
        out.push_str("=\"");
        escape_value(out, value);
        out.push('"');
    }
    if let Some(le) = le {
        if !first {
            out.push(',');
        }
        out.push_str("le=\"");
        out.push_str(le);
        out.push('"');
    }
    out.push('}');
}

/// A label value with `\`, `"` and newlines escaped (both formats escape these three).
fn escape_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value: integers without a fraction, the rest as Rust prints them (no exponent).
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn families() -> Vec<Family> {
        let mut requests = Family::new("ray_serve_x_requests", Kind::Counter, "Requests.");
        requests.number(vec![("route", "/a\"b\\c".to_owned())], 3.0);
        let mut up = Family::new("ray_serve_up", Kind::Gauge, "Up.");
        up.number(vec![], 0.25);
        let mut latency = Family::new("ray_serve_latency_ms", Kind::Histogram, "Latency.");
        let mut counts = vec![0; LATENCY_BUCKETS_MS.len() + 1];
        counts[0] = 1;
        counts[LATENCY_BUCKETS_MS.len()] = 1;
        latency.histogram(
            vec![("route", "/".to_owned())],
            Buckets {
                counts,
                sum: 400000.5,
            },
        );
        vec![requests, up, latency]
    }

    #[test]
    fn classic_counters_are_declared_under_their_total_name() {
        let text = encode(&families(), Format::Classic);
        assert!(text.contains("# TYPE ray_serve_x_requests_total counter\n"));
        assert!(text.contains("# HELP ray_serve_x_requests_total Requests.\n"));
        assert!(text.contains("ray_serve_x_requests_total{route=\"/a\\\"b\\\\c\"} 3\n"));
        assert!(text.contains("ray_serve_up 0.25\n"));
        assert!(text.contains("ray_serve_latency_ms_bucket{route=\"/\",le=\"1.0\"} 1\n"));
        assert!(text.contains("ray_serve_latency_ms_bucket{route=\"/\",le=\"300000.0\"} 1\n"));
        assert!(text.contains("ray_serve_latency_ms_bucket{route=\"/\",le=\"+Inf\"} 2\n"));
        assert!(text.contains("ray_serve_latency_ms_count{route=\"/\"} 2\n"));
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn openmetrics_names_the_family_without_total_and_ends_with_eof() {
        let text = encode(&families(), Format::OpenMetrics);
        assert!(text.contains("# TYPE ray_serve_x_requests counter\n"));
        assert!(text.contains("ray_serve_x_requests_total{route=\"/a\\\"b\\\\c\"} 3\n"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn negotiates_openmetrics_only_when_asked() {
        let prometheus = "application/openmetrics-text;version=1.0.0;q=0.5,\
            application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("text/plain")), Format::Classic);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Classic);
        assert_eq!(Format::negotiate(None), Format::Classic);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text; q=0")),
            Format::Classic
        );
    }
}
