//! Parser rules. Every error text below was observed on the Debian Pushgateway 1.5.1 binary
//! (prometheus/common v0.37) by PUTting the body and reading the 400 answer.

use batchgate_format::MetricType;
use batchgate_format::proto::{Metric, MetricFamily};
use batchgate_format::text::parse;

/// The 400 body the reference answers (without its trailing newline).
fn err(input: &[u8]) -> String {
    match parse(input) {
        Ok(f) => panic!("{:?} parsed: {f:?}", String::from_utf8_lossy(input)),
        Err(e) => e.to_string(),
    }
}

fn ok(input: &[u8]) -> Vec<MetricFamily> {
    parse(input).unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(input)))
}

fn names(f: &[MetricFamily]) -> Vec<&str> {
    f.iter().map(|f| f.name.as_deref().unwrap_or_default()).collect()
}

fn labels(m: &Metric) -> Vec<(&str, &str)> {
    m.label
        .iter()
        .map(|l| {
            (
                l.name.as_deref().unwrap_or_default(),
                l.value.as_deref().unwrap_or_default(),
            )
        })
        .collect()
}

fn value(m: &Metric) -> f64 {
    let v = m.untyped.as_ref().and_then(|u| u.value);
    v.or(m.gauge.as_ref().and_then(|g| g.value))
        .or(m.counter.as_ref().and_then(|c| c.value))
        .unwrap_or(f64::MIN)
}

