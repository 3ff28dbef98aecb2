//! Batch jobs end to end: the runbook's `ef-update` pushed over HTTP and seen in `/api/v1/jobs`,
//! `/metrics` and `batchgate jobs`; config reloads (SIGHUP and `POST /-/reload`); run history kept
//! across a restart.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Server, batchgate_bin, http_client as client, parse_exposition, unix_now as now};

const EXAMPLE: &str = include_str!("../../../examples/batchgate.yml");

fn put(server: &Server, path: &str, body: String) {
    let r = client()
        .put(format!("{}{path}", server.url))
        .body(body)
        .send()
        .expect("push");
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap_or_default());
}

fn get_json(server: &Server, path: &str) -> (u16, Value) {
    let r = client().get(format!("{}{path}", server.url)).send().expect("get");
    let status = r.status().as_u16();
    let text = r.text().expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}")),
    )
}

fn job(server: &Server, name: &str) -> Value {
    let (status, body) = get_json(server, &format!("/api/v1/jobs/{name}"));
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

fn job_names(server: &Server) -> Vec<String> {
    let (status, body) = get_json(server, "/api/v1/jobs");
    assert_eq!(status, 200);
    assert_eq!(body["status"], "success");
    body["data"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|j| j["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Polls `check` for up to 10 s.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The runbook SDK's metrics for ef-update.
fn sdk(success: f64, extra: &str) -> String {
    format!(
        "# TYPE gl_batch_job_last_success_timestamp gauge\n\
         gl_batch_job_last_success_timestamp{{job_name=\"ef-update\"}} {success}\n{extra}"
    )
}

fn write_config(path: &Path, extra_jobs: &str) {
    let text = EXAMPLE.replace("evaluation_interval: 30s", "evaluation_interval: 1s");
    let text = text.replace("jobs:\n", &format!("jobs:\n{extra_jobs}"));
    std::fs::write(path, text).expect("write config");
}

fn reload(server: &Server) -> (u16, String) {
    let r = client()
        .post(format!("{}/-/reload", server.url))
        .send()
        .expect("reload");
    (r.status().as_u16(), r.text().unwrap_or_default())
}

fn sighup(server: &Server) {
    let ok = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
}

#[test]
fn jobs_from_pushes_api_metrics_cli_reload_and_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = dir.path().join("batchgate.yml");
    write_config(&config, "");
    let config_arg = format!("--config={}", config.display());
    let mut server = Server::batchgate_at(&data, &[&config_arg, "--web.enable-lifecycle"]);

    // Declared jobs are there before any push.
    assert_eq!(job_names(&server), ["data-sync", "ef-update"]);

    // The runbook's scenario: last success 9 h ago, max staleness 8 h.
    let t = now();
    put(&server, "/metrics/job/ef-update", sdk(t - 9.0 * 3600.0, ""));
    let ef = job(&server, "ef-update");
    assert_eq!(ef["state"], "stale", "{ef}");
    assert_eq!(ef["registered"], true);
    assert_eq!(ef["critical"], true);
    assert_eq!(ef["schedule"], "0 */6 * * *");
    assert_eq!(ef["timezone"], "UTC");
    assert_eq!(ef["max_staleness_seconds"], 8.0 * 3600.0);
    assert_eq!(ef["escalation"], "L1");
    assert!(ef["staleness_seconds"].as_f64().unwrap() >= 9.0 * 3600.0, "{ef}");
    assert!(ef["last_success"].as_str().unwrap().ends_with('Z'), "{ef}");
    assert!(ef["next_expected_run"].is_string(), "{ef}");
    assert_eq!(ef["running_since"], Value::Null);
    // The stale job's alert shows on the job (pending until its `for` has passed).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let alerts = job(&server, "ef-update")["active_alerts"].clone();
        let stale = alerts
            .as_array()
            .and_then(|a| a.iter().find(|a| a["name"] == "BatchJobStale"))
            .cloned();
        if let Some(alert) = stale {
            assert_eq!(alert["labels"]["escalation"], "L1", "{alert}");
            assert_eq!(alert["labels"]["severity"], "warning", "{alert}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no BatchJobStale among {alerts}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // A run: started, then succeeded.
    let start = now() - 2.0;
    let running = format!(
        "gl_batch_job_status{{job_name=\"ef-update\",status=\"running\"}} 1\n\
         gl_batch_job_last_start_timestamp{{job_name=\"ef-update\"}} {start}\n"
    );
    put(&server, "/metrics/job/ef-update", sdk(t - 9.0 * 3600.0, &running));
    eventually("state running", || job(&server, "ef-update")["state"] == "running");
    let ef = job(&server, "ef-update");
    assert!(ef["running_since"].is_string(), "{ef}");
    assert_eq!(ef["runs"][0]["outcome"], "running", "{ef}");

    let end = now();
    let done = format!(
        "gl_batch_job_status{{job_name=\"ef-update\",status=\"completed\"}} 1\n\
         gl_batch_job_last_start_timestamp{{job_name=\"ef-update\"}} {start}\n\
         gl_batch_job_duration_seconds{{job_name=\"ef-update\"}} 2.5\n\
         gl_batch_job_exit_code{{job_name=\"ef-update\"}} 0\n"
    );
    put(&server, "/metrics/job/ef-update", sdk(end, &done));
    eventually("state ok", || job(&server, "ef-update")["state"] == "ok");
    let ef = job(&server, "ef-update");
    let run = &ef["runs"][0];
    assert_eq!(run["outcome"], "success", "{ef}");
    assert_eq!(run["duration_seconds"], 2.5, "{ef}");
    assert_eq!(run["exit_code"], 0, "{ef}");
    assert!(run["start"].is_string() && run["end"].is_string(), "{run}");
    assert_eq!(ef["last_duration_seconds"], 2.5);
    assert_eq!(ef["escalation"], Value::Null);

    // A job nobody declared.
    put(&server, "/metrics/job/adhoc", "rows_copied 12\n".into());
    eventually("adhoc discovered", || job_names(&server).contains(&"adhoc".to_owned()));
    let adhoc = job(&server, "adhoc");
    assert_eq!(adhoc["registered"], false);
    assert_eq!(adhoc["state"], "ok");
    assert_eq!(adhoc["schedule"], Value::Null);

    let (status, body) = get_json(&server, "/api/v1/jobs/nope");
    assert_eq!((status, body["status"].as_str()), (404, Some("error")), "{body}");
    assert!(body["error"].as_str().unwrap().contains("nope"));

    // The per-job series on /metrics.
    let text = client()
        .get(format!("{}/metrics", server.url))
        .send()
        .and_then(|r| r.text())
        .expect("scrape");
    let samples = parse_exposition(&text);
    let value = |name: &str, labels: &[(&str, &str)]| {
        samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
    };
    assert_eq!(
        value("batchgate_job_state", &[("job_name", "ef-update"), ("state", "ok")]),
        Some(1.0)
    );
    assert_eq!(
        value("batchgate_job_state", &[("job_name", "ef-update"), ("state", "stale")]),
        Some(0.0)
    );
    let states = samples
        .iter()
        .filter(|s| s.name == "batchgate_job_state" && s.labels["job_name"] == "data-sync")
        .count();
    assert_eq!(states, 10, "every state listed");
    assert_eq!(
        value("batchgate_job_max_staleness_seconds", &[("job_name", "ef-update")]),
        Some(28_800.0)
    );
    assert!(value("batchgate_job_staleness_seconds", &[("job_name", "ef-update")]).is_some_and(|s| s < 60.0));
    let next = value("batchgate_job_next_expected_timestamp", &[("job_name", "ef-update")]).expect("next");
    assert!(next > now() && next <= now() + 6.0 * 3600.0, "{next}");
    assert_eq!(
        value("batchgate_job_next_expected_timestamp", &[("job_name", "adhoc")]),
        None,
        "unscheduled"
    );
    // A push clashing with the type of batchgate's own job series is refused.
    let r = client()
        .put(format!("{}/metrics/job/clash", server.url))
        .body("# TYPE batchgate_job_state counter\nbatchgate_job_state 1\n")
        .send()
        .expect("push");
    assert_eq!(r.status().as_u16(), 400);

    // `batchgate jobs`.
    let out = Command::new(batchgate_bin())
        .args(["jobs", "--url", &server.url])
        .env_remove("BATCHGATE_URL")
        .output()
        .expect("batchgate jobs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("STATE") && lines[0].ends_with("ESCALATION"),
        "{stdout}"
    );
    let ef_line = lines.iter().find(|l| l.starts_with("ef-update ")).expect(&stdout);
    assert!(
        ef_line.contains(" ok ") && ef_line.contains("s ago") && ef_line.contains("/8h"),
        "{stdout}"
    );
    assert!(stdout.contains("adhoc (unregistered)"), "{stdout}");
    let out = Command::new(batchgate_bin())
        .args(["jobs", "--url", "http://127.0.0.1:9"])
        .env_remove("BATCHGATE_URL")
        .output()
        .expect("batchgate jobs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot reach batchgate at http://127.0.0.1:9") && stderr.contains("--url"),
        "{stderr}"
    );

    // Reload over HTTP: a good config, then a bad one (kept the good one).
    write_config(&config, "  - name: added-by-reload\n    schedule: '@daily'\n");
    assert_eq!(reload(&server), (200, "config reloaded\n".to_owned()));
    assert_eq!(job(&server, "added-by-reload")["registered"], true);
    std::fs::write(&config, "jobs:\n  - name: broken\n    schedule: 'not a cron'\n").expect("write");
    let (status, text) = reload(&server);
    assert_eq!(status, 500, "{text}");
    assert!(text.contains(":3: job \"broken\": invalid schedule"), "{text}");
    assert!(job_names(&server).contains(&"added-by-reload".to_owned()));
    let r = client().get(format!("{}/-/reload", server.url)).send().expect("get");
    assert_eq!(r.status().as_u16(), 405);

    // Reload on SIGHUP: good, then bad.
    write_config(&config, "  - name: added-by-sighup\n");
    sighup(&server);
    eventually("SIGHUP reload", || {
        job_names(&server).contains(&"added-by-sighup".to_owned())
    });
    assert!(!job_names(&server).contains(&"added-by-reload".to_owned()));
    std::fs::write(&config, "jobs: [\n").expect("write");
    sighup(&server);
    eventually("the reload error in the log", || {
        server.log_text().contains("config reload failed")
    });
    assert!(job_names(&server).contains(&"added-by-sighup".to_owned()));

    // Run history survives a restart.
    assert!(server.terminate().success());
    write_config(&config, "");
    let server = Server::batchgate_at(&data, &[&config_arg]);
    let ef = job(&server, "ef-update");
    assert_eq!(ef["state"], "ok", "{ef}");
    let run = &ef["runs"][0];
    assert_eq!(
        (&run["outcome"], &run["duration_seconds"], &run["exit_code"]),
        (&Value::from("success"), &Value::from(2.5), &Value::from(0)),
        "{ef}"
    );
    assert!(
        job_names(&server).contains(&"adhoc".to_owned()),
        "its group is still stored"
    );
    // Without --web.enable-lifecycle, POST /-/reload is refused (SIGHUP still works).
    assert_eq!(reload(&server), (403, "Lifecycle API is not enabled.\n".to_owned()));
}

#[test]
fn a_bad_config_refuses_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("bad.yml");
    std::fs::write(&config, "jobs:\n  - name: a\n    max_stalenes: 1h\n").expect("write");
    let out = Command::new(batchgate_bin())
        .arg("serve")
        .arg(format!("--storage.path={}", dir.path().join("data").display()))
        .arg(format!("--config={}", config.display()))
        .arg("--web.listen-address=127.0.0.1:0")
        .output()
        .expect("batchgate serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("bad.yml:3: unknown field `max_stalenes`"), "{stderr}");
    assert!(
        !dir.path().join("data").exists(),
        "nothing opened before the config is checked"
    );
}
