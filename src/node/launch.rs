//! Start-up shared by the node binaries, `delicate` and
//! `delicate-executor`: the security and executor arguments, logging, the
//! runtime, and running an executor until a signal.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;

use crate::executor::node::{ExecutorNode, ExecutorSettings};
use crate::net::join::ExecutorCredentials;
use crate::security::keys::{self, DEFAULT_KEY_BITS, KeyPair, KeySettings};
use crate::security::{DEFAULT_LEVEL, LEVEL_AUTHENTICATED};

#[derive(Args)]
pub struct SecurityArgs {
    /// 1: signed joins and MAC-protected frames. 0: no authentication, so
    /// any node that reaches the QUIC address can join. Both sides must match.
    #[arg(long, env = "DELICATE_SECURITY_LEVEL", default_value_t = DEFAULT_LEVEL, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub security_level: u8,
    /// PKCS#8 PEM private key of this node [default: node-key.pem in the
    /// data directory, generated on first start].
    #[arg(long, env = "DELICATE_SECURITY_PRIVATE_KEY")]
    pub security_private_key: Option<PathBuf>,
    /// PEM public key. Scheduler: its own, checked against the private key.
    /// Executor: the scheduler's, required at security level 1.
    #[arg(long, env = "DELICATE_SECURITY_PUBLIC_KEY")]
    pub security_public_key: Option<PathBuf>,
    /// RSA modulus size, in bits, of a key generated on first start.
    #[arg(long, env = "DELICATE_SECURITY_KEY_BITS", default_value_t = DEFAULT_KEY_BITS)]
    pub security_key_bits: usize,
}

impl SecurityArgs {
    pub fn key_settings(&self) -> KeySettings {
        KeySettings {
            private_key: self.security_private_key.clone(),
            bits: self.security_key_bits,
        }
    }
}

#[derive(Args)]
pub struct ExecutorArgs {
    /// Directory of the executor's outbox and run records.
    #[arg(
        long,
        env = "DELICATE_DATA_DIR",
        default_value = "./delicate-executor-data"
    )]
    pub data_dir: PathBuf,
    /// QUIC address of the scheduler.
    #[arg(long, env = "DELICATE_SCHEDULER", default_value = "127.0.0.1:7890")]
    pub scheduler: SocketAddr,
    /// Name of the processor record to join as.
    #[arg(long, env = "DELICATE_NAME")]
    pub name: String,
    #[command(flatten)]
    pub security: SecurityArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// Settings of a node's async runtime.
#[derive(Args, Clone, Copy)]
pub struct RuntimeArgs {
    /// Threads that run the node's actors and QUIC connections, from 1 to
    /// 1024. One is the fastest on a 2-core machine, because work handed
    /// between threads costs a wake-up each time. Raise it only when one
    /// core is saturated. Store flushes, HTTP workers and key generation
    /// have threads of their own.
    #[arg(long, env = "DELICATE_WORKER_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub worker_threads: u16,
}

/// Runs `work` on a new multi-threaded runtime with `settings.worker_threads`
/// workers and turns its result into the exit code, logging and printing the
/// error of a failure.
///
/// In `bench dispatch` on 2 cores, one worker instead of two cut the CPU per
/// instance from about 190 to 100 µs on the scheduler and from about 420 to
/// 290 µs on the executors.
pub fn run_on_runtime(
    settings: RuntimeArgs,
    work: impl std::future::Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::from(settings.worker_threads))
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
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
pub fn limit_malloc_arenas() {
    // SAFETY: mallopt only changes glibc's allocator settings, and no other
    // thread of this process exists yet.
    let applied = unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    if applied == 0 {
        eprintln!("warning: failed to limit malloc to one arena");
    }
}

/// The log filter when `DELICATE_LOG` is unset. kameo opens an info span for
/// every actor and every message it handles, which cost the scheduler about
/// 5 % of its CPU under `bench dispatch`. Its warnings and errors still show.
pub const DEFAULT_LOG_FILTER: &str = "info,kameo=warn";

/// Installs the stderr log subscriber with the filter in `DELICATE_LOG`. An
/// invalid filter is reported on stderr and replaced by the default.
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;

    let filter = match std::env::var("DELICATE_LOG") {
        Ok(text) => EnvFilter::try_new(&text).unwrap_or_else(|error| {
            eprintln!(
                "warning: DELICATE_LOG={text:?} is not a valid tracing filter ({error}), so \
                 the node logs with {DEFAULT_LOG_FILTER:?}; set it to a filter such as \
                 \"info,delicate=debug\""
            );
            EnvFilter::new(DEFAULT_LOG_FILTER)
        }),
        Err(_) => EnvFilter::new(DEFAULT_LOG_FILTER),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Loads or generates a node's key pair off the async workers: generating
/// a key takes seconds.
pub async fn node_keys(data_dir: &Path, settings: KeySettings) -> anyhow::Result<KeyPair> {
    let data_dir = data_dir.to_path_buf();
    let keys = tokio::task::spawn_blocking(move || keys::load_or_generate(&data_dir, &settings))
        .await
        .context("the key loading task failed")??;
    Ok(keys)
}

pub async fn run_executor(args: ExecutorArgs) -> anyhow::Result<()> {
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

/// Loads the executor's key pair and the scheduler's public key for security level 1.
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
pub async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("failed to listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("failed to listen for SIGINT")?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("received SIGTERM"),
        _ = interrupt.recv() => tracing::info!("received SIGINT"),
    }
    Ok(())
}
