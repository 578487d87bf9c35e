//! The scheduler's actors (kameo):
//!
//! - [`scheduler::SchedulerActor`]: one; holds every enabled task's next
//!   fire time and creates instances when slots come due.
//! - [`group::GroupActor`]: one per executor group; picks binds by weight.
//! - [`processor::ProcessorActor`]: one per executor processor; owns the
//!   QUIC session to its executor and decides when it is offline.
//! - [`instance::InstanceActor`]: one per Running instance; dispatches it,
//!   reacts to the loss of its executor and plans its retry.
//!
//! Events from executors are applied to the store by the connection that
//! carries them ([`transitions`]), so an outcome is recorded even when no
//! actor of the instance is alive.

pub mod directory;
pub mod group;
pub mod instance;
pub mod processor;
pub mod scheduler;
pub mod transitions;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use kameo::actor::{ActorRef, Spawn};

use crate::domain::entities::{Id, Processor};

use crate::domain::snowflake::SnowflakeGenerator;
use crate::metrics::Metrics;
use crate::storage::Store;

pub use directory::Directory;

/// Settings the scheduler's actors share.
#[derive(Clone, Debug)]
pub struct SchedulerSettings {
    /// A processor without a heartbeat for this long is offline.
    pub offline_after: Duration,
    /// How often executors send heartbeats.
    pub heartbeat_interval: Duration,
    /// SIGTERM to SIGKILL delay on timeout or kill.
    pub kill_grace: Duration,
    /// Bytes kept per output stream of an instance.
    pub output_cap: u64,
    /// How long an executor has to accept a run before the next bind is tried.
    pub accept_timeout: Duration,
    /// Instances and output older than this are purged.
    pub retention: Duration,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        SchedulerSettings {
            offline_after: Duration::from_secs(5),
            heartbeat_interval: Duration::from_secs(1),
            kill_grace: Duration::from_secs(5),
            output_cap: 1024 * 1024,
            accept_timeout: Duration::from_secs(10),
            retention: Duration::from_secs(14 * 24 * 3600),
        }
    }
}

/// State every scheduler actor and HTTP handler reaches: the store, the
/// in-memory directory of binds and processors, the actor registries.
pub struct Shared {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub settings: SchedulerSettings,
    pub directory: Directory,
    pub ids: Mutex<SnowflakeGenerator>,
    pub scheduler: OnceLock<ActorRef<scheduler::SchedulerActor>>,
    /// Live instance actors by instance id.
    pub instances: RwLock<HashMap<u64, ActorRef<instance::InstanceActor>>>,
    /// The node's main runtime. Long-lived actors are spawned here, never on
    /// an HTTP worker's runtime, which ends with its worker.
    pub runtime: tokio::runtime::Handle,
}

impl Shared {
    pub fn scheduler(&self) -> &ActorRef<scheduler::SchedulerActor> {
        self.scheduler
            .get()
            .expect("the scheduler actor is set before anything sends to it")
    }

    /// Returns the next instance id for a processor's machine id.
    pub fn next_instance_id(&self, machine_id: u16) -> u64 {
        let now = chrono::Utc::now().timestamp_millis();
        self.ids
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .next_id(machine_id, now)
    }

    /// Spawns the actor of a processor and lists it in the directory.
    pub fn register_processor(self: &Arc<Self>, record: Processor) {
        if self.directory.processor_actor(record.id).is_some() {
            self.directory.update_processor(record);
            return;
        }
        let _runtime = self.runtime.enter();
        let actor = processor::ProcessorActor::spawn(processor::ProcessorActor::new(
            record.id,
            self.clone(),
        ));
        self.directory.put_processor(record, actor);
    }

    /// Spawns the actor of a group unless it exists.
    pub fn register_group(self: &Arc<Self>, group_id: Id) {
        if self.directory.group(group_id).is_some() {
            return;
        }
        let _runtime = self.runtime.enter();
        let actor = group::GroupActor::spawn(group::GroupActor::new(group_id, self.clone()));
        self.directory.put_group(group_id, actor);
    }

    pub fn instance_actor(&self, id: u64) -> Option<ActorRef<instance::InstanceActor>> {
        self.instances
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&id)
            .cloned()
    }
}
