//! `PUT`/`POST`/`DELETE /metrics/job/<JOB>{/<LABEL>/<VALUE>}`: grouping keys from the URL,
//! request bodies (text, delimited protobuf; gzip, framed snappy), limits, and the answers the
//! Pushgateway gives.

use std::io::Read;
use std::time::Instant;

use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use batchgate_format::{MetricFamily, delimited, text};
use bytes::Bytes;

use super::{App, plain};
use crate::store::consistency::is_label_name;
use crate::store::{Labels, PushError, WriteKind, WriteRequest};

/// Limits on what one push may carry; each has a flag of the same name.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_series: usize,
    pub max_labels_per_series: usize,
    pub max_label_value_length: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 32 << 20,
            max_series: 100_000,
            max_labels_per_series: 64,
            max_label_value_length: 16_384,
        }
    }
}

/// A push or delete as addressed by its URL.
pub struct PushTarget<'a> {
    /// The job segment as it appears in the (decoded) path.
    pub job: &'a str,
    pub job_base64: bool,
    /// Everything after the job segment, starting with `/` (or empty).
    pub labels: &'a str,
}

/// Go's `base64.RawURLEncoding` decoder (lenient about trailing bits, `\r`/`\n` skipped), with
/// its error text, so 400 answers read exactly like the Pushgateway's. On error it also returns
/// what Go returns: the bytes of the complete quanta before the bad one.
fn decode_base64(s: &str) -> Result<Vec<u8>, (Vec<u8>, String)> {
    let input = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let mut quantum = [0u8; 4];
    let mut n = 0;
    let mut quantum_start = 0;
    for (i, &c) in input.iter().enumerate() {
        if c == b'\r' || c == b'\n' {
            continue;
        }
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return Err((out, format!("illegal base64 data at input byte {i}"))),
        };
        if n == 0 {
            quantum_start = i;
        }
        quantum[n] = v;
        n += 1;
        if n == 4 {
            out.push(quantum[0] << 2 | quantum[1] >> 4);
            out.push(quantum[1] << 4 | quantum[2] >> 2);
            out.push(quantum[2] << 6 | quantum[3]);
            n = 0;
        }
    }
    match n {
        0 => {}
        1 => return Err((out, format!("illegal base64 data at input byte {quantum_start}"))),
        2 => out.push(quantum[0] << 2 | quantum[1] >> 4),
        _ => {
            out.push(quantum[0] << 2 | quantum[1] >> 4);
            out.push(quantum[1] << 4 | quantum[2] >> 2);
        }
    }
    Ok(out)
}

/// Bytes quoted as Go's `%q` quotes a string: invalid UTF-8 as `\xNN`.
fn go_quote(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid().escape_debug().to_string().as_str());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push('"');
    out
}

/// The grouping labels of a request, `job` included.
#[derive(Debug)]
pub struct GroupingKey {
    pub labels: Labels,
    /// The first label whose (base64-decoded) value is not UTF-8, and that value quoted: such a
    /// push is refused, as the Pushgateway refuses it, and no such group can exist.
    pub not_utf8: Option<(String, String)>,
}

fn utf8_value(name: &str, bytes: Vec<u8>, not_utf8: &mut Option<(String, String)>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| {
        not_utf8.get_or_insert_with(|| (name.to_string(), go_quote(e.as_bytes())));
        String::from_utf8_lossy(e.as_bytes()).into_owned()
    })
}

/// The grouping key of a request, or the Pushgateway's 400 text.
pub fn grouping_labels(target: &PushTarget) -> Result<GroupingKey, String> {
    let mut not_utf8 = None;
    let job = if target.job_base64 {
        let bytes = decode_base64(target.job)
            .map_err(|(partial, e)| format!("invalid base64 encoding in job name {}: {e}", go_quote(&partial)))?;
        utf8_value("job", bytes, &mut not_utf8)
    } else {
        target.job.to_string()
    };
    if job.is_empty() {
        return Err("job name is required".into());
    }
    let mut labels = Labels::new();
    if target.labels.len() > 1 {
        let components: Vec<&str> = target.labels[1..].split('/').collect();
        if !components.len().is_multiple_of(2) {
            return Err(format!("odd number of components in label string {:?}", target.labels));
        }
        for pair in components.chunks(2) {
            let (name, value) = (pair[0], pair[1]);
            let trimmed = name.strip_suffix("@base64").unwrap_or(name);
            if !is_label_name(trimmed) {
                return Err(format!("improper label name {trimmed:?}"));
            }
            let value = if trimmed == name {
                value.to_string()
            } else {
                let bytes = decode_base64(value)
                    .map_err(|(_, e)| format!("invalid base64 encoding for label {trimmed}={value:?}: {e}"))?;
                utf8_value(trimmed, bytes, &mut not_utf8)
            };
            labels.insert(trimmed.to_string(), value);
        }
    }
    labels.insert("job".into(), job);
    // A later `job` label in the path is overwritten by the job; so is its validity.
    if not_utf8.as_ref().is_some_and(|(n, _)| n == "job") && !target.job_base64 {
        not_utf8 = None;
    }
    Ok(GroupingKey { labels, not_utf8 })
}

