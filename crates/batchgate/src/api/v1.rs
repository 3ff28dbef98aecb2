//! `/api/v1`: the Pushgateway's JSON API (`status`, `metrics`, `admin/wipe`, CORS `OPTIONS`),
//! encoded as Go's `encoding/json` encodes it (sorted map keys, HTML-safe escaping, numbers as
//! strings).

use std::collections::BTreeMap;
use std::io;

use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use batchgate_format::text::format_float;
use batchgate_format::{Metric, MetricFamily, MetricType};
use serde_json::{Map, Value};

use super::{App, method_not_allowed, not_found, push};

/// Where families named like the group object's own keys go, so they cannot overwrite them
/// (the Pushgateway lets a family called `labels` replace the group's labels). A metric name
/// can never contain `-`, so this key can never collide.
pub const SHADOWED_FAMILIES_KEY: &str = "metric-families";

const CORS: &[(&str, &str)] = &[
    (
        "access-control-allow-headers",
        "Accept, Authorization, Content-Type, Origin",
    ),
    ("access-control-allow-methods", "GET, POST, DELETE, OPTIONS"),
    ("access-control-allow-origin", "*"),
    ("access-control-expose-headers", "Date"),
    ("cache-control", "no-cache, no-store, must-revalidate"),
];

pub async fn route(app: &App, method: &Method, path: &str) -> (&'static str, Response) {
    if *method == Method::OPTIONS {
        return ("api/v1/options", with_cors(Response::new(Body::empty())));
    }
    if path == "/jobs" || path.starts_with("/jobs/") {
        return super::jobs::route(app, method, path);
    }
    let allowed: &[Method] = match path {
        "/status" | "/metrics" => &[Method::GET],
        "/admin/wipe" if app.enable_admin_api => &[Method::PUT],
        _ => return ("other", not_found()),
    };
    if !allowed.contains(method) {
        return ("other", method_not_allowed(method, allowed));
    }
    match path {
        "/status" => ("api/v1/status", with_cors(respond(status(app)))),
        "/metrics" => ("api/v1/metrics", with_cors(respond(metrics(app)))),
        _ => ("api/v1/admin/wipe", push::wipe(app).await),
    }
}

pub(super) fn with_cors(mut r: Response) -> Response {
    for (name, value) in CORS {
        r.headers_mut().insert(*name, HeaderValue::from_static(value));
    }
    r
}

