//! One actor per executor processor: the QUIC session to its executor,
//! heartbeats, the offline decision, and the instances sent there.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kameo::Actor;
use kameo::actor::{ActorRef, WeakActorRef};
use kameo::error::{ActorStopReason, Infallible};
use kameo::message::{Context, Message};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::Shared;
use super::directory::ProcessorLive;
use super::instance::ExecutorLost;
use super::transitions;
use crate::domain::entities::Id;
use crate::domain::lifecycle::InstanceEvent;
use crate::net::close_code;
use crate::net::messages::{Heartbeat, Message as Wire, RunRequest};

/// The connection of an executor that joined.
pub struct Session {
    pub id: u64,
    pub connection: quinn::Connection,
    pub outgoing: mpsc::Sender<Wire>,
    pub agent_version: String,
}

/// How often the actor checks for a missing heartbeat.
const LIVENESS_CHECK: Duration = Duration::from_millis(250);

pub struct ProcessorActor {
    processor_id: Id,
    shared: Arc<Shared>,
    session: Option<Session>,
    /// Start of the current silence: the last heartbeat, or when the actor
    /// started, so instances recovered after a restart wait for a rejoin.
    last_heard: Instant,
    live: ProcessorLive,
    /// Runs sent and not yet accepted or rejected.
    pending: HashMap<u64, oneshot::Sender<Result<(), String>>>,
    /// Instances routed here that are still Running.
    assigned: HashSet<u64>,
}

impl ProcessorActor {
    pub fn new(processor_id: Id, shared: Arc<Shared>) -> ProcessorActor {
        ProcessorActor {
            processor_id,
            shared,
            session: None,
            last_heard: Instant::now(),
            live: ProcessorLive::default(),
            pending: HashMap::new(),
            assigned: HashSet::new(),
        }
    }

    fn publish(&self) {
        self.shared
            .directory
            .set_live(self.processor_id, self.live.clone());
        let online = self.shared.directory.online_count() as i64;
        self.shared
            .metrics
            .processors_online
            .store(online, std::sync::atomic::Ordering::Relaxed);
    }

    fn fail_pending(&mut self, reason: &str) {
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(reason.to_string()));
        }
    }

    /// Marks the processor offline and its instances lost.
    async fn go_offline(&mut self) {
        if let Some(session) = self.session.take() {
            session
                .connection
                .close(close_code::HEARTBEAT_TIMEOUT.into(), b"no heartbeat");
        }
        self.fail_pending("the executor went offline before it accepted the run");
        if self.live.online {
            tracing::warn!(processor.id = self.processor_id, "processor.offline");
        }
        self.live.online = false;
        self.live.running_instances = 0;
        self.publish();

        let silent = self.shared.settings.offline_after.as_secs();
        for instance_id in std::mem::take(&mut self.assigned) {
            let reason = format!("executor offline: no heartbeat for {silent} s");
            match self.shared.instance_actor(instance_id) {
                Some(actor) => {
                    let _ = actor.tell(ExecutorLost { reason }).await;
                }
                None => {
                    let event = InstanceEvent::Lost {
                        at: Utc::now(),
                        reason,
                    };
                    if let Err(error) = transitions::apply(&self.shared, instance_id, event).await {
                        tracing::error!(instance.id = instance_id, %error, "failed to mark instance lost");
                    }
                }
            }
        }
    }
}

impl Actor for ProcessorActor {
    type Args = Self;
    type Error = Infallible;

    async fn on_start(state: Self, actor_ref: ActorRef<Self>) -> Result<Self, Self::Error> {
        let weak = actor_ref.downgrade();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(LIVENESS_CHECK);
            loop {
                ticker.tick().await;
                let Some(actor) = weak.upgrade() else { break };
                if actor.tell(CheckLiveness).await.is_err() {
                    break;
                }
            }
        });
        Ok(state)
    }

    async fn on_stop(
        &mut self,
        _actor_ref: WeakActorRef<Self>,
        _reason: ActorStopReason,
    ) -> Result<(), Self::Error> {
        if let Some(session) = self.session.take() {
            session
                .connection
                .close(close_code::JOIN_REJECTED.into(), b"processor deleted");
        }
        self.fail_pending("the processor was deleted");
        Ok(())
    }
}

/// An executor joined as this processor.
pub struct AttachSession(pub Session);

impl Message<AttachSession> for ProcessorActor {
    type Reply = ();

    async fn handle(&mut self, msg: AttachSession, _ctx: &mut Context<Self, ()>) {
        if let Some(old) = self.session.take() {
            old.connection.close(
                close_code::SESSION_REPLACED.into(),
                b"a newer connection took over",
            );
            self.fail_pending("the connection was replaced before the executor accepted the run");
        }
        let session = msg.0;
        tracing::info!(
            processor.id = self.processor_id,
            session.id = session.id,
            peer.addr = %session.connection.remote_address(),
            "processor.online"
        );
        self.live.online = true;
        self.live.version = Some(session.agent_version.clone());
        self.live.last_heartbeat = Some(Utc::now());
        self.last_heard = Instant::now();
        self.session = Some(session);
        self.publish();
    }
}

