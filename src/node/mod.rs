//! Assembling nodes: the scheduler (store, actors, QUIC listener, HTTP API)
//! and standalone mode (a scheduler with an in-process executor).

pub mod launch;
pub mod listener;
pub mod scheduler;
pub mod standalone;
