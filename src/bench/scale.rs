//! `bench scale`: enabled tasks written straight into the store, then a
//! scheduler started on that directory, at 10k, 100k and N tasks, so the
//! growth of memory, start-up time and disk use with N is visible.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;

use super::process::{DataDir, Http, NodeProcess, dir_size, wait_until};
use super::report::Bound;
use super::{BenchArgs, Report, progress};
use crate::domain::entities::{Bind, Group, Id, Processor, Task};
use crate::domain::schedule::Schedule;
use crate::storage::{DEFAULT_CACHE_BYTES, Store};

/// Sizes measured before the requested one, when they are smaller.
const STEPS: [usize; 2] = [10_000, 100_000];
/// Tasks stored per transaction while loading.
const LOAD_BATCH: usize = 1000;
/// Time after the first fire and the end of the task load before memory is
/// read, so start-up allocations that are freed again do not count.
const SETTLE: Duration = Duration::from_secs(2);

pub fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let tasks = args.tasks_or(1_000_000);
    let data = DataDir::new(args.keep_data.as_deref(), "scale")?;
    let mut report = Report::new("scale", json!({"tasks": tasks}));
    let scheduler_dir = data.join("scheduler");
    let store_dir = scheduler_dir.join("store");

    let mut steps: Vec<usize> = STEPS.iter().copied().filter(|step| *step < tasks).collect();
    steps.push(tasks);
    let mut loaded = 0;
    let mut previous: Option<(usize, u64)> = None;
    for step in steps {
        let began = Instant::now();
        load_tasks(&store_dir, loaded, step)?;
        loaded = step;
        let load_seconds = began.elapsed().as_secs_f64();
        progress(
            "scale",
            began.elapsed(),
            &format!("{step} tasks stored in {load_seconds:.1} s"),
        );

        let measured = measure_start(&scheduler_dir)?;
        let disk = dir_size(&store_dir)?;
        progress(
            "scale",
            began.elapsed(),
            &format!(
                "{step} tasks: first fire after {:.2} s, all loaded after {:.2} s, {} MiB resident",
                measured.first_fire.as_secs_f64(),
                measured.loaded.as_secs_f64(),
                measured.resident >> 20
            ),
        );

        let label = step_label(step);
        let memory_bound = Bound::AtMost(1024.0);
        let is_last = step == tasks;
        let resident_mib = measured.resident as f64 / (1 << 20) as f64;
        if is_last {
            report.add_target(
                &format!("resident_{label}"),
                resident_mib,
                "MiB",
                memory_bound,
            );
            report.add_target(
                &format!("first_fire_{label}"),
                measured.first_fire.as_secs_f64(),
                "s",
                Bound::AtMost(5.0),
            );
        } else {
            report.add(&format!("resident_{label}"), resident_mib, "MiB");
            report.add(
                &format!("first_fire_{label}"),
                measured.first_fire.as_secs_f64(),
                "s",
            );
        }
        report.add(
            &format!("tasks_loaded_{label}"),
            measured.loaded.as_secs_f64(),
            "s",
        );
        report.add(
            &format!("peak_resident_{label}"),
            measured.peak as f64 / (1 << 20) as f64,
            "MiB",
        );
        report.add(
            &format!("resident_per_task_{label}"),
            measured.resident as f64 / step as f64,
            "B",
        );
        if let Some((previous_step, previous_resident)) = previous {
            let added = measured.resident.saturating_sub(previous_resident) as f64;
            report.add(
                &format!("added_resident_per_task_{label}"),
                added / (step - previous_step) as f64,
                "B",
            );
        }
        report.add(
            &format!("disk_{label}"),
            disk as f64 / (1 << 20) as f64,
            "MiB",
        );
        report.add(
            &format!("disk_per_task_{label}"),
            disk as f64 / step as f64,
            "B",
        );
        report.add(&format!("store_load_{label}"), load_seconds, "s");
        previous = Some((step, measured.resident));
    }
    Ok(report)
}

fn step_label(step: usize) -> String {
    match step {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}m", n / 1_000_000),
        n if n >= 1000 && n % 1000 == 0 => format!("{}k", n / 1000),
        n => n.to_string(),
    }
}

struct StartFigures {
    first_fire: Duration,
    /// Process start to the end of the scheduler's background task load.
    loaded: Duration,
    resident: u64,
    peak: u64,
}