/// The connection of a session closed.
pub struct DetachSession {
    pub session_id: u64,
}

impl Message<DetachSession> for ProcessorActor {
    type Reply = ();

    async fn handle(&mut self, msg: DetachSession, _ctx: &mut Context<Self, ()>) {
        if self
            .session
            .as_ref()
            .is_some_and(|s| s.id == msg.session_id)
        {
            self.session = None;
            self.fail_pending("the connection closed before the executor accepted the run");
            self.live.online = false;
            self.publish();
            tracing::info!(processor.id = self.processor_id, "processor.disconnected");
        }
    }
}

pub struct HeartbeatReceived {
    pub session_id: u64,
    pub heartbeat: Heartbeat,
}

impl Message<HeartbeatReceived> for ProcessorActor {
    type Reply = ();

    async fn handle(&mut self, msg: HeartbeatReceived, _ctx: &mut Context<Self, ()>) {
        if self.session.as_ref().is_none_or(|s| s.id != msg.session_id) {
            return;
        }
        let beat = msg.heartbeat;
        self.last_heard = Instant::now();
        self.live.online = true;
        self.live.last_heartbeat = Some(Utc::now());
        self.live.cpu_usage = beat.cpu_usage;
        self.live.memory_used = beat.memory_used;
        self.live.memory_total = beat.memory_total;
        self.live.running_instances = beat.running_instances;
        self.publish();
    }
}

struct CheckLiveness;

impl Message<CheckLiveness> for ProcessorActor {
    type Reply = ();

    async fn handle(&mut self, _msg: CheckLiveness, _ctx: &mut Context<Self, ()>) {
        let silent = self.last_heard.elapsed() >= self.shared.settings.offline_after;
        let has_work = self.session.is_some() || !self.assigned.is_empty() || self.live.online;
        if silent && has_work {
            self.go_offline().await;
        }
    }
}

/// Sends a run to the executor; `reply` receives its acceptance.
pub struct DispatchRun {
    pub request: RunRequest,
    pub reply: oneshot::Sender<Result<(), String>>,
}

impl Message<DispatchRun> for ProcessorActor {
    type Reply = ();

    async fn handle(&mut self, msg: DispatchRun, _ctx: &mut Context<Self, ()>) {
        let Some(session) = &self.session else {
            let _ = msg.reply.send(Err("the executor is offline".into()));
            return;
        };
        let instance_id = msg.request.instance_id;
        if session.outgoing.send(Wire::Run(msg.request)).await.is_err() {
            let _ = msg
                .reply
                .send(Err("the connection to the executor closed".into()));
            return;
        }
        self.assigned.insert(instance_id);
        self.pending.insert(instance_id, msg.reply);
    }
}

/// The executor answered a run.
pub struct RunAnswered {
    pub session_id: u64,
    pub instance_id: u64,
    pub result: Result<(), String>,
}

impl Message<RunAnswered> for ProcessorActor {
    type Reply = ();

    async fn handle(&mut self, msg: RunAnswered, _ctx: &mut Context<Self, ()>) {
        if self.session.as_ref().is_none_or(|s| s.id != msg.session_id) {
            return;
        }
        if msg.result.is_err() {
            self.assigned.remove(&msg.instance_id);
        }
        if let Some(reply) = self.pending.remove(&msg.instance_id) {
            let _ = reply.send(msg.result);
        }
    }
}

/// Tracks an instance recovered after a scheduler restart.
pub struct Assign {
    pub instance_id: u64,
}

impl Message<Assign> for ProcessorActor {
    type Reply = ();

    async fn handle(&mut self, msg: Assign, _ctx: &mut Context<Self, ()>) {
        self.assigned.insert(msg.instance_id);
    }
}

/// Stops tracking an instance: it ended or moved elsewhere.
pub struct Release {
    pub instance_id: u64,
}

impl Message<Release> for ProcessorActor {
    type Reply = ();

    async fn handle(&mut self, msg: Release, _ctx: &mut Context<Self, ()>) {
        self.assigned.remove(&msg.instance_id);
        self.pending.remove(&msg.instance_id);
    }
}

/// Asks the executor to kill an instance.
pub struct SendKill {
    pub instance_id: u64,
}

impl Message<SendKill> for ProcessorActor {
    type Reply = Result<(), String>;

    async fn handle(
        &mut self,
        msg: SendKill,
        _ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let Some(session) = &self.session else {
            return Err("the executor is offline".into());
        };
        session
            .outgoing
            .send(Wire::Kill {
                instance_id: msg.instance_id,
            })
            .await
            .map_err(|_| "the connection to the executor closed".to_string())
    }
}
