//! `batchgate run`: exit codes, signals, timeouts and output passed through; the start and the
//! outcome pushed to batchgate and to the reference Pushgateway; a gateway outage never changing
//! the command's exit code.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use support::{Sample, Server, batchgate_bin, scrape, unix_now as now};

/// What a finished `batchgate run` left.
struct Ran {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
    stderr_bytes: Vec<u8>,
    elapsed: Duration,
}

/// `batchgate run ARGS`, without any `BATCHGATE_*` variable of the test's environment.
fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(batchgate_bin());
    cmd.arg("run").args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("BATCHGATE_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    cmd
}

/// Waits for `child` (at most 30 s, then kills it and fails), collecting its output.
fn finish(mut child: Child, started: Instant) -> Ran {
    let mut out = child.stdout.take().expect("stdout piped");
    let mut err = child.stderr.take().expect("stderr piped");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = wait_at_most(&mut child, Duration::from_secs(30));
    let elapsed = started.elapsed();
    let stderr_bytes = t_err.join().expect("stderr thread");
    Ran {
        code: status.code(),
        stdout: t_out.join().expect("stdout thread"),
        stderr: String::from_utf8_lossy(&stderr_bytes).into_owned(),
        stderr_bytes,
        elapsed,
    }
}

fn wait_at_most(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("batchgate run did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `batchgate run ARGS` to the end, feeding it `stdin`.
fn run(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Ran {
    let started = Instant::now();
    let mut child = command(args, env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn batchgate run");
    let mut input = child.stdin.take().expect("stdin piped");
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        // The command may not read its input; a broken pipe is fine then.
        let _ = input.write_all(&data);
    });
    let ran = finish(child, started);
    feeder.join().expect("stdin thread");
    ran
}

/// A gateway URL nothing listens on: port 1 (tcpmux) on loopback, refused at once, and unlike a
/// freed ephemeral port never handed to a server another test starts meanwhile.
fn down_gateway() -> String {
    "http://127.0.0.1:1".to_string()
}

/// The value of `name` for job `job` (and `extra` labels), if exactly one such series exists.
fn value(samples: &[Sample], name: &str, job: &str, extra: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<f64> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && s.labels.get("job_name").map(String::as_str) == Some(job)
                && s.labels.get("job").map(String::as_str) == Some(job)
                && extra
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .collect();
    assert!(found.len() <= 1, "{name} of {job}: several series {found:?}");
    found.first().copied()
}

fn status_of(samples: &[Sample], job: &str) -> BTreeMap<String, f64> {
    ["running", "completed", "failed"]
        .iter()
        .filter_map(|s| value(samples, "gl_batch_job_status", job, &[("status", s)]).map(|v| (s.to_string(), v)))
        .collect()
}

fn only(status: &str) -> BTreeMap<String, f64> {
    ["running", "completed", "failed"]
        .iter()
        .map(|s| (s.to_string(), if *s == status { 1.0 } else { 0.0 }))
        .collect()
}

/// Deterministic pseudo-random bytes (xorshift), every byte value included.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out: Vec<u8> = (0..=255u8).collect();
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(Instant::now() < deadline, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn exit_codes_are_passed_through_and_pushed() {
    let gw = Server::batchgate(&[]);
    let cases = [("exit 0", 0), ("exit 1", 1), ("exit 42", 42), ("kill -9 $$", 137)];
    for (script, expected) in cases {
        let job = format!("exit-{expected}");
        let ran = run(
            &["--job", &job, "--gateway", &gw.url, "--", "sh", "-c", script],
            &[],
            b"",
        );
        assert_eq!(ran.code, Some(expected), "{script}: {}", ran.stderr);
        assert_eq!(ran.stderr, "", "{script}");
    }
    let (_, samples) = scrape(&gw);
    for (script, expected) in cases {
        let job = format!("exit-{expected}");
        assert_eq!(
            value(&samples, "gl_batch_job_exit_code", &job, &[]),
            Some(f64::from(expected)),
            "{script}"
        );
        let status = if expected == 0 { "completed" } else { "failed" };
        assert_eq!(status_of(&samples, &job), only(status), "{script}");
        assert_eq!(
            value(&samples, "gl_batch_job_errors_total", &job, &[]),
            Some(if expected == 0 { 0.0 } else { 1.0 })
        );
    }
}

#[test]
fn a_command_that_cannot_run_exits_127_and_is_a_failure() {
    let gw = Server::batchgate(&[]);
    let ran = run(
        &["--job", "missing", "--gateway", &gw.url, "--", "/nonexistent/command"],
        &[],
        b"",
    );
    assert_eq!(ran.code, Some(127));
    assert!(ran.stderr.contains("cannot run /nonexistent/command"), "{}", ran.stderr);
    let (_, samples) = scrape(&gw);
    assert_eq!(value(&samples, "gl_batch_job_exit_code", "missing", &[]), Some(127.0));
    assert_eq!(status_of(&samples, "missing"), only("failed"));
}

#[test]
fn timeout_kills_the_command_and_records_a_failure() {
    let gw = Server::batchgate(&[]);
    let ran = run(
        &[
            "--job",
            "slow",
            "--gateway",
            &gw.url,
            "--timeout",
            "500ms",
            "--",
            "sleep",
            "20",
        ],
        &[],
        b"",
    );
    assert_eq!(ran.code, Some(143), "{}", ran.stderr); // SIGTERM
    assert!(ran.elapsed < Duration::from_secs(5), "{:?}", ran.elapsed);
    assert!(ran.stderr.contains("ran longer than --timeout"), "{}", ran.stderr);
    let (_, samples) = scrape(&gw);
    assert_eq!(status_of(&samples, "slow"), only("failed"));
    assert_eq!(value(&samples, "gl_batch_job_exit_code", "slow", &[]), Some(143.0));
    let duration = value(&samples, "gl_batch_job_duration_seconds", "slow", &[]).expect("duration");
    assert!((0.5..5.0).contains(&duration), "{duration}");
    assert!(value(&samples, "gl_batch_job_last_failure_timestamp", "slow", &[]).is_some());
    assert!(value(&samples, "gl_batch_job_last_success_timestamp", "slow", &[]).is_none());

    // A command that ignores SIGTERM is killed --kill-after later.
    let ran = run(
        &[
            "--job",
            "stubborn",
            "--gateway",
            &gw.url,
            "--timeout",
            "300ms",
            "--kill-after",
            "300ms",
            "--",
            "sh",
            "-c",
            "trap '' TERM; while :; do sleep 0.05; done",
        ],
        &[],
        b"",
    );
    assert_eq!(ran.code, Some(137), "{}", ran.stderr); // SIGKILL
    assert!(ran.elapsed < Duration::from_secs(5), "{:?}", ran.elapsed);
    assert!(ran.stderr.contains("sending SIGKILL"), "{}", ran.stderr);
    let (_, samples) = scrape(&gw);
    assert_eq!(value(&samples, "gl_batch_job_exit_code", "stubborn", &[]), Some(137.0));
}

#[test]
fn output_and_input_pass_through_byte_for_byte() {
    let gw = Server::batchgate(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = noise(100_000);
    let file = dir.path().join("data.bin");
    std::fs::write(&file, &data).expect("write data");
    let file = file.to_str().expect("utf-8 path");
    let base = ["--job", "bytes", "--gateway", gw.url.as_str(), "--"];

    let ran = run(&[&base[..], &["cat", file]].concat(), &[], b"");
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(ran.stdout == data, "stdout differs ({} bytes)", ran.stdout.len());

    let ran = run(
        &[&base[..], &["sh", "-c", "cat \"$1\" >&2", "sh", file]].concat(),
        &[],
        b"",
    );
    assert_eq!(ran.code, Some(0));
    assert!(ran.stdout.is_empty());
    assert!(
        ran.stderr_bytes == data,
        "stderr differs ({} bytes)",
        ran.stderr_bytes.len()
    );

    let ran = run(&[&base[..], &["cat"]].concat(), &[], &data);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        ran.stdout == data,
        "stdin → stdout differs ({} bytes)",
        ran.stdout.len()
    );

    let ran = run(&[&base[..], &["printf", "a\\000b\\377\\r\\n"]].concat(), &[], b"");
    assert_eq!(ran.stdout, b"a\0b\xff\r\n");
}

#[test]
fn a_gateway_that_is_down_does_not_change_the_exit_code() {
    let url = down_gateway();
    // Default retry policy: 3 attempts, 1 s and 2 s apart.
    let ran = run(
        &[
            "--job",
            "offline",
            "--gateway",
            &url,
            "--",
            "sh",
            "-c",
            "echo out; exit 3",
        ],
        &[],
        b"",
    );
    assert_eq!(ran.code, Some(3), "{}", ran.stderr);
    assert_eq!(ran.stdout, b"out\n");
    assert!(
        ran.stderr
            .contains("warning: could not push the outcome of job \"offline\" (failure, exit code 3)"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("after 3 attempt(s)"), "{}", ran.stderr);
    assert!(ran.stderr.contains("Connection refused"), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("exit code is passed through unchanged"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("could not push the start"), "{}", ran.stderr);
    assert!(
        ran.elapsed >= Duration::from_secs(3) && ran.elapsed < Duration::from_secs(10),
        "{:?}",
        ran.elapsed
    );

    let ran = run(
        &[
            "--job",
            "offline",
            "--gateway",
            &url,
            "--push-attempts",
            "1",
            "--",
            "true",
        ],
        &[],
        b"",
    );
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(ran.stderr.contains("warning"), "{}", ran.stderr);

    // --fail-on-push-error fails a successful command, and keeps a failing one's code.
    let strict = [
        "--job",
        "offline",
        "--gateway",
        &url,
        "--push-attempts",
        "1",
        "--fail-on-push-error",
    ];
    let ran = run(&[&strict[..], &["--", "true"]].concat(), &[], b"");
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("exiting with 1 (--fail-on-push-error)"),
        "{}",
        ran.stderr
    );
    let ran = run(&[&strict[..], &["--", "sh", "-c", "exit 5"]].concat(), &[], b"");
    assert_eq!(ran.code, Some(5), "{}", ran.stderr);
}

/// Checks the metrics of a successful run `job` on a gateway, returning its last success time.
fn check_success(gw: &Server, job: &str, min_duration: f64, before: f64, after: f64) -> f64 {
    let (text, samples) = scrape(gw);
    for (family, ty) in [
        ("gl_batch_job_last_success_timestamp", "gauge"),
        ("gl_batch_job_last_start_timestamp", "gauge"),
        ("gl_batch_job_duration_seconds", "gauge"),
        ("gl_batch_job_exit_code", "gauge"),
        ("gl_batch_job_status", "gauge"),
        ("gl_batch_job_errors_total", "counter"),
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} {ty}\n")),
            "{family} {ty}:\n{text}"
        );
    }
    let start = value(
        &samples,
        "gl_batch_job_last_start_timestamp",
        job,
        &[("instance", "w1")],
    )
    .expect("start");
    let success = value(&samples, "gl_batch_job_last_success_timestamp", job, &[]).expect("success");
    let duration = value(&samples, "gl_batch_job_duration_seconds", job, &[]).expect("duration");
    assert!(
        before <= start && start <= success && success <= after,
        "{before} {start} {success} {after}"
    );
    assert!(duration >= min_duration && duration <= after - before, "{duration}");
    assert_eq!(value(&samples, "gl_batch_job_exit_code", job, &[]), Some(0.0));
    assert_eq!(value(&samples, "gl_batch_job_errors_total", job, &[]), Some(0.0));
    assert_eq!(status_of(&samples, job), only("completed"));
    success
}

#[test]
fn the_outcome_pushed_to_both_gateways_shows_duration_exit_code_and_status() {
    for gw in [Server::batchgate(&[]), Server::pushgateway(&[])] {
        let job = "nightly-report";
        let args = [
            "--job",
            job,
            "--gateway",
            gw.url.as_str(),
            "--label",
            "instance=w1",
            "--",
        ];
        let before = now();
        let ran = run(&[&args[..], &["sh", "-c", "sleep 0.4"]].concat(), &[], b"");
        let after = now();
        assert_eq!(ran.code, Some(0), "{}", ran.stderr);
        assert_eq!(ran.stderr, "");
        let success = check_success(&gw, job, 0.4, before, after);

        // A failed run keeps the last success (POST) and adds the failure.
        let ran = run(&[&args[..], &["sh", "-c", "exit 9"]].concat(), &[], b"");
        assert_eq!(ran.code, Some(9));
        let (_, samples) = scrape(&gw);
        assert_eq!(
            value(&samples, "gl_batch_job_last_success_timestamp", job, &[]),
            Some(success),
            "{}",
            gw.url
        );
        let failure = value(&samples, "gl_batch_job_last_failure_timestamp", job, &[]).expect("failure");
        assert!(failure >= success);
        assert_eq!(value(&samples, "gl_batch_job_exit_code", job, &[]), Some(9.0));
        assert_eq!(value(&samples, "gl_batch_job_errors_total", job, &[]), Some(1.0));
        assert_eq!(status_of(&samples, job), only("failed"));
        for s in samples.iter().filter(|s| s.name.starts_with("gl_batch_job_")) {
            let names: Vec<&str> = s.labels.keys().map(String::as_str).collect();
            let expected: &[&str] = if s.name == "gl_batch_job_status" {
                &["instance", "job", "job_name", "status"]
            } else {
                &["instance", "job", "job_name"]
            };
            assert_eq!(names, expected, "{}: {:?}", gw.url, s);
        }
    }
}

#[test]
fn the_running_status_is_pushed_while_the_command_runs() {
    let gw = Server::batchgate(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = dir.path().join("stop");
    let script = format!("while [ ! -e '{}' ]; do sleep 0.02; done", stop.display());
    let started = Instant::now();
    let child = command(&["--job", "long", "--gateway", &gw.url, "--", "sh", "-c", &script], &[])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, samples) = scrape(&gw);
        if status_of(&samples, "long") == only("running") {
            assert!(value(&samples, "gl_batch_job_last_start_timestamp", "long", &[]).is_some());
            assert!(value(&samples, "gl_batch_job_duration_seconds", "long", &[]).is_none());
            break;
        }
        assert!(Instant::now() < deadline, "status never became running: {samples:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::write(&stop, b"").expect("stop file");
    let ran = finish(child, started);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let (_, samples) = scrape(&gw);
    assert_eq!(status_of(&samples, "long"), only("completed"));
}

#[test]
fn sigterm_and_sigint_are_forwarded_to_the_command() {
    let gw = Server::batchgate(&[]);
    for (signal, code) in [("TERM", 7), ("INT", 8)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let ready = dir.path().join("ready");
        let script = format!(
            "trap 'exit {code}' {signal}; touch '{}'; while :; do sleep 0.02; done",
            ready.display()
        );
        let job = format!("signal-{signal}");
        let started = Instant::now();
        let child = command(&["--job", &job, "--gateway", &gw.url, "--", "sh", "-c", &script], &[])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        wait_for_file(&ready);
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .expect("kill");
        assert!(sent.success());
        let ran = finish(child, started);
        assert_eq!(ran.code, Some(code), "SIG{signal}: {}", ran.stderr);
        let (_, samples) = scrape(&gw);
        assert_eq!(
            value(&samples, "gl_batch_job_exit_code", &job, &[]),
            Some(f64::from(code))
        );
    }
}

#[test]
fn settings_come_from_the_environment() {
    let gw = Server::batchgate(&[]);
    let ran = run(
        &["--", "sh", "-c", "exit 0"],
        &[
            ("BATCHGATE_URL", gw.url.as_str()),
            ("BATCHGATE_JOB", "from-env"),
            ("BATCHGATE_LABELS", "instance=w1,team=data"),
            ("BATCHGATE_TIMEOUT", "1m"),
            ("BATCHGATE_PREFIX", "acme_job"),
        ],
        b"",
    );
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let (_, samples) = scrape(&gw);
    let exit = samples
        .iter()
        .find(|s| s.name == "acme_job_exit_code")
        .expect("acme_job_exit_code pushed");
    let labels: Vec<(&str, &str)> = exit.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        labels,
        [
            ("instance", "w1"),
            ("job", "from-env"),
            ("job_name", "from-env"),
            ("team", "data")
        ]
    );
}

#[test]
fn bad_settings_fail_before_running_the_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("ran");
    let touch = format!("touch '{}'", marker.display());
    for args in [
        vec!["--job", "j", "--label", "job=x"],
        vec!["--job", "j", "--gateway", "ftp://x"],
        vec!["--job", "j", "--gateway", "https://x"],
        vec!["--job", ""],
        vec!["--job", "j", "--prefix", "1bad"],
    ] {
        let ran = run(&[&args[..], &["--", "sh", "-c", &touch]].concat(), &[], b"");
        assert_eq!(ran.code, Some(125), "{args:?}: {}", ran.stderr);
        assert!(ran.stderr.starts_with("batchgate run: "), "{}", ran.stderr);
        assert!(!marker.exists(), "{args:?} ran the command");
    }
    let ran = run(&["--job", "j", "--timeout", "soon", "--", "true"], &[], b"");
    assert_eq!(ran.code, Some(2), "{}", ran.stderr); // clap's usage error
}

/// The job's record in batchgate's jobs API.
fn job_json(gw: &Server, job: &str) -> serde_json::Value {
    let body = reqwest::blocking::get(format!("{}/api/v1/jobs/{job}", gw.url))
        .and_then(|r| r.text())
        .expect("GET /api/v1/jobs/{job}");
    serde_json::from_str::<serde_json::Value>(&body).expect("JSON")["data"].clone()
}

#[test]
fn runs_show_up_in_the_jobs_api_with_duration_and_exit_code() {
    let gw = Server::batchgate(&[]);
    let failed = run(
        &[
            "--job",
            "nightly",
            "--gateway",
            &gw.url,
            "--",
            "sh",
            "-c",
            "sleep 0.3; exit 42",
        ],
        &[],
        b"",
    );
    assert_eq!(failed.code, Some(42), "{}", failed.stderr);
    let ok = run(
        &["--job", "nightly", "--gateway", &gw.url, "--", "sh", "-c", "sleep 0.2"],
        &[],
        b"",
    );
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);

    // The registry follows the store asynchronously: wait for both runs.
    let deadline = Instant::now() + Duration::from_secs(10);
    let job = loop {
        let job = job_json(&gw, "nightly");
        if job["runs"].as_array().is_some_and(|r| r.len() >= 2) || Instant::now() > deadline {
            break job;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let runs = job["runs"].as_array().unwrap_or_else(|| panic!("no runs: {job}"));
    assert_eq!(runs.len(), 2, "{job}");
    // Newest first.
    assert_eq!(runs[0]["outcome"], "success", "{job}");
    assert_eq!(runs[0]["exit_code"], 0, "{job}");
    assert!(
        runs[0]["duration_seconds"]
            .as_f64()
            .is_some_and(|d| (0.2..5.0).contains(&d)),
        "{job}"
    );
    assert_eq!(runs[1]["outcome"], "failure", "{job}");
    assert_eq!(runs[1]["exit_code"], 42, "{job}");
    assert!(
        runs[1]["duration_seconds"]
            .as_f64()
            .is_some_and(|d| (0.3..5.0).contains(&d)),
        "{job}"
    );
    assert_eq!(job["state"], "ok", "{job}");
    assert_eq!(job["registered"], false, "{job}");
}
