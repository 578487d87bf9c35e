//! One actor per executor group: chooses the binds a fire goes to.

use std::collections::HashMap;
use std::sync::Arc;

use kameo::Actor;
use kameo::message::{Context, Message};

use super::Shared;
use super::directory::Route;
use crate::domain::entities::{Dispatch, Id};
use crate::domain::routing::{Candidate, SmoothWeightedRoundRobin};

#[derive(Actor)]
pub struct GroupActor {
    group_id: Id,
    shared: Arc<Shared>,
    /// Round-robin state per task, so each task's split follows its weights.
    rotations: HashMap<Id, SmoothWeightedRoundRobin>,
}

impl GroupActor {
    pub fn new(group_id: Id, shared: Arc<Shared>) -> GroupActor {
        GroupActor {
            group_id,
            shared,
            rotations: HashMap::new(),
        }
    }
}

/// Chooses where one fire of a task goes: one route for weighted dispatch,
/// every eligible route for broadcast, none when no bind is eligible.
pub struct RouteFire {
    pub task_id: Id,
    pub bind_ids: Vec<Id>,
    pub dispatch: Dispatch,
    /// Binds already tried for this instance.
    pub exclude: Vec<Id>,
}

impl GroupActor {
    fn route(&mut self, fire: &RouteFire) -> Vec<Route> {
        let routes = self
            .shared
            .directory
            .eligible_routes(&fire.bind_ids, &fire.exclude);
        if fire.dispatch == Dispatch::Broadcast {
            return routes;
        }
        let candidates: Vec<Candidate> = routes
            .iter()
            .map(|route| Candidate {
                bind_id: route.bind.id,
                weight: u32::from(route.bind.weight),
            })
            .collect();
        let rotation = self.rotations.entry(fire.task_id).or_default();
        let chosen = rotation.pick(&candidates);
        tracing::trace!(group.id = self.group_id, task.id = fire.task_id, bind.id = ?chosen, "group.route");
        routes
            .into_iter()
            .filter(|route| Some(route.bind.id) == chosen)
            .collect()
    }
}

impl Message<RouteFire> for GroupActor {
    type Reply = Vec<Route>;

    async fn handle(
        &mut self,
        msg: RouteFire,
        _ctx: &mut Context<Self, Self::Reply>,
    ) -> Vec<Route> {
        self.route(&msg)
    }
}

/// Chooses the routes of every fire of one tick that this group routes, in
/// one message, so a tick costs one round trip per group and not one per
/// fire. The reply contains one route list per fire, in the same order.
pub struct RouteFires(pub Vec<RouteFire>);

impl Message<RouteFires> for GroupActor {
    type Reply = Vec<Vec<Route>>;

    async fn handle(
        &mut self,
        msg: RouteFires,
        _ctx: &mut Context<Self, Self::Reply>,
    ) -> Vec<Vec<Route>> {
        msg.0.iter().map(|fire| self.route(fire)).collect()
    }
}

/// Drops the round-robin state of a deleted task.
pub struct ForgetTask(pub Id);

impl Message<ForgetTask> for GroupActor {
    type Reply = ();

    async fn handle(&mut self, msg: ForgetTask, _ctx: &mut Context<Self, Self::Reply>) {
        self.rotations.remove(&msg.0);
    }
}
