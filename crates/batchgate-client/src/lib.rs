//! Instrument a batch job: record when it started, whether it succeeded, how long it took, how
//! many errors it met and its exit code, and push that to batchgate or to any Prometheus
//! Pushgateway.
//!
//! The metrics are the runbook's `BatchJobMetrics` SDK's, each series labelled `job_name`
//! (`<prefix>` defaults to `gl_batch_job`):
//!
//! | metric | type | value |
//! |---|---|---|
//! | `<prefix>_last_start_timestamp` | gauge | unix time the last run started |
//! | `<prefix>_last_success_timestamp` | gauge | unix time the last successful run ended |
//! | `<prefix>_last_failure_timestamp` | gauge | unix time the last failed run ended |
//! | `<prefix>_duration_seconds` | gauge | duration of the last run |
//! | `<prefix>_exit_code` | gauge | exit code of the last run (0 on success) |
//! | `<prefix>_errors_total` | counter | errors recorded by [`BatchJobMetrics::record_error`], plus one per failed run |
//! | `<prefix>_status{status="running\|completed\|failed"}` | gauge | 1 for the current status, 0 for the two others |
//!
//! A metric is pushed once it has a value: before any run ends there is no duration, a job that
//! never failed pushes no `last_failure_timestamp`.
//!
//! [`push`](BatchJobMetrics::push) replaces the job's group (HTTP `PUT`, like `push_to_gateway`);
//! [`push_add`](BatchJobMetrics::push_add) replaces only the metrics it sends and keeps the
//! others (HTTP `POST`, like `pushadd_to_gateway`), so a failed run keeps the last success
//! timestamp of an earlier process on the gateway. Both retry connection errors, timeouts, 5xx
//! and 429 answers with exponential backoff ([`RetryPolicy`]: 3 attempts, waits capped at 60 s)
//! and never retry any other 4xx. Each has a `_blocking` twin for programs without an async
//! runtime.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use batchgate_client::{BatchJobMetrics, RetryPolicy};
//!
//! # fn update_emission_factors() -> Result<usize, std::io::Error> { Ok(0) }
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let metrics = BatchJobMetrics::new("ef-update", "http://pushgateway.monitoring.svc:9091")
//!         .grouping_label("instance", "worker-1")
//!         .timeout(Duration::from_secs(10))
//!         .retry(RetryPolicy::default());
//!
//!     let run = metrics.start(); // status="running", last_start_timestamp
//!     // Tell the gateway the run started; a failed push must not stop the job.
//!     if let Err(e) = metrics.push_add_blocking() {
//!         eprintln!("could not push the start: {e}");
//!     }
//!
//!     match update_emission_factors() {
//!         Ok(skipped_rows) => {
//!             metrics.record_errors(skipped_rows as u64); // errors_total += n
//!             run.success(); // status="completed", last_success_timestamp, duration, exit_code 0
//!         }
//!         Err(e) => {
//!             eprintln!("update failed: {e}");
//!             run.failure(1); // status="failed", last_failure_timestamp, exit_code 1, errors_total += 1
//!         }
//!     }
//!     // A guard dropped without `success()` (an early `?` return, a panic) records a failure.
//!
//!     metrics.push_add_blocking()?; // POST, retried with backoff
//!     Ok(())
//! }
//! ```
//!
//! In async code use `metrics.push().await` / `metrics.push_add().await` instead of the
//! `_blocking` methods (which refuse to run inside an async runtime).
//!
//! When the job is one function returning a `Result`, [`BatchJobMetrics::track`] (or
//! [`track_async`](BatchJobMetrics::track_async)) starts the run and records its end:
//!
//! ```no_run
//! # use batchgate_client::BatchJobMetrics;
//! # fn update_emission_factors() -> Result<(), std::io::Error> { Ok(()) }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let metrics = BatchJobMetrics::new("ef-update", "http://batchgate.monitoring.svc:9091");
//! let result = metrics.track(update_emission_factors);
//! metrics.push_add_blocking()?;
//! result?;
//! # Ok(())
//! # }
//! ```

mod error;
mod grouping;
mod metrics;
mod push;
mod retry;

pub use error::{Error, Result};
pub use metrics::{BatchJobMetrics, DEFAULT_PREFIX, RunGuard, Status};
pub use push::PushMethod;
pub use retry::RetryPolicy;

/// The default gateway address of the Pushgateway and of batchgate.
pub const DEFAULT_GATEWAY_URL: &str = "http://localhost:9091";
