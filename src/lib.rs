//! delicate: a distributed task scheduler.
//!
//! A scheduler node evaluates cron schedules, creates task instances, routes
//! each one by bind weight to a remote executor over QUIC, and keeps its state
//! in sled. Executor nodes run the commands and report how each run ended.

pub mod actors;
pub mod bench;
pub mod cli;
pub mod domain;
pub mod executor;
pub mod http;
pub mod metrics;
pub mod net;
pub mod node;
pub mod security;
pub mod storage;
