//! How runs end: timeouts, kills, exit codes, retries, the concurrency
//! limit and captured output, on a standalone node.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{Api, Node, processes_with, unique_sleep, wait_for};
use serde_json::{Value, json};

fn start() -> (tempfile::TempDir, Node) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::standalone(dir.path());
    node.api().wait_online(1, Duration::from_secs(30));
    (dir, node)
}

fn task(api: &Api, body: Value) -> u64 {
    api.create("/api/v1/tasks", body)["id"].as_u64().unwrap()
}

fn time(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

fn ended(api: &Api, task_id: u64, count: usize) -> Vec<Value> {
    wait_for(
        &format!("{count} ended instances of task {task_id}"),
        Duration::from_secs(60),
        || {
            let done: Vec<Value> = api
                .instances_of(task_id)
                .into_iter()
                .filter(|i| i["status"] != "running")
                .collect();
            (done.len() >= count).then_some(done)
        },
    )
}

#[test]
fn timeout_kills_whole_process_group() {
    let (_dir, node) = start();
    let api = node.api();
    let marker = unique_sleep(601);
    let id = task(
        &api,
        json!({
            "name": "slow", "cron_expression": "* * * * * *", "frequency": {"mode": "once"},
            "command": format!("sleep {marker} & sleep {marker}"), "timeout": 2
        }),
    );
    wait_for("the children to start", Duration::from_secs(20), || {
        (processes_with(&marker).len() >= 2).then_some(())
    });
    let instance = ended(&api, id, 1).remove(0);
    assert_eq!(instance["status"], "timeout_ending", "{instance}");
    assert_eq!(instance["status_code"], 4);
    wait_for(
        "the process group to be gone",
        Duration::from_secs(10),
        || processes_with(&marker).is_empty().then_some(()),
    );
    let (_, task) = api.get(&format!("/api/v1/tasks/{id}"));
    assert_eq!(
        task["status"], "disabled",
        "a once task disables itself: {task}"
    );
    assert_eq!(task["remaining_count"], 0);
}

#[test]
fn kill_through_api_cancels_run() {
    let (_dir, node) = start();
    let api = node.api();
    let marker = unique_sleep(602);
    let id = task(
        &api,
        json!({
            "name": "sleeper", "cron_expression": "0 0 1 1 *", "command": format!("sleep {marker} & sleep {marker}")
        }),
    );
    let (status, run) = api.post(&format!("/api/v1/tasks/{id}/run"), json!({}));
    assert_eq!(status, 201, "{run}");
    let instance_id = run["instances"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(run["instances"][0]["trigger"], "manual");
    wait_for("the children to start", Duration::from_secs(20), || {
        (processes_with(&marker).len() >= 2).then_some(())
    });

    let (status, body) = api.post(&format!("/api/v1/instances/{instance_id}/kill"), json!({}));
    assert_eq!(status, 202, "{body}");
    let instance = ended(&api, id, 1).remove(0);
    assert_eq!(instance["status"], "manual_cancellation", "{instance}");
    assert_eq!(instance["status_code"], 5);
    wait_for(
        "the process group to be gone",
        Duration::from_secs(10),
        || processes_with(&marker).is_empty().then_some(()),
    );

    let (status, body) = api.post(&format!("/api/v1/instances/{instance_id}/kill"), json!({}));
    assert_eq!(
        status, 409,
        "killing an ended instance is a conflict: {body}"
    );
}

#[test]
fn exit_code_is_recorded_and_retried() {
    let (_dir, node) = start();
    let api = node.api();
    let id = task(
        &api,
        json!({
            "name": "failing", "cron_expression": "* * * * * *", "frequency": {"mode": "once"},
            "command": "exit 3", "retry_times": 2, "retry_interval": 1
        }),
    );
    let attempts = ended(&api, id, 3);
    assert_eq!(attempts.len(), 3, "exactly three attempts: {attempts:#?}");
    for (index, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt["status"], "abnormal_ending", "{attempt}");
        assert_eq!(attempt["exit_code"], 3);
        assert_eq!(attempt["attempt"], index as u64 + 1);
        let trigger = if index == 0 { "cron" } else { "retry" };
        assert_eq!(attempt["trigger"], trigger);
    }
    for pair in attempts.windows(2) {
        let ended = time(&pair[0]["finished_time"]);
        let started = time(&pair[1]["started_time"]);
        assert!(
            started - ended >= chrono::Duration::seconds(1),
            "retry started {started} only after {ended}"
        );
    }
}

#[test]
fn parallel_limit_skips_fires() {
    let (_dir, node) = start();
    let api = node.api();
    let id = task(
        &api,
        json!({
            "name": "overlong", "cron_expression": "* * * * * *", "command": "sleep 2.5",
            "maximum_parallel_runnable_num": 1
        }),
    );
    ended(&api, id, 3);
    api.post(&format!("/api/v1/tasks/{id}/disable"), json!({}));
    let (_, task) = api.get(&format!("/api/v1/tasks/{id}"));
    assert!(
        task["skipped_fires"].as_u64().unwrap() >= 2,
        "skipped fires are counted: {task}"
    );

    let mut spans: Vec<(DateTime<Utc>, DateTime<Utc>)> = api
        .instances_of(id)
        .iter()
        .filter(|i| i["status"] != "running")
        .map(|i| (time(&i["created_time"]), time(&i["finished_time"])))
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "two instances ran at once: {pair:?}"
        );
    }
    let (_, metrics) = api.get("/metrics");
    let text = metrics.as_str().unwrap();
    let skipped = text
        .lines()
        .find(|l| l.starts_with("delicate_fires_skipped_total "))
        .unwrap();
    assert_ne!(skipped, "delicate_fires_skipped_total 0");
}

