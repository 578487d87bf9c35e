//! The `delicate` binary: nodes (`standalone`, `scheduler`, `executor`) and
//! local tools.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use delicate::cli::cron::{CronPreviewArgs, run_preview};
use delicate::executor::node::{ExecutorNode, ExecutorSettings};
use delicate::net::join::ExecutorCredentials;
use delicate::node::scheduler::{SchedulerConfig, SchedulerNode};
use delicate::node::standalone;
use delicate::security::keys::{self, DEFAULT_KEY_BITS, KeyPair, KeySettings};
use delicate::security::{DEFAULT_LEVEL, LEVEL_AUTHENTICATED};

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
}

#[derive(Args)]
struct SecurityArgs {
    /// 1: signed joins and MAC-protected frames. 0: no authentication, so
    /// any node that reaches the QUIC address can join. Both sides must match.
    #[arg(long, env = "DELICATE_SECURITY_LEVEL", default_value_t = DEFAULT_LEVEL, value_parser = clap::value_parser!(u8).range(0..=1))]
    security_level: u8,
    /// PKCS#8 PEM private key of this node [default: node-key.pem in the
    /// data directory, generated on first start].
    #[arg(long, env = "DELICATE_SECURITY_PRIVATE_KEY")]
    security_private_key: Option<PathBuf>,
    /// PEM public key. Scheduler: its own, checked against the private key.
    /// Executor: the scheduler's, required at security level 1.
    #[arg(long, env = "DELICATE_SECURITY_PUBLIC_KEY")]
    security_public_key: Option<PathBuf>,
    /// RSA modulus size, in bits, of a key generated on first start.
    #[arg(long, env = "DELICATE_SECURITY_KEY_BITS", default_value_t = DEFAULT_KEY_BITS)]
    security_key_bits: usize,
}

impl SecurityArgs {
    fn key_settings(&self) -> KeySettings {
        KeySettings {
            private_key: self.security_private_key.clone(),
            bits: self.security_key_bits,
        }
    }
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

#[derive(Args)]
struct ExecutorArgs {
    /// Directory of the executor's outbox and run records.
    #[arg(
        long,
        env = "DELICATE_DATA_DIR",
        default_value = "./delicate-executor-data"
    )]
    data_dir: PathBuf,
    /// QUIC address of the scheduler.
    #[arg(long, env = "DELICATE_SCHEDULER", default_value = "127.0.0.1:7890")]
    scheduler: SocketAddr,
    /// Name of the processor record to join as.
    #[arg(long, env = "DELICATE_NAME")]
    name: String,
    #[command(flatten)]
    security: SecurityArgs,
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
        limit_malloc_arenas();
    }
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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
            Command::Cron(_) | Command::Keygen(_) | Command::Client(_) | Command::Bench(_) => {
                unreachable!("handled before the runtime starts")
            }
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

/// Makes every thread of this process allocate from one glibc malloc arena.
///
/// By default glibc gives each thread that allocates its own arena, up to 8
/// per core. An idle executor has about 13 threads (tokio workers and sled's
/// thread pool), and in one measurement their arenas held about 200 KiB of
/// its 12 MiB resident memory. An executor allocates little, so sharing one arena's lock costs
/// it nothing measurable. Must run before the runtime starts its threads.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    // SAFETY: mallopt only changes glibc's allocator settings, and no other
    // thread of this process exists yet.
    let applied = unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    if applied == 0 {
        eprintln!("warning: failed to limit malloc to one arena");
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

/// Loads or generates a node's key pair off the async workers: generating
/// a key takes seconds.
async fn node_keys(data_dir: &Path, settings: KeySettings) -> anyhow::Result<KeyPair> {
    let data_dir = data_dir.to_path_buf();
    let keys = tokio::task::spawn_blocking(move || keys::load_or_generate(&data_dir, &settings))
        .await
        .context("the key loading task failed")??;
    Ok(keys)
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

async fn run_executor(args: ExecutorArgs) -> anyhow::Result<()> {
    let credentials = match args.security.security_level {
        LEVEL_AUTHENTICATED => Some(executor_credentials(&args).await?),
        _ => None,
    };
    let mut settings = ExecutorSettings::new(args.data_dir, args.scheduler, args.name);
    settings.security_level = args.security.security_level;
    settings.credentials = credentials;
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

/// The executor's key pair and the scheduler's public key at security level 1.
async fn executor_credentials(args: &ExecutorArgs) -> anyhow::Result<ExecutorCredentials> {
    let Some(path) = &args.security.security_public_key else {
        anyhow::bail!(
            "security level 1 needs the scheduler's public key: set DELICATE_SECURITY_PUBLIC_KEY \
             (or --security-public-key) to a copy of the scheduler's node-key.pub.pem, which the \
             scheduler writes into its data directory and logs at start-up; or run both nodes \
             with DELICATE_SECURITY_LEVEL=0"
        );
    };
    let scheduler_key = keys::read_public(path)?;
    tracing::info!(
        key.path = %path.display(),
        key.fingerprint = %keys::fingerprint(&scheduler_key),
        "security.scheduler_key_loaded"
    );
    let keys = node_keys(&args.data_dir, args.security.key_settings()).await?;
    Ok(ExecutorCredentials {
        keys: Arc::new(keys),
        scheduler_key,
    })
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
