//! The config file: which jobs must exist, their schedules and thresholds, and where alerts go.
//!
//! YAML, read with serde-saphyr. Unknown keys, duplicate keys and duplicate job names are refused
//! rather than ignored: a misspelt `max_stalenes` silently falling back to a default is exactly the
//! kind of gap this tool exists to close. Every error names the file, the line and the job.
//!
//! ```yaml
//! global:
//!   metric_prefix: gl_batch_job   # the runbook SDK's
//!   grace: 1h
//! jobs:
//!   - name: ef-update
//!     schedule: "0 */6 * * *"
//!     max_staleness: 8h
//!     critical: true
//!     kubernetes: {namespace: greenlang, cronjob: ef-update-job}
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};
use std::path::Path;

use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::duration::{format_duration, parse_duration};
use super::schedule::Schedule;

/// Metric name prefix of the runbook's SDK (`gl_batch_job_last_success_timestamp`, …).
pub const DEFAULT_METRIC_PREFIX: &str = "gl_batch_job";
const HOUR: SignedDuration = SignedDuration::from_hours(1);

/// Labels batchgate sets itself on every alert; a job's `labels` may not override them.
const RESERVED_LABELS: [&str; 5] = ["alertname", "severity", "job_name", "team", "escalation"];

/// Settings shared by all jobs, and the defaults of the per-job ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Global {
    /// Prefix of the SDK metrics (`<prefix>_last_success_timestamp`, …).
    pub metric_prefix: String,
    /// Max staleness of a job without a schedule or its own `max_staleness` (the runbook's 1 h).
    pub max_staleness: SignedDuration,
    /// How long a condition must hold before its alert fires.
    pub for_duration: SignedDuration,
    /// How long after a scheduled fire a success may still arrive.
    pub grace: SignedDuration,
    /// How often job states are re-evaluated.
    pub evaluation_interval: SignedDuration,
    /// Alertmanager base URLs; alerts go to every one of them.
    pub alertmanagers: Vec<String>,
    /// Plain webhook URLs receiving the Alertmanager webhook payload.
    pub webhooks: Vec<String>,
}

impl Default for Global {
    fn default() -> Self {
        Global {
            metric_prefix: DEFAULT_METRIC_PREFIX.to_owned(),
            max_staleness: HOUR,
            for_duration: SignedDuration::from_mins(15),
            grace: HOUR,
            evaluation_interval: SignedDuration::from_secs(30),
            alertmanagers: Vec::new(),
            webhooks: Vec::new(),
        }
    }
}

/// The Kubernetes CronJob that runs a job.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesRef {
    pub namespace: String,
    pub cronjob: String,
}

/// Where a job's `max_staleness` came from (shown by `check-config` and on the page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StalenessSource {
    Configured,
    /// Longest gap between two fires of the schedule, plus `grace`.
    Schedule,
    /// `global.max_staleness`, for a job without a schedule.
    Default,
}

/// One job, with every default resolved. See SPEC §3.1 for the meaning of each setting.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    pub name: String,
    /// Declared in the config file (false: discovered from a push, shown as "unregistered").
    pub registered: bool,
    pub schedule: Option<Schedule>,
    pub max_staleness: SignedDuration,
    pub max_staleness_source: StalenessSource,
    pub grace: SignedDuration,
    pub for_duration: SignedDuration,
    pub max_runtime: Option<SignedDuration>,
    pub min_runtime: Option<SignedDuration>,
    pub max_duration: Option<SignedDuration>,
    pub max_errors_24h: u64,
    pub critical: bool,
    pub team: Option<String>,
    pub runbook_url: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub kubernetes: Option<KubernetesRef>,
    pub retire_after: Option<SignedDuration>,
    /// Typical gap between fires (the "schedule interval" of escalation L2); `max_staleness` for a
    /// job without a schedule.
    pub interval: SignedDuration,
}

