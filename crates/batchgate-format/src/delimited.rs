//! Streams of varint-length-delimited `MetricFamily` messages.
//!
//! Decoding mirrors Pushgateway 1.5.1, which reads the body with `pbutil.ReadDelimited` until
//! `io.EOF` and unmarshals each message with golang/protobuf 1.3: what that accepts is accepted
//! here and its error texts are reproduced. Each message is first re-encoded canonically
//! against the schema (fields with a wrong wire type dropped as Go drops them into unknown
//! fields, strings made valid UTF-8, packed fields unpacked), then handed to prost.

use prost::Message;
use prost::encoding::encode_varint;

use crate::proto::{Metric, MetricFamily};

/// Why a delimited body was rejected. Displays the text the reference answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Input ended inside a message, or inside a field of one.
    #[error("unexpected EOF")]
    UnexpectedEof,
    /// Malformed data, with golang/protobuf's message (e.g. `invalid varint32 encountered`,
    /// `proto: can't skip unknown wire type 7`).
    #[error("{0}")]
    Invalid(String),
    /// The stream holds more metrics than the caller allows (checked before decoding them, so
    /// a small body cannot make a huge allocation).
    #[error("the push holds more than {0} metrics")]
    TooManyMetrics(usize),
}

/// Decodes every message until the end of input. Returns them in input order (duplicates kept;
/// the caller decides which wins).
///
/// Like the reference, a stream that ends inside a length prefix, or right after a prefix
/// announcing a non-empty message, ends cleanly (Go sees `io.EOF` there); a prefix longer than
/// 5 bytes is `invalid varint32 encountered`; a message cut short is
/// [`DecodeError::UnexpectedEof`]. Memory use is bounded by the input size.
pub fn decode(input: &[u8]) -> Result<Vec<MetricFamily>, DecodeError> {
    decode_bounded(input, usize::MAX)
}

/// [`decode`], refusing a stream of more than `max_metrics` metrics before decoding them: a
/// metric can take two bytes on the wire and hundreds in memory.
pub fn decode_bounded(input: &[u8], max_metrics: usize) -> Result<Vec<MetricFamily>, DecodeError> {
    let mut metrics = 0usize;
    let mut rest = input;
    let mut families = Vec::new();
    loop {
        let mut len = 0u64;
        let mut n = 0;
        loop {
            if n == 5 {
                return Err(DecodeError::Invalid("invalid varint32 encountered".into()));
            }
            let Some(&b) = rest.get(n) else {
                return Ok(families);
            };
            len |= u64::from(b & 0x7f) << (7 * n);
            n += 1;
            if b < 0x80 {
                break;
            }
        }
        rest = &rest[n..];
        if len > 0 && rest.is_empty() {
            return Ok(families);
        }
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= rest.len())
            .ok_or(DecodeError::UnexpectedEof)?;
        let (msg, tail) = rest.split_at(len);
        // Malformed framing is left to `sanitize`, which reports it as Go does.
        metrics = metrics.saturating_add(count_metrics(msg).unwrap_or(0));
        if metrics > max_metrics {
            return Err(DecodeError::TooManyMetrics(max_metrics));
        }
        let mut clean = Vec::with_capacity(len);
        sanitize(Msg::Family, msg, &mut clean)?;
        families.push(MetricFamily::decode(clean.as_slice()).map_err(|e| DecodeError::Invalid(e.to_string()))?);
        rest = tail;
    }
}

/// Appends one length-delimited message.
pub fn encode(family: &MetricFamily, out: &mut Vec<u8>) {
    let len = family.encoded_len();
    out.reserve(len + 5);
    encode_varint(len as u64, out);
    // Encoding only fails when the buffer cannot grow, and a Vec always can.
    let _ = family.encode(out);
}