#[test]
fn large_output_is_capped_with_marker() {
    let (_dir, node) = start();
    let api = node.api();
    let id = task(
        &api,
        json!({
            "name": "loud", "cron_expression": "* * * * * *", "frequency": {"mode": "once"},
            "command": "head -c 5242880 /dev/zero | tr '\\0' x; printf '\\300\\377' >&2"
        }),
    );
    let instance = ended(&api, id, 1).remove(0);
    assert_eq!(instance["status"], "finished", "{instance}");
    let instance_id = instance["id"].as_str().unwrap();

    let (_, stdout) = api.get_bytes(&format!("/api/v1/instances/{instance_id}/output"));
    let marker = format!(
        "\n[delicate: {} bytes cut]\n",
        5 * 1024 * 1024 - 1024 * 1024
    );
    let mut expected = vec![b'x'; 512 * 1024];
    expected.extend_from_slice(marker.as_bytes());
    expected.extend(std::iter::repeat_n(b'x', 512 * 1024));
    assert_eq!(stdout.len(), expected.len());
    assert!(
        stdout == expected,
        "stdout is the head, the marker and the tail"
    );

    let (_, stderr) = api.get_bytes(&format!(
        "/api/v1/instances/{instance_id}/output?stream=stderr"
    ));
    assert_eq!(
        stderr,
        vec![0o300, 0o377],
        "non-UTF-8 bytes are stored as they are"
    );

    let (_, tail) = api.get_bytes(&format!(
        "/api/v1/instances/{instance_id}/output?offset={}",
        expected.len() - 3
    ));
    assert_eq!(tail, b"xxx");
}

#[test]
fn cron_runs_start_after_slot() {
    // Fires are stored ahead of their slot, but no run may start before it.
    let (_dir, node) = start();
    let api = node.api();
    let id = task(
        &api,
        json!({"name": "on-the-slot", "cron_expression": "* * * * * *", "command": "true"}),
    );
    let done = ended(&api, id, 4);
    api.post(&format!("/api/v1/tasks/{id}/disable"), json!({}));

    let cron: Vec<&Value> = done.iter().filter(|i| i["trigger"] == "cron").collect();
    assert!(cron.len() >= 3, "cron instances ended: {done:#?}");
    for instance in cron {
        assert_eq!(instance["status"], "finished", "{instance}");
        let slot = time(&instance["scheduled_time"]);
        let started = time(&instance["started_time"]);
        assert!(
            started >= slot,
            "instance {} started at {started}, before its slot {slot}",
            instance["id"]
        );
    }
}
