//! The job registry: every job batchgate knows (declared in the config or discovered from a
//! push), what its pushes say, and its run history; evaluated into [`JobView`]s.
//!
//! Data flows one way: the store sends every committed batch, [`run`] feeds it to the
//! registry, and the registry publishes the evaluated views in a `watch` channel for the alerts,
//! and answers the API, the page and `/metrics` on demand.
//!
//! A job's metrics are the series labelled `job_name="<job>"` (the runbook SDK's, named
//! `<prefix>_…`), or the SDK series without `job_name` of the groups whose `job` label is the job.
//! A group whose `job` label names the job and that carries no SDK series at all still gives the
//! job a freshness: each of its pushes counts as a success, at its `push_time_seconds`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use batchgate_format::MetricFamily;
use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;

use super::config::{Config, ConfigError, JobSpec};
use super::history::History;
use super::runs::{self, FinishedRun, JobMetrics, Outcome, RunEvent, timestamp_from_secs};
use super::state::{self, JobFacts};
use super::view::{JobView, Run};
use crate::store::{FeedError, Group, GroupChange, GroupKey, MetricStore};

/// How many of the last successful runs the derived duration threshold looks at.
const THRESHOLD_RUNS: usize = 20;
/// Fewer successful runs than this give no derived duration threshold.
const THRESHOLD_MIN_RUNS: usize = 5;
const DAY: SignedDuration = SignedDuration::from_hours(24);

/// What one group contributes to jobs.
#[derive(Debug, Clone, Default, PartialEq)]
struct GroupInfo {
    /// SDK metrics by job (`job_name`, else the group's `job` label).
    sdk: BTreeMap<String, JobMetrics>,
    /// The group's `job` label, when the group carries no SDK series (freshness from its pushes).
    plain_job: Option<String>,
    push_time: Option<Timestamp>,
    push_failure: Option<Timestamp>,
}

impl GroupInfo {
    fn new(key: &GroupKey, group: &Group, prefix: &str) -> GroupInfo {
        let families: Vec<MetricFamily> = group
            .families
            .iter()
            .filter(|(name, _)| name.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('_')))
            .map(|(_, f)| f.family.clone())
            .collect();
        let job = key.job();
        let sdk = runs::extract(&families, prefix, (!job.is_empty()).then_some(job));
        let secs = |v: f64| timestamp_from_secs(v).filter(|_| v > 0.0);
        GroupInfo {
            plain_job: (sdk.is_empty() && !job.is_empty()).then(|| job.to_owned()),
            sdk,
            push_time: secs(group.push_time()),
            push_failure: secs(group.push_failure_time()),
        }
    }

    fn jobs(&self) -> impl Iterator<Item = &str> {
        self.sdk.keys().map(String::as_str).chain(self.plain_job.as_deref())
    }
}

/// Everything the registry keeps about one job.
#[derive(Debug, Clone)]
struct Job {
    spec: Arc<JobSpec>,
    known_since: Timestamp,
    /// The job's groups.
    groups: BTreeSet<GroupKey>,
    /// Its metrics merged over its groups.
    metrics: JobMetrics,
    last_push: Option<Timestamp>,
    last_push_failure: Option<Timestamp>,
    /// Finished runs, newest first, at most the retention limit.
    runs: VecDeque<Run>,
    /// Errors counted per push (increase of `errors_total`, at least 1 for a failed run), oldest
    /// first, pruned after 24 hours.
    errors: VecDeque<(Timestamp, u64)>,
}

impl Job {
    fn new(spec: Arc<JobSpec>, known_since: Timestamp, runs: Vec<Run>, now: Timestamp) -> Job {
        // Only failed runs are remembered across a restart; pushed error counts are not.
        let errors = runs
            .iter()
            .rev()
            .filter(|r| r.outcome == Some(Outcome::Failure))
            .filter_map(|r| r.end)
            .filter(|end| now.duration_since(*end) < DAY)
            .map(|end| (end, 1))
            .collect();
        Job {
            spec,
            known_since,
            groups: BTreeSet::new(),
            metrics: JobMetrics::default(),
            last_push: None,
            last_push_failure: None,
            runs: runs.into(),
            errors,
        }
    }

    /// Shown when declared, or while it has groups.
    fn visible(&self) -> bool {
        self.spec.registered || !self.groups.is_empty()
    }

    fn last_run_end(&self, outcome: Outcome) -> Option<Timestamp> {
        self.runs
            .iter()
            .find(|r| r.outcome == Some(outcome))
            .and_then(|r| r.end)
    }

