//! The join handshake, executor side and scheduler side.
//!
//! At security level 0 the executor sends `Hello` and the scheduler replies
//! with `Welcome` or `JoinRejected`. At level 1 the frames are:
//!
//! ```text
//! executor                                     scheduler
//!   Hello { nonce: 32 random bytes }      ->
//!                                         <-   Challenge { nonce: 32 random bytes }
//!   Proof { public_key, signature }       ->   verifies with the key on record
//!                                         <-   Welcome { signature, encrypted_token }
//!   verifies with the scheduler's key,
//!   decrypts the token
//! ```
//!
//! Each side signs the [`Transcript`] with RSA-PSS (SHA-256) under its own
//! role. The transcript holds the TLS exporter secret of the QUIC
//! connection, so a signature is valid on that connection only: a recorded
//! handshake fails on another connection, and a relay that terminates TLS
//! sees different exporter secrets on its two sides. The scheduler signs and
//! the executor decrypts only after the other side's signature verified.
//! After `Welcome` both sides MAC every frame under the session token.

use std::time::Duration;

use rsa::PublicKey;

use super::close_code;
use super::link::{FrameReader, FrameWriter, LinkError};
use super::messages::{Challenge, Hello, Message, PROTOCOL_VERSION, Proof, Welcome};
use crate::security::keys::{self, KeyError, KeyPair};
use crate::security::mac::{Direction, FrameMac};
use crate::security::{LEVEL_AUTHENTICATED, SessionToken};

/// Length of each side's nonce.
pub const NONCE_LEN: usize = 32;
/// Label of the TLS exporter secret bound into the transcript (RFC 8446 §7.5).
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-delicate-join";
/// Length of the exported secret.
pub const EXPORTER_LEN: usize = 32;
/// First bytes of every transcript, so its signatures mean nothing elsewhere.
const TRANSCRIPT_TAG: &[u8] = b"delicate join transcript";

/// Whose signature a transcript is for. The two sides sign different
/// bytes, so one side's signature cannot be passed off as the other's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Executor,
    Scheduler,
}

impl Role {
    fn label(self) -> &'static [u8] {
        match self {
            Role::Executor => b"executor",
            Role::Scheduler => b"scheduler",
        }
    }
}

/// The fields both signatures of a join cover.
#[derive(Clone, Copy, Debug)]
pub struct Transcript<'a> {
    pub protocol_version: u32,
    pub processor_name: &'a str,
    pub executor_nonce: &'a [u8],
    pub scheduler_nonce: &'a [u8],
    /// TLS exporter secret of the connection, under [`EXPORTER_LABEL`].
    pub exporter: &'a [u8],
}

impl Transcript<'_> {
    /// Encodes the transcript for `role`: the tag, then the role, the
    /// protocol version (u32), the processor name, both nonces and the
    /// exporter secret. Integers are big-endian, and every variable field
    /// has a length prefix (u16 for the name, u8 for the rest), so no two
    /// transcripts encode alike.
    pub fn bytes(&self, role: Role) -> Vec<u8> {
        let mut out = Vec::with_capacity(192 + self.processor_name.len());
        out.extend_from_slice(TRANSCRIPT_TAG);
        push_short(&mut out, role.label());
        out.extend_from_slice(&self.protocol_version.to_be_bytes());
        let name = self.processor_name.as_bytes();
        let name = &name[..name.len().min(usize::from(u16::MAX))];
        out.extend_from_slice(&(name.len() as u16).to_be_bytes());
        out.extend_from_slice(name);
        push_short(&mut out, self.executor_nonce);
        push_short(&mut out, self.scheduler_nonce);
        push_short(&mut out, self.exporter);
        out
    }
}

/// Appends a field of at most 255 bytes with its u8 length. Longer fields
/// never reach here, because nonces and the exporter have fixed lengths.
fn push_short(out: &mut Vec<u8>, field: &[u8]) {
    let field = &field[..field.len().min(255)];
    out.push(field.len() as u8);
    out.extend_from_slice(field);
}

