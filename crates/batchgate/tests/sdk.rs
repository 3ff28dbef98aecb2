//! The Rust SDK (`batchgate-client`) against real gateways: batchgate and the reference
//! Pushgateway (Debian's `prometheus-pushgateway`). The scraped series must have the names, types
//! and labels of SPEC §3.2 on both, and every awkward grouping-key value must arrive unchanged.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use batchgate_client::{BatchJobMetrics, Error, RetryPolicy};
use support::{Sample, Server, scrape, unix_now as now};

fn gateways() -> [Server; 2] {
    [Server::batchgate(&[]), Server::pushgateway(&[])]
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The `# TYPE` of `family` in a text exposition.
fn type_of<'a>(text: &'a str, family: &str) -> Option<&'a str> {
    let prefix = format!("# TYPE {family} ");
    text.lines().find_map(|l| l.strip_prefix(prefix.as_str()))
}

/// The pushed series of the SDK's families, by name and labels.
fn job_series(samples: &[Sample], prefix: &str) -> BTreeMap<(String, BTreeMap<String, String>), f64> {
    samples
        .iter()
        .filter(|s| s.name.starts_with(prefix))
        .map(|s| ((s.name.clone(), s.labels.clone()), s.value))
        .collect()
}

#[test]
fn a_run_pushes_the_spec_metrics_to_both_gateways() {
    for gw in gateways() {
        let m = BatchJobMetrics::new("ef-update", &gw.url).grouping_label("instance", "worker-1");
        let before = now();
        let run = m.start();
        std::thread::sleep(Duration::from_millis(50));
        m.record_error();
        m.record_error();
        let took = run.success();
        let after = now();
        m.push_blocking().expect("push");

        let (text, samples) = scrape(&gw);
        let key = [
            ("instance", "worker-1"),
            ("job", "ef-update"),
            ("job_name", "ef-update"),
        ];
        let series = job_series(&samples, "gl_batch_job_");
        let get = |name: &str, extra: &[(&str, &str)]| {
            let mut l = labels(&key);
            l.extend(labels(extra));
            *series
                .get(&(name.to_string(), l))
                .unwrap_or_else(|| panic!("{}: no {name}{extra:?} in {series:?}", gw.url))
        };
        for (family, ty) in [
            ("gl_batch_job_last_success_timestamp", "gauge"),
            ("gl_batch_job_last_start_timestamp", "gauge"),
            ("gl_batch_job_duration_seconds", "gauge"),
            ("gl_batch_job_exit_code", "gauge"),
            ("gl_batch_job_status", "gauge"),
            ("gl_batch_job_errors_total", "counter"),
        ] {
            assert_eq!(type_of(&text, family), Some(ty), "{}: {family}", gw.url);
        }
        let start = get("gl_batch_job_last_start_timestamp", &[]);
        let success = get("gl_batch_job_last_success_timestamp", &[]);
        assert!(before <= start && start <= success && success <= after);
        assert_eq!(get("gl_batch_job_duration_seconds", &[]), took.as_secs_f64());
        assert_eq!(get("gl_batch_job_exit_code", &[]), 0.0);
        assert_eq!(get("gl_batch_job_errors_total", &[]), 2.0);
        assert_eq!(get("gl_batch_job_status", &[("status", "running")]), 0.0);
        assert_eq!(get("gl_batch_job_status", &[("status", "completed")]), 1.0);
        assert_eq!(get("gl_batch_job_status", &[("status", "failed")]), 0.0);
        // Nothing else (5 families + 3 status series): no failure timestamp for a job that never failed.
        assert_eq!(series.len(), 8, "{}: {series:?}", gw.url);
    }
}