    fn facts(&self) -> JobFacts {
        let mut facts = JobFacts::new(self.known_since).with_metrics(&self.metrics);
        // History outlives the pushed values (a replacing `running` push, a deleted group).
        facts.last_success = facts.last_success.max(self.last_run_end(Outcome::Success));
        facts.last_failure = facts.last_failure.max(self.last_run_end(Outcome::Failure));
        facts.last_outcome = self.runs.front().and_then(|r| r.outcome);
        facts.last_push = self.last_push;
        facts.last_push_failure = self.last_push_failure;
        facts
    }

    fn errors_24h(&self, now: Timestamp) -> u64 {
        self.errors
            .iter()
            .filter(|(t, _)| now.duration_since(*t) < DAY)
            .map(|(_, n)| n)
            .sum()
    }

    fn record_errors(&mut self, at: Timestamp, n: u64) {
        if n > 0 {
            self.errors.push_back((at, n));
        }
        while self.errors.front().is_some_and(|(t, _)| at.duration_since(*t) >= DAY) {
            self.errors.pop_front();
        }
    }

    /// The BatchJobDurationHigh threshold: configured, else 2 × p95 of the last successful runs.
    fn duration_threshold(&self) -> Option<SignedDuration> {
        if let Some(max) = self.spec.max_duration {
            return Some(max);
        }
        let mut durations: Vec<SignedDuration> = self
            .runs
            .iter()
            .filter(|r| r.outcome == Some(Outcome::Success))
            .filter_map(|r| r.duration)
            .take(THRESHOLD_RUNS)
            .collect();
        if durations.len() < THRESHOLD_MIN_RUNS {
            return None;
        }
        durations.sort_unstable();
        // Nearest rank: the smallest value with at least 95 % of the runs at or below it.
        let rank = (durations.len() * 95).div_ceil(100);
        durations.get(rank.saturating_sub(1)).map(|p95| *p95 * 2)
    }
}

/// The increase of a counter between two pushes (a reset counts from zero).
fn counter_increase(prev: Option<f64>, new: Option<f64>) -> u64 {
    let increase = match (prev, new) {
        (_, None) => 0.0,
        (None, Some(n)) => n,
        (Some(p), Some(n)) if n >= p => n - p,
        (Some(_), Some(n)) => n,
    };
    if increase.is_finite() && increase > 0.0 {
        increase.round() as u64
    } else {
        0
    }
}

/// What the registry holds behind its lock.
struct Inner {
    config: Arc<Config>,
    groups: HashMap<GroupKey, GroupInfo>,
    jobs: BTreeMap<String, Job>,
    /// Runs loaded from history for jobs not (yet) known, claimed when they appear.
    stored_runs: BTreeMap<String, Vec<Run>>,
}

impl Inner {
    fn spec_for(&self, name: &str) -> Arc<JobSpec> {
        Arc::new(
            self.config
                .job(name)
                .cloned()
                .unwrap_or_else(|| JobSpec::discovered(name, &self.config.global)),
        )
    }

    fn job_mut(&mut self, name: &str, now: Timestamp) -> &mut Job {
        if !self.jobs.contains_key(name) {
            let spec = self.spec_for(name);
            let runs = self.stored_runs.remove(name).unwrap_or_default();
            self.jobs.insert(name.to_owned(), Job::new(spec, now, runs, now));
        }
        self.jobs.get_mut(name).expect("inserted above")
    }

    /// Recomputes a job's merged metrics and push times from its groups.
    fn merge(&mut self, name: &str) {
        let Some(job) = self.jobs.get_mut(name) else { return };
        let mut merged = JobMetrics::default();
        let mut status_at: Option<Timestamp> = None;
        let mut sdk = false;
        let mut plain_success: Option<Timestamp> = None;
        let (mut last_push, mut last_push_failure) = (None, None);
        for key in &job.groups {
            let Some(info) = self.groups.get(key) else { continue };
            last_push = last_push.max(info.push_time);
            last_push_failure = last_push_failure.max(info.push_failure);
            if let Some(m) = info.sdk.get(name) {
                sdk = true;
                let max = |a: Option<f64>, b: Option<f64>| match (a, b) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                merged.last_success = max(merged.last_success, m.last_success);
                merged.last_failure = max(merged.last_failure, m.last_failure);
                merged.last_start = max(merged.last_start, m.last_start);
                merged.duration = max(merged.duration, m.duration);
                merged.errors_total = max(merged.errors_total, m.errors_total);
                merged.exit_code = max(merged.exit_code, m.exit_code);
                // The status of the most recently pushed group wins.
                if m.status.is_some() && (merged.status.is_none() || info.push_time >= status_at) {
                    merged.status = m.status;
                    status_at = info.push_time;
                }
            } else if info.plain_job.as_deref() == Some(name) {
                plain_success = plain_success.max(info.push_time);
            }
        }
        if !sdk {
            merged.last_success = plain_success.map(|t| t.as_millisecond() as f64 / 1e3);
        }
        job.metrics = merged;
        job.last_push = last_push;
        job.last_push_failure = last_push_failure;
    }

