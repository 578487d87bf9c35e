//! Fire times across daylight saving changes.
//!
//! Expected instants are written by hand from the zone offsets of 2026, not
//! computed by the code under test:
//! - America/New_York: EST -05:00, EDT -04:00; spring forward 2026-03-08 at
//!   02:00 EST (07:00Z) to 03:00 EDT; fall back 2026-11-01 at 02:00 EDT (06:00Z)
//!   to 01:00 EST.
//! - Europe/Berlin: CET +01:00, CEST +02:00; 2026-03-29 02:00 CET (01:00Z) to
//!   03:00 CEST; 2026-10-25 03:00 CEST (01:00Z) to 02:00 CET.
//! - Australia/Sydney: AEST +10:00, AEDT +11:00; 2026-04-05 03:00 AEDT
//!   (2026-04-04T16:00Z) to 02:00 AEST; 2026-10-04 02:00 AEST (2026-10-03T16:00Z)
//!   to 03:00 AEDT.
//! - Africa/Cairo: EET +02:00, EEST +03:00; 2026-04-24 00:00 EET
//!   (2026-04-23T22:00Z) to 01:00 EEST; 2026-10-29 24:00 EEST (21:00Z) to 23:00 EET.
//! - Asia/Kolkata: IST +05:30 all year.

use chrono::{DateTime, Utc};
use delicate::domain::schedule::{Schedule, preview};

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

struct Case {
    expression: &'static str,
    zone: &'static str,
    after: &'static str,
    expected: &'static [&'static str],
}

fn check(cases: &[Case]) {
    for case in cases {
        let after = instant(case.after);
        let found = preview(case.expression, case.zone, after, case.expected.len())
            .unwrap_or_else(|error| panic!("{} in {}: {error}", case.expression, case.zone));
        assert_eq!(
            rfc3339(&found),
            case.expected,
            "{} in {} after {}",
            case.expression,
            case.zone,
            case.after
        );
    }
}

/// Counts fires in `[start, end)`.
fn count_fires(expression: &str, zone: &str, start: &str, end: &str) -> usize {
    let start = instant(start);
    let end = instant(end);
    let schedule = Schedule::parse(expression, zone, start).expect("valid expression");
    let before_start = start - chrono::TimeDelta::seconds(1);
    schedule
        .iter_after(before_start)
        .take_while(|&fire| fire < end)
        .count()
}

#[test]
fn new_york_spring_forward() {
    check(&[
        // 02:30 does not exist on 03-08, so it fires when the gap ends at 03:00 EDT.
        Case {
            expression: "30 2 * * *",
            zone: "America/New_York",
            after: "2026-03-07T00:00:00Z",
            expected: &[
                "2026-03-07T07:30:00Z",
                "2026-03-08T07:00:00Z",
                "2026-03-09T06:30:00Z",
            ],
        },
        // The 6-field form of the same schedule.
        Case {
            expression: "0 30 2 * * *",
            zone: "America/New_York",
            after: "2026-03-07T00:00:00Z",
            expected: &[
                "2026-03-07T07:30:00Z",
                "2026-03-08T07:00:00Z",
                "2026-03-09T06:30:00Z",
            ],
        },
        // Fixed minute after the gap keeps its meaning: 03:15 local every day.
        Case {
            expression: "15 3 * * *",
            zone: "America/New_York",
            after: "2026-03-07T00:00:00Z",
            expected: &[
                "2026-03-07T08:15:00Z",
                "2026-03-08T07:15:00Z",
                "2026-03-09T07:15:00Z",
            ],
        },
        // Stepped hour: 00:00 EST, 02:00 (skipped, fires at 03:00 EDT), 04:00 EDT.
        Case {
            expression: "0 */2 * * *",
            zone: "America/New_York",
            after: "2026-03-08T04:00:00Z",
            expected: &[
                "2026-03-08T05:00:00Z",
                "2026-03-08T07:00:00Z",
                "2026-03-08T08:00:00Z",
                "2026-03-08T10:00:00Z",
            ],
        },
        // All skipped half hours collapse into the single instant 03:00 EDT.
        Case {
            expression: "*/30 * * * *",
            zone: "America/New_York",
            after: "2026-03-08T06:00:00Z",
            expected: &[
                "2026-03-08T06:30:00Z",
                "2026-03-08T07:00:00Z",
                "2026-03-08T07:30:00Z",
                "2026-03-08T08:00:00Z",
            ],
        },
        // Searching from the last second before the gap still finds the skipped time.
        Case {
            expression: "30 2 * * *",
            zone: "America/New_York",
            after: "2026-03-08T06:59:59Z",
            expected: &["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"],
        },
        // Searching from exactly the end of the gap moves on to the next day.
        Case {
            expression: "30 2 * * *",
            zone: "America/New_York",
            after: "2026-03-08T07:00:00Z",
            expected: &["2026-03-09T06:30:00Z"],
        },
    ]);
}

