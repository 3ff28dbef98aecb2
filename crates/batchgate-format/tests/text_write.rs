//! Writer golden tests. Expected bytes marked "observed" were scraped from the Debian
//! Pushgateway 1.5.1 binary (`GET /metrics`) after pushing the corresponding metrics; the
//! Pushgateway adds `instance`/`job` and sorts labels and metrics before writing.

use batchgate_format::MetricType;
use batchgate_format::proto::{Bucket, Gauge, Histogram, LabelPair, Metric, MetricFamily, Quantile, Summary};
use batchgate_format::text::{format_float, is_text_encodable, parse, write_family};

/// Observed: the `gw_*` families of one scrape, in the order the Pushgateway wrote them.
const GOLDEN: &str = r#"# HELP gw_counter_total Escapes: backslash \\ newline \n quote " done.
# TYPE gw_counter_total counter
gw_counter_total{code="200",instance="",job="golden",path="/a\"b\\c\nd"} 1.7963117804467754e+09
gw_counter_total{code="500",instance="",job="golden",path="café €"} 0.0001
# TYPE gw_gauge gauge
gw_gauge{instance="",job="golden",v="a"} 0
gw_gauge{instance="",job="golden",v="b"} 1e-05
gw_gauge{instance="",job="golden",v="c"} 123456
gw_gauge{instance="",job="golden",v="d"} 1.234567e+06
gw_gauge{instance="",job="golden",v="e"} NaN
gw_gauge{instance="",job="golden",v="f"} -Inf
gw_gauge{instance="",job="golden",v="g"} +Inf
gw_gauge{instance="",job="golden",v="h"} 5e-324
gw_gauge{instance="",job="golden",v="i"} 1.7976931348623157e+308
gw_gauge{instance="",job="golden",v="j"} -1
# TYPE gw_hist histogram
gw_hist_bucket{instance="",job="golden",le="0.1"} 1
gw_hist_bucket{instance="",job="golden",le="1"} 4
gw_hist_bucket{instance="",job="golden",le="+Inf"} 5
gw_hist_sum{instance="",job="golden"} 2.5
gw_hist_count{instance="",job="golden"} 5
gw_hist_bucket{instance="",job="golden",l="inf",le="1"} 1
gw_hist_bucket{instance="",job="golden",l="inf",le="+Inf"} 3
gw_hist_bucket{instance="",job="golden",l="inf",le="2"} 3
gw_hist_sum{instance="",job="golden",l="inf"} 0
gw_hist_count{instance="",job="golden",l="inf"} 9
# HELP gw_summary A summary.
# TYPE gw_summary summary
gw_summary{instance="",job="golden",quantile="0.5"} 0.25
gw_summary{instance="",job="golden",quantile="0.99"} 1.5
gw_summary_sum{instance="",job="golden"} 12.5
gw_summary_count{instance="",job="golden"} 7
gw_summary{instance="",job="golden",l="x",quantile="0"} 3
gw_summary_sum{instance="",job="golden",l="x"} 0
gw_summary_count{instance="",job="golden",l="x"} 0
# TYPE gw_untyped untyped
gw_untyped{instance="",job="golden"} 42
"#;

fn write_all(families: &[MetricFamily]) -> String {
    let mut out = Vec::new();
    for f in families {
        write_family(&mut out, f);
    }
    String::from_utf8(out).expect("utf-8")
}

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs.iter().map(|(n, v)| LabelPair::new(*n, *v)).collect()
}

fn family(name: &str, ty: MetricType, help: Option<&str>, metric: Vec<Metric>) -> MetricFamily {
    MetricFamily {
        name: Some(name.into()),
        help: help.map(Into::into),
        r#type: Some(ty as i32),
        metric,
        ..Default::default()
    }
}

fn gauge(pairs: &[(&str, &str)], value: f64) -> Metric {
    Metric {
        label: labels(pairs),
        gauge: Some(Gauge { value: Some(value) }),
        ..Default::default()
    }
}

