//! Runs, derived from successive pushes of the SDK metrics (SPEC §3.2, §3.3).
//!
//! A job never says "a run happened"; it overwrites a handful of gauges. Comparing what a job
//! pushed last time with what it pushes now tells which run events happened in between:
//!
//! * `last_success_timestamp` moved forward: a run **succeeded**;
//! * `last_failure_timestamp` moved forward, `status` became `failed`, or `errors_total` rose:
//!   a run **failed** (when both timestamps moved, the later one tells the outcome);
//! * `status` became `running` or `last_start_timestamp` moved forward (and nothing finished):
//!   a run **started**.
//!
//! A push that both starts and finishes a run (the usual "push once at the end" client) is one
//! finished run whose start is `last_start_timestamp`.

use std::collections::BTreeMap;

use batchgate_format::{Metric, MetricFamily};
use jiff::{SignedDuration, Timestamp};

/// The label that names the job on every SDK series.
pub const JOB_NAME_LABEL: &str = "job_name";

/// Value of the `status` label of `<prefix>_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    Running,
    Completed,
    Failed,
}

impl RunStatus {
    fn parse(s: &str) -> Option<RunStatus> {
        match s {
            "running" => Some(RunStatus::Running),
            "completed" => Some(RunStatus::Completed),
            "failed" => Some(RunStatus::Failed),
            _ => None,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Success,
    Failure,
}

/// The SDK metrics of one job as last pushed. Timestamps are unix seconds, as pushed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JobMetrics {
    pub last_success: Option<f64>,
    pub last_failure: Option<f64>,
    pub last_start: Option<f64>,
    pub duration: Option<f64>,
    pub errors_total: Option<f64>,
    pub exit_code: Option<f64>,
    pub status: Option<RunStatus>,
}

/// A run that ended, as far as the pushes tell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FinishedRun {
    pub outcome: Outcome,
    pub start: Option<Timestamp>,
    pub end: Timestamp,
    pub duration: Option<SignedDuration>,
    pub exit_code: Option<i64>,
}

/// What one push says happened.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RunEvent {
    /// Nothing new: a re-push of the same values, or metrics unrelated to runs.
    None,
    /// A run began at this instant and has not ended yet.
    Started {
        at: Timestamp,
    },
    Finished(FinishedRun),
}

/// Converts a pushed unix-seconds value; NaN, infinities and out-of-range values are no time.
pub fn timestamp_from_secs(secs: f64) -> Option<Timestamp> {
    if !secs.is_finite() {
        return None;
    }
    SignedDuration::try_from_secs_f64(secs)
        .ok()
        .and_then(|d| Timestamp::from_duration(d).ok())
}

fn value(metric: &Metric) -> Option<f64> {
    let v = metric.gauge.as_ref().and_then(|g| g.value);
    v.or_else(|| metric.counter.as_ref().and_then(|c| c.value))
        .or_else(|| metric.untyped.as_ref().and_then(|u| u.value))
}

fn label<'a>(metric: &'a Metric, name: &str) -> Option<&'a str> {
    metric
        .label
        .iter()
        .find(|l| l.name.as_deref() == Some(name))
        .and_then(|l| l.value.as_deref())
}

/// Extracts every job's SDK metrics from pushed families, keyed by the `job_name` label. Series
/// without that label belong to `default_job` (the group's `job` grouping label), if given.
pub fn extract(families: &[MetricFamily], prefix: &str, default_job: Option<&str>) -> BTreeMap<String, JobMetrics> {
    let mut jobs: BTreeMap<String, JobMetrics> = BTreeMap::new();
    // Status gauges are collected first: a client may leave several at 1 (see `resolve_status`).
    let mut statuses: BTreeMap<String, Vec<RunStatus>> = BTreeMap::new();
    for family in families {
        let Some(suffix) = family
            .name
            .as_deref()
            .and_then(|n| n.strip_prefix(prefix)?.strip_prefix('_'))
        else {
            continue;
        };
        for metric in &family.metric {
            let Some(job) = label(metric, JOB_NAME_LABEL).or(default_job) else {
                continue;
            };
            let Some(v) = value(metric) else { continue };
            let m = jobs.entry(job.to_owned()).or_default();
            let slot = match suffix {
                "last_success_timestamp" => &mut m.last_success,
                "last_failure_timestamp" => &mut m.last_failure,
                "last_start_timestamp" => &mut m.last_start,
                "duration_seconds" => &mut m.duration,
                "errors_total" | "errors" => &mut m.errors_total,
                "exit_code" => &mut m.exit_code,
                "status" => {
                    if let Some(s) = label(metric, "status").and_then(RunStatus::parse).filter(|_| v != 0.0) {
                        statuses.entry(job.to_owned()).or_default().push(s);
                    }
                    continue;
                }
                _ => continue,
            };
            // Several series of one job (e.g. one per instance) keep the largest value: the latest
            // timestamp, the highest counter.
            *slot = Some(slot.map_or(v, |old: f64| old.max(v)));
        }
    }
    for (job, set) in statuses {
        let m = jobs.entry(job).or_default();
        m.status = resolve_status(m, &set);
    }
    jobs
}

