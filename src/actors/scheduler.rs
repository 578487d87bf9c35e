//! The scheduler actor: the next fire time of every enabled task in a
//! binary heap (O(log n) per fire), and the creation of instances when slots
//! come due, on manual runs and on retries.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use chrono::{DateTime, Duration, Utc};
use kameo::Actor;
use kameo::actor::{ActorRef, Spawn};
use kameo::message::{Context, Message};
use tokio::sync::Notify;

use super::Shared;
use super::directory::Route;
use super::group::RouteFire;
use super::instance::InstanceActor;
use crate::domain::entities::{Dispatch, Id, Instance, InstanceStatus, Task, TaskStatus, Trigger};
use crate::domain::lifecycle::{admits_another, consume_fire, plan_fire};
use crate::domain::schedule::Schedule;
use crate::domain::validation::parse_schedule;
use crate::storage::{EncodedTask, FireRecord, StoreError, TaskState};

mod load;

/// Maximum wait between ticks, so a clock step is noticed.
const MAX_SLEEP: std::time::Duration = std::time::Duration::from_secs(30);
/// Mailbox size: API calls and instance ends queue here during a busy tick.
const MAILBOX: usize = 4096;

struct Entry {
    /// The task in its stored encoding, decoded when it fires. Keeping it
    /// decoded cost about 430 more resident bytes per task in
    /// `delicate bench scale` at 200k tasks.
    task: EncodedTask,
    misfire_grace: u64,
    schedule: Schedule,
    next: Option<DateTime<Utc>>,
    /// Identifies the heap entry that is current for this task; older
    /// entries are skipped when they surface.
    generation: u64,
    state: TaskState,
    /// True until the first plan after a start: due slots were missed while down.
    recovering: bool,
}

pub struct SchedulerActor {
    shared: Arc<Shared>,
    /// Boxed because the map keeps up to twice as many buckets as entries
    /// after it grows, and an inline entry is a few hundred bytes: with a
    /// million tasks boxing cut the resident memory from 1,188 to 1,008 MiB
    /// (`delicate bench scale`).
    tasks: HashMap<Id, Box<Entry>>,
    queue: BinaryHeap<Reverse<(DateTime<Utc>, Id, u64)>>,
    running: HashMap<Id, u32>,
    generation: u64,
    wake: Arc<Notify>,
    /// Ids of the tasks put or removed while the start-up load runs, whose
    /// copy in a later load chunk is older and is dropped. `None` once every
    /// stored task is loaded.
    changed_during_load: Option<HashSet<Id>>,
}

