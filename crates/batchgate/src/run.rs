//! `batchgate run`: run any program as an instrumented batch job.
//!
//! Pushes the start of the run (status `running`, `last_start_timestamp`), runs the command with
//! stdin, stdout and stderr inherited, forwards termination signals to it, kills it after
//! `--timeout`, then pushes the outcome (status, `last_success_timestamp` or
//! `last_failure_timestamp`, duration, exit code, errors) and exits with the command's exit code
//! (`128 + N` when signal N ended it).
//!
//! Both pushes are `POST`s, so an earlier run's `last_success_timestamp` survives a failed run.
//! A gateway that cannot be reached never stops or fails the command: the start push is tried
//! once while the command already runs, the outcome push is retried with backoff, and a failure
//! is a warning on stderr (and exit status 1 for a successful command with `--fail-on-push-error`).

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitCode, ExitStatus};
use std::time::Duration;

use batchgate_client::{BatchJobMetrics, DEFAULT_GATEWAY_URL, DEFAULT_PREFIX, PushMethod, RetryPolicy};
use rustix::process::{Pid, Signal};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Exit status when batchgate itself cannot run (bad settings, no runtime).
const EXIT_INTERNAL: u8 = 125;
/// Exit status when the command exists but cannot be executed (shell convention).
const EXIT_CANNOT_EXECUTE: i32 = 126;
/// Exit status when the command is not found (shell convention).
const EXIT_NOT_FOUND: i32 = 127;
/// Exit status of a command that exited 0 only after `--timeout` had asked it to stop
/// (coreutils `timeout`'s).
const EXIT_TIMED_OUT: i32 = 124;

/// The signals forwarded to the command.
const FORWARDED: [(Signal, &str); 6] = [
    (Signal::INT, "SIGINT"),
    (Signal::TERM, "SIGTERM"),
    (Signal::HUP, "SIGHUP"),
    (Signal::QUIT, "SIGQUIT"),
    (Signal::USR1, "SIGUSR1"),
    (Signal::USR2, "SIGUSR2"),
];

#[derive(clap::Args, Debug, Clone)]
#[command(
    after_help = "The command's output and exit code are passed through (128+N when signal N ended it; \
                  124 if it exited 0 after --timeout). SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and \
                  SIGUSR2 are forwarded to it. A gateway that cannot be reached only prints a warning. \
                  batchgate's own exit codes: 125 for bad settings (the command is not run), 126 when the \
                  command cannot be executed, 127 when it is not found.\n\n\
                  Example: batchgate run --job ef-update --gateway http://batchgate:9091 -- ./update.sh --full"
)]
pub struct RunArgs {
    /// Job name: the `job` of the grouping key and the `job_name` label of every series.
    #[arg(long, env = "BATCHGATE_JOB")]
    pub job: String,

    /// batchgate or Pushgateway URL (a route prefix path is allowed).
    #[arg(long, env = "BATCHGATE_URL", default_value = DEFAULT_GATEWAY_URL)]
    pub gateway: String,

    /// Stop the command after this long (e.g. 90s, 30m, 1h30m): SIGTERM, then SIGKILL after --kill-after.
    #[arg(long, env = "BATCHGATE_TIMEOUT", value_parser = parse_duration)]
    pub timeout: Option<Duration>,

    /// After --timeout sent SIGTERM, send SIGKILL if the command is still running this much later.
    #[arg(long, env = "BATCHGATE_KILL_AFTER", value_parser = parse_duration, default_value = "10s")]
    pub kill_after: Duration,

    /// Extra grouping label, repeatable (in $BATCHGATE_LABELS: comma-separated NAME=VALUE pairs).
    #[arg(
        long = "label",
        value_name = "NAME=VALUE",
        env = "BATCHGATE_LABELS",
        value_delimiter = ',',
        value_parser = parse_label
    )]
    pub labels: Vec<(String, String)>,

    /// Metric name prefix.
    #[arg(long, env = "BATCHGATE_PREFIX", default_value = DEFAULT_PREFIX)]
    pub prefix: String,

    /// Exit 1 when the command succeeded but its outcome could not be pushed.
    #[arg(long, env = "BATCHGATE_FAIL_ON_PUSH_ERROR")]
    pub fail_on_push_error: bool,

    /// Time limit of each push request.
    #[arg(long, env = "BATCHGATE_PUSH_TIMEOUT", value_parser = parse_duration, default_value = "10s")]
    pub push_timeout: Duration,

    /// Attempts to push the outcome (exponential backoff from 1 s, doubling, capped at 60 s).
    #[arg(
        long,
        env = "BATCHGATE_PUSH_ATTEMPTS",
        default_value_t = 3,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub push_attempts: u32,

    /// Basic auth user name.
    #[arg(long, env = "BATCHGATE_USERNAME")]
    pub username: Option<String>,

    /// Basic auth password.
    #[arg(long, env = "BATCHGATE_PASSWORD", hide_env_values = true, requires = "username")]
    pub password: Option<String>,

    /// Bearer token sent as `Authorization: Bearer <token>`.
    #[arg(
        long,
        env = "BATCHGATE_BEARER_TOKEN",
        hide_env_values = true,
        conflicts_with = "username"
    )]
    pub bearer_token: Option<String>,

    /// The command to run and its arguments (after `--`).
    #[arg(
        value_name = "COMMAND",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_parser = clap::value_parser!(OsString)
    )]
    pub command: Vec<OsString>,
}

