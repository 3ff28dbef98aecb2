//! The push URL: `/metrics/job/<JOB>{/<LABEL>/<VALUE>}`, escaped so that every value arrives
//! unchanged at batchgate and at the Pushgateway.
//!
//! A value made only of `[A-Za-z0-9_.~-]` (and not `.` or `..`, which HTTP path cleaning would
//! remove) is written as is. Every other value, the empty one included, is written as
//! `<LABEL>@base64/<URL-safe base64 without padding>` (`=` for the empty value), the form both
//! gateways decode. Percent-encoding is avoided on purpose: `%2F` splits a path segment on the
//! Pushgateway, `+` is not a space there, and proxies normalise percent-escapes differently.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::{Error, Result};

/// Label names the client sets itself and so refuses as grouping labels.
const RESERVED: [(&str, &str); 3] = [
    ("job", "the job is the first part of the grouping key; use the job name"),
    ("job_name", "set by the client on every series from the job name"),
    ("status", "used by the client on the status series"),
];

/// Whether `value` can be written into a path segment as is.
fn is_plain(value: &str) -> bool {
    !value.is_empty()
        && value != "."
        && value != ".."
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'~' | b'-'))
}

/// Appends `/<name>/<value>` or `/<name>@base64/<encoded>`.
fn push_segment(out: &mut String, name: &str, value: &str) {
    out.push('/');
    out.push_str(name);
    if is_plain(value) {
        out.push('/');
        out.push_str(value);
    } else if value.is_empty() {
        out.push_str("@base64/=");
    } else {
        out.push_str("@base64/");
        out.push_str(&URL_SAFE_NO_PAD.encode(value));
    }
}

/// Checks a grouping label name as the Pushgateway does (legacy names, no `__` prefix), plus the
/// names this client uses itself.
pub(crate) fn validate_label_name(name: &str) -> Result<()> {
    let invalid = |reason| {
        Err(Error::InvalidLabelName {
            name: name.to_string(),
            reason,
        })
    };
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    if !first_ok || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return invalid("a label name must match [a-zA-Z_][a-zA-Z0-9_]*");
    }
    if name.starts_with("__") {
        return invalid("names starting with __ are reserved");
    }
    if let Some((_, reason)) = RESERVED.iter().find(|(n, _)| *n == name) {
        return invalid(reason);
    }
    Ok(())
}

/// Normalises the gateway URL (adds `http://` when there is no scheme, drops a trailing `/`)
/// and checks it: plain `http` only.
pub(crate) fn base_url(gateway: &str) -> Result<String> {
    let invalid = |reason: String| Error::InvalidGatewayUrl {
        url: gateway.to_string(),
        reason,
    };
    let trimmed = gateway.trim();
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_string()
    } else {
        format!("http://{trimmed}")
    };
    let url = reqwest::Url::parse(&with_scheme).map_err(|e| invalid(e.to_string()))?;
    match url.scheme() {
        "http" => {}
        // The client is built without TLS (plain HTTP, or TLS terminated by a proxy or sidecar).
        "https" => return Err(invalid("https is not supported by this build: use http://".to_string())),
        other => return Err(invalid(format!("scheme {other:?} is not http"))),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host".to_string()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("a query or fragment is not allowed".to_string()));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// The full push URL of a job and its grouping labels.
pub(crate) fn push_url(gateway: &str, job: &str, labels: &BTreeMap<String, String>) -> Result<String> {
    if job.is_empty() {
        return Err(Error::EmptyJobName);
    }
    for name in labels.keys() {
        validate_label_name(name)?;
    }
    let mut url = base_url(gateway)?;
    url.push_str("/metrics");
    push_segment(&mut url, "job", job);
    for (name, value) in labels {
        push_segment(&mut url, name, value);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(job: &str, labels: &[(&str, &str)]) -> String {
        let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        push_url("http://gw:9091", job, &labels).expect("valid")
    }

    #[test]
    fn plain_values_are_written_as_is() {
        assert_eq!(
            url("ef-update", &[("instance", "worker-1.a_b~c")]),
            "http://gw:9091/metrics/job/ef-update/instance/worker-1.a_b~c"
        );
    }

    #[test]
    fn awkward_values_use_base64() {
        assert_eq!(url("j", &[("a", "")]), "http://gw:9091/metrics/job/j/a@base64/=");
        assert_eq!(
            url("j", &[("path", "/var/tmp")]),
            "http://gw:9091/metrics/job/j/path@base64/L3Zhci90bXA"
        );
        assert_eq!(url("j", &[("a", ".")]), "http://gw:9091/metrics/job/j/a@base64/Lg");
        assert_eq!(url("j", &[("a", "..")]), "http://gw:9091/metrics/job/j/a@base64/Li4");
        assert_eq!(url("a b", &[]), "http://gw:9091/metrics/job@base64/YSBi");
        // URL-safe alphabet: `?>` would be `Pz4` in both, `??>` is `Pz8-` URL-safe, `Pz8+` standard.
        assert_eq!(url("j", &[("a", "??>")]), "http://gw:9091/metrics/job/j/a@base64/Pz8-");
    }

    #[test]
    fn labels_are_sorted() {
        assert_eq!(
            url("j", &[("b", "2"), ("a", "1")]),
            "http://gw:9091/metrics/job/j/a/1/b/2"
        );
    }

    #[test]
    fn gateway_urls_are_normalised() {
        assert_eq!(base_url("gw:9091").unwrap(), "http://gw:9091");
        assert_eq!(base_url("http://gw:9091/").unwrap(), "http://gw:9091");
        assert_eq!(base_url("http://gw/prefix/").unwrap(), "http://gw/prefix");
        assert!(base_url("https://gw").is_err());
        assert!(base_url("ftp://gw").is_err());
        assert!(base_url("http://gw/?a=b").is_err());
        assert!(base_url("http://").is_err());
    }

    #[test]
    fn bad_label_names_are_refused() {
        for name in ["", "1a", "a-b", "__x", "job", "job_name", "status", "ü"] {
            assert!(validate_label_name(name).is_err(), "{name:?} accepted");
        }
        for name in ["instance", "_a", "A1_b"] {
            validate_label_name(name).expect(name);
        }
    }

    #[test]
    fn empty_job_is_refused() {
        assert!(matches!(
            push_url("http://gw", "", &BTreeMap::new()),
            Err(Error::EmptyJobName)
        ));
    }
}
