//! The scheduler's QUIC listener: the join of an executor, then the
//! messages of its session.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::actors::Shared;
use crate::actors::processor::{
    AttachSession, DetachSession, HeartbeatReceived, ProcessorActor, RunAnswered, Session,
};
use crate::actors::transitions::{self, Reported, ReportedEvents};
use crate::domain::entities::{Id, InstanceStatus};
use crate::domain::lifecycle::InstanceEvent;
use crate::domain::output::cut_marker;
use crate::net::close_code;
use crate::net::join::{self, Rejection};
use crate::net::link::{
    AuthFailure, FrameReader, FrameWriter, LinkError, OUTGOING_QUEUE, pump_outgoing,
};
use crate::net::messages::{Event, EventKind, Hello, Message, PROTOCOL_VERSION, Welcome};
use crate::security::LEVEL_AUTHENTICATED;
use crate::security::keys::{self, KeyPair};
use crate::security::mac::{Direction, FrameMac};
use crate::security::rate_limit::JoinLimiter;
use crate::storage::{SessionRecord, StoreError};
use kameo::actor::ActorRef;
use rsa::PublicKey;

/// Time a new connection has to open its stream and send Hello, and at
/// security level 1 to send Proof after Challenge.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a rejected executor has to read `JoinRejected` and close the
/// connection itself, because closing first could discard the unsent frame.
const REJECT_LINGER: Duration = Duration::from_secs(1);
/// A rate-limited connection is logged once, then every this many times.
const RATE_LIMIT_LOG_EVERY: u64 = 100;

static SESSION_IDS: AtomicU64 = AtomicU64::new(1);

/// The listener's rules for admitting executors.
#[derive(Debug)]
pub struct JoinPolicy {
    pub security_level: u8,
    /// The scheduler's key pair: `Some` at security level 1.
    pub keys: Option<KeyPair>,
    pub limiter: JoinLimiter,
}

/// Accepts connections until `shutdown` turns true.
pub async fn serve(
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
    policy: Arc<JoinPolicy>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                let shared = shared.clone();
                let span = tracing::info_span!("scheduler.session", peer.addr = %incoming.remote_address());
                tokio::spawn(accept(incoming, shared, policy.clone()).instrument(span));
            }
            _ = shutdown.changed() => break,
        }
    }
    tracing::info!("quic listener stopped accepting");
}

