//! Parsed cron fields as bit sets, and the calendar search over them.
//!
//! Everything here works on naive local date-times: time zones enter only in
//! the parent module.

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

/// The first and last year a year field may name.
pub(super) const YEAR_MIN: i32 = 1970;
pub(super) const YEAR_MAX: i32 = 2099;

/// Years scanned ahead when the expression has no year field. The Gregorian
/// calendar repeats every 400 years (146,097 days, a whole number of weeks),
/// so a day rule that matches any date matches one within this span.
pub(super) const SEARCH_YEARS: i32 = 400;

/// The result of a calendar search.
pub(super) enum CalendarMatch {
    Found(NaiveDateTime),
    /// Every year of the year field lies before the search start.
    YearsExhausted,
    /// Nothing matched within [`SEARCH_YEARS`] or the calendar's range ended.
    NotFound,
}

/// Day-of-month items other than plain numbers, each as a bit set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct DayOfMonthRule {
    /// Bits 1..=31: plain day numbers.
    pub(super) days: u32,
    /// `L`: the last day of the month.
    pub(super) last: bool,
    /// Bits 1..=30: `L-N`, N days before the last day.
    pub(super) before_last: u32,
    /// Bits 1..=31: `NW`, the weekday nearest to day N within the month.
    pub(super) nearest_weekday: u32,
    /// `LW`: the last weekday (Monday to Friday) of the month.
    pub(super) last_weekday: bool,
}

/// Day-of-week items, weekdays numbered 0 = Sunday to 6 = Saturday.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct DayOfWeekRule {
    /// Bits 0..=6: every such weekday.
    pub(super) weekdays: u8,
    /// Bits 0..=6: `NL`, the last such weekday of the month.
    pub(super) last: u8,
    /// For each weekday, bits 0..=4: `N#M`, the M-th such weekday (M = bit + 1).
    pub(super) nth: [u8; 7],
}

/// A cron expression after parsing: one bit set per field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CronFields {
    /// Bits 0..=59.
    pub(super) seconds: u64,
    /// Bits 0..=59.
    pub(super) minutes: u64,
    /// Bits 0..=23.
    pub(super) hours: u64,
    /// None when the field is `*` or `?`.
    pub(super) day_of_month: Option<DayOfMonthRule>,
    /// Bits 1..=12.
    pub(super) months: u64,
    /// None when the field is `*` or `?`.
    pub(super) day_of_week: Option<DayOfWeekRule>,
    /// Allowed years in ascending order; None when there is no year field or it is `*`.
    pub(super) years: Option<Vec<i32>>,
    /// True when the hour field names hours outright (no `*` and no step), so
    /// a local time repeated by a fall-back change fires only once.
    pub(super) hour_is_fixed: bool,
}

/// Bits 0, 7, 14, 21 and 28: one weekday in every week of a month.
const WEEKLY: u64 = 1 | 1 << 7 | 1 << 14 | 1 << 21 | 1 << 28;

/// Returns the lowest set bit of `mask` at or above `from`.
pub(super) fn next_bit(mask: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let remaining = mask & (u64::MAX << from);
    (remaining != 0).then(|| remaining.trailing_zeros())
}

/// Returns the weekday (0 = Sunday) of `day` in a month whose first day falls on `first_weekday`.
fn weekday_of(day: u32, first_weekday: u32) -> u32 {
    (first_weekday + day - 1) % 7
}

/// Returns the weekday nearest to `day` without leaving the month. A Saturday
/// moves to Friday, but a Saturday 1st moves to Monday the 3rd. A Sunday moves
/// to Monday, but a Sunday that ends the month moves to the Friday before.
fn nearest_weekday(day: u32, length: u32, first_weekday: u32) -> u32 {
    match weekday_of(day, first_weekday) {
        6 if day == 1 => 3,
        6 => day - 1,
        0 if day == length => day - 2,
        0 => day + 1,
        _ => day,
    }
}

