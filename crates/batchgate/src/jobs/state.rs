//! A job's state (SPEC §3.3) and the escalation level of its alerts (SPEC §3.4).
//!
//! Everything here is a pure function of the job's settings, the facts gathered about it and the
//! evaluation instant `now`, so it is evaluated identically on every replica and tested on a fake
//! clock.
//!
//! Several conditions can hold at once (a job can be stale *and* have its last push rejected);
//! [`assess`] reports all of them, because each drives its own alert, and the job's displayed
//! state is the first one in precedence order.

use std::fmt;

use jiff::{SignedDuration, Timestamp};

use super::config::JobSpec;
use super::runs::{JobMetrics, Outcome, RunStatus, timestamp_from_secs};

/// A job's state, in precedence order: when several conditions hold, the earliest variant wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum JobState {
    /// Silenced by an operator, or its CronJob is suspended.
    Paused,
    /// Its groups expired or were retired on purpose (its stale alert keeps firing, SPEC §3.5).
    Retired,
    /// Running longer than `max_runtime`.
    Hung,
    Running,
    /// The last run failed.
    Failed,
    /// The last success is older than `max_staleness`.
    Stale,
    /// A scheduled fire + `grace` passed without a success.
    Late,
    /// The gateway rejected the last push of one of its groups.
    PushFailing,
    NeverSucceeded,
    Ok,
}

impl JobState {
    /// Every state, in precedence order.
    pub const ALL: [JobState; 10] = [
        JobState::Paused,
        JobState::Retired,
        JobState::Hung,
        JobState::Running,
        JobState::Failed,
        JobState::Stale,
        JobState::Late,
        JobState::PushFailing,
        JobState::NeverSucceeded,
        JobState::Ok,
    ];

    /// The name used in metrics (`batchgate_job_state{state=…}`), the API and the page.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Paused => "paused",
            JobState::Retired => "retired",
            JobState::Hung => "hung",
            JobState::Running => "running",
            JobState::Failed => "failed",
            JobState::Stale => "stale",
            JobState::Late => "late",
            JobState::PushFailing => "push_failing",
            JobState::NeverSucceeded => "never_succeeded",
            JobState::Ok => "ok",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is known about a job at evaluation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobFacts {
    /// Since when batchgate has known the job (config load or first push): fires before it are
    /// not held against the job, and a job that never succeeded is stale that long after it.
    pub known_since: Timestamp,
    /// Silenced by an operator, or its CronJob suspended.
    pub paused: bool,
    /// Expired by `retire_after` / `--push.ttl`, or retired by an operator.
    pub retired: bool,
    pub last_success: Option<Timestamp>,
    pub last_failure: Option<Timestamp>,
    /// Start of the current (or last) run.
    pub last_start: Option<Timestamp>,
    /// The `status` gauge as last pushed.
    pub status: Option<RunStatus>,
    /// Outcome of the last finished run from run history, when there is one.
    pub last_outcome: Option<Outcome>,
    /// Latest `push_time_seconds` over the job's groups.
    pub last_push: Option<Timestamp>,
    /// Latest `push_failure_time_seconds` over the job's groups.
    pub last_push_failure: Option<Timestamp>,
}

impl JobFacts {
    /// Facts known about a job that has not pushed anything yet.
    pub fn new(known_since: Timestamp) -> JobFacts {
        JobFacts {
            known_since,
            paused: false,
            retired: false,
            last_success: None,
            last_failure: None,
            last_start: None,
            status: None,
            last_outcome: None,
            last_push: None,
            last_push_failure: None,
        }
    }

    /// Copies what the job's last pushed SDK metrics say into these facts.
    pub fn with_metrics(mut self, m: &JobMetrics) -> JobFacts {
        self.last_success = m.last_success.and_then(timestamp_from_secs);
        self.last_failure = m.last_failure.and_then(timestamp_from_secs);
        self.last_start = m.last_start.and_then(timestamp_from_secs);
        self.status = m.status;
        self
    }

    /// Whether a run is in progress: `status=running`, or a start newer than the last end.
    fn run_start(&self) -> Option<Timestamp> {
        let last_end = self.last_success.max(self.last_failure);
        match self.status {
            Some(RunStatus::Running) => Some(self.last_start.or(self.last_push).unwrap_or(self.known_since)),
            Some(_) => None,
            None => self.last_start.filter(|s| Some(*s) > last_end),
        }
    }

