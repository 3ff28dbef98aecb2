//! `batchgate rules`: the built-in alerts as Prometheus alerting rules, for teams that alert from
//! Prometheus instead of letting batchgate send them.
//!
//! Built from the job config. Staleness uses the runbook's own metric
//! (`<prefix>_last_success_timestamp`) with each job's max staleness baked in, falling back to
//! batchgate's `batchgate_job_staleness_seconds` for a job that never pushed one (or whose groups
//! expired); what PromQL cannot evaluate (a cron schedule, the run history) comes from batchgate's
//! per-job metrics `batchgate_job_state{job_name,state}`. Paused jobs raise nothing.
//!
//! Differences from batchgate's own alerting: `batchgate_job_state` carries one state per job (the
//! first in precedence order), so a job that is both stale and late raises only the stale alert;
//! `BatchJobDurationHigh` is exported only for jobs with an explicit `max_duration`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::jobs::duration::format_duration;
use crate::jobs::{Config, JobSpec};

use super::rules::{AlertName, watchdog};

/// Output formats of `batchgate rules`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A Prometheus rule file (`groups:`), for `rule_files`.
    Rules,
    /// A prometheus-operator `PrometheusRule` resource (monitoring.coreos.com/v1).
    Prometheusrule,
}

/// One alerting rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub alert: AlertName,
    pub expr: String,
    pub for_duration: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// A PromQL string literal.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A PromQL regex alternative matching exactly these job names.
fn alternatives(names: &[&str]) -> String {
    const SPECIAL: &str = r"\.+*?()|[]{}^$";
    names
        .iter()
        .map(|n| {
            n.chars().fold(String::new(), |mut s, c| {
                if SPECIAL.contains(c) {
                    s.push('\\');
                }
                s.push(c);
                s
            })
        })
        .collect::<Vec<_>>()
        .join("|")
}

/// The rules of every configured job, then the watchdog.
pub fn rules(config: &Config) -> Vec<Rule> {
    let critical: Vec<&str> = config
        .jobs
        .iter()
        .filter(|j| j.critical)
        .map(|j| j.name.as_str())
        .collect();
    // Escalation L3: two or more critical jobs failing or stale at once.
    let l3 = (critical.len() >= 2).then(|| {
        format!(
            "count(max by (job_name) (batchgate_job_state{{job_name=~{},state=~\"stale|failed\"}}) == 1) >= 2",
            quote(&alternatives(&critical))
        )
    });
    let mut out = Vec::new();
    for spec in &config.jobs {
        job_rules(config, spec, l3.as_deref(), &mut out);
    }
    let w = watchdog();
    out.push(Rule {
        alert: AlertName::Watchdog,
        expr: "vector(1)".to_owned(),
        for_duration: "0s".to_owned(),
        labels: w.labels.into_iter().filter(|(k, _)| k != "alertname").collect(),
        annotations: w.annotations,
    });
    out
}

