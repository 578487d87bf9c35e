//! Reading and writing framed messages on one QUIC stream.
//!
//! After a level-1 join both ends call `enable_mac`: from then on every
//! frame carries an HMAC-SHA256 (see [`crate::security::mac`]), and a frame
//! without one, with a wrong one, or out of sequence is an
//! [`AuthFailure`].

use tokio::sync::mpsc;

use super::frame::{self, FrameError};
use super::messages::Message;
use crate::security::mac::{FrameMac, MAC_LEN};

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("invalid frame: {0}")]
    Frame(#[from] FrameError),
    #[error("frame sequence {got} is out of order: expected {expected}")]
    Sequence { expected: u64, got: u64 },
    #[error("failed to read from the peer: {0}")]
    Read(#[from] quinn::ReadError),
    #[error("failed to write to the peer: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("the peer closed the stream in the middle of a frame")]
    Truncated,
    #[error("frame failed authentication: {0}")]
    Authentication(AuthFailure),
}

/// Why a frame of a MAC-protected session was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("frame {seq} carries no MAC")]
    Unsigned { seq: u64 },
    #[error("frame {seq} has an invalid MAC")]
    BadMac { seq: u64 },
    #[error("frame sequence {got} is out of order: expected {expected}")]
    Sequence { expected: u64, got: u64 },
}

impl AuthFailure {
    /// Label of the `reason` of `delicate_frames_auth_failed_total`.
    pub fn reason(self) -> &'static str {
        match self {
            AuthFailure::Unsigned { .. } => "unsigned",
            AuthFailure::BadMac { .. } => "bad_mac",
            AuthFailure::Sequence { .. } => "sequence",
        }
    }
}

impl LinkError {
    /// True for errors caused by what the peer sent, as opposed to a lost connection.
    pub fn is_protocol_violation(&self) -> bool {
        matches!(
            self,
            LinkError::Frame(_) | LinkError::Sequence { .. } | LinkError::Truncated
        )
    }
}

/// Bytes a reader asks its stream for per read, so a read returns many
/// small frames at once. A larger frame grows the buffer to its length.
const READ_BUFFER_LEN: usize = 16 * 1024;

/// Reads frames, checking the length limit, the sequence numbers and,
/// once enabled, the MACs.
///
/// It reads whatever the stream has into one buffer and splits frames
/// there. `next` is cancel-safe: bytes already read stay in the buffer.
pub struct FrameReader {
    recv: quinn::RecvStream,
    next_seq: u64,
    /// Received bytes: `buffer[start..end]` are not consumed yet, and the
    /// rest is room for the next read.
    buffer: Vec<u8>,
    start: usize,
    end: usize,
    mac: Option<FrameMac>,
}

impl FrameReader {
    pub fn new(recv: quinn::RecvStream) -> FrameReader {
        FrameReader {
            recv,
            next_seq: 0,
            buffer: Vec::new(),
            start: 0,
            end: 0,
            mac: None,
        }
    }

    /// Requires a valid MAC on every later frame. `mac` must be keyed for
    /// the direction this reader receives.
    pub fn enable_mac(&mut self, mac: FrameMac) {
        self.mac = Some(mac);
    }

    /// Returns the next message, or `None` when the peer finished the stream
    /// cleanly between frames.
    pub async fn next(&mut self) -> Result<Option<Message>, LinkError> {
        loop {
            let needed = match self.buffered_frame_len()? {
                Some(len) if self.end - self.start >= len => break,
                Some(len) => len,
                None => 4,
            };
            if !self.fill(needed).await? {
                return match self.end - self.start {
                    0 => Ok(None),
                    _ => Err(LinkError::Truncated),
                };
            }
        }
        self.take_frame().map(Some)
    }

    /// Returns the next message if its whole frame is already buffered, and
    /// `None` without waiting otherwise.
    pub fn next_buffered(&mut self) -> Result<Option<Message>, LinkError> {
        match self.buffered_frame_len()? {
            Some(len) if self.end - self.start >= len => self.take_frame().map(Some),
            _ => Ok(None),
        }
    }

    /// Returns the length, prefix included, of the frame that starts the
    /// buffer, once its prefix is in, after checking it against the limit.
    fn buffered_frame_len(&self) -> Result<Option<usize>, LinkError> {
        let Some(prefix) = self.buffer[self.start..self.end].first_chunk::<4>() else {
            return Ok(None);
        };
        Ok(Some(4 + frame::check_len(u32::from_be_bytes(*prefix))?))
    }