#[test]
fn push_add_keeps_the_last_success_and_push_replaces_the_group() {
    for gw in gateways() {
        let ok = BatchJobMetrics::new("data-sync", &gw.url);
        ok.start().success();
        ok.push_blocking().expect("push");

        // The next process fails, and POSTs: the last success stays.
        let failed = BatchJobMetrics::new("data-sync", &gw.url);
        failed.start().failure(3);
        failed.push_add_blocking().expect("push_add");
        let (_, samples) = scrape(&gw);
        let names: Vec<&str> = samples
            .iter()
            .filter(|s| s.name.starts_with("gl_batch_job_") && s.name != "gl_batch_job_status")
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "gl_batch_job_duration_seconds",
                "gl_batch_job_errors_total",
                "gl_batch_job_exit_code",
                "gl_batch_job_last_failure_timestamp",
                "gl_batch_job_last_start_timestamp",
                "gl_batch_job_last_success_timestamp",
            ],
            "{}",
            gw.url
        );
        let exit = samples
            .iter()
            .find(|s| s.name == "gl_batch_job_exit_code")
            .expect("exit code");
        assert_eq!(exit.value, 3.0);

        // A PUT replaces the whole group: the success timestamp is gone.
        failed.push_blocking().expect("push");
        let (_, samples) = scrape(&gw);
        assert!(
            !samples.iter().any(|s| s.name == "gl_batch_job_last_success_timestamp"),
            "{}",
            gw.url
        );
    }
}

#[test]
fn the_async_push_and_a_custom_prefix_work_on_both_gateways() {
    let servers = gateways();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for gw in &servers {
        rt.block_on(async {
            let m = BatchJobMetrics::new("async-job", &gw.url).prefix("acme_batch");
            let run = m.start();
            m.push_add().await.expect("start push");
            drop(run); // dropped without success: a failure
            m.push_add().await.expect("outcome push");
        });
        let (text, samples) = scrape(gw);
        assert_eq!(type_of(&text, "acme_batch_errors_total"), Some("counter"));
        let status: BTreeMap<&str, f64> = samples
            .iter()
            .filter(|s| s.name == "acme_batch_status")
            .map(|s| (s.labels["status"].as_str(), s.value))
            .collect();
        assert_eq!(
            status,
            BTreeMap::from([("completed", 0.0), ("failed", 1.0), ("running", 0.0)]),
            "{}",
            gw.url
        );
    }
}

/// Values that need escaping in a URL path, or look like they do.
const AWKWARD: &[&str] = &[
    "",
    "/",
    "a/b/c",
    "/var/tmp",
    "with space",
    " leading and trailing ",
    "a+b",
    "100%",
    "%2F",
    "%",
    "ü",
    "日本語",
    "a=b",
    "@base64",
    "x@base64",
    "L3Zhci90bXA",
    "=",
    ".",
    "..",
    "?q=1&r=2",
    "#frag",
    "semi;colon",
    "back\\slash",
    "quote\"d",
    "new\nline",
    "tab\there",
    "emoji 🎉",
];

#[test]
fn awkward_grouping_values_and_job_names_round_trip_through_both_gateways() {
    let mut seen: Vec<Vec<BTreeMap<String, String>>> = Vec::new();
    for gw in gateways() {
        for (i, value) in AWKWARD.iter().enumerate() {
            // As a grouping label value.
            let m = BatchJobMetrics::new(format!("escape-{i}"), &gw.url).grouping_label("key", *value);
            m.push_blocking()
                .unwrap_or_else(|e| panic!("{}: push of key={value:?}: {e}", gw.url));
            // As the job name (an empty job name is refused by the client, as by the gateways).
            let m = BatchJobMetrics::new(*value, &gw.url).grouping_label("key", format!("job-{i}"));
            match m.push_blocking() {
                Ok(()) => assert!(!value.is_empty()),
                Err(Error::EmptyJobName) => assert!(value.is_empty()),
                Err(e) => panic!("{}: push of job {value:?}: {e}", gw.url),
            }
        }
        let (_, samples) = scrape(&gw);
        let mut keys = Vec::new();
        for (i, value) in AWKWARD.iter().enumerate() {
            let job = format!("escape-{i}");
            let want = labels(&[("instance", ""), ("job", &job), ("job_name", &job), ("key", value)]);
            let got: Vec<_> = samples
                .iter()
                .filter(|s| s.name == "gl_batch_job_errors_total" && s.labels.get("job") == Some(&job))
                .map(|s| s.labels.clone())
                .collect();
            assert_eq!(got, std::slice::from_ref(&want), "{}: key={value:?}", gw.url);
            keys.push(want);
            if !value.is_empty() {
                let key = format!("job-{i}");
                let want = labels(&[("instance", ""), ("job", value), ("job_name", value), ("key", &key)]);
                let got: Vec<_> = samples
                    .iter()
                    .filter(|s| s.name == "gl_batch_job_errors_total" && s.labels.get("key") == Some(&key))
                    .map(|s| s.labels.clone())
                    .collect();
                assert_eq!(got, std::slice::from_ref(&want), "{}: job={value:?}", gw.url);
                keys.push(want);
            }
        }
        seen.push(keys);
    }
    assert_eq!(seen[0], seen[1], "batchgate and the Pushgateway disagree");
}