fn job_rules(config: &Config, spec: &JobSpec, l3: Option<&str>, out: &mut Vec<Rule>) {
    let prefix = &config.global.metric_prefix;
    let name = quote(&spec.name);
    let sel = format!("job_name={name}");
    let not_paused = format!("unless on (job_name) (batchgate_job_state{{{sel},state=\"paused\"}} == 1)");
    let state = |s: &str| format!("max by (job_name) (batchgate_job_state{{{sel},state=\"{s}\"}}) == 1");
    let staleness = format!(
        "(time() - max by (job_name) ({prefix}_last_success_timestamp{{{sel}}}) \
         or max by (job_name) (batchgate_job_staleness_seconds{{{sel}}}))"
    );
    let max_staleness = spec.max_staleness.as_secs();
    let stale = format!("{staleness} > {max_staleness}");
    let for_duration = format_duration(spec.for_duration);
    let job = &spec.name;
    let mut push = |alert: AlertName, expr: String, escalation: Option<&str>, summary: String, description: String| {
        let mut labels = spec.labels.clone();
        labels.insert("severity".to_owned(), alert.severity().to_owned());
        labels.insert("job_name".to_owned(), spec.name.clone());
        if let Some(team) = &spec.team {
            labels.insert("team".to_owned(), team.clone());
        }
        if let Some(level) = escalation {
            labels.insert("escalation".to_owned(), level.to_owned());
        }
        let mut annotations =
            BTreeMap::from([("summary".to_owned(), summary), ("description".to_owned(), description)]);
        if let Some(url) = &spec.runbook_url {
            annotations.insert("runbook_url".to_owned(), url.clone());
        }
        out.push(Rule {
            alert,
            expr: format!("({expr}) {not_paused}"),
            for_duration: for_duration.clone(),
            labels,
            annotations,
        });
    };

    let stale_summary = format!("Batch job {job} is stale");
    let stale_description = format!(
        "Job {job}: last success {{{{ $value | humanizeDuration }}}} ago, max staleness {}.",
        format_duration(spec.max_staleness)
    );
    let double_interval = (spec.interval * 2).as_secs();
    match (spec.critical, l3) {
        (false, _) => push(AlertName::Stale, stale, Some("L1"), stale_summary, stale_description),
        (true, l3) => {
            let unless_l3 = l3.map(|e| format!(" unless on () ({e})")).unwrap_or_default();
            // L1 up to twice the schedule interval, L2 beyond (SPEC §3.4, the runbook's escalation path).
            if double_interval > max_staleness {
                push(
                    AlertName::Stale,
                    format!("{stale} <= {double_interval}{unless_l3}"),
                    Some("L1"),
                    stale_summary.clone(),
                    stale_description.clone(),
                );
            }
            push(
                AlertName::Stale,
                format!("{staleness} > {}{unless_l3}", max_staleness.max(double_interval)),
                Some("L2"),
                stale_summary.clone(),
                stale_description.clone(),
            );
            if let Some(l3) = l3 {
                push(
                    AlertName::Stale,
                    format!("{stale} and on () ({l3})"),
                    Some("L3"),
                    stale_summary,
                    stale_description,
                );
            }
        }
    }

    let failed_summary = format!("Batch job {job} failed");
    let failed_description = format!("Job {job}: the last run failed.");
    match (spec.critical, l3) {
        (true, Some(l3)) => {
            push(
                AlertName::Failed,
                format!("{} unless on () ({l3})", state("failed")),
                Some("L1"),
                failed_summary.clone(),
                failed_description.clone(),
            );
            push(
                AlertName::Failed,
                format!("{} and on () ({l3})", state("failed")),
                Some("L3"),
                failed_summary,
                failed_description,
            );
        }
        _ => push(
            AlertName::Failed,
            state("failed"),
            Some("L1"),
            failed_summary,
            failed_description,
        ),
    }

    if spec.schedule.is_some() {
        push(
            AlertName::Late,
            state("late"),
            None,
            format!("Batch job {job} is late"),
            format!(
                "Job {job}: a scheduled run has not succeeded within the grace of {}.",
                format_duration(spec.grace)
            ),
        );
    }
    push(
        AlertName::Hung,
        state("hung"),
        None,
        format!("Batch job {job} is hung"),
        format!(
            "Job {job}: a run has been going for longer than {}.",
            format_duration(crate::jobs::state::effective_max_runtime(spec))
        ),
    );
    if let Some(max) = spec.max_duration {
        push(
            AlertName::DurationHigh,
            format!(
                "max by (job_name) ({prefix}_duration_seconds{{{sel}}}) > {}",
                max.as_secs_f64()
            ),
            None,
            format!("Batch job {job} took too long"),
            format!(
                "Job {job}: the last run took {{{{ $value | humanizeDuration }}}}, more than {}.",
                format_duration(max)
            ),
        );
    }
    push(
        AlertName::ErrorsHigh,
        format!(
            "sum by (job_name) (increase({prefix}_errors_total{{{sel}}}[24h])) > {}",
            spec.max_errors_24h
        ),
        None,
        format!("Batch job {job} has too many errors"),
        format!(
            "Job {job}: {{{{ $value }}}} errors in the last 24 hours, more than {}.",
            spec.max_errors_24h
        ),
    );
    push(
        AlertName::PushFailing,
        format!(
            "max by (job_name) (label_replace(push_failure_time_seconds{{job={name}}} > push_time_seconds{{job={name}}}, \
             \"job_name\", {name}, \"job\", \".*\") or (push_failure_time_seconds{{{sel}}} > push_time_seconds{{{sel}}}))"
        ),
        None,
        format!("Pushes of batch job {job} are being rejected"),
        format!("Job {job}: the gateway rejected its last push; see the gateway's log for the reason."),
    );
}

