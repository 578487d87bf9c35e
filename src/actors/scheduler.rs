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
use super::group::{GroupActor, RouteFire, RouteFires};
use super::instance::{DispatchInstance, InstanceActor};
use crate::domain::entities::{Dispatch, Id, Instance, InstanceStatus, Task, TaskStatus, Trigger};
use crate::domain::lifecycle::{admits_another, consume_fire, plan_fire};
use crate::domain::schedule::Schedule;
use crate::domain::validation::parse_schedule;
use crate::storage::{EncodedTask, FireRecord, StoreError, TaskState};

mod load;

/// How long before its slot a fire is planned, stored and flushed, so that
/// the store's work does not make it late. Its instances are sent at the
/// slot, never before.
const PREPARE_AHEAD: std::time::Duration = std::time::Duration::from_millis(50);
/// Maximum wait between ticks, so a clock step is noticed.
const MAX_SLEEP: std::time::Duration = std::time::Duration::from_secs(30);
/// Mailbox size: API calls and instance ends queue here during a busy tick.
const MAILBOX: usize = 4096;

fn prepare_ahead() -> Duration {
    Duration::from_std(PREPARE_AHEAD).expect("50 ms fits")
}

/// A due task's fire within a batch, from its plan to its stored instances.
struct PlannedFire {
    task: Arc<Task>,
    /// The fire state to store with the fire.
    state: TaskState,
    /// The slot to fire; `None` when only the fire state changes (slots
    /// missed, the fire skipped at the concurrency limit).
    fire: Option<SlotFire>,
    routes: Vec<Route>,
    instances: Vec<Instance>,
    /// The task with its remaining count lowered, when its frequency counts.
    updated_task: Option<Task>,
    /// True when this fire used up the task's count, which disables it.
    used_up: bool,
}