#[test]
fn observed_error_texts() {
    let cases: &[(&[u8], &str)] = &[
        (b"x 1", "line 1: unexpected end of input stream"),
        (b"x 1\n\ny 2", "line 3: unexpected end of input stream"),
        (b"x 1\r\n", r#"line 1: expected float as value, got "1\r""#),
        (b"x{a=\"1\",a} 1\n", "line 1: expected '=' after label name, found '}'"),
        (
            b"x{a=\"1\",a=\"2\"} 1\n",
            r#"line 1: duplicate label names for metric "x""#,
        ),
        (
            b"x{a=\"1\",b=\"2\",a=\"3\"} 1\n",
            r#"line 1: duplicate label names for metric "x""#,
        ),
        (b"x{a=\"1\",a=1} 1\n", r#"line 1: duplicate label names for metric "x""#),
        (
            b"x{a=\"1\",__name__=\"2\"} 1\n",
            r#"line 1: label name "__name__" is reserved"#,
        ),
        (b"x{__name__} 1\n", r#"line 1: label name "__name__" is reserved"#),
        (b"{a=\"1\"} 1\n", "line 1: invalid metric name"),
        (b"x{a=\"1\"\n", r#"line 1: unexpected end of label value "1""#),
        (b"x{,} 1\n", r#"line 1: invalid label name for metric "x""#),
        (b"x{a=\"1\",,} 1\n", r#"line 1: invalid label name for metric "x""#),
        (b"x{1a=\"1\"} 1\n", r#"line 1: invalid label name for metric "x""#),
        (b"x 1 \n", r#"line 1: expected integer as timestamp, got """#),
        (b"x 1 2 3\n", r#"line 1: spurious string after timestamp: " 3""#),
        (b"x 1 2 \\\n", r#"line 1: spurious string after timestamp: " ""#),
        (b"x 1 2\\\n", r#"line 1: expected integer as timestamp, got "2\\""#),
        (b"x 1 1.5\n", r#"line 1: expected integer as timestamp, got "1.5""#),
        (b"x 1 0x10\n", r#"line 1: expected integer as timestamp, got "0x10""#),
        (
            b"x 1 9223372036854775808\n",
            r#"line 1: expected integer as timestamp, got "9223372036854775808""#,
        ),
        (
            b"x{a=\"1\"} 1 # {t=\"1\"} 1\n",
            r##"line 1: expected integer as timestamp, got "#""##,
        ),
        (b"x{a=\"\\q\"} 1\n", r"line 1: invalid escape sequence '\q'"),
        (
            b"x{a=\"a\nb\"} 1\n",
            r#"line 1: label value "a" contains unescaped new-line"#,
        ),
        (b"x{a=\"\xff\"} 1\n", r#"line 1: invalid label value "\xff""#),
        (
            b"x{a=1} 1\n",
            r#"line 1: expected '"' at start of label value, found '1'"#,
        ),
        (
            b"x{a==\"1\"} 1\n",
            r#"line 1: expected '"' at start of label value, found '='"#,
        ),
        (b"x{a=\"1\",a 1\n", "line 1: expected '=' after label name, found '1'"),
        (b"# HELP x \\q\n", r"line 1: invalid escape sequence '\q'"),
        (b"# TYPE x counter\r\n", r#"line 1: unknown metric type "counter\r""#),
        (
            b"# TYPE x gauge extra\n",
            r#"line 1: unknown metric type "gauge extra""#,
        ),
        (b"# TYPE x  gauge \n", r#"line 1: unknown metric type "gauge ""#),
        (b"# TYPE z gauge \\ \nz 1\n", r#"line 1: unknown metric type "gauge  ""#),
        (b"# TYPE x \xa0gauge\n", r#"line 1: unknown metric type "\xa0gauge""#),
        (
            b"# TYPE x counter\nx 1\n# TYPE x gauge\n",
            r#"line 3: second TYPE line for metric name "x", or TYPE reported after samples"#,
        ),
        (
            b"x1 1\n# TYPE x1 gauge\n",
            r#"line 2: second TYPE line for metric name "x1", or TYPE reported after samples"#,
        ),
        (
            b"# HELP x a\n# HELP x b\n",
            r#"line 2: second HELP line for metric name "x""#,
        ),
        (b"x{a=\"1\"}\n", r#"line 1: expected float as value, got """#),
        (b"x\n", r#"line 1: expected float as value, got """#),
        (b"x \n", r#"line 1: expected float as value, got """#),
        (b"# TYPE x-y counter\n", "line 1: invalid metric name in comment"),
        (b"x 0x10\n", r#"line 1: expected float as value, got "0x10""#),
        (b"x 1_000\n", r#"line 1: expected float as value, got "1_000""#),
        (b"x 1p3\n", r#"line 1: expected float as value, got "1p3""#),
        (b"x 0x1P3\n", r#"line 1: expected float as value, got "0x1P3""#),
        (b"x 1e400\n", r#"line 1: expected float as value, got "1e400""#),
        (b"x -1e400\n", r#"line 1: expected float as value, got "-1e400""#),
        (b"x .\n", r#"line 1: expected float as value, got ".""#),
        (b"x 1e+\n", r#"line 1: expected float as value, got "1e+""#),
        (b"x -nan\n", r#"line 1: expected float as value, got "-nan""#),
        (b"x infin\n", r#"line 1: expected float as value, got "infin""#),
        (b"x 1.5.5\n", r#"line 1: expected float as value, got "1.5.5""#),
        (
            b"# TYPE s summary\ns{quantile=\"x\"} 1\n",
            r#"line 2: expected float as value for 'quantile' label, got "x""#,
        ),
        (
            b"# TYPE s summary\ns{quantile=\"1_0\"} 1\n",
            r#"line 2: expected float as value for 'quantile' label, got "1_0""#,
        ),
        (
            b"# TYPE h histogram\nh_bucket{le=\"x\"} 1\n",
            r#"line 2: expected float as value for 'le' label, got "x""#,
        ),
        (
            b"# TYPE h histogram\nh{le=\"x\"} 1\n",
            r#"line 2: expected float as value for 'le' label, got "x""#,
        ),
        (
            b"# TYPE h histogram\nh_sum{le=\"x\"} 1\n",
            r#"line 2: expected float as value for 'le' label, got "x""#,
        ),
        (
            b"# TYPE h histogram\nh_bucket{le=\"0x1P3\"} 1\n",
            r#"line 2: expected float as value for 'le' label, got "0x1P3""#,
        ),
    ];
    for (input, want) in cases {
        assert_eq!(
            err(input),
            format!("text format parsing error in {want}"),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn observed_accepted_inputs() {
    // Each answered 200 (or a storage-level 400, i.e. it parsed) on the reference.
    let accepted: &[&[u8]] = &[
        b"",
        b"x{a=\"1\",} 1\n",
        b"x{} 1\n",
        b"x   1\n",
        b"  x 1\n",
        b"x{ a = \"1\" } 1\n",
        b"x{a\t=\"1\"} 1\n",
        b"x{a=\"1\"}1\n",
        b"x 1 2\n",
        b"x 1  2\n",
        b"x 1 +5\n",
        b"x 1 -9223372036854775808\n",
        b"# TYPE x\n",
        b"# TYPE x \n",
        b"# HELP\n",
        b"#\n",
        b"# foo bar\n",
        b"#  HELP x h\nx 2\n",
        b"\t# HELP x h\n",
        b"# HELP\tx\th\n",
        b"# TYPE x\tgauge\nx 1\n",
        b"# TYPE x Counter\nx 1\n",
        b"x inf\nx Infinity\nx nan\nx +infinity\nx 1E5\nx .5\nx 5.\nx 00.5e-0\nx 1e-400\nx 1e-99999999999999999\nx 0e99999999999999\n",
        b"# TYPE c counter\nc{le=\"x\"} 1\n",
        b"# TYPE s summary\ns{quantile=\"0.5\",quantile=\"0.9\"} 1\n",
        b"# TYPE x gauge_histogram\nx 1\n",
        b"# HELP x a\\\\b\\nc\n",
        b"x{a=\"\\\\\"} 1\n",
        b"# TYPE y gauge\\\\\ny 1\n",
    ];
    for input in accepted {
        ok(input);
    }
}

#[test]
fn families_merge_in_first_appearance_order_and_empty_ones_are_dropped() {
    let f = ok(b"# HELP b about b\n# TYPE unused counter\nx 1\nb 2\ny 1\nx{a=\"b\"} 2\n");
    assert_eq!(names(&f), ["b", "x", "y"]);
    assert_eq!(f[1].metric.len(), 2);
    assert_eq!(labels(&f[1].metric[1]), [("a", "b")]);
    assert_eq!(f[0].help.as_deref(), Some("about b"));
    assert_eq!(f[1].help, None);
    assert!(f.iter().all(|f| f.r#type == Some(MetricType::Untyped as i32)));
    assert_eq!(value(&f[1].metric[1]), 2.0);
}

#[test]
fn values_land_in_the_sub_message_of_the_type() {
    let f = ok(b"# TYPE c counter\nc 1\n# TYPE g gauge\ng 2\nu 3\n# TYPE x \xc5\xbfummary\nx_count 1\n# TYPE y coun\\ter\ny 4\n");
    assert_eq!(f[0].metric[0].counter.as_ref().and_then(|c| c.value), Some(1.0));
    assert_eq!(f[1].metric[0].gauge.as_ref().and_then(|g| g.value), Some(2.0));
    assert_eq!(f[2].metric[0].untyped.as_ref().and_then(|u| u.value), Some(3.0));
    // Go's strings.ToUpper maps 'ſ' to 'S'; the TYPE line swallows backslashes.
    assert_eq!(f[3].metric_type(), MetricType::Summary);
    assert_eq!(f[3].metric[0].summary.as_ref().and_then(|s| s.sample_count), Some(1));
    assert_eq!(f[4].metric_type(), MetricType::Counter);
}

#[test]
fn escapes_and_help() {
    let f =
        ok(b"# HELP e a\\\\b\\nc \" \n# TYPE e gauge\ne{v=\"q\\\"b\\\\s\\nn\xc3\xa9\"} 7\n# HELP bad a\xffb\nbad 1\n");
    assert_eq!(f[0].help.as_deref(), Some("a\\b\nc \" "));
    assert_eq!(labels(&f[0].metric[0]), [("v", "q\"b\\s\nné")]);
    // Go keeps the raw byte; a Rust String cannot.
    assert_eq!(f[1].help.as_deref(), Some("a\u{fffd}b"));
}

#[test]
fn timestamps_are_parsed() {
    let f = ok(b"x 1 -5\ny 2 1700000000000\nz 3\n");
    let ts: Vec<_> = f.iter().map(|f| f.metric[0].timestamp_ms).collect();
    assert_eq!(ts, [Some(-5), Some(1_700_000_000_000), None]);
}

#[test]
fn summaries_group_by_labels_without_quantile() {
    let f = ok(b"# TYPE s summary\n# HELP s_count help via suffix\n\
        s{quantile=\"0.5\"} 1\ns{quantile=\"0.9\"} 2\ns_sum 3\ns_count 4\n\
        s_count{l=\"x\"} 7.9\ns{l=\"x\",quantile=\"NaN\"} 9\ns{quantile=\"1\",l=\"x\"} 5\ns_count{l=\"y\"} -1\n");
    assert_eq!(names(&f), ["s"]);
    assert_eq!(f[0].help.as_deref(), Some("help via suffix"));
    let m = &f[0].metric;
    assert_eq!(m.len(), 3);
    let s = m[0].summary.as_ref().expect("summary");
    assert_eq!((s.sample_sum, s.sample_count), (Some(3.0), Some(4)));
    let q: Vec<_> = s.quantile.iter().map(|q| (q.quantile, q.value)).collect();
    assert_eq!(q, [(Some(0.5), Some(1.0)), (Some(0.9), Some(2.0))]);
    // The metric keeps the labels of its first line; a NaN quantile adds nothing.
    assert_eq!(labels(&m[1]), [("l", "x")]);
    let s = m[1].summary.as_ref().expect("summary");
    assert_eq!((s.sample_count, s.quantile.len()), (Some(7), 1));
    // Go's uint64(-1.0) on amd64 wraps.
    assert_eq!(m[2].summary.as_ref().and_then(|s| s.sample_count), Some(u64::MAX));
}

#[test]
fn histograms_group_by_labels_without_le() {
    let f = ok(
        b"# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh{le=\"2\"} 2\nh_bucket{le=\"NaN\"} 9\nh_bucket 9\n\
        h_bucket{quantile=\"q\",le=\"+Inf\"} 3\nh_sum 3.5\nh_count 3\n",
    );
    assert_eq!(f[0].metric.len(), 2);
    let h = f[0].metric[0].histogram.as_ref().expect("histogram");
    let b: Vec<_> = h.bucket.iter().map(|b| (b.upper_bound, b.cumulative_count)).collect();
    assert_eq!(b, [(Some(1.0), Some(1)), (Some(2.0), Some(2))]);
    assert_eq!((h.sample_sum, h.sample_count), (Some(3.5), Some(3)));
    // For a histogram `quantile` is an ordinary label.
    assert_eq!(labels(&f[0].metric[1]), [("quantile", "q")]);
}

#[test]
fn suffix_lines_only_join_a_known_summary_or_histogram() {
    // `x_count` before `x` is typed is its own family; so is `g_sum` of a gauge.
    let f = ok(b"x_count 1\n# TYPE x summary\nx_count 2\n# TYPE g gauge\ng_sum 1\n");
    assert_eq!(names(&f), ["x_count", "g_sum"]);
    assert_eq!(f[0].metric.len(), 2);
    // `h_bucket_count` is not `h`'s; the TYPE line created `h` first.
    let f = ok(b"# TYPE h histogram\nh_bucket_count 1\nh_bucket{le=\"1\"} 1\n");
    assert_eq!(names(&f), ["h", "h_bucket_count"]);
}

#[test]
fn gauge_histogram_samples_keep_no_value() {
    let f = ok(b"# TYPE x gauge_histogram\nx{a=\"1\"} 1\n");
    assert_eq!(f[0].metric_type(), MetricType::GaugeHistogram);
    assert_eq!(
        f[0].metric[0],
        Metric {
            label: f[0].metric[0].label.clone(),
            ..Default::default()
        }
    );
}
