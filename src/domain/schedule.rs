//! Placeholder schedule evaluator on the `cron` crate, replaced by the full
//! evaluator. TODO: remove when the evaluator lands.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

#[derive(Clone, Debug)]
pub struct Schedule {
    expression: String,
    zone: Tz,
    inner: cron::Schedule,
}

#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct ScheduleError {
    field: &'static str,
    message: String,
}

impl ScheduleError {
    pub fn api_field(&self) -> &'static str {
        self.field
    }
}

impl Schedule {
    pub fn parse(
        expression: &str,
        time_zone: &str,
        _anchor: DateTime<Utc>,
    ) -> Result<Schedule, ScheduleError> {
        let zone = Tz::from_str(time_zone).map_err(|_| ScheduleError {
            field: "time_zone",
            message: format!(
                "unknown time zone {time_zone:?}: use an IANA name such as Europe/Berlin"
            ),
        })?;
        let text = if expression.split_whitespace().count() == 5 {
            format!("0 {expression}")
        } else {
            expression.to_string()
        };
        let inner = cron::Schedule::from_str(&text).map_err(|e| ScheduleError {
            field: "cron_expression",
            message: format!("invalid cron expression {expression:?}: {e}"),
        })?;
        Ok(Schedule {
            expression: expression.to_string(),
            zone,
            inner,
        })
    }

    pub fn next_after(&self, after: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, ScheduleError> {
        Ok(self
            .inner
            .after(&after.with_timezone(&self.zone))
            .next()
            .map(|at| at.with_timezone(&Utc)))
    }

    pub fn iter_after(&self, after: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        self.inner
            .after(&after.with_timezone(&self.zone))
            .map(|at| at.with_timezone(&Utc))
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    pub fn time_zone(&self) -> Tz {
        self.zone
    }
}

pub fn preview(
    expression: &str,
    time_zone: &str,
    after: DateTime<Utc>,
    count: usize,
) -> Result<Vec<DateTime<Utc>>, ScheduleError> {
    let schedule = Schedule::parse(expression, time_zone, after)?;
    Ok(schedule.iter_after(after).take(count).collect())
}
