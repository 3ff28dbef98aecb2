//! A batch job instrumented with batchgate-client.
//!
//! ```sh
//! cargo run -p batchgate -- serve &                       # or a Pushgateway on :9091
//! cargo run -p batchgate-client --example batch_job       # a successful run
//! cargo run -p batchgate-client --example batch_job fail  # a failed run
//! curl -s localhost:9091/metrics | grep gl_batch_job
//! ```
//!
//! The gateway is `$BATCHGATE_URL` (default `http://localhost:9091`).

use std::time::Duration;

use batchgate_client::{BatchJobMetrics, DEFAULT_GATEWAY_URL, RetryPolicy};

fn process(rows: u32, fail: bool) -> Result<u32, String> {
    if fail {
        return Err("the source database is unreachable".to_string());
    }
    std::thread::sleep(Duration::from_millis(200));
    // Pretend every tenth row is malformed and skipped.
    Ok(rows / 10)
}

fn main() -> std::process::ExitCode {
    let fail = std::env::args().nth(1).as_deref() == Some("fail");
    let gateway = std::env::var("BATCHGATE_URL").unwrap_or_else(|_| DEFAULT_GATEWAY_URL.to_string());

    let metrics = BatchJobMetrics::new("example-batch-job", gateway)
        .grouping_label("instance", "example")
        .timeout(Duration::from_secs(5))
        .retry(RetryPolicy::default());

    let run = metrics.start();
    // Report "running"; the job goes on whether or not the gateway is there.
    if let Err(e) = metrics.push_add_blocking() {
        eprintln!("warning: could not push the start of the run: {e}");
    }

    let exit = match process(100, fail) {
        Ok(skipped) => {
            metrics.record_errors(u64::from(skipped));
            let took = run.success();
            println!("done in {took:?}, {skipped} rows skipped");
            0
        }
        Err(e) => {
            eprintln!("failed: {e}");
            run.failure(1);
            1
        }
    };

    // POST keeps the last success timestamp of an earlier run when this one failed.
    if let Err(e) = metrics.push_add_blocking() {
        eprintln!("warning: could not push the outcome of the run: {e}");
    }
    std::process::ExitCode::from(exit)
}
