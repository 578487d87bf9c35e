//! The `delicate` binary: nodes (`standalone`, `scheduler`, `executor`) and
//! local tools.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use delicate::cli::cron::{CronPreviewArgs, run_preview};
use delicate::executor::node::{ExecutorNode, ExecutorSettings};
use delicate::net::join::ExecutorCredentials;
use delicate::node::launch::{
    ExecutorArgs, RuntimeArgs, SecurityArgs, init_logging, node_keys, run_executor, run_on_runtime,
    wait_for_signal,
};
use delicate::node::scheduler::{SchedulerConfig, SchedulerNode};
use delicate::node::standalone;
use delicate::security::keys::{DEFAULT_KEY_BITS, KeyPair, KeySettings};

/// The scheduler allocates and frees many small buffers per instance (sled
/// nodes, encoded records, frames). glibc's malloc spent about a quarter of
/// the scheduler's CPU on them in a `bench dispatch` profile, and mimalloc's
/// per-thread free lists make them cheap.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "delicate",
    version,
    about = "A distributed task scheduler: cron schedules, weighted routing to executors over QUIC, state in sled"
)]
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
    /// Write a new RSA key pair for a node: node-key.pem (PKCS#8, mode 0600)
    /// and node-key.pub.pem.
    Keygen(KeygenArgs),
    /// Work with cron expressions, locally.
    #[command(subcommand)]
    Cron(CronCommand),
    #[command(flatten)]
    Client(delicate::cli::ClientCommand),
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
    #[command(flatten)]
    security: SecurityArgs,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

#[derive(Args)]
struct KeygenArgs {
    /// Directory to write the key files into; it is created if missing.
    #[arg(long)]
    out: PathBuf,
    /// RSA modulus size in bits.
    #[arg(long, env = "DELICATE_SECURITY_KEY_BITS", default_value_t = DEFAULT_KEY_BITS)]
    bits: usize,
}

fn main() -> ExitCode {
    let _ = dotenvy::dotenv();
    let cli = match Cli::parse().command {
        Command::Client(command) => return delicate::cli::run(command),
        command => Cli { command },
    };
    if let Command::Cron(CronCommand::Preview(args)) = &cli.command {
        return run_preview(args);
    }
    if let Command::Keygen(args) = &cli.command {
        return run_keygen(args);
    }
    let cli = match cli.command {
        Command::Bench(args) => return delicate::bench::run(args),
        command => Cli { command },
    };
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if matches!(cli.command, Command::Executor(_)) {
        delicate::node::launch::limit_malloc_arenas();
    }
    init_logging();
    let runtime = match &cli.command {
        Command::Standalone(args) | Command::Scheduler(args) => args.runtime,
        Command::Executor(args) => args.runtime,
        Command::Cron(_) | Command::Keygen(_) | Command::Client(_) | Command::Bench(_) => {
            unreachable!("handled before the runtime starts")
        }
    };
    run_on_runtime(runtime, async {
        match cli.command {
            Command::Standalone(args) => run_standalone(args).await,
            Command::Scheduler(args) => run_scheduler(args).await,
            Command::Executor(args) => run_executor(args).await,
            Command::Cron(_) | Command::Keygen(_) | Command::Client(_) | Command::Bench(_) => {
                unreachable!("handled before the runtime starts")
            }
        }
    })
}

fn scheduler_config(args: &SchedulerArgs, data_dir: PathBuf) -> SchedulerConfig {
    let mut config =
        SchedulerConfig::new(data_dir, args.http, args.quic, args.security.security_level);
    config.keys = args.security.key_settings();
    config.public_key = args.security.security_public_key.clone();
    config
}

fn run_keygen(args: &KeygenArgs) -> ExitCode {
    let written = std::fs::create_dir_all(&args.out)
        .with_context(|| format!("failed to create {}", args.out.display()))
        .and_then(|()| Ok(KeyPair::generate(args.bits)?))
        .and_then(|keys| Ok((keys.write_to(&args.out)?, keys)));
    match written {
        Ok(((private, public), keys)) => {
            println!("private key: {} (mode 0600)", private.display());
            println!("public key: {}", public.display());
            println!("fingerprint: {}", keys.fingerprint());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_scheduler(args: SchedulerArgs) -> anyhow::Result<()> {
    let node = SchedulerNode::start(scheduler_config(&args, args.data_dir.clone())).await?;
    wait_for_signal().await?;
    node.shutdown().await;
    Ok(())
}

async fn run_standalone(args: SchedulerArgs) -> anyhow::Result<()> {
    let node =
        SchedulerNode::start(scheduler_config(&args, args.data_dir.join("scheduler"))).await?;
    let executor_dir = args.data_dir.join("executor");
    // The in-process executor has its own key pair and is handed the
    // scheduler's public key directly.
    let credentials = match &node.public_key {
        Some(scheduler_key) => {
            let keys = node_keys(
                &executor_dir,
                KeySettings {
                    private_key: None,
                    bits: args.security.security_key_bits,
                },
            )
            .await?;
            Some(ExecutorCredentials {
                keys: Arc::new(keys),
                scheduler_key: scheduler_key.clone(),
            })
        }
        None => None,
    };
    let executor_key = credentials
        .as_ref()
        .map(|credentials| credentials.keys.public_key());
    standalone::bootstrap(&node, executor_key)
        .context("failed to create the default group, processor and bind")?;

    let mut settings =
        ExecutorSettings::new(executor_dir, node.quic_addr, standalone::LOCAL_PROCESSOR);
    settings.security_level = args.security.security_level;
    settings.credentials = credentials;
    let executor = ExecutorNode::start(settings)
        .await
        .context("failed to start the in-process executor")?;
    tracing::info!(http.addr = %node.http_addr, "standalone.ready: create a task with POST /api/v1/tasks");

    wait_for_signal().await?;
    node.stop_firing().await;
    if let Err(error) = executor.shutdown().await {
        tracing::error!(%error, "executor shutdown failed");
    }
    node.shutdown().await;
    Ok(())
}
