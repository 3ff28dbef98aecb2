//! The life of each alert, as Prometheus runs it: an alert whose condition holds is *pending*;
//! once it has held for its `for` it is *firing*; when the condition stops holding a firing alert is
//! *resolved* (and a pending one simply dropped). Resolved alerts are kept, and re-sent, for 15
//! minutes so a receiver that missed the first notice still hears of it.
//!
//! An alert is identified by its label set. One exception keeps escalation from resetting the clock:
//! when a job's `BatchJobStale` moves from L1 to L2 (a new label set), the new alert inherits the
//! old one's start, so it fires at once and the old one resolves.
//!
//! Pure: every method takes `now`.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use super::rules::{Alert, AlertName, Labels};

/// How long resolved alerts are kept and re-sent (Prometheus' `resolvedRetention`).
pub const RESOLVED_RETENTION: SignedDuration = SignedDuration::from_mins(15);

/// Where an alert is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Pending,
    Firing,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// One alert as the engine tracks it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActiveAlert {
    pub name: AlertName,
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub state: AlertState,
    /// When the condition started to hold (first seen pending): Alertmanager's `startsAt`.
    pub active_at: Timestamp,
    pub fired_at: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
    #[serde(skip)]
    for_duration: SignedDuration,
}

impl ActiveAlert {
    /// The job the alert is about (none for the watchdog).
    pub fn job_name(&self) -> Option<&str> {
        self.labels.get("job_name").map(String::as_str)
    }
}

/// An alert as sent to Alertmanager.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub status: AlertState,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
}

/// The labels that identify an alert across escalation levels.
fn lineage(labels: &Labels) -> Labels {
    let mut l = labels.clone();
    l.remove("escalation");
    l
}

/// Every alert batchgate knows, by label set.
#[derive(Debug, Default)]
pub struct Engine {
    alerts: BTreeMap<Labels, ActiveAlert>,
}

impl Engine {
    pub fn new() -> Engine {
        Engine::default()
    }

    /// Applies one evaluation: `holding` are the alerts whose condition holds at `now`. Returns
    /// whether what Alertmanager must be told changed (an alert started firing or resolved).
    pub fn update(&mut self, holding: Vec<Alert>, now: Timestamp) -> bool {
        let mut changed = false;
        let mut seen: BTreeMap<Labels, Alert> = BTreeMap::new();
        for alert in holding {
            seen.entry(alert.labels.clone()).or_insert(alert);
        }
        // Alerts that stop holding: pending ones vanish, firing ones resolve.
        let mut gone_since: BTreeMap<Labels, Timestamp> = BTreeMap::new();
        self.alerts.retain(|labels, a| {
            if a.state == AlertState::Resolved || seen.contains_key(labels) {
                return true;
            }
            gone_since.insert(lineage(labels), a.active_at);
            match a.state {
                AlertState::Pending => false,
                _ => {
                    a.state = AlertState::Resolved;
                    a.resolved_at = Some(now);
                    changed = true;
                    true
                }
            }
        });
        for (labels, alert) in seen {
            match self.alerts.get_mut(&labels) {
                Some(a) if a.state != AlertState::Resolved => {
                    a.annotations = alert.annotations;
                    a.for_duration = alert.for_duration;
                }
                _ => {
                    let active_at = gone_since.get(&lineage(&labels)).copied().unwrap_or(now);
                    self.alerts.insert(
                        labels.clone(),
                        ActiveAlert {
                            name: alert.name,
                            labels,
                            annotations: alert.annotations,
                            state: AlertState::Pending,
                            active_at,
                            fired_at: None,
                            resolved_at: None,
                            for_duration: alert.for_duration,
                        },
                    );
                }
            }
        }
        self.alerts.retain(|_, a| match a.state {
            AlertState::Pending => {
                if now.duration_since(a.active_at) >= a.for_duration {
                    a.state = AlertState::Firing;
                    a.fired_at = Some(now);
                    changed = true;
                }
                true
            }
            AlertState::Firing => true,
            AlertState::Resolved => a
                .resolved_at
                .is_some_and(|r| now.duration_since(r) <= RESOLVED_RETENTION),
        });
        changed
    }

    /// Every tracked alert: pending, firing, and resolved within the last 15 minutes.
    pub fn alerts(&self) -> impl Iterator<Item = &ActiveAlert> {
        self.alerts.values()
    }

    /// Pending and firing alerts.
    pub fn active(&self) -> Vec<ActiveAlert> {
        self.alerts
            .values()
            .filter(|a| a.state != AlertState::Resolved)
            .cloned()
            .collect()
    }

