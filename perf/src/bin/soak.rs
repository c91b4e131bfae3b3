//! The chaos soak (issue 6): `soak [--seconds S | --minutes M] [--min-idle N] [--clients C]
//! [--seed X] [--json-dir artifacts/soak]`. Exits non-zero when any check fails. See
//! docs/performance.md, section Soak. `soak worker ...` is the worker process it starts itself.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use perf::soak::{SoakArgs, WorkerArgs};

#[derive(Parser)]
#[command(
    about = "Chaos soak of the pool: claims, recycles and destroys under injected faults and worker kills"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    soak: SoakArgs,
}

#[derive(Subcommand)]
enum Command {
    /// The worker process the soak starts, kills and restarts (not for direct use).
    #[command(hide = true)]
    Worker(WorkerArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Worker(args)) => perf::soak::run_worker(args).await.map(|()| true),
        None => perf::soak::run(cli.soak).await,
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("soak: {message}");
            ExitCode::from(2)
        }
    }
}
