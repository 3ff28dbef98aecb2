//! `batchgate serve`: flags (the Pushgateway's names where a flag exists in both), start-up and
//! graceful shutdown.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::api::push::Limits;
use crate::api::{self, App};
use crate::jobs::history::{self, History};
use crate::jobs::{Config, JobRegistry};
use crate::store::MetricStore;
use crate::store::sqlite::SqliteBackend;
use crate::telemetry::Telemetry;

#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on for the web interface, API and telemetry.
    #[arg(long = "web.listen-address", default_value = ":9091")]
    pub listen_address: String,
    /// Path under which to expose metrics.
    #[arg(long = "web.telemetry-path", default_value = "/metrics")]
    pub telemetry_path: String,
    /// The URL under which batchgate is reachable from outside; its path is the default route prefix.
    #[arg(long = "web.external-url", default_value = "")]
    pub external_url: String,
    /// Prefix for all routes (defaults to the path of --web.external-url).
    #[arg(long = "web.route-prefix", default_value = "")]
    pub route_prefix: String,
    /// Enable shutdown via HTTP request (PUT or POST /-/quit).
    #[arg(long = "web.enable-lifecycle")]
    pub enable_lifecycle: bool,
    /// Enable API endpoints for administration actions (PUT /api/v1/admin/wipe).
    #[arg(long = "web.enable-admin-api")]
    pub enable_admin_api: bool,
    /// Directory holding the data file (batchgate.db). Every acknowledged push is in it.
    #[arg(long = "storage.path", default_value = "./batchgate-data")]
    pub storage_path: PathBuf,
    /// Accepted for compatibility; batchgate always checks consistency (it costs O(series pushed)).
    #[arg(long = "push.disable-consistency-check")]
    pub disable_consistency_check: bool,
    /// Largest push body accepted, in bytes, before and after decompression.
    #[arg(long = "push.max-body-bytes", default_value_t = Limits::default().max_body_bytes)]
    pub max_body_bytes: usize,
    /// Most series (samples) one push may carry.
    #[arg(long = "push.max-series", default_value_t = Limits::default().max_series)]
    pub max_series: usize,
    /// Most labels one pushed series may have once grouping labels are added.
    #[arg(long = "push.max-labels-per-series", default_value_t = Limits::default().max_labels_per_series)]
    pub max_labels_per_series: usize,
    /// Most groups stored; a push that would create one more is refused (existing groups still
    /// take pushes).
    #[arg(long = "push.max-groups", default_value_t = 100_000)]
    pub max_groups: usize,
    /// Longest label value accepted, in bytes.
    #[arg(long = "push.max-label-value-length", default_value_t = Limits::default().max_label_value_length)]
    pub max_label_value_length: usize,
    /// The config file: the jobs that must exist, their schedules and thresholds, where alerts go.
    /// Without it, jobs are still discovered from pushes, with default settings.
    /// Reloaded on SIGHUP and on POST /-/reload.
    #[arg(long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub alerts: crate::alerts::AlertArgs,
    /// Runs kept in each job's run history.
    #[arg(long = "jobs.run-retention", default_value_t = history::DEFAULT_RETENTION)]
    pub run_retention: usize,
    /// Only log messages with the given severity or above: debug, info, warn, error.
    #[arg(long = "log.level", default_value = "info")]
    pub log_level: String,
    /// Output format of log messages: logfmt or json.
    #[arg(long = "log.format", default_value = "logfmt")]
    pub log_format: String,
}

impl ServeArgs {
    /// The route prefix as the Pushgateway computes it: from the flag, else the external URL's
    /// path; `/` becomes empty; otherwise it starts and does not end with `/`.
    fn route_prefix(&self) -> String {
        let raw = if self.route_prefix.is_empty() {
            self.external_url
                .split_once("://")
                .map_or("", |(_, rest)| rest.find('/').map_or("", |i| &rest[i..]))
        } else {
            self.route_prefix.as_str()
        };
        let trimmed = raw.trim_end_matches('/');
        if trimmed.is_empty() {
            String::new()
        } else {
            format!("/{}", trimmed.trim_start_matches('/'))
        }
    }

    fn flags(&self) -> BTreeMap<String, String> {
        [
            ("web.listen-address", self.listen_address.clone()),
            ("web.telemetry-path", self.telemetry_path.clone()),
            ("web.external-url", self.external_url.clone()),
            ("web.route-prefix", self.route_prefix.clone()),
            ("web.enable-lifecycle", self.enable_lifecycle.to_string()),
            ("web.enable-admin-api", self.enable_admin_api.to_string()),
            ("storage.path", self.storage_path.display().to_string()),
            (
                "push.disable-consistency-check",
                self.disable_consistency_check.to_string(),
            ),
            ("push.max-body-bytes", self.max_body_bytes.to_string()),
            ("push.max-series", self.max_series.to_string()),
            ("push.max-labels-per-series", self.max_labels_per_series.to_string()),
            ("push.max-label-value-length", self.max_label_value_length.to_string()),
            ("push.max-groups", self.max_groups.to_string()),
            (
                "config",
                self.config
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
            ("jobs.run-retention", self.run_retention.to_string()),
            ("alerts.resend-interval", format!("{:?}", self.alerts.resend_interval)),
            ("log.level", self.log_level.clone()),
            ("log.format", self.log_format.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn listen_address(&self) -> String {
        match self.listen_address.strip_prefix(':') {
            Some(port) => format!("[::]:{port}"),
            None => self.listen_address.clone(),
        }
    }
}

async fn shutdown_signal(quit: Arc<App>) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("received SIGINT, shutting down"),
        _ = terminate => tracing::info!("received SIGTERM, shutting down"),
        _ = quit.quit.notified() => tracing::info!("received /-/quit, shutting down"),
    }
}

/// Reloads the config file on every SIGHUP; a bad file is logged and the old config kept.
async fn reload_on_sighup(registry: Arc<JobRegistry>, store: MetricStore) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload the config with POST /-/reload");
        return;
    };
    while hangups.recv().await.is_some() {
        let (registry, store) = (registry.clone(), store.clone());
        let result = tokio::task::spawn_blocking(move || registry.reload(&store.snapshot())).await;
        match result {
            Ok(Ok(config)) => tracing::info!(jobs = config.jobs.len(), "config reloaded (SIGHUP)"),
            Ok(Err(e)) => tracing::error!(error = %e, "config reload failed; keeping the old config"),
            Err(e) => tracing::error!(error = %e, "config reload failed"),
        }
    }
}

