use clap::{Parser, Subcommand};

/// A durable, batch-job-aware drop-in replacement for the Prometheus Pushgateway.
#[derive(Parser)]
#[command(name = "batchgate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway: accept pushes, serve /metrics and the APIs.
    Serve(batchgate::serve::ServeArgs),
    /// Run a command as a batch job: push its start, outcome, duration and exit code.
    Run(batchgate::run::RunArgs),
    /// Show every job of a running batchgate: state, last success, next run, staleness, escalation.
    Jobs(batchgate::jobs_cmd::JobsArgs),
    /// Validate a config file and show the jobs it declares, with their next expected run.
    CheckConfig { file: std::path::PathBuf },
    /// Print the built-in alerts as Prometheus alerting rules, built from the job config.
    Rules {
        #[arg(long)]
        config: std::path::PathBuf,
        /// `rules`: a Prometheus rule file; `prometheusrule`: a prometheus-operator PrometheusRule.
        #[arg(long, value_enum, default_value = "rules")]
        format: batchgate::alerts::export::Format,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => return batchgate::run::main(args),
        Command::Serve(args) => batchgate::serve::init_logging(&args.log_level, &args.log_format).and_then(|()| {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(batchgate::serve::run(args)))
        }),
        Command::Jobs(args) => batchgate::jobs_cmd::main(&args).map(|table| print!("{table}")),
        Command::CheckConfig { file } => {
            batchgate::jobs::config::check_config(&file).map(|summary| print!("{summary}"))
        }
        Command::Rules { config, format } => {
            batchgate::alerts::export::main(&config, format).map(|text| print!("{text}"))
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("batchgate: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
