//! The executor's connection to its scheduler: connect, join, serve one
//! session, and reconnect with capped exponential backoff and full jitter.
//!
//! One task runs [`run_link`] for the life of the node. Each session has a
//! reader, which forwards `Run`, `Kill` and `Ack` to the node, and a writer,
//! which sends the node's replies and heartbeats first and then every outbox
//! event up to the node's `sendable` seq. A new session starts its writer at
//! seq 0, so every unacknowledged event is resent in order before new ones.
//!
//! Nothing the scheduler sends can make this module panic: frames are checked
//! by [`FrameReader`], and a malformed frame or a message out of place closes
//! the connection with [`close_code::PROTOCOL_ERROR`].

use std::net::SocketAddr;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{Instrument, debug, error, info, info_span, warn};

use super::outbox::{Outbox, OutboxError};
use crate::net::close_code;
use crate::net::join::{self, ExecutorCredentials, HandshakeError};
use crate::net::link::{AuthFailure, FrameReader, FrameWriter, LinkError, OUTGOING_QUEUE};
use crate::net::messages::{Hello, Message, Welcome};
use crate::net::tls::SERVER_NAME;

/// Limit on the QUIC handshake. Without it a scheduler that does not respond
/// keeps an attempt waiting until the 15 s idle timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Limit on each wait for a reply of the scheduler during the join.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// First reconnect delay cap; it doubles after every failure.
const BACKOFF_INITIAL: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A session that lasted this long resets the backoff, so one drop after a
/// long healthy session reconnects quickly.
const STABLE_SESSION: Duration = Duration::from_secs(30);
/// Outbox events read from sled and written per batch.
const WRITE_BATCH: usize = 64;
/// Bounds accepted for `Welcome::heartbeat_interval_ms`; 0 means the default.
const HEARTBEAT_MIN: Duration = Duration::from_millis(50);
const HEARTBEAT_MAX: Duration = Duration::from_secs(60);
const HEARTBEAT_DEFAULT: Duration = Duration::from_secs(1);

/// Report from the link task to the node task.
pub(crate) enum LinkEvent {
    Joined(Session),
    /// A `Run`, `Kill` or `Ack` from the scheduler.
    Inbound {
        session: u64,
        message: Message,
    },
    Left {
        session: u64,
    },
}

/// A joined connection, as handed to the node task.
pub(crate) struct Session {
    pub id: u64,
    /// Replies and heartbeats; the writer sends them ahead of outbox events.
    pub control: mpsc::Sender<Message>,
    pub connection: quinn::Connection,
    pub heartbeat_interval: Duration,
}

/// Everything the link task needs.
pub(crate) struct Link {
    pub endpoint: quinn::Endpoint,
    pub scheduler: SocketAddr,
    pub hello: Hello,
    /// The executor's key pair and the scheduler's public key, at security
    /// level 1.
    pub credentials: Option<ExecutorCredentials>,
    pub outbox: Outbox,
    /// Highest outbox seq the writer may send: the node holds back events
    /// behind a `Finished` event that is not flushed to disk yet.
    pub sendable: watch::Receiver<u64>,
    pub events: mpsc::Sender<LinkEvent>,
    /// Becomes true when the node shuts down.
    pub stop: watch::Receiver<bool>,
}

/// Connects, serves and reconnects until `link.stop` becomes true or the
/// node stops listening.
pub(crate) async fn run_link(link: Link) {
    let mut stop = link.stop.clone();
    let mut backoff = Backoff::new();
    let mut failures: u32 = 0;
    let mut next_session: u64 = 1;

    loop {
        if *stop.borrow() {
            return;
        }
        let span = info_span!("executor.connection", peer.addr = %link.scheduler);
        let joined = tokio::select! {
            joined = link.join().instrument(span.clone()) => joined,
            _ = stopped(&mut stop) => return,
        };

        match joined {
            Ok(joined) => {
                failures = 0;
                let session = next_session;
                next_session += 1;
                let started = Instant::now();
                let node_alive = link.serve(joined, session).instrument(span).await;
                if !node_alive {
                    return;
                }
                if started.elapsed() >= STABLE_SESSION {
                    backoff.reset();
                }
            }
            Err(error) => {
                failures += 1;
                span.in_scope(|| log_join_failure(&error, link.scheduler, failures));
            }
        }

        let delay = backoff.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopped(&mut stop) => return,
        }
    }
}

/// Waits until the stop flag is set or its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