/// Exports this connection's secret for the transcript.
pub fn exporter_secret(
    connection: &quinn::Connection,
) -> Result<[u8; EXPORTER_LEN], HandshakeError> {
    let mut secret = [0u8; EXPORTER_LEN];
    connection
        .export_keying_material(&mut secret, EXPORTER_LABEL, b"")
        .map_err(|_| HandshakeError::Exporter)?;
    Ok(secret)
}

/// Draws a nonce from the operating system's random generator.
pub fn fresh_nonce() -> Result<Vec<u8>, HandshakeError> {
    let mut nonce = vec![0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|error| HandshakeError::Random(error.to_string()))?;
    Ok(nonce)
}

/// Keys an executor uses at security level 1.
#[derive(Clone, Debug)]
pub struct ExecutorCredentials {
    /// The executor's own key pair.
    pub keys: std::sync::Arc<KeyPair>,
    /// The scheduler's public key.
    pub scheduler_key: PublicKey,
}

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("timed out after {0:?} waiting for {1}")]
    TimedOut(Duration, &'static str),
    #[error("join rejected: {reason}")]
    Rejected { reason: String },
    #[error(
        "protocol version mismatch: this executor speaks version {PROTOCOL_VERSION}, \
         the scheduler {scheduler}"
    )]
    VersionMismatch { scheduler: String },
    #[error("expected {expected}, got {got}")]
    Unexpected {
        expected: &'static str,
        got: &'static str,
    },
    #[error("the scheduler closed the stream before answering")]
    NoAnswer,
    #[error("security level 1 needs the executor's key pair and the scheduler's public key")]
    MissingCredentials,
    #[error("the scheduler's nonce has {0} bytes, expected {NONCE_LEN}")]
    BadNonce(usize),
    #[error("the operating system's random generator failed: {0}")]
    Random(String),
    #[error("failed to export the TLS keying material of the connection")]
    Exporter,
    #[error(
        "the scheduler's signature does not verify with the configured scheduler public key \
         {fingerprint}: the peer is not that scheduler, or DELICATE_SECURITY_PUBLIC_KEY names \
         the wrong key"
    )]
    SchedulerNotAuthenticated { fingerprint: String },
    #[error("the session token from the scheduler is invalid: {0}")]
    BadToken(String),
    #[error("failed to sign the join transcript: {0}")]
    Sign(KeyError),
}

impl HandshakeError {
    /// Code the executor closes the connection with after this error.
    pub fn close_code(&self) -> u32 {
        match self {
            HandshakeError::VersionMismatch { .. } => close_code::VERSION_MISMATCH,
            HandshakeError::Unexpected { .. } | HandshakeError::BadNonce(_) => {
                close_code::PROTOCOL_ERROR
            }
            HandshakeError::Link(error) if error.is_protocol_violation() => {
                close_code::PROTOCOL_ERROR
            }
            HandshakeError::SchedulerNotAuthenticated { .. } | HandshakeError::BadToken(_) => {
                close_code::AUTHENTICATION_FAILED
            }
            _ => close_code::NORMAL,
        }
    }
}

/// A completed join, executor side.
#[derive(Debug)]
pub struct JoinedSession {
    pub welcome: Welcome,
    /// The session token at security level 1. MACs keyed with it are
    /// already enabled on the reader and the writer.
    pub token: Option<SessionToken>,
}