/// Like [`encode`] for a family whose metrics are held elsewhere: `header` gives the name, help,
/// type and unit (its own metrics are ignored). Fields are written in field-number order, as Go
/// writes them.
pub fn encode_merged(header: &MetricFamily, metrics: &[&Metric], out: &mut Vec<u8>) {
    use prost::encoding::{encoded_len_varint, key_len};
    let head = MetricFamily {
        metric: Vec::new(),
        unit: None,
        ..header.clone()
    };
    let metrics_len: usize = metrics
        .iter()
        .map(|m| {
            let len = m.encoded_len();
            key_len(4) + encoded_len_varint(len as u64) + len
        })
        .sum();
    let unit_len = header
        .unit
        .as_ref()
        .map_or(0, |u| prost::encoding::string::encoded_len(5, u));
    let len = head.encoded_len() + metrics_len + unit_len;
    out.reserve(len + 5);
    encode_varint(len as u64, out);
    // Encoding into a Vec cannot fail.
    let _ = head.encode(out);
    for m in metrics {
        prost::encoding::message::encode(4, *m, out);
    }
    if let Some(unit) = &header.unit {
        prost::encoding::string::encode(5, unit, out);
    }
}

/// The messages of `metrics.proto`.
#[derive(Debug, Clone, Copy)]
enum Msg {
    Family,
    Metric,
    LabelPair,
    Gauge,
    Counter,
    Quantile,
    Summary,
    Untyped,
    Histogram,
    Bucket,
    BucketSpan,
    Exemplar,
    Timestamp,
}

#[derive(Debug, Clone, Copy)]
enum Field {
    Varint,
    /// Go decodes zigzag from the 64-bit varint before truncating; prost truncates first.
    Sint32,
    Double,
    Bytes,
    Message(Msg),
    RepeatedVarint,
    RepeatedDouble,
}

impl Field {
    fn accepts(self, wire: u8) -> bool {
        match self {
            Field::Varint | Field::Sint32 => wire == 0,
            Field::Double => wire == 1,
            Field::Bytes | Field::Message(_) => wire == 2,
            Field::RepeatedVarint => wire == 0 || wire == 2,
            Field::RepeatedDouble => wire == 1 || wire == 2,
        }
    }
}

impl Msg {
    /// The Go type golang/protobuf names in its errors.
    fn go_name(self) -> &'static str {
        match self {
            Msg::Family => "io_prometheus_client.MetricFamily",
            Msg::Metric => "io_prometheus_client.Metric",
            Msg::LabelPair => "io_prometheus_client.LabelPair",
            Msg::Gauge => "io_prometheus_client.Gauge",
            Msg::Counter => "io_prometheus_client.Counter",
            Msg::Quantile => "io_prometheus_client.Quantile",
            Msg::Summary => "io_prometheus_client.Summary",
            Msg::Untyped => "io_prometheus_client.Untyped",
            Msg::Histogram => "io_prometheus_client.Histogram",
            Msg::Bucket => "io_prometheus_client.Bucket",
            Msg::BucketSpan => "io_prometheus_client.BucketSpan",
            Msg::Exemplar => "io_prometheus_client.Exemplar",
            Msg::Timestamp => "timestamp.Timestamp",
        }
    }

    /// A field's type, and whether the reference (client_model 0.3) knows it. Fields it does
    /// not know (unit, created timestamps, native-histogram exemplars) it keeps as raw bytes.
    fn field(self, tag: u64) -> Option<(Field, bool)> {
        use Field::*;
        let f = match (self, tag) {
            (Msg::Family, 5) => return Some((Bytes, false)),
            (Msg::Counter, 3) | (Msg::Summary, 4) | (Msg::Histogram, 15) => {
                return Some((Message(Msg::Timestamp), false));
            }
            (Msg::Histogram, 16) => return Some((Message(Msg::Exemplar), false)),
            (Msg::Family, 1 | 2) | (Msg::LabelPair, 1 | 2) => Bytes,
            (Msg::Histogram, 5) | (Msg::BucketSpan, 1) => Sint32,
            (Msg::Family, 3) | (Msg::BucketSpan, 2) | (Msg::Timestamp, 2) => Varint,
            (Msg::Family, 4) => Message(Msg::Metric),
            (Msg::Metric, 1) | (Msg::Exemplar, 1) => Message(Msg::LabelPair),
            (Msg::Metric, 2) => Message(Msg::Gauge),
            (Msg::Metric, 3) => Message(Msg::Counter),
            (Msg::Metric, 4) => Message(Msg::Summary),
            (Msg::Metric, 5) => Message(Msg::Untyped),
            (Msg::Metric, 7) => Message(Msg::Histogram),
            (Msg::Metric, 6) | (Msg::Summary | Msg::Histogram | Msg::Bucket, 1) => Varint,
            (Msg::Histogram, 7) | (Msg::Timestamp, 1) => Varint,
            (Msg::Gauge | Msg::Untyped | Msg::Counter | Msg::Quantile, 1) => Double,
            (Msg::Quantile | Msg::Summary | Msg::Histogram | Msg::Bucket | Msg::Exemplar, 2) => Double,
            (Msg::Histogram | Msg::Bucket, 4) | (Msg::Histogram, 6 | 8) => Double,
            (Msg::Counter, 2) | (Msg::Bucket, 3) => Message(Msg::Exemplar),
            (Msg::Summary, 3) => Message(Msg::Quantile),
            (Msg::Histogram, 3) => Message(Msg::Bucket),
            (Msg::Histogram, 9 | 12) => Message(Msg::BucketSpan),
            (Msg::Histogram, 10 | 13) => RepeatedVarint,
            (Msg::Histogram, 11 | 14) => RepeatedDouble,
            (Msg::Exemplar, 3) => Message(Msg::Timestamp),
            _ => return None,
        };
        Some((f, true))
    }
}

