//! Which alerts should be active, from one evaluation of every job (SPEC §3.4).
//!
//! Pure: a function of the [`JobView`]s and nothing else (no clock; every figure comes from the
//! views, which were evaluated at their own `at`). The lifecycle (pending for `for`, firing,
//! resolved) is the [`engine`](super::engine)'s.

use std::collections::BTreeMap;
use std::fmt;

use jiff::{SignedDuration, Timestamp};

use crate::jobs::duration::format_duration;
use crate::jobs::{Escalation, JobState, JobView};

/// An alert's labels: its identity. Sorted, so equal sets compare and hash equal.
pub type Labels = BTreeMap<String, String>;

/// The alerts batchgate raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertName {
    Stale,
    Late,
    Failed,
    Hung,
    DurationHigh,
    ErrorsHigh,
    PushFailing,
    Watchdog,
}

impl AlertName {
    pub const ALL: [AlertName; 8] = [
        AlertName::Stale,
        AlertName::Late,
        AlertName::Failed,
        AlertName::Hung,
        AlertName::DurationHigh,
        AlertName::ErrorsHigh,
        AlertName::PushFailing,
        AlertName::Watchdog,
    ];

    /// The `alertname` label.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertName::Stale => "BatchJobStale",
            AlertName::Late => "BatchJobLate",
            AlertName::Failed => "BatchJobFailed",
            AlertName::Hung => "BatchJobHung",
            AlertName::DurationHigh => "BatchJobDurationHigh",
            AlertName::ErrorsHigh => "BatchJobErrorsHigh",
            AlertName::PushFailing => "BatchJobPushFailing",
            AlertName::Watchdog => "BatchGatewayWatchdog",
        }
    }

    /// The `severity` label.
    pub fn severity(self) -> &'static str {
        match self {
            AlertName::Late => "info",
            AlertName::Watchdog => "none",
            _ => "warning",
        }
    }

    /// Whether the alert carries the runbook's `escalation` label.
    pub fn escalates(self) -> bool {
        matches!(self, AlertName::Stale | AlertName::Failed)
    }
}

impl serde::Serialize for AlertName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for AlertName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An alert whose condition holds at this evaluation (before `for` is applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub name: AlertName,
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    /// How long the condition must hold before the alert fires.
    pub for_duration: SignedDuration,
}

/// A duration for people: whole seconds, Prometheus-style (`8h`, `9h0m30s`).
fn human(d: SignedDuration) -> String {
    format_duration(SignedDuration::from_secs(d.as_secs()))
}

fn when(t: Option<Timestamp>) -> String {
    t.map_or_else(
        || "never".to_owned(),
        |t| t.round(jiff::Unit::Second).unwrap_or(t).to_string(),
    )
}

/// The `BatchGatewayWatchdog`: always firing, so its absence at Alertmanager means batchgate is down.
pub fn watchdog() -> Alert {
    let name = AlertName::Watchdog;
    Alert {
        name,
        labels: Labels::from([
            ("alertname".to_owned(), name.as_str().to_owned()),
            ("severity".to_owned(), name.severity().to_owned()),
        ]),
        annotations: BTreeMap::from([
            ("summary".to_owned(), "batchgate is up and delivering alerts".to_owned()),
            (
                "description".to_owned(),
                "This alert is always firing. If it stops arriving, batchgate is down or cannot reach \
                 Alertmanager (the runbook's PushGatewayDown): route it to a dead man's switch."
                    .to_owned(),
            ),
        ]),
        for_duration: SignedDuration::ZERO,
    }
}

/// Every alert whose condition holds for `views`, plus the watchdog. Paused jobs raise nothing;
/// a retired job keeps only its `BatchJobStale` (expiry never silently resolves it, SPEC §3.5).
pub fn evaluate(views: &[JobView]) -> Vec<Alert> {
    let mut out = Vec::new();
    for view in views {
        job_alerts(view, &mut out);
    }
    out.push(watchdog());
    out
}

