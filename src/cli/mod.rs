//! Command-line subcommands of the `delicate` binary.

pub mod cron;
