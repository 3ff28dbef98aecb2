//! Sending alerts: to Alertmanager (API v2) and to plain webhooks (the Alertmanager webhook payload).
//!
//! Each receiver has its own task fed through a `watch` channel holding the latest batch, so a slow
//! or failing receiver never holds up another one, the evaluation loop, or pushes: it only ever
//! retries (with exponential backoff) the newest batch. An Alertmanager that was down gets every
//! firing alert at the first attempt after it is back.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use batchgate_format::proto::{Counter, Gauge};
use batchgate_format::{LabelPair, Metric, MetricFamily, MetricType};
use jiff::Timestamp;
use serde::Serialize;
use tokio::sync::watch;

use super::engine::{ActiveAlert, AlertState, Outgoing};
use super::rules::{AlertName, Labels};

/// How alerts are delivered. `Default` is what `batchgate serve` uses.
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    /// How often firing alerts are re-sent to Alertmanager (`--alerts.resend-interval`, 1m);
    /// firing alerts are sent with `endsAt` = now + 4 × this.
    pub resend_interval: Duration,
    /// How often an unchanged group is re-sent to a plain webhook (Alertmanager's default
    /// `repeat_interval`, 4h); changes are sent at once.
    pub webhook_repeat_interval: Duration,
    /// Timeout of one HTTP request.
    pub timeout: Duration,
    /// First retry delay after a failed delivery; doubled on each failure up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// batchgate's external URL: the alerts' `generatorURL` and the webhook payload's `externalURL`.
    pub external_url: String,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            resend_interval: Duration::from_secs(60),
            webhook_repeat_interval: Duration::from_secs(4 * 3600),
            timeout: Duration::from_secs(10),
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            external_url: String::new(),
        }
    }
}

/// The `batchgate serve` flags of the alerting, to `#[command(flatten)]` into its arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct AlertArgs {
    /// How often firing alerts are re-sent to Alertmanager (Prometheus' `--rules.alert.resend-delay`);
    /// they are sent with endsAt = now + 4 x this.
    #[arg(long = "alerts.resend-interval", default_value = "1m", value_parser = parse_interval)]
    pub resend_interval: Duration,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = crate::jobs::duration::parse_duration(s).map_err(|e| e.to_string())?;
    Duration::try_from(d)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| "must be greater than 0".to_owned())
}

impl AlertArgs {
    /// Delivery options from the flags; `external_url` is batchgate's (`--web.external-url`).
    pub fn options(&self, external_url: &str) -> DeliveryOptions {
        DeliveryOptions {
            resend_interval: self.resend_interval,
            external_url: external_url.to_owned(),
            ..DeliveryOptions::default()
        }
    }
}

/// The alerts to deliver, as of one evaluation.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub alerts: Vec<Outgoing>,
}

/// Why one delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
}

/// Alertmanager's fingerprint of a label set: FNV-1a 64 over the sorted names and values, each
/// followed by the separator byte 0xff (prometheus/common `labelSetToFingerprint`).
pub fn fingerprint(labels: &Labels) -> String {
    const OFFSET: u64 = 14_695_981_039_346_656_037;
    const PRIME: u64 = 1_099_511_628_211;
    let mut h = OFFSET;
    let mut add = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    for (name, value) in labels {
        add(name.as_bytes());
        add(&[0xff]);
        add(value.as_bytes());
        add(&[0xff]);
    }
    format!("{h:016x}")
}

/// One alert of `POST /api/v2/alerts`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableAlert<'a> {
    pub labels: &'a Labels,
    pub annotations: &'a BTreeMap<String, String>,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    #[serde(rename = "generatorURL", skip_serializing_if = "String::is_empty")]
    pub generator_url: String,
}

/// One alert of the webhook payload.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAlert<'a> {
    pub status: &'static str,
    pub labels: &'a Labels,
    pub annotations: &'a BTreeMap<String, String>,
    pub starts_at: Timestamp,
    /// Go's zero time while firing, as Alertmanager sends it.
    pub ends_at: String,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    pub fingerprint: String,
}

/// The Alertmanager webhook payload (version 4).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPayload<'a> {
    pub version: &'static str,
    pub group_key: String,
    pub truncated_alerts: u64,
    pub status: &'static str,
    pub receiver: &'static str,
    pub group_labels: Labels,
    pub common_labels: Labels,
    pub common_annotations: BTreeMap<String, String>,
    #[serde(rename = "externalURL")]
    pub external_url: &'a str,
    pub alerts: Vec<WebhookAlert<'a>>,
}