/// The alerts of one job.
pub fn job_alerts(view: &JobView, out: &mut Vec<Alert>) {
    let a = &view.assessment;
    if a.holds(JobState::Paused) {
        return;
    }
    let spec = &view.spec;
    let retired = a.holds(JobState::Retired);
    let name = &spec.name;
    let staleness = format!(
        "last success {} ({} ago), max staleness {}",
        when(view.facts.last_success),
        human(a.staleness),
        human(spec.max_staleness)
    );
    let next = format!("next expected run {}", when(a.next_run));
    let mut raise = |alert: AlertName, summary: String, description: String| {
        out.push(build(view, alert, summary, description));
    };
    if a.holds(JobState::Stale) {
        let never = view.facts.last_success.is_none();
        let summary = if never {
            format!("Batch job {name} has never succeeded in {}", human(a.staleness))
        } else {
            format!("Batch job {name} is stale: no success for {}", human(a.staleness))
        };
        let mut description = format!("Job {name}: {staleness}; {next}.");
        if retired {
            description.push_str(" Its groups expired (retired); the alert stays until it is retired on purpose.");
        }
        raise(AlertName::Stale, summary, description);
    }
    if retired {
        return;
    }
    if a.holds(JobState::Late) {
        raise(
            AlertName::Late,
            format!("Batch job {name} is late"),
            format!(
                "Job {name}: the run scheduled at {} has not succeeded within the grace of {}; {staleness}; {next}.",
                when(a.missed_fire),
                human(spec.grace)
            ),
        );
    }
    if a.holds(JobState::Failed) {
        let exit = view
            .last_exit_code
            .map_or_else(|| "exit code unknown".to_owned(), |c| format!("exit code {c}"));
        raise(
            AlertName::Failed,
            format!("Batch job {name} failed"),
            format!(
                "Job {name}: the last run failed at {} ({exit}); {staleness}; {next}.",
                when(view.facts.last_failure)
            ),
        );
    }
    if a.holds(JobState::Hung) {
        let running = a.running_since.map(|s| view.at.duration_since(s)).unwrap_or_default();
        raise(
            AlertName::Hung,
            format!("Batch job {name} is hung: running for {}", human(running)),
            format!(
                "Job {name}: the run started at {} is still going after {}, max runtime {}; {staleness}.",
                when(a.running_since),
                human(running),
                human(crate::jobs::state::effective_max_runtime(spec))
            ),
        );
    }
    if let (Some(last), Some(max)) = (view.last_duration, view.duration_threshold)
        && last > max
    {
        let source = if spec.max_duration.is_some() {
            "max_duration"
        } else {
            "2 x p95 of the last 20 runs"
        };
        raise(
            AlertName::DurationHigh,
            format!("Batch job {name} took {}", human(last)),
            format!(
                "Job {name}: the last run took {}, more than {} ({source}).",
                human(last),
                human(max)
            ),
        );
    }
    if view.errors_24h > spec.max_errors_24h {
        raise(
            AlertName::ErrorsHigh,
            format!("Batch job {name} had {} errors in 24h", view.errors_24h),
            format!(
                "Job {name}: {} errors in the last 24 hours, more than max_errors_24h = {}.",
                view.errors_24h, spec.max_errors_24h
            ),
        );
    }
    if a.holds(JobState::PushFailing) {
        raise(
            AlertName::PushFailing,
            format!("Pushes of batch job {name} are being rejected"),
            format!(
                "Job {name}: the last push was rejected at {} (last accepted push {}); see the gateway's log \
                 for the reason.",
                when(view.facts.last_push_failure),
                when(view.facts.last_push)
            ),
        );
    }
}

