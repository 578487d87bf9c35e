//! Generated expressions, zones and instants, re-checked against a
//! brute-force matcher written here from the dialect's rules.

use chrono::{
    DateTime, Datelike, MappedLocalTime, NaiveDate, NaiveDateTime, TimeDelta, TimeZone, Timelike,
};
use chrono_tz::Tz;
use delicate::domain::schedule::Schedule;
use proptest::prelude::*;

const ZONES: &[&str] = &[
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Sydney",
    "Africa/Cairo",
    "Asia/Kolkata",
    // A 30-minute daylight saving shift.
    "Australia/Lord_Howe",
    // Skipped the whole of 2011-12-30.
    "Pacific/Apia",
    // Negative daylight saving time in the tz database.
    "Europe/Dublin",
    "America/Santiago",
    "Asia/Kathmandu",
];

/// Daylight saving changes as (zone, Unix timestamp of the change).
const CHANGES: &[(&str, i64)] = &[
    ("America/New_York", 1_772_953_200), // 2026-03-08T07:00:00Z, spring forward
    ("America/New_York", 1_793_512_800), // 2026-11-01T06:00:00Z, fall back
    ("Europe/Berlin", 1_774_746_000),    // 2026-03-29T01:00:00Z, spring forward
    ("Europe/Berlin", 1_792_890_000),    // 2026-10-25T01:00:00Z, fall back
    ("Australia/Sydney", 1_775_318_400), // 2026-04-04T16:00:00Z, fall back
    ("Australia/Sydney", 1_791_043_200), // 2026-10-03T16:00:00Z, spring forward
    ("Africa/Cairo", 1_776_981_600),     // 2026-04-23T22:00:00Z, spring forward
    ("Africa/Cairo", 1_793_307_600),     // 2026-10-29T21:00:00Z, fall back
    ("Australia/Lord_Howe", 1_775_314_800), // 2026-04-04T15:00:00Z, 30 minutes back
    ("Australia/Lord_Howe", 1_791_041_400), // 2026-10-03T15:30:00Z, 30 minutes forward
    ("Pacific/Apia", 1_325_239_200),     // 2011-12-30T10:00:00Z, skips a whole day
];

// --- Brute-force matcher ---------------------------------------------------

/// The fields of an expression as written, with macros expanded.
struct Fields {
    second: String,
    minute: String,
    hour: String,
    day_of_month: String,
    month: String,
    day_of_week: String,
    year: Option<String>,
}

const MONTHS: &[&str] = &[
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn split_fields(expression: &str) -> Fields {
    let expanded = match expression.trim().to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *".to_owned(),
        "@monthly" => "0 0 1 * *".to_owned(),
        "@weekly" => "0 0 * * 0".to_owned(),
        "@daily" | "@midnight" => "0 0 * * *".to_owned(),
        "@hourly" => "0 * * * *".to_owned(),
        _ => expression.to_owned(),
    };
    let tokens: Vec<String> = expanded.split_whitespace().map(str::to_owned).collect();
    let (second, rest) = match tokens.len() {
        5 => ("0".to_owned(), &tokens[..]),
        _ => (tokens[0].clone(), &tokens[1..6]),
    };
    Fields {
        second,
        minute: rest[0].clone(),
        hour: rest[1].clone(),
        day_of_month: rest[2].clone(),
        month: rest[3].clone(),
        day_of_week: rest[4].clone(),
        year: tokens.get(6).cloned(),
    }
}

fn value_of(text: &str, names: &[&str], base: u32) -> u32 {
    names
        .iter()
        .position(|name| name.eq_ignore_ascii_case(text))
        .map(|index| base + index as u32)
        .unwrap_or_else(|| text.parse().expect("generated numbers parse"))
}

/// Checks one `*`, `N`, `N-M` item with an optional `/step`.
fn item_matches(item: &str, value: u32, min: u32, open_end: u32, names: &[&str]) -> bool {
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => (range, Some(step.parse::<u32>().expect("step"))),
        None => (item, None),
    };
    let (start, end) = if range == "*" {
        (min, open_end)
    } else if let Some((start, end)) = range.split_once('-') {
        (value_of(start, names, min), value_of(end, names, min))
    } else {
        let start = value_of(range, names, min);
        (
            start,
            if step.is_some() {
                open_end.max(start)
            } else {
                start
            },
        )
    };
    value >= start && value <= end && (value - start).is_multiple_of(step.unwrap_or(1))
}

fn list_matches(token: &str, value: u32, min: u32, open_end: u32, names: &[&str]) -> bool {
    token
        .split(',')
        .any(|item| item_matches(item, value, min, open_end, names))
}

