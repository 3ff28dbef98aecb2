//! batchgate's alerting against a real Alertmanager (Debian `prometheus-alertmanager`, 0.25) whose
//! webhook receiver is a recorder on 127.0.0.1, and `batchgate rules` against `promtool`.
//!
//! Synthetic job evaluations go through the real engine and delivery; every wait is bounded.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use batchgate::alerts::{self, DeliveryOptions};
use batchgate::jobs::config::Global;
use batchgate::jobs::runs::{Outcome, RunStatus};
use batchgate::jobs::state::{JobFacts, assess};
use batchgate::jobs::{Config, Escalation, JobSpec, JobView};
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;
use tokio::sync::watch;

const H: SignedDuration = SignedDuration::from_hours(1);
const M: SignedDuration = SignedDuration::from_mins(1);

/// Records every JSON body POSTed to it.
#[derive(Clone, Default)]
struct Recorder {
    bodies: Arc<Mutex<Vec<Value>>>,
    url: String,
}

impl Recorder {
    async fn start() -> Recorder {
        let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
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
        tokio::spawn(async move { axum::serve(listener, app).await });
        Recorder { bodies, url }
    }

    /// Every alert of every payload received so far.
    fn alerts(&self) -> Vec<Value> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .flat_map(|p| p["alerts"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// Waits (at most 30 s) for an alert with `status` whose labels include `labels`.
    async fn wait_for(&self, status: &str, labels: &[(&str, &str)]) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(a) = self.alerts().into_iter().rev().find(|a| matches(a, status, labels)) {
                return a;
            }
            assert!(
                Instant::now() < deadline,
                "no {status} alert with {labels:?} arrived; got:\n{:#?}",
                self.alerts()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn matches(alert: &Value, status: &str, labels: &[(&str, &str)]) -> bool {
    alert["status"] == status && labels.iter().all(|(k, v)| alert["labels"][*k] == *v)
}

fn spec(name: &str, critical: bool) -> JobSpec {
    JobSpec {
        max_staleness: 8 * H,
        interval: 6 * H,
        critical,
        registered: true,
        team: Some("platform".into()),
        for_duration: SignedDuration::ZERO,
        ..JobSpec::discovered(name, &Global::default())
    }
}

fn healthy(now: Timestamp) -> JobFacts {
    JobFacts {
        last_success: Some(now - 10 * M),
        status: Some(RunStatus::Completed),
        last_outcome: Some(Outcome::Success),
        last_push: Some(now - 10 * M),
        ..JobFacts::new(now - 1000 * H)
    }
}

fn view(spec: JobSpec, facts: JobFacts, escalation: Option<Escalation>) -> JobView {
    let now = Timestamp::now();
    let assessment = assess(&spec, &facts, now);
    JobView {
        spec: Arc::new(spec),
        facts,
        state: assessment.state(),
        assessment,
        escalation,
        last_duration: None,
        duration_threshold: None,
        errors_24h: 0,
        last_exit_code: None,
        recent_runs: Vec::new(),
        at: now,
    }
}

fn stale(name: &str, critical: bool, age: SignedDuration, level: Escalation) -> JobView {
    let now = Timestamp::now();
    let facts = JobFacts {
        last_success: Some(now - age),
        ..healthy(now)
    };
    view(spec(name, critical), facts, Some(level))
}

fn failed(name: &str, level: Escalation) -> JobView {
    let now = Timestamp::now();
    let facts = JobFacts {
        last_failure: Some(now - M),
        status: Some(RunStatus::Failed),
        last_outcome: Some(Outcome::Failure),
        ..healthy(now)
    };
    let mut v = view(spec(name, true), facts, Some(level));
    v.last_exit_code = Some(1);
    v
}

fn hung(name: &str) -> JobView {
    let now = Timestamp::now();
    let facts = JobFacts {
        last_start: Some(now - 3 * H),
        status: Some(RunStatus::Running),
        ..healthy(now)
    };
    let s = JobSpec {
        max_runtime: Some(2 * H),
        ..spec(name, false)
    };
    view(s, facts, None)
}

fn config(alertmanagers: &[&str], webhooks: &[&str]) -> Arc<Config> {
    Arc::new(Config {
        global: Global {
            alertmanagers: alertmanagers.iter().map(|s| s.to_string()).collect(),
            webhooks: webhooks.iter().map(|s| s.to_string()).collect(),
            ..Global::default()
        },
        ..Config::default()
    })
}

fn options() -> DeliveryOptions {
    DeliveryOptions {
        resend_interval: Duration::from_secs(1),
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(500),
        timeout: Duration::from_secs(2),
        external_url: "http://batchgate.test:9091".into(),
        ..DeliveryOptions::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The alerts Alertmanager holds (`GET /api/v2/alerts`).
async fn alertmanager_alerts(url: &str) -> Vec<Value> {
    let body = reqwest::Client::new()
        .get(format!("{url}/api/v2/alerts"))
        .send()
        .await
        .expect("GET /api/v2/alerts")
        .text()
        .await
        .expect("body");
    serde_json::from_str(&body).expect("alerts JSON")
}

#[test]
fn alerts_reach_alertmanager_escalate_and_resolve() {
    let rt = runtime();
    let (am_hook, plain) = rt.block_on(async { (Recorder::start().await, Recorder::start().await) });
    let am = support::alertmanager(&am_hook.url);
    rt.block_on(async {
        let (views_tx, views) = watch::channel(Arc::new(vec![stale("ef-update", false, 9 * H, Escalation::L1)]));
        let (_config_tx, config_rx) = watch::channel(config(&[&am.url], &[&plain.url]));
        let handle = alerts::spawn(views, config_rx, options());

        // L1: the runbook's BatchJobStale, with its labels.
        let stale_l1 = [
            ("alertname", "BatchJobStale"),
            ("job_name", "ef-update"),
            ("severity", "warning"),
            ("escalation", "L1"),
            ("team", "platform"),
        ];
        let a = am_hook.wait_for("firing", &stale_l1).await;
        assert!(
            a["annotations"]["description"]
                .as_str()
                .unwrap()
                .contains("max staleness 8h"),
            "{a}"
        );
        assert_eq!(a["generatorURL"], "http://batchgate.test:9091/?job=ef-update");
        am_hook
            .wait_for("firing", &[("alertname", "BatchGatewayWatchdog"), ("severity", "none")])
            .await;
        // The plain webhook got the Alertmanager payload straight from batchgate.
        plain.wait_for("firing", &stale_l1).await;
        let payload = plain.bodies.lock().unwrap()[0].clone();
        assert_eq!(payload["version"], "4");
        assert_eq!(payload["receiver"], "batchgate");
        assert!(payload["groupKey"].as_str().unwrap().starts_with("{}:{alertname="));
        // Alertmanager holds it.
        let held = alertmanager_alerts(&am.url).await;
        assert!(
            held.iter()
                .any(|a| a["labels"]["alertname"] == "BatchJobStale" && a["labels"]["job_name"] == "ef-update"),
            "{held:#?}"
        );
        let active = handle.active();
        assert!(active.iter().any(|a| a.labels["alertname"] == "BatchJobStale"));
        assert_eq!(handle.active_for("ef-update").len(), 1);

        // L2: a critical job stale for more than twice its interval; L3: two critical jobs at once;
        // failed and hung jobs.
        views_tx.send_replace(Arc::new(vec![
            stale("ef-update", true, 13 * H, Escalation::L2),
            failed("data-sync", Escalation::L3),
            stale("report-gen", true, 9 * H, Escalation::L3),
            hung("db-maintenance"),
        ]));
        am_hook
            .wait_for(
                "firing",
                &[
                    ("alertname", "BatchJobStale"),
                    ("job_name", "ef-update"),
                    ("escalation", "L2"),
                ],
            )
            .await;
        am_hook
            .wait_for(
                "firing",
                &[
                    ("alertname", "BatchJobFailed"),
                    ("job_name", "data-sync"),
                    ("escalation", "L3"),
                ],
            )
            .await;
        am_hook
            .wait_for(
                "firing",
                &[
                    ("alertname", "BatchJobStale"),
                    ("job_name", "report-gen"),
                    ("escalation", "L3"),
                ],
            )
            .await;
        let h = am_hook
            .wait_for(
                "firing",
                &[("alertname", "BatchJobHung"), ("job_name", "db-maintenance")],
            )
            .await;
        assert!(h["labels"].get("escalation").is_none(), "{h}");
        // Escalating resolved the L1 alert.
        am_hook.wait_for("resolved", &stale_l1).await;

        // Everything recovers: the alerts resolve, the watchdog stays.
        let now = Timestamp::now();
        views_tx.send_replace(Arc::new(vec![view(spec("ef-update", true), healthy(now), None)]));
        am_hook
            .wait_for(
                "resolved",
                &[
                    ("alertname", "BatchJobStale"),
                    ("job_name", "ef-update"),
                    ("escalation", "L2"),
                ],
            )
            .await;
        am_hook
            .wait_for(
                "resolved",
                &[("alertname", "BatchJobFailed"), ("job_name", "data-sync")],
            )
            .await;
        plain
            .wait_for(
                "resolved",
                &[("alertname", "BatchJobHung"), ("job_name", "db-maintenance")],
            )
            .await;
        let active = handle.active();
        assert_eq!(active.len(), 1, "{active:#?}");
        assert_eq!(active[0].labels["alertname"], "BatchGatewayWatchdog");

        assert!(handle.deliveries(&am.url, "success") >= 3);
        let families = handle.families();
        let names: Vec<_> = families.iter().filter_map(|f| f.name.clone()).collect();
        assert_eq!(names, ["batchgate_alert_deliveries_total", "batchgate_alerts_active"]);
    });
}

#[test]
fn alerts_arrive_once_a_down_alertmanager_is_back() {
    let rt = runtime();
    let hook = rt.block_on(Recorder::start());
    let port = support::free_port();
    let am_url = format!("http://127.0.0.1:{port}");
    rt.block_on(async {
        let (_views_tx, views) = watch::channel(Arc::new(vec![stale("ef-update", false, 9 * H, Escalation::L1)]));
        let (_config_tx, config_rx) = watch::channel(config(&[&am_url], &[]));
        let handle = alerts::spawn(views, config_rx, options());
        let deadline = Instant::now() + Duration::from_secs(10);
        while handle.deliveries(&am_url, "failure") < 2 {
            assert!(Instant::now() < deadline, "no failed delivery counted");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(handle.deliveries(&am_url, "success"), 0);

        let url = hook.url.clone();
        let am = tokio::task::spawn_blocking(move || support::alertmanager_on(port, &url))
            .await
            .expect("start alertmanager");
        hook.wait_for(
            "firing",
            &[
                ("alertname", "BatchJobStale"),
                ("job_name", "ef-update"),
                ("escalation", "L1"),
            ],
        )
        .await;
        hook.wait_for("firing", &[("alertname", "BatchGatewayWatchdog")]).await;
        assert!(handle.deliveries(&am_url, "success") >= 1);
        let held = alertmanager_alerts(&am.url).await;
        assert!(
            held.iter().any(|a| a["labels"]["alertname"] == "BatchJobStale"),
            "{held:#?}"
        );
        drop(am);
    });
}

/// Runs `promtool check rules` on a file, panicking with its output when it refuses it.
fn promtool_check(path: &std::path::Path) {
    let out = std::process::Command::new(support::require("promtool"))
        .args(["check", "rules"])
        .arg(path)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool refused {}:\n{}{}\n{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(path).unwrap_or_default()
    );
}

fn batchgate_rules(config: &std::path::Path, format: &str) -> String {
    let out = std::process::Command::new(support::batchgate_bin())
        .args(["rules", "--format", format, "--config"])
        .arg(config)
        .output()
        .expect("run batchgate rules");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn promtool_accepts_both_rule_formats() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The example config, and one exercising every rule (several critical jobs, max_duration, team).
    let full = dir.path().join("full.yml");
    std::fs::write(
        &full,
        "global:\n  metric_prefix: my_jobs\njobs:\n  - name: ef-update\n    schedule: '0 */6 * * *'\n    \
         max_staleness: 8h\n    critical: true\n    team: platform\n    runbook_url: https://r.example/x?a=1&b=\"2\"\n    \
         labels: {service: greenlang}\n  - name: data-sync\n    schedule: '0 2 * * *'\n    critical: true\n    \
         max_duration: 90m\n    max_errors_24h: 3\n  - name: \"odd.name\"\n    for: 0s\n",
    )
    .expect("write config");
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/batchgate.yml");
    for (i, config) in [example, full].iter().enumerate() {
        let rules = batchgate_rules(config, "rules");
        let path = dir.path().join(format!("rules-{i}.yml"));
        std::fs::write(&path, &rules).expect("write rules");
        promtool_check(&path);
        assert!(rules.contains("alert: BatchJobStale"));
        assert!(rules.contains("alert: BatchGatewayWatchdog"));

        let resource = batchgate_rules(config, "prometheusrule");
        let parsed: Value = serde_saphyr::from_str(&resource).expect("PrometheusRule YAML");
        assert_eq!(parsed["apiVersion"], "monitoring.coreos.com/v1");
        assert_eq!(parsed["kind"], "PrometheusRule");
        let spec_path = dir.path().join(format!("spec-{i}.yml"));
        std::fs::write(&spec_path, serde_json::to_string_pretty(&parsed["spec"]).expect("JSON")).expect("write");
        promtool_check(&spec_path);
        let plain: Value = serde_saphyr::from_str(&rules).expect("rules YAML");
        assert_eq!(plain, parsed["spec"], "both formats carry the same rules");
    }
    let full_rules = batchgate_rules(&dir.path().join("full.yml"), "rules");
    assert!(full_rules.contains("escalation: \"L3\""), "{full_rules}");
    assert!(full_rules.contains("my_jobs_last_success_timestamp"));
    assert!(full_rules.contains("alert: BatchJobDurationHigh"));
}

#[test]
fn rules_subcommand_reports_a_bad_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yml");
    std::fs::write(&bad, "jobs:\n  - name: x\n    max_stalenes: 1h\n").expect("write");
    let out = std::process::Command::new(support::batchgate_bin())
        .args(["rules", "--config"])
        .arg(&bad)
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.yml"));
}
