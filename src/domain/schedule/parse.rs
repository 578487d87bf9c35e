//! Parsing of cron expressions and macros into [`CronFields`] or an interval.

use super::error::{CronField, ErrorKind, ScheduleError};
use super::fields::{CronFields, DayOfMonthRule, DayOfWeekRule, YEAR_MAX, YEAR_MIN};

/// The longest `@every` interval: about 100 years, beyond which a schedule
/// is indistinguishable from one that never fires.
const MAX_INTERVAL_SECONDS: u64 = 36_500 * 86_400;

/// A parsed expression: cron fields or an `@every` interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Parsed {
    Cron(CronFields),
    /// `@every`: a fixed interval in seconds, counted from the anchor.
    Every(i64),
}

/// The value limits and names of one field.
struct FieldLimits {
    field: CronField,
    min: u32,
    /// The largest value the field accepts.
    max: u32,
    /// The end of `*` and of an open `N/step`; below `max` only for
    /// day-of-week, where 7 is an alias of 0.
    open_end: u32,
    /// Names for the values starting at `min`, matched case-insensitively.
    names: &'static [&'static str],
    expected: &'static str,
}

const SECOND: FieldLimits = FieldLimits {
    field: CronField::Second,
    min: 0,
    max: 59,
    open_end: 59,
    names: &[],
    expected: "0-59",
};

const MINUTE: FieldLimits = FieldLimits {
    field: CronField::Minute,
    min: 0,
    max: 59,
    open_end: 59,
    names: &[],
    expected: "0-59",
};

const HOUR: FieldLimits = FieldLimits {
    field: CronField::Hour,
    min: 0,
    max: 23,
    open_end: 23,
    names: &[],
    expected: "0-23",
};

const DAY_OF_MONTH: FieldLimits = FieldLimits {
    field: CronField::DayOfMonth,
    min: 1,
    max: 31,
    open_end: 31,
    names: &[],
    expected: "1-31, L, L-N or NW",
};

const MONTH: FieldLimits = FieldLimits {
    field: CronField::Month,
    min: 1,
    max: 12,
    open_end: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
    expected: "1-12 or jan-dec",
};

const DAY_OF_WEEK: FieldLimits = FieldLimits {
    field: CronField::DayOfWeek,
    min: 0,
    max: 7,
    open_end: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    expected: "0-7 or sun-sat (0 and 7 are Sunday), NL or N#M with M 1-5",
};

const YEAR: FieldLimits = FieldLimits {
    field: CronField::Year,
    min: YEAR_MIN as u32,
    max: YEAR_MAX as u32,
    open_end: YEAR_MAX as u32,
    names: &[],
    expected: "1970-2099",
};

/// Parses a whole expression: a macro or 5, 6 or 7 fields.
pub(super) fn parse_expression(expression: &str) -> Result<Parsed, ScheduleError> {
    let trimmed = expression.trim();
    if trimmed.is_empty() {
        return Err(ErrorKind::Empty.into());
    }
    if trimmed.starts_with('@') {
        return parse_macro(trimmed, expression);
    }

    let tokens: Vec<&str> = trimmed.split_ascii_whitespace().collect();
    let (second, rest, year) = match tokens.len() {
        5 => ("0", &tokens[..], None),
        6 => (tokens[0], &tokens[1..], None),
        7 => (tokens[0], &tokens[1..6], Some(tokens[6])),
        count => {
            return Err(ErrorKind::FieldCount {
                expression: expression.to_owned(),
                count,
            }
            .into());
        }
    };

    let parser = FieldParser { expression };
    let fields = parser.parse_fields(second, rest, year)?;
    if !fields.can_match_some_date() {
        return Err(ErrorKind::NeverFires {
            expression: expression.to_owned(),
            year_note: if fields.years.is_some() { ", year" } else { "" },
        }
        .into());
    }
    Ok(Parsed::Cron(fields))
}

fn parse_macro(trimmed: &str, expression: &str) -> Result<Parsed, ScheduleError> {
    let mut words = trimmed.split_ascii_whitespace();
    let name = words.next().unwrap_or_default();
    let rest: Vec<&str> = words.collect();

    if name.eq_ignore_ascii_case("@every") {
        let value = rest.join(" ");
        return parse_interval(&value, expression).map(Parsed::Every);
    }

    let equivalent = match name.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        _ => "",
    };
    if equivalent.is_empty() || !rest.is_empty() {
        return Err(ErrorKind::UnknownMacro {
            value: trimmed.to_owned(),
            expression: expression.to_owned(),
        }
        .into());
    }
    parse_expression(equivalent)
}

