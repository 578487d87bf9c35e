//! A scheduler and two executors as separate processes: weighted routing,
//! draining, broadcast and moving a bind to another processor.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Api, Node, wait_for};
use serde_json::{Value, json};

struct Cluster {
    _dirs: Vec<tempfile::TempDir>,
    scheduler: Node,
    _executors: Vec<Node>,
}

/// A scheduler, group `g`, processors `e1` and `e2` (machine ids 1 and 2)
/// with binds of the given weights, and both executors online.
fn cluster(weights: [u64; 2]) -> Cluster {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let scheduler = Node::scheduler(dirs[0].path());
    let api = scheduler.api();
    api.create("/api/v1/groups", json!({"name": "g"}));
    for (index, weight) in weights.iter().enumerate() {
        let n = index + 1;
        api.create(
            "/api/v1/processors",
            json!({"name": format!("e{n}"), "host": format!("127.0.0.{n}"), "machine_id": n}),
        );
        api.create(
            "/api/v1/binds",
            json!({"name": format!("b{n}"), "group_id": 1, "executor_id": n, "weight": weight}),
        );
    }
    let quic = scheduler.quic.unwrap();
    let executors = vec![
        Node::executor(dirs[1].path(), quic, "e1"),
        Node::executor(dirs[2].path(), quic, "e2"),
    ];
    api.wait_online(1, Duration::from_secs(30));
    api.wait_online(2, Duration::from_secs(30));
    Cluster {
        _dirs: dirs,
        scheduler,
        _executors: executors,
    }
}

fn count_by_processor(instances: &[Value]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for instance in instances {
        *counts
            .entry(
                instance["executor_processor_name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
            .or_default() += 1;
    }
    counts
}

fn wait_instances(api: &Api, task_id: u64, count: usize) -> Vec<Value> {
    wait_for(
        &format!("{count} instances of task {task_id}"),
        Duration::from_secs(120),
        || {
            let all = api.instances_of(task_id);
            (all.len() >= count).then_some(all)
        },
    )
}

#[test]
fn weighted_binds_split_three_to_one() {
    let cluster = cluster([3, 1]);
    let api = cluster.scheduler.api();
    let task = api.create(
        "/api/v1/tasks",
        json!({
            "name": "split", "cron_expression": "* * * * * *", "command": "true",
            "binding_ids": [1, 2], "maximum_parallel_runnable_num": 10
        }),
    );
    let id = task["id"].as_u64().unwrap();
    let instances = wait_instances(&api, id, 40);
    let counts = count_by_processor(&instances[..40]);
    assert_eq!(counts.get("e1"), Some(&30), "{counts:?}");
    assert_eq!(counts.get("e2"), Some(&10), "{counts:?}");
    for instance in &instances[..40] {
        assert_eq!(instance["trigger"], "cron");
    }

    // Weight 0 drains the second bind.
    let (status, bind) = api.patch("/api/v1/binds/2", json!({"weight": 0}));
    assert_eq!(status, 200, "{bind}");
    let drained_from = api.instances_of(id).len();
    let after = wait_instances(&api, id, drained_from + 6);
    let counts = count_by_processor(&after[drained_from + 1..]);
    assert_eq!(
        counts.get("e2"),
        None,
        "a drained bind gets no instances: {counts:?}"
    );
    api.post(&format!("/api/v1/tasks/{id}/disable"), json!({}));
}

#[test]
fn broadcast_and_bind_move() {
    let cluster = cluster([1, 1]);
    let api = cluster.scheduler.api();
    let task = api.create(
        "/api/v1/tasks",
        json!({
            "name": "everywhere", "cron_expression": "* * * * * *", "command": "true",
            "binding_ids": [1, 2], "dispatch": "broadcast", "maximum_parallel_runnable_num": 10
        }),
    );
    let id = task["id"].as_u64().unwrap();
    let instances = wait_instances(&api, id, 10);
    let mut per_slot: HashMap<String, Vec<String>> = HashMap::new();
    for instance in &instances {
        per_slot
            .entry(instance["scheduled_time"].as_str().unwrap().to_string())
            .or_default()
            .push(
                instance["executor_processor_name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
    }
    let full: Vec<_> = per_slot.values().filter(|names| names.len() == 2).collect();
    assert!(
        full.len() >= 4,
        "each fire reaches both binds: {per_slot:?}"
    );
    for names in per_slot.values() {
        assert!(
            names.len() <= 2,
            "one instance per bind per fire: {names:?}"
        );
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            names.len(),
            "no processor twice in one slot: {names:?}"
        );
    }
    api.post(&format!("/api/v1/tasks/{id}/disable"), json!({}));

    // Moving bind 1 to processor 2 moves a weighted task on it.
    let moving = api.create("/api/v1/tasks", json!({
        "name": "moving", "cron_expression": "* * * * * *", "command": "true", "binding_ids": [1]
    }));
    let moving_id = moving["id"].as_u64().unwrap();
    let before = wait_instances(&api, moving_id, 2);
    assert!(
        before.iter().all(|i| i["executor_processor_name"] == "e1"),
        "{before:#?}"
    );

    api.patch("/api/v1/binds/2", json!({"group_id": 1}));
    let (status, body) = api.delete("/api/v1/binds/2");
    assert_eq!(status, 409, "bind 2 is used by the broadcast task: {body}");
    api.patch(&format!("/api/v1/tasks/{id}"), json!({"binding_ids": [1]}));
    let (status, body) = api.delete("/api/v1/binds/2");
    assert_eq!(status, 204, "{body}");
    let (status, body) = api.patch("/api/v1/binds/1", json!({"executor_id": 2}));
    assert_eq!(status, 200, "{body}");
    let moved_from = api.instances_of(moving_id).len();
    let after = wait_instances(&api, moving_id, moved_from + 3);
    let later = &after[moved_from + 1..];
    assert!(
        later.iter().all(|i| i["executor_processor_name"] == "e2"),
        "next instances run on the new machine: {later:#?}"
    );
    assert!(
        later
            .iter()
            .all(|i| i["executor_processor_host"] == "127.0.0.2")
    );
}
