//! `delicate standalone` on a fresh data directory runs a task end to end.

mod common;

use std::time::Duration;

use common::{Node, wait_for};
use serde_json::json;

#[test]
fn every_second_task_runs_echo_hello() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::standalone(dir.path());
    let api = node.api();
    api.wait_online(1, Duration::from_secs(30));

    let task = api.create(
        "/api/v1/tasks",
        json!({"name": "hello", "cron_expression": "* * * * * *", "command": "echo hello"}),
    );
    let task_id = task["id"].as_u64().unwrap();
    assert_eq!(
        task["binding_ids"],
        json!([1]),
        "the only bind is used by default"
    );
    assert_eq!(task["next_fire_times"].as_array().unwrap().len(), 5);

    let finished = wait_for("3 finished instances", Duration::from_secs(5), || {
        let done: Vec<_> = api
            .instances_of(task_id)
            .into_iter()
            .filter(|i| i["status"] == "finished")
            .collect();
        (done.len() >= 3).then_some(done)
    });
    for instance in &finished {
        assert_eq!(instance["status_code"], 2);
        assert_eq!(instance["exit_code"], 0);
        assert_eq!(instance["trigger"], "cron");
        assert_eq!(instance["executor_processor_name"], "local");
        let id = instance["id"].as_str().unwrap();
        let (status, stdout) = api.get_bytes(&format!("/api/v1/instances/{id}/output"));
        assert_eq!(status, 200);
        assert_eq!(stdout, b"hello\n");
    }
}

#[test]
fn restart_keeps_defaults_and_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::standalone(dir.path());
    let api = node.api();
    api.create(
        "/api/v1/tasks",
        json!({"name": "kept", "cron_expression": "0 0 * * *", "command": "true"}),
    );
    assert!(node.terminate().success(), "standalone exits 0 on SIGTERM");

    let node = Node::standalone(dir.path());
    let api = node.api();
    let (_, groups) = api.get("/api/v1/groups");
    assert_eq!(
        groups.as_array().unwrap().len(),
        1,
        "defaults are created once: {groups}"
    );
    let (_, binds) = api.get("/api/v1/binds");
    assert_eq!(binds[0]["name"], "default-local");
    let (_, tasks) = api.get("/api/v1/tasks");
    assert_eq!(tasks[0]["name"], "kept");
    api.wait_online(1, Duration::from_secs(30));
}

#[test]
fn several_worker_threads_run_task() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::standalone_with(dir.path(), &[("DELICATE_WORKER_THREADS", "3")]);
    let api = node.api();
    api.wait_online(1, Duration::from_secs(30));

    let task = api.create(
        "/api/v1/tasks",
        json!({"name": "threads", "cron_expression": "* * * * * *", "command": "echo threads"}),
    );
    let task_id = task["id"].as_u64().unwrap();
    let finished = wait_for("a finished instance", Duration::from_secs(10), || {
        api.instances_of(task_id)
            .into_iter()
            .find(|i| i["status"] == "finished")
    });
    assert_eq!(finished["exit_code"], 0);
}

#[test]
fn zero_worker_threads_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(common::BINARY)
        .args(["standalone", "--worker-threads", "0", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("running delicate standalone");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("--worker-threads"), "{stderr}");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing is written before the arguments are valid"
    );
}

#[test]
fn invalid_log_filter_warns() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::standalone_with(dir.path(), &[("DELICATE_LOG", "info,delicate=[bad")]);
    let api = node.api();
    api.wait_online(1, Duration::from_secs(30));
    assert!(
        node.log_contains("DELICATE_LOG=\"info,delicate=[bad\" is not a valid tracing filter"),
        "{}",
        node.log()
    );
}
