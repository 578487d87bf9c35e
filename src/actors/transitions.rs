//! The one place an instance changes status. Every change goes through the
//! domain state machine inside a store transaction, then notifies the
//! actors that track the instance.

use chrono::Utc;

use super::Shared;
use super::instance::InstanceEnded;
use super::processor::Release;
use super::scheduler::RunningEnded;
use crate::domain::entities::{Id, Instance, InstanceStatus};
use crate::domain::lifecycle::{Applied, InstanceEvent, apply_event};
use crate::storage::StoreError;

/// Applies an event to a stored instance. Returns the instance after the
/// event when it changed anything.
pub async fn apply(
    shared: &Shared,
    instance_id: u64,
    event: InstanceEvent,
) -> Result<Option<Instance>, StoreError> {
    let events = [event];
    let batch = [ReportedEvents {
        instance_id,
        events: &events,
    }];
    match apply_checked(shared, None, &batch).await?.pop() {
        Some(Reported::Applied(instance)) => Ok(instance.map(|boxed| *boxed)),
        _ => Ok(None),
    }
}

/// Outcome of applying the events that an executor reported for one
/// instance.
pub enum Reported {
    UnknownInstance,
    /// The instance is routed to another processor, so nothing changed.
    OtherProcessor,
    /// The events went through the state machine: the instance after them
    /// when they changed anything.
    Applied(Option<Box<Instance>>),
}

/// Events reported for one instance, in the order they came.
pub struct ReportedEvents<'a> {
    pub instance_id: u64,
    pub events: &'a [InstanceEvent],
}

/// Applies the events reported by `processor_id`'s executor, except to
/// instances that belong to another processor. The checks and the changes
/// of the whole batch happen in one store transaction, so a batch costs one
/// commit however many instances it touches. Returns one result per entry
/// of `batch`, whose instance ids must be distinct.
pub async fn apply_reported(
    shared: &Shared,
    processor_id: Id,
    batch: &[ReportedEvents<'_>],
) -> Result<Vec<Reported>, StoreError> {
    apply_checked(shared, Some(processor_id), batch).await
}

/// The status of one instance before the batch changed it.
#[derive(Clone, Copy)]
struct Seen {
    before: InstanceStatus,
    foreign: bool,
}

async fn apply_checked(
    shared: &Shared,
    processor_id: Option<Id>,
    batch: &[ReportedEvents<'_>],
) -> Result<Vec<Reported>, StoreError> {
    let now = Utc::now();
    let ids: Vec<u64> = batch.iter().map(|entry| entry.instance_id).collect();
    let results = shared.store.update_instances(&ids, |index, instance| {
        let before = instance.status;
        if processor_id.is_some_and(|id| instance.executor_processor_id != Some(id)) {
            let seen = Seen {
                before,
                foreign: true,
            };
            return (Applied::Ignored, seen);
        }
        let mut applied = Applied::Ignored;
        for event in batch[index].events {
            if apply_event(instance, event, now) == Applied::Changed {
                applied = Applied::Changed;
            }
        }
        let seen = Seen {
            before,
            foreign: false,
        };
        (applied, seen)
    })?;

    let mut reported = Vec::with_capacity(results.len());
    for result in results {
        reported.push(match result {
            None => Reported::UnknownInstance,
            Some((_, _, seen)) if seen.foreign => Reported::OtherProcessor,
            Some((_, Applied::Ignored, _)) => Reported::Applied(None),
            Some((instance, Applied::Changed, seen)) => {
                announce_change(shared, seen.before, &instance).await;
                Reported::Applied(Some(Box::new(instance)))
            }
        });
    }
    Ok(reported)
}

/// Counts a status change and, when the instance left Running, notifies
/// the actors that track it.
async fn announce_change(shared: &Shared, before: InstanceStatus, instance: &Instance) {
    if before == InstanceStatus::Running && instance.status.is_ended() {
        shared.metrics.instance_ended(instance.status);
        announce_end(shared, instance).await;
    } else if before != instance.status {
        shared.metrics.instance_status_reached(instance.status);
        tracing::info!(
            instance.id = instance.id,
            task.id = instance.task_id,
            status = instance.status.name(),
            "instance.outcome_replaced"
        );
    }
}

/// Tells the scheduler, the processor and the instance's actor that an
/// instance left Running.
async fn announce_end(shared: &Shared, instance: &Instance) {
    // Debug for the same reason as `instance.created`: one line per instance.
    tracing::debug!(
        instance.id = instance.id,
        task.id = instance.task_id,
        status = instance.status.name(),
        exit_code = ?instance.exit_code,
        signal = ?instance.signal,
        "instance.ended"
    );
    let _ = shared
        .scheduler()
        .tell(RunningEnded {
            task_id: instance.task_id,
        })
        .await;
    if let Some(processor) = instance
        .executor_processor_id
        .and_then(|id| shared.directory.processor_actor(id))
    {
        // `try_send`, because the processor or instance actor may be the
        // caller itself, and awaiting room in its own mailbox would deadlock.
        if processor
            .tell(Release {
                instance_id: instance.id,
            })
            .try_send()
            .is_err()
        {
            tracing::debug!(
                instance.id = instance.id,
                "processor mailbox full; release skipped"
            );
        }
    }
    if let Some(actor) = shared.instance_actor(instance.id) {
        let ended = InstanceEnded {
            instance: instance.clone(),
        };
        if actor.tell(ended).try_send().is_err() {
            tracing::warn!(
                instance.id = instance.id,
                "instance actor mailbox full; retry not planned"
            );
        }
    }
}