/// Runs the executor side of the join on a fresh stream. At level 1 it
/// replaces `hello.nonce` with a fresh nonce, and on success leaves MACs
/// enabled on `reader` and `writer`.
pub async fn join_scheduler(
    connection: &quinn::Connection,
    reader: &mut FrameReader,
    writer: &mut FrameWriter,
    mut hello: Hello,
    credentials: Option<&ExecutorCredentials>,
    timeout: Duration,
) -> Result<JoinedSession, HandshakeError> {
    let credentials = match hello.security_level {
        LEVEL_AUTHENTICATED => Some(credentials.ok_or(HandshakeError::MissingCredentials)?),
        _ => None,
    };
    hello.nonce = match credentials {
        Some(_) => fresh_nonce()?,
        None => Vec::new(),
    };
    writer.send(&Message::Hello(hello.clone())).await?;

    let Some(credentials) = credentials else {
        let answer = read_answer(connection, reader, timeout, "Welcome").await?;
        let welcome = expect_welcome(answer)?;
        return Ok(JoinedSession {
            welcome,
            token: None,
        });
    };

    let challenge = match read_answer(connection, reader, timeout, "Challenge").await? {
        Message::Challenge(challenge) => challenge,
        other => return Err(unexpected_answer(other, "Challenge")),
    };
    if challenge.nonce.len() != NONCE_LEN {
        return Err(HandshakeError::BadNonce(challenge.nonce.len()));
    }
    let exporter = exporter_secret(connection)?;
    let transcript = Transcript {
        protocol_version: PROTOCOL_VERSION,
        processor_name: &hello.processor_name,
        executor_nonce: &hello.nonce,
        scheduler_nonce: &challenge.nonce,
        exporter: &exporter,
    };
    let signature = credentials
        .keys
        .sign(&transcript.bytes(Role::Executor))
        .map_err(HandshakeError::Sign)?;
    let proof = Proof {
        public_key: keys::public_der(credentials.keys.public_key()),
        signature,
    };
    writer.send(&Message::Proof(proof)).await?;

    let answer = read_answer(connection, reader, timeout, "Welcome").await?;
    let welcome = expect_welcome(answer)?;
    let scheduler_transcript = transcript.bytes(Role::Scheduler);
    if keys::verify(
        &credentials.scheduler_key,
        &scheduler_transcript,
        &welcome.signature,
    )
    .is_err()
    {
        return Err(HandshakeError::SchedulerNotAuthenticated {
            fingerprint: keys::fingerprint(&credentials.scheduler_key),
        });
    }
    let plaintext = credentials
        .keys
        .decrypt(&welcome.encrypted_token)
        .map_err(|error| HandshakeError::BadToken(error.to_string()))?;
    let token = SessionToken::from_slice(&plaintext)
        .ok_or_else(|| HandshakeError::BadToken(format!("{} bytes", plaintext.len())))?;

    reader.enable_mac(FrameMac::new(&token, Direction::SchedulerToExecutor));
    writer.enable_mac(FrameMac::new(&token, Direction::ExecutorToScheduler));
    Ok(JoinedSession {
        welcome,
        token: Some(token),
    })
}

async fn read_answer(
    connection: &quinn::Connection,
    reader: &mut FrameReader,
    timeout: Duration,
    expected: &'static str,
) -> Result<Message, HandshakeError> {
    let answer = tokio::time::timeout(timeout, reader.next())
        .await
        .map_err(|_| HandshakeError::TimedOut(timeout, expected))?;
    match answer {
        Ok(Some(message)) => Ok(message),
        Ok(None) => Err(HandshakeError::NoAnswer),
        Err(error) => Err(rejection_from_close(connection).unwrap_or(error.into())),
    }
}

fn expect_welcome(answer: Message) -> Result<Welcome, HandshakeError> {
    match answer {
        Message::Welcome(welcome) if welcome.protocol_version == PROTOCOL_VERSION => Ok(welcome),
        Message::Welcome(welcome) => Err(HandshakeError::VersionMismatch {
            scheduler: format!("version {}", welcome.protocol_version),
        }),
        other => Err(unexpected_answer(other, "Welcome")),
    }
}

fn unexpected_answer(answer: Message, expected: &'static str) -> HandshakeError {
    match answer {
        Message::JoinRejected { reason } => HandshakeError::Rejected { reason },
        other => HandshakeError::Unexpected {
            expected,
            got: other.kind(),
        },
    }
}