impl DayOfMonthRule {
    fn mask(&self, length: u32, first_weekday: u32) -> u64 {
        let mut mask = u64::from(self.days);
        if self.last {
            mask |= 1 << length;
        }
        if self.before_last != 0 {
            for offset in 1..length {
                if self.before_last & (1 << offset) != 0 {
                    mask |= 1 << (length - offset);
                }
            }
        }
        if self.nearest_weekday != 0 {
            for day in 1..=length {
                if self.nearest_weekday & (1 << day) != 0 {
                    mask |= 1 << nearest_weekday(day, length, first_weekday);
                }
            }
        }
        if self.last_weekday {
            mask |= 1 << nearest_weekday(length, length, first_weekday);
        }
        mask
    }
}

impl DayOfWeekRule {
    fn mask(&self, length: u32, first_weekday: u32) -> u64 {
        let mut mask = 0;
        for weekday in 0..7 {
            let first_day = 1 + (weekday + 7 - first_weekday) % 7;
            if self.weekdays & (1 << weekday) != 0 {
                mask |= WEEKLY << first_day;
            }
            if self.last & (1 << weekday) != 0 {
                let last_day = length - (weekday_of(length, first_weekday) + 7 - weekday) % 7;
                mask |= 1 << last_day;
            }
            for occurrence in 0..5 {
                if self.nth[weekday as usize] & (1 << occurrence) != 0 {
                    mask |= 1 << (first_day + 7 * occurrence);
                }
            }
        }
        mask
    }
}

/// Returns the number of days in `month` of `year`, or None outside chrono's calendar.
fn month_length(year: i32, month: u32) -> Option<u32> {
    let first = NaiveDate::from_ymd_opt(year, month, 1)?;
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)?
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)?
    };
    u32::try_from(next.signed_duration_since(first).num_days()).ok()
}

impl CronFields {
    /// Returns the matching days of a month as bits 1..=31, applying the Vixie
    /// rule: when both day fields are restricted, a day matches if either does.
    pub(super) fn day_mask(&self, length: u32, first_weekday: u32) -> u64 {
        let valid = (1u64 << (length + 1)) - 2;
        let mask = match (&self.day_of_month, &self.day_of_week) {
            (None, None) => valid,
            (Some(dom), None) => dom.mask(length, first_weekday),
            (None, Some(dow)) => dow.mask(length, first_weekday),
            (Some(dom), Some(dow)) => {
                dom.mask(length, first_weekday) | dow.mask(length, first_weekday)
            }
        };
        mask & valid
    }

    /// Reports whether any date can match. Without a year field every
    /// combination of month length and first weekday occurs in the calendar,
    /// so those are checked instead of real years.
    pub(super) fn can_match_some_date(&self) -> bool {
        match &self.years {
            Some(years) => years.iter().any(|&year| {
                (1..=12).any(|month| {
                    self.months & (1 << month) != 0 && self.month_mask(year, month) != 0
                })
            }),
            None => (1..=12u32).any(|month| {
                let lengths: &[u32] = match month {
                    2 => &[28, 29],
                    4 | 6 | 9 | 11 => &[30],
                    _ => &[31],
                };
                self.months & (1 << month) != 0
                    && lengths.iter().any(|&length| {
                        (0..7).any(|first_weekday| self.day_mask(length, first_weekday) != 0)
                    })
            }),
        }
    }

    fn month_mask(&self, year: i32, month: u32) -> u64 {
        let (Some(length), Some(first)) = (
            month_length(year, month),
            NaiveDate::from_ymd_opt(year, month, 1),
        ) else {
            return 0;
        };
        self.day_mask(length, first.weekday().num_days_from_sunday())
    }