async fn accept(incoming: quinn::Incoming, shared: Arc<Shared>, policy: Arc<JoinPolicy>) {
    let peer = incoming.remote_address();
    let connection = match incoming.await {
        Ok(connection) => connection,
        Err(error) => {
            tracing::debug!(peer.addr = %peer, %error, "quic handshake failed");
            return;
        }
    };
    if !policy
        .limiter
        .try_acquire(peer.ip(), std::time::Instant::now())
    {
        let total = shared.metrics.joins_rate_limited.fetch_add(1, Relaxed) + 1;
        if total == 1 || total.is_multiple_of(RATE_LIMIT_LOG_EVERY) {
            tracing::warn!(peer.addr = %peer, rate_limited.total = total, "join rate limit exceeded; closing the connection");
        }
        connection.close(
            close_code::TOO_MANY_JOINS.into(),
            b"too many join attempts from this address: retry later",
        );
        return;
    }
    let (send, recv) = match tokio::time::timeout(JOIN_TIMEOUT, connection.accept_bi()).await {
        Ok(Ok(streams)) => streams,
        _ => {
            connection.close(close_code::PROTOCOL_ERROR.into(), b"no stream opened");
            return;
        }
    };
    let mut reader = FrameReader::new(recv);
    let mut writer = FrameWriter::new(send);

    let hello = match tokio::time::timeout(JOIN_TIMEOUT, reader.next()).await {
        Ok(Ok(Some(Message::Hello(hello)))) => hello,
        Ok(Err(error)) => {
            reject_frame(&shared, &connection, &error.to_string());
            return;
        }
        _ => {
            reject_frame(&shared, &connection, "the first frame must be Hello");
            return;
        }
    };

    let target = match check_join(&shared, &hello, policy.security_level) {
        Ok(target) => target,
        Err(rejection) => {
            reject_join(&shared, &connection, &mut writer, &hello, rejection).await;
            return;
        }
    };
    let admission = match (&policy.keys, &target.record_key) {
        (Some(keys), Some(record_key)) => {
            let admitted = join::admit_executor(
                &connection,
                &mut reader,
                &mut writer,
                &hello,
                record_key,
                keys,
                JOIN_TIMEOUT,
            )
            .await;
            match admitted {
                Ok(admission) => Some(admission),
                Err(rejection) => {
                    reject_join(&shared, &connection, &mut writer, &hello, rejection).await;
                    return;
                }
            }
        }
        _ => None,
    };
    let processor_id = target.processor_id;
    let actor = target.actor;
    let Some((record, _)) = shared.directory.processor(processor_id) else {
        return;
    };

    let session_id = SESSION_IDS.fetch_add(1, Relaxed);
    if let Some(admission) = &admission {
        let stored =
            SessionRecord::new(session_id, processor_id, peer.to_string(), &admission.token);
        if let Err(error) = shared.store.put_session(&stored) {
            tracing::error!(%error, processor.id = processor_id, "failed to store the session");
            let rejection = Rejection {
                code: close_code::JOIN_REJECTED,
                reason: "internal error of the scheduler: failed to store the session".into(),
            };
            reject_join(&shared, &connection, &mut writer, &hello, rejection).await;
            return;
        }
    }
    let welcome = Welcome {
        protocol_version: PROTOCOL_VERSION,
        processor_id,
        machine_id: record.machine_id,
        heartbeat_interval_ms: shared.settings.heartbeat_interval.as_millis() as u64,
        signature: admission
            .as_ref()
            .map(|a| a.signature.clone())
            .unwrap_or_default(),
        encrypted_token: admission
            .as_ref()
            .map(|a| a.encrypted_token.clone())
            .unwrap_or_default(),
    };
    if writer.send(&Message::Welcome(welcome)).await.is_err() {
        return;
    }
    if let Some(admission) = &admission {
        writer.enable_mac(FrameMac::new(
            &admission.token,
            Direction::SchedulerToExecutor,
        ));
    }

    let (outgoing, queue) = mpsc::channel(OUTGOING_QUEUE);
    tokio::spawn(async move {
        if let Err(error) = pump_outgoing(writer, queue).await {
            tracing::debug!(%error, "session writer stopped");
        }
    });
    let session = Session {
        id: session_id,
        connection: connection.clone(),
        outgoing: outgoing.clone(),
        agent_version: hello.agent_version.clone(),
    };
    if actor.tell(AttachSession(session)).await.is_err() {
        return;
    }
    tracing::info!(
        peer.addr = %peer,
        processor.id = processor_id,
        processor.name = %hello.processor_name,
        security_level = policy.security_level,
        "executor joined"
    );

    let (acks, pending_acks) = mpsc::channel(ACK_QUEUE);
    tokio::spawn(acknowledge_events(
        shared.store.clone(),
        pending_acks,
        outgoing,
    ));
    let context = SessionContext {
        shared: shared.clone(),
        processor_id,
        session_id,
        actor: actor.clone(),
        acks,
    };
    read_session(&context, &mut reader, &connection).await;
    let _ = actor.tell(DetachSession { session_id }).await;
    tracing::info!(peer.addr = %peer, processor.id = processor_id, "executor left");
}

fn reject_frame(shared: &Shared, connection: &quinn::Connection, reason: &str) {
    shared.metrics.frames_rejected.fetch_add(1, Relaxed);
    tracing::warn!(peer.addr = %connection.remote_address(), %reason, "invalid frame; closing the connection");
    connection.close(close_code::PROTOCOL_ERROR.into(), reason.as_bytes());
}

fn reject_auth_failure(
    context: &SessionContext,
    connection: &quinn::Connection,
    failure: AuthFailure,
) {
    context.shared.metrics.frame_auth_failed(failure.reason());
    tracing::warn!(
        peer.addr = %connection.remote_address(),
        processor.id = context.processor_id,
        reason = failure.reason(),
        error = %failure,
        "frame failed authentication; closing the connection"
    );
    connection.close(
        close_code::AUTHENTICATION_FAILED.into(),
        b"frame failed authentication",
    );
}

