//! `bench idle`: a scheduler and one executor with no tasks, for a window.

use std::time::{Duration, Instant};

use serde_json::json;

use super::process::{Cluster, DataDir};
use super::report::Bound;
use super::{BenchArgs, Report, progress};

pub fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let window = args.duration_or(30);
    let data = DataDir::new(args.keep_data.as_deref(), "idle")?;
    let mut report = Report::new(
        "idle",
        json!({"duration_s": window.as_secs_f64(), "executors": 1}),
    );

    let cluster = Cluster::start(&data, 1)?;
    let executor = &cluster.executors[0];
    let scheduler_before = cluster.scheduler.cpu_time()?;
    let executor_before = executor.cpu_time()?;
    let began = Instant::now();
    while began.elapsed() < window {
        std::thread::sleep(Duration::from_secs(1).min(window.saturating_sub(began.elapsed())));
        let text = format!(
            "scheduler {} KiB, executor {} KiB resident",
            cluster.scheduler.resident_bytes()? >> 10,
            executor.resident_bytes()? >> 10
        );
        progress("idle", began.elapsed(), &text);
    }
    let elapsed = began.elapsed().as_secs_f64();
    let share =
        |after: Duration, before: Duration| (after - before).as_secs_f64() / elapsed * 100.0;
    let scheduler_cpu = share(cluster.scheduler.cpu_time()?, scheduler_before);
    let executor_cpu = share(executor.cpu_time()?, executor_before);
    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    let scheduler_resident = mib(cluster.scheduler.resident_bytes()?);
    let executor_resident = mib(executor.resident_bytes()?);
    cluster.stop()?;

    report.add_target(
        "scheduler_resident",
        scheduler_resident,
        "MiB",
        Bound::AtMost(20.0 * 1e6 / (1 << 20) as f64),
    );
    report.add_target("scheduler_cpu", scheduler_cpu, "% core", Bound::AtMost(0.5));
    report.add_target(
        "executor_resident",
        executor_resident,
        "MiB",
        Bound::AtMost(10.0 * 1e6 / (1 << 20) as f64),
    );
    report.add("executor_cpu", executor_cpu, "% core");
    Ok(report)
}