impl RunArgs {
    fn metrics(&self) -> BatchJobMetrics {
        let mut m = BatchJobMetrics::new(&self.job, &self.gateway)
            .prefix(&self.prefix)
            .timeout(self.push_timeout)
            .retry(RetryPolicy::attempts(self.push_attempts));
        for (name, value) in &self.labels {
            m = m.grouping_label(name, value);
        }
        if let Some(user) = &self.username {
            m = m.basic_auth(user, self.password.clone());
        }
        if let Some(token) = &self.bearer_token {
            m = m.bearer_token(token);
        }
        m
    }
}

/// Runs `batchgate run` to the end; the exit code to leave with.
pub fn main(args: RunArgs) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => ExitCode::from(rt.block_on(run(args))),
        Err(e) => {
            eprintln!("batchgate run: cannot start the runtime: {e}");
            ExitCode::from(EXIT_INTERNAL)
        }
    }
}

/// Runs the command and pushes its start and outcome; returns the exit code.
pub async fn run(args: RunArgs) -> u8 {
    let metrics = args.metrics();
    if let Err(e) = metrics.validate() {
        eprintln!("batchgate run: {}", error_chain(&e));
        return EXIT_INTERNAL;
    }
    let job = args.job.as_str();
    // Before the command starts, so that no signal meant for it can kill batchgate instead.
    let mut signals = forward_signals();

    let guard = metrics.start();
    let mut start_push = tokio::spawn(metrics.push_with(PushMethod::Add, &RetryPolicy::none()));
    let mut start_pushed = false;

    let (program, rest) = match args.command.split_first() {
        Some(split) => split,
        None => {
            eprintln!("batchgate run: no command given");
            return EXIT_INTERNAL;
        }
    };
    let spawned = tokio::process::Command::new(program).args(rest).spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                EXIT_NOT_FOUND
            } else {
                EXIT_CANNOT_EXECUTE
            };
            eprintln!("batchgate run: cannot run {}: {e}", program.to_string_lossy());
            guard.failure(code);
            if !start_pushed {
                report_start(job, start_push.await);
            }
            return finish(&args, &metrics, &mut signals, code).await;
        }
    };

    let deadline = args.timeout.map(|t| Instant::now() + t);
    let mut kill_at: Option<Instant> = None;
    let mut timed_out = false;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            Some(sig) = signals.recv() => {
                if let Some(pid) = child.id() {
                    send_signal(pid, sig);
                }
            }
            result = &mut start_push, if !start_pushed => {
                start_pushed = true;
                report_start(job, result);
            }
            () = sleep_until(deadline), if deadline.is_some() && !timed_out => {
                timed_out = true;
                let limit = args.timeout.unwrap_or_default();
                eprintln!(
                    "batchgate run: job {job:?} ran longer than --timeout {}: sending SIGTERM",
                    format_duration(limit)
                );
                if let Some(pid) = child.id() {
                    send_signal(pid, Signal::TERM);
                }
                kill_at = Some(Instant::now() + args.kill_after);
            }
            () = sleep_until(kill_at), if kill_at.is_some() => {
                kill_at = None;
                eprintln!(
                    "batchgate run: job {job:?} still running {} after SIGTERM: sending SIGKILL",
                    format_duration(args.kill_after)
                );
                if let Some(pid) = child.id() {
                    send_signal(pid, Signal::KILL);
                }
            }
        }
    };
    if !start_pushed {
        // One attempt, bounded by --push-timeout; waiting for it keeps the start from landing
        // after the outcome.
        report_start(job, start_push.await);
    }

    let code = match status {
        Ok(status) => exit_code(status),
        Err(e) => {
            eprintln!("batchgate run: cannot wait for the command: {e}");
            i32::from(EXIT_INTERNAL)
        }
    };
    let code = if timed_out && code == 0 { EXIT_TIMED_OUT } else { code };
    if code == 0 {
        guard.success();
    } else {
        guard.failure(code);
    }
    finish(&args, &metrics, &mut signals, code).await
}