/// The 413 answer for a body over `--push.max-body-bytes`.
pub fn too_large(limit: usize) -> Response {
    plain(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "request body exceeds the limit of {limit} bytes (--push.max-body-bytes); nothing was stored: \
             split the push into several groups or raise the limit"
        ),
    )
}

/// Reads at most `limit + 1` bytes of a decompressing reader.
fn read_limited(reader: impl Read, limit: usize) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    reader.take((limit as u64).saturating_add(1)).read_to_end(&mut out)?;
    Ok(out)
}

/// Undoes `Content-Encoding: gzip` or `snappy` (framed), matched case-insensitively as
/// Pushgateway ≥ 1.6 does. The decompressed size is bounded by the body limit too.
fn decode_body(headers: &HeaderMap, body: Bytes, limit: usize) -> Result<Bytes, Box<Response>> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_lowercase();
    let decoded = match encoding.as_str() {
        "gzip" => {
            if body.is_empty() {
                return Err(Box::new(plain(StatusCode::BAD_REQUEST, "EOF")));
            }
            if body.len() < 10 {
                return Err(Box::new(plain(StatusCode::BAD_REQUEST, "unexpected EOF")));
            }
            if body[0] != 0x1f || body[1] != 0x8b || body[2] != 8 {
                return Err(Box::new(plain(StatusCode::BAD_REQUEST, "gzip: invalid header")));
            }
            read_limited(flate2::read::MultiGzDecoder::new(&body[..]), limit).map_err(|e| {
                // Go reports a stream cut short as `unexpected EOF`.
                let msg = if e.kind() == std::io::ErrorKind::UnexpectedEof || e.to_string().contains("incomplete") {
                    "unexpected EOF".to_string()
                } else {
                    format!("gzip: {e}")
                };
                Box::new(plain(StatusCode::BAD_REQUEST, msg))
            })?
        }
        "snappy" => read_limited(snap::read::FrameDecoder::new(&body[..]), limit)
            .map_err(|e| Box::new(plain(StatusCode::BAD_REQUEST, format!("snappy: {e}"))))?,
        _ => return Ok(body),
    };
    if decoded.len() > limit {
        return Err(Box::new(too_large(limit)));
    }
    Ok(Bytes::from(decoded))
}

/// The delimited-protobuf content type, parsed as Go's `mime.ParseMediaType` would.
fn is_protobuf(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut parts = ct.split(';');
    let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let (mut proto, mut encoding) = (None, None);
    for param in parts {
        let Some((k, v)) = param.split_once('=') else {
            return false;
        };
        let v = v.trim().trim_matches('"');
        match k.trim().to_ascii_lowercase().as_str() {
            "proto" => proto = Some(v.to_string()),
            "encoding" => encoding = Some(v.to_string()),
            _ => {}
        }
    }
    media == "application/vnd.google.protobuf"
        && encoding.as_deref() == Some("delimited")
        && proto.as_deref() == Some("io.prometheus.client.MetricFamily")
}

/// The body's families, or why not. A body holding more series than `--push.max-series` is
/// refused before its series are decoded, so memory stays bounded by the limits.
fn parse_body(headers: &HeaderMap, body: &[u8], limits: &Limits) -> Result<Vec<MetricFamily>, String> {
    if is_protobuf(headers) {
        return delimited::decode_bounded(body, limits.max_series).map_err(|e| match e {
            delimited::DecodeError::TooManyMetrics(_) => series_limit(limits, None),
            e => e.to_string(),
        });
    }
    // Every sample is one line that is neither blank nor a comment.
    let lines = body
        .split(|b| *b == b'\n')
        .filter(|l| l.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|b| *b != b'#'))
        .count();
    if lines > limits.max_series {
        return Err(series_limit(limits, Some(lines)));
    }
    text::parse(body).map_err(|e| e.to_string())
}

fn series_limit(limits: &Limits, series: Option<usize>) -> String {
    let held = series.map_or_else(|| "more".to_string(), |n| n.to_string());
    format!(
        "the push holds {held} series, over the limit of {} series per push (--push.max-series); \
         split it into several pushes or raise the limit",
        limits.max_series
    )
}

/// Samples a family exposes: what `--push.max-series` counts.
fn samples(family: &MetricFamily) -> usize {
    family
        .metric
        .iter()
        .map(|m| {
            if let Some(s) = &m.summary {
                s.quantile.len() + 2
            } else if let Some(h) = &m.histogram {
                h.bucket.len() + 3
            } else {
                1
            }
        })
        .sum()
}