fn month_length(date: NaiveDate) -> u32 {
    let next = if date.month() == 12 {
        NaiveDate::from_ymd_opt(date.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(date.year(), date.month() + 1, 1)
    };
    next.expect("in range").pred_opt().expect("in range").day()
}

fn nearest_weekday(date: NaiveDate, day: u32) -> u32 {
    let length = month_length(date);
    let target = date.with_day(day).expect("day exists");
    match target.weekday().num_days_from_sunday() {
        6 if day == 1 => 3,
        6 => day - 1,
        0 if day == length => day - 2,
        0 => day + 1,
        _ => day,
    }
}

fn day_of_month_matches(token: &str, date: NaiveDate) -> bool {
    let day = date.day();
    let length = month_length(date);
    token.split(',').any(|item| {
        let upper = item.to_ascii_uppercase();
        if upper == "L" {
            day == length
        } else if upper == "LW" {
            day == nearest_weekday(date, length)
        } else if let Some(offset) = upper.strip_prefix("L-") {
            day + offset.parse::<u32>().expect("offset") == length
        } else if let Some(target) = upper.strip_suffix('W') {
            let target: u32 = target.parse().expect("day");
            target <= length && day == nearest_weekday(date, target)
        } else {
            item_matches(item, day, 1, 31, &[])
        }
    })
}

fn day_of_week_matches(token: &str, date: NaiveDate) -> bool {
    let weekday = date.weekday().num_days_from_sunday();
    let day = date.day();
    let length = month_length(date);
    token.split(',').any(|item| {
        if let Some((name, occurrence)) = item.split_once('#') {
            let wanted = value_of(name, WEEKDAYS, 0) % 7;
            weekday == wanted && (day - 1) / 7 + 1 == occurrence.parse::<u32>().expect("n")
        } else if let Some(name) = item.strip_suffix(['l', 'L']) {
            weekday == value_of(name, WEEKDAYS, 0) % 7 && day + 7 > length
        } else {
            item_matches(item, weekday, 0, 6, WEEKDAYS)
                || (weekday == 0 && item_matches(item, 7, 0, 6, WEEKDAYS))
        }
    })
}

fn is_unrestricted(token: &str) -> bool {
    token == "*" || token == "?"
}

fn local_matches(fields: &Fields, local: NaiveDateTime) -> bool {
    let date = local.date();
    let day_matches = match (
        is_unrestricted(&fields.day_of_month),
        is_unrestricted(&fields.day_of_week),
    ) {
        (true, true) => true,
        (true, false) => day_of_week_matches(&fields.day_of_week, date),
        (false, true) => day_of_month_matches(&fields.day_of_month, date),
        (false, false) => {
            day_of_month_matches(&fields.day_of_month, date)
                || day_of_week_matches(&fields.day_of_week, date)
        }
    };
    let year_matches = match &fields.year {
        None => true,
        Some(token) => list_matches(token, date.year() as u32, 1970, 2099, &[]),
    };
    day_matches
        && year_matches
        && list_matches(&fields.second, local.second(), 0, 59, &[])
        && list_matches(&fields.minute, local.minute(), 0, 59, &[])
        && list_matches(&fields.hour, local.hour(), 0, 23, &[])
        && list_matches(&fields.month, date.month(), 1, 12, MONTHS)
}

fn local_time(zone: Tz, timestamp: i64) -> NaiveDateTime {
    let instant = DateTime::from_timestamp(timestamp, 0).expect("in range");
    instant.with_timezone(&zone).naive_local()
}

/// Decides from the rules alone whether the instant `timestamp` is a fire.
fn is_fire(fields: &Fields, zone: Tz, timestamp: i64) -> bool {
    let local = local_time(zone, timestamp);
    if local_matches(fields, local) {
        let hour_is_fixed = !fields.hour.contains(['*', '/']);
        if let MappedLocalTime::Ambiguous(_, later) = zone.from_local_datetime(&local) {
            // A fixed hour fires only at the first occurrence of a repeated time.
            return !(hour_is_fixed && later.timestamp() == timestamp);
        }
        return true;
    }

    // The first instant after a spring-forward gap fires for every matching
    // local time inside the gap.
    let previous = local_time(zone, timestamp - 1);
    let mut skipped = previous + TimeDelta::seconds(1);
    while skipped < local {
        if local_matches(fields, skipped) {
            return true;
        }
        skipped += TimeDelta::seconds(1);
    }
    false
}

// --- Generators ------------------------------------------------------------

/// Items of a numeric field; steps run up to the number of distinct values
/// (7 for day-of-week, where 7 repeats 0).
fn numeric_item(min: u32, max: u32) -> impl Strategy<Value = String> {
    let span = if max == 7 { 7 } else { max - min + 1 };
    prop_oneof![
        Just("*".to_owned()),
        (min..=max).prop_map(|value| value.to_string()),
        (min..=max, min..=max).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
        (1..=span).prop_map(|step| format!("*/{step}")),
        (min..=max, 1..=span).prop_map(|(start, step)| format!("{start}/{step}")),
        (min..=max, min..=max, 1..=span).prop_map(|(a, b, step)| format!(
            "{}-{}/{step}",
            a.min(b),
            a.max(b)
        )),
    ]
}

fn list_of(item: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    prop::collection::vec(item, 1..=3).prop_map(|items| items.join(","))
}

fn day_of_month_token() -> impl Strategy<Value = String> {
    let item = prop_oneof![
        4 => numeric_item(1, 31),
        1 => Just("L".to_owned()),
        1 => Just("lw".to_owned()),
        1 => (1..=30u32).prop_map(|offset| format!("L-{offset}")),
        1 => (1..=31u32).prop_map(|day| format!("{day}W")),
    ];
    prop_oneof![3 => list_of(item), 1 => Just("?".to_owned()), 1 => Just("*".to_owned())]
}

fn weekday_value() -> impl Strategy<Value = String> {
    prop_oneof![
        (0..=7u32).prop_map(|value| value.to_string()),
        prop::sample::select(WEEKDAYS).prop_map(|name| name.to_ascii_uppercase()),
        prop::sample::select(WEEKDAYS).prop_map(str::to_owned),
    ]
}

fn day_of_week_token() -> impl Strategy<Value = String> {
    let item = prop_oneof![
        4 => numeric_item(0, 7),
        2 => weekday_value(),
        1 => weekday_value().prop_map(|weekday| format!("{weekday}L")),
        1 => (weekday_value(), 1..=5u32).prop_map(|(weekday, n)| format!("{weekday}#{n}")),
    ];
    prop_oneof![3 => list_of(item), 1 => Just("?".to_owned()), 1 => Just("*".to_owned())]
}

fn month_token() -> impl Strategy<Value = String> {
    let item = prop_oneof![
        3 => numeric_item(1, 12),
        1 => prop::sample::select(MONTHS).prop_map(str::to_owned),
    ];
    list_of(item)
}

fn year_token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_owned()),
        (2020..=2035u32).prop_map(|year| year.to_string()),
        (2020..=2035u32, 0..=6u32).prop_map(|(year, span)| format!("{year}-{}", year + span)),
        (2020..=2035u32, 1..=5u32).prop_map(|(year, step)| format!("{year}/{step}")),
    ]
}