/// Pushes the outcome and picks the exit code.
async fn finish(
    args: &RunArgs,
    metrics: &BatchJobMetrics,
    signals: &mut mpsc::UnboundedReceiver<Signal>,
    code: i32,
) -> u8 {
    let push = metrics.push_with(PushMethod::Add, metrics.retry_policy());
    let result = tokio::select! {
        result = push => result,
        Some(sig) = signals.recv() => {
            eprintln!(
                "batchgate run: warning: signal {} while pushing the outcome of job {:?}: not pushed",
                sig.as_raw(),
                args.job
            );
            return exit_byte(code);
        }
    };
    let outcome = if code == 0 {
        "success".to_string()
    } else {
        format!("failure, exit code {code}")
    };
    match result {
        Ok(()) => exit_byte(code),
        Err(e) => {
            let fail = args.fail_on_push_error && code == 0;
            eprintln!(
                "batchgate run: warning: could not push the outcome of job {:?} ({outcome}): {}; {}",
                args.job,
                error_chain(&e),
                if fail {
                    "exiting with 1 (--fail-on-push-error)"
                } else {
                    "the command's exit code is passed through unchanged"
                }
            );
            if fail { 1 } else { exit_byte(code) }
        }
    }
}

fn report_start(job: &str, result: Result<batchgate_client::Result<()>, tokio::task::JoinError>) {
    let message = match result {
        Ok(Ok(())) => return,
        Ok(Err(e)) => error_chain(&e),
        Err(e) => e.to_string(),
    };
    eprintln!("batchgate run: warning: could not push the start of job {job:?}: {message}; the command runs anyway");
}

/// Installs handlers for the forwarded signals; each one received is sent on the channel.
fn forward_signals() -> mpsc::UnboundedReceiver<Signal> {
    let (tx, rx) = mpsc::unbounded_channel();
    for (number, name) in FORWARDED {
        match signal(SignalKind::from_raw(number.as_raw())) {
            Ok(mut stream) => {
                let tx = tx.clone();
                tokio::spawn(async move {
                    while stream.recv().await.is_some() {
                        if tx.send(number).is_err() {
                            break;
                        }
                    }
                });
            }
            Err(e) => eprintln!("batchgate run: warning: cannot forward {name}: {e}"),
        }
    }
    rx
}

fn send_signal(pid: u32, sig: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        // The child may have exited in between: nothing to do then.
        let _ = rustix::process::kill_process(pid, sig);
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The shell's view of an exit status: the code, or 128 + the signal that ended the process.
fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(i32::from(EXIT_INTERNAL))
}

/// An exit code as the byte a process can exit with (codes outside 0–255 are taken mod 256,
/// as the kernel does).
fn exit_byte(code: i32) -> u8 {
    u8::try_from(code.rem_euclid(256)).unwrap_or(u8::MAX)
}

/// The error and its causes, `: `-separated.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// `NAME=VALUE`.
fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("expected NAME=VALUE, got {s:?}")),
    }
}

/// A duration as Go and Prometheus write them: `90s`, `1.5h`, `1h30m`, `250ms`, `2d`; a bare
/// number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (examples: 90s, 30m, 1h30m, 250ms, 2d)");
    let s = s.trim();
    if s.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| bad());
    }
    let mut total = 0.0_f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let number: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(bad()),
        };
        total += number * scale;
        rest = &rest[unit_end..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

fn format_duration(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = |s: &str, secs: f64| assert_eq!(parse_duration(s), Ok(Duration::from_secs_f64(secs)), "{s}");
        ok("90", 90.0);
        ok("1.5", 1.5);
        ok("90s", 90.0);
        ok("250ms", 0.25);
        ok("1h30m", 5400.0);
        ok("1.5h", 5400.0);
        ok("2d", 172_800.0);
        ok("1m0.5s", 60.5);
        for bad in ["", "s", "10x", "1h30", "-5s", "-1", "1..2s", "NaN"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn labels() {
        assert_eq!(parse_label("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_label("a="), Ok(("a".into(), String::new())));
        assert!(parse_label("=b").is_err());
        assert!(parse_label("ab").is_err());
    }

    #[test]
    fn exit_bytes() {
        assert_eq!(exit_byte(0), 0);
        assert_eq!(exit_byte(137), 137);
        assert_eq!(exit_byte(256), 0);
        assert_eq!(exit_byte(-1), 255);
    }
}
