//! `delicate crontab import` against a live standalone node: user and
//! system crontabs, re-imports, bad lines, dry runs, and an imported line
//! that runs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use common::{BINARY, Node, wait_for};
use serde_json::{Value, json};

struct Run {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.stdout)
            )
        })
    }
}

fn cli(server: &str, args: &[&str]) -> Run {
    let output = Command::new(BINARY)
        .args(args)
        .args(["--server", server])
        .env_remove("DELICATE_SERVER")
        .env("COLUMNS", "400")
        .stdin(Stdio::null())
        .output()
        .expect("running the delicate binary");
    Run {
        code: output.status.code().expect("the CLI exits with a status"),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn ok(server: &str, args: &[&str]) -> Run {
    let run = cli(server, args);
    assert_eq!(run.code, 0, "delicate {args:?} failed: {}", run.stderr);
    run
}

fn start() -> (tempfile::TempDir, Node, String) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::standalone(&dir.path().join("node"));
    node.api().wait_online(1, Duration::from_secs(30));
    let server = format!("http://{}", node.http.unwrap());
    (dir, node, server)
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

fn time(value: &Value) -> DateTime<Utc> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{value} is not a time"));
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// Returns the imported task named `name` from an import result.
fn imported<'a>(result: &'a Value, name: &str) -> &'a Value {
    result["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|task| task["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not in {result:#}"))
}

fn tasks(server: &str) -> Vec<Value> {
    ok(server, &["task", "list", "--json"])
        .json()
        .as_array()
        .unwrap()
        .clone()
}

fn utc(year: i32, month: u32, day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(year, month, day)
        .unwrap()
        .and_hms_opt(hour, minute, 0)
        .unwrap()
        .and_utc()
}

/// Returns the earliest candidate after `after`.
fn first_after(
    after: DateTime<Utc>,
    candidates: impl IntoIterator<Item = DateTime<Utc>>,
) -> DateTime<Utc> {
    candidates
        .into_iter()
        .filter(|at| *at > after)
        .min()
        .expect("a candidate after the instant")
}

/// 04:30 in Tokyo (UTC+9, no daylight saving time) on the 1st and 15th is
/// 19:30 UTC the day before.
fn tokyo_0430_on_1st_and_15th(after: DateTime<Utc>) -> DateTime<Utc> {
    let mut candidates = Vec::new();
    let (mut year, mut month) = (after.year(), after.month());
    for _ in 0..3 {
        for day in [1, 15] {
            candidates.push(utc(year, month, day, 4, 30) - TimeDelta::hours(9));
        }
        (year, month) = if month == 12 {
            (year + 1, 1)
        } else {
            (year, month + 1)
        };
    }
    first_after(after, candidates)
}

/// `@yearly` in New York: 1 January 00:00 EST, which is 05:00 UTC.
fn new_york_new_year(after: DateTime<Utc>) -> DateTime<Utc> {
    first_after(
        after,
        [after.year(), after.year() + 1].map(|year| utc(year, 1, 1, 5, 0)),
    )
}

/// Returns the next whole ten minutes after `after`.
fn next_ten_minutes(after: DateTime<Utc>) -> DateTime<Utc> {
    let floor = utc(
        after.year(),
        after.month(),
        after.day(),
        after.hour(),
        after.minute() / 10 * 10,
    );
    floor + TimeDelta::minutes(10)
}

/// Returns the next hh:17 UTC after `after`.
fn next_17_past(after: DateTime<Utc>) -> DateTime<Utc> {
    let this_hour = utc(after.year(), after.month(), after.day(), after.hour(), 17);
    first_after(after, [this_hour, this_hour + TimeDelta::hours(1)])
}

/// Asserts that `found` is what `expected` gives for an instant between
/// `before` and `after`, the bounds of the server's clock during the import.
fn assert_next(
    found: &Value,
    expected: fn(DateTime<Utc>) -> DateTime<Utc>,
    before: DateTime<Utc>,
    after: DateTime<Utc>,
) {
    let found = time(found);
    let allowed = [expected(before), expected(after)];
    assert!(
        allowed.contains(&found),
        "next fire time {found}, expected one of {allowed:?}"
    );
}

const USER_CRONTAB: &str = "\
# nightly jobs
SHELL=/bin/bash
PATH = /usr/local/bin:/usr/bin:/bin
MAILTO=\"ops@example.com\"
30 04 1,15 * * /usr/local/bin/backup --full
CRON_TZ=America/New_York
@yearly echo happy new year
0 8-18/5 * * mon-fri date +\\%F%note one%note two
TZ=UTC
*/10 * * * * echo tick
";

#[test]
fn user_crontab_becomes_tasks() {
    let (dir, _node, server) = start();
    let s = server.as_str();
    let file = write(dir.path(), "backup.cron", USER_CRONTAB);

    let before = Utc::now();
    let result = ok(
        s,
        &[
            "crontab",
            "import",
            file.to_str().unwrap(),
            "--tz",
            "Asia/Tokyo",
            "--bind",
            "default-local",
            "--json",
        ],
    )
    .json();
    let after = Utc::now();
    assert_eq!(result["created"], 4, "{result:#}");
    assert_eq!(result["bad_lines"], json!([]));

    let base_env = json!({"SHELL": "/bin/bash", "PATH": "/usr/local/bin:/usr/bin:/bin", "MAILTO": "ops@example.com"});
    let backup = imported(&result, "crontab-backup.cron-5");
    assert_eq!(backup["action"], "created");
    assert_eq!(backup["cron_expression"], "30 04 1,15 * *");
    assert_eq!(
        backup["time_zone"], "Asia/Tokyo",
        "lines before CRON_TZ take --tz"
    );
    assert_eq!(backup["command"], "/usr/local/bin/backup --full");
    assert_eq!(backup["env"], base_env);
    assert_eq!(backup["mailto"], "ops@example.com");
    assert_eq!(backup["run_as"], Value::Null);
    assert_eq!(backup["binding_ids"], json!([1]));
    assert_next(
        &backup["next_fire_time"],
        tokyo_0430_on_1st_and_15th,
        before,
        after,
    );

    let yearly = imported(&result, "crontab-backup.cron-7");
    assert_eq!(yearly["cron_expression"], "@yearly");
    assert_eq!(yearly["time_zone"], "America/New_York");
    assert_eq!(
        yearly["env"], base_env,
        "CRON_TZ is not passed to the command"
    );
    assert_next(&yearly["next_fire_time"], new_york_new_year, before, after);

    let weekdays = imported(&result, "crontab-backup.cron-8");
    assert_eq!(weekdays["cron_expression"], "0 8-18/5 * * mon-fri");
    assert_eq!(weekdays["command"], "date +%F");
    assert_eq!(weekdays["stdin"], "note one\nnote two");
    let stored = ok(s, &["task", "show", "crontab-backup.cron-8", "--json"]).json();
    let new_york: Tz = "America/New_York".parse().unwrap();
    let fire_times = stored["next_fire_times"].as_array().unwrap();
    assert_eq!(fire_times.len(), 5);
    for at in fire_times {
        let local = time(at).with_timezone(&new_york);
        assert!(
            [8, 13, 18].contains(&local.hour()),
            "{local} is not at 8, 13 or 18 o'clock"
        );
        assert_eq!(local.minute(), 0, "{local}");
        assert!(
            ![Weekday::Sat, Weekday::Sun].contains(&local.weekday()),
            "{local} is a weekend day"
        );
    }

    let tick = imported(&result, "crontab-backup.cron-10");
    assert_eq!(tick["time_zone"], "UTC");
    assert_eq!(
        tick["env"]["TZ"], "UTC",
        "TZ stays in the command's environment"
    );
    assert_next(&tick["next_fire_time"], next_ten_minutes, before, after);

    let names: Vec<String> = tasks(s)
        .iter()
        .map(|task| task["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
    let stored = ok(s, &["task", "show", "crontab-backup.cron-5", "--json"]).json();
    assert_eq!(stored["mailto"], "ops@example.com");
    assert_eq!(stored["env"], base_env);
}

const SYSTEM_CRONTAB: &str = "\
SHELL=/bin/sh
PATH=/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin

# m h dom mon dow user\tcommand
17 *\t* * *\troot    cd / && run-parts --report /etc/cron.hourly
25 6\t* * *\troot\ttest -x /usr/sbin/anacron || ( cd / && run-parts --report /etc/cron.daily )
47 6\t* * 7\troot\ttest -x /usr/sbin/anacron || ( cd / && run-parts --report /etc/cron.weekly )
52 6\t1 * *\troot\ttest -x /usr/sbin/anacron || ( cd / && run-parts --report /etc/cron.monthly )
";

const CRON_D_FILE: &str = "\
MAILTO=admin@example.com
CRON_TZ=Europe/Berlin
09,39 *     * * *     www-data   [ -x /usr/lib/php/sessionclean ] && /usr/lib/php/sessionclean
@weekly backup /usr/bin/backup --incremental%yes
";

#[test]
fn system_crontabs_take_user_field() {
    let (dir, _node, server) = start();
    let s = server.as_str();
    let crontab = write(dir.path(), "crontab", SYSTEM_CRONTAB);
    let cron_d = write(dir.path(), "php", CRON_D_FILE);

    let before = Utc::now();
    let result = ok(
        s,
        &[
            "crontab",
            "import",
            crontab.to_str().unwrap(),
            cron_d.to_str().unwrap(),
            "--system",
            "--json",
        ],
    )
    .json();
    let after = Utc::now();
    assert_eq!(result["created"], 6, "{result:#}");

    let system_env = json!({"SHELL": "/bin/sh", "PATH": "/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin"});
    for line in 5..=8 {
        let task = imported(&result, &format!("crontab-crontab-{line}"));
        assert_eq!(task["run_as"], "root", "{task}");
        assert_eq!(task["env"], system_env, "{task}");
        assert_eq!(task["time_zone"], "UTC");
        assert_eq!(task["mailto"], Value::Null);
    }
    let hourly = imported(&result, "crontab-crontab-5");
    assert_eq!(
        hourly["command"],
        "cd / && run-parts --report /etc/cron.hourly"
    );
    assert_next(&hourly["next_fire_time"], next_17_past, before, after);
    let weekly = imported(&result, "crontab-crontab-7");
    assert_eq!(weekly["cron_expression"], "47 6 * * 7");
    let sunday = time(&weekly["next_fire_time"]);
    assert_eq!(
        sunday.weekday(),
        Weekday::Sun,
        "day-of-week 7 is Sunday: {sunday}"
    );
    assert_eq!((sunday.hour(), sunday.minute()), (6, 47));

    let session = imported(&result, "crontab-php-3");
    assert_eq!(session["run_as"], "www-data");
    assert_eq!(session["cron_expression"], "09,39 * * * *");
    assert_eq!(
        session["command"],
        "[ -x /usr/lib/php/sessionclean ] && /usr/lib/php/sessionclean"
    );
    assert_eq!(
        session["env"],
        json!({"MAILTO": "admin@example.com"}),
        "each file has its own environment"
    );
    assert_eq!(session["mailto"], "admin@example.com");
    assert_eq!(session["time_zone"], "Europe/Berlin");
    let minute = time(&session["next_fire_time"]).minute();
    assert!([9, 39].contains(&minute), "minute {minute}");

    let backup = imported(&result, "crontab-php-4");
    assert_eq!(backup["run_as"], "backup");
    assert_eq!(backup["command"], "/usr/bin/backup --incremental");
    assert_eq!(backup["stdin"], "yes");
    let berlin: Tz = "Europe/Berlin".parse().unwrap();
    let local = time(&backup["next_fire_time"]).with_timezone(&berlin);
    assert_eq!(
        local.weekday(),
        Weekday::Sun,
        "@weekly fires on Sunday: {local}"
    );
    assert_eq!((local.hour(), local.minute()), (0, 0), "{local}");
    assert!(time(&backup["next_fire_time"]) - after <= TimeDelta::days(7));

    let stored = ok(s, &["task", "show", "crontab-php-3", "--json"]).json();
    assert_eq!(stored["run_as"], "www-data");
}

#[test]
fn reimport_changes_nothing() {
    let (dir, _node, server) = start();
    let s = server.as_str();
    let file = write(dir.path(), "backup.cron", USER_CRONTAB);
    let path = file.to_str().unwrap();
    ok(s, &["crontab", "import", path]);
    let first = tasks(s);

    let again = ok(s, &["crontab", "import", path, "--json"]).json();
    assert_eq!(again["created"], 0, "{again:#}");
    assert_eq!(again["updated"], 0);
    assert_eq!(again["unchanged"], 4);
    let second = tasks(s);
    for (old, new) in first.iter().zip(&second) {
        assert_eq!(old["id"], new["id"]);
        assert_eq!(
            old["updated_time"], new["updated_time"],
            "{} was rewritten",
            old["name"]
        );
    }

    ok(
        s,
        &["task", "edit", "crontab-backup.cron-10", "--timeout", "60"],
    );
    let changed = USER_CRONTAB.replace("echo tick", "echo tock");
    std::fs::write(&file, changed).unwrap();
    let third = ok(s, &["crontab", "import", path, "--json"]).json();
    assert_eq!(third["updated"], 1, "{third:#}");
    assert_eq!(third["unchanged"], 3);
    assert_eq!(
        imported(&third, "crontab-backup.cron-10")["action"],
        "updated"
    );
    let task = ok(s, &["task", "show", "crontab-backup.cron-10", "--json"]).json();
    assert_eq!(task["command"], "echo tock");
    assert_eq!(
        task["timeout"], 60,
        "an import keeps fields the crontab does not set"
    );
    assert_eq!(tasks(s).len(), 4);
}

const BAD_CRONTAB: &str = "\
0 1 * * * echo first
61 * * * * echo bad minute
@reboot echo started
0 2 * * * echo last
";

#[test]
fn bad_line_imports_nothing() {
    let (dir, _node, server) = start();
    let s = server.as_str();
    let file = write(dir.path(), "bad.cron", BAD_CRONTAB);
    let path = file.to_str().unwrap();

    let rejected = cli(s, &["crontab", "import", path]);
    assert_eq!(rejected.code, 1);
    assert!(
        rejected
            .stderr
            .contains(&format!("{path}:2: invalid minute value \"61\"")),
        "{}",
        rejected.stderr
    );
    assert!(
        rejected
            .stderr
            .contains(&format!("{path}:3: @reboot is not supported")),
        "{}",
        rejected.stderr
    );
    assert!(
        rejected.stderr.contains("nothing was imported"),
        "{}",
        rejected.stderr
    );
    assert_eq!(
        tasks(s),
        Vec::<Value>::new(),
        "a rejected import leaves no task behind"
    );

    let dry = ok(
        s,
        &[
            "crontab",
            "import",
            path,
            "--skip-invalid",
            "--dry-run",
            "--json",
        ],
    )
    .json();
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["created"], 2, "{dry:#}");
    assert_eq!(imported(&dry, "crontab-bad.cron-1")["id"], Value::Null);
    assert_eq!(dry["bad_lines"].as_array().unwrap().len(), 2);
    assert_eq!(tasks(s), Vec::<Value>::new(), "a dry run writes nothing");

    let skipped = ok(s, &["crontab", "import", path, "--skip-invalid"]);
    assert!(
        skipped.stderr.contains(&format!("skipped: {path}:2:")),
        "{}",
        skipped.stderr
    );
    let table = String::from_utf8_lossy(&skipped.stdout).into_owned();
    assert!(
        table.contains("crontab-bad.cron-1") && table.contains("crontab-bad.cron-4"),
        "{table}"
    );
    assert!(
        table.contains("2 created, 0 updated, 0 unchanged"),
        "{table}"
    );
    let names: Vec<Value> = tasks(s).iter().map(|task| task["name"].clone()).collect();
    assert_eq!(
        names,
        [json!("crontab-bad.cron-1"), json!("crontab-bad.cron-4")]
    );

    let dry = ok(
        s,
        &["crontab", "import", path, "--skip-invalid", "--dry-run"],
    );
    let table = String::from_utf8_lossy(&dry.stdout).into_owned();
    assert!(
        table.contains("0 created, 0 updated, 2 unchanged (dry run"),
        "{table}"
    );

    let bad_zone = cli(s, &["crontab", "import", path, "--tz", "Mars/Olympus"]);
    assert_eq!(bad_zone.code, 1);
    assert!(
        bad_zone
            .stderr
            .contains("unknown time zone \"Mars/Olympus\""),
        "{}",
        bad_zone.stderr
    );
}

#[test]
fn imported_line_runs_with_stdin() {
    let (dir, _node, server) = start();
    let s = server.as_str();
    let file = write(
        dir.path(),
        "jobs.cron",
        "* * * * * echo imported%line1%line2\n0 0 1 1 * cat%line1%line2 \\%\n",
    );
    let result = ok(s, &["crontab", "import", file.to_str().unwrap(), "--json"]).json();
    assert_eq!(
        imported(&result, "crontab-jobs.cron-1")["run_as"],
        Value::Null
    );

    let run = ok(s, &["task", "run", "crontab-jobs.cron-2", "--json"]).json();
    let manual = run["instances"][0]["id"].as_str().unwrap().to_string();
    let fired = wait_for(
        "a cron fire of the imported line",
        Duration::from_secs(120),
        || {
            let list = ok(
                s,
                &[
                    "instance",
                    "list",
                    "--task",
                    "crontab-jobs.cron-1",
                    "--status",
                    "finished",
                    "--json",
                ],
            )
            .json();
            list.as_array().unwrap().first().cloned()
        },
    );
    assert_eq!(fired["trigger"], "cron");
    assert_eq!(fired["exit_code"], 0);
    let id = fired["id"].as_str().unwrap();
    assert_eq!(
        ok(s, &["instance", "output", id]).stdout,
        b"imported\n",
        "echo ignores its stdin"
    );

    wait_for("the manual run to end", Duration::from_secs(60), || {
        let instance = ok(s, &["instance", "show", &manual, "--json"]).json();
        (instance["status"] != "running").then_some(())
    });
    let output = ok(s, &["instance", "output", &manual]).stdout;
    assert_eq!(
        output, b"line1\nline2 %",
        "cat prints the text after the first %"
    );
}
