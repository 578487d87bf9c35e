//! The `delicate-executor` binary: the executor node alone, the same as
//! `delicate executor`, without the scheduler, API and client code, so it
//! is smaller to ship and maps less memory.

use std::process::ExitCode;

use clap::Parser;
use delicate::node::launch::{self, ExecutorArgs};

#[derive(Parser)]
#[command(
    name = "delicate-executor",
    version,
    about = "A delicate executor node: joins a scheduler over QUIC and runs the instances it is sent"
)]
struct Cli {
    #[command(flatten)]
    executor: ExecutorArgs,
}

fn main() -> ExitCode {
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    launch::limit_malloc_arenas();
    launch::init_logging();
    launch::run_on_runtime(cli.executor.runtime, launch::run_executor(cli.executor))
}