pub fn init_logging(level: &str, format: &str) -> anyhow::Result<()> {
    let filter = match level {
        "debug" | "info" | "warn" | "error" => tracing_subscriber::EnvFilter::new(format!("batchgate={level},warn")),
        other => bail!("--log.level={other:?} is not one of debug, info, warn, error"),
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        "logfmt" => builder.init(),
        "json" => builder.json().init(),
        other => bail!("--log.format={other:?} is not one of logfmt, json"),
    }
    Ok(())
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    // Checked before anything is opened or created.
    let port = args.listen_address.rsplit_once(':').map(|(_, port)| port);
    if port.is_none_or(|p| p.parse::<u16>().is_err()) {
        bail!(
            "--web.listen-address={:?} is not HOST:PORT or :PORT (for example :9091 or 127.0.0.1:9091)",
            args.listen_address
        );
    }
    if args.disable_consistency_check {
        tracing::warn!(
            "--push.disable-consistency-check has no effect: batchgate checks every push in O(series pushed) and never stores inconsistent metrics"
        );
    }
    // A bad config refuses the start, before anything is opened.
    let config = match &args.config {
        Some(file) => {
            let config = Config::load(file)?;
            for warning in &config.warnings {
                tracing::warn!("{warning}");
            }
            tracing::info!(file = %file.display(), jobs = config.jobs.len(), "config loaded");
            config
        }
        None => Config::default(),
    };
    let telemetry = Arc::new(Telemetry::new());
    let backend = SqliteBackend::open(&args.storage_path)?;
    let db = backend.path().to_path_buf();
    let path = db.display().to_string();
    let (store, writer) = MetricStore::open(
        Box::new(backend),
        Telemetry::own_types(),
        telemetry.clone(),
        args.max_groups,
    )?;
    tracing::info!(path, groups = store.snapshot().len(), "storage opened");
    // Opened after the store verified the file.
    let (history, runs) = History::open(&db, args.run_retention)?;
    let registry = Arc::new(JobRegistry::new(
        config,
        args.config.clone(),
        history,
        runs,
        args.run_retention,
        &store.snapshot(),
        jiff::Timestamp::now(),
    ));
    let evaluation = tokio::spawn(crate::jobs::registry::run(registry.clone(), store.clone()));
    let hangup = tokio::spawn(reload_on_sighup(registry.clone(), store.clone()));
    let alerts = crate::alerts::spawn(
        registry.watch(),
        registry.watch_config(),
        args.alerts.options(&args.external_url),
    );

    let app = Arc::new(App {
        store,
        jobs: registry.clone(),
        alerts,
        telemetry,
        route_prefix: args.route_prefix(),
        telemetry_path: if args.telemetry_path.starts_with('/') {
            args.telemetry_path.clone()
        } else {
            format!("/{}", args.telemetry_path)
        },
        enable_lifecycle: args.enable_lifecycle,
        enable_admin_api: args.enable_admin_api,
        limits: Limits {
            max_body_bytes: args.max_body_bytes,
            max_series: args.max_series,
            max_labels_per_series: args.max_labels_per_series,
            max_label_value_length: args.max_label_value_length,
        },
        flags: args.flags(),
        quit: Notify::new(),
    });
    let addr = args.listen_address();
    let listener = match TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(_) if addr.starts_with("[::]") => TcpListener::bind(addr.replacen("[::]", "0.0.0.0", 1))
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {}; is another process using the port?",
                    args.listen_address
                )
            })?,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => bail!(
            "cannot listen on {}: {e}; is another process using the port?",
            args.listen_address
        ),
        Err(e) => bail!("cannot listen on {}: {e}", args.listen_address),
    };
    tracing::info!(address = %listener.local_addr()?, "listening");
    let router = axum::Router::new().fallback(api::dispatch).with_state(app.clone());
    // Connections still open this long after a shutdown signal (a client trickling its request)
    // are closed, so a stop never waits on a client.
    const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);
    let stopping = Arc::new(Notify::new());
    let signalled = stopping.clone();
    let shutdown_app = app.clone();
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        shutdown_signal(shutdown_app).await;
        signalled.notify_one();
    });
    tokio::select! {
        served = server => served?,
        _ = async {
            stopping.notified().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => tracing::warn!("requests still open {SHUTDOWN_GRACE:?} after the shutdown signal were dropped"),
    }
    for task in [evaluation, hangup] {
        task.abort();
        let _ = task.await;
    }
    let _ = tokio::task::spawn_blocking(move || registry.flush_history()).await;
    // Commits what is queued and stops the writer, even if a dropped request still holds a handle.
    app.store.close().await;
    drop(app);
    let _ = tokio::task::spawn_blocking(move || writer.join()).await;
    tracing::info!("stopped");
    Ok(())
}
