//! The batch-job model (SPEC §3): which jobs exist ([`config`]), when they are due ([`schedule`]),
//! what their pushes mean ([`runs`]) and what state they are in ([`state`]).
//!
//! [`registry`] follows the store and keeps every job's facts and run history ([`history`], in
//! the store's SQLite file); [`metrics`] exports the evaluated jobs on `/metrics`. Everything
//! else is pure logic: no I/O besides reading the config file, no clock (every evaluation takes
//! `now`).

pub mod config;
pub mod duration;
pub mod history;
pub mod metrics;
pub mod registry;
pub mod runs;
pub mod schedule;
pub mod state;
pub mod view;

pub use config::{Config, ConfigError, Global, JobSpec};
pub use registry::JobRegistry;
pub use runs::{JobMetrics, Outcome, RunEvent, RunStatus};
pub use schedule::Schedule;
pub use state::{Assessment, Escalation, JobFacts, JobState};
pub use view::{JobView, Run};