#[test]
fn a_route_prefix_and_basic_auth_header_are_accepted() {
    // Neither gateway checks credentials without a web config; the header must not break a push.
    let gw = Server::batchgate(&["--web.route-prefix=/gw"]);
    BatchJobMetrics::new("prefixed", &gw.url)
        .basic_auth("user", Some("secret".to_string()))
        .push_blocking()
        .expect("push under the route prefix");
    let (_, samples) = scrape(&gw);
    assert!(
        samples
            .iter()
            .any(|s| s.labels.get("job").map(String::as_str) == Some("prefixed"))
    );
}

#[test]
fn a_rejected_push_is_reported_once_with_the_gateways_message() {
    for gw in gateways() {
        // The same family name as a gauge in one group and a counter in another is refused.
        let put = |body: &str| {
            reqwest::blocking::Client::new()
                .put(format!("{}/metrics/job/other", gw.url))
                .body(body.to_string())
                .send()
                .expect("put")
        };
        assert!(
            put("# TYPE gl_batch_job_errors_total gauge\ngl_batch_job_errors_total 1\n")
                .status()
                .is_success()
        );
        let err = BatchJobMetrics::new("clash", &gw.url)
            .retry(RetryPolicy::attempts(3))
            .push_blocking()
            .expect_err("type clash");
        match &err {
            Error::Rejected {
                status: 400,
                attempts: 1,
                body,
                ..
            } => assert!(body.contains("is not a GAUGE") || body.contains("COUNTER"), "{body}"),
            e => panic!("{}: {e:?}", gw.url),
        }
    }
}

#[test]
fn batchgate_records_the_sdk_run_with_its_duration_and_outcome() {
    let gw = Server::batchgate(&[]);
    let m = BatchJobMetrics::new("ef-sdk", &gw.url);
    let run = m.start();
    m.push_add_blocking().expect("start push");
    std::thread::sleep(Duration::from_millis(100));
    let took = run.success();
    m.push_add_blocking().expect("outcome push");

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let job = loop {
        let body = reqwest::blocking::get(format!("{}/api/v1/jobs/ef-sdk", gw.url))
            .and_then(|r| r.text())
            .expect("GET /api/v1/jobs/ef-sdk");
        let job = serde_json::from_str::<serde_json::Value>(&body).expect("JSON")["data"].clone();
        if job["runs"].as_array().is_some_and(|r| !r.is_empty()) || std::time::Instant::now() > deadline {
            break job;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let runs = job["runs"].as_array().unwrap_or_else(|| panic!("no runs: {job}"));
    assert_eq!(runs.len(), 1, "{job}");
    assert_eq!(runs[0]["outcome"], "success", "{job}");
    assert_eq!(runs[0]["exit_code"], 0, "{job}");
    let duration = runs[0]["duration_seconds"].as_f64().unwrap_or(-1.0);
    assert!(
        (duration - took.as_secs_f64()).abs() < 0.01,
        "{duration} vs {took:?}: {job}"
    );
    assert_eq!(job["state"], "ok", "{job}");
}