#[test]
fn new_york_fall_back() {
    check(&[
        // A fixed hour fires once, at the first 01:30 (EDT).
        Case {
            expression: "30 1 * * *",
            zone: "America/New_York",
            after: "2026-10-31T00:00:00Z",
            expected: &[
                "2026-10-31T05:30:00Z",
                "2026-11-01T05:30:00Z",
                "2026-11-02T06:30:00Z",
            ],
        },
        // Searching from inside the second pass skips the repeated 01:30.
        Case {
            expression: "30 1 * * *",
            zone: "America/New_York",
            after: "2026-11-01T06:10:00Z",
            expected: &["2026-11-02T06:30:00Z"],
        },
        // A fixed hour with every minute fires through the first pass only.
        Case {
            expression: "*/20 1 * * *",
            zone: "America/New_York",
            after: "2026-11-01T04:00:00Z",
            expected: &[
                "2026-11-01T05:00:00Z",
                "2026-11-01T05:20:00Z",
                "2026-11-01T05:40:00Z",
                "2026-11-02T06:00:00Z",
            ],
        },
        // Hour `*` fires at every real half hour, both passes included.
        Case {
            expression: "30 * * * *",
            zone: "America/New_York",
            after: "2026-11-01T04:00:00Z",
            expected: &[
                "2026-11-01T04:30:00Z",
                "2026-11-01T05:30:00Z",
                "2026-11-01T06:30:00Z",
                "2026-11-01T07:30:00Z",
            ],
        },
        // A stepped range fires at 01:00 EDT, 01:00 EST and 03:00 EST.
        Case {
            expression: "0 1-3/2 * * *",
            zone: "America/New_York",
            after: "2026-11-01T04:00:00Z",
            expected: &[
                "2026-11-01T05:00:00Z",
                "2026-11-01T06:00:00Z",
                "2026-11-01T08:00:00Z",
            ],
        },
        // Starting inside the first pass still finds the second pass.
        Case {
            expression: "0,30 * * * *",
            zone: "America/New_York",
            after: "2026-11-01T05:10:00Z",
            expected: &[
                "2026-11-01T05:30:00Z",
                "2026-11-01T06:00:00Z",
                "2026-11-01T06:30:00Z",
                "2026-11-01T07:00:00Z",
            ],
        },
        // A fixed time after the change keeps its local meaning.
        Case {
            expression: "15 3 * * *",
            zone: "America/New_York",
            after: "2026-10-31T00:00:00Z",
            expected: &[
                "2026-10-31T07:15:00Z",
                "2026-11-01T08:15:00Z",
                "2026-11-02T08:15:00Z",
            ],
        },
    ]);
}

#[test]
fn berlin_spring_and_fall() {
    check(&[
        Case {
            expression: "30 2 * * *",
            zone: "Europe/Berlin",
            after: "2026-03-28T00:00:00Z",
            expected: &[
                "2026-03-28T01:30:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-30T00:30:00Z",
            ],
        },
        Case {
            expression: "30 2 * * *",
            zone: "Europe/Berlin",
            after: "2026-10-24T00:00:00Z",
            expected: &[
                "2026-10-24T00:30:00Z",
                "2026-10-25T00:30:00Z",
                "2026-10-26T01:30:00Z",
            ],
        },
        // 00:00 CEST, 02:00 CEST, 02:00 CET, 04:00 CET.
        Case {
            expression: "0 */2 * * *",
            zone: "Europe/Berlin",
            after: "2026-10-24T21:00:00Z",
            expected: &[
                "2026-10-24T22:00:00Z",
                "2026-10-25T00:00:00Z",
                "2026-10-25T01:00:00Z",
                "2026-10-25T03:00:00Z",
            ],
        },
        // 00:00 CET, 02:00 (skipped, fires at 03:00 CEST), 04:00 CEST.
        Case {
            expression: "0 0 */2 * * *",
            zone: "Europe/Berlin",
            after: "2026-03-28T22:00:00Z",
            expected: &[
                "2026-03-28T23:00:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-29T02:00:00Z",
            ],
        },
        // Seconds keep their meaning too: 02:30:15 skipped, then 02:30:15 CEST the day after.
        Case {
            expression: "15 30 2 * * *",
            zone: "Europe/Berlin",
            after: "2026-03-28T12:00:00Z",
            expected: &["2026-03-29T01:00:00Z", "2026-03-30T00:30:15Z"],
        },
    ]);
}

