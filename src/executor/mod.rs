//! Executor node: runs task instances as child processes and reports how
//! each run ended.
//!
//! `process` supervises one child per instance and does no network I/O. The
//! node's network code starts runs and forwards their events.

pub mod process;
mod user;
