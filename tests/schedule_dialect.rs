//! The cron dialect: fields, steps, ranges, names, special day items, macros
//! and `@every`. All cases are in UTC unless a zone is named; weekdays of the
//! expected dates are those of the Gregorian calendar (2026-01-01 is a
//! Thursday).

use chrono::{DateTime, Utc};
use delicate::domain::schedule::{Schedule, preview};

const NEW_YEAR_2026: &str = "2026-01-01T00:00:00Z";

fn instant(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|error| panic!("bad test instant {text}: {error}"))
        .with_timezone(&Utc)
}

fn rfc3339(instants: &[DateTime<Utc>]) -> Vec<String> {
    instants
        .iter()
        .map(|instant| instant.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .collect()
}

/// Asserts the next fire times of each `(expression, after, expected)` in UTC.
fn check(cases: &[(&str, &str, &[&str])]) {
    for &(expression, after, expected) in cases {
        let found = preview(expression, "UTC", instant(after), expected.len())
            .unwrap_or_else(|error| panic!("{expression}: {error}"));
        assert_eq!(rfc3339(&found), expected, "{expression} after {after}");
    }
}

#[test]
fn minute_steps_restart_each_hour() {
    check(&[
        (
            "*/7 * * * *",
            "2026-01-01T00:50:00Z",
            &[
                "2026-01-01T00:56:00Z",
                "2026-01-01T01:00:00Z",
                "2026-01-01T01:07:00Z",
            ],
        ),
        (
            "5-55/10 * * * *",
            NEW_YEAR_2026,
            &[
                "2026-01-01T00:05:00Z",
                "2026-01-01T00:15:00Z",
                "2026-01-01T00:25:00Z",
                "2026-01-01T00:35:00Z",
                "2026-01-01T00:45:00Z",
                "2026-01-01T00:55:00Z",
                "2026-01-01T01:05:00Z",
            ],
        ),
        // `N/step` runs from N to the end of the field.
        (
            "50/5 * * * *",
            NEW_YEAR_2026,
            &[
                "2026-01-01T00:50:00Z",
                "2026-01-01T00:55:00Z",
                "2026-01-01T01:50:00Z",
            ],
        ),
        (
            "0 9-17/4 * * *",
            NEW_YEAR_2026,
            &[
                "2026-01-01T09:00:00Z",
                "2026-01-01T13:00:00Z",
                "2026-01-01T17:00:00Z",
                "2026-01-02T09:00:00Z",
            ],
        ),
        // Steps in the day-of-month and month fields.
        (
            "0 0 1/10 */5 *",
            NEW_YEAR_2026,
            &[
                "2026-01-11T00:00:00Z",
                "2026-01-21T00:00:00Z",
                "2026-01-31T00:00:00Z",
                "2026-06-01T00:00:00Z",
            ],
        ),
    ]);
}

#[test]
fn lists_ranges_and_seconds() {
    check(&[
        (
            "0 0 1,15 * *",
            NEW_YEAR_2026,
            &[
                "2026-01-15T00:00:00Z",
                "2026-02-01T00:00:00Z",
                "2026-02-15T00:00:00Z",
            ],
        ),
        (
            "0,30 8-9 * * *",
            NEW_YEAR_2026,
            &[
                "2026-01-01T08:00:00Z",
                "2026-01-01T08:30:00Z",
                "2026-01-01T09:00:00Z",
                "2026-01-01T09:30:00Z",
                "2026-01-02T08:00:00Z",
            ],
        ),
        // Six fields: the first is the second.
        (
            "30 0 9 * * *",
            NEW_YEAR_2026,
            &["2026-01-01T09:00:30Z", "2026-01-02T09:00:30Z"],
        ),
        (
            "*/20 * * * * *",
            "2026-01-01T00:00:50Z",
            &[
                "2026-01-01T00:01:00Z",
                "2026-01-01T00:01:20Z",
                "2026-01-01T00:01:40Z",
            ],
        ),
        // Fire times are whole seconds strictly after a fractional instant.
        (
            "* * * * * *",
            "2026-01-01T00:00:00.500Z",
            &["2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z"],
        ),
    ]);
}

#[test]
fn names_are_case_insensitive() {
    check(&[
        (
            "0 9 * jan,MAR Mon-FRI",
            NEW_YEAR_2026,
            &[
                "2026-01-01T09:00:00Z",
                "2026-01-02T09:00:00Z",
                "2026-01-05T09:00:00Z",
            ],
        ),
        (
            "0 0 1 Feb-apr/2 *",
            NEW_YEAR_2026,
            &[
                "2026-02-01T00:00:00Z",
                "2026-04-01T00:00:00Z",
                "2027-02-01T00:00:00Z",
            ],
        ),
        (
            "0 0 * * SAT,sUn",
            NEW_YEAR_2026,
            &[
                "2026-01-03T00:00:00Z",
                "2026-01-04T00:00:00Z",
                "2026-01-10T00:00:00Z",
            ],
        ),
    ]);
}

#[test]
fn sunday_is_zero_and_seven() {
    let sundays: &[&str] = &["2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"];
    check(&[
        ("0 0 * * 0", NEW_YEAR_2026, sundays),
        ("0 0 * * 7", NEW_YEAR_2026, sundays),
        ("0 0 * * sun", NEW_YEAR_2026, sundays),
        // 1 is Monday, as in Unix cron.
        ("0 0 * * 1", NEW_YEAR_2026, &["2026-01-05T00:00:00Z"]),
        // 5-7 and fri-sun both run Friday to Sunday.
        (
            "0 0 * * 5-7",
            NEW_YEAR_2026,
            &[
                "2026-01-02T00:00:00Z",
                "2026-01-03T00:00:00Z",
                "2026-01-04T00:00:00Z",
                "2026-01-09T00:00:00Z",
            ],
        ),
        (
            "0 0 * * fri-sun",
            NEW_YEAR_2026,
            &[
                "2026-01-02T00:00:00Z",
                "2026-01-03T00:00:00Z",
                "2026-01-04T00:00:00Z",
                "2026-01-09T00:00:00Z",
            ],
        ),
        // `*/2` in day-of-week is Sunday, Tuesday, Thursday, Saturday.
        (
            "0 0 * * */2",
            NEW_YEAR_2026,
            &[
                "2026-01-03T00:00:00Z",
                "2026-01-04T00:00:00Z",
                "2026-01-06T00:00:00Z",
            ],
        ),
    ]);
}

#[test]
fn day_fields_match_vixie_style() {
    check(&[
        // Both restricted: the 13th or any Friday.
        (
            "0 0 13 * fri",
            NEW_YEAR_2026,
            &[
                "2026-01-02T00:00:00Z",
                "2026-01-09T00:00:00Z",
                "2026-01-13T00:00:00Z",
                "2026-01-16T00:00:00Z",
            ],
        ),
        // A stepped day-of-month is a restriction too: 1, 11, 21, 31 or a Monday.
        (
            "0 0 */10 * mon",
            NEW_YEAR_2026,
            &[
                "2026-01-05T00:00:00Z",
                "2026-01-11T00:00:00Z",
                "2026-01-12T00:00:00Z",
                "2026-01-19T00:00:00Z",
                "2026-01-21T00:00:00Z",
            ],
        ),
        // `?` or `*` in one day field leaves only the other.
        (
            "0 0 13 * ?",
            NEW_YEAR_2026,
            &["2026-01-13T00:00:00Z", "2026-02-13T00:00:00Z"],
        ),
        (
            "0 0 13 * *",
            NEW_YEAR_2026,
            &["2026-01-13T00:00:00Z", "2026-02-13T00:00:00Z"],
        ),
        (
            "0 0 ? * fri",
            NEW_YEAR_2026,
            &["2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z"],
        ),
        (
            "0 0 * * fri",
            NEW_YEAR_2026,
            &["2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z"],
        ),
        // Feb 29 or any Monday of February: frequent despite the leap day.
        (
            "0 0 29 2 mon",
            NEW_YEAR_2026,
            &[
                "2026-02-02T00:00:00Z",
                "2026-02-09T00:00:00Z",
                "2026-02-16T00:00:00Z",
                "2026-02-23T00:00:00Z",
                "2027-02-01T00:00:00Z",
            ],
        ),
    ]);
}

#[test]
fn last_day_items() {
    check(&[
        (
            "0 0 L * *",
            NEW_YEAR_2026,
            &[
                "2026-01-31T00:00:00Z",
                "2026-02-28T00:00:00Z",
                "2026-03-31T00:00:00Z",
                "2026-04-30T00:00:00Z",
            ],
        ),
        (
            "0 0 12 L * ?",
            NEW_YEAR_2026,
            &["2026-01-31T12:00:00Z", "2026-02-28T12:00:00Z"],
        ),
        (
            "0 0 L 2 *",
            "2028-01-31T00:00:00Z",
            &["2028-02-29T00:00:00Z", "2029-02-28T00:00:00Z"],
        ),
        (
            "0 0 L-3 * *",
            NEW_YEAR_2026,
            &[
                "2026-01-28T00:00:00Z",
                "2026-02-25T00:00:00Z",
                "2026-03-28T00:00:00Z",
                "2026-04-27T00:00:00Z",
            ],
        ),
        // Last Friday: January ends on Saturday 31, March on Tuesday 31.
        (
            "0 0 * * 5L",
            NEW_YEAR_2026,
            &[
                "2026-01-30T00:00:00Z",
                "2026-02-27T00:00:00Z",
                "2026-03-27T00:00:00Z",
                "2026-04-24T00:00:00Z",
            ],
        ),
        (
            "0 0 * * FRIL",
            NEW_YEAR_2026,
            &["2026-01-30T00:00:00Z", "2026-02-27T00:00:00Z"],
        ),
        // Last weekday: Saturday 31 Jan moves to Friday 30, Sunday 31 May to Friday 29.
        (
            "0 0 LW * *",
            NEW_YEAR_2026,
            &[
                "2026-01-30T00:00:00Z",
                "2026-02-27T00:00:00Z",
                "2026-03-31T00:00:00Z",
                "2026-04-30T00:00:00Z",
                "2026-05-29T00:00:00Z",
            ],
        ),
    ]);
}

#[test]
fn nearest_weekday_items() {
    check(&[
        // 15th: Sunday 15 Feb and 15 Mar move to Monday 16, Saturday 15 Aug to Friday 14.
        (
            "0 0 15W * *",
            NEW_YEAR_2026,
            &[
                "2026-01-15T00:00:00Z",
                "2026-02-16T00:00:00Z",
                "2026-03-16T00:00:00Z",
                "2026-04-15T00:00:00Z",
                "2026-05-15T00:00:00Z",
                "2026-06-15T00:00:00Z",
                "2026-07-15T00:00:00Z",
                "2026-08-14T00:00:00Z",
            ],
        ),
        // 1st: February and March start on Sunday (Monday 2nd), August on
        // Saturday (Monday 3rd, never back into July).
        (
            "0 0 1W * *",
            NEW_YEAR_2026,
            &[
                "2026-02-02T00:00:00Z",
                "2026-03-02T00:00:00Z",
                "2026-04-01T00:00:00Z",
                "2026-05-01T00:00:00Z",
                "2026-06-01T00:00:00Z",
                "2026-07-01T00:00:00Z",
                "2026-08-03T00:00:00Z",
                "2026-09-01T00:00:00Z",
            ],
        ),
        // 31st: only months with 31 days; Saturday 31 Jan moves to Friday 30,
        // Sunday 31 May to Friday 29.
        (
            "0 0 31W * *",
            NEW_YEAR_2026,
            &[
                "2026-01-30T00:00:00Z",
                "2026-03-31T00:00:00Z",
                "2026-05-29T00:00:00Z",
                "2026-07-31T00:00:00Z",
                "2026-08-31T00:00:00Z",
            ],
        ),
    ]);
}

#[test]
fn nth_weekday_items() {
    check(&[
        // Fifth Monday: months without one are skipped.
        (
            "0 0 * * mon#5",
            NEW_YEAR_2026,
            &[
                "2026-03-30T00:00:00Z",
                "2026-06-29T00:00:00Z",
                "2026-08-31T00:00:00Z",
                "2026-11-30T00:00:00Z",
                "2027-03-29T00:00:00Z",
            ],
        ),
        (
            "0 0 * * 1#2",
            NEW_YEAR_2026,
            &[
                "2026-01-12T00:00:00Z",
                "2026-02-09T00:00:00Z",
                "2026-03-09T00:00:00Z",
            ],
        ),
        // 7#1 is the first Sunday.
        (
            "0 0 * * 7#1",
            NEW_YEAR_2026,
            &["2026-01-04T00:00:00Z", "2026-02-01T00:00:00Z"],
        ),
        // A fifth Monday in February needs a leap year whose February starts on Monday.
        (
            "0 0 * 2 mon#5",
            NEW_YEAR_2026,
            &["2044-02-29T00:00:00Z", "2072-02-29T00:00:00Z"],
        ),
    ]);
}

#[test]
fn leap_days_and_rare_dates() {
    check(&[
        (
            "0 0 29 2 *",
            NEW_YEAR_2026,
            &["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"],
        ),
        // 2100 is not a leap year, so the gap after 2096 is eight years.
        (
            "0 0 29 2 *",
            "2096-03-01T00:00:00Z",
            &["2104-02-29T00:00:00Z"],
        ),
        (
            "0 0 31 4,5 *",
            NEW_YEAR_2026,
            &["2026-05-31T00:00:00Z", "2027-05-31T00:00:00Z"],
        ),
        (
            "0 0 0 31 12 ?",
            NEW_YEAR_2026,
            &["2026-12-31T00:00:00Z", "2027-12-31T00:00:00Z"],
        ),
    ]);
}

#[test]
fn year_field() {
    check(&[
        (
            "0 0 12 1 1 * 2027-2028",
            NEW_YEAR_2026,
            &["2027-01-01T12:00:00Z", "2028-01-01T12:00:00Z"],
        ),
        (
            "0 0 0 1 1 ? 2030/10",
            NEW_YEAR_2026,
            &["2030-01-01T00:00:00Z", "2040-01-01T00:00:00Z"],
        ),
        ("0 0 0 1 1 ? *", NEW_YEAR_2026, &["2027-01-01T00:00:00Z"]),
        (
            "0 0 0 29 2 ? 2027,2028",
            NEW_YEAR_2026,
            &["2028-02-29T00:00:00Z"],
        ),
    ]);

    // After the last listed year the schedule has no fire left.
    let after = instant(NEW_YEAR_2026);
    let found = preview("0 0 12 1 1 * 2027-2028", "UTC", after, 5).expect("valid expression");
    assert_eq!(found.len(), 2);

    let past = Schedule::parse("* * * * * * 2001", "UTC", after).expect("past years parse");
    assert_eq!(past.next_after(after), Ok(None));
    assert_eq!(past.iter_after(after).count(), 0);

    let before = instant("2001-12-31T23:59:58Z");
    assert_eq!(
        past.next_after(before),
        Ok(Some(instant("2001-12-31T23:59:59Z"))),
        "a past year still fires before it ends"
    );
}

#[test]
fn macros() {
    check(&[
        (
            "@yearly",
            NEW_YEAR_2026,
            &["2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"],
        ),
        ("@annually", NEW_YEAR_2026, &["2027-01-01T00:00:00Z"]),
        (
            "@monthly",
            NEW_YEAR_2026,
            &["2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"],
        ),
        // 2026-01-04 is the first Sunday.
        (
            "@weekly",
            NEW_YEAR_2026,
            &["2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"],
        ),
        (
            "@daily",
            NEW_YEAR_2026,
            &["2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"],
        ),
        ("@midnight", NEW_YEAR_2026, &["2026-01-02T00:00:00Z"]),
        (
            "@hourly",
            NEW_YEAR_2026,
            &["2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z"],
        ),
        ("@DAILY", NEW_YEAR_2026, &["2026-01-02T00:00:00Z"]),
        ("  @Hourly  ", NEW_YEAR_2026, &["2026-01-01T01:00:00Z"]),
    ]);
}

#[test]
fn macros_use_the_time_zone() {
    let after = instant(NEW_YEAR_2026);
    let found = preview("@daily", "Europe/Berlin", after, 2).expect("valid expression");
    assert_eq!(
        rfc3339(&found),
        ["2026-01-01T23:00:00Z", "2026-01-02T23:00:00Z"]
    );
}

#[test]
fn every_counts_from_anchor() {
    let anchor = instant(NEW_YEAR_2026);
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "@every 90s",
            NEW_YEAR_2026,
            &[
                "2026-01-01T00:01:30Z",
                "2026-01-01T00:03:00Z",
                "2026-01-01T00:04:30Z",
            ],
        ),
        (
            "@every 2h30m",
            NEW_YEAR_2026,
            &["2026-01-01T02:30:00Z", "2026-01-01T05:00:00Z"],
        ),
        (
            "@every 1d",
            NEW_YEAR_2026,
            &["2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"],
        ),
        ("@every 1d2h3m4s", NEW_YEAR_2026, &["2026-01-02T02:03:04Z"]),
        ("@EVERY 1H", NEW_YEAR_2026, &["2026-01-01T01:00:00Z"]),
        (
            "@every 1s",
            NEW_YEAR_2026,
            &["2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z"],
        ),
        // Before the anchor, the first fire is still anchor + interval.
        (
            "@every 90s",
            "2025-12-31T00:00:00Z",
            &["2026-01-01T00:01:30Z"],
        ),
        // Exactly on a fire time, the next one follows.
        (
            "@every 90s",
            "2026-01-01T00:03:00Z",
            &["2026-01-01T00:04:30Z"],
        ),
        (
            "@every 90s",
            "2026-01-01T00:03:01Z",
            &["2026-01-01T00:04:30Z"],
        ),
        (
            "@every 90s",
            "2026-01-02T00:00:00Z",
            &["2026-01-02T00:01:30Z"],
        ),
    ];
    for &(expression, after, expected) in cases {
        let schedule = Schedule::parse(expression, "UTC", anchor).expect("valid expression");
        let found: Vec<_> = schedule
            .iter_after(instant(after))
            .take(expected.len())
            .collect();
        assert_eq!(rfc3339(&found), expected, "{expression} after {after}");
    }
}

