//! Field rules for entities. Every error names the field and the value so
//! the API can return it as is.

use chrono::{DateTime, Utc};

use super::entities::{Bind, Frequency, Group, Processor, Task};
use super::schedule::Schedule;

/// An input value that breaks a field rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FieldError {
    /// The JSON field name, such as `machine_id` or `cron_expression`.
    pub field: String,
    /// What was wrong with which value, and what is accepted.
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

pub const MAX_NAME_LEN: usize = 200;
pub const MAX_TEXT_LEN: usize = 4096;
pub const MAX_COMMAND_LEN: usize = 64 * 1024;
pub const MAX_MACHINE_ID: u16 = 1023;
pub const MAX_WEIGHT: u8 = 100;
/// Upper bound for second-valued task fields: one year.
pub const MAX_SECONDS: u64 = 366 * 24 * 3600;
pub const MAX_RETRY_TIMES: u32 = 100;
pub const MAX_PARALLEL: u32 = 10_000;
pub const MAX_BINDS_PER_TASK: usize = 1000;

pub fn check_name(field: &str, value: &str) -> Result<(), FieldError> {
    if value.trim().is_empty() {
        return Err(FieldError::new(field, format!("{field} must not be empty")));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(FieldError::new(
            field,
            format!(
                "{field} is {} bytes long: the maximum is {MAX_NAME_LEN}",
                value.len()
            ),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            format!("{field} {value:?} contains a control character"),
        ));
    }
    Ok(())
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), FieldError> {
    if value.len() > max {
        return Err(FieldError::new(
            field,
            format!(
                "{field} is {} bytes long: the maximum is {max}",
                value.len()
            ),
        ));
    }
    Ok(())
}

fn check_seconds(field: &str, value: u64) -> Result<(), FieldError> {
    if value > MAX_SECONDS {
        return Err(FieldError::new(
            field,
            format!("{field} {value} is too large: the maximum is {MAX_SECONDS} seconds"),
        ));
    }
    Ok(())
}

pub fn check_group(group: &Group) -> Result<(), FieldError> {
    check_name("name", &group.name)?;
    check_text("description", &group.description, MAX_TEXT_LEN)?;
    check_text("tag", &group.tag, MAX_NAME_LEN)
}

pub fn check_processor(processor: &Processor) -> Result<(), FieldError> {
    check_name("name", &processor.name)?;
    check_text("description", &processor.description, MAX_TEXT_LEN)?;
    check_text("tag", &processor.tag, MAX_NAME_LEN)?;
    let host = &processor.host;
    if host.is_empty() {
        return Err(FieldError::new("host", "host must not be empty"));
    }
    if host.chars().any(char::is_whitespace) {
        return Err(FieldError::new(
            "host",
            format!("host {host:?} contains white space: give one address such as 10.0.0.5"),
        ));
    }
    check_text("host", host, MAX_NAME_LEN)?;
    if processor.machine_id > MAX_MACHINE_ID {
        return Err(FieldError::new(
            "machine_id",
            format!(
                "machine_id {} is out of range: use 0 to {MAX_MACHINE_ID}",
                processor.machine_id
            ),
        ));
    }
    Ok(())
}

/// Checks the range of a machine id before it is narrowed to `u16`.
pub fn check_machine_id(value: i64) -> Result<u16, FieldError> {
    u16::try_from(value)
        .ok()
        .filter(|id| *id <= MAX_MACHINE_ID)
        .ok_or_else(|| {
            FieldError::new(
                "machine_id",
                format!("machine_id {value} is out of range: use 0 to {MAX_MACHINE_ID}"),
            )
        })
}

/// Checks the range of a weight before it is narrowed to `u8`.
pub fn check_weight(value: i64) -> Result<u8, FieldError> {
    u8::try_from(value)
        .ok()
        .filter(|weight| *weight <= MAX_WEIGHT)
        .ok_or_else(|| {
            FieldError::new(
                "weight",
                format!("weight {value} is out of range: use 0 (drained) to {MAX_WEIGHT}"),
            )
        })
}