/// Reason a manual run or retry created no instance.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("task {0} not found")]
    TaskNotFound(Id),
    #[error(
        "task {task_id} already has {running} running instances, its maximum_parallel_runnable_num"
    )]
    AtLimit { task_id: Id, running: u32 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SchedulerActor {
    /// Counts the running instances, spawns the actor and its ticker, and
    /// starts loading the enabled tasks in the background (see [`load`]),
    /// so tasks loaded early fire while later ones are still being read.
    pub fn start(shared: Arc<Shared>) -> Result<ActorRef<SchedulerActor>, StoreError> {
        let mut actor = SchedulerActor {
            shared: shared.clone(),
            tasks: HashMap::new(),
            queue: BinaryHeap::new(),
            running: HashMap::new(),
            generation: 0,
            wake: Arc::new(Notify::new()),
            changed_during_load: Some(HashSet::new()),
        };
        for instance in shared.store.running_instances()? {
            *actor.running.entry(instance.task_id).or_default() += 1;
        }
        let running_total: u32 = actor.running.values().sum();
        shared
            .metrics
            .instances_running
            .store(i64::from(running_total), Relaxed);

        shared.metrics.scheduler_loading.store(1, Relaxed);
        let wake = actor.wake.clone();
        let actor_ref = SchedulerActor::spawn_with_mailbox(actor, kameo::mailbox::bounded(MAILBOX));
        tokio::spawn(tick_loop(actor_ref.clone(), wake, shared.clone()));
        load::spawn(actor_ref.clone(), shared);
        Ok(actor_ref)
    }

    /// Adds an enabled task, parsing its schedule.
    fn insert(&mut self, task: Task, state: TaskState, recovering: bool) {
        let schedule = match parse_schedule(&task, task.schedule_anchor) {
            Ok(schedule) => schedule,
            Err(error) => {
                tracing::error!(task.id = task.id, %error, "stored task has an invalid schedule; it will not fire");
                return;
            }
        };
        let next = first_slot(&task, &schedule, &state);
        self.insert_parsed(task, schedule, next, state, recovering);
    }

    fn insert_parsed(
        &mut self,
        task: Task,
        schedule: Schedule,
        next: Option<DateTime<Utc>>,
        state: TaskState,
        recovering: bool,
    ) {
        self.generation += 1;
        if let Some(at) = next {
            self.queue.push(Reverse((at, task.id, self.generation)));
        }
        let id = task.id;
        let entry = Entry {
            task: EncodedTask::new(&task),
            misfire_grace: task.misfire_grace,
            schedule,
            next,
            generation: self.generation,
            state,
            recovering,
        };
        self.tasks.insert(id, Box::new(entry));
    }

    /// Returns when the ticker must wake next: the earliest queued slot.
    fn earliest_slot(&self) -> Option<DateTime<Utc>> {
        self.queue.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Wakes the ticker when the earliest queued slot moved before
    /// `earliest_before`. The ticker already wakes at every later slot, so a
    /// task created for later costs no tick.
    fn wake_if_earlier(&self, earliest_before: Option<DateTime<Utc>>) {
        let earliest = self.earliest_slot();
        let moved_earlier = match (earliest, earliest_before) {
            (Some(now_first), Some(before)) => now_first < before,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if moved_earlier {
            self.wake.notify_one();
        }
    }

    /// Fires every task whose slot is due and returns when to tick next.
    async fn fire_due(&mut self) -> DateTime<Utc> {
        let now = Utc::now();
        while let Some(Reverse((at, task_id, generation))) = self.queue.peek().copied() {
            if at > now {
                break;
            }
            self.queue.pop();
            let current = self
                .tasks
                .get(&task_id)
                .is_some_and(|e| e.generation == generation);
            if current && let Err(error) = self.fire_task(task_id, now).await {
                tracing::error!(task.id = task_id, %error, "scheduler.fire failed");
            }
        }
        let next = self.queue.peek().map(|Reverse((at, _, _))| *at);
        let latest = now + Duration::from_std(MAX_SLEEP).expect("30 s fits");
        next.map_or(latest, |at| at.min(latest))
    }

    async fn fire_task(&mut self, task_id: Id, now: DateTime<Utc>) -> Result<(), StoreError> {
        let Some(entry) = self.tasks.get_mut(&task_id) else {
            return Ok(());
        };
        let Some(due) = entry.next else { return Ok(()) };
        let grace = Duration::seconds(entry.misfire_grace as i64);
        let plan = plan_fire(&entry.schedule, due, now, grace, entry.recovering);
        entry.recovering = false;
        entry.next = plan.next;
        if let Some(at) = plan.next {
            self.queue.push(Reverse((at, task_id, entry.generation)));
        }

        let task = Arc::new(entry.task.decode(task_id)?);
        let mut state = entry.state.clone();
        if plan.missed > 0 {
            state.missed += plan.missed;
            self.shared
                .metrics
                .fires_missed
                .fetch_add(plan.missed, Relaxed);
            tracing::warn!(
                task.id = task_id,
                missed = plan.missed,
                "scheduler.slots_missed"
            );
        }
        let Some((slot, trigger)) = plan.fire else {
            state.last_slot = Some(now);
            return self.save_state(task_id, state);
        };
        state.last_slot = Some(slot);

        let running = self.running.get(&task_id).copied().unwrap_or(0);
        if !admits_another(running, task.maximum_parallel_runnable_num) {
            state.skipped += 1;
            self.shared.metrics.fires_skipped.fetch_add(1, Relaxed);
            tracing::info!(task.id = task_id, %slot, running, "scheduler.fire_skipped");
            return self.save_state(task_id, state);
        }

        if trigger == Trigger::Cron {
            let lateness = (now - slot).to_std().unwrap_or_default().as_secs_f64();
            self.shared.metrics.fire_lateness.observe(lateness);
        }
        let routes = self.route(&task, task.dispatch, &[]).await;
        let instances = self.build_instances(&task, &routes, slot, trigger, 1, now);

        let (remaining, used_up) = consume_fire(task.frequency, task.remaining_count);
        let updated_task = (task.remaining_count != remaining).then(|| {
            let mut changed = (*task).clone();
            changed.remaining_count = remaining;
            if used_up {
                changed.status = TaskStatus::Disabled;
            }
            changed
        });
        let record = FireRecord {
            task_id,
            slot: Some(slot),
            per_processor: task.dispatch == Dispatch::Broadcast,
            instances: &instances,
            state: Some(&state),
            task: updated_task.as_ref(),
        };
        if !self.shared.store.record_fire(&record)? {
            tracing::warn!(task.id = task_id, %slot, "scheduler.slot_already_fired");
            return Ok(());
        }
        self.shared.metrics.fires.fetch_add(1, Relaxed);
        if let Some(entry) = self.tasks.get_mut(&task_id) {
            entry.state = state;
        }
        let task = match updated_task {
            Some(_) if used_up => {
                tracing::info!(task.id = task_id, "scheduler.task_used_up");
                self.tasks.remove(&task_id);
                task
            }
            Some(changed) => {
                if let Some(entry) = self.tasks.get_mut(&task_id) {
                    entry.task = EncodedTask::new(&changed);
                }
                Arc::new(changed)
            }
            None => task,
        };
        self.launch(instances, task).await;
        Ok(())
    }

    fn save_state(&mut self, task_id: Id, state: TaskState) -> Result<(), StoreError> {
        self.shared.store.set_task_state(task_id, &state)?;
        if let Some(entry) = self.tasks.get_mut(&task_id) {
            entry.state = state;
        }
        Ok(())
    }

    /// Asks the task's routing group where its instances go.
    async fn route(&self, task: &Task, dispatch: Dispatch, exclude: &[Id]) -> Vec<Route> {
        let Some(group) = self.shared.directory.routing_group(&task.binding_ids) else {
            return Vec::new();
        };
        let request = RouteFire {
            task_id: task.id,
            bind_ids: task.binding_ids.clone(),
            dispatch,
            exclude: exclude.to_vec(),
        };
        group.ask(request).await.unwrap_or_default()
    }

    /// Builds one instance per route. With no route it builds one instance
    /// that records that no executor was online.
    fn build_instances(
        &self,
        task: &Task,
        routes: &[Route],
        scheduled: DateTime<Utc>,
        trigger: Trigger,
        attempt: u32,
        now: DateTime<Utc>,
    ) -> Vec<Instance> {
        if routes.is_empty() {
            let mut instance = self.snapshot(task, None, scheduled, trigger, attempt, now);
            instance.status = InstanceStatus::AbnormalEnding;
            instance.finished_time = Some(now);
            instance.reason = Some("no executor online".to_string());
            return vec![instance];
        }
        routes
            .iter()
            .map(|route| self.snapshot(task, Some(route), scheduled, trigger, attempt, now))
            .collect()
    }

    fn snapshot(
        &self,
        task: &Task,
        route: Option<&Route>,
        scheduled_time: DateTime<Utc>,
        trigger: Trigger,
        attempt: u32,
        now: DateTime<Utc>,
    ) -> Instance {
        let machine_id = route.map_or(0, |r| r.processor.machine_id);
        Instance {
            id: self.shared.next_instance_id(machine_id),
            task_id: task.id,
            name: task.name.clone(),
            description: task.description.clone(),
            command: task.command.clone(),
            frequency: task.frequency,
            cron_expression: task.cron_expression.clone(),
            maximum_parallel_runnable_num: task.maximum_parallel_runnable_num,
            tag: task.tag.clone(),
            status: InstanceStatus::Running,
            created_time: now,
            updated_time: now,
            executor_processor_id: route.map(|r| r.processor.id),
            executor_processor_name: route.map(|r| r.processor.name.clone()).unwrap_or_default(),
            executor_processor_host: route.map(|r| r.processor.host.clone()).unwrap_or_default(),
            bind_id: route.map(|r| r.bind.id),
            scheduled_time,
            trigger,
            attempt,
            started_time: None,
            finished_time: None,
            exit_code: None,
            signal: None,
            reason: None,
        }
    }

    /// Counts the stored instances and starts the actors of the Running ones.
    async fn launch(&mut self, instances: Vec<Instance>, task: Arc<Task>) {
        for instance in instances {
            self.shared
                .metrics
                .instance_created(instance.trigger, instance.status);
            // Debug, not info: at a thousand fires per second one line per
            // instance costs more scheduler CPU than the fire itself.
            tracing::debug!(
                instance.id = instance.id,
                task.id = instance.task_id,
                trigger = ?instance.trigger,
                processor.id = ?instance.executor_processor_id,
                status = instance.status.name(),
                "instance.created"
            );
            if instance.status == InstanceStatus::Running {
                *self.running.entry(instance.task_id).or_default() += 1;
                InstanceActor::start(self.shared.clone(), instance, task.clone()).await;
            }
        }
    }

    /// Creates instances outside the cron slots: manual runs and retries.
    async fn create_unslotted(
        &mut self,
        task_id: Id,
        trigger: Trigger,
        attempt: u32,
        scheduled: DateTime<Utc>,
        avoid_bind: Option<Id>,
    ) -> Result<Vec<Instance>, RunError> {
        let task = self
            .shared
            .store
            .get::<Task>(task_id)?
            .ok_or(RunError::TaskNotFound(task_id))?;
        let running = self.running.get(&task_id).copied().unwrap_or(0);
        if !admits_another(running, task.maximum_parallel_runnable_num) {
            return Err(RunError::AtLimit { task_id, running });
        }
        let exclude: Vec<Id> = avoid_bind.into_iter().collect();
        let dispatch = if trigger == Trigger::Retry {
            Dispatch::Weighted
        } else {
            task.dispatch
        };
        let mut routes = self.route(&task, dispatch, &exclude).await;
        if routes.is_empty() && !exclude.is_empty() {
            routes = self.route(&task, dispatch, &[]).await;
        }
        let now = Utc::now();
        let instances = self.build_instances(&task, &routes, scheduled, trigger, attempt, now);
        let record = FireRecord {
            task_id,
            slot: None,
            per_processor: false,
            instances: &instances,
            state: None,
            task: None,
        };
        self.shared.store.record_fire(&record)?;
        self.launch(instances.clone(), Arc::new(task)).await;
        Ok(instances)
    }
}

impl Actor for SchedulerActor {
    type Args = Self;
    type Error = kameo::error::Infallible;

    async fn on_start(state: Self, _actor_ref: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(state)
    }
}

/// Returns a task's first slot: the first after its last recorded slot, or
/// after the task was last saved when that is later.
fn first_slot(task: &Task, schedule: &Schedule, state: &TaskState) -> Option<DateTime<Utc>> {
    let after = state
        .last_slot
        .unwrap_or(task.updated_time)
        .max(task.updated_time);
    schedule.next_after(after).ok().flatten()
}

/// Maximum wait after a start for the executors of bound processors to
/// rejoin, so catch-up fires find them online.
const REJOIN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

async fn tick_loop(actor: ActorRef<SchedulerActor>, wake: Arc<Notify>, shared: Arc<Shared>) {
    let deadline = tokio::time::Instant::now() + REJOIN_GRACE;
    while !shared.directory.bound_processors_online() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    loop {
        let Ok(NextTick(next)) = actor.ask(Tick).await else {
            tracing::debug!("scheduler actor stopped; ticker ends");
            return;
        };
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = wake.notified() => {}
        }
    }
}

/// Fires what is due; returns when the next slot comes.
struct Tick;

/// When the ticker should wake next.
#[derive(kameo::Reply)]
struct NextTick(DateTime<Utc>);

impl Message<Tick> for SchedulerActor {
    type Reply = NextTick;

    async fn handle(&mut self, _msg: Tick, _ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        NextTick(self.fire_due().await)
    }
}

/// A task was created or changed: reschedule it from now on.
pub struct PutTask(pub Task);

impl Message<PutTask> for SchedulerActor {
    type Reply = ();

    async fn handle(&mut self, msg: PutTask, _ctx: &mut Context<Self, ()>) {
        let task = msg.0;
        if let Some(changed) = &mut self.changed_during_load {
            changed.insert(task.id);
        }
        let earliest_before = self.earliest_slot();
        let state = self.tasks.remove(&task.id).map(|e| e.state);
        if task.status == TaskStatus::Enabled {
            let state = match state {
                Some(state) => state,
                None => self.shared.store.task_state(task.id).unwrap_or_default(),
            };
            self.insert(task, state, false);
        }
        self.wake_if_earlier(earliest_before);
    }
}

/// A task was deleted: no further fires.
pub struct RemoveTask(pub Id);

impl Message<RemoveTask> for SchedulerActor {
    type Reply = ();

    async fn handle(&mut self, msg: RemoveTask, _ctx: &mut Context<Self, ()>) {
        if let Some(changed) = &mut self.changed_during_load {
            changed.insert(msg.0);
        }
        self.tasks.remove(&msg.0);
    }
}

/// Runs a task now, outside its schedule.
pub struct RunNow {
    pub task_id: Id,
}

impl Message<RunNow> for SchedulerActor {
    type Reply = Result<Vec<Instance>, RunError>;

    async fn handle(&mut self, msg: RunNow, _ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        self.create_unslotted(msg.task_id, Trigger::Manual, 1, Utc::now(), None)
            .await
    }
}

/// Creates the next attempt of an instance that ended abnormally.
pub struct CreateRetry {
    pub task_id: Id,
    pub attempt: u32,
    pub due: DateTime<Utc>,
    pub avoid_bind: Option<Id>,
}

impl Message<CreateRetry> for SchedulerActor {
    type Reply = ();

    async fn handle(&mut self, msg: CreateRetry, _ctx: &mut Context<Self, ()>) {
        let result = self
            .create_unslotted(
                msg.task_id,
                Trigger::Retry,
                msg.attempt,
                msg.due,
                msg.avoid_bind,
            )
            .await;
        if let Err(error) = result {
            if matches!(error, RunError::AtLimit { .. }) {
                self.shared.metrics.fires_skipped.fetch_add(1, Relaxed);
            }
            tracing::warn!(task.id = msg.task_id, attempt = msg.attempt, %error, "scheduler.retry_not_created");
        }
    }
}

/// An instance of the task left Running.
pub struct RunningEnded {
    pub task_id: Id,
}

impl Message<RunningEnded> for SchedulerActor {
    type Reply = ();

    async fn handle(&mut self, msg: RunningEnded, _ctx: &mut Context<Self, ()>) {
        if let Some(count) = self.running.get_mut(&msg.task_id) {
            *count = count.saturating_sub(1);
        }
    }
}

/// Counts of the scheduler's own state, for health and benchmarks.
pub struct SchedulerStats;

#[derive(Clone, Debug, serde::Serialize, kameo::Reply)]
pub struct SchedulerFigures {
    pub scheduled_tasks: usize,
    pub running_instances: u32,
    /// True while the start-up load is still reading stored tasks.
    pub loading: bool,
}

impl Message<SchedulerStats> for SchedulerActor {
    type Reply = SchedulerFigures;

    async fn handle(
        &mut self,
        _msg: SchedulerStats,
        _ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        SchedulerFigures {
            scheduled_tasks: self.tasks.len(),
            running_instances: self.running.values().sum(),
            loading: self.changed_during_load.is_some(),
        }
    }
}