/// Picks the current status when a client left several `status` series at 1 (the runbook SDK sets
/// one label to 1 without zeroing the others): `running` wins only if the last start is after the
/// last finish; between `completed` and `failed` the later timestamp wins, else `failed`.
fn resolve_status(m: &JobMetrics, set: &[RunStatus]) -> Option<RunStatus> {
    if let [only] = set {
        return Some(*only);
    }
    let finished = m
        .last_success
        .into_iter()
        .chain(m.last_failure)
        .fold(f64::NEG_INFINITY, f64::max);
    if set.contains(&RunStatus::Running) && m.last_start.is_some_and(|s| s > finished) {
        return Some(RunStatus::Running);
    }
    let (completed, failed) = (set.contains(&RunStatus::Completed), set.contains(&RunStatus::Failed));
    match (completed, failed) {
        (true, true) if m.last_success > m.last_failure => Some(RunStatus::Completed),
        (_, true) => Some(RunStatus::Failed),
        (true, false) => Some(RunStatus::Completed),
        (false, false) => set.first().copied(),
    }
}

fn moved(prev: Option<f64>, new: Option<f64>) -> bool {
    match (prev, new) {
        (_, None) => false,
        (None, Some(n)) => n.is_finite(),
        (Some(p), Some(n)) => n > p,
    }
}

/// Whether the error counter rose, with Prometheus counter-reset semantics: a value below the
/// previous one is a restarted counter (each run a new process), so any positive value is new.
fn errors_rose(prev: Option<f64>, new: Option<f64>) -> bool {
    match (prev, new) {
        (_, None) => false,
        (None, Some(n)) => n > 0.0,
        (Some(p), Some(n)) => n > p || (n < p && n > 0.0),
    }
}

/// Decides what happened between two pushes of one job's metrics; `push_time` stands in for
/// instants the job did not push.
pub fn derive(prev: &JobMetrics, new: &JobMetrics, push_time: Timestamp) -> RunEvent {
    let success = moved(prev.last_success, new.last_success);
    let failure = moved(prev.last_failure, new.last_failure);
    let became = |s| new.status == Some(s) && prev.status != Some(s);
    let outcome = match (success, failure) {
        (true, true) if new.last_failure > new.last_success => Some(Outcome::Failure),
        (true, _) => Some(Outcome::Success),
        (false, true) => Some(Outcome::Failure),
        (false, false) if became(RunStatus::Failed) => Some(Outcome::Failure),
        (false, false)
            if errors_rose(prev.errors_total, new.errors_total) && new.status != Some(RunStatus::Running) =>
        {
            Some(Outcome::Failure)
        }
        (false, false) if became(RunStatus::Completed) => Some(Outcome::Success),
        (false, false) => None,
    };
    let start = new.last_start.and_then(timestamp_from_secs);
    let Some(outcome) = outcome else {
        if moved(prev.last_start, new.last_start) || became(RunStatus::Running) {
            return RunEvent::Started {
                at: start
                    .filter(|_| moved(prev.last_start, new.last_start))
                    .unwrap_or(push_time),
            };
        }
        return RunEvent::None;
    };
    let end = match outcome {
        Outcome::Success if success => new.last_success,
        Outcome::Failure if failure => new.last_failure,
        _ => None,
    };
    let end = end.and_then(timestamp_from_secs).unwrap_or(push_time);
    let pushed_duration = new
        .duration
        .filter(|d| d.is_finite() && *d >= 0.0)
        .and_then(|d| SignedDuration::try_from_secs_f64(d).ok());
    // The start belongs to this run only if it is not after the end.
    let start = start
        .filter(|s| *s <= end)
        .or_else(|| pushed_duration.and_then(|d| end.checked_sub(d).ok()));
    FinishedRun {
        outcome,
        start,
        end,
        duration: pushed_duration.or_else(|| start.map(|s| end.duration_since(s))),
        exit_code: new
            .exit_code
            .filter(|c| c.is_finite() && c.fract() == 0.0)
            .map(|c| c as i64),
    }
    .into()
}