pub fn check_bind(bind: &Bind) -> Result<(), FieldError> {
    check_name("name", &bind.name)?;
    if bind.weight > MAX_WEIGHT {
        return Err(FieldError::new(
            "weight",
            format!(
                "weight {} is out of range: use 0 (drained) to {MAX_WEIGHT}",
                bind.weight
            ),
        ));
    }
    Ok(())
}

fn check_env_name(name: &str) -> Result<(), FieldError> {
    let valid = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(FieldError::new(
            "env",
            format!(
                "env name {name:?} is invalid: use letters, digits and _, not starting with a digit"
            ),
        ))
    }
}

fn check_user_name(value: &str) -> Result<(), FieldError> {
    let valid = !value.is_empty()
        && value.len() <= 32
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if valid {
        Ok(())
    } else {
        Err(FieldError::new(
            "run_as",
            format!("run_as {value:?} is not a valid user name"),
        ))
    }
}

/// Checks every task field and parses its schedule, so an invalid or
/// impossible cron expression is rejected when the task is saved.
pub fn check_task(task: &Task) -> Result<Schedule, FieldError> {
    check_name("name", &task.name)?;
    check_text("description", &task.description, MAX_TEXT_LEN)?;
    check_text("tag", &task.tag, MAX_NAME_LEN)?;
    if task.command.trim().is_empty() {
        return Err(FieldError::new("command", "command must not be empty"));
    }
    check_text("command", &task.command, MAX_COMMAND_LEN)?;
    if task.command.contains('\0') {
        return Err(FieldError::new("command", "command contains a NUL byte"));
    }
    check_seconds("timeout", task.timeout)?;
    check_seconds("retry_interval", task.retry_interval)?;
    check_seconds("misfire_grace", task.misfire_grace)?;
    if task.retry_times > MAX_RETRY_TIMES {
        return Err(FieldError::new(
            "retry_times",
            format!(
                "retry_times {} is too large: the maximum is {MAX_RETRY_TIMES}",
                task.retry_times
            ),
        ));
    }
    if task.maximum_parallel_runnable_num == 0 || task.maximum_parallel_runnable_num > MAX_PARALLEL
    {
        return Err(FieldError::new(
            "maximum_parallel_runnable_num",
            format!(
                "maximum_parallel_runnable_num {} is out of range: use 1 to {MAX_PARALLEL}",
                task.maximum_parallel_runnable_num
            ),
        ));
    }
    if task.frequency == (Frequency::CountDown { count: 0 }) {
        return Err(FieldError::new(
            "frequency",
            "frequency count_down with count 0 would never fire: use a count of 1 or more",
        ));
    }
    if task.binding_ids.len() > MAX_BINDS_PER_TASK {
        return Err(FieldError::new(
            "binding_ids",
            format!("a task takes at most {MAX_BINDS_PER_TASK} binds"),
        ));
    }
    for (name, value) in &task.env {
        check_env_name(name)?;
        if value.contains('\0') {
            return Err(FieldError::new(
                "env",
                format!("env {name} contains a NUL byte"),
            ));
        }
    }
    if let Some(user) = &task.run_as {
        check_user_name(user)?;
    }
    if let Some(stdin) = &task.stdin {
        check_text("stdin", stdin, MAX_COMMAND_LEN)?;
    }
    let schedule = parse_schedule(task, task.schedule_anchor)?;
    if let Ok(None) = schedule.next_after(task.updated_time) {
        return Err(FieldError::new(
            "cron_expression",
            format!(
                "cron_expression {:?} has no fire time after {}: its year field lies in the past",
                task.cron_expression, task.updated_time
            ),
        ));
    }
    Ok(schedule)
}

/// Parses a task's schedule, mapping the error to the field it belongs to.
pub fn parse_schedule(task: &Task, anchor: DateTime<Utc>) -> Result<Schedule, FieldError> {
    Schedule::parse(&task.cron_expression, &task.time_zone, anchor)
        .map_err(|e| FieldError::new(e.api_field(), e.to_string()))
}
