//! Reading and writing framed messages on one QUIC stream.

use tokio::sync::mpsc;

use super::frame::{self, FrameError};
use super::messages::Message;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("invalid frame: {0}")]
    Frame(#[from] FrameError),
    #[error("frame sequence {got} is out of order: expected {expected}")]
    Sequence { expected: u64, got: u64 },
    #[error("failed to read from the peer: {0}")]
    Read(#[from] quinn::ReadExactError),
    #[error("failed to write to the peer: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("the peer closed the stream in the middle of a frame")]
    Truncated,
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

/// Reads frames, checking the length limit and the sequence numbers.
pub struct FrameReader {
    recv: quinn::RecvStream,
    next_seq: u64,
    body: Vec<u8>,
}

impl FrameReader {
    pub fn new(recv: quinn::RecvStream) -> FrameReader {
        FrameReader {
            recv,
            next_seq: 0,
            body: Vec::new(),
        }
    }

    /// Returns the next message, or `None` when the peer finished the stream
    /// cleanly between frames.
    pub async fn next(&mut self) -> Result<Option<Message>, LinkError> {
        let mut prefix = [0u8; 4];
        match self.recv.read_exact(&mut prefix).await {
            Ok(()) => {}
            Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
            Err(quinn::ReadExactError::FinishedEarly(_)) => return Err(LinkError::Truncated),
            Err(e) => return Err(e.into()),
        }
        let len = frame::check_len(u32::from_be_bytes(prefix))?;
        self.body.resize(len, 0);
        match self.recv.read_exact(&mut self.body).await {
            Ok(()) => {}
            Err(quinn::ReadExactError::FinishedEarly(_)) => return Err(LinkError::Truncated),
            Err(e) => return Err(e.into()),
        }

        let parts = frame::split_frame(&self.body)?;
        if parts.seq != self.next_seq {
            return Err(LinkError::Sequence {
                expected: self.next_seq,
                got: parts.seq,
            });
        }
        self.next_seq += 1;
        Ok(Some(frame::decode_payload(parts.payload)?))
    }
}

/// Writes frames with increasing sequence numbers.
pub struct FrameWriter {
    send: quinn::SendStream,
    next_seq: u64,
    buffer: Vec<u8>,
}

impl FrameWriter {
    pub fn new(send: quinn::SendStream) -> FrameWriter {
        FrameWriter {
            send,
            next_seq: 0,
            buffer: Vec::new(),
        }
    }

    /// Appends a message to the write buffer without sending it.
    pub fn queue(&mut self, message: &Message) -> Result<(), LinkError> {
        let payload = frame::encode_payload(message)?;
        frame::write_frame(&mut self.buffer, self.next_seq, &[], &payload)?;
        self.next_seq += 1;
        Ok(())
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