/// Recognises a scheduler that closed the connection to reject the join:
/// for our protocol version, which it does instead of sending
/// `JoinRejected`, or with a reason that arrived before the frame did.
fn rejection_from_close(connection: &quinn::Connection) -> Option<HandshakeError> {
    let quinn::ConnectionError::ApplicationClosed(close) = connection.close_reason()? else {
        return None;
    };
    let reason = String::from_utf8_lossy(&close.reason).into_owned();
    let code = u32::try_from(close.error_code.into_inner()).ok()?;
    match code {
        close_code::VERSION_MISMATCH => Some(HandshakeError::VersionMismatch {
            scheduler: format!("rejected it: {reason}"),
        }),
        close_code::JOIN_REJECTED
        | close_code::AUTHENTICATION_FAILED
        | close_code::TOO_MANY_JOINS => Some(HandshakeError::Rejected { reason }),
        _ => None,
    }
}

/// A failed join, scheduler side: the close code and the reason sent in
/// `JoinRejected`.
#[derive(Debug)]
pub struct Rejection {
    pub code: u32,
    pub reason: String,
}

impl Rejection {
    fn new(code: u32, reason: String) -> Rejection {
        Rejection { code, reason }
    }
}

/// The scheduler's part of `Welcome` after a level-1 join, and the token.
#[derive(Debug)]
pub struct Admission {
    pub signature: Vec<u8>,
    pub encrypted_token: Vec<u8>,
    pub token: SessionToken,
}

