//! The job's metrics, the run guard and their encoding.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use batchgate_format::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

use crate::error::{Error, Result};
use crate::grouping;
use crate::retry::RetryPolicy;

/// The metric prefix of the runbook's SDK.
pub const DEFAULT_PREFIX: &str = "gl_batch_job";

/// The default time limit of one push request.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The status of the job's current or last run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    Running,
    Completed,
    Failed,
}

impl Status {
    /// Every status, in the order the status series are written.
    pub const ALL: [Status; 3] = [Status::Running, Status::Completed, Status::Failed];

    /// The value of the `status` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Failed => "failed",
        }
    }
}

/// How the client authenticates to the gateway.
#[derive(Clone)]
pub(crate) enum Auth {
    Basic { username: String, password: Option<String> },
    Bearer(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .finish_non_exhaustive(),
            Auth::Bearer(_) => f.write_str("Bearer(..)"),
        }
    }
}

/// What has been recorded so far.
#[derive(Clone, Debug, Default)]
struct State {
    errors: u64,
    status: Option<Status>,
    last_start: Option<f64>,
    last_success: Option<f64>,
    last_failure: Option<f64>,
    duration: Option<f64>,
    exit_code: Option<i32>,
}

/// The metrics of one batch job and where to push them.
///
/// Built with [`new`](Self::new) and the chained options below; every method takes `&self`, so
/// one value can be shared (it is `Send + Sync`) between the job's code, its
/// [`RunGuard`] and the pushes. Configuration errors (an empty job name, a bad URL or label
/// name) are reported by the pushes, as [`Error`]s, or up front by [`validate`](Self::validate).
#[derive(Debug)]
pub struct BatchJobMetrics {
    pub(crate) job_name: String,
    pub(crate) gateway_url: String,
    pub(crate) grouping: BTreeMap<String, String>,
    pub(crate) prefix: String,
    pub(crate) timeout: Duration,
    pub(crate) auth: Option<Auth>,
    pub(crate) retry: RetryPolicy,
    state: Mutex<State>,
}

impl BatchJobMetrics {
    /// The metrics of job `job_name`, pushed to `gateway_url` (`http://host:port`, optionally
    /// with a route prefix path; `http://` is assumed when no scheme is given). The client speaks
    /// plain HTTP only: `https://` URLs are refused with [`Error::InvalidGatewayUrl`].
    ///
    /// The grouping key is `{job="<job_name>"}` plus the [`grouping_label`](Self::grouping_label)s.
    pub fn new(job_name: impl Into<String>, gateway_url: impl Into<String>) -> Self {
        BatchJobMetrics {
            job_name: job_name.into(),
            gateway_url: gateway_url.into(),
            grouping: BTreeMap::new(),
            prefix: DEFAULT_PREFIX.to_string(),
            timeout: DEFAULT_TIMEOUT,
            auth: None,
            retry: RetryPolicy::default(),
            state: Mutex::new(State::default()),
        }
    }

