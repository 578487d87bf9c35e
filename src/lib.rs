//! delicate: a distributed task scheduler.
//!
//! A scheduler node evaluates cron schedules, creates task instances, routes
//! each one by bind weight to a remote executor over QUIC, and keeps its state
//! in sled. Executor nodes run the commands and report how each run ended.

pub mod cli;
pub mod domain;
