//! The executor node: joins a scheduler over QUIC, runs the instances it is
//! sent, and reports their events through the outbox until the scheduler
//! acknowledges them.
//!
//! [`ExecutorNode::start`] opens the store and settles runs left by a
//! previous life of the executor. It then spawns two tasks. The link (see
//! `executor::link`) owns the connection. The node task owns everything else:
//! the outbox writes, the running runs and the heartbeats. All outbox writes
//! happen on the node task, so seqs are allocated in order.
//!
//! Write path of an event: the runner sends a [`RunEvent`], the node task
//! stores it in the outbox and raises the `sendable` seq, and the session's
//! writer sends it. A `Finished` event raises `sendable` only after the group
//! flusher has put it on disk, and events after it wait behind it, so the
//! scheduler never acknowledges an outcome that a crash could still lose.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use kameo::actor::ActorRef;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tracing::{debug, error, info, info_span, warn};

use super::host::HostSampler;
use super::link::{Link, LinkEvent, Session, run_link};
use super::mapping::{self, command_preview};
use super::outbox::{Outbox, OutboxError, RunRecord};
use super::process::{self, KillRun, RunActor, RunEvent};
use crate::domain::lifecycle::{Outcome, RunEnd};
use crate::domain::output::DEFAULT_OUTPUT_CAP;
use crate::net::close_code;
use crate::net::join::ExecutorCredentials;
use crate::net::messages::{Heartbeat, Hello, Message, PROTOCOL_VERSION, RunRequest};
use crate::net::tls::{self, TlsError};
use crate::security::{LEVEL_AUTHENTICATED, LEVEL_OPEN};
use crate::storage::StoreError;
use crate::storage::flusher::Flusher;

/// Largest output cap per stream. The tail of a capped stream is half the
/// cap and travels in one frame, which must stay below `MAX_FRAME_LEN` (2 MiB).
pub const MAX_OUTPUT_CAP: usize = 2 * 1024 * 1024;
/// Reason of the `Finished` event of a run found in the store at start-up.
pub const RESTART_REASON: &str = "executor restarted while the instance ran";
/// Reason of the `Finished` event of a run killed by a graceful shutdown.
pub const SHUTDOWN_REASON: &str = "executor shut down";
/// Reason of a `RunRejected` during shutdown.
pub const SHUTTING_DOWN: &str = "executor is shutting down";

/// How long a shutdown waits for killed runs to end: the default 5 s kill
/// grace plus the runner's 2 s pipe drain, with margin. A run still going
/// after it keeps its record, so the next start kills its group.
const RUN_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Minimum time between the starts of two outbox flushes. The start of a
/// run and its end each request a flush, so with this spacing a short run's
/// two requests, and those of every other run ending meanwhile, share one
/// flush.
const FLUSH_SPACING: Duration = Duration::from_millis(5);
/// How long a shutdown waits for the scheduler to acknowledge the outbox.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// Limit on `Endpoint::wait_idle` at shutdown, for a peer that vanished.
const IDLE_TIMEOUT: Duration = Duration::from_secs(3);
/// Queue of runner events to the node task. A full queue makes the runner
/// stop reading the child's pipes, so a fast writer is slowed down.
const RUN_EVENT_QUEUE: usize = 256;
/// Per-run queue between the runner and its forwarding task.
const RUN_FORWARD_QUEUE: usize = 16;
/// Queue of messages from the link. A `Run` frame may be up to 2 MiB (its
/// stdin), so the depth bounds the scheduler input kept in memory to about
/// 128 MiB. Beyond it, QUIC flow control slows the scheduler down.
const LINK_EVENT_QUEUE: usize = 64;
/// Instance ids of finished runs remembered, so a repeated `Run` for one of
/// them is accepted again instead of running the command a second time.
const RECENTLY_FINISHED: usize = 4096;

