//! Rejected expressions and zones: each error names the field and the value.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use delicate::domain::schedule::{Schedule, ScheduleError, preview};

fn anchor() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .expect("valid instant")
        .with_timezone(&Utc)
}

fn parse_error(expression: &str, zone: &str) -> ScheduleError {
    match Schedule::parse(expression, zone, anchor()) {
        Ok(schedule) => panic!("{expression:?} in {zone} parsed as {schedule:?}"),
        Err(error) => error,
    }
}

/// Asserts the full message and the API field of each rejected expression.
fn check_messages(cases: &[(&str, &str)]) {
    for &(expression, message) in cases {
        let error = parse_error(expression, "UTC");
        assert_eq!(error.to_string(), message, "message for {expression:?}");
        assert_eq!(
            error.api_field(),
            "cron_expression",
            "field for {expression:?}"
        );
    }
}

#[test]
fn out_of_range_values() {
    check_messages(&[
        (
            "0 0 32 * *",
            r#"invalid day-of-month value "32" in "0 0 32 * *": must be 1-31, L, L-N or NW"#,
        ),
        (
            "0 0 0 * *",
            r#"invalid day-of-month value "0" in "0 0 0 * *": must be 1-31, L, L-N or NW"#,
        ),
        (
            "60 * * * *",
            r#"invalid minute value "60" in "60 * * * *": must be 0-59"#,
        ),
        (
            "* 24 * * *",
            r#"invalid hour value "24" in "* 24 * * *": must be 0-23"#,
        ),
        (
            "0 0 * 13 *",
            r#"invalid month value "13" in "0 0 * 13 *": must be 1-12 or jan-dec"#,
        ),
        (
            "0 0 * 0 *",
            r#"invalid month value "0" in "0 0 * 0 *": must be 1-12 or jan-dec"#,
        ),
        (
            "0 0 * * 8",
            r#"invalid day-of-week value "8" in "0 0 * * 8": must be 0-7 or sun-sat (0 and 7 are Sunday), NL or N#M with M 1-5"#,
        ),
        (
            "60 0 0 * * *",
            r#"invalid second value "60" in "60 0 0 * * *": must be 0-59"#,
        ),
        (
            "0 0 0 * * * 1969",
            r#"invalid year value "1969" in "0 0 0 * * * 1969": must be 1970-2099"#,
        ),
        (
            "0 0 0 * * * 2100",
            r#"invalid year value "2100" in "0 0 0 * * * 2100": must be 1970-2099"#,
        ),
        (
            "0 0 1-32 * *",
            r#"invalid day-of-month value "32" in "0 0 1-32 * *": must be 1-31, L, L-N or NW"#,
        ),
        (
            "99999999999 * * * *",
            r#"invalid minute value "99999999999" in "99999999999 * * * *": must be 0-59"#,
        ),
    ]);
}

#[test]
fn malformed_values() {
    check_messages(&[
        (
            "0 0 * foo *",
            r#"invalid month value "foo" in "0 0 * foo *": must be 1-12 or jan-dec"#,
        ),
        (
            "a/5 * * * *",
            r#"invalid minute value "a" in "a/5 * * * *": must be 0-59"#,
        ),
        (
            "1- * * * *",
            r#"invalid minute value "1-" in "1- * * * *": must be 0-59"#,
        ),
        (
            "1,,2 * * * *",
            r#"invalid minute value "" in "1,,2 * * * *": must be 0-59"#,
        ),
        (
            "+5 * * * *",
            r#"invalid minute value "+5" in "+5 * * * *": must be 0-59"#,
        ),
        (
            "ü * * * *",
            r#"invalid minute value "ü" in "ü * * * *": must be 0-59"#,
        ),
        (
            "0 0 *-5 * *",
            r#"invalid day-of-month value "*" in "0 0 *-5 * *": must be 1-31, L, L-N or NW"#,
        ),
        (
            "0 0 ? ? ?",
            r#"invalid month value "?" in "0 0 ? ? ?": must be 1-12 or jan-dec"#,
        ),
        (
            "? * * * *",
            r#"invalid minute value "?" in "? * * * *": must be 0-59"#,
        ),
        (
            "0 0 1,? * *",
            r#"invalid day-of-month value "?" in "0 0 1,? * *": must be 1-31, L, L-N or NW"#,
        ),
    ]);
}

