//! Command-line subcommands of the `delicate` binary: the local `cron`
//! tools and the client commands that call a scheduler's HTTP API.
//!
//! Client commands use a blocking HTTP client and start neither an async
//! runtime nor logging, so they return quickly.

mod client;
pub mod cron;
mod crontab;
mod instance;
mod output;
mod resources;
mod task;

use std::process::ExitCode;

use clap::Subcommand;

/// The client commands, flattened into the binary's top-level commands.
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Create, list, show, edit, run, enable, disable and delete tasks
    Task(Box<task::TaskCommand>),
    /// List, show, read the output of and kill task instances
    Instance(instance::InstanceCommand),
    /// Manage executor groups
    Group(resources::GroupCommand),
    /// Manage executor processors
    Processor(resources::ProcessorCommand),
    /// Manage binds, the weighted links from groups to processors
    Bind(resources::BindCommand),
    /// Import crontab files as tasks
    Crontab(crontab::CrontabCommand),
}

/// Runs a client command. Returns exit status 1 with one `error:` line on
/// stderr when the server rejects the request or cannot be reached.
pub fn run(command: ClientCommand) -> ExitCode {
    let result = match command {
        ClientCommand::Task(command) => task::run(*command),
        ClientCommand::Instance(command) => instance::run(command),
        ClientCommand::Group(command) => resources::run_group(command),
        ClientCommand::Processor(command) => resources::run_processor(command),
        ClientCommand::Bind(command) => resources::run_bind(command),
        ClientCommand::Crontab(command) => crontab::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