/// A YAML scalar: JSON string syntax is a valid YAML double-quoted scalar.
fn scalar(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn write_map(out: &mut String, indent: &str, key: &str, map: &BTreeMap<String, String>) {
    if map.is_empty() {
        return;
    }
    let _ = writeln!(out, "{indent}{key}:");
    for (k, v) in map {
        let plain = k.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        let key = if plain { k.clone() } else { scalar(k) };
        let _ = writeln!(out, "{indent}  {key}: {}", scalar(v));
    }
}

/// The `groups:` document, every line prefixed with `indent`.
fn groups_yaml(rules: &[Rule], indent: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{indent}groups:");
    let _ = writeln!(out, "{indent}  - name: batchgate");
    let _ = writeln!(out, "{indent}    rules:");
    let i = format!("{indent}        ");
    for r in rules {
        let _ = writeln!(out, "{indent}      - alert: {}", r.alert.as_str());
        let _ = writeln!(out, "{i}expr: {}", scalar(&r.expr));
        let _ = writeln!(out, "{i}for: {}", r.for_duration);
        write_map(&mut out, &i, "labels", &r.labels);
        write_map(&mut out, &i, "annotations", &r.annotations);
    }
    out
}

/// The rules of `config` in `format`.
pub fn render(config: &Config, format: Format) -> String {
    let rules = rules(config);
    let header = "# Generated by `batchgate rules` from the job config: the alerts batchgate raises itself.\n";
    match format {
        Format::Rules => format!("{header}{}", groups_yaml(&rules, "")),
        Format::Prometheusrule => format!(
            "{header}apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n  name: batchgate\n  \
             labels:\n    app.kubernetes.io/name: batchgate\nspec:\n{}",
            groups_yaml(&rules, "  ")
        ),
    }
}

/// `batchgate rules --config FILE [--format …]`.
pub fn main(config: &Path, format: Format) -> anyhow::Result<String> {
    let config = Config::load(config)?;
    Ok(render(&config, format))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
global:
  metric_prefix: gl_batch_job
jobs:
  - name: ef-update
    schedule: "0 */6 * * *"
    max_staleness: 8h
    critical: true
    team: platform
    runbook_url: https://runbooks.example/stale
    labels: {service: greenlang}
  - name: db-maintenance
    schedule: "0 3 * * 0"
    critical: true
    max_duration: 90m
  - name: data-sync
    schedule: "0 2 * * *"
    max_staleness: 26h
"#;

    fn config() -> Config {
        Config::parse(CONFIG, "test.yml", "2025-06-01T12:00:00Z".parse().unwrap()).unwrap()
    }

    #[test]
    fn stale_uses_the_runbook_metric_with_the_threshold_baked_in() {
        let rules = rules(&config());
        let stale: Vec<_> = rules
            .iter()
            .filter(|r| r.alert == AlertName::Stale && r.labels["job_name"] == "data-sync")
            .collect();
        assert_eq!(stale.len(), 1);
        let r = stale[0];
        assert!(
            r.expr
                .contains(r#"time() - max by (job_name) (gl_batch_job_last_success_timestamp{job_name="data-sync"})"#),
            "{}",
            r.expr
        );
        assert!(r.expr.contains("> 93600"), "{}", r.expr);
        assert!(r.expr.contains(r#"state="paused""#));
        assert_eq!(r.labels["escalation"], "L1");
        assert_eq!(r.labels["severity"], "warning");
        assert_eq!(r.for_duration, "15m");
    }

    #[test]
    fn critical_jobs_escalate() {
        let rules = rules(&config());
        let levels: Vec<_> = rules
            .iter()
            .filter(|r| r.alert == AlertName::Stale && r.labels["job_name"] == "ef-update")
            .map(|r| (r.labels["escalation"].as_str(), r.expr.as_str()))
            .collect();
        assert_eq!(levels.iter().map(|l| l.0).collect::<Vec<_>>(), ["L1", "L2", "L3"]);
        assert!(levels[0].1.contains("> 28800 <= 43200"), "{}", levels[0].1);
        assert!(levels[1].1.contains("> 43200"), "{}", levels[1].1);
        assert!(
            levels[2].1.contains(r#"job_name=~"ef-update|db-maintenance""#),
            "{}",
            levels[2].1
        );
        let ef = rules
            .iter()
            .find(|r| r.labels.get("job_name").is_some_and(|j| j == "ef-update"))
            .unwrap();
        assert_eq!(ef.labels["team"], "platform");
        assert_eq!(ef.labels["service"], "greenlang");
        assert_eq!(ef.annotations["runbook_url"], "https://runbooks.example/stale");
        assert!(
            rules
                .iter()
                .any(|r| r.alert == AlertName::DurationHigh && r.expr.contains("> 5400"))
        );
    }

    #[test]
    fn renders_both_formats() {
        let text = render(&config(), Format::Rules);
        assert!(text.contains("groups:\n  - name: batchgate\n    rules:\n      - alert: BatchJobStale\n"));
        assert!(text.contains("      - alert: BatchGatewayWatchdog\n        expr: \"vector(1)\"\n"));
        let parsed: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        let rules = parsed["groups"][0]["rules"].as_array().unwrap();
        assert_eq!(rules.len(), super::rules(&config()).len());
        assert_eq!(rules[0]["labels"]["job_name"], "ef-update");

        let cr = render(&config(), Format::Prometheusrule);
        let parsed: serde_json::Value = serde_saphyr::from_str(&cr).unwrap();
        assert_eq!(parsed["apiVersion"], "monitoring.coreos.com/v1");
        assert_eq!(parsed["kind"], "PrometheusRule");
        assert_eq!(
            parsed["spec"]["groups"][0]["rules"].as_array().unwrap().len(),
            rules.len()
        );
    }

    #[test]
    fn promql_strings_are_escaped() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(alternatives(&["a.b", "c"]), r"a\.b|c");
    }
}