struct SlotFire {
    slot: DateTime<Utc>,
    trigger: Trigger,
}

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
        "task {task_id} is at its maximum_parallel_runnable_num with {running} running: wait for a run to end, or raise the limit"
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

    /// Fires every task whose slot comes within [`PREPARE_AHEAD`] as one
    /// batch, and returns when to tick next.
    async fn fire_due(&mut self) -> DateTime<Utc> {
        let now = Utc::now();
        let horizon = now + prepare_ahead();
        let mut due = Vec::new();
        while let Some(Reverse((at, task_id, generation))) = self.queue.peek().copied() {
            if at > horizon {
                break;
            }
            self.queue.pop();
            let current = self
                .tasks
                .get(&task_id)
                .is_some_and(|e| e.generation == generation);
            if current {
                due.push(task_id);
            }
        }
        if !due.is_empty() {
            self.fire_batch(&due, now).await;
        }
        let next = self
            .queue
            .peek()
            .map(|Reverse((at, _, _))| *at - prepare_ahead());
        let latest = now + Duration::from_std(MAX_SLEEP).expect("30 s fits");
        next.map_or(latest, |at| at.min(latest))
    }

    /// Plans, routes, stores and launches the fires of one tick: one
    /// routing round trip per group, one store transaction, one flush.
    async fn fire_batch(&mut self, due: &[Id], now: DateTime<Utc>) {
        let mut fires = Vec::with_capacity(due.len());
        let mut requeue = Vec::with_capacity(due.len());
        for &task_id in due {
            if let Some(fire) = self.plan_task(task_id, now, &mut requeue) {
                fires.push(fire);
            }
        }
        // Pushed after planning, so a task whose next slot also lies within
        // the horizon fires it in the next tick and not twice in this batch.
        for entry in requeue {
            self.queue.push(Reverse(entry));
        }
        self.route_batch(&mut fires).await;

        let mut slot_start = None;
        for fire in &mut fires {
            if let Some(plan) = &fire.fire {
                fire.instances =
                    self.build_instances(&fire.task, &fire.routes, plan.slot, plan.trigger, 1, now);
                slot_start = slot_start.max(Some(plan.slot));
            }
        }
        let records: Vec<FireRecord<'_>> = fires
            .iter()
            .map(|fire| FireRecord {
                task_id: fire.task.id,
                slot: fire.fire.as_ref().map(|plan| plan.slot),
                per_processor: fire.task.dispatch == Dispatch::Broadcast,
                instances: &fire.instances,
                state: Some(&fire.state),
                task: fire.updated_task.as_ref(),
            })
            .collect();
        // After a failed write only the fires stored before it are applied
        // and launched: `zip` below stops at the end of `stored`.
        let stored = match self.shared.store.record_fires(&records) {
            Ok(stored) => stored,
            Err(failed) => {
                tracing::error!(
                    fires = fires.len(),
                    stored = failed.stored.iter().filter(|stored| **stored).count(),
                    error = %failed.error,
                    "scheduler.fire failed: the tick's remaining fires are dropped"
                );
                failed.stored
            }
        };
        drop(records);

        let mut launches = Vec::new();
        for (fire, stored) in fires.into_iter().zip(stored) {
            if let Some(launch) = self.apply_stored_fire(fire, stored, now) {
                launches.push(launch);
            }
        }
        // A batch prepared ahead of its slot is sent at the slot: the latest
        // slot of the batch, which is never more than `PREPARE_AHEAD` away.
        self.launch(launches, slot_start.filter(|at| *at > now));
    }

    /// Advances a due task to its next slot and decides what its fire
    /// stores: only the fire state (missed, skipped, nothing to fire) or
    /// also instances, which [`Self::route_batch`] then routes. A slot up to
    /// `PREPARE_AHEAD` after `now` is planned as if it had come.
    fn plan_task(
        &mut self,
        task_id: Id,
        now: DateTime<Utc>,
        requeue: &mut Vec<(DateTime<Utc>, Id, u64)>,
    ) -> Option<PlannedFire> {
        let entry = self.tasks.get_mut(&task_id)?;
        let due = entry.next?;
        let grace = Duration::seconds(entry.misfire_grace as i64);
        let plan = plan_fire(&entry.schedule, due, now.max(due), grace, entry.recovering);
        entry.recovering = false;
        entry.next = plan.next;
        if let Some(at) = plan.next {
            requeue.push((at, task_id, entry.generation));
        }

        let task = match entry.task.decode(task_id) {
            Ok(task) => Arc::new(task),
            Err(error) => {
                tracing::error!(task.id = task_id, %error, "scheduler.fire failed: the task in memory does not decode");
                return None;
            }
        };
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
        let mut planned = PlannedFire {
            task,
            state,
            fire: None,
            routes: Vec::new(),
            instances: Vec::new(),
            updated_task: None,
            used_up: false,
        };
        let Some((slot, trigger)) = plan.fire else {
            planned.state.last_slot = Some(now);
            return Some(planned);
        };
        planned.state.last_slot = Some(slot);

        let running = self.running.get(&task_id).copied().unwrap_or(0);
        if !admits_another(running, planned.task.maximum_parallel_runnable_num) {
            planned.state.skipped += 1;
            self.shared.metrics.fires_skipped.fetch_add(1, Relaxed);
            // Debug: a busy task skips a fire every slot, and
            // `delicate_fires_skipped_total` counts them.
            tracing::debug!(task.id = task_id, %slot, running, "scheduler.fire_skipped");
            return Some(planned);
        }

        if trigger == Trigger::Cron {
            let lateness = (now - slot).to_std().unwrap_or_default().as_secs_f64();
            self.shared.metrics.fire_lateness.observe(lateness);
        }
        let task = &planned.task;
        let (remaining, used_up) = consume_fire(task.frequency, task.remaining_count);
        planned.updated_task = (task.remaining_count != remaining).then(|| {
            let mut changed = (**task).clone();
            changed.remaining_count = remaining;
            if used_up {
                changed.status = TaskStatus::Disabled;
            }
            changed
        });
        planned.used_up = used_up;
        planned.fire = Some(SlotFire { slot, trigger });
        Some(planned)
    }

    /// Fills in the routes of every planned fire, asking each routing group
    /// once for all the fires it routes.
    async fn route_batch(&self, fires: &mut [PlannedFire]) {
        let mut by_group: HashMap<Id, (ActorRef<GroupActor>, Vec<usize>)> = HashMap::new();
        for (index, fire) in fires.iter().enumerate() {
            if fire.fire.is_none() {
                continue;
            }
            let Some((group_id, group)) = self
                .shared
                .directory
                .routing_group_with_id(&fire.task.binding_ids)
            else {
                continue;
            };
            by_group
                .entry(group_id)
                .or_insert_with(|| (group, Vec::new()))
                .1
                .push(index);
        }
        for (_, (group, indexes)) in by_group {
            let requests = indexes
                .iter()
                .map(|&index| {
                    let task = &fires[index].task;
                    RouteFire {
                        task_id: task.id,
                        bind_ids: task.binding_ids.clone(),
                        dispatch: task.dispatch,
                        exclude: Vec::new(),
                    }
                })
                .collect();
            // A stopped group actor routes nothing: the fires record that
            // no executor was online, as a single fire would.
            let routes = group.ask(RouteFires(requests)).await.unwrap_or_default();
            for (index, routes) in indexes.into_iter().zip(routes) {
                fires[index].routes = routes;
            }
        }
    }

    /// Takes a stored fire into the in-memory state. Returns the instances
    /// to launch, or `None` when the fire stored none or the slot already
    /// had an instance.
    fn apply_stored_fire(
        &mut self,
        fire: PlannedFire,
        stored: bool,
        now: DateTime<Utc>,
    ) -> Option<(Vec<Instance>, Arc<Task>)> {
        let task_id = fire.task.id;
        if !stored {
            let slot = fire.fire.as_ref().map_or(now, |plan| plan.slot);
            tracing::warn!(task.id = task_id, %slot, "scheduler.slot_already_fired");
            return None;
        }
        if let Some(entry) = self.tasks.get_mut(&task_id) {
            entry.state = fire.state;
        }
        fire.fire.as_ref()?;
        self.shared.metrics.fires.fetch_add(1, Relaxed);
        let task = match fire.updated_task {
            Some(_) if fire.used_up => {
                tracing::info!(task.id = task_id, "scheduler.task_used_up");
                self.tasks.remove(&task_id);
                fire.task
            }
            Some(changed) => {
                if let Some(entry) = self.tasks.get_mut(&task_id) {
                    entry.task = EncodedTask::new(&changed);
                }
                Arc::new(changed)
            }
            None => fire.task,
        };
        Some((fire.instances, task))
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

    /// Counts the stored instances and starts the actors of the Running
    /// ones. One flush covers them all, and they are sent once it is done
    /// and `not_before` has come.
    fn launch(
        &mut self,
        launches: Vec<(Vec<Instance>, Arc<Task>)>,
        not_before: Option<DateTime<Utc>>,
    ) {
        let mut actors = Vec::new();
        for (instances, task) in launches {
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
                    actors.push(InstanceActor::start(
                        self.shared.clone(),
                        instance,
                        task.clone(),
                    ));
                }
            }
        }
        if actors.is_empty() {
            return;
        }
        let store = self.shared.store.clone();
        tokio::spawn(async move {
            let flushed = store.durable().await.map_err(|error| error.to_string());
            if flushed.is_ok()
                && let Some(at) = not_before
                && let Ok(wait) = (at - Utc::now()).to_std()
            {
                tokio::time::sleep(wait).await;
            }
            for actor in actors {
                let message = DispatchInstance {
                    flushed: flushed.clone(),
                };
                let _ = actor.tell(message).await;
            }
        });
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
        self.launch(vec![(instances.clone(), Arc::new(task))], None);
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