    /// What to send to Alertmanager at `now`: firing alerts with `endsAt` = now + 4 × the resend
    /// interval (so they resolve by themselves if batchgate dies), resolved ones with `endsAt` =
    /// their resolution time.
    pub fn outgoing(&self, now: Timestamp, resend_interval: SignedDuration) -> Vec<Outgoing> {
        let valid_for = resend_interval * 4;
        self.alerts
            .values()
            .filter_map(|a| {
                let ends_at = match a.state {
                    AlertState::Pending => return None,
                    AlertState::Firing => now.checked_add(valid_for).unwrap_or(now),
                    AlertState::Resolved => a.resolved_at.unwrap_or(now),
                };
                Some(Outgoing {
                    labels: a.labels.clone(),
                    annotations: a.annotations.clone(),
                    status: a.state,
                    starts_at: a.active_at,
                    ends_at,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::rules::watchdog;

    const M: SignedDuration = SignedDuration::from_mins(1);

    fn t0() -> Timestamp {
        "2025-06-01T12:00:00Z".parse().unwrap()
    }

    fn stale(level: &str) -> Alert {
        Alert {
            name: AlertName::Stale,
            labels: [
                ("alertname", "BatchJobStale"),
                ("severity", "warning"),
                ("job_name", "ef-update"),
                ("escalation", level),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            annotations: BTreeMap::from([("summary".to_owned(), "stale".to_owned())]),
            for_duration: 15 * M,
        }
    }

    fn state_of(e: &Engine, alertname: &str) -> Vec<(String, AlertState)> {
        e.alerts()
            .filter(|a| a.labels["alertname"] == alertname)
            .map(|a| (a.labels.get("escalation").cloned().unwrap_or_default(), a.state))
            .collect()
    }

    #[test]
    fn pending_then_firing_after_for() {
        let mut e = Engine::new();
        assert!(!e.update(vec![stale("L1")], t0()));
        assert_eq!(state_of(&e, "BatchJobStale"), [("L1".into(), AlertState::Pending)]);
        assert!(e.outgoing(t0(), M).is_empty(), "pending alerts are not sent");
        assert!(!e.update(vec![stale("L1")], t0() + 14 * M));
        assert_eq!(e.active()[0].state, AlertState::Pending);
        assert!(e.update(vec![stale("L1")], t0() + 15 * M));
        let a = &e.active()[0];
        assert_eq!(a.state, AlertState::Firing);
        assert_eq!(a.active_at, t0());
        assert_eq!(a.fired_at, Some(t0() + 15 * M));
        // Steady state: no change to report.
        assert!(!e.update(vec![stale("L1")], t0() + 16 * M));
        let out = e.outgoing(t0() + 16 * M, M);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].starts_at, t0());
        assert_eq!(out[0].ends_at, t0() + 20 * M, "endsAt = now + 4 x resend interval");
        assert_eq!(out[0].status, AlertState::Firing);
    }

    #[test]
    fn zero_for_fires_at_once() {
        let mut e = Engine::new();
        assert!(e.update(vec![watchdog()], t0()));
        assert_eq!(e.active()[0].state, AlertState::Firing);
    }

    #[test]
    fn pending_alert_that_clears_vanishes() {
        let mut e = Engine::new();
        e.update(vec![stale("L1")], t0());
        assert!(!e.update(vec![], t0() + 5 * M));
        assert_eq!(e.alerts().count(), 0);
        // It starts over when it comes back.
        e.update(vec![stale("L1")], t0() + 6 * M);
        assert!(!e.update(vec![stale("L1")], t0() + 20 * M));
        assert!(e.update(vec![stale("L1")], t0() + 21 * M));
    }

    #[test]
    fn resolution_and_resend_window() {
        let mut e = Engine::new();
        e.update(vec![stale("L1")], t0());
        e.update(vec![stale("L1")], t0() + 15 * M);
        let resolved = t0() + 30 * M;
        assert!(e.update(vec![], resolved));
        assert!(e.active().is_empty());
        let out = e.outgoing(resolved + M, M);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].status, AlertState::Resolved);
        assert_eq!(out[0].ends_at, resolved, "endsAt = resolution time");
        assert_eq!(out[0].starts_at, t0());
        // Re-sent for 15 minutes, then forgotten.
        assert!(!e.update(vec![], resolved + 15 * M));
        assert_eq!(e.outgoing(resolved + 15 * M, M).len(), 1);
        assert!(!e.update(vec![], resolved + 15 * M + SignedDuration::from_secs(1)));
        assert!(e.outgoing(resolved + 16 * M, M).is_empty());
    }

    #[test]
    fn refiring_after_resolution_starts_pending_again() {
        let mut e = Engine::new();
        e.update(vec![stale("L1")], t0());
        e.update(vec![stale("L1")], t0() + 15 * M);
        e.update(vec![], t0() + 20 * M);
        assert!(!e.update(vec![stale("L1")], t0() + 21 * M));
        let a = &e.active()[0];
        assert_eq!((a.state, a.active_at), (AlertState::Pending, t0() + 21 * M));
    }

    #[test]
    fn escalation_keeps_the_start_and_resolves_the_lower_level() {
        let mut e = Engine::new();
        e.update(vec![stale("L1")], t0());
        e.update(vec![stale("L1")], t0() + 15 * M);
        assert!(e.update(vec![stale("L2")], t0() + 60 * M));
        let mut states = state_of(&e, "BatchJobStale");
        states.sort();
        assert_eq!(
            states,
            [("L1".into(), AlertState::Resolved), ("L2".into(), AlertState::Firing)]
        );
        let l2 = &e.active()[0];
        assert_eq!(l2.active_at, t0(), "L2 inherits L1's start and fires at once");
    }

    #[test]
    fn annotations_follow_the_latest_evaluation() {
        let mut e = Engine::new();
        e.update(vec![watchdog()], t0());
        let mut w = watchdog();
        w.annotations.insert("summary".into(), "changed".into());
        assert!(
            !e.update(vec![w], t0() + M),
            "an annotation change is not a state change"
        );
        assert_eq!(e.active()[0].annotations["summary"], "changed");
    }
}