    /// Whether the last finished run failed: run history if known, else the pushed status, else
    /// which of the two timestamps is newer.
    fn last_run_failed(&self) -> bool {
        match (self.last_outcome, self.status) {
            (Some(outcome), _) => outcome == Outcome::Failure,
            (None, Some(status)) => status == RunStatus::Failed,
            (None, None) => self.last_failure.is_some() && self.last_failure > self.last_success,
        }
    }
}

/// Every condition that holds for a job at one instant, and the figures behind them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// The conditions that hold, in precedence order (never contains [`JobState::Ok`]).
    pub conditions: Vec<JobState>,
    /// Time since the last success (since `known_since` if it never succeeded).
    pub staleness: SignedDuration,
    /// When the current run started, if one is in progress.
    pub running_since: Option<Timestamp>,
    /// The scheduled fire that went by without a success, when the job is late.
    pub missed_fire: Option<Timestamp>,
    /// The next scheduled fire after `now`.
    pub next_run: Option<Timestamp>,
}

impl Assessment {
    /// The job's state: the first condition in precedence order, or `ok`.
    pub fn state(&self) -> JobState {
        self.conditions.first().copied().unwrap_or(JobState::Ok)
    }

    /// Whether `condition` holds, whatever the state (alerts are raised per condition).
    pub fn holds(&self, condition: JobState) -> bool {
        self.conditions.contains(&condition)
    }
}

/// The longest a run may go on before it counts as hung: `max_runtime`, or, without one,
/// `max_staleness`. A run longer than that cannot end in time to keep the job fresh, and a crashed
/// job that left `status=running` behind must not hide its staleness forever.
pub fn effective_max_runtime(spec: &JobSpec) -> SignedDuration {
    spec.max_runtime.unwrap_or(spec.max_staleness)
}

/// Evaluates every condition of SPEC §3.3 for one job at `now`.
pub fn assess(spec: &JobSpec, facts: &JobFacts, now: Timestamp) -> Assessment {
    let running_since = facts.run_start();
    let reference = facts.last_success.unwrap_or(facts.known_since);
    let staleness = now.duration_since(reference);
    // The latest fire whose grace has run out: a success must have arrived since.
    let missed_fire = spec
        .schedule
        .as_ref()
        .and_then(|s| s.last_at_or_before(now.checked_sub(spec.grace).ok()?))
        .filter(|fire| *fire >= facts.known_since && facts.last_success.is_none_or(|s| s < *fire));
    let checks = [
        (JobState::Paused, facts.paused),
        (JobState::Retired, facts.retired),
        (
            JobState::Hung,
            running_since.is_some_and(|s| now.duration_since(s) > effective_max_runtime(spec)),
        ),
        (JobState::Running, running_since.is_some()),
        (JobState::Failed, running_since.is_none() && facts.last_run_failed()),
        (JobState::Stale, staleness > spec.max_staleness),
        (JobState::Late, missed_fire.is_some()),
        (
            JobState::PushFailing,
            facts.last_push_failure.is_some() && facts.last_push_failure > facts.last_push,
        ),
        (JobState::NeverSucceeded, facts.last_success.is_none()),
    ];
    Assessment {
        conditions: checks
            .into_iter()
            .filter_map(|(state, holds)| holds.then_some(state))
            .collect(),
        staleness,
        running_since,
        missed_fire,
        next_run: spec.schedule.as_ref().and_then(|s| s.next_after(now)),
    }
}

/// The job's state at `now` (see [`assess`] for every condition that holds).
pub fn evaluate(spec: &JobSpec, facts: &JobFacts, now: Timestamp) -> JobState {
    assess(spec, facts, now).state()
}

/// The runbook's escalation path, carried as the `escalation` label of a job's alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Escalation {
    /// A job is stale (or failed): the on-call engineer.
    L1,
    /// A critical job has been stale for more than twice its schedule interval: the platform lead.
    L2,
    /// Two or more critical jobs are failing or stale at once: platform and data teams.
    L3,
}

impl Escalation {
    pub fn as_str(self) -> &'static str {
        match self {
            Escalation::L1 => "L1",
            Escalation::L2 => "L2",
            Escalation::L3 => "L3",
        }
    }
}

