//! Property tests: `parse(write(f)) == normalise(f)` for families the text format can carry,
//! and `decode(encode(f)) == f` for any family.

use batchgate_format::MetricType;
use batchgate_format::delimited::{decode, encode};
use batchgate_format::proto::{
    Bucket, BucketSpan, Counter, Exemplar, Gauge, Histogram, LabelPair, Metric, MetricFamily, Quantile, Summary,
    Timestamp, Untyped,
};
use batchgate_format::text::{parse, write_family};
use proptest::prelude::*;
use prost::Message;

/// Any f64, with the specials well represented.
fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        Just(-0.0),
        Just(1.0),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
        Just(5e-324),
        -1e7..1e7f64,
        any::<f64>(),
    ]
}

/// Label values: quotes, backslashes, newlines, tabs, unicode.
fn value() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9 ]{0,6}", r#"[\\"\n\t a-zé€😀{},=#]{0,8}"#, any::<String>(),]
}

fn label_name() -> impl Strategy<Value = String> {
    "[a-zA-Z][a-zA-Z0-9_]{0,5}|_[a-zA-Z0-9][a-zA-Z0-9_]{0,4}"
}

/// A metric of the given type with distinct label `id` so that metrics never merge.
fn metric(ty: MetricType, id: usize) -> impl Strategy<Value = Metric> {
    let labels = prop::collection::btree_map(label_name(), value(), 0..4);
    let count = 0..(1u64 << 53); // exactly representable as f64, as the text format needs
    let kind = match ty {
        MetricType::Summary => {
            let quantiles = prop::collection::vec((float().prop_filter("bound", |q| !q.is_nan()), float()), 0..4);
            (quantiles, prop::option::of(count), prop::option::of(float()))
                .prop_map(|(q, count, sum)| Metric {
                    summary: Some(Summary {
                        sample_count: count,
                        sample_sum: sum,
                        quantile: q
                            .into_iter()
                            .map(|(q, v)| Quantile {
                                quantile: Some(q),
                                value: Some(v),
                            })
                            .collect(),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .boxed()
        }
        MetricType::Histogram => {
            let buckets = prop::collection::vec((float().prop_filter("bound", |b| !b.is_nan()), count.clone()), 0..4);
            (buckets, prop::option::of(count), prop::option::of(float()))
                .prop_map(|(b, count, sum)| Metric {
                    histogram: Some(Histogram {
                        sample_count: count,
                        sample_sum: sum,
                        bucket: b
                            .into_iter()
                            .map(|(le, n)| Bucket {
                                upper_bound: Some(le),
                                cumulative_count: Some(n),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .boxed()
        }
        MetricType::Counter => float()
            .prop_map(|v| Metric {
                counter: Some(Counter {
                    value: Some(v),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .boxed(),
        MetricType::Gauge => float()
            .prop_map(|v| Metric {
                gauge: Some(Gauge { value: Some(v) }),
                ..Default::default()
            })
            .boxed(),
        _ => float()
            .prop_map(|v| Metric {
                untyped: Some(Untyped { value: Some(v) }),
                ..Default::default()
            })
            .boxed(),
    };
    (kind, labels, prop::option::of(any::<i64>())).prop_map(move |(mut m, labels, ts)| {
        let reserved = ["__name__", "id", "quantile", "le"];
        m.label = labels
            .into_iter()
            .filter(|(n, _)| !reserved.contains(&n.as_str()))
            .map(|(n, v)| LabelPair::new(n, v))
            .collect();
        m.label.push(LabelPair::new("id", id.to_string()));
        m.timestamp_ms = ts;
        m
    })
}

/// Families whose names cannot collide through the `_count`/`_sum`/`_bucket` rule.
fn text_families() -> impl Strategy<Value = Vec<MetricFamily>> {
    let ty = prop::sample::select(vec![
        MetricType::Counter,
        MetricType::Gauge,
        MetricType::Untyped,
        MetricType::Summary,
        MetricType::Histogram,
    ]);
    let family = (
        ty,
        "[a-zA-Z_:][a-zA-Z0-9_:]{0,8}",
        prop::option::of(any::<String>()),
        0..4usize,
    );
    prop::collection::vec(family, 1..4).prop_flat_map(|fams| {
        fams.into_iter()
            .enumerate()
            .map(|(i, (ty, name, help, n))| {
                let metrics: Vec<_> = (0..n).map(|id| metric(ty, id)).collect();
                (Just(format!("{name}_f{i}")), Just(help), Just(ty), metrics).prop_map(|(name, help, ty, metric)| {
                    MetricFamily {
                        name: Some(name),
                        help,
                        r#type: Some(ty as i32),
                        metric,
                        unit: None,
                    }
                })
            })
            .collect::<Vec<_>>()
    })
}

/// What survives the text format: empty families vanish; leading blanks of HELP are skipped
/// and an empty HELP reads as none; -0 prints as 0; NaN payloads are not kept; absent
/// summary/histogram count and sum print as 0; a +Inf bucket is added when missing.
fn normalise(families: &[MetricFamily]) -> Vec<MetricFamily> {
    let num = |v: f64| {
        if v.is_nan() {
            f64::NAN
        } else if v == 0.0 {
            0.0
        } else {
            v
        }
    };
    let opt = |v: Option<f64>| Some(num(v.unwrap_or_default()));
    let mut out: Vec<MetricFamily> = families.iter().filter(|f| !f.metric.is_empty()).cloned().collect();
    for f in &mut out {
        f.help = f
            .help
            .take()
            .map(|h| h.trim_start_matches([' ', '\t']).to_owned())
            .filter(|h| !h.is_empty());
        for m in &mut f.metric {
            for v in [
                m.counter.as_mut().map(|c| &mut c.value),
                m.gauge.as_mut().map(|g| &mut g.value),
                m.untyped.as_mut().map(|u| &mut u.value),
            ]
            .into_iter()
            .flatten()
            {
                *v = opt(*v);
            }
            if let Some(s) = &mut m.summary {
                s.sample_count = Some(s.sample_count.unwrap_or_default());
                s.sample_sum = opt(s.sample_sum);
                for q in &mut s.quantile {
                    (q.quantile, q.value) = (opt(q.quantile), opt(q.value));
                }
            }
            if let Some(h) = &mut m.histogram {
                let count = h.sample_count.unwrap_or_default();
                h.sample_count = Some(count);
                h.sample_sum = opt(h.sample_sum);
                for b in &mut h.bucket {
                    b.upper_bound = opt(b.upper_bound);
                }
                if !h.bucket.iter().any(|b| b.upper_bound == Some(f64::INFINITY)) {
                    h.bucket.push(Bucket {
                        upper_bound: Some(f64::INFINITY),
                        cumulative_count: Some(count),
                        ..Default::default()
                    });
                }
            }
        }
    }
    out
}

/// Byte-level equality (NaN == NaN, -0 != 0), via the canonical protobuf encoding.
fn bytes(families: &[MetricFamily]) -> Vec<Vec<u8>> {
    families.iter().map(Message::encode_to_vec).collect()
}

/// Any family, including what the text format cannot carry.
fn any_family() -> impl Strategy<Value = MetricFamily> {
    let ts = (any::<i64>(), any::<i32>())
        .prop_map(|(seconds, nanos)| Timestamp { seconds, nanos })
        .boxed();
    let exemplar = (
        prop::collection::vec((label_name(), value()), 0..2),
        prop::option::of(float()),
        prop::option::of(ts.clone()),
    )
        .prop_map(|(l, value, timestamp)| Exemplar {
            label: l.into_iter().map(|(n, v)| LabelPair::new(n, v)).collect(),
            value,
            timestamp,
        })
        .boxed();
    let span = (prop::option::of(any::<i32>()), prop::option::of(any::<u32>()))
        .prop_map(|(offset, length)| BucketSpan { offset, length });
    let histogram = (
        (
            prop::option::of(any::<u64>()),
            prop::option::of(float()),
            prop::option::of(float()),
            prop::option::of(any::<i32>()),
        ),
        prop::collection::vec(
            (
                prop::option::of(any::<u64>()),
                prop::option::of(float()),
                prop::option::of(exemplar.clone()),
            ),
            0..3,
        ),
        (
            prop::collection::vec(span.clone(), 0..2),
            prop::collection::vec(any::<i64>(), 0..3),
            prop::collection::vec(float(), 0..3),
        ),
        (
            prop::option::of(ts.clone()),
            prop::collection::vec(exemplar.clone(), 0..2),
            prop::option::of(any::<u64>()),
        ),
    )
        .prop_map(
            |((count, count_f, sum, schema), buckets, (spans, deltas, counts), (created, exemplars, zero))| Histogram {
                sample_count: count,
                sample_count_float: count_f,
                sample_sum: sum,
                bucket: buckets
                    .into_iter()
                    .map(|(n, le, exemplar)| Bucket {
                        cumulative_count: n,
                        upper_bound: le,
                        exemplar,
                        ..Default::default()
                    })
                    .collect(),
                created_timestamp: created,
                schema,
                zero_count: zero,
                positive_span: spans.clone(),
                negative_span: spans,
                positive_delta: deltas.clone(),
                negative_delta: deltas,
                positive_count: counts.clone(),
                negative_count: counts,
                exemplars,
                ..Default::default()
            },
        );
    let metric = (
        prop::collection::vec((label_name(), value()), 0..3),
        prop::option::of(float()),
        prop::option::of((
            prop::option::of(float()),
            prop::option::of(exemplar),
            prop::option::of(ts),
        )),
        prop::option::of(histogram),
        prop::option::of(any::<i64>()),
    )
        .prop_map(|(l, gauge, counter, histogram, ts)| Metric {
            label: l.into_iter().map(|(n, v)| LabelPair::new(n, v)).collect(),
            gauge: gauge.map(|v| Gauge { value: Some(v) }),
            counter: counter.map(|(value, exemplar, created_timestamp)| Counter {
                value,
                exemplar,
                created_timestamp,
            }),
            histogram,
            timestamp_ms: ts,
            ..Default::default()
        });
    (
        prop::option::of(any::<String>()),
        prop::option::of(any::<String>()),
        prop::option::of(any::<i32>()),
        prop::collection::vec(metric, 0..3),
        prop::option::of(any::<String>()),
    )
        .prop_map(|(name, help, r#type, metric, unit)| MetricFamily {
            name,
            help,
            r#type,
            metric,
            unit,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn text_round_trip(families in text_families()) {
        let mut text = Vec::new();
        for f in &families {
            write_family(&mut text, f);
        }
        let parsed = parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{}", String::from_utf8_lossy(&text))))?;
        prop_assert_eq!(bytes(&parsed), bytes(&normalise(&families)), "{}", String::from_utf8_lossy(&text));
    }

    #[test]
    fn delimited_round_trip(families in prop::collection::vec(any_family(), 0..4)) {
        let mut out = Vec::new();
        for f in &families {
            encode(f, &mut out);
        }
        let decoded = decode(&out).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(bytes(&decoded), bytes(&families));
    }
}