    /// Reads more bytes until at least `needed` are buffered or the stream
    /// ends; returns false at the end of the stream.
    async fn fill(&mut self, needed: usize) -> Result<bool, LinkError> {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
        if self.start + needed > self.buffer.len() {
            // The unconsumed bytes are less than one frame, so moving them to
            // the front is cheap. Then the buffer grows to fit the frame.
            self.buffer.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
            if needed > self.buffer.len() {
                self.buffer.resize(needed.max(READ_BUFFER_LEN), 0);
            }
        }
        while self.end - self.start < needed {
            match self.recv.read(&mut self.buffer[self.end..]).await? {
                Some(read) => self.end += read,
                None => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Checks and decodes the whole frame that starts the buffer.
    fn take_frame(&mut self) -> Result<Message, LinkError> {
        let len = frame::check_len(u32::from_be_bytes(
            *self.buffer[self.start..]
                .first_chunk::<4>()
                .expect("the caller buffered a whole frame"),
        ))?;
        let body = &self.buffer[self.start + 4..self.start + 4 + len];
        self.start += 4 + len;
        let parts = frame::split_frame(body)?;
        if let Some(mac) = &self.mac {
            // The MAC is checked first, so a tampered seq reports a bad MAC
            // and a sequence error means a replayed or dropped frame.
            if parts.mac.is_empty() {
                return Err(LinkError::Authentication(AuthFailure::Unsigned {
                    seq: parts.seq,
                }));
            }
            if !mac.verify(parts.seq, parts.payload, parts.mac) {
                return Err(LinkError::Authentication(AuthFailure::BadMac {
                    seq: parts.seq,
                }));
            }
            if parts.seq != self.next_seq {
                return Err(LinkError::Authentication(AuthFailure::Sequence {
                    expected: self.next_seq,
                    got: parts.seq,
                }));
            }
        } else if parts.seq != self.next_seq {
            return Err(LinkError::Sequence {
                expected: self.next_seq,
                got: parts.seq,
            });
        }
        self.next_seq += 1;
        let message = frame::decode_payload(parts.payload)?;
        self.release_large_buffer();
        Ok(message)
    }

    /// Gives back the memory of a buffer that grew for a large frame, once
    /// nothing is left in it.
    fn release_large_buffer(&mut self) {
        if self.start == self.end && self.buffer.len() > READ_BUFFER_LEN {
            (self.start, self.end) = (0, 0);
            self.buffer.truncate(READ_BUFFER_LEN);
            self.buffer.shrink_to_fit();
        }
    }
}

/// Writes frames with increasing sequence numbers and, once enabled, MACs.
/// Queued frames are encoded into one buffer and sent with one write.
pub struct FrameWriter {
    send: quinn::SendStream,
    next_seq: u64,
    buffer: Vec<u8>,
    mac: Option<FrameMac>,
}

impl FrameWriter {
    pub fn new(send: quinn::SendStream) -> FrameWriter {
        FrameWriter {
            send,
            next_seq: 0,
            buffer: Vec::new(),
            mac: None,
        }
    }

    /// Signs every later frame. `mac` must be keyed for the direction this
    /// writer sends.
    pub fn enable_mac(&mut self, mac: FrameMac) {
        self.mac = Some(mac);
    }

    /// Appends a message to the write buffer without sending it.
    pub fn queue(&mut self, message: &Message) -> Result<(), LinkError> {
        let mac_len = if self.mac.is_some() { MAC_LEN } else { 0 };
        let appended = frame::append_frame(&mut self.buffer, self.next_seq, mac_len, message)?;
        if let Some(mac) = &self.mac {
            let signed = mac.sign(self.next_seq, &self.buffer[appended.payload]);
            self.buffer[appended.mac].copy_from_slice(&signed);
        }
        self.next_seq += 1;
        Ok(())
    }

    /// Returns the stream, after flushing, and the sequence number of the
    /// next frame, for a caller that writes frames itself.
    pub async fn into_parts(mut self) -> Result<(quinn::SendStream, u64), LinkError> {
        self.flush().await?;
        Ok((self.send, self.next_seq))
    }

    /// Sends everything queued.
    pub async fn flush(&mut self) -> Result<(), LinkError> {
        if !self.buffer.is_empty() {
            self.send.write_all(&self.buffer).await?;
            self.buffer.clear();
        }
        Ok(())
    }

    pub async fn send(&mut self, message: &Message) -> Result<(), LinkError> {
        self.queue(message)?;
        self.flush().await
    }

    /// Finishes the stream so the peer reads a clean end.
    pub fn finish(&mut self) {
        let _ = self.send.finish();
    }
}

/// Queue depth of a connection's outgoing messages. Senders wait when it is
/// full, which slows producers down to the speed of the connection.
pub const OUTGOING_QUEUE: usize = 1024;

/// Writes messages from `outgoing` until the queue closes or a write fails,
/// batching whatever is waiting into one write.
pub async fn pump_outgoing(
    mut writer: FrameWriter,
    mut outgoing: mpsc::Receiver<Message>,
) -> Result<(), LinkError> {
    while let Some(message) = outgoing.recv().await {
        writer.queue(&message)?;
        while let Ok(more) = outgoing.try_recv() {
            writer.queue(&more)?;
        }
        writer.flush().await?;
    }
    writer.finish();
    Ok(())
}