/// Characters escaped in a query value: everything but RFC 3986's unreserved ones.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Where an alert comes from: batchgate's page for the job; empty (and omitted) without an external URL.
fn generator_url(base: &str, labels: &Labels) -> String {
    let base = base.trim_end_matches('/');
    if base.is_empty() {
        return String::new();
    }
    match labels.get("job_name") {
        Some(job) => format!(
            "{base}/?job={}",
            percent_encoding::utf8_percent_encode(job, QUERY_VALUE)
        ),
        None => format!("{base}/"),
    }
}

/// The body of `POST /api/v2/alerts`.
pub fn alertmanager_body<'a>(batch: &'a Batch, external_url: &str) -> Vec<PostableAlert<'a>> {
    batch
        .alerts
        .iter()
        .map(|a| PostableAlert {
            labels: &a.labels,
            annotations: &a.annotations,
            starts_at: a.starts_at,
            ends_at: a.ends_at,
            generator_url: generator_url(external_url, &a.labels),
        })
        .collect()
}

/// The labels (or annotations) every map has, with the same value.
fn common(maps: &[&BTreeMap<String, String>]) -> BTreeMap<String, String> {
    let Some((first, rest)) = maps.split_first() else {
        return BTreeMap::new();
    };
    first
        .iter()
        .filter(|(k, v)| rest.iter().all(|m| m.get(*k) == Some(*v)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The webhook payloads of a batch: one per group (`alertname`, `job_name`), keyed by group key.
pub fn webhook_payloads<'a>(batch: &'a Batch, external_url: &'a str) -> BTreeMap<String, WebhookPayload<'a>> {
    let mut groups: BTreeMap<Labels, Vec<&Outgoing>> = BTreeMap::new();
    for a in &batch.alerts {
        let key = a
            .labels
            .iter()
            .filter(|(k, _)| matches!(k.as_str(), "alertname" | "job_name"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        groups.entry(key).or_default().push(a);
    }
    groups
        .into_iter()
        .map(|(group_labels, alerts)| {
            let rendered = group_labels
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect::<Vec<_>>()
                .join(", ");
            let group_key = format!("{{}}:{{{rendered}}}");
            let firing = alerts.iter().any(|a| a.status == AlertState::Firing);
            let labels: Vec<_> = alerts.iter().map(|a| &a.labels).collect();
            let annotations: Vec<_> = alerts.iter().map(|a| &a.annotations).collect();
            let payload = WebhookPayload {
                version: "4",
                group_key: group_key.clone(),
                truncated_alerts: 0,
                status: if firing { "firing" } else { "resolved" },
                receiver: "batchgate",
                group_labels,
                common_labels: common(&labels),
                common_annotations: common(&annotations),
                external_url,
                alerts: alerts
                    .iter()
                    .map(|a| WebhookAlert {
                        status: if a.status == AlertState::Firing {
                            "firing"
                        } else {
                            "resolved"
                        },
                        labels: &a.labels,
                        annotations: &a.annotations,
                        starts_at: a.starts_at,
                        ends_at: if a.status == AlertState::Firing {
                            "0001-01-01T00:00:00Z".to_owned()
                        } else {
                            a.ends_at.to_string()
                        },
                        generator_url: generator_url(external_url, &a.labels),
                        fingerprint: fingerprint(&a.labels),
                    })
                    .collect(),
            };
            (group_key, payload)
        })
        .collect()
}

/// What kind of receiver a URL is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReceiverKind {
    Alertmanager,
    Webhook,
}

/// Delivery counters and the alert-state gauge, shared by every task.
#[derive(Debug, Default)]
pub struct Metrics {
    deliveries: Mutex<BTreeMap<(String, &'static str), u64>>,
    active: Mutex<Vec<ActiveAlert>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Metrics {
    fn count(&self, receiver: &str, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        *lock(&self.deliveries).entry((receiver.to_owned(), result)).or_default() += 1;
    }

    /// Makes a receiver's series exist (at 0) from the start.
    pub(crate) fn register(&self, receiver: &str) {
        let mut d = lock(&self.deliveries);
        for result in ["success", "failure"] {
            d.entry((receiver.to_owned(), result)).or_default();
        }
    }

    pub(crate) fn set_active(&self, active: Vec<ActiveAlert>) {
        *lock(&self.active) = active;
    }

    pub(crate) fn active(&self) -> Vec<ActiveAlert> {
        lock(&self.active).clone()
    }

    /// Deliveries so far to `receiver` with `result` (`success` or `failure`).
    pub fn deliveries(&self, receiver: &str, result: &str) -> u64 {
        lock(&self.deliveries)
            .iter()
            .filter(|((r, res), _)| r == receiver && *res == result)
            .map(|(_, n)| *n)
            .sum()
    }

    /// `batchgate_alert_deliveries_total{receiver,result}` and `batchgate_alerts_active{alertname,state}`.
    pub fn families(&self) -> Vec<MetricFamily> {
        let deliveries = lock(&self.deliveries)
            .iter()
            .map(|((receiver, result), n)| Metric {
                label: vec![LabelPair::new("receiver", receiver), LabelPair::new("result", *result)],
                counter: Some(Counter {
                    value: Some(*n as f64),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect();
        let mut counts: BTreeMap<(&'static str, &'static str), u64> = BTreeMap::new();
        for name in AlertName::ALL {
            for state in [AlertState::Pending, AlertState::Firing] {
                counts.insert((name.as_str(), state.as_str()), 0);
            }
        }
        for a in lock(&self.active).iter() {
            *counts.entry((a.name.as_str(), a.state.as_str())).or_default() += 1;
        }
        let active = counts
            .into_iter()
            .map(|((name, state), n)| Metric {
                label: vec![LabelPair::new("alertname", name), LabelPair::new("state", state)],
                gauge: Some(Gauge { value: Some(n as f64) }),
                ..Default::default()
            })
            .collect();
        vec![
            MetricFamily {
                name: Some("batchgate_alert_deliveries_total".into()),
                help: Some("Alert deliveries by receiver (Alertmanager or webhook URL) and result.".into()),
                r#type: Some(MetricType::Counter as i32),
                metric: deliveries,
                unit: None,
            },
            MetricFamily {
                name: Some("batchgate_alerts_active".into()),
                help: Some("Alerts raised by batchgate, by alert name and state (pending or firing).".into()),
                r#type: Some(MetricType::Gauge as i32),
                metric: active,
                unit: None,
            },
        ]
    }
}

async fn post<T: Serialize + ?Sized>(client: &reqwest::Client, url: &str, body: &T) -> Result<(), DeliveryError> {
    let response = client.post(url).json(body).send().await?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let mut body = response.text().await.unwrap_or_default();
    body.truncate(200);
    Err(DeliveryError::Status {
        status: status.as_u16(),
        body: body.trim().to_owned(),
    })
}

/// One receiver's delivery loop; returns when the batch channel closes.
pub(crate) async fn run_receiver(
    kind: ReceiverKind,
    url: String,
    client: reqwest::Client,
    mut batches: watch::Receiver<Arc<Batch>>,
    options: DeliveryOptions,
    metrics: Arc<Metrics>,
) {
    let endpoint = match kind {
        ReceiverKind::Alertmanager => format!("{}/api/v2/alerts", url.trim_end_matches('/')),
        ReceiverKind::Webhook => url.clone(),
    };
    metrics.register(&url);
    // Webhooks: what each group last delivered (its alerts and their status), and when.
    let mut delivered = Delivered::new();
    let mut failures = 0u32;
    loop {
        let batch = batches.borrow_and_update().clone();
        let mut backoff = options.initial_backoff;
        loop {
            let result = match kind {
                ReceiverKind::Alertmanager => {
                    if batch.alerts.is_empty() {
                        Ok(())
                    } else {
                        let body = alertmanager_body(&batch, &options.external_url);
                        let r = post(&client, &endpoint, &body).await;
                        metrics.count(&url, r.is_ok());
                        r
                    }
                }
                ReceiverKind::Webhook => send_webhook(&client, &url, &batch, &options, &metrics, &mut delivered).await,
            };
            match result {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(receiver = %url, failures, "alert delivery recovered");
                    }
                    failures = 0;
                    break;
                }
                Err(error) => {
                    failures += 1;
                    tracing::warn!(receiver = %url, %error, failures, retry_in = ?backoff, "alert delivery failed");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        changed = batches.changed() => {
                            if changed.is_err() {
                                return;
                            }
                            // A newer batch supersedes this one: deliver that instead.
                            break;
                        }
                    }
                    backoff = (backoff * 2).min(options.max_backoff);
                }
            }
        }
        if batches.has_changed().unwrap_or(false) {
            continue;
        }
        if batches.changed().await.is_err() {
            return;
        }
    }
}

/// Per webhook group key: what was last delivered (fingerprint and status of each alert), and when.
type Delivered = HashMap<String, (Vec<(String, &'static str)>, Instant)>;

async fn send_webhook(
    client: &reqwest::Client,
    url: &str,
    batch: &Batch,
    options: &DeliveryOptions,
    metrics: &Metrics,
    delivered: &mut Delivered,
) -> Result<(), DeliveryError> {
    let payloads = webhook_payloads(batch, &options.external_url);
    delivered.retain(|key, _| payloads.contains_key(key));
    let mut first_error = None;
    for (key, payload) in payloads {
        let content: Vec<_> = payload
            .alerts
            .iter()
            .map(|a| (a.fingerprint.clone(), a.status))
            .collect();
        let due = delivered
            .get(&key)
            .is_none_or(|(sent, at)| *sent != content || at.elapsed() >= options.webhook_repeat_interval);
        if !due {
            continue;
        }
        let r = post(client, url, &payload).await;
        metrics.count(url, r.is_ok());
        match r {
            Ok(()) => {
                delivered.insert(key, (content, Instant::now()));
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn resend_interval_flag() {
        assert_eq!(parse_interval("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_interval("1s500ms"), Ok(Duration::from_millis(1500)));
        assert!(parse_interval("0s").is_err());
        assert!(parse_interval("soon").is_err());
    }

    #[test]
    fn fingerprint_matches_alertmanager() {
        // FNV-1a 64 of the empty input is the offset basis.
        assert_eq!(fingerprint(&Labels::new()), "cbf29ce484222325");
        let a = fingerprint(&labels(&[("alertname", "A"), ("job_name", "x")]));
        assert_eq!(a.len(), 16);
        assert_ne!(a, fingerprint(&labels(&[("alertname", "A"), ("job_name", "y")])));
    }

    #[test]
    fn payloads_group_by_alertname_and_job() {
        let t: Timestamp = "2025-06-01T12:00:00Z".parse().unwrap();
        let out = |pairs: &[(&str, &str)], status| Outgoing {
            labels: labels(pairs),
            annotations: BTreeMap::from([("summary".to_owned(), "s".to_owned())]),
            status,
            starts_at: t,
            ends_at: t,
        };
        let batch = Batch {
            alerts: vec![
                out(
                    &[
                        ("alertname", "BatchJobStale"),
                        ("job_name", "a"),
                        ("severity", "warning"),
                    ],
                    AlertState::Firing,
                ),
                out(
                    &[("alertname", "BatchJobStale"), ("job_name", "b")],
                    AlertState::Resolved,
                ),
                out(
                    &[("alertname", "BatchGatewayWatchdog"), ("severity", "none")],
                    AlertState::Firing,
                ),
            ],
        };
        let p = webhook_payloads(&batch, "http://gw:9091");
        let keys: Vec<_> = p.keys().cloned().collect();
        assert_eq!(
            keys,
            [
                r#"{}:{alertname="BatchGatewayWatchdog"}"#,
                r#"{}:{alertname="BatchJobStale", job_name="a"}"#,
                r#"{}:{alertname="BatchJobStale", job_name="b"}"#,
            ]
        );
        let b = &p[&keys[2]];
        assert_eq!(b.status, "resolved");
        let json = serde_json::to_value(b).unwrap();
        assert_eq!(json["version"], "4");
        assert_eq!(json["alerts"][0]["status"], "resolved");
        assert_eq!(json["alerts"][0]["endsAt"], "2025-06-01T12:00:00Z");
        assert_eq!(json["commonLabels"]["job_name"], "b");
        assert_eq!(json["externalURL"], "http://gw:9091");
        assert_eq!(json["alerts"][0]["generatorURL"], "http://gw:9091/?job=b");

        let body = serde_json::to_value(alertmanager_body(&batch, "http://gw:9091")).unwrap();
        assert_eq!(body[0]["startsAt"], "2025-06-01T12:00:00Z");
        assert_eq!(body[0]["labels"]["job_name"], "a");
        assert!(body[0].get("generatorURL").is_some());
    }

    #[test]
    fn families_have_every_alert_state() {
        let m = Metrics::default();
        m.register("http://am:9093");
        m.count("http://am:9093", false);
        let f = m.families();
        assert_eq!(f[0].name.as_deref(), Some("batchgate_alert_deliveries_total"));
        assert_eq!(f[0].metric.len(), 2);
        assert_eq!(m.deliveries("http://am:9093", "failure"), 1);
        assert_eq!(f[1].metric.len(), 16);
    }
}
