//! The client commands of the `delicate` binary against a live standalone
//! node: every verb, names and ids, tables and JSON, exit statuses.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{BINARY, Node, unique_sleep, wait_for};
use serde_json::Value;

/// The status, stdout and stderr of one CLI run.
struct Run {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.text()))
    }
}

/// Runs the binary with `--server` and a wide `COLUMNS`, so tables are not cut.
fn cli(server: &str, args: &[&str]) -> Run {
    cli_with(server, args, &[("COLUMNS", "400")])
}

fn cli_with(server: &str, args: &[&str], envs: &[(&str, &str)]) -> Run {
    let mut command = Command::new(BINARY);
    command
        .args(args)
        .args(["--server", server])
        .env_remove("DELICATE_SERVER")
        .stdin(Stdio::null());
    for (key, value) in envs {
        command.env(key, value);
    }
    let output = command.output().expect("running the delicate binary");
    Run {
        code: output.status.code().expect("the CLI exits with a status"),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs the CLI and asserts exit status 0.
fn ok(server: &str, args: &[&str]) -> Run {
    let run = cli(server, args);
    assert_eq!(
        run.code,
        0,
        "delicate {args:?} failed: {}{}",
        run.stderr,
        run.text()
    );
    run
}

fn start() -> (tempfile::TempDir, Node, String) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::standalone(dir.path());
    node.api().wait_online(1, Duration::from_secs(30));
    let server = format!("http://{}", node.http.unwrap());
    (dir, node, server)
}

/// Waits until the instance has ended and returns it as JSON.
fn ended_instance(server: &str, id: &str) -> Value {
    wait_for(
        &format!("instance {id} to end"),
        Duration::from_secs(60),
        || {
            let instance = ok(server, &["instance", "show", id, "--json"]).json();
            (instance["status"] != "running").then_some(instance)
        },
    )
}

#[test]
fn task_verbs_by_name_and_id() {
    let (_dir, _node, server) = start();
    let s = server.as_str();

    let created = ok(
        s,
        &[
            "task",
            "create",
            "--name",
            "report",
            "--cron",
            "0 3 * * *",
            "--command",
            "echo out; echo err >&2",
            "--tz",
            "Europe/Berlin",
            "--bind",
            "default-local",
            "--timeout",
            "30",
            "--retries",
            "2",
            "--retry-interval",
            "5",
            "--max-parallel",
            "3",
            "--dispatch",
            "broadcast",
            "--count",
            "4",
            "--env",
            "A=1",
            "--env",
            "B=two words",
            "--description",
            "nightly report",
            "--tag",
            "reports",
            "--misfire-grace",
            "90",
            "--mailto",
            "ops@example.com",
            "--json",
        ],
    )
    .json();
    let id = created["id"].as_u64().unwrap();
    let id_text = id.to_string();
    assert_eq!(created["time_zone"], "Europe/Berlin");
    assert_eq!(created["binding_ids"], serde_json::json!([1]));
    assert_eq!(created["timeout"], 30);
    assert_eq!(created["retry_times"], 2);
    assert_eq!(created["retry_interval"], 5);
    assert_eq!(created["maximum_parallel_runnable_num"], 3);
    assert_eq!(created["dispatch"], "broadcast");
    assert_eq!(
        created["frequency"],
        serde_json::json!({"mode": "count_down", "count": 4})
    );
    assert_eq!(
        created["env"],
        serde_json::json!({"A": "1", "B": "two words"})
    );
    assert_eq!(created["description"], "nightly report");
    assert_eq!(created["tag"], "reports");
    assert_eq!(created["misfire_grace"], 90);
    assert_eq!(created["mailto"], "ops@example.com");

    let table = ok(s, &["task", "list"]).text();
    let header = table.lines().next().unwrap();
    for column in [
        "ID",
        "NAME",
        "SCHEDULE",
        "ZONE",
        "STATUS",
        "NEXT FIRE",
        "LAST RUN",
    ] {
        assert!(header.contains(column), "{header:?} lacks {column}");
    }
    let row = table.lines().nth(1).unwrap();
    for value in [
        id_text.as_str(),
        "report",
        "0 3 * * *",
        "Europe/Berlin",
        "enabled",
    ] {
        assert!(row.contains(value), "{row:?} lacks {value}");
    }
    let listed = ok(s, &["task", "list", "--json"]).json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["name"], "report");

    let narrow = cli_with(s, &["task", "list"], &[("COLUMNS", "50")]);
    assert_eq!(narrow.code, 0, "{}", narrow.stderr);
    for line in narrow.text().lines() {
        assert!(
            line.chars().count() <= 50,
            "{line:?} is wider than COLUMNS=50"
        );
    }

    for reference in ["report", id_text.as_str()] {
        let shown = ok(s, &["task", "show", reference]).text();
        assert!(shown.contains("name:"), "{shown}");
        assert!(shown.contains("report"), "{shown}");
        assert!(shown.contains("B=two words"), "{shown}");
    }

    let edited = ok(
        s,
        &[
            "task",
            "edit",
            "report",
            "--cron",
            "*/5 * * * *",
            "--env",
            "C=3",
            "--unset-env",
            "A",
            "--repeat",
            "--run-as",
            "",
            "--json",
        ],
    )
    .json();
    assert_eq!(edited["cron_expression"], "*/5 * * * *");
    assert_eq!(
        edited["env"],
        serde_json::json!({"B": "two words", "C": "3"})
    );
    assert_eq!(edited["frequency"], serde_json::json!({"mode": "repeat"}));
    assert_eq!(edited["timeout"], 30, "fields left out keep their value");

    let disabled = ok(s, &["task", "disable", &id_text]).text();
    assert!(disabled.contains("is disabled"), "{disabled}");
    let shown = ok(s, &["task", "show", "report", "--json"]).json();
    assert_eq!(shown["status"], "disabled");
    assert_eq!(shown["next_fire_times"], serde_json::json!([]));
    let enabled = ok(s, &["task", "enable", "report"]).text();
    assert!(enabled.contains("is enabled"), "{enabled}");

    let run = ok(s, &["task", "run", "report", "--json"]).json();
    let instance_id = run["instances"][0]["id"].as_str().unwrap().to_string();
    let instance = ended_instance(s, &instance_id);
    assert_eq!(instance["status"], "finished", "{instance}");
    assert_eq!(instance["trigger"], "manual");

    let instances = ok(s, &["instance", "list", "--task", "report"]).text();
    let header = instances.lines().next().unwrap();
    for column in [
        "ID",
        "TASK",
        "PROCESSOR",
        "STATUS",
        "TRIGGER",
        "ATTEMPT",
        "START",
        "DURATION",
        "EXIT",
    ] {
        assert!(header.contains(column), "{header:?} lacks {column}");
    }
    let row = instances.lines().nth(1).unwrap();
    for value in [
        instance_id.as_str(),
        "report",
        "local",
        "finished",
        "manual",
    ] {
        assert!(row.contains(value), "{row:?} lacks {value}");
    }
    let filtered = ok(
        s,
        &[
            "instance", "list", "--task", &id_text, "--status", "finished", "--since", "1h",
            "--json",
        ],
    )
    .json();
    assert_eq!(filtered.as_array().unwrap().len(), 1, "{filtered}");
    let none = ok(s, &["instance", "list", "--status", "running", "--json"]).json();
    assert_eq!(none, serde_json::json!([]));

    let stdout = ok(s, &["instance", "output", &instance_id]);
    assert_eq!(stdout.stdout, b"out\n");
    let stderr = ok(s, &["instance", "output", &instance_id, "--stderr"]);
    assert_eq!(stderr.stdout, b"err\n");
    let shown = ok(s, &["instance", "show", &instance_id]).text();
    assert!(shown.contains("exit_code:"), "{shown}");

    let deleted = ok(s, &["task", "delete", "report"]).text();
    assert!(deleted.contains("deleted"), "{deleted}");
    let missing = cli(s, &["task", "show", "report"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("task \"report\" not found"),
        "{}",
        missing.stderr
    );
    let missing = cli(s, &["task", "show", &id_text]);
    assert_eq!(missing.code, 1);
}

#[test]
fn output_bytes_follow_and_kill() {
    let (_dir, _node, server) = start();
    let s = server.as_str();
    ok(
        s,
        &[
            "task",
            "create",
            "--name",
            "binary",
            "--cron",
            "0 0 1 1 *",
            "--command",
            r"printf '\377\376x'",
        ],
    );
    let run = ok(s, &["task", "run", "binary", "--json"]).json();
    let id = run["instances"][0]["id"].as_str().unwrap().to_string();
    ended_instance(s, &id);
    let output = ok(s, &["instance", "output", &id]);
    assert_eq!(
        output.stdout,
        [0xff, 0xfe, b'x'],
        "bytes that are not UTF-8 come out as they are"
    );

    let marker = unique_sleep(603);
    let command = format!("echo first; sleep 1; echo second; sleep {marker}");
    ok(
        s,
        &[
            "task",
            "create",
            "--name",
            "slow",
            "--cron",
            "0 0 1 1 *",
            "--command",
            &command,
        ],
    );
    let run = ok(s, &["task", "run", "slow", "--json"]).json();
    let id = run["instances"][0]["id"].as_str().unwrap().to_string();

    let follower = Command::new(BINARY)
        .args(["instance", "output", &id, "--follow", "--server", s])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the second line", Duration::from_secs(30), || {
        let output = ok(s, &["instance", "output", &id]).text();
        output.contains("second").then_some(())
    });
    let killed = ok(s, &["instance", "kill", &id]).text();
    assert!(killed.contains("kill requested"), "{killed}");
    let instance = ended_instance(s, &id);
    assert_eq!(instance["status"], "manual_cancellation", "{instance}");

    let followed = follower.wait_with_output().unwrap();
    assert!(
        followed.status.success(),
        "{}",
        String::from_utf8_lossy(&followed.stderr)
    );
    assert_eq!(
        followed.stdout, b"first\nsecond\n",
        "--follow prints every byte and stops at the end"
    );

    let again = cli(s, &["instance", "kill", &id]);
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("is not running"), "{}", again.stderr);
}