/// Parses an `@every` duration such as `90s`, `2h30m` or `1d` into seconds.
fn parse_interval(value: &str, expression: &str) -> Result<i64, ScheduleError> {
    let invalid = |reason: &str| -> ScheduleError {
        ErrorKind::InvalidInterval {
            value: value.to_owned(),
            expression: expression.to_owned(),
            reason: reason.to_owned(),
        }
        .into()
    };
    const FORMAT: &str = "write numbers with the units d, h, m and s, each at most once and in \
                          that order, such as 90s, 2h30m or 1d";

    if value.is_empty() {
        return Err(invalid(&format!("the duration is missing; {FORMAT}")));
    }

    let units = [('d', 86_400u64), ('h', 3_600), ('m', 60), ('s', 1)];
    let mut next_unit = 0;
    let mut total: u64 = 0;
    let mut rest = value;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (digits, after_digits) = rest.split_at(digits_end);
        let mut chars = after_digits.chars();
        let unit = chars.next().map(|c| c.to_ascii_lowercase());
        let Some(position) = units.iter().position(|&(name, _)| Some(name) == unit) else {
            return Err(invalid(FORMAT));
        };
        if digits.is_empty() || position < next_unit {
            return Err(invalid(FORMAT));
        }
        // All digits, so parsing fails only on overflow.
        let amount: u64 = digits
            .parse()
            .map_err(|_| invalid("the interval must be at most 36500d"))?;
        total = amount
            .checked_mul(units[position].1)
            .and_then(|seconds| total.checked_add(seconds))
            .ok_or_else(|| invalid("the interval must be at most 36500d"))?;
        next_unit = position + 1;
        rest = chars.as_str();
    }

    if total == 0 {
        return Err(invalid("the interval must be at least 1s"));
    }
    if total > MAX_INTERVAL_SECONDS {
        return Err(invalid("the interval must be at most 36500d"));
    }
    // The bound above keeps the total far below i64::MAX.
    Ok(total as i64)
}

/// Parses the fields of one expression, which every error message quotes.
struct FieldParser<'a> {
    expression: &'a str,
}

