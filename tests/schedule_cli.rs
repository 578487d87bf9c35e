//! `delicate cron preview`, run as a child process.

use std::process::{Command, Output};

fn delicate(args: &[&str], host_zone: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_delicate"));
    command.args(args);
    match host_zone {
        Some(zone) => command.env("TZ", zone),
        None => command.env_remove("TZ"),
    };
    command.output().expect("the delicate binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("stderr is UTF-8")
}

#[test]
fn preview_prints_one_instant_per_line() {
    let output = delicate(
        &[
            "cron",
            "preview",
            "--tz",
            "America/New_York",
            "--after",
            "2026-03-07T00:00:00Z",
            "--count",
            "3",
            "30 2 * * *",
        ],
        None,
    );
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "2026-03-07T07:30:00Z\n2026-03-08T07:00:00Z\n2026-03-09T06:30:00Z\n"
    );
    assert_eq!(stderr(&output), "");
}

#[test]
fn preview_json_output() {
    let output = delicate(
        &[
            "cron",
            "preview",
            "--tz",
            "Europe/Berlin",
            "--after",
            "2026-03-28T00:00:00+01:00",
            "--count",
            "2",
            "--json",
            "0 30 2 * * *",
        ],
        None,
    );
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    assert_eq!(
        stdout(&output),
        concat!(
            r#"{"expression":"0 30 2 * * *","time_zone":"Europe/Berlin","#,
            r#""fire_times":["2026-03-28T01:30:00Z","2026-03-29T01:00:00Z"]}"#,
            "\n"
        )
    );

    let document: serde_json::Value =
        serde_json::from_str(&stdout(&output)).expect("output is JSON");
    assert_eq!(document["fire_times"].as_array().map(Vec::len), Some(2));
}

#[test]
fn preview_defaults_to_ten_from_now_in_utc() {
    let output = delicate(
        &["cron", "preview", "--tz", "Europe/Berlin", "0 30 2 * * *"],
        None,
    );
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 10);
    for line in lines {
        assert!(
            chrono::DateTime::parse_from_rfc3339(line).is_ok(),
            "not RFC 3339: {line}"
        );
        assert!(line.ends_with('Z'), "not UTC: {line}");
    }

    let output = delicate(
        &[
            "cron",
            "preview",
            "--after",
            "2026-01-01T00:00:00Z",
            "@hourly",
        ],
        None,
    );
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    let text = stdout(&output);
    assert_eq!(
        text.lines().next(),
        Some("2026-01-01T01:00:00Z"),
        "default zone is UTC"
    );
    assert_eq!(text.lines().count(), 10);
}

#[test]
fn preview_stops_when_years_run_out() {
    let output = delicate(
        &[
            "cron",
            "preview",
            "--after",
            "2026-01-01T00:00:00Z",
            "--json",
            "0 0 0 1 1 ? 2027",
        ],
        None,
    );
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "{\"expression\":\"0 0 0 1 1 ? 2027\",\"time_zone\":\"UTC\",\"fire_times\":[\"2027-01-01T00:00:00Z\"]}\n"
    );
}

#[test]
fn invalid_expression_exits_one() {
    let output = delicate(&["cron", "preview", "0 0 32 * *"], None);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output), "");
    assert_eq!(
        stderr(&output),
        "error: invalid day-of-month value \"32\" in \"0 0 32 * *\": must be 1-31, L, L-N or NW\n"
    );

    let output = delicate(&["cron", "preview", "--json", "0 0 30 2 *"], None);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output), "");
    assert!(
        stderr(&output).contains("can never fire"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn unknown_zone_exits_one() {
    let output = delicate(&["cron", "preview", "--tz", "Mars/Base", "* * * * *"], None);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "error: unknown time zone \"Mars/Base\": use an IANA name such as Europe/Berlin\n"
    );
}

#[test]
fn usage_errors_exit_two() {
    let cases: &[&[&str]] = &[
        &["cron", "preview", "--count", "0", "* * * * *"],
        &["cron", "preview", "--count", "1001", "* * * * *"],
        &["cron", "preview", "--count", "ten", "* * * * *"],
        &["cron", "preview", "--after", "yesterday", "* * * * *"],
        &["cron", "preview"],
    ];
    for args in cases {
        let output = delicate(args, None);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert_eq!(stdout(&output), "", "{args:?}");
    }
}

#[test]
fn count_accepts_maximum() {
    let output = delicate(
        &[
            "cron",
            "preview",
            "--after",
            "2026-01-01T00:00:00Z",
            "--count",
            "1000",
            "* * * * *",
        ],
        None,
    );
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    let text = stdout(&output);
    assert_eq!(text.lines().count(), 1000);
    assert_eq!(text.lines().last(), Some("2026-01-01T16:40:00Z"));
}

#[test]
fn host_zone_does_not_change_output() {
    let previews: &[&[&str]] = &[
        &[
            "--tz",
            "Europe/Berlin",
            "--after",
            "2026-03-28T00:00:00Z",
            "0 30 2 * * *",
        ],
        &[
            "--tz",
            "America/New_York",
            "--after",
            "2026-10-31T00:00:00Z",
            "0 */2 * * *",
        ],
        &[
            "--tz",
            "UTC",
            "--after",
            "2026-01-01T00:00:00Z",
            "0 9 * * mon-fri",
        ],
        &[
            "--tz",
            "Asia/Kolkata",
            "--after",
            "2026-01-01T00:00:00Z",
            "--json",
            "@daily",
        ],
    ];
    for preview in previews {
        let mut args = vec!["cron", "preview", "--count", "12"];
        args.extend_from_slice(preview);

        let outputs: Vec<(String, Output)> = ["America/New_York", "Asia/Tokyo", "UTC"]
            .iter()
            .map(|host_zone| (host_zone.to_string(), delicate(&args, Some(host_zone))))
            .collect();
        let (_, reference) = &outputs[0];
        assert_eq!(
            reference.status.code(),
            Some(0),
            "{preview:?}: {}",
            stderr(reference)
        );
        assert!(!reference.stdout.is_empty());
        for (host_zone, output) in &outputs[1..] {
            assert_eq!(output.status.code(), Some(0), "TZ={host_zone} {preview:?}");
            assert_eq!(
                stdout(output),
                stdout(reference),
                "TZ={host_zone} {preview:?}"
            );
        }
    }
}