    /// Replaces a group's contribution; returns the jobs it touched (before and after).
    fn set_group(&mut self, key: &GroupKey, info: Option<GroupInfo>, now: Timestamp) -> BTreeSet<String> {
        let old = self.groups.remove(key);
        let mut touched: BTreeSet<String> = BTreeSet::new();
        if let Some(old) = &old {
            for name in old.jobs() {
                if let Some(job) = self.jobs.get_mut(name) {
                    job.groups.remove(key);
                }
                touched.insert(name.to_owned());
            }
        }
        if let Some(info) = info {
            for name in info.jobs() {
                self.job_mut(name, now).groups.insert(key.clone());
                touched.insert(name.to_owned());
            }
            self.groups.insert(key.clone(), info);
        }
        touched
    }

    /// Drops discovered jobs left without groups (their history stays on disk).
    fn forget_orphans(&mut self) {
        let gone: Vec<String> = self
            .jobs
            .iter()
            .filter(|(_, j)| !j.visible())
            .map(|(n, _)| n.clone())
            .collect();
        for name in gone {
            if let Some(job) = self.jobs.remove(&name) {
                self.stored_runs.insert(name, job.runs.into());
            }
        }
    }

    /// Rebuilds every group's contribution from a snapshot, without deriving runs.
    fn resync(&mut self, snapshot: &[(GroupKey, Arc<Group>)], now: Timestamp) {
        let prefix = self.config.global.metric_prefix.clone();
        let infos: HashMap<GroupKey, GroupInfo> = snapshot
            .iter()
            .map(|(k, g)| (k.clone(), GroupInfo::new(k, g, &prefix)))
            .collect();
        let keys: Vec<GroupKey> = self
            .groups
            .keys()
            .filter(|k| !infos.contains_key(*k))
            .cloned()
            .collect();
        let mut touched = BTreeSet::new();
        for key in keys {
            touched.extend(self.set_group(&key, None, now));
        }
        for (key, info) in infos {
            if self.groups.get(&key) != Some(&info) {
                touched.extend(self.set_group(&key, Some(info), now));
            }
        }
        for name in &touched {
            self.merge(name);
        }
        // A job first seen in a snapshot has been known since its first push, not since now.
        for name in &touched {
            let Some(job) = self.jobs.get(name) else { continue };
            let first_push = job.groups.iter().filter_map(|k| self.groups.get(k)?.push_time).min();
            if let Some(first) = first_push
                && let Some(job) = self.jobs.get_mut(name)
            {
                job.known_since = job.known_since.min(first);
            }
        }
        self.forget_orphans();
    }

    /// Applies one committed batch; returns whether it touched a job.
    fn apply(&mut self, changes: &[GroupChange], now: Timestamp, history: &History, retention: usize) -> bool {
        let prefix = self.config.global.metric_prefix.clone();
        let mut touched: BTreeSet<String> = BTreeSet::new();
        let mut push_times: BTreeMap<String, Timestamp> = BTreeMap::new();
        let infos: Vec<(&GroupKey, Option<GroupInfo>)> = changes
            .iter()
            .map(|c| (&c.key, c.after.as_ref().map(|g| GroupInfo::new(&c.key, g, &prefix))))
            .collect();
        // The jobs this batch touches, with their metrics before it (the registry's own view of
        // the groups is the "before": replaying a change it already has derives nothing).
        for (key, info) in &infos {
            let old = self.groups.get(*key);
            for name in old.into_iter().flat_map(GroupInfo::jobs) {
                touched.insert(name.to_owned());
            }
            for name in info.iter().flat_map(GroupInfo::jobs) {
                touched.insert(name.to_owned());
                if let Some(t) = info.as_ref().and_then(|i| i.push_time) {
                    let slot = push_times.entry(name.to_owned()).or_insert(t);
                    *slot = (*slot).max(t);
                }
            }
        }
        let before: BTreeMap<String, JobMetrics> = touched
            .iter()
            .map(|n| (n.clone(), self.jobs.get(n).map(|j| j.metrics).unwrap_or_default()))
            .collect();
        for (key, info) in infos {
            if self.groups.get(key) != info.as_ref() {
                self.set_group(key, info, now);
            }
        }
        for name in &touched {
            self.merge(name);
            let Some(job) = self.jobs.get_mut(name) else { continue };
            let prev = before.get(name).copied().unwrap_or_default();
            let at = push_times.get(name).copied().unwrap_or(now);
            let event = runs::derive(&prev, &job.metrics, at);
            let mut errors = counter_increase(prev.errors_total, job.metrics.errors_total);
            if prev == job.metrics {
                continue;
            }
            if let RunEvent::Finished(run) = event {
                if run.outcome == Outcome::Failure {
                    errors = errors.max(1);
                }
                let run = finished(&run);
                history.record(name, &run);
                job.runs.push_front(run);
                job.runs.truncate(retention);
            }
            job.record_errors(at, errors);
        }
        self.forget_orphans();
        !touched.is_empty()
    }

