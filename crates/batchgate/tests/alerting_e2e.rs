//! batchgate's alerting end to end, through the real server binary: SDK metrics pushed over HTTP
//! become job states, job states become alerts, and the alerts reach a real Alertmanager (Debian
//! `prometheus-alertmanager`, 0.25) whose webhook receiver is a recorder on 127.0.0.1. Also the
//! exported rules (`batchgate rules`) evaluated by a real Prometheus (Debian `prometheus`, 2.42)
//! scraping batchgate.
//!
//! Every test writes its own config (`for: 1s`, `evaluation_interval: 1s`) and runs batchgate with
//! `--alerts.resend-interval=1s`; Alertmanager groups by `alertname`, `job_name` and `escalation`
//! with 1 s group wait and interval. Every wait is bounded; every process dies with its test.

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Server, http_client as client, unix_now as now};

/// Longest wait for one alert to arrive.
const WAIT: Duration = Duration::from_secs(20);
const HOUR: f64 = 3600.0;

/// A webhook receiver recording every JSON body POSTed to it (Alertmanager's notifications), on its
/// own runtime so the tests themselves stay blocking.
struct Recorder {
    bodies: Arc<Mutex<Vec<Value>>>,
    url: String,
    _runtime: tokio::runtime::Runtime,
}

impl Recorder {
    fn start() -> Recorder {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind recorder");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let store = Arc::clone(&bodies);
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: axum::body::Bytes| {
                let store = Arc::clone(&store);
                async move {
                    if let Ok(v) = serde_json::from_slice(&body) {
                        store.lock().unwrap().push(v);
                    }
                    "ok"
                }
            }),
        );
        runtime.spawn(async move { axum::serve(listener, app).await });
        Recorder {
            bodies,
            url,
            _runtime: runtime,
        }
    }

    /// How many notifications arrived so far: alerts received after it are "since" it.
    fn mark(&self) -> usize {
        self.bodies.lock().unwrap().len()
    }

    /// Every alert of every notification received after `mark`.
    fn alerts_since(&self, mark: usize) -> Vec<Value> {
        self.bodies.lock().unwrap()[mark..]
            .iter()
            .flat_map(|p| p["alerts"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    fn alerts(&self) -> Vec<Value> {
        self.alerts_since(0)
    }

    /// Waits for an alert with `status` whose labels include `labels`, received after `mark`.
    fn wait_since(&self, mark: usize, status: &str, labels: &[(&str, &str)]) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(a) = self
                .alerts_since(mark)
                .into_iter()
                .rev()
                .find(|a| matches(a, status, labels))
            {
                return a;
            }
            assert!(
                Instant::now() < deadline,
                "no {status} alert with {labels:?} arrived at the webhook; got:\n{:#?}",
                self.alerts()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_for(&self, status: &str, labels: &[(&str, &str)]) -> Value {
        self.wait_since(0, status, labels)
    }

    /// Whether any alert (any status) with these labels arrived.
    fn any(&self, labels: &[(&str, &str)]) -> bool {
        self.alerts()
            .iter()
            .any(|a| labels.iter().all(|(k, v)| a["labels"][*k] == *v))
    }
}

fn matches(alert: &Value, status: &str, labels: &[(&str, &str)]) -> bool {
    alert["status"] == status && labels.iter().all(|(k, v)| alert["labels"][*k] == *v)
}

/// The alerts Alertmanager holds (`GET /api/v2/alerts`: active ones, not yet ended).
fn alertmanager_alerts(am: &Server) -> Vec<Value> {
    let text = client()
        .get(format!("{}/api/v2/alerts", am.url))
        .send()
        .expect("GET /api/v2/alerts")
        .text()
        .expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("alerts JSON: {e}: {text}"))
}

fn held(alerts: &[Value], labels: &[(&str, &str)]) -> bool {
    alerts.iter().any(|a| labels.iter().all(|(k, v)| a["labels"][*k] == *v))
}

/// Polls `check` until it holds, for at most `limit`.
fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A test config: every alert to `alertmanager`, `for: 1s`, evaluation every second; `jobs` is
/// the YAML list of jobs (indented by two spaces).
fn write_config(dir: &Path, alertmanager: &str, jobs: &str) -> std::path::PathBuf {
    write_config_with_webhooks(dir, alertmanager, &[], jobs)
}

/// Like [`write_config`], also sending every alert to the plain webhooks `webhooks`.
fn write_config_with_webhooks(dir: &Path, alertmanager: &str, webhooks: &[&str], jobs: &str) -> std::path::PathBuf {
    let path = dir.join("batchgate.yml");
    let webhooks: String = webhooks.iter().map(|w| format!("    - {w}\n")).collect();
    let webhooks = if webhooks.is_empty() {
        "  webhooks: []\n".to_owned()
    } else {
        format!("  webhooks:\n{webhooks}")
    };
    let text = format!(
        "global:\n  metric_prefix: gl_batch_job\n  for: 1s\n  evaluation_interval: 1s\n  \
         alertmanagers:\n    - {alertmanager}\n{webhooks}jobs:\n{jobs}"
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// ef-update as the runbook describes it, but not critical: escalates to L1 when stale.
const EF_UPDATE: &str = "  - name: ef-update\n    schedule: \"0 */6 * * *\"\n    timezone: UTC\n    \
                         max_staleness: 8h\n    team: platform\n    \
                         kubernetes: {namespace: greenlang, cronjob: ef-update-job}\n";

/// batchgate serving `config`, re-sending alerts every second.
fn batchgate(config: &Path) -> Server {
    let config_arg = format!("--config={}", config.display());
    Server::batchgate(&[&config_arg, "--alerts.resend-interval=1s"])
}

/// Pushes a text-format body; returns the status and the answer.
fn push(server: &Server, method: &str, path: &str, body: &str) -> (u16, String) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let r = client()
        .request(method, format!("{}{path}", server.url))
        .body(body.to_owned())
        .send()
        .expect("push");
    (r.status().as_u16(), r.text().unwrap_or_default())
}

fn put_ok(server: &Server, path: &str, body: &str) {
    let (status, text) = push(server, "PUT", path, body);
    assert_eq!(status, 200, "PUT {path}: {text}");
}

/// The runbook SDK's metrics of a finished run of `job`: `status` is `completed` or `failed`.
fn sdk_finished(job: &str, status: &str, last_success: f64, extra: &str) -> String {
    format!(
        "# TYPE gl_batch_job_last_success_timestamp gauge\n\
         gl_batch_job_last_success_timestamp{{job_name=\"{job}\"}} {last_success}\n\
         # TYPE gl_batch_job_status gauge\n\
         gl_batch_job_status{{job_name=\"{job}\",status=\"running\"}} 0\n\
         gl_batch_job_status{{job_name=\"{job}\",status=\"completed\"}} {}\n\
         gl_batch_job_status{{job_name=\"{job}\",status=\"failed\"}} {}\n{extra}",
        u8::from(status == "completed"),
        u8::from(status == "failed"),
    )
}

fn job_json(server: &Server, name: &str) -> Value {
    let text = client()
        .get(format!("{}/api/v1/jobs/{name}", server.url))
        .send()
        .expect("GET job")
        .text()
        .expect("body");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    v["data"].clone()
}

fn metrics_text(server: &Server) -> String {
    client()
        .get(format!("{}/metrics", server.url))
        .send()
        .expect("GET /metrics")
        .text()
        .expect("body")
}

/// Recorder, Alertmanager sending to it, and batchgate sending to Alertmanager and (as a plain
/// webhook, the Alertmanager payload straight from batchgate) to a second recorder.
struct Stack {
    hook: Recorder,
    plain: Recorder,
    am: Server,
    gate: Server,
    _dir: tempfile::TempDir,
}

fn stack(jobs: &str) -> Stack {
    let hook = Recorder::start();
    let plain = Recorder::start();
    let am = support::alertmanager(&hook.url);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config_with_webhooks(dir.path(), &am.url, &[&plain.url], jobs);
    let gate = batchgate(&config);
    Stack {
        hook,
        plain,
        am,
        gate,
        _dir: dir,
    }
}

/// SPEC §3.4, the runbook's scenario: ef-update's last success 9 h ago, max staleness 8 h.
#[test]
fn stale_ef_update_fires_at_l1_and_resolves_after_a_fresh_success() {
    let started = Instant::now();
    let s = stack(EF_UPDATE);
    let t = now();
    put_ok(
        &s.gate,
        "/metrics/job/ef-update",
        &sdk_finished(
            "ef-update",
            "completed",
            t - 9.0 * HOUR,
            "# TYPE gl_batch_job_duration_seconds gauge\ngl_batch_job_duration_seconds{job_name=\"ef-update\"} 42\n",
        ),
    );
    let stale = [
        ("alertname", "BatchJobStale"),
        ("job_name", "ef-update"),
        ("severity", "warning"),
        ("escalation", "L1"),
        ("team", "platform"),
    ];
    let a = s.hook.wait_for("firing", &stale);
    let description = a["annotations"]["description"].as_str().unwrap_or_default();
    assert!(description.contains("max staleness 8h"), "{a}");
    assert!(description.contains("9h"), "{a}");
    assert!(
        a["annotations"]["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("ef-update is stale"),
        "{a}"
    );
    // It was pending for `for` first: Alertmanager's startsAt is when the condition began.
    assert!(held(&alertmanager_alerts(&s.am), &stale));
    let job = job_json(&s.gate, "ef-update");
    assert_eq!(job["state"], "stale", "{job}");
    assert_eq!(job["escalation"], "L1", "{job}");
    // The plain webhook got the same alert, in the Alertmanager webhook payload.
    let p = s.plain.wait_for("firing", &stale);
    assert_eq!(
        p["fingerprint"], a["fingerprint"],
        "same labels, same fingerprint: {p}\n{a}"
    );
    assert_eq!(p["startsAt"], a["startsAt"], "{p}\n{a}");
    let payload = s.plain.bodies.lock().unwrap()[0].clone();
    assert_eq!(payload["version"], "4", "{payload}");
    assert_eq!(payload["receiver"], "batchgate", "{payload}");
    // Not critical: never L2 or L3, and nothing else about ef-update.
    assert!(!s.hook.any(&[("job_name", "ef-update"), ("escalation", "L2")]));
    assert!(!s.hook.any(&[("job_name", "ef-update"), ("escalation", "L3")]));
    let others: Vec<Value> = s
        .hook
        .alerts()
        .into_iter()
        .filter(|a| a["labels"]["job_name"] == "ef-update" && a["labels"]["alertname"] != "BatchJobStale")
        .collect();
    assert!(others.is_empty(), "{others:#?}");

    // A fresh success: the alert resolves at Alertmanager and the resolution is notified.
    let mark = s.hook.mark();
    put_ok(
        &s.gate,
        "/metrics/job/ef-update",
        &sdk_finished("ef-update", "completed", now(), ""),
    );
    let r = s.hook.wait_since(mark, "resolved", &stale);
    assert_ne!(r["endsAt"], "0001-01-01T00:00:00Z", "{r}");
    s.plain.wait_for("resolved", &stale);
    eventually("Alertmanager to drop the resolved alert", WAIT, || {
        !held(
            &alertmanager_alerts(&s.am),
            &[("alertname", "BatchJobStale"), ("job_name", "ef-update")],
        )
    });
    assert_eq!(job_json(&s.gate, "ef-update")["state"], "ok");
    assert!(started.elapsed() < Duration::from_secs(60));
}

/// Two critical jobs: crit-a every 10 minutes, crit-b without a schedule.
const CRITICAL_PAIR: &str = "  - name: crit-a\n    schedule: \"*/10 * * * *\"\n    max_staleness: 15m\n    \
                             critical: true\n  - name: crit-b\n    critical: true\n";

/// SPEC §3.4 escalation: L2 for a critical job stale beyond twice its interval; L3 when two critical
/// jobs are stale or failed at once, back to L2 when one recovers.
#[test]
fn critical_jobs_escalate_to_l2_and_l3() {
    let s = stack(CRITICAL_PAIR);
    let t = now();
    put_ok(
        &s.gate,
        "/metrics/job/crit-a",
        &sdk_finished("crit-a", "completed", t - HOUR, ""),
    );
    let a_l2 = [
        ("alertname", "BatchJobStale"),
        ("job_name", "crit-a"),
        ("severity", "warning"),
        ("escalation", "L2"),
    ];
    s.hook.wait_for("firing", &a_l2);
    assert!(
        !s.hook.any(&[("job_name", "crit-a"), ("escalation", "L1")]),
        "1 h stale is beyond twice the 10 m interval from the start: {:#?}",
        s.hook.alerts()
    );
    assert_eq!(job_json(&s.gate, "crit-a")["escalation"], "L2");

    // A second critical job fails: both are L3, and crit-a's L2 alert resolves.
    let mark = s.hook.mark();
    put_ok(
        &s.gate,
        "/metrics/job/crit-b",
        &sdk_finished(
            "crit-b",
            "failed",
            t - 600.0,
            &format!(
                "# TYPE gl_batch_job_last_failure_timestamp gauge\n\
                 gl_batch_job_last_failure_timestamp{{job_name=\"crit-b\"}} {t}\n"
            ),
        ),
    );
    s.hook.wait_since(
        mark,
        "firing",
        &[
            ("alertname", "BatchJobStale"),
            ("job_name", "crit-a"),
            ("escalation", "L3"),
        ],
    );
    s.hook.wait_since(
        mark,
        "firing",
        &[
            ("alertname", "BatchJobFailed"),
            ("job_name", "crit-b"),
            ("severity", "warning"),
            ("escalation", "L3"),
        ],
    );
    s.hook.wait_since(mark, "resolved", &a_l2);
    let am = alertmanager_alerts(&s.am);
    assert!(!held(&am, &a_l2), "{am:#?}");
    assert_eq!(job_json(&s.gate, "crit-b")["state"], "failed");
    assert!(
        !s.hook.any(&[("alertname", "BatchJobStale"), ("job_name", "crit-b")]),
        "crit-b failed but is not stale: {:#?}",
        s.hook.alerts()
    );

    // crit-b recovers: its alert resolves and crit-a is back at L2.
    let mark = s.hook.mark();
    put_ok(
        &s.gate,
        "/metrics/job/crit-b",
        &sdk_finished(
            "crit-b",
            "completed",
            now(),
            &format!(
                "# TYPE gl_batch_job_last_failure_timestamp gauge\n\
                 gl_batch_job_last_failure_timestamp{{job_name=\"crit-b\"}} {t}\n"
            ),
        ),
    );
    s.hook.wait_since(
        mark,
        "resolved",
        &[("alertname", "BatchJobFailed"), ("job_name", "crit-b")],
    );
    s.hook
        .wait_since(mark, "resolved", &[("job_name", "crit-a"), ("escalation", "L3")]);
    s.hook.wait_since(mark, "firing", &a_l2);
}

/// SPEC §3.4: BatchJobFailed, BatchJobHung, BatchJobDurationHigh, BatchJobErrorsHigh and
/// BatchJobPushFailing, each from real pushes.
#[test]
fn failed_hung_slow_erroring_and_rejected_jobs_alert() {
    let jobs = "  - name: failer\n\
                \x20 - name: hanger\n    max_runtime: 2s\n\
                \x20 - name: slowpoke\n    max_duration: 1m\n\
                \x20 - name: errorful\n    max_errors_24h: 2\n\
                \x20 - name: pusher\n\
                \x20 - name: stamper\n";
    let s = stack(jobs);
    let t = now();

    // A failed run: status failed, last failure after the last success, exit code 2.
    put_ok(
        &s.gate,
        "/metrics/job/failer",
        &sdk_finished(
            "failer",
            "failed",
            t - 600.0,
            &format!(
                "# TYPE gl_batch_job_last_failure_timestamp gauge\n\
                 gl_batch_job_last_failure_timestamp{{job_name=\"failer\"}} {t}\n\
                 # TYPE gl_batch_job_exit_code gauge\n\
                 gl_batch_job_exit_code{{job_name=\"failer\"}} 2\n"
            ),
        ),
    );
    // A run that starts and never ends.
    put_ok(
        &s.gate,
        "/metrics/job/hanger",
        &format!(
            "# TYPE gl_batch_job_status gauge\n\
             gl_batch_job_status{{job_name=\"hanger\",status=\"running\"}} 1\n\
             # TYPE gl_batch_job_last_start_timestamp gauge\n\
             gl_batch_job_last_start_timestamp{{job_name=\"hanger\"}} {}\n",
            now()
        ),
    );
    assert_eq!(job_json(&s.gate, "hanger")["state"], "running");
    // A successful run of 5 minutes, above its max_duration of 1 minute.
    put_ok(
        &s.gate,
        "/metrics/job/slowpoke",
        &sdk_finished(
            "slowpoke",
            "completed",
            t,
            &format!(
                "# TYPE gl_batch_job_duration_seconds gauge\n\
                 gl_batch_job_duration_seconds{{job_name=\"slowpoke\"}} 300\n\
                 # TYPE gl_batch_job_last_start_timestamp gauge\n\
                 gl_batch_job_last_start_timestamp{{job_name=\"slowpoke\"}} {}\n",
                t - 300.0
            ),
        ),
    );
    // A successful run that counted 5 errors, above its max_errors_24h of 2.
    put_ok(
        &s.gate,
        "/metrics/job/errorful",
        &sdk_finished(
            "errorful",
            "completed",
            t,
            "# TYPE gl_batch_job_errors_total counter\ngl_batch_job_errors_total{job_name=\"errorful\"} 5\n",
        ),
    );
    // pusher: a good push from instance a, then one from instance b whose type conflicts with it.
    put_ok(
        &s.gate,
        "/metrics/job/pusher/instance/a",
        &sdk_finished(
            "pusher",
            "completed",
            t,
            "# TYPE pusher_rows_processed gauge\npusher_rows_processed 10\n",
        ),
    );
    let (status, text) = push(
        &s.gate,
        "PUT",
        "/metrics/job/pusher/instance/b",
        "# TYPE pusher_rows_processed counter\npusher_rows_processed 11\n",
    );
    assert_eq!(status, 400, "a type conflict is refused: {text}");
    // stamper: a good push, then the same metrics with a timestamp.
    put_ok(
        &s.gate,
        "/metrics/job/stamper",
        &sdk_finished("stamper", "completed", t, ""),
    );
    let (status, text) = push(
        &s.gate,
        "PUT",
        "/metrics/job/stamper",
        &format!(
            "# TYPE gl_batch_job_last_success_timestamp gauge\n\
             gl_batch_job_last_success_timestamp{{job_name=\"stamper\"}} {} {}\n",
            now(),
            (now() * 1000.0) as i64
        ),
    );
    assert_eq!(status, 400, "a timestamped sample is refused: {text}");

    let failed = s.hook.wait_for(
        "firing",
        &[
            ("alertname", "BatchJobFailed"),
            ("job_name", "failer"),
            ("severity", "warning"),
            ("escalation", "L1"),
        ],
    );
    let d = failed["annotations"]["description"].as_str().unwrap_or_default();
    assert!(d.contains("exit code 2"), "{failed}");
    let hung = s.hook.wait_for(
        "firing",
        &[
            ("alertname", "BatchJobHung"),
            ("job_name", "hanger"),
            ("severity", "warning"),
        ],
    );
    assert!(hung["labels"].get("escalation").is_none(), "{hung}");
    assert!(
        hung["annotations"]["description"]
            .as_str()
            .unwrap_or_default()
            .contains("max runtime 2s"),
        "{hung}"
    );
    assert_eq!(job_json(&s.gate, "hanger")["state"], "hung");
    let slow = s.hook.wait_for(
        "firing",
        &[
            ("alertname", "BatchJobDurationHigh"),
            ("job_name", "slowpoke"),
            ("severity", "warning"),
        ],
    );
    assert!(
        slow["annotations"]["description"]
            .as_str()
            .unwrap_or_default()
            .contains("took 5m"),
        "{slow}"
    );
    let errors = s.hook.wait_for(
        "firing",
        &[
            ("alertname", "BatchJobErrorsHigh"),
            ("job_name", "errorful"),
            ("severity", "warning"),
        ],
    );
    assert!(
        errors["annotations"]["description"]
            .as_str()
            .unwrap_or_default()
            .contains("5 errors"),
        "{errors}"
    );
    for job in ["pusher", "stamper"] {
        s.hook.wait_for(
            "firing",
            &[
                ("alertname", "BatchJobPushFailing"),
                ("job_name", job),
                ("severity", "warning"),
            ],
        );
    }
    // Each job raised what its pushes say, and nothing it should not have.
    let unexpected: Vec<(String, String)> = s
        .hook
        .alerts()
        .iter()
        .filter_map(|a| {
            let job = a["labels"]["job_name"].as_str()?.to_owned();
            let name = a["labels"]["alertname"].as_str()?.to_owned();
            let expected: &[&str] = match job.as_str() {
                // A failed run counts as an error (max_errors_24h 0).
                "failer" => &["BatchJobFailed", "BatchJobErrorsHigh"],
                "hanger" => &["BatchJobHung"],
                "slowpoke" => &["BatchJobDurationHigh"],
                "errorful" => &["BatchJobErrorsHigh"],
                "pusher" | "stamper" => &["BatchJobPushFailing"],
                _ => &[],
            };
            (!expected.contains(&name.as_str())).then_some((job, name))
        })
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:?}");

    // A consistent push from instance b: pusher's alert resolves.
    let mark = s.hook.mark();
    put_ok(
        &s.gate,
        "/metrics/job/pusher/instance/b",
        "# TYPE pusher_rows_processed gauge\npusher_rows_processed 11\n",
    );
    s.hook.wait_since(
        mark,
        "resolved",
        &[("alertname", "BatchJobPushFailing"), ("job_name", "pusher")],
    );
}

/// SPEC §3.4: BatchGatewayWatchdog is always firing while batchgate runs, and its absence at
/// Alertmanager is what tells batchgate is down.
#[test]
fn watchdog_fires_throughout_and_ends_when_batchgate_dies() {
    let mut s = stack(EF_UPDATE);
    let watchdog = [("alertname", "BatchGatewayWatchdog"), ("severity", "none")];
    let w = s.hook.wait_for("firing", &watchdog);
    assert!(w["labels"].get("job_name").is_none(), "{w}");
    // Held at Alertmanager the whole time, across a stale alert firing and resolving (firing alerts
    // are sent with endsAt = now + 4 s: without the re-sends it would be gone by the end).
    put_ok(
        &s.gate,
        "/metrics/job/ef-update",
        &sdk_finished("ef-update", "completed", now() - 9.0 * HOUR, ""),
    );
    let until = Instant::now() + Duration::from_secs(10);
    let mut resolved_pushed = false;
    while Instant::now() < until {
        let alerts = alertmanager_alerts(&s.am);
        assert!(
            held(&alerts, &watchdog),
            "watchdog missing at Alertmanager: {alerts:#?}"
        );
        if !resolved_pushed && held(&alerts, &[("alertname", "BatchJobStale")]) {
            put_ok(
                &s.gate,
                "/metrics/job/ef-update",
                &sdk_finished("ef-update", "completed", now(), ""),
            );
            resolved_pushed = true;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(resolved_pushed, "BatchJobStale never reached Alertmanager");
    s.hook
        .wait_for("resolved", &[("alertname", "BatchJobStale"), ("job_name", "ef-update")]);
    assert!(held(&alertmanager_alerts(&s.am), &watchdog));

    // batchgate dies without a word: the watchdog ends at Alertmanager by itself.
    let mark = s.hook.mark();
    s.gate.kill9();
    eventually("the watchdog to end at Alertmanager", WAIT, || {
        !held(&alertmanager_alerts(&s.am), &watchdog)
    });
    s.hook.wait_since(mark, "resolved", &watchdog);
}

/// SPEC §3.4 delivery: an Alertmanager down when the alert fires gets it once it is up.
#[test]
fn alert_arrives_once_a_down_alertmanager_comes_up() {
    let hook = Recorder::start();
    let port = support::free_port();
    let am_url = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &am_url, EF_UPDATE);
    let gate = batchgate(&config);
    put_ok(
        &gate,
        "/metrics/job/ef-update",
        &sdk_finished("ef-update", "completed", now() - 9.0 * HOUR, ""),
    );
    // Failed deliveries are counted (and pushes still work).
    let failures = format!("batchgate_alert_deliveries_total{{receiver=\"{am_url}\",result=\"failure\"}}");
    eventually("failed deliveries to be counted", WAIT, || {
        support::parse_exposition(&metrics_text(&gate)).iter().any(|s| {
            s.name == "batchgate_alert_deliveries_total"
                && s.labels.get("receiver") == Some(&am_url)
                && s.labels.get("result").map(String::as_str) == Some("failure")
                && s.value >= 2.0
        })
    });
    let job = job_json(&gate, "ef-update");
    assert_eq!(job["state"], "stale", "{job}");
    // The alert has been firing a while when Alertmanager comes up.
    std::thread::sleep(Duration::from_secs(3));

    let am = support::alertmanager_on(port, &hook.url);
    let a = hook.wait_for(
        "firing",
        &[
            ("alertname", "BatchJobStale"),
            ("job_name", "ef-update"),
            ("escalation", "L1"),
        ],
    );
    // startsAt is when the condition began, before Alertmanager was up.
    let starts: jiff::Timestamp = a["startsAt"].as_str().unwrap_or_default().parse().expect("startsAt");
    assert!(
        jiff::Timestamp::now().duration_since(starts) >= jiff::SignedDuration::from_secs(3),
        "{a}"
    );
    hook.wait_for("firing", &[("alertname", "BatchGatewayWatchdog")]);
    assert!(held(&alertmanager_alerts(&am), &[("alertname", "BatchJobStale")]));
    let text = metrics_text(&gate);
    let success = support::parse_exposition(&text).into_iter().find(|s| {
        s.name == "batchgate_alert_deliveries_total"
            && s.labels.get("receiver") == Some(&am_url)
            && s.labels.get("result").map(String::as_str) == Some("success")
    });
    assert!(success.is_some_and(|s| s.value >= 1.0), "{failures}\n{text}");
}

/// SPEC §3.4 rules export: `batchgate rules` loaded into a real Prometheus scraping batchgate
/// raises BatchJobStale for the same data.
#[test]
fn exported_rules_fire_in_a_real_prometheus() {
    let dir = tempfile::tempdir().expect("tempdir");
    // No Alertmanager: batchgate's own delivery is not under test here.
    let config = dir.path().join("batchgate.yml");
    std::fs::write(
        &config,
        format!("global:\n  for: 1s\n  evaluation_interval: 1s\njobs:\n{EF_UPDATE}{CRITICAL_PAIR}"),
    )
    .expect("write config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_batchgate"))
        .args(["rules", "--config"])
        .arg(&config)
        .output()
        .expect("run batchgate rules");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, &out.stdout).expect("write rules");

    let gate = batchgate(&config);
    let prom = support::prometheus_with_rules(&format!("127.0.0.1:{}", gate.port), "/metrics", &[&rules]);
    // Prometheus loaded the rules.
    eventually("Prometheus to load the rules", WAIT, || {
        let v: Value = client()
            .get(format!("{}/api/v1/rules", prom.url))
            .send()
            .ok()
            .and_then(|r| r.json().ok())
            .unwrap_or_default();
        v["data"]["groups"][0]["rules"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["name"] == "BatchJobStale"))
    });
    put_ok(
        &gate,
        "/metrics/job/ef-update",
        &sdk_finished("ef-update", "completed", now() - 9.0 * HOUR, ""),
    );
    let prom_alerts = || -> Vec<Value> {
        let v: Value = client()
            .get(format!("{}/api/v1/alerts", prom.url))
            .send()
            .ok()
            .and_then(|r| r.json().ok())
            .unwrap_or_default();
        v["data"]["alerts"].as_array().cloned().unwrap_or_default()
    };
    let stale = |a: &Value| {
        a["labels"]["alertname"] == "BatchJobStale"
            && a["labels"]["job_name"] == "ef-update"
            && a["labels"]["severity"] == "warning"
            && a["labels"]["escalation"] == "L1"
    };
    eventually("BatchJobStale pending or firing in Prometheus", WAIT, || {
        prom_alerts()
            .iter()
            .any(|a| stale(a) && (a["state"] == "pending" || a["state"] == "firing"))
    });
    eventually("BatchJobStale firing in Prometheus", WAIT, || {
        prom_alerts().iter().any(|a| stale(a) && a["state"] == "firing")
    });
    let alerts = prom_alerts();
    let a = alerts.iter().find(|a| stale(a)).expect("stale alert");
    assert!(
        a["annotations"]["description"]
            .as_str()
            .unwrap_or_default()
            .contains("max staleness 8h"),
        "{a}"
    );
    // The watchdog rule fires too; nothing else about ef-update does.
    assert!(
        alerts
            .iter()
            .any(|a| a["labels"]["alertname"] == "BatchGatewayWatchdog"),
        "{alerts:#?}"
    );
    let others: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["labels"]["job_name"] == "ef-update" && !stale(a))
        .collect();
    assert!(others.is_empty(), "{others:#?}");

    // A fresh success clears it in Prometheus too.
    put_ok(
        &gate,
        "/metrics/job/ef-update",
        &sdk_finished("ef-update", "completed", now(), ""),
    );
    eventually("BatchJobStale to clear in Prometheus", WAIT, || {
        !prom_alerts().iter().any(stale)
    });

    // The escalation path, as batchgate's own alerting has it: a critical job stale beyond twice
    // its interval is L2; with a second critical job failed, both are L3.
    let firing = |name: &str, job: &str, level: &str| {
        prom_alerts().iter().any(|a| {
            a["labels"]["alertname"] == name
                && a["labels"]["job_name"] == job
                && a["labels"]["escalation"] == level
                && a["state"] == "firing"
        })
    };
    let t = now();
    put_ok(
        &gate,
        "/metrics/job/crit-a",
        &sdk_finished("crit-a", "completed", t - HOUR, ""),
    );
    eventually("crit-a stale at L2 in Prometheus", WAIT, || {
        firing("BatchJobStale", "crit-a", "L2")
    });
    assert!(!firing("BatchJobStale", "crit-a", "L1"), "{:#?}", prom_alerts());
    put_ok(
        &gate,
        "/metrics/job/crit-b",
        &sdk_finished(
            "crit-b",
            "failed",
            t - 600.0,
            &format!(
                "# TYPE gl_batch_job_last_failure_timestamp gauge\n\
                 gl_batch_job_last_failure_timestamp{{job_name=\"crit-b\"}} {t}\n"
            ),
        ),
    );
    eventually("crit-a stale and crit-b failed at L3 in Prometheus", WAIT, || {
        firing("BatchJobStale", "crit-a", "L3") && firing("BatchJobFailed", "crit-b", "L3")
    });
    eventually("crit-a's L2 alert to clear in Prometheus", WAIT, || {
        !prom_alerts()
            .iter()
            .any(|a| a["labels"]["job_name"] == "crit-a" && a["labels"]["escalation"] == "L2")
    });
    let stray: Vec<Value> = prom_alerts()
        .into_iter()
        .filter(|a| {
            let job = &a["labels"]["job_name"];
            (*job == "crit-a" || *job == "crit-b") && a["labels"]["escalation"] != "L3"
        })
        .collect();
    assert!(stray.is_empty(), "{stray:#?}");
}
