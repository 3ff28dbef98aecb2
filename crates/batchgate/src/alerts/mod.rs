//! batchgate's own alerting (SPEC §3.4): which alerts hold ([`rules`]), their lifecycle
//! ([`engine`]), sending them to Alertmanager and webhooks ([`delivery`]) and the same alerts as
//! Prometheus rules ([`export`]).
//!
//! [`spawn`] wires it together: it evaluates the rules on every new job evaluation and at every
//! resend tick, sends changes at once and re-sends everything firing every resend interval.

pub mod delivery;
pub mod engine;
pub mod export;
pub mod rules;

use std::collections::BTreeMap;
use std::sync::Arc;

use batchgate_format::MetricFamily;
use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use delivery::{AlertArgs, DeliveryError, DeliveryOptions, ReceiverKind};
pub use engine::{ActiveAlert, AlertState, Engine};
pub use rules::{Alert, AlertName};

use crate::jobs::{Config, JobView};
use delivery::{Batch, Metrics};

/// What the rest of batchgate sees of the alerting: the active alerts and the delivery metrics.
/// Cloneable; the tasks stop when the last clone is dropped.
#[derive(Clone)]
pub struct AlertHandle {
    inner: Arc<Inner>,
}

struct Inner {
    metrics: Arc<Metrics>,
    task: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AlertHandle {
    /// Pending and firing alerts, as of the last evaluation (for the jobs API and the page).
    pub fn active(&self) -> Vec<ActiveAlert> {
        self.inner.metrics.active()
    }

    /// Pending and firing alerts of one job.
    pub fn active_for(&self, job_name: &str) -> Vec<ActiveAlert> {
        let mut v = self.active();
        v.retain(|a| a.job_name() == Some(job_name));
        v
    }

    /// `batchgate_alert_deliveries_total` and `batchgate_alerts_active`, to append to `/metrics`.
    pub fn families(&self) -> Vec<MetricFamily> {
        self.inner.metrics.families()
    }

    /// Deliveries so far to a receiver (its URL as configured) with `result` `success` or `failure`.
    pub fn deliveries(&self, receiver: &str, result: &str) -> u64 {
        self.inner.metrics.deliveries(receiver, result)
    }
}

/// The metric families alerting exposes, without samples: their names and types are reserved
/// against pushes like batchgate's other own metrics.
pub fn metric_types() -> Vec<MetricFamily> {
    Metrics::default().families()
}

/// Starts the alerting: evaluates the alerts of every new `views` (and at every resend tick), and
/// delivers them to the Alertmanagers and webhooks of the current `config` (followed on reload).
/// Must be called inside a tokio runtime.
pub fn spawn(
    views: watch::Receiver<Arc<Vec<JobView>>>,
    config: watch::Receiver<Arc<Config>>,
    options: DeliveryOptions,
) -> AlertHandle {
    let metrics = Arc::new(Metrics::default());
    let task = tokio::spawn(run(views, config, options, Arc::clone(&metrics)));
    AlertHandle {
        inner: Arc::new(Inner { metrics, task }),
    }
}

/// The receiver tasks, by kind and URL.
struct Receivers {
    tasks: BTreeMap<(ReceiverKind, String), JoinHandle<()>>,
    client: reqwest::Client,
}

impl Receivers {
    /// Starts tasks for new receivers and stops those no longer configured.
    fn reconcile(
        &mut self,
        config: &Config,
        batches: &watch::Sender<Arc<Batch>>,
        options: &DeliveryOptions,
        metrics: &Arc<Metrics>,
    ) {
        let wanted: Vec<(ReceiverKind, String)> = config
            .global
            .alertmanagers
            .iter()
            .map(|u| (ReceiverKind::Alertmanager, u.clone()))
            .chain(
                config
                    .global
                    .webhooks
                    .iter()
                    .map(|u| (ReceiverKind::Webhook, u.clone())),
            )
            .collect();
        self.tasks.retain(|key, task| {
            let keep = wanted.contains(key);
            if !keep {
                tracing::info!(receiver = %key.1, "alert receiver removed");
                task.abort();
            }
            keep
        });
        for (kind, url) in wanted {
            self.tasks.entry((kind, url.clone())).or_insert_with(|| {
                tracing::info!(receiver = %url, kind = ?kind, "alert receiver added");
                tokio::spawn(delivery::run_receiver(
                    kind,
                    url,
                    self.client.clone(),
                    batches.subscribe(),
                    options.clone(),
                    Arc::clone(metrics),
                ))
            });
        }
    }
}

impl Drop for Receivers {
    fn drop(&mut self) {
        for task in self.tasks.values() {
            task.abort();
        }
    }
}

async fn run(
    mut views: watch::Receiver<Arc<Vec<JobView>>>,
    mut config: watch::Receiver<Arc<Config>>,
    options: DeliveryOptions,
    metrics: Arc<Metrics>,
) {
    let client = match reqwest::Client::builder().timeout(options.timeout).build() {
        Ok(c) => c,
        Err(error) => {
            tracing::error!(%error, "cannot build the HTTP client: alerts will not be delivered");
            return;
        }
    };
    let resend = SignedDuration::try_from(options.resend_interval).unwrap_or(SignedDuration::from_mins(1));
    let (batches, _) = watch::channel(Arc::new(Batch::default()));
    let mut receivers = Receivers {
        tasks: BTreeMap::new(),
        client,
    };
    let current = config.borrow_and_update().clone();
    receivers.reconcile(&current, &batches, &options, &metrics);
    let mut engine = Engine::new();
    let mut tick = tokio::time::interval(options.resend_interval.max(std::time::Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut views_open, mut config_open) = (true, true);
    let mut resend_due = false;
    loop {
        let current = views.borrow_and_update().clone();
        let now = Timestamp::now();
        let changed = engine.update(rules::evaluate(&current), now);
        metrics.set_active(engine.active());
        if changed || resend_due {
            batches.send_replace(Arc::new(Batch {
                alerts: engine.outgoing(now, resend),
            }));
            resend_due = false;
        }
        tokio::select! {
            r = views.changed(), if views_open => views_open = r.is_ok(),
            r = config.changed(), if config_open => {
                config_open = r.is_ok();
                if config_open {
                    let current = config.borrow_and_update().clone();
                    receivers.reconcile(&current, &batches, &options, &metrics);
                    resend_due = true;
                }
            }
            _ = tick.tick() => resend_due = true,
        }
    }
}
