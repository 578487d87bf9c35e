//! Frame layout and codec.
//!
//! ```text
//! +-----------+-----------+-----------+-------------+-----------------+
//! | len: u32  | seq: u64  | mac_len:u8| mac (0..32) | payload (bincode)|
//! +-----------+-----------+-----------+-------------+-----------------+
//! ```
//!
//! All integers are big-endian. `len` counts every byte after itself and is
//! at most [`MAX_FRAME_LEN`]. `seq` numbers the frames of one direction of a
//! connection from 0 and must grow by exactly one. `mac` is empty at security
//! level 0; at level 1 it holds an HMAC-SHA256 over the direction, `seq` and
//! the payload, so the header needs no change between levels.

use std::ops::Range;

use serde::{Serialize, de::DeserializeOwned};

/// Largest frame accepted, header included: room for an output tail of
/// 512 KiB with ample margin.
pub const MAX_FRAME_LEN: usize = 2 * 1024 * 1024;
/// Largest MAC a frame can carry (HMAC-SHA256).
pub const MAX_MAC_LEN: usize = 32;
const HEADER_LEN: usize = 8 + 1;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the maximum of {MAX_FRAME_LEN} bytes")]
    TooLarge { len: usize },
    #[error("frame of {len} bytes is shorter than its header")]
    Truncated { len: usize },
    #[error("frame MAC length {len} is invalid: the maximum is {MAX_MAC_LEN}")]
    BadMacLength { len: usize },
    #[error("frame payload could not be decoded: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("frame payload could not be encoded: {0}")]
    Encode(#[from] bincode::error::EncodeError),
}

/// bincode settings for frames: a limit keeps hostile length fields from
/// allocating more than one frame can hold.
fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_FRAME_LEN>()
}

/// Encodes a message payload.
pub fn encode_payload<T: Serialize>(message: &T) -> Result<Vec<u8>, FrameError> {
    Ok(bincode::serde::encode_to_vec(message, config())?)
}

/// Decodes a message payload, rejecting trailing bytes.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    let (message, used) = bincode::serde::decode_from_slice(payload, config())?;
    if used != payload.len() {
        return Err(FrameError::Decode(
            bincode::error::DecodeError::OtherString(format!(
                "{} trailing bytes after the message",
                payload.len() - used
            )),
        ));
    }
    Ok(message)
}

/// Appends one whole frame (length prefix included) to `out`.
pub fn write_frame(
    out: &mut Vec<u8>,
    seq: u64,
    mac: &[u8],
    payload: &[u8],
) -> Result<(), FrameError> {
    if mac.len() > MAX_MAC_LEN {
        return Err(FrameError::BadMacLength { len: mac.len() });
    }
    let len = HEADER_LEN + mac.len() + payload.len();
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge { len });
    }
    out.reserve(4 + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.push(mac.len() as u8);
    out.extend_from_slice(mac);
    out.extend_from_slice(payload);
    Ok(())
}

/// Byte ranges of the MAC field and the payload of a frame that
/// [`append_frame`] appended, as indexes into its output buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct AppendedFrame {
    /// The MAC field, zero-filled, for the caller to sign into.
    pub mac: Range<usize>,
    pub payload: Range<usize>,
}

/// bincode output that appends to a byte vector.
struct AppendWriter<'a>(&'a mut Vec<u8>);

impl bincode::enc::write::Writer for AppendWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// Appends one whole frame (length prefix included) to `out`, encoding
/// `message` in place, with a zero-filled MAC field of `mac_len` bytes.
/// On an error `out` is left as it was.
pub fn append_frame<T: Serialize>(
    out: &mut Vec<u8>,
    seq: u64,
    mac_len: usize,
    message: &T,
) -> Result<AppendedFrame, FrameError> {
    if mac_len > MAX_MAC_LEN {
        return Err(FrameError::BadMacLength { len: mac_len });
    }
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_be_bytes());
    out.push(mac_len as u8);
    out.resize(out.len() + mac_len, 0);
    let payload_start = out.len();
    if let Err(error) = bincode::serde::encode_into_writer(message, AppendWriter(out), config()) {
        out.truncate(start);
        return Err(error.into());
    }
    let len = out.len() - start - 4;
    if len > MAX_FRAME_LEN {
        out.truncate(start);
        return Err(FrameError::TooLarge { len });
    }
    out[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(AppendedFrame {
        mac: payload_start - mac_len..payload_start,
        payload: payload_start..out.len(),
    })
}

