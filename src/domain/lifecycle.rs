//! The instance state machine and the decisions around a fire: catch-up of
//! missed slots, the concurrency limit, retries, and frequency counting.
//! Time is always passed in.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::entities::{Frequency, Instance, InstanceStatus, Trigger};
use super::schedule::Schedule;

/// Kind of end of a run on the executor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunEnd {
    Exited,
    TimedOut,
    Killed,
    SpawnFailed,
    /// The executor stopped or restarted while the run went on.
    Interrupted,
}

/// The outcome an executor reports for one instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub end: RunEnd,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub reason: Option<String>,
    pub finished_at: DateTime<Utc>,
}

impl Outcome {
    /// The instance status this outcome maps to.
    pub fn status(&self) -> InstanceStatus {
        match self.end {
            RunEnd::Exited if self.exit_code == Some(0) => InstanceStatus::Finished,
            RunEnd::Exited | RunEnd::SpawnFailed | RunEnd::Interrupted => {
                InstanceStatus::AbnormalEnding
            }
            RunEnd::TimedOut => InstanceStatus::TimeoutEnding,
            RunEnd::Killed => InstanceStatus::ManualCancellation,
        }
    }
}

/// Something that happened to an instance.
#[derive(Clone, Debug, PartialEq)]
pub enum InstanceEvent {
    /// The executor started the child process.
    Started { at: DateTime<Utc> },
    /// The executor reported how the run ended.
    Ended(Outcome),
    /// The executor went offline or rejected the run; the outcome is not known.
    Lost { at: DateTime<Utc>, reason: String },
    /// The scheduler ended the instance itself, such as when no executor was online.
    Failed { at: DateTime<Utc>, reason: String },
}

/// Whether an event changed the instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Changed,
    /// The event repeats or contradicts what is already recorded.
    Ignored,
}

/// Applies an event. Repeats are ignored, so events can be applied more than
/// once; a reported outcome replaces Unknown, nothing replaces another end.
pub fn apply_event(instance: &mut Instance, event: &InstanceEvent, now: DateTime<Utc>) -> Applied {
    let applied = match event {
        InstanceEvent::Started { at } => {
            if instance.started_time.is_some() {
                Applied::Ignored
            } else {
                instance.started_time = Some(*at);
                Applied::Changed
            }
        }
        InstanceEvent::Ended(outcome) => match instance.status {
            InstanceStatus::Running | InstanceStatus::Unknown => {
                instance.status = outcome.status();
                instance.finished_time = Some(outcome.finished_at);
                instance.exit_code = outcome.exit_code;
                instance.signal = outcome.signal;
                instance.reason = outcome.reason.clone();
                Applied::Changed
            }
            _ => Applied::Ignored,
        },
        InstanceEvent::Lost { at, reason } => {
            end_from_running(instance, InstanceStatus::Unknown, *at, reason)
        }
        InstanceEvent::Failed { at, reason } => {
            end_from_running(instance, InstanceStatus::AbnormalEnding, *at, reason)
        }
    };
    if applied == Applied::Changed {
        instance.updated_time = now;
    }
    applied
}

fn end_from_running(
    instance: &mut Instance,
    status: InstanceStatus,
    at: DateTime<Utc>,
    reason: &str,
) -> Applied {
    if instance.status != InstanceStatus::Running {
        return Applied::Ignored;
    }
    instance.status = status;
    instance.finished_time = Some(at);
    instance.reason = Some(reason.to_string());
    Applied::Changed
}

/// When and as which attempt an ended instance is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPlan {
    pub attempt: u32,
    pub due: DateTime<Utc>,
}

/// Decides the retry of an ended instance: AbnormalEnding, TimeoutEnding and
/// Unknown are retried up to `retry_times` times, `retry_interval` seconds
/// after the attempt ended; Finished and ManualCancellation never are.
pub fn plan_retry(instance: &Instance, retry_times: u32, retry_interval: u64) -> Option<RetryPlan> {
    let retryable = matches!(
        instance.status,
        InstanceStatus::AbnormalEnding | InstanceStatus::TimeoutEnding | InstanceStatus::Unknown
    );
    if !retryable || instance.attempt > retry_times {
        return None;
    }
    let ended = instance.finished_time.unwrap_or(instance.updated_time);
    Some(RetryPlan {
        attempt: instance.attempt + 1,
        due: ended + Duration::seconds(retry_interval as i64),
    })
}

