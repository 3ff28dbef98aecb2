//! Push-time consistency: label sanitising and an incremental index that decides whether a push
//! keeps the whole store exposable.
//!
//! The Pushgateway re-gathers the entire store on every push to find out, which costs
//! O(series stored) per push. The index keeps what that check needs (the type of every family
//! name, the set of stored series, the names of batchgate's own metrics) so a push costs
//! O(series pushed) and is judged exactly as the Pushgateway judges it, with its error texts.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use batchgate_format::text::format_float;
use batchgate_format::{LabelPair, Metric, MetricFamily, MetricType};

use super::{Labels, PUSH_FAILURE_TIME, PUSH_TIME};

/// Applies the grouping labels to every metric as the Pushgateway does: a grouping label
/// overwrites a body label of the same name, missing ones are added, `instance=""` is added when
/// there is no `instance` at all, and label pairs end up sorted by name.
pub fn sanitize(family: &mut MetricFamily, grouping: &Labels) {
    for metric in &mut family.metric {
        let mut pending: Vec<(&String, &String)> = grouping.iter().collect();
        let mut has_instance = false;
        for pair in &mut metric.label {
            let name = pair.name.as_deref().unwrap_or("");
            if let Some(pos) = pending.iter().position(|(n, _)| n.as_str() == name) {
                pair.value = Some(pending[pos].1.clone());
                pending.swap_remove(pos);
            }
            has_instance |= name == "instance";
        }
        for (name, value) in pending {
            has_instance |= name == "instance";
            metric.label.push(LabelPair::new(name, value));
        }
        if !has_instance {
            metric.label.push(LabelPair::new("instance", ""));
        }
        metric.label.sort_by(|a, b| a.name.cmp(&b.name));
    }
}

/// True if any metric carries a timestamp (the Pushgateway rejects those pushes as a whole).
pub fn has_timestamps(families: &[MetricFamily]) -> bool {
    families
        .iter()
        .flat_map(|f| &f.metric)
        .any(|m| m.timestamp_ms.is_some())
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A legacy Prometheus label name that is not reserved (`__` prefix).
pub fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// A family's series as stored: its name and its (sorted) label pairs, separated by the bytes
/// 0xff and 0xfe, which never occur in UTF-8, so two label sets can never share a key.
fn series_key(name: &str, metric: &Metric) -> Box<[u8]> {
    let mut key = Vec::with_capacity(name.len() + 16 * metric.label.len());
    key.extend_from_slice(name.as_bytes());
    for pair in &metric.label {
        key.push(0xff);
        key.extend_from_slice(pair.name.as_deref().unwrap_or("").as_bytes());
        key.push(0xfe);
        key.extend_from_slice(pair.value.as_deref().unwrap_or("").as_bytes());
    }
    key.into_boxed_slice()
}

/// A string as golang/protobuf 1.3's text marshaller writes it (bytes outside printable ASCII
/// as octal escapes).
fn proto_string(out: &mut String, s: &str) {
    out.push('"');
    for b in s.bytes() {
        match b {
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\{b:03o}");
            }
        }
    }
    out.push('"');
}

fn proto_float(v: f64) -> String {
    match v {
        f64::INFINITY => "inf".into(),
        f64::NEG_INFINITY => "-inf".into(),
        v if v.is_nan() => "nan".into(),
        v => format_float(v),
    }
}

/// Go's `%s` of a `dto.Metric` (golang/protobuf 1.3 compact text, as Pushgateway 1.5.1 prints
/// it in its error texts): set fields only, in declaration order.
fn describe(metric: &Metric) -> String {
    let mut out = String::new();
    for pair in &metric.label {
        out.push_str("label:<");
        if let Some(name) = &pair.name {
            out.push_str("name:");
            proto_string(&mut out, name);
            out.push(' ');
        }
        if let Some(value) = &pair.value {
            out.push_str("value:");
            proto_string(&mut out, value);
            out.push(' ');
        }
        out.push_str("> ");
    }
    let value = |out: &mut String, field: &str, v: Option<f64>| {
        if let Some(v) = v {
            let _ = write!(out, "{field}:{} ", proto_float(v));
        }
    };
    if let Some(g) = &metric.gauge {
        out.push_str("gauge:<");
        value(&mut out, "value", g.value);
        out.push_str("> ");
    }
    if let Some(c) = &metric.counter {
        out.push_str("counter:<");
        value(&mut out, "value", c.value);
        out.push_str("> ");
    }
    if let Some(sm) = &metric.summary {
        out.push_str("summary:<");
        if let Some(n) = sm.sample_count {
            let _ = write!(out, "sample_count:{n} ");
        }
        value(&mut out, "sample_sum", sm.sample_sum);
        for q in &sm.quantile {
            out.push_str("quantile:<");
            value(&mut out, "quantile", q.quantile);
            value(&mut out, "value", q.value);
            out.push_str("> ");
        }
        out.push_str("> ");
    }
    if let Some(u) = &metric.untyped {
        out.push_str("untyped:<");
        value(&mut out, "value", u.value);
        out.push_str("> ");
    }
    if let Some(h) = &metric.histogram {
        out.push_str("histogram:<");
        if let Some(n) = h.sample_count {
            let _ = write!(out, "sample_count:{n} ");
        }
        value(&mut out, "sample_sum", h.sample_sum);
        for b in &h.bucket {
            out.push_str("bucket:<");
            if let Some(n) = b.cumulative_count {
                let _ = write!(out, "cumulative_count:{n} ");
            }
            value(&mut out, "upper_bound", b.upper_bound);
            out.push_str("> ");
        }
        out.push_str("> ");
    }
    if let Some(ts) = metric.timestamp_ms {
        let _ = write!(out, "timestamp_ms:{ts} ");
    }
    out
}

