//! Cron schedules: parsing and evaluation of fire times in a time zone.
//!
//! The dialect:
//! - 5 fields (minute hour day-of-month month day-of-week), 6 (second first)
//!   or 7 (second first, year 1970-2099 last);
//! - lists, ranges and steps, with month and weekday names in any case;
//! - weekdays 0-7, where 0 and 7 are Sunday and 1 is Monday;
//! - `?`, `L`, `L-N`, `NW` and `LW` in day-of-month, `?`, `NL` and `N#M` in
//!   day-of-week;
//! - the macros `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`,
//!   `@midnight`, `@hourly` and `@every <duration>` (units d, h, m, s).
//!
//! Day matching follows Vixie cron: when both day fields are restricted, a
//! day matches if either field matches. A field counts as unrestricted only
//! when it is exactly `*` or `?` (so `*/2` restricts).
//!
//! Daylight saving time: a local time skipped by a spring-forward change
//! fires once, at the first instant after the gap. A local time repeated by a
//! fall-back change fires once, at its first occurrence, when the hour field
//! names hours outright (`2`, `1,3`, `1-3`); it fires at both occurrences
//! when the hour field contains `*` or a step (`*`, `*/2`, `1-5/2`).
//! `@every` counts elapsed seconds from its anchor, so daylight saving
//! changes do not move it.
//!
//! Evaluation is pure: it reads neither the clock nor the host's time zone,
//! and its result depends only on the expression, the zone and the instant.

mod error;
mod fields;
mod parse;
mod zone;

use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use chrono_tz::Tz;

use error::ErrorKind;
pub use error::ScheduleError;
use fields::{CalendarMatch, CronFields, SEARCH_YEARS};
use parse::Parsed;
use zone::Resolution;

/// Rounds of resolving a local candidate time before the search gives up.
/// A candidate is passed over only inside a fall-back repeat, which the
/// search then skips whole, so a few rounds always suffice.
const MAX_RESOLVE_ROUNDS: usize = 8;

const OUT_OF_RANGE: &str = "the search left the date range that chrono supports";

/// A parsed cron expression bound to a time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    expression: String,
    time_zone: Tz,
    rule: Rule,
}

#[derive(Debug, Clone, PartialEq)]
enum Rule {
    Cron(CronFields),
    /// Fires at `anchor + k * interval` for k >= 1, both in whole seconds.
    Every {
        anchor: i64,
        interval: i64,
    },
}

impl Schedule {
    /// Parses `expression` in the IANA zone `time_zone`.
    ///
    /// `anchor` is the instant `@every` intervals count from; other
    /// expressions ignore it. Sub-second parts of the anchor are dropped.
    ///
    /// An expression whose fields no date can satisfy, such as `0 0 30 2 *`,
    /// is rejected. A year field lying wholly in the past is accepted because
    /// parsing does not know the current time: `next_after` returns `Ok(None)`.
    pub fn parse(
        expression: &str,
        time_zone: &str,
        anchor: DateTime<Utc>,
    ) -> Result<Schedule, ScheduleError> {
        let zone = Tz::from_str(time_zone).map_err(|_| ErrorKind::UnknownTimeZone {
            zone: time_zone.to_owned(),
        })?;

        let rule = match parse::parse_expression(expression)? {
            Parsed::Cron(fields) => Rule::Cron(fields),
            Parsed::Every(interval) => Rule::Every {
                anchor: anchor.timestamp(),
                interval,
            },
        };

        Ok(Schedule {
            expression: expression.to_owned(),
            time_zone: zone,
            rule,
        })
    }

    /// Returns the first fire instant strictly after `after`, in whole seconds.
    ///
    /// Returns `Ok(None)` only when the schedule has no fire left because its
    /// year field lies before `after`. The search scans at most 400 years, or
    /// up to the last year of the year field. It returns an error when it
    /// leaves chrono's date range or finds nothing within that span.
    pub fn next_after(&self, after: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, ScheduleError> {
        let timestamp = match &self.rule {
            Rule::Every { anchor, interval } => {
                next_interval(*anchor, *interval, after.timestamp())
                    .ok_or_else(|| self.search_failed(after, OUT_OF_RANGE))?
            }
            Rule::Cron(fields) => match self.next_cron(fields, after)? {
                Some(timestamp) => timestamp,
                None => return Ok(None),
            },
        };
        DateTime::from_timestamp(timestamp, 0)
            .map(Some)
            .ok_or_else(|| self.search_failed(after, OUT_OF_RANGE))
    }

    /// Returns the fire instants after `after` in increasing order. The
    /// iterator ends when the schedule has no fire left or a search fails.
    pub fn iter_after(&self, after: DateTime<Utc>) -> FireTimes<'_> {
        FireTimes {
            schedule: self,
            cursor: Some(after),
        }
    }

    /// Returns the expression as it was given to [`Schedule::parse`].
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// Returns the zone the expression is evaluated in.
    pub fn time_zone(&self) -> Tz {
        self.time_zone
    }

    fn search_failed(&self, after: DateTime<Utc>, reason: &str) -> ScheduleError {
        ErrorKind::SearchFailed {
            expression: self.expression.clone(),
            after: after.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            reason: reason.to_owned(),
        }
        .into()
    }