/// Starts a scheduler on the directory and measures it, then stops it.
fn measure_start(scheduler_dir: &Path) -> anyhow::Result<StartFigures> {
    let mut node = NodeProcess::scheduler(scheduler_dir)?;
    let http = Http::new(node.http());
    let first_fire = wait_until("the first fire", Duration::from_secs(120), || {
        let fires = http.metric("delicate_fires_total").ok()?;
        (fires >= 1.0).then(|| node.started.elapsed())
    })?;
    // The scheduler fires while it still loads tasks, so memory is read only
    // once every task is in.
    let loaded = wait_until("the end of the task load", Duration::from_secs(600), || {
        let loading = http.metric("delicate_scheduler_loading").ok()?;
        (loading == 0.0).then(|| node.started.elapsed())
    })?;
    std::thread::sleep(SETTLE);
    let figures = StartFigures {
        first_fire,
        loaded,
        resident: node.resident_bytes()?,
        peak: node.peak_resident_bytes()?,
    };
    node.stop()?;
    Ok(figures)
}

/// Stores tasks `from..to`, creating the group, processor and bind they
/// use on the first call.
fn load_tasks(store_dir: &Path, from: usize, to: usize) -> anyhow::Result<()> {
    let store = Store::open(store_dir, DEFAULT_CACHE_BYTES)?;
    let bind_id = bench_bind(&store)?;
    let now = Utc::now();
    let mut batch = Vec::with_capacity(LOAD_BATCH);
    for index in from..to {
        let (expression, zone) = schedule_of(index);
        if index < 100 {
            Schedule::parse(&expression, zone, now).map_err(|error| {
                anyhow::anyhow!("the bench schedule {expression:?} is invalid: {error}")
            })?;
        }
        batch.push(task(index, expression, zone, bind_id, now));
        if batch.len() == LOAD_BATCH || index + 1 == to {
            store.create_many(&batch)?;
            batch.clear();
        }
    }
    store.close()?;
    Ok(())
}

fn bench_bind(store: &Store) -> anyhow::Result<Id> {
    if let Some(bind) = store.find_by_name::<Bind>("scale")? {
        return Ok(bind.id);
    }
    let now = Utc::now();
    let group = store.create(Group {
        id: 0,
        name: "scale".into(),
        description: String::new(),
        tag: String::new(),
        created_time: now,
        updated_time: now,
    })?;
    let processor = store.create(Processor {
        id: 0,
        name: "scale".into(),
        description: "never joins: fires end as no executor online".into(),
        tag: String::new(),
        host: "127.0.0.1".into(),
        machine_id: 1,
        public_key: None,
        created_time: now,
        updated_time: now,
    })?;
    let bind = store.create(Bind {
        id: 0,
        group_id: group.id,
        executor_id: processor.id,
        name: "scale".into(),
        weight: 1,
        created_time: now,
        updated_time: now,
    })?;
    Ok(bind.id)
}

/// Returns a varied schedule. Task 0 fires every second, so the first fire
/// comes soon. The others fire hourly to monthly at spread-out times in
/// three zones, so few of them fire while the scheduler is measured.
fn schedule_of(index: usize) -> (String, &'static str) {
    if index == 0 {
        return ("* * * * * *".to_string(), "UTC");
    }
    let (second, minute, hour) = (index % 60, (index / 60) % 60, (index / 3600) % 24);
    match index % 6 {
        0 => (format!("{second} {minute} * * * *"), "UTC"),
        1 => (format!("{second} {minute} {hour} * * *"), "UTC"),
        2 => (format!("@every {}m", 10 + index % 110), "UTC"),
        3 => (
            format!("{second} {minute} {hour} * * mon-fri"),
            "Europe/Berlin",
        ),
        4 => (
            format!("{second} {minute} {hour} 1 * *"),
            "America/New_York",
        ),
        _ => (format!("0 {minute} */{} * * *", 2 + index % 10), "UTC"),
    }
}

fn task(
    index: usize,
    cron_expression: String,
    zone: &str,
    bind_id: Id,
    now: chrono::DateTime<Utc>,
) -> Task {
    Task::enabled(
        format!("scale-{index}"),
        "true",
        cron_expression,
        zone,
        vec![bind_id],
        now,
    )
}