/// Checks one family on its own: a valid name, every metric of the family's type, valid and
/// unique label names, no explicit `quantile`/`le` labels where the format adds them.
fn check_family(family: &MetricFamily) -> Result<(), String> {
    let name = family.name.as_deref().unwrap_or("");
    if !is_metric_name(name) {
        return Err(format!("metric family name {name:?} is not a valid metric name"));
    }
    // The text format cannot print GAUGE_HISTOGRAM or an unknown type: the Pushgateway stores
    // such families and then every scrape stops at them.
    let raw_type = family.r#type.unwrap_or_default();
    if !matches!(MetricType::try_from(raw_type), Ok(t) if t != MetricType::GaugeHistogram) {
        let shown = MetricType::try_from(raw_type).map_or(raw_type.to_string(), |t| t.proto_name().to_string());
        return Err(format!(
            "metric family {name:?} has type {shown}, which the text format cannot expose"
        ));
    }
    let mtype = family.metric_type();
    for metric in &family.metric {
        let ok = match mtype {
            MetricType::Gauge => metric.gauge.is_some(),
            MetricType::Counter => metric.counter.is_some(),
            MetricType::Summary => metric.summary.is_some(),
            MetricType::Untyped => metric.untyped.is_some(),
            MetricType::Histogram | MetricType::GaugeHistogram => metric.histogram.is_some(),
        };
        if !ok {
            return Err(format!(
                "collected metric {name:?} {{ {}}} is not a {}",
                describe(metric),
                mtype.proto_name()
            ));
        }
        let mut previous = "";
        for pair in &metric.label {
            let label = pair.name.as_deref().unwrap_or("");
            if label == previous {
                return Err(format!(
                    "collected metric {name:?} {{ {}}} has two or more labels with the same name: {label}",
                    describe(metric)
                ));
            }
            if !is_label_name(label) {
                return Err(format!(
                    "collected metric {name:?} {{ {}}} has a label with an invalid name: {label}",
                    describe(metric)
                ));
            }
            let reserved = match mtype {
                MetricType::Summary => "quantile",
                MetricType::Histogram | MetricType::GaugeHistogram => "le",
                _ => "",
            };
            if label == reserved {
                return Err(format!(
                    "collected metric {name:?} {{ {}}} must not have an explicit {reserved:?} label",
                    describe(metric)
                ));
            }
            previous = label;
        }
    }
    Ok(())
}

#[derive(Clone, Copy)]
struct FamilyEntry {
    mtype: MetricType,
    /// How many groups hold a family of this name.
    groups: u32,
}

/// What the store holds, reduced to what consistency needs.
#[derive(Default)]
pub struct Index {
    families: HashMap<String, FamilyEntry>,
    series: HashSet<Box<[u8]>>,
    /// batchgate's own metric families (name → type): pushed families must agree on the type.
    own: HashMap<String, MetricType>,
}

impl Index {
    pub fn new(own: HashMap<String, MetricType>) -> Index {
        Index {
            own,
            ..Index::default()
        }
    }

