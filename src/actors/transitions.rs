//! The one place an instance changes status. Every change goes through the
//! domain state machine inside a store transaction, then notifies the
//! actors that track the instance.

use std::cell::Cell;

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
    match apply_checked(shared, instance_id, None, event).await? {
        Reported::Applied(instance) => Ok(instance.map(|boxed| *boxed)),
        Reported::UnknownInstance | Reported::OtherProcessor => Ok(None),
    }
}

/// Outcome of applying an event that an executor reported.
pub enum Reported {
    UnknownInstance,
    /// The instance is routed to another processor, so nothing changed.
    OtherProcessor,
    /// The event went through the state machine: the instance after it when
    /// it changed anything.
    Applied(Option<Box<Instance>>),
}

/// Applies an event reported by `processor_id`'s executor, unless the
/// instance belongs to another processor. The check and the change happen
/// in one store transaction.
pub async fn apply_reported(
    shared: &Shared,
    instance_id: u64,
    processor_id: Id,
    event: InstanceEvent,
) -> Result<Reported, StoreError> {
    apply_checked(shared, instance_id, Some(processor_id), event).await
}

async fn apply_checked(
    shared: &Shared,
    instance_id: u64,
    processor_id: Option<Id>,
    event: InstanceEvent,
) -> Result<Reported, StoreError> {
    let before = Cell::new(InstanceStatus::Running);
    let foreign = Cell::new(false);
    let now = Utc::now();
    let result = shared.store.update_instance(instance_id, |instance| {
        if processor_id.is_some_and(|id| instance.executor_processor_id != Some(id)) {
            foreign.set(true);
            return Applied::Ignored;
        }
        foreign.set(false);
        before.set(instance.status);
        apply_event(instance, &event, now)
    })?;
    let Some((instance, applied)) = result else {
        return Ok(Reported::UnknownInstance);
    };
    if foreign.get() {
        return Ok(Reported::OtherProcessor);
    }
    if applied != Applied::Changed {
        return Ok(Reported::Applied(None));
    }

    let before = before.get();
    if before == InstanceStatus::Running && instance.status.is_ended() {
        shared.metrics.instance_ended(instance.status);
        announce_end(shared, &instance).await;
    } else if before != instance.status {
        shared.metrics.instance_status_reached(instance.status);
        tracing::info!(
            instance.id = instance.id,
            task.id = instance.task_id,
            status = instance.status.name(),
            "instance.outcome_replaced"
        );
    }
    Ok(Reported::Applied(Some(Box::new(instance))))
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