fn five_fields() -> impl Strategy<Value = String> {
    (
        list_of(numeric_item(0, 59)),
        list_of(numeric_item(0, 23)),
        day_of_month_token(),
        month_token(),
        day_of_week_token(),
    )
        .prop_map(|(minute, hour, dom, month, dow)| format!("{minute} {hour} {dom} {month} {dow}"))
}

fn cron_expression() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => five_fields(),
        1 => (list_of(numeric_item(0, 59)), five_fields())
            .prop_map(|(second, rest)| format!("{second} {rest}")),
        1 => (list_of(numeric_item(0, 59)), five_fields(), year_token())
            .prop_map(|(second, rest, year)| format!("{second} {rest} {year}")),
        1 => prop::sample::select(&[
            "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly",
        ][..])
        .prop_map(str::to_owned),
    ]
}

fn instant() -> impl Strategy<Value = i64> {
    // 1970-01-01 to 2099-12-31.
    0..4_102_444_800i64
}

/// Generates a zone and an instant, half of the time within three hours of
/// one of the zone's daylight saving changes.
fn zone_and_instant() -> impl Strategy<Value = (&'static str, i64)> {
    prop_oneof![
        (prop::sample::select(ZONES), instant()),
        (prop::sample::select(CHANGES), -3 * 3_600..3 * 3_600i64)
            .prop_map(|((zone, change), offset)| (zone, change + offset)),
    ]
}

// --- Properties --------------------------------------------------------------

/// Seconds after each point checked second by second for missed fires.
const WINDOW_SECONDS: i64 = 15 * 60;

/// Seconds after each point checked at whole minutes, long enough to cross a
/// daylight saving change near the start.
const MINUTE_WINDOW_SECONDS: i64 = 4 * 3_600;