    /// Adds a label to the grouping key (for example `instance`). Any value is allowed; names
    /// must be valid Prometheus label names other than `job`, `job_name` and `status`.
    pub fn grouping_label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.grouping.insert(name.into(), value.into());
        self
    }

    /// Sets the metric name prefix (default [`DEFAULT_PREFIX`], `gl_batch_job`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the time limit of each push request (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Authenticates with HTTP basic auth.
    pub fn basic_auth(mut self, username: impl Into<String>, password: Option<String>) -> Self {
        self.auth = Some(Auth::Basic {
            username: username.into(),
            password,
        });
        self
    }

    /// Authenticates with `Authorization: Bearer <token>`.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.auth = Some(Auth::Bearer(token.into()));
        self
    }

    /// Sets how pushes are retried (default [`RetryPolicy::default`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The job name.
    pub fn job_name(&self) -> &str {
        &self.job_name
    }

    /// The retry policy of [`push`](Self::push) and [`push_add`](Self::push_add).
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Checks the configuration without pushing: the job name, gateway URL, grouping label
    /// names and prefix.
    pub fn validate(&self) -> Result<()> {
        self.push_url().map(drop)?;
        validate_prefix(&self.prefix)
    }

    /// The URL pushes go to, grouping key escaped.
    pub fn push_url(&self) -> Result<String> {
        grouping::push_url(&self.gateway_url, &self.job_name, &self.grouping)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is plain data, consistent after every statement: a panic elsewhere while
        // the lock was held cannot leave it half-updated.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a run: status `running`, `last_start_timestamp` now. The returned guard records
    /// the end of the run; dropping it without [`RunGuard::success`] records a failure.
    pub fn start(&self) -> RunGuard<'_> {
        let mut state = self.state();
        state.status = Some(Status::Running);
        state.last_start = Some(unix_now());
        RunGuard {
            metrics: self,
            started: Instant::now(),
            finished: false,
        }
    }

    /// Runs `job` as one run: a success if it returns `Ok`, a failure with exit code 1 if it
    /// returns `Err` (or 101 if it panics). The runbook SDK's `with metrics.track_duration():`.
    ///
    /// ```
    /// # use batchgate_client::{BatchJobMetrics, Status};
    /// let metrics = BatchJobMetrics::new("ef-update", "http://localhost:9091");
    /// let result: Result<u32, String> = metrics.track(|| Ok(42));
    /// assert_eq!(result, Ok(42));
    /// assert_eq!(metrics.status(), Some(Status::Completed));
    /// ```
    pub fn track<T, E>(&self, job: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let run = self.start();
        let result = job();
        run.finish(&result);
        result
    }

    /// [`track`](Self::track) for a future. A future dropped before it completes records a
    /// failure.
    pub async fn track_async<T, E>(&self, job: impl Future<Output = Result<T, E>>) -> Result<T, E> {
        let run = self.start();
        let result = job.await;
        run.finish(&result);
        result
    }

    /// Counts one error (`errors_total` + 1).
    pub fn record_error(&self) {
        self.record_errors(1);
    }

    /// Counts `n` errors.
    pub fn record_errors(&self, n: u64) {
        let mut state = self.state();
        state.errors = state.errors.saturating_add(n);
    }

    /// The errors counted so far.
    pub fn errors(&self) -> u64 {
        self.state().errors
    }

    /// The status of the current or last run, if one was started.
    pub fn status(&self) -> Option<Status> {
        self.state().status
    }

    /// Records the end of a successful run that took `duration`.
    pub fn record_success(&self, duration: Duration) {
        let mut state = self.state();
        state.status = Some(Status::Completed);
        state.last_success = Some(unix_now());
        state.duration = Some(duration.as_secs_f64());
        state.exit_code = Some(0);
    }

    /// Records the end of a failed run that took `duration` and exited with `exit_code`; counts
    /// one error.
    pub fn record_failure(&self, duration: Duration, exit_code: i32) {
        let mut state = self.state();
        state.status = Some(Status::Failed);
        state.last_failure = Some(unix_now());
        state.duration = Some(duration.as_secs_f64());
        state.exit_code = Some(exit_code);
        state.errors = state.errors.saturating_add(1);
    }

    /// The metric families a push sends now, in name order.
    pub fn families(&self) -> Vec<MetricFamily> {
        let state = self.state().clone();
        let p = &self.prefix;
        let job = LabelPair::new("job_name", self.job_name.as_str());
        let gauge = |suffix: &str, help: &str, value: Option<f64>| {
            value.map(|v| {
                family(
                    format!("{p}_{suffix}"),
                    help,
                    MetricType::Gauge,
                    vec![gauge_metric(&job, v)],
                )
            })
        };
        let mut out: Vec<MetricFamily> = [
            gauge(
                "duration_seconds",
                "Duration of the last run of the batch job in seconds.",
                state.duration,
            ),
            Some(family(
                format!("{p}_errors_total"),
                "Errors of the batch job: recorded errors plus one per failed run.",
                MetricType::Counter,
                vec![Metric {
                    label: vec![job.clone()],
                    counter: Some(Counter {
                        // Exact as an f64 up to 2^53 errors.
                        value: Some(state.errors as f64),
                        ..Counter::default()
                    }),
                    ..Metric::default()
                }],
            )),
            gauge(
                "exit_code",
                "Exit code of the last run of the batch job (0 on success).",
                state.exit_code.map(f64::from),
            ),
            gauge(
                "last_failure_timestamp",
                "Unix time the last failed run of the batch job ended.",
                state.last_failure,
            ),
            gauge(
                "last_start_timestamp",
                "Unix time the last run of the batch job started.",
                state.last_start,
            ),
            gauge(
                "last_success_timestamp",
                "Unix time the last successful run of the batch job ended.",
                state.last_success,
            ),
            state.status.map(|current| {
                let metrics = Status::ALL
                    .iter()
                    .map(|s| Metric {
                        label: vec![job.clone(), LabelPair::new("status", s.as_str())],
                        gauge: Some(Gauge {
                            value: Some(if *s == current { 1.0 } else { 0.0 }),
                        }),
                        ..Metric::default()
                    })
                    .collect();
                family(
                    format!("{p}_status"),
                    "Status of the batch job: 1 for the current status (running, completed or failed), 0 for the others.",
                    MetricType::Gauge,
                    metrics,
                )
            }),
        ]
        .into_iter()
        .flatten()
        .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The push body: the [`families`](Self::families) in the text format 0.0.4.
    pub fn encode(&self) -> Result<Vec<u8>> {
        validate_prefix(&self.prefix)?;
        let mut out = Vec::new();
        for f in self.families() {
            batchgate_format::text::write_family(&mut out, &f);
        }
        Ok(out)
    }
}

