//! `bench fire`: N tasks firing every second for a window. Lateness comes
//! from the stored instances after the nodes stopped, so it covers every
//! slot of the window, not a sample. The baseline of start lateness is the
//! same burst of N `/bin/true` processes started at a slot by a plain tokio
//! program.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::json;

use super::process::{BASELINE_CONCURRENCY, Cluster, DataDir, quantile};
use super::report::Bound;
use super::{BenchArgs, Report, progress};
use crate::domain::entities::{Instance, InstanceStatus};
use crate::storage::{DEFAULT_CACHE_BYTES, InstanceFilter, Store};

/// Time between the last task creation and the start of the window, so the
/// window holds only steady-state fires.
const WARM_UP: Duration = Duration::from_secs(2);
/// Time after the window for the last fires' outcomes to reach the store.
const DRAIN: Duration = Duration::from_secs(3);
/// Slots of the spawn-only baseline, run before the cluster starts.
const BASELINE_SLOTS: u32 = 5;

pub fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let tasks = args.tasks_or(1000);
    let window = args.duration_or(60);
    let data = DataDir::new(args.keep_data.as_deref(), "fire")?;
    let mut report = Report::new(
        "fire",
        json!({"tasks": tasks, "duration_s": window.as_secs_f64(), "executors": args.executors, "schedule": "* * * * * *"}),
    );

    let baseline = spawn_lateness(tasks, BASELINE_SLOTS, BASELINE_CONCURRENCY)?;
    eprintln!(
        "[fire] baseline: {tasks} /bin/true started at each of {BASELINE_SLOTS} slots, \
         start lateness p50 {:.0} ms, p99 {:.0} ms",
        quantile(&baseline, 0.5),
        quantile(&baseline, 0.99)
    );

    let cluster = Cluster::start(&data, args.executors)?;
    let binds = cluster.bind_ids.clone();
    cluster.create_tasks(tasks, 8, |index| {
        json!({"name": format!("fire-{index}"), "cron_expression": "* * * * * *", "command": "true", "binding_ids": binds})
    })?;

    let start = whole_second_after(Utc::now() + WARM_UP);
    wait_until_time(start);
    let skipped_before = cluster.http.metric("delicate_fires_skipped_total")?;
    let missed_before = cluster.http.metric("delicate_fires_missed_total")?;
    let end = start + chrono::Duration::from_std(window)?;
    report.settings["window_start"] = json!(start.to_rfc3339());
    report.settings["window_end"] = json!(end.to_rfc3339());
    watch_window(&cluster, end)?;
    let skipped = cluster.http.metric("delicate_fires_skipped_total")? - skipped_before;
    let missed = cluster.http.metric("delicate_fires_missed_total")? - missed_before;

    std::thread::sleep(DRAIN);
    cluster.stop()?;

    let store = Store::open(&data.join("scheduler").join("store"), DEFAULT_CACHE_BYTES)?;
    let instances = instances_between(&store, start, end)?;
    add_figures(&mut report, &instances, tasks, window, skipped, missed);
    add_baseline(&mut report, &baseline);
    Ok(report)
}

/// Start lateness, in ms and sorted, of `count` `/bin/true` processes
/// spawned at each of `slots` whole seconds by a plain tokio program,
/// `concurrency` at a time: what process creation alone costs a burst of
/// fires on this machine. Lateness is taken when `spawn` returns, as the
/// executor takes an instance's start time.
fn spawn_lateness(count: usize, slots: u32, concurrency: usize) -> anyhow::Result<Vec<f64>> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let mut lateness = Vec::with_capacity(count * slots as usize);
        for _ in 0..slots {
            let slot = whole_second_after(Utc::now());
            if let Ok(wait) = (slot - Utc::now()).to_std() {
                tokio::time::sleep(wait).await;
            }
            let claimed = Arc::new(AtomicUsize::new(0));
            let mut workers = Vec::with_capacity(concurrency);
            for _ in 0..concurrency {
                let claimed = claimed.clone();
                workers.push(tokio::spawn(async move {
                    let mut late = Vec::new();
                    while claimed.fetch_add(1, Ordering::Relaxed) < count {
                        let mut child = tokio::process::Command::new("/bin/true").spawn()?;
                        late.push(millis_between(Utc::now(), slot));
                        child.wait().await?;
                    }
                    anyhow::Ok(late)
                }));
            }
            for worker in workers {
                lateness.extend(worker.await??);
            }
        }
        Ok(sorted(lateness))
    })
}

/// Sets the baseline of each start lateness figure to the same quantile of
/// the spawn-only burst.
fn add_baseline(report: &mut Report, baseline: &[f64]) {
    for (name, q) in [
        ("start_lateness_p50", 0.5),
        ("start_lateness_p99", 0.99),
        ("start_lateness_max", 1.0),
    ] {
        if let Some(figure) = report.figure_mut(name) {
            figure.baseline(quantile(baseline, q));
        }
    }
}