#[test]
fn sydney_fall_and_spring() {
    check(&[
        // April: 02:00-02:59 repeats; the fixed hour fires at the first 02:30 (AEDT).
        Case {
            expression: "30 2 * * *",
            zone: "Australia/Sydney",
            after: "2026-04-03T00:00:00Z",
            expected: &[
                "2026-04-03T15:30:00Z",
                "2026-04-04T15:30:00Z",
                "2026-04-05T16:30:00Z",
            ],
        },
        // Hourly fires at 02:00 AEDT, 02:00 AEST and 03:00 AEST.
        Case {
            expression: "0 * * * *",
            zone: "Australia/Sydney",
            after: "2026-04-04T14:30:00Z",
            expected: &[
                "2026-04-04T15:00:00Z",
                "2026-04-04T16:00:00Z",
                "2026-04-04T17:00:00Z",
            ],
        },
        // October: 02:30 is skipped and fires at 03:00 AEDT.
        Case {
            expression: "30 2 * * *",
            zone: "Australia/Sydney",
            after: "2026-10-02T00:00:00Z",
            expected: &[
                "2026-10-02T16:30:00Z",
                "2026-10-03T16:00:00Z",
                "2026-10-04T15:30:00Z",
            ],
        },
        Case {
            expression: "0 */2 * * *",
            zone: "Australia/Sydney",
            after: "2026-10-03T13:30:00Z",
            expected: &[
                "2026-10-03T14:00:00Z",
                "2026-10-03T16:00:00Z",
                "2026-10-03T17:00:00Z",
            ],
        },
    ]);
}

#[test]
fn cairo_midnight_changes() {
    check(&[
        // Spring: 00:00-00:59 on 04-24 is skipped; 00:30 fires at 01:00 EEST.
        Case {
            expression: "30 0 * * *",
            zone: "Africa/Cairo",
            after: "2026-04-22T00:00:00Z",
            expected: &[
                "2026-04-22T22:30:00Z",
                "2026-04-23T22:00:00Z",
                "2026-04-24T21:30:00Z",
            ],
        },
        // Midnight itself is skipped on 04-24 and fires at 01:00 EEST.
        Case {
            expression: "@daily",
            zone: "Africa/Cairo",
            after: "2026-04-22T00:00:00Z",
            expected: &[
                "2026-04-22T22:00:00Z",
                "2026-04-23T22:00:00Z",
                "2026-04-24T21:00:00Z",
            ],
        },
        // Autumn: 23:00-23:59 on 10-29 repeats; the fixed hour fires once (EEST).
        Case {
            expression: "30 23 * * *",
            zone: "Africa/Cairo",
            after: "2026-10-28T00:00:00Z",
            expected: &[
                "2026-10-28T20:30:00Z",
                "2026-10-29T20:30:00Z",
                "2026-10-30T21:30:00Z",
            ],
        },
        // A stepped hour fires at both 23:30s.
        Case {
            expression: "30 */1 * * *",
            zone: "Africa/Cairo",
            after: "2026-10-29T19:00:00Z",
            expected: &[
                "2026-10-29T19:30:00Z",
                "2026-10-29T20:30:00Z",
                "2026-10-29T21:30:00Z",
                "2026-10-29T22:30:00Z",
            ],
        },
        // The day after the autumn change: midnight EET is 22:00Z.
        Case {
            expression: "0 0 * * *",
            zone: "Africa/Cairo",
            after: "2026-10-29T12:00:00Z",
            expected: &["2026-10-29T22:00:00Z", "2026-10-30T22:00:00Z"],
        },
    ]);
}

#[test]
fn kolkata_has_fixed_offset() {
    check(&[
        Case {
            expression: "30 2 * * *",
            zone: "Asia/Kolkata",
            after: "2026-03-07T00:00:00Z",
            expected: &[
                "2026-03-07T21:00:00Z",
                "2026-03-08T21:00:00Z",
                "2026-03-09T21:00:00Z",
            ],
        },
        Case {
            expression: "0 */2 * * *",
            zone: "Asia/Kolkata",
            after: "2026-03-07T18:00:00Z",
            expected: &[
                "2026-03-07T18:30:00Z",
                "2026-03-07T20:30:00Z",
                "2026-03-07T22:30:00Z",
            ],
        },
    ]);
}

