//! batchgate's own metrics, exposed on `/metrics` beside the pushed ones.
//!
//! They are built as `MetricFamily` values so they go through the same sorting, merging and
//! encoding as pushed families, and so pushes can be checked against their names and types.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use batchgate_format::proto::{Bucket, Counter, Gauge, Histogram as HistogramProto};
use batchgate_format::{LabelPair, Metric, MetricFamily, MetricType};

const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const SIZE_BUCKETS: &[f64] = &[
    256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

#[derive(Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    count: u64,
    sum: f64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            count: 0,
            sum: 0.0,
        }
    }

    fn observe(&mut self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i] += 1;
        }
        self.count += 1;
        self.sum += v;
    }

    fn to_metric(&self, label: Vec<LabelPair>) -> Metric {
        let mut cumulative = 0;
        let bucket = self
            .bounds
            .iter()
            .zip(&self.counts)
            .map(|(b, c)| {
                cumulative += c;
                Bucket {
                    cumulative_count: Some(cumulative),
                    upper_bound: Some(*b),
                    ..Default::default()
                }
            })
            .collect();
        Metric {
            label,
            histogram: Some(HistogramProto {
                sample_count: Some(self.count),
                sample_sum: Some(self.sum),
                bucket,
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// Counters and histograms updated by the HTTP layer and the store writer.
pub struct Telemetry {
    start_time: f64,
    requests: Mutex<BTreeMap<(&'static str, String, u16), u64>>,
    push_duration: Mutex<BTreeMap<String, Histogram>>,
    push_size: Mutex<BTreeMap<String, Histogram>>,
    commit_duration: Mutex<Histogram>,
    commit_batch: Mutex<Histogram>,
    commit_failures: AtomicU64,
    groups: AtomicU64,
    series: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn family(name: &str, help: &str, mtype: MetricType, metric: Vec<Metric>) -> MetricFamily {
    MetricFamily {
        name: Some(name.into()),
        help: Some(help.into()),
        r#type: Some(mtype as i32),
        metric,
        unit: None,
    }
}

fn gauge(value: f64) -> Metric {
    Metric {
        gauge: Some(Gauge { value: Some(value) }),
        ..Default::default()
    }
}

fn counter(value: f64, label: Vec<LabelPair>) -> Metric {
    Metric {
        label,
        counter: Some(Counter {
            value: Some(value),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new()
    }
}

impl Telemetry {
    pub fn new() -> Telemetry {
        let start_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        Telemetry {
            start_time,
            requests: Mutex::default(),
            push_duration: Mutex::default(),
            push_size: Mutex::default(),
            commit_duration: Mutex::new(Histogram::new(DURATION_BUCKETS)),
            commit_batch: Mutex::new(Histogram::new(BATCH_BUCKETS)),
            commit_failures: AtomicU64::new(0),
            groups: AtomicU64::new(0),
            series: AtomicU64::new(0),
        }
    }

    pub fn observe_request(&self, handler: &'static str, method: &str, code: u16) {
        *lock(&self.requests)
            .entry((handler, method.to_lowercase(), code))
            .or_default() += 1;
    }

    pub fn observe_push(&self, method: &str, seconds: f64, bytes: usize) {
        let method = method.to_lowercase();
        lock(&self.push_duration)
            .entry(method.clone())
            .or_insert_with(|| Histogram::new(DURATION_BUCKETS))
            .observe(seconds);
        lock(&self.push_size)
            .entry(method)
            .or_insert_with(|| Histogram::new(SIZE_BUCKETS))
            .observe(bytes as f64);
    }

    pub fn observe_commit(&self, seconds: f64, writes: usize, ok: bool) {
        lock(&self.commit_duration).observe(seconds);
        lock(&self.commit_batch).observe(writes as f64);
        if !ok {
            self.commit_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn set_store_size(&self, groups: usize, series: usize) {
        self.groups.store(groups as u64, Ordering::Relaxed);
        self.series.store(series as u64, Ordering::Relaxed);
    }

    pub fn start_time(&self) -> f64 {
        self.start_time
    }

    /// Names and types of every family batchgate exports itself: [`Telemetry::families`] and
    /// the per-job families of [`crate::jobs::metrics`].
    pub fn own_types() -> HashMap<String, MetricType> {
        Telemetry::new()
            .families()
            .into_iter()
            .chain(crate::jobs::metrics::families(&[]))
            .chain(crate::alerts::metric_types())
            .map(|f| (f.name.clone().unwrap_or_default(), f.metric_type()))
            .collect()
    }

    /// The current values, one family per metric (families without samples included).
    pub fn families(&self) -> Vec<MetricFamily> {
        let by_method = |m: &Mutex<BTreeMap<String, Histogram>>| -> Vec<Metric> {
            lock(m)
                .iter()
                .map(|(method, h)| h.to_metric(vec![LabelPair::new("method", method)]))
                .collect()
        };
        let requests = lock(&self.requests)
            .iter()
            .map(|((handler, method, code), n)| {
                counter(
                    *n as f64,
                    vec![
                        LabelPair::new("code", code.to_string()),
                        LabelPair::new("handler", *handler),
                        LabelPair::new("method", method),
                    ],
                )
            })
            .collect();
        let mut families = vec![
            family(
                "batchgate_build_info",
                "A metric with a constant '1' value labeled by the version of batchgate.",
                MetricType::Gauge,
                vec![Metric {
                    label: vec![LabelPair::new("version", env!("CARGO_PKG_VERSION"))],
                    ..gauge(1.0)
                }],
            ),
            family(
                "batchgate_http_requests_total",
                "HTTP requests answered, by handler, method and status code.",
                MetricType::Counter,
                requests,
            ),
            family(
                "batchgate_http_push_duration_seconds",
                "Time from receiving a push to answering it (the commit included).",
                MetricType::Histogram,
                by_method(&self.push_duration),
            ),
            family(
                "batchgate_http_push_size_bytes",
                "Size of push request bodies as received (before decompression).",
                MetricType::Histogram,
                by_method(&self.push_size),
            ),
            family(
                "batchgate_groups",
                "Groups stored.",
                MetricType::Gauge,
                vec![gauge(self.groups.load(Ordering::Relaxed) as f64)],
            ),
            family(
                "batchgate_series",
                "Series stored, push_time_seconds and push_failure_time_seconds included.",
                MetricType::Gauge,
                vec![gauge(self.series.load(Ordering::Relaxed) as f64)],
            ),
            family(
                "batchgate_storage_commit_duration_seconds",
                "Time to commit one batch of writes durably (one fsync).",
                MetricType::Histogram,
                vec![lock(&self.commit_duration).to_metric(vec![])],
            ),
            family(
                "batchgate_storage_commit_writes",
                "Writes (pushes, deletes) committed together in one batch.",
                MetricType::Histogram,
                vec![lock(&self.commit_batch).to_metric(vec![])],
            ),
            family(
                "batchgate_storage_commit_failures_total",
                "Batches whose commit failed (their writes were answered with 500 and not applied).",
                MetricType::Counter,
                vec![counter(self.commit_failures.load(Ordering::Relaxed) as f64, vec![])],
            ),
        ];
        families.extend(process_families(self.start_time));
        families
    }
}

/// The standard `process_*` metrics, read from `/proc` (Linux); absent elsewhere.
fn process_families(start_time: f64) -> Vec<MetricFamily> {
    let mut out = vec![family(
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        MetricType::Gauge,
        vec![gauge(start_time.floor())],
    )];
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the parenthesised command name; utime and stime are 14th and 15th.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, r)| r.split_whitespace().collect())
            .unwrap_or_default();
        let field = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
        let ticks = 100.0; // USER_HZ is 100 on every Linux architecture batchgate runs on.
        out.push(family(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            MetricType::Counter,
            vec![counter((field(14) + field(15)) / ticks, vec![])],
        ));
        out.push(family(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            MetricType::Gauge,
            vec![gauge(field(23))],
        ));
        out.push(family(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            MetricType::Gauge,
            vec![gauge(field(24) * 4096.0)],
        ));
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        out.push(family(
            "process_open_fds",
            "Number of open file descriptors.",
            MetricType::Gauge,
            vec![gauge(dir.count() as f64)],
        ));
    }
    out
}