impl FieldParser<'_> {
    fn parse_fields(
        &self,
        second: &str,
        rest: &[&str],
        year: Option<&str>,
    ) -> Result<CronFields, ScheduleError> {
        let [minute, hour, day_of_month, month, day_of_week] = rest else {
            unreachable!("the caller passes exactly five fields after the second");
        };

        let years = match year {
            None | Some("*") => None,
            Some(token) => Some(self.parse_years(token)?),
        };

        Ok(CronFields {
            seconds: self.parse_mask(second, &SECOND)?,
            minutes: self.parse_mask(minute, &MINUTE)?,
            hours: self.parse_mask(hour, &HOUR)?,
            day_of_month: self.parse_day_of_month(day_of_month)?,
            months: self.parse_mask(month, &MONTH)?,
            day_of_week: self.parse_day_of_week(day_of_week)?,
            years,
            hour_is_fixed: !hour.contains(['*', '/']),
        })
    }

    fn invalid_value(&self, limits: &FieldLimits, value: &str) -> ScheduleError {
        self.invalid_value_expecting(limits.field, value, limits.expected)
    }

    fn invalid_value_expecting(
        &self,
        field: CronField,
        value: &str,
        expected: &str,
    ) -> ScheduleError {
        ErrorKind::InvalidValue {
            field,
            value: value.to_owned(),
            expression: self.expression.to_owned(),
            expected: expected.to_owned(),
        }
        .into()
    }

    /// Parses a list of numbers, ranges and steps into a bit set.
    fn parse_mask(&self, token: &str, limits: &FieldLimits) -> Result<u64, ScheduleError> {
        let mut mask = 0u64;
        for item in token.split(',') {
            self.expand_item(item, limits, &mut |value| mask |= 1 << value)?;
        }
        Ok(mask)
    }

    fn parse_years(&self, token: &str) -> Result<Vec<i32>, ScheduleError> {
        let mut years = Vec::new();
        for item in token.split(',') {
            self.expand_item(item, &YEAR, &mut |value| years.push(value as i32))?;
        }
        years.sort_unstable();
        years.dedup();
        Ok(years)
    }

    /// Expands one list item (`*`, `N`, `N-M`, with an optional `/step`) and
    /// passes each value to `insert`.
    fn expand_item(
        &self,
        item: &str,
        limits: &FieldLimits,
        insert: &mut dyn FnMut(u32),
    ) -> Result<(), ScheduleError> {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(self.parse_step(item, step, limits)?)),
            None => (item, None),
        };

        // An empty piece (as in `1-`) reports the whole item instead.
        let parse_piece = |piece: &str| {
            self.parse_value(piece, limits).map_err(|error| {
                if piece.is_empty() {
                    self.invalid_value(limits, item)
                } else {
                    error
                }
            })
        };

        let (start, end) = if range == "*" {
            (limits.min, limits.open_end)
        } else if let Some((start, end)) = range.split_once('-') {
            let start = parse_piece(start)?;
            let end = if limits.field == CronField::DayOfWeek && end.eq_ignore_ascii_case("sun") {
                // `fri-sun` ends on the Sunday that closes the week.
                7
            } else {
                parse_piece(end)?
            };
            (start, end)
        } else {
            let value = parse_piece(range)?;
            let end = if step.is_some() {
                limits.open_end.max(value)
            } else {
                value
            };
            (value, end)
        };

        if start > end {
            return Err(self.reversed_range(item, limits));
        }

        let step = step.unwrap_or(1) as usize;
        for value in (start..=end).step_by(step) {
            let value = if limits.field == CronField::DayOfWeek && value == 7 {
                0
            } else {
                value
            };
            insert(value);
        }
        Ok(())
    }

    fn reversed_range(&self, item: &str, limits: &FieldLimits) -> ScheduleError {
        let range = item.split('/').next().unwrap_or(item);
        let (start, end) = range.split_once('-').unwrap_or((range, range));
        let named = start.starts_with(|c: char| c.is_ascii_alphabetic());
        let (first, last) = match (named, limits.names.first(), limits.names.last()) {
            (true, Some(first), Some(last)) => (first.to_string(), last.to_string()),
            _ => (limits.min.to_string(), limits.open_end.to_string()),
        };
        let suggestion = format!("{start}-{last},{first}-{end}");
        ErrorKind::ReversedRange {
            field: limits.field,
            value: item.to_owned(),
            expression: self.expression.to_owned(),
            suggestion,
        }
        .into()
    }

    fn parse_step(
        &self,
        item: &str,
        step: &str,
        limits: &FieldLimits,
    ) -> Result<u32, ScheduleError> {
        let max_step = limits.open_end - limits.min + 1;
        match parse_number(step) {
            Some(value) if (1..=max_step).contains(&value) => Ok(value),
            _ => Err(ErrorKind::InvalidStep {
                field: limits.field,
                value: item.to_owned(),
                expression: self.expression.to_owned(),
                max_step,
            }
            .into()),
        }
    }

    /// Parses one number or name and checks it against the field's limits.
    fn parse_value(&self, text: &str, limits: &FieldLimits) -> Result<u32, ScheduleError> {
        let named = limits
            .names
            .iter()
            .position(|name| name.eq_ignore_ascii_case(text))
            .map(|index| limits.min + index as u32);
        match named.or_else(|| parse_number(text)) {
            Some(value) if (limits.min..=limits.max).contains(&value) => Ok(value),
            _ => Err(self.invalid_value(limits, text)),
        }
    }

    fn parse_day_of_month(&self, token: &str) -> Result<Option<DayOfMonthRule>, ScheduleError> {
        if token == "*" || token == "?" {
            return Ok(None);
        }

        let mut rule = DayOfMonthRule::default();
        for item in token.split(',') {
            if item.eq_ignore_ascii_case("l") {
                rule.last = true;
            } else if item.eq_ignore_ascii_case("lw") {
                rule.last_weekday = true;
            } else if let Some(offset) = item.strip_prefix(['l', 'L']) {
                let offset = offset
                    .strip_prefix('-')
                    .and_then(parse_number)
                    .filter(|offset| (1..=30).contains(offset))
                    .ok_or_else(|| {
                        self.invalid_value_expecting(
                            CronField::DayOfMonth,
                            item,
                            "1-31, L, L-N with N 1-30, or NW",
                        )
                    })?;
                rule.before_last |= 1 << offset;
            } else if let Some(day) = item.strip_suffix(['w', 'W']) {
                let day = parse_number(day)
                    .filter(|day| (1..=31).contains(day))
                    .ok_or_else(|| {
                        self.invalid_value_expecting(
                            CronField::DayOfMonth,
                            item,
                            "1-31, L, L-N or NW with N 1-31",
                        )
                    })?;
                rule.nearest_weekday |= 1 << day;
            } else {
                self.expand_item(item, &DAY_OF_MONTH, &mut |day| rule.days |= 1 << day)?;
            }
        }
        Ok(Some(rule))
    }

    fn parse_day_of_week(&self, token: &str) -> Result<Option<DayOfWeekRule>, ScheduleError> {
        if token == "*" || token == "?" {
            return Ok(None);
        }

        let mut rule = DayOfWeekRule::default();
        for item in token.split(',') {
            if let Some((weekday, occurrence)) = item.split_once('#') {
                let weekday = self.parse_weekday(weekday, item)?;
                let occurrence = parse_number(occurrence)
                    .filter(|occurrence| (1..=5).contains(occurrence))
                    .ok_or_else(|| {
                        self.invalid_value_expecting(
                            CronField::DayOfWeek,
                            item,
                            "N#M with N 0-7 or sun-sat and M 1-5",
                        )
                    })?;
                rule.nth[weekday as usize] |= 1 << (occurrence - 1);
            } else if let Some(weekday) = item.strip_suffix(['l', 'L']).filter(|w| !w.is_empty()) {
                let weekday = self.parse_weekday(weekday, item)?;
                rule.last |= 1 << weekday;
            } else {
                self.expand_item(item, &DAY_OF_WEEK, &mut |weekday| {
                    rule.weekdays |= 1 << weekday
                })?;
            }
        }
        Ok(Some(rule))
    }

    /// Parses the weekday of an `NL` or `N#M` item; 7 becomes 0 (Sunday).
    fn parse_weekday(&self, text: &str, item: &str) -> Result<u32, ScheduleError> {
        self.parse_value(text, &DAY_OF_WEEK)
            .map(|weekday| weekday % 7)
            .map_err(|_| self.invalid_value(&DAY_OF_WEEK, item))
    }
}

/// Parses a decimal number made of ASCII digits only (no sign, no spaces).
fn parse_number(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}
