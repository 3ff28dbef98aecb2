//! Durability: a `2xx` answer means the change is on disk (SPEC §2, §4).
//!
//! - `kill -9` in the middle of a concurrent push load, three times over the same store: every
//!   acknowledged PUT, POST and DELETE survives.
//! - SIGTERM and restart: every group, family and per-family `time_stamp` is back, exactly.
//! - A corrupt or foreign data file: batchgate refuses to start, says what is wrong and how to
//!   recover, and leaves the file byte for byte as it was.
//!
//! The kill harness is also run against the reference Pushgateway with a persistence file, which
//! loses pushes on `kill -9`: that test proves the checker detects lost pushes.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Server, parse_exposition};

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
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

fn send(method: reqwest::Method, url: &str, body: &str) -> u16 {
    let r = http()
        .request(method.clone(), url)
        .body(body.to_string())
        .send()
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    r.status().as_u16()
}

// ---------------------------------------------------------------------------------------------
// kill -9 under load
// ---------------------------------------------------------------------------------------------

const THREADS: usize = 16;
const GROUPS_PER_THREAD: usize = 4;
const LOAD: Duration = Duration::from_millis(1500);

/// What a group holds: `crash_seq` (set by PUT and POST) and `crash_put_seq` (set by PUT only,
/// kept by POST). `None` = the group does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    seq: u64,
    put_seq: Option<u64>,
}
type State = Option<Held>;

#[derive(Debug, Clone, Copy)]
enum Op {
    Put(u64),
    Post(u64),
    Delete,
}

fn apply(s: State, op: Op) -> State {
    match op {
        Op::Put(n) => Some(Held {
            seq: n,
            put_seq: Some(n),
        }),
        Op::Post(n) => Some(Held {
            seq: n,
            put_seq: s.and_then(|h| h.put_seq),
        }),
        Op::Delete => None,
    }
}

/// One group's history as the client knows it: the state after its last acknowledged operation,
/// and, when an operation was sent but not answered (the server died), the state it would give.
#[derive(Debug, Clone)]
struct Track {
    acked: State,
    in_flight: Option<(Op, State)>,
    next_seq: u64,
}

fn group_name(thread: usize, group: usize) -> String {
    format!("t{thread:02}-g{group}")
}

/// The outcome of one load phase of one client thread.
struct ThreadReport {
    tracks: Vec<Track>,
    acked: u64,
    /// Non-2xx answers: when, status, description.
    unexpected: Vec<(Instant, u16, String)>,
}

/// One client thread: pushes to its own groups until the server dies or `stop` is set.
fn client_thread(url: String, thread: usize, mut tracks: Vec<Track>, stop: Arc<AtomicBool>) -> ThreadReport {
    let client = http();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ ((thread as u64 + 1) * 0x1000_0000_01b3);
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut acked = 0;
    let mut unexpected = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let g = (next() % GROUPS_PER_THREAD as u64) as usize;
        let t = &mut tracks[g];
        t.next_seq += 1;
        let n = t.next_seq;
        let op = match next() % 20 {
            0..=8 => Op::Put(n),
            9..=17 => Op::Post(n),
            _ => Op::Delete,
        };
        let target = apply(t.acked, op);
        t.in_flight = Some((op, target));
        let group_url = format!("{url}/metrics/job/crash/instance/{}", group_name(thread, g));
        let req = match op {
            Op::Put(n) => client.put(&group_url).body(format!(
                "# TYPE crash_seq gauge\ncrash_seq {n}\n# TYPE crash_put_seq gauge\ncrash_put_seq {n}\n"
            )),
            Op::Post(n) => client
                .post(&group_url)
                .body(format!("# TYPE crash_seq gauge\ncrash_seq {n}\n")),
            Op::Delete => client.delete(&group_url),
        };
        match req.send() {
            Ok(r) if r.status().is_success() => {
                t.acked = target;
                t.in_flight = None;
                acked += 1;
            }
            Ok(r) => {
                // A rejected operation changes nothing; it is a bug all the same.
                let status = r.status();
                unexpected.push((
                    Instant::now(),
                    status.as_u16(),
                    format!("{op:?} {group_url} gave {status}: {}", r.text().unwrap_or_default()),
                ));
                t.in_flight = None;
            }
            // The server is gone: this operation may or may not have been applied.
            Err(_) => break,
        }
    }
    ThreadReport {
        tracks,
        acked,
        unexpected,
    }
}