/// Runs the scheduler side of a level-1 join after `hello` was read and
/// checked: sends `Challenge`, checks `Proof` against `record_key`, the
/// public key on record for the processor, and signs the transcript.
/// On success MACs are enabled on `reader`, and the caller sends `Welcome`
/// before it enables them on its writer.
pub async fn admit_executor(
    connection: &quinn::Connection,
    reader: &mut FrameReader,
    writer: &mut FrameWriter,
    hello: &Hello,
    record_key: &PublicKey,
    keys: &KeyPair,
    timeout: Duration,
) -> Result<Admission, Rejection> {
    let name = &hello.processor_name;
    if hello.nonce.len() != NONCE_LEN {
        return Err(Rejection::new(
            close_code::PROTOCOL_ERROR,
            format!(
                "the Hello nonce has {} bytes, expected {NONCE_LEN}",
                hello.nonce.len()
            ),
        ));
    }
    let internal = |what: &str, error: String| {
        tracing::error!(%error, "{what} failed during a join");
        Rejection::new(
            close_code::JOIN_REJECTED,
            format!("internal error of the scheduler: {what} failed"),
        )
    };
    let nonce =
        fresh_nonce().map_err(|error| internal("the random generator", error.to_string()))?;
    let challenge = Message::Challenge(Challenge {
        nonce: nonce.clone(),
    });
    if let Err(error) = writer.send(&challenge).await {
        return Err(Rejection::new(
            close_code::NORMAL,
            format!("failed to send Challenge: {error}"),
        ));
    }

    let proof = match tokio::time::timeout(timeout, reader.next()).await {
        Ok(Ok(Some(Message::Proof(proof)))) => proof,
        Ok(Ok(Some(other))) => {
            return Err(Rejection::new(
                close_code::PROTOCOL_ERROR,
                format!("expected Proof after Challenge, got {}", other.kind()),
            ));
        }
        Ok(Ok(None)) => {
            return Err(Rejection::new(
                close_code::NORMAL,
                "the executor closed the stream before Proof".into(),
            ));
        }
        Ok(Err(error)) => {
            return Err(Rejection::new(
                close_code::PROTOCOL_ERROR,
                error.to_string(),
            ));
        }
        Err(_) => {
            return Err(Rejection::new(
                close_code::PROTOCOL_ERROR,
                format!("timed out after {timeout:?} waiting for Proof"),
            ));
        }
    };

    let record_fingerprint = keys::fingerprint(record_key);
    if proof.public_key != keys::public_der(record_key) {
        let presented = keys::parse_public_der(&proof.public_key)
            .map(|key| keys::fingerprint(&key))
            .unwrap_or_else(|_| "an invalid key".into());
        return Err(Rejection::new(
            close_code::JOIN_REJECTED,
            format!(
                "processor {name:?} presented public key {presented}, but its record holds \
                 {record_fingerprint}: set the processor's public_key to the executor's public key"
            ),
        ));
    }

    let exporter = exporter_secret(connection)
        .map_err(|error| internal("the TLS exporter", error.to_string()))?;
    let transcript = Transcript {
        protocol_version: PROTOCOL_VERSION,
        processor_name: name,
        executor_nonce: &hello.nonce,
        scheduler_nonce: &nonce,
        exporter: &exporter,
    };
    if keys::verify(
        record_key,
        &transcript.bytes(Role::Executor),
        &proof.signature,
    )
    .is_err()
    {
        return Err(Rejection::new(
            close_code::AUTHENTICATION_FAILED,
            format!(
                "the join signature of processor {name:?} does not verify with its public key \
                 {record_fingerprint} on this connection: the handshake was replayed or relayed"
            ),
        ));
    }

    let signature = keys
        .sign(&transcript.bytes(Role::Scheduler))
        .map_err(|error| internal("signing the transcript", error.to_string()))?;
    let token = SessionToken::generate()
        .map_err(|error| internal("the random generator", error.to_string()))?;
    let encrypted_token = keys::encrypt(record_key, token.expose().as_ref())
        .map_err(|error| internal("encrypting the session token", error.to_string()))?;
    reader.enable_mac(FrameMac::new(&token, Direction::ExecutorToScheduler));
    Ok(Admission {
        signature,
        encrypted_token,
        token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcript<'a>(exporter: &'a [u8], name: &'a str) -> Transcript<'a> {
        Transcript {
            protocol_version: PROTOCOL_VERSION,
            processor_name: name,
            executor_nonce: &[1; NONCE_LEN],
            scheduler_nonce: &[2; NONCE_LEN],
            exporter,
        }
    }

    #[test]
    fn roles_sign_different_bytes() {
        let t = transcript(&[3; EXPORTER_LEN], "e1");
        assert_ne!(t.bytes(Role::Executor), t.bytes(Role::Scheduler));
    }

    #[test]
    fn every_field_changes_the_transcript() {
        let base = transcript(&[3; EXPORTER_LEN], "e1").bytes(Role::Executor);
        assert_ne!(
            base,
            transcript(&[4; EXPORTER_LEN], "e1").bytes(Role::Executor),
            "exporter"
        );
        assert_ne!(
            base,
            transcript(&[3; EXPORTER_LEN], "e2").bytes(Role::Executor),
            "name"
        );
        let mut t = transcript(&[3; EXPORTER_LEN], "e1");
        t.protocol_version += 1;
        assert_ne!(base, t.bytes(Role::Executor), "version");
        let mut t = transcript(&[3; EXPORTER_LEN], "e1");
        t.executor_nonce = &[9; NONCE_LEN];
        assert_ne!(base, t.bytes(Role::Executor), "executor nonce");
        let mut t = transcript(&[3; EXPORTER_LEN], "e1");
        t.scheduler_nonce = &[9; NONCE_LEN];
        assert_ne!(base, t.bytes(Role::Executor), "scheduler nonce");
    }

    #[test]
    fn signature_does_not_verify_under_another_exporter() {
        let keys = KeyPair::generate(keys::MIN_KEY_BITS).unwrap();
        let signed = transcript(&[3; EXPORTER_LEN], "e1").bytes(Role::Executor);
        let signature = keys.sign(&signed).unwrap();
        let replayed = transcript(&[4; EXPORTER_LEN], "e1").bytes(Role::Executor);
        assert!(keys::verify(keys.public_key(), &signed, &signature).is_ok());
        assert!(keys::verify(keys.public_key(), &replayed, &signature).is_err());
    }
}
