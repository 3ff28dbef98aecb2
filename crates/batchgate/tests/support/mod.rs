//! Starts and stops the real processes the integration tests talk to: batchgate itself and the
//! reference parts (Debian's `prometheus-pushgateway`, `prometheus`), each on 127.0.0.1 on a free
//! port, killed when dropped.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1, never the same twice in one test process: the OS may hand the
/// same ephemeral port to two threads that bind and close at once, and two servers would then
/// race for it (the loser's readiness check would reach the winner). `start` also retries on a
/// clash with another process.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("no free port on 127.0.0.1");
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Path of a system binary the tests need, or a panic that says how to get it.
pub fn require(binary: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let p = Path::new(dir).join(binary);
        if p.exists() {
            return p;
        }
    }
    panic!("{binary} is not installed; run `scripts/install-deps` (Debian packages) and retry");
}

pub fn batchgate_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_batchgate"))
}

/// A running server process.
pub struct Server {
    child: Child,
    pub port: u16,
    /// `http://127.0.0.1:PORT` (plus the route prefix, if one was given by the caller).
    pub url: String,
    /// Keeps the data directory alive as long as the server when the test did not supply one.
    _dir: Option<tempfile::TempDir>,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

impl Server {
    /// batchgate with a fresh data directory.
    pub fn batchgate(args: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let mut s = Server::batchgate_at(&data, args);
        s._dir = Some(dir);
        s
    }

    /// batchgate on a given data directory (to restart over the same store).
    pub fn batchgate_at(data: &Path, args: &[&str]) -> Server {
        let data_arg = format!("--storage.path={}", data.display());
        let mut all = vec!["serve", data_arg.as_str()];
        all.extend_from_slice(args);
        Server::start(&batchgate_bin(), &all, data.to_path_buf())
    }

    /// The reference Pushgateway (Debian `prometheus-pushgateway`), memory only.
    ///
    /// Debian's build defaults `--persistence.file` to `/var/lib/prometheus/pushgateway.data`, a
    /// file shared by every instance (each would restore the others' groups, and `/-/quit` writes
    /// it), so unless the caller names a file, persistence is turned off.
    pub fn pushgateway(args: &[&str]) -> Server {
        let bin = require("prometheus-pushgateway");
        let dir = std::env::temp_dir();
        let mut all = args.to_vec();
        if !args.iter().any(|a| a.starts_with("--persistence.file")) {
            all.push("--persistence.file=");
        }
        let mut s = Server::start(&bin, &all, dir);
        s._dir = None;
        s
    }

    /// Starts `bin` with `--web.listen-address=127.0.0.1:PORT` and waits for `/-/ready`.
    pub fn start(bin: &Path, args: &[&str], data_dir: PathBuf) -> Server {
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port();
            let log = std::env::temp_dir().join(format!(
                "{}-{}-{}.log",
                bin.file_name().and_then(|n| n.to_str()).unwrap_or("server"),
                std::process::id(),
                port
            ));
            let logf = std::fs::File::create(&log).expect("log file");
            let listen = format!("--web.listen-address=127.0.0.1:{port}");
            let child = Command::new(bin)
                .args(args)
                .arg(&listen)
                .stdin(Stdio::null())
                .stdout(logf.try_clone().expect("log file"))
                .stderr(logf)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            // The route prefix defaults to the path of --web.external-url.
            let external_path = args
                .iter()
                .find_map(|a| a.strip_prefix("--web.external-url="))
                .and_then(|u| u.split("://").nth(1))
                .and_then(|rest| rest.find('/').map(|i| rest[i..].to_string()));
            let prefix = args
                .iter()
                .find_map(|a| a.strip_prefix("--web.route-prefix="))
                .map(str::to_string)
                .or(external_path)
                .map(|p| p.trim_end_matches('/').to_string())
                .unwrap_or_default();
            let mut s = Server {
                child,
                port,
                url: format!("http://127.0.0.1:{port}{prefix}"),
                _dir: None,
                data_dir: data_dir.clone(),
                log,
            };
            match s.wait_ready(Duration::from_secs(30)) {
                Ok(()) => return s,
                Err(e) => last_err = e,
            }
        }
        panic!("{} did not become ready: {last_err}", bin.display());
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let url = format!("{}/-/ready", self.url);
        let client = reqwest::blocking::Client::new();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "exited with {status}; log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                ));
            }
            if let Ok(r) = client.get(&url).timeout(Duration::from_secs(2)).send()
                && r.status().is_success()
            {
                // The answer may have come from another process on a clashing port: ours would
                // then exit at once with "address in use".
                std::thread::sleep(Duration::from_millis(30));
                if let Ok(Some(status)) = self.child.try_wait() {
                    return Err(format!(
                        "exited with {status} after another process answered on its port"
                    ));
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return Err(format!(
                    "timed out; log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// `kill -9`: no shutdown hook runs.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().expect("wait for server")
    }

    /// SIGTERM, then wait up to `limit` for the exit; `None` (after a `kill -9`) if it hung.
    pub fn terminate_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                self.kill9();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real Prometheus (Debian `prometheus`, 2.42) scraping `target` (`HOST:PORT`) every second with
/// `honor_labels: true`, with its TSDB in a temporary directory; ready when this returns.
pub fn prometheus(target: &str, metrics_path: &str) -> Server {
    prometheus_with_rules(target, metrics_path, &[])
}

/// Like [`prometheus`], also evaluating the rule files `rule_files` every second.
pub fn prometheus_with_rules(target: &str, metrics_path: &str, rule_files: &[&Path]) -> Server {
    let bin = require("prometheus");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prometheus.yml");
    let rules: String = if rule_files.is_empty() {
        String::new()
    } else {
        let files: String = rule_files.iter().map(|f| format!("  - '{}'\n", f.display())).collect();
        format!("rule_files:\n{files}")
    };
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n{rules}\
             scrape_configs:\n  - job_name: gateway\n    honor_labels: true\n    \
             metrics_path: '{metrics_path}'\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .expect("write prometheus.yml");
    let config_arg = format!("--config.file={}", config.display());
    let tsdb_arg = format!("--storage.tsdb.path={}", dir.path().join("tsdb").display());
    let mut s = Server::start(&bin, &[&config_arg, &tsdb_arg], dir.path().to_path_buf());
    s._dir = Some(dir);
    s
}

/// One sample of the text exposition format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: f64,
}

/// Parses a value as the text format writes it (`+Inf`, `-Inf`, `NaN` or a float).
pub fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

fn unparseable<T>(line: &str) -> T {
    panic!("unparseable exposition line: {line:?}")
}

/// Parses the samples of a text-format (0.0.4) exposition; comments are skipped. Panics on a line
/// it cannot parse, quoting it.
pub fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| unparseable(line));
        let name = line[..name_end].to_string();
        let mut labels = std::collections::BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(mut r) = rest.strip_prefix('{') {
            loop {
                r = r.trim_start_matches([',', ' ']);
                if let Some(after) = r.strip_prefix('}') {
                    rest = after;
                    break;
                }
                let eq = r.find('=').unwrap_or_else(|| unparseable(line));
                let label = r[..eq].trim().to_string();
                let body = r[eq + 1..].strip_prefix('"').unwrap_or_else(|| unparseable(line));
                let mut value = String::new();
                let mut end = None;
                let mut chars = body.char_indices();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '"' => {
                            end = Some(i + 1);
                            break;
                        }
                        '\\' => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, c)) => value.push(c),
                            None => unparseable::<()>(line),
                        },
                        c => value.push(c),
                    }
                }
                r = &body[end.unwrap_or_else(|| unparseable(line))..];
                labels.insert(label, value);
            }
        }
        let value = rest
            .split_whitespace()
            .next()
            .and_then(parse_value)
            .unwrap_or_else(|| unparseable(line));
        out.push(Sample { name, labels, value });
    }
    out
}

