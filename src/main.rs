//! The `delicate` binary: nodes (`standalone`, `scheduler`, `executor`) and
//! local tools.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use delicate::cli::cron::{CronPreviewArgs, run_preview};
use delicate::executor::node::{ExecutorNode, ExecutorSettings};
use delicate::node::scheduler::{SchedulerConfig, SchedulerNode};
use delicate::node::standalone;

#[derive(Parser)]
#[command(name = "delicate", version, about = "A distributed task scheduler: cron schedules, weighted routing to executors over QUIC, state in sled")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scheduler and one in-process executor: the embedded default.
    Standalone(SchedulerArgs),
    /// Run a scheduler node: HTTP API, QUIC listener, cron, store.
    Scheduler(SchedulerArgs),
    /// Run an executor node that joins a scheduler and runs its instances.
    Executor(ExecutorArgs),
    /// Work with cron expressions, locally.
    #[command(subcommand)]
    Cron(CronCommand),
    /// Measure a scenario on nodes this command starts on loopback.
    Bench(delicate::bench::BenchArgs),
}

#[derive(Subcommand)]
enum CronCommand {
    /// Print the next fire times of a cron expression, in UTC.
    Preview(CronPreviewArgs),
}

#[derive(Args)]
struct SchedulerArgs {
    /// Directory of the node's store, certificates and keys.
    #[arg(long, env = "DELICATE_DATA_DIR", default_value = "./delicate-data")]
    data_dir: PathBuf,
    /// HTTP address of the API (port 0 picks a free port).
    #[arg(long, env = "DELICATE_HTTP", default_value = "127.0.0.1:8090")]
    http: SocketAddr,
    /// QUIC address executors join (port 0 picks a free port).
    #[arg(long, env = "DELICATE_QUIC", default_value = "127.0.0.1:7890")]
    quic: SocketAddr,
    /// 0: executors join without authentication.
    #[arg(long, env = "DELICATE_SECURITY_LEVEL", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    security_level: u8,
}

#[derive(Args)]
struct ExecutorArgs {
    /// Directory of the executor's outbox and run records.
    #[arg(long, env = "DELICATE_DATA_DIR", default_value = "./delicate-executor-data")]
    data_dir: PathBuf,
    /// QUIC address of the scheduler.
    #[arg(long, env = "DELICATE_SCHEDULER", default_value = "127.0.0.1:7890")]
    scheduler: SocketAddr,
    /// Name of the processor record to join as.
    #[arg(long, env = "DELICATE_NAME")]
    name: String,
    /// Must match the scheduler's level.
    #[arg(long, env = "DELICATE_SECURITY_LEVEL", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    security_level: u8,
}

fn main() -> ExitCode {
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    if let Command::Cron(CronCommand::Preview(args)) = &cli.command {
        return run_preview(args);
    }
    if let Command::Bench(args) = cli.command {
        return delicate::bench::run(args);
    }
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Standalone(args) => run_standalone(args).await,
            Command::Scheduler(args) => run_scheduler(args).await,
            Command::Executor(args) => run_executor(args).await,
            Command::Cron(_) | Command::Bench(_) => unreachable!("handled before the runtime starts"),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DELICATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn scheduler_config(args: &SchedulerArgs, data_dir: PathBuf) -> SchedulerConfig {
    SchedulerConfig::new(data_dir, args.http, args.quic, args.security_level)
}

async fn run_scheduler(args: SchedulerArgs) -> anyhow::Result<()> {
    let node = SchedulerNode::start(scheduler_config(&args, args.data_dir.clone())).await?;
    wait_for_signal().await?;
    node.shutdown().await;
    Ok(())
}

async fn run_standalone(args: SchedulerArgs) -> anyhow::Result<()> {
    let node = SchedulerNode::start(scheduler_config(&args, args.data_dir.join("scheduler"))).await?;
    standalone::bootstrap(&node).context("failed to create the default group, processor and bind")?;

    let mut settings = ExecutorSettings::new(args.data_dir.join("executor"), node.quic_addr, standalone::LOCAL_PROCESSOR);
    settings.security_level = args.security_level;
    let executor = ExecutorNode::start(settings).await.context("failed to start the in-process executor")?;
    tracing::info!(http.addr = %node.http_addr, "standalone.ready: create a task with POST /api/v1/tasks");

    wait_for_signal().await?;
    if let Err(error) = executor.shutdown().await {
        tracing::error!(%error, "executor shutdown failed");
    }
    node.shutdown().await;
    Ok(())
}

async fn run_executor(args: ExecutorArgs) -> anyhow::Result<()> {
    let mut settings = ExecutorSettings::new(args.data_dir, args.scheduler, args.name);
    settings.security_level = args.security_level;
    let mut executor = ExecutorNode::start(settings).await?;
    tokio::select! {
        signal = wait_for_signal() => {
            signal?;
            executor.shutdown().await?;
        }
        ended = executor.wait() => ended?,
    }
    Ok(())
}

/// Waits for SIGINT or SIGTERM.
async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("failed to listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("failed to listen for SIGINT")?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("received SIGTERM"),
        _ = interrupt.recv() => tracing::info!("received SIGINT"),
    }
    Ok(())
}