impl JobSpec {
    /// A job discovered from its first push: no schedule, every setting at its default.
    pub fn discovered(name: &str, global: &Global) -> JobSpec {
        JobSpec {
            name: name.to_owned(),
            registered: false,
            schedule: None,
            max_staleness: global.max_staleness,
            max_staleness_source: StalenessSource::Default,
            grace: global.grace,
            for_duration: global.for_duration,
            max_runtime: None,
            min_runtime: None,
            max_duration: None,
            max_errors_24h: 0,
            critical: false,
            team: None,
            runbook_url: None,
            labels: BTreeMap::new(),
            kubernetes: None,
            retire_after: None,
            interval: global.max_staleness,
        }
    }
}

/// A loaded and validated config file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    pub global: Global,
    pub jobs: Vec<JobSpec>,
    /// Valid but probably unintended settings, as `file:line: message`.
    pub warnings: Vec<String>,
}

/// One thing wrong in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line, 0 when unknown.
    pub line: u64,
    pub message: String,
}

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // The I/O error is part of the message, not a `source`: the edges print `{:#}`, which would
    // repeat it.
    #[error("cannot read the config file {file}: {error}")]
    Read { file: String, error: std::io::Error },
    #[error("{}", Located { file, problems })]
    Invalid { file: String, problems: Vec<Problem> },
}

/// Renders problems one per line as `file:line: message` (the format editors jump to).
struct Located<'a> {
    file: &'a str,
    problems: &'a [Problem],
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            let sep = if i == 0 { "" } else { "\n" };
            match p.line {
                0 => write!(f, "{sep}{}: {}", self.file, p.message)?,
                line => write!(f, "{sep}{}:{line}: {}", self.file, p.message)?,
            }
        }
        Ok(())
    }
}

// The file as written. Values that need checking are `Spanned` so errors can name their line.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default, deserialize_with = "null_as_default")]
    global: RawGlobal,
    #[serde(default, deserialize_with = "null_as_default")]
    jobs: Vec<RawJob>,
}

type Text = Spanned<String>;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGlobal {
    metric_prefix: Option<Text>,
    max_staleness: Option<Text>,
    #[serde(rename = "for")]
    for_duration: Option<Text>,
    grace: Option<Text>,
    evaluation_interval: Option<Text>,
    #[serde(default, deserialize_with = "null_as_default")]
    alertmanagers: Vec<Text>,
    #[serde(default, deserialize_with = "null_as_default")]
    webhooks: Vec<Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    name: Text,
    schedule: Option<Text>,
    timezone: Option<Text>,
    max_staleness: Option<Text>,
    grace: Option<Text>,
    #[serde(rename = "for")]
    for_duration: Option<Text>,
    max_runtime: Option<Text>,
    min_runtime: Option<Text>,
    max_duration: Option<Text>,
    max_errors_24h: Option<u64>,
    #[serde(default)]
    critical: bool,
    team: Option<String>,
    runbook_url: Option<Text>,
    #[serde(default, deserialize_with = "null_as_default")]
    labels: BTreeMap<String, String>,
    kubernetes: Option<KubernetesRef>,
    retire_after: Option<Text>,
}

/// Reads an empty value (`jobs:` with nothing after it) as the default, as YAML readers expect.
fn null_as_default<'de, D: serde::Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Collects problems while resolving the raw file, so one run reports all of them.
struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn report(&mut self, line: u64, message: impl Into<String>) {
        self.problems.push(Problem {
            line,
            message: message.into(),
        });
    }

    /// Parses an optional duration; `positive` refuses zero (for settings where zero means nothing).
    fn duration(&mut self, ctx: &str, key: &str, raw: Option<&Text>, positive: bool) -> Option<SignedDuration> {
        let raw = raw?;
        let line = raw.referenced.line();
        match parse_duration(&raw.value) {
            Ok(d) if positive && d.is_zero() => self.report(line, format!("{ctx}{key} must be greater than 0")),
            Ok(d) => return Some(d),
            Err(e) => self.report(line, format!("{ctx}invalid {key} {:?}: {e}", raw.value)),
        }
        None
    }

    fn url(&mut self, ctx: &str, key: &str, raw: &Text) -> String {
        let ok = ["http://", "https://"]
            .iter()
            .any(|scheme| raw.value.strip_prefix(scheme).is_some_and(|rest| !rest.is_empty()));
        if !ok {
            self.report(
                raw.referenced.line(),
                format!("{ctx}invalid {key} {:?}: not an http(s) URL", raw.value),
            );
        }
        raw.value.clone()
    }
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with("__")
}