fn check_limits(limits: &Limits, grouping: &Labels, families: &[MetricFamily]) -> Result<(), String> {
    let series: usize = families.iter().map(samples).sum();
    if series > limits.max_series {
        return Err(series_limit(limits, Some(series)));
    }
    let value_too_long = |v: &str| v.len() > limits.max_label_value_length;
    let value_error = |name: &str| {
        format!(
            "label {name:?} has a value longer than {} bytes (--push.max-label-value-length); shorten it or raise the limit",
            limits.max_label_value_length
        )
    };
    if let Some((name, _)) = grouping.iter().find(|(_, v)| value_too_long(v)) {
        return Err(value_error(name));
    }
    for family in families {
        for metric in &family.metric {
            // Grouping labels and `instance` are added to every series when it is stored.
            let extra = grouping
                .keys()
                .filter(|g| !metric.label.iter().any(|l| l.name.as_ref() == Some(g)))
                .count();
            let count = metric.label.len() + extra + usize::from(!grouping.contains_key("instance"));
            if count > limits.max_labels_per_series {
                return Err(format!(
                    "a series of {:?} would have {count} labels, over the limit of {} labels per series \
                     (--push.max-labels-per-series); drop labels or raise the limit",
                    family.name.as_deref().unwrap_or(""),
                    limits.max_labels_per_series
                ));
            }
            if let Some(l) = metric
                .label
                .iter()
                .find(|l| value_too_long(l.value.as_deref().unwrap_or("")))
            {
                return Err(value_error(l.name.as_deref().unwrap_or("")));
            }
        }
    }
    Ok(())
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// PUT (replace the group) or POST (replace the pushed families).
pub async fn push(app: &App, method: &Method, target: PushTarget<'_>, headers: &HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
    let received = body.len();
    let limit = app.limits.max_body_bytes;
    let body = match decode_body(headers, body, limit) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let key = match grouping_labels(&target) {
        Ok(k) => k,
        Err(e) => return plain(StatusCode::BAD_REQUEST, e),
    };
    let families = match parse_body(headers, &body, &app.limits) {
        Ok(f) => f,
        Err(e) => {
            tracing::debug!(error = %e, "failed to parse a push body");
            return plain(StatusCode::BAD_REQUEST, e);
        }
    };
    if let Some((name, value)) = key.not_utf8 {
        return plain(
            StatusCode::BAD_REQUEST,
            format!(
                "pushed metrics are invalid or inconsistent with existing metrics: grouping label {name:?} has a \
                 value that is not UTF-8: {value}; base64-encode the UTF-8 bytes of the value"
            ),
        );
    }
    let labels = key.labels;
    if let Err(e) = check_limits(&app.limits, &labels, &families) {
        return plain(StatusCode::BAD_REQUEST, e);
    }
    let replace = method == Method::PUT;
    let request = WriteRequest {
        labels,
        time_ns: now_ns(),
        kind: WriteKind::Push { families, replace },
    };
    let response = match app.store.write(request).await {
        Ok(()) => StatusCode::OK.into_response_empty(),
        Err(e) => write_error(e),
    };
    app.telemetry
        .observe_push(method.as_str(), started.elapsed().as_secs_f64(), received);
    response
}

/// DELETE: removes exactly the addressed group.
pub async fn delete(app: &App, target: PushTarget<'_>) -> Response {
    let labels = match grouping_labels(&target) {
        // No group with such a key can exist: deleting it is the no-op it is in the Pushgateway.
        Ok(GroupingKey { not_utf8: Some(_), .. }) => return StatusCode::ACCEPTED.into_response_empty(),
        Ok(k) => k.labels,
        Err(e) => return plain(StatusCode::BAD_REQUEST, e),
    };
    match app
        .store
        .write(WriteRequest {
            labels,
            time_ns: now_ns(),
            kind: WriteKind::Delete,
        })
        .await
    {
        Ok(()) => StatusCode::ACCEPTED.into_response_empty(),
        Err(e) => write_error(e),
    }
}

/// `PUT /api/v1/admin/wipe`: deletes every group in one commit.
pub async fn wipe(app: &App) -> Response {
    match app
        .store
        .write(WriteRequest {
            labels: Labels::new(),
            time_ns: now_ns(),
            kind: WriteKind::Wipe,
        })
        .await
    {
        Ok(()) => StatusCode::ACCEPTED.into_response_empty(),
        Err(e) => write_error(e),
    }
}

fn write_error(e: PushError) -> Response {
    match e {
        PushError::Rejected(reason) => {
            tracing::error!(error = %reason, "pushed metrics are invalid or inconsistent with existing metrics");
            plain(
                StatusCode::BAD_REQUEST,
                format!("pushed metrics are invalid or inconsistent with existing metrics: {reason}"),
            )
        }
        PushError::Storage(reason) => plain(StatusCode::INTERNAL_SERVER_ERROR, reason),
        PushError::ShuttingDown => plain(StatusCode::SERVICE_UNAVAILABLE, PushError::ShuttingDown.to_string()),
        e @ PushError::TooManyGroups(_) => plain(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

trait EmptyResponse {
    fn into_response_empty(self) -> Response;
}

impl EmptyResponse for StatusCode {
    fn into_response_empty(self) -> Response {
        let mut r = Response::new(axum::body::Body::empty());
        *r.status_mut() = self;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(job: &str, job_base64: bool, labels: &str) -> Result<Vec<(String, String)>, String> {
        grouping_labels(&PushTarget {
            job,
            job_base64,
            labels,
        })
        .map(|k| k.labels.into_iter().collect())
    }

    #[test]
    fn grouping_key_rules() {
        let kv = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
        };
        assert_eq!(key("j", false, "/a/").unwrap(), kv(&[("a", ""), ("job", "j")]));
        assert_eq!(key("x", false, "/").unwrap(), kv(&[("job", "x")]));
        assert_eq!(key("ja", false, "/job/jb").unwrap(), kv(&[("job", "ja")]));
        assert_eq!(key("j", false, "/x/1/x/2").unwrap(), kv(&[("job", "j"), ("x", "2")]));
        assert_eq!(
            key("d", false, "/path@base64/L3Zhci90bXA=").unwrap(),
            kv(&[("job", "d"), ("path", "/var/tmp")])
        );
        assert_eq!(key("d", false, "/e@base64/=").unwrap(), kv(&[("e", ""), ("job", "d")]));
        assert_eq!(key("dGVzdC9qb2I=", true, "").unwrap(), kv(&[("job", "test/job")]));
        assert_eq!(
            key("j", false, "/a/b/").unwrap_err(),
            r#"odd number of components in label string "/a/b/""#
        );
        assert_eq!(key("j", false, "/a-b/1").unwrap_err(), r#"improper label name "a-b""#);
        assert_eq!(key("j", false, "/__a/1").unwrap_err(), r#"improper label name "__a""#);
        assert_eq!(key("=", true, "").unwrap_err(), "job name is required");
        assert_eq!(
            key("j", false, "/a@base64/foo.bar").unwrap_err(),
            r#"invalid base64 encoding for label a="foo.bar": illegal base64 data at input byte 3"#
        );
        assert_eq!(
            key("a+b", true, "").unwrap_err(),
            r#"invalid base64 encoding in job name "": illegal base64 data at input byte 1"#
        );
        // Go quotes what it decoded before the error.
        assert_eq!(
            key("Zm9vY", true, "").unwrap_err(),
            r#"invalid base64 encoding in job name "foo": illegal base64 data at input byte 4"#
        );
        let k = grouping_labels(&PushTarget {
            job: "Qmr2cm4",
            job_base64: true,
            labels: "",
        })
        .unwrap();
        assert_eq!(k.not_utf8, Some(("job".to_string(), r#""Bj\xf6rn""#.to_string())));
    }

    #[test]
    fn bodies_over_the_series_limit_are_refused_before_decoding() {
        let limits = Limits {
            max_series: 3,
            ..Limits::default()
        };
        let text = HeaderMap::new();
        // Comments and blank lines do not count; sample lines do.
        assert!(parse_body(&text, b"# HELP a x\n# TYPE a gauge\n\na 1\nb 1\nc 1\n", &limits).is_ok());
        let err = parse_body(&text, b"a 1\nb 1\nc 1\nd 1\n", &limits).unwrap_err();
        assert!(err.contains("--push.max-series"), "{err}");
        let mut pb = HeaderMap::new();
        pb.insert(
            header::CONTENT_TYPE,
            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
                .parse()
                .unwrap(),
        );
        // One family `m` with four empty metrics (two bytes each on the wire).
        let body = [11, 0x0a, 1, b'm', 0x22, 0, 0x22, 0, 0x22, 0, 0x22, 0];
        let err = parse_body(&pb, &body, &limits).unwrap_err();
        assert!(err.contains("--push.max-series"), "{err}");
    }

    #[test]
    fn base64_matches_go() {
        assert_eq!(decode_base64("L3Zhci90bXA").unwrap(), b"/var/tmp");
        assert_eq!(decode_base64("L3Zhci90bXA==").unwrap(), b"/var/tmp");
        assert_eq!(decode_base64("QQ").unwrap(), b"A");
        assert_eq!(
            decode_base64("QUJDR").unwrap_err(),
            (b"ABC".to_vec(), "illegal base64 data at input byte 4".into())
        );
    }
}
