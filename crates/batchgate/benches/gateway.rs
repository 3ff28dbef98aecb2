//! Push / scrape benchmark: batchgate against the reference Pushgateway, same load, one run.
//!
//! Run (release profile, ~6-8 minutes; needs Debian's `prometheus-pushgateway`):
//!
//! ```text
//! cargo bench -p batchgate --bench gateway               # full: 10 s windows, 3 repetitions
//! cargo bench -p batchgate --bench gateway -- --quick    # smoke run, ~1-2 min (or BENCH_QUICK=1)
//! scripts/bench [--quick]                                # the same, through the wrapper
//! ```
//!
//! Knobs (environment): `BENCH_WINDOW_SECS` (measurement window, default 10, quick 2),
//! `BENCH_REPS` (repetitions, default 3, quick 1), `BENCH_GROUPS` (two group counts, default
//! `1000,10000`), `BENCH_CONNS` (default 16), `BENCH_REFERENCE=0` (batchgate only),
//! `BENCH_BATCHGATE=0` (reference only), `BENCH_BATCHGATE_FLAGS` (extra `serve` flags),
//! `BENCH_BATCHGATE_BIN` (another batchgate binary than the one cargo built).
//! Progress goes to stderr; the table and, as the very last line, one JSON object with every
//! figure (per-window values included) go to stdout: `scripts/bench | tail -1 | jq`.
//!
//! The load: every push is a `PUT` of a ~2.86 kB text body (10 families, 24 samples: the runbook's
//! `gl_batch_job_*` gauges and counters plus a 10-bucket histogram, values changing on every push)
//! to `/metrics/job/bench/instance/i{N}`, from 16 keep-alive connections (one `reqwest` client and
//! one connection each, all on one client thread, like `wrk -t1`) on 127.0.0.1. Each server is first
//! filled to the small group count, measured, filled to the large count, measured, then scraped.
//! A push measurement is one continuous load: a warm-up (at least 2 s and until every connection
//! has completed a push, so queues reach their steady state), then N consecutive windows; every
//! figure is the **median over the windows** (the repetitions), each window counting the pushes
//! that completed inside it. Server CPU comes from `/proc/PID/stat` (utime+stime) deltas over the
//! same windows; on a 2-core machine the client competes for CPU, so "server CPU per push" is the
//! fairer comparison than the push rate. Scrapes (`GET /metrics` plain, and with Prometheus'
//! `Accept` and `Accept-Encoding: gzip`) are timed to the last body byte, N times each, medians.
//! RSS (`VmRSS`, and peak `VmHWM`) is read after fill + pushes + scrapes. "client CPU per push"
//! is the load generator's own cost; "other processes' CPU" is what the rest of the machine used
//! during the windows (from `/proc/stat`): well above 0 means another build or test run shared
//! the 2 cores and every figure of that run is suspect (a warning is printed when the load
//! average is above 1 at the start).
//!
//! Columns: `batchgate`; `pushgateway` (reference, default flags: consistency check on; filled
//! quickly with the check off and a persistence file, SIGTERMed, restarted without the flag from
//! that file); `pg --no-check` (reference with `--push.disable-consistency-check`: it answers 202
//! before the write is applied, and neither reference column is durable — a crash loses up to
//! `--persistence.interval`). Ratios are batchgate / reference: for "higher is better" rows a ratio
//! above 1 favours batchgate, for "lower is better" rows a ratio below 1 does.

#[path = "../tests/support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use support::Server;

/// Prometheus 2.x' scrape `Accept` header (Debian's Prometheus).
const PROM_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------------
// Configuration and progress

struct Config {
    quick: bool,
    window: Duration,
    reps: usize,
    warmup_min: Duration,
    warmup_cap: Duration,
    sizes: [usize; 2],
    conns: usize,
    reference: bool,
    batchgate: bool,
    batchgate_flags: Vec<String>,
}

impl Config {
    fn from_env() -> Config {
        let quick = std::env::args().any(|a| a == "--quick")
            || std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let num = |name: &str, default: f64| -> f64 {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(default)
        };
        let sizes = std::env::var("BENCH_GROUPS")
            .ok()
            .and_then(|v| {
                let n: Vec<usize> = v.split(',').filter_map(|x| x.trim().parse().ok()).collect();
                (n.len() == 2 && n[0] > 0 && n[0] <= n[1]).then(|| [n[0], n[1]])
            })
            .unwrap_or([1_000, 10_000]);
        Config {
            quick,
            window: Duration::from_secs_f64(num("BENCH_WINDOW_SECS", if quick { 2.0 } else { 10.0 })),
            reps: (num("BENCH_REPS", if quick { 1.0 } else { 3.0 }) as usize).max(1),
            warmup_min: Duration::from_secs_f64(if quick { 1.0 } else { 2.0 }),
            warmup_cap: Duration::from_secs(if quick { 8 } else { 30 }),
            sizes,
            conns: (num("BENCH_CONNS", 16.0) as usize).max(1),
            reference: std::env::var("BENCH_REFERENCE").map_or(true, |v| v != "0"),
            batchgate: std::env::var("BENCH_BATCHGATE").map_or(true, |v| v != "0"),
            batchgate_flags: std::env::var("BENCH_BATCHGATE_FLAGS")
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect(),
        }
    }
}

