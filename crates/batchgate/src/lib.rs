//! batchgate: a durable, batch-job-aware drop-in replacement for the Prometheus Pushgateway.
//!
//! Data flows one way: HTTP ([`api`]) → [`store`] → pages ([`ui`]) and exposition.

pub mod alerts;
pub mod api;
pub mod jobs;
pub mod jobs_cmd;
pub mod run;
pub mod serve;
pub mod store;
pub mod telemetry;
pub mod ui;