impl From<FinishedRun> for RunEvent {
    fn from(run: FinishedRun) -> Self {
        RunEvent::Finished(run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use batchgate_format::{LabelPair, MetricType, text};

    const T0: f64 = 1_750_000_000.0;

    fn ts(secs: f64) -> Timestamp {
        timestamp_from_secs(secs).unwrap()
    }

    fn push_time() -> Timestamp {
        ts(T0 + 1_000.0)
    }

    #[test]
    fn extracts_the_runbook_sdk_metrics_by_job_name() {
        let body = format!(
            "# TYPE gl_batch_job_last_success_timestamp gauge\n\
             gl_batch_job_last_success_timestamp{{job_name=\"ef-update\"}} {T0}\n\
             gl_batch_job_last_success_timestamp{{job_name=\"data-sync\"}} 1.5e9\n\
             # TYPE gl_batch_job_duration_seconds gauge\n\
             gl_batch_job_duration_seconds{{job_name=\"ef-update\"}} 42.5\n\
             # TYPE gl_batch_job_errors_total counter\n\
             gl_batch_job_errors_total{{job_name=\"ef-update\"}} 3\n\
             # TYPE gl_batch_job_status gauge\n\
             gl_batch_job_status{{job_name=\"ef-update\",status=\"running\"}} 0\n\
             gl_batch_job_status{{job_name=\"ef-update\",status=\"completed\"}} 1\n\
             gl_batch_job_last_start_timestamp{{job_name=\"ef-update\"}} {}\n\
             gl_batch_job_exit_code{{job_name=\"ef-update\"}} 0\n\
             gl_batch_job_last_failure_timestamp{{job_name=\"ef-update\"}} 1.6e9\n\
             other_metric{{job_name=\"ef-update\"}} 7\n\
             gl_batch_job_last_success_timestampx{{job_name=\"ef-update\"}} 7\n",
            T0 - 42.5
        );
        let families = text::parse(body.as_bytes()).unwrap();
        let jobs = extract(&families, "gl_batch_job", None);
        assert_eq!(jobs.len(), 2);
        assert_eq!(
            jobs["ef-update"],
            JobMetrics {
                last_success: Some(T0),
                last_failure: Some(1.6e9),
                last_start: Some(T0 - 42.5),
                duration: Some(42.5),
                errors_total: Some(3.0),
                exit_code: Some(0.0),
                status: Some(RunStatus::Completed),
            }
        );
        assert_eq!(
            jobs["data-sync"],
            JobMetrics {
                last_success: Some(1.5e9),
                ..JobMetrics::default()
            }
        );
    }

    #[test]
    fn extract_honours_prefix_and_default_job() {
        let body = b"myjobs_last_success_timestamp 100\ngl_batch_job_last_success_timestamp 200\n";
        let families = text::parse(body).unwrap();
        let jobs = extract(&families, "myjobs", Some("nightly"));
        assert_eq!(jobs["nightly"].last_success, Some(100.0));
        assert!(
            extract(&families, "myjobs", None).is_empty(),
            "no job_name and no default job"
        );
    }

    #[test]
    fn extract_reads_protobuf_families_and_keeps_the_latest_of_several_series() {
        let series = |instance: &str, v: f64| Metric {
            label: vec![LabelPair::new("job_name", "etl"), LabelPair::new("instance", instance)],
            gauge: Some(batchgate_format::proto::Gauge { value: Some(v) }),
            ..Metric::default()
        };
        let family = MetricFamily {
            name: Some("gl_batch_job_last_success_timestamp".into()),
            r#type: Some(MetricType::Gauge as i32),
            metric: vec![series("a", 10.0), series("b", 30.0), series("c", 20.0)],
            ..MetricFamily::default()
        };
        assert_eq!(extract(&[family], "gl_batch_job", None)["etl"].last_success, Some(30.0));
    }

    #[test]
    fn status_left_at_one_on_several_series_is_resolved_by_timestamps() {
        use RunStatus::*;
        let m = |start: Option<f64>, success: Option<f64>, failure: Option<f64>| JobMetrics {
            last_start: start,
            last_success: success,
            last_failure: failure,
            ..JobMetrics::default()
        };
        let cases = [
            (m(Some(20.0), Some(10.0), None), vec![Running, Completed], Some(Running)),
            (
                m(Some(5.0), Some(10.0), None),
                vec![Running, Completed],
                Some(Completed),
            ),
            (m(None, Some(10.0), None), vec![Running, Completed], Some(Completed)),
            (m(None, Some(10.0), Some(5.0)), vec![Completed, Failed], Some(Completed)),
            (m(None, Some(5.0), Some(10.0)), vec![Completed, Failed], Some(Failed)),
            (m(None, None, None), vec![Completed, Failed], Some(Failed)),
            (m(None, None, None), vec![Running], Some(Running)),
        ];
        for (metrics, set, want) in cases {
            assert_eq!(resolve_status(&metrics, &set), want, "{metrics:?} {set:?}");
        }
    }

    fn sdk(success: Option<f64>, failure: Option<f64>, start: Option<f64>, status: Option<RunStatus>) -> JobMetrics {
        JobMetrics {
            last_success: success,
            last_failure: failure,
            last_start: start,
            status,
            ..JobMetrics::default()
        }
    }

    #[test]
    fn success_moves_last_success_forward() {
        let prev = sdk(Some(T0 - 3600.0), None, Some(T0 - 3700.0), Some(RunStatus::Completed));
        let new = JobMetrics {
            duration: Some(95.0),
            exit_code: Some(0.0),
            ..sdk(Some(T0), None, Some(T0 - 100.0), Some(RunStatus::Completed))
        };
        assert_eq!(
            derive(&prev, &new, push_time()),
            RunEvent::Finished(FinishedRun {
                outcome: Outcome::Success,
                start: Some(ts(T0 - 100.0)),
                end: ts(T0),
                duration: Some(SignedDuration::from_secs(95)),
                exit_code: Some(0),
            })
        );
        // The first push ever of a success is a run too; the duration comes from the timestamps.
        let RunEvent::Finished(run) = derive(
            &JobMetrics::default(),
            &sdk(Some(T0), None, Some(T0 - 60.0), None),
            push_time(),
        ) else {
            panic!("not finished")
        };
        assert_eq!(
            (run.outcome, run.duration),
            (Outcome::Success, Some(SignedDuration::from_secs(60)))
        );
    }

    #[test]
    fn failure_signals() {
        let base = JobMetrics {
            errors_total: Some(2.0),
            ..sdk(Some(T0 - 3600.0), Some(T0 - 7200.0), None, Some(RunStatus::Completed))
        };
        let failed = |new: JobMetrics| match derive(&base, &new, push_time()) {
            RunEvent::Finished(run) => run.outcome == Outcome::Failure,
            _ => false,
        };
        assert!(
            failed(JobMetrics {
                last_failure: Some(T0),
                ..base
            }),
            "last_failure moved"
        );
        assert!(
            failed(JobMetrics {
                status: Some(RunStatus::Failed),
                ..base
            }),
            "status=failed"
        );
        assert!(
            failed(JobMetrics {
                errors_total: Some(3.0),
                ..base
            }),
            "errors rose"
        );
        assert!(
            failed(JobMetrics {
                errors_total: Some(1.0),
                ..base
            }),
            "counter reset to a positive value"
        );
        assert!(
            !failed(JobMetrics {
                errors_total: Some(0.0),
                ..base
            }),
            "counter reset to zero"
        );
        assert!(
            !failed(JobMetrics {
                errors_total: Some(3.0),
                status: Some(RunStatus::Running),
                ..base
            }),
            "errors counted during a run are not yet its outcome"
        );
        assert!(
            !failed(JobMetrics {
                last_success: Some(T0),
                errors_total: Some(3.0),
                ..base
            }),
            "success with errors"
        );
        // Both moved: the later one decides.
        assert!(failed(JobMetrics {
            last_success: Some(T0),
            last_failure: Some(T0 + 1.0),
            ..base
        }));
        assert!(!failed(JobMetrics {
            last_success: Some(T0 + 1.0),
            last_failure: Some(T0),
            ..base
        }));
        let RunEvent::Finished(run) = derive(
            &base,
            &JobMetrics {
                last_failure: Some(T0),
                exit_code: Some(137.0),
                ..base
            },
            push_time(),
        ) else {
            panic!("not finished")
        };
        assert_eq!((run.end, run.exit_code), (ts(T0), Some(137)));
        let RunEvent::Finished(run) = derive(
            &base,
            &JobMetrics {
                status: Some(RunStatus::Failed),
                ..base
            },
            push_time(),
        ) else {
            panic!("not finished")
        };
        assert_eq!(run.end, push_time(), "no failure timestamp: the push time is the end");
    }

    #[test]
    fn starts() {
        let prev = sdk(Some(T0 - 3600.0), None, Some(T0 - 3700.0), Some(RunStatus::Completed));
        assert_eq!(
            derive(
                &prev,
                &JobMetrics {
                    last_start: Some(T0),
                    status: Some(RunStatus::Running),
                    ..prev
                },
                push_time()
            ),
            RunEvent::Started { at: ts(T0) }
        );
        assert_eq!(
            derive(
                &prev,
                &JobMetrics {
                    status: Some(RunStatus::Running),
                    ..prev
                },
                push_time()
            ),
            RunEvent::Started { at: push_time() },
            "status=running without a new start timestamp starts at the push"
        );
        assert_eq!(
            derive(
                &prev,
                &JobMetrics {
                    last_start: Some(T0),
                    ..prev
                },
                push_time()
            ),
            RunEvent::Started { at: ts(T0) }
        );
    }

    #[test]
    fn nothing_happened() {
        let prev = JobMetrics {
            duration: Some(3.0),
            ..sdk(Some(T0), None, Some(T0 - 3.0), Some(RunStatus::Completed))
        };
        assert_eq!(derive(&prev, &prev, push_time()), RunEvent::None, "a re-push");
        assert_eq!(
            derive(
                &prev,
                &JobMetrics {
                    last_success: Some(T0 - 10.0),
                    ..prev
                },
                push_time()
            ),
            RunEvent::None,
            "backwards"
        );
        assert_eq!(
            derive(&prev, &JobMetrics::default(), push_time()),
            RunEvent::None,
            "metrics removed"
        );
        assert_eq!(
            derive(
                &prev,
                &JobMetrics {
                    last_success: Some(f64::NAN),
                    ..prev
                },
                push_time()
            ),
            RunEvent::None
        );
    }

    #[test]
    fn start_after_end_belongs_to_the_next_run() {
        // A run started before the previous one's success was pushed: the start is not this run's.
        let prev = sdk(Some(T0 - 3600.0), None, None, None);
        let new = JobMetrics {
            duration: Some(30.0),
            ..sdk(Some(T0), None, Some(T0 + 5.0), None)
        };
        let RunEvent::Finished(run) = derive(&prev, &new, push_time()) else {
            panic!("not finished")
        };
        assert_eq!(run.start, Some(ts(T0 - 30.0)));
        assert_eq!(run.duration, Some(SignedDuration::from_secs(30)));
    }

    #[test]
    fn timestamps_from_pushed_values() {
        assert_eq!(
            timestamp_from_secs(1.5),
            Some(Timestamp::from_millisecond(1500).unwrap())
        );
        for bad in [f64::NAN, f64::INFINITY, -f64::INFINITY, 1e300] {
            assert_eq!(timestamp_from_secs(bad), None);
        }
    }
}