/// Re-encodes the fields of one message of type `ty` into `out`, with golang/protobuf 1.3's
/// acceptance rules and errors.
fn sanitize(ty: Msg, mut b: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
    while !b.is_empty() {
        let key = varint(&mut b)?;
        let (tag, wire) = (key >> 3, (key & 7) as u8);
        if tag == 0 {
            return Err(DecodeError::Invalid(format!(
                "proto: {}: illegal tag 0 (wire type {wire})",
                ty.go_name()
            )));
        }
        match ty.field(tag) {
            Some((field, true)) if field.accepts(wire) => copy_field(field, tag, wire, &mut b, out)?,
            Some((field, false)) if field.accepts(wire) => {
                // Unknown to the reference, which only checks its framing and keeps the bytes.
                // Keep it if it is valid in the newer schema; drop it otherwise.
                let mut raw = b;
                skip(wire, &mut b)?;
                let mut tmp = Vec::new();
                if copy_field(field, tag, wire, &mut raw, &mut tmp).is_ok() {
                    out.extend_from_slice(&tmp);
                }
            }
            // Unknown field or wrong wire type: Go keeps it as unknown bytes, prost cannot.
            _ => skip(wire, &mut b)?,
        }
    }
    Ok(())
}

fn copy_field(field: Field, tag: u64, wire: u8, b: &mut &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
    let key = |out: &mut Vec<u8>, wire: u64| encode_varint(tag << 3 | wire, out);
    match field {
        Field::Varint | Field::Sint32 | Field::RepeatedVarint if wire == 0 => {
            let mut v = varint(b)?;
            if matches!(field, Field::Sint32) {
                let go = ((v >> 1) as i32) ^ -((v & 1) as i32);
                v = u64::from(((go << 1) ^ (go >> 31)) as u32);
            }
            key(out, 0);
            encode_varint(v, out);
        }
        Field::Double | Field::RepeatedDouble if wire == 1 => {
            let v = take(b, 8)?;
            key(out, 1);
            out.extend_from_slice(v);
        }
        Field::RepeatedVarint => {
            let mut packed = length_delimited(b)?;
            while !packed.is_empty() {
                let v = varint(&mut packed)?;
                key(out, 0);
                encode_varint(v, out);
            }
        }
        Field::RepeatedDouble => {
            let mut packed = length_delimited(b)?;
            while !packed.is_empty() {
                let v = take(&mut packed, 8)?;
                key(out, 1);
                out.extend_from_slice(v);
            }
        }
        Field::Bytes => {
            // proto2 strings are not validated by Go (it refuses invalid UTF-8 label values only
            // later, when gathering); batchgate stores UTF-8 only and refuses them here.
            let raw = length_delimited(b)?;
            let s = std::str::from_utf8(raw).map_err(|_| {
                DecodeError::Invalid(format!(
                    "invalid UTF-8 in a string field: {:?}; names, label values and help must be UTF-8",
                    String::from_utf8_lossy(raw)
                ))
            })?;
            key(out, 2);
            encode_varint(s.len() as u64, out);
            out.extend_from_slice(s.as_bytes());
        }
        Field::Message(msg) => {
            let mut inner = Vec::new();
            sanitize(msg, length_delimited(b)?, &mut inner)?;
            key(out, 2);
            encode_varint(inner.len() as u64, out);
            out.extend_from_slice(&inner);
        }
        // Wire types `accepts` rejects never get here; skip them all the same.
        Field::Varint | Field::Sint32 | Field::Double => skip(wire, b)?,
    }
    Ok(())
}