fn assert_no_fire_between(fields: &Fields, zone: Tz, from: i64, to: i64, expression: &str) {
    let by_second = from + 1..to.min(from + WINDOW_SECONDS);
    let first_minute = (from / 60 + 1) * 60;
    let by_minute = (first_minute..to.min(from + MINUTE_WINDOW_SECONDS)).step_by(60);
    for timestamp in by_second.chain(by_minute) {
        assert!(
            !is_fire(fields, zone, timestamp),
            "{expression} in {zone}: missed fire at {}",
            DateTime::from_timestamp(timestamp, 0).expect("in range")
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn fires_match_brute_force(
        expression in cron_expression(),
        (zone_name, after) in zone_and_instant(),
    ) {
        let zone: Tz = zone_name.parse().expect("listed zones exist");
        let after_instant = DateTime::from_timestamp(after, 0).expect("in range");
        let schedule = match Schedule::parse(&expression, zone_name, after_instant) {
            Ok(schedule) => schedule,
            Err(error) => {
                // Generated tokens are valid, so only impossible dates are rejected.
                let message = error.to_string();
                prop_assert!(message.contains("can never fire"), "{expression}: {message}");
                return Ok(());
            }
        };
        let fields = split_fields(&expression);

        let mut previous = after;
        for _ in 0..4 {
            let next = schedule
                .next_after(DateTime::from_timestamp(previous, 0).expect("in range"))
                .map_err(|error| TestCaseError::fail(format!("{expression}: {error}")))?;
            let Some(next) = next else {
                prop_assert!(fields.year.is_some(), "{expression}: Ok(None) without a year field");
                assert_no_fire_between(&fields, zone, previous, i64::MAX, &expression);
                break;
            };
            let next = next.timestamp();
            prop_assert!(next > previous, "{expression}: {next} not after {previous}");
            prop_assert!(
                is_fire(&fields, zone, next),
                "{} in {}: {} is not a fire time",
                expression,
                zone_name,
                DateTime::from_timestamp(next, 0).expect("in range")
            );
            assert_no_fire_between(&fields, zone, previous, next, &expression);
            previous = next;
        }
    }

    #[test]
    fn never_fires_claims_hold(expression in cron_expression()) {
        let anchor = DateTime::from_timestamp(0, 0).expect("in range");
        let Err(error) = Schedule::parse(&expression, "UTC", anchor) else {
            return Ok(());
        };
        prop_assert!(error.to_string().contains("can never fire"), "{expression}: {error}");

        // Every combination of month length and first weekday occurs within
        // 2024-2051, and generated year fields stay within 2020-2041.
        let mut day_fields = split_fields(&expression);
        day_fields.second = "*".to_owned();
        day_fields.minute = "*".to_owned();
        day_fields.hour = "*".to_owned();
        let mut date = NaiveDate::from_ymd_opt(2020, 1, 1).expect("valid date");
        let end = NaiveDate::from_ymd_opt(2052, 1, 1).expect("valid date");
        while date < end {
            let midnight = date.and_hms_opt(0, 0, 0).expect("valid time");
            prop_assert!(
                !local_matches(&day_fields, midnight),
                "{expression} rejected but matches {date}"
            );
            date = date.succ_opt().expect("in range");
        }
    }

    #[test]
    fn arbitrary_text_never_panics(
        expression in prop_oneof![
            "[0-9a-zA-Z*/,?#@ -]{0,40}",
            any::<String>(),
            "@every [0-9dhms ]{0,12}",
        ],
        zone_name in prop_oneof![prop::sample::select(ZONES).prop_map(str::to_owned), any::<String>()],
        after in prop_oneof![instant(), any::<i64>()],
    ) {
        let Some(after) = DateTime::from_timestamp(after, 0) else {
            return Ok(());
        };
        let Ok(schedule) = Schedule::parse(&expression, &zone_name, after) else {
            return Ok(());
        };
        let mut previous = after;
        for _ in 0..3 {
            match schedule.next_after(previous) {
                Ok(Some(next)) => {
                    prop_assert!(next > previous, "{expression}: {next} not after {previous}");
                    previous = next;
                }
                Ok(None) | Err(_) => break,
            }
        }
    }

    #[test]
    fn every_fires_on_interval_multiples(
        seconds in 1..200_000i64,
        anchor in instant(),
        after in instant(),
        zone_name in prop::sample::select(ZONES),
    ) {
        let expression = format!("@every {seconds}s");
        let anchor_instant = DateTime::from_timestamp(anchor, 0).expect("in range");
        let schedule = Schedule::parse(&expression, zone_name, anchor_instant).expect("valid");
        let next = schedule
            .next_after(DateTime::from_timestamp(after, 0).expect("in range"))
            .expect("no error")
            .expect("always a next fire")
            .timestamp();
        prop_assert!(next > after);
        prop_assert!(next > anchor);
        prop_assert_eq!((next - anchor) % seconds, 0);
        prop_assert!(next - seconds <= after.max(anchor), "{next} skipped a fire");
    }
}
