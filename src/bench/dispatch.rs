//! `bench dispatch`: more fires than the cluster can run, so the rate of
//! ended instances is what the cluster takes. The baseline spawns and waits
//! for `/bin/true` directly from tokio at a fixed concurrency. The baseline
//! of the scheduler's CPU per instance is the CPU of one raw sled insert, so
//! the ratio counts how many such inserts an instance costs.

use std::time::{Duration, Instant};

use serde_json::json;

use super::process::{
    BASELINE_CONCURRENCY, Cluster, DataDir, metric_value, own_cpu_time, raw_insert_cpu,
};
use super::report::Bound;
use super::{BenchArgs, Report, progress};

/// Length of the raw sled insert baseline.
const INSERT_BASELINE_WINDOW: Duration = Duration::from_secs(3);
/// Bytes per baseline insert: about a stored instance.
const INSERT_BASELINE_VALUE_LEN: usize = 300;
/// Time after task creation before the window, so the window is steady state.
const WARM_UP: Duration = Duration::from_secs(3);

pub fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let tasks = args.tasks_or(4000);
    let window = args.duration_or(30);
    let data = DataDir::new(args.keep_data.as_deref(), "dispatch")?;
    let mut report = Report::new(
        "dispatch",
        json!({"tasks": tasks, "duration_s": window.as_secs_f64(), "executors": args.executors,
               "baseline_concurrency": BASELINE_CONCURRENCY}),
    );

    let baseline_window = window.min(Duration::from_secs(10));
    let (baseline, spawn_cpu) = spawn_rate(baseline_window, BASELINE_CONCURRENCY)?;
    eprintln!(
        "[dispatch] baseline: {baseline:.0} /bin/true per second at concurrency {BASELINE_CONCURRENCY}, \
         {spawn_cpu:.0} µs of the parent's CPU each"
    );

    let insert_cpu = raw_insert_cpu(
        &data.join("baseline"),
        INSERT_BASELINE_WINDOW,
        INSERT_BASELINE_VALUE_LEN,
    )?;
    eprintln!("[dispatch] baseline: {insert_cpu:.1} µs of CPU per raw sled insert");

    let cluster = Cluster::start(&data, args.executors)?;
    let binds = cluster.bind_ids.clone();
    cluster.create_tasks(tasks, 8, |index| {
        json!({"name": format!("dispatch-{index}"), "cron_expression": "* * * * * *", "command": "true", "binding_ids": binds})
    })?;
    std::thread::sleep(WARM_UP);

    let before = sample(&cluster)?;
    let began = Instant::now();
    let mut last = before.ended;
    while began.elapsed() < window {
        std::thread::sleep(Duration::from_secs(1).min(window.saturating_sub(began.elapsed())));
        let now = sample(&cluster)?;
        progress(
            "dispatch",
            began.elapsed(),
            &format!("ended/s {:.0}", now.ended - last),
        );
        last = now.ended;
    }
    let after = sample(&cluster)?;
    let elapsed = began.elapsed().as_secs_f64();
    cluster.stop()?;

    let ended = after.ended - before.ended;
    let rate = ended / elapsed;
    let per_instance =
        |cpu_after: f64, cpu_before: f64| (cpu_after - cpu_before) * 1e6 / ended.max(1.0);
    report
        .add_target(
            "instances_per_second",
            rate,
            "1/s",
            Bound::AtLeast(0.8 * baseline),
        )
        .baseline(baseline);
    report.add("instances_ended", ended, "count");
    report.add(
        "instances_finished",
        after.finished - before.finished,
        "count",
    );
    report.add("fires_skipped", after.skipped - before.skipped, "count");
    report
        .add_target(
            "scheduler_cpu_per_instance",
            per_instance(after.scheduler_cpu, before.scheduler_cpu),
            "us",
            Bound::AtMost(20.0),
        )
        .baseline(insert_cpu);
    report
        .add(
            "executor_cpu_per_instance",
            per_instance(after.executors_cpu, before.executors_cpu),
            "us",
        )
        .baseline(spawn_cpu);
    Ok(report)
}

struct Sample {
    ended: f64,
    finished: f64,
    skipped: f64,
    scheduler_cpu: f64,
    executors_cpu: f64,
}

fn sample(cluster: &Cluster) -> anyhow::Result<Sample> {
    let text = cluster.http.get_text("/metrics")?;
    let mut executors_cpu = 0.0;
    for executor in &cluster.executors {
        executors_cpu += executor.cpu_time()?.as_secs_f64();
    }
    Ok(Sample {
        ended: metric_value(&text, "delicate_instances_ended_total"),
        finished: series_value(&text, "delicate_instances_ended_total{status=\"finished\"}"),
        skipped: metric_value(&text, "delicate_fires_skipped_total"),
        scheduler_cpu: cluster.scheduler.cpu_time()?.as_secs_f64(),
        executors_cpu,
    })
}

fn series_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Spawns `/bin/true` and waits for it, `concurrency` at a time, for
/// `window`. Returns processes per second, and this process's CPU time per
/// process in µs, which leaves out the children's own CPU as the
/// executors' figure does.
fn spawn_rate(window: Duration, concurrency: usize) -> anyhow::Result<(f64, f64)> {
    let runtime = tokio::runtime::Runtime::new()?;
    let cpu_before = own_cpu_time()?;
    let measured = runtime.block_on(async {
        let began = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..concurrency {
            workers.push(tokio::spawn(async move {
                let mut done = 0u64;
                while began.elapsed() < window {
                    tokio::process::Command::new("/bin/true").status().await?;
                    done += 1;
                }
                anyhow::Ok(done)
            }));
        }
        let mut total = 0;
        for worker in workers {
            total += worker.await??;
        }
        anyhow::Ok((total, total as f64 / began.elapsed().as_secs_f64()))
    });
    let (total, rate) = measured?;
    let cpu = own_cpu_time()? - cpu_before;
    Ok((rate, cpu.as_secs_f64() * 1e6 / total.max(1) as f64))
}