/// The state of every `crash` group as the server exposes it.
fn observed_groups(url: &str) -> Result<BTreeMap<String, State>, String> {
    let text = get_text(&format!("{url}/metrics"));
    let mut seq: BTreeMap<String, u64> = BTreeMap::new();
    let mut put_seq: BTreeMap<String, u64> = BTreeMap::new();
    let mut push_time: BTreeSet<String> = BTreeSet::new();
    let mut problems = Vec::new();
    for s in parse_exposition(&text) {
        if s.labels.get("job").map(String::as_str) != Some("crash") {
            continue;
        }
        let inst = s.labels.get("instance").cloned().unwrap_or_default();
        let as_seq = || {
            if s.value >= 0.0 && s.value.fract() == 0.0 {
                Ok(s.value as u64)
            } else {
                Err(format!("{} of {inst} = {} is not a sequence number", s.name, s.value))
            }
        };
        match s.name.as_str() {
            "crash_seq" => {
                let v = as_seq()?;
                seq.insert(inst, v);
            }
            "crash_put_seq" => {
                let v = as_seq()?;
                put_seq.insert(inst, v);
            }
            "push_time_seconds" => {
                push_time.insert(inst);
            }
            "push_failure_time_seconds" => {
                if s.value != 0.0 {
                    problems.push(format!("{inst} has push_failure_time_seconds {}", s.value));
                }
            }
            other => problems.push(format!("unexpected series {other} in group {inst}")),
        }
    }
    let mut out = BTreeMap::new();
    let all: BTreeSet<&String> = seq.keys().chain(put_seq.keys()).chain(&push_time).collect();
    for inst in all {
        match seq.get(inst) {
            Some(&s) => {
                if !push_time.contains(inst) {
                    problems.push(format!("{inst} has data but no push_time_seconds"));
                }
                out.insert(
                    inst.clone(),
                    Some(Held {
                        seq: s,
                        put_seq: put_seq.get(inst).copied(),
                    }),
                );
            }
            None => problems.push(format!(
                "{inst} exists (push_time_seconds or crash_put_seq) without crash_seq"
            )),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems.join("\n  "))
    }
}

/// How the server is stopped in the middle of the load.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stop {
    Kill9,
    /// SIGTERM; the server must exit 0 within 10 s.
    Term,
}