#[test]
fn resource_verbs_by_name_and_id() {
    let (dir, _node, server) = start();
    let s = server.as_str();

    let group = ok(
        s,
        &[
            "group",
            "create",
            "--name",
            "billing",
            "--description",
            "invoices",
            "--tag",
            "finance",
            "--json",
        ],
    )
    .json();
    let group_id = group["id"].as_u64().unwrap().to_string();
    let key_dir = dir.path().join("keys");
    let keygen = std::process::Command::new(env!("CARGO_BIN_EXE_delicate"))
        .args([
            "keygen",
            "--bits",
            "2048",
            "--out",
            key_dir.to_str().unwrap(),
        ])
        .output()
        .expect("running delicate keygen");
    assert!(
        keygen.status.success(),
        "{}",
        String::from_utf8_lossy(&keygen.stderr)
    );
    let key_file = key_dir.join("node-key.pub.pem");
    let processor = ok(
        s,
        &[
            "processor",
            "create",
            "--name",
            "worker-1",
            "--host",
            "10.0.0.5",
            "--machine-id",
            "7",
            "--public-key-file",
            key_file.to_str().unwrap(),
            "--json",
        ],
    )
    .json();
    let processor_id = processor["id"].as_u64().unwrap().to_string();
    assert!(
        processor["public_key_fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("SHA256:")
    );
    let bind = ok(
        s,
        &[
            "bind",
            "create",
            "--name",
            "billing-1",
            "--group",
            "billing",
            "--processor",
            &processor_id,
            "--weight",
            "3",
            "--json",
        ],
    )
    .json();
    let bind_id = bind["id"].as_u64().unwrap().to_string();
    assert_eq!(bind["group_id"].to_string(), group_id);
    assert_eq!(bind["weight"], 3);

    let groups = ok(s, &["group", "list"]).text();
    assert!(
        groups
            .lines()
            .any(|l| l.contains("billing") && l.contains("finance")),
        "{groups}"
    );
    let processors = ok(s, &["processor", "list"]).text();
    assert!(
        processors
            .lines()
            .any(|l| l.contains("worker-1") && l.contains("10.0.0.5") && l.contains("false")),
        "{processors}"
    );
    let binds = ok(s, &["bind", "list"]).text();
    let row = binds
        .lines()
        .find(|l| l.contains("billing-1"))
        .unwrap_or_else(|| panic!("{binds}"));
    for value in ["billing", "worker-1", "3"] {
        assert!(row.contains(value), "{row:?} lacks {value}");
    }
    assert_eq!(
        ok(s, &["bind", "list", "--json"])
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );

    for (kind, name, id) in [
        ("group", "billing", &group_id),
        ("processor", "worker-1", &processor_id),
        ("bind", "billing-1", &bind_id),
    ] {
        let by_name = ok(s, &[kind, "show", name, "--json"]).json();
        let by_id = ok(s, &[kind, "show", id, "--json"]).json();
        assert_eq!(by_name, by_id, "{kind} by name and by id");
        let text = ok(s, &[kind, "show", name]).text();
        assert!(text.starts_with("id:"), "{text}");
    }

    let edited = ok(
        s,
        &[
            "group",
            "edit",
            "billing",
            "--description",
            "all invoices",
            "--json",
        ],
    )
    .json();
    assert_eq!(edited["description"], "all invoices");
    let edited = ok(
        s,
        &[
            "processor",
            "edit",
            "worker-1",
            "--host",
            "10.0.0.6",
            "--json",
        ],
    )
    .json();
    assert_eq!(edited["host"], "10.0.0.6");
    let edited = ok(
        s,
        &[
            "bind",
            "edit",
            &bind_id,
            "--weight",
            "0",
            "--processor",
            "local",
            "--name",
            "billing-local",
            "--json",
        ],
    )
    .json();
    assert_eq!(edited["weight"], 0);
    assert_eq!(edited["executor_id"], 1);
    assert_eq!(edited["name"], "billing-local");

    let in_use = cli(s, &["group", "delete", "billing"]);
    assert_eq!(in_use.code, 1);
    assert!(
        in_use.stderr.contains("is used by bind \"billing-local\""),
        "{}",
        in_use.stderr
    );

    assert!(
        ok(s, &["bind", "delete", "billing-local"])
            .text()
            .contains("deleted")
    );
    assert!(
        ok(s, &["group", "delete", &group_id])
            .text()
            .contains("deleted")
    );
    assert!(
        ok(s, &["processor", "delete", "worker-1"])
            .text()
            .contains("deleted")
    );
    assert_eq!(
        ok(s, &["group", "list", "--json"])
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        ok(s, &["processor", "list", "--json"])
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn exit_statuses_and_messages() {
    let (_dir, _node, server) = start();
    let s = server.as_str();

    let rejected = cli(
        s,
        &[
            "task",
            "create",
            "--name",
            "bad",
            "--cron",
            "61 * * * *",
            "--command",
            "true",
        ],
    );
    assert_eq!(rejected.code, 1);
    assert!(
        rejected.stderr.contains("invalid minute value \"61\""),
        "{}",
        rejected.stderr
    );
    assert!(rejected.stdout.is_empty());

    let usage = cli(s, &["task", "create", "--cron", "* * * * *"]);
    assert_eq!(
        usage.code, 2,
        "a missing option is a usage error: {}",
        usage.stderr
    );
    let usage = cli(
        s,
        &[
            "task",
            "create",
            "--name",
            "x",
            "--cron",
            "* * * * *",
            "--command",
            "true",
            "--dispatch",
            "random",
        ],
    );
    assert_eq!(usage.code, 2, "{}", usage.stderr);
    let usage = cli(s, &["instance", "list", "--since", "yesterday"]);
    assert_eq!(usage.code, 2, "{}", usage.stderr);

    let unknown = cli(s, &["bind", "show", "nowhere"]);
    assert_eq!(unknown.code, 1);
    assert!(
        unknown.stderr.contains("bind \"nowhere\" not found"),
        "{}",
        unknown.stderr
    );

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let unreachable = cli(&closed, &["task", "list"]);
    assert_eq!(unreachable.code, 1);
    let lines: Vec<&str> = unreachable.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", unreachable.stderr);
    assert!(
        lines[0].contains(&closed),
        "{:?} does not name {closed}",
        lines[0]
    );
    assert!(
        lines[0].starts_with("error: cannot reach the delicate server"),
        "{:?}",
        lines[0]
    );

    let from_env = Command::new(BINARY)
        .args(["group", "list", "--json"])
        .env("DELICATE_SERVER", s)
        .output()
        .unwrap();
    assert!(
        from_env.status.success(),
        "DELICATE_SERVER names the server"
    );
}

#[test]
fn instance_output_rejects_json() {
    // The command fails before it sends a request, so no server is needed.
    let output = Command::new(BINARY)
        .args([
            "instance",
            "output",
            "1",
            "--json",
            "--server",
            "http://127.0.0.1:9",
        ])
        .output()
        .expect("running delicate instance output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("--json does not apply to `instance output`"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}