fn respond(data: Value) -> Response {
    let mut envelope = Map::new();
    envelope.insert("status".into(), Value::from("success"));
    envelope.insert("data".into(), data);
    let mut r = Response::new(Body::from(to_go_json(&Value::Object(envelope))));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// RFC 3339 with nanoseconds, trailing zeros trimmed: Go's `time.Time` JSON form (UTC).
pub fn rfc3339_nano(ns: i64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(ns))
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// A JSON object with keys in byte order, as Go writes maps.
fn sorted(entries: BTreeMap<String, Value>) -> Value {
    Value::Object(entries.into_iter().collect())
}

fn status(app: &App) -> Value {
    let build: BTreeMap<String, Value> = [
        ("branch", ""),
        ("buildDate", ""),
        ("buildUser", ""),
        ("goVersion", ""),
        ("revision", option_env!("BATCHGATE_REVISION").unwrap_or("")),
        ("version", env!("CARGO_PKG_VERSION")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Value::from(v)))
    .collect();
    let flags = app
        .flags
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    let start_ns = (app.telemetry.start_time() * 1e9) as i64;
    sorted(BTreeMap::from([
        ("build_information".to_string(), sorted(build)),
        ("flags".to_string(), sorted(flags)),
        ("start_time".to_string(), Value::from(rfc3339_nano(start_ns))),
    ]))
}

fn labels_of(metric: &Metric) -> Value {
    sorted(
        metric
            .label
            .iter()
            .map(|l| {
                (
                    l.name.clone().unwrap_or_default(),
                    Value::from(l.value.clone().unwrap_or_default()),
                )
            })
            .collect(),
    )
}

fn num(v: Option<f64>) -> Value {
    Value::from(format_float(v.unwrap_or(0.0)))
}

fn encodable_metric(metric: &Metric, mtype: MetricType) -> Value {
    let mut m = BTreeMap::new();
    m.insert("labels".to_string(), labels_of(metric));
    match mtype {
        MetricType::Summary => {
            let s = metric.summary.clone().unwrap_or_default();
            let q = s
                .quantile
                .iter()
                .map(|q| (format_float(q.quantile.unwrap_or(0.0)), num(q.value)))
                .collect();
            m.insert("quantiles".into(), sorted(q));
            m.insert("count".into(), Value::from(s.sample_count.unwrap_or(0).to_string()));
            m.insert("sum".into(), num(s.sample_sum));
        }
        MetricType::Histogram | MetricType::GaugeHistogram => {
            let h = metric.histogram.clone().unwrap_or_default();
            let buckets = h
                .bucket
                .iter()
                .map(|b| {
                    let count = match b.cumulative_count_float {
                        Some(c) if c > 0.0 => format_float(c),
                        _ => b.cumulative_count.unwrap_or(0).to_string(),
                    };
                    (format_float(b.upper_bound.unwrap_or(0.0)), Value::from(count))
                })
                .collect();
            m.insert("buckets".into(), sorted(buckets));
            let count = match h.sample_count_float {
                Some(c) if c > 0.0 => format_float(c),
                _ => h.sample_count.unwrap_or(0).to_string(),
            };
            m.insert("count".into(), Value::from(count));
            m.insert("sum".into(), num(h.sample_sum));
        }
        _ => {
            let v = metric
                .gauge
                .as_ref()
                .and_then(|g| g.value)
                .or_else(|| metric.counter.as_ref().and_then(|c| c.value))
                .or_else(|| metric.untyped.as_ref().and_then(|u| u.value));
            m.insert("value".into(), num(v));
        }
    }
    sorted(m)
}

fn family_json(family: &MetricFamily, time_ns: i64) -> Value {
    let mtype = family.metric_type();
    let mut f = Map::new();
    f.insert("time_stamp".into(), Value::from(rfc3339_nano(time_ns)));
    f.insert("type".into(), Value::from(mtype.proto_name()));
    if let Some(help) = family.help.as_deref().filter(|h| !h.is_empty()) {
        f.insert("help".into(), Value::from(help));
    }
    f.insert(
        "metrics".into(),
        Value::Array(family.metric.iter().map(|m| encodable_metric(m, mtype)).collect()),
    );
    Value::Object(f)
}

fn metrics(app: &App) -> Value {
    let groups = app.store.snapshot();
    Value::Array(
        groups
            .iter()
            .map(|(_, group)| {
                let mut obj = BTreeMap::new();
                let mut shadowed = BTreeMap::new();
                for (name, stored) in &group.families {
                    let json = family_json(&stored.family, stored.time_ns);
                    if name == "labels" || name == "last_push_successful" {
                        shadowed.insert(name.clone(), json);
                    } else {
                        obj.insert(name.clone(), json);
                    }
                }
                if !shadowed.is_empty() {
                    obj.insert(SHADOWED_FAMILIES_KEY.into(), sorted(shadowed));
                }
                let labels = group
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                    .collect();
                obj.insert("labels".into(), sorted(labels));
                obj.insert("last_push_successful".into(), Value::from(group.last_push_successful()));
                sorted(obj)
            })
            .collect(),
    )
}

/// serde_json formatting with Go's escaping: `<`, `>`, `&`, U+2028 and U+2029 as `\u` escapes,
/// and control characters other than `\n`, `\r`, `\t` as `\u00XX`.
struct GoFormatter;

impl serde_json::ser::Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, w: &mut W, fragment: &str) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let esc = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            w.write_all(&fragment.as_bytes()[start..i])?;
            w.write_all(esc.as_bytes())?;
            start = i + c.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        escape: serde_json::ser::CharEscape,
    ) -> io::Result<()> {
        use serde_json::ser::CharEscape::*;
        let s = match escape {
            Quote => "\\\"".to_string(),
            ReverseSolidus => "\\\\".to_string(),
            LineFeed => "\\n".to_string(),
            CarriageReturn => "\\r".to_string(),
            Tab => "\\t".to_string(),
            Backspace => "\\u0008".to_string(),
            FormFeed => "\\u000c".to_string(),
            AsciiControl(b) => format!("\\u{b:04x}"),
            Solidus => "/".to_string(),
        };
        w.write_all(s.as_bytes())
    }
}

pub fn to_go_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
    // Serialising a `Value` into memory cannot fail.
    let _ = serde::Serialize::serialize(value, &mut ser);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes_like_go() {
        let v = Value::from("<a&b>\u{2028}\"\\\n\u{1}");
        assert_eq!(
            String::from_utf8(to_go_json(&v)).unwrap(),
            r#""\u003ca\u0026b\u003e\u2028\"\\\n\u0001""#
        );
    }

    #[test]
    fn timestamps_are_rfc3339_nano() {
        assert_eq!(rfc3339_nano(1_500_000_000_123_000_000), "2017-07-14T02:40:00.123Z");
        assert_eq!(rfc3339_nano(1_500_000_000_000_000_000), "2017-07-14T02:40:00Z");
    }
}