/// Decision about the due slots of one task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirePlan {
    /// The slot to fire now, if any, and its trigger.
    pub fire: Option<(DateTime<Utc>, Trigger)>,
    /// Due slots that are skipped without an instance.
    pub missed: u64,
    /// The next slot after `now`, to wait for.
    pub next: Option<DateTime<Utc>>,
}

/// Slots counted one by one before the count of older missed slots is
/// skipped over; bounds the work after a long outage.
const MAX_MISSED_SCAN: u64 = 100_000;

/// Plans the fire of a task whose earliest unfired slot `due` is at or before
/// `now`.
///
/// `recovering` is true for the first plan after a start, when every due
/// slot was missed while the scheduler was down. Otherwise a single due slot
/// fires with trigger `cron`. When more than one slot is due, or the slot was
/// missed during an outage, only the newest one fires, as `misfire`, and only
/// if it is younger than `grace`; the rest are counted as missed.
pub fn plan_fire(
    schedule: &Schedule,
    due: DateTime<Utc>,
    now: DateTime<Utc>,
    grace: Duration,
    recovering: bool,
) -> FirePlan {
    let next = next_slot(schedule, now.max(due));
    if due > now {
        return FirePlan {
            fire: None,
            missed: 0,
            next: Some(due),
        };
    }

    let window_start = now - grace;
    let mut missed = 0u64;
    let mut newest = due;
    let mut cursor = due;
    // Slots older than the grace window only count as missed.
    while newest < window_start {
        missed += 1;
        if missed >= MAX_MISSED_SCAN {
            cursor = window_start - Duration::seconds(1);
            break;
        }
        match next_slot(schedule, newest) {
            Some(slot) if slot <= now => {
                newest = slot;
                cursor = slot;
            }
            _ => {
                return FirePlan {
                    fire: None,
                    missed,
                    next,
                };
            }
        }
    }
    if newest < window_start {
        // The scan was cut short: find the first slot inside the window.
        match next_slot(schedule, cursor) {
            Some(slot) if slot <= now => newest = slot,
            _ => {
                return FirePlan {
                    fire: None,
                    missed,
                    next,
                };
            }
        }
    }

    // `newest` is inside the window; walk to the last slot not after `now`.
    let mut skipped_in_window = 0u64;
    while let Some(slot) = next_slot(schedule, newest).filter(|slot| *slot <= now) {
        newest = slot;
        skipped_in_window += 1;
    }
    missed += skipped_in_window;

    let trigger = if recovering || missed > 0 {
        Trigger::Misfire
    } else {
        Trigger::Cron
    };
    FirePlan {
        fire: Some((newest, trigger)),
        missed,
        next,
    }
}

fn next_slot(schedule: &Schedule, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    schedule.next_after(after).ok().flatten()
}

/// True when a task with `running` instances may start another.
pub fn admits_another(running: u32, maximum_parallel: u32) -> bool {
    running < maximum_parallel.max(1)
}