/// Runs `cycles` rounds of: start the server over the same store, load it from `THREADS`
/// threads, stop it mid-stream (`kill -9` or SIGTERM), restart, and compare every group with what
/// the clients were told. Returns the violations (empty = every acknowledged change survived) and
/// a summary.
fn kill_cycles(start: &dyn Fn() -> Server, cycles: usize, how: Stop) -> (Vec<String>, String) {
    let mut tracks: Vec<Vec<Track>> = (0..THREADS)
        .map(|_| {
            (0..GROUPS_PER_THREAD)
                .map(|_| Track {
                    acked: None,
                    in_flight: None,
                    next_seq: 0,
                })
                .collect()
        })
        .collect();
    let mut violations = Vec::new();
    let mut summary = String::new();
    let mut server = start();
    for cycle in 1..=cycles {
        let stop = Arc::new(AtomicBool::new(false));
        let handles: Vec<_> = tracks
            .drain(..)
            .enumerate()
            .map(|(i, t)| {
                let url = server.url.clone();
                let stop = stop.clone();
                std::thread::spawn(move || client_thread(url, i, t, stop))
            })
            .collect();
        std::thread::sleep(LOAD);
        let log_before_kill = server.log_text();
        let stopped_at = Instant::now();
        match how {
            Stop::Kill9 => server.kill9(),
            Stop::Term => match server.terminate_within(Duration::from_secs(10)) {
                Some(status) if status.success() => {}
                Some(status) => violations.push(format!(
                    "cycle {cycle}: SIGTERM under load: exit status {status}\n--- log ---\n{}",
                    server.log_text()
                )),
                None => violations.push(format!(
                    "cycle {cycle}: SIGTERM under load: still running after 10 s\n--- log ---\n{}",
                    server.log_text()
                )),
            },
        }
        stop.store(true, Ordering::Relaxed);
        let mut acked = 0;
        for h in handles {
            let r = h.join().expect("client thread panicked");
            acked += r.acked;
            for (when, status, u) in r.unexpected {
                // While shutting down gracefully, "503 try again" is a fair answer.
                if !(how == Stop::Term && when >= stopped_at && status == 503) {
                    violations.push(format!("cycle {cycle}: non-2xx answer under load: {u}"));
                }
            }
            tracks.push(r.tracks);
        }
        let in_flight: usize = tracks.iter().flatten().filter(|t| t.in_flight.is_some()).count();
        summary.push_str(&format!(
            "cycle {cycle}: {acked} acknowledged changes in {LOAD:?}, {in_flight} in flight when it was stopped\n"
        ));
        if acked < 50 {
            violations.push(format!(
                "cycle {cycle}: only {acked} changes were acknowledged in {LOAD:?}; too few to \
                 judge durability\n--- server log ---\n{log_before_kill}"
            ));
        }

        server = start();
        let observed = match observed_groups(&server.url) {
            Ok(o) => o,
            Err(e) => {
                violations.push(format!(
                    "cycle {cycle}: after the restart the store is inconsistent:\n  {e}"
                ));
                break;
            }
        };
        let mut lost = 0;
        for (i, thread_tracks) in tracks.iter_mut().enumerate() {
            for (g, t) in thread_tracks.iter_mut().enumerate() {
                let name = group_name(i, g);
                let got = observed.get(&name).copied().unwrap_or(None);
                let allowed_in_flight = t.in_flight.map(|(_, s)| s);
                if got != t.acked && Some(got) != allowed_in_flight {
                    lost += 1;
                    violations.push(format!(
                        "cycle {cycle}: group {{job=\"crash\",instance=\"{name}\"}}: after kill -9 \
                         and restart it holds {got:?}; the last acknowledged change left {:?}{}",
                        t.acked,
                        t.in_flight
                            .map(|(op, s)| format!(" (and the unanswered {op:?} would have left {s:?})"))
                            .unwrap_or_default()
                    ));
                }
                // Continue from what is stored.
                t.acked = got;
                t.in_flight = None;
            }
        }
        for name in observed.keys() {
            let known = (0..THREADS).any(|i| (0..GROUPS_PER_THREAD).any(|g| group_name(i, g) == *name));
            if !known {
                violations.push(format!("cycle {cycle}: unknown group {name} after restart"));
            }
        }
        summary.push_str(&format!(
            "cycle {cycle}: {} groups stored after restart, {lost} differ from what clients were told\n",
            observed.len()
        ));
    }
    drop(server);
    (violations, summary)
}

#[test]
fn kill9_under_concurrent_load_loses_no_acknowledged_change() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let start = || Server::batchgate_at(&data, &[]);
    let t0 = Instant::now();
    let (violations, summary) = kill_cycles(&start, 3, Stop::Kill9);
    eprintln!("{summary}took {:?}", t0.elapsed());
    assert!(
        violations.is_empty(),
        "batchgate lost or invented acknowledged changes across kill -9 ({} problems):\n{}\n{summary}",
        violations.len(),
        violations.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn sigterm_under_concurrent_load_loses_no_acknowledged_change() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let start = || Server::batchgate_at(&data, &[]);
    let (violations, summary) = kill_cycles(&start, 2, Stop::Term);
    eprintln!("{summary}");
    assert!(
        violations.is_empty(),
        "batchgate lost acknowledged changes or misbehaved across SIGTERM under load ({} problems):\n{}\n{summary}",
        violations.len(),
        violations.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
    );
}

