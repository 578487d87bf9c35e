//! The scheduler's background task load at start-up, and the durability of
//! a task creation, against a store written directly and a real scheduler
//! process.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{Node, wait_for};
use delicate::domain::entities::{Bind, Group, Processor, Task};
use delicate::storage::{DEFAULT_CACHE_BYTES, Store, TaskState};
use serde_json::json;

/// Tasks stored before the one under test, so it is in the last load chunk.
const FILLER_TASKS: usize = 20_000;

fn task(name: String, cron_expression: &str, bind_id: u64, saved: DateTime<Utc>) -> Task {
    Task::enabled(
        name,
        "true",
        cron_expression.into(),
        "UTC",
        vec![bind_id],
        saved,
    )
}

/// Stores a group, a processor that never joins, and their bind.
fn store_bind(store: &Store, now: DateTime<Utc>) -> u64 {
    let group = store
        .create(Group {
            id: 0,
            name: "g".into(),
            description: String::new(),
            tag: String::new(),
            created_time: now,
            updated_time: now,
        })
        .unwrap();
    let processor = store
        .create(Processor {
            id: 0,
            name: "p".into(),
            description: String::new(),
            tag: String::new(),
            host: "127.0.0.1".into(),
            machine_id: 1,
            public_key: None,
            created_time: now,
            updated_time: now,
        })
        .unwrap();
    store
        .create(Bind {
            id: 0,
            group_id: group.id,
            executor_id: processor.id,
            name: "b".into(),
            weight: 1,
            created_time: now,
            updated_time: now,
        })
        .unwrap()
        .id
}

/// Stores `FILLER_TASKS` yearly tasks, then `last`; returns `last`'s id.
fn store_tasks(store_dir: &Path, last: impl FnOnce(u64) -> Task) -> u64 {
    let store = Store::open(store_dir, DEFAULT_CACHE_BYTES).unwrap();
    let now = Utc::now();
    let bind_id = store_bind(&store, now);
    let filler: Vec<Task> = (0..FILLER_TASKS)
        .map(|index| task(format!("filler-{index}"), "0 0 0 1 1 *", bind_id, now))
        .collect();
    for batch in filler.chunks(1000) {
        store.create_many(batch).unwrap();
    }
    let id = store.create(last(bind_id)).unwrap().id;
    assert!(
        store.close().unwrap(),
        "the test holds the only store handle"
    );
    id
}

fn time(value: &serde_json::Value) -> DateTime<Utc> {
    value
        .as_str()
        .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
        .map(|time| time.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("not an RFC 3339 time: {value}"))
}

/// A per-second task saved 20 s before the start, at the end of a load of
/// 20,001 tasks: its passed slots fire once as a misfire and are counted
/// missed, and no slot gets two instances.
#[test]
fn slots_passed_before_load_fire_once() {
    let dir = tempfile::tempdir().unwrap();
    let saved = Utc::now() - chrono::Duration::seconds(20);
    let late_id = store_tasks(&dir.path().join("store"), |bind_id| {
        task("late".into(), "* * * * * *", bind_id, saved)
    });

    let node = Node::scheduler(dir.path());
    let api = node.api();
    let instances = wait_for(
        "three instances of the late task",
        Duration::from_secs(30),
        || {
            let instances = api.instances_of(late_id);
            (instances.len() >= 3).then_some(instances)
        },
    );

    let misfires: Vec<_> = instances
        .iter()
        .filter(|instance| instance["trigger"] == "misfire")
        .collect();
    assert_eq!(misfires.len(), 1, "one catch-up fire: {instances:?}");
    let slots: HashSet<String> = instances
        .iter()
        .map(|instance| instance["scheduled_time"].to_string())
        .collect();
    assert_eq!(
        slots.len(),
        instances.len(),
        "a slot fired twice: {instances:?}"
    );
    for instance in &instances {
        assert!(
            time(&instance["scheduled_time"]) > saved,
            "a slot before the task was saved fired: {instance}"
        );
    }

    let (status, view) = api.get(&format!("/api/v1/tasks/{late_id}"));
    assert_eq!(status, 200, "{view}");
    assert!(
        view["missed_fires"].as_u64().unwrap() >= 15,
        "the older passed slots count as missed: {view}"
    );
    let (_, metrics) = api.get_bytes("/metrics");
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains("delicate_scheduler_loading 0"),
        "the load has ended: {metrics}"
    );
}

/// The fire state written before a restart is read back by the load's
/// merged scan, so a restarted task resumes after its last slot.
#[test]
fn load_reads_stored_fire_state() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let saved = Utc::now() - chrono::Duration::seconds(600);
    let late_id = store_tasks(&store_dir, |bind_id| {
        task("resumed".into(), "* * * * * *", bind_id, saved)
    });
    let last_slot = Utc::now() - chrono::Duration::seconds(5);
    {
        let store = Store::open(&store_dir, DEFAULT_CACHE_BYTES).unwrap();
        let state = TaskState {
            last_slot: Some(last_slot),
            missed: 7,
            skipped: 2,
        };
        store.set_task_state(late_id, &state).unwrap();
        // An orphaned state of a task that no longer exists, keyed between
        // the filler and the task under test, must not shift the pairing.
        store
            .set_task_state(late_id - 1, &TaskState::default())
            .unwrap();
        store.delete::<Task>(late_id - 1).unwrap();
        assert!(store.close().unwrap());
    }

    let node = Node::scheduler(dir.path());
    let api = node.api();
    let instances = wait_for(
        "an instance of the resumed task",
        Duration::from_secs(30),
        || {
            let instances = api.instances_of(late_id);
            (!instances.is_empty()).then_some(instances)
        },
    );
    for instance in &instances {
        assert!(
            time(&instance["scheduled_time"]) > last_slot,
            "a slot up to the stored last slot fired again: {instance}"
        );
    }
    let (_, view) = api.get(&format!("/api/v1/tasks/{late_id}"));
    assert!(
        view["missed_fires"].as_u64().unwrap() >= 7,
        "the stored missed count was kept: {view}"
    );
    assert_eq!(view["skipped_fires"], 2, "{view}");
}

/// A task whose creation got its response is still there after the node is
/// killed with SIGKILL straight away.
#[test]
fn created_task_survives_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::scheduler(dir.path());
    let api = node.api();
    api.create("/api/v1/groups", json!({"name": "g"}));
    api.create(
        "/api/v1/processors",
        json!({"name": "p", "host": "127.0.0.1", "machine_id": 1}),
    );
    api.create(
        "/api/v1/binds",
        json!({"name": "b", "group_id": 1, "executor_id": 1, "weight": 1}),
    );
    let mut created = Vec::new();
    for index in 0..20 {
        let body = json!({"name": format!("durable-{index}"), "cron_expression": "0 0 0 1 1 *", "command": "true"});
        let (status, task) = api.post("/api/v1/tasks", body);
        assert_eq!(status, 201, "{task}");
        created.push(task["id"].as_u64().unwrap());
    }
    node.kill9();

    let node = Node::scheduler(dir.path());
    let api = node.api();
    for id in created {
        let (status, task) = api.get(&format!("/api/v1/tasks/{id}"));
        assert_eq!(status, 200, "task {id} was lost: {task}");
        assert_eq!(task["id"], id, "{task}");
    }
}