/// Counts and logs a failed join, sends `JoinRejected` and closes.
async fn reject_join(
    shared: &Shared,
    connection: &quinn::Connection,
    writer: &mut FrameWriter,
    hello: &Hello,
    rejection: Rejection,
) {
    let Rejection { code, reason } = rejection;
    shared.metrics.joins_rejected.fetch_add(1, Relaxed);
    tracing::warn!(peer.addr = %connection.remote_address(), processor.name = %hello.processor_name, %reason, "join rejected");
    let _ = writer
        .send(&Message::JoinRejected {
            reason: reason.clone(),
        })
        .await;
    writer.finish();
    let _ = tokio::time::timeout(REJECT_LINGER, connection.closed()).await;
    connection.close(code.into(), reason.as_bytes());
}

/// The processor a Hello names, with its public key at security level 1.
struct JoinTarget {
    processor_id: Id,
    actor: ActorRef<ProcessorActor>,
    record_key: Option<PublicKey>,
}

/// Checks a Hello: protocol version, security level, a processor of that
/// name and, at level 1, its public key on record.
fn check_join(shared: &Shared, hello: &Hello, security_level: u8) -> Result<JoinTarget, Rejection> {
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(Rejection {
            code: close_code::VERSION_MISMATCH,
            reason: format!(
                "executor speaks protocol version {}, this scheduler speaks version {PROTOCOL_VERSION}",
                hello.protocol_version
            ),
        });
    }
    let rejected = |reason: String| Rejection {
        code: close_code::JOIN_REJECTED,
        reason,
    };
    if hello.security_level != security_level {
        return Err(rejected(format!(
            "executor runs at security level {}, this scheduler at security level {security_level}: set DELICATE_SECURITY_LEVEL to the same value on both",
            hello.security_level
        )));
    }
    let Some((record, actor)) = shared.directory.processor_by_name(&hello.processor_name) else {
        return Err(rejected(format!(
            "no processor named {:?} is registered: create it with POST /api/v1/processors",
            hello.processor_name
        )));
    };
    if security_level < LEVEL_AUTHENTICATED {
        return Ok(JoinTarget {
            processor_id: record.id,
            actor,
            record_key: None,
        });
    }
    let Some(pem) = record.public_key.as_deref() else {
        return Err(rejected(format!(
            "processor {:?} (id {}) has no public key on record: set its public_key to the executor's public key PEM",
            record.name, record.id
        )));
    };
    match keys::parse_public_pem(pem) {
        Ok(key) => Ok(JoinTarget {
            processor_id: record.id,
            actor,
            record_key: Some(key),
        }),
        Err(error) => Err(rejected(format!(
            "the public key on record for processor {:?} (id {}) is invalid: {error}",
            record.name, record.id
        ))),
    }
}

struct SessionContext {
    shared: Arc<Shared>,
    processor_id: Id,
    session_id: u64,
    actor: ActorRef<ProcessorActor>,
    acks: mpsc::Sender<PendingAck>,
}

/// An applied event whose acknowledgement is queued.
struct PendingAck {
    event_seq: u64,
    /// True when the event is acknowledged only once it is on disk.
    after_flush: bool,
}

/// Acknowledgements queued per session before the reader waits for room.
const ACK_QUEUE: usize = 4096;
/// Maximum acknowledgements taken from the queue at a time.
const ACK_BATCH: usize = 1024;
/// Minimum time between two flushes for acknowledgements of one session.
/// Nothing waits on an acknowledgement but the executor's outbox cleanup,
/// so a short delay that lets one flush cover more outcomes costs nothing
/// else, and it cuts the number of flushes under a steady event stream.
const ACK_FLUSH_INTERVAL: Duration = Duration::from_millis(10);