#[test]
fn every_minute_counts_real_minutes() {
    // Each window runs from local midnight to the next local midnight (from
    // 01:00 on Cairo's spring day, whose midnight does not exist): 23 real
    // hours on a spring day, 25 on a fall-back day and 24 otherwise.
    let windows = [
        (
            "America/New_York",
            "2026-03-08T05:00:00Z",
            "2026-03-09T04:00:00Z",
            23 * 60,
        ),
        (
            "America/New_York",
            "2026-11-01T04:00:00Z",
            "2026-11-02T05:00:00Z",
            25 * 60,
        ),
        (
            "Europe/Berlin",
            "2026-03-28T23:00:00Z",
            "2026-03-29T22:00:00Z",
            23 * 60,
        ),
        (
            "Europe/Berlin",
            "2026-10-24T22:00:00Z",
            "2026-10-25T23:00:00Z",
            25 * 60,
        ),
        (
            "Australia/Sydney",
            "2026-04-04T13:00:00Z",
            "2026-04-05T14:00:00Z",
            25 * 60,
        ),
        (
            "Australia/Sydney",
            "2026-10-03T14:00:00Z",
            "2026-10-04T13:00:00Z",
            23 * 60,
        ),
        (
            "Africa/Cairo",
            "2026-04-23T22:00:00Z",
            "2026-04-24T21:00:00Z",
            23 * 60,
        ),
        (
            "Africa/Cairo",
            "2026-10-28T21:00:00Z",
            "2026-10-29T22:00:00Z",
            25 * 60,
        ),
        (
            "Asia/Kolkata",
            "2026-03-07T18:30:00Z",
            "2026-03-08T18:30:00Z",
            24 * 60,
        ),
    ];
    for (zone, start, end, minutes) in windows {
        let fires = count_fires("* * * * *", zone, start, end);
        assert_eq!(
            fires, minutes,
            "every-minute fires in {zone} from {start} to {end}"
        );
    }
}

#[test]
fn every_minute_has_no_gaps_or_repeats() {
    // Across each change, consecutive fires are exactly one real minute apart.
    let windows = [
        ("America/New_York", "2026-03-08T06:00:00Z"),
        ("America/New_York", "2026-11-01T05:00:00Z"),
        ("Europe/Berlin", "2026-03-29T00:00:00Z"),
        ("Europe/Berlin", "2026-10-25T00:00:00Z"),
        ("Australia/Sydney", "2026-04-04T15:00:00Z"),
        ("Australia/Sydney", "2026-10-03T15:00:00Z"),
        ("Africa/Cairo", "2026-04-23T21:00:00Z"),
        ("Africa/Cairo", "2026-10-29T20:00:00Z"),
    ];
    for (zone, start) in windows {
        let start = instant(start);
        let schedule = Schedule::parse("* * * * *", zone, start).expect("valid expression");
        let fires: Vec<_> = schedule.iter_after(start).take(180).collect();
        assert_eq!(fires.len(), 180, "fires in {zone}");
        for pair in fires.windows(2) {
            assert_eq!(
                (pair[1] - pair[0]).num_seconds(),
                60,
                "step in {zone} at {}",
                pair[0]
            );
        }
    }
}

#[test]
fn hourly_counts_real_hours() {
    // `@hourly` has hour `*`, so it fires in both passes of a repeated hour.
    let windows = [
        (
            "America/New_York",
            "2026-03-08T05:00:00Z",
            "2026-03-09T04:00:00Z",
            23,
        ),
        (
            "America/New_York",
            "2026-11-01T04:00:00Z",
            "2026-11-02T05:00:00Z",
            25,
        ),
        (
            "Europe/Berlin",
            "2026-10-24T22:00:00Z",
            "2026-10-25T23:00:00Z",
            25,
        ),
        (
            "Africa/Cairo",
            "2026-10-28T21:00:00Z",
            "2026-10-29T22:00:00Z",
            25,
        ),
    ];
    for (zone, start, end, hours) in windows {
        let fires = count_fires("@hourly", zone, start, end);
        assert_eq!(fires, hours, "hourly fires in {zone} from {start} to {end}");
    }
}

#[test]
fn fixed_daily_fires_once_per_day() {
    // A fixed time fires once a day through every change, including times
    // inside a gap or a repeat.
    let cases = [
        (
            "30 2 * * *",
            "America/New_York",
            "2026-03-01T00:00:00Z",
            "2026-03-15T00:00:00Z",
            14,
        ),
        (
            "30 1 * * *",
            "America/New_York",
            "2026-10-25T00:00:00Z",
            "2026-11-08T00:00:00Z",
            14,
        ),
        (
            "30 2 * * *",
            "Europe/Berlin",
            "2026-10-18T00:00:00Z",
            "2026-11-01T00:00:00Z",
            14,
        ),
        (
            "30 23 * * *",
            "Africa/Cairo",
            "2026-10-22T00:00:00Z",
            "2026-11-05T00:00:00Z",
            14,
        ),
    ];
    for (expression, zone, start, end, days) in cases {
        let fires = count_fires(expression, zone, start, end);
        assert_eq!(fires, days, "{expression} in {zone} from {start} to {end}");
    }
}