fn started() -> Instant {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Progress goes to stderr (the table and the JSON line go to stdout).
macro_rules! progress {
    ($($arg:tt)*) => {
        eprintln!("[{:6.1}s] {}", started().elapsed().as_secs_f64(), format!($($arg)*))
    };
}

// ---------------------------------------------------------------------------------------------
// /proc

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of a process, in seconds (`pid` 0 = this process).
fn cpu_seconds(pid: u32, ticks: f64) -> f64 {
    let path = if pid == 0 {
        "/proc/self/stat".to_string()
    } else {
        format!("/proc/{pid}/stat")
    };
    let Ok(stat) = std::fs::read_to_string(path) else {
        return f64::NAN;
    };
    // Fields after the `(comm)`: state is field 3, utime 14 and stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (get(11) + get(12)) / ticks
}

/// Busy CPU time of the whole machine (all processes), in seconds.
fn machine_busy_seconds(ticks: f64) -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return f64::NAN;
    };
    let v: Vec<f64> = cpu.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    if v.len() < 5 {
        return f64::NAN;
    }
    // user nice system idle iowait irq softirq steal (guest time is already in user)
    let total: f64 = v.iter().take(8).sum();
    (total - v[3] - v[4]) / ticks
}

/// Time the machine's CPUs spent waiting for I/O, in seconds.
fn machine_iowait_seconds(ticks: f64) -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .find(|l| l.starts_with("cpu "))
        .and_then(|l| l.split_whitespace().nth(5))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(f64::NAN, |v| v / ticks)
}

/// Bytes written to the machine's disks (`/sys/block/*/stat`, loop and RAM devices excluded).
fn disk_written_bytes() -> f64 {
    let Ok(rd) = std::fs::read_dir("/sys/block") else {
        return f64::NAN;
    };
    rd.filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            !["loop", "ram", "zram"].iter().any(|p| n.starts_with(p))
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|s| s.split_whitespace().nth(6)?.parse::<f64>().ok())
        .map(|sectors| sectors * 512.0)
        .sum()
}

/// Bytes a process caused to be written to storage (`/proc/PID/io` `write_bytes`).
fn proc_written_bytes(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(f64::NAN)
}

/// The 1-minute load average (other work on the machine distorts every figure).
fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// (`VmRSS`, `VmHWM`) in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

// ---------------------------------------------------------------------------------------------
// The push body

