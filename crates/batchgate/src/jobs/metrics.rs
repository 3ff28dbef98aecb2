//! The per-job series batchgate exports on `/metrics` (SPEC §3.4), so PromQL can alert on what it
//! cannot compute alone (a cron schedule): `batchgate_job_state`, `batchgate_job_staleness_seconds`,
//! `batchgate_job_max_staleness_seconds` and `batchgate_job_next_expected_timestamp`.

use batchgate_format::proto::Gauge;
use batchgate_format::{LabelPair, Metric, MetricFamily, MetricType};

use super::runs::JOB_NAME_LABEL;
use super::state::JobState;
use super::view::JobView;

pub const STATE: &str = "batchgate_job_state";
pub const STALENESS: &str = "batchgate_job_staleness_seconds";
pub const MAX_STALENESS: &str = "batchgate_job_max_staleness_seconds";
pub const NEXT_EXPECTED: &str = "batchgate_job_next_expected_timestamp";

fn gauge(labels: Vec<LabelPair>, value: f64) -> Metric {
    Metric {
        label: labels,
        gauge: Some(Gauge { value: Some(value) }),
        ..Metric::default()
    }
}

fn family(name: &str, help: &str, metric: Vec<Metric>) -> MetricFamily {
    MetricFamily {
        name: Some(name.into()),
        help: Some(help.into()),
        r#type: Some(MetricType::Gauge as i32),
        metric,
        unit: None,
    }
}

/// The four job families (every one of them, possibly without samples: their names and types
/// also feed the consistency check of pushes).
pub fn families(views: &[JobView]) -> Vec<MetricFamily> {
    let job = |v: &JobView| LabelPair::new(JOB_NAME_LABEL, &v.spec.name);
    let states = views
        .iter()
        .flat_map(|v| {
            JobState::ALL.iter().map(move |s| {
                gauge(
                    vec![job(v), LabelPair::new("state", s.as_str())],
                    if *s == v.state { 1.0 } else { 0.0 },
                )
            })
        })
        .collect();
    let staleness = views
        .iter()
        .map(|v| gauge(vec![job(v)], v.assessment.staleness.as_secs_f64()))
        .collect();
    let max_staleness = views
        .iter()
        .map(|v| gauge(vec![job(v)], v.spec.max_staleness.as_secs_f64()))
        .collect();
    let next = views
        .iter()
        .filter_map(|v| {
            let next = v.assessment.next_run?;
            Some(gauge(vec![job(v)], next.as_millisecond() as f64 / 1e3))
        })
        .collect();
    vec![
        family(
            STATE,
            "State of each batch job: 1 for its current state, 0 for the others.",
            states,
        ),
        family(
            STALENESS,
            "Seconds since the job's last success (since batchgate knew it, if it never succeeded).",
            staleness,
        ),
        family(
            MAX_STALENESS,
            "Oldest acceptable last success of the job, in seconds (BatchJobStale threshold).",
            max_staleness,
        ),
        family(
            NEXT_EXPECTED,
            "Unix time of the job's next scheduled run (scheduled jobs only).",
            next,
        ),
    ]
}