    /// Families that take part in consistency: everything but the synthetic timestamps, which
    /// batchgate alone writes and which are unique per group by construction.
    pub fn indexed(family: &MetricFamily) -> bool {
        !matches!(family.name.as_deref(), Some(PUSH_TIME) | Some(PUSH_FAILURE_TIME))
    }

    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Adds families known to be consistent (loading the store).
    pub fn add_trusted<'a>(&mut self, families: impl IntoIterator<Item = &'a MetricFamily>) {
        for family in families.into_iter().filter(|f| Index::indexed(f)) {
            let name = family.name.clone().unwrap_or_default();
            for metric in &family.metric {
                self.series.insert(series_key(&name, metric));
            }
            self.families
                .entry(name)
                .or_insert(FamilyEntry {
                    mtype: family.metric_type(),
                    groups: 0,
                })
                .groups += 1;
        }
    }

    /// Removes families of one group.
    pub fn remove<'a>(&mut self, families: impl IntoIterator<Item = &'a MetricFamily>) {
        for family in families.into_iter().filter(|f| Index::indexed(f)) {
            let name = family.name.as_deref().unwrap_or("");
            for metric in &family.metric {
                self.series.remove(&series_key(name, metric));
            }
            if let Some(entry) = self.families.get_mut(name) {
                entry.groups -= 1;
                if entry.groups == 0 {
                    self.families.remove(name);
                }
            }
        }
    }

    /// Replaces families of one group (`old`, all from that group) by `new` ones if the store
    /// stays consistent; otherwise leaves the index as it was and returns the reason.
    pub fn replace(&mut self, old: &[&MetricFamily], new: &[&MetricFamily]) -> Result<(), String> {
        self.remove(old.iter().copied());
        let mut added: Vec<&MetricFamily> = Vec::new();
        let result = new
            .iter()
            .filter(|f| Index::indexed(f))
            .try_for_each(|family| match self.add_checked(family) {
                Ok(()) => {
                    added.push(family);
                    Ok(())
                }
                Err(e) => Err(e),
            });
        if result.is_err() {
            self.remove(added);
            self.add_trusted(old.iter().copied());
        }
        result
    }

    fn type_of(&self, name: &str) -> Option<MetricType> {
        self.own
            .get(name)
            .copied()
            .or_else(|| self.families.get(name).map(|e| e.mtype))
    }

    /// Adds one family after checking it against everything indexed; on error nothing changed.
    fn add_checked(&mut self, family: &MetricFamily) -> Result<(), String> {
        check_family(family)?;
        let name = family.name.as_deref().unwrap_or("");
        let mtype = family.metric_type();
        if let Some(own) = self.own.get(name).filter(|own| **own != mtype) {
            return Err(format!(
                "gathered metric family {name} has type {} but should have {}",
                mtype.proto_name(),
                own.proto_name()
            ));
        }
        match self.families.get(name) {
            Some(entry) if entry.mtype != mtype => {
                let metric = family.metric.first().cloned().unwrap_or_default();
                return Err(format!(
                    "collected metric {name:?} {{ {}}} is not a {}",
                    describe(&metric),
                    entry.mtype.proto_name()
                ));
            }
            Some(_) => {}
            None if !self.own.contains_key(name) => self.check_suffixes(name, mtype)?,
            None => {}
        }
        let mut keys = Vec::with_capacity(family.metric.len());
        for metric in &family.metric {
            let key = series_key(name, metric);
            if !self.series.insert(key.clone()) {
                for k in &keys {
                    self.series.remove(k);
                }
                return Err(format!(
                    "collected metric {name:?} {{ {}}} was collected before with the same name and label values",
                    describe(metric)
                ));
            }
            keys.push(key);
        }
        self.families
            .entry(name.to_string())
            .or_insert(FamilyEntry { mtype, groups: 0 })
            .groups += 1;
        Ok(())
    }

    /// client_golang's `checkSuffixCollisions`: a summary or histogram `x` cannot coexist with
    /// families `x_count`, `x_sum` (or `x_bucket` for histograms), which its exposition writes.
    fn check_suffixes(&self, name: &str, mtype: MetricType) -> Result<(), String> {
        let is_histogram = |t| matches!(t, MetricType::Histogram | MetricType::GaugeHistogram);
        for suffix in ["_count", "_sum", "_bucket"] {
            let Some(base) = name.strip_suffix(suffix) else {
                continue;
            };
            match self.type_of(base) {
                Some(MetricType::Summary) if suffix != "_bucket" => {
                    return Err(format!(
                        "collected metric named {name:?} collides with previously collected summary named {base:?}"
                    ));
                }
                Some(t) if is_histogram(t) => {
                    return Err(format!(
                        "collected metric named {name:?} collides with previously collected histogram named {base:?}"
                    ));
                }
                _ => {}
            }
        }
        if mtype == MetricType::Summary || is_histogram(mtype) {
            for suffix in ["_count", "_sum"] {
                let other = format!("{name}{suffix}");
                if self.type_of(&other).is_some() {
                    return Err(format!(
                        "collected histogram or summary named {name:?} collides with previously collected metric named {other:?}"
                    ));
                }
            }
        }
        if is_histogram(mtype) {
            let other = format!("{name}_bucket");
            if self.type_of(&other).is_some() {
                return Err(format!(
                    "collected histogram named {name:?} collides with previously collected metric named {other:?}"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use batchgate_format::proto::{Gauge, Untyped};

    fn gauge(name: &str, labels: &[(&str, &str)], v: f64) -> MetricFamily {
        MetricFamily {
            name: Some(name.into()),
            help: None,
            r#type: Some(MetricType::Gauge as i32),
            metric: vec![Metric {
                label: labels.iter().map(|(n, v)| LabelPair::new(*n, *v)).collect(),
                gauge: Some(Gauge { value: Some(v) }),
                ..Default::default()
            }],
            unit: None,
        }
    }

    fn grouping(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    #[test]
    fn sanitize_overwrites_adds_and_sorts() {
        let mut f = gauge("m", &[("job", "other"), ("instance", "x"), ("a", "1")], 1.0);
        sanitize(&mut f, &grouping(&[("job", "j4")]));
        let labels: Vec<_> = f.metric[0]
            .label
            .iter()
            .map(|l| (l.name.clone().unwrap(), l.value.clone().unwrap()))
            .collect();
        assert_eq!(
            labels,
            vec![
                ("a".into(), "1".into()),
                ("instance".into(), "x".into()),
                ("job".into(), "j4".into())
            ]
        );
        let mut f = gauge("m", &[], 1.0);
        sanitize(&mut f, &grouping(&[("job", "j")]));
        assert_eq!(f.metric[0].label[0], LabelPair::new("instance", ""));
    }

    #[test]
    fn type_conflict_and_duplicates_are_rejected_and_rolled_back() {
        let mut index = Index::default();
        let a = gauge("m", &[("instance", ""), ("job", "a")], 1.0);
        index.replace(&[], &[&a]).unwrap();
        let mut b = gauge("m", &[("instance", ""), ("job", "b")], 1.0);
        b.r#type = Some(MetricType::Untyped as i32);
        b.metric[0].gauge = None;
        b.metric[0].untyped = Some(Untyped { value: Some(1.0) });
        let err = index.replace(&[], &[&b]).unwrap_err();
        assert_eq!(
            err,
            r#"collected metric "m" { label:<name:"instance" value:"" > label:<name:"job" value:"b" > untyped:<value:1 > } is not a GAUGE"#
        );
        let dup = gauge("m", &[("instance", ""), ("job", "a")], 2.0);
        let other = gauge("n", &[("instance", ""), ("job", "c")], 2.0);
        let err = index.replace(&[], &[&other, &dup]).unwrap_err();
        assert!(err.contains("was collected before"), "{err}");
        // The failed push left nothing behind: `n` is still free for any type.
        assert_eq!(index.series_count(), 1);
        assert!(!index.families.contains_key("n"));
        // Replacing a group's own family with the same series is fine.
        index.replace(&[&a], &[&dup]).unwrap();
        assert_eq!(index.series_count(), 1);
    }

    #[test]
    fn label_values_with_any_characters_never_collide() {
        let mut index = Index::default();
        let a = gauge("m", &[("a", "x"), ("b", "y"), ("job", "j")], 1.0);
        let b = gauge("m", &[("a", "x\u{ff}b\u{fe}y"), ("job", "j")], 1.0);
        index.replace(&[], &[&a]).unwrap();
        index.replace(&[], &[&b]).unwrap();
        assert_eq!(index.series_count(), 2);
    }

    #[test]
    fn suffix_collisions() {
        let mut index = Index::default();
        let mut h = gauge("h", &[("instance", ""), ("job", "a")], 1.0);
        h.r#type = Some(MetricType::Histogram as i32);
        h.metric[0].gauge = None;
        h.metric[0].histogram = Some(Default::default());
        index.replace(&[], &[&h]).unwrap();
        let err = index
            .replace(&[], &[&gauge("h_count", &[("job", "b")], 1.0)])
            .unwrap_err();
        assert_eq!(
            err,
            r#"collected metric named "h_count" collides with previously collected histogram named "h""#
        );
    }

    #[test]
    fn own_metric_types_are_enforced() {
        let own = HashMap::from([("batchgate_build_info".to_string(), MetricType::Gauge)]);
        let mut index = Index::new(own);
        let mut f = gauge("batchgate_build_info", &[("job", "a")], 1.0);
        index.replace(&[], &[&f]).unwrap();
        f.r#type = Some(MetricType::Untyped as i32);
        f.metric[0].gauge = None;
        f.metric[0].untyped = Some(Untyped { value: Some(1.0) });
        let err = index.replace(&[], &[&f]).unwrap_err();
        assert_eq!(
            err,
            "gathered metric family batchgate_build_info has type UNTYPED but should have GAUGE"
        );
    }
}
