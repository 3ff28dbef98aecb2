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
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => batchgate::serve::init_logging(&args.log_level, &args.log_format).and_then(|()| {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(batchgate::serve::run(args)))
        }),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("batchgate: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