impl Server {
    /// Starts `bin` with `--web.listen-address=127.0.0.1:PORT` on a port chosen by the caller (a
    /// server that must come up where a client already points) and waits for `/-/ready`.
    pub fn start_on(bin: &Path, args: &[&str], data_dir: PathBuf, port: u16) -> Result<Server, String> {
        let name = bin.file_name().and_then(|n| n.to_str()).unwrap_or("server");
        let log = std::env::temp_dir().join(format!("{name}-{}-{port}.log", std::process::id()));
        let logf = std::fs::File::create(&log).map_err(|e| format!("log file: {e}"))?;
        let child = Command::new(bin)
            .args(args)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(logf.try_clone().map_err(|e| format!("log file: {e}"))?)
            .stderr(logf)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut s = Server {
            child,
            port,
            url: format!("http://127.0.0.1:{port}"),
            _dir: None,
            data_dir,
            log,
        };
        s.wait_ready(Duration::from_secs(30))?;
        Ok(s)
    }
}

/// Writes an Alertmanager config routing every alert to the webhook `webhook_url`, grouped by
/// `alertname`, `job_name` and `escalation`, with 1 s group wait and interval, and returns the
/// arguments (config, storage, clustering off) to start Debian's `prometheus-alertmanager` with.
fn alertmanager_args(dir: &Path, webhook_url: &str) -> Vec<String> {
    let config = dir.join("alertmanager.yml");
    std::fs::write(
        &config,
        format!(
            "route:\n  receiver: hook\n  group_by: [alertname, job_name, escalation]\n  group_wait: 1s\n  \
             group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      \
             - url: '{webhook_url}'\n        send_resolved: true\n"
        ),
    )
    .expect("write alertmanager.yml");
    vec![
        format!("--config.file={}", config.display()),
        format!("--storage.path={}", dir.join("data").display()),
        "--cluster.listen-address=".to_string(),
    ]
}

/// A real Alertmanager (Debian `prometheus-alertmanager`, 0.25) on a free port, sending every
/// notification to `webhook_url`; ready when this returns.
pub fn alertmanager(webhook_url: &str) -> Server {
    let bin = require("prometheus-alertmanager");
    let dir = tempfile::tempdir().expect("tempdir");
    let args = alertmanager_args(dir.path(), webhook_url);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut s = Server::start(&bin, &args, dir.path().to_path_buf());
    s._dir = Some(dir);
    s
}

/// Like [`alertmanager`], on a given port (to start it where a client already points).
pub fn alertmanager_on(port: u16, webhook_url: &str) -> Server {
    let bin = require("prometheus-alertmanager");
    let dir = tempfile::tempdir().expect("tempdir");
    let args = alertmanager_args(dir.path(), webhook_url);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut s = Server::start_on(&bin, &args, dir.path().to_path_buf(), port)
        .unwrap_or_else(|e| panic!("alertmanager did not start on port {port}: {e}"));
    s._dir = Some(dir);
    s
}

/// Unix time now, in seconds, as pushed metrics carry it.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// An HTTP client with a 10 s timeout.
pub fn http_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// `GET /metrics` of a server: the text and its parsed samples.
pub fn scrape(server: &Server) -> (String, Vec<Sample>) {
    let text = http_client()
        .get(format!("{}/metrics", server.url))
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.text())
        .expect("scrape");
    let samples = parse_exposition(&text);
    (text, samples)
}