#[test]
fn reversed_ranges() {
    check_messages(&[
        (
            "0 20-4 * * *",
            r#"invalid hour range "20-4" in "0 20-4 * * *": the start is greater than the end; write a range that wraps around as two ranges, such as 20-23,0-4"#,
        ),
        (
            "0 0 * * fri-mon",
            r#"invalid day-of-week range "fri-mon" in "0 0 * * fri-mon": the start is greater than the end; write a range that wraps around as two ranges, such as fri-sat,sun-mon"#,
        ),
        (
            "0 0 1 nov-feb *",
            r#"invalid month range "nov-feb" in "0 0 1 nov-feb *": the start is greater than the end; write a range that wraps around as two ranges, such as nov-dec,jan-feb"#,
        ),
        (
            "50-10/5 * * * *",
            r#"invalid minute range "50-10/5" in "50-10/5 * * * *": the start is greater than the end; write a range that wraps around as two ranges, such as 50-59,0-10"#,
        ),
    ]);
}

#[test]
fn invalid_steps() {
    check_messages(&[
        (
            "*/0 * * * *",
            r#"invalid minute step "*/0" in "*/0 * * * *": the step must be 1-60"#,
        ),
        (
            "0 0/0 * * *",
            r#"invalid hour step "0/0" in "0 0/0 * * *": the step must be 1-24"#,
        ),
        (
            "*/61 * * * *",
            r#"invalid minute step "*/61" in "*/61 * * * *": the step must be 1-60"#,
        ),
        (
            "5/ * * * *",
            r#"invalid minute step "5/" in "5/ * * * *": the step must be 1-60"#,
        ),
        (
            "0 0 1-10/x * *",
            r#"invalid day-of-month step "1-10/x" in "0 0 1-10/x * *": the step must be 1-31"#,
        ),
    ]);
}

#[test]
fn invalid_special_day_items() {
    check_messages(&[
        (
            "0 0 L-31 * *",
            r#"invalid day-of-month value "L-31" in "0 0 L-31 * *": must be 1-31, L, L-N with N 1-30, or NW"#,
        ),
        (
            "0 0 L-0 * *",
            r#"invalid day-of-month value "L-0" in "0 0 L-0 * *": must be 1-31, L, L-N with N 1-30, or NW"#,
        ),
        (
            "0 0 32W * *",
            r#"invalid day-of-month value "32W" in "0 0 32W * *": must be 1-31, L, L-N or NW with N 1-31"#,
        ),
        (
            "0 0 W * *",
            r#"invalid day-of-month value "W" in "0 0 W * *": must be 1-31, L, L-N or NW with N 1-31"#,
        ),
        (
            "0 0 * * mon#6",
            r#"invalid day-of-week value "mon#6" in "0 0 * * mon#6": must be N#M with N 0-7 or sun-sat and M 1-5"#,
        ),
        (
            "0 0 * * mon#0",
            r#"invalid day-of-week value "mon#0" in "0 0 * * mon#0": must be N#M with N 0-7 or sun-sat and M 1-5"#,
        ),
        (
            "0 0 * * 8#1",
            r#"invalid day-of-week value "8#1" in "0 0 * * 8#1": must be 0-7 or sun-sat (0 and 7 are Sunday), NL or N#M with M 1-5"#,
        ),
        (
            "0 0 * * 8L",
            r#"invalid day-of-week value "8L" in "0 0 * * 8L": must be 0-7 or sun-sat (0 and 7 are Sunday), NL or N#M with M 1-5"#,
        ),
        (
            "0 0 * * L",
            r#"invalid day-of-week value "L" in "0 0 * * L": must be 0-7 or sun-sat (0 and 7 are Sunday), NL or N#M with M 1-5"#,
        ),
        (
            "0 0 L * *W",
            r#"invalid day-of-week value "*W" in "0 0 L * *W": must be 0-7 or sun-sat (0 and 7 are Sunday), NL or N#M with M 1-5"#,
        ),
    ]);
}

