//! `delicate bench fire` at a tiny size: the JSON report has every figure,
//! and the instances it counts are in the store it leaves behind with
//! `--keep-data`.

use std::collections::HashSet;
use std::process::Command;

use chrono::{DateTime, Utc};
use delicate::storage::{DEFAULT_CACHE_BYTES, InstanceFilter, Store};
use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_delicate");

const FIGURES: [&str; 16] = [
    "fires_per_second",
    "instances",
    "slots_without_instance",
    "fires_missed",
    "fires_skipped",
    "instances_not_finished",
    "instances_failed",
    "create_lateness_p50",
    "create_lateness_p99",
    "create_lateness_max",
    "start_lateness_p50",
    "start_lateness_p99",
    "start_lateness_max",
    "slot_to_outcome_p50",
    "slot_to_outcome_p99",
    "slot_to_outcome_max",
];

fn figure_entry<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["figures"]
        .as_array()
        .expect("figures is an array")
        .iter()
        .find(|figure| figure["name"] == name)
        .unwrap_or_else(|| panic!("figure {name} is missing from {report}"))
}

fn figure(report: &Value, name: &str) -> f64 {
    figure_entry(report, name)["value"]
        .as_f64()
        .unwrap_or_else(|| panic!("figure {name} has no value in {report}"))
}

fn stored_instances(store: &Store) -> Vec<delicate::domain::entities::Instance> {
    let mut found = Vec::new();
    let mut filter = InstanceFilter {
        limit: 1000,
        ..InstanceFilter::default()
    };
    loop {
        let page = store
            .list_instances(&filter)
            .expect("the instances can be listed");
        found.extend(page.instances);
        match page.next_cursor {
            Some(cursor) => filter.before = Some(cursor),
            None => return found,
        }
    }
}

#[test]
fn fire_report_matches_store() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("fire.json");
    let data = dir.path().join("data");
    let output = Command::new(BINARY)
        .args([
            "bench",
            "fire",
            "--tasks",
            "3",
            "--duration",
            "3s",
            "--executors",
            "1",
        ])
        .arg("--json")
        .arg(&json)
        .arg("--keep-data")
        .arg(&data)
        .env_remove("DELICATE_SECURITY_LEVEL")
        .output()
        .expect("running delicate bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench fire failed: {stderr}");

    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["scenario"], "fire");
    assert!(report["machine"]["cores"].as_u64().is_some(), "{report}");
    assert_eq!(report["settings"]["tasks"], 3);
    for name in FIGURES {
        figure(&report, name);
    }
    for name in [
        "start_lateness_p50",
        "start_lateness_p99",
        "start_lateness_max",
    ] {
        let entry = figure_entry(&report, name);
        assert!(
            entry["baseline"].as_f64().is_some(),
            "{name} has no spawn baseline: {report}"
        );
        assert!(
            entry["ratio"].as_f64().is_some(),
            "{name} has no ratio: {report}"
        );
    }
    let counted = figure(&report, "instances") as usize;
    assert!(counted > 0, "the window holds no instance: {report}");

    let start: DateTime<Utc> = report["settings"]["window_start"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let end: DateTime<Utc> = report["settings"]["window_end"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let store = Store::open(&data.join("scheduler").join("store"), DEFAULT_CACHE_BYTES).unwrap();
    let in_window: Vec<_> = stored_instances(&store)
        .into_iter()
        .filter(|instance| instance.scheduled_time >= start && instance.scheduled_time < end)
        .collect();
    assert_eq!(
        in_window.len(),
        counted,
        "the report counts {counted} instances in [{start}, {end})"
    );
    let slots: HashSet<_> = in_window
        .iter()
        .map(|i| (i.task_id, i.scheduled_time))
        .collect();
    assert_eq!(slots.len(), counted, "two instances share a slot");
    // The scheduler stores a fire at most 50 ms before its slot, and the run
    // starts at the slot or later.
    let prepare_ahead = chrono::Duration::milliseconds(50);
    for instance in &in_window {
        assert!(
            instance.created_time >= instance.scheduled_time - prepare_ahead,
            "instance {} created at {}, more than 50 ms before its slot {}",
            instance.id,
            instance.created_time,
            instance.scheduled_time
        );
        if let Some(started) = instance.started_time {
            assert!(
                started >= instance.scheduled_time,
                "instance {} started at {started}, before its slot {}",
                instance.id,
                instance.scheduled_time
            );
        }
    }
}