impl Config {
    /// Reads and validates a config file; derived thresholds are measured from now.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let source = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            file: file.clone(),
            error,
        })?;
        Config::parse(&source, &file, Timestamp::now())
    }

    /// Validates config text. `file` only names the source in errors; `now` is where the schedule
    /// cadence (and so a derived `max_staleness`) is measured from.
    pub fn parse(source: &str, file: &str, now: Timestamp) -> Result<Config, ConfigError> {
        let invalid = |problems| ConfigError::Invalid {
            file: file.to_owned(),
            problems,
        };
        let raw: RawConfig = if source.trim().is_empty() {
            RawConfig::default()
        } else {
            serde_saphyr::from_str::<Option<RawConfig>>(source)
                .map_err(|e| invalid(vec![yaml_problem(&e)]))?
                .unwrap_or_default()
        };
        let mut checker = Checker { problems: Vec::new() };
        let global = resolve_global(&mut checker, &raw.global);
        let mut warnings = Vec::new();
        let mut seen: HashMap<&str, u64> = HashMap::new();
        let mut jobs = Vec::with_capacity(raw.jobs.len());
        for raw_job in &raw.jobs {
            let line = raw_job.name.referenced.line();
            if let Some(first) = seen.insert(&raw_job.name.value, line) {
                checker.report(
                    line,
                    format!(
                        "duplicate job name {:?} (first declared on line {first})",
                        raw_job.name.value
                    ),
                );
                continue;
            }
            if let Some((job, warning)) = resolve_job(&mut checker, &global, raw_job, now) {
                warnings.extend(warning.map(|w| format!("{file}:{line}: {w}")));
                jobs.push(job);
            }
        }
        if checker.problems.is_empty() {
            Ok(Config { global, jobs, warnings })
        } else {
            Err(invalid(checker.problems))
        }
    }

    /// The declared job of that name.
    pub fn job(&self, name: &str) -> Option<&JobSpec> {
        self.jobs.iter().find(|j| j.name == name)
    }
}

/// serde-saphyr's message without its own location suffix, at its line.
fn yaml_problem(e: &serde_saphyr::Error) -> Problem {
    let line = e.location().map_or(0, |l| l.line());
    let message = e.render_with_options(serde_saphyr::render_options! { snippets: serde_saphyr::SnippetMode::Off });
    let message = match message.rfind(" at line ") {
        Some(i) if line > 0 => &message[..i],
        _ => &message,
    };
    // A hint meant for programmers embedding the parser, not for operators.
    let message = message
        .trim_end_matches(", set DuplicateKeyPolicy in Options if acceptable")
        .to_owned();
    Problem { line, message }
}

fn resolve_global(checker: &mut Checker, raw: &RawGlobal) -> Global {
    let defaults = Global::default();
    let ctx = "global: ";
    let metric_prefix = match &raw.metric_prefix {
        Some(p) if !is_metric_name(&p.value) => {
            checker.report(
                p.referenced.line(),
                format!("{ctx}invalid metric_prefix {:?}: not a metric name", p.value),
            );
            p.value.clone()
        }
        Some(p) => p.value.clone(),
        None => defaults.metric_prefix,
    };
    Global {
        metric_prefix,
        max_staleness: checker
            .duration(ctx, "max_staleness", raw.max_staleness.as_ref(), true)
            .unwrap_or(defaults.max_staleness),
        for_duration: checker
            .duration(ctx, "for", raw.for_duration.as_ref(), false)
            .unwrap_or(defaults.for_duration),
        grace: checker
            .duration(ctx, "grace", raw.grace.as_ref(), false)
            .unwrap_or(defaults.grace),
        evaluation_interval: checker
            .duration(ctx, "evaluation_interval", raw.evaluation_interval.as_ref(), true)
            .unwrap_or(defaults.evaluation_interval),
        alertmanagers: raw
            .alertmanagers
            .iter()
            .map(|u| checker.url(ctx, "alertmanagers URL", u))
            .collect(),
        webhooks: raw
            .webhooks
            .iter()
            .map(|u| checker.url(ctx, "webhooks URL", u))
            .collect(),
    }
}

