//! The batch-job JSON API: `GET /api/v1/jobs`, `GET /api/v1/jobs/{name}`, and `POST /-/reload`.
//!
//! Times are RFC 3339 (UTC), `null` when unknown; durations are seconds. The same types are read
//! back by `batchgate jobs`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::v1::with_cors;
use super::{App, method_not_allowed, plain};
use crate::jobs::runs::Outcome;
use crate::jobs::{JobView, Run};

/// The `kubernetes` section of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KubernetesJson {
    pub namespace: String,
    pub cronjob: String,
}

/// One job as `/api/v1/jobs` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobJson {
    pub name: String,
    /// Declared in the config file (false: discovered from a push).
    pub registered: bool,
    pub state: String,
    /// Every condition that holds, in precedence order (`state` is the first, or `ok`).
    pub conditions: Vec<String>,
    pub last_success: Option<Timestamp>,
    pub last_failure: Option<Timestamp>,
    pub last_push: Option<Timestamp>,
    pub next_expected_run: Option<Timestamp>,
    /// The scheduled fire that went by without a success, when the job is late.
    pub missed_run: Option<Timestamp>,
    pub staleness_seconds: f64,
    pub max_staleness_seconds: f64,
    pub escalation: Option<String>,
    pub critical: bool,
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    pub running_since: Option<Timestamp>,
    pub last_duration_seconds: Option<f64>,
    /// The BatchJobDurationHigh threshold (configured, or 2 × p95 of recent runs).
    pub duration_threshold_seconds: Option<f64>,
    pub errors_24h: u64,
    pub max_errors_24h: u64,
    pub last_exit_code: Option<i64>,
    pub team: Option<String>,
    pub runbook_url: Option<String>,
    pub kubernetes: Option<KubernetesJson>,
    /// Alerts firing for the job (filled by the alert engine).
    #[serde(default)]
    pub active_alerts: Vec<serde_json::Value>,
    /// Run history, newest first (only on `/api/v1/jobs/{name}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs: Option<Vec<RunJson>>,
    /// When this was evaluated.
    pub evaluated_at: Timestamp,
}

/// One run of a job's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunJson {
    pub start: Option<Timestamp>,
    pub end: Option<Timestamp>,
    /// `success`, `failure`, or `running`.
    pub outcome: String,
    pub duration_seconds: Option<f64>,
    pub exit_code: Option<i64>,
}

/// The `{"status":"success","data":…}` envelope of the answers.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub status: String,
    pub data: T,
}

fn secs(d: SignedDuration) -> f64 {
    d.as_secs_f64()
}

impl JobJson {
    /// Adds the job's active (pending or firing) alerts.
    fn with_alerts(mut self, alerts: &crate::alerts::AlertHandle) -> JobJson {
        self.active_alerts = alerts
            .active_for(&self.name)
            .iter()
            .filter_map(|a| serde_json::to_value(a).ok())
            .collect();
        self
    }

    pub fn from_view(v: &JobView, with_runs: bool) -> JobJson {
        let spec = &v.spec;
        JobJson {
            name: spec.name.clone(),
            registered: spec.registered,
            state: v.state.as_str().to_owned(),
            conditions: v.assessment.conditions.iter().map(|c| c.as_str().to_owned()).collect(),
            last_success: v.facts.last_success,
            last_failure: v.facts.last_failure,
            last_push: v.facts.last_push,
            next_expected_run: v.assessment.next_run,
            missed_run: v.assessment.missed_fire,
            staleness_seconds: secs(v.assessment.staleness),
            max_staleness_seconds: secs(spec.max_staleness),
            escalation: v.escalation.map(|e| e.as_str().to_owned()),
            critical: spec.critical,
            schedule: spec.schedule.as_ref().map(|s| s.expr().to_owned()),
            timezone: spec.schedule.as_ref().map(|s| s.zone_name().to_owned()),
            running_since: v.assessment.running_since,
            last_duration_seconds: v.last_duration.map(secs),
            duration_threshold_seconds: v.duration_threshold.map(secs),
            errors_24h: v.errors_24h,
            max_errors_24h: spec.max_errors_24h,
            last_exit_code: v.last_exit_code,
            team: spec.team.clone(),
            runbook_url: spec.runbook_url.clone(),
            kubernetes: spec.kubernetes.as_ref().map(|k| KubernetesJson {
                namespace: k.namespace.clone(),
                cronjob: k.cronjob.clone(),
            }),
            active_alerts: Vec::new(),
            runs: with_runs.then(|| v.recent_runs.iter().map(RunJson::from_run).collect()),
            evaluated_at: v.at,
        }
    }
}

impl RunJson {
    pub fn from_run(r: &Run) -> RunJson {
        RunJson {
            start: r.start,
            end: r.end,
            outcome: match r.outcome {
                Some(Outcome::Success) => "success",
                Some(Outcome::Failure) => "failure",
                None => "running",
            }
            .to_owned(),
            duration_seconds: r.duration.map(secs),
            exit_code: r.exit_code,
        }
    }
}

fn json(status: StatusCode, body: &impl Serialize) -> Response {
    let (status, bytes) = match serde_json::to_vec(body) {
        Ok(bytes) => (status, bytes),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{{\"status\":\"error\",\"error\":\"cannot encode the answer: {e}\"}}").into_bytes(),
        ),
    };
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    with_cors(r)
}

fn success(data: impl Serialize) -> Response {
    json(
        StatusCode::OK,
        &Envelope {
            status: "success".to_owned(),
            data,
        },
    )
}

fn not_found(message: String) -> Response {
    json(
        StatusCode::NOT_FOUND,
        &serde_json::json!({"status": "error", "errorType": "not_found", "error": message}),
    )
}

/// `/api/v1/jobs` and `/api/v1/jobs/{name}` (`path` is relative to `/api/v1`).
pub fn route(app: &App, method: &Method, path: &str) -> (&'static str, Response) {
    if *method != Method::GET {
        return ("other", method_not_allowed(method, &[Method::GET]));
    }
    let now = Timestamp::now();
    match path.strip_prefix("/jobs").unwrap_or_default() {
        "" | "/" => {
            let jobs: Vec<JobJson> = app
                .jobs
                .views(now)
                .iter()
                .map(|v| JobJson::from_view(v, false).with_alerts(&app.alerts))
                .collect();
            ("api/v1/jobs", success(jobs))
        }
        rest => {
            let name = rest.trim_start_matches('/');
            match app.jobs.view(name, now) {
                Some(view) => (
                    "api/v1/job",
                    success(JobJson::from_view(&view, true).with_alerts(&app.alerts)),
                ),
                None => ("api/v1/job", not_found(format!("no job named {name:?}"))),
            }
        }
    }
}

/// `POST /-/reload`: re-reads the config file; on error the old config and state stay.
pub async fn reload(app: Arc<App>) -> Response {
    // Like Prometheus' reload and the Pushgateway's quit, behind --web.enable-lifecycle: the
    // listener is open to everyone who can push. SIGHUP always reloads.
    if !app.enable_lifecycle {
        return plain(StatusCode::FORBIDDEN, "Lifecycle API is not enabled.");
    }
    let result = tokio::task::spawn_blocking(move || {
        let snapshot = app.store.snapshot();
        app.jobs.reload(&snapshot).map(|_| ())
    })
    .await;
    match result {
        Ok(Ok(())) => {
            tracing::info!("config reloaded (POST /-/reload)");
            plain(StatusCode::OK, "config reloaded")
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "config reload failed; keeping the old config");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("failed to reload config: {e}"),
            )
        }
        Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, format!("reload failed: {e}")),
    }
}
