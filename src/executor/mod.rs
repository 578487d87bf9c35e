//! Executor node: runs task instances as child processes and reports how
//! each run ended.
//!
//! `process` supervises one child per instance and does no network I/O. The
//! node's network code starts runs and forwards their events.

mod host;
mod link;
mod mapping;
pub mod node;
pub mod outbox;
pub mod process;
mod user;