/// One push: 10 families, 24 samples, ~2,858 bytes; values move with `seq` so that every push
/// is a new (successful) run of the job.
fn push_body(seq: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let duration = 30.0 + (seq % 600) as f64 * 0.25;
    let errors = seq / 97;
    let records = seq * 1_234 + 17;
    let mut b = String::with_capacity(3_072);
    let mut fam = |name: &str, kind: &str, help: &str, samples: &[(&str, String)]| {
        let _ = writeln!(b, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(b, "{name}{{job_name=\"bench\"{labels}}} {value}");
        }
    };
    fam(
        "gl_batch_job_last_success_timestamp",
        "gauge",
        "Unix time of the last successful completion of the batch job.",
        &[("", format!("{now:.3}"))],
    );
    fam(
        "gl_batch_job_last_start_timestamp",
        "gauge",
        "Unix time at which the last run of the batch job started.",
        &[("", format!("{:.3}", now - duration))],
    );
    fam(
        "gl_batch_job_last_failure_timestamp",
        "gauge",
        "Unix time of the last failed run of the batch job.",
        &[("", format!("{:.0}", now - 86_400.0))],
    );
    fam(
        "gl_batch_job_duration_seconds",
        "gauge",
        "Wall-clock duration of the last run of the batch job.",
        &[("", format!("{duration}"))],
    );
    fam(
        "gl_batch_job_exit_code",
        "gauge",
        "Exit code of the last run of the batch job.",
        &[("", "0".to_string())],
    );
    fam(
        "gl_batch_job_status",
        "gauge",
        "Status of the last run (1 for the current status).",
        &[
            (",status=\"running\"", "0".to_string()),
            (",status=\"completed\"", "1".to_string()),
            (",status=\"failed\"", "0".to_string()),
        ],
    );
    fam(
        "gl_batch_job_errors_total",
        "counter",
        "Errors seen by the batch job.",
        &[("", errors.to_string())],
    );
    fam(
        "gl_batch_job_records_processed_total",
        "counter",
        "Records processed by the batch job.",
        &[("", records.to_string())],
    );
    fam(
        "gl_batch_job_max_staleness_seconds",
        "gauge",
        "Oldest acceptable age of the last success.",
        &[("", "3600".to_string())],
    );
    let name = "gl_batch_job_step_duration_seconds";
    let _ = writeln!(
        b,
        "# HELP {name} Duration of the steps of the batch job.\n# TYPE {name} histogram"
    );
    let count = 100 + seq % 1_000;
    let les = [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf",
    ];
    for (i, le) in les.iter().enumerate() {
        let cumulative = count * (i as u64 + 1) / les.len() as u64;
        let _ = writeln!(b, "{name}_bucket{{job_name=\"bench\",le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(b, "{name}_sum{{job_name=\"bench\"}} {:.3}", count as f64 * 0.42);
    let _ = writeln!(b, "{name}_count{{job_name=\"bench\"}} {count}");
    b
}

// ---------------------------------------------------------------------------------------------
// HTTP load

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("reqwest client")
}

/// One push; `Ok(None)` on 2xx, `Ok(Some(text))` on another status.
async fn push(client: &reqwest::Client, base: &str, group: usize, seq: u64) -> Result<Option<String>, String> {
    let resp = client
        .put(format!("{base}/metrics/job/bench/instance/i{group}"))
        .header("Content-Type", "text/plain; version=0.0.4")
        .body(push_body(seq))
        .send()
        .await
        .map_err(|e| format!("{e}"))?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| format!("{e}"))?;
    if status.is_success() {
        Ok(None)
    } else {
        Ok(Some(format!("{status}: {}", String::from_utf8_lossy(&body).trim())))
    }
}

#[derive(Default)]
struct ErrorLog {
    count: u64,
    first: Option<String>,
}

impl ErrorLog {
    fn record(&mut self, e: String) {
        self.count += 1;
        self.first.get_or_insert(e);
    }
}

/// Pushes each group of `groups` once, `conns` at a time, with progress on stderr.
async fn fill(base: &str, groups: std::ops::Range<usize>, conns: usize, what: &str) {
    let total = groups.len() as u64;
    let start_group = groups.start;
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Mutex::new(ErrorLog::default()));
    let t0 = Instant::now();
    progress!(
        "{what}: filling groups i{}..i{} ({total} pushes)",
        groups.start,
        groups.end - 1
    );
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (next, done, errors, base) = (next.clone(), done.clone(), errors.clone(), base.to_string());
        tasks.push(tokio::spawn(async move {
            let c = client();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                match push(&c, &base, start_group + i as usize, i).await {
                    Ok(None) => {}
                    Ok(Some(e)) | Err(e) => errors.lock().unwrap().record(e),
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let all = futures_join(tasks);
    tokio::pin!(all);
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = &mut all => break,
            _ = tick.tick() => {
                let d = done.load(Ordering::Relaxed);
                progress!(
                    "{what}: filled {d}/{total} ({:.0} pushes/s)",
                    d as f64 / t0.elapsed().as_secs_f64()
                );
            }
        }
    }
    let el = t0.elapsed().as_secs_f64();
    let e = errors.lock().unwrap();
    progress!(
        "{what}: filled {total} groups in {el:.1} s ({:.0} pushes/s){}",
        total as f64 / el,
        match &e.first {
            Some(first) => format!(", {} ERRORS, first: {first}", e.count),
            None => String::new(),
        }
    );
}

/// Waits for every task (no `futures` dependency needed).
async fn futures_join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}

struct Sample {
    done: Instant,
    latency_us: u32,
    ok: bool,
}

#[derive(Clone, Debug)]
struct Window {
    secs: f64,
    pushes: u64,
    errors: u64,
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    server_cpu_ms_per_push: f64,
    client_cpu_ms_per_push: f64,
    /// CPU used by every other process on the machine during the window, in cores.
    other_cores: f64,
    /// The machine's CPUs waiting for I/O during the window, in cores.
    iowait_cores: f64,
    /// Bytes the server wrote to storage per push (durability cost).
    server_disk_kb_per_push: f64,
    /// Disk writes of every other process during the window, MB/s.
    other_disk_mb_s: f64,
}

#[derive(Clone, Debug)]
struct PushResult {
    groups: usize,
    windows: Vec<Window>,
    warmup_s: f64,
    loadavg_before: f64,
    /// `VmRSS` (KiB) before the load, i.e. right after the fill, and after it.
    rss_before_kib: u64,
    rss_after_kib: u64,
    first_error: Option<String>,
}

impl PushResult {
    fn median(&self, f: impl Fn(&Window) -> f64) -> f64 {
        median(self.windows.iter().map(f).collect())
    }
    fn errors(&self) -> u64 {
        self.windows.iter().map(|w| w.errors).sum()
    }
    fn json(&self) -> Value {
        json!({
            "groups": self.groups,
            "pushes_per_s": self.median(|w| w.rate),
            "p50_ms": self.median(|w| w.p50_ms),
            "p99_ms": self.median(|w| w.p99_ms),
            "server_cpu_ms_per_push": self.median(|w| w.server_cpu_ms_per_push),
            "client_cpu_ms_per_push": self.median(|w| w.client_cpu_ms_per_push),
            "errors": self.errors(),
            "first_error": self.first_error,
                        "warmup_s": self.warmup_s,
                        "loadavg_1m_before": self.loadavg_before,
            "rss_before_kib": self.rss_before_kib,
            "rss_after_kib": self.rss_after_kib,
                        "other_processes_cores": self.median(|w| w.other_cores),
            "iowait_cores": self.median(|w| w.iowait_cores),
            "server_disk_kb_per_push": self.median(|w| w.server_disk_kb_per_push),
            "other_processes_disk_mb_s": self.median(|w| w.other_disk_mb_s),

            "windows": self.windows.iter().map(|w| json!({
                "secs": w.secs, "pushes": w.pushes, "errors": w.errors, "pushes_per_s": w.rate,
                "p50_ms": w.p50_ms, "p99_ms": w.p99_ms,
                "server_cpu_ms_per_push": w.server_cpu_ms_per_push,
                                "client_cpu_ms_per_push": w.client_cpu_ms_per_push,
                                "other_processes_cores": w.other_cores,
                "iowait_cores": w.iowait_cores,
                "server_disk_kb_per_push": w.server_disk_kb_per_push,
                "other_processes_disk_mb_s": w.other_disk_mb_s,
            })).collect::<Vec<_>>(),
        })
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Nearest-rank percentile of sorted microseconds, in ms.
fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    sorted_us[rank.clamp(1, sorted_us.len()) - 1] as f64 / 1000.0
}

/// Continuous re-pushing over groups i0..i{groups-1}: warm-up, then `cfg.reps` windows.
async fn measure(cfg: &Config, ticks: f64, pid: u32, base: &str, groups: usize, what: &str) -> PushResult {
    let seq = Arc::new(AtomicU64::new(0));
    let completions = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::<Sample>::with_capacity(1 << 16)));
    let first_error = Arc::new(Mutex::new(None::<String>));
    let loadavg_before = loadavg();
    let rss_before_kib = rss_kib(pid).0;
    progress!(
        "{what}: pushing over {groups} groups from {} connections: warm-up, then {} x {:.0} s \
         (load average {loadavg_before:.2}, server RSS {:.1} MiB)",
        cfg.conns,
        cfg.reps,
        cfg.window.as_secs_f64(),
        rss_before_kib as f64 / 1024.0
    );
    let mut tasks = Vec::new();
    for _ in 0..cfg.conns {
        let (seq, completions, stop, samples, first_error, base) = (
            seq.clone(),
            completions.clone(),
            stop.clone(),
            samples.clone(),
            first_error.clone(),
            base.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                let s = seq.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                let r = push(&c, &base, (s % groups as u64) as usize, 1_000_000 + s).await;
                let done = Instant::now();
                let ok = matches!(r, Ok(None));
                if let Ok(Some(e)) | Err(e) = r {
                    first_error.lock().unwrap().get_or_insert(e);
                }
                let latency_us = (done - t).as_micros().min(u32::MAX as u128) as u32;
                samples.lock().unwrap().push(Sample { done, latency_us, ok });
                completions.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Warm-up: at least warmup_min, and until every connection's first push has been replaced.
    let t_start = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let el = t_start.elapsed();
        if (el >= cfg.warmup_min && completions.load(Ordering::Relaxed) >= cfg.conns as u64) || el >= cfg.warmup_cap {
            break;
        }
    }
    let warmup_s = t_start.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let snap = || {
        (
            Instant::now(),
            cpu_seconds(pid, ticks),
            cpu_seconds(0, ticks),
            machine_busy_seconds(ticks),
            machine_iowait_seconds(ticks),
            disk_written_bytes(),
            proc_written_bytes(pid),
        )
    };
    let mut bounds = vec![snap()];
    for k in 1..=cfg.reps {
        tokio::time::sleep_until((t0 + cfg.window * k as u32).into()).await;
        bounds.push(snap());
        let n = completions.load(Ordering::Relaxed);
        progress!("{what}: window {k}/{} done ({n} pushes so far)", cfg.reps);
    }
    stop.store(true, Ordering::Relaxed);
    let drain = Instant::now();
    let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
    if tokio::time::timeout(DRAIN_TIMEOUT, futures_join(tasks)).await.is_err() {
        progress!("{what}: in-flight pushes not done after {DRAIN_TIMEOUT:?}; dropping them");
        aborts.iter().for_each(|a| a.abort());
    }
    if drain.elapsed() > Duration::from_secs(1) {
        progress!(
            "{what}: in-flight pushes drained in {:.1} s",
            drain.elapsed().as_secs_f64()
        );
    }
    let samples = std::mem::take(&mut *samples.lock().unwrap());
    let mut windows = Vec::new();
    for w in bounds.windows(2) {
        let ((a, sa, ca, ma, ia, da, wa), (b, sb, cb, mb, ib, db, wb)) = (w[0], w[1]);
        let mut lat: Vec<u32> = Vec::new();
        let mut errors = 0;
        for s in samples.iter().filter(|s| s.done >= a && s.done < b) {
            if s.ok {
                lat.push(s.latency_us);
            } else {
                errors += 1;
            }
        }
        lat.sort_unstable();
        let pushes = lat.len() as u64;
        let secs = (b - a).as_secs_f64();
        // No tick of CPU time at all (10 ms resolution) over a window: below resolution.
        let per = |d: f64| {
            if pushes == 0 || d <= 0.0 {
                f64::NAN
            } else {
                d * 1000.0 / pushes as f64
            }
        };
        windows.push(Window {
            secs,
            pushes,
            errors,
            rate: pushes as f64 / secs,
            p50_ms: percentile_ms(&lat, 50.0),
            p99_ms: percentile_ms(&lat, 99.0),
            server_cpu_ms_per_push: per(sb - sa),
            client_cpu_ms_per_push: per(cb - ca),
            other_cores: ((mb - ma) - (sb - sa) - (cb - ca)).max(0.0) / secs,
            iowait_cores: (ib - ia) / secs,
            server_disk_kb_per_push: if pushes == 0 {
                f64::NAN
            } else {
                (wb - wa) / 1024.0 / pushes as f64
            },
            other_disk_mb_s: ((db - da) - (wb - wa)).max(0.0) / 1e6 / secs,
        });
    }
    let r = PushResult {
        groups,
        windows,
        warmup_s,
        loadavg_before,
        rss_before_kib,
        rss_after_kib: rss_kib(pid).0,
        first_error: first_error.lock().unwrap().clone(),
    };
    progress!(
        "{what}: {groups} groups: {:.0} pushes/s, p50 {:.2} ms, p99 {:.2} ms, server CPU {:.3} ms/push, \
                           other processes {:.2} cores and {:.1} MB/s of disk writes, iowait {:.2} cores, \
         server RSS {:.1} MiB{}",
        r.median(|w| w.rate),
        r.median(|w| w.p50_ms),
        r.median(|w| w.p99_ms),
        r.median(|w| w.server_cpu_ms_per_push),
        r.median(|w| w.other_cores),
        r.median(|w| w.other_disk_mb_s),
        r.median(|w| w.iowait_cores),
        r.rss_after_kib as f64 / 1024.0,
        match &r.first_error {
            Some(e) => format!(", {} ERRORS, first: {e}", r.errors()),
            None => String::new(),
        }
    );
    r
}

// ---------------------------------------------------------------------------------------------
// Scrapes

struct ScrapeOnce {
    ms: f64,
    bytes: usize,
    server_cpu_ms: f64,
    gzip: bool,
    content_type: String,
    groups: usize,
    /// The server's own `batchgate_storage_*` lines, if it has any (batchgate only).
    storage_lines: Vec<String>,
}

async fn scrape_once(base: &str, gzip: bool, ticks: f64, pid: u32) -> Result<ScrapeOnce, String> {
    let c = client();
    let mut req = c.get(format!("{base}/metrics"));
    if gzip {
        req = req.header("Accept", PROM_ACCEPT).header("Accept-Encoding", "gzip");
    }
    let cpu0 = cpu_seconds(pid, ticks);
    let t = Instant::now();
    let resp = req.send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (encoding, content_type) = (header("content-encoding"), header("content-type"));
    let body = resp.bytes().await.map_err(|e| e.to_string())?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    let server_cpu_ms = (cpu_seconds(pid, ticks) - cpu0) * 1000.0;
    if !status.is_success() {
        return Err(format!("GET /metrics: {status}"));
    }
    let groups = if encoding.is_empty() {
        body.split(|&c| c == b'\n')
            .filter(|l| l.starts_with(b"push_time_seconds{"))
            .count()
    } else {
        0
    };
    let storage_lines = if encoding.is_empty() {
        body.split(|&c| c == b'\n')
            .filter(|l| l.starts_with(b"batchgate_storage_"))
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect()
    } else {
        Vec::new()
    };
    Ok(ScrapeOnce {
        ms,
        bytes: body.len(),
        server_cpu_ms,
        gzip: encoding == "gzip",
        content_type,
        groups,
        storage_lines,
    })
}

#[derive(Clone, Debug, Default)]
struct ScrapeResult {
    plain_ms: f64,
    gzip_ms: f64,
    plain_bytes: f64,
    gzip_bytes: f64,
    plain_cpu_ms: f64,
    gzip_cpu_ms: f64,
    gzip_encoded: bool,
    gzip_content_type: String,
    groups_seen: usize,
    rss_kib: u64,
    hwm_kib: u64,
    storage_lines: Vec<String>,
}

impl ScrapeResult {
    fn json(&self) -> Value {
        json!({
            "plain_ms": self.plain_ms, "gzip_ms": self.gzip_ms,
            "plain_bytes": self.plain_bytes, "gzip_bytes": self.gzip_bytes,
            "plain_server_cpu_ms": self.plain_cpu_ms, "gzip_server_cpu_ms": self.gzip_cpu_ms,
            "gzip_encoded": self.gzip_encoded, "gzip_content_type": self.gzip_content_type,
            "groups_seen": self.groups_seen, "rss_kib": self.rss_kib, "hwm_kib": self.hwm_kib,
        })
    }
}

/// `cfg.reps` plain and gzip scrapes (alternating), medians; then RSS.
async fn scrapes(cfg: &Config, ticks: f64, pid: u32, base: &str, what: &str) -> ScrapeResult {
    let mut plain = Vec::new();
    let mut gz = Vec::new();
    let mut r = ScrapeResult::default();
    for i in 0..cfg.reps {
        for gzip in [false, true] {
            match scrape_once(base, gzip, ticks, pid).await {
                Ok(s) => {
                    progress!(
                        "{what}: GET /metrics {} #{}: {:.0} ms, {} bytes{}",
                        if gzip { "gzip " } else { "plain" },
                        i + 1,
                        s.ms,
                        s.bytes,
                        if gzip {
                            format!(
                                " ({}, {})",
                                if s.gzip { "gzip" } else { "NOT gzip-encoded" },
                                s.content_type
                            )
                        } else {
                            format!(", {} groups", s.groups)
                        }
                    );
                    if gzip {
                        r.gzip_encoded = s.gzip;
                        r.gzip_content_type = s.content_type.clone();
                        gz.push(s);
                    } else {
                        r.groups_seen = s.groups;
                        r.storage_lines = s.storage_lines.clone();
                        plain.push(s);
                    }
                }
                Err(e) => progress!("{what}: scrape FAILED: {e}"),
            }
        }
    }
    let med = |v: &[ScrapeOnce], f: fn(&ScrapeOnce) -> f64| median(v.iter().map(f).collect());
    r.plain_ms = med(&plain, |s| s.ms);
    r.gzip_ms = med(&gz, |s| s.ms);
    r.plain_bytes = med(&plain, |s| s.bytes as f64);
    r.gzip_bytes = med(&gz, |s| s.bytes as f64);
    r.plain_cpu_ms = med(&plain, |s| s.server_cpu_ms);
    r.gzip_cpu_ms = med(&gz, |s| s.server_cpu_ms);
    (r.rss_kib, r.hwm_kib) = rss_kib(pid);
    r
}

/// Counts the groups a server exposes (one plain scrape), warning when it is not `expected`.
async fn check_groups(base: &str, expected: usize, ticks: f64, pid: u32, what: &str) {
    match scrape_once(base, false, ticks, pid).await {
        Ok(s) if s.groups == expected => {
            progress!("{what}: {} groups stored (scrape {:.0} ms)", s.groups, s.ms)
        }
        Ok(s) => progress!("{what}: WARNING: {} groups in /metrics, expected {expected}", s.groups),
        Err(e) => progress!("{what}: WARNING: scrape failed: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The servers

#[derive(Default)]
struct Column {
    push: Vec<PushResult>,
    scrape: ScrapeResult,
}

impl Column {
    fn json(&self) -> Value {
        json!({
            "push": self.push.iter().map(PushResult::json).collect::<Vec<_>>(),
            "scrape": self.scrape.json(),
        })
    }
}

fn bench_batchgate(cfg: &Config, rt: &tokio::runtime::Runtime, ticks: f64) -> Column {
    let what = "batchgate";
    let flags: Vec<&str> = cfg.batchgate_flags.iter().map(String::as_str).collect();
    // BENCH_BATCHGATE_BIN: another build of batchgate (to compare two builds, or to run this
    // bench while the tree does not compile: build it elsewhere with a stub `src/`).
    let other_bin = std::env::var_os("BENCH_BATCHGATE_BIN").map(std::path::PathBuf::from);
    let bin = other_bin
        .clone()
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_batchgate").into());
    progress!("{what}: starting {} serve {}", bin.display(), flags.join(" "));
    let _dir;
    let server = match other_bin {
        None => Server::batchgate(&flags),
        Some(bin) => {
            let dir = tempfile::tempdir().expect("tempdir");
            let data = dir.path().join("data");
            let data_arg = format!("--storage.path={}", data.display());
            let mut args = vec!["serve", data_arg.as_str()];
            args.extend_from_slice(&flags);
            let s = Server::start(&bin, &args, data);
            _dir = dir;
            s
        }
    };
    let (pid, base) = (server.pid(), server.url.clone());
    let [small, large] = cfg.sizes;
    let mut col = Column::default();
    rt.block_on(async {
        fill(&base, 0..small, cfg.conns, what).await;
        check_groups(&base, small, ticks, pid, what).await;
        col.push.push(measure(cfg, ticks, pid, &base, small, what).await);
        fill(&base, small..large, cfg.conns, what).await;
        col.push.push(measure(cfg, ticks, pid, &base, large, what).await);
        col.scrape = scrapes(cfg, ticks, pid, &base, what).await;
    });
    let size = dir_size(&server.data_dir);
    report_storage_metrics(&col.scrape.storage_lines, what);
    progress!(
        "{what}: RSS {:.1} MiB (peak {:.1} MiB), data directory {:.1} MB",
        col.scrape.rss_kib as f64 / 1024.0,
        col.scrape.hwm_kib as f64 / 1024.0,
        size as f64 / 1e6
    );
    col
}

/// Summarises batchgate's own commit histograms (cumulative over the whole run: fill included).
fn report_storage_metrics(lines: &[String], what: &str) {
    let value = |name: &str| {
        lines.iter().find_map(|l| {
            let rest = l.strip_prefix(name)?;
            let rest = rest.strip_prefix("{}").unwrap_or(rest);
            rest.strip_prefix(' ')?.trim().parse::<f64>().ok()
        })
    };
    let count = value("batchgate_storage_commit_duration_seconds_count");
    let sum = value("batchgate_storage_commit_duration_seconds_sum");
    let writes = value("batchgate_storage_commit_writes_sum");
    let over = |le: &str| {
        let at = lines.iter().find_map(|l| {
            let rest = l.strip_prefix("batchgate_storage_commit_duration_seconds_bucket{")?;
            let rest = rest.strip_prefix(&format!("le=\"{le}\"}} "))?;
            rest.trim().parse::<f64>().ok()
        })?;
        Some(count? - at)
    };
    if let (Some(n), Some(s)) = (count, sum) {
        progress!(
            "{what}: its own figures over the whole run: {n:.0} commits, mean {:.2} ms, {:.1} writes \
             per commit{}{}",
            s * 1000.0 / n.max(1.0),
            writes.unwrap_or(f64::NAN) / n.max(1.0),
            over("0.1").map_or(String::new(), |o| format!(", {o:.0} over 100 ms")),
            over("1").map_or(String::new(), |o| format!(", {o:.0} over 1 s")),
        );
    }
}

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Both reference columns: (default flags, `--push.disable-consistency-check`).
fn bench_reference(cfg: &Config, rt: &tokio::runtime::Runtime, ticks: f64) -> (Column, Column) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = format!("--persistence.file={}", dir.path().join("pushgateway.data").display());
    // No periodic save during a measurement: each process lives far less than an hour and
    // writes the file on SIGTERM.
    let interval = "--persistence.interval=1h";
    let nocheck_flags = ["--push.disable-consistency-check", file.as_str(), interval];
    let check_flags = [file.as_str(), interval];
    let [small, large] = cfg.sizes;
    let (mut checked, mut nocheck) = (Column::default(), Column::default());
    let (nc, ck) = ("pushgateway --no-check", "pushgateway");

    let start = |flags: &[&str], what: &str| {
        progress!("{what}: starting prometheus-pushgateway {}", flags.join(" "));
        let s = Server::pushgateway(flags);
        (s.pid(), s.url.clone(), s)
    };
    let stop = |mut s: Server, what: &str| {
        let t = Instant::now();
        let status = s.terminate();
        progress!(
            "{what}: SIGTERM: exited ({status}) after {:.1} s (persisted)",
            t.elapsed().as_secs_f64()
        );
    };

    let (pid, base, s) = start(&nocheck_flags, nc);
    rt.block_on(async {
        fill(&base, 0..small, cfg.conns, nc).await;
        check_groups(&base, small, ticks, pid, nc).await;
        nocheck.push.push(measure(cfg, ticks, pid, &base, small, nc).await);
    });
    stop(s, nc);

    let (pid, base, s) = start(&check_flags, ck);
    rt.block_on(async {
        check_groups(&base, small, ticks, pid, ck).await;
        checked.push.push(measure(cfg, ticks, pid, &base, small, ck).await);
    });
    stop(s, ck);

    let (pid, base, s) = start(&nocheck_flags, nc);
    rt.block_on(async {
        fill(&base, small..large, cfg.conns, nc).await;
        nocheck.push.push(measure(cfg, ticks, pid, &base, large, nc).await);
        nocheck.scrape = scrapes(cfg, ticks, pid, &base, nc).await;
    });
    stop(s, nc);

    let (pid, base, s) = start(&check_flags, ck);
    rt.block_on(async {
        checked.push.push(measure(cfg, ticks, pid, &base, large, ck).await);
        checked.scrape = scrapes(cfg, ticks, pid, &base, ck).await;
    });
    stop(s, ck);
    (checked, nocheck)
}

// ---------------------------------------------------------------------------------------------
// Output

fn fmt_num(v: f64) -> String {
    if v.is_nan() {
        return "-".to_string();
    }
    let integral = v == v.trunc();
    // Round to 3 significant digits first, so that 99.99 prints as 100, not 100.0.
    let v = if v == 0.0 {
        0.0
    } else {
        let scale = 10f64.powi(2 - v.abs().log10().floor() as i32);
        (v * scale).round() / scale
    };
    let a = v.abs();
    if integral && a < 1000.0 {
        format!("{v:.0}")
    } else if a >= 1000.0 {
        let s = format!("{v:.0}");
        // thousands separators
        let (sign, digits) = s.split_at(if s.starts_with('-') { 1 } else { 0 });
        let mut out = String::new();
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(ch);
        }
        format!("{sign}{out}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn fmt_ratio(a: f64, b: f64) -> String {
    if a.is_nan() || b.is_nan() || b == 0.0 {
        return "-".to_string();
    }
    let r = a / b;
    if r >= 100.0 {
        format!("{r:.0}x")
    } else if r >= 10.0 {
        format!("{r:.1}x")
    } else if r >= 0.1 {
        format!("{r:.2}x")
    } else {
        format!("{r:.4}x")
    }
}

/// A row: label, "higher"/"lower", and the figure extracted from a column.
type Row<'a> = (String, &'static str, Box<dyn Fn(&Column) -> f64 + 'a>);

fn rows(cfg: &Config) -> Vec<Row<'static>> {
    let mut rows: Vec<Row> = Vec::new();
    for (i, &g) in cfg.sizes.iter().enumerate() {
        let at = |m: fn(&Window) -> f64| move |c: &Column| c.push.get(i).map_or(f64::NAN, |p| p.median(m));
        rows.push((
            format!("push rate @{g} groups (pushes/s)"),
            "higher",
            Box::new(at(|w| w.rate)),
        ));
        rows.push((
            format!("push p50 latency @{g} (ms)"),
            "lower",
            Box::new(at(|w| w.p50_ms)),
        ));
        rows.push((
            format!("push p99 latency @{g} (ms)"),
            "lower",
            Box::new(at(|w| w.p99_ms)),
        ));
        rows.push((
            format!("server CPU per push @{g} (ms)"),
            "lower",
            Box::new(at(|w| w.server_cpu_ms_per_push)),
        ));
        rows.push((
            format!("client CPU per push @{g} (ms)"),
            "info",
            Box::new(at(|w| w.client_cpu_ms_per_push)),
        ));
        rows.push((
            format!("server disk writes per push @{g} (KB)"),
            "info",
            Box::new(at(|w| w.server_disk_kb_per_push)),
        ));
        rows.push((
            format!("other processes' CPU @{g} (cores)"),
            "info",
            Box::new(at(|w| w.other_cores)),
        ));
        rows.push((
            format!("other processes' disk writes @{g} (MB/s)"),
            "info",
            Box::new(at(|w| w.other_disk_mb_s)),
        ));
        rows.push((
            format!("machine iowait @{g} (cores)"),
            "info",
            Box::new(at(|w| w.iowait_cores)),
        ));
        rows.push((
            format!("push errors @{g}"),
            "lower",
            Box::new(move |c: &Column| c.push.get(i).map_or(f64::NAN, |p| p.errors() as f64)),
        ));
    }
    let g = cfg.sizes[1];
    let s = |f: fn(&ScrapeResult) -> f64| move |c: &Column| f(&c.scrape);
    rows.push((
        format!("GET /metrics plain @{g} (ms)"),
        "lower",
        Box::new(s(|r| r.plain_ms)),
    ));
    rows.push((
        format!("GET /metrics gzip @{g} (ms)"),
        "lower",
        Box::new(s(|r| r.gzip_ms)),
    ));
    rows.push((
        "/metrics size plain (MB)".into(),
        "lower",
        Box::new(s(|r| r.plain_bytes / 1e6)),
    ));
    rows.push((
        "/metrics size gzip (MB)".into(),
        "lower",
        Box::new(s(|r| r.gzip_bytes / 1e6)),
    ));
    rows.push((
        "server CPU per plain scrape (ms)".into(),
        "lower",
        Box::new(s(|r| r.plain_cpu_ms)),
    ));
    rows.push((
        "server CPU per gzip scrape (ms)".into(),
        "lower",
        Box::new(s(|r| r.gzip_cpu_ms)),
    ));
    rows.push((
        "groups seen in /metrics".into(),
        "info",
        Box::new(s(|r| r.groups_seen as f64)),
    ));
    rows.push((
        "RSS after fill+pushes+scrapes (MiB)".into(),
        "lower",
        Box::new(s(|r| r.rss_kib as f64 / 1024.0)),
    ));
    rows.push((
        "peak RSS, VmHWM (MiB)".into(),
        "lower",
        Box::new(s(|r| r.hwm_kib as f64 / 1024.0)),
    ));
    rows
}

fn print_table(cfg: &Config, bg: Option<&Column>, reference: Option<&(Column, Column)>) {
    let mut header = vec!["metric", "better"];
    if bg.is_some() {
        header.push("batchgate");
    }
    if reference.is_some() {
        header.push("pushgateway");
        if bg.is_some() {
            header.push("bg/pg");
        }
        header.push("pg --no-check");
        if bg.is_some() {
            header.push("bg/pg-nc");
        }
    }
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for (label, better, f) in rows(cfg) {
        let mut row = vec![label, better.to_string()];
        let b = bg.map(&f);
        if let Some(b) = b {
            row.push(fmt_num(b));
        }
        if let Some((ck, nc)) = reference {
            for c in [f(ck), f(nc)] {
                row.push(fmt_num(c));
                if let Some(b) = b {
                    row.push(if better == "info" {
                        String::new()
                    } else {
                        fmt_ratio(b, c)
                    });
                }
            }
        }
        table.push(row);
    }
    let widths: Vec<usize> = (0..table[0].len())
        .map(|i| table.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (ri, row) in table.iter().enumerate() {
        for (i, cell) in row.iter().enumerate() {
            if i == 0 {
                let _ = write!(out, "{cell:<w$}", w = widths[i]);
            } else {
                let _ = write!(out, "  {cell:>w$}", w = widths[i]);
            }
        }
        out.push('\n');
        if ri == 0 {
            out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
            out.push('\n');
        }
    }
    println!();
    println!(
        "batchgate vs Pushgateway: {} connections, {} x {:.0} s windows per figure (median), {} mode",
        cfg.conns,
        cfg.reps,
        cfg.window.as_secs_f64(),
        if cfg.quick { "QUICK" } else { "full" }
    );
    print!("{out}");
    println!(
        "ratios are batchgate / reference ('higher': >1 favours batchgate; 'lower': <1 does).\n\
         batchgate: 2xx after the push is fsynced (SQLite WAL, synchronous=FULL).\n\
         pushgateway: Debian 1.5.1, default flags (consistency check on); 200 after the write is \
         applied in memory, not durable.\n\
         pg --no-check: --push.disable-consistency-check; 202 BEFORE the write is applied, not \
         durable, inconsistent pushes accepted.\n\
         server CPU per push is the fairer comparison on 2 cores (the client shares the CPU)."
    );
    let first_errors = [
        ("batchgate", bg),
        ("pushgateway", reference.map(|r| &r.0)),
        ("pg --no-check", reference.map(|r| &r.1)),
    ];
    for (name, col) in first_errors {
        if let Some(e) = col.and_then(|c| c.push.iter().find_map(|p| p.first_error.as_ref())) {
            println!("{name}: push errors, first: {e}");
        }
        for p in col.map_or(&[][..], |c| &c.push[..]) {
            let fewest = p.windows.iter().map(|w| w.pushes).min().unwrap_or(0);
            if fewest < 100 {
                println!(
                    "{name} @{}: only {fewest} pushes in a window: its percentiles rest on few \
                     samples (and the client's CPU may be below the 10 ms tick: '-')",
                    p.groups
                );
            }
        }
    }
}

fn main() {
    started();
    let cfg = Config::from_env();
    let load_start = loadavg();
    if load_start > 1.0 {
        progress!(
            "WARNING: load average {load_start:.2} before the start: other work on this machine \
             will distort the figures (see the 'other processes' rows)"
        );
    }
    let ticks = clock_ticks();
    let body = push_body(0);
    progress!(
        "push body: {} bytes, {} families, {} samples; {} connections; groups {:?}; {} x {:.0} s windows; {} mode",
        body.len(),
        body.lines().filter(|l| l.starts_with("# TYPE")).count(),
        body.lines().filter(|l| !l.starts_with('#')).count(),
        cfg.conns,
        cfg.sizes,
        cfg.reps,
        cfg.window.as_secs_f64(),
        if cfg.quick { "quick" } else { "full" }
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    let bg = cfg.batchgate.then(|| bench_batchgate(&cfg, &rt, ticks));
    let reference = cfg.reference.then(|| bench_reference(&cfg, &rt, ticks));
    print_table(&cfg, bg.as_ref(), reference.as_ref());

    let mut servers = json!({});
    let mut ratios = json!({});
    if let Some(bg) = &bg {
        servers["batchgate"] = bg.json();
    }
    if let Some((ck, nc)) = &reference {
        servers["pushgateway"] = ck.json();
        servers["pushgateway_no_check"] = nc.json();
    }
    if let (Some(bg), Some((ck, nc))) = (&bg, &reference) {
        for (label, _, f) in rows(&cfg) {
            let r = |c: &Column| {
                let (a, b) = (f(bg), f(c));
                if a.is_nan() || b.is_nan() || b == 0.0 {
                    Value::Null
                } else {
                    json!(a / b)
                }
            };
            ratios[label] = json!({ "vs_pushgateway": r(ck), "vs_pushgateway_no_check": r(nc) });
        }
    }
    let total = started().elapsed().as_secs_f64();
    progress!("done in {total:.0} s");
    println!(
        "{}",
        json!({
            "bench": "batchgate/gateway",
            "mode": if cfg.quick { "quick" } else { "full" },
            "window_s": cfg.window.as_secs_f64(),
            "reps": cfg.reps,
            "connections": cfg.conns,
            "groups": cfg.sizes,
            "push_body_bytes": body.len(),
                        "total_s": total,
            "loadavg_1m_start": load_start,
            "loadavg_1m_end": loadavg(),
            "servers": servers,
            "ratios_batchgate_over_reference": ratios,
        })
    );
}
