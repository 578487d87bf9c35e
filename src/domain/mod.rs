//! Pure rules and types: entities, schedules, routing, the instance state
//! machine, the output cap. Nothing in this module performs I/O or reads the
//! clock; callers pass the current time in.

pub mod crontab;
pub mod entities;
pub mod lifecycle;
pub mod output;
pub mod routing;
pub mod schedule;
pub mod snowflake;
pub mod time_format;
pub mod validation;
