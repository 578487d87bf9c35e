//! In-memory copy of the binds and processors the router reads on every
//! fire, with each processor's live figures and actor. The store stays the
//! source of truth: the HTTP handlers write the store first, then here.

use std::collections::HashMap;
use std::sync::RwLock;

use chrono::{DateTime, Utc};
use kameo::actor::ActorRef;
use serde::Serialize;

use super::group::GroupActor;
use super::processor::ProcessorActor;
use crate::domain::entities::{Bind, Id, Processor};
use crate::domain::time_format;

/// Figures an executor reports, and whether it is online.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProcessorLive {
    pub online: bool,
    #[serde(with = "time_format::option")]
    pub last_heartbeat: Option<DateTime<Utc>>,
    pub running_instances: u32,
    pub cpu_usage: f32,
    pub memory_used: u64,
    pub memory_total: u64,
    pub version: Option<String>,
}

struct ProcessorEntry {
    record: Processor,
    live: ProcessorLive,
    actor: ActorRef<ProcessorActor>,
}

/// A bind that can take an instance now, with its processor.
#[derive(Clone, Debug)]
pub struct Route {
    pub bind: Bind,
    pub processor: Processor,
    pub actor: ActorRef<ProcessorActor>,
}

#[derive(Default)]
struct Inner {
    binds: HashMap<Id, Bind>,
    processors: HashMap<Id, ProcessorEntry>,
    groups: HashMap<Id, ActorRef<GroupActor>>,
}

#[derive(Default)]
pub struct Directory {
    inner: RwLock<Inner>,
}

impl Directory {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn put_bind(&self, bind: Bind) {
        self.write().binds.insert(bind.id, bind);
    }

    pub fn remove_bind(&self, id: Id) {
        self.write().binds.remove(&id);
    }

    pub fn bind(&self, id: Id) -> Option<Bind> {
        self.read().binds.get(&id).cloned()
    }

    /// Adds a processor with its actor, or replaces its record.
    pub fn put_processor(&self, record: Processor, actor: ActorRef<ProcessorActor>) {
        let mut inner = self.write();
        match inner.processors.get_mut(&record.id) {
            Some(entry) => entry.record = record,
            None => {
                inner.processors.insert(
                    record.id,
                    ProcessorEntry {
                        record,
                        live: ProcessorLive::default(),
                        actor,
                    },
                );
            }
        }
    }

    /// Replaces a processor's record, keeping its actor and live figures.
    pub fn update_processor(&self, record: Processor) {
        if let Some(entry) = self.write().processors.get_mut(&record.id) {
            entry.record = record;
        }
    }

    pub fn remove_processor(&self, id: Id) -> Option<ActorRef<ProcessorActor>> {
        self.write().processors.remove(&id).map(|entry| entry.actor)
    }

    pub fn processor(&self, id: Id) -> Option<(Processor, ProcessorLive)> {
        self.read()
            .processors
            .get(&id)
            .map(|entry| (entry.record.clone(), entry.live.clone()))
    }

    pub fn processor_actor(&self, id: Id) -> Option<ActorRef<ProcessorActor>> {
        self.read()
            .processors
            .get(&id)
            .map(|entry| entry.actor.clone())
    }

    /// Finds a processor by name, for an executor's join.
    pub fn processor_by_name(&self, name: &str) -> Option<(Processor, ActorRef<ProcessorActor>)> {
        self.read()
            .processors
            .values()
            .find(|entry| entry.record.name == name)
            .map(|entry| (entry.record.clone(), entry.actor.clone()))
    }

    pub fn set_live(&self, id: Id, live: ProcessorLive) {
        if let Some(entry) = self.write().processors.get_mut(&id) {
            entry.live = live;
        }
    }

    /// True when every processor that a bind with weight above 0 routes to is online.
    pub fn bound_processors_online(&self) -> bool {
        let inner = self.read();
        inner
            .binds
            .values()
            .filter(|bind| bind.weight > 0)
            .all(|bind| {
                inner
                    .processors
                    .get(&bind.executor_id)
                    .is_some_and(|p| p.live.online)
            })
    }

    pub fn online_count(&self) -> usize {
        self.read()
            .processors
            .values()
            .filter(|entry| entry.live.online)
            .count()
    }

    pub fn put_group(&self, id: Id, actor: ActorRef<GroupActor>) {
        self.write().groups.insert(id, actor);
    }

    pub fn remove_group(&self, id: Id) -> Option<ActorRef<GroupActor>> {
        self.write().groups.remove(&id)
    }

    pub fn group(&self, id: Id) -> Option<ActorRef<GroupActor>> {
        self.read().groups.get(&id).cloned()
    }

    /// The group whose actor keeps the round-robin state of a task with
    /// these binds: the group of its lowest bind id that still exists.
    pub fn routing_group(&self, bind_ids: &[Id]) -> Option<ActorRef<GroupActor>> {
        self.routing_group_with_id(bind_ids).map(|(_, actor)| actor)
    }

    /// Returns the group of [`Self::routing_group`] with its id.
    pub fn routing_group_with_id(&self, bind_ids: &[Id]) -> Option<(Id, ActorRef<GroupActor>)> {
        let inner = self.read();
        let lowest = bind_ids
            .iter()
            .filter_map(|id| inner.binds.get(id))
            .min_by_key(|bind| bind.id)?;
        let actor = inner.groups.get(&lowest.group_id)?.clone();
        Some((lowest.group_id, actor))
    }

    /// Binds among `bind_ids` whose weight is above 0 and whose processor is
    /// online, in the order given, skipping `exclude`.
    pub fn eligible_routes(&self, bind_ids: &[Id], exclude: &[Id]) -> Vec<Route> {
        let inner = self.read();
        bind_ids
            .iter()
            .filter(|id| !exclude.contains(id))
            .filter_map(|id| inner.binds.get(id))
            .filter(|bind| bind.weight > 0)
            .filter_map(|bind| {
                let entry = inner.processors.get(&bind.executor_id)?;
                entry.live.online.then(|| Route {
                    bind: bind.clone(),
                    processor: entry.record.clone(),
                    actor: entry.actor.clone(),
                })
            })
            .collect()
    }
}
