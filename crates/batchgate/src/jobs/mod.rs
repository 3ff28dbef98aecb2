//! The batch-job model (SPEC §3): which jobs exist ([`config`]), when they are due ([`schedule`]),
//! what their pushes mean ([`runs`]) and what state they are in ([`state`]).
//!
//! Pure logic: no I/O besides reading the config file, no clock (every evaluation takes `now`).

pub mod config;
pub mod duration;
pub mod runs;
pub mod schedule;
pub mod state;
pub mod view;

pub use config::{Config, ConfigError, Global, JobSpec};
pub use runs::{JobMetrics, Outcome, RunEvent, RunStatus};
pub use schedule::Schedule;
pub use state::{Assessment, Escalation, JobFacts, JobState};
pub use view::{JobView, Run};