    /// Finds the first cron fire strictly after `after`, as a Unix timestamp.
    /// Returns None when the year field is exhausted.
    fn next_cron(
        &self,
        fields: &CronFields,
        after: DateTime<Utc>,
    ) -> Result<Option<i64>, ScheduleError> {
        let zone = self.time_zone;
        let out_of_range = || self.search_failed(after, OUT_OF_RANGE);
        let after_second = after.timestamp();
        let start = after_second.checked_add(1).ok_or_else(out_of_range)?;
        let start_local = zone::local_time(zone, start).ok_or_else(out_of_range)?;
        let after_local = zone::local_time(zone, after_second).ok_or_else(out_of_range)?;

        // At a spring-forward instant the local clock jumps past the gap, but
        // times inside the gap still fire at that instant, so the naive
        // search begins just after the local time of `after`.
        let mut cursor = next_second(after_local)
            .ok_or_else(out_of_range)?
            .min(start_local);

        let repeat = if fields.hour_is_fixed {
            None
        } else {
            self.second_pass_of_repeat(fields, start, start_local)
        };

        for _ in 0..MAX_RESOLVE_ROUNDS {
            let candidate = match fields.next_match(cursor) {
                CalendarMatch::Found(candidate) => candidate,
                CalendarMatch::YearsExhausted => return Ok(repeat),
                CalendarMatch::NotFound => {
                    let reason = format!(
                        "no date matched within {SEARCH_YEARS} years or before the calendar ends"
                    );
                    return Err(self.search_failed(after, &reason));
                }
            };

            let accepted = match zone::resolve(zone, candidate) {
                Resolution::Single(instant) => (instant >= start).then_some(instant),
                Resolution::Skipped => zone::gap_end(zone, candidate).filter(|&end| end >= start),
                Resolution::Repeated(earlier, later) => {
                    if earlier >= start {
                        Some(earlier)
                    } else if !fields.hour_is_fixed && later >= start {
                        Some(later)
                    } else {
                        // Every time in this repeat has passed or fires only
                        // once, so the search resumes where the repeat ends.
                        let end = repeat_end(zone, earlier, later);
                        cursor = end.max(next_second(candidate).ok_or_else(out_of_range)?);
                        continue;
                    }
                }
            };

            match accepted {
                Some(instant) => {
                    let first = repeat.map_or(instant, |repeated| repeated.min(instant));
                    return Ok(Some(first));
                }
                None => cursor = next_second(candidate).ok_or_else(out_of_range)?,
            }
        }

        let reason = format!("no candidate time resolved in {MAX_RESOLVE_ROUNDS} rounds");
        Err(self.search_failed(after, &reason))
    }

    /// When `start` lies in the first pass of a fall-back repeat, local times
    /// of that repeat earlier than `start_local` still occur once more after
    /// the transition. Returns the first of those second occurrences that
    /// matches, if any.
    fn second_pass_of_repeat(
        &self,
        fields: &CronFields,
        start: i64,
        start_local: NaiveDateTime,
    ) -> Option<i64> {
        let zone = self.time_zone;
        let Resolution::Repeated(earlier, later) = zone::resolve(zone, start_local) else {
            return None;
        };
        if earlier != start {
            return None;
        }

        let transition = zone::transition_between(zone, earlier, later);
        let later_offset = zone::offset_at(zone, transition)?;
        let repeat_start = zone::local_time(zone, transition)?;
        let CalendarMatch::Found(candidate) = fields.next_match(repeat_start) else {
            return None;
        };
        (candidate < start_local).then(|| zone::naive_seconds(candidate) - later_offset)
    }
}

/// Returns the local time at which the fall-back repeat containing the
/// instants `earlier` and `later` ends: the wall-clock time just before the
/// transition, plus one second.
fn repeat_end(zone: Tz, earlier: i64, later: i64) -> NaiveDateTime {
    let transition = zone::transition_between(zone, earlier, later);
    let earlier_offset = zone::offset_at(zone, earlier).unwrap_or_default();
    DateTime::from_timestamp(transition + earlier_offset, 0)
        .map(|end| end.naive_utc())
        .unwrap_or(NaiveDateTime::MAX)
}

fn next_second(naive: NaiveDateTime) -> Option<NaiveDateTime> {
    naive.checked_add_signed(TimeDelta::seconds(1))
}

/// Returns the first `anchor + k * interval` (k >= 1) after `after`.
/// Returns None when the result overflows.
fn next_interval(anchor: i64, interval: i64, after: i64) -> Option<i64> {
    let first = anchor.checked_add(interval)?;
    if after < first {
        return Some(first);
    }
    let steps = (after - anchor) / interval + 1;
    anchor.checked_add(steps.checked_mul(interval)?)
}

/// The fire instants of a schedule after a given instant; see [`Schedule::iter_after`].
#[derive(Debug, Clone)]
pub struct FireTimes<'a> {
    schedule: &'a Schedule,
    cursor: Option<DateTime<Utc>>,
}

impl Iterator for FireTimes<'_> {
    type Item = DateTime<Utc>;

    fn next(&mut self) -> Option<DateTime<Utc>> {
        let after = self.cursor?;
        let next = self.schedule.next_after(after).ok().flatten();
        self.cursor = next;
        next
    }
}

/// Returns the next `count` fire times after `after`, or fewer when the
/// schedule runs out. `@every` intervals count from `after`.
///
/// This is the one preview used by the CLI, the HTTP API and a task's next
/// fire times. It runs one search per fire time, so callers bound `count`
/// (the CLI accepts at most 1000).
pub fn preview(
    expression: &str,
    time_zone: &str,
    after: DateTime<Utc>,
    count: usize,
) -> Result<Vec<DateTime<Utc>>, ScheduleError> {
    let schedule = Schedule::parse(expression, time_zone, after)?;
    let mut fire_times = Vec::with_capacity(count.min(1_000));
    let mut cursor = after;
    while fire_times.len() < count {
        match schedule.next_after(cursor)? {
            Some(next) => {
                fire_times.push(next);
                cursor = next;
            }
            None => break,
        }
    }
    Ok(fire_times)
}
