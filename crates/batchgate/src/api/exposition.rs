//! `GET /metrics`: every pushed family merged across groups plus batchgate's own metrics, sorted
//! and formatted exactly as the Pushgateway's `promhttp` handler does, in the text format or
//! delimited protobuf, gzip-compressed when asked.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use batchgate_format::{Metric, MetricFamily, delimited, text};

use super::App;

pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
pub const PROTOBUF_CONTENT_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// client_golang's metric order: fewer labels first, then label values position by position.
/// Ties (same values under other names) are ordered by label names, so output is stable.
fn compare_metrics(a: &Metric, b: &Metric) -> Ordering {
    a.label
        .len()
        .cmp(&b.label.len())
        .then_with(|| a.label.iter().map(|l| &l.value).cmp(b.label.iter().map(|l| &l.value)))
        .then_with(|| a.label.iter().map(|l| &l.name).cmp(b.label.iter().map(|l| &l.name)))
}

/// batchgate's own families (its telemetry and the per-job series): they come first, so a pushed
/// family of the same name takes their help and type.
fn own_families(app: &App) -> Vec<MetricFamily> {
    let mut families = app.telemetry.families();
    families.extend(crate::jobs::metrics::families(&app.jobs.views(jiff::Timestamp::now())));
    families.extend(app.alerts.families());
    families
}

/// The whole exposition, every family merged by name across groups and sorted as client_golang
/// sorts. Merged families borrow their metrics from the groups instead of copying them. The help
/// of a family pushed by several groups is the first group's in grouping-key order (the
/// Pushgateway picks one at random).
pub fn encode(app: &App, protobuf: bool) -> Vec<u8> {
    let own = own_families(app);
    let groups = app.store.snapshot();
    let mut merged: BTreeMap<&str, (&MetricFamily, Vec<&Metric>)> = BTreeMap::new();
    for family in own
        .iter()
        .chain(groups.iter().flat_map(|(_, g)| g.families.values().map(|f| &f.family)))
    {
        let name = family.name.as_deref().unwrap_or_default();
        merged
            .entry(name)
            .or_insert_with(|| (family, Vec::new()))
            .1
            .extend(family.metric.iter());
    }
    let mut body = Vec::with_capacity(1 << 16);
    for (header, mut metrics) in merged.into_values() {
        if metrics.is_empty() {
            continue;
        }
        metrics.sort_by(|a, b| compare_metrics(a, b));
        if protobuf {
            delimited::encode_merged(header, &metrics, &mut body);
        } else {
            text::write_merged(&mut body, header, &metrics);
        }
    }
    body
}

/// promhttp's negotiation: delimited protobuf when the client accepts it, else text 0.0.4.
fn wants_protobuf(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|part| {
            let mut params = part.split(';').map(str::trim);
            params.next() == Some("application/vnd.google.protobuf")
                && params.clone().any(|p| p == "proto=io.prometheus.client.MetricFamily")
                && params.any(|p| p == "encoding=delimited")
        })
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|p| p == "gzip" || p.starts_with("gzip;"))
}

pub async fn serve(app: Arc<App>, headers: &HeaderMap) -> Response {
    let protobuf = wants_protobuf(headers);
    let gzip = accepts_gzip(headers);
    let encoded = tokio::task::spawn_blocking(move || {
        let body = encode(&app, protobuf);
        if gzip {
            let mut enc =
                flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 8), flate2::Compression::fast());
            enc.write_all(&body).and_then(|_| enc.finish())
        } else {
            Ok(body)
        }
    })
    .await;
    let body = match encoded {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot compress the exposition: {e}"),
            )
                .into_response();
        }
        Err(e) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("exposition failed: {e}")).into_response();
        }
    };
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if protobuf {
            PROTOBUF_CONTENT_TYPE
        } else {
            TEXT_CONTENT_TYPE
        }),
    );
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}