/// Settings of an executor node.
#[derive(Clone, Debug)]
pub struct ExecutorSettings {
    /// Directory of the executor's sled store (outbox and run records).
    pub data_dir: PathBuf,
    /// QUIC address of the scheduler.
    pub scheduler: SocketAddr,
    /// Name of the processor record this executor joins as.
    pub name: String,
    /// 0: join without authentication. 1: signed join and frame MACs,
    /// which needs `credentials`.
    pub security_level: u8,
    /// The executor's key pair and the scheduler's public key, used at
    /// security level 1.
    pub credentials: Option<ExecutorCredentials>,
    /// Maximum bytes kept per output stream, at most [`MAX_OUTPUT_CAP`].
    /// A request may set a lower cap for its run.
    pub output_cap: usize,
}

impl ExecutorSettings {
    /// Settings at security level 0 with the default output cap (1 MiB);
    /// set `security_level` and `credentials` for level 1.
    pub fn new(data_dir: PathBuf, scheduler: SocketAddr, name: impl Into<String>) -> Self {
        ExecutorSettings {
            data_dir,
            scheduler,
            name: name.into(),
            security_level: LEVEL_OPEN,
            credentials: None,
            output_cap: DEFAULT_OUTPUT_CAP,
        }
    }

    fn validate(&self) -> Result<(), ExecutorError> {
        let invalid = |message: String| Err(ExecutorError::InvalidSettings(message));
        if self.name.trim().is_empty() {
            return invalid("the processor name is empty".into());
        }
        match self.security_level {
            LEVEL_OPEN => {}
            LEVEL_AUTHENTICATED if self.credentials.is_some() => {}
            LEVEL_AUTHENTICATED => {
                return invalid(
                    "security level 1 needs the executor's key pair and the scheduler's public key"
                        .into(),
                );
            }
            other => return invalid(format!("security level {other} is invalid: use 0 or 1")),
        }
        if !(2..=MAX_OUTPUT_CAP).contains(&self.output_cap) {
            return invalid(format!(
                "output cap {} is out of range: use 2 to {MAX_OUTPUT_CAP} bytes",
                self.output_cap
            ));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("invalid executor settings: {0}")]
    InvalidSettings(String),
    #[error(transparent)]
    Store(#[from] OutboxError),
    #[error("executor store flush failed: {0}")]
    Flush(#[from] StoreError),
    #[error("QUIC client setup failed: {0}")]
    Tls(#[from] TlsError),
    #[error("failed to bind the QUIC client socket on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("executor task failed: {0}")]
    Task(String),
}

/// Entry point of the executor node.
pub struct ExecutorNode;

impl ExecutorNode {
    /// Opens the store in `settings.data_dir`, reports the runs a previous
    /// life left behind, and spawns the node on the current tokio runtime.
    pub async fn start(settings: ExecutorSettings) -> Result<ExecutorHandle, ExecutorError> {
        settings.validate()?;

        let data_dir = settings.data_dir.clone();
        let (outbox, leftovers) = tokio::task::spawn_blocking(move || open_and_settle(&data_dir))
            .await
            .map_err(|error| ExecutorError::Task(error.to_string()))??;

        let endpoint = client_endpoint(settings.scheduler)?;
        let local_addr = endpoint
            .local_addr()
            .map_err(|source| ExecutorError::Bind {
                addr: settings.scheduler,
                source,
            })?;
        info!(
            local.addr = %local_addr,
            peer.addr = %settings.scheduler,
            processor.name = %settings.name,
            security_level = settings.security_level,
            "executor started"
        );

        let (shutdown, shutdown_receiver) = watch::channel(false);
        let mut node = Node::new(settings, outbox)?;
        for instance_id in leftovers {
            node.recently_finished.insert(instance_id);
        }
        let task = tokio::spawn(node.run(endpoint, shutdown_receiver));
        Ok(ExecutorHandle {
            shutdown,
            task: Some(task),
            local_addr,
        })
    }
}

/// Handle to a running node. Dropping it shuts the node down as
/// [`ExecutorHandle::shutdown`] does, without waiting for the end.
pub struct ExecutorHandle {
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<Result<(), ExecutorError>>>,
    local_addr: SocketAddr,
}

impl ExecutorHandle {
    /// Local UDP address of the node's QUIC endpoint.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Shuts the node down gracefully and waits until it has stopped: runs
    /// are killed and reported as interrupted, the outbox is flushed and, for
    /// up to 2 s, offered to the scheduler. Unacknowledged events stay in the
    /// store for the next start.
    pub async fn shutdown(mut self) -> Result<(), ExecutorError> {
        self.shutdown.send_replace(true);
        self.wait().await
    }

    /// Waits until the node stops, which it does only after a shutdown or a
    /// storage failure (the error). Cancel-safe; after the first completion
    /// it returns `Ok` at once.
    pub async fn wait(&mut self) -> Result<(), ExecutorError> {
        let Some(task) = &mut self.task else {
            return Ok(());
        };
        let result = task.await;
        self.task = None;
        result.map_err(|error| ExecutorError::Task(error.to_string()))?
    }
}

/// Opens the store and settles every run recorded by a previous life of the
/// executor: its process group is killed and a `Finished` event with
/// [`RunEnd::Interrupted`] replaces the record. Returns the settled instance
/// ids. Blocks.
fn open_and_settle(data_dir: &std::path::Path) -> Result<(Outbox, Vec<u64>), ExecutorError> {
    let outbox = Outbox::open(data_dir)?;
    let leftovers = outbox.run_records()?;
    let finished = outbox.finished_instances()?;
    for (instance_id, record) in &leftovers {
        if finished.contains(instance_id) {
            // A crash came between storing the run's end and removing its record.
            outbox.remove_run(*instance_id)?;
        } else {
            settle_leftover(&outbox, *instance_id, *record)?;
        }
    }
    if !leftovers.is_empty() {
        outbox.flush()?;
    }
    let settled = leftovers.into_iter().map(|(instance_id, _)| instance_id);
    Ok((outbox, settled.collect()))
}

fn settle_leftover(
    outbox: &Outbox,
    instance_id: u64,
    record: RunRecord,
) -> Result<(), OutboxError> {
    let _span = info_span!("executor.run", instance.id = instance_id).entered();
    match record {
        RunRecord {
            pgid: Some(pgid),
            start_time: Some(start_time),
        } => {
            let killed = process::kill_leftover_group(pgid, start_time);
            info!(
                pgid,
                killed, "run left by a previous executor reported as interrupted"
            );
        }
        RunRecord {
            pgid: Some(pgid),
            start_time: None,
        } => {
            warn!(
                pgid,
                "run left by a previous executor has no process start time, \
                 so its process group is not killed"
            );
        }
        RunRecord { pgid: None, .. } => {
            info!("run accepted by a previous executor but never started, reported as interrupted");
        }
    }
    let outcome = Outcome {
        end: RunEnd::Interrupted,
        exit_code: None,
        signal: None,
        reason: Some(RESTART_REASON.to_string()),
        finished_at: Utc::now(),
    };
    outbox.append_finished(instance_id, outcome)?;
    Ok(())
}

/// Creates the QUIC client endpoint on the wildcard address of the
/// scheduler's address family.
fn client_endpoint(scheduler: SocketAddr) -> Result<quinn::Endpoint, ExecutorError> {
    let bind: SocketAddr = match scheduler {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let mut endpoint = quinn::Endpoint::client(bind)
        .map_err(|source| ExecutorError::Bind { addr: bind, source })?;
    endpoint.set_default_client_config(tls::client_config()?);
    Ok(endpoint)
}

/// Why the node ends a run, which decides how a `Killed` end is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KillCause {
    /// The scheduler sent `Kill`.
    Requested,
    /// The executor is shutting down.
    Shutdown,
}

struct ActiveRun {
    actor: ActorRef<RunActor>,
    kill_cause: Option<KillCause>,
}

/// Bounded set of the newest finished instance ids.
#[derive(Default)]
struct RecentIds {
    order: VecDeque<u64>,
    ids: HashSet<u64>,
}

impl RecentIds {
    fn insert(&mut self, id: u64) {
        if !self.ids.insert(id) {
            return;
        }
        self.order.push_back(id);
        if self.order.len() > RECENTLY_FINISHED
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
    }

    fn contains(&self, id: u64) -> bool {
        self.ids.contains(&id)
    }
}

/// Result of one group-commit flush requested for a `Finished` event.
struct Flushed {
    seq: u64,
    result: Result<(), StoreError>,
}

/// State owned by the node task.
struct Node {
    settings: ExecutorSettings,
    outbox: Outbox,
    flusher: Flusher,
    flusher_thread: std::thread::JoinHandle<()>,
    runs: HashMap<u64, ActiveRun>,
    recently_finished: RecentIds,
    session: Option<Session>,
    heartbeat: Option<Interval>,
    host: HostSampler,
    shutting_down: bool,

    /// Seq of the newest outbox event.
    last_appended: u64,
    /// Seqs of `Finished` events not yet on disk, oldest first.
    unflushed: VecDeque<u64>,
    sendable: watch::Sender<u64>,

    run_events: mpsc::Receiver<(u64, RunEvent)>,
    run_events_sender: mpsc::Sender<(u64, RunEvent)>,
    link_events: mpsc::Receiver<LinkEvent>,
    link_events_sender: Option<mpsc::Sender<LinkEvent>>,
    flushed: mpsc::Receiver<Flushed>,
    flushed_sender: mpsc::Sender<Flushed>,
}

/// When a phase of the node task ends.
enum Until {
    ShutdownRequested(watch::Receiver<bool>),
    RunsEnded(Instant),
    OutboxAcknowledged(Instant),
}

impl Node {
    fn new(settings: ExecutorSettings, outbox: Outbox) -> Result<Node, ExecutorError> {
        let (flusher, flusher_thread) = Flusher::start_joinable(outbox.db().clone(), FLUSH_SPACING);
        // Everything in the store at start-up is on disk: leftovers were
        // flushed by `open_and_settle`.
        let last_appended = outbox.last_seq()?;
        let (sendable, _) = watch::channel(last_appended);
        let (run_events_sender, run_events) = mpsc::channel(RUN_EVENT_QUEUE);
        let (link_events_sender, link_events) = mpsc::channel(LINK_EVENT_QUEUE);
        let (flushed_sender, flushed) = mpsc::channel(16);
        Ok(Node {
            settings,
            outbox,
            flusher,
            flusher_thread,
            runs: HashMap::new(),
            recently_finished: RecentIds::default(),
            session: None,
            heartbeat: None,
            host: HostSampler::new(),
            shutting_down: false,
            last_appended,
            unflushed: VecDeque::new(),
            sendable,
            run_events,
            run_events_sender,
            link_events,
            link_events_sender: Some(link_events_sender),
            flushed,
            flushed_sender,
        })
    }

    fn hello(&self) -> Hello {
        Hello {
            protocol_version: PROTOCOL_VERSION,
            processor_name: self.settings.name.clone(),
            security_level: self.settings.security_level,
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            nonce: Vec::new(),
        }
    }

    async fn run(
        mut self,
        endpoint: quinn::Endpoint,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(), ExecutorError> {
        let (stop_link, stop_receiver) = watch::channel(false);
        let link = Link {
            endpoint: endpoint.clone(),
            scheduler: self.settings.scheduler,
            hello: self.hello(),
            credentials: self.settings.credentials.clone(),
            outbox: self.outbox.clone(),
            sendable: self.sendable.subscribe(),
            events: self.link_events_sender.take().expect("taken once, here"),
            stop: stop_receiver,
        };
        let link_task = tokio::spawn(run_link(link));

        let served = self.drive(Until::ShutdownRequested(shutdown)).await;
        if let Err(error) = &served {
            error!(%error, "executor stopping after a failure");
        }
        let stopped = self.stop(served.is_ok()).await;

        stop_link.send_replace(true);
        if let Some(session) = self.session.take() {
            session
                .connection
                .close(close_code::NORMAL.into(), SHUTDOWN_REASON.as_bytes());
        }
        let link_finished = self.finish_link(link_task).await;
        if tokio::time::timeout(IDLE_TIMEOUT, endpoint.wait_idle())
            .await
            .is_err()
        {
            warn!("QUIC connections still draining at exit");
        }
        let closed = self.close_store().await;
        info!("executor stopped");
        served.and(stopped).and(link_finished).and(closed)
    }

    /// Runs the shutdown steps before the connection closes: reject new runs,
    /// kill the running ones, flush, and wait a while for acknowledgements.
    /// After a failure (`orderly` false) it only sends the kills, because the
    /// outcomes could not be stored, and the run records settle them on the
    /// next start.
    async fn stop(&mut self, orderly: bool) -> Result<(), ExecutorError> {
        info!(running = self.runs.len(), "executor shutting down");
        self.shutting_down = true;
        for (instance_id, run) in &mut self.runs {
            run.kill_cause.get_or_insert(KillCause::Shutdown);
            if run.actor.tell(KillRun).try_send().is_err() {
                debug!(instance.id = instance_id, "run already ending");
            }
        }
        if !orderly {
            return Ok(());
        }

        self.drive(Until::RunsEnded(Instant::now() + RUN_STOP_TIMEOUT))
            .await?;
        if !self.runs.is_empty() {
            warn!(
                running = self.runs.len(),
                "runs still going after the shutdown wait keep their records: \
                 the next start kills their process groups"
            );
        }

        self.flusher.flush().await?;
        self.unflushed.clear();
        self.publish_sendable();
        self.drive(Until::OutboxAcknowledged(Instant::now() + ACK_TIMEOUT))
            .await?;
        if !self.outbox.is_empty() {
            info!("unacknowledged events stay in the outbox for the next start");
        }
        Ok(())
    }

    /// Waits for the link task, discarding what it still reports.
    async fn finish_link(&mut self, mut link_task: JoinHandle<()>) -> Result<(), ExecutorError> {
        loop {
            tokio::select! {
                joined = &mut link_task => {
                    return joined.map_err(|error| {
                        error!(%error, "executor link task failed");
                        ExecutorError::Task(error.to_string())
                    });
                }
                Some(_) = self.link_events.recv() => {}
            }
        }
    }

    /// Flushes sled and releases it: the flusher thread holds a handle to the
    /// store, so the data directory is unlocked once that thread has ended.
    async fn close_store(self) -> Result<(), ExecutorError> {
        let Node {
            outbox,
            flusher,
            flusher_thread,
            ..
        } = self;
        drop(flusher);
        tokio::task::spawn_blocking(move || {
            let flushed = outbox.flush();
            drop(outbox);
            if flusher_thread.join().is_err() {
                error!("the executor store flusher thread panicked");
            }
            flushed
        })
        .await
        .map_err(|error| ExecutorError::Task(error.to_string()))??;
        Ok(())
    }

    /// Handles runner events, link events and timers until `until` is met.
    async fn drive(&mut self, mut until: Until) -> Result<(), ExecutorError> {
        loop {
            let deadline = match &mut until {
                Until::ShutdownRequested(_) => None,
                Until::RunsEnded(deadline) => {
                    if self.runs.is_empty() {
                        return Ok(());
                    }
                    Some(*deadline)
                }
                Until::OutboxAcknowledged(deadline) => {
                    if self.session.is_none() || self.outbox.is_empty() {
                        return Ok(());
                    }
                    Some(*deadline)
                }
            };
            let shutdown = match &mut until {
                Until::ShutdownRequested(shutdown) => Some(shutdown),
                _ => None,
            };

            tokio::select! {
                _ = shutdown_requested(shutdown) => return Ok(()),
                _ = sleep_until(deadline) => return Ok(()),
                Some((instance_id, event)) = self.run_events.recv() => {
                    self.on_run_event(instance_id, event)?;
                }
                event = self.link_events.recv() => match event {
                    Some(event) => self.on_link_event(event).await?,
                    // The link task sends until the node stops it, so it
                    // has panicked.
                    None => return Err(ExecutorError::Task("the scheduler link task ended".into())),
                },
                Some(flushed) = self.flushed.recv() => self.on_flushed(flushed),
                _ = tick(&mut self.heartbeat) => self.send_heartbeat(),
            }
        }
    }

    async fn on_link_event(&mut self, event: LinkEvent) -> Result<(), ExecutorError> {
        match event {
            LinkEvent::Joined(session) => {
                let mut heartbeat = tokio::time::interval(session.heartbeat_interval);
                heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
                self.heartbeat = Some(heartbeat);
                self.session = Some(session);
            }
            LinkEvent::Left { session } => {
                if self.session.as_ref().is_some_and(|s| s.id == session) {
                    self.session = None;
                    self.heartbeat = None;
                }
            }
            LinkEvent::Inbound { session, message } => {
                if self.session.as_ref().is_some_and(|s| s.id == session) {
                    self.on_message(message).await?;
                }
            }
        }
        Ok(())
    }

    async fn on_message(&mut self, message: Message) -> Result<(), ExecutorError> {
        match message {
            Message::Run(request) => self.on_run_request(request).await,
            Message::Kill { instance_id } => {
                self.on_kill(instance_id);
                Ok(())
            }
            Message::Ack { event_seq } => self.on_ack(event_seq),
            other => {
                // The link forwards only the three messages above.
                debug!(
                    message = other.kind(),
                    "ignoring a message the link should not forward"
                );
                Ok(())
            }
        }
    }

    async fn on_run_request(&mut self, request: RunRequest) -> Result<(), ExecutorError> {
        let instance_id = request.instance_id;
        let span = info_span!("executor.run", instance.id = instance_id);
        if self.shutting_down {
            span.in_scope(|| info!("run rejected: {SHUTTING_DOWN}"));
            self.send_control(Message::RunRejected {
                instance_id,
                reason: SHUTTING_DOWN.to_string(),
            });
            return Ok(());
        }
        if self.runs.contains_key(&instance_id) || self.recently_finished.contains(instance_id) {
            span.in_scope(|| debug!("repeated run request accepted again without a new run"));
            self.send_control(Message::RunAccepted { instance_id });
            return Ok(());
        }

        let record = RunRecord {
            pgid: None,
            start_time: None,
        };
        if let Err(error) = self.outbox.record_run(instance_id, record) {
            span.in_scope(|| error!(%error, "run rejected: failed to record it"));
            self.send_control(Message::RunRejected {
                instance_id,
                reason: format!("executor store failed: {error}"),
            });
            return Ok(());
        }
        self.send_control(Message::RunAccepted { instance_id });

        let spec = mapping::run_spec(&request, self.settings.output_cap);
        span.in_scope(|| {
            debug!(task.id = request.task_id, "run accepted");
            debug!(command = %command_preview(&spec.command), "run command");
        });
        let (events, receiver) = mpsc::channel(RUN_FORWARD_QUEUE);
        let actor = process::start_run(spec, events).await;
        tokio::spawn(forward_run_events(
            instance_id,
            receiver,
            self.run_events_sender.clone(),
        ));
        self.runs.insert(
            instance_id,
            ActiveRun {
                actor,
                kill_cause: None,
            },
        );
        Ok(())
    }

    fn on_kill(&mut self, instance_id: u64) {
        let _span = info_span!("executor.run", instance.id = instance_id).entered();
        let Some(run) = self.runs.get_mut(&instance_id) else {
            debug!("kill for an instance that is not running, ignored");
            return;
        };
        info!("kill requested by the scheduler");
        run.kill_cause.get_or_insert(KillCause::Requested);
        if run.actor.tell(KillRun).try_send().is_err() {
            debug!("run already ending");
        }
    }

    fn on_ack(&mut self, seq: u64) -> Result<(), ExecutorError> {
        if seq > *self.sendable.borrow() {
            warn!(
                seq,
                "acknowledgement of an event that was never sent, ignored"
            );
            return Ok(());
        }
        if !self.outbox.acknowledge(seq)? {
            debug!(seq, "repeated acknowledgement");
        }
        Ok(())
    }

    fn on_run_event(&mut self, instance_id: u64, event: RunEvent) -> Result<(), ExecutorError> {
        let _span = info_span!("executor.run", instance.id = instance_id).entered();
        match event {
            RunEvent::Started {
                pid, start_time, ..
            } => {
                let record = RunRecord {
                    pgid: Some(pid),
                    start_time,
                };
                self.outbox.record_run(instance_id, record)?;
                // The record is what lets a restart kill the child, so it goes
                // to disk soon, but the Started event need not wait for it.
                self.flush_in_background();
                debug!(pid, "run start stored");
                self.append(instance_id, mapping::event_kind(event))?;
            }
            RunEvent::Finished(finished) => {
                let kill_cause = self
                    .runs
                    .remove(&instance_id)
                    .and_then(|run| run.kill_cause);
                let outcome = final_outcome(finished, kill_cause);
                // The runner logs how the run ended.
                if outcome.end == RunEnd::Interrupted {
                    info!("run reported as interrupted by the shutdown");
                }
                self.recently_finished.insert(instance_id);
                let end = outcome.end;
                let seq = self.outbox.append_finished(instance_id, outcome)?.seq;
                debug!(?end, seq, "run end stored");
                self.last_appended = seq;
                self.unflushed.push_back(seq);
                self.request_flush(seq, Duration::ZERO);
                self.publish_sendable();
            }
            output => {
                self.append(instance_id, mapping::event_kind(output))?;
            }
        }
        Ok(())
    }

    fn append(
        &mut self,
        instance_id: u64,
        kind: crate::net::messages::EventKind,
    ) -> Result<(), ExecutorError> {
        self.last_appended = self.outbox.append(instance_id, kind)?.seq;
        self.publish_sendable();
        Ok(())
    }

    fn flush_in_background(&self) {
        let flusher = self.flusher.clone();
        tokio::spawn(async move {
            if let Err(error) = flusher.flush().await {
                error!(%error, "executor store flush failed");
            }
        });
    }

    /// Starts a group-commit flush covering every write so far, and reports
    /// its result to the node task.
    fn request_flush(&self, seq: u64, delay: Duration) {
        let flusher = self.flusher.clone();
        let done = self.flushed_sender.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let result = flusher.flush().await;
            let _ = done.send(Flushed { seq, result }).await;
        });
    }

    fn on_flushed(&mut self, flushed: Flushed) {
        if let Err(error) = flushed.result {
            error!(%error, seq = flushed.seq, "outbox flush failed, retrying in 1 s");
            self.request_flush(flushed.seq, Duration::from_secs(1));
            return;
        }
        while self
            .unflushed
            .front()
            .is_some_and(|&seq| seq <= flushed.seq)
        {
            self.unflushed.pop_front();
        }
        debug!(seq = flushed.seq, "outbox flushed");
        self.publish_sendable();
    }

    /// Lets the writer send every event before the oldest unflushed `Finished`.
    fn publish_sendable(&self) {
        let sendable = match self.unflushed.front() {
            Some(&seq) => seq - 1,
            None => self.last_appended,
        };
        self.sendable.send_if_modified(|current| {
            let changed = *current != sendable;
            *current = sendable;
            changed
        });
    }

    fn send_heartbeat(&mut self) {
        let load = self.host.sample();
        let heartbeat = Heartbeat {
            cpu_usage: load.cpu_usage,
            memory_used: load.memory_used,
            memory_total: load.memory_total,
            running_instances: u32::try_from(self.runs.len()).unwrap_or(u32::MAX),
        };
        self.send_control(Message::Heartbeat(heartbeat));
    }

    /// Queues a reply or heartbeat on the current session. Without a session
    /// it is dropped: the scheduler treats runs it sent on a lost connection
    /// as not accepted.
    fn send_control(&mut self, message: Message) {
        let Some(session) = &self.session else {
            debug!(message = message.kind(), "no session, message dropped");
            return;
        };
        match session.control.try_send(message) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(message)) => {
                warn!(
                    message = message.kind(),
                    "the scheduler is not reading, closing the connection"
                );
                session
                    .connection
                    .close(close_code::NORMAL.into(), b"outgoing queue full");
            }
            Err(mpsc::error::TrySendError::Closed(message)) => {
                debug!(message = message.kind(), "session ending, message dropped");
            }
        }
    }
}

/// Reports a run killed by a shutdown as interrupted, keeping its exit
/// status. A run that ended by itself meanwhile keeps its real end.
fn final_outcome(mut outcome: Outcome, kill_cause: Option<KillCause>) -> Outcome {
    if kill_cause == Some(KillCause::Shutdown) && outcome.end == RunEnd::Killed {
        outcome.end = RunEnd::Interrupted;
        outcome.reason = Some(SHUTDOWN_REASON.to_string());
    }
    outcome
}

/// Tags one run's events with its instance id for the node task.
async fn forward_run_events(
    instance_id: u64,
    mut events: mpsc::Receiver<RunEvent>,
    node: mpsc::Sender<(u64, RunEvent)>,
) {
    while let Some(event) = events.recv().await {
        if node.send((instance_id, event)).await.is_err() {
            return;
        }
    }
}

async fn shutdown_requested(shutdown: Option<&mut watch::Receiver<bool>>) {
    match shutdown {
        // A dropped handle counts as a shutdown request.
        Some(shutdown) => {
            let _ = shutdown.wait_for(|requested| *requested).await;
        }
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn tick(interval: &mut Option<Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn killed() -> Outcome {
        Outcome {
            end: RunEnd::Killed,
            exit_code: None,
            signal: Some(libc::SIGTERM),
            reason: Some("killed on request".into()),
            finished_at: Utc::now(),
        }
    }

    #[test]
    fn shutdown_kill_is_reported_as_interrupted() {
        let outcome = final_outcome(killed(), Some(KillCause::Shutdown));
        assert_eq!(outcome.end, RunEnd::Interrupted);
        assert_eq!(outcome.reason.as_deref(), Some(SHUTDOWN_REASON));
        assert_eq!(outcome.signal, Some(libc::SIGTERM));
    }

    #[test]
    fn requested_kill_stays_killed() {
        let outcome = final_outcome(killed(), Some(KillCause::Requested));
        assert_eq!(outcome.end, RunEnd::Killed);
    }

    #[test]
    fn settle_skips_run_whose_end_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        let record = RunRecord {
            pgid: None,
            start_time: None,
        };
        outbox.append_finished(7, killed()).unwrap();
        // What a crash between storing the end and removing the record leaves.
        outbox.record_run(7, record).unwrap();
        outbox.record_run(8, record).unwrap();
        outbox.flush().unwrap();
        drop(outbox);

        let (outbox, settled) =
            crate::executor::outbox::open_when_unlocked(|| open_and_settle(dir.path()));
        assert_eq!(settled, [7, 8]);
        assert!(outbox.run_records().unwrap().is_empty());
        let ends: Vec<(u64, RunEnd)> = outbox
            .pending()
            .unwrap()
            .into_iter()
            .filter_map(|event| match event.kind {
                crate::net::messages::EventKind::Finished(outcome) => {
                    Some((event.instance_id, outcome.end))
                }
                _ => None,
            })
            .collect();
        assert_eq!(ends, [(7, RunEnd::Killed), (8, RunEnd::Interrupted)]);
    }

    #[test]
    fn recent_ids_forget_the_oldest() {
        let mut recent = RecentIds::default();
        for id in 0..=RECENTLY_FINISHED as u64 {
            recent.insert(id);
        }
        assert!(!recent.contains(0));
        assert!(recent.contains(1));
        assert!(recent.contains(RECENTLY_FINISHED as u64));
    }

    #[test]
    fn settings_reject_level_one_without_keys_and_bad_caps() {
        let mut settings =
            ExecutorSettings::new("/tmp/x".into(), "127.0.0.1:1".parse().unwrap(), "node");
        assert!(settings.validate().is_ok());
        settings.security_level = 1;
        assert!(settings.validate().is_err());
        settings.security_level = 2;
        assert!(settings.validate().is_err());
        settings.security_level = 0;
        settings.output_cap = MAX_OUTPUT_CAP + 1;
        assert!(settings.validate().is_err());
        settings.output_cap = DEFAULT_OUTPUT_CAP;
        settings.name = " ".into();
        assert!(settings.validate().is_err());
    }
}