/// Resolves one job's defaults; `None` (with problems reported) when it is invalid. The second
/// value is a warning for a valid but self-defeating setting.
fn resolve_job(
    checker: &mut Checker,
    global: &Global,
    raw: &RawJob,
    now: Timestamp,
) -> Option<(JobSpec, Option<String>)> {
    let before = checker.problems.len();
    let name = &raw.name.value;
    let line = raw.name.referenced.line();
    if name.trim().is_empty() {
        checker.report(line, "job name must not be empty");
        return None;
    }
    let ctx = format!("job {name:?}: ");
    let zone = raw.timezone.as_ref().map_or("UTC", |z| z.value.as_str());
    let zone_known = match &raw.timezone {
        Some(tz) => jiff::tz::TimeZone::get(&tz.value)
            .map_err(|e| {
                checker.report(
                    tz.referenced.line(),
                    format!("{ctx}unknown time zone {:?}: {e}", tz.value),
                )
            })
            .is_ok(),
        None => true,
    };
    let schedule = raw.schedule.as_ref().filter(|_| zone_known).and_then(|s| {
        Schedule::new(&s.value, zone)
            .map_err(|e| checker.report(s.referenced.line(), format!("{ctx}{e}")))
            .ok()
    });
    let grace = checker
        .duration(&ctx, "grace", raw.grace.as_ref(), false)
        .unwrap_or(global.grace);
    let configured = checker.duration(&ctx, "max_staleness", raw.max_staleness.as_ref(), true);
    let for_duration = checker
        .duration(&ctx, "for", raw.for_duration.as_ref(), false)
        .unwrap_or(global.for_duration);
    let max_runtime = checker.duration(&ctx, "max_runtime", raw.max_runtime.as_ref(), true);
    let min_runtime = checker.duration(&ctx, "min_runtime", raw.min_runtime.as_ref(), true);
    let max_duration = checker.duration(&ctx, "max_duration", raw.max_duration.as_ref(), true);
    let retire_after = checker.duration(&ctx, "retire_after", raw.retire_after.as_ref(), true);
    if let (Some(min), Some(max)) = (min_runtime, max_runtime)
        && min >= max
    {
        let (min, max) = (format_duration(min), format_duration(max));
        checker.report(line, format!("{ctx}min_runtime {min} is not below max_runtime {max}"));
    }
    let runbook_url = raw.runbook_url.as_ref().map(|u| checker.url(&ctx, "runbook_url", u));
    for key in raw.labels.keys() {
        if !is_label_name(key) {
            checker.report(line, format!("{ctx}invalid label name {key:?}"));
        } else if RESERVED_LABELS.contains(&key.as_str()) {
            checker.report(
                line,
                format!("{ctx}label {key:?} is set by batchgate and cannot be overridden"),
            );
        }
    }
    if let Some(k) = &raw.kubernetes
        && (k.namespace.is_empty() || k.cronjob.is_empty())
    {
        checker.report(line, format!("{ctx}kubernetes needs both namespace and cronjob"));
    }
    if checker.problems.len() > before {
        return None;
    }

    let cadence = schedule.as_ref().and_then(|s| s.cadence(now));
    let (max_staleness, source) = match (configured, cadence) {
        (Some(d), _) => (d, StalenessSource::Configured),
        (None, Some(c)) => (c.longest_gap + grace, StalenessSource::Schedule),
        (None, None) => (global.max_staleness, StalenessSource::Default),
    };
    let warning = match cadence {
        Some(c) if max_staleness < c.longest_gap => Some(format!(
            "job {name:?}: max_staleness {} is shorter than the longest gap between two runs of its schedule ({}): \
             it will be stale between runs",
            format_duration(max_staleness),
            format_duration(c.longest_gap)
        )),
        _ => None,
    };
    let job = JobSpec {
        name: name.clone(),
        registered: true,
        interval: cadence.map_or(max_staleness, |c| c.interval),
        schedule,
        max_staleness,
        max_staleness_source: source,
        grace,
        for_duration,
        max_runtime,
        min_runtime,
        max_duration,
        max_errors_24h: raw.max_errors_24h.unwrap_or(0),
        critical: raw.critical,
        team: raw.team.clone(),
        runbook_url,
        labels: raw.labels.clone(),
        kubernetes: raw.kubernetes.clone(),
        retire_after,
    };
    Some((job, warning))
}

