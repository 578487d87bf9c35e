//! Crashes: an executor or the scheduler killed with SIGKILL, and what the
//! cluster records after each comes back.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{Api, Node, processes_with, unique_sleep, wait_for};
use serde_json::{Value, json};

fn setup_processor(api: &Api) {
    api.create("/api/v1/groups", json!({"name": "g"}));
    api.create(
        "/api/v1/processors",
        json!({"name": "e1", "host": "127.0.0.1", "machine_id": 1}),
    );
    api.create(
        "/api/v1/binds",
        json!({"name": "b1", "group_id": 1, "executor_id": 1, "weight": 1}),
    );
}

fn instance(api: &Api, id: &str) -> Value {
    api.get(&format!("/api/v1/instances/{id}")).1
}

fn run_now(api: &Api, task_id: u64) -> String {
    let (status, body) = api.post(&format!("/api/v1/tasks/{task_id}/run"), json!({}));
    assert_eq!(status, 201, "{body}");
    body["instances"][0]["id"].as_str().unwrap().to_string()
}

/// The `seq=N` field of a log line.
fn seq_field(line: &str) -> Option<u64> {
    let start = line.find(" seq=")? + 5;
    line[start..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn time(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

#[test]
fn executor_killed_during_run() {
    let scheduler_dir = tempfile::tempdir().unwrap();
    let executor_dir = tempfile::tempdir().unwrap();
    let scheduler = Node::scheduler(scheduler_dir.path());
    let api = scheduler.api();
    setup_processor(&api);
    let quic = scheduler.quic.unwrap();
    let mut executor = Node::executor(executor_dir.path(), quic, "e1");
    api.wait_online(1, Duration::from_secs(30));

    let marker = unique_sleep(603);
    let sleeper = api.create("/api/v1/tasks", json!({"name": "sleeper", "cron_expression": "0 0 1 1 *", "command": format!("sleep {marker}")}));
    let instance_id = run_now(&api, sleeper["id"].as_u64().unwrap());
    wait_for("the run to start", Duration::from_secs(20), || {
        (!processes_with(&marker).is_empty()).then_some(())
    });

    executor.kill9();
    let lost = wait_for(
        "the instance to become unknown",
        Duration::from_secs(10),
        || {
            let found = instance(&api, &instance_id);
            (found["status"] == "unknown").then_some(found)
        },
    );
    assert_eq!(lost["status_code"], 81);
    let (_, processor) = api.get("/api/v1/processors/1");
    assert_eq!(processor["online"], false, "{processor}");

    let _executor = Node::executor(executor_dir.path(), quic, "e1");
    api.wait_online(1, Duration::from_secs(30));
    let replaced = wait_for(
        "the restarted executor to report the run",
        Duration::from_secs(20),
        || {
            let found = instance(&api, &instance_id);
            (found["status"] != "unknown").then_some(found)
        },
    );
    assert_eq!(replaced["status"], "abnormal_ending", "{replaced}");
    assert!(
        replaced["reason"].as_str().unwrap().contains("restarted"),
        "{replaced}"
    );
    wait_for(
        "the leftover run to be killed",
        Duration::from_secs(10),
        || processes_with(&marker).is_empty().then_some(()),
    );

    let echo = api.create(
        "/api/v1/tasks",
        json!({"name": "echo", "cron_expression": "0 0 1 1 *", "command": "echo back"}),
    );
    let echo_id = run_now(&api, echo["id"].as_u64().unwrap());
    let done = wait_for("the new run to finish", Duration::from_secs(20), || {
        let found = instance(&api, &echo_id);
        (found["status"] == "finished").then_some(found)
    });
    assert_eq!(done["executor_processor_name"], "e1");
}

#[test]
fn outbox_outcome_replaces_unknown() {
    let scheduler_dir = tempfile::tempdir().unwrap();
    let executor_dir = tempfile::tempdir().unwrap();
    let mut scheduler = Node::scheduler(scheduler_dir.path());
    let api = scheduler.api();
    setup_processor(&api);
    let mut executor = Node::executor(executor_dir.path(), scheduler.quic.unwrap(), "e1");
    api.wait_online(1, Duration::from_secs(30));

    let gate_dir = tempfile::tempdir().unwrap();
    let go = gate_dir.path().join("go");
    let command = format!(
        "while [ ! -e {} ]; do sleep 0.05; done; echo 604-done",
        go.display()
    );
    let task = api.create(
        "/api/v1/tasks",
        json!({"name": "short", "cron_expression": "0 0 1 1 *", "command": command}),
    );
    let instance_id = run_now(&api, task["id"].as_u64().unwrap());
    wait_for("the run to start", Duration::from_secs(20), || {
        (instance(&api, &instance_id)["started_time"].is_string()).then_some(())
    });

    // With the scheduler gone, the run ends into the executor's outbox.
    scheduler.kill9();
    std::fs::write(&go, b"").unwrap();
    let stored_seq = wait_for(
        "the executor to store the outcome",
        Duration::from_secs(20),
        || {
            let log = executor.log();
            let line = log
                .lines()
                .find(|l| l.contains(&instance_id) && l.contains("run end stored"))?;
            seq_field(line)
        },
    );
    wait_for(
        "the executor to flush the outcome",
        Duration::from_secs(20),
        || {
            let log = executor.log();
            log.lines()
                .filter(|l| l.contains("outbox flushed"))
                .any(|l| seq_field(l).is_some_and(|seq| seq >= stored_seq))
                .then_some(())
        },
    );
    executor.kill9();

    let scheduler = Node::scheduler(scheduler_dir.path());
    let api = scheduler.api();
    let unknown = wait_for(
        "the instance to become unknown",
        Duration::from_secs(15),
        || {
            let found = instance(&api, &instance_id);
            (found["status"] == "unknown").then_some(found)
        },
    );
    assert_eq!(unknown["status_code"], 81);

    let _executor = Node::executor(executor_dir.path(), scheduler.quic.unwrap(), "e1");
    let finished = wait_for(
        "the outbox outcome to arrive",
        Duration::from_secs(30),
        || {
            let found = instance(&api, &instance_id);
            (found["status"] == "finished").then_some(found)
        },
    );
    assert_eq!(finished["exit_code"], 0);
    let (_, stdout) = api.get_bytes(&format!("/api/v1/instances/{instance_id}/output"));
    assert_eq!(stdout, b"604-done\n");
}

#[test]
fn scheduler_killed_under_load() {
    let scheduler_dir = tempfile::tempdir().unwrap();
    let executor_dir = tempfile::tempdir().unwrap();
    let mut scheduler = Node::scheduler(scheduler_dir.path());
    let api = scheduler.api();
    setup_processor(&api);
    let mut executor = Node::executor(executor_dir.path(), scheduler.quic.unwrap(), "e1");
    api.wait_online(1, Duration::from_secs(30));

    let task_ids: Vec<u64> = (0..5)
        .map(|n| {
            let body = json!({"name": format!("load-{n}"), "cron_expression": "* * * * * *", "command": "true", "misfire_grace": 60, "maximum_parallel_runnable_num": 10});
            api.create("/api/v1/tasks", body)["id"].as_u64().unwrap()
        })
        .collect();
    wait_for(
        "three instances of every task",
        Duration::from_secs(30),
        || {
            task_ids
                .iter()
                .all(|id| api.instances_of(*id).len() >= 3)
                .then_some(())
        },
    );

    let before: Vec<String> = task_ids
        .iter()
        .flat_map(|id| api.instances_of(*id))
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    scheduler.kill9();
    let killed_at = Utc::now();
    wait_for("two slots to pass", Duration::from_secs(10), || {
        (Utc::now() - killed_at > chrono::Duration::milliseconds(2500)).then_some(())
    });
    executor.kill9();

    let scheduler = Node::scheduler(scheduler_dir.path());
    let restarted_at = Utc::now();
    let api = scheduler.api();
    let _executor = Node::executor(executor_dir.path(), scheduler.quic.unwrap(), "e1");
    api.wait_online(1, Duration::from_secs(30));

    let (_, tasks) = api.get("/api/v1/tasks");
    assert_eq!(tasks.as_array().unwrap().len(), 5);
    let (_, binds) = api.get("/api/v1/binds");
    assert_eq!(binds.as_array().unwrap().len(), 1);
    for id in &before {
        let (status, _) = api.get(&format!("/api/v1/instances/{id}"));
        assert_eq!(
            status, 200,
            "instance {id} stored before the crash is still there"
        );
    }

    for id in &task_ids {
        let misfire = wait_for("the misfire catch-up", Duration::from_secs(20), || {
            let all = api.instances_of(*id);
            let catchups: Vec<Value> = all
                .into_iter()
                .filter(|i| i["trigger"] == "misfire")
                .collect();
            (!catchups.is_empty()).then_some(catchups)
        });
        assert_eq!(misfire.len(), 1, "one catch-up per task: {misfire:#?}");
        let slot = time(&misfire[0]["scheduled_time"]);
        // The first fire after a start waits up to 3 s for the executor to
        // rejoin, so the newest missed slot can be that much after the start.
        let latest = restarted_at + chrono::Duration::seconds(5);
        assert!(
            slot > killed_at && slot <= latest,
            "catch-up slot {slot} between {killed_at} and {latest}"
        );

        let all = api.instances_of(*id);
        let mut slots = HashSet::new();
        for instance in &all {
            if instance["trigger"] == "cron" || instance["trigger"] == "misfire" {
                let slot = instance["scheduled_time"].as_str().unwrap().to_string();
                assert!(
                    slots.insert(slot.clone()),
                    "slot {slot} of task {id} has two instances"
                );
            }
        }
    }
}
