use std::process::ExitCode;

use clap::{Parser, Subcommand};
use delicate::cli::cron::{CronPreviewArgs, run_preview};

/// delicate: a distributed task scheduler.
#[derive(Debug, Parser)]
#[command(name = "delicate", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with cron expressions
    #[command(subcommand)]
    Cron(CronCommand),
}

#[derive(Debug, Subcommand)]
enum CronCommand {
    /// Print the next fire times of a cron expression, in UTC
    Preview(CronPreviewArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Cron(CronCommand::Preview(args)) => run_preview(&args),
    }
}
