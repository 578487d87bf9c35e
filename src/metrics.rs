//! Prometheus metrics, kept in atomics and rendered as text format 0.0.4.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use crate::domain::entities::{InstanceStatus, Trigger};

/// Bucket upper bounds, in seconds, of the latency histograms.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A histogram of durations.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, seconds: f64) {
        let seconds = seconds.max(0.0);
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add((seconds * 1e6) as u64, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Relaxed)
            );
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Every metric of a scheduler node.
#[derive(Default)]
pub struct Metrics {
    pub fires: AtomicU64,
    pub fires_skipped: AtomicU64,
    pub fires_missed: AtomicU64,
    created: [AtomicU64; 4],
    ended: [AtomicU64; 6],
    pub instances_running: AtomicI64,
    pub processors_online: AtomicI64,
    /// 1 while the scheduler's start-up load is still reading stored tasks.
    pub scheduler_loading: AtomicI64,
    pub fire_lateness: Histogram,
    pub dispatch_latency: Histogram,
    pub frames_rejected: AtomicU64,
    frames_auth_failed: [AtomicU64; 3],
    pub joins_rejected: AtomicU64,
    pub joins_rate_limited: AtomicU64,
    pub events_applied: AtomicU64,
}

fn trigger_index(trigger: Trigger) -> usize {
    match trigger {
        Trigger::Cron => 0,
        Trigger::Manual => 1,
        Trigger::Retry => 2,
        Trigger::Misfire => 3,
    }
}

/// `reason` labels of `delicate_frames_auth_failed_total`, as returned by
/// `AuthFailure::reason`.
const AUTH_FAILURE_REASONS: [&str; 3] = ["bad_mac", "sequence", "unsigned"];

const TRIGGERS: [Trigger; 4] = [
    Trigger::Cron,
    Trigger::Manual,
    Trigger::Retry,
    Trigger::Misfire,
];

impl Metrics {
    pub fn instance_created(&self, trigger: Trigger, status: InstanceStatus) {
        self.created[trigger_index(trigger)].fetch_add(1, Relaxed);
        if status == InstanceStatus::Running {
            self.instances_running.fetch_add(1, Relaxed);
        } else {
            self.instance_status_reached(status);
        }
    }

    /// Counts an instance reaching an end status.
    pub fn instance_status_reached(&self, status: InstanceStatus) {
        let index = InstanceStatus::ALL
            .iter()
            .position(|s| *s == status)
            .unwrap_or(0);
        self.ended[index].fetch_add(1, Relaxed);
    }

    /// Counts an instance leaving Running for `status`.
    pub fn instance_ended(&self, status: InstanceStatus) {
        self.instances_running.fetch_sub(1, Relaxed);
        self.instance_status_reached(status);
    }

    /// Counts a connection closed for a frame that failed authentication.
    pub fn frame_auth_failed(&self, reason: &str) {
        if let Some(index) = AUTH_FAILURE_REASONS
            .iter()
            .position(|known| *known == reason)
        {
            self.frames_auth_failed[index].fetch_add(1, Relaxed);
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        counter(
            &mut out,
            "delicate_fires_total",
            "Cron and misfire slots that created instances.",
            self.fires.load(Relaxed),
        );
        counter(
            &mut out,
            "delicate_fires_skipped_total",
            "Fires skipped because the task had its maximum of running instances.",
            self.fires_skipped.load(Relaxed),
        );
        counter(
            &mut out,
            "delicate_fires_missed_total",
            "Slots that passed without an instance.",
            self.fires_missed.load(Relaxed),
        );

        let _ = writeln!(
            out,
            "# HELP delicate_instances_created_total Instances created, by trigger.\n# TYPE delicate_instances_created_total counter"
        );
        for trigger in TRIGGERS {
            let name = serde_json::to_value(trigger)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "delicate_instances_created_total{{trigger=\"{name}\"}} {}",
                self.created[trigger_index(trigger)].load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP delicate_instances_ended_total Instances that reached an end status since start, by status.\n# TYPE delicate_instances_ended_total counter"
        );
        for (status, count) in InstanceStatus::ALL.iter().zip(&self.ended).skip(1) {
            let _ = writeln!(
                out,
                "delicate_instances_ended_total{{status=\"{}\"}} {}",
                status.name(),
                count.load(Relaxed)
            );
        }
        gauge(
            &mut out,
            "delicate_instances_running",
            "Instances in status running.",
            self.instances_running.load(Relaxed),
        );
        gauge(
            &mut out,
            "delicate_processors_online",
            "Executor processors online.",
            self.processors_online.load(Relaxed),
        );
        gauge(
            &mut out,
            "delicate_scheduler_loading",
            "1 while the scheduler is still loading stored tasks after its start, else 0.",
            self.scheduler_loading.load(Relaxed),
        );
        self.fire_lateness.render(
            &mut out,
            "delicate_fire_lateness_seconds",
            "Time from a cron slot to the creation of its instance, or 0 when it was created ahead of the slot.",
        );
        self.dispatch_latency.render(
            &mut out,
            "delicate_dispatch_latency_seconds",
            "Time from the creation of an instance to its acceptance by an executor.",
        );
        counter(
            &mut out,
            "delicate_frames_rejected_total",
            "Connections closed for an invalid frame.",
            self.frames_rejected.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP delicate_frames_auth_failed_total Connections closed for a frame that failed its MAC or sequence check, by reason.\n# TYPE delicate_frames_auth_failed_total counter"
        );
        for (reason, count) in AUTH_FAILURE_REASONS.iter().zip(&self.frames_auth_failed) {
            let _ = writeln!(
                out,
                "delicate_frames_auth_failed_total{{reason=\"{reason}\"}} {}",
                count.load(Relaxed)
            );
        }
        counter(
            &mut out,
            "delicate_joins_rejected_total",
            "Executor joins rejected.",
            self.joins_rejected.load(Relaxed),
        );
        counter(
            &mut out,
            "delicate_joins_rate_limited_total",
            "Connections closed because their address exceeded the join rate limit.",
            self.joins_rate_limited.load(Relaxed),
        );
        counter(
            &mut out,
            "delicate_events_applied_total",
            "Instance events from executors applied.",
            self.events_applied.load(Relaxed),
        );
        out
    }
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

fn gauge(out: &mut String, name: &str, help: &str, value: i64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}