/// Measures one run and records its end. Made by [`BatchJobMetrics::start`].
///
/// Call [`success`](Self::success) or [`failure`](Self::failure) at the end of the run; a guard
/// dropped without either records a failure with exit code 1 (101 while panicking, Rust's exit
/// code for a panic).
#[derive(Debug)]
#[must_use = "dropping the guard right away records a failed run"]
pub struct RunGuard<'a> {
    metrics: &'a BatchJobMetrics,
    started: Instant,
    finished: bool,
}

impl RunGuard<'_> {
    /// Time since the run started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Records a successful end (status `completed`, `last_success_timestamp`, duration, exit
    /// code 0) and returns the duration.
    pub fn success(mut self) -> Duration {
        self.finished = true;
        let d = self.elapsed();
        self.metrics.record_success(d);
        d
    }

    /// Records a failed end (status `failed`, `last_failure_timestamp`, duration, `exit_code`,
    /// one error) and returns the duration.
    pub fn failure(mut self, exit_code: i32) -> Duration {
        self.finished = true;
        let d = self.elapsed();
        self.metrics.record_failure(d, exit_code);
        d
    }
}

impl RunGuard<'_> {
    /// Records a success for `Ok`, a failure with exit code 1 for `Err`.
    pub fn finish<T, E>(self, result: &Result<T, E>) -> Duration {
        match result {
            Ok(_) => self.success(),
            Err(_) => self.failure(1),
        }
    }
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        if !self.finished {
            let code = if std::thread::panicking() { 101 } else { 1 };
            self.metrics.record_failure(self.elapsed(), code);
        }
    }
}

fn validate_prefix(prefix: &str) -> Result<()> {
    let mut bytes = prefix.bytes();
    let ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidPrefix(prefix.to_string()))
    }
}

fn family(name: String, help: &str, ty: MetricType, metric: Vec<Metric>) -> MetricFamily {
    MetricFamily {
        name: Some(name),
        help: Some(help.to_string()),
        r#type: Some(ty as i32),
        metric,
        unit: None,
    }
}

fn gauge_metric(job: &LabelPair, value: f64) -> Metric {
    Metric {
        label: vec![job.clone()],
        gauge: Some(Gauge { value: Some(value) }),
        ..Metric::default()
    }
}