fn whole_second_after(at: DateTime<Utc>) -> DateTime<Utc> {
    let millis = at.timestamp_millis();
    let next = (millis / 1000 + 1) * 1000;
    DateTime::from_timestamp_millis(next).unwrap_or(at)
}

fn wait_until_time(at: DateTime<Utc>) {
    if let Ok(wait) = (at - Utc::now()).to_std() {
        std::thread::sleep(wait);
    }
}

/// Prints fires and running instances once a second until `end`.
fn watch_window(cluster: &Cluster, end: DateTime<Utc>) -> anyhow::Result<()> {
    let began = Instant::now();
    let mut fires = cluster.http.metric("delicate_fires_total")?;
    while Utc::now() < end {
        let next = Utc::now() + chrono::Duration::seconds(1);
        wait_until_time(next.min(end));
        let now_fires = cluster.http.metric("delicate_fires_total")?;
        let running = cluster.http.metric("delicate_instances_running")?;
        let cpu = cluster.scheduler.cpu_time()?.as_secs_f64();
        let text = format!(
            "fires/s {:.0}, running {running}, scheduler CPU {cpu:.1} s",
            now_fires - fires
        );
        progress("fire", began.elapsed(), &text);
        fires = now_fires;
    }
    Ok(())
}

/// Reads every stored instance whose slot lies in `[start, end)`.
pub fn instances_between(
    store: &Store,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> anyhow::Result<Vec<Instance>> {
    let mut found = Vec::new();
    let mut filter = InstanceFilter {
        limit: 1000,
        ..InstanceFilter::default()
    };
    loop {
        let page = store.list_instances(&filter)?;
        found.extend(
            page.instances.into_iter().filter(|instance| {
                instance.scheduled_time >= start && instance.scheduled_time < end
            }),
        );
        match page.next_cursor {
            Some(cursor) => filter.before = Some(cursor),
            None => return Ok(found),
        }
    }
}

fn millis_between(later: DateTime<Utc>, earlier: DateTime<Utc>) -> f64 {
    (later - earlier).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

fn add_figures(
    report: &mut Report,
    instances: &[Instance],
    tasks: usize,
    window: Duration,
    skipped: f64,
    missed: f64,
) {
    let seconds = window.as_secs_f64();
    let expected = tasks as f64 * window.as_secs() as f64;
    let created = sorted(
        instances
            .iter()
            .map(|i| millis_between(i.created_time, i.scheduled_time))
            .collect(),
    );
    let started = sorted(
        instances
            .iter()
            .filter_map(|i| {
                i.started_time
                    .map(|at| millis_between(at, i.scheduled_time))
            })
            .collect(),
    );
    let ended: Vec<&Instance> = instances.iter().filter(|i| i.status.is_ended()).collect();
    let outcome = sorted(
        ended
            .iter()
            .map(|i| millis_between(i.updated_time, i.scheduled_time))
            .collect(),
    );
    let failed = ended
        .iter()
        .filter(|i| i.status != InstanceStatus::Finished)
        .count();

    report.add_target(
        "fires_per_second",
        instances.len() as f64 / seconds,
        "1/s",
        Bound::AtLeast(tasks as f64),
    );
    report.add("instances", instances.len() as f64, "count");
    report.add_target(
        "slots_without_instance",
        (expected - instances.len() as f64).max(0.0),
        "count",
        Bound::AtMost(0.0),
    );
    report.add_target("fires_missed", missed, "count", Bound::AtMost(0.0));
    report.add_target("fires_skipped", skipped, "count", Bound::AtMost(0.0));
    report.add(
        "instances_not_finished",
        (instances.len() - ended.len()) as f64,
        "count",
    );
    report.add("instances_failed", failed as f64, "count");
    report.add("create_lateness_p50", quantile(&created, 0.5), "ms");
    report.add("create_lateness_p99", quantile(&created, 0.99), "ms");
    report.add("create_lateness_max", quantile(&created, 1.0), "ms");
    report.add("start_lateness_p50", quantile(&started, 0.5), "ms");
    report.add_target(
        "start_lateness_p99",
        quantile(&started, 0.99),
        "ms",
        Bound::AtMost(10.0),
    );
    report.add_target(
        "start_lateness_max",
        quantile(&started, 1.0),
        "ms",
        Bound::AtMost(50.0),
    );
    report.add("slot_to_outcome_p50", quantile(&outcome, 0.5), "ms");
    report.add("slot_to_outcome_p99", quantile(&outcome, 0.99), "ms");
    report.add("slot_to_outcome_max", quantile(&outcome, 1.0), "ms");
}
