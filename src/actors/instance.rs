//! One actor per Running instance: sends it to an executor (trying the next
//! bind when one rejects it), handles a kill request and the loss of the
//! executor, and plans the retry when the instance ends.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kameo::Actor;
use kameo::actor::{ActorRef, Spawn, WeakActorRef};
use kameo::error::{ActorStopReason, Infallible};
use kameo::message::{Context, Message};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::Shared;
use super::directory::Route;
use super::group::RouteFire;
use super::processor::{Assign, DispatchRun, SendKill};
use super::scheduler::CreateRetry;
use super::transitions;
use crate::domain::entities::{Dispatch, Id, Instance, InstanceStatus, Task};
use crate::domain::lifecycle::{Applied, InstanceEvent, Outcome, RunEnd, plan_retry};
use crate::net::messages::RunRequest;

/// Mailbox size: an instance receives a handful of messages in its life.
const MAILBOX: usize = 16;

pub struct InstanceActor {
    shared: Arc<Shared>,
    instance: Instance,
    task: Arc<Task>,
    /// Binds tried for this instance, so a rejection moves on to another.
    tried: Vec<Id>,
    accepted: bool,
    created: Instant,
}

impl InstanceActor {
    /// Spawns the actor of a new, already stored instance. It sends nothing
    /// until the caller tells it [`DispatchInstance`], which the caller does
    /// once the instance is on disk and its slot has come.
    pub fn start(
        shared: Arc<Shared>,
        instance: Instance,
        task: Arc<Task>,
    ) -> ActorRef<InstanceActor> {
        Self::spawn_tracked(shared, instance, task, false)
    }

    /// Spawns the actor of an instance found Running after a scheduler
    /// restart; it waits for its executor to report or to be declared offline.
    // NOTE: an instance stored but never sent (the scheduler died between
    // the flush and the slot) stays Running until its executor goes offline,
    // which may be never: no message tells the scheduler that the executor
    // never received the run.
    pub async fn recover(shared: Arc<Shared>, instance: Instance, task: Arc<Task>) {
        let processor = instance.executor_processor_id;
        let instance_id = instance.id;
        Self::spawn_tracked(shared.clone(), instance, task, true);
        if let Some(actor) = processor.and_then(|id| shared.directory.processor_actor(id)) {
            let _ = actor.tell(Assign { instance_id }).await;
        }
    }

    fn spawn_tracked(
        shared: Arc<Shared>,
        instance: Instance,
        task: Arc<Task>,
        accepted: bool,
    ) -> ActorRef<InstanceActor> {
        let instance_id = instance.id;
        let tried = instance.bind_id.into_iter().collect();
        let actor = InstanceActor {
            shared: shared.clone(),
            instance,
            task,
            tried,
            accepted,
            created: Instant::now(),
        };
        let actor_ref = Self::spawn_with_mailbox(actor, kameo::mailbox::bounded(MAILBOX));
        shared
            .instances
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(instance_id, actor_ref.clone());
        actor_ref
    }

    fn run_request(&self) -> RunRequest {
        RunRequest {
            instance_id: self.instance.id,
            task_id: self.instance.task_id,
            command: self.instance.command.clone(),
            env: self.task.env.clone(),
            run_as: self.task.run_as.clone(),
            stdin: self
                .task
                .stdin
                .as_ref()
                .map(|text| text.as_bytes().to_vec()),
            timeout: self.task.timeout,
            kill_grace_ms: self.shared.settings.kill_grace.as_millis() as u64,
            output_cap: self.shared.settings.output_cap,
        }
    }

    /// Sends the run to the current processor and waits for its acceptance.
    async fn offer(&self) -> Result<(), String> {
        let Some(processor) = self
            .instance
            .executor_processor_id
            .and_then(|id| self.shared.directory.processor_actor(id))
        else {
            return Err("the processor no longer exists".into());
        };
        let (reply, answer) = oneshot::channel();
        let request = DispatchRun {
            request: self.run_request(),
            reply,
        };
        if processor.tell(request).await.is_err() {
            return Err("the processor actor stopped".into());
        }
        match tokio::time::timeout(self.shared.settings.accept_timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err("the processor dropped the run".into()),
            Err(_) => Err(format!(
                "the executor did not accept the run within {} s",
                self.shared.settings.accept_timeout.as_secs()
            )),
        }
    }

    /// Picks the next eligible bind not tried yet.
    async fn next_route(&self) -> Option<Route> {
        let group = self
            .shared
            .directory
            .routing_group(&self.task.binding_ids)?;
        let request = RouteFire {
            task_id: self.task.id,
            bind_ids: self.task.binding_ids.clone(),
            dispatch: Dispatch::Weighted,
            exclude: self.tried.clone(),
        };
        group.ask(request).await.ok()?.into_iter().next()
    }

    /// Moves the stored instance to another route.
    fn move_to(&mut self, route: &Route) {
        self.tried.push(route.bind.id);
        self.instance.bind_id = Some(route.bind.id);
        self.instance.executor_processor_id = Some(route.processor.id);
        self.instance.executor_processor_name = route.processor.name.clone();
        self.instance.executor_processor_host = route.processor.host.clone();
        let moved = self.instance.clone();
        let result = self.shared.store.update_instance(moved.id, |stored| {
            if stored.status != InstanceStatus::Running {
                return Applied::Ignored;
            }
            stored.bind_id = moved.bind_id;
            stored.executor_processor_id = moved.executor_processor_id;
            stored.executor_processor_name = moved.executor_processor_name.clone();
            stored.executor_processor_host = moved.executor_processor_host.clone();
            stored.updated_time = Utc::now();
            Applied::Changed
        });
        if let Err(error) = result {
            tracing::error!(instance.id = moved.id, %error, "failed to store the instance's new processor");
        }
    }

