//! The start-up load: a blocking thread scans the stored tasks with their
//! fire states, parses the enabled ones and hands them to the actor in
//! chunks. The ticker runs meanwhile, so a task fires as soon as its chunk is
//! in. A loaded task is marked `recovering`, so a slot that passed before or
//! during the load follows the misfire rule of `plan_fire` like any slot
//! missed while the scheduler was down.

use std::future::IntoFuture;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use kameo::actor::ActorRef;
use kameo::message::{Context, Message};

use super::{SchedulerActor, first_slot};
use crate::actors::Shared;
use crate::domain::entities::{Task, TaskStatus};
use crate::domain::schedule::Schedule;
use crate::domain::validation::parse_schedule;
use crate::storage::{StoreError, TaskState};

/// Tasks per chunk, small so that a tick queued behind a chunk waits only
/// for the heap and map inserts of 1,000 tasks (estimated at a millisecond).
const CHUNK: usize = 1000;

/// A stored enabled task with its parsed schedule and first slot.
pub(super) struct LoadedTask {
    task: Task,
    schedule: Schedule,
    next: Option<chrono::DateTime<chrono::Utc>>,
    state: TaskState,
}

/// Starts the loader thread.
pub(super) fn spawn(actor: ActorRef<SchedulerActor>, shared: Arc<Shared>) {
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || load(&actor, &shared, &runtime));
}

fn load(actor: &ActorRef<SchedulerActor>, shared: &Shared, runtime: &tokio::runtime::Handle) {
    let began = Instant::now();
    let mut loaded = 0usize;
    let mut unreadable = 0usize;
    let mut chunk = Vec::with_capacity(CHUNK);
    for item in shared.store.tasks_with_state() {
        let (task, state) = match item {
            Ok(pair) => pair,
            Err(error @ StoreError::Corrupt { .. }) => {
                unreadable += 1;
                tracing::error!(%error, "scheduler.load: a stored task is unreadable; it will not fire");
                continue;
            }
            Err(error) => {
                tracing::error!(
                    %error,
                    loaded,
                    "scheduler.load_failed: the tasks not loaded yet will not fire until a restart"
                );
                break;
            }
        };
        if task.status != TaskStatus::Enabled {
            continue;
        }
        let Some(prepared) = prepare(task, state) else {
            continue;
        };
        chunk.push(prepared);
        if chunk.len() == CHUNK {
            loaded += chunk.len();
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
            if runtime
                .block_on(actor.ask(LoadChunk(full)).into_future())
                .is_err()
            {
                tracing::debug!("scheduler actor stopped; the task load ends");
                return;
            }
        }
    }
    loaded += chunk.len();
    let done = LoadDone {
        chunk,
        loaded,
        unreadable,
        began,
    };
    if runtime.block_on(actor.ask(done).into_future()).is_err() {
        tracing::debug!("scheduler actor stopped; the task load ends");
    }
    release_free_memory();
}

/// Returns the heap pages freed during the load (decode buffers, sled's
/// read copies, spent chunks) to the kernel, which glibc keeps otherwise.
/// It saved about 4 MiB of resident memory at 200k tasks.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own free lists; it has no
    // preconditions on the caller.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Parses a task's schedule and finds its first slot, off the actor.
fn prepare(task: Task, state: TaskState) -> Option<LoadedTask> {
    let schedule = match parse_schedule(&task, task.schedule_anchor) {
        Ok(schedule) => schedule,
        Err(error) => {
            tracing::error!(task.id = task.id, %error, "stored task has an invalid schedule; it will not fire");
            return None;
        }
    };
    let next = first_slot(&task, &schedule, &state);
    Some(LoadedTask {
        task,
        schedule,
        next,
        state,
    })
}

impl SchedulerActor {
    /// Inserts loaded tasks, except those the API put or removed since the
    /// load began, and wakes the ticker when one is due before its next tick.
    fn insert_loaded(&mut self, chunk: Vec<LoadedTask>) {
        let earliest_before = self.earliest_slot();
        for loaded in chunk {
            let changed = self
                .changed_during_load
                .as_ref()
                .is_some_and(|changed| changed.contains(&loaded.task.id));
            if changed {
                continue;
            }
            self.insert_parsed(
                loaded.task,
                loaded.schedule,
                loaded.next,
                loaded.state,
                true,
            );
        }
        self.wake_if_earlier(earliest_before);
    }
}

/// A chunk of loaded tasks.
pub(super) struct LoadChunk(Vec<LoadedTask>);

impl Message<LoadChunk> for SchedulerActor {
    type Reply = ();

    async fn handle(&mut self, msg: LoadChunk, _ctx: &mut Context<Self, ()>) {
        self.insert_loaded(msg.0);
    }
}

/// The last chunk: every stored task was read.
pub(super) struct LoadDone {
    chunk: Vec<LoadedTask>,
    loaded: usize,
    unreadable: usize,
    began: Instant,
}

impl Message<LoadDone> for SchedulerActor {
    type Reply = ();

    async fn handle(&mut self, msg: LoadDone, _ctx: &mut Context<Self, ()>) {
        self.insert_loaded(msg.chunk);
        self.changed_during_load = None;
        self.shared.metrics.scheduler_loading.store(0, Relaxed);
        tracing::info!(
            loaded = msg.loaded,
            unreadable = msg.unreadable,
            scheduled = self.tasks.len(),
            running = self.running.values().sum::<u32>(),
            elapsed_ms = msg.began.elapsed().as_millis() as u64,
            "scheduler.loaded"
        );
    }
}