/// The checker must be able to fail: the reference Pushgateway persists every 5 minutes at best,
/// so a `kill -9` a second and a half into the load loses acknowledged pushes.
#[test]
fn kill9_checker_detects_the_reference_pushgateways_losses() {
    let dir = tempfile::tempdir().unwrap();
    let file = format!("--persistence.file={}", dir.path().join("pg.data").display());
    let start = || Server::pushgateway(&[&file]);
    let (violations, summary) = kill_cycles(&start, 1, Stop::Kill9);
    eprintln!("{summary}");
    let lost = violations
        .iter()
        .filter(|v| v.contains("the last acknowledged change left"))
        .count();
    assert!(
        lost > 0,
        "the kill -9 checker found no lost change on the reference Pushgateway, which keeps \
         pushes in memory for up to 5 minutes: the checker is broken.\n{summary}\n{violations:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// SIGTERM and restart
// ---------------------------------------------------------------------------------------------

/// `/api/v1/metrics` groups sorted by their labels (the API does not order them).
fn api_groups(url: &str) -> Vec<Value> {
    let v: Value =
        serde_json::from_str(&get_text(&format!("{url}/api/v1/metrics"))).expect("/api/v1/metrics is not JSON");
    assert_eq!(v["status"], "success", "/api/v1/metrics: {v}");
    let mut groups = v["data"].as_array().cloned().unwrap_or_default();
    groups.sort_by_key(|g| g["labels"].to_string());
    groups
}

/// Every line of `GET /metrics` that belongs to a pushed family or a group's push times.
fn pushed_exposition(url: &str) -> String {
    let text = get_text(&format!("{url}/metrics"));
    let mut keep = false;
    let mut out = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ").or_else(|| line.strip_prefix("# TYPE ")) {
            let name = rest.split(' ').next().unwrap_or_default();
            keep = name.starts_with("term_") || name.starts_with("push_");
        }
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[test]
fn sigterm_restart_keeps_every_group_family_and_time_stamp() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut bg = Server::batchgate_at(&data, &[]);
    let u = bg.url.clone();
    let pause = || std::thread::sleep(Duration::from_millis(30));
    let pushes: &[(Method, &str, &str)] = &[
        (
            Method::PUT,
            "/metrics/job/term/instance/a",
            "# HELP term_last_success_timestamp_seconds Last success, with \\\\ and \\n in help.\n\
             # TYPE term_last_success_timestamp_seconds gauge\n\
             term_last_success_timestamp_seconds 1.7000001e+09\n\
             # TYPE term_errors_total counter\nterm_errors_total{kind=\"io\"} 3\n\
             term_errors_total{kind=\"parse \\\"x\\\"\"} 0\n\
             # TYPE term_duration_seconds histogram\n\
             term_duration_seconds_bucket{le=\"0.5\"} 1\nterm_duration_seconds_bucket{le=\"5\"} 4\n\
             term_duration_seconds_bucket{le=\"+Inf\"} 5\nterm_duration_seconds_sum 12.25\n\
             term_duration_seconds_count 5\n\
             # TYPE term_latency_seconds summary\n\
             term_latency_seconds{quantile=\"0.5\"} 0.1\nterm_latency_seconds{quantile=\"0.99\"} 2\n\
             term_latency_seconds_sum 9\nterm_latency_seconds_count 30\n",
        ),
        (
            Method::POST,
            "/metrics/job/term/instance/a",
            "# TYPE term_rows gauge\nterm_rows 1234\n",
        ),
        (
            Method::POST,
            "/metrics/job/term/instance/a",
            "# TYPE term_errors_total counter\nterm_errors_total{kind=\"io\"} 4\n",
        ),
        (
            Method::PUT,
            "/metrics/job@base64/dGVybS9iNjQ/path@base64/L3Zhci90bXA=",
            "term_untyped{v=\"nan\"} NaN\nterm_untyped{v=\"inf\"} +Inf\nterm_untyped{v=\"neg\"} -1e-300\n",
        ),
        (
            Method::PUT,
            "/metrics/job/term/shard@base64/=",
            "# TYPE term_rows gauge\nterm_rows 7\n",
        ),
        (Method::PUT, "/metrics/job/term_empty", ""),
        (
            Method::PUT,
            "/metrics/job/Bj%C3%B6rn/city/Z%C3%BCrich",
            "# TYPE term_rows gauge\nterm_rows{note=\"é\"} 1\n",
        ),
    ];
    for (m, path, body) in pushes {
        let status = send(m.clone(), &format!("{u}{path}"), body);
        assert!(
            (200..300).contains(&status),
            "{m} {path} gave {status}\n--- log ---\n{}",
            bg.log_text()
        );
        pause();
    }
    // A rejected push (type conflict) to an existing group sets its push failure time.
    let _ = send(
        Method::POST,
        &format!("{u}/metrics/job/term/instance/a"),
        "# TYPE term_rows counter\nterm_rows 1\n",
    );
    pause();
    let before = api_groups(&u);
    let before_text = pushed_exposition(&u);
    assert_eq!(
        before.len(),
        5,
        "before the restart /api/v1/metrics should hold the 5 pushed groups: {before:#?}"
    );
    // The per-family time stamps of group a differ: three writes touched different families.
    let a = before.iter().find(|g| g["labels"]["instance"] == "a").expect("group a");
    let stamps: BTreeSet<String> = a
        .as_object()
        .unwrap()
        .values()
        .filter_map(|f| f.get("time_stamp").and_then(Value::as_str).map(String::from))
        .collect();
    assert!(
        stamps.len() >= 3,
        "group a was written by three pushes 30 ms apart, but its families carry only {} \
         distinct time_stamp values: {a:#}",
        stamps.len()
    );

    let status = bg.terminate_within(Duration::from_secs(10));
    let log = bg.log_text();
    let status = status.unwrap_or_else(|| panic!("batchgate did not exit within 10 s of SIGTERM\n--- log ---\n{log}"));
    assert!(
        status.success(),
        "batchgate exited with {status} on SIGTERM\n--- log ---\n{log}"
    );
    let bg2 = Server::batchgate_at(&data, &[]);
    let after = api_groups(&bg2.url);
    let after_text = pushed_exposition(&bg2.url);
    if before != after {
        panic!(
            "/api/v1/metrics changed across a SIGTERM restart:\n--- before ---\n{}\n--- after ---\n{}",
            serde_json::to_string_pretty(&before).unwrap(),
            serde_json::to_string_pretty(&after).unwrap()
        );
    }
    assert_eq!(
        before_text, after_text,
        "GET /metrics (pushed families and push times) changed across a SIGTERM restart"
    );
}

// ---------------------------------------------------------------------------------------------
// Corrupt data files
// ---------------------------------------------------------------------------------------------

const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";

/// Every regular file under `dir`, with its content.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("read {}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Fills a store with enough data for a multi-page SQLite file, stops batchgate cleanly, and
/// returns the SQLite file(s) it left.
fn filled_store(data: &Path) -> Vec<PathBuf> {
    let mut bg = Server::batchgate_at(data, &[]);
    let help = "x".repeat(200);
    for i in 0..300 {
        let mut body = format!("# HELP corrupt_rows {help}\n# TYPE corrupt_rows gauge\n");
        for k in 0..10 {
            // A marker per series, to find where a stored row lies in the file.
            body.push_str(&format!("corrupt_rows{{part=\"MARK{i:04}-{k:02}-{help}\"}} {i}.{k}\n"));
        }
        let url = format!("{}/metrics/job/corrupt/instance/i{i}", bg.url);
        let status = send(reqwest::Method::PUT, &url, &body);
        assert_eq!(status, 200, "PUT {url}\n--- log ---\n{}", bg.log_text());
    }
    let status = bg.terminate_within(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM exit status {status:?}\n--- log ---\n{}",
        bg.log_text()
    );
    let files: Vec<PathBuf> = snapshot(data)
        .into_iter()
        .filter(|(_, c)| c.starts_with(SQLITE_MAGIC))
        .map(|(p, _)| p)
        .collect();
    assert!(
        !files.is_empty(),
        "no SQLite file under --storage.path after 300 pushes; files: {:?}",
        snapshot(data).keys().collect::<Vec<_>>()
    );
    files
}

/// Starts batchgate on `data` and expects it to refuse: exit non-zero within 20 s, without ever
/// becoming ready. Returns its exit status and output.
fn start_expecting_refusal(data: &Path) -> (ExitStatus, String) {
    let port = support::free_port();
    let log = data.with_extension(format!("refusal-{port}.log"));
    let logf = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(support::batchgate_bin())
        .arg("serve")
        .arg(format!("--storage.path={}", data.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(logf.try_clone().unwrap())
        .stderr(logf)
        .spawn()
        .expect("start batchgate");
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, std::fs::read_to_string(&log).unwrap_or_default());
        }
        let ready = client
            .get(format!("http://127.0.0.1:{port}/-/ready"))
            .send()
            .is_ok_and(|r| r.status().is_success());
        if ready || Instant::now() > deadline {
            let metrics = client
                .get(format!("http://127.0.0.1:{port}/metrics"))
                .send()
                .and_then(|r| r.text())
                .map(|t| t.lines().filter(|l| l.contains("corrupt")).count())
                .unwrap_or(0);
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "batchgate {} on a corrupt data file instead of refusing to start \
                 ({metrics} corrupt_rows lines served)\n--- log ---\n{}",
                if ready { "became ready" } else { "kept running for 20 s" },
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The refusal must say what is wrong (which file, that it is corrupt / not a database) and how
/// to recover.
fn assert_helpful_refusal(status: ExitStatus, output: &str, file: &Path, what: &str) {
    assert!(
        !status.success(),
        "{what}: batchgate exited with {status}; want a non-zero exit\n--- output ---\n{output}"
    );
    let lower = output.to_lowercase();
    let file_name = file.file_name().unwrap().to_string_lossy().to_lowercase();
    let names_file = lower.contains(&file_name);
    let says_what = [
        "corrupt",
        "malformed",
        "not a database",
        "not a sqlite",
        "not an sqlite",
        "invalid",
    ]
    .iter()
    .any(|w| lower.contains(w));
    let says_how = ["restore", "backup", "move", "remove", "delete", "rename", "recover"]
        .iter()
        .any(|w| lower.contains(w));
    assert!(
        names_file && says_what && says_how,
        "{what}: batchgate refused to start ({status}), but its message does not {}{}{}\
         \n--- output ---\n{output}",
        if names_file { "" } else { "name the data file, " },
        if says_what {
            ""
        } else {
            "say what is wrong with it (corrupt / not a database), "
        },
        if says_how {
            ""
        } else {
            "say how to recover (restore a backup, move the file away, ...)"
        },
    );
}

fn assert_untouched(before: &BTreeMap<PathBuf, Vec<u8>>, data: &Path, file: &Path, what: &str) {
    let after = snapshot(data);
    let differing: Vec<String> = match (before.get(file), after.get(file)) {
        (Some(b), Some(a)) => b
            .iter()
            .zip(a)
            .enumerate()
            .filter(|(_, (x, y))| x != y)
            .map(|(i, (x, y))| format!("offset {i}: {x:#04x} -> {y:#04x}"))
            .collect(),
        _ => Vec::new(),
    };
    assert!(
        after.get(file) == before.get(file),
        "{what}: batchgate modified {} ({} bytes before, {:?} after; {} bytes differ, first: {:?}); \
         a corrupt data file must be left exactly as it was",
        file.display(),
        before[file].len(),
        after.get(file).map(Vec::len),
        differing.len(),
        &differing[..differing.len().min(8)]
    );
    let changed: Vec<_> = before.keys().filter(|p| after.get(*p) != before.get(*p)).collect();
    assert!(
        changed.is_empty(),
        "{what}: batchgate changed or removed files it refused to open: {changed:?}"
    );
}

/// The largest SQLite file of the store (the database, not a journal).
fn main_db(files: &[PathBuf]) -> PathBuf {
    files
        .iter()
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .unwrap()
        .clone()
}

/// Offset of the series marker nearest to the middle of `bytes` among the markers that occur
/// exactly once in the file: such an occurrence is the live row (a stale copy in free space
/// would make the marker occur twice).
fn live_marker_near_middle(bytes: &[u8]) -> Option<usize> {
    let mut at: BTreeMap<&[u8], Vec<usize>> = BTreeMap::new();
    let mut i = 0;
    while let Some(p) = bytes[i..].windows(4).position(|w| w == b"MARK") {
        let o = i + p;
        if o + 12 <= bytes.len() {
            at.entry(&bytes[o..o + 12]).or_default().push(o);
        }
        i = o + 4;
    }
    let mid = bytes.len() / 2;
    at.values()
        .filter(|v| v.len() == 1)
        .map(|v| v[0])
        .min_by_key(|o| o.abs_diff(mid))
}

/// 16 bytes overwritten inside one stored row, near the middle of the file: the page structure
/// is intact, only the row's content is wrong.
#[test]
fn sqlite_file_with_a_corrupt_row_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let db = main_db(&filled_store(&data));
    let mut bytes = std::fs::read(&db).unwrap();
    let off = live_marker_near_middle(&bytes).unwrap_or_else(|| {
        panic!(
            "no stored label value (MARKnnnn-kk-) found in {}: the store no longer keeps label \
             values as plain bytes; this test must find rows another way",
            db.display()
        )
    });
    let what = format!(
        "16 bytes of a stored row overwritten at offset {off} of {}",
        bytes.len()
    );
    bytes[off..off + 16].copy_from_slice(b"CORRUPTED-BYTES!");
    std::fs::write(&db, &bytes).unwrap();
    let before = snapshot(&data);

    let (status, output) = start_expecting_refusal(&data);
    assert_helpful_refusal(status, &output, &db, &what);
    assert_untouched(&before, &data, &db, &what);
}

/// The middle half of the file overwritten: page headers and cells alike.
#[test]
fn corrupt_sqlite_file_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let db = main_db(&filled_store(&data));
    let mut bytes = std::fs::read(&db).unwrap();
    let len = bytes.len();
    assert!(
        len >= 64 * 1024,
        "{} is only {len} bytes after 300 pushes of ~2 KB",
        db.display()
    );
    // The middle half of the file: page headers and cells of the stored groups.
    let pattern = b"CORRUPTED-BY-TEST!";
    for (i, b) in bytes[len / 4..3 * len / 4].iter_mut().enumerate() {
        *b = pattern[i % pattern.len()];
    }
    std::fs::write(&db, &bytes).unwrap();
    let before = snapshot(&data);

    let (status, output) = start_expecting_refusal(&data);
    assert_helpful_refusal(status, &output, &db, "SQLite file overwritten in the middle");
    assert_untouched(&before, &data, &db, "SQLite file overwritten in the middle");
}

#[test]
fn non_sqlite_data_file_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Replace the store with something that is not SQLite at all (a text file of the size of a
    // small Pushgateway persistence file), and drop any journal that belonged to the old one.
    let db = main_db(&filled_store(&data));
    for p in snapshot(&data).keys() {
        let name = p.file_name().unwrap().to_string_lossy();
        if name.ends_with("-wal") || name.ends_with("-shm") || name.ends_with("-journal") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let mut junk = Vec::new();
    for i in 0..2000 {
        junk.extend_from_slice(format!("this is not a database, line {i}\n").as_bytes());
    }
    std::fs::write(&db, &junk).unwrap();
    let before = snapshot(&data);

    let (status, output) = start_expecting_refusal(&data);
    assert_helpful_refusal(status, &output, &db, "data file that is not SQLite");
    assert_untouched(&before, &data, &db, "data file that is not SQLite");
}

/// A valid SQLite database that is not batchgate's (another program's file at the same path).
#[test]
fn foreign_sqlite_file_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let db = main_db(&filled_store(&data));
    for p in snapshot(&data).keys() {
        let name = p.file_name().unwrap().to_string_lossy();
        if name.ends_with("-wal") || name.ends_with("-shm") || name.ends_with("-journal") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let foreign = dir.path().join("foreign.sqlite");
    {
        let conn = rusqlite::Connection::open(&foreign).unwrap();
        conn.execute_batch(
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);
             INSERT INTO notes (body) VALUES ('someone else''s data'), ('keep me');",
        )
        .unwrap();
    }
    std::fs::copy(&foreign, &db).unwrap();
    let before = snapshot(&data);

    let (status, output) = start_expecting_refusal(&data);
    assert_helpful_refusal(status, &output, &db, "SQLite file of another program");
    assert_untouched(&before, &data, &db, "SQLite file of another program");
}

#[test]
fn a_second_batchgate_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = Server::batchgate_at(&data, &[]);
    assert_eq!(
        send(reqwest::Method::PUT, &format!("{}/metrics/job/one", first.url), "m 1\n"),
        200
    );
    let (status, output) = start_expecting_refusal(&data);
    assert!(!status.success(), "{output}");
    assert!(output.contains("another batchgate is already using"), "{output}");
    assert!(output.contains("--storage.path"), "says what to do: {output}");
    // The first one is unaffected.
    assert!(get_text(&format!("{}/metrics", first.url)).contains("m{instance=\"\",job=\"one\"} 1"));
}

#[test]
fn a_client_trickling_its_request_does_not_hold_up_shutdown() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::batchgate_at(&data, &[]);
    assert_eq!(
        send(
            reqwest::Method::PUT,
            &format!("{}/metrics/job/kept", server.url),
            "m 1\n"
        ),
        200
    );
    // A push whose body never completes.
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    slow.write_all(b"PUT /metrics/job/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nm 1")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let status = server.terminate_within(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "no clean exit within 30 s: {:?}",
        status
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "shutdown took {:?}",
        started.elapsed()
    );
    drop(slow);
    // What was acknowledged is there after the restart; the unfinished push is not.
    let restarted = Server::batchgate_at(&data, &[]);
    let text = get_text(&format!("{}/metrics", restarted.url));
    assert!(text.contains("m{instance=\"\",job=\"kept\"} 1"), "{text}");
    assert!(!text.contains("job=\"slow\""), "{text}");
}
