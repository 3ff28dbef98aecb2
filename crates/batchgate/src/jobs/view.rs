//! What the rest of batchgate sees of a job at one evaluation: the contract between the job
//! registry (which builds it from config, pushes and run history) and its readers (alerts, the
//! JSON API, the page, `/metrics`).

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};

use super::config::JobSpec;
use super::runs::Outcome;
use super::state::{Assessment, Escalation, JobFacts, JobState};

/// One finished (or still running) run, as kept in run history.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub start: Option<Timestamp>,
    pub end: Option<Timestamp>,
    /// `None` while running.
    pub outcome: Option<Outcome>,
    pub duration: Option<SignedDuration>,
    pub exit_code: Option<i64>,
}

/// A job as evaluated at `at`.
#[derive(Debug, Clone)]
pub struct JobView {
    pub spec: Arc<JobSpec>,
    pub facts: JobFacts,
    pub assessment: Assessment,
    /// `assessment.state()`, for convenience.
    pub state: JobState,
    /// The escalation level of its alerts (SPEC §3.4), when it has one.
    pub escalation: Option<Escalation>,
    /// Duration of the last finished run.
    pub last_duration: Option<SignedDuration>,
    /// The BatchJobDurationHigh threshold: `max_duration`, else 2 × p95 of the last 20 runs
    /// (`None` while there is too little history).
    pub duration_threshold: Option<SignedDuration>,
    /// Errors counted in the last 24 hours (increase of `errors_total` plus failed runs).
    pub errors_24h: u64,
    pub last_exit_code: Option<i64>,
    /// Newest first, at most the retention limit.
    pub recent_runs: Vec<Run>,
    /// When this view was evaluated.
    pub at: Timestamp,
}
