//! The error type of schedule parsing and evaluation.

use std::fmt;

/// A cron field, named as in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CronField {
    Second,
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
    Year,
}

impl CronField {
    pub(super) fn name(self) -> &'static str {
        match self {
            CronField::Second => "second",
            CronField::Minute => "minute",
            CronField::Hour => "hour",
            CronField::DayOfMonth => "day-of-month",
            CronField::Month => "month",
            CronField::DayOfWeek => "day-of-week",
            CronField::Year => "year",
        }
    }
}

impl fmt::Display for CronField {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// An invalid cron expression or time zone, or a search for a fire time that
/// could not finish. The message names the field and the value at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct ScheduleError {
    kind: ErrorKind,
}

impl ScheduleError {
    /// "cron_expression" or "time_zone": the API field the error belongs to.
    pub fn api_field(&self) -> &'static str {
        match self.kind {
            ErrorKind::UnknownTimeZone { .. } => "time_zone",
            _ => "cron_expression",
        }
    }
}

impl From<ErrorKind> for ScheduleError {
    fn from(kind: ErrorKind) -> Self {
        ScheduleError { kind }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum ErrorKind {
    #[error(
        "invalid cron expression: the expression is empty; write 5, 6 or 7 fields or a macro such as @daily"
    )]
    Empty,

    #[error(
        "invalid cron expression \"{expression}\": found {count} fields; write 5 \
         (minute hour day-of-month month day-of-week), 6 (second first) or 7 \
         (second first, year last)"
    )]
    FieldCount { expression: String, count: usize },

    #[error("invalid {field} value \"{value}\" in \"{expression}\": must be {expected}")]
    InvalidValue {
        field: CronField,
        value: String,
        expression: String,
        expected: String,
    },

    #[error(
        "invalid {field} range \"{value}\" in \"{expression}\": the start is greater than \
         the end; write a range that wraps around as two ranges, such as {suggestion}"
    )]
    ReversedRange {
        field: CronField,
        value: String,
        expression: String,
        suggestion: String,
    },

    #[error("invalid {field} step \"{value}\" in \"{expression}\": the step must be 1-{max_step}")]
    InvalidStep {
        field: CronField,
        value: String,
        expression: String,
        max_step: u32,
    },

    #[error(
        "unknown macro \"{value}\" in \"{expression}\": use @yearly, @annually, @monthly, \
         @weekly, @daily, @midnight, @hourly or @every <duration>"
    )]
    UnknownMacro { value: String, expression: String },

    #[error("invalid @every duration \"{value}\" in \"{expression}\": {reason}")]
    InvalidInterval {
        value: String,
        expression: String,
        reason: String,
    },

    #[error(
        "cron expression \"{expression}\" can never fire: no date matches the \
         day-of-month, month{year_note} and day-of-week fields; check those fields"
    )]
    NeverFires {
        expression: String,
        year_note: &'static str,
    },

    #[error("unknown time zone \"{zone}\": use an IANA name such as Europe/Berlin")]
    UnknownTimeZone { zone: String },

    #[error("no fire time found for \"{expression}\" after {after}: {reason}")]
    SearchFailed {
        expression: String,
        after: String,
        reason: String,
    },
}