impl fmt::Display for Escalation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Escalation level of each job's alerts, given every job's assessment (L3 depends on the others).
///
/// Only stale or failed jobs escalate, and paused jobs never do. Every such job is at least L1 (the
/// runbook's L1 names non-critical jobs, and a critical job that just went stale is no less the
/// on-call engineer's); a critical stale job whose last success is more than twice its schedule
/// interval old is L2; when two or more critical jobs are stale or failed, each of them is L3.
pub fn escalation_levels(jobs: &[(&JobSpec, &Assessment)]) -> Vec<Option<Escalation>> {
    let alerting =
        |a: &Assessment| !a.holds(JobState::Paused) && (a.holds(JobState::Stale) || a.holds(JobState::Failed));
    let critical_alerting = jobs.iter().filter(|(spec, a)| spec.critical && alerting(a)).count();
    jobs.iter()
        .map(|(spec, a)| {
            if !alerting(a) {
                None
            } else if spec.critical && critical_alerting >= 2 {
                Some(Escalation::L3)
            } else if spec.critical && a.holds(JobState::Stale) && a.staleness > spec.interval * 2 {
                Some(Escalation::L2)
            } else {
                Some(Escalation::L1)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::config::{Global, StalenessSource};
    use crate::jobs::schedule::Schedule;

    const H: SignedDuration = SignedDuration::from_hours(1);
    const M: SignedDuration = SignedDuration::from_mins(1);

    fn now() -> Timestamp {
        "2025-06-01T12:30:00Z".parse().unwrap()
    }

    fn ago(d: SignedDuration) -> Timestamp {
        now() - d
    }

    /// The runbook's ef-update: every 6 h, max staleness 8 h, grace 1 h, max runtime 2 h.
    fn ef_update() -> JobSpec {
        JobSpec {
            schedule: Some(Schedule::new("0 */6 * * *", "UTC").unwrap()),
            max_staleness: 8 * H,
            max_staleness_source: StalenessSource::Configured,
            max_runtime: Some(2 * H),
            critical: true,
            interval: 6 * H,
            registered: true,
            ..JobSpec::discovered("ef-update", &Global::default())
        }
    }

    /// Healthy: succeeded at 12:05 after the 12:00 fire, known for a long time.
    fn healthy() -> JobFacts {
        JobFacts {
            last_success: Some(ago(25 * M)),
            last_start: Some(ago(30 * M)),
            status: Some(RunStatus::Completed),
            last_outcome: Some(Outcome::Success),
            last_push: Some(ago(25 * M)),
            ..JobFacts::new(ago(1000 * H))
        }
    }

    /// Facts under which exactly `state` holds (on top of the healthy job).
    fn only(state: JobState) -> JobFacts {
        let h = healthy();
        match state {
            JobState::Paused => JobFacts { paused: true, ..h },
            JobState::Retired => JobFacts { retired: true, ..h },
            // Hung/running: a run started after the last success, with no outcome yet.
            JobState::Hung => JobFacts {
                last_start: Some(ago(3 * H)),
                last_success: Some(ago(3 * H + M)),
                status: Some(RunStatus::Running),
                ..h
            },
            JobState::Running => JobFacts {
                last_start: Some(ago(10 * M)),
                status: Some(RunStatus::Running),
                ..h
            },
            JobState::Failed => JobFacts {
                last_failure: Some(ago(20 * M)),
                status: Some(RunStatus::Failed),
                last_outcome: Some(Outcome::Failure),
                ..h
            },
            // Stale without being late: a schedule-less job whose last success is 9 h old.
            JobState::Stale => JobFacts {
                last_success: Some(ago(9 * H)),
                ..h
            },
            // Late without being stale: the 06:00 fire's grace ended at 07:00, last success 05:50.
            JobState::Late => JobFacts {
                last_success: Some(ago(6 * H + 40 * M)),
                ..h
            },
            JobState::PushFailing => JobFacts {
                last_push_failure: Some(ago(M)),
                ..h
            },
            JobState::NeverSucceeded => JobFacts {
                last_success: None,
                last_start: None,
                status: None,
                last_outcome: None,
                known_since: ago(10 * M),
                ..h
            },
            JobState::Ok => h,
        }
    }

    fn spec_for(state: JobState) -> JobSpec {
        match state {
            JobState::Stale => JobSpec {
                schedule: None,
                ..ef_update()
            },
            _ => ef_update(),
        }
    }

    #[test]
    fn every_state_alone() {
        for state in JobState::ALL {
            let a = assess(&spec_for(state), &only(state), now());
            let want = match state {
                JobState::Ok => vec![],
                JobState::Hung => vec![JobState::Hung, JobState::Running], // a hung run is still running
                _ => vec![state],
            };
            assert_eq!(a.conditions, want, "{state}");
            assert_eq!(a.state(), state);
            assert_eq!(evaluate(&spec_for(state), &only(state), now()), state);
        }
    }

    /// Merges the facts of two single-condition scenarios so both conditions hold.
    fn both(a: JobState, b: JobState) -> (JobSpec, JobFacts) {
        use JobState::*;
        let mut f = only(a);
        let g = only(b);
        match b {
            Paused => f.paused = true,
            Retired => f.retired = true,
            Running | Hung => {
                f.status = g.status;
                f.last_start = g.last_start;
            }
            Failed => {
                f.last_failure = g.last_failure;
                f.last_outcome = g.last_outcome;
                if !matches!(a, Running | Hung) {
                    f.status = g.status;
                }
            }
            Stale | Late => f.last_success = f.last_success.min(g.last_success),
            PushFailing => f.last_push_failure = g.last_push_failure,
            NeverSucceeded => {
                f.last_success = None;
                f.known_since = g.known_since;
            }
            Ok => {}
        }
        if a == Hung {
            // Keep the run older than max_runtime.
            f.last_start = only(Hung).last_start;
        }
        // With a schedule, a stale job is also late; extra later conditions do not change the state.
        (ef_update(), f)
    }

    /// Every pair of conditions: the one listed first in SPEC §3.3 is the state.
    #[test]
    fn every_precedence_pair() {
        use JobState::*;
        // Pairs that cannot hold together by definition.
        let exclusive = |a: JobState, b: JobState| {
            matches!((a, b), (Running | Hung, Failed)) // a run in progress has no outcome yet
                || matches!((a, b), (Stale | Late, NeverSucceeded)) // scenario facts overwrite each other
        };
        let mut checked = 0;
        for (i, &a) in JobState::ALL[..9].iter().enumerate() {
            for &b in &JobState::ALL[i + 1..9] {
                if exclusive(a, b) || (a, b) == (Hung, Running) {
                    continue;
                }
                let (spec, facts) = both(a, b);
                let got = assess(&spec, &facts, now());
                assert!(got.holds(a) && got.holds(b), "{a}+{b}: conditions {:?}", got.conditions);
                assert_eq!(got.state(), a, "{a} must win over {b}: {:?}", got.conditions);
                checked += 1;
            }
        }
        assert_eq!(checked, 31);
        // The pairs skipped above, written out.
        let hung = assess(&ef_update(), &only(Hung), now());
        assert_eq!(
            (hung.state(), hung.holds(Running)),
            (Hung, true),
            "a hung job is also running"
        );
        let spec = JobSpec {
            schedule: None,
            ..ef_update()
        };
        let never = JobFacts {
            last_success: None,
            known_since: ago(9 * H),
            ..only(NeverSucceeded)
        };
        assert_eq!(assess(&spec, &never, now()).conditions, [Stale, NeverSucceeded]);
        let never = JobFacts {
            known_since: ago(7 * H),
            ..never
        };
        assert_eq!(assess(&ef_update(), &never, now()).conditions, [Late, NeverSucceeded]);
        let running_after_failure = JobFacts {
            status: Some(RunStatus::Running),
            last_start: Some(ago(M)),
            ..only(Failed)
        };
        assert_eq!(
            assess(&ef_update(), &running_after_failure, now()).state(),
            Running,
            "a new run hides the old failure"
        );
    }

    #[test]
    fn stale_is_strictly_older_than_max_staleness() {
        let spec = JobSpec {
            schedule: None,
            ..ef_update()
        };
        let at = |age| {
            assess(
                &spec,
                &JobFacts {
                    last_success: Some(ago(age)),
                    ..healthy()
                },
                now(),
            )
        };
        assert!(!at(8 * H).holds(JobState::Stale));
        assert!(at(8 * H + SignedDuration::from_secs(1)).holds(JobState::Stale));
        assert_eq!(at(8 * H).staleness, 8 * H);
    }

    #[test]
    fn late_follows_the_schedule_and_grace() {
        let spec = ef_update(); // fires 00/06/12/18 UTC, grace 1 h; now = 12:30
        let late = |success: Option<Timestamp>, known: Timestamp| {
            assess(
                &spec,
                &JobFacts {
                    last_success: success,
                    ..JobFacts::new(known)
                },
                now(),
            )
            .missed_fire
        };
        let six: Timestamp = "2025-06-01T06:00:00Z".parse().unwrap();
        assert_eq!(late(Some(six - M), ago(100 * H)), Some(six), "missed 06:00");
        assert_eq!(late(Some(six), ago(100 * H)), None, "a success at the fire counts");
        assert_eq!(
            late(Some(six + 5 * M), ago(100 * H)),
            None,
            "12:00 is still within grace"
        );
        assert_eq!(late(None, six + M), None, "fires before the job was known do not count");
        assert_eq!(late(None, six - M), Some(six));
        // At 13:00 the 12:00 fire's grace is over too.
        let later = assess(
            &spec,
            &JobFacts {
                last_success: Some(six + 5 * M),
                ..JobFacts::new(ago(100 * H))
            },
            now() + 30 * M,
        );
        assert_eq!(later.missed_fire, Some("2025-06-01T12:00:00Z".parse().unwrap()));
        assert_eq!(later.next_run, Some("2025-06-01T18:00:00Z".parse().unwrap()));
        // Without a schedule there is no lateness.
        assert_eq!(
            assess(
                &JobSpec {
                    schedule: None,
                    ..spec.clone()
                },
                &JobFacts::new(ago(100 * H)),
                now()
            )
            .missed_fire,
            None
        );
    }

    #[test]
    fn late_across_a_spring_forward_gap() {
        // 02:30 New York does not exist on 2025-03-09: the job is due at 03:00 EDT (07:00 UTC).
        let spec = JobSpec {
            schedule: Some(Schedule::new("30 2 * * *", "America/New_York").unwrap()),
            grace: 30 * M,
            ..JobSpec::discovered("nightly", &Global::default())
        };
        let due: Timestamp = "2025-03-09T07:00:00Z".parse().unwrap();
        let facts = JobFacts {
            last_success: Some(due - 20 * H),
            ..JobFacts::new(due - 100 * H)
        };
        assert_eq!(assess(&spec, &facts, due + 29 * M).missed_fire, None);
        assert_eq!(assess(&spec, &facts, due + 31 * M).missed_fire, Some(due));
    }

    #[test]
    fn running_and_hung() {
        let spec = ef_update();
        let run = |started: SignedDuration, status| JobFacts {
            last_start: Some(ago(started)),
            status,
            ..healthy()
        };
        assert_eq!(
            evaluate(&spec, &run(2 * H - M, Some(RunStatus::Running)), now()),
            JobState::Running
        );
        assert_eq!(
            evaluate(&spec, &run(2 * H + M, Some(RunStatus::Running)), now()),
            JobState::Hung
        );
        // No status series: a start newer than the last end is a run in progress.
        assert_eq!(evaluate(&spec, &run(10 * M, None), now()), JobState::Running);
        assert_eq!(
            evaluate(&spec, &run(26 * M, None), now()),
            JobState::Ok,
            "started before the last success"
        );
        // Without max_runtime, a run older than max_staleness is hung.
        let no_limit = JobSpec {
            max_runtime: None,
            ..spec
        };
        assert_eq!(effective_max_runtime(&no_limit), 8 * H);
        assert_eq!(
            evaluate(&no_limit, &run(7 * H, Some(RunStatus::Running)), now()),
            JobState::Running
        );
        assert_eq!(
            evaluate(&no_limit, &run(9 * H, Some(RunStatus::Running)), now()),
            JobState::Hung
        );
    }

    #[test]
    fn failed_without_run_history() {
        let spec = ef_update();
        let facts = |success: SignedDuration, failure: SignedDuration, status| JobFacts {
            last_success: Some(ago(success)),
            last_failure: Some(ago(failure)),
            status,
            last_outcome: None,
            ..healthy()
        };
        assert_eq!(evaluate(&spec, &facts(H, 10 * M, None), now()), JobState::Failed);
        assert_eq!(evaluate(&spec, &facts(10 * M, H, None), now()), JobState::Ok);
        assert_eq!(
            evaluate(&spec, &facts(10 * M, H, Some(RunStatus::Failed)), now()),
            JobState::Failed,
            "status wins"
        );
        assert_eq!(
            evaluate(&spec, &facts(H, 10 * M, Some(RunStatus::Completed)), now()),
            JobState::Ok
        );
    }

    #[test]
    fn facts_from_pushed_metrics() {
        let m = JobMetrics {
            last_success: Some(1_750_000_000.0),
            last_start: Some(1_749_999_000.0),
            status: Some(RunStatus::Completed),
            ..JobMetrics::default()
        };
        let f = JobFacts::new(Timestamp::UNIX_EPOCH).with_metrics(&m);
        assert_eq!(f.last_success, Some(Timestamp::from_second(1_750_000_000).unwrap()));
        assert_eq!(f.last_start, Some(Timestamp::from_second(1_749_999_000).unwrap()));
        assert_eq!((f.last_failure, f.status), (None, Some(RunStatus::Completed)));
    }

    #[test]
    fn state_names() {
        let names: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "paused",
                "retired",
                "hung",
                "running",
                "failed",
                "stale",
                "late",
                "push_failing",
                "never_succeeded",
                "ok"
            ]
        );
        assert!(JobState::ALL.windows(2).all(|w| w[0] < w[1]), "Ord follows precedence");
    }

    fn job(name: &str, critical: bool) -> JobSpec {
        JobSpec {
            critical,
            interval: 6 * H,
            max_staleness: 8 * H,
            ..JobSpec::discovered(name, &Global::default())
        }
    }

    fn with(conditions: &[JobState], staleness: SignedDuration) -> Assessment {
        Assessment {
            conditions: conditions.to_vec(),
            staleness,
            running_since: None,
            missed_fire: None,
            next_run: None,
        }
    }

    #[test]
    fn escalation_l1_l2() {
        use JobState::*;
        let (plain, critical) = (job("a", false), job("b", true));
        let level = |spec: &JobSpec, a: Assessment| escalation_levels(&[(spec, &a)])[0];
        assert_eq!(level(&plain, with(&[], H)), None);
        assert_eq!(
            level(&plain, with(&[Late], 7 * H)),
            None,
            "late alone does not escalate"
        );
        assert_eq!(level(&plain, with(&[Stale], 9 * H)), Some(Escalation::L1));
        assert_eq!(
            level(&plain, with(&[Stale], 100 * H)),
            Some(Escalation::L1),
            "non-critical never goes past L1"
        );
        assert_eq!(level(&plain, with(&[Failed], H)), Some(Escalation::L1));
        assert_eq!(
            level(&critical, with(&[Stale], 12 * H)),
            Some(Escalation::L1),
            "exactly 2× interval"
        );
        assert_eq!(level(&critical, with(&[Stale], 12 * H + M)), Some(Escalation::L2));
        assert_eq!(
            level(&critical, with(&[Retired, Stale], 13 * H)),
            Some(Escalation::L2),
            "expiry does not resolve"
        );
        assert_eq!(
            level(&critical, with(&[Paused, Stale], 13 * H)),
            None,
            "paused jobs do not escalate"
        );
        assert_eq!(
            level(&critical, with(&[Failed], 13 * H)),
            Some(Escalation::L1),
            "L2 is about staleness"
        );
    }

    #[test]
    fn escalation_l3() {
        use JobState::*;
        let (a, b, c) = (job("a", true), job("b", true), job("c", false));
        let stale = with(&[Stale], 9 * H);
        let failed = with(&[Failed], H);
        let fine = with(&[], H);
        let paused = with(&[Paused, Failed], H);
        assert_eq!(
            escalation_levels(&[(&a, &stale), (&b, &failed), (&c, &stale)]),
            [Some(Escalation::L3), Some(Escalation::L3), Some(Escalation::L1)]
        );
        assert_eq!(
            escalation_levels(&[(&a, &stale), (&b, &fine)]),
            [Some(Escalation::L1), None]
        );
        assert_eq!(
            escalation_levels(&[(&a, &stale), (&b, &paused)]),
            [Some(Escalation::L1), None]
        );
        assert_eq!(
            escalation_levels(&[(&a, &stale), (&c, &failed)]),
            [Some(Escalation::L1), Some(Escalation::L1)],
            "one critical"
        );
        assert_eq!(escalation_levels(&[]), []);
    }
}