    /// Returns the first time of day at or after `from` that the second,
    /// minute and hour fields match.
    fn first_time_from(&self, hour: u32, minute: u32, second: u32) -> Option<NaiveTime> {
        let first_second = next_bit(self.seconds, 0)?;
        let first_minute = next_bit(self.minutes, 0)?;

        let found_hour = next_bit(self.hours, hour)?;
        if found_hour > hour {
            return NaiveTime::from_hms_opt(found_hour, first_minute, first_second);
        }

        if let Some(found_minute) = next_bit(self.minutes, minute) {
            if found_minute > minute {
                return NaiveTime::from_hms_opt(hour, found_minute, first_second);
            }
            if let Some(found_second) = next_bit(self.seconds, second) {
                return NaiveTime::from_hms_opt(hour, minute, found_second);
            }
            if let Some(later_minute) = next_bit(self.minutes, minute + 1) {
                return NaiveTime::from_hms_opt(hour, later_minute, first_second);
            }
        }

        let later_hour = next_bit(self.hours, hour + 1)?;
        NaiveTime::from_hms_opt(later_hour, first_minute, first_second)
    }

    /// Returns the last year to scan from `start_year`.
    fn last_year(&self, start_year: i32) -> i32 {
        match self.years.as_deref().and_then(<[i32]>::last) {
            Some(&last) => last,
            None => start_year.saturating_add(SEARCH_YEARS - 1),
        }
    }

    fn allows_year(&self, year: i32) -> bool {
        match &self.years {
            Some(years) => years.binary_search(&year).is_ok(),
            None => true,
        }
    }

    /// Finds the first naive date-time at or after `from` that every field matches.
    pub(super) fn next_match(&self, from: NaiveDateTime) -> CalendarMatch {
        let start_date = from.date();
        let start_year = start_date.year();
        for year in start_year..=self.last_year(start_year) {
            if !self.allows_year(year) {
                continue;
            }
            let first_month = if year == start_year {
                start_date.month()
            } else {
                1
            };
            for month in first_month..=12 {
                if self.months & (1 << month) == 0 {
                    continue;
                }
                if let Some(found) = self.next_in_month(year, month, from) {
                    return CalendarMatch::Found(found);
                }
            }
        }

        match self.years {
            Some(_) => CalendarMatch::YearsExhausted,
            None => CalendarMatch::NotFound,
        }
    }

    fn next_in_month(&self, year: i32, month: u32, from: NaiveDateTime) -> Option<NaiveDateTime> {
        let first = NaiveDate::from_ymd_opt(year, month, 1)?;
        let length = month_length(year, month)?;
        let mut days = self.day_mask(length, first.weekday().num_days_from_sunday());

        let starts_in_this_month = from.year() == year && from.month() == month;
        if starts_in_this_month {
            days &= u64::MAX << from.day();
        }

        while let Some(day) = next_bit(days, 0) {
            days &= !(1 << day);
            let date = NaiveDate::from_ymd_opt(year, month, day)?;
            let time = if date == from.date() {
                self.first_time_from(from.hour(), from.minute(), from.second())
            } else {
                self.first_time_from(0, 0, 0)
            };
            if let Some(time) = time {
                return Some(date.and_time(time));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_weekday_stays_in_month() {
        // A month starting on Saturday (first weekday 6): the 1st moves to Monday the 3rd.
        assert_eq!(nearest_weekday(1, 31, 6), 3);
        // A 31-day month starting on Friday ends on Sunday: the 31st moves to Friday the 29th.
        assert_eq!(nearest_weekday(31, 31, 5), 29);
        // A Saturday 15th moves to Friday the 14th and a Sunday 15th to Monday the 16th.
        assert_eq!(nearest_weekday(15, 30, 6), 14);
        assert_eq!(nearest_weekday(15, 30, 0), 16);
    }

    #[test]
    fn next_bit_finds_at_or_above() {
        assert_eq!(next_bit(0b1010, 0), Some(1));
        assert_eq!(next_bit(0b1010, 2), Some(3));
        assert_eq!(next_bit(0b1010, 4), None);
        assert_eq!(next_bit(u64::MAX, 64), None);
    }
}
