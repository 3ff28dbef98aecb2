//! Real clients against batchgate, each compared with the reference Pushgateway:
//! the official Python client (`prometheus_client`), `curl`, and a real Prometheus (2.42) scraping
//! with `honor_labels: true`.
//!
//! Every scenario runs against the reference first, so a broken scenario shows up as a failure of
//! the `*_reference_*` test rather than as a batchgate bug.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use support::{Sample, Server, parse_exposition, parse_value};

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

fn get_text(url: &str) -> String {
    let r = http().get(url).send().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status();
    let body = r.text().expect("body");
    assert!(status.is_success(), "GET {url} gave {status}: {body}");
    body
}

fn get_json(url: &str) -> Value {
    let body = get_text(url);
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {body}"))
}

fn now_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Runs `cmd` to completion or kills it after `limit`.
fn run_with_timeout(cmd: &mut Command, limit: Duration, what: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    // Drain the pipes on threads so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
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
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// The label values whose text differs between clients for the same number (`1.0` vs `1`).
fn canonical_labels(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|(k, v)| {
            let v = if k == "le" || k == "quantile" {
                parse_value(v).map_or_else(|| v.clone(), |f| format!("{f:?}"))
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

fn series_id(name: &str, labels: &BTreeMap<String, String>) -> String {
    let labels: Vec<String> = canonical_labels(labels)
        .iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    format!("{name}{{{}}}", labels.join(","))
}

fn same_value(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

/// The family blocks (`# HELP`, `# TYPE` and samples) of `families` in a text exposition, in the
/// server's order, with the values that legitimately differ between two runs (`push_time_seconds`,
/// `push_failure_time_seconds` and the Python client's `*_created`) replaced by a placeholder.
fn family_blocks(text: &str, families: &BTreeSet<String>) -> String {
    let mut out = String::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ").or_else(|| line.strip_prefix("# TYPE ")) {
            current = rest.split(' ').next().unwrap_or_default().to_string();
        } else if !line.starts_with('#') && !line.is_empty() {
            let name = &line[..line.find(['{', ' ']).unwrap_or(line.len())];
            if !name.starts_with(current.as_str()) {
                // A sample outside the family its TYPE line announced (untyped, no comments).
                current = name.to_string();
            }
        }
        if !families.contains(&current) {
            continue;
        }
        let is_sample = !line.starts_with('#');
        let name = &line[..line.find(['{', ' ']).unwrap_or(line.len())];
        if is_sample
            && (name == "push_time_seconds" || name == "push_failure_time_seconds" || name.ends_with("_created"))
        {
            let cut = line.rfind(' ').unwrap_or(line.len());
            out.push_str(&line[..cut]);
            out.push_str(" <volatile>\n");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `/api/v1/metrics` with the volatile parts replaced (every `time_stamp`, the values of
/// `push_time_seconds`, `push_failure_time_seconds` and `*_created`), groups sorted by labels.
fn normalized_api(v: &Value, jobs: &BTreeSet<String>) -> Vec<Value> {
    let data = v
        .get("data")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("/api/v1/metrics without a data array: {v}"));
    let mut groups: Vec<Value> = data
        .iter()
        .filter(|g| {
            g.pointer("/labels/job")
                .and_then(Value::as_str)
                .is_some_and(|j| jobs.contains(j))
        })
        .cloned()
        .collect();
    for g in &mut groups {
        let Some(obj) = g.as_object_mut() else {
            continue;
        };
        for (name, fam) in obj.iter_mut() {
            let Some(fam) = fam.as_object_mut() else {
                continue;
            };
            if fam.contains_key("time_stamp") {
                fam.insert("time_stamp".into(), Value::String("<ts>".into()));
            }
            let volatile =
                name == "push_time_seconds" || name == "push_failure_time_seconds" || name.ends_with("_created");
            if volatile && let Some(metrics) = fam.get_mut("metrics").and_then(Value::as_array_mut) {
                for m in metrics {
                    if let Some(m) = m.as_object_mut()
                        && m.contains_key("value")
                    {
                        m.insert("value".into(), Value::String("<volatile>".into()));
                    }
                }
            }
        }
    }
    groups.sort_by_key(|g| g.get("labels").map(|l| l.to_string()).unwrap_or_default());
    groups
}

/// Line-by-line difference of two texts, for assertion messages.
fn diff_lines(a_name: &str, a: &str, b_name: &str, b: &str) -> String {
    let al: BTreeSet<&str> = a.lines().collect();
    let bl: BTreeSet<&str> = b.lines().collect();
    let mut out = String::new();
    for l in a.lines().filter(|l| !bl.contains(l)) {
        out.push_str(&format!("  only in {a_name}: {l}\n"));
    }
    for l in b.lines().filter(|l| !al.contains(l)) {
        out.push_str(&format!("  only in {b_name}: {l}\n"));
    }
    if out.is_empty() {
        out.push_str("  (same lines, different order)\n");
        for (i, (x, y)) in a.lines().zip(b.lines()).enumerate() {
            if x != y {
                out.push_str(&format!(
                    "  first difference at line {}:\n    {a_name}: {x}\n    {b_name}: {y}\n",
                    i + 1
                ));
                break;
            }
        }
    }
    out
}

/// Compares the given family blocks of two servers' `GET /metrics`.
fn assert_same_exposition(reference: &Server, gateway: &Server, families: &BTreeSet<String>, what: &str) {
    let a = family_blocks(&get_text(&format!("{}/metrics", reference.url)), families);
    let b = family_blocks(&get_text(&format!("{}/metrics", gateway.url)), families);
    assert!(!a.is_empty(), "{what}: the reference exposed none of {families:?}");
    assert!(
        a == b,
        "{what}: GET /metrics of batchgate differs from the reference Pushgateway's \
         (volatile values masked):\n{}\n--- reference ---\n{a}\n--- batchgate ---\n{b}",
        diff_lines("reference", &a, "batchgate", &b)
    );
}

/// Compares the `/api/v1/metrics` groups of the given jobs on two servers.
fn assert_same_api(reference: &Server, gateway: &Server, jobs: &BTreeSet<String>, what: &str) {
    let a = normalized_api(&get_json(&format!("{}/api/v1/metrics", reference.url)), jobs);
    let b = normalized_api(&get_json(&format!("{}/api/v1/metrics", gateway.url)), jobs);
    assert!(!a.is_empty(), "{what}: the reference has no group of {jobs:?}");
    if a != b {
        let pa = serde_json::to_string_pretty(&a).unwrap();
        let pb = serde_json::to_string_pretty(&b).unwrap();
        panic!(
            "{what}: /api/v1/metrics of batchgate differs from the reference Pushgateway's \
             (groups sorted, time stamps and push times masked):\n{}",
            diff_lines("reference", &pa, "batchgate", &pb)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 1a. The Python client
// ---------------------------------------------------------------------------------------------

fn require_python_client() {
    let out = Command::new("python3")
        .args(["-c", "import prometheus_client"])
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "`python3 -c 'import prometheus_client'` failed ({}):\n{}\n\
             The Python client is needed for this test: run `scripts/install-deps` and retry.",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!(
            "cannot run python3 ({e}); the Python client is needed for this test: \
             run `scripts/install-deps` and retry."
        ),
    }
}

fn python_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/push_clients.py")
}

/// Runs the Python client's scenario against `server`; returns the state the script expects.
fn run_python(server: &Server, who: &str) -> Value {
    let out = run_with_timeout(
        Command::new("python3").arg(python_script()).arg(&server.url),
        Duration::from_secs(40),
        "tests/clients/push_clients.py",
    );
    assert!(
        out.status.success(),
        "the Python client (prometheus_client) failed against {who} ({}):\n{}\n--- {who} log ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        server.log_text()
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "push_clients.py printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn str_set(v: &Value, key: &str) -> BTreeSet<String> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("script output without {key}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn labels_of(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .expect("labels object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("label value").to_string()))
        .collect()
}

/// Checks `GET /metrics` of `server` against the state the script expects: every expected sample
/// with its exact value, `push_time_seconds` (recent) and `push_failure_time_seconds` (0) per
/// group, and nothing else under the script's jobs (deleted groups must be gone).
fn check_python_expectations(server: &Server, who: &str, expected: &Value) {
    let jobs = str_set(expected, "jobs");
    let groups = expected["groups"].as_array().expect("groups");
    assert!(
        groups.len() >= 10,
        "the script reported only {} groups; the scenario did not run",
        groups.len()
    );
    let mut want: BTreeMap<String, (String, f64)> = BTreeMap::new();
    let mut push_times = BTreeSet::new();
    for g in groups {
        let mut glabels = labels_of(&g["labels"]);
        glabels.entry("instance".into()).or_default();
        for fam in g["families"].as_object().expect("families").values() {
            for s in fam["samples"].as_array().expect("samples") {
                let name = s["name"].as_str().unwrap();
                let labels = labels_of(&s["labels"]);
                let value = parse_value(s["value"].as_str().unwrap()).expect("value");
                want.insert(series_id(name, &labels), (name.to_string(), value));
            }
        }
        want.insert(
            series_id("push_failure_time_seconds", &glabels),
            ("push_failure_time_seconds".into(), 0.0),
        );
        push_times.insert(series_id("push_time_seconds", &glabels));
    }

    let text = get_text(&format!("{}/metrics", server.url));
    let samples: Vec<Sample> = parse_exposition(&text)
        .into_iter()
        .filter(|s| s.labels.get("job").is_some_and(|j| jobs.contains(j)))
        .collect();
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    let now = now_secs();
    for s in &samples {
        let id = series_id(&s.name, &s.labels);
        if !seen.insert(id.clone()) {
            problems.push(format!("series exposed twice: {id}"));
            continue;
        }
        if push_times.contains(&id) {
            if !(s.value > now - 120.0 && s.value <= now + 5.0) {
                problems.push(format!(
                    "{id} = {} is not the time of a push just made (now {now})",
                    s.value
                ));
            }
            continue;
        }
        match want.get(&id) {
            None => problems.push(format!("unexpected series {id} = {}", s.value)),
            Some((_, v)) if !same_value(*v, s.value) => {
                problems.push(format!("{id} = {}, the client pushed {v}", s.value))
            }
            Some(_) => {}
        }
    }
    for id in want.keys().chain(push_times.iter()) {
        if !seen.contains(id) {
            problems.push(format!("missing series {id}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{who}: GET /metrics does not hold what the Python client pushed \
         (deleted groups: {}):\n  {}\n--- script log ---\n{}",
        expected["deleted"],
        problems.join("\n  "),
        expected["log"]
    );
}

#[test]
fn python_client_against_reference_pushgateway() {
    require_python_client();
    let pg = Server::pushgateway(&[]);
    let expected = run_python(&pg, "the reference Pushgateway");
    check_python_expectations(&pg, "reference Pushgateway", &expected);
}

#[test]
fn python_client_batchgate_matches_reference() {
    require_python_client();
    let pg = Server::pushgateway(&[]);
    let bg = Server::batchgate(&[]);
    let expected_pg = run_python(&pg, "the reference Pushgateway");
    let expected_bg = run_python(&bg, "batchgate");
    check_python_expectations(&pg, "reference Pushgateway", &expected_pg);
    check_python_expectations(&bg, "batchgate", &expected_bg);

    let mut families = str_set(&expected_bg, "family_names");
    families.insert("push_time_seconds".into());
    families.insert("push_failure_time_seconds".into());
    assert_same_exposition(&pg, &bg, &families, "Python client");
    assert_same_api(&pg, &bg, &str_set(&expected_bg, "jobs"), "Python client");
}

// ---------------------------------------------------------------------------------------------
// 1b. curl
// ---------------------------------------------------------------------------------------------

const CURL_BATCH: &str = "\
# HELP curl_last_success_timestamp_seconds Last success.
# TYPE curl_last_success_timestamp_seconds gauge
curl_last_success_timestamp_seconds 1.7e+09
# HELP curl_errors_total Errors.
# TYPE curl_errors_total counter
curl_errors_total 2
# TYPE curl_status gauge
curl_status{status=\"completed\"} 1
curl_status{status=\"failed\"} 0
";

const CURL_BATCH2: &str = "\
# HELP curl_errors_total Errors.
# TYPE curl_errors_total counter
curl_errors_total 5
# TYPE curl_status gauge
curl_status{status=\"completed\"} 0
curl_status{status=\"failed\"} 1
";

const CURL_GZ: &str = "\
# HELP curl_gz_duration_seconds Duration.
# TYPE curl_gz_duration_seconds histogram
curl_gz_duration_seconds_bucket{le=\"1\"} 1
curl_gz_duration_seconds_bucket{le=\"10\"} 3
curl_gz_duration_seconds_bucket{le=\"+Inf\"} 4
curl_gz_duration_seconds_sum 42.5
curl_gz_duration_seconds_count 4
";

/// One curl invocation's outcome.
#[derive(Debug, PartialEq)]
struct CurlResult {
    step: &'static str,
    status: u16,
    body: String,
}

fn curl(step: &'static str, args: &[&str], stdin: Option<&str>) -> CurlResult {
    let mut cmd = Command::new(support::require("curl"));
    cmd.args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"]).args(args);
    let out = if let Some(input) = stdin {
        use std::io::Write;
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("curl");
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        child.wait_with_output().expect("curl")
    } else {
        run_with_timeout(&mut cmd, Duration::from_secs(15), "curl")
    };
    assert!(
        out.status.success(),
        "{step}: curl {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').expect("curl -w output");
    CurlResult {
        step,
        status: code.trim().parse().expect("http code"),
        body: body.to_string(),
    }
}

/// The curl scenario against `server`; returns every step's status and body.
fn curl_scenario(server: &Server, dir: &Path) -> Vec<CurlResult> {
    let u = &server.url;
    let batch = dir.join("batch.prom");
    let batch2 = dir.join("batch2.prom");
    let gz_src = dir.join("gz.prom");
    std::fs::write(&batch, CURL_BATCH).unwrap();
    std::fs::write(&batch2, CURL_BATCH2).unwrap();
    std::fs::write(&gz_src, CURL_GZ).unwrap();
    let gz = dir.join("gz.prom.gz");
    let st = Command::new(support::require("gzip"))
        .args(["-k", "-f", "-9"])
        .arg(&gz_src)
        .status()
        .expect("gzip");
    assert!(st.success() && gz.exists(), "gzip failed");
    let at = |p: &Path| format!("@{}", p.display());
    let url = |path: &str| format!("{u}{path}");

    vec![
        // POST is curl's default with --data-binary (Content-Type application/x-www-form-urlencoded).
        curl(
            "POST text file",
            &[
                "--data-binary",
                &at(&batch),
                &url("/metrics/job/curl_job/instance/host-1"),
            ],
            None,
        ),
        curl(
            "PUT text file",
            &[
                "-X",
                "PUT",
                "--data-binary",
                &at(&batch2),
                &url("/metrics/job/curl_job/instance/host-2"),
            ],
            None,
        ),
        curl(
            "POST inline body",
            &[
                "--data-binary",
                "curl_inline{src=\"arg\"} 3.5\n",
                &url("/metrics/job/curl_inline"),
            ],
            None,
        ),
        curl(
            "POST stdin, base64 grouping value",
            &[
                "-H",
                "Content-Type: text/plain; version=0.0.4",
                "--data-binary",
                "@-",
                &url("/metrics/job/curl_stdin/path@base64/L3Zhci90bXA="),
            ],
            Some("curl_stdin 9\n"),
        ),
        curl(
            "POST gzip file",
            &[
                "--data-binary",
                &at(&gz),
                "-H",
                "Content-Encoding: gzip",
                &url("/metrics/job/curl_gzip/instance/gz"),
            ],
            None,
        ),
        curl(
            "PUT gzip file again",
            &[
                "-X",
                "PUT",
                "--data-binary",
                &at(&gz),
                "-H",
                "Content-Encoding: gzip",
                &url("/metrics/job/curl_gzip/instance/gz2"),
            ],
            None,
        ),
        curl(
            "no trailing newline",
            &["--data-binary", "curl_bad 1", &url("/metrics/job/curl_bad")],
            None,
        ),
        curl(
            "plain body sent as gzip",
            &[
                "--data-binary",
                &at(&batch),
                "-H",
                "Content-Encoding: gzip",
                &url("/metrics/job/curl_bad/instance/gz"),
            ],
            None,
        ),
        curl(
            "type conflict on an existing group",
            &[
                "--data-binary",
                "# TYPE curl_errors_total gauge\ncurl_errors_total 1\n",
                &url("/metrics/job/curl_job/instance/host-1"),
            ],
            None,
        ),
        curl(
            "DELETE group",
            &["-X", "DELETE", &url("/metrics/job/curl_inline")],
            None,
        ),
        curl(
            "DELETE partial key",
            &["-X", "DELETE", &url("/metrics/job/curl_job")],
            None,
        ),
        curl(
            "DELETE base64 key of a missing group",
            &["-X", "DELETE", &url("/metrics/job@base64/bm8vc3VjaA/instance/x")],
            None,
        ),
        curl(
            "DELETE gzip group",
            &["-X", "DELETE", &url("/metrics/job/curl_gzip/instance/gz2")],
            None,
        ),
    ]
}

fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    samples.iter().find(|s| {
        s.name == name
            && s.labels.len() == labels.len()
            && labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
    })
}

/// Checks the statuses and the stored state after the curl scenario.
fn check_curl_outcome(server: &Server, who: &str, results: &[CurlResult]) {
    let want_status: &[(&str, u16)] = &[
        ("POST text file", 200),
        ("PUT text file", 200),
        ("POST inline body", 200),
        ("POST stdin, base64 grouping value", 200),
        ("POST gzip file", 200),
        ("PUT gzip file again", 200),
        ("no trailing newline", 400),
        ("plain body sent as gzip", 400),
        ("type conflict on an existing group", 400),
        ("DELETE group", 202),
        ("DELETE partial key", 202),
        ("DELETE base64 key of a missing group", 202),
        ("DELETE gzip group", 202),
    ];
    let mut problems = Vec::new();
    for ((step, code), r) in want_status.iter().zip(results) {
        assert_eq!(*step, r.step);
        if r.status != *code {
            problems.push(format!("{step}: status {} (want {code}), body {:?}", r.status, r.body));
        }
    }

    // `curl --compressed` is how people look at a gateway; it must get gzip and decode it.
    let hdr = tempfile::NamedTempFile::new().unwrap();
    let hdr_arg = hdr.path().display().to_string();
    let get = curl(
        "GET /metrics --compressed",
        &["--compressed", "-D", &hdr_arg, &format!("{}/metrics", server.url)],
        None,
    );
    let headers = std::fs::read_to_string(hdr.path()).unwrap().to_ascii_lowercase();
    assert!(
        get.status == 200,
        "{who}: GET /metrics --compressed after the curl scenario gave {}: {}\n{}\n--- steps ---\n{results:#?}",
        get.status,
        get.body,
        problems.join("\n")
    );
    if !headers.contains("content-encoding: gzip") {
        problems.push(format!(
            "GET /metrics with Accept-Encoding: gzip was not gzip-encoded; headers:\n{headers}"
        ));
    }
    let s = parse_exposition(&get.body);
    let mut expect = |name: &str, labels: &[(&str, &str)], value: Option<f64>| match (find(&s, name, labels), value) {
        (None, Some(v)) => problems.push(format!("missing {name}{labels:?} (want {v})")),
        (Some(x), None) => problems.push(format!("{name}{labels:?} = {} should be gone", x.value)),
        (Some(x), Some(v)) if !same_value(x.value, v) => {
            problems.push(format!("{name}{labels:?} = {} (want {v})", x.value))
        }
        _ => {}
    };
    let h1 = [("instance", "host-1"), ("job", "curl_job")];
    let h2 = [("instance", "host-2"), ("job", "curl_job")];
    expect("curl_last_success_timestamp_seconds", &h1, Some(1.7e9));
    // The rejected gauge push left the counter untouched.
    expect("curl_errors_total", &h1, Some(2.0));
    let st = |i: &'static str, st: &'static str| [("instance", i), ("job", "curl_job"), ("status", st)];
    expect("curl_status", &st("host-1", "completed"), Some(1.0));
    expect("curl_status", &st("host-1", "failed"), Some(0.0));
    expect("curl_errors_total", &h2, Some(5.0));
    expect("curl_status", &st("host-2", "completed"), Some(0.0));
    expect("curl_status", &st("host-2", "failed"), Some(1.0));
    expect("curl_last_success_timestamp_seconds", &h2, None);
    expect(
        "curl_inline",
        &[("instance", ""), ("job", "curl_inline"), ("src", "arg")],
        None,
    );
    expect(
        "curl_stdin",
        &[("instance", ""), ("job", "curl_stdin"), ("path", "/var/tmp")],
        Some(9.0),
    );
    let gz = [("instance", "gz"), ("job", "curl_gzip")];
    for (le, v) in [("1", 1.0), ("10", 3.0), ("+Inf", 4.0)] {
        let mut l = gz.to_vec();
        l.push(("le", le));
        expect("curl_gz_duration_seconds_bucket", &l, Some(v));
    }
    expect("curl_gz_duration_seconds_sum", &gz, Some(42.5));
    expect("curl_gz_duration_seconds_count", &gz, Some(4.0));
    expect(
        "curl_gz_duration_seconds_count",
        &[("instance", "gz2"), ("job", "curl_gzip")],
        None,
    );
    expect("push_time_seconds", &[("instance", "gz2"), ("job", "curl_gzip")], None);
    expect("push_time_seconds", &[("instance", ""), ("job", "curl_inline")], None);
    // Nothing of the rejected pushes to a new group is exposed as data.
    if s.iter().any(|x| x.name == "curl_bad") {
        problems.push("curl_bad (a rejected push) is exposed".into());
    }
    // The failed push to host-1 is visible as a failure time after its push time.
    let pt = find(&s, "push_time_seconds", &h1).map(|x| x.value);
    let pf = find(&s, "push_failure_time_seconds", &h1).map(|x| x.value);
    match (pt, pf) {
        (Some(t), Some(f)) if f > t && t > 0.0 => {}
        other => problems.push(format!(
            "host-1 (push_time_seconds, push_failure_time_seconds) = {other:?}; \
             want a failure time after the push time"
        )),
    }
    let pf2 = find(&s, "push_failure_time_seconds", &h2).map(|x| x.value);
    if pf2 != Some(0.0) {
        problems.push(format!("host-2 push_failure_time_seconds = {pf2:?}, want 0"));
    }
    assert!(
        problems.is_empty(),
        "{who}, curl scenario:\n  {}\n--- steps ---\n{results:#?}",
        problems.join("\n  ")
    );
}

#[test]
fn curl_against_reference_pushgateway() {
    let dir = tempfile::tempdir().unwrap();
    let pg = Server::pushgateway(&[]);
    let r = curl_scenario(&pg, dir.path());
    check_curl_outcome(&pg, "reference Pushgateway", &r);
}

#[test]
fn curl_batchgate_matches_reference() {
    let dir = tempfile::tempdir().unwrap();
    let pg = Server::pushgateway(&[]);
    let bg = Server::batchgate(&[]);
    let rp = curl_scenario(&pg, dir.path());
    let rb = curl_scenario(&bg, dir.path());
    check_curl_outcome(&pg, "reference Pushgateway", &rp);
    check_curl_outcome(&bg, "batchgate", &rb);

    // Same statuses; same bodies, except the consistency error, whose text quotes the stored
    // metric in Go's protobuf text syntax; for it only the prefix is compared.
    let mut problems = Vec::new();
    for (a, b) in rp.iter().zip(&rb) {
        let comparable = |s: &str| {
            if a.step == "type conflict on an existing group" {
                let p = "pushed metrics are invalid or inconsistent with existing metrics: ";
                if s.starts_with(p) { p.to_string() } else { s.to_string() }
            } else {
                s.to_string()
            }
        };
        if a.status != b.status || comparable(&a.body) != comparable(&b.body) {
            problems.push(format!(
                "{}: reference {} {:?}, batchgate {} {:?}",
                a.step, a.status, a.body, b.status, b.body
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "curl: batchgate answers differently from the reference Pushgateway:\n  {}",
        problems.join("\n  ")
    );
    let families: BTreeSet<String> = [
        "curl_last_success_timestamp_seconds",
        "curl_errors_total",
        "curl_status",
        "curl_stdin",
        "curl_inline",
        "curl_gz_duration_seconds",
        "push_time_seconds",
        "push_failure_time_seconds",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_same_exposition(&pg, &bg, &families, "curl");
}

// ---------------------------------------------------------------------------------------------
// 1c. A real Prometheus scraping the gateway
// ---------------------------------------------------------------------------------------------

fn push(url: &str, method: reqwest::Method, body: &str) {
    let r = http()
        .request(method.clone(), url)
        .body(body.to_string())
        .send()
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = r.status();
    assert!(
        status.is_success(),
        "{method} {url} gave {status}: {}",
        r.text().unwrap_or_default()
    );
}

/// Instant query; the `result` vector.
fn prom_query(prom: &Server, q: &str) -> Vec<Value> {
    let r = http()
        .get(format!(
            "{}/api/v1/query?query={}",
            prom.url,
            percent_encoding::utf8_percent_encode(q, percent_encoding::NON_ALPHANUMERIC)
        ))
        .send()
        .unwrap_or_else(|e| panic!("query {q}: {e}"));
    let v: Value = serde_json::from_str(&r.text().unwrap()).expect("query JSON");
    assert_eq!(v["status"], "success", "query {q}: {v}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// Polls `q` until `ok` holds for its result, or panics with the last result and `why`.
fn wait_query(prom: &Server, q: &str, limit: Duration, why: &str, ok: impl Fn(&[Value]) -> bool) {
    let deadline = Instant::now() + limit;
    loop {
        let res = prom_query(prom, q);
        if ok(&res) {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{why}: after {limit:?} Prometheus still answers `{q}` with {}\n\
                 targets: {}",
                Value::Array(res),
                get_text(&format!("{}/api/v1/targets", prom.url))
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn metric_labels(v: &Value) -> BTreeMap<String, String> {
    labels_of(&v["metric"])
}

fn sample_value(v: &Value) -> String {
    v["value"][1].as_str().unwrap_or_default().to_string()
}

/// Pushes, lets Prometheus scrape `gateway`, and checks what Prometheus stored.
fn prometheus_scenario(gateway: &Server, who: &str) {
    let u = &gateway.url;
    let put = reqwest::Method::PUT;
    push(
        &format!("{u}/metrics/job/prom_job/instance/inst-1"),
        put.clone(),
        "# TYPE prom_value gauge\nprom_value 42\n# TYPE prom_runs_total counter\nprom_runs_total 7\n\
         # TYPE prom_dur_seconds histogram\nprom_dur_seconds_bucket{le=\"1\"} 2\n\
         prom_dur_seconds_bucket{le=\"+Inf\"} 3\nprom_dur_seconds_sum 4.5\nprom_dur_seconds_count 3\n",
    );
    push(
        &format!("{u}/metrics/job/prom_noinst"),
        put.clone(),
        "# TYPE prom_value gauge\nprom_value 5\n",
    );
    push(
        &format!("{u}/metrics/job/prom_gone/instance/g"),
        put.clone(),
        "# TYPE prom_value gauge\nprom_value 1\n",
    );

    let target = format!("127.0.0.1:{}", gateway.port);
    let path = format!(
        "{}/metrics",
        u.trim_start_matches("http://").trim_start_matches(&target)
    );
    let prom = support::prometheus(&target, &path);
    let limit = Duration::from_secs(20);

    wait_query(
        &prom,
        "prom_value",
        limit,
        &format!("{who}: the three pushed prom_value series never arrived in Prometheus"),
        |r| r.len() == 3,
    );
    let res = prom_query(&prom, "prom_value");
    let by_job: BTreeMap<String, (BTreeMap<String, String>, String)> = res
        .iter()
        .map(|r| {
            let l = metric_labels(r);
            (l.get("job").cloned().unwrap_or_default(), (l, sample_value(r)))
        })
        .collect();
    let expect_series = |job: &str, labels: &[(&str, &str)], value: &str| {
        let want: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let got = by_job.get(job);
        assert!(
            got == Some(&(want.clone(), value.to_string())),
            "{who}: Prometheus stored {got:?} for job {job}; want labels {want:?} value {value} \
             (honor_labels must keep the pushed job/instance, not exported_*)\nall: {res:?}"
        );
    };
    expect_series(
        "prom_job",
        &[("__name__", "prom_value"), ("job", "prom_job"), ("instance", "inst-1")],
        "42",
    );
    // instance="" is the same as no instance: Prometheus must not attach the target's.
    expect_series(
        "prom_noinst",
        &[("__name__", "prom_value"), ("job", "prom_noinst")],
        "5",
    );
    let runs = prom_query(&prom, "prom_runs_total");
    assert!(
        runs.len() == 1 && sample_value(&runs[0]) == "7",
        "{who}: prom_runs_total in Prometheus: {runs:?}"
    );
    let bucket = prom_query(&prom, "prom_dur_seconds_bucket{le=\"+Inf\"}");
    assert!(
        bucket.len() == 1
            && sample_value(&bucket[0]) == "3"
            && metric_labels(&bucket[0]).get("instance").map(String::as_str) == Some("inst-1"),
        "{who}: prom_dur_seconds_bucket{{le=\"+Inf\"}} in Prometheus: {bucket:?}"
    );
    let pt = prom_query(&prom, "push_time_seconds{job=\"prom_job\",instance=\"inst-1\"}");
    let now = now_secs();
    assert!(
        pt.len() == 1
            && sample_value(&pt[0])
                .parse::<f64>()
                .is_ok_and(|t| t > now - 120.0 && t <= now + 5.0),
        "{who}: push_time_seconds of prom_job/inst-1 in Prometheus: {pt:?} (now {now})"
    );
    let exported = prom_query(&prom, "{exported_job=~\".+\"}");
    assert!(
        exported.is_empty(),
        "{who}: series with exported_job although honor_labels is on: {exported:?}"
    );
    let exported = prom_query(&prom, "{exported_instance=~\".+\"}");
    assert!(
        exported.is_empty(),
        "{who}: series with exported_instance although honor_labels is on: {exported:?}"
    );

    let up = prom_query(&prom, "up{job=\"gateway\"}");
    assert!(
        up.len() == 1 && sample_value(&up[0]) == "1",
        "{who}: up for the gateway target: {up:?}"
    );
    let targets = get_json(&format!("{}/api/v1/targets", prom.url));
    let active = targets["data"]["activeTargets"].as_array().cloned().unwrap_or_default();
    assert!(
        active.len() == 1 && active[0]["health"] == "up" && active[0]["lastError"].as_str() == Some(""),
        "{who}: Prometheus reports the scrape target as {active:#?}"
    );

    // A new value replaces the old one; a deleted group goes stale at the next scrape.
    push(
        &format!("{u}/metrics/job/prom_job/instance/inst-1"),
        reqwest::Method::POST,
        "# TYPE prom_value gauge\nprom_value 43\n",
    );
    let r = http()
        .delete(format!("{u}/metrics/job/prom_gone/instance/g"))
        .send()
        .expect("DELETE");
    assert_eq!(r.status().as_u16(), 202, "{who}: DELETE prom_gone");
    wait_query(
        &prom,
        "prom_value{job=\"prom_job\"}",
        limit,
        &format!("{who}: the pushed update to 43 never reached Prometheus"),
        |r| r.len() == 1 && sample_value(&r[0]) == "43",
    );
    wait_query(
        &prom,
        "prom_value{job=\"prom_gone\"}",
        limit,
        &format!("{who}: the deleted group is still scraped"),
        |r| r.is_empty(),
    );
    let still = prom_query(&prom, "prom_value{job=\"prom_noinst\"}");
    assert!(
        still.len() == 1 && sample_value(&still[0]) == "5",
        "{who}: prom_noinst after the update: {still:?}"
    );

    // Prometheus rejected nothing it scraped.
    let own = parse_exposition(&get_text(&format!("{}/metrics", prom.url)));
    let mut rejected = Vec::new();
    for s in &own {
        let bad = s.name.starts_with("prometheus_target_scrapes_")
            && (s.name.contains("out_of_order")
                || s.name.contains("duplicate_timestamp")
                || s.name.contains("out_of_bounds")
                || s.name.contains("exceeded"));
        if bad && s.value != 0.0 {
            rejected.push(format!("{} = {}", s.name, s.value));
        }
    }
    assert!(
        rejected.is_empty(),
        "{who}: Prometheus rejected scraped samples: {rejected:?}\n--- prometheus log ---\n{}",
        prom.log_text()
    );
    let log = prom.log_text();
    let scrape_warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("scrape") && (l.contains("level=warn") || l.contains("level=error")))
        .collect();
    assert!(
        scrape_warnings.is_empty(),
        "{who}: Prometheus logged scrape problems:\n{}",
        scrape_warnings.join("\n")
    );
}

#[test]
fn prometheus_scrapes_reference_pushgateway() {
    let pg = Server::pushgateway(&[]);
    prometheus_scenario(&pg, "reference Pushgateway");
}

#[test]
fn prometheus_scrapes_batchgate() {
    let bg = Server::batchgate(&[]);
    prometheus_scenario(&bg, "batchgate");
}