/// The remaining count after one fire, and whether the task is now used up.
pub fn consume_fire(frequency: Frequency, remaining: Option<u64>) -> (Option<u64>, bool) {
    match frequency {
        Frequency::Repeat => (None, false),
        Frequency::Once | Frequency::CountDown { .. } => {
            let left = remaining.unwrap_or(0).saturating_sub(1);
            (Some(left), left == 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, h, m, s).unwrap()
    }

    fn every_second() -> Schedule {
        Schedule::parse("* * * * * *", "UTC", at(0, 0, 0)).unwrap()
    }

    fn every_minute() -> Schedule {
        Schedule::parse("0 * * * * *", "UTC", at(0, 0, 0)).unwrap()
    }

    fn grace(seconds: i64) -> Duration {
        Duration::seconds(seconds)
    }

    #[test]
    fn on_time_slot_fires_as_cron() {
        let plan = plan_fire(
            &every_minute(),
            at(10, 0, 0),
            at(10, 0, 0),
            grace(60),
            false,
        );
        assert_eq!(plan.fire, Some((at(10, 0, 0), Trigger::Cron)));
        assert_eq!(plan.missed, 0);
        assert_eq!(plan.next, Some(at(10, 1, 0)));
    }

    #[test]
    fn slot_due_after_now_waits() {
        let plan = plan_fire(
            &every_minute(),
            at(10, 1, 0),
            at(10, 0, 30),
            grace(60),
            false,
        );
        assert_eq!(plan.fire, None);
        assert_eq!(plan.next, Some(at(10, 1, 0)));
    }

    #[test]
    fn several_due_slots_fire_newest_once() {
        let plan = plan_fire(
            &every_second(),
            at(10, 0, 0),
            at(10, 0, 5),
            grace(60),
            false,
        );
        assert_eq!(plan.fire, Some((at(10, 0, 5), Trigger::Misfire)));
        assert_eq!(plan.missed, 5);
        assert_eq!(plan.next, Some(at(10, 0, 6)));
    }

    #[test]
    fn recovery_marks_single_slot_as_misfire() {
        let plan = plan_fire(
            &every_minute(),
            at(10, 0, 0),
            at(10, 0, 20),
            grace(60),
            true,
        );
        assert_eq!(plan.fire, Some((at(10, 0, 0), Trigger::Misfire)));
        assert_eq!(plan.missed, 0);
    }

    #[test]
    fn slots_older_than_grace_are_only_missed() {
        let plan = plan_fire(&every_minute(), at(8, 0, 0), at(10, 0, 30), grace(10), true);
        assert_eq!(plan.fire, None);
        assert_eq!(plan.missed, 121);
        assert_eq!(plan.next, Some(at(10, 1, 0)));
    }

    #[test]
    fn long_outage_scan_is_bounded() {
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        let plan = plan_fire(&every_second(), start, now, grace(60), true);
        assert_eq!(plan.fire, Some((now, Trigger::Misfire)));
        assert!(plan.missed >= MAX_MISSED_SCAN);
    }

    fn running_instance() -> Instance {
        Instance {
            id: 1,
            task_id: 1,
            name: "t".into(),
            description: String::new(),
            command: "true".into(),
            frequency: Frequency::Repeat,
            cron_expression: "* * * * * *".into(),
            maximum_parallel_runnable_num: 1,
            tag: String::new(),
            status: InstanceStatus::Running,
            created_time: at(0, 0, 0),
            updated_time: at(0, 0, 0),
            executor_processor_id: Some(1),
            executor_processor_name: "p".into(),
            executor_processor_host: "h".into(),
            bind_id: Some(1),
            scheduled_time: at(0, 0, 0),
            trigger: Trigger::Cron,
            attempt: 1,
            started_time: None,
            finished_time: None,
            exit_code: None,
            signal: None,
            reason: None,
        }
    }

    fn exited(code: i32, finished_at: DateTime<Utc>) -> Outcome {
        Outcome {
            end: RunEnd::Exited,
            exit_code: Some(code),
            signal: None,
            reason: None,
            finished_at,
        }
    }

    #[test]
    fn outcome_replaces_unknown() {
        let mut instance = running_instance();
        let lost = InstanceEvent::Lost {
            at: at(0, 0, 9),
            reason: "executor offline".into(),
        };
        assert_eq!(
            apply_event(&mut instance, &lost, at(0, 0, 9)),
            Applied::Changed
        );
        assert_eq!(instance.status, InstanceStatus::Unknown);

        let ended = InstanceEvent::Ended(exited(0, at(0, 0, 5)));
        assert_eq!(
            apply_event(&mut instance, &ended, at(0, 0, 20)),
            Applied::Changed
        );
        assert_eq!(instance.status, InstanceStatus::Finished);
        assert_eq!(instance.finished_time, Some(at(0, 0, 5)));
    }

    #[test]
    fn repeated_outcome_is_ignored() {
        let mut instance = running_instance();
        let ended = InstanceEvent::Ended(exited(3, at(0, 0, 5)));
        assert_eq!(
            apply_event(&mut instance, &ended, at(0, 0, 5)),
            Applied::Changed
        );
        let again = InstanceEvent::Ended(exited(0, at(0, 0, 6)));
        assert_eq!(
            apply_event(&mut instance, &again, at(0, 0, 6)),
            Applied::Ignored
        );
        assert_eq!(instance.status, InstanceStatus::AbnormalEnding);
        assert_eq!(instance.exit_code, Some(3));
    }

    #[test]
    fn lost_after_end_is_ignored() {
        let mut instance = running_instance();
        apply_event(
            &mut instance,
            &InstanceEvent::Ended(exited(0, at(0, 0, 1))),
            at(0, 0, 1),
        );
        let lost = InstanceEvent::Lost {
            at: at(0, 0, 9),
            reason: "offline".into(),
        };
        assert_eq!(
            apply_event(&mut instance, &lost, at(0, 0, 9)),
            Applied::Ignored
        );
        assert_eq!(instance.status, InstanceStatus::Finished);
    }

    #[test]
    fn outcome_maps_to_status() {
        let cases = [
            (RunEnd::Exited, Some(0), InstanceStatus::Finished),
            (RunEnd::Exited, Some(3), InstanceStatus::AbnormalEnding),
            (RunEnd::Exited, None, InstanceStatus::AbnormalEnding),
            (RunEnd::SpawnFailed, None, InstanceStatus::AbnormalEnding),
            (RunEnd::TimedOut, None, InstanceStatus::TimeoutEnding),
            (RunEnd::Killed, None, InstanceStatus::ManualCancellation),
        ];
        for (end, exit_code, expected) in cases {
            let outcome = Outcome {
                end,
                exit_code,
                signal: None,
                reason: None,
                finished_at: at(0, 0, 0),
            };
            assert_eq!(outcome.status(), expected, "{end:?} {exit_code:?}");
        }
    }

    #[test]
    fn retries_stop_after_retry_times() {
        let mut instance = running_instance();
        apply_event(
            &mut instance,
            &InstanceEvent::Ended(exited(3, at(0, 0, 10))),
            at(0, 0, 10),
        );
        let plan = plan_retry(&instance, 2, 5).unwrap();
        assert_eq!(
            plan,
            RetryPlan {
                attempt: 2,
                due: at(0, 0, 15)
            }
        );
        instance.attempt = 3;
        assert_eq!(plan_retry(&instance, 2, 5), None);
    }

    #[test]
    fn finished_and_cancelled_are_not_retried() {
        for end in [RunEnd::Killed, RunEnd::Exited] {
            let mut instance = running_instance();
            let outcome = Outcome {
                end,
                exit_code: Some(0),
                signal: None,
                reason: None,
                finished_at: at(0, 0, 1),
            };
            apply_event(&mut instance, &InstanceEvent::Ended(outcome), at(0, 0, 1));
            assert_eq!(plan_retry(&instance, 5, 1), None, "{end:?}");
        }
    }

    #[test]
    fn concurrency_limit_admits_below_maximum() {
        assert!(admits_another(0, 1));
        assert!(!admits_another(1, 1));
        assert!(admits_another(2, 3));
    }

    #[test]
    fn count_down_uses_up_fires() {
        let frequency = Frequency::CountDown { count: 2 };
        let (left, done) = consume_fire(frequency, frequency.initial_count());
        assert_eq!((left, done), (Some(1), false));
        assert_eq!(consume_fire(frequency, left), (Some(0), true));
        assert_eq!(consume_fire(Frequency::Repeat, None), (None, false));
        assert_eq!(consume_fire(Frequency::Once, Some(1)), (Some(0), true));
    }
}