    async fn fail(&self, reason: String) {
        let event = InstanceEvent::Failed {
            at: Utc::now(),
            reason,
        };
        if let Err(error) = transitions::apply(&self.shared, self.instance.id, event).await {
            tracing::error!(instance.id = self.instance.id, %error, "failed to end the instance");
        }
    }

    /// Plans the retry of an ended instance with the task as it is now.
    fn schedule_retry(&self, ended: &Instance) {
        // Only an abnormal end is retried: skip reading the task for the rest.
        if plan_retry(ended, u32::MAX, 0).is_none() {
            return;
        }
        let task = match self.shared.store.get::<Task>(ended.task_id) {
            Ok(Some(task)) => task,
            Ok(None) => return,
            Err(error) => {
                tracing::error!(task.id = ended.task_id, %error, "failed to read the task for a retry");
                return;
            }
        };
        let Some(plan) = plan_retry(ended, task.retry_times, task.retry_interval) else {
            return;
        };
        let scheduler = self.shared.scheduler().clone();
        let retry = CreateRetry {
            task_id: ended.task_id,
            attempt: plan.attempt,
            due: plan.due,
            avoid_bind: ended.bind_id,
        };
        tracing::warn!(
            instance.id = ended.id,
            task.id = ended.task_id,
            attempt = plan.attempt,
            due = %plan.due,
            "instance.retry_planned"
        );
        let wait = (plan.due - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = scheduler.tell(retry).await;
        });
    }
}

impl Actor for InstanceActor {
    type Args = Self;
    type Error = Infallible;

    async fn on_start(state: Self, _actor_ref: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(state)
    }

    async fn on_stop(
        &mut self,
        _actor_ref: WeakActorRef<Self>,
        _reason: ActorStopReason,
    ) -> Result<(), Self::Error> {
        self.shared
            .instances
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&self.instance.id);
        Ok(())
    }
}

/// Sends the instance to its processor, moving on to other binds when one
/// rejects it.
pub struct DispatchInstance {
    /// Result of the flush that put the instance on disk. The instance fails
    /// without being sent when the flush failed.
    pub flushed: Result<(), String>,
}

impl Message<DispatchInstance> for InstanceActor {
    type Reply = ();

    async fn handle(&mut self, msg: DispatchInstance, _ctx: &mut Context<Self, ()>) {
        if let Err(error) = msg.flushed {
            self.fail(format!("the instance could not be stored: {error}"))
                .await;
            return;
        }
        loop {
            match self.offer().await {
                Ok(()) => {
                    self.accepted = true;
                    let latency = self.created.elapsed().as_secs_f64();
                    self.shared.metrics.dispatch_latency.observe(latency);
                    tracing::debug!(instance.id = self.instance.id, processor.id = ?self.instance.executor_processor_id, "instance.accepted");
                    return;
                }
                Err(reason) => {
                    // NOTE: when the connection drops after the executor took
                    // the run but before its acceptance arrived, the run may
                    // start on two machines. Events from the first one are
                    // ignored because they name another processor.
                    tracing::warn!(instance.id = self.instance.id, processor.id = ?self.instance.executor_processor_id, %reason, "instance.offer_failed");
                    match self.next_route().await {
                        Some(route) => self.move_to(&route),
                        None => {
                            self.fail(format!("no executor accepted the instance: {reason}"))
                                .await;
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// The instance left Running; sent by [`transitions`].
pub struct InstanceEnded {
    pub instance: Instance,
}

impl Message<InstanceEnded> for InstanceActor {
    type Reply = ();

    async fn handle(&mut self, msg: InstanceEnded, ctx: &mut Context<Self, ()>) {
        self.schedule_retry(&msg.instance);
        ctx.stop();
    }
}

/// The executor of the instance went offline.
pub struct ExecutorLost {
    pub reason: String,
}

impl Message<ExecutorLost> for InstanceActor {
    type Reply = ();

    async fn handle(&mut self, msg: ExecutorLost, _ctx: &mut Context<Self, ()>) {
        let event = InstanceEvent::Lost {
            at: Utc::now(),
            reason: msg.reason,
        };
        if let Err(error) = transitions::apply(&self.shared, self.instance.id, event).await {
            tracing::error!(instance.id = self.instance.id, %error, "failed to mark the instance lost");
        }
    }
}

/// Kills the instance on its executor.
pub struct KillInstance;

impl Message<KillInstance> for InstanceActor {
    type Reply = Result<(), String>;

    async fn handle(
        &mut self,
        _msg: KillInstance,
        _ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let processor = self
            .instance
            .executor_processor_id
            .and_then(|id| self.shared.directory.processor_actor(id));
        let sent = match processor {
            Some(actor) => actor
                .ask(SendKill {
                    instance_id: self.instance.id,
                })
                .await
                .map_err(|e| e.to_string()),
            None => Err("the processor no longer exists".to_string()),
        };
        if let Err(reason) = sent {
            // The executor cannot be reached: record the cancellation here;
            // a later report from the executor cannot override it.
            let event = InstanceEvent::Ended(Outcome {
                end: RunEnd::Killed,
                exit_code: None,
                signal: None,
                reason: Some(format!("killed while unreachable: {reason}")),
                finished_at: Utc::now(),
            });
            transitions::apply(&self.shared, self.instance.id, event)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}