#[test]
fn reference_exposition_round_trips_byte_for_byte() {
    let families = parse(GOLDEN.as_bytes()).expect("golden parses");
    assert_eq!(write_all(&families), GOLDEN);
}

#[test]
fn synthesized_inf_bucket_negative_zero_and_defaults() {
    // Pushed as `gw_hist_bucket{le="0.1"} 1`, `{le="1"} 4`, sum 2.5, count 5: no +Inf bucket.
    let base = [("instance", ""), ("job", "golden")];
    let hist = Histogram {
        sample_count: Some(5),
        sample_sum: Some(2.5),
        bucket: [(0.1, 1), (1.0, 4)]
            .map(|(le, n)| Bucket {
                upper_bound: Some(le),
                cumulative_count: Some(n),
                ..Default::default()
            })
            .to_vec(),
        ..Default::default()
    };
    let mut with_inf = hist.clone();
    with_inf.bucket = [(1.0, 1), (f64::INFINITY, 3), (2.0, 3)]
        .map(|(le, n)| Bucket {
            upper_bound: Some(le),
            cumulative_count: Some(n),
            ..Default::default()
        })
        .to_vec();
    (with_inf.sample_count, with_inf.sample_sum) = (Some(9), None);
    let h = family(
        "gw_hist",
        MetricType::Histogram,
        None,
        vec![
            Metric {
                label: labels(&base),
                histogram: Some(hist),
                ..Default::default()
            },
            Metric {
                label: labels(&[("instance", ""), ("job", "golden"), ("l", "inf")]),
                histogram: Some(with_inf),
                ..Default::default()
            },
        ],
    );
    let q = |q, v| Quantile {
        quantile: Some(q),
        value: Some(v),
    };
    let s = family(
        "gw_summary",
        MetricType::Summary,
        Some("A summary."),
        vec![
            Metric {
                label: labels(&base),
                summary: Some(Summary {
                    sample_count: Some(7),
                    sample_sum: Some(12.5),
                    quantile: vec![q(0.5, 0.25), q(0.99, 1.5)],
                    ..Default::default()
                }),
                ..Default::default()
            },
            // `quantile="-0"` pushed; count and sum absent.
            Metric {
                label: labels(&[("instance", ""), ("job", "golden"), ("l", "x")]),
                summary: Some(Summary {
                    quantile: vec![q(-0.0, 3.0)],
                    ..Default::default()
                }),
                ..Default::default()
            },
        ],
    );
    let g = family(
        "gw_gauge",
        MetricType::Gauge,
        None,
        vec![gauge(&[("instance", ""), ("job", "golden"), ("v", "a")], -0.0)],
    );
    let text = write_all(&[g, h, s]);
    let expect: String = GOLDEN
        .lines()
        .filter(|l| {
            l.contains("gw_hist") || l.contains("gw_summary") || l.contains(r#"v="a""#) || *l == "# TYPE gw_gauge gauge"
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(text, expect);
}

#[test]
fn help_is_written_whenever_present_even_empty() {
    // Observed with a protobuf push of help "" (the text parser never produces it).
    let f = family(
        "ehelp",
        MetricType::Gauge,
        Some(""),
        vec![gauge(&[("a", "1"), ("instance", ""), ("job", "pb1")], 5.0)],
    );
    assert_eq!(
        write_all(&[f]),
        "# HELP ehelp \n# TYPE ehelp gauge\nehelp{a=\"1\",instance=\"\",job=\"pb1\"} 5\n"
    );
}

#[test]
fn families_go_cannot_encode_stop_where_go_stops() {
    // Observed: the scrape ends with `# TYPE x` (no newline) for a GAUGE_HISTOGRAM family and
    // with `# TYPE ne` for a family of type -1; promhttp logs the error and stops there.
    let m = Metric {
        label: labels(&[("a", "1")]),
        ..Default::default()
    };
    let gh = family("x", MetricType::GaugeHistogram, None, vec![m.clone()]);
    assert_eq!(write_all(std::slice::from_ref(&gh)), "# TYPE x");
    let mut bad = family("ne", MetricType::Gauge, Some("h"), vec![gauge(&[], 1.0)]);
    bad.r#type = Some(-1);
    assert_eq!(write_all(&[bad.clone()]), "# HELP ne h\n# TYPE ne");
    // From text_create.go: a metric without its type's sub-message ends the family.
    let partial = family("g", MetricType::Gauge, None, vec![gauge(&[], 1.0), m, gauge(&[], 2.0)]);
    assert_eq!(write_all(std::slice::from_ref(&partial)), "# TYPE g gauge\ng 1\n");
    for f in [gh, bad, partial] {
        assert!(!is_text_encodable(&f));
    }
    assert!(is_text_encodable(&family(
        "ok",
        MetricType::Gauge,
        None,
        vec![gauge(&[], 1.0)]
    )));
}

#[test]
fn timestamps_absent_types_and_empty_families() {
    let mut m = gauge(&[], 1.5);
    m.timestamp_ms = Some(-1_700_000_000_000);
    // From text_create.go: the timestamp follows the value on every line.
    let f = family("t", MetricType::Gauge, None, vec![m]);
    assert_eq!(write_all(&[f]), "# TYPE t gauge\nt 1.5 -1700000000000\n");
    // No metrics: nothing (the Pushgateway never exposes empty families). No name: nothing.
    assert_eq!(write_all(&[family("e", MetricType::Gauge, Some("h"), vec![])]), "");
    assert_eq!(
        write_all(&[family("", MetricType::Gauge, None, vec![gauge(&[], 1.0)])]),
        ""
    );
    // An absent type reads as COUNTER (proto2 default), as Go's GetType() does.
    let mut c = family(
        "c",
        MetricType::Counter,
        None,
        vec![Metric {
            counter: Some(Default::default()),
            ..Default::default()
        }],
    );
    c.r#type = None;
    assert_eq!(write_all(&[c]), "# TYPE c counter\nc 0\n");
}

#[test]
#[allow(clippy::excessive_precision)] // exact binary values: the ties are the point
fn format_float_matches_go() {
    // Checked against the reference by pushing each value and scraping (text shows `0` for -0;
    // the JSON API, which uses FormatFloat, shows `-0`). ~20k random values also matched.
    let table: &[(f64, &str)] = &[
        (1.0, "1"),
        (0.0, "0"),
        (-0.0, "-0"),
        (-1.0, "-1"),
        (1e6, "1e+06"),
        (123456.0, "123456"),
        (1234567.0, "1.234567e+06"),
        (100000.0, "100000"),
        (1796311780.4467754, "1.7963117804467754e+09"),
        (0.0001, "0.0001"),
        (0.00012345, "0.00012345"),
        (1e-5, "1e-05"),
        (1e21, "1e+21"),
        (1e100, "1e+100"),
        (5e-324, "5e-324"),
        (f64::MAX, "1.7976931348623157e+308"),
        (0.1, "0.1"),
        (-1.5, "-1.5"),
        (123.456, "123.456"),
        (9.3e18, "9.3e+18"),
        (18446744073709551615.0, "1.8446744073709552e+19"),
        // Ties between two shortest candidates go to the even digit, as in Go.
        (0.50003814697265625, "0.5000381469726562"),
        (85.431549072265625, "85.43154907226562"),
        (2.98023223876953125e-8, "2.9802322387695312e-08"),
        (f64::INFINITY, "+Inf"),
        (f64::NEG_INFINITY, "-Inf"),
        (f64::NAN, "NaN"),
    ];
    for &(v, want) in table {
        assert_eq!(format_float(v), want, "{v:e}");
    }
}