fn log_join_failure(error: &JoinError, scheduler: SocketAddr, attempt: u32) {
    match error {
        JoinError::Handshake(
            HandshakeError::Rejected { .. } | HandshakeError::VersionMismatch { .. },
        ) => {
            error!(peer.addr = %scheduler, attempt, %error, "the scheduler rejected the join, retrying later");
        }
        JoinError::Handshake(HandshakeError::SchedulerNotAuthenticated { .. }) => {
            error!(peer.addr = %scheduler, attempt, %error, "not joining: the scheduler failed authentication, retrying later");
        }
        _ => {
            warn!(peer.addr = %scheduler, attempt, %error, "failed to join the scheduler, retrying")
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum JoinError {
    #[error("failed to start a QUIC connection: {0}")]
    Connect(#[from] quinn::ConnectError),
    #[error("QUIC connection failed: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("timed out after {0:?} waiting for {1}")]
    TimedOut(Duration, &'static str),
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
}

impl JoinError {
    fn close_code(&self) -> u32 {
        match self {
            JoinError::Handshake(error) => error.close_code(),
            _ => close_code::NORMAL,
        }
    }
}

/// A connection that completed the join.
struct Joined {
    connection: quinn::Connection,
    reader: FrameReader,
    writer: FrameWriter,
    welcome: Welcome,
}

/// Cause of the end of a session.
enum SessionEnd {
    Protocol(String),
    Authentication(AuthFailure),
    Rejected(String),
    PeerFinished,
    Lost(LinkError),
    WriteFailed(String),
    /// The node dropped the session's control sender.
    Dropped,
    /// The node dropped its receiver: it is stopping.
    NodeGone,
}

impl Link {
    async fn join(&self) -> Result<Joined, JoinError> {
        let connecting = self.endpoint.connect(self.scheduler, SERVER_NAME)?;
        let connection = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| JoinError::TimedOut(CONNECT_TIMEOUT, "the QUIC handshake"))??;

        let result = self.exchange_hello(&connection).await;
        if let Err(error) = &result {
            connection.close(error.close_code().into(), b"join failed");
        }
        result
    }

    async fn exchange_hello(&self, connection: &quinn::Connection) -> Result<Joined, JoinError> {
        let (send, recv) = connection.open_bi().await?;
        let mut writer = FrameWriter::new(send);
        let mut reader = FrameReader::new(recv);
        let joined = join::join_scheduler(
            connection,
            &mut reader,
            &mut writer,
            self.hello.clone(),
            self.credentials.as_ref(),
            JOIN_TIMEOUT,
        )
        .await?;
        Ok(Joined {
            connection: connection.clone(),
            reader,
            writer,
            welcome: joined.welcome,
        })
    }

    /// Serves one joined session until it ends. Returns false if the node is
    /// gone, so the link must stop too.
    async fn serve(&self, joined: Joined, session: u64) -> bool {
        let Joined {
            connection,
            mut reader,
            writer,
            welcome,
        } = joined;
        info!(
            processor.id = welcome.processor_id,
            machine.id = welcome.machine_id,
            "joined the scheduler"
        );

        let (control, control_receiver) = mpsc::channel(OUTGOING_QUEUE);
        let mut writer_task = tokio::spawn(
            write_session(
                writer,
                control_receiver,
                self.outbox.clone(),
                self.sendable.clone(),
            )
            .in_current_span(),
        );
        let joined = LinkEvent::Joined(Session {
            id: session,
            control,
            connection: connection.clone(),
            heartbeat_interval: heartbeat_interval(welcome.heartbeat_interval_ms),
        });

        let mut writer_done = false;
        let end = if self.events.send(joined).await.is_err() {
            SessionEnd::NodeGone
        } else {
            tokio::select! {
                end = read_session(&mut reader, session, &self.events) => end,
                written = &mut writer_task => {
                    writer_done = true;
                    match written {
                        Ok(Ok(())) => SessionEnd::Dropped,
                        Ok(Err(error)) => SessionEnd::WriteFailed(error),
                        Err(error) => SessionEnd::WriteFailed(error.to_string()),
                    }
                }
            }
        };
        if !writer_done {
            writer_task.abort();
            // The task was aborted, so its result carries no information.
            let _ = writer_task.await;
        }

        let node_alive = !matches!(end, SessionEnd::NodeGone);
        close_session(&connection, end);
        node_alive && self.events.send(LinkEvent::Left { session }).await.is_ok()
    }
}

fn heartbeat_interval(millis: u64) -> Duration {
    if millis == 0 {
        return HEARTBEAT_DEFAULT;
    }
    Duration::from_millis(millis).clamp(HEARTBEAT_MIN, HEARTBEAT_MAX)
}

fn close_session(connection: &quinn::Connection, end: SessionEnd) {
    match end {
        SessionEnd::Protocol(error) => {
            warn!(%error, "protocol error from the scheduler, closing the connection");
            connection.close(close_code::PROTOCOL_ERROR.into(), b"protocol error");
        }
        SessionEnd::Authentication(failure) => {
            warn!(
                peer.addr = %connection.remote_address(),
                reason = failure.reason(),
                error = %failure,
                "frame from the scheduler failed authentication, closing the connection"
            );
            connection.close(
                close_code::AUTHENTICATION_FAILED.into(),
                b"frame failed authentication",
            );
        }
        SessionEnd::Rejected(reason) => {
            error!(%reason, "the scheduler ended the session");
            connection.close(close_code::NORMAL.into(), b"");
        }
        SessionEnd::PeerFinished => {
            info!("the scheduler finished the stream");
            connection.close(close_code::NORMAL.into(), b"");
        }
        SessionEnd::Lost(error) => {
            if let Some(quinn::ConnectionError::LocallyClosed) = connection.close_reason() {
                debug!("connection closed by this executor");
            } else {
                warn!(%error, "connection to the scheduler lost");
            }
        }
        SessionEnd::WriteFailed(error) => {
            warn!(%error, "failed to send to the scheduler, closing the connection");
            connection.close(close_code::NORMAL.into(), b"");
        }
        SessionEnd::Dropped => connection.close(close_code::NORMAL.into(), b""),
        SessionEnd::NodeGone => {}
    }
    info!("left the scheduler");
}

/// Forwards the scheduler's messages to the node until the session ends.
async fn read_session(
    reader: &mut FrameReader,
    session: u64,
    events: &mpsc::Sender<LinkEvent>,
) -> SessionEnd {
    loop {
        let message = match reader.next().await {
            Ok(Some(message)) => message,
            Ok(None) => return SessionEnd::PeerFinished,
            Err(LinkError::Authentication(failure)) => {
                return SessionEnd::Authentication(failure);
            }
            Err(error) if error.is_protocol_violation() => {
                return SessionEnd::Protocol(error.to_string());
            }
            Err(error) => return SessionEnd::Lost(error),
        };
        match message {
            Message::Run(_) | Message::Kill { .. } | Message::Ack { .. } => {
                if events
                    .send(LinkEvent::Inbound { session, message })
                    .await
                    .is_err()
                {
                    return SessionEnd::NodeGone;
                }
            }
            Message::JoinRejected { reason } => return SessionEnd::Rejected(reason),
            other => {
                return SessionEnd::Protocol(format!(
                    "unexpected {} message after the join",
                    other.kind()
                ));
            }
        }
    }
}

/// Sends control messages as they come and outbox events up to `sendable`.
/// Returns `Ok` when the node drops the control sender.
async fn write_session(
    mut writer: FrameWriter,
    mut control: mpsc::Receiver<Message>,
    outbox: Outbox,
    mut sendable: watch::Receiver<u64>,
) -> Result<(), String> {
    // Highest seq already written in this session.
    let mut cursor = 0u64;
    loop {
        while let Ok(message) = control.try_recv() {
            writer.queue(&message).map_err(|e| e.to_string())?;
        }
        let up_to = *sendable.borrow_and_update();
        if cursor < up_to {
            cursor =
                queue_events(&mut writer, &outbox, cursor, up_to).map_err(|e| e.to_string())?;
        }
        writer.flush().await.map_err(|e| e.to_string())?;
        if cursor < up_to {
            continue;
        }

        tokio::select! {
            biased;
            message = control.recv() => match message {
                Some(message) => writer.queue(&message).map_err(|e| e.to_string())?,
                None => {
                    writer.finish();
                    return Ok(());
                }
            },
            changed = sendable.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum QueueError {
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error(transparent)]
    Link(#[from] LinkError),
}

/// Queues one batch of events after `cursor` and returns the new cursor.
fn queue_events(
    writer: &mut FrameWriter,
    outbox: &Outbox,
    cursor: u64,
    up_to: u64,
) -> Result<u64, QueueError> {
    let batch = outbox.events_between(cursor, up_to, WRITE_BATCH)?;
    let complete = batch.len() < WRITE_BATCH;
    let mut cursor = cursor;
    for event in batch {
        cursor = event.seq;
        writer.queue(&Message::Event(event))?;
    }
    // A short batch means no entry is left in the range: acknowledged ones
    // were removed, so the seqs may have gaps.
    Ok(if complete { up_to } else { cursor })
}

/// Reconnect delays: a random delay between 0 and a cap that doubles after
/// every failure, up to [`BACKOFF_MAX`] ("full jitter").
struct Backoff {
    cap: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff {
            cap: BACKOFF_INITIAL,
        }
    }

    fn next_delay(&mut self) -> Duration {
        let cap_ms = self.cap.as_millis() as u64;
        let delay = Duration::from_millis(rand::rng().random_range(0..=cap_ms));
        self.cap = (self.cap * 2).min(BACKOFF_MAX);
        delay
    }

    fn reset(&mut self) {
        self.cap = BACKOFF_INITIAL;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_cap_and_resets() {
        let mut backoff = Backoff::new();
        let mut caps = Vec::new();
        for _ in 0..8 {
            caps.push(backoff.cap);
            let delay = backoff.next_delay();
            assert!(delay <= *caps.last().unwrap());
        }
        assert_eq!(caps[0], BACKOFF_INITIAL);
        assert_eq!(caps[1], BACKOFF_INITIAL * 2);
        assert_eq!(backoff.cap, BACKOFF_MAX);
        backoff.reset();
        assert_eq!(backoff.cap, BACKOFF_INITIAL);
    }

    #[test]
    fn heartbeat_interval_is_clamped() {
        assert_eq!(heartbeat_interval(0), HEARTBEAT_DEFAULT);
        assert_eq!(heartbeat_interval(1), HEARTBEAT_MIN);
        assert_eq!(heartbeat_interval(u64::MAX), HEARTBEAT_MAX);
        assert_eq!(heartbeat_interval(250), Duration::from_millis(250));
    }
}