/// Checks a length prefix before the body is read.
pub fn check_len(len: u32) -> Result<usize, FrameError> {
    let len = len as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge { len });
    }
    if len < HEADER_LEN {
        return Err(FrameError::Truncated { len });
    }
    Ok(len)
}

/// A frame body split into its parts; borrows the body.
#[derive(Debug, PartialEq, Eq)]
pub struct FrameParts<'a> {
    pub seq: u64,
    pub mac: &'a [u8],
    pub payload: &'a [u8],
}

/// Splits a frame body (the bytes after the length prefix).
pub fn split_frame(body: &[u8]) -> Result<FrameParts<'_>, FrameError> {
    if body.len() < HEADER_LEN {
        return Err(FrameError::Truncated { len: body.len() });
    }
    let seq = u64::from_be_bytes(body[..8].try_into().expect("slice of 8 bytes"));
    let mac_len = body[8] as usize;
    if mac_len > MAX_MAC_LEN || HEADER_LEN + mac_len > body.len() {
        return Err(FrameError::BadMacLength { len: mac_len });
    }
    Ok(FrameParts {
        seq,
        mac: &body[HEADER_LEN..HEADER_LEN + mac_len],
        payload: &body[HEADER_LEN + mac_len..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trips() {
        let mut out = Vec::new();
        write_frame(&mut out, 7, &[1, 2, 3], b"payload").unwrap();
        let len = check_len(u32::from_be_bytes(out[..4].try_into().unwrap())).unwrap();
        assert_eq!(len, out.len() - 4);
        let parts = split_frame(&out[4..]).unwrap();
        assert_eq!(
            parts,
            FrameParts {
                seq: 7,
                mac: &[1, 2, 3],
                payload: b"payload"
            }
        );
    }

    #[test]
    fn appended_frame_matches_write_frame() {
        let message = (42u64, "text".to_string());
        let payload = encode_payload(&message).unwrap();
        let mut expected = b"kept".to_vec();
        write_frame(&mut expected, 9, &[0; 32], &payload).unwrap();

        let mut out = b"kept".to_vec();
        let appended = append_frame(&mut out, 9, 32, &message).unwrap();
        assert_eq!(out, expected);
        assert_eq!(appended.mac, 4 + 13..4 + 13 + 32);
        assert_eq!(&out[appended.payload], &payload[..]);
    }

    #[test]
    fn oversized_appended_frame_leaves_buffer_unchanged() {
        let mut out = b"kept".to_vec();
        let huge = vec![7u8; MAX_FRAME_LEN];
        assert!(matches!(
            append_frame(&mut out, 0, 0, &huge),
            Err(FrameError::TooLarge { .. })
        ));
        assert_eq!(out, b"kept");
        assert!(matches!(
            append_frame(&mut out, 0, MAX_MAC_LEN + 1, &1u8),
            Err(FrameError::BadMacLength { .. })
        ));
        assert_eq!(out, b"kept");
    }

    #[test]
    fn oversized_length_is_rejected_before_reading() {
        assert!(matches!(
            check_len(u32::MAX),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(check_len(3), Err(FrameError::Truncated { .. })));
    }

    #[test]
    fn bad_mac_length_is_rejected() {
        let mut body = vec![0u8; 8];
        body.push(200);
        body.extend_from_slice(&[0; 10]);
        assert!(matches!(
            split_frame(&body),
            Err(FrameError::BadMacLength { .. })
        ));
    }

    #[test]
    fn hostile_payload_does_not_allocate() {
        let hostile = [0xffu8; 16];
        assert!(decode_payload::<Vec<u8>>(&hostile).is_err());
        assert!(
            decode_payload::<String>(&[0xfc, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])
                .is_err()
        );
    }
}
