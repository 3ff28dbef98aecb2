//! `batchgate jobs`: every job of a running batchgate as a table, from `GET /api/v1/jobs`.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, bail};
use jiff::{SignedDuration, Timestamp};

use crate::api::jobs::{Envelope, JobJson};

#[derive(clap::Args, Debug, Clone)]
pub struct JobsArgs {
    /// Base URL of batchgate (with its route prefix, if it has one).
    #[arg(long, env = "BATCHGATE_URL", default_value = "http://localhost:9091")]
    pub url: String,
}

/// Fetches the jobs and renders the table.
pub fn main(args: &JobsArgs) -> anyhow::Result<String> {
    let jobs = fetch(&args.url)?;
    Ok(table(&jobs, Timestamp::now()))
}

fn fetch(base: &str) -> anyhow::Result<Vec<JobJson>> {
    let url = format!("{}/api/v1/jobs", base.trim_end_matches('/'));
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("cannot build an HTTP client")?;
    let response = client.get(&url).send().map_err(|e| {
        anyhow::anyhow!(
            "cannot reach batchgate at {base} ({e}).\n\
             Is `batchgate serve` running there? Point to it with --url http://HOST:PORT \
             (or BATCHGATE_URL), including the route prefix if it has one."
        )
    })?;
    let status = response.status();
    let body = response
        .text()
        .with_context(|| format!("cannot read the answer of {url}"))?;
    if !status.is_success() {
        bail!(
            "{url} answered {status}: {}\nIs {base} a batchgate (not a Pushgateway), with the right route prefix?",
            body.trim()
        );
    }
    let envelope: Envelope<Vec<JobJson>> = serde_json::from_str(&body)
        .with_context(|| format!("{url} did not answer a job list; is {base} a batchgate?"))?;
    Ok(envelope.data)
}

/// `45s`, `12m`, `3h`, `3h20m`, `2d`, `2d4h`: coarse enough to read at a glance.
pub fn human(d: SignedDuration) -> String {
    let s = d.as_secs().unsigned_abs();
    let (m, h, day) = (60, 3600, 86_400);
    match s {
        s if s < m => format!("{s}s"),
        s if s < h => format!("{}m", s / m),
        s if s < 10 * h && s % h >= m => format!("{}h{}m", s / h, s % h / m),
        s if s < day => format!("{}h", s / h),
        s if s % day >= h && s < 10 * day => format!("{}d{}h", s / day, s % day / h),
        s => format!("{}d", s / day),
    }
}

/// `3h ago`, `in 20m`, `-` when unknown.
pub fn relative(t: Option<Timestamp>, now: Timestamp) -> String {
    match t {
        None => "-".to_owned(),
        Some(t) if t <= now => format!("{} ago", human(now.duration_since(t))),
        Some(t) => format!("in {}", human(t.duration_since(now))),
    }
}

fn secs(s: f64) -> SignedDuration {
    SignedDuration::try_from_secs_f64(s).unwrap_or(SignedDuration::MAX)
}

/// The table printed by `batchgate jobs`.
pub fn table(jobs: &[JobJson], now: Timestamp) -> String {
    if jobs.is_empty() {
        return "No jobs: none is declared in the config file and none has pushed yet.\n".to_owned();
    }
    let header = [
        "NAME",
        "STATE",
        "LAST SUCCESS",
        "NEXT RUN",
        "STALENESS/MAX",
        "ESCALATION",
    ]
    .map(str::to_owned);
    let mut rows = vec![header];
    for j in jobs {
        let name = if j.registered {
            j.name.clone()
        } else {
            format!("{} (unregistered)", j.name)
        };
        let last_success = match j.last_success {
            None => "never".to_owned(),
            t => relative(t, now),
        };
        let next = match (&j.schedule, j.next_expected_run) {
            (None, _) => "unscheduled".to_owned(),
            (Some(_), t) => relative(t, now),
        };
        rows.push([
            name,
            j.state.clone(),
            last_success,
            next,
            format!(
                "{}/{}",
                human(secs(j.staleness_seconds)),
                human(secs(j.max_staleness_seconds))
            ),
            j.escalation.clone().unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        let cases = [
            (0, "0s"),
            (59, "59s"),
            (60, "1m"),
            (3599, "59m"),
            (3600, "1h"),
            (3 * 3600 + 20 * 60, "3h20m"),
            (9 * 3600, "9h"),
            (13 * 3600 + 5 * 60, "13h"),
            (86_400, "1d"),
            (2 * 86_400 + 4 * 3600, "2d4h"),
            (40 * 86_400 + 4 * 3600, "40d"),
        ];
        for (s, want) in cases {
            assert_eq!(human(SignedDuration::from_secs(s)), want, "{s}");
        }
        let now: Timestamp = "2025-06-01T12:00:00Z".parse().unwrap();
        assert_eq!(relative(Some(now - SignedDuration::from_hours(3)), now), "3h ago");
        assert_eq!(relative(Some(now + SignedDuration::from_mins(20)), now), "in 20m");
        assert_eq!(relative(None, now), "-");
    }

    #[test]
    fn the_table() {
        let now: Timestamp = "2025-06-01T12:00:00Z".parse().unwrap();
        let job = |name: &str, registered: bool| JobJson {
            name: name.into(),
            registered,
            state: "stale".into(),
            conditions: vec!["stale".into()],
            last_success: Some(now - SignedDuration::from_hours(9)),
            last_failure: None,
            last_push: None,
            next_expected_run: Some(now + SignedDuration::from_hours(6)),
            missed_run: None,
            staleness_seconds: 9.0 * 3600.0,
            max_staleness_seconds: 8.0 * 3600.0,
            escalation: Some("L1".into()),
            critical: true,
            schedule: Some("0 */6 * * *".into()),
            timezone: Some("UTC".into()),
            running_since: None,
            last_duration_seconds: None,
            duration_threshold_seconds: None,
            errors_24h: 0,
            max_errors_24h: 0,
            last_exit_code: None,
            team: None,
            runbook_url: None,
            kubernetes: None,
            active_alerts: Vec::new(),
            runs: None,
            evaluated_at: now,
        };
        let other = JobJson {
            state: "ok".into(),
            last_success: None,
            schedule: None,
            escalation: None,
            ..job("adhoc", false)
        };
        let text = table(&[job("ef-update", true), other], now);
        assert_eq!(
            text,
            "NAME                  STATE  LAST SUCCESS  NEXT RUN     STALENESS/MAX  ESCALATION\n\
             ef-update             stale  9h ago        in 6h        9h/8h          L1\n\
             adhoc (unregistered)  ok     never         unscheduled  9h/8h          -\n"
        );
        assert!(table(&[], now).starts_with("No jobs"));
    }
}