/// Sends the acknowledgements of a session's events in batches. Those that
/// must wait for a flush share one, started at most every
/// [`ACK_FLUSH_INTERVAL`], so a busy executor's outcomes cost one flush per
/// batch and not one each.
async fn acknowledge_events(
    store: crate::storage::Store,
    mut pending: mpsc::Receiver<PendingAck>,
    outgoing: mpsc::Sender<Message>,
) {
    let mut batch = Vec::with_capacity(ACK_BATCH);
    let mut last_flush: Option<tokio::time::Instant> = None;
    while pending.recv_many(&mut batch, ACK_BATCH).await > 0 {
        let needs_flush = batch.iter().any(|ack| ack.after_flush);
        if needs_flush && let Some(last) = last_flush {
            tokio::time::sleep_until(last + ACK_FLUSH_INTERVAL).await;
            while let Ok(ack) = pending.try_recv() {
                batch.push(ack);
            }
        }
        if needs_flush {
            last_flush = Some(tokio::time::Instant::now());
        }
        if needs_flush && let Err(error) = store.durable().await {
            // Not acknowledged: the executor sends the events again on its
            // next connection.
            tracing::error!(%error, events = batch.len(), "failed to flush applied events; acknowledgements withheld");
            batch.clear();
            continue;
        }
        for ack in batch.drain(..) {
            let message = Message::Ack {
                event_seq: ack.event_seq,
            };
            if outgoing.send(message).await.is_err() {
                return;
            }
        }
    }
}

/// Messages taken from a session's buffer at a time, so that the events
/// among them share one store transaction.
const READ_BATCH: usize = 256;

async fn read_session(
    context: &SessionContext,
    reader: &mut FrameReader,
    connection: &quinn::Connection,
) {
    let mut messages = Vec::with_capacity(READ_BATCH);
    loop {
        let mut failure = match reader.next().await {
            Ok(Some(message)) => {
                messages.push(message);
                None
            }
            Ok(None) => return,
            Err(error) => Some(error),
        };
        while failure.is_none() && messages.len() < READ_BATCH {
            match reader.next_buffered() {
                Ok(Some(message)) => messages.push(message),
                Ok(None) => break,
                Err(error) => failure = Some(error),
            }
        }
        // The messages before a bad frame were valid, so they are handled
        // before the session ends.
        if let Err(reason) = handle_messages(context, &mut messages).await {
            reject_frame(&context.shared, connection, &reason);
            return;
        }
        match failure {
            None => {}
            Some(LinkError::Authentication(failure)) => {
                reject_auth_failure(context, connection, failure);
                return;
            }
            Some(error) if error.is_protocol_violation() => {
                reject_frame(&context.shared, connection, &error.to_string());
                return;
            }
            Some(error) => {
                tracing::debug!(%error, "session ended");
                return;
            }
        }
    }
}

/// Handles `messages` in order and empties it. Runs of start and end events
/// are applied as one batch.
async fn handle_messages(
    context: &SessionContext,
    messages: &mut Vec<Message>,
) -> Result<(), String> {
    let mut changes = Vec::new();
    for message in messages.drain(..) {
        match message {
            Message::Event(event)
                if matches!(
                    event.kind,
                    EventKind::Started { .. } | EventKind::Finished(_)
                ) =>
            {
                changes.push(event);
            }
            other => {
                apply_changes(context, &mut changes).await;
                handle_message(context, other).await?;
            }
        }
    }
    apply_changes(context, &mut changes).await;
    Ok(())
}

async fn handle_message(context: &SessionContext, message: Message) -> Result<(), String> {
    let session_id = context.session_id;
    match message {
        Message::Heartbeat(heartbeat) => {
            let _ = context
                .actor
                .tell(HeartbeatReceived {
                    session_id,
                    heartbeat,
                })
                .await;
        }
        Message::RunAccepted { instance_id } => {
            let answer = RunAnswered {
                session_id,
                instance_id,
                result: Ok(()),
            };
            let _ = context.actor.tell(answer).await;
        }
        Message::RunRejected {
            instance_id,
            reason,
        } => {
            let answer = RunAnswered {
                session_id,
                instance_id,
                result: Err(reason),
            };
            let _ = context.actor.tell(answer).await;
        }
        Message::Event(event) => {
            // Output events; start and end events go through `apply_changes`.
            let seq = event.seq;
            if let Err(error) = apply_output(&context.shared, context.processor_id, event) {
                // Not acknowledged: the executor sends it again on its next connection.
                tracing::error!(%error, event.seq = seq, "failed to apply an executor event");
                return Ok(());
            }
            acknowledge(context, seq, false).await;
        }
        other => {
            return Err(format!(
                "unexpected {} message from an executor",
                other.kind()
            ));
        }
    }
    Ok(())
}