#[test]
fn every_ignores_daylight_saving() {
    // Intervals are real elapsed time: 24 hours apart in UTC across a change.
    let anchor = instant("2026-03-07T12:00:00Z");
    let schedule = Schedule::parse("@every 1d", "America/New_York", anchor).expect("valid");
    let found: Vec<_> = schedule.iter_after(anchor).take(3).collect();
    assert_eq!(
        rfc3339(&found),
        [
            "2026-03-08T12:00:00Z",
            "2026-03-09T12:00:00Z",
            "2026-03-10T12:00:00Z"
        ]
    );
}

#[test]
fn every_drops_subsecond_anchor() {
    let anchor = instant("2026-01-01T00:00:00.750Z");
    let schedule = Schedule::parse("@every 10s", "UTC", anchor).expect("valid");
    let found = schedule.next_after(anchor).expect("no error");
    assert_eq!(found, Some(instant("2026-01-01T00:00:10Z")));
}

#[test]
fn preview_every_counts_from_after() {
    let found = preview("@every 90s", "UTC", instant("2026-01-01T00:00:10Z"), 2).expect("valid");
    assert_eq!(
        rfc3339(&found),
        ["2026-01-01T00:01:40Z", "2026-01-01T00:03:10Z"]
    );
}

#[test]
fn accessors_return_inputs() {
    let anchor = instant(NEW_YEAR_2026);
    let schedule = Schedule::parse("0 30 9 * * mon-fri", "Europe/Berlin", anchor).expect("valid");
    assert_eq!(schedule.expression(), "0 30 9 * * mon-fri");
    assert_eq!(schedule.time_zone(), chrono_tz::Europe::Berlin);
}

#[test]
fn schedule_is_send_sync_clone() {
    fn assert_traits<T: Clone + std::fmt::Debug + Send + Sync>() {}
    assert_traits::<Schedule>();
    assert_traits::<delicate::domain::schedule::ScheduleError>();
}

#[test]
fn preview_count_zero_is_empty() {
    let found = preview("* * * * *", "UTC", instant(NEW_YEAR_2026), 0).expect("valid");
    assert!(found.is_empty());
}