    /// Switches to a new config, keeping every job's facts and history.
    fn set_config(&mut self, config: Arc<Config>, snapshot: &[(GroupKey, Arc<Group>)], now: Timestamp) {
        let prefix_changed = config.global.metric_prefix != self.config.global.metric_prefix;
        self.config = config;
        let config = self.config.clone();
        for spec in &config.jobs {
            self.job_mut(&spec.name, now);
        }
        let names: Vec<String> = self.jobs.keys().cloned().collect();
        for name in names {
            let spec = self.spec_for(&name);
            if let Some(job) = self.jobs.get_mut(&name) {
                job.spec = spec;
            }
        }
        if prefix_changed {
            self.resync(snapshot, now);
        }
        self.forget_orphans();
    }

    fn views(&self, now: Timestamp) -> Vec<JobView> {
        let jobs: Vec<&Job> = self.jobs.values().filter(|j| j.visible()).collect();
        let facts: Vec<JobFacts> = jobs.iter().map(|j| j.facts()).collect();
        let assessments: Vec<state::Assessment> = jobs
            .iter()
            .zip(&facts)
            .map(|(j, f)| state::assess(&j.spec, f, now))
            .collect();
        let pairs: Vec<(&JobSpec, &state::Assessment)> =
            jobs.iter().map(|j| &*j.spec).zip(assessments.iter()).collect();
        let escalations = state::escalation_levels(&pairs);
        jobs.into_iter()
            .zip(facts)
            .zip(assessments)
            .zip(escalations)
            .map(|(((job, facts), assessment), escalation)| {
                let last = job.runs.front();
                let mut recent_runs: Vec<Run> = Vec::with_capacity(job.runs.len() + 1);
                if let Some(start) = assessment.running_since {
                    recent_runs.push(Run {
                        start: Some(start),
                        end: None,
                        outcome: None,
                        duration: None,
                        exit_code: None,
                    });
                }
                recent_runs.extend(job.runs.iter().cloned());
                let pushed_exit = job
                    .metrics
                    .exit_code
                    .filter(|c| c.is_finite() && c.fract() == 0.0)
                    .map(|c| c as i64);
                JobView {
                    spec: job.spec.clone(),
                    state: assessment.state(),
                    facts,
                    escalation,
                    last_duration: last.and_then(|r| r.duration),
                    duration_threshold: job.duration_threshold(),
                    errors_24h: job.errors_24h(now),
                    last_exit_code: last.and_then(|r| r.exit_code).or(pushed_exit),
                    recent_runs,
                    assessment,
                    at: now,
                }
            })
            .collect()
    }
}

fn finished(run: &FinishedRun) -> Run {
    Run {
        start: run.start,
        end: Some(run.end),
        outcome: Some(run.outcome),
        duration: run.duration,
        exit_code: run.exit_code,
    }
}

/// Why a reload was refused (the old config stays in force).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("batchgate was started without --config: there is no config file to reload")]
    NoConfigFile,
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Every job, shared by the HTTP handlers, the evaluation loop and the alerts.
pub struct JobRegistry {
    inner: Mutex<Inner>,
    history: History,
    retention: usize,
    config_path: Option<PathBuf>,
    views: watch::Sender<Arc<Vec<JobView>>>,
    /// The config in force, for those that follow reloads (alert delivery).
    configs: watch::Sender<Arc<Config>>,
}