/// `batchgate check-config FILE`: validates the file and describes what batchgate will expect.
pub fn check_config(path: &Path) -> anyhow::Result<String> {
    let config = Config::load(path)?;
    let now = Timestamp::now();
    Ok(summary(&config, &path.display().to_string(), now))
}

/// The human summary printed by `check-config`.
pub fn summary(config: &Config, file: &str, now: Timestamp) -> String {
    let g = &config.global;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{file}: OK, {} job(s); metric prefix {}, evaluation every {}, {} Alertmanager(s), {} webhook(s)",
        config.jobs.len(),
        g.metric_prefix,
        format_duration(g.evaluation_interval),
        g.alertmanagers.len(),
        g.webhooks.len()
    );
    for w in &config.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    for job in &config.jobs {
        let schedule = job.schedule.as_ref().map_or("no schedule".to_owned(), |s| {
            format!("{:?} {}", s.expr(), s.zone_name())
        });
        let source = match job.max_staleness_source {
            StalenessSource::Configured => "",
            StalenessSource::Schedule => " (longest gap + grace)",
            StalenessSource::Default => " (default)",
        };
        let _ = writeln!(out, "  {}{}", job.name, if job.critical { " [critical]" } else { "" });
        let _ = writeln!(out, "    schedule:      {schedule}");
        let _ = writeln!(out, "    max staleness: {}{source}", format_duration(job.max_staleness));
        if let Some(s) = &job.schedule {
            let next = s.next_after(now).map_or("never".to_owned(), |t| {
                let local = t.to_zoned(s.zone().clone()).strftime("%Y-%m-%d %H:%M %Z");
                format!("{t} ({local})")
            });
            let _ = writeln!(out, "    next run:      {next}");
        }
        if let Some(k) = &job.kubernetes {
            let _ = writeln!(out, "    cronjob:       {}/{}", k.namespace, k.cronjob);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2025-06-01T12:30:00Z".parse().unwrap()
    }

    fn parse(yaml: &str) -> Result<Config, ConfigError> {
        Config::parse(yaml, "t.yml", now())
    }

    fn error(yaml: &str) -> String {
        parse(yaml).expect_err("accepted").to_string()
    }

    #[test]
    fn the_example_file() {
        let source = include_str!("../../../../examples/batchgate.yml");
        let config = Config::parse(source, "examples/batchgate.yml", now()).unwrap();
        assert_eq!(config.global, Global::default());
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        let names: Vec<&str> = config.jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["ef-update", "data-sync"]);

        let ef = config.job("ef-update").unwrap();
        assert_eq!(ef.schedule, Some(Schedule::new("0 */6 * * *", "UTC").unwrap()));
        assert_eq!(
            (ef.max_staleness, ef.max_staleness_source),
            (8 * HOUR, StalenessSource::Configured)
        );
        assert_eq!(
            (ef.interval, ef.grace, ef.for_duration),
            (6 * HOUR, HOUR, SignedDuration::from_mins(15))
        );
        assert!(ef.critical && ef.registered);
        let k8s = KubernetesRef {
            namespace: "greenlang".into(),
            cronjob: "ef-update-job".into(),
        };
        assert_eq!(ef.kubernetes, Some(k8s));

        let sync = config.job("data-sync").unwrap();
        assert_eq!(
            (sync.max_staleness, sync.interval, sync.critical),
            (26 * HOUR, 24 * HOUR, false)
        );
        assert_eq!(
            sync.kubernetes.as_ref().map(|k| k.cronjob.as_str()),
            Some("data-sync-job")
        );
    }

    #[test]
    fn every_key() {
        let config = parse(
            "global:\n  metric_prefix: my_jobs\n  max_staleness: 2h\n  for: 5m\n  grace: 30m\n  evaluation_interval: 10s\n  \
             alertmanagers: [http://am-0:9093, http://am-1:9093]\n  webhooks: ['https://hooks.example/x']\n\
             jobs:\n  - name: report\n    schedule: '0 6 * * MON-FRI'\n    timezone: Europe/Berlin\n    grace: 2h\n    \
             for: 0s\n    max_runtime: 1h30m\n    min_runtime: 30s\n    max_duration: 45m\n    max_errors_24h: 3\n    \
             critical: true\n    team: data\n    runbook_url: https://runbooks.example/report\n    \
             labels: {tier: gold}\n    retire_after: 30d\n",
        )
        .unwrap();
        let g = &config.global;
        assert_eq!(g.metric_prefix, "my_jobs");
        assert_eq!(
            (g.max_staleness, g.for_duration, g.grace),
            (2 * HOUR, SignedDuration::from_mins(5), HOUR / 2)
        );
        assert_eq!(g.evaluation_interval, SignedDuration::from_secs(10));
        assert_eq!(g.alertmanagers, ["http://am-0:9093", "http://am-1:9093"]);
        assert_eq!(g.webhooks, ["https://hooks.example/x"]);
        let j = &config.jobs[0];
        assert_eq!(j.schedule.as_ref().map(|s| s.zone_name()), Some("Europe/Berlin"));
        // Friday to Monday is the longest gap: 73 h over the October DST weekend, plus 2 h grace.
        assert_eq!(
            (j.max_staleness, j.max_staleness_source),
            (75 * HOUR, StalenessSource::Schedule)
        );
        assert_eq!(
            (j.interval, j.grace, j.for_duration),
            (24 * HOUR, 2 * HOUR, SignedDuration::ZERO)
        );
        assert_eq!(j.max_runtime, Some(SignedDuration::from_mins(90)));
        assert_eq!(j.min_runtime, Some(SignedDuration::from_secs(30)));
        assert_eq!(j.max_duration, Some(SignedDuration::from_mins(45)));
        assert_eq!((j.max_errors_24h, j.critical), (3, true));
        assert_eq!(
            (j.team.as_deref(), j.runbook_url.as_deref()),
            (Some("data"), Some("https://runbooks.example/report"))
        );
        assert_eq!(j.labels, BTreeMap::from([("tier".to_owned(), "gold".to_owned())]));
        assert_eq!(j.retire_after, Some(SignedDuration::from_hours(30 * 24)));
    }

    #[test]
    fn defaults() {
        for empty in [
            "",
            "\n# nothing\n",
            "jobs: []\n",
            "global: {}\n",
            "global:\njobs:\n",
            "global:\n  webhooks:\n",
        ] {
            assert_eq!(parse(empty).unwrap(), Config::default(), "{empty:?}");
        }
        let config = parse(
            "global:\n  grace: 2h\n  max_staleness: 3h\njobs:\n  - name: a\n    labels:\n  - name: b\n    schedule: '@hourly'\n",
        )
        .unwrap();
        let (a, b) = (&config.jobs[0], &config.jobs[1]);
        assert_eq!(
            (a.max_staleness, a.max_staleness_source, a.interval),
            (3 * HOUR, StalenessSource::Default, 3 * HOUR)
        );
        assert_eq!(
            (b.max_staleness, b.max_staleness_source, b.interval),
            (3 * HOUR, StalenessSource::Schedule, HOUR)
        );
        assert_eq!(a.schedule, None);
        let discovered = JobSpec::discovered("x", &config.global);
        assert_eq!(
            (discovered.registered, discovered.max_staleness, discovered.grace),
            (false, 3 * HOUR, 2 * HOUR)
        );
    }

    #[test]
    fn errors_name_the_file_the_line_and_the_job() {
        let cases = [
            (
                "jobs:\n  - name: ef-update\n    schedule: '0 */6 * *'\n",
                "t.yml:3: job \"ef-update\": invalid schedule \"0 */6 * *\": ",
            ),
            (
                "jobs:\n  - name: a\n    schedule: '@daily'\n    timezone: Europe/Atlantis\n",
                "t.yml:4: job \"a\": unknown time zone \"Europe/Atlantis\": ",
            ),
            (
                "jobs:\n  - name: a\n    timezone: Nowhere\n",
                "t.yml:3: job \"a\": unknown time zone \"Nowhere\": ",
            ),
            (
                "jobs:\n  - name: a\n    schedule: '0 0 31 2 *'\n",
                "t.yml:3: job \"a\": schedule \"0 0 31 2 *\" never fires",
            ),
            (
                "jobs:\n  - name: a\n    max_staleness: 0s\n",
                "t.yml:3: job \"a\": max_staleness must be greater than 0",
            ),
            (
                "jobs:\n  - name: a\n    max_runtime: '0'\n",
                "t.yml:3: job \"a\": max_runtime must be greater than 0",
            ),
            (
                "jobs:\n  - name: a\n    retire_after: 0m\n",
                "t.yml:3: job \"a\": retire_after must be greater than 0",
            ),
            (
                "global:\n  evaluation_interval: 0s\n",
                "t.yml:2: global: evaluation_interval must be greater than 0",
            ),
            (
                "jobs:\n  - name: a\n    grace: 1x\n",
                "t.yml:3: job \"a\": invalid grace \"1x\": not a duration",
            ),
            (
                "jobs:\n  - name: a\n    max_staleness: 3600\n",
                "t.yml:3: job \"a\": invalid max_staleness \"3600\": not a duration",
            ),
            (
                "jobs:\n  - name: a\n    for: 30m1h\n",
                "t.yml:3: job \"a\": invalid for \"30m1h\": units out of order",
            ),
            (
                "jobs:\n  - name: a\n    schedul: '@daily'\n",
                "t.yml:3: unknown field `schedul`, expected one of name, schedule",
            ),
            ("global:\n  grace: 1h\n  prefix: x\n", "t.yml:3: unknown field `prefix`"),
            ("jobz: []\n", "t.yml:1: unknown field `jobz`"),
            (
                "jobs:\n  - name: a\n    kubernetes: {namespace: x, cronjob: y, pod: z}\n",
                "t.yml:3: unknown field `pod`",
            ),
            (
                "jobs:\n  - name: a\n    kubernetes: {namespace: x}\n",
                "t.yml:3: missing field `cronjob`",
            ),
            (
                "jobs:\n  - name: a\n  - name: b\n  - name: a\n",
                "t.yml:4: duplicate job name \"a\" (first declared on line 2)",
            ),
            (
                "jobs:\n  - name: a\n    name: b\n",
                "t.yml:3: duplicate mapping key: name",
            ),
            ("jobs:\n  - schedule: '@daily'\n", "t.yml:2: missing field `name`"),
            ("jobs:\n  - name: ''\n", "t.yml:2: job name must not be empty"),
            ("jobs: [\n", "t.yml:1: "),
            (
                "global:\n  metric_prefix: 'my-jobs'\n",
                "t.yml:2: global: invalid metric_prefix \"my-jobs\": not a metric name",
            ),
            (
                "global:\n  alertmanagers: [am:9093]\n",
                "t.yml:2: global: invalid alertmanagers URL \"am:9093\": not an http(s) URL",
            ),
            (
                "jobs:\n  - name: a\n    runbook_url: wiki/a\n",
                "t.yml:3: job \"a\": invalid runbook_url \"wiki/a\"",
            ),
            (
                "jobs:\n  - name: a\n    labels: {a-b: c}\n",
                "t.yml:2: job \"a\": invalid label name \"a-b\"",
            ),
            (
                "jobs:\n  - name: a\n    labels: {severity: page}\n",
                "t.yml:2: job \"a\": label \"severity\" is set by batchgate",
            ),
            (
                "jobs:\n  - name: a\n    min_runtime: 1h\n    max_runtime: 1h\n",
                "t.yml:2: job \"a\": min_runtime 1h is not below max_runtime 1h",
            ),
        ];
        for (yaml, want) in cases {
            let got = error(yaml);
            assert!(got.starts_with(want), "{yaml:?}\n got: {got}\nwant: {want}…");
            assert!(!got.contains("DuplicateKeyPolicy"), "{got}");
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = error("jobs:\n  - name: a\n    schedule: 'x'\n    grace: y\n  - name: a\n");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 3, "{err}");
        assert!(lines[0].starts_with("t.yml:3: job \"a\": invalid schedule"));
        assert!(lines[1].starts_with("t.yml:4: job \"a\": invalid grace"));
        assert!(lines[2].starts_with("t.yml:5: duplicate job name"));
    }

    #[test]
    fn a_max_staleness_shorter_than_the_schedule_is_a_warning() {
        let config = parse("jobs:\n  - name: nightly\n    schedule: '0 2 * * *'\n    max_staleness: 1h\n").unwrap();
        assert_eq!(config.warnings.len(), 1);
        assert!(
            config.warnings[0].starts_with("t.yml:2: job \"nightly\": max_staleness 1h is shorter"),
            "{:?}",
            config.warnings
        );
    }

    #[test]
    fn load_and_check_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("batchgate.yml");
        std::fs::write(&path, include_str!("../../../../examples/batchgate.yml")).unwrap();
        let text = check_config(&path).unwrap();
        assert!(text.starts_with(&format!("{}: OK, 2 job(s)", path.display())), "{text}");
        assert!(
            text.contains("  ef-update [critical]\n    schedule:      \"0 */6 * * *\" UTC\n    max staleness: 8h\n"),
            "{text}"
        );
        assert!(text.contains("    cronjob:       greenlang/data-sync-job\n"), "{text}");
        assert!(text.contains("    next run:      "), "{text}");

        let missing = dir.path().join("missing.yml");
        let err = format!("{:#}", anyhow::Error::from(Config::load(&missing).unwrap_err()));
        assert!(
            err.starts_with(&format!("cannot read the config file {}: ", missing.display())),
            "{err}"
        );
        assert_eq!(err.matches("No such file").count(), 1, "said once: {err}");
        std::fs::write(&path, "jobs:\n  - name: a\n    schedule: nope\n").unwrap();
        let err = format!("{:#}", check_config(&path).unwrap_err());
        assert!(
            err.starts_with(&format!("{}:3: job \"a\": invalid schedule \"nope\"", path.display())),
            "{err}"
        );
    }

    #[test]
    fn summary_shows_derived_thresholds_and_next_run() {
        let config =
            parse("jobs:\n  - name: nightly\n    schedule: '30 2 * * *'\n    timezone: America/New_York\n").unwrap();
        let text = summary(&config, "t.yml", "2025-03-08T12:00:00Z".parse().unwrap());
        // 25 h across the November change, plus 1 h grace.
        assert!(text.contains("max staleness: 26h (longest gap + grace)"), "{text}");
        // The 02:30 fire does not exist on 2025-03-09: it is due at 03:00 EDT.
        assert!(
            text.contains("next run:      2025-03-09T07:00:00Z (2025-03-09 03:00 EDT)"),
            "{text}"
        );
    }
}
