//! Executor node: runs task instances as child processes and reports how
//! each run ended.
//!
//! `process` supervises one child per instance. It knows nothing of the
//! network. The node's network code starts runs and forwards their events.

pub mod process;
mod user;