/// Seconds since the unix epoch (0 if the clock is before it).
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: &BatchJobMetrics) -> String {
        String::from_utf8(m.encode().expect("encode")).expect("utf-8")
    }

    #[test]
    fn before_a_run_only_the_error_counter_is_pushed() {
        let m = BatchJobMetrics::new("j", "gw");
        assert_eq!(
            text(&m),
            "# HELP gl_batch_job_errors_total Errors of the batch job: recorded errors plus one per failed run.\n\
             # TYPE gl_batch_job_errors_total counter\n\
             gl_batch_job_errors_total{job_name=\"j\"} 0\n"
        );
    }

    #[test]
    fn a_successful_run() {
        let m = BatchJobMetrics::new("ef-update", "gw").prefix("x");
        let run = m.start();
        assert_eq!(m.status(), Some(Status::Running));
        m.record_error();
        run.success();
        let t = text(&m);
        for line in [
            "x_errors_total{job_name=\"ef-update\"} 1\n",
            "x_exit_code{job_name=\"ef-update\"} 0\n",
            "x_status{job_name=\"ef-update\",status=\"running\"} 0\n",
            "x_status{job_name=\"ef-update\",status=\"completed\"} 1\n",
            "x_status{job_name=\"ef-update\",status=\"failed\"} 0\n",
            "# TYPE x_last_success_timestamp gauge\n",
            "# TYPE x_last_start_timestamp gauge\n",
            "# TYPE x_duration_seconds gauge\n",
        ] {
            assert!(t.contains(line), "{line:?} missing from\n{t}");
        }
        assert!(!t.contains("x_last_failure_timestamp"), "{t}");
    }

    #[test]
    fn a_dropped_guard_is_a_failure() {
        let m = BatchJobMetrics::new("j", "gw");
        drop(m.start());
        assert_eq!(m.status(), Some(Status::Failed));
        assert_eq!(m.errors(), 1);
        let t = text(&m);
        assert!(t.contains("gl_batch_job_exit_code{job_name=\"j\"} 1\n"), "{t}");
        assert!(
            t.contains("gl_batch_job_last_failure_timestamp{job_name=\"j\"} "),
            "{t}"
        );
    }

    #[test]
    fn a_panic_records_exit_code_101() {
        let m = BatchJobMetrics::new("j", "gw");
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _run = m.start();
            panic!("job failed");
        }));
        assert!(r.is_err());
        assert!(text(&m).contains("gl_batch_job_exit_code{job_name=\"j\"} 101\n"));
    }

    #[test]
    fn track_records_the_result() {
        let m = BatchJobMetrics::new("j", "gw");
        assert_eq!(m.track(|| Err::<(), _>("boom")), Err("boom"));
        assert_eq!(m.status(), Some(Status::Failed));
        assert_eq!(m.track(|| Ok::<_, ()>(7)), Ok(7));
        assert_eq!(m.status(), Some(Status::Completed));
        assert_eq!(m.errors(), 1);
    }

    #[test]
    fn track_async_records_the_result() {
        let m = BatchJobMetrics::new("j", "gw");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        assert_eq!(rt.block_on(m.track_async(async { Err::<(), _>(3) })), Err(3));
        assert_eq!(m.status(), Some(Status::Failed));
        assert_eq!(rt.block_on(m.track_async(async { Ok::<_, ()>(()) })), Ok(()));
        assert_eq!(m.status(), Some(Status::Completed));
        // A future dropped half-way (here by a timeout) is a failure.
        let pending = m.track_async(std::future::pending::<Result<(), ()>>());
        let timed_out = rt.block_on(async { tokio::time::timeout(Duration::from_millis(10), pending).await });
        assert!(timed_out.is_err());
        assert_eq!(m.status(), Some(Status::Failed));
        assert_eq!(m.errors(), 2);
    }

    #[test]
    fn failure_keeps_the_exit_code() {
        let m = BatchJobMetrics::new("j", "gw");
        m.start().failure(42);
        assert!(text(&m).contains("gl_batch_job_exit_code{job_name=\"j\"} 42\n"));
    }

    #[test]
    fn bad_prefix_is_refused() {
        for p in ["", "1x", "a-b", "é"] {
            assert!(matches!(
                BatchJobMetrics::new("j", "gw").prefix(p).encode(),
                Err(Error::InvalidPrefix(_))
            ));
        }
        BatchJobMetrics::new("j", "gw")
            .prefix("a:b_1")
            .validate()
            .expect("valid");
    }

    #[test]
    fn label_values_are_escaped_in_the_body() {
        let m = BatchJobMetrics::new("a\"b\\c\nd", "gw");
        assert!(text(&m).contains(r#"{job_name="a\"b\\c\nd"}"#));
    }

    #[test]
    fn debug_hides_secrets() {
        let m = BatchJobMetrics::new("j", "gw").bearer_token("s3cret");
        assert!(!format!("{m:?}").contains("s3cret"));
        let m = BatchJobMetrics::new("j", "gw").basic_auth("u", Some("s3cret".into()));
        assert!(!format!("{m:?}").contains("s3cret"));
    }
}