/// The `metric` fields (tag 4) of one `MetricFamily` message, without decoding them.
fn count_metrics(mut b: &[u8]) -> Result<usize, DecodeError> {
    let mut n = 0;
    while !b.is_empty() {
        let key = varint(&mut b)?;
        if key == 4 << 3 | 2 {
            n += 1;
        }
        skip((key & 7) as u8, &mut b)?;
    }
    Ok(n)
}

/// golang/protobuf's `skipField`.
fn skip(wire: u8, b: &mut &[u8]) -> Result<(), DecodeError> {
    match wire {
        0 => drop(varint(b)?),
        1 => drop(take(b, 8)?),
        2 => drop(length_delimited(b)?),
        3 => skip_group(b)?,
        5 => drop(take(b, 4)?),
        _ => {
            return Err(DecodeError::Invalid(format!(
                "proto: can't skip unknown wire type {wire}"
            )));
        }
    }
    Ok(())
}

/// golang/protobuf's `findEndGroup`: counts nesting only (end tags need not match), and any
/// problem inside reads as a truncated input.
fn skip_group(b: &mut &[u8]) -> Result<(), DecodeError> {
    let mut depth = 1usize;
    loop {
        match varint(b)? & 7 {
            0 => drop(varint(b)?),
            1 => drop(take(b, 8)?),
            2 => drop(length_delimited(b)?),
            3 => depth += 1,
            4 => {
                depth -= 1;
                if depth == 0 {
                    return Ok(());
                }
            }
            5 => drop(take(b, 4)?),
            _ => return Err(DecodeError::UnexpectedEof),
        }
    }
}

/// golang/protobuf's `decodeVarint`: at most 10 bytes, the 10th below 2.
fn varint(b: &mut &[u8]) -> Result<u64, DecodeError> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        if i == 9 && byte >= 2 {
            break;
        }
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            *b = &b[i + 1..];
            return Ok(v);
        }
    }
    Err(DecodeError::UnexpectedEof)
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], DecodeError> {
    if b.len() < n {
        return Err(DecodeError::UnexpectedEof);
    }
    let (head, tail) = b.split_at(n);
    *b = tail;
    Ok(head)
}

fn length_delimited<'a>(b: &mut &'a [u8]) -> Result<&'a [u8], DecodeError> {
    let len = varint(b)?;
    let len = usize::try_from(len).map_err(|_| DecodeError::UnexpectedEof)?;
    take(b, len)
}

#[cfg(test)]
mod merged_tests {
    use super::*;
    use crate::proto::{Gauge, LabelPair};

    #[test]
    fn encode_merged_equals_encoding_the_whole_family() {
        let metric = |v: f64| Metric {
            label: vec![LabelPair::new("a", v.to_string())],
            gauge: Some(Gauge { value: Some(v) }),
            ..Default::default()
        };
        let family = MetricFamily {
            name: Some("m".into()),
            help: Some("help".into()),
            r#type: Some(1),
            metric: vec![metric(1.0), metric(2.0)],
            unit: Some("seconds".into()),
        };
        let mut whole = Vec::new();
        encode(&family, &mut whole);
        let mut merged = Vec::new();
        let header = MetricFamily {
            metric: vec![metric(9.0)],
            ..family.clone()
        };
        encode_merged(&header, &family.metric.iter().collect::<Vec<_>>(), &mut merged);
        assert_eq!(merged, whole);
        assert_eq!(decode(&merged).unwrap(), vec![family]);
    }

    #[test]
    fn decode_bounded_refuses_many_metrics_before_decoding_them() {
        // One family holding 1000 empty metrics: 2 bytes each on the wire.
        let mut msg = vec![0x0a, 0x01, b'm'];
        for _ in 0..1000 {
            msg.extend_from_slice(&[0x22, 0x00]);
        }
        let mut body = Vec::new();
        encode_varint(msg.len() as u64, &mut body);
        body.extend_from_slice(&msg);
        assert_eq!(decode_bounded(&body, 999), Err(DecodeError::TooManyMetrics(999)));
        assert_eq!(decode_bounded(&body, 1000).map(|f| f[0].metric.len()), Ok(1000));
    }
}