impl JobRegistry {
    /// A registry under `config` (read from `config_path`, if any), with the runs loaded from
    /// history, its facts taken from the store's current groups.
    pub fn new(
        config: Config,
        config_path: Option<PathBuf>,
        history: History,
        stored_runs: BTreeMap<String, Vec<Run>>,
        retention: usize,
        snapshot: &[(GroupKey, Arc<Group>)],
        now: Timestamp,
    ) -> JobRegistry {
        let retention = retention.max(1);
        let mut inner = Inner {
            config: Arc::new(Config::default()),
            groups: HashMap::new(),
            jobs: BTreeMap::new(),
            stored_runs,
        };
        inner.set_config(Arc::new(config), &[], now);
        inner.resync(snapshot, now);
        let (views, _) = watch::channel(Arc::new(inner.views(now)));
        let (configs, _) = watch::channel(inner.config.clone());
        JobRegistry {
            configs,
            inner: Mutex::new(inner),
            history,
            retention,
            config_path,
            views,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        self.lock().config.clone()
    }

    /// Every job evaluated at `now`, in name order.
    pub fn views(&self, now: Timestamp) -> Vec<JobView> {
        self.lock().views(now)
    }

    /// One job evaluated at `now`.
    pub fn view(&self, name: &str, now: Timestamp) -> Option<JobView> {
        self.views(now).into_iter().find(|v| v.spec.name == name)
    }

    /// The views of the latest evaluation, updated every `evaluation_interval`, after every
    /// batch of pushes that touched a job and after a reload.
    pub fn watch(&self) -> watch::Receiver<Arc<Vec<JobView>>> {
        self.views.subscribe()
    }

    /// The config in force now and after every reload.
    pub fn watch_config(&self) -> watch::Receiver<Arc<Config>> {
        self.configs.subscribe()
    }

    /// Evaluates every job and publishes the result to [`JobRegistry::watch`]ers.
    pub fn publish(&self, now: Timestamp) {
        let views = Arc::new(self.views(now));
        self.views.send_replace(views);
    }

    /// Applies a committed batch; returns whether it touched a job.
    pub fn apply(&self, changes: &[GroupChange], now: Timestamp) -> bool {
        self.lock().apply(changes, now, &self.history, self.retention)
    }

    /// Rebuilds the facts from the store's groups (at start and after missing batches).
    pub fn resync(&self, snapshot: &[(GroupKey, Arc<Group>)], now: Timestamp) {
        self.lock().resync(snapshot, now);
    }

    /// Replaces the config; facts and history are kept.
    pub fn set_config(&self, config: Config, snapshot: &[(GroupKey, Arc<Group>)], now: Timestamp) {
        let config = Arc::new(config);
        self.lock().set_config(config.clone(), snapshot, now);
        self.configs.send_replace(config);
        self.publish(now);
    }

    /// Re-reads the config file (blocking I/O: call off the async workers). On error the old
    /// config stays in force.
    pub fn reload(&self, snapshot: &[(GroupKey, Arc<Group>)]) -> Result<Arc<Config>, ReloadError> {
        let path = self.config_path.as_deref().ok_or(ReloadError::NoConfigFile)?;
        let config = Config::load(path)?;
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        self.set_config(config, snapshot, Timestamp::now());
        Ok(self.config())
    }

    /// Blocks until every finished run so far is written to history.
    pub fn flush_history(&self) {
        self.history.flush();
    }
}

/// Follows the store: applies every committed batch, re-evaluates after each one that touched a
/// job and every `evaluation_interval`, resynchronising from a snapshot after missed batches.
pub async fn run(registry: Arc<JobRegistry>, store: MetricStore) {
    let mut changes = store.subscribe();
    registry.resync(&store.snapshot(), Timestamp::now());
    let evaluate = |registry: &JobRegistry| {
        registry.publish(Timestamp::now());
        let interval = registry.config().global.evaluation_interval;
        let interval = std::time::Duration::try_from(interval).unwrap_or(std::time::Duration::from_secs(30));
        tokio::time::Instant::now() + interval
    };
    let mut next = evaluate(&registry);
    loop {
        tokio::select! {
            received = changes.recv() => match received {
                Ok(batch) => {
                    if registry.apply(&batch, Timestamp::now()) {
                        next = evaluate(&registry);
                    }
                }
                Err(FeedError::Lagged) => {
                    tracing::warn!("job registry fell behind the store; resynchronising");
                    registry.resync(&store.snapshot(), Timestamp::now());
                    next = evaluate(&registry);
                }
                Err(FeedError::Closed) => break,
            },
            () = tokio::time::sleep_until(next) => next = evaluate(&registry),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::state::{Escalation, JobState};
    use crate::store::{Labels, PUSH_FAILURE_TIME, PUSH_TIME, StoredFamily, timestamp_gauge};

    const H: SignedDuration = SignedDuration::from_hours(1);

    fn now() -> Timestamp {
        "2025-06-01T12:30:00Z".parse().unwrap()
    }

    fn secs(t: Timestamp) -> f64 {
        t.as_millisecond() as f64 / 1e3
    }

    fn config(yaml: &str) -> Config {
        Config::parse(yaml, "t.yml", now()).unwrap()
    }

    const EXAMPLE: &str = include_str!("../../../../examples/batchgate.yml");

    /// A group under `labels` holding `body` (text format), pushed at `at`.
    fn group(labels: &[(&str, &str)], body: &str, at: Timestamp) -> (GroupKey, Arc<Group>) {
        let labels: Labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let ns = at.as_nanosecond() as i64;
        let mut families: BTreeMap<String, StoredFamily> = batchgate_format::text::parse(body.as_bytes())
            .unwrap()
            .into_iter()
            .map(|f| {
                let stored = StoredFamily { time_ns: ns, family: f };
                (stored.family.name.clone().unwrap(), stored)
            })
            .collect();
        families.insert(
            PUSH_TIME.into(),
            StoredFamily {
                time_ns: ns,
                family: timestamp_gauge(PUSH_TIME, &labels, ns),
            },
        );
        families.insert(
            PUSH_FAILURE_TIME.into(),
            StoredFamily {
                time_ns: ns,
                family: timestamp_gauge(PUSH_FAILURE_TIME, &labels, 0),
            },
        );
        (GroupKey::new(&labels), Arc::new(Group { labels, families }))
    }

    fn change((key, after): (GroupKey, Arc<Group>)) -> Vec<GroupChange> {
        vec![GroupChange {
            key,
            before: None,
            after: Some(after),
        }]
    }

    fn registry(config: Config) -> JobRegistry {
        JobRegistry::new(
            config,
            None,
            History::in_memory(),
            BTreeMap::new(),
            100,
            &[],
            now() - 1000 * H,
        )
    }

    /// The runbook SDK's metrics for `job` as one push.
    fn sdk(job: &str, success: Timestamp, extra: &str) -> String {
        format!(
            "# TYPE gl_batch_job_last_success_timestamp gauge\n\
             gl_batch_job_last_success_timestamp{{job_name=\"{job}\"}} {}\n{extra}",
            secs(success)
        )
    }

    fn view(r: &JobRegistry, name: &str) -> JobView {
        r.view(name, now()).unwrap_or_else(|| panic!("no job {name}"))
    }

    #[test]
    fn facts_come_from_the_jobs_pushes() {
        let r = registry(config(EXAMPLE));
        let names: Vec<String> = r.views(now()).iter().map(|v| v.spec.name.clone()).collect();
        assert_eq!(names, ["data-sync", "ef-update"]);
        assert_eq!(
            view(&r, "ef-update").state,
            JobState::Stale,
            "known for 1000 h, never succeeded"
        );

        let pushed = now() - 10 * SignedDuration::from_mins(1);
        let g = group(&[("job", "ef-update")], &sdk("ef-update", now() - 9 * H, ""), pushed);
        assert!(r.apply(&change(g), now()));
        let v = view(&r, "ef-update");
        assert!(v.spec.registered);
        assert_eq!(v.facts.last_success, Some(now() - 9 * H));
        assert_eq!(v.facts.last_push, Some(pushed));
        assert_eq!(v.state, JobState::Stale);
        assert_eq!(v.assessment.staleness, 9 * H);
        assert_eq!(v.escalation, Some(Escalation::L1));
        // The first sight of a last success is a run (it moved from nothing).
        assert_eq!(v.recent_runs.len(), 1);

        // A rejected push to the same group: push_failure_time_seconds after push_time_seconds.
        let (key, g) = group(&[("job", "ef-update")], &sdk("ef-update", now() - H, ""), pushed);
        let mut failed = (*g).clone();
        failed.families.insert(
            PUSH_FAILURE_TIME.into(),
            StoredFamily {
                time_ns: 0,
                family: timestamp_gauge(PUSH_FAILURE_TIME, &g.labels, now().as_nanosecond() as i64),
            },
        );
        r.apply(&change((key, Arc::new(failed))), now());
        let v = view(&r, "ef-update");
        assert_eq!(v.facts.last_push_failure, Some(now()));
        assert_eq!(v.state, JobState::PushFailing);
    }

    #[test]
    fn jobs_are_discovered_from_pushes() {
        let r = registry(Config::default());
        // SDK series name their job; the group's `job` label does not become a job.
        let g = group(
            &[("job", "batch"), ("instance", "a")],
            &sdk("nightly-report", now() - H / 2, ""),
            now(),
        );
        r.apply(&change(g), now());
        // SDK series without job_name belong to the group's job.
        let g = group(
            &[("job", "etl")],
            &format!("gl_batch_job_last_success_timestamp {}\n", secs(now() - H)),
            now(),
        );
        r.apply(&change(g), now());
        // A group without any SDK series: every push is a success.
        let plain = now() - 2 * H;
        let g = group(&[("job", "backup")], "files_copied 12\n", plain);
        r.apply(&change(g.clone()), now());
        let names: Vec<String> = r.views(now()).iter().map(|v| v.spec.name.clone()).collect();
        assert_eq!(names, ["backup", "etl", "nightly-report"]);
        let backup = view(&r, "backup");
        assert!(!backup.spec.registered);
        assert_eq!(backup.facts.last_success, Some(plain));
        assert_eq!(backup.state, JobState::Stale, "default max staleness is 1 h");
        assert_eq!(view(&r, "nightly-report").state, JobState::Ok);

        // Deleting its only group forgets a discovered job.
        r.apply(
            &[GroupChange {
                key: g.0,
                before: Some(g.1),
                after: None,
            }],
            now(),
        );
        assert!(r.view("backup", now()).is_none());
    }

    #[test]
    fn runs_are_derived_across_a_sequence_of_pushes() {
        let r = registry(config(EXAMPLE));
        let labels = [("job", "ef-update")];
        let last = now() - 6 * H;
        let start = now() - 5 * SignedDuration::from_mins(1);
        r.apply(&change(group(&labels, &sdk("ef-update", last, ""), last)), now());
        let before = view(&r, "ef-update").recent_runs.len();

        let running = format!(
            "gl_batch_job_status{{job_name=\"ef-update\",status=\"running\"}} 1\n\
             gl_batch_job_last_start_timestamp{{job_name=\"ef-update\"}} {}\n",
            secs(start)
        );
        r.apply(&change(group(&labels, &sdk("ef-update", last, &running), start)), now());
        let v = view(&r, "ef-update");
        assert_eq!(v.state, JobState::Running);
        assert_eq!(v.assessment.running_since, Some(start));
        assert_eq!(v.recent_runs[0].outcome, None, "the running run is listed first");
        assert_eq!(v.recent_runs.len(), before + 1);

        let end = now() - SignedDuration::from_mins(1);
        let done = format!(
            "gl_batch_job_status{{job_name=\"ef-update\",status=\"completed\"}} 1\n\
             gl_batch_job_last_start_timestamp{{job_name=\"ef-update\"}} {}\n\
             gl_batch_job_duration_seconds{{job_name=\"ef-update\"}} 240\n\
             gl_batch_job_exit_code{{job_name=\"ef-update\"}} 0\n",
            secs(start)
        );
        let success = change(group(&labels, &sdk("ef-update", end, &done), end));
        r.apply(&success, now());
        let v = view(&r, "ef-update");
        assert_eq!(v.state, JobState::Ok);
        assert_eq!(v.recent_runs.len(), before + 1);
        let run = &v.recent_runs[0];
        assert_eq!(
            (run.outcome, run.start, run.end, run.duration, run.exit_code),
            (
                Some(Outcome::Success),
                Some(start),
                Some(end),
                Some(SignedDuration::from_secs(240)),
                Some(0)
            )
        );
        assert_eq!(
            (v.last_duration, v.last_exit_code),
            (Some(SignedDuration::from_secs(240)), Some(0))
        );
        // Replaying a batch the registry already has derives nothing.
        r.apply(&success, now());
        assert_eq!(view(&r, "ef-update").recent_runs.len(), before + 1);

        let failed = format!(
            "gl_batch_job_status{{job_name=\"ef-update\",status=\"failed\"}} 1\n\
             gl_batch_job_last_failure_timestamp{{job_name=\"ef-update\"}} {}\n\
             gl_batch_job_errors_total{{job_name=\"ef-update\"}} 3\n\
             gl_batch_job_exit_code{{job_name=\"ef-update\"}} 2\n",
            secs(now())
        );
        r.apply(&change(group(&labels, &sdk("ef-update", end, &failed), now())), now());
        let v = view(&r, "ef-update");
        assert_eq!(v.state, JobState::Failed);
        assert_eq!(v.recent_runs[0].outcome, Some(Outcome::Failure));
        assert_eq!(v.last_exit_code, Some(2));
        assert_eq!(v.errors_24h, 3);
        assert_eq!(v.escalation, Some(Escalation::L1));
        assert_eq!(r.views(now() + 25 * H)[1].errors_24h, 0, "errors age out after 24 h");
    }

    #[test]
    fn history_is_kept_within_retention_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("batchgate.db");
        rusqlite::Connection::open(&db).unwrap();
        let (history, stored) = History::open(&db, 3).unwrap();
        let r = JobRegistry::new(config(EXAMPLE), None, history, stored, 3, &[], now() - 100 * H);
        for i in 0..5 {
            let t = now() - SignedDuration::from_hours(10 - i);
            r.apply(
                &change(group(&[("job", "ef-update")], &sdk("ef-update", t, ""), t)),
                now(),
            );
        }
        let ends = |r: &JobRegistry| -> Vec<Option<Timestamp>> {
            view(r, "ef-update").recent_runs.iter().map(|run| run.end).collect()
        };
        let want = vec![Some(now() - 6 * H), Some(now() - 7 * H), Some(now() - 8 * H)];
        assert_eq!(ends(&r), want);
        r.flush_history();
        drop(r);

        let (history, stored) = History::open(&db, 3).unwrap();
        let r = JobRegistry::new(config(EXAMPLE), None, history, stored, 3, &[], now());
        assert_eq!(ends(&r), want);
        let v = view(&r, "ef-update");
        assert_eq!(
            v.facts.last_success,
            Some(now() - 6 * H),
            "history gives the last success"
        );
        assert_eq!(v.facts.last_outcome, Some(Outcome::Success));
    }

    #[test]
    fn duration_threshold() {
        let r = registry(config(EXAMPLE));
        let labels = [("job", "ef-update")];
        let push = |i: i64, duration: i64| {
            let t = now() - SignedDuration::from_hours(30 - i);
            let body = sdk(
                "ef-update",
                t,
                &format!("gl_batch_job_duration_seconds{{job_name=\"ef-update\"}} {duration}\n"),
            );
            r.apply(&change(group(&labels, &body, t)), now());
        };
        for (i, d) in [100, 110, 120, 130].into_iter().enumerate() {
            push(i as i64, d);
        }
        assert_eq!(view(&r, "ef-update").duration_threshold, None, "fewer than 5 runs");
        push(4, 500);
        assert_eq!(
            view(&r, "ef-update").duration_threshold,
            Some(SignedDuration::from_secs(1000)),
            "p95 of 5 runs is the largest"
        );
        for i in 5..30 {
            push(i, 100 + i);
        }
        // The last 20 runs: 110..=129 s; p95 (nearest rank 19 of 20) is 128 s.
        assert_eq!(
            view(&r, "ef-update").duration_threshold,
            Some(SignedDuration::from_secs(256))
        );

        let configured = registry(config("jobs:\n  - name: x\n    max_duration: 10m\n"));
        assert_eq!(
            view(&configured, "x").duration_threshold,
            Some(SignedDuration::from_mins(20) / 2)
        );
    }

    #[test]
    fn a_new_config_keeps_facts_and_history() {
        let r = registry(config(EXAMPLE));
        let t = now() - H;
        r.apply(
            &change(group(&[("job", "ef-update")], &sdk("ef-update", t, ""), t)),
            now(),
        );
        r.apply(&change(group(&[("job", "adhoc")], "x 1\n", t)), now());
        assert!(!view(&r, "adhoc").spec.registered);

        r.set_config(config("jobs:\n  - name: adhoc\n    max_staleness: 30m\n"), &[], now());
        let names: Vec<String> = r.views(now()).iter().map(|v| v.spec.name.clone()).collect();
        assert_eq!(names, ["adhoc", "ef-update"], "data-sync had no groups: gone");
        let adhoc = view(&r, "adhoc");
        assert!(adhoc.spec.registered);
        assert_eq!((adhoc.facts.last_success, adhoc.state), (Some(t), JobState::Stale));
        let ef = view(&r, "ef-update");
        assert!(!ef.spec.registered, "still pushing, no longer declared");
        assert_eq!((ef.facts.last_success, ef.recent_runs.len()), (Some(t), 1));
        assert_eq!(*r.watch().borrow().first().map(|v| &v.spec.name).unwrap(), "adhoc");
    }

    #[test]
    fn a_resync_rebuilds_facts_without_runs() {
        let r = registry(config(EXAMPLE));
        let t = now() - H;
        let g = group(&[("job", "ef-update")], &sdk("ef-update", t, ""), t);
        r.resync(std::slice::from_ref(&g), now());
        let v = view(&r, "ef-update");
        assert_eq!((v.facts.last_success, v.recent_runs.len()), (Some(t), 0));
        // The batch that the snapshot already showed derives nothing either.
        r.apply(&change(g), now());
        assert_eq!(view(&r, "ef-update").recent_runs.len(), 0);
        r.resync(&[], now());
        assert_eq!(view(&r, "ef-update").facts.last_success, None);
    }
}