/// Queues the acknowledgement of an applied event. `after_flush` delays it
/// back until the event is on disk.
async fn acknowledge(context: &SessionContext, event_seq: u64, after_flush: bool) {
    let ack = PendingAck {
        event_seq,
        after_flush,
    };
    if context.acks.send(ack).await.is_err() {
        tracing::debug!(event.seq = event_seq, "session acknowledger stopped");
    }
}

/// Applies start and end events in one store transaction and empties
/// `events`. End events are acknowledged only once on disk, start events
/// with the next flush.
async fn apply_changes(context: &SessionContext, events: &mut Vec<Event>) {
    if events.is_empty() {
        return;
    }
    let mut positions: HashMap<u64, usize> = HashMap::new();
    let mut grouped: Vec<(u64, Vec<InstanceEvent>)> = Vec::new();
    for event in events.iter() {
        let change = match &event.kind {
            EventKind::Started { at, .. } => InstanceEvent::Started { at: *at },
            EventKind::Finished(outcome) => InstanceEvent::Ended(outcome.clone()),
            _ => continue,
        };
        let position = *positions.entry(event.instance_id).or_insert_with(|| {
            grouped.push((event.instance_id, Vec::new()));
            grouped.len() - 1
        });
        grouped[position].1.push(change);
    }
    let batch: Vec<ReportedEvents<'_>> = grouped
        .iter()
        .map(|(instance_id, changes)| ReportedEvents {
            instance_id: *instance_id,
            events: changes,
        })
        .collect();
    let shared = &context.shared;
    match transitions::apply_reported(shared, context.processor_id, &batch).await {
        Ok(results) => {
            for ((instance_id, changes), result) in grouped.iter().zip(results) {
                match result {
                    Reported::UnknownInstance => warn_unknown_instance(*instance_id),
                    Reported::OtherProcessor => {
                        warn_other_processor(*instance_id, context.processor_id);
                    }
                    Reported::Applied(_) => {
                        shared
                            .metrics
                            .events_applied
                            .fetch_add(changes.len() as u64, Relaxed);
                    }
                }
            }
        }
        Err(error) => {
            // Not acknowledged: the executor sends them again on its next connection.
            tracing::error!(%error, events = events.len(), "failed to apply executor events");
            events.clear();
            return;
        }
    }
    for event in events.drain(..) {
        let after_flush = matches!(event.kind, EventKind::Finished(_));
        acknowledge(context, event.seq, after_flush).await;
    }
}

/// Stores an `Output` or `Tail` event of an instance that is still open.
fn apply_output(shared: &Shared, processor_id: Id, event: Event) -> Result<(), StoreError> {
    let Event {
        instance_id, kind, ..
    } = event;
    let Some(instance) = shared.store.instance(instance_id)? else {
        warn_unknown_instance(instance_id);
        return Ok(());
    };
    if instance.executor_processor_id != Some(processor_id) {
        warn_other_processor(instance_id, processor_id);
        return Ok(());
    }
    shared.metrics.events_applied.fetch_add(1, Relaxed);
    let cap = shared.settings.output_cap;
    let open = matches!(
        instance.status,
        InstanceStatus::Running | InstanceStatus::Unknown
    );
    if !open {
        return Ok(());
    }
    match kind {
        EventKind::Output {
            stream,
            offset,
            bytes,
        } => {
            shared
                .store
                .append_output(instance.id, stream, offset, &bytes, cap)?;
        }
        EventKind::Tail {
            stream,
            keep,
            cut,
            bytes,
        } => {
            let keep = keep.min(cap / 2);
            let tail = &bytes[..bytes.len().min((cap / 2) as usize)];
            shared
                .store
                .apply_output_tail(instance.id, stream, keep, &cut_marker(cut), tail)?;
        }
        EventKind::Started { .. } | EventKind::Finished(_) => {}
    }
    Ok(())
}

fn warn_unknown_instance(instance_id: u64) {
    tracing::warn!(
        instance.id = instance_id,
        "event for an unknown instance ignored"
    );
}

fn warn_other_processor(instance_id: u64, processor_id: Id) {
    tracing::warn!(
        instance.id = instance_id,
        processor.id = processor_id,
        "event for an instance of another processor ignored"
    );
}