fn build(view: &JobView, name: AlertName, summary: String, description: String) -> Alert {
    let spec = &view.spec;
    // The job's own labels first: the reserved ones below win (config validation refuses them anyway).
    let mut labels = spec.labels.clone();
    labels.insert("alertname".to_owned(), name.as_str().to_owned());
    labels.insert("severity".to_owned(), name.severity().to_owned());
    labels.insert("job_name".to_owned(), spec.name.clone());
    if let Some(team) = &spec.team {
        labels.insert("team".to_owned(), team.clone());
    } else {
        labels.remove("team");
    }
    if name.escalates() {
        let level = view.escalation.unwrap_or(Escalation::L1);
        labels.insert("escalation".to_owned(), level.as_str().to_owned());
    } else {
        labels.remove("escalation");
    }
    let mut annotations = BTreeMap::from([("summary".to_owned(), summary), ("description".to_owned(), description)]);
    if let Some(url) = &spec.runbook_url {
        annotations.insert("runbook_url".to_owned(), url.clone());
    }
    Alert {
        name,
        labels,
        annotations,
        for_duration: spec.for_duration,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::jobs::config::{Global, JobSpec, StalenessSource};
    use crate::jobs::runs::{Outcome, RunStatus};
    use crate::jobs::state::{JobFacts, assess};
    use crate::jobs::{Escalation, Schedule};

    const H: SignedDuration = SignedDuration::from_hours(1);
    const M: SignedDuration = SignedDuration::from_mins(1);

    fn now() -> Timestamp {
        "2025-06-01T12:30:00Z".parse().unwrap()
    }

    fn ef_update() -> JobSpec {
        JobSpec {
            schedule: Some(Schedule::new("0 */6 * * *", "UTC").unwrap()),
            max_staleness: 8 * H,
            max_staleness_source: StalenessSource::Configured,
            max_runtime: Some(2 * H),
            critical: true,
            interval: 6 * H,
            registered: true,
            team: Some("platform".into()),
            runbook_url: Some("https://runbooks.example/batch-job-stale".into()),
            labels: BTreeMap::from([("service".to_owned(), "greenlang".to_owned())]),
            ..JobSpec::discovered("ef-update", &Global::default())
        }
    }

    fn healthy() -> JobFacts {
        JobFacts {
            last_success: Some(now() - 25 * M),
            last_start: Some(now() - 30 * M),
            status: Some(RunStatus::Completed),
            last_outcome: Some(Outcome::Success),
            last_push: Some(now() - 25 * M),
            ..JobFacts::new(now() - 1000 * H)
        }
    }

    fn view(spec: JobSpec, facts: JobFacts, escalation: Option<Escalation>) -> JobView {
        let assessment = assess(&spec, &facts, now());
        JobView {
            spec: Arc::new(spec),
            facts,
            state: assessment.state(),
            assessment,
            escalation,
            last_duration: None,
            duration_threshold: None,
            errors_24h: 0,
            last_exit_code: None,
            recent_runs: Vec::new(),
            at: now(),
        }
    }

    fn names(alerts: &[Alert]) -> Vec<&'static str> {
        alerts.iter().map(|a| a.name.as_str()).collect()
    }

    fn stale_facts() -> JobFacts {
        JobFacts {
            last_success: Some(now() - 9 * H),
            ..healthy()
        }
    }

    #[test]
    fn healthy_job_raises_only_the_watchdog() {
        let alerts = evaluate(&[view(ef_update(), healthy(), None)]);
        assert_eq!(names(&alerts), ["BatchGatewayWatchdog"]);
        let w = &alerts[0];
        assert_eq!(w.labels["severity"], "none");
        assert_eq!(w.labels.len(), 2);
        assert_eq!(w.for_duration, SignedDuration::ZERO);
    }

    #[test]
    fn stale_has_the_runbook_labels_and_figures() {
        let spec = JobSpec {
            schedule: None,
            ..ef_update()
        };
        let alerts = evaluate(&[view(spec, stale_facts(), Some(Escalation::L1))]);
        assert_eq!(names(&alerts), ["BatchJobStale", "BatchGatewayWatchdog"]);
        let a = &alerts[0];
        let want: Labels = [
            ("alertname", "BatchJobStale"),
            ("severity", "warning"),
            ("job_name", "ef-update"),
            ("team", "platform"),
            ("escalation", "L1"),
            ("service", "greenlang"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(a.labels, want);
        assert_eq!(a.for_duration, 15 * M);
        let d = &a.annotations["description"];
        assert!(d.contains("9h ago"), "{d}");
        assert!(d.contains("max staleness 8h"), "{d}");
        assert!(d.contains("2025-06-01T03:30:00Z"), "{d}");
        assert_eq!(a.annotations["runbook_url"], "https://runbooks.example/batch-job-stale");
        assert!(a.annotations["summary"].contains("ef-update is stale"));
    }

    #[test]
    fn escalation_levels_become_labels() {
        for level in [Escalation::L1, Escalation::L2, Escalation::L3] {
            let alerts = evaluate(&[view(ef_update(), stale_facts(), Some(level))]);
            let stale = alerts.iter().find(|a| a.name == AlertName::Stale).unwrap();
            assert_eq!(stale.labels["escalation"], level.as_str());
            // The schedule-based job is also late; lateness does not escalate.
            let late = alerts.iter().find(|a| a.name == AlertName::Late).unwrap();
            assert_eq!(late.labels["severity"], "info");
            assert!(!late.labels.contains_key("escalation"));
        }
    }

    #[test]
    fn failed_with_exit_code_and_escalation() {
        let facts = JobFacts {
            last_failure: Some(now() - 20 * M),
            status: Some(RunStatus::Failed),
            last_outcome: Some(Outcome::Failure),
            ..healthy()
        };
        let mut v = view(ef_update(), facts, Some(Escalation::L3));
        v.last_exit_code = Some(137);
        let alerts = evaluate(&[v]);
        assert_eq!(names(&alerts), ["BatchJobFailed", "BatchGatewayWatchdog"]);
        assert_eq!(alerts[0].labels["escalation"], "L3");
        assert!(alerts[0].annotations["description"].contains("exit code 137"));
    }

    #[test]
    fn hung_late_push_failing_duration_and_errors() {
        let hung = JobFacts {
            last_start: Some(now() - 3 * H),
            last_success: Some(now() - 3 * H - M),
            status: Some(RunStatus::Running),
            ..healthy()
        };
        let alerts = evaluate(&[view(ef_update(), hung, None)]);
        assert_eq!(names(&alerts), ["BatchJobHung", "BatchGatewayWatchdog"]);
        assert!(alerts[0].annotations["description"].contains("max runtime 2h"));
        assert!(!alerts[0].labels.contains_key("escalation"));

        let late = JobFacts {
            last_success: Some(now() - 6 * H - 40 * M),
            ..healthy()
        };
        assert_eq!(
            names(&evaluate(&[view(ef_update(), late, None)])),
            ["BatchJobLate", "BatchGatewayWatchdog"]
        );

        let failing = JobFacts {
            last_push_failure: Some(now() - M),
            ..healthy()
        };
        assert_eq!(
            names(&evaluate(&[view(ef_update(), failing, None)])),
            ["BatchJobPushFailing", "BatchGatewayWatchdog"]
        );

        let mut v = view(ef_update(), healthy(), None);
        v.last_duration = Some(50 * M);
        v.duration_threshold = Some(40 * M);
        v.errors_24h = 3;
        let alerts = evaluate(&[v.clone()]);
        assert_eq!(
            names(&alerts),
            ["BatchJobDurationHigh", "BatchJobErrorsHigh", "BatchGatewayWatchdog"]
        );
        assert!(alerts[0].annotations["description"].contains("took 50m"));
        assert!(alerts[1].annotations["description"].contains("3 errors"));
        // At the thresholds: nothing.
        v.last_duration = Some(40 * M);
        v.errors_24h = 0;
        assert_eq!(names(&evaluate(&[v])), ["BatchGatewayWatchdog"]);
    }

    #[test]
    fn paused_jobs_are_silent_and_retired_ones_stay_stale() {
        let paused = JobFacts {
            paused: true,
            last_push_failure: Some(now() - M),
            ..stale_facts()
        };
        assert_eq!(
            names(&evaluate(&[view(ef_update(), paused, Some(Escalation::L2))])),
            ["BatchGatewayWatchdog"]
        );
        let retired = JobFacts {
            retired: true,
            last_push_failure: Some(now() - M),
            ..stale_facts()
        };
        let alerts = evaluate(&[view(ef_update(), retired, Some(Escalation::L1))]);
        assert_eq!(names(&alerts), ["BatchJobStale", "BatchGatewayWatchdog"]);
        assert!(alerts[0].annotations["description"].contains("retired"));
    }

    #[test]
    fn names_and_severities() {
        assert_eq!(AlertName::ALL.len(), 8);
        for n in AlertName::ALL {
            assert!(n.as_str().starts_with("Batch"));
            assert!(["warning", "info", "none"].contains(&n.severity()));
        }
    }
}
