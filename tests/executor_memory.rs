//! An executor's memory stays bounded while a run writes far more output
//! than the cap.

mod common;

use std::time::Duration;

use common::{Node, wait_for};
use serde_json::json;

/// Peak resident set of a process, in KiB (`VmHWM` in /proc/PID/status).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn large_output_keeps_executor_memory_bounded() {
    let scheduler_dir = tempfile::tempdir().unwrap();
    let executor_dir = tempfile::tempdir().unwrap();
    let scheduler = Node::scheduler(scheduler_dir.path());
    let api = scheduler.api();
    api.create("/api/v1/groups", json!({"name": "g"}));
    api.create(
        "/api/v1/processors",
        json!({"name": "e1", "host": "127.0.0.1", "machine_id": 1}),
    );
    api.create(
        "/api/v1/binds",
        json!({"name": "b1", "group_id": 1, "executor_id": 1, "weight": 1}),
    );
    let executor = Node::executor(executor_dir.path(), scheduler.quic.unwrap(), "e1");
    api.wait_online(1, Duration::from_secs(30));
    let before = peak_rss_kib(executor.pid());

    // 200 MiB on stdout, 40 times the stored cap of each stream.
    let task = api.create("/api/v1/tasks", json!({
        "name": "flood", "cron_expression": "0 0 1 1 *", "command": "head -c 209715200 /dev/zero"
    }));
    let (status, run) = api.post(&format!("/api/v1/tasks/{}/run", task["id"]), json!({}));
    assert_eq!(status, 201, "{run}");
    let id = run["instances"][0]["id"].as_str().unwrap().to_string();
    // On a loaded machine the scheduler may hear no heartbeat for a while and
    // mark the run unknown, until the executor's report replaces that status.
    let instance = wait_for("the flood to finish", Duration::from_secs(120), || {
        let (_, found) = api.get(&format!("/api/v1/instances/{id}"));
        let status = found["status"].as_str().unwrap_or_default().to_string();
        (status != "running" && status != "unknown").then_some(found)
    });
    assert_eq!(instance["status"], "finished", "{instance}");

    let (_, stdout) = api.get_bytes(&format!("/api/v1/instances/{id}/output"));
    let marker = format!(
        "\n[delicate: {} bytes cut]\n",
        200 * 1024 * 1024 - 1024 * 1024
    );
    assert_eq!(stdout.len(), 1024 * 1024 + marker.len());

    let peak = peak_rss_kib(executor.pid());
    assert!(
        peak < before + 64 * 1024,
        "executor peak RSS grew from {before} KiB to {peak} KiB while streaming 200 MiB"
    );
}
