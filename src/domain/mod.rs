//! Pure rules and types: entities, schedules, routing, the instance state
//! machine. Nothing in this module performs I/O or reads the clock; callers
//! pass the current time in.
pub mod schedule;
