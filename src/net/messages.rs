//! Messages carried in frame payloads.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::lifecycle::Outcome;

/// Version of the message set; the first exchange carries it and a
/// mismatch closes the connection with `VERSION_MISMATCH`. Version 2 added
/// the level-1 join (`Challenge`, `Proof`, the signed `Welcome`).
pub const PROTOCOL_VERSION: u32 = 2;

/// Which of an instance's output streams a chunk belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// Executor to scheduler, first frame of a connection.
    Hello(Hello),
    /// Scheduler to executor at security level 1, after Hello: its nonce.
    Challenge(Challenge),
    /// Executor to scheduler at security level 1, after Challenge.
    Proof(Proof),
    /// Scheduler to executor: the join is accepted.
    Welcome(Welcome),
    /// Scheduler to executor, just before closing: why the join failed.
    JoinRejected { reason: String },
    /// Executor to scheduler, every second.
    Heartbeat(Heartbeat),
    /// Scheduler to executor: start an instance.
    Run(RunRequest),
    /// Executor to scheduler: the instance was taken and will report events.
    RunAccepted { instance_id: u64 },
    /// Executor to scheduler: the instance was not taken.
    RunRejected { instance_id: u64, reason: String },
    /// Scheduler to executor: cancel a running instance.
    Kill { instance_id: u64 },
    /// Executor to scheduler: an instance event from the outbox.
    Event(Event),
    /// Scheduler to executor: the event with this outbox sequence is stored.
    Ack { event_seq: u64 },
}

impl Message {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello(_) => "hello",
            Message::Challenge(_) => "challenge",
            Message::Proof(_) => "proof",
            Message::Welcome(_) => "welcome",
            Message::JoinRejected { .. } => "join_rejected",
            Message::Heartbeat(_) => "heartbeat",
            Message::Run(_) => "run",
            Message::RunAccepted { .. } => "run_accepted",
            Message::RunRejected { .. } => "run_rejected",
            Message::Kill { .. } => "kill",
            Message::Event(_) => "event",
            Message::Ack { .. } => "ack",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol_version: u32,
    /// The processor record this executor claims to be.
    pub processor_name: String,
    pub security_level: u8,
    /// Version of the executor binary.
    pub agent_version: String,
    /// Random bytes for the signed handshake at level 1; empty at level 0.
    pub nonce: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Challenge {
    /// 32 random bytes of the scheduler for the signed handshake.
    pub nonce: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Proof {
    /// The executor's public key (SubjectPublicKeyInfo DER), so a rejection
    /// can name the key the executor holds. The scheduler verifies with the
    /// key on record, never with this one.
    pub public_key: Vec<u8>,
    /// RSA-PSS (SHA-256) signature of the executor's join transcript.
    pub signature: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    pub protocol_version: u32,
    pub processor_id: u64,
    pub machine_id: u16,
    /// How often the executor sends heartbeats.
    pub heartbeat_interval_ms: u64,
    /// RSA-PSS (SHA-256) signature of the scheduler's join transcript;
    /// empty at security level 0.
    pub signature: Vec<u8>,
    /// The session token, RSA-OAEP (SHA-256) encrypted with the executor's
    /// public key; empty at security level 0.
    pub encrypted_token: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Share of all cores in use, 0.0 to 100.0.
    pub cpu_usage: f32,
    /// Bytes.
    pub memory_used: u64,
    /// Bytes.
    pub memory_total: u64,
    pub running_instances: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRequest {
    pub instance_id: u64,
    pub task_id: u64,
    pub command: String,
    pub env: BTreeMap<String, String>,
    pub run_as: Option<String>,
    pub stdin: Option<Vec<u8>>,
    /// Seconds; 0 means none.
    pub timeout: u64,
    /// Milliseconds between SIGTERM and SIGKILL on timeout or kill.
    pub kill_grace_ms: u64,
    /// Bytes kept per output stream.
    pub output_cap: u64,
}

/// An instance event, numbered by the executor's outbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Outbox sequence: increases across restarts of the executor.
    pub seq: u64,
    pub instance_id: u64,
    pub kind: EventKind,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum EventKind {
    Started {
        pid: u32,
        at: DateTime<Utc>,
    },
    /// Live output: `bytes` belong at `offset` of the stored stream.
    Output {
        stream: Stream,
        offset: u64,
        bytes: Vec<u8>,
    },
    /// End of a stream that exceeded its cap: keep the first `keep` bytes,
    /// then a marker saying `cut` bytes were cut, then `bytes`.
    Tail {
        stream: Stream,
        keep: u64,
        cut: u64,
        bytes: Vec<u8>,
    },
    Finished(Outcome),
}