#[test]
fn wrong_field_counts() {
    check_messages(&[
        (
            "* * * *",
            r#"invalid cron expression "* * * *": found 4 fields; write 5 (minute hour day-of-month month day-of-week), 6 (second first) or 7 (second first, year last)"#,
        ),
        (
            "* * * * * * * *",
            r#"invalid cron expression "* * * * * * * *": found 8 fields; write 5 (minute hour day-of-month month day-of-week), 6 (second first) or 7 (second first, year last)"#,
        ),
        (
            "",
            "invalid cron expression: the expression is empty; write 5, 6 or 7 fields or a macro such as @daily",
        ),
        (
            "   ",
            "invalid cron expression: the expression is empty; write 5, 6 or 7 fields or a macro such as @daily",
        ),
    ]);
}

#[test]
fn invalid_macros() {
    let macro_help = "use @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly or @every <duration>";
    let duration_help = "write numbers with the units d, h, m and s, each at most once and in \
                         that order, such as 90s, 2h30m or 1d";
    check_messages(&[
        (
            "@reboot",
            &format!(r#"unknown macro "@reboot" in "@reboot": {macro_help}"#),
        ),
        (
            "@daily 5",
            &format!(r#"unknown macro "@daily 5" in "@daily 5": {macro_help}"#),
        ),
        ("@", &format!(r#"unknown macro "@" in "@": {macro_help}"#)),
        (
            "@every",
            &format!(
                r#"invalid @every duration "" in "@every": the duration is missing; {duration_help}"#
            ),
        ),
        (
            "@every 0s",
            r#"invalid @every duration "0s" in "@every 0s": the interval must be at least 1s"#,
        ),
        (
            "@every 0d0h",
            r#"invalid @every duration "0d0h" in "@every 0d0h": the interval must be at least 1s"#,
        ),
        (
            "@every 5x",
            &format!(r#"invalid @every duration "5x" in "@every 5x": {duration_help}"#),
        ),
        (
            "@every 90",
            &format!(r#"invalid @every duration "90" in "@every 90": {duration_help}"#),
        ),
        (
            "@every h",
            &format!(r#"invalid @every duration "h" in "@every h": {duration_help}"#),
        ),
        (
            "@every 1m1h",
            &format!(r#"invalid @every duration "1m1h" in "@every 1m1h": {duration_help}"#),
        ),
        (
            "@every 1h1h",
            &format!(r#"invalid @every duration "1h1h" in "@every 1h1h": {duration_help}"#),
        ),
        (
            "@every 1h 30m",
            &format!(r#"invalid @every duration "1h 30m" in "@every 1h 30m": {duration_help}"#),
        ),
        (
            "@every 36501d",
            r#"invalid @every duration "36501d" in "@every 36501d": the interval must be at most 36500d"#,
        ),
        (
            "@every 99999999999999999999d",
            r#"invalid @every duration "99999999999999999999d" in "@every 99999999999999999999d": the interval must be at most 36500d"#,
        ),
    ]);
}

#[test]
fn impossible_schedules_rejected() {
    let impossible = [
        ("0 0 30 2 *", "day-of-month, month and day-of-week"),
        ("0 0 31 4 *", "day-of-month, month and day-of-week"),
        ("0 0 31 2,4,6,9,11 *", "day-of-month, month and day-of-week"),
        ("0 0 0 30 2 ?", "day-of-month, month and day-of-week"),
        ("0 0 31W 2 *", "day-of-month, month and day-of-week"),
        (
            "0 0 0 29 2 ? 2027",
            "day-of-month, month, year and day-of-week",
        ),
        (
            "0 0 0 ? 2 mon#5 2026-2030",
            "day-of-month, month, year and day-of-week",
        ),
    ];
    for (expression, fields) in impossible {
        let error = parse_error(expression, "UTC");
        assert_eq!(
            error.to_string(),
            format!(
                "cron expression \"{expression}\" can never fire: no date matches the {fields} \
                 fields; check those fields"
            )
        );
        assert_eq!(error.api_field(), "cron_expression");
    }
}

#[test]
fn impossible_schedules_rejected_quickly() {
    // The median of several runs keeps a busy machine from failing the check.
    // The bound is 10 ms in release builds and 100 ms in debug builds, which
    // run the same code about ten times slower.
    let bound = if cfg!(debug_assertions) {
        Duration::from_millis(100)
    } else {
        Duration::from_millis(10)
    };
    let impossible = [
        "0 0 30 2 *",
        "0 0 31 4 *",
        "0 0 31 2,4,6,9,11 *",
        "0 0 0 29 2 ? 2027",
        "0 0 0 31 2 ? 1970-2099",
    ];
    for expression in impossible {
        let mut durations: Vec<Duration> = (0..9)
            .map(|_| {
                let started = Instant::now();
                let result = Schedule::parse(expression, "UTC", anchor());
                let elapsed = started.elapsed();
                assert!(result.is_err(), "{expression} parsed");
                elapsed
            })
            .collect();
        durations.sort();
        let median = durations[durations.len() / 2];
        assert!(median < bound, "{expression} took {median:?} to reject");
    }
}

#[test]
fn unknown_time_zone() {
    for zone in ["Mars/Base", "", "Europe/Berlin ", "EST5EDT/Nowhere"] {
        let error = parse_error("* * * * *", zone);
        assert_eq!(
            error.to_string(),
            format!("unknown time zone \"{zone}\": use an IANA name such as Europe/Berlin")
        );
        assert_eq!(error.api_field(), "time_zone");
    }
}

#[test]
fn preview_returns_parse_errors() {
    let error = preview("0 0 32 * *", "UTC", anchor(), 3).expect_err("invalid day");
    assert_eq!(error.api_field(), "cron_expression");
    let error = preview("* * * * *", "Mars/Base", anchor(), 3).expect_err("invalid zone");
    assert_eq!(error.api_field(), "time_zone");
}

#[test]
fn search_at_end_of_time_is_an_error() {
    // No fire exists past chrono's last instant; the search reports it.
    let schedule = Schedule::parse("* * * * *", "UTC", anchor()).expect("valid");
    let error = schedule
        .next_after(DateTime::<Utc>::MAX_UTC)
        .expect_err("out of range");
    assert_eq!(error.api_field(), "cron_expression");
    assert!(
        error
            .to_string()
            .starts_with("no fire time found for \"* * * * *\" after"),
        "{error}"
    );

    let every = Schedule::parse("@every 1d", "UTC", anchor()).expect("valid");
    assert!(every.next_after(DateTime::<Utc>::MAX_UTC).is_err());
}

#[test]
fn extreme_instants_do_not_panic() {
    let expressions = [
        "* * * * *",
        "0 0 29 2 *",
        "0 0 * 2 mon#5",
        "@hourly",
        "@every 1d",
    ];
    let near_end = DateTime::<Utc>::MAX_UTC - chrono::TimeDelta::days(365 * 100);
    for expression in expressions {
        let schedule = Schedule::parse(expression, "Europe/Berlin", anchor()).expect("valid");
        for after in [DateTime::<Utc>::MIN_UTC, near_end, DateTime::<Utc>::MAX_UTC] {
            match schedule.next_after(after) {
                Ok(Some(next)) => assert!(next > after, "{expression} after {after}"),
                Ok(None) => panic!("{expression} has no year field but returned Ok(None)"),
                Err(error) => assert_eq!(error.api_field(), "cron_expression"),
            }
        }
    }

    // chrono's last year, +262142, is no leap year, so a search for a leap
    // day from its middle passes the end of the calendar and fails.
    let last_summer = DateTime::<Utc>::MAX_UTC - chrono::TimeDelta::days(200);
    let leap_day = Schedule::parse("0 0 29 2 *", "UTC", anchor()).expect("valid");
    let error = leap_day
        .next_after(last_summer)
        .expect_err("no leap day before the end");
    assert!(
        error
            .to_string()
            .contains("no date matched within 400 years or before the calendar ends"),
        "{error}"
    );
}
